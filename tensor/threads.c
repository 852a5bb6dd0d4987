/* SPDX-License-Identifier: MIT
 * tensor/threads.c: how many threads nodal's own parallel kernels use (OpenMP builds): 1 unless
 * the user sets more with nd_set_threads or the environment variable NODAL_NUM_THREADS. One thread
 * is the default, so results are reproducible run to run; with more, kernels split work into
 * fixed parts reduced in a fixed order, so a given thread count also gives the same results.
 */
#include <stdatomic.h>
#include <stdlib.h>
#ifdef ND_HAVE_OPENMP
#include <omp.h>
#endif

#include "tensor/ctx_internal.h"
#include "tensor/tensor.h"

#define ND_MAX_THREADS 256

static atomic_int threads; /* 0: not yet read from the environment */

int nd_threads(void)
{
    int n = atomic_load(&threads);
    if (n > 0) return n;
    n = 1;
    const char *e = getenv("NODAL_NUM_THREADS");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (!*end && v >= 1 && v <= ND_MAX_THREADS) n = (int)v;
    }
    int unset = 0;
    atomic_compare_exchange_strong(&threads, &unset, n);
    return atomic_load(&threads);
}

nd_status nd_set_threads(int n)
{
    if (n < 1 || n > ND_MAX_THREADS) return ND_ERR_ARG;
    atomic_store(&threads, n);
    return ND_OK;
}

bool nd_threads_parallel(void)
{
#ifdef ND_HAVE_OPENMP
    return true;
#else
    return false;
#endif
}

int nd_worker_id(void)
{
#ifdef ND_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void nd_parallel_for(size_t n, size_t min_items, void (*fn)(void *arg, size_t lo, size_t hi),
                     void *arg)
{
    size_t parts = (size_t)nd_threads(), by_size = min_items ? n / min_items : n;
    if (parts > by_size) parts = by_size;
#ifdef ND_HAVE_OPENMP
    if (parts > 1) {
#pragma omp parallel for num_threads((int)parts) schedule(static)
        for (size_t p = 0; p < parts; p++) fn(arg, n * p / parts, n * (p + 1) / parts);
        return;
    }
#endif
    fn(arg, 0, n);
}

/* SPDX-License-Identifier: MIT
 * bench/interpose.c: the malloc and cblas GEMM interposition of the benchmarks (interpose.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "interpose.h"

/* ---- malloc -----------------------------------------------------------------------------------
 */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

atomic_bool g_count_allocs;
atomic_long g_allocs, g_blas_allocs;
static atomic_bool g_in_gemm;

static inline void note_alloc(void)
{
    if (atomic_load_explicit(&g_count_allocs, memory_order_relaxed))
        atomic_fetch_add_explicit(
            atomic_load_explicit(&g_in_gemm, memory_order_relaxed) ? &g_blas_allocs : &g_allocs, 1,
            memory_order_relaxed);
}

void *malloc(size_t n)
{
    note_alloc();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    note_alloc();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    note_alloc();
    return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    note_alloc();
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    note_alloc();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    note_alloc();
    if (align < sizeof(void *) || (align & (align - 1))) return 22; /* EINVAL */
    void *p = __libc_memalign(align, n);
    if (!p && n) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

/* ---- GEMM -------------------------------------------------------------------------------------
 */

gemm_call g_calls[MAX_CALLS];
int g_n_calls;
bool g_record_gemm, g_time_gemm;
double g_gemm_ns;

#ifdef ND_REAL_FLOAT
#define GEMM_NAME "cblas_sgemm"
#define GEMM_WRAP cblas_sgemm
#else
#define GEMM_NAME "cblas_dgemm"
#define GEMM_WRAP cblas_dgemm
#endif

/* BENCH_CLOCK=thread: the calling thread's CPU time instead of wall time, for one-thread runs on
 * a loaded machine (time spent descheduled is not counted). */
double now_ns(void)
{
    static int clock_id = -1;
    if (clock_id < 0) {
        const char *e = getenv("BENCH_CLOCK");
        clock_id = e && !strcmp(e, "thread") ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    }
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void bench_use_blas_gemm(void)
{
    setenv("NODAL_GEMM", "blas", 1);
}

gemm_fn get_real_gemm(void)
{
    static gemm_fn real_gemm;
    if (!real_gemm) *(void **)&real_gemm = dlsym(RTLD_NEXT, GEMM_NAME); /* POSIX's idiom */
    if (!real_gemm) {
        fprintf(stderr, "bench: cannot find %s: %s\n", GEMM_NAME, dlerror());
        exit(1);
    }
    return real_gemm;
}

void GEMM_WRAP(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta,
               const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N, const blasint K,
               const nd_real alpha, const nd_real *A, const blasint lda, const nd_real *B,
               const blasint ldb, const nd_real beta, nd_real *C, const blasint ldc)
{
    if (g_record_gemm && g_n_calls < MAX_CALLS) {
        if (order != CblasRowMajor) {
            fprintf(stderr, "bench: unexpected column-major GEMM\n");
            exit(1);
        }
        g_calls[g_n_calls++] = (gemm_call){ta, tb, M, N, K, lda, ldb, ldc, alpha, beta};
    }
    double t0 = g_time_gemm ? now_ns() : 0;
    atomic_store_explicit(&g_in_gemm, true, memory_order_relaxed);
    get_real_gemm()(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    atomic_store_explicit(&g_in_gemm, false, memory_order_relaxed);
    if (g_time_gemm) g_gemm_ns += now_ns() - t0;
}

/* ---- replay ------------------------------------------------------------------------------------
 */

void replay_buffers_create(gemm_bufs *bufs, int n, uint64_t seed)
{
    nd_rng rng = nd_rng_seed(seed);
    for (int i = 0; i < n; i++) {
        const gemm_call *c = &g_calls[i];
        int same = 0;
        while (same < i && memcmp(&g_calls[same], c, offsetof(gemm_call, alpha))) same++;
        if (same < i) {
            bufs[i] = bufs[same];
            bufs[i].owner = false;
            continue;
        }
        bufs[i].owner = true;
        size_t rows_a = c->ta == CblasTrans ? (size_t)c->K : (size_t)c->M;
        size_t rows_b = c->tb == CblasTrans ? (size_t)c->N : (size_t)c->K;
        size_t na = rows_a * (size_t)c->lda, nb = rows_b * (size_t)c->ldb;
        size_t nc = (size_t)c->M * (size_t)c->ldc;
        bufs[i].a = aligned_alloc(64, (na * sizeof(nd_real) + 63) / 64 * 64);
        bufs[i].b = aligned_alloc(64, (nb * sizeof(nd_real) + 63) / 64 * 64);
        bufs[i].c = aligned_alloc(64, (nc * sizeof(nd_real) + 63) / 64 * 64);
        if (!bufs[i].a || !bufs[i].b || !bufs[i].c) exit(1);
        for (size_t k = 0; k < na; k++) bufs[i].a[k] = (nd_real)(nd_rng_uniform(&rng) - 0.5);
        for (size_t k = 0; k < nb; k++) bufs[i].b[k] = (nd_real)(nd_rng_uniform(&rng) - 0.5);
        memset(bufs[i].c, 0, nc * sizeof(nd_real));
    }
}

double replay_calls(const gemm_bufs *bufs, int n)
{
    gemm_fn g = get_real_gemm();
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        const gemm_call *c = &g_calls[i];
        g(CblasRowMajor, c->ta, c->tb, c->M, c->N, c->K, c->alpha, bufs[i].a, c->lda, bufs[i].b,
          c->ldb, c->beta, bufs[i].c, c->ldc);
    }
    return now_ns() - t0;
}

double recorded_flops(int n)
{
    double flops = 0;
    for (int i = 0; i < n; i++) flops += 2.0 * g_calls[i].M * g_calls[i].N * g_calls[i].K;
    return flops;
}

void replay_buffers_destroy(gemm_bufs *bufs, int n)
{
    for (int i = 0; i < n; i++)
        if (bufs[i].owner) free(bufs[i].a), free(bufs[i].b), free(bufs[i].c);
}

double peak_gemm_gflops(void)
{
    enum { P = 512, REPS = 5 };
    nd_real *m = aligned_alloc(64, 3 * (size_t)P * P * sizeof(nd_real));
    if (!m) exit(1);
    nd_rng rng = nd_rng_seed(3);
    for (size_t k = 0; k < 3 * (size_t)P * P; k++) m[k] = (nd_real)(nd_rng_uniform(&rng) - 0.5);
    gemm_fn g = get_real_gemm();
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_ns();
        g(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, P, P, 1, m, P, m + P * P, P, 0,
          m + 2 * P * P, P);
        t[r] = now_ns() - t0;
    }
    free(m);
    return 2.0 * P * P * P / median(t, REPS);
}

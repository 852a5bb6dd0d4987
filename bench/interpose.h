/* SPDX-License-Identifier: MIT
 * bench/interpose.h: what bench_autograd and bench_nn measure through the dynamic linker. They
 * define malloc and friends (forwarded to glibc's __libc_* functions) to count the calls a step
 * makes, and cblas_dgemm / cblas_sgemm (forwarded to OpenBLAS) to record the exact GEMM calls of
 * a step and time them, so the GEMM baseline replays what the step really did. Needs glibc and
 * OpenBLAS; not for sanitizer builds (they interpose malloc themselves).
 */
#ifndef BENCH_INTERPOSE_H
#define BENCH_INTERPOSE_H

#include <cblas.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nodal.h"
#include "stats.h" /* median */

/* counted while g_count_allocs is set: outside GEMM calls, and inside them (OpenBLAS's threads) */
extern atomic_bool g_count_allocs;
extern atomic_long g_allocs, g_blas_allocs;

typedef struct {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc;
    nd_real alpha, beta;
} gemm_call;

#define MAX_CALLS 4096               /* a conv step makes one GEMM per tile of images */
extern gemm_call g_calls[MAX_CALLS]; /* the calls made while g_record_gemm is set */
extern int g_n_calls;
extern bool g_record_gemm;
extern bool g_time_gemm; /* while set, time inside GEMM calls adds up in g_gemm_ns */
extern double g_gemm_ns;

typedef void (*gemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint,
                        blasint, blasint, nd_real, const nd_real *, blasint, const nd_real *,
                        blasint, nd_real, nd_real *, blasint);
/* OpenBLAS's own GEMM for the build's nd_real (exits if it cannot be found) */
gemm_fn get_real_gemm(void);
/* Sends the library's products through cblas (NODAL_GEMM=blas; call before the first nodal op):
 * only those calls can be recorded and replayed, so the engine's cost around the GEMM is measured
 * against the same GEMM. nodal's AVX-512 kernel (its default on AVX-512 CPUs) is measured by
 * bench/peers and the programs' own images/s instead. */
void bench_use_blas_gemm(void);

/* Buffers shaped for the first n recorded calls (random A and B, zero C; calls of one shape share
 * theirs, as the per-tile GEMMs of a convolution reuse one scratch), the time in ns of one replay
 * of those calls through OpenBLAS, their flops, and freeing the buffers. */
typedef struct {
    nd_real *a, *b, *c;
    bool owner; /* false: the buffers of an earlier call of the same shape */
} gemm_bufs;
/* GFLOP/s of OpenBLAS's GEMM at its best: a 512^3 product, median of a few. */
double peak_gemm_gflops(void);
void replay_buffers_create(gemm_bufs *bufs, int n, uint64_t seed);
double replay_calls(const gemm_bufs *bufs, int n);
double recorded_flops(int n);
void replay_buffers_destroy(gemm_bufs *bufs, int n);

double now_ns(void);

#endif

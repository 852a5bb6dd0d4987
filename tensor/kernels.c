/* SPDX-License-Identifier: MIT
 * tensor/kernels.c: GEMM, through AVX2 loops for small products (gemm_small.c), nodal's AVX-512
 * kernel (gemm_avx512.c) on CPUs that have AVX-512F and cblas otherwise (every product through
 * cblas when NODAL_GEMM=blas);
 * and the array transcendentals with their run-time choice between SLEEF's AVX-512F kernels
 * (kernels_avx512.c), its AVX2 kernels (kernels_avx2.c, compiled with -mavx2 -mfma), which give
 * bitwise the same results, and libm. Each choice is made once; every transcendental path is
 * accurate to about 1 ulp (tanh 3.5). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/kernels.h"

#ifdef ND_HAVE_OPENBLAS
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
/* OpenBLAS on one thread unless its environment variables say otherwise: nodal's products are
 * small and its own threads (NODAL_NUM_THREADS) share the work; OpenBLAS's default of a thread per
 * core spins on them (measured: 40% of the conv-net's time on 2 cores). */
static void blas_one_thread(void)
{
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("GOTO_NUM_THREADS") &&
        !getenv("OMP_NUM_THREADS"))
        openblas_set_num_threads(1);
}
#endif

static void blas_gemm(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A,
                      int lda, const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
#ifdef ND_HAVE_OPENBLAS
    pthread_once(&blas_once, blas_one_thread);
#endif
#ifdef ND_REAL_FLOAT
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

#ifdef ND_HAVE_GEMM_AVX512
void nd_gemm_avx512(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
                    const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc);

static int use_avx512 = -1;
/* nodal's AVX-512 GEMM when the CPU has AVX-512F, unless NODAL_GEMM=blas asks for the BLAS. */
static bool avx512(void)
{
    if (use_avx512 < 0) {
        __builtin_cpu_init();
        const char *e = getenv("NODAL_GEMM");
        use_avx512 = __builtin_cpu_supports("avx512f") && !(e && strcmp(e, "blas") == 0);
    }
    return use_avx512;
}
#else
static bool avx512(void)
{
    return false;
}
#endif

#ifdef ND_HAVE_GEMM_SMALL
static int use_small = -1;
/* the small-product loops, compiled for AVX2 and FMA (tensor/gemm_small.c), when the CPU has both,
 * unless NODAL_GEMM=blas asks for the BLAS (every product then is a BLAS call) */
static bool small_ok(void)
{
    if (use_small < 0) {
        __builtin_cpu_init();
        const char *e = getenv("NODAL_GEMM");
        use_small = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    !(e && strcmp(e, "blas") == 0);
    }
    return use_small;
}
#endif

void nd_gemm(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
             const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
#ifdef ND_HAVE_GEMM_SMALL
    if (small_ok() && nd_gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc))
        return;
#endif
#ifdef ND_HAVE_GEMM_AVX512
    /* below ND_GEMM_AVX512_MIN_N columns the micro-tile is mostly padding and the BLAS does
     * better, except for A B^T, which the AVX-512 kernel computes as dot products */
    if (avx512() && (N >= ND_GEMM_AVX512_MIN_N || (!ta && tb))) {
        nd_gemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nd_gemm_bias(bool ta, bool tb, int M, int N, int K, const nd_real *A, int lda,
                  const nd_real *B, int ldb, const nd_real *bias, nd_real *C, int ldc)
{
#ifdef ND_HAVE_GEMM_SMALL
    if (small_ok() && nd_gemm_small(ta, tb, M, N, K, 1, A, lda, B, ldb, 1, bias, C, ldc)) return;
#endif
    for (int r = 0; r < M; r++) memcpy(C + (size_t)r * ldc, bias, (size_t)N * sizeof *C);
    nd_gemm(ta, tb, M, N, K, 1, A, lda, B, ldb, 1, C, ldc);
}

#ifdef ND_HAVE_SLEEF
void nd_kernel_tanh_avx2(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_exp_avx2(nd_real *y, const nd_real *x, size_t n);
#ifdef ND_HAVE_SLEEF_AVX512
void nd_kernel_tanh_avx512(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_exp_avx512(nd_real *y, const nd_real *x, size_t n);
#endif

/* 2: AVX-512F (SLEEF's 8-lane kernels), 1: AVX2 and FMA (4 lanes), 0: libm; checked once */
static int vec_level = -1;
static int level(void)
{
    if (vec_level < 0) {
        __builtin_cpu_init();
        vec_level = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#ifdef ND_HAVE_SLEEF_AVX512
        if (vec_level && __builtin_cpu_supports("avx512f")) vec_level = 2;
#endif
    }
    return vec_level;
}
#else
static int level(void)
{
    return 0;
}
#endif

const char *nd_kernel_path(void)
{
    static const char *const names[] = {"scalar", "sleef-avx2", "sleef-avx512"};
    return names[level()];
}

void nd_kernel_tanh(nd_real *y, const nd_real *x, size_t n)
{
#ifdef ND_HAVE_SLEEF
#ifdef ND_HAVE_SLEEF_AVX512
    if (level() == 2) {
        nd_kernel_tanh_avx512(y, x, n);
        return;
    }
#endif
    if (level() == 1) {
        nd_kernel_tanh_avx2(y, x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = tanh(x[i]);
}

void nd_kernel_exp(nd_real *y, const nd_real *x, size_t n)
{
#ifdef ND_HAVE_SLEEF
#ifdef ND_HAVE_SLEEF_AVX512
    if (level() == 2) {
        nd_kernel_exp_avx512(y, x, n);
        return;
    }
#endif
    if (level() == 1) {
        nd_kernel_exp_avx2(y, x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = exp(x[i]);
}

/* SPDX-License-Identifier: MIT
 * tests/test_gemm.c: nd_gemm (tensor/kernels.c, library-private, compiled into this test), the
 * small-product loops (tensor/gemm_small.c) and nodal's AVX-512 kernel (tensor/gemm_avx512.c)
 * against a plain triple loop: every transpose, shapes around the micro-tile (8 rows, 2 vectors of
 * columns) and the blocks (96 rows, 256 of K), strided C, alpha 0 / 1 / other, beta 0 / 1 / other,
 * and C never read when beta is 0 (it holds NaN there). The AVX-512 kernel is checked directly when
 * the CPU has AVX-512F and skipped (with a message) otherwise; nd_gemm is checked on every CPU.
 * Also: SLEEF's AVX-512F and AVX2 tanh and exp kernels agree bit for bit.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/kernels.h"
#include "test_main.h"

typedef void gemm_fn(bool, bool, int, int, int, nd_real, const nd_real *, int, const nd_real *, int,
                     nd_real, nd_real *, int);
#ifdef ND_HAVE_GEMM_AVX512
void nd_gemm_avx512(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
                    const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc);
#endif

/* C (M, N; ldc) = alpha op(A) op(B) + beta C in long double, one term at a time */
static void gemm_reference(bool ta, bool tb, int M, int N, int K, double alpha, const nd_real *A,
                           int lda, const nd_real *B, int ldb, double beta, nd_real *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            long double s = 0;
            for (int k = 0; k < K; k++) {
                nd_real a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                nd_real b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (long double)a * b;
            }
            nd_real *c = &C[(size_t)i * ldc + j];
            *c = (nd_real)(alpha * s + (beta == 0 ? 0 : beta * (long double)*c));
        }
}

/* One product through fn against the reference; the worst error relative to sum |a||b| + |c|. */
static void check_one(gemm_fn *fn, bool ta, bool tb, int M, int N, int K, double alpha, double beta)
{
    int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    nd_real *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    nd_real *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
    ck_assert(A && B && C && R);
    for (size_t i = 0; i < na; i++) A[i] = (nd_real)sin(0.37 * (double)i + 0.1);
    for (size_t i = 0; i < nb; i++) B[i] = (nd_real)cos(0.11 * (double)i);
    for (size_t i = 0; i < nc; i++) C[i] = R[i] = beta == 0 ? NAN : (nd_real)sin((double)i);
    fn(ta, tb, M, N, K, (nd_real)alpha, A, lda, B, ldb, (nd_real)beta, C, ldc);
    gemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= N) { /* past the row's N columns: untouched */
                ck_assert_msg(isnan(C[at]) ? isnan(R[at]) : C[at] == R[at],
                              "%c%c %dx%dx%d wrote past column N", ta ? 'T' : 'N', tb ? 'T' : 'N',
                              M, N, K);
                continue;
            }
            double scale = fabs(alpha) * K + (beta == 0 ? 0 : fabs(beta)) + 1;
            double err = fabs((double)C[at] - (double)R[at]);
            ck_assert_msg(err <= 8 * ND_REAL_EPS * scale,
                          "%c%c %dx%dx%d alpha %g beta %g: C[%d][%d] = %g, expected %g",
                          ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, i, j, (double)C[at],
                          (double)R[at]);
        }
    free(A), free(B), free(C), free(R);
}

#ifdef ND_HAVE_GEMM_SMALL
/* nd_gemm_small, asserting that it takes the product */
static void small_only(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A,
                       int lda, const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
    ck_assert_msg(nd_gemm_small(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc),
                  "nd_gemm_small declined %dx%dx%d", M, N, K);
}
#endif

/* Every transpose over shapes at and around the tile and block edges, and the scalings. */
static void check_all(gemm_fn *fn)
{
    static const int dims[][3] = {{1, 16, 1},    {7, 16, 3},     {8, 16, 8},    {9, 17, 9},
                                  {8, 31, 5},    {16, 32, 16},   {17, 33, 40},  {64, 84, 288},
                                  {97, 48, 20},  {200, 40, 70},  {20, 50, 2},   {33, 70, 300},
                                  {3, 200, 600}, {100, 16, 257}, {64, 288, 84}, {288, 84, 64},
                                  {5, 20, 0},    {40, 9, 300},   {33, 5, 17}};
    static const double scalings[][2] = {{1, 0}, {1, 1}, {0.5, -0.7}, {0, 0.3}, {-2, 0}};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
        /* the big shapes with two scalings only (the reference is slow under the sanitizers) */
        bool big = (long)dims[d][0] * dims[d][1] * dims[d][2] > 100000;
        for (int t = 0; t < 4; t++)
            for (size_t s = 0; s < sizeof scalings / sizeof *scalings; s += big ? 2 : 1)
                check_one(fn, t & 1, t & 2, dims[d][0], dims[d][1], dims[d][2], scalings[s][0],
                          scalings[s][1]);
    }
}

START_TEST(test_nd_gemm)
{
    check_all(nd_gemm);
}
END_TEST

/* The small-product loops in each of their forms: C with 8 or more columns (rows over columns,
 * with a tail block), fewer columns than rows (the transposed rows form when A is transposed, dot
 * products otherwise, with and without a tail of K past a multiple of 8), one row, one column, and
 * K = 0; and the products they decline. */
START_TEST(test_small)
{
#ifndef ND_HAVE_GEMM_SMALL
    fprintf(stderr, "test_gemm: built without the small-product loops\n");
#else
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "test_gemm: this CPU has no AVX2 and FMA; the small loops are not run\n");
        return;
    }
    static const int dims[][3] = {{20, 50, 2}, {2, 50, 20},  {20, 2, 50}, {50, 2, 20},
                                  {9, 17, 9},  {13, 1, 9},   {3, 5, 7},   {1, 7, 3},
                                  {2, 3, 100}, {16, 32, 16}, {40, 3, 16}, {7, 9, 0}};
    static const double scalings[][2] = {{1, 0}, {1, 1}, {0.5, -0.7}, {0, 0.3}, {-2, 0}};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
        for (int t = 0; t < 4; t++)
            for (size_t s = 0; s < sizeof scalings / sizeof *scalings; s++)
                check_one(small_only, t & 1, t & 2, dims[d][0], dims[d][1], dims[d][2],
                          scalings[s][0], scalings[s][1]);
    nd_real x[1] = {0};
    ck_assert(!nd_gemm_small(false, false, 64, 64, 64, 1, x, 64, x, 64, 0, NULL, x, 64));
#endif
}
END_TEST

START_TEST(test_avx512_kernel)
{
#ifdef ND_HAVE_GEMM_AVX512
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "test_gemm: this CPU has no AVX-512F; the AVX-512 kernel is not run\n");
        return;
    }
    check_all(nd_gemm_avx512);
#else
    fprintf(stderr, "test_gemm: built without the AVX-512 kernel\n");
#endif
}
END_TEST

#if defined(ND_HAVE_SLEEF_AVX512)
void nd_kernel_tanh_avx2(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_exp_avx2(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_tanh_avx512(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_exp_avx512(nd_real *y, const nd_real *x, size_t n);
#endif

/* SLEEF's AVX-512F and AVX2 tanh and exp (tensor/kernels_avx512.c, kernels_avx2.c) agree bit for
 * bit, so which one the CPU gets never changes a result: over many magnitudes, both signs, the
 * special values, and a length that leaves a tail in both. */
START_TEST(test_transcendental_paths)
{
#if defined(ND_HAVE_SLEEF_AVX512)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx2") ||
        !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "test_gemm: this CPU lacks AVX-512F or AVX2; the paths are not compared\n");
        return;
    }
    enum { N = 20003 };
    nd_real *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    ck_assert(x && a && b);
    for (int i = 0; i < N; i++)
        x[i] = (nd_real)((i % 2 ? -1 : 1) * ldexp(1 + sin(0.7 * i), i % 50 - 40));
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = (nd_real)-0.0, x[4] = 0;
    x[5] = (nd_real)750, x[6] = (nd_real)-750, x[7] = (nd_real)19.06;
    void (*pairs[2][2])(nd_real *, const nd_real *, size_t) = {
        {nd_kernel_tanh_avx2, nd_kernel_tanh_avx512}, {nd_kernel_exp_avx2, nd_kernel_exp_avx512}};
    for (int f = 0; f < 2; f++) {
        pairs[f][0](a, x, N), pairs[f][1](b, x, N);
        ck_assert_msg(memcmp(a, b, N * sizeof *a) == 0, "%s: the AVX-512 and AVX2 kernels differ",
                      f ? "exp" : "tanh");
    }
    free(x), free(a), free(b);
#else
    fprintf(stderr, "test_gemm: built without SLEEF's AVX-512 kernels\n");
#endif
}
END_TEST

/* nd_gemm_bias is bitwise what it replaces: C's rows filled with the bias, then nd_gemm with
 * alpha = beta = 1; over every transpose, small products (each form of the small loops) and large
 * ones, a strided C, whose columns past N stay untouched. */
START_TEST(test_bias)
{
    static const int dims[][3] = {{20, 50, 2}, {20, 2, 50}, {50, 2, 20},  {2, 50, 20},
                                  {7, 3, 5},   {1, 9, 4},   {64, 80, 96}, {5, 20, 0}};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            int M = dims[d][0], N = dims[d][1], K = dims[d][2];
            int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
            size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
            size_t nc = (size_t)M * ldc;
            nd_real *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
            nd_real *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
            nd_real *bias = malloc((size_t)N * sizeof *bias);
            ck_assert(A && B && C && R && bias);
            for (size_t i = 0; i < na; i++) A[i] = (nd_real)sin(0.37 * (double)i + 0.1);
            for (size_t i = 0; i < nb; i++) B[i] = (nd_real)cos(0.11 * (double)i);
            for (int j = 0; j < N; j++) bias[j] = (nd_real)(0.5 - 0.03 * j);
            for (size_t i = 0; i < nc; i++) C[i] = R[i] = (nd_real)(1000 + i);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) R[(size_t)i * ldc + j] = bias[j];
            nd_gemm(ta, tb, M, N, K, 1, A, lda, B, ldb, 1, R, ldc);
            nd_gemm_bias(ta, tb, M, N, K, A, lda, B, ldb, bias, C, ldc);
            ck_assert_msg(memcmp(C, R, nc * sizeof *C) == 0, "%c%c %dx%dx%d: bias GEMM differs",
                          ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K);
            free(A), free(B), free(C), free(R), free(bias);
        }
}
END_TEST

/* K = 0 scales C by beta, as BLAS does, and a zero-sized C is left alone. */
START_TEST(test_degenerate)
{
    nd_real C[4] = {1, 2, 3, 4}, A[1] = {0}, B[1] = {0};
    nd_gemm(false, false, 2, 2, 0, 1, A, 1, B, 2, 0.5, C, 2);
    ck_assert(C[0] == 0.5 && C[3] == 2);
    nd_gemm(false, false, 0, 2, 3, 1, A, 3, B, 2, 0, C, 2);
    ck_assert(C[0] == 0.5);
}
END_TEST

Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_nd_gemm);
    tcase_add_test(tc, test_small);
    tcase_add_test(tc, test_avx512_kernel);
    tcase_add_test(tc, test_degenerate);
    tcase_add_test(tc, test_bias);
    tcase_add_test(tc, test_transcendental_paths);
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(gemm_suite)

/* SPDX-License-Identifier: MIT
 * tensor/kernels.h: the numeric kernels the ops call in their hot loops: GEMM (nodal's own loops
 * for small products, nodal's AVX-512 kernel or cblas, chosen once at run time), and tanh and exp
 * over arrays, vectorised through SLEEF when the CPU supports AVX-512F or AVX2 (checked once at
 * run time) and scalar libm otherwise.
 * Library-private. */
#ifndef ND_KERNELS_H
#define ND_KERNELS_H

#include "tensor/tensor.h"

/* ND_AVX2_CLONES before a function with a hot elementwise loop: GCC and Clang compile it twice,
 * for AVX2 and for the baseline, and the loader picks one for the CPU (an ifunc; x86-64 glibc
 * only, elsewhere nothing). AVX2 without FMA: no multiply-add is fused, so both versions give
 * bitwise the same results. Only for loops whose elements are independent (no reductions). */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ND_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef ND_AVX2_CLONES
#define ND_AVX2_CLONES
#endif

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; op(A) is (M, K), op(B) is (K, N). lda, ldb,
 * ldc are the row strides of A, B, C as stored. */
void nd_gemm(bool trans_a, bool trans_b, int M, int N, int K, nd_real alpha, const nd_real *A,
             int lda, const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc);
/* The same for small products (M N K up to 16384) by AVX2 + FMA vector loops, in an order fixed
 * by the shapes alone, with beta scaling bias (N,) in every row instead of C when bias is not
 * NULL; false (nothing done) for larger ones, which nd_gemm hands to the AVX-512 kernel or BLAS.
 * Built on x86-64 only (ND_HAVE_GEMM_SMALL); nd_gemm calls it when the CPU has AVX2 and FMA (and
 * NODAL_GEMM is not "blas"). */
bool nd_gemm_small(bool trans_a, bool trans_b, int M, int N, int K, nd_real alpha, const nd_real *A,
                   int lda, const nd_real *B, int ldb, nd_real beta, const nd_real *bias,
                   nd_real *C, int ldc);
/* C (M, N) = op(A) op(B) + bias, bias (N,) under every row: bitwise what filling C's rows with bias
 * and nd_gemm with alpha = beta = 1 give, without the copies when the product is small. */
void nd_gemm_bias(bool trans_a, bool trans_b, int M, int N, int K, const nd_real *A, int lda,
                  const nd_real *B, int ldb, const nd_real *bias, nd_real *C, int ldc);
#define ND_GEMM_AVX512_MIN_N 16

void nd_kernel_tanh(nd_real *y, const nd_real *x, size_t n);
void nd_kernel_exp(nd_real *y, const nd_real *x, size_t n);
/* Which path the transcendental kernels take: "sleef-avx512", "sleef-avx2" or "scalar". */
const char *nd_kernel_path(void);

#endif

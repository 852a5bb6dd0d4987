/* SPDX-License-Identifier: MIT
 * tensor/gemm_small.c: GEMM for products too small for a BLAS call (or nodal's packed AVX-512
 * kernel) to pay for its setup: a small MLP's layers at a small batch, e.g. (20, 2) x (2, 50).
 * Loops over 32-byte vectors with fused multiply-adds (this file is compiled with -mavx2 -mfma;
 * nd_gemm calls it on CPUs with both), in one of two forms:
 *   rows  C[i, :] = sum_k a(i, k) B[k, :] in tiles of 4 rows x 2 vectors of columns of accumulators
 *         kept in registers across k (B row-major; a transposed B is first copied to a stack
 *         buffer), or the same on the transposed problem C^T = op(B)^T op(A)^T when C has fewer
 *         than 8 columns and A is stored transposed;
 *   dots  C[i, j] = A[i, :] . B^T[j, :] over contiguous rows in 4 x 2 tiles (B copied to that
 *         layout when needed), for C with few columns.
 * Every element is one sum in a fixed order (in rows, k ascending; in dots, one vector of partial
 * sums over blocks of k, then its lanes in order), so the result depends on the shapes only, not
 * on the CPU. Ragged edges are masked vector loads and stores, which touch nothing past them.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tensor/kernels.h"

#define SMALL_MNK 16384     /* largest M N K taken here */
#define SMALL_PACK 2048     /* largest operand copied to the stack (elements) */
#define SMALL_FEW_COLUMNS 8 /* C narrower than this: the transposed rows form or dots */

/* 32 bytes of reals (GCC/Clang vector extension; this file is compiled with -mavx2) */
#define VL ((int)(32 / sizeof(nd_real)))
typedef nd_real vec __attribute__((vector_size(32)));

static inline vec load(const nd_real *p)
{
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(nd_real *p, vec v)
{
    memcpy(p, &v, sizeof v);
}

/* The first n < VL elements at p, the rest 0, and their store: AVX2 masked moves, which touch
 * no memory past the n elements. */
#ifdef ND_REAL_FLOAT
typedef int32_t lane;
#define MASKLOAD(p, m) ((vec)_mm256_maskload_ps(p, m))
#define FMADD(a, b, c) ((vec)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define SPLAT(x) ((vec)_mm256_set1_ps(x))
#define MASKSTORE(p, m, v) _mm256_maskstore_ps(p, m, (__m256)(v))
#else
typedef int64_t lane;
#define MASKLOAD(p, m) ((vec)_mm256_maskload_pd(p, m))
#define FMADD(a, b, c) ((vec)_mm256_fmadd_pd((__m256d)(a), (__m256d)(b), (__m256d)(c)))
#define SPLAT(x) ((vec)_mm256_set1_pd(x))
#define MASKSTORE(p, m, v) _mm256_maskstore_pd(p, m, (__m256d)(v))
#endif
static const lane mask_table[2 * 8] = {-1, -1, -1, -1, -1, -1, -1, -1};

static inline __m256i mask(int n)
{
    __m256i m;
    memcpy(&m, mask_table + 8 - n, sizeof m);
    return m;
}

static inline vec load_part(const nd_real *p, int n)
{
    return MASKLOAD(p, mask(n));
}

/* Where the results go: element (i, j) of the product to c[i rs + j cs] as alpha s + beta S(i, j),
 * S(i, j) = src[i srs + j scs] (C itself, or a bias row with srs = 0), not read when beta is 0 (as
 * in BLAS). */
typedef struct {
    nd_real *c;
    size_t rs, cs;
    const nd_real *src;
    size_t srs, scs;
    nd_real alpha, beta;
} dest;

static inline void put(const dest *d, size_t i, size_t j, nd_real s)
{
    nd_real *c = d->c + i * d->rs + j * d->cs;
    *c = d->beta == 0 ? d->alpha * s : d->alpha * s + d->beta * d->src[i * d->srs + j * d->scs];
}

/* VL (or the first n < VL) results from (i, j) on, when cs = scs = 1 */
static inline void put_vec(const dest *d, size_t i, size_t j, vec s)
{
    nd_real *c = d->c + i * d->rs + j;
    const nd_real *src = d->src + i * d->srs + j;
    store(c, d->beta == 0 ? d->alpha * s : d->alpha * s + d->beta * load(src));
}

static inline void put_part(const dest *d, size_t i, size_t j, vec s, int n)
{
    nd_real *c = d->c + i * d->rs + j;
    const nd_real *src = d->src + i * d->srs + j;
    MASKSTORE(c, mask(n), d->beta == 0 ? d->alpha * s : d->alpha * s + d->beta * load_part(src, n));
}

/* acc + x b with one rounding (FMA); x a scalar */
static inline vec madd(nd_real x, vec b, vec acc)
{
    return FMADD(SPLAT(x), b, acc);
}

/* Rows i0 .. i0 + MR - 1 of the rows form (below), MR a constant after inlining: blocks of 2 VL
 * columns in 2 MR vector accumulators, then at most one block of VL, then the columns left in
 * masked vectors. Each element's sum runs over k ascending. */
static inline __attribute__((always_inline)) void row_tile(int MR, int N, int K, const nd_real *a,
                                                           size_t ars, size_t acs, const nd_real *B,
                                                           size_t ldb, const dest *d, size_t i0)
{
    const bool vec_out = d->cs == 1 && d->scs == 1;
    int j = 0;
    for (; j + 2 * VL <= N; j += 2 * VL) {
        vec acc[4][2] = {{{0}}};
        const nd_real *ak = a, *b = B + j;
        for (int k = 0; k < K; k++, ak += acs, b += ldb) {
            const vec b0 = load(b), b1 = load(b + VL);
            for (int r = 0; r < MR; r++)
                acc[r][0] = madd(ak[r * ars], b0, acc[r][0]),
                acc[r][1] = madd(ak[r * ars], b1, acc[r][1]);
        }
        for (int r = 0; r < MR; r++) {
            if (vec_out) {
                put_vec(d, i0 + r, j, acc[r][0]), put_vec(d, i0 + r, j + VL, acc[r][1]);
                continue;
            }
            for (int u = 0; u < VL; u++) {
                put(d, i0 + r, j + u, acc[r][0][u]);
                put(d, i0 + r, j + VL + u, acc[r][1][u]);
            }
        }
    }
    if (j + VL <= N) {
        vec acc[4] = {{0}};
        const nd_real *ak = a, *b = B + j;
        for (int k = 0; k < K; k++, ak += acs, b += ldb) {
            const vec b0 = load(b);
            for (int r = 0; r < MR; r++) acc[r] = madd(ak[r * ars], b0, acc[r]);
        }
        for (int r = 0; r < MR; r++) {
            if (vec_out)
                put_vec(d, i0 + r, j, acc[r]);
            else
                for (int u = 0; u < VL; u++) put(d, i0 + r, j + u, acc[r][u]);
        }
        j += VL;
    }
    if (j == N) return;
    const int n = N - j; /* 0 < n < VL columns left: masked vectors */
    vec acc[4] = {{0}};
    const nd_real *ak = a, *b = B + j;
    for (int k = 0; k < K; k++, ak += acs, b += ldb) {
        const vec b0 = load_part(b, n);
        for (int r = 0; r < MR; r++) acc[r] = madd(ak[r * ars], b0, acc[r]);
    }
    for (int r = 0; r < MR; r++) {
        if (vec_out)
            put_part(d, i0 + r, j, acc[r], n);
        else
            for (int u = 0; u < n; u++) put(d, i0 + r, j + u, acc[r][u]);
    }
}

/* The rows form: product element (i, j) = sum_k A[i*ars + k*acs] B[k*ldb + j], in tiles of 4 rows,
 * then of 2, then row by row. */
static inline __attribute__((always_inline)) void rows(int M, int N, int K, const nd_real *A,
                                                       size_t ars, size_t acs, const nd_real *B,
                                                       size_t ldb, const dest *d)
{
    int i = 0;
    for (; i + 4 <= M; i += 4) row_tile(4, N, K, A + i * ars, ars, acs, B, ldb, d, (size_t)i);
    for (; i + 2 <= M; i += 2) row_tile(2, N, K, A + i * ars, ars, acs, B, ldb, d, (size_t)i);
    for (; i < M; i++) row_tile(1, N, K, A + i * ars, ars, acs, B, ldb, d, (size_t)i);
}

/* into C's rows (cs = scs = 1: stored by vectors) */
static void rows_c(int M, int N, int K, const nd_real *A, size_t ars, size_t acs, const nd_real *B,
                   size_t ldb, nd_real *C, size_t ldc, const nd_real *src, size_t srs,
                   nd_real alpha, nd_real beta)
{
    const dest d = {C, ldc, 1, src, srs, 1, alpha, beta};
    rows(M, N, K, A, ars, acs, B, ldb, &d);
}

/* anywhere else (the transposed problem: stored element by element) */
static void rows_any(int M, int N, int K, const nd_real *A, size_t ars, size_t acs,
                     const nd_real *B, size_t ldb, const dest *d)
{
    rows(M, N, K, A, ars, acs, B, ldb, d);
}

/* the sum of v's elements, in a fixed order */
static inline nd_real hsum(vec v)
{
    nd_real r = v[0];
    for (int u = 1; u < VL; u++) r += v[u];
    return r;
}

/* An MR x NR tile of the dots form at (i0, j0) (MR, NR constants after inlining): each element's
 * partial sums in one vector over blocks of VL k (the last one masked), added up in a fixed
 * order. A and Bt point at the tile's first rows. */
static inline __attribute__((always_inline)) void dot_tile(int MR, int NR, int K, const nd_real *A,
                                                           size_t lda, const nd_real *Bt,
                                                           size_t ldb, const dest *d, size_t i0,
                                                           size_t j0)
{
    vec acc[4][2] = {{{0}}};
    int k = 0;
    for (; k + VL <= K; k += VL) {
        vec a[4], b[2];
        for (int r = 0; r < MR; r++) a[r] = load(A + r * lda + k);
        for (int q = 0; q < NR; q++) b[q] = load(Bt + q * ldb + k);
        for (int r = 0; r < MR; r++)
            for (int q = 0; q < NR; q++) acc[r][q] = FMADD(a[r], b[q], acc[r][q]);
    }
    if (k < K) { /* the last K - k < VL elements, masked: zeros in the other lanes */
        vec a[4], b[2];
        for (int r = 0; r < MR; r++) a[r] = load_part(A + r * lda + k, K - k);
        for (int q = 0; q < NR; q++) b[q] = load_part(Bt + q * ldb + k, K - k);
        for (int r = 0; r < MR; r++)
            for (int q = 0; q < NR; q++) acc[r][q] = FMADD(a[r], b[q], acc[r][q]);
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NR; q++) put(d, i0 + r, j0 + q, hsum(acc[r][q]));
}

/* Rows i0 .. i0 + MR - 1 of the dots form, MR a constant after inlining: tiles of MR x 2, then
 * MR x 1. */
static inline __attribute__((always_inline)) void dot_rows(int MR, int N, int K, const nd_real *A,
                                                           size_t lda, const nd_real *Bt,
                                                           size_t ldb, const dest *d, size_t i0)
{
    int j = 0;
    for (; j + 2 <= N; j += 2) dot_tile(MR, 2, K, A, lda, Bt + j * ldb, ldb, d, i0, (size_t)j);
    if (j < N) dot_tile(MR, 1, K, A, lda, Bt + j * ldb, ldb, d, i0, (size_t)j);
}

/* The dots form: C[i, j] = A[i, :] . Bt[j, :], A (M, K; lda) and Bt (N, K; ldb) row-major, in
 * tiles of 4 rows, then of 2, then row by row. */
static void dots(int M, int N, int K, const nd_real *A, size_t lda, const nd_real *Bt, size_t ldb,
                 const dest *d)
{
    int i = 0;
    for (; i + 4 <= M; i += 4) dot_rows(4, N, K, A + i * lda, lda, Bt, ldb, d, (size_t)i);
    for (; i + 2 <= M; i += 2) dot_rows(2, N, K, A + i * lda, lda, Bt, ldb, d, (size_t)i);
    for (; i < M; i++) dot_rows(1, N, K, A + i * lda, lda, Bt, ldb, d, (size_t)i);
}

/* dst (cols, rows) = src (rows, cols; ld)^T, contiguous */
static void transpose(nd_real *dst, const nd_real *src, int rows, int cols, size_t ld)
{
    if (cols == 2) { /* a layer of 2 inputs or outputs: both columns in one pass */
        nd_real *d1 = dst + rows;
        for (int r = 0; r < rows; r++, src += ld) dst[r] = src[0], d1[r] = src[1];
        return;
    }
    for (int c = 0; c < cols; c++, dst += rows) {
        const nd_real *s = src + c;
        for (int r = 0; r < rows; r++, s += ld) dst[r] = *s;
    }
}

bool nd_gemm_small(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
                   const nd_real *B, int ldb, nd_real beta, const nd_real *bias, nd_real *C,
                   int ldc)
{
    if ((long long)M * N * K > SMALL_MNK) return false;
    nd_real buf[SMALL_PACK];
    const size_t sa = (size_t)lda, sc = (size_t)ldc;
    size_t sb = (size_t)ldb;
    /* what beta scales: C itself, or the bias row under every row of C */
    const nd_real *src = bias ? bias : C;
    const size_t srs = bias ? 0 : sc;
    if (N >= SMALL_FEW_COLUMNS || N >= M) { /* rows over C's columns: B as (K, N) */
        if (tb) {
            if ((long long)K * N > SMALL_PACK) return false;
            transpose(buf, B, N, K, sb);
            B = buf, tb = false, sb = (size_t)N;
        }
        rows_c(M, N, K, A, ta ? 1 : sa, ta ? sa : 1, B, sb, C, sc, src, srs, alpha, beta);
    } else if (ta) { /* C^T (N, M) = op(B)^T op(A)^T, where op(A)^T is A as stored (K, M) */
        /* product element (j, i) is C's (i, j): S(j, i) = src[i srs + j] */
        const dest d = {C, 1, sc, src, 1, srs, alpha, beta};
        rows_any(N, M, K, B, tb ? sb : 1, tb ? 1 : sb, A, sa, &d);
    } else { /* dots: A's rows (M, K) against op(B)'s columns as rows (N, K) */
        if (!tb) {
            if ((long long)K * N > SMALL_PACK) return false;
            transpose(buf, B, K, N, sb);
            B = buf, sb = (size_t)K;
        }
        const dest d = {C, sc, 1, src, srs, 1, alpha, beta};
        dots(M, N, K, A, sa, B, sb, &d);
    }
    return true;
}

/* SPDX-License-Identifier: MIT
 * tensor/gemm_avx512.c: nodal's own GEMM for CPUs with AVX-512, for the BLAS builds that do not
 * use it (OpenBLAS 0.3.21 runs its AVX2 kernels on AMD Zen 4 and 5, at half the speed their
 * AVX-512 units give). Compiled with -mavx512f; kernels.c calls it only after checking the CPU.
 *
 * The blocking is BLIS's: K is cut into blocks of at most KC, M into blocks of at most MC; per
 * (K block, M block) the block of alpha op(A) is packed into MR-row panels (kc, MR) that stay in
 * L2, and for each NR-column sliver of op(B) its (kc, NR) block is packed once and stays in L1
 * while the micro-kernel walks every panel of A over it. The micro-kernel keeps an (MR, NR) tile
 * of C in 2*MR vector registers and adds kc rank-1 updates (one broadcast of A per row, two loads
 * of B per step). Edges are zero-padded in the packs and masked at the store, so every tile takes
 * the same path. The packs live on the stack (about 230 KB): nothing is allocated. Two shapes skip
 * packing: an untransposed B with at most 16 rows of C is read in place, and A B^T with at most 16
 * rows or fewer than NR columns of C is computed as 4x4 tiles of dot products (gemm_nt_dots).
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#include "tensor/tensor.h"

#ifdef ND_REAL_FLOAT
#define V 16 /* reals per vector */
typedef __m512 vec;
typedef __mmask16 vmask;
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VFMA _mm512_fmadd_ps
#define VMUL _mm512_mul_ps
#define VLOADM _mm512_maskz_loadu_ps
#define VSTOREM _mm512_mask_storeu_ps
#define VREDUCE _mm512_reduce_add_ps
#else
#define V 8
typedef __m512d vec;
typedef __mmask8 vmask;
#define VZERO _mm512_setzero_pd
#define VSET1 _mm512_set1_pd
#define VLOAD _mm512_loadu_pd
#define VSTORE _mm512_storeu_pd
#define VFMA _mm512_fmadd_pd
#define VMUL _mm512_mul_pd
#define VLOADM _mm512_maskz_loadu_pd
#define VSTOREM _mm512_mask_storeu_pd
#define VREDUCE _mm512_reduce_add_pd
#endif

#define MR 8       /* rows of the micro-tile */
#define NR (2 * V) /* columns of the micro-tile: two vectors */
#define KC 256     /* most rank-1 updates per packed block */
#define MC 96      /* most rows per packed block of A (a multiple of MR) */
/* Up to this many rows of C, an untransposed B is read in place rather than packed: a packed
 * sliver would serve too few panels to repay its copy (an ODE-Net's convolutions have 16). */
#define B_IN_PLACE_ROWS 16
/* Up to this many rows of C (or with fewer than NR columns), A B^T is computed as dot products
 * (gemm_nt_dots) */
#define DOT_ROWS 16

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* The first n lanes of a vector (n may be <= 0 or >= V). */
static vmask lanes(int n)
{
    return n <= 0 ? 0 : n >= V ? (vmask)~0u : (vmask)((1u << n) - 1);
}

/* ap (ceil(mc/MR) panels of (kc, MR)) = alpha op(A)[i0 .. i0+mc, k0 .. k0+kc], rows past mc zero.
 */
static void pack_a(bool ta, const nd_real *A, int lda, int i0, int k0, int mc, int kc,
                   nd_real alpha, nd_real *ap)
{
    for (int p = 0; p < mc; p += MR, ap += (size_t)MR * kc) {
        int rows = min_int(MR, mc - p);
        for (int i = 0; i < MR; i++) {
            if (i >= rows) {
                for (int k = 0; k < kc; k++) ap[(size_t)k * MR + i] = 0;
                continue;
            }
            int r = i0 + p + i;
            if (ta) /* op(A)[r][k] = A[k][r] */
                for (int k = 0; k < kc; k++)
                    ap[(size_t)k * MR + i] = alpha * A[(size_t)(k0 + k) * lda + r];
            else
                for (int k = 0; k < kc; k++)
                    ap[(size_t)k * MR + i] = alpha * A[(size_t)r * lda + k0 + k];
        }
    }
}

/* bp (kc, NR) = op(B)[k0 .. k0+kc, j0 .. j0+nr], columns past nr zero. */
static void pack_b(bool tb, const nd_real *B, int ldb, int k0, int j0, int kc, int nr, nd_real *bp)
{
    if (!tb) {
        vmask m0 = lanes(nr), m1 = lanes(nr - V);
        for (int k = 0; k < kc; k++) {
            const nd_real *row = B + (size_t)(k0 + k) * ldb + j0;
            VSTORE(bp + (size_t)k * NR, VLOADM(m0, row));
            VSTORE(bp + (size_t)k * NR + V, VLOADM(m1, row + V));
        }
        return;
    }
    for (int j = 0; j < NR; j++) { /* op(B)[k][j] = B[j][k] */
        const nd_real *col = B + (size_t)(j0 + j) * ldb + k0;
        if (j < nr)
            for (int k = 0; k < kc; k++) bp[(size_t)k * NR + j] = col[k];
        else
            for (int k = 0; k < kc; k++) bp[(size_t)k * NR + j] = 0;
    }
}

/* The micro-kernel's rows, spelled out: the 2*MR accumulators must be named registers (an array of
 * them is partly spilled to the stack by GCC -O3, which halves the speed). */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define ROW_ZERO(i) vec c##i##a = VZERO(), c##i##b = VZERO();
#define ROW_UPDATE(i)                                                                              \
    {                                                                                              \
        vec ai = VSET1(a[i]);                                                                      \
        c##i##a = VFMA(ai, b0, c##i##a);                                                           \
        c##i##b = VFMA(ai, b1, c##i##b);                                                           \
    }
#define ROW_STORE(i)                                                                               \
    if (i < mr) {                                                                                  \
        nd_real *ci = c + (size_t)i * ldc;                                                         \
        if (beta != 0) {                                                                           \
            c##i##a = VFMA(vb, VLOADM(m0, ci), c##i##a);                                           \
            c##i##b = VFMA(vb, VLOADM(m1, ci + V), c##i##b);                                       \
        }                                                                                          \
        VSTOREM(ci, m0, c##i##a);                                                                  \
        VSTOREM(ci + V, m1, c##i##b);                                                              \
    }

/* c (mr, nr; row stride ldc) = beta c + a @ b for a panel a (kc, MR) and a sliver b (kc, nr;
 * row stride ldb: NR when packed, B's own when read in place, its first nr columns read); c is not
 * read when beta is 0. */
__attribute__((noinline)) static void micro_kernel(int kc, const nd_real *restrict a,
                                                   const nd_real *restrict b, int ldb, nd_real *c,
                                                   int ldc, int mr, int nr, nd_real beta)
{
    vmask m0 = lanes(nr), m1 = lanes(nr - V);
    FOR_ROWS(ROW_ZERO)
    for (int k = 0; k < kc; k++, a += MR, b += ldb) {
        vec b0 = VLOADM(m0, b), b1 = VLOADM(m1, b + V);
        FOR_ROWS(ROW_UPDATE)
    }
    vec vb = VSET1(beta);
    FOR_ROWS(ROW_STORE)
}

/* n split into the fewest blocks of at most max, of equal size (rounded up to a multiple of
 * unit). */
static int block_size(int n, int max, int unit)
{
    int blocks = (n + max - 1) / max, size = (n + blocks - 1) / blocks;
    return (size + unit - 1) / unit * unit;
}

/* C (M, N) = beta C when there is nothing to add (K = 0 or alpha = 0): BLAS's semantics. */
static void scale_c(int M, int N, nd_real beta, nd_real *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
}

/* The dot-product path for C = alpha A B^T + beta C (A (M, K) and B (N, K), both read along their
 * rows) when C has few rows: each 4x4 tile of C is 16 dot products over K held in vector
 * registers and reduced at the end, with no packing (packing B^T transposes it element by element,
 * which costs more than the product itself when C has 16 rows: a conv's weight gradient). Rows and
 * columns past the edge repeat the last one and are not stored. */
#define DOT_ROW(X, r) X(r, 0) X(r, 1) X(r, 2) X(r, 3)
#define DOT_TILE(X) DOT_ROW(X, 0) DOT_ROW(X, 1) DOT_ROW(X, 2) DOT_ROW(X, 3)
#define DOT_ZERO(r, c) vec d##r##c = VZERO();
#define DOT_FMA(r, c) d##r##c = VFMA(a##r, b##c, d##r##c);
#define DOT_STORE(r, c)                                                                            \
    if (r < mi && c < nj) {                                                                        \
        nd_real *cij = C + (size_t)(i0 + r) * ldc + j0 + c;                                        \
        nd_real sum = alpha * VREDUCE(d##r##c);                                                    \
        *cij = beta == 0 ? sum : sum + beta * *cij;                                                \
    }
#define DOT_LOAD(m, k)                                                                             \
    vec a0 = VLOADM(m, ar[0] + k), a1 = VLOADM(m, ar[1] + k), a2 = VLOADM(m, ar[2] + k),           \
        a3 = VLOADM(m, ar[3] + k), b0 = VLOADM(m, br[0] + k), b1 = VLOADM(m, br[1] + k),           \
        b2 = VLOADM(m, br[2] + k), b3 = VLOADM(m, br[3] + k);

static void dot_tile(int i0, int j0, int mi, int nj, int K, nd_real alpha, const nd_real *A,
                     int lda, const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
    const nd_real *ar[4], *br[4];
    for (int r = 0; r < 4; r++) {
        ar[r] = A + (size_t)(i0 + min_int(r, mi - 1)) * lda;
        br[r] = B + (size_t)(j0 + min_int(r, nj - 1)) * ldb;
    }
    DOT_TILE(DOT_ZERO)
    vmask all = lanes(V);
    int k = 0;
    for (; k + V <= K; k += V) {
        DOT_LOAD(all, k)
        DOT_TILE(DOT_FMA)
    }
    if (k < K) {
        vmask tail = lanes(K - k);
        DOT_LOAD(tail, k)
        DOT_TILE(DOT_FMA)
    }
    DOT_TILE(DOT_STORE)
}

static void gemm_nt_dots(int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
                         const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
    for (int i0 = 0; i0 < M; i0 += 4)
        for (int j0 = 0; j0 < N; j0 += 4)
            dot_tile(i0, j0, min_int(4, M - i0), min_int(4, N - j0), K, alpha, A, lda, B, ldb, beta,
                     C, ldc);
}

void nd_gemm_avx512(bool ta, bool tb, int M, int N, int K, nd_real alpha, const nd_real *A, int lda,
                    const nd_real *B, int ldb, nd_real beta, nd_real *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (!ta && tb && (M <= DOT_ROWS || N < NR)) {
        gemm_nt_dots(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    _Alignas(64) nd_real ap[MC * KC];
    _Alignas(64) nd_real bp[KC * NR];
    int kb = block_size(K, KC, 1), mb = block_size(M, MC, MR);
    for (int k0 = 0; k0 < K; k0 += kb) {
        int kc = min_int(kb, K - k0);
        nd_real beta_k = k0 == 0 ? beta : 1; /* later K blocks add to what the first wrote */
        for (int i0 = 0; i0 < M; i0 += mb) {
            int mc = min_int(mb, M - i0);
            pack_a(ta, A, lda, i0, k0, mc, kc, alpha, ap);
            for (int j0 = 0; j0 < N; j0 += NR) {
                int nr = min_int(NR, N - j0);
                const nd_real *b = B + (size_t)k0 * ldb + j0; /* in place: (kc, nr), stride ldb */
                int ldb_k = ldb;
                if (tb || mc > B_IN_PLACE_ROWS) { /* packed: (kc, NR), stride NR */
                    pack_b(tb, B, ldb, k0, j0, kc, nr, bp);
                    b = bp, ldb_k = NR;
                }
                for (int p = 0; p < mc; p += MR)
                    micro_kernel(kc, ap + (size_t)p * kc, b, ldb_k, C + (size_t)(i0 + p) * ldc + j0,
                                 ldc, min_int(MR, mc - p), nr, beta_k);
            }
        }
    }
}

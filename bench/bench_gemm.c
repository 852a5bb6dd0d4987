/* SPDX-License-Identifier: MIT
 * bench/bench_gemm.c: nodal's GEMM (nd_gemm: the AVX-512 kernel, the small-product loops or the
 * BLAS, as the library chooses on this CPU) against the BLAS's cblas call on the same operands,
 * on the products the demos' convolutions and linear layers make, one thread. The two alternate
 * call by call in rounds, so machine load hits both alike; one JSON object per shape on stdout
 * with both GFLOP/s (medians over the rounds) and their ratio.
 * tensor/kernels.c is library-private: it is compiled into this program, as into tests/test_gemm.
 * Usage: bench_gemm [--rounds N] [--ms M]   (N rounds of about M ms per side, default 7 and 40)
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "flags.h"
#include "json.h"
#include "stats.h"
#include "tensor/kernels.h"

typedef struct {
    const char *what;
    int M, N, K;
    bool ta, tb;
} gemm_shape;

/* the products of one tile of examples/mnist.c's and examples/odenet.c's convolutions (forward,
 * weight gradient, input gradient), mnist's linear layer, and a square reference */
static const gemm_shape shapes[] = {
    {"mnist conv 32->64 14x14, forward", 64, 196, 288, false, false},
    {"mnist conv 32->64, weight gradient", 64, 288, 196, false, true},
    {"mnist conv 32->64, input gradient", 288, 196, 64, true, false},
    {"mnist conv 1->32 28x28, forward", 32, 784, 9, false, false},
    {"mnist conv 1->32, weight gradient", 32, 9, 784, false, true},
    {"mnist linear 3136->10, forward", 64, 10, 3136, false, true},
    {"odenet conv 17->16 7x7 (8 images), forward", 16, 392, 153, false, false},
    {"odenet conv 17->16, weight gradient", 16, 153, 392, false, true},
    {"odenet conv 17->16, input gradient", 153, 392, 16, true, false},
    {"square 512", 512, 512, 512, false, false},
};

static void blas_call(const gemm_shape *s, const nd_real *A, const nd_real *B, nd_real *C)
{
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
#ifdef ND_REAL_FLOAT
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                s->M, s->N, s->K, 1, A, lda, B, ldb, 0, C, s->N);
#else
    cblas_dgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                s->M, s->N, s->K, 1, A, lda, B, ldb, 0, C, s->N);
#endif
}

static void nodal_call(const gemm_shape *s, const nd_real *A, const nd_real *B, nd_real *C)
{
    nd_gemm(s->ta, s->tb, s->M, s->N, s->K, 1, A, s->ta ? s->M : s->K, B, s->tb ? s->K : s->N, 0, C,
            s->N);
}

/* GFLOP/s of `call` repeated for about ms milliseconds */
static double rate(void (*call)(const gemm_shape *, const nd_real *, const nd_real *, nd_real *),
                   const gemm_shape *s, const nd_real *A, const nd_real *B, nd_real *C, double ms)
{
    long reps = 0;
    double t0 = clock_wall_ms(), t;
    do {
        call(s, A, B, C);
        reps++;
    } while ((t = clock_wall_ms() - t0) < ms);
    return 2.0 * s->M * s->N * s->K * (double)reps / (t * 1e6);
}

/* The largest difference between the two results, relative to the largest value. */
static double difference(const gemm_shape *s, const nd_real *A, const nd_real *B, nd_real *C,
                         nd_real *D)
{
    nodal_call(s, A, B, C), blas_call(s, A, B, D);
    double diff = 0, big = 0;
    for (size_t i = 0; i < (size_t)s->M * s->N; i++) {
        diff = fmax(diff, fabs((double)C[i] - (double)D[i]));
        big = fmax(big, fabs((double)D[i]));
    }
    return diff / (big > 0 ? big : 1);
}

static void bench_shape(const gemm_shape *s, int rounds, double ms)
{
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
    nd_real *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    nd_real *C = malloc(nc * sizeof *C), *D = malloc(nc * sizeof *D);
    double *r = malloc(2 * (size_t)rounds * sizeof *r);
    if (!A || !B || !C || !D || !r) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < na; i++) A[i] = (nd_real)sin(0.37 * (double)i);
    for (size_t i = 0; i < nb; i++) B[i] = (nd_real)cos(0.11 * (double)i);
    double diff = difference(s, A, B, C, D);
    for (int k = 0; k < rounds; k++) { /* the order flips every round */
        bool nodal_first = k % 2 == 0;
        double first = rate(nodal_first ? nodal_call : blas_call, s, A, B, C, ms);
        double second = rate(nodal_first ? blas_call : nodal_call, s, A, B, C, ms);
        r[k] = nodal_first ? first : second, r[rounds + k] = nodal_first ? second : first;
    }
    double nodal = median(r, rounds), blas = median(r + rounds, rounds);
    json_writer w = json_begin(stdout);
    json_str(&w, "case", s->what);
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "M", s->M), json_int(&w, "N", s->N), json_int(&w, "K", s->K);
    json_str(&w, "op", s->ta ? "A^T B" : s->tb ? "A B^T" : "A B");
    json_num(&w, "nodal_gflops", nodal);
    json_num(&w, "blas_gflops", blas);
    json_num(&w, "ratio", nodal / blas);
    json_num(&w, "max_rel_difference", diff);
    json_int(&w, "rounds", rounds);
    json_end(&w);
    free(A), free(B), free(C), free(D), free(r);
}

int main(int argc, char **argv)
{
    int rounds = 7, ms = 40;
    const flag_spec flags[] = {
        FLAG_INT("rounds", &rounds, 1, 1000, "alternating rounds per shape (medians)"),
        FLAG_INT("ms", &ms, 1, 100000, "milliseconds per side and round"),
    };
    int rc = flags_parse("bench_gemm", "nodal's GEMM against the BLAS, side by side.", flags,
                         FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    openblas_set_num_threads(1);
    fprintf(stderr, "bench_gemm: nd_real = %s, %s\n", ND_REAL_NAME, OPENBLAS_VERSION);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        fprintf(stderr, "%s...\n", shapes[i].what);
        bench_shape(&shapes[i], rounds, ms);
    }
    return 0;
}

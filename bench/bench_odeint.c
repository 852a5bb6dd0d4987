/* SPDX-License-Identifier: MIT
 * bench/bench_odeint.c: what odeint costs around the arithmetic it does. One JSON object per
 * line on stdout (progress on stderr):
 *   f_eval          one evaluation of the spiral model f(y) = tanh(y^3 W1^T + b1) W2^T + b2 at
 *                   batch 20 through nodal's ops, against the same arithmetic written out (the
 *                   same cblas calls, the same tanh kernel, plain loops)
 *   aug_eval        one augmented adjoint evaluation: f plus the VJP over (y, W1, b1, W2, b2)
 *                   through nd_grad, against the hand-written VJP
 *   adjoint_memory  arena bytes and resident memory after forward + backward over [0, T] and
 *                   over [0, 10 T] (T = 2), for the adjoint (flat) and backprop through the solver
 * Usage: bench_odeint [--evals N] (timed evaluations per case, default 20000)
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flags.h"
#include "json.h"
#include "nodal.h"

#if defined(ND_HAVE_SLEEF) && !defined(ND_REAL_FLOAT)
/* the kernel the library uses on AVX2 machines, for a like-for-like baseline (bare_tanh_avx2.c) */
void bare_tanh_avx2(double *y, const double *x, size_t n);
#endif

static void bare_tanh(nd_real *y, const nd_real *x, size_t n)
{
#if defined(ND_HAVE_SLEEF) && !defined(ND_REAL_FLOAT)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        bare_tanh_avx2(y, x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = tanh(x[i]);
}

#ifdef ND_REAL_FLOAT
#define GEMM cblas_sgemm
#else
#define GEMM cblas_dgemm
#endif

enum { B = 20, D = 2, H = 50 };

typedef struct {
    nd_tensor *W1, *b1, *W2, *b2; /* (H, D), (H,), (D, H), (D,) */
} model;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static long resident_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int f_model(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *data)
{
    (void)t;
    model *m = data;
    nd_tensor *h = nd_tanh(
        ctx, nd_add(ctx, nd_matmul_t(ctx, nd_pow_scalar(ctx, y, 3), m->W1, false, true), m->b1));
    *dy = nd_add(ctx, nd_matmul_t(ctx, h, m->W2, false, true), m->b2);
    return *dy ? 0 : -1;
}

/* ---- the same arithmetic, written out ------------------------------------------------------ */

typedef struct {
    nd_real y3[B * D], pre[B * H], h[B * H], out[B * D]; /* forward */
    nd_real dpre[B * H], dy3[B * D], dz[B * D], dW1[H * D], db1[H], dW2[D * H], db2[D]; /* VJP */
} bare_work;

static void bare_forward(const model *m, const nd_real *y, bare_work *w)
{
    for (int i = 0; i < B * D; i++) w->y3[i] = y[i] * y[i] * y[i];
    for (int i = 0; i < B; i++) memcpy(w->pre + i * H, m->b1->data, H * sizeof(nd_real));
    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, D, 1, w->y3, D, m->W1->data, D, 1, w->pre,
         H);
    bare_tanh(w->h, w->pre, B * H);
    for (int i = 0; i < B; i++) memcpy(w->out + i * D, m->b2->data, D * sizeof(nd_real));
    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, H, 1, w->h, H, m->W2->data, H, 1, w->out,
         D);
}

/* the VJP of the forward with seed g (B, D) */
static void bare_vjp(const model *m, const nd_real *y, const nd_real *g, bare_work *w)
{
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, D, H, B, 1, g, D, w->h, H, 0, w->dW2, H);
    for (int k = 0; k < D; k++) {
        w->db2[k] = 0;
        for (int i = 0; i < B; i++) w->db2[k] += g[i * D + k];
    }
    GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, D, 1, g, D, m->W2->data, H, 0, w->dpre,
         H);
    for (int i = 0; i < B * H; i++) w->dpre[i] *= 1 - w->h[i] * w->h[i];
    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, H, D, B, 1, w->dpre, H, w->y3, D, 0, w->dW1, D);
    for (int k = 0; k < H; k++) {
        w->db1[k] = 0;
        for (int i = 0; i < B; i++) w->db1[k] += w->dpre[i * H + k];
    }
    GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, H, 1, w->dpre, H, m->W1->data, D, 0,
         w->dy3, D);
    for (int i = 0; i < B * D; i++) w->dz[i] = w->dy3[i] * 3 * y[i] * y[i];
}

/* ---- cases ------------------------------------------------------------------------------------
 */

/* one case of bench_evals: the best time per evaluation, nodal's and the bare arithmetic's */
static void print_eval(const char *name, double best_nodal, double best_bare)
{
    json_writer w = json_begin(stdout);
    json_str(&w, "case", name);
    json_int(&w, "batch", B);
    json_int(&w, "hidden", H);
    json_str(&w, "real", ND_REAL_NAME);
    json_num(&w, "ns_per_eval", 1e9 * best_nodal);
    json_num(&w, "bare_ns_per_eval", 1e9 * best_bare);
    json_num(&w, "ratio", best_nodal / best_bare);
    json_end(&w);
}

static void bench_evals(nd_ctx *ctx, model *m, int n)
{
    nd_rng rng = nd_rng_seed(1);
    nd_tensor *y = nd_tensor_create(ctx, 2, (int[]){B, D}, false);
    nd_tensor *g = nd_tensor_create(ctx, 2, (int[]){B, D}, false);
    nd_fill_uniform(y, &rng, -1, 1);
    nd_fill_uniform(g, &rng, -1, 1);
    bare_work *w = calloc(1, sizeof *w);
    nd_tensor *params[4] = {m->W1, m->b1, m->W2, m->b2};

    /* f alone, no graph */
    double best_nodal = INFINITY, best_bare = INFINITY;
    for (int rep = 0; rep < 5; rep++) {
        bool prev = nd_ctx_set_grad(ctx, false);
        double t0 = now();
        for (int i = 0; i < n; i++) {
            nd_mark mk = nd_ctx_mark(ctx);
            nd_tensor *d;
            f_model(ctx, NULL, y, &d, m);
            nd_ctx_rewind(ctx, mk);
        }
        best_nodal = fmin(best_nodal, (now() - t0) / n);
        nd_ctx_set_grad(ctx, prev);
        t0 = now();
        for (int i = 0; i < n; i++) bare_forward(m, y->data, w);
        best_bare = fmin(best_bare, (now() - t0) / n);
    }
    print_eval("f_eval", best_nodal, best_bare);

    /* f and its VJP, as the adjoint's augmented dynamics evaluates them */
    best_nodal = best_bare = INFINITY;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int i = 0; i < n; i++) {
            nd_mark mk = nd_ctx_mark(ctx);
            nd_tensor *z = nd_copy(ctx, y), *d, *vjp[5];
            z->requires_grad = true;
            nd_tensor *in[5] = {z, params[0], params[1], params[2], params[3]};
            f_model(ctx, NULL, z, &d, m);
            nd_grad(ctx, &d, &g, 1, in, 5, vjp, 0);
            nd_ctx_rewind(ctx, mk);
        }
        best_nodal = fmin(best_nodal, (now() - t0) / n);
        t0 = now();
        for (int i = 0; i < n; i++) {
            bare_forward(m, y->data, w);
            bare_vjp(m, y->data, g->data, w);
        }
        best_bare = fmin(best_bare, (now() - t0) / n);
    }
    if (nd_ctx_error(ctx)) fprintf(stderr, "bench_odeint: %s\n", nd_ctx_errmsg(ctx));
    print_eval("aug_eval", best_nodal, best_bare);
    free(w);
    nd_tensor_destroy(y);
    nd_tensor_destroy(g);
}

/* forward + backward over [0, T]; reports arena capacity, resident memory and the steps */
static void bench_memory(model *m)
{
    for (int mode = 0; mode < 2; mode++) {
        for (int k = 0; k < 2; k++) {
            double T = k ? 20.0 : 2.0;
            nd_ctx *ctx = nd_ctx_create(0);
            nd_rng rng = nd_rng_seed(2);
            nd_tensor *y0 = nd_tensor_new(ctx, 2, (int[]){B, D});
            nd_fill_uniform(y0, &rng, -1, 1);
            nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, (nd_real)T});
            nd_tensor *params[4] = {m->W1, m->b1, m->W2, m->b2};
            nd_ode_options o = ND_ODE_DEFAULT;
            o.grad = mode ? ND_GRAD_BACKPROP : ND_GRAD_ADJOINT;
            o.solver.rtol = o.adjoint.rtol = 1e-6;
            o.solver.atol = o.adjoint.atol = 1e-8;
            long rss0 = resident_kib();
            nd_tensor *ys = nd_odeint(ctx, f_model, m, y0, t, params, 4, &o);
            nd_tensor *L = nd_sum(ctx, ys);
            nd_status s = L ? nd_backward(ctx, L, 0) : nd_ctx_error(ctx);
            nd_ode_stats st = {0};
            if (s == ND_OK) st = *nd_odeint_stats(ys);
            if (s != ND_OK) fprintf(stderr, "bench_odeint: %s\n", nd_ctx_errmsg(ctx));
            json_writer w = json_begin(stdout);
            json_str(&w, "case", "adjoint_memory");
            json_str(&w, "grad", mode ? "backprop" : "adjoint");
            json_num(&w, "T", T);
            json_int(&w, "accepted_forward", st.forward.accepted);
            json_int(&w, "nfe_backward", st.backward.nfe);
            json_int(&w, "arena_bytes", (long long)nd_ctx_capacity(ctx));
            json_int(&w, "rss_growth_kib", resident_kib() - rss0);
            json_end(&w);
            nd_ctx_destroy(ctx);
        }
    }
}

int main(int argc, char **argv)
{
    int n = 20000;
    const flag_spec flags[] = {FLAG_INT("evals", &n, 1, 100000000, "evaluations per timed case")};
    int rc = flags_parse("bench_odeint",
                         "An evaluation of f and of the adjoint's augmented "
                         "dynamics vs the bare arithmetic; the adjoint's memory.",
                         flags, FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    openblas_set_num_threads(1);
    nd_ctx *ctx = nd_ctx_create(0);
    nd_rng rng = nd_rng_seed(0);
    model m = {
        nd_tensor_create(ctx, 2, (int[]){H, D}, true), nd_tensor_create(ctx, 1, (int[]){H}, true),
        nd_tensor_create(ctx, 2, (int[]){D, H}, true), nd_tensor_create(ctx, 1, (int[]){D}, true)};
    nd_fill_normal(m.W1, &rng, 0, 0.3);
    nd_fill_normal(m.b1, &rng, 0, 0.1);
    nd_fill_normal(m.W2, &rng, 0, 0.3);
    nd_fill_normal(m.b2, &rng, 0, 0.1);
    fprintf(stderr, "bench_odeint: %d evaluations per case, 1 BLAS thread\n", n);
    bench_evals(ctx, &m, n);
    bench_memory(&m);
    nd_tensor_destroy(m.W1), nd_tensor_destroy(m.b1), nd_tensor_destroy(m.W2),
        nd_tensor_destroy(m.b2);
    nd_ctx_destroy(ctx);
    return 0;
}

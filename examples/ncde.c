/* SPDX-License-Identifier: MIT
 * examples/ncde.c: a neural controlled differential equation (Kidger et al. 2020) classifying
 * spirals, torchcde's example, as defined in WORKLOADS.md (C). Each of 128 series has 100 points
 * at t = linspace(0, 4 pi, 100) with channels (t, x, y), x = cos(s + t) / (1 + t/2),
 * y = sin(s + t) / (1 + t/2), s ~ U(0, 2 pi); in half of them x is negated (class 1); noise 0.01.
 * A held-out test set of the same size is drawn after it from the same seeded generator.
 *
 *   X      a natural cubic spline through each series' points (the tridiagonal system for its
 *          second derivatives solved by LAPACK's dgtsv from OpenBLAS, all series at once), or with
 *          --path linear the piecewise-linear interpolant, whose kinks are passed as jump_t
 *   z0     = Linear(3, 16)(X(0))                                                    (B, 16)
 *   dz/dt  = g(z) dX/dt(t),  g = tanh(Linear(64, 48)(tanh(Linear(64, 64)(tanh(Linear(16,
 * 64)(z)))))) reshaped (B, 16, 3), times dX/dt (B, 3, 1)                              (B, 16)
 *   logits = Linear(16, 2)(z(4 pi)), cross-entropy, full batch, Adam lr 1e-3
 * One solve over [0, 4 pi] (dopri5), gradients by the adjoint ODE under --norm.
 *
 * The seminorm comparison: ncde_measure_norms() below runs one forward and one backward pass per
 * adjoint norm on the same weights and batch (paired) and returns backward NFE, steps, time and
 * how far the gradients are from the default norm's. --paired N calls it every N iterations at
 * the three tolerances of WORKLOADS.md C and prints the totals next to torchdiffeq's. The
 * benchmark reuses it by including this file with NCDE_NO_MAIN defined (llm.c's pattern).
 *   default          RMS over [a_t, z, a_z, a_theta]: torchdiffeq's default (t requires grad)
 *   seminorm         RMS over [z, a_z] (the paper's seminorm, ND_NORM_SEMINORM)
 *   default_no_t     RMS over [z, a_z, a_theta] (t does not require grad, so no a_t)
 *   seminorm_keep_t  RMS over [a_t, z, a_z]: torchdiffeq's norm='seminorm'
 *
 * Good looks like (double, seed 1, cubic, seminorm, rtol 1e-3, atol 1e-6): loss 0.87 at the first
 * iteration, ~0.14 at 20, below 0.01 by 25 and ~4e-4 at 30, train and test accuracy 1.0 from
 * iteration ~20; ~360 NFE-F and ~370 NFE-B per iteration. --paired 5 --iters 25 reproduces
 * WORKLOADS.md C: the paper seminorm needs about half the backward evaluations of torchdiffeq's
 * default norm (nodal measured 53%, 62%, 57% fewer at the three tolerances; torchdiffeq 55%, 67%,
 * 71%), and almost all of that comes from leaving the time adjoint a_t out (default_no_t is
 * within ~10% of the seminorm). With --path linear every norm takes one step per knot interval:
 * 700 NFE each way, nothing to save. Costs ~0.3 s CPU per iteration (cubic; linear ~0.4 s), so
 * the default 40 iterations take ~15 s on one core; `--iters 3` about 1.5 s.
 *
 * Run:  ./build/examples/ncde [--path cubic|linear] [--iters N] [--rtol R] [--atol A]
 *                             [--norm rms|seminorm] [--method dopri5] [--seed S] [--t-grad]
 *                             [--print-every N] [--paired N] [--json]
 * Progress goes to stderr; --json prints one summary object on stdout.
 * Exit status: 0 when training ran (good or not), 1 on any library error, 2 on bad flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodal.h"

/* LAPACK from OpenBLAS, Fortran calling convention (Debian's libopenblas-dev ships no lapacke.h):
 * solves a tridiagonal system with nrhs right-hand sides in place. */
extern void dgtsv_(const int *n, const int *nrhs, double *dl, double *d, double *du, double *b,
                   const int *ldb, int *info);

#define N_SERIES 128 /* per set: train and test */
#define N_POINTS 100
#define N_CH 3 /* channels (t, x, y) */
#define HIDDEN 16
#define WIDTH 64
#define N_CLASSES 2
#define T_END (4 * M_PI)

static double now_ms(void) // wall clock
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double cpu_ms(void) // this process's CPU time: steadier than wall time on a busy machine
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// ------------------------------------------------------------------------------------------------
// data: the spirals, torchcde's get_data

typedef struct {
    int n; // series
    double t[N_POINTS];
    double *obs; // (n, N_POINTS, N_CH) observations
    int *labels; // (n,) 1: x negated
} dataset;

static void dataset_free(dataset *d)
{
    free(d->obs), free(d->labels);
    d->obs = NULL, d->labels = NULL;
}

/* n series in a shuffled order; 0 or -1 (out of memory) */
static int make_spirals(dataset *d, int n, nd_rng *rng)
{
    d->n = n;
    d->obs = malloc((size_t)n * N_POINTS * N_CH * sizeof *d->obs);
    d->labels = malloc((size_t)n * sizeof *d->labels);
    if (!d->obs || !d->labels) return -1;
    for (int j = 0; j < N_POINTS; j++) d->t[j] = T_END * j / (N_POINTS - 1);
    for (int i = 0; i < n; i++) {
        double s = 2 * M_PI * nd_rng_uniform(rng);
        int cls = i < n / 2;
        d->labels[i] = cls;
        for (int j = 0; j < N_POINTS; j++) {
            double t = d->t[j], r = 1 + 0.5 * t;
            double *o = d->obs + ((size_t)i * N_POINTS + j) * N_CH; // (N_CH,)
            o[0] = t;
            o[1] = (cls ? -1 : 1) * cos(s + t) / r;
            o[2] = sin(s + t) / r;
        }
        for (int j = 0; j < N_POINTS; j++) // noise after the signal, x then y (torch's order)
            d->obs[((size_t)i * N_POINTS + j) * N_CH + 1] += 0.01 * nd_rng_normal(rng);
        for (int j = 0; j < N_POINTS; j++)
            d->obs[((size_t)i * N_POINTS + j) * N_CH + 2] += 0.01 * nd_rng_normal(rng);
    }
    for (int i = n - 1; i > 0; i--) { // Fisher-Yates: classes interleaved
        int k = (int)nd_rng_below(rng, (uint64_t)i + 1);
        double tmp[N_POINTS * N_CH];
        memcpy(tmp, d->obs + (size_t)i * N_POINTS * N_CH, sizeof tmp);
        memcpy(d->obs + (size_t)i * N_POINTS * N_CH, d->obs + (size_t)k * N_POINTS * N_CH,
               sizeof tmp);
        memcpy(d->obs + (size_t)k * N_POINTS * N_CH, tmp, sizeof tmp);
        int l = d->labels[i];
        d->labels[i] = d->labels[k], d->labels[k] = l;
    }
    return 0;
}

// ------------------------------------------------------------------------------------------------
// the path X: dX/dt on knot interval k is b + c2 u + d3 u^2 with u = t - t_k (linear: b only)

typedef enum { PATH_CUBIC, PATH_LINEAR } path_kind;

typedef struct {
    path_kind kind;
    int n; // series
    double knots[N_POINTS];
    nd_real *x0;          // (n, N_CH) X(t_0)
    nd_real *b, *c2, *d3; // (N_POINTS - 1, n, N_CH) each; c2, d3 NULL for the linear path
} path;

static void path_free(path *p)
{
    free(p->x0), free(p->b), free(p->c2), free(p->d3);
    p->x0 = p->b = p->c2 = p->d3 = NULL;
}

/* The knot interval holding t: the largest k with knots[k] <= t, within [0, N_POINTS - 2]. At a
 * knot this is the interval to its right; the solver evaluates just below and just above each
 * jump_t (nextafter), so both sides are seen where it matters. */
static int knot_interval(const path *p, double t)
{
    int lo = 0, hi = N_POINTS - 2;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p->knots[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Builds the path through d's observations. 0, or -1 with a message on stderr. */
static int path_build(path *p, const dataset *d, path_kind kind)
{
    const int n = d->n, K = N_POINTS - 1, rhs = n * N_CH; // K intervals, one system per (i, c)
    p->kind = kind, p->n = n;
    memcpy(p->knots, d->t, sizeof p->knots);
    size_t per = (size_t)K * rhs;
    p->x0 = malloc((size_t)rhs * sizeof *p->x0);
    p->b = malloc(per * sizeof *p->b);
    if (kind == PATH_CUBIC) {
        p->c2 = malloc(per * sizeof *p->c2);
        p->d3 = malloc(per * sizeof *p->d3);
    }
    double *M = calloc((size_t)N_POINTS * rhs, sizeof *M); // (rhs, N_POINTS) second derivatives
    double *dl = malloc((size_t)N_POINTS * 3 * sizeof *dl), *dg = dl + N_POINTS,
           *du = dg + N_POINTS;
    if (!p->x0 || !p->b || (kind == PATH_CUBIC && (!p->c2 || !p->d3)) || !M || !dl) {
        free(M), free(dl);
        fprintf(stderr, "ncde: out of memory building the path\n");
        return -1;
    }
#define OBS(i, j, c) d->obs[((size_t)(i)*N_POINTS + (j)) * N_CH + (c)]
    for (int i = 0; i < n; i++)
        for (int c = 0; c < N_CH; c++) p->x0[i * N_CH + c] = (nd_real)OBS(i, 0, c);

    if (kind == PATH_CUBIC) {
        /* natural spline: M_0 = M_{N-1} = 0 and, for j = 1 .. N-2,
         * h_{j-1} M_{j-1} + 2 (h_{j-1} + h_j) M_j + h_j M_{j+1} = 6 (s_j - s_{j-1}),
         * s_j the slope of interval j. Unknowns M_1 .. M_{N-2}; column r = i * N_CH + c of the
         * right-hand side (column-major, ldb = N - 2) is series i, channel c. */
        int m = N_POINTS - 2, nrhs = rhs, ldb = m, info = 0;
        double *B = M + 0; // reuse: rows 1 .. N-2 of each column, written contiguously first
        for (int j = 1; j <= m; j++) {
            double h0 = p->knots[j] - p->knots[j - 1], h1 = p->knots[j + 1] - p->knots[j];
            dg[j - 1] = 2 * (h0 + h1);
            if (j < m) du[j - 1] = h1, dl[j - 1] = h1; // h_j couples j and j+1 both ways
        }
        for (int r = 0; r < rhs; r++) {
            int i = r / N_CH, c = r % N_CH;
            for (int j = 1; j <= m; j++) {
                double h0 = p->knots[j] - p->knots[j - 1], h1 = p->knots[j + 1] - p->knots[j];
                double s0 = (OBS(i, j, c) - OBS(i, j - 1, c)) / h0;
                double s1 = (OBS(i, j + 1, c) - OBS(i, j, c)) / h1;
                B[(size_t)r * ldb + (j - 1)] = 6 * (s1 - s0);
            }
        }
        dgtsv_(&m, &nrhs, dl, dg, du, B, &ldb, &info);
        if (info != 0) {
            free(M), free(dl);
            fprintf(stderr, "ncde: dgtsv failed (info %d)\n", info);
            return -1;
        }
        /* spread to (rhs, N_POINTS) with the zero ends, from the back so nothing is overwritten */
        for (int r = rhs - 1; r >= 0; r--) {
            for (int j = m; j >= 1; j--) M[(size_t)r * N_POINTS + j] = B[(size_t)r * ldb + j - 1];
            M[(size_t)r * N_POINTS] = 0, M[(size_t)r * N_POINTS + N_POINTS - 1] = 0;
        }
    }
    for (int k = 0; k < K; k++) {
        double h = p->knots[k + 1] - p->knots[k];
        for (int r = 0; r < rhs; r++) {
            int i = r / N_CH, c = r % N_CH;
            double slope = (OBS(i, k + 1, c) - OBS(i, k, c)) / h;
            size_t at = (size_t)k * rhs + r;
            if (kind == PATH_LINEAR) {
                p->b[at] = (nd_real)slope;
                continue;
            }
            double Mk = M[(size_t)r * N_POINTS + k], Mk1 = M[(size_t)r * N_POINTS + k + 1];
            p->b[at] = (nd_real)(slope - h * (2 * Mk + Mk1) / 6);
            p->c2[at] = (nd_real)Mk;
            p->d3[at] = (nd_real)((Mk1 - Mk) / (2 * h));
        }
    }
#undef OBS
    free(M), free(dl);
    return 0;
}

/* dX/dt at the scalar tensor t, (n, N_CH), differentiable in t when t requires grad (the time
 * adjoint sees d/dt dX/dt = X''). */
static nd_tensor *path_derivative(nd_ctx *ctx, const path *p, nd_tensor *t)
{
    int k = knot_interval(p, (double)t->data[0]);
    int shape[2] = {p->n, N_CH};
    size_t at = (size_t)k * p->n * N_CH;
    nd_tensor *b = nd_tensor_from(ctx, 2, shape, p->b + at); // (n, N_CH)
    if (p->kind == PATH_LINEAR) return b;
    nd_tensor *c2 = nd_tensor_from(ctx, 2, shape, p->c2 + at);                  // (n, N_CH)
    nd_tensor *d3 = nd_tensor_from(ctx, 2, shape, p->d3 + at);                  // (n, N_CH)
    nd_tensor *u = nd_add_scalar(ctx, t, (nd_real)-p->knots[k]);                // () t - t_k
    return nd_add(ctx, b, nd_mul(ctx, nd_add(ctx, c2, nd_mul(ctx, d3, u)), u)); // (n, N_CH)
}

// ------------------------------------------------------------------------------------------------
// the model: one container module so that parameters have names and one destroy frees them

typedef struct {
    nd_module base;         // "NeuralCDE": children initial, func, readout
    nd_module *initial;     // Linear(3, 16)
    nd_module *func;        // Linear(16, 64), Tanh, Linear(64, 64), Tanh, Linear(64, 48), Tanh
    nd_module *readout;     // Linear(16, 2)
    nd_param_list all;      // every parameter, for Adam (dotted names: "func.0.weight")
    nd_param_list fparams;  // func's six, handed to the solve
    nd_tensor *ftensors[6]; // the same as tensors
} ncde_model;

static nd_tensor *ncde_forward_stub(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    (void)m, (void)x;
    return nd_fail_null(ctx, ND_ERR_ARG, "NeuralCDE: call ncde_logits, it needs the path");
}

static void ncde_on_destroy(nd_module *m)
{
    ncde_model *mdl = (ncde_model *)m;
    nd_param_list_destroy(&mdl->all);
    nd_param_list_destroy(&mdl->fparams);
}

static ncde_model *ncde_create(nd_ctx *ctx, nd_rng *rng)
{
    ncde_model *m = (ncde_model *)nd_module_create(ctx, "NeuralCDE", ncde_forward_stub, sizeof *m);
    if (!m) return NULL;
    m->base.on_destroy = ncde_on_destroy;
    m->initial = nd_linear_create(ctx, N_CH, HIDDEN, true, rng);
    m->func = nd_mlp_create(ctx, 4, (int[]){HIDDEN, WIDTH, WIDTH, HIDDEN * N_CH}, ND_ACT_TANH, rng);
    if (m->func && nd_sequential_append(ctx, m->func, nd_activation_create(ctx, ND_ACT_TANH))) {
        nd_module_destroy(m->func); // the append destroyed the Tanh only
        m->func = NULL;
    }
    m->readout = nd_linear_create(ctx, HIDDEN, N_CLASSES, true, rng);
    nd_module *kids[3] = {m->initial, m->func, m->readout};
    const char *names[3] = {"initial", "func", "readout"};
    bool ok = true;
    for (int i = 0; i < 3; i++) // add_child takes ownership even on failure
        if (!kids[i] || nd_module_add_child(ctx, &m->base, names[i], kids[i]) != ND_OK) ok = false;
    if (!ok || nd_module_params(ctx, &m->base, &m->all) != ND_OK ||
        nd_module_params(ctx, m->func, &m->fparams) != ND_OK) {
        nd_module_destroy(&m->base);
        return NULL;
    }
    for (int i = 0; i < m->fparams.n && i < 6; i++) m->ftensors[i] = m->fparams.items[i].tensor;
    return m;
}

/* the vector field of the solve, with the path it is driven by */
typedef struct {
    ncde_model *m;
    const path *X;
} cde_field;

/* dz/dt = g(z) dX/dt(t) */
static int cde_f(nd_ctx *ctx, nd_tensor *t, nd_tensor *z /* (B, 16) */, nd_tensor **dzdt,
                 void *user_data)
{
    cde_field *cf = user_data;
    int B = z->shape[0];
    nd_tensor *g = nd_module_forward(ctx, cf->m->func, z);          // (B, 48)
    nd_tensor *G = nd_reshape(ctx, g, 3, (int[]){B, HIDDEN, N_CH}); // (B, 16, 3)
    nd_tensor *dX =
        nd_reshape(ctx, path_derivative(ctx, cf->X, t), 3, (int[]){B, N_CH, 1}); // (B, 3, 1)
    *dzdt = nd_reshape(ctx, nd_matmul(ctx, G, dX), 2, (int[]){B, HIDDEN});       // (B, 16)
    return *dzdt ? 0 : -1;
}

/* How a solve is run: the method and tolerances of both solves, the adjoint's norm, whether t
 * requires grad (then the adjoint integrates a_t), and the knots as jump_t (linear path). */
typedef struct {
    nd_ode_method method;
    double rtol, atol;
    nd_norm_kind norm;
    bool t_grad;
} solve_cfg;

/* logits (B, 2) of the series of X, or NULL with the error in ctx; *stats: the solve's
 * statistics (op-owned: backward after the backward pass, valid until the ctx reset). */
static nd_tensor *ncde_logits(nd_ctx *ctx, ncde_model *m, const path *X, const solve_cfg *cfg,
                              const nd_ode_stats **stats)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = o.adjoint.method = cfg->method;
    o.solver.rtol = o.adjoint.rtol = cfg->rtol;
    o.solver.atol = o.adjoint.atol = cfg->atol;
    o.adjoint.norm = cfg->norm;
    if (X->kind == PATH_LINEAR) { // the interior knots: dX/dt jumps there (odeint copies them)
        o.jump_t = X->knots + 1;
        o.n_jump_t = N_POINTS - 2;
    }
    cde_field *cf = nd_ctx_alloc(ctx, sizeof *cf); // in the arena: lives until the backward
    if (!cf) return NULL;
    *cf = (cde_field){m, X};
    nd_tensor *x0 = nd_tensor_from(ctx, 2, (int[]){X->n, N_CH}, X->x0);                // (B, 3)
    nd_tensor *z0 = nd_module_forward(ctx, m->initial, x0);                            // (B, 16)
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, (nd_real)T_END}); // (2,)
    if (!t) return NULL;
    t->requires_grad = cfg->t_grad;
    nd_tensor *zs = nd_odeint(ctx, cde_f, cf, z0, t, m->ftensors, 6, &o); // (2, B, 16)
    *stats = nd_odeint_stats(zs);
    nd_tensor *zT =
        nd_reshape(ctx, nd_slice(ctx, zs, 0, 1, 1), 2, (int[]){X->n, HIDDEN}); // (B, 16)
    return nd_module_forward(ctx, m->readout, zT);                             // (B, 2)
}

// ------------------------------------------------------------------------------------------------
// the paired measurement: every adjoint norm on the same weights and batch

typedef enum {
    NCDE_DEFAULT,         // RMS, t requires grad: a_t integrated and in the norm (torchdiffeq)
    NCDE_SEMINORM,        // ND_NORM_SEMINORM: z, a_z only (the paper's)
    NCDE_DEFAULT_NO_T,    // RMS, t does not require grad: no a_t
    NCDE_SEMINORM_KEEP_T, // ND_NORM_SEMINORM_KEEP_T, t requires grad (torchdiffeq's 'seminorm')
    NCDE_N_NORMS
} ncde_norm;

static const char *const ncde_norm_names[NCDE_N_NORMS] = {"default", "seminorm", "default_no_t",
                                                          "seminorm_keep_t"};

static solve_cfg ncde_norm_cfg(ncde_norm k, nd_ode_method method, double rtol, double atol)
{
    static const nd_norm_kind kind[NCDE_N_NORMS] = {ND_NORM_RMS, ND_NORM_SEMINORM, ND_NORM_RMS,
                                                    ND_NORM_SEMINORM_KEEP_T};
    return (solve_cfg){method, rtol, atol, kind[k], k != NCDE_SEMINORM && k != NCDE_DEFAULT_NO_T};
}

typedef struct {
    double loss;
    long nfe_forward, nfe_backward; // backward: adjoint evaluations (f + VJP each)
    long accepted_backward, rejected_backward;
    double ms_forward, ms_backward;
    double max_rel_grad_diff; // max_i |g_i - ref_i| / max(|ref_i|, 1e-3 max_j |ref_j|), ref:
                              // the default norm's gradient (bench/seminorm's definition)
} ncde_measure;

/* One forward and one backward pass of the loss per norm, on m's weights and X's series, at
 * (rtol, atol) for both solves. Fills out[NCDE_N_NORMS]; the parameters' .grad are left zero and
 * the arena as it was. ND_OK or the error (also in ctx). */
static nd_status ncde_measure_norms(nd_ctx *ctx, ncde_model *m, const path *X, const int *labels,
                                    nd_ode_method method, double rtol, double atol,
                                    ncde_measure out[NCDE_N_NORMS])
{
    size_t n_total = nd_param_list_numel(&m->all);
    double *ref = malloc(n_total * sizeof *ref); // (n_total,) the default norm's gradient
    if (!ref) return nd_fail(ctx, ND_ERR_NOMEM, "ncde_measure_norms: %zu doubles", n_total);
    nd_status st = ND_OK;
    for (int k = 0; k < NCDE_N_NORMS && st == ND_OK; k++) {
        solve_cfg cfg = ncde_norm_cfg((ncde_norm)k, method, rtol, atol);
        nd_mark mark = nd_ctx_mark(ctx);
        const nd_ode_stats *stats = NULL;
        nd_module_zero_grad(&m->base);
        double t0 = now_ms();
        nd_tensor *logits = ncde_logits(ctx, m, X, &cfg, &stats);
        nd_tensor *loss = nd_cross_entropy(ctx, logits, labels, ND_REDUCE_MEAN);
        double t1 = now_ms();
        st = loss ? nd_backward(ctx, loss, 0) : nd_ctx_error(ctx);
        double t2 = now_ms();
        if (st == ND_OK) {
            out[k] = (ncde_measure){.loss = nd_item(loss),
                                    .nfe_forward = stats->forward.nfe,
                                    .nfe_backward = stats->backward.nfe,
                                    .accepted_backward = stats->backward.accepted,
                                    .rejected_backward = stats->backward.rejected,
                                    .ms_forward = t1 - t0,
                                    .ms_backward = t2 - t1};
            size_t off = 0;
            for (int p = 0; p < m->all.n; p++) {
                const nd_tensor *w = m->all.items[p].tensor;
                for (size_t i = 0; i < w->size; i++, off++)
                    if (k == NCDE_DEFAULT) ref[off] = w->grad[i];
            }
            double scale = 0, worst = 0;
            for (size_t i = 0; i < n_total; i++) scale = fmax(scale, fabs(ref[i]));
            off = 0;
            for (int p = 0; p < m->all.n; p++) {
                const nd_tensor *w = m->all.items[p].tensor;
                for (size_t i = 0; i < w->size; i++, off++) {
                    double floor_ = fmax(fabs(ref[off]), 1e-3 * scale);
                    if (floor_ > 0) worst = fmax(worst, fabs(w->grad[i] - ref[off]) / floor_);
                }
            }
            out[k].max_rel_grad_diff = worst;
        }
        nd_ctx_rewind(ctx, mark);
    }
    nd_module_zero_grad(&m->base);
    free(ref);
    return st;
}

// ------------------------------------------------------------------------------------------------
// the whole problem, seeded: data, paths, model, optimizer; and one training step

typedef struct {
    dataset train, test;
    path Xtr, Xte; // (N_SERIES series each)
    ncde_model *m;
    nd_optimizer *opt; // Adam, lr 1e-3
} ncde_problem;

static void ncde_problem_free(ncde_problem *P)
{
    nd_optimizer_destroy(P->opt);
    if (P->m) nd_module_destroy(&P->m->base);
    path_free(&P->Xtr), path_free(&P->Xte);
    dataset_free(&P->train), dataset_free(&P->test);
    memset(P, 0, sizeof *P);
}

/* The train set, then the test set, from one generator seeded with seed; the weights from another.
 * 0, or -1 with a message on stderr (P is then freed). */
static int ncde_problem_init(nd_ctx *ctx, ncde_problem *P, path_kind kind, uint64_t seed)
{
    memset(P, 0, sizeof *P);
    nd_rng data_rng = nd_rng_seed(seed), init_rng = nd_rng_seed(seed + 0x9e3779b97f4a7c15ULL);
    if (make_spirals(&P->train, N_SERIES, &data_rng) ||
        make_spirals(&P->test, N_SERIES, &data_rng)) {
        fprintf(stderr, "ncde: out of memory for the data\n");
        ncde_problem_free(P);
        return -1;
    }
    if (path_build(&P->Xtr, &P->train, kind) || path_build(&P->Xte, &P->test, kind)) {
        ncde_problem_free(P);
        return -1;
    }
    P->m = ncde_create(ctx, &init_rng);
    P->opt = P->m ? nd_adam_create(ctx, P->m->all.items, P->m->all.n, NULL) : NULL;
    if (!P->opt) {
        fprintf(stderr, "ncde: model: %s\n", nd_ctx_errmsg(ctx));
        ncde_problem_free(P);
        return -1;
    }
    return 0;
}

/* One full-batch Adam step on the train set under cfg; the loss and accuracy before the update
 * and the solve's counts come back. Resets the arena. ND_OK or the error (also in ctx). */
static nd_status ncde_train_step(nd_ctx *ctx, ncde_problem *P, const solve_cfg *cfg, double *loss,
                                 double *acc, nd_ode_stats *stats)
{
    const nd_ode_stats *op_stats = NULL;
    nd_tensor *logits = ncde_logits(ctx, P->m, &P->Xtr, cfg, &op_stats);           // (B, 2)
    nd_tensor *L = nd_cross_entropy(ctx, logits, P->train.labels, ND_REDUCE_MEAN); // scalar
    if (!L) return nd_ctx_error(ctx);
    *loss = nd_item(L);
    *acc = nd_accuracy(logits, P->train.labels);
    nd_optimizer_zero_grad(P->opt);
    nd_status st = nd_backward(ctx, L, 0);
    if (st == ND_OK) st = nd_optimizer_step(ctx, P->opt);
    if (st == ND_OK) *stats = *op_stats; // the op's, in the arena: copied before the reset
    if (st == ND_OK) nd_ctx_reset(ctx);
    return st;
}

#ifndef NCDE_NO_MAIN
// ------------------------------------------------------------------------------------------------

/* torchdiffeq's totals over checkpoints 0, 5, ..., 25 (WORKLOADS.md C; the last row at 0 and 25
 * only): default, seminorm (torchdiffeq), paper seminorm */
static const struct {
    double rtol, atol;
    int every; // checkpoint spacing torchdiffeq used
    double nfe[3];
} torchdiffeq_c[3] = {{1e-3, 1e-6, 5, {5124, 5232, 2304}},
                      {1e-4, 1e-7, 5, {12858, 13548, 4206}},
                      {1e-5, 1e-8, 25, {11554, 11800, 3340}}};

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--path cubic|linear] [--iters N] [--rtol R] [--atol A] "
            "[--norm rms|seminorm] [--method NAME] [--seed S] [--t-grad] [--print-every N] "
            "[--paired N] [--json]\n",
            argv0);
    return 2;
}

static int fail(nd_ctx *ctx, const char *where)
{
    fprintf(stderr, "ncde: %s: %s (%s)\n", where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

int main(int argc, char **argv)
{
    int iters = 40, print_every = 5, paired = 0, json = 0, t_grad = 0;
    unsigned long long seed = 1;
    double rtol = 1e-3, atol = 1e-6;
    path_kind kind = PATH_CUBIC;
    nd_norm_kind norm = ND_NORM_SEMINORM;
    nd_ode_method method = ND_DOPRI5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--t-grad")) {
            t_grad = 1;
        } else if (!v) {
            return usage(argv[0]);
        } else if (i++, !strcmp(a, "--path")) {
            if (!strcmp(v, "cubic"))
                kind = PATH_CUBIC;
            else if (!strcmp(v, "linear"))
                kind = PATH_LINEAR;
            else
                return usage(argv[0]);
        } else if (!strcmp(a, "--norm")) {
            if (!nd_ode_norm_from_name(v, &norm)) return usage(argv[0]);
        } else if (!strcmp(a, "--method")) {
            if (!nd_ode_method_from_name(v, &method)) return usage(argv[0]);
        } else if (!strcmp(a, "--iters")) {
            iters = atoi(v);
        } else if (!strcmp(a, "--print-every")) {
            print_every = atoi(v);
        } else if (!strcmp(a, "--paired")) {
            paired = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--rtol")) {
            rtol = atof(v);
        } else if (!strcmp(a, "--atol")) {
            atol = atof(v);
        } else {
            return usage(argv[0]);
        }
    }
    if (iters < 0 || print_every < 1 || paired < 0 || !(rtol >= 0) || !(atol >= 0)) {
        fprintf(stderr,
                "ncde: need --iters >= 0, --print-every >= 1, --paired >= 0, tolerances >= 0\n");
        return 2;
    }

    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) {
        fprintf(stderr, "ncde: out of memory\n");
        return 1;
    }
    int status = 0;
    ncde_problem P;
    double t_setup = now_ms();
    if (ncde_problem_init(ctx, &P, kind, seed)) {
        nd_ctx_destroy(ctx);
        return 1;
    }
    t_setup = now_ms() - t_setup;
    ncde_model *m = P.m;
    fprintf(stderr,
            "ncde: %s path, 2 x %d series (%.1f ms to set up), %s, rtol %g atol %g, "
            "adjoint norm %s%s, %zu parameters, %s\n",
            kind == PATH_CUBIC ? "cubic" : "linear", N_SERIES, t_setup, nd_ode_method_name(method),
            rtol, atol, norm == ND_NORM_RMS ? "rms" : "seminorm",
            t_grad ? " (t requires grad)" : "", nd_param_list_numel(&m->all), ND_REAL_NAME);

    // --- training loop
    solve_cfg cfg = {method, rtol, atol, norm, t_grad};
    double loss = NAN, acc = NAN, ms_total = 0, cpu_total = 0;
    long nfe_f = 0, nfe_b = 0;
    long paired_b[3][NCDE_N_NORMS] = {{0}};
    int paired_n[3] = {0};
    for (int it = 0; it <= iters; it++) {
        // paired measurement at checkpoints 0, N, 2N, ... (before this iteration's update)
        if (paired && it % paired == 0) {
            for (int k = 0; k < 3; k++) {
                if (it % torchdiffeq_c[k].every != 0) continue; // torchdiffeq's protocol
                ncde_measure ms[NCDE_N_NORMS];
                if (ncde_measure_norms(ctx, m, &P.Xtr, P.train.labels, method,
                                       torchdiffeq_c[k].rtol, torchdiffeq_c[k].atol, ms) != ND_OK) {
                    status = fail(ctx, "paired measurement");
                    goto cleanup;
                }
                paired_n[k]++;
                fprintf(stderr, "  paired it %3d (%g, %g): NFE-B", it, torchdiffeq_c[k].rtol,
                        torchdiffeq_c[k].atol);
                for (int n = 0; n < NCDE_N_NORMS; n++) {
                    paired_b[k][n] += ms[n].nfe_backward;
                    fprintf(stderr, " %s %ld", ncde_norm_names[n], ms[n].nfe_backward);
                }
                fprintf(stderr, "; max rel grad diff seminorm %.1e\n",
                        ms[NCDE_SEMINORM].max_rel_grad_diff);
                if (json)
                    for (int n = 0; n < NCDE_N_NORMS; n++)
                        printf("{\"workload\":\"ncde_%s\",\"iter\":%d,\"method\":\"%s\","
                               "\"norm\":\"%s\",\"rtol\":%g,\"atol\":%g,\"loss\":%.6e,"
                               "\"nfe_forward\":%ld,\"nfe_backward\":%ld,"
                               "\"accepted_backward\":%ld,\"rejected_backward\":%ld,"
                               "\"ms_backward\":%.3f,\"max_rel_grad_diff\":%.3e}\n",
                               kind == PATH_CUBIC ? "cubic" : "linear", it,
                               nd_ode_method_name(method), ncde_norm_names[n],
                               torchdiffeq_c[k].rtol, torchdiffeq_c[k].atol, ms[n].loss,
                               ms[n].nfe_forward, ms[n].nfe_backward, ms[n].accepted_backward,
                               ms[n].rejected_backward, ms[n].ms_backward, ms[n].max_rel_grad_diff);
            }
        }
        if (it == iters) break;

        double t0 = now_ms(), c0 = cpu_ms();
        nd_ode_stats stats = {0};
        if (ncde_train_step(ctx, &P, &cfg, &loss, &acc, &stats) != ND_OK) {
            status = fail(ctx, "training step");
            goto cleanup;
        }
        double ms = now_ms() - t0;
        cpu_total += cpu_ms() - c0;
        ms_total += ms, nfe_f += stats.forward.nfe, nfe_b += stats.backward.nfe;
        if ((it + 1) % print_every == 0 || it == 0 || it + 1 == iters)
            fprintf(stderr,
                    "iter %4d  loss %.4f  train acc %.3f  NFE-F %4ld  NFE-B %4ld  "
                    "%.1f ms\n",
                    it + 1, loss, acc, stats.forward.nfe, stats.backward.nfe, ms);
    }

    // --- evaluation on the held-out set (and the train set after the last update)
    nd_ctx_set_grad(ctx, false);
    const nd_ode_stats *est = NULL;
    nd_tensor *test_logits = ncde_logits(ctx, m, &P.Xte, &cfg, &est); // (B, 2)
    nd_tensor *test_L = nd_cross_entropy(ctx, test_logits, P.test.labels, ND_REDUCE_MEAN);
    if (!test_L) {
        status = fail(ctx, "test");
        goto cleanup;
    }
    double test_acc = nd_accuracy(test_logits, P.test.labels), test_loss = nd_item(test_L);
    long test_nfe = est->forward.nfe; // before the reset frees the op's statistics
    nd_ctx_reset(ctx);
    nd_ctx_set_grad(ctx, true);
    double per = iters > 0 ? 1.0 / iters : 0;
    fprintf(stderr,
            "test: loss %.4f accuracy %.3f (NFE-F %ld); per iteration: NFE-F %.1f NFE-B "
            "%.1f, %.1f ms wall, %.1f ms CPU\n",
            test_loss, test_acc, test_nfe, nfe_f * per, nfe_b * per, ms_total * per,
            cpu_total * per);
    for (int k = 0; k < 3 && paired; k++) {
        if (!paired_n[k]) continue;
        const long *b = paired_b[k];
        fprintf(stderr,
                "paired totals (%g, %g) over %d checkpoints: default %ld, seminorm %ld "
                "(saving %.0f%%), default_no_t %ld, seminorm_keep_t %ld; ",
                torchdiffeq_c[k].rtol, torchdiffeq_c[k].atol, paired_n[k], b[NCDE_DEFAULT],
                b[NCDE_SEMINORM], 100.0 * (1 - (double)b[NCDE_SEMINORM] / (double)b[NCDE_DEFAULT]),
                b[NCDE_DEFAULT_NO_T], b[NCDE_SEMINORM_KEEP_T]);
        if (kind == PATH_LINEAR)
            fprintf(stderr, "torchdiffeq: 700 per checkpoint under every norm\n");
        else
            fprintf(stderr, "torchdiffeq: %.0f / %.0f / %.0f (saving %.0f%%)\n",
                    torchdiffeq_c[k].nfe[0], torchdiffeq_c[k].nfe[1], torchdiffeq_c[k].nfe[2],
                    100.0 * (1 - torchdiffeq_c[k].nfe[2] / torchdiffeq_c[k].nfe[0]));
    }
    if (json)
        printf("{\"example\":\"ncde\",\"real\":\"%s\",\"path\":\"%s\",\"method\":\"%s\","
               "\"norm\":\"%s\",\"t_grad\":%s,\"rtol\":%g,\"atol\":%g,\"seed\":%llu,\"iters\":%d,"
               "\"loss\":%.6e,\"train_accuracy\":%.4f,\"test_loss\":%.6e,\"test_accuracy\":%.4f,"
               "\"nfe_forward_per_iter\":%.2f,\"nfe_backward_per_iter\":%.2f,"
               "\"ms_per_iter\":%.3f,\"cpu_ms_per_iter\":%.3f}\n",
               ND_REAL_NAME, kind == PATH_CUBIC ? "cubic" : "linear", nd_ode_method_name(method),
               norm == ND_NORM_RMS ? "rms" : "seminorm", t_grad ? "true" : "false", rtol, atol,
               seed, iters, loss, acc, test_loss, test_acc, nfe_f * per, nfe_b * per,
               ms_total * per, cpu_total * per);

cleanup:
    ncde_problem_free(&P);
    nd_ctx_destroy(ctx);
    return status;
}
#endif /* NCDE_NO_MAIN */

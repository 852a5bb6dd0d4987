/* SPDX-License-Identifier: MIT
 * examples/models/ncde.c: the neural CDE on the spirals task (see ncde.h): torchcde's data, the
 * model as one container module, the vector field g(z) dX/dt, the logits, a training step, and
 * the paired measurement of every adjoint norm on the same weights and batch.
 */
#include "ncde.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define N_SERIES NCDE_SERIES
#define N_POINTS NCDE_POINTS
#define N_CH NCDE_CH
#define HIDDEN 16
#define WIDTH 64
#define N_CLASSES 2
#define T_END (4 * M_PI)

// ------------------------------------------------------------------------------------------------
// data: the spirals, torchcde's get_data

static void dataset_free(ncde_data *d)
{
    free(d->obs), free(d->labels);
    d->obs = NULL, d->labels = NULL;
}

/* n series in a shuffled order; 0 or -1 (out of memory) */
static int make_spirals(ncde_data *d, int n, nd_rng *rng)
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
// the model: one container module so that parameters have names and one destroy frees them

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
    const spline_path *X;
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
        nd_reshape(ctx, spline_derivative(ctx, cf->X, t), 3, (int[]){B, N_CH, 1}); // (B, 3, 1)
    *dzdt = nd_reshape(ctx, nd_matmul(ctx, G, dX), 2, (int[]){B, HIDDEN});         // (B, 16)
    return *dzdt ? 0 : -1;
}

/* logits (B, 2) of the series of X, or NULL with the error in ctx; *stats: the solve's
 * statistics (op-owned: backward after the backward pass, valid until the ctx reset). */
nd_tensor *ncde_logits(nd_ctx *ctx, ncde_model *m, const spline_path *X, const ncde_solve_cfg *cfg,
                       const nd_ode_stats **stats)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = o.adjoint.method = cfg->method;
    o.solver.rtol = o.adjoint.rtol = cfg->rtol;
    o.solver.atol = o.adjoint.atol = cfg->atol;
    o.adjoint.norm = cfg->norm;
    if (X->kind == SPLINE_LINEAR) { // the interior knots: dX/dt jumps there (odeint copies them)
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

const char *const ncde_norm_names[NCDE_N_NORMS] = {"default", "seminorm", "default_no_t",
                                                   "seminorm_keep_t"};

ncde_solve_cfg ncde_norm_cfg(ncde_norm k, nd_ode_method method, double rtol, double atol)
{
    static const nd_norm_kind kind[NCDE_N_NORMS] = {ND_NORM_RMS, ND_NORM_SEMINORM, ND_NORM_RMS,
                                                    ND_NORM_SEMINORM_KEEP_T};
    return (ncde_solve_cfg){method, rtol, atol, kind[k],
                            k != NCDE_SEMINORM && k != NCDE_DEFAULT_NO_T};
}

/* One forward and one backward pass of the loss per norm, on m's weights and X's series, at
 * (rtol, atol) for both solves. Fills out[NCDE_N_NORMS]; the parameters' .grad are left zero and
 * the arena as it was. ND_OK or the error (also in ctx). */
nd_status ncde_measure_norms(nd_ctx *ctx, ncde_model *m, const spline_path *X, const int *labels,
                             nd_ode_method method, double rtol, double atol,
                             ncde_measure out[NCDE_N_NORMS])
{
    size_t n_total = nd_param_list_numel(&m->all);
    double *ref = malloc(n_total * sizeof *ref); // (n_total,) the default norm's gradient
    if (!ref) return nd_fail(ctx, ND_ERR_NOMEM, "ncde_measure_norms: %zu doubles", n_total);
    nd_status st = ND_OK;
    for (int k = 0; k < NCDE_N_NORMS && st == ND_OK; k++) {
        ncde_solve_cfg cfg = ncde_norm_cfg((ncde_norm)k, method, rtol, atol);
        nd_mark mark = nd_ctx_mark(ctx);
        const nd_ode_stats *stats = NULL;
        nd_module_zero_grad(&m->base);
        double t0 = clock_wall_ms();
        nd_tensor *logits = ncde_logits(ctx, m, X, &cfg, &stats);
        nd_tensor *loss = nd_cross_entropy(ctx, logits, labels, ND_REDUCE_MEAN);
        double t1 = clock_wall_ms();
        st = loss ? nd_backward(ctx, loss, 0) : nd_ctx_error(ctx);
        double t2 = clock_wall_ms();
        if (st == ND_OK) {
            out[k] = (ncde_measure){.loss = nd_item(loss),
                                    .nfe_forward = stats->forward.nfe,
                                    .nfe_backward = stats->backward.nfe,
                                    .accepted_backward = stats->backward.accepted,
                                    .rejected_backward = stats->backward.rejected,
                                    .limit_backward = stats->backward.limit,
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

void ncde_problem_free(ncde_problem *P)
{
    nd_optimizer_destroy(P->opt);
    if (P->m) nd_module_destroy(&P->m->base);
    spline_free(&P->Xtr), spline_free(&P->Xte);
    dataset_free(&P->train), dataset_free(&P->test);
    memset(P, 0, sizeof *P);
}

/* The train set, then the test set, from one generator seeded with seed; the weights from another.
 * 0, or -1 with a message on stderr (P is then freed). */
int ncde_problem_init(nd_ctx *ctx, ncde_problem *P, spline_kind kind, uint64_t seed)
{
    memset(P, 0, sizeof *P);
    nd_rng data_rng = nd_rng_seed(seed), init_rng = nd_rng_seed(seed + 0x9e3779b97f4a7c15ULL);
    if (make_spirals(&P->train, N_SERIES, &data_rng) ||
        make_spirals(&P->test, N_SERIES, &data_rng)) {
        fprintf(stderr, "ncde: out of memory for the data\n");
        ncde_problem_free(P);
        return -1;
    }
    if (spline_build(&P->Xtr, kind, N_SERIES, N_POINTS, N_CH, P->train.t, P->train.obs) ||
        spline_build(&P->Xte, kind, N_SERIES, N_POINTS, N_CH, P->test.t, P->test.obs)) {
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
nd_status ncde_train_step(nd_ctx *ctx, ncde_problem *P, const ncde_solve_cfg *cfg, double *loss,
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

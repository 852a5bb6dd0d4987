/* SPDX-License-Identifier: MIT
 * bench/seminorm_controls.c: the two controls of docs/WORKLOADS.md, where no norm can help.
 *   spiral  torchdiffeq's ode_demo model at initialisation (weights N(0, 0.1), biases 0) on 10
 *           batches of 20 windows of 10 points: 9 short output intervals of 2 steps each
 *   wide    an MLP 64-512-512-64 (tanh, PyTorch's default init), batch 256, 5 output times on
 *           [0, 1]: the parameter adjoint is never the binding channel
 * Both are autonomous, so "default" and "default without a_t" coincide. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodal.h"
#include "seminorm_workloads.h"

/* The backward NFE of each norm at one tolerance, on the same loss: paired. Sums over n_rep
 * repetitions produced by make_loss(rep). */
typedef nd_tensor *(*loss_fn)(nd_ctx *ctx, int rep, const nd_ode_options *o,
                              const nd_ode_stats **st, void *data);

static int measure(nd_ctx *ctx, const char *workload, loss_fn make_loss, void *data, int n_rep,
                   nd_tensor **params, int n_params, sn_tol tol, long td_default, long td_semi)
{
    size_t n_grad = 0;
    for (int p = 0; p < n_params; p++) n_grad += params[p]->size;
    double *grads = malloc(2 * n_grad * sizeof *grads);
    for (int k = 0; k < 2; k++) {
        nd_ode_options o = ND_ODE_DEFAULT;
        o.solver.rtol = o.adjoint.rtol = tol.rtol;
        o.solver.atol = o.adjoint.atol = tol.atol;
        o.adjoint.norm = k ? ND_NORM_SEMINORM : ND_NORM_RMS;
        sn_result r = {.workload = workload,
                       .method = "dopri5",
                       .norm = k ? "seminorm" : "default",
                       .rtol = tol.rtol,
                       .atol = tol.atol,
                       .torchdiffeq_nfe_backward = k ? td_semi : td_default};
        nd_zero_grad(params, n_params);
        for (int rep = 0; rep < n_rep; rep++) {
            const nd_ode_stats *stp = NULL; /* the op's, valid until the reset below */
            nd_tensor *L = make_loss(ctx, rep, &o, &stp, data);
            double t0 = sn_now();
            if (!L || nd_backward(ctx, L, 0) != ND_OK) {
                fprintf(stderr, "seminorm %s: %s\n", workload, nd_ctx_errmsg(ctx));
                free(grads);
                return 1;
            }
            r.ms_backward += 1e3 * (sn_now() - t0) / n_rep;
            nd_ode_stats st = *stp;
            r.nfe_forward += st.forward.nfe, r.nfe_backward += st.backward.nfe;
            r.accepted_backward += st.backward.accepted,
                r.rejected_backward += st.backward.rejected;
            sn_add_bound(&r, &st.backward.limit);
            nd_ctx_reset(ctx);
        }
        double *g = grads + k * n_grad;
        size_t q = 0;
        for (int p = 0; p < n_params; p++)
            for (size_t e = 0; e < params[p]->size; e++) g[q++] = params[p]->grad[e];
        r.max_rel_grad_diff = sn_max_rel_diff(g, grads, n_grad);
        r.rel_grad_diff_norm = sn_rel_diff_norm(g, grads, n_grad);
        if (n_rep > 1) snprintf(r.note, sizeof r.note, "sums over %d batches", n_rep);
        sn_report(&r);
    }
    free(grads);
    return 0;
}

/* ---- spiral ------------------------------------------------------------------------------- */

typedef struct {
    nd_module *net;
    nd_tensor **params;
    int n_params;
    nd_tensor *true_y; /* (1000, 1, 2) */
    nd_tensor *t;      /* (1000,) */
} spiral;

static int true_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    *dy = nd_matmul(c, nd_pow_scalar(c, y, 3), u);
    return *dy ? 0 : -1;
}

static int spiral_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    *dy = nd_module_forward(c, u, nd_pow_scalar(c, y, 3));
    return *dy ? 0 : -1;
}

static nd_tensor *spiral_loss(nd_ctx *ctx, int rep, const nd_ode_options *o,
                              const nd_ode_stats **st, void *data)
{
    spiral *s = data;
    nd_rng rng = nd_rng_seed(100 + rep); /* the same batch for every norm */
    nd_tensor *y0 = nd_tensor_new(ctx, 2, (int[]){20, 2}),
              *yb = nd_tensor_new(ctx, 3, (int[]){10, 20, 2});
    nd_tensor *bt = nd_tensor_from(ctx, 1, (int[]){10}, s->t->data);
    for (int b = 0; b < 20; b++) {
        int start = (int)nd_rng_below(&rng, 990);
        for (int k = 0; k < 2; k++) {
            y0->data[2 * b + k] = s->true_y->data[2 * start + k];
            for (int i = 0; i < 10; i++)
                yb->data[(i * 20 + b) * 2 + k] = s->true_y->data[2 * (start + i) + k];
        }
    }
    nd_tensor *pred = nd_odeint(ctx, spiral_f, s->net, y0, bt, s->params, s->n_params, o);
    *st = nd_odeint_stats(pred);
    return nd_l1_loss(ctx, pred, yb, ND_REDUCE_MEAN);
}

int sn_workload_spiral(bool quick)
{
    nd_ctx *ctx = nd_ctx_create(0);
    nd_rng rng = nd_rng_seed(0);
    spiral s = {.t = nd_tensor_create(ctx, 1, (int[]){1000}, false),
                .true_y = nd_tensor_create(ctx, 3, (int[]){1000, 1, 2}, false)};
    nd_tensor *A = nd_tensor_from(ctx, 2, (int[]){2, 2}, (nd_real[]){-0.1, 2.0, -2.0, -0.1});
    for (int i = 0; i < 1000; i++) s.t->data[i] = 25.0 * i / 999;
    nd_ode_options truth = ND_ODE_DEFAULT;
    nd_tensor *sol =
        nd_odeint(ctx, true_f, A, nd_tensor_from(ctx, 2, (int[]){1, 2}, (nd_real[]){2, 0}), s.t,
                  NULL, 0, &truth);
    if (!sol) return fprintf(stderr, "seminorm spiral: %s\n", nd_ctx_errmsg(ctx)), 1;
    memcpy(s.true_y->data, sol->data, s.true_y->size * sizeof(nd_real));
    nd_ctx_reset(ctx);
    s.net = nd_mlp_create(ctx, 3, (int[]){2, 50, 2}, ND_ACT_TANH, &rng);
    nd_param_list list = {0};
    nd_module_params(ctx, s.net, &list);
    nd_tensor *params[4];
    for (int i = 0; i < list.n; i++) {
        params[i] = list.items[i].tensor;
        if (strstr(list.items[i].name, "weight"))
            nd_init_normal(params[i], &rng, 0, 0.1);
        else
            memset(params[i]->data, 0, params[i]->size * sizeof(nd_real));
    }
    s.params = params, s.n_params = list.n;
    /* torchdiffeq, per iteration at its default tolerances: 126.5 (default), 126.8 (seminorm) */
    sn_tol tols[SN_N_TOLS + 1] = {sn_tols[0], sn_tols[1], sn_tols[2], {1e-7, 1e-9}};
    int status = 0;
    for (int ti = quick ? SN_N_TOLS : 0; ti < SN_N_TOLS + 1 && !status; ti++)
        status = measure(ctx, "spiral", spiral_loss, &s, quick ? 2 : 10, params, list.n, tols[ti],
                         ti == SN_N_TOLS ? (quick ? 253 : 1265) : -1,
                         ti == SN_N_TOLS ? (quick ? 254 : 1268) : -1);
    nd_param_list_destroy(&list);
    nd_module_destroy(s.net);
    nd_tensor_destroy(s.t), nd_tensor_destroy(s.true_y);
    nd_ctx_destroy(ctx);
    return status;
}

/* ---- wide --------------------------------------------------------------------------------- */

typedef struct {
    nd_module *net;
    nd_tensor **params;
    int n_params;
    nd_tensor *y0; /* (256, 64) */
} wide;

static int wide_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    *dy = nd_module_forward(c, u, y);
    return *dy ? 0 : -1;
}

static nd_tensor *wide_loss(nd_ctx *ctx, int rep, const nd_ode_options *o, const nd_ode_stats **st,
                            void *data)
{
    (void)rep;
    wide *w = data;
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){5}, (nd_real[]){0, 0.25, 0.5, 0.75, 1});
    nd_tensor *y = nd_odeint(ctx, wide_f, w->net, w->y0, t, w->params, w->n_params, o);
    *st = nd_odeint_stats(y);
    return nd_mean(ctx, nd_mul(ctx, y, y));
}

int sn_workload_wide(bool quick)
{
    nd_ctx *ctx = nd_ctx_create(0);
    nd_rng rng = nd_rng_seed(0);
    wide w = {.net = nd_mlp_create(ctx, 4, (int[]){64, 512, 512, 64}, ND_ACT_TANH, &rng),
              .y0 = nd_tensor_create(ctx, 2, (int[]){256, 64}, false)};
    nd_fill_normal(w.y0, &rng, 0, 1);
    nd_param_list list = {0};
    if (!w.net || nd_module_params(ctx, w.net, &list) != ND_OK)
        return fprintf(stderr, "seminorm wide: %s\n", nd_ctx_errmsg(ctx)), 1;
    nd_tensor *params[8];
    for (int i = 0; i < list.n; i++) params[i] = list.items[i].tensor;
    w.params = params, w.n_params = list.n;
    /* torchdiffeq: 80 backward NFE under either norm at its default tolerances */
    sn_tol tols[SN_N_TOLS + 1] = {sn_tols[0], sn_tols[1], sn_tols[2], {1e-7, 1e-9}};
    int status = 0;
    for (int ti = quick ? 0 : 0; ti < (quick ? 1 : SN_N_TOLS + 1) && !status; ti++)
        status = measure(ctx, "wide", wide_loss, &w, 1, params, list.n, tols[ti],
                         ti == SN_N_TOLS ? 80 : -1, ti == SN_N_TOLS ? 80 : -1);
    nd_param_list_destroy(&list);
    nd_module_destroy(w.net);
    nd_tensor_destroy(w.y0);
    nd_ctx_destroy(ctx);
    return status;
}

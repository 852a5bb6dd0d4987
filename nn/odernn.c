/* SPDX-License-Identifier: MIT
 * nn/odernn.c: the ODE-RNN module (see nn/odeblock.h): a neural ODE between observation times, a
 * masked GRU jump at each, over the union of a batch's times, in either direction. One nd_odeint
 * per interval (so the adjoint's memory stays O(1) in the steps of each); the module remembers
 * the trajectories of its last run to sum their op-owned statistics.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/odeblock.h"
#include "tensor/ctx_internal.h" /* ND_CHECK2: the NULL-input check */

typedef struct {
    nd_module base; /* first: a module like any other */
    nd_module *func, *cell;
    nd_odernn_options opts;
    int D, H;
    nd_tensor **params; /* (n_params,) func's parameters, handed to each solve */
    int n_params;
    nd_tensor **runs; /* (n_runs,) the last run's trajectories (arena), for their statistics */
    int n_runs;
} odernn;

static const char ODERNN_KIND[] = "ODERNN";

static nd_tensor *odernn_forward(nd_ctx *ctx, nd_module *self, nd_tensor *x)
{
    (void)self, (void)x;
    return nd_fail_null(ctx, ND_ERR_ARG,
                        "nd_module_forward: an ODERNN needs times and a mask: use nd_odernn_run");
}

static odernn *as_odernn(nd_ctx *ctx, const char *fn, const nd_module *m)
{
    if (m && m->forward == odernn_forward) return (odernn *)m;
    nd_fail(ctx, ND_ERR_ARG, "%s: module is %s%s, not an ODERNN", fn, m ? "a " : "",
            m ? m->kind : "NULL");
    return NULL;
}

static int odernn_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *h, nd_tensor **dh, void *data)
{
    (void)t;
    *dh = nd_module_forward(ctx, ((odernn *)data)->func, h);
    return *dh ? 0 : -1;
}

static void odernn_destroy(nd_module *self)
{
    free(((odernn *)self)->params);
}

nd_module *nd_odernn_create(nd_ctx *ctx, nd_module *func, nd_module *cell,
                            const nd_odernn_options *opts)
{
    if (!func || !cell) {
        nd_module_destroy(func), nd_module_destroy(cell);
        return NULL;
    }
    int H = nd_rnn_cell_hidden_size(cell);
    nd_param_list cp = {0};
    nd_status st = nd_module_params(ctx, cell, &cp);
    nd_tensor *w_ih = st == ND_OK ? nd_param_list_find(&cp, "weight_ih") : NULL;
    int in = w_ih ? w_ih->shape[1] : 0;
    nd_param_list_destroy(&cp);
    if (st != ND_OK || strcmp(cell->kind, "GRUCell") != 0 || in % 2 != 0) {
        const char *kind = cell->kind; /* a static string: valid after the destroy */
        nd_module_destroy(func), nd_module_destroy(cell);
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_odernn_create: cell is a %s with input_size %d, not a GRUCell "
                            "with an even input_size 2 D (values and mask)",
                            kind, in);
    }
    odernn *r = (odernn *)nd_module_create(ctx, ODERNN_KIND, odernn_forward, sizeof *r);
    if (!r) {
        nd_module_destroy(func), nd_module_destroy(cell);
        return NULL;
    }
    r->opts = opts ? *opts : ND_ODERNN_DEFAULT;
    r->D = in / 2, r->H = H;
    r->base.on_destroy = odernn_destroy;
    if (nd_module_add_child(ctx, &r->base, "func", func) != ND_OK) {
        nd_module_destroy(cell), nd_module_destroy(&r->base);
        return NULL;
    }
    if (nd_module_add_child(ctx, &r->base, "cell", cell) != ND_OK) {
        nd_module_destroy(&r->base);
        return NULL;
    }
    r->func = func, r->cell = cell;
    nd_param_list fp = {0};
    if (nd_module_params(ctx, func, &fp) != ND_OK) {
        nd_module_destroy(&r->base);
        return NULL;
    }
    r->params = malloc((size_t)(fp.n ? fp.n : 1) * sizeof *r->params);
    if (!r->params) {
        nd_param_list_destroy(&fp);
        nd_module_destroy(&r->base);
        return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_odernn_create: out of memory");
    }
    for (int i = 0; i < fp.n; i++) r->params[i] = fp.items[i].tensor;
    r->n_params = fp.n;
    nd_param_list_destroy(&fp);
    return &r->base;
}

/* x, mask, t, h0 against the module: T, B from x; the error names the shapes */
static bool run_check(nd_ctx *ctx, const odernn *r, const nd_tensor *x, const nd_tensor *mask,
                      const nd_tensor *t, const nd_tensor *h0)
{
    const char *fn = "nd_odernn_run";
    char sx[64], sm[64], st[64], sh[64];
    bool ok = x->ndim == 3 && x->shape[0] >= 1 && x->shape[2] == r->D && t->ndim == 1 &&
              t->shape[0] == x->shape[0];
    if (ok && mask)
        ok = mask->shape[0] == x->shape[0] && mask->shape[1] == x->shape[1] &&
             (mask->ndim == 2 || (mask->ndim == 3 && mask->shape[2] == r->D));
    if (ok && h0) ok = h0->ndim == 2 && h0->shape[0] == x->shape[1] && h0->shape[1] == r->H;
    if (!ok) {
        nd_fail(ctx, ND_ERR_SHAPE,
                "%s: x %s, mask %s, t %s, h0 %s are not (T, B, D), (T, B[, D]), (T,), (B, H) "
                "with D = %d, H = %d",
                fn, nd_shape_str(x, sx), nd_shape_str(mask, sm), nd_shape_str(t, st),
                nd_shape_str(h0, sh), r->D, r->H);
        return false;
    }
    for (int i = 1; i < t->shape[0]; i++)
        if (!(t->data[i] > t->data[i - 1])) {
            nd_fail(ctx, ND_ERR_ARG, "%s: t is not strictly increasing: t[%d] = %g, t[%d] = %g", fn,
                    i - 1, (double)t->data[i - 1], i, (double)t->data[i]);
            return false;
        }
    return true;
}

/* The cell's input (x_i * m_i, m_i) (B, 2 D) and the per-sample observed flags (B,) at step i */
static nd_tensor *jump_input(nd_ctx *ctx, const odernn *r, nd_tensor *x, const nd_tensor *mask,
                             int i, nd_tensor **observed)
{
    int B = x->shape[1], D = r->D, per = mask && mask->ndim == 3 ? D : 1;
    nd_tensor *m = nd_tensor_new(ctx, 2, (int[]){B, D}); /* constant (B, D) */
    *observed = nd_tensor_new(ctx, 1, (int[]){B});
    if (!m || !*observed) return NULL;
    for (int b = 0; b < B; b++) {
        bool any = false;
        for (int d = 0; d < D; d++) {
            nd_real v = mask ? mask->data[((size_t)i * B + b) * per + (per == 1 ? 0 : d)] : 1;
            m->data[(size_t)b * D + d] = v != 0 ? 1 : 0;
            any = any || v != 0;
        }
        (*observed)->data[b] = any ? 1 : 0;
    }
    nd_tensor *xi = nd_reshape(ctx, nd_slice(ctx, x, 0, i, 1), 2, (int[]){B, D});
    return nd_concat(ctx, (nd_tensor *[]){nd_mul(ctx, xi, m), m}, 2, 1); /* (B, 2 D) */
}

/* h (B, H) carried by the ODE from time a to time b */
static nd_tensor *flow(nd_ctx *ctx, odernn *r, nd_tensor *h, nd_real a, nd_real b)
{
    nd_tensor *tt = nd_tensor_new(ctx, 1, (int[]){2});
    if (!tt || !h) return NULL;
    tt->data[0] = a, tt->data[1] = b;
    nd_tensor *ys = nd_odeint(ctx, odernn_dynamics, r, h, tt, r->params, r->n_params, &r->opts.ode);
    if (!ys) return NULL;
    r->runs[r->n_runs++] = ys;
    return nd_reshape(ctx, nd_slice(ctx, ys, 0, 1, 1), 2, h->shape); /* (B, H) at b */
}

nd_tensor *nd_odernn_run(nd_ctx *ctx, nd_module *m, nd_tensor *x, nd_tensor *mask, nd_tensor *t,
                         nd_tensor *h0)
{
    const char *fn = "nd_odernn_run";
    odernn *r = as_odernn(ctx, fn, m);
    if (!r) return NULL;
    r->n_runs = 0, r->runs = NULL;
    if (!ND_CHECK2(ctx, fn, x, t)) return NULL;
    if (!run_check(ctx, r, x, mask, t, h0)) return NULL;
    int T = x->shape[0], B = x->shape[1];
    nd_tensor *h = h0 ? h0 : nd_zeros(ctx, 2, (int[]){B, r->H});
    nd_tensor **hs = nd_ctx_alloc(ctx, (size_t)T * sizeof *hs);
    if (!hs || !(r->runs = nd_ctx_alloc(ctx, (size_t)T * sizeof *r->runs))) return NULL;
    for (int k = 0; k < T && h; k++) {
        int i = r->opts.reverse ? T - 1 - k : k, prev = r->opts.reverse ? i + 1 : i - 1;
        if (k > 0) h = flow(ctx, r, h, t->data[prev], t->data[i]);
        nd_tensor *observed = NULL, *in = jump_input(ctx, r, x, mask, i, &observed);
        h = nd_rnn_masked_step(ctx, r->cell, in, observed, h, NULL, NULL);
        hs[i] = nd_reshape(ctx, h, 3, (int[]){1, B, r->H});
    }
    return h ? nd_concat(ctx, hs, T, 0) : NULL; /* (T, B, H) in time order */
}

nd_odernn_options *nd_odernn_options_of(nd_ctx *ctx, nd_module *m)
{
    odernn *r = as_odernn(ctx, "nd_odernn_options_of", m);
    return r ? &r->opts : NULL;
}

nd_status nd_odernn_stats(nd_ctx *ctx, const nd_module *m, nd_ode_stats *out, int *n_solves)
{
    const odernn *r = as_odernn(ctx, "nd_odernn_stats", m);
    if (!r) return nd_ctx_error(ctx);
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "nd_odernn_stats: out is NULL");
    *out = (nd_ode_stats){0};
    for (int i = 0; i < r->n_runs; i++) {
        const nd_ode_stats *s = nd_odeint_stats(r->runs[i]);
        if (!s) continue;
        out->forward.nfe += s->forward.nfe, out->forward.accepted += s->forward.accepted;
        out->forward.rejected += s->forward.rejected;
        out->backward.nfe += s->backward.nfe, out->backward.accepted += s->backward.accepted;
        out->backward.rejected += s->backward.rejected;
    }
    if (n_solves) *n_solves = r->n_runs;
    return ND_OK;
}

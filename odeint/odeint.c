/* SPDX-License-Identifier: MIT
 * odeint/odeint.c: the odeint op. It checks its inputs, packs the state blocks into one vector,
 * solves, and records itself: in adjoint mode as one custom op whose backward is the adjoint ODE
 * (adjoint.c), in backprop mode as the solver's own recorded operations. The packed trajectory
 * (n_t, n) is then split back into the blocks' shapes with ordinary ops.
 */
#include <math.h>
#include <string.h>

#include "odeint/odeint_internal.h"
#include "odeint/tableau.h"

static const char *const method_names[ND_METHOD_COUNT] = {
    [ND_EULER] = "euler",     [ND_MIDPOINT] = "midpoint", [ND_RK4] = "rk4",
    [ND_HEUN_EULER] = "adaptive_heun", [ND_FEHLBERG2] = "fehlberg2", [ND_BOSH3] = "bosh3",
    [ND_DOPRI5] = "dopri5",   [ND_TSIT5] = "tsit5",       [ND_DOPRI8] = "dopri8",
};

int nd_ode_method_from_name(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "heun_euler") == 0) return ND_HEUN_EULER;
    for (int i = 0; i < ND_METHOD_COUNT; i++)
        if (strcmp(name, method_names[i]) == 0) return i;
    return -1;
}

const char *nd_ode_method_name(nd_ode_method m)
{
    return (int)m >= 0 && m < ND_METHOD_COUNT ? method_names[m] : "unknown";
}

/* ---- the user system ---------------------------------------------------------------------- */

bool nd_user_unpack(nd_ctx *ctx, const nd_user_system *us, nd_tensor *y, nd_tensor **blocks)
{
    if (us->n_y == 1) {
        blocks[0] = nd_reshape(ctx, y, us->y0s[0]->ndim, us->y0s[0]->shape);
        return blocks[0] != NULL;
    }
    bool recording = nd_ctx_grad_enabled(ctx) && y->requires_grad;
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        const nd_tensor *shape = us->y0s[b];
        if (recording) {
            nd_tensor *s = nd_slice(ctx, y, 0, (int)off, (int)us->block_size[b]);
            blocks[b] = nd_reshape(ctx, s, shape->ndim, shape->shape);
        } else {
            nd_tensor *d = nd_detach(ctx, y); /* a header over y's memory, then moved */
            if (d) {
                d->ndim = shape->ndim;
                memcpy(d->shape, shape->shape, sizeof d->shape);
                d->size = us->block_size[b];
                d->data = y->data + off;
            }
            blocks[b] = d;
        }
        if (!blocks[b]) return false;
    }
    return true;
}

/* dydt blocks -> one (n,) vector; recorded when any block requires grad */
static nd_tensor *pack(nd_ctx *ctx, const nd_user_system *us, nd_tensor **d)
{
    nd_tensor *flat[64];
    nd_tensor **parts = us->n_y <= (int)(sizeof flat / sizeof flat[0])
                            ? flat
                            : nd_ctx_alloc(ctx, (size_t)us->n_y * sizeof *parts);
    if (!parts) return NULL;
    for (int b = 0; b < us->n_y; b++) {
        parts[b] = nd_reshape(ctx, d[b], 1, (int[]){(int)us->block_size[b]});
        if (!parts[b]) return NULL;
    }
    return us->n_y == 1 ? parts[0] : nd_concat(ctx, parts, us->n_y, 0);
}

int nd_user_eval(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *y, nd_tensor **dy)
{
    nd_user_system *us = (nd_user_system *)sys;
    nd_tensor *t_tensor = us->t_leaf;
    if (t_tensor)
        t_tensor->data[0] = (nd_real)t;
    else
        t_tensor = nd_scalar(ctx, (nd_real)t);
    nd_tensor **blocks = nd_ctx_alloc(ctx, 2 * (size_t)us->n_y * sizeof *blocks);
    if (!t_tensor || !blocks || !nd_user_unpack(ctx, us, y, blocks)) return -1;
    nd_tensor **d = blocks + us->n_y;
    memset(d, 0, (size_t)us->n_y * sizeof *d);
    int rc = us->fn ? us->fn(ctx, t_tensor, blocks, us->n_y, d, us->user_data)
                    : us->f1(ctx, t_tensor, blocks[0], &d[0], us->user_data);
    if (rc < 0) {
        if (nd_ctx_error(ctx) == ND_OK)
            nd_fail(ctx, ND_ERR_CALLBACK, "%s: f returned %d at t = %.17g", sys->what, rc, t);
        return -1;
    }
    if (rc > 0) return rc;
    for (int b = 0; b < us->n_y; b++) {
        if (!d[b]) {
            if (nd_ctx_error(ctx) == ND_OK)
                nd_fail(ctx, ND_ERR_CALLBACK, "%s: f returned 0 but left dydt[%d] NULL at t = %.17g",
                        sys->what, b, t);
            return -1;
        }
        if (!nd_same_shape(d[b], us->y0s[b])) {
            char sd[64], sy[64];
            nd_fail(ctx, ND_ERR_SHAPE, "%s: f returned dydt[%d] of shape %s for a state of shape %s",
                    sys->what, b, nd_shape_str(d[b], sd), nd_shape_str(us->y0s[b], sy));
            return -1;
        }
    }
    *dy = pack(ctx, us, d);
    return *dy ? 0 : -1;
}

/* ---- checks ------------------------------------------------------------------------------- */

static bool strictly_monotone(const double *v, int n, double dir)
{
    for (int i = 1; i < n; i++)
        if (!(dir * (v[i] - v[i - 1]) > 0)) return false;
    return true;
}

static nd_status check_breakpoints(nd_ctx *ctx, const nd_ode_options *o, double dir)
{
    const char *names[2] = {"step_t", "jump_t"};
    const double *v[2] = {o->step_t, o->jump_t};
    int n[2] = {o->n_step_t, o->n_jump_t};
    for (int k = 0; k < 2; k++) {
        if (n[k] < 0 || (n[k] > 0 && !v[k]))
            return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: %s is NULL or has negative length",
                           names[k]);
        for (int i = 0; i < n[k]; i++)
            if (!isfinite(v[k][i]))
                return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: %s[%d] is not finite", names[k], i);
        if (!strictly_monotone(v[k], n[k], dir))
            return nd_fail(ctx, ND_ERR_ARG,
                           "nd_odeint: %s must be strictly ordered in the direction of t", names[k]);
    }
    for (int i = 0; i < n[0]; i++)
        for (int j = 0; j < n[1]; j++)
            if (v[0][i] == v[1][j])
                return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: %.17g is in both step_t and jump_t",
                               v[0][i]);
    return ND_OK;
}

static nd_status check_inputs(nd_ctx *ctx, const void *f, nd_tensor *const *y0s, int n_y,
                              nd_tensor *t, nd_tensor *const *params, int n_params,
                              const nd_ode_options *o)
{
    if (!f) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: f is NULL");
    if (n_y <= 0 || !y0s) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: no initial state given");
    for (int i = 0; i < n_y; i++)
        if (!y0s[i]) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: y0[%d] is NULL", i);
    if (!t) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: t is NULL");
    if (n_params < 0 || (n_params > 0 && !params))
        return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: params is NULL or n_params negative");
    for (int i = 0; i < n_params; i++)
        if (!params[i]) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint: params[%d] is NULL", i);
    char st[64];
    if (t->ndim != 1 || t->size < 2)
        return nd_fail(ctx, ND_ERR_SHAPE, "nd_odeint: t must be 1-D with at least 2 times, got %s",
                       nd_shape_str(t, st));
    if (!nd_all_finite(t)) return nd_fail(ctx, ND_ERR_NONFINITE, "nd_odeint: t is not finite");
    double dir = t->data[t->size - 1] > t->data[0] ? 1 : -1;
    for (size_t i = 1; i < t->size; i++)
        if (!(dir * ((double)t->data[i] - t->data[i - 1]) > 0))
            return nd_fail(ctx, ND_ERR_ARG,
                           "nd_odeint: t must be strictly increasing or decreasing (t[%zu] = %g, "
                           "t[%zu] = %g)",
                           i - 1, (double)t->data[i - 1], i, (double)t->data[i]);
    for (int i = 0; i < n_y; i++)
        if (!nd_all_finite(y0s[i]))
            return nd_fail(ctx, ND_ERR_NONFINITE, "nd_odeint: y0[%d] is not finite", i);
    nd_status st_ = nd_ode_check_options(ctx, "nd_odeint", &o->solver);
    if (st_ == ND_OK && o->grad == ND_GRAD_ADJOINT)
        st_ = nd_ode_check_options(ctx, "nd_odeint (adjoint options)", &o->adjoint);
    if (st_ == ND_OK) st_ = check_breakpoints(ctx, o, dir);
    if (st_ == ND_OK && o->grad != ND_GRAD_ADJOINT && o->grad != ND_GRAD_BACKPROP)
        st_ = nd_fail(ctx, ND_ERR_ARG, "nd_odeint: unknown gradient mode %d", (int)o->grad);
    return st_;
}

/* ---- the op ------------------------------------------------------------------------------- */

static double *copy_doubles(nd_ctx *ctx, const double *v, int n)
{
    if (n <= 0) return NULL;
    double *c = nd_ctx_alloc(ctx, (size_t)n * sizeof *c);
    if (c) memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

static bool build_user_system(nd_ctx *ctx, nd_user_system *us, nd_tensor *const *y0s, int n_y,
                              const nd_solver_options *so, const char *what)
{
    us->n_y = n_y;
    us->y0s = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->y0s);
    us->block_size = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->block_size);
    us->role = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->role);
    us->rtol = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->rtol);
    us->atol = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->atol);
    if (!us->y0s || !us->block_size || !us->role || !us->rtol || !us->atol) return false;
    size_t n = 0;
    for (int b = 0; b < n_y; b++) {
        us->y0s[b] = y0s[b];
        us->block_size[b] = y0s[b]->size;
        us->role[b] = ND_ROLE_STATE;
        us->rtol[b] = so->rtol_blocks ? so->rtol_blocks[b] : so->rtol;
        us->atol[b] = so->atol_blocks ? so->atol_blocks[b] : so->atol;
        n += y0s[b]->size;
    }
    if (n > (size_t)INT32_MAX) {
        nd_fail(ctx, ND_ERR_SHAPE, "nd_odeint: state of %zu elements is too large", n);
        return false;
    }
    us->sys = (nd_ode_system){.eval = nd_user_eval, .n = n, .n_blocks = n_y,
                              .block_size = us->block_size, .role = us->role, .rtol = us->rtol,
                              .atol = us->atol, .what = what};
    return true;
}

/* The packed initial state (n,): recorded from the blocks when they require grad. */
static nd_tensor *pack_initial(nd_ctx *ctx, const nd_user_system *us)
{
    return pack(ctx, us, us->y0s);
}

/* Splits the packed trajectory (n_t, n) into the blocks' trajectories (n_t, *shape). */
static nd_status split_output(nd_ctx *ctx, const nd_user_system *us, nd_tensor *packed, int n_t,
                              nd_tensor **ys_out)
{
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        const nd_tensor *y0 = us->y0s[b];
        int shape[ND_MAX_DIMS + 1] = {n_t};
        memcpy(shape + 1, y0->shape, (size_t)y0->ndim * sizeof *shape);
        if (y0->ndim + 1 > ND_MAX_DIMS)
            return nd_fail(ctx, ND_ERR_SHAPE,
                           "nd_odeint: y0[%d] has %d dims; the trajectory would need %d (max %d)",
                           b, y0->ndim, y0->ndim + 1, ND_MAX_DIMS);
        nd_tensor *blk = us->n_y == 1 ? packed
                                      : nd_slice(ctx, packed, 1, (int)off, (int)us->block_size[b]);
        ys_out[b] = nd_reshape(ctx, blk, y0->ndim + 1, shape);
        if (!ys_out[b]) return nd_ctx_error(ctx);
    }
    return ND_OK;
}

static bool any_requires_grad(nd_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts[i]->requires_grad) return true;
    return false;
}

static nd_status odeint_impl(nd_ctx *ctx, nd_ode_fn f1, nd_ode_tuple_fn fn, void *user_data,
                             nd_tensor *const *y0s, int n_y, nd_tensor *t,
                             nd_tensor *const *params, int n_params, const nd_ode_options *opts,
                             nd_ode_stats *stats, nd_tensor **ys_out)
{
    if (nd_ctx_error(ctx)) return nd_ctx_error(ctx);
    nd_ode_options o = opts ? *opts : ND_ODE_DEFAULT;
    nd_status st = check_inputs(ctx, f1 ? (const void *)f1 : (const void *)fn, y0s, n_y, t, params,
                                n_params, &o);
    if (st != ND_OK) return st;
    for (int i = 0; i < n_y; i++) ys_out[i] = NULL;

    bool recording = nd_ctx_grad_enabled(ctx);
    bool t_grad = recording && t->requires_grad;
    bool needs_grad = recording && (any_requires_grad(y0s, n_y) ||
                                    any_requires_grad(params, n_params) || t_grad);
    bool taped = needs_grad && o.grad == ND_GRAD_BACKPROP;
    nd_odeint_saved *sv = nd_ctx_alloc(ctx, sizeof *sv);
    if (!sv) return nd_ctx_error(ctx);
    memset(sv, 0, sizeof *sv);
    if (!stats) stats = &sv->own_stats; /* the backward writes there: it must outlive this call */
    memset(stats, 0, sizeof *stats);
    sv->us.f1 = f1, sv->us.fn = fn, sv->us.user_data = user_data;
    if (!build_user_system(ctx, &sv->us, y0s, n_y, &o.solver, "nd_odeint")) return nd_ctx_error(ctx);
    int n_t = (int)t->size;
    sv->n_t = n_t;
    sv->tv = nd_ctx_alloc(ctx, (size_t)n_t * sizeof *sv->tv);
    if (!sv->tv) return nd_ctx_error(ctx);
    for (int i = 0; i < n_t; i++) sv->tv[i] = (double)t->data[i];
    o.step_t = copy_doubles(ctx, o.step_t, o.n_step_t);
    o.jump_t = copy_doubles(ctx, o.jump_t, o.n_jump_t);
    nd_breakpoints bp = {o.step_t, o.jump_t, o.n_step_t, o.n_jump_t};
    size_t n = sv->us.sys.n;

    nd_tensor *packed;
    if (taped) {
        nd_tensor *y0 = pack_initial(ctx, &sv->us);
        nd_tensor **rows = nd_ctx_alloc(ctx, (size_t)n_t * sizeof *rows);
        if (!y0 || !rows) return nd_ctx_error(ctx);
        st = nd_ode_solve(ctx, &sv->us.sys, &o.solver, &bp, y0, sv->tv, n_t, true, NULL, rows,
                          &stats->forward);
        if (st != ND_OK) return st;
        for (int i = 0; i < n_t; i++) rows[i] = nd_reshape(ctx, rows[i], 2, (int[]){1, (int)n});
        packed = nd_concat(ctx, rows, n_t, 0);
        if (packed && t_grad) {
            sv->t = t, sv->t_grad = true, sv->stats = stats;
            packed = nd_odeint_time_op(ctx, sv, packed, y0);
        }
    } else {
        /* untaped: nothing inside the solve is recorded; one op stands for it */
        bool prev = nd_ctx_set_grad(ctx, false);
        nd_tensor *y0 = pack_initial(ctx, &sv->us);
        packed = nd_tensor_new(ctx, 2, (int[]){n_t, (int)n});
        st = y0 && packed ? nd_ode_solve(ctx, &sv->us.sys, &o.solver, &bp, y0, sv->tv, n_t, false,
                                         packed->data, NULL, &stats->forward)
                          : nd_ctx_error(ctx);
        nd_ctx_set_grad(ctx, prev);
        if (st != ND_OK) return st;
        if (needs_grad) {
            int n_src = 0;
            nd_tensor **src = nd_ctx_alloc(ctx, (size_t)(n_y + n_params + 1) * sizeof *src);
            sv->params = nd_ctx_alloc(ctx, (size_t)(n_params + 1) * sizeof *sv->params);
            if (!src || !sv->params) return nd_ctx_error(ctx);
            for (int i = 0; i < n_y; i++) src[n_src++] = y0s[i];
            for (int i = 0; i < n_params; i++)
                if (params[i]->requires_grad) src[n_src++] = sv->params[sv->n_params++] = params[i];
            if (t_grad) src[n_src++] = t;
            sv->t = t, sv->t_grad = t_grad, sv->opts = o, sv->stats = stats;
            nd_custom_op op = {"odeint", nd_odeint_adjoint_backward, sv};
            packed = nd_record_custom(ctx, packed, &op, n_src, src);
        }
    }
    if (!packed) return nd_ctx_error(ctx);
    return split_output(ctx, &sv->us, packed, n_t, ys_out);
}

nd_tensor *nd_odeint(nd_ctx *ctx, nd_ode_fn f, void *user_data, nd_tensor *y0, nd_tensor *t,
                     nd_tensor *const *params, int n_params, const nd_ode_options *opts,
                     nd_ode_stats *stats)
{
    nd_tensor *out = NULL;
    if (!y0 || !t) return NULL; /* the first error stays in ctx */
    if (!f) return nd_fail_null(ctx, ND_ERR_ARG, "nd_odeint: f is NULL");
    odeint_impl(ctx, f, NULL, user_data, &y0, 1, t, params, n_params, opts, stats, &out);
    return out;
}

nd_status nd_odeint_tuple(nd_ctx *ctx, nd_ode_tuple_fn f, void *user_data, nd_tensor *const *y0s,
                          int n_y, nd_tensor *t, nd_tensor *const *params, int n_params,
                          const nd_ode_options *opts, nd_ode_stats *stats, nd_tensor **ys_out)
{
    if (!ys_out) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint_tuple: ys_out is NULL");
    if (!f) return nd_fail(ctx, ND_ERR_ARG, "nd_odeint_tuple: f is NULL");
    return odeint_impl(ctx, NULL, f, user_data, y0s, n_y, t, params, n_params, opts, stats,
                       ys_out);
}

/* SPDX-License-Identifier: MIT
 * odeint/odeint.c: the odeint op. It checks its inputs, packs the state blocks into one vector,
 * solves, and records itself: in adjoint mode as one custom op whose backward is the adjoint ODE
 * (adjoint.c), in backprop mode as the solver's own recorded operations. The packed trajectory
 * (n_t, n) is then split back into the blocks' shapes with ordinary ops, each of which carries
 * the op's statistics (nd_odeint_stats).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "odeint/replay.h"

/* ---- checks ------------------------------------------------------------------------------- */

static bool strictly_monotone(const double *v, int n, double dir)
{
    for (int i = 1; i < n; i++)
        if (!(dir * (v[i] - v[i - 1]) > 0)) return false;
    return true;
}

static nd_status check_breakpoints(nd_ctx *ctx, const char *name, const nd_ode_options *o,
                                   double dir)
{
    const char *names[2] = {"step_t", "jump_t"};
    const double *v[2] = {o->step_t, o->jump_t};
    int n[2] = {o->n_step_t, o->n_jump_t};
    for (int k = 0; k < 2; k++) {
        if (n[k] < 0 || (n[k] > 0 && !v[k]))
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s is NULL or has negative length", name,
                           names[k]);
        for (int i = 0; i < n[k]; i++)
            if (!isfinite(v[k][i]))
                return nd_fail(ctx, ND_ERR_ARG, "%s: %s[%d] is not finite", name, names[k], i);
        if (!strictly_monotone(v[k], n[k], dir))
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s must be strictly ordered in the direction of t",
                           name, names[k]);
    }
    for (int i = 0; i < n[0]; i++)
        for (int j = 0; j < n[1]; j++)
            if (v[0][i] == v[1][j])
                return nd_fail(ctx, ND_ERR_ARG, "%s: %.17g is in both step_t and jump_t", name,
                               v[0][i]);
    return ND_OK;
}

static nd_status check_tensors(nd_ctx *ctx, const char *name, nd_tensor *const *y0s, int n_y,
                               nd_tensor *t, nd_tensor *const *params, int n_params)
{
    if (n_y <= 0 || !y0s) return nd_fail(ctx, ND_ERR_ARG, "%s: no initial state given", name);
    for (int i = 0; i < n_y; i++)
        if (!y0s[i]) return nd_fail(ctx, ND_ERR_ARG, "%s: y0[%d] is NULL", name, i);
    if (!t) return nd_fail(ctx, ND_ERR_ARG, "%s: t is NULL", name);
    if (n_params < 0 || (n_params > 0 && !params))
        return nd_fail(ctx, ND_ERR_ARG, "%s: params is NULL or n_params (%d) negative", name,
                       n_params);
    for (int i = 0; i < n_params; i++)
        if (!params[i]) return nd_fail(ctx, ND_ERR_ARG, "%s: params[%d] is NULL", name, i);
    char sh[64];
    for (int i = 0; i < n_y; i++) {
        if (y0s[i]->ndim + 1 > ND_MAX_DIMS)
            return nd_fail(ctx, ND_ERR_SHAPE,
                           "%s: y0[%d] %s has %d dims; its trajectory would need %d (max %d)", name,
                           i, nd_shape_str(y0s[i], sh), y0s[i]->ndim, y0s[i]->ndim + 1,
                           ND_MAX_DIMS);
        if (!nd_all_finite(y0s[i]))
            return nd_fail(ctx, ND_ERR_NONFINITE, "%s: y0[%d] is not finite", name, i);
    }
    return ND_OK;
}

static nd_status check_times(nd_ctx *ctx, const char *name, nd_tensor *t)
{
    char st[64];
    if (t->ndim != 1 || t->size < 2)
        return nd_fail(ctx, ND_ERR_SHAPE, "%s: t must be 1-D with at least 2 times, got %s", name,
                       nd_shape_str(t, st));
    if (!nd_all_finite(t)) return nd_fail(ctx, ND_ERR_NONFINITE, "%s: t is not finite", name);
    double dir = t->data[t->size - 1] > t->data[0] ? 1 : -1;
    for (size_t i = 1; i < t->size; i++)
        if (!(dir * ((double)t->data[i] - t->data[i - 1]) > 0))
            return nd_fail(ctx, ND_ERR_ARG,
                           "%s: t must be strictly increasing or decreasing (t[%zu] = %g, "
                           "t[%zu] = %g)",
                           name, i - 1, (double)t->data[i - 1], i, (double)t->data[i]);
    return ND_OK;
}

/* The options, the adjoint's resolved (o->adjoint is replaced by what the adjoint will use). */
static nd_status check_options(nd_ctx *ctx, const char *name, nd_ode_options *o, int n_y,
                               double dir)
{
    if ((int)o->grad < ND_GRAD_ADJOINT || o->grad > ND_GRAD_CHECKPOINTED)
        return nd_fail(ctx, ND_ERR_ARG, "%s: unknown gradient mode %d", name, (int)o->grad);
    if (o->grad == ND_GRAD_CHECKPOINTED && o->checkpoints < 1)
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: checkpoints (%d) must be >= 1 with ND_GRAD_CHECKPOINTED (the solver "
                       "states the forward solve keeps; ND_ODE_DEFAULT has %d)",
                       name, o->checkpoints, ND_DEFAULT_CHECKPOINTS);
    if (o->checkpoint_every < 0)
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: checkpoint_every (%d) must be >= 0 (0: checkpoints at the output "
                       "times only)",
                       name, o->checkpoint_every);
    nd_status st = nd_ode_check_options(ctx, name, &o->solver, n_y);
    if (st != ND_OK) return st;
    o->adjoint = nd_ode_resolve_adjoint(&o->solver, &o->adjoint);
    char adjoint_name[64];
    snprintf(adjoint_name, sizeof adjoint_name, "%s (adjoint options)", name);
    if (o->grad != ND_GRAD_BACKPROP) st = nd_ode_check_options(ctx, adjoint_name, &o->adjoint, n_y);
    return st == ND_OK ? check_breakpoints(ctx, name, o, dir) : st;
}

/* ---- the forward system ------------------------------------------------------------------- */

static int forward_on_step(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip)
{
    const nd_step_observer *obs = ((nd_forward_system *)sys)->obs;
    return obs->on_step(obs->data, ctx, ip);
}

static int forward_eval(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *y, nd_tensor **dy)
{
    const nd_user_system *us = ((nd_forward_system *)sys)->us;
    return nd_user_call(ctx, us, us->what, t, NULL, y, dy);
}

bool nd_forward_system_init(nd_ctx *ctx, nd_forward_system *fs, const nd_user_system *us,
                            const nd_solver_options *so)
{
    int n_y = us->n_y;
    nd_block_role *role = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *role);
    double *rtol = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *rtol);
    double *atol = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *atol);
    if (!role || !rtol || !atol) return false;
    for (int b = 0; b < n_y; b++) {
        role[b] = ND_ROLE_STATE;
        rtol[b] = so->rtol_blocks ? so->rtol_blocks[b] : so->rtol;
        atol[b] = so->atol_blocks ? so->atol_blocks[b] : so->atol;
    }
    fs->us = us;
    fs->obs = NULL;
    fs->sys = (nd_ode_system){.eval = forward_eval,
                              .n = us->n,
                              .n_blocks = n_y,
                              .block_size = us->block_size,
                              .role = role,
                              .rtol = rtol,
                              .atol = atol,
                              .what = us->what};
    return true;
}

/* ---- the op ------------------------------------------------------------------------------- */

static double *copy_doubles(nd_ctx *ctx, const double *v, int n)
{
    if (n <= 0) return NULL;
    double *c = nd_ctx_alloc(ctx, (size_t)n * sizeof *c);
    if (c) memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

/* Splits the packed trajectory (n_t, n) into the blocks' trajectories (n_t, *shape), each
 * tagged with the op's statistics. */
static nd_status split_output(nd_ctx *ctx, nd_odeint_saved *sv, nd_tensor *packed,
                              nd_tensor **ys_out)
{
    const nd_user_system *us = &sv->us;
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        const nd_tensor *y0 = us->y0s[b];
        int shape[ND_MAX_DIMS] = {sv->n_t};
        memcpy(shape + 1, y0->shape, (size_t)y0->ndim * sizeof *shape);
        nd_tensor *blk =
            us->n_y == 1 ? packed : nd_slice(ctx, packed, 1, (int)off, (int)us->block_size[b]);
        ys_out[b] = nd_reshape(ctx, blk, y0->ndim + 1, shape);
        if (!ys_out[b]) return nd_ctx_error(ctx);
        ys_out[b]->aux = sv; /* reshape keeps nothing in aux: nd_odeint_stats finds sv there */
    }
    return ND_OK;
}

const nd_ode_stats *nd_odeint_stats(const nd_tensor *ys)
{
    if (!ys || !ys->aux || (ys->op != ND_OP_RESHAPE && ys->op != ND_OP_NONE)) return NULL;
    const nd_odeint_saved *sv = ys->aux;
    return sv->magic == ND_ODEINT_MAGIC ? &sv->stats : NULL;
}

static bool any_requires_grad(nd_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts[i]->requires_grad) return true;
    return false;
}

/* Backprop through the solver: the solve recorded step by step, rows joined into (n_t, n). */
static nd_tensor *solve_taped(nd_ctx *ctx, nd_odeint_saved *sv, nd_ode_system *sys,
                              const nd_breakpoints *bp)
{
    int n_t = sv->n_t, n = (int)sv->us.n;
    nd_tensor *y0 = nd_user_pack(ctx, &sv->us, sv->us.y0s);
    nd_tensor **rows = nd_ctx_alloc(ctx, (size_t)n_t * sizeof *rows);
    if (!y0 || !rows) return NULL;
    if (nd_ode_solve(ctx, sys, &sv->opts.solver, bp, y0, sv->tv, n_t, true, NULL, rows,
                     &sv->stats.forward) != ND_OK)
        return NULL;
    for (int i = 0; i < n_t; i++) rows[i] = nd_reshape(ctx, rows[i], 2, (int[]){1, n});
    nd_tensor *packed = nd_concat(ctx, rows, n_t, 0);
    return packed && sv->t_grad ? nd_odeint_time_op(ctx, sv, packed, y0) : packed;
}

/* Nothing inside the solve recorded: (n_t, n) values. */
static nd_tensor *solve_untaped(nd_ctx *ctx, nd_odeint_saved *sv, nd_ode_system *sys,
                                const nd_breakpoints *bp)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *y0 = nd_user_pack(ctx, &sv->us, sv->us.y0s);
    nd_tensor *packed = nd_tensor_new(ctx, 2, (int[]){sv->n_t, (int)sv->us.n});
    nd_status st = y0 && packed ? nd_ode_solve(ctx, sys, &sv->opts.solver, bp, y0, sv->tv, sv->n_t,
                                               false, packed->data, NULL, &sv->stats.forward)
                                : nd_ctx_error(ctx);
    nd_ctx_set_grad(ctx, prev);
    return st == ND_OK ? packed : NULL;
}

/* The adjoint op over the untaped solve: srcs are the states, the params requiring grad, t. */
static nd_tensor *record_adjoint(nd_ctx *ctx, nd_odeint_saved *sv, nd_tensor *packed,
                                 nd_tensor *const *params, int n_params)
{
    int n_y = sv->us.n_y, n_src = 0;
    nd_tensor **src = nd_ctx_alloc(ctx, (size_t)(n_y + n_params + 1) * sizeof *src);
    sv->params = nd_ctx_alloc(ctx, (size_t)(n_params + 1) * sizeof *sv->params);
    if (!src || !sv->params) return NULL;
    for (int i = 0; i < n_y; i++) src[n_src++] = sv->us.y0s[i];
    for (int i = 0; i < n_params; i++)
        if (params[i]->requires_grad) src[n_src++] = sv->params[sv->n_params++] = params[i];
    if (sv->t_grad) src[n_src++] = sv->t;
    nd_custom_op op = {"odeint",
                       sv->ckpt     ? nd_odeint_checkpoint_backward
                       : sv->replay ? nd_odeint_interp_backward
                                    : nd_odeint_adjoint_backward,
                       sv};
    return nd_record_custom(ctx, packed, &op, n_src, src);
}

/* A solver's arrays (per-block tolerances over n_y blocks, the grid) copied into the arena: the
 * backward reads them long after the caller's own arrays may be gone. */
static void keep_arrays(nd_ctx *ctx, nd_solver_options *so, int n_y)
{
    if (so->rtol_blocks) so->rtol_blocks = copy_doubles(ctx, so->rtol_blocks, n_y);
    if (so->atol_blocks) so->atol_blocks = copy_doubles(ctx, so->atol_blocks, n_y);
    so->grid = copy_doubles(ctx, so->grid, so->n_grid);
}

/* What the op saves: the system, the times, the options (the adjoint's resolved) with every
 * array copied, so nothing the backward reads points into the caller's memory. */
static nd_odeint_saved *save(nd_ctx *ctx, nd_ode_fn f1, nd_ode_tuple_fn fn, void *user_data,
                             nd_tensor *const *y0s, int n_y, nd_tensor *t, const nd_ode_options *o)
{
    nd_odeint_saved *sv = nd_ctx_alloc(ctx, sizeof *sv);
    if (!sv) return NULL;
    memset(sv, 0, sizeof *sv);
    sv->magic = ND_ODEINT_MAGIC;
    if (!nd_user_system_init(ctx, &sv->us, f1, fn, user_data, y0s, n_y)) return NULL;
    sv->t = t;
    sv->n_t = (int)t->size;
    sv->tv = nd_ctx_alloc(ctx, t->size * sizeof *sv->tv);
    if (!sv->tv) return NULL;
    for (int i = 0; i < sv->n_t; i++) sv->tv[i] = (double)t->data[i];
    sv->opts = *o;
    sv->opts.step_t = copy_doubles(ctx, o->step_t, o->n_step_t);
    sv->opts.jump_t = copy_doubles(ctx, o->jump_t, o->n_jump_t);
    keep_arrays(ctx, &sv->opts.solver, n_y);
    keep_arrays(ctx, &sv->opts.adjoint, n_y);
    return nd_ctx_error(ctx) ? NULL : sv;
}

nd_status nd_odeint_observed(nd_ctx *ctx, const char *name, nd_ode_fn f1, nd_ode_tuple_fn fn,
                             void *user_data, nd_tensor *const *y0s, int n_y, nd_tensor *t,
                             nd_tensor *const *params, int n_params, const nd_ode_options *opts,
                             const nd_step_observer *obs, nd_tensor **ys_out)
{
    nd_ode_options o = opts ? *opts : ND_ODE_DEFAULT;
    nd_status st = check_tensors(ctx, name, y0s, n_y, t, params, n_params);
    if (st == ND_OK) st = check_times(ctx, name, t);
    double dir = st == ND_OK && t->data[t->size - 1] > t->data[0] ? 1 : -1;
    if (st == ND_OK) st = check_options(ctx, name, &o, n_y, dir);
    if (st != ND_OK) return st;

    bool recording = nd_ctx_grad_enabled(ctx);
    bool t_grad = recording && t->requires_grad;
    bool needs_grad =
        recording && (any_requires_grad(y0s, n_y) || any_requires_grad(params, n_params) || t_grad);
    nd_odeint_saved *sv = save(ctx, f1, fn, user_data, y0s, n_y, t, &o);
    nd_forward_system fs;
    if (!sv || !nd_forward_system_init(ctx, &fs, &sv->us, &sv->opts.solver))
        return nd_ctx_error(ctx);
    if (obs) fs.obs = obs, fs.sys.on_step = forward_on_step;
    sv->t_grad = t_grad;
    nd_breakpoints bp = {sv->opts.step_t, sv->opts.jump_t, o.n_step_t, o.n_jump_t};

    nd_tensor *packed;
    if (needs_grad && o.grad == ND_GRAD_BACKPROP) {
        packed = solve_taped(ctx, sv, &fs.sys, &bp);
    } else {
        /* the interpolating adjoints record checkpoints as the solve goes (replay.c) */
        bool replay = needs_grad &&
                      (o.grad == ND_GRAD_INTERP_ADJOINT || o.grad == ND_GRAD_QUADRATURE_ADJOINT);
        bool ckpt = needs_grad && o.grad == ND_GRAD_CHECKPOINTED; /* checkpoint.c */
        if (replay && !nd_replay_begin(ctx, sv, &fs)) return nd_ctx_error(ctx);
        if (ckpt && !nd_checkpoint_begin(ctx, sv, &fs)) return nd_ctx_error(ctx);
        nd_ode_system *sys = replay ? &sv->replay->fs.sys
                             : ckpt ? nd_checkpoint_system(sv)
                                    : &fs.sys;
        packed = solve_untaped(ctx, sv, sys, &bp);
        if (replay && !nd_replay_end(ctx, sv, packed)) packed = NULL;
        if (ckpt && !nd_checkpoint_end(ctx, sv, packed)) packed = NULL;
        if (packed && needs_grad) packed = record_adjoint(ctx, sv, packed, params, n_params);
    }
    return packed ? split_output(ctx, sv, packed, ys_out) : nd_ctx_error(ctx);
}

nd_tensor *nd_odeint(nd_ctx *ctx, nd_ode_fn f, void *user_data, nd_tensor *y0, nd_tensor *t,
                     nd_tensor *const *params, int n_params, const nd_ode_options *opts)
{
    if (nd_ctx_error(ctx)) return NULL; /* an earlier op failed: its error stays */
    if (!f) return nd_fail_null(ctx, ND_ERR_ARG, "nd_odeint: f is NULL");
    nd_tensor *out = NULL;
    return nd_odeint_observed(ctx, "nd_odeint", f, NULL, user_data, &y0, 1, t, params, n_params,
                              opts, NULL, &out) == ND_OK
               ? out
               : NULL;
}

nd_tensor *nd_odeint_tuple(nd_ctx *ctx, nd_ode_tuple_fn f, void *user_data, nd_tensor *const *y0s,
                           int n_y, nd_tensor *t, nd_tensor *const *params, int n_params,
                           const nd_ode_options *opts, nd_tensor **ys_out)
{
    if (!ys_out) return nd_fail_null(ctx, ND_ERR_ARG, "nd_odeint_tuple: ys_out is NULL");
    for (int i = 0; i < n_y; i++) ys_out[i] = NULL;
    if (nd_ctx_error(ctx)) return NULL;
    if (!f) return nd_fail_null(ctx, ND_ERR_ARG, "nd_odeint_tuple: f is NULL");
    if (nd_odeint_observed(ctx, "nd_odeint_tuple", NULL, f, user_data, y0s, n_y, t, params,
                           n_params, opts, NULL, ys_out) == ND_OK)
        return ys_out[0];
    for (int i = 0; i < n_y; i++) ys_out[i] = NULL;
    return NULL;
}

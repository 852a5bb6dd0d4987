/* SPDX-License-Identifier: MIT
 * odeint/system.c: the one place that evaluates the user's system. The state is a tuple of
 * tensors packed into one vector for the solver; here it is unpacked into the blocks' shapes, f
 * runs on them, and dydt is packed again. The forward solve, the adjoint (with a differentiable
 * t) and the gradient with respect to the output times (f . g) all come through nd_user_call.
 */
#include <math.h>
#include <string.h>

#include "odeint/odeint_internal.h"

bool nd_user_system_init(nd_ctx *ctx, nd_user_system *us, nd_ode_fn f1, nd_ode_tuple_fn fn,
                         void *user_data, nd_tensor *const *y0s, int n_y)
{
    *us = (nd_user_system){.f1 = f1,
                           .fn = fn,
                           .user_data = user_data,
                           .n_y = n_y,
                           .what = fn ? "nd_odeint_tuple" : "nd_odeint",
                           .what_adjoint =
                               fn ? "adjoint of nd_odeint_tuple" : "adjoint of nd_odeint"};
    us->y0s = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->y0s);
    us->block_size = nd_ctx_alloc(ctx, (size_t)n_y * sizeof *us->block_size);
    if (!us->y0s || !us->block_size) return false;
    for (int b = 0; b < n_y; b++) {
        us->y0s[b] = y0s[b];
        us->block_size[b] = y0s[b]->size;
        us->n += y0s[b]->size;
    }
    if (us->n > (size_t)INT32_MAX) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: a state of %zu elements is too large", us->what, us->n);
        return false;
    }
    return true;
}

/* Views the blocks of a packed vector y (n,) as tensors of the blocks' shapes: recorded (slices
 * and reshapes) when y is tracked, plain views of y's memory otherwise. */
static bool unpack(nd_ctx *ctx, const nd_user_system *us, nd_tensor *y, nd_tensor **blocks)
{
    bool recording = nd_ctx_grad_enabled(ctx) && y->requires_grad;
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        const nd_tensor *shape = us->y0s[b];
        if (us->n_y == 1 || !recording) {
            blocks[b] = recording ? nd_reshape(ctx, y, shape->ndim, shape->shape)
                                  : nd_view(ctx, y, off, shape->ndim, shape->shape);
        } else {
            nd_tensor *s = nd_slice(ctx, y, 0, (int)off, (int)us->block_size[b]);
            blocks[b] = nd_reshape(ctx, s, shape->ndim, shape->shape);
        }
        if (!blocks[b]) return false;
    }
    return true;
}

nd_tensor *nd_user_pack(nd_ctx *ctx, const nd_user_system *us, nd_tensor *const *blocks)
{
    nd_tensor **parts = nd_ctx_alloc(ctx, (size_t)us->n_y * sizeof *parts);
    if (!parts) return NULL;
    for (int b = 0; b < us->n_y; b++) {
        parts[b] = nd_reshape(ctx, blocks[b], 1, (int[]){(int)us->block_size[b]});
        if (!parts[b]) return NULL;
    }
    return us->n_y == 1 ? parts[0] : nd_concat(ctx, parts, us->n_y, 0);
}

/* f's result checked: every block given, each of its state's shape */
static int check_dydt(nd_ctx *ctx, const nd_user_system *us, const char *what, double t,
                      nd_tensor *const *d)
{
    for (int b = 0; b < us->n_y; b++) {
        if (!d[b]) {
            if (nd_ctx_error(ctx) == ND_OK)
                nd_fail(ctx, ND_ERR_CALLBACK,
                        "%s: f returned 0 but left dydt[%d] NULL at t = %.17g", what, b, t);
            return -1;
        }
        if (!nd_same_shape(d[b], us->y0s[b])) {
            char sd[64], sy[64];
            nd_fail(ctx, ND_ERR_SHAPE,
                    "%s: f returned dydt[%d] of shape %s for a state of shape %s at t = %.17g",
                    what, b, nd_shape_str(d[b], sd), nd_shape_str(us->y0s[b], sy), t);
            return -1;
        }
    }
    return 0;
}

int nd_user_call(nd_ctx *ctx, const nd_user_system *us, const char *what, double t,
                 nd_tensor *t_tensor, nd_tensor *y, nd_tensor **dy)
{
    if (!isfinite(t) || !nd_all_finite(y)) { /* f never sees a NaN time or state */
        nd_fail(ctx, ND_ERR_NONFINITE, "%s: the %s is not finite at t = %g", what,
                isfinite(t) ? "state" : "time", t);
        return -1;
    }
    if (!t_tensor) t_tensor = nd_scalar(ctx, (nd_real)t);
    nd_tensor **blocks = nd_ctx_alloc(ctx, 2 * (size_t)us->n_y * sizeof *blocks);
    if (!t_tensor || !blocks || !unpack(ctx, us, y, blocks)) return -1;
    nd_tensor **d = blocks + us->n_y;
    memset(d, 0, (size_t)us->n_y * sizeof *d);
    int rc = us->fn ? us->fn(ctx, t_tensor, blocks, us->n_y, d, us->user_data)
                    : us->f1(ctx, t_tensor, blocks[0], &d[0], us->user_data);
    if (rc < 0) {
        if (nd_ctx_error(ctx) == ND_OK)
            nd_fail(ctx, ND_ERR_CALLBACK, "%s: f returned %d at t = %.17g", what, rc, t);
        return -1;
    }
    if (rc > 0) return rc;
    if (check_dydt(ctx, us, what, t, d) != 0) return -1;
    *dy = nd_user_pack(ctx, us, d);
    return *dy ? 0 : -1;
}

bool nd_user_f_dot(nd_ctx *ctx, const nd_user_system *us, const char *what, double t,
                   const nd_real *y, const nd_real *g, long *nfe, double *out)
{
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *yt = nd_tensor_from(ctx, 1, (int[]){(int)us->n}, y), *f = NULL;
    (*nfe)++;
    int rc = yt ? nd_user_call(ctx, us, what, t, NULL, yt, &f) : -1;
    if (rc == 0) {
        double dot = 0;
        for (size_t i = 0; i < us->n; i++) dot += (double)f->data[i] * g[i];
        *out = dot;
    } else if (nd_ctx_error(ctx) == ND_OK) {
        nd_fail(ctx, ND_ERR_CALLBACK, "%s: f rejected the state at output time t = %.17g", what, t);
    }
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, m);
    return rc == 0;
}

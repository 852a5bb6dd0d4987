/* SPDX-License-Identifier: MIT
 * nn/odeblock.c: the ODE block module (see odeblock.h). Its forward calls nd_odeint with the
 * dynamics module's parameters as the op's parameters, so gradients reach them by either
 * gradient mode. The op owns its statistics; the block remembers where those of its last solve
 * are. Every public function checks that it was given an ODE block. */
#include <stdlib.h>
#include <string.h>

#include "nn/odeblock.h"

typedef struct {
    nd_module base; /* first: a module like any other */
    nd_module *func;
    nd_time_input time;
    double t0, t1;
    nd_ode_options opts;
    const nd_ode_stats *last; /* the op-owned statistics of the last solve (arena), or NULL */
    nd_tensor **params;       /* (n_params,) func's parameters, gathered once at create */
    int n_params;
} odeblock;

/* dx/dt = func(x) or func([x, t]) */
static int block_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *x, nd_tensor **dx, void *data)
{
    odeblock *b = data;
    nd_tensor *in = x;
    if (b->time == ND_TIME_CONCAT) {
        int ones[ND_MAX_DIMS], shape[ND_MAX_DIMS];
        for (int i = 0; i < ND_MAX_DIMS; i++) ones[i] = 1;
        memcpy(shape, x->shape, sizeof shape);
        shape[1] = 1; /* one more feature or channel, as wide as the rest */
        nd_tensor *tt = nd_expand(ctx, nd_reshape(ctx, t, x->ndim, ones), x->ndim, shape);
        in = nd_concat(ctx, (nd_tensor *[]){x, tt}, 2, 1);
    }
    *dx = nd_module_forward(ctx, b->func, in);
    return *dx ? 0 : -1;
}

static const char ODEBLOCK_KIND[] = "ODEBlock";

static nd_tensor *odeblock_forward(nd_ctx *ctx, nd_module *self, nd_tensor *x);

/* block as an ODE block, or NULL with an error naming fn and the module's kind */
static odeblock *as_odeblock(nd_ctx *ctx, const char *fn, const nd_module *block)
{
    if (block && block->forward == odeblock_forward) return (odeblock *)block;
    if (ctx)
        nd_fail(ctx, ND_ERR_ARG, "%s: module is %s%s, not an ODEBlock", fn, block ? "a " : "",
                block ? block->kind : "NULL");
    return NULL;
}

nd_tensor *nd_odeblock_trajectory(nd_ctx *ctx, nd_module *block, nd_tensor *x, nd_tensor *t)
{
    if (nd_ctx_error(ctx)) return NULL;
    odeblock *b = as_odeblock(ctx, "nd_odeblock_trajectory", block);
    if (!b) return NULL;
    if (!x || !t) return nd_fail_null(ctx, ND_ERR_ARG, "nd_odeblock_trajectory: x or t is NULL");
    if (b->time == ND_TIME_CONCAT && x->ndim < 2) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_odeblock: ND_TIME_CONCAT needs x with a feature or channel axis "
                            "(at least 2-D), got %s",
                            nd_shape_str(x, sx));
    }
    b->last = NULL;
    nd_tensor *ys = nd_odeint(ctx, block_dynamics, b, x, t, b->params, b->n_params, &b->opts);
    b->last = nd_odeint_stats(ys);
    return ys;
}

static nd_tensor *odeblock_forward(nd_ctx *ctx, nd_module *self, nd_tensor *x)
{
    odeblock *b = (odeblock *)self;
    nd_tensor *t = nd_tensor_new(ctx, 1, (int[]){2});
    if (!t) return NULL;
    t->data[0] = (nd_real)b->t0, t->data[1] = (nd_real)b->t1;
    nd_tensor *traj = nd_odeblock_trajectory(ctx, self, x, t);
    if (!traj) return NULL;
    nd_tensor *last = nd_slice(ctx, traj, 0, 1, 1);
    return nd_reshape(ctx, last, x->ndim, x->shape);
}

static void odeblock_destroy(nd_module *self)
{
    free(((odeblock *)self)->params);
}

nd_module *nd_odeblock_create(nd_ctx *ctx, nd_module *func, nd_time_input time, double t0,
                              double t1, const nd_ode_options *opts)
{
    if (!func) return NULL;
    if (!(t1 != t0) || time < ND_TIME_NONE || time > ND_TIME_CONCAT) {
        nd_module_destroy(func);
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_odeblock_create: need t1 != t0 (got %g, %g) "
                            "and a known time input",
                            t0, t1);
    }
    odeblock *b = (odeblock *)nd_module_create(ctx, ODEBLOCK_KIND, odeblock_forward, sizeof *b);
    if (!b) {
        nd_module_destroy(func);
        return NULL;
    }
    b->time = time, b->t0 = t0, b->t1 = t1;
    b->opts = opts ? *opts : ND_ODE_DEFAULT;
    if (nd_module_add_child(ctx, &b->base, "func", func) != ND_OK) {
        nd_module_destroy(&b->base);
        return NULL;
    }
    b->func = func;
    b->base.on_destroy = odeblock_destroy;
    nd_param_list list = {0};
    if (nd_module_params(ctx, func, &list) != ND_OK) {
        nd_module_destroy(&b->base);
        return NULL;
    }
    b->params = malloc((size_t)(list.n ? list.n : 1) * sizeof *b->params);
    if (!b->params) {
        nd_param_list_destroy(&list);
        nd_module_destroy(&b->base);
        return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_odeblock_create: out of memory");
    }
    for (int i = 0; i < list.n; i++) b->params[i] = list.items[i].tensor;
    b->n_params = list.n;
    nd_param_list_destroy(&list);
    return &b->base;
}

nd_ode_options *nd_odeblock_options(nd_ctx *ctx, nd_module *block)
{
    odeblock *b = as_odeblock(ctx, "nd_odeblock_options", block);
    return b ? &b->opts : NULL;
}

const nd_ode_stats *nd_odeblock_stats(nd_ctx *ctx, const nd_module *block)
{
    static const nd_ode_stats none;
    const odeblock *b = as_odeblock(ctx, "nd_odeblock_stats", block);
    return !b ? NULL : b->last ? b->last : &none;
}

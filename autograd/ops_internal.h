/* SPDX-License-Identifier: MIT
 * autograd/ops_internal.h: what the op files share with the registry: each op's backward rule,
 * and the small checks every op starts with. */
#ifndef ND_OPS_INTERNAL_H
#define ND_OPS_INTERNAL_H

#include "autograd/autograd.h"
#include "tensor/ctx_internal.h"

#define ND_X_OP(id, name, n_src) void nd_##id##_backward_rule(nd_ctx *ctx, nd_tensor *out);
ND_OP_LIST(ND_X_OP)
#undef ND_X_OP
void nd_custom_backward(nd_ctx *ctx, nd_tensor *out);

/* Records a one- or two-input op. */
static inline nd_tensor *record1(nd_ctx *ctx, nd_tensor *out, nd_op op, nd_tensor *x)
{
    return nd_record(ctx, out, op, 1, &x);
}
/* Elementwise kernels and group norm share their values among nodal's threads (nd_parallel_for)
 * from this many values per thread up: below it a parallel region costs more than it saves (an
 * ODE-Net block's (64, 16, 7, 7) = 50K values: 1.03x from 2 threads at 32K, 1.45x at 4096). */
#define ND_PAR_MIN_VALUES 4096

static inline nd_tensor *record2(nd_ctx *ctx, nd_tensor *out, nd_op op, nd_tensor *a, nd_tensor *b)
{
    nd_tensor *src[2] = {a, b};
    return nd_record(ctx, out, op, 2, src);
}

/* For backward rules: adds c g to x's pending gradient when the sweep needs it, as
 * nd_accumulate_grad(ctx, x, nd_mul_scalar(ctx, g, c)) does and with bitwise the same values, but
 * in one pass and at most one new tensor when the sweep does not record (it composes those ops
 * when it does, so the gradient stays a graph). */
void nd_accumulate_scaled(nd_ctx *ctx, nd_tensor *x, nd_tensor *g, nd_real c);

/* Normalises a possibly negative axis of x; -1 with an error in ctx when out of range. */
int nd_check_axis(nd_ctx *ctx, const char *fn, const nd_tensor *x, int axis);

/* Splits x's shape around axis: outer * n * inner = size. */
static inline void nd_axis_split(const nd_tensor *x, int axis, size_t *outer, size_t *n,
                                 size_t *inner)
{
    size_t o = 1, in = 1;
    for (int i = 0; i < axis; i++) o *= (size_t)x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) in *= (size_t)x->shape[i];
    *outer = o, *n = (size_t)x->shape[axis], *inner = in;
}

/* x's shape with dim axis set to 1 (keepdim shape of a reduction). */
static inline void nd_keepdim_shape(const nd_tensor *x, int axis, int *shape)
{
    for (int i = 0; i < x->ndim; i++) shape[i] = i == axis ? 1 : x->shape[i];
}

#endif

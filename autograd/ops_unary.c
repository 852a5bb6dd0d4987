/* SPDX-License-Identifier: MIT
 * autograd/ops_unary.c: elementwise ops of one input. Each backward rule is written with ops, so
 * it is differentiable again; where a rule needs a derivative mask (relu, abs) the mask is a
 * constant, which is exact almost everywhere. */
#include <math.h>

#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

#define UNARY_BEGIN(fn_name)                                                                       \
    if (!ND_CHECK1(ctx, fn_name, x)) return NULL;                                                  \
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, x->shape);                                      \
    if (!out) return NULL;                                                                         \
    const nd_real *xd = x->data;                                                                   \
    nd_real *y = out->data;                                                                        \
    size_t n = x->size;

nd_tensor *nd_neg(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_neg")
    for (size_t i = 0; i < n; i++) y[i] = -xd[i];
    return record1(ctx, out, ND_OP_NEG, x);
}

void nd_NEG_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_neg(ctx, out->gnode));
}

nd_tensor *nd_add_scalar(nd_ctx *ctx, nd_tensor *x, nd_real c)
{
    UNARY_BEGIN("nd_add_scalar")
    for (size_t i = 0; i < n; i++) y[i] = xd[i] + c;
    out->arg[0] = c;
    return record1(ctx, out, ND_OP_ADD_SCALAR, x);
}

void nd_ADD_SCALAR_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], out->gnode);
}

nd_tensor *nd_mul_scalar(nd_ctx *ctx, nd_tensor *x, nd_real c)
{
    UNARY_BEGIN("nd_mul_scalar")
    for (size_t i = 0; i < n; i++) y[i] = xd[i] * c;
    out->arg[0] = c;
    return record1(ctx, out, ND_OP_MUL_SCALAR, x);
}

void nd_MUL_SCALAR_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_scaled(ctx, out->src[0], out->gnode, (nd_real)out->arg[0]);
}

nd_tensor *nd_pow_scalar(nd_ctx *ctx, nd_tensor *x, nd_real p)
{
    UNARY_BEGIN("nd_pow_scalar")
    if (p == 1) /* exactly pow(x, 1), without libm's general pow (the backward of x^2 asks it) */
        for (size_t i = 0; i < n; i++) y[i] = xd[i];
    else if (p == 2)
        for (size_t i = 0; i < n; i++) y[i] = xd[i] * xd[i];
    else if (p == 3)
        for (size_t i = 0; i < n; i++) y[i] = xd[i] * xd[i] * xd[i];
    else
        for (size_t i = 0; i < n; i++) y[i] = pow(xd[i], p);
    out->arg[0] = p;
    return record1(ctx, out, ND_OP_POW_SCALAR, x);
}

/* d x^p = p x^(p-1) g */
void nd_POW_SCALAR_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_real p = (nd_real)out->arg[0];
    nd_tensor *d =
        p == 1 ? out->gnode
               : nd_mul(ctx, out->gnode, nd_mul_scalar(ctx, nd_pow_scalar(ctx, x, p - 1), p));
    nd_accumulate_grad(ctx, x, d);
}

nd_tensor *nd_exp(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_exp")
    nd_kernel_exp(y, xd, n);
    return record1(ctx, out, ND_OP_EXP, x);
}

void nd_EXP_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_mul(ctx, out->gnode, out));
}

nd_tensor *nd_log(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_log")
    for (size_t i = 0; i < n; i++) y[i] = log(xd[i]);
    return record1(ctx, out, ND_OP_LOG, x);
}

void nd_LOG_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_div(ctx, out->gnode, out->src[0]));
}

nd_tensor *nd_sqrt(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_sqrt")
    for (size_t i = 0; i < n; i++) y[i] = sqrt(xd[i]);
    return record1(ctx, out, ND_OP_SQRT, x);
}

/* d sqrt(x) = g / (2 sqrt(x)) */
void nd_SQRT_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_div(ctx, nd_mul_scalar(ctx, out->gnode, 0.5), out));
}

nd_tensor *nd_abs(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_abs")
    for (size_t i = 0; i < n; i++) y[i] = fabs(xd[i]);
    return record1(ctx, out, ND_OP_ABS, x);
}

/* d|x| = sign(x) g; the sign is a constant (its derivative is 0 almost everywhere) */
void nd_ABS_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_tensor *sign = nd_tensor_alloc(ctx, x->ndim, x->shape);
    if (!sign) return;
    for (size_t i = 0; i < x->size; i++)
        sign->data[i] = (nd_real)((x->data[i] > 0) - (x->data[i] < 0));
    nd_accumulate_grad(ctx, x, nd_mul(ctx, out->gnode, sign));
}

nd_tensor *nd_sin(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_sin")
    for (size_t i = 0; i < n; i++) y[i] = sin(xd[i]);
    return record1(ctx, out, ND_OP_SIN, x);
}

void nd_SIN_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_mul(ctx, out->gnode, nd_cos(ctx, x)));
}

nd_tensor *nd_cos(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_cos")
    for (size_t i = 0; i < n; i++) y[i] = cos(xd[i]);
    return record1(ctx, out, ND_OP_COS, x);
}

void nd_COS_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_neg(ctx, nd_mul(ctx, out->gnode, nd_sin(ctx, x))));
}

nd_tensor *nd_tanh(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_tanh")
    nd_kernel_tanh(y, xd, n);
    return record1(ctx, out, ND_OP_TANH, x);
}

void nd_TANH_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_tanh_backward(ctx, out, out->gnode));
}

/* od = gd (1 - yd^2) over n values; od overlaps neither input */
ND_AVX2_CLONES static void tanh_grad(nd_real *restrict od, const nd_real *restrict yd,
                                     const nd_real *restrict gd, size_t n)
{
    for (size_t i = 0; i < n; i++) od[i] = gd[i] * (1 - yd[i] * yd[i]);
}

nd_tensor *nd_tanh_backward(nd_ctx *ctx, nd_tensor *y, nd_tensor *dout)
{
    if (!ND_CHECK2(ctx, "nd_tanh_backward", y, dout)) return NULL;
    if (!nd_same_shape(y, dout)) {
        char sy[64], sd[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_tanh_backward: y %s and dout %s differ",
                            nd_shape_str(y, sy), nd_shape_str(dout, sd));
    }
    nd_tensor *out = nd_tensor_alloc(ctx, y->ndim, y->shape);
    if (!out) return NULL;
    tanh_grad(out->data, y->data, dout->data, y->size);
    return record2(ctx, out, ND_OP_TANH_BACKWARD, y, dout);
}

/* out = dout (1 - y^2): d/d dout = h (1 - y^2), d/dy = -2 y dout h */
void nd_TANH_BACKWARD_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *y = out->src[0], *dout = out->src[1], *h = out->gnode;
    if (nd_needs_grad(ctx, dout)) nd_accumulate_grad(ctx, dout, nd_tanh_backward(ctx, y, h));
    if (nd_needs_grad(ctx, y))
        nd_accumulate_grad(ctx, y, nd_mul_scalar(ctx, nd_mul(ctx, nd_mul(ctx, y, dout), h), -2));
}

nd_tensor *nd_sigmoid(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_sigmoid")
    for (size_t i = 0; i < n; i++) {
        /* the branch keeps exp's argument non-positive, so nothing overflows */
        nd_real e = exp(-fabs(xd[i]));
        y[i] = xd[i] >= 0 ? 1 / (1 + e) : e / (1 + e);
    }
    return record1(ctx, out, ND_OP_SIGMOID, x);
}

/* d sigmoid = g s (1 - s) */
void nd_SIGMOID_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *one_minus = nd_add_scalar(ctx, nd_neg(ctx, out), 1);
    nd_accumulate_grad(ctx, out->src[0], nd_mul(ctx, out->gnode, nd_mul(ctx, out, one_minus)));
}

/* y = relu(x) over [lo, hi); with g, y = g where !(x <= 0), else 0 (PyTorch's threshold_backward;
 * a select the compiler vectorises: g times a 0/1 mask became a branch on x, mispredicted half the
 * time). */
typedef struct {
    const nd_real *x, *g;
    nd_real *y;
} relu_args;

static void relu_range(void *arg, size_t lo, size_t hi)
{
    const relu_args *a = arg;
    const nd_real *restrict x = a->x, *restrict g = a->g; /* restrict: the loops vectorise */
    nd_real *restrict y = a->y;
    /* written as "x <= 0 ? 0 : x" so NaN passes through, as torch.relu (a comparison with NaN is
     * false); "x > 0 ? x : 0" would turn NaN into 0 and hide it from every non-finite check */
    if (!g)
        for (size_t i = lo; i < hi; i++) y[i] = x[i] <= 0 ? 0 : x[i];
    else
        for (size_t i = lo; i < hi; i++) {
            nd_real gi = g[i]; /* read whatever x is: a conditional read is not if-converted */
            y[i] = x[i] <= 0 ? 0 : gi;
        }
}

nd_tensor *nd_relu(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_relu")
    nd_parallel_for(n, ND_PAR_MIN_VALUES, relu_range, &(relu_args){xd, NULL, y});
    return record1(ctx, out, ND_OP_RELU, x);
}

/* PyTorch's threshold_backward: g where !(x <= 0), so g also passes at a NaN input (whose output
 * is NaN and carries the NaN onwards), else 0. Recording, g times a constant mask (differentiable
 * in g); otherwise one vectorised pass (17x faster than the branch on x it replaced). */
void nd_RELU_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_tensor *d = nd_tensor_alloc(ctx, x->ndim, x->shape);
    if (!d) return;
    if (!nd_ctx_grad_enabled(ctx)) {
        nd_parallel_for(x->size, ND_PAR_MIN_VALUES, relu_range,
                        &(relu_args){x->data, out->gnode->data, d->data});
        nd_accumulate_grad(ctx, x, d);
        return;
    }
    for (size_t i = 0; i < x->size; i++) d->data[i] = x->data[i] <= 0 ? 0 : 1;
    nd_accumulate_grad(ctx, x, nd_mul(ctx, out->gnode, d));
}

nd_tensor *nd_softplus(nd_ctx *ctx, nd_tensor *x)
{
    UNARY_BEGIN("nd_softplus")
    for (size_t i = 0; i < n; i++) y[i] = (xd[i] > 0 ? xd[i] : 0) + log1p(exp(-fabs(xd[i])));
    return record1(ctx, out, ND_OP_SOFTPLUS, x);
}

void nd_SOFTPLUS_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_mul(ctx, out->gnode, nd_sigmoid(ctx, x)));
}

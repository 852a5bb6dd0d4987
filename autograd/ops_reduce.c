/* SPDX-License-Identifier: MIT
 * autograd/ops_reduce.c: sums and means (over everything or one axis), the maximum along an axis,
 * and a stable log-softmax. An axis splits a tensor into (outer, n, inner) blocks; reductions run
 * over n. */
#include <math.h>

#include "autograd/ops_internal.h"

nd_tensor *nd_sum(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_sum", x)) return NULL;
    nd_tensor *out = nd_tensor_alloc(ctx, 0, NULL);
    if (!out) return NULL;
    double s = 0; /* double accumulator in both precisions */
    for (size_t i = 0; i < x->size; i++) s += x->data[i];
    out->data[0] = (nd_real)s;
    return record1(ctx, out, ND_OP_SUM, x);
}

void nd_SUM_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_expand(ctx, out->gnode, x->ndim, x->shape));
}

nd_tensor *nd_mean(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_mean", x)) return NULL;
    return nd_mul_scalar(ctx, nd_sum(ctx, x), (nd_real)(1.0 / (double)x->size));
}

nd_tensor *nd_sum_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim)
{
    if (!ND_CHECK1(ctx, "nd_sum_axis", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_sum_axis", x, axis);
    if (ax < 0) return NULL;
    int shape[ND_MAX_DIMS];
    nd_keepdim_shape(x, ax, shape);
    nd_tensor *out = nd_zeros(ctx, x->ndim, shape);
    if (!out) return NULL;
    size_t outer, n, inner;
    nd_axis_split(x, ax, &outer, &n, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t k = 0; k < n; k++) {
            const nd_real *row = x->data + (o * n + k) * inner;
            nd_real *acc = out->data + o * inner;
            for (size_t i = 0; i < inner; i++) acc[i] += row[i];
        }
    if (!keepdim) {
        for (int i = ax; i < x->ndim - 1; i++) out->shape[i] = x->shape[i + 1];
        out->ndim--;
    }
    out->arg[0] = ax;
    return record1(ctx, out, ND_OP_SUM_AXIS, x);
}

void nd_SUM_AXIS_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    int shape[ND_MAX_DIMS];
    nd_keepdim_shape(x, (int)out->arg[0], shape);
    nd_tensor *g = nd_reshape(ctx, out->gnode, x->ndim, shape);
    nd_accumulate_grad(ctx, x, nd_expand(ctx, g, x->ndim, x->shape));
}

nd_tensor *nd_mean_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim)
{
    if (!ND_CHECK1(ctx, "nd_mean_axis", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_mean_axis", x, axis);
    if (ax < 0) return NULL;
    return nd_mul_scalar(ctx, nd_sum_axis(ctx, x, ax, keepdim), (nd_real)(1.0 / x->shape[ax]));
}

/* The index of the first maximum of p[0], p[stride], ... (n values), or of the first NaN: NaN
 * wins a maximum, as in PyTorch, so it cannot be hidden by a larger value after it. */
static size_t argmax_nan(const nd_real *p, size_t n, size_t stride)
{
    size_t best = 0;
    if (isnan(p[0])) return 0;
    for (size_t k = 1; k < n; k++) {
        nd_real v = p[k * stride];
        if (isnan(v)) return k;
        if (v > p[best * stride]) best = k;
    }
    return best;
}

nd_tensor *nd_max_axis(nd_ctx *ctx, nd_tensor *x, int axis, bool keepdim)
{
    if (!ND_CHECK1(ctx, "nd_max_axis", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_max_axis", x, axis);
    if (ax < 0) return NULL;
    int shape[ND_MAX_DIMS];
    nd_keepdim_shape(x, ax, shape);
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, shape);
    if (!out) return NULL;
    size_t outer, n, inner;
    nd_axis_split(x, ax, &outer, &n, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const nd_real *p = x->data + o * n * inner + i;
            out->data[o * inner + i] = p[argmax_nan(p, n, inner) * inner];
        }
    if (!keepdim) {
        for (int i = ax; i < x->ndim - 1; i++) out->shape[i] = x->shape[i + 1];
        out->ndim--;
    }
    out->arg[0] = ax;
    return record1(ctx, out, ND_OP_MAX_AXIS, x);
}

/* the gradient goes to the first maximal element (or first NaN) of each reduced line */
void nd_MAX_AXIS_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    int ax = (int)out->arg[0];
    nd_tensor *mask = nd_zeros(ctx, x->ndim, x->shape);
    if (!mask) return;
    size_t outer, n, inner;
    nd_axis_split(x, ax, &outer, &n, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const nd_real *p = x->data + o * n * inner + i;
            mask->data[o * n * inner + argmax_nan(p, n, inner) * inner + i] = 1;
        }
    int shape[ND_MAX_DIMS];
    nd_keepdim_shape(x, ax, shape);
    nd_tensor *g = nd_reshape(ctx, out->gnode, x->ndim, shape);
    nd_accumulate_grad(ctx, x, nd_mul(ctx, g, mask));
}

nd_tensor *nd_log_softmax(nd_ctx *ctx, nd_tensor *x, int axis)
{
    if (!ND_CHECK1(ctx, "nd_log_softmax", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_log_softmax", x, axis);
    if (ax < 0) return NULL;
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    size_t outer, n, inner;
    nd_axis_split(x, ax, &outer, &n, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const nd_real *p = x->data + o * n * inner + i;
            nd_real *q = out->data + o * n * inner + i;
            nd_real m = p[0];
            for (size_t k = 1; k < n; k++) m = p[k * inner] > m ? p[k * inner] : m;
            double s = 0;
            for (size_t k = 0; k < n; k++) s += exp(p[k * inner] - m);
            nd_real lse = m + (nd_real)log(s);
            for (size_t k = 0; k < n; k++) q[k * inner] = p[k * inner] - lse;
        }
    out->arg[0] = ax;
    return record1(ctx, out, ND_OP_LOG_SOFTMAX, x);
}

/* dx = g - softmax(x) * sum(g, axis) */
void nd_LOG_SOFTMAX_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *g = out->gnode;
    int ax = (int)out->arg[0];
    nd_tensor *gsum = nd_sum_axis(ctx, g, ax, true);
    nd_accumulate_grad(ctx, out->src[0], nd_sub(ctx, g, nd_mul(ctx, nd_exp(ctx, out), gsum)));
}

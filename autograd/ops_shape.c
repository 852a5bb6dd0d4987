/* SPDX-License-Identifier: MIT
 * autograd/ops_shape.c: reshape (shares data, no copy), transpose of the last two dims, concat,
 * and the slice / pad pair, each the other's backward. */
#include <string.h>

#include "autograd/ops_internal.h"

int nd_check_axis(nd_ctx *ctx, const char *fn, const nd_tensor *x, int axis)
{
    int a = axis < 0 ? axis + x->ndim : axis;
    if (a < 0 || a >= x->ndim) {
        char sx[64];
        nd_fail(ctx, ND_ERR_SHAPE, "%s: axis %d out of range for %s", fn, axis,
                nd_shape_str(x, sx));
        return -1;
    }
    return a;
}

nd_tensor *nd_reshape(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape)
{
    if (!ND_CHECK1(ctx, "nd_reshape", x)) return NULL;
    char sx[64];
    if (ndim < 0 || ndim > ND_MAX_DIMS || (ndim > 0 && !shape))
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_reshape: %d dims requested for %s", ndim,
                            nd_shape_str(x, sx));
    int s[ND_MAX_DIMS], infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) {
            infer = i;
        } else if (s[i] <= 0) {
            return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_reshape: dim %d is %d for %s", i, s[i],
                                nd_shape_str(x, sx));
        } else {
            known *= (size_t)s[i];
        }
    }
    if (infer >= 0 && known > 0 && x->size % known == 0) s[infer] = (int)(x->size / known);
    size_t size = 1;
    for (int i = 0; i < ndim; i++) size *= (size_t)(s[i] > 0 ? s[i] : 0);
    if (size != x->size) {
        nd_tensor want = {.ndim = ndim};
        for (int i = 0; i < ndim; i++) want.shape[i] = shape[i]; /* shape may be NULL at 0 dims */
        char sw[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_reshape: %s (%zu elements) cannot become %s",
                            nd_shape_str(x, sx), x->size, nd_shape_str(&want, sw));
    }
    nd_tensor *out = nd_ctx_alloc(ctx, sizeof *out);
    if (!out) return NULL;
    *out = (nd_tensor){.ndim = ndim, .size = size, .data = x->data};
    out->src = out->src_inline;
    memcpy(out->shape, s, (size_t)ndim * sizeof *s);
    return record1(ctx, out, ND_OP_RESHAPE, x);
}

void nd_RESHAPE_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_reshape(ctx, out->gnode, x->ndim, x->shape));
}

nd_tensor *nd_transpose(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_transpose", x)) return NULL;
    if (x->ndim < 2) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_transpose: needs at least 2 dims, got %s",
                            nd_shape_str(x, sx));
    }
    int shape[ND_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    int R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1];
    shape[x->ndim - 2] = C, shape[x->ndim - 1] = R;
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, shape);
    if (!out) return NULL;
    size_t batch = x->size / ((size_t)R * C);
    for (size_t b = 0; b < batch; b++) {
        const nd_real *src = x->data + b * R * C; /* (R, C) */
        nd_real *dst = out->data + b * R * C;     /* (C, R) */
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) dst[(size_t)j * R + i] = src[(size_t)i * C + j];
    }
    return record1(ctx, out, ND_OP_TRANSPOSE, x);
}

void nd_TRANSPOSE_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_transpose(ctx, out->gnode));
}

nd_tensor *nd_concat(nd_ctx *ctx, nd_tensor *const *xs, int n, int axis)
{
    if (!xs || n <= 0) return nd_fail_null(ctx, ND_ERR_ARG, "nd_concat: no tensors given");
    if (!nd_check_inputs(ctx, "nd_concat", n, (const nd_tensor *const *)xs, NULL)) return NULL;
    int ax = nd_check_axis(ctx, "nd_concat", xs[0], axis);
    if (ax < 0) return NULL;
    int shape[ND_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        bool ok = xs[i]->ndim == xs[0]->ndim;
        for (int d = 0; ok && d < xs[0]->ndim; d++)
            ok = d == ax || xs[i]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char s0[64], si[64];
            return nd_fail_null(ctx, ND_ERR_SHAPE,
                                "nd_concat: tensor %d %s does not match tensor 0 %s off axis %d", i,
                                nd_shape_str(xs[i], si), nd_shape_str(xs[0], s0), ax);
        }
        shape[ax] += xs[i]->shape[ax];
    }
    nd_tensor *out = nd_tensor_alloc(ctx, xs[0]->ndim, shape);
    if (!out) return NULL;
    size_t outer, total, inner;
    nd_axis_split(out, ax, &outer, &total, &inner);
    size_t offset = 0; /* start of this input's block within an output row */
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)xs[i]->shape[ax] * inner;
        for (size_t o = 0; o < outer; o++)
            memcpy(out->data + o * total * inner + offset, xs[i]->data + o * row,
                   row * sizeof(nd_real));
        offset += row;
    }
    out->arg[0] = ax;
    return nd_record(ctx, out, ND_OP_CONCAT, n, xs);
}

void nd_CONCAT_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    int ax = (int)out->arg[0], start = 0;
    for (int i = 0; i < out->n_src; i++) {
        nd_tensor *x = out->src[i];
        if (nd_needs_grad(ctx, x))
            nd_accumulate_grad(ctx, x, nd_slice(ctx, out->gnode, ax, start, x->shape[ax]));
        start += x->shape[ax];
    }
}

/* Copies rows between a tensor and a window [start, start+len) of a larger one along axis. */
static void copy_window(nd_real *big, const nd_tensor *big_t, nd_real *small, int ax, int start,
                        int len, bool to_small)
{
    size_t outer, n, inner;
    nd_axis_split(big_t, ax, &outer, &n, &inner);
    size_t row = (size_t)len * inner;
    for (size_t o = 0; o < outer; o++) {
        nd_real *b = big + (o * n + (size_t)start) * inner, *s = small + o * row;
        if (to_small)
            memcpy(s, b, row * sizeof *s);
        else
            memcpy(b, s, row * sizeof *s);
    }
}

nd_tensor *nd_slice(nd_ctx *ctx, nd_tensor *x, int axis, int start, int len)
{
    if (!ND_CHECK1(ctx, "nd_slice", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_slice", x, axis);
    if (ax < 0) return NULL;
    if (start < 0 || len <= 0 || start > x->shape[ax] - len) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_slice: [%d, %d) out of range on axis %d of %s",
                            start, start + len, ax, nd_shape_str(x, sx));
    }
    int shape[ND_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = len;
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, shape);
    if (!out) return NULL;
    copy_window(x->data, x, out->data, ax, start, len, true);
    out->arg[0] = ax, out->arg[1] = start;
    return record1(ctx, out, ND_OP_SLICE, x);
}

void nd_SLICE_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    int ax = (int)out->arg[0];
    nd_accumulate_grad(ctx, x, nd_pad(ctx, out->gnode, ax, (int)out->arg[1], x->shape[ax]));
}

nd_tensor *nd_pad(nd_ctx *ctx, nd_tensor *x, int axis, int start, int full)
{
    if (!ND_CHECK1(ctx, "nd_pad", x)) return NULL;
    int ax = nd_check_axis(ctx, "nd_pad", x, axis);
    if (ax < 0) return NULL;
    if (start < 0 || start > full - x->shape[ax]) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_pad: %s at %d does not fit in %d on axis %d",
                            nd_shape_str(x, sx), start, full, ax);
    }
    int shape[ND_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = full;
    nd_tensor *out = nd_zeros(ctx, x->ndim, shape);
    if (!out) return NULL;
    copy_window(out->data, out, x->data, ax, start, x->shape[ax], false);
    out->arg[0] = ax, out->arg[1] = start;
    return record1(ctx, out, ND_OP_PAD, x);
}

void nd_PAD_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    int ax = (int)out->arg[0];
    nd_accumulate_grad(ctx, x, nd_slice(ctx, out->gnode, ax, (int)out->arg[1], x->shape[ax]));
}

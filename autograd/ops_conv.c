/* SPDX-License-Identifier: MIT
 * autograd/ops_conv.c: im2col and col2im, the linear pair under convolution and pooling. im2col
 * copies each zero-padded receptive field of an NCHW image into one row, so a convolution becomes
 * one GEMM; col2im sums rows back into the image. Each is the other's adjoint, hence the other's
 * backward, and both stay differentiable to any order.
 */
#include <string.h>

#include "autograd/ops_internal.h"

/* Output size of one spatial dim; <= 0 when the window does not fit. */
static int out_size(int in, int k, int s, int p)
{
    return in + 2 * p < k ? 0 : (in + 2 * p - k) / s + 1;
}

static bool window_ok(nd_window2d w)
{
    return w.kh >= 1 && w.kw >= 1 && w.sh >= 1 && w.sw >= 1 && w.ph >= 0 && w.pw >= 0;
}

/* Copies between image and rows. to_rows: rows = im2col(x); otherwise x += col2im(rows). */
static void window_copy(nd_real *x /* (N, C, H, W) */, nd_real *rows /* (N*OH*OW, C*kh*kw) */,
                        const int *shape, nd_window2d w, int OH, int OW, bool to_rows)
{
    int N = shape[0], C = shape[1], H = shape[2], W = shape[3];
    size_t ckk = (size_t)C * w.kh * w.kw;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                nd_real *row = rows + ((size_t)(n * OH + oh) * OW + ow) * ckk; /* (C, kh, kw) */
                for (int c = 0; c < C; c++) {
                    nd_real *img_c = x + ((size_t)n * C + c) * H * W; /* (H, W) */
                    for (int i = 0; i < w.kh; i++) {
                        int ih = oh * w.sh - w.ph + i;
                        nd_real *r = row + ((size_t)c * w.kh + i) * w.kw; /* (kw,) */
                        for (int j = 0; j < w.kw; j++) {
                            int iw = ow * w.sw - w.pw + j;
                            bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                            if (to_rows)
                                r[j] = inside ? img_c[(size_t)ih * W + iw] : 0;
                            else if (inside)
                                img_c[(size_t)ih * W + iw] += r[j];
                        }
                    }
                }
            }
}

/* Saves the window in the arena for the backward rule (arg holds only 4 scalars). */
static nd_tensor *record_window(nd_ctx *ctx, nd_tensor *out, nd_op op, nd_tensor *src,
                                nd_window2d w)
{
    if (!nd_ctx_grad_enabled(ctx) || !src->requires_grad) return out;
    nd_window2d *saved = nd_ctx_alloc(ctx, sizeof *saved);
    if (!saved) return NULL;
    *saved = w;
    out->aux = saved;
    return record1(ctx, out, op, src);
}

nd_tensor *nd_im2col(nd_ctx *ctx, nd_tensor *x, nd_window2d w)
{
    if (!ND_CHECK1(ctx, "nd_im2col", x)) return NULL;
    char sx[64];
    if (x->ndim != 4)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_im2col: input %s is not (N, C, H, W)",
                            nd_shape_str(x, sx));
    if (!window_ok(w))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_im2col: invalid window: kernel %dx%d, stride %dx%d, padding %dx%d",
                            w.kh, w.kw, w.sh, w.sw, w.ph, w.pw);
    int OH = out_size(x->shape[2], w.kh, w.sh, w.ph), OW = out_size(x->shape[3], w.kw, w.sw, w.pw);
    if (OH <= 0 || OW <= 0)
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_im2col: kernel %dx%d with padding %dx%d does not fit input %s",
                            w.kh, w.kw, w.ph, w.pw, nd_shape_str(x, sx));
    int shape[2] = {x->shape[0] * OH * OW, x->shape[1] * w.kh * w.kw};
    nd_tensor *out = nd_tensor_alloc(ctx, 2, shape);
    if (!out) return NULL;
    window_copy(x->data, out->data, x->shape, w, OH, OW, true);
    return record_window(ctx, out, ND_OP_IM2COL, x, w);
}

/* d im2col = col2im(g): each input pixel receives the sum over the windows that copied it */
void nd_IM2COL_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_col2im(ctx, out->gnode, x->shape, *(nd_window2d *)out->aux));
}

nd_tensor *nd_col2im(nd_ctx *ctx, nd_tensor *rows, const int *shape, nd_window2d w)
{
    if (!ND_CHECK1(ctx, "nd_col2im", rows)) return NULL;
    if (!shape) return nd_fail_null(ctx, ND_ERR_ARG, "nd_col2im: image shape is NULL");
    nd_tensor img = {.ndim = 4};
    memcpy(img.shape, shape, 4 * sizeof *shape);
    char sr[64], si[64];
    if (!window_ok(w))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_col2im: invalid window: kernel %dx%d, stride %dx%d, padding %dx%d",
                            w.kh, w.kw, w.sh, w.sw, w.ph, w.pw);
    for (int i = 0; i < 4; i++)
        if (shape[i] <= 0)
            return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_col2im: invalid image shape %s",
                                nd_shape_str(&img, si));
    int OH = out_size(shape[2], w.kh, w.sh, w.ph), OW = out_size(shape[3], w.kw, w.sw, w.pw);
    if (OH <= 0 || OW <= 0 || rows->ndim != 2 || rows->shape[0] != shape[0] * OH * OW ||
        rows->shape[1] != shape[1] * w.kh * w.kw)
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_col2im: rows %s do not match image %s with kernel %dx%d, stride "
                            "%dx%d, padding %dx%d",
                            nd_shape_str(rows, sr), nd_shape_str(&img, si), w.kh, w.kw, w.sh, w.sw,
                            w.ph, w.pw);
    nd_tensor *out = nd_zeros(ctx, 4, shape);
    if (!out) return NULL;
    window_copy(out->data, rows->data, shape, w, OH, OW, false);
    return record_window(ctx, out, ND_OP_COL2IM, rows, w);
}

/* d col2im = im2col(g): each row entry came from one image pixel (or from padding: zero) */
void nd_COL2IM_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_accumulate_grad(ctx, out->src[0], nd_im2col(ctx, out->gnode, *(nd_window2d *)out->aux));
}

/* SPDX-License-Identifier: MIT
 * autograd/ops_pool.c: 2-D max pooling as one op, forward and backward side by side. The forward
 * takes each window's maximum in one pass over the image (no im2col copy) and keeps, per output,
 * the offset of the element that won (the first maximum, or the first NaN, as torch.max), so the
 * backward without ND_CREATE_GRAPH is one scatter of the gradient. Under ND_CREATE_GRAPH the
 * backward composes ops instead: a constant one-hot mask over the im2col rows times the gradient,
 * summed back by col2im, so the gradient is a graph (linear in dL/dy; max pooling has no
 * curvature of its own).
 */
#include <math.h>

#include "autograd/ops_internal.h"

typedef struct {
    int N, C, H, W, k, s, OH, OW;
} pool_geom;

/* The offset of window (oh, ow)'s winner in an image plane img (H, W): the first maximum, or the
 * first NaN. */
static int window_argmax(const pool_geom *g, const nd_real *img, int oh, int ow)
{
    int best = (oh * g->s) * g->W + ow * g->s;
    for (int i = 0; i < g->k && !isnan(img[best]); i++)
        for (int j = 0; j < g->k; j++) {
            int o = (oh * g->s + i) * g->W + ow * g->s + j;
            if (isnan(img[o])) return o;
            if (img[o] > img[best]) best = o;
        }
    return best;
}

/* The same without the NaN rule, branch-free (the winner's place is data: a branch on it is
 * mispredicted about half the time); *nan is set when the window holds a NaN, and then the
 * result is to be taken from window_argmax. */
static int window_argmax_fast(const pool_geom *g, const nd_real *img, int oh, int ow, bool *nan)
{
    int best = (oh * g->s) * g->W + ow * g->s;
    nd_real bv = img[best];
    bool any_nan = false;
    for (int i = 0; i < g->k; i++)
        for (int j = 0; j < g->k; j++) {
            int o = (oh * g->s + i) * g->W + ow * g->s + j;
            nd_real v = img[o];
            int wins = -(int)(v > bv); /* all bits set when v wins */
            best += (o - best) & wins; /* arithmetic, not a select: GCC branches on those */
            bv = v > bv ? v : bv;      /* one maxsd */
            any_nan |= v != v;
        }
    *nan = any_nan;
    return best;
}

/* Output row oh of a 2x2 window with stride 2, the common case, in one loop the compiler
 * vectorises: o (OW,) = the maxima, a (OW,) = the winners' offsets in the plane img (H, W).
 * Returns whether a window held a NaN (then the row is to be redone by window_argmax). */
static bool pool2x2_row(const pool_geom *g, const nd_real *img, int oh, nd_real *restrict o,
                        int *restrict a)
{
    const nd_real *r0 = img + (size_t)(2 * oh) * g->W, *r1 = r0 + g->W;
    int base = 2 * oh * g->W, nan = 0;
    for (int ow = 0; ow < g->OW; ow++) {
        int c = 2 * ow, best = base + c, wins;
        nd_real v[4] = {r0[c], r0[c + 1], r1[c], r1[c + 1]}, bv = v[0];
        int off[4] = {base + c, base + c + 1, base + g->W + c, base + g->W + c + 1};
        for (int q = 1; q < 4; q++) { /* the first maximum: only a strictly greater value wins */
            wins = -(int)(v[q] > bv);
            best += (off[q] - best) & wins;
            bv = v[q] > bv ? v[q] : bv;
        }
        nan |= (v[0] != v[0]) | (v[1] != v[1]) | (v[2] != v[2]) | (v[3] != v[3]);
        o[ow] = bv;
        a[ow] = best;
    }
    return nan;
}

typedef struct {
    const pool_geom *g;
    const nd_real *x, *gy;
    nd_real *y;
    int *arg;
} pool_args;

/* Planes [lo, hi) of out (N, C, OH, OW) = window maxima, arg (N*C*OH*OW) = the winner's offset
 * ih*W + iw (nd_parallel_for's range function) */
static void pool_forward_range(void *p, size_t lo, size_t hi)
{
    const pool_args *a = p;
    const pool_geom *g = a->g;
    size_t L = (size_t)g->OH * g->OW;
    bool two = g->k == 2 && g->s == 2;
    for (size_t pl = lo; pl < hi; pl++) {
        const nd_real *img = a->x + pl * g->H * g->W;
        for (int oh = 0; oh < g->OH; oh++) {
            nd_real *o = a->y + pl * L + (size_t)oh * g->OW;
            int *w = a->arg + pl * L + (size_t)oh * g->OW;
            if (two && !pool2x2_row(g, img, oh, o, w)) continue;
            for (int ow = 0; ow < g->OW; ow++) {
                bool nan;
                int best = window_argmax_fast(g, img, oh, ow, &nan);
                if (nan) best = window_argmax(g, img, oh, ow);
                o[ow] = img[best];
                w[ow] = best;
            }
        }
    }
}

/* Planes [lo, hi) of dx (N, C, H, W) += the gradient gy (N*C*OH*OW) at each window's winner. */
static void pool_backward_range(void *p, size_t lo, size_t hi)
{
    const pool_args *a = p;
    size_t L = (size_t)a->g->OH * a->g->OW, plane = (size_t)a->g->H * a->g->W;
    for (size_t pl = lo; pl < hi; pl++) {
        nd_real *dx = a->y + pl * plane;
        const nd_real *gy = a->gy + pl * L;
        const int *arg = a->arg + pl * L;
        for (size_t m = 0; m < L; m++) dx[arg[m]] += gy[m];
    }
}

/* Planes per thread, at least: ND_PAR_MIN_VALUES values of input. */
static size_t pool_min_planes(const pool_geom *g)
{
    return ND_PAR_MIN_VALUES / ((size_t)g->H * g->W) + 1;
}

nd_tensor *nd_max_pool2d(nd_ctx *ctx, nd_tensor *x, int k, int stride)
{
    if (!ND_CHECK1(ctx, "nd_max_pool2d", x)) return NULL;
    char sx[64];
    if (x->ndim != 4)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_max_pool2d: input %s is not (N, C, H, W)",
                            nd_shape_str(x, sx));
    if (k < 1 || stride < 1 || x->shape[2] < k || x->shape[3] < k)
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_max_pool2d: kernel %d, stride %d do not fit input %s", k, stride,
                            nd_shape_str(x, sx));
    pool_geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], k, stride, 0, 0};
    g.OH = (g.H - k) / stride + 1, g.OW = (g.W - k) / stride + 1;
    nd_tensor *out = nd_tensor_alloc(ctx, 4, (int[]){g.N, g.C, g.OH, g.OW});
    int *arg = out ? nd_ctx_alloc(ctx, out->size * sizeof *arg) : NULL;
    if (!arg) return NULL;
    nd_parallel_for((size_t)g.N * g.C, pool_min_planes(&g), pool_forward_range,
                    &(pool_args){&g, x->data, NULL, out->data, arg});
    out->aux = arg;
    out->arg[0] = k, out->arg[1] = stride;
    return record1(ctx, out, ND_OP_MAX_POOL2D, x);
}

/* The gradient as a graph: rows (N*C*L, k*k) = one-hot mask (constant) * dL/dy, then col2im. */
static nd_tensor *pool_backward_graph(nd_ctx *ctx, nd_tensor *out, const pool_geom *g)
{
    size_t M = out->size;
    int kk = g->k * g->k;
    const int *arg = out->aux;
    nd_tensor *mask = nd_zeros(ctx, 2, (int[]){(int)M, kk});
    if (!mask) return NULL;
    size_t L = (size_t)g->OH * g->OW;
    for (size_t m = 0; m < M; m++) { /* the winner's place (i, j) in its window */
        int oh = (int)(m % L) / g->OW, ow = (int)(m % L) % g->OW;
        int i = arg[m] / g->W - oh * g->s, j = arg[m] % g->W - ow * g->s;
        mask->data[m * kk + i * g->k + j] = 1;
    }
    nd_tensor *gy = nd_reshape(ctx, out->gnode, 2, (int[]){(int)M, 1});
    nd_tensor *rows = nd_mul(ctx, mask, gy); /* (M, kk) */
    nd_window2d win = {g->k, g->k, g->s, g->s, 0, 0};
    nd_tensor *dx = nd_col2im(ctx, rows, (int[]){g->N * g->C, 1, g->H, g->W}, win);
    return nd_reshape(ctx, dx, 4, (int[]){g->N, g->C, g->H, g->W});
}

void nd_MAX_POOL2D_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    int k = (int)out->arg[0], s = (int)out->arg[1];
    pool_geom g = {x->shape[0], x->shape[1], x->shape[2],   x->shape[3],
                   k,           s,           out->shape[2], out->shape[3]};
    if (nd_ctx_grad_enabled(ctx)) { /* recording: a differentiable gradient */
        nd_accumulate_grad(ctx, x, pool_backward_graph(ctx, out, &g));
        return;
    }
    nd_tensor *dx = nd_zeros_like(ctx, x);
    if (!dx) return;
    nd_parallel_for((size_t)g.N * g.C, pool_min_planes(&g), pool_backward_range,
                    &(pool_args){&g, NULL, out->gnode->data, dx->data, out->aux});
    nd_accumulate_grad(ctx, x, dx);
}

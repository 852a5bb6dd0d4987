/* SPDX-License-Identifier: MIT
 * autograd/ops_linear.c: the affine map of a Linear layer, x @ w^T + b, as one op, forward and
 * backward side by side. The forward is one GEMM that adds x @ w^T to b in every output row
 * (nd_gemm_bias), so the bias costs no pass of its own and the tape one node instead of two.
 * Without ND_CREATE_GRAPH the backward is two GEMMs (dw straight into w's .grad when
 * nd_direct_grad gives it) and the column sums of dL/dy for db; under ND_CREATE_GRAPH it composes
 * nd_matmul_t and nd_sum_axis, so the gradient is a graph and second derivatives follow.
 */
#include <string.h>

#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

/* d (outf,) [+]= the column sums of g (rows, outf), row after row; d overlaps no g. Blocks of 16
 * columns keep their sums in registers across the rows. */
ND_AVX2_CLONES static void bias_grad(nd_real *restrict d, const nd_real *restrict g, int rows,
                                     int outf, bool add)
{
    enum { B = 16 };
    int o = 0;
    for (; o + B <= outf; o += B) {
        nd_real acc[B];
        for (int u = 0; u < B; u++) acc[u] = add ? d[o + u] : 0;
        for (int r = 0; r < rows; r++)
            for (int u = 0; u < B; u++) acc[u] += g[(size_t)r * outf + o + u];
        for (int u = 0; u < B; u++) d[o + u] = acc[u];
    }
    for (; o < outf; o++) {
        nd_real acc = add ? d[o] : 0;
        for (int r = 0; r < rows; r++) acc += g[(size_t)r * outf + o];
        d[o] = acc;
    }
}

nd_tensor *nd_linear(nd_ctx *ctx, nd_tensor *x, nd_tensor *w, nd_tensor *b)
{
    if (!ND_CHECK2(ctx, "nd_linear", x, w)) return NULL;
    char sx[64], sw[64], sb[64];
    if (w->ndim != 2 || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_linear: weight %s and bias %s are not (out, in) and (out,)",
                            nd_shape_str(w, sw), nd_shape_str(b, sb));
    if ((x->ndim != 2 && x->ndim != 3) || x->shape[x->ndim - 1] != w->shape[1])
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_linear: input %s does not match in_features %d",
                            nd_shape_str(x, sx), w->shape[1]);
    int shape[3], in = w->shape[1], outf = w->shape[0];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = outf;
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, shape);
    if (!out) return NULL;
    int rows = (int)(x->size / (size_t)in); /* x as (rows, in), out as (rows, out) */
    if (b)
        nd_gemm_bias(false, true, rows, outf, in, x->data, in, w->data, in, b->data, out->data,
                     outf);
    else
        nd_gemm(false, true, rows, outf, in, 1, x->data, in, w->data, in, 0, out->data, outf);
    nd_tensor *src[3] = {x, w, b};
    return nd_record(ctx, out, ND_OP_LINEAR, b ? 3 : 2, src);
}

/* A buffer to write t's gradient into: its .grad when the rule may add there (*add true), else a
 * fresh arena tensor the GEMM overwrites (*tmp, accumulated afterwards); NULL when not needed. */
static nd_real *grad_target(nd_ctx *ctx, nd_tensor *t, nd_tensor **tmp, bool *add)
{
    *tmp = NULL, *add = false;
    if (!t || !nd_needs_grad(ctx, t)) return NULL;
    nd_real *direct = nd_direct_grad(ctx, t);
    if (direct) {
        *add = true;
        return direct;
    }
    *tmp = nd_tensor_alloc(ctx, t->ndim, t->shape);
    return *tmp ? (*tmp)->data : NULL;
}

/* The gradients as a graph: gy as (rows, out); dx = gy @ w, dw = gy^T @ x, db = sums of gy. */
static void linear_backward_graph(nd_ctx *ctx, nd_tensor *out, nd_tensor *x, nd_tensor *w,
                                  nd_tensor *b, int rows)
{
    int in = w->shape[1], outf = w->shape[0];
    nd_tensor *gy = nd_reshape(ctx, out->gnode, 2, (int[]){rows, outf});
    if (nd_needs_grad(ctx, x))
        nd_accumulate_grad(
            ctx, x, nd_reshape(ctx, nd_matmul_t(ctx, gy, w, false, false), x->ndim, x->shape));
    if (nd_needs_grad(ctx, w)) {
        nd_tensor *x2 = nd_reshape(ctx, x, 2, (int[]){rows, in});
        nd_accumulate_grad(ctx, w, nd_matmul_t(ctx, gy, x2, true, false));
    }
    if (b && nd_needs_grad(ctx, b)) nd_accumulate_grad(ctx, b, nd_sum_axis(ctx, gy, 0, false));
}

void nd_LINEAR_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0], *w = out->src[1], *b = out->n_src > 2 ? out->src[2] : NULL;
    int in = w->shape[1], outf = w->shape[0], rows = (int)(x->size / (size_t)in);
    if (nd_ctx_grad_enabled(ctx)) { /* recording: a differentiable gradient */
        linear_backward_graph(ctx, out, x, w, b, rows);
        return;
    }
    const nd_real *gy = out->gnode->data;
    nd_tensor *tx, *tw, *tb;
    bool ax, aw, ab;
    nd_real *dx = grad_target(ctx, x, &tx, &ax), *dw = grad_target(ctx, w, &tw, &aw),
            *db = grad_target(ctx, b, &tb, &ab);
    if ((nd_needs_grad(ctx, x) && !dx) || (nd_needs_grad(ctx, w) && !dw) ||
        (b && nd_needs_grad(ctx, b) && !db))
        return; /* the arena failed; the error is in ctx */
    if (dx)     /* (rows, in) = gy (rows, out) @ w (out, in) */
        nd_gemm(false, false, rows, in, outf, 1, gy, outf, w->data, in, ax ? 1 : 0, dx, in);
    if (dw) /* (out, in) = gy^T @ x */
        nd_gemm(true, false, outf, in, rows, 1, gy, outf, x->data, in, aw ? 1 : 0, dw, in);
    if (db) bias_grad(db, gy, rows, outf, ab); /* b's .grad or a fresh tensor */
    if (tx) nd_accumulate_grad(ctx, x, tx);
    if (tw) nd_accumulate_grad(ctx, w, tw);
    if (tb) nd_accumulate_grad(ctx, b, tb);
}

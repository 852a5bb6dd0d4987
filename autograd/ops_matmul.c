/* SPDX-License-Identifier: MIT
 * autograd/ops_matmul.c: matrix products through cblas GEMM, with the transposes folded into the
 * GEMM call rather than copied. For C = op(A) op(B):
 *   dA = dC op(B)^T  (or op(B) dC^T when A is transposed),
 *   dB = op(A)^T dC  (or dC^T op(A) when B is transposed),
 * each again one nd_matmul_t, so the rule is differentiable. */
#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

static nd_tensor *matmul_fail(nd_ctx *ctx, const char *why, const nd_tensor *a, const nd_tensor *b,
                              bool ta, bool tb)
{
    char sa[64], sb[64];
    return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_matmul: %s: a %s%s @ b %s%s", why,
                        nd_shape_str(a, sa), ta ? "^T" : "", nd_shape_str(b, sb), tb ? "^T" : "");
}

nd_tensor *nd_matmul_t(nd_ctx *ctx, nd_tensor *a, nd_tensor *b, bool ta, bool tb)
{
    if (!ND_CHECK2(ctx, "nd_matmul", a, b)) return NULL;
    if (a->ndim == 3 && b->ndim == 2 && !ta) {
        /* a shared right factor: one GEMM over the flattened batch (checked here, so the message
         * shows a as given rather than flattened) */
        if (a->shape[2] != b->shape[tb ? 1 : 0])
            return matmul_fail(ctx, "inner dimensions differ", a, b, ta, tb);
        int B = a->shape[0], M = a->shape[1];
        nd_tensor *a2 = nd_reshape(ctx, a, 2, (int[]){B * M, a->shape[2]});
        nd_tensor *c2 = nd_matmul_t(ctx, a2, b, false, tb);
        return c2 ? nd_reshape(ctx, c2, 3, (int[]){B, M, c2->shape[1]}) : NULL;
    }
    if (!((a->ndim == 2 && b->ndim == 2) || (a->ndim == 3 && b->ndim == 3)))
        return matmul_fail(ctx, "expects 2-D @ 2-D, 3-D @ 3-D or 3-D @ 2-D", a, b, ta, tb);
    int batched = a->ndim == 3;
    if (batched && a->shape[0] != b->shape[0])
        return matmul_fail(ctx, "batch sizes differ", a, b, ta, tb);
    int ar = a->shape[batched], ac = a->shape[batched + 1];
    int br = b->shape[batched], bc = b->shape[batched + 1];
    int M = ta ? ac : ar, K = ta ? ar : ac, Kb = tb ? bc : br, N = tb ? br : bc;
    if (K != Kb) return matmul_fail(ctx, "inner dimensions differ", a, b, ta, tb);

    int shape[3] = {a->shape[0], M, N};
    nd_tensor *out = batched ? nd_tensor_alloc(ctx, 3, shape) : nd_tensor_alloc(ctx, 2, shape + 1);
    if (!out) return NULL;
    int n_batch = batched ? a->shape[0] : 1;
    for (int i = 0; i < n_batch; i++)
        nd_gemm(ta, tb, M, N, K, 1, a->data + (size_t)i * ar * ac, ac,
                b->data + (size_t)i * br * bc, bc, 0, out->data + (size_t)i * M * N, N);
    out->arg[0] = ta, out->arg[1] = tb;
    return record2(ctx, out, ND_OP_MATMUL, a, b);
}

nd_tensor *nd_matmul(nd_ctx *ctx, nd_tensor *a, nd_tensor *b)
{
    return nd_matmul_t(ctx, a, b, false, false);
}

/* d op(b) for a 2-D parameter b written by GEMM straight into b's .grad (beta = 1) */
static void weight_grad_into(const nd_tensor *a, const nd_tensor *g, bool ta, bool tb,
                             nd_real *dst /* b's shape */)
{
    int M = g->shape[0], N = g->shape[1], K = ta ? a->shape[0] : a->shape[1];
    int lda = a->shape[1];
    if (!tb) /* db (K, N) = op(a)^T g */
        nd_gemm(!ta, false, K, N, M, 1, a->data, lda, g->data, N, 1, dst, N);
    else /* db (N, K) = g^T op(a) */
        nd_gemm(true, ta, N, K, M, 1, g->data, N, a->data, lda, 1, dst, K);
}

void nd_MATMUL_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *a = out->src[0], *b = out->src[1], *g = out->gnode;
    bool ta = out->arg[0] != 0, tb = out->arg[1] != 0;
    if (nd_needs_grad(ctx, a))
        nd_accumulate_grad(
            ctx, a, ta ? nd_matmul_t(ctx, b, g, tb, true) : nd_matmul_t(ctx, g, b, false, !tb));
    if (!nd_needs_grad(ctx, b)) return;
    nd_real *db = b->ndim == 2 && a->ndim == 2 ? nd_direct_grad(ctx, b) : NULL;
    if (db) /* a parameter under a plain backward: GEMM adds into its .grad */
        weight_grad_into(a, g, ta, tb, db);
    else
        nd_accumulate_grad(
            ctx, b, tb ? nd_matmul_t(ctx, g, a, true, ta) : nd_matmul_t(ctx, a, g, !ta, false));
}

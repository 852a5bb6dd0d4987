/* SPDX-License-Identifier: MIT
 * autograd/ops_lincomb.c: out = sum_i c_i x_i over tensors of one shape, in one pass. ODE solvers
 * build every stage, error estimate and interpolant from it, so a Runge-Kutta step costs one op
 * per stage whether or not it is recorded. Terms with c_i = 0 are skipped. */
#include <string.h>

#include "autograd/ops_internal.h"

typedef struct {
    nd_real *y;
    nd_tensor *const *xs;
    const nd_real *coef;
    int n;
} lincomb_args;

/* y[lo, hi) = sum_i coef[i] xs[i][lo, hi) (nd_parallel_for's range function) */
static void lincomb_range(void *arg, size_t lo, size_t hi)
{
    const lincomb_args *a = arg;
    nd_real *restrict y = a->y; /* the output is a fresh tensor: the loops vectorise */
    bool first = true;          /* the first term assigns, the rest accumulate */
    for (int i = 0; i < a->n; i++) {
        const nd_real c = a->coef[i], *restrict x = a->xs[i]->data;
        if (c == 0) continue;
        if (first)
            for (size_t k = lo; k < hi; k++) y[k] = c * x[k];
        else if (c == 1)
            for (size_t k = lo; k < hi; k++) y[k] += x[k];
        else
            for (size_t k = lo; k < hi; k++) y[k] += c * x[k];
        first = false;
    }
    if (first) memset(y + lo, 0, (hi - lo) * sizeof *y);
}

nd_tensor *nd_lincomb(nd_ctx *ctx, nd_tensor *const *xs, const nd_real *coef, int n)
{
    if (!xs || !coef || n <= 0)
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_lincomb: needs at least one tensor");
    if (!nd_check_inputs(ctx, "nd_lincomb", n, (const nd_tensor *const *)xs, NULL)) return NULL;
    for (int i = 0; i < n; i++) {
        if (!nd_same_shape(xs[i], xs[0])) {
            char s0[64], si[64];
            return nd_fail_null(ctx, ND_ERR_SHAPE,
                                "nd_lincomb: tensor %d %s differs from tensor 0 %s", i,
                                nd_shape_str(xs[i], si), nd_shape_str(xs[0], s0));
        }
    }
    nd_tensor *out = nd_tensor_alloc(ctx, xs[0]->ndim, xs[0]->shape);
    nd_real *saved = out ? nd_ctx_alloc(ctx, (size_t)n * sizeof *saved) : NULL;
    if (!saved) return NULL;
    memcpy(saved, coef, (size_t)n * sizeof *coef);
    nd_parallel_for(out->size, ND_PAR_MIN_VALUES, lincomb_range,
                    &(lincomb_args){out->data, xs, coef, n});
    out->aux = saved;
    return nd_record(ctx, out, ND_OP_LINCOMB, n, xs);
}

void nd_LINCOMB_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    const nd_real *coef = out->aux;
    for (int i = 0; i < out->n_src; i++)
        if (coef[i] != 0 && nd_needs_grad(ctx, out->src[i]))
            nd_accumulate_grad(ctx, out->src[i], nd_mul_scalar(ctx, out->gnode, coef[i]));
}

/* SPDX-License-Identifier: MIT
 * autograd/ops_lincomb.c: out = sum_i c_i x_i over tensors of one shape, in one pass. ODE solvers
 * build every stage, error estimate and interpolant from it, so a Runge-Kutta step costs one op
 * per stage whether or not it is recorded. Terms with c_i = 0 are skipped; the others are summed
 * term after term, four per pass over the output. */
#include <string.h>

#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

typedef struct {
    nd_real *y;
    nd_tensor *const *xs;
    const nd_real *coef;
    int n;
} lincomb_args;

/* y[lo, hi) = [y +] c0 x0 + ... + c(m-1) x(m-1), 0 <= m <= 4, left to right (0 when m is 0) */
static inline __attribute__((always_inline)) void lincomb_pass(nd_real *restrict y, size_t lo,
                                                               size_t hi, int m,
                                                               const nd_real *const *x,
                                                               const nd_real *c, bool acc)
{
    const nd_real *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    const nd_real c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    switch (m * 2 + acc) {
    case 0:
        for (size_t k = lo; k < hi; k++) y[k] = 0;
        break;
    case 2:
        for (size_t k = lo; k < hi; k++) y[k] = c0 * x0[k];
        break;
    case 3:
        for (size_t k = lo; k < hi; k++) y[k] = y[k] + c0 * x0[k];
        break;
    case 4:
        for (size_t k = lo; k < hi; k++) y[k] = c0 * x0[k] + c1 * x1[k];
        break;
    case 5:
        for (size_t k = lo; k < hi; k++) y[k] = y[k] + c0 * x0[k] + c1 * x1[k];
        break;
    case 6:
        for (size_t k = lo; k < hi; k++) y[k] = c0 * x0[k] + c1 * x1[k] + c2 * x2[k];
        break;
    case 7:
        for (size_t k = lo; k < hi; k++) y[k] = y[k] + c0 * x0[k] + c1 * x1[k] + c2 * x2[k];
        break;
    case 8:
        for (size_t k = lo; k < hi; k++) y[k] = c0 * x0[k] + c1 * x1[k] + c2 * x2[k] + c3 * x3[k];
        break;
    default:
        for (size_t k = lo; k < hi; k++)
            y[k] = y[k] + c0 * x0[k] + c1 * x1[k] + c2 * x2[k] + c3 * x3[k];
        break;
    }
}

/* y[lo, hi) = sum_i coef[i] xs[i][lo, hi) (nd_parallel_for's range function): the nonzero terms
 * in passes of up to 4, the first pass assigning and the rest accumulating, so each element is
 * summed term after term in the list's order */
ND_AVX2_CLONES static void lincomb_range(void *arg, size_t lo, size_t hi)
{
    const lincomb_args *a = arg;
    const nd_real *px[4] = {0};
    nd_real pc[4] = {0};
    int m = 0;
    bool first = true;
    for (int i = 0; i <= a->n; i++) {
        if (i < a->n && a->coef[i] != 0) px[m] = a->xs[i]->data, pc[m++] = a->coef[i];
        if (m == 4 || (i == a->n && (m > 0 || first))) {
            lincomb_pass(a->y, lo, hi, m, px, pc, !first);
            first = false, m = 0;
        }
    }
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
            nd_accumulate_scaled(ctx, out->src[i], out->gnode, coef[i]);
}

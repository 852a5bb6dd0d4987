/* SPDX-License-Identifier: MIT
 * odeint/vjp.c: derivatives of f's own output inside f (odeint.h: nd_ode_diff). During the
 * forward solve f runs with grad mode off on plain numbers; in the adjoint and under backprop it
 * runs with grad mode on, and its result must stay a graph the solve can differentiate again.
 * These three calls make the same dynamics code right in every one of those cases.
 */
#include "odeint/odeint.h"

nd_status nd_ode_diff_begin(nd_ctx *ctx, nd_ode_diff *d, nd_tensor **ys, int n)
{
    if (!d || (n > 0 && !ys) || n < 0)
        return nd_fail(ctx, ND_ERR_ARG, "nd_ode_diff_begin: d or ys is NULL (n = %d)", n);
    bool grad_on = nd_ctx_grad_enabled(ctx);
    *d = (nd_ode_diff){.prev_grad = grad_on, .graph = grad_on};
    for (int i = 0; i < n; i++) {
        if (!ys[i]) return nd_fail(ctx, ND_ERR_ARG, "nd_ode_diff_begin: ys[%d] is NULL", i);
        if (grad_on && ys[i]->requires_grad) continue; /* tracked by the solve already */
        nd_tensor *leaf = nd_copy(ctx, ys[i]);
        if (!leaf) return nd_ctx_error(ctx);
        leaf->requires_grad = true;
        ys[i] = leaf;
    }
    nd_ctx_set_grad(ctx, true);
    return ND_OK;
}

nd_status nd_ode_vjp(nd_ctx *ctx, const nd_ode_diff *d, nd_tensor **outputs, nd_tensor **seeds,
                     int n_out, nd_tensor **inputs, int n_in, nd_tensor **grads_out)
{
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "nd_ode_vjp: d is NULL (call nd_ode_diff_begin first)");
    return nd_grad(ctx, outputs, seeds, n_out, inputs, n_in, grads_out,
                   d->graph ? ND_CREATE_GRAPH : 0);
}

nd_status nd_ode_diff_end(nd_ctx *ctx, const nd_ode_diff *d, nd_tensor **dydt, int n)
{
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "nd_ode_diff_end: d is NULL");
    nd_ctx_set_grad(ctx, d->prev_grad);
    for (int i = 0; i < n; i++) {
        if (!dydt[i]) return nd_fail(ctx, ND_ERR_ARG, "nd_ode_diff_end: dydt[%d] is NULL", i);
        if (!d->graph) dydt[i] = nd_detach(ctx, dydt[i]);
    }
    return ND_OK;
}

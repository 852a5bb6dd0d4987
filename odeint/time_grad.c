/* SPDX-License-Identifier: MIT
 * odeint/time_grad.c: the gradient with respect to the output times t when the solve is
 * backpropagated through (ND_GRAD_BACKPROP). The taped trajectory gets one more op, an identity
 * on the values, whose backward passes dL/dy through and adds dL/dt by the flow's own calculus:
 *   dL/dt_i = f(t_i, y_i) . dL/dy_i                     for i >= 1 (moving one output time), and
 *   dL/dt_0 = -f(t_0, y_0) . sum_{i>=1} (dy_i/dy_0)^T dL/dy_i   (moving the start shifts the
 * whole flow: dy(t)/dt_0 = -(dy(t)/dy_0) f(t_0, y_0)); the sum is one more backward sweep through
 * the taped solve. Exact for the ODE's solution, so it agrees with the adjoint's dL/dt to solver
 * tolerance.
 */
#include <string.h>

#include "odeint/odeint_internal.h"

typedef struct {
    nd_odeint_saved *sv;
    nd_tensor *packed; /* (n_t, n) the taped trajectory */
    nd_tensor *y0;     /* (n,) the packed initial state it starts from */
} time_state;

/* f(t_i, y_i) . g: one output time's share of dL/dt */
static bool f_dot(nd_ctx *ctx, nd_odeint_saved *sv, double t, const nd_real *y, const nd_real *g,
                  double *out)
{
    return nd_user_f_dot(ctx, &sv->us, sv->us.what, t, y, g, &sv->stats.backward.nfe, out);
}

static void time_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    time_state *ts = state;
    nd_odeint_saved *sv = ts->sv;
    nd_tensor *g = out->gnode; /* (n_t, n) */
    nd_accumulate_grad(ctx, ts->packed, g);
    if (!nd_needs_grad(ctx, sv->t)) return;
    if (nd_ctx_grad_enabled(ctx)) {
        nd_fail(ctx, ND_ERR_GRAPH,
                "%s: the gradient with respect to t cannot be differentiated again "
                "(create_graph)",
                sv->us.what);
        return;
    }
    size_t n = sv->us.n;
    int n_t = sv->n_t;
    nd_tensor *dt = nd_tensor_new(ctx, 1, (int[]){n_t});
    nd_tensor *seed = nd_copy(ctx, g); /* dL/dy without the start's own term */
    if (!dt || !seed) return;
    memset(seed->data, 0, n * sizeof(nd_real));
    for (int i = 1; i < n_t; i++) {
        double d;
        if (!f_dot(ctx, sv, sv->tv[i], out->data + (size_t)i * n, g->data + (size_t)i * n, &d))
            return;
        dt->data[i] = (nd_real)d;
    }
    nd_tensor *jg = NULL; /* (n,) sum_{i>=1} (dy_i/dy_0)^T g_i, one more sweep through the tape */
    if (nd_grad(ctx, &ts->packed, &seed, 1, &ts->y0, 1, &jg, ND_ALLOW_UNUSED) != ND_OK) return;
    double d0;
    if (!f_dot(ctx, sv, sv->tv[0], out->data, jg->data, &d0)) return;
    dt->data[0] = (nd_real)-d0;
    nd_accumulate_grad(ctx, sv->t, dt);
}

nd_tensor *nd_odeint_time_op(nd_ctx *ctx, nd_odeint_saved *sv, nd_tensor *packed, nd_tensor *y0)
{
    time_state *ts = nd_ctx_alloc(ctx, sizeof *ts);
    nd_tensor *out = nd_detach(ctx, packed); /* the same values, a node of its own */
    if (!ts || !out) return NULL;
    *ts = (time_state){sv, packed, y0};
    nd_custom_op op = {"odeint_time", time_backward, ts};
    return nd_record_custom(ctx, out, &op, 2, (nd_tensor *[]){packed, sv->t});
}

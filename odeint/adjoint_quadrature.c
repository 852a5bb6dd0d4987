/* SPDX-License-Identifier: MIT
 * odeint/adjoint_quadrature.c: the quadrature adjoint's parameter (and start-time) gradient.
 *
 * The backward ODE is a_z alone (da_z/dt = -a_z df/dz, z interpolated from the forward's
 * checkpoints); dL/dtheta = int_{t_0}^{t_N} a_z df/dtheta dt, which no step-size test ever sees.
 * After each accepted step [T0, T1] of the a_z solve, the step's share
 *   int_{T0}^{T1} -a_z(t) df/dtheta(t, z(t)) dt  ~  (T1 - T0) sum_i w_i v(T0 + x_i (T1 - T0))
 * is added with an m-node Gauss-Legendre rule on [0, 1], a_z(x_i) read off the step's own dense
 * output (its quartic interpolant; the cubic Hermite for fixed-step methods). The error is that
 * of the rule, O(h^(2m)) per step, plus that of the interpolants, O(h^5) per step: it is steered
 * by the adjoint's tolerances on a_z through the steps they choose (SciMLSensitivity's
 * GaussAdjoint does the same), and measured in bench/adjoint_modes.c.
 */
#include <math.h>

#include "odeint/adjoint_interp.h"

/* Gauss-Legendre on [0, 1]: m nodes x and weights w, m = 2..5 (Abramowitz & Stegun 25.4.29,
 * mapped from [-1, 1]). */
typedef struct {
    double x[5], w[5];
} gl_rule;

static const gl_rule rules[4] = {
    {{0.21132486540518711775, 0.78867513459481288225}, {0.5, 0.5}},
    {{0.11270166537925831148, 0.5, 0.88729833462074168852},
     {0.27777777777777777778, 0.44444444444444444444, 0.27777777777777777778}},
    {{0.06943184420297371239, 0.33000947820757186760, 0.66999052179242813240,
      0.93056815579702628761},
     {0.17392742256872692869, 0.32607257743127307131, 0.32607257743127307131,
      0.17392742256872692869}},
    {{0.04691007703066800360, 0.23076534494715845448, 0.5, 0.76923465505284154552,
      0.95308992296933199640},
     {0.11846344252809454376, 0.23931433524968323402, 0.28444444444444444444,
      0.23931433524968323402, 0.11846344252809454376}},
};

int nd_quadrature_nodes(int order)
{
    int m = (order + 2) / 2;
    return m < 2 ? 2 : m > 5 ? 5 : m;
}

int nd_quadrature_step(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip)
{
    interp_system *is = (interp_system *)sys;
    if (is->n_extra == 0) return 0; /* only dL/dy0 wanted: a_z is all */
    const gl_rule *r = &rules[is->gl_nodes - 2];
    size_t n = is->n;
    double t0 = ip->t0, t1 = ip->t1;
    /* only [t0, t_end] counts, should a step pass the output time t_end (the output times are
     * breakpoints of the solve, so none does: a guard) */
    double x_end = fmin(1.0, (is->t_end - t0) / (t1 - t0)), h = x_end * (t1 - t0);
    for (int q = 0; q < is->gl_nodes; q++) {
        nd_mark m = nd_ctx_mark(ctx);
        double t = t0 + r->x[q] * h;
        nd_tensor *az = nd_tensor_new(ctx, 1, (int[]){(int)n});
        if (!az) return -1;
        nd_interp_at_buf(ip, t, az->data); /* a_z from the step's dense output */
        nd_tensor *vjp[64], **v = vjp;
        int n_rest = is->sv->n_params + (is->sv->t_grad ? 1 : 0);
        if (n_rest > 64 && !(v = nd_ctx_alloc(ctx, (size_t)n_rest * sizeof *v))) return -1;
        if (nd_interp_vjp(ctx, is, t, az->data, false, true, v) != 0) {
            if (!nd_ctx_error(ctx))
                nd_fail(ctx, ND_ERR_CALLBACK, "%s: f rejected a quadrature node at t = %.17g",
                        is->sv->us.what_adjoint, t);
            return -1;
        }
        size_t off = 0;
        for (int k = 0; k < n_rest; k++)
            for (size_t e = 0; e < v[k]->size; e++)
                is->extra[off++] += (nd_real)(h * r->w[q] * v[k]->data[e]);
        nd_ctx_rewind(ctx, m);
    }
    return 0;
}

/* SPDX-License-Identifier: MIT
 * odeint/adjoint_interp.h: the backward system of the interpolating and quadrature adjoints
 * (module-private), shared by adjoint_interp.c (the pass, and the interpolating adjoint's state
 * [a_z, a_theta, a_t]) and adjoint_quadrature.c (a_theta and a_t by Gauss-Legendre quadrature
 * over each accepted step of the a_z solve).
 */
#ifndef ND_ADJOINT_INTERP_H
#define ND_ADJOINT_INTERP_H

#include "odeint/replay.h"

typedef struct {
    nd_ode_system sys; /* first: the solver sees this */
    nd_odeint_saved *sv;
    bool quadrature; /* a_theta, a_t accumulated by quadrature, not in the state */
    size_t n;        /* the forward state's size, that of a_z */
    size_t n_extra;  /* a_theta's blocks then a_t: sum of the params' sizes (+ 1 when t_grad) */
    nd_real *extra;  /* (n_extra,) the interpolating adjoint's view into its state, or the
                        quadrature's accumulators */
    nd_real *z;      /* (n,) scratch for z(t) */
    double t_end;    /* the output time the current backward solve ends at */
    int gl_nodes;    /* the quadrature's Gauss-Legendre nodes per step (nd_quadrature_nodes) */
} interp_system;

/* Gauss-Legendre nodes per step for an adjoint method of order p: ceil((p + 1) / 2), at least 2
 * and at most 5, so the rule is exact for polynomials of the method's degree. */
int nd_quadrature_nodes(int order);

/* v = -a_z^T df/dx at (t, z(t)), one tensor per input x: z when with_z, then, when with_rest,
 * each param and t (when it requires grad). Counts one evaluation. Returns f's code (-1: error in
 * ctx). */
int nd_interp_vjp(nd_ctx *ctx, interp_system *is, double t, const nd_real *a_z, bool with_z,
                  bool with_rest, nd_tensor **vjp);

/* The on_step hook of the quadrature adjoint's a_z solve: adds the step's Gauss-Legendre share
 * of the integral of -a_z df/d(theta, t) to is->extra. */
int nd_quadrature_step(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip);

#endif

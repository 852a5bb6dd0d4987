/* SPDX-License-Identifier: MIT
 * examples/models/spline.h: the path X of a neural controlled differential equation, through n
 * series of observations at shared knots: on knot interval k, dX/dt = b + c2 u + d3 u^2 with
 * u = t - t_k (a natural cubic spline), or dX/dt = b (the piecewise-linear interpolant, whose
 * kinks a solver should be told about as jump_t). Used by examples/models/ncde.c.
 */
#ifndef EXAMPLES_MODELS_SPLINE_H
#define EXAMPLES_MODELS_SPLINE_H

#include "nodal.h"

typedef enum { SPLINE_CUBIC, SPLINE_LINEAR } spline_kind;

typedef struct {
    spline_kind kind;
    int n, n_points, n_ch; // series, knots, channels
    double *knots;         // (n_points,)
    nd_real *x0;           // (n, n_ch) X(t_0)
    nd_real *b, *c2, *d3;  // (n_points - 1, n, n_ch) each; c2, d3 NULL for the linear path
} spline_path;

/* Builds p through obs (n, n_points, n_ch) observed at the times t (n_points,), increasing.
 * 0, or -1 with a message on stderr (p is then partly allocated: spline_free it). */
int spline_build(spline_path *p, spline_kind kind, int n, int n_points, int n_ch, const double *t,
                 const double *obs);
void spline_free(spline_path *p);

/* The knot interval holding t: the largest k with knots[k] <= t, within [0, n_points - 2]. At a
 * knot this is the interval to its right; the solver evaluates just below and just above each
 * jump_t (nextafter), so both sides are seen where it matters. */
int spline_interval(const spline_path *p, double t);

/* dX/dt at the scalar tensor t, (n, n_ch), differentiable in t when t requires grad (the time
 * adjoint sees d/dt dX/dt = X''). NULL on error (in ctx). */
nd_tensor *spline_derivative(nd_ctx *ctx, const spline_path *p, nd_tensor *t /* () */);

#endif

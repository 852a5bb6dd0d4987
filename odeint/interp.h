/* SPDX-License-Identifier: MIT
 * odeint/interp.h: the interpolant of one accepted step (module-private). Every solve fits one
 * per accepted step: the solver's own dense output between output times, dense solutions
 * (dense.c), events (event.c), and any backward pass that needs the forward state z(t) inside a
 * step instead of integrating it backwards (interpolating and quadrature adjoints).
 *
 * The interpolant is a polynomial in x = (t - t0) / (t1 - t0), x in [0, 1] over the step:
 *   y(t) = c[0] x^(m-1) + c[1] x^(m-2) + ... + c[m-1],  m = n_coeff,  c[m-1] = y0,
 * each c[k] a vector of the state's n reals. Two kinds:
 *   - quartic (m = 5), the adaptive methods' native dense output: the quartic through y0, y1 and
 *     the step's midpoint y(t0 + dt/2) = y0 + dt sum_j c_mid[j] k_j from the stages, with slopes
 *     f0 and f1 at the ends (torchdiffeq's _interp_fit; 4th order for dopri5, whose c_mid is
 *     Shampine's); the error inside a step is O(dt^5);
 *   - cubic Hermite (m = 4) through (y0, f0) and (y1, f1), for the fixed-step methods and for any
 *     step whose stages are not at hand; O(dt^4).
 * The coefficients are direction-agnostic: dt f is the same in the solver's internal time
 * (s = -t, f negated) as in real time, so a fit made in internal time serves real time by giving
 * t0 and t1 as real times.
 *
 * Two uses, two layers:
 *   - plain buffers (no ctx, nothing recorded): nd_interp_*_coeffs fill a caller's (m, n) array
 *     and nd_interp_eval / nd_interp_slope evaluate one. This is what a backward pass that keeps
 *     the forward steps needs: store m n reals per step, evaluate z(t) (and dz/dt) anywhere in it;
 *   - tensors: nd_interp_fit builds the coefficients with nd_lincomb, recorded when its inputs are
 *     (backprop through the solver), and nd_interp_at evaluates with nd_lincomb too, so y(t) is
 *     differentiable in everything the step depended on (dense solutions under backprop).
 *     nd_interp_at_buf / nd_interp_slope_buf read the same object's coefficients as plain numbers.
 */
#ifndef ND_INTERP_H
#define ND_INTERP_H

#include "odeint/tableau.h"
#include "tensor/tensor.h"

#define ND_INTERP_MAX_COEFF 5

/* One step's interpolant as tensors: c[0..n_coeff-1] each (n,), highest power first. */
typedef struct {
    double t0, t1; /* the step's ends (t1 < t0 in a solve backwards in time) */
    int n_coeff;   /* 5 quartic, 4 cubic Hermite */
    nd_tensor *c[ND_INTERP_MAX_COEFF];
} nd_interp;

/* ---- plain buffers ------------------------------------------------------------------------ */

/* x = (t - t0) / (t1 - t0) */
double nd_interp_x(double t0, double t1, double t);

/* Cubic Hermite coefficients c (4, n) from y0, f0 = y'(t0), y1, f1 = y'(t1) and h = t1 - t0 (in
 * the time the slopes are taken in). */
void nd_interp_hermite_coeffs(size_t n, double h, const nd_real *y0, const nd_real *f0,
                              const nd_real *y1, const nd_real *f1, nd_real *c);

/* Quartic coefficients c (5, n) from y0, f0, y1, f1, the midpoint ymid and h = t1 - t0. */
void nd_interp_quartic_coeffs(size_t n, double h, const nd_real *y0, const nd_real *f0,
                              const nd_real *y1, const nd_real *f1, const nd_real *ymid,
                              nd_real *c);

/* y at x from coefficients c (n_coeff, n) into out (n,): Horner in double. */
void nd_interp_eval(const nd_real *c, int n_coeff, size_t n, double x, nd_real *out);

/* dy/dt at x into out (n,): the x-derivative divided by h = t1 - t0. */
void nd_interp_slope(const nd_real *c, int n_coeff, size_t n, double x, double h, nd_real *out);

/* ---- tensors ------------------------------------------------------------------------------ */

/* Fits ip over the step [t0, t1] (h = t1 - t0 in the slopes' time): quartic when tab has a
 * midpoint and the stages k (k[0] = f0, .., k[n_stages]) are given, cubic Hermite otherwise
 * (tab and k may be NULL). The coefficients are new tensors from nd_lincomb (recorded when the
 * inputs are and grad mode is on); c[n_coeff - 1] is y0 itself. false with the error in ctx. */
bool nd_interp_fit(nd_ctx *ctx, const nd_tableau *tab, double t0, double t1, nd_tensor *y0,
                   nd_tensor *f0, nd_tensor *y1, nd_tensor *f1, nd_tensor *const *k, nd_interp *ip);

/* y(t) as a new tensor (n,) by nd_lincomb over the coefficients (recorded when they are). */
nd_tensor *nd_interp_at(nd_ctx *ctx, const nd_interp *ip, double t);

/* y(t), dy/dt at t from ip's coefficients as plain numbers into out (n,). */
void nd_interp_at_buf(const nd_interp *ip, double t, nd_real *out);
void nd_interp_slope_buf(const nd_interp *ip, double t, nd_real *out);

#endif

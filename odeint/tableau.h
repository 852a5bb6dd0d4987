/* SPDX-License-Identifier: MIT
 * odeint/tableau.h: explicit Runge-Kutta tableaus in one shape (module-private).
 *
 * A step from (t0, y0) with k0 = f(t0, y0) evaluates stage i = 1..n_stages at
 * t0 + alpha[i-1] dt and y0 + dt sum_j beta[i-1][j] k_j, then y1 = y0 + dt sum_j c_sol[j] k_j
 * (or the last stage itself when the tableau is first-same-as-last) and, for adaptive methods,
 * the error estimate dt sum_j c_error[j] k_j and the midpoint y0 + dt sum_j c_mid[j] k_j used by
 * the quartic interpolant. The next step's k0 is the last stage, as in torchdiffeq. Fixed-step
 * methods (c_error NULL) evaluate f(t1, y1) for the next step instead.
 */
#ifndef ND_TABLEAU_H
#define ND_TABLEAU_H

#include <stdbool.h>

#define ND_MAX_STAGES 14 /* k0 plus 13 stages (dopri8) */

typedef struct {
    const char *name;
    int order;             /* the order the step-size controller uses */
    int n_stages;          /* stages after k0 */
    const double *alpha;   /* (n_stages,) */
    const double *beta;    /* (n_stages, ND_MAX_STAGES) row i has i+1 entries */
    const double *c_sol;   /* (n_stages + 1,) */
    const double *c_error; /* (n_stages + 1,) or NULL for fixed-step methods */
    const double *c_mid;   /* (n_stages + 1,) or NULL */
    bool fsal;             /* y1 is the last stage's state */
} nd_tableau;

/* The tableau of a method (see nd_ode_method in odeint.h). */
const nd_tableau *nd_tableau_get(int method);

#endif

/* SPDX-License-Identifier: MIT
 * odeint/solver.h: the solver core shared by the forward solve and the adjoint solve
 * (module-private). A system is a packed state vector of n reals split into blocks, each with a
 * role and tolerances, and an eval callback. The core integrates it over a monotone time grid in
 * either direction and returns the state at every grid time.
 *
 * Two regimes: untaped (nothing recorded; each step runs inside an arena mark and rewinds, so
 * memory is O(1) in the number of steps) and taped (every operation recorded, so the result can
 * be backpropagated through the solver).
 */
#ifndef ND_SOLVER_H
#define ND_SOLVER_H

#include "odeint/odeint.h"

typedef struct nd_ode_system nd_ode_system;
struct nd_ode_system {
    /* *dy = d y / dt at time t for the packed state y (n,). 0 ok, > 0 reject the step, < 0 fail
     * (the callee records the error in ctx). */
    int (*eval)(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *y, nd_tensor **dy);
    size_t n;
    int n_blocks;
    const size_t *block_size;  /* (n_blocks,) */
    const nd_block_role *role; /* (n_blocks,) */
    const double *rtol;        /* (n_blocks,) */
    const double *atol;        /* (n_blocks,) */
    const char *what;          /* "nd_odeint[_tuple]" or "adjoint of nd_odeint[_tuple]": messages */
    /* Optional (NULL: none), untaped solves only: called after every accepted step [t0, t1] (real
     * times) with the new state y1 (n,) and the step's dense output as power-basis coefficients
     * c[0..4] (n,) each, y(t0 + x (t1 - t0)) = c0 x^4 + c1 x^3 + c2 x^2 + c3 x + c4 for x in
     * [0, 1]: the quartic of adaptive methods, the cubic Hermite of fixed-step ones (c0 = 0).
     * Returns false to stop the solve with the error it recorded in ctx. step_data is its own. */
    bool (*on_step)(nd_ode_system *sys, nd_ctx *ctx, double t0, double t1, const nd_real *y1,
                    const nd_real *const *coeff);
    void *step_data;
};

typedef struct {
    const double *step_t, *jump_t; /* in the solve's own time, ordered like its grid */
    int n_step_t, n_jump_t;
} nd_breakpoints;

/* Integrates sys from y0 (n,) over t (n_t,) (strictly monotone). Untaped: writes the state at
 * every t into out (n_t, n). Taped: rows[i] is the state at t[i] as a recorded tensor (rows[0] is
 * y0). Adds to stats. Returns ND_OK or the error recorded in ctx. */
nd_status nd_ode_solve(nd_ctx *ctx, nd_ode_system *sys, const nd_solver_options *opt,
                       const nd_breakpoints *bp, nd_tensor *y0, const double *t, int n_t,
                       bool taped, nd_real *out, nd_tensor **rows, nd_solve_stats *stats);

/* The error ratio norm(num / (atol + rtol max(|ya|, |yb|))) over the system's blocks under the
 * solver's norm; yb may be NULL. For user norms: scratch (n,) and blocks (n_blocks,). */
double nd_ode_norm(const nd_ode_system *sys, const nd_solver_options *opt, const nd_real *num,
                   const nd_real *ya, const nd_real *yb, nd_real *scratch, const nd_real **blocks);

/* Checks a solver's options (per-block tolerances over n_blocks blocks); ND_OK or an error naming
 * what (e.g. "nd_odeint") and the field (options.c). */
nd_status nd_ode_check_options(nd_ctx *ctx, const char *what, const nd_solver_options *opt,
                               int n_blocks);

#endif

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

#include "odeint/interp.h"
#include "odeint/odeint.h"

typedef struct nd_ode_system nd_ode_system;

/* Where an adaptive solve stands after an accepted step (or at its start). */
typedef struct {
    double s1, dt, r_prev;    /* internal time (dir t), the next step's size, the PI memory */
    int next_step, next_jump; /* the next breakpoints */
    long accepted;            /* accepted steps so far, resumed solves counting on */
    nd_tensor *y, *f;         /* (n,) the state and its derivative, the next step's first stage */
} nd_solver_state;
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
    /* Optional (NULL: none): called after every accepted step with its interpolant in real time
     * (ip->t0, ip->t1 the step's ends as the system sees them). Taped, the coefficients are
     * recorded tensors that stay; untaped, buffers overwritten by the next step (copy what you
     * keep, e.g. with nd_interp_at_buf). Return 0 to go on, > 0 to end the solve after this step
     * (nd_ode_solve returns ND_OK; the outputs not yet written hold the state at the step's end),
     * < 0 to fail with the error recorded in ctx. Dense solutions and events use it. */
    int (*on_step)(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip);
    /* Checkpointed backprop (checkpoint.c), adaptive methods only. on_state (NULL: none) is
     * called where the solve stands at the start and after every accepted step, once the next
     * step's size is chosen: all a solve needs to go on from there. Untaped its tensors are
     * buffers the next step overwrites. Return as on_step. resume (NULL: start at t[0] from y0)
     * starts the solve from such a state instead, exactly as the solve that stood there went on:
     * outputs before it are not written. */
    int (*on_state)(nd_ode_system *sys, nd_ctx *ctx, const nd_solver_state *st);
    const nd_solver_state *resume;
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

/* nd_ode_norm that also says which block bound: *block is the block with the largest RMS among
 * those the norm counts (every block under a user norm), -1 when none has a finite error. */
double nd_ode_norm_which(const nd_ode_system *sys, const nd_solver_options *opt, const nd_real *num,
                         const nd_real *ya, const nd_real *yb, nd_real *scratch,
                         const nd_real **blocks, int *block);

/* Checks a solver's options (per-block tolerances over n_blocks blocks); ND_OK or an error naming
 * what (e.g. "nd_odeint") and the field (options.c). */
nd_status nd_ode_check_options(nd_ctx *ctx, const char *what, const nd_solver_options *opt,
                               int n_blocks);

#endif

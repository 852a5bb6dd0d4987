/* SPDX-License-Identifier: MIT
 * odeint/odeint_internal.h: the user's system (system.c) that the forward solve, the adjoint
 * (adjoint.c) and dL/dt (time_grad.c) all evaluate, and what the odeint op (odeint.c) saves for
 * its backward. Module-private.
 */
#ifndef ND_ODEINT_INTERNAL_H
#define ND_ODEINT_INTERNAL_H

#include "odeint/solver.h"

/* The user's problem: f over a state of n_y blocks packed into one vector (n,). */
typedef struct {
    nd_ode_fn f1;       /* single-tensor form, or */
    nd_ode_tuple_fn fn; /* tuple form */
    void *user_data;
    int n_y;
    nd_tensor **y0s;    /* (n_y,) the initial blocks, for their shapes */
    size_t *block_size; /* (n_y,) */
    size_t n;           /* sum of block_size */
    /* what messages call the solve: the forward solve and dL/dt say what ("nd_odeint" or
     * "nd_odeint_tuple"), the adjoint solve what_adjoint ("adjoint of nd_odeint[_tuple]") */
    const char *what, *what_adjoint;
} nd_user_system;

/* Builds us over the blocks y0s (arena copies of the arrays); false with the error in ctx. */
bool nd_user_system_init(nd_ctx *ctx, nd_user_system *us, nd_ode_fn f1, nd_ode_tuple_fn fn,
                         void *user_data, nd_tensor *const *y0s, int n_y);

/* Calls f at time t on the blocks of the packed y (n,) and packs *dy (n,). f receives t_tensor
 * as its time (the adjoint's differentiable leaf) or, when NULL, a new scalar holding t. With
 * grad mode on the unpacking and packing are recorded, so *dy is differentiable in y. Returns f's
 * code (> 0: reject the step); -1 with an error in ctx that names `what` and t. */
int nd_user_call(nd_ctx *ctx, const nd_user_system *us, const char *what, double t,
                 nd_tensor *t_tensor, nd_tensor *y, nd_tensor **dy);

/* f(t, y) . g over the packed state (n,), grad mode off, memory released: dL/dt at an output time
 * for the adjoint and for backprop (time_grad.c). Counts one evaluation in nfe. */
bool nd_user_f_dot(nd_ctx *ctx, const nd_user_system *us, const char *what, double t,
                   const nd_real *y, const nd_real *g, long *nfe, double *out);

/* The blocks (n_y tensors of the blocks' shapes) as one (n,) vector; recorded when any block
 * requires grad. */
nd_tensor *nd_user_pack(nd_ctx *ctx, const nd_user_system *us, nd_tensor *const *blocks);

/* Who watches the forward solve's accepted steps (dense solutions, events): on_step as the
 * solver's hook (solver.h), with data. */
typedef struct {
    int (*on_step)(void *data, nd_ctx *ctx, const nd_interp *ip);
    void *data;
} nd_step_observer;

/* The solver's view of the user system: one block per state tensor, the forward tolerances
 * (odeint.c). The interpolating adjoints solve it again from their checkpoints (replay.c),
 * checkpointed backprop from its solver states (checkpoint.c). */
typedef struct {
    nd_ode_system sys; /* first: the solver sees this */
    const nd_user_system *us;
    const nd_step_observer *obs; /* or NULL */
} nd_forward_system;

bool nd_forward_system_init(nd_ctx *ctx, nd_forward_system *fs, const nd_user_system *us,
                            const nd_solver_options *so);

typedef struct nd_replay nd_replay;           /* replay.h */
typedef struct nd_checkpoints nd_checkpoints; /* checkpoint.c */

typedef struct {
    uint32_t magic;     /* ND_ODEINT_MAGIC: lets nd_odeint_stats recognise its trajectories */
    nd_ode_stats stats; /* forward after the solve, backward after the backward pass */
    nd_user_system us;
    nd_tensor **params; /* (n_params,) those that require grad */
    int n_params;
    nd_tensor *t; /* the times (n_t,), a src when it requires grad */
    double *tv;   /* (n_t,) its values */
    int n_t;
    bool t_grad;
    nd_ode_options opts; /* the adjoint's inheritance resolved, breakpoints copied into the arena */
    nd_replay *replay;   /* the interpolating adjoints' checkpoints (replay.h), else NULL */
    nd_checkpoints *ckpt; /* checkpointed backprop's solver states (checkpoint.c), else NULL */
} nd_odeint_saved;

#define ND_ODEINT_MAGIC 0x6f64656eu /* "oden" */

/* Backprop through the solver with t requiring grad (time_grad.c): an identity op on the taped
 * trajectory packed (n_t, n) from the packed initial state y0 whose backward adds dL/dt. */
nd_tensor *nd_odeint_time_op(nd_ctx *ctx, nd_odeint_saved *sv, nd_tensor *packed, nd_tensor *y0);

/* Every adjoint mode's last act (adjoint.c): az (n,) to the initial states, a_theta to the params,
 * dt0 and t_vjp[1..n_t-1] to t when it requires grad. */
void nd_odeint_deliver_grads(nd_ctx *ctx, const nd_odeint_saved *sv, const nd_real *az,
                             const nd_real *a_theta, nd_real dt0, const double *t_vjp);

/* The backward of the odeint op in adjoint mode (adjoint.c). */
void nd_odeint_adjoint_backward(nd_ctx *ctx, nd_tensor *out, void *state);
/* ... with ND_GRAD_INTERP_ADJOINT or ND_GRAD_QUADRATURE_ADJOINT (adjoint_interp.c). */
void nd_odeint_interp_backward(nd_ctx *ctx, nd_tensor *out, void *state);

/* Checkpointed backprop (checkpoint.c): before the forward solve, sv->ckpt set up over a copy of
 * fs that keeps solver states (an error for fixed-step methods and when t requires grad); the
 * forward solve runs on nd_checkpoint_system(sv); after it (packed NULL when it failed), the
 * states kept are final. The backward replays each segment taped and backpropagates through it. */
bool nd_checkpoint_begin(nd_ctx *ctx, nd_odeint_saved *sv, const nd_forward_system *fs);
nd_ode_system *nd_checkpoint_system(nd_odeint_saved *sv);
bool nd_checkpoint_end(nd_ctx *ctx, nd_odeint_saved *sv, const nd_tensor *packed);
void nd_odeint_checkpoint_backward(nd_ctx *ctx, nd_tensor *out, void *state);

/* nd_odeint (f1) and nd_odeint_tuple (fn) with the forward solve's accepted steps handed to obs
 * (NULL: none); name is what the input checks' messages call the call. ys_out (n_y,). */
nd_status nd_odeint_observed(nd_ctx *ctx, const char *name, nd_ode_fn f1, nd_ode_tuple_fn fn,
                             void *user_data, nd_tensor *const *y0s, int n_y, nd_tensor *t,
                             nd_tensor *const *params, int n_params, const nd_ode_options *opts,
                             const nd_step_observer *obs, nd_tensor **ys_out);

/* The adjoint's solver options: every unset field of adjoint taken from forward (options.c). */
nd_solver_options nd_ode_resolve_adjoint(const nd_solver_options *forward,
                                         const nd_solver_options *adjoint);

#endif

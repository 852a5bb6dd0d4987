/* SPDX-License-Identifier: MIT
 * odeint/odeint_internal.h: what the odeint op (odeint.c) saves for its adjoint backward
 * (adjoint.c), and the user system both of them evaluate. Module-private.
 */
#ifndef ND_ODEINT_INTERNAL_H
#define ND_ODEINT_INTERNAL_H

#include "odeint/solver.h"

/* The user's problem: f over a state of n_y blocks packed into one vector. */
typedef struct {
    nd_ode_system sys;     /* first: the solver sees this */
    nd_ode_fn f1;          /* single-tensor form, or */
    nd_ode_tuple_fn fn;    /* tuple form */
    void *user_data;
    int n_y;
    nd_tensor **y0s;       /* (n_y,) the initial blocks, for their shapes */
    size_t *block_size;    /* (n_y,) */
    nd_block_role *role;   /* (n_y,) all ND_ROLE_STATE */
    double *rtol, *atol;   /* (n_y,) */
    nd_tensor *t_leaf;     /* when set, f receives this tensor as t (adjoint: a leaf) */
} nd_user_system;

/* Calls f at t on the blocks of the packed y (n,) and packs dydt. With grad mode on the
 * unpacking and packing are recorded, so the result is differentiable in y. */
int nd_user_eval(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *y, nd_tensor **dy);

/* Views the blocks of a packed vector as tensors of the blocks' shapes. Recorded (slices and
 * reshapes) when grad mode is on; aliases of y's memory otherwise. */
bool nd_user_unpack(nd_ctx *ctx, const nd_user_system *us, nd_tensor *y, nd_tensor **blocks);

typedef struct {
    nd_user_system us;
    nd_tensor **params; /* (n_params,) those that require grad */
    int n_params;
    nd_tensor *t;       /* the times (n_t,), a src when it requires grad */
    double *tv;         /* (n_t,) its values */
    int n_t;
    bool t_grad;
    nd_ode_options opts; /* breakpoints copied into the arena */
    nd_ode_stats *stats;    /* the caller's, or own_stats */
    nd_ode_stats own_stats;
} nd_odeint_saved;

/* Backprop through the solver with t requiring grad (time_grad.c): an identity op on the taped
 * trajectory packed (n_t, n) from the packed initial state y0 whose backward adds dL/dt. */
nd_tensor *nd_odeint_time_op(nd_ctx *ctx, nd_odeint_saved *sv, nd_tensor *packed, nd_tensor *y0);

/* The backward of the odeint op in adjoint mode (adjoint.c). */
void nd_odeint_adjoint_backward(nd_ctx *ctx, nd_tensor *out, void *state);

#endif

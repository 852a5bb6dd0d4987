/* SPDX-License-Identifier: MIT
 * examples/models/symoden.h: Symplectic ODE-Net (SymODEN, Zhong, Dey and Chakraborty, ICLR 2020)
 * for systems of n angles (n = 1 or 2: the pendulum, the Acrobot) with nu controls, and the plain
 * MLP ODE it is compared with. Shared by examples/pendulum.c, examples/acrobot.c, bench/seminorm
 * and tests/test_symoden.c.
 *
 * The learned Hamiltonian, with the angles seen through x = (cos q, sin q):
 *     H(q, p) = 1/2 p' M^-1(q) p + V(q),   M^-1(q) = L(x) L(x)' + eps I
 * L lower-triangular from an MLP (n(n+1)/2 outputs: positive semi-definite by construction, and
 * definite with eps > 0), V from an MLP, the input matrix g(q) (n, nu) from an MLP, and
 *     dq/dt = dH/dp,   dp/dt = -dH/dq + g(q) u
 * with dH taken by nd_ode_vjp under create_graph inside f (odeint.h's nd_ode_diff), so the adjoint
 * differentiates through a gradient (second order). u is constant over a solve.
 *
 * The data are (q, qdot), not p: a rollout maps qdot0 to p0 = M(q0) qdot0 with the learned mass
 * matrix (the inverse of M^-1, in closed form for n <= 2), solves in (q, p), and maps back
 * qdot = M^-1(q) p, so the loss compares what a simulator observes (SymODEN's section 3.3 does the
 * same change of variables inside f; here it is at the ends of the solve, which is the same map).
 *
 * The baseline is a plain MLP ODE on the state (q, qdot): d(q, qdot)/dt = MLP(cos q, sin q, qdot,
 * u), trained by the same code.
 */
#ifndef EXAMPLES_SYMODEN_H
#define EXAMPLES_SYMODEN_H

#include "nodal.h"

typedef enum { SYMODEN_HAMILTONIAN, SYMODEN_BASELINE } symoden_kind;

typedef struct {
    symoden_kind kind;
    int n, nu, hidden; /* angles (1 or 2), controls, hidden width of every MLP */
    double eps;        /* M^-1 = L L' + eps I */
    nd_module *root;   /* the container every network hangs from ("minv", "V", "g"; "f") */
    nd_module *minv_net, *v_net, *g_net; /* (B, 2n) -> (B, n(n+1)/2), (B, 1), (B, n nu) */
    nd_module *f_net;                    /* baseline: (B, 3n + nu) -> (B, 2n) */
    nd_param_list plist;                 /* every parameter, named "minv.0.weight", ... */
    nd_tensor **params;                  /* (plist.n,) for the solver and the optimizer */
} symoden_model;

/* hidden >= 1; n 1 or 2; nu >= 1; eps > 0 (used only by the Hamiltonian kind). PyTorch's
 * default Linear init from rng. On failure *m is left destroyable (zeroed parts). */
nd_status symoden_create(nd_ctx *ctx, symoden_model *m, symoden_kind kind, int n, int nu,
                         int hidden, double eps, nd_rng *rng);
void symoden_destroy(symoden_model *m);
const char *symoden_kind_name(symoden_kind k); /* "symoden", "baseline" */

/* What f needs besides the state: the model and the constant control u (B, nu). */
typedef struct {
    const symoden_model *m;
    nd_tensor *u;
} symoden_ctrl;

/* The ODE right-hand side (an nd_ode_fn; user_data a symoden_ctrl *): y (B, 2n) is (q, p) for
 * the Hamiltonian kind, (q, qdot) for the baseline. */
int symoden_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dydt, void *user_data);

/* The learned parts at q (B, n): M^-1 (B, n, n) row-major flattened to (B, n n), V (B, 1),
 * g (B, n nu); each out-pointer may be NULL. Hamiltonian kind only. Differentiable. */
nd_status symoden_parts(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor **minv,
                        nd_tensor **V, nd_tensor **g);
/* H(q, p) per row (B, 1). Differentiable. */
nd_tensor *symoden_energy(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *p);
/* p = M(q) qdot and qdot = M^-1(q) p, (B, n). Differentiable. */
nd_tensor *symoden_momentum(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *qdot);
nd_tensor *symoden_velocity(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *p);

/* Solves from (q0, qdot0) (B, n) under u (B, nu) over the times t (T,) and writes the predicted
 * q and qdot (T, B, n) (either out-pointer may be NULL); *stats (when not NULL) the solve's
 * statistics (op-owned, backward after the backward pass). Differentiable in the parameters. */
nd_status symoden_rollout(nd_ctx *ctx, const symoden_model *m, nd_tensor *q0, nd_tensor *qdot0,
                          nd_tensor *u, nd_tensor *t, const nd_ode_options *o, nd_tensor **q,
                          nd_tensor **qdot, const nd_ode_stats **stats);

/* The training loss: mean squared error of q plus that of qdot over every time and sample of the
 * rollout from the first target point, targets q_true, qdot_true (T, B, n). */
nd_tensor *symoden_loss(nd_ctx *ctx, const symoden_model *m, nd_tensor *q_true,
                        nd_tensor *qdot_true, nd_tensor *u, nd_tensor *t, const nd_ode_options *o,
                        const nd_ode_stats **stats);

/* Data plumbing: window b of a batch, points s .. s + W - 1 of trajectory k of trajectories
 * stored as qpos, qvel (n_traj, n_points, n) and ctrl (n_traj, nu) (mujoco_sim_batch's layout),
 * into q, qdot (W, B, n) and u (B, nu). */
void symoden_put_window(const double *qpos, const double *qvel, const double *ctrl, int n_points,
                        int k, int s, int b, nd_tensor *q, nd_tensor *qdot, nd_tensor *u);

#endif

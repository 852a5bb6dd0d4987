/* SPDX-License-Identifier: MIT
 * examples/physics/driver.h: the one driver of the physical-control programs (examples/pendulum.c,
 * examples/acrobot.c). A program describes its system (the MuJoCo model file, the ranges of the
 * random initial states and constant torques of the data, the goal, the true potential for the
 * picture) and its controller; the driver does the rest: flags, data from MuJoCo
 * (examples/common/mujoco_sim.h), training Symplectic ODE-Net or the MLP baseline
 * (examples/models/symoden.h) on windows of 8 points with dopri5 and the adjoint, progress,
 * --save / --resume, the 2 s prediction error on held-out trajectories, the controller run on the
 * true MuJoCo system from several starts, --plot and --json.
 * Exit status of physics_main: 0 when it ran (good or not), and also when the build has no MuJoCo
 * (it says so); 1 on a library or simulator error or a bad checkpoint; 2 on bad flags.
 * Not part of the library.
 */
#ifndef EXAMPLES_PHYSICS_DRIVER_H
#define EXAMPLES_PHYSICS_DRIVER_H

#include "nodal.h"
#include "symoden.h"

#define PHYSICS_MAX_N 2

/* The learned model at one observed state (q, qdot), as plain numbers: what a controller uses.
 * p = M(q) qdot with the learned M; H, V and their derivatives; M^-1 (n, n) row-major; g (n, nu)
 * row-major. */
typedef struct {
    double p[PHYSICS_MAX_N], H, V;
    double dHdq[PHYSICS_MAX_N], dHdp[PHYSICS_MAX_N], dVdq[PHYSICS_MAX_N];
    double minv[PHYSICS_MAX_N * PHYSICS_MAX_N], g[PHYSICS_MAX_N * PHYSICS_MAX_N];
} physics_learned;

/* Evaluates the learned model at (q, qdot) (n,) each. Uses the ctx's arena from a mark and
 * rewinds it. Hamiltonian kind only. */
nd_status physics_learned_at(nd_ctx *ctx, const symoden_model *m, const double *q,
                             const double *qdot, physics_learned *out);
/* The learned vector field in (q, p) at y (2n,) under u (nu,), into dy (2n,). */
nd_status physics_learned_field(nd_ctx *ctx, const symoden_model *m, const double *y,
                                const double *u, double *dy);

/* x - goal wrapped to (-pi, pi] */
double physics_wrap(double x);

typedef struct {
    const char *name;    /* "pendulum": messages, JSON, checkpoints */
    const char *summary; /* --help's description */
    const char *xml;     /* the model file, in MUJOCO_MODEL_DIR unless --xml names another */
    int n, nu;
    /* the data: initial qpos offsets, qvel and the constant controls, uniform in [lo, hi] */
    double qpos_lo[PHYSICS_MAX_N], qpos_hi[PHYSICS_MAX_N];
    double qvel_lo[PHYSICS_MAX_N], qvel_hi[PHYSICS_MAX_N];
    double ctrl_lo[PHYSICS_MAX_N], ctrl_hi[PHYSICS_MAX_N];
    /* extra training trajectories near the goal (--upright-traj's default): qpos offsets
     * q_goal +- upright_spread, qvel +- upright_vel, the same controls */
    int upright_traj;
    double upright_spread, upright_vel;
    /* control: the goal (upright), the start (hanging down) and its random offset per trial */
    double q_goal[PHYSICS_MAX_N], q_start[PHYSICS_MAX_N], start_spread;
    double control_seconds; /* how long a trial runs */
    /* defaults of the flags */
    int iters, hidden, train_traj;
    double lr;
    /* the true potential energy at q, zero hanging down (the picture) */
    double (*true_potential)(const double *q);
    /* the controller: setup once from the learned model, or from the true equations when
     * true_model (--controller-model true; only when true_controller) (*state: freed with
     * free(), may stay NULL), then u (nu,) from the observed (q, qdot) each control period; 0 on
     * success */
    bool true_controller;
    int (*control_setup)(nd_ctx *ctx, const symoden_model *m, bool true_model, void **state);
    int (*control)(nd_ctx *ctx, const symoden_model *m, void *state, const double *q,
                   const double *qdot, double *u);
} physics_program;

int physics_main(const physics_program *prog, int argc, char **argv);

#endif

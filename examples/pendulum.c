/* SPDX-License-Identifier: MIT
 * examples/pendulum.c: Symplectic ODE-Net (Zhong, Dey and Chakraborty, ICLR 2020) learns a
 * pendulum from MuJoCo trajectories and swings the MuJoCo pendulum up with a controller built
 * from the learned model alone.
 *
 * The system (examples/models/mujoco/pendulum.xml): a rod of mass 1 and length 1 under gravity
 * 10, a torque u at the pivot limited to [-2, 2] (gravity's torque reaches 5: a swing-up takes
 * more than one swing); H = 3 p^2 / 2 + 5 (1 - cos q), q = 0 hanging
 * down. The data: 256 trajectories of 2 s sampled every 0.05 s from q0 ~ U(-pi, pi),
 * qdot0 ~ U(-6, 6), under a constant torque u ~ U(-2, 2) each; 32 more held out. Training:
 * windows of 8 points, batch 256, dopri5 with the adjoint at rtol = atol = 1e-4, 600
 * iterations of Adam at lr 3e-3, tanh MLPs of width 32 (examples/physics/driver.c does all of that;
 * the model is examples/models/symoden.c).
 *
 * The controller (SymODEN section 4, with an energy pump to leave the bottom under the torque
 * limit), from the learned M^-1, V and g only, with p = M(q) qdot from the learned mass matrix:
 *   far from upright:  u = k_E (H(q*, 0) - H(q, p)) g(q) dH/dp, pumping the learned energy up to
 *                      the learned upright energy (dH/dt = dH/dp g u >= 0 below it);
 *   within 0.4 rad:    u = g^-1 (dV/dq - K_p sin(q - q*)) - K_d g dH/dp, energy shaping to the
 *                      potential V_d = K_p (1 - cos(q - q*)) with its minimum upright, and
 *                      damping injection.
 * It runs on the true MuJoCo pendulum at 100 Hz from q ~ U(-0.2, 0.2) at rest, 10 s per trial.
 * --plot draws the learned V divided by the learned g(0): H and g are learned up to one common
 * scale.
 *
 * Good looks like (seed 1, double): the loss falls from ~9 to ~1e-2 by iteration 100 and ~4e-5
 * by 600; the 2 s prediction MSE on the held-out trajectories is ~3e-4; the controller brings the
 * MuJoCo pendulum upright in 5 of 5 trials within 2.6-3.7 s (two swings) and holds it there with
 * an angle error of ~4e-4 rad; ~21 NFE-F and ~99 NFE-B per iteration, ~1 s per iteration on a
 * loaded 2-core machine (the README's "Physical control" section: seeds 1-3, the baseline).
 * --plot draws held-out trajectories (MuJoCo vs learned), the learned V(q) / g(0) against
 * 5 (1 - cos q), the angle error of every trial, and the loss.
 *
 * Run:  ./build/examples/pendulum [--iters N] [--model symoden|baseline] [--norm rms|seminorm]
 *           [--rtol R] [--atol A] [--trials K] [--save F] [--resume F] [--plot F.png] [--json]
 *           (--help: every flag)
 * Exit status: 0 when it ran (or when the build has no MuJoCo: it says so), 1 on an error,
 * 2 on bad flags.
 */
#include <math.h>
#include <stdlib.h>

#include "driver.h"

#define UMAX 2.0
#define K_ENERGY 2.0
#define K_P 5.0
#define K_D 1.5
#define NEAR 0.4

static double true_potential(const double *q)
{
    return 5 * (1 - cos(q[0]));
}

typedef struct {
    double h_up; // the learned energy at rest upright
} pendulum_control;

static int setup(nd_ctx *ctx, const symoden_model *m, void **state)
{
    pendulum_control *c = malloc(sizeof *c);
    physics_learned l;
    if (!c) return nd_fail(ctx, ND_ERR_NOMEM, "pendulum: out of memory"), -1;
    *state = c;
    if (physics_learned_at(ctx, m, (double[]){M_PI}, (double[]){0}, &l) != ND_OK) return -1;
    c->h_up = l.H;
    return 0;
}

static int control(nd_ctx *ctx, const symoden_model *m, void *state, const double *q,
                   const double *qdot, double *u)
{
    const pendulum_control *c = state;
    physics_learned l;
    if (physics_learned_at(ctx, m, q, qdot, &l) != ND_OK) return -1;
    double e = physics_wrap(q[0] - M_PI), g = l.g[0];
    if (fabs(e) < NEAR)
        u[0] = (l.dVdq[0] - K_P * sin(e)) / g - K_D * g * l.dHdp[0];
    else
        u[0] = K_ENERGY * (c->h_up - l.H) * g * l.dHdp[0];
    u[0] = fmax(-UMAX, fmin(UMAX, u[0]));
    return 0;
}

int main(int argc, char **argv)
{
    const physics_program prog = {
        .name = "pendulum",
        .summary = "Symplectic ODE-Net learns a MuJoCo pendulum and swings it up.",
        .xml = "pendulum.xml",
        .n = 1,
        .nu = 1,
        .qpos_lo = {-M_PI},
        .qpos_hi = {M_PI},
        .qvel_lo = {-6},
        .qvel_hi = {6},
        .ctrl_lo = {-2},
        .ctrl_hi = {2},
        .q_goal = {M_PI},
        .q_start = {0},
        .start_spread = 0.2,
        .control_seconds = 10,
        .iters = 600,
        .hidden = 32,
        .train_traj = 256,
        .lr = 3e-3,
        .true_potential = true_potential,
        .control_setup = setup,
        .control = control,
    };
    return physics_main(&prog, argc, argv);
}

/* SPDX-License-Identifier: MIT
 * examples/common/mujoco_sim.h: a small wrapper over MuJoCo's C API (libmujoco-dev, 2.2.x) for
 * the programs that learn from simulated physics: load a model from an MJCF XML file, put it in a
 * state, set its controls, step it, read its state, energy and mass matrix, and generate a seeded
 * batch of trajectories under constant random controls. Sizes (nq, nv, nu) come from the model,
 * so one API serves a pendulum, an Acrobot or a Hopper. Not part of the library.
 *
 * When the build has no MuJoCo (meson's optional dependency, option -Dmujoco), the same functions
 * exist: mujoco_sim_available() is false and mujoco_sim_create fails with a message saying so, so
 * a program says so and exits cleanly instead of not being built.
 *
 *   char err[512];
 *   mujoco_sim *s = mujoco_sim_create(MUJOCO_MODEL_DIR "/pendulum.xml", err, sizeof err);
 *   if (!s) { fprintf(stderr, "prog: %s\n", err); return 1; }
 *   mujoco_sim_reset(s, (double[]){3.0}, (double[]){0.0});   // qpos (nq,), qvel (nv,)
 *   mujoco_sim_set_control(s, (double[]){0.5});               // ctrl (nu,)
 *   mujoco_sim_step(s, 50);                                    // 50 substeps of the model's dt
 *   mujoco_sim_state(s, qpos, qvel);
 *   mujoco_sim_destroy(s);
 *
 * Functions returning int return 0 on success and -1 on failure, with a message in the
 * simulator's last error (mujoco_sim_error). Model files shipped with nodal live in
 * examples/models/mujoco/ (MUJOCO_MODEL_DIR, set by meson to that source directory).
 */
#ifndef EXAMPLES_MUJOCO_SIM_H
#define EXAMPLES_MUJOCO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mujoco_sim mujoco_sim;

/* True when this build links MuJoCo. */
bool mujoco_sim_available(void);

/* Loads an MJCF model and makes its data. On failure returns NULL and writes a message naming
 * the path and MuJoCo's reason (or that the build has no MuJoCo) into err (err_size > 0). */
mujoco_sim *mujoco_sim_create(const char *xml_path, char *err, size_t err_size);
void mujoco_sim_destroy(mujoco_sim *s);
/* The last failure's message ("" when none). */
const char *mujoco_sim_error(const mujoco_sim *s);

int mujoco_sim_nq(const mujoco_sim *s);          /* generalised positions */
int mujoco_sim_nv(const mujoco_sim *s);          /* generalised velocities (degrees of freedom) */
int mujoco_sim_nu(const mujoco_sim *s);          /* controls (actuators) */
double mujoco_sim_timestep(const mujoco_sim *s); /* the model's integration step (option) */
double mujoco_sim_time(const mujoco_sim *s);     /* simulated time since the last reset */
/* The model's reference configuration qpos0 (nq,) into qpos. */
void mujoco_sim_qpos0(const mujoco_sim *s, double *qpos);
/* Actuator i's control range; false (and lo, hi untouched) when it is not limited. */
bool mujoco_sim_ctrl_range(const mujoco_sim *s, int i, double *lo, double *hi);

/* Resets time, controls and state: qpos (nq,) or NULL for qpos0, qvel (nv,) or NULL for zeros.
 * Non-finite values are an error (the state is then the reset default). */
int mujoco_sim_reset(mujoco_sim *s, const double *qpos, const double *qvel);
/* ctrl (nu,), kept for the following steps; MuJoCo clamps it to limited ctrl ranges. Non-finite
 * values are an error (controls untouched). */
int mujoco_sim_set_control(mujoco_sim *s, const double *ctrl);
/* n >= 1 steps of the model's integrator. An error when the state turns non-finite or MuJoCo
 * reports a bad qacc (it would have reset the state itself). */
int mujoco_sim_step(mujoco_sim *s, int n);
/* The current qpos (nq,) and qvel (nv,); either may be NULL. */
void mujoco_sim_state(const mujoco_sim *s, double *qpos, double *qvel);
/* The current potential and kinetic energy (MuJoCo's mj_energyPos / mj_energyVel); either may be
 * NULL. Gravity and springs count in the potential. */
int mujoco_sim_energy(mujoco_sim *s, double *potential, double *kinetic);
/* The joint-space mass matrix M(qpos) (nv, nv), dense, row-major: kinetic energy qvel' M qvel/2. */
int mujoco_sim_mass_matrix(mujoco_sim *s, double *M);

/* ---------------------------------------------------------------------------------------------
 * A seeded batch of trajectories. Each trajectory starts from qpos0 + U(qpos_lo, qpos_hi) and
 * U(qvel_lo, qvel_hi) per coordinate, holds one control drawn from U(ctrl_lo, ctrl_hi) per
 * actuator, and is sampled every sample_dt (a whole number of the model's steps) for n_points
 * points, the first being the initial state.
 */
typedef struct {
    int n_traj, n_points;
    double sample_dt;
    const double *qpos_lo, *qpos_hi; /* (nq,) offsets from qpos0, or NULL: no offset */
    const double *qvel_lo, *qvel_hi; /* (nv,) or NULL: zero */
    const double *ctrl_lo, *ctrl_hi; /* (nu,) or NULL: the ctrl ranges (0 where not limited) */
    uint64_t seed;
} mujoco_sim_batch_options;

typedef struct {
    int n_traj, n_points, nq, nv, nu;
    double sample_dt;
    double *qpos; /* (n_traj, n_points, nq) */
    double *qvel; /* (n_traj, n_points, nv) */
    double *ctrl; /* (n_traj, nu) the constant control of each trajectory */
} mujoco_sim_batch;

/* Fills *out (which mujoco_sim_batch_free releases; zeroed on failure). Errors: a non-positive
 * size, a sample_dt that is not a positive whole number of model steps (to 1e-9 relative), a lo
 * above its hi, a trajectory turning non-finite. The simulator is left in the last state. */
int mujoco_sim_generate(mujoco_sim *s, const mujoco_sim_batch_options *o, mujoco_sim_batch *out);
void mujoco_sim_batch_free(mujoco_sim_batch *b);

#endif

/* SPDX-License-Identifier: MIT
 * examples/common/mujoco_sim_none.c: mujoco_sim.h in a build without MuJoCo. Every function
 * exists so that programs build and say what is missing: creating a simulator fails with that
 * message, and nothing else can be reached without a simulator.
 */
#include "mujoco_sim.h"

#include <stdio.h>

bool mujoco_sim_available(void)
{
    return false;
}

mujoco_sim *mujoco_sim_create(const char *xml_path, char *err, size_t err_size)
{
    snprintf(err, err_size,
             "mujoco_sim_create: this build has no MuJoCo, so %s cannot be loaded (install "
             "libmujoco-dev and reconfigure meson)",
             xml_path ? xml_path : "the model");
    return NULL;
}

void mujoco_sim_destroy(mujoco_sim *s)
{
    (void)s;
}

const char *mujoco_sim_error(const mujoco_sim *s)
{
    (void)s;
    return "mujoco_sim: this build has no MuJoCo";
}

/* unreachable without a simulator: mujoco_sim_create never returns one */
int mujoco_sim_nq(const mujoco_sim *s)
{
    (void)s;
    return 0;
}

int mujoco_sim_nv(const mujoco_sim *s)
{
    (void)s;
    return 0;
}

int mujoco_sim_nu(const mujoco_sim *s)
{
    (void)s;
    return 0;
}

double mujoco_sim_timestep(const mujoco_sim *s)
{
    (void)s;
    return 0;
}

double mujoco_sim_time(const mujoco_sim *s)
{
    (void)s;
    return 0;
}

void mujoco_sim_qpos0(const mujoco_sim *s, double *qpos)
{
    (void)s, (void)qpos;
}

bool mujoco_sim_ctrl_range(const mujoco_sim *s, int i, double *lo, double *hi)
{
    (void)s, (void)i, (void)lo, (void)hi;
    return false;
}

int mujoco_sim_reset(mujoco_sim *s, const double *qpos, const double *qvel)
{
    (void)s, (void)qpos, (void)qvel;
    return -1;
}

int mujoco_sim_set_control(mujoco_sim *s, const double *ctrl)
{
    (void)s, (void)ctrl;
    return -1;
}

int mujoco_sim_step(mujoco_sim *s, int n)
{
    (void)s, (void)n;
    return -1;
}

void mujoco_sim_state(const mujoco_sim *s, double *qpos, double *qvel)
{
    (void)s, (void)qpos, (void)qvel;
}

int mujoco_sim_energy(mujoco_sim *s, double *potential, double *kinetic)
{
    (void)s, (void)potential, (void)kinetic;
    return -1;
}

int mujoco_sim_mass_matrix(mujoco_sim *s, double *M)
{
    (void)s, (void)M;
    return -1;
}

int mujoco_sim_generate(mujoco_sim *s, const mujoco_sim_batch_options *o, mujoco_sim_batch *out)
{
    (void)s, (void)o;
    *out = (mujoco_sim_batch){0};
    return -1;
}

void mujoco_sim_batch_free(mujoco_sim_batch *b)
{
    *b = (mujoco_sim_batch){0};
}

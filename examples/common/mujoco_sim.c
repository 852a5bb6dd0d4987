/* SPDX-License-Identifier: MIT
 * examples/common/mujoco_sim.c: the MuJoCo wrapper of mujoco_sim.h over MuJoCo's C API (2.2.x):
 * loading with a clear error, state in and out, stepping with checks, energies, the mass matrix,
 * and seeded batches of trajectories under constant random controls. MuJoCo's warnings go to
 * stderr (its default handler writes to stdout, which would break a program's --json).
 */
#include "mujoco_sim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mujoco/mujoco.h>

#include "nodal.h"

struct mujoco_sim {
    mjModel *m;
    mjData *d;
    char err[512];
};

static int sim_fail(mujoco_sim *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return -1;
}

static void warn_to_stderr(const char *msg)
{
    fprintf(stderr, "MuJoCo warning: %s\n", msg);
}

bool mujoco_sim_available(void)
{
    return true;
}

mujoco_sim *mujoco_sim_create(const char *xml_path, char *err, size_t err_size)
{
    char load_err[400] = "";
    if (!xml_path) return snprintf(err, err_size, "mujoco_sim_create: path is NULL"), NULL;
    if (mj_version() != mjVERSION_HEADER) {
        snprintf(err, err_size, "mujoco_sim_create: libmujoco is version %d, the header %d",
                 mj_version(), mjVERSION_HEADER);
        return NULL;
    }
    mju_user_warning = warn_to_stderr;
    mujoco_sim *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, err_size, "mujoco_sim_create: out of memory"), NULL;
    s->m = mj_loadXML(xml_path, NULL, load_err, (int)sizeof load_err);
    if (!s->m) {
        snprintf(err, err_size, "mujoco_sim_create: cannot load %s: %s", xml_path,
                 load_err[0] ? load_err : "unknown error");
        free(s);
        return NULL;
    }
    s->d = mj_makeData(s->m);
    if (!s->d) {
        snprintf(err, err_size, "mujoco_sim_create: %s: cannot allocate the model's data",
                 xml_path);
        mj_deleteModel(s->m);
        free(s);
        return NULL;
    }
    mj_forward(s->m, s->d);
    return s;
}

void mujoco_sim_destroy(mujoco_sim *s)
{
    if (!s) return;
    mj_deleteData(s->d);
    mj_deleteModel(s->m);
    free(s);
}

const char *mujoco_sim_error(const mujoco_sim *s)
{
    return s ? s->err : "mujoco_sim: simulator is NULL";
}

int mujoco_sim_nq(const mujoco_sim *s)
{
    return s->m->nq;
}

int mujoco_sim_nv(const mujoco_sim *s)
{
    return s->m->nv;
}

int mujoco_sim_nu(const mujoco_sim *s)
{
    return s->m->nu;
}

double mujoco_sim_timestep(const mujoco_sim *s)
{
    return s->m->opt.timestep;
}

double mujoco_sim_time(const mujoco_sim *s)
{
    return s->d->time;
}

void mujoco_sim_qpos0(const mujoco_sim *s, double *qpos)
{
    for (int i = 0; i < s->m->nq; i++) qpos[i] = s->m->qpos0[i];
}

bool mujoco_sim_ctrl_range(const mujoco_sim *s, int i, double *lo, double *hi)
{
    if (i < 0 || i >= s->m->nu || !s->m->actuator_ctrllimited[i]) return false;
    *lo = s->m->actuator_ctrlrange[2 * i];
    *hi = s->m->actuator_ctrlrange[2 * i + 1];
    return true;
}

static bool all_finite(const double *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

int mujoco_sim_reset(mujoco_sim *s, const double *qpos, const double *qvel)
{
    mj_resetData(s->m, s->d);
    if ((qpos && !all_finite(qpos, s->m->nq)) || (qvel && !all_finite(qvel, s->m->nv))) {
        mj_forward(s->m, s->d);
        return sim_fail(s, "mujoco_sim_reset: non-finite qpos or qvel");
    }
    if (qpos) memcpy(s->d->qpos, qpos, (size_t)s->m->nq * sizeof *qpos);
    if (qvel) memcpy(s->d->qvel, qvel, (size_t)s->m->nv * sizeof *qvel);
    mj_forward(s->m, s->d);
    return 0;
}

int mujoco_sim_set_control(mujoco_sim *s, const double *ctrl)
{
    if (s->m->nu > 0 && (!ctrl || !all_finite(ctrl, s->m->nu)))
        return sim_fail(s, "mujoco_sim_set_control: control is NULL or not finite");
    if (s->m->nu > 0) memcpy(s->d->ctrl, ctrl, (size_t)s->m->nu * sizeof *ctrl);
    return 0;
}

int mujoco_sim_step(mujoco_sim *s, int n)
{
    if (n < 1) return sim_fail(s, "mujoco_sim_step: %d steps (needs at least 1)", n);
    int bad_before = s->d->warning[mjWARN_BADQACC].number;
    for (int k = 0; k < n; k++) {
        mj_step(s->m, s->d);
        if (s->d->warning[mjWARN_BADQACC].number != bad_before ||
            !all_finite(s->d->qpos, s->m->nq) || !all_finite(s->d->qvel, s->m->nv))
            return sim_fail(s, "mujoco_sim_step: the state became non-finite at t = %g",
                            s->d->time);
    }
    return 0;
}

void mujoco_sim_state(const mujoco_sim *s, double *qpos, double *qvel)
{
    if (qpos) memcpy(qpos, s->d->qpos, (size_t)s->m->nq * sizeof *qpos);
    if (qvel) memcpy(qvel, s->d->qvel, (size_t)s->m->nv * sizeof *qvel);
}

int mujoco_sim_energy(mujoco_sim *s, double *potential, double *kinetic)
{
    mj_forward(s->m, s->d); // positions and the mass matrix of the current state
    mj_energyPos(s->m, s->d);
    mj_energyVel(s->m, s->d);
    if (potential) *potential = s->d->energy[0];
    if (kinetic) *kinetic = s->d->energy[1];
    return 0;
}

int mujoco_sim_mass_matrix(mujoco_sim *s, double *M)
{
    mj_forward(s->m, s->d);
    mj_fullM(s->m, M, s->d->qM);
    return 0;
}

// ------------------------------------------------------------------------------------------------
// seeded batches

static int check_ranges(mujoco_sim *s, const char *name, const double *lo, const double *hi, int n)
{
    if (!lo != !hi)
        return sim_fail(s, "mujoco_sim_generate: %s_lo and %s_hi: one is NULL", name, name);
    for (int i = 0; lo && i < n; i++)
        if (!(isfinite(lo[i]) && isfinite(hi[i]) && lo[i] <= hi[i]))
            return sim_fail(s, "mujoco_sim_generate: %s range %d is [%g, %g]", name, i, lo[i],
                            hi[i]);
    return 0;
}

/* steps per sample, or 0 when sample_dt is not a positive whole number of model steps */
static int steps_per_sample(const mujoco_sim *s, double sample_dt)
{
    double k = sample_dt / s->m->opt.timestep;
    if (!(isfinite(k) && k >= 0.5 && k < 1e9)) return 0;
    double r = round(k);
    return fabs(k - r) <= 1e-9 * r ? (int)r : 0;
}

static double draw(nd_rng *rng, const double *lo, const double *hi, int i, double dflt)
{
    return lo ? lo[i] + (hi[i] - lo[i]) * nd_rng_uniform(rng) : dflt;
}

/* one trajectory: draw its start and control, then sample it */
static int one_trajectory(mujoco_sim *s, const mujoco_sim_batch_options *o, nd_rng *rng, int k,
                          int substeps, mujoco_sim_batch *b)
{
    const mjModel *m = s->m;
    double *qpos = b->qpos + (size_t)k * b->n_points * m->nq;
    double *qvel = b->qvel + (size_t)k * b->n_points * m->nv;
    double *ctrl = b->ctrl + (size_t)k * m->nu;
    for (int i = 0; i < m->nq; i++) qpos[i] = m->qpos0[i] + draw(rng, o->qpos_lo, o->qpos_hi, i, 0);
    for (int i = 0; i < m->nv; i++) qvel[i] = draw(rng, o->qvel_lo, o->qvel_hi, i, 0);
    for (int i = 0; i < m->nu; i++) {
        double lo = 0, hi = 0;
        if (o->ctrl_lo)
            lo = o->ctrl_lo[i], hi = o->ctrl_hi[i];
        else
            mujoco_sim_ctrl_range(s, i, &lo, &hi);
        ctrl[i] = lo + (hi - lo) * nd_rng_uniform(rng);
    }
    if (mujoco_sim_reset(s, qpos, qvel) != 0 || mujoco_sim_set_control(s, ctrl) != 0) return -1;
    for (int j = 1; j < b->n_points; j++) {
        if (mujoco_sim_step(s, substeps) != 0) return -1;
        mujoco_sim_state(s, qpos + (size_t)j * m->nq, qvel + (size_t)j * m->nv);
    }
    return 0;
}

int mujoco_sim_generate(mujoco_sim *s, const mujoco_sim_batch_options *o, mujoco_sim_batch *out)
{
    *out = (mujoco_sim_batch){0};
    if (!o || o->n_traj < 1 || o->n_points < 1)
        return sim_fail(s, "mujoco_sim_generate: needs n_traj >= 1 and n_points >= 1 (got %d, %d)",
                        o ? o->n_traj : 0, o ? o->n_points : 0);
    int substeps = steps_per_sample(s, o->sample_dt);
    if (substeps == 0)
        return sim_fail(s,
                        "mujoco_sim_generate: sample_dt %g is not a whole number of the model's "
                        "step %g",
                        o->sample_dt, s->m->opt.timestep);
    const mjModel *m = s->m;
    if (check_ranges(s, "qpos", o->qpos_lo, o->qpos_hi, m->nq) != 0 ||
        check_ranges(s, "qvel", o->qvel_lo, o->qvel_hi, m->nv) != 0 ||
        check_ranges(s, "ctrl", o->ctrl_lo, o->ctrl_hi, m->nu) != 0)
        return -1;
    size_t n = (size_t)o->n_traj * (size_t)o->n_points;
    mujoco_sim_batch b = {.n_traj = o->n_traj,
                          .n_points = o->n_points,
                          .nq = m->nq,
                          .nv = m->nv,
                          .nu = m->nu,
                          .sample_dt = o->sample_dt};
    b.qpos = malloc(n * (size_t)m->nq * sizeof *b.qpos);
    b.qvel = malloc(n * (size_t)(m->nv > 0 ? m->nv : 1) * sizeof *b.qvel);
    b.ctrl = malloc((size_t)o->n_traj * (size_t)(m->nu > 0 ? m->nu : 1) * sizeof *b.ctrl);
    if (!b.qpos || !b.qvel || !b.ctrl) {
        mujoco_sim_batch_free(&b);
        return sim_fail(s, "mujoco_sim_generate: out of memory for %d x %d samples", o->n_traj,
                        o->n_points);
    }
    nd_rng rng = nd_rng_seed(o->seed);
    for (int k = 0; k < o->n_traj; k++)
        if (one_trajectory(s, o, &rng, k, substeps, &b) != 0) {
            char why[sizeof s->err];
            memcpy(why, s->err, sizeof why);
            mujoco_sim_batch_free(&b);
            return sim_fail(s, "mujoco_sim_generate: trajectory %d: %s", k, why);
        }
    *out = b;
    return 0;
}

void mujoco_sim_batch_free(mujoco_sim_batch *b)
{
    free(b->qpos), free(b->qvel), free(b->ctrl);
    *b = (mujoco_sim_batch){0};
}

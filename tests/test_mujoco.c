/* SPDX-License-Identifier: MIT
 * tests/test_mujoco.c: the Check suite of the MuJoCo wrapper (examples/common/mujoco_sim.c) and
 * of the model files shipped in examples/models/mujoco, against physics written out by hand:
 * the pendulum's energy is its analytic Hamiltonian 3 p^2 / 2 + 5 (1 - cos q) and is conserved
 * with u = 0; its motion matches the analytic equation q'' = 3 (u - 5 sin q) integrated by RK4;
 * the Acrobot's energy and motion match the analytic equations of gym's Acrobot-v1 (Sutton and
 * Barto's book dynamics, the parameters of acrobot.xml), with u = 0 (energy conserved) and under
 * a constant elbow torque (one trajectory side by side); a missing file or a bad sample spacing is
 * an error naming what was wrong; batches are reproducible from their seed. Built only when
 * MuJoCo is found.
 */
#include <math.h>

#include "mujoco_sim.h"
#include "test_main.h"

static mujoco_sim *load(const char *name)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", MUJOCO_MODEL_DIR, name);
    mujoco_sim *s = mujoco_sim_create(path, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    return s;
}

START_TEST(test_missing_model_is_a_clear_error)
{
    char err[512] = "";
    ck_assert_ptr_null(mujoco_sim_create("/nonexistent/model.xml", err, sizeof err));
    ck_assert_msg(strstr(err, "mujoco_sim_create") && strstr(err, "/nonexistent/model.xml"), "%s",
                  err);
    ck_assert(mujoco_sim_available());
}
END_TEST

START_TEST(test_pendulum_sizes_and_ranges)
{
    mujoco_sim *s = load("pendulum.xml");
    ck_assert_int_eq(mujoco_sim_nq(s), 1);
    ck_assert_int_eq(mujoco_sim_nv(s), 1);
    ck_assert_int_eq(mujoco_sim_nu(s), 1);
    double lo = 0, hi = 0;
    ck_assert(mujoco_sim_ctrl_range(s, 0, &lo, &hi));
    ck_assert(lo == -2 && hi == 2);
    ck_assert(!mujoco_sim_ctrl_range(s, 1, &lo, &hi));
    ck_assert(mujoco_sim_timestep(s) == 0.001);
    mujoco_sim_destroy(s);
}
END_TEST

/* the analytic pendulum energy, with the MuJoCo zero of potential at the pivot height */
static double pendulum_h(double q, double qdot)
{
    double p = qdot / 3; // I = 1/3
    return 1.5 * p * p + 5 * (1 - cos(q));
}

START_TEST(test_pendulum_energy_is_the_analytic_hamiltonian_and_conserved)
{
    mujoco_sim *s = load("pendulum.xml");
    double q = 2.5, v = 1.0, pot, kin;
    ck_assert_int_eq(mujoco_sim_reset(s, &q, &v), 0);
    ck_assert_int_eq(mujoco_sim_energy(s, &pot, &kin), 0);
    // MuJoCo's potential is m g z = -5 cos q; H adds 5
    ck_assert_msg(fabs(pot + kin + 5 - pendulum_h(q, v)) < 1e-12, "%.15g vs %.15g", pot + kin + 5,
                  pendulum_h(q, v));
    double M;
    ck_assert_int_eq(mujoco_sim_mass_matrix(s, &M), 0);
    ck_assert_msg(fabs(M - 1.0 / 3) < 1e-12, "M = %.15g", M);
    double h0 = pendulum_h(q, v), worst = 0;
    for (int k = 0; k < 100; k++) { // 5 s
        ck_assert_int_eq(mujoco_sim_step(s, 50), 0);
        mujoco_sim_state(s, &q, &v);
        worst = fmax(worst, fabs(pendulum_h(q, v) - h0));
    }
    ck_assert_msg(worst < 1e-8, "energy drift %g over 5 s", worst);
    ck_assert_msg(fabs(mujoco_sim_time(s) - 5.0) < 1e-9, "t = %g", mujoco_sim_time(s));
    mujoco_sim_destroy(s);
}
END_TEST

/* q'' = 3 (u - 5 sin q) by RK4 at 1e-4 against MuJoCo over 2 s under a constant torque */
START_TEST(test_pendulum_matches_the_analytic_equation)
{
    mujoco_sim *s = load("pendulum.xml");
    double q = 0.3, v = -2.0, u = 1.7;
    ck_assert_int_eq(mujoco_sim_reset(s, &q, &v), 0);
    ck_assert_int_eq(mujoco_sim_set_control(s, &u), 0);
    double y[2] = {q, v}, h = 1e-4;
    for (int k = 0; k < 40; k++) {
        ck_assert_int_eq(mujoco_sim_step(s, 50), 0);
        for (int j = 0; j < 500; j++) {
            double k1[2], k2[2], k3[2], k4[2], t[2];
#define PEND(out, z) (out[0] = z[1], out[1] = 3 * (u - 5 * sin(z[0])))
            PEND(k1, y);
            t[0] = y[0] + h / 2 * k1[0], t[1] = y[1] + h / 2 * k1[1];
            PEND(k2, t);
            t[0] = y[0] + h / 2 * k2[0], t[1] = y[1] + h / 2 * k2[1];
            PEND(k3, t);
            t[0] = y[0] + h * k3[0], t[1] = y[1] + h * k3[1];
            PEND(k4, t);
#undef PEND
            for (int i = 0; i < 2; i++) y[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
        }
        mujoco_sim_state(s, &q, &v);
        ck_assert_msg(fabs(q - y[0]) < 1e-8 && fabs(v - y[1]) < 1e-8,
                      "t = %.2f: MuJoCo (%.12g, %.12g), analytic (%.12g, %.12g)", 0.05 * (k + 1), q,
                      v, y[0], y[1]);
    }
    mujoco_sim_destroy(s);
}
END_TEST

START_TEST(test_batches_are_seeded_and_checked)
{
    mujoco_sim *s = load("pendulum.xml");
    double qlo = -3, qhi = 3, vlo = -1, vhi = 1, ulo = -2, uhi = 2;
    mujoco_sim_batch_options o = {.n_traj = 3,
                                  .n_points = 5,
                                  .sample_dt = 0.05,
                                  .qpos_lo = &qlo,
                                  .qpos_hi = &qhi,
                                  .qvel_lo = &vlo,
                                  .qvel_hi = &vhi,
                                  .ctrl_lo = &ulo,
                                  .ctrl_hi = &uhi,
                                  .seed = 42};
    mujoco_sim_batch a, b;
    ck_assert_msg(mujoco_sim_generate(s, &o, &a) == 0, "%s", mujoco_sim_error(s));
    ck_assert_msg(mujoco_sim_generate(s, &o, &b) == 0, "%s", mujoco_sim_error(s));
    ck_assert_int_eq(memcmp(a.qpos, b.qpos, 15 * sizeof *a.qpos), 0);
    ck_assert_int_eq(memcmp(a.ctrl, b.ctrl, 3 * sizeof *a.ctrl), 0);
    for (int k = 0; k < 3; k++) {
        ck_assert(a.qpos[k * 5] >= -3 && a.qpos[k * 5] <= 3);
        ck_assert(a.ctrl[k] >= -2 && a.ctrl[k] <= 2);
        ck_assert(a.qpos[k * 5 + 1] != a.qpos[k * 5]); // it moved
    }
    mujoco_sim_batch_free(&b);
    o.seed = 43;
    ck_assert_int_eq(mujoco_sim_generate(s, &o, &b), 0);
    ck_assert_int_ne(memcmp(a.qpos, b.qpos, 15 * sizeof *a.qpos), 0);
    mujoco_sim_batch_free(&a), mujoco_sim_batch_free(&b);

    o.sample_dt = 0.0505; // not a whole number of 1 ms steps
    ck_assert_int_eq(mujoco_sim_generate(s, &o, &a), -1);
    ck_assert_msg(strstr(mujoco_sim_error(s), "sample_dt 0.0505"), "%s", mujoco_sim_error(s));
    ck_assert_ptr_null(a.qpos);
    o.sample_dt = 0.05, qlo = 4; // lo above hi
    ck_assert_int_eq(mujoco_sim_generate(s, &o, &a), -1);
    ck_assert_msg(strstr(mujoco_sim_error(s), "qpos range 0 is [4, 3]"), "%s", mujoco_sim_error(s));
    o.n_traj = 0;
    ck_assert_int_eq(mujoco_sim_generate(s, &o, &a), -1);
    double nan_q = NAN;
    ck_assert_int_eq(mujoco_sim_reset(s, &nan_q, NULL), -1);
    ck_assert_int_eq(mujoco_sim_set_control(s, &nan_q), -1);
    ck_assert_int_eq(mujoco_sim_step(s, 0), -1);
    mujoco_sim_destroy(s);
}
END_TEST

// ------------------------------------------------------------------------------------------------
// the Acrobot against gym's Acrobot-v1 equations (book dynamics): m1 = m2 = 1, l1 = 1,
// lc1 = lc2 = 0.5, I1 = I2 = 1 about the centres of mass, g = 9.8, torque a at the elbow

#define AG 9.8

static void acrobot_mass(const double *q, double M[4])
{
    double d1 = 0.25 + (1 + 0.25 + cos(q[1])) + 2, d2 = (0.25 + 0.5 * cos(q[1])) + 1;
    M[0] = d1, M[1] = M[2] = d2, M[3] = 0.25 + 1;
}

static double acrobot_energy(const double *q, const double *v)
{
    double M[4];
    acrobot_mass(q, M);
    double T = 0.5 * (M[0] * v[0] * v[0] + 2 * M[1] * v[0] * v[1] + M[3] * v[1] * v[1]);
    return T - (0.5 + 1) * AG * cos(q[0]) - 0.5 * AG * cos(q[0] + q[1]);
}

/* gym's _dsdt: s = (q1, q2, v1, v2) -> ds/dt */
static void acrobot_f(const double *s, double a, double *ds)
{
    double q2 = s[1], v1 = s[2], v2 = s[3];
    double d1 = 0.25 + (1 + 0.25 + cos(q2)) + 2, d2 = (0.25 + 0.5 * cos(q2)) + 1;
    double phi2 = 0.5 * AG * cos(s[0] + q2 - M_PI / 2);
    double phi1 = -0.5 * v2 * v2 * sin(q2) - 2 * 0.5 * v2 * v1 * sin(q2) +
                  (0.5 + 1) * AG * cos(s[0] - M_PI / 2) + phi2;
    double dd2 = (a + d2 / d1 * phi1 - 0.5 * v1 * v1 * sin(q2) - phi2) / (0.25 + 1 - d2 * d2 / d1);
    double dd1 = -(d2 * dd2 + phi1) / d1;
    ds[0] = v1, ds[1] = v2, ds[2] = dd1, ds[3] = dd2;
}

static void acrobot_rk4(double *s, double a, double h)
{
    double k[4][4], t[4];
    acrobot_f(s, a, k[0]);
    for (int i = 0; i < 4; i++) t[i] = s[i] + h / 2 * k[0][i];
    acrobot_f(t, a, k[1]);
    for (int i = 0; i < 4; i++) t[i] = s[i] + h / 2 * k[1][i];
    acrobot_f(t, a, k[2]);
    for (int i = 0; i < 4; i++) t[i] = s[i] + h * k[2][i];
    acrobot_f(t, a, k[3]);
    for (int i = 0; i < 4; i++) s[i] += h / 6 * (k[0][i] + 2 * k[1][i] + 2 * k[2][i] + k[3][i]);
}

START_TEST(test_acrobot_energy_and_mass_matrix_are_gym_s)
{
    mujoco_sim *s = load("acrobot.xml");
    ck_assert(mujoco_sim_nq(s) == 2 && mujoco_sim_nv(s) == 2 && mujoco_sim_nu(s) == 1);
    double q[2] = {2.2, -1.1}, v[2] = {0.7, -1.9}, pot, kin, M[4], A[4];
    ck_assert_int_eq(mujoco_sim_reset(s, q, v), 0);
    ck_assert_int_eq(mujoco_sim_energy(s, &pot, &kin), 0);
    ck_assert_msg(fabs(pot + kin - acrobot_energy(q, v)) < 1e-12, "MuJoCo %.15g, analytic %.15g",
                  pot + kin, acrobot_energy(q, v));
    ck_assert_int_eq(mujoco_sim_mass_matrix(s, M), 0);
    acrobot_mass(q, A);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(fabs(M[i] - A[i]) < 1e-12, "M[%d]: MuJoCo %.15g, analytic %.15g", i, M[i],
                      A[i]);
    // u = 0: energy conserved over 5 s
    double e0 = acrobot_energy(q, v), worst = 0;
    for (int k = 0; k < 100; k++) {
        ck_assert_int_eq(mujoco_sim_step(s, 50), 0);
        mujoco_sim_state(s, q, v);
        worst = fmax(worst, fabs(acrobot_energy(q, v) - e0));
    }
    ck_assert_msg(worst < 1e-7, "energy drift %g over 5 s (energy %g)", worst, e0);
    mujoco_sim_destroy(s);
}
END_TEST

START_TEST(test_acrobot_trajectory_matches_gym_s_equations)
{
    mujoco_sim *s = load("acrobot.xml");
    double q[2] = {0.4, -0.3}, v[2] = {1.0, 0.5}, a = 1.3, y[4] = {q[0], q[1], v[0], v[1]};
    ck_assert_int_eq(mujoco_sim_reset(s, q, v), 0);
    ck_assert_int_eq(mujoco_sim_set_control(s, &a), 0);
    double worst = 0;
    for (int k = 1; k <= 60; k++) { // 3 s sampled every 0.05
        ck_assert_int_eq(mujoco_sim_step(s, 50), 0);
        for (int j = 0; j < 500; j++) acrobot_rk4(y, a, 1e-4);
        mujoco_sim_state(s, q, v);
        double d = fmax(fmax(fabs(q[0] - y[0]), fabs(q[1] - y[1])),
                        fmax(fabs(v[0] - y[2]), fabs(v[1] - y[3])));
        worst = fmax(worst, d);
        ck_assert_msg(d < 1e-7,
                      "t = %.2f: MuJoCo (%.9g, %.9g, %.9g, %.9g), analytic (%.9g, %.9g, "
                      "%.9g, %.9g)",
                      0.05 * k, q[0], q[1], v[0], v[1], y[0], y[1], y[2], y[3]);
    }
    ck_assert_msg(fabs(y[0] - 0.4) > 0.5 || fabs(y[1] + 0.3) > 0.5, "it barely moved");
    mujoco_sim_destroy(s);
}
END_TEST

static Suite *mujoco_suite(void)
{
    Suite *s = suite_create("mujoco");
    TCase *tc = tcase_create("wrapper");
    tcase_add_checked_fixture(tc, ctx_setup, ctx_teardown);
    tcase_add_test(tc, test_missing_model_is_a_clear_error);
    tcase_add_test(tc, test_pendulum_sizes_and_ranges);
    tcase_add_test(tc, test_pendulum_energy_is_the_analytic_hamiltonian_and_conserved);
    tcase_add_test(tc, test_pendulum_matches_the_analytic_equation);
    tcase_add_test(tc, test_batches_are_seeded_and_checked);
    tcase_add_test(tc, test_acrobot_energy_and_mass_matrix_are_gym_s);
    tcase_add_test(tc, test_acrobot_trajectory_matches_gym_s_equations);
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(mujoco_suite)

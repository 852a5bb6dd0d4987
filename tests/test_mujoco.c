/* SPDX-License-Identifier: MIT
 * tests/test_mujoco.c: the Check suite of the MuJoCo wrapper (examples/common/mujoco_sim.c) and
 * of the model files shipped in examples/models/mujoco, against physics written out by hand:
 * the pendulum's energy is its analytic Hamiltonian 3 p^2 / 2 + 5 (1 - cos q) and is conserved
 * with u = 0; its motion matches the analytic equation q'' = 3 (u - 5 sin q) integrated by RK4;
 * a missing file or a bad sample spacing is an error naming what was wrong; batches are
 * reproducible from their seed. Built only when MuJoCo is found.
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
    ck_assert(lo == -5 && hi == 5);
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
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(mujoco_suite)

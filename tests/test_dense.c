/* SPDX-License-Identifier: MIT
 * tests/test_dense.c: what a solve reports and keeps beyond its output times. The which-block
 * diagnostic (nd_limit_stats): every error test counted once, by the block that bound it, in
 * the forward solve of a tuple and in the adjoint under the RMS norm and the seminorm.
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "test_main.h"

static nd_tensor *vec(int n, const double *v)
{
    nd_tensor *t = nd_tensor_new(ctx, 1, &n);
    for (int i = 0; i < n; i++) t->data[i] = (nd_real)v[i];
    return t;
}

static long limit_total(const nd_limit_stats *l, bool accepted)
{
    long n = 0;
    for (int r = 0; r < ND_ROLE_COUNT; r++) n += nd_limit_count(l, (nd_block_role)r, accepted);
    return n;
}

/* every error test is counted once: accepted and rejected steps, nothing else */
static void expect_every_step_counted(const nd_solve_stats *s)
{
    ck_assert_int_eq(limit_total(&s->limit, true), s->accepted);
    ck_assert_int_eq(limit_total(&s->limit, false), s->rejected);
}

/* ---------------------------------------------------------------------------------------------
 * Which block bound the steps.
 */

/* z' = -z (2, 3), p' = sin(5 t) |z|^2 (2,): p oscillates, z decays smoothly */
static int tuple_f(nd_ctx *c, nd_tensor *t, nd_tensor *const *y, int n, nd_tensor **dy, void *u)
{
    (void)n, (void)u;
    dy[0] = nd_neg(c, y[0]);
    nd_tensor *sq = nd_sum_axis(c, nd_mul(c, y[0], y[0]), 1, false);
    dy[1] = nd_mul(c, sq, nd_sin(c, nd_mul_scalar(c, t, 5)));
    return 0;
}

START_TEST(test_limit_forward_tuple_names_the_binding_block)
{
    nd_tensor *t = vec(2, (double[]){0, 4});
    for (int tight = 0; tight < 2; tight++) {
        nd_tensor *z0 = nd_full(ctx, 2, (int[]){2, 3}, 1), *p0 = nd_zeros(ctx, 1, (int[]){2});
        nd_ode_options o = ND_ODE_DEFAULT;
        /* block `tight` gets tolerances 1e4 times tighter than the other */
        double rt[2] = {1e-3, 1e-3}, at[2] = {1e-5, 1e-5};
        rt[tight] = 1e-7, at[tight] = 1e-9;
        o.solver.rtol_blocks = rt, o.solver.atol_blocks = at;
        nd_tensor *ys[2];
        ck_assert_ptr_nonnull(
            nd_odeint_tuple(ctx, tuple_f, NULL, (nd_tensor *[]){z0, p0}, 2, t, NULL, 0, &o, ys));
        const nd_solve_stats *s = &nd_odeint_stats(ys[0])->forward;
        expect_every_step_counted(s);
        const nd_limit_stats *l = &s->limit;
        ck_assert_int_eq(nd_limit_count(l, ND_ROLE_ADJ_STATE, true), 0);
        /* the tight block binds (almost) every step */
        long bound_tight = l->accepted[ND_ROLE_STATE][tight] + l->rejected[ND_ROLE_STATE][tight];
        long bound_loose =
            l->accepted[ND_ROLE_STATE][1 - tight] + l->rejected[ND_ROLE_STATE][1 - tight];
        ck_assert_msg(bound_tight > 4 * bound_loose && bound_tight > 10,
                      "tight block %d bound %ld steps, the other %ld", tight, bound_tight,
                      bound_loose);
        ck_assert_double_eq_tol(nd_limit_fraction(l, ND_ROLE_STATE), 1, 1e-15);
        ck_assert_double_eq(nd_limit_seminorm_share(l), 0);
    }
}
END_TEST

/* y' = theta sin(3 t): z is large (its error is small relative to it), a_z is constant, and
 * a_theta = -integral of sin(3 t) is small and oscillating: a_theta binds under the RMS norm. */
static int sine_forcing(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)y;
    *dy = nd_mul(c, (nd_tensor *)u, nd_sin(c, nd_mul_scalar(c, t, 3)));
    return 0;
}

static void sine_forcing_backward(nd_norm_kind norm, nd_ode_stats *st, double *g)
{
    nd_tensor *theta = vec(1, (double[]){1.5}), *y0 = vec(1, (double[]){100});
    theta->requires_grad = y0->requires_grad = true;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = 1e-6, o.solver.atol = 1e-8;
    o.adjoint.norm = norm;
    nd_tensor *ys =
        nd_odeint(ctx, sine_forcing, theta, y0, vec(2, (double[]){0, 6}), &theta, 1, &o);
    nd_tensor *L = nd_sum(ctx, ys);
    ck_assert_msg(L && nd_backward(ctx, L, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
    *st = *nd_odeint_stats(ys);
    *g = theta->grad[0];
}

START_TEST(test_limit_param_adjoint_binds_under_rms_not_seminorm)
{
    nd_ode_stats rms, semi;
    double g_rms, g_semi, g_true = (1 - cos(18.0)) / 3; /* dL/dtheta = integral of sin(3t) */
    sine_forcing_backward(ND_NORM_RMS, &rms, &g_rms);
    sine_forcing_backward(ND_NORM_SEMINORM, &semi, &g_semi);
    expect_every_step_counted(&rms.backward);
    expect_every_step_counted(&semi.backward);
    expect_every_step_counted(&rms.forward);
    const nd_limit_stats *lr = &rms.backward.limit, *ls = &semi.backward.limit;
    /* RMS: the parameter adjoint binds most error tests, in its one block (index 0) */
    ck_assert_msg(nd_limit_fraction(lr, ND_ROLE_ADJ_PARAM) > 0.5, "a_theta bound %.2f",
                  nd_limit_fraction(lr, ND_ROLE_ADJ_PARAM));
    ck_assert_int_eq(lr->accepted[ND_ROLE_ADJ_PARAM][0],
                     nd_limit_count(lr, ND_ROLE_ADJ_PARAM, true));
    ck_assert_double_eq_tol(nd_limit_seminorm_share(lr), nd_limit_fraction(lr, ND_ROLE_ADJ_PARAM),
                            1e-15);
    /* seminorm: it never binds, and the backward takes fewer evaluations for it */
    ck_assert_int_eq(nd_limit_count(ls, ND_ROLE_ADJ_PARAM, true), 0);
    ck_assert_int_eq(nd_limit_count(ls, ND_ROLE_ADJ_PARAM, false), 0);
    ck_assert_double_eq(nd_limit_seminorm_share(ls), 0);
    ck_assert_int_lt(semi.backward.nfe, rms.backward.nfe);
    /* and the gradients are both right (the seminorm's within its looser control of a_theta) */
    ck_assert_double_eq_tol(g_rms, g_true, BY_PRECISION(1e-5, 1e-4));
    ck_assert_double_eq_tol(g_semi, g_true, 1e-3);
    /* a fixed-step solve counts nothing */
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = ND_RK4;
    nd_tensor *ys = nd_odeint(ctx, sine_forcing, vec(1, (double[]){1}), vec(1, (double[]){0}),
                              vec(3, (double[]){0, 1, 2}), NULL, 0, &o);
    ck_assert_ptr_nonnull(ys);
    ck_assert(isnan(nd_limit_fraction(&nd_odeint_stats(ys)->forward.limit, ND_ROLE_STATE)));
    ck_assert_ptr_null(nd_block_role_name(ND_ROLE_COUNT));
    ck_assert_str_eq(nd_block_role_name(ND_ROLE_ADJ_PARAM), "adj_param");
}
END_TEST

Suite *dense_suite(void)
{
    Suite *s = suite_create("dense");
    TCase *limit = tcase_create("limit");
    TCase *all[] = {limit};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        suite_add_tcase(s, all[i]);
    }
    tcase_add_test(limit, test_limit_forward_tuple_names_the_binding_block);
    tcase_add_test(limit, test_limit_param_adjoint_binds_under_rms_not_seminorm);
    return s;
}

ND_TEST_MAIN(dense_suite)

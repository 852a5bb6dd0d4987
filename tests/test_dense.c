/* SPDX-License-Identifier: MIT
 * tests/test_dense.c: what a solve reports and keeps beyond its output times. The which-block
 * diagnostic (nd_limit_stats): every error test counted once, by the block that bound it, in
 * the forward solve of a tuple and in the adjoint under the RMS norm and the seminorm. Dense
 * solutions (nd_ode_solution): values equal to nd_odeint's without calling f again, both time
 * directions, Hermite for fixed-step methods; gradcheck (first and second order) under backprop;
 * errors and the arena lifetime. Events (nd_odeint_event): the bouncing ball's first impact and
 * a parameter-dependent threshold against their closed forms and central differences, in every
 * gradient mode; directions, tolerance, both time directions, errors.
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

/* the paper's seminorm written as a user norm: the largest RMS over state and state adjoint */
static double user_seminorm(int n_blocks, const nd_real *const *blocks, const size_t *sizes,
                            const nd_block_role *roles, void *data)
{
    (void)data;
    double worst = 0;
    for (int b = 0; b < n_blocks; b++) {
        if (roles[b] != ND_ROLE_STATE && roles[b] != ND_ROLE_ADJ_STATE) continue;
        double sq = 0;
        for (size_t i = 0; i < sizes[b]; i++) sq += (double)blocks[b][i] * blocks[b][i];
        worst = fmax(worst, sqrt(sq / (double)sizes[b]));
    }
    return worst;
}

static void sine_forcing_backward(nd_norm_kind norm, nd_ode_stats *st, double *g)
{
    nd_tensor *theta = vec(1, (double[]){1.5}), *y0 = vec(1, (double[]){100});
    theta->requires_grad = y0->requires_grad = true;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = 1e-6, o.solver.atol = 1e-8;
    o.adjoint.norm = norm, o.adjoint.norm_fn = user_seminorm;
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
    /* a user norm: every block is a candidate (its norm may weigh them any way) */
    nd_ode_stats user;
    sine_forcing_backward(ND_NORM_USER, &user, &g_semi);
    expect_every_step_counted(&user.backward);
    ck_assert_int_eq(user.backward.nfe, semi.backward.nfe); /* the user norm is a seminorm */
    ck_assert_int_gt(nd_limit_count(&user.backward.limit, ND_ROLE_ADJ_PARAM, true), 0);
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

/* ---------------------------------------------------------------------------------------------
 * Dense solutions.
 */

static long decay_calls;

/* y' = k y, k a (1,) parameter */
static int decay(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    decay_calls++;
    *dy = nd_mul(c, y, (nd_tensor *)u);
    return 0;
}

/* y(t) anywhere equals nd_odeint's output at t and the exact solution, f is not called again */
static void check_dense_matches_odeint(nd_ode_options o, double t0, double t1, double tol_exact)
{
    nd_tensor *k = vec(1, (double[]){-0.7}), *y0 = vec(2, (double[]){1, -0.5});
    decay_calls = 0;
    nd_ode_solution *sol = nd_ode_solution_create(ctx, decay, k, y0, t0, t1, &k, 1, &o);
    ck_assert_msg(sol, "%s", nd_ctx_errmsg(ctx));
    long calls = decay_calls;
    ck_assert_int_eq(nd_ode_solution_stats(sol)->forward.nfe, calls);
    ck_assert_int_gt(nd_ode_solution_steps(sol), 2);
    enum { N = 41 };
    nd_tensor *t = nd_tensor_new(ctx, 1, (int[]){N});
    for (int i = 0; i < N; i++) t->data[i] = (nd_real)(t0 + (t1 - t0) * i / (N - 1));
    nd_tensor *ys = nd_odeint(ctx, decay, k, y0, t, &k, 1, &o);
    ck_assert_ptr_nonnull(ys);
    ck_assert_int_eq(nd_odeint_stats(ys)->forward.nfe, calls); /* the same steps */
    decay_calls = 0;
    for (int i = 0; i < N; i++) {
        nd_tensor *y = nd_ode_solution_at(ctx, sol, t->data[i]);
        ck_assert_msg(y && y->ndim == 1 && y->shape[0] == 2, "%s", nd_ctx_errmsg(ctx));
        for (int j = 0; j < 2; j++) {
            double exact = y0->data[j] * exp(-0.7 * (t->data[i] - t0));
            ck_assert_double_eq_tol(y->data[j], ys->data[2 * i + j], 64 * ND_REAL_EPS);
            ck_assert_double_eq_tol(y->data[j], exact, tol_exact);
        }
    }
    ck_assert_int_eq(decay_calls, 0);
    nd_ode_solution_destroy(sol);
}

START_TEST(test_dense_matches_odeint_without_calling_f)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = 1e-6, o.solver.atol = 1e-9;
    check_dense_matches_odeint(o, 0.2, 3, BY_PRECISION(1e-5, 1e-5));
    check_dense_matches_odeint(o, 3, 0.2, BY_PRECISION(1e-5, 1e-5)); /* backwards in time */
    o.solver.method = ND_RK4, o.solver.step_size = 0.1;              /* Hermite between steps */
    check_dense_matches_odeint(o, 0, 2, BY_PRECISION(1e-5, 1e-5));
}
END_TEST

/* sum of y(0.37) * y(1.21) from a dense solution by backprop through rk4 (a fixed grid, so central
 * differences see the same discrete map) */
static nd_tensor *dense_fn(nd_ctx *c, nd_tensor **in, void *user)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.grad = ND_GRAD_BACKPROP;
    o.solver.method = user ? ND_DOPRI5 : ND_RK4, o.solver.step_size = 0.25;
    nd_ode_solution *sol = nd_ode_solution_create(c, decay, in[1], in[0], 0, 1.5, &in[1], 1, &o);
    if (!sol) return NULL;
    nd_tensor *a = nd_ode_solution_at(c, sol, 0.37), *b = nd_ode_solution_at(c, sol, 1.21);
    nd_ode_solution_destroy(sol); /* a and b are arena tensors: they outlive it */
    return nd_mul(c, a, b);
}

START_TEST(test_dense_gradcheck_backprop)
{
    nd_tensor *in[2] = {vec(2, (double[]){1, -0.5}), vec(1, (double[]){-0.7})};
    in[0]->requires_grad = in[1]->requires_grad = true;
    char report[256];
    ck_assert_msg(gradcheck(ctx, dense_fn, in, 2, NULL, gc_default_tol(), report), "%s", report);
    ck_assert_msg(gradgradcheck(ctx, dense_fn, in, 2, NULL, gc_default_tol(), report), "%s",
                  report);
    /* dopri5: the gradient of y(t) = y0 e^{k t} against the closed form */
    nd_tensor *L = nd_sum(ctx, dense_fn(ctx, in, (void *)1));
    ck_assert_msg(L && nd_backward(ctx, L, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
    double k = -0.7, s = 0.37 + 1.21, e = exp(k * s), dk = 0;
    for (int j = 0; j < 2; j++) {
        double y0 = in[0]->data[j];
        ck_assert_double_eq_tol(in[0]->grad[j], 2 * y0 * e, 1e-6);
        dk += y0 * y0 * s * e;
    }
    ck_assert_double_eq_tol(in[1]->grad[0], dk, 1e-6);
}
END_TEST

START_TEST(test_dense_errors_and_lifetime)
{
    nd_tensor *k = vec(1, (double[]){-0.7}), *y0 = vec(2, (double[]){1, -0.5});
    nd_ode_solution *sol = nd_ode_solution_create(ctx, decay, k, y0, 0, 1, NULL, 0, NULL);
    ck_assert_ptr_nonnull(sol);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, sol, 1.5));
    expect_error(ND_ERR_ARG, "nd_ode_solution_at", "t = 1.5 is outside", "[0, 1]");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, sol, NAN));
    expect_error(ND_ERR_ARG, "outside");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_nonnull(nd_ode_solution_at(ctx, sol, 0)); /* both ends are in */
    ck_assert_ptr_nonnull(nd_ode_solution_at(ctx, sol, 1));
    /* without gradients the values are on the heap: the solution outlives a reset */
    nd_ctx_reset(ctx);
    nd_tensor *y = nd_ode_solution_at(ctx, sol, 1);
    ck_assert_ptr_nonnull(y);
    ck_assert_double_eq_tol(y->data[0], exp(-0.7), 1e-6);
    nd_ode_solution_destroy(sol);

    /* with gradients: adjoint mode refused, backprop's graph checked for a reset */
    k = vec(1, (double[]){-0.7}), y0 = vec(2, (double[]){1, -0.5});
    y0->requires_grad = true;
    ck_assert_ptr_null(nd_ode_solution_create(ctx, decay, k, y0, 0, 1, NULL, 0, NULL));
    expect_error(ND_ERR_ARG, "nd_ode_solution_create", "ND_GRAD_BACKPROP");
    nd_ctx_clear_error(ctx);
    nd_ode_options o = ND_ODE_DEFAULT;
    o.grad = ND_GRAD_BACKPROP;
    sol = nd_ode_solution_create(ctx, decay, k, y0, 0, 1, NULL, 0, &o);
    ck_assert_ptr_nonnull(sol);
    ck_assert(nd_ode_solution_at(ctx, sol, 0.5)->requires_grad);
    nd_ctx_reset(ctx);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, sol, 0.5));
    expect_error(ND_ERR_ARG, "nd_ode_solution_at", "reset or rewound");
    nd_ode_solution_destroy(sol);
    nd_ctx_clear_error(ctx);

    /* bad arguments */
    y0 = vec(2, (double[]){1, -0.5});
    ck_assert_ptr_null(nd_ode_solution_create(ctx, NULL, k, y0, 0, 1, NULL, 0, NULL));
    expect_error(ND_ERR_ARG, "nd_ode_solution_create: f is NULL");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_ode_solution_create(ctx, decay, k, y0, 1, 1, NULL, 0, NULL));
    expect_error(ND_ERR_ARG, "interval");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, NULL, 0));
    expect_error(ND_ERR_ARG, "sol is NULL");
    nd_ode_solution_destroy(NULL);
}
END_TEST

/* A differentiable solution read after its graph's memory was handed out again: a rewind to a
 * mark taken before the solve, then the arena filled past where the solve ended, is an error
 * (the position alone cannot tell), while rewinds that free nothing of it leave it readable. */
START_TEST(test_dense_rewind_below_the_solve_then_refill)
{
    nd_tensor *k = vec(1, (double[]){-0.7}), *y0 = vec(2, (double[]){1, -0.5});
    y0->requires_grad = true;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.grad = ND_GRAD_BACKPROP;
    nd_mark before = nd_ctx_mark(ctx);
    nd_ode_solution *a = nd_ode_solution_create(ctx, decay, k, y0, 0, 1, NULL, 0, &o);
    ck_assert_msg(a, "%s", nd_ctx_errmsg(ctx));
    /* scratch above the solve, rewound: a stays readable */
    nd_mark after_a = nd_ctx_mark(ctx);
    for (int i = 0; i < 8; i++) ck_assert_ptr_nonnull(nd_zeros(ctx, 1, (int[]){4096}));
    nd_ctx_rewind(ctx, after_a);
    ck_assert_ptr_nonnull(nd_ode_solution_at(ctx, a, 0.5));
    /* a second solution, then a rewind between the two: only the second is gone */
    nd_mark between = nd_ctx_mark(ctx);
    nd_ode_solution *b = nd_ode_solution_create(ctx, decay, k, y0, 0, 1, NULL, 0, &o);
    ck_assert_msg(b, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_rewind(ctx, between);
    for (int i = 0; i < 200; i++) ck_assert_ptr_nonnull(nd_zeros(ctx, 1, (int[]){4096}));
    nd_tensor *y = nd_ode_solution_at(ctx, a, 0.5);
    ck_assert_msg(y, "%s", nd_ctx_errmsg(ctx));
    ck_assert_double_eq_tol(y->data[0], exp(-0.35), 1e-6);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, b, 0.5));
    expect_error(ND_ERR_ARG, "nd_ode_solution_at", "reset or rewound");
    nd_ctx_clear_error(ctx);
    /* a rewind below both, the arena refilled far past their end: both gone, no crash */
    nd_ctx_rewind(ctx, before);
    for (int i = 0; i < 200; i++) ck_assert_ptr_nonnull(nd_zeros(ctx, 1, (int[]){4096}));
    ck_assert_ptr_null(nd_ode_solution_at(ctx, a, 0.5));
    expect_error(ND_ERR_ARG, "nd_ode_solution_at", "reset or rewound");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_ode_solution_at(ctx, b, 0.5));
    expect_error(ND_ERR_ARG, "nd_ode_solution_at", "reset or rewound");
    nd_ode_solution_destroy(a);
    nd_ode_solution_destroy(b);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Events.
 */

static long ball_calls;

/* a ball: y = (height, velocity), y' = (v, -gravity), gravity a (1,) parameter */
static int ball_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    ball_calls++;
    nd_tensor *parts[2] = {nd_slice(c, y, 0, 1, 1), nd_neg(c, (nd_tensor *)u)};
    *dy = nd_concat(c, parts, 2, 0);
    return 0;
}

static nd_tensor *ball_height(nd_ctx *c, nd_tensor *t, nd_tensor *y, void *u)
{
    (void)t, (void)u;
    return nd_slice(c, y, 0, 0, 1);
}

/* L = t* + 0.3 v* + 0.2 h* at the first impact, and its gradient in (h0, v0, gravity) */
static double ball_loss(double h0, double v0, double grav, nd_grad_mode mode, double grad[3])
{
    nd_tensor *y0 = vec(2, (double[]){h0, v0}), *gr = vec(1, (double[]){grav});
    y0->requires_grad = gr->requires_grad = grad != NULL;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.grad = mode;
    o.solver.rtol = o.solver.atol = 1e-10;
    nd_tensor *te = NULL, *ye = NULL;
    nd_status st =
        nd_odeint_event(ctx, ball_f, ball_height, gr, y0, 0, 10, &gr, 1, &o, NULL, &te, &ye);
    ck_assert_msg(st == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(te->ndim, 0);
    ck_assert_int_eq(ye->ndim, 1);
    nd_tensor *L = nd_add(ctx, te, nd_sum(ctx, nd_mul(ctx, ye, vec(2, (double[]){0.2, 0.3}))));
    double value = nd_item(L);
    if (grad) {
        ck_assert_msg(nd_backward(ctx, L, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
        grad[0] = y0->grad[0], grad[1] = y0->grad[1], grad[2] = gr->grad[0];
    }
    return value;
}

START_TEST(test_event_bouncing_ball_against_closed_form)
{
    const double h0 = 2, v0 = 0.5, g = 9.81, S = sqrt(v0 * v0 + 2 * g * h0);
    const double t_star = (v0 + S) / g;
    /* t* = (v0 + S) / g, v* = -S: their derivatives in h0, v0, g (h* = 0 has none) */
    const double dt[3] = {1 / S, (1 + v0 / S) / g, h0 / (S * g) - t_star / g};
    const double dv[3] = {-g / S, -v0 / S, -h0 / S};
    const nd_grad_mode modes[] = {ND_GRAD_ADJOINT, ND_GRAD_BACKPROP, ND_GRAD_INTERP_ADJOINT,
                                  ND_GRAD_QUADRATURE_ADJOINT, ND_GRAD_CHECKPOINTED};
    for (int mode = 0; mode < (int)(sizeof modes / sizeof *modes); mode++) {
        double grad[3];
        double L = ball_loss(h0, v0, g, modes[mode], grad);
        ck_assert_double_eq_tol(L, t_star - 0.3 * S, BY_PRECISION(1e-8, 1e-4));
        for (int k = 0; k < 3; k++) {
            double want = dt[k] + 0.3 * dv[k];
            ck_assert_msg(fabs(grad[k] - want) < BY_PRECISION(1e-6, 1e-3),
                          "mode %d: dL/d%s %.10g, closed form %.10g", mode,
                          (const char *[]){"h0", "v0", "g"}[k], grad[k], want);
        }
        nd_ctx_reset(ctx);
    }
    /* central differences of the event itself agree */
    double grad[3], eps = 1e-5;
    ball_loss(h0, v0, g, ND_GRAD_ADJOINT, grad);
    const double x[3] = {h0, v0, g};
    for (int k = 0; k < 3; k++) {
        double xp[3] = {x[0], x[1], x[2]}, xm[3] = {x[0], x[1], x[2]};
        xp[k] += eps, xm[k] -= eps;
        double fd = (ball_loss(xp[0], xp[1], xp[2], ND_GRAD_ADJOINT, NULL) -
                     ball_loss(xm[0], xm[1], xm[2], ND_GRAD_ADJOINT, NULL)) /
                    (2 * eps);
        ck_assert_msg(fabs(fd - grad[k]) < BY_PRECISION(1e-5, 1e-1), "k %d: fd %.10g grad %.10g", k,
                      fd, grad[k]);
    }
}
END_TEST

/* The event's statistics, through either output: forward counts every f call of both solves
 * (the search and the solve to the event), backward the second solve's backward pass. */
START_TEST(test_event_stats_count_both_solves)
{
    const nd_grad_mode modes[] = {ND_GRAD_ADJOINT, ND_GRAD_BACKPROP, ND_GRAD_INTERP_ADJOINT,
                                  ND_GRAD_QUADRATURE_ADJOINT, ND_GRAD_CHECKPOINTED};
    for (int mode = 0; mode < (int)(sizeof modes / sizeof *modes); mode++) {
        nd_tensor *y0 = vec(2, (double[]){2, 0.5}), *gr = vec(1, (double[]){9.81});
        y0->requires_grad = gr->requires_grad = true;
        nd_ode_options o = ND_ODE_DEFAULT;
        o.grad = modes[mode];
        nd_tensor *te = NULL, *ye = NULL;
        ball_calls = 0;
        ck_assert_int_eq(
            nd_odeint_event(ctx, ball_f, ball_height, gr, y0, 0, 10, &gr, 1, &o, NULL, &te, &ye),
            ND_OK);
        long forward_calls = ball_calls;
        const nd_ode_stats *st = nd_odeint_stats(ye);
        ck_assert_msg(st, "mode %d: no stats on y_event", mode);
        ck_assert_ptr_eq(nd_odeint_stats(te), st);
        ck_assert_int_eq(st->forward.nfe, forward_calls);
        /* at least one accepted step in each of the two solves */
        ck_assert_int_ge(st->forward.accepted, 2);
        ck_assert_int_eq(st->backward.nfe, 0);
        ball_calls = 0;
        nd_tensor *L = nd_add(ctx, te, nd_sum(ctx, ye));
        ck_assert_msg(nd_backward(ctx, L, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
        /* the event's backward calls f once more, at the event (not a solve's evaluation) */
        ck_assert_int_eq(st->backward.nfe + st->recomputed.nfe + 1, ball_calls);
        if (modes[mode] != ND_GRAD_BACKPROP) ck_assert_int_gt(ball_calls, 1);
        nd_ctx_reset(ctx);
    }
}
END_TEST

/* y' = -k y; the event y = theta, a threshold that is a parameter of g alone */
typedef struct {
    nd_tensor *k, *theta;
} threshold;

static int thr_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    *dy = nd_neg(c, nd_mul(c, y, ((threshold *)u)->k));
    return 0;
}

static nd_tensor *thr_g(nd_ctx *c, nd_tensor *t, nd_tensor *y, void *u)
{
    (void)t;
    return nd_sub(c, y, ((threshold *)u)->theta);
}

static double thr_time(double y0v, double k, double theta, const nd_event_options *eo,
                       double grad[3])
{
    threshold d = {vec(1, (double[]){k}), vec(1, (double[]){theta})};
    nd_tensor *y0 = vec(1, (double[]){y0v});
    y0->requires_grad = d.k->requires_grad = d.theta->requires_grad = grad != NULL;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = o.solver.atol = 1e-10;
    nd_tensor *te, *ye, *params[2] = {d.k, d.theta};
    nd_status st = nd_odeint_event(ctx, thr_f, thr_g, &d, y0, 0, 20, params, 2, &o, eo, &te, &ye);
    ck_assert_msg(st == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert_double_eq_tol(ye->data[0], theta, BY_PRECISION(1e-8, 1e-5)); /* on the threshold */
    if (grad) {
        ck_assert_msg(nd_backward(ctx, te, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
        grad[0] = y0->grad[0], grad[1] = d.k->grad[0], grad[2] = d.theta->grad[0];
    }
    return nd_item(te);
}

START_TEST(test_event_parameter_dependent_threshold)
{
    const double y0 = 2, k = 0.8, theta = 0.5, t_star = log(y0 / theta) / k;
    double grad[3];
    double te = thr_time(y0, k, theta, NULL, grad);
    ck_assert_double_eq_tol(te, t_star, BY_PRECISION(1e-8, 1e-4));
    const double want[3] = {1 / (k * y0), -t_star / k, -1 / (k * theta)};
    const double x[3] = {y0, k, theta}, eps = 1e-5;
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(fabs(grad[i] - want[i]) < BY_PRECISION(1e-6, 1e-3), "%d: %.10g vs %.10g", i,
                      grad[i], want[i]);
        double xp[3] = {x[0], x[1], x[2]}, xm[3] = {x[0], x[1], x[2]};
        xp[i] += eps, xm[i] -= eps;
        double fd = (thr_time(xp[0], xp[1], xp[2], NULL, NULL) -
                     thr_time(xm[0], xm[1], xm[2], NULL, NULL)) /
                    (2 * eps);
        ck_assert_msg(fabs(fd - grad[i]) < BY_PRECISION(1e-5, 1e-1), "%d: fd %.10g grad %.10g", i,
                      fd, grad[i]);
    }
    /* falling through the threshold is no upward event */
    nd_event_options up = {.direction = 1};
    threshold d = {vec(1, (double[]){k}), vec(1, (double[]){theta})};
    nd_tensor *te_t, *ye_t;
    ck_assert_int_eq(nd_odeint_event(ctx, thr_f, thr_g, &d, vec(1, (double[]){y0}), 0, 20, NULL, 0,
                                     NULL, &up, &te_t, &ye_t),
                     ND_ERR_NO_EVENT);
    expect_error(ND_ERR_NO_EVENT, "nd_odeint_event", "did not cross zero upwards", "t_end = 20");
    ck_assert_ptr_null(te_t);
    ck_assert_ptr_null(ye_t);
}
END_TEST

/* y = (sin(t + 0.5), cos(t + 0.5)); g = y[0] */
static int osc_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t, (void)u;
    nd_tensor *parts[2] = {nd_slice(c, y, 0, 1, 1), nd_neg(c, nd_slice(c, y, 0, 0, 1))};
    *dy = nd_concat(c, parts, 2, 0);
    return 0;
}

static double osc_event(double t_end, int direction, double tol, nd_ode_method method)
{
    nd_event_options eo = {.direction = direction, .tol = tol};
    nd_tensor *te, *ye, *y0 = vec(2, (double[]){sin(0.5), cos(0.5)});
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = o.solver.atol = 1e-10;
    o.solver.method = method, o.solver.step_size = method == ND_RK4 ? 0.01 : 0;
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, t_end, NULL, 0, &o, &eo, &te, &ye),
        ND_OK);
    return nd_item(te);
}

static nd_tensor *two_numbers(nd_ctx *c, nd_tensor *t, nd_tensor *y, void *u)
{
    (void)c, (void)t, (void)u;
    return y;
}

START_TEST(test_event_direction_tolerance_and_errors)
{
    double tol = BY_PRECISION(1e-8, 1e-4);
    ck_assert_double_eq_tol(osc_event(10, 0, 0, ND_DOPRI5), M_PI - 0.5, tol);
    ck_assert_double_eq_tol(osc_event(10, -1, 0, ND_DOPRI5), M_PI - 0.5, tol);
    ck_assert_double_eq_tol(osc_event(10, 1, 0, ND_DOPRI5), 2 * M_PI - 0.5, tol);
    ck_assert_double_eq_tol(osc_event(-10, 0, 0, ND_DOPRI5), -0.5, tol); /* backwards in time */
    /* a fixed-step method: the root on its cubic Hermite interpolants */
    ck_assert_double_eq_tol(osc_event(10, 0, 0, ND_RK4), M_PI - 0.5, BY_PRECISION(1e-7, 1e-4));
    /* a loose tolerance is honoured, and no more: the bisection stops early */
    double loose = osc_event(10, 0, 1e-2, ND_DOPRI5);
    ck_assert_double_eq_tol(loose, M_PI - 0.5, 1e-2);
    ck_assert_double_ne_tol(loose, M_PI - 0.5, 1e-9);
    /* the last step passes t_end: a crossing beyond it is not an event */
    nd_tensor *te, *ye, *y0 = vec(2, (double[]){sin(0.5), cos(0.5)});
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, 2.6, NULL, 0, NULL, NULL, &te, &ye),
        ND_ERR_NO_EVENT);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, two_numbers, NULL, y0, 0, 5, NULL, 0, NULL, NULL, &te, &ye),
        ND_ERR_SHAPE);
    expect_error(ND_ERR_SHAPE, "nd_odeint_event: g must return one number", "(2,)");
    nd_ctx_clear_error(ctx);
    nd_event_options bad = {.direction = 2};
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, 5, NULL, 0, NULL, &bad, &te, &ye),
        ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "direction must be -1, 0 or 1, got 2");
    nd_ctx_clear_error(ctx);
    bad = (nd_event_options){.tol = -1};
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, 5, NULL, 0, NULL, &bad, &te, &ye),
        ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, NULL, NULL, y0, 0, 5, NULL, 0, NULL, NULL, &te, &ye),
        ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_odeint_event: g is NULL");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, 0, NULL, 0, NULL, NULL, &te, &ye),
        ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(
        nd_odeint_event(ctx, osc_f, ball_height, NULL, y0, 0, 5, NULL, 0, NULL, NULL, NULL, &ye),
        ND_ERR_ARG);
}
END_TEST

Suite *dense_suite(void)
{
    Suite *s = suite_create("dense");
    TCase *limit = tcase_create("limit"), *dense = tcase_create("dense");
    TCase *event = tcase_create("event");
    TCase *all[] = {limit, dense, event};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        suite_add_tcase(s, all[i]);
    }
    tcase_add_test(limit, test_limit_forward_tuple_names_the_binding_block);
    tcase_add_test(limit, test_limit_param_adjoint_binds_under_rms_not_seminorm);
    tcase_add_test(dense, test_dense_matches_odeint_without_calling_f);
    tcase_add_test(dense, test_dense_gradcheck_backprop);
    tcase_add_test(dense, test_dense_errors_and_lifetime);
    tcase_add_test(dense, test_dense_rewind_below_the_solve_then_refill);
    tcase_add_test(event, test_event_bouncing_ball_against_closed_form);
    tcase_add_test(event, test_event_stats_count_both_solves);
    tcase_add_test(event, test_event_parameter_dependent_threshold);
    tcase_add_test(event, test_event_direction_tolerance_and_errors);
    return s;
}

ND_TEST_MAIN(dense_suite)

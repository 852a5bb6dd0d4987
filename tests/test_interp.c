/* SPDX-License-Identifier: MIT
 * tests/test_interp.c: the per-step interpolant (odeint/interp.c, module-private, compiled into
 * this test). Hermite is exact on cubics and the quartic on quartics, in both time directions;
 * the plain-buffer and tensor layers agree; the quartic fitted from real dopri5 stages converges
 * at order 5 inside a step; y(t) from the tensors passes first- and second-order gradcheck.
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "odeint/interp.h"
#include "test_main.h"

/* p(t) = sum_k a[k] t^k and p'(t), two components (the second scaled by -2) */
static void poly(const double *a, int deg, double t, nd_real *y, nd_real *dy)
{
    double v = 0, d = 0;
    for (int k = deg; k >= 0; k--) v = v * t + a[k];
    for (int k = deg; k >= 1; k--) d = d * t + k * a[k];
    if (y) y[0] = (nd_real)v, y[1] = (nd_real)(-2 * v);
    if (dy) dy[0] = (nd_real)d, dy[1] = (nd_real)(-2 * d);
}

static nd_tensor *buf2(void)
{
    return nd_tensor_new(ctx, 1, (int[]){2});
}

/* fits the polynomial's values on [t0, t1] (quartic when deg = 4) both ways and checks y, y' */
static void check_exact(const double *a, int deg, double t0, double t1)
{
    nd_tensor *y0 = buf2(), *f0 = buf2(), *y1 = buf2(), *f1 = buf2(), *ym = buf2();
    poly(a, deg, t0, y0->data, f0->data);
    poly(a, deg, t1, y1->data, f1->data);
    poly(a, deg, 0.5 * (t0 + t1), ym->data, NULL);
    int m = deg == 4 ? 5 : 4;
    nd_real c[10];
    if (m == 5)
        nd_interp_quartic_coeffs(2, t1 - t0, y0->data, f0->data, y1->data, f1->data, ym->data, c);
    else
        nd_interp_hermite_coeffs(2, t1 - t0, y0->data, f0->data, y1->data, f1->data, c);
    /* the tensor layer: a fake one-stage "tableau" whose midpoint is ym = y0 + h (ym - y0) / h */
    nd_interp ip;
    if (m == 5) {
        nd_tensor *k = nd_mul_scalar(ctx, nd_sub(ctx, ym, y0), 1 / (t1 - t0));
        static const double mid[2] = {0, 1};
        nd_tableau tab = {.n_stages = 1, .c_mid = mid};
        ck_assert(nd_interp_fit(ctx, &tab, t0, t1, y0, f0, y1, f1, (nd_tensor *[]){f0, k}, &ip));
    } else {
        ck_assert(nd_interp_fit(ctx, NULL, t0, t1, y0, f0, y1, f1, NULL, &ip));
    }
    ck_assert_int_eq(ip.n_coeff, m);
    for (int i = 0; i <= 10; i++) {
        double t = t0 + (t1 - t0) * i / 10.0;
        nd_real want[2], dwant[2], got[2], dgot[2], tb[2], dtb[2];
        poly(a, deg, t, want, dwant);
        double x = nd_interp_x(t0, t1, t);
        nd_interp_eval(c, m, 2, x, got);
        nd_interp_slope(c, m, 2, x, t1 - t0, dgot);
        nd_interp_at_buf(&ip, t, tb);
        nd_interp_slope_buf(&ip, t, dtb);
        nd_tensor *yt = nd_interp_at(ctx, &ip, t);
        ck_assert_ptr_nonnull(yt);
        for (int j = 0; j < 2; j++) {
            double tol = 1e3 * ND_REAL_EPS * (1 + fabs(want[j]));
            ck_assert_double_eq_tol(got[j], want[j], tol);
            ck_assert_double_eq_tol(tb[j], want[j], tol);
            ck_assert_double_eq_tol(yt->data[j], want[j], tol);
            ck_assert_double_eq_tol(dgot[j], dwant[j], 10 * tol);
            ck_assert_double_eq_tol(dtb[j], dwant[j], 10 * tol);
        }
    }
}

START_TEST(test_exact_on_their_degree)
{
    const double a[5] = {0.3, -1.2, 0.7, 0.45, -0.25};
    check_exact(a, 3, 0.2, 1.3);
    check_exact(a, 3, 1.3, 0.2); /* a solve backwards in time */
    check_exact(a, 4, -0.4, 0.9);
    check_exact(a, 4, 0.9, -0.4);
}
END_TEST

/* One dopri5 step of y' = lambda y (lambda = -1.3) from y0 = 1 over h, the quartic fitted from
 * its stages; returns the largest error inside the step against exp(lambda t). */
static double dopri5_step_error(double h)
{
    const nd_tableau *tab = nd_tableau_get(ND_DOPRI5);
    const double lam = -1.3;
    nd_tensor *k[ND_MAX_STAGES], *y0 = nd_full(ctx, 1, (int[]){1}, 1), *yi = NULL;
    k[0] = nd_mul_scalar(ctx, y0, lam);
    for (int i = 0; i < tab->n_stages; i++) {
        double acc = 1;
        for (int j = 0; j <= i; j++) acc += h * tab->beta[i * ND_MAX_STAGES + j] * k[j]->data[0];
        yi = nd_full(ctx, 1, (int[]){1}, (nd_real)acc);
        k[i + 1] = nd_mul_scalar(ctx, yi, lam);
    }
    nd_interp ip;
    ck_assert(nd_interp_fit(ctx, tab, 0, h, y0, k[0], yi, k[tab->n_stages], k, &ip));
    ck_assert_int_eq(ip.n_coeff, 5);
    double worst = 0;
    for (int i = 1; i < 20; i++) {
        double t = h * i / 20.0;
        nd_real v;
        nd_interp_at_buf(&ip, t, &v);
        worst = fmax(worst, fabs(v - exp(lam * t)));
    }
    return worst;
}

START_TEST(test_dopri5_quartic_converges_inside_a_step)
{
    DOUBLE_ONLY();
    double e1 = dopri5_step_error(0.2), e2 = dopri5_step_error(0.1);
    /* local error O(h^5): halving h divides it by about 32 */
    ck_assert_msg(e1 / e2 > 24 && e1 / e2 < 48, "errors %g %g ratio %g", e1, e2, e1 / e2);
    ck_assert_msg(e1 < 1e-6, "error %g", e1);
}
END_TEST

static nd_tensor *at_fn(nd_ctx *c, nd_tensor **in, void *user)
{
    const double *tt = user; /* t0, t1, t */
    nd_interp ip;
    if (!nd_interp_fit(c, NULL, tt[0], tt[1], in[0], in[1], in[2], in[3], NULL, &ip)) return NULL;
    /* a nonlinear use of y(t), so the second order check has something to differentiate */
    nd_tensor *y = nd_interp_at(c, &ip, tt[2]);
    return nd_mul(c, y, y);
}

START_TEST(test_tensor_layer_gradcheck)
{
    double tt[3] = {0.5, 0.1, 0.37};
    nd_tensor *in[4];
    for (int i = 0; i < 4; i++) {
        in[i] = nd_tensor_new(ctx, 1, (int[]){3});
        for (int j = 0; j < 3; j++) in[i]->data[j] = (nd_real)(0.3 * i - 0.2 * j + 0.1);
        in[i]->requires_grad = true;
    }
    char report[256];
    ck_assert_msg(gradcheck(ctx, at_fn, in, 4, tt, gc_default_tol(), report), "%s", report);
    ck_assert_msg(gradgradcheck(ctx, at_fn, in, 4, tt, gc_default_tol(), report), "%s", report);
}
END_TEST

Suite *interp_suite(void)
{
    Suite *s = suite_create("interp");
    TCase *tc = tcase_create("interp");
    tcase_add_checked_fixture(tc, ctx_setup, ctx_teardown);
    tcase_add_test(tc, test_exact_on_their_degree);
    tcase_add_test(tc, test_dopri5_quartic_converges_inside_a_step);
    tcase_add_test(tc, test_tensor_layer_gradcheck);
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(interp_suite)

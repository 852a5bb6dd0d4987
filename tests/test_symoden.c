/* SPDX-License-Identifier: MIT
 * tests/test_symoden.c: the Check suite of the Symplectic ODE-Net model (examples/models/
 * symoden.c). The Hamiltonian vector field, whose dH is a VJP taken inside f, passes first- and
 * second-order gradchecks in the state and every parameter (one and two angles); the learned
 * M^-1 is symmetric positive definite (eigenvalues >= eps) and M qdot inverts it; the learned H
 * is conserved along the learned flow with u = 0 to the solver's tolerance, and with u != 0 it
 * changes at the power dH/dt = dH/dp' g(q) u; the adjoint's gradients through the control-affine
 * dynamics equal backprop's (and the baseline's); bad sizes are errors.
 */
#include <math.h>

#include "gradcheck.h"
#include "symoden.h"
#include "test_main.h"

static symoden_model model;

static void make(symoden_kind kind, int n, int nu, int hidden, uint64_t seed)
{
    nd_rng rng = nd_rng_seed(seed);
    ck_assert_msg(symoden_create(ctx, &model, kind, n, nu, hidden, 0.1, &rng) == ND_OK, "%s",
                  nd_ctx_errmsg(ctx));
}

static void teardown(void)
{
    symoden_destroy(&model);
    ctx_teardown();
}

static nd_tensor *random_tensor(int rows, int cols, double lo, double hi, uint64_t seed)
{
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){rows, cols});
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_uniform(x, &rng, lo, hi);
    return x;
}

/* the vector field at (y, u) with grad mode on, as the adjoint evaluates it */
typedef struct {
    nd_tensor *u;
} field_case;

static nd_tensor *field_fn(nd_ctx *c, nd_tensor **in, void *user)
{
    field_case *fc = user;
    symoden_ctrl ctrl = {&model, fc->u};
    nd_tensor *dy = NULL, *t = nd_zeros(c, 0, NULL);
    return symoden_dynamics(c, t, in[0], &dy, &ctrl) == 0 ? dy : NULL;
}

static void check_field_gradients(int n, int nu)
{
    DOUBLE_ONLY();
    make(SYMODEN_HAMILTONIAN, n, nu, 5, 3);
    nd_tensor *y = random_tensor(3, 2 * n, -2, 2, 11);
    y->requires_grad = true;
    field_case fc = {random_tensor(3, nu, -1, 1, 12)};
    char report[256] = "";
    // gradcheck takes at most 16 inputs: y and the parameters 12 at a time, all but V's output
    // bias, which shifts H by a constant and so never reaches the field
    nd_tensor *ps[32];
    int np = 0;
    for (int i = 0; i < model.plist.n; i++)
        if (strcmp(model.plist.items[i].name, "V.4.bias") != 0) ps[np++] = model.params[i];
    ck_assert_int_eq(np, model.plist.n - 1);
    for (int first = 0; first < np; first += 12) {
        nd_tensor *in[13] = {y};
        int k = 0;
        for (; k < 12 && first + k < np; k++) in[1 + k] = ps[first + k];
        ck_assert_msg(gradcheck(ctx, field_fn, in, 1 + k, &fc, gc_default_tol(), report),
                      "first order, parameters from %d: %s", first, report);
        ck_assert_msg(gradgradcheck(ctx, field_fn, in, 1 + k, &fc, gc_default_tol(), report),
                      "second order, parameters from %d: %s", first, report);
    }
}

START_TEST(test_field_gradcheck_one_angle)
{
    check_field_gradients(1, 1);
}
END_TEST

START_TEST(test_field_gradcheck_two_angles)
{
    check_field_gradients(2, 1);
}
END_TEST

/* the field is (dH/dp, -dH/dq + g u) for the H symoden_energy computes: checked against central
 * differences of H itself (not of the field's own code) */
START_TEST(test_field_is_the_symplectic_gradient_of_the_energy)
{
    DOUBLE_ONLY();
    make(SYMODEN_HAMILTONIAN, 2, 1, 8, 5);
    nd_tensor *y = random_tensor(1, 4, -2, 2, 7), *u = random_tensor(1, 1, -1, 1, 8);
    symoden_ctrl ctrl = {&model, u};
    nd_tensor *dy = NULL;
    ck_assert_int_eq(symoden_dynamics(ctx, NULL, y, &dy, &ctrl), 0);
    nd_tensor *g = NULL, *q = nd_slice(ctx, y, 1, 0, 2);
    ck_assert_int_eq(symoden_parts(ctx, &model, q, NULL, NULL, &g), ND_OK);
    double grad[4], h = 1e-6;
    for (int k = 0; k < 4; k++) {
        double hv[2];
        for (int s = 0; s < 2; s++) {
            nd_tensor *yp = nd_copy(ctx, y);
            yp->data[k] += s ? -h : h;
            nd_tensor *H =
                symoden_energy(ctx, &model, nd_slice(ctx, yp, 1, 0, 2), nd_slice(ctx, yp, 1, 2, 2));
            hv[s] = nd_item(H);
        }
        grad[k] = (hv[0] - hv[1]) / (2 * h);
    }
    double want[4] = {grad[2], grad[3], -grad[0] + g->data[0] * u->data[0],
                      -grad[1] + g->data[1] * u->data[0]};
    for (int k = 0; k < 4; k++)
        ck_assert_msg(fabs(dy->data[k] - want[k]) < 1e-7 * fmax(1, fabs(want[k])),
                      "component %d: field %.12g, from H %.12g", k, dy->data[k], want[k]);
}
END_TEST

START_TEST(test_mass_matrix_is_positive_definite_and_inverted)
{
    for (int n = 1; n <= 2; n++) {
        make(SYMODEN_HAMILTONIAN, n, 1, 16, 20 + n);
        const int B = 200;
        nd_tensor *q = random_tensor(B, n, -10, 10, 31), *minv = NULL;
        ck_assert_int_eq(symoden_parts(ctx, &model, q, &minv, NULL, NULL), ND_OK);
        for (int b = 0; b < B; b++) {
            const nd_real *e = minv->data + (size_t)b * n * n;
            double lmin = e[0];
            if (n == 2) {
                ck_assert(e[1] == e[2]); // symmetric
                double tr = e[0] + e[3], det = e[0] * e[3] - e[1] * e[2];
                lmin = tr / 2 - sqrt(fmax(tr * tr / 4 - det, 0));
            }
            ck_assert_msg(lmin >= 0.1 * (1 - 1e-6), "row %d: smallest eigenvalue %g < eps", b,
                          lmin);
        }
        nd_tensor *v = random_tensor(B, n, -3, 3, 32);
        nd_tensor *back = symoden_velocity(ctx, &model, q, symoden_momentum(ctx, &model, q, v));
        ck_assert_ptr_nonnull(back);
        for (int i = 0; i < B * n; i++)
            ck_assert_msg(fabs(back->data[i] - v->data[i]) <
                              1e3 * ND_REAL_EPS * fmax(1, fabs(v->data[i])),
                          "M^-1 (M v) = %g, v = %g", back->data[i], v->data[i]);
        symoden_destroy(&model);
    }
}
END_TEST

/* H(q(t), p(t)) along the learned flow: constant with u = 0, and with u != 0 its change is the
 * integral of the power dH/dp' g u (checked at the end against the trapezoid rule of the power at
 * fine output times) */
static void energy_along_flow(double u_value, double *drift, double *h_change, double *work)
{
    make(SYMODEN_HAMILTONIAN, 2, 1, 16, 40);
    const int T = 201;
    nd_tensor *y0 = random_tensor(4, 4, -1.5, 1.5, 41), *u = random_tensor(4, 1, 0, 0, 1);
    for (int b = 0; b < 4; b++) u->data[b] = (nd_real)(u_value * (b + 1) / 4);
    nd_tensor *t = nd_tensor_new(ctx, 1, (int[]){T});
    for (int i = 0; i < T; i++) t->data[i] = (nd_real)(2.0 * i / (T - 1));
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = 1e-10, o.solver.atol = 1e-10;
    symoden_ctrl ctrl = {&model, u};
    nd_tensor *ys = nd_odeint(ctx, symoden_dynamics, &ctrl, y0, t, NULL, 0, &o); // (T, 4, 4)
    ck_assert_msg(ys != NULL, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *flat = nd_reshape(ctx, ys, 2, (int[]){T * 4, 4});
    nd_tensor *q = nd_slice(ctx, flat, 1, 0, 2), *p = nd_slice(ctx, flat, 1, 2, 2);
    nd_tensor *H = symoden_energy(ctx, &model, q, p), *g = NULL;
    ck_assert_int_eq(symoden_parts(ctx, &model, q, NULL, NULL, &g), ND_OK);
    nd_tensor *qdot = symoden_velocity(ctx, &model, q, p); // dH/dp
    *drift = 0, *h_change = 0, *work = 0;
    for (int b = 0; b < 4; b++) {
        double w = 0;
        for (int i = 0; i < T; i++) {
            int r = i * 4 + b;
            *drift = fmax(*drift, fabs(H->data[r] - H->data[b]));
            double power =
                (qdot->data[2 * r] * g->data[2 * r] + qdot->data[2 * r + 1] * g->data[2 * r + 1]) *
                u->data[b];
            w += (i == 0 || i == T - 1 ? 0.5 : 1) * power * (2.0 / (T - 1));
        }
        *h_change = fmax(*h_change, fabs(H->data[(T - 1) * 4 + b] - H->data[b] - w));
        *work = fmax(*work, fabs(w));
    }
}

START_TEST(test_energy_conserved_with_no_control)
{
    DOUBLE_ONLY();
    double drift, mismatch, work;
    energy_along_flow(0, &drift, &mismatch, &work);
    ck_assert_msg(drift < 1e-8, "H drifts by %g over 2 s at rtol 1e-10", drift);
}
END_TEST

START_TEST(test_energy_changes_by_the_work_of_the_control)
{
    DOUBLE_ONLY();
    double drift, mismatch, work;
    energy_along_flow(1.5, &drift, &mismatch, &work);
    ck_assert_msg(work > 0.05, "the control did little work (%g): the test would not see it", work);
    ck_assert_msg(drift > 0.05, "H did not change (%g) under a control", drift);
    ck_assert_msg(mismatch < 1e-4 * work, "H(T) - H(0) - work = %g (work %g)", mismatch, work);
}
END_TEST

/* the loss's gradient by the adjoint (rms and seminorm) equals backprop's through the solver */
static void grads_of(symoden_kind kind, nd_grad_mode mode, nd_norm_kind norm, nd_real *out,
                     size_t *n_out)
{
    const int T = 5, B = 3, n = 2;
    nd_tensor *q = nd_tensor_new(ctx, 3, (int[]){T, B, n}),
              *v = nd_tensor_new(ctx, 3, (int[]){T, B, n});
    nd_rng rng = nd_rng_seed(50);
    nd_fill_uniform(q, &rng, -2, 2);
    nd_fill_uniform(v, &rng, -1, 1);
    nd_tensor *u = random_tensor(B, 1, -1, 1, 51), *t = nd_tensor_new(ctx, 1, (int[]){T});
    for (int i = 0; i < T; i++) t->data[i] = (nd_real)(0.05 * i);
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = o.solver.atol = 1e-11;
    o.grad = mode, o.adjoint.norm = norm;
    nd_zero_grad(model.params, model.plist.n);
    nd_tensor *L = symoden_loss(ctx, &model, q, v, u, t, &o, NULL);
    ck_assert_msg(L && nd_backward(ctx, L, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
    (void)kind;
    size_t k = 0;
    for (int i = 0; i < model.plist.n; i++)
        for (size_t e = 0; e < model.params[i]->size; e++) out[k++] = model.params[i]->grad[e];
    *n_out = k;
}

static void check_adjoint_vs_backprop(symoden_kind kind)
{
    DOUBLE_ONLY();
    make(kind, 2, 1, 8, 60);
    size_t np = nd_param_list_numel(&model.plist), n1, n2, n3;
    nd_real *bp = malloc(np * sizeof *bp), *adj = malloc(np * sizeof *adj),
            *semi = malloc(np * sizeof *semi);
    grads_of(kind, ND_GRAD_BACKPROP, ND_NORM_RMS, bp, &n1);
    grads_of(kind, ND_GRAD_ADJOINT, ND_NORM_RMS, adj, &n2);
    grads_of(kind, ND_GRAD_ADJOINT, ND_NORM_SEMINORM, semi, &n3);
    ck_assert(n1 == np && n2 == np && n3 == np);
    double scale = 0;
    for (size_t k = 0; k < np; k++) scale = fmax(scale, fabs(bp[k]));
    ck_assert(scale > 1e-3);
    for (size_t k = 0; k < np; k++) {
        ck_assert_msg(fabs(adj[k] - bp[k]) < 1e-7 * scale,
                      "grad %zu: adjoint %.12g, backprop %.12g", k, adj[k], bp[k]);
        ck_assert_msg(fabs(semi[k] - bp[k]) < 1e-7 * scale,
                      "grad %zu: adjoint (seminorm) %.12g, backprop %.12g", k, semi[k], bp[k]);
    }
    free(bp), free(adj), free(semi);
}

START_TEST(test_adjoint_matches_backprop_symoden)
{
    check_adjoint_vs_backprop(SYMODEN_HAMILTONIAN);
}
END_TEST

START_TEST(test_adjoint_matches_backprop_baseline)
{
    check_adjoint_vs_backprop(SYMODEN_BASELINE);
}
END_TEST

START_TEST(test_bad_sizes_are_errors)
{
    nd_rng rng = nd_rng_seed(1);
    ck_assert_int_eq(symoden_create(ctx, &model, SYMODEN_HAMILTONIAN, 3, 1, 8, 0.1, &rng),
                     ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "symoden_create", "n 3");
    symoden_destroy(&model);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(symoden_create(ctx, &model, SYMODEN_HAMILTONIAN, 1, 1, 8, 0, &rng),
                     ND_ERR_ARG);
    symoden_destroy(&model);
    nd_ctx_clear_error(ctx);
    make(SYMODEN_BASELINE, 1, 1, 4, 1);
    nd_tensor *q = random_tensor(2, 1, 0, 1, 2);
    ck_assert_ptr_null(symoden_energy(ctx, &model, q, q));
    expect_error(ND_ERR_ARG, "symoden_energy", "baseline");
}
END_TEST

static Suite *symoden_suite(void)
{
    Suite *s = suite_create("symoden");
    TCase *tc = tcase_create("model");
    tcase_add_checked_fixture(tc, ctx_setup, teardown);
    tcase_add_test(tc, test_field_gradcheck_one_angle);
    tcase_add_test(tc, test_field_gradcheck_two_angles);
    tcase_add_test(tc, test_field_is_the_symplectic_gradient_of_the_energy);
    tcase_add_test(tc, test_mass_matrix_is_positive_definite_and_inverted);
    tcase_add_test(tc, test_energy_conserved_with_no_control);
    tcase_add_test(tc, test_energy_changes_by_the_work_of_the_control);
    tcase_add_test(tc, test_adjoint_matches_backprop_symoden);
    tcase_add_test(tc, test_adjoint_matches_backprop_baseline);
    tcase_add_test(tc, test_bad_sizes_are_errors);
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(symoden_suite)

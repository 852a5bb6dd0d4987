/* SPDX-License-Identifier: MIT
 * tests/test_odernn.c: the ODE-RNN (nn/odernn.c) and the variational loss terms (nn/loss.c).
 * The ODE-RNN's gradient through a batch whose samples observe different times: backprop
 * against central differences, the adjoint against backprop; unobserved samples keep their
 * state through a jump (values at unobserved entries are never read; per-channel masks too);
 * the reverse run is the forward run of the time-reversed problem; the statistics count one solve
 * per interval; bad inputs are errors naming the shapes. The Gaussian log-likelihood and the KL to
 * N(0, I) against their closed forms, values and gradients.
 */
#include <math.h>

#include "gradcheck.h"
#include "test_main.h"

enum { T = 5, B = 3, D = 1, H = 4, U = 8 };

/* the union of the batch's times and who observed what: sample 0 sees t0 t2 t4, sample 1 sees
 * t1 t3, sample 2 sees every time; (T, B) */
static const double times[T] = {0.0, 0.3, 0.45, 1.0, 1.6};
static const double obs[T][B] = {{1, 0, 1}, {0, 1, 1}, {1, 0, 1}, {0, 1, 1}, {1, 0, 1}};

static nd_module *make_odernn(uint64_t seed, bool reverse, nd_ode_options ode)
{
    nd_rng rng = nd_rng_seed(seed);
    nd_module *func = nd_mlp_create(ctx, 3, (int[]){H, U, H}, ND_ACT_TANH, &rng);
    nd_module *cell = nd_gru_cell_create(ctx, 2 * D, H, true, &rng);
    nd_odernn_options o = {.ode = ode, .reverse = reverse};
    nd_module *m = nd_odernn_create(ctx, func, cell, &o);
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    return m;
}

/* fixed-step RK4, 4 steps per unit of time: smooth in every input, the same arithmetic per row */
static nd_ode_options rk4(void)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = ND_RK4;
    o.solver.step_size = 0.05;
    return o;
}

static nd_tensor *persistent(int ndim, const int *shape, uint64_t seed, bool grad)
{
    nd_tensor *t = nd_tensor_create(ctx, ndim, shape, grad);
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_normal(t, &rng, 0, 1);
    return t;
}

typedef struct {
    nd_module *m;
    nd_tensor *mask, *t;
} run_data;

static void make_batch(nd_tensor **x, nd_tensor **mask, nd_tensor **t)
{
    *x = persistent(3, (int[]){T, B, D}, 11, true);
    *mask = nd_tensor_create(ctx, 2, (int[]){T, B}, false);
    *t = nd_tensor_create(ctx, 1, (int[]){T}, false);
    for (int i = 0; i < T; i++) {
        (*t)->data[i] = (nd_real)times[i];
        for (int b = 0; b < B; b++) (*mask)->data[i * B + b] = (nd_real)obs[i][b];
    }
}

/* inputs: h0, x, then the module's parameters */
static nd_tensor *run_fn(nd_ctx *c, nd_tensor **in, void *user)
{
    run_data *r = user;
    return nd_odernn_run(c, r->m, in[1], r->mask, r->t, in[0]);
}

static int gather_inputs(nd_module *m, nd_tensor *h0, nd_tensor *x, nd_tensor **in)
{
    nd_param_list ps = {0};
    ck_assert_int_eq(nd_module_params(ctx, m, &ps), ND_OK);
    in[0] = h0, in[1] = x;
    for (int i = 0; i < ps.n; i++) in[2 + i] = ps.items[i].tensor;
    int n = 2 + ps.n;
    nd_param_list_destroy(&ps);
    return n;
}

START_TEST(test_gradient_backprop_matches_finite_differences)
{
    nd_ode_options o = rk4();
    o.grad = ND_GRAD_BACKPROP;
    nd_module *m = make_odernn(1, _i == 1, o);
    nd_tensor *x, *mask, *t, *h0 = persistent(2, (int[]){B, H}, 12, true), *in[16];
    make_batch(&x, &mask, &t);
    int n = gather_inputs(m, h0, x, in);
    ck_assert_int_eq(n, 10); /* h0, x, func's 4, the cell's 4 */
    run_data r = {m, mask, t};
    char report[256] = "";
    ck_assert_msg(gradcheck(ctx, run_fn, in, n, &r, gc_default_tol(), report),
                  "%s ODE-RNN gradcheck: %s", _i ? "reverse" : "forward", report);
    nd_tensor *owned[] = {x, mask, t, h0};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

/* dL/d(everything) for L = sum(w * hs), by the module's own grad mode */
static void grads_of(nd_module *m, nd_tensor *x, nd_tensor *mask, nd_tensor *t, nd_tensor *h0,
                     nd_tensor **in, int n, nd_tensor **out)
{
    nd_tensor *hs = nd_odernn_run(ctx, m, x, mask, t, h0);
    ck_assert_msg(hs, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *w = nd_tensor_new(ctx, 3, hs->shape);
    nd_rng rng = nd_rng_seed(99);
    nd_fill_normal(w, &rng, 0, 1);
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, hs, w));
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, in, n, out, 0), ND_OK);
}

START_TEST(test_gradient_adjoint_matches_backprop)
{
    DOUBLE_ONLY();
    nd_ode_options o = ND_ODE_DEFAULT; /* dopri5, tight */
    o.solver.rtol = 1e-10, o.solver.atol = 1e-12;
    nd_module *m = make_odernn(2, _i == 1, o);
    nd_tensor *x, *mask, *t, *h0 = persistent(2, (int[]){B, H}, 13, true), *in[16];
    make_batch(&x, &mask, &t);
    int n = gather_inputs(m, h0, x, in);
    nd_tensor *g_adj[16], *g_bp[16];
    grads_of(m, x, mask, t, h0, in, n, g_adj);
    nd_ode_stats st;
    int solves = 0;
    ck_assert_int_eq(nd_odernn_stats(ctx, m, &st, &solves), ND_OK);
    ck_assert_int_eq(solves, T - 1); /* one solve per interval of the union */
    ck_assert(st.forward.nfe > 0 && st.backward.nfe > 0);
    nd_odernn_options_of(ctx, m)->ode.grad = ND_GRAD_BACKPROP;
    grads_of(m, x, mask, t, h0, in, n, g_bp);
    for (int k = 0; k < n; k++)
        for (size_t j = 0; j < in[k]->size; j++) {
            double a = g_adj[k]->data[j], b = g_bp[k]->data[j];
            ck_assert_msg(fabs(a - b) <= 1e-7 + 1e-6 * fabs(b),
                          "input %d element %zu: adjoint %.12g, backprop %.12g", k, j, a, b);
        }
    nd_tensor *owned[] = {x, mask, t, h0};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

START_TEST(test_unobserved_values_are_never_read)
{
    nd_module *m = make_odernn(3, false, ND_ODE_DEFAULT);
    nd_tensor *x, *mask, *t, *h0 = persistent(2, (int[]){B, H}, 14, false);
    make_batch(&x, &mask, &t);
    nd_tensor *a = nd_odernn_run(ctx, m, x, mask, t, h0);
    for (int i = 0; i < T; i++)
        for (int b = 0; b < B; b++)
            if (!obs[i][b]) x->data[i * B + b] = (nd_real)1e3; /* garbage where unobserved */
    nd_tensor *c = nd_odernn_run(ctx, m, x, mask, t, h0);
    ck_assert_msg(a && c, "%s", nd_ctx_errmsg(ctx));
    ck_assert_mem_eq(a->data, c->data, a->size * sizeof(nd_real));
    nd_tensor *owned[] = {x, mask, t, h0};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

/* A sample with nothing observed follows the ODE alone: its rows equal those of a run where no
 * sample is observed, bit for bit; the other samples' rows are changed by their jumps. And at a
 * time where a sample is not observed, the jump leaves its state as the flow brought it. */
START_TEST(test_masked_jumps_leave_unobserved_samples_alone)
{
    nd_module *m = make_odernn(4, false, rk4());
    nd_tensor *x, *mask, *t, *h0 = persistent(2, (int[]){B, H}, 15, false);
    make_batch(&x, &mask, &t);
    for (int i = 0; i < T; i++) mask->data[i * B + 1] = 0; /* sample 1 never observed */
    nd_tensor *a = nd_odernn_run(ctx, m, x, mask, t, h0);
    nd_tensor *none = nd_zeros(ctx, 2, (int[]){T, B});
    nd_tensor *c = nd_odernn_run(ctx, m, x, none, t, h0);
    ck_assert_msg(a && c, "%s", nd_ctx_errmsg(ctx));
    for (int i = 0; i < T; i++) {
        ck_assert_mem_eq(a->data + (i * B + 1) * H, c->data + (i * B + 1) * H, H * sizeof(nd_real));
        ck_assert(
            memcmp(a->data + (i * B + 2) * H, c->data + (i * B + 2) * H, H * sizeof(nd_real)) != 0);
    }
    /* no solve before the first jump: an unobserved sample's first row is h0 itself */
    ck_assert_mem_eq(c->data, h0->data, (size_t)B * H * sizeof(nd_real));
    nd_tensor *owned[] = {x, mask, t, h0};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

/* Per-channel masks (T, B, Dc): values of unobserved channels are never read; a point whose
 * channels are all unobserved is no jump (a sample never observed follows the ODE alone, bit for
 * bit); a mask equal across a point's channels is the (T, B) mask. */
START_TEST(test_channel_masks)
{
    enum { Dc = 3 };
    nd_rng rng = nd_rng_seed(21);
    nd_module *func = nd_mlp_create(ctx, 3, (int[]){H, U, H}, ND_ACT_TANH, &rng);
    nd_module *cell = nd_gru_cell_create(ctx, 2 * Dc, H, true, &rng);
    nd_odernn_options o = {.ode = rk4(), .reverse = false};
    nd_module *m = nd_odernn_create(ctx, func, cell, &o);
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *x = persistent(3, (int[]){T, B, Dc}, 22, false);
    nd_tensor *h0 = persistent(2, (int[]){B, H}, 23, false);
    nd_tensor *t = nd_tensor_create(ctx, 1, (int[]){T}, false);
    nd_tensor *m3 = nd_tensor_create(ctx, 3, (int[]){T, B, Dc}, false);
    nd_tensor *m2 = nd_tensor_create(ctx, 2, (int[]){T, B}, false);
    nd_tensor *same3 = nd_tensor_create(ctx, 3, (int[]){T, B, Dc}, false);
    for (int i = 0; i < T; i++) {
        t->data[i] = (nd_real)times[i];
        for (int b = 0; b < B; b++) {
            m2->data[i * B + b] = (nd_real)obs[i][b];
            for (int c = 0; c < Dc; c++) {
                /* sample 0: channel c at times i with (i + c) even; sample 1 never; sample 2
                 * every channel where obs says */
                double v = b == 0 ? (i + c) % 2 == 0 : b == 1 ? 0 : obs[i][b];
                m3->data[(i * B + b) * Dc + c] = (nd_real)v;
                same3->data[(i * B + b) * Dc + c] = (nd_real)obs[i][b];
            }
        }
    }
    nd_tensor *a = nd_odernn_run(ctx, m, x, m3, t, h0);
    nd_tensor *none = nd_zeros(ctx, 2, (int[]){T, B});
    nd_tensor *alone = nd_odernn_run(ctx, m, x, none, t, h0);
    nd_tensor *full2 = nd_odernn_run(ctx, m, x, m2, t, h0);
    nd_tensor *full3 = nd_odernn_run(ctx, m, x, same3, t, h0);
    ck_assert_msg(a && alone && full2 && full3, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *a_copy = nd_copy(ctx, a);
    for (size_t k = 0; k < x->size; k++)
        if (m3->data[k] == 0) x->data[k] = (nd_real)1e3; /* garbage where unobserved */
    nd_tensor *g = nd_odernn_run(ctx, m, x, m3, t, h0);
    ck_assert_msg(g && a_copy, "%s", nd_ctx_errmsg(ctx));
    ck_assert_mem_eq(g->data, a_copy->data, a_copy->size * sizeof(nd_real));
    ck_assert_mem_eq(full3->data, full2->data, full2->size * sizeof(nd_real));
    for (int i = 0; i < T; i++) {
        ck_assert_mem_eq(a->data + (i * B + 1) * H, alone->data + (i * B + 1) * H,
                         H * sizeof(nd_real));
        /* sample 0 jumps at every time (some channel is observed), so it leaves the ODE's path */
        if (i > 0)
            ck_assert(memcmp(a->data + (size_t)i * B * H, alone->data + (size_t)i * B * H,
                             H * sizeof(nd_real)) != 0);
    }
    nd_tensor *owned[] = {x, h0, t, m3, m2, same3};
    for (int i = 0; i < 6; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

/* reverse over t with func equals forward over -t reversed with -func (the last Linear negated) */
START_TEST(test_reverse_is_the_time_reversed_forward_run)
{
    nd_module *r = make_odernn(5, true, rk4()), *f = make_odernn(5, false, rk4());
    nd_param_list ps = {0};
    ck_assert_int_eq(nd_module_params(ctx, f, &ps), ND_OK);
    ck_assert_str_eq(ps.items[2].name, "func.2.weight");
    for (int k = 2; k < 4; k++)
        for (size_t j = 0; j < ps.items[k].tensor->size; j++)
            ps.items[k].tensor->data[j] = -ps.items[k].tensor->data[j];
    nd_param_list_destroy(&ps);
    nd_tensor *x, *mask, *t, *h0 = persistent(2, (int[]){B, H}, 16, false);
    make_batch(&x, &mask, &t);
    nd_tensor *xr = nd_tensor_new(ctx, 3, x->shape), *mr = nd_tensor_new(ctx, 2, mask->shape);
    nd_tensor *tr = nd_tensor_new(ctx, 1, t->shape);
    for (int i = 0; i < T; i++) {
        tr->data[i] = -t->data[T - 1 - i];
        memcpy(xr->data + i * B, x->data + (T - 1 - i) * B, B * sizeof(nd_real));
        memcpy(mr->data + i * B, mask->data + (T - 1 - i) * B, B * sizeof(nd_real));
    }
    nd_tensor *a = nd_odernn_run(ctx, r, x, mask, t, h0);
    nd_tensor *c = nd_odernn_run(ctx, f, xr, mr, tr, h0);
    ck_assert_msg(a && c, "%s", nd_ctx_errmsg(ctx));
    for (int i = 0; i < T; i++)
        for (int j = 0; j < B * H; j++) {
            double u = a->data[i * B * H + j], v = c->data[(T - 1 - i) * B * H + j];
            ck_assert_msg(fabs(u - v) <= 100 * ND_REAL_EPS * (1 + fabs(v)),
                          "row %d element %d: reverse %.17g, mirrored forward %.17g", i, j, u, v);
        }
    nd_tensor *owned[] = {x, mask, t, h0};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(r), nd_module_destroy(f);
}
END_TEST

START_TEST(test_bad_inputs_are_errors)
{
    nd_module *m = make_odernn(6, false, ND_ODE_DEFAULT);
    nd_tensor *x, *mask, *t;
    make_batch(&x, &mask, &t);
    nd_tensor *bad_x = nd_zeros(ctx, 3, (int[]){T, B, 2});
    ck_assert_ptr_null(nd_odernn_run(ctx, m, bad_x, mask, t, NULL));
    expect_error(ND_ERR_SHAPE, "nd_odernn_run", "(5, 3, 2)", "D = 1");
    nd_ctx_clear_error(ctx);
    t->data[2] = t->data[1];
    ck_assert_ptr_null(nd_odernn_run(ctx, m, x, mask, t, NULL));
    expect_error(ND_ERR_ARG, "strictly increasing", "t[2]");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_module_forward(ctx, m, x));
    expect_error(ND_ERR_ARG, "nd_odernn_run");
    nd_ctx_clear_error(ctx);
    nd_module *lin = nd_linear_create(ctx, 2, 2, true, &(nd_rng){0});
    ck_assert_ptr_null(nd_odernn_run(ctx, lin, x, mask, t, NULL));
    expect_error(ND_ERR_ARG, "not an ODERNN", "Linear");
    nd_ctx_clear_error(ctx);
    nd_rng rng = nd_rng_seed(1);
    nd_module *odd = nd_odernn_create(ctx, nd_mlp_create(ctx, 2, (int[]){H, H}, ND_ACT_TANH, &rng),
                                      nd_gru_cell_create(ctx, 3, H, true, &rng), NULL);
    ck_assert_ptr_null(odd);
    expect_error(ND_ERR_ARG, "nd_odernn_create", "input_size 3");
    nd_module_destroy(lin);
    nd_tensor *owned[] = {x, mask, t};
    for (int i = 0; i < 3; i++) nd_tensor_destroy(owned[i]);
    nd_module_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * The variational terms against closed forms.
 */
START_TEST(test_gaussian_log_likelihood_closed_form)
{
    const nd_real mv[6] = {0.1, -0.4, 1.2, 0.0, 2.0, -1.0}, tv[6] = {0.3, -0.1, 1.0, 0.5, 2.5, 0};
    const nd_real km[6] = {1, 0, 1, 1, 0, 1};
    const double sd = 0.3;
    nd_tensor *mean = nd_tensor_from(ctx, 2, (int[]){2, 3}, mv);
    nd_tensor *target = nd_tensor_from(ctx, 2, (int[]){2, 3}, tv);
    nd_tensor *mask = nd_tensor_from(ctx, 2, (int[]){2, 3}, km);
    mean->requires_grad = true;
    double want = 0, count = 0;
    for (int i = 0; i < 6; i++) {
        double z = (tv[i] - mv[i]) / sd;
        want += km[i] * (-0.5 * z * z - log(sd) - 0.5 * log(2 * M_PI));
        count += km[i];
    }
    nd_tensor *s = nd_gaussian_log_likelihood(ctx, mean, target, mask, sd, ND_REDUCE_SUM);
    nd_tensor *mn = nd_gaussian_log_likelihood(ctx, mean, target, mask, sd, ND_REDUCE_MEAN);
    nd_tensor *all = nd_gaussian_log_likelihood(ctx, mean, target, NULL, sd, ND_REDUCE_SUM);
    ck_assert_msg(s && mn && all, "%s", nd_ctx_errmsg(ctx));
    ck_assert_double_eq_tol(nd_item(s), want, 1e3 * ND_REAL_EPS * fabs(want));
    ck_assert_double_eq_tol(nd_item(mn), want / count, 1e3 * ND_REAL_EPS * fabs(want));
    ck_assert(nd_item(all) < nd_item(s)); /* two more (negative) terms */
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &s, NULL, 1, &mean, 1, &g, 0), ND_OK);
    for (int i = 0; i < 6; i++) /* d/dmean = mask (target - mean) / sd^2 */
        ck_assert_double_eq_tol(g->data[i], km[i] * (tv[i] - mv[i]) / (sd * sd), 1e-4);
    nd_tensor *none = nd_zeros(ctx, 2, (int[]){2, 3});
    ck_assert_ptr_null(nd_gaussian_log_likelihood(ctx, mean, target, none, sd, ND_REDUCE_MEAN));
    expect_error(ND_ERR_ARG, "nd_gaussian_log_likelihood", "no entry");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_gaussian_log_likelihood(ctx, mean, target, NULL, 0, ND_REDUCE_SUM));
    expect_error(ND_ERR_ARG, "std 0");
}
END_TEST

START_TEST(test_kl_std_normal_closed_form)
{
    const nd_real mv[4] = {0.5, -1.0, 0.0, 2.0}, lv[4] = {0.0, -0.7, 1.3, 0.2};
    nd_tensor *mu = nd_tensor_from(ctx, 2, (int[]){2, 2}, mv);
    nd_tensor *logvar = nd_tensor_from(ctx, 2, (int[]){2, 2}, lv);
    mu->requires_grad = logvar->requires_grad = true;
    double want = 0; /* KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1 / 2 */
    for (int i = 0; i < 4; i++) {
        double s2 = exp(lv[i]);
        want += -0.5 * log(s2) + 0.5 * (s2 + mv[i] * mv[i]) - 0.5;
    }
    nd_tensor *s = nd_kl_std_normal(ctx, mu, logvar, ND_REDUCE_SUM);
    nd_tensor *mn = nd_kl_std_normal(ctx, mu, logvar, ND_REDUCE_MEAN);
    ck_assert_msg(s && mn, "%s", nd_ctx_errmsg(ctx));
    ck_assert_double_eq_tol(nd_item(s), want, 1e3 * ND_REAL_EPS * want);
    ck_assert_double_eq_tol(nd_item(mn), want / 2, 1e3 * ND_REAL_EPS * want);
    nd_tensor *g[2];
    ck_assert_int_eq(nd_grad(ctx, &s, NULL, 1, (nd_tensor *[]){mu, logvar}, 2, g, 0), ND_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq_tol(g[0]->data[i], mv[i], 1e-5);
        ck_assert_double_eq_tol(g[1]->data[i], 0.5 * (exp(lv[i]) - 1), 1e-5);
    }
    /* the prior itself: KL 0 */
    nd_tensor *z = nd_zeros(ctx, 2, (int[]){3, 2});
    ck_assert_double_eq(nd_item(nd_kl_std_normal(ctx, z, z, ND_REDUCE_SUM)), 0);
}
END_TEST

static Suite *odernn_suite(void)
{
    Suite *s = suite_create("odernn");
    TCase *tc = tcase_create("odernn");
    tcase_add_checked_fixture(tc, ctx_setup, ctx_teardown);
    tcase_add_loop_test(tc, test_gradient_backprop_matches_finite_differences, 0, 2);
    tcase_add_loop_test(tc, test_gradient_adjoint_matches_backprop, 0, 2);
    tcase_add_test(tc, test_unobserved_values_are_never_read);
    tcase_add_test(tc, test_masked_jumps_leave_unobserved_samples_alone);
    tcase_add_test(tc, test_channel_masks);
    tcase_add_test(tc, test_reverse_is_the_time_reversed_forward_run);
    tcase_add_test(tc, test_bad_inputs_are_errors);
    tcase_add_test(tc, test_gaussian_log_likelihood_closed_form);
    tcase_add_test(tc, test_kl_std_normal_closed_form);
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(odernn_suite)

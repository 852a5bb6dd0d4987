/* SPDX-License-Identifier: MIT
 * tests/test_odeblock.c: the ODE block module. It composes inside a Sequential with other
 * layers, its dynamics' parameters are listed under "func." and get gradients by either gradient
 * mode (checked against central differences), its statistics are filled after forward and
 * backward, and bad construction or input is reported.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test_main.h"

static nd_rng rng;

static void rng_setup(void)
{
    rng = nd_rng_seed(3);
}

/* Linear(2, 4) -> ODEBlock(MLP [x, t] 5 -> 8 -> 4) -> Linear(4, 1) */
static nd_module *make_model(const nd_ode_options *o)
{
    nd_module *dyn = nd_mlp_create(ctx, 3, (int[]){5, 8, 4}, ND_ACT_TANH, &rng);
    nd_module *block = nd_odeblock_create(ctx, dyn, ND_TIME_CONCAT, 0.0, 0.5, o);
    return nd_sequential_create(ctx, 3,
                                (nd_module *[]){nd_linear_create(ctx, 2, 4, true, &rng), block,
                                                nd_linear_create(ctx, 4, 1, true, &rng)});
}

START_TEST(test_block_in_sequential)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.adjoint.norm = ND_NORM_SEMINORM;
    nd_module *model = make_model(&o);
    ck_assert_msg(model, "%s", nd_ctx_errmsg(ctx));
    nd_param_list params = {0};
    ck_assert_int_eq(nd_module_params(ctx, model, &params), ND_OK);
    ck_assert_ptr_nonnull(nd_param_list_find(&params, "1.func.0.weight"));
    ck_assert_ptr_nonnull(nd_param_list_find(&params, "1.func.2.bias"));
    ck_assert_int_eq(params.n, 8);

    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){6, 2});
    nd_fill_normal(x, &rng, 0, 1);
    nd_tensor *y = nd_module_forward(ctx, model, x);
    ck_assert_msg(y, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(y->shape[0], 6);
    ck_assert_int_eq(y->shape[1], 1);
    nd_module_zero_grad(model);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, y), 0), ND_OK);
    for (int i = 0; i < params.n; i++) {
        double g = 0;
        for (size_t k = 0; k < params.items[i].tensor->size; k++)
            g += fabs(params.items[i].tensor->grad[k]);
        ck_assert_msg(g > 0, "%s got no gradient", params.items[i].name);
    }
    const nd_ode_stats *st = nd_odeblock_stats(ctx, model->children[1].module);
    ck_assert_int_gt(st->forward.nfe, 0);
    ck_assert_int_gt(st->backward.nfe, 0);
    nd_param_list_destroy(&params);
    nd_module_destroy(model);
}
END_TEST

static nd_tensor *model_fn(nd_ctx *c, nd_tensor **in, void *u)
{
    return nd_module_forward(c, u, in[0]);
}

/* backprop through a fixed-step solve is exact, so the whole model passes gradcheck; the adjoint
 * gives the same gradients to solver tolerance */
START_TEST(test_block_gradients)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.grad = ND_GRAD_BACKPROP;
    o.solver.method = ND_RK4;
    o.solver.step_size = 0.125;
    nd_module *model = make_model(&o);
    nd_param_list params = {0};
    ck_assert_int_eq(nd_module_params(ctx, model, &params), ND_OK);
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){3, 2});
    nd_fill_normal(x, &rng, 0, 1);
    x->requires_grad = true;
    nd_tensor *in[9] = {x};
    for (int i = 0; i < params.n; i++) in[1 + i] = params.items[i].tensor;
    char report[256] = "";
    ck_assert_msg(gradcheck(ctx, model_fn, in, 1 + params.n, model, gc_default_tol(), report), "%s",
                  report);

#ifndef ND_REAL_FLOAT
    /* adaptive, tight: adjoint (both norms) against backprop */
    nd_ode_options *bo = nd_odeblock_options(ctx, model->children[1].module);
    *bo = ND_ODE_DEFAULT;
    bo->solver.rtol = bo->adjoint.rtol = 1e-10;
    bo->solver.atol = bo->adjoint.atol = 1e-12;
    double g[3][64];
    for (int mode = 0; mode < 3; mode++) {
        bo->grad = mode == 0 ? ND_GRAD_BACKPROP : ND_GRAD_ADJOINT;
        bo->adjoint.norm = mode == 2 ? ND_NORM_SEMINORM : ND_NORM_RMS;
        nd_module_zero_grad(model);
        ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_module_forward(ctx, model, x)), 0), ND_OK);
        int k = 0;
        for (int i = 0; i < params.n; i++)
            for (size_t e = 0; e < params.items[i].tensor->size && k < 64; e++)
                g[mode][k++] = params.items[i].tensor->grad[e];
    }
    for (int k = 0; k < 64; k++)
        for (int mode = 1; mode < 3; mode++)
            ck_assert_msg(fabs(g[mode][k] - g[0][k]) < 1e-7 * fmax(1, fabs(g[0][k])),
                          "grad %d mode %d: %.12g vs backprop %.12g", k, mode, g[mode][k], g[0][k]);
#endif
    nd_param_list_destroy(&params);
    nd_module_destroy(model);
}
END_TEST

START_TEST(test_block_errors)
{
    nd_module *dyn = nd_mlp_create(ctx, 2, (int[]){2, 2}, ND_ACT_NONE, &rng);
    ck_assert_ptr_null(nd_odeblock_create(ctx, dyn, ND_TIME_NONE, 1.0, 1.0, NULL)); /* frees dyn */
    ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "t1 != t0"));
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_odeblock_create(ctx, NULL, ND_TIME_NONE, 0, 1, NULL));

    dyn = nd_mlp_create(ctx, 2, (int[]){2, 2}, ND_ACT_NONE, &rng);
    nd_module *block = nd_odeblock_create(ctx, dyn, ND_TIME_CONCAT, 0, 1, NULL);
    ck_assert_ptr_nonnull(block);
    ck_assert_ptr_null(nd_module_forward(ctx, block, nd_zeros(ctx, 1, (int[]){2})));
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "nd_odeblock"));
    nd_ctx_clear_error(ctx);
    /* the dynamics' own shape error surfaces with its layer's name */
    ck_assert_ptr_null(nd_module_forward(ctx, block, nd_zeros(ctx, 2, (int[]){4, 3})));
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "nd_linear"));
    nd_ctx_clear_error(ctx);
    /* zeros before a successful solve */
    ck_assert_int_eq(nd_odeblock_stats(ctx, block)->forward.nfe, 0);

    /* the block functions check the module's kind (they used to cast any module) */
    nd_module *lin = nd_mlp_create(ctx, 2, (int[]){2, 2}, ND_ACT_NONE, &rng);
    ck_assert_ptr_null(nd_odeblock_options(ctx, lin));
    ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_ARG);
    ck_assert_msg(strstr(nd_ctx_errmsg(ctx), "nd_odeblock_options: module is a Sequential, not an "
                                             "ODEBlock"),
                  "%s", nd_ctx_errmsg(ctx));
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_odeblock_stats(ctx, lin));
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "nd_odeblock_stats"));
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_odeblock_trajectory(ctx, lin, nd_zeros(ctx, 2, (int[]){1, 2}),
                                              nd_zeros(ctx, 1, (int[]){2})));
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "nd_odeblock_trajectory"));
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_odeblock_stats(ctx, NULL));
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "module is NULL"));
    nd_module_destroy(lin);
    nd_module_destroy(block);
}
END_TEST

Suite *odeblock_suite(void)
{
    Suite *s = suite_create("odeblock");
    TCase *fwd = tcase_create("forward"), *bwd = tcase_create("backward"),
          *err = tcase_create("errors");
    TCase *all[3] = {fwd, bwd, err};
    for (int i = 0; i < 3; i++) {
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        tcase_add_checked_fixture(all[i], rng_setup, NULL);
        tcase_set_timeout(all[i], 300);
        suite_add_tcase(s, all[i]);
    }
    tcase_add_test(fwd, test_block_in_sequential);
    tcase_add_test(bwd, test_block_gradients);
    tcase_add_test(err, test_block_errors);
    return s;
}

ND_TEST_MAIN(odeblock_suite)

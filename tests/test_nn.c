/* SPDX-License-Identifier: MIT
 * tests/test_nn.c: the nn module's Check suite. Forward and backward values of the layers and
 * losses against PyTorch (tests/reference-nn/nn.json, written once by make_reference.py), first-
 * and second-order gradchecks of every layer and of the im2col / col2im ops, optimizer steps,
 * clipping and LR schedules against PyTorch, init bounds, parameter naming, train / eval, a user
 * module inside a Sequential, and the error messages.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test_main.h"

#include "test_reference.h"

static void ref_load(void)
{
    ref_load_file("reference-nn/nn.json");
}

/* ---------------------------------------------------------------------------------------------
 * forward (and backward values) against PyTorch
 */
typedef nd_tensor *(*layer_fn)(nd_tensor **in);

static nd_tensor *conv_s2p1(nd_tensor **in)
{
    return nd_conv2d(ctx, in[0], in[1], in[2], 2, 1);
}
static nd_tensor *conv_s1p0(nd_tensor **in)
{
    return nd_conv2d(ctx, in[0], in[1], in[2], 1, 0);
}
static nd_tensor *maxpool_k3s2(nd_tensor **in)
{
    return nd_max_pool2d(ctx, in[0], 3, 2);
}
static nd_tensor *avgpool_k2s2(nd_tensor **in)
{
    return nd_avg_pool2d(ctx, in[0], 2, 2);
}
static nd_tensor *gap(nd_tensor **in)
{
    return nd_global_avg_pool2d(ctx, in[0]);
}
static nd_tensor *groupnorm(nd_tensor **in)
{
    return nd_group_norm(ctx, in[0], 2, in[1], in[2], 1e-5);
}

static const struct {
    const char *name;
    layer_fn fn;
    int n_in;
    int shapes[3][4]; /* 4-D, 1-D given as {n, 0, 0, 0} */
} layer_cases[] = {
    {"conv_s2p1", conv_s2p1, 3, {{2, 3, 5, 6}, {4, 3, 3, 3}, {4}}},
    {"conv_s1p0", conv_s1p0, 3, {{1, 2, 4, 5}, {3, 2, 2, 3}, {3}}},
    {"maxpool_k3s2", maxpool_k3s2, 1, {{2, 2, 5, 6}}},
    {"avgpool_k2s2", avgpool_k2s2, 1, {{2, 3, 4, 5}}},
    {"gap", gap, 1, {{2, 3, 3, 4}}},
    {"groupnorm", groupnorm, 3, {{2, 4, 3, 3}, {4}, {4}}},
};

/* y = f(inputs) and the gradients of sum(r * y) match PyTorch's */
START_TEST(test_layer_forward_backward_match_torch)
{
    nd_tensor *in[3];
    char name[64], what[64];
    for (int i = 0; i < layer_cases[_i].n_in; i++) {
        const int *s = layer_cases[_i].shapes[i];
        snprintf(name, sizeof name, "%s.in%d", layer_cases[_i].name, i);
        in[i] = ref_tensor(name, s[1] ? 4 : 1, s, true);
    }
    nd_tensor *y = layer_cases[_i].fn(in);
    ck_assert_msg(y, "%s", nd_ctx_errmsg(ctx));
    snprintf(name, sizeof name, "%s.y", layer_cases[_i].name);
    snprintf(what, sizeof what, "%s forward", layer_cases[_i].name);
    expect_ref(what, y->data, y->size, name);
    snprintf(name, sizeof name, "%s.r", layer_cases[_i].name);
    nd_tensor *r = ref_tensor(name, y->ndim, y->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, r)), 0), ND_OK);
    for (int i = 0; i < layer_cases[_i].n_in; i++) {
        snprintf(name, sizeof name, "%s.grad%d", layer_cases[_i].name, i);
        snprintf(what, sizeof what, "%s d/d input %d", layer_cases[_i].name, i);
        expect_ref(what, in[i]->grad, in[i]->size, name);
    }
}
END_TEST

/* Two training steps move the running statistics as PyTorch's; evaluation then uses them */
START_TEST(test_batch_norm2d_train_then_eval_matches_torch)
{
    nd_module *bn = nd_batch_norm2d_create(ctx, 3, 1e-5, 0.1);
    ck_assert_ptr_nonnull(bn);
    nd_param_list state = {0};
    ck_assert_int_eq(nd_module_state(ctx, bn, &state), ND_OK);
    nd_tensor *w = nd_param_list_find(&state, "weight"), *b = nd_param_list_find(&state, "bias");
    nd_tensor *rm = nd_param_list_find(&state, "running_mean");
    nd_tensor *rv = nd_param_list_find(&state, "running_var");
    set_from_ref(w, "bn2d.weight");
    set_from_ref(b, "bn2d.bias");
    int xs[4] = {4, 3, 2, 3};
    for (int step = 0; step < 2; step++) {
        char tag[64], name[96];
        snprintf(tag, sizeof tag, "bn2d.train%d", step);
        snprintf(name, sizeof name, "%s.x", tag);
        nd_tensor *x = ref_tensor(name, 4, xs, true);
        nd_module_zero_grad(bn);
        nd_tensor *y = nd_module_forward(ctx, bn, x);
        ck_assert_msg(y, "%s", nd_ctx_errmsg(ctx));
        snprintf(name, sizeof name, "%s.y", tag);
        expect_ref("bn2d train y", y->data, y->size, name);
        snprintf(name, sizeof name, "%s.r", tag);
        nd_tensor *r = ref_tensor(name, 4, xs, false);
        ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, r)), 0), ND_OK);
        snprintf(name, sizeof name, "%s.dx", tag);
        expect_ref("bn2d train dx", x->grad, x->size, name);
        snprintf(name, sizeof name, "%s.dweight", tag);
        expect_ref("bn2d dweight", w->grad, 3, name);
        snprintf(name, sizeof name, "%s.dbias", tag);
        expect_ref("bn2d dbias", b->grad, 3, name);
        snprintf(name, sizeof name, "%s.running_mean", tag);
        expect_ref("bn2d running_mean", rm->data, 3, name);
        snprintf(name, sizeof name, "%s.running_var", tag);
        expect_ref("bn2d running_var", rv->data, 3, name);
        nd_ctx_reset(ctx);
    }
    nd_module_eval(bn);
    ck_assert(!bn->training);
    nd_real saved[3];
    memcpy(saved, rm->data, sizeof saved);
    nd_tensor *x = ref_tensor("bn2d.eval.x", 4, (int[]){2, 3, 2, 3}, true);
    nd_tensor *y = nd_module_forward(ctx, bn, x);
    ck_assert_ptr_nonnull(y);
    expect_ref("bn2d eval y", y->data, y->size, "bn2d.eval.y");
    nd_tensor *r = ref_tensor("bn2d.eval.r", 4, y->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, r)), 0), ND_OK);
    expect_ref("bn2d eval dx", x->grad, x->size, "bn2d.eval.dx");
    ck_assert(memcmp(saved, rm->data, sizeof saved) == 0); /* eval leaves the statistics alone */
    nd_param_list_destroy(&state);
    nd_module_destroy(bn);
}
END_TEST

START_TEST(test_batch_norm1d_matches_torch)
{
    nd_module *bn = nd_batch_norm1d_create(ctx, 3, 1e-3, 0.2);
    nd_param_list state = {0};
    ck_assert_int_eq(nd_module_state(ctx, bn, &state), ND_OK);
    nd_tensor *x = ref_tensor("bn1d.x", 2, (int[]){5, 3}, true);
    nd_tensor *y = nd_module_forward(ctx, bn, x);
    ck_assert_ptr_nonnull(y);
    expect_ref("bn1d y", y->data, y->size, "bn1d.y");
    nd_tensor *r = ref_tensor("bn1d.r", 2, y->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, r)), 0), ND_OK);
    expect_ref("bn1d dx", x->grad, x->size, "bn1d.dx");
    expect_ref("bn1d running_mean", nd_param_list_find(&state, "running_mean")->data, 3,
               "bn1d.running_mean");
    expect_ref("bn1d running_var", nd_param_list_find(&state, "running_var")->data, 3,
               "bn1d.running_var");
    nd_param_list_destroy(&state);
    nd_module_destroy(bn);
}
END_TEST

START_TEST(test_cross_entropy_matches_torch)
{
    size_t n;
    double *lab = ref("ce.labels", &n);
    int labels[5];
    ck_assert_uint_eq(n, 5);
    for (int i = 0; i < 5; i++) labels[i] = (int)lab[i];
    const char *names[2] = {"mean", "sum"};
    for (int k = 0; k < 2; k++) {
        nd_tensor *logits = ref_tensor("ce.logits", 2, (int[]){5, 4}, true);
        nd_tensor *loss = nd_cross_entropy(ctx, logits, labels, k ? ND_REDUCE_SUM : ND_REDUCE_MEAN);
        ck_assert_ptr_nonnull(loss);
        ck_assert_int_eq(loss->ndim, 0);
        char name[64];
        snprintf(name, sizeof name, "ce.%s.loss", names[k]);
        expect_ref("cross-entropy", loss->data, 1, name);
        ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
        snprintf(name, sizeof name, "ce.%s.dlogits", names[k]);
        expect_ref("cross-entropy dlogits", logits->grad, logits->size, name);
    }
}
END_TEST

START_TEST(test_mse_l1_values_and_accuracy)
{
    nd_tensor *p = nd_tensor_from(ctx, 2, (int[]){2, 2}, (nd_real[]){1, 2, 3, 4});
    nd_tensor *t = nd_tensor_from(ctx, 2, (int[]){2, 2}, (nd_real[]){0, 4, 3, 5});
    ck_assert_double_eq_tol(nd_item(nd_mse_loss(ctx, p, t, ND_REDUCE_MEAN)), 6.0 / 4, 1e-6);
    ck_assert_double_eq_tol(nd_item(nd_mse_loss(ctx, p, t, ND_REDUCE_SUM)), 6.0, 1e-6);
    ck_assert_double_eq_tol(nd_item(nd_l1_loss(ctx, p, t, ND_REDUCE_MEAN)), 4.0 / 4, 1e-6);
    ck_assert_double_eq_tol(nd_item(nd_l1_loss(ctx, p, t, ND_REDUCE_SUM)), 4.0, 1e-6);
    nd_tensor *logits =
        nd_tensor_from(ctx, 2, (int[]){3, 3}, (nd_real[]){0, 1, 0, 5, 2, 5, -1, -2, -3});
    ck_assert_double_eq_tol(nd_accuracy(logits, (int[]){1, 0, 2}), 2.0 / 3, 1e-12);
    ck_assert_double_eq(nd_accuracy(p, NULL), -1);
}
END_TEST

START_TEST(test_linear_forward_values)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *lin = nd_linear_create(ctx, 3, 2, true, &rng);
    ck_assert_ptr_nonnull(lin);
    nd_tensor *w = lin->params[0].tensor, *b = lin->params[1].tensor;
    memcpy(w->data, (nd_real[]){1, 2, 3, -1, 0, 1}, 6 * sizeof(nd_real));
    memcpy(b->data, (nd_real[]){0.5, -0.5}, 2 * sizeof(nd_real));
    nd_tensor *x = nd_tensor_from(ctx, 2, (int[]){2, 3}, (nd_real[]){1, 1, 1, 0, 1, 2});
    nd_tensor *y = nd_module_forward(ctx, lin, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 2);
    nd_real want[4] = {6.5, -0.5, 8.5, 1.5};
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y->data[i], want[i], 1e-6);
    nd_module_destroy(lin);
}
END_TEST

/* PyTorch's default: weight and bias in U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
START_TEST(test_linear_init_bounds_and_moments)
{
    nd_rng rng = nd_rng_seed(7);
    int in = 400, out = 300;
    nd_module *lin = nd_linear_create(ctx, in, out, true, &rng);
    nd_tensor *w = lin->params[0].tensor, *b = lin->params[1].tensor;
    double bound = 1 / sqrt((double)in), mean = 0, sq = 0, maxabs = 0;
    for (size_t i = 0; i < w->size; i++) {
        double v = w->data[i];
        ck_assert(fabs(v) <= bound);
        mean += v, sq += v * v, maxabs = fmax(maxabs, fabs(v));
    }
    mean /= (double)w->size, sq /= (double)w->size;
    double var_want = bound * bound / 3; /* variance of U(-b, b) */
    ck_assert_double_le(fabs(mean), 5 * sqrt(var_want / (double)w->size));
    ck_assert_double_le(fabs(sq - var_want), 0.02 * var_want);
    ck_assert_double_ge(maxabs, 0.99 * bound);
    for (size_t i = 0; i < b->size; i++) ck_assert(fabs(b->data[i]) <= bound);
    /* reproducible from the seed */
    nd_rng rng2 = nd_rng_seed(7);
    nd_module *again = nd_linear_create(ctx, in, out, true, &rng2);
    ck_assert(memcmp(w->data, again->params[0].tensor->data, w->size * sizeof(nd_real)) == 0);
    nd_module_destroy(again);
    nd_module_destroy(lin);
    /* Conv2d: fan_in = in_ch * k * k */
    nd_module *conv = nd_conv2d_create(ctx, 4, 8, 3, 1, 1, true, &rng);
    bound = 1 / sqrt(36.0);
    for (size_t i = 0; i < conv->params[0].tensor->size; i++)
        ck_assert(fabs(conv->params[0].tensor->data[i]) <= bound);
    nd_module_destroy(conv);
}
END_TEST

START_TEST(test_init_xavier_and_kaiming_bounds)
{
    nd_rng rng = nd_rng_seed(3);
    nd_tensor *t = nd_tensor_create(ctx, 2, (int[]){20, 30}, false);
    int fi, fo;
    nd_init_fans(t, &fi, &fo);
    ck_assert_int_eq(fi, 30);
    ck_assert_int_eq(fo, 20);
    nd_init_xavier_uniform(t, &rng, 1.0);
    double b = sqrt(6.0 / 50);
    for (size_t i = 0; i < t->size; i++) ck_assert(fabs(t->data[i]) <= b);
    nd_init_kaiming_uniform(t, &rng, 0);
    b = sqrt(2.0) * sqrt(3.0 / 30);
    for (size_t i = 0; i < t->size; i++) ck_assert(fabs(t->data[i]) <= b);
    nd_tensor_destroy(t);
}
END_TEST

START_TEST(test_mlp_param_names_follow_pytorch)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *mlp = nd_mlp_create(ctx, 4, (int[]){2, 5, 4, 1}, ND_ACT_TANH, &rng);
    ck_assert_ptr_nonnull(mlp);
    ck_assert_str_eq(mlp->kind, "Sequential");
    ck_assert_int_eq(mlp->n_children, 5);
    ck_assert_str_eq(mlp->children[1].module->kind, "Tanh");
    nd_param_list l = {0};
    ck_assert_int_eq(nd_module_params(ctx, mlp, &l), ND_OK);
    const char *want[] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"};
    ck_assert_int_eq(l.n, 6);
    for (int i = 0; i < 6; i++) ck_assert_str_eq(l.items[i].name, want[i]);
    ck_assert_int_eq(l.items[2].tensor->shape[0], 4);
    ck_assert_int_eq(l.items[2].tensor->shape[1], 5);
    ck_assert_uint_eq(nd_param_list_numel(&l), 2 * 5 + 5 + 5 * 4 + 4 + 4 + 1);
    nd_tensor *x = nd_full(ctx, 2, (int[]){3, 2}, 0.5);
    nd_tensor *y = nd_module_forward(ctx, mlp, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[0], 3);
    ck_assert_int_eq(y->shape[1], 1);
    nd_param_list_destroy(&l);
    nd_module_destroy(mlp);
}
END_TEST

/* A state_dict lists each module's params, then its buffers, then its children */
START_TEST(test_state_lists_buffers_in_state_dict_order)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *net = nd_sequential_create(
        ctx, 6,
        (nd_module *[]){nd_conv2d_create(ctx, 1, 4, 3, 1, 1, true, &rng),
                        nd_batch_norm2d_create(ctx, 4, 1e-5, 0.1),
                        nd_activation_create(ctx, ND_ACT_RELU), nd_max_pool2d_create(ctx, 2, 0),
                        nd_flatten_create(ctx), nd_linear_create(ctx, 4 * 2 * 2, 3, false, &rng)});
    ck_assert_msg(net, "%s", nd_ctx_errmsg(ctx));
    nd_param_list s = {0}, p = {0};
    ck_assert_int_eq(nd_module_state(ctx, net, &s), ND_OK);
    ck_assert_int_eq(nd_module_params(ctx, net, &p), ND_OK);
    const char *want[] = {"0.weight",       "0.bias",        "1.weight", "1.bias",
                          "1.running_mean", "1.running_var", "5.weight"};
    ck_assert_int_eq(s.n, 7);
    for (int i = 0; i < 7; i++) ck_assert_str_eq(s.items[i].name, want[i]);
    ck_assert_int_eq(p.n, 5);
    ck_assert_str_eq(p.items[4].name, "5.weight");
    nd_tensor *y = nd_module_forward(ctx, net, nd_full(ctx, 4, (int[]){2, 1, 4, 4}, 0.25));
    ck_assert_msg(y, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(y->shape[1], 3);
    nd_param_list_destroy(&s);
    nd_param_list_destroy(&p);
    nd_module_destroy(net);
}
END_TEST

/* A user's module: y = scale * inner(x), with its own parameter and a child, inside a Sequential
 * next to built-ins. Its parameters are listed, trained by the optimizer and named for a
 * checkpoint like any other. */
typedef struct {
    nd_module base;
    nd_module *inner; /* owned through the child list */
    nd_tensor *scale; /* (1,) */
    int destroyed_extra;
} scaled_block;

static int scaled_block_destroyed;

static nd_tensor *scaled_block_forward(nd_ctx *c, nd_module *m, nd_tensor *x)
{
    scaled_block *s = (scaled_block *)m;
    return nd_mul(c, nd_module_forward(c, s->inner, x), s->scale);
}

static void scaled_block_on_destroy(nd_module *m)
{
    (void)m;
    scaled_block_destroyed++;
}

START_TEST(test_custom_module_composes_in_sequential)
{
    nd_rng rng = nd_rng_seed(5);
    scaled_block *blk =
        (scaled_block *)nd_module_create(ctx, "Scaled", scaled_block_forward, sizeof *blk);
    ck_assert_ptr_nonnull(blk);
    blk->base.on_destroy = scaled_block_on_destroy;
    blk->scale = nd_module_new_param(ctx, &blk->base, "scale", 1, (int[]){1});
    blk->scale->data[0] = 2;
    blk->inner = nd_linear_create(ctx, 3, 3, true, &rng);
    ck_assert_int_eq(nd_module_add_child(ctx, &blk->base, "inner", blk->inner), ND_OK);
    nd_module *net = nd_sequential_create(
        ctx, 2, (nd_module *[]){nd_linear_create(ctx, 2, 3, true, &rng), &blk->base});
    ck_assert_int_eq(nd_sequential_append(ctx, net, nd_activation_create(ctx, ND_ACT_SIGMOID)),
                     ND_OK);
    nd_param_list l = {0};
    ck_assert_int_eq(nd_module_params(ctx, net, &l), ND_OK);
    const char *want[] = {"0.weight", "0.bias", "1.scale", "1.inner.weight", "1.inner.bias"};
    ck_assert_int_eq(l.n, 5);
    for (int i = 0; i < 5; i++) ck_assert_str_eq(l.items[i].name, want[i]);

    nd_optimizer *opt = nd_sgd_create(ctx, l.items, l.n, &(nd_sgd_options){.lr = 0.1});
    nd_tensor *x = nd_full(ctx, 2, (int[]){4, 2}, 0.3);
    nd_tensor *loss = nd_mean(ctx, nd_module_forward(ctx, net, x));
    ck_assert_msg(loss, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    nd_real g = blk->scale->grad[0], before = blk->scale->data[0];
    ck_assert(g != 0);
    ck_assert_int_eq(nd_optimizer_step(ctx, opt), ND_OK);
    ck_assert_double_eq_tol(blk->scale->data[0], before - 0.1 * g, 1e-6);
    nd_optimizer_destroy(opt);
    nd_param_list_destroy(&l);
    scaled_block_destroyed = 0;
    nd_module_destroy(net);
    ck_assert_int_eq(scaled_block_destroyed, 1);
}
END_TEST

START_TEST(test_train_eval_switches_dropout_and_batch_norm)
{
    nd_module *net =
        nd_sequential_create(ctx, 2,
                             (nd_module *[]){nd_dropout_create(ctx, 0.5, 42),
                                             nd_batch_norm1d_create(ctx, 4, 1e-5, 0.1)});
    ck_assert_ptr_nonnull(net);
    ck_assert(net->training && net->children[0].module->training);
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){256, 4});
    for (size_t i = 0; i < x->size; i++) x->data[i] = 1 + (nd_real)(i % 7);
    /* training: about half the inputs dropped, the rest scaled by 2 */
    nd_tensor *d = nd_module_forward(ctx, net->children[0].module, x);
    size_t zeros = 0;
    for (size_t i = 0; i < d->size; i++) {
        if (d->data[i] == 0)
            zeros++;
        else
            ck_assert_double_eq_tol(d->data[i], 2 * x->data[i], 1e-6);
    }
    ck_assert(zeros > 400 && zeros < 624); /* 512 +- 5.6 sd */
    /* a second call draws a new mask */
    nd_tensor *d2 = nd_module_forward(ctx, net->children[0].module, x);
    ck_assert(memcmp(d->data, d2->data, d->size * sizeof(nd_real)) != 0);
    nd_module_eval(net);
    ck_assert(!net->children[0].module->training && !net->children[1].module->training);
    nd_tensor *rv = net->children[1].module->buffers[1].tensor;
    nd_real rv0 = rv->data[0];
    nd_tensor *y1 = nd_module_forward(ctx, net, x), *y2 = nd_module_forward(ctx, net, x);
    ck_assert(memcmp(y1->data, y2->data, y1->size * sizeof(nd_real)) == 0);
    ck_assert(rv->data[0] == rv0);
    /* eval with running stats (0, 1): y = x / sqrt(1 + eps) */
    ck_assert_double_eq_tol(y1->data[5], x->data[5] / sqrt(1 + 1e-5), 1e-5);
    nd_module_train(net, true);
    ck_assert(net->children[1].module->training);
    nd_module_destroy(net);
}
END_TEST

START_TEST(test_dropout_is_seeded)
{
    nd_module *a = nd_dropout_create(ctx, 0.3, 9), *b = nd_dropout_create(ctx, 0.3, 9);
    nd_tensor *x = nd_full(ctx, 1, (int[]){100}, 1);
    nd_tensor *ya = nd_module_forward(ctx, a, x), *yb = nd_module_forward(ctx, b, x);
    ck_assert(memcmp(ya->data, yb->data, 100 * sizeof(nd_real)) == 0);
    nd_module_destroy(a);
    nd_module_destroy(b);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * backward: first- and second-order gradchecks of every layer, on tiny shapes
 */
static nd_tensor *randn(int ndim, const int *shape, uint64_t seed, double scale)
{
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_normal(t, &rng, 0, scale);
    t->requires_grad = true;
    return t;
}

static void check_grads(const char *what, gc_fn f, nd_tensor **in, int n, void *user)
{
    char report[256] = "";
    gc_tol tol = gc_default_tol();
    ck_assert_msg(gradcheck(ctx, f, in, n, user, tol, report), "%s gradcheck: %s", what, report);
    ck_assert_msg(gradgradcheck(ctx, f, in, n, user, tol, report), "%s gradgradcheck: %s", what,
                  report);
}

static const nd_window2d win_s2p1 = {3, 2, 2, 1, 1, 1};

static nd_tensor *f_im2col(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    return nd_pow_scalar(c, nd_im2col(c, in[0], win_s2p1), 2); /* squared: a second order */
}

static nd_tensor *f_col2im(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    return nd_pow_scalar(c, nd_col2im(c, in[0], (int[]){2, 2, 4, 3}, win_s2p1), 2);
}

START_TEST(test_im2col_col2im_gradcheck)
{
    nd_tensor *x = randn(4, (int[]){2, 2, 4, 3}, 1, 1);
    check_grads("im2col", f_im2col, &x, 1, NULL);
    /* OH = (4 + 2 - 3) / 2 + 1 = 2, OW = (3 + 2 - 2) / 1 + 1 = 4: rows (2*2*4, 2*3*2) */
    nd_tensor *rows = randn(2, (int[]){16, 12}, 2, 1);
    check_grads("col2im", f_col2im, &rows, 1, NULL);
}
END_TEST

/* <col2im(r), x> = <r, im2col(x)>: the pair is adjoint */
START_TEST(test_im2col_col2im_are_adjoint)
{
    nd_tensor *x = randn(4, (int[]){2, 3, 5, 4}, 3, 1);
    nd_window2d w = {2, 3, 2, 1, 1, 0};
    nd_tensor *cx = nd_im2col(ctx, x, w);
    ck_assert_ptr_nonnull(cx);
    nd_tensor *r = randn(2, cx->shape, 4, 1);
    nd_tensor *back = nd_col2im(ctx, r, x->shape, w);
    ck_assert_ptr_nonnull(back);
    double lhs = 0, rhs = 0;
    for (size_t i = 0; i < x->size; i++) lhs += (double)back->data[i] * x->data[i];
    for (size_t i = 0; i < r->size; i++) rhs += (double)r->data[i] * cx->data[i];
    ck_assert_double_eq_tol(lhs, rhs, 1e-4 * (1 + fabs(rhs)));
}
END_TEST

static nd_tensor *f_module(nd_ctx *c, nd_tensor **in, void *m)
{
    return nd_module_forward(c, m, in[0]);
}

/* checks module m w.r.t. x and every parameter of m */
static void check_module(const char *what, nd_module *m, nd_tensor *x)
{
    nd_param_list l = {0};
    ck_assert_int_eq(nd_module_params(ctx, m, &l), ND_OK);
    nd_tensor *in[16] = {x};
    for (int i = 0; i < l.n; i++) in[1 + i] = l.items[i].tensor;
    check_grads(what, f_module, in, 1 + l.n, m);
    nd_param_list_destroy(&l);
    nd_module_destroy(m);
}

START_TEST(test_linear_gradcheck)
{
    nd_rng rng = nd_rng_seed(1);
    check_module("linear", nd_linear_create(ctx, 3, 2, true, &rng), randn(2, (int[]){4, 3}, 1, 1));
    /* a (B, T, in) input shares the weight */
    nd_module *tanh_lin =
        nd_sequential_create(ctx, 2,
                             (nd_module *[]){nd_linear_create(ctx, 2, 3, false, &rng),
                                             nd_activation_create(ctx, ND_ACT_TANH)});
    check_module("linear 3-D + tanh", tanh_lin, randn(3, (int[]){2, 2, 2}, 2, 1));
}
END_TEST

START_TEST(test_conv2d_gradcheck)
{
    nd_rng rng = nd_rng_seed(2);
    check_module("conv2d s1 p1", nd_conv2d_create(ctx, 2, 2, 3, 1, 1, true, &rng),
                 randn(4, (int[]){1, 2, 3, 3}, 3, 1));
    check_module("conv2d s2 p0", nd_conv2d_create(ctx, 1, 2, 2, 2, 0, false, &rng),
                 randn(4, (int[]){2, 1, 4, 5}, 4, 1));
    /* squared, so the second derivative w.r.t. the weight is not trivially zero */
    nd_module *sq =
        nd_sequential_create(ctx, 2,
                             (nd_module *[]){nd_conv2d_create(ctx, 1, 1, 2, 1, 1, true, &rng),
                                             nd_activation_create(ctx, ND_ACT_SOFTPLUS)});
    check_module("conv2d + softplus", sq, randn(4, (int[]){1, 1, 3, 2}, 5, 1));
}
END_TEST

START_TEST(test_pooling_gradcheck)
{
    /* well-separated values keep the max away from ties */
    nd_tensor *x = randn(4, (int[]){2, 2, 5, 4}, 6, 1);
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)((i * 37 % 41) * 0.1 - 2);
    check_module("max_pool2d", nd_max_pool2d_create(ctx, 2, 1), x);
    check_module("max_pool2d k3 s2", nd_max_pool2d_create(ctx, 3, 2), x);
    check_module("avg_pool2d", nd_avg_pool2d_create(ctx, 2, 2), x);
    check_module("global avg pool", nd_global_avg_pool2d_create(ctx), x);
    nd_module *sq = nd_sequential_create(
        ctx, 2,
        (nd_module *[]){nd_avg_pool2d_create(ctx, 2, 1), nd_activation_create(ctx, ND_ACT_TANH)});
    check_module("avg_pool2d + tanh", sq, x);
}
END_TEST

static void perturb_params(nd_module *m, uint64_t seed)
{
    nd_param_list l = {0};
    nd_module_state(ctx, m, &l);
    nd_rng rng = nd_rng_seed(seed);
    for (int i = 0; i < l.n; i++)
        for (size_t k = 0; k < l.items[i].tensor->size; k++)
            l.items[i].tensor->data[k] += (nd_real)(0.3 * nd_rng_normal(&rng));
    for (int i = 0; i < l.n; i++)
        if (strstr(l.items[i].name, "running_var"))
            for (size_t k = 0; k < l.items[i].tensor->size; k++)
                l.items[i].tensor->data[k] = (nd_real)fabs(l.items[i].tensor->data[k]) + 0.5;
    nd_param_list_destroy(&l);
}

START_TEST(test_norm_gradcheck)
{
    nd_module *gn = nd_group_norm_create(ctx, 2, 4, 1e-5);
    perturb_params(gn, 1);
    check_module("group_norm", gn, randn(4, (int[]){2, 4, 2, 1}, 7, 1));
    nd_module *gn1 = nd_group_norm_create(ctx, 1, 2, 1e-5);
    perturb_params(gn1, 2);
    check_module("group_norm (N, C)", gn1, randn(2, (int[]){2, 2}, 8, 1));

    nd_module *bn = nd_batch_norm2d_create(ctx, 2, 1e-5, 0.1);
    perturb_params(bn, 3);
    check_module("batch_norm2d train", bn, randn(4, (int[]){3, 2, 1, 2}, 9, 1));
    nd_module *bne = nd_batch_norm2d_create(ctx, 2, 1e-5, 0.1);
    perturb_params(bne, 4);
    nd_module_eval(bne);
    check_module("batch_norm2d eval", bne, randn(4, (int[]){2, 2, 1, 2}, 10, 1));
    nd_module *bn1 = nd_batch_norm1d_create(ctx, 3, 1e-5, 0.1);
    perturb_params(bn1, 5);
    check_module("batch_norm1d train (N, C, L)", bn1, randn(3, (int[]){2, 3, 2}, 11, 1));
}
END_TEST

static nd_tensor *f_dropout(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    nd_rng rng = nd_rng_seed(77); /* the same mask for every evaluation */
    return nd_tanh(c, nd_dropout(c, in[0], 0.4, true, &rng));
}

START_TEST(test_flatten_dropout_activations_gradcheck)
{
    check_module("flatten",
                 nd_sequential_create(ctx, 2,
                                      (nd_module *[]){nd_flatten_create(ctx),
                                                      nd_activation_create(ctx, ND_ACT_SIGMOID)}),
                 randn(3, (int[]){2, 2, 3}, 12, 1));
    nd_tensor *x = randn(2, (int[]){3, 4}, 13, 1);
    check_grads("dropout", f_dropout, &x, 1, NULL);
    const nd_activation acts[] = {ND_ACT_TANH, ND_ACT_RELU, ND_ACT_SIGMOID, ND_ACT_SOFTPLUS};
    for (int a = 0; a < 4; a++) {
        nd_tensor *xa = randn(2, (int[]){2, 3}, 14 + a, 1);
        for (size_t i = 0; i < xa->size; i++) /* away from relu's kink */
            if (fabs(xa->data[i]) < 0.1) xa->data[i] = 0.5;
        nd_module *act = nd_activation_create(ctx, acts[a]);
        check_module(act->kind, act, xa);
    }
}
END_TEST

static const int ce_labels[4] = {2, 0, 1, 2};

static nd_tensor *f_ce_mean(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    return nd_cross_entropy(c, in[0], ce_labels, ND_REDUCE_MEAN);
}

static nd_tensor *f_ce_sum(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    return nd_cross_entropy(c, in[0], ce_labels, ND_REDUCE_SUM);
}

static nd_tensor *f_mse(nd_ctx *c, nd_tensor **in, void *u)
{
    return nd_mse_loss(c, in[0], in[1], u ? ND_REDUCE_SUM : ND_REDUCE_MEAN);
}

static nd_tensor *f_l1(nd_ctx *c, nd_tensor **in, void *u)
{
    return nd_l1_loss(c, in[0], in[1], u ? ND_REDUCE_SUM : ND_REDUCE_MEAN);
}

START_TEST(test_losses_gradcheck)
{
    nd_tensor *logits = randn(2, (int[]){4, 3}, 20, 2);
    check_grads("cross_entropy mean", f_ce_mean, &logits, 1, NULL);
    check_grads("cross_entropy sum", f_ce_sum, &logits, 1, NULL);
    nd_tensor *pt[2] = {randn(2, (int[]){3, 2}, 21, 1), randn(2, (int[]){3, 2}, 22, 1)};
    check_grads("mse mean", f_mse, pt, 2, NULL);
    check_grads("mse sum", f_mse, pt, 2, (void *)1);
    check_grads("l1 mean", f_l1, pt, 2, NULL);
    check_grads("l1 sum", f_l1, pt, 2, (void *)1);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * optim: torch.optim against the reference
 */
typedef enum { K_SGD, K_ADAM, K_ADAMW, K_RMSPROP } opt_k;

static const struct {
    const char *name;
    opt_k kind;
    nd_sgd_options sgd;
    nd_adam_options adam;
    nd_rmsprop_options rms;
} optim_cases[] = {
    {"sgd", K_SGD, .sgd = {.lr = 0.1}},
    {"sgd_momentum", K_SGD, .sgd = {.lr = 0.1, .momentum = 0.9}},
    {"sgd_dampening_wd", K_SGD,
     .sgd = {.lr = 0.1, .momentum = 0.9, .dampening = 0.5, .weight_decay = 0.01}},
    {"sgd_nesterov", K_SGD,
     .sgd = {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true}},
    {"adam_default", K_ADAM, .adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}},
    {"adam_wd", K_ADAM,
     .adam = {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1}},
    {"adam_amsgrad", K_ADAM,
     .adam = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .amsgrad = true}},
    {"adamw_default", K_ADAMW,
     .adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2}},
    {"adamw", K_ADAMW,
     .adam = {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1}},
    {"adamw_amsgrad", K_ADAMW,
     .adam = {.lr = 0.02,
              .beta1 = 0.9,
              .beta2 = 0.999,
              .eps = 1e-8,
              .weight_decay = 1e-2,
              .amsgrad = true}},
    {"rmsprop_default", K_RMSPROP, .rms = {.lr = 1e-2, .alpha = 0.99, .eps = 1e-8}},
    {"rmsprop_centered", K_RMSPROP,
     .rms = {.lr = 0.01, .alpha = 0.99, .eps = 1e-8, .centered = true}},
    {"rmsprop_momentum_wd", K_RMSPROP,
     .rms = {.lr = 0.01, .alpha = 0.9, .eps = 1e-8, .weight_decay = 0.1, .momentum = 0.9}},
    {"rmsprop_centered_momentum", K_RMSPROP,
     .rms = {.lr = 0.005, .alpha = 0.99, .eps = 1e-4, .momentum = 0.5, .centered = true}},
};

enum { OPT_STEPS = 5, OPT_NUMEL = 9 };

static nd_optimizer *make_optimizer(int c, nd_param *params, int n)
{
    switch (optim_cases[c].kind) {
    case K_SGD:
        return nd_sgd_create(ctx, params, n, &optim_cases[c].sgd);
    case K_ADAM:
        return nd_adam_create(ctx, params, n, &optim_cases[c].adam);
    case K_ADAMW:
        return nd_adamw_create(ctx, params, n, &optim_cases[c].adam);
    case K_RMSPROP:
        return nd_rmsprop_create(ctx, params, n, &optim_cases[c].rms);
    }
    return NULL;
}

/* the two reference parameters, (2, 3) and (3,), at their initial values */
static void make_params(nd_param *p)
{
    double *p0 = ref("optim.p0", NULL);
    p[0] = (nd_param){"a", nd_tensor_create(ctx, 2, (int[]){2, 3}, true)};
    p[1] = (nd_param){"b", nd_tensor_create(ctx, 1, (int[]){3}, true)};
    for (int i = 0; i < 6; i++) p[0].tensor->data[i] = (nd_real)p0[i];
    for (int i = 0; i < 3; i++) p[1].tensor->data[i] = (nd_real)p0[6 + i];
}

static void load_grads(nd_param *p, int step)
{
    double *g = ref("optim.grads", NULL) + step * OPT_NUMEL;
    for (int i = 0; i < 6; i++) p[0].tensor->grad[i] = (nd_real)g[i];
    for (int i = 0; i < 3; i++) p[1].tensor->grad[i] = (nd_real)g[6 + i];
}

START_TEST(test_optimizer_steps_match_torch)
{
    nd_param p[2];
    make_params(p);
    nd_optimizer *opt = make_optimizer(_i, p, 2);
    ck_assert_msg(opt, "%s", nd_ctx_errmsg(ctx));
    char name[96];
    snprintf(name, sizeof name, "optim.%s", optim_cases[_i].name);
    double *want = ref(name, NULL);
    for (int k = 0; k < OPT_STEPS; k++) {
        load_grads(p, k);
        ck_assert_int_eq(nd_optimizer_step(ctx, opt), ND_OK);
        char what[128];
        snprintf(what, sizeof what, "%s step %d a", optim_cases[_i].name, k + 1);
        expect_close(what, p[0].tensor->data, want + k * OPT_NUMEL, 6);
        snprintf(what, sizeof what, "%s step %d b", optim_cases[_i].name, k + 1);
        expect_close(what, p[1].tensor->data, want + k * OPT_NUMEL + 6, 3);
    }
    ck_assert_int_eq(nd_optimizer_steps(opt), OPT_STEPS);
    nd_optimizer_destroy(opt);
    nd_tensor_destroy(p[0].tensor);
    nd_tensor_destroy(p[1].tensor);
}
END_TEST

/* Copying the state into a fresh optimizer (what a checkpoint does) continues the same run */
START_TEST(test_optimizer_state_restores_run)
{
    nd_param p[2], q[2];
    make_params(p);
    make_params(q);
    nd_optimizer *a = make_optimizer(_i, p, 2);
    for (int k = 0; k < 3; k++) {
        load_grads(p, k);
        ck_assert_int_eq(nd_optimizer_step(ctx, a), ND_OK);
    }
    nd_optimizer *b = make_optimizer(_i, q, 2);
    int na, nb;
    const nd_param *sa = nd_optimizer_state(a, &na), *sb = nd_optimizer_state(b, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert_str_eq(sa[0].name, "step");
    for (int i = 0; i < na; i++) {
        ck_assert_str_eq(sa[i].name, sb[i].name);
        memcpy(sb[i].tensor->data, sa[i].tensor->data, sa[i].tensor->size * sizeof(nd_real));
    }
    for (int i = 0; i < 2; i++)
        memcpy(q[i].tensor->data, p[i].tensor->data, p[i].tensor->size * sizeof(nd_real));
    load_grads(p, 3);
    load_grads(q, 3);
    nd_optimizer_step(ctx, a);
    nd_optimizer_step(ctx, b);
    for (int i = 0; i < 2; i++)
        ck_assert(
            memcmp(p[i].tensor->data, q[i].tensor->data, p[i].tensor->size * sizeof(nd_real)) == 0);
    ck_assert_int_eq(nd_optimizer_steps(b), 4);
    nd_optimizer_destroy(a);
    nd_optimizer_destroy(b);
    for (int i = 0; i < 2; i++) nd_tensor_destroy(p[i].tensor), nd_tensor_destroy(q[i].tensor);
}
END_TEST

START_TEST(test_optimizer_state_names)
{
    nd_param p[2];
    make_params(p);
    nd_optimizer *o = nd_adam_create(
        ctx, p, 2, &(nd_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .amsgrad = true});
    int n;
    const nd_param *s = nd_optimizer_state(o, &n);
    ck_assert_int_eq(n, 7);
    ck_assert_str_eq(s[1].name, "a.exp_avg");
    ck_assert_str_eq(s[2].name, "a.exp_avg_sq");
    ck_assert_str_eq(s[3].name, "a.max_exp_avg_sq");
    ck_assert_str_eq(s[6].name, "b.max_exp_avg_sq");
    nd_optimizer_destroy(o);
    o = nd_rmsprop_create(
        ctx, p, 2,
        &(nd_rmsprop_options){.lr = 1e-2, .alpha = 0.99, .momentum = 0.9, .centered = true});
    s = nd_optimizer_state(o, &n);
    ck_assert_int_eq(n, 7);
    ck_assert_str_eq(s[1].name, "a.square_avg");
    ck_assert_str_eq(s[2].name, "a.momentum_buffer");
    ck_assert_str_eq(s[3].name, "a.grad_avg");
    nd_optimizer_destroy(o);
    /* defaults as PyTorch's */
    ck_assert_double_eq(ND_ADAMW_DEFAULT.weight_decay, 1e-2);
    ck_assert_double_eq(ND_ADAM_DEFAULT.weight_decay, 0);
    ck_assert_double_eq(ND_RMSPROP_DEFAULT.alpha, 0.99);
    ck_assert_double_eq(ND_RMSPROP_DEFAULT.lr, 1e-2);
    ck_assert_double_eq(ND_SGD_DEFAULT.lr, 1e-3);
    nd_tensor_destroy(p[0].tensor);
    nd_tensor_destroy(p[1].tensor);
}
END_TEST

START_TEST(test_clip_grad_norm_matches_torch)
{
    const double max_norms[2] = {1.0, 100.0};
    for (int c = 0; c < 2; c++) {
        nd_param p[2];
        make_params(p);
        load_grads(p, 2);
        double norm = nd_clip_grad_norm(p, 2, max_norms[c]);
        char name[64];
        snprintf(name, sizeof name, "clip.%g.norm", max_norms[c]);
        nd_real got = (nd_real)norm;
        expect_ref("clip norm", &got, 1, name);
        snprintf(name, sizeof name, "clip.%g.grads", max_norms[c]);
        double *want = ref(name, NULL);
        expect_close("clipped a", p[0].tensor->grad, want, 6);
        expect_close("clipped b", p[1].tensor->grad, want + 6, 3);
        nd_tensor_destroy(p[0].tensor);
        nd_tensor_destroy(p[1].tensor);
    }
}
END_TEST

START_TEST(test_lr_schedules_match_torch)
{
    size_t n;
    double *want = ref("lr.step", &n);
    nd_lr_schedule s = nd_lr_step(0.1, 3, 0.5);
    for (size_t e = 0; e < n; e++) {
        nd_real got = (nd_real)nd_lr_at(&s, (int)e);
        expect_close("StepLR", &got, want + e, 1);
    }
    want = ref("lr.cosine", &n);
    s = nd_lr_cosine(0.1, 10, 0.001);
    for (size_t e = 0; e < n; e++) {
        nd_real got = (nd_real)nd_lr_at(&s, (int)e);
        /* PyTorch's recursive form drifts from the closed form by a few ulps */
        ck_assert_double_eq_tol(got, want[e], 1e-12 + 1e-6 * want[e]);
    }
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * errors
 */
START_TEST(test_linear_rejects_wrong_features)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *lin = nd_linear_create(ctx, 4, 2, true, &rng);
    ck_assert_ptr_null(nd_module_forward(ctx, lin, nd_zeros(ctx, 2, (int[]){32, 5})));
    ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_SHAPE);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "nd_linear: input (32, 5) does not match in_features 4");
    nd_module_destroy(lin);
}
END_TEST

START_TEST(test_layers_reject_wrong_shapes)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *conv = nd_conv2d_create(ctx, 3, 4, 3, 1, 0, true, &rng);
    ck_assert_ptr_null(nd_module_forward(ctx, conv, nd_zeros(ctx, 4, (int[]){2, 1, 8, 8})));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: input (2, 1, 8, 8)", "(4, 3, 3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_module_forward(ctx, conv, nd_zeros(ctx, 4, (int[]){2, 3, 2, 8})));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: kernel 3x3", "(2, 3, 2, 8)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_max_pool2d(ctx, nd_zeros(ctx, 3, (int[]){2, 4, 4}), 2, 2));
    expect_error(ND_ERR_SHAPE, "nd_max_pool2d", "(2, 4, 4)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_avg_pool2d(ctx, nd_zeros(ctx, 4, (int[]){1, 1, 2, 2}), 3, 1));
    expect_error(ND_ERR_SHAPE, "nd_avg_pool2d: kernel 3", "(1, 1, 2, 2)");
    nd_ctx_clear_error(ctx);
    nd_module *gn = nd_group_norm_create(ctx, 2, 4, 1e-5);
    ck_assert_ptr_null(nd_module_forward(ctx, gn, nd_zeros(ctx, 2, (int[]){3, 5})));
    expect_error(ND_ERR_SHAPE, "nd_group_norm", "(3, 5)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_group_norm_create(ctx, 3, 4, 1e-5));
    expect_error(ND_ERR_ARG, "nd_group_norm_create", "4 channels, 3 groups");
    nd_ctx_clear_error(ctx);
    nd_module *bn = nd_batch_norm2d_create(ctx, 3, 1e-5, 0.1);
    ck_assert_ptr_null(nd_module_forward(ctx, bn, nd_zeros(ctx, 2, (int[]){8, 3})));
    expect_error(ND_ERR_SHAPE, "nd_batch_norm2d: input (8, 3) is not (N, 3, H, W)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_module_forward(ctx, bn, nd_zeros(ctx, 4, (int[]){1, 3, 1, 1})));
    expect_error(ND_ERR_SHAPE, "nd_batch_norm: input (1, 3, 1, 1) has one value per channel", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(
        nd_im2col(ctx, nd_zeros(ctx, 2, (int[]){3, 3}), (nd_window2d){1, 1, 1, 1, 0, 0}));
    expect_error(ND_ERR_SHAPE, "nd_im2col", "(3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_col2im(ctx, nd_zeros(ctx, 2, (int[]){5, 4}), (int[]){1, 1, 3, 3},
                                 (nd_window2d){2, 2, 1, 1, 0, 0}));
    expect_error(ND_ERR_SHAPE, "nd_col2im: rows (5, 4)", "(1, 1, 3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(
        nd_im2col(ctx, nd_zeros(ctx, 4, (int[]){1, 1, 3, 3}), (nd_window2d){0, 1, 1, 1, 0, 0}));
    expect_error(ND_ERR_ARG, "nd_im2col: invalid window", NULL);
    nd_module_destroy(conv);
    nd_module_destroy(gn);
    nd_module_destroy(bn);
}
END_TEST

START_TEST(test_losses_reject_bad_input)
{
    nd_tensor *logits = nd_zeros(ctx, 2, (int[]){3, 4});
    ck_assert_ptr_null(nd_cross_entropy(ctx, logits, (int[]){0, 4, 1}, ND_REDUCE_MEAN));
    expect_error(ND_ERR_ARG, "nd_cross_entropy: label 4 of sample 1 is outside [0, 4)", "(3, 4)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(
        nd_cross_entropy(ctx, nd_zeros(ctx, 1, (int[]){4}), (int[]){0}, ND_REDUCE_SUM));
    expect_error(ND_ERR_SHAPE, "nd_cross_entropy: logits (4,) are not (N, K)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_mse_loss(ctx, logits, nd_zeros(ctx, 2, (int[]){4, 3}), ND_REDUCE_MEAN));
    expect_error(ND_ERR_SHAPE, "nd_mse_loss: prediction (3, 4) and target (4, 3)", NULL);
}
END_TEST

/* The first failure is the one reported; the rest of the forward pass just passes NULL on */
START_TEST(test_sequential_reports_first_error)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *net = nd_mlp_create(ctx, 3, (int[]){4, 8, 2}, ND_ACT_RELU, &rng);
    nd_tensor *y = nd_module_forward(ctx, net, nd_zeros(ctx, 2, (int[]){5, 3}));
    ck_assert_ptr_null(nd_cross_entropy(ctx, y, (int[]){0, 0, 0, 0, 0}, ND_REDUCE_MEAN));
    expect_error(ND_ERR_SHAPE, "nd_linear: input (5, 3) does not match in_features 4", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_module_forward(ctx, NULL, nd_zeros(ctx, 1, (int[]){1})));
    expect_error(ND_ERR_ARG, "nd_module_forward", NULL);
    nd_module_destroy(net);
}
END_TEST

START_TEST(test_module_construction_errors_do_not_leak)
{
    nd_rng rng = nd_rng_seed(1);
    /* a NULL among the children: the others are destroyed, nothing leaks (ASan checks) */
    ck_assert_ptr_null(
        nd_sequential_create(ctx, 3,
                             (nd_module *[]){nd_linear_create(ctx, 2, 2, true, &rng),
                                             nd_linear_create(ctx, 0, 2, true, &rng),
                                             nd_activation_create(ctx, ND_ACT_TANH)}));
    expect_error(ND_ERR_ARG, "nd_linear_create: in_features 0", NULL);
    nd_ctx_clear_error(ctx);
    nd_module *m = nd_linear_create(ctx, 2, 2, true, &rng);
    ck_assert_int_eq(
        nd_module_add_param(ctx, m, "weight", nd_tensor_create(ctx, 1, (int[]){2}, true)),
        ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "Linear already has \"weight\"", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_module_add_child(ctx, m, "a.b", nd_flatten_create(ctx)), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "invalid name \"a.b\"", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_sequential_append(ctx, m, nd_flatten_create(ctx)), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "is a Linear, not a Sequential", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_dropout_create(ctx, 1.5, 0));
    expect_error(ND_ERR_ARG, "nd_dropout_create: p = 1.5", NULL);
    nd_module_destroy(m);
}
END_TEST

START_TEST(test_optimizer_refuses_nonfinite_gradients)
{
    nd_param p[2];
    make_params(p);
    nd_optimizer *o = nd_adam_create(ctx, p, 2, NULL);
    load_grads(p, 0);
    ck_assert_int_eq(nd_optimizer_step(ctx, o), ND_OK);
    nd_real before[6];
    memcpy(before, p[0].tensor->data, sizeof before);
    int n;
    const nd_param *s = nd_optimizer_state(o, &n);
    nd_real m0 = s[1].tensor->data[0];
    load_grads(p, 1);
    p[1].tensor->grad[2] = NAN;
    ck_assert_int_eq(nd_optimizer_step(ctx, o), ND_ERR_NONFINITE);
    expect_error(ND_ERR_NONFINITE, "gradient of b has a non-finite value at element 2",
                 "parameters left unchanged");
    ck_assert(memcmp(before, p[0].tensor->data, sizeof before) == 0);
    ck_assert(s[1].tensor->data[0] == m0);
    ck_assert_int_eq(nd_optimizer_steps(o), 1);
    /* clipping reports the non-finite norm and leaves the gradients alone */
    nd_real g0 = p[0].tensor->grad[0];
    ck_assert(!isfinite(nd_clip_grad_norm(p, 2, 1.0)));
    ck_assert(p[0].tensor->grad[0] == g0);
    p[1].tensor->grad[2] = INFINITY;
    ck_assert(isinf(nd_clip_grad_norm(p, 2, 1.0)));
    nd_optimizer_destroy(o);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_sgd_create(ctx, p, 2, &(nd_sgd_options){.lr = 0.1, .nesterov = true}));
    expect_error(ND_ERR_ARG, "nd_sgd_create", "nesterov needs momentum > 0");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_adam_create(ctx, p, 2, &(nd_adam_options){.lr = 0.1, .beta1 = 1.0}));
    expect_error(ND_ERR_ARG, "nd_adam_create", "betas (1, 0)");
    nd_tensor_destroy(p[0].tensor);
    nd_tensor_destroy(p[1].tensor);
}
END_TEST

/* NULL options mean each optimizer's documented defaults (contract item 2): the learning rates,
 * and AdamW's decoupled weight decay 1e-2 (a zero gradient still shrinks the weights; Adam's do
 * not move) */
START_TEST(test_optimizer_null_options_are_the_defaults)
{
    nd_param p[2];
    make_params(p);
    nd_optimizer *sgd = nd_sgd_create(ctx, p, 2, NULL), *rms = nd_rmsprop_create(ctx, p, 2, NULL);
    ck_assert(sgd && rms);
    ck_assert(nd_optimizer_lr(sgd) == ND_SGD_DEFAULT.lr && nd_optimizer_lr(sgd) == 1e-3);
    ck_assert(nd_optimizer_lr(rms) == ND_RMSPROP_DEFAULT.lr && nd_optimizer_lr(rms) == 1e-2);
    nd_optimizer_destroy(sgd);
    nd_optimizer_destroy(rms);
    for (size_t i = 0; i < p[0].tensor->size; i++) p[0].tensor->data[i] = 1;
    memset(p[0].tensor->grad, 0, p[0].tensor->size * sizeof *p[0].tensor->grad);
    memset(p[1].tensor->grad, 0, p[1].tensor->size * sizeof *p[1].tensor->grad);
    nd_optimizer *adam = nd_adam_create(ctx, p, 2, NULL);
    ck_assert_int_eq(nd_optimizer_step(ctx, adam), ND_OK);
    ck_assert(p[0].tensor->data[0] == 1);
    nd_optimizer_destroy(adam);
    nd_optimizer *adamw = nd_adamw_create(ctx, p, 2, NULL);
    ck_assert(nd_optimizer_lr(adamw) == 1e-3);
    ck_assert_int_eq(nd_optimizer_step(ctx, adamw), ND_OK);
    ck_assert_double_eq_tol(p[0].tensor->data[0], 1 - 1e-3 * 1e-2, 1e-7);
    nd_optimizer_destroy(adamw);
    nd_tensor_destroy(p[0].tensor);
    nd_tensor_destroy(p[1].tensor);
}
END_TEST

/* Every layer function given NULL returns NULL and leaves the first error in place */
START_TEST(test_null_input_propagates)
{
    ck_assert_ptr_null(
        nd_matmul(ctx, nd_zeros(ctx, 2, (int[]){2, 3}), nd_zeros(ctx, 2, (int[]){2, 3})));
    char first[512];
    snprintf(first, sizeof first, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *w = nd_zeros(ctx, 2, (int[]){2, 2}), *w4 = nd_zeros(ctx, 4, (int[]){1, 1, 1, 1});
    nd_rng rng = nd_rng_seed(1);
    nd_tensor *results[] = {
        nd_im2col(ctx, NULL, (nd_window2d){1, 1, 1, 1, 0, 0}),
        nd_col2im(ctx, NULL, (int[]){1, 1, 1, 1}, (nd_window2d){1, 1, 1, 1, 0, 0}),
        nd_linear(ctx, NULL, w, NULL),
        nd_conv2d(ctx, NULL, w4, NULL, 1, 0),
        nd_max_pool2d(ctx, NULL, 2, 2),
        nd_avg_pool2d(ctx, NULL, 2, 2),
        nd_global_avg_pool2d(ctx, NULL),
        nd_flatten(ctx, NULL),
        nd_group_norm(ctx, NULL, 1, NULL, NULL, 1e-5),
        nd_batch_norm(ctx, NULL, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
        nd_dropout(ctx, NULL, 0.5, true, &rng),
        nd_mse_loss(ctx, NULL, w, ND_REDUCE_MEAN),
        nd_l1_loss(ctx, w, NULL, ND_REDUCE_SUM),
        nd_cross_entropy(ctx, NULL, (int[]){0}, ND_REDUCE_MEAN),
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        ck_assert_msg(results[i] == NULL, "call %zu returned a tensor for a NULL input", i);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), first);
    nd_module *lin = nd_linear_create(ctx, 2, 2, false, &rng);
    ck_assert_ptr_null(nd_module_forward(ctx, lin, NULL));
    ck_assert_str_eq(nd_ctx_errmsg(ctx), first);
    nd_module_destroy(lin);
}
END_TEST

/* Each nn op given a NULL input, with no earlier error, records a message naming itself and the
 * argument (issue 15 audit: the bare NULL guards left the ctx without a message). */
START_TEST(test_null_input_names_the_op_and_argument)
{
    nd_tensor *w = nd_zeros(ctx, 2, (int[]){2, 2}), *n = NULL;
    nd_rng rng = nd_rng_seed(1);
    int lab[] = {0};
    EXPECT_NULL_NAMED(nd_linear(ctx, n, w, NULL), "nd_linear: input x is NULL");
    EXPECT_NULL_NAMED(nd_linear(ctx, w, n, NULL), "nd_linear: input w is NULL");
    EXPECT_NULL_NAMED(nd_max_pool2d(ctx, n, 2, 2), "nd_max_pool2d: input x is NULL");
    EXPECT_NULL_NAMED(nd_avg_pool2d(ctx, n, 2, 2), "nd_avg_pool2d: input x is NULL");
    EXPECT_NULL_NAMED(nd_global_avg_pool2d(ctx, n), "nd_global_avg_pool2d: input x is NULL");
    EXPECT_NULL_NAMED(nd_flatten(ctx, n), "nd_flatten: input x is NULL");
    EXPECT_NULL_NAMED(nd_dropout(ctx, n, 0.5, true, &rng), "nd_dropout: input x is NULL");
    EXPECT_NULL_NAMED(nd_group_norm(ctx, n, 1, NULL, NULL, 1e-5), "nd_group_norm: input x is NULL");
    EXPECT_NULL_NAMED(nd_batch_norm(ctx, n, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
                      "nd_batch_norm: input x is NULL");
    EXPECT_NULL_NAMED(nd_mse_loss(ctx, n, w, ND_REDUCE_MEAN), "nd_mse_loss: input pred is NULL");
    EXPECT_NULL_NAMED(nd_l1_loss(ctx, w, n, ND_REDUCE_SUM), "nd_l1_loss: input target is NULL");
    EXPECT_NULL_NAMED(nd_cross_entropy(ctx, n, lab, ND_REDUCE_MEAN),
                      "nd_cross_entropy: input logits is NULL");
    EXPECT_NULL_NAMED(nd_gaussian_log_likelihood(ctx, w, n, NULL, 1, ND_REDUCE_SUM),
                      "nd_gaussian_log_likelihood: input target is NULL");
    EXPECT_NULL_NAMED(nd_kl_std_normal(ctx, n, w, ND_REDUCE_SUM),
                      "nd_kl_std_normal: input mu is NULL");
    EXPECT_NULL_NAMED(nd_gru_cell(ctx, w, w, n, w, NULL, NULL), "nd_gru_cell: input w_ih is NULL");
    nd_tensor *c2;
    EXPECT_NULL_NAMED(nd_lstm_cell(ctx, w, w, n, w, w, NULL, NULL, &c2),
                      "nd_lstm_cell: input c is NULL");
    nd_module *gru = nd_gru_cell_create(ctx, 2, 2, true, &rng);
    nd_module *lstm = nd_lstm_cell_create(ctx, 2, 2, true, &rng);
    EXPECT_NULL_NAMED(nd_rnn_masked_step(ctx, gru, w, NULL, n, NULL, NULL),
                      "nd_rnn_masked_step: input h is NULL");
    EXPECT_NULL_NAMED(nd_rnn_masked_step(ctx, lstm, w, NULL, w, n, &c2),
                      "nd_rnn_masked_step: input c is NULL");
    EXPECT_NULL_NAMED(nd_rnn_sequence(ctx, gru, n, NULL, NULL, NULL),
                      "nd_rnn_sequence: input x is NULL");
    EXPECT_NULL_NAMED(nd_module_forward(ctx, gru, n), "nd_module_forward: input x is NULL");
    nd_module_destroy(gru);
    nd_module_destroy(lstm);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * the flat parameter block (nd_module_flatten)
 */

/* an MLP 3 -> 5 -> 2 with tanh, the same weights for the same seed */
static nd_module *small_mlp(uint64_t seed)
{
    nd_rng rng = nd_rng_seed(seed);
    nd_module *m = nd_mlp_create(ctx, 3, (int[]){3, 5, 2}, ND_ACT_TANH, &rng);
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    return m;
}

/* one forward and backward of mean((mlp(x))^2) on a fixed batch (4, 3) */
static void small_backward(nd_module *m)
{
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){4, 3});
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)(0.3 * (double)i - 1.1);
    nd_tensor *y = nd_module_forward(ctx, m, x);
    nd_tensor *loss = nd_mean(ctx, nd_mul(ctx, y, y));
    ck_assert_msg(loss && nd_backward(ctx, loss, 0) == ND_OK, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_reset(ctx);
}

/* Each parameter becomes a slice of one block, values and gradients alike: writing the block is
 * writing the parameter, a backward fills the block's grad, and the state round-trips a
 * checkpoint as before. */
START_TEST(test_flatten_views_alias_the_block)
{
    nd_module *m = small_mlp(3), *ref_m = small_mlp(3);
    nd_param_list l = {0}, ref_l = {0};
    ck_assert_int_eq(nd_module_params(ctx, m, &l), ND_OK);
    ck_assert_int_eq(nd_module_params(ctx, ref_m, &ref_l), ND_OK);
    nd_tensor *flat = nd_module_flatten(ctx, m);
    ck_assert_msg(flat, "%s", nd_ctx_errmsg(ctx));
    ck_assert_ptr_eq(nd_module_flatten(ctx, m), flat); /* a second call: the same block */
    ck_assert_uint_eq(flat->size, nd_param_list_numel(&l));
    ck_assert_uint_eq(flat->size, 3 * 5 + 5 + 5 * 2 + 2);
    size_t off = 0;
    for (int i = 0; i < l.n; i++) {
        nd_tensor *t = l.items[i].tensor;
        ck_assert_ptr_eq(t->base, flat);
        ck_assert_ptr_eq(t->data, flat->data + off);
        ck_assert_ptr_eq(t->grad, flat->grad + off);
        /* values unchanged, and a write through the block is seen by the parameter */
        ck_assert(memcmp(t->data, ref_l.items[i].tensor->data, t->size * sizeof(nd_real)) == 0);
        nd_real old = flat->data[off];
        flat->data[off] = (nd_real)42;
        ck_assert(t->data[0] == (nd_real)42);
        flat->data[off] = old;
        off += t->size;
    }
    /* the gradients land in the block, equal to the unflattened model's */
    small_backward(m);
    small_backward(ref_m);
    off = 0;
    for (int i = 0; i < ref_l.n; i++) {
        const nd_tensor *r = ref_l.items[i].tensor;
        ck_assert(memcmp(flat->grad + off, r->grad, r->size * sizeof(nd_real)) == 0);
        off += r->size;
    }
    nd_module_zero_grad(m);
    for (size_t k = 0; k < flat->size; k++) ck_assert(flat->grad[k] == 0);
    /* a checkpoint of the flattened model loads into the plain one and back */
    const char *path = "test_nn_flat.safetensors";
    ck_assert_int_eq(nd_save(ctx, path, l.items, l.n, NULL), ND_OK);
    for (int i = 0; i < ref_l.n; i++)
        memset(ref_l.items[i].tensor->data, 0, ref_l.items[i].tensor->size * sizeof(nd_real));
    ck_assert_int_eq(nd_load(ctx, path, ref_l.items, ref_l.n, NULL), ND_OK);
    memset(flat->data, 0, flat->size * sizeof(nd_real));
    ck_assert_int_eq(nd_load(ctx, path, l.items, l.n, NULL), ND_OK);
    for (int i = 0; i < l.n; i++)
        ck_assert(memcmp(l.items[i].tensor->data, ref_l.items[i].tensor->data,
                         l.items[i].tensor->size * sizeof(nd_real)) == 0);
    remove(path);
    nd_param_list_destroy(&l);
    nd_param_list_destroy(&ref_l);
    nd_module_destroy(m); /* frees the block once (ASan would see a double free or a leak) */
    nd_module_destroy(ref_m);
}
END_TEST

/* One pass over the block is the per-parameter update, bit for bit, for every optimizer case */
START_TEST(test_flatten_optimizer_step_equals_per_parameter)
{
    nd_module *m = small_mlp(5), *ref_m = small_mlp(5);
    nd_param_list l = {0}, ref_l = {0};
    ck_assert_ptr_nonnull(nd_module_flatten(ctx, m));
    ck_assert_int_eq(nd_module_params(ctx, m, &l), ND_OK);
    ck_assert_int_eq(nd_module_params(ctx, ref_m, &ref_l), ND_OK);
    nd_optimizer *opt = make_optimizer(_i, l.items, l.n);
    nd_optimizer *ref_opt = make_optimizer(_i, ref_l.items, ref_l.n);
    ck_assert_msg(opt && ref_opt, "%s", nd_ctx_errmsg(ctx));
    for (int k = 0; k < OPT_STEPS; k++) {
        nd_optimizer_zero_grad(opt);
        nd_optimizer_zero_grad(ref_opt);
        small_backward(m);
        small_backward(ref_m);
        ck_assert_int_eq(nd_optimizer_step(ctx, opt), ND_OK);
        ck_assert_int_eq(nd_optimizer_step(ctx, ref_opt), ND_OK);
    }
    for (int i = 0; i < l.n; i++)
        ck_assert_msg(memcmp(l.items[i].tensor->data, ref_l.items[i].tensor->data,
                             l.items[i].tensor->size * sizeof(nd_real)) == 0,
                      "%s: %s differs after %d steps", optim_cases[_i].name, l.items[i].name,
                      OPT_STEPS);
    int n, ref_n; /* the state too, under the same names */
    const nd_param *st = nd_optimizer_state(opt, &n), *ref_st = nd_optimizer_state(ref_opt, &ref_n);
    ck_assert_int_eq(n, ref_n);
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(st[i].name, ref_st[i].name);
        ck_assert(memcmp(st[i].tensor->data, ref_st[i].tensor->data,
                         st[i].tensor->size * sizeof(nd_real)) == 0);
    }
    nd_optimizer_destroy(opt);
    nd_optimizer_destroy(ref_opt);
    nd_param_list_destroy(&l);
    nd_param_list_destroy(&ref_l);
    nd_module_destroy(m);
    nd_module_destroy(ref_m);
}
END_TEST

START_TEST(test_flatten_rejects_nested_and_late_parameters)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *inner = small_mlp(1);
    ck_assert_ptr_nonnull(nd_module_flatten(ctx, inner));
    nd_module *outer = nd_sequential_create(
        ctx, 2, (nd_module *[]){inner, nd_linear_create(ctx, 2, 2, true, &rng)});
    ck_assert_ptr_nonnull(outer);
    ck_assert_ptr_null(nd_module_flatten(ctx, outer));
    expect_error(ND_ERR_ARG, "nd_module_flatten", "0.0.weight", "already lives in a block");
    ck_assert_ptr_null(outer->flat);
    nd_ctx_clear_error(ctx);
    /* a parameter added after flattening */
    nd_module *m = small_mlp(2);
    ck_assert_ptr_nonnull(nd_module_flatten(ctx, m));
    ck_assert_ptr_nonnull(nd_module_new_param(ctx, m, "extra", 1, (int[]){2}));
    ck_assert_ptr_null(nd_module_flatten(ctx, m));
    expect_error(ND_ERR_ARG, "nd_module_flatten", "added or changed");
    nd_ctx_clear_error(ctx);
    /* nothing to flatten */
    nd_module *act = nd_activation_create(ctx, ND_ACT_TANH);
    ck_assert_ptr_null(nd_module_flatten(ctx, act));
    expect_error(ND_ERR_ARG, "nd_module_flatten", "0 parameter elements");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_module_flatten(ctx, NULL));
    expect_error(ND_ERR_ARG, "module is NULL");
    nd_module_destroy(act);
    nd_module_destroy(m);
    nd_module_destroy(outer);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 */
static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *fwd = tcase_create("forward"), *bwd = tcase_create("backward");
    TCase *err = tcase_create("errors"), *opt = tcase_create("optim");
    TCase *all[] = {fwd, bwd, err, opt};
    for (int i = 0; i < 4; i++) {
        tcase_add_unchecked_fixture(all[i], ref_load, ref_free);
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        tcase_set_timeout(all[i], 600);
    }
    int n_layers = (int)(sizeof layer_cases / sizeof layer_cases[0]);
    int n_optim = (int)(sizeof optim_cases / sizeof optim_cases[0]);
    tcase_add_loop_test(fwd, test_layer_forward_backward_match_torch, 0, n_layers);
    tcase_add_test(fwd, test_batch_norm2d_train_then_eval_matches_torch);
    tcase_add_test(fwd, test_batch_norm1d_matches_torch);
    tcase_add_test(fwd, test_cross_entropy_matches_torch);
    tcase_add_test(fwd, test_mse_l1_values_and_accuracy);
    tcase_add_test(fwd, test_linear_forward_values);
    tcase_add_test(fwd, test_linear_init_bounds_and_moments);
    tcase_add_test(fwd, test_init_xavier_and_kaiming_bounds);
    tcase_add_test(fwd, test_mlp_param_names_follow_pytorch);
    tcase_add_test(fwd, test_state_lists_buffers_in_state_dict_order);
    tcase_add_test(fwd, test_custom_module_composes_in_sequential);
    tcase_add_test(fwd, test_train_eval_switches_dropout_and_batch_norm);
    tcase_add_test(fwd, test_dropout_is_seeded);
    tcase_add_test(bwd, test_im2col_col2im_gradcheck);
    tcase_add_test(bwd, test_im2col_col2im_are_adjoint);
    tcase_add_test(bwd, test_linear_gradcheck);
    tcase_add_test(bwd, test_conv2d_gradcheck);
    tcase_add_test(bwd, test_pooling_gradcheck);
    tcase_add_test(bwd, test_norm_gradcheck);
    tcase_add_test(bwd, test_flatten_dropout_activations_gradcheck);
    tcase_add_test(bwd, test_losses_gradcheck);
    tcase_add_loop_test(opt, test_optimizer_steps_match_torch, 0, n_optim);
    tcase_add_loop_test(opt, test_optimizer_state_restores_run, 0, n_optim);
    tcase_add_test(opt, test_optimizer_state_names);
    tcase_add_test(opt, test_optimizer_null_options_are_the_defaults);
    tcase_add_test(opt, test_clip_grad_norm_matches_torch);
    tcase_add_test(opt, test_lr_schedules_match_torch);
    tcase_add_test(opt, test_flatten_views_alias_the_block);
    tcase_add_loop_test(opt, test_flatten_optimizer_step_equals_per_parameter, 0, n_optim);
    tcase_add_test(err, test_flatten_rejects_nested_and_late_parameters);
    tcase_add_test(err, test_linear_rejects_wrong_features);
    tcase_add_test(err, test_layers_reject_wrong_shapes);
    tcase_add_test(err, test_losses_reject_bad_input);
    tcase_add_test(err, test_sequential_reports_first_error);
    tcase_add_test(err, test_module_construction_errors_do_not_leak);
    tcase_add_test(err, test_optimizer_refuses_nonfinite_gradients);
    tcase_add_test(err, test_null_input_propagates);
    tcase_add_test(err, test_null_input_names_the_op_and_argument);
    for (int i = 0; i < 4; i++) suite_add_tcase(s, all[i]);
    return s;
}

ND_TEST_MAIN(nn_suite)

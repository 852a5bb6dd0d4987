/* SPDX-License-Identifier: MIT
 * tests/test_autograd.c: the autograd module's Check suite. Every op's forward values against
 * hand-computed numbers (broadcasting included); every op's gradient and gradient-of-gradient
 * against central differences (gradcheck.h), driven by a table indexed by op id so an op added to
 * ND_OP_LIST without a case fails; the engine (accumulation, nd_grad, seeds, deep chains, a nested
 * nd_grad inside a custom op's backward as the ODE adjoint does, Hessian-vector products); and
 * every error path, whose message must name the op and the shapes.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test_main.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers: tensors from literals, value and shape checks, random leaves.
 */
#define S(...) ((int[]){__VA_ARGS__})
#define V(...) ((double[]){__VA_ARGS__})
#define COUNT(...) (sizeof((double[]){__VA_ARGS__}) / sizeof(double))

/* An arena tensor holding v (doubles, so literals read naturally in both precisions). */
static nd_tensor *tensor(int ndim, const int *shape, const double *v)
{
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < t->size; i++) t->data[i] = (nd_real)v[i];
    return t;
}

/* The same, as a leaf that requires grad. */
static nd_tensor *leaf(int ndim, const int *shape, const double *v)
{
    nd_tensor *t = tensor(ndim, shape, v);
    t->requires_grad = true;
    return t;
}

/* A leaf of uniform values in [lo, hi), from a fixed seed. */
static nd_tensor *rand_leaf(int ndim, const int *shape, double lo, double hi, uint64_t seed)
{
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    ck_assert_ptr_nonnull(t);
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_uniform(t, &rng, lo, hi);
    t->requires_grad = true;
    return t;
}

static void check_values(const nd_tensor *t, const double *v, size_t n, double tol, int line)
{
    ck_assert_msg(t != NULL, "line %d: NULL result: %s", line, nd_ctx_errmsg(ctx));
    ck_assert_msg(t->size == n, "line %d: %zu elements, expected %zu", line, t->size, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)t->data[i] - v[i]) <= tol * (1 + fabs(v[i])),
                      "line %d: element %zu is %.17g, expected %.17g", line, i, (double)t->data[i],
                      v[i]);
}
#define expect_values(t, ...) check_values(t, V(__VA_ARGS__), COUNT(__VA_ARGS__), FWD_TOL, __LINE__)

static void check_shape(const nd_tensor *t, int ndim, const int *shape, int line)
{
    ck_assert_msg(t != NULL, "line %d: NULL result: %s", line, nd_ctx_errmsg(ctx));
    char got[64];
    ck_assert_msg(t->ndim == ndim, "line %d: shape %s has %d dims, expected %d", line,
                  nd_shape_str(t, got), t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(t->shape[i] == shape[i], "line %d: shape %s, dim %d expected %d", line,
                      nd_shape_str(t, got), i, shape[i]);
}
#define expect_shape(t, ...)                                                                       \
    check_shape(t, (int)(sizeof(S(__VA_ARGS__)) / sizeof(int)), S(__VA_ARGS__), __LINE__)
#define expect_scalar_shape(t) check_shape(t, 0, NULL, __LINE__)

/* A smooth, non-even function applied after linear ops, so their second-order check has a
 * nonzero second derivative to compare: y^2 + y/2. */
static nd_tensor *nl(nd_ctx *c, nd_tensor *y)
{
    return nd_mul(c, y, nd_add_scalar(c, y, (nd_real)0.5));
}

/* Whether op appears in y's graph (and, where the registry fixes it, with its number of
 * inputs). Iterative, over a small graph. */
static bool graph_has_op(nd_tensor *y, int op)
{
    nd_tensor *stack[512], *seen[512];
    int n_stack = 0, n_seen = 0;
    stack[n_stack++] = y;
    while (n_stack > 0) {
        nd_tensor *t = stack[--n_stack];
        if (t->op == op) {
            if (nd_ops[op].n_src >= 0) ck_assert_int_eq(t->n_src, nd_ops[op].n_src);
            return true;
        }
        for (int i = 0; i < t->n_src; i++) {
            bool known = false;
            for (int k = 0; k < n_seen && !known; k++) known = seen[k] == t->src[i];
            if (known) continue;
            ck_assert_int_lt(n_seen, 512);
            seen[n_seen++] = t->src[i];
            stack[n_stack++] = t->src[i];
        }
    }
    return false;
}

static int checked_op; /* the op that check_grads last verified */

/* First-order gradcheck and second-order gradgradcheck of f at in, after checking that f's graph
 * records op (ND_OP_NONE: no op check). Tolerances come from gc_default_tol. */
static void check_grads_(int op, gc_fn f, nd_tensor **in, int n, void *user, int line)
{
    nd_mark m = nd_ctx_mark(ctx);
    nd_tensor *y = f(ctx, in, user);
    ck_assert_msg(y != NULL, "line %d: f failed: %s", line, nd_ctx_errmsg(ctx));
    if (op != ND_OP_NONE)
        ck_assert_msg(graph_has_op(y, op), "line %d: the graph does not record op %s", line,
                      nd_ops[op].name);
    nd_ctx_rewind(ctx, m);
    char report[256] = "";
    gc_tol tol = gc_default_tol();
    ck_assert_msg(gradcheck(ctx, f, in, n, user, tol, report), "line %d: gradcheck: %s", line,
                  report);
    ck_assert_msg(gradgradcheck(ctx, f, in, n, user, tol, report), "line %d: gradgradcheck: %s",
                  line, report);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    checked_op = op;
}
#define check_grads(op, f, in, n, user) check_grads_(op, f, in, n, user, __LINE__)

/* ---------------------------------------------------------------------------------------------
 * Custom ops used by the tests.
 */
/* y = x^3 with backward 3 x^2 g, built from ops so it is differentiable again. state counts
 * backward calls. */
static void cube_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    if (state) (*(int *)state)++;
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(c, x, nd_mul(c, out->gnode, nd_mul_scalar(c, nd_mul(c, x, x), 3)));
}

static nd_tensor *cube(nd_ctx *c, nd_tensor *x, int *calls)
{
    if (!x) return NULL;
    nd_tensor *y = nd_tensor_new(c, x->ndim, x->shape);
    if (!y) return NULL;
    for (size_t i = 0; i < x->size; i++) y->data[i] = x->data[i] * x->data[i] * x->data[i];
    nd_custom_op op = {"cube", cube_backward, calls}; /* copied by nd_record_custom */
    return nd_record_custom(c, y, &op, 1, &x);
}

/* y = a b + c d over four same-shaped inputs: more inputs than the inline src storage holds. */
static void fma2_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    (void)state;
    nd_tensor **s = out->src, *g = out->gnode;
    nd_accumulate_grad(c, s[0], nd_mul(c, g, s[1]));
    nd_accumulate_grad(c, s[1], nd_mul(c, g, s[0]));
    nd_accumulate_grad(c, s[2], nd_mul(c, g, s[3]));
    nd_accumulate_grad(c, s[3], nd_mul(c, g, s[2]));
}

static nd_tensor *fma2(nd_ctx *c, nd_tensor **x)
{
    nd_tensor *y = nd_tensor_new(c, x[0]->ndim, x[0]->shape);
    if (!y) return NULL;
    for (size_t i = 0; i < y->size; i++)
        y->data[i] = x[0]->data[i] * x[1]->data[i] + x[2]->data[i] * x[3]->data[i];
    nd_custom_op op = {"fma2", fma2_backward, NULL};
    return nd_record_custom(c, y, &op, 4, x);
}

/* ---------------------------------------------------------------------------------------------
 * The gradcheck case of every op, as gc_fn functions and a table indexed by op id.
 */
static nd_tensor *f_add(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_add(c, x[0], x[1]));
}
static nd_tensor *f_sub(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_sub(c, x[0], x[1]));
}
static nd_tensor *f_mul(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_mul(c, x[0], x[1]);
}
static nd_tensor *f_div(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_div(c, x[0], x[1]);
}
static nd_tensor *f_neg(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_neg(c, x[0]));
}
static nd_tensor *f_add_scalar(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_add_scalar(c, x[0], (nd_real)0.7));
}
static nd_tensor *f_mul_scalar(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_mul_scalar(c, x[0], (nd_real)-1.3));
}
static nd_tensor *f_pow_scalar(nd_ctx *c, nd_tensor **x, void *u)
{
    return nd_pow_scalar(c, x[0], (nd_real)(u ? *(double *)u : 2.5));
}
static nd_tensor *f_exp(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_exp(c, x[0]);
}
static nd_tensor *f_log(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_log(c, x[0]);
}
static nd_tensor *f_sqrt(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_sqrt(c, x[0]);
}
static nd_tensor *f_abs(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_abs(c, x[0]));
}
static nd_tensor *f_sin(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_sin(c, x[0]);
}
static nd_tensor *f_cos(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_cos(c, x[0]);
}
static nd_tensor *f_tanh(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_tanh(c, x[0]);
}
static nd_tensor *f_tanh_backward(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_tanh_backward(c, x[0], x[1]);
}
static nd_tensor *f_sigmoid(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_sigmoid(c, x[0]);
}
static nd_tensor *f_relu(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_relu(c, x[0]));
}
static nd_tensor *f_softplus(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_softplus(c, x[0]);
}

typedef struct {
    bool ta, tb;
} mm_cfg;

static nd_tensor *f_matmul(nd_ctx *c, nd_tensor **x, void *u)
{
    const mm_cfg *cfg = u;
    return cfg ? nd_matmul_t(c, x[0], x[1], cfg->ta, cfg->tb) : nd_matmul(c, x[0], x[1]);
}
static nd_tensor *f_transpose(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_transpose(c, x[0]));
}
static nd_tensor *f_reshape(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_reshape(c, x[0], 2, S(-1, 2)));
}
static nd_tensor *f_expand(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_expand(c, x[0], 3, S(2, 3, 4)));
}
static nd_tensor *f_sum_to(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_sum_to(c, x[0], 2, S(3, 1)));
}
static nd_tensor *f_sum(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_sum(c, x[0]));
}

typedef struct {
    int axis;
    bool keepdim;
} axis_cfg;

static nd_tensor *f_sum_axis(nd_ctx *c, nd_tensor **x, void *u)
{
    const axis_cfg *a = u;
    return nl(c, nd_sum_axis(c, x[0], a ? a->axis : -1, a ? a->keepdim : false));
}
static nd_tensor *f_max_axis(nd_ctx *c, nd_tensor **x, void *u)
{
    const axis_cfg *a = u;
    return nl(c, nd_max_axis(c, x[0], a ? a->axis : 1, a ? a->keepdim : false));
}
static nd_tensor *f_log_softmax(nd_ctx *c, nd_tensor **x, void *u)
{
    const axis_cfg *a = u;
    return nd_log_softmax(c, x[0], a ? a->axis : 1);
}
static nd_tensor *f_concat(nd_ctx *c, nd_tensor **x, void *u)
{
    const axis_cfg *a = u; /* axis, and keepdim reused as "four inputs" */
    return nl(c, nd_concat(c, x, a && a->keepdim ? 4 : 3, a ? a->axis : 1));
}
static nd_tensor *f_slice(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_slice(c, x[0], 1, 1, 2));
}
static nd_tensor *f_pad(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_pad(c, x[0], 0, 1, 4));
}
static const nd_real lincomb_coef[4] = {1, (nd_real)-0.5, 0, 2};
static nd_tensor *f_lincomb(nd_ctx *c, nd_tensor **x, void *u)
{
    int n = u ? *(int *)u : 4; /* four inputs: more than the inline src storage */
    return nl(c, nd_lincomb(c, x, lincomb_coef, n));
}
/* a window with unequal kernel, stride and padding per dim, so a swapped pair shows */
static const nd_window2d test_window = {.kh = 2, .kw = 3, .sh = 2, .sw = 1, .ph = 1, .pw = 0};
static nd_tensor *f_im2col(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_im2col(c, x[0], test_window));
}
static nd_tensor *f_col2im(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_col2im(c, x[0], S(1, 2, 3, 4), test_window));
}
static nd_tensor *f_custom(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return fma2(c, x);
}

/* Distinct values 0.1 apart (much more than a float gradcheck step), for max: no ties under
 * perturbation, so the max is differentiable there. */
static nd_tensor *spaced_leaf(int ndim, const int *shape)
{
    static const double perm[] = {7, 2, 11, 4, 0, 9, 5, 1, 10, 3, 8, 6, 13, 12, 15, 14};
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    ck_assert_uint_le(t->size, sizeof perm / sizeof perm[0]);
    for (size_t i = 0; i < t->size; i++) t->data[i] = (nd_real)(0.1 * perm[i] - 0.6);
    t->requires_grad = true;
    return t;
}

/* Values away from 0 (the kink of relu and abs) by far more than the gradcheck step. */
static nd_tensor *kinked_leaf(void)
{
    return leaf(2, S(2, 3), V(-1.2, -0.4, 0.3, 0.9, -0.7, 1.5));
}

#define CASE1(fn, x)                                                                               \
    do {                                                                                           \
        nd_tensor *in_[] = {x};                                                                    \
        check_grads(op, fn, in_, 1, NULL);                                                         \
    } while (0)
#define CASE2(fn, a, b)                                                                            \
    do {                                                                                           \
        nd_tensor *in_[] = {a, b};                                                                 \
        check_grads(op, fn, in_, 2, NULL);                                                         \
    } while (0)

typedef void (*op_case)(int op);

static void case_add(int op)
{
    CASE2(f_add, rand_leaf(2, S(2, 3), -1, 1, 1), rand_leaf(1, S(3), -1, 1, 2));
}
static void case_sub(int op)
{
    CASE2(f_sub, rand_leaf(3, S(2, 1, 3), -1, 1, 3), rand_leaf(2, S(4, 1), -1, 1, 4));
}
static void case_mul(int op)
{
    CASE2(f_mul, rand_leaf(2, S(3, 1), -1, 1, 5), rand_leaf(2, S(1, 4), -1, 1, 6));
}
static void case_div(int op)
{
    CASE2(f_div, rand_leaf(2, S(2, 3), -1, 1, 7), rand_leaf(1, S(3), 0.5, 1.5, 8));
}
static void case_neg(int op)
{
    CASE1(f_neg, rand_leaf(2, S(2, 3), -1, 1, 9));
}
static void case_add_scalar(int op)
{
    CASE1(f_add_scalar, rand_leaf(2, S(2, 3), -1, 1, 10));
}
static void case_mul_scalar(int op)
{
    CASE1(f_mul_scalar, rand_leaf(2, S(2, 3), -1, 1, 11));
}
static void case_pow_scalar(int op)
{
    CASE1(f_pow_scalar, rand_leaf(2, S(2, 3), 0.5, 1.5, 12));
}
static void case_exp(int op)
{
    CASE1(f_exp, rand_leaf(2, S(2, 3), -1, 1, 13));
}
static void case_log(int op)
{
    CASE1(f_log, rand_leaf(2, S(2, 3), 0.5, 2, 14));
}
static void case_sqrt(int op)
{
    CASE1(f_sqrt, rand_leaf(2, S(2, 3), 0.5, 2, 15));
}
static void case_abs(int op)
{
    CASE1(f_abs, kinked_leaf());
}
static void case_sin(int op)
{
    CASE1(f_sin, rand_leaf(2, S(2, 3), -2, 2, 16));
}
static void case_cos(int op)
{
    CASE1(f_cos, rand_leaf(2, S(2, 3), -2, 2, 17));
}
static void case_tanh(int op)
{
    CASE1(f_tanh, rand_leaf(2, S(2, 3), -1.5, 1.5, 18));
}
static void case_tanh_backward(int op)
{
    CASE2(f_tanh_backward, rand_leaf(2, S(2, 3), -0.9, 0.9, 19), rand_leaf(2, S(2, 3), -1, 1, 20));
}
static void case_sigmoid(int op)
{
    CASE1(f_sigmoid, rand_leaf(2, S(2, 3), -3, 3, 21));
}
static void case_relu(int op)
{
    CASE1(f_relu, kinked_leaf());
}
static void case_softplus(int op)
{
    CASE1(f_softplus, rand_leaf(2, S(2, 3), -3, 3, 22));
}
static void case_matmul(int op)
{
    CASE2(f_matmul, rand_leaf(2, S(3, 4), -1, 1, 23), rand_leaf(2, S(4, 2), -1, 1, 24));
}
static void case_transpose(int op)
{
    CASE1(f_transpose, rand_leaf(3, S(2, 3, 4), -1, 1, 25));
}
static void case_reshape(int op)
{
    CASE1(f_reshape, rand_leaf(2, S(3, 4), -1, 1, 26));
}
static void case_expand(int op)
{
    CASE1(f_expand, rand_leaf(2, S(3, 1), -1, 1, 27));
}
static void case_sum_to(int op)
{
    CASE1(f_sum_to, rand_leaf(3, S(2, 3, 4), -1, 1, 28));
}
static void case_sum(int op)
{
    CASE1(f_sum, rand_leaf(2, S(2, 3), -1, 1, 29));
}
static void case_sum_axis(int op)
{
    CASE1(f_sum_axis, rand_leaf(3, S(2, 3, 4), -1, 1, 30));
}
static void case_max_axis(int op)
{
    CASE1(f_max_axis, spaced_leaf(2, S(3, 4)));
}
static void case_log_softmax(int op)
{
    CASE1(f_log_softmax, rand_leaf(2, S(3, 4), -2, 2, 31));
}
static void case_slice(int op)
{
    CASE1(f_slice, rand_leaf(2, S(3, 4), -1, 1, 32));
}
static void case_pad(int op)
{
    CASE1(f_pad, rand_leaf(2, S(2, 2), -1, 1, 33));
}

static void case_im2col(int op)
{
    CASE1(f_im2col, rand_leaf(4, S(1, 2, 3, 4), -1, 1, 37));
}
/* rows for a (1, 2, 3, 4) image: OH = (3 + 2 - 2) / 2 + 1 = 2, OW = 4 - 3 + 1 = 2 */
static void case_col2im(int op)
{
    CASE1(f_col2im, rand_leaf(2, S(4, 12), -1, 1, 38));
}

/* conv2d with stride and padding from u (int[2]); bias when a third input is given */
static nd_tensor *f_conv2d(nd_ctx *c, nd_tensor **x, void *u)
{
    const int *sp = u;
    return nl(c, nd_conv2d(c, x[0], x[1], sp[2] ? x[2] : NULL, sp[0], sp[1]));
}

/* x (2, 3, 5, 4), w (2, 3, 3, 3), b (2,), stride 2, padding 1: out (2, 2, 3, 2) */
static void case_conv2d(int op)
{
    nd_tensor *in[] = {rand_leaf(4, S(2, 3, 5, 4), -1, 1, 50),
                       rand_leaf(4, S(2, 3, 3, 3), -1, 1, 51), rand_leaf(1, S(2), -1, 1, 52)};
    check_grads(op, f_conv2d, in, 3, S(2, 1, 1));
}

/* group_norm with groups, weight and bias flags from u (int[3]); inputs x, then w, b as flagged */
static nd_tensor *f_group_norm(nd_ctx *c, nd_tensor **x, void *u)
{
    const int *f = u;
    nd_tensor *w = f[1] ? x[1] : NULL, *b = f[2] ? x[1 + f[1]] : NULL;
    return nl(c, nd_group_norm(c, x[0], f[0], w, b, 1e-5));
}

/* x (2, 4, 3, 2) in 2 groups, w (4,), b (4,) */
static void case_group_norm(int op)
{
    nd_tensor *in[] = {rand_leaf(4, S(2, 4, 3, 2), -1, 1, 53), rand_leaf(1, S(4), 0.5, 1.5, 54),
                       rand_leaf(1, S(4), -1, 1, 55)};
    check_grads(op, f_group_norm, in, 3, S(2, 1, 1));
}

/* max_pool2d with kernel and stride from u (int[2]) */
static nd_tensor *f_max_pool2d(nd_ctx *c, nd_tensor **x, void *u)
{
    const int *ks = u;
    return nl(c, nd_max_pool2d(c, x[0], ks[0], ks[1]));
}

/* x (2, 2, 5, 4) with well-separated values (no ties within a finite-difference step), 2x2
 * windows at stride 1 (overlapping): out (2, 2, 4, 3) */
static void case_max_pool2d(int op)
{
    nd_tensor *x = rand_leaf(4, S(2, 2, 5, 4), 0, 1, 56);
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)(0.1 * (double)((i * 37) % 80) - 4);
    check_grads(op, f_max_pool2d, &x, 1, S(2, 1));
}

/* linear with a bias when a third input is given (u: int[1]) */
static nd_tensor *f_linear(nd_ctx *c, nd_tensor **x, void *u)
{
    return nl(c, nd_linear(c, x[0], x[1], *(int *)u ? x[2] : NULL));
}

/* x (3, 4), w (2, 4), b (2,) */
static void case_linear(int op)
{
    nd_tensor *in[] = {rand_leaf(2, S(3, 4), -1, 1, 57), rand_leaf(2, S(2, 4), -1, 1, 58),
                       rand_leaf(1, S(2), -1, 1, 59)};
    check_grads(op, f_linear, in, 3, S(1));
}

static void case_lincomb(int op)
{
    nd_tensor *in[4];
    for (int i = 0; i < 4; i++) in[i] = rand_leaf(2, S(2, 3), -1, 1, 44 + (uint64_t)i);
    check_grads(op, f_lincomb, in, 4, NULL);
}

static void case_concat(int op)
{
    nd_tensor *in[] = {rand_leaf(2, S(2, 1), -1, 1, 34), rand_leaf(2, S(2, 2), -1, 1, 35),
                       rand_leaf(2, S(2, 3), -1, 1, 36)};
    check_grads(op, f_concat, in, 3, NULL);
}

static void case_custom(int op)
{
    nd_tensor *in[4];
    for (int i = 0; i < 4; i++) in[i] = rand_leaf(2, S(2, 3), -1, 1, 40 + (uint64_t)i);
    check_grads(op, f_custom, in, 4, NULL);
}

/* One case per op of ND_OP_LIST; a missing entry fails test_every_op_is_registered_and_checked. */
static const op_case op_cases[ND_OP_COUNT] = {
    [ND_OP_ADD] = case_add,
    [ND_OP_SUB] = case_sub,
    [ND_OP_MUL] = case_mul,
    [ND_OP_DIV] = case_div,
    [ND_OP_NEG] = case_neg,
    [ND_OP_ADD_SCALAR] = case_add_scalar,
    [ND_OP_MUL_SCALAR] = case_mul_scalar,
    [ND_OP_POW_SCALAR] = case_pow_scalar,
    [ND_OP_EXP] = case_exp,
    [ND_OP_LOG] = case_log,
    [ND_OP_SQRT] = case_sqrt,
    [ND_OP_ABS] = case_abs,
    [ND_OP_SIN] = case_sin,
    [ND_OP_COS] = case_cos,
    [ND_OP_TANH] = case_tanh,
    [ND_OP_TANH_BACKWARD] = case_tanh_backward,
    [ND_OP_SIGMOID] = case_sigmoid,
    [ND_OP_RELU] = case_relu,
    [ND_OP_SOFTPLUS] = case_softplus,
    [ND_OP_MATMUL] = case_matmul,
    [ND_OP_TRANSPOSE] = case_transpose,
    [ND_OP_RESHAPE] = case_reshape,
    [ND_OP_EXPAND] = case_expand,
    [ND_OP_SUM_TO] = case_sum_to,
    [ND_OP_SUM] = case_sum,
    [ND_OP_SUM_AXIS] = case_sum_axis,
    [ND_OP_MAX_AXIS] = case_max_axis,
    [ND_OP_LOG_SOFTMAX] = case_log_softmax,
    [ND_OP_CONCAT] = case_concat,
    [ND_OP_SLICE] = case_slice,
    [ND_OP_PAD] = case_pad,
    [ND_OP_LINCOMB] = case_lincomb,
    [ND_OP_IM2COL] = case_im2col,
    [ND_OP_COL2IM] = case_col2im,
    [ND_OP_CONV2D] = case_conv2d,
    [ND_OP_GROUP_NORM] = case_group_norm,
    [ND_OP_MAX_POOL2D] = case_max_pool2d,
    [ND_OP_LINEAR] = case_linear,
    [ND_OP_CUSTOM] = case_custom,
};

/* ---------------------------------------------------------------------------------------------
 * backward: the registry
 */
START_TEST(test_every_op_is_registered_and_checked)
{
    int op = _i;
    const nd_op_info *info = &nd_ops[op];
    ck_assert_msg(info->name && info->name[0], "op %d has no name", op);
    ck_assert_msg(info->backward != NULL, "op %s has no backward rule", info->name);
    ck_assert_msg(info->n_src == -1 || (info->n_src >= 1 && info->n_src <= 3),
                  "op %s has %d inputs", info->name, info->n_src);
    for (int j = 1; j < ND_OP_COUNT; j++)
        if (j != op) ck_assert_str_ne(info->name, nd_ops[j].name);
    ck_assert_msg(op_cases[op] != NULL, "op %s has no gradcheck case in op_cases[]", info->name);
    checked_op = ND_OP_NONE;
    op_cases[op](op);
    ck_assert_msg(checked_op == op, "the case registered for op %s did not check it", info->name);
}
END_TEST

START_TEST(test_registry_leaf_entry)
{
    ck_assert_str_eq(nd_ops[ND_OP_NONE].name, "leaf");
    ck_assert(nd_ops[ND_OP_NONE].backward == NULL);
    ck_assert_int_eq(ND_OP_NONE, 0);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: elementwise with broadcasting
 */
START_TEST(test_add_broadcasts_row_vector)
{
    nd_tensor *a = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *b = tensor(1, S(3), V(10, 20, 30));
    nd_tensor *y = nd_add(ctx, a, b);
    expect_shape(y, 2, 3);
    expect_values(y, 11, 22, 33, 14, 25, 36);
    nd_tensor *y2 = nd_add(ctx, b, a); /* either order */
    expect_shape(y2, 2, 3);
    expect_values(y2, 11, 22, 33, 14, 25, 36);
}
END_TEST

START_TEST(test_mul_broadcasts_column_by_row)
{
    nd_tensor *a = tensor(2, S(2, 1), V(1, 2));
    nd_tensor *b = tensor(2, S(1, 3), V(1, 2, 3));
    nd_tensor *y = nd_mul(ctx, a, b);
    expect_shape(y, 2, 3);
    expect_values(y, 1, 2, 3, 2, 4, 6);
}
END_TEST

START_TEST(test_binary_ops_with_scalar)
{
    nd_tensor *s = nd_scalar(ctx, 2);
    nd_tensor *x = tensor(1, S(3), V(1, 4, -8));
    expect_values(nd_sub(ctx, s, x), 1, -2, 10);
    expect_values(nd_sub(ctx, x, s), -1, 2, -10);
    expect_values(nd_div(ctx, x, s), 0.5, 2, -4);
    expect_values(nd_div(ctx, s, x), 2, 0.5, -0.25);
    expect_values(nd_mul(ctx, s, x), 2, 8, -16);
    expect_values(nd_add(ctx, x, s), 3, 6, -6);
    expect_shape(nd_add(ctx, x, s), 3);
    nd_tensor *ss = nd_mul(ctx, s, nd_scalar(ctx, 3));
    expect_scalar_shape(ss);
    expect_values(ss, 6);
}
END_TEST

START_TEST(test_sub_div_same_shape)
{
    nd_tensor *a = tensor(2, S(2, 2), V(5, 6, 7, 8));
    nd_tensor *b = tensor(2, S(2, 2), V(1, 2, 4, 8));
    expect_values(nd_sub(ctx, a, b), 4, 4, 3, 0);
    expect_values(nd_div(ctx, a, b), 5, 3, 1.75, 1);
}
END_TEST

/* (2,1,3) + (4,1) -> (2,4,3): y[i,j,k] = a[i,0,k] + b[j,0] */
START_TEST(test_add_broadcasts_3d)
{
    nd_tensor *a = tensor(3, S(2, 1, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *b = tensor(2, S(4, 1), V(10, 20, 30, 40));
    nd_tensor *y = nd_add(ctx, a, b);
    expect_shape(y, 2, 4, 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++)
                ck_assert(y->data[(i * 4 + j) * 3 + k] == (nd_real)(1 + 3 * i + k + 10 * (j + 1)));
}
END_TEST

/* (2,1,3,1) * (1,2,1,4) -> (2,2,3,4): y[i,j,k,l] = a[i,0,k,0] * b[0,j,0,l] */
START_TEST(test_mul_broadcasts_4d)
{
    nd_tensor *a = tensor(4, S(2, 1, 3, 1), V(1, 2, 3, 4, 5, 6));
    nd_tensor *b = tensor(4, S(1, 2, 1, 4), V(1, -1, 2, -2, 3, -3, 4, -4));
    nd_tensor *y = nd_mul(ctx, a, b);
    expect_shape(y, 2, 2, 3, 4);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++)
                for (int l = 0; l < 4; l++) {
                    double av = 1 + 3 * i + k, bv = b->data[j * 4 + l];
                    ck_assert(y->data[((i * 2 + j) * 3 + k) * 4 + l] == (nd_real)(av * bv));
                }
    /* and a lower-rank operand against 4-D: (3,1) - (2,2,3,4) */
    nd_tensor *c = tensor(2, S(3, 1), V(100, 200, 300));
    nd_tensor *d = nd_sub(ctx, c, y);
    expect_shape(d, 2, 2, 3, 4);
    for (size_t n = 0; n < d->size; n++) {
        int k = (int)(n / 4 % 3);
        ck_assert(d->data[n] == (nd_real)(100 * (k + 1)) - y->data[n]);
    }
}
END_TEST

START_TEST(test_expand_and_sum_to_values)
{
    nd_tensor *x = tensor(2, S(3, 1), V(1, 2, 3));
    nd_tensor *e = nd_expand(ctx, x, 3, S(2, 3, 4));
    expect_shape(e, 2, 3, 4);
    for (size_t n = 0; n < e->size; n++) ck_assert(e->data[n] == (nd_real)(n / 4 % 3 + 1));
    ck_assert_ptr_eq(nd_expand(ctx, x, 2, S(3, 1)), x); /* the same shape is x itself */

    nd_tensor *s = nd_sum_to(ctx, e, 2, S(3, 1)); /* undoes it: 8 copies of each */
    expect_shape(s, 3, 1);
    expect_values(s, 8, 16, 24);
    nd_tensor *t = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    expect_values(nd_sum_to(ctx, t, 1, S(3)), 5, 7, 9);
    expect_values(nd_sum_to(ctx, t, 2, S(2, 1)), 6, 15);
    nd_tensor *all = nd_sum_to(ctx, t, 0, NULL);
    expect_scalar_shape(all);
    expect_values(all, 21);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: elementwise, one input
 */
START_TEST(test_unary_values)
{
    nd_tensor *x = tensor(1, S(4), V(-2, -0.5, 0.5, 3));
    expect_values(nd_neg(ctx, x), 2, 0.5, -0.5, -3);
    expect_values(nd_add_scalar(ctx, x, (nd_real)1.5), -0.5, 1, 2, 4.5);
    expect_values(nd_mul_scalar(ctx, x, -2), 4, 1, -1, -6);
    expect_values(nd_abs(ctx, x), 2, 0.5, 0.5, 3);
    expect_values(nd_relu(ctx, x), 0, 0, 0.5, 3);
    expect_values(nd_relu(ctx, tensor(1, S(1), V(0))), 0);

    nd_tensor *t = tensor(1, S(3), V(0, 0.5, 1));
    expect_values(nd_exp(ctx, t), 1, 1.6487212707001282, 2.718281828459045);
    expect_values(nd_tanh(ctx, t), 0, 0.46211715726000974, 0.7615941559557649);
    expect_values(nd_sigmoid(ctx, t), 0.5, 0.6224593312018546, 0.7310585786300049);
    expect_values(nd_softplus(ctx, t), 0.6931471805599453, 0.9740769841801067, 1.3132616875182228);
    expect_values(nd_sin(ctx, t), 0, 0.479425538604203, 0.8414709848078965);
    expect_values(nd_cos(ctx, t), 1, 0.8775825618903728, 0.5403023058681398);

    nd_tensor *p = tensor(1, S(3), V(0.25, 1, 4));
    expect_values(nd_log(ctx, p), -1.3862943611198906, 0, 1.3862943611198906);
    expect_values(nd_sqrt(ctx, p), 0.5, 1, 2);
}
END_TEST

START_TEST(test_pow_scalar_values)
{
    nd_tensor *x = tensor(1, S(3), V(-2, 0.5, 3));
    expect_values(nd_pow_scalar(ctx, x, 2), 4, 0.25, 9);
    expect_values(nd_pow_scalar(ctx, x, 3), -8, 0.125, 27);
    expect_values(nd_pow_scalar(ctx, x, 1), -2, 0.5, 3);
    expect_values(nd_pow_scalar(ctx, x, 0), 1, 1, 1);
    expect_values(nd_pow_scalar(ctx, x, -1), -0.5, 2, 1.0 / 3);
    nd_tensor *p = tensor(1, S(2), V(4, 9));
    expect_values(nd_pow_scalar(ctx, p, (nd_real)0.5), 2, 3);
    expect_values(nd_pow_scalar(ctx, p, (nd_real)-1.5), 0.125, 1.0 / 27);
}
END_TEST

START_TEST(test_saturating_ops_stay_finite)
{
    nd_tensor *x = tensor(1, S(4), V(-1000, -80, 80, 1000));
    nd_tensor *s = nd_sigmoid(ctx, x);
    ck_assert(nd_all_finite(s));
    ck_assert_double_eq_tol(s->data[0], 0, FWD_TOL);
    ck_assert_double_eq_tol(s->data[3], 1, FWD_TOL);
    nd_tensor *sp = nd_softplus(ctx, x);
    ck_assert(nd_all_finite(sp));
    expect_values(sp, 0, 0, 80, 1000);
    nd_tensor *t = nd_tanh(ctx, x);
    expect_values(t, -1, -1, 1, 1);
}
END_TEST

START_TEST(test_tanh_backward_values)
{
    nd_tensor *y = tensor(1, S(3), V(0.5, -0.2, 0));
    nd_tensor *g = tensor(1, S(3), V(2, 3, -1));
    expect_values(nd_tanh_backward(ctx, y, g), 1.5, 2.88, -1);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: matmul
 */
/* A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]: A B = [[58,64],[139,154]] */
START_TEST(test_matmul_2d_values)
{
    nd_tensor *a = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *b = tensor(2, S(3, 2), V(7, 8, 9, 10, 11, 12));
    nd_tensor *c = nd_matmul(ctx, a, b);
    expect_shape(c, 2, 2);
    expect_values(c, 58, 64, 139, 154);
    nd_tensor *v = nd_matmul(ctx, tensor(2, S(1, 3), V(1, 0, -1)), b); /* a (1, K) row */
    expect_shape(v, 1, 2);
    expect_values(v, -4, -4);
}
END_TEST

/* each flag combination, with the operands stored so that op(a) = A and op(b) = B */
START_TEST(test_matmul_t_all_transpose_flags)
{
    bool ta = _i & 1, tb = _i & 2;
    nd_tensor *a =
        ta ? tensor(2, S(3, 2), V(1, 4, 2, 5, 3, 6)) : tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *b = tb ? tensor(2, S(2, 3), V(7, 9, 11, 8, 10, 12))
                      : tensor(2, S(3, 2), V(7, 8, 9, 10, 11, 12));
    nd_tensor *c = nd_matmul_t(ctx, a, b, ta, tb);
    expect_shape(c, 2, 2);
    expect_values(c, 58, 64, 139, 154);

    /* the same, batched over a leading dim of 2: the second batch is -op(A) */
    nd_tensor *a3 = nd_concat(
        ctx,
        (nd_tensor *[]){nd_reshape(ctx, a, 3, S(1, a->shape[0], a->shape[1])),
                        nd_reshape(ctx, nd_neg(ctx, a), 3, S(1, a->shape[0], a->shape[1]))},
        2, 0);
    nd_tensor *b3 = nd_expand(ctx, b, 3, S(2, b->shape[0], b->shape[1]));
    nd_tensor *c3 = nd_matmul_t(ctx, a3, b3, ta, tb);
    expect_shape(c3, 2, 2, 2);
    expect_values(c3, 58, 64, 139, 154, -58, -64, -139, -154);
}
END_TEST

START_TEST(test_matmul_batched_values)
{
    /* batch 0: A B as above; batch 1: [[1,0,-1],[2,1,0]] @ [[1,2],[3,4],[5,6]] */
    nd_tensor *a = tensor(3, S(2, 2, 3), V(1, 2, 3, 4, 5, 6, 1, 0, -1, 2, 1, 0));
    nd_tensor *b = tensor(3, S(2, 3, 2), V(7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6));
    nd_tensor *c = nd_matmul(ctx, a, b);
    expect_shape(c, 2, 2, 2);
    expect_values(c, 58, 64, 139, 154, -4, -4, 5, 8);
}
END_TEST

START_TEST(test_matmul_3d_by_shared_2d)
{
    nd_tensor *a = tensor(3, S(2, 2, 3), V(1, 2, 3, 4, 5, 6, 1, 0, -1, 2, 1, 0));
    nd_tensor *b = tensor(2, S(3, 2), V(7, 8, 9, 10, 11, 12));
    nd_tensor *c = nd_matmul(ctx, a, b);
    expect_shape(c, 2, 2, 2);
    expect_values(c, 58, 64, 139, 154, -4, -4, 23, 26);
    nd_tensor *bt = tensor(2, S(2, 3), V(7, 9, 11, 8, 10, 12));
    nd_tensor *ct = nd_matmul_t(ctx, a, bt, false, true);
    expect_shape(ct, 2, 2, 2);
    expect_values(ct, 58, 64, 139, 154, -4, -4, 23, 26);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: shapes
 */
START_TEST(test_transpose_values)
{
    nd_tensor *x = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *t = nd_transpose(ctx, x);
    expect_shape(t, 3, 2);
    expect_values(t, 1, 4, 2, 5, 3, 6);
    nd_tensor *x3 = tensor(3, S(2, 2, 3), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    nd_tensor *t3 = nd_transpose(ctx, x3);
    expect_shape(t3, 2, 3, 2);
    expect_values(t3, 1, 4, 2, 5, 3, 6, 7, 10, 8, 11, 9, 12);
    nd_tensor *x4 = tensor(4, S(1, 2, 1, 2), V(1, 2, 3, 4));
    nd_tensor *t4 = nd_transpose(ctx, x4);
    expect_shape(t4, 1, 2, 2, 1);
    expect_values(t4, 1, 2, 3, 4);
}
END_TEST

START_TEST(test_reshape_infers_minus_one_and_shares_data)
{
    nd_tensor *x = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *flat = nd_reshape(ctx, x, 1, S(-1));
    expect_shape(flat, 6);
    expect_values(flat, 1, 2, 3, 4, 5, 6);
    ck_assert_ptr_eq(flat->data, x->data); /* a view, no copy */
    expect_shape(nd_reshape(ctx, x, 2, S(3, -1)), 3, 2);
    expect_shape(nd_reshape(ctx, x, 3, S(-1, 1, 2)), 3, 1, 2);
    expect_shape(nd_reshape(ctx, x, 4, S(1, 2, 3, 1)), 1, 2, 3, 1);
    nd_tensor *s = nd_reshape(ctx, tensor(1, S(1), V(7)), 0, NULL);
    expect_scalar_shape(s);
    expect_values(s, 7);
}
END_TEST

START_TEST(test_concat_three_inputs_axis0_and_axis1)
{
    nd_tensor *a = tensor(2, S(1, 2), V(1, 2));
    nd_tensor *b = tensor(2, S(2, 2), V(3, 4, 5, 6));
    nd_tensor *c = tensor(2, S(1, 2), V(7, 8));
    nd_tensor *y0 = nd_concat(ctx, (nd_tensor *[]){a, b, c}, 3, 0);
    expect_shape(y0, 4, 2);
    expect_values(y0, 1, 2, 3, 4, 5, 6, 7, 8);

    nd_tensor *p = tensor(2, S(2, 1), V(1, 2));
    nd_tensor *q = tensor(2, S(2, 2), V(3, 4, 5, 6));
    nd_tensor *r = tensor(2, S(2, 3), V(7, 8, 9, 10, 11, 12));
    nd_tensor *y1 = nd_concat(ctx, (nd_tensor *[]){p, q, r}, 3, 1);
    expect_shape(y1, 2, 6);
    expect_values(y1, 1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12);
    nd_tensor *yn = nd_concat(ctx, (nd_tensor *[]){p, q, r}, 3, -1); /* negative axis */
    expect_values(yn, 1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12);
    nd_tensor *one = nd_concat(ctx, (nd_tensor *[]){q}, 1, 0);
    expect_values(one, 3, 4, 5, 6);
}
END_TEST

START_TEST(test_slice_and_pad_values)
{
    nd_tensor *x = tensor(2, S(3, 4), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    nd_tensor *s1 = nd_slice(ctx, x, 1, 1, 2);
    expect_shape(s1, 3, 2);
    expect_values(s1, 2, 3, 6, 7, 10, 11);
    nd_tensor *s0 = nd_slice(ctx, x, 0, 2, 1);
    expect_shape(s0, 1, 4);
    expect_values(s0, 9, 10, 11, 12);
    expect_values(nd_slice(ctx, x, -1, 3, 1), 4, 8, 12);
    expect_values(nd_slice(ctx, x, 0, 0, 3), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);

    nd_tensor *y = tensor(2, S(2, 2), V(1, 2, 3, 4));
    nd_tensor *p1 = nd_pad(ctx, y, 1, 1, 4);
    expect_shape(p1, 2, 4);
    expect_values(p1, 0, 1, 2, 0, 0, 3, 4, 0);
    nd_tensor *p0 = nd_pad(ctx, y, 0, 0, 3);
    expect_shape(p0, 3, 2);
    expect_values(p0, 1, 2, 3, 4, 0, 0);
    expect_values(nd_slice(ctx, p1, 1, 1, 2), 1, 2, 3, 4); /* slice undoes pad */
}
END_TEST

START_TEST(test_lincomb_values)
{
    nd_tensor *a = tensor(1, S(3), V(1, 2, 3)), *b = tensor(1, S(3), V(10, 20, 30));
    nd_tensor *c = tensor(1, S(3), V(-1, 5, 0.5)), *d = tensor(1, S(3), V(100, 100, 100));
    nd_real coef[4] = {2, (nd_real)-0.5, 1, 0};
    nd_tensor *y = nd_lincomb(ctx, (nd_tensor *[]){a, b, c, d}, coef, 4);
    expect_shape(y, 3);
    expect_values(y, 2 - 5 - 1, 4 - 10 + 5, 6 - 15 + 0.5);
    coef[0] = 3; /* the coefficients are copied, not kept */
    nd_tensor *one = nd_lincomb(ctx, &a, coef, 1);
    expect_values(one, 3, 6, 9);
}
END_TEST

/* x (1, 1, 3, 3) = 1..9 */
START_TEST(test_im2col_and_col2im_values)
{
    nd_tensor *x = tensor(4, S(1, 1, 3, 3), V(1, 2, 3, 4, 5, 6, 7, 8, 9));
    nd_window2d k2 = {.kh = 2, .kw = 2, .sh = 1, .sw = 1};
    nd_tensor *r = nd_im2col(ctx, x, k2);
    expect_shape(r, 4, 4);
    expect_values(r, 1, 2, 4, 5, 2, 3, 5, 6, 4, 5, 7, 8, 5, 6, 8, 9);
    /* stride 2, padding 1: windows at (-1,-1), (-1,1), (1,-1), (1,1) */
    nd_window2d p1 = {.kh = 2, .kw = 2, .sh = 2, .sw = 2, .ph = 1, .pw = 1};
    nd_tensor *rp = nd_im2col(ctx, x, p1);
    expect_shape(rp, 4, 4);
    expect_values(rp, 0, 0, 0, 1, 0, 0, 2, 3, 0, 4, 0, 7, 5, 6, 8, 9);
    /* two channels: each row holds channel 0's window, then channel 1's */
    nd_tensor *x2 = tensor(4, S(1, 2, 2, 2), V(1, 2, 3, 4, 5, 6, 7, 8));
    nd_window2d full = {.kh = 2, .kw = 2, .sh = 1, .sw = 1};
    expect_values(nd_im2col(ctx, x2, full), 1, 2, 3, 4, 5, 6, 7, 8);
    /* an asymmetric window: kernel 2x3, stride 2x1, padding 1x0 over x (1, 1, 3, 4) = 1..12 */
    nd_tensor *x34 = tensor(4, S(1, 1, 3, 4), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    nd_tensor *ra = nd_im2col(ctx, x34, test_window);
    expect_shape(ra, 4, 6);
    expect_values(ra, 0, 0, 0, 1, 2, 3, 0, 0, 0, 2, 3, 4, 5, 6, 7, 9, 10, 11, 6, 7, 8, 10, 11, 12);
    expect_values(nd_col2im(ctx, nd_full(ctx, 2, S(4, 6), 1), S(1, 1, 3, 4), test_window), 1, 2, 2,
                  1, 1, 2, 2, 1, 1, 2, 2, 1);
    /* col2im of ones counts how many windows cover each pixel */
    nd_tensor *ones = nd_full(ctx, 2, S(4, 4), 1);
    nd_tensor *cnt = nd_col2im(ctx, ones, S(1, 1, 3, 3), k2);
    expect_shape(cnt, 1, 1, 3, 3);
    expect_values(cnt, 1, 2, 1, 2, 4, 2, 1, 2, 1);
    /* with padding the padded entries are dropped: each pixel is covered once */
    expect_values(nd_col2im(ctx, nd_full(ctx, 2, S(4, 4), 1), S(1, 1, 3, 3), p1), 1, 1, 1, 1, 1, 1,
                  1, 1, 1);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: reductions
 */
START_TEST(test_sum_and_mean_values)
{
    nd_tensor *x = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *s = nd_sum(ctx, x);
    expect_scalar_shape(s);
    expect_values(s, 21);
    expect_values(nd_mean(ctx, x), 3.5);
}
END_TEST

START_TEST(test_sum_axis_keepdim_and_negative_axis)
{
    nd_tensor *x = tensor(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *a0 = nd_sum_axis(ctx, x, 0, false);
    expect_shape(a0, 3);
    expect_values(a0, 5, 7, 9);
    nd_tensor *a0k = nd_sum_axis(ctx, x, 0, true);
    expect_shape(a0k, 1, 3);
    expect_values(a0k, 5, 7, 9);
    nd_tensor *a1 = nd_sum_axis(ctx, x, 1, false);
    expect_shape(a1, 2);
    expect_values(a1, 6, 15);
    nd_tensor *am1 = nd_sum_axis(ctx, x, -1, true);
    expect_shape(am1, 2, 1);
    expect_values(am1, 6, 15);
    nd_tensor *am2 = nd_sum_axis(ctx, x, -2, false);
    expect_shape(am2, 3);
    expect_values(am2, 5, 7, 9);

    /* the middle axis of (2, 3, 2) */
    nd_tensor *x3 = tensor(3, S(2, 3, 2), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    nd_tensor *m = nd_sum_axis(ctx, x3, 1, false);
    expect_shape(m, 2, 2);
    expect_values(m, 9, 12, 27, 30);
    nd_tensor *v = nd_sum_axis(ctx, tensor(1, S(3), V(1, 2, 3)), 0, false);
    expect_scalar_shape(v);
    expect_values(v, 6);

    nd_tensor *mean = nd_mean_axis(ctx, x3, -2, true);
    expect_shape(mean, 2, 1, 2);
    expect_values(mean, 3, 4, 9, 10);
    expect_values(nd_mean_axis(ctx, x, 1, false), 2, 5);
}
END_TEST

START_TEST(test_max_axis_values)
{
    nd_tensor *x = tensor(2, S(2, 3), V(1, 5, 3, 4, 2, 6));
    nd_tensor *m0 = nd_max_axis(ctx, x, 0, false);
    expect_shape(m0, 3);
    expect_values(m0, 4, 5, 6);
    nd_tensor *m1 = nd_max_axis(ctx, x, 1, true);
    expect_shape(m1, 2, 1);
    expect_values(m1, 5, 6);
    nd_tensor *mn = nd_max_axis(ctx, x, -1, false);
    expect_shape(mn, 2);
    expect_values(mn, 5, 6);
    nd_tensor *neg = tensor(2, S(2, 2), V(-3, -7, -9, -1));
    expect_values(nd_max_axis(ctx, neg, 1, false), -3, -1); /* not fooled by a 0 start */
}
END_TEST

/* the gradient goes to the first maximal element of each line, as PyTorch */
START_TEST(test_max_axis_gradient_goes_to_first_maximum)
{
    nd_tensor *x = leaf(2, S(2, 3), V(2, 2, 1, 0, 3, 3));
    nd_tensor *m = nd_max_axis(ctx, x, 1, false);
    expect_values(m, 2, 3);
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &m, NULL, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, 1, 0, 0, 0, 1, 0);
}
END_TEST

START_TEST(test_log_softmax_values_axis0_and_axis1)
{
    const double lse = 3.40760596444438; /* log(e + e^2 + e^3) */
    nd_tensor *x = tensor(2, S(1, 3), V(1, 2, 3));
    nd_tensor *y1 = nd_log_softmax(ctx, x, 1);
    expect_shape(y1, 1, 3);
    expect_values(y1, 1 - lse, 2 - lse, 3 - lse);
    nd_tensor *xt = tensor(2, S(3, 2), V(1, 0, 2, 0, 3, 0)); /* columns: (1,2,3) and (0,0,0) */
    nd_tensor *y0 = nd_log_softmax(ctx, xt, 0);
    expect_values(y0, 1 - lse, -log(3.0), 2 - lse, -log(3.0), 3 - lse, -log(3.0));
    nd_tensor *yneg = nd_log_softmax(ctx, xt, -2);
    expect_values(yneg, 1 - lse, -log(3.0), 2 - lse, -log(3.0), 3 - lse, -log(3.0));
    /* each row of exp(log_softmax) sums to 1 */
    nd_tensor *r = tensor(2, S(2, 4), V(0.3, -1, 2, 0.5, 4, 4, -2, 1));
    nd_tensor *p = nd_sum_axis(ctx, nd_exp(ctx, nd_log_softmax(ctx, r, 1)), 1, false);
    expect_values(p, 1, 1);
}
END_TEST

START_TEST(test_log_softmax_is_stable_for_large_inputs)
{
    const double c = 0.40760596444438; /* log(1 + e^-1 + e^-2) */
    nd_tensor *x = tensor(2, S(2, 3), V(1000, 1001, 1002, -1000, -1001, -1002));
    nd_tensor *y = nd_log_softmax(ctx, x, 1);
    ck_assert(nd_all_finite(y));
    /* the result is x - max - (log-sum-exp of x - max); only the rounding of x near 1000 is
     * lost, a few ulps of 1000 */
    check_values(y, V(-2 - c, -1 - c, -c, -c, -1 - c, -2 - c), 6, 4 * 1000 * ND_REAL_EPS, __LINE__);
    nd_tensor *z = nd_log_softmax(ctx, tensor(1, S(2), V(-1000, 0)), 0);
    ck_assert(nd_all_finite(z));
    check_values(z, V(-1000, 0), 2, 4 * ND_REAL_EPS, __LINE__);
    /* and its gradient: softmax weights, finite */
    nd_tensor *xl = leaf(1, S(3), V(1000, 1001, 1002));
    nd_tensor *yl = nd_log_softmax(ctx, xl, 0);
    nd_tensor *sel = nd_slice(ctx, yl, 0, 2, 1), *g;
    ck_assert_int_eq(nd_grad(ctx, &sel, NULL, 1, &xl, 1, &g, 0), ND_OK);
    ck_assert(nd_all_finite(g));
    const double s = 1 + exp(-1.0) + exp(-2.0); /* dy2/dx = e_2 - softmax(x) */
    check_values(g, V(-exp(-2.0) / s, -exp(-1.0) / s, 1 - 1 / s), 3, 1e3 * ND_REAL_EPS, __LINE__);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * backward: gradchecks beyond the registry's one case per op
 */
typedef struct {
    const char *name;
    gc_fn f;
    int op;
} binop_case;

static nd_tensor *f_add_raw(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_add(c, x[0], x[1]);
}
static nd_tensor *f_sub_raw(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_sub(c, x[0], x[1]);
}
/* (a op b) * (a op b): a smooth function whose second order involves the op's backward */
static nd_tensor *f_sq_mul(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_mul(c, x[0], x[1]));
}
static nd_tensor *f_sq_div(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_div(c, x[0], x[1]));
}

static const binop_case binops[] = {
    {"add", f_add, ND_OP_ADD},
    {"sub", f_sub, ND_OP_SUB},
    {"mul", f_sq_mul, ND_OP_MUL},
    {"div", f_sq_div, ND_OP_DIV},
};

/* broadcast patterns: (B,N)+(N,), (B,1)*(1,N), scalar with tensor both ways, 3-D, 4-D */
static const struct {
    int nda, ndb;
    int sa[4], sb[4];
} bcasts[] = {
    {2, 1, {4, 3}, {3}},          {2, 2, {4, 1}, {1, 3}},    {0, 2, {0}, {2, 3}},
    {2, 0, {2, 3}, {0}},          {3, 2, {2, 1, 3}, {4, 1}}, {4, 4, {2, 1, 3, 1}, {1, 2, 1, 2}},
    {3, 3, {2, 3, 2}, {2, 3, 2}},
};
#define N_BCASTS ((int)(sizeof bcasts / sizeof bcasts[0]))

START_TEST(test_binary_ops_broadcast_gradcheck)
{
    const binop_case *bc = &binops[_i / N_BCASTS];
    int k = _i % N_BCASTS;
    nd_tensor *a = rand_leaf(bcasts[k].nda, bcasts[k].sa, -1, 1, 100 + (uint64_t)_i);
    /* denominators in [0.5, 1.5], away from 0 */
    nd_tensor *b = bc->op == ND_OP_DIV
                       ? rand_leaf(bcasts[k].ndb, bcasts[k].sb, 0.5, 1.5, 200 + (uint64_t)_i)
                       : rand_leaf(bcasts[k].ndb, bcasts[k].sb, -1, 1, 200 + (uint64_t)_i);
    nd_tensor *in[] = {a, b};
    check_grads(bc->op, bc->f, in, 2, NULL);
    /* only one side requiring grad: the other gets nothing, the graph still records */
    b->requires_grad = false;
    check_grads(bc->op, bc->f, in, 1, NULL);
}
END_TEST

START_TEST(test_add_sub_first_order_through_broadcast)
{
    /* the raw sum and difference: exact gradients are counts of the broadcast copies */
    nd_tensor *a = rand_leaf(2, S(4, 3), -1, 1, 1), *b = rand_leaf(2, S(1, 3), -1, 1, 2);
    nd_tensor *y =
        nd_sub(ctx, f_add_raw(ctx, (nd_tensor *[]){a, b}, NULL), nd_mul_scalar(ctx, b, 3));
    nd_tensor *g[2];
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, (nd_tensor *[]){a, b}, 2, g, 0), ND_OK);
    for (int i = 0; i < 12; i++) ck_assert(g[0]->data[i] == 1);
    expect_shape(g[1], 1, 3);
    expect_values(g[1], -8, -8, -8); /* 4 (from a + b) - 3 * 4 */
    nd_tensor *d = f_sub_raw(ctx, (nd_tensor *[]){b, a}, NULL);
    ck_assert_int_eq(nd_grad(ctx, &d, NULL, 1, (nd_tensor *[]){a, b}, 2, g, 0), ND_OK);
    for (int i = 0; i < 12; i++) ck_assert(g[0]->data[i] == -1);
    expect_values(g[1], 4, 4, 4);
}
END_TEST

START_TEST(test_pow_scalar_exponents_gradcheck)
{
    static double exps[] = {2, 3, 1, 0.5, -1, -1.5, 2.5};
    double p = exps[_i];
    /* integer exponents on either sign; fractional ones on positive x */
    nd_tensor *x = p == floor(p) ? kinked_leaf() : rand_leaf(2, S(2, 3), 0.5, 2, 50);
    nd_tensor *in[] = {x};
    check_grads(ND_OP_POW_SCALAR, f_pow_scalar, in, 1, &p);
}
END_TEST

START_TEST(test_matmul_transpose_flags_gradcheck)
{
    mm_cfg cfg = {_i & 1, _i & 2};
    /* op(a) (3, 4) @ op(b) (4, 2) */
    nd_tensor *a = cfg.ta ? rand_leaf(2, S(4, 3), -1, 1, 60) : rand_leaf(2, S(3, 4), -1, 1, 60);
    nd_tensor *b = cfg.tb ? rand_leaf(2, S(2, 4), -1, 1, 61) : rand_leaf(2, S(4, 2), -1, 1, 61);
    check_grads(ND_OP_MATMUL, f_matmul, ((nd_tensor *[]){a, b}), 2, &cfg);
    /* batched: op(a) (2, 3, 4) @ op(b) (2, 4, 2) */
    nd_tensor *a3 =
        cfg.ta ? rand_leaf(3, S(2, 4, 3), -1, 1, 62) : rand_leaf(3, S(2, 3, 4), -1, 1, 62);
    nd_tensor *b3 =
        cfg.tb ? rand_leaf(3, S(2, 2, 4), -1, 1, 63) : rand_leaf(3, S(2, 4, 2), -1, 1, 63);
    check_grads(ND_OP_MATMUL, f_matmul, ((nd_tensor *[]){a3, b3}), 2, &cfg);
}
END_TEST

START_TEST(test_matmul_batched_and_shared_weight_gradcheck)
{
    nd_tensor *a = rand_leaf(3, S(2, 3, 4), -1, 1, 70), *b = rand_leaf(3, S(2, 4, 2), -1, 1, 71);
    check_grads(ND_OP_MATMUL, f_matmul, ((nd_tensor *[]){a, b}), 2, NULL);
    /* (B, M, K) @ (K, N): the weight is shared across the batch */
    nd_tensor *w = rand_leaf(2, S(4, 2), -1, 1, 72);
    check_grads(ND_OP_MATMUL, f_matmul, ((nd_tensor *[]){a, w}), 2, NULL);
    mm_cfg tb = {false, true};
    nd_tensor *wt = rand_leaf(2, S(2, 4), -1, 1, 73);
    check_grads(ND_OP_MATMUL, f_matmul, ((nd_tensor *[]){a, wt}), 2, &tb);
}
END_TEST

/* a tanh layer and a matmul: the product rule across ops, as a small network uses them */
static nd_tensor *f_layer(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nd_tanh(c, nd_add(c, nd_matmul(c, x[0], x[1]), x[2]));
}

START_TEST(test_layer_gradcheck)
{
    nd_tensor *in[] = {rand_leaf(2, S(3, 2), -1, 1, 80), rand_leaf(2, S(2, 4), -1, 1, 81),
                       rand_leaf(1, S(4), -1, 1, 82)};
    check_grads(ND_OP_TANH, f_layer, in, 3, NULL);
}
END_TEST

START_TEST(test_reductions_gradcheck_every_axis)
{
    static const axis_cfg axes[] = {{0, false}, {1, true},   {2, false},
                                    {-1, true}, {-2, false}, {-3, true}};
    const axis_cfg *a = &axes[_i];
    nd_tensor *x = rand_leaf(3, S(2, 3, 2), -1, 1, 90 + (uint64_t)_i);
    check_grads(ND_OP_SUM_AXIS, f_sum_axis, &x, 1, (void *)a);
    nd_tensor *xm = spaced_leaf(3, S(2, 3, 2));
    check_grads(ND_OP_MAX_AXIS, f_max_axis, &xm, 1, (void *)a);
    check_grads(ND_OP_LOG_SOFTMAX, f_log_softmax, &x, 1, (void *)a);
}
END_TEST

static nd_tensor *f_means(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_add(c, nd_mean_axis(c, x[0], 0, false), nd_mean(c, x[0])));
}

START_TEST(test_mean_gradcheck)
{
    nd_tensor *x = rand_leaf(2, S(3, 2), -1, 1, 95);
    check_grads(ND_OP_SUM_AXIS, f_means, &x, 1, NULL);
}
END_TEST

START_TEST(test_log_softmax_axis0_gradcheck)
{
    axis_cfg a0 = {0, false};
    nd_tensor *x = rand_leaf(2, S(3, 4), -2, 2, 96);
    check_grads(ND_OP_LOG_SOFTMAX, f_log_softmax, &x, 1, &a0);
}
END_TEST

START_TEST(test_concat_axis0_and_four_inputs_gradcheck)
{
    axis_cfg a0 = {0, false};
    nd_tensor *in[] = {rand_leaf(2, S(1, 2), -1, 1, 110), rand_leaf(2, S(2, 2), -1, 1, 111),
                       rand_leaf(2, S(3, 2), -1, 1, 112), rand_leaf(2, S(1, 2), -1, 1, 113)};
    check_grads(ND_OP_CONCAT, f_concat, in, 3, &a0);
    axis_cfg four = {0, true}; /* more inputs than the inline src storage */
    check_grads(ND_OP_CONCAT, f_concat, in, 4, &four);
    in[3]->requires_grad = false; /* an input without grad is skipped, the others still right */
    check_grads(ND_OP_CONCAT, f_concat, in, 3, &four);
}
END_TEST

START_TEST(test_lincomb_zero_coefficient_gets_zero_gradient)
{
    nd_tensor *in[4];
    for (int i = 0; i < 4; i++) in[i] = rand_leaf(1, S(3), -1, 1, 115 + (uint64_t)i);
    nd_tensor *y = nd_sum(ctx, nd_lincomb(ctx, in, lincomb_coef, 4)), *g[4];
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, in, 4, g, 0), ND_OK);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) ck_assert(g[i]->data[k] == lincomb_coef[i]);
    int two = 2;
    check_grads(ND_OP_LINCOMB, f_lincomb, in, 2, &two);
}
END_TEST

static nd_tensor *f_conv(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u; /* a convolution as nn builds it: rows @ w^T */
    nd_window2d w = {.kh = 2, .kw = 2, .sh = 1, .sw = 1, .ph = 1, .pw = 1};
    return nd_tanh(c, nd_matmul_t(c, nd_im2col(c, x[0], w), x[1], false, true));
}

START_TEST(test_convolution_gradcheck)
{
    nd_tensor *in[] = {rand_leaf(4, S(2, 2, 3, 3), -1, 1, 125), rand_leaf(2, S(3, 8), -1, 1, 126)};
    check_grads(ND_OP_IM2COL, f_conv, in, 2, NULL);
}
END_TEST

/* nd_conv2d's geometries under test: batch, channels, image, out channels, kernel, stride, pad */
typedef struct {
    int N, C, H, W, OC, k, stride, pad;
    bool bias;
} conv_case;

static const conv_case conv_cases[] = {
    {1, 1, 5, 5, 1, 3, 1, 1, true},     {3, 3, 7, 6, 5, 3, 2, 1, true},
    {3, 5, 6, 7, 4, 1, 1, 0, false},    {1, 7, 9, 8, 3, 3, 2, 0, true},
    {3, 3, 5, 5, 2, 1, 2, 1, true},     {2, 3, 4, 5, 3, 3, 1, 0, false},
    {40, 3, 7, 7, 4, 3, 1, 1, true},    /* groups of images, the last one partial */
    {2, 16, 40, 40, 5, 3, 1, 1, true},  /* one image's im2col exceeds the cache budget: row tiles */
    {1, 32, 64, 48, 2, 3, 2, 1, false}, /* row tiles with stride 2 */
    {2, 3, 12, 12, 4, 3, 1, 1, true},   /* rows of 12 outputs: two chunks (7: one; 18: rows) */
    {1, 2, 20, 18, 3, 3, 1, 1, false},  /* rows of 18 outputs: copied as rows */
};

/* The composition nd_conv2d replaced: im2col, one GEMM, bias, back to NCHW. */
static nd_tensor *conv_reference(nd_tensor *x, nd_tensor *w, nd_tensor *b, int stride, int pad)
{
    int N = x->shape[0], OC = w->shape[0], k = w->shape[2];
    int OH = (x->shape[2] + 2 * pad - k) / stride + 1,
        OW = (x->shape[3] + 2 * pad - k) / stride + 1;
    nd_tensor *rows = nd_im2col(ctx, x, (nd_window2d){k, k, stride, stride, pad, pad});
    nd_tensor *y = nd_matmul_t(ctx, rows, nd_reshape(ctx, w, 2, S(OC, -1)), false, true);
    if (b) y = nd_add(ctx, y, b);
    y = nd_transpose(ctx, nd_reshape(ctx, y, 3, S(N, OH * OW, OC)));
    return nd_reshape(ctx, y, 4, S(N, OC, OH, OW));
}

static void expect_close_tensors(const nd_tensor *got, const nd_tensor *want, double tol,
                                 const char *what, int i)
{
    ck_assert_msg(got && want, "case %d, %s: NULL: %s", i, what, nd_ctx_errmsg(ctx));
    ck_assert_msg(nd_same_shape(got, want), "case %d, %s: shapes differ", i, what);
    for (size_t k = 0; k < got->size; k++)
        ck_assert_msg(fabs((double)got->data[k] - want->data[k]) <= tol * (1 + fabs(want->data[k])),
                      "case %d, %s[%zu]: %.17g, reference %.17g", i, what, k, (double)got->data[k],
                      (double)want->data[k]);
}

/* Values and gradients (the tiled rule, the recorded rule, and the reference's) agree. */
START_TEST(test_conv2d_matches_im2col_reference)
{
    for (int i = 0; i < (int)(sizeof conv_cases / sizeof conv_cases[0]); i++) {
        const conv_case *cc = &conv_cases[i];
        nd_mark m = nd_ctx_mark(ctx);
        nd_tensor *x = rand_leaf(4, S(cc->N, cc->C, cc->H, cc->W), -1, 1, 60 + (uint64_t)i);
        nd_tensor *w = rand_leaf(4, S(cc->OC, cc->C, cc->k, cc->k), -1, 1, 80 + (uint64_t)i);
        nd_tensor *b = cc->bias ? rand_leaf(1, S(cc->OC), -1, 1, 100 + (uint64_t)i) : NULL;
        double tol = FWD_TOL * cc->C * cc->k * cc->k;
        nd_tensor *y = nd_conv2d(ctx, x, w, b, cc->stride, cc->pad);
        nd_tensor *ref = conv_reference(x, w, b, cc->stride, cc->pad);
        expect_close_tensors(y, ref, tol, "forward", i);
        ck_assert(y->op == ND_OP_CONV2D && y->n_src == (cc->bias ? 3 : 2));

        nd_tensor *r = rand_leaf(y->ndim, y->shape, -1, 1, 120 + (uint64_t)i); /* the seed */
        r->requires_grad = false;
        nd_tensor *in[] = {x, w, b}, *g[3], *gg[3], *gr[3];
        int n_in = cc->bias ? 3 : 2;
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n_in, g, 0), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n_in, gg, ND_CREATE_GRAPH), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &ref, &r, 1, in, n_in, gr, 0), ND_OK);
        const char *names[] = {"dx", "dw", "db"};
        for (int k = 0; k < n_in; k++) {
            expect_close_tensors(g[k], gr[k], tol * 8, names[k], i);
            expect_close_tensors(gg[k], gr[k], tol * 8, names[k], i);
        }
        nd_ctx_rewind(ctx, m);
    }
}
END_TEST

/* After two backward passes of sum(y^2) through a fused op into x, w, b's .grad: each .grad is
 * twice the gradient of sum(y_ref^2), y_ref the same function composed of other ops. */
static void expect_twice_the_grads_of(nd_tensor *y_ref, nd_tensor **in)
{
    nd_tensor *L = nd_sum(ctx, nd_mul(ctx, y_ref, y_ref)), *gr[3];
    ck_assert_int_eq(nd_grad(ctx, &L, NULL, 1, in, 3, gr, 0), ND_OK);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < gr[k]->size; i++)
            ck_assert_double_eq_tol(in[k]->grad[i], 2 * gr[k]->data[i],
                                    FWD_TOL * 64 * (1 + fabs((double)gr[k]->data[i])));
}

/* nd_backward adds the weight's and bias's gradients straight into persistent .grad buffers, the
 * input's through its pending gradient; both equal the recorded rule's. */
START_TEST(test_conv2d_backward_into_grad)
{
    nd_tensor *w = nd_tensor_create(ctx, 4, S(4, 3, 3, 3), true),
              *b = nd_tensor_create(ctx, 1, S(4), true);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    nd_rng rng = nd_rng_seed(7);
    nd_fill_uniform(w, &rng, -1, 1), nd_fill_uniform(b, &rng, -1, 1);
    nd_tensor *x = rand_leaf(4, S(3, 3, 6, 5), -1, 1, 140);
    for (int pass = 0; pass < 2; pass++) { /* twice: the second adds to the first */
        nd_tensor *y = nd_conv2d(ctx, x, w, b, 1, 1);
        ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, y)), 0), ND_OK);
    }
    expect_twice_the_grads_of(conv_reference(x, w, b, 1, 1), (nd_tensor *[]){x, w, b});
    nd_tensor_destroy(w), nd_tensor_destroy(b);
}
END_TEST

/* With 2 threads (OpenMP builds) a convolution big enough to be shared gives the same values and
 * gradients on every run, equal to one thread's up to rounding; nd_set_threads checks its range. */
START_TEST(test_conv2d_threads_deterministic)
{
    ck_assert_int_eq(nd_set_threads(0), ND_ERR_ARG);
    ck_assert_int_eq(nd_set_threads(257), ND_ERR_ARG);
    nd_tensor *x = rand_leaf(4, S(8, 8, 16, 16), -1, 1, 220);
    nd_tensor *w = rand_leaf(4, S(8, 8, 3, 3), -1, 1, 221), *b = rand_leaf(1, S(8), -1, 1, 222);
    nd_tensor *r = rand_leaf(4, S(8, 8, 16, 16), -1, 1, 223), *in[] = {x, w, b};
    nd_tensor *y[3], *g[3][3];
    for (int run = 0; run < 3; run++) { /* 1 thread, then 2 threads twice */
        ck_assert_int_eq(nd_set_threads(run == 0 ? 1 : 2), ND_OK);
        ck_assert_int_eq(nd_threads(), run == 0 ? 1 : 2);
        y[run] = nd_conv2d(ctx, x, w, b, 1, 1);
        ck_assert_int_eq(nd_grad(ctx, &y[run], &r, 1, in, 3, g[run], 0), ND_OK);
    }
    ck_assert_int_eq(nd_set_threads(1), ND_OK);
    ck_assert_mem_eq(y[1]->data, y[2]->data, y[1]->size * sizeof(nd_real));
    for (int k = 0; k < 3; k++) {
        ck_assert_mem_eq(g[1][k]->data, g[2][k]->data, g[1][k]->size * sizeof(nd_real));
        expect_close_tensors(g[1][k], g[0][k], FWD_TOL * 512, "2 threads against 1", k);
    }
    expect_close_tensors(y[1], y[0], FWD_TOL * 64, "forward", 0);
}
END_TEST

/* relu, add, mul, lincomb and max pooling over tensors big enough to be shared among threads
 * (64 x 8 x 16 x 16 = 131072 values): with 2 threads the values and every gradient are bitwise
 * those of 1 thread (elementwise work does not depend on the split). */
static nd_tensor *elementwise_chain(nd_tensor *x, nd_tensor *z)
{
    nd_tensor *h = nd_relu(ctx, nd_add(ctx, x, z));
    nd_tensor *terms[] = {h, x, z};
    nd_tensor *l = nd_lincomb(ctx, terms, (nd_real[]){0.5, -1, 2}, 3);
    return nd_max_pool2d(ctx, nd_mul(ctx, l, z), 2, 2);
}

START_TEST(test_elementwise_threads_bitwise)
{
    nd_tensor *x = rand_leaf(4, S(64, 8, 16, 16), -1, 1, 224);
    nd_tensor *z = rand_leaf(4, S(64, 8, 16, 16), -1, 1, 225);
    nd_tensor *r = rand_leaf(4, S(64, 8, 8, 8), -1, 1, 226), *in[] = {x, z}, *y[2], *g[2][2];
    for (int run = 0; run < 2; run++) {
        ck_assert_int_eq(nd_set_threads(run + 1), ND_OK);
        y[run] = elementwise_chain(x, z);
        ck_assert_int_eq(nd_grad(ctx, &y[run], &r, 1, in, 2, g[run], 0), ND_OK);
    }
    ck_assert_int_eq(nd_set_threads(1), ND_OK);
    ck_assert_mem_eq(y[0]->data, y[1]->data, y[0]->size * sizeof(nd_real));
    for (int k = 0; k < 2; k++)
        ck_assert_mem_eq(g[0][k]->data, g[1][k]->data, g[0][k]->size * sizeof(nd_real));
}
END_TEST

/* nd_max_pool2d equals the composition it replaced (the maximum of each im2col row), values and
 * gradients, at stride 2 and 3x3/2 (overlapping, an odd size), with ties and a NaN. */
START_TEST(test_max_pool2d_matches_im2col_reference)
{
    const int geo[][4] = {{2, 2, 6, 6}, {3, 3, 7, 5}, {2, 2, 5, 7}}; /* k, stride, H, W */
    for (int i = 0; i < 3; i++) {
        int k = geo[i][0], st = geo[i][1];
        nd_tensor *x = rand_leaf(4, S(2, 3, geo[i][2], geo[i][3]), -1, 1, 240 + (uint64_t)i);
        x->data[5] = x->data[4]; /* a tie: the first wins */
        nd_tensor *y = nd_max_pool2d(ctx, x, k, st);
        ck_assert(y && y->op == ND_OP_MAX_POOL2D);
        nd_tensor *x1 = nd_reshape(ctx, x, 4, S(6, 1, geo[i][2], geo[i][3]));
        nd_tensor *rows = nd_im2col(ctx, x1, (nd_window2d){k, k, st, st, 0, 0});
        nd_tensor *ref = nd_reshape(ctx, nd_max_axis(ctx, rows, 1, false), 4, y->shape);
        expect_close_tensors(y, ref, 0, "forward", i);
        nd_tensor *r = rand_leaf(4, y->shape, -1, 1, 250 + (uint64_t)i), *g, *gg, *gr;
        r->requires_grad = false;
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, &x, 1, &g, 0), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, &x, 1, &gg, ND_CREATE_GRAPH), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &ref, &r, 1, &x, 1, &gr, 0), ND_OK);
        expect_close_tensors(g, gr, FWD_TOL, "values rule", i);
        expect_close_tensors(gg, gr, FWD_TOL, "recorded rule", i);
    }
    nd_tensor *x = rand_leaf(4, S(1, 1, 2, 4), -1, 1, 260);
    x->data[4] = NAN; /* a NaN wins its window, as torch.max; of two, the first */
    x->data[7] = NAN;
    x->data[6] = NAN;
    nd_tensor *y = nd_max_pool2d(ctx, x, 2, 2), *g;
    ck_assert(isnan(y->data[0]) && isnan(y->data[1]));
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, &x, 1, &g, 0), ND_OK);
    for (int k = 0; k < 8; k++) ck_assert(g->data[k] == (k == 4 || k == 6 ? 1 : 0));
}
END_TEST

/* nd_linear equals matmul_t + add (values, the values rule and the recorded rule) on 2-D and 3-D
 * inputs, with and without a bias; under nd_backward w and b get their gradients in .grad. */
START_TEST(test_linear_matches_composition)
{
    for (int i = 0; i < 3; i++) {
        nd_mark m = nd_ctx_mark(ctx);
        nd_tensor *x =
            i == 2 ? rand_leaf(3, S(2, 3, 5), -1, 1, 270) : rand_leaf(2, S(4, 5), -1, 1, 271);
        nd_tensor *w = rand_leaf(2, S(3, 5), -1, 1, 272),
                  *b = i == 1 ? NULL : rand_leaf(1, S(3), -1, 1, 273);
        nd_tensor *y = nd_linear(ctx, x, w, b);
        ck_assert(y && y->op == ND_OP_LINEAR && y->n_src == (b ? 3 : 2));
        nd_tensor *ref = nd_matmul_t(ctx, x, w, false, true);
        if (b) ref = nd_add(ctx, ref, b);
        expect_close_tensors(y, ref, FWD_TOL * 8, "forward", i);
        nd_tensor *r = rand_leaf(y->ndim, y->shape, -1, 1, 274), *in[] = {x, w, b}, *g[3], *gg[3],
                  *gr[3];
        r->requires_grad = false;
        int n = b ? 3 : 2;
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n, g, 0), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n, gg, ND_CREATE_GRAPH), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &ref, &r, 1, in, n, gr, 0), ND_OK);
        for (int k = 0; k < n; k++) {
            expect_close_tensors(g[k], gr[k], FWD_TOL * 8, "values rule", i);
            expect_close_tensors(gg[k], gr[k], FWD_TOL * 8, "recorded rule", i);
        }
        nd_ctx_rewind(ctx, m);
    }
    nd_tensor *w = nd_tensor_create(ctx, 2, S(3, 5), true),
              *b = nd_tensor_create(ctx, 1, S(3), true);
    ck_assert(w && b);
    nd_rng rng = nd_rng_seed(9);
    nd_fill_uniform(w, &rng, -1, 1), nd_fill_uniform(b, &rng, -1, 1);
    nd_tensor *x = rand_leaf(2, S(4, 5), -1, 1, 275);
    for (int pass = 0; pass < 2; pass++) { /* twice: the second adds to the first */
        nd_tensor *y = nd_linear(ctx, x, w, b);
        ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, y)), 0), ND_OK);
    }
    expect_twice_the_grads_of(nd_add(ctx, nd_matmul_t(ctx, x, w, false, true), b),
                              (nd_tensor *[]){x, w, b});
    nd_tensor_destroy(w), nd_tensor_destroy(b);
}
END_TEST

/* First and second order on geometries the registry case does not cover. */
START_TEST(test_conv2d_gradcheck_geometries)
{
    nd_tensor *in1[] = {rand_leaf(4, S(3, 2, 4, 3), -1, 1, 150),
                        rand_leaf(4, S(3, 2, 1, 1), -1, 1, 151)};
    check_grads(ND_OP_CONV2D, f_conv2d, in1, 2, S(1, 0, 0)); /* 1x1, batch 3, no bias */
    nd_tensor *in2[] = {rand_leaf(4, S(1, 3, 4, 4), -1, 1, 152),
                        rand_leaf(4, S(2, 3, 3, 3), -1, 1, 153), rand_leaf(1, S(2), -1, 1, 154)};
    check_grads(ND_OP_CONV2D, f_conv2d, in2, 3, S(1, 1, 1)); /* 3x3, stride 1, padding 1 */
    nd_tensor *in3[] = {rand_leaf(4, S(2, 1, 5, 5), -1, 1, 155),
                        rand_leaf(4, S(1, 1, 3, 3), -1, 1, 156)};
    check_grads(ND_OP_CONV2D, f_conv2d, in3, 2, S(2, 0, 0)); /* stride 2, no padding */
}
END_TEST

/* The composition nd_group_norm replaced: mean, biased variance, normalise, affine. */
static nd_tensor *group_norm_reference(nd_tensor *x, int groups, nd_tensor *w, nd_tensor *b)
{
    int N = x->shape[0], C = x->shape[1];
    nd_tensor *xg = nd_reshape(ctx, x, 3, S(N, groups, -1));
    nd_tensor *mean = nd_mean_axis(ctx, xg, 2, true);
    nd_tensor *var = nd_mean_axis(ctx, nd_pow_scalar(ctx, nd_sub(ctx, xg, mean), 2), 2, true);
    nd_tensor *y = nd_div(ctx, nd_sub(ctx, xg, mean), nd_sqrt(ctx, nd_add_scalar(ctx, var, 1e-5)));
    y = nd_reshape(ctx, y, 3, S(N, C, -1));
    if (w) y = nd_mul(ctx, y, nd_reshape(ctx, w, 2, S(C, 1)));
    if (b) y = nd_add(ctx, y, nd_reshape(ctx, b, 2, S(C, 1)));
    return nd_reshape(ctx, y, x->ndim, x->shape);
}

/* nd_group_norm's geometries under test: input shape, groups, weight, bias */
typedef struct {
    int ndim, shape[4], groups;
    bool w, b;
} gn_case;
static const gn_case gn_cases[] = {
    {4, {3, 4, 3, 2}, 2, true, true},  {4, {2, 6, 2, 2}, 1, true, false},
    {4, {2, 4, 1, 3}, 4, false, true}, {2, {5, 4}, 2, false, false},
    {3, {2, 8, 5}, 4, true, true},     {4, {1, 16, 7, 7}, 4, true, true},
};

/* Values and gradients (the values rule, the recorded rule, and the composition's) agree. */
START_TEST(test_group_norm_matches_composed_reference)
{
    for (int i = 0; i < (int)(sizeof gn_cases / sizeof gn_cases[0]); i++) {
        const gn_case *gc = &gn_cases[i];
        nd_mark m = nd_ctx_mark(ctx);
        int C = gc->shape[1];
        nd_tensor *x = rand_leaf(gc->ndim, gc->shape, -2, 3, 160 + (uint64_t)i);
        nd_tensor *w = gc->w ? rand_leaf(1, S(C), 0.5, 1.5, 170 + (uint64_t)i) : NULL;
        nd_tensor *b = gc->b ? rand_leaf(1, S(C), -1, 1, 180 + (uint64_t)i) : NULL;
        nd_tensor *y = nd_group_norm(ctx, x, gc->groups, w, b, 1e-5);
        nd_tensor *ref = group_norm_reference(x, gc->groups, w, b);
        expect_close_tensors(y, ref, FWD_TOL * 16, "forward", i);
        ck_assert(y->op == ND_OP_GROUP_NORM && y->n_src == 1 + gc->w + gc->b);
        nd_tensor *r = rand_leaf(y->ndim, y->shape, -1, 1, 190 + (uint64_t)i); /* the seed */
        r->requires_grad = false;
        nd_tensor *in[3] = {x}, *g[3], *gg[3], *gr[3];
        int n_in = 1;
        if (w) in[n_in++] = w;
        if (b) in[n_in++] = b;
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n_in, g, 0), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &y, &r, 1, in, n_in, gg, ND_CREATE_GRAPH), ND_OK);
        ck_assert_int_eq(nd_grad(ctx, &ref, &r, 1, in, n_in, gr, 0), ND_OK);
        for (int k = 0; k < n_in; k++) {
            expect_close_tensors(g[k], gr[k], FWD_TOL * 64, "values rule", i);
            expect_close_tensors(gg[k], gr[k], FWD_TOL * 64, "recorded rule", i);
        }
        nd_ctx_rewind(ctx, m);
    }
}
END_TEST

/* nd_backward adds w's and b's gradients straight into persistent .grad buffers, x's through its
 * pending gradient; twice adds twice, equal to the composition's gradient. */
START_TEST(test_group_norm_backward_into_grad)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, S(4), true), *b = nd_tensor_create(ctx, 1, S(4), true);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    nd_rng rng = nd_rng_seed(8);
    nd_fill_uniform(w, &rng, 0.5, 1.5), nd_fill_uniform(b, &rng, -1, 1);
    nd_tensor *x = rand_leaf(4, S(3, 4, 2, 3), -1, 1, 200);
    for (int pass = 0; pass < 2; pass++) {
        nd_tensor *y = nd_group_norm(ctx, x, 2, w, b, 1e-5);
        ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, y, y)), 0), ND_OK);
    }
    expect_twice_the_grads_of(group_norm_reference(x, 2, w, b), (nd_tensor *[]){x, w, b});
    nd_tensor_destroy(w), nd_tensor_destroy(b);
}
END_TEST

/* With 2 threads (OpenMP builds) group norm over 64K values gives the same values and gradients
 * on every run, equal to one thread's up to rounding. */
START_TEST(test_group_norm_threads_deterministic)
{
    nd_tensor *x = rand_leaf(4, S(8, 8, 32, 32), -1, 2, 230);
    nd_tensor *w = rand_leaf(1, S(8), 0.5, 1.5, 231), *b = rand_leaf(1, S(8), -1, 1, 232);
    nd_tensor *r = rand_leaf(4, S(8, 8, 32, 32), -1, 1, 233), *in[] = {x, w, b};
    nd_tensor *y[3], *g[3][3];
    for (int run = 0; run < 3; run++) { /* 1 thread, then 2 threads twice */
        ck_assert_int_eq(nd_set_threads(run == 0 ? 1 : 2), ND_OK);
        y[run] = nd_group_norm(ctx, x, 4, w, b, 1e-5);
        ck_assert_int_eq(nd_grad(ctx, &y[run], &r, 1, in, 3, g[run], 0), ND_OK);
    }
    ck_assert_int_eq(nd_set_threads(1), ND_OK);
    ck_assert_mem_eq(y[1]->data, y[2]->data, y[1]->size * sizeof(nd_real));
    expect_close_tensors(y[1], y[0], FWD_TOL, "forward", 0);
    for (int k = 0; k < 3; k++) {
        ck_assert_mem_eq(g[1][k]->data, g[2][k]->data, g[1][k]->size * sizeof(nd_real));
        expect_close_tensors(g[1][k], g[0][k], FWD_TOL * 4096, "2 threads against 1", k);
    }
}
END_TEST

/* First and second order without weight or bias, with one group, and on (N, C). */
START_TEST(test_group_norm_gradcheck_geometries)
{
    nd_tensor *in1[] = {rand_leaf(4, S(2, 4, 2, 2), -1, 1, 210)};
    check_grads(ND_OP_GROUP_NORM, f_group_norm, in1, 1, S(2, 0, 0));
    nd_tensor *in2[] = {rand_leaf(3, S(2, 3, 3), -1, 1, 211), rand_leaf(1, S(3), -1, 1, 212)};
    check_grads(ND_OP_GROUP_NORM, f_group_norm, in2, 2, S(1, 0, 1));
    /* 2-D, 4 channels per group: with 2 per group the normalised pair is +-1 and its derivative
     * so steep that the float build's central difference (step 1e-2) cannot follow it */
    nd_tensor *in3[] = {rand_leaf(2, S(3, 8), -1, 1, 213), rand_leaf(1, S(8), 0.5, 1.5, 214)};
    check_grads(ND_OP_GROUP_NORM, f_group_norm, in3, 2, S(2, 1, 0));
}
END_TEST

static nd_tensor *f_slice0(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_slice(c, x[0], 0, 1, 2));
}
static nd_tensor *f_pad1(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_pad(c, x[0], -1, 2, 5));
}
static nd_tensor *f_transpose2(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return nl(c, nd_matmul(c, nd_transpose(c, x[0]), x[0]));
}
static nd_tensor *f_reshape_chain(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    nd_tensor *r = nd_reshape(c, x[0], 3, S(2, -1, 2));
    return nl(c, nd_reshape(c, nd_sum_axis(c, r, 1, true), 1, S(-1)));
}

START_TEST(test_shape_ops_more_gradchecks)
{
    nd_tensor *x = rand_leaf(2, S(3, 4), -1, 1, 120);
    check_grads(ND_OP_SLICE, f_slice0, &x, 1, NULL);
    nd_tensor *y = rand_leaf(2, S(2, 2), -1, 1, 121);
    check_grads(ND_OP_PAD, f_pad1, &y, 1, NULL);
    nd_tensor *z = rand_leaf(2, S(3, 2), -1, 1, 122);
    check_grads(ND_OP_TRANSPOSE, f_transpose2, &z, 1, NULL);
    nd_tensor *w = rand_leaf(4, S(1, 2, 3, 2), -1, 1, 123);
    check_grads(ND_OP_TRANSPOSE, f_transpose, &w, 1, NULL);
    nd_tensor *v = rand_leaf(2, S(2, 6), -1, 1, 124);
    check_grads(ND_OP_RESHAPE, f_reshape_chain, &v, 1, NULL);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * backward: custom ops
 */
START_TEST(test_custom_op_forward_backward_and_state)
{
    int calls = 0;
    nd_tensor *x = leaf(1, S(3), V(-1, 0.5, 2));
    nd_tensor *y = cube(ctx, x, &calls);
    expect_values(y, -1, 0.125, 8);
    ck_assert_int_eq(y->op, ND_OP_CUSTOM);
    ck_assert(y->requires_grad);
    nd_tensor *loss = nd_sum(ctx, y);
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    ck_assert_int_eq(calls, 1);
    expect_values(nd_tensor_from(ctx, 1, S(3), x->grad), 3, 0.75, 12);

    /* without grad mode it records nothing and its backward is never called */
    nd_ctx_set_grad(ctx, false);
    nd_tensor *z = cube(ctx, x, &calls);
    nd_ctx_set_grad(ctx, true);
    ck_assert(!z->requires_grad);
    ck_assert_int_eq(z->op, ND_OP_NONE);
}
END_TEST

static nd_tensor *f_cube(nd_ctx *c, nd_tensor **x, void *u)
{
    (void)u;
    return cube(c, x[0], NULL);
}

START_TEST(test_custom_op_gradcheck)
{
    nd_tensor *x = rand_leaf(2, S(2, 3), -1.5, 1.5, 130);
    check_grads(ND_OP_CUSTOM, f_cube, &x, 1, NULL);
}
END_TEST

/* What the ODE adjoint does: a custom op whose forward runs without recording, and whose backward
 * rebuilds a small graph from a detached copy of its input and the shared parameter W, then
 * calls nd_grad on it. W also has gradient pending from the outer graph while that happens. */
static nd_tensor *inner_f(nd_ctx *c, nd_tensor *x, nd_tensor *W)
{
    return nd_tanh(c, nd_matmul(c, x, W));
}

static void nested_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    int *calls = state;
    nd_tensor *x = out->src[0], *W = out->src[1];
    bool prev = nd_ctx_set_grad(c, true);
    nd_tensor *xd = nd_copy(c, x);
    if (!xd) return;
    xd->requires_grad = true;
    nd_tensor *y = inner_f(c, xd, W);
    nd_tensor *g[2];
    nd_status st = nd_grad(c, &y, &out->gnode, 1, (nd_tensor *[]){xd, W}, 2, g, 0);
    nd_ctx_set_grad(c, prev);
    if (st != ND_OK) return;
    nd_accumulate_grad(c, x, g[0]);
    nd_accumulate_grad(c, W, g[1]);
    (*calls)++;
}

static int nested_calls;

static nd_tensor *nested_op(nd_ctx *c, nd_tensor *x, nd_tensor *W)
{
    bool prev = nd_ctx_set_grad(c, false);
    nd_tensor *y = inner_f(c, x, W);
    nd_ctx_set_grad(c, prev);
    nd_custom_op op = {"nested", nested_backward, &nested_calls};
    return nd_record_custom(c, y, &op, 2, (nd_tensor *[]){x, W});
}

/* loss graph: h1 = F(x, W), h2 = F(h1, W), out = tanh(h2 @ W) with F the custom op (or, for
 * reference, the same function in plain ops) */
static nd_tensor *f_nested(nd_ctx *c, nd_tensor **in, void *u)
{
    bool plain = u != NULL;
    nd_tensor *x = in[0], *W = in[1];
    nd_tensor *h1 = plain ? inner_f(c, x, W) : nested_op(c, x, W);
    nd_tensor *h2 = plain ? inner_f(c, h1, W) : nested_op(c, h1, W);
    return nd_tanh(c, nd_matmul(c, h2, W));
}

START_TEST(test_nested_grad_inside_custom_backward)
{
    nd_tensor *W = nd_tensor_create(ctx, 2, S(3, 3), true);
    nd_rng rng = nd_rng_seed(140);
    nd_fill_uniform(W, &rng, -1, 1);
    nd_tensor *x = rand_leaf(2, S(2, 3), -1, 1, 141);
    nd_tensor *in[] = {x, W};
    int plain = 1;

    /* the reference: the same function in plain ops */
    nd_tensor *ref_loss = nd_sum(ctx, f_nested(ctx, in, &plain));
    nd_tensor *ref[2];
    ck_assert_int_eq(nd_grad(ctx, &ref_loss, NULL, 1, in, 2, ref, 0), ND_OK);

    /* nd_grad through the custom ops */
    nested_calls = 0;
    nd_tensor *loss = nd_sum(ctx, f_nested(ctx, in, NULL));
    expect_values(loss, nd_item(ref_loss));
    nd_tensor *g[2];
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, in, 2, g, 0), ND_OK);
    ck_assert_int_eq(nested_calls, 2);
    for (int k = 0; k < 2; k++) {
        ck_assert(nd_same_shape(g[k], in[k]));
        for (size_t i = 0; i < in[k]->size; i++)
            ck_assert_double_eq_tol(g[k]->data[i], ref[k]->data[i], FWD_TOL * 16);
    }

    /* nd_backward into the persistent W and the arena leaf x */
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, f_nested(ctx, in, NULL)), 0), ND_OK);
    ck_assert_ptr_nonnull(x->grad);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < in[k]->size; i++)
            ck_assert_double_eq_tol(in[k]->grad[i], ref[k]->data[i], FWD_TOL * 16);

    /* and against central differences */
    char report[256] = "";
    ck_assert_msg(gradcheck(ctx, f_nested, in, 2, NULL, gc_default_tol(), report), "%s", report);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    nd_tensor_destroy(W);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * backward: the engine
 */
START_TEST(test_backward_accumulates_into_persistent_grad)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, S(2), true);
    w->data[0] = 1, w->data[1] = -2;
    for (int call = 1; call <= 2; call++) {
        nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, w, w)); /* d/dw = 2 w */
        ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
        ck_assert(w->grad[0] == (nd_real)(2 * call));
        ck_assert(w->grad[1] == (nd_real)(-4 * call));
    }
    nd_zero_grad(&w, 1);
    ck_assert(w->grad[0] == 0 && w->grad[1] == 0);
    nd_ctx_reset(ctx); /* a new step: the persistent grad buffer survives */
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul_scalar(ctx, w, 3)), 0), ND_OK);
    ck_assert(w->grad[0] == 3 && w->grad[1] == 3);
    ck_assert_ptr_null(w->gnode); /* no pending gradient left behind */
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_backward_gives_arena_leaf_a_grad)
{
    nd_tensor *x = leaf(2, S(2, 2), V(1, 2, 3, 4));
    nd_tensor *c = tensor(2, S(2, 2), V(5, 6, 7, 8)); /* does not require grad */
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, x, c)), 0), ND_OK);
    ck_assert_ptr_nonnull(x->grad);
    expect_values(nd_tensor_from(ctx, 2, S(2, 2), x->grad), 5, 6, 7, 8);
    ck_assert_ptr_null(c->grad);
}
END_TEST

/* issue 15 item 8: a non-scalar loss is an error naming its shape (it used to seed ones) */
START_TEST(test_backward_rejects_non_scalar_loss)
{
    nd_tensor *x = leaf(1, S(3), V(1, 2, 3));
    ck_assert_int_eq(nd_backward(ctx, nd_mul_scalar(ctx, nd_mul(ctx, x, x), 3), 0), ND_ERR_SHAPE);
    expect_error(ND_ERR_SHAPE, "nd_backward", "(3,)", "scalar");
    ck_assert_ptr_null(x->grad);
    nd_ctx_clear_error(ctx);
    /* size 1 of any rank is a scalar */
    nd_tensor *l = nd_reshape(ctx, nd_sum(ctx, nd_mul(ctx, x, x)), 2, S(1, 1));
    ck_assert_int_eq(nd_backward(ctx, l, 0), ND_OK);
    expect_values(nd_tensor_from(ctx, 1, S(3), x->grad), 2, 4, 6);
}
END_TEST

START_TEST(test_grad_leaves_dot_grad_untouched)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, S(2), true);
    w->data[0] = 1, w->data[1] = 2;
    w->grad[0] = 7, w->grad[1] = 7;
    nd_tensor *x = leaf(1, S(2), V(3, 4));
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, w, x));
    nd_tensor *g[2];
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, (nd_tensor *[]){w, x}, 2, g, 0), ND_OK);
    expect_values(g[0], 3, 4);
    expect_values(g[1], 1, 2);
    ck_assert(w->grad[0] == 7 && w->grad[1] == 7);
    ck_assert_ptr_null(x->grad);
    ck_assert(!g[0]->requires_grad);     /* without create_graph nothing is recorded */
    ck_assert(nd_ctx_grad_enabled(ctx)); /* grad mode restored */
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_grad_unreached_input_gets_zeros_when_allowed)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2));
    nd_tensor *z = leaf(2, S(2, 3), V(1, 1, 1, 1, 1, 1)); /* requires grad, not used */
    nd_tensor *c = tensor(1, S(2), V(5, 5));              /* used, does not require grad */
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, x, c));
    nd_tensor *g[3];
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, (nd_tensor *[]){x, z, c}, 3, g, ND_ALLOW_UNUSED),
                     ND_OK);
    expect_values(g[0], 5, 5);
    expect_shape(g[1], 2, 3);
    expect_values(g[1], 0, 0, 0, 0, 0, 0);
    expect_values(g[2], 0, 0);
    /* an output that does not require grad: every gradient is zero */
    nd_tensor *k = nd_sum(ctx, c);
    ck_assert_int_eq(nd_grad(ctx, &k, NULL, 1, &x, 1, g, ND_ALLOW_UNUSED), ND_OK);
    expect_values(g[0], 0, 0);
}
END_TEST

START_TEST(test_grad_with_seeds_and_several_outputs)
{
    nd_tensor *x = leaf(1, S(3), V(1, 2, 3));
    nd_tensor *y1 = nd_mul(ctx, x, x);           /* dy1 = 2x */
    nd_tensor *y2 = nd_sum(ctx, nd_sin(ctx, x)); /* dy2 = cos x */
    nd_tensor *v = tensor(1, S(3), V(1, -1, 0.5));
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &y1, &v, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, 2, -4, 3);
    /* two outputs, the second seeded by ones (NULL entry) */
    ck_assert_int_eq(
        nd_grad(ctx, (nd_tensor *[]){y1, y2}, (nd_tensor *[]){v, NULL}, 2, &x, 1, &g, 0), ND_OK);
    expect_values(g, 2 + cos(1.0), -4 + cos(2.0), 3 + cos(3.0));
    /* seeds NULL altogether: ones for every output */
    ck_assert_int_eq(nd_grad(ctx, (nd_tensor *[]){y1, y2}, NULL, 2, &x, 1, &g, 0), ND_OK);
    expect_values(g, 2 + cos(1.0), 4 + cos(2.0), 6 + cos(3.0));
}
END_TEST

START_TEST(test_diamond_graph)
{
    /* x reaches z along two paths: z = (x + 1) * (2 x), dz/dx = 2x + 2(x + 1) = 4x + 2 */
    nd_tensor *x = leaf(1, S(3), V(-1, 0.5, 2));
    nd_tensor *z = nd_mul(ctx, nd_add_scalar(ctx, x, 1), nd_mul_scalar(ctx, x, 2));
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &z, NULL, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, -2, 4, 10);
    /* the same tensor as both inputs of one op: d(x * x) = 2x */
    nd_tensor *sq = nd_mul(ctx, x, x);
    ck_assert_int_eq(nd_grad(ctx, &sq, NULL, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, -2, 1, 4);
    /* a shared intermediate used three times: u = x^2, w = u + u * u + sin(u) */
    nd_tensor *u = nd_mul(ctx, x, x);
    nd_tensor *w = nd_add(ctx, nd_add(ctx, u, nd_mul(ctx, u, u)), nd_sin(ctx, u));
    ck_assert_int_eq(nd_grad(ctx, &w, NULL, 1, &x, 1, &g, 0), ND_OK);
    for (int i = 0; i < 3; i++) {
        double xv = x->data[i], uv = xv * xv;
        ck_assert_double_eq_tol(g->data[i], (1 + 2 * uv + cos(uv)) * 2 * xv, FWD_TOL * 16);
    }
}
END_TEST

START_TEST(test_deep_chain_without_recursion)
{
    enum { DEPTH = 200000 };
    nd_tensor *x = leaf(1, S(1), V(0.5));
    nd_mark chain = nd_ctx_mark(ctx);
    nd_tensor *y = x;
    for (int i = 0; i < DEPTH; i++) y = nd_add_scalar(ctx, y, 1);
    nd_tensor *loss = nd_mul(ctx, y, y); /* d/dx = 2 (x + DEPTH) */
    ck_assert_ptr_nonnull(loss);
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, &x, 1, &g, 0), ND_OK);
    ck_assert_double_eq_tol(g->data[0], 2 * (0.5 + DEPTH), FWD_TOL * 2 * DEPTH);
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    ck_assert_double_eq_tol(x->grad[0], 2 * (0.5 + DEPTH), FWD_TOL * 2 * DEPTH);
    /* a deep chain of ops whose rules allocate, in memory rewound afterwards */
    x->grad = NULL; /* it lived in the memory about to be rewound */
    nd_ctx_rewind(ctx, chain);
    nd_tensor *s = x;
    for (int i = 0; i < DEPTH; i++) s = nd_mul_scalar(ctx, s, (nd_real)-1);
    ck_assert_int_eq(nd_grad(ctx, &s, NULL, 1, &x, 1, &g, 0), ND_OK);
    ck_assert(g->data[0] == 1); /* (-1)^DEPTH */
}
END_TEST

/* h(theta) = grad(loss)(theta) . v for a small MLP, differentiated again: H v, against central
 * differences of the gradient along v. */
static nd_tensor *mlp_loss(nd_ctx *c, nd_tensor **p, nd_tensor *X, nd_tensor *Y)
{
    nd_tensor *h = nd_tanh(c, nd_add(c, nd_matmul(c, X, p[0]), p[1]));
    nd_tensor *err = nd_sub(c, nd_add(c, nd_matmul(c, h, p[2]), p[3]), Y);
    return nd_mean(c, nd_mul(c, err, err));
}

START_TEST(test_hessian_vector_product_of_mlp)
{
    enum { NP = 4 };
    static const int shapes[NP][2] = {{2, 5}, {1, 5}, {5, 1}, {1, 1}};
    nd_tensor *p[NP], *v[NP];
    nd_rng rng = nd_rng_seed(150);
    for (int i = 0; i < NP; i++) {
        p[i] = nd_tensor_create(ctx, 2, shapes[i], true);
        nd_fill_normal(p[i], &rng, 0, 0.8);
        v[i] = nd_tensor_new(ctx, 2, shapes[i]);
        nd_fill_uniform(v[i], &rng, -1, 1);
    }
    nd_tensor *X = rand_leaf(2, S(6, 2), -1, 1, 151), *Y = rand_leaf(2, S(6, 1), -1, 1, 152);
    X->requires_grad = Y->requires_grad = false;

    nd_tensor *g[NP], *hv[NP];
    nd_tensor *loss = mlp_loss(ctx, p, X, Y);
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, p, NP, g, ND_CREATE_GRAPH), ND_OK);
    nd_tensor *gv = NULL;
    for (int i = 0; i < NP; i++) {
        ck_assert(g[i]->requires_grad); /* create_graph: the gradient is a graph */
        nd_tensor *term = nd_sum(ctx, nd_mul(ctx, g[i], v[i]));
        gv = gv ? nd_add(ctx, gv, term) : term;
    }
    ck_assert_int_eq(nd_grad(ctx, &gv, NULL, 1, p, NP, hv, 0), ND_OK);

    /* (grad(theta + e v) - grad(theta - e v)) / 2e */
    gc_tol tol = gc_default_tol();
    nd_tensor *gp[NP], *gm[NP];
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int i = 0; i < NP; i++)
            for (size_t k = 0; k < p[i]->size; k++)
                p[i]->data[k] += (nd_real)(sign * tol.eps * v[i]->data[k]);
        nd_tensor *l = mlp_loss(ctx, p, X, Y);
        ck_assert_int_eq(nd_grad(ctx, &l, NULL, 1, p, NP, sign > 0 ? gp : gm, 0), ND_OK);
        for (int i = 0; i < NP; i++)
            for (size_t k = 0; k < p[i]->size; k++)
                p[i]->data[k] -= (nd_real)(sign * tol.eps * v[i]->data[k]);
    }
    for (int i = 0; i < NP; i++)
        for (size_t k = 0; k < p[i]->size; k++) {
            double fd = ((double)gp[i]->data[k] - gm[i]->data[k]) / (2 * tol.eps);
            double err = fabs(hv[i]->data[k] - fd);
            ck_assert_msg(err <= tol.atol + tol.rtol * fabs(fd),
                          "param %d element %zu: Hv %.10g, finite differences %.10g", i, k,
                          (double)hv[i]->data[k], fd);
        }
    for (int i = 0; i < NP; i++) nd_tensor_destroy(p[i]);
}
END_TEST

START_TEST(test_grad_mode_off_records_nothing)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2));
    ck_assert(nd_ctx_set_grad(ctx, false));
    nd_tensor *y = nd_sum(ctx, nd_mul(ctx, nd_tanh(ctx, x), x));
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(y->op, ND_OP_NONE);
    ck_assert_int_eq(y->n_src, 0);
    ck_assert_int_eq(nd_backward(ctx, y, 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "nd_backward", NULL, NULL);
    nd_ctx_set_grad(ctx, true);
    nd_ctx_clear_error(ctx);
    nd_tensor *r = nd_mul(ctx, x, x); /* on again: records */
    ck_assert(r->requires_grad);
    ck_assert_int_eq(r->op, ND_OP_MUL);
}
END_TEST

START_TEST(test_backward_on_loss_without_grad_is_graph_error)
{
    nd_tensor *c = tensor(1, S(2), V(1, 2)); /* nothing requires grad */
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, c, c));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "nd_backward", "does not require grad", NULL);
}
END_TEST

START_TEST(test_create_graph_gives_differentiable_gradient)
{
    /* f = sum(x^3): g = 3x^2 recorded; d(sum(g))/dx = 6x */
    nd_tensor *x = leaf(1, S(3), V(-1, 0.5, 2));
    nd_tensor *f = nd_sum(ctx, nd_pow_scalar(ctx, x, 3));
    nd_tensor *g, *gg;
    ck_assert_int_eq(nd_grad(ctx, &f, NULL, 1, &x, 1, &g, ND_CREATE_GRAPH), ND_OK);
    ck_assert(g->requires_grad);
    expect_values(g, 3, 0.75, 12);
    nd_tensor *sg = nd_sum(ctx, g);
    ck_assert_int_eq(nd_grad(ctx, &sg, NULL, 1, &x, 1, &gg, ND_CREATE_GRAPH), ND_OK);
    expect_values(gg, -6, 3, 12);
    /* and a third time: d(sum(6x))/dx = 6 */
    nd_tensor *sgg = nd_sum(ctx, gg), *ggg;
    ck_assert_int_eq(nd_grad(ctx, &sgg, NULL, 1, &x, 1, &ggg, 0), ND_OK);
    expect_values(ggg, 6, 6, 6);
}
END_TEST

START_TEST(test_rewind_after_grad_reuses_memory)
{
    /* the adjoint's pattern: build a VJP graph per stage and rewind, so memory stays flat */
    nd_tensor *x = rand_leaf(1, S(16), -1, 1, 160);
    nd_mark m = nd_ctx_mark(ctx);
    size_t used = 0;
    for (int stage = 0; stage < 50; stage++) {
        nd_ctx_rewind(ctx, m);
        nd_tensor *y = nd_sum(ctx, nd_tanh(ctx, nd_mul(ctx, x, x))), *g;
        ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, &x, 1, &g, 0), ND_OK);
        if (stage == 0) used = nd_ctx_used(ctx);
        ck_assert_uint_eq(nd_ctx_used(ctx), used);
    }
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * errors
 */
typedef nd_tensor *(*binary_fn)(nd_ctx *, nd_tensor *, nd_tensor *);
static const struct {
    const char *name;
    binary_fn fn;
} binary_ops[] = {
    {"nd_add", nd_add}, {"nd_sub", nd_sub},       {"nd_mul", nd_mul},
    {"nd_div", nd_div}, {"nd_matmul", nd_matmul}, {"nd_tanh_backward", nd_tanh_backward},
};

START_TEST(test_binary_op_shape_mismatch_names_op_and_shapes)
{
    const char *name = binary_ops[_i].name;
    bool mm = strcmp(name, "nd_matmul") == 0;
    /* (32, 784) with (128, 10): neither broadcasts nor multiplies */
    nd_tensor *a = nd_zeros(ctx, 2, S(32, 784)), *b = nd_zeros(ctx, 2, S(128, 10));
    ck_assert_ptr_null(binary_ops[_i].fn(ctx, a, b));
    expect_error(ND_ERR_SHAPE, name, "(32, 784)", "(128, 10)");
    if (mm) expect_error(ND_ERR_SHAPE, "nd_matmul: inner dimensions differ", NULL, NULL);
    nd_ctx_clear_error(ctx);
    /* a 1-D one: (2, 3) with (4,) */
    nd_tensor *c = nd_zeros(ctx, 2, S(2, 3)), *d = nd_zeros(ctx, 1, S(4));
    ck_assert_ptr_null(binary_ops[_i].fn(ctx, c, d));
    expect_error(ND_ERR_SHAPE, name, "(2, 3)", "(4,)");
}
END_TEST

START_TEST(test_matmul_rejects_bad_shapes)
{
    /* batch sizes differ */
    ck_assert_ptr_null(nd_matmul(ctx, nd_zeros(ctx, 3, S(2, 3, 4)), nd_zeros(ctx, 3, S(3, 4, 5))));
    expect_error(ND_ERR_SHAPE, "nd_matmul", "(2, 3, 4)", "(3, 4, 5)");
    nd_ctx_clear_error(ctx);
    /* 3-D @ 2-D with the shared weight's inner dim wrong: the message shows a as given */
    ck_assert_ptr_null(
        nd_matmul(ctx, nd_zeros(ctx, 3, S(2, 32, 784)), nd_zeros(ctx, 2, S(128, 10))));
    expect_error(ND_ERR_SHAPE, "nd_matmul", "(2, 32, 784)", "(128, 10)");
    nd_ctx_clear_error(ctx);
    /* 1-D operands */
    ck_assert_ptr_null(nd_matmul(ctx, nd_zeros(ctx, 1, S(3)), nd_zeros(ctx, 2, S(3, 2))));
    expect_error(ND_ERR_SHAPE, "nd_matmul", "(3,)", "(3, 2)");
    nd_ctx_clear_error(ctx);
    /* the transposed shapes are checked, not the stored ones */
    ck_assert_ptr_null(
        nd_matmul_t(ctx, nd_zeros(ctx, 2, S(2, 3)), nd_zeros(ctx, 2, S(3, 2)), true, false));
    expect_error(ND_ERR_SHAPE, "nd_matmul", "(2, 3)", "(3, 2)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(
        nd_matmul_t(ctx, nd_zeros(ctx, 2, S(2, 3)), nd_zeros(ctx, 2, S(3, 2)), false, true));
    expect_error(ND_ERR_SHAPE, "nd_matmul", "(2, 3)", "(3, 2)");
}
END_TEST

START_TEST(test_expand_and_sum_to_reject_bad_shapes)
{
    nd_tensor *x = nd_zeros(ctx, 2, S(3, 2));
    ck_assert_ptr_null(nd_expand(ctx, x, 2, S(3, 4)));
    expect_error(ND_ERR_SHAPE, "nd_expand", "(3, 2)", "(3, 4)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_expand(ctx, x, 1, S(6))); /* fewer dims */
    expect_error(ND_ERR_SHAPE, "nd_expand", "(3, 2)", "(6,)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_sum_to(ctx, x, 2, S(2, 1)));
    expect_error(ND_ERR_SHAPE, "nd_sum_to", "(3, 2)", "(2, 1)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_sum_to(ctx, x, 3, S(1, 3, 2)));
    expect_error(ND_ERR_SHAPE, "nd_sum_to", "(3, 2)", "(1, 3, 2)");
}
END_TEST

/* Each axis-taking op rejects axes outside [-ndim, ndim) with its name, the axis and the shape. */
static const char *const axis_ops[] = {"nd_sum_axis",    "nd_mean_axis", "nd_max_axis",
                                       "nd_log_softmax", "nd_concat",    "nd_slice",
                                       "nd_pad"};

static nd_tensor *call_axis_op(int which, nd_tensor *x, int axis)
{
    switch (which) {
    case 0:
        return nd_sum_axis(ctx, x, axis, false);
    case 1:
        return nd_mean_axis(ctx, x, axis, true);
    case 2:
        return nd_max_axis(ctx, x, axis, false);
    case 3:
        return nd_log_softmax(ctx, x, axis);
    case 4:
        return nd_concat(ctx, (nd_tensor *[]){x, x}, 2, axis);
    case 5:
        return nd_slice(ctx, x, axis, 0, 1);
    default:
        return nd_pad(ctx, x, axis, 0, 4);
    }
}

START_TEST(test_bad_axis_rejected)
{
    static const int bad[] = {2, -3, 100};
    nd_tensor *x = nd_zeros(ctx, 2, S(2, 3));
    for (int k = 0; k < 3; k++) {
        char want[32];
        snprintf(want, sizeof want, "axis %d", bad[k]);
        nd_ctx_clear_error(ctx);
        ck_assert_ptr_null(call_axis_op(_i, x, bad[k]));
        expect_error(ND_ERR_SHAPE, axis_ops[_i], "(2, 3)", want);
    }
    /* the valid negative axes are accepted */
    for (int ax = -2; ax < 2; ax++) {
        nd_ctx_clear_error(ctx);
        ck_assert_ptr_nonnull(call_axis_op(_i, x, ax));
    }
    /* a scalar has no axis at all */
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(call_axis_op(_i, nd_scalar(ctx, 1), 0));
    expect_error(ND_ERR_SHAPE, axis_ops[_i], "()", NULL);
}
END_TEST

START_TEST(test_bad_slice_and_pad_ranges)
{
    nd_tensor *x = nd_zeros(ctx, 2, S(3, 4));
    static const int ranges[][2] = {{-1, 2}, {0, 0}, {3, 2}, {0, 5}, {4, 1}, {1, -1}};
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        nd_ctx_clear_error(ctx);
        ck_assert_ptr_null(nd_slice(ctx, x, 1, ranges[k][0], ranges[k][1]));
        expect_error(ND_ERR_SHAPE, "nd_slice", "(3, 4)", "out of range");
    }
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_nonnull(nd_slice(ctx, x, 1, 3, 1)); /* the last column is fine */
    ck_assert_ptr_null(nd_pad(ctx, x, 1, 1, 4));      /* 4 columns at 1 do not fit in 4 */
    expect_error(ND_ERR_SHAPE, "nd_pad", "(3, 4)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_pad(ctx, x, 0, -1, 5));
    expect_error(ND_ERR_SHAPE, "nd_pad", "(3, 4)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_pad(ctx, x, 0, 0, 2)); /* smaller than x */
    expect_error(ND_ERR_SHAPE, "nd_pad", "(3, 4)", NULL);
}
END_TEST

START_TEST(test_bad_reshape)
{
    nd_tensor *x = nd_zeros(ctx, 2, S(2, 3));
    ck_assert_ptr_null(nd_reshape(ctx, x, 2, S(4, 2)));
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", "(4, 2)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, 2, S(-1, 4))); /* 6 is not a multiple of 4 */
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, 2, S(-1, -1))); /* at most one -1 */
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, 3, S(0, 2, 3)));
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, 3, S(-2, -3, 1)));
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, ND_MAX_DIMS + 1, S(1, 1, 2, 3, 1)));
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_reshape(ctx, x, 0, NULL)); /* 6 elements are not a scalar */
    expect_error(ND_ERR_SHAPE, "nd_reshape", "(2, 3)", "()");
}
END_TEST

START_TEST(test_transpose_needs_two_dims)
{
    ck_assert_ptr_null(nd_transpose(ctx, nd_zeros(ctx, 1, S(5))));
    expect_error(ND_ERR_SHAPE, "nd_transpose", "(5,)", NULL);
}
END_TEST

START_TEST(test_concat_mismatch)
{
    nd_tensor *a = nd_zeros(ctx, 2, S(2, 2)), *b = nd_zeros(ctx, 2, S(2, 3));
    ck_assert_ptr_null(nd_concat(ctx, (nd_tensor *[]){a, a, b}, 3, 0));
    expect_error(ND_ERR_SHAPE, "nd_concat", "(2, 2)", "(2, 3)");
    ck_assert_ptr_nonnull(strstr(nd_ctx_errmsg(ctx), "tensor 2"));
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_nonnull(nd_concat(ctx, (nd_tensor *[]){a, b}, 2, 1)); /* fine on axis 1 */
    nd_tensor *c = nd_zeros(ctx, 3, S(2, 2, 1));
    ck_assert_ptr_null(nd_concat(ctx, (nd_tensor *[]){a, c}, 2, 0)); /* ranks differ */
    expect_error(ND_ERR_SHAPE, "nd_concat", "(2, 2)", "(2, 2, 1)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_concat(ctx, (nd_tensor *[]){a}, 0, 0));
    expect_error(ND_ERR_ARG, "nd_concat", NULL, NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_concat(ctx, NULL, 2, 0));
    expect_error(ND_ERR_ARG, "nd_concat", NULL, NULL);
}
END_TEST

START_TEST(test_lincomb_mismatch)
{
    nd_tensor *a = nd_zeros(ctx, 2, S(2, 3)), *b = nd_zeros(ctx, 1, S(3));
    nd_real coef[2] = {1, 1};
    ck_assert_ptr_null(nd_lincomb(ctx, (nd_tensor *[]){a, b}, coef, 2)); /* no broadcasting */
    expect_error(ND_ERR_SHAPE, "nd_lincomb", "(2, 3)", "(3,)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lincomb(ctx, &a, coef, 0));
    expect_error(ND_ERR_ARG, "nd_lincomb", NULL, NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lincomb(ctx, &a, NULL, 1));
    expect_error(ND_ERR_ARG, "nd_lincomb", NULL, NULL);
}
END_TEST

START_TEST(test_conv2d_rejects_bad_shapes)
{
    nd_tensor *x = nd_zeros(ctx, 4, S(2, 3, 5, 5)), *w = nd_zeros(ctx, 4, S(4, 3, 3, 3));
    ck_assert_ptr_null(nd_conv2d(ctx, x, nd_zeros(ctx, 3, S(4, 3, 3)), NULL, 1, 0));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: weight (4, 3, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, x, w, nd_zeros(ctx, 1, S(5)), 1, 0));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: bias (5,)", "(4, 3, 3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, nd_zeros(ctx, 4, S(2, 2, 5, 5)), w, NULL, 1, 0));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: input (2, 2, 5, 5)", "(4, 3, 3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, nd_zeros(ctx, 3, S(3, 5, 5)), w, NULL, 1, 0));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: input (3, 5, 5)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, x, w, NULL, 0, 0));
    expect_error(ND_ERR_ARG, "nd_conv2d: stride 0", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, x, w, NULL, 1, -1));
    expect_error(ND_ERR_ARG, "nd_conv2d", "padding -1");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_conv2d(ctx, nd_zeros(ctx, 4, S(2, 3, 2, 5)), w, NULL, 1, 0));
    expect_error(ND_ERR_SHAPE, "nd_conv2d: kernel 3x3", "(2, 3, 2, 5)");
    nd_ctx_clear_error(ctx);
}
END_TEST

START_TEST(test_im2col_and_col2im_reject_bad_shapes)
{
    nd_window2d k2 = {.kh = 2, .kw = 2, .sh = 1, .sw = 1};
    ck_assert_ptr_null(nd_im2col(ctx, nd_zeros(ctx, 3, S(1, 3, 3)), k2));
    expect_error(ND_ERR_SHAPE, "nd_im2col", "(1, 3, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_im2col(ctx, nd_zeros(ctx, 4, S(1, 1, 3, 3)),
                                 (nd_window2d){.kh = 4, .kw = 2, .sh = 1, .sw = 1}));
    expect_error(ND_ERR_SHAPE, "nd_im2col", "(1, 1, 3, 3)", "4x2");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_im2col(ctx, nd_zeros(ctx, 4, S(1, 1, 3, 3)),
                                 (nd_window2d){.kh = 2, .kw = 2, .sh = 0, .sw = 1}));
    expect_error(ND_ERR_ARG, "nd_im2col", "stride 0x1", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_col2im(ctx, nd_zeros(ctx, 2, S(4, 3)), S(1, 1, 3, 3), k2));
    expect_error(ND_ERR_SHAPE, "nd_col2im", "(4, 3)", "(1, 1, 3, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_col2im(ctx, nd_zeros(ctx, 2, S(4, 4)), S(1, 0, 3, 3), k2));
    expect_error(ND_ERR_SHAPE, "nd_col2im", "(1, 0, 3, 3)", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_col2im(ctx, nd_zeros(ctx, 2, S(4, 4)), NULL, k2));
    expect_error(ND_ERR_ARG, "nd_col2im", NULL, NULL);
}
END_TEST

static void noop_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    (void)c, (void)out, (void)state;
}

/* _i = 0: no error before: the first NULL input is recorded (issue 15 item 8: it used to record
 * nothing, so the one-check pattern printed an empty message); _i = 1: a first error stays the
 * only one */
START_TEST(test_null_input_propagates_without_overwriting)
{
    nd_tensor *x = leaf(2, S(2, 2), V(1, 2, 3, 4)), *n = NULL;
    char first[512] = "";
    if (_i == 1) {
        ck_assert_ptr_null(
            nd_matmul(ctx, nd_zeros(ctx, 2, S(32, 784)), nd_zeros(ctx, 2, S(128, 10))));
        snprintf(first, sizeof first, "%s", nd_ctx_errmsg(ctx));
    }
    if (_i == 0) /* the first NULL is reported, naming the op and the argument */
        snprintf(first, sizeof first, "nd_add: input a is NULL");
    nd_status want = _i == 1 ? ND_ERR_SHAPE : ND_ERR_ARG;
    nd_custom_op op = {"noop", noop_backward, NULL};
    nd_tensor *results[] = {
        nd_add(ctx, n, x),
        nd_add(ctx, x, n),
        nd_sub(ctx, n, x),
        nd_sub(ctx, x, n),
        nd_mul(ctx, n, x),
        nd_mul(ctx, x, n),
        nd_div(ctx, n, x),
        nd_div(ctx, x, n),
        nd_expand(ctx, n, 2, S(2, 2)),
        nd_sum_to(ctx, n, 1, S(2)),
        nd_neg(ctx, n),
        nd_add_scalar(ctx, n, 1),
        nd_mul_scalar(ctx, n, 2),
        nd_pow_scalar(ctx, n, 2),
        nd_exp(ctx, n),
        nd_log(ctx, n),
        nd_sqrt(ctx, n),
        nd_abs(ctx, n),
        nd_sin(ctx, n),
        nd_cos(ctx, n),
        nd_tanh(ctx, n),
        nd_tanh_backward(ctx, n, x),
        nd_tanh_backward(ctx, x, n),
        nd_sigmoid(ctx, n),
        nd_relu(ctx, n),
        nd_softplus(ctx, n),
        nd_matmul(ctx, n, x),
        nd_matmul(ctx, x, n),
        nd_matmul_t(ctx, x, n, true, true),
        nd_transpose(ctx, n),
        nd_reshape(ctx, n, 1, S(4)),
        nd_concat(ctx, (nd_tensor *[]){x, n, x}, 3, 0),
        nd_slice(ctx, n, 0, 0, 1),
        nd_pad(ctx, n, 0, 0, 3),
        nd_sum(ctx, n),
        nd_mean(ctx, n),
        nd_sum_axis(ctx, n, 0, false),
        nd_mean_axis(ctx, n, 0, false),
        nd_max_axis(ctx, n, 0, false),
        nd_log_softmax(ctx, n, 0),
        nd_record_custom(ctx, n, &op, 1, &x),
        nd_copy(ctx, n),
        nd_detach(ctx, n),
        nd_zeros_like(ctx, n),
        nd_ones_like(ctx, n),
        nd_lincomb(ctx, (nd_tensor *[]){x, n}, (nd_real[]){1, 1}, 2),
        nd_im2col(ctx, n, (nd_window2d){1, 1, 1, 1, 0, 0}),
        nd_col2im(ctx, n, S(1, 1, 2, 2), (nd_window2d){1, 1, 1, 1, 0, 0}),
        /* a whole forward pass fed by a failure */
        nd_sum(ctx, nd_tanh(ctx, nd_add(ctx, nd_matmul(ctx, x, n), x))),
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        ck_assert_msg(results[i] == NULL, "call %zu returned a tensor for a NULL input", i);
    ck_assert_int_eq(nd_ctx_error(ctx), want);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), first);
    /* the gradient entry points report the first error, or that the loss is NULL */
    nd_status st = nd_backward(ctx, NULL, 0);
    ck_assert_int_eq(st, want);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), first);
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, x, x)), *g = x;
    ck_assert_int_ne(nd_grad(ctx, &loss, NULL, 1, &x, 1, &g, 0), ND_OK);
    ck_assert_ptr_null(g); /* a failed nd_grad hands back no gradient */
    ck_assert_str_eq(nd_ctx_errmsg(ctx), first);
}
END_TEST

START_TEST(test_grad_seed_shape_mismatch)
{
    nd_tensor *x = leaf(2, S(2, 3), V(1, 2, 3, 4, 5, 6));
    nd_tensor *y = nd_mul(ctx, x, x);
    nd_tensor *seed = nd_zeros(ctx, 2, S(3, 2)), *g = x;
    ck_assert_int_eq(nd_grad(ctx, &y, &seed, 1, &x, 1, &g, 0), ND_ERR_SHAPE);
    expect_error(ND_ERR_SHAPE, "nd_grad", "(3, 2)", "(2, 3)");
    ck_assert_ptr_null(g);
    ck_assert(nd_ctx_grad_enabled(ctx)); /* grad mode restored on the error path */
    ck_assert_ptr_null(x->gnode);        /* no pending gradient left behind */
}
END_TEST

START_TEST(test_grad_rejects_null_lists)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2)), *y = nd_sum(ctx, x), *g[2];
    ck_assert_int_eq(nd_grad(ctx, (nd_tensor *[]){y, NULL}, NULL, 2, &x, 1, g, 0), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_grad", "outputs[1] is NULL", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, (nd_tensor *[]){x, NULL}, 2, g, 0), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_grad", "inputs[1] is NULL", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, &x, 1, NULL, 0), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_grad", "grads_out", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_grad(ctx, NULL, NULL, 1, &x, 1, g, 0), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_grad", NULL, NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_backward(ctx, NULL, 0), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_backward", NULL, NULL);
}
END_TEST

/* A backward rule that produces a gradient of the wrong shape is reported, not hidden. */
static void wrong_shape_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    (void)state;
    nd_accumulate_grad(c, out->src[0], nd_zeros(c, 1, (int[]){3}));
}

START_TEST(test_wrong_gradient_shape_is_graph_error)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2));
    nd_tensor *y = nd_tensor_new(ctx, 1, S(2));
    nd_custom_op op = {"wrong", wrong_shape_backward, NULL};
    y = nd_record_custom(ctx, y, &op, 1, &x);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, y), 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "(3,)", "(2,)", NULL);
    ck_assert_ptr_null(x->grad); /* nothing half-written */
}
END_TEST

/* --------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * issue 15: API misuse and hostile input (NULL ctx and inputs, NaN, gradient flags, a failing
 * backward leaves .grad as it was)
 */

/* Each op given a NULL input, with no earlier error, names itself and the argument (item 8). */
START_TEST(test_null_input_names_the_op_and_argument)
{
    nd_tensor *x = leaf(2, S(2, 2), V(1, 2, 3, 4)), *n = NULL;
    EXPECT_NULL_NAMED(nd_add(ctx, x, n), "nd_add: input b is NULL");
    EXPECT_NULL_NAMED(nd_sub(ctx, n, x), "nd_sub: input a is NULL");
    EXPECT_NULL_NAMED(nd_mul(ctx, n, n), "nd_mul: input a is NULL");
    EXPECT_NULL_NAMED(nd_div(ctx, x, n), "nd_div: input b is NULL");
    EXPECT_NULL_NAMED(nd_expand(ctx, n, 2, S(2, 2)), "nd_expand: input x is NULL");
    EXPECT_NULL_NAMED(nd_sum_to(ctx, n, 1, S(2)), "nd_sum_to: input x is NULL");
    EXPECT_NULL_NAMED(nd_neg(ctx, n), "nd_neg: input x is NULL");
    EXPECT_NULL_NAMED(nd_add_scalar(ctx, n, 1), "nd_add_scalar: input x is NULL");
    EXPECT_NULL_NAMED(nd_mul_scalar(ctx, n, 1), "nd_mul_scalar: input x is NULL");
    EXPECT_NULL_NAMED(nd_pow_scalar(ctx, n, 2), "nd_pow_scalar: input x is NULL");
    EXPECT_NULL_NAMED(nd_exp(ctx, n), "nd_exp: input x is NULL");
    EXPECT_NULL_NAMED(nd_log(ctx, n), "nd_log: input x is NULL");
    EXPECT_NULL_NAMED(nd_sqrt(ctx, n), "nd_sqrt: input x is NULL");
    EXPECT_NULL_NAMED(nd_abs(ctx, n), "nd_abs: input x is NULL");
    EXPECT_NULL_NAMED(nd_sin(ctx, n), "nd_sin: input x is NULL");
    EXPECT_NULL_NAMED(nd_cos(ctx, n), "nd_cos: input x is NULL");
    EXPECT_NULL_NAMED(nd_tanh(ctx, n), "nd_tanh: input x is NULL");
    EXPECT_NULL_NAMED(nd_tanh_backward(ctx, x, n), "nd_tanh_backward: input dout is NULL");
    EXPECT_NULL_NAMED(nd_sigmoid(ctx, n), "nd_sigmoid: input x is NULL");
    EXPECT_NULL_NAMED(nd_relu(ctx, n), "nd_relu: input x is NULL");
    EXPECT_NULL_NAMED(nd_softplus(ctx, n), "nd_softplus: input x is NULL");
    EXPECT_NULL_NAMED(nd_matmul(ctx, x, n), "nd_matmul: input b is NULL");
    EXPECT_NULL_NAMED(nd_matmul_t(ctx, n, x, true, false), "nd_matmul: input a is NULL");
    EXPECT_NULL_NAMED(nd_transpose(ctx, n), "nd_transpose: input x is NULL");
    EXPECT_NULL_NAMED(nd_reshape(ctx, n, 1, S(4)), "nd_reshape: input x is NULL");
    EXPECT_NULL_NAMED(nd_concat(ctx, (nd_tensor *[]){x, n}, 2, 0),
                      "nd_concat: input xs[1] is NULL");
    EXPECT_NULL_NAMED(nd_lincomb(ctx, (nd_tensor *[]){x, n}, (nd_real[]){1, 1}, 2),
                      "nd_lincomb: input xs[1] is NULL");
    EXPECT_NULL_NAMED(nd_slice(ctx, n, 0, 0, 1), "nd_slice: input x is NULL");
    EXPECT_NULL_NAMED(nd_pad(ctx, n, 0, 0, 3), "nd_pad: input x is NULL");
    EXPECT_NULL_NAMED(nd_sum(ctx, n), "nd_sum: input x is NULL");
    EXPECT_NULL_NAMED(nd_mean(ctx, n), "nd_mean: input x is NULL");
    EXPECT_NULL_NAMED(nd_sum_axis(ctx, n, 0, false), "nd_sum_axis: input x is NULL");
    EXPECT_NULL_NAMED(nd_mean_axis(ctx, n, 0, false), "nd_mean_axis: input x is NULL");
    EXPECT_NULL_NAMED(nd_max_axis(ctx, n, 0, false), "nd_max_axis: input x is NULL");
    EXPECT_NULL_NAMED(nd_log_softmax(ctx, n, 0), "nd_log_softmax: input x is NULL");
    EXPECT_NULL_NAMED(nd_im2col(ctx, n, (nd_window2d){1, 1, 1, 1, 0, 0}),
                      "nd_im2col: input x is NULL");
    EXPECT_NULL_NAMED(nd_col2im(ctx, n, S(1, 1, 2, 2), (nd_window2d){1, 1, 1, 1, 0, 0}),
                      "nd_col2im: input rows is NULL");
    EXPECT_NULL_NAMED(nd_conv2d(ctx, n, x, NULL, 1, 0), "nd_conv2d: input x is NULL");
    EXPECT_NULL_NAMED(nd_conv2d(ctx, x, n, NULL, 1, 0), "nd_conv2d: input w is NULL");
    EXPECT_NULL_NAMED(nd_copy(ctx, n), "nd_copy: input x is NULL");
    EXPECT_NULL_NAMED(nd_detach(ctx, n), "nd_detach: input x is NULL");
    nd_custom_op op = {"noop", noop_backward, NULL};
    EXPECT_NULL_NAMED(nd_record_custom(ctx, nd_copy(ctx, x), &op, 2, (nd_tensor *[]){x, n}),
                      "nd_record_custom: input xs[1] is NULL");
    /* the one-check pattern: a whole forward pass, checked once, prints the root cause */
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_sum(ctx, nd_tanh(ctx, nd_matmul(ctx, x, n))));
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "nd_matmul: input b is NULL");
}
END_TEST

/* A NULL ctx is no crash: the ctx functions answer an error code, ops NULL (item 8). */
START_TEST(test_null_ctx_ops_and_gradients_fail_cleanly)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2)), *g = x;
    ck_assert_ptr_null(nd_add(NULL, x, x));
    ck_assert_ptr_null(nd_tanh(NULL, x));
    ck_assert_ptr_null(nd_matmul(NULL, x, x));
    ck_assert_ptr_null(nd_concat(NULL, (nd_tensor *[]){x, x}, 2, 0));
    ck_assert_ptr_null(nd_sum(NULL, NULL));
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, x, x));
    ck_assert_int_eq(nd_backward(NULL, loss, 0), ND_ERR_ARG);
    ck_assert_int_eq(nd_grad(NULL, &loss, NULL, 1, &x, 1, &g, 0), ND_ERR_ARG);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK); /* nothing leaked into another ctx */
    ck_assert_ptr_null(x->grad);
}
END_TEST

/* relu(NaN) = NaN as torch.relu; the gradient passes at NaN as torch's threshold_backward
 * (item 2: relu mapped NaN to 0 and zeroed its gradient, hiding it from the non-finite checks) */
START_TEST(test_relu_propagates_nan)
{
    nd_tensor *x = leaf(1, S(4), V(NAN, -1, 0, 2));
    nd_tensor *y = nd_relu(ctx, x);
    ck_assert(isnan(y->data[0]));
    ck_assert(y->data[1] == 0 && y->data[2] == 0 && y->data[3] == 2);
    ck_assert(!nd_all_finite(y));
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, 1, 0, 0, 1);
    /* and the NaN reaches a loss built on it */
    nd_tensor *loss = nd_sum(ctx, nd_relu(ctx, x));
    ck_assert(isnan(nd_item(loss)));
}
END_TEST

/* max(1, NaN, 2) = NaN wherever the NaN sits, and the gradient goes to the first NaN, as
 * torch.max(x, dim) (item 2: the NaN was dropped unless it came first) */
START_TEST(test_max_axis_propagates_nan)
{
    nd_tensor *x = leaf(2, S(4, 3), V(1, NAN, 2, /* */ NAN, 5, 1, /* */ 3, 1, NAN, /* */ 1, 4, 2));
    nd_tensor *m = nd_max_axis(ctx, x, 1, false);
    ck_assert(isnan(m->data[0]) && isnan(m->data[1]) && isnan(m->data[2]));
    ck_assert(m->data[3] == 4);
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &m, NULL, 1, &x, 1, &g, 0), ND_OK);
    expect_values(g, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0);
    /* along axis 0 (strided lines), and two NaNs: the first takes the gradient */
    nd_tensor *c = leaf(2, S(3, 2), V(1, NAN, NAN, 7, 2, NAN));
    nd_tensor *mc = nd_max_axis(ctx, c, 0, true);
    ck_assert(isnan(mc->data[0]) && isnan(mc->data[1]));
    ck_assert_int_eq(nd_grad(ctx, &mc, NULL, 1, &c, 1, &g, 0), ND_OK);
    expect_values(g, 0, 1, 1, 0, 0, 0);
    /* max-pooling is im2col + max_axis: a NaN pixel makes its windows NaN */
    nd_tensor *img = tensor(4, S(1, 1, 2, 2), V(1, NAN, 3, 2));
    nd_tensor *rows = nd_im2col(ctx, img, (nd_window2d){2, 2, 2, 2, 0, 0});
    nd_tensor *pool = nd_max_axis(ctx, rows, 1, false);
    ck_assert(pool && isnan(pool->data[0]));
}
END_TEST

/* The vectorised tanh and exp (SLEEF on AVX2, else libm) keep NaN, in full vectors and tails */
START_TEST(test_simd_kernels_propagate_nan)
{
    nd_tensor *x = tensor(1, S(7), V(0.5, NAN, -1, 2, 3, NAN, 1));
    nd_tensor *t = nd_tanh(ctx, x), *e = nd_exp(ctx, x);
    for (int i = 0; i < 7; i++) {
        bool nan_in = i == 1 || i == 5;
        ck_assert_msg(isnan(t->data[i]) == nan_in, "tanh element %d", i);
        ck_assert_msg(isnan(e->data[i]) == nan_in, "exp element %d", i);
    }
    ck_assert_double_eq_tol(t->data[0], tanh(0.5), 1e-6);
    ck_assert_double_eq_tol(e->data[6], exp(1.0), 1e-6);
}
END_TEST

/* A second backward through a consumed graph is an error, as PyTorch (item 8: it accumulated
 * again); ND_RETAIN_GRAPH allows it; leaves are shared between graphs and are never consumed. */
START_TEST(test_second_backward_needs_retain_graph)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, S(2), true);
    w->data[0] = 1, w->data[1] = 2;
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, w, w));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    ck_assert(w->grad[0] == 2 && w->grad[1] == 4);
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "nd_backward", "already backpropagated", "ND_RETAIN_GRAPH");
    ck_assert(w->grad[0] == 2 && w->grad[1] == 4); /* not accumulated again */
    nd_ctx_clear_error(ctx);
    /* nd_grad through the consumed graph is refused too */
    nd_tensor *g = NULL;
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, &w, 1, &g, 0), ND_ERR_GRAPH);
    nd_ctx_clear_error(ctx);
    /* a new graph over the same parameter is fine */
    nd_tensor *loss2 = nd_sum(ctx, nd_mul_scalar(ctx, w, 3));
    ck_assert_int_eq(nd_backward(ctx, loss2, ND_RETAIN_GRAPH), ND_OK);
    ck_assert(w->grad[0] == 5 && w->grad[1] == 7);
    ck_assert_int_eq(nd_backward(ctx, loss2, ND_RETAIN_GRAPH), ND_OK);
    ck_assert(w->grad[0] == 8 && w->grad[1] == 10);
    /* nd_grad never consumes: a backward after it still works */
    ck_assert_int_eq(nd_grad(ctx, &loss2, NULL, 1, &w, 1, &g, 0), ND_OK);
    ck_assert_int_eq(nd_backward(ctx, loss2, 0), ND_OK); /* this one consumes */
    ck_assert(w->grad[0] == 11 && w->grad[1] == 13);
    ck_assert_int_eq(nd_backward(ctx, loss2, ND_RETAIN_GRAPH), ND_ERR_GRAPH);
    nd_ctx_clear_error(ctx);
    /* a loss built on a consumed intermediate is refused as well */
    nd_tensor *h = nd_mul(ctx, w, w);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, h), 0), ND_OK);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_exp(ctx, h)), 0), ND_ERR_GRAPH);
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_backward_rejects_bad_flags)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2));
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, x, x));
    ck_assert_int_eq(nd_backward(ctx, loss, ND_CREATE_GRAPH), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_backward", "nd_grad", NULL);
    nd_ctx_clear_error(ctx);
    nd_tensor *g;
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, &x, 1, &g, 64), ND_ERR_ARG);
    ck_assert_ptr_null(x->grad);
}
END_TEST

/* An input the outputs do not reach is an error naming it unless ND_ALLOW_UNUSED (item 1 of
 * issue 9: a silent zero gradient, e.g. a CNF trace computed with grad mode off). */
START_TEST(test_grad_unreached_input_is_an_error)
{
    nd_tensor *x = leaf(1, S(2), V(1, 2)), *z = leaf(1, S(2), V(3, 4));
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, x, x));
    nd_tensor *g[2] = {x, x};
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, (nd_tensor *[]){x, z}, 2, g, 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "nd_grad: inputs[1] is not reached by the outputs",
                 "ND_ALLOW_UNUSED", NULL);
    ck_assert(g[0] == NULL && g[1] == NULL);
    nd_ctx_clear_error(ctx);
    /* the CNF trap: the output was computed with grad mode off */
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *y = nd_mul(ctx, x, x);
    nd_ctx_set_grad(ctx, prev);
    ck_assert_int_eq(nd_grad(ctx, &y, NULL, 1, &x, 1, g, ND_CREATE_GRAPH), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "inputs[0]", "grad mode", NULL);
    nd_ctx_clear_error(ctx);
    /* an input that does not require grad */
    nd_tensor *c = tensor(1, S(2), V(1, 1));
    loss = nd_sum(ctx, nd_mul(ctx, x, c));
    ck_assert_int_eq(nd_grad(ctx, &loss, NULL, 1, &c, 1, g, 0), ND_ERR_GRAPH);
    expect_error(ND_ERR_GRAPH, "inputs[0] does not require grad", NULL, NULL);
}
END_TEST

/* A custom op whose backward fails (as odeint's adjoint can). */
static void failing_backward(nd_ctx *c, nd_tensor *out, void *state)
{
    (void)out, (void)state;
    nd_fail(c, ND_ERR_CALLBACK, "failing_op: backward failed on purpose");
}

static nd_tensor *failing_op(nd_ctx *c, nd_tensor *x)
{
    nd_tensor *y = nd_copy(c, x);
    nd_custom_op op = {"failing", failing_backward, NULL};
    return nd_record_custom(c, y, &op, 1, &x);
}

/* item 3 of issue 15: a failed backward leaves every .grad bit-identical, makes no .grad
 * buffer, and does not consume the graph; the rules before the failing one (the head's matmul,
 * which writes straight into .grad on the direct path) must not have touched .grad. */
START_TEST(test_failed_backward_leaves_grad_untouched)
{
    nd_tensor *W = nd_tensor_create(ctx, 2, S(2, 3), true),
              *h = nd_tensor_create(ctx, 1, S(2), true);
    nd_tensor *enc = nd_tensor_create(ctx, 1, S(3), true);
    nd_rng rng = nd_rng_seed(5);
    nd_tensor *all[3] = {W, h, enc};
    for (int p = 0; p < 3; p++) {
        nd_fill_normal(all[p], &rng, 0, 1);
        for (size_t k = 0; k < all[p]->size; k++) all[p]->grad[k] = (nd_real)(0.1 * k - 0.3);
    }
    nd_real before[3][6];
    for (int p = 0; p < 3; p++) memcpy(before[p], all[p]->grad, all[p]->size * sizeof(nd_real));
    nd_tensor *x = leaf(2, S(4, 3), V(1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3)); /* arena leaf */
    /* loss = sum(h * (failing(x * enc) @ W^T)) : W, h are reached before the failing rule */
    nd_tensor *z = failing_op(ctx, nd_mul(ctx, x, enc));
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, h, nd_matmul_t(ctx, z, W, false, true)));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_ERR_CALLBACK);
    expect_error(ND_ERR_CALLBACK, "failing_op", NULL, NULL);
    for (int p = 0; p < 3; p++)
        ck_assert_msg(!memcmp(before[p], all[p]->grad, all[p]->size * sizeof(nd_real)),
                      "param %d: .grad changed by a failed backward", p);
    ck_assert_ptr_null(x->grad);
    ck_assert_ptr_null(x->gnode);
    nd_tensor_destroy(W), nd_tensor_destroy(h), nd_tensor_destroy(enc);
}
END_TEST

/* The direct path stays where nothing can fail after it: a graph without custom ops, or the
 * part of the sweep after the last custom rule, adds into .grad as before (values checked). */
START_TEST(test_backward_with_custom_op_still_accumulates_correctly)
{
    nd_tensor *W = nd_tensor_create(ctx, 2, S(2, 2), true),
              *h = nd_tensor_create(ctx, 1, S(2), true);
    W->data[0] = 1, W->data[1] = 2, W->data[2] = 3, W->data[3] = 4;
    h->data[0] = 1, h->data[1] = -1;
    W->grad[0] = 10, h->grad[1] = 10;
    nd_tensor *x = tensor(2, S(1, 2), V(1, 2));
    /* loss = sum(h * cube(x @ W^T)): h before the custom rule (deferred), W after (direct) */
    nd_tensor *u = nd_matmul_t(ctx, x, W, false, true); /* (1, 2) = [5, 11] */
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, h, cube(ctx, u, NULL)));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    expect_values(nd_tensor_from(ctx, 1, S(2), h->grad), 125, 1331 + 10);
    /* dL/du = h * 3u^2 = [75, -363]; dL/dW = dL/du^T x */
    expect_values(nd_tensor_from(ctx, 2, S(2, 2), W->grad), 75 + 10, 150, -363, -726);
    nd_tensor_destroy(W), nd_tensor_destroy(h);
}
END_TEST

/* A parameter made without a grad buffer that later requires grad gets its own .grad (it used to
 * get an arena buffer, which nd_tensor_destroy then freed). */
START_TEST(test_parameter_without_grad_buffer_gets_its_own)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, S(2), false);
    w->data[0] = 3, w->data[1] = 4;
    w->requires_grad = true;
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, w, w)), 0), ND_OK);
    ck_assert(w->grad[0] == 6 && w->grad[1] == 8);
    nd_ctx_reset(ctx);
    nd_zeros(ctx, 1, S(64)); /* reuse the arena */
    ck_assert(w->grad[0] == 6 && w->grad[1] == 8);
    nd_tensor_destroy(w);
}
END_TEST

static Suite *autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *fwd = tcase_create("forward"), *bwd = tcase_create("backward"),
          *err = tcase_create("errors");
    tcase_add_checked_fixture(fwd, ctx_setup, ctx_teardown);
    tcase_add_checked_fixture(bwd, ctx_setup, ctx_teardown);
    tcase_add_checked_fixture(err, ctx_setup, ctx_teardown);

    tcase_add_test(fwd, test_add_broadcasts_row_vector);
    tcase_add_test(fwd, test_mul_broadcasts_column_by_row);
    tcase_add_test(fwd, test_binary_ops_with_scalar);
    tcase_add_test(fwd, test_sub_div_same_shape);
    tcase_add_test(fwd, test_add_broadcasts_3d);
    tcase_add_test(fwd, test_mul_broadcasts_4d);
    tcase_add_test(fwd, test_expand_and_sum_to_values);
    tcase_add_test(fwd, test_unary_values);
    tcase_add_test(fwd, test_pow_scalar_values);
    tcase_add_test(fwd, test_saturating_ops_stay_finite);
    tcase_add_test(fwd, test_tanh_backward_values);
    tcase_add_test(fwd, test_matmul_2d_values);
    tcase_add_loop_test(fwd, test_matmul_t_all_transpose_flags, 0, 4);
    tcase_add_test(fwd, test_matmul_batched_values);
    tcase_add_test(fwd, test_matmul_3d_by_shared_2d);
    tcase_add_test(fwd, test_transpose_values);
    tcase_add_test(fwd, test_reshape_infers_minus_one_and_shares_data);
    tcase_add_test(fwd, test_concat_three_inputs_axis0_and_axis1);
    tcase_add_test(fwd, test_slice_and_pad_values);
    tcase_add_test(fwd, test_lincomb_values);
    tcase_add_test(fwd, test_im2col_and_col2im_values);
    tcase_add_test(fwd, test_sum_and_mean_values);
    tcase_add_test(fwd, test_sum_axis_keepdim_and_negative_axis);
    tcase_add_test(fwd, test_max_axis_values);
    tcase_add_test(fwd, test_max_axis_gradient_goes_to_first_maximum);
    tcase_add_test(fwd, test_log_softmax_values_axis0_and_axis1);
    tcase_add_test(fwd, test_log_softmax_is_stable_for_large_inputs);

    tcase_add_test(bwd, test_registry_leaf_entry);
    tcase_add_loop_test(bwd, test_every_op_is_registered_and_checked, 1, ND_OP_COUNT);
    tcase_add_loop_test(bwd, test_binary_ops_broadcast_gradcheck, 0,
                        (int)(sizeof binops / sizeof binops[0]) * N_BCASTS);
    tcase_add_test(bwd, test_add_sub_first_order_through_broadcast);
    tcase_add_loop_test(bwd, test_pow_scalar_exponents_gradcheck, 0, 7);
    tcase_add_loop_test(bwd, test_matmul_transpose_flags_gradcheck, 0, 4);
    tcase_add_test(bwd, test_matmul_batched_and_shared_weight_gradcheck);
    tcase_add_test(bwd, test_layer_gradcheck);
    tcase_add_loop_test(bwd, test_reductions_gradcheck_every_axis, 0, 6);
    tcase_add_test(bwd, test_mean_gradcheck);
    tcase_add_test(bwd, test_log_softmax_axis0_gradcheck);
    tcase_add_test(bwd, test_concat_axis0_and_four_inputs_gradcheck);
    tcase_add_test(bwd, test_shape_ops_more_gradchecks);
    tcase_add_test(bwd, test_lincomb_zero_coefficient_gets_zero_gradient);
    tcase_add_test(bwd, test_convolution_gradcheck);
    tcase_add_test(bwd, test_conv2d_matches_im2col_reference);
    tcase_add_test(bwd, test_conv2d_backward_into_grad);
    tcase_add_test(bwd, test_conv2d_gradcheck_geometries);
    tcase_add_test(bwd, test_conv2d_threads_deterministic);
    tcase_add_test(bwd, test_elementwise_threads_bitwise);
    tcase_add_test(bwd, test_max_pool2d_matches_im2col_reference);
    tcase_add_test(bwd, test_linear_matches_composition);
    tcase_add_test(bwd, test_group_norm_matches_composed_reference);
    tcase_add_test(bwd, test_group_norm_backward_into_grad);
    tcase_add_test(bwd, test_group_norm_gradcheck_geometries);
    tcase_add_test(bwd, test_group_norm_threads_deterministic);
    tcase_add_test(bwd, test_custom_op_forward_backward_and_state);
    tcase_add_test(bwd, test_custom_op_gradcheck);
    tcase_add_test(bwd, test_nested_grad_inside_custom_backward);
    tcase_add_test(bwd, test_backward_accumulates_into_persistent_grad);
    tcase_add_test(bwd, test_backward_gives_arena_leaf_a_grad);
    tcase_add_test(bwd, test_backward_rejects_non_scalar_loss);
    tcase_add_test(bwd, test_grad_leaves_dot_grad_untouched);
    tcase_add_test(bwd, test_grad_unreached_input_gets_zeros_when_allowed);
    tcase_add_test(bwd, test_grad_with_seeds_and_several_outputs);
    tcase_add_test(bwd, test_diamond_graph);
    tcase_add_test(bwd, test_deep_chain_without_recursion);
    tcase_add_test(bwd, test_hessian_vector_product_of_mlp);
    tcase_add_test(bwd, test_grad_mode_off_records_nothing);
    tcase_add_test(bwd, test_create_graph_gives_differentiable_gradient);
    tcase_add_test(bwd, test_rewind_after_grad_reuses_memory);

    tcase_add_loop_test(err, test_binary_op_shape_mismatch_names_op_and_shapes, 0,
                        (int)(sizeof binary_ops / sizeof binary_ops[0]));
    tcase_add_test(err, test_matmul_rejects_bad_shapes);
    tcase_add_test(err, test_expand_and_sum_to_reject_bad_shapes);
    tcase_add_loop_test(err, test_bad_axis_rejected, 0,
                        (int)(sizeof axis_ops / sizeof axis_ops[0]));
    tcase_add_test(err, test_bad_slice_and_pad_ranges);
    tcase_add_test(err, test_bad_reshape);
    tcase_add_test(err, test_transpose_needs_two_dims);
    tcase_add_test(err, test_concat_mismatch);
    tcase_add_test(err, test_lincomb_mismatch);
    tcase_add_test(err, test_im2col_and_col2im_reject_bad_shapes);
    tcase_add_test(err, test_conv2d_rejects_bad_shapes);
    tcase_add_loop_test(err, test_null_input_propagates_without_overwriting, 0, 2);
    tcase_add_test(err, test_grad_seed_shape_mismatch);
    tcase_add_test(err, test_grad_rejects_null_lists);
    tcase_add_test(err, test_backward_on_loss_without_grad_is_graph_error);
    tcase_add_test(err, test_wrong_gradient_shape_is_graph_error);
    tcase_add_test(err, test_null_input_names_the_op_and_argument);
    tcase_add_test(err, test_null_ctx_ops_and_gradients_fail_cleanly);
    tcase_add_test(fwd, test_relu_propagates_nan);
    tcase_add_test(fwd, test_max_axis_propagates_nan);
    tcase_add_test(fwd, test_simd_kernels_propagate_nan);
    tcase_add_test(err, test_second_backward_needs_retain_graph);
    tcase_add_test(err, test_backward_rejects_bad_flags);
    tcase_add_test(err, test_grad_unreached_input_is_an_error);
    tcase_add_test(err, test_failed_backward_leaves_grad_untouched);
    tcase_add_test(bwd, test_backward_with_custom_op_still_accumulates_correctly);
    tcase_add_test(bwd, test_parameter_without_grad_buffer_gets_its_own);

    suite_add_tcase(s, fwd);
    suite_add_tcase(s, bwd);
    suite_add_tcase(s, err);
    return s;
}

ND_TEST_MAIN(autograd_suite)

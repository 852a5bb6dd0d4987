/* SPDX-License-Identifier: MIT
 * tests/test_tensor.c: the tensor module's Check suite. Tensors (persistent and arena-owned),
 * shapes and their text, the ctx arena (alignment, mark/rewind, reset without growth, blocks
 * larger than a chunk), the sticky first error and the status texts, and the xoshiro256** RNG
 * (reference values, statistics within 5 standard errors, unbiased nd_rng_below).
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_main.h"

static bool is_aligned64(const void *p)
{
    return (uintptr_t)p % 64 == 0;
}

/* ---------------------------------------------------------------------------------------------
 * forward: tensors
 */
START_TEST(test_tensor_create_is_zeroed_with_own_grad)
{
    nd_tensor *w = nd_tensor_create(ctx, 2, (int[]){3, 4}, true);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->ndim, 2);
    ck_assert_int_eq(w->shape[0], 3);
    ck_assert_int_eq(w->shape[1], 4);
    ck_assert_uint_eq(w->size, 12);
    ck_assert(w->persistent);
    ck_assert(w->requires_grad);
    ck_assert_int_eq(w->op, ND_OP_NONE);
    ck_assert_int_eq(w->n_src, 0);
    ck_assert_ptr_nonnull(w->grad);
    ck_assert_ptr_ne(w->grad, w->data);
    for (size_t i = 0; i < w->size; i++) {
        ck_assert(w->data[i] == 0);
        ck_assert(w->grad[i] == 0);
    }

    nd_tensor *c = nd_tensor_create(ctx, 1, (int[]){5}, false);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->grad);
    ck_assert(!c->requires_grad);
    ck_assert(c->persistent);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    nd_tensor_destroy(w);
    nd_tensor_destroy(c);
    nd_tensor_destroy(NULL); /* like free(NULL) */
}
END_TEST

START_TEST(test_tensor_create_scalar_has_size_one)
{
    nd_tensor *s = nd_tensor_create(ctx, 0, NULL, false);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->ndim, 0);
    ck_assert_uint_eq(s->size, 1);
    ck_assert(s->data[0] == 0);
    nd_tensor_destroy(s);
}
END_TEST

START_TEST(test_persistent_tensor_survives_reset)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, (int[]){4}, true);
    for (int i = 0; i < 4; i++) w->data[i] = (nd_real)(i + 1), w->grad[i] = (nd_real)(10 + i);
    for (int step = 0; step < 3; step++) {
        nd_tensor *t = nd_full(ctx, 1, (int[]){1000}, -7); /* scribbles over the arena */
        ck_assert_ptr_nonnull(t);
        nd_ctx_reset(ctx);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert(w->data[i] == (nd_real)(i + 1));
        ck_assert(w->grad[i] == (nd_real)(10 + i));
    }
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_arena_tensor_is_a_plain_leaf)
{
    nd_tensor *t = nd_tensor_new(ctx, 3, (int[]){2, 3, 4});
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_uint_eq(t->size, 24);
    ck_assert(!t->persistent);
    ck_assert(!t->requires_grad);
    ck_assert_ptr_null(t->grad);
    ck_assert_int_eq(t->op, ND_OP_NONE);
    ck_assert_ptr_null(t->gnode);
    ck_assert(is_aligned64(t->data));
    ck_assert_uint_ge(nd_ctx_used(ctx), 24 * sizeof(nd_real));

    int widest[ND_MAX_DIMS]; /* (2, 1, 3, 2, 1, ...) */
    for (int i = 0; i < ND_MAX_DIMS; i++) widest[i] = i < 4 ? (int[]){2, 1, 3, 2}[i] : 1;
    nd_tensor *t4 = nd_tensor_new(ctx, ND_MAX_DIMS, widest);
    ck_assert_ptr_nonnull(t4);
    ck_assert_uint_eq(t4->size, 12);
}
END_TEST

START_TEST(test_zeros_full_scalar_and_likes)
{
    nd_tensor *z = nd_zeros(ctx, 2, (int[]){2, 5});
    nd_tensor *f = nd_full(ctx, 2, (int[]){2, 5}, (nd_real)2.5);
    nd_tensor *s = nd_scalar(ctx, (nd_real)-3);
    nd_tensor *o = nd_ones_like(ctx, z);
    nd_tensor *zl = nd_zeros_like(ctx, f);
    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(o);
    ck_assert_ptr_nonnull(zl);
    for (size_t i = 0; i < 10; i++) {
        ck_assert(z->data[i] == 0);
        ck_assert(f->data[i] == (nd_real)2.5);
        ck_assert(o->data[i] == 1);
        ck_assert(zl->data[i] == 0);
    }
    ck_assert(nd_same_shape(o, z));
    ck_assert(nd_same_shape(zl, f));
    ck_assert_int_eq(s->ndim, 0);
    ck_assert_uint_eq(s->size, 1);
    ck_assert(nd_item(s) == -3);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    ck_assert_ptr_null(nd_ones_like(ctx, NULL));
    expect_error(ND_ERR_ARG, "nd_ones_like: input x is NULL", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_zeros_like(ctx, NULL));
    expect_error(ND_ERR_ARG, "nd_zeros_like: input x is NULL", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_view(ctx, NULL, 0, 1, (int[]){1})); /* issue 15 audit: no message */
    expect_error(ND_ERR_ARG, "nd_view: input x is NULL", NULL);
}
END_TEST

START_TEST(test_tensor_from_copies_the_data)
{
    nd_real src[6] = {1, 2, 3, 4, 5, 6};
    nd_tensor *t = nd_tensor_from(ctx, 2, (int[]){3, 2}, src);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_ne(t->data, src);
    src[0] = 100;
    for (int i = 0; i < 6; i++) ck_assert(t->data[i] == (nd_real)(i + 1));
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 2);
}
END_TEST

START_TEST(test_copy_is_independent_and_has_no_graph)
{
    nd_tensor *w = nd_tensor_create(ctx, 2, (int[]){2, 2}, true);
    for (int i = 0; i < 4; i++) w->data[i] = (nd_real)(i - 1);
    nd_tensor *y = nd_mul_scalar(ctx, w, 3); /* recorded: requires grad */
    ck_assert(y->requires_grad);
    nd_tensor *c = nd_copy(ctx, y);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c->data, y->data);
    ck_assert(nd_same_shape(c, y));
    ck_assert(!c->requires_grad);
    ck_assert(!c->persistent);
    ck_assert_int_eq(c->op, ND_OP_NONE);
    ck_assert_int_eq(c->n_src, 0);
    for (int i = 0; i < 4; i++) ck_assert(c->data[i] == 3 * (nd_real)(i - 1));
    c->data[0] = 42;
    ck_assert(y->data[0] == -3);
    ck_assert_ptr_null(nd_copy(ctx, NULL));
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_detach_shares_data_without_graph)
{
    nd_tensor *w = nd_tensor_create(ctx, 1, (int[]){3}, true);
    w->name = "w";
    nd_tensor *y = nd_add_scalar(ctx, w, 1);
    nd_tensor *d = nd_detach(ctx, y);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(d->data, y->data); /* no copy */
    ck_assert(nd_same_shape(d, y));
    ck_assert(!d->requires_grad);
    ck_assert(!d->persistent);
    ck_assert_ptr_null(d->grad);
    ck_assert_int_eq(d->op, ND_OP_NONE);
    ck_assert_int_eq(d->n_src, 0);

    nd_tensor *dw = nd_detach(ctx, w); /* of a parameter: not persistent, keeps the name */
    ck_assert_ptr_eq(dw->data, w->data);
    ck_assert(!dw->persistent);
    ck_assert_str_eq(dw->name, "w");
    ck_assert_ptr_null(nd_detach(ctx, NULL));
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_item_same_shape_all_finite)
{
    nd_tensor *a = nd_full(ctx, 2, (int[]){2, 3}, 7);
    nd_tensor *b = nd_zeros(ctx, 2, (int[]){2, 3});
    nd_tensor *c = nd_zeros(ctx, 2, (int[]){3, 2});
    nd_tensor *d = nd_zeros(ctx, 1, (int[]){6});
    ck_assert(nd_item(a) == 7);
    ck_assert(isnan(nd_item(NULL)));
    ck_assert(nd_same_shape(a, b));
    ck_assert(!nd_same_shape(a, c));
    ck_assert(!nd_same_shape(a, d));
    ck_assert(nd_all_finite(a));
    b->data[4] = (nd_real)NAN;
    ck_assert(!nd_all_finite(b));
    b->data[4] = (nd_real)-INFINITY;
    ck_assert(!nd_all_finite(b));
}
END_TEST

START_TEST(test_shape_str_formats)
{
    char buf[64];
    ck_assert_str_eq(nd_shape_str(nd_zeros(ctx, 2, (int[]){32, 784}), buf), "(32, 784)");
    ck_assert_str_eq(nd_shape_str(nd_zeros(ctx, 1, (int[]){5}), buf), "(5,)");
    ck_assert_str_eq(nd_shape_str(nd_scalar(ctx, 1), buf), "()");
    ck_assert_str_eq(nd_shape_str(nd_zeros(ctx, 4, (int[]){2, 3, 4, 5}), buf), "(2, 3, 4, 5)");
    ck_assert_str_eq(nd_shape_str(NULL, buf), "(null)");
    ck_assert_ptr_eq(nd_shape_str(NULL, buf), buf);
    /* the widest shape fits the documented 64 bytes */
    nd_tensor wide = {.ndim = ND_MAX_DIMS};
    char expect[128] = "(";
    for (int i = 0; i < ND_MAX_DIMS; i++) {
        wide.shape[i] = 2147483647;
        strcat(expect, i ? ", 2147483647" : "2147483647");
    }
    strcat(expect, ")");
    ck_assert_uint_lt(strlen(expect), 64);
    ck_assert_str_eq(nd_shape_str(&wide, buf), expect);
}
END_TEST

START_TEST(test_zero_grad_clears_persistent_grads)
{
    nd_tensor *a = nd_tensor_create(ctx, 1, (int[]){3}, true);
    nd_tensor *b = nd_tensor_create(ctx, 2, (int[]){2, 2}, true);
    nd_tensor *c = nd_tensor_create(ctx, 1, (int[]){2}, false); /* no grad buffer */
    for (int i = 0; i < 3; i++) a->grad[i] = 5, a->data[i] = 1;
    for (int i = 0; i < 4; i++) b->grad[i] = -2;
    nd_tensor *params[] = {a, NULL, b, c};
    nd_zero_grad(params, 4);
    for (int i = 0; i < 3; i++) {
        ck_assert(a->grad[i] == 0);
        ck_assert(a->data[i] == 1); /* data untouched */
    }
    for (int i = 0; i < 4; i++) ck_assert(b->grad[i] == 0);
    nd_tensor_destroy(a);
    nd_tensor_destroy(b);
    nd_tensor_destroy(c);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: the arena
 */
START_TEST(test_ctx_alloc_is_64_byte_aligned_and_disjoint)
{
    static const size_t sizes[] = {1, 3, 7, 8, 63, 64, 65, 100, 1000, 4097, 0, 129};
    char *prev = NULL;
    size_t prev_size = 0;
    for (int round = 0; round < 50; round++) { /* enough to cross into new chunks */
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            char *p = nd_ctx_alloc(ctx, sizes[i]);
            ck_assert_ptr_nonnull(p);
            ck_assert_msg(is_aligned64(p), "allocation of %zu bytes at %p", sizes[i], (void *)p);
            memset(p, 0xab, sizes[i]); /* the sanitizer build checks the bytes are ours */
            if (prev) ck_assert(p >= prev + prev_size || p + sizes[i] <= prev);
            prev = p, prev_size = sizes[i];
        }
    }
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
}
END_TEST

START_TEST(test_ctx_used_grows_with_allocations)
{
    ck_assert_uint_eq(nd_ctx_used(ctx), 0);
    ck_assert_uint_eq(nd_ctx_capacity(ctx), 0); /* nothing allocated before the first use */
    nd_ctx_alloc(ctx, 100);
    size_t u1 = nd_ctx_used(ctx);
    ck_assert_uint_ge(u1, 100);
    nd_ctx_alloc(ctx, 1000);
    ck_assert_uint_ge(nd_ctx_used(ctx), u1 + 1000);
    ck_assert_uint_ge(nd_ctx_capacity(ctx), nd_ctx_used(ctx));
    ck_assert_uint_ge(nd_ctx_capacity(ctx), (size_t)1 << 20); /* the default chunk */
}
END_TEST

START_TEST(test_mark_rewind_reuses_memory)
{
    nd_ctx_alloc(ctx, 256);
    nd_mark m1 = nd_ctx_mark(ctx);
    size_t used1 = nd_ctx_used(ctx);
    void *a = nd_ctx_alloc(ctx, 100);
    nd_mark m2 = nd_ctx_mark(ctx);
    void *b = nd_ctx_alloc(ctx, 300);
    nd_ctx_rewind(ctx, m2);
    ck_assert_ptr_eq(nd_ctx_alloc(ctx, 300), b);
    nd_ctx_rewind(ctx, m1);
    ck_assert_uint_eq(nd_ctx_used(ctx), used1);
    ck_assert_ptr_eq(nd_ctx_alloc(ctx, 100), a);
    ck_assert_ptr_eq(nd_ctx_alloc(ctx, 300), b);
}
END_TEST

/* The adjoint pattern: scratch that spans several chunks is rewound each time, so repeating it
 * neither grows the arena nor moves the allocations. */
START_TEST(test_rewind_across_chunks_does_not_grow)
{
    nd_ctx *small = nd_ctx_create(4096);
    nd_ctx_alloc(small, 1000);
    nd_mark m = nd_ctx_mark(small);
    size_t used = nd_ctx_used(small);
    void *first[40];
    for (int i = 0; i < 40; i++) first[i] = nd_ctx_alloc(small, 700 + 50 * (size_t)i);
    size_t cap = nd_ctx_capacity(small);
    ck_assert_uint_gt(cap, 4096 * 4); /* it did span chunks */
    for (int rep = 0; rep < 20; rep++) {
        nd_ctx_rewind(small, m);
        ck_assert_uint_eq(nd_ctx_used(small), used);
        for (int i = 0; i < 40; i++)
            ck_assert_ptr_eq(nd_ctx_alloc(small, 700 + 50 * (size_t)i), first[i]);
        ck_assert_uint_eq(nd_ctx_capacity(small), cap);
    }
    ck_assert_int_eq(nd_ctx_error(small), ND_OK);
    nd_ctx_destroy(small);
}
END_TEST

/* One "training step": a mix of small and large tensors, one larger than a chunk. */
static void fake_step(nd_ctx *c, void **ptrs)
{
    int k = 0;
    for (int i = 0; i < 30; i++) ptrs[k++] = nd_ctx_alloc(c, 64 + 97 * (size_t)i);
    ptrs[k++] = nd_ctx_alloc(c, 3 * 4096 + 5);
    for (int i = 0; i < 10; i++) ptrs[k++] = nd_zeros(c, 2, (int[]){7, 9 + i});
}

START_TEST(test_reset_keeps_capacity_without_growth)
{
    nd_ctx *small = nd_ctx_create(4096);
    void *first[41], *again[41];
    fake_step(small, first);
    size_t cap = nd_ctx_capacity(small);
    ck_assert_uint_gt(cap, 0);
    for (int rep = 0; rep < 100; rep++) {
        nd_ctx_reset(small);
        ck_assert_uint_eq(nd_ctx_used(small), 0);
        ck_assert_uint_eq(nd_ctx_capacity(small), cap);
        fake_step(small, again);
        ck_assert_uint_eq(nd_ctx_capacity(small), cap); /* no growth: every chunk was reused */
        for (int i = 0; i < 41; i++) ck_assert_ptr_eq(again[i], first[i]);
    }
    ck_assert_int_eq(nd_ctx_error(small), ND_OK);
    nd_ctx_destroy(small);
}
END_TEST

START_TEST(test_allocation_larger_than_a_chunk)
{
    nd_ctx *small = nd_ctx_create(4096);
    ck_assert_ptr_nonnull(nd_ctx_alloc(small, 100));
    size_t big = (size_t)1 << 20; /* 256 chunks' worth */
    char *p = nd_ctx_alloc(small, big);
    ck_assert_ptr_nonnull(p);
    ck_assert(is_aligned64(p));
    memset(p, 1, big); /* all of it is ours (checked by the sanitizer build) */
    ck_assert_uint_ge(nd_ctx_capacity(small), big + 100);
    /* small allocations keep working after it, and a tensor larger than a chunk too */
    ck_assert_ptr_nonnull(nd_ctx_alloc(small, 10));
    nd_tensor *t = nd_full(small, 2, (int[]){300, 300}, 1);
    ck_assert_ptr_nonnull(t);
    ck_assert(t->data[300 * 300 - 1] == 1);
    ck_assert(p[big - 1] == 1); /* not overwritten by later allocations */
    ck_assert_int_eq(nd_ctx_error(small), ND_OK);
    nd_ctx_destroy(small);
}
END_TEST

START_TEST(test_grad_mode_switch)
{
    ck_assert(nd_ctx_grad_enabled(ctx)); /* on by default */
    ck_assert(nd_ctx_set_grad(ctx, false) == true);
    ck_assert(!nd_ctx_grad_enabled(ctx));
    ck_assert(nd_ctx_set_grad(ctx, false) == false);
    ck_assert(nd_ctx_set_grad(ctx, true) == false);
    ck_assert(nd_ctx_grad_enabled(ctx));
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: status texts
 */
static const struct {
    nd_status code;
    const char *text;
} status_table[] = {
    {ND_OK, "ok"},
    {ND_ERR_ARG, "invalid argument"},
    {ND_ERR_SHAPE, "shape mismatch"},
    {ND_ERR_NOMEM, "out of memory"},
    {ND_ERR_GRAPH, "invalid autograd graph"},
    {ND_ERR_IO, "input/output error"},
    {ND_ERR_FORMAT, "malformed file"},
    {ND_ERR_NONFINITE, "non-finite value"},
    {ND_ERR_CALLBACK, "user callback failed"},
    {ND_ERR_STEP_UNDERFLOW, "ODE step size underflow"},
    {ND_ERR_MAX_STEPS, "ODE solver exceeded max_num_steps"},
    {ND_ERR_NO_EVENT, "no ODE event before the end of the interval"},
    {ND_ERR_DIST, "distributed run failed"},
};

/* A code added to ND_STATUS_LIST must be added to status_table too. */
_Static_assert(sizeof status_table / sizeof status_table[0] == ND_STATUS_COUNT,
               "status_table must list every status code");

START_TEST(test_status_str_for_every_code)
{
    nd_status code = status_table[_i].code;
    ck_assert_int_eq(code, _i); /* ND_OK is 0 and the codes are dense */
    ck_assert_str_eq(nd_status_str(code), status_table[_i].text);
    for (int j = 0; j < ND_STATUS_COUNT; j++)
        if (j != _i) ck_assert_str_ne(nd_status_str(code), nd_status_str((nd_status)j));
}
END_TEST

START_TEST(test_status_str_out_of_range)
{
    ck_assert_str_eq(nd_status_str(ND_STATUS_COUNT), "unknown status");
    ck_assert_str_eq(nd_status_str((nd_status)-1), "unknown status");
    ck_assert_str_eq(nd_status_str((nd_status)1000), "unknown status");
}
END_TEST

/* The library's version string is the headers' MAJOR.MINOR.PATCH, and ND_VERSION orders them. */
START_TEST(test_version_macros_match_library)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", ND_VERSION_MAJOR, ND_VERSION_MINOR, ND_VERSION_PATCH);
    ck_assert_ptr_nonnull(nd_version());
    ck_assert_str_eq(nd_version(), want);
    ck_assert_str_eq(ND_VERSION_STRING, want);
    ck_assert_int_eq(ND_VERSION,
                     ND_VERSION_MAJOR * 10000 + ND_VERSION_MINOR * 100 + ND_VERSION_PATCH);
    ck_assert_int_ge(ND_VERSION, ND_VERSION_NUMBER(0, 1, 0));
    ck_assert_int_lt(ND_VERSION_NUMBER(0, 9, 9), ND_VERSION_NUMBER(1, 0, 0));
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * forward: random numbers
 */
START_TEST(test_rng_matches_reference_xoshiro256ss)
{
    /* from an independent implementation of splitmix64 seeding + xoshiro256** 1.0 */
    nd_rng r = nd_rng_seed(0);
    ck_assert_uint_eq(nd_rng_next(&r), 0x99ec5f36cb75f2b4ULL);
    ck_assert_uint_eq(nd_rng_next(&r), 0xbf6e1f784956452aULL);
    ck_assert_uint_eq(nd_rng_next(&r), 0x1a5f849d4933e6e0ULL);
    r = nd_rng_seed(42);
    ck_assert_uint_eq(nd_rng_next(&r), 0x15780b2e0c2ec716ULL);
    ck_assert_uint_eq(nd_rng_next(&r), 0x6104d9866d113a7eULL);
    ck_assert_uint_eq(nd_rng_next(&r), 0xae17533239e499a1ULL);
    r = nd_rng_seed(42);
    ck_assert_double_eq(nd_rng_uniform(&r), 0.08386297105988216); /* the top 53 bits * 2^-53 */
}
END_TEST

START_TEST(test_rng_is_deterministic_per_seed)
{
    nd_rng a = nd_rng_seed(7), b = nd_rng_seed(7), c = nd_rng_seed(8);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = nd_rng_next(&a);
        ck_assert_uint_eq(x, nd_rng_next(&b));
        differ += x != nd_rng_next(&c);
    }
    ck_assert_int_ge(differ, 999);
    /* normals too, including the spare of each Box-Muller pair */
    a = nd_rng_seed(3), b = nd_rng_seed(3);
    for (int i = 0; i < 101; i++) ck_assert_double_eq(nd_rng_normal(&a), nd_rng_normal(&b));
    /* a copy forks the stream: both continue identically */
    nd_rng fork = a;
    for (int i = 0; i < 10; i++) ck_assert_double_eq(nd_rng_normal(&a), nd_rng_normal(&fork));
}
END_TEST

START_TEST(test_rng_uniform_in_unit_interval_mean_half)
{
    enum { N = 100000 };
    nd_rng r = nd_rng_seed(12345);
    double sum = 0, sum2 = 0, lo = 1, hi = 0;
    for (int i = 0; i < N; i++) {
        double u = nd_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u, sum2 += u * u;
        lo = fmin(lo, u), hi = fmax(hi, u);
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    /* 5 standard errors: sd of U(0,1) is 1/sqrt(12); sd of the sample variance is ~sqrt(1/180/N) */
    ck_assert_double_eq_tol(mean, 0.5, 5 * sqrt(1.0 / 12 / N));
    ck_assert_double_eq_tol(var, 1.0 / 12, 5 * sqrt(1.0 / 180 / N));
    ck_assert_double_lt(lo, 1e-3); /* it covers the interval */
    ck_assert_double_gt(hi, 1 - 1e-3);
}
END_TEST

START_TEST(test_rng_normal_mean_and_std)
{
    enum { N = 100000 };
    nd_rng r = nd_rng_seed(2024);
    double sum = 0, sum2 = 0;
    int within1 = 0;
    for (int i = 0; i < N; i++) {
        double z = nd_rng_normal(&r);
        ck_assert(isfinite(z));
        sum += z, sum2 += z * z;
        within1 += fabs(z) < 1;
    }
    double mean = sum / N, sd = sqrt(sum2 / N - mean * mean);
    /* 5 standard errors: 1/sqrt(N) for the mean, 1/sqrt(2N) for the sd, and for P(|z| < 1) =
     * 0.682689 the binomial sqrt(p (1-p) / N) */
    ck_assert_double_eq_tol(mean, 0.0, 5 / sqrt(N));
    ck_assert_double_eq_tol(sd, 1.0, 5 / sqrt(2.0 * N));
    double p = 0.6826894921370859;
    ck_assert_double_eq_tol((double)within1 / N, p, 5 * sqrt(p * (1 - p) / N));
}
END_TEST

START_TEST(test_rng_below_is_in_range_and_uniform)
{
    nd_rng r = nd_rng_seed(99);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(nd_rng_below(&r, 1), 0);

    enum { N = 60000, K = 6 };
    int count[K] = {0};
    for (int i = 0; i < N; i++) {
        uint64_t x = nd_rng_below(&r, K);
        ck_assert_uint_lt(x, K);
        count[x]++;
    }
    double expect = (double)N / K, sd = sqrt(N * (1.0 / K) * (1 - 1.0 / K));
    for (int k = 0; k < K; k++) ck_assert_double_eq_tol(count[k], expect, 5 * sd);
}
END_TEST

/* n = 2/3 of 2^64: plain x % n would return values below n/2 with probability 2/3, not 1/2. */
START_TEST(test_rng_below_is_unbiased_for_large_n)
{
    enum { N = 20000 };
    const uint64_t n = 0xAAAAAAAAAAAAAAAAULL;
    nd_rng r = nd_rng_seed(5);
    int low = 0;
    for (int i = 0; i < N; i++) {
        uint64_t x = nd_rng_below(&r, n);
        ck_assert_uint_lt(x, n);
        low += x < n / 2;
    }
    ck_assert_double_eq_tol((double)low / N, 0.5, 5 * sqrt(0.25 / N));
}
END_TEST

START_TEST(test_fill_uniform_and_normal)
{
    enum { N = 100000 };
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){100, 1000});
    nd_rng r = nd_rng_seed(11), ref = nd_rng_seed(11);
    nd_fill_uniform(x, &r, -2, 3);
    double sum = 0;
    for (size_t i = 0; i < x->size; i++) {
        /* the fill is lo + (hi - lo) u from the same stream, rounded to nd_real */
        ck_assert(x->data[i] == (nd_real)(-2 + 5 * nd_rng_uniform(&ref)));
        ck_assert(x->data[i] >= -2 && x->data[i] <= 3);
        sum += x->data[i];
    }
    ck_assert_double_eq_tol(sum / N, 0.5, 5 * 5 / sqrt(12.0 * N));

    nd_fill_normal(x, &r, 3, 0.5);
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < x->size; i++) s1 += x->data[i], s2 += (double)x->data[i] * x->data[i];
    double mean = s1 / N, sd = sqrt(s2 / N - mean * mean);
    ck_assert_double_eq_tol(mean, 3, 5 * 0.5 / sqrt(N));
    ck_assert_double_eq_tol(sd, 0.5, 5 * 0.5 / sqrt(2.0 * N));
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * errors
 */
START_TEST(test_first_error_is_sticky)
{
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "");
    ck_assert_int_eq(nd_fail(ctx, ND_ERR_SHAPE, "first: %d", 1), ND_ERR_SHAPE);
    expect_error(ND_ERR_SHAPE, "first: 1", NULL);
    /* a second error does not overwrite the first, and nd_fail returns the first (the sticky
     * status), so `return nd_fail(...)` reports the root cause (contract item 4) */
    ck_assert_int_eq(nd_fail(ctx, ND_ERR_IO, "second"), ND_ERR_SHAPE);
    ck_assert_ptr_null(nd_fail_null(ctx, ND_ERR_ARG, "third"));
    expect_error(ND_ERR_SHAPE, "first: 1", NULL);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "first: 1");

    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "");
    ck_assert_ptr_null(nd_fail_null(ctx, ND_ERR_FORMAT, "after clear %s", "x"));
    expect_error(ND_ERR_FORMAT, "after clear x", NULL);
}
END_TEST

START_TEST(test_reset_clears_the_error)
{
    nd_fail(ctx, ND_ERR_NONFINITE, "boom");
    nd_ctx_reset(ctx);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), "");
}
END_TEST

START_TEST(test_long_error_message_is_truncated)
{
    char longmsg[2000];
    memset(longmsg, 'x', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    nd_fail(ctx, ND_ERR_ARG, "%s", longmsg);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_ARG);
    size_t len = strlen(nd_ctx_errmsg(ctx));
    ck_assert_uint_gt(len, 100);
    ck_assert_uint_lt(len, sizeof longmsg - 1);
}
END_TEST

START_TEST(test_fail_without_ctx_does_not_crash)
{
    ck_assert_int_eq(nd_fail(NULL, ND_ERR_ARG, "no ctx"), ND_ERR_ARG);
    ck_assert_ptr_null(nd_tensor_create(NULL, 1, (int[]){-1}, false));
}
END_TEST

/* Every constructor rejects bad shapes with ND_ERR_SHAPE and its own name in the message. */
typedef nd_tensor *(*maker_fn)(int ndim, const int *shape);

static nd_tensor *make_create(int ndim, const int *shape)
{
    nd_tensor *t = nd_tensor_create(ctx, ndim, shape, true);
    nd_tensor_destroy(t); /* NULL expected; destroy anyway so a bug does not also leak */
    return t;
}
static nd_tensor *make_new(int ndim, const int *shape)
{
    return nd_tensor_new(ctx, ndim, shape);
}
static nd_tensor *make_zeros(int ndim, const int *shape)
{
    return nd_zeros(ctx, ndim, shape);
}
static nd_tensor *make_full(int ndim, const int *shape)
{
    return nd_full(ctx, ndim, shape, 1);
}
static nd_tensor *make_from(int ndim, const int *shape)
{
    static const nd_real data[64] = {0};
    return nd_tensor_from(ctx, ndim, shape, data);
}

static const struct {
    const char *name;
    maker_fn make;
} makers[] = {
    {"nd_tensor_create", make_create}, {"nd_tensor_new", make_new},
    {"nd_zeros", make_zeros},          {"nd_full", make_full},
    {"nd_tensor_from", make_from},
};

START_TEST(test_invalid_shapes_rejected)
{
    const char *fn = makers[_i].name;
    int shape5[ND_MAX_DIMS + 1]; /* one dim too many, all 1 */
    for (int i = 0; i <= ND_MAX_DIMS; i++) shape5[i] = 1;
    char too_many[32];
    snprintf(too_many, sizeof too_many, "%d dims", ND_MAX_DIMS + 1);
    struct {
        int ndim;
        const int *shape;
        const char *detail;
    } bad[] = {
        {2, (int[]){3, -2}, "-2"},
        {2, (int[]){0, 4}, "dim 0"},
        {ND_MAX_DIMS + 1, shape5, too_many},
        {-1, shape5, "-1 dims"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        nd_ctx_clear_error(ctx);
        ck_assert_ptr_null(makers[_i].make(bad[k].ndim, bad[k].shape));
        expect_error(ND_ERR_SHAPE, fn, bad[k].detail);
    }
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(makers[_i].make(2, NULL));
    expect_error(ND_ERR_ARG, fn, NULL);
    /* a shape whose byte size overflows size_t is refused, not wrapped */
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(makers[_i].make(4, (int[]){2147483647, 2147483647, 2147483647, 8}));
    expect_error(ND_ERR_NOMEM, fn, NULL);
}
END_TEST

START_TEST(test_tensor_from_null_data)
{
    ck_assert_ptr_null(nd_tensor_from(ctx, 1, (int[]){3}, NULL));
    expect_error(ND_ERR_ARG, "nd_tensor_from", NULL);
}
END_TEST

START_TEST(test_ctx_alloc_overflow_is_nomem)
{
    ck_assert_ptr_null(nd_ctx_alloc(ctx, SIZE_MAX - 10));
    expect_error(ND_ERR_NOMEM, "nd_ctx_alloc", NULL);
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_nonnull(nd_ctx_alloc(ctx, 64)); /* the arena still works */
}
END_TEST

/* --------------------------------------------------------------------------------------------- */

/* A NULL ctx is no crash (issue 15 item 8): every ctx function answers an error code, NULL or 0,
 * and the tensor functions fail cleanly. */
START_TEST(test_null_ctx_functions_answer_errors)
{
    ck_assert_int_eq(nd_ctx_error(NULL), ND_ERR_ARG);
    ck_assert_str_eq(nd_ctx_errmsg(NULL), "ctx is NULL");
    nd_ctx_reset(NULL);
    nd_ctx_clear_error(NULL);
    nd_ctx_rewind(NULL, nd_ctx_mark(NULL));
    nd_ctx_destroy(NULL);
    ck_assert_ptr_null(nd_ctx_alloc(NULL, 16));
    ck_assert_uint_eq(nd_ctx_capacity(NULL), 0);
    ck_assert_uint_eq(nd_ctx_used(NULL), 0);
    ck_assert(!nd_ctx_set_grad(NULL, true));
    ck_assert(!nd_ctx_grad_enabled(NULL));
    ck_assert_int_eq(nd_fail(NULL, ND_ERR_IO, "x"), ND_ERR_IO);
    ck_assert_ptr_null(nd_fail_null(NULL, ND_ERR_IO, "x"));
    ck_assert_ptr_null(nd_zeros(NULL, 1, (int[]){3}));
    ck_assert_ptr_null(nd_full(NULL, 1, (int[]){3}, 1));
    ck_assert_ptr_null(nd_scalar(NULL, 1));
    ck_assert_ptr_null(nd_tensor_new(NULL, 1, (int[]){3}));
    ck_assert_ptr_null(nd_tensor_from(NULL, 1, (int[]){1}, (nd_real[]){1}));
    nd_tensor *x = nd_zeros(ctx, 1, (int[]){3});
    ck_assert_ptr_null(nd_zeros_like(NULL, x));
    ck_assert_ptr_null(nd_ones_like(NULL, x));
    ck_assert_ptr_null(nd_copy(NULL, x));
    ck_assert_ptr_null(nd_detach(NULL, x));
    ck_assert(!nd_same_shape(NULL, x));
    ck_assert(!nd_all_finite(NULL));
    ck_assert_int_eq(nd_ctx_error(ctx), ND_OK);
}
END_TEST

static Suite *tensor_suite(void)
{
    Suite *s = suite_create("tensor");
    TCase *fwd = tcase_create("forward"), *err = tcase_create("errors");
    tcase_add_checked_fixture(fwd, ctx_setup, ctx_teardown);
    tcase_add_checked_fixture(err, ctx_setup, ctx_teardown);

    tcase_add_test(fwd, test_tensor_create_is_zeroed_with_own_grad);
    tcase_add_test(fwd, test_tensor_create_scalar_has_size_one);
    tcase_add_test(fwd, test_persistent_tensor_survives_reset);
    tcase_add_test(fwd, test_arena_tensor_is_a_plain_leaf);
    tcase_add_test(fwd, test_zeros_full_scalar_and_likes);
    tcase_add_test(fwd, test_tensor_from_copies_the_data);
    tcase_add_test(fwd, test_copy_is_independent_and_has_no_graph);
    tcase_add_test(fwd, test_detach_shares_data_without_graph);
    tcase_add_test(fwd, test_item_same_shape_all_finite);
    tcase_add_test(fwd, test_shape_str_formats);
    tcase_add_test(fwd, test_zero_grad_clears_persistent_grads);
    tcase_add_test(fwd, test_ctx_alloc_is_64_byte_aligned_and_disjoint);
    tcase_add_test(fwd, test_ctx_used_grows_with_allocations);
    tcase_add_test(fwd, test_mark_rewind_reuses_memory);
    tcase_add_test(fwd, test_rewind_across_chunks_does_not_grow);
    tcase_add_test(fwd, test_reset_keeps_capacity_without_growth);
    tcase_add_test(fwd, test_allocation_larger_than_a_chunk);
    tcase_add_test(fwd, test_grad_mode_switch);
    tcase_add_loop_test(fwd, test_status_str_for_every_code, 0, ND_STATUS_COUNT);
    tcase_add_test(fwd, test_status_str_out_of_range);
    tcase_add_test(fwd, test_version_macros_match_library);
    tcase_add_test(fwd, test_rng_matches_reference_xoshiro256ss);
    tcase_add_test(fwd, test_rng_is_deterministic_per_seed);
    tcase_add_test(fwd, test_rng_uniform_in_unit_interval_mean_half);
    tcase_add_test(fwd, test_rng_normal_mean_and_std);
    tcase_add_test(fwd, test_rng_below_is_in_range_and_uniform);
    tcase_add_test(fwd, test_rng_below_is_unbiased_for_large_n);
    tcase_add_test(fwd, test_fill_uniform_and_normal);

    tcase_add_test(err, test_first_error_is_sticky);
    tcase_add_test(err, test_null_ctx_functions_answer_errors);
    tcase_add_test(err, test_reset_clears_the_error);
    tcase_add_test(err, test_long_error_message_is_truncated);
    tcase_add_test(err, test_fail_without_ctx_does_not_crash);
    tcase_add_loop_test(err, test_invalid_shapes_rejected, 0, sizeof makers / sizeof makers[0]);
    tcase_add_test(err, test_tensor_from_null_data);
    tcase_add_test(err, test_ctx_alloc_overflow_is_nomem);

    suite_add_tcase(s, fwd);
    suite_add_tcase(s, err);
    return s;
}

ND_TEST_MAIN(tensor_suite)

/* SPDX-License-Identifier: MIT
 * tests/test_rnn.c: the recurrent cells' Check suite (nn/rnn.c). GRUCell and LSTMCell forward
 * values and gradients against PyTorch (tests/reference-nn/rnn.json, written once by
 * make_reference_rnn.py), one step, a sequence and a masked sequence; first- and second-order
 * gradchecks of both cells and of the masked sequence helper; the masked update leaving
 * unobserved samples' state bit-identical; parameter names, init and a checkpoint round trip;
 * and the error messages (shapes, module kinds).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gradcheck.h"
#include "test_main.h"

#include "test_reference.h"

static void ref_load(void)
{
    ref_load_file("reference-nn/rnn.json");
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */
enum { B = 3, D = 4, H = 5, T = 4 }; /* the reference's sizes */

static nd_tensor *randn(int ndim, const int *shape, uint64_t seed, double scale)
{
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_normal(t, &rng, 0, scale);
    t->requires_grad = true;
    return t;
}

static nd_module *make_cell(bool lstm, int d, int h, uint64_t seed)
{
    nd_rng rng = nd_rng_seed(seed);
    nd_module *m = lstm ? nd_lstm_cell_create(ctx, d, h, true, &rng)
                        : nd_gru_cell_create(ctx, d, h, true, &rng);
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    return m;
}

static const char *const param_names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

/* Loads the reference parameters <tag>.weight_ih ... into the cell m. */
static void set_cell_from_ref(nd_module *m, const char *tag)
{
    ck_assert_int_eq(m->n_params, 4);
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", tag, param_names[i]);
        ck_assert_str_eq(m->params[i].name, param_names[i]);
        set_from_ref(m->params[i].tensor, name);
    }
}

static void expect_param_grads(nd_module *m, const char *tag)
{
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.d%s", tag, param_names[i]);
        expect_ref(name, m->params[i].tensor->grad, m->params[i].tensor->size, name);
    }
}

static void check_grads(const char *what, gc_fn f, nd_tensor **in, int n, void *user)
{
    char report[256] = "";
    gc_tol tol = gc_default_tol();
    ck_assert_msg(gradcheck(ctx, f, in, n, user, tol, report), "%s gradcheck: %s", what, report);
    ck_assert_msg(gradgradcheck(ctx, f, in, n, user, tol, report), "%s gradgradcheck: %s", what,
                  report);
}

/* ---------------------------------------------------------------------------------------------
 * Against PyTorch
 */
/* One GRU step from a random state: h' and the gradients of sum(r * h') w.r.t. x, h, params */
START_TEST(test_gru_cell_matches_torch)
{
    nd_module *m = make_cell(false, D, H, 1);
    set_cell_from_ref(m, "gru");
    nd_tensor *x = ref_tensor("gru.x", 2, (int[]){B, D}, true);
    nd_tensor *h = ref_tensor("gru.h", 2, (int[]){B, H}, true);
    nd_tensor *h2 = nd_gru_cell_step(ctx, m, x, h);
    ck_assert_msg(h2, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(h2->ndim, 2);
    ck_assert_int_eq(h2->shape[0], B);
    ck_assert_int_eq(h2->shape[1], H);
    expect_ref("gru h'", h2->data, h2->size, "gru.h2");
    nd_tensor *r = ref_tensor("gru.r", 2, h2->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, h2, r)), 0), ND_OK);
    expect_ref("gru dx", x->grad, x->size, "gru.dx");
    expect_ref("gru dh", h->grad, h->size, "gru.dh");
    expect_param_grads(m, "gru");
    nd_module_destroy(m);
}
END_TEST

/* One LSTM step: h', c' and the gradients of sum(r h') + sum(r_c c') */
START_TEST(test_lstm_cell_matches_torch)
{
    nd_module *m = make_cell(true, D, H, 1);
    set_cell_from_ref(m, "lstm");
    nd_tensor *x = ref_tensor("lstm.x", 2, (int[]){B, D}, true);
    nd_tensor *h = ref_tensor("lstm.h", 2, (int[]){B, H}, true);
    nd_tensor *c = ref_tensor("lstm.c", 2, (int[]){B, H}, true);
    nd_tensor *c2 = NULL, *h2 = nd_lstm_cell_step(ctx, m, x, h, c, &c2);
    ck_assert_msg(h2 && c2, "%s", nd_ctx_errmsg(ctx));
    expect_ref("lstm h'", h2->data, h2->size, "lstm.h2");
    expect_ref("lstm c'", c2->data, c2->size, "lstm.c2");
    nd_tensor *r = ref_tensor("lstm.r", 2, h2->shape, false);
    nd_tensor *rc = ref_tensor("lstm.rc", 2, c2->shape, false);
    nd_tensor *loss =
        nd_add(ctx, nd_sum(ctx, nd_mul(ctx, h2, r)), nd_sum(ctx, nd_mul(ctx, c2, rc)));
    ck_assert_int_eq(nd_backward(ctx, loss, 0), ND_OK);
    expect_ref("lstm dx", x->grad, x->size, "lstm.dx");
    expect_ref("lstm dh", h->grad, h->size, "lstm.dh");
    expect_ref("lstm dc", c->grad, c->size, "lstm.dc");
    expect_param_grads(m, "lstm");
    nd_module_destroy(m);
}
END_TEST

/* T steps from the zero state through nd_rnn_sequence (no mask) = PyTorch's loop over the cell */
START_TEST(test_sequence_matches_torch)
{
    bool lstm = _i == 1;
    const char *tag = lstm ? "lstm" : "gru", *seq = lstm ? "lstm_seq" : "gru_seq";
    char name[64];
    nd_module *m = make_cell(lstm, D, H, 2);
    set_cell_from_ref(m, tag);
    snprintf(name, sizeof name, "%s.xs", seq);
    nd_tensor *xs = ref_tensor(name, 3, (int[]){T, B, D}, true);
    nd_tensor *hs = nd_rnn_sequence(ctx, m, xs, NULL, NULL, NULL);
    ck_assert_msg(hs, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(hs->ndim, 3);
    ck_assert_int_eq(hs->shape[0], T);
    ck_assert_int_eq(hs->shape[2], H);
    snprintf(name, sizeof name, "%s.hs", seq);
    expect_ref(name, hs->data, hs->size, name);
    snprintf(name, sizeof name, "%s.r", seq);
    nd_tensor *r = ref_tensor(name, 3, hs->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, hs, r)), 0), ND_OK);
    snprintf(name, sizeof name, "%s.dxs", seq);
    expect_ref(name, xs->grad, xs->size, name);
    expect_param_grads(m, seq);
    nd_module_destroy(m);
}
END_TEST

/* A masked run from (h0, c0) = Rubanova et al.'s update m cell(x, h) + (1 - m) h in PyTorch,
 * with steps where all, some and no samples are observed: values and gradients */
START_TEST(test_masked_sequence_matches_torch)
{
    bool lstm = _i == 1;
    const char *tag = lstm ? "lstm" : "gru", *seq = lstm ? "lstm_mseq" : "gru_mseq";
    char name[64];
    nd_module *m = make_cell(lstm, D, H, 2);
    set_cell_from_ref(m, tag);
    snprintf(name, sizeof name, "%s.xs", seq);
    nd_tensor *xs = ref_tensor(name, 3, (int[]){T, B, D}, true);
    snprintf(name, sizeof name, "%s.mask", seq);
    nd_tensor *mask = ref_tensor(name, 3, (int[]){T, B, D}, false);
    snprintf(name, sizeof name, "%s.h0", seq);
    nd_tensor *h0 = ref_tensor(name, 2, (int[]){B, H}, true);
    snprintf(name, sizeof name, "%s.c0", seq);
    nd_tensor *c0 = lstm ? ref_tensor(name, 2, (int[]){B, H}, false) : NULL;
    nd_tensor *hs = nd_rnn_sequence(ctx, m, xs, mask, h0, c0);
    snprintf(name, sizeof name, "%s.hs", seq);
    expect_ref(name, hs ? hs->data : NULL, (size_t)T * B * H, name);
    snprintf(name, sizeof name, "%s.r", seq);
    nd_tensor *r = ref_tensor(name, 3, hs->shape, false);
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, nd_mul(ctx, hs, r)), 0), ND_OK);
    snprintf(name, sizeof name, "%s.dxs", seq);
    expect_ref(name, xs->grad, xs->size, name);
    snprintf(name, sizeof name, "%s.dh0", seq);
    expect_ref(name, h0->grad, h0->size, name);
    expect_param_grads(m, seq);
    nd_module_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Modules: forward from the zero state, names, init, checkpoints
 */
START_TEST(test_module_forward_steps_from_zero_state)
{
    for (int lstm = 0; lstm < 2; lstm++) {
        nd_module *m = make_cell(lstm, D, H, 3);
        nd_tensor *x = randn(2, (int[]){B, D}, 4, 1);
        nd_tensor *zero = nd_tensor_new(ctx, 2, (int[]){B, H}), *c2;
        memset(zero->data, 0, zero->size * sizeof(nd_real));
        nd_tensor *y = nd_module_forward(ctx, m, x);
        nd_tensor *want = lstm ? nd_lstm_cell_step(ctx, m, x, zero, zero, &c2)
                               : nd_gru_cell_step(ctx, m, x, zero);
        ck_assert_msg(y && want, "%s", nd_ctx_errmsg(ctx));
        ck_assert(memcmp(y->data, want->data, y->size * sizeof(nd_real)) == 0);
        ck_assert_int_eq(nd_rnn_cell_hidden_size(m), H);
        nd_module_destroy(m);
    }
}
END_TEST

/* PyTorch's names, shapes and order; every parameter in U(-1/sqrt(H), 1/sqrt(H)); bias=false */
START_TEST(test_cell_names_shapes_and_init)
{
    const char *kinds[2] = {"GRUCell", "LSTMCell"};
    int hidden = 64, in = 48;
    for (int lstm = 0; lstm < 2; lstm++) {
        nd_module *m = make_cell(lstm, in, hidden, 5);
        ck_assert_str_eq(m->kind, kinds[lstm]);
        nd_param_list l = {0};
        ck_assert_int_eq(nd_module_state(ctx, m, &l), ND_OK);
        ck_assert_int_eq(l.n, 4);
        int G = lstm ? 4 : 3, rows[4] = {G * hidden, G * hidden, G * hidden, G * hidden};
        int cols[4] = {in, hidden, 0, 0};
        double bound = 1 / sqrt((double)hidden);
        for (int i = 0; i < 4; i++) {
            const nd_tensor *t = l.items[i].tensor;
            ck_assert_str_eq(l.items[i].name, param_names[i]);
            ck_assert_int_eq(t->ndim, cols[i] ? 2 : 1);
            ck_assert_int_eq(t->shape[0], rows[i]);
            if (cols[i]) ck_assert_int_eq(t->shape[1], cols[i]);
            ck_assert(t->requires_grad);
            double maxabs = 0;
            for (size_t k = 0; k < t->size; k++) maxabs = fmax(maxabs, fabs((double)t->data[k]));
            ck_assert_msg(maxabs <= bound && maxabs > 0.9 * bound, "%s: max |w| %g, bound %g",
                          l.items[i].name, maxabs, bound);
        }
        nd_param_list_destroy(&l);
        nd_module_destroy(m);
        nd_rng rng = nd_rng_seed(1);
        m = lstm ? nd_lstm_cell_create(ctx, 2, 3, false, &rng)
                 : nd_gru_cell_create(ctx, 2, 3, false, &rng);
        ck_assert_int_eq(m->n_params, 2);
        ck_assert_str_eq(m->params[1].name, "weight_hh");
        nd_module_destroy(m);
    }
}
END_TEST

/* The state saved with nd_save loads into a fresh cell, which then computes the same outputs */
START_TEST(test_checkpoint_round_trip)
{
    char path[] = "/tmp/nd_test_rnn_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    for (int lstm = 0; lstm < 2; lstm++) {
        nd_module *a = make_cell(lstm, D, H, 6), *b = make_cell(lstm, D, H, 7);
        nd_param_list la = {0}, lb = {0};
        ck_assert_int_eq(nd_module_state(ctx, a, &la), ND_OK);
        ck_assert_int_eq(nd_module_state(ctx, b, &lb), ND_OK);
        ck_assert_int_eq(nd_save(ctx, path, la.items, la.n, NULL), ND_OK);
        ck_assert_int_eq(nd_load(ctx, path, lb.items, lb.n, NULL), ND_OK);
        nd_tensor *xs = randn(3, (int[]){T, B, D}, 8, 1);
        nd_tensor *ya = nd_rnn_sequence(ctx, a, xs, NULL, NULL, NULL);
        nd_tensor *yb = nd_rnn_sequence(ctx, b, xs, NULL, NULL, NULL);
        ck_assert_msg(ya && yb, "%s", nd_ctx_errmsg(ctx));
        ck_assert(memcmp(ya->data, yb->data, ya->size * sizeof(nd_real)) == 0);
        nd_param_list_destroy(&la);
        nd_param_list_destroy(&lb);
        nd_module_destroy(a);
        nd_module_destroy(b);
    }
    unlink(path);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * The masked sequence
 */
/* Masks of step t for samples b: sample 0 always observed, sample 1 never, sample 2 every
 * other step (via one channel only in the (T, B, D) form). */
static nd_tensor *make_mask(bool per_channel)
{
    nd_tensor *m = per_channel ? nd_tensor_new(ctx, 3, (int[]){T, B, D})
                               : nd_tensor_new(ctx, 2, (int[]){T, B});
    int per = per_channel ? D : 1;
    memset(m->data, 0, m->size * sizeof(nd_real));
    for (int t = 0; t < T; t++) {
        nd_real *row = m->data + (size_t)t * B * per;
        row[0] = 1;                                        /* sample 0 */
        if (t % 2 == 0) row[2 * per + (per - 1)] = 1;      /* sample 2, last channel */
        if (per_channel && t == 1) row[0 * per + 1] = 0.5; /* any nonzero counts */
    }
    return m;
}

/* Unobserved samples keep h (and the LSTM's c: seen in the next h) bit for bit; observed ones
 * get exactly the cell's update of the full batch. h0 holds -0.0 and a huge value, which an
 * arithmetic blend m h' + (1 - m) h would not keep. */
START_TEST(test_masked_sequence_keeps_unobserved_state)
{
    bool lstm = _i / 2, per_channel = _i % 2;
    nd_module *m = make_cell(lstm, D, H, 9);
    nd_tensor *xs = randn(3, (int[]){T, B, D}, 10, 1);
    nd_tensor *h0 = randn(2, (int[]){B, H}, 11, 1), *mask = make_mask(per_channel);
    h0->data[1 * H + 0] = (nd_real)-0.0;
    h0->data[1 * H + 1] = (nd_real)1e30;
    nd_tensor *hs = nd_rnn_sequence(ctx, m, xs, mask, h0, NULL);
    ck_assert_msg(hs, "%s", nd_ctx_errmsg(ctx));
    nd_tensor *h = h0, *c = nd_tensor_new(ctx, 2, (int[]){B, H}), *c2 = NULL;
    memset(c->data, 0, c->size * sizeof(nd_real));
    for (int t = 0; t < T; t++) {
        nd_tensor *xt = nd_reshape(ctx, nd_slice(ctx, xs, 0, t, 1), 2, (int[]){B, D});
        nd_tensor *full =
            lstm ? nd_lstm_cell_step(ctx, m, xt, h, c, &c2) : nd_gru_cell_step(ctx, m, xt, h);
        nd_tensor *next = nd_tensor_new(ctx, 2, (int[]){B, H});
        nd_tensor *next_c = nd_tensor_new(ctx, 2, (int[]){B, H});
        for (int b = 0; b < B; b++) {
            bool obs = b == 0 || (b == 2 && t % 2 == 0);
            size_t row = (size_t)b * H, n = H * sizeof(nd_real);
            const nd_real *got = hs->data + (size_t)t * B * H + row;
            const nd_real *want = (obs ? full : h)->data + row;
            ck_assert_msg(memcmp(got, want, n) == 0, "step %d sample %d (%s) differs", t, b,
                          obs ? "observed" : "unobserved");
            memcpy(next->data + row, want, n);
            if (lstm) memcpy(next_c->data + row, (obs ? c2 : c)->data + row, n);
        }
        h = next, c = next_c;
    }
    const nd_real *last = hs->data + (size_t)(T - 1) * B * H + H; /* sample 1, never observed */
    ck_assert(signbit(last[0]) && last[0] == 0 && last[1] == (nd_real)1e30);
    nd_module_destroy(m);
}
END_TEST

/* A step with no sample observed, or an all-zero mask, leaves the state as it was */
START_TEST(test_masked_sequence_all_unobserved)
{
    nd_module *m = make_cell(false, D, H, 12);
    nd_tensor *xs = randn(3, (int[]){T, B, D}, 13, 1), *h0 = randn(2, (int[]){B, H}, 14, 1);
    nd_tensor *mask = nd_tensor_new(ctx, 2, (int[]){T, B});
    memset(mask->data, 0, mask->size * sizeof(nd_real));
    nd_tensor *hs = nd_rnn_sequence(ctx, m, xs, mask, h0, NULL);
    ck_assert_msg(hs, "%s", nd_ctx_errmsg(ctx));
    for (int t = 0; t < T; t++)
        ck_assert(memcmp(hs->data + (size_t)t * B * H, h0->data, h0->size * sizeof(nd_real)) == 0);
    /* the gradient of the carried state is the identity: d sum(hs) / d h0 = T */
    ck_assert_int_eq(nd_backward(ctx, nd_sum(ctx, hs), 0), ND_OK);
    for (size_t i = 0; i < h0->size; i++) ck_assert_double_eq(h0->grad[i], T);
    nd_module_destroy(m);
}
END_TEST

/* One public masked step, with a (B,) and a (B, D) mask: observed rows are the cell's update
 * of the full batch, the others the old state (h and the LSTM's c), bit for bit */
START_TEST(test_masked_step_selects_rows)
{
    bool lstm = _i / 2, per_channel = _i % 2;
    nd_module *m = make_cell(lstm, D, H, 15);
    nd_tensor *x = randn(2, (int[]){B, D}, 16, 1), *h = randn(2, (int[]){B, H}, 17, 1);
    nd_tensor *c = lstm ? randn(2, (int[]){B, H}, 18, 1) : NULL, *c2 = x, *c_full = NULL;
    nd_tensor *mask =
        per_channel ? nd_tensor_new(ctx, 2, (int[]){B, D}) : nd_tensor_new(ctx, 1, (int[]){B});
    memset(mask->data, 0, mask->size * sizeof(nd_real));
    mask->data[per_channel ? 2 * D + 3 : 2] = 1; /* only sample 2 is observed */
    nd_tensor *h2 = nd_rnn_masked_step(ctx, m, x, mask, h, c, &c2);
    nd_tensor *full =
        lstm ? nd_lstm_cell_step(ctx, m, x, h, c, &c_full) : nd_gru_cell_step(ctx, m, x, h);
    ck_assert_msg(h2 && full, "%s", nd_ctx_errmsg(ctx));
    ck_assert(lstm ? c2 != NULL : c2 == NULL);
    size_t row = H * sizeof(nd_real);
    for (int b = 0; b < B; b++) {
        const nd_tensor *want = b == 2 ? full : h, *want_c = b == 2 ? c_full : c;
        ck_assert_msg(memcmp(h2->data + b * H, want->data + b * H, row) == 0, "h row %d", b);
        if (lstm)
            ck_assert_msg(memcmp(c2->data + b * H, want_c->data + b * H, row) == 0, "c row %d", b);
    }
    nd_module_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Gradchecks, first and second order
 */
static nd_tensor *f_gru(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    return nd_gru_cell(c, in[0], in[1], in[2], in[3], in[4], in[5]);
}

/* both outputs, h' and c', side by side: (B, 2H) */
static nd_tensor *f_lstm(nd_ctx *c, nd_tensor **in, void *u)
{
    (void)u;
    nd_tensor *c2, *h2 = nd_lstm_cell(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], &c2);
    return h2 ? nd_concat(c, (nd_tensor *[]){h2, c2}, 2, 1) : NULL;
}

START_TEST(test_cells_gradcheck)
{
    int b = 2, d = 3, h = 2;
    nd_tensor *in[7] = {randn(2, (int[]){b, d}, 20, 1), randn(2, (int[]){b, h}, 21, 1)};
    in[2] = randn(2, (int[]){3 * h, d}, 22, 0.7), in[3] = randn(2, (int[]){3 * h, h}, 23, 0.7);
    in[4] = randn(1, (int[]){3 * h}, 24, 0.5), in[5] = randn(1, (int[]){3 * h}, 25, 0.5);
    check_grads("gru cell", f_gru, in, 6, NULL);
    in[2] = randn(2, (int[]){b, h}, 26, 1); /* c */
    in[3] = randn(2, (int[]){4 * h, d}, 27, 0.7), in[4] = randn(2, (int[]){4 * h, h}, 28, 0.7);
    in[5] = randn(1, (int[]){4 * h}, 29, 0.5), in[6] = randn(1, (int[]){4 * h}, 30, 0.5);
    check_grads("lstm cell", f_lstm, in, 7, NULL);
}
END_TEST

typedef struct {
    nd_module *cell;
    nd_tensor *mask;
} seq_case;

static nd_tensor *f_sequence(nd_ctx *c, nd_tensor **in, void *u)
{
    seq_case *s = u;
    return nd_rnn_sequence(c, s->cell, in[0], s->mask, in[1], NULL);
}

/* Through the masked sequence: w.r.t. the inputs, h0 and every parameter */
START_TEST(test_masked_sequence_gradcheck)
{
    for (int lstm = 0; lstm < 2; lstm++) {
        seq_case s = {make_cell(lstm, D, 2, 31), make_mask(lstm)};
        nd_tensor *in[6] = {randn(3, (int[]){T, B, D}, 32, 1), randn(2, (int[]){B, 2}, 33, 1)};
        for (int i = 0; i < 4; i++) in[2 + i] = s.cell->params[i].tensor;
        check_grads(lstm ? "lstm sequence" : "gru sequence", f_sequence, in, 6, &s);
        nd_module_destroy(s.cell);
    }
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Errors
 */
START_TEST(test_cells_reject_wrong_shapes)
{
    nd_tensor *x = randn(2, (int[]){B, D}, 40, 1), *h = randn(2, (int[]){B, H}, 41, 1);
    nd_tensor *wi = randn(2, (int[]){3 * H, D}, 42, 1), *wh = randn(2, (int[]){3 * H, H}, 43, 1);
    nd_tensor *bad_x = randn(2, (int[]){B, D + 1}, 44, 1);
    ck_assert_ptr_null(nd_gru_cell(ctx, bad_x, h, wi, wh, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_gru_cell", "x (3, 5)", "weight_ih (15, 4)");
    nd_ctx_clear_error(ctx);
    nd_tensor *bad_h = randn(2, (int[]){B + 1, H}, 45, 1);
    ck_assert_ptr_null(nd_gru_cell(ctx, x, bad_h, wi, wh, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_gru_cell", "h (4, 5)");
    nd_ctx_clear_error(ctx);
    nd_tensor *bad_b = randn(1, (int[]){3 * H + 1}, 46, 1);
    ck_assert_ptr_null(nd_gru_cell(ctx, x, h, wi, wh, NULL, bad_b));
    expect_error(ND_ERR_SHAPE, "nd_gru_cell", "bias_hh (16,)");
    nd_ctx_clear_error(ctx);
    /* GRU weights (3H rows) given to the LSTM (4H); then a wrong c */
    nd_tensor *c2 = x;
    ck_assert_ptr_null(nd_lstm_cell(ctx, x, h, h, wi, wh, NULL, NULL, &c2));
    ck_assert_ptr_null(c2);
    expect_error(ND_ERR_SHAPE, "nd_lstm_cell", "weight_hh (15, 5)", "(4*H, H)");
    nd_ctx_clear_error(ctx);
    nd_tensor *wi4 = randn(2, (int[]){4 * H, D}, 47, 1), *wh4 = randn(2, (int[]){4 * H, H}, 48, 1);
    ck_assert_ptr_null(nd_lstm_cell(ctx, x, h, bad_h, wi4, wh4, NULL, NULL, &c2));
    expect_error(ND_ERR_SHAPE, "nd_lstm_cell", "c (4, 5)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lstm_cell(ctx, x, h, h, wi4, wh4, NULL, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_lstm_cell", "c_out");
    nd_ctx_clear_error(ctx);
    /* a NULL input with no earlier error names the op and the argument; after an error, the
     * first one stays (the NULL is that failure passed on) */
    ck_assert_ptr_null(nd_gru_cell(ctx, NULL, h, wi, wh, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_gru_cell: input x is NULL");
    ck_assert_ptr_null(nd_lstm_cell(ctx, x, NULL, h, wi4, wh4, NULL, NULL, &c2));
    ck_assert_ptr_null(nd_rnn_sequence(ctx, NULL, NULL, NULL, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_gru_cell: input x is NULL");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_rnn_sequence(ctx, NULL, NULL, NULL, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_rnn_sequence: input x is NULL");
}
END_TEST

START_TEST(test_steps_reject_wrong_module_kind)
{
    nd_rng rng = nd_rng_seed(1);
    nd_module *lin = nd_linear_create(ctx, D, H, true, &rng);
    nd_module *gru = make_cell(false, D, H, 2), *lstm = make_cell(true, D, H, 3);
    nd_tensor *x = randn(2, (int[]){B, D}, 50, 1), *h = randn(2, (int[]){B, H}, 51, 1), *c2;
    ck_assert_ptr_null(nd_gru_cell_step(ctx, lin, x, h));
    expect_error(ND_ERR_ARG, "nd_gru_cell_step", "a Linear", "not a GRUCell");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lstm_cell_step(ctx, gru, x, h, h, &c2));
    expect_error(ND_ERR_ARG, "nd_lstm_cell_step", "a GRUCell", "not a LSTMCell");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_gru_cell_step(ctx, NULL, x, h));
    expect_error(ND_ERR_ARG, "nd_gru_cell_step", "NULL");
    nd_ctx_clear_error(ctx);
    nd_tensor *xs = randn(3, (int[]){T, B, D}, 52, 1);
    ck_assert_ptr_null(nd_rnn_sequence(ctx, lin, xs, NULL, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_rnn_sequence", "a Linear", "GRUCell or an LSTMCell");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_rnn_cell_hidden_size(lin), 0);
    ck_assert_int_eq(nd_rnn_cell_hidden_size(lstm), H);
    nd_module_destroy(lin);
    nd_module_destroy(gru);
    nd_module_destroy(lstm);
}
END_TEST

START_TEST(test_sequence_rejects_wrong_shapes)
{
    nd_module *gru = make_cell(false, D, H, 2), *lstm = make_cell(true, D, H, 3);
    nd_tensor *xs = randn(3, (int[]){T, B, D}, 60, 1), *h0 = randn(2, (int[]){B, H}, 61, 1);
    ck_assert_ptr_null(nd_rnn_sequence(ctx, gru, h0, NULL, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "input (3, 5)", "(T, B, D)");
    nd_ctx_clear_error(ctx);
    nd_tensor *bad_mask = nd_tensor_new(ctx, 2, (int[]){T, B + 1});
    ck_assert_ptr_null(nd_rnn_sequence(ctx, gru, xs, bad_mask, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "mask (4, 4)", "input (4, 3, 4)");
    nd_ctx_clear_error(ctx);
    bad_mask = nd_tensor_new(ctx, 3, (int[]){T, B, D + 1});
    ck_assert_ptr_null(nd_rnn_sequence(ctx, gru, xs, bad_mask, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "mask (4, 3, 5)");
    nd_ctx_clear_error(ctx);
    nd_tensor *bad_h = randn(2, (int[]){B, H + 1}, 62, 1);
    ck_assert_ptr_null(nd_rnn_sequence(ctx, lstm, xs, NULL, bad_h, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "h0 (3, 6)", "(B, H) = (3, 5)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_rnn_sequence(ctx, gru, xs, NULL, h0, h0)); /* c0 for a GRU */
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "c0 (3, 5)", "only for an LSTMCell");
    nd_ctx_clear_error(ctx);
    /* a wrong input width, even where nothing is observed */
    nd_tensor *wide = randn(3, (int[]){T, B, D + 2}, 63, 1);
    nd_tensor *none = nd_tensor_new(ctx, 2, (int[]){T, B});
    memset(none->data, 0, none->size * sizeof(nd_real));
    ck_assert_ptr_null(nd_rnn_sequence(ctx, lstm, wide, none, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_sequence", "input (4, 3, 6)", "input_size 4");
    nd_module_destroy(gru);
    nd_module_destroy(lstm);
}
END_TEST

START_TEST(test_masked_step_rejects_bad_input)
{
    nd_module *gru = make_cell(false, D, H, 2), *lstm = make_cell(true, D, H, 3);
    nd_tensor *x = randn(2, (int[]){B, D}, 70, 1), *h = randn(2, (int[]){B, H}, 71, 1), *c2;
    nd_tensor *none = nd_tensor_new(ctx, 1, (int[]){B});
    memset(none->data, 0, none->size * sizeof(nd_real));
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, lstm, x, NULL, h, h, NULL));
    expect_error(ND_ERR_ARG, "nd_rnn_masked_step", "c_out");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, gru, x, NULL, h, h, &c2));
    expect_error(ND_ERR_SHAPE, "nd_rnn_masked_step", "c (3, 5)", "only for an LSTMCell");
    nd_ctx_clear_error(ctx);
    nd_tensor *bad_mask = nd_tensor_new(ctx, 2, (int[]){B, D + 1});
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, gru, x, bad_mask, h, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_masked_step", "mask (3, 5)", "input (3, 4)");
    nd_ctx_clear_error(ctx);
    /* with nothing observed the cell is not run: the state's shape is still checked */
    nd_tensor *bad_h = randn(2, (int[]){B, H + 1}, 72, 1);
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, gru, x, none, bad_h, NULL, NULL));
    expect_error(ND_ERR_SHAPE, "nd_rnn_masked_step", "h (3, 6)");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, gru, h, none, h, NULL, NULL)); /* x (B, H) */
    expect_error(ND_ERR_SHAPE, "nd_rnn_masked_step", "input (3, 5)", "input_size 4");
    nd_ctx_clear_error(ctx);
    nd_rng rng = nd_rng_seed(1);
    nd_module *lin = nd_linear_create(ctx, D, H, true, &rng);
    ck_assert_ptr_null(nd_rnn_masked_step(ctx, lin, x, NULL, h, NULL, NULL));
    expect_error(ND_ERR_ARG, "nd_rnn_masked_step", "a Linear", "not a GRUCell or an LSTMCell");
    nd_module_destroy(lin);
    nd_module_destroy(gru);
    nd_module_destroy(lstm);
}
END_TEST

START_TEST(test_create_rejects_bad_sizes)
{
    nd_rng rng = nd_rng_seed(1);
    ck_assert_ptr_null(nd_gru_cell_create(ctx, 3, 0, true, &rng));
    expect_error(ND_ERR_ARG, "nd_gru_cell_create", "hidden_size 0");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lstm_cell_create(ctx, -1, 2, true, &rng));
    expect_error(ND_ERR_ARG, "nd_lstm_cell_create", "input_size -1");
    nd_ctx_clear_error(ctx);
    ck_assert_ptr_null(nd_lstm_cell_create(ctx, 1, 2, true, NULL));
    expect_error(ND_ERR_ARG, "nd_lstm_cell_create", "rng is NULL");
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 */
static Suite *rnn_suite(void)
{
    Suite *s = suite_create("rnn");
    TCase *fwd = tcase_create("forward"), *mask = tcase_create("mask");
    TCase *bwd = tcase_create("backward"), *err = tcase_create("errors");
    TCase *all[] = {fwd, mask, bwd, err};
    for (int i = 0; i < 4; i++) {
        tcase_add_unchecked_fixture(all[i], ref_load, ref_free);
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        tcase_set_timeout(all[i], 600);
    }
    tcase_add_test(fwd, test_gru_cell_matches_torch);
    tcase_add_test(fwd, test_lstm_cell_matches_torch);
    tcase_add_loop_test(fwd, test_sequence_matches_torch, 0, 2);
    tcase_add_loop_test(fwd, test_masked_sequence_matches_torch, 0, 2);
    tcase_add_test(fwd, test_module_forward_steps_from_zero_state);
    tcase_add_test(fwd, test_cell_names_shapes_and_init);
    tcase_add_test(fwd, test_checkpoint_round_trip);
    tcase_add_loop_test(mask, test_masked_sequence_keeps_unobserved_state, 0, 4);
    tcase_add_test(mask, test_masked_sequence_all_unobserved);
    tcase_add_loop_test(mask, test_masked_step_selects_rows, 0, 4);
    tcase_add_test(bwd, test_cells_gradcheck);
    tcase_add_test(bwd, test_masked_sequence_gradcheck);
    tcase_add_test(err, test_cells_reject_wrong_shapes);
    tcase_add_test(err, test_steps_reject_wrong_module_kind);
    tcase_add_test(err, test_sequence_rejects_wrong_shapes);
    tcase_add_test(err, test_masked_step_rejects_bad_input);
    tcase_add_test(err, test_create_rejects_bad_sizes);
    suite_add_tcase(s, fwd);
    suite_add_tcase(s, mask);
    suite_add_tcase(s, bwd);
    suite_add_tcase(s, err);
    return s;
}

ND_TEST_MAIN(rnn_suite)

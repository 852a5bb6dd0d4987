/* SPDX-License-Identifier: MIT
 * nn/rnn.c: the recurrent cells GRUCell and LSTMCell (PyTorch's equations, initialisation and
 * parameter names), as functions composed from autograd ops (so first- and second-order gradients
 * come for free) and as modules around them; and nd_rnn_sequence, which runs a cell over a
 * (T, B, D) sequence, carrying the state of samples with nothing observed at a step unchanged.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* ND_CHECK1, ND_CHECK2: the NULL-input check */

/* ---------------------------------------------------------------------------------------------
 * Shape checks shared by both cells: x (B, D), h (B, H), w_ih (G*H, D), w_hh (G*H, H),
 * b_ih, b_hh (G*H,) or NULL; c (B, H) for the LSTM.
 */
static bool bias_ok(const nd_tensor *b, int gh)
{
    return !b || (b->ndim == 1 && b->shape[0] == gh);
}

static bool cell_shapes_ok(nd_ctx *ctx, const char *fn, int gates, nd_tensor *x, nd_tensor *h,
                           nd_tensor *c, nd_tensor *w_ih, nd_tensor *w_hh, nd_tensor *b_ih,
                           nd_tensor *b_hh)
{
    int H = h->ndim == 2 ? h->shape[1] : -1, B = x->ndim == 2 ? x->shape[0] : -1;
    bool ok = x->ndim == 2 && h->ndim == 2 && h->shape[0] == B && H > 0;
    ok = ok && w_ih->ndim == 2 && w_ih->shape[0] == gates * H && w_ih->shape[1] == x->shape[1];
    ok = ok && w_hh->ndim == 2 && w_hh->shape[0] == gates * H && w_hh->shape[1] == H;
    ok = ok && bias_ok(b_ih, gates * H) && bias_ok(b_hh, gates * H);
    ok = ok && (!c || (c->ndim == 2 && c->shape[0] == B && c->shape[1] == H));
    if (ok) return true;
    char sx[64], sh[64], sc[64], si[64], sw[64], sbi[64], sbh[64];
    nd_fail(ctx, ND_ERR_SHAPE,
            "%s: x %s, h %s%s%s, weight_ih %s, weight_hh %s, bias_ih %s, bias_hh %s are not "
            "x (B, D), h%s (B, H), weights (%d*H, D) and (%d*H, H), biases (%d*H,)",
            fn, nd_shape_str(x, sx), nd_shape_str(h, sh), c ? ", c " : "",
            c ? nd_shape_str(c, sc) : "", nd_shape_str(w_ih, si), nd_shape_str(w_hh, sw),
            nd_shape_str(b_ih, sbi), nd_shape_str(b_hh, sbh), c ? " and c" : "", gates, gates,
            gates);
    return false;
}

/* The pre-activations x @ w_ih^T + b_ih and h @ w_hh^T + b_hh, each (B, G*H). */
static void gate_inputs(nd_ctx *ctx, nd_tensor *x, nd_tensor *h, nd_tensor *w_ih, nd_tensor *w_hh,
                        nd_tensor *b_ih, nd_tensor *b_hh, nd_tensor **gi, nd_tensor **gh)
{
    *gi = nd_linear(ctx, x, w_ih, b_ih);
    *gh = nd_linear(ctx, h, w_hh, b_hh);
}

/* ---------------------------------------------------------------------------------------------
 * GRU: r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r * gh_n),
 * h' = (1 - z) n + z h = n + z (h - n).
 */
nd_tensor *nd_gru_cell(nd_ctx *ctx, nd_tensor *x, nd_tensor *h, nd_tensor *w_ih, nd_tensor *w_hh,
                       nd_tensor *b_ih, nd_tensor *b_hh)
{
    const nd_tensor *in[] = {x, h, w_ih, w_hh};
    if (!nd_check_inputs(ctx, "nd_gru_cell", 4, in, (const char *[]){"x", "h", "w_ih", "w_hh"}))
        return NULL;
    if (!cell_shapes_ok(ctx, "nd_gru_cell", 3, x, h, NULL, w_ih, w_hh, b_ih, b_hh)) return NULL;
    int H = h->shape[1];
    nd_tensor *gi, *gh;
    gate_inputs(ctx, x, h, w_ih, w_hh, b_ih, b_hh, &gi, &gh); /* (B, 3H) each */
    nd_tensor *rz = nd_sigmoid(ctx, nd_add(ctx, nd_slice(ctx, gi, 1, 0, 2 * H),
                                           nd_slice(ctx, gh, 1, 0, 2 * H))); /* (B, 2H) */
    nd_tensor *r = nd_slice(ctx, rz, 1, 0, H), *z = nd_slice(ctx, rz, 1, H, H);
    nd_tensor *n = nd_tanh(ctx, nd_add(ctx, nd_slice(ctx, gi, 1, 2 * H, H),
                                       nd_mul(ctx, r, nd_slice(ctx, gh, 1, 2 * H, H))));
    return nd_add(ctx, n, nd_mul(ctx, z, nd_sub(ctx, h, n))); /* (B, H) */
}

/* ---------------------------------------------------------------------------------------------
 * LSTM: i, f, o = s(gates), g = tanh(gates) with gates = gi + gh in the order i, f, g, o;
 * c' = f c + i g, h' = o tanh(c').
 */
nd_tensor *nd_lstm_cell(nd_ctx *ctx, nd_tensor *x, nd_tensor *h, nd_tensor *c, nd_tensor *w_ih,
                        nd_tensor *w_hh, nd_tensor *b_ih, nd_tensor *b_hh, nd_tensor **c_out)
{
    if (c_out) *c_out = NULL;
    const nd_tensor *in[] = {x, h, c, w_ih, w_hh};
    if (!nd_check_inputs(ctx, "nd_lstm_cell", 5, in,
                         (const char *[]){"x", "h", "c", "w_ih", "w_hh"}))
        return NULL;
    if (!c_out)
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_lstm_cell: c_out is NULL (the new cell state)");
    if (!cell_shapes_ok(ctx, "nd_lstm_cell", 4, x, h, c, w_ih, w_hh, b_ih, b_hh)) return NULL;
    int H = h->shape[1];
    nd_tensor *gi, *gh;
    gate_inputs(ctx, x, h, w_ih, w_hh, b_ih, b_hh, &gi, &gh);
    nd_tensor *gates = nd_add(ctx, gi, gh);                              /* (B, 4H) */
    nd_tensor *if_ = nd_sigmoid(ctx, nd_slice(ctx, gates, 1, 0, 2 * H)); /* (B, 2H) */
    nd_tensor *i = nd_slice(ctx, if_, 1, 0, H), *f = nd_slice(ctx, if_, 1, H, H);
    nd_tensor *g = nd_tanh(ctx, nd_slice(ctx, gates, 1, 2 * H, H));
    nd_tensor *o = nd_sigmoid(ctx, nd_slice(ctx, gates, 1, 3 * H, H));
    nd_tensor *c2 = nd_add(ctx, nd_mul(ctx, f, c), nd_mul(ctx, i, g)); /* (B, H) */
    nd_tensor *h2 = nd_mul(ctx, o, nd_tanh(ctx, c2));
    if (!h2) return NULL;
    *c_out = c2;
    return h2;
}

/* ---------------------------------------------------------------------------------------------
 * The modules. Both kinds share one struct; the kind is told by the forward function.
 */
typedef struct {
    nd_module base;
    int input_size, hidden_size;
    nd_tensor *weight_ih, *weight_hh; /* (G*H, D), (G*H, H) */
    nd_tensor *bias_ih, *bias_hh;     /* (G*H,) or NULL */
} cell_module;

static nd_tensor *zeros(nd_ctx *ctx, int B, int H)
{
    nd_tensor *t = nd_tensor_new(ctx, 2, (int[]){B, H});
    if (t) memset(t->data, 0, t->size * sizeof *t->data);
    return t;
}

/* forward(x) = the cell from the zero state, as PyTorch's cell(x) with hx omitted */
static nd_tensor *gru_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    cell_module *c = (cell_module *)m;
    nd_tensor *h = zeros(ctx, x->ndim == 2 ? x->shape[0] : 0, c->hidden_size);
    return nd_gru_cell(ctx, x, h, c->weight_ih, c->weight_hh, c->bias_ih, c->bias_hh);
}

static nd_tensor *lstm_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    cell_module *c = (cell_module *)m;
    nd_tensor *h = zeros(ctx, x->ndim == 2 ? x->shape[0] : 0, c->hidden_size), *c2;
    return nd_lstm_cell(ctx, x, h, h, c->weight_ih, c->weight_hh, c->bias_ih, c->bias_hh, &c2);
}

/* PyTorch's RNNCellBase.reset_parameters: every parameter U(-1/sqrt(H), 1/sqrt(H)), in the
 * order weight_ih, weight_hh, bias_ih, bias_hh. */
static nd_module *cell_create(nd_ctx *ctx, const char *fn, const char *kind, nd_forward_fn fwd,
                              int gates, int D, int H, bool bias, nd_rng *rng)
{
    if (D <= 0 || H <= 0 || !rng)
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: input_size %d, hidden_size %d%s", fn, D, H,
                            rng ? "" : ", rng is NULL");
    cell_module *c = (cell_module *)nd_module_create(ctx, kind, fwd, sizeof *c);
    if (!c) return NULL;
    c->input_size = D, c->hidden_size = H;
    int GH = gates * H;
    c->weight_ih = nd_module_new_param(ctx, &c->base, "weight_ih", 2, (int[]){GH, D});
    c->weight_hh = nd_module_new_param(ctx, &c->base, "weight_hh", 2, (int[]){GH, H});
    if (bias && c->weight_hh) c->bias_ih = nd_module_new_param(ctx, &c->base, "bias_ih", 1, &GH);
    if (bias && c->bias_ih) c->bias_hh = nd_module_new_param(ctx, &c->base, "bias_hh", 1, &GH);
    if (!c->weight_ih || !c->weight_hh || (bias && !c->bias_hh)) {
        nd_module_destroy(&c->base);
        return NULL;
    }
    double bound = 1 / sqrt((double)H);
    for (int i = 0; i < c->base.n_params; i++)
        nd_init_uniform(c->base.params[i].tensor, rng, -bound, bound);
    return &c->base;
}

nd_module *nd_gru_cell_create(nd_ctx *ctx, int input_size, int hidden_size, bool bias, nd_rng *rng)
{
    return cell_create(ctx, "nd_gru_cell_create", "GRUCell", gru_forward, 3, input_size,
                       hidden_size, bias, rng);
}

nd_module *nd_lstm_cell_create(nd_ctx *ctx, int input_size, int hidden_size, bool bias, nd_rng *rng)
{
    return cell_create(ctx, "nd_lstm_cell_create", "LSTMCell", lstm_forward, 4, input_size,
                       hidden_size, bias, rng);
}

/* m as a cell of the kind whose forward is fwd, or NULL with ND_ERR_ARG naming fn */
static cell_module *as_cell(nd_ctx *ctx, const char *fn, nd_module *m, nd_forward_fn fwd,
                            const char *kind)
{
    if (m && m->forward == fwd) return (cell_module *)m;
    return nd_fail_null(ctx, ND_ERR_ARG, "%s: module is %s%s, not a %s", fn, m ? "a " : "NULL",
                        m ? m->kind : "", kind);
}

nd_tensor *nd_gru_cell_step(nd_ctx *ctx, nd_module *m, nd_tensor *x, nd_tensor *h)
{
    cell_module *c = as_cell(ctx, "nd_gru_cell_step", m, gru_forward, "GRUCell");
    if (!c) return NULL;
    return nd_gru_cell(ctx, x, h, c->weight_ih, c->weight_hh, c->bias_ih, c->bias_hh);
}

nd_tensor *nd_lstm_cell_step(nd_ctx *ctx, nd_module *m, nd_tensor *x, nd_tensor *h, nd_tensor *cs,
                             nd_tensor **c_out)
{
    if (c_out) *c_out = NULL;
    cell_module *c = as_cell(ctx, "nd_lstm_cell_step", m, lstm_forward, "LSTMCell");
    if (!c) return NULL;
    return nd_lstm_cell(ctx, x, h, cs, c->weight_ih, c->weight_hh, c->bias_ih, c->bias_hh, c_out);
}

int nd_rnn_cell_hidden_size(const nd_module *m)
{
    bool cell = m && (m->forward == gru_forward || m->forward == lstm_forward);
    return cell ? ((const cell_module *)m)->hidden_size : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Row selection: out[b] = keep[b] ? a[b] : b_[b] for a, b_ (B, H), an exact copy (so unobserved
 * rows are bit-identical to the old state). Backward: da = g * m, db = g * (1 - m) with the
 * constant masks m (B, 1), built from differentiable ops so it can be differentiated again.
 */
typedef struct {
    nd_tensor *m, *not_m; /* (B, 1) constants: 1 where a row comes from a, and its complement */
} select_state;

static void select_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    select_state *s = state;
    if (nd_needs_grad(ctx, out->src[0]))
        nd_accumulate_grad(ctx, out->src[0], nd_mul(ctx, out->gnode, s->m));
    if (nd_needs_grad(ctx, out->src[1]))
        nd_accumulate_grad(ctx, out->src[1], nd_mul(ctx, out->gnode, s->not_m));
}

static nd_tensor *select_rows(nd_ctx *ctx, const bool *keep, nd_tensor *a, nd_tensor *b)
{
    if (!a || !b) return NULL;
    int B = a->shape[0], H = a->shape[1];
    nd_tensor *out = nd_tensor_new(ctx, 2, a->shape);
    select_state *s = nd_ctx_alloc(ctx, sizeof *s);
    if (!out || !s || !(s->m = nd_tensor_new(ctx, 2, (int[]){B, 1}))) return NULL;
    if (!(s->not_m = nd_tensor_new(ctx, 2, (int[]){B, 1}))) return NULL;
    for (int i = 0; i < B; i++) {
        const nd_tensor *from = keep[i] ? a : b;
        memcpy(out->data + (size_t)i * H, from->data + (size_t)i * H, (size_t)H * sizeof(nd_real));
        s->m->data[i] = keep[i] ? 1 : 0;
        s->not_m->data[i] = keep[i] ? 0 : 1;
    }
    nd_custom_op op = {"rnn_select_rows", select_backward, s};
    return nd_record_custom(ctx, out, &op, 2, (nd_tensor *[]){a, b});
}

/* ---------------------------------------------------------------------------------------------
 * Masked steps: h' = cell(x, h) for the samples observed, h for the others (c likewise).
 */
typedef struct {
    nd_module *cell;
    bool lstm;
    int B, D, H;
    bool *keep; /* (B,) scratch: which samples are observed at this step */
} step_run;

/* r->cell as a cell taking input x (..., D): sets H, D, lstm; or false with the error naming fn */
static bool run_init(nd_ctx *ctx, const char *fn, step_run *r, const nd_tensor *x)
{
    r->H = nd_rnn_cell_hidden_size(r->cell);
    if (!r->H) {
        nd_fail(ctx, ND_ERR_ARG, "%s: module is %s%s, not a GRUCell or an LSTMCell", fn,
                r->cell ? "a " : "NULL", r->cell ? r->cell->kind : "");
        return false;
    }
    r->lstm = r->cell->forward == lstm_forward;
    r->D = ((const cell_module *)r->cell)->input_size;
    if (x->ndim >= 1 && x->shape[x->ndim - 1] == r->D) return true;
    char sx[64];
    nd_fail(ctx, ND_ERR_SHAPE, "%s: input %s does not match the %s's input_size %d", fn,
            nd_shape_str(x, sx), r->cell->kind, r->D);
    return false;
}

/* h (B, H) and, for an LSTM only, c (B, H); names the state h_name / c_name */
static bool state_ok(nd_ctx *ctx, const char *fn, const step_run *r, const nd_tensor *h,
                     const nd_tensor *c, const char *h_name, const char *c_name)
{
    bool h_ok = !h || (h->ndim == 2 && h->shape[0] == r->B && h->shape[1] == r->H);
    bool c_ok = !c || (r->lstm && c->ndim == 2 && c->shape[0] == r->B && c->shape[1] == r->H);
    if (h_ok && c_ok) return true;
    char sh[64], sc[64];
    nd_fail(ctx, ND_ERR_SHAPE,
            "%s: %s %s, %s %s are not (B, H) = (%d, %d) (%s only for an LSTMCell)", fn, h_name,
            nd_shape_str(h, sh), c_name, nd_shape_str(c, sc), r->B, r->H, c_name);
    return false;
}

/* r->keep[b] = whether sample b has a nonzero entry among its per values at mask (B * per
 * values; NULL: all observed); returns how many are */
static int observed(const step_run *r, const nd_real *mask, int per)
{
    int n = 0;
    for (int b = 0; b < r->B; b++) {
        const nd_real *v = mask ? mask + (size_t)b * per : NULL;
        bool any = !v;
        for (int k = 0; v && k < per && !any; k++) any = v[k] != 0;
        r->keep[b] = any;
        n += any;
    }
    return n;
}

/* One masked step of (h, c) with x (B, D); returns h' and writes c' (LSTM) to *c */
static nd_tensor *masked_step(nd_ctx *ctx, const step_run *r, nd_tensor *x, const nd_real *mask,
                              int per, nd_tensor *h, nd_tensor **c)
{
    int n = observed(r, mask, per);
    if (n == 0) return h; /* nothing observed: the state carries over as it is, at no cost */
    nd_tensor *c2 = NULL;
    nd_tensor *h2 = r->lstm ? nd_lstm_cell_step(ctx, r->cell, x, h, *c, &c2)
                            : nd_gru_cell_step(ctx, r->cell, x, h);
    if (n == r->B) {
        if (r->lstm) *c = c2;
        return h2;
    }
    if (r->lstm) *c = select_rows(ctx, r->keep, c2, *c);
    return select_rows(ctx, r->keep, h2, h);
}

nd_tensor *nd_rnn_masked_step(nd_ctx *ctx, nd_module *cell, nd_tensor *x, nd_tensor *mask,
                              nd_tensor *h, nd_tensor *c, nd_tensor **c_out)
{
    const char *fn = "nd_rnn_masked_step";
    if (c_out) *c_out = NULL;
    if (!ND_CHECK2(ctx, fn, x, h)) return NULL;
    step_run r = {.cell = cell};
    if (!run_init(ctx, fn, &r, x)) return NULL;
    if (r.lstm && !ND_CHECK1(ctx, fn, c)) return NULL;
    if (r.lstm && !c_out) return nd_fail_null(ctx, ND_ERR_ARG, "%s: c_out is NULL", fn);
    char sx[64], sm[64];
    if (x->ndim != 2)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: input %s is not (B, D)", fn,
                            nd_shape_str(x, sx));
    r.B = x->shape[0];
    if (mask &&
        !(mask->shape[0] == r.B && (mask->ndim == 1 || (mask->ndim == 2 && mask->shape[1] == r.D))))
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "%s: mask %s is neither (B,) nor (B, D) for input %s", fn,
                            nd_shape_str(mask, sm), nd_shape_str(x, sx));
    if (!state_ok(ctx, fn, &r, h, c, "h", "c")) return NULL;
    if (!(r.keep = nd_ctx_alloc(ctx, (size_t)r.B * sizeof *r.keep + 1))) return NULL;
    nd_tensor *h2 =
        masked_step(ctx, &r, x, mask ? mask->data : NULL, mask && mask->ndim == 2 ? r.D : 1, h, &c);
    if (h2 && r.lstm) *c_out = c;
    return h2;
}

/* ---------------------------------------------------------------------------------------------
 * The sequence: for t = 0 .. T-1, h_t = the masked step of h_{t-1} with x_t and the mask of t;
 * the outputs stacked to (T, B, H).
 */
static bool seq_check(nd_ctx *ctx, step_run *r, nd_tensor *x, nd_tensor *mask, nd_tensor *h0,
                      nd_tensor *c0)
{
    const char *fn = "nd_rnn_sequence";
    char sx[64], sm[64];
    if (x->ndim != 3 || x->shape[0] < 1) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: input %s is not (T, B, D) with T >= 1", fn,
                nd_shape_str(x, sx));
        return false;
    }
    if (!run_init(ctx, fn, r, x)) return false;
    r->B = x->shape[1];
    const nd_tensor *m = mask;
    if (m && !((m->ndim == 2 || (m->ndim == 3 && m->shape[2] == r->D)) &&
               m->shape[0] == x->shape[0] && m->shape[1] == r->B)) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: mask %s is neither (T, B) nor (T, B, D) for input %s", fn,
                nd_shape_str(m, sm), nd_shape_str(x, sx));
        return false;
    }
    return state_ok(ctx, fn, r, h0, c0, "h0", "c0");
}

nd_tensor *nd_rnn_sequence(nd_ctx *ctx, nd_module *cell, nd_tensor *x, nd_tensor *mask,
                           nd_tensor *h0, nd_tensor *c0)
{
    if (!ND_CHECK1(ctx, "nd_rnn_sequence", x)) return NULL;
    step_run r = {.cell = cell};
    if (!seq_check(ctx, &r, x, mask, h0, c0)) return NULL;
    int T = x->shape[0], per = mask && mask->ndim == 3 ? r.D : 1;
    nd_tensor *h = h0 ? h0 : zeros(ctx, r.B, r.H), *c = NULL;
    if (r.lstm) c = c0 ? c0 : zeros(ctx, r.B, r.H);
    nd_tensor **hs = nd_ctx_alloc(ctx, (size_t)T * sizeof *hs);
    r.keep = nd_ctx_alloc(ctx, (size_t)r.B * sizeof *r.keep + 1);
    if (!hs || !r.keep) return NULL;
    for (int t = 0; t < T && h; t++) {
        nd_tensor *xt = nd_reshape(ctx, nd_slice(ctx, x, 0, t, 1), 2, (int[]){r.B, r.D});
        const nd_real *mt = mask ? mask->data + (size_t)t * r.B * per : NULL;
        h = masked_step(ctx, &r, xt, mt, per, h, &c);
        hs[t] = nd_reshape(ctx, h, 3, (int[]){1, r.B, r.H}); /* (1, B, H) */
        if (!hs[t]) return NULL;
    }
    return nd_concat(ctx, hs, T, 0); /* (T, B, H) */
}

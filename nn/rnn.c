/* SPDX-License-Identifier: MIT
 * nn/rnn.c: the recurrent cells GRUCell and LSTMCell (PyTorch's equations, initialisation and
 * parameter names), as functions composed from autograd ops (so first- and second-order gradients
 * come for free) and as modules around them; and nd_rnn_sequence, which runs a cell over a
 * (T, B, D) sequence, carrying the state of samples with nothing observed at a step unchanged.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

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
    if (!x || !h || !w_ih || !w_hh) return NULL;
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
    if (!x || !h || !c || !w_ih || !w_hh) return NULL;
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
 * The sequence: for t = 0 .. T-1, h_t = cell(x_t, h_{t-1}) for the samples observed at t, h_{t-1}
 * for the others; the outputs stacked to (T, B, H).
 */
typedef struct {
    nd_module *cell;
    bool lstm;
    int T, B, D, H;
    const nd_tensor *mask; /* (T, B) or (T, B, D), or NULL */
} seq_run;

static bool seq_check(nd_ctx *ctx, seq_run *r, nd_tensor *x, nd_tensor *h0, nd_tensor *c0)
{
    const char *fn = "nd_rnn_sequence";
    r->H = nd_rnn_cell_hidden_size(r->cell);
    if (!r->H) {
        nd_fail(ctx, ND_ERR_ARG, "%s: module is %s%s, not a GRUCell or an LSTMCell", fn,
                r->cell ? "a " : "NULL", r->cell ? r->cell->kind : "");
        return false;
    }
    r->lstm = r->cell->forward == lstm_forward;
    char sx[64], sm[64], sh[64], sc[64];
    if (x->ndim != 3 || x->shape[0] < 1)
        return nd_fail(ctx, ND_ERR_SHAPE, "%s: input %s is not (T, B, D) with T >= 1", fn,
                       nd_shape_str(x, sx)) == ND_OK;
    r->T = x->shape[0], r->B = x->shape[1], r->D = x->shape[2];
    const nd_tensor *m = r->mask;
    if (m && !((m->ndim == 2 || (m->ndim == 3 && m->shape[2] == r->D)) && m->shape[0] == r->T &&
               m->shape[1] == r->B))
        return nd_fail(ctx, ND_ERR_SHAPE,
                       "%s: mask %s is neither (T, B) nor (T, B, D) for input %s", fn,
                       nd_shape_str(m, sm), nd_shape_str(x, sx)) == ND_OK;
    bool h_ok = !h0 || (h0->ndim == 2 && h0->shape[0] == r->B && h0->shape[1] == r->H);
    bool c_ok = !c0 || (r->lstm && c0->ndim == 2 && c0->shape[0] == r->B && c0->shape[1] == r->H);
    if (!h_ok || !c_ok)
        return nd_fail(ctx, ND_ERR_SHAPE,
                       "%s: h0 %s, c0 %s are not (B, H) = (%d, %d) (c0 only for an LSTMCell)", fn,
                       nd_shape_str(h0, sh), nd_shape_str(c0, sc), r->B, r->H) == ND_OK;
    return true;
}

/* keep[b] = whether sample b has an observed (nonzero) mask entry at step t; returns how many */
static int observed(const seq_run *r, int t, bool *keep)
{
    int n = 0, per = r->mask && r->mask->ndim == 3 ? r->D : 1;
    for (int b = 0; b < r->B; b++) {
        const nd_real *v = r->mask ? r->mask->data + ((size_t)t * r->B + b) * per : NULL;
        bool any = !v;
        for (int k = 0; v && k < per && !any; k++) any = v[k] != 0;
        keep[b] = any;
        n += any;
    }
    return n;
}

/* One step of the state (h, c) under the mask of step t. */
static void seq_step(nd_ctx *ctx, const seq_run *r, int t, nd_tensor *x, nd_tensor **h,
                     nd_tensor **c, bool *keep)
{
    int n = observed(r, t, keep);
    if (n == 0) return; /* nothing observed: the state carries over as it is */
    nd_tensor *xt = nd_reshape(ctx, nd_slice(ctx, x, 0, t, 1), 2, (int[]){r->B, r->D});
    nd_tensor *c2 = NULL;
    nd_tensor *h2 = r->lstm ? nd_lstm_cell_step(ctx, r->cell, xt, *h, *c, &c2)
                            : nd_gru_cell_step(ctx, r->cell, xt, *h);
    bool all = n == r->B;
    *h = all ? h2 : select_rows(ctx, keep, h2, *h);
    if (r->lstm) *c = all ? c2 : select_rows(ctx, keep, c2, *c);
}

nd_tensor *nd_rnn_sequence(nd_ctx *ctx, nd_module *cell, nd_tensor *x, nd_tensor *mask,
                           nd_tensor *h0, nd_tensor *c0)
{
    if (!x) return NULL;
    seq_run r = {.cell = cell, .mask = mask};
    if (!seq_check(ctx, &r, x, h0, c0)) return NULL;
    nd_tensor *h = h0 ? h0 : zeros(ctx, r.B, r.H), *c = NULL;
    if (r.lstm) c = c0 ? c0 : zeros(ctx, r.B, r.H);
    nd_tensor **hs = nd_ctx_alloc(ctx, (size_t)r.T * sizeof *hs);
    bool *keep = nd_ctx_alloc(ctx, (size_t)r.B * sizeof *keep + 1);
    if (!hs || !keep) return NULL;
    for (int t = 0; t < r.T && h; t++) {
        seq_step(ctx, &r, t, x, &h, &c, keep);
        hs[t] = nd_reshape(ctx, h, 3, (int[]){1, r.B, r.H}); /* (1, B, H) */
        if (!hs[t]) return NULL;
    }
    return h ? nd_concat(ctx, hs, r.T, 0) : NULL; /* (T, B, H) */
}

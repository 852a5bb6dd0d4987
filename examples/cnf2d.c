/* SPDX-License-Identifier: MIT
 * examples/cnf2d.c: a continuous normalising flow (FFJORD, Grathwohl et al. 2019) on 2-D toy
 * densities, trained by maximum likelihood through nodal's adjoint ODE solver.
 *
 * The flow carries a data point x at t = 0 to z(1) under dz/dt = f(z, t), an MLP on [z, t]
 * (3 -> 64 -> 64 -> 2, tanh, PyTorch's default Linear init), while log p changes by
 * d logp/dt = -trace(df/dz), computed exactly with two vector-Jacobian products taken under
 * create_graph, so the adjoint differentiates through them (second order). With logp(0) = 0 and a
 * standard normal base, log p(x) = log N(z(1); 0, I) - logp(1), and the loss is
 *     -mean log p(x) = mean(|z1|^2 / 2 + log 2 pi + logp1)          (WORKLOADS.md, workload B).
 * One solve over t = [0, 1] (dopri5, rtol = atol = 1e-5) on a fresh batch of 512 points each
 * iteration; Adam, lr 1e-3. Data: "8gaussians" (centres 4 (+-1, 0), 4 (0, +-1),
 * 4 (+-1/sqrt2, +-1/sqrt2), std 0.5, all divided by 1.414) or "moons" (sklearn's two moons,
 * noise 0.1, scaled by 2 and shifted by (-1, -0.2) as in FFJORD), drawn with nodal's seeded RNG.
 *
 * Good looks like (8gaussians, seed 1, double): the loss starts at ~6.0 (the identity flow: a
 * standard normal on data of radius 2.83) and its 50-iteration mean falls to ~3.85 by
 * iteration 100, ~3.45 by 200 and ~2.9 by 350; the best possible is the data's entropy,
 * log 8 + log(2 pi e 0.125) = 2.84. The density picture then shows eight separate modes on a
 * ring, samples flowed back from the base land on them, and the density's mass inside the
 * [-4, 4]^2 window (printed) is close to 1, which checks the sign and size of the trace term.
 * Cost grows with training as the flow gets stiffer: NFE-F 20 -> ~70 and NFE-B 20 -> ~40 per
 * iteration over the first 350 iterations at rtol = atol = 1e-5, ~0.23 s per iteration at the
 * start on one idle core (batch 512), so the default 1000 iterations take ~10 minutes. The CI
 * smoke setting `--iters 5 --batch 64` takes a fraction of a second.
 *
 * Run:  ./build/examples/cnf2d [--data 8gaussians|moons] [--iters N] [--batch B] [--rtol R]
 *           [--atol A] [--norm rms|seminorm] [--method dopri5] [--seed S] [--print-every N]
 *           [--json] [--plot PREFIX] [--grid G] [--compare-norms]
 * Progress goes to stderr: iteration, loss, mean loss of the last N, NFE-F and NFE-B of the
 * iteration (nd_ode_stats), ms per iteration. --json prints one summary object on stdout.
 * --plot PREFIX writes PREFIX.png: the data, the learned density exp(log p) on a G x G grid
 * (default 100), samples z ~ N(0, I) flowed from t = 1 back to t = 0, and the loss curve
 * (needs cairo at build time; the program says so otherwise).
 * --compare-norms measures, at iterations 0, 20, ..., 200, 300, 400, ... (WORKLOADS.md B's
 * protocol), the backward NFE of every adjoint norm on the same batch and the same weights
 * (paired): torchdiffeq's default (t's adjoint integrated), default without a_t, torchdiffeq's
 * seminorm, and the paper's seminorm (nodal's ND_NORM_SEMINORM), at the training tolerances and
 * at the paper's (1e-3, 1e-6), (1e-4, 1e-7), (1e-5, 1e-8). bench/ reuses cnf_paired_norms() by
 * compiling this file with -DCNF2D_NO_MAIN.
 * Exit status: 0 when training ran (good or not), 1 on any library error, 2 on bad flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodal.h"

#ifdef CNF2D_HAVE_CAIRO
#include <cairo.h>
#ifdef CNF2D_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#endif
#ifdef CNF2D_NO_MAIN // included by a benchmark for the model and cnf_paired_norms: not all used
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

#define HIDDEN 64
#define LOG_2PI 1.8378770664093453 /* log(2 pi): the 2-D standard normal's -log density at 0 */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Any failing call lands here: print the ctx's first error and stop. */
static int fail(nd_ctx *ctx, const char *where)
{
    fprintf(stderr, "cnf2d: %s: %s (%s)\n", where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

// ------------------------------------------------------------------------------------------------
// data: fresh samples of the toy densities, written into a (B, 2) tensor

typedef enum { DATA_8GAUSSIANS, DATA_MOONS } dataset;

static void sample_data(dataset d, nd_rng *rng, nd_tensor *x /* (B, 2) */)
{
    const double s = 1.0 / sqrt(2.0);
    const double centres[8][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {s, s}, {s, -s}, {-s, s}, {-s, -s}};
    int B = x->shape[0];
    for (int i = 0; i < B; i++) {
        double px, py;
        if (d == DATA_8GAUSSIANS) {
            const double *c = centres[nd_rng_below(rng, 8)];
            px = (4 * c[0] + 0.5 * nd_rng_normal(rng)) / 1.414;
            py = (4 * c[1] + 0.5 * nd_rng_normal(rng)) / 1.414;
        } else { // two moons: upper arc, or lower arc shifted by (1, -0.5), noise 0.1
            double a = M_PI * nd_rng_uniform(rng);
            bool lower = nd_rng_below(rng, 2);
            px = lower ? 1 - cos(a) : cos(a);
            py = lower ? 0.5 - sin(a) : sin(a);
            px = 2 * (px + 0.1 * nd_rng_normal(rng)) - 1;
            py = 2 * (py + 0.1 * nd_rng_normal(rng)) - 0.2;
        }
        x->data[2 * i] = (nd_real)px;
        x->data[2 * i + 1] = (nd_real)py;
    }
}

// ------------------------------------------------------------------------------------------------
// model: f(z, t) = W3 tanh(W2 tanh(W1 [z, t] + b1) + b2) + b3, an nn/ MLP (Sequential of Linear
// and Tanh) whose parameters are listed once for the solver, the optimizer and the plots

typedef struct {
    nd_module *mlp;       // Linear(3, 64), Tanh, Linear(64, 64), Tanh, Linear(64, 2)
    nd_param_list plist;  // "0.weight" (64, 3), "0.bias" (64,), ..., "4.bias" (2,)
    nd_tensor **params;   // (plist.n,) the tensors of plist, for nd_odeint
} cnf_model;

static nd_status model_create(nd_ctx *ctx, cnf_model *m, nd_rng *rng)
{
    *m = (cnf_model){0};
    m->mlp = nd_mlp_create(ctx, 4, (int[]){3, HIDDEN, HIDDEN, 2}, ND_ACT_TANH, rng);
    if (!m->mlp || nd_module_params(ctx, m->mlp, &m->plist) != ND_OK) return nd_ctx_error(ctx);
    m->params = calloc((size_t)m->plist.n, sizeof *m->params);
    if (!m->params) return nd_fail(ctx, ND_ERR_NOMEM, "cnf2d: out of memory");
    for (int i = 0; i < m->plist.n; i++) m->params[i] = m->plist.items[i].tensor;
    return ND_OK;
}

static void model_destroy(cnf_model *m)
{
    free(m->params);
    nd_param_list_destroy(&m->plist);
    nd_module_destroy(m->mlp);
}

/* f(z, t): the MLP on [z, t]; arena-owned (B, 2), NULL on error */
static nd_tensor *velocity(nd_ctx *ctx, const cnf_model *m, nd_tensor *t /* () */,
                           nd_tensor *z /* (B, 2) */)
{
    nd_tensor *tb = nd_expand(ctx, t, 2, (int[]){z->shape[0], 1});   // (B, 1)
    nd_tensor *zt = nd_concat(ctx, (nd_tensor *[]){z, tb}, 2, 1);     // (B, 3)
    return nd_module_forward(ctx, m->mlp, zt);                        // (B, 2)
}

/* The CNF's dynamics on the state (z (B, 2), logp (B, 1)):
 *   dz/dt = f(z, t),   d logp/dt = -trace(df/dz) = -(e0^T J e0 + e1^T J e1)
 * with J (B, 2, 2) the per-row Jacobian: one VJP per column (seed e_i, the same for every row).
 * nd_ode_diff (odeint.h) makes z differentiable in the forward solve too (where f runs with grad
 * mode off) and takes the VJPs with create_graph exactly when the adjoint needs to differentiate
 * the trace again. */
static int cnf_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *const *y, int n, nd_tensor **dy,
                        void *user_data)
{
    (void)n;
    const cnf_model *m = user_data;
    nd_tensor *z = y[0]; // (B, 2)
    nd_ode_diff d;
    if (nd_ode_diff_begin(ctx, &d, &z, 1) != ND_OK) return -1;
    int B = z->shape[0];
    nd_tensor *dz = velocity(ctx, m, t, z); // (B, 2)
    nd_tensor *e0 = nd_zeros(ctx, 2, (int[]){B, 2}), *e1 = nd_zeros(ctx, 2, (int[]){B, 2});
    nd_tensor *g0 = NULL, *g1 = NULL; // (B, 2) each: row b is e_i^T J_b
    nd_status st = dz && e0 && e1 ? ND_OK : nd_ctx_error(ctx);
    if (st == ND_OK) {
        for (int b = 0; b < B; b++) e0->data[2 * b] = 1, e1->data[2 * b + 1] = 1;
        st = nd_ode_vjp(ctx, &d, &dz, &e0, 1, &z, 1, &g0);
        if (st == ND_OK) st = nd_ode_vjp(ctx, &d, &dz, &e1, 1, &z, 1, &g1);
    }
    dy[0] = dz;
    dy[1] = st == ND_OK ? nd_neg(ctx, nd_add(ctx, nd_slice(ctx, g0, 1, 0, 1),
                                             nd_slice(ctx, g1, 1, 1, 1))) // (B, 1)
                        : NULL;
    return nd_ode_diff_end(ctx, &d, dy, 2) == ND_OK && st == ND_OK ? 0 : -1;
}

/* The flow alone, dz/dt = f(z, t): for sampling, z(1) ~ N(0, I) solved back to t = 0. */
static int flow_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *z, nd_tensor **dz, void *user_data)
{
    *dz = velocity(ctx, user_data, t, z);
    return *dz ? 0 : -1;
}

/* Solves (x, 0) from t[0] to t[1] and returns -log p(x) per row (B, 1), differentiable in the
 * parameters when grad mode is on; *loss (a scalar, its mean) when loss is not NULL; *stats the
 * solve's statistics (op-owned: backward after the backward pass, valid until the ctx reset). */
static nd_tensor *neg_log_likelihood(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                                     nd_tensor *t /* (2,) */, const nd_ode_options *o,
                                     const nd_ode_stats **stats, nd_tensor **loss)
{
    int B = x->shape[0];
    nd_tensor *logp0 = nd_zeros(ctx, 2, (int[]){B, 1}); // (B, 1)
    nd_tensor *ys[2] = {NULL, NULL};                     // (2, B, 2) and (2, B, 1)
    if (!logp0 || !nd_odeint_tuple(ctx, cnf_dynamics, (void *)m, (nd_tensor *[]){x, logp0}, 2, t,
                                   m->params, m->plist.n, o, ys))
        return NULL;
    if (stats) *stats = nd_odeint_stats(ys[0]);
    nd_tensor *z1 = nd_reshape(ctx, nd_slice(ctx, ys[0], 0, 1, 1), 2, (int[]){B, 2});    // (B, 2)
    nd_tensor *logp1 = nd_reshape(ctx, nd_slice(ctx, ys[1], 0, 1, 1), 2, (int[]){B, 1}); // (B, 1)
    nd_tensor *sq = nd_sum_axis(ctx, nd_mul(ctx, z1, z1), 1, true);                    // (B, 1)
    nd_tensor *nll = nd_add(ctx, nd_add_scalar(ctx, nd_mul_scalar(ctx, sq, 0.5), LOG_2PI),
                            logp1); // (B, 1)
    if (loss) *loss = nd_mean(ctx, nll);
    return nll;
}

// ------------------------------------------------------------------------------------------------
// the paired norm measurement: the same weights, batch and forward solve under several adjoint
// norms; what bench/ needs for WORKLOADS.md B (compile this file with -DCNF2D_NO_MAIN)

typedef struct {
    const char *name;  // "default", "default_no_t", "seminorm_keep_t", "seminorm"
    nd_norm_kind norm; // the adjoint's norm
    bool t_grad;       // integrate t's adjoint a_t (torchdiffeq always does when f depends on t)
} cnf_norm_case;

static const cnf_norm_case CNF_NORM_CASES[4] = {
    {"default", ND_NORM_RMS, true},                    // torchdiffeq's default
    {"default_no_t", ND_NORM_RMS, false},              // nodal's ND_NORM_RMS as trained
    {"seminorm_keep_t", ND_NORM_SEMINORM_KEEP_T, true}, // torchdiffeq's norm='seminorm'
    {"seminorm", ND_NORM_SEMINORM, false},             // the paper's seminorm
};

typedef struct {
    double loss;              // -mean log p of the batch (the same for every case)
    long nfe_forward, nfe_backward, accepted_backward, rejected_backward;
    double ms_backward;       // wall time of nd_backward alone
    double max_rel_grad_diff; // max_k |g_k - g_ref,k| / max_k |g_ref,k| over all parameters,
                              // against case 0 (0 for case 0 itself)
} cnf_norm_result;

/* For each case: forward solve at opts, loss, backward with that case's norm; results in out,
 * and each case's gradient, flattened in parameter order, in grads (n, numel) when not NULL.
 * Leaves the parameters untouched and their .grad holding the last case's gradient. Uses the
 * ctx's arena from a mark and rewinds it. Returns ND_OK or the error (also in ctx). */
static nd_status cnf_paired_norms(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                                  const nd_ode_options *opts, const cnf_norm_case *cases, int n,
                                  cnf_norm_result *out, double *grads)
{
    size_t n_grad = nd_param_list_numel(&m->plist);
    nd_real *ref = malloc(n_grad * sizeof *ref); // (n_grad,) case 0's gradient, flattened
    if (!ref) return nd_fail(ctx, ND_ERR_NOMEM, "cnf2d: out of memory");
    nd_status st = ND_OK;
    for (int c = 0; c < n && st == ND_OK; c++) {
        nd_mark mark = nd_ctx_mark(ctx);
        nd_ode_options o = *opts;
        o.adjoint.norm = cases[c].norm;
        nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1}); // (2,)
        if (t) t->requires_grad = cases[c].t_grad;
        const nd_ode_stats *stats = NULL;
        nd_tensor *loss = NULL;
        nd_zero_grad(m->params, m->plist.n);
        if (!t || !neg_log_likelihood(ctx, m, x, t, &o, &stats, &loss) || !loss) {
            st = nd_ctx_error(ctx);
            break;
        }
        double t0 = now_ms();
        if ((st = nd_backward(ctx, loss, 0)) != ND_OK) break;
        out[c] = (cnf_norm_result){.loss = nd_item(loss),
                                   .nfe_forward = stats->forward.nfe,
                                   .nfe_backward = stats->backward.nfe,
                                   .accepted_backward = stats->backward.accepted,
                                   .rejected_backward = stats->backward.rejected,
                                   .ms_backward = now_ms() - t0};
        double diff = 0, scale = 0;
        size_t k = 0;
        for (int i = 0; i < m->plist.n; i++) {
            const nd_tensor *p = m->params[i];
            for (size_t j = 0; j < p->size; j++, k++) {
                if (c == 0) ref[k] = p->grad[j];
                if (grads) grads[(size_t)c * n_grad + k] = (double)p->grad[j];
                diff = fmax(diff, fabs((double)p->grad[j] - ref[k]));
                scale = fmax(scale, fabs((double)ref[k]));
            }
        }
        out[c].max_rel_grad_diff = scale > 0 ? diff / scale : diff;
        nd_ctx_rewind(ctx, mark);
    }
    free(ref);
    return st;
}

#ifndef CNF2D_NO_MAIN

// ------------------------------------------------------------------------------------------------
// evaluation for the pictures: log p on a grid, and samples flowed back from the base

/* logp (G*G,) at the centres of a G x G grid over [lo, hi]^2, row 0 at the top (y = hi). */
static nd_status density_grid(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o, int G,
                              double lo, double hi, double *logp)
{
    const int chunk = 2000;
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_status st = ND_OK;
    for (int start = 0; start < G * G && st == ND_OK; start += chunk) {
        nd_mark mark = nd_ctx_mark(ctx);
        int B = G * G - start < chunk ? G * G - start : chunk;
        nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){B, 2});                  // (B, 2)
        nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1}); // (2,)
        if (!x || !t) {
            st = nd_ctx_error(ctx);
            break;
        }
        for (int i = 0; i < B; i++) {
            int r = (start + i) / G, c = (start + i) % G;
            x->data[2 * i] = (nd_real)(lo + (hi - lo) * (c + 0.5) / G);
            x->data[2 * i + 1] = (nd_real)(hi - (hi - lo) * (r + 0.5) / G);
        }
        nd_tensor *nll = neg_log_likelihood(ctx, m, x, t, o, NULL, NULL); // (B, 1)
        if (!nll) {
            st = nd_ctx_error(ctx);
            break;
        }
        for (int i = 0; i < B; i++) logp[start + i] = -(double)nll->data[i];
        nd_ctx_rewind(ctx, mark);
    }
    nd_ctx_set_grad(ctx, prev);
    return st;
}

/* n samples (n, 2) into xy: z ~ N(0, I) at t = 1 solved back to t = 0 under dz/dt = f. */
static nd_status flow_samples(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o,
                              nd_rng *rng, int n, double *xy)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_mark mark = nd_ctx_mark(ctx);
    nd_tensor *z1 = nd_tensor_new(ctx, 2, (int[]){n, 2});                  // (n, 2)
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){1, 0}); // (2,)
    if (z1) nd_fill_normal(z1, rng, 0, 1);
    nd_tensor *zs = nd_odeint(ctx, flow_dynamics, (void *)m, z1, t, NULL, 0, o); // (2, n, 2)
    nd_status st = zs ? ND_OK : nd_ctx_error(ctx);
    if (zs)
        for (int i = 0; i < 2 * n; i++) xy[i] = (double)zs->data[2 * n + i]; // the row at t = 0
    nd_ctx_rewind(ctx, mark);
    nd_ctx_set_grad(ctx, prev);
    return st;
}

// ------------------------------------------------------------------------------------------------
// the figure: four panels (data, density, samples, loss) drawn with cairo

#ifdef CNF2D_HAVE_CAIRO
#define PANEL 340  // plot area side, pixels
#define MARGIN 46  // left / bottom margin for tick labels
#define TOP 40     // title band
#define GAP 64     // between panels (the density's colour bar sits in one)

/* viridis (matplotlib), 11 anchors, linear in between */
static void viridis(double v, double *r, double *g, double *b)
{
    static const unsigned char cm[11][3] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},
                                            {53, 95, 141},  {42, 120, 142}, {33, 145, 140},
                                            {34, 168, 132}, {68, 191, 112}, {122, 209, 81},
                                            {189, 223, 38}, {253, 231, 37}};
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    double p = v * 10;
    int i = p >= 10 ? 9 : (int)p;
    double f = p - i;
    *r = ((1 - f) * cm[i][0] + f * cm[i + 1][0]) / 255;
    *g = ((1 - f) * cm[i][1] + f * cm[i + 1][1]) / 255;
    *b = ((1 - f) * cm[i][2] + f * cm[i + 1][2]) / 255;
}

static void text_at(cairo_t *cr, double x, double y, double size, double align, const char *s)
{
    cairo_text_extents_t e;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - align * e.width - e.x_bearing, y);
    cairo_show_text(cr, s);
}

/* frame, ticks and labels of a panel whose plot area starts at (x0, y0); x and y ranges given */
static void axes(cairo_t *cr, double x0, double y0, const char *title, double xlo, double xhi,
                 double ylo, double yhi, int nxt, int nyt, const char *xfmt, const char *yfmt)
{
    char buf[32];
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, x0 + 0.5, y0 + 0.5, PANEL, PANEL);
    cairo_stroke(cr);
    for (int i = 0; i <= nxt; i++) {
        double v = xlo + (xhi - xlo) * i / nxt, px = x0 + PANEL * (double)i / nxt;
        cairo_move_to(cr, px + 0.5, y0 + PANEL), cairo_line_to(cr, px + 0.5, y0 + PANEL + 5);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, xfmt, v);
        text_at(cr, px, y0 + PANEL + 18, 11, 0.5, buf);
    }
    for (int i = 0; i <= nyt; i++) {
        double v = ylo + (yhi - ylo) * i / nyt, py = y0 + PANEL - PANEL * (double)i / nyt;
        cairo_move_to(cr, x0, py + 0.5), cairo_line_to(cr, x0 - 5, py + 0.5);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, yfmt, v);
        text_at(cr, x0 - 8, py + 4, 11, 1, buf);
    }
    text_at(cr, x0 + PANEL / 2.0, y0 - 12, 14, 0.5, title);
}

/* points (n, 2) as small translucent dots in [lo, hi]^2 */
static void scatter(cairo_t *cr, double x0, double y0, const double *xy, int n, double lo,
                    double hi, double r, double g, double b)
{
    cairo_save(cr);
    cairo_rectangle(cr, x0, y0, PANEL, PANEL);
    cairo_clip(cr);
    cairo_set_source_rgba(cr, r, g, b, 0.35);
    for (int i = 0; i < n; i++) {
        double px = x0 + PANEL * (xy[2 * i] - lo) / (hi - lo);
        double py = y0 + PANEL * (hi - xy[2 * i + 1]) / (hi - lo);
        cairo_arc(cr, px, py, 1.3, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

static int write_figure(const char *path, const char *data_name, const double *data, int n_data,
                        const double *logp, int G, const double *samples, int n_samples,
                        const double *losses, int n_losses, double lo, double hi)
{
    int W = 4 * (MARGIN + PANEL) + 3 * GAP + 20, H = TOP + PANEL + 60;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    char title[96];
    double x0 = MARGIN, y0 = TOP;

    // 1. the data
    snprintf(title, sizeof title, "data: %s (%d samples)", data_name, n_data);
    scatter(cr, x0, y0, data, n_data, lo, hi, 0.12, 0.25, 0.65);
    axes(cr, x0, y0, title, lo, hi, lo, hi, 4, 4, "%g", "%g");

    // 2. the learned density exp(log p), one pixel block per grid cell, colour scaled to its max
    x0 += PANEL + GAP + MARGIN;
    double pmax = 0;
    for (int i = 0; i < G * G; i++) pmax = fmax(pmax, exp(logp[i]));
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, G, G);
    unsigned char *px = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    cairo_surface_flush(img);
    for (int r = 0; r < G; r++)
        for (int c = 0; c < G; c++) {
            double cr_, cg, cb;
            viridis(pmax > 0 ? exp(logp[r * G + c]) / pmax : 0, &cr_, &cg, &cb);
            uint32_t *p = (uint32_t *)(px + r * stride) + c;
            *p = (uint32_t)(cr_ * 255) << 16 | (uint32_t)(cg * 255) << 8 | (uint32_t)(cb * 255);
        }
    cairo_surface_mark_dirty(img);
    cairo_save(cr);
    cairo_translate(cr, x0, y0);
    cairo_scale(cr, (double)PANEL / G, (double)PANEL / G);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_BILINEAR);
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_rectangle(cr, 0, 0, G, G);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(img);
    for (int i = 0; i < PANEL; i++) { // colour bar, 0 at the bottom, pmax at the top
        double cr_, cg, cb;
        viridis((double)i / (PANEL - 1), &cr_, &cg, &cb);
        cairo_set_source_rgb(cr, cr_, cg, cb);
        cairo_rectangle(cr, x0 + PANEL + 8, y0 + PANEL - i - 1, 10, 1);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    char lab[32];
    snprintf(lab, sizeof lab, "%.2g", pmax);
    text_at(cr, x0 + PANEL + 21, y0 + 9, 10, 0, lab);
    text_at(cr, x0 + PANEL + 21, y0 + PANEL, 10, 0, "0");
    snprintf(title, sizeof title, "learned density p(x)");
    axes(cr, x0, y0, title, lo, hi, lo, hi, 4, 4, "%g", "%g");

    // 3. samples: z ~ N(0, I) flowed from t = 1 back to t = 0
    x0 += PANEL + GAP + MARGIN;
    snprintf(title, sizeof title, "samples: N(0, I) flowed t = 1 -> 0");
    scatter(cr, x0, y0, samples, n_samples, lo, hi, 0.80, 0.25, 0.10);
    axes(cr, x0, y0, title, lo, hi, lo, hi, 4, 4, "%g", "%g");

    // 4. the loss curve (per iteration, and its 50-iteration running mean)
    x0 += PANEL + GAP + MARGIN;
    double lmin = INFINITY, lmax = -INFINITY;
    for (int i = 0; i < n_losses; i++) lmin = fmin(lmin, losses[i]), lmax = fmax(lmax, losses[i]);
    if (n_losses > 0) {
        lmin = floor(lmin * 4) / 4, lmax = ceil(lmax * 4) / 4;
        if (lmax - lmin < 0.5) lmax = lmin + 0.5;
        cairo_save(cr);
        cairo_rectangle(cr, x0, y0, PANEL, PANEL);
        cairo_clip(cr);
        for (int pass = 0; pass < 2; pass++) {
            double run = 0;
            if (pass == 0) cairo_set_source_rgba(cr, 0.6, 0.6, 0.6, 0.8);
            else cairo_set_source_rgb(cr, 0.12, 0.25, 0.65);
            cairo_set_line_width(cr, pass ? 2 : 1);
            for (int i = 0; i < n_losses; i++) {
                run += losses[i] - (i >= 50 ? losses[i - 50] : 0);
                double v = pass ? run / (i < 50 ? i + 1 : 50) : losses[i];
                double qx = x0 + PANEL * (i + 1.0) / n_losses;
                double qy = y0 + PANEL * (lmax - v) / (lmax - lmin);
                if (i == 0) cairo_move_to(cr, qx, qy);
                else cairo_line_to(cr, qx, qy);
            }
            cairo_stroke(cr);
        }
        cairo_restore(cr);
    }
    text_at(cr, x0 + PANEL - 8, y0 + 18, 11, 1, "grey: each batch, blue: mean of 50");
    axes(cr, x0, y0, "training loss: -mean log p(x)", 0, n_losses, lmin, lmax, 4, 4, "%.0f",
         "%.2f");
    text_at(cr, x0 + PANEL / 2.0, y0 + PANEL + 36, 12, 0.5, "iteration");

    cairo_destroy(cr);
    cairo_status_t cst = cairo_surface_write_to_png(s, path);
    cairo_surface_destroy(s);
    // cairo's and fontconfig's font caches, so that a leak checker sees everything freed
    cairo_debug_reset_static_data();
#ifdef CNF2D_HAVE_FONTCONFIG
    FcFini();
#endif
    if (cst != CAIRO_STATUS_SUCCESS) {
        fprintf(stderr, "cnf2d: writing %s: %s\n", path, cairo_status_to_string(cst));
        return 1;
    }
    return 0;
}
#endif

// ------------------------------------------------------------------------------------------------

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--data 8gaussians|moons] [--iters N] [--batch B] [--rtol R] [--atol A]\n"
            "          [--norm rms|seminorm] [--method NAME] [--seed S] [--print-every N]\n"
            "          [--json] [--plot PREFIX] [--grid G] [--compare-norms]\n",
            argv0);
}

/* WORKLOADS.md B's checkpoints: every 20 iterations up to 200, then every 100 */
static bool is_checkpoint(int it)
{
    return it <= 200 ? it % 20 == 0 : it % 100 == 0;
}

int main(int argc, char **argv)
{
    dataset data = DATA_8GAUSSIANS;
    int iters = 1000, batch = 512, print_every = 50, grid = 100, json = 0, compare = 0;
    double rtol = 1e-5, atol = 1e-5;
    nd_norm_kind norm = ND_NORM_RMS;
    nd_ode_method method = ND_DOPRI5;
    unsigned long long seed = 1;
    const char *plot = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--compare-norms")) {
            compare = 1;
        } else if (!v) {
            usage(argv[0]);
            return 2;
        } else if (i++, !strcmp(a, "--data")) {
            if (!strcmp(v, "8gaussians")) data = DATA_8GAUSSIANS;
            else if (!strcmp(v, "moons")) data = DATA_MOONS;
            else return fprintf(stderr, "cnf2d: unknown --data %s\n", v), 2;
        } else if (!strcmp(a, "--iters")) {
            iters = atoi(v);
        } else if (!strcmp(a, "--batch")) {
            batch = atoi(v);
        } else if (!strcmp(a, "--rtol")) {
            rtol = atof(v);
        } else if (!strcmp(a, "--atol")) {
            atol = atof(v);
        } else if (!strcmp(a, "--norm")) {
            if (!nd_ode_norm_from_name(v, &norm))
                return fprintf(stderr, "cnf2d: unknown --norm %s (rms or seminorm)\n", v), 2;
        } else if (!strcmp(a, "--method")) {
            if (!nd_ode_method_from_name(v, &method))
                return fprintf(stderr, "cnf2d: unknown --method %s\n", v), 2;
        } else if (!strcmp(a, "--seed")) {
            seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--print-every")) {
            print_every = atoi(v);
        } else if (!strcmp(a, "--plot")) {
            plot = v;
        } else if (!strcmp(a, "--grid")) {
            grid = atoi(v);
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (iters < 0 || batch < 1 || print_every < 1 || grid < 2 || grid > 1000 || !(rtol > 0) ||
        !(atol > 0)) {
        fprintf(stderr, "cnf2d: need --iters >= 0, --batch >= 1, --print-every >= 1, "
                        "2 <= --grid <= 1000, --rtol > 0, --atol > 0\n");
        return 2;
    }
#ifndef CNF2D_HAVE_CAIRO
    if (plot) {
        fprintf(stderr, "cnf2d: --plot needs cairo, and this build has none (install "
                        "libcairo2-dev and reconfigure meson)\n");
        return 2;
    }
#endif
    const char *data_name = data == DATA_8GAUSSIANS ? "8gaussians" : "moons";
    const char *norm_name = nd_ode_norm_name(norm);

    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) {
        fprintf(stderr, "cnf2d: out of memory\n");
        return 1;
    }
    nd_rng rng = nd_rng_seed(seed);
    nd_rng data_rng = nd_rng_seed(seed ^ 0x9e3779b97f4a7c15ULL); // batches, apart from the init
    int status = 0;
    cnf_model model = {0};
    nd_optimizer *opt = NULL;
    nd_tensor *x = NULL;       // (batch, 2) this iteration's data, persistent
    double *losses = NULL;     // (iters,) loss of every iteration
    double *logp = NULL, *pts = NULL, *samples = NULL;

    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = o.adjoint.method = (nd_ode_method)method;
    o.solver.rtol = o.adjoint.rtol = rtol;
    o.solver.atol = o.adjoint.atol = atol;
    o.adjoint.norm = norm;

    // --- model, optimizer, data buffer
    if (model_create(ctx, &model, &rng) != ND_OK) {
        status = fail(ctx, "model");
        goto cleanup;
    }
    opt = nd_adam_create(ctx, model.plist.items, model.plist.n, NULL); // lr 1e-3
    x = nd_tensor_create(ctx, 2, (int[]){batch, 2}, false);
    losses = malloc(((size_t)iters + 1) * sizeof *losses);
    if (!opt || !x || !losses) {
        status = nd_ctx_error(ctx) ? fail(ctx, "setup") : (fprintf(stderr, "cnf2d: no memory\n"), 1);
        goto cleanup;
    }
    fprintf(stderr, "cnf2d: %s, batch %d, %s rtol %g atol %g, adjoint norm %s, %s, %zu parameters\n",
            data_name, batch, nd_ode_method_name(o.solver.method), rtol, atol, norm_name,
            ND_REAL_NAME, nd_param_list_numel(&model.plist));

    // --- training: fresh batch, solve, loss, adjoint backward, Adam step, reset the arena
    long nfe_f_total = 0, nfe_b_total = 0;
    double ms_total = 0, recent = 0;
    // paired comparison totals: per tolerance and case, summed over checkpoints
    enum { N_TOL = 4, N_CASES = 4 };
    double tols[N_TOL][2] = {{rtol, atol}, {1e-3, 1e-6}, {1e-4, 1e-7}, {1e-5, 1e-8}};
    long cmp_nfe_b[N_TOL][N_CASES] = {{0}}, cmp_nfe_f[N_TOL] = {0};
    double cmp_ms_b[N_TOL][N_CASES] = {{0}}, cmp_diff[N_TOL][N_CASES] = {{0}};
    int n_checkpoints = 0;
    for (int it = 0; it <= iters; it++) {
        sample_data(data, &data_rng, x);
        if (compare && is_checkpoint(it)) {
            // before this iteration's update, on its batch: every norm, every tolerance
            n_checkpoints++;
            for (int k = 0; k < N_TOL; k++) {
                nd_ode_options oc = o;
                oc.solver.rtol = oc.adjoint.rtol = tols[k][0];
                oc.solver.atol = oc.adjoint.atol = tols[k][1];
                cnf_norm_result r[N_CASES];
                if (cnf_paired_norms(ctx, &model, x, &oc, CNF_NORM_CASES, N_CASES, r, NULL) != ND_OK) {
                    status = fail(ctx, "compare norms");
                    goto cleanup;
                }
                cmp_nfe_f[k] += r[0].nfe_forward;
                for (int c = 0; c < N_CASES; c++) {
                    cmp_nfe_b[k][c] += r[c].nfe_backward;
                    cmp_ms_b[k][c] += r[c].ms_backward;
                    cmp_diff[k][c] = fmax(cmp_diff[k][c], r[c].max_rel_grad_diff);
                }
                fprintf(stderr,
                        "  checkpoint %4d (%g, %g): NFE-F %ld, NFE-B default %ld, default_no_t "
                        "%ld, seminorm_keep_t %ld, seminorm %ld\n",
                        it, tols[k][0], tols[k][1], r[0].nfe_forward, r[0].nfe_backward,
                        r[1].nfe_backward, r[2].nfe_backward, r[3].nfe_backward);
            }
            nd_ctx_reset(ctx);
        }
        if (it == iters) break; // the last checkpoint comes after the last update

        double t0 = now_ms();
        nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1}); // (2,)
        const nd_ode_stats *stats = NULL; // the op's: forward now, backward after the backward
        nd_tensor *loss = NULL;
        if (!t || !neg_log_likelihood(ctx, &model, x, t, &o, &stats, &loss) || !loss) {
            status = fail(ctx, "forward");
            goto cleanup;
        }
        nd_optimizer_zero_grad(opt);
        if (nd_backward(ctx, loss, 0) != ND_OK || nd_optimizer_step(ctx, opt) != ND_OK) {
            status = fail(ctx, "backward");
            goto cleanup;
        }
        double ms = now_ms() - t0;
        losses[it] = nd_item(loss);
        long nfe_f = stats->forward.nfe, nfe_b = stats->backward.nfe; // before the reset frees them
        nfe_f_total += nfe_f, nfe_b_total += nfe_b, ms_total += ms;
        recent += losses[it] - (it >= print_every ? losses[it - print_every] : 0);
        nd_ctx_reset(ctx); // frees this step's graph, keeps the memory
        if ((it + 1) % print_every == 0 || it == 0 || it + 1 == iters) {
            int n_recent = it + 1 < print_every ? it + 1 : print_every;
            fprintf(stderr,
                    "iter %5d  loss %.4f  mean of last %d %.4f  NFE-F %3ld  NFE-B %3ld  "
                    "%.1f ms/iter\n",
                    it + 1, losses[it], n_recent, recent / n_recent, nfe_f,
                    nfe_b, ms);
        }
    }
    int n_tail = iters < 50 ? iters : 50;
    double first = iters > 0 ? losses[0] : NAN, final = 0;
    for (int i = iters - n_tail; i < iters; i++) final += losses[i] / n_tail;
    if (n_tail == 0) final = NAN;
    double per = iters > 0 ? 1.0 / iters : NAN;
    fprintf(stderr,
            "done: loss %.4f at iteration 1 -> %.4f (mean of the last %d); NFE-F %.1f, NFE-B %.1f "
            "per iteration; %.1f ms/iter\n",
            first, final, n_tail, nfe_f_total * per, nfe_b_total * per, ms_total * per);
    if (compare) {
        fprintf(stderr, "paired backward NFE over %d checkpoints (0-%d), same batch and weights:\n",
                n_checkpoints, iters);
        for (int k = 0; k < N_TOL; k++)
            fprintf(stderr,
                    "  (%g, %g): NFE-F %ld; NFE-B default %ld, default_no_t %ld, "
                    "seminorm_keep_t %ld, seminorm %ld: %.0f%% fewer than default, %.0f%% fewer "
                    "than default_no_t; max rel grad diff %.1e\n",
                    tols[k][0], tols[k][1], cmp_nfe_f[k], cmp_nfe_b[k][0], cmp_nfe_b[k][1],
                    cmp_nfe_b[k][2], cmp_nfe_b[k][3],
                    100.0 * (1 - (double)cmp_nfe_b[k][3] / cmp_nfe_b[k][0]),
                    100.0 * (1 - (double)cmp_nfe_b[k][3] / cmp_nfe_b[k][1]), cmp_diff[k][3]);
    }

    // --- pictures
    if (plot) {
#ifdef CNF2D_HAVE_CAIRO
        const double lo = -4, hi = 4;
        const int n_pts = 4000;
        logp = malloc((size_t)grid * grid * sizeof *logp);
        pts = malloc(2 * (size_t)n_pts * sizeof *pts);
        samples = malloc(2 * (size_t)n_pts * sizeof *samples);
        nd_tensor *xd = nd_tensor_new(ctx, 2, (int[]){n_pts, 2}); // (n_pts, 2)
        if (!logp || !pts || !samples || !xd) {
            status = nd_ctx_error(ctx) ? fail(ctx, "plot") : (fprintf(stderr, "cnf2d: no memory\n"), 1);
            goto cleanup;
        }
        sample_data(data, &data_rng, xd);
        for (int i = 0; i < 2 * n_pts; i++) pts[i] = (double)xd->data[i];
        double t0 = now_ms();
        if (density_grid(ctx, &model, &o, grid, lo, hi, logp) != ND_OK ||
            flow_samples(ctx, &model, &o, &data_rng, n_pts, samples) != ND_OK) {
            status = fail(ctx, "plot");
            goto cleanup;
        }
        double mass = 0; // the density should integrate to ~1 over the window
        for (int i = 0; i < grid * grid; i++) mass += exp(logp[i]) * (hi - lo) * (hi - lo) / grid / grid;
        char path[4096];
        snprintf(path, sizeof path, "%s.png", plot);
        if (write_figure(path, data_name, pts, n_pts, logp, grid, samples, n_pts, losses, iters, lo,
                         hi)) {
            status = 1;
            goto cleanup;
        }
        fprintf(stderr, "wrote %s (density on %dx%d grid, mass in the window %.3f; %.1f s)\n",
                path, grid, grid, mass, (now_ms() - t0) / 1e3);
#endif
    }

    if (json) {
        printf("{\"example\":\"cnf2d\",\"real\":\"%s\",\"data\":\"%s\",\"iters\":%d,\"batch\":%d,"
               "\"seed\":%llu,\"method\":\"%s\",\"norm\":\"%s\",\"rtol\":%g,\"atol\":%g,"
               "\"first_loss\":%.6f,\"final_loss\":%.6f,\"nfe_forward_per_iter\":%.2f,"
               "\"nfe_backward_per_iter\":%.2f,\"ms_per_iter\":%.2f",
               ND_REAL_NAME, data_name, iters, batch, seed, nd_ode_method_name(o.solver.method),
               norm_name, rtol, atol, first, final, nfe_f_total * per, nfe_b_total * per,
               ms_total * per);
        if (compare) {
            printf(",\"checkpoints\":%d,\"compare\":[", n_checkpoints);
            for (int k = 0; k < N_TOL; k++)
                for (int c = 0; c < N_CASES; c++)
                    printf("%s{\"norm\":\"%s\",\"rtol\":%g,\"atol\":%g,\"nfe_forward\":%ld,"
                           "\"nfe_backward\":%ld,\"ms_backward\":%.2f,\"max_rel_grad_diff\":%.3e}",
                           k + c ? "," : "", CNF_NORM_CASES[c].name, tols[k][0], tols[k][1],
                           cmp_nfe_f[k], cmp_nfe_b[k][c], cmp_ms_b[k][c], cmp_diff[k][c]);
            printf("]");
        }
        printf(",\"loss_curve\":[");
        for (int i = 0; i < iters; i += iters > 20 ? iters / 20 : 1)
            printf("%s[%d,%.4f]", i ? "," : "", i + 1, losses[i]);
        printf("]}\n");
    }

cleanup:
    free(logp), free(pts), free(samples), free(losses);
    nd_tensor_destroy(x);
    nd_optimizer_destroy(opt);
    model_destroy(&model);
    nd_ctx_destroy(ctx);
    return status;
}

#endif /* CNF2D_NO_MAIN */

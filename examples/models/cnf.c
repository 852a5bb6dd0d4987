/* SPDX-License-Identifier: MIT
 * examples/models/cnf.c: the continuous normalising flow (FFJORD, Grathwohl et al. 2019) that
 * examples/cnf2d.c trains and bench/seminorm measures (see cnf.h). The log-density changes by
 * d logp/dt = -trace(df/dz), computed exactly with two vector-Jacobian products taken under
 * create_graph, so the adjoint differentiates through them (second order).
 */
#include "cnf.h"

#include <math.h>
#include <stdlib.h>

#include "clock.h"

#define HIDDEN CNF_HIDDEN
#define LOG_2PI 1.8378770664093453 /* log(2 pi): the 2-D standard normal's -log density at 0 */

const char *const cnf_data_names[] = {"8gaussians", "moons", NULL};

// ------------------------------------------------------------------------------------------------
// data: fresh samples of the toy densities, written into a (B, 2) tensor

void cnf_sample(cnf_data d, nd_rng *rng, nd_tensor *x /* (B, 2) */)
{
    const double s = 1.0 / sqrt(2.0);
    const double centres[8][2] = {{1, 0}, {-1, 0}, {0, 1},  {0, -1},
                                  {s, s}, {s, -s}, {-s, s}, {-s, -s}};
    int B = x->shape[0];
    for (int i = 0; i < B; i++) {
        double px, py;
        if (d == CNF_8GAUSSIANS) {
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

nd_status cnf_model_create(nd_ctx *ctx, cnf_model *m, nd_rng *rng)
{
    *m = (cnf_model){0};
    m->mlp = nd_mlp_create(ctx, 4, (int[]){3, HIDDEN, HIDDEN, 2}, ND_ACT_TANH, rng);
    if (!m->mlp || nd_module_params(ctx, m->mlp, &m->plist) != ND_OK) return nd_ctx_error(ctx);
    m->params = calloc((size_t)m->plist.n, sizeof *m->params);
    if (!m->params) return nd_fail(ctx, ND_ERR_NOMEM, "cnf: out of memory");
    for (int i = 0; i < m->plist.n; i++) m->params[i] = m->plist.items[i].tensor;
    return ND_OK;
}

void cnf_model_destroy(cnf_model *m)
{
    free(m->params);
    nd_param_list_destroy(&m->plist);
    nd_module_destroy(m->mlp);
}

/* f(z, t): the MLP on [z, t]; arena-owned (B, 2), NULL on error */
static nd_tensor *velocity(nd_ctx *ctx, const cnf_model *m, nd_tensor *t /* () */,
                           nd_tensor *z /* (B, 2) */)
{
    nd_tensor *tb = nd_expand(ctx, t, 2, (int[]){z->shape[0], 1}); // (B, 1)
    nd_tensor *zt = nd_concat(ctx, (nd_tensor *[]){z, tb}, 2, 1);  // (B, 3)
    return nd_module_forward(ctx, m->mlp, zt);                     // (B, 2)
}

/* The CNF's dynamics on the state (z (B, 2), logp (B, 1)):
 *   dz/dt = f(z, t),   d logp/dt = -trace(df/dz) = -(e0^T J e0 + e1^T J e1)
 * with J (B, 2, 2) the per-row Jacobian: one VJP per column (seed e_i, the same for every row),
 * through nd_ode_diff (odeint.h): z is differentiable in the forward solve too (where f runs with
 * grad mode off), and the VJPs are taken with create_graph exactly when the adjoint needs to
 * differentiate the trace again. */
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
 * solve's statistics when stats is not NULL (op-owned: backward after the backward pass, valid
 * until the ctx reset). */
nd_tensor *cnf_neg_log_likelihood(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                                  nd_tensor *t /* (2,) */, const nd_ode_options *o,
                                  const nd_ode_stats **stats, nd_tensor **loss)
{
    int B = x->shape[0];
    nd_tensor *logp0 = nd_zeros(ctx, 2, (int[]){B, 1}); // (B, 1)
    nd_tensor *ys[2] = {NULL, NULL};                    // (2, B, 2) and (2, B, 1)
    if (!logp0 || !nd_odeint_tuple(ctx, cnf_dynamics, (void *)m, (nd_tensor *[]){x, logp0}, 2, t,
                                   m->params, m->plist.n, o, ys))
        return NULL;
    if (stats) *stats = nd_odeint_stats(ys[0]);
    nd_tensor *z1 = nd_reshape(ctx, nd_slice(ctx, ys[0], 0, 1, 1), 2, (int[]){B, 2});    // (B, 2)
    nd_tensor *logp1 = nd_reshape(ctx, nd_slice(ctx, ys[1], 0, 1, 1), 2, (int[]){B, 1}); // (B, 1)
    nd_tensor *sq = nd_sum_axis(ctx, nd_mul(ctx, z1, z1), 1, true);                      // (B, 1)
    nd_tensor *nll = nd_add(ctx, nd_add_scalar(ctx, nd_mul_scalar(ctx, sq, 0.5), LOG_2PI),
                            logp1); // (B, 1)
    if (loss) *loss = nd_mean(ctx, nll);
    return nll;
}

// ------------------------------------------------------------------------------------------------
// the paired norm measurement: the same weights, batch and forward solve under several adjoint
// norms (docs/WORKLOADS.md, B)

const cnf_norm_case CNF_NORM_CASES[CNF_N_NORM_CASES] = {
    {"default", ND_NORM_RMS, true},                     // torchdiffeq's default
    {"default_no_t", ND_NORM_RMS, false},               // nodal's ND_NORM_RMS as trained
    {"seminorm_keep_t", ND_NORM_SEMINORM_KEEP_T, true}, // torchdiffeq's norm='seminorm'
    {"seminorm", ND_NORM_SEMINORM, false},              // the paper's seminorm
};

/* For each case: forward solve at opts, loss, backward with that case's norm; results in out,
 * and each case's gradient, flattened in parameter order, in grads (n, numel) when not NULL.
 * Leaves the parameters untouched and their .grad holding the last case's gradient. Uses the
 * ctx's arena from a mark and rewinds it. Returns ND_OK or the error (also in ctx). */
nd_status cnf_paired_norms(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                           const nd_ode_options *opts, const cnf_norm_case *cases, int n,
                           cnf_norm_result *out, double *grads)
{
    size_t n_grad = nd_param_list_numel(&m->plist);
    nd_real *ref = malloc(n_grad * sizeof *ref); // (n_grad,) case 0's gradient, flattened
    if (!ref) return nd_fail(ctx, ND_ERR_NOMEM, "cnf: out of memory");
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
        if (!t || !cnf_neg_log_likelihood(ctx, m, x, t, &o, &stats, &loss) || !loss) {
            st = nd_ctx_error(ctx);
            break;
        }
        double t0 = clock_wall_ms();
        if ((st = nd_backward(ctx, loss, 0)) != ND_OK) break;
        out[c] = (cnf_norm_result){.loss = nd_item(loss),
                                   .nfe_forward = stats->forward.nfe,
                                   .nfe_backward = stats->backward.nfe,
                                   .accepted_backward = stats->backward.accepted,
                                   .rejected_backward = stats->backward.rejected,
                                   .limit_backward = stats->backward.limit,
                                   .ms_backward = clock_wall_ms() - t0};
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

// ------------------------------------------------------------------------------------------------
// evaluation for the pictures: log p on a grid, and samples flowed back from the base

/* logp (G*G,) at the centres of a G x G grid over [lo, hi]^2, row 0 at the top (y = hi). */
nd_status cnf_density_grid(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o, int G,
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
        nd_tensor *nll = cnf_neg_log_likelihood(ctx, m, x, t, o, NULL, NULL); // (B, 1)
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
nd_status cnf_flow_samples(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o, nd_rng *rng,
                           int n, double *xy)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_mark mark = nd_ctx_mark(ctx);
    nd_tensor *z1 = nd_tensor_new(ctx, 2, (int[]){n, 2});                 // (n, 2)
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

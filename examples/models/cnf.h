/* SPDX-License-Identifier: MIT
 * examples/models/cnf.h: the continuous normalising flow of examples/cnf2d.c and bench/seminorm's
 * workload B (docs/WORKLOADS.md, B): the 2-D toy densities, the FFJORD model with its exact trace,
 * the negative log-likelihood through nodal's adjoint, the paired measurement of the adjoint's
 * norms, and the evaluations the pictures need. Not part of the library.
 */
#ifndef EXAMPLES_MODELS_CNF_H
#define EXAMPLES_MODELS_CNF_H

#include "nodal.h"

/* ---- data ---------------------------------------------------------------------------------- */

typedef enum { CNF_8GAUSSIANS, CNF_MOONS } cnf_data;
extern const char *const cnf_data_names[]; /* "8gaussians", "moons", NULL (by cnf_data) */

/* Fresh samples of the density d into the rows of x (B, 2). "8gaussians": centres 4 (+-1, 0),
 * 4 (0, +-1), 4 (+-1/sqrt2, +-1/sqrt2), std 0.5, all divided by 1.414; "moons": sklearn's two
 * moons, noise 0.1, scaled by 2 and shifted by (-1, -0.2) as in FFJORD. */
void cnf_sample(cnf_data d, nd_rng *rng, nd_tensor *x /* (B, 2) */);

/* ---- the model ------------------------------------------------------------------------------ */

#define CNF_HIDDEN 64

/* f(z, t) = W3 tanh(W2 tanh(W1 [z, t] + b1) + b2) + b3, PyTorch's default Linear init */
typedef struct {
    nd_module *mlp;      // Linear(3, 64), Tanh, Linear(64, 64), Tanh, Linear(64, 2)
    nd_param_list plist; // "0.weight" (64, 3), "0.bias" (64,), ..., "4.bias" (2,)
    nd_tensor **params;  // (plist.n,) the tensors of plist, for nd_odeint
} cnf_model;

nd_status cnf_model_create(nd_ctx *ctx, cnf_model *m, nd_rng *rng);
void cnf_model_destroy(cnf_model *m);

/* Solves (x, logp = 0) under dz/dt = f, d logp/dt = -trace(df/dz) from t[0] to t[1] and returns
 * -log p(x) per row (B, 1) under a standard normal base, differentiable in the parameters when
 * grad mode is on; *loss (its mean, a scalar) when loss is not NULL; *stats the solve's counts
 * when stats is not NULL (op-owned: backward after the backward pass, valid until the ctx reset).
 * NULL on error (in ctx). */
nd_tensor *cnf_neg_log_likelihood(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                                  nd_tensor *t /* (2,) */, const nd_ode_options *o,
                                  const nd_ode_stats **stats, nd_tensor **loss);

/* ---- the paired norm measurement (docs/WORKLOADS.md, B) -------------------------------------- */

typedef struct {
    const char *name;  // "default", "default_no_t", "seminorm_keep_t", "seminorm"
    nd_norm_kind norm; // the adjoint's norm
    bool t_grad;       // integrate t's adjoint a_t (torchdiffeq always does when f depends on t)
} cnf_norm_case;

#define CNF_N_NORM_CASES 4
/* torchdiffeq's default; nodal's ND_NORM_RMS as trained (no a_t); torchdiffeq's
 * norm='seminorm'; the paper's seminorm (ND_NORM_SEMINORM) */
extern const cnf_norm_case CNF_NORM_CASES[CNF_N_NORM_CASES];

typedef struct {
    double loss; // -mean log p of the batch (the same for every case)
    long nfe_forward, nfe_backward, accepted_backward, rejected_backward;
    nd_limit_stats limit_backward; // which block bound the backward steps
    double ms_backward;            // wall time of nd_backward alone
    double max_rel_grad_diff;      // max_k |g_k - g_ref,k| / max_k |g_ref,k| over all parameters,
                                   // against case 0 (0 for case 0 itself)
} cnf_norm_result;

/* For each case: forward solve at opts, loss, backward with that case's norm; results in out,
 * and each case's gradient, flattened in parameter order, in grads (n, numel) when not NULL.
 * Leaves the parameters untouched and their .grad holding the last case's gradient; the arena
 * as it was. ND_OK or the error (also in ctx). */
nd_status cnf_paired_norms(nd_ctx *ctx, const cnf_model *m, nd_tensor *x /* (B, 2) */,
                           const nd_ode_options *opts, const cnf_norm_case *cases, int n,
                           cnf_norm_result *out, double *grads);

/* ---- evaluation for pictures ---------------------------------------------------------------- */

/* log p (G*G,) at the centres of a G x G grid over [lo, hi]^2, row 0 at the top (y = hi). */
nd_status cnf_density_grid(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o, int G,
                           double lo, double hi, double *logp);
/* n samples (n, 2) into xy: z ~ N(0, I) at t = 1 solved back to t = 0 under dz/dt = f. */
nd_status cnf_flow_samples(nd_ctx *ctx, const cnf_model *m, const nd_ode_options *o, nd_rng *rng,
                           int n, double *xy);

#endif

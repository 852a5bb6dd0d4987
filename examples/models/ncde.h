/* SPDX-License-Identifier: MIT
 * examples/models/ncde.h: the neural controlled differential equation (Kidger et al. 2020) on
 * torchcde's spirals task that examples/ncde.c trains and bench/seminorm measures
 * (docs/WORKLOADS.md, C): the seeded data, the path (examples/models/spline.h), the model, the
 * logits through nodal's adjoint, one training step, and the paired measurement of the adjoint's
 * norms. Not part of the library.
 *
 *   X      a natural cubic spline through each series' points (or the piecewise-linear path)
 *   z0     = Linear(3, 16)(X(0))                                                    (B, 16)
 *   dz/dt  = g(z) dX/dt(t),  g = tanh(Linear(64, 48)(tanh(Linear(64, 64)(tanh(Linear(16,
 * 64)(z)))))) reshaped (B, 16, 3), times dX/dt (B, 3, 1)                              (B, 16)
 *   logits = Linear(16, 2)(z(4 pi)), cross-entropy, full batch, Adam lr 1e-3
 */
#ifndef EXAMPLES_MODELS_NCDE_H
#define EXAMPLES_MODELS_NCDE_H

#include "nodal.h"
#include "spline.h"

#define NCDE_SERIES 128 /* per set: train and test */
#define NCDE_POINTS 100
#define NCDE_CH 3 /* channels (t, x, y) */

/* ---- data: the spirals, torchcde's get_data -------------------------------------------------- */

typedef struct {
    int n; // series
    double t[NCDE_POINTS];
    double *obs; // (n, NCDE_POINTS, NCDE_CH) observations
    int *labels; // (n,) 1: x negated
} ncde_data;

/* ---- the model: one container module so that parameters have names and one destroy frees them */

typedef struct {
    nd_module base;         // "NeuralCDE": children initial, func, readout
    nd_module *initial;     // Linear(3, 16)
    nd_module *func;        // Linear(16, 64), Tanh, Linear(64, 64), Tanh, Linear(64, 48), Tanh
    nd_module *readout;     // Linear(16, 2)
    nd_param_list all;      // every parameter, for Adam (dotted names: "func.0.weight")
    nd_param_list fparams;  // func's six, handed to the solve
    nd_tensor *ftensors[6]; // the same as tensors
} ncde_model;

/* How a solve is run: the method and tolerances of both solves, the adjoint's norm, whether t
 * requires grad (then the adjoint integrates a_t); a linear path's knots go in as jump_t. */
typedef struct {
    nd_ode_method method;
    double rtol, atol;
    nd_norm_kind norm;
    bool t_grad;
} ncde_solve_cfg;

/* logits (B, 2) of the series of X, or NULL with the error in ctx; *stats: the solve's
 * statistics (op-owned: backward after the backward pass, valid until the ctx reset). */
nd_tensor *ncde_logits(nd_ctx *ctx, ncde_model *m, const spline_path *X, const ncde_solve_cfg *cfg,
                       const nd_ode_stats **stats);

/* ---- the whole problem, seeded: data, paths, model, optimizer; and one training step -------- */

typedef struct {
    ncde_data train, test;
    spline_path Xtr, Xte; // (NCDE_SERIES series each)
    ncde_model *m;
    nd_optimizer *opt; // Adam, lr 1e-3
} ncde_problem;

/* The train set, then the test set, from one generator seeded with seed; the weights from another.
 * 0, or -1 with a message on stderr (P is then freed). */
int ncde_problem_init(nd_ctx *ctx, ncde_problem *P, spline_kind kind, uint64_t seed);
void ncde_problem_free(ncde_problem *P);

/* One full-batch Adam step on the train set under cfg; the loss and accuracy before the update
 * and the solve's counts come back. Resets the arena. ND_OK or the error (also in ctx). */
nd_status ncde_train_step(nd_ctx *ctx, ncde_problem *P, const ncde_solve_cfg *cfg, double *loss,
                          double *acc, nd_ode_stats *stats);

/* ---- the paired measurement: every adjoint norm on the same weights and batch --------------- */

typedef enum {
    NCDE_DEFAULT,         // RMS, t requires grad: a_t integrated and in the norm (torchdiffeq)
    NCDE_SEMINORM,        // ND_NORM_SEMINORM: z, a_z only (the paper's)
    NCDE_DEFAULT_NO_T,    // RMS, t does not require grad: no a_t
    NCDE_SEMINORM_KEEP_T, // ND_NORM_SEMINORM_KEEP_T, t requires grad (torchdiffeq's 'seminorm')
    NCDE_N_NORMS
} ncde_norm;

extern const char *const ncde_norm_names[NCDE_N_NORMS]; /* "default", "seminorm", ... */
ncde_solve_cfg ncde_norm_cfg(ncde_norm k, nd_ode_method method, double rtol, double atol);

typedef struct {
    double loss;
    long nfe_forward, nfe_backward; // backward: adjoint evaluations (f + VJP each)
    long accepted_backward, rejected_backward;
    nd_limit_stats limit_backward; // which block bound the backward steps
    double ms_forward, ms_backward;
    double max_rel_grad_diff; // max_i |g_i - ref_i| / max(|ref_i|, 1e-3 max_j |ref_j|), ref:
                              // the default norm's gradient (bench/seminorm's definition)
} ncde_measure;

/* One forward and one backward pass of the loss per norm, on m's weights and X's series, at
 * (rtol, atol) for both solves. Fills out[NCDE_N_NORMS]; the parameters' .grad are left zero and
 * the arena as it was. ND_OK or the error (also in ctx). */
nd_status ncde_measure_norms(nd_ctx *ctx, ncde_model *m, const spline_path *X, const int *labels,
                             nd_ode_method method, double rtol, double atol,
                             ncde_measure out[NCDE_N_NORMS]);

#endif

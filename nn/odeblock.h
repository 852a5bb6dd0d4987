/* SPDX-License-Identifier: MIT
 * nn/odeblock.h: the ODE block, a module that wraps nd_odeint around a dynamics module.
 *
 *   nd_module *f = nd_mlp_create(ctx, 3, (int[]){3, 64, 2}, ND_ACT_TANH, &rng);  // [x, t] -> dx
 *   nd_module *block = nd_odeblock_create(ctx, f, ND_TIME_CONCAT, 0.0, 1.0, &opts);
 *   nd_sequential_append(ctx, model, block);     // x -> x(1), composes with any layer
 *   ...
 *   const nd_ode_stats *st = nd_odeblock_stats(ctx, block); // NFE-F after forward, NFE-B after
 * backward
 *
 * The block owns the dynamics module (its parameters are listed as "func.*", so they reach the
 * optimizer and checkpoints like any other) and solves dx/dt = func(x) (or func([x, t])) from t0
 * to t1 with the block's solver options, gradient mode and norms.
 *
 * The ODE-RNN (nodal/nn/odernn.c) is declared here too: like the block it is a module around
 * nd_odeint and needs odeint.h's option types, which nn/nn.h does not include.
 */
#ifndef ND_NN_ODEBLOCK_H
#define ND_NN_ODEBLOCK_H

#include "nn/nn.h"
#include "odeint/odeint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ND_TIME_NONE,  /* autonomous: dx/dt = func(x) */
    ND_TIME_CONCAT /* dx/dt = func([x, t]): t joins x as one more feature or channel (axis 1) */
} nd_time_input;

/* Takes ownership of func (also on failure). opts may be NULL (ND_ODE_DEFAULT). t1 != t0. */
ND_API nd_module *nd_odeblock_create(nd_ctx *ctx, nd_module *func, nd_time_input time, double t0,
                                     double t1, const nd_ode_options *opts);

/* The solution at every time of t (n_t,) from x: (n_t, *x.shape); the block's forward is the
 * last of these for t = [t0, t1]. */
ND_API nd_tensor *nd_odeblock_trajectory(nd_ctx *ctx, nd_module *block, nd_tensor *x, nd_tensor *t);

/* The block's options (change them between steps, e.g. the adjoint's norm) and the statistics
 * of its last solve (nd_odeint_stats of its trajectory): forward after each forward, backward
 * after the backward pass; zeros before the first solve or after a failed one. The statistics
 * live in the ctx's arena like the trajectory: read them before nd_ctx_reset. Both return NULL
 * with an error in ctx (which may be NULL) when block is not an ODE block. */
ND_API nd_ode_options *nd_odeblock_options(nd_ctx *ctx, nd_module *block);
ND_API const nd_ode_stats *nd_odeblock_stats(nd_ctx *ctx, const nd_module *block);

/* ---------------------------------------------------------------------------------------------
 * The ODE-RNN (Rubanova, Chen and Duvenaud, NeurIPS 2019): an RNN whose hidden state follows a
 * neural ODE between observations and jumps through a GRU update at each one.
 *
 *   h <- solve dh/dt = func(h) from the previous time to t_i     (none before the first time)
 *   h <- cell((x_i * m_i, m_i), h) for the samples observed at t_i, h for the others (exactly)
 *
 * Irregular times per sample: a batch is given on the union of its samples' observation times,
 * t (T,), with a mask saying who observed what when. All samples are solved together, one solve
 * per interval of the union (the state is (B, H): one batched evaluation of func per stage), and a
 * sample not observed at t_i carries its state through the jump unchanged (its mask is 0: the
 * cell is not even evaluated when nobody is observed). The cost: T - 1 solves where a single
 * sample would need (its observations - 1), so up to B times as many intervals for sparse,
 * disjoint times, each with a floor of evaluations (an adaptive method takes >= 1 step of s
 * stages per interval); in exchange every evaluation is one matmul over the batch instead of B
 * matrix-vector products, and no sample's work is padded away. On Rubanova's toy data (a 50%
 * subset of a common 100-point grid per sample) the union of a batch is the whole grid: 2x the
 * intervals of one sample, measured by examples/latent_ode (NFE in its JSON).
 *
 * reverse runs from t[T-1] down to t[0] (the latent ODE's encoder, which ends at the first time).
 * The dynamics are autonomous; the solves use opts.ode (gradients by the adjoint by default).
 */
typedef struct {
    nd_ode_options ode; /* the solves between observation times */
    bool reverse;       /* process t from the last time to the first */
} nd_odernn_options;
#define ND_ODERNN_DEFAULT ((nd_odernn_options){.ode = ND_ODE_DEFAULT, .reverse = false})

/* func: h (B, H) -> dh/dt (B, H); cell: a GRUCell with input_size 2 D and hidden_size H (it sees
 * the values and the mask of D channels). Takes ownership of both (also on failure): children
 * "func" and "cell". Kind "ODERNN"; nd_module_forward on it is an error (it needs times and a
 * mask: use nd_odernn_run). */
ND_API nd_module *nd_odernn_create(nd_ctx *ctx, nd_module *func, nd_module *cell,
                                   const nd_odernn_options *opts);

/* x (T, B, D) values; mask (T, B, D) or (T, B), constant, nonzero where observed (NULL: all
 * observed; values where the mask is 0 are ignored); t (T,) strictly increasing; h0 (B, H) the
 * state at the first time processed (t[0], or t[T-1] with reverse), NULL for zeros. Returns the
 * states (T, B, H), row i being the state just after the jump at t[i]; the run ends at row T - 1
 * (row 0 with reverse). */
ND_API nd_tensor *nd_odernn_run(nd_ctx *ctx, nd_module *odernn, nd_tensor *x, nd_tensor *mask,
                                nd_tensor *t, nd_tensor *h0);

/* The ODE-RNN's options (change them between runs) and the statistics of its last run, summed
 * over its solves: forward after the run, backward after the backward pass (valid until the ctx
 * reset, like the run's tensors); *n_solves (may be NULL) gets the number of solves. Errors
 * (ND_ERR_ARG) when the module is not an ODE-RNN. */
ND_API nd_odernn_options *nd_odernn_options_of(nd_ctx *ctx, nd_module *odernn);
ND_API nd_status nd_odernn_stats(nd_ctx *ctx, const nd_module *odernn, nd_ode_stats *out,
                                 int *n_solves);

#ifdef __cplusplus
}
#endif

#endif

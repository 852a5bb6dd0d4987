/* SPDX-License-Identifier: MIT
 * nn/odeblock.h: the ODE block, a module that wraps nd_odeint around a dynamics module.
 *
 *   nd_module *f = nd_mlp_create(ctx, 3, (int[]){3, 64, 2}, ND_ACT_TANH, &rng);  // [x, t] -> dx
 *   nd_module *block = nd_odeblock_create(ctx, f, ND_TIME_CONCAT, 0.0, 1.0, &opts);
 *   nd_sequential_append(ctx, model, block);     // x -> x(1), composes with any layer
 *   ...
 *   const nd_ode_stats *st = nd_odeblock_stats(ctx, block); // NFE-F after forward, NFE-B after backward
 *
 * The block owns the dynamics module (its parameters are listed as "func.*", so they reach the
 * optimizer and checkpoints like any other) and solves dx/dt = func(x) (or func([x, t])) from t0
 * to t1 with the block's solver options, gradient mode and norms.
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
nd_module *nd_odeblock_create(nd_ctx *ctx, nd_module *func, nd_time_input time, double t0,
                              double t1, const nd_ode_options *opts);

/* The solution at every time of t (n_t,) from x: (n_t, *x.shape); the block's forward is the
 * last of these for t = [t0, t1]. */
nd_tensor *nd_odeblock_trajectory(nd_ctx *ctx, nd_module *block, nd_tensor *x, nd_tensor *t);

/* The block's options (change them between steps, e.g. the adjoint's norm) and the statistics
 * of its last solve (nd_odeint_stats of its trajectory): forward after each forward, backward
 * after the backward pass; zeros before the first solve or after a failed one. The statistics
 * live in the ctx's arena like the trajectory: read them before nd_ctx_reset. Both return NULL
 * with an error in ctx (which may be NULL) when block is not an ODE block. */
nd_ode_options *nd_odeblock_options(nd_ctx *ctx, nd_module *block);
const nd_ode_stats *nd_odeblock_stats(nd_ctx *ctx, const nd_module *block);

#ifdef __cplusplus
}
#endif

#endif

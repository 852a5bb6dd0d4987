/* SPDX-License-Identifier: MIT
 * nodal.h: the one header a user includes. nodal is reverse-mode autodiff on tensors (tensor/,
 * autograd/), layers and optimizers (nn/), ODE solvers as differentiable ops (odeint/), and
 * checkpoints and datasets (io/).
 *
 * Fit y = a x^2 + b with a small MLP (the README has the full program):
 *
 *   nd_ctx *ctx = nd_ctx_create(0);
 *   nd_tensor *w1 = nd_tensor_create(ctx, 2, (int[]){1, 16}, true);   // parameters: persistent
 *   ...
 *   for (int step = 0; step < 2000; step++) {
 *       nd_tensor *h = nd_tanh(ctx, nd_add(ctx, nd_matmul(ctx, x, w1), b1));  // arena-owned
 *       nd_tensor *loss = nd_mean(ctx, nd_pow_scalar(ctx, nd_sub(ctx, pred, y), 2));
 *       if (!loss) { fprintf(stderr, "%s\n", nd_ctx_errmsg(ctx)); break; }  // one check
 *       nd_zero_grad(params, n_params);
 *       nd_backward(ctx, loss, 0);
 *       ... update params from ->grad ...
 *       nd_ctx_reset(ctx);   // frees the step's graph, keeps the memory
 *   }
 */
#ifndef NODAL_H
#define NODAL_H

#include "tensor/tensor.h"
#include "autograd/autograd.h"
#include "odeint/odeint.h"
#include "io/io.h"
#include "nn/nn.h"
#include "nn/odeblock.h"

#endif

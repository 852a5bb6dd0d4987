/* SPDX-License-Identifier: MIT
 * tests/gradcheck.h: gradients checked against central differences, first and second order.
 *
 * The function under test maps input tensors to one output. It is reduced to a scalar
 * L = sum(w * f(x)) with fixed random weights w, so every output element is checked. First
 * order compares nd_grad's dL/dx with (L(x + e) - L(x - e)) / 2e for every element of every
 * input. Second order takes h(x) = sum(v * dL/dx) with the gradient built under create_graph,
 * and compares nd_grad's dh/dx with central differences of h: a gradient of a VJP.
 */
#ifndef ND_GRADCHECK_H
#define ND_GRADCHECK_H

#include "nodal.h"

typedef nd_tensor *(*gc_fn)(nd_ctx *ctx, nd_tensor **inputs, void *user);

typedef struct {
    double eps, atol, rtol;
} gc_tol;

/* Tolerances for the build's precision. */
gc_tol gc_default_tol(void);

/* inputs: arena or persistent tensors with requires_grad set; they are perturbed in place and
 * restored. On failure returns false and writes the worst element into report (256 bytes). */
bool gradcheck(nd_ctx *ctx, gc_fn f, nd_tensor **inputs, int n_inputs, void *user, gc_tol tol,
               char *report);
bool gradgradcheck(nd_ctx *ctx, gc_fn f, nd_tensor **inputs, int n_inputs, void *user, gc_tol tol,
                   char *report);

#endif

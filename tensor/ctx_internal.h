/* SPDX-License-Identifier: MIT
 * tensor/ctx_internal.h: library-private parts of the ctx. The autograd engine keeps its
 * traversal stacks here, growable and kept across resets, so a steady-state backward does no
 * malloc; nested backward passes (a VJP inside an op's backward) push above the outer pass and
 * address entries by index, since a push may move the buffer.
 */
#ifndef ND_CTX_INTERNAL_H
#define ND_CTX_INTERNAL_H

#include "tensor/tensor.h"

typedef struct {
    void **items;
    size_t len, cap;
} nd_ptr_stack;

enum { ND_STACK_TOPO, ND_STACK_DFS, ND_STACK_SAVED, ND_STACK_COUNT };

/* false (and ND_ERR_NOMEM in ctx) when the stack cannot grow */
bool nd_ptr_stack_push(nd_ctx *ctx, nd_ptr_stack *s, void *p);
nd_ptr_stack *nd_ctx_stack(nd_ctx *ctx, int which);
/* A fresh traversal mark for the autograd engine. */
uint64_t nd_ctx_next_visit(nd_ctx *ctx);
/* The mark of the sweep running now (0: none); the engine sets and restores it. */
uint64_t nd_ctx_sweep(const nd_ctx *ctx);
void nd_ctx_set_sweep(nd_ctx *ctx, uint64_t mark);
/* Whether the running sweep adds parameters' gradients straight into their .grad (nd_backward
 * without create_graph); set and restored by the engine. */
bool nd_ctx_direct_grads(const nd_ctx *ctx);
void nd_ctx_set_direct_grads(nd_ctx *ctx, bool on);

/* Allocation of an arena tensor header and its data for shape (no checks on user input beyond
 * overflow); used by every op. */
nd_tensor *nd_tensor_alloc(nd_ctx *ctx, int ndim, const int *shape);

#endif

/* SPDX-License-Identifier: MIT
 * autograd/engine.h: the autograd engine's per-ctx sweep state (library-private). It hangs off the
 * ctx through the ctx's one extension slot, made on the first sweep and freed with the ctx, so
 * tensor/ knows nothing about sweeps. The traversal stacks are growable and kept across resets,
 * so a steady-state backward does no malloc; nested sweeps (a VJP inside an op's backward) push
 * above the outer sweep's entries and address them by index, since a push may move a buffer.
 */
#ifndef ND_ENGINE_H
#define ND_ENGINE_H

#include "tensor/ctx_internal.h"

typedef struct {
    void **items;
    size_t len, cap;
} nd_ptr_stack;

typedef struct {
    nd_ptr_stack topo;  /* tensors in topological order, sources first */
    nd_ptr_stack dfs;   /* the depth-first search's (node, next child) pairs */
    nd_ptr_stack saved; /* an enclosing sweep's (gnode, needed) pairs of the tensors visited */
    nd_ptr_stack fresh; /* leaves whose .grad nd_backward made, taken back if it fails */
    uint64_t visit;     /* the last traversal mark handed out */
    uint64_t sweep;     /* the mark of the sweep running now (0: none) */
    bool direct_grads;  /* the running rule may add parameters' gradients straight into .grad */
} nd_engine;

/* The ctx's engine, made on first use; NULL (with ND_ERR_NOMEM, or ND_ERR_ARG for a NULL ctx)
 * when it cannot be. */
nd_engine *nd_engine_get(nd_ctx *ctx);
/* The engine if there is one, else NULL; never allocates. */
static inline const nd_engine *nd_engine_peek(const nd_ctx *ctx)
{
    return nd_ctx_ext(ctx);
}
/* nd_ptr_stack_push when the stack is full: grows it, then pushes */
bool nd_ptr_stack_grow_push(nd_ctx *ctx, nd_ptr_stack *s, void *p);
/* false (and ND_ERR_NOMEM in ctx) when the stack cannot grow; inline, as a sweep pushes several
 * times per node */
static inline bool nd_ptr_stack_push(nd_ctx *ctx, nd_ptr_stack *s, void *p)
{
    if (s->len == s->cap) return nd_ptr_stack_grow_push(ctx, s, p);
    s->items[s->len++] = p;
    return true;
}

#endif

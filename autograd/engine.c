/* SPDX-License-Identifier: MIT
 * autograd/engine.c: the engine's per-ctx sweep state: made on the first sweep, hung off the ctx,
 * freed with it. */
#include <stdlib.h>

#include "autograd/engine.h"
#include "tensor/ctx_internal.h"

static void engine_destroy(void *state)
{
    nd_engine *e = state;
    if (!e) return;
    free(e->topo.items);
    free(e->dfs.items);
    free(e->saved.items);
    free(e->fresh.items);
    free(e);
}

nd_engine *nd_engine_get(nd_ctx *ctx)
{
    if (!ctx) return NULL;
    nd_engine *e = nd_ctx_ext(ctx);
    if (e) return e;
    e = calloc(1, sizeof *e);
    if (!e) return nd_fail_null(ctx, ND_ERR_NOMEM, "autograd: cannot allocate the engine state");
    nd_ctx_set_ext(ctx, e, engine_destroy);
    return e;
}

bool nd_ptr_stack_grow_push(nd_ctx *ctx, nd_ptr_stack *s, void *p)
{
    size_t cap = s->cap ? 2 * s->cap : 256;
    void **items = realloc(s->items, cap * sizeof *items);
    if (!items) {
        nd_fail(ctx, ND_ERR_NOMEM, "autograd: cannot grow the traversal stack to %zu", cap);
        return false;
    }
    s->items = items;
    s->cap = cap;
    s->items[s->len++] = p;
    return true;
}

/* SPDX-License-Identifier: MIT
 * tensor/ctx_internal.h: library-private parts of the ctx. One slot where a higher layer hangs
 * its own per-ctx state (the autograd engine keeps its sweep state there; tensor/ never looks
 * inside, it only frees it with the ctx), and the allocation every op uses.
 */
#ifndef ND_CTX_INTERNAL_H
#define ND_CTX_INTERNAL_H

#include "tensor/tensor.h"

/* The state a higher layer keeps in ctx (NULL until set, and for a NULL ctx). nd_ctx_destroy
 * calls destroy(state). Inline, as every backward rule asks for it: the state's pointer is the
 * ctx's first member (tensor/ctx.c), and a pointer to a struct points to its first member. */
static inline void *nd_ctx_ext(const nd_ctx *ctx)
{
    return ctx ? *(void *const *)(const void *)ctx : NULL;
}
void nd_ctx_set_ext(nd_ctx *ctx, void *state, void (*destroy)(void *state));
/* Pins: an object that keeps arena memory past a call (a differentiable dense solution's graph)
 * pins the arena's current position and later asks whether everything below it is still what it
 * left there. nd_ctx_pin returns a token (0 with ND_ERR_NOMEM in ctx); nd_ctx_pinned is true until
 * nd_ctx_reset or a rewind to a mark below the pinned position, however far the arena has grown
 * again since. A rewind to a mark at or above it keeps it. A pin costs 16 bytes of heap until the
 * next reset or a rewind below it. */
uint64_t nd_ctx_pin(nd_ctx *ctx);
bool nd_ctx_pinned(const nd_ctx *ctx, uint64_t token);

/* The check every op starts with: true when ctx and each of the n inputs are non-NULL. A NULL
 * input records "<fn>: input <names[i]> is NULL" unless an earlier error is recorded (which then
 * explains it: ops return NULL on failure, so a NULL input is usually an earlier op's failure).
 * names may be NULL for a list xs ("input xs[3] is NULL"). Use the macros below, which name the
 * inputs after the arguments. */
bool nd_check_inputs(nd_ctx *ctx, const char *fn, int n, const nd_tensor *const *xs,
                     const char *const *names);
#define ND_CHECK1(ctx, fn, x)                                                                      \
    nd_check_inputs(ctx, fn, 1, (const nd_tensor *[]){x}, (const char *[]){#x})
#define ND_CHECK2(ctx, fn, a, b)                                                                   \
    nd_check_inputs(ctx, fn, 2, (const nd_tensor *[]){a, b}, (const char *[]){#a, #b})

/* The alignment of nd_ctx_alloc's blocks (bytes). */
#define ND_ARENA_ALIGN 64

/* Allocation of an arena tensor header and its data for shape (no checks on user input beyond
 * overflow); used by every op. NULL when ctx is NULL. */
nd_tensor *nd_tensor_alloc(nd_ctx *ctx, int ndim, const int *shape);

/* A persistent tensor header over base's elements [offset, offset + size of shape) and the same
 * slice of base's grad (NULL when base has none): t->base = base, so nd_tensor_destroy(t) frees
 * the header only. The caller checks that the slice fits; NULL with ND_ERR_NOMEM in ctx. */
nd_tensor *nd_tensor_persistent_view(nd_ctx *ctx, nd_tensor *base, size_t offset, int ndim,
                                     const int *shape);

/* The calling worker's index in one of nodal's parallel regions (tensor/threads.c), 0 outside
 * one and in builds without OpenMP: kernels index their per-worker scratch with it. */
int nd_worker_id(void);
/* fn(arg, lo, hi) over the items [0, n), split into at most nd_threads() contiguous ranges of at
 * least min_items each, run in parallel (OpenMP builds); a single range is a plain call on this
 * thread (no parallel region: OpenMP's runtime allocates when it enters one). For kernels whose
 * items are independent (elementwise ops, whole images): the results do not depend on the split. */
void nd_parallel_for(size_t n, size_t min_items, void (*fn)(void *arg, size_t lo, size_t hi),
                     void *arg);

#endif

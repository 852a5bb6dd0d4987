/* SPDX-License-Identifier: MIT
 * tensor/ctx.c: the ctx. A chunked bump arena that grows on demand and is reused after a reset
 * (chunks are kept in order, so a training step that allocates the same sequence each time
 * finds every chunk already there), the grad-mode switch, and the sticky first error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ctx_internal.h"

#define ND_ALIGN ND_ARENA_ALIGN
#define ND_DEFAULT_CHUNK ((size_t)1 << 20)

typedef struct {
    char *mem;
    size_t cap;
} chunk;

/* a position in the arena that something keeps memory below (nd_ctx_pin) */
typedef struct {
    nd_mark at;
    uint64_t token;
} pin;

struct nd_ctx {
    void *ext;     /* a higher layer's state (the autograd engine's); first, so that the inline
                      nd_ctx_ext (ctx_internal.h) reads it through a pointer to the ctx */
    chunk *chunks; /* (n_chunks,) */
    size_t n_chunks, chunks_cap;
    size_t cur;         /* chunk in use */
    size_t offset;      /* bytes used in chunks[cur] */
    size_t chunk_bytes; /* minimum size of a new chunk */
    bool grad_enabled;
    nd_status status;
    char msg[512];
    /* the live pins, in the order they were made: their positions never decrease (a rewind
     * removes every pin above where it goes, and the arena only grows from there) */
    pin *pins;
    size_t n_pins, pins_cap;
    uint64_t last_token;
    void (*ext_destroy)(void *);
};

/* what the ctx functions answer for a NULL ctx */
static const char null_ctx_msg[] = "ctx is NULL";

nd_ctx *nd_ctx_create(size_t chunk_bytes)
{
    nd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->chunk_bytes = chunk_bytes ? chunk_bytes : ND_DEFAULT_CHUNK;
    ctx->grad_enabled = true;
    return ctx;
}

void nd_ctx_destroy(nd_ctx *ctx)
{
    if (!ctx) return;
    for (size_t i = 0; i < ctx->n_chunks; i++) free(ctx->chunks[i].mem);
    free(ctx->chunks);
    free(ctx->pins);
    if (ctx->ext_destroy) ctx->ext_destroy(ctx->ext);
    free(ctx);
}

void nd_ctx_reset(nd_ctx *ctx)
{
    if (!ctx) return;
    ctx->cur = 0;
    ctx->offset = 0;
    ctx->status = ND_OK;
    ctx->msg[0] = '\0';
    ctx->n_pins = 0;
}

nd_mark nd_ctx_mark(const nd_ctx *ctx)
{
    return ctx ? (nd_mark){ctx->cur, ctx->offset} : (nd_mark){0, 0};
}

static bool mark_below(nd_mark a, nd_mark b)
{
    return a.chunk < b.chunk || (a.chunk == b.chunk && a.offset < b.offset);
}

void nd_ctx_rewind(nd_ctx *ctx, nd_mark m)
{
    if (!ctx) return;
    ctx->cur = m.chunk;
    ctx->offset = m.offset;
    while (ctx->n_pins > 0 && mark_below(m, ctx->pins[ctx->n_pins - 1].at)) ctx->n_pins--;
}

uint64_t nd_ctx_pin(nd_ctx *ctx)
{
    if (!ctx) return 0;
    if (ctx->n_pins == ctx->pins_cap) {
        size_t cap = ctx->pins_cap ? 2 * ctx->pins_cap : 8;
        pin *p = realloc(ctx->pins, cap * sizeof *p);
        if (!p) {
            nd_fail(ctx, ND_ERR_NOMEM, "nd_ctx_pin: out of memory (%zu pins)", ctx->n_pins);
            return 0;
        }
        ctx->pins = p;
        ctx->pins_cap = cap;
    }
    uint64_t token = ++ctx->last_token;
    ctx->pins[ctx->n_pins++] = (pin){nd_ctx_mark(ctx), token};
    return token;
}

bool nd_ctx_pinned(const nd_ctx *ctx, uint64_t token)
{
    if (!ctx || token == 0) return false;
    size_t lo = 0, hi = ctx->n_pins; /* tokens increase along the pins */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ctx->pins[mid].token < token)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ctx->n_pins && ctx->pins[lo].token == token;
}

static size_t align_up(size_t n)
{
    return (n + ND_ALIGN - 1) & ~(size_t)(ND_ALIGN - 1);
}

static bool append_chunk(nd_ctx *ctx, size_t need)
{
    if (ctx->n_chunks == ctx->chunks_cap) {
        size_t cap = ctx->chunks_cap ? 2 * ctx->chunks_cap : 8;
        chunk *c = realloc(ctx->chunks, cap * sizeof *c);
        if (!c) return false;
        ctx->chunks = c;
        ctx->chunks_cap = cap;
    }
    size_t cap = need > ctx->chunk_bytes ? need : ctx->chunk_bytes;
    char *mem = aligned_alloc(ND_ALIGN, align_up(cap));
    if (!mem) return false;
    ctx->chunks[ctx->n_chunks++] = (chunk){mem, align_up(cap)};
    return true;
}

/* nd_ctx_alloc when the chunk in use is full (or bytes overflows): the next kept chunk that fits,
 * else a new one. Out of line, so the common case stays a few instructions. */
static __attribute__((noinline)) void *alloc_slow(nd_ctx *ctx, size_t bytes, size_t need)
{
    if (need < bytes) return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_ctx_alloc: %zu bytes", bytes);
    size_t i = ctx->n_chunks ? ctx->cur + 1 : 0;
    if (ctx->cur >= ctx->n_chunks) i = ctx->n_chunks;
    while (i < ctx->n_chunks && ctx->chunks[i].cap < need) i++;
    if (i == ctx->n_chunks && !append_chunk(ctx, need))
        return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_ctx_alloc: cannot allocate %zu bytes", bytes);
    ctx->cur = i;
    ctx->offset = need;
    return ctx->chunks[i].mem;
}

void *nd_ctx_alloc(nd_ctx *ctx, size_t bytes)
{
    if (!ctx) return NULL;
    size_t need = align_up(bytes ? bytes : 1);
    if (need >= bytes && ctx->cur < ctx->n_chunks &&
        ctx->chunks[ctx->cur].cap - ctx->offset >= need) {
        void *p = ctx->chunks[ctx->cur].mem + ctx->offset;
        ctx->offset += need;
        return p;
    }
    return alloc_slow(ctx, bytes, need);
}

size_t nd_ctx_capacity(const nd_ctx *ctx)
{
    size_t n = 0;
    for (size_t i = 0; ctx && i < ctx->n_chunks; i++) n += ctx->chunks[i].cap;
    return n;
}

size_t nd_ctx_used(const nd_ctx *ctx)
{
    if (!ctx) return 0;
    size_t n = ctx->offset;
    for (size_t i = 0; i < ctx->cur && i < ctx->n_chunks; i++) n += ctx->chunks[i].cap;
    return n;
}

bool nd_ctx_set_grad(nd_ctx *ctx, bool enabled)
{
    if (!ctx) return false;
    bool prev = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return prev;
}

bool nd_ctx_grad_enabled(const nd_ctx *ctx)
{
    return ctx && ctx->grad_enabled;
}

nd_status nd_ctx_error(const nd_ctx *ctx)
{
    return ctx ? ctx->status : ND_ERR_ARG;
}

const char *nd_ctx_errmsg(const nd_ctx *ctx)
{
    if (!ctx) return null_ctx_msg;
    return ctx->status == ND_OK ? "" : ctx->msg;
}

void nd_ctx_clear_error(nd_ctx *ctx)
{
    if (!ctx) return;
    ctx->status = ND_OK;
    ctx->msg[0] = '\0';
}

static void record_error(nd_ctx *ctx, nd_status code, const char *fmt, va_list ap)
{
    if (!ctx || ctx->status != ND_OK) return; /* the first error wins */
    ctx->status = code;
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
}

nd_status nd_fail(nd_ctx *ctx, nd_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_error(ctx, code, fmt, ap);
    va_end(ap);
    return ctx ? ctx->status : code;
}

void *nd_fail_null(nd_ctx *ctx, nd_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_error(ctx, code, fmt, ap);
    va_end(ap);
    return NULL;
}

void nd_ctx_set_ext(nd_ctx *ctx, void *state, void (*destroy)(void *state))
{
    if (!ctx) return;
    ctx->ext = state;
    ctx->ext_destroy = destroy;
}

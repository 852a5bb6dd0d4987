/* SPDX-License-Identifier: MIT
 * tensor/tensor.c: making tensors (persistent or arena-owned), shapes and their text, and the
 * small helpers every module uses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ctx_internal.h"

/* Validates a shape and returns its size; 0 with an error in ctx when invalid. */
static size_t checked_size(nd_ctx *ctx, const char *fn, int ndim, const int *shape)
{
    if (ndim < 0 || ndim > ND_MAX_DIMS) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: %d dims (0 to %d supported)", fn, ndim, ND_MAX_DIMS);
        return 0;
    }
    if (ndim > 0 && !shape) {
        nd_fail(ctx, ND_ERR_ARG, "%s: shape is NULL", fn);
        return 0;
    }
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            nd_fail(ctx, ND_ERR_SHAPE, "%s: dim %d is %d (must be positive)", fn, i, shape[i]);
            return 0;
        }
        if (size > SIZE_MAX / sizeof(nd_real) / (size_t)shape[i]) {
            nd_fail(ctx, ND_ERR_NOMEM, "%s: shape too large", fn);
            return 0;
        }
        size *= (size_t)shape[i];
    }
    return size;
}

static void set_shape(nd_tensor *t, int ndim, const int *shape, size_t size)
{
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->size = size;
    t->src = t->src_inline;
}

nd_tensor *nd_tensor_create(nd_ctx *ctx, int ndim, const int *shape, bool requires_grad)
{
    size_t size = checked_size(ctx, "nd_tensor_create", ndim, shape);
    if (!size) return NULL;
    nd_tensor *t = malloc(sizeof *t);
    nd_real *data = calloc(size, sizeof *data);
    nd_real *grad = requires_grad ? calloc(size, sizeof *grad) : NULL;
    if (!t || !data || (requires_grad && !grad)) {
        free(t), free(data), free(grad);
        return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_tensor_create: %zu elements", size);
    }
    set_shape(t, ndim, shape, size);
    t->data = data;
    t->grad = grad;
    t->requires_grad = requires_grad;
    t->persistent = true;
    return t;
}

void nd_tensor_destroy(nd_tensor *t)
{
    if (!t) return;
    if (t->persistent && !t->base) { /* a view's memory belongs to its base */
        free(t->data);
        free(t->grad);
    }
    free(t);
}

nd_tensor *nd_tensor_persistent_view(nd_ctx *ctx, nd_tensor *base, size_t offset, int ndim,
                                     const int *shape)
{
    nd_tensor *t = malloc(sizeof *t);
    if (!t) return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_tensor_persistent_view: header");
    size_t size = 1;
    for (int i = 0; i < ndim; i++) size *= (size_t)shape[i];
    set_shape(t, ndim, shape, size);
    t->data = base->data + offset;
    t->grad = base->grad ? base->grad + offset : NULL;
    t->persistent = true;
    t->base = base;
    return t;
}

nd_tensor *nd_tensor_alloc(nd_ctx *ctx, int ndim, const int *shape)
{
    size_t size = 1;
    for (int i = 0; i < ndim; i++) size *= (size_t)shape[i];
    /* header and data in one piece: the header's size is a multiple of the arena's alignment */
    size_t head = (sizeof(nd_tensor) + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1);
    if (size > (SIZE_MAX - head) / sizeof(nd_real)) {
        nd_fail(ctx, ND_ERR_NOMEM, "nd_tensor_alloc: %zu elements", size);
        return NULL;
    }
    nd_tensor *t = nd_ctx_alloc(ctx, head + size * sizeof(nd_real));
    if (!t) return NULL;
    set_shape(t, ndim, shape, size);
    t->data = (nd_real *)((char *)t + head);
    return t;
}

bool nd_check_inputs(nd_ctx *ctx, const char *fn, int n, const nd_tensor *const *xs,
                     const char *const *names)
{
    if (!ctx) return false; /* nowhere to record; nd_ctx_error(NULL) says ND_ERR_ARG */
    for (int i = 0; i < n; i++) {
        if (xs[i]) continue;
        if (names)
            nd_fail(ctx, ND_ERR_ARG, "%s: input %s is NULL", fn, names[i]);
        else
            nd_fail(ctx, ND_ERR_ARG, "%s: input xs[%d] is NULL", fn, i);
        return false;
    }
    return true;
}

/* nd_tensor_new on behalf of fn, so a bad shape is reported under the caller's name */
static nd_tensor *new_checked(nd_ctx *ctx, const char *fn, int ndim, const int *shape)
{
    if (!checked_size(ctx, fn, ndim, shape)) return NULL;
    return nd_tensor_alloc(ctx, ndim, shape);
}

nd_tensor *nd_tensor_new(nd_ctx *ctx, int ndim, const int *shape)
{
    return new_checked(ctx, "nd_tensor_new", ndim, shape);
}

nd_tensor *nd_full(nd_ctx *ctx, int ndim, const int *shape, nd_real value)
{
    nd_tensor *t = new_checked(ctx, "nd_full", ndim, shape);
    if (!t) return NULL;
    for (size_t i = 0; i < t->size; i++) t->data[i] = value;
    return t;
}

nd_tensor *nd_zeros(nd_ctx *ctx, int ndim, const int *shape)
{
    nd_tensor *t = new_checked(ctx, "nd_zeros", ndim, shape);
    if (t) memset(t->data, 0, t->size * sizeof *t->data);
    return t;
}

nd_tensor *nd_zeros_like(nd_ctx *ctx, const nd_tensor *x)
{
    return ND_CHECK1(ctx, "nd_zeros_like", x) ? nd_zeros(ctx, x->ndim, x->shape) : NULL;
}

nd_tensor *nd_ones_like(nd_ctx *ctx, const nd_tensor *x)
{
    return ND_CHECK1(ctx, "nd_ones_like", x) ? nd_full(ctx, x->ndim, x->shape, 1) : NULL;
}

nd_tensor *nd_scalar(nd_ctx *ctx, nd_real value)
{
    return nd_full(ctx, 0, NULL, value);
}

nd_tensor *nd_tensor_from(nd_ctx *ctx, int ndim, const int *shape, const nd_real *data)
{
    if (!data) return nd_fail_null(ctx, ND_ERR_ARG, "nd_tensor_from: data is NULL");
    nd_tensor *t = new_checked(ctx, "nd_tensor_from", ndim, shape);
    if (t) memcpy(t->data, data, t->size * sizeof *data);
    return t;
}

nd_tensor *nd_copy(nd_ctx *ctx, const nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_copy", x)) return NULL;
    return nd_tensor_from(ctx, x->ndim, x->shape, x->data);
}

nd_tensor *nd_detach(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_detach", x)) return NULL;
    nd_tensor *t = nd_ctx_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    set_shape(t, x->ndim, x->shape, x->size);
    t->data = x->data;
    t->name = x->name;
    return t;
}

nd_tensor *nd_view(nd_ctx *ctx, nd_tensor *x, size_t offset, int ndim, const int *shape)
{
    if (!ND_CHECK1(ctx, "nd_view", x)) return NULL;
    size_t size = checked_size(ctx, "nd_view", ndim, shape);
    if (!size) return NULL;
    if (offset > x->size || size > x->size - offset) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_view: %zu elements at offset %zu do not fit in %s", size, offset,
                            nd_shape_str(x, sx));
    }
    nd_tensor *t = nd_ctx_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    set_shape(t, ndim, shape, size);
    t->data = x->data + offset;
    return t;
}

nd_real nd_item(const nd_tensor *x)
{
    return x ? x->data[0] : (nd_real)NAN;
}

bool nd_same_shape(const nd_tensor *a, const nd_tensor *b)
{
    if (!a || !b || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *nd_shape_str(const nd_tensor *t, char *buf)
{
    if (!t) {
        strcpy(buf, "(null)");
        return buf;
    }
    int n = sprintf(buf, "(");
    for (int i = 0; i < t->ndim; i++) n += sprintf(buf + n, i ? ", %d" : "%d", t->shape[i]);
    sprintf(buf + n, t->ndim == 1 ? ",)" : ")");
    return buf;
}

void nd_zero_grad(nd_tensor **params, int n)
{
    for (int i = 0; i < n; i++)
        if (params[i] && params[i]->grad)
            memset(params[i]->grad, 0, params[i]->size * sizeof(nd_real));
}

bool nd_all_finite(const nd_tensor *x)
{
    if (!x) return false;
    /* x - x is 0 for a finite x and NaN for an infinite or NaN one; the sum of those is NaN if
     * any is, in whatever order it is taken: two 16-byte vectors of partial sums */
    typedef nd_real v16 __attribute__((vector_size(16)));
    enum { L = (int)(16 / sizeof(nd_real)) };
    v16 s0 = {0}, s1 = {0};
    const nd_real *d = x->data;
    size_t i = 0;
    for (; i + 2 * L <= x->size; i += 2 * L) {
        v16 a, b;
        memcpy(&a, d + i, sizeof a), memcpy(&b, d + i + L, sizeof b);
        s0 += a - a, s1 += b - b;
    }
    s0 += s1;
    nd_real r = 0;
    for (int u = 0; u < L; u++) r += s0[u];
    for (; i < x->size; i++) r += d[i] - d[i];
    return r == 0;
}

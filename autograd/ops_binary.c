/* SPDX-License-Identifier: MIT
 * autograd/ops_binary.c: add, sub, mul, div with NumPy broadcasting, and the pair that
 * broadcasting needs for its gradients: expand (stretch dims of 1) and sum_to (its inverse).
 * Shapes are aligned on the right and padded to ND_MAX_DIMS dims; an odometer walks the outer
 * dims and a flat loop the last one, so one loop covers every case; equal shapes take a flat
 * loop. */
#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

#define D ND_MAX_DIMS

/* A shape padded with leading 1s to D dims. */
static void pad_shape(const int *shape, int ndim, int *out)
{
    for (int i = 0; i < D; i++) out[i] = 1;
    for (int i = 0; i < ndim; i++) out[D - ndim + i] = shape[i];
}

/* Strides of a padded shape as seen from a broadcast shape: 0 where the dim is stretched. */
static void bcast_strides(const int *shape, const int *out, size_t *stride)
{
    size_t s = 1;
    for (int i = D - 1; i >= 0; i--) {
        stride[i] = shape[i] == 1 && out[i] != 1 ? 0 : s;
        s *= (size_t)shape[i];
    }
}

/* Advances the odometer over the outer dims of shape (all but the last), moving the two offsets
 * by their strides. */
static void odometer_next(int *idx, const int *shape, const size_t *s1, size_t *p1,
                          const size_t *s2, size_t *p2)
{
    for (int d = D - 2; d >= 0; d--) {
        idx[d]++, *p1 += s1[d], *p2 += s2[d];
        if (idx[d] < shape[d]) return;
        *p1 -= s1[d] * (size_t)shape[d], *p2 -= s2[d] * (size_t)shape[d];
        idx[d] = 0;
    }
}

/* rows of the padded shape: the product of all dims but the last */
static size_t outer_rows(const int *shape)
{
    size_t n = 1;
    for (int d = 0; d < D - 1; d++) n *= (size_t)shape[d];
    return n;
}

/* Broadcast shape of a and b into shape/ndim; false when they do not broadcast. */
static bool broadcast_shape(const nd_tensor *a, const nd_tensor *b, int *shape, int *ndim)
{
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        shape[i] = da > db ? da : db;
    }
    *ndim = n;
    return true;
}

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } bin_kind;

static inline __attribute__((always_inline)) void
bin_flat(bin_kind k, nd_real *y, const nd_real *a, size_t sa, const nd_real *b, size_t sb, size_t n)
{
    switch (k) {
    case BIN_ADD:
        for (size_t i = 0; i < n; i++) y[i] = a[i * sa] + b[i * sb];
        break;
    case BIN_SUB:
        for (size_t i = 0; i < n; i++) y[i] = a[i * sa] - b[i * sb];
        break;
    case BIN_MUL:
        for (size_t i = 0; i < n; i++) y[i] = a[i * sa] * b[i * sb];
        break;
    case BIN_DIV:
        for (size_t i = 0; i < n; i++) y[i] = a[i * sa] / b[i * sb];
        break;
    }
}

/* y = a (op) b over [lo, hi) of same-shape operands (nd_parallel_for's range function) */
typedef struct {
    bin_kind k;
    nd_real *y;
    const nd_real *a, *b;
} bin_args;

ND_AVX2_CLONES static void bin_same_range(void *arg, size_t lo, size_t hi)
{
    const bin_args *p = arg;
    bin_flat(p->k, p->y + lo, p->a + lo, 1, p->b + lo, 1, hi - lo);
}

static nd_tensor *binary(nd_ctx *ctx, const char *fn, bin_kind k, nd_op op, nd_tensor *a,
                         nd_tensor *b)
{
    if (!ND_CHECK2(ctx, fn, a, b)) return NULL;
    int shape[ND_MAX_DIMS], ndim;
    if (!broadcast_shape(a, b, shape, &ndim)) {
        char sa[64], sb[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: shapes do not broadcast: a %s, b %s", fn,
                            nd_shape_str(a, sa), nd_shape_str(b, sb));
    }
    nd_tensor *out = nd_tensor_alloc(ctx, ndim, shape);
    if (!out) return NULL;
    if (a->size == out->size && b->size == out->size) {
        nd_parallel_for(out->size, ND_PAR_MIN_VALUES, bin_same_range,
                        &(bin_args){k, out->data, a->data, b->data});
    } else if (b->size == 1 && a->size == out->size) {
        bin_flat(k, out->data, a->data, 1, b->data, 0, out->size);
    } else if (a->size == 1 && b->size == out->size) {
        bin_flat(k, out->data, a->data, 0, b->data, 1, out->size);
    } else {
        int o[D], as[D], bs[D], idx[D] = {0};
        size_t sa[D], sb[D], pa = 0, pb = 0;
        pad_shape(out->shape, ndim, o), pad_shape(a->shape, a->ndim, as);
        pad_shape(b->shape, b->ndim, bs);
        bcast_strides(as, o, sa), bcast_strides(bs, o, sb);
        size_t rows = outer_rows(o), n = (size_t)o[D - 1];
        nd_real *y = out->data;
        for (size_t r = 0; r < rows; r++, y += n) {
            const nd_real *ra = a->data + pa, *rb = b->data + pb;
            /* the inner strides as constants, so each case compiles to a tight loop */
            if (sa[D - 1] == 1 && sb[D - 1] == 1)
                bin_flat(k, y, ra, 1, rb, 1, n);
            else if (sa[D - 1] == 1)
                bin_flat(k, y, ra, 1, rb, 0, n);
            else if (sb[D - 1] == 1)
                bin_flat(k, y, ra, 0, rb, 1, n);
            else
                bin_flat(k, y, ra, 0, rb, 0, n);
            odometer_next(idx, o, sa, &pa, sb, &pb);
        }
    }
    return record2(ctx, out, op, a, b);
}

nd_tensor *nd_add(nd_ctx *ctx, nd_tensor *a, nd_tensor *b)
{
    return binary(ctx, "nd_add", BIN_ADD, ND_OP_ADD, a, b);
}

/* d(a+b): g to each, summed over the dims each was stretched along */
void nd_ADD_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *a = out->src[0], *b = out->src[1], *g = out->gnode;
    if (nd_needs_grad(ctx, a)) nd_accumulate_grad(ctx, a, nd_sum_to(ctx, g, a->ndim, a->shape));
    if (nd_needs_grad(ctx, b)) nd_accumulate_grad(ctx, b, nd_sum_to(ctx, g, b->ndim, b->shape));
}

nd_tensor *nd_sub(nd_ctx *ctx, nd_tensor *a, nd_tensor *b)
{
    return binary(ctx, "nd_sub", BIN_SUB, ND_OP_SUB, a, b);
}

void nd_SUB_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *a = out->src[0], *b = out->src[1], *g = out->gnode;
    if (nd_needs_grad(ctx, a)) nd_accumulate_grad(ctx, a, nd_sum_to(ctx, g, a->ndim, a->shape));
    if (nd_needs_grad(ctx, b))
        nd_accumulate_grad(ctx, b, nd_sum_to(ctx, nd_neg(ctx, g), b->ndim, b->shape));
}

nd_tensor *nd_mul(nd_ctx *ctx, nd_tensor *a, nd_tensor *b)
{
    return binary(ctx, "nd_mul", BIN_MUL, ND_OP_MUL, a, b);
}

/* d(a*b) = g*b, g*a */
void nd_MUL_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *a = out->src[0], *b = out->src[1], *g = out->gnode;
    if (nd_needs_grad(ctx, a))
        nd_accumulate_grad(ctx, a, nd_sum_to(ctx, nd_mul(ctx, g, b), a->ndim, a->shape));
    if (nd_needs_grad(ctx, b))
        nd_accumulate_grad(ctx, b, nd_sum_to(ctx, nd_mul(ctx, g, a), b->ndim, b->shape));
}

nd_tensor *nd_div(nd_ctx *ctx, nd_tensor *a, nd_tensor *b)
{
    return binary(ctx, "nd_div", BIN_DIV, ND_OP_DIV, a, b);
}

/* d(a/b) = g/b, -g*(a/b)/b */
void nd_DIV_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *a = out->src[0], *b = out->src[1], *g = out->gnode;
    nd_tensor *g_over_b = nd_div(ctx, g, b);
    if (nd_needs_grad(ctx, a))
        nd_accumulate_grad(ctx, a, nd_sum_to(ctx, g_over_b, a->ndim, a->shape));
    if (nd_needs_grad(ctx, b)) {
        nd_tensor *db = nd_neg(ctx, nd_mul(ctx, g_over_b, out));
        nd_accumulate_grad(ctx, b, nd_sum_to(ctx, db, b->ndim, b->shape));
    }
}

/* --------------------------------------------------------------------------------------------- */

/* true when shape `from` broadcasts to `to` (aligned on the right, dims of 1 stretch) */
static bool broadcasts_to(int from_ndim, const int *from, int to_ndim, const int *to)
{
    if (from_ndim > to_ndim) return false;
    for (int i = 0; i < from_ndim; i++) {
        int f = from[from_ndim - 1 - i], t = to[to_ndim - 1 - i];
        if (f != t && f != 1) return false;
    }
    return true;
}

static bool shape_equal(const nd_tensor *x, int ndim, const int *shape)
{
    if (x->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (x->shape[i] != shape[i]) return false;
    return true;
}

static const char *shape_text(int ndim, const int *shape, char *buf)
{
    nd_tensor tmp = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) tmp.shape[i] = shape[i];
    return nd_shape_str(&tmp, buf);
}

nd_tensor *nd_expand(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape)
{
    if (!ND_CHECK1(ctx, "nd_expand", x)) return NULL;
    if (ndim > ND_MAX_DIMS || !broadcasts_to(x->ndim, x->shape, ndim, shape)) {
        char sx[64], ss[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_expand: %s does not broadcast to %s",
                            nd_shape_str(x, sx), shape_text(ndim, shape, ss));
    }
    if (shape_equal(x, ndim, shape)) return x;
    nd_tensor *out = nd_tensor_new(ctx, ndim, shape);
    if (!out) return NULL;
    int o[D], xs[D], idx[D] = {0};
    size_t sx[D], px = 0, unused = 0, zero[D] = {0};
    pad_shape(shape, ndim, o), pad_shape(x->shape, x->ndim, xs);
    bcast_strides(xs, o, sx);
    size_t rows = outer_rows(o);
    nd_real *y = out->data;
    for (size_t r = 0; r < rows; r++) {
        const nd_real *row = x->data + px; /* (o[D-1],) with stride sx[D-1] */
        for (int i = 0; i < o[D - 1]; i++) *y++ = row[i * sx[D - 1]];
        odometer_next(idx, o, sx, &px, zero, &unused);
    }
    return record1(ctx, out, ND_OP_EXPAND, x);
}

void nd_EXPAND_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_sum_to(ctx, out->gnode, x->ndim, x->shape));
}

nd_tensor *nd_sum_to(nd_ctx *ctx, nd_tensor *x, int ndim, const int *shape)
{
    if (!ND_CHECK1(ctx, "nd_sum_to", x)) return NULL;
    if (ndim > ND_MAX_DIMS || !broadcasts_to(ndim, shape, x->ndim, x->shape)) {
        char sx[64], ss[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_sum_to: %s does not broadcast to %s",
                            shape_text(ndim, shape, ss), nd_shape_str(x, sx));
    }
    if (shape_equal(x, ndim, shape)) return x;
    nd_tensor *out = nd_zeros(ctx, ndim, shape);
    if (!out) return NULL;
    int xs[D], o[D], idx[D] = {0};
    size_t so[D], po = 0, unused = 0, zero[D] = {0};
    pad_shape(x->shape, x->ndim, xs), pad_shape(shape, ndim, o);
    bcast_strides(o, xs, so);
    size_t rows = outer_rows(xs), n = (size_t)xs[D - 1];
    const nd_real *px = x->data;
    for (size_t r = 0; r < rows; r++, px += n) {
        nd_real *y = out->data + po; /* (n,) with stride so[D-1] */
        if (so[D - 1] == 1) /* summed over outer dims only: a contiguous, vectorisable row */
            for (size_t i = 0; i < n; i++) y[i] += px[i];
        else
            for (size_t i = 0; i < n; i++) y[i * so[D - 1]] += px[i];
        odometer_next(idx, xs, so, &po, zero, &unused);
    }
    return record1(ctx, out, ND_OP_SUM_TO, x);
}

void nd_SUM_TO_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0];
    nd_accumulate_grad(ctx, x, nd_expand(ctx, out->gnode, x->ndim, x->shape));
}

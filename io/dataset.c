/* SPDX-License-Identifier: MIT
 * io/dataset.c: image-classification datasets from IDX files, subsets and seeded splits, and the
 * minibatch loader. Pixels are kept as bytes and scaled to [0, 1] when a batch is gathered into
 * the caller's tensors, so a training loop allocates nothing per batch.
 */
#include <stdlib.h>
#include <string.h>

#include "io/idx_internal.h"
#include "io/io.h"

static nd_dataset *dataset_alloc(nd_ctx *ctx, const char *fn, int n, int rows, int cols)
{
    nd_dataset *ds = calloc(1, sizeof *ds);
    size_t pix = (size_t)rows * (size_t)cols;
    if (ds) {
        ds->pixels = malloc((size_t)n * pix);
        ds->labels = malloc((size_t)n * sizeof *ds->labels);
    }
    if (!ds || !ds->pixels || !ds->labels) {
        nd_dataset_destroy(ds);
        return nd_fail_null(ctx, ND_ERR_NOMEM, "%s: %d images of %d x %d", fn, n, rows, cols);
    }
    ds->n = n, ds->rows = rows, ds->cols = cols;
    return ds;
}

void nd_dataset_destroy(nd_dataset *ds)
{
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    free(ds);
}

static void count_classes(nd_dataset *ds)
{
    int top = -1;
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] > top) top = ds->labels[i];
    ds->n_classes = top + 1;
}

nd_status nd_dataset_load_idx(nd_ctx *ctx, const char *images_path, const char *labels_path,
                              nd_dataset **out)
{
    const char *fn = "nd_dataset_load_idx";
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: output is NULL", fn);
    *out = NULL;
    nd_idx img, lab;
    nd_status st = nd_idx_read_as(ctx, fn, images_path, 3, &img);
    if (st) return st;
    st = nd_idx_read_as(ctx, fn, labels_path, 1, &lab);
    if (st) {
        nd_idx_destroy(&img);
        return st;
    }
    if (img.dims[0] != lab.dims[0]) {
        st = nd_fail(ctx, ND_ERR_FORMAT, "%s: %s has %d images but %s has %d labels", fn,
                     images_path, img.dims[0], labels_path, lab.dims[0]);
    } else {
        /* the pixel buffer is taken over as it is: (n, rows, cols) bytes */
        nd_dataset *ds = calloc(1, sizeof *ds);
        int *labels = malloc((size_t)lab.dims[0] * sizeof *labels);
        if (!ds || !labels) {
            free(ds), free(labels);
            st = nd_fail(ctx, ND_ERR_NOMEM, "%s: %d labels", fn, lab.dims[0]);
        } else {
            for (int i = 0; i < lab.dims[0]; i++) labels[i] = lab.data[i];
            ds->n = img.dims[0], ds->rows = img.dims[1], ds->cols = img.dims[2];
            ds->pixels = img.data, ds->labels = labels;
            img.data = NULL;
            count_classes(ds);
            *out = ds;
        }
    }
    nd_idx_destroy(&img);
    nd_idx_destroy(&lab);
    return st;
}

void nd_permutation(int *perm, int n, nd_rng *rng)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates: perm[i] from the i + 1 not yet placed */
        int j = (int)nd_rng_below(rng, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void copy_example(nd_dataset *dst, int to, const nd_dataset *src, int from)
{
    size_t pix = (size_t)src->rows * (size_t)src->cols;
    memmove(dst->pixels + (size_t)to * pix, src->pixels + (size_t)from * pix, pix);
    dst->labels[to] = src->labels[from];
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

nd_status nd_dataset_limit(nd_ctx *ctx, nd_dataset *ds, int n, nd_rng *rng)
{
    const char *fn = "nd_dataset_limit";
    if (!ds) return nd_fail(ctx, ND_ERR_ARG, "%s: dataset is NULL", fn);
    if (n < 1) return nd_fail(ctx, ND_ERR_ARG, "%s: limit %d (must be at least 1)", fn, n);
    if (n >= ds->n) return ND_OK;
    if (rng) {
        int *perm = malloc((size_t)ds->n * sizeof *perm);
        if (!perm) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %d indices", fn, ds->n);
        nd_permutation(perm, ds->n, rng);
        qsort(perm, (size_t)n, sizeof *perm, cmp_int);                /* keep the original order */
        for (int k = 0; k < n; k++) copy_example(ds, k, ds, perm[k]); /* perm[k] >= k */
        free(perm);
    }
    ds->n = n;
    count_classes(ds);
    return ND_OK;
}

static nd_status check_indices(nd_ctx *ctx, const char *fn, const nd_dataset *ds, const int *idx,
                               int n)
{
    if (!ds) return nd_fail(ctx, ND_ERR_ARG, "%s: dataset is NULL", fn);
    if (n < 1 || !idx) return nd_fail(ctx, ND_ERR_ARG, "%s: %d indices (need at least 1)", fn, n);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return nd_fail(ctx, ND_ERR_ARG, "%s: index %d is %d, outside [0, %d)", fn, i, idx[i],
                           ds->n);
    return ND_OK;
}

static nd_status subset(nd_ctx *ctx, const char *fn, const nd_dataset *ds, const int *idx, int n,
                        nd_dataset **out)
{
    nd_dataset *s = dataset_alloc(ctx, fn, n, ds->rows, ds->cols);
    if (!s) return nd_fail(ctx, ND_ERR_NOMEM, "%s: cannot allocate %d examples", fn, n);
    for (int i = 0; i < n; i++) copy_example(s, i, ds, idx[i]);
    count_classes(s);
    *out = s;
    return ND_OK;
}

nd_status nd_dataset_subset(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int n,
                            nd_dataset **out)
{
    const char *fn = "nd_dataset_subset";
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: output is NULL", fn);
    *out = NULL;
    nd_status st = check_indices(ctx, fn, ds, idx, n);
    return st ? st : subset(ctx, fn, ds, idx, n, out);
}

nd_status nd_dataset_split(nd_ctx *ctx, const nd_dataset *ds, int n_val, nd_rng *rng,
                           nd_dataset **train, nd_dataset **val)
{
    const char *fn = "nd_dataset_split";
    if (!train || !val) return nd_fail(ctx, ND_ERR_ARG, "%s: output is NULL", fn);
    *train = *val = NULL;
    if (!ds || !rng) return nd_fail(ctx, ND_ERR_ARG, "%s: dataset or rng is NULL", fn);
    if (n_val < 1 || n_val >= ds->n)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %d validation examples of %d (need 0 < n_val < n)", fn,
                       n_val, ds->n);
    int *perm = malloc((size_t)ds->n * sizeof *perm);
    if (!perm) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %d indices", fn, ds->n);
    nd_permutation(perm, ds->n, rng);
    nd_status st = subset(ctx, fn, ds, perm, n_val, val);
    if (!st) st = subset(ctx, fn, ds, perm + n_val, ds->n - n_val, train);
    if (st) {
        nd_dataset_destroy(*val);
        *val = NULL;
    }
    free(perm);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Gathering a batch into tensors.
 */
static nd_status check_batch_tensors(nd_ctx *ctx, const char *fn, const nd_dataset *ds, int m,
                                     const nd_tensor *x, const nd_tensor *y)
{
    char sb[64];
    size_t pix = (size_t)ds->rows * (size_t)ds->cols;
    if (!x || !x->data || x->ndim < 1 || x->shape[0] != m || x->size != (size_t)m * pix)
        return nd_fail(ctx, ND_ERR_SHAPE,
                       "%s: x %s does not hold %d images of %d x %d (first dim %d)", fn,
                       nd_shape_str(x, sb), m, ds->rows, ds->cols, m);
    if (y) {
        bool ok = y->data && y->ndim >= 1 && y->ndim <= 2 && y->shape[0] == m;
        if (ok && y->ndim == 2) ok = y->shape[1] >= ds->n_classes;
        if (!ok)
            return nd_fail(ctx, ND_ERR_SHAPE,
                           "%s: y %s is neither (%d,) class indices nor (%d, C >= %d) one-hot", fn,
                           nd_shape_str(y, sb), m, m, ds->n_classes);
    }
    return ND_OK;
}

static void gather(const nd_dataset *ds, const int *idx, int m, nd_tensor *x, nd_tensor *y,
                   int *labels)
{
    size_t pix = (size_t)ds->rows * (size_t)ds->cols;
    for (int i = 0; i < m; i++) {
        const uint8_t *p = ds->pixels + (size_t)idx[i] * pix; /* (rows * cols) */
        nd_real *dst = x->data + (size_t)i * pix;
        for (size_t k = 0; k < pix; k++) dst[k] = (nd_real)p[k] / (nd_real)255;
        int label = ds->labels[idx[i]];
        if (labels) labels[i] = label;
        if (y && y->ndim == 1) y->data[i] = (nd_real)label;
        if (y && y->ndim == 2) {
            nd_real *row = y->data + (size_t)i * (size_t)y->shape[1];
            memset(row, 0, (size_t)y->shape[1] * sizeof *row);
            row[label] = 1;
        }
    }
}

nd_status nd_dataset_gather(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int m, nd_tensor *x,
                            nd_tensor *y, int *labels)
{
    const char *fn = "nd_dataset_gather";
    nd_status st = check_indices(ctx, fn, ds, idx, m);
    if (!st) st = check_batch_tensors(ctx, fn, ds, m, x, y);
    if (!st) gather(ds, idx, m, x, y, labels);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The loader.
 */
static void new_epoch(nd_loader *ld)
{
    if (ld->shuffle) {
        nd_permutation(ld->perm, ld->n, &ld->rng);
    } else {
        for (int i = 0; i < ld->n; i++) ld->perm[i] = i;
    }
    ld->pos = 0;
}

nd_status nd_loader_create(nd_ctx *ctx, const nd_dataset *ds, int batch, bool shuffle,
                           bool drop_last, uint64_t seed, nd_loader **out)
{
    const char *fn = "nd_loader_create";
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: output is NULL", fn);
    *out = NULL;
    if (!ds || ds->n < 1) return nd_fail(ctx, ND_ERR_ARG, "%s: empty dataset", fn);
    if (batch < 1) return nd_fail(ctx, ND_ERR_ARG, "%s: batch size %d", fn, batch);
    if (drop_last && batch > ds->n)
        return nd_fail(ctx, ND_ERR_ARG, "%s: batch size %d with drop_last exceeds %d examples", fn,
                       batch, ds->n);
    nd_loader *ld = calloc(1, sizeof *ld);
    int *perm = malloc((size_t)ds->n * sizeof *perm);
    if (!ld || !perm) {
        free(ld), free(perm);
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %d indices", fn, ds->n);
    }
    *ld = (nd_loader){.ds = ds,
                      .batch = batch,
                      .shuffle = shuffle,
                      .drop_last = drop_last,
                      .rng = nd_rng_seed(seed),
                      .n = ds->n,
                      .perm = perm,
                      .rows = batch,
                      .n_ranks = 1};
    new_epoch(ld);
    *out = ld;
    return ND_OK;
}

void nd_loader_destroy(nd_loader *ld)
{
    if (!ld) return;
    free(ld->perm);
    free(ld);
}

/* Sets t's first dim to m (t has capacity for `cap` rows, checked by the caller). */
static void set_rows(nd_tensor *t, int m)
{
    size_t row = t->size / (size_t)t->shape[0];
    t->shape[0] = m;
    t->size = row * (size_t)m;
}

nd_status nd_loader_shard(nd_ctx *ctx, nd_loader *ld, int rank, int n_ranks)
{
    const char *fn = "nd_loader_shard";
    if (!ld) return nd_fail(ctx, ND_ERR_ARG, "%s: loader is NULL", fn);
    if (n_ranks < 1 || rank < 0 || rank >= n_ranks)
        return nd_fail(ctx, ND_ERR_ARG, "%s: rank %d of %d ranks", fn, rank, n_ranks);
    if (ld->batch < n_ranks)
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: a batch of %d examples cannot give each of %d ranks at least one", fn,
                       ld->batch, n_ranks);
    if (ld->pos != 0)
        return nd_fail(ctx, ND_ERR_ARG, "%s: shard a loader before its first batch", fn);
    ld->rank = rank, ld->n_ranks = n_ranks;
    ld->rows = (ld->batch + n_ranks - 1) / n_ranks;
    return ND_OK;
}

nd_status nd_loader_next(nd_ctx *ctx, nd_loader *ld, nd_tensor *x, nd_tensor *y, int *labels,
                         int *count)
{
    const char *fn = "nd_loader_next";
    if (!count) return nd_fail(ctx, ND_ERR_ARG, "%s: count is NULL", fn);
    *count = 0;
    if (!ld) return nd_fail(ctx, ND_ERR_ARG, "%s: loader is NULL", fn);
    if (ld->ds->n != ld->n)
        return nd_fail(ctx, ND_ERR_ARG, "%s: the dataset changed size (%d, was %d) under it", fn,
                       ld->ds->n, ld->n);
    int B = ld->batch, R = ld->rows, N = ld->n_ranks, left = ld->n - ld->pos;
    int m = left < B ? left : B; /* the global batch */
    /* the end of the epoch; a sharded loader also drops a last batch smaller than the ranks */
    if (left == 0 || (ld->drop_last && left < B) || m < N) {
        ld->epoch++;
        new_epoch(ld);
        return ND_OK;
    }
    int lo = (int)((long)ld->rank * m / N), mine = (int)((long)(ld->rank + 1) * m / N) - lo;
    /* x and y hold R rows, or they are the tensors this loader shrank for a smaller batch */
    bool x_ok = x && x->ndim >= 1 && (x->shape[0] == R || (x == ld->shrunk && x->shape[0] < R));
    bool y_ok =
        !y || (y->ndim >= 1 && (y->shape[0] == R || (y == ld->shrunk_y && y->shape[0] < R)));
    if (!x_ok || !y_ok) {
        char sb[64];
        const nd_tensor *bad = !x_ok ? x : y;
        return nd_fail(ctx, ND_ERR_SHAPE, "%s: %s %s must have first dim %d (%s)", fn,
                       !x_ok ? "x" : "y", nd_shape_str(bad, sb), R,
                       N > 1 ? "the batch's rows on one rank" : "the batch size");
    }
    if (x->shape[0] != R) set_rows(x, R);
    if (y && y->shape[0] != R) set_rows(y, R);
    nd_status st = check_batch_tensors(ctx, fn, ld->ds, R, x, y);
    if (st) return st;
    if (mine < R) {
        set_rows(x, mine);
        ld->shrunk = x;
        if (y) set_rows(y, mine), ld->shrunk_y = y;
    }
    gather(ld->ds, ld->perm + ld->pos + lo, mine, x, y, labels);
    ld->pos += m;
    *count = mine;
    return ND_OK;
}

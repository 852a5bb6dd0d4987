/* SPDX-License-Identifier: MIT
 * io/io.h: what goes to and comes from disk. Checkpoints of named tensor lists (nd_param) in the
 * safetensors format, written atomically and loaded only after the whole file has been checked;
 * and datasets in the IDX format of the MNIST family (plain or gzip), with seeded shuffled
 * minibatches written into caller-provided tensors.
 *
 *   nd_param params[] = {{"0.weight", w}, {"0.bias", b}};
 *   if (nd_save(ctx, "model.safetensors", params, 2) != ND_OK) puts(nd_ctx_errmsg(ctx));
 *   if (nd_load(ctx, "model.safetensors", params, 2) != ND_OK) puts(nd_ctx_errmsg(ctx));
 *
 * Every function returns an nd_status and records the first error in the ctx, with a message that
 * names the function, the file and what was wrong (and the tensor, for checkpoints). Bad files
 * never crash and never leave a half-loaded model.
 */
#ifndef ND_IO_IO_H
#define ND_IO_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/param.h" /* nd_param: a named tensor */
#include "tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: safetensors (https://github.com/huggingface/safetensors). An 8-byte little-endian
 * header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets"}, "__metadata__":
 * {string: string}} padded with spaces to a multiple of 8, then the raw little-endian data.
 * Tensors are written sorted by name, as the reference implementation does.
 *
 * The API works on any named tensor list, so one file can hold a model, or an optimizer's state
 * exposed as nd_params ("opt.exp_avg.0.weight"), or both (concatenate the lists).
 */

typedef enum {
    ND_DTYPE_NATIVE = 0, /* the build's nd_real: F64 in double builds, F32 in float builds */
    ND_DTYPE_F32,
    ND_DTYPE_F64,
} nd_dtype;

/* One "__metadata__" entry. Keys and values are UTF-8 strings. */
typedef struct {
    const char *key;
    const char *value;
} nd_meta;

typedef struct {
    nd_dtype dtype;      /* on-disk type of every tensor; converted from nd_real */
    const nd_meta *meta; /* (n_meta,) optional "__metadata__" entries */
    int n_meta;
} nd_save_opts;

#define ND_SAVE_DEFAULT ((nd_save_opts){.dtype = ND_DTYPE_NATIVE, .meta = NULL, .n_meta = 0})

typedef struct {
    bool strict;        /* true (default): every listed name must be in the file */
    bool reject_unused; /* false (default): tensors in the file that are not listed are ignored */
} nd_load_opts;

#define ND_LOAD_DEFAULT ((nd_load_opts){.strict = true, .reject_unused = false})

/* Writes params (n >= 0; names unique, non-empty UTF-8, not "__metadata__") to path atomically:
 * a temporary file in the same directory, written, flushed, fsynced and renamed over path. On any
 * failure the temporary file is removed and an existing file at path is left untouched.
 * ND_ERR_ARG for a bad list, ND_ERR_IO for a failed write. */
nd_status nd_save(nd_ctx *ctx, const char *path, const nd_param *params, int n);
nd_status nd_save_ex(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                     const nd_save_opts *opts);

/* Loads the tensors of path into the listed persistent tensors, by name. Everything is checked
 * first (header length against the file size, JSON, dtype, each shape against its target, offsets
 * in range, contiguous and non-overlapping, byte counts); only then is data copied, so on any error
 * every tensor is untouched. F32 and F64 load into either build (converted); other dtypes are
 * rejected. ND_ERR_IO (cannot read), ND_ERR_FORMAT (corrupt file, unknown dtype, missing tensor in
 * strict mode), ND_ERR_SHAPE (shape differs from the target), ND_ERR_ARG (bad list).
 * nd_load uses ND_LOAD_DEFAULT (strict). n_loaded (may be NULL) receives how many were loaded. */
nd_status nd_load(nd_ctx *ctx, const char *path, const nd_param *params, int n);
nd_status nd_load_ex(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                     const nd_load_opts *opts, int *n_loaded);
/* The same from memory: buf holds a whole safetensors file; name is used in messages. */
nd_status nd_load_buffer(nd_ctx *ctx, const char *name, const void *buf, size_t len,
                         const nd_param *params, int n, const nd_load_opts *opts, int *n_loaded);

/* Copies the "__metadata__" value of key into out (cap bytes, NUL-terminated). ND_ERR_FORMAT if
 * the file is not valid or has no such key, ND_ERR_ARG if the value does not fit. */
nd_status nd_load_meta(nd_ctx *ctx, const char *path, const char *key, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * IDX files (http://yann.lecun.com/exdb/mnist/): a big-endian magic 0x0000TTDD (TT item type,
 * DD number of dims), DD big-endian uint32 dims, then the items. nodal reads unsigned bytes
 * (TT = 0x08) with 1 to 4 positive dims, from plain or gzip files (zlib tells them apart).
 */
#define ND_IDX_MAX_DIMS 4
#define ND_IDX_MAX_BYTES ((size_t)1 << 31) /* larger files are rejected as implausible */

typedef struct {
    int ndim;
    int dims[ND_IDX_MAX_DIMS];
    size_t size;   /* product of dims */
    uint8_t *data; /* (size,) owned; free with nd_idx_free */
} nd_idx;

/* Reads an IDX file of unsigned bytes. ndim_expected 0 accepts 1 to 4 dims. On failure *out is
 * zeroed: ND_ERR_IO (cannot open or read), ND_ERR_FORMAT (bad magic, item type, dims, truncated or
 * trailing data, corrupt gzip), ND_ERR_NOMEM. */
nd_status nd_idx_read(nd_ctx *ctx, const char *path, int ndim_expected, nd_idx *out);
void nd_idx_free(nd_idx *idx);

/* ---------------------------------------------------------------------------------------------
 * Datasets: n images of rows x cols bytes with an integer label each, caller-owned. Pixels stay
 * bytes (8 times smaller than doubles); batches present them as nd_real in [0, 1].
 */
typedef struct {
    int n;           /* examples */
    int rows, cols;  /* image size, e.g. 28 x 28 */
    int n_classes;   /* largest label + 1 */
    uint8_t *pixels; /* (n, rows * cols) */
    int *labels;     /* (n,) in [0, 255]: labels are bytes, not checked against 10 */
} nd_dataset;

/* Images (magic 0x00000803: n x rows x cols bytes) and labels (0x00000801: n bytes); the two
 * counts must agree. *out is NULL on failure. Free with nd_dataset_destroy. */
nd_status nd_dataset_load_idx(nd_ctx *ctx, const char *images_path, const char *labels_path,
                              nd_dataset **out);
void nd_dataset_destroy(nd_dataset *ds);

/* Keeps only the first n examples (a --limit N helper); n >= ds->n keeps all. With rng, a seeded
 * random n examples instead (order preserved). ND_ERR_ARG if n < 1. */
nd_status nd_dataset_limit(nd_ctx *ctx, nd_dataset *ds, int n, nd_rng *rng);
/* A new dataset holding the examples idx[0..n) of ds (copied). */
nd_status nd_dataset_subset(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int n,
                            nd_dataset **out);
/* Splits ds by a seeded permutation into n - n_val training and n_val validation examples
 * (0 < n_val < n), both new datasets; ds is unchanged. */
nd_status nd_dataset_split(nd_ctx *ctx, const nd_dataset *ds, int n_val, nd_rng *rng,
                           nd_dataset **train, nd_dataset **val);

/* A random permutation of 0..n-1 by Fisher-Yates with nd_rng_below. */
void nd_permutation(int *perm, int n, nd_rng *rng);

/* Writes examples idx[0..m) of ds into x and, if given, y and labels. x: m rows of rows*cols
 * values, any shape whose first dim is m, e.g. (m, 1, H, W) or (m, H*W). y (optional): (m,)
 * class indices as nd_real, or (m, C) one-hot with C >= n_classes. labels (optional): (m,) ints. */
nd_status nd_dataset_gather(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int m, nd_tensor *x,
                            nd_tensor *y, int *labels);

/* Minibatches over epochs. Shuffled by a seeded permutation per epoch, or in order. */
typedef struct {
    const nd_dataset *ds; /* not owned */
    int batch;            /* batch size B */
    bool shuffle;
    bool drop_last; /* skip a last batch smaller than B */
    nd_rng rng;
    int n;     /* ds->n when created; a loader whose dataset changed size reports an error */
    int *perm; /* (n,) this epoch's order */
    int pos;   /* next position in perm */
    int epoch; /* completed epochs */
    nd_tensor *shrunk; /* the x last shrunk for a partial batch (so its capacity is known) */
    nd_tensor *shrunk_y;
} nd_loader;

/* A loader of batches of B examples. seed drives the shuffle. ds must outlive the loader and
 * keep its size (limit a dataset before making its loader). */
nd_status nd_loader_create(nd_ctx *ctx, const nd_dataset *ds, int batch, bool shuffle,
                           bool drop_last, uint64_t seed, nd_loader **out);
void nd_loader_destroy(nd_loader *ld);
/* Fills the next batch and returns how many examples it holds (B, or fewer for the last batch
 * of an epoch when drop_last is false); 0 at the end of an epoch (the next call starts a new one,
 * with a new permutation); -1 on error (message in the ctx). x (and y) must have first dim B; for
 * a smaller last batch their first dim and size are set to the count, and restored to B by the
 * next full batch. No allocation per batch. labels (optional) needs room for B ints. */
int nd_loader_next(nd_ctx *ctx, nd_loader *ld, nd_tensor *x, nd_tensor *y, int *labels);

#ifdef __cplusplus
}
#endif

#endif /* ND_IO_IO_H */

/* SPDX-License-Identifier: MIT
 * io/io.h: what goes to and comes from disk. Checkpoints of named tensor lists (nd_param) in the
 * safetensors format, written atomically and loaded only after the whole file has been checked;
 * and datasets in the IDX format of the MNIST family (plain or gzip), with seeded shuffled
 * minibatches written into caller-provided tensors.
 *
 *   nd_param params[] = {{"0.weight", w}, {"0.bias", b}};
 *   if (nd_save(ctx, "model.safetensors", params, 2, NULL) != ND_OK) puts(nd_ctx_errmsg(ctx));
 *   if (nd_load(ctx, "model.safetensors", params, 2, NULL) != ND_OK) puts(nd_ctx_errmsg(ctx));
 *
 * Every function that does work returns an nd_status and records the first error in the ctx, with
 * a message that names the function, the file and what was wrong (and the tensor, for
 * checkpoints). Bad files never crash and never leave a half-loaded model. Options structs are
 * passed as const pointers, NULL meaning the ND_X_DEFAULT values. io needs only tensor/.
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
 *
 * Resuming reads the file once: nd_checkpoint_read reads and validates it whole, then the tensors
 * and the metadata come from the same nd_checkpoint:
 *
 *   nd_checkpoint *ck;
 *   if (nd_checkpoint_read(ctx, "run.safetensors", &ck) != ND_OK) return fail(ctx);
 *   long epochs;
 *   if (nd_checkpoint_load(ctx, ck, params, n, NULL, NULL) != ND_OK ||
 *       nd_checkpoint_meta_long(ctx, ck, "epochs", &epochs) != ND_OK) ...
 *   const char *note = nd_checkpoint_meta(ck, "note");   // NULL when absent
 *   nd_checkpoint_destroy(ck);
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
} nd_save_options;

#define ND_SAVE_DEFAULT ((nd_save_options){.dtype = ND_DTYPE_NATIVE, .meta = NULL, .n_meta = 0})

typedef struct {
    bool strict;          /* true (default): every listed name must be in the file */
    bool reject_unused;   /* false (default): tensors in the file that are not listed are ignored */
    bool allow_nonfinite; /* false (default): a NaN or infinite value in a tensor being loaded is
                             ND_ERR_NONFINITE (naming the tensor and the element) and nothing is
                             loaded; true loads such values as they are */
} nd_load_options;

#define ND_LOAD_DEFAULT                                                                            \
    ((nd_load_options){.strict = true, .reject_unused = false, .allow_nonfinite = false})

/* Writes params (n >= 0; names unique, non-empty UTF-8, not "__metadata__") to path atomically:
 * a temporary file in the same directory, written, flushed, fsynced and renamed over path. On any
 * failure the temporary file is removed and an existing file at path is left untouched.
 * opts NULL means ND_SAVE_DEFAULT. ND_ERR_ARG for a bad list, ND_ERR_IO for a failed write. */
ND_API nd_status nd_save(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                         const nd_save_options *opts);

/* Reads path and loads its tensors into the listed persistent tensors, by name: nd_checkpoint_read
 * then nd_checkpoint_load, for when the metadata is not needed. opts NULL means ND_LOAD_DEFAULT
 * (strict, non-finite values rejected). On any error every tensor is untouched. */
ND_API nd_status nd_load(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                         const nd_load_options *opts);

/* A checkpoint read into memory and validated whole: header length against the file size, JSON,
 * dtypes, shapes, offsets in range, contiguous and non-overlapping, byte counts, metadata values
 * all strings. Owns its bytes: the file is not read again (it may be removed or replaced). */
typedef struct nd_checkpoint nd_checkpoint;

/* Reads and validates path. *out is NULL on failure: ND_ERR_IO (cannot read), ND_ERR_FORMAT
 * (corrupt file), ND_ERR_NOMEM. Free with nd_checkpoint_destroy. */
ND_API nd_status nd_checkpoint_read(nd_ctx *ctx, const char *path, nd_checkpoint **out);
/* The same from memory: buf[0..len) holds a whole safetensors file (copied); name is used in
 * messages in place of a path. */
ND_API nd_status nd_checkpoint_parse(nd_ctx *ctx, const char *name, const void *buf, size_t len,
                                     nd_checkpoint **out);
ND_API void nd_checkpoint_destroy(nd_checkpoint *ck);

/* Loads the checkpoint's tensors into the listed persistent tensors, by name. Everything is
 * checked first (each dtype loadable, each shape equal to its target's, strict / reject_unused,
 * every value finite unless opts->allow_nonfinite); only then is data copied, so on any error
 * every tensor is untouched. F32 and F64 load into either build (converted); other dtypes are
 * rejected. ND_ERR_FORMAT (unloadable dtype, a missing tensor in strict mode, an unused one with
 * reject_unused), ND_ERR_SHAPE (shape differs from the target), ND_ERR_NONFINITE, ND_ERR_ARG
 * (bad list). opts NULL means ND_LOAD_DEFAULT. n_loaded (may be NULL) receives how many tensors
 * were loaded (0 on failure). The checkpoint is not changed: it can be loaded again. */
ND_API nd_status nd_checkpoint_load(nd_ctx *ctx, const nd_checkpoint *ck, const nd_param *params,
                                    int n, const nd_load_options *opts, int *n_loaded);

/* The "__metadata__" value of key, or NULL when the file has no such key. Owned by ck. */
ND_API const char *nd_checkpoint_meta(const nd_checkpoint *ck, const char *key);
/* Every "__metadata__" entry, in file order; *n receives the count. Owned by ck. */
ND_API const nd_meta *nd_checkpoint_meta_list(const nd_checkpoint *ck, int *n);
/* The value of key parsed strictly (nd_parse_double / nd_parse_long below). ND_ERR_FORMAT naming
 * the checkpoint, the key and the value when the key is absent or its value is not a finite
 * number (an integer in range, for _long); *out is untouched on failure. Range checks (a positive
 * standard deviation, say) are the caller's. */
ND_API nd_status nd_checkpoint_meta_double(nd_ctx *ctx, const nd_checkpoint *ck, const char *key,
                                           double *out);
ND_API nd_status nd_checkpoint_meta_long(nd_ctx *ctx, const nd_checkpoint *ck, const char *key,
                                         long *out);

/* ---------------------------------------------------------------------------------------------
 * Strict number parsing, for checkpoint metadata and command-line flags. The whole string must be
 * the number: no leading or trailing spaces or other characters, not empty. On failure *out is
 * untouched and false is returned.
 *   nd_parse_double: a decimal (or C hexadecimal) floating-point number, finite, within range
 *                    (no overflow, no underflow to a denormal or 0 of a non-zero literal); "nan"
 *                    and "inf" are rejected.
 *   nd_parse_long, nd_parse_int: a base-10 integer with an optional sign that fits the type.
 */
ND_API bool nd_parse_double(const char *s, double *out);
ND_API bool nd_parse_long(const char *s, long *out);
ND_API bool nd_parse_int(const char *s, int *out);

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
    uint8_t *data; /* (size,) owned; free with nd_idx_destroy */
} nd_idx;

/* Reads an IDX file of unsigned bytes. ndim_expected 0 accepts 1 to 4 dims. On failure *out is
 * zeroed: ND_ERR_IO (cannot open or read), ND_ERR_FORMAT (bad magic, item type, dims, truncated or
 * trailing data, corrupt gzip), ND_ERR_NOMEM. */
ND_API nd_status nd_idx_read(nd_ctx *ctx, const char *path, int ndim_expected, nd_idx *out);
/* Frees idx->data and zeroes *idx. NULL is a no-op. */
ND_API void nd_idx_destroy(nd_idx *idx);

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
ND_API nd_status nd_dataset_load_idx(nd_ctx *ctx, const char *images_path, const char *labels_path,
                                     nd_dataset **out);
ND_API void nd_dataset_destroy(nd_dataset *ds);

/* Keeps only the first n examples (a --limit N helper); n >= ds->n keeps all. With rng, a seeded
 * random n examples instead (order preserved). ND_ERR_ARG if n < 1. */
ND_API nd_status nd_dataset_limit(nd_ctx *ctx, nd_dataset *ds, int n, nd_rng *rng);
/* A new dataset holding the examples idx[0..n) of ds (copied). */
ND_API nd_status nd_dataset_subset(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int n,
                                   nd_dataset **out);
/* Splits ds by a seeded permutation into n - n_val training and n_val validation examples
 * (0 < n_val < n), both new datasets; ds is unchanged. */
ND_API nd_status nd_dataset_split(nd_ctx *ctx, const nd_dataset *ds, int n_val, nd_rng *rng,
                                  nd_dataset **train, nd_dataset **val);

/* A random permutation of 0..n-1 by Fisher-Yates with nd_rng_below. */
ND_API void nd_permutation(int *perm, int n, nd_rng *rng);

/* Writes examples idx[0..m) of ds into x and, if given, y and labels. x: m rows of rows*cols
 * values, any shape whose first dim is m, e.g. (m, 1, H, W) or (m, H*W). y (optional): (m,)
 * class indices as nd_real, or (m, C) one-hot with C >= n_classes. labels (optional): (m,) ints. */
ND_API nd_status nd_dataset_gather(nd_ctx *ctx, const nd_dataset *ds, const int *idx, int m,
                                   nd_tensor *x, nd_tensor *y, int *labels);

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
    int rank, n_ranks; /* nd_loader_shard: this process's share (0 of 1 unless sharded) */
    int rows;          /* rows of x a batch fills at most: batch, or ceil(batch / n_ranks) */
} nd_loader;

/* A loader of batches of B examples. seed drives the shuffle. ds must outlive the loader and
 * keep its size (limit a dataset before making its loader). */
ND_API nd_status nd_loader_create(nd_ctx *ctx, const nd_dataset *ds, int batch, bool shuffle,
                                  bool drop_last, uint64_t seed, nd_loader **out);
ND_API void nd_loader_destroy(nd_loader *ld);
/* Fills the next batch and sets *count to how many examples it holds (B, or fewer for the last
 * batch of an epoch when drop_last is false); *count is 0 at the end of an epoch (the next call
 * starts a new one, with a new permutation). On error *count is 0 and the status (message in the
 * ctx) is returned. x (and y) must have first dim B; for a smaller last batch their first dim and
 * size are set to the count, and restored to B by the next full batch. No allocation per batch.
 * labels (optional) needs room for B ints.
 *
 *   int m;
 *   while (nd_loader_next(ctx, ld, x, NULL, labels, &m) == ND_OK && m > 0) { ... }
 *   if (nd_ctx_error(ctx)) ...
 */
ND_API nd_status nd_loader_next(nd_ctx *ctx, nd_loader *ld, nd_tensor *x, nd_tensor *y, int *labels,
                                int *count);

/* Data-parallel sharding (dist/dist.h): makes ld one of n_ranks loaders that walk the same global
 * batches (made with the same dataset, batch, shuffle, drop_last and seed on every rank, so the
 * same permutation) and each return this rank's contiguous share of every batch of m examples:
 * rows [rank m / n_ranks, (rank + 1) m / n_ranks). Shares differ by at most one row; x (and y)
 * then need first dim ld->rows = ceil(batch / n_ranks), and *count is this rank's share. The last
 * batch of an epoch is dropped when it has fewer examples than ranks (every rank gets at least
 * one, so 0 still means the end of the epoch); with one rank nothing changes. Call it before the
 * first batch. ND_ERR_ARG for a rank outside [0, n_ranks) or a batch smaller than n_ranks. */
ND_API nd_status nd_loader_shard(nd_ctx *ctx, nd_loader *ld, int rank, int n_ranks);

#ifdef __cplusplus
}
#endif

#endif /* ND_IO_IO_H */

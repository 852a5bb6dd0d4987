/* SPDX-License-Identifier: MIT
 * tests/test_io.c: io/io.h. Checkpoint round trips, every way a safetensors file can be broken
 * (each must fail with a message naming the file and the tensor, and leave the targets untouched),
 * atomic writes, interop fixtures from an independent writer, and the IDX reader and batching on
 * fixtures generated here (plain and gzip) plus the repository's real MNIST digits (data/).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_main.h"

static char dir[64]; /* a fresh temporary directory per test */

/* ---------------------------------------------------------------------------------------------
 * Helpers: files, temporary directories, tensors.
 */
static void rm_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void setup(void)
{
    strcpy(dir, "/tmp/nd_test_io_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    rm_tree(dir);
}

/* dir/name in a rotating static buffer (a few live at once) */
static const char *in_dir(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(buf, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* The whole file in a malloc'd buffer (NULL if it cannot be read). */
static uint8_t *read_bytes(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* Files in dir whose name contains ".tmp." (left-over temporaries). */
static int count_temp_files(const char *d)
{
    int n = 0;
    DIR *dp = opendir(d);
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (dp) closedir(dp);
    return n;
}

static nd_tensor *make(int ndim, const int *shape, double base)
{
    nd_tensor *t = nd_tensor_create(ctx, ndim, shape, true);
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < t->size; i++) t->data[i] = (nd_real)(base + 0.25 * (double)i);
    return t;
}

static void fill(nd_tensor *t, nd_real v)
{
    for (size_t i = 0; i < t->size; i++) t->data[i] = v;
}

static bool all_equal(const nd_tensor *t, nd_real v)
{
    for (size_t i = 0; i < t->size; i++)
        if (t->data[i] != v) return false;
    return true;
}

static bool same_data(const nd_tensor *a, const nd_tensor *b)
{
    return a->size == b->size && !memcmp(a->data, b->data, a->size * sizeof *a->data);
}

#define ck_assert_msg_has(s)                                                                       \
    ck_assert_msg(strstr(nd_ctx_errmsg(ctx), (s)) != NULL, "message \"%s\" lacks \"%s\"",          \
                  nd_ctx_errmsg(ctx), (s))

/* A safetensors file from header text (padded with spaces to a multiple of 8) and data_len
 * bytes of data (all 0x3f, so F64 values are 0x3f3f...). */
static void write_st(const char *path, const char *header, size_t data_len)
{
    size_t h = strlen(header), hp = (h + 7) / 8 * 8;
    uint8_t *b = malloc(8 + hp + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    memset(b + 8 + hp, 0x3f, data_len);
    write_bytes(path, b, 8 + hp + data_len);
    free(b);
}

/* tests/data-io/name, or NULL when it cannot be read. */
static const char *data_io_path(const char *name)
{
    static char buf[1024];
    char rel[256];
    snprintf(rel, sizeof rel, "data-io/%s", name);
    return access(nd_test_path(buf, sizeof buf, rel), R_OK) == 0 ? buf : NULL;
}

/* nd_checkpoint_read + nd_checkpoint_load, for a load that reports how many tensors it found */
static nd_status load_counted(nd_ctx *c, const char *path, const nd_param *p, int n,
                              const nd_load_options *o, int *n_loaded)
{
    nd_checkpoint *ck = NULL;
    nd_status st = nd_checkpoint_read(c, path, &ck);
    if (!st) st = nd_checkpoint_load(c, ck, p, n, o, n_loaded);
    nd_checkpoint_destroy(ck);
    return st;
}

/* The next batch's count, or -1 on error (when nd_loader_next must also have set the count to 0) */
static int next_batch(nd_loader *ld, nd_tensor *x, nd_tensor *y, int *labels)
{
    int count = -7;
    nd_status st = nd_loader_next(ctx, ld, x, y, labels, &count);
    if (st != ND_OK) {
        ck_assert_int_eq(count, 0);
        ck_assert_int_eq(st, nd_ctx_error(ctx));
        return -1;
    }
    return count;
}

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: round trips.
 */
START_TEST(test_save_load_round_trip_with_names_and_scalar)
{
    nd_tensor *w = make(2, (int[]){4, 2}, -1), *b = make(1, (int[]){4}, 3), *s = make(0, NULL, 7.5);
    nd_param params[] = {{"0.weight", w}, {"0.bias", b}, {"scale", s}};
    const char *path = in_dir("model.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, params, 3, NULL), ND_OK);

    nd_tensor *w2 = make(2, (int[]){4, 2}, 0), *b2 = make(1, (int[]){4}, 0), *s2 = make(0, NULL, 0);
    nd_param loaded[] = {{"scale", s2}, {"0.weight", w2}, {"0.bias", b2}}; /* any order */
    ck_assert_int_eq(nd_load(ctx, path, loaded, 3, NULL), ND_OK);
    ck_assert(same_data(w, w2) && same_data(b, b2) && same_data(s, s2));
    ck_assert(nd_item(s2) == (nd_real)7.5);
    ck_assert_int_eq(count_temp_files(dir), 0);
    nd_tensor *all[] = {w, b, s, w2, b2, s2};
    for (int i = 0; i < 6; i++) nd_tensor_destroy(all[i]);
}
END_TEST

START_TEST(test_save_writes_sorted_padded_header)
{
    nd_tensor *a = make(1, (int[]){2}, 1), *z = make(2, (int[]){1, 3}, 2);
    nd_param params[] = {{"z", z}, {"a", a}};
    const char *path = in_dir("h.safetensors");
    nd_save_options o = ND_SAVE_DEFAULT;
    o.dtype = ND_DTYPE_F64;
    ck_assert_int_eq(nd_save(ctx, path, params, 2, &o), ND_OK);
    size_t len;
    uint8_t *buf = read_bytes(path, &len);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | buf[i];
    ck_assert_uint_eq(h % 8, 0);
    ck_assert_uint_eq(len, 8 + h + 5 * 8);
    const char *want = "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                       "\"z\":{\"dtype\":\"F64\",\"shape\":[1,3],\"data_offsets\":[16,40]}}";
    ck_assert_mem_eq(buf + 8, want, strlen(want));
    for (size_t i = strlen(want); i < h; i++) ck_assert_int_eq(buf[8 + i], ' ');
    /* data: a first (sorted), little-endian doubles */
    double v;
    memcpy(&v, buf + 8 + h, 8); /* this host is little-endian (x86-64) */
    ck_assert(v == 1.0);
    memcpy(&v, buf + 8 + h + 16, 8);
    ck_assert(v == 2.0);
    free(buf);
    nd_tensor_destroy(a);
    nd_tensor_destroy(z);
}
END_TEST

START_TEST(test_save_load_many_tensors_model_and_optimizer_state)
{
    enum { N = 150 };
    nd_tensor *src[N], *dst[N];
    nd_param ps[N], pd[N];
    char names[N][48];
    for (int i = 0; i < N; i++) {
        int shape[3] = {1 + i % 5, 1 + i % 3, 1 + i % 7};
        int ndim = i % 4; /* 0-dim scalars too */
        src[i] = make(ndim, shape, i);
        dst[i] = make(ndim, shape, -1000);
        /* half model parameters, half optimizer state exposed as nd_params */
        snprintf(names[i], sizeof names[i], i % 2 ? "opt.exp_avg.%d.weight" : "layer.%d.weight", i);
        ps[i] = (nd_param){names[i], src[i]};
        pd[N - 1 - i] = (nd_param){names[i], dst[i]};
    }
    const char *path = in_dir("many.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, ps, N, NULL), ND_OK);
    int n_loaded = -1;
    nd_load_options lo = ND_LOAD_DEFAULT;
    lo.reject_unused = true;
    ck_assert_int_eq(load_counted(ctx, path, pd, N, &lo, &n_loaded), ND_OK);
    ck_assert_int_eq(n_loaded, N);
    for (int i = 0; i < N; i++) ck_assert(same_data(src[i], dst[i]));
    for (int i = 0; i < N; i++) nd_tensor_destroy(src[i]), nd_tensor_destroy(dst[i]);
}
END_TEST

START_TEST(test_save_f32_and_f64_load_into_either)
{
    nd_tensor *w = make(2, (int[]){3, 3}, 0.1);
    nd_tensor *w2 = make(2, (int[]){3, 3}, 0);
    nd_param p[] = {{"w", w}}, p2[] = {{"w", w2}};
    nd_save_options o = ND_SAVE_DEFAULT;
    o.dtype = ND_DTYPE_F32;
    ck_assert_int_eq(nd_save(ctx, in_dir("f32.safetensors"), p, 1, &o), ND_OK);
    ck_assert_int_eq(nd_load(ctx, in_dir("f32.safetensors"), p2, 1, NULL), ND_OK);
    for (size_t i = 0; i < w->size; i++) ck_assert(w2->data[i] == (nd_real)(float)w->data[i]);
    o.dtype = ND_DTYPE_F64;
    fill(w2, 0);
    ck_assert_int_eq(nd_save(ctx, in_dir("f64.safetensors"), p, 1, &o), ND_OK);
    ck_assert_int_eq(nd_load(ctx, in_dir("f64.safetensors"), p2, 1, NULL), ND_OK);
    ck_assert(same_data(w, w2));
    nd_tensor_destroy(w);
    nd_tensor_destroy(w2);
}
END_TEST

START_TEST(test_metadata_round_trip)
{
    nd_tensor *w = make(1, (int[]){2}, 0);
    nd_param p[] = {{"w", w}};
    nd_meta meta[] = {{"format", "pt"}, {"epoch", "12"}, {"note", "caf\xc3\xa9 \"quoted\""}};
    nd_save_options o = ND_SAVE_DEFAULT;
    o.meta = meta, o.n_meta = 3;
    const char *path = in_dir("meta.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, p, 1, &o), ND_OK);
    nd_checkpoint *ck = NULL;
    ck_assert_int_eq(nd_checkpoint_read(ctx, path, &ck), ND_OK);
    ck_assert_str_eq(nd_checkpoint_meta(ck, "epoch"), "12");
    ck_assert_str_eq(nd_checkpoint_meta(ck, "note"), "caf\xc3\xa9 \"quoted\"");
    ck_assert_ptr_null(nd_checkpoint_meta(ck, "absent"));
    int n_meta = 0;
    const nd_meta *all = nd_checkpoint_meta_list(ck, &n_meta);
    ck_assert_int_eq(n_meta, 3);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(nd_checkpoint_meta(ck, all[i].key), all[i].value);
    long epoch = 0;
    ck_assert_int_eq(nd_checkpoint_meta_long(ctx, ck, "epoch", &epoch), ND_OK);
    ck_assert_int_eq(epoch, 12);
    ck_assert_int_eq(nd_checkpoint_meta_long(ctx, ck, "absent", &epoch), ND_ERR_FORMAT);
    ck_assert_msg_has("no metadata key \"absent\"");
    nd_ctx_clear_error(ctx);
    double d = 7;
    ck_assert_int_eq(nd_checkpoint_meta_double(ctx, ck, "note", &d), ND_ERR_FORMAT);
    ck_assert_msg_has("not a finite number");
    ck_assert(d == 7); /* untouched */
    nd_ctx_clear_error(ctx);
    nd_checkpoint_destroy(ck);
    ck_assert_int_eq(nd_load(ctx, path, p, 1, NULL), ND_OK); /* metadata does not disturb loading */
    nd_tensor_destroy(w);
}
END_TEST

START_TEST(test_load_non_strict_allows_missing_and_strict_rejects_unused)
{
    nd_tensor *a = make(1, (int[]){2}, 1), *b = make(1, (int[]){3}, 2);
    nd_param saved[] = {{"a", a}, {"b", b}};
    const char *path = in_dir("ab.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, saved, 2, NULL), ND_OK);

    nd_tensor *a2 = make(1, (int[]){2}, 0), *c2 = make(1, (int[]){4}, 0);
    fill(a2, 42), fill(c2, 42);
    nd_param want[] = {{"a", a2}, {"c", c2}};
    ck_assert_int_eq(nd_load(ctx, path, want, 2, NULL), ND_ERR_FORMAT); /* strict: "c" is missing */
    ck_assert_msg_has("\"c\"");
    ck_assert_msg_has(path);
    ck_assert(all_equal(a2, 42) && all_equal(c2, 42));
    nd_ctx_clear_error(ctx);

    nd_load_options lo = {.strict = false};
    int n_loaded = -1;
    ck_assert_int_eq(load_counted(ctx, path, want, 2, &lo, &n_loaded), ND_OK);
    ck_assert_int_eq(n_loaded, 1);
    ck_assert(same_data(a, a2) && all_equal(c2, 42));

    lo = (nd_load_options){.strict = true, .reject_unused = true};
    fill(a2, 42);
    ck_assert_int_eq(nd_load(ctx, path, want, 1, &lo), ND_ERR_FORMAT); /* "b" unused */
    ck_assert_msg_has("\"b\"");
    ck_assert(all_equal(a2, 42));
    nd_tensor *all[] = {a, b, a2, c2};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
}
END_TEST

/* Issue 9: a resume reads and parses the checkpoint once. nd_checkpoint_read takes the only path;
 * the tensors and the metadata then come from the nd_checkpoint, which still works after the file
 * is removed and after another file takes its name (so nothing is read again). */
START_TEST(test_checkpoint_read_once_serves_tensors_and_metadata)
{
    nd_tensor *w = make(2, (int[]){2, 3}, 1), *b = make(1, (int[]){3}, 2);
    nd_param saved[] = {{"w", w}, {"b", b}};
    nd_meta meta[] = {{"epochs", "3"}, {"pixel_mean", "0.1307"}, {"pixel_std", "0.3081"}};
    const char *path = in_dir("resume.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, saved, 2, &(nd_save_options){.meta = meta, .n_meta = 3}),
                     ND_OK);
    nd_checkpoint *ck = NULL;
    ck_assert_int_eq(nd_checkpoint_read(ctx, path, &ck), ND_OK);
    ck_assert_ptr_nonnull(ck);
    ck_assert_int_eq(unlink(path), 0);
    nd_param other[] = {{"other", b}};
    ck_assert_int_eq(nd_save(ctx, path, other, 1, NULL), ND_OK); /* a different file, same name */

    nd_tensor *w2 = make(2, (int[]){2, 3}, 0), *b2 = make(1, (int[]){3}, 0);
    nd_param into[] = {{"w", w2}, {"b", b2}};
    int n_loaded = -1;
    ck_assert_int_eq(nd_checkpoint_load(ctx, ck, into, 2, NULL, &n_loaded), ND_OK);
    ck_assert_int_eq(n_loaded, 2);
    ck_assert(same_data(w, w2) && same_data(b, b2));
    long epochs = 0;
    double mean = 0, std = 0;
    ck_assert_int_eq(nd_checkpoint_meta_long(ctx, ck, "epochs", &epochs), ND_OK);
    ck_assert_int_eq(nd_checkpoint_meta_double(ctx, ck, "pixel_mean", &mean), ND_OK);
    ck_assert_int_eq(nd_checkpoint_meta_double(ctx, ck, "pixel_std", &std), ND_OK);
    ck_assert(epochs == 3 && mean == 0.1307 && std == 0.3081);
    /* the checkpoint is unchanged by a load: again, into a subset, strictly rejecting the rest */
    fill(w2, 0);
    ck_assert_int_eq(nd_checkpoint_load(ctx, ck, into, 1, NULL, NULL), ND_OK);
    ck_assert(same_data(w, w2));
    ck_assert_int_eq(
        nd_checkpoint_load(ctx, ck, into, 1, &(nd_load_options){.reject_unused = true}, NULL),
        ND_ERR_FORMAT);
    ck_assert_msg_has("nd_checkpoint_load: ");
    ck_assert_msg_has("\"b\" is in the file but not in the list");
    nd_checkpoint_destroy(ck);
    nd_checkpoint_destroy(NULL);

    /* a bad file fails at the read, with *out NULL; NULLs are argument errors */
    nd_ctx_clear_error(ctx);
    write_bytes(path, "\x02\0\0\0\0\0\0\0{x", 10);
    ck = (nd_checkpoint *)1;
    ck_assert_int_eq(nd_checkpoint_read(ctx, path, &ck), ND_ERR_FORMAT);
    ck_assert_ptr_null(ck);
    ck_assert_msg_has("nd_checkpoint_read: ");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_checkpoint_read(ctx, NULL, &ck), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_checkpoint_load(ctx, NULL, into, 2, NULL, &n_loaded), ND_ERR_ARG);
    ck_assert_int_eq(n_loaded, 0);
    ck_assert_ptr_null(nd_checkpoint_meta(NULL, "epochs"));
    nd_tensor *all[] = {w, b, w2, b2};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
}
END_TEST

/* nd_checkpoint_parse copies the caller's bytes: the buffer can go at once */
START_TEST(test_checkpoint_parse_from_memory)
{
    nd_tensor *w = make(2, (int[]){2, 2}, 3), *w2 = make(2, (int[]){2, 2}, 0);
    nd_param p[] = {{"w", w}}, q[] = {{"w", w2}};
    const char *path = in_dir("mem.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, p, 1, NULL), ND_OK);
    size_t len = 0;
    uint8_t *bytes = read_bytes(path, &len);
    ck_assert_ptr_nonnull(bytes);
    nd_checkpoint *ck = NULL;
    ck_assert_int_eq(nd_checkpoint_parse(ctx, "mem", bytes, len, &ck), ND_OK);
    memset(bytes, 0xff, len);
    free(bytes);
    ck_assert_int_eq(nd_checkpoint_load(ctx, ck, q, 1, NULL, NULL), ND_OK);
    ck_assert(same_data(w, w2));
    int n_meta = -1;
    ck_assert_ptr_null(nd_checkpoint_meta_list(ck, &n_meta));
    ck_assert_int_eq(n_meta, 0);
    nd_checkpoint_destroy(ck);
    ck_assert_int_eq(nd_checkpoint_parse(ctx, "short", "abc", 3, &ck), ND_ERR_FORMAT);
    ck_assert_ptr_null(ck);
    ck_assert_msg_has("nd_checkpoint_parse: short: file is 3 bytes");
    nd_tensor_destroy(w);
    nd_tensor_destroy(w2);
}
END_TEST

/* Issue 15 item 2: a NaN or infinity in a checkpoint is ND_ERR_NONFINITE naming the tensor and the
 * element, with every target untouched, unless the caller opts in with .allow_nonfinite. Both
 * on-disk dtypes, through nd_load and nd_checkpoint_load. */
START_TEST(test_load_rejects_nonfinite_unless_allowed)
{
    const nd_dtype dtypes[] = {ND_DTYPE_F64, ND_DTYPE_F32};
    const nd_real bad[] = {(nd_real)NAN, (nd_real)INFINITY, (nd_real)-INFINITY};
    for (int k = 0; k < 2; k++) {
        for (int v = 0; v < 3; v++) {
            nd_ctx_clear_error(ctx);
            nd_tensor *a = make(1, (int[]){2}, 1), *w = make(2, (int[]){2, 3}, 2);
            w->data[5] = bad[v]; /* element 5 = [1, 2] */
            nd_param saved[] = {{"a", a}, {"w", w}};
            const char *path = in_dir("nonfinite.safetensors");
            ck_assert_int_eq(nd_save(ctx, path, saved, 2, &(nd_save_options){.dtype = dtypes[k]}),
                             ND_OK);
            nd_tensor *a2 = make(1, (int[]){2}, 0), *w2 = make(2, (int[]){2, 3}, 0);
            fill(a2, 42), fill(w2, 42);
            nd_param into[] = {{"a", a2}, {"w", w2}};
            ck_assert_int_eq(nd_load(ctx, path, into, 2, NULL), ND_ERR_NONFINITE);
            ck_assert_msg_has("nd_load: ");
            ck_assert_msg_has(path);
            ck_assert_msg_has("tensor \"w\" has a non-finite value");
            ck_assert_msg_has("at element 5 [1, 2]");
            ck_assert_msg_has(v == 0 ? "nan" : "inf");
            ck_assert(all_equal(a2, 42) && all_equal(w2, 42)); /* "a" came first: untouched too */
            nd_ctx_clear_error(ctx);

            nd_checkpoint *ck = NULL;
            ck_assert_int_eq(nd_checkpoint_read(ctx, path, &ck), ND_OK); /* the file is valid */
            ck_assert_int_eq(nd_checkpoint_load(ctx, ck, into, 2, NULL, NULL), ND_ERR_NONFINITE);
            ck_assert(all_equal(a2, 42) && all_equal(w2, 42));
            nd_ctx_clear_error(ctx);
            /* a lenient load that does not ask for "w" is fine; the opt-in loads the value */
            ck_assert_int_eq(nd_checkpoint_load(ctx, ck, into, 1, NULL, NULL), ND_OK);
            ck_assert(same_data(a, a2));
            nd_load_options allow = {.strict = true, .allow_nonfinite = true};
            ck_assert_int_eq(nd_checkpoint_load(ctx, ck, into, 2, &allow, NULL), ND_OK);
            ck_assert(v == 0 ? isnan(w2->data[5]) : w2->data[5] == bad[v]);
            for (int i = 0; i < 5; i++) ck_assert(w2->data[i] == w->data[i]);
            nd_checkpoint_destroy(ck);
            fill(w2, 42);
            ck_assert_int_eq(nd_load(ctx, path, into, 2, &allow), ND_OK);
            ck_assert(v == 0 ? isnan(w2->data[5]) : w2->data[5] == bad[v]);
            nd_tensor *all[] = {a, w, a2, w2};
            for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
        }
    }
}
END_TEST

/* An F64 value beyond float's range is not finite as a float build's nd_real: rejected there
 * (instead of an undefined conversion to inf), loaded in a double build */
START_TEST(test_load_f64_beyond_float_range)
{
    const char header[] = "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    size_t h = sizeof header - 1, hp = (h + 7) / 8 * 8;
    uint8_t b[8 + 64 + 8];
    ck_assert_uint_le(hp, 64);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    double big = 1e300;
    uint64_t bits;
    memcpy(&bits, &big, 8);
    for (int i = 0; i < 8; i++) b[8 + hp + i] = (uint8_t)(bits >> (8 * i));
    nd_checkpoint *ck = NULL;
    ck_assert_int_eq(nd_checkpoint_parse(ctx, "big", b, 8 + hp + 8, &ck), ND_OK);
    nd_tensor *w = make(1, (int[]){1}, 0);
    fill(w, 42);
    nd_param p[] = {{"w", w}};
    nd_status st = nd_checkpoint_load(ctx, ck, p, 1, NULL, NULL);
    if (sizeof(nd_real) == sizeof(float)) {
        ck_assert_int_eq(st, ND_ERR_NONFINITE);
        ck_assert_msg_has("tensor \"w\" has a non-finite value 1e+300 at element 0 [0]");
        ck_assert(all_equal(w, 42));
    } else {
        ck_assert_int_eq(st, ND_OK);
        ck_assert(w->data[0] == (nd_real)1e300);
    }
    nd_checkpoint_destroy(ck);
    nd_tensor_destroy(w);
}
END_TEST

/* Item 5: strict number parsing (metadata, flags): the whole string, finite, in range */
START_TEST(test_parse_numbers_strictly)
{
    static const struct {
        const char *s;
        bool ok;
        double want;
    } dcases[] = {
        {"0", true, 0},       {"-2.5", true, -2.5}, {"1e-3", true, 1e-3}, {"+7", true, 7},
        {".5", true, 0.5},    {"0x1p3", true, 8},   {"", false, 0},       {" 1", false, 0},
        {"1 ", false, 0},     {"abc", false, 0},    {"1.5x", false, 0},   {"nan", false, 0},
        {"-nan", false, 0},   {"inf", false, 0},    {"-inf", false, 0},   {"1e999", false, 0},
        {"-1e999", false, 0}, {"1e-400", false, 0}, {"--1", false, 0},    {"1,5", false, 0},
    };
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
        double d = 12345;
        ck_assert_msg(nd_parse_double(dcases[i].s, &d) == dcases[i].ok, "\"%s\"", dcases[i].s);
        ck_assert_msg(d == (dcases[i].ok ? dcases[i].want : 12345), "\"%s\" -> %g", dcases[i].s, d);
    }
    static const struct {
        const char *s;
        bool ok;
        long want;
    } lcases[] = {
        {"0", true, 0},
        {"42", true, 42},
        {"-7", true, -7},
        {"+3", true, 3},
        {"", false, 0},
        {"abc", false, 0},
        {"1.5", false, 0},
        {"1e3", false, 0},
        {" 1", false, 0},
        {"1 ", false, 0},
        {"0x10", false, 0},
        {".5", false, 0},
        {"99999999999999999999", false, 0},
        {"-99999999999999999999", false, 0},
    };
    for (size_t i = 0; i < sizeof lcases / sizeof lcases[0]; i++) {
        long l = 12345;
        ck_assert_msg(nd_parse_long(lcases[i].s, &l) == lcases[i].ok, "\"%s\"", lcases[i].s);
        ck_assert_msg(l == (lcases[i].ok ? lcases[i].want : 12345), "\"%s\" -> %ld", lcases[i].s,
                      l);
    }
    int n = 5;
    ck_assert(nd_parse_int("2147483647", &n) && n == 2147483647);
    ck_assert(nd_parse_int("-2147483648", &n) && n == -2147483647 - 1);
    n = 5;
    ck_assert(!nd_parse_int("4294967297", &n) && n == 5); /* --epochs 4294967297 is not 1 */
    ck_assert(!nd_parse_int("2147483648", &n) && n == 5);
    ck_assert(!nd_parse_int("abc", &n) && n == 5);
    ck_assert(!nd_parse_double(NULL, &(double){0}) && !nd_parse_long("1", NULL));
}
END_TEST

START_TEST(test_save_rejects_bad_lists)
{
    nd_tensor *a = make(1, (int[]){2}, 1);
    const char *path = in_dir("bad.safetensors");
    nd_param dup[] = {{"a", a}, {"a", a}};
    ck_assert_int_eq(nd_save(ctx, path, dup, 2, NULL), ND_ERR_ARG);
    ck_assert_msg_has("\"a\" appears twice");
    nd_ctx_clear_error(ctx);
    nd_param noname[] = {{NULL, a}};
    ck_assert_int_eq(nd_save(ctx, path, noname, 1, NULL), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    nd_param reserved[] = {{"__metadata__", a}};
    ck_assert_int_eq(nd_save(ctx, path, reserved, 1, NULL), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    nd_param notutf8[] = {{"bad\xff", a}};
    ck_assert_int_eq(nd_save(ctx, path, notutf8, 1, NULL), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    nd_param notensor[] = {{"x", NULL}};
    ck_assert_int_eq(nd_save(ctx, path, notensor, 1, NULL), ND_ERR_ARG);
    ck_assert_int_eq(access(path, F_OK), -1); /* nothing written */
    ck_assert_int_eq(count_temp_files(dir), 0);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_save(ctx, path, NULL, 0, NULL), ND_OK); /* an empty checkpoint is valid */
    ck_assert_int_eq(nd_load(ctx, path, NULL, 0, NULL), ND_OK);
    nd_tensor_destroy(a);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: corrupt files. Targets "a" (2,) and "b" (2, 2); the good file would be
 *   {"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},
 *    "b":{"dtype":"F64","shape":[2,2],"data_offsets":[16,48]}} + 48 bytes.
 */
#define A_OK "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}"
#define B_OK "\"b\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[16,48]}"

typedef struct {
    const char *what;
    const char *header;
    size_t data_len;
    nd_status code;
    const char *needle; /* in the message, besides the file name */
    const char *tensor; /* quoted in the message, or NULL */
} corrupt_case;

static const corrupt_case corrupt_cases[] = {
    {"invalid JSON", "{" A_OK ",\"b\":{", 48, ND_ERR_FORMAT, "not valid JSON", NULL},
    {"header not an object", "[1, 2]", 48, ND_ERR_FORMAT, "JSON object", NULL},
    {"bytes after the JSON", "{" A_OK "," B_OK "} x", 48, ND_ERR_FORMAT, "after its JSON", NULL},
    {"missing dtype", "{" A_OK ",\"b\":{\"shape\":[2,2],\"data_offsets\":[16,48]}}", 48,
     ND_ERR_FORMAT, "no \"dtype\"", "b"},
    {"missing shape", "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"data_offsets\":[16,48]}}", 48,
     ND_ERR_FORMAT, "no \"shape\"", "b"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2]}," B_OK "}", 48,
     ND_ERR_FORMAT, "no \"data_offsets\"", "a"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,16]}," B_OK "}",
     48, ND_ERR_FORMAT, "unknown dtype \"F99\"", "a"},
    {"dtype not a string", "{\"a\":{\"dtype\":8,\"shape\":[2],\"data_offsets\":[0,16]}," B_OK "}",
     48, ND_ERR_FORMAT, "dtype is not a string", "a"},
    {"unsupported dtype",
     "{" A_OK ",\"b\":{\"dtype\":\"I64\",\"shape\":[2,2],\"data_offsets\":[16,48]}}", 48,
     ND_ERR_FORMAT, "dtype I64", "b"},
    {"wrong shape", "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[16,48]}}",
     48, ND_ERR_SHAPE, "has shape (4,), expected (2, 2)", "b"},
    {"wrong rank",
     "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[2,2,1],\"data_offsets\":[16,48]}}", 48,
     ND_ERR_SHAPE, "has shape (2, 2, 1), expected (2, 2)", "b"},
    {"offsets out of range",
     "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[16,4800]}}", 48,
     ND_ERR_FORMAT, "out of range", "b"},
    {"offsets reversed",
     "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[48,16]}}", 48,
     ND_ERR_FORMAT, "out of range", "b"},
    {"offsets not a pair",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0]}," B_OK "}", 48, ND_ERR_FORMAT,
     "data_offsets", "a"},
    {"offsets negative",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[-16,0]}," B_OK "}", 48,
     ND_ERR_FORMAT, "data_offsets", "a"},
    {"overlapping tensors",
     "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[8,40]}}", 40,
     ND_ERR_FORMAT, "overlaps", "b"},
    {"gap between tensors",
     "{" A_OK ",\"b\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[24,56]}}", 56,
     ND_ERR_FORMAT, "gap", "b"},
    {"trailing data", "{" A_OK "," B_OK "}", 56, ND_ERR_FORMAT, "cover 48 data bytes", NULL},
    {"bytes do not match shape",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,16]}," B_OK "}", 48,
     ND_ERR_FORMAT, "needs 24", "a"},
    {"truncated data", "{" A_OK "," B_OK "}", 40, ND_ERR_FORMAT, "truncated", "b"},
    {"missing tensor (strict)", "{" A_OK "}", 16, ND_ERR_FORMAT, "missing", "b"},
    {"empty header (strict)", "{}", 0, ND_ERR_FORMAT, "missing", "a"},
    {"duplicate name", "{" A_OK "," A_OK "}", 16, ND_ERR_FORMAT, "appears twice", "a"},
    {"negative dim", "{\"a\":{\"dtype\":\"F64\",\"shape\":[-2],\"data_offsets\":[0,16]}," B_OK "}",
     48, ND_ERR_FORMAT, "shape entry 0", "a"},
    {"fractional dim",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[2.5],\"data_offsets\":[0,16]}," B_OK "}", 48,
     ND_ERR_FORMAT, "shape entry 0", "a"},
    {"huge dims",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}," B_OK
     "}",
     48, ND_ERR_FORMAT, "implausibly large", "a"},
    {"shape not an array",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":2,\"data_offsets\":[0,16]}," B_OK "}", 48, ND_ERR_FORMAT,
     "shape is not an array", "a"},
    {"tensor not an object", "{\"a\":3," B_OK "}", 48, ND_ERR_FORMAT, "not a JSON object", "a"},
    {"metadata value not a string", "{\"__metadata__\":{\"epoch\":3}," A_OK "," B_OK "}", 48,
     ND_ERR_FORMAT, "__metadata__", NULL},
};

START_TEST(test_load_rejects_corrupt_header)
{
    const corrupt_case *c = &corrupt_cases[_i];
    const char *path = in_dir("corrupt.safetensors");
    write_st(path, c->header, c->data_len);
    nd_tensor *a = make(1, (int[]){2}, 0), *b = make(2, (int[]){2, 2}, 0);
    fill(a, 42), fill(b, 42);
    nd_param p[] = {{"a", a}, {"b", b}};
    nd_status st = nd_load(ctx, path, p, 2, NULL);
    ck_assert_msg(st == c->code, "%s: status %s, expected %s (%s)", c->what, nd_status_str(st),
                  nd_status_str(c->code), nd_ctx_errmsg(ctx));
    ck_assert_msg(strncmp(nd_ctx_errmsg(ctx), "nd_load: ", 9) == 0, "%s", nd_ctx_errmsg(ctx));
    ck_assert_msg_has(path);
    ck_assert_msg_has(c->needle);
    if (c->tensor) {
        char quoted[32];
        snprintf(quoted, sizeof quoted, "\"%s\"", c->tensor);
        ck_assert_msg_has(quoted);
    }
    ck_assert_msg(all_equal(a, 42) && all_equal(b, 42), "%s: targets were modified", c->what);
    nd_tensor_destroy(a);
    nd_tensor_destroy(b);
}
END_TEST

START_TEST(test_load_shape_mismatch_message)
{
    nd_tensor *w = make(2, (int[]){4, 3}, 1), *w2 = make(2, (int[]){4, 2}, 0);
    fill(w2, 42);
    nd_param p[] = {{"0.weight", w}}, p2[] = {{"0.weight", w2}};
    const char *path = in_dir("model.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, p, 1, NULL), ND_OK);
    ck_assert_int_eq(nd_load(ctx, path, p2, 1, NULL), ND_ERR_SHAPE);
    char want[600];
    snprintf(want, sizeof want,
             "nd_load: %s: tensor \"0.weight\" has shape (4, 3), expected (4, 2)", path);
    ck_assert_str_eq(nd_ctx_errmsg(ctx), want);
    ck_assert(all_equal(w2, 42));
    nd_tensor_destroy(w);
    nd_tensor_destroy(w2);
}
END_TEST

START_TEST(test_load_rejects_bad_header_length_and_short_files)
{
    nd_tensor *a = make(1, (int[]){2}, 0);
    fill(a, 42);
    nd_param p[] = {{"a", a}};
    const char *path = in_dir("short.safetensors");
    struct {
        const uint8_t bytes[16];
        size_t len;
        const char *needle;
    } cases[] = {
        {{0}, 0, "too short"},                                     /* empty file */
        {{16, 0, 0, 0, 0}, 5, "too short"},                        /* truncated length field */
        {{0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}'}, 10, "exceeds"}, /* 1000 > 2 */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{'}, 9, "exceeds"},
        {{2, 0, 0, 0, 0, 0, 0, 0, 'x', 'x'}, 10, "JSON object"},
        {{0, 0, 0, 0, 0, 0, 0, 0}, 8, "JSON object"}, /* zero-length header */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_bytes(path, cases[i].bytes, cases[i].len);
        nd_ctx_clear_error(ctx);
        ck_assert_int_eq(nd_load(ctx, path, p, 1, NULL), ND_ERR_FORMAT);
        ck_assert_msg_has(path);
        ck_assert_msg_has(cases[i].needle);
        ck_assert(all_equal(a, 42));
    }
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_load(ctx, in_dir("absent.safetensors"), p, 1, NULL), ND_ERR_IO);
    ck_assert_msg_has("absent.safetensors");
    ck_assert_msg_has("No such file");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_load(ctx, dir, p, 1, NULL), ND_ERR_IO); /* a directory */
    ck_assert(all_equal(a, 42));
    nd_tensor_destroy(a);
}
END_TEST

/* Every proper prefix of a valid file fails cleanly and leaves the targets untouched. */
START_TEST(test_load_every_truncation_fails_cleanly)
{
    nd_tensor *a = make(1, (int[]){3}, 1), *s = make(0, NULL, 2);
    nd_param p[] = {{"a", a}, {"s", s}};
    const char *path = in_dir("full.safetensors"), *cut = in_dir("cut.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, p, 2, NULL), ND_OK);
    size_t len;
    uint8_t *buf = read_bytes(path, &len);
    nd_tensor *a2 = make(1, (int[]){3}, 0), *s2 = make(0, NULL, 0);
    nd_param p2[] = {{"a", a2}, {"s", s2}};
    for (size_t n = 0; n < len; n++) {
        write_bytes(cut, buf, n);
        fill(a2, 42), fill(s2, 42);
        nd_ctx_clear_error(ctx);
        nd_status st = nd_load(ctx, cut, p2, 2, NULL);
        ck_assert_msg(st == ND_ERR_FORMAT, "prefix %zu of %zu: %s", n, len, nd_status_str(st));
        ck_assert_msg_has(cut);
        ck_assert(all_equal(a2, 42) && all_equal(s2, 42));
    }
    free(buf);
    nd_tensor *all[] = {a, s, a2, s2};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: atomic writes.
 */
START_TEST(test_save_into_missing_directory_fails_cleanly)
{
    nd_tensor *a = make(1, (int[]){2}, 0);
    nd_param p[] = {{"a", a}};
    const char *path = in_dir("no/such/dir/model.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, p, 1, NULL), ND_ERR_IO);
    ck_assert_msg_has("nd_save: ");
    ck_assert_msg_has(path);
    ck_assert_int_eq(count_temp_files(dir), 0);
    nd_tensor_destroy(a);
}
END_TEST

START_TEST(test_save_into_read_only_directory_fails_cleanly)
{
    if (geteuid() == 0) {
        printf("test_save_into_read_only_directory_fails_cleanly: running as root, which "
               "ignores directory permissions; skipped\n");
        return;
    }
    nd_tensor *a = make(1, (int[]){2}, 0);
    nd_param p[] = {{"a", a}};
    const char *ro = in_dir("ro");
    ck_assert_int_eq(mkdir(ro, 0555), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", ro);
    ck_assert_int_eq(nd_save(ctx, path, p, 1, NULL), ND_ERR_IO);
    ck_assert_msg_has(path);
    ck_assert_int_eq(count_temp_files(ro), 0);
    nd_tensor_destroy(a);
}
END_TEST

/* A write that fails midway (the file-size limit makes write() fail with EFBIG) removes its
 * temporary file and leaves the existing checkpoint byte for byte as it was. */
START_TEST(test_failed_save_leaves_existing_file_untouched)
{
    nd_tensor *small = make(1, (int[]){4}, 1), *big = make(2, (int[]){256, 256}, 2);
    nd_param ps[] = {{"w", small}}, pb[] = {{"w", big}};
    const char *path = in_dir("keep.safetensors");
    ck_assert_int_eq(nd_save(ctx, path, ps, 1, NULL), ND_OK);
    size_t len0, len1;
    uint8_t *before = read_bytes(path, &len0);

    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    nd_status st = nd_save(ctx, path, pb, 1, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);

    ck_assert_int_eq(st, ND_ERR_IO);
    ck_assert_msg_has(path);
    ck_assert_msg_has("File too large");
    uint8_t *after = read_bytes(path, &len1);
    ck_assert_uint_eq(len0, len1);
    ck_assert_mem_eq(before, after, len0);
    ck_assert_int_eq(count_temp_files(dir), 0);
    free(before);
    free(after);

    /* and a successful save replaces it */
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_save(ctx, path, pb, 1, NULL), ND_OK);
    nd_tensor *back = make(2, (int[]){256, 256}, 0);
    nd_param pr[] = {{"w", back}};
    ck_assert_int_eq(nd_load(ctx, path, pr, 1, NULL), ND_OK);
    ck_assert(same_data(big, back));
    nd_tensor_destroy(small);
    nd_tensor_destroy(big);
    nd_tensor_destroy(back);
}
END_TEST

START_TEST(test_save_over_a_directory_fails_and_cleans_up)
{
    nd_tensor *a = make(1, (int[]){2}, 0);
    nd_param p[] = {{"a", a}};
    const char *path = in_dir("adir");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(nd_save(ctx, path, p, 1, NULL), ND_ERR_IO);
    ck_assert_msg_has("rename");
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_int_eq(count_temp_files(dir), 0);
    nd_tensor_destroy(a);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Checkpoints: interop with files written by an independent implementation
 * (tests/data-io/safetensors_ref.py, struct + json following the format spec).
 */
START_TEST(test_reference_file_loads)
{
    const char *ref = data_io_path("reference.safetensors");
    ck_assert_msg(ref != NULL, "tests/data-io/reference.safetensors not found");
    nd_tensor *w = make(2, (int[]){2, 3}, 0), *b = make(1, (int[]){3}, 0), *s = make(0, NULL, 0);
    nd_tensor *m = make(2, (int[]){2, 3}, 0);
    nd_param p[] = {{"weight", w}, {"bias", b}, {"scalar", s}, {"opt.exp_avg.weight", m}};
    ck_assert_int_eq(nd_load(ctx, ref, p, 4, NULL), ND_OK);
    for (int k = 0; k < 6; k++) {
        ck_assert(w->data[k] == (nd_real)(0.25 * k - 1.0));
        ck_assert(m->data[k] == (nd_real)ldexp(1.0, -k));
    }
    ck_assert(b->data[0] == (nd_real)0.5 && b->data[1] == (nd_real)-1.25 && b->data[2] == 2);
    ck_assert(nd_item(s) == (nd_real)3.5);
    nd_checkpoint *ck = NULL;
    ck_assert_int_eq(nd_checkpoint_read(ctx, ref, &ck), ND_OK);
    ck_assert_str_eq(nd_checkpoint_meta(ck, "format"), "pt");
    nd_checkpoint_destroy(ck);

    /* nodal writes the same bytes for the same tensors */
    nd_meta meta[] = {{"format", "pt"}, {"written_by", "safetensors_ref.py"}};
    nd_save_options o = {.dtype = ND_DTYPE_F64, .meta = meta, .n_meta = 2};
    const char *mine = in_dir("mine.safetensors");
    ck_assert_int_eq(nd_save(ctx, mine, p, 4, &o), ND_OK);
    size_t l1, l2;
    uint8_t *x = read_bytes(ref, &l1), *y = read_bytes(mine, &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(x, y, l1);
    free(x);
    free(y);
    nd_tensor *all[] = {w, b, s, m};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
}
END_TEST

START_TEST(test_mixed_dtype_file_loads_f32_f64_and_rejects_i64)
{
    const char *ref = data_io_path("mixed.safetensors");
    ck_assert_msg(ref != NULL, "tests/data-io/mixed.safetensors not found");
    nd_tensor *f32 = make(1, (int[]){4}, 0), *f64 = make(2, (int[]){2, 2}, 0);
    nd_param p[] = {{"f32", f32}, {"f64", f64}};
    ck_assert_int_eq(nd_load(ctx, ref, p, 2, NULL), ND_OK); /* the I64 tensor is not asked for */
    ck_assert(f32->data[0] == (nd_real)1.5 && f32->data[2] == (nd_real)0.125);
    ck_assert(f32->data[3] == (nd_real)1e-3f);
    ck_assert(f64->data[0] == (nd_real)(1.0 / 3.0) && f64->data[2] == (nd_real)1e30);
    ck_assert(f64->data[3] == 0 && signbit(f64->data[3]));
    nd_tensor *ids = make(1, (int[]){3}, 0);
    fill(ids, 42);
    nd_param pi[] = {{"ids", ids}};
    ck_assert_int_eq(nd_load(ctx, ref, pi, 1, NULL), ND_ERR_FORMAT);
    ck_assert_msg_has("\"ids\" has dtype I64");
    ck_assert(all_equal(ids, 42));
    nd_tensor_destroy(f32);
    nd_tensor_destroy(f64);
    nd_tensor_destroy(ids);
}
END_TEST

/* A seeded torch model's state_dict (Linear(3,2), Tanh, Linear(2,1), float32) plus a 0-dim
 * float64 "step", written from torch's raw tensor bytes by safetensors_ref.py torch-fixture; the
 * expected values are the ones it printed (C hex floats). */
START_TEST(test_torch_state_dict_loads)
{
    const char *ref = data_io_path("torch_mlp.safetensors");
    ck_assert_msg(ref != NULL, "tests/data-io/torch_mlp.safetensors not found");
    static const double b0[] = {-0x1.76d6800000000p-7, 0x1.d4c2f40000000p-2};
    static const double w0[] = {-0x1.1b47d00000000p-8, 0x1.3d26260000000p-2,  -0x1.e696fc0000000p-2,
                                -0x1.b317920000000p-2, -0x1.c769620000000p-3, 0x1.3d12a60000000p-3};
    static const double b2[] = {-0x1.b5a6ba0000000p-3};
    static const double w2[] = {-0x1.0107bc0000000p-4, 0x1.7f332e0000000p-3};
    nd_tensor *t[5] = {make(1, (int[]){2}, 0), make(2, (int[]){2, 3}, 0), make(1, (int[]){1}, 0),
                       make(2, (int[]){1, 2}, 0), make(0, NULL, 0)};
    nd_param p[] = {
        {"0.bias", t[0]}, {"0.weight", t[1]}, {"2.bias", t[2]}, {"2.weight", t[3]}, {"step", t[4]}};
    nd_load_options lo = {.strict = true, .reject_unused = true};
    ck_assert_int_eq(nd_load(ctx, ref, p, 5, &lo), ND_OK);
    const double *want[] = {b0, w0, b2, w2};
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < t[i]->size; k++) ck_assert(t[i]->data[k] == (nd_real)want[i][k]);
    ck_assert(nd_item(t[4]) == (nd_real)0.1);
    for (int i = 0; i < 5; i++) nd_tensor_destroy(t[i]);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * IDX fixtures: built here, plain or gzip (stored deflate blocks, with our own CRC-32, so the
 * fixture writer shares no code with the zlib reader).
 */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

/* gzip of in[0..n) into a malloc'd buffer. */
static uint8_t *gzip_stored(const uint8_t *in, size_t n, size_t *out_len)
{
    uint8_t *out = malloc(n + 18 + 5 * (n / 65535 + 1));
    size_t o = 0;
    const uint8_t head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    memcpy(out, head, 10), o = 10;
    size_t at = 0;
    do {
        size_t len = n - at < 65535 ? n - at : 65535;
        out[o++] = at + len == n; /* BFINAL, BTYPE 00 (stored) */
        out[o++] = (uint8_t)len, out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)~len, out[o++] = (uint8_t)(~len >> 8);
        memcpy(out + o, in + at, len), o += len, at += len;
    } while (at < n);
    uint32_t crc = crc32_of(in, n), isize = (uint32_t)n;
    for (int i = 0; i < 4; i++) out[o++] = (uint8_t)(crc >> (8 * i));
    for (int i = 0; i < 4; i++) out[o++] = (uint8_t)(isize >> (8 * i));
    *out_len = o;
    return out;
}

/* An IDX file: magic, big-endian dims, then data_len bytes of data (may differ from the dims,
 * to make broken files). */
static void write_idx(const char *path, uint32_t magic, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t data_len, bool gz)
{
    size_t n = 4 + 4 * (size_t)ndim + data_len;
    uint8_t *b = malloc(n);
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(magic >> (24 - 8 * i));
    for (int d = 0; d < ndim; d++)
        for (int i = 0; i < 4; i++) b[4 + 4 * d + i] = (uint8_t)(dims[d] >> (24 - 8 * i));
    if (data_len) memcpy(b + 4 + 4 * ndim, data, data_len);
    if (gz) {
        size_t gl;
        uint8_t *g = gzip_stored(b, n, &gl);
        write_bytes(path, g, gl);
        free(g);
    } else {
        write_bytes(path, b, n);
    }
    free(b);
}

/* 5 images of 3 x 2, pixel (i, k) = 50 i + k; labels 0, 1, 2, 3, 4 + extra */
static uint8_t img_data[30], lab_data[5];

static void write_small_dataset(const char *images, const char *labels, bool gz)
{
    for (int i = 0; i < 30; i++) img_data[i] = (uint8_t)(50 * (i / 6) + i % 6);
    for (int i = 0; i < 5; i++) lab_data[i] = (uint8_t)i;
    write_idx(images, 0x803, 3, (uint32_t[]){5, 3, 2}, img_data, 30, gz);
    write_idx(labels, 0x801, 1, (uint32_t[]){5}, lab_data, 5, gz);
}

START_TEST(test_idx_reads_plain_and_gzip)
{
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = in_dir(gz ? "img.gz" : "img"), *lp = in_dir(gz ? "lab.gz" : "lab");
        write_small_dataset(ip, lp, gz);
        nd_dataset *ds = NULL;
        ck_assert_int_eq(nd_dataset_load_idx(ctx, ip, lp, &ds), ND_OK);
        ck_assert_int_eq(ds->n, 5);
        ck_assert_int_eq(ds->rows, 3);
        ck_assert_int_eq(ds->cols, 2);
        ck_assert_int_eq(ds->n_classes, 5);
        ck_assert_mem_eq(ds->pixels, img_data, 30);
        for (int i = 0; i < 5; i++) ck_assert_int_eq(ds->labels[i], i);
        nd_dataset_destroy(ds);

        nd_idx idx;
        ck_assert_int_eq(nd_idx_read(ctx, ip, 0, &idx), ND_OK);
        ck_assert_int_eq(idx.ndim, 3);
        ck_assert_uint_eq(idx.size, 30);
        nd_idx_destroy(&idx);
    }
}
END_TEST

/* Large enough for several stored blocks and the reader's buffer growth. */
START_TEST(test_idx_reads_large_gzip)
{
    enum { N = 3000, R = 28, C = 28 };
    uint8_t *img = malloc((size_t)N * R * C), lab[N];
    for (size_t i = 0; i < (size_t)N * R * C; i++) img[i] = (uint8_t)(i * 7 + i / 13);
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(i % 10);
    write_idx(in_dir("big.gz"), 0x803, 3, (uint32_t[]){N, R, C}, img, (size_t)N * R * C, true);
    write_idx(in_dir("bigl"), 0x801, 1, (uint32_t[]){N}, lab, N, false);
    nd_dataset *ds = NULL;
    ck_assert_int_eq(nd_dataset_load_idx(ctx, in_dir("big.gz"), in_dir("bigl"), &ds), ND_OK);
    ck_assert_int_eq(ds->n, N);
    ck_assert_mem_eq(ds->pixels, img, (size_t)N * R * C);
    ck_assert_int_eq(ds->n_classes, 10);
    nd_dataset_destroy(ds);
    free(img);
}
END_TEST

/* Writes a broken images file, loads it with good labels, and checks the error. */
static void expect_bad_images(const char *path, nd_status code, const char *needle)
{
    char lp[512]; /* not in_dir's rotating buffers, which hold the caller's path */
    snprintf(lp, sizeof lp, "%s/good-labels", dir);
    write_idx(lp, 0x801, 1, (uint32_t[]){5}, lab_data, 5, false);
    nd_dataset *ds = (nd_dataset *)1;
    nd_ctx_clear_error(ctx);
    nd_status st = nd_dataset_load_idx(ctx, path, lp, &ds);
    ck_assert_msg(st == code, "%s: %s (%s)", needle, nd_status_str(st), nd_ctx_errmsg(ctx));
    ck_assert_ptr_null(ds);
    ck_assert_msg(strncmp(nd_ctx_errmsg(ctx), "nd_dataset_load_idx: ", 21) == 0, "%s",
                  nd_ctx_errmsg(ctx));
    ck_assert_msg_has(path);
    ck_assert_msg_has(needle);
}

START_TEST(test_idx_rejects_bad_files)
{
    const char *p = in_dir("bad-images");
    for (int gz = 0; gz < 2; gz++) {
        write_idx(p, 0x12345678, 3, (uint32_t[]){5, 3, 2}, img_data, 30, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "bad magic number 0x12345678");
        write_idx(p, 0xD03, 3, (uint32_t[]){5, 3, 2}, img_data, 30, gz); /* float items */
        expect_bad_images(p, ND_ERR_FORMAT, "item type 0x0d (float)");
        write_idx(p, 0xC03, 3, (uint32_t[]){5, 3, 2}, img_data, 30, gz); /* int items */
        expect_bad_images(p, ND_ERR_FORMAT, "item type 0x0c (int)");
        write_idx(p, 0x801, 1, (uint32_t[]){5}, lab_data, 5, gz); /* labels given as images */
        expect_bad_images(p, ND_ERR_FORMAT, "has 1 dims, expected 3 (magic 0x00000803)");
        write_idx(p, 0x80D, 0, NULL, NULL, 0, gz); /* 13 dims */
        expect_bad_images(p, ND_ERR_FORMAT, "13 dims (1 to 4 supported)");
        write_idx(p, 0x800, 0, NULL, NULL, 0, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "0 dims");
        write_idx(p, 0x803, 3, (uint32_t[]){5, 0, 2}, img_data, 0, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "dim 1 is 0");
        write_idx(p, 0x803, 3, (uint32_t[]){5, 0x80000000u, 2}, img_data, 0, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "dim 1 is 2147483648");
        write_idx(p, 0x803, 3, (uint32_t[]){65536, 65536, 65536}, img_data, 30, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "implausible");
        write_idx(p, 0x803, 3, (uint32_t[]){5, 3, 2}, img_data, 20, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "truncated: expected 30 bytes of data, found 20");
        write_idx(p, 0x803, 3, (uint32_t[]){60000, 28, 28}, img_data, 30, gz); /* claims 47 MB */
        expect_bad_images(p, ND_ERR_FORMAT, "expected 47040000 bytes of data, found 30");
        write_idx(p, 0x803, 3, (uint32_t[]){4, 3, 2}, img_data, 30, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "trailing data");
        write_bytes(p, "\0\0\x08", 3);
        expect_bad_images(p, ND_ERR_FORMAT, "too short for the 4-byte magic");
        write_idx(p, 0x803, 3, (uint32_t[]){5, 3, 2}, NULL, 0, gz);
        expect_bad_images(p, ND_ERR_FORMAT, "found 0");
    }
    write_bytes(p, "\0\0\x08\x03\0\0\0\x05\0\0", 10); /* header cut inside the dims */
    expect_bad_images(p, ND_ERR_FORMAT, "truncated header");
    write_bytes(p, "", 0);
    expect_bad_images(p, ND_ERR_FORMAT, "file is 0 bytes");
    expect_bad_images(in_dir("absent"), ND_ERR_IO, "No such file");
    expect_bad_images(dir, ND_ERR_IO, "read error");
}
END_TEST

START_TEST(test_idx_rejects_corrupt_gzip)
{
    write_small_dataset(in_dir("i.gz"), in_dir("l.gz"), true);
    size_t len;
    uint8_t *g = read_bytes(in_dir("i.gz"), &len);
    const char *p = in_dir("corrupt.gz");

    g[10 + 5 + 20] ^= 0x55; /* a data byte: the CRC in the trailer no longer matches */
    write_bytes(p, g, len);
    expect_bad_images(p, ND_ERR_FORMAT, "corrupt gzip data: incorrect data check");
    g[10 + 5 + 20] ^= 0x55;

    g[10] = 0x07; /* block type 11: reserved, invalid */
    write_bytes(p, g, len);
    expect_bad_images(p, ND_ERR_FORMAT, "corrupt gzip data");
    g[10] = 0x01;

    g[len - 1] ^= 0x01; /* the length in the trailer */
    write_bytes(p, g, len);
    expect_bad_images(p, ND_ERR_FORMAT, "corrupt gzip data");
    g[len - 1] ^= 0x01;

    write_bytes(p, g, len / 2); /* gzip stream cut in half */
    expect_bad_images(p, ND_ERR_FORMAT, "truncated");
    for (size_t cut = 1; cut <= 8; cut++) { /* all data there, trailer (CRC, length) cut */
        write_bytes(p, g, len - cut);
        expect_bad_images(p, ND_ERR_FORMAT, "truncated gzip stream");
    }
    free(g);
}
END_TEST

START_TEST(test_idx_count_mismatch_and_big_labels)
{
    const char *ip = in_dir("img"), *lp = in_dir("lab");
    write_small_dataset(ip, lp, false);
    write_idx(lp, 0x801, 1, (uint32_t[]){4}, lab_data, 4, false);
    nd_dataset *ds = NULL;
    ck_assert_int_eq(nd_dataset_load_idx(ctx, ip, lp, &ds), ND_ERR_FORMAT);
    ck_assert_ptr_null(ds);
    ck_assert_msg_has("5 images");
    ck_assert_msg_has("4 labels");
    ck_assert_msg_has(ip);
    ck_assert_msg_has(lp);
    nd_ctx_clear_error(ctx);

    const uint8_t big[5] = {0, 200, 9, 255, 3}; /* labels are bytes: not checked against 10 */
    write_idx(lp, 0x801, 1, (uint32_t[]){5}, big, 5, true);
    ck_assert_int_eq(nd_dataset_load_idx(ctx, ip, lp, &ds), ND_OK);
    ck_assert_int_eq(ds->n_classes, 256);
    ck_assert_int_eq(ds->labels[3], 255);
    nd_dataset_destroy(ds);

    write_idx(lp, 0x803, 3, (uint32_t[]){5, 1, 1}, big, 5, false); /* images given as labels */
    ck_assert_int_eq(nd_dataset_load_idx(ctx, ip, lp, &ds), ND_ERR_FORMAT);
    ck_assert_msg_has("expected 1 (magic 0x00000801)");
}
END_TEST

static bool have_dir(const char *d)
{
    struct stat sb;
    return stat(d, &sb) == 0 && S_ISDIR(sb.st_mode);
}

START_TEST(test_idx_real_mnist_digits)
{
    /* the repository's data/mnist-digits-10k: $ND_DATA_DIR (set by tests/meson.build) is
     * <repo>/data; run by hand, the cwd is the repository or its build directory */
    char in_data[1024] = "";
    const char *data = getenv("ND_DATA_DIR");
    if (data) snprintf(in_data, sizeof in_data, "%s/mnist-digits-10k", data);
    const char *candidates[] = {in_data, "data/mnist-digits-10k", "../data/mnist-digits-10k"};
    const char *d = NULL;
    for (size_t i = 0; i < 3 && !d; i++)
        if (candidates[i][0] && have_dir(candidates[i])) d = candidates[i];
    ck_assert_msg(d != NULL, "data/mnist-digits-10k not found (set ND_DATA_DIR to <repo>/data)");
    printf("test_idx_real_mnist_digits: reading %s\n", d);
    char ip[1024], lp[1024];
    const char *split[2][3] = {{"train", "train", "8000"}, {"t10k", "t10k", "2000"}};
    for (int s = 0; s < 2; s++) {
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", d, split[s][0]);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", d, split[s][1]);
        nd_dataset *ds = NULL;
        ck_assert_msg(nd_dataset_load_idx(ctx, ip, lp, &ds) == ND_OK, "%s", nd_ctx_errmsg(ctx));
        ck_assert_int_eq(ds->n, atoi(split[s][2]));
        ck_assert_int_eq(ds->rows, 28);
        ck_assert_int_eq(ds->cols, 28);
        ck_assert_int_eq(ds->n_classes, 10);
        int counts[10] = {0};
        for (int i = 0; i < ds->n; i++) counts[ds->labels[i]]++;
        for (int c = 0; c < 10; c++) ck_assert(counts[c] > ds->n / 20); /* roughly balanced */
        long sum = 0;
        for (size_t i = 0; i < (size_t)ds->n * 784; i++) sum += ds->pixels[i];
        double mean = (double)sum / ((double)ds->n * 784 * 255);
        ck_assert(mean > 0.08 && mean < 0.2); /* MNIST's mean intensity is about 0.13 */
        nd_dataset_destroy(ds);
    }
}
END_TEST

START_TEST(test_idx_fashion_mnist_test_split)
{
    const char *d = "/usr/share/datasets/fashion-mnist";
    if (!have_dir(d)) {
        printf("test_idx_fashion_mnist_test_split: %s not installed; skipped\n", d);
        return;
    }
    nd_dataset *ds = NULL;
    ck_assert_int_eq(
        nd_dataset_load_idx(ctx, "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                            "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &ds),
        ND_OK);
    ck_assert_int_eq(ds->n, 10000);
    ck_assert_int_eq(ds->n_classes, 10);
    nd_dataset_destroy(ds);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Batching, splits, subsets. A synthetic dataset whose label is the example's index and whose
 * pixels are (index, 255 - index), so every batch says which examples it holds.
 */
static nd_dataset *id_dataset(int n)
{
    nd_dataset *ds = calloc(1, sizeof *ds);
    ds->n = n, ds->rows = 1, ds->cols = 2, ds->n_classes = n;
    ds->pixels = malloc((size_t)n * 2);
    ds->labels = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        ds->pixels[2 * i] = (uint8_t)i, ds->pixels[2 * i + 1] = (uint8_t)(255 - i);
        ds->labels[i] = i;
    }
    return ds;
}

START_TEST(test_permutation_is_seeded_fisher_yates)
{
    enum { N = 100 };
    int p[N], q[N], r[N];
    nd_rng a = nd_rng_seed(1), b = nd_rng_seed(1), c = nd_rng_seed(2);
    nd_permutation(p, N, &a);
    nd_permutation(q, N, &b);
    nd_permutation(r, N, &c);
    ck_assert_mem_eq(p, q, sizeof p);
    ck_assert(memcmp(p, r, sizeof p) != 0);
    int seen[N] = {0}, moved = 0;
    for (int i = 0; i < N; i++) seen[p[i]]++, moved += p[i] != i;
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert(moved > N / 2);
}
END_TEST

START_TEST(test_loader_epochs_cover_every_example_once)
{
    enum { N = 50, B = 8 };
    nd_dataset *ds = id_dataset(N);
    nd_loader *ld = NULL;
    ck_assert_int_eq(nd_loader_create(ctx, ds, B, true, false, 7, &ld), ND_OK);
    nd_tensor *x = nd_tensor_create(ctx, 4, (int[]){B, 1, 1, 2}, false);
    nd_tensor *y = nd_tensor_create(ctx, 1, (int[]){B}, false);
    int labels[B], first[N], order[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        int seen[N] = {0}, got = 0, m, batches = 0;
        while ((m = next_batch(ld, x, y, labels)) > 0) {
            ck_assert_int_eq(m, got + B <= N ? B : N - got);
            ck_assert_int_eq(x->shape[0], m);
            ck_assert_uint_eq(x->size, (size_t)m * 2);
            for (int i = 0; i < m; i++) {
                int id = labels[i];
                ck_assert(y->data[i] == (nd_real)id);
                ck_assert(x->data[2 * i] == (nd_real)id / 255);
                ck_assert(x->data[2 * i + 1] == (nd_real)(255 - id) / 255);
                seen[id]++;
                order[got + i] = id;
            }
            got += m, batches++;
        }
        ck_assert_int_eq(m, 0);
        ck_assert_int_eq(got, N);
        ck_assert_int_eq(batches, (N + B - 1) / B);
        for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1);
        if (epoch == 0)
            memcpy(first, order, sizeof first);
        else
            ck_assert(memcmp(first, order, sizeof first) != 0); /* reshuffled */
        ck_assert_int_eq(ld->epoch, epoch + 1);
    }
    ck_assert_int_eq(x->shape[0] <= B, 1);

    /* the same seed gives the same first epoch */
    nd_loader *ld2 = NULL;
    ck_assert_int_eq(nd_loader_create(ctx, ds, B, true, false, 7, &ld2), ND_OK);
    for (int got = 0, m; (m = next_batch(ld2, x, NULL, labels)) > 0; got += m)
        ck_assert_mem_eq(labels, first + got, (size_t)m * sizeof(int));
    nd_loader_destroy(ld2);
    nd_loader_destroy(ld);
    nd_tensor_destroy(x);
    nd_tensor_destroy(y);
    nd_dataset_destroy(ds);
}
END_TEST

/* Sharded loaders (one per rank, same seed) split every global batch of the unsharded loader into
 * contiguous shares, in rank order, over two epochs; a last batch smaller than the ranks is
 * dropped, and bad ranks are refused */
START_TEST(test_loader_shards_split_the_global_batches)
{
    enum { N = 17, B = 8, MAXR = 3 };
    nd_dataset *ds = id_dataset(N);
    for (int R = 1; R <= MAXR; R++) {
        nd_loader *whole = NULL, *ld[MAXR] = {0};
        ck_assert_int_eq(nd_loader_create(ctx, ds, B, true, false, 11, &whole), ND_OK);
        nd_tensor *xw = nd_tensor_create(ctx, 2, (int[]){B, 2}, false), *x[MAXR];
        for (int r = 0; r < R; r++) {
            ck_assert_int_eq(nd_loader_create(ctx, ds, B, true, false, 11, &ld[r]), ND_OK);
            ck_assert_int_eq(nd_loader_shard(ctx, ld[r], r, R), ND_OK);
            ck_assert_int_eq(ld[r]->rows, (B + R - 1) / R);
            x[r] = nd_tensor_create(ctx, 2, (int[]){ld[r]->rows, 2}, false);
        }
        for (int epoch = 0; epoch < 2; epoch++) {
            int lw[B], m;
            while ((m = next_batch(whole, xw, NULL, lw)) > 0) {
                int got = 0, lr[B];
                for (int r = 0; r < R; r++) {
                    int mr = next_batch(ld[r], x[r], NULL, lr);
                    if (m < R) { /* dropped: every shard ends its epoch here */
                        ck_assert_int_eq(mr, 0);
                        continue;
                    }
                    ck_assert_int_eq(mr, (r + 1) * m / R - r * m / R);
                    ck_assert_mem_eq(lr, lw + got, (size_t)mr * sizeof(int));
                    got += mr;
                }
                if (m >= R) ck_assert_int_eq(got, m);
            }
            for (int r = 0; r < R; r++) /* 17 = 8 + 8 + 1: the 1 is dropped for R > 1 */
                if (N % B >= R) ck_assert_int_eq(next_batch(ld[r], x[r], NULL, NULL), 0);
        }
        for (int r = 0; r < R; r++) nd_loader_destroy(ld[r]), nd_tensor_destroy(x[r]);
        nd_loader_destroy(whole);
        nd_tensor_destroy(xw);
    }
    nd_loader *ld = NULL;
    ck_assert_int_eq(nd_loader_create(ctx, ds, 2, true, false, 1, &ld), ND_OK);
    ck_assert_int_eq(nd_loader_shard(ctx, ld, 2, 2), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_loader_shard", "rank 2 of 2");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_loader_shard(ctx, ld, 0, 3), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_loader_shard", "batch of 2", "3 ranks");
    nd_loader_destroy(ld);
    nd_dataset_destroy(ds);
}
END_TEST

START_TEST(test_loader_in_order_drop_last_and_one_hot)
{
    enum { N = 10, B = 4 };
    nd_dataset *ds = id_dataset(N);
    nd_loader *ld = NULL;
    ck_assert_int_eq(nd_loader_create(ctx, ds, B, false, true, 0, &ld), ND_OK);
    nd_tensor *x = nd_tensor_create(ctx, 2, (int[]){B, 2}, false);
    nd_tensor *y = nd_tensor_create(ctx, 2, (int[]){B, N}, false);
    int labels[B];
    for (int b = 0; b < 2; b++) {
        ck_assert_int_eq(next_batch(ld, x, y, labels), B);
        for (int i = 0; i < B; i++) {
            ck_assert_int_eq(labels[i], b * B + i);
            for (int c = 0; c < N; c++) ck_assert(y->data[i * N + c] == (c == labels[i] ? 1 : 0));
        }
    }
    ck_assert_int_eq(next_batch(ld, x, y, labels), 0); /* 2 left: dropped */
    ck_assert_int_eq(next_batch(ld, x, y, labels), B); /* a new epoch */
    ck_assert_int_eq(labels[0], 0);
    nd_loader_destroy(ld);

    /* without drop_last the last batch shrinks the tensors, and the next restores them */
    ck_assert_int_eq(nd_loader_create(ctx, ds, B, false, false, 0, &ld), ND_OK);
    ck_assert_int_eq(next_batch(ld, x, y, labels), B);
    ck_assert_int_eq(next_batch(ld, x, y, labels), B);
    ck_assert_int_eq(next_batch(ld, x, y, labels), 2);
    ck_assert_int_eq(x->shape[0], 2);
    ck_assert_uint_eq(y->size, 2 * N);
    ck_assert_int_eq(next_batch(ld, x, y, labels), 0);
    ck_assert_int_eq(next_batch(ld, x, y, labels), B);
    ck_assert_int_eq(x->shape[0], B);
    ck_assert_uint_eq(x->size, 2 * B);
    ck_assert_uint_eq(y->size, (size_t)B * N);
    nd_loader_destroy(ld);
    nd_tensor_destroy(x);
    nd_tensor_destroy(y);
    nd_dataset_destroy(ds);
}
END_TEST

START_TEST(test_loader_and_gather_reject_bad_tensors)
{
    nd_dataset *ds = id_dataset(10);
    nd_loader *ld = NULL;
    ck_assert_int_eq(nd_loader_create(ctx, ds, 4, true, false, 1, &ld), ND_OK);
    nd_tensor *x3 = nd_tensor_create(ctx, 2, (int[]){3, 2}, false);
    nd_tensor *xw = nd_tensor_create(ctx, 2, (int[]){4, 3}, false);
    nd_tensor *x = nd_tensor_create(ctx, 2, (int[]){4, 2}, false);
    nd_tensor *y = nd_tensor_create(ctx, 2, (int[]){4, 5}, false); /* one-hot too narrow */
    ck_assert_int_eq(next_batch(ld, x3, NULL, NULL), -1);
    ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_SHAPE);
    ck_assert_msg_has("(3, 2)");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(next_batch(ld, xw, NULL, NULL), -1);
    ck_assert_msg_has("(4, 3)");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(next_batch(ld, x, y, NULL), -1);
    ck_assert_msg_has("one-hot");
    nd_ctx_clear_error(ctx);
    /* contract item 1: a status, the count through the last argument (0 on error) */
    int count = -7;
    ck_assert_int_eq(nd_loader_next(ctx, ld, x3, NULL, NULL, &count), ND_ERR_SHAPE);
    ck_assert_int_eq(count, 0);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_loader_next(ctx, ld, x, NULL, NULL, NULL), ND_ERR_ARG);
    ck_assert_msg_has("nd_loader_next: count is NULL");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_loader_next(ctx, NULL, x, NULL, NULL, &count), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_dataset_limit(ctx, ds, 5, NULL), ND_OK); /* shrunk under the loader */
    ck_assert_int_eq(next_batch(ld, x, NULL, NULL), -1);
    ck_assert_msg_has("changed size");
    nd_ctx_clear_error(ctx);
    nd_loader_destroy(ld);
    ck_assert_int_eq(nd_loader_create(ctx, ds, 0, true, false, 1, &ld), ND_ERR_ARG);
    ck_assert_ptr_null(ld);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_loader_create(ctx, ds, 6, true, true, 1, &ld), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_dataset_gather(ctx, ds, (int[]){0, 5, 1, 2}, 4, x, NULL, NULL), ND_ERR_ARG);
    ck_assert_msg_has("index 1 is 5");
    nd_ctx_clear_error(ctx);
    ck_assert_int_eq(nd_dataset_gather(ctx, ds, (int[]){4, 0, 1, 2}, 4, x, NULL, NULL), ND_OK);
    ck_assert(x->data[0] == (nd_real)4 / 255);
    nd_tensor *all[] = {x3, xw, x, y};
    for (int i = 0; i < 4; i++) nd_tensor_destroy(all[i]);
    nd_dataset_destroy(ds);
}
END_TEST

START_TEST(test_split_subset_and_limit)
{
    enum { N = 40 };
    nd_dataset *ds = id_dataset(N), *train = NULL, *val = NULL, *train2 = NULL, *val2 = NULL;
    nd_rng r1 = nd_rng_seed(3), r2 = nd_rng_seed(3);
    ck_assert_int_eq(nd_dataset_split(ctx, ds, 10, &r1, &train, &val), ND_OK);
    ck_assert_int_eq(nd_dataset_split(ctx, ds, 10, &r2, &train2, &val2), ND_OK);
    ck_assert_int_eq(train->n, 30);
    ck_assert_int_eq(val->n, 10);
    ck_assert_mem_eq(val->labels, val2->labels, 10 * sizeof(int)); /* seeded */
    int seen[N] = {0};
    for (int i = 0; i < train->n; i++) {
        seen[train->labels[i]]++;
        ck_assert_int_eq(train->pixels[2 * i], train->labels[i]); /* pixels follow labels */
    }
    for (int i = 0; i < val->n; i++) seen[val->labels[i]]++;
    for (int i = 0; i < N; i++) ck_assert_int_eq(seen[i], 1); /* disjoint, complete */
    nd_dataset_destroy(train2), nd_dataset_destroy(val2);
    ck_assert_int_eq(nd_dataset_split(ctx, ds, N, &r1, &train2, &val2), ND_ERR_ARG);
    ck_assert(train2 == NULL && val2 == NULL);
    nd_ctx_clear_error(ctx);

    nd_dataset *sub = NULL;
    ck_assert_int_eq(nd_dataset_subset(ctx, ds, (int[]){5, 1, 5}, 3, &sub), ND_OK);
    ck_assert_int_eq(sub->n, 3);
    ck_assert_int_eq(sub->labels[0], 5);
    ck_assert_int_eq(sub->labels[1], 1);
    ck_assert_int_eq(sub->pixels[5], 255 - 5);
    nd_dataset_destroy(sub);
    ck_assert_int_eq(nd_dataset_subset(ctx, ds, (int[]){-1}, 1, &sub), ND_ERR_ARG);
    nd_ctx_clear_error(ctx);

    ck_assert_int_eq(nd_dataset_limit(ctx, train, 1000, NULL), ND_OK); /* more than n: all */
    ck_assert_int_eq(train->n, 30);
    ck_assert_int_eq(nd_dataset_limit(ctx, ds, 12, NULL), ND_OK);
    ck_assert_int_eq(ds->n, 12);
    ck_assert_int_eq(ds->labels[11], 11);
    nd_rng r3 = nd_rng_seed(9);
    ck_assert_int_eq(nd_dataset_limit(ctx, train, 7, &r3), ND_OK);
    ck_assert_int_eq(train->n, 7);
    for (int i = 1; i < 7; i++) ck_assert(train->labels[i - 1] != train->labels[i]);
    for (int i = 0; i < 7; i++) ck_assert_int_eq(train->pixels[2 * i], train->labels[i]);
    ck_assert_int_eq(nd_dataset_limit(ctx, ds, 0, NULL), ND_ERR_ARG);
    nd_dataset_destroy(train);
    nd_dataset_destroy(val);
    nd_dataset_destroy(ds);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 */
static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *ck = tcase_create("checkpoint"), *bad = tcase_create("corrupt"),
          *atomic = tcase_create("atomic"), *interop = tcase_create("interop"),
          *idx = tcase_create("idx"), *batch = tcase_create("batch");
    TCase *all[] = {ck, bad, atomic, interop, idx, batch};
    for (int i = 0; i < 6; i++) {
        tcase_add_checked_fixture(all[i], ctx_setup, ctx_teardown);
        tcase_add_checked_fixture(all[i], setup, teardown);
        tcase_set_timeout(all[i], 120);
    }
    tcase_add_test(ck, test_save_load_round_trip_with_names_and_scalar);
    tcase_add_test(ck, test_save_writes_sorted_padded_header);
    tcase_add_test(ck, test_save_load_many_tensors_model_and_optimizer_state);
    tcase_add_test(ck, test_save_f32_and_f64_load_into_either);
    tcase_add_test(ck, test_metadata_round_trip);
    tcase_add_test(ck, test_load_non_strict_allows_missing_and_strict_rejects_unused);
    tcase_add_test(ck, test_save_rejects_bad_lists);
    tcase_add_test(ck, test_checkpoint_read_once_serves_tensors_and_metadata);
    tcase_add_test(ck, test_checkpoint_parse_from_memory);
    tcase_add_test(ck, test_load_rejects_nonfinite_unless_allowed);
    tcase_add_test(ck, test_load_f64_beyond_float_range);
    tcase_add_test(ck, test_parse_numbers_strictly);
    tcase_add_loop_test(bad, test_load_rejects_corrupt_header, 0,
                        (int)(sizeof corrupt_cases / sizeof corrupt_cases[0]));
    tcase_add_test(bad, test_load_shape_mismatch_message);
    tcase_add_test(bad, test_load_rejects_bad_header_length_and_short_files);
    tcase_add_test(bad, test_load_every_truncation_fails_cleanly);
    tcase_add_test(atomic, test_save_into_missing_directory_fails_cleanly);
    tcase_add_test(atomic, test_save_into_read_only_directory_fails_cleanly);
    tcase_add_test(atomic, test_failed_save_leaves_existing_file_untouched);
    tcase_add_test(atomic, test_save_over_a_directory_fails_and_cleans_up);
    tcase_add_test(interop, test_reference_file_loads);
    tcase_add_test(interop, test_mixed_dtype_file_loads_f32_f64_and_rejects_i64);
    tcase_add_test(interop, test_torch_state_dict_loads);
    tcase_add_test(idx, test_idx_reads_plain_and_gzip);
    tcase_add_test(idx, test_idx_reads_large_gzip);
    tcase_add_test(idx, test_idx_rejects_bad_files);
    tcase_add_test(idx, test_idx_rejects_corrupt_gzip);
    tcase_add_test(idx, test_idx_count_mismatch_and_big_labels);
    tcase_add_test(idx, test_idx_real_mnist_digits);
    tcase_add_test(idx, test_idx_fashion_mnist_test_split);
    tcase_add_test(batch, test_permutation_is_seeded_fisher_yates);
    tcase_add_test(batch, test_loader_epochs_cover_every_example_once);
    tcase_add_test(batch, test_loader_in_order_drop_last_and_one_hot);
    tcase_add_test(batch, test_loader_shards_split_the_global_batches);
    tcase_add_test(batch, test_loader_and_gather_reject_bad_tensors);
    tcase_add_test(batch, test_split_subset_and_limit);
    for (int i = 0; i < 6; i++) suite_add_tcase(s, all[i]);
    return s;
}

ND_TEST_MAIN(io_suite)

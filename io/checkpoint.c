/* SPDX-License-Identifier: MIT
 * io/checkpoint.c: safetensors save and load of named tensor lists. Saving writes a temporary
 * file beside the target and renames it (fsync first), so a crash never leaves half a checkpoint.
 * Loading reads the whole file once into an nd_checkpoint, checks all of it (header, JSON via
 * cJSON, dtypes, offsets, metadata) when it is read, checks the list against it (shapes, names,
 * finite values) and only then copies, so a bad file leaves every tensor untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/io.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the reference implementation's limit */
#define ST_MAX_RANK 16
#define ST_MAX_INT ((uint64_t)1 << 53) /* integers a JSON double holds exactly */
#define ST_CHUNK 8192                  /* elements converted per write */

/* ---------------------------------------------------------------------------------------------
 * dtypes. Every safetensors dtype is known (so offsets of tensors we do not load can be checked);
 * only F32 and F64 load into nd_real.
 */
typedef struct {
    const char *name;
    unsigned size; /* bytes per element */
    bool loadable;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F64", 8, true},   {"F32", 4, true},      {"F16", 2, false},     {"BF16", 2, false},
    {"I64", 8, false},  {"I32", 4, false},     {"I16", 2, false},     {"I8", 1, false},
    {"U64", 8, false},  {"U32", 4, false},     {"U16", 2, false},     {"U8", 1, false},
    {"BOOL", 1, false}, {"F8_E5M2", 1, false}, {"F8_E4M3", 1, false},
};
enum { ST_F64 = 0, ST_F32 = 1, ST_N_DTYPES = sizeof st_dtypes / sizeof st_dtypes[0] };

static int dtype_find(const char *s)
{
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Little-endian scalars, byte by byte so that the code is right on any host.
 */
static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* "(4, 3)", "(5,)" or "()": the format of nd_shape_str. buf holds at least 64 bytes. */
static const char *dims_str(const uint64_t *dims, int rank, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, rank == 1 ? ",)" : ")");
    return buf;
}

/* true when s is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, len;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        p += len;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing and validating a whole file held in memory.
 */
typedef struct {
    const char *name; /* the JSON key (points into the cJSON tree) */
    int dtype;        /* index into st_dtypes */
    int rank;
    uint64_t dims[ST_MAX_RANK];
    uint64_t numel;
    uint64_t begin, end; /* data_offsets, relative to the data section */
} st_entry;

typedef struct {
    cJSON *root;
    st_entry *entries; /* (n,) sorted by name */
    int n;
    const cJSON *meta;   /* the "__metadata__" object, or NULL */
    const uint8_t *data; /* the data section */
    size_t data_len;
} st_file;

static void st_file_free(st_file *f)
{
    cJSON_Delete(f->root);
    free(f->entries);
    memset(f, 0, sizeof *f);
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int cmp_entry_ptr_offsets(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= (double)ST_MAX_INT) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

/* e->dtype from the JSON string dtype of tensor e->name */
static nd_status entry_dtype(nd_ctx *ctx, const char *fn, const char *file, const cJSON *dtype,
                             st_entry *e)
{
    if (!cJSON_IsString(dtype))
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\": dtype is not a string", fn, file,
                       e->name);
    e->dtype = dtype_find(dtype->valuestring);
    if (e->dtype < 0)
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has unknown dtype \"%.32s\"", fn,
                       file, e->name, dtype->valuestring);
    return ND_OK;
}

/* e->rank, e->dims and e->numel from the JSON array shape */
static nd_status entry_shape(nd_ctx *ctx, const char *fn, const char *file, const cJSON *shape,
                             st_entry *e)
{
    const char *name = e->name;
    if (!cJSON_IsArray(shape))
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\": shape is not an array", fn, file,
                       name);
    e->rank = 0;
    e->numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape)
    {
        if (e->rank == ST_MAX_RANK)
            return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has more than %d dims", fn,
                           file, name, ST_MAX_RANK);
        uint64_t v;
        if (!json_uint(d, &v))
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: tensor \"%s\": shape entry %d is not a non-negative integer",
                           fn, file, name, e->rank);
        e->dims[e->rank++] = v;
        /* numel * size must stay within the data section, so overflow means a bad file */
        if (v && e->numel > ST_MAX_INT / v)
            return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\": shape is implausibly large",
                           fn, file, name);
        e->numel *= v;
    }
    return ND_OK;
}

/* e->begin, e->end from the JSON pair offsets: within the data_len data bytes, and exactly the
 * bytes e's shape and dtype need */
static nd_status entry_offsets(nd_ctx *ctx, const char *fn, const char *file, const cJSON *offsets,
                               size_t data_len, st_entry *e)
{
    const char *name = e->name;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_uint(cJSON_GetArrayItem(offsets, 0), &e->begin) ||
        !json_uint(cJSON_GetArrayItem(offsets, 1), &e->end))
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: tensor \"%s\": data_offsets is not [begin, end] of non-negative "
                       "integers",
                       fn, file, name);
    if (e->begin > e->end || e->end > data_len)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: tensor \"%s\": data_offsets [%llu, %llu] out of range of the %zu "
                       "data bytes (truncated file?)",
                       fn, file, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                       data_len);
    unsigned size = st_dtypes[e->dtype].size;
    if (e->numel > ST_MAX_INT / size || e->end - e->begin != e->numel * size) {
        char sb[160];
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: tensor \"%s\" has %llu data bytes, but shape %s of %s needs %llu",
                       fn, file, name, (unsigned long long)(e->end - e->begin),
                       dims_str(e->dims, e->rank, sb, sizeof sb), st_dtypes[e->dtype].name,
                       (unsigned long long)(e->numel * size));
    }
    return ND_OK;
}

/* Fills e from the JSON object of one tensor; fn and file for messages. */
static nd_status parse_entry(nd_ctx *ctx, const char *fn, const char *file, const cJSON *j,
                             size_t data_len, st_entry *e)
{
    if (!cJSON_IsObject(j))
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\" is not a JSON object", fn, file,
                       e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing)
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has no \"%s\"", fn, file, e->name,
                       missing);
    nd_status st = entry_dtype(ctx, fn, file, dtype, e);
    if (!st) st = entry_shape(ctx, fn, file, shape, e);
    if (!st) st = entry_offsets(ctx, fn, file, offsets, data_len, e);
    return st;
}

/* The 8-byte length and the JSON header after it: f->root (a JSON object followed by nothing but
 * whitespace), f->data and f->data_len. */
static nd_status st_header(nd_ctx *ctx, const char *fn, const char *file, const uint8_t *buf,
                           size_t len, st_file *f)
{
    if (len < 8)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: file is %zu bytes, too short for the 8-byte header length", fn,
                       file, len);
    uint64_t hlen = get_le64(buf);
    if (hlen > len - 8)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: header length %llu exceeds the %zu bytes after it (truncated or "
                       "not a safetensors file)",
                       fn, file, (unsigned long long)hlen, len - 8);
    if (hlen > ST_MAX_HEADER)
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: header length %llu exceeds the %llu limit", fn,
                       file, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    const char *header = (const char *)buf + 8;
    if (hlen < 2 || header[0] != '{')
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: header does not start with a JSON object", fn,
                       file);
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(header, (size_t)hlen, &end, 0);
    if (!f->root) {
        size_t at = end && end >= header && end <= header + hlen ? (size_t)(end - header) : 0;
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: header is not valid JSON (near byte %zu of %llu)", fn, file, at,
                       (unsigned long long)hlen);
    }
    for (const char *p = end; p < header + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: header has bytes after its JSON object (at byte %zu)", fn, file,
                           (size_t)(p - header));
    if (!cJSON_IsObject(f->root))
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: header is not a JSON object", fn, file);
    f->data = buf + 8 + hlen;
    f->data_len = len - 8 - (size_t)hlen;
    return ND_OK;
}

/* f->meta from the "__metadata__" item: once at most, null or an object of strings */
static nd_status st_metadata(nd_ctx *ctx, const char *fn, const char *file, const cJSON *item,
                             st_file *f)
{
    if (f->meta)
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: \"__metadata__\" appears twice", fn, file);
    if (cJSON_IsNull(item)) return ND_OK;
    if (!cJSON_IsObject(item))
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: \"__metadata__\" is not an object", fn, file);
    const cJSON *m;
    cJSON_ArrayForEach(m, item)
    {
        if (!cJSON_IsString(m))
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: \"__metadata__\" value of \"%.64s\" is not a string", fn, file,
                           m->string ? m->string : "");
    }
    f->meta = item;
    return ND_OK;
}

/* f->entries (one per tensor, sorted by name, names unique) and f->meta from f->root */
static nd_status st_entries(nd_ctx *ctx, const char *fn, const char *file, st_file *f)
{
    int n_items = cJSON_GetArraySize(f->root);
    f->entries = calloc(n_items > 0 ? (size_t)n_items : 1, sizeof *f->entries);
    if (!f->entries)
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %d header entries", fn, file, n_items);
    const cJSON *item;
    cJSON_ArrayForEach(item, f->root)
    {
        const char *key = item->string ? item->string : "";
        nd_status st;
        if (strcmp(key, "__metadata__") == 0) {
            st = st_metadata(ctx, fn, file, item, f);
        } else {
            st_entry *e = &f->entries[f->n++];
            e->name = key;
            st = parse_entry(ctx, fn, file, item, f->data_len, e);
        }
        if (st) return st;
    }
    qsort(f->entries, (size_t)f->n, sizeof *f->entries, cmp_entry_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->entries[i - 1].name, f->entries[i].name) == 0)
            return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: tensor \"%s\" appears twice", fn, file,
                           f->entries[i].name);
    return ND_OK;
}

/* Walks the n tensors sorted by offset: each starts where the one before ends (from byte 0);
 * *covered is where the last one ends. */
static nd_status st_no_gaps(nd_ctx *ctx, const char *fn, const char *file,
                            const st_entry *const *by_offset, int n, uint64_t *covered)
{
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const st_entry *e = by_offset[i];
        if (e->begin < at)
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: tensor \"%s\" (bytes %llu to %llu) overlaps tensor \"%s\"", fn,
                           file, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                           by_offset[i - 1]->name);
        if (e->begin > at)
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: tensor \"%s\" starts at byte %llu, leaving a gap after byte "
                           "%llu",
                           fn, file, e->name, (unsigned long long)e->begin, (unsigned long long)at);
        at = e->end;
    }
    *covered = at;
    return ND_OK;
}

/* The tensors tile the data section exactly: from 0, no gaps, no overlaps, no slack. */
static nd_status st_tiling(nd_ctx *ctx, const char *fn, const char *file, const st_file *f)
{
    if (f->n == 0)
        return f->data_len == 0
                   ? ND_OK
                   : nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: %zu data bytes but no tensors", fn, file,
                             f->data_len);
    const st_entry **by_offset = malloc((size_t)f->n * sizeof *by_offset);
    if (!by_offset) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %d tensors", fn, file, f->n);
    for (int i = 0; i < f->n; i++) by_offset[i] = &f->entries[i];
    qsort(by_offset, (size_t)f->n, sizeof *by_offset, cmp_entry_ptr_offsets);
    uint64_t at = 0;
    nd_status st = st_no_gaps(ctx, fn, file, by_offset, f->n, &at);
    free(by_offset);
    if (st) return st;
    if (at != f->data_len)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: the tensors cover %llu data bytes but the file has %zu", fn, file,
                       (unsigned long long)at, f->data_len);
    return ND_OK;
}

/* Parses and validates the whole file buf[0..len). On success f owns the cJSON tree. */
static nd_status st_parse(nd_ctx *ctx, const char *fn, const char *file, const uint8_t *buf,
                          size_t len, st_file *f)
{
    memset(f, 0, sizeof *f);
    nd_status st = st_header(ctx, fn, file, buf, len, f);
    if (!st) st = st_entries(ctx, fn, file, f);
    if (!st) st = st_tiling(ctx, fn, file, f);
    if (st) st_file_free(f);
    return st;
}

/* Reads the whole file into a new buffer. */
static nd_status read_file(nd_ctx *ctx, const char *fn, const char *path, uint8_t **buf,
                           size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return nd_fail(ctx, ND_ERR_IO, "%s: %s: cannot open: %s", fn, path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        int err = errno;
        fclose(fp);
        return nd_fail(ctx, ND_ERR_IO, "%s: %s: cannot stat: %s", fn, path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        fclose(fp);
        return nd_fail(ctx, ND_ERR_IO, "%s: %s: not a regular file", fn, path);
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) {
        fclose(fp);
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: cannot hold its %zu bytes", fn, path, size);
    }
    size_t got = fread(b, 1, size, fp);
    int err = ferror(fp) ? errno : 0;
    fclose(fp);
    if (got != size) {
        free(b);
        return nd_fail(ctx, ND_ERR_IO, "%s: %s: read %zu of %zu bytes%s%s", fn, path, got, size,
                       err ? ": " : "", err ? strerror(err) : "");
    }
    *buf = b;
    *len = size;
    return ND_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The checkpoint: a file's bytes, read once, and its parse.
 */
struct nd_checkpoint {
    char *name;     /* the path, or the buffer's name, for messages (owned) */
    uint8_t *bytes; /* (len,) the whole file (owned) */
    size_t len;
    st_file f;     /* entries and data point into bytes and f.root */
    nd_meta *meta; /* (n_meta,) "__metadata__" entries, pointing into f.root */
    int n_meta;
};

void nd_checkpoint_destroy(nd_checkpoint *ck)
{
    if (!ck) return;
    st_file_free(&ck->f);
    free(ck->meta);
    free(ck->bytes);
    free(ck->name);
    free(ck);
}

/* ck->meta: the "__metadata__" entries of the parsed file, in file order. */
static nd_status list_meta(nd_ctx *ctx, const char *fn, nd_checkpoint *ck)
{
    if (!ck->f.meta) return ND_OK;
    int n = cJSON_GetArraySize(ck->f.meta);
    ck->meta = calloc(n > 0 ? (size_t)n : 1, sizeof *ck->meta);
    if (!ck->meta)
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %d metadata entries", fn, ck->name, n);
    const cJSON *m;
    cJSON_ArrayForEach(m, ck->f.meta)
    {
        const char *key = m->string ? m->string : "";
        ck->meta[ck->n_meta++] = (nd_meta){.key = key, .value = m->valuestring};
    }
    return ND_OK;
}

/* Takes ownership of bytes (freed on failure too), parses them and lists the metadata. */
static nd_status checkpoint_from_bytes(nd_ctx *ctx, const char *fn, const char *name,
                                       uint8_t *bytes, size_t len, nd_checkpoint **out)
{
    *out = NULL;
    nd_checkpoint *ck = calloc(1, sizeof *ck);
    char *copy = ck ? malloc(strlen(name) + 1) : NULL;
    if (!copy) {
        free(ck);
        free(bytes);
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: checkpoint", fn, name);
    }
    ck->name = strcpy(copy, name);
    ck->bytes = bytes, ck->len = len;
    nd_status st = st_parse(ctx, fn, name, bytes, len, &ck->f);
    if (!st) st = list_meta(ctx, fn, ck);
    if (st) {
        nd_checkpoint_destroy(ck);
        return st;
    }
    *out = ck;
    return ND_OK;
}

static nd_status checkpoint_read(nd_ctx *ctx, const char *fn, const char *path, nd_checkpoint **out)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    nd_status st = read_file(ctx, fn, path, &buf, &len);
    if (st) return st;
    return checkpoint_from_bytes(ctx, fn, path, buf, len, out);
}

nd_status nd_checkpoint_read(nd_ctx *ctx, const char *path, nd_checkpoint **out)
{
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "nd_checkpoint_read: out is NULL");
    *out = NULL;
    if (!path) return nd_fail(ctx, ND_ERR_ARG, "nd_checkpoint_read: path is NULL");
    return checkpoint_read(ctx, "nd_checkpoint_read", path, out);
}

nd_status nd_checkpoint_parse(nd_ctx *ctx, const char *name, const void *buf, size_t len,
                              nd_checkpoint **out)
{
    const char *fn = "nd_checkpoint_parse";
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!name) name = "(buffer)";
    if (!buf && len) return nd_fail(ctx, ND_ERR_ARG, "%s: %s: NULL buffer", fn, name);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: cannot copy its %zu bytes", fn, name, len);
    if (len) memcpy(copy, buf, len);
    return checkpoint_from_bytes(ctx, fn, name, copy, len, out);
}

/* ---------------------------------------------------------------------------------------------
 * Metadata.
 */
const nd_meta *nd_checkpoint_meta_list(const nd_checkpoint *ck, int *n)
{
    if (n) *n = ck ? ck->n_meta : 0;
    return ck ? ck->meta : NULL;
}

const char *nd_checkpoint_meta(const nd_checkpoint *ck, const char *key)
{
    for (int i = 0; ck && key && i < ck->n_meta; i++)
        if (strcmp(ck->meta[i].key, key) == 0) return ck->meta[i].value;
    return NULL;
}

/* The value of key for the parsers below; NULL (error recorded) when it is absent. */
static const char *meta_value(nd_ctx *ctx, const char *fn, const nd_checkpoint *ck, const char *key,
                              const void *out)
{
    if (!ck || !key || !out) {
        nd_fail(ctx, ND_ERR_ARG, "%s: NULL checkpoint, key or output", fn);
        return NULL;
    }
    const char *v = nd_checkpoint_meta(ck, key);
    if (!v) nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: no metadata key \"%s\"", fn, ck->name, key);
    return v;
}

nd_status nd_checkpoint_meta_double(nd_ctx *ctx, const nd_checkpoint *ck, const char *key,
                                    double *out)
{
    const char *fn = "nd_checkpoint_meta_double";
    const char *v = meta_value(ctx, fn, ck, key, out);
    if (!v) return nd_ctx_error(ctx);
    if (!nd_parse_double(v, out))
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: metadata \"%s\" is \"%.64s\", not a finite number", fn, ck->name,
                       key, v);
    return ND_OK;
}

nd_status nd_checkpoint_meta_long(nd_ctx *ctx, const nd_checkpoint *ck, const char *key, long *out)
{
    const char *fn = "nd_checkpoint_meta_long";
    const char *v = meta_value(ctx, fn, ck, key, out);
    if (!v) return nd_ctx_error(ctx);
    if (!nd_parse_long(v, out))
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: metadata \"%s\" is \"%.64s\", not an integer in [%ld, %ld]", fn,
                       ck->name, key, v, LONG_MIN, LONG_MAX);
    return ND_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Load.
 */
static nd_status check_list(nd_ctx *ctx, const char *fn, const char *file, const nd_param *params,
                            int n)
{
    if (n < 0 || (n > 0 && !params))
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s: bad parameter list (%d entries, %s)", fn, file, n,
                       params ? "non-NULL" : "NULL");
    for (int i = 0; i < n; i++) {
        const nd_tensor *t = params[i].tensor;
        if (!params[i].name || !params[i].name[0])
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s: parameter %d has no name", fn, file, i);
        if (!t || !t->data || t->ndim < 0 || t->ndim > ND_MAX_DIMS)
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s: parameter \"%s\" has no tensor", fn, file,
                           params[i].name);
    }
    return ND_OK;
}

/* true when the file's bytes are nd_real's bytes: a plain memcpy will do */
static bool native_layout(int dtype)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return sizeof(nd_real) == st_dtypes[dtype].size;
#else
    (void)dtype;
    return false;
#endif
}

static double get_f64(const uint8_t *p)
{
    uint64_t bits = get_le64(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static float get_f32(const uint8_t *p)
{
    uint32_t bits = get_le32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void copy_in(nd_tensor *t, const st_entry *e, const uint8_t *data)
{
    const uint8_t *p = data + e->begin;
    if (native_layout(e->dtype))
        memcpy(t->data, p, t->size * sizeof *t->data);
    else if (e->dtype == ST_F64)
        for (size_t i = 0; i < t->size; i++) t->data[i] = (nd_real)get_f64(p + 8 * i);
    else
        for (size_t i = 0; i < t->size; i++) t->data[i] = (nd_real)get_f32(p + 4 * i);
}

/* The first element of e that is not finite as an nd_real (NaN, an infinity, or an F64 beyond
 * the range of a float build's nd_real): true with its flat index and value, else false. */
static bool find_nonfinite(const st_entry *e, const uint8_t *data, uint64_t *at, double *value)
{
    const uint8_t *p = data + e->begin;
    const double max = sizeof(nd_real) == sizeof(float) ? FLT_MAX : DBL_MAX;
    for (uint64_t i = 0; i < e->numel; i++) {
        double v = e->dtype == ST_F64 ? get_f64(p + 8 * i) : (double)get_f32(p + 4 * i);
        if (!(fabs(v) <= max)) {
            *at = i, *value = v;
            return true;
        }
    }
    return false;
}

/* "[1, 2]": the index of flat element at in a tensor of the entry's shape. */
static const char *index_str(const st_entry *e, uint64_t at, char *buf, size_t cap)
{
    uint64_t idx[ST_MAX_RANK];
    for (int d = e->rank - 1; d >= 0; d--) {
        idx[d] = e->dims[d] ? at % e->dims[d] : 0;
        at = e->dims[d] ? at / e->dims[d] : 0;
    }
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < e->rank && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? ", %llu" : "%llu", (unsigned long long)idx[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* The entry for params[i] (NULL when absent and allowed), after its checks. */
static nd_status match_param(nd_ctx *ctx, const char *fn, const nd_checkpoint *ck,
                             const nd_param *p, const nd_load_options *o, const st_entry **match)
{
    const st_file *f = &ck->f;
    const char *file = ck->name, *name = p->name;
    const nd_tensor *t = p->tensor;
    st_entry key = {.name = name};
    const st_entry *e = bsearch(&key, f->entries, (size_t)f->n, sizeof *f->entries, cmp_entry_name);
    *match = NULL;
    if (!e)
        return o->strict ? nd_fail(ctx, ND_ERR_FORMAT,
                                   "%s: %s: tensor \"%s\" is missing (strict load)", fn, file, name)
                         : ND_OK;
    if (!st_dtypes[e->dtype].loadable)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: tensor \"%s\" has dtype %s; nodal loads F32 and F64 only", fn, file,
                       name, st_dtypes[e->dtype].name);
    bool same = e->rank == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = e->dims[d] == (uint64_t)t->shape[d];
    if (!same) {
        char have[160], want[64];
        return nd_fail(ctx, ND_ERR_SHAPE, "%s: %s: tensor \"%s\" has shape %s, expected %s", fn,
                       file, name, dims_str(e->dims, e->rank, have, sizeof have),
                       nd_shape_str(t, want));
    }
    uint64_t at;
    double v;
    if (!o->allow_nonfinite && find_nonfinite(e, f->data, &at, &v)) {
        char ib[ST_MAX_RANK * 22 + 4];
        return nd_fail(ctx, ND_ERR_NONFINITE,
                       "%s: %s: tensor \"%s\" has a non-finite value %g at element %llu %s; "
                       "nothing was loaded (nd_load_options.allow_nonfinite loads it)",
                       fn, file, name, v, (unsigned long long)at, index_str(e, at, ib, sizeof ib));
    }
    *match = e;
    return ND_OK;
}

static nd_status load_parsed(nd_ctx *ctx, const char *fn, const nd_checkpoint *ck,
                             const nd_param *params, int n, const nd_load_options *opts,
                             int *n_loaded)
{
    nd_load_options o = opts ? *opts : ND_LOAD_DEFAULT;
    const st_file *f = &ck->f;
    const st_entry **match = calloc(n > 0 ? (size_t)n : 1, sizeof *match);
    bool *used = calloc(f->n > 0 ? (size_t)f->n : 1, sizeof *used);
    nd_status st = ND_OK;
    if (!match || !used) st = nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %d parameters", fn, ck->name, n);
    int found = 0;
    for (int i = 0; i < n && !st; i++) {
        st = match_param(ctx, fn, ck, &params[i], &o, &match[i]);
        if (match[i]) used[match[i] - f->entries] = true, found++;
    }
    for (int i = 0; i < f->n && !st && o.reject_unused; i++)
        if (!used[i])
            st = nd_fail(ctx, ND_ERR_FORMAT,
                         "%s: %s: tensor \"%s\" is in the file but not in the list", fn, ck->name,
                         f->entries[i].name);
    /* everything checked: now, and only now, write into the tensors */
    if (!st)
        for (int i = 0; i < n; i++)
            if (match[i]) copy_in(params[i].tensor, match[i], f->data);
    free(match);
    free(used);
    if (n_loaded) *n_loaded = st ? 0 : found;
    return st;
}

nd_status nd_checkpoint_load(nd_ctx *ctx, const nd_checkpoint *ck, const nd_param *params, int n,
                             const nd_load_options *opts, int *n_loaded)
{
    const char *fn = "nd_checkpoint_load";
    if (n_loaded) *n_loaded = 0;
    if (!ck) return nd_fail(ctx, ND_ERR_ARG, "%s: checkpoint is NULL", fn);
    nd_status st = check_list(ctx, fn, ck->name, params, n);
    if (st) return st;
    return load_parsed(ctx, fn, ck, params, n, opts, n_loaded);
}

nd_status nd_load(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                  const nd_load_options *opts)
{
    const char *fn = "nd_load";
    if (!path) return nd_fail(ctx, ND_ERR_ARG, "%s: path is NULL", fn);
    nd_status st = check_list(ctx, fn, path, params, n);
    if (st) return st;
    nd_checkpoint *ck;
    st = checkpoint_read(ctx, fn, path, &ck);
    if (st) return st;
    st = load_parsed(ctx, fn, ck, params, n, opts, NULL);
    nd_checkpoint_destroy(ck);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Save.
 */
static int cmp_param_ptr_name(const void *a, const void *b)
{
    return strcmp((*(const nd_param *const *)a)->name, (*(const nd_param *const *)b)->name);
}

/* The JSON header for the sorted list, padded with spaces to a multiple of 8. */
static char *build_header(const nd_param *const *sorted, int n, const nd_save_options *o, int dtype,
                          size_t *hlen)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    bool ok = true;
    if (o->n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; ok && i < o->n_meta; i++)
            ok = meta && cJSON_AddStringToObject(meta, o->meta[i].key, o->meta[i].value);
    }
    uint64_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        const nd_tensor *t = sorted[i]->tensor;
        /* key order as the reference writes it: dtype, shape, data_offsets */
        cJSON *e = cJSON_AddObjectToObject(root, sorted[i]->name);
        ok = e && cJSON_AddStringToObject(e, "dtype", st_dtypes[dtype].name);
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL, *offsets = NULL;
        ok = shape != NULL;
        for (int d = 0; ok && d < t->ndim; d++) {
            cJSON *v = cJSON_CreateNumber(t->shape[d]);
            ok = v && cJSON_AddItemToArray(shape, v);
        }
        uint64_t bytes = (uint64_t)t->size * st_dtypes[dtype].size;
        if (ok) offsets = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON *b = offsets ? cJSON_CreateNumber((double)at) : NULL;
        ok = b && cJSON_AddItemToArray(offsets, b);
        cJSON *en = ok ? cJSON_CreateNumber((double)(at + bytes)) : NULL;
        ok = en && cJSON_AddItemToArray(offsets, en);
        at += bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    char *out = realloc(json, padded + 1);
    if (!out) {
        cJSON_free(json); /* cJSON allocates with malloc unless hooks are installed */
        return NULL;
    }
    memset(out + len, ' ', padded - len);
    out[padded] = '\0';
    *hlen = padded;
    return out;
}

static bool write_data(FILE *fp, const nd_tensor *t, int dtype)
{
    if (native_layout(dtype)) return fwrite(t->data, sizeof *t->data, t->size, fp) == t->size;
    uint8_t buf[ST_CHUNK * 8];
    for (size_t i = 0; i < t->size;) {
        size_t m = t->size - i < ST_CHUNK ? t->size - i : ST_CHUNK, nbytes;
        if (dtype == ST_F64) {
            for (size_t k = 0; k < m; k++) {
                double v = (double)t->data[i + k];
                uint64_t bits;
                memcpy(&bits, &v, sizeof bits);
                put_le64(buf + 8 * k, bits);
            }
            nbytes = 8 * m;
        } else {
            for (size_t k = 0; k < m; k++) {
                float v = (float)t->data[i + k];
                uint32_t bits;
                memcpy(&bits, &v, sizeof bits);
                put_le32(buf + 4 * k, bits);
            }
            nbytes = 4 * m;
        }
        if (fwrite(buf, 1, nbytes, fp) != nbytes) return false;
        i += m;
    }
    return true;
}

/* Creates a new temporary file beside path (O_EXCL, so never someone else's). */
static int open_temp(const char *path, char *tmp, size_t cap)
{
    static unsigned counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        int w = snprintf(tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), c);
        if (w < 0 || (size_t)w >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/* fsync the directory holding path, so the rename itself is durable. Best effort. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* The file dtype the options ask for (ND_DTYPE_NATIVE: that of nd_real) */
static nd_status save_dtype(nd_ctx *ctx, const char *fn, const char *path, nd_dtype want,
                            int *dtype)
{
    if (want != ND_DTYPE_NATIVE && want != ND_DTYPE_F32 && want != ND_DTYPE_F64)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s: unknown dtype %d", fn, path, (int)want);
    *dtype = want == ND_DTYPE_F32   ? ST_F32
             : want == ND_DTYPE_F64 ? ST_F64
             : sizeof(nd_real) == 4 ? ST_F32
                                    : ST_F64;
    return ND_OK;
}

/* The metadata list: valid UTF-8 keys and values, no key twice */
static nd_status check_meta(nd_ctx *ctx, const char *fn, const char *path, const nd_save_options *o)
{
    if (o->n_meta < 0 || (o->n_meta > 0 && !o->meta))
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s: bad metadata list", fn, path);
    for (int i = 0; i < o->n_meta; i++) {
        const char *k = o->meta[i].key, *v = o->meta[i].value;
        if (!k || !v || !utf8_valid(k) || !utf8_valid(v))
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s: metadata entry %d is NULL or not UTF-8", fn,
                           path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(o->meta[j].key, k) == 0)
                return nd_fail(ctx, ND_ERR_ARG, "%s: %s: metadata key \"%s\" appears twice", fn,
                               path, k);
    }
    return ND_OK;
}

/* Parameter names allowed (UTF-8, not "__metadata__") and the data small enough for the format */
static nd_status check_names_and_size(nd_ctx *ctx, const char *fn, const char *path,
                                      const nd_param *params, int n, int dtype)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *name = params[i].name;
        if (!utf8_valid(name) || strcmp(name, "__metadata__") == 0)
            return nd_fail(ctx, ND_ERR_ARG, "%s: %s: parameter name \"%s\" is not allowed%s", fn,
                           path, name, utf8_valid(name) ? " (reserved)" : " (not UTF-8)");
        total += (uint64_t)params[i].tensor->size * st_dtypes[dtype].size;
    }
    if (total >= ST_MAX_INT)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s: %llu data bytes is too large", fn, path,
                       (unsigned long long)total);
    return ND_OK;
}

/* *sorted (malloc'd, n pointers into params) in name order; fails on a name given twice */
static nd_status sort_params(nd_ctx *ctx, const char *fn, const char *path, const nd_param *params,
                             int n, const nd_param ***sorted)
{
    const nd_param **s = malloc((n > 0 ? (size_t)n : 1) * sizeof *s);
    if (!s) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %d parameters", fn, path, n);
    for (int i = 0; i < n; i++) s[i] = &params[i];
    qsort(s, (size_t)n, sizeof *s, cmp_param_ptr_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
            nd_status st = nd_fail(ctx, ND_ERR_ARG, "%s: %s: parameter name \"%s\" appears twice",
                                   fn, path, s[i]->name);
            free(s);
            return st;
        }
    }
    *sorted = s;
    return ND_OK;
}

/* Writes the length, header and data to fd, then flushes, syncs and closes it (always). Returns
 * the step that failed ("fdopen", "write", "flush", "fsync", "close") with errno in *err, or NULL.
 */
static const char *write_fd(int fd, const char *header, size_t hlen, const nd_param *const *sorted,
                            int n, int dtype, int *err)
{
    uint8_t len8[8];
    put_le64(len8, hlen);
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        *err = errno;
        close(fd);
        return "fdopen";
    }
    const char *failed = NULL;
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(header, 1, hlen, fp) != hlen)
        failed = "write", *err = errno;
    for (int i = 0; !failed && i < n; i++)
        if (!write_data(fp, sorted[i]->tensor, dtype)) failed = "write", *err = errno;
    if (!failed && fflush(fp) != 0) failed = "flush", *err = errno;
    if (!failed && fsync(fileno(fp)) != 0) failed = "fsync", *err = errno;
    if (fclose(fp) != 0 && !failed) failed = "close", *err = errno;
    return failed;
}

/* The file written under a temporary name beside path, then renamed over it: the first step that
 * fails names the error, and any existing file stays untouched. */
static nd_status write_atomic(nd_ctx *ctx, const char *fn, const char *path, const char *header,
                              size_t hlen, const nd_param *const *sorted, int n, int dtype)
{
    char tmp[PATH_MAX + 64];
    int fd = open_temp(path, tmp, sizeof tmp);
    if (fd < 0)
        return nd_fail(ctx, ND_ERR_IO, "%s: %s: cannot create a temporary file beside it: %s", fn,
                       path, strerror(errno));
    int err = 0;
    const char *failed = write_fd(fd, header, hlen, sorted, n, dtype, &err);
    if (!failed && rename(tmp, path) != 0) failed = "rename", err = errno;
    if (failed) {
        unlink(tmp);
        return nd_fail(ctx, ND_ERR_IO, "%s: %s: %s failed: %s (any existing file is untouched)", fn,
                       path, failed, strerror(err));
    }
    sync_dir(path);
    return ND_OK;
}

nd_status nd_save(nd_ctx *ctx, const char *path, const nd_param *params, int n,
                  const nd_save_options *opts)
{
    const char *fn = "nd_save";
    if (!path || !path[0]) return nd_fail(ctx, ND_ERR_ARG, "%s: empty path", fn);
    nd_save_options o = opts ? *opts : ND_SAVE_DEFAULT;
    int dtype = ST_F64;
    nd_status st = save_dtype(ctx, fn, path, o.dtype, &dtype);
    if (!st) st = check_list(ctx, fn, path, params, n);
    if (!st) st = check_meta(ctx, fn, path, &o);
    if (!st) st = check_names_and_size(ctx, fn, path, params, n, dtype);
    const nd_param **sorted = NULL;
    if (!st) st = sort_params(ctx, fn, path, params, n, &sorted);
    if (st) return st;
    size_t hlen = 0;
    char *header = build_header(sorted, n, &o, dtype, &hlen);
    if (header)
        st = write_atomic(ctx, fn, path, header, hlen, sorted, n, dtype);
    else
        st = nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: cannot build the JSON header", fn, path);
    free(header);
    free(sorted);
    return st;
}

/* SPDX-License-Identifier: MIT
 * io/idx.c: the IDX reader (MNIST, Fashion-MNIST, ...). zlib's gzread reads plain and gzip files
 * alike. The header is checked before any large allocation, and the data buffer grows only as
 * bytes actually arrive, so a file that claims huge dims but is short fails cheaply.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "io/idx_internal.h"

#define IDX_FIRST_CHUNK ((size_t)1 << 20)

static const char *item_type_name(unsigned t)
{
    switch (t) {
    case 0x08:
        return "unsigned byte";
    case 0x09:
        return "signed byte";
    case 0x0B:
        return "short";
    case 0x0C:
        return "int";
    case 0x0D:
        return "float";
    case 0x0E:
        return "double";
    default:
        return "unknown";
    }
}

/* Reads up to n bytes; returns how many, or -1 if zlib reports an error (corrupt gzip). */
static long long read_some(gzFile gz, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < (size_t)INT_MAX ? n - got : (size_t)INT_MAX;
        int r = gzread(gz, buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* zlib's text for the error that stopped gz ("" if none), without the "path: " zlib puts
 * in front, since our messages name the file already. */
static const char *gz_why(gzFile gz, const char *path, int *code)
{
    const char *msg = gzerror(gz, code);
    if (*code == Z_OK || !msg) return "";
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

/* The error after gzread returned -1: a read error (Z_ERRNO) or corrupt gzip data. */
static nd_status corrupt(nd_ctx *ctx, const char *fn, const char *path, gzFile gz)
{
    int code = Z_OK;
    const char *msg = gz_why(gz, path, &code);
    if (code == Z_ERRNO) return nd_fail(ctx, ND_ERR_IO, "%s: %s: read error: %s", fn, path, msg);
    return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: corrupt gzip data: %s", fn, path, msg);
}

static nd_status read_header(nd_ctx *ctx, const char *fn, const char *path, gzFile gz,
                             int ndim_expected, nd_idx *out)
{
    uint8_t m[4];
    long long got = read_some(gz, m, 4);
    if (got < 0) return corrupt(ctx, fn, path, gz);
    if (got < 4)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: file is %lld bytes, too short for the 4-byte magic number", fn,
                       path, got);
    unsigned magic = (unsigned)m[0] << 24 | (unsigned)m[1] << 16 | (unsigned)m[2] << 8 | m[3];
    if (m[0] || m[1])
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: bad magic number 0x%08x (an IDX file starts with two zero bytes)",
                       fn, path, magic);
    if (m[2] != 0x08)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: magic 0x%08x: item type 0x%02x (%s) is not supported; nodal reads "
                       "unsigned bytes (0x08)",
                       fn, path, magic, m[2], item_type_name(m[2]));
    int ndim = m[3];
    if (ndim < 1 || ndim > ND_IDX_MAX_DIMS)
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: magic 0x%08x: %d dims (1 to %d supported)", fn,
                       path, magic, ndim, ND_IDX_MAX_DIMS);
    if (ndim_expected && ndim != ndim_expected)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: magic 0x%08x has %d dims, expected %d (magic 0x%08x)", fn, path,
                       magic, ndim, ndim_expected, 0x0800u | (unsigned)ndim_expected);

    uint8_t d[4 * ND_IDX_MAX_DIMS];
    got = read_some(gz, d, 4 * (size_t)ndim);
    if (got < 0) return corrupt(ctx, fn, path, gz);
    if (got < 4 * ndim)
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: truncated header: expected %d bytes of dims, found %lld", fn, path,
                       4 * ndim, got);
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *p = d + 4 * i;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (v == 0 || v > INT_MAX)
            return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: dim %d is %u (must be 1 to %d)", fn, path,
                           i, v, INT_MAX);
        if (size > ND_IDX_MAX_BYTES / v)
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: dims describe more than %zu bytes (implausible)", fn, path,
                           ND_IDX_MAX_BYTES);
        size *= v;
        out->dims[i] = (int)v;
    }
    out->ndim = ndim;
    out->size = size;
    return ND_OK;
}

/* Reads exactly out->size bytes, growing the buffer as data arrives, then checks that nothing
 * follows (which also makes zlib verify the gzip trailer's CRC). */
static nd_status read_data(nd_ctx *ctx, const char *fn, const char *path, gzFile gz, nd_idx *out)
{
    size_t size = out->size, cap = size < IDX_FIRST_CHUNK ? size : IDX_FIRST_CHUNK, got = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %zu bytes", fn, path, cap);
    while (got < size) {
        if (got == cap) {
            size_t ncap = cap > size / 2 ? size : 2 * cap;
            uint8_t *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                free(buf);
                return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s: %zu bytes", fn, path, ncap);
            }
            buf = nbuf, cap = ncap;
        }
        long long r = read_some(gz, buf + got, cap - got);
        if (r < 0) {
            free(buf);
            return corrupt(ctx, fn, path, gz);
        }
        got += (size_t)r;
        if (got < cap) break; /* end of file */
    }
    if (got < size) {
        int code = Z_OK;
        const char *why = gz_why(gz, path, &code);
        free(buf);
        return nd_fail(ctx, ND_ERR_FORMAT,
                       "%s: %s: truncated: expected %zu bytes of data, found %zu%s%s", fn, path,
                       size, got, why[0] ? "; " : "", why);
    }
    uint8_t extra;
    long long r = read_some(gz, &extra, 1);
    int code = Z_OK;
    const char *why = gz_why(gz, path, &code);
    if (r != 0 || code != Z_OK) {
        free(buf);
        if (r < 0) return corrupt(ctx, fn, path, gz);
        if (r > 0)
            return nd_fail(ctx, ND_ERR_FORMAT,
                           "%s: %s: trailing data after the %zu bytes its dims describe", fn, path,
                           size);
        /* all the data arrived but the gzip trailer (CRC and length) did not */
        return nd_fail(ctx, ND_ERR_FORMAT, "%s: %s: truncated gzip stream: %s", fn, path, why);
    }
    out->data = buf;
    return ND_OK;
}

nd_status nd_idx_read_as(nd_ctx *ctx, const char *fn, const char *path, int ndim_expected,
                         nd_idx *out)
{
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: output is NULL", fn);
    memset(out, 0, sizeof *out);
    if (!path) return nd_fail(ctx, ND_ERR_ARG, "%s: path is NULL", fn);
    if (ndim_expected < 0 || ndim_expected > ND_IDX_MAX_DIMS)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s: expected dims %d (0 to %d)", fn, path,
                       ndim_expected, ND_IDX_MAX_DIMS);
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return nd_fail(ctx, errno ? ND_ERR_IO : ND_ERR_NOMEM, "%s: %s: cannot open: %s", fn, path,
                       errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1 << 17);
    nd_status st = read_header(ctx, fn, path, gz, ndim_expected, out);
    if (!st) st = read_data(ctx, fn, path, gz, out);
    gzclose(gz);
    if (st) memset(out, 0, sizeof *out);
    return st;
}

nd_status nd_idx_read(nd_ctx *ctx, const char *path, int ndim_expected, nd_idx *out)
{
    return nd_idx_read_as(ctx, "nd_idx_read", path, ndim_expected, out);
}

void nd_idx_destroy(nd_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* SPDX-License-Identifier: MIT
 * fuzz/fuzz_idx.c: libFuzzer target for the IDX reader (plain and gzip) and the dataset code
 * behind it. The input is read whole by nd_idx_read, then split in two (the first two bytes give
 * the split point) into an images and a labels file for nd_dataset_load_idx; a dataset that loads
 * is batched for one epoch, split and limited. Files are memfds: no disk. Built by fuzz/run.sh.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/io.h"

static nd_ctx *ctx;
static int fd_a = -1, fd_b = -1;
static char path_a[64], path_b[64];

static void init(void)
{
    ctx = nd_ctx_create(0);
    fd_a = memfd_create("fuzz_idx_a", 0);
    fd_b = memfd_create("fuzz_idx_b", 0);
    snprintf(path_a, sizeof path_a, "/proc/self/fd/%d", fd_a);
    snprintf(path_b, sizeof path_b, "/proc/self/fd/%d", fd_b);
}

static int put(int fd, const uint8_t *data, size_t size)
{
    return ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size;
}

static void exercise(nd_dataset *ds)
{
    size_t pix = (size_t)ds->rows * (size_t)ds->cols;
    if (pix > 4096 || ds->n_classes > 256) return;
    enum { B = 3 };
    nd_tensor *x = nd_tensor_create(ctx, 2, (int[]){B, (int)pix}, false);
    nd_tensor *y = nd_tensor_create(ctx, 2, (int[]){B, ds->n_classes}, false);
    nd_loader *ld = NULL;
    int labels[B];
    if (x && y && nd_loader_create(ctx, ds, B, true, false, 1, &ld) == ND_OK) {
        int m, total = 0;
        nd_status st;
        while ((st = nd_loader_next(ctx, ld, x, y, labels, &m)) == ND_OK && m > 0) {
            for (int i = 0; i < m; i++)
                if (x->data[i * (int)pix] < 0 || x->data[i * (int)pix] > 1) abort();
            total += m;
        }
        if (st != ND_OK || total != ds->n) abort();
    }
    nd_loader_destroy(ld);
    nd_tensor_destroy(x);
    nd_tensor_destroy(y);
    nd_rng rng = nd_rng_seed(2);
    nd_dataset *tr = NULL, *va = NULL;
    if (ds->n >= 2 && nd_dataset_split(ctx, ds, 1, &rng, &tr, &va) == ND_OK) {
        if (tr->n + va->n != ds->n) abort();
    }
    nd_dataset_destroy(tr);
    nd_dataset_destroy(va);
    nd_dataset_limit(ctx, ds, 1 + ds->n / 2, &rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) init();
    if (fd_a < 0 || fd_b < 0) return 0;
    nd_ctx_clear_error(ctx);
    nd_idx idx;
    if (put(fd_a, data, size)) {
        nd_status st = nd_idx_read(ctx, path_a, 0, &idx);
        if (st == ND_OK && (idx.ndim < 1 || !idx.data)) abort();
        if (st != ND_OK && (idx.data || !nd_ctx_errmsg(ctx)[0])) abort();
        nd_idx_destroy(&idx);
    }
    if (size < 2) return 0;
    size_t split = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 1);
    const uint8_t *rest = data + 2;
    size_t n = size - 2;
    if (split > n) split = n;
    nd_ctx_clear_error(ctx);
    if (put(fd_a, rest, split) && put(fd_b, rest + split, n - split)) {
        nd_dataset *ds = NULL;
        if (nd_dataset_load_idx(ctx, path_a, path_b, &ds) == ND_OK)
            exercise(ds);
        else if (ds)
            abort();
        nd_dataset_destroy(ds);
    }
    return 0;
}

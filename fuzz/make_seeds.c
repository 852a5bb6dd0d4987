/* SPDX-License-Identifier: MIT
 * fuzz/make_seeds.c: writes small seed corpora for the fuzz targets (fuzz/run.sh builds and runs
 * it), so no corpus is committed: valid safetensors files made by nd_save (F64, F32, metadata,
 * subsets) and IDX inputs, plain and gzip, in fuzz_idx's "2-byte split + images + labels" form.
 *   make_seeds SAFETENSORS_DIR IDX_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "io/io.h"

static char out_path[1024];

static const char *at(const char *dir, const char *name)
{
    snprintf(out_path, sizeof out_path, "%s/%s", dir, name);
    return out_path;
}

static void safetensors_seeds(nd_ctx *ctx, const char *dir)
{
    int shapes[5][4] = {{2}, {2, 2}, {0}, {4, 3}, {1, 2, 1, 3}};
    int ndims[5] = {1, 2, 0, 2, 4};
    const char *names[5] = {"a", "b", "s", "0.weight", "opt.exp_avg.0.weight"};
    nd_param p[5];
    for (int i = 0; i < 5; i++) {
        nd_tensor *t = nd_tensor_create(ctx, ndims[i], shapes[i], false);
        for (size_t k = 0; k < t->size; k++) t->data[k] = (nd_real)(0.5 * (double)k - i);
        p[i] = (nd_param){names[i], t};
    }
    nd_meta meta[] = {{"format", "pt"}, {"epoch", "3"}};
    nd_save_options f64 = {.dtype = ND_DTYPE_F64}, f32 = {.dtype = ND_DTYPE_F32};
    nd_save_options with_meta = {.dtype = ND_DTYPE_F64, .meta = meta, .n_meta = 2};
    nd_save(ctx, at(dir, "all_f64.safetensors"), p, 5, &f64);
    nd_save(ctx, at(dir, "all_f32.safetensors"), p, 5, &f32);
    nd_save(ctx, at(dir, "meta.safetensors"), p, 2, &with_meta);
    nd_save(ctx, at(dir, "one.safetensors"), p + 3, 1, &f64);
    nd_save(ctx, at(dir, "empty.safetensors"), NULL, 0, &with_meta);
    for (int i = 0; i < 5; i++) nd_tensor_destroy(p[i].tensor);
}

static void write_file(const char *path, const uint8_t *b, size_t n, int gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb9");
        if (g) gzwrite(g, b, (unsigned)n), gzclose(g);
    } else {
        FILE *fp = fopen(path, "wb");
        if (fp) fwrite(b, 1, n, fp), fclose(fp);
    }
}

/* gzip bytes of b[0..n) in memory (through a temporary file, to keep to the gz* API). */
static size_t gz_bytes(const char *tmp, const uint8_t *b, size_t n, uint8_t *out, size_t cap)
{
    write_file(tmp, b, n, 1);
    FILE *fp = fopen(tmp, "rb");
    size_t got = fp ? fread(out, 1, cap, fp) : 0;
    if (fp) fclose(fp);
    remove(tmp);
    return got;
}

static void idx_seeds(const char *dir)
{
    /* images 3 x 2 x 2 and labels 3 */
    uint8_t img[4 + 12 + 12] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    for (int i = 0; i < 12; i++) img[16 + i] = (uint8_t)(i * 21);
    uint8_t lab[4 + 4 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 7, 9};
    uint8_t buf[4096], gzi[2048], gzl[2048];
    for (int gz = 0; gz < 2; gz++) {
        const uint8_t *pi = img, *pl = lab;
        size_t ni = sizeof img, nl = sizeof lab;
        if (gz) {
            ni = gz_bytes(at(dir, "tmp.gz"), img, sizeof img, gzi, sizeof gzi), pi = gzi;
            nl = gz_bytes(at(dir, "tmp.gz"), lab, sizeof lab, gzl, sizeof gzl), pl = gzl;
        }
        buf[0] = (uint8_t)ni, buf[1] = (uint8_t)(ni >> 8);
        memcpy(buf + 2, pi, ni);
        memcpy(buf + 2 + ni, pl, nl);
        write_file(at(dir, gz ? "dataset_gz" : "dataset_plain"), buf, 2 + ni + nl, 0);
        write_file(at(dir, gz ? "images_gz" : "images_plain"), pi, ni, 0);
    }
    /* a 4-dim file and a float-typed one */
    uint8_t four[4 + 16 + 2] = {0, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 5, 6};
    write_file(at(dir, "four_dims"), four, sizeof four, 0);
    uint8_t flt[4 + 4 + 4] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0x3f, 0x80, 0, 0};
    write_file(at(dir, "float_items"), flt, sizeof flt, 0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SAFETENSORS_DIR IDX_DIR\n", argv[0]);
        return 2;
    }
    nd_ctx *ctx = nd_ctx_create(0);
    safetensors_seeds(ctx, argv[1]);
    idx_seeds(argv[2]);
    int failed = nd_ctx_error(ctx) != ND_OK;
    if (failed) fprintf(stderr, "make_seeds: %s\n", nd_ctx_errmsg(ctx));
    nd_ctx_destroy(ctx);
    return failed;
}

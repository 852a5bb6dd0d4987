/* SPDX-License-Identifier: MIT
 * fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors loader. Each input is parsed from
 * memory (nd_checkpoint_parse, then nd_checkpoint_load and the metadata getters) and read from a
 * file (an in-memory memfd, through nd_load and nd_checkpoint_read), in strict and lenient modes,
 * with and without non-finite values allowed, into a fixed set of tensors. A failed load must
 * leave them untouched; ASan/UBSan catch the rest. Build and run with fuzz/run.sh.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/io.h"

enum { N_TARGETS = 5 };
static nd_ctx *ctx;
static nd_param params[N_TARGETS];
static int memfd = -1;
static char path[64];

static void init(void)
{
    ctx = nd_ctx_create(0);
    static const struct {
        const char *name;
        int ndim, shape[4];
    } spec[N_TARGETS] = {
        {"a", 1, {2}},
        {"b", 2, {2, 2}},
        {"s", 0, {0}},
        {"0.weight", 2, {4, 3}},
        {"opt.exp_avg.0.weight", 4, {1, 2, 1, 3}},
    };
    for (int i = 0; i < N_TARGETS; i++)
        params[i] =
            (nd_param){spec[i].name, nd_tensor_create(ctx, spec[i].ndim, spec[i].shape, false)};
    memfd = memfd_create("fuzz_safetensors", 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
}

static void set_sentinel(void)
{
    for (int i = 0; i < N_TARGETS; i++)
        for (size_t k = 0; k < params[i].tensor->size; k++) params[i].tensor->data[k] = 42;
}

static void check_untouched(nd_status st)
{
    if (st == ND_OK) return;
    for (int i = 0; i < N_TARGETS; i++)
        for (size_t k = 0; k < params[i].tensor->size; k++)
            if (params[i].tensor->data[k] != 42) {
                fprintf(stderr, "failed load (%s) modified \"%s\"\n", nd_ctx_errmsg(ctx),
                        params[i].name);
                abort();
            }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) init();
    const nd_load_options modes[3] = {
        {.strict = false, .allow_nonfinite = true},
        {.strict = true},
        {.strict = true, .reject_unused = true, .allow_nonfinite = true}};
    nd_ctx_clear_error(ctx);
    nd_checkpoint *ck = NULL;
    nd_status parsed = nd_checkpoint_parse(ctx, "fuzz", data, size, &ck);
    if ((parsed == ND_OK) != (ck != NULL)) abort();
    for (int m = 0; ck && m < 3; m++) {
        set_sentinel();
        nd_ctx_clear_error(ctx);
        int n_loaded = -1;
        nd_status st = nd_checkpoint_load(ctx, ck, params, N_TARGETS, &modes[m], &n_loaded);
        check_untouched(st);
        if (st != nd_ctx_error(ctx) || (st && !nd_ctx_errmsg(ctx)[0])) abort();
    }
    if (ck) {
        int n_meta;
        const nd_meta *meta = nd_checkpoint_meta_list(ck, &n_meta);
        for (int i = 0; i < n_meta; i++)
            if (!meta[i].key || !meta[i].value) abort();
        double d;
        long l;
        nd_ctx_clear_error(ctx);
        nd_checkpoint_meta_double(ctx, ck, "format", &d);
        nd_ctx_clear_error(ctx);
        nd_checkpoint_meta_long(ctx, ck, "format", &l);
    }
    nd_checkpoint_destroy(ck);
    if (memfd >= 0 && ftruncate(memfd, 0) == 0 && pwrite(memfd, data, size, 0) == (ssize_t)size) {
        set_sentinel();
        nd_ctx_clear_error(ctx);
        check_untouched(nd_load(ctx, path, params, N_TARGETS, &modes[0]));
        nd_ctx_clear_error(ctx);
        nd_checkpoint *ck2 = NULL;
        if (nd_checkpoint_read(ctx, path, &ck2) != parsed) abort(); /* same bytes, same verdict */
        nd_checkpoint_destroy(ck2);
    }
    return 0;
}

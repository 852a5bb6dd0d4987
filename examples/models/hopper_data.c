/* SPDX-License-Identifier: MIT
 * examples/models/hopper_data.c: the MuJoCo Hopper data set (see hopper_data.h): simulation
 * through examples/common/mujoco_sim.h, the safetensors cache, scaling and subsampling.
 */
#include "hopper_data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mujoco_sim.h"

#define HOPPER_CACHE_VERSION "nodal-hopper-1"

const char *const hopper_channel_names[HOPPER_CHANNELS] = {
    "rootz",  "rootx",  "rooty",  "waist",  "hip",  "knee",  "ankle",
    "drootz", "drootx", "drooty", "dwaist", "dhip", "dknee", "dankle"};

bool hopper_available(void)
{
    return mujoco_sim_available();
}

static int say(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

int hopper_simulate(int n, uint64_t seed, double *states, char *err, size_t err_size)
{
    mujoco_sim *s = mujoco_sim_create(MUJOCO_MODEL_DIR "/hopper.xml", err, err_size);
    if (!s) return -1;
    enum { NQ = HOPPER_CHANNELS / 2 };
    int nq = mujoco_sim_nq(s), nv = mujoco_sim_nv(s);
    if (nq != NQ || nv != NQ) {
        mujoco_sim_destroy(s);
        return say(err, err_size, "hopper.xml has nq %d, nv %d, not %d", nq, nv, NQ);
    }
    /* Rubanova's initial states: rootz, rootx U(0, 0.5); angles U(-2, 2); velocities U(-5, 5) */
    double qlo[NQ], qhi[NQ], vlo[NQ], vhi[NQ];
    for (int i = 0; i < NQ; i++)
        qlo[i] = i < 2 ? 0 : -2, qhi[i] = i < 2 ? 0.5 : 2, vlo[i] = -5, vhi[i] = 5;
    mujoco_sim_batch_options o = {.n_traj = n,
                                  .n_points = HOPPER_POINTS,
                                  .sample_dt = HOPPER_DT,
                                  .qpos_lo = qlo,
                                  .qpos_hi = qhi,
                                  .qvel_lo = vlo,
                                  .qvel_hi = vhi,
                                  .seed = seed};
    mujoco_sim_batch b;
    if (mujoco_sim_generate(s, &o, &b) != 0) {
        say(err, err_size, "simulating the hopper: %s", mujoco_sim_error(s));
        mujoco_sim_destroy(s);
        return -1;
    }
    for (size_t r = 0; r < (size_t)n * HOPPER_POINTS; r++) {
        memcpy(states + r * HOPPER_CHANNELS, b.qpos + r * NQ, NQ * sizeof *states);
        memcpy(states + r * HOPPER_CHANNELS + NQ, b.qvel + r * NQ, NQ * sizeof *states);
    }
    mujoco_sim_batch_free(&b);
    mujoco_sim_destroy(s);
    return 0;
}

/* FNV-1a over the values as floats (so a cache reads the same in double and float builds) */
static uint64_t checksum(const nd_real *v, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        float f = (float)v[i];
        unsigned char bytes[sizeof f];
        memcpy(bytes, &f, sizeof f);
        for (size_t k = 0; k < sizeof f; k++) h = (h ^ bytes[k]) * 0x100000001b3ull;
    }
    return h;
}

/* the cache's metadata entry key must read want */
static int meta_is(const nd_checkpoint *ck, const char *path, const char *key, const char *want,
                   char *err, size_t err_size)
{
    const char *v = nd_checkpoint_meta(ck, key);
    if (v && strcmp(v, want) == 0) return 0;
    return say(err, err_size,
               "cache %s has %s \"%s\", this run needs \"%s\" (another --cache FILE, or delete "
               "the file to simulate again)",
               path, key, v ? v : "(none)", want);
}

static int read_cache(nd_ctx *ctx, nd_tensor *states, int n, uint64_t seed, const char *path,
                      char *err, size_t err_size)
{
    nd_checkpoint *ck = NULL;
    char n_text[32], seed_text[32], sum_text[32];
    snprintf(n_text, sizeof n_text, "%d", n);
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    nd_status st = nd_checkpoint_read(ctx, path, &ck);
    int rc = st ? say(err, err_size, "cannot use the cache: %s (delete %s to simulate again)",
                      nd_ctx_errmsg(ctx), path)
                : 0;
    if (!rc) rc = meta_is(ck, path, "generator", HOPPER_CACHE_VERSION, err, err_size);
    if (!rc) rc = meta_is(ck, path, "n", n_text, err, err_size);
    if (!rc) rc = meta_is(ck, path, "seed", seed_text, err, err_size);
    nd_param list[] = {{"states", states}};
    if (!rc && nd_checkpoint_load(ctx, ck, list, 1, NULL, NULL) != ND_OK)
        rc = say(err, err_size, "cannot use the cache: %s (delete %s to simulate again)",
                 nd_ctx_errmsg(ctx), path);
    snprintf(sum_text, sizeof sum_text, "%016llx",
             (unsigned long long)checksum(states->data, states->size));
    const char *sum = nd_checkpoint_meta(ck, "checksum");
    if (!rc && (!sum || strcmp(sum, sum_text) != 0))
        rc = say(err, err_size,
                 "cache %s is corrupt: its values do not match its checksum (delete it to "
                 "simulate again)",
                 path);
    nd_checkpoint_destroy(ck);
    return rc;
}

static int write_cache(nd_ctx *ctx, nd_tensor *states, int n, uint64_t seed, const char *path,
                       char *err, size_t err_size)
{
    char n_text[32], seed_text[32], sum_text[32];
    snprintf(n_text, sizeof n_text, "%d", n);
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    snprintf(sum_text, sizeof sum_text, "%016llx",
             (unsigned long long)checksum(states->data, states->size));
    nd_meta meta[] = {{"generator", HOPPER_CACHE_VERSION},
                      {"n", n_text},
                      {"seed", seed_text},
                      {"checksum", sum_text}};
    nd_save_options so = ND_SAVE_DEFAULT;
    so.meta = meta, so.n_meta = 4;
    nd_param list[] = {{"states", states}};
    if (nd_save(ctx, path, list, 1, &so) != ND_OK)
        return say(err, err_size, "cannot write the cache: %s", nd_ctx_errmsg(ctx));
    return 0;
}

/* each channel scaled to [0, 1] over the whole data set (Rubanova's normalisation) */
static void scale_channels(series_data *d)
{
    size_t rows = (size_t)d->n * d->P;
    for (int c = 0; c < d->D; c++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t r = 0; r < rows; r++)
            lo = fmin(lo, d->x[r * d->D + c]), hi = fmax(hi, d->x[r * d->D + c]);
        double span = hi > lo ? hi - lo : 1;
        for (size_t r = 0; r < rows; r++) d->x[r * d->D + c] = (d->x[r * d->D + c] - lo) / span;
    }
}

int hopper_load(nd_ctx *ctx, series_data *d, int n, uint64_t seed, const char *cache_path,
                bool *generated, char *err, size_t err_size)
{
    *d = (series_data){0};
    nd_tensor *states = nd_tensor_create(ctx, 3, (int[]){n, HOPPER_POINTS, HOPPER_CHANNELS}, false);
    if (!states || series_alloc(d, n, HOPPER_POINTS, HOPPER_CHANNELS) != 0) {
        nd_tensor_destroy(states);
        return say(err, err_size, "out of memory for %d series", n);
    }
    FILE *f = fopen(cache_path, "rb");
    *generated = f == NULL;
    if (f) fclose(f);
    int rc = 0;
    if (*generated) {
        rc = hopper_simulate(n, seed, d->x, err, err_size);
        for (size_t i = 0; !rc && i < states->size; i++) states->data[i] = (nd_real)d->x[i];
        /* a cache that cannot be written (a read-only directory) costs the next run a
         * simulation, not this run its data: a warning */
        if (!rc && write_cache(ctx, states, n, seed, cache_path, err, err_size) != 0) {
            fprintf(stderr, "warning: %s; the simulated data are used uncached\n", err);
            nd_ctx_clear_error(ctx);
        }
    } else {
        rc = read_cache(ctx, states, n, seed, cache_path, err, err_size);
    }
    for (size_t i = 0; !rc && i < states->size; i++) d->x[i] = (double)states->data[i];
    nd_tensor_destroy(states);
    nd_rng rng = nd_rng_seed(seed ^ 0x0b5e);
    if (!rc) {
        for (int i = 0; i < HOPPER_POINTS; i++) d->t[i] = HOPPER_DT * i;
        d->noise = HOPPER_NOISE;
        scale_channels(d);
        rc = series_subsample(d, HOPPER_OBSERVED, &rng) != 0
                 ? say(err, err_size, "out of memory for %d series", n)
                 : 0;
    }
    if (rc) series_destroy(d);
    return rc;
}

/* SPDX-License-Identifier: MIT
 * examples/classify/driver.h: the one driver of the MNIST-family image classifiers
 * (examples/mnist.c, examples/odenet.c). A program hands it its model and what it adds (flags,
 * per-batch figures, JSON members); the driver does the rest: flags, data (--data DIR of IDX
 * files, Fashion-MNIST from Debian's dataset-fashion-mnist by default), loaders, --save and
 * --resume (model, buffers and Adam's state, with the epochs and the pixel standardisation in the
 * metadata, parsed strictly), the epoch loop (Adam, lr along a cosine to 0, cross-entropy),
 * progress on stderr, test accuracy, and one JSON summary with --json.
 * Exit status of classify_main: 0 when it ran (good or not), 1 on a library error, missing data
 * or a bad checkpoint, 2 on bad flags. Not part of the library.
 */
#ifndef EXAMPLES_CLASSIFY_DRIVER_H
#define EXAMPLES_CLASSIFY_DRIVER_H

#include "flags.h"
#include "json.h"
#include "dist/dist.h"
#include "nodal.h"

#define CLASSIFY_MAX_METRICS 4
#define CLASSIFY_MAX_RANKS 256 /* per-rank figures kept for the summary */

typedef struct {
    const char *name;    /* "mnist": messages, the checkpoint's "example" entry, JSON */
    const char *summary; /* --help's description */
    /* the model, (B, 1, 28, 28) -> (B, 10) logits; NULL with the error in ctx */
    nd_module *(*model_create)(nd_ctx *ctx, nd_rng *rng, void *user);
    const flag_spec *flags; /* the program's own flags, after the driver's */
    int n_flags;
    /* per-batch figures averaged over each epoch (e.g. an ODE block's NFE), read after each
     * training step's backward pass: label in progress lines, key in the JSON */
    int n_metrics;
    const char *metric_labels[CLASSIFY_MAX_METRICS]; /* "NFE-F" */
    const char *metric_keys[CLASSIFY_MAX_METRICS];   /* "nfe_forward_per_batch" */
    void (*metrics)(const nd_module *model, double *values, void *user);
    /* optional: words appended to the start-up line, members added to the JSON summary */
    void (*describe)(FILE *out, void *user);
    void (*json_members)(json_writer *w, void *user);
    void *user; /* handed to every hook */
} classify_program;

int classify_main(const classify_program *prog, int argc, char **argv);

#endif

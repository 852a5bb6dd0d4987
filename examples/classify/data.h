/* SPDX-License-Identifier: MIT
 * examples/classify/data.h: the data, checkpoint and evaluation helpers of the MNIST-family
 * classifiers (examples/mnist.c, examples/odenet.c), under their shared driver (driver.h).
 * Not part of the library.
 */
#ifndef EXAMPLES_CLASSIFY_DATA_H
#define EXAMPLES_CLASSIFY_DATA_H

#include "nodal.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define N_CLASSES 10

/* Loads DIR/{prefix}-images-idx3-ubyte and -labels-idx1-ubyte (each plain or .gz) as 28x28
 * images with labels 0..9. 1 with a message (and a HINT when the files are missing) naming prog. */
int mnist_load_split(nd_ctx *ctx, const char *prog, const char *dir, const char *prefix,
                     nd_dataset **out);

/* Mean and standard deviation of a dataset's pixels (as [0, 1] values), and x = (x - mean) / std
 * in place for a persistent input batch. */
void mnist_pixel_stats(const nd_dataset *ds, double *mean, double *std);
void mnist_standardise(nd_tensor *x /* (m, 1, 28, 28) */, double mean, double std);

/* A checkpoint's list: the model's state ("0.weight", ...) then the optimizer's ("optim.step",
 * ...). The list owns the names, not the tensors. */
typedef struct {
    int n;
    nd_param *items; /* (n,) */
} mnist_ckpt;
int mnist_ckpt_make(nd_ctx *ctx, const nd_param_list *model_state, const nd_optimizer *opt,
                    mnist_ckpt *out);
void mnist_ckpt_free(mnist_ckpt *l);

/* Resumes from a checkpoint written with l's names, reading it once: loads the tensors, then the
 * "epochs" trained before (0 when absent) and the "pixel_mean" / "pixel_std" the model was trained
 * with (unchanged when absent), all parsed strictly. 0, or 1 with a message naming prog. */
int mnist_resume(nd_ctx *ctx, const char *prog, const char *path, const mnist_ckpt *l,
                 int *epochs_before, double *mean, double *std);

/* Right answers of model over one epoch of loader ld (the whole dataset, or this rank's shares of
 * it), in eval mode with grad off, inputs standardised; one arena reset per batch. *right and
 * *seen: right answers and images. 0, or 1 with a message naming prog. */
int mnist_evaluate(nd_ctx *ctx, const char *prog, nd_module *model, nd_loader *ld,
                   nd_tensor *x /* (R, 1, 28, 28) */, int *labels /* (R,) */, double mean,
                   double std, long *right, long *seen);

#endif

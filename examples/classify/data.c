/* SPDX-License-Identifier: MIT
 * examples/classify/data.c: what examples/mnist.c and examples/odenet.c share around their models:
 * loading an MNIST-family split from IDX files (with a hint when it is missing), standardising
 * pixels, the checkpoint list over a model's and an optimizer's state, and test accuracy.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

/* prints the ctx's first error for prog; 1 */
static int report(nd_ctx *ctx, const char *prog, const char *where)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", prog, where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

static bool find_file(const char *dir, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s.gz", dir, name);
    if (access(path, R_OK) == 0) return true;
    snprintf(path, cap, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

int mnist_load_split(nd_ctx *ctx, const char *prog, const char *dir, const char *prefix,
                     nd_dataset **out)
{
    char images[4096], labels[4096], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    bool have_images = find_file(dir, name, images, sizeof images);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    bool have_labels = find_file(dir, name, labels, sizeof labels);
    if (!have_images || !have_labels) {
        fprintf(stderr,
                "%s: cannot read %s (looked for %s-{images-idx3,labels-idx1}-ubyte[.gz] in %s)\n"
                "HINT: for Fashion-MNIST run `sudo apt-get install dataset-fashion-mnist`\n"
                "      (installs " DEFAULT_DATA
                "), or pass --data DIR with MNIST-style IDX files\n",
                prog, have_images ? labels : images, prefix, dir);
        return 1;
    }
    if (nd_dataset_load_idx(ctx, images, labels, out) != ND_OK)
        return report(ctx, prog, "loading data");
    if ((*out)->n_classes > N_CLASSES || (*out)->rows != 28 || (*out)->cols != 28) {
        fprintf(stderr, "%s: %s: expected 28x28 images and labels 0..9, got %dx%d and %d classes\n",
                prog, images, (*out)->rows, (*out)->cols, (*out)->n_classes);
        return 1;
    }
    return 0;
}

void mnist_pixel_stats(const nd_dataset *ds, double *mean, double *std)
{
    double s = 0, s2 = 0;
    size_t n = (size_t)ds->n * ds->rows * ds->cols;
    for (size_t i = 0; i < n; i++) {
        double v = ds->pixels[i] / 255.0;
        s += v, s2 += v * v;
    }
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
    if (!(*std > 1e-6)) *std = 1; // a blank dataset: leave the scale alone
}

void mnist_standardise(nd_tensor *x /* (m, 1, 28, 28) */, double mean, double std)
{
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)((x->data[i] - mean) / std);
}

int mnist_ckpt_make(nd_ctx *ctx, const nd_param_list *model_state, const nd_optimizer *opt,
                    mnist_ckpt *out)
{
    int n_opt = 0;
    const nd_param *opt_state = nd_optimizer_state(opt, &n_opt);
    out->n = 0;
    out->items = calloc((size_t)(model_state->n + n_opt), sizeof *out->items);
    if (!out->items) return nd_fail(ctx, ND_ERR_NOMEM, "checkpoint list"), 1;
    for (int i = 0; i < model_state->n + n_opt; i++) {
        const nd_param *p =
            i < model_state->n ? &model_state->items[i] : &opt_state[i - model_state->n];
        const char *prefix = i < model_state->n ? "" : "optim.";
        size_t len = strlen(prefix) + strlen(p->name) + 1;
        char *name = malloc(len);
        if (!name) return nd_fail(ctx, ND_ERR_NOMEM, "checkpoint list"), 1;
        snprintf(name, len, "%s%s", prefix, p->name);
        out->items[out->n++] = (nd_param){.name = name, .tensor = p->tensor};
    }
    return 0;
}

void mnist_ckpt_free(mnist_ckpt *l)
{
    for (int i = 0; i < l->n; i++) free((char *)l->items[i].name);
    free(l->items);
    l->n = 0, l->items = NULL;
}

int mnist_resume(nd_ctx *ctx, const char *prog, const char *path, const mnist_ckpt *l,
                 int *epochs_before, double *mean, double *std)
{
    nd_checkpoint *ck = NULL;
    nd_status st = nd_checkpoint_read(ctx, path, &ck);
    if (!st) st = nd_checkpoint_load(ctx, ck, l->items, l->n, NULL, NULL);
    // a checkpoint from elsewhere has no "epochs" (count from 0) nor the standardisation
    long e = 0;
    if (!st && nd_checkpoint_meta(ck, "epochs")) {
        st = nd_checkpoint_meta_long(ctx, ck, "epochs", &e);
        if (!st && (e < 0 || e > INT_MAX))
            st = nd_fail(ctx, ND_ERR_FORMAT, "%s: metadata \"epochs\" is %ld", path, e);
    }
    double m = *mean, s = *std;
    if (!st && nd_checkpoint_meta(ck, "pixel_mean") && nd_checkpoint_meta(ck, "pixel_std")) {
        st = nd_checkpoint_meta_double(ctx, ck, "pixel_mean", &m);
        if (!st) st = nd_checkpoint_meta_double(ctx, ck, "pixel_std", &s);
        if (!st && !(s > 0))
            st = nd_fail(ctx, ND_ERR_FORMAT, "%s: metadata \"pixel_std\" is %g, not positive", path,
                         s);
    }
    nd_checkpoint_destroy(ck);
    if (st) return report(ctx, prog, "--resume");
    *epochs_before = (int)e, *mean = m, *std = s;
    return 0;
}

int mnist_evaluate(nd_ctx *ctx, const char *prog, nd_module *model, nd_loader *ld,
                   nd_tensor *x /* (R, 1, 28, 28) */, int *labels /* (R,) */, double mean,
                   double std, long *right_out, long *seen)
{
    bool was_grad = nd_ctx_set_grad(ctx, false);
    nd_module_eval(model);
    long right = 0;
    int m;
    *seen = 0;
    while (nd_loader_next(ctx, ld, x, NULL, labels, &m) == ND_OK && m > 0) {
        mnist_standardise(x, mean, std);
        nd_tensor *logits = nd_module_forward(ctx, model, x); // (m, 10)
        if (!logits) break;
        right += lround(nd_accuracy(logits, labels) * m);
        *seen += m;
        nd_ctx_reset(ctx);
    }
    nd_ctx_set_grad(ctx, was_grad);
    nd_module_train(model, true);
    if (nd_ctx_error(ctx) != ND_OK) return report(ctx, prog, "evaluation");
    *right_out = right;
    return 0;
}

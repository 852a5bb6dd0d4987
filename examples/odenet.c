/* SPDX-License-Identifier: MIT
 * examples/odenet.c: an ODE-Net image classifier for the MNIST family (Chen et al. 2018, section
 * 7.1, scaled down for a CPU): downsampling convolutions, one ODE block whose dynamics are a
 * small conv-net that sees t as an extra input channel, adaptive pooling and a linear head.
 *   conv 3x3 1->16, GroupNorm, relu -> conv 4x4/2 16->16, GroupNorm, relu -> conv 4x4/2 16->16
 *   -> ODE block over t in [0, 1]: dx/dt = GN(conv 3x3 16->16(relu(GN(conv 3x3 [x, t] 17->16))))
 *   -> GroupNorm, relu, adaptive average pool to 1x1, linear 16->10
 * dopri5 with the adjoint; the adjoint's error test uses --norm (rms or seminorm). Adam (lr 2e-3
 * falling to 0 along a cosine), batch 64, cross-entropy, pixels standardised as examples/mnist.c. Per epoch it prints the accuracy and the mean function evaluations
 * per batch of the forward pass (NFE-F) and of the adjoint (NFE-B): the seminorm's saving.
 *
 * Good looks like (2-core Xeon, double): Fashion-MNIST (Debian's dataset-fashion-mnist) >= 89%
 * test accuracy in 2 epochs; the 10k real MNIST digits (../shared/data/mnist-digits-10k) >= 97%.
 * Each epoch of Fashion-MNIST takes a few minutes here.
 * Run:
 *   ./build/examples/odenet --norm seminorm                           # Fashion-MNIST, 2 epochs
 *   ./build/examples/odenet --data ../shared/data/mnist-digits-10k --epochs 8
 *   ./build/examples/odenet --limit 256 --epochs 1                    # CI smoke test
 * Flags: --data DIR --epochs N --batch B --lr X --seed S --norm rms|seminorm --rtol R --atol A
 * --save FILE --resume FILE --limit N --json. Exit status: 0 when it ran, 1 on a library error or
 * missing data, 2 on bad flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodal.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define N_CLASSES 10

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Any failing library call lands here: print the ctx's first error. */
static int fail(nd_ctx *ctx, const char *where)
{
    fprintf(stderr, "odenet: %s: %s (%s)\n", where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

// ------------------------------------------------------------------------------------------------
// data: IDX files, plain or gzip, from --data DIR

/* Writes DIR/name(.gz) into path if either exists; false if neither does. */
static bool find_file(const char *dir, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s.gz", dir, name);
    if (access(path, R_OK) == 0) return true;
    snprintf(path, cap, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

/* Loads DIR/{prefix}-images-idx3-ubyte and -labels-idx1-ubyte. 1 with a HINT when missing. */
static int load_split(nd_ctx *ctx, const char *dir, const char *prefix, nd_dataset **out)
{
    char images[4096], labels[4096], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    bool have_images = find_file(dir, name, images, sizeof images);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    bool have_labels = find_file(dir, name, labels, sizeof labels);
    if (!have_images || !have_labels) {
        fprintf(stderr,
                "odenet: cannot read %s (looked for %s-{images-idx3,labels-idx1}-ubyte[.gz] in %s)\n"
                "HINT: for Fashion-MNIST run `sudo apt-get install dataset-fashion-mnist`\n"
                "      (installs " DEFAULT_DATA "), or pass --data DIR with MNIST-style IDX files\n",
                have_images ? labels : images, prefix, dir);
        return 1;
    }
    if (nd_dataset_load_idx(ctx, images, labels, out) != ND_OK) return fail(ctx, "loading data");
    if ((*out)->n_classes > N_CLASSES || (*out)->rows != 28 || (*out)->cols != 28) {
        fprintf(stderr, "odenet: %s: expected 28x28 images and labels 0..9, got %dx%d and %d classes\n",
                images, (*out)->rows, (*out)->cols, (*out)->n_classes);
        return 1;
    }
    return 0;
}

/* Mean and standard deviation of the training pixels (as [0, 1] values), to standardise inputs. */
static void pixel_stats(const nd_dataset *ds, double *mean, double *std)
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

/* x = (x - mean) / std in place: x is a persistent input, not part of any graph. */
static void standardise(nd_tensor *x /* (m, 1, 28, 28) */, double mean, double std)
{
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)((x->data[i] - mean) / std);
}

// ------------------------------------------------------------------------------------------------
// model: downsampling, the ODE block, the head; one Sequential (state names "0.weight", ...,
// "6.func.0.weight" for the dynamics)

#define WIDTH 16 /* channels inside the ODE block */

/* the dynamics: [x, t] (B, 17, 7, 7) -> dx/dt (B, 16, 7, 7) */
static nd_module *dynamics_create(nd_ctx *ctx, nd_rng *rng)
{
    nd_module *layers[] = {
        nd_conv2d_create(ctx, WIDTH + 1, WIDTH, 3, 1, 1, true, rng), // t is the 17th channel
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),
        nd_activation_create(ctx, ND_ACT_RELU),
        nd_conv2d_create(ctx, WIDTH, WIDTH, 3, 1, 1, true, rng),
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),
    };
    return nd_sequential_create(ctx, (int)(sizeof layers / sizeof *layers), layers);
}

static nd_module *model_create(nd_ctx *ctx, nd_rng *rng, const nd_ode_options *ode)
{
    nd_module *layers[] = {
        nd_conv2d_create(ctx, 1, WIDTH, 3, 1, 1, true, rng),     // 0: -> (B, 16, 28, 28)
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),               // 1
        nd_activation_create(ctx, ND_ACT_RELU),                  // 2
        nd_conv2d_create(ctx, WIDTH, WIDTH, 4, 2, 1, true, rng), // 3: -> (B, 16, 14, 14)
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),               // 4
        nd_activation_create(ctx, ND_ACT_RELU),                  // 5
        nd_conv2d_create(ctx, WIDTH, WIDTH, 4, 2, 1, true, rng), // 6: -> (B, 16, 7, 7)
        nd_odeblock_create(ctx, dynamics_create(ctx, rng), ND_TIME_CONCAT, 0.0, 1.0, ode), // 7
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),               // 8
        nd_activation_create(ctx, ND_ACT_RELU),                  // 9
        nd_global_avg_pool2d_create(ctx),                        // 10: -> (B, 16, 1, 1)
        nd_flatten_create(ctx),                                  // 11: -> (B, 16)
        nd_linear_create(ctx, WIDTH, N_CLASSES, true, rng),      // 12: -> (B, 10) logits
    };
    return nd_sequential_create(ctx, (int)(sizeof layers / sizeof *layers), layers);
}
#define ODE_LAYER 7

// ------------------------------------------------------------------------------------------------
// checkpoint: the model's state ("0.weight", ...) and the optimizer's ("optim.step", ...) in one
// safetensors file, so --resume continues training where --save left it

typedef struct {
    int n;
    nd_param *items; // (n,) names owned here, tensors owned by the model and the optimizer
} ckpt_list;

static int ckpt_list_make(nd_ctx *ctx, const nd_param_list *model_state, const nd_optimizer *opt,
                          ckpt_list *out)
{
    int n_opt = 0;
    const nd_param *opt_state = nd_optimizer_state(opt, &n_opt);
    out->n = 0;
    out->items = calloc((size_t)(model_state->n + n_opt), sizeof *out->items);
    if (!out->items) return nd_fail(ctx, ND_ERR_NOMEM, "checkpoint list"), 1;
    for (int i = 0; i < model_state->n + n_opt; i++) {
        const nd_param *p = i < model_state->n ? &model_state->items[i]
                                               : &opt_state[i - model_state->n];
        const char *prefix = i < model_state->n ? "" : "optim.";
        size_t len = strlen(prefix) + strlen(p->name) + 1;
        char *name = malloc(len);
        if (!name) return nd_fail(ctx, ND_ERR_NOMEM, "checkpoint list"), 1;
        snprintf(name, len, "%s%s", prefix, p->name);
        out->items[out->n++] = (nd_param){.name = name, .tensor = p->tensor};
    }
    return 0;
}

static void ckpt_list_free(ckpt_list *l)
{
    for (int i = 0; i < l->n; i++) free((char *)l->items[i].name);
    free(l->items);
    l->n = 0, l->items = NULL;
}

// ------------------------------------------------------------------------------------------------
// evaluation: accuracy over a whole dataset, grad off, one arena reset per batch

static int evaluate(nd_ctx *ctx, nd_module *model, const nd_dataset *ds, nd_loader *ld,
                    nd_tensor *x /* (B, 1, 28, 28) */, int *labels /* (B,) */, double mean,
                    double std, double *accuracy)
{
    bool was_grad = nd_ctx_set_grad(ctx, false);
    nd_module_eval(model);
    long right = 0;
    int m;
    while ((m = nd_loader_next(ctx, ld, x, NULL, labels)) > 0) {
        standardise(x, mean, std);
        nd_tensor *logits = nd_module_forward(ctx, model, x); // (m, 10)
        if (!logits) break;
        right += lround(nd_accuracy(logits, labels) * m);
        nd_ctx_reset(ctx);
    }
    nd_ctx_set_grad(ctx, was_grad);
    nd_module_train(model, true);
    if (m < 0 || nd_ctx_error(ctx) != ND_OK) return fail(ctx, "evaluation");
    *accuracy = (double)right / ds->n;
    return 0;
}

// ------------------------------------------------------------------------------------------------

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--data DIR] [--epochs N] [--batch B] [--lr X] [--seed S] [--limit N]\n"
            "          [--norm rms|seminorm] [--rtol R] [--atol A] [--save FILE] [--resume FILE]\n"
            "          [--json]\n"
            "  defaults: --data " DEFAULT_DATA " --epochs 2 --batch 64 --lr 2e-3 --seed 1\n"
            "            --norm seminorm --rtol 1e-3 --atol 1e-3\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    const char *data_dir = DEFAULT_DATA, *save_path = NULL, *resume_path = NULL;
    int epochs = 2, batch = 64, limit = 0, json = 0;
    double lr = 2e-3, rtol = 1e-3, atol = 1e-3;
    nd_norm_kind norm = ND_NORM_SEMINORM;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) return usage(argv[0]);
        i++;
        if (!strcmp(a, "--data")) data_dir = v;
        else if (!strcmp(a, "--save")) save_path = v;
        else if (!strcmp(a, "--resume")) resume_path = v;
        else if (!strcmp(a, "--epochs")) epochs = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--batch")) batch = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--limit")) limit = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--lr")) lr = strtod(v, &end);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--rtol")) rtol = strtod(v, &end);
        else if (!strcmp(a, "--atol")) atol = strtod(v, &end);
        else if (!strcmp(a, "--norm") && (!strcmp(v, "rms") || !strcmp(v, "seminorm")))
            norm = strcmp(v, "rms") ? ND_NORM_SEMINORM : ND_NORM_RMS;
        else return usage(argv[0]);
        if (end && (*end || end == v)) return usage(argv[0]);
    }
    if (epochs < 0 || batch < 1 || limit < 0 || !(lr > 0) || !(rtol > 0) || !(atol > 0)) {
        fprintf(stderr, "odenet: need --epochs >= 0, --batch >= 1, --limit >= 0, --lr, --rtol, "
                        "--atol > 0\n");
        return 2;
    }
    if (epochs == 0 && !resume_path) {
        fprintf(stderr, "odenet: --epochs 0 only evaluates, so it needs --resume FILE\n");
        return 2;
    }

    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) {
        fprintf(stderr, "odenet: out of memory\n");
        return 1;
    }
    int status = 0;
    nd_dataset *train = NULL, *test = NULL;
    nd_loader *train_ld = NULL, *test_ld = NULL;
    nd_module *model = NULL;
    nd_param_list params = {0}, state = {0};
    nd_optimizer *opt = NULL;
    ckpt_list ckpt = {0};
    // the batch's images in [0, 1], persistent; one per loader, since a loader shrinks its own
    // tensor's first dim for a last, smaller batch
    nd_tensor *x = NULL;      // (B, 1, 28, 28) training batch
    nd_tensor *x_test = NULL; // (B, 1, 28, 28) test batch
    int *labels = NULL;       // (B,) the batch's classes
    nd_rng rng = nd_rng_seed(seed);
    bool tty = isatty(STDERR_FILENO);
    int epochs_before = 0; // epochs already trained by the checkpoint we resumed from
    double train_seconds = 0, test_acc = NAN, last_loss = NAN, last_train_acc = NAN;
    long train_images = 0;

    // --- data
    if ((status = load_split(ctx, data_dir, "train", &train)) != 0 ||
        (status = load_split(ctx, data_dir, "t10k", &test)) != 0)
        goto cleanup;
    if (limit > 0 && (nd_dataset_limit(ctx, train, limit, NULL) != ND_OK ||
                      nd_dataset_limit(ctx, test, limit, NULL) != ND_OK)) {
        status = fail(ctx, "--limit");
        goto cleanup;
    }
    double mean, std; // of the training pixels: inputs are standardised with these
    pixel_stats(train, &mean, &std);
    if (nd_loader_create(ctx, train, batch, true, false, seed, &train_ld) != ND_OK ||
        nd_loader_create(ctx, test, batch, false, false, 0, &test_ld) != ND_OK) {
        status = fail(ctx, "loaders");
        goto cleanup;
    }
    x = nd_tensor_create(ctx, 4, (int[]){batch, 1, 28, 28}, false);
    x_test = nd_tensor_create(ctx, 4, (int[]){batch, 1, 28, 28}, false);
    labels = malloc((size_t)batch * sizeof *labels);
    if (!x || !x_test || !labels) {
        status = x && x_test ? (fprintf(stderr, "odenet: out of memory\n"), 1)
                             : fail(ctx, "batch buffers");
        goto cleanup;
    }

    // --- model, optimizer, and the checkpoint list over both
    /* dopri5 both ways; the adjoint's error test under the chosen norm */
    nd_ode_options ode = ND_ODE_DEFAULT;
    ode.solver.rtol = ode.adjoint.rtol = rtol;
    ode.solver.atol = ode.adjoint.atol = atol;
    ode.adjoint.norm = norm;
    model = model_create(ctx, &rng, &ode);
    if (!model || nd_module_params(ctx, model, &params) != ND_OK ||
        nd_module_state(ctx, model, &state) != ND_OK) {
        status = fail(ctx, "model");
        goto cleanup;
    }
    nd_adam_opts adam = ND_ADAM_DEFAULT;
    adam.lr = lr;
    opt = nd_adam_create(ctx, params.items, params.n, adam);
    if (!opt || ckpt_list_make(ctx, &state, opt, &ckpt) != 0) {
        status = fail(ctx, "optimizer");
        goto cleanup;
    }
    if (resume_path) {
        char meta[32] = "0";
        if (nd_load(ctx, resume_path, ckpt.items, ckpt.n) != ND_OK) {
            status = fail(ctx, "--resume");
            goto cleanup;
        }
        if (nd_load_meta(ctx, resume_path, "epochs", meta, sizeof meta) != ND_OK)
            nd_ctx_clear_error(ctx); // a checkpoint from elsewhere: count from 0
        epochs_before = atoi(meta);
        // the standardisation the model was trained with (so --limit does not change it)
        char m_str[32], s_str[32];
        if (nd_load_meta(ctx, resume_path, "pixel_mean", m_str, sizeof m_str) == ND_OK &&
            nd_load_meta(ctx, resume_path, "pixel_std", s_str, sizeof s_str) == ND_OK)
            mean = atof(m_str), std = atof(s_str);
        nd_ctx_clear_error(ctx);
        fprintf(stderr, "resumed %s: %d epochs, %ld steps trained\n", resume_path, epochs_before,
                nd_optimizer_steps(opt));
    }
    const nd_module *block = model->children[ODE_LAYER].module;
    const char *norm_name = norm == ND_NORM_SEMINORM ? "seminorm" : "rms";
    fprintf(stderr, "%s: %d train / %d test images; %zu parameters; batch %d, lr %g, %s; dopri5 "
            "rtol %g atol %g, adjoint norm %s\n", data_dir, train->n, test->n,
            nd_param_list_numel(&params), batch, lr, ND_REAL_NAME, rtol, atol, norm_name);
    double nfe_f_epoch = 0, nfe_b_epoch = 0; // mean per batch over the last epoch

    // --- training loop: forward, one check, backward, Adam, reset the arena
    int steps_per_epoch = (train->n + batch - 1) / batch;
    // the learning rate falls from --lr to 0 along a cosine over this run's steps
    nd_lr_schedule schedule = nd_lr_cosine(lr, epochs * steps_per_epoch, 0);
    long run_step = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        double t0 = now_s(), loss_sum = 0, t_print = 0;
        long right = 0, seen = 0, nfe_f = 0, nfe_b = 0;
        int m, step = 0;
        while ((m = nd_loader_next(ctx, train_ld, x, NULL, labels)) > 0) {
            standardise(x, mean, std);
            nd_tensor *logits = nd_module_forward(ctx, model, x);                  // (m, 10)
            nd_tensor *loss = nd_cross_entropy(ctx, logits, labels, ND_REDUCE_MEAN); // scalar
            if (!loss) {
                status = fail(ctx, "forward");
                goto cleanup;
            }
            nd_optimizer_zero_grad(opt);
            nd_optimizer_set_lr(opt, nd_lr_at(&schedule, (int)run_step++));
            if (nd_backward(ctx, loss) != ND_OK || nd_optimizer_step(ctx, opt) != ND_OK) {
                status = fail(ctx, "backward/update");
                goto cleanup;
            }
            nfe_f += nd_odeblock_stats(block)->forward.nfe; // read after the backward pass
            nfe_b += nd_odeblock_stats(block)->backward.nfe;
            loss_sum += nd_item(loss) * m;
            right += lround(nd_accuracy(logits, labels) * m);
            seen += m, step++;
            nd_ctx_reset(ctx); // frees this step's graph, keeps the memory: no malloc from here
            double t = now_s();
            if (tty && (t - t_print > 0.2 || step == steps_per_epoch)) {
                t_print = t;
                fprintf(stderr, "\repoch %d/%d  batch %4d/%d  loss %.4f  acc %5.2f%%  NFE-F %4.1f "
                        "NFE-B %5.1f  %5.0f img/s ", epochs_before + epoch, epochs_before + epochs,
                        step, steps_per_epoch, loss_sum / seen, 100.0 * right / seen,
                        (double)nfe_f / step, (double)nfe_b / step, seen / (t - t0));
            }
        }
        if (m < 0) {
            status = fail(ctx, "next batch");
            goto cleanup;
        }
        double secs = now_s() - t0;
        train_seconds += secs, train_images += seen;
        last_loss = loss_sum / seen, last_train_acc = (double)right / seen;
        nfe_f_epoch = (double)nfe_f / step, nfe_b_epoch = (double)nfe_b / step;
        if ((status = evaluate(ctx, model, test, test_ld, x_test, labels, mean, std, &test_acc)) != 0) goto cleanup;
        fprintf(stderr,
                "%sepoch %d/%d  loss %.4f  train acc %.2f%%  NFE-F %.1f  NFE-B %.1f (%s)  "
                "%.0f img/s  %.1f s  test acc %.2f%%\n",
                tty ? "\r" : "", epochs_before + epoch, epochs_before + epochs, last_loss,
                100 * last_train_acc, nfe_f_epoch, nfe_b_epoch, norm_name, seen / secs, secs,
                100 * test_acc);
    }

    // --- evaluation only (--epochs 0 --resume FILE)
    if (epochs == 0) {
        if ((status = evaluate(ctx, model, test, test_ld, x_test, labels, mean, std, &test_acc)) != 0) goto cleanup;
        fprintf(stderr, "test accuracy %.2f%% (%d images)\n", 100 * test_acc, test->n);
    }

    // --- checkpoint: model + optimizer state, written atomically
    if (save_path) {
        char n_epochs[32];
        snprintf(n_epochs, sizeof n_epochs, "%d", epochs_before + epochs);
        char m_str[32], s_str[32];
        snprintf(m_str, sizeof m_str, "%.17g", mean);
        snprintf(s_str, sizeof s_str, "%.17g", std);
        nd_meta meta[] = {{"example", "odenet"}, {"epochs", n_epochs}, {"pixel_mean", m_str},
                          {"pixel_std", s_str}};
        nd_save_opts so = ND_SAVE_DEFAULT;
        so.meta = meta, so.n_meta = 4;
        if (nd_save_ex(ctx, save_path, ckpt.items, ckpt.n, &so) != ND_OK) {
            status = fail(ctx, "--save");
            goto cleanup;
        }
        fprintf(stderr, "saved %s\n", save_path);
    }

    if (json) { // training figures are 0 when --epochs 0 only evaluated
        double spe = epochs > 0 ? train_seconds / epochs : 0;
        double ips = train_seconds > 0 ? train_images / train_seconds : 0;
        printf("{\"example\":\"odenet\",\"real\":\"%s\",\"norm\":\"%s\",\"rtol\":%g,"
               "\"atol\":%g,\"nfe_forward_per_batch\":%.2f,\"nfe_backward_per_batch\":%.2f,"
               "\"data\":\"", ND_REAL_NAME, norm_name, rtol, atol, nfe_f_epoch, nfe_b_epoch);
        for (const char *c = data_dir; *c; c++) { // the path as a JSON string
            if (*c == '"' || *c == '\\') putchar('\\');
            putchar((unsigned char)*c < 0x20 ? '?' : *c);
        }
        printf("\",\"n_train\":%d,\"n_test\":%d,\"epochs\":%d,\"epochs_total\":%d,\"batch\":%d,"
               "\"lr\":%g,\"seed\":%llu,\"train_loss\":%.6f,\"train_accuracy\":%.4f,"
               "\"test_accuracy\":%.4f,\"seconds_per_epoch\":%.3f,\"images_per_second\":%.1f}\n",
               train->n, test->n, epochs, epochs_before + epochs, batch, lr, seed,
               epochs > 0 ? last_loss : 0, epochs > 0 ? last_train_acc : 0, test_acc, spe, ips);
    }

cleanup:
    ckpt_list_free(&ckpt);
    nd_optimizer_destroy(opt);
    nd_param_list_free(&params);
    nd_param_list_free(&state);
    nd_module_destroy(model);
    nd_tensor_destroy(x);
    nd_tensor_destroy(x_test);
    free(labels);
    nd_loader_destroy(train_ld);
    nd_loader_destroy(test_ld);
    nd_dataset_destroy(train);
    nd_dataset_destroy(test);
    nd_ctx_destroy(ctx);
    return status;
}

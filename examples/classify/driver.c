/* SPDX-License-Identifier: MIT
 * examples/classify/driver.c: the MNIST-family driver (see driver.h), in the order a run goes:
 * flags, data and loaders, model and optimizer, --resume, the epochs, --save, the summary.
 * Data-parallel under mpirun (dist/dist.h): every rank holds the model and a share of each global
 * batch of --batch images (sharded loaders), the ranks average their gradients after each backward
 * pass, and only rank 0 prints and saves; ranks agree on failures at each meeting.
 */
#include "driver.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "data.h"

#define MAX_FLAGS 24

typedef struct {
    const char *data_dir, *save_path, *resume_path;
    int epochs, batch, limit;
    double lr;
    uint64_t seed;
    bool json;
} options;

/* everything a run holds; cleanup frees what is set */
typedef struct {
    const classify_program *prog;
    options op;
    nd_ctx *ctx;
    nd_dist *dist;
    int rank, ranks;
    bool root; // rank 0: prints, saves
    nd_dataset *train, *test;
    nd_loader *train_ld, *test_ld;
    nd_module *model;
    nd_param_list params, state;
    nd_optimizer *opt;
    mnist_ckpt ckpt;
    // the batch's images in [0, 1], persistent; one per loader, since a loader shrinks its own
    // tensor's first dim for a last, smaller batch
    nd_tensor *x, *x_test; // (R, 1, 28, 28) training and test batches (R: this rank's rows)
    int *labels;           // (R,) the batch's classes
    double mean, std;      // the pixels' standardisation (the training set's, or the checkpoint's)
    int epochs_before;     // epochs already trained by the checkpoint we resumed from
    // results
    double train_seconds, train_cpu_seconds, test_acc, last_loss, last_train_acc;
    long train_images;
    double metrics[CLASSIFY_MAX_METRICS]; // mean per batch over the last epoch (all ranks)
    double rank_metrics[CLASSIFY_MAX_METRICS][CLASSIFY_MAX_RANKS]; // the same, per rank
    double rank_wait[CLASSIFY_MAX_RANKS]; // seconds each rank waited for the others
    nd_dist_stats dist_stats;             // rank 0's meetings
} run;

static int fail(const run *r, const char *where)
{
    char who[32] = "";
    if (r->ranks > 1) snprintf(who, sizeof who, " rank %d", r->rank);
    fprintf(stderr, "%s%s: %s: %s (%s)\n", r->prog->name, who, where, nd_ctx_errmsg(r->ctx),
            nd_status_str(nd_ctx_error(r->ctx)));
    return 1;
}

/* Every rank's status after a step that may fail on one rank only (data, checkpoint): 0 when all
 * ranks succeeded; otherwise 1 on every rank, and the ranks that did not fail say which did. */
static int agree(run *r, int status, const char *where)
{
    if (status != 0 && nd_ctx_error(r->ctx) == ND_OK)
        nd_fail(r->ctx, ND_ERR_ARG, "%s failed", where); // printed already; tells the others
    if (nd_dist_check(r->ctx, r->dist) != ND_OK && status == 0) status = fail(r, where);
    return status != 0;
}

static int parse_options(const classify_program *prog, int argc, char **argv, options *o)
{
    *o = (options){.data_dir = DEFAULT_DATA, .epochs = 2, .batch = 64, .lr = 2e-3, .seed = 1};
    const flag_spec common[] = {
        FLAG_STRING("data", &o->data_dir, "DIR", "MNIST-style IDX files (train-*, t10k-*)"),
        FLAG_INT("epochs", &o->epochs, 0, 100000, "epochs to train (0: only evaluate --resume)"),
        FLAG_INT("batch", &o->batch, 1, 1000000, "images per batch"),
        FLAG_POSITIVE("lr", &o->lr, "Adam's learning rate (cosine to 0 over the run)"),
        FLAG_U64("seed", &o->seed, "seeds the weights and the shuffling"),
        FLAG_INT("limit", &o->limit, 0, INT_MAX, "only the first N train and test images (0: all)"),
        FLAG_STRING("save", &o->save_path, "FILE", "write a checkpoint (safetensors) at the end"),
        FLAG_STRING("resume", &o->resume_path, "FILE", "start from a checkpoint of --save"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
    };
    flag_spec all[MAX_FLAGS];
    int n = FLAGS_N(common);
    memcpy(all, common, sizeof common);
    for (int i = 0; i < prog->n_flags && n < MAX_FLAGS; i++) all[n++] = prog->flags[i];
    int rc = flags_parse(prog->name, prog->summary, all, n, argc, argv);
    if (rc == FLAGS_OK && o->epochs == 0 && !o->resume_path) {
        fprintf(stderr, "%s: --epochs 0 only evaluates, so it needs --resume FILE\n", prog->name);
        rc = FLAGS_ERROR;
    }
    return rc;
}

// ------------------------------------------------------------------------------------------------
// setting up: data, loaders, batch buffers, model, optimizer

static int setup(run *r, nd_rng *rng)
{
    const options *op = &r->op;
    nd_ctx *ctx = r->ctx;
    int status;
    if ((status = mnist_load_split(ctx, r->prog->name, op->data_dir, "train", &r->train)) != 0 ||
        (status = mnist_load_split(ctx, r->prog->name, op->data_dir, "t10k", &r->test)) != 0)
        return status;
    if (op->limit > 0 && (nd_dataset_limit(ctx, r->train, op->limit, NULL) != ND_OK ||
                          nd_dataset_limit(ctx, r->test, op->limit, NULL) != ND_OK))
        return fail(r, "--limit");
    mnist_pixel_stats(r->train, &r->mean, &r->std); // inputs are standardised with these
    // every rank walks the same seeded global batches and takes its share of each
    if (nd_loader_create(ctx, r->train, op->batch, true, false, op->seed, &r->train_ld) != ND_OK ||
        nd_loader_create(ctx, r->test, op->batch, false, false, 0, &r->test_ld) != ND_OK ||
        nd_loader_shard(ctx, r->train_ld, r->rank, r->ranks) != ND_OK ||
        nd_loader_shard(ctx, r->test_ld, r->rank, r->ranks) != ND_OK)
        return fail(r, "loaders");
    int rows = r->train_ld->rows;
    r->x = nd_tensor_create(ctx, 4, (int[]){rows, 1, 28, 28}, false);
    r->x_test = nd_tensor_create(ctx, 4, (int[]){rows, 1, 28, 28}, false);
    r->labels = malloc((size_t)rows * sizeof *r->labels);
    if (!r->x || !r->x_test) return fail(r, "batch buffers");
    if (!r->labels) return fprintf(stderr, "%s: out of memory\n", r->prog->name), 1;

    // the model (its parameters in one block: one all-reduce), Adam, the checkpoint list
    r->model = r->prog->model_create(ctx, rng, r->prog->user);
    if (!r->model || !nd_module_flatten(ctx, r->model) ||
        nd_module_params(ctx, r->model, &r->params) != ND_OK ||
        nd_module_state(ctx, r->model, &r->state) != ND_OK)
        return fail(r, "model");
    nd_adam_options adam = ND_ADAM_DEFAULT;
    adam.lr = op->lr;
    r->opt = nd_adam_create(ctx, r->params.items, r->params.n, &adam);
    if (!r->opt || mnist_ckpt_make(ctx, &r->state, r->opt, &r->ckpt) != 0)
        return fail(r, "optimizer");
    return 0;
}

// ------------------------------------------------------------------------------------------------
// checkpoints: the model's and Adam's state, and three metadata entries parsed strictly

static int resume(run *r)
{
    // one read: the tensors and the metadata ("epochs", the pixel standardisation), strictly
    if (mnist_resume(r->ctx, r->prog->name, r->op.resume_path, &r->ckpt, &r->epochs_before,
                     &r->mean, &r->std) != 0)
        return 1;
    if (r->root)
        fprintf(stderr, "resumed %s: %d epochs, %ld steps trained\n", r->op.resume_path,
                r->epochs_before, nd_optimizer_steps(r->opt));
    return 0;
}

static int save(run *r)
{
    char n_epochs[32], m_text[32], s_text[32];
    snprintf(n_epochs, sizeof n_epochs, "%d", r->epochs_before + r->op.epochs);
    snprintf(m_text, sizeof m_text, "%.17g", r->mean);
    snprintf(s_text, sizeof s_text, "%.17g", r->std);
    nd_meta meta[] = {{"example", r->prog->name},
                      {"epochs", n_epochs},
                      {"pixel_mean", m_text},
                      {"pixel_std", s_text}};
    nd_save_options so = ND_SAVE_DEFAULT;
    so.meta = meta, so.n_meta = 4;
    if (nd_save(r->ctx, r->op.save_path, r->ckpt.items, r->ckpt.n, &so) != ND_OK)
        return fail(r, "--save");
    fprintf(stderr, "saved %s\n", r->op.save_path);
    return 0;
}

// ------------------------------------------------------------------------------------------------
// training: forward, one check, backward, Adam, reset the arena

static void print_metrics(const run *r, const double *sums, double per)
{
    for (int k = 0; k < r->prog->n_metrics; k++)
        fprintf(stderr, "  %s %.1f", r->prog->metric_labels[k], sums[k] * per);
}

/* The epoch's sums over every rank: loss (times images), right answers, images, and each metric's
 * mean per batch, also per rank (an ODE block's NFE differs between ranks' shares); the time each
 * rank waited for the others so far */
static int epoch_totals(run *r, double *loss_sum, long *right, long *seen, const double *sums,
                        int steps)
{
    double v[3] = {*loss_sum, (double)*right, (double)*seen};
    nd_status st = nd_dist_reduce(r->ctx, r->dist, ND_DIST_SUM, v, 3);
    for (int k = 0; st == ND_OK && k < r->prog->n_metrics; k++) {
        st = nd_dist_gather(r->ctx, r->dist, sums[k] / steps, r->rank_metrics[k]);
        r->metrics[k] = 0;
        for (int q = 0; q < r->ranks; q++) r->metrics[k] += r->rank_metrics[k][q] / r->ranks;
    }
    r->dist_stats = nd_dist_get_stats(r->dist);
    if (st == ND_OK) st = nd_dist_gather(r->ctx, r->dist, r->dist_stats.wait_seconds, r->rank_wait);
    if (st != ND_OK) return fail(r, "epoch totals");
    *loss_sum = v[0], *right = (long)v[1], *seen = (long)v[2];
    return 0;
}

/* test accuracy over every rank's share of the test set */
static int evaluate(run *r)
{
    long right = 0, seen = 0;
    int status = mnist_evaluate(r->ctx, r->prog->name, r->model, r->test_ld, r->x_test, r->labels,
                                r->mean, r->std, &right, &seen);
    if (agree(r, status, "evaluation")) return 1;
    double v[2] = {(double)right, (double)seen};
    if (nd_dist_reduce(r->ctx, r->dist, ND_DIST_SUM, v, 2) != ND_OK) return fail(r, "evaluation");
    r->test_acc = v[1] > 0 ? v[0] / v[1] : NAN;
    return 0;
}

/* with several ranks: each rank's metrics and waiting time, and rank 0's communication time */
static void print_ranks(const run *r)
{
    if (r->ranks < 2) return;
    for (int k = 0; k < r->prog->n_metrics; k++) {
        fprintf(stderr, "  %s per rank:", r->prog->metric_labels[k]);
        for (int q = 0; q < r->ranks; q++) fprintf(stderr, " %.1f", r->rank_metrics[k][q]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "  %d ranks: waited for each other", r->ranks);
    for (int q = 0; q < r->ranks; q++) fprintf(stderr, " %.2f", r->rank_wait[q]);
    fprintf(stderr, " s; rank 0 all-reduced %ld gradients (%.0f kB each) in %.2f s\n",
            r->dist_stats.grad_allreduces,
            r->dist_stats.bytes_reduced / 1e3 / fmax(1, (double)r->dist_stats.grad_allreduces),
            r->dist_stats.comm_seconds);
}

static int train_epoch(run *r, int epoch, nd_lr_schedule *schedule, long *run_step)
{
    nd_ctx *ctx = r->ctx;
    bool tty = isatty(STDERR_FILENO);
    int steps_per_epoch = (r->train->n + r->op.batch - 1) / r->op.batch, m, step = 0;
    double t0 = clock_wall_ms() / 1e3, loss_sum = 0, t_print = 0, sums[CLASSIFY_MAX_METRICS] = {0};
    double c0 =
        clock_cpu_ms() / 1e3; // the process's CPU time: steadier than wall on a busy machine
    long right = 0, seen = 0;
    while (nd_loader_next(ctx, r->train_ld, r->x, NULL, r->labels, &m) == ND_OK && m > 0) {
        mnist_standardise(r->x, r->mean, r->std);
        nd_tensor *logits = nd_module_forward(ctx, r->model, r->x);                 // (m, 10)
        nd_tensor *loss = nd_cross_entropy(ctx, logits, r->labels, ND_REDUCE_MEAN); // scalar
        nd_optimizer_zero_grad(r->opt);
        nd_optimizer_set_lr(r->opt, nd_lr_at(schedule, (int)(*run_step)++));
        if (loss) nd_backward(ctx, loss, 0);
        // the ranks meet here, a failed one too: the mean gradient of the global batch, or the
        // error of the first rank that failed, on every rank
        if (nd_dist_allreduce_grads(ctx, r->dist, r->params.items, r->params.n, m) != ND_OK ||
            nd_optimizer_step(ctx, r->opt) != ND_OK)
            return fail(r, "training step");
        double v[CLASSIFY_MAX_METRICS] = {0};
        if (r->prog->metrics) r->prog->metrics(r->model, v, r->prog->user);
        for (int k = 0; k < r->prog->n_metrics; k++) sums[k] += v[k];
        loss_sum += nd_item(loss) * m;
        right += lround(nd_accuracy(logits, r->labels) * m);
        seen += m, step++;
        nd_ctx_reset(ctx); // frees this step's graph, keeps the memory: no malloc from here
        double t = clock_wall_ms() / 1e3;
        if (r->root && tty && (t - t_print > 0.2 || step == steps_per_epoch)) {
            t_print = t;
            fprintf(stderr, "\repoch %d/%d  batch %4d/%d  loss %.4f  acc %5.2f%%",
                    r->epochs_before + epoch, r->epochs_before + r->op.epochs, step,
                    steps_per_epoch, loss_sum / seen, 100.0 * right / seen);
            print_metrics(r, sums, 1.0 / step);
            fprintf(stderr, "  %5.0f img/s ", seen * (double)r->ranks / (t - t0));
        }
    }
    if (agree(r, nd_ctx_error(ctx) != ND_OK ? fail(r, "next batch") : 0, "next batch")) return 1;
    double secs = clock_wall_ms() / 1e3 - t0, cpu_secs = clock_cpu_ms() / 1e3 - c0;
    if (epoch_totals(r, &loss_sum, &right, &seen, sums, step) != 0) return 1;
    r->train_seconds += secs, r->train_cpu_seconds += cpu_secs, r->train_images += seen;
    r->last_loss = loss_sum / seen, r->last_train_acc = (double)right / seen;
    if (evaluate(r) != 0) return 1;
    if (!r->root) return 0;
    fprintf(stderr, "%sepoch %d/%d  loss %.4f  train acc %.2f%%", tty ? "\r" : "",
            r->epochs_before + epoch, r->epochs_before + r->op.epochs, r->last_loss,
            100 * r->last_train_acc);
    print_metrics(r, r->metrics, 1);
    fprintf(stderr, "  %.0f img/s  %.1f s  test acc %.2f%%\n", seen / secs, secs,
            100 * r->test_acc);
    print_ranks(r);
    return 0;
}

static int train(run *r)
{
    int steps_per_epoch = (r->train->n + r->op.batch - 1) / r->op.batch;
    // the learning rate falls from --lr to 0 along a cosine over this run's steps
    nd_lr_schedule schedule = nd_lr_cosine(r->op.lr, r->op.epochs * steps_per_epoch, 0);
    long run_step = 0;
    for (int epoch = 1; epoch <= r->op.epochs; epoch++) {
        int status = train_epoch(r, epoch, &schedule, &run_step);
        if (status != 0) return status;
    }
    if (r->op.epochs > 0) return 0;
    // evaluation only (--epochs 0 --resume FILE)
    if (evaluate(r) != 0) return 1;
    if (r->root)
        fprintf(stderr, "test accuracy %.2f%% (%d images)\n", 100 * r->test_acc, r->test->n);
    return 0;
}

// ------------------------------------------------------------------------------------------------

static void print_json(const run *r)
{
    const options *op = &r->op;
    bool trained = op->epochs > 0; // training figures are 0 when --epochs 0 only evaluated
    json_writer w = json_begin(stdout);
    json_str(&w, "example", r->prog->name);
    json_str(&w, "real", ND_REAL_NAME);
    if (r->prog->json_members) r->prog->json_members(&w, r->prog->user);
    for (int k = 0; k < r->prog->n_metrics; k++)
        json_num(&w, r->prog->metric_keys[k], trained ? r->metrics[k] : 0);
    json_str(&w, "data", op->data_dir);
    json_int(&w, "n_train", r->train->n);
    json_int(&w, "n_test", r->test->n);
    json_int(&w, "epochs", op->epochs);
    json_int(&w, "epochs_total", r->epochs_before + op->epochs);
    json_int(&w, "batch", op->batch);
    json_num(&w, "lr", op->lr);
    json_u64(&w, "seed", op->seed);
    json_num(&w, "train_loss", trained ? r->last_loss : 0);
    json_num(&w, "train_accuracy", trained ? r->last_train_acc : 0);
    json_num(&w, "test_accuracy", r->test_acc);
    json_num(&w, "seconds_per_epoch", trained ? r->train_seconds / op->epochs : 0);
    json_num(&w, "cpu_seconds_per_epoch", trained ? r->train_cpu_seconds / op->epochs : 0);
    json_num(&w, "images_per_second",
             r->train_seconds > 0 ? r->train_images / r->train_seconds : 0);
    json_int(&w, "parameters", (long long)nd_param_list_numel(&r->params));
    json_int(&w, "ranks", r->ranks);
    json_num(&w, "comm_seconds", r->dist_stats.comm_seconds); // rank 0's gradient all-reduces
    json_array(&w, "wait_seconds_per_rank");
    for (int q = 0; q < r->ranks; q++) json_num(&w, NULL, r->rank_wait[q]);
    json_close(&w);
    for (int k = 0; k < r->prog->n_metrics; k++) {
        char key[96];
        snprintf(key, sizeof key, "%s_per_rank", r->prog->metric_keys[k]);
        json_array(&w, key);
        for (int q = 0; q < r->ranks; q++) json_num(&w, NULL, trained ? r->rank_metrics[k][q] : 0);
        json_close(&w);
    }
    json_end(&w);
}

static void cleanup(run *r)
{
    mnist_ckpt_free(&r->ckpt);
    nd_optimizer_destroy(r->opt);
    nd_param_list_destroy(&r->params);
    nd_param_list_destroy(&r->state);
    nd_module_destroy(r->model);
    nd_tensor_destroy(r->x);
    nd_tensor_destroy(r->x_test);
    free(r->labels);
    nd_loader_destroy(r->train_ld);
    nd_loader_destroy(r->test_ld);
    nd_dataset_destroy(r->train);
    nd_dataset_destroy(r->test);
    nd_dist_destroy(r->dist);
    nd_ctx_destroy(r->ctx);
}

int classify_main(const classify_program *prog, int argc, char **argv)
{
    run r = {.prog = prog, .test_acc = NAN, .last_loss = NAN, .last_train_acc = NAN};
    if (!(r.ctx = nd_ctx_create(0))) return fprintf(stderr, "%s: out of memory\n", prog->name), 1;
    // one rank, or one of mpirun's: before the flags, as MPI may take its own out of argv
    if (nd_dist_init(r.ctx, &argc, &argv, &r.dist) != ND_OK) {
        fail(&r, "MPI");
        return cleanup(&r), 1;
    }
    r.rank = nd_dist_rank(r.dist), r.ranks = nd_dist_size(r.dist), r.root = r.rank == 0;
    int rc = parse_options(prog, argc, argv, &r.op);
    if (rc == FLAGS_OK && (r.ranks > CLASSIFY_MAX_RANKS || r.op.batch < r.ranks)) {
        fprintf(stderr, "%s: %d ranks: at most %d, and --batch %d needs at least one image each\n",
                prog->name, r.ranks, CLASSIFY_MAX_RANKS, r.op.batch);
        rc = FLAGS_ERROR;
    }
    if (rc != FLAGS_OK) return cleanup(&r), flags_exit_status(rc);
    nd_rng rng = nd_rng_seed(r.op.seed);
    int status = agree(&r, setup(&r, &rng), "setup");
    // every rank starts from rank 0's weights (the same seed gives the same ones anyway)
    if (status == 0 && nd_dist_broadcast_module(r.ctx, r.dist, r.model) != ND_OK)
        status = fail(&r, "broadcast");
    if (status == 0 && r.op.resume_path) status = agree(&r, resume(&r), "--resume");
    if (status == 0) {
        if (r.root) {
            fprintf(stderr, "%s: %d train / %d test images; %zu parameters; batch %d",
                    r.op.data_dir, r.train->n, r.test->n, nd_param_list_numel(&r.params),
                    r.op.batch);
            if (r.ranks > 1) fprintf(stderr, " over %d ranks", r.ranks);
            fprintf(stderr, ", lr %g, %s", r.op.lr, ND_REAL_NAME);
            if (prog->describe) prog->describe(stderr, prog->user);
            fprintf(stderr, "\n");
        }
        status = train(&r);
    }
    // only rank 0 writes; every rank has the same weights
    if (status == 0 && r.root && r.op.save_path) status = save(&r);
    if (status == 0 && r.root && r.op.json) print_json(&r);
    cleanup(&r);
    return status;
}

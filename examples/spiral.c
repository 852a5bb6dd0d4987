/* SPDX-License-Identifier: MIT
 * examples/spiral.c: torchdiffeq's ode_demo in C. A neural ODE learns the spiral
 * dy/dt = (y^3) A, A = [[-0.1, 2], [-2, -0.1]], from y0 = [2, 0] over t in [0, 25].
 *
 * Each iteration fits a batch of 20 windows of 10 consecutive points (the first 10 times of the
 * grid, started from 20 random points of the true trajectory) with the model
 * dy/dt = Linear(50, 2)(tanh(Linear(2, 50)(y^3))), L1 loss, RMSprop lr 1e-3. Every 20 iterations
 * it prints the batch loss, the L1 loss of the whole trajectory from y0 (the test loss), the
 * function evaluations of the iteration's forward and backward passes, and the time.
 *
 * What good looks like: the test loss falls from about 1.5 to below 0.15 within the 2000
 * iterations, oscillating as in torchdiffeq's demo (whose best is 0.088), with or without
 * --adjoint; a run takes a few seconds. With --adjoint --norm seminorm the backward pass
 * integrates the adjoint with the seminorm (on this problem it saves almost nothing: the windows
 * are short and the state is tiny; see bench/ for workloads where it pays).
 *
 *   ./build/examples/spiral --adjoint --norm seminorm --plot spiral.png
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodal.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

#define DATA_SIZE 1000 /* points of the true trajectory */
#define BATCH_TIME 10  /* points per training window */
#define BATCH_SIZE 20  /* windows per batch */
#define TEST_FREQ 20

typedef struct {
    int iters;
    bool adjoint;
    nd_norm_kind norm;
    nd_ode_method method;
    double rtol, atol, lr;
    bool adam;
    unsigned long seed;
    bool json;
    const char *plot;
} options;

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--iters N] [--adjoint] [--norm rms|seminorm] [--method NAME]\n"
            "          [--rtol R] [--atol A] [--optimizer rmsprop|adam] [--lr LR] [--seed S]\n"
            "          [--json] [--plot FILE.png]\n",
            prog);
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.iters = 2000, .norm = ND_NORM_RMS, .method = ND_DOPRI5, .rtol = 1e-7,
                   .atol = 1e-9, .lr = 1e-3, .seed = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--adjoint")) o->adjoint = true;
        else if (!strcmp(a, "--json")) o->json = true;
        else if (!v) return usage(argv[0]), -1;
        else if (!strcmp(a, "--iters")) o->iters = atoi(v), i++;
        else if (!strcmp(a, "--rtol")) o->rtol = atof(v), i++;
        else if (!strcmp(a, "--atol")) o->atol = atof(v), i++;
        else if (!strcmp(a, "--lr")) o->lr = atof(v), i++;
        else if (!strcmp(a, "--seed")) o->seed = strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--plot")) o->plot = v, i++;
        else if (!strcmp(a, "--optimizer")) o->adam = !strcmp(v, "adam"), i++;
        else if (!strcmp(a, "--norm")) {
            if (!nd_ode_norm_from_name(v, &o->norm)) return usage(argv[0]), -1;
            i++;
        } else if (!strcmp(a, "--method")) {
            if (!nd_ode_method_from_name(v, &o->method))
                return fprintf(stderr, "unknown method %s\n", v), -1;
            i++;
        } else {
            return usage(argv[0]), -1;
        }
    }
    if (o->iters < 0) return usage(argv[0]), -1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* this process's CPU time: steadier than wall time when the machine is shared */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------------
 * The true system and the model's dynamics.
 */
static int true_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *data)
{
    (void)t;
    nd_tensor *A = data;                                /* (2, 2) */
    *dy = nd_matmul(ctx, nd_pow_scalar(ctx, y, 3), A); /* (B, 2) */
    return *dy ? 0 : -1;
}

static int model_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *data)
{
    (void)t;
    nd_module *net = data;
    *dy = nd_module_forward(ctx, net, nd_pow_scalar(ctx, y, 3)); /* (B, 2) */
    return *dy ? 0 : -1;
}

static int fail(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "spiral: %s: %s\n", what, nd_ctx_errmsg(ctx));
    return 1;
}

#ifdef HAVE_PLOT
/* Trajectories against time, the phase portrait, and the learned vector field, as in the demo. */
static int write_plot(const char *path, nd_ctx *ctx, nd_module *net, const nd_tensor *t,
                      const nd_tensor *true_y, const nd_tensor *pred_y)
{
    /* components as separate series: true (x, y) and learned (x, y) against t */
    static double ts[DATA_SIZE], tx[DATA_SIZE], ty[DATA_SIZE], lx[DATA_SIZE], ly[DATA_SIZE];
    for (int i = 0; i < DATA_SIZE; i++) {
        ts[i] = t->data[i];
        tx[i] = true_y->data[2 * i], ty[i] = true_y->data[2 * i + 1];
        lx[i] = pred_y->data[2 * i], ly[i] = pred_y->data[2 * i + 1];
    }
    plot_figure *fig = plot_create(3, 420, 420, "Neural ODE on the spiral");
    if (!fig) return -1;
    plot_axes(fig, 0, "Trajectories", "t", "x, y", 0, 25, -2.2, 2.2);
    plot_line(fig, 0, ts, tx, DATA_SIZE, 1, PLOT_GREEN, 1.5, false);
    plot_line(fig, 0, ts, ty, DATA_SIZE, 1, PLOT_BLUE, 1.5, false);
    plot_line(fig, 0, ts, lx, DATA_SIZE, 1, PLOT_GREEN, 1.5, true);
    plot_line(fig, 0, ts, ly, DATA_SIZE, 1, PLOT_BLUE, 1.5, true);
    plot_legend(fig, 0, 0, "true x, y", PLOT_BLACK, false);
    plot_legend(fig, 0, 1, "learned", PLOT_BLACK, true);

    plot_axes(fig, 1, "Phase portrait", "x", "y", -2.2, 2.2, -2.2, 2.2);
    plot_line(fig, 1, tx, ty, DATA_SIZE, 1, PLOT_GREEN, 1.5, false);
    plot_line(fig, 1, lx, ly, DATA_SIZE, 1, PLOT_BLUE, 1.5, true);
    plot_legend(fig, 1, 0, "true", PLOT_GREEN, false);
    plot_legend(fig, 1, 1, "learned", PLOT_BLUE, true);

    /* the learned field on a 21 x 21 grid, arrows scaled to a common length */
    enum { G = 21 };
    nd_tensor *grid = nd_tensor_new(ctx, 2, (int[]){G * G, 2}); /* (G*G, 2) */
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++)
            grid->data[2 * (i * G + j)] = -2 + 4.0 * j / (G - 1),
                                   grid->data[2 * (i * G + j) + 1] = -2 + 4.0 * i / (G - 1);
    nd_tensor *field = NULL;
    if (model_dynamics(ctx, NULL, grid, &field, net) != 0) return plot_destroy(fig), -1;
    plot_axes(fig, 2, "Learned vector field", "x", "y", -2.2, 2.2, -2.2, 2.2);
    for (int k = 0; k < G * G; k++) {
        double dx = field->data[2 * k], dy = field->data[2 * k + 1], len = hypot(dx, dy);
        if (len > 0)
            plot_arrow(fig, 2, grid->data[2 * k], grid->data[2 * k + 1], 0.15 * dx / len,
                       0.15 * dy / len, PLOT_GRAY);
    }
    int rc = plot_save(fig, path);
    plot_destroy(fig);
    return rc;
}
#endif

int main(int argc, char **argv)
{
    options opt;
    if (parse_options(argc, argv, &opt) != 0) return 2;
    nd_ctx *ctx = nd_ctx_create(0);
    nd_rng rng = nd_rng_seed(opt.seed);
    if (!ctx) return fprintf(stderr, "spiral: out of memory\n"), 1;

    /* ----------------------------------------------------------------------------------------
     * Data: the true trajectory, dopri5 at rtol 1e-7 / atol 1e-9, kept in persistent tensors.
     */
    nd_tensor *t = nd_tensor_create(ctx, 1, (int[]){DATA_SIZE}, false);           /* (1000,) */
    nd_tensor *true_y0 = nd_tensor_create(ctx, 2, (int[]){1, 2}, false);          /* (1, 2) */
    nd_tensor *true_y = nd_tensor_create(ctx, 3, (int[]){DATA_SIZE, 1, 2}, false); /* (1000, 1, 2) */
    nd_tensor *A = nd_tensor_create(ctx, 2, (int[]){2, 2}, false);                /* (2, 2) */
    if (!t || !true_y0 || !true_y || !A) return fail(ctx, "allocating the data");
    for (int i = 0; i < DATA_SIZE; i++) t->data[i] = 25.0 * i / (DATA_SIZE - 1);
    true_y0->data[0] = 2, true_y0->data[1] = 0;
    memcpy(A->data, (nd_real[]){-0.1, 2.0, -2.0, -0.1}, sizeof(nd_real[4]));
    nd_ode_options truth = ND_ODE_DEFAULT;
    nd_tensor *sol = nd_odeint(ctx, true_dynamics, A, true_y0, t, NULL, 0, &truth);
    if (!sol) return fail(ctx, "solving the true system");
    memcpy(true_y->data, sol->data, true_y->size * sizeof(nd_real));
    nd_ctx_reset(ctx);

    /* ----------------------------------------------------------------------------------------
     * Model: Linear(2, 50) - tanh - Linear(50, 2) on y^3, weights N(0, 0.1), biases 0.
     */
    nd_module *net = nd_mlp_create(ctx, 3, (int[]){2, 50, 2}, ND_ACT_TANH, &rng);
    nd_param_list params = {0};
    if (!net || nd_module_params(ctx, net, &params) != ND_OK) return fail(ctx, "building the model");
    nd_tensor *weights[4]; /* 0.weight (50, 2), 0.bias (50,), 2.weight (2, 50), 2.bias (2,) */
    for (int i = 0; i < params.n; i++) {
        weights[i] = params.items[i].tensor;
        if (strstr(params.items[i].name, "weight"))
            nd_init_normal(weights[i], &rng, 0, 0.1);
        else
            memset(weights[i]->data, 0, weights[i]->size * sizeof(nd_real));
    }
    nd_optimizer *optim =
        opt.adam ? nd_adam_create(ctx, params.items, params.n,
                                  &(nd_adam_options){.lr = opt.lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8})
                 : nd_rmsprop_create(ctx, params.items, params.n,
                                     &(nd_rmsprop_options){.lr = opt.lr, .alpha = 0.99, .eps = 1e-8});
    if (!optim) return fail(ctx, "creating the optimizer");

    nd_ode_options ode = ND_ODE_DEFAULT;
    ode.grad = opt.adjoint ? ND_GRAD_ADJOINT : ND_GRAD_BACKPROP;
    ode.solver.method = ode.adjoint.method = opt.method;
    ode.solver.rtol = ode.adjoint.rtol = opt.rtol;
    ode.solver.atol = ode.adjoint.atol = opt.atol;
    ode.adjoint.norm = opt.norm;
    if (opt.method <= ND_RK4) ode.solver.step_size = ode.adjoint.step_size = 25.0 / (DATA_SIZE - 1);

    /* windows start anywhere their 10 points fit */
    int starts[DATA_SIZE - BATCH_TIME];
    for (int i = 0; i < DATA_SIZE - BATCH_TIME; i++) starts[i] = i;
    nd_tensor *batch_t = nd_tensor_create(ctx, 1, (int[]){BATCH_TIME}, false);            /* (10,) */
    nd_tensor *batch_y0 = nd_tensor_create(ctx, 2, (int[]){BATCH_SIZE, 2}, false);        /* (20, 2) */
    nd_tensor *batch_y = nd_tensor_create(ctx, 3, (int[]){BATCH_TIME, BATCH_SIZE, 2}, false); /* (10, 20, 2) */
    if (!batch_t || !batch_y0 || !batch_y) return fail(ctx, "allocating a batch");
    memcpy(batch_t->data, t->data, BATCH_TIME * sizeof(nd_real));

    /* ----------------------------------------------------------------------------------------
     * Training.
     */
    if (!opt.json)
        printf("spiral: %s, %s, rtol %g, atol %g, %s%s\n", nd_ode_method_name(opt.method),
               opt.adjoint ? "adjoint" : "backprop through the solver", opt.rtol, opt.atol,
               opt.adjoint ? (opt.norm == ND_NORM_SEMINORM ? "seminorm" : "rms norm") : "",
               opt.adjoint ? "" : "(norm unused)");
    double test_loss = NAN, best_test = INFINITY, train_seconds = 0, window_seconds = 0,
           train_cpu = 0;
    long nfe_f = 0, nfe_b = 0, window_f = 0, window_b = 0;
    int window_iters = 0;
    for (int itr = 1; itr <= opt.iters; itr++) {
        /* a batch: 20 distinct starts (a partial Fisher-Yates shuffle) */
        for (int b = 0; b < BATCH_SIZE; b++) {
            int j = b + (int)nd_rng_below(&rng, DATA_SIZE - BATCH_TIME - b);
            int s = starts[j];
            starts[j] = starts[b], starts[b] = s;
            for (int k = 0; k < 2; k++) {
                batch_y0->data[2 * b + k] = true_y->data[2 * s + k];
                for (int i = 0; i < BATCH_TIME; i++)
                    batch_y->data[(i * BATCH_SIZE + b) * 2 + k] = true_y->data[2 * (s + i) + k];
            }
        }
        double t0 = now(), c0 = cpu_now();
        nd_tensor *pred = nd_odeint(ctx, model_dynamics, net, batch_y0, batch_t, weights, params.n,
                                    &ode); /* (10, 20, 2) */
        nd_tensor *loss = nd_l1_loss(ctx, pred, batch_y, ND_REDUCE_MEAN);
        nd_optimizer_zero_grad(optim);
        if (!loss || nd_backward(ctx, loss, 0) != ND_OK || nd_optimizer_step(ctx, optim) != ND_OK)
            return fail(ctx, "training step");
        double batch_loss = nd_item(loss);
        nd_ode_stats stats = *nd_odeint_stats(pred); /* op-owned: read before the reset */
        nd_ctx_reset(ctx);
        double dt = now() - t0;
        train_cpu += cpu_now() - c0;
        train_seconds += dt, window_seconds += dt, window_iters++;
        nfe_f += stats.forward.nfe, nfe_b += stats.backward.nfe;
        window_f += stats.forward.nfe, window_b += stats.backward.nfe;

        if (itr % TEST_FREQ == 0 || itr == opt.iters) {
            bool prev = nd_ctx_set_grad(ctx, false);
            nd_tensor *full = nd_odeint(ctx, model_dynamics, net, true_y0, t, NULL, 0, &ode);
            nd_tensor *tl = nd_l1_loss(ctx, full, true_y, ND_REDUCE_MEAN);
            nd_ctx_set_grad(ctx, prev);
            if (!tl) return fail(ctx, "test solve");
            test_loss = nd_item(tl);
            if (test_loss < best_test) best_test = test_loss;
            nd_ctx_reset(ctx);
            if (!opt.json)
                printf("iter %5d | batch loss %.4f | test loss %.4f | NFE-F %5.1f NFE-B %5.1f | "
                       "%.3f ms/iter\n",
                       itr, batch_loss, test_loss, (double)window_f / window_iters,
                       (double)window_b / window_iters, 1e3 * window_seconds / window_iters);
            fflush(stdout);
            window_seconds = 0, window_f = window_b = 0, window_iters = 0;
        }
    }

    /* ----------------------------------------------------------------------------------------
     * Results: the picture and the numbers.
     */
    int status = 0;
    if (opt.plot) {
#ifdef HAVE_PLOT
        bool prev = nd_ctx_set_grad(ctx, false);
        nd_tensor *full = nd_odeint(ctx, model_dynamics, net, true_y0, t, NULL, 0, &ode);
        if (!full || write_plot(opt.plot, ctx, net, t, true_y, full) != 0) {
            fprintf(stderr, "spiral: cannot write %s%s%s\n", opt.plot, full ? "" : ": ",
                    full ? "" : nd_ctx_errmsg(ctx));
            status = 1;
        } else if (!opt.json) {
            printf("wrote %s\n", opt.plot);
        }
        nd_ctx_set_grad(ctx, prev);
        nd_ctx_reset(ctx);
#else
        fprintf(stderr, "spiral: built without cairo: no picture (install libcairo2-dev)\n");
        status = 1;
#endif
    }
    int iters = opt.iters > 0 ? opt.iters : 1;
    if (opt.json)
        printf("{\"iters\": %d, \"test_loss\": %.6g, \"best_test_loss\": %.6g, "
               "\"nfe_forward_per_iter\": %.2f, \"nfe_backward_per_iter\": %.2f, "
               "\"ms_per_iter\": %.4f, \"cpu_ms_per_iter\": %.4f, \"method\": \"%s\", "
               "\"norm\": \"%s\", \"adjoint\": %s, "
               "\"rtol\": %g, \"atol\": %g, \"seed\": %lu, \"real\": \"%s\"}\n",
               opt.iters, test_loss, best_test, (double)nfe_f / iters, (double)nfe_b / iters,
               1e3 * train_seconds / iters, 1e3 * train_cpu / iters, nd_ode_method_name(opt.method),
               opt.norm == ND_NORM_SEMINORM ? "seminorm" : "rms", opt.adjoint ? "true" : "false",
               opt.rtol, opt.atol, opt.seed, ND_REAL_NAME);
    else
        printf("done: final test loss %.4f, best %.4f; %.1f NFE-F and %.1f NFE-B per iteration, "
               "%.3f ms per iteration\n",
               test_loss, best_test, (double)nfe_f / iters, (double)nfe_b / iters,
               1e3 * train_seconds / iters);

    nd_optimizer_destroy(optim);
    nd_param_list_destroy(&params);
    nd_module_destroy(net);
    nd_tensor *owned[7] = {t, true_y0, true_y, A, batch_t, batch_y0, batch_y};
    for (int i = 0; i < 7; i++) nd_tensor_destroy(owned[i]);
    nd_ctx_destroy(ctx);
    return status;
}

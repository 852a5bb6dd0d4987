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
 *   ./build/examples/spiral --adjoint --norm seminorm --plot spiral.png     (--help: the flags)
 * Exit status: 0 when training ran (good or not), 1 on a library error, 2 on bad flags.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "flags.h"
#include "json.h"
#include "nodal.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

#define DATA_SIZE 1000 /* points of the true trajectory */
#define BATCH_TIME 10  /* points per training window */
#define BATCH_SIZE 20  /* windows per batch */
#define TEST_FREQ 20

typedef struct {
    int iters, norm, method, optimizer;
    bool adjoint, json;
    double rtol, atol, lr;
    uint64_t seed;
    const char *plot;
} options;

static const char *const optimizer_names[] = {"rmsprop", "adam", NULL};
enum { OPT_RMSPROP, OPT_ADAM };

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.iters = 2000,
                   .norm = ND_NORM_RMS,
                   .method = ND_DOPRI5,
                   .rtol = 1e-7,
                   .atol = 1e-9,
                   .lr = 1e-3,
                   .seed = 0,
                   .optimizer = OPT_RMSPROP};
    const flag_spec flags[] = {
        FLAG_INT("iters", &o->iters, 0, 10000000, "training iterations"),
        FLAG_BOOL("adjoint", &o->adjoint, "gradients by the adjoint ODE (else backprop)"),
        FLAG_NORM(&o->norm, "the adjoint's norm"),
        FLAG_METHOD(&o->method, "the solver of both solves"),
        FLAG_DOUBLE("rtol", &o->rtol, 0, DBL_MAX, "relative tolerance of both solves"),
        FLAG_DOUBLE("atol", &o->atol, 0, DBL_MAX, "absolute tolerance of both solves"),
        FLAG_CHOICE("optimizer", &o->optimizer, optimizer_names, "the optimizer"),
        FLAG_POSITIVE("lr", &o->lr, "learning rate"),
        FLAG_U64("seed", &o->seed, "seeds the weights and the batches"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
        FLAG_STRING("plot", &o->plot, "FILE.png", "draw the trajectories and the field (cairo)"),
    };
    return flags_parse("spiral", "A neural ODE learns a spiral (torchdiffeq's ode_demo).", flags,
                       FLAGS_N(flags), argc, argv);
}

/* ---------------------------------------------------------------------------------------------
 * The true system and the model's dynamics.
 */
static int true_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *data)
{
    (void)t;
    nd_tensor *A = data;                               /* (2, 2) */
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
        for (int j = 0; j < G; j++) {
            grid->data[2 * (i * G + j)] = -2 + 4.0 * j / (G - 1);
            grid->data[2 * (i * G + j) + 1] = -2 + 4.0 * i / (G - 1);
        }
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

/* ---------------------------------------------------------------------------------------------
 * The run's persistent tensors, model and optimizer.
 */
typedef struct {
    nd_tensor *t, *true_y0, *true_y, *A;     /* (1000,), (1, 2), (1000, 1, 2), (2, 2) */
    nd_tensor *batch_t, *batch_y0, *batch_y; /* (10,), (20, 2), (10, 20, 2) */
    int starts[DATA_SIZE - BATCH_TIME];      /* window starts, shuffled in place */
    nd_module *net;
    nd_param_list params;
    nd_tensor *weights[4]; /* 0.weight (50, 2), 0.bias (50,), 2.weight (2, 50), 2.bias (2,) */
    nd_optimizer *optim;
    nd_ode_options ode;
} problem;

/* Data: the true trajectory, dopri5 at rtol 1e-7 / atol 1e-9, kept in persistent tensors. */
static int make_data(nd_ctx *ctx, problem *p)
{
    p->t = nd_tensor_create(ctx, 1, (int[]){DATA_SIZE}, false);
    p->true_y0 = nd_tensor_create(ctx, 2, (int[]){1, 2}, false);
    p->true_y = nd_tensor_create(ctx, 3, (int[]){DATA_SIZE, 1, 2}, false);
    p->A = nd_tensor_create(ctx, 2, (int[]){2, 2}, false);
    if (!p->t || !p->true_y0 || !p->true_y || !p->A) return fail(ctx, "allocating the data");
    for (int i = 0; i < DATA_SIZE; i++) p->t->data[i] = 25.0 * i / (DATA_SIZE - 1);
    p->true_y0->data[0] = 2, p->true_y0->data[1] = 0;
    memcpy(p->A->data, (nd_real[]){-0.1, 2.0, -2.0, -0.1}, sizeof(nd_real[4]));
    nd_ode_options truth = ND_ODE_DEFAULT;
    nd_tensor *sol = nd_odeint(ctx, true_dynamics, p->A, p->true_y0, p->t, NULL, 0, &truth);
    if (!sol) return fail(ctx, "solving the true system");
    memcpy(p->true_y->data, sol->data, p->true_y->size * sizeof(nd_real));
    nd_ctx_reset(ctx);

    /* windows start anywhere their 10 points fit */
    for (int i = 0; i < DATA_SIZE - BATCH_TIME; i++) p->starts[i] = i;
    p->batch_t = nd_tensor_create(ctx, 1, (int[]){BATCH_TIME}, false);
    p->batch_y0 = nd_tensor_create(ctx, 2, (int[]){BATCH_SIZE, 2}, false);
    p->batch_y = nd_tensor_create(ctx, 3, (int[]){BATCH_TIME, BATCH_SIZE, 2}, false);
    if (!p->batch_t || !p->batch_y0 || !p->batch_y) return fail(ctx, "allocating a batch");
    memcpy(p->batch_t->data, p->t->data, BATCH_TIME * sizeof(nd_real));
    return 0;
}

/* Model: Linear(2, 50) - tanh - Linear(50, 2) on y^3, weights N(0, 0.1), biases 0; the
 * optimizer; the solver options of training and test solves. */
static int make_model(nd_ctx *ctx, problem *p, const options *opt, nd_rng *rng)
{
    p->net = nd_mlp_create(ctx, 3, (int[]){2, 50, 2}, ND_ACT_TANH, rng);
    if (!p->net || nd_module_params(ctx, p->net, &p->params) != ND_OK)
        return fail(ctx, "building the model");
    for (int i = 0; i < p->params.n; i++) {
        p->weights[i] = p->params.items[i].tensor;
        if (strstr(p->params.items[i].name, "weight"))
            nd_init_normal(p->weights[i], rng, 0, 0.1);
        else
            memset(p->weights[i]->data, 0, p->weights[i]->size * sizeof(nd_real));
    }
    p->optim =
        opt->optimizer == OPT_ADAM
            ? nd_adam_create(
                  ctx, p->params.items, p->params.n,
                  &(nd_adam_options){.lr = opt->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8})
            : nd_rmsprop_create(ctx, p->params.items, p->params.n,
                                &(nd_rmsprop_options){.lr = opt->lr, .alpha = 0.99, .eps = 1e-8});
    if (!p->optim) return fail(ctx, "creating the optimizer");

    nd_ode_options *ode = &p->ode;
    *ode = ND_ODE_DEFAULT;
    ode->grad = opt->adjoint ? ND_GRAD_ADJOINT : ND_GRAD_BACKPROP;
    ode->solver.method = ode->adjoint.method = (nd_ode_method)opt->method;
    ode->solver.rtol = ode->adjoint.rtol = opt->rtol;
    ode->solver.atol = ode->adjoint.atol = opt->atol;
    ode->adjoint.norm = (nd_norm_kind)opt->norm;
    if (opt->method <= ND_RK4)
        ode->solver.step_size = ode->adjoint.step_size = 25.0 / (DATA_SIZE - 1);
    return 0;
}

static void problem_destroy(problem *p)
{
    nd_optimizer_destroy(p->optim);
    nd_param_list_destroy(&p->params);
    nd_module_destroy(p->net);
    nd_tensor *owned[7] = {p->t, p->true_y0, p->true_y, p->A, p->batch_t, p->batch_y0, p->batch_y};
    for (int i = 0; i < 7; i++) nd_tensor_destroy(owned[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Training.
 */

/* a batch: 20 distinct starts (a partial Fisher-Yates shuffle) */
static void draw_batch(problem *p, nd_rng *rng)
{
    for (int b = 0; b < BATCH_SIZE; b++) {
        int j = b + (int)nd_rng_below(rng, DATA_SIZE - BATCH_TIME - b);
        int s = p->starts[j];
        p->starts[j] = p->starts[b], p->starts[b] = s;
        for (int k = 0; k < 2; k++) {
            p->batch_y0->data[2 * b + k] = p->true_y->data[2 * s + k];
            for (int i = 0; i < BATCH_TIME; i++)
                p->batch_y->data[(i * BATCH_SIZE + b) * 2 + k] = p->true_y->data[2 * (s + i) + k];
        }
    }
}

/* the L1 loss of the whole trajectory from y0, grad mode off (NaN on error, in ctx) */
static double test_loss(nd_ctx *ctx, problem *p)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *full = nd_odeint(ctx, model_dynamics, p->net, p->true_y0, p->t, NULL, 0, &p->ode);
    nd_tensor *tl = nd_l1_loss(ctx, full, p->true_y, ND_REDUCE_MEAN);
    nd_ctx_set_grad(ctx, prev);
    double v = tl ? nd_item(tl) : NAN;
    nd_ctx_reset(ctx);
    return v;
}

typedef struct {
    double test_loss, best_test, train_ms, train_cpu_ms;
    long nfe_f, nfe_b;
} results;

static int train(nd_ctx *ctx, problem *p, const options *opt, nd_rng *rng, results *r)
{
    double window_ms = 0;
    long window_f = 0, window_b = 0;
    int window_iters = 0;
    for (int itr = 1; itr <= opt->iters; itr++) {
        draw_batch(p, rng);
        double t0 = clock_wall_ms(), c0 = clock_cpu_ms();
        nd_tensor *pred = nd_odeint(ctx, model_dynamics, p->net, p->batch_y0, p->batch_t,
                                    p->weights, p->params.n, &p->ode); /* (10, 20, 2) */
        nd_tensor *loss = nd_l1_loss(ctx, pred, p->batch_y, ND_REDUCE_MEAN);
        nd_optimizer_zero_grad(p->optim);
        if (!loss || nd_backward(ctx, loss, 0) != ND_OK ||
            nd_optimizer_step(ctx, p->optim) != ND_OK)
            return fail(ctx, "training step");
        double batch_loss = nd_item(loss);
        nd_ode_stats stats = *nd_odeint_stats(pred); /* op-owned: read before the reset */
        nd_ctx_reset(ctx);
        double dt = clock_wall_ms() - t0;
        r->train_cpu_ms += clock_cpu_ms() - c0;
        r->train_ms += dt, window_ms += dt, window_iters++;
        r->nfe_f += stats.forward.nfe, r->nfe_b += stats.backward.nfe;
        window_f += stats.forward.nfe, window_b += stats.backward.nfe;

        if (itr % TEST_FREQ == 0 || itr == opt->iters) {
            if (isnan(r->test_loss = test_loss(ctx, p))) return fail(ctx, "test solve");
            if (r->test_loss < r->best_test) r->best_test = r->test_loss;
            if (!opt->json)
                printf("iter %5d | batch loss %.4f | test loss %.4f | NFE-F %5.1f NFE-B %5.1f | "
                       "%.3f ms/iter\n",
                       itr, batch_loss, r->test_loss, (double)window_f / window_iters,
                       (double)window_b / window_iters, window_ms / window_iters);
            fflush(stdout);
            window_ms = 0, window_f = window_b = 0, window_iters = 0;
        }
    }
    return 0;
}

/* --plot: the learned trajectory from y0, then the picture */
static int picture(nd_ctx *ctx, problem *p, const options *opt)
{
#ifdef HAVE_PLOT
    int status = 0;
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *full = nd_odeint(ctx, model_dynamics, p->net, p->true_y0, p->t, NULL, 0, &p->ode);
    if (!full || write_plot(opt->plot, ctx, p->net, p->t, p->true_y, full) != 0) {
        fprintf(stderr, "spiral: cannot write %s%s%s\n", opt->plot, full ? "" : ": ",
                full ? "" : nd_ctx_errmsg(ctx));
        status = 1;
    } else if (!opt->json) {
        printf("wrote %s\n", opt->plot);
    }
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_reset(ctx);
    return status;
#else
    (void)ctx, (void)p, (void)opt;
    fprintf(stderr, "spiral: built without cairo: no picture (install libcairo2-dev)\n");
    return 1;
#endif
}

static void report(const options *opt, const results *r)
{
    double per = 1.0 / (opt->iters > 0 ? opt->iters : 1);
    if (!opt->json) {
        printf("done: final test loss %.4f, best %.4f; %.1f NFE-F and %.1f NFE-B per iteration, "
               "%.3f ms per iteration\n",
               r->test_loss, r->best_test, r->nfe_f * per, r->nfe_b * per, r->train_ms * per);
        return;
    }
    json_writer w = json_begin(stdout);
    json_int(&w, "iters", opt->iters);
    json_num(&w, "test_loss", r->test_loss);
    json_num(&w, "best_test_loss", r->best_test);
    json_num(&w, "nfe_forward_per_iter", r->nfe_f * per);
    json_num(&w, "nfe_backward_per_iter", r->nfe_b * per);
    json_num(&w, "ms_per_iter", r->train_ms * per);
    json_num(&w, "cpu_ms_per_iter", r->train_cpu_ms * per);
    json_str(&w, "method", nd_ode_method_name((nd_ode_method)opt->method));
    json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)opt->norm));
    json_bool(&w, "adjoint", opt->adjoint);
    json_num(&w, "rtol", opt->rtol);
    json_num(&w, "atol", opt->atol);
    json_u64(&w, "seed", opt->seed);
    json_str(&w, "real", ND_REAL_NAME);
    json_end(&w);
}

int main(int argc, char **argv)
{
    options opt;
    int rc = parse_options(argc, argv, &opt);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "spiral: out of memory\n"), 1;
    nd_rng rng = nd_rng_seed(opt.seed);
    problem p = {0};
    results r = {.test_loss = NAN, .best_test = INFINITY};
    int status = make_data(ctx, &p);
    if (status == 0) status = make_model(ctx, &p, &opt, &rng);
    if (status == 0 && !opt.json)
        printf("spiral: %s, %s, rtol %g, atol %g, %s%s\n",
               nd_ode_method_name((nd_ode_method)opt.method),
               opt.adjoint ? "adjoint" : "backprop through the solver", opt.rtol, opt.atol,
               opt.adjoint ? nd_ode_norm_name((nd_norm_kind)opt.norm) : "",
               opt.adjoint ? " norm" : "(norm unused)");
    if (status == 0) status = train(ctx, &p, &opt, &rng, &r);
    if (status == 0) { // a picture that cannot be written is an error, after the numbers
        if (opt.plot) status = picture(ctx, &p, &opt);
        report(&opt, &r);
    }
    problem_destroy(&p);
    nd_ctx_destroy(ctx);
    return status;
}

/* SPDX-License-Identifier: MIT
 * bench/bench_nn.c: one training step of examples/mnist.c's conv-net at batch 128, against the
 * GEMM calls that step makes. Prints one JSON object per line on stdout (progress on stderr):
 *   conv_step (threads 1 and 2)  conv 3x3 1->32, relu, maxpool 2, conv 3x3 32->64, relu,
 *                                maxpool 2, linear 3136->10, cross-entropy, Adam; batch 128 of
 *                                28x28 images: step time split into forward / backward / update,
 *                                images/s, and the bare GEMM calls of the step replayed alone
 *   conv_eval (threads 2)        the forward pass alone with grad off (what evaluation costs)
 *   odenet_eval (threads 1, 2)   one function evaluation of examples/odenet.c's ODE block on a
 *                                batch of 64: [x, t] (64, 17, 7, 7) -> conv 3x3 17->16, GroupNorm,
 *                                relu, conv 3x3 16->16, GroupNorm; forward, and forward + the VJP
 *                                the adjoint takes (dx and every parameter's gradient)
 *   odenet_profile (threads 1)   every layer of examples/odenet.c alone (downsampling, the ODE
 *                                block's dynamics, head) at batch 64: forward and VJP times, and
 *                                their share of a training step of 26 + 26 evaluations,
 *                                with the library's own GEMM choice when run alone (--case
 *                                odenet_profile); the other cases set NODAL_GEMM=blas
 *
 * The GEMM baseline is measured as bench_autograd does it: cblas_dgemm / cblas_sgemm are
 * interposed (the library calls them through the dynamic linker), one step's calls are recorded
 * (transposes, M, N, K, leading dims, alpha, beta) and replayed with the same cblas function on
 * buffers of the same sizes, alternating with training steps so both see the same machine load.
 * nodal's own threads (conv over images, group norm over samples) are set with nd_set_threads()
 * for each case, OpenBLAS's to 1 (its threaded path, called from two threads at once, contends and
 * allocates). malloc
 * and friends are interposed too (forwarded to glibc's __libc_*) and counted over the timed steps:
 * a steady-state training step should make none (mallocs_per_step 0). Allocations made inside the
 * GEMM calls (OpenBLAS's threaded path) are reported apart, as openblas_mallocs_per_step. The
 * step's GEMM flops at OpenBLAS's best rate (a 512^3 GEMM, peak_gflops) give a second floor,
 * peak_ms; peak_fraction = peak_ms / step_ms is the share of BLAS peak the whole step reaches.
 * Usage: bench_nn [--steps N] [--case NAME]   (N timed steps, default 20; NAME conv_step,
 *        conv_eval, odenet_eval or odenet_profile). Needs OpenBLAS; not built under sanitizers.
 */
#include <cblas.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"
#include "interpose.h"
#include "json.h"
#include "nodal.h"

#define BATCH 128
/* the channels of examples/mnist.c's two conv layers (its C1, C2) */
#ifndef C1
#define C1 32
#endif
#ifndef C2
#define C2 64
#endif
#define STR(x) #x
#define XSTR(x) STR(x)
#define MODEL_NAME "conv" XSTR(C1) "-pool-conv" XSTR(C2) "-pool-linear"

/* --------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static void die(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "bench_nn: %s: %s (%s)\n", what, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    exit(1);
}

/* --------------------------------------------------------------------------------------------- */
/* the model of examples/mnist.c, seeded random images and labels                                 */

typedef struct {
    nd_module *model;
    nd_param_list params;
    nd_optimizer *opt;
    nd_tensor *x; /* (BATCH, 1, 28, 28) in [0, 1] */
    int labels[BATCH];
} convnet;

static void convnet_create(nd_ctx *ctx, convnet *c)
{
    memset(c, 0, sizeof *c);
    nd_rng rng = nd_rng_seed(1);
    nd_module *layers[] = {
        nd_conv2d_create(ctx, 1, C1, 3, 1, 1, true, &rng), /* (B, C1, 28, 28) */
        nd_activation_create(ctx, ND_ACT_RELU),
        nd_max_pool2d_create(ctx, 2, 2),                    /* (B, C1, 14, 14) */
        nd_conv2d_create(ctx, C1, C2, 3, 1, 1, true, &rng), /* (B, C2, 14, 14) */
        nd_activation_create(ctx, ND_ACT_RELU),
        nd_max_pool2d_create(ctx, 2, 2),                   /* (B, C2, 7, 7) */
        nd_flatten_create(ctx),                            /* (B, C2 * 49) */
        nd_linear_create(ctx, C2 * 7 * 7, 10, true, &rng), /* (B, 10) */
    };
    c->model = nd_sequential_create(ctx, 8, layers);
    if (!c->model || nd_module_params(ctx, c->model, &c->params) != ND_OK) die(ctx, "model");
    c->opt = nd_adam_create(ctx, c->params.items, c->params.n, NULL);
    c->x = nd_tensor_create(ctx, 4, (int[]){BATCH, 1, 28, 28}, false);
    if (!c->opt || !c->x) die(ctx, "optimizer / input");
    nd_fill_uniform(c->x, &rng, 0, 1);
    for (int i = 0; i < BATCH; i++) c->labels[i] = (int)nd_rng_below(&rng, 10);
}

static void convnet_destroy(convnet *c)
{
    nd_optimizer_destroy(c->opt);
    nd_param_list_destroy(&c->params);
    nd_module_destroy(c->model);
    nd_tensor_destroy(c->x);
}

/* One training step; fills the times of forward, backward and update in ns when t is given. */
static void train_step(nd_ctx *ctx, convnet *c, double t[3])
{
    double t0 = now_ns();
    nd_tensor *logits = nd_module_forward(ctx, c->model, c->x);                 /* (B, 10) */
    nd_tensor *loss = nd_cross_entropy(ctx, logits, c->labels, ND_REDUCE_MEAN); /* scalar */
    if (!loss) die(ctx, "forward");
    double t1 = now_ns();
    nd_optimizer_zero_grad(c->opt);
    if (nd_backward(ctx, loss, 0) != ND_OK) die(ctx, "nd_backward");
    double t2 = now_ns();
    if (nd_optimizer_step(ctx, c->opt) != ND_OK) die(ctx, "nd_optimizer_step");
    nd_ctx_reset(ctx);
    double t3 = now_ns();
    if (t) t[0] = t1 - t0, t[1] = t2 - t1, t[2] = t3 - t2;
}

/* --------------------------------------------------------------------------------------------- */
/* conv_step                                                                                      */

static void bench_conv_step(int threads, int n_steps)
{
    openblas_set_num_threads(1); /* nodal's threads share the images; OpenBLAS's would add */
    nd_set_threads(threads);     /* contention and allocations (its threaded path mallocs) */
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    convnet c;
    convnet_create(ctx, &c);

    for (int i = 0; i < 2; i++) train_step(ctx, &c, NULL); /* warm-up: arena, caches, threads */
    g_n_calls = 0;
    g_record_gemm = true;
    train_step(ctx, &c, NULL);
    g_record_gemm = false;
    int n_calls = g_n_calls;
    double flops = recorded_flops(n_calls);

    /* the same calls on buffers of the same sizes */
    gemm_bufs bufs[MAX_CALLS];
    replay_buffers_create(bufs, n_calls, 2);

    double *v = malloc(sizeof(double) * (size_t)n_steps * 7);
    if (!v) exit(1);
    double *step = v, *fwd = v + n_steps, *bwd = fwd + n_steps, *upd = bwd + n_steps;
    double *gemm = upd + n_steps, *ratio = gemm + n_steps, *inside = ratio + n_steps;
    g_allocs = 0;
    g_blas_allocs = 0;
    for (int s = -2; s < n_steps; s++) { /* 2 warm-up pairs */
        double t[3];
        g_gemm_ns = 0;
        g_time_gemm = true;
        g_count_allocs = s >= 0;
        train_step(ctx, &c, t);
        g_count_allocs = false;
        g_time_gemm = false;
        double tg = replay_calls(bufs, n_calls);
        if (s < 0) continue;
        fwd[s] = t[0], bwd[s] = t[1], upd[s] = t[2];
        step[s] = t[0] + t[1] + t[2];
        gemm[s] = tg;
        ratio[s] = step[s] / tg;
        inside[s] = g_gemm_ns;
        fprintf(stderr, "\r  step %d/%d: %.1f ms", s + 1, n_steps, step[s] / 1e6);
    }
    fprintf(stderr, "\n");
    replay_buffers_destroy(bufs, n_calls);

    double step_ms = median(step, n_steps) / 1e6, gemm_ms = median(gemm, n_steps) / 1e6;
    double peak = peak_gemm_gflops(), peak_ms = flops / peak / 1e6;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "conv_step");
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "threads", threads);
    json_int(&w, "batch", BATCH);
    json_str(&w, "model", MODEL_NAME);
    json_int(&w, "params", (long long)nd_param_list_numel(&c.params));
    json_int(&w, "steps", n_steps);
    json_num(&w, "step_ms", step_ms);
    json_num(&w, "forward_ms", median(fwd, n_steps) / 1e6);
    json_num(&w, "backward_ms", median(bwd, n_steps) / 1e6);
    json_num(&w, "update_ms", median(upd, n_steps) / 1e6);
    json_num(&w, "images_per_s", BATCH / (step_ms / 1e3));
    json_num(&w, "gemm_ms", gemm_ms);
    json_int(&w, "gemm_calls", n_calls);
    json_num(&w, "gemm_gflops", flops / (gemm_ms * 1e6));
    json_num(&w, "gemm_inside_step_ms", median(inside, n_steps) / 1e6);
    json_num(&w, "gemm_images_per_s", BATCH / (gemm_ms / 1e3));
    json_num(&w, "ratio", median(ratio, n_steps));
    json_num(&w, "peak_gflops", peak);
    json_num(&w, "peak_ms", peak_ms);
    json_num(&w, "peak_fraction", peak_ms / step_ms);
    json_num(&w, "mallocs_per_step", (double)g_allocs / n_steps);
    json_num(&w, "openblas_mallocs_per_step", (double)g_blas_allocs / n_steps);
    json_end(&w);
    fflush(stdout);
    free(v);
    convnet_destroy(&c);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */
/* conv_eval: forward only, grad off                                                              */

static void bench_conv_eval(int threads, int n_steps)
{
    openblas_set_num_threads(1);
    nd_set_threads(threads);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    convnet c;
    convnet_create(ctx, &c);
    nd_ctx_set_grad(ctx, false);
    double *t = malloc(sizeof(double) * (size_t)n_steps);
    if (!t) exit(1);
    for (int s = -2; s < n_steps; s++) {
        double t0 = now_ns();
        nd_tensor *logits = nd_module_forward(ctx, c.model, c.x); /* (B, 10) */
        if (!logits) die(ctx, "forward");
        nd_ctx_reset(ctx);
        if (s >= 0) t[s] = now_ns() - t0;
    }
    double ms = median(t, n_steps) / 1e6;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "conv_eval");
    json_str(&w, "real", ND_REAL_NAME);
    json_str(&w, "model", MODEL_NAME);
    json_int(&w, "threads", threads);
    json_int(&w, "batch", BATCH);
    json_int(&w, "steps", n_steps);
    json_num(&w, "forward_ms", ms);
    json_num(&w, "images_per_s", BATCH / (ms / 1e3));
    json_end(&w);
    fflush(stdout);
    free(t);
    convnet_destroy(&c);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */
/* odenet_eval: the ODE block's dynamics of examples/odenet.c, forward and VJP                    */

#define ODE_BATCH 64
#define ODE_WIDTH 16

/* f(t, x) = GN(conv(relu(GN(conv([x, t]))))): x (B, 16, 7, 7) -> (B, 16, 7, 7) */
static nd_tensor *odenet_f(nd_ctx *ctx, nd_module *f, nd_tensor *x, double t)
{
    nd_tensor *tc = nd_full(ctx, 4, (int[]){ODE_BATCH, 1, 7, 7}, (nd_real)t);
    return nd_module_forward(ctx, f, nd_concat(ctx, (nd_tensor *[]){x, tc}, 2, 1));
}

static void bench_odenet_eval(int threads, int n_steps)
{
    openblas_set_num_threads(1); /* the GEMMs are small: nodal's threads share the images */
    nd_set_threads(threads);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    nd_rng rng = nd_rng_seed(2);
    nd_module *layers[] = {
        nd_conv2d_create(ctx, ODE_WIDTH + 1, ODE_WIDTH, 3, 1, 1, true, &rng),
        nd_group_norm_create(ctx, 4, ODE_WIDTH, 1e-5),
        nd_activation_create(ctx, ND_ACT_RELU),
        nd_conv2d_create(ctx, ODE_WIDTH, ODE_WIDTH, 3, 1, 1, true, &rng),
        nd_group_norm_create(ctx, 4, ODE_WIDTH, 1e-5),
    };
    nd_module *f = nd_sequential_create(ctx, 5, layers);
    nd_param_list params = {0};
    if (!f || nd_module_params(ctx, f, &params) != ND_OK) die(ctx, "odenet dynamics");
    int shape[4] = {ODE_BATCH, ODE_WIDTH, 7, 7};
    nd_tensor *x = nd_tensor_create(ctx, 4, shape, true),
              *a = nd_tensor_create(ctx, 4, shape, false);
    if (!x || !a) die(ctx, "odenet state");
    nd_fill_uniform(x, &rng, -1, 1);
    nd_fill_uniform(a, &rng, -1, 1);
    int n_in = 1 + params.n;
    nd_tensor **in = malloc(2 * sizeof *in * (size_t)n_in), **grads = in + n_in;
    double *v = malloc(sizeof(double) * 2 * (size_t)n_steps);
    if (!in || !v) exit(1);
    in[0] = x;
    for (int i = 0; i < params.n; i++) in[1 + i] = params.items[i].tensor;

    double *fwd = v, *both = v + n_steps;
    g_allocs = 0;
    int n_calls = 0;
    for (int s = -3; s < n_steps; s++) {
        g_record_gemm = s == -1;
        g_n_calls = 0;
        g_count_allocs = s >= 0;
        double t0 = now_ns();
        nd_tensor *y = odenet_f(ctx, f, x, 0.5); /* (B, 16, 7, 7) */
        double t1 = now_ns();
        if (!y || nd_grad(ctx, &y, &a, 1, in, n_in, grads, 0) != ND_OK) die(ctx, "odenet VJP");
        double t2 = now_ns();
        g_count_allocs = false;
        if (g_record_gemm) n_calls = g_n_calls;
        g_record_gemm = false;
        nd_ctx_reset(ctx);
        if (s >= 0) fwd[s] = t1 - t0, both[s] = t2 - t0;
    }
    double flops = recorded_flops(n_calls), peak = peak_gemm_gflops();
    double fwd_ms = median(fwd, n_steps) / 1e6, both_ms = median(both, n_steps) / 1e6;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "odenet_eval");
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "threads", threads);
    json_int(&w, "batch", ODE_BATCH);
    json_str(&w, "model", "concat-t-conv17-gn-relu-conv16-gn 7x7");
    json_int(&w, "steps", n_steps);
    json_num(&w, "forward_ms", fwd_ms);
    json_num(&w, "forward_vjp_ms", both_ms);
    json_int(&w, "gemm_calls", n_calls);
    json_num(&w, "gemm_mflop", flops / 1e6);
    json_num(&w, "peak_gflops", peak);
    json_num(&w, "peak_ms", flops / peak / 1e6);
    json_num(&w, "peak_fraction", flops / peak / 1e6 / both_ms);
    json_num(&w, "mallocs_per_eval", (double)g_allocs / n_steps);
    json_end(&w);
    fflush(stdout);
    free(v);
    free(in);
    nd_tensor_destroy(x);
    nd_tensor_destroy(a);
    nd_param_list_destroy(&params);
    nd_module_destroy(f);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */
/* odenet_profile: every layer of examples/odenet.c alone, forward and its VJP, at batch 64       */

/* One layer of the profile: a module (or the time concatenation when m is NULL) on an input of
 * the given shape, run `evals` times per training step (the ODE block's layers once per function
 * evaluation: forward_evals forward-only, vjp_evals with the VJP the adjoint takes). */
typedef struct {
    const char *name;
    nd_module *m;
    int shape[4];
    bool vjp_x; /* the VJP includes dx (every layer but the first) */
    bool in_block;
} prof_layer;

/* [x, t] (B, 16, 7, 7) -> (B, 17, 7, 7), as nd_odeblock's ND_TIME_CONCAT builds it */
static nd_tensor *concat_time(nd_ctx *ctx, nd_tensor *x)
{
    nd_tensor *t = nd_full(ctx, 1, (int[]){1}, (nd_real)0.5);
    int shape[4] = {x->shape[0], 1, x->shape[2], x->shape[3]};
    nd_tensor *tt = nd_expand(ctx, nd_reshape(ctx, t, 4, (int[]){1, 1, 1, 1}), 4, shape);
    return nd_concat(ctx, (nd_tensor *[]){x, tt}, 2, 1);
}

/* Median forward and VJP times (ns) of one layer over n_steps runs. */
static void profile_layer(nd_ctx *ctx, const prof_layer *l, nd_rng *rng, int n_steps, double *fwd,
                          double *vjp)
{
    nd_param_list params = {0};
    if (l->m && nd_module_params(ctx, l->m, &params) != ND_OK) die(ctx, "profile params");
    nd_tensor *x = nd_tensor_create(ctx, 4, l->shape, l->vjp_x);
    if (!x) die(ctx, "profile input");
    nd_fill_uniform(x, rng, -1, 1);
    nd_tensor *in[16];
    int n_in = 0;
    if (l->vjp_x) in[n_in++] = x;
    for (int i = 0; i < params.n && n_in < 16; i++) in[n_in++] = params.items[i].tensor;
    nd_tensor *grads[16];
    double *f = malloc(sizeof(double) * 2 * (size_t)n_steps), *b = f ? f + n_steps : NULL;
    if (!f) exit(1);
    for (int s = -2; s < n_steps; s++) {
        double t0 = now_ns();
        nd_tensor *y = l->m ? nd_module_forward(ctx, l->m, x) : concat_time(ctx, x);
        double t1 = now_ns();
        if (!y) die(ctx, l->name);
        nd_tensor *seed = nd_ones_like(ctx, y);
        double t2 = now_ns();
        if (n_in && nd_grad(ctx, &y, &seed, 1, in, n_in, grads, 0) != ND_OK) die(ctx, l->name);
        double t3 = now_ns();
        nd_ctx_reset(ctx);
        if (s >= 0) f[s] = t1 - t0, b[s] = t3 - t2;
    }
    *fwd = median(f, n_steps), *vjp = median(b, n_steps);
    free(f);
    nd_tensor_destroy(x);
    nd_param_list_destroy(&params);
}

static void bench_odenet_profile(int n_steps, int nfe_forward, int nfe_backward)
{
    openblas_set_num_threads(1);
    nd_set_threads(1);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    nd_rng rng = nd_rng_seed(3);
    const int B = ODE_BATCH, W = ODE_WIDTH;
    prof_layer layers[] = {
        {"stem conv 3x3 1->16",
         nd_conv2d_create(ctx, 1, W, 3, 1, 1, true, &rng),
         {B, 1, 28, 28},
         false,
         false},
        {"stem group_norm", nd_group_norm_create(ctx, 4, W, 1e-5), {B, W, 28, 28}, true, false},
        {"stem relu", nd_activation_create(ctx, ND_ACT_RELU), {B, W, 28, 28}, true, false},
        {"stem conv 4x4/2 16->16",
         nd_conv2d_create(ctx, W, W, 4, 2, 1, true, &rng),
         {B, W, 28, 28},
         true,
         false},
        {"stem group_norm 14x14",
         nd_group_norm_create(ctx, 4, W, 1e-5),
         {B, W, 14, 14},
         true,
         false},
        {"stem relu 14x14", nd_activation_create(ctx, ND_ACT_RELU), {B, W, 14, 14}, true, false},
        {"stem conv 4x4/2 16->16 14x14",
         nd_conv2d_create(ctx, W, W, 4, 2, 1, true, &rng),
         {B, W, 14, 14},
         true,
         false},
        {"f concat t", NULL, {B, W, 7, 7}, true, true},
        {"f conv 3x3 17->16",
         nd_conv2d_create(ctx, W + 1, W, 3, 1, 1, true, &rng),
         {B, W + 1, 7, 7},
         true,
         true},
        {"f group_norm", nd_group_norm_create(ctx, 4, W, 1e-5), {B, W, 7, 7}, true, true},
        {"f relu", nd_activation_create(ctx, ND_ACT_RELU), {B, W, 7, 7}, true, true},
        {"f conv 3x3 16->16",
         nd_conv2d_create(ctx, W, W, 3, 1, 1, true, &rng),
         {B, W, 7, 7},
         true,
         true},
        {"f group_norm 2", nd_group_norm_create(ctx, 4, W, 1e-5), {B, W, 7, 7}, true, true},
        {"head group_norm", nd_group_norm_create(ctx, 4, W, 1e-5), {B, W, 7, 7}, true, false},
        {"head relu", nd_activation_create(ctx, ND_ACT_RELU), {B, W, 7, 7}, true, false},
        {"head avg_pool 2x2", nd_avg_pool2d_create(ctx, 2, 2), {B, W, 7, 7}, true, false},
    };
    int n = (int)(sizeof layers / sizeof *layers);
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "odenet_profile");
    json_str(&w, "real", ND_REAL_NAME);
    json_str(&w, "gemm", getenv("NODAL_GEMM") ? getenv("NODAL_GEMM") : "default");
    json_int(&w, "threads", 1);
    json_int(&w, "batch", B);
    json_int(&w, "steps", n_steps);
    json_int(&w, "nfe_forward", nfe_forward);
    json_int(&w, "nfe_backward", nfe_backward);
    double total = 0, block_fwd = 0, block_vjp = 0;
    json_array(&w, "layers");
    for (int i = 0; i < n; i++) {
        double fwd, vjp;
        if (layers[i].name[0] != 'f' && !layers[i].m) die(ctx, layers[i].name);
        profile_layer(ctx, &layers[i], &rng, n_steps, &fwd, &vjp);
        /* per training step: a block layer runs forward nfe_forward times in the solve and
         * forward + VJP nfe_backward times in the adjoint; the others once each way */
        double step = layers[i].in_block ? fwd * (nfe_forward + nfe_backward) + vjp * nfe_backward
                                         : fwd + vjp;
        total += step;
        if (layers[i].in_block) block_fwd += fwd, block_vjp += vjp;
        json_object(&w, NULL);
        json_str(&w, "layer", layers[i].name);
        json_num(&w, "forward_us", fwd / 1e3);
        json_num(&w, "vjp_us", vjp / 1e3);
        json_num(&w, "step_ms", step / 1e6);
        json_close(&w);
        fprintf(stderr, "  %-30s forward %8.1f us  vjp %8.1f us\n", layers[i].name, fwd / 1e3,
                vjp / 1e3);
    }
    json_close(&w);
    json_num(&w, "block_forward_us", block_fwd / 1e3);
    json_num(&w, "block_vjp_us", block_vjp / 1e3);
    json_num(&w, "step_ms", total / 1e6);
    json_end(&w);
    fflush(stdout);
    for (int i = 0; i < n; i++) nd_module_destroy(layers[i].m);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */

static const char *const case_names[] = {"all",         "conv_step",      "conv_eval",
                                         "odenet_eval", "odenet_profile", NULL};

int main(int argc, char **argv)
{
    int n_steps = 20, which = 0;
    const flag_spec flags[] = {
        FLAG_INT("steps", &n_steps, 1, 1000000, "timed steps per case (medians)"),
        FLAG_CHOICE("case", &which, case_names, "the case to run"),
    };
    int rc = flags_parse("bench_nn", "examples/mnist.c's conv-net step: speed and GEMM share.",
                         flags, FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    const char *only = which ? case_names[which] : NULL;
    /* every case but odenet_profile replays the step's GEMM calls: those must be BLAS calls */
    if (!only || strcmp(only, "odenet_profile") != 0) bench_use_blas_gemm();
    fprintf(stderr, "bench_nn: nd_real = %s, %s\n", ND_REAL_NAME, OPENBLAS_VERSION);
    if (!only || !strcmp(only, "conv_step")) {
        fprintf(stderr, "conv_step, 1 thread...\n");
        bench_conv_step(1, n_steps);
        fprintf(stderr, "conv_step, 2 threads...\n");
        bench_conv_step(2, n_steps);
    }
    if (!only || !strcmp(only, "conv_eval")) {
        fprintf(stderr, "conv_eval, 2 threads...\n");
        bench_conv_eval(2, n_steps);
    }
    if (!only || !strcmp(only, "odenet_eval")) {
        fprintf(stderr, "odenet_eval, 1 thread...\n");
        bench_odenet_eval(1, n_steps);
        fprintf(stderr, "odenet_eval, 2 threads...\n");
        bench_odenet_eval(2, n_steps);
    }
    if (!only || !strcmp(only, "odenet_profile")) {
        fprintf(stderr, "odenet_profile, 1 thread...\n");
        bench_odenet_profile(n_steps, 26, 26);
    }
    return 0;
}

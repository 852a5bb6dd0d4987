/* SPDX-License-Identifier: MIT
 * examples/latent_ode.c: the latent ODE with an ODE-RNN encoder against a GRU-Δt baseline
 * (Rubanova, Chen and Duvenaud, NeurIPS 2019) on irregularly sampled series. --data toy: their
 * toy periodic data (section 4.1): 1-D sinusoids of random amplitude, frequency and phase, 100
 * times on [0, 5], each series observing a random half, generated from --seed. --data hopper:
 * MuJoCo Hopper trajectories (examples/models/hopper_data.h: 100 times, 14-D state, random
 * initial states, a random half observed), simulated once and cached in --cache. --task interp:
 * see the observed points, reconstruct the others; --task extrap: see the observed points of the
 * first half, predict the whole second half. 80% of --n-series train, 20% test. Both models
 * train on the same batches and points with Adam and the same Gaussian likelihood (fixed std:
 * 0.01 toy, 0.001 hopper); the latent ODE adds the KL of q(z0 | x) to N(0, I), annealed in over
 * the first few hundred batches, and the learning rate decays 0.999 per batch down to a tenth.
 *
 * The encoder solves one interval of the batch's union of observation times at a time (one RK4
 * step each by default, like Rubanova's Euler encoder: --enc-method dopri5 for an adaptive one);
 * the decoder is dopri5 at rtol 1e-3, atol 1e-4 (Rubanova's); gradients by the adjoint, whose
 * norm --norm sets. Progress per epoch on stderr: the losses, test MSEs, and the NFE of the latent
 * ODE's forward and backward passes per batch (encoder + decoder). --save FILE writes both models
 * and both optimizers' states (safetensors, atomically); --resume FILE continues from one exactly
 * as if the run had not stopped (the batches and noise of epoch e come from --seed and e).
 *
 * What good looks like: both test MSEs fall within a few epochs; on extrap the latent ODE's MSE
 * ends below the GRU-Δt's (Rubanova report about an order of magnitude with long training; see
 * the README for what nodal measures in minutes).
 *
 *   ./build/examples/latent_ode --task extrap --epochs 20 --plot latent.png   (--help: flags)
 * Exit status: 0 when training ran, 1 on a library or data error, 2 on bad flags.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "clock.h"
#include "flags.h"
#include "hopper_data.h"
#include "json.h"
#include "latent.h"
#include "nodal.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

#define MAX_EPOCHS 100000

typedef struct {
    int data, task, epochs, batch, n_series, norm, enc_method, latent, hidden, units;
    double lr;
    uint64_t seed;
    bool json;
    const char *plot, *save, *resume, *cache;
} options;

enum { DATA_TOY, DATA_HOPPER };
static const char *const data_names[] = {"toy", "hopper", NULL};
static const char *const task_names[] = {"interp", "extrap", NULL};
static const char *const enc_names[] = {"rk4", "dopri5", NULL};

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.task = TASK_EXTRAP,
                   .epochs = 20,
                   .batch = 50,
                   .n_series = 1000,
                   .norm = ND_NORM_RMS,
                   .latent = 6,
                   .hidden = 20,
                   .units = 50,
                   .lr = 1e-2};
    const flag_spec flags[] = {
        FLAG_CHOICE("data", &o->data, data_names, "toy (sinusoids) or hopper (MuJoCo)"),
        FLAG_CHOICE("task", &o->task, task_names, "interp or extrap"),
        FLAG_INT("epochs", &o->epochs, 0, MAX_EPOCHS, "training epochs"),
        FLAG_INT("batch", &o->batch, 1, 100000, "series per batch"),
        FLAG_INT("n-series", &o->n_series, 10, 1000000, "series generated (80% train)"),
        FLAG_POSITIVE("lr", &o->lr, "Adam's learning rate (x 0.999 per batch, down to a tenth)"),
        FLAG_U64("seed", &o->seed, "seeds the data, the weights, the batches and z0's noise"),
        FLAG_NORM(&o->norm, "the adjoints' norm"),
        FLAG_CHOICE("enc-method", &o->enc_method, enc_names,
                    "the encoder's solver: one rk4 step per interval, or dopri5"),
        FLAG_INT("latent", &o->latent, 1, 1000, "latent dimension L"),
        FLAG_INT("hidden", &o->hidden, 1, 1000, "the encoder's and the GRU-Δt's hidden size"),
        FLAG_INT("units", &o->units, 1, 10000, "hidden units of the MLPs"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
        FLAG_STRING("plot", &o->plot, "FILE.png", "draw test series and both models (cairo)"),
        FLAG_STRING("save", &o->save, "FILE", "write a checkpoint (safetensors) at the end"),
        FLAG_STRING("resume", &o->resume, "FILE", "start from a checkpoint of --save"),
        FLAG_STRING("cache", &o->cache, "FILE",
                    "hopper: the simulated data's cache (default hopper-N-SEED.safetensors)"),
    };
    return flags_parse("latent_ode",
                       "The latent ODE (ODE-RNN encoder) vs GRU-Δt on irregularly sampled series.",
                       flags, FLAGS_N(flags), argc, argv);
}

static int fail(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "latent_ode: %s: %s\n", what, nd_ctx_errmsg(ctx));
    return 1;
}

/* ---- the run: data, models, optimizers, checkpoints ------------------------------------------ */

typedef struct {
    series_data data;
    int n_train, n_test, *order; /* train indices 0 .. n_train - 1, shuffled per epoch */
    latent_model *lat;
    grudt_model *gru;
    nd_param_list lat_params, gru_params;
    nd_optimizer *lat_opt, *gru_opt;
    ckpt_list ckpt; /* both models' state and both optimizers' */
    int epochs_before;
} run;

static int load_data(nd_ctx *ctx, run *r, const options *o)
{
    if (o->data == DATA_TOY) {
        if (toy_generate(&r->data, o->n_series, o->seed) != 0)
            return fprintf(stderr, "latent_ode: out of memory\n"), 1;
        return 0;
    }
    char path[64], err[512];
    snprintf(path, sizeof path, "hopper-%d-%llu.safetensors", o->n_series,
             (unsigned long long)o->seed);
    const char *cache = o->cache ? o->cache : path;
    bool generated = false;
    if (hopper_load(ctx, &r->data, o->n_series, o->seed, cache, &generated, err, sizeof err) != 0)
        return fprintf(stderr, "latent_ode: --data hopper: %s\n", err), 1;
    if (!o->json)
        fprintf(stderr, "%s %s: %d series of %d points, %d channels\n",
                generated ? "simulated and cached" : "read", cache, r->data.n, r->data.P,
                r->data.D);
    return 0;
}

static int setup(nd_ctx *ctx, run *r, const options *o, nd_rng *rng)
{
    if (load_data(ctx, r, o) != 0) return 1;
    if (!(r->order = malloc((size_t)o->n_series * sizeof *r->order)))
        return fprintf(stderr, "latent_ode: out of memory\n"), 1;
    r->n_train = o->n_series * 4 / 5, r->n_test = o->n_series - r->n_train;
    nd_ode_options enc = ND_ODE_DEFAULT, dec = ND_ODE_DEFAULT;
    if (o->enc_method == 0) enc.solver.method = ND_RK4; /* step_size 0: one step per interval */
    enc.solver.rtol = dec.solver.rtol = 1e-3, enc.solver.atol = dec.solver.atol = 1e-4;
    enc.adjoint.norm = dec.adjoint.norm = (nd_norm_kind)o->norm;
    int D = r->data.D;
    r->lat = latent_create(ctx, D, o->latent, o->hidden, o->units, &enc, &dec, rng);
    r->gru = r->lat ? grudt_create(ctx, D, o->hidden, rng) : NULL;
    if (!r->gru || nd_module_params(ctx, &r->lat->base, &r->lat_params) != ND_OK ||
        nd_module_params(ctx, &r->gru->base, &r->gru_params) != ND_OK)
        return fail(ctx, "building the models");
    nd_adam_options adam = ND_ADAM_DEFAULT;
    adam.lr = o->lr;
    r->lat_opt = nd_adam_create(ctx, r->lat_params.items, r->lat_params.n, &adam);
    r->gru_opt = nd_adam_create(ctx, r->gru_params.items, r->gru_params.n, &adam);
    if (!r->lat_opt || !r->gru_opt) return fail(ctx, "creating the optimizers");
    /* the checkpoint: the models' state (parameters; they have no buffers) and Adam's */
    nd_param_list ls = {0}, gs = {0};
    int n_lo = 0, n_go = 0;
    const nd_param *lo = nd_optimizer_state(r->lat_opt, &n_lo);
    const nd_param *go = nd_optimizer_state(r->gru_opt, &n_go);
    int bad = nd_module_state(ctx, &r->lat->base, &ls) != ND_OK ||
              nd_module_state(ctx, &r->gru->base, &gs) != ND_OK ||
              ckpt_list_add(ctx, &r->ckpt, "latent.", ls.items, ls.n) != 0 ||
              ckpt_list_add(ctx, &r->ckpt, "gru_dt.", gs.items, gs.n) != 0 ||
              ckpt_list_add(ctx, &r->ckpt, "optim.latent.", lo, n_lo) != 0 ||
              ckpt_list_add(ctx, &r->ckpt, "optim.gru_dt.", go, n_go) != 0;
    nd_param_list_destroy(&ls), nd_param_list_destroy(&gs);
    return bad ? fail(ctx, "the checkpoint list") : 0;
}

static void run_destroy(run *r)
{
    ckpt_list_free(&r->ckpt);
    nd_optimizer_destroy(r->lat_opt), nd_optimizer_destroy(r->gru_opt);
    nd_param_list_destroy(&r->lat_params), nd_param_list_destroy(&r->gru_params);
    if (r->lat) nd_module_destroy(&r->lat->base);
    if (r->gru) nd_module_destroy(&r->gru->base);
    series_destroy(&r->data);
    free(r->order);
}

/* the metadata value of key must be want (when the file has the key) */
static nd_status meta_matches(nd_ctx *ctx, const nd_checkpoint *ck, const char *path,
                              const char *key, const char *want)
{
    const char *v = nd_checkpoint_meta(ck, key);
    if (v && strcmp(v, want) != 0)
        return nd_fail(ctx, ND_ERR_ARG, "%s was trained with --%s %s, this run has --%s %s", path,
                       key, v, key, want);
    return ND_OK;
}

/* One read, checked whole before any tensor changes: the tensors, "epochs", "data", "task",
 * "seed", "n-series". */
static int resume(nd_ctx *ctx, run *r, const options *o)
{
    nd_checkpoint *ck = NULL;
    nd_status st = nd_checkpoint_read(ctx, o->resume, &ck);
    long e = 0;
    if (!st) st = meta_matches(ctx, ck, o->resume, "data", data_names[o->data]);
    if (!st) st = meta_matches(ctx, ck, o->resume, "task", task_names[o->task]);
    char seed[32], n_series[32]; /* the data and the batches come from both */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(n_series, sizeof n_series, "%d", o->n_series);
    if (!st) st = meta_matches(ctx, ck, o->resume, "seed", seed);
    if (!st) st = meta_matches(ctx, ck, o->resume, "n-series", n_series);
    if (!st && nd_checkpoint_meta(ck, "epochs")) {
        st = nd_checkpoint_meta_long(ctx, ck, "epochs", &e);
        if (!st && (e < 0 || e > MAX_EPOCHS))
            st = nd_fail(ctx, ND_ERR_FORMAT, "%s: metadata \"epochs\" is %ld", o->resume, e);
    }
    if (!st) st = nd_checkpoint_load(ctx, ck, r->ckpt.items, r->ckpt.n, NULL, NULL);
    nd_checkpoint_destroy(ck);
    if (st) return fail(ctx, "--resume");
    r->epochs_before = (int)e;
    if (!o->json)
        fprintf(stderr, "resumed %s: %d epochs, %ld batches trained\n", o->resume, (int)e,
                nd_optimizer_steps(r->lat_opt));
    return 0;
}

static int save(nd_ctx *ctx, const run *r, const options *o, int epochs)
{
    char n_epochs[32], seed[32], n_series[32];
    snprintf(n_epochs, sizeof n_epochs, "%d", r->epochs_before + epochs);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(n_series, sizeof n_series, "%d", o->n_series);
    nd_meta meta[] = {
        {"example", "latent_ode"},     {"epochs", n_epochs}, {"data", data_names[o->data]},
        {"task", task_names[o->task]}, {"seed", seed},       {"n-series", n_series}};
    nd_save_options so = ND_SAVE_DEFAULT;
    so.meta = meta, so.n_meta = (int)(sizeof meta / sizeof meta[0]);
    if (nd_save(ctx, o->save, r->ckpt.items, r->ckpt.n, &so) != ND_OK) return fail(ctx, "--save");
    if (!o->json) fprintf(stderr, "saved %s\n", o->save);
    return 0;
}

/* ---- training and evaluation ---------------------------------------------------------------- */

typedef struct {
    double lat_loss, gru_loss;             /* mean over the epoch's batches */
    double lat_mse, gru_mse;               /* test MSE after the epoch */
    long nfe_f, nfe_b, enc_nfe_f, batches; /* the latent ODE's, summed over the epoch */
    long enc_solves;                       /* intervals of the batches' unions */
    double per_sample_obs;                 /* summed over batches */
    double ms;
} epoch_stats;

/* one step of one model: loss, backward, Adam; the loss's value */
static double step(nd_ctx *ctx, nd_tensor *loss, nd_optimizer *opt, bool *ok)
{
    nd_optimizer_zero_grad(opt);
    *ok = loss && nd_backward(ctx, loss, 0) == ND_OK && nd_optimizer_step(ctx, opt) == ND_OK;
    return *ok ? nd_item(loss) : NAN;
}

/* Epoch `epoch` (counted from the first run's start): its shuffle and z0's noise come from the
 * seed and the epoch alone, the KL weight and the learning rate from the batches Adam has taken,
 * so a resumed run repeats an uninterrupted one exactly. */
static int train_epoch(nd_ctx *ctx, run *r, const options *o, int epoch, epoch_stats *e)
{
    *e = (epoch_stats){0};
    double t0 = clock_wall_ms();
    nd_rng rng = nd_rng_seed(o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int i = 0; i < r->n_train; i++) r->order[i] = i;
    for (int i = r->n_train - 1; i > 0; i--) {
        int j = (int)nd_rng_below(&rng, (uint64_t)i + 1), v = r->order[i];
        r->order[i] = r->order[j], r->order[j] = v;
    }
    for (int s = 0; s + o->batch <= r->n_train || (s == 0 && r->n_train > 0); s += o->batch) {
        int B = s + o->batch <= r->n_train ? o->batch : r->n_train;
        latent_batch b;
        if (!latent_make_batch(ctx, &r->data, r->order + s, B, (latent_task)o->task, &b))
            return fail(ctx, "making a batch");
        /* Rubanova's schedules, counted in batches: the KL weight 0 for 10, then 1 - 0.99^(n -
         * 10) (they count epochs: measured slower here, see the README); lr decays 0.999 per
         * batch, down to a tenth */
        double n = (double)nd_optimizer_steps(r->lat_opt);
        double k = n < 10 ? 0 : 1 - pow(0.99, n - 10), lr = fmax(o->lr * pow(0.999, n), o->lr / 10);
        nd_optimizer_set_lr(r->lat_opt, lr), nd_optimizer_set_lr(r->gru_opt, lr);
        nd_tensor *pred;
        bool ok;
        e->lat_loss += step(ctx, latent_loss(ctx, r->lat, &b, k, &rng, &pred), r->lat_opt, &ok);
        if (!ok) return fail(ctx, "latent ODE training step");
        nd_ode_stats enc;
        int solves = 0;
        if (nd_odernn_stats(ctx, r->lat->encoder, &enc, &solves) != ND_OK)
            return fail(ctx, "encoder statistics");
        const nd_ode_stats *dec = r->lat->dec_last;
        e->nfe_f += enc.forward.nfe + dec->forward.nfe;
        e->nfe_b += enc.backward.nfe + dec->backward.nfe;
        e->enc_nfe_f += enc.forward.nfe, e->enc_solves += solves;
        e->per_sample_obs += b.per_sample_obs;
        e->gru_loss += step(ctx, grudt_loss(ctx, r->gru, &b, &pred), r->gru_opt, &ok);
        if (!ok) return fail(ctx, "GRU-Δt training step");
        nd_ctx_reset(ctx);
        e->batches++;
    }
    e->lat_loss /= (double)e->batches, e->gru_loss /= (double)e->batches;
    e->ms = clock_wall_ms() - t0;
    return 0;
}

/* test MSE of both models over the test series (z0 = the posterior mean) */
static int evaluate(nd_ctx *ctx, run *r, const options *o, double *lat_mse, double *gru_mse)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    double ls = 0, lc = 0, gs = 0, gc = 0;
    for (int s = r->n_train; s < o->n_series; s += o->batch) {
        int B = s + o->batch <= o->n_series ? o->batch : o->n_series - s;
        int *idx = nd_ctx_alloc(ctx, (size_t)B * sizeof *idx);
        latent_batch b;
        nd_tensor *mu, *lv, *lp = NULL, *gp = NULL;
        for (int k = 0; idx && k < B; k++) idx[k] = s + k;
        if (idx && latent_make_batch(ctx, &r->data, idx, B, (latent_task)o->task, &b)) {
            lp = latent_forward(ctx, r->lat, &b, NULL, &mu, &lv);
            gp = grudt_forward(ctx, r->gru, &b);
        }
        if (!lp || !gp) return nd_ctx_set_grad(ctx, prev), fail(ctx, "evaluation");
        latent_sq_error(&b, lp, &ls, &lc);
        latent_sq_error(&b, gp, &gs, &gc);
        nd_ctx_reset(ctx);
    }
    nd_ctx_set_grad(ctx, prev);
    *lat_mse = ls / (lc > 0 ? lc : 1), *gru_mse = gs / (gc > 0 ? gc : 1);
    return 0;
}

/* ---- the picture ----------------------------------------------------------------------------- */

#ifdef HAVE_PLOT
enum { PANELS = 3, SAMPLES = 6 };

/* the predictions for the picture's batch: the latent ODE's mean, SAMPLES samples of z0, GRU-Δt */
static bool picture_predictions(nd_ctx *ctx, run *r, const latent_batch *b, nd_tensor **lat,
                                nd_tensor **samples, nd_tensor **gru)
{
    nd_tensor *mu, *lv;
    nd_rng rng = nd_rng_seed(0x91c7);
    *lat = latent_forward(ctx, r->lat, b, NULL, &mu, &lv);
    for (int k = 0; k < SAMPLES; k++) samples[k] = latent_forward(ctx, r->lat, b, &rng, &mu, &lv);
    *gru = grudt_forward(ctx, r->gru, b);
    bool ok = *lat && *gru;
    for (int k = 0; k < SAMPLES; k++) ok = ok && samples[k];
    return ok;
}

/* panel k: toy, test series k; hopper, channel k of the first test series */
static void picture_panel(plot_figure *fig, int k, const run *r, const options *o,
                          const latent_batch *b, nd_tensor *lat, nd_tensor **samples,
                          nd_tensor *gru)
{
    int P = r->data.P, B = b->B, D = b->D, s = o->data == DATA_TOY ? k : 0;
    int c = o->data == DATA_TOY ? 0 : (int[]){0, 4, 12}[k % 3];
    double t[P], truth[P], mean[P], g[P], smp[P], ot[P], ox[P], lo = 1e300, hi = -1e300;
    int n_obs = 0;
    for (int i = 0; i < P; i++) {
        size_t at = ((size_t)i * B + s) * D + c;
        t[i] = b->t->data[i], truth[i] = b->x->data[at];
        mean[i] = lat->data[at], g[i] = gru->data[at];
        if (b->grid_mask->data[(size_t)i * B + s] != 0) ot[n_obs] = t[i], ox[n_obs++] = truth[i];
        lo = fmin(lo, truth[i]), hi = fmax(hi, truth[i]);
    }
    double span = hi - lo + 1e-3, y0 = lo - 0.25 * span,
           y1 = hi + 0.65 * span; /* room for the legend */
    char title[64];
    if (o->data == DATA_TOY)
        snprintf(title, sizeof title, "test series %d", k + 1);
    else
        snprintf(title, sizeof title, "test series 1: %s", hopper_channel_names[c]);
    plot_axes(fig, k, title, "t", "x", t[0], t[P - 1], y0, y1);
    if (o->task == TASK_EXTRAP) /* the predicted half, shaded */
        plot_rect(fig, k, t[P / 2], y0, t[P - 1], y1, (plot_rgb){0.94, 0.94, 0.94});
    for (int j = 0; j < SAMPLES; j++) {
        for (int i = 0; i < P; i++) smp[i] = samples[j]->data[((size_t)i * B + s) * D + c];
        plot_line(fig, k, t, smp, P, 1, (plot_rgb){0.62, 0.78, 0.90}, 1, false);
    }
    plot_line(fig, k, t, truth, P, 1, PLOT_GRAY, 1, false);
    plot_line(fig, k, t, g, P, 1, PLOT_ORANGE, 1.5, true);
    plot_line(fig, k, t, mean, P, 1, PLOT_BLUE, 2, false);
    plot_points(fig, k, ot, ox, n_obs, 1, PLOT_BLACK, 3, 1);
    if (k == 0) {
        plot_legend(fig, k, 0, "truth (dots: seen)", PLOT_GRAY, false);
        plot_legend(fig, k, 1, "latent ODE mean", PLOT_BLUE, false);
        plot_legend(fig, k, 2, "latent ODE samples", (plot_rgb){0.62, 0.78, 0.90}, false);
        plot_legend(fig, k, 3, "GRU-Δt", PLOT_ORANGE, true);
    }
}
#endif

static int picture(nd_ctx *ctx, run *r, const options *o)
{
#ifdef HAVE_PLOT
    int idx[PANELS];
    for (int k = 0; k < PANELS; k++) idx[k] = r->n_train + k % (r->n_test > 0 ? r->n_test : 1);
    latent_batch b;
    nd_tensor *lat = NULL, *gru = NULL, *samples[SAMPLES];
    bool prev = nd_ctx_set_grad(ctx, false), ok = false;
    if (latent_make_batch(ctx, &r->data, idx, PANELS, (latent_task)o->task, &b))
        ok = picture_predictions(ctx, r, &b, &lat, samples, &gru);
    nd_ctx_set_grad(ctx, prev);
    if (!ok) return fail(ctx, "the picture's predictions");
    char title[96];
    snprintf(title, sizeof title, "%s, %s: latent ODE vs GRU-Δt",
             o->data == DATA_TOY ? "Toy sinusoids" : "MuJoCo Hopper",
             o->task == TASK_INTERP ? "interpolation" : "extrapolation (shaded: predicted)");
    plot_figure *fig = plot_create(PANELS, 420, 320, title);
    if (!fig) return fprintf(stderr, "latent_ode: cannot draw\n"), 1;
    for (int k = 0; k < PANELS; k++) picture_panel(fig, k, r, o, &b, lat, samples, gru);
    int rc = plot_save(fig, o->plot);
    plot_destroy(fig);
    nd_ctx_reset(ctx);
    if (rc != 0) return fprintf(stderr, "latent_ode: cannot write %s\n", o->plot), 1;
    if (!o->json) fprintf(stderr, "wrote %s\n", o->plot);
    return 0;
#else
    (void)ctx, (void)r, (void)o;
    fprintf(stderr, "latent_ode: built without cairo: no picture (install libcairo2-dev)\n");
    return 1;
#endif
}

/* ---- main ------------------------------------------------------------------------------------ */

static void print_json(const run *r, const options *o, const epoch_stats *es, int E, double lat_mse,
                       double gru_mse)
{
    long nb = 0, solves = 0, enc_f = 0;
    double obs = 0, total_ms = 0;
    for (int e = 0; e < E; e++)
        nb += es[e].batches, solves += es[e].enc_solves, enc_f += es[e].enc_nfe_f,
            obs += es[e].per_sample_obs, total_ms += es[e].ms;
    double per = nb > 0 ? 1.0 / nb : NAN;
    json_writer w = json_begin(stdout);
    json_str(&w, "data", data_names[o->data]);
    json_str(&w, "task", task_names[o->task]);
    json_int(&w, "epochs", E);
    json_int(&w, "epochs_before", r->epochs_before);
    json_int(&w, "n_series", o->n_series);
    json_int(&w, "channels", r->data.D);
    json_int(&w, "batch", o->batch);
    json_num(&w, "latent_ode_test_mse", lat_mse);
    json_num(&w, "gru_dt_test_mse", gru_mse);
    json_num(&w, "encoder_intervals_per_batch", solves * per);
    json_num(&w, "encoder_obs_per_sample", obs * per);
    json_num(&w, "encoder_nfe_forward_per_batch", enc_f * per);
    json_array(&w, "nfe_forward_per_batch");
    for (int e = 0; e < E; e++) json_num(&w, NULL, es[e].nfe_f / (double)es[e].batches);
    json_close(&w);
    json_array(&w, "nfe_backward_per_batch");
    for (int e = 0; e < E; e++) json_num(&w, NULL, es[e].nfe_b / (double)es[e].batches);
    json_close(&w);
    json_array(&w, "latent_loss");
    for (int e = 0; e < E; e++) json_num(&w, NULL, es[e].lat_loss);
    json_close(&w);
    json_array(&w, "latent_test_mse_per_epoch");
    for (int e = 0; e < E; e++) json_num(&w, NULL, es[e].lat_mse);
    json_close(&w);
    json_array(&w, "gru_dt_test_mse_per_epoch");
    for (int e = 0; e < E; e++) json_num(&w, NULL, es[e].gru_mse);
    json_close(&w);
    json_num(&w, "train_s", total_ms / 1000);
    json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)o->norm));
    json_str(&w, "encoder_method", enc_names[o->enc_method]);
    json_u64(&w, "seed", o->seed);
    json_str(&w, "real", ND_REAL_NAME);
    json_end(&w);
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    if (o.data == DATA_HOPPER && !hopper_available()) {
        fprintf(stderr, "latent_ode: --data hopper needs MuJoCo, and this build has none "
                        "(install libmujoco-dev and reconfigure)\n");
        return 1;
    }
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "latent_ode: out of memory\n"), 1;
    nd_rng rng = nd_rng_seed(o.seed ^ 0x5eed); /* the weights' */
    run r = {0};
    int status = setup(ctx, &r, &o, &rng);
    if (status == 0 && o.resume) status = resume(ctx, &r, &o);
    int E = o.epochs;
    epoch_stats *es = calloc((size_t)(E > 0 ? E : 1), sizeof *es);
    double lat_mse = NAN, gru_mse = NAN;
    if (!es) status = 1;
    for (int e = 0; status == 0 && e < E; e++) {
        status = train_epoch(ctx, &r, &o, r.epochs_before + e, &es[e]);
        if (status == 0) status = evaluate(ctx, &r, &o, &lat_mse, &gru_mse);
        if (status != 0) break;
        es[e].lat_mse = lat_mse, es[e].gru_mse = gru_mse;
        double nb = (double)es[e].batches;
        fprintf(stderr,
                "epoch %3d | loss latent %9.3f GRU-Dt %9.3f | test MSE latent %.5f GRU-Dt %.5f | "
                "NFE-F %6.0f NFE-B %6.0f per batch | %.1f s\n",
                r.epochs_before + e + 1, es[e].lat_loss, es[e].gru_loss, lat_mse, gru_mse,
                es[e].nfe_f / nb, es[e].nfe_b / nb, es[e].ms / 1000);
    }
    if (status == 0 && E == 0) status = evaluate(ctx, &r, &o, &lat_mse, &gru_mse);
    if (status == 0 && o.save) status = save(ctx, &r, &o, E);
    if (status == 0 && o.plot) status = picture(ctx, &r, &o);
    if (status == 0 && !o.json)
        printf("latent_ode --data %s --task %s: test MSE latent ODE %.5f, GRU-Δt %.5f "
               "(ratio %.2f)\n",
               data_names[o.data], task_names[o.task], lat_mse, gru_mse, gru_mse / lat_mse);
    if (status == 0 && o.json) print_json(&r, &o, es, E, lat_mse, gru_mse);
    free(es);
    run_destroy(&r);
    nd_ctx_destroy(ctx);
    return status;
}

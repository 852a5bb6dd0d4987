/* SPDX-License-Identifier: MIT
 * examples/latent_ode.c: the latent ODE with an ODE-RNN encoder against a GRU-Δt baseline on
 * Rubanova, Chen and Duvenaud's toy periodic data (NeurIPS 2019, section 4.1): 1-D sinusoids of
 * random amplitude, frequency and phase, 100 times on [0, 5], each series observing a random
 * half. --task interp: see the observed half, reconstruct the other; --task extrap: see the
 * observed points of [0, 2.5), predict the whole of [2.5, 5]. The models are in
 * examples/models/latent.h; the data are generated from --seed (80% of --n-series train, 20%
 * test). Both models train on the same batches with Adam and the same Gaussian likelihood
 * (fixed std 0.01); the latent ODE adds the KL of q(z0 | x) to N(0, I), annealed in.
 *
 * The encoder solves one interval of the batch's union of observation times at a time (one RK4
 * step each by default, like Rubanova's Euler encoder: --enc-method dopri5 for an adaptive one);
 * the decoder is dopri5 at rtol 1e-3, atol 1e-4 (Rubanova's); gradients by the adjoint, whose
 * norm --norm sets. Progress per epoch on stderr: the losses, the NFE of the latent ODE's
 * forward and backward passes per batch (encoder + decoder).
 *
 * What good looks like: both test MSEs fall within a few epochs; on extrap the latent ODE's MSE
 * ends well below the GRU-Δt's (Rubanova report about an order of magnitude with long training;
 * see the README for what nodal measures in minutes).
 *
 *   ./build/examples/latent_ode --task extrap --epochs 20 --plot latent.png   (--help: flags)
 * Exit status: 0 when training ran, 1 on a library error, 2 on bad flags.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "flags.h"
#include "json.h"
#include "latent.h"
#include "nodal.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

#define MAX_EPOCHS 100000

typedef struct {
    int task, epochs, batch, n_series, norm, enc_method, latent, hidden, units;
    double lr;
    uint64_t seed;
    bool json;
    const char *plot;
} options;

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
        FLAG_CHOICE("task", &o->task, task_names, "interp or extrap"),
        FLAG_INT("epochs", &o->epochs, 0, MAX_EPOCHS, "training epochs"),
        FLAG_INT("batch", &o->batch, 1, 100000, "series per batch"),
        FLAG_INT("n-series", &o->n_series, 10, 1000000, "series generated (80% train)"),
        FLAG_POSITIVE("lr", &o->lr, "Adam's learning rate (decayed 0.999 per batch)"),
        FLAG_U64("seed", &o->seed, "seeds the data, the weights, the batches and z0's noise"),
        FLAG_NORM(&o->norm, "the adjoints' norm"),
        FLAG_CHOICE("enc-method", &o->enc_method, enc_names,
                    "the encoder's solver: one rk4 step per interval, or dopri5"),
        FLAG_INT("latent", &o->latent, 1, 1000, "latent dimension L"),
        FLAG_INT("hidden", &o->hidden, 1, 1000, "the encoder's and the GRU-Δt's hidden size"),
        FLAG_INT("units", &o->units, 1, 10000, "hidden units of the MLPs"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
        FLAG_STRING("plot", &o->plot, "FILE.png", "draw test series and both models (cairo)"),
    };
    return flags_parse("latent_ode",
                       "The latent ODE (ODE-RNN encoder) vs GRU-Δt on Rubanova's toy data.", flags,
                       FLAGS_N(flags), argc, argv);
}

static int fail(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "latent_ode: %s: %s\n", what, nd_ctx_errmsg(ctx));
    return 1;
}

/* ---- the run: data, models, optimizers ------------------------------------------------------ */

typedef struct {
    toy_data data;
    int n_train, n_test, *order; /* train indices 0 .. n_train - 1, shuffled per epoch */
    latent_model *lat;
    grudt_model *gru;
    nd_param_list lat_params, gru_params;
    nd_optimizer *lat_opt, *gru_opt;
} run;

static int setup(nd_ctx *ctx, run *r, const options *o, nd_rng *rng)
{
    if (toy_generate(&r->data, o->n_series, o->seed) != 0 ||
        !(r->order = malloc((size_t)o->n_series * sizeof *r->order)))
        return fprintf(stderr, "latent_ode: out of memory\n"), 1;
    r->n_train = o->n_series * 4 / 5, r->n_test = o->n_series - r->n_train;
    for (int i = 0; i < r->n_train; i++) r->order[i] = i;
    nd_ode_options enc = ND_ODE_DEFAULT, dec = ND_ODE_DEFAULT;
    if (o->enc_method == 0) enc.solver.method = ND_RK4; /* step_size 0: one step per interval */
    enc.solver.rtol = dec.solver.rtol = 1e-3, enc.solver.atol = dec.solver.atol = 1e-4;
    enc.adjoint.norm = dec.adjoint.norm = (nd_norm_kind)o->norm;
    r->lat = latent_create(ctx, o->latent, o->hidden, o->units, &enc, &dec, rng);
    r->gru = r->lat ? grudt_create(ctx, o->hidden, rng) : NULL;
    if (!r->gru || nd_module_params(ctx, &r->lat->base, &r->lat_params) != ND_OK ||
        nd_module_params(ctx, &r->gru->base, &r->gru_params) != ND_OK)
        return fail(ctx, "building the models");
    nd_adam_options adam = ND_ADAM_DEFAULT;
    adam.lr = o->lr;
    r->lat_opt = nd_adam_create(ctx, r->lat_params.items, r->lat_params.n, &adam);
    r->gru_opt = nd_adam_create(ctx, r->gru_params.items, r->gru_params.n, &adam);
    return r->lat_opt && r->gru_opt ? 0 : fail(ctx, "creating the optimizers");
}

static void run_destroy(run *r)
{
    nd_optimizer_destroy(r->lat_opt), nd_optimizer_destroy(r->gru_opt);
    nd_param_list_destroy(&r->lat_params), nd_param_list_destroy(&r->gru_params);
    if (r->lat) nd_module_destroy(&r->lat->base);
    if (r->gru) nd_module_destroy(&r->gru->base);
    toy_destroy(&r->data);
    free(r->order);
}

/* ---- training and evaluation ---------------------------------------------------------------- */

typedef struct {
    double lat_loss, gru_loss;             /* mean over the epoch's batches */
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

static int train_epoch(nd_ctx *ctx, run *r, const options *o, nd_rng *rng, long *iter,
                       epoch_stats *e)
{
    *e = (epoch_stats){0};
    double t0 = clock_wall_ms();
    for (int i = r->n_train - 1; i > 0; i--) {
        int j = (int)nd_rng_below(rng, (uint64_t)i + 1), v = r->order[i];
        r->order[i] = r->order[j], r->order[j] = v;
    }
    for (int s = 0; s + o->batch <= r->n_train || (s == 0 && r->n_train > 0); s += o->batch) {
        int B = s + o->batch <= r->n_train ? o->batch : r->n_train;
        latent_batch b;
        if (!latent_make_batch(ctx, &r->data, r->order + s, B, (latent_task)o->task, &b))
            return fail(ctx, "making a batch");
        double k = *iter < 10 ? 0 : 1 - pow(0.99, (double)(*iter - 10)); /* KL annealing */
        double lr = o->lr * pow(0.999, (double)*iter);
        nd_optimizer_set_lr(r->lat_opt, lr), nd_optimizer_set_lr(r->gru_opt, lr);
        nd_tensor *pred;
        bool ok;
        e->lat_loss += step(ctx, latent_loss(ctx, r->lat, &b, k, rng, &pred), r->lat_opt, &ok);
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
        e->batches++, (*iter)++;
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
        int idx[B];
        for (int k = 0; k < B; k++) idx[k] = s + k;
        latent_batch b;
        nd_tensor *mu, *lv, *lp = NULL, *gp = NULL;
        if (latent_make_batch(ctx, &r->data, idx, B, (latent_task)o->task, &b)) {
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

static int picture(nd_ctx *ctx, run *r, const options *o)
{
#ifdef HAVE_PLOT
    enum { N = 3, P = TOY_POINTS };
    int idx[N];
    for (int k = 0; k < N; k++) idx[k] = r->n_train + k % (r->n_test > 0 ? r->n_test : 1);
    latent_batch b;
    nd_tensor *mu, *lv, *lp = NULL, *gp = NULL;
    bool prev = nd_ctx_set_grad(ctx, false);
    if (latent_make_batch(ctx, &r->data, idx, N, (latent_task)o->task, &b)) {
        lp = latent_forward(ctx, r->lat, &b, NULL, &mu, &lv);
        gp = grudt_forward(ctx, r->gru, &b);
    }
    nd_ctx_set_grad(ctx, prev);
    if (!lp || !gp) return fail(ctx, "the picture's predictions");
    plot_figure *fig = plot_create(N, 420, 320,
                                   o->task == TASK_INTERP ? "Interpolation: latent ODE vs GRU-Δt"
                                                          : "Extrapolation: latent ODE vs GRU-Δt");
    if (!fig) return fprintf(stderr, "latent_ode: cannot draw\n"), 1;
    for (int k = 0; k < N; k++) {
        double t[P], truth[P], lat[P], gru[P], ot[P], ox[P];
        int n_obs = 0;
        for (int i = 0; i < P; i++) {
            t[i] = b.t->data[i], truth[i] = b.x->data[i * N + k];
            lat[i] = lp->data[i * N + k], gru[i] = gp->data[i * N + k];
            if (b.grid_mask->data[i * N + k] != 0) ot[n_obs] = t[i], ox[n_obs++] = truth[i];
        }
        plot_axes(fig, k, "", "t", "x", 0, TOY_T_END, -2, 2);
        plot_line(fig, k, t, truth, P, 1, PLOT_GRAY, 1, false);
        plot_points(fig, k, ot, ox, n_obs, 1, PLOT_BLACK, 3, 1);
        plot_line(fig, k, t, lat, P, 1, PLOT_BLUE, 2, false);
        plot_line(fig, k, t, gru, P, 1, PLOT_ORANGE, 1.5, true);
        if (k == 0) {
            plot_legend(fig, k, 0, "truth (dots: seen)", PLOT_GRAY, false);
            plot_legend(fig, k, 1, "latent ODE mean", PLOT_BLUE, false);
            plot_legend(fig, k, 2, "GRU-Δt", PLOT_ORANGE, true);
        }
    }
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

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "latent_ode: out of memory\n"), 1;
    nd_rng rng = nd_rng_seed(o.seed ^ 0x5eed);
    run r = {0};
    int status = setup(ctx, &r, &o, &rng);
    int E = o.epochs;
    epoch_stats *es = calloc((size_t)(E > 0 ? E : 1), sizeof *es);
    double lat_mse = NAN, gru_mse = NAN, total_ms = 0;
    long iter = 0;
    if (!es) status = 1;
    for (int e = 0; status == 0 && e < E; e++) {
        status = train_epoch(ctx, &r, &o, &rng, &iter, &es[e]);
        if (status == 0) status = evaluate(ctx, &r, &o, &lat_mse, &gru_mse);
        if (status != 0) break;
        total_ms += es[e].ms;
        double nb = (double)es[e].batches;
        fprintf(stderr,
                "epoch %3d | loss latent %8.3f GRU-Dt %8.3f | test MSE latent %.5f GRU-Dt %.5f | "
                "NFE-F %6.0f NFE-B %6.0f per batch | %.1f s\n",
                e + 1, es[e].lat_loss, es[e].gru_loss, lat_mse, gru_mse, es[e].nfe_f / nb,
                es[e].nfe_b / nb, es[e].ms / 1000);
    }
    if (status == 0 && o.plot) status = picture(ctx, &r, &o);
    if (status == 0 && E == 0) status = evaluate(ctx, &r, &o, &lat_mse, &gru_mse);
    if (status == 0) {
        long nb = 0, solves = 0, enc_f = 0;
        double obs = 0;
        for (int e = 0; e < E; e++)
            nb += es[e].batches, solves += es[e].enc_solves, enc_f += es[e].enc_nfe_f,
                obs += es[e].per_sample_obs;
        double per = nb > 0 ? 1.0 / nb : NAN;
        if (!o.json) {
            printf("latent_ode --task %s: test MSE latent ODE %.5f, GRU-Δt %.5f (ratio %.2f)\n",
                   task_names[o.task], lat_mse, gru_mse, gru_mse / lat_mse);
        } else {
            json_writer w = json_begin(stdout);
            json_str(&w, "task", task_names[o.task]);
            json_int(&w, "epochs", E);
            json_int(&w, "n_series", o.n_series);
            json_int(&w, "batch", o.batch);
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
            json_num(&w, "train_s", total_ms / 1000);
            json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)o.norm));
            json_str(&w, "encoder_method", enc_names[o.enc_method]);
            json_u64(&w, "seed", o.seed);
            json_str(&w, "real", ND_REAL_NAME);
            json_end(&w);
        }
    }
    free(es);
    run_destroy(&r);
    nd_ctx_destroy(ctx);
    return status;
}

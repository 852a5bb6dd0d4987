/* SPDX-License-Identifier: MIT
 * examples/cnf2d.c: a continuous normalising flow (FFJORD, Grathwohl et al. 2019) on 2-D toy
 * densities, trained by maximum likelihood through nodal's adjoint ODE solver.
 *
 * The flow carries a data point x at t = 0 to z(1) under dz/dt = f(z, t), an MLP on [z, t]
 * (3 -> 64 -> 64 -> 2, tanh, PyTorch's default Linear init), while log p changes by
 * d logp/dt = -trace(df/dz), computed exactly with two vector-Jacobian products taken under
 * create_graph, so the adjoint differentiates through them (second order). With logp(0) = 0 and a
 * standard normal base, log p(x) = log N(z(1); 0, I) - logp(1), and the loss is
 *     -mean log p(x) = mean(|z1|^2 / 2 + log 2 pi + logp1) (docs/WORKLOADS.md, B).
 * One solve over t = [0, 1] (dopri5, rtol = atol = 1e-5) on a fresh batch of 512 points each
 * iteration; Adam, lr 1e-3. Data: "8gaussians" (centres 4 (+-1, 0), 4 (0, +-1),
 * 4 (+-1/sqrt2, +-1/sqrt2), std 0.5, all divided by 1.414) or "moons" (sklearn's two moons,
 * noise 0.1, scaled by 2 and shifted by (-1, -0.2) as in FFJORD), drawn with nodal's seeded RNG.
 *
 * Good looks like (8gaussians, seed 1, double): the loss starts at ~6.0 (the identity flow: a
 * standard normal on data of radius 2.83) and its 50-iteration mean falls to ~3.85 by
 * iteration 100, ~3.45 by 200 and ~2.9 by 350; the best possible is the data's entropy,
 * log 8 + log(2 pi e 0.125) = 2.84. The density picture then shows eight separate modes on a
 * ring, samples flowed back from the base land on them, and the density's mass inside the
 * [-4, 4]^2 window (printed) is close to 1, which checks the sign and size of the trace term.
 * Cost grows with training as the flow gets stiffer: NFE-F 20 -> ~70 and NFE-B 20 -> ~40 per
 * iteration over the first 350 iterations at rtol = atol = 1e-5, ~0.23 s per iteration at the
 * start on one idle core (batch 512), so the default 1000 iterations take ~10 minutes. The CI
 * smoke setting `--iters 5 --batch 64` takes a fraction of a second.
 *
 * Run:  ./build/examples/cnf2d [--data 8gaussians|moons] [--iters N] [--batch B] [--rtol R]
 *           [--atol A] [--norm rms|seminorm|seminorm_keep_t] [--method dopri5] [--seed S]
 *           [--print-every N] [--json] [--plot FILE.png] [--grid G] [--compare-norms]
 *           (--help: the flags)
 * Progress goes to stderr: iteration, loss, mean loss of the last N, NFE-F and NFE-B of the
 * iteration (nd_ode_stats), B-par (the share of the adjoint's error tests that the parameter or
 * time adjoint bound: what the seminorm can relax; 0 under it), ms per iteration. --json prints one
 * summary object on stdout.
 * --plot FILE.png writes one picture to that file, the name as given (as spiral and latent_ode
 * do): the data, the learned density exp(log p) on a G x G grid (default 100), samples
 * z ~ N(0, I) flowed from t = 1 back to t = 0, and the loss curve (needs cairo at build time;
 * the program says so otherwise).
 * --compare-norms measures, at iterations 0, 20, ..., 200, 300, 400, ... (docs/WORKLOADS.md B's
 * protocol), the backward NFE of every adjoint norm on the same batch and the same weights
 * (paired): torchdiffeq's default (t's adjoint integrated), default without a_t, torchdiffeq's
 * seminorm, and the paper's seminorm (nodal's ND_NORM_SEMINORM), at the training tolerances and
 * at the paper's (1e-3, 1e-6), (1e-4, 1e-7), (1e-5, 1e-8). The model, the data and that
 * measurement live in examples/models/cnf.c, which bench/seminorm links as well.
 * Data-parallel: `mpirun -np N ./build/examples/cnf2d ...` (README, "Data-parallel training over
 * MPI") splits each global batch of --batch across the N ranks and averages their gradients;
 * rank 0 alone prints and draws; the JSON adds per-rank NFE and waiting times.
 * Exit status: 0 when training ran (good or not), 1 on any library error, 2 on bad flags.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "cnf.h"
#include "dist/dist.h"
#include "flags.h"
#include "json.h"
#include "nodal.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

typedef struct {
    int data; // cnf_data
    int iters, batch, print_every, grid, norm, method;
    double rtol, atol;
    uint64_t seed;
    bool json, compare;
    const char *plot;
} options;

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.data = CNF_8GAUSSIANS,
                   .iters = 1000,
                   .batch = 512,
                   .print_every = 50,
                   .grid = 100,
                   .norm = ND_NORM_RMS,
                   .method = ND_DOPRI5,
                   .rtol = 1e-5,
                   .atol = 1e-5,
                   .seed = 1};
    const flag_spec flags[] = {
        FLAG_CHOICE("data", &o->data, cnf_data_names, "the toy density"),
        FLAG_INT("iters", &o->iters, 0, 10000000, "training iterations"),
        FLAG_INT("batch", &o->batch, 1, 1000000, "samples per iteration"),
        FLAG_POSITIVE("rtol", &o->rtol, "relative tolerance of both solves"),
        FLAG_POSITIVE("atol", &o->atol, "absolute tolerance of both solves"),
        FLAG_NORM(&o->norm, "the adjoint's norm"),
        FLAG_METHOD(&o->method, "the solver of both solves"),
        FLAG_U64("seed", &o->seed, "seeds the weights and the batches"),
        FLAG_INT("print-every", &o->print_every, 1, INT_MAX, "progress every N iterations"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
        FLAG_STRING("plot", &o->plot, "FILE.png", "draw data, density, samples and loss (cairo)"),
        FLAG_INT("grid", &o->grid, 2, 1000, "density grid side for --plot"),
        FLAG_BOOL("compare-norms", &o->compare, "paired backward NFE of every norm"),
    };
    int rc = flags_parse("cnf2d", "A continuous normalising flow on 2-D toy densities.", flags,
                         FLAGS_N(flags), argc, argv);
#ifndef HAVE_PLOT
    if (rc == FLAGS_OK && o->plot) {
        fprintf(stderr, "cnf2d: --plot needs cairo, and this build has none (install "
                        "libcairo2-dev and reconfigure meson)\n");
        rc = FLAGS_ERROR;
    }
#endif
    return rc;
}

/* Any failing call lands here: print the ctx's first error. */
static int fail(nd_ctx *ctx, const char *where)
{
    fprintf(stderr, "cnf2d: %s: %s (%s)\n", where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

// ------------------------------------------------------------------------------------------------
// --compare-norms: every norm at every tolerance on one checkpoint's batch and weights

enum { N_TOL = 4, N_CASES = CNF_N_NORM_CASES };

typedef struct { // totals over the checkpoints, per tolerance and case
    double tols[N_TOL][2];
    long nfe_b[N_TOL][N_CASES], nfe_f[N_TOL];
    double ms_b[N_TOL][N_CASES], diff[N_TOL][N_CASES];
    int n_checkpoints;
} comparison;

/* docs/WORKLOADS.md B's checkpoints: every 20 iterations up to 200, then every 100 */
static bool is_checkpoint(int it)
{
    return it <= 200 ? it % 20 == 0 : it % 100 == 0;
}

static nd_status compare_at(nd_ctx *ctx, const cnf_model *m, nd_tensor *x, const nd_ode_options *o,
                            int it, comparison *cmp)
{
    cmp->n_checkpoints++;
    for (int k = 0; k < N_TOL; k++) {
        nd_ode_options oc = *o;
        oc.solver.rtol = oc.adjoint.rtol = cmp->tols[k][0];
        oc.solver.atol = oc.adjoint.atol = cmp->tols[k][1];
        cnf_norm_result r[N_CASES];
        if (cnf_paired_norms(ctx, m, x, &oc, CNF_NORM_CASES, N_CASES, r, NULL) != ND_OK)
            return nd_ctx_error(ctx);
        cmp->nfe_f[k] += r[0].nfe_forward;
        for (int c = 0; c < N_CASES; c++) {
            cmp->nfe_b[k][c] += r[c].nfe_backward;
            cmp->ms_b[k][c] += r[c].ms_backward;
            cmp->diff[k][c] = fmax(cmp->diff[k][c], r[c].max_rel_grad_diff);
        }
        fprintf(stderr,
                "  checkpoint %4d (%g, %g): NFE-F %ld, NFE-B default %ld, default_no_t %ld, "
                "seminorm_keep_t %ld, seminorm %ld\n",
                it, cmp->tols[k][0], cmp->tols[k][1], r[0].nfe_forward, r[0].nfe_backward,
                r[1].nfe_backward, r[2].nfe_backward, r[3].nfe_backward);
    }
    nd_ctx_reset(ctx);
    return ND_OK;
}

static void print_comparison(const comparison *cmp, int iters)
{
    fprintf(stderr, "paired backward NFE over %d checkpoints (0-%d), same batch and weights:\n",
            cmp->n_checkpoints, iters);
    for (int k = 0; k < N_TOL; k++) {
        const long *b = cmp->nfe_b[k];
        fprintf(stderr,
                "  (%g, %g): NFE-F %ld; NFE-B default %ld, default_no_t %ld, seminorm_keep_t %ld, "
                "seminorm %ld: %.0f%% fewer than default, %.0f%% fewer than default_no_t; max rel "
                "grad diff %.1e\n",
                cmp->tols[k][0], cmp->tols[k][1], cmp->nfe_f[k], b[0], b[1], b[2], b[3],
                100.0 * (1 - (double)b[3] / b[0]), 100.0 * (1 - (double)b[3] / b[1]),
                cmp->diff[k][3]);
    }
}

// ------------------------------------------------------------------------------------------------
// training: fresh batch, solve, loss, adjoint backward, Adam step, reset the arena

typedef struct {
    double *losses; // (iters,) loss of every iteration
    long nfe_f, nfe_b;
    double ms;
    comparison cmp;
    nd_dist *dist; // data-parallel under mpirun: this rank's share of each batch
    int rank, ranks;
    double *rank_nfe_f, *rank_nfe_b, *rank_wait; // (ranks,) per iteration, and seconds waited
    nd_dist_stats dist_stats;                    // this rank's meetings
    size_t n_params;
} run;

/* One iteration on this rank's rows of the global batch x (B, 2) (rows [r B / N, (r + 1) B / N)
 * of N ranks, as nd_loader_shard): its loss and adjoint backward, the gradients averaged over the
 * ranks (every rank meets there, one that failed too), Adam. *loss: the global batch's. */
static nd_status train_step(nd_ctx *ctx, const cnf_model *m, nd_optimizer *opt, nd_tensor *x,
                            const nd_ode_options *o, run *r, double *loss, nd_ode_stats *stats)
{
    int B = x->shape[0], lo = (int)((long)r->rank * B / r->ranks);
    int n = (int)((long)(r->rank + 1) * B / r->ranks) - lo;
    nd_tensor *mine = nd_view(ctx, x, 2 * (size_t)lo, 2, (int[]){n, 2});  // (n, 2)
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1}); // (2,)
    nd_tensor *L = NULL;
    const nd_ode_stats *op_stats = NULL; // the op's: forward now, backward after the backward
    if (mine && t) cnf_neg_log_likelihood(ctx, m, mine, t, o, &op_stats, &L);
    nd_optimizer_zero_grad(opt);
    if (L) nd_backward(ctx, L, 0);
    if (nd_dist_allreduce_grads(ctx, r->dist, m->plist.items, m->plist.n, n) != ND_OK ||
        nd_optimizer_step(ctx, opt) != ND_OK)
        return nd_ctx_error(ctx);
    double sum = nd_item(L) * n; // the global batch's mean loss, for the record
    if (nd_dist_reduce(ctx, r->dist, ND_DIST_SUM, &sum, 1) != ND_OK) return nd_ctx_error(ctx);
    *loss = sum / B;
    *stats = *op_stats; // copied before the reset frees them
    nd_ctx_reset(ctx);  // frees this step's graph, keeps the memory
    return ND_OK;
}

static int train(nd_ctx *ctx, const options *op, const cnf_model *m, nd_optimizer *opt,
                 nd_tensor *x, nd_rng *data_rng, const nd_ode_options *o, run *r)
{
    double recent = 0;
    for (int it = 0; it <= op->iters; it++) {
        cnf_sample((cnf_data)op->data, data_rng, x);
        // before this iteration's update, on its batch: every norm, every tolerance
        if (op->compare && is_checkpoint(it) && compare_at(ctx, m, x, o, it, &r->cmp) != ND_OK)
            return fail(ctx, "compare norms");
        if (it == op->iters) break; // the last checkpoint comes after the last update
        double t0 = clock_wall_ms();
        nd_ode_stats stats = {0};
        if (train_step(ctx, m, opt, x, o, r, &r->losses[it], &stats) != ND_OK)
            return fail(ctx, "training step");
        double ms = clock_wall_ms() - t0;
        r->nfe_f += stats.forward.nfe, r->nfe_b += stats.backward.nfe, r->ms += ms;
        recent += r->losses[it] - (it >= op->print_every ? r->losses[it - op->print_every] : 0);
        bool due = (it + 1) % op->print_every == 0 || it == 0 || it + 1 == op->iters;
        if (r->rank == 0 && due) { // rank 0's NFE and time
            int n_recent = it + 1 < op->print_every ? it + 1 : op->print_every;
            fprintf(stderr,
                    "iter %5d  loss %.4f  mean of last %d %.4f  NFE-F %3ld  NFE-B %3ld  "
                    "B-par %3.0f%%  %.1f ms/iter\n",
                    it + 1, r->losses[it], n_recent, recent / n_recent, stats.forward.nfe,
                    stats.backward.nfe, 100 * nd_limit_seminorm_share(&stats.backward.limit), ms);
        }
    }
    return 0;
}

/* per rank: NFE per iteration and seconds waited for the others (every rank meets) */
static int rank_figures(nd_ctx *ctx, int iters, run *r)
{
    double per = iters > 0 ? 1.0 / iters : 0;
    r->dist_stats = nd_dist_get_stats(r->dist);
    if (nd_dist_gather(ctx, r->dist, r->nfe_f * per, r->rank_nfe_f) != ND_OK ||
        nd_dist_gather(ctx, r->dist, r->nfe_b * per, r->rank_nfe_b) != ND_OK ||
        nd_dist_gather(ctx, r->dist, r->dist_stats.wait_seconds, r->rank_wait) != ND_OK)
        return fail(ctx, "per-rank figures");
    if (r->rank != 0 || r->ranks < 2) return 0;
    fprintf(stderr, "%d ranks: NFE-F per rank", r->ranks);
    for (int q = 0; q < r->ranks; q++) fprintf(stderr, " %.1f", r->rank_nfe_f[q]);
    fprintf(stderr, ", NFE-B per rank");
    for (int q = 0; q < r->ranks; q++) fprintf(stderr, " %.1f", r->rank_nfe_b[q]);
    fprintf(stderr, "; waited for each other");
    for (int q = 0; q < r->ranks; q++) fprintf(stderr, " %.2f", r->rank_wait[q]);
    fprintf(stderr, " s; rank 0 all-reduced gradients in %.2f s\n", r->dist_stats.comm_seconds);
    return 0;
}

/* the first loss and the mean of the last 50 (NaN without iterations) */
static void loss_summary(const run *r, int iters, double *first, double *final)
{
    int n_tail = iters < 50 ? iters : 50;
    *first = iters > 0 ? r->losses[0] : NAN;
    *final = 0;
    for (int i = iters - n_tail; i < iters; i++) *final += r->losses[i] / n_tail;
    if (n_tail == 0) *final = NAN;
}

// ------------------------------------------------------------------------------------------------
// the picture: the data, the learned density, samples flowed back, the loss curve

#ifdef HAVE_PLOT
static int draw_figure(const char *path, const options *op, const double *pts, int n_pts,
                       const double *logp, const double *samples, const double *losses, double lo,
                       double hi)
{
    int G = op->grid, n = op->iters;
    double *p = malloc((size_t)G * G * sizeof *p), *curve = malloc(3 * (size_t)n * sizeof *curve);
    plot_figure *fig = p && curve ? plot_create(4, 430, 430, NULL) : NULL;
    if (!fig) return free(p), free(curve), -1;
    char title[96];
    snprintf(title, sizeof title, "data: %s (%d samples)", cnf_data_names[op->data], n_pts);
    plot_axes(fig, 0, title, "x", "y", lo, hi, lo, hi);
    plot_points(fig, 0, pts, pts + 1, n_pts, 2, PLOT_BLUE, 1.3, 0.35);

    double pmax = 0; // the density exp(log p), colours scaled to its max
    for (int i = 0; i < G * G; i++) pmax = fmax(pmax, p[i] = exp(logp[i]));
    snprintf(title, sizeof title, "learned density p(x), max %.2g", pmax);
    plot_axes(fig, 1, title, "x", "y", lo, hi, lo, hi);
    plot_image(fig, 1, p, G, G, 0, pmax > 0 ? pmax : 1);

    plot_axes(fig, 2, "samples: N(0, I) flowed t = 1 -> 0", "x", "y", lo, hi, lo, hi);
    plot_points(fig, 2, samples, samples + 1, n_pts, 2, PLOT_ORANGE, 1.3, 0.35);

    double lmin = INFINITY, lmax = -INFINITY, run = 0; // each batch, and the mean of 50
    for (int i = 0; i < n; i++) {
        run += losses[i] - (i >= 50 ? losses[i - 50] : 0);
        curve[i] = i + 1, curve[n + i] = losses[i], curve[2 * n + i] = run / (i < 50 ? i + 1 : 50);
        lmin = fmin(lmin, losses[i]), lmax = fmax(lmax, losses[i]);
    }
    if (n == 0) lmin = 0, lmax = 1;
    lmin = floor(lmin * 4) / 4, lmax = fmax(ceil(lmax * 4) / 4, lmin + 0.5);
    plot_axes(fig, 3, "training loss: -mean log p(x)", "iteration", "loss", 0, n > 0 ? n : 1, lmin,
              lmax);
    plot_line(fig, 3, curve, curve + n, n, 1, PLOT_GRAY, 1, false);
    plot_line(fig, 3, curve, curve + 2 * n, n, 1, PLOT_BLUE, 2, false);
    plot_legend(fig, 3, 0, "each batch", PLOT_GRAY, false);
    plot_legend(fig, 3, 1, "mean of 50", PLOT_BLUE, false);
    int rc = plot_save(fig, path);
    plot_destroy(fig);
    free(p), free(curve);
    return rc;
}
#endif

/* --plot: the density on a grid, samples flowed back from the base, and the figure */
static int picture(nd_ctx *ctx, const options *op, const cnf_model *m, const nd_ode_options *o,
                   nd_rng *data_rng, const double *losses)
{
#ifdef HAVE_PLOT
    const double lo = -4, hi = 4;
    const int n_pts = 4000, G = op->grid;
    double *logp = malloc((size_t)G * G * sizeof *logp),
           *pts = malloc(4 * (size_t)n_pts * sizeof *pts);
    nd_tensor *xd = nd_tensor_new(ctx, 2, (int[]){n_pts, 2}); // (n_pts, 2)
    int status = 0;
    if (!logp || !pts || !xd) {
        status = xd ? (fprintf(stderr, "cnf2d: out of memory\n"), 1) : fail(ctx, "plot");
        goto done;
    }
    cnf_sample((cnf_data)op->data, data_rng, xd);
    for (int i = 0; i < 2 * n_pts; i++) pts[i] = (double)xd->data[i];
    double t0 = clock_wall_ms(), *samples = pts + 2 * n_pts;
    if (cnf_density_grid(ctx, m, o, G, lo, hi, logp) != ND_OK ||
        cnf_flow_samples(ctx, m, o, data_rng, n_pts, samples) != ND_OK) {
        status = fail(ctx, "plot");
        goto done;
    }
    double mass = 0; // the density should integrate to ~1 over the window
    for (int i = 0; i < G * G; i++) mass += exp(logp[i]) * (hi - lo) * (hi - lo) / G / G;
    const char *path = op->plot;
    if (draw_figure(path, op, pts, n_pts, logp, samples, losses, lo, hi) != 0) {
        fprintf(stderr, "cnf2d: cannot write %s\n", path);
        status = 1;
        goto done;
    }
    fprintf(stderr, "wrote %s (density on %dx%d grid, mass in the window %.3f; %.1f s)\n", path, G,
            G, mass, (clock_wall_ms() - t0) / 1e3);
done:
    free(logp), free(pts);
    nd_ctx_reset(ctx);
    return status;
#else
    (void)ctx, (void)op, (void)m, (void)o, (void)data_rng, (void)losses;
    return 1;
#endif
}

// ------------------------------------------------------------------------------------------------

static void print_json(const options *op, const run *r, double first, double final)
{
    double per = op->iters > 0 ? 1.0 / op->iters : NAN;
    json_writer w = json_begin(stdout);
    json_str(&w, "example", "cnf2d");
    json_str(&w, "real", ND_REAL_NAME);
    json_str(&w, "data", cnf_data_names[op->data]);
    json_int(&w, "iters", op->iters);
    json_int(&w, "batch", op->batch);
    json_u64(&w, "seed", op->seed);
    json_str(&w, "method", nd_ode_method_name((nd_ode_method)op->method));
    json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)op->norm));
    json_num(&w, "rtol", op->rtol);
    json_num(&w, "atol", op->atol);
    json_num(&w, "first_loss", first);
    json_num(&w, "final_loss", final);
    json_num(&w, "nfe_forward_per_iter", r->nfe_f * per);
    json_num(&w, "nfe_backward_per_iter", r->nfe_b * per);
    json_num(&w, "ms_per_iter", r->ms * per);
    json_int(&w, "parameters", (long long)r->n_params);
    json_int(&w, "ranks", r->ranks);
    json_num(&w, "comm_seconds", r->dist_stats.comm_seconds); // rank 0's gradient all-reduces
    const char *keys[] = {"nfe_forward_per_rank", "nfe_backward_per_rank", "wait_seconds_per_rank"};
    const double *vals[] = {r->rank_nfe_f, r->rank_nfe_b, r->rank_wait};
    for (int k = 0; k < 3; k++) {
        json_array(&w, keys[k]);
        for (int q = 0; q < r->ranks; q++) json_num(&w, NULL, vals[k][q]);
        json_close(&w);
    }
    if (op->compare) {
        json_int(&w, "checkpoints", r->cmp.n_checkpoints);
        json_array(&w, "compare");
        for (int k = 0; k < N_TOL; k++)
            for (int c = 0; c < N_CASES; c++) {
                json_object(&w, NULL);
                json_str(&w, "norm", CNF_NORM_CASES[c].name);
                json_num(&w, "rtol", r->cmp.tols[k][0]);
                json_num(&w, "atol", r->cmp.tols[k][1]);
                json_int(&w, "nfe_forward", r->cmp.nfe_f[k]);
                json_int(&w, "nfe_backward", r->cmp.nfe_b[k][c]);
                json_num(&w, "ms_backward", r->cmp.ms_b[k][c]);
                json_num(&w, "max_rel_grad_diff", r->cmp.diff[k][c]);
                json_close(&w);
            }
        json_close(&w);
    }
    json_array(&w, "loss_curve"); // about 20 points: [iteration, loss]
    for (int i = 0; i<op->iters; i += op->iters> 20 ? op->iters / 20 : 1) {
        json_array(&w, NULL);
        json_int(&w, NULL, i + 1);
        json_num(&w, NULL, r->losses[i]);
        json_close(&w);
    }
    json_end(&w);
}

int main(int argc, char **argv)
{
    options op;
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "cnf2d: out of memory\n"), 1;
    // one rank, or one of mpirun's: before the flags, as MPI may take its own out of argv
    nd_dist *dist = NULL;
    if (nd_dist_init(ctx, &argc, &argv, &dist) != ND_OK) return nd_ctx_destroy(ctx), 1;
    int rank = nd_dist_rank(dist), ranks = nd_dist_size(dist);
    int rc = parse_options(argc, argv, &op);
    if (rc == FLAGS_OK && ranks > 1 && (op.compare || op.batch < ranks)) {
        fprintf(stderr,
                "cnf2d: on %d ranks: --compare-norms runs on one process only, and "
                "--batch needs at least one point per rank\n",
                ranks);
        rc = FLAGS_ERROR;
    }
    if (rc != FLAGS_OK) {
        nd_dist_destroy(dist), nd_ctx_destroy(ctx);
        return flags_exit_status(rc);
    }
    nd_rng rng = nd_rng_seed(op.seed);
    nd_rng data_rng = nd_rng_seed(op.seed ^ 0x9e3779b97f4a7c15ULL); // batches, apart from the init
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = o.adjoint.method = (nd_ode_method)op.method;
    o.solver.rtol = o.adjoint.rtol = op.rtol;
    o.solver.atol = o.adjoint.atol = op.atol;
    o.adjoint.norm = (nd_norm_kind)op.norm;
    run r = {.cmp.tols = {{op.rtol, op.atol}, {1e-3, 1e-6}, {1e-4, 1e-7}, {1e-5, 1e-8}},
             .dist = dist,
             .rank = rank,
             .ranks = ranks};

    // --- model, optimizer, data buffer
    int status = 0;
    cnf_model model = {0};
    nd_optimizer *opt = NULL;
    nd_tensor *x = NULL; // (batch, 2) this iteration's data, persistent
    r.losses = malloc(((size_t)op.iters + 1) * sizeof *r.losses);
    r.rank_nfe_f = calloc(3 * (size_t)ranks, sizeof *r.rank_nfe_f);
    r.rank_nfe_b = r.rank_nfe_f + ranks, r.rank_wait = r.rank_nfe_f + 2 * ranks;
    // the parameters in one block (one all-reduce)
    if (cnf_model_create(ctx, &model, &rng) != ND_OK || !nd_module_flatten(ctx, model.mlp) ||
        !r.rank_nfe_f ||
        !(opt = nd_adam_create(ctx, model.plist.items, model.plist.n, NULL)) || // lr 1e-3
        !(x = nd_tensor_create(ctx, 2, (int[]){op.batch, 2}, false)) || !r.losses) {
        if (nd_ctx_error(ctx) == ND_OK) nd_fail(ctx, ND_ERR_NOMEM, "cnf2d: out of memory");
        status = fail(ctx, "setup");
    }
    // every rank meets here, one that failed too (it tells the others), so that all of them go
    // on to the broadcast of rank 0's weights or all stop: none is left waiting in it
    if (nd_dist_check(ctx, dist) != ND_OK && status == 0) status = fail(ctx, "setup");
    if (status == 0 && nd_dist_broadcast_module(ctx, dist, model.mlp) != ND_OK)
        status = fail(ctx, "broadcast");
    if (status != 0) goto cleanup;
    if (rank == 0)
        fprintf(stderr,
                "cnf2d: %s, batch %d on %d rank%s, %s rtol %g atol %g, adjoint norm %s, %s, %zu "
                "parameters\n",
                cnf_data_names[op.data], op.batch, ranks, ranks > 1 ? "s" : "",
                nd_ode_method_name(o.solver.method), op.rtol, op.atol,
                nd_ode_norm_name((nd_norm_kind)op.norm), ND_REAL_NAME,
                nd_param_list_numel(&model.plist));

    if ((status = train(ctx, &op, &model, opt, x, &data_rng, &o, &r)) != 0 ||
        (status = rank_figures(ctx, op.iters, &r)) != 0)
        goto cleanup;
    if (rank != 0) goto cleanup; // rank 0 prints, draws and writes the JSON
    r.n_params = nd_param_list_numel(&model.plist);
    double first, final, per = op.iters > 0 ? 1.0 / op.iters : NAN;
    loss_summary(&r, op.iters, &first, &final);
    fprintf(stderr,
            "done: loss %.4f at iteration 1 -> %.4f (mean of the last %d); NFE-F %.1f, NFE-B %.1f "
            "per iteration; %.1f ms/iter\n",
            first, final, op.iters < 50 ? op.iters : 50, r.nfe_f * per, r.nfe_b * per, r.ms * per);
    if (op.compare) print_comparison(&r.cmp, op.iters);
    if (op.plot && (status = picture(ctx, &op, &model, &o, &data_rng, r.losses)) != 0) goto cleanup;
    if (op.json) print_json(&op, &r, first, final);

cleanup:
    free(r.losses);
    free(r.rank_nfe_f);
    nd_dist_destroy(dist);
    nd_tensor_destroy(x);
    nd_optimizer_destroy(opt);
    cnf_model_destroy(&model);
    nd_ctx_destroy(ctx);
    return status;
}

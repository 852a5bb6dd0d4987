/* SPDX-License-Identifier: MIT
 * examples/physics/driver.c: the driver of examples/pendulum.c and examples/acrobot.c (see
 * driver.h): MuJoCo data, training, prediction error, checkpoints, control trials on MuJoCo,
 * the picture and the JSON summary.
 */
#include "driver.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "clock.h"
#include "flags.h"
#include "json.h"
#include "mujoco_sim.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

#define SAMPLE_DT 0.05 /* the data's spacing */
#define EVAL_POINTS 41 /* 2 s rollouts */
#define CONTROL_DT 0.01
#define REACHED 0.1 /* rad: the angle error that counts as upright */

static const char *const kind_names[] = {"symoden", "baseline", NULL};

typedef struct {
    int kind, iters, batch, window, hidden, train_traj, test_traj, norm, method, print_every;
    int trials;
    double rtol, atol, lr;
    uint64_t seed;
    bool json;
    const char *xml, *save, *resume, *plot;
} options;

static int parse_options(const physics_program *prog, int argc, char **argv, options *o)
{
    *o = (options){.kind = SYMODEN_HAMILTONIAN,
                   .iters = prog->iters,
                   .batch = 256,
                   .window = 8,
                   .hidden = prog->hidden,
                   .train_traj = prog->train_traj,
                   .test_traj = 32,
                   .norm = ND_NORM_RMS,
                   .method = ND_DOPRI5,
                   .print_every = 50,
                   .trials = 5,
                   .rtol = 1e-4,
                   .atol = 1e-4,
                   .lr = prog->lr,
                   .seed = 1};
    const flag_spec flags[] = {
        FLAG_CHOICE("model", &o->kind, kind_names, "symoden, or the plain MLP ODE baseline"),
        FLAG_INT("iters", &o->iters, 0, 10000000, "training iterations"),
        FLAG_INT("batch", &o->batch, 1, 1000000, "windows per iteration"),
        FLAG_INT("window", &o->window, 2, EVAL_POINTS, "points per training window (0.05 apart)"),
        FLAG_INT("hidden", &o->hidden, 1, 4096, "hidden width of every MLP"),
        FLAG_INT("train-traj", &o->train_traj, 1, 1000000, "training trajectories (2 s each)"),
        FLAG_INT("test-traj", &o->test_traj, 1, 1000000, "held-out trajectories (2 s each)"),
        FLAG_POSITIVE("lr", &o->lr, "Adam's learning rate"),
        FLAG_POSITIVE("rtol", &o->rtol, "relative tolerance of both solves"),
        FLAG_POSITIVE("atol", &o->atol, "absolute tolerance of both solves"),
        FLAG_NORM(&o->norm, "the adjoint's norm"),
        FLAG_METHOD(&o->method, "the solver of both solves"),
        FLAG_U64("seed", &o->seed, "seeds the weights, the data and the control trials"),
        FLAG_INT("trials", &o->trials, 0, 1000, "control trials on MuJoCo (symoden only)"),
        FLAG_INT("print-every", &o->print_every, 1, INT_MAX, "progress every N iterations"),
        FLAG_STRING("xml", &o->xml, "FILE", "the MuJoCo model (default: the shipped one)"),
        FLAG_STRING("save", &o->save, "FILE", "save the model and Adam's state at the end"),
        FLAG_STRING("resume", &o->resume, "FILE", "start from a saved model and Adam's state"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
        FLAG_STRING("plot", &o->plot, "FILE.png",
                    "draw predictions, learned V, the swing-up and the loss (cairo)"),
    };
    int rc = flags_parse(prog->name, prog->summary, flags, FLAGS_N(flags), argc, argv);
#ifndef HAVE_PLOT
    if (rc == FLAGS_OK && o->plot) {
        fprintf(stderr, "%s: --plot needs cairo, and this build has none\n", prog->name);
        rc = FLAGS_ERROR;
    }
#endif
    return rc;
}

typedef struct {
    const physics_program *prog;
    options op;
    nd_ctx *ctx;
    mujoco_sim *sim;
    mujoco_sim_batch train, test;
    symoden_model model;
    nd_optimizer *opt;
    ckpt_list ckpt; // model and optimizer state, for --save / --resume
    nd_ode_options o;
    nd_rng rng;
    long iters_before;
    // results
    double *losses;
    long nfe_f, nfe_b;
    double ms, eval_mse, eval_mse_q;
    double *trial_final, *trial_reach; // (trials,)
    double *trial_err;                 // (trials, steps) angle errors, for the picture
    int trial_steps;
} run;

static int fail(run *r, const char *where)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", r->prog->name, where, nd_ctx_errmsg(r->ctx),
            nd_status_str(nd_ctx_error(r->ctx)));
    return 1;
}

double physics_wrap(double x)
{
    return x - 2 * M_PI * floor((x + M_PI) / (2 * M_PI));
}

// ------------------------------------------------------------------------------------------------
// the learned model at one state, as numbers (controllers)

static nd_tensor *row(nd_ctx *ctx, const double *v, int n, bool grad)
{
    nd_tensor *x = nd_tensor_new(ctx, 2, (int[]){1, n});
    if (!x) return NULL;
    for (int i = 0; i < n; i++) x->data[i] = (nd_real)v[i];
    x->requires_grad = grad;
    return x;
}

static void copy_out(const nd_tensor *x, double *out)
{
    for (size_t i = 0; i < x->size; i++) out[i] = (double)x->data[i];
}

nd_status physics_learned_at(nd_ctx *ctx, const symoden_model *m, const double *q,
                             const double *qdot, physics_learned *out)
{
    nd_mark mark = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, true);
    int n = m->n;
    nd_tensor *qt = row(ctx, q, n, true), *minv = NULL, *V = NULL, *g = NULL, *d[2];
    nd_tensor *p = nd_detach(ctx, symoden_momentum(ctx, m, qt, row(ctx, qdot, n, false)));
    nd_status st = p ? ND_OK : nd_ctx_error(ctx);
    if (st == ND_OK) {
        p->requires_grad = true;
        copy_out(p, out->p);
        nd_tensor *H = symoden_energy(ctx, m, qt, p);
        st = H ? nd_grad(ctx, &H, NULL, 1, (nd_tensor *[]){qt, p}, 2, d, 0) : nd_ctx_error(ctx);
        if (st == ND_OK) out->H = nd_item(H), copy_out(d[0], out->dHdq), copy_out(d[1], out->dHdp);
    }
    if (st == ND_OK) st = symoden_parts(ctx, m, qt, &minv, &V, &g);
    if (st == ND_OK) st = nd_grad(ctx, &V, NULL, 1, &qt, 1, d, 0);
    if (st == ND_OK) {
        out->V = nd_item(V);
        copy_out(d[0], out->dVdq), copy_out(minv, out->minv), copy_out(g, out->g);
    }
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, mark);
    return st;
}

nd_status physics_learned_field(nd_ctx *ctx, const symoden_model *m, const double *y,
                                const double *u, double *dy)
{
    nd_mark mark = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    symoden_ctrl c = {m, row(ctx, u, m->nu, false)};
    nd_tensor *yt = row(ctx, y, 2 * m->n, false), *out = NULL;
    int rc = c.u && yt ? symoden_dynamics(ctx, NULL, yt, &out, &c) : -1;
    if (rc == 0) copy_out(out, dy);
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, mark);
    return rc == 0 ? ND_OK
                   : nd_fail(ctx, ND_ERR_CALLBACK, "physics_learned_field: the field failed");
}

// ------------------------------------------------------------------------------------------------
// data: trajectories from MuJoCo, windows into tensors

static int make_data(run *r)
{
    const physics_program *p = r->prog;
    mujoco_sim_batch_options bo = {.n_traj = r->op.train_traj,
                                   .n_points = EVAL_POINTS,
                                   .sample_dt = SAMPLE_DT,
                                   .qpos_lo = p->qpos_lo,
                                   .qpos_hi = p->qpos_hi,
                                   .qvel_lo = p->qvel_lo,
                                   .qvel_hi = p->qvel_hi,
                                   .ctrl_lo = p->ctrl_lo,
                                   .ctrl_hi = p->ctrl_hi,
                                   .seed = r->op.seed};
    double t0 = clock_wall_ms();
    if (mujoco_sim_generate(r->sim, &bo, &r->train) != 0) goto bad;
    bo.n_traj = r->op.test_traj, bo.seed = r->op.seed ^ 0x5eedULL; // held out
    if (mujoco_sim_generate(r->sim, &bo, &r->test) != 0) goto bad;
    fprintf(stderr, "%s: MuJoCo data: %d + %d trajectories of %d points %.2f s apart (%.1f s)\n",
            p->name, r->op.train_traj, r->op.test_traj, EVAL_POINTS, SAMPLE_DT,
            (clock_wall_ms() - t0) / 1e3);
    return 0;
bad:
    fprintf(stderr, "%s: %s\n", p->name, mujoco_sim_error(r->sim));
    return 1;
}

/* windows (W, B, n) of q and qdot starting at point s of trajectory k, with their controls */
typedef struct {
    nd_tensor *q, *qdot, *u;
} windows;

static void put_window(const mujoco_sim_batch *d, int k, int s, int b, windows *w)
{
    symoden_put_window(d->qpos, d->qvel, d->ctrl, d->n_points, k, s, b, w->q, w->qdot, w->u);
}

static bool new_windows(nd_ctx *ctx, int W, int B, int n, int nu, windows *w)
{
    w->q = nd_tensor_new(ctx, 3, (int[]){W, B, n});
    w->qdot = nd_tensor_new(ctx, 3, (int[]){W, B, n});
    w->u = nd_tensor_new(ctx, 2, (int[]){B, nu});
    return w->q && w->qdot && w->u;
}

static nd_tensor *time_grid(nd_ctx *ctx, int W)
{
    nd_tensor *t = nd_tensor_new(ctx, 1, (int[]){W});
    for (int j = 0; t && j < W; j++) t->data[j] = (nd_real)(SAMPLE_DT * j);
    return t;
}

// ------------------------------------------------------------------------------------------------
// checkpoints: the model and Adam's state, with the example, the model kind, width and iterations

static int make_ckpt(run *r)
{
    int n_opt = 0;
    const nd_param *opt_state = nd_optimizer_state(r->opt, &n_opt);
    return ckpt_list_add(r->ctx, &r->ckpt, "", r->model.plist.items, r->model.plist.n) != 0 ||
                   ckpt_list_add(r->ctx, &r->ckpt, "optim.", opt_state, n_opt) != 0
               ? 1
               : 0;
}

static int resume(run *r)
{
    nd_checkpoint *ck = NULL;
    const char *path = r->op.resume;
    if (nd_checkpoint_read(r->ctx, path, &ck) != ND_OK) return fail(r, "--resume");
    const char *ex = nd_checkpoint_meta(ck, "example"), *kind = nd_checkpoint_meta(ck, "model");
    long iters = 0;
    int status = 0;
    if (!ex || strcmp(ex, r->prog->name) != 0 || !kind ||
        strcmp(kind, symoden_kind_name(r->model.kind)) != 0) {
        fprintf(stderr, "%s: --resume %s: a checkpoint of %s / %s, not of %s / %s\n", r->prog->name,
                path, ex ? ex : "?", kind ? kind : "?", r->prog->name,
                symoden_kind_name(r->model.kind));
        status = 1;
    } else if (nd_checkpoint_meta_long(r->ctx, ck, "iters", &iters) != ND_OK || iters < 0 ||
               nd_checkpoint_load(r->ctx, ck, r->ckpt.items, r->ckpt.n, NULL, NULL) != ND_OK) {
        status = fail(r, "--resume");
    } else {
        r->iters_before = iters;
        fprintf(stderr, "%s: resumed %s after %ld iterations\n", r->prog->name, path, iters);
    }
    nd_checkpoint_destroy(ck);
    return status;
}

static int save(run *r)
{
    char iters[32];
    snprintf(iters, sizeof iters, "%ld", r->iters_before + r->op.iters);
    nd_meta meta[] = {
        {"example", r->prog->name}, {"model", symoden_kind_name(r->model.kind)}, {"iters", iters}};
    nd_save_options so = ND_SAVE_DEFAULT;
    so.meta = meta, so.n_meta = 3;
    if (nd_save(r->ctx, r->op.save, r->ckpt.items, r->ckpt.n, &so) != ND_OK)
        return fail(r, "--save");
    fprintf(stderr, "%s: saved %s\n", r->prog->name, r->op.save);
    return 0;
}

// ------------------------------------------------------------------------------------------------
// training: random windows, the loss, the adjoint backward, Adam, reset the arena

static int train(run *r)
{
    nd_ctx *ctx = r->ctx;
    const options *op = &r->op;
    int W = op->window, B = op->batch, per_traj = EVAL_POINTS - W + 1;
    double recent = 0;
    for (int it = 0; it < op->iters; it++) {
        double t0 = clock_wall_ms();
        windows w;
        nd_tensor *t = time_grid(ctx, W);
        if (!t || !new_windows(ctx, W, B, r->model.n, r->model.nu, &w)) return fail(r, "batch");
        for (int b = 0; b < B; b++) {
            int k = (int)nd_rng_below(&r->rng, (uint64_t)op->train_traj);
            put_window(&r->train, k, (int)nd_rng_below(&r->rng, (uint64_t)per_traj), b, &w);
        }
        const nd_ode_stats *stats = NULL;
        nd_tensor *L = symoden_loss(ctx, &r->model, w.q, w.qdot, w.u, t, &r->o, &stats);
        nd_optimizer_zero_grad(r->opt);
        if (!L || nd_backward(ctx, L, 0) != ND_OK || nd_optimizer_step(ctx, r->opt) != ND_OK)
            return fail(r, "training step");
        double ms = clock_wall_ms() - t0;
        r->losses[it] = nd_item(L);
        r->nfe_f += stats->forward.nfe, r->nfe_b += stats->backward.nfe, r->ms += ms;
        recent += r->losses[it] - (it >= op->print_every ? r->losses[it - op->print_every] : 0);
        if ((it + 1) % op->print_every == 0 || it == 0 || it + 1 == op->iters) {
            int n_recent = it + 1 < op->print_every ? it + 1 : op->print_every;
            fprintf(stderr,
                    "iter %5ld  loss %.5f  mean of last %d %.5f  NFE-F %3ld  NFE-B %3ld  "
                    "%.1f ms\n",
                    r->iters_before + it + 1, r->losses[it], n_recent, recent / n_recent,
                    stats->forward.nfe, stats->backward.nfe, ms);
        }
        nd_ctx_reset(ctx);
    }
    return 0;
}

// ------------------------------------------------------------------------------------------------
// prediction error: 2 s rollouts from the held-out trajectories' initial states

/* the rollout of the test set (EVAL_POINTS, n_test, n) into q_out, qdot_out (may be NULL) */
static int rollout_test(run *r, double *q_out, double *qdot_out)
{
    nd_ctx *ctx = r->ctx;
    int T = EVAL_POINTS, B = r->op.test_traj, n = r->model.n;
    bool prev = nd_ctx_set_grad(ctx, false);
    windows w;
    nd_tensor *t = time_grid(ctx, T), *q = NULL, *qdot = NULL;
    int status = 0;
    if (!t || !new_windows(ctx, T, B, n, r->model.nu, &w)) {
        status = fail(r, "evaluation");
    } else {
        for (int b = 0; b < B; b++) put_window(&r->test, b, 0, b, &w);
        nd_tensor *q0 = nd_reshape(ctx, nd_slice(ctx, w.q, 0, 0, 1), 2, (int[]){B, n});
        nd_tensor *v0 = nd_reshape(ctx, nd_slice(ctx, w.qdot, 0, 0, 1), 2, (int[]){B, n});
        if (symoden_rollout(ctx, &r->model, q0, v0, w.u, t, &r->o, &q, &qdot, NULL) != ND_OK) {
            status = fail(r, "evaluation");
        } else {
            double sq = 0, sv = 0;
            for (size_t i = 0; i < q->size; i++) {
                sq += pow((double)(q->data[i] - w.q->data[i]), 2);
                sv += pow((double)(qdot->data[i] - w.qdot->data[i]), 2);
            }
            r->eval_mse_q = sq / (double)q->size;
            r->eval_mse = (sq + sv) / (2.0 * (double)q->size);
            if (q_out) copy_out(q, q_out);
            if (qdot_out) copy_out(qdot, qdot_out);
        }
    }
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_reset(ctx);
    return status;
}

// ------------------------------------------------------------------------------------------------
// control: the program's controller on the true MuJoCo system, from several starts

static double angle_error(const physics_program *p, const double *q)
{
    double s = 0;
    for (int i = 0; i < p->n; i++) s += pow(physics_wrap(q[i] - p->q_goal[i]), 2);
    return sqrt(s);
}

static int control_trial(run *r, void *state, nd_rng *rng, int k)
{
    const physics_program *p = r->prog;
    int steps = r->trial_steps, sub = (int)lround(CONTROL_DT / mujoco_sim_timestep(r->sim));
    double q[PHYSICS_MAX_N], v[PHYSICS_MAX_N] = {0}, u[PHYSICS_MAX_N] = {0};
    for (int i = 0; i < p->n; i++)
        q[i] = p->q_start[i] + p->start_spread * (2 * nd_rng_uniform(rng) - 1);
    if (mujoco_sim_reset(r->sim, q, v) != 0) goto bad;
    double q_start[PHYSICS_MAX_N] = {q[0], p->n > 1 ? q[1] : 0};
    double *err = r->trial_err + (size_t)k * steps, reach = NAN;
    for (int s = 0; s < steps; s++) {
        mujoco_sim_state(r->sim, q, v);
        err[s] = angle_error(p, q);
        if (err[s] < REACHED && isnan(reach)) reach = s * CONTROL_DT;
        if (err[s] >= REACHED) reach = NAN; // must stay
        if (p->control(r->ctx, &r->model, state, q, v, u) != 0) return fail(r, "controller");
        if (mujoco_sim_set_control(r->sim, u) != 0 || mujoco_sim_step(r->sim, sub) != 0) goto bad;
    }
    r->trial_final[k] = err[steps - 1];
    r->trial_reach[k] = reach;
    char start[64];
    if (p->n > 1)
        snprintf(start, sizeof start, "(%.3f, %.3f)", q_start[0], q_start[1]);
    else
        snprintf(start, sizeof start, "%.3f", q_start[0]);
    fprintf(stderr, "  trial %d: start q = %s, angle error at %.0f s %.4f rad, ", k, start,
            p->control_seconds, err[steps - 1]);
    if (isnan(reach))
        fprintf(stderr, "not upright at the end\n");
    else
        fprintf(stderr, "upright (< %.1f rad) from t = %.2f s on\n", REACHED, reach);
    return 0;
bad:
    fprintf(stderr, "%s: control trial %d: %s\n", p->name, k, mujoco_sim_error(r->sim));
    return 1;
}

static int control_trials(run *r)
{
    const physics_program *p = r->prog;
    int K = r->op.trials;
    r->trial_steps = (int)lround(p->control_seconds / CONTROL_DT);
    r->trial_final = calloc((size_t)K, sizeof *r->trial_final);
    r->trial_reach = calloc((size_t)K, sizeof *r->trial_reach);
    r->trial_err = calloc((size_t)K * r->trial_steps, sizeof *r->trial_err);
    if (!r->trial_final || !r->trial_reach || !r->trial_err)
        return fprintf(stderr, "%s: out of memory\n", p->name), 1;
    void *state = NULL;
    if (p->control_setup && p->control_setup(r->ctx, &r->model, &state) != 0)
        return free(state), fail(r, "controller setup");
    fprintf(stderr, "%s: the learned model's controller on MuJoCo, %d trials of %.0f s:\n", p->name,
            K, p->control_seconds);
    nd_rng rng = nd_rng_seed(r->op.seed ^ 0xc0ffeeULL);
    int status = 0;
    for (int k = 0; k < K && status == 0; k++) status = control_trial(r, state, &rng, k);
    free(state);
    return status;
}

static int trials_upright(const run *r)
{
    int n = 0;
    for (int k = 0; k < r->op.trials && r->trial_reach; k++) n += !isnan(r->trial_reach[k]);
    return n;
}

// ------------------------------------------------------------------------------------------------
// the picture: held-out trajectories true vs learned, learned V vs true, swing-ups, loss

#ifdef HAVE_PLOT
static void panel_predictions(plot_figure *fig, const run *r, const double *q_pred)
{
    int T = EVAL_POINTS, B = r->op.test_traj, n = r->model.n;
    double t[EVAL_POINTS], yt[EVAL_POINTS], yp[EVAL_POINTS], lo = INFINITY, hi = -INFINITY;
    const plot_rgb colors[3] = {PLOT_BLUE, PLOT_ORANGE, PLOT_GREEN};
    for (int k = 0; k < 3 && k < B; k++)
        for (int j = 0; j < T; j++) {
            double a = r->test.qpos[((size_t)k * T + j) * n], b = q_pred[((size_t)j * B + k) * n];
            lo = fmin(lo, fmin(a, b)), hi = fmax(hi, fmax(a, b));
        }
    plot_axes(fig, 0, "held-out: MuJoCo (solid) vs learned (dashed)", "t (s)", "q1 (rad)", 0,
              SAMPLE_DT * (T - 1), floor(lo), ceil(hi));
    for (int k = 0; k < 3 && k < B; k++) {
        for (int j = 0; j < T; j++) {
            t[j] = SAMPLE_DT * j;
            yt[j] = r->test.qpos[((size_t)k * T + j) * n];
            yp[j] = q_pred[((size_t)j * B + k) * n];
        }
        plot_line(fig, 0, t, yt, T, 1, colors[k], 2, false);
        plot_line(fig, 0, t, yp, T, 1, colors[k], 2, true);
    }
}

/* The learned model is determined up to one scale c shared by H and g (c H and c g give the same
 * motion in (q, qdot)); the picture divides V by c = the learned g's largest entry at q = 0, whose
 * true value is 1 (a motor of gear 1 on the actuated joint). */
static int panel_potential(plot_figure *fig, run *r)
{
    enum { G = 101 };
    double q1[G], learned[G], truth[G], v0 = 0, c = 0, lo = INFINITY, hi = -INFINITY;
    physics_learned l;
    double zero[PHYSICS_MAX_N] = {0};
    if (physics_learned_at(r->ctx, &r->model, zero, zero, &l) != ND_OK) return fail(r, "plot");
    v0 = l.V; // the learned V is known up to a constant: V(0) = 0
    for (int i = 0; i < r->model.n * r->model.nu; i++) c = fabs(l.g[i]) > fabs(c) ? l.g[i] : c;
    for (int i = 0; i < G; i++) {
        double q[PHYSICS_MAX_N] = {-M_PI + 2 * M_PI * i / (G - 1), 0};
        if (physics_learned_at(r->ctx, &r->model, q, zero, &l) != ND_OK) return fail(r, "plot");
        q1[i] = q[0], learned[i] = (l.V - v0) / c, truth[i] = r->prog->true_potential(q);
        lo = fmin(lo, fmin(learned[i], truth[i])), hi = fmax(hi, fmax(learned[i], truth[i]));
    }
    char title[96];
    snprintf(title, sizeof title, "potential V(q1%s), learned / g(0) = %.3g",
             r->model.n > 1 ? ", q2 = 0" : "", c);
    plot_axes(fig, 1, title, "q1 (rad)", "V - V(0)", -M_PI, M_PI, floor(lo), ceil(hi));
    plot_line(fig, 1, q1, truth, G, 1, PLOT_GRAY, 3, false);
    plot_line(fig, 1, q1, learned, G, 1, PLOT_BLUE, 2, true);
    plot_legend(fig, 1, 0, "true", PLOT_GRAY, false);
    plot_legend(fig, 1, 1, "learned / g(0)", PLOT_BLUE, true);
    return 0;
}

static void panel_control(plot_figure *fig, const run *r)
{
    int S = r->trial_steps;
    double *t = malloc((size_t)S * sizeof *t);
    if (!t) return;
    for (int s = 0; s < S; s++) t[s] = s * CONTROL_DT;
    char title[96];
    snprintf(title, sizeof title, "control on MuJoCo: %d of %d upright", trials_upright(r),
             r->op.trials);
    plot_axes(fig, 2, title, "t (s)", "angle error to upright (rad)", 0, S * CONTROL_DT, 0,
              r->model.n > 1 ? 4.5 : 3.5);
    const plot_rgb colors[3] = {PLOT_BLUE, PLOT_ORANGE, PLOT_GREEN};
    for (int k = 0; k < r->op.trials; k++)
        plot_line(fig, 2, t, r->trial_err + (size_t)k * S, S, 1, colors[k % 3], 1.5, false);
    free(t);
}

static void panel_loss(plot_figure *fig, const run *r)
{
    int n = r->op.iters;
    double *x = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *x), lo = INFINITY, hi = -INFINITY;
    if (!x) return;
    for (int i = 0; i < n; i++) {
        x[i] = i + 1, x[n + i] = log10(r->losses[i]);
        lo = fmin(lo, x[n + i]), hi = fmax(hi, x[n + i]);
    }
    if (n == 0) lo = 0, hi = 1;
    plot_axes(fig, 3,
              n > 0 ? "training loss (log10 MSE)" : "training loss: no iterations in this run",
              "iteration", "log10 loss", 0, n > 0 ? n : 1, floor(lo), ceil(hi));
    plot_line(fig, 3, x, x + n, n, 1, PLOT_BLUE, 1, false);
    free(x);
}

static int draw(run *r)
{
    int T = EVAL_POINTS, B = r->op.test_traj, n = r->model.n;
    double *q_pred = malloc((size_t)T * B * n * sizeof *q_pred);
    plot_figure *fig = q_pred ? plot_create(4, 430, 400, NULL) : NULL;
    int status = !fig ? (fprintf(stderr, "%s: out of memory\n", r->prog->name), 1) : 0;
    if (status == 0) status = rollout_test(r, q_pred, NULL);
    if (status == 0) {
        panel_predictions(fig, r, q_pred);
        if (r->model.kind == SYMODEN_HAMILTONIAN) status = panel_potential(fig, r);
        if (r->trial_err) panel_control(fig, r);
        panel_loss(fig, r);
    }
    if (status == 0 && plot_save(fig, r->op.plot) != 0) {
        fprintf(stderr, "%s: cannot write %s\n", r->prog->name, r->op.plot);
        status = 1;
    }
    if (status == 0) fprintf(stderr, "%s: wrote %s\n", r->prog->name, r->op.plot);
    plot_destroy(fig);
    free(q_pred);
    return status;
}
#endif

// ------------------------------------------------------------------------------------------------

static void print_json(const run *r)
{
    const options *op = &r->op;
    double per = op->iters > 0 ? 1.0 / op->iters : NAN, final = 0;
    int tail = op->iters < 50 ? op->iters : 50;
    for (int i = op->iters - tail; i < op->iters; i++) final += r->losses[i] / tail;
    json_writer w = json_begin(stdout);
    json_str(&w, "example", r->prog->name);
    json_str(&w, "model", symoden_kind_name(r->model.kind));
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "iters", op->iters);
    json_int(&w, "iters_before", r->iters_before);
    json_int(&w, "batch", op->batch);
    json_int(&w, "window", op->window);
    json_int(&w, "hidden", op->hidden);
    json_int(&w, "train_traj", op->train_traj);
    json_u64(&w, "seed", op->seed);
    json_str(&w, "method", nd_ode_method_name((nd_ode_method)op->method));
    json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)op->norm));
    json_num(&w, "rtol", op->rtol);
    json_num(&w, "atol", op->atol);
    json_num(&w, "first_loss", op->iters > 0 ? r->losses[0] : NAN);
    json_num(&w, "final_loss", tail > 0 ? final : NAN);
    json_num(&w, "nfe_forward_per_iter", r->nfe_f * per);
    json_num(&w, "nfe_backward_per_iter", r->nfe_b * per);
    json_num(&w, "ms_per_iter", r->ms * per);
    json_num(&w, "test_mse_2s", r->eval_mse);
    json_num(&w, "test_mse_q_2s", r->eval_mse_q);
    json_int(&w, "trials", r->trial_reach ? op->trials : 0);
    json_int(&w, "trials_upright", trials_upright(r));
    json_array(&w, "trial_final_error");
    for (int k = 0; r->trial_final && k < op->trials; k++) json_num(&w, NULL, r->trial_final[k]);
    json_close(&w);
    json_array(&w, "trial_time_to_upright"); // null: not upright at the end
    for (int k = 0; r->trial_reach && k < op->trials; k++) json_num(&w, NULL, r->trial_reach[k]);
    json_close(&w);
    json_end(&w);
}

static int setup(run *r)
{
    const options *op = &r->op;
    char path[4096], err[1024];
    if (op->xml)
        snprintf(path, sizeof path, "%s", op->xml);
    else
        snprintf(path, sizeof path, "%s/%s", MUJOCO_MODEL_DIR, r->prog->xml);
    if (!(r->sim = mujoco_sim_create(path, err, sizeof err)))
        return fprintf(stderr, "%s: %s\n", r->prog->name, err), 1;
    if (mujoco_sim_nq(r->sim) != r->prog->n || mujoco_sim_nv(r->sim) != r->prog->n ||
        mujoco_sim_nu(r->sim) != r->prog->nu) {
        fprintf(stderr, "%s: %s has nq %d, nv %d, nu %d; expected %d, %d, %d\n", r->prog->name,
                path, mujoco_sim_nq(r->sim), mujoco_sim_nv(r->sim), mujoco_sim_nu(r->sim),
                r->prog->n, r->prog->n, r->prog->nu);
        return 1;
    }
    r->o = ND_ODE_DEFAULT;
    r->o.solver.method = r->o.adjoint.method = (nd_ode_method)op->method;
    r->o.solver.rtol = op->rtol, r->o.solver.atol = op->atol;
    r->o.adjoint.norm = (nd_norm_kind)op->norm;
    r->rng = nd_rng_seed(op->seed);
    nd_adam_options ao = ND_ADAM_DEFAULT;
    ao.lr = op->lr;
    r->losses = calloc((size_t)op->iters + 1, sizeof *r->losses);
    if (!r->losses) return fprintf(stderr, "%s: out of memory\n", r->prog->name), 1;
    if (symoden_create(r->ctx, &r->model, (symoden_kind)op->kind, r->prog->n, r->prog->nu,
                       op->hidden, 0.01, &r->rng) != ND_OK ||
        !(r->opt = nd_adam_create(r->ctx, r->model.plist.items, r->model.plist.n, &ao)) ||
        make_ckpt(r) != 0)
        return fail(r, "setup");
    return 0;
}

int physics_main(const physics_program *prog, int argc, char **argv)
{
    run r = {.prog = prog};
    int rc = parse_options(prog, argc, argv, &r.op);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    if (!mujoco_sim_available()) {
        fprintf(stderr,
                "%s: this build has no MuJoCo, which makes the data: nothing to do "
                "(install libmujoco-dev and reconfigure meson)\n",
                prog->name);
        return 0;
    }
    if (!(r.ctx = nd_ctx_create(0))) return fprintf(stderr, "%s: out of memory\n", prog->name), 1;
    int status = setup(&r);
    if (status == 0) status = make_data(&r);
    if (status == 0 && r.op.resume) status = resume(&r);
    if (status == 0) {
        fprintf(stderr,
                "%s: %s, %zu parameters; windows of %d points, batch %d; %s rtol %g atol %g, "
                "adjoint norm %s, %s\n",
                prog->name, symoden_kind_name(r.model.kind), nd_param_list_numel(&r.model.plist),
                r.op.window, r.op.batch, nd_ode_method_name(r.o.solver.method), r.op.rtol,
                r.op.atol, nd_ode_norm_name(r.o.adjoint.norm), ND_REAL_NAME);
        status = train(&r);
    }
    if (status == 0 && r.op.save) status = save(&r);
    if (status == 0) status = rollout_test(&r, NULL, NULL);
    if (status == 0) {
        double per = r.op.iters > 0 ? 1.0 / r.op.iters : NAN;
        fprintf(stderr,
                "%s: 2 s prediction MSE on %d held-out trajectories: %.3g (q and qdot), %.3g "
                "(q); NFE-F %.1f, NFE-B %.1f, %.1f ms per iteration\n",
                prog->name, r.op.test_traj, r.eval_mse, r.eval_mse_q, r.nfe_f * per, r.nfe_b * per,
                r.ms * per);
    }
    if (status == 0 && r.model.kind == SYMODEN_HAMILTONIAN && r.op.trials > 0)
        status = control_trials(&r);
    if (status == 0 && r.trial_reach)
        fprintf(stderr, "%s: upright and balanced in %d of %d trials\n", prog->name,
                trials_upright(&r), r.op.trials);
#ifdef HAVE_PLOT
    if (status == 0 && r.op.plot) status = draw(&r);
#endif
    if (status == 0 && r.op.json) print_json(&r);
    ckpt_list_free(&r.ckpt);
    nd_optimizer_destroy(r.opt);
    symoden_destroy(&r.model);
    mujoco_sim_batch_free(&r.train), mujoco_sim_batch_free(&r.test);
    mujoco_sim_destroy(r.sim);
    free(r.losses), free(r.trial_final), free(r.trial_reach), free(r.trial_err);
    nd_ctx_destroy(r.ctx);
    return status;
}

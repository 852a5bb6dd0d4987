/* SPDX-License-Identifier: MIT
 * examples/ncde.c: a neural controlled differential equation (Kidger et al. 2020) classifying
 * spirals, torchcde's example, as defined in docs/WORKLOADS.md (C). Each of 128 series has 100
 * points at t = linspace(0, 4 pi, 100) with channels (t, x, y), x = cos(s + t) / (1 + t/2), y =
 * sin(s + t) / (1 + t/2), s ~ U(0, 2 pi); in half of them x is negated (class 1); noise 0.01. A
 * held-out test set of the same size is drawn after it from the same seeded generator.
 *
 *   X      a natural cubic spline through each series' points (the tridiagonal system for its
 *          second derivatives solved by LAPACK's dgtsv from OpenBLAS, all series at once), or with
 *          --path linear the piecewise-linear interpolant, whose kinks are passed as jump_t
 *   z0     = Linear(3, 16)(X(0))                                                    (B, 16)
 *   dz/dt  = g(z) dX/dt(t),  g = tanh(Linear(64, 48)(tanh(Linear(64, 64)(tanh(Linear(16,
 * 64)(z)))))) reshaped (B, 16, 3), times dX/dt (B, 3, 1)                              (B, 16)
 *   logits = Linear(16, 2)(z(4 pi)), cross-entropy, full batch, Adam lr 1e-3
 * One solve over [0, 4 pi] (dopri5), gradients by the adjoint ODE under --norm.
 *
 * The seminorm comparison: ncde_measure_norms() (examples/models/ncde.c) runs one forward and one
 * backward pass per adjoint norm on the same weights and batch (paired) and returns backward NFE,
 * steps, time and how far the gradients are from the default norm's. --paired N calls it every N
 * iterations at the three tolerances of docs/WORKLOADS.md C and prints the totals next to
 * torchdiffeq's. bench/seminorm links the same model code (examples/models/: ncde.c, spline.c).
 *   default          RMS over [a_t, z, a_z, a_theta]: torchdiffeq's default (t requires grad)
 *   seminorm         RMS over [z, a_z] (the paper's seminorm, ND_NORM_SEMINORM)
 *   default_no_t     RMS over [z, a_z, a_theta] (t does not require grad, so no a_t)
 *   seminorm_keep_t  RMS over [a_t, z, a_z]: torchdiffeq's norm='seminorm'
 *
 * Good looks like (double, seed 1, cubic, seminorm, rtol 1e-3, atol 1e-6): loss 0.87 at the first
 * iteration, ~0.14 at 20, below 0.01 by 25 and ~4e-4 at 30, train and test accuracy 1.0 from
 * iteration ~20; ~360 NFE-F and ~370 NFE-B per iteration. --paired 5 --iters 25 reproduces
 * docs/WORKLOADS.md C: the paper seminorm needs about half the backward evaluations of
 * torchdiffeq's default norm (nodal measured 53%, 62%, 57% fewer at the three tolerances;
 * torchdiffeq 55%, 67%, 71%), and almost all of that comes from leaving the time adjoint a_t out
 * (default_no_t is within ~10% of the seminorm). With --path linear every norm takes one step per
 * knot interval: 700 NFE each way, nothing to save. Costs ~0.3 s CPU per iteration (cubic; linear
 * ~0.4 s), so the default 40 iterations take ~15 s on one core; `--iters 3` about 1.5 s.
 *
 * Run:  ./build/examples/ncde [--path cubic|linear] [--iters N] [--rtol R] [--atol A]
 *                             [--norm rms|seminorm|seminorm_keep_t] [--method dopri5]
 *                             [--seed S] [--t-grad] [--print-every N] [--paired N] [--json]
 *                             (--help: the flags)
 * Progress goes to stderr; --json prints one summary object on stdout.
 * Exit status: 0 when training ran (good or not), 1 on any library error, 2 on bad flags.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>

#include "clock.h"
#include "flags.h"
#include "json.h"
#include "ncde.h"
#include "nodal.h"

typedef struct {
    int path; // spline_kind
    int iters, print_every, paired, norm, method;
    double rtol, atol;
    uint64_t seed;
    bool t_grad, json;
} options;

static const char *const path_names[] = {"cubic", "linear", NULL}; // by spline_kind

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.path = SPLINE_CUBIC,
                   .iters = 40,
                   .print_every = 5,
                   .norm = ND_NORM_SEMINORM,
                   .method = ND_DOPRI5,
                   .rtol = 1e-3,
                   .atol = 1e-6,
                   .seed = 1};
    const flag_spec flags[] = {
        FLAG_CHOICE("path", &o->path, path_names, "the control path X"),
        FLAG_INT("iters", &o->iters, 0, 10000000, "training iterations (full batch)"),
        FLAG_DOUBLE("rtol", &o->rtol, 0, 1e308, "relative tolerance of both solves"),
        FLAG_DOUBLE("atol", &o->atol, 0, 1e308, "absolute tolerance of both solves"),
        FLAG_NORM(&o->norm, "the adjoint's norm"),
        FLAG_METHOD(&o->method, "the solver of both solves"),
        FLAG_U64("seed", &o->seed, "seeds the data and the weights"),
        FLAG_BOOL("t-grad", &o->t_grad, "t requires grad (the adjoint integrates a_t)"),
        FLAG_INT("print-every", &o->print_every, 1, INT_MAX, "progress every N iterations"),
        FLAG_INT("paired", &o->paired, 0, INT_MAX,
                 "every adjoint norm every N iterations (0: off)"),
        FLAG_BOOL("json", &o->json, "one JSON summary on stdout"),
    };
    return flags_parse("ncde", "A neural CDE classifies spirals (docs/WORKLOADS.md, C).", flags,
                       FLAGS_N(flags), argc, argv);
}

static int fail(nd_ctx *ctx, const char *where)
{
    fprintf(stderr, "ncde: %s: %s (%s)\n", where, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    return 1;
}

// ------------------------------------------------------------------------------------------------
// --paired N: every adjoint norm at torchdiffeq's checkpoints and tolerances

/* torchdiffeq's totals over checkpoints 0, 5, ..., 25 (docs/WORKLOADS.md C; the last row at 0
 * and 25 only): default, seminorm (torchdiffeq), paper seminorm */
static const struct {
    double rtol, atol;
    int every; // checkpoint spacing torchdiffeq used
    double nfe[3];
} torchdiffeq_c[3] = {{1e-3, 1e-6, 5, {5124, 5232, 2304}},
                      {1e-4, 1e-7, 5, {12858, 13548, 4206}},
                      {1e-5, 1e-8, 25, {11554, 11800, 3340}}};

typedef struct {
    long nfe_b[3][NCDE_N_NORMS];
    int n[3];
} paired_totals;

static void paired_json(const options *op, int it, int k, const ncde_measure *ms)
{
    char workload[32];
    snprintf(workload, sizeof workload, "ncde_%s", path_names[op->path]);
    for (int n = 0; n < NCDE_N_NORMS; n++) {
        json_writer w = json_begin(stdout);
        json_str(&w, "workload", workload);
        json_int(&w, "iter", it);
        json_str(&w, "method", nd_ode_method_name((nd_ode_method)op->method));
        json_str(&w, "norm", ncde_norm_names[n]);
        json_num(&w, "rtol", torchdiffeq_c[k].rtol);
        json_num(&w, "atol", torchdiffeq_c[k].atol);
        json_num_prec(&w, "loss", ms[n].loss, 7);
        json_int(&w, "nfe_forward", ms[n].nfe_forward);
        json_int(&w, "nfe_backward", ms[n].nfe_backward);
        json_int(&w, "accepted_backward", ms[n].accepted_backward);
        json_int(&w, "rejected_backward", ms[n].rejected_backward);
        json_num(&w, "ms_backward", ms[n].ms_backward);
        json_num(&w, "max_rel_grad_diff", ms[n].max_rel_grad_diff);
        json_end(&w);
    }
}

/* at checkpoint it (before this iteration's update): each tolerance torchdiffeq measured there */
static nd_status paired_at(nd_ctx *ctx, const options *op, ncde_problem *P, int it,
                           paired_totals *tot)
{
    for (int k = 0; k < 3; k++) {
        if (it % torchdiffeq_c[k].every != 0) continue; // torchdiffeq's protocol
        ncde_measure ms[NCDE_N_NORMS];
        if (ncde_measure_norms(ctx, P->m, &P->Xtr, P->train.labels, (nd_ode_method)op->method,
                               torchdiffeq_c[k].rtol, torchdiffeq_c[k].atol, ms) != ND_OK)
            return nd_ctx_error(ctx);
        tot->n[k]++;
        fprintf(stderr, "  paired it %3d (%g, %g): NFE-B", it, torchdiffeq_c[k].rtol,
                torchdiffeq_c[k].atol);
        for (int n = 0; n < NCDE_N_NORMS; n++) {
            tot->nfe_b[k][n] += ms[n].nfe_backward;
            fprintf(stderr, " %s %ld", ncde_norm_names[n], ms[n].nfe_backward);
        }
        fprintf(stderr, "; max rel grad diff seminorm %.1e\n", ms[NCDE_SEMINORM].max_rel_grad_diff);
        if (op->json) paired_json(op, it, k, ms);
    }
    return ND_OK;
}

static void print_paired(const options *op, const paired_totals *tot)
{
    for (int k = 0; k < 3; k++) {
        if (!tot->n[k]) continue;
        const long *b = tot->nfe_b[k];
        fprintf(stderr,
                "paired totals (%g, %g) over %d checkpoints: default %ld, seminorm %ld "
                "(saving %.0f%%), default_no_t %ld, seminorm_keep_t %ld; ",
                torchdiffeq_c[k].rtol, torchdiffeq_c[k].atol, tot->n[k], b[NCDE_DEFAULT],
                b[NCDE_SEMINORM], 100.0 * (1 - (double)b[NCDE_SEMINORM] / (double)b[NCDE_DEFAULT]),
                b[NCDE_DEFAULT_NO_T], b[NCDE_SEMINORM_KEEP_T]);
        if (op->path == SPLINE_LINEAR)
            fprintf(stderr, "torchdiffeq: 700 per checkpoint under every norm\n");
        else
            fprintf(stderr, "torchdiffeq: %.0f / %.0f / %.0f (saving %.0f%%)\n",
                    torchdiffeq_c[k].nfe[0], torchdiffeq_c[k].nfe[1], torchdiffeq_c[k].nfe[2],
                    100.0 * (1 - torchdiffeq_c[k].nfe[2] / torchdiffeq_c[k].nfe[0]));
    }
}

// ------------------------------------------------------------------------------------------------
// training and evaluation

typedef struct {
    double loss, acc, test_loss, test_acc, ms, cpu_ms;
    long nfe_f, nfe_b, test_nfe_f;
    paired_totals paired;
} results;

static int train(nd_ctx *ctx, const options *op, ncde_problem *P, const ncde_solve_cfg *cfg,
                 results *r)
{
    for (int it = 0; it <= op->iters; it++) {
        if (op->paired && it % op->paired == 0 && paired_at(ctx, op, P, it, &r->paired) != ND_OK)
            return fail(ctx, "paired measurement");
        if (it == op->iters) break;
        double t0 = clock_wall_ms(), c0 = clock_cpu_ms();
        nd_ode_stats stats = {0};
        if (ncde_train_step(ctx, P, cfg, &r->loss, &r->acc, &stats) != ND_OK)
            return fail(ctx, "training step");
        double ms = clock_wall_ms() - t0;
        r->cpu_ms += clock_cpu_ms() - c0;
        r->ms += ms, r->nfe_f += stats.forward.nfe, r->nfe_b += stats.backward.nfe;
        if ((it + 1) % op->print_every == 0 || it == 0 || it + 1 == op->iters)
            fprintf(stderr,
                    "iter %4d  loss %.4f  train acc %.3f  NFE-F %4ld  NFE-B %4ld  %.1f ms\n",
                    it + 1, r->loss, r->acc, stats.forward.nfe, stats.backward.nfe, ms);
    }
    return 0;
}

/* the held-out set, after the last update, grad mode off */
static int evaluate(nd_ctx *ctx, ncde_problem *P, const ncde_solve_cfg *cfg, results *r)
{
    bool prev = nd_ctx_set_grad(ctx, false);
    const nd_ode_stats *est = NULL;
    nd_tensor *logits = ncde_logits(ctx, P->m, &P->Xte, cfg, &est); // (B, 2)
    nd_tensor *L = nd_cross_entropy(ctx, logits, P->test.labels, ND_REDUCE_MEAN);
    nd_ctx_set_grad(ctx, prev);
    if (!L) return fail(ctx, "test");
    r->test_acc = nd_accuracy(logits, P->test.labels), r->test_loss = nd_item(L);
    r->test_nfe_f = est->forward.nfe; // before the reset frees the op's statistics
    nd_ctx_reset(ctx);
    return 0;
}

static void print_json(const options *op, const results *r)
{
    double per = op->iters > 0 ? 1.0 / op->iters : 0;
    json_writer w = json_begin(stdout);
    json_str(&w, "example", "ncde");
    json_str(&w, "real", ND_REAL_NAME);
    json_str(&w, "path", path_names[op->path]);
    json_str(&w, "method", nd_ode_method_name((nd_ode_method)op->method));
    json_str(&w, "norm", nd_ode_norm_name((nd_norm_kind)op->norm));
    json_bool(&w, "t_grad", op->t_grad);
    json_num(&w, "rtol", op->rtol);
    json_num(&w, "atol", op->atol);
    json_u64(&w, "seed", op->seed);
    json_int(&w, "iters", op->iters);
    json_num_prec(&w, "loss", r->loss, 7);
    json_num(&w, "train_accuracy", r->acc);
    json_num_prec(&w, "test_loss", r->test_loss, 7);
    json_num(&w, "test_accuracy", r->test_acc);
    json_num(&w, "nfe_forward_per_iter", r->nfe_f * per);
    json_num(&w, "nfe_backward_per_iter", r->nfe_b * per);
    json_num(&w, "ms_per_iter", r->ms * per);
    json_num(&w, "cpu_ms_per_iter", r->cpu_ms * per);
    json_end(&w);
}

int main(int argc, char **argv)
{
    options op;
    int rc = parse_options(argc, argv, &op);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "ncde: out of memory\n"), 1;
    ncde_problem P;
    double t_setup = clock_wall_ms();
    if (ncde_problem_init(ctx, &P, (spline_kind)op.path, op.seed)) {
        nd_ctx_destroy(ctx);
        return 1;
    }
    t_setup = clock_wall_ms() - t_setup;
    fprintf(stderr,
            "ncde: %s path, 2 x %d series (%.1f ms to set up), %s, rtol %g atol %g, "
            "adjoint norm %s%s, %zu parameters, %s\n",
            path_names[op.path], NCDE_SERIES, t_setup, nd_ode_method_name((nd_ode_method)op.method),
            op.rtol, op.atol, nd_ode_norm_name((nd_norm_kind)op.norm),
            op.t_grad ? " (t requires grad)" : "", nd_param_list_numel(&P.m->all), ND_REAL_NAME);

    ncde_solve_cfg cfg = {(nd_ode_method)op.method, op.rtol, op.atol, (nd_norm_kind)op.norm,
                          op.t_grad};
    results r = {.loss = NAN, .acc = NAN};
    int status = train(ctx, &op, &P, &cfg, &r);
    if (status == 0) status = evaluate(ctx, &P, &cfg, &r);
    if (status == 0) {
        double per = op.iters > 0 ? 1.0 / op.iters : 0;
        fprintf(stderr,
                "test: loss %.4f accuracy %.3f (NFE-F %ld); per iteration: NFE-F %.1f NFE-B "
                "%.1f, %.1f ms wall, %.1f ms CPU\n",
                r.test_loss, r.test_acc, r.test_nfe_f, r.nfe_f * per, r.nfe_b * per, r.ms * per,
                r.cpu_ms * per);
        if (op.paired) print_paired(&op, &r.paired);
        if (op.json) print_json(&op, &r);
    }
    ncde_problem_free(&P);
    nd_ctx_destroy(ctx);
    return status;
}

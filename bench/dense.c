/* SPDX-License-Identifier: MIT
 * bench/dense.c: what dense solutions and events cost, side by side in one run.
 *
 *   queries  y(t) at N times chosen one at a time (each known only after the previous answer,
 *            as a root finder or a plot that refines itself asks): one solve kept as a dense
 *            solution (nd_ode_solution) and N evaluations, against N solves of nd_odeint from t0
 *            to each time. Reports NFE, wall time and the largest difference between the two.
 *   event    torchdiffeq's spiral (y' = y^3 A) from (2, 0), where y_2 = 0 and rises, until y_2
 *            falls back through 0 (direction -1): nd_odeint_event's forward NFE (the search
 *            plus the solve to the event), g's evaluations, and its gradient with respect to y0
 *            by the adjoint, against a plain nd_odeint to the same time.
 *
 * Each case runs once as a warm-up, then timed. Output: one JSON object per case on stdout.
 * Usage: dense [--queries N] [--quick]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "flags.h"
#include "json.h"
#include "nodal.h"

/* torchdiffeq's ode_demo dynamics: y' = y^3 A, A = [[-0.1, 2], [-2, -0.1]] (y is a row) */
static long f_calls;
static int spiral_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    f_calls++;
    nd_tensor *y3 = nd_mul(c, nd_mul(c, y, y), y);
    *dy = nd_reshape(c, nd_matmul(c, nd_reshape(c, y3, 2, (int[]){-1, 2}), (nd_tensor *)u), y->ndim,
                     y->shape);
    return 0;
}

static long g_calls;
/* y_2 of the first point */
static nd_tensor *second_coordinate(nd_ctx *c, nd_tensor *t, nd_tensor *y, void *u)
{
    (void)t, (void)u;
    g_calls++;
    return nd_slice(c, nd_reshape(c, y, 1, (int[]){(int)y->size}), 0, 1, 1);
}

static nd_ode_options tight(void)
{
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = 1e-6, o.solver.atol = 1e-8;
    return o;
}

static int fail(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "dense: %s: %s\n", what, nd_ctx_errmsg(ctx));
    return 1;
}

static int bench_queries(nd_ctx *ctx, nd_tensor *A, int n_queries, bool report)
{
    nd_rng rng = nd_rng_seed(7);
    nd_tensor *y0 = nd_tensor_new(ctx, 2, (int[]){16, 2}); /* 16 points */
    for (size_t i = 0; i < y0->size; i++) y0->data[i] = (nd_real)(2 * nd_rng_uniform(&rng) - 1);
    const double T = 10;
    nd_ode_options o = tight();
    double *tq = malloc((size_t)n_queries * sizeof *tq);
    if (!tq) return 1;
    for (int q = 0; q < n_queries; q++) tq[q] = T * nd_rng_uniform(&rng);

    f_calls = 0;
    double t0 = clock_wall_ms();
    nd_ode_solution *sol = nd_ode_solution_create(ctx, spiral_f, A, y0, 0, T, NULL, 0, &o);
    if (!sol) return free(tq), fail(ctx, "nd_ode_solution_create");
    nd_tensor **dense = malloc((size_t)n_queries * sizeof *dense);
    for (int q = 0; dense && q < n_queries; q++) dense[q] = nd_ode_solution_at(ctx, sol, tq[q]);
    double ms_dense = clock_wall_ms() - t0;
    long nfe_dense = f_calls, steps = nd_ode_solution_steps(sol);

    f_calls = 0;
    double worst = 0;
    t0 = clock_wall_ms();
    for (int q = 0; dense && q < n_queries; q++) {
        nd_mark m = nd_ctx_mark(ctx);
        nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, (nd_real)tq[q]});
        nd_tensor *ys = nd_odeint(ctx, spiral_f, A, y0, t, NULL, 0, &o);
        if (!ys || !dense[q]) break;
        for (size_t i = 0; i < y0->size; i++)
            worst = fmax(worst, fabs((double)ys->data[y0->size + i] - dense[q]->data[i]));
        nd_ctx_rewind(ctx, m);
    }
    double ms_resolve = clock_wall_ms() - t0;
    nd_ode_solution_destroy(sol);
    free(dense);
    free(tq);
    if (nd_ctx_error(ctx)) return fail(ctx, "queries");
    if (!report) return nd_ctx_reset(ctx), 0;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "queries");
    json_int(&w, "queries", n_queries);
    json_int(&w, "steps", steps);
    json_int(&w, "nfe_dense", nfe_dense);
    json_int(&w, "nfe_resolve", f_calls);
    json_num(&w, "ms_dense", ms_dense);
    json_num(&w, "ms_resolve", ms_resolve);
    json_num(&w, "speedup", ms_resolve / ms_dense);
    json_num_prec(&w, "max_abs_diff", worst, 3);
    json_end(&w);
    nd_ctx_reset(ctx);
    return 0;
}

static int bench_event(nd_ctx *ctx, nd_tensor *A, bool report)
{
    nd_tensor *y0 = nd_tensor_from(ctx, 2, (int[]){1, 2}, (nd_real[]){2, 0});
    y0->requires_grad = true;
    nd_ode_options o = tight();
    /* g(t0) = 0 is no event: the event is y_2's first fall through 0 */
    nd_event_options eo = {.direction = -1};
    nd_tensor *te = NULL, *ye = NULL;
    f_calls = g_calls = 0;
    double t0 = clock_wall_ms();
    if (nd_odeint_event(ctx, spiral_f, second_coordinate, A, y0, 0, 25, NULL, 0, &o, &eo, &te,
                        &ye) != ND_OK)
        return fail(ctx, "nd_odeint_event");
    double ms_event = clock_wall_ms() - t0;
    long nfe_event = f_calls, g_evals = g_calls;
    double t_event = nd_item(te);
    f_calls = 0;
    t0 = clock_wall_ms();
    if (nd_backward(ctx, te, 0) != ND_OK) return fail(ctx, "event backward");
    double ms_backward = clock_wall_ms() - t0;
    long nfe_backward = f_calls;
    double dt_dy0[2] = {y0->grad[0], y0->grad[1]};

    /* the plain solve to the same time, for comparison */
    nd_ctx_reset(ctx);
    y0 = nd_tensor_from(ctx, 2, (int[]){1, 2}, (nd_real[]){2, 0});
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, (nd_real)t_event});
    f_calls = 0;
    t0 = clock_wall_ms();
    nd_tensor *ys = nd_odeint(ctx, spiral_f, A, y0, t, NULL, 0, &o);
    double ms_plain = clock_wall_ms() - t0;
    if (!ys) return fail(ctx, "plain solve");
    if (!report) return nd_ctx_reset(ctx), 0;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "event");
    json_num_prec(&w, "t_event", t_event, 10);
    json_num_prec(&w, "y2_at_event", ys->data[1], 3);
    json_int(&w, "nfe_event_forward", nfe_event);
    json_int(&w, "g_evaluations", g_evals);
    json_int(&w, "nfe_plain_solve", f_calls);
    json_int(&w, "nfe_event_backward", nfe_backward);
    json_num(&w, "ms_event", ms_event);
    json_num(&w, "ms_plain_solve", ms_plain);
    json_num(&w, "ms_event_backward", ms_backward);
    json_array(&w, "dt_event_dy0");
    json_num(&w, NULL, dt_dy0[0]);
    json_num(&w, NULL, dt_dy0[1]);
    json_close(&w);
    json_end(&w);
    nd_ctx_reset(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    int n_queries = 200;
    bool quick = false;
    const flag_spec flags[] = {
        FLAG_INT("queries", &n_queries, 1, 100000, "times asked one at a time"),
        FLAG_BOOL("quick", &quick, "20 queries (CI)"),
    };
    int rc = flags_parse("dense", "Dense solutions and events: what they cost, side by side.",
                         flags, FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    if (quick) n_queries = 20;
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) return fprintf(stderr, "dense: out of memory\n"), 1;
    nd_tensor *A = nd_tensor_create(ctx, 2, (int[]){2, 2}, false);
    if (!A) return fail(ctx, "setup");
    const nd_real a[4] = {-0.1, 2.0, -2.0, -0.1};
    for (int i = 0; i < 4; i++) A->data[i] = a[i];
    /* each case runs once unreported first, so the timed run finds the arena grown and the code
     * and data warm */
    int status = bench_queries(ctx, A, n_queries, false) ||
                 bench_queries(ctx, A, n_queries, true) || bench_event(ctx, A, false) ||
                 bench_event(ctx, A, true);
    nd_tensor_destroy(A);
    nd_ctx_destroy(ctx);
    return status;
}

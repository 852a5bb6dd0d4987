/* SPDX-License-Identifier: MIT
 * odeint/solver.c: explicit Runge-Kutta integration of a packed system, adaptive or fixed-step.
 *
 * The solve runs in internal time s = dir * t (dir = -1 for decreasing t), where it always moves
 * forward; the system sees the real time and its derivative is multiplied by dir, exactly as
 * torchdiffeq reverses time. Step control is torchdiffeq 0.2.5's: error ratio
 * r = norm(err / (atol + rtol max(|y0|, |y1|))), accept iff r <= 1, next step
 * dt * min(ifactor, max(safety / r^(1/order), dfactor)) with no shrink after an accepted step,
 * the first step by Hairer, Norsett & Wanner II.4, the last stage at t1 taken from just below t1,
 * and steps onto step_t / jump_t. Requested output times never change the steps taken: outputs
 * come from each step's interpolant (interp.c: quartic for adaptive methods, cubic Hermite for
 * fixed-step ones), which the system's on_step hook also receives.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "odeint/solver.h"
#include "odeint/tableau.h"

/* torchdiffeq 0.2.5's constants (_select_initial_step, _optimal_step_size), kept so step counts
 * match it one for one. */
#define INIT_TINY_NORM 1e-5 /* below this |y0| or |f0| is "zero": start from INIT_FALLBACK */
#define INIT_FALLBACK 1e-6  /* h0 when the norms say nothing */
#define INIT_FRACTION 0.01  /* h0 = INIT_FRACTION |y0| / |f0|, h1 = (INIT_FRACTION / d)^(1/p) */
#define INIT_FLAT 1e-15     /* |f0| and |f'| below this: h1 = max(INIT_FALLBACK, h0 INIT_SHRINK) */
#define INIT_SHRINK 1e-3
#define INIT_GROWTH 100   /* the first step is at most INIT_GROWTH h0 */
#define PI_MIN_RATIO 1e-4 /* the PI controller remembers error ratios of at least this */

typedef enum { PERTURB_NONE, PERTURB_NEXT, PERTURB_PREV } perturb;

typedef struct {
    nd_ctx *ctx;
    nd_ode_system *sys;
    const nd_solver_options *opt;
    const nd_tableau *tab;
    bool taped;
    nd_solve_stats *stats;
    double dir;
    double *step_s, *jump_s; /* breakpoints in internal time, increasing */
    int n_step, n_jump, next_step, next_jump;
    nd_real *scratch;       /* (n,) for user norms */
    const nd_real **blocks; /* (n_blocks,) */
    /* the solver state at internal time s1: y, f = f(s1, y), the last step [s0, s1], the
     * proposed next step dt, and the interpolant of the last step */
    nd_tensor *y, *f;
    double s0, s1, dt, r_prev;
    double min_step;             /* opt->min_step, at most the solve's interval */
    nd_interp ip;                /* over [s0, s1]; untaped its coefficients are buffers */
    nd_tensor *k[ND_MAX_STAGES]; /* untaped: stage buffers reused by every step */
    bool stopped;                /* the on_step or on_state hook ended the solve */
    long accepted;               /* accepted steps, counting on from a resumed state */
    int *role_index;             /* (n_blocks,) each block's index among its role's blocks */
    int limit_block;             /* the block that bound the last error test, or -1 */
} solver;

static nd_status fail_at(solver *sv, nd_status code, double s, const char *what)
{
    return nd_fail(sv->ctx, code, "%s: %s at t = %.17g", sv->sys->what, what, sv->dir * s);
}

/* The time just after (PERTURB_NEXT) or just before (PERTURB_PREV) internal time s, in the
 * precision f receives t in (nd_real): a double neighbour of a breakpoint would round back onto
 * it in a float build, and f would see the breakpoint itself from both sides. Negation is exact,
 * so working in internal time gives the same neighbours in real time. */
static double neighbour(double s, perturb p)
{
    double toward = p == PERTURB_NEXT ? INFINITY : -INFINITY;
#ifdef ND_REAL_FLOAT
    float n = (float)s;
    if (p == PERTURB_NEXT ? (double)n <= s : (double)n >= s) n = nextafterf(n, (float)toward);
    return (double)n;
#else
    return nextafter(s, toward);
#endif
}

/* f at internal time s, as a new tensor in *dy. Returns the callback's code; a failure or a
 * non-finite derivative is an error in ctx (returned as -1). */
static int eval(solver *sv, double s, perturb p, nd_tensor *y, nd_tensor **dy)
{
    if (p != PERTURB_NONE) s = neighbour(s, p);
    sv->stats->nfe++;
    nd_tensor *d = NULL;
    int rc = sv->sys->eval(sv->sys, sv->ctx, sv->dir * s, y, &d);
    if (rc != 0) return rc;
    if (!d) return -1;
    if (!nd_all_finite(d)) {
        fail_at(sv, ND_ERR_NONFINITE, s, "the derivative f(t, y) is not finite");
        return -1;
    }
    *dy = sv->dir < 0 ? nd_mul_scalar(sv->ctx, d, -1) : d;
    return *dy ? 0 : -1;
}

/* eval into a stage slot: taped, the slot takes the new tensor; untaped, the value is copied
 * into the slot's buffer and the evaluation's memory is released at once. */
static int eval_into(solver *sv, double s, perturb p, nd_tensor *y, nd_tensor **slot)
{
    if (sv->taped) return eval(sv, s, p, y, slot);
    nd_mark m = nd_ctx_mark(sv->ctx);
    nd_tensor *d = NULL;
    int rc = eval(sv, s, p, y, &d);
    if (rc == 0) memcpy((*slot)->data, d->data, sv->sys->n * sizeof(nd_real));
    nd_ctx_rewind(sv->ctx, m);
    return rc;
}

/* y + dt sum_j w[j] k[j] over the first n_k stages (zero weights skipped) */
static nd_tensor *combine(solver *sv, nd_tensor *y, const double *w, int n_k, double dt)
{
    nd_tensor *terms[ND_MAX_STAGES + 1];
    nd_real coef[ND_MAX_STAGES + 1];
    int n = 0;
    if (y) terms[n] = y, coef[n++] = 1;
    for (int j = 0; j < n_k; j++)
        if (w[j] != 0) terms[n] = sv->k[j], coef[n++] = (nd_real)(w[j] * dt);
    if (n == 0) return nd_zeros_like(sv->ctx, sv->y);
    return nd_lincomb(sv->ctx, terms, coef, n);
}

/* Keeps a value across the step's rewind: copied into the persistent buffer when untaped. */
static void keep(solver *sv, nd_tensor **dst, nd_tensor *src)
{
    if (sv->taped)
        *dst = src;
    else if (*dst != src)
        memcpy((*dst)->data, src->data, sv->sys->n * sizeof(nd_real));
}

static double norm_of(solver *sv, const nd_real *num, const nd_real *ya, const nd_real *yb)
{
    return nd_ode_norm(sv->sys, sv->opt, num, ya, yb, sv->scratch, sv->blocks);
}

/* ---- step size ---------------------------------------------------------------------------- */

static double next_step_size(solver *sv, double dt, double r, bool accepted)
{
    const nd_solver_options *o = sv->opt;
    if (r == 0) return dt * o->ifactor;
    double dfactor = r < 1 ? 1.0 : o->dfactor;
    double order = sv->tab->order, factor;
    if (o->controller == ND_CONTROLLER_PI) {
        factor = o->safety * pow(r, -o->pi_beta1 / order) * pow(sv->r_prev, o->pi_beta2 / order);
        if (accepted) sv->r_prev = r > PI_MIN_RATIO ? r : PI_MIN_RATIO;
    } else {
        factor = o->safety / pow(r, 1.0 / order);
    }
    factor = fmin(o->ifactor, fmax(factor, dfactor));
    return dt * factor;
}

/* records why the initial step is unusable; returns -1 (the callers' failure code) */
static int bad_initial_step(solver *sv, double s0, double h)
{
    nd_fail(sv->ctx, ND_ERR_NONFINITE,
            "%s: the initial step size estimate is %g at t = %.17g (rtol %g, atol %g): the "
            "tolerances may be too small for the state's scale; set first_step",
            sv->sys->what, h, sv->dir * s0, sv->opt->rtol, sv->opt->atol);
    return -1;
}

/* Hairer, Norsett & Wanner, Solving ODEs I, II.4: two evaluations (f0 is given). The estimate is
 * checked before f sees it: with tiny tolerances the norms are huge, and their ratio must never
 * become a NaN time. */
static int initial_step(solver *sv, double s0, nd_tensor *y0, nd_tensor *f0, double *h)
{
    size_t n = sv->sys->n;
    int order = sv->tab->order - 1;
    double d0 = norm_of(sv, y0->data, y0->data, NULL);
    double d1 = norm_of(sv, f0->data, y0->data, NULL);
    double h0 =
        d0 < INIT_TINY_NORM || d1 < INIT_TINY_NORM ? INIT_FALLBACK : INIT_FRACTION * d0 / d1;
    if (!(h0 > 0 && isfinite(h0))) return bad_initial_step(sv, s0, h0);

    nd_mark m = nd_ctx_mark(sv->ctx);
    bool prev = nd_ctx_set_grad(sv->ctx, false);
    nd_tensor *y1 = nd_tensor_new(sv->ctx, 1, (int[]){(int)n});
    int rc = -1;
    nd_tensor *f1 = NULL;
    if (y1) {
        for (size_t i = 0; i < n; i++) y1->data[i] = y0->data[i] + (nd_real)h0 * f0->data[i];
        rc = eval(sv, s0 + h0, PERTURB_NONE, y1, &f1);
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) y1->data[i] = f1->data[i] - f0->data[i];
        double d2 = norm_of(sv, y1->data, y0->data, NULL) / h0;
        double h1 = d1 <= INIT_FLAT && d2 <= INIT_FLAT
                        ? fmax(INIT_FALLBACK, h0 * INIT_SHRINK)
                        : pow(INIT_FRACTION / fmax(d1, d2), 1.0 / (order + 1));
        *h = fmin(INIT_GROWTH * h0, h1);
    } else if (rc > 0) {
        *h = h0; /* f rejected the probe: start from the cautious guess */
        rc = 0;
    }
    nd_ctx_set_grad(sv->ctx, prev);
    nd_ctx_rewind(sv->ctx, m);
    if (rc == 0 && !(*h > 0 && isfinite(*h))) return bad_initial_step(sv, s0, *h);
    return rc;
}

/* ---- adaptive step ------------------------------------------------------------------------ */

/* Hands the step's interpolant, in real time, to the system's hook; > 0 from it ends the solve. */
static int report_step(solver *sv, const nd_interp *ip)
{
    if (!sv->sys->on_step) return 0;
    nd_interp real = *ip;
    real.t0 = sv->dir * ip->t0, real.t1 = sv->dir * ip->t1;
    int rc = sv->sys->on_step(sv->sys, sv->ctx, &real);
    if (rc > 0) sv->stopped = true;
    return rc < 0 ? rc : 0;
}

/* The step about to be tried: [t0, t1] of size dt, cut at the next breakpoint. */
typedef struct {
    double t0, t1, dt;
    bool on_step, on_jump; /* t1 is the next step_t / jump_t */
} step_plan;

static nd_status plan_step(solver *sv, step_plan *p)
{
    const nd_solver_options *o = sv->opt;
    double t0 = sv->s1, dt = fmax(fmin(sv->dt, o->max_step), sv->min_step);
    *p = (step_plan){.t0 = t0, .t1 = t0 + dt, .dt = dt};
    if (!isfinite(dt) || !isfinite(p->t1))
        return nd_fail(sv->ctx, ND_ERR_NONFINITE,
                       "%s: the step size overflowed at t = %.17g (dt = %g); set max_step",
                       sv->sys->what, sv->dir * t0, dt);
    if (!(p->t1 > t0))
        return nd_fail(sv->ctx, ND_ERR_STEP_UNDERFLOW,
                       "%s: step size underflow at t = %.17g (dt = %.3g): the problem may be "
                       "stiff or the solution may blow up; try looser tolerances or min_step",
                       sv->sys->what, sv->dir * t0, dt);
    if (!nd_all_finite(sv->y)) return fail_at(sv, ND_ERR_NONFINITE, t0, "the state is not finite");
    if (sv->n_step) {
        double next = sv->step_s[sv->next_step];
        p->on_step = t0 < next && next < p->t1;
        if (p->on_step) p->t1 = next, p->dt = next - t0;
    }
    if (sv->n_jump) {
        double next = sv->jump_s[sv->next_jump];
        p->on_jump = t0 < next && next < p->t1;
        if (p->on_jump) p->on_step = false, p->t1 = next, p->dt = next - t0;
    }
    return ND_OK;
}

/* The stages of one step; *y1 is the new state and *r the error ratio (INFINITY when f
 * rejected a stage: shrink as far as allowed). Returns f's code. */
static int try_step(solver *sv, const step_plan *p, nd_tensor **y1, double *r)
{
    const nd_tableau *tab = sv->tab;
    nd_tensor *yi = NULL;
    int rc = 0;
    sv->k[0] = sv->f;
    *r = INFINITY;
    for (int i = 0; i < tab->n_stages && rc == 0; i++) {
        yi = combine(sv, sv->y, tab->beta + (size_t)i * ND_MAX_STAGES, i + 1, p->dt);
        if (!yi) return -1;
        bool at_end = tab->alpha[i] == 1.0;
        double ti = at_end ? p->t1 : p->t0 + tab->alpha[i] * p->dt;
        rc = eval_into(sv, ti, at_end ? PERTURB_PREV : PERTURB_NONE, yi, &sv->k[i + 1]);
    }
    if (rc != 0) return rc;
    int n_k = tab->n_stages + 1;
    *y1 = tab->fsal ? yi : combine(sv, sv->y, tab->c_sol, n_k, p->dt);
    bool prev = nd_ctx_set_grad(sv->ctx, false); /* the error estimate only steers */
    nd_tensor *err = combine(sv, NULL, tab->c_error, n_k, p->dt);
    nd_ctx_set_grad(sv->ctx, prev);
    if (!*y1 || !err) return -1;
    *r = nd_ode_norm_which(sv->sys, sv->opt, err->data, sv->y->data, (*y1)->data, sv->scratch,
                           sv->blocks, &sv->limit_block);
    if (!isfinite(*r)) {
        nd_fail(sv->ctx, ND_ERR_NONFINITE,
                "%s: the error estimate is not finite at t = %.17g (dt = %.3g)", sv->sys->what,
                sv->dir * p->t0, p->dt);
        return -1;
    }
    return 0;
}

/* Moves the solver onto t1: the interpolant of the step, y1, f(t1) (again just past a jump). */
static int accept_step(solver *sv, const step_plan *p, nd_tensor *y1)
{
    nd_tensor *f1 = sv->k[sv->tab->n_stages];
    nd_interp fit;
    if (!nd_interp_fit(sv->ctx, sv->tab, p->t0, p->t1, sv->y, sv->k[0], y1, f1, sv->k, &fit))
        return -1;
    if (p->on_jump) {
        /* past a discontinuity f changes: evaluate it again on the far side */
        int rc = eval(sv, p->t1, PERTURB_NEXT, y1, &f1);
        if (rc != 0) return rc < 0 ? rc : -1; /* no step to shrink any more: fatal */
        if (sv->next_jump < sv->n_jump - 1) sv->next_jump++;
    }
    if (p->on_step && sv->next_step < sv->n_step - 1) sv->next_step++;
    for (int i = 0; i < fit.n_coeff; i++) keep(sv, &sv->ip.c[i], fit.c[i]); /* y0 last */
    sv->ip.t0 = p->t0, sv->ip.t1 = p->t1, sv->ip.n_coeff = fit.n_coeff;
    keep(sv, &sv->y, y1);
    keep(sv, &sv->f, f1);
    sv->s0 = p->t0, sv->s1 = p->t1;
    sv->stats->accepted++;
    sv->accepted++;
    return report_step(sv, &sv->ip);
}

/* The one failure path of a step: the error f or an op recorded first, else f's fatal code. */
static nd_status step_failed(solver *sv, double s)
{
    return fail_at(sv, ND_ERR_CALLBACK, s, "f failed");
}

/* The block that bound the error test, counted by its role and its index in that role. */
static void count_limit(solver *sv, bool accepted)
{
    int b = sv->limit_block;
    if (b < 0) return;
    nd_block_role role = sv->sys->role[b];
    int k = sv->role_index[b] < ND_LIMIT_MAX_BLOCKS ? sv->role_index[b] : ND_LIMIT_MAX_BLOCKS - 1;
    if ((int)role < 0 || role >= ND_ROLE_COUNT) return;
    (accepted ? sv->stats->limit.accepted : sv->stats->limit.rejected)[role][k]++;
}

/* The on_state hook, if any, told where the solve stands (checkpointed backprop). */
static int report_state(solver *sv)
{
    if (!sv->sys->on_state) return 0;
    nd_solver_state st = {sv->s1,        sv->dt,       sv->r_prev, sv->next_step,
                          sv->next_jump, sv->accepted, sv->y,      sv->f};
    int rc = sv->sys->on_state(sv->sys, sv->ctx, &st);
    if (rc > 0) sv->stopped = true;
    return rc < 0 ? rc : 0;
}

static nd_status adaptive_step(solver *sv)
{
    step_plan p;
    nd_status st = plan_step(sv, &p);
    if (st != ND_OK) return st;
    nd_mark m = nd_ctx_mark(sv->ctx);
    nd_tensor *y1 = NULL;
    double r;
    sv->limit_block = -1;
    int rc = try_step(sv, &p, &y1, &r);
    if (rc < 0) return step_failed(sv, p.t0);
    bool accept = rc == 0 && (r <= 1 || p.dt <= sv->min_step);
    if (accept && accept_step(sv, &p, y1) != 0) return step_failed(sv, p.t1);
    if (!accept) sv->stats->rejected++;
    count_limit(sv, accept);
    sv->dt = next_step_size(sv, p.dt, r, accept);
    if (accept && report_state(sv) < 0) return step_failed(sv, p.t1);
    if (!sv->taped) nd_ctx_rewind(sv->ctx, m);
    return ND_OK;
}

/* ---- fixed step --------------------------------------------------------------------------- */

static double *internal_breakpoints(nd_ctx *ctx, const double *t, int n, double dir);

/* ---- the solve ---------------------------------------------------------------------------- */

static bool store_row(solver *sv, nd_tensor *row, int i, nd_real *out, nd_tensor **rows)
{
    if (!row) return false;
    if (sv->taped)
        rows[i] = row;
    else
        memcpy(out + (size_t)i * sv->sys->n, row->data, sv->sys->n * sizeof(nd_real));
    return true;
}

/* After the hook ended the solve: the outputs from the first unwritten one hold the state where
 * it stopped, so a taped trajectory has every row. */
static nd_status fill_after_stop(solver *sv, int from, int n_t, nd_real *out, nd_tensor **rows)
{
    for (int i = from; i < n_t; i++)
        if (!store_row(sv, sv->y, i, out, rows)) return nd_ctx_error(sv->ctx);
    return ND_OK;
}

static nd_status solve_adaptive(solver *sv, const double *s, int n_t, nd_real *out,
                                nd_tensor **rows);

/* Goes on from sys->resume: its state, step size, PI memory and breakpoints. */
static nd_status solve_resumed(solver *sv, const double *s, int n_t, nd_real *out, nd_tensor **rows)
{
    const nd_solver_state *r = sv->sys->resume;
    keep(sv, &sv->y, r->y);
    if (sv->taped)
        sv->f = r->f;
    else
        memcpy(sv->f->data, r->f->data, sv->sys->n * sizeof(nd_real));
    sv->s0 = sv->s1 = r->s1;
    sv->dt = r->dt, sv->r_prev = r->r_prev;
    sv->next_step = r->next_step, sv->next_jump = r->next_jump;
    sv->accepted = r->accepted;
    return solve_adaptive(sv, s, n_t, out, rows);
}

static nd_status solve_adaptive(solver *sv, const double *s, int n_t, nd_real *out,
                                nd_tensor **rows)
{
    nd_ctx *ctx = sv->ctx;
    int first = 1; /* a resumed solve: the first output after where it starts */
    while (sv->sys->resume && first < n_t - 1 && s[first] <= sv->s1) first++;
    if (report_state(sv) < 0) return fail_at(sv, ND_ERR_CALLBACK, sv->s1, "f failed");
    for (int i = first; i < n_t && !sv->stopped; i++) {
        long n_steps = 0;
        while (s[i] > sv->s1) {
            if (n_steps >= sv->opt->max_num_steps)
                return nd_fail(ctx, ND_ERR_MAX_STEPS,
                               "%s: max_num_steps (%ld attempted steps per output interval) "
                               "exceeded between t = %.17g and t = %.17g, reached t = %.17g "
                               "(dt = %.3g); raise max_num_steps in the solver options (default "
                               "%ld) or check the problem for stiffness",
                               sv->sys->what, sv->opt->max_num_steps, sv->dir * s[i - 1],
                               sv->dir * s[i], sv->dir * sv->s1, sv->dt, ND_DEFAULT_MAX_NUM_STEPS);
            nd_status st = adaptive_step(sv);
            if (st != ND_OK) return st;
            if (sv->stopped) return fill_after_stop(sv, i, n_t, out, rows);
            n_steps++;
        }
        nd_mark m = nd_ctx_mark(ctx);
        if (!store_row(sv, nd_interp_at(ctx, &sv->ip, s[i]), i, out, rows))
            return nd_ctx_error(ctx);
        if (!sv->taped) nd_ctx_rewind(ctx, m);
    }
    return ND_OK;
}

/* The fixed-step grid in internal time from s[0] to s[n_t - 1]: the user's grid points inside
 * the interval or the output times, stored; or steps of step_size from the start, the last one
 * cut at the end (as torchdiffeq), generated as the solve goes: never stored, so a fine grid
 * costs no memory. */
typedef struct {
    const double *pts; /* (n,), or NULL: point i is start + i h, the last one end */
    long n;
    double start, end, h;
} fixed_grid;

static double grid_at(const fixed_grid *g, long i)
{
    if (g->pts) return g->pts[i];
    return i == 0 ? g->start : i == g->n - 1 ? g->end : (double)i * g->h + g->start;
}

/* The solve's step budget, max_num_steps per output interval, applies to a fixed grid too:
 * checked before f's first evaluation. */
static nd_status check_budget(solver *sv, const double *s, int n_t, double steps, const char *grid)
{
    const nd_solver_options *o = sv->opt;
    if (steps <= (double)o->max_num_steps * (n_t - 1)) return ND_OK;
    return nd_fail(sv->ctx, ND_ERR_MAX_STEPS,
                   "%s: %s over [%.17g, %.17g] needs %.3g steps, more than max_num_steps (%ld per "
                   "output interval) allows; raise max_num_steps in the solver options (default "
                   "%ld) or use a coarser grid",
                   sv->sys->what, grid, sv->dir * s[0], sv->dir * s[n_t - 1], steps,
                   o->max_num_steps, ND_DEFAULT_MAX_NUM_STEPS);
}

/* Steps of step_size h: the budget, then points far enough apart to stay distinct doubles
 * (which also keeps their count exact). */
static nd_status step_size_grid(solver *sv, const double *s, int n_t, fixed_grid *g)
{
    double start = s[0], end = s[n_t - 1], h = sv->opt->step_size;
    double steps = ceil((end - start) / h);
    char grid[64];
    snprintf(grid, sizeof grid, "step_size %g", h);
    nd_status st = check_budget(sv, s, n_t, steps, grid);
    if (st != ND_OK) return st;
    double spacing = 4 * DBL_EPSILON * fmax(fabs(start), fabs(end));
    if (!(h > spacing) || !(steps < 0x1p52))
        return nd_fail(sv->ctx, ND_ERR_ARG,
                       "%s: step_size %g over [%.17g, %.17g] needs %.3g grid points, too close "
                       "together to be distinct times there (step_size must exceed %.3g)",
                       sv->sys->what, h, sv->dir * start, sv->dir * end, steps + 1, spacing);
    long inner = (long)steps; /* the points start + k h < end, k >= 1 */
    while (inner > 0 && (double)inner * h + start >= end) inner--;
    *g = (fixed_grid){.n = inner + 2, .start = start, .end = end, .h = h};
    return ND_OK;
}

static nd_status make_fixed_grid(solver *sv, const double *s, int n_t, fixed_grid *g)
{
    const nd_solver_options *o = sv->opt;
    double start = s[0], end = s[n_t - 1];
    if (o->n_grid == 0 && o->step_size > 0) return step_size_grid(sv, s, n_t, g);
    if (o->n_grid == 0) return *g = (fixed_grid){.pts = s, .n = n_t}, ND_OK;
    double *inner = internal_breakpoints(sv->ctx, o->grid, o->n_grid, sv->dir);
    double *pts = nd_ctx_alloc(sv->ctx, ((size_t)o->n_grid + 2) * sizeof *pts);
    if (!inner || !pts) return nd_ctx_error(sv->ctx);
    long n = 0;
    pts[n++] = start;
    for (int i = 0; i < o->n_grid; i++)
        if (inner[i] > start && inner[i] < end) pts[n++] = inner[i];
    pts[n++] = end;
    char grid[64];
    snprintf(grid, sizeof grid, "a grid of %ld points", n);
    *g = (fixed_grid){.pts = pts, .n = n};
    return check_budget(sv, s, n_t, (double)(n - 1), grid);
}

static nd_status solve_fixed(solver *sv, const fixed_grid *grid, const double *s, int n_t,
                             nd_real *out, nd_tensor **rows)
{
    nd_ctx *ctx = sv->ctx;
    const nd_tableau *tab = sv->tab;
    long n_grid = grid->n;
    nd_tensor *y1_buf = sv->taped ? NULL : nd_zeros_like(ctx, sv->y);
    nd_tensor *f1_buf = sv->taped ? NULL : nd_zeros_like(ctx, sv->y);
    if (!sv->taped && (!y1_buf || !f1_buf)) return nd_ctx_error(ctx);
    int j = 1; /* next output */
    for (long g = 1; g < n_grid && j < n_t; g++) {
        double g0 = grid_at(grid, g - 1), g1 = grid_at(grid, g), dt = g1 - g0;
        if (!nd_all_finite(sv->y))
            return fail_at(sv, ND_ERR_NONFINITE, g0, "the state is not finite");
        nd_mark m = nd_ctx_mark(ctx);
        sv->k[0] = sv->f;
        int rc = 0;
        for (int i = 0; i < tab->n_stages && rc == 0; i++) {
            nd_tensor *yi = combine(sv, sv->y, tab->beta + (size_t)i * ND_MAX_STAGES, i + 1, dt);
            if (!yi) return nd_ctx_error(ctx);
            rc = eval_into(sv, g0 + tab->alpha[i] * dt, PERTURB_NONE, yi, &sv->k[i + 1]);
        }
        nd_tensor *y1 = rc == 0 ? combine(sv, sv->y, tab->c_sol, tab->n_stages + 1, dt) : NULL;
        if (rc != 0 || !y1)
            return fail_at(sv, ND_ERR_CALLBACK, g0, "f failed or asked to reject a fixed step");
        /* f at the new point: the next step's first stage, and the Hermite slope */
        bool last = g == n_grid - 1, hook = sv->sys->on_step != NULL;
        bool need_f1 = !last || s[j] < g1 || hook;
        nd_tensor *f1 = f1_buf;
        if (need_f1) {
            rc = eval_into(sv, g1, PERTURB_NONE, y1, &f1);
            if (rc != 0) return fail_at(sv, ND_ERR_CALLBACK, g1, "f failed");
        }
        nd_interp ip = {0}; /* cubic Hermite over the step, fitted when needed */
        bool fit = hook || (j < n_t && s[j] < g1);
        if (fit && !nd_interp_fit(ctx, NULL, g0, g1, sv->y, sv->f, y1, f1, NULL, &ip))
            return nd_ctx_error(ctx);
        for (; j < n_t && s[j] <= g1; j++) {
            nd_tensor *row = s[j] == g1 ? y1 : nd_interp_at(ctx, &ip, s[j]);
            if (!store_row(sv, row, j, out, rows)) return nd_ctx_error(ctx);
        }
        if (hook && report_step(sv, &ip) < 0) return nd_ctx_error(ctx);
        if (sv->taped) {
            sv->y = y1, sv->f = f1;
        } else {
            memcpy(sv->y->data, y1->data, sv->sys->n * sizeof(nd_real));
            memcpy(sv->f->data, f1->data, sv->sys->n * sizeof(nd_real));
            nd_ctx_rewind(ctx, m);
        }
        sv->stats->accepted++;
        if (sv->stopped) return fill_after_stop(sv, j, n_t, out, rows);
    }
    return ND_OK;
}

/* Times in internal time, in their given order. */
static double *internal_times(nd_ctx *ctx, const double *t, int n, double dir)
{
    if (n == 0) return NULL;
    double *s = nd_ctx_alloc(ctx, (size_t)n * sizeof *s);
    if (s)
        for (int i = 0; i < n; i++) s[i] = dir * t[i];
    return s;
}

/* Breakpoints in internal time, increasing: the adjoint solves against the forward's order, so
 * its breakpoints arrive reversed (torchdiffeq flips them too). */
static double *internal_breakpoints(nd_ctx *ctx, const double *t, int n, double dir)
{
    double *s = internal_times(ctx, t, n, dir);
    if (s && n > 1 && s[0] > s[n - 1])
        for (int i = 0, j = n - 1; i < j; i++, j--) {
            double tmp = s[i];
            s[i] = s[j], s[j] = tmp;
        }
    return s;
}

/* index of the first breakpoint > s0 (Python's bisect_right), capped at n - 1 */
static int first_after(const double *b, int n, double s0)
{
    int i = 0;
    while (i < n && b[i] <= s0) i++;
    return i < n ? i : n - 1;
}

nd_status nd_ode_solve(nd_ctx *ctx, nd_ode_system *sys, const nd_solver_options *opt,
                       const nd_breakpoints *bp, nd_tensor *y0, const double *t, int n_t,
                       bool taped, nd_real *out, nd_tensor **rows, nd_solve_stats *stats)
{
    solver sv = {.ctx = ctx,
                 .sys = sys,
                 .opt = opt,
                 .tab = nd_tableau_get(opt->method),
                 .taped = taped,
                 .stats = stats,
                 .r_prev = 1};
    sv.dir = t[n_t - 1] > t[0] ? 1.0 : -1.0;
    size_t n = sys->n;
    int shape[1] = {(int)n};

    double *s = internal_times(ctx, t, n_t, sv.dir);
    if (bp) {
        sv.step_s = internal_breakpoints(ctx, bp->step_t, bp->n_step_t, sv.dir);
        sv.jump_s = internal_breakpoints(ctx, bp->jump_t, bp->n_jump_t, sv.dir);
        sv.n_step = bp->n_step_t, sv.n_jump = bp->n_jump_t;
    }
    sv.scratch = nd_ctx_alloc(ctx, n * sizeof *sv.scratch);
    sv.blocks = nd_ctx_alloc(ctx, (size_t)sys->n_blocks * sizeof *sv.blocks);
    sv.role_index = nd_ctx_alloc(ctx, (size_t)sys->n_blocks * sizeof *sv.role_index);
    if (!s || !sv.scratch || !sv.blocks || !sv.role_index) return nd_ctx_error(ctx);
    int seen[ND_ROLE_COUNT] = {0};
    for (int b = 0; b < sys->n_blocks; b++)
        sv.role_index[b] = sys->role[b] < ND_ROLE_COUNT ? seen[sys->role[b]]++ : 0;
    sv.next_step = first_after(sv.step_s, sv.n_step, s[0]);
    sv.next_jump = first_after(sv.jump_s, sv.n_jump, s[0]);
    sv.min_step = fmin(opt->min_step, s[n_t - 1] - s[0]); /* never a step past the interval's */
    fixed_grid grid = {0};
    if (!sv.tab->c_error && make_fixed_grid(&sv, s, n_t, &grid) != ND_OK) return nd_ctx_error(ctx);

    /* the state, its derivative and, untaped, every buffer a step reuses */
    if (taped) {
        sv.y = y0;
    } else {
        sv.y = nd_copy(ctx, y0);
        sv.f = nd_tensor_new(ctx, 1, shape);
        for (int i = 0; i < ND_INTERP_MAX_COEFF; i++) sv.ip.c[i] = nd_tensor_new(ctx, 1, shape);
        for (int i = 1; i <= sv.tab->n_stages; i++) sv.k[i] = nd_tensor_new(ctx, 1, shape);
        if (nd_ctx_error(ctx)) return nd_ctx_error(ctx);
    }
    if (sys->resume && !sv.tab->c_error)
        return nd_fail(ctx, ND_ERR_ARG, "%s: a resumed solve needs an adaptive method", sys->what);
    if (!sys->resume) { /* a resumed solve's f comes with its state */
        if (!store_row(&sv, y0, 0, out, rows)) return nd_ctx_error(ctx);
        int rc = taped ? eval(&sv, s[0], PERTURB_NONE, sv.y, &sv.f)
                       : eval_into(&sv, s[0], PERTURB_NONE, sv.y, &sv.f);
        if (rc != 0)
            return fail_at(&sv, ND_ERR_CALLBACK, s[0], "f failed or rejected the initial state");
    }
    sv.s0 = sv.s1 = s[0];
    if (!sv.tab->c_error) return solve_fixed(&sv, &grid, s, n_t, out, rows);

    for (int i = 0; i < ND_INTERP_MAX_COEFF; i++) keep(&sv, &sv.ip.c[i], sv.y);
    sv.ip.n_coeff = ND_INTERP_MAX_COEFF;
    if (sys->resume) return solve_resumed(&sv, s, n_t, out, rows);
    if (opt->first_step > 0) {
        sv.dt = opt->first_step;
    } else if (initial_step(&sv, s[0], sv.y, sv.f, &sv.dt) != 0) {
        return fail_at(&sv, ND_ERR_CALLBACK, s[0], "f failed");
    }
    return solve_adaptive(&sv, s, n_t, out, rows);
}

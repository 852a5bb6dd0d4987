/* SPDX-License-Identifier: MIT
 * odeint/dense.c: dense solutions (odeint.h: nd_ode_solution). One forward solve through the
 * odeint op with an observer that keeps every accepted step's interpolant (interp.h): its
 * coefficients' values on the heap, and, when the solve is differentiable (backprop through the
 * solver), the coefficient tensors themselves, which are graph nodes in the arena. Evaluating
 * y(t) finds the step holding t by bisection on the step ends and evaluates its polynomial:
 * plainly, or with nd_lincomb over the coefficient tensors, so the result is a graph.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "odeint/odeint_internal.h"
#include "tensor/ctx_internal.h"

struct nd_ode_solution {
    nd_ctx *ctx;  /* the solve's */
    bool graph;   /* the coefficients are graph nodes: c is kept */
    uint64_t pin; /* graph: the ctx's pin of the arena's position after the solve */
    int ndim, shape[ND_MAX_DIMS];
    size_t n;      /* y0's size */
    double t0, t1; /* the interval asked for (the last step may end past t1) */
    int n_coeff;   /* per step (5 quartic, 4 Hermite); 0 before the first step */
    long n_steps, cap;
    double *ends;   /* (cap + 1,) step i spans [ends[i], ends[i + 1]], in the solve's direction */
    nd_real *coeff; /* (cap, n_coeff, n) */
    nd_tensor **c;  /* graph: (cap, n_coeff) */
    nd_ode_stats stats;
};

static bool grow(nd_ctx *ctx, nd_ode_solution *s, int n_coeff)
{
    long cap = s->cap ? 2 * s->cap : 64;
    double *ends = realloc(s->ends, ((size_t)cap + 1) * sizeof *ends);
    if (ends) s->ends = ends;
    nd_real *coeff = ends ? realloc(s->coeff, (size_t)cap * n_coeff * s->n * sizeof *coeff) : NULL;
    if (coeff) s->coeff = coeff;
    nd_tensor **c = NULL;
    if (coeff && s->graph) {
        c = realloc(s->c, (size_t)cap * n_coeff * sizeof *c);
        if (c) s->c = c;
    }
    if (!coeff || (s->graph && !c)) {
        nd_fail(ctx, ND_ERR_NOMEM, "nd_ode_solution_create: out of memory after %ld steps",
                s->n_steps);
        return false;
    }
    s->cap = cap;
    return true;
}

/* the observer: one accepted step's interpolant kept */
static int keep_step(void *data, nd_ctx *ctx, const nd_interp *ip)
{
    nd_ode_solution *s = data;
    if (s->n_coeff == 0) s->n_coeff = ip->n_coeff;
    if (ip->n_coeff != s->n_coeff) {
        nd_fail(ctx, ND_ERR_ARG, "nd_ode_solution_create: steps of %d and %d coefficients",
                s->n_coeff, ip->n_coeff);
        return -1;
    }
    if (s->n_steps == s->cap && !grow(ctx, s, s->n_coeff)) return -1;
    long i = s->n_steps++;
    size_t n = s->n, m = (size_t)s->n_coeff;
    if (i == 0) s->ends[0] = ip->t0;
    s->ends[i + 1] = ip->t1;
    for (size_t k = 0; k < m; k++) {
        memcpy(s->coeff + ((size_t)i * m + k) * n, ip->c[k]->data, n * sizeof(nd_real));
        if (s->graph) s->c[(size_t)i * m + k] = ip->c[k];
    }
    return 0;
}

static bool needs_grad(nd_ctx *ctx, nd_tensor *y0, nd_tensor *const *params, int n_params)
{
    if (!nd_ctx_grad_enabled(ctx)) return false;
    bool any = y0->requires_grad;
    for (int i = 0; i < n_params; i++) any |= params[i] && params[i]->requires_grad;
    return any;
}

void nd_ode_solution_destroy(nd_ode_solution *sol)
{
    if (!sol) return;
    free(sol->ends);
    free(sol->coeff);
    free(sol->c);
    free(sol);
}

nd_ode_solution *nd_ode_solution_create(nd_ctx *ctx, nd_ode_fn f, void *user_data, nd_tensor *y0,
                                        double t0, double t1, nd_tensor *const *params,
                                        int n_params, const nd_ode_options *opts)
{
    const char *name = "nd_ode_solution_create";
    if (nd_ctx_error(ctx)) return NULL;
    if (!f || !y0) return nd_fail_null(ctx, ND_ERR_ARG, "%s: %s is NULL", name, f ? "y0" : "f");
    if (!isfinite(t0) || !isfinite(t1) || t0 == t1)
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "%s: the interval [%g, %g] must be finite and "
                            "non-empty",
                            name, t0, t1);
    if (n_params < 0 || (n_params > 0 && !params))
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: params is NULL or n_params (%d) negative", name,
                            n_params);
    bool graph = needs_grad(ctx, y0, params, n_params);
    if (graph && (opts ? opts->grad : ND_ODE_DEFAULT.grad) != ND_GRAD_BACKPROP)
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "%s: y0 or a param requires grad, and a dense solution is "
                            "differentiable only by backprop through the solver: set opts.grad = "
                            "ND_GRAD_BACKPROP, or solve with grad mode off",
                            name);
    nd_ode_solution *s = calloc(1, sizeof *s);
    if (!s) return nd_fail_null(ctx, ND_ERR_NOMEM, "%s: out of memory", name);
    *s = (nd_ode_solution){
        .ctx = ctx, .graph = graph, .ndim = y0->ndim, .n = y0->size, .t0 = t0, .t1 = t1};
    memcpy(s->shape, y0->shape, (size_t)y0->ndim * sizeof *s->shape);
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){(nd_real)t0, (nd_real)t1});
    nd_step_observer obs = {keep_step, s};
    nd_tensor *ys = NULL;
    if (!t || nd_odeint_observed(ctx, name, f, NULL, user_data, &y0, 1, t, params, n_params, opts,
                                 &obs, &ys) != ND_OK) {
        nd_ode_solution_destroy(s);
        return NULL;
    }
    s->stats = *nd_odeint_stats(ys);
    if (graph && !(s->pin = nd_ctx_pin(ctx))) {
        nd_ode_solution_destroy(s);
        return NULL;
    }
    return s;
}

/* the step holding t: ends are monotone in the solve's direction */
static long find_step(const nd_ode_solution *s, double t)
{
    double dir = s->ends[s->n_steps] > s->ends[0] ? 1 : -1;
    long lo = 0, hi = s->n_steps - 1;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (dir * (t - s->ends[mid + 1]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* a graph solution's nodes are still in the arena: no reset since, no rewind below the solve's
 * end (even one the arena has grown past again) */
static bool graph_alive(nd_ctx *ctx, const nd_ode_solution *s)
{
    return ctx == s->ctx && nd_ctx_pinned(ctx, s->pin);
}

nd_tensor *nd_ode_solution_at(nd_ctx *ctx, const nd_ode_solution *sol, double t)
{
    const char *name = "nd_ode_solution_at";
    if (nd_ctx_error(ctx)) return NULL;
    if (!sol) return nd_fail_null(ctx, ND_ERR_ARG, "%s: sol is NULL", name);
    double a = sol->t0, b = sol->t1;
    if (!(t >= fmin(a, b) && t <= fmax(a, b)))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "%s: t = %.17g is outside the solution's interval [%.17g, %.17g]", name,
                            t, a, b);
    if (sol->graph && !graph_alive(ctx, sol))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "%s: the solution is differentiable and its graph lived in %s arena, "
                            "which has been reset or rewound since the solve",
                            name, ctx == sol->ctx ? "the ctx's" : "another ctx's");
    long i = find_step(sol, t);
    size_t m = (size_t)sol->n_coeff;
    double t0 = sol->ends[i], t1 = sol->ends[i + 1];
    if (!sol->graph) {
        nd_tensor *y = nd_tensor_new(ctx, sol->ndim, sol->shape);
        if (y)
            nd_interp_eval(sol->coeff + (size_t)i * m * sol->n, sol->n_coeff, sol->n,
                           nd_interp_x(t0, t1, t), y->data);
        return y;
    }
    nd_interp ip = {.t0 = t0, .t1 = t1, .n_coeff = sol->n_coeff};
    memcpy(ip.c, sol->c + (size_t)i * m, m * sizeof *ip.c);
    return nd_reshape(ctx, nd_interp_at(ctx, &ip, t), sol->ndim, sol->shape);
}

const nd_ode_stats *nd_ode_solution_stats(const nd_ode_solution *sol)
{
    return sol ? &sol->stats : NULL;
}

long nd_ode_solution_steps(const nd_ode_solution *sol)
{
    return sol ? sol->n_steps : 0;
}

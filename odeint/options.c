/* SPDX-License-Identifier: MIT
 * odeint/options.c: the solver options. Method and norm names (one table each), the adjoint's
 * inheritance of every unset field from the forward solver (odeint.h), and the checks every
 * option passes before a solve starts, so the solver itself only ever sees sane numbers.
 */
#include <math.h>
#include <string.h>

#include "odeint/odeint_internal.h"

static const char *const method_names[ND_METHOD_COUNT] = {
    [ND_EULER] = "euler",
    [ND_MIDPOINT] = "midpoint",
    [ND_RK4] = "rk4",
    [ND_HEUN_EULER] = "adaptive_heun",
    [ND_FEHLBERG2] = "fehlberg2",
    [ND_BOSH3] = "bosh3",
    [ND_DOPRI5] = "dopri5",
    [ND_TSIT5] = "tsit5",
    [ND_DOPRI8] = "dopri8",
};

static const char *const norm_names[] = {
    [ND_NORM_RMS] = "rms",
    [ND_NORM_SEMINORM] = "seminorm",
    [ND_NORM_SEMINORM_KEEP_T] = "seminorm_keep_t",
    [ND_NORM_USER] = "user",
};

#define N_NORM_NAMES ((int)(sizeof norm_names / sizeof norm_names[0]))

bool nd_ode_method_from_name(const char *name, nd_ode_method *out)
{
    if (!name || !out) return false;
    if (strcmp(name, "heun_euler") == 0) return *out = ND_HEUN_EULER, true;
    for (int i = 0; i < ND_METHOD_COUNT; i++)
        if (strcmp(name, method_names[i]) == 0) return *out = (nd_ode_method)i, true;
    return false;
}

const char *nd_ode_method_name(nd_ode_method m)
{
    return (int)m >= 0 && m < ND_METHOD_COUNT ? method_names[m] : "unknown";
}

/* "user" names ND_NORM_USER but is not accepted by name: it needs a norm_fn */
bool nd_ode_norm_from_name(const char *name, nd_norm_kind *out)
{
    if (!name || !out) return false;
    for (int i = 0; i < ND_NORM_USER; i++)
        if (strcmp(name, norm_names[i]) == 0) return *out = (nd_norm_kind)i, true;
    return false;
}

const char *nd_ode_norm_name(nd_norm_kind k)
{
    return (int)k >= 0 && (int)k < N_NORM_NAMES ? norm_names[k] : "unknown";
}

static const char *const grad_names[] = {
    [ND_GRAD_ADJOINT] = "adjoint",
    [ND_GRAD_BACKPROP] = "backprop",
    [ND_GRAD_INTERP_ADJOINT] = "interp_adjoint",
    [ND_GRAD_QUADRATURE_ADJOINT] = "quadrature_adjoint",
    [ND_GRAD_CHECKPOINTED] = "checkpointed",
};

#define N_GRAD_NAMES ((int)(sizeof grad_names / sizeof grad_names[0]))

bool nd_ode_grad_from_name(const char *name, nd_grad_mode *out)
{
    if (!name || !out) return false;
    for (int i = 0; i < N_GRAD_NAMES; i++)
        if (strcmp(name, grad_names[i]) == 0) return *out = (nd_grad_mode)i, true;
    return false;
}

const char *nd_ode_grad_name(nd_grad_mode g)
{
    return (int)g >= 0 && (int)g < N_GRAD_NAMES ? grad_names[g] : "unknown";
}

/* ---- the adjoint's inheritance ------------------------------------------------------------ */

static double inherit(double own, double forward)
{
    return isnan(own) ? forward : own;
}

nd_solver_options nd_ode_resolve_adjoint(const nd_solver_options *f, const nd_solver_options *a)
{
    nd_solver_options r = *a; /* the norm and its callback stay the adjoint's own */
    if (a->method == ND_METHOD_INHERIT) r.method = f->method;
    if (isnan(a->rtol) && !a->rtol_blocks) r.rtol_blocks = f->rtol_blocks;
    if (isnan(a->atol) && !a->atol_blocks) r.atol_blocks = f->atol_blocks;
    r.rtol = inherit(a->rtol, f->rtol);
    r.atol = inherit(a->atol, f->atol);
    r.first_step = inherit(a->first_step, f->first_step);
    r.min_step = inherit(a->min_step, f->min_step);
    r.max_step = inherit(a->max_step, f->max_step);
    if (a->max_num_steps == ND_INHERIT_COUNT) r.max_num_steps = f->max_num_steps;
    if (isnan(a->step_size) && a->n_grid == ND_INHERIT_COUNT) {
        r.step_size = f->step_size, r.grid = f->grid, r.n_grid = f->n_grid;
    } else {
        r.step_size = inherit(a->step_size, 0); /* set one of the two: the other is off */
        if (a->n_grid == ND_INHERIT_COUNT) r.grid = NULL, r.n_grid = 0;
    }
    if (a->controller == ND_CONTROLLER_INHERIT) r.controller = f->controller;
    r.safety = inherit(a->safety, f->safety);
    r.ifactor = inherit(a->ifactor, f->ifactor);
    r.dfactor = inherit(a->dfactor, f->dfactor);
    r.pi_beta1 = inherit(a->pi_beta1, f->pi_beta1);
    r.pi_beta2 = inherit(a->pi_beta2, f->pi_beta2);
    return r;
}

/* ---- checks ------------------------------------------------------------------------------- */

static nd_status check_tolerances(nd_ctx *ctx, const char *what, const nd_solver_options *o,
                                  int n_blocks)
{
    if (!(o->rtol >= 0) || !(o->atol >= 0) || (o->rtol == 0 && o->atol == 0) ||
        !isfinite(o->rtol) || !isfinite(o->atol))
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: rtol %g and atol %g must be finite and >= 0, not both 0", what, o->rtol,
                       o->atol);
    for (int b = 0; b < n_blocks; b++) {
        double r = o->rtol_blocks ? o->rtol_blocks[b] : o->rtol;
        double a = o->atol_blocks ? o->atol_blocks[b] : o->atol;
        if (!(r >= 0) || !(a >= 0) || (r == 0 && a == 0) || !isfinite(r) || !isfinite(a))
            return nd_fail(ctx, ND_ERR_ARG,
                           "%s: block %d's rtol %g and atol %g (rtol_blocks / atol_blocks) must be "
                           "finite and >= 0, not both 0",
                           what, b, r, a);
    }
    return ND_OK;
}

static nd_status check_steps(nd_ctx *ctx, const char *what, const nd_solver_options *o)
{
    if (!(o->min_step >= 0) || !(o->max_step > 0) || o->min_step > o->max_step ||
        !isfinite(o->min_step))
        return nd_fail(ctx, ND_ERR_ARG, "%s: need 0 <= min_step (%g) <= max_step (%g)", what,
                       o->min_step, o->max_step);
    if (o->max_num_steps <= 0)
        return nd_fail(ctx, ND_ERR_ARG, "%s: max_num_steps (%ld) must be positive", what,
                       o->max_num_steps);
    if (!(o->first_step >= 0) || !isfinite(o->first_step) || !(o->step_size >= 0) ||
        !isfinite(o->step_size))
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: first_step (%g) and step_size (%g) must be finite and "
                       ">= 0",
                       what, o->first_step, o->step_size);
    if (o->n_grid < 0 || (o->n_grid > 0 && !o->grid))
        return nd_fail(ctx, ND_ERR_ARG, "%s: grid is NULL or n_grid (%d) negative", what,
                       o->n_grid);
    for (int i = 0; i < o->n_grid; i++) {
        bool ordered = i < 2 || (o->grid[i] - o->grid[i - 1]) * (o->grid[1] - o->grid[0]) > 0;
        if (!isfinite(o->grid[i]) || !ordered || (i == 1 && o->grid[1] == o->grid[0]))
            return nd_fail(ctx, ND_ERR_ARG,
                           "%s: grid must be finite and strictly monotone "
                           "(grid[%d] = %g)",
                           what, i, o->grid[i]);
    }
    return ND_OK;
}

static nd_status check_controller(nd_ctx *ctx, const char *what, const nd_solver_options *o)
{
    if (o->controller != ND_CONTROLLER_I && o->controller != ND_CONTROLLER_PI)
        return nd_fail(ctx, ND_ERR_ARG, "%s: unknown controller %d", what, (int)o->controller);
    if (!(o->safety > 0) || !(o->ifactor >= 1) || !(o->dfactor > 0 && o->dfactor <= 1) ||
        !isfinite(o->safety) || !isfinite(o->ifactor))
        return nd_fail(
            ctx, ND_ERR_ARG,
            "%s: need finite safety > 0, ifactor >= 1, 0 < dfactor <= 1 (got %g, %g, %g)", what,
            o->safety, o->ifactor, o->dfactor);
    if (o->controller == ND_CONTROLLER_PI && (!isfinite(o->pi_beta1) || !isfinite(o->pi_beta2)))
        return nd_fail(ctx, ND_ERR_ARG, "%s: pi_beta1 (%g) and pi_beta2 (%g) must be finite", what,
                       o->pi_beta1, o->pi_beta2);
    return ND_OK;
}

nd_status nd_ode_check_options(nd_ctx *ctx, const char *what, const nd_solver_options *o,
                               int n_blocks)
{
    if (o->method == ND_METHOD_INHERIT)
        return nd_fail(ctx, ND_ERR_ARG,
                       "%s: method is unset (ND_METHOD_INHERIT is for "
                       "opts.adjoint only)",
                       what);
    if ((int)o->method < 0 || o->method >= ND_METHOD_COUNT)
        return nd_fail(ctx, ND_ERR_ARG, "%s: unknown method %d", what, (int)o->method);
    nd_status st = check_tolerances(ctx, what, o, n_blocks);
    if (st == ND_OK) st = check_steps(ctx, what, o);
    if (st == ND_OK) st = check_controller(ctx, what, o);
    if (st != ND_OK) return st;
    if ((int)o->norm < 0 || o->norm > ND_NORM_USER)
        return nd_fail(ctx, ND_ERR_ARG, "%s: unknown norm %d", what, (int)o->norm);
    if (o->norm == ND_NORM_USER && !o->norm_fn)
        return nd_fail(ctx, ND_ERR_ARG, "%s: ND_NORM_USER needs norm_fn", what);
    return ND_OK;
}

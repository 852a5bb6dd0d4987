/* SPDX-License-Identifier: MIT
 * odeint/event.c: terminal events (odeint.h: nd_odeint_event), torchdiffeq's odeint_event.
 *
 * Three parts. (1) The search: a values-only solve whose observer evaluates g at the end of each
 * accepted step and, at the first sign change, bisects g(t, y(t)) on that step's interpolant
 * (interp.h) and stops the solve. (2) The state: the odeint op again over [t0, t_event], in the
 * caller's gradient mode, so y(t_event) is differentiable in y0 and the params like any solve.
 * (3) The event op: an identity on [t_event, y_event] whose backward reroutes dL/dt_event through
 * the implicit function theorem on g(t_event, y(t_event)) = 0 (torchdiffeq's
 * ImplicitFnGradientRerouting), with g's own parameters' gradients added directly.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "odeint/odeint_internal.h"

static const char *const name = "nd_odeint_event";

/* ---- the search --------------------------------------------------------------------------- */

typedef struct {
    nd_event_fn g;
    void *user_data;
    int ndim;
    const int *shape;
    size_t n;
    int direction;
    double tol, t_end;
    double g_prev; /* g at the end of the last accepted step (at t0 before the first) */
    bool found;
    double t_event;
    nd_real *buf;          /* (n,) y(t) from an interpolant */
    nd_solve_stats search; /* the search's solve */
} seeker;

/* g's result checked: one finite number */
static bool check_g(nd_ctx *ctx, const nd_tensor *c, double t)
{
    if (!c) {
        if (!nd_ctx_error(ctx))
            nd_fail(ctx, ND_ERR_CALLBACK, "%s: g returned NULL at t = %.17g", name, t);
        return false;
    }
    if (c->size != 1) {
        char sh[64];
        nd_fail(ctx, ND_ERR_SHAPE, "%s: g must return one number, got shape %s at t = %.17g", name,
                nd_shape_str(c, sh), t);
        return false;
    }
    if (!isfinite((double)c->data[0])) {
        nd_fail(ctx, ND_ERR_NONFINITE, "%s: g(t, y) is not finite at t = %.17g", name, t);
        return false;
    }
    return true;
}

/* g(t, y) as a number: grad mode off, its memory released. g never sees a state that is not
 * finite (a step can be accepted onto one; the solve would stop at the next) */
static bool g_value(nd_ctx *ctx, const seeker *s, double t, const nd_real *y, double *out)
{
    for (size_t i = 0; i < s->n; i++)
        if (!isfinite((double)y[i])) {
            nd_fail(ctx, ND_ERR_NONFINITE, "%s: the state is not finite at t = %.17g", name, t);
            return false;
        }
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *yt = nd_tensor_from(ctx, s->ndim, s->shape, y);
    nd_tensor *tt = nd_scalar(ctx, (nd_real)t);
    nd_tensor *c = yt && tt ? s->g(ctx, tt, yt, s->user_data) : NULL;
    bool ok = check_g(ctx, c, t);
    if (ok) *out = (double)c->data[0];
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, m);
    return ok;
}

static bool crossed(int direction, double before, double after)
{
    bool rising = before < 0 && after >= 0, falling = before > 0 && after <= 0;
    return direction > 0 ? rising : direction < 0 ? falling : rising || falling;
}

/* The root in [a, b], where g left the sign it had at a: bisection on the interpolant until the
 * bracket is within tol (or a few ulps), torchdiffeq's find_event. */
static bool bisect(nd_ctx *ctx, seeker *s, const nd_interp *ip, double a, double b, double *root)
{
    bool negative_before = s->g_prev < 0;
    for (;;) {
        double mid = 0.5 * (a + b);
        double tol = s->tol > 0 ? s->tol : 4 * DBL_EPSILON * fmax(fabs(a), fabs(b));
        if (fabs(b - a) <= tol || mid == a || mid == b) break;
        double gm;
        nd_interp_at_buf(ip, mid, s->buf);
        if (!g_value(ctx, s, mid, s->buf, &gm)) return false;
        if (gm != 0 && (gm < 0) == negative_before)
            a = mid;
        else
            b = mid;
    }
    *root = 0.5 * (a + b);
    return true;
}

/* the observer: g at the step's end (t_end when the step passes it); on a crossing, the root */
static int seek(void *data, nd_ctx *ctx, const nd_interp *ip)
{
    seeker *s = data;
    double dir = ip->t1 > ip->t0 ? 1 : -1;
    double end = dir * (ip->t1 - s->t_end) > 0 ? s->t_end : ip->t1, g1;
    nd_interp_at_buf(ip, end, s->buf);
    if (!g_value(ctx, s, end, s->buf, &g1)) return -1;
    if (!crossed(s->direction, s->g_prev, g1)) {
        s->g_prev = g1;
        return 0;
    }
    if (!bisect(ctx, s, ip, ip->t0, end, &s->t_event)) return -1;
    s->found = true;
    return 1; /* terminal: the solve ends here */
}

/* (1): the event time, by a values-only solve from t0 towards t_end */
static nd_status find_event(nd_ctx *ctx, seeker *s, nd_ode_fn f, void *user_data, nd_tensor *y0,
                            double t0, nd_tensor *const *params, int n_params,
                            const nd_ode_options *opts)
{
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){(nd_real)t0, (nd_real)s->t_end});
    nd_step_observer obs = {seek, s};
    nd_tensor *ys = NULL;
    double g0 = 0;
    nd_status st = t && g_value(ctx, s, t0, y0->data, &g0) ? ND_OK : nd_ctx_error(ctx);
    s->g_prev = g0;
    if (st == ND_OK)
        st = nd_odeint_observed(ctx, name, f, NULL, user_data, &y0, 1, t, params, n_params, opts,
                                &obs, &ys);
    if (st == ND_OK) s->search = nd_odeint_stats(ys)->forward; /* before its memory goes */
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, m);
    if (st != ND_OK || s->found) return st;
    const char *way = s->direction > 0 ? " upwards" : s->direction < 0 ? " downwards" : "";
    return nd_fail(ctx, ND_ERR_NO_EVENT,
                   "%s: g(t, y) did not cross zero%s between t0 = %.17g and t_end = %.17g (g went "
                   "from %g to %g); solve further or check the event function",
                   name, way, t0, s->t_end, g0, s->g_prev);
}

/* ---- the event op ------------------------------------------------------------------------- */

typedef struct {
    nd_ode_fn f;
    nd_event_fn g;
    void *user_data;
    int ndim;
    int shape[ND_MAX_DIMS];
    size_t n;
    double t_event;
    nd_tensor *y; /* (n,) y(t_event) from the solve: src 0 */
    nd_tensor **params;
    int n_params; /* those requiring grad: srcs 1.. */
} event_state;

/* f(t_event, y_event) into out (n,), grad mode off */
static bool f_at_event(nd_ctx *ctx, const event_state *es, const nd_real *y, double *out)
{
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_tensor *yt = nd_tensor_from(ctx, es->ndim, es->shape, y), *dy = NULL;
    nd_tensor *t = nd_scalar(ctx, (nd_real)es->t_event);
    int rc = yt && t ? es->f(ctx, t, yt, &dy, es->user_data) : -1;
    bool ok = rc == 0 && dy && dy->size == es->n;
    if (ok)
        for (size_t i = 0; i < es->n; i++) out[i] = (double)dy->data[i];
    else if (!nd_ctx_error(ctx))
        nd_fail(ctx, ND_ERR_CALLBACK,
                "%s (backward): f failed or returned the wrong size at the "
                "event t = %.17g",
                name, es->t_event);
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, m);
    return ok;
}

/* dg/dt, dg/dy (n,), dg/dparams at the event: grads (2 + n_params,) */
static bool g_partials(nd_ctx *ctx, const event_state *es, const nd_real *y, nd_tensor **grads)
{
    bool prev = nd_ctx_set_grad(ctx, true);
    nd_tensor *t = nd_scalar(ctx, (nd_real)es->t_event);
    nd_tensor *yt = nd_tensor_from(ctx, es->ndim, es->shape, y);
    nd_tensor **in = nd_ctx_alloc(ctx, (size_t)(2 + es->n_params) * sizeof *in);
    bool ok = t && yt && in;
    if (ok) {
        t->requires_grad = yt->requires_grad = true;
        nd_tensor *c = es->g(ctx, t, yt, es->user_data);
        ok = check_g(ctx, c, es->t_event);
        in[0] = t, in[1] = yt;
        for (int i = 0; i < es->n_params; i++) in[2 + i] = es->params[i];
        ok = ok && nd_grad(ctx, &c, NULL, 1, in, 2 + es->n_params, grads, ND_ALLOW_UNUSED) == ND_OK;
    }
    nd_ctx_set_grad(ctx, prev);
    return ok;
}

/* dL/d[t_event, y_event] = (g_t, g_y). With lam = -(g_t + g_y . f) / (dg/dt + dg/dy . f):
 * dL/dy(T) = g_y + lam dg/dy and dL/dparams = lam dg/dparams (odeint.h). */
static void event_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    event_state *es = state;
    if (nd_ctx_grad_enabled(ctx)) {
        nd_fail(ctx, ND_ERR_GRAPH,
                "%s: the event's gradient cannot be differentiated again "
                "(create_graph)",
                name);
        return;
    }
    const nd_real *G = out->gnode->data, *y = out->data + 1;
    size_t n = es->n;
    double *f = nd_ctx_alloc(ctx, n * sizeof *f);
    nd_tensor **dg = nd_ctx_alloc(ctx, (size_t)(2 + es->n_params) * sizeof *dg);
    if (!f || !dg || !f_at_event(ctx, es, y, f) || !g_partials(ctx, es, y, dg)) return;
    double dcdt = dg[0]->data[0], gt = G[0];
    for (size_t i = 0; i < n; i++) dcdt += dg[1]->data[i] * f[i], gt += G[1 + i] * f[i];
    if (!(fabs(dcdt) > 0) || !isfinite(dcdt)) {
        nd_fail(ctx, ND_ERR_ARG,
                "%s (backward): dg/dt along the solution is %g at the event t = "
                "%.17g: a tangential crossing has no differentiable event time",
                name, dcdt, es->t_event);
        return;
    }
    double lam = -gt / dcdt;
    if (nd_needs_grad(ctx, es->y)) {
        nd_tensor *dy = nd_tensor_new(ctx, 1, (int[]){(int)n});
        if (!dy) return;
        for (size_t i = 0; i < n; i++) dy->data[i] = (nd_real)(G[1 + i] + lam * dg[1]->data[i]);
        nd_accumulate_grad(ctx, es->y, dy);
    }
    for (int i = 0; i < es->n_params; i++)
        if (nd_needs_grad(ctx, es->params[i]))
            nd_accumulate_grad(ctx, es->params[i], nd_mul_scalar(ctx, dg[2 + i], (nd_real)lam));
}

/* (3): [t_event, y_event] (1 + n,), recorded over y(T) and the params requiring grad */
static nd_tensor *event_op(nd_ctx *ctx, event_state *es, nd_tensor *const *params, int n_params)
{
    nd_tensor *out = nd_tensor_new(ctx, 1, (int[]){(int)es->n + 1});
    nd_tensor **src = nd_ctx_alloc(ctx, (size_t)(n_params + 1) * sizeof *src);
    es->params = src + 1;
    if (!out || !src) return NULL;
    out->data[0] = (nd_real)es->t_event;
    memcpy(out->data + 1, es->y->data, es->n * sizeof(nd_real));
    src[0] = es->y;
    for (int i = 0; i < n_params; i++)
        if (params[i]->requires_grad) src[1 + es->n_params++] = params[i];
    nd_custom_op op = {"odeint_event", event_backward, es};
    return nd_record_custom(ctx, out, &op, 1 + es->n_params, src);
}

/* ---- the call ----------------------------------------------------------------------------- */

static void add_stats(nd_solve_stats *to, const nd_solve_stats *from)
{
    to->nfe += from->nfe, to->accepted += from->accepted, to->rejected += from->rejected;
    for (int r = 0; r < ND_ROLE_COUNT; r++)
        for (int b = 0; b < ND_LIMIT_MAX_BLOCKS; b++) {
            to->limit.accepted[r][b] += from->limit.accepted[r][b];
            to->limit.rejected[r][b] += from->limit.rejected[r][b];
        }
}

/* Both outputs carry the second solve's statistics (nd_odeint_stats), the search's forward added
 * to its forward: the whole call's forward work, and the backward pass's as any solve's. */
static void share_stats(const nd_tensor *ys, const seeker *s, nd_tensor *te, nd_tensor *ye)
{
    nd_odeint_saved *sv = ys->aux; /* odeint.c: every trajectory carries its saved state */
    add_stats(&sv->stats.forward, &s->search);
    te->aux = ye->aux = sv;
}

static nd_status check_args(nd_ctx *ctx, nd_ode_fn f, nd_event_fn g, nd_tensor *y0, double t0,
                            double t_end, nd_tensor *const *params, int n_params,
                            const nd_event_options *eo)
{
    if (!f || !g || !y0)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s is NULL", name, !f ? "f" : !g ? "g" : "y0");
    if (!isfinite(t0) || !isfinite(t_end) || t0 == t_end)
        return nd_fail(ctx, ND_ERR_ARG, "%s: t0 = %g and t_end = %g must be finite and different",
                       name, t0, t_end);
    if (n_params < 0 || (n_params > 0 && !params))
        return nd_fail(ctx, ND_ERR_ARG, "%s: params is NULL or n_params (%d) negative", name,
                       n_params);
    for (int i = 0; i < n_params; i++)
        if (!params[i]) return nd_fail(ctx, ND_ERR_ARG, "%s: params[%d] is NULL", name, i);
    if (eo->direction < -1 || eo->direction > 1)
        return nd_fail(ctx, ND_ERR_ARG, "%s: direction must be -1, 0 or 1, got %d", name,
                       eo->direction);
    if (!(eo->tol >= 0) || !isfinite(eo->tol))
        return nd_fail(ctx, ND_ERR_ARG, "%s: tol must be finite and >= 0, got %g", name, eo->tol);
    return ND_OK;
}

nd_status nd_odeint_event(nd_ctx *ctx, nd_ode_fn f, nd_event_fn g, void *user_data, nd_tensor *y0,
                          double t0, double t_end, nd_tensor *const *params, int n_params,
                          const nd_ode_options *opts, const nd_event_options *eopts,
                          nd_tensor **t_event, nd_tensor **y_event)
{
    if (t_event) *t_event = NULL;
    if (y_event) *y_event = NULL;
    if (nd_ctx_error(ctx)) return nd_ctx_error(ctx);
    if (!t_event || !y_event)
        return nd_fail(ctx, ND_ERR_ARG, "%s: t_event or y_event is NULL", name);
    nd_event_options eo = eopts ? *eopts : ND_EVENT_DEFAULT;
    nd_status st = check_args(ctx, f, g, y0, t0, t_end, params, n_params, &eo);
    if (st != ND_OK) return st;
    seeker s = {.g = g,
                .user_data = user_data,
                .ndim = y0->ndim,
                .shape = y0->shape,
                .n = y0->size,
                .direction = eo.direction,
                .tol = eo.tol,
                .t_end = t_end,
                .buf = nd_ctx_alloc(ctx, y0->size * sizeof(nd_real))};
    if (!s.buf) return nd_ctx_error(ctx);
    st = find_event(ctx, &s, f, user_data, y0, t0, params, n_params, opts);
    if (st != ND_OK) return st;

    /* (2) the state at the event, differentiable as any solve */
    int n = (int)y0->size;
    nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){(nd_real)t0, (nd_real)s.t_event});
    nd_tensor *ys = t ? nd_odeint(ctx, f, user_data, y0, t, params, n_params, opts) : NULL;
    nd_tensor *yT = nd_reshape(ctx, nd_slice(ctx, ys, 0, 1, 1), 1, &n);
    event_state *es = nd_ctx_alloc(ctx, sizeof *es);
    if (!yT || !es) return nd_ctx_error(ctx);
    *es = (event_state){.f = f,
                        .g = g,
                        .user_data = user_data,
                        .ndim = y0->ndim,
                        .n = y0->size,
                        .t_event = s.t_event,
                        .y = yT};
    memcpy(es->shape, y0->shape, (size_t)y0->ndim * sizeof *es->shape);

    /* (3) */
    nd_tensor *packed = event_op(ctx, es, params, n_params);
    nd_tensor *te = nd_reshape(ctx, nd_slice(ctx, packed, 0, 0, 1), 0, NULL);
    nd_tensor *ye = nd_reshape(ctx, nd_slice(ctx, packed, 0, 1, n), y0->ndim, y0->shape);
    if (!te || !ye) return nd_ctx_error(ctx);
    share_stats(ys, &s, te, ye);
    *t_event = te, *y_event = ye;
    return ND_OK;
}

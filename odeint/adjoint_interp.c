/* SPDX-License-Identifier: MIT
 * odeint/adjoint_interp.c: the backward of the odeint op with ND_GRAD_INTERP_ADJOINT or
 * ND_GRAD_QUADRATURE_ADJOINT.
 *
 * Neither integrates z backwards: z(t) comes from the forward solution, recomputed one checkpoint
 * interval at a time with dense output (replay.c). From the last output time back to the first,
 * one solve per output interval, the interpolating adjoint integrates [a_z, a_theta (one block
 * per parameter), a_t (when t requires grad)] with da_z/dt = -a_z df/dz, da_theta/dt =
 * -a_z df/dtheta, da_t/dt = -a_z df/dt, under the adjoint's norm (the seminorm leaves a_theta and
 * a_t out of the error test); the quadrature adjoint integrates a_z alone and adds a_theta and
 * a_t by Gauss-Legendre quadrature after each accepted step (adjoint_quadrature.c). At each output
 * time dL/dy(t_i) is added to a_z and dL/dt_i = f(t_i, y_i) . dL/dy_i taken, as in adjoint.c.
 */
#include <stdlib.h>
#include <string.h>

#include "odeint/adjoint_interp.h"
#include "odeint/tableau.h"

int nd_interp_vjp(nd_ctx *ctx, interp_system *is, double t, const nd_real *a_z, bool with_z,
                  bool with_rest, nd_tensor **vjp)
{
    nd_odeint_saved *sv = is->sv;
    size_t n = is->n;
    int shape_n[1] = {(int)n};
    nd_tensor *z = nd_tensor_new(ctx, 1, shape_n), *seed = nd_tensor_new(ctx, 1, shape_n);
    nd_tensor *t_leaf = nd_scalar(ctx, (nd_real)t);
    int n_in = (with_z ? 1 : 0) + (with_rest ? sv->n_params + (sv->t_grad ? 1 : 0) : 0);
    nd_tensor **in = nd_ctx_alloc(ctx, (size_t)(n_in + 1) * sizeof *in);
    if (!z || !seed || !t_leaf || !in || !nd_replay_eval(ctx, sv->replay, sv, t, z->data))
        return -1;
    for (size_t i = 0; i < n; i++) seed->data[i] = -a_z[i];
    z->requires_grad = with_z;
    t_leaf->requires_grad = with_rest && sv->t_grad;
    sv->stats.backward.nfe += with_z ? 0 : 1; /* the solver counts its own evaluations */

    bool prev = nd_ctx_set_grad(ctx, true);
    nd_tensor *f = NULL;
    int rc = nd_user_call(ctx, &sv->us, sv->us.what_adjoint, t, t_leaf, z, &f);
    if (rc == 0) {
        int k = 0;
        if (with_z) in[k++] = z;
        for (int i = 0; with_rest && i < sv->n_params; i++) in[k++] = sv->params[i];
        if (with_rest && sv->t_grad) in[k++] = t_leaf;
        /* a parameter f ignores (or z, when f ignores the state) is legitimately unused: zeros */
        if (nd_grad(ctx, &f, &seed, 1, in, n_in, vjp, ND_ALLOW_UNUSED) != ND_OK) rc = -1;
    }
    nd_ctx_set_grad(ctx, prev);
    return rc;
}

static int interp_eval(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *state,
                       nd_tensor **dstate)
{
    interp_system *is = (interp_system *)sys;
    nd_odeint_saved *sv = is->sv;
    int n_vjp = 1 + (is->quadrature ? 0 : sv->n_params + (sv->t_grad ? 1 : 0));
    nd_tensor **vjp = nd_ctx_alloc(ctx, (size_t)n_vjp * sizeof *vjp);
    if (!vjp) return -1;
    int rc = nd_interp_vjp(ctx, is, t, state->data, true, !is->quadrature, vjp);
    if (rc != 0) return rc;
    nd_tensor *d = nd_tensor_new(ctx, 1, (int[]){(int)sys->n});
    if (!d) return -1;
    size_t off = 0;
    for (int k = 0; k < n_vjp; k++) { /* a_z, then a_theta's blocks, then a_t */
        memcpy(d->data + off, vjp[k]->data, vjp[k]->size * sizeof(nd_real));
        off += vjp[k]->size;
    }
    *dstate = d;
    return 0;
}

/* The backward state's blocks: a_z's (the adjoint's per-block tolerances), and for the
 * interpolating adjoint one block per parameter and a_t (the scalar tolerances). */
static bool build_system(nd_ctx *ctx, interp_system *is, nd_odeint_saved *sv)
{
    const nd_user_system *us = &sv->us;
    const nd_solver_options *ao = &sv->opts.adjoint;
    bool quad = sv->opts.grad == ND_GRAD_QUADRATURE_ADJOINT;
    int n_blocks = us->n_y + (quad ? 0 : sv->n_params + (sv->t_grad ? 1 : 0));
    size_t *size = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *size);
    nd_block_role *role = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *role);
    double *rtol = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *rtol);
    double *atol = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *atol);
    if (!size || !role || !rtol || !atol) return false;
    *is = (interp_system){.sv = sv, .quadrature = quad, .n = us->n};
    for (int i = 0; i < sv->n_params; i++) is->n_extra += sv->params[i]->size;
    is->n_extra += sv->t_grad ? 1 : 0;
    size_t total = 0;
    for (int b = 0; b < n_blocks; b++) {
        bool az = b < us->n_y, param = !az && b - us->n_y < sv->n_params;
        size[b] = az ? us->block_size[b] : param ? sv->params[b - us->n_y]->size : 1;
        role[b] = az ? ND_ROLE_ADJ_STATE : param ? ND_ROLE_ADJ_PARAM : ND_ROLE_ADJ_TIME;
        rtol[b] = az && ao->rtol_blocks ? ao->rtol_blocks[b] : ao->rtol;
        atol[b] = az && ao->atol_blocks ? ao->atol_blocks[b] : ao->atol;
        total += size[b];
    }
    is->z = nd_ctx_alloc(ctx, is->n * sizeof *is->z);
    if (quad) is->extra = nd_ctx_alloc(ctx, (is->n_extra + 1) * sizeof *is->extra);
    if (!is->z || (quad && !is->extra)) return false;
    if (quad) memset(is->extra, 0, (is->n_extra + 1) * sizeof *is->extra);
    is->gl_nodes = nd_quadrature_nodes(nd_tableau_get(ao->method)->order);
    is->sys = (nd_ode_system){.eval = interp_eval,
                              .n = total,
                              .n_blocks = n_blocks,
                              .block_size = size,
                              .role = role,
                              .rtol = rtol,
                              .atol = atol,
                              .what = us->what_adjoint,
                              .on_step = quad ? nd_quadrature_step : NULL};
    return true;
}

/* One backward pass. */
typedef struct {
    interp_system is;
    nd_odeint_saved *sv;
    const nd_tensor *traj, *g; /* (n_t, n) the forward trajectory and dL/d(trajectory) */
    nd_tensor *state;          /* (N,) [a_z, a_theta, a_t] or [a_z] */
    nd_real *rows;             /* (2, N) one interval's solve: its start and end */
    double *t_vjp;             /* (n_t,) dL/dt_i for i >= 1 */
    nd_breakpoints bp;
} interp_pass;

static bool pass_start(nd_ctx *ctx, interp_pass *p, nd_odeint_saved *sv, nd_tensor *out)
{
    if (!build_system(ctx, &p->is, sv)) return false;
    size_t n = p->is.n, N = p->is.sys.n, last = (size_t)(sv->n_t - 1) * n;
    p->sv = sv;
    p->traj = out, p->g = out->gnode;
    p->state = nd_zeros(ctx, 1, (int[]){(int)N});
    p->rows = nd_ctx_alloc(ctx, 2 * N * sizeof *p->rows);
    p->t_vjp = nd_ctx_alloc(ctx, (size_t)sv->n_t * sizeof *p->t_vjp);
    if (!p->state || !p->rows || !p->t_vjp || !nd_replay_breakpoints(ctx, sv->replay, sv, &p->bp))
        return false;
    if (!p->is.quadrature) p->is.extra = p->state->data + n;
    memcpy(p->state->data, p->g->data + last, n * sizeof(nd_real));
    memset(&sv->stats.backward, 0, sizeof sv->stats.backward);
    memset(&sv->stats.recomputed, 0, sizeof sv->stats.recomputed);
    return true;
}

/* From output time t_i back to t_{i-1}: dL/dt_i, the solve, then dL/dy(t_{i-1}) added to a_z. */
static bool pass_interval(nd_ctx *ctx, interp_pass *p, int i)
{
    nd_odeint_saved *sv = p->sv;
    size_t n = p->is.n, N = p->is.sys.n;
    nd_solve_stats *bst = &sv->stats.backward;
    if (sv->t_grad) {
        if (!nd_user_f_dot(ctx, &sv->us, sv->us.what_adjoint, sv->tv[i],
                           p->traj->data + (size_t)i * n, p->g->data + (size_t)i * n, &bst->nfe,
                           &p->t_vjp[i]))
            return false;
        p->is.extra[p->is.n_extra - 1] -= (nd_real)p->t_vjp[i];
    }
    double interval[2] = {sv->tv[i], sv->tv[i - 1]};
    p->is.t_end = sv->tv[i - 1];
    if (nd_ode_solve(ctx, &p->is.sys, &sv->opts.adjoint, &p->bp, p->state, interval, 2, false,
                     p->rows, NULL, bst) != ND_OK)
        return false;
    nd_real *st = p->state->data;
    memcpy(st, p->rows + N, N * sizeof(nd_real));
    const nd_real *g_prev = p->g->data + (size_t)(i - 1) * n;
    for (size_t k = 0; k < n; k++) st[k] += g_prev[k];
    return true;
}

/* a_z to the initial states, a_theta to the params, a_t and the output times' to t. */
static void pass_finish(nd_ctx *ctx, const interp_pass *p)
{
    const nd_real *extra = p->is.extra;
    nd_odeint_deliver_grads(ctx, p->sv, p->state->data, extra, extra[p->is.n_extra - 1], p->t_vjp);
}

void nd_odeint_interp_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    nd_odeint_saved *sv = state;
    if (nd_ctx_grad_enabled(ctx)) {
        nd_fail(ctx, ND_ERR_GRAPH,
                "%s: the %s gradient cannot be differentiated again (create_graph); use "
                "opts.grad = ND_GRAD_BACKPROP for higher derivatives through a solve",
                sv->us.what, nd_ode_grad_name(sv->opts.grad));
        return;
    }
    interp_pass p;
    bool ok = pass_start(ctx, &p, sv, out);
    nd_mark m = nd_ctx_mark(ctx);
    for (int i = sv->n_t - 1; ok && i > 0; i--) {
        ok = pass_interval(ctx, &p, i);
        nd_ctx_rewind(ctx, m);
    }
    sv->stats.dense_bytes = sv->replay->peak_bytes;
    nd_replay_release(sv->replay);
    if (ok) pass_finish(ctx, &p);
}

/* SPDX-License-Identifier: MIT
 * odeint/adjoint.c: the backward of the odeint op, by the adjoint method.
 *
 * From the last output time back to the first, it integrates the augmented state
 *   [a_t (only when t requires grad), z, a_z, a_theta (one block per parameter)]
 * with dz/dt = f, da_z/dt = -a_z df/dz, da_theta/dt = -a_z df/dtheta, da_t/dt = -a_z df/dt,
 * one solve per output interval. At each output time z is reset to the stored forward value and
 * dL/dy(t_i) is added to a_z (torchdiffeq's scheme). Each augmented evaluation is one call of f
 * and one nd_grad over (z, params[, t]) inside the solver's mark/rewind, so memory does not grow
 * with the number of steps. The solver's norm sees each block with its role: the seminorm leaves
 * a_theta and a_t out of the step-size test, since they never feed back into the dynamics.
 */
#include <string.h>

#include "odeint/odeint_internal.h"

typedef struct {
    nd_ode_system sys; /* first: the solver sees this */
    nd_odeint_saved *sv;
    size_t n; /* forward state size */
    size_t off_z, off_az, off_p;
    int n_in; /* inputs of the VJP: z, params, t */
} aug_system;

static int aug_eval(nd_ode_system *sys, nd_ctx *ctx, double t, nd_tensor *aug, nd_tensor **daug)
{
    aug_system *as = (aug_system *)sys;
    nd_odeint_saved *sv = as->sv;
    size_t n = as->n;
    int shape_n[1] = {(int)n};

    /* z as a fresh leaf over the augmented state's memory, t as a leaf when it needs a gradient */
    nd_tensor *z = nd_tensor_new(ctx, 1, shape_n);
    nd_tensor *t_leaf = nd_scalar(ctx, (nd_real)t);
    nd_tensor *seed = nd_tensor_new(ctx, 1, shape_n);
    nd_tensor **in = nd_ctx_alloc(ctx, (size_t)(as->n_in * 2) * sizeof *in);
    if (!z || !t_leaf || !seed || !in) return -1;
    memcpy(z->data, aug->data + as->off_z, n * sizeof(nd_real));
    for (size_t i = 0; i < n; i++) seed->data[i] = -aug->data[as->off_az + i];
    z->requires_grad = true;
    t_leaf->requires_grad = sv->t_grad;

    bool prev = nd_ctx_set_grad(ctx, true);
    nd_tensor *f = NULL;
    int rc = nd_user_call(ctx, &sv->us, sv->us.what_adjoint, t, t_leaf, z, &f);
    nd_tensor **vjp = in + as->n_in;
    if (rc == 0) {
        int k = 0;
        in[k++] = z;
        for (int i = 0; i < sv->n_params; i++) in[k++] = sv->params[i];
        if (sv->t_grad) in[k++] = t_leaf;
        /* a parameter f ignores (or z, when f ignores the state) is legitimately unused: zeros */
        if (nd_grad(ctx, &f, &seed, 1, in, as->n_in, vjp, ND_ALLOW_UNUSED) != ND_OK) rc = -1;
    }
    nd_ctx_set_grad(ctx, prev);
    if (rc != 0) return rc;

    nd_tensor *d = nd_tensor_new(ctx, 1, (int[]){(int)sys->n});
    if (!d) return -1;
    if (sv->t_grad) d->data[0] = vjp[as->n_in - 1]->data[0];
    memcpy(d->data + as->off_z, f->data, n * sizeof(nd_real));
    memcpy(d->data + as->off_az, vjp[0]->data, n * sizeof(nd_real));
    size_t off = as->off_p;
    for (int i = 0; i < sv->n_params; i++) {
        memcpy(d->data + off, vjp[1 + i]->data, sv->params[i]->size * sizeof(nd_real));
        off += sv->params[i]->size;
    }
    *daug = d;
    return 0;
}

/* The augmented system's blocks: [a_t], z blocks, a_z blocks, one block per parameter. */
static bool build_aug_system(nd_ctx *ctx, aug_system *as, nd_odeint_saved *sv)
{
    const nd_user_system *us = &sv->us;
    const nd_solver_options *ao = &sv->opts.adjoint;
    int n_blocks = (sv->t_grad ? 1 : 0) + 2 * us->n_y + sv->n_params;
    size_t *size = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *size);
    nd_block_role *role = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *role);
    double *rtol = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *rtol);
    double *atol = nd_ctx_alloc(ctx, (size_t)n_blocks * sizeof *atol);
    if (!size || !role || !rtol || !atol) return false;
    int b = 0;
    size_t total = 0;
    if (sv->t_grad) size[b] = 1, role[b++] = ND_ROLE_ADJ_TIME, total = 1;
    as->off_z = total;
    for (int r = 0; r < 2; r++) {
        if (r == 1) as->off_az = total;
        for (int i = 0; i < us->n_y; i++) {
            /* per-block tolerances of the adjoint apply to z and a_z alike */
            rtol[b] = ao->rtol_blocks ? ao->rtol_blocks[i] : ao->rtol;
            atol[b] = ao->atol_blocks ? ao->atol_blocks[i] : ao->atol;
            size[b] = us->block_size[i];
            role[b++] = r == 0 ? ND_ROLE_STATE : ND_ROLE_ADJ_STATE;
            total += us->block_size[i];
        }
    }
    as->off_p = total;
    for (int i = 0; i < sv->n_params; i++) {
        size[b] = sv->params[i]->size;
        role[b++] = ND_ROLE_ADJ_PARAM;
        total += sv->params[i]->size;
    }
    for (int i = 0; i < n_blocks; i++) {
        if (role[i] == ND_ROLE_ADJ_TIME || role[i] == ND_ROLE_ADJ_PARAM)
            rtol[i] = ao->rtol, atol[i] = ao->atol;
    }
    as->sv = sv;
    as->n = us->n;
    as->n_in = 1 + sv->n_params + (sv->t_grad ? 1 : 0);
    as->sys = (nd_ode_system){.eval = aug_eval,
                              .n = total,
                              .n_blocks = n_blocks,
                              .block_size = size,
                              .role = role,
                              .rtol = rtol,
                              .atol = atol,
                              .what = us->what_adjoint};
    return true;
}

/* One backward pass: the augmented system, its state and where each interval's solve goes. */
typedef struct {
    aug_system as;
    nd_odeint_saved *sv;
    const nd_tensor *traj, *g; /* (n_t, n) the forward trajectory and dL/d(trajectory) */
    nd_tensor *aug;            /* (N,) the augmented state */
    nd_real *rows;             /* (2, N) one interval's solve: its start and end */
    double *t_vjp;             /* (n_t,) dL/dt_i for i >= 1 */
    nd_breakpoints bp;
} adjoint_pass;

/* The augmented state at the last output time: z = y(t_last), a_z = dL/dy(t_last), the rest 0. */
static bool adjoint_start(nd_ctx *ctx, adjoint_pass *p, nd_odeint_saved *sv, nd_tensor *out)
{
    if (!build_aug_system(ctx, &p->as, sv)) return false;
    size_t n = p->as.n, N = p->as.sys.n, last = (size_t)(sv->n_t - 1) * n;
    p->sv = sv;
    p->traj = out, p->g = out->gnode;
    p->aug = nd_zeros(ctx, 1, (int[]){(int)N});
    p->rows = nd_ctx_alloc(ctx, 2 * N * sizeof *p->rows);
    p->t_vjp = nd_ctx_alloc(ctx, (size_t)sv->n_t * sizeof *p->t_vjp);
    if (!p->aug || !p->rows || !p->t_vjp) return false;
    memcpy(p->aug->data + p->as.off_z, p->traj->data + last, n * sizeof(nd_real));
    memcpy(p->aug->data + p->as.off_az, p->g->data + last, n * sizeof(nd_real));
    p->bp =
        (nd_breakpoints){sv->opts.step_t, sv->opts.jump_t, sv->opts.n_step_t, sv->opts.n_jump_t};
    memset(&sv->stats.backward, 0, sizeof sv->stats.backward);
    return true;
}

/* From output time t_i back to t_{i-1}: dL/dt_i, the solve, then z back onto the forward
 * trajectory and the loss's direct dependence on y(t_{i-1}) added to a_z. */
static bool adjoint_interval(nd_ctx *ctx, adjoint_pass *p, int i)
{
    nd_odeint_saved *sv = p->sv;
    size_t n = p->as.n, N = p->as.sys.n;
    nd_real *aug = p->aug->data;
    nd_solve_stats *bst = &sv->stats.backward;
    if (sv->t_grad) {
        /* dL/dt_i = f(t_i, y_i) . dL/dy_i: the effect of moving one output time */
        if (!nd_user_f_dot(ctx, &sv->us, sv->us.what_adjoint, sv->tv[i],
                           p->traj->data + (size_t)i * n, p->g->data + (size_t)i * n, &bst->nfe,
                           &p->t_vjp[i]))
            return false;
        aug[0] -= (nd_real)p->t_vjp[i];
    }
    double interval[2] = {sv->tv[i], sv->tv[i - 1]};
    if (nd_ode_solve(ctx, &p->as.sys, &sv->opts.adjoint, &p->bp, p->aug, interval, 2, false,
                     p->rows, NULL, bst) != ND_OK)
        return false;
    memcpy(aug, p->rows + N, N * sizeof(nd_real));
    const nd_real *y_prev = p->traj->data + (size_t)(i - 1) * n;
    const nd_real *g_prev = p->g->data + (size_t)(i - 1) * n;
    memcpy(aug + p->as.off_z, y_prev, n * sizeof(nd_real));
    for (size_t k = 0; k < n; k++) aug[p->as.off_az + k] += g_prev[k];
    return true;
}

/* Hands the gradients to the op's inputs: az (n,) to the initial states, a_theta (the params'
 * sizes summed) to the params, dL/dt_0 and t_vjp[i] (dL/dt_i, i >= 1) to t when it needs them.
 * Shared by every adjoint mode (adjoint_interp.c too). */
void nd_odeint_deliver_grads(nd_ctx *ctx, const nd_odeint_saved *sv, const nd_real *az,
                             const nd_real *a_theta, nd_real dt0, const double *t_vjp)
{
    const nd_user_system *us = &sv->us;
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        nd_tensor *y0 = us->y0s[b];
        nd_accumulate_grad(ctx, y0, nd_tensor_from(ctx, y0->ndim, y0->shape, az + off));
    }
    off = 0;
    for (int i = 0; i < sv->n_params; off += sv->params[i]->size, i++) {
        nd_tensor *prm = sv->params[i];
        nd_accumulate_grad(ctx, prm, nd_tensor_from(ctx, prm->ndim, prm->shape, a_theta + off));
    }
    if (!sv->t_grad) return;
    nd_tensor *dt = nd_tensor_new(ctx, 1, (int[]){sv->n_t});
    if (!dt) return;
    for (int i = 1; i < sv->n_t; i++) dt->data[i] = (nd_real)t_vjp[i];
    dt->data[0] = dt0;
    nd_accumulate_grad(ctx, sv->t, dt);
}

static void adjoint_finish(nd_ctx *ctx, const adjoint_pass *p)
{
    const nd_real *aug = p->aug->data;
    nd_odeint_deliver_grads(ctx, p->sv, aug + p->as.off_az, aug + p->as.off_p, aug[0], p->t_vjp);
}

void nd_odeint_adjoint_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    nd_odeint_saved *sv = state;
    if (nd_ctx_grad_enabled(ctx)) {
        nd_fail(ctx, ND_ERR_GRAPH,
                "%s: the adjoint gradient cannot be differentiated again (create_graph); use "
                "opts.grad = ND_GRAD_BACKPROP for higher derivatives through a solve",
                sv->us.what);
        return;
    }
    adjoint_pass p;
    if (!adjoint_start(ctx, &p, sv, out)) return;
    nd_mark m = nd_ctx_mark(ctx);
    for (int i = sv->n_t - 1; i > 0; i--) {
        if (!adjoint_interval(ctx, &p, i)) return;
        nd_ctx_rewind(ctx, m);
    }
    adjoint_finish(ctx, &p);
}

/* SPDX-License-Identifier: MIT
 * examples/models/symoden.c: Symplectic ODE-Net and its plain MLP ODE baseline (symoden.h): the
 * networks, the learned mass matrix, energy and input matrix, the Hamiltonian vector field with
 * its gradient taken inside f, rollouts in observed coordinates (q, qdot) and the loss.
 */
#include "symoden.h"

#include <stdlib.h>

const char *symoden_kind_name(symoden_kind k)
{
    return k == SYMODEN_HAMILTONIAN ? "symoden" : "baseline";
}

// ------------------------------------------------------------------------------------------------
// the networks: tanh MLPs, two hidden layers, hung from one container so every parameter has one
// dotted name (checkpoints)

static nd_module *mlp(nd_ctx *ctx, int in, int hidden, int out, nd_rng *rng)
{
    return nd_mlp_create(ctx, 4, (int[]){in, hidden, hidden, out}, ND_ACT_TANH, rng);
}

static nd_status add(nd_ctx *ctx, nd_module *root, const char *name, nd_module *child,
                     nd_module **keep)
{
    *keep = child;
    return child ? nd_module_add_child(ctx, root, name, child) : nd_ctx_error(ctx);
}

nd_status symoden_create(nd_ctx *ctx, symoden_model *m, symoden_kind kind, int n, int nu,
                         int hidden, double eps, nd_rng *rng)
{
    *m = (symoden_model){.kind = kind, .n = n, .nu = nu, .hidden = hidden, .eps = eps};
    if (n < 1 || n > 2 || nu < 1 || hidden < 1 || !(eps > 0))
        return nd_fail(ctx, ND_ERR_ARG,
                       "symoden_create: needs 1 or 2 angles, nu >= 1, hidden >= 1, eps > 0 (got "
                       "n %d, nu %d, hidden %d, eps %g)",
                       n, nu, hidden, eps);
    if (!(m->root = nd_sequential_create(ctx, 0, NULL))) return nd_ctx_error(ctx);
    nd_status st;
    if (kind == SYMODEN_HAMILTONIAN) {
        st = add(ctx, m->root, "minv", mlp(ctx, 2 * n, hidden, n * (n + 1) / 2, rng), &m->minv_net);
        if (st == ND_OK) st = add(ctx, m->root, "V", mlp(ctx, 2 * n, hidden, 1, rng), &m->v_net);
        if (st == ND_OK)
            st = add(ctx, m->root, "g", mlp(ctx, 2 * n, hidden, n * nu, rng), &m->g_net);
    } else {
        st = add(ctx, m->root, "f", mlp(ctx, 3 * n + nu, hidden, 2 * n, rng), &m->f_net);
    }
    if (st != ND_OK || nd_module_params(ctx, m->root, &m->plist) != ND_OK) return nd_ctx_error(ctx);
    m->params = calloc((size_t)m->plist.n, sizeof *m->params);
    if (!m->params) return nd_fail(ctx, ND_ERR_NOMEM, "symoden_create: out of memory");
    for (int i = 0; i < m->plist.n; i++) m->params[i] = m->plist.items[i].tensor;
    return ND_OK;
}

void symoden_destroy(symoden_model *m)
{
    free(m->params);
    nd_param_list_destroy(&m->plist);
    nd_module_destroy(m->root); // owns the networks
    *m = (symoden_model){0};
}

// ------------------------------------------------------------------------------------------------
// the learned parts: x = (cos q, sin q); L's entries row-major over the lower triangle,
// L_ij at i (i + 1) / 2 + j for j <= i

static nd_tensor *embed(nd_ctx *ctx, nd_tensor *q /* (B, n) */)
{
    return nd_concat(ctx, (nd_tensor *[]){nd_cos(ctx, q), nd_sin(ctx, q)}, 2, 1); // (B, 2n)
}

static nd_tensor *col(nd_ctx *ctx, nd_tensor *x, int j) // (B, 1)
{
    return nd_slice(ctx, x, 1, j, 1);
}

static nd_tensor *l_entry(nd_ctx *ctx, nd_tensor *L, int i, int j) // (B, 1)
{
    return col(ctx, L, i * (i + 1) / 2 + j);
}

/* L' p (B, n): entry j is sum over i >= j of L_ij p_i */
static nd_tensor *lt_times(nd_ctx *ctx, int n, nd_tensor *L, nd_tensor *p)
{
    nd_tensor *cols[2];
    for (int j = 0; j < n; j++) {
        cols[j] = nd_mul(ctx, l_entry(ctx, L, j, j), col(ctx, p, j));
        for (int i = j + 1; i < n; i++)
            cols[j] = nd_add(ctx, cols[j], nd_mul(ctx, l_entry(ctx, L, i, j), col(ctx, p, i)));
    }
    return n == 1 ? cols[0] : nd_concat(ctx, cols, n, 1);
}

/* L w (B, n): entry i is sum over j <= i of L_ij w_j */
static nd_tensor *l_times(nd_ctx *ctx, int n, nd_tensor *L, nd_tensor *w)
{
    nd_tensor *cols[2];
    for (int i = 0; i < n; i++) {
        cols[i] = nd_mul(ctx, l_entry(ctx, L, i, 0), col(ctx, w, 0));
        for (int j = 1; j <= i; j++)
            cols[i] = nd_add(ctx, cols[i], nd_mul(ctx, l_entry(ctx, L, i, j), col(ctx, w, j)));
    }
    return n == 1 ? cols[0] : nd_concat(ctx, cols, n, 1);
}

/* (M^-1)_ij = sum_k<=min(i,j) L_ik L_jk + eps [i == j], (B, 1) */
static nd_tensor *minv_entry(nd_ctx *ctx, const symoden_model *m, nd_tensor *L, int i, int j)
{
    int lo = i < j ? i : j;
    nd_tensor *s = nd_mul(ctx, l_entry(ctx, L, i, 0), l_entry(ctx, L, j, 0));
    for (int k = 1; k <= lo; k++)
        s = nd_add(ctx, s, nd_mul(ctx, l_entry(ctx, L, i, k), l_entry(ctx, L, j, k)));
    return i == j ? nd_add_scalar(ctx, s, (nd_real)m->eps) : s;
}

static nd_status hamiltonian_only(nd_ctx *ctx, const symoden_model *m, const char *fn)
{
    return m->kind == SYMODEN_HAMILTONIAN
               ? ND_OK
               : nd_fail(ctx, ND_ERR_ARG, "%s: the baseline has no mass matrix or energy", fn);
}

nd_status symoden_parts(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor **minv,
                        nd_tensor **V, nd_tensor **g)
{
    if (hamiltonian_only(ctx, m, "symoden_parts") != ND_OK) return nd_ctx_error(ctx);
    nd_tensor *x = embed(ctx, q);
    if (minv) {
        nd_tensor *L = nd_module_forward(ctx, m->minv_net, x), *e[4];
        for (int i = 0; i < m->n; i++)
            for (int j = 0; j < m->n; j++) e[i * m->n + j] = minv_entry(ctx, m, L, i, j);
        *minv = m->n == 1 ? e[0] : nd_concat(ctx, e, m->n * m->n, 1); // (B, n n)
    }
    if (V) *V = nd_module_forward(ctx, m->v_net, x);
    if (g) *g = nd_module_forward(ctx, m->g_net, x);
    return (minv && !*minv) || (V && !*V) || (g && !*g) || !x ? nd_ctx_error(ctx) : ND_OK;
}

/* 1/2 |L' p|^2 + eps/2 |p|^2 + V(q), from x = (cos q, sin q) */
static nd_tensor *energy_at(nd_ctx *ctx, const symoden_model *m, nd_tensor *x, nd_tensor *p)
{
    nd_tensor *L = nd_module_forward(ctx, m->minv_net, x);
    nd_tensor *w = lt_times(ctx, m->n, L, p); // (B, n)
    nd_tensor *kin = nd_add(ctx, nd_sum_axis(ctx, nd_mul(ctx, w, w), 1, true),
                            nd_mul_scalar(ctx, nd_sum_axis(ctx, nd_mul(ctx, p, p), 1, true),
                                          (nd_real)m->eps)); // (B, 1)
    return nd_add(ctx, nd_mul_scalar(ctx, kin, 0.5), nd_module_forward(ctx, m->v_net, x));
}

nd_tensor *symoden_energy(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *p)
{
    if (hamiltonian_only(ctx, m, "symoden_energy") != ND_OK) return NULL;
    return energy_at(ctx, m, embed(ctx, q), p);
}

nd_tensor *symoden_velocity(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *p)
{
    if (hamiltonian_only(ctx, m, "symoden_velocity") != ND_OK) return NULL;
    nd_tensor *L = nd_module_forward(ctx, m->minv_net, embed(ctx, q));
    nd_tensor *w = lt_times(ctx, m->n, L, p);
    return nd_add(ctx, l_times(ctx, m->n, L, w), nd_mul_scalar(ctx, p, (nd_real)m->eps));
}

/* p = (M^-1)^-1 qdot in closed form: 1 x 1, or the 2 x 2 inverse [[c, -b], [-b, a]] / det */
nd_tensor *symoden_momentum(nd_ctx *ctx, const symoden_model *m, nd_tensor *q, nd_tensor *qdot)
{
    nd_tensor *minv = NULL;
    if (symoden_parts(ctx, m, q, &minv, NULL, NULL) != ND_OK) return NULL;
    if (m->n == 1) return nd_div(ctx, qdot, minv);
    nd_tensor *a = col(ctx, minv, 0), *b = col(ctx, minv, 1), *c = col(ctx, minv, 3);
    nd_tensor *v0 = col(ctx, qdot, 0), *v1 = col(ctx, qdot, 1);
    nd_tensor *det = nd_sub(ctx, nd_mul(ctx, a, c), nd_mul(ctx, b, b));
    nd_tensor *p0 = nd_sub(ctx, nd_mul(ctx, c, v0), nd_mul(ctx, b, v1));
    nd_tensor *p1 = nd_sub(ctx, nd_mul(ctx, a, v1), nd_mul(ctx, b, v0));
    return nd_div(ctx, nd_concat(ctx, (nd_tensor *[]){p0, p1}, 2, 1), det);
}

/* g(q) u (B, n): entry i is sum_k g_ik u_k */
static nd_tensor *input_force(nd_ctx *ctx, const symoden_model *m, nd_tensor *x, nd_tensor *u)
{
    nd_tensor *g = nd_module_forward(ctx, m->g_net, x), *f[2];
    for (int i = 0; i < m->n; i++) {
        f[i] = nd_mul(ctx, col(ctx, g, i * m->nu), col(ctx, u, 0));
        for (int k = 1; k < m->nu; k++)
            f[i] = nd_add(ctx, f[i], nd_mul(ctx, col(ctx, g, i * m->nu + k), col(ctx, u, k)));
    }
    return m->n == 1 ? f[0] : nd_concat(ctx, f, m->n, 1);
}

// ------------------------------------------------------------------------------------------------
// the vector fields

/* (q, p) -> (dH/dp, -dH/dq + g u), dH by a VJP taken inside f (create_graph when the solve
 * needs a graph of dy/dt) */
static int hamiltonian_field(nd_ctx *ctx, const symoden_model *m, nd_tensor *y, nd_tensor *u,
                             nd_tensor **dy)
{
    int n = m->n;
    nd_ode_diff d;
    if (nd_ode_diff_begin(ctx, &d, &y, 1) != ND_OK) return -1;
    nd_tensor *q = nd_slice(ctx, y, 1, 0, n), *p = nd_slice(ctx, y, 1, n, n); // (B, n) each
    nd_tensor *x = embed(ctx, q);
    nd_tensor *H = nd_sum(ctx, energy_at(ctx, m, x, p)), *dH = NULL; // rows are independent
    nd_status st = H ? nd_ode_vjp(ctx, &d, &H, NULL, 1, &y, 1, &dH) : nd_ctx_error(ctx);
    *dy = st == ND_OK ? nd_concat(ctx,
                                  (nd_tensor *[]){nd_slice(ctx, dH, 1, n, n),
                                                  nd_sub(ctx, input_force(ctx, m, x, u),
                                                         nd_slice(ctx, dH, 1, 0, n))},
                                  2, 1)
                      : NULL;
    return nd_ode_diff_end(ctx, &d, dy, 1) == ND_OK && st == ND_OK ? 0 : -1;
}

/* (q, qdot) -> MLP(cos q, sin q, qdot, u) */
static int baseline_field(nd_ctx *ctx, const symoden_model *m, nd_tensor *y, nd_tensor *u,
                          nd_tensor **dy)
{
    int n = m->n;
    nd_tensor *q = nd_slice(ctx, y, 1, 0, n), *v = nd_slice(ctx, y, 1, n, n);
    nd_tensor *in = nd_concat(ctx, (nd_tensor *[]){nd_cos(ctx, q), nd_sin(ctx, q), v, u}, 4, 1);
    *dy = nd_module_forward(ctx, m->f_net, in); // (B, 2n)
    return *dy ? 0 : -1;
}

int symoden_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dydt, void *user_data)
{
    (void)t; // autonomous: u is constant over a solve
    const symoden_ctrl *c = user_data;
    return c->m->kind == SYMODEN_HAMILTONIAN ? hamiltonian_field(ctx, c->m, y, c->u, dydt)
                                             : baseline_field(ctx, c->m, y, c->u, dydt);
}

// ------------------------------------------------------------------------------------------------
// rollouts in observed coordinates, and the loss

nd_status symoden_rollout(nd_ctx *ctx, const symoden_model *m, nd_tensor *q0, nd_tensor *qdot0,
                          nd_tensor *u, nd_tensor *t, const nd_ode_options *o, nd_tensor **q,
                          nd_tensor **qdot, const nd_ode_stats **stats)
{
    int n = m->n, B = q0 ? q0->shape[0] : 0, T = t ? t->shape[0] : 0;
    bool ham = m->kind == SYMODEN_HAMILTONIAN;
    nd_tensor *second = ham ? symoden_momentum(ctx, m, q0, qdot0) : qdot0;
    nd_tensor *y0 = nd_concat(ctx, (nd_tensor *[]){q0, second}, 2, 1); // (B, 2n)
    symoden_ctrl *c = nd_ctx_alloc(ctx, sizeof *c); // in the arena: the adjoint calls f later
    if (c) *c = (symoden_ctrl){m, u};
    nd_tensor *ys = y0 && c ? nd_odeint(ctx, symoden_dynamics, c, y0, t, m->params, m->plist.n, o)
                            : NULL; // (T, B, 2n)
    if (!ys) return nd_ctx_error(ctx);
    if (stats) *stats = nd_odeint_stats(ys);
    nd_tensor *qs = nd_slice(ctx, ys, 2, 0, n), *s = nd_slice(ctx, ys, 2, n, n); // (T, B, n)
    if (q) *q = qs;
    if (qdot && ham) {
        nd_tensor *flat_q = nd_reshape(ctx, qs, 2, (int[]){T * B, n});
        nd_tensor *flat_p = nd_reshape(ctx, s, 2, (int[]){T * B, n});
        *qdot = nd_reshape(ctx, symoden_velocity(ctx, m, flat_q, flat_p), 3, (int[]){T, B, n});
    } else if (qdot) {
        *qdot = s;
    }
    return (q && !*q) || (qdot && !*qdot) ? nd_ctx_error(ctx) : ND_OK;
}

nd_tensor *symoden_loss(nd_ctx *ctx, const symoden_model *m, nd_tensor *q_true,
                        nd_tensor *qdot_true, nd_tensor *u, nd_tensor *t, const nd_ode_options *o,
                        const nd_ode_stats **stats)
{
    if (!q_true || !qdot_true) return nd_fail(ctx, ND_ERR_ARG, "symoden_loss: NULL target"), NULL;
    int B = q_true->shape[1], n = m->n;
    nd_tensor *q0 = nd_reshape(ctx, nd_slice(ctx, q_true, 0, 0, 1), 2, (int[]){B, n});
    nd_tensor *v0 = nd_reshape(ctx, nd_slice(ctx, qdot_true, 0, 0, 1), 2, (int[]){B, n});
    nd_tensor *q = NULL, *qdot = NULL;
    if (symoden_rollout(ctx, m, q0, v0, u, t, o, &q, &qdot, stats) != ND_OK) return NULL;
    return nd_add(ctx, nd_mse_loss(ctx, q, q_true, ND_REDUCE_MEAN),
                  nd_mse_loss(ctx, qdot, qdot_true, ND_REDUCE_MEAN));
}

void symoden_put_window(const double *qpos, const double *qvel, const double *ctrl, int n_points,
                        int k, int s, int b, nd_tensor *q, nd_tensor *qdot, nd_tensor *u)
{
    int W = q->shape[0], B = q->shape[1], n = q->shape[2], nu = u->shape[1];
    for (int j = 0; j < W; j++)
        for (int i = 0; i < n; i++) {
            size_t src = ((size_t)k * n_points + s + j) * n + i, dst = ((size_t)j * B + b) * n + i;
            q->data[dst] = (nd_real)qpos[src];
            qdot->data[dst] = (nd_real)qvel[src];
        }
    for (int i = 0; i < nu; i++) u->data[b * nu + i] = (nd_real)ctrl[k * nu + i];
}

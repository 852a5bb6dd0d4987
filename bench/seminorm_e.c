/* SPDX-License-Identifier: MIT
 * bench/seminorm_e.c: workload E, Symplectic ODE-Net on the MuJoCo Acrobot (docs/WORKLOADS.md E;
 * examples/acrobot.c's model, examples/models/symoden.c). The Hamiltonian field takes dH by a VJP
 * inside f, so every adjoint evaluation is second order.
 *
 * Trained as examples/acrobot.c trains (windows of 8 points 0.05 apart, dopri5, adjoint with the
 * RMS norm at rtol = atol = 1e-4; here batch 128, hidden 32, 128 trajectories, Adam lr 3e-3); at
 * iterations 0, 25, ..., 100, on one fixed batch of windows per checkpoint and the same weights,
 * the backward NFE of the RMS norm ("default"; f is autonomous, so there is no a_t) and of the
 * seminorm, totals over the checkpoints, in two settings:
 *   E      windows of 8 points (7 intervals of 0.05), the training setting, at 1e-4, 1e-6, 1e-8;
 *   E-2s   windows of 41 points (2 s, 40 intervals), at 1e-4, 1e-6, 1e-8.
 * nodal's adjoint solves one output interval at a time and each solve's norm sees that interval's
 * state only: that is torchdiffeq's behaviour. --quick: checkpoint 0, 1e-4, batch 16.
 * Without MuJoCo the workload says so and reports nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mujoco_sim.h"
#include "seminorm_workloads.h"
#include "symoden.h"

#define E_POINTS 41
#define E_NORMS 2

static const double e_tols[3] = {1e-4, 1e-6, 1e-8};
static const int e_windows[2] = {8, 41};

typedef struct {
    nd_ctx *ctx;
    mujoco_sim_batch data;
    symoden_model m;
    nd_optimizer *opt;
    nd_rng rng;
    int batch;
} e_problem;

/* a batch of B windows of W points, drawn from rng */
static bool draw_windows(e_problem *P, nd_rng *rng, int W, nd_tensor **q, nd_tensor **v,
                         nd_tensor **u, nd_tensor **t)
{
    int B = P->batch, n = P->m.n;
    *q = nd_tensor_new(P->ctx, 3, (int[]){W, B, n});
    *v = nd_tensor_new(P->ctx, 3, (int[]){W, B, n});
    *u = nd_tensor_new(P->ctx, 2, (int[]){B, P->m.nu});
    *t = nd_tensor_new(P->ctx, 1, (int[]){W});
    if (!*q || !*v || !*u || !*t) return false;
    for (int j = 0; j < W; j++) (*t)->data[j] = (nd_real)(0.05 * j);
    for (int b = 0; b < B; b++) {
        int k = (int)nd_rng_below(rng, (uint64_t)P->data.n_traj);
        int s = (int)nd_rng_below(rng, (uint64_t)(E_POINTS - W + 1));
        symoden_put_window(P->data.qpos, P->data.qvel, P->data.ctrl, E_POINTS, k, s, b, *q, *v, *u);
    }
    return true;
}

/* one loss and backward at the given options; the gradient flattened into g */
static nd_status measure(e_problem *P, uint64_t batch_seed, int W, const nd_ode_options *o,
                         sn_result *r, double *g)
{
    nd_mark mark = nd_ctx_mark(P->ctx);
    nd_rng rng = nd_rng_seed(batch_seed); // the same windows for every norm
    nd_tensor *q, *v, *u, *t, *L = NULL;
    const nd_ode_stats *st = NULL;
    nd_zero_grad(P->m.params, P->m.plist.n);
    if (draw_windows(P, &rng, W, &q, &v, &u, &t))
        L = symoden_loss(P->ctx, &P->m, q, v, u, t, o, &st);
    double t0 = sn_now();
    if (!L || nd_backward(P->ctx, L, 0) != ND_OK) return nd_ctx_error(P->ctx);
    r->ms_backward += 1e3 * (sn_now() - t0);
    r->nfe_forward += st->forward.nfe, r->nfe_backward += st->backward.nfe;
    r->accepted_backward += st->backward.accepted, r->rejected_backward += st->backward.rejected;
    sn_add_bound(r, &st->backward.limit); // which block bound each backward step
    size_t k = 0;
    for (int i = 0; i < P->m.plist.n; i++)
        for (size_t e = 0; e < P->m.params[i]->size; e++) g[k++] = P->m.params[i]->grad[e];
    nd_ctx_rewind(P->ctx, mark);
    return ND_OK;
}

static nd_status train_step(e_problem *P)
{
    nd_tensor *q, *v, *u, *t, *L = NULL;
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.rtol = o.solver.atol = 1e-4;
    nd_optimizer_zero_grad(P->opt);
    if (draw_windows(P, &P->rng, 8, &q, &v, &u, &t))
        L = symoden_loss(P->ctx, &P->m, q, v, u, t, &o, NULL);
    nd_status st = L && nd_backward(P->ctx, L, 0) == ND_OK ? nd_optimizer_step(P->ctx, P->opt)
                                                           : nd_ctx_error(P->ctx);
    nd_ctx_reset(P->ctx);
    return st;
}

static int setup(e_problem *P, bool quick)
{
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/acrobot.xml", MUJOCO_MODEL_DIR);
    mujoco_sim *sim = mujoco_sim_create(path, err, sizeof err);
    if (!sim) return fprintf(stderr, "seminorm E: %s\n", err), 1;
    mujoco_sim_batch_options bo = {.n_traj = quick ? 16 : 128,
                                   .n_points = E_POINTS,
                                   .sample_dt = 0.05,
                                   .qpos_lo = (double[]){-M_PI, -M_PI},
                                   .qpos_hi = (double[]){M_PI, M_PI},
                                   .qvel_lo = (double[]){-4, -4},
                                   .qvel_hi = (double[]){4, 4},
                                   .ctrl_lo = (double[]){-2},
                                   .ctrl_hi = (double[]){2},
                                   .seed = 1};
    int rc = mujoco_sim_generate(sim, &bo, &P->data);
    if (rc != 0) fprintf(stderr, "seminorm E: %s\n", mujoco_sim_error(sim));
    mujoco_sim_destroy(sim);
    if (rc != 0) return 1;
    P->rng = nd_rng_seed(1);
    P->batch = quick ? 16 : 128;
    nd_adam_options ao = ND_ADAM_DEFAULT;
    ao.lr = 3e-3;
    if (!(P->ctx = nd_ctx_create(0)) ||
        symoden_create(P->ctx, &P->m, SYMODEN_HAMILTONIAN, 2, 1, 32, 0.01, &P->rng) != ND_OK ||
        !(P->opt = nd_adam_create(P->ctx, P->m.plist.items, P->m.plist.n, &ao)))
        return fprintf(stderr, "seminorm E: %s\n", nd_ctx_errmsg(P->ctx)), 1;
    return 0;
}

int sn_workload_e(bool quick)
{
    if (!mujoco_sim_available()) {
        fprintf(stderr, "seminorm E: this build has no MuJoCo: workload E skipped\n");
        return 0;
    }
    e_problem P = {0};
    int status = setup(&P, quick), iters = quick ? 0 : 100, n_tol = quick ? 1 : 3, n_cp = 0;
    size_t np = status ? 0 : nd_param_list_numel(&P.m.plist);
    double *g = malloc((2 * np + 1) * sizeof *g);
    sn_result sum[2][3][E_NORMS] = {{{{0}}}};
    if (!g) status = 1;
    for (int it = 0; it <= iters && status == 0; it++) {
        if (it % 25 == 0) {
            n_cp++;
            for (int w = 0; w < 2 && status == 0; w++)
                for (int k = 0; k < n_tol && status == 0; k++)
                    for (int c = 0; c < E_NORMS && status == 0; c++) {
                        nd_ode_options o = ND_ODE_DEFAULT;
                        o.solver.rtol = o.solver.atol = e_tols[k];
                        o.adjoint.norm = c ? ND_NORM_SEMINORM : ND_NORM_RMS;
                        sn_result *r = &sum[w][k][c];
                        long before = r->nfe_backward;
                        if (measure(&P, 1000 + it, e_windows[w], &o, r, g + c * np) != ND_OK) {
                            fprintf(stderr, "seminorm E: %s\n", nd_ctx_errmsg(P.ctx));
                            status = 1;
                        } else {
                            fprintf(stderr,
                                    "  E checkpoint %3d, %2d points, tol %g: %-8s NFE-B %ld\n", it,
                                    e_windows[w], e_tols[k], c ? "seminorm" : "rms",
                                    r->nfe_backward - before);
                        }
                        if (status == 0 && c == 1) {
                            r->max_rel_grad_diff =
                                fmax(r->max_rel_grad_diff, sn_max_rel_diff(g + np, g, np));
                            r->rel_grad_diff_norm =
                                fmax(r->rel_grad_diff_norm, sn_rel_diff_norm(g + np, g, np));
                        }
                    }
        }
        if (it < iters && status == 0 && train_step(&P) != ND_OK) {
            fprintf(stderr, "seminorm E: training: %s\n", nd_ctx_errmsg(P.ctx));
            status = 1;
        }
    }
    for (int w = 0; w < 2 && status == 0; w++)
        for (int k = 0; k < n_tol; k++)
            for (int c = 0; c < E_NORMS; c++) {
                sn_result r = sum[w][k][c];
                r.workload = w ? "E-2s" : "E", r.method = "dopri5";
                r.norm = c ? "seminorm" : "default";
                r.rtol = r.atol = e_tols[k];
                r.ms_backward /= n_cp;
                if (c == 0) r.rel_grad_diff_norm = 0;
                r.torchdiffeq_nfe_backward = -1;
                snprintf(r.note, sizeof r.note, "totals over %d checkpoints, batch %d", n_cp,
                         P.batch);
                sn_report(&r);
            }
    free(g);
    nd_optimizer_destroy(P.opt);
    symoden_destroy(&P.m);
    mujoco_sim_batch_free(&P.data);
    nd_ctx_destroy(P.ctx);
    return status;
}

/* SPDX-License-Identifier: MIT
 * bench/seminorm_b.c: workload B, a continuous normalising flow on 8 gaussians (docs/WORKLOADS.md
 * B): the model and paired measurement examples/cnf2d.c trains with (examples/models/cnf.c).
 * Trained with the paper seminorm at rtol = atol = 1e-5, batch 512, Adam lr 1e-3; at iterations
 * 0, 20, ..., 200, 300, 400, 500, on that iteration's batch and weights, every norm at every
 * tolerance. Totals over the checkpoints. */
#include <math.h>
#include <stdio.h>

#include "cnf.h"
#include "seminorm_workloads.h"

/* torchdiffeq over the same protocol (docs/WORKLOADS.md B): default and paper-seminorm totals */
static const struct {
    double rtol, atol;
    long td_default, td_seminorm;
} b_tols[4] = {
    {1e-5, 1e-5, 394, 370}, {1e-3, 1e-6, 436, 304}, {1e-4, 1e-7, 544, 370}, {1e-5, 1e-8, 706, 496}};

static bool b_checkpoint(int it)
{
    return it <= 200 ? it % 20 == 0 : it % 100 == 0;
}

int sn_workload_b(bool quick)
{
    int iters = quick ? 1 : 500, n_tol = quick ? 2 : 4;
    nd_ctx *ctx = nd_ctx_create(0);
    nd_rng rng = nd_rng_seed(1), data_rng = nd_rng_seed(1 ^ 0x9e3779b97f4a7c15ULL);
    cnf_model model;
    nd_tensor *x = nd_tensor_create(ctx, 2, (int[]){quick ? 64 : 512, 2}, false); /* (B, 2) */
    if (cnf_model_create(ctx, &model, &rng) != ND_OK || !x)
        return fprintf(stderr, "seminorm B: %s\n", nd_ctx_errmsg(ctx)), 1;
    nd_optimizer *opt = nd_adam_create(ctx, model.plist.items, model.plist.n, NULL);
    nd_ode_options train = ND_ODE_DEFAULT;
    train.solver.rtol = train.adjoint.rtol = 1e-5;
    train.solver.atol = train.adjoint.atol = 1e-5;
    train.adjoint.norm = ND_NORM_SEMINORM;
    /* the cases, as CNF_NORM_CASES names them: 0 default, 1 default_no_t, 3 seminorm */
    const int cases[3] = {0, 1, 3};
    sn_result sum[4][3] = {{{0}}};
    int n_checkpoints = 0, status = 0;
    double t_start = sn_now();
    for (int it = 0; it <= iters && !status; it++) {
        cnf_sample(CNF_8GAUSSIANS, &data_rng, x);
        if (b_checkpoint(it)) {
            n_checkpoints++;
            for (int k = 0; k < n_tol && !status; k++) {
                nd_ode_options o = train;
                o.solver.rtol = o.adjoint.rtol = b_tols[k].rtol;
                o.solver.atol = o.adjoint.atol = b_tols[k].atol;
                cnf_norm_result r[CNF_N_NORM_CASES];
                if (cnf_paired_norms(ctx, &model, x, &o, CNF_NORM_CASES, CNF_N_NORM_CASES, r,
                                     NULL) != ND_OK) {
                    fprintf(stderr, "seminorm B: %s\n", nd_ctx_errmsg(ctx));
                    status = 1;
                    break;
                }
                for (int c = 0; c < 3; c++) {
                    sn_result *s = &sum[k][c];
                    const cnf_norm_result *q = &r[cases[c]];
                    s->nfe_forward += q->nfe_forward, s->nfe_backward += q->nfe_backward;
                    s->accepted_backward += q->accepted_backward;
                    sn_add_bound(s, &q->limit_backward);
                    s->rejected_backward += q->rejected_backward;
                    s->ms_backward += q->ms_backward;
                    s->max_rel_grad_diff = fmax(s->max_rel_grad_diff, q->max_rel_grad_diff);
                }
            }
            nd_ctx_reset(ctx);
        }
        if (it == iters || status) break;
        nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1});
        nd_tensor *loss = NULL;
        nd_optimizer_zero_grad(opt);
        if (!cnf_neg_log_likelihood(ctx, &model, x, t, &train, NULL, &loss) || !loss ||
            nd_backward(ctx, loss, 0) != ND_OK || nd_optimizer_step(ctx, opt) != ND_OK) {
            fprintf(stderr, "seminorm B: training: %s\n", nd_ctx_errmsg(ctx));
            status = 1;
        }
        if (it % 50 == 0)
            fprintf(stderr, "seminorm B: iteration %d, loss %.3f, %.0f s\n", it,
                    loss ? nd_item(loss) : NAN, sn_now() - t_start);
        nd_ctx_reset(ctx);
    }
    const char *names[3] = {"default", "default_no_t", "seminorm"};
    for (int k = 0; k < n_tol && !status; k++)
        for (int c = 0; c < 3; c++) {
            sn_result r = sum[k][c];
            r.workload = "B", r.method = "dopri5", r.norm = names[c];
            r.rtol = b_tols[k].rtol, r.atol = b_tols[k].atol;
            r.ms_backward /= n_checkpoints;
            r.rel_grad_diff_norm = NAN; /* cnf_paired_norms reports the largest entry only */
            r.torchdiffeq_nfe_backward = c == 0   ? b_tols[k].td_default
                                         : c == 2 ? b_tols[k].td_seminorm
                                                  : -1;
            snprintf(r.note, sizeof r.note, "totals over %d checkpoints (iterations 0-%d)",
                     n_checkpoints, iters);
            sn_report(&r);
        }
    nd_optimizer_destroy(opt);
    cnf_model_destroy(&model);
    nd_tensor_destroy(x);
    nd_ctx_destroy(ctx);
    return status;
}

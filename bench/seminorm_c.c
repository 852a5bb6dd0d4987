/* SPDX-License-Identifier: MIT
 * bench/seminorm_c.c: workload C, a neural CDE on the spirals task (docs/WORKLOADS.md C): the
 * problem and paired measurement examples/ncde.c trains with (examples/models/ncde.c).
 * Trained with the paper seminorm at (1e-3, 1e-6), full batch; at iterations 0, 5, ..., 25 every
 * norm at every tolerance (the 1e-5 row at 0 and 25 only), totals over the checkpoints. Then the
 * piecewise-linear path with a jump at every knot, where every norm must take the same steps. */
#include <math.h>
#include <stdio.h>

#include "ncde.h"
#include "seminorm_workloads.h"

static const struct {
    double rtol, atol;
    long td_default, td_seminorm;
} c_tols[3] = {{1e-3, 1e-6, 5124, 2304}, {1e-4, 1e-7, 12858, 4206}, {1e-5, 1e-8, 11554, 3340}};

static int run_path(bool quick, spline_kind kind)
{
    nd_ctx *ctx = nd_ctx_create(0);
    ncde_problem P;
    if (!ctx || ncde_problem_init(ctx, &P, kind, 1) != 0) return 1;
    const int norms[3] = {NCDE_DEFAULT, NCDE_DEFAULT_NO_T, NCDE_SEMINORM};
    const char *names[3] = {"default", "default_no_t", "seminorm"};
    ncde_solve_cfg train = ncde_norm_cfg(NCDE_SEMINORM, ND_DOPRI5, 1e-3, 1e-6);
    int iters = kind == SPLINE_LINEAR || quick ? 0 : 25,
        n_tol = quick || kind == SPLINE_LINEAR ? 1 : 3;
    sn_result sum[3][3] = {{{0}}};
    int n_cp[3] = {0}, status = 0;
    for (int it = 0; it <= iters && !status; it++) {
        if (it % 5 == 0) {
            for (int k = 0; k < n_tol && !status; k++) {
                if (k == 2 && it != 0 && it != 25) continue;
                ncde_measure out[NCDE_N_NORMS];
                if (ncde_measure_norms(ctx, P.m, &P.Xtr, P.train.labels, ND_DOPRI5, c_tols[k].rtol,
                                       c_tols[k].atol, out) != ND_OK) {
                    fprintf(stderr, "seminorm C: %s\n", nd_ctx_errmsg(ctx));
                    status = 1;
                    break;
                }
                n_cp[k]++;
                for (int c = 0; c < 3; c++) {
                    sn_result *s = &sum[k][c];
                    const ncde_measure *q = &out[norms[c]];
                    s->nfe_forward += q->nfe_forward, s->nfe_backward += q->nfe_backward;
                    s->accepted_backward += q->accepted_backward;
                    sn_add_bound(s, &q->limit_backward);
                    s->rejected_backward += q->rejected_backward;
                    s->ms_backward += q->ms_backward;
                    s->max_rel_grad_diff = fmax(s->max_rel_grad_diff, q->max_rel_grad_diff);
                }
            }
        }
        if (it == iters || status) break;
        double loss, acc;
        nd_ode_stats st;
        if (ncde_train_step(ctx, &P, &train, &loss, &acc, &st) != ND_OK) {
            fprintf(stderr, "seminorm C: training: %s\n", nd_ctx_errmsg(ctx));
            status = 1;
        }
    }
    for (int k = 0; k < n_tol && !status; k++)
        for (int c = 0; c < 3; c++) {
            sn_result r = sum[k][c];
            r.workload = kind == SPLINE_LINEAR ? "C-linear" : "C", r.method = "dopri5";
            r.norm = names[c], r.rtol = c_tols[k].rtol, r.atol = c_tols[k].atol;
            r.ms_backward /= n_cp[k];
            r.rel_grad_diff_norm = NAN; /* ncde_measure_norms reports the largest entry only */
            r.torchdiffeq_nfe_backward = kind == SPLINE_LINEAR ? 700
                                         : c == 0              ? c_tols[k].td_default
                                         : c == 2              ? c_tols[k].td_seminorm
                                                               : -1;
            snprintf(r.note, sizeof r.note, "totals over %d checkpoints", n_cp[k]);
            sn_report(&r);
        }
    ncde_problem_free(&P);
    nd_ctx_destroy(ctx);
    return status;
}

int sn_workload_c(bool quick)
{
    return run_path(quick, SPLINE_CUBIC) || run_path(quick, SPLINE_LINEAR);
}

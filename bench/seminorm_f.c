/* SPDX-License-Identifier: MIT
 * bench/seminorm_f.c: workload F, the latent ODE of examples/latent_ode.c (examples/models/
 * latent.c) on the toy sinusoids, extrapolation: an ODE-RNN encoder run backwards over the union
 * of a batch's observation times (49 short intervals, each its own solve and adjoint, a GRU jump
 * at each time) and a dopri5 decoder over the 100 output times. "F" gives the encoder dopri5, so
 * both adjoints adapt their steps; "F-rk4" keeps the program's default encoder (one RK4 step per
 * interval, the same for every norm), so only the decoder's adjoint can change. Trained with the
 * seminorm (Adam 1e-2, batches of 50 of 150 series, the program's KL weight 1); at steps 0, 15
 * and 30 the same 2 test batches, the same z0 noise, under each norm at each tolerance: totals
 * over the checkpoints, the encoder's and decoder's backward NFE in the note. t needs no
 * gradient, so the default norm integrates no a_t ("default" = "default without a_t").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "latent.h"
#include "seminorm_workloads.h"

enum { F_TRAIN = 150, F_BATCH = 50, F_MEASURE_BATCHES = 2 };
enum { F_SERIES = F_TRAIN + F_MEASURE_BATCHES * F_BATCH }; /* the measured batches: held out */

typedef struct {
    series_data data;
    latent_model *m;
    nd_param_list params;
    nd_tensor **tensors;
    size_t n_grad;
} f_problem;

/* every solve of the model at tol with the adjoint's norm */
static void set_solvers(f_problem *P, nd_ctx *ctx, sn_tol tol, nd_norm_kind norm)
{
    nd_ode_options *enc = &nd_odernn_options_of(ctx, P->m->encoder)->ode, *dec = &P->m->dec_ode;
    enc->solver.rtol = dec->solver.rtol = tol.rtol, enc->solver.atol = dec->solver.atol = tol.atol;
    enc->adjoint.norm = dec->adjoint.norm = norm;
}

static bool batch_of(nd_ctx *ctx, const f_problem *P, int first, int B, latent_batch *b)
{
    int idx[F_BATCH];
    if (B > F_BATCH || first < 0 || first + B > P->data.n) {
        nd_fail(ctx, ND_ERR_ARG, "seminorm F: series [%d, %d) of %d", first, first + B, P->data.n);
        return false;
    }
    for (int k = 0; k < B; k++) idx[k] = first + k;
    return latent_make_batch(ctx, &P->data, idx, B, TASK_EXTRAP, b);
}

/* one norm over the measured batches: counts into r, gradients (summed) into g */
static int measure_norm(nd_ctx *ctx, f_problem *P, int B, sn_tol tol, nd_norm_kind norm,
                        sn_result *r, long *enc_b, long *dec_b, double *g)
{
    set_solvers(P, ctx, tol, norm);
    nd_zero_grad(P->tensors, P->params.n);
    for (int rep = 0; rep < F_MEASURE_BATCHES; rep++) {
        latent_batch b;
        nd_rng rng = nd_rng_seed(1000 + (uint64_t)rep); /* the same z0 noise for every norm */
        nd_tensor *pred, *loss = batch_of(ctx, P, F_TRAIN + rep * B, B, &b)
                                     ? latent_loss(ctx, P->m, &b, 1.0, &rng, &pred)
                                     : NULL;
        double t0 = sn_now();
        nd_ode_stats enc;
        if (!loss || nd_backward(ctx, loss, 0) != ND_OK ||
            nd_odernn_stats(ctx, P->m->encoder, &enc, NULL) != ND_OK)
            return fprintf(stderr, "seminorm F: %s\n", nd_ctx_errmsg(ctx)), 1;
        r->ms_backward += 1e3 * (sn_now() - t0);
        const nd_ode_stats *dec = P->m->dec_last;
        r->nfe_forward += enc.forward.nfe + dec->forward.nfe;
        r->nfe_backward += enc.backward.nfe + dec->backward.nfe;
        r->accepted_backward += enc.backward.accepted + dec->backward.accepted;
        r->rejected_backward += enc.backward.rejected + dec->backward.rejected;
        *enc_b += enc.backward.nfe, *dec_b += dec->backward.nfe;
        nd_ctx_reset(ctx);
    }
    size_t q = 0;
    for (int p = 0; p < P->params.n; p++)
        for (size_t e = 0; e < P->tensors[p]->size; e++) g[q++] = P->tensors[p]->grad[e];
    return 0;
}

/* one training step with the seminorm at the first tolerance, on series [first, first + B) */
static int train_step(nd_ctx *ctx, f_problem *P, nd_optimizer *opt, int step, int B)
{
    set_solvers(P, ctx, sn_tols[0], ND_NORM_SEMINORM);
    latent_batch b;
    nd_rng rng = nd_rng_seed(5000 + (uint64_t)step);
    int first = (step * B) % (F_TRAIN - B + 1);
    nd_tensor *pred, *loss = batch_of(ctx, P, first, B, &b)
                                 ? latent_loss(ctx, P->m, &b, 1.0, &rng, &pred)
                                 : NULL;
    nd_optimizer_zero_grad(opt);
    if (!loss || nd_backward(ctx, loss, 0) != ND_OK || nd_optimizer_step(ctx, opt) != ND_OK)
        return fprintf(stderr, "seminorm F: training: %s\n", nd_ctx_errmsg(ctx)), 1;
    nd_ctx_reset(ctx);
    return 0;
}

static int run_f(bool quick, bool rk4_encoder)
{
    const char *name = rk4_encoder ? "F-rk4" : "F";
    int B = quick ? 16 : F_BATCH, last = quick ? 0 : 30,
        n_tol = quick || rk4_encoder ? 1 : SN_N_TOLS;
    nd_ctx *ctx = nd_ctx_create(0);
    f_problem P = {0};
    nd_rng rng = nd_rng_seed(0x5eed);
    nd_ode_options enc = ND_ODE_DEFAULT, dec = ND_ODE_DEFAULT;
    if (rk4_encoder) enc.solver.method = ND_RK4;
    if (!ctx || toy_generate(&P.data, F_SERIES, 0) != 0) return 1;
    P.m = latent_create(ctx, 1, 6, 20, 50, &enc, &dec, &rng);
    if (!P.m || nd_module_params(ctx, &P.m->base, &P.params) != ND_OK)
        return fprintf(stderr, "seminorm F: %s\n", nd_ctx_errmsg(ctx)), 1;
    P.tensors = malloc((size_t)P.params.n * sizeof *P.tensors);
    for (int p = 0; P.tensors && p < P.params.n; p++)
        P.tensors[p] = P.params.items[p].tensor, P.n_grad += P.tensors[p]->size;
    double *g = P.tensors ? malloc(2 * P.n_grad * sizeof *g) : NULL;
    nd_adam_options ao = ND_ADAM_DEFAULT;
    ao.lr = 1e-2;
    nd_optimizer *opt = nd_adam_create(ctx, P.params.items, P.params.n, &ao);
    sn_result sum[SN_N_TOLS][2] = {{{0}}};
    long enc_b[SN_N_TOLS][2] = {{0}}, dec_b[SN_N_TOLS][2] = {{0}};
    int status = g && opt ? 0 : 1, n_cp = 0;
    for (int step = 0; step <= last && !status; step++) {
        if (step % 15 == 0) {
            n_cp++;
            for (int k = 0; k < n_tol && !status; k++)
                for (int c = 0; c < 2 && !status; c++) {
                    status =
                        measure_norm(ctx, &P, B, sn_tols[k], c ? ND_NORM_SEMINORM : ND_NORM_RMS,
                                     &sum[k][c], &enc_b[k][c], &dec_b[k][c], g + c * P.n_grad);
                    if (c == 1) { /* against the default's gradient at this checkpoint */
                        sum[k][1].max_rel_grad_diff =
                            fmax(sum[k][1].max_rel_grad_diff,
                                 sn_max_rel_diff(g + P.n_grad, g, P.n_grad));
                        sum[k][1].rel_grad_diff_norm =
                            fmax(sum[k][1].rel_grad_diff_norm,
                                 sn_rel_diff_norm(g + P.n_grad, g, P.n_grad));
                    }
                }
        }
        if (step < last && !status) status = train_step(ctx, &P, opt, step, B);
    }
    for (int k = 0; k < n_tol && !status; k++)
        for (int c = 0; c < 2; c++) {
            sn_result r = sum[k][c];
            r.workload = name, r.method = "dopri5", r.norm = c ? "seminorm" : "default";
            r.rtol = sn_tols[k].rtol, r.atol = sn_tols[k].atol;
            r.ms_backward /= n_cp * F_MEASURE_BATCHES;
            r.torchdiffeq_nfe_backward = -1;
            snprintf(r.note, sizeof r.note, "encoder %ld + decoder %ld; totals over %d checkpoints",
                     enc_b[k][c], dec_b[k][c], n_cp);
            sn_report(&r);
        }
    free(g), free(P.tensors);
    nd_optimizer_destroy(opt);
    nd_param_list_destroy(&P.params);
    if (P.m) nd_module_destroy(&P.m->base);
    series_destroy(&P.data);
    nd_ctx_destroy(ctx);
    return status;
}

int sn_workload_f(bool quick)
{
    return run_f(quick, false) || run_f(quick, true);
}

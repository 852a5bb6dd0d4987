/* SPDX-License-Identifier: MIT
 * examples/models/latent.c: the toy periodic data, batches on the union of their times, the
 * latent ODE and the GRU-Δt baseline (see latent.h).
 */
#include "latent.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- data ------------------------------------------------------------------------------------ */

int series_alloc(series_data *d, int n, int P, int D)
{
    *d = (series_data){.n = n, .P = P, .D = D};
    d->t = calloc((size_t)P, sizeof *d->t);
    d->x = calloc((size_t)n * P * D, sizeof *d->x);
    d->obs = calloc((size_t)n * P, 1);
    if (!d->t || !d->x || !d->obs) return series_destroy(d), -1;
    return 0;
}

void series_destroy(series_data *d)
{
    free(d->t), free(d->x), free(d->obs);
    d->t = NULL, d->x = NULL, d->obs = NULL;
}

int series_subsample(series_data *d, double fraction, nd_rng *rng)
{
    int P = d->P, keep = (int)lround(fraction * P);
    keep = keep < 1 ? 1 : keep > P ? P : keep;
    int *perm = malloc((size_t)P * sizeof *perm);
    if (!perm) return -1;
    for (int s = 0; s < d->n; s++) { /* the first keep points of a shuffle */
        unsigned char *o = d->obs + (size_t)s * P;
        for (int i = 0; i < P; i++) perm[i] = i, o[i] = 0;
        for (int i = 0; i < keep; i++) {
            int j = i + (int)nd_rng_below(rng, (uint64_t)(P - i)), v = perm[j];
            perm[j] = perm[i], perm[i] = v;
            o[v] = 1;
        }
    }
    free(perm);
    return 0;
}

int toy_generate(series_data *d, int n, uint64_t seed)
{
    if (series_alloc(d, n, TOY_POINTS, 1) != 0) return -1;
    d->noise = TOY_NOISE;
    nd_rng rng = nd_rng_seed(seed);
    for (int i = 0; i < TOY_POINTS; i++) d->t[i] = TOY_T_END * i / (TOY_POINTS - 1);
    for (int s = 0; s < n; s++) {
        double a = 0.5 + nd_rng_uniform(&rng), f = 0.3 + 0.5 * nd_rng_uniform(&rng);
        double phi = 2 * M_PI * nd_rng_uniform(&rng);
        double *x = d->x + (size_t)s * TOY_POINTS;
        for (int i = 0; i < TOY_POINTS; i++)
            x[i] = a * sin(2 * M_PI * f * d->t[i] + phi) + TOY_NOISE * nd_rng_normal(&rng);
        int perm[TOY_POINTS]; /* a random half: the first 50 of a shuffle */
        unsigned char *o = d->obs + (size_t)s * TOY_POINTS;
        for (int i = 0; i < TOY_POINTS; i++) perm[i] = i, o[i] = 0;
        for (int i = 0; i < TOY_POINTS / 2; i++) {
            int j = i + (int)nd_rng_below(&rng, TOY_POINTS - i), v = perm[j];
            perm[j] = perm[i], perm[i] = v;
            o[v] = 1;
        }
    }
    return 0;
}

/* ---- batches --------------------------------------------------------------------------------- */

/* what the encoder (and the GRU-Δt) may see, what trains, what is scored */
static void point_roles(latent_task task, int i, int P, bool observed, bool *seen, bool *train,
                        bool *test)
{
    bool first_half = i < P / 2;
    if (task == TASK_INTERP) {
        *seen = *train = observed, *test = !observed;
    } else {
        *seen = observed && first_half;
        *train = observed, *test = !first_half;
    }
}

bool latent_make_batch(nd_ctx *ctx, const series_data *d, const int *idx, int B, latent_task task,
                       latent_batch *out)
{
    int P = d->P, D = d->D;
    latent_batch b = {.B = B, .D = D, .noise = d->noise};
    b.t = nd_tensor_new(ctx, 1, (int[]){P});
    b.x = nd_tensor_new(ctx, 3, (int[]){P, B, D});
    b.train_mask = nd_zeros(ctx, 3, (int[]){P, B, D});
    b.test_mask = nd_zeros(ctx, 3, (int[]){P, B, D});
    b.grid_mask = nd_zeros(ctx, 2, (int[]){P, B});
    bool *any = nd_ctx_alloc(ctx, (size_t)P * sizeof *any);
    if (!b.t || !b.x || !b.train_mask || !b.test_mask || !b.grid_mask || !any) return false;
    long seen_total = 0;
    for (int i = 0; i < P; i++) {
        b.t->data[i] = (nd_real)d->t[i];
        any[i] = i == 0; /* z0 lives at t_0 */
        for (int k = 0; k < B; k++) {
            size_t row = (size_t)idx[k] * P + i, dst = (size_t)i * B + k;
            bool seen, train, test;
            point_roles(task, i, P, d->obs[row], &seen, &train, &test);
            b.grid_mask->data[dst] = seen;
            for (int c = 0; c < D; c++) {
                b.x->data[dst * D + c] = (nd_real)d->x[row * D + c];
                b.train_mask->data[dst * D + c] = train, b.test_mask->data[dst * D + c] = test;
            }
            any[i] = any[i] || seen;
            seen_total += seen;
        }
    }
    int Te = 0;
    for (int i = 0; i < P; i++) Te += any[i];
    b.enc_t = nd_tensor_new(ctx, 1, (int[]){Te});
    b.enc_x = nd_tensor_new(ctx, 3, (int[]){Te, B, D});
    b.enc_mask = nd_tensor_new(ctx, 2, (int[]){Te, B});
    if (!b.enc_t || !b.enc_x || !b.enc_mask) return false;
    for (int i = 0, j = 0; i < P; i++) {
        if (!any[i]) continue;
        b.enc_t->data[j] = b.t->data[i];
        memcpy(b.enc_x->data + (size_t)j * B * D, b.x->data + (size_t)i * B * D,
               (size_t)B * D * sizeof(nd_real));
        memcpy(b.enc_mask->data + (size_t)j * B, b.grid_mask->data + (size_t)i * B,
               B * sizeof(nd_real));
        j++;
    }
    b.per_sample_obs = (double)seen_total / B;
    *out = b;
    return true;
}

void latent_sq_error(const latent_batch *b, const nd_tensor *pred, double *sum, double *count)
{
    for (size_t i = 0; i < pred->size; i++)
        if (b->test_mask->data[i] != 0) {
            double e = (double)pred->data[i] - (double)b->x->data[i];
            *sum += e * e, *count += 1;
        }
}

/* ---- the latent ODE -------------------------------------------------------------------------- */

static int latent_dynamics(nd_ctx *ctx, nd_tensor *t, nd_tensor *z, nd_tensor **dz, void *data)
{
    (void)t;
    *dz = nd_module_forward(ctx, ((latent_model *)data)->dynamics, z);
    return *dz ? 0 : -1;
}

static nd_tensor *never_forward(nd_ctx *ctx, nd_module *self, nd_tensor *x)
{
    (void)x;
    return nd_fail_null(ctx, ND_ERR_ARG, "%s: call its own forward function", self->kind);
}

static void latent_on_destroy(nd_module *self)
{
    free(((latent_model *)self)->dyn);
}

latent_model *latent_create(nd_ctx *ctx, int D, int L, int H, int U, const nd_ode_options *enc,
                            const nd_ode_options *dec, nd_rng *rng)
{
    latent_model *m = (latent_model *)nd_module_create(ctx, "LatentODE", never_forward, sizeof *m);
    if (!m) return NULL;
    m->base.on_destroy = latent_on_destroy;
    m->L = L, m->dec_ode = *dec;
    nd_odernn_options eo = {.ode = *enc, .reverse = true};
    m->encoder = nd_odernn_create(ctx, nd_mlp_create(ctx, 3, (int[]){H, U, H}, ND_ACT_TANH, rng),
                                  nd_gru_cell_create(ctx, 2 * D, H, true, rng), &eo);
    nd_module_add_child(ctx, &m->base, "encoder", m->encoder);
    m->to_z0 = nd_mlp_create(ctx, 3, (int[]){H, U, 2 * L}, ND_ACT_TANH, rng);
    nd_module_add_child(ctx, &m->base, "to_z0", m->to_z0);
    m->dynamics = nd_mlp_create(ctx, 3, (int[]){L, U, L}, ND_ACT_TANH, rng);
    nd_module_add_child(ctx, &m->base, "dynamics", m->dynamics);
    m->decoder = nd_linear_create(ctx, L, D, true, rng);
    nd_module_add_child(ctx, &m->base, "decoder", m->decoder);
    nd_param_list dl = {0};
    if (nd_ctx_error(ctx) || nd_module_params(ctx, m->dynamics, &dl) != ND_OK ||
        !(m->dyn = malloc((size_t)dl.n * sizeof *m->dyn))) {
        nd_param_list_destroy(&dl);
        nd_module_destroy(&m->base);
        return NULL;
    }
    for (int i = 0; i < dl.n; i++) m->dyn[i] = dl.items[i].tensor;
    m->n_dyn = dl.n;
    nd_param_list_destroy(&dl);
    return m;
}

nd_tensor *latent_forward(nd_ctx *ctx, latent_model *m, const latent_batch *b, nd_rng *rng,
                          nd_tensor **mu, nd_tensor **logvar)
{
    int B = b->B, L = m->L;
    m->dec_last = NULL;
    nd_tensor *hs = nd_odernn_run(ctx, m->encoder, b->enc_x, b->enc_mask, b->enc_t, NULL);
    if (!hs) return NULL;
    int H = hs->shape[2];
    nd_tensor *h0 = nd_reshape(ctx, nd_slice(ctx, hs, 0, 0, 1), 2, (int[]){B, H}); /* at t_0 */
    nd_tensor *q = nd_module_forward(ctx, m->to_z0, h0);                           /* (B, 2L) */
    *mu = nd_slice(ctx, q, 1, 0, L), *logvar = nd_slice(ctx, q, 1, L, L);
    nd_tensor *z0 = *mu;
    if (rng) {
        nd_tensor *eps = nd_tensor_new(ctx, 2, (int[]){B, L});
        if (!eps) return NULL;
        nd_fill_normal(eps, rng, 0, 1);
        z0 = nd_add(ctx, *mu, nd_mul(ctx, nd_exp(ctx, nd_mul_scalar(ctx, *logvar, 0.5)), eps));
    }
    if (!z0) return NULL;
    nd_tensor *zs = nd_odeint(ctx, latent_dynamics, m, z0, b->t, m->dyn, m->n_dyn, &m->dec_ode);
    m->dec_last = nd_odeint_stats(zs);
    return nd_module_forward(ctx, m->decoder, zs); /* (P, B, D) */
}

nd_tensor *latent_loss(nd_ctx *ctx, latent_model *m, const latent_batch *b, double k, nd_rng *rng,
                       nd_tensor **pred)
{
    nd_tensor *mu = NULL, *logvar = NULL;
    *pred = latent_forward(ctx, m, b, rng, &mu, &logvar);
    nd_tensor *ll =
        nd_gaussian_log_likelihood(ctx, *pred, b->x, b->train_mask, b->noise, ND_REDUCE_SUM);
    nd_tensor *kl = nd_kl_std_normal(ctx, mu, logvar, ND_REDUCE_SUM);
    double n = 0;
    for (size_t i = 0; i < b->train_mask->size; i++) n += b->train_mask->data[i];
    nd_tensor *elbo = nd_sub(ctx, ll, nd_mul_scalar(ctx, kl, (nd_real)k));
    return nd_mul_scalar(ctx, elbo, (nd_real)(-1.0 / (n > 0 ? n : 1)));
}

/* ---- the GRU-Δt baseline --------------------------------------------------------------------- */

grudt_model *grudt_create(nd_ctx *ctx, int D, int H, nd_rng *rng)
{
    grudt_model *m = (grudt_model *)nd_module_create(ctx, "GRUDt", never_forward, sizeof *m);
    if (!m) return NULL;
    m->D = D, m->H = H;
    m->cell = nd_gru_cell_create(ctx, 2 * D + 1, H, true, rng);
    nd_module_add_child(ctx, &m->base, "cell", m->cell);
    m->out = nd_linear_create(ctx, H, D, true, rng);
    nd_module_add_child(ctx, &m->base, "out", m->out);
    if (nd_ctx_error(ctx)) return nd_module_destroy(&m->base), NULL;
    return m;
}

nd_tensor *grudt_forward(nd_ctx *ctx, grudt_model *m, const latent_batch *b)
{
    int P = b->t->shape[0], B = b->B, D = m->D, W = 2 * D + 1;
    nd_tensor *h = nd_zeros(ctx, 2, (int[]){B, m->H});
    nd_tensor **preds = nd_ctx_alloc(ctx, (size_t)P * sizeof *preds);
    if (!h || !preds) return NULL;
    for (int i = 0; i < P && h; i++) {
        preds[i] = nd_reshape(ctx, nd_module_forward(ctx, m->out, h), 3, (int[]){1, B, D});
        if (i == P - 1) break;
        nd_tensor *in = nd_tensor_new(ctx, 2, (int[]){B, W}); /* (x m, m, gap) constant */
        if (!in) return NULL;
        double gap = b->t->data[i + 1] - b->t->data[i];
        for (int k = 0; k < B; k++) {
            nd_real mk = b->grid_mask->data[(size_t)i * B + k];
            for (int c = 0; c < D; c++) {
                in->data[W * k + c] = mk * b->x->data[((size_t)i * B + k) * D + c];
                in->data[W * k + D + c] = mk;
            }
            in->data[W * k + 2 * D] = (nd_real)gap;
        }
        h = nd_gru_cell_step(ctx, m->cell, in, h);
    }
    return h ? nd_concat(ctx, preds, P, 0) : NULL;
}

nd_tensor *grudt_loss(nd_ctx *ctx, grudt_model *m, const latent_batch *b, nd_tensor **pred)
{
    *pred = grudt_forward(ctx, m, b);
    return nd_mul_scalar(
        ctx, nd_gaussian_log_likelihood(ctx, *pred, b->x, b->train_mask, b->noise, ND_REDUCE_MEAN),
        -1);
}

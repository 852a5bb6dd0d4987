/* SPDX-License-Identifier: MIT
 * examples/models/latent.h: the latent ODE (Rubanova, Chen and Duvenaud, NeurIPS 2019) and its
 * GRU-Δt baseline on the toy periodic data, as examples/latent_ode.c trains them: the seeded
 * data, batches on the union of their times, both models and their losses. Not part of the
 * library (the ODE-RNN module it builds on is: nn/odeblock.h).
 *
 *   data    toy: x(t) = a sin(2 pi f t + phi) + N(0, 0.01^2), a ~ U(0.5, 1.5),
 *           f ~ U(0.3, 0.8), phi ~ U(0, 2 pi), 100 times on [0, 5] (D = 1); hopper:
 *           examples/models/hopper_data.h (D = 14); each series observes a random 50%
 *   encoder ODE-RNN (GRUCell(2 D, H), dh/dt = MLP(H, U, H)) run backwards over the observed
 *           times of the batch, h(t_0) -> MLP(H, U, 2 L) -> (mu, logvar) of q(z0 | x)
 *   decoder z0 = mu + exp(logvar / 2) eps; dz/dt = MLP(L, U, L) solved at the P times;
 *           x_hat = Linear(L, D)(z(t))
 *   loss    -(sum of log N(x; x_hat, s^2) over the training points - k KL(q || N(0, I))) /
 *           (number of training points), k annealed from 0 to 1 (examples/latent_ode.c)
 *   GRU-Δt  h_i = GRU((x_i m_i, m_i, t_{i+1} - t_i), h_{i-1}) at every grid time,
 *           x_hat_{i+1} = Linear(H, D)(h_i): it sees the gap to the time it predicts
 */
#ifndef EXAMPLES_MODELS_LATENT_H
#define EXAMPLES_MODELS_LATENT_H

#include "nodal.h"

#define TOY_POINTS 100
#define TOY_T_END 5.0
#define TOY_NOISE 0.01 /* the data's noise and the likelihood's fixed standard deviation */

/* n series of P points in D channels on one time grid, each observing a subset of the points
 * (every channel of an observed point). toy_generate and hopper_load (hopper_data.h) fill it. */
typedef struct {
    int n, P, D;
    double *t;          /* (P,) the common grid, increasing */
    double *x;          /* (n, P, D) values */
    unsigned char *obs; /* (n, P) 1 where the series observes the point */
    double noise;       /* the likelihood's fixed standard deviation */
} series_data;

/* n series from seed; 0 or -1 (out of memory). series_destroy frees either kind. */
int toy_generate(series_data *d, int n, uint64_t seed);
/* Allocates d's arrays for n series of P points in D channels (zeroed); 0 or -1. */
int series_alloc(series_data *d, int n, int P, int D);
void series_destroy(series_data *d);
/* Marks a random round(fraction P) of each series' points observed (at least one); 0 or -1. */
int series_subsample(series_data *d, double fraction, nd_rng *rng);

typedef enum { TASK_INTERP, TASK_EXTRAP } latent_task;

/* A batch of B series (arena tensors). The encoder sees enc_x / enc_mask on enc_t, the union of
 * the times at which a sample of the batch is observed (interp: its observed points; extrap: its
 * observed points in the first half), plus t_0 where z0 lives. The decoder predicts at t, the
 * P times; train_mask picks the likelihood's points (every observed point: the first half's are
 * the reconstruction, the second half's the forecast), test_mask the scored ones (interp:
 * unobserved; extrap: the whole second half). */
typedef struct {
    int B, D;
    nd_tensor *t, *x;                    /* (P,), (P, B, D) */
    nd_tensor *train_mask, *test_mask;   /* (P, B, D) constants */
    nd_tensor *grid_mask;                /* (P, B): what the GRU-Δt sees (= the encoder's) */
    nd_tensor *enc_t, *enc_x, *enc_mask; /* (Te,), (Te, B, D), (Te, B) */
    double per_sample_obs;               /* mean observations per sample seen by the encoder */
    double noise;
} latent_batch;

/* The batch of series idx[0 .. B-1], or false with the error in ctx. */
bool latent_make_batch(nd_ctx *ctx, const series_data *d, const int *idx, int B, latent_task task,
                       latent_batch *out);

typedef struct {
    nd_module base; /* "LatentODE": children encoder, to_z0, dynamics, decoder */
    nd_module *encoder, *to_z0, *dynamics, *decoder;
    int L;
    nd_tensor **dyn; /* dynamics' parameters, handed to the decoder's solve */
    int n_dyn;
    nd_ode_options dec_ode;
    const nd_ode_stats *dec_last; /* the decoder solve's statistics (arena) */
} latent_model;

/* enc: the encoder's solves (reverse is set here), dec: the decoder's. NULL with the error. */
latent_model *latent_create(nd_ctx *ctx, int D, int L, int H, int U, const nd_ode_options *enc,
                            const nd_ode_options *dec, nd_rng *rng);
/* The decoded means (P, B, D); *mu, *logvar (B, L). rng NULL: z0 = mu (evaluation). */
nd_tensor *latent_forward(nd_ctx *ctx, latent_model *m, const latent_batch *b, nd_rng *rng,
                          nd_tensor **mu, nd_tensor **logvar);
/* The negative ELBO per training point (above) with KL weight k; *pred gets the means. */
nd_tensor *latent_loss(nd_ctx *ctx, latent_model *m, const latent_batch *b, double k, nd_rng *rng,
                       nd_tensor **pred);

typedef struct {
    nd_module base; /* "GRUDt": children cell (GRUCell(2 D + 1, H)), out (Linear(H, D)) */
    nd_module *cell, *out;
    int D, H;
} grudt_model;

grudt_model *grudt_create(nd_ctx *ctx, int D, int H, nd_rng *rng);
nd_tensor *grudt_forward(nd_ctx *ctx, grudt_model *m, const latent_batch *b); /* (P, B, D) */
/* -(sum of log N(x; x_hat, s^2) over the training points) / their number */
nd_tensor *grudt_loss(nd_ctx *ctx, grudt_model *m, const latent_batch *b, nd_tensor **pred);

/* Sum and count of (pred - x)^2 over the test points of a batch. */
void latent_sq_error(const latent_batch *b, const nd_tensor *pred, double *sum, double *count);

#endif

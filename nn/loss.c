/* SPDX-License-Identifier: MIT
 * nn/loss.c: MSE, L1 and cross-entropy from logits (a stable log-softmax, then the negative
 * log-likelihood picked by a constant one-hot mask), with mean or sum reduction; and accuracy.
 * The variational terms of a VAE: a masked Gaussian log-likelihood with a fixed standard
 * deviation and the KL divergence of a diagonal Gaussian from the standard normal.
 */
#include <math.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* ND_CHECK1, ND_CHECK2: the NULL-input check */

static nd_tensor *reduce(nd_ctx *ctx, nd_tensor *x, nd_reduction r)
{
    return r == ND_REDUCE_SUM ? nd_sum(ctx, x) : nd_mean(ctx, x);
}

static bool check_pair(nd_ctx *ctx, const char *fn, const nd_tensor *pred, const nd_tensor *target,
                       nd_reduction r)
{
    char sp[64], st[64];
    if (r != ND_REDUCE_MEAN && r != ND_REDUCE_SUM) {
        nd_fail(ctx, ND_ERR_ARG, "%s: unknown reduction %d", fn, (int)r);
        return false;
    }
    if (!nd_same_shape(pred, target)) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: prediction %s and target %s differ in shape", fn,
                nd_shape_str(pred, sp), nd_shape_str(target, st));
        return false;
    }
    return true;
}

nd_tensor *nd_mse_loss(nd_ctx *ctx, nd_tensor *pred, nd_tensor *target, nd_reduction r)
{
    if (!ND_CHECK2(ctx, "nd_mse_loss", pred, target) ||
        !check_pair(ctx, "nd_mse_loss", pred, target, r))
        return NULL;
    return reduce(ctx, nd_pow_scalar(ctx, nd_sub(ctx, pred, target), 2), r);
}

nd_tensor *nd_l1_loss(nd_ctx *ctx, nd_tensor *pred, nd_tensor *target, nd_reduction r)
{
    if (!ND_CHECK2(ctx, "nd_l1_loss", pred, target) ||
        !check_pair(ctx, "nd_l1_loss", pred, target, r))
        return NULL;
    return reduce(ctx, nd_abs(ctx, nd_sub(ctx, pred, target)), r);
}

nd_tensor *nd_cross_entropy(nd_ctx *ctx, nd_tensor *logits, const int *labels, nd_reduction r)
{
    if (!ND_CHECK1(ctx, "nd_cross_entropy", logits)) return NULL;
    char sl[64];
    if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_cross_entropy: logits %s are not (N, K)",
                            nd_shape_str(logits, sl));
    if (!labels || (r != ND_REDUCE_MEAN && r != ND_REDUCE_SUM))
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_cross_entropy: labels NULL or reduction %d",
                            (int)r);
    int N = logits->shape[0], K = logits->shape[1];
    nd_tensor *onehot = nd_zeros(ctx, 2, logits->shape); /* (N, K) constant */
    if (!onehot) return NULL;
    for (int i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K)
            return nd_fail_null(ctx, ND_ERR_ARG,
                                "nd_cross_entropy: label %d of sample %d is outside [0, %d) for "
                                "logits %s",
                                labels[i], i, K, nd_shape_str(logits, sl));
        onehot->data[(size_t)i * K + labels[i]] = 1;
    }
    nd_tensor *nll = nd_neg(ctx, nd_mul(ctx, nd_log_softmax(ctx, logits, 1), onehot));
    nd_tensor *total = nd_sum(ctx, nll);
    return r == ND_REDUCE_SUM ? total : nd_mul_scalar(ctx, total, (nd_real)(1.0 / N));
}

nd_tensor *nd_gaussian_log_likelihood(nd_ctx *ctx, nd_tensor *mean, nd_tensor *target,
                                      const nd_tensor *mask, double std, nd_reduction r)
{
    const char *fn = "nd_gaussian_log_likelihood";
    if (!ND_CHECK2(ctx, fn, mean, target) || !check_pair(ctx, fn, mean, target, r)) return NULL;
    char sm[64], sp[64];
    if (mask && !nd_same_shape(mask, mean))
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: mask %s and mean %s differ in shape", fn,
                            nd_shape_str(mask, sm), nd_shape_str(mean, sp));
    if (!(std > 0) || !isfinite(std))
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: std %g is not finite and > 0", fn, std);
    double count = 0;
    nd_tensor *m = NULL; /* constant copy of the mask */
    if (mask) {
        if (!(m = nd_copy(ctx, mask))) return NULL;
        for (size_t i = 0; i < m->size; i++) count += m->data[i];
    } else {
        count = (double)mean->size;
    }
    if (r == ND_REDUCE_MEAN && !(count > 0))
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: the mask selects no entry of %s", fn,
                            nd_shape_str(mean, sp));
    /* -z^2 / 2 per entry, z = (target - mean) / std; the constant once per counted entry */
    nd_tensor *z = nd_mul_scalar(ctx, nd_sub(ctx, target, mean), (nd_real)(1.0 / std));
    nd_tensor *quad = nd_mul_scalar(ctx, nd_mul(ctx, z, z), (nd_real)-0.5);
    if (m) quad = nd_mul(ctx, quad, m);
    nd_tensor *ll =
        nd_add_scalar(ctx, nd_sum(ctx, quad), (nd_real)(-count * (log(std) + 0.5 * log(2 * M_PI))));
    return r == ND_REDUCE_MEAN ? nd_mul_scalar(ctx, ll, (nd_real)(1.0 / count)) : ll;
}

nd_tensor *nd_kl_std_normal(nd_ctx *ctx, nd_tensor *mu, nd_tensor *logvar, nd_reduction r)
{
    const char *fn = "nd_kl_std_normal";
    if (!ND_CHECK2(ctx, fn, mu, logvar) || !check_pair(ctx, fn, mu, logvar, r)) return NULL;
    char sm[64];
    if (mu->ndim != 2 || mu->shape[0] < 1)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: mu %s is not (B, L)", fn, nd_shape_str(mu, sm));
    nd_tensor *terms = nd_sub(ctx, nd_add(ctx, nd_exp(ctx, logvar), nd_mul(ctx, mu, mu)),
                              nd_add_scalar(ctx, logvar, 1)); /* (B, L) */
    nd_real scale = (nd_real)(r == ND_REDUCE_MEAN ? 0.5 / mu->shape[0] : 0.5);
    return nd_mul_scalar(ctx, nd_sum(ctx, terms), scale);
}

double nd_accuracy(const nd_tensor *logits, const int *labels)
{
    if (!logits || !labels || logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1)
        return -1;
    int N = logits->shape[0], K = logits->shape[1], right = 0;
    for (int i = 0; i < N; i++) {
        const nd_real *row = logits->data + (size_t)i * K; /* (K,) */
        int best = 0;
        for (int k = 1; k < K; k++)
            if (row[k] > row[best]) best = k;
        right += best == labels[i];
    }
    return (double)right / N;
}

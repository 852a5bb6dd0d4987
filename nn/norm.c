/* SPDX-License-Identifier: MIT
 * nn/norm.c: GroupNorm and BatchNorm (1d, 2d). GroupNorm's function is one autograd op
 * (nd_group_norm, autograd/ops_norm.c); BatchNorm is composed from autograd ops. Both normalise
 * with the biased variance; BatchNorm in training mode also moves its running statistics
 * (unbiased variance, momentum 0.1), as PyTorch does.
 */
#include <math.h>
#include <stdio.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* ND_CHECK1, ND_CHECK2: the NULL-input check */

/* (x - mean) / sqrt(var + eps); mean and var broadcast against x */
static nd_tensor *normalise(nd_ctx *ctx, nd_tensor *x, nd_tensor *mean, nd_tensor *var, double eps)
{
    nd_tensor *d = nd_sub(ctx, x, mean);
    return nd_div(ctx, d, nd_sqrt(ctx, nd_add_scalar(ctx, var, (nd_real)eps)));
}

/* y (N, C, R) * w + b with w, b (C,) broadcast as (C, 1); either may be NULL */
static nd_tensor *affine(nd_ctx *ctx, nd_tensor *y, nd_tensor *w, nd_tensor *b)
{
    int C = y ? y->shape[1] : 0;
    if (w) y = nd_mul(ctx, y, nd_reshape(ctx, w, 2, (int[]){C, 1}));
    if (b) y = nd_add(ctx, y, nd_reshape(ctx, b, 2, (int[]){C, 1}));
    return y;
}

static bool is_vec(const nd_tensor *t, int n)
{
    return !t || (t->ndim == 1 && t->shape[0] == n);
}

/* Sum over dims 0 and 2 of x (N, C, R), kept: (1, C, 1) */
static nd_tensor *channel_sum(nd_ctx *ctx, nd_tensor *x)
{
    return nd_sum_axis(ctx, nd_sum_axis(ctx, x, 2, true), 0, true);
}

nd_tensor *nd_batch_norm(nd_ctx *ctx, nd_tensor *x, nd_tensor *running_mean, nd_tensor *running_var,
                         nd_tensor *w, nd_tensor *b, bool training, double momentum, double eps)
{
    if (!ND_CHECK1(ctx, "nd_batch_norm", x)) return NULL;
    char sx[64], s1[64], s2[64];
    if (x->ndim < 2)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_batch_norm: input %s is not (N, C, ...)",
                            nd_shape_str(x, sx));
    int N = x->shape[0], C = x->shape[1];
    if (!is_vec(w, C) || !is_vec(b, C) || !is_vec(running_mean, C) || !is_vec(running_var, C))
        return nd_fail_null(ctx, ND_ERR_SHAPE,
                            "nd_batch_norm: weight, bias or running statistics (%s, %s) do not "
                            "match %d channels of %s",
                            nd_shape_str(running_mean, s1), nd_shape_str(running_var, s2), C,
                            nd_shape_str(x, sx));
    if (!training && (!running_mean || !running_var))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_batch_norm: evaluation mode needs running statistics");
    nd_tensor *x3 = nd_reshape(ctx, x, 3, (int[]){N, C, -1}); /* (N, C, R) */
    if (!x3) return NULL;
    size_t count = x->size / (size_t)C; /* values per channel */
    nd_tensor *y;
    if (training) {
        if (count < 2)
            return nd_fail_null(ctx, ND_ERR_SHAPE,
                                "nd_batch_norm: input %s has one value per "
                                "channel; training needs more",
                                nd_shape_str(x, sx));
        nd_tensor *mean = nd_mul_scalar(ctx, channel_sum(ctx, x3), (nd_real)(1.0 / count));
        nd_tensor *d2 = nd_pow_scalar(ctx, nd_sub(ctx, x3, mean), 2);
        nd_tensor *var = nd_mul_scalar(ctx, channel_sum(ctx, d2), (nd_real)(1.0 / count));
        y = normalise(ctx, x3, mean, var, eps);
        if (!y) return NULL;
        /* running = (1 - momentum) running + momentum batch, with the unbiased variance */
        double unbias = (double)count / (double)(count - 1);
        for (int c = 0; running_mean && running_var && c < C; c++) {
            running_mean->data[c] =
                (nd_real)((1 - momentum) * running_mean->data[c] + momentum * mean->data[c]);
            running_var->data[c] =
                (nd_real)((1 - momentum) * running_var->data[c] + momentum * var->data[c] * unbias);
        }
    } else {
        /* the running statistics are constants of the graph */
        nd_tensor *mean = nd_reshape(ctx, nd_detach(ctx, running_mean), 2, (int[]){C, 1});
        nd_tensor *var = nd_reshape(ctx, nd_detach(ctx, running_var), 2, (int[]){C, 1});
        y = normalise(ctx, x3, mean, var, eps);
    }
    return nd_reshape(ctx, affine(ctx, y, w, b), x->ndim, x->shape);
}

/* ---------------------------------------------------------------------------------------------
 * Modules
 */
typedef struct {
    nd_module base;
    int groups, channels;
    double eps, momentum;
    int min_dims, max_dims;   /* BatchNorm1d: 2..3, BatchNorm2d: 4..4, GroupNorm: 2..4 */
    const char *fn;           /* name in messages */
    nd_tensor *weight, *bias; /* (C,) */
    nd_tensor *running_mean;  /* (C,) BatchNorm only */
    nd_tensor *running_var;   /* (C,) BatchNorm only */
} norm_module;

static bool norm_input_ok(nd_ctx *ctx, const norm_module *n, const nd_tensor *x)
{
    if (x->ndim >= n->min_dims && x->ndim <= n->max_dims && x->shape[1] == n->channels) return true;
    static const char *const dims[] = {"", "", "(N, %d)", "(N, %d, L)", "(N, %d, H, W)"};
    char want[64], sx[64];
    snprintf(want, sizeof want, dims[n->max_dims], n->channels);
    nd_fail(ctx, ND_ERR_SHAPE, "%s: input %s is not %s%s", n->fn, nd_shape_str(x, sx), want,
            n->min_dims < n->max_dims ? " or fewer trailing dims" : "");
    return false;
}

static nd_tensor *group_norm_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    norm_module *n = (norm_module *)m;
    if (!norm_input_ok(ctx, n, x)) return NULL;
    return nd_group_norm(ctx, x, n->groups, n->weight, n->bias, n->eps);
}

static nd_tensor *batch_norm_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    norm_module *n = (norm_module *)m;
    if (!norm_input_ok(ctx, n, x)) return NULL;
    return nd_batch_norm(ctx, x, n->running_mean, n->running_var, n->weight, n->bias, m->training,
                         n->momentum, n->eps);
}

static nd_module *norm_create(nd_ctx *ctx, const char *kind, const char *fn, nd_forward_fn f,
                              int groups, int channels, double eps, double momentum, bool stats)
{
    if (channels <= 0 || groups <= 0 || channels % groups != 0 || !(eps >= 0) ||
        !(momentum >= 0 && momentum <= 1))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "%s_create: %d channels, %d groups, eps %g, momentum %g", fn, channels,
                            groups, eps, momentum);
    norm_module *n = (norm_module *)nd_module_create(ctx, kind, f, sizeof *n);
    if (!n) return NULL;
    n->groups = groups, n->channels = channels, n->eps = eps, n->momentum = momentum, n->fn = fn;
    n->weight = nd_module_new_param(ctx, &n->base, "weight", 1, &channels);
    n->bias = n->weight ? nd_module_new_param(ctx, &n->base, "bias", 1, &channels) : NULL;
    bool ok = n->bias != NULL;
    if (ok && stats) {
        n->running_mean = nd_tensor_create(ctx, 1, &channels, false);
        ok = nd_module_add_buffer(ctx, &n->base, "running_mean", n->running_mean) == ND_OK;
        n->running_var = ok ? nd_tensor_create(ctx, 1, &channels, false) : NULL;
        ok = ok && nd_module_add_buffer(ctx, &n->base, "running_var", n->running_var) == ND_OK;
    }
    if (!ok) {
        nd_module_destroy(&n->base);
        return NULL;
    }
    for (int c = 0; c < channels; c++) {
        n->weight->data[c] = 1;
        if (stats) n->running_var->data[c] = 1;
    }
    return &n->base;
}

nd_module *nd_group_norm_create(nd_ctx *ctx, int groups, int channels, double eps)
{
    nd_module *m = norm_create(ctx, "GroupNorm", "nd_group_norm", group_norm_forward, groups,
                               channels, eps, 0, false);
    if (m) ((norm_module *)m)->min_dims = 2, ((norm_module *)m)->max_dims = 4;
    return m;
}

nd_module *nd_batch_norm1d_create(nd_ctx *ctx, int channels, double eps, double momentum)
{
    nd_module *m = norm_create(ctx, "BatchNorm1d", "nd_batch_norm1d", batch_norm_forward, 1,
                               channels, eps, momentum, true);
    if (m) ((norm_module *)m)->min_dims = 2, ((norm_module *)m)->max_dims = 3;
    return m;
}

nd_module *nd_batch_norm2d_create(nd_ctx *ctx, int channels, double eps, double momentum)
{
    nd_module *m = norm_create(ctx, "BatchNorm2d", "nd_batch_norm2d", batch_norm_forward, 1,
                               channels, eps, momentum, true);
    if (m) ((norm_module *)m)->min_dims = 4, ((norm_module *)m)->max_dims = 4;
    return m;
}

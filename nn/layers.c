/* SPDX-License-Identifier: MIT
 * nn/layers.c: Linear, Conv2d, pooling, Flatten, Dropout and the activations, each as a function
 * composed from autograd ops (so its backward, and its backward's backward, come for free) and as
 * a module around that function. The affine map (nd_linear), convolution (nd_conv2d, its im2col
 * kept in cache) and max pooling (nd_max_pool2d) are autograd ops of their own; average pooling
 * reduces the im2col rows of a one-channel view.
 */
#include <math.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* ND_CHECK1, ND_CHECK2: the NULL-input check */

/* ---------------------------------------------------------------------------------------------
 * Linear: the module around nd_linear (an autograd op, autograd/ops_linear.c).
 */
typedef struct {
    nd_module base;
    nd_tensor *weight; /* (out, in) */
    nd_tensor *bias;   /* (out,) or NULL */
} linear_module;

static nd_tensor *linear_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    linear_module *l = (linear_module *)m;
    return nd_linear(ctx, x, l->weight, l->bias);
}

/* PyTorch's reset_parameters: kaiming_uniform(a = sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in));
 * the bias uses the same bound. */
static void default_init(nd_tensor *w, nd_tensor *b, nd_rng *rng)
{
    int fan_in, fan_out;
    nd_init_fans(w, &fan_in, &fan_out);
    nd_init_kaiming_uniform(w, rng, sqrt(5.0));
    if (b) {
        double bound = fan_in > 0 ? 1 / sqrt((double)fan_in) : 0;
        nd_init_uniform(b, rng, -bound, bound);
    }
}

nd_module *nd_linear_create(nd_ctx *ctx, int in_features, int out_features, bool bias, nd_rng *rng)
{
    if (in_features <= 0 || out_features <= 0 || !rng)
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_linear_create: in_features %d, out_features %d%s",
                            in_features, out_features, rng ? "" : ", rng is NULL");
    linear_module *l = (linear_module *)nd_module_create(ctx, "Linear", linear_forward, sizeof *l);
    if (!l) return NULL;
    l->weight = nd_module_new_param(ctx, &l->base, "weight", 2, (int[]){out_features, in_features});
    if (l->weight && bias) l->bias = nd_module_new_param(ctx, &l->base, "bias", 1, &out_features);
    if (!l->weight || (bias && !l->bias)) {
        nd_module_destroy(&l->base);
        return NULL;
    }
    default_init(l->weight, l->bias, rng);
    return &l->base;
}

/* ---------------------------------------------------------------------------------------------
 * Conv2d: the module around nd_conv2d (an autograd op, autograd/ops_conv2d.c).
 */
typedef struct {
    nd_module base;
    nd_tensor *weight; /* (out_ch, in_ch, k, k) */
    nd_tensor *bias;   /* (out_ch,) or NULL */
    int stride, pad;
} conv2d_module;

static nd_tensor *conv2d_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    conv2d_module *c = (conv2d_module *)m;
    return nd_conv2d(ctx, x, c->weight, c->bias, c->stride, c->pad);
}

nd_module *nd_conv2d_create(nd_ctx *ctx, int in_ch, int out_ch, int k, int stride, int pad,
                            bool bias, nd_rng *rng)
{
    if (in_ch <= 0 || out_ch <= 0 || k <= 0 || stride <= 0 || pad < 0 || !rng)
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_conv2d_create: in_ch %d, out_ch %d, kernel %d, stride %d, "
                            "padding %d%s",
                            in_ch, out_ch, k, stride, pad, rng ? "" : ", rng is NULL");
    conv2d_module *c = (conv2d_module *)nd_module_create(ctx, "Conv2d", conv2d_forward, sizeof *c);
    if (!c) return NULL;
    c->stride = stride, c->pad = pad;
    c->weight = nd_module_new_param(ctx, &c->base, "weight", 4, (int[]){out_ch, in_ch, k, k});
    if (c->weight && bias) c->bias = nd_module_new_param(ctx, &c->base, "bias", 1, &out_ch);
    if (!c->weight || (bias && !c->bias)) {
        nd_module_destroy(&c->base);
        return NULL;
    }
    default_init(c->weight, c->bias, rng);
    return &c->base;
}

/* ---------------------------------------------------------------------------------------------
 * Average pooling: view x (N, C, H, W) as (N*C, 1, H, W), so im2col gives one row of k*k values per
 * output element, and reduce each row.
 */
static nd_tensor *pool2d(nd_ctx *ctx, const char *fn, nd_tensor *x, int k, int stride)
{
    if (!ND_CHECK1(ctx, fn, x)) return NULL;
    char sx[64];
    if (x->ndim != 4)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: input %s is not (N, C, H, W)", fn,
                            nd_shape_str(x, sx));
    if (k < 1 || stride < 1 || x->shape[2] < k || x->shape[3] < k)
        return nd_fail_null(ctx, ND_ERR_SHAPE, "%s: kernel %d, stride %d do not fit input %s", fn,
                            k, stride, nd_shape_str(x, sx));
    int N = x->shape[0], C = x->shape[1];
    int OH = (x->shape[2] - k) / stride + 1, OW = (x->shape[3] - k) / stride + 1;
    nd_tensor *x1 = nd_reshape(ctx, x, 4, (int[]){N * C, 1, x->shape[2], x->shape[3]});
    nd_tensor *rows =
        nd_im2col(ctx, x1, (nd_window2d){k, k, stride, stride, 0, 0}); /* (N*C*L, k*k) */
    nd_tensor *y = nd_mean_axis(ctx, rows, 1, false);
    return nd_reshape(ctx, y, 4, (int[]){N, C, OH, OW});
}

nd_tensor *nd_avg_pool2d(nd_ctx *ctx, nd_tensor *x, int k, int stride)
{
    return pool2d(ctx, "nd_avg_pool2d", x, k, stride);
}

nd_tensor *nd_global_avg_pool2d(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_global_avg_pool2d", x)) return NULL;
    if (x->ndim != 4) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_global_avg_pool2d: input %s is not (N, C, H, W)",
                            nd_shape_str(x, sx));
    }
    int N = x->shape[0], C = x->shape[1];
    nd_tensor *y = nd_mean_axis(ctx, nd_reshape(ctx, x, 3, (int[]){N, C, -1}), 2, false);
    return nd_reshape(ctx, y, 4, (int[]){N, C, 1, 1});
}

typedef struct {
    nd_module base;
    int k, stride;
} pool_module;

static nd_tensor *max_pool_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    pool_module *p = (pool_module *)m;
    return nd_max_pool2d(ctx, x, p->k, p->stride);
}

static nd_tensor *avg_pool_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    pool_module *p = (pool_module *)m;
    return nd_avg_pool2d(ctx, x, p->k, p->stride);
}

static nd_module *pool_create(nd_ctx *ctx, const char *kind, nd_forward_fn f, int k, int stride)
{
    if (k < 1 || stride < 0)
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_%s_create: kernel %d, stride %d", kind, k, stride);
    pool_module *p = (pool_module *)nd_module_create(ctx, kind, f, sizeof *p);
    if (!p) return NULL;
    p->k = k, p->stride = stride ? stride : k; /* PyTorch: stride defaults to the kernel size */
    return &p->base;
}

nd_module *nd_max_pool2d_create(nd_ctx *ctx, int k, int stride)
{
    return pool_create(ctx, "MaxPool2d", max_pool_forward, k, stride);
}

nd_module *nd_avg_pool2d_create(nd_ctx *ctx, int k, int stride)
{
    return pool_create(ctx, "AvgPool2d", avg_pool_forward, k, stride);
}

static nd_tensor *global_pool_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    (void)m;
    return nd_global_avg_pool2d(ctx, x);
}

nd_module *nd_global_avg_pool2d_create(nd_ctx *ctx)
{
    return nd_module_create(ctx, "AdaptiveAvgPool2d", global_pool_forward, sizeof(nd_module));
}

/* ---------------------------------------------------------------------------------------------
 * Flatten, Dropout, activations
 */
nd_tensor *nd_flatten(nd_ctx *ctx, nd_tensor *x)
{
    if (!ND_CHECK1(ctx, "nd_flatten", x)) return NULL;
    if (x->ndim < 1) {
        char sx[64];
        return nd_fail_null(ctx, ND_ERR_SHAPE, "nd_flatten: input %s has no batch dim",
                            nd_shape_str(x, sx));
    }
    return nd_reshape(ctx, x, 2,
                      (int[]){x->shape[0], x->shape[0] ? (int)(x->size / x->shape[0]) : 0});
}

static nd_tensor *flatten_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    (void)m;
    return nd_flatten(ctx, x);
}

nd_module *nd_flatten_create(nd_ctx *ctx)
{
    return nd_module_create(ctx, "Flatten", flatten_forward, sizeof(nd_module));
}

nd_tensor *nd_dropout(nd_ctx *ctx, nd_tensor *x, double p, bool training, nd_rng *rng)
{
    if (!ND_CHECK1(ctx, "nd_dropout", x)) return NULL;
    if (!(p >= 0 && p <= 1) || (training && p > 0 && !rng))
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_dropout: p = %g is not in [0, 1]%s", p,
                            rng ? "" : " or rng is NULL");
    if (!training || p == 0) return x;
    nd_tensor *mask = nd_tensor_new(ctx, x->ndim, x->shape); /* constant: 0 or 1 / (1 - p) */
    if (!mask) return NULL;
    nd_real keep = p < 1 ? (nd_real)(1 / (1 - p)) : 0;
    for (size_t i = 0; i < mask->size; i++) mask->data[i] = nd_rng_uniform(rng) < p ? 0 : keep;
    return nd_mul(ctx, x, mask);
}

typedef struct {
    nd_module base;
    double p;
    nd_rng rng; /* the mask stream, advanced by every training forward */
} dropout_module;

static nd_tensor *dropout_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    dropout_module *d = (dropout_module *)m;
    return nd_dropout(ctx, x, d->p, m->training, &d->rng);
}

nd_module *nd_dropout_create(nd_ctx *ctx, double p, uint64_t seed)
{
    if (!(p >= 0 && p < 1))
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_dropout_create: p = %g is not in [0, 1)", p);
    dropout_module *d =
        (dropout_module *)nd_module_create(ctx, "Dropout", dropout_forward, sizeof *d);
    if (!d) return NULL;
    d->p = p;
    d->rng = nd_rng_seed(seed);
    return &d->base;
}

typedef struct {
    nd_module base;
    nd_activation act;
} activation_module;

static nd_tensor *activation_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    switch (((activation_module *)m)->act) {
    case ND_ACT_TANH:
        return nd_tanh(ctx, x);
    case ND_ACT_RELU:
        return nd_relu(ctx, x);
    case ND_ACT_SIGMOID:
        return nd_sigmoid(ctx, x);
    case ND_ACT_SOFTPLUS:
        return nd_softplus(ctx, x);
    case ND_ACT_NONE:
        break;
    }
    return x;
}

nd_module *nd_activation_create(nd_ctx *ctx, nd_activation act)
{
    static const char *const kinds[] = {[ND_ACT_NONE] = "Identity",
                                        [ND_ACT_TANH] = "Tanh",
                                        [ND_ACT_RELU] = "ReLU",
                                        [ND_ACT_SIGMOID] = "Sigmoid",
                                        [ND_ACT_SOFTPLUS] = "Softplus"};
    if ((int)act < 0 || act > ND_ACT_SOFTPLUS)
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_activation_create: unknown activation %d",
                            (int)act);
    activation_module *a =
        (activation_module *)nd_module_create(ctx, kinds[act], activation_forward, sizeof *a);
    if (a) a->act = act;
    return a ? &a->base : NULL;
}

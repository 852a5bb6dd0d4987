/* SPDX-License-Identifier: MIT
 * nn/init.c: parameter initialisation with torch.nn.init's formulas (fans, Kaiming / He, Xavier /
 * Glorot), drawn from the caller's seeded generator so a model is reproducible from its seed.
 */
#include <math.h>

#include "nn/nn.h"

void nd_init_fans(const nd_tensor *t, int *fan_in, int *fan_out)
{
    int receptive = 1;
    for (int i = 2; i < t->ndim; i++) receptive *= t->shape[i];
    *fan_in = t->ndim >= 2 ? t->shape[1] * receptive : t->ndim == 1 ? t->shape[0] : 1;
    *fan_out = t->ndim >= 1 ? t->shape[0] * receptive : 1;
}

void nd_init_uniform(nd_tensor *t, nd_rng *rng, double lo, double hi)
{
    nd_fill_uniform(t, rng, lo, hi);
}

void nd_init_normal(nd_tensor *t, nd_rng *rng, double mean, double std)
{
    nd_fill_normal(t, rng, mean, std);
}

/* torch.nn.init.calculate_gain('leaky_relu', a) */
static double leaky_relu_gain(double a)
{
    return sqrt(2.0 / (1 + a * a));
}

void nd_init_kaiming_uniform(nd_tensor *t, nd_rng *rng, double a)
{
    int fan_in, fan_out;
    nd_init_fans(t, &fan_in, &fan_out);
    double bound = fan_in > 0 ? leaky_relu_gain(a) * sqrt(3.0 / fan_in) : 0;
    nd_fill_uniform(t, rng, -bound, bound);
}

void nd_init_kaiming_normal(nd_tensor *t, nd_rng *rng, double a)
{
    int fan_in, fan_out;
    nd_init_fans(t, &fan_in, &fan_out);
    nd_fill_normal(t, rng, 0, fan_in > 0 ? leaky_relu_gain(a) / sqrt((double)fan_in) : 0);
}

void nd_init_xavier_uniform(nd_tensor *t, nd_rng *rng, double gain)
{
    int fan_in, fan_out;
    nd_init_fans(t, &fan_in, &fan_out);
    double bound = gain * sqrt(6.0 / (fan_in + fan_out));
    nd_fill_uniform(t, rng, -bound, bound);
}

void nd_init_xavier_normal(nd_tensor *t, nd_rng *rng, double gain)
{
    int fan_in, fan_out;
    nd_init_fans(t, &fan_in, &fan_out);
    nd_fill_normal(t, rng, 0, gain * sqrt(2.0 / (fan_in + fan_out)));
}

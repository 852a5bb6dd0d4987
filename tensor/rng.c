/* SPDX-License-Identifier: MIT
 * tensor/rng.c: xoshiro256** 1.0 (D. Blackman and S. Vigna, "Scrambled linear pseudorandom
 * number generators", ACM TOMS 2021), state seeded by splitmix64 as its authors recommend.
 * Normal variates by the Box-Muller transform, the second value of each pair kept for the next
 * call. */
#include <math.h>

#include "tensor/tensor.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

nd_rng nd_rng_seed(uint64_t seed)
{
    nd_rng r = {0};
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&seed);
    return r;
}

uint64_t nd_rng_next(nd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double nd_rng_uniform(nd_rng *r)
{
    return (double)(nd_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t nd_rng_below(nd_rng *r, uint64_t n)
{
    /* rejection of the top partial range keeps it unbiased */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = nd_rng_next(r);
    while (x >= limit);
    return x % n;
}

double nd_rng_normal(nd_rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1, u2 = nd_rng_uniform(r);
    do u1 = nd_rng_uniform(r);
    while (u1 <= 0.0);
    double radius = sqrt(-2.0 * log(u1)), angle = 2.0 * M_PI * u2;
    r->spare = radius * sin(angle);
    r->has_spare = true;
    return radius * cos(angle);
}

void nd_fill_uniform(nd_tensor *x, nd_rng *r, double lo, double hi)
{
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)(lo + (hi - lo) * nd_rng_uniform(r));
}

void nd_fill_normal(nd_tensor *x, nd_rng *r, double mean, double std)
{
    for (size_t i = 0; i < x->size; i++) x->data[i] = (nd_real)(mean + std * nd_rng_normal(r));
}

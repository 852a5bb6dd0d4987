/* SPDX-License-Identifier: MIT
 * examples/common/stats.h: the median of timing samples, which the benchmarks report (a shared
 * machine's load shows as outliers a median ignores). Not part of the library.
 */
#ifndef EXAMPLES_STATS_H
#define EXAMPLES_STATS_H

#include <stdlib.h>

static inline int stats_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v (n,), n >= 1; sorts v. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, stats_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif

/* SPDX-License-Identifier: MIT
 * examples/models/spline.c: the control path of a neural CDE (see spline.h): a natural cubic
 * spline through each series' points, its second derivatives from one tridiagonal solve for all
 * series at once (LAPACK's dgtsv from OpenBLAS), or the piecewise-linear interpolant.
 */
#include "spline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK from OpenBLAS, Fortran calling convention (Debian's libopenblas-dev ships no lapacke.h):
 * solves a tridiagonal system with nrhs right-hand sides in place. */
extern void dgtsv_(const int *n, const int *nrhs, double *dl, double *d, double *du, double *b,
                   const int *ldb, int *info);

void spline_free(spline_path *p)
{
    free(p->knots), free(p->x0), free(p->b), free(p->c2), free(p->d3);
    p->knots = NULL, p->x0 = p->b = p->c2 = p->d3 = NULL;
}

int spline_interval(const spline_path *p, double t)
{
    int lo = 0, hi = p->n_points - 2;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p->knots[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* obs (n, n_points, n_ch) at series i, knot j, channel c */
#define OBS(i, j, c) obs[((size_t)(i)*p->n_points + (j)) * p->n_ch + (c)]

/* p's arrays for its kind (knots copied from t); false when out of memory */
static bool spline_alloc(spline_path *p, const double *t)
{
    size_t rhs = (size_t)p->n * p->n_ch, per = (size_t)(p->n_points - 1) * rhs;
    p->knots = malloc((size_t)p->n_points * sizeof *p->knots);
    if (p->knots) memcpy(p->knots, t, (size_t)p->n_points * sizeof *p->knots);
    p->x0 = malloc(rhs * sizeof *p->x0);
    p->b = malloc(per * sizeof *p->b);
    if (p->kind == SPLINE_CUBIC) {
        p->c2 = malloc(per * sizeof *p->c2);
        p->d3 = malloc(per * sizeof *p->d3);
    }
    return p->knots && p->x0 && p->b && (p->kind != SPLINE_CUBIC || (p->c2 && p->d3));
}

/* The natural spline's second derivatives M (rhs, n_points), rhs = n * n_ch: M_0 = M_{N-1} = 0
 * and, for j = 1 .. N-2, h_{j-1} M_{j-1} + 2 (h_{j-1} + h_j) M_j + h_j M_{j+1} = 6 (s_j - s_{j-1}),
 * s_j the slope of interval j. Unknowns M_1 .. M_{N-2}; column r = i * n_ch + c of the right-hand
 * side (column-major, ldb = N - 2) is series i, channel c. 0, or -1 with a message. */
static int second_derivatives(const spline_path *p, const double *obs, double *M)
{
    const int n_points = p->n_points, rhs = p->n * p->n_ch;
    int m = n_points - 2, nrhs = rhs, ldb = m, info = 0;
    double *dl = malloc((size_t)n_points * 3 * sizeof *dl), *dg = dl + n_points,
           *du = dg + n_points;
    if (!dl) {
        fprintf(stderr, "spline_build: out of memory for %d series of %d points\n", p->n, n_points);
        return -1;
    }
    double *B = M + 0; // reuse: rows 1 .. N-2 of each column, written contiguously first
    for (int j = 1; j <= m; j++) {
        double h0 = p->knots[j] - p->knots[j - 1], h1 = p->knots[j + 1] - p->knots[j];
        dg[j - 1] = 2 * (h0 + h1);
        if (j < m) du[j - 1] = h1, dl[j - 1] = h1; // h_j couples j and j+1 both ways
    }
    for (int r = 0; r < rhs; r++) {
        int i = r / p->n_ch, c = r % p->n_ch;
        for (int j = 1; j <= m; j++) {
            double h0 = p->knots[j] - p->knots[j - 1], h1 = p->knots[j + 1] - p->knots[j];
            double s0 = (OBS(i, j, c) - OBS(i, j - 1, c)) / h0;
            double s1 = (OBS(i, j + 1, c) - OBS(i, j, c)) / h1;
            B[(size_t)r * ldb + (j - 1)] = 6 * (s1 - s0);
        }
    }
    dgtsv_(&m, &nrhs, dl, dg, du, B, &ldb, &info);
    free(dl);
    if (info != 0) {
        fprintf(stderr, "spline_build: dgtsv failed (info %d)\n", info);
        return -1;
    }
    /* spread to (rhs, n_points) with the zero ends, from the back so nothing is overwritten */
    for (int r = rhs - 1; r >= 0; r--) {
        for (int j = m; j >= 1; j--) M[(size_t)r * n_points + j] = B[(size_t)r * ldb + j - 1];
        M[(size_t)r * n_points] = 0, M[(size_t)r * n_points + n_points - 1] = 0;
    }
    return 0;
}

/* x0 and the per-interval coefficients b (and c2, d3 for the cubic, from M (rhs, n_points)) */
static void coefficients(spline_path *p, const double *obs, const double *M)
{
    const int n_points = p->n_points, rhs = p->n * p->n_ch;
    for (int i = 0; i < p->n; i++)
        for (int c = 0; c < p->n_ch; c++) p->x0[i * p->n_ch + c] = (nd_real)OBS(i, 0, c);
    for (int k = 0; k < n_points - 1; k++) {
        double h = p->knots[k + 1] - p->knots[k];
        for (int r = 0; r < rhs; r++) {
            int i = r / p->n_ch, c = r % p->n_ch;
            double slope = (OBS(i, k + 1, c) - OBS(i, k, c)) / h;
            size_t at = (size_t)k * rhs + r;
            if (p->kind == SPLINE_LINEAR) {
                p->b[at] = (nd_real)slope;
                continue;
            }
            double Mk = M[(size_t)r * n_points + k], Mk1 = M[(size_t)r * n_points + k + 1];
            p->b[at] = (nd_real)(slope - h * (2 * Mk + Mk1) / 6);
            p->c2[at] = (nd_real)Mk;
            p->d3[at] = (nd_real)((Mk1 - Mk) / (2 * h));
        }
    }
}
#undef OBS

int spline_build(spline_path *p, spline_kind kind, int n, int n_points, int n_ch, const double *t,
                 const double *obs)
{
    *p = (spline_path){.kind = kind, .n = n, .n_points = n_points, .n_ch = n_ch};
    double *M = calloc((size_t)n_points * n * n_ch, sizeof *M); // (rhs, n_points) M'' values
    if (!spline_alloc(p, t) || !M) {
        free(M);
        fprintf(stderr, "spline_build: out of memory for %d series of %d points\n", n, n_points);
        return -1;
    }
    int rc = kind == SPLINE_CUBIC ? second_derivatives(p, obs, M) : 0;
    if (rc == 0) coefficients(p, obs, M);
    free(M);
    return rc;
}

nd_tensor *spline_derivative(nd_ctx *ctx, const spline_path *p, nd_tensor *t)
{
    int k = spline_interval(p, (double)t->data[0]);
    int shape[2] = {p->n, p->n_ch};
    size_t at = (size_t)k * p->n * p->n_ch;
    nd_tensor *b = nd_tensor_from(ctx, 2, shape, p->b + at); // (n, n_ch)
    if (p->kind == SPLINE_LINEAR) return b;
    nd_tensor *c2 = nd_tensor_from(ctx, 2, shape, p->c2 + at);                  // (n, n_ch)
    nd_tensor *d3 = nd_tensor_from(ctx, 2, shape, p->d3 + at);                  // (n, n_ch)
    nd_tensor *u = nd_add_scalar(ctx, t, (nd_real)-p->knots[k]);                // () t - t_k
    return nd_add(ctx, b, nd_mul(ctx, nd_add(ctx, c2, nd_mul(ctx, d3, u)), u)); // (n, n_ch)
}

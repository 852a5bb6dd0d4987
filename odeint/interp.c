/* SPDX-License-Identifier: MIT
 * odeint/interp.c: one accepted step's interpolant (interp.h), fitted and evaluated on plain
 * buffers or as tensors. The weights are written once here and shared by both layers, so the
 * plain and the tensor forms give the same polynomial.
 */
#include "odeint/interp.h"

#include "autograd/autograd.h"

/* Each coefficient as weights on the points (f0, f1, y0, y1, ymid), the slopes' weights without
 * their factor h. Hermite (4 coefficients) ignores ymid. */
static const double hermite_w[4][5] = {
    {1, 1, 2, -2, 0}, {-2, -1, -3, 3, 0}, {1, 0, 0, 0, 0}, {0, 0, 1, 0, 0}};
static const double quartic_w[5][5] = {{-2, 2, -8, -8, 16},
                                       {5, -3, 18, 14, -32},
                                       {-4, 1, -11, -5, 16},
                                       {1, 0, 0, 0, 0},
                                       {0, 0, 1, 0, 0}};

static double weight(int n_coeff, int k, int p, double h)
{
    double w = n_coeff == 5 ? quartic_w[k][p] : hermite_w[k][p];
    return p < 2 ? w * h : w; /* f0 and f1 enter as h f */
}

double nd_interp_x(double t0, double t1, double t)
{
    return (t - t0) / (t1 - t0);
}

static void coeffs(int n_coeff, size_t n, double h, const nd_real *const pts[5], nd_real *c)
{
    for (int k = 0; k < n_coeff; k++) {
        double w[5];
        for (int p = 0; p < 5; p++) w[p] = weight(n_coeff, k, p, h);
        for (size_t i = 0; i < n; i++) {
            double acc = 0;
            for (int p = 0; p < 5; p++)
                if (w[p] != 0) acc += w[p] * pts[p][i];
            c[(size_t)k * n + i] = (nd_real)acc;
        }
    }
}

void nd_interp_hermite_coeffs(size_t n, double h, const nd_real *y0, const nd_real *f0,
                              const nd_real *y1, const nd_real *f1, nd_real *c)
{
    coeffs(4, n, h, (const nd_real *const[5]){f0, f1, y0, y1, y0}, c);
}

void nd_interp_quartic_coeffs(size_t n, double h, const nd_real *y0, const nd_real *f0,
                              const nd_real *y1, const nd_real *f1, const nd_real *ymid, nd_real *c)
{
    coeffs(5, n, h, (const nd_real *const[5]){f0, f1, y0, y1, ymid}, c);
}

void nd_interp_eval(const nd_real *c, int n_coeff, size_t n, double x, nd_real *out)
{
    for (size_t i = 0; i < n; i++) {
        double acc = c[i];
        for (int k = 1; k < n_coeff; k++) acc = acc * x + c[(size_t)k * n + i];
        out[i] = (nd_real)acc;
    }
}

void nd_interp_slope(const nd_real *c, int n_coeff, size_t n, double x, double h, nd_real *out)
{
    for (size_t i = 0; i < n; i++) {
        double acc = 0;
        for (int k = 0; k < n_coeff - 1; k++)
            acc = acc * x + (n_coeff - 1 - k) * c[(size_t)k * n + i];
        out[i] = (nd_real)(acc / h);
    }
}

/* ---- tensors ------------------------------------------------------------------------------ */

/* y0 + h sum_j c_mid[j] k_j over the tableau's stages */
static nd_tensor *midpoint(nd_ctx *ctx, const nd_tableau *tab, nd_tensor *y0, nd_tensor *const *k,
                           double h)
{
    nd_tensor *terms[ND_MAX_STAGES + 1] = {y0};
    nd_real w[ND_MAX_STAGES + 1] = {1};
    int m = 1;
    for (int j = 0; j <= tab->n_stages; j++)
        if (tab->c_mid[j] != 0) terms[m] = k[j], w[m++] = (nd_real)(tab->c_mid[j] * h);
    return nd_lincomb(ctx, terms, w, m);
}

bool nd_interp_fit(nd_ctx *ctx, const nd_tableau *tab, double t0, double t1, nd_tensor *y0,
                   nd_tensor *f0, nd_tensor *y1, nd_tensor *f1, nd_tensor *const *k, nd_interp *ip)
{
    double h = t1 - t0;
    bool quartic = tab && tab->c_mid && k;
    nd_tensor *pts[5] = {f0, f1, y0, y1, quartic ? midpoint(ctx, tab, y0, k, h) : y0};
    *ip = (nd_interp){.t0 = t0, .t1 = t1, .n_coeff = quartic ? 5 : 4};
    if (!pts[4]) return false;
    for (int c = 0; c < ip->n_coeff - 1; c++) {
        nd_tensor *terms[5];
        nd_real w[5];
        int m = 0;
        for (int p = 0; p < 5; p++) {
            double wp = weight(ip->n_coeff, c, p, h);
            if (wp != 0) terms[m] = pts[p], w[m++] = (nd_real)wp;
        }
        ip->c[c] = nd_lincomb(ctx, terms, w, m);
        if (!ip->c[c]) return false;
    }
    ip->c[ip->n_coeff - 1] = y0;
    return true;
}

nd_tensor *nd_interp_at(nd_ctx *ctx, const nd_interp *ip, double t)
{
    double x = nd_interp_x(ip->t0, ip->t1, t), p = 1;
    nd_real w[ND_INTERP_MAX_COEFF];
    for (int k = ip->n_coeff - 1; k >= 0; k--, p *= x) w[k] = (nd_real)p;
    return nd_lincomb(ctx, ip->c, w, ip->n_coeff);
}

/* Horner over the coefficient tensors' data (or the x-derivative's, over h) */
static void eval_tensors(const nd_interp *ip, double x, bool slope, nd_real *out)
{
    size_t n = ip->c[0]->size;
    for (size_t i = 0; i < n; i++) {
        double acc = 0;
        int m = slope ? ip->n_coeff - 1 : ip->n_coeff;
        for (int k = 0; k < m; k++)
            acc = acc * x + (slope ? ip->n_coeff - 1 - k : 1) * (double)ip->c[k]->data[i];
        out[i] = (nd_real)(slope ? acc / (ip->t1 - ip->t0) : acc);
    }
}

void nd_interp_at_buf(const nd_interp *ip, double t, nd_real *out)
{
    eval_tensors(ip, nd_interp_x(ip->t0, ip->t1, t), false, out);
}

void nd_interp_slope_buf(const nd_interp *ip, double t, nd_real *out)
{
    eval_tensors(ip, nd_interp_x(ip->t0, ip->t1, t), true, out);
}

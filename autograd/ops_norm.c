/* SPDX-License-Identifier: MIT
 * autograd/ops_norm.c: group normalisation as one op, forward and backward, each a single sweep
 * over every group that stays in cache.
 *
 * x (N, C, R) is split into N*G groups of M = (C/G)*R contiguous values. The forward takes each
 * group's mean and biased variance (two passes over the group in cache, double accumulators) and
 * writes y = (x - mean) * rstd * w[c] + b[c]; it keeps mean and rstd (N*G each) in the arena for
 * the backward. Without ND_CREATE_GRAPH the backward walks each group once more: with
 * xhat = (x - mean) * rstd and dxhat = gy * w[c],
 *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
 *   dw[c] += sum gy * xhat, db[c] += sum gy.
 * Under ND_CREATE_GRAPH it builds the same formulas from differentiable ops (recomputing mean and
 * rstd from x), so the gradient is a graph and second derivatives follow.
 */
#include <math.h>
#include <string.h>

#include "autograd/ops_internal.h"

typedef struct {
    int N, C, G;
    size_t R, M; /* values per channel, per group */
} gn_geom;

/* Workers for a kernel over x: nd_threads(), at most one per sample and per ND_PAR_MIN_VALUES. */
static int gn_workers(const gn_geom *g)
{
#ifdef ND_HAVE_OPENMP
    int n = nd_threads();
    size_t by_size = (size_t)g->N * g->M / ND_PAR_MIN_VALUES;
    if (n > g->N) n = g->N;
    if ((size_t)n > by_size) n = (int)by_size;
    return n < 1 ? 1 : n;
#else
    (void)g;
    return 1;
#endif
}

/* The sum of p[i] (mean == 0 and !sq) or of (p[i] - mean)^2 over n values, in four interleaved
 * double accumulators (so the loop vectorises without reassociating one chain). */
static double sum_sq4(const nd_real *p, size_t n, double mean, bool sq)
{
    double a[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) {
            double d = p[i + l] - mean;
            a[l] += sq ? d * d : d;
        }
    for (; i < n; i++) {
        double d = p[i] - mean;
        a[0] += sq ? d * d : d;
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* y for sample n; stats: mean (N*G,) then rstd (N*G,) */
static void gn_forward_sample(const gn_geom *g, int n, const nd_real *x, const nd_real *w,
                              const nd_real *b, double eps, nd_real *y, nd_real *stats)
{
    int cg = g->C / g->G;
    for (int k = 0; k < g->G; k++) {
        size_t off = ((size_t)n * g->G + k) * g->M;
        const nd_real *xp = x + off;
        double mean = sum_sq4(xp, g->M, 0, false) / (double)g->M;
        double rstd = 1 / sqrt(sum_sq4(xp, g->M, mean, true) / (double)g->M + eps);
        stats[n * g->G + k] = (nd_real)mean;
        stats[(size_t)g->N * g->G + n * g->G + k] = (nd_real)rstd;
        for (int j = 0; j < cg; j++) {
            int c = k * cg + j;
            nd_real a = (nd_real)rstd * (w ? w[c] : 1), m = (nd_real)mean;
            nd_real c0 = (b ? b[c] : 0) - m * a; /* y = x * a + c0 */
            const nd_real *xc = xp + (size_t)j * g->R;
            nd_real *yc = y + off + (size_t)j * g->R;
            for (size_t i = 0; i < g->R; i++) yc[i] = xc[i] * a + c0;
        }
    }
}

/* y = group_norm(x), the samples shared among n_work workers */
static void gn_forward(const gn_geom *g, const nd_real *x, const nd_real *w, const nd_real *b,
                       double eps, nd_real *y, nd_real *stats, int n_work)
{
    if (n_work == 1) {
        for (int n = 0; n < g->N; n++) gn_forward_sample(g, n, x, w, b, eps, y, stats);
        return;
    }
#ifdef ND_HAVE_OPENMP
#pragma omp parallel for num_threads(n_work) schedule(static)
#endif
    for (int n = 0; n < g->N; n++) gn_forward_sample(g, n, x, w, b, eps, y, stats);
}

static bool gn_check(nd_ctx *ctx, const nd_tensor *x, int groups, const nd_tensor *w,
                     const nd_tensor *b, double eps, gn_geom *g)
{
    char sx[64], sw[64], sb[64];
    if (x->ndim < 2 || groups < 1 || x->shape[1] % groups != 0) {
        nd_fail(ctx, ND_ERR_SHAPE,
                "nd_group_norm: input %s is not (N, C, ...) with C divisible by %d groups",
                nd_shape_str(x, sx), groups);
        return false;
    }
    int C = x->shape[1];
    if ((w && (w->ndim != 1 || w->shape[0] != C)) || (b && (b->ndim != 1 || b->shape[0] != C))) {
        nd_fail(ctx, ND_ERR_SHAPE,
                "nd_group_norm: weight %s and bias %s do not match %d channels of %s",
                nd_shape_str(w, sw), nd_shape_str(b, sb), C, nd_shape_str(x, sx));
        return false;
    }
    if (!(eps >= 0)) {
        nd_fail(ctx, ND_ERR_ARG, "nd_group_norm: eps %g is not >= 0", eps);
        return false;
    }
    size_t R = 1;
    for (int i = 2; i < x->ndim; i++) R *= (size_t)x->shape[i];
    *g = (gn_geom){.N = x->shape[0], .C = C, .G = groups, .R = R, .M = R * (size_t)(C / groups)};
    return true;
}

nd_tensor *nd_group_norm(nd_ctx *ctx, nd_tensor *x, int groups, nd_tensor *w, nd_tensor *b,
                         double eps)
{
    if (!ND_CHECK1(ctx, "nd_group_norm", x)) return NULL;
    gn_geom g;
    if (!gn_check(ctx, x, groups, w, b, eps, &g)) return NULL;
    nd_tensor *out = nd_tensor_alloc(ctx, x->ndim, x->shape);
    nd_real *stats = out ? nd_ctx_alloc(ctx, 2 * (size_t)g.N * g.G * sizeof *stats) : NULL;
    if (!stats) return NULL;
    gn_forward(&g, x->data, w ? w->data : NULL, b ? b->data : NULL, eps, out->data, stats,
               gn_workers(&g));
    out->aux = stats;
    out->arg[0] = groups, out->arg[1] = eps, out->arg[2] = w != NULL, out->arg[3] = b != NULL;
    nd_tensor *src[3];
    int n = 0;
    src[n++] = x;
    if (w) src[n++] = w;
    if (b) src[n++] = b;
    return nd_record(ctx, out, ND_OP_GROUP_NORM, n, src);
}

/* The gradients as a graph (ND_CREATE_GRAPH), from differentiable ops; w, b may be NULL. */
static void gn_backward_graph(nd_ctx *ctx, nd_tensor *out, const gn_geom *g, nd_tensor *x,
                              nd_tensor *w, nd_tensor *b, double eps)
{
    int sg[3] = {g->N, g->G, (int)g->M}, sc[3] = {g->N, g->C, (int)g->R};
    nd_tensor *xg = nd_reshape(ctx, x, 3, sg); /* (N, G, M) */
    nd_tensor *d = nd_sub(ctx, xg, nd_mean_axis(ctx, xg, 2, true));
    nd_tensor *var = nd_mean_axis(ctx, nd_mul(ctx, d, d), 2, true); /* (N, G, 1) */
    nd_tensor *rstd = nd_pow_scalar(ctx, nd_add_scalar(ctx, var, (nd_real)eps), (nd_real)-0.5);
    nd_tensor *xhat = nd_mul(ctx, d, rstd);             /* (N, G, M) */
    nd_tensor *gy = nd_reshape(ctx, out->gnode, 3, sc); /* (N, C, R) */
    if (nd_needs_grad(ctx, x)) {
        nd_tensor *dxhat = w ? nd_mul(ctx, gy, nd_reshape(ctx, w, 2, (int[]){g->C, 1})) : gy;
        dxhat = nd_reshape(ctx, dxhat, 3, sg);
        nd_tensor *m1 = nd_mean_axis(ctx, dxhat, 2, true);
        nd_tensor *m2 = nd_mean_axis(ctx, nd_mul(ctx, dxhat, xhat), 2, true);
        nd_tensor *dx =
            nd_mul(ctx, nd_sub(ctx, nd_sub(ctx, dxhat, m1), nd_mul(ctx, xhat, m2)), rstd);
        nd_accumulate_grad(ctx, x, nd_reshape(ctx, dx, x->ndim, x->shape));
    }
    if (w && nd_needs_grad(ctx, w)) {
        nd_tensor *p = nd_mul(ctx, gy, nd_reshape(ctx, xhat, 3, sc));
        nd_accumulate_grad(ctx, w, nd_sum_axis(ctx, nd_sum_axis(ctx, p, 2, false), 0, false));
    }
    if (b && nd_needs_grad(ctx, b))
        nd_accumulate_grad(ctx, b, nd_sum_axis(ctx, nd_sum_axis(ctx, gy, 2, false), 0, false));
}

/* Sample n's gradients, one group at a time; dx, dw, db may be NULL and are added to. */
static void gn_backward_sample(const gn_geom *g, int n, const nd_real *x, const nd_real *w,
                               const nd_real *stats, const nd_real *gy, nd_real *dx, nd_real *dw,
                               nd_real *db)
{
    int cg = g->C / g->G;
    for (int k = 0; k < g->G; k++) {
        size_t off = ((size_t)n * g->G + k) * g->M;
        nd_real mean = stats[n * g->G + k], rstd = stats[(size_t)g->N * g->G + n * g->G + k];
        double s1 = 0, s2 = 0; /* sums of dxhat and dxhat * xhat */
        for (int j = 0; j < cg; j++) {
            int c = k * cg + j;
            const nd_real *xc = x + off + (size_t)j * g->R, *gc = gy + off + (size_t)j * g->R;
            double sg = 0, sgx = 0; /* sums of gy and gy * xhat */
            for (size_t i = 0; i < g->R; i++) {
                nd_real xh = (xc[i] - mean) * rstd;
                sg += gc[i], sgx += gc[i] * xh;
            }
            nd_real wc = w ? w[c] : 1;
            s1 += wc * sg, s2 += wc * sgx;
            if (dw) dw[c] += (nd_real)sgx;
            if (db) db[c] += (nd_real)sg;
        }
        if (!dx) continue;
        nd_real m1 = (nd_real)(s1 / (double)g->M), m2 = (nd_real)(s2 / (double)g->M);
        for (int j = 0; j < cg; j++) {
            int c = k * cg + j;
            nd_real wr = (w ? w[c] : 1) * rstd;
            const nd_real *xc = x + off + (size_t)j * g->R, *gc = gy + off + (size_t)j * g->R;
            nd_real *dc = dx + off + (size_t)j * g->R;
            for (size_t i = 0; i < g->R; i++) {
                nd_real xh = (xc[i] - mean) * rstd;
                dc[i] += gc[i] * wr - rstd * (m1 + xh * m2);
            }
        }
    }
}

/* The gradients as values, the samples shared among n_work workers: dx directly, dw and db (with
 * several workers) through each worker's partial sums in part (n_work, 2C), added in worker
 * order, so a thread count always gives the same sums. */
static void gn_backward_values(const gn_geom *g, const nd_real *x, const nd_real *w,
                               const nd_real *stats, const nd_real *gy, nd_real *dx, nd_real *dw,
                               nd_real *db, int n_work, nd_real *part)
{
    if (n_work == 1) {
        for (int n = 0; n < g->N; n++) gn_backward_sample(g, n, x, w, stats, gy, dx, dw, db);
        return;
    }
#ifdef ND_HAVE_OPENMP
#pragma omp parallel for num_threads(n_work) schedule(static)
#endif
    for (int n = 0; n < g->N; n++) {
        nd_real *p = part + (size_t)nd_worker_id() * 2 * g->C;
        gn_backward_sample(g, n, x, w, stats, gy, dx, dw ? p : NULL, db ? p + g->C : NULL);
    }
    for (int i = 0; i < n_work; i++)
        for (int c = 0; c < g->C; c++) {
            if (dw) dw[c] += part[(size_t)i * 2 * g->C + c];
            if (db) db[c] += part[(size_t)i * 2 * g->C + g->C + c];
        }
}

/* A buffer to add t's gradient to: its .grad when the rule may add there, else zeros in the arena
 * (then *tmp is that tensor, to accumulate afterwards); NULL when t needs no gradient. */
static nd_real *grad_target(nd_ctx *ctx, nd_tensor *t, nd_tensor **tmp)
{
    *tmp = NULL;
    if (!t || !nd_needs_grad(ctx, t)) return NULL;
    nd_real *direct = nd_direct_grad(ctx, t);
    if (direct) return direct;
    *tmp = nd_zeros_like(ctx, t);
    return *tmp ? (*tmp)->data : NULL;
}

void nd_GROUP_NORM_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    int i = 0;
    nd_tensor *x = out->src[i++];
    nd_tensor *w = out->arg[2] != 0 ? out->src[i++] : NULL;
    nd_tensor *b = out->arg[3] != 0 ? out->src[i++] : NULL;
    gn_geom g;
    if (!gn_check(ctx, x, (int)out->arg[0], w, b, out->arg[1], &g)) return;
    if (nd_ctx_grad_enabled(ctx)) { /* recording: a differentiable gradient */
        gn_backward_graph(ctx, out, &g, x, w, b, out->arg[1]);
        return;
    }
    nd_tensor *tx, *tw, *tb;
    nd_real *dx = grad_target(ctx, x, &tx), *dw = grad_target(ctx, w, &tw),
            *db = grad_target(ctx, b, &tb);
    int n_work = gn_workers(&g);
    nd_real *part = NULL; /* (n_work, 2C) zeros: the workers' partial dw, db */
    if (n_work > 1 && (part = nd_ctx_alloc(ctx, (size_t)n_work * 2 * g.C * sizeof *part)))
        memset(part, 0, (size_t)n_work * 2 * g.C * sizeof *part);
    if ((nd_needs_grad(ctx, x) && !dx) || (w && nd_needs_grad(ctx, w) && !dw) ||
        (b && nd_needs_grad(ctx, b) && !db) || (n_work > 1 && !part))
        return; /* the arena failed; the error is in ctx */
    gn_backward_values(&g, x->data, w ? w->data : NULL, out->aux, out->gnode->data, dx, dw, db,
                       n_work, part);
    if (tx) nd_accumulate_grad(ctx, x, tx);
    if (tw) nd_accumulate_grad(ctx, w, tw);
    if (tb) nd_accumulate_grad(ctx, b, tb);
}

/* SPDX-License-Identifier: MIT
 * odeint/norm.c: error norms over a state made of blocks. The RMS norm is torchdiffeq's mixed
 * norm: the largest of the blocks' RMS values. The seminorm is the same over the blocks that feed
 * back into the dynamics (the state and its adjoint): the parameter and time adjoints are pure
 * integrals, so their local errors never compound and need not limit the step (SUNDIALS CVODES
 * treats such quadratures the same way by default). */
#include <math.h>

#include "odeint/solver.h"

static bool counts(nd_norm_kind kind, nd_block_role role)
{
    switch (kind) {
    case ND_NORM_SEMINORM:
        return role == ND_ROLE_STATE || role == ND_ROLE_ADJ_STATE;
    case ND_NORM_SEMINORM_KEEP_T:
        return role != ND_ROLE_ADJ_PARAM;
    default:
        return true;
    }
}

static double scaled(double num, double ya, const nd_real *yb, size_t i, double rtol, double atol)
{
    double m = fabs(ya);
    if (yb && fabs(yb[i]) > m) m = fabs(yb[i]);
    return num / (atol + rtol * m);
}

/* The RMS of block b's scaled errors. When the sum of squares overflows (tiny tolerances make
 * each term huge) it is summed again scaled by the largest term, so a finite error never
 * becomes infinite; the plain sum stays the default, as torchdiffeq computes it. */
static double block_rms(const nd_ode_system *sys, int b, size_t off, const nd_real *num,
                        const nd_real *ya, const nd_real *yb)
{
    size_t n = sys->block_size[b];
    double sum_sq = 0, big = 0;
    for (size_t i = off; i < off + n; i++) {
        double e = scaled(num[i], ya[i], yb, i, sys->rtol[b], sys->atol[b]);
        sum_sq += e * e;
        if (fabs(e) > big || isnan(e)) big = fabs(e);
    }
    if (isfinite(sum_sq) || !isfinite(big)) return sqrt(sum_sq / (double)n);
    double sum_scaled = 0;
    for (size_t i = off; i < off + n; i++) {
        double e = scaled(num[i], ya[i], yb, i, sys->rtol[b], sys->atol[b]) / big;
        sum_scaled += e * e;
    }
    return big * sqrt(sum_scaled / (double)n);
}

/* The largest block RMS among the blocks the norm counts (all when every), and its block. */
static double largest_block(const nd_ode_system *sys, nd_norm_kind kind, bool every,
                            const nd_real *num, const nd_real *ya, const nd_real *yb, int *block)
{
    double worst = 0;
    size_t off = 0;
    *block = -1;
    for (int b = 0; b < sys->n_blocks; off += sys->block_size[b], b++) {
        if ((!every && !counts(kind, sys->role[b])) || sys->block_size[b] == 0) continue;
        double rms = block_rms(sys, b, off, num, ya, yb);
        if (*block < 0 || rms > worst) *block = b;
        if (!(rms <= worst)) worst = rms; /* keeps a NaN, so the caller sees it */
    }
    return worst;
}

double nd_ode_norm_which(const nd_ode_system *sys, const nd_solver_options *opt, const nd_real *num,
                         const nd_real *ya, const nd_real *yb, nd_real *scratch,
                         const nd_real **blocks, int *block)
{
    int unused;
    if (!block) block = &unused;
    if (opt->norm != ND_NORM_USER) return largest_block(sys, opt->norm, false, num, ya, yb, block);
    if (block != &unused) largest_block(sys, opt->norm, true, num, ya, yb, block);
    size_t off = 0;
    for (int b = 0; b < sys->n_blocks; b++) {
        for (size_t i = off; i < off + sys->block_size[b]; i++)
            scratch[i] = (nd_real)scaled(num[i], ya[i], yb, i, sys->rtol[b], sys->atol[b]);
        blocks[b] = scratch + off;
        off += sys->block_size[b];
    }
    return opt->norm_fn(sys->n_blocks, blocks, sys->block_size, sys->role, opt->norm_data);
}

double nd_ode_norm(const nd_ode_system *sys, const nd_solver_options *opt, const nd_real *num,
                   const nd_real *ya, const nd_real *yb, nd_real *scratch, const nd_real **blocks)
{
    return nd_ode_norm_which(sys, opt, num, ya, yb, scratch, blocks, NULL);
}

const char *nd_block_role_name(nd_block_role r)
{
    static const char *const names[ND_ROLE_COUNT] = {"state", "adj_state", "adj_param", "adj_time"};
    return (int)r >= 0 && r < ND_ROLE_COUNT ? names[r] : NULL;
}

long nd_limit_count(const nd_limit_stats *l, nd_block_role role, bool accepted)
{
    if (!l || (int)role < 0 || role >= ND_ROLE_COUNT) return 0;
    long n = 0;
    for (int k = 0; k < ND_LIMIT_MAX_BLOCKS; k++)
        n += accepted ? l->accepted[role][k] : l->rejected[role][k];
    return n;
}

double nd_limit_fraction(const nd_limit_stats *l, nd_block_role role)
{
    long all = 0;
    for (int r = 0; r < ND_ROLE_COUNT; r++)
        all +=
            nd_limit_count(l, (nd_block_role)r, true) + nd_limit_count(l, (nd_block_role)r, false);
    if (!l || all == 0) return NAN;
    return (double)(nd_limit_count(l, role, true) + nd_limit_count(l, role, false)) / (double)all;
}

double nd_limit_seminorm_share(const nd_limit_stats *l)
{
    return nd_limit_fraction(l, ND_ROLE_ADJ_PARAM) + nd_limit_fraction(l, ND_ROLE_ADJ_TIME);
}

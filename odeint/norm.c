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

double nd_ode_norm(const nd_ode_system *sys, const nd_solver_options *opt, const nd_real *num,
                   const nd_real *ya, const nd_real *yb, nd_real *scratch, const nd_real **blocks)
{
    size_t off = 0;
    if (opt->norm == ND_NORM_USER) {
        for (int b = 0; b < sys->n_blocks; b++) {
            for (size_t i = off; i < off + sys->block_size[b]; i++)
                scratch[i] = (nd_real)scaled(num[i], ya[i], yb, i, sys->rtol[b], sys->atol[b]);
            blocks[b] = scratch + off;
            off += sys->block_size[b];
        }
        return opt->norm_fn(sys->n_blocks, blocks, sys->block_size, sys->role, opt->norm_data);
    }
    double worst = 0;
    for (int b = 0; b < sys->n_blocks; off += sys->block_size[b], b++) {
        if (!counts(opt->norm, sys->role[b]) || sys->block_size[b] == 0) continue;
        double rms = block_rms(sys, b, off, num, ya, yb);
        if (!(rms <= worst)) worst = rms; /* keeps a NaN, so the caller sees it */
    }
    return worst;
}

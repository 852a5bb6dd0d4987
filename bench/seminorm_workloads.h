/* SPDX-License-Identifier: MIT
 * bench/seminorm_workloads.h: the workloads of bench/seminorm.c, one file each, sharing one
 * result record. Each runs its paired measurements and passes every result to sn_report.
 */
#ifndef SN_WORKLOADS_H
#define SN_WORKLOADS_H

#include <stdbool.h>
#include <stddef.h>

#include "nodal.h"

typedef struct {
    const char *workload, *method, *norm; /* norm: "default", "default_no_t" or "seminorm" */
    double rtol, atol;
    long nfe_forward, nfe_backward, accepted_backward, rejected_backward;
    double ms_backward;
    double max_rel_grad_diff;      /* against the default norm's gradient, same weights */
    double rel_grad_diff_norm;     /* |g - g_default| / |g_default| over all parameters */
    long torchdiffeq_nfe_backward; /* torchdiffeq's count for the same setting, -1 if none */
    long bound_backward[ND_ROLE_COUNT][2]; /* backward error tests each role bound: accepted,
                                              rejected (nd_limit_stats summed over blocks) */
    char note[96];
} sn_result;

typedef struct {
    double rtol, atol;
} sn_tol;

#define SN_N_TOLS 3
extern const sn_tol sn_tols[SN_N_TOLS]; /* (1e-3, 1e-6), (1e-4, 1e-7), (1e-5, 1e-8) */

void sn_report(const sn_result *r);
/* adds a backward solve's which-block counts to r->bound_backward */
void sn_add_bound(sn_result *r, const nd_limit_stats *l);
double sn_now(void);
/* max_i |g_i - ref_i| / max(|ref_i|, 1e-3 max_j |ref_j|) */
double sn_max_rel_diff(const double *g, const double *ref, size_t n);
/* |g - ref| / |ref| (2-norms) */
double sn_rel_diff_norm(const double *g, const double *ref, size_t n);

/* 0 on success; quick: fewer settings, for CI */
int sn_workload_a(bool quick);
int sn_workload_b(bool quick);
int sn_workload_c(bool quick);
int sn_workload_e(bool quick); /* 0 also when skipped for want of MuJoCo */
int sn_workload_spiral(bool quick);
int sn_workload_wide(bool quick);
int sn_workload_f(bool quick);

#endif

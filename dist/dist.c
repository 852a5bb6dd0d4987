/* SPDX-License-Identifier: MIT
 * dist/dist.c: data-parallel training on top of a transport (backend.h): the meeting every
 * collective starts with (each rank's status, weight and size exchanged, so one rank's error
 * becomes an error on all of them), broadcasts and gradient all-reduces over runs of tensors
 * adjacent in memory (one call for a flattened model), metric reductions, and the statistics.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/backend.h"

enum { MSG = 512 }; /* bytes of a failed rank's message sent to the others */

struct nd_dist {
    nd_dist_be *be;
    int rank, size;
    double *meet; /* (size * MEET_K,) scratch of the status exchange */
    nd_dist_stats stats;
};

/* what each rank brings to a meeting */
enum { MEET_STATUS, MEET_WEIGHT, MEET_SIZE, MEET_K };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* one rank: every collective leaves the data as it is, and the transport is not called (a
 * program started without mpirun has no MPI to call) */
static bool alone(const nd_dist *d)
{
    return d->size == 1;
}

bool nd_dist_has_mpi(void)
{
    return nd_dist_be_has_mpi();
}

static nd_status open_dist(nd_ctx *ctx, int *argc, char ***argv, const void *comm, nd_dist **out)
{
    const char *fn = comm ? "nd_dist_from_comm" : "nd_dist_init";
    if (!out) return nd_fail(ctx, ND_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    nd_dist *d = calloc(1, sizeof *d);
    if (!d) return nd_fail(ctx, ND_ERR_NOMEM, "%s", fn);
    nd_status st = nd_dist_be_open(ctx, argc, argv, comm, &d->be, &d->rank, &d->size);
    if (st == ND_OK && !(d->meet = calloc((size_t)d->size * MEET_K, sizeof *d->meet)))
        st = nd_fail(ctx, ND_ERR_NOMEM, "%s: %d ranks", fn, d->size);
    if (st != ND_OK) {
        nd_dist_destroy(d);
        return st;
    }
    *out = d;
    return ND_OK;
}

nd_status nd_dist_init(nd_ctx *ctx, int *argc, char ***argv, nd_dist **out)
{
    return open_dist(ctx, argc, argv, NULL, out);
}

nd_status nd_dist_from_comm(nd_ctx *ctx, const void *comm, nd_dist **out)
{
    if (!comm) return nd_fail(ctx, ND_ERR_ARG, "nd_dist_from_comm: comm is NULL");
    return open_dist(ctx, NULL, NULL, comm, out);
}

void nd_dist_destroy(nd_dist *d)
{
    if (!d) return;
    nd_dist_be_close(d->be);
    free(d->meet);
    free(d);
}

int nd_dist_rank(const nd_dist *d)
{
    return d ? d->rank : 0;
}

int nd_dist_size(const nd_dist *d)
{
    return d ? d->size : 1;
}

nd_dist_stats nd_dist_get_stats(const nd_dist *d)
{
    return d ? d->stats : (nd_dist_stats){0};
}

void nd_dist_reset_stats(nd_dist *d)
{
    if (d) d->stats = (nd_dist_stats){0};
}

/* ---------------------------------------------------------------------------------------------
 * The meeting: every rank's status, weight and size, so that all ranks agree to go on or to stop.
 */

/* The lowest rank that came with an error sends its message; every other rank records
 * "fn: rank R of N failed: message". Returns the error. */
static nd_status spread_error(nd_ctx *ctx, const char *fn, nd_dist *d, int failed)
{
    char msg[MSG] = {0};
    if (d->rank == failed) snprintf(msg, sizeof msg, "%s", nd_ctx_errmsg(ctx));
    nd_status own = nd_ctx_error(ctx);
    if (!alone(d) && nd_dist_be_bcast(ctx, fn, d->be, msg, sizeof msg, failed) != ND_OK)
        return ND_ERR_DIST;
    msg[MSG - 1] = '\0';
    if (d->rank == failed || own != ND_OK) return own; /* keeps its own error */
    return nd_fail(ctx, ND_ERR_DIST, "%s: rank %d of %d failed: %s", fn, failed, d->size, msg);
}

/* Exchanges (status, weight, size) with every rank; d->meet then holds all of them. ND_OK when no
 * rank has an error and all sizes agree. The time spent is waiting for the slowest rank. */
static nd_status meet(nd_ctx *ctx, const char *fn, nd_dist *d, double weight, double size)
{
    double mine[MEET_K] = {
        [MEET_STATUS] = (double)nd_ctx_error(ctx), [MEET_WEIGHT] = weight, [MEET_SIZE] = size};
    double t0 = now_s();
    /* a failed exchange is an error on this rank; MPI stops the job if its partners are gone */
    nd_status st = alone(d) ? (memcpy(d->meet, mine, sizeof mine), ND_OK)
                            : nd_dist_be_allgather(ctx, fn, d->be, mine, MEET_K, d->meet);
    d->stats.wait_seconds += now_s() - t0;
    d->stats.meetings++;
    if (st != ND_OK) return st;
    for (int r = 0; r < d->size; r++)
        if (d->meet[r * MEET_K + MEET_STATUS] != ND_OK) return spread_error(ctx, fn, d, r);
    for (int r = 1; r < d->size; r++)
        if (d->meet[r * MEET_K + MEET_SIZE] != d->meet[MEET_SIZE])
            return nd_fail(ctx, ND_ERR_DIST,
                           "%s: ranks disagree on the size: rank 0 has %.0f, "
                           "rank %d has %.0f (the same lists on every rank?)",
                           fn, d->meet[MEET_SIZE], r, d->meet[r * MEET_K + MEET_SIZE]);
    return ND_OK;
}

nd_status nd_dist_check(nd_ctx *ctx, nd_dist *d)
{
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "nd_dist_check: dist is NULL");
    return meet(ctx, "nd_dist_check", d, 0, 0);
}

void nd_dist_abort(nd_ctx *ctx, nd_dist *d, const char *where)
{
    fprintf(stderr, "nodal: rank %d of %d: %s: %s (%s); aborting every rank\n", nd_dist_rank(d),
            nd_dist_size(d), where ? where : "error", nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    fflush(stderr);
    nd_dist_be_abort(d ? d->be : NULL, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Runs: consecutive list entries whose memory is adjacent (a flattened model's parameters) are
 * one buffer, so one transport call.
 */

/* the base pointer of entry i (data or grad), NULL when it has none */
static nd_real *buf_of(const nd_param *list, int i, bool grad)
{
    const nd_tensor *t = list[i].tensor;
    return grad ? t->grad : t->data;
}

/* the length of the run starting at entry i: entries i .. *end - 1, *n elements in all */
static void run_at(const nd_param *list, int n, int i, bool grad, int *end, size_t *elems)
{
    uintptr_t next = (uintptr_t)buf_of(list, i, grad);
    size_t total = 0;
    int j = i;
    for (; j < n && buf_of(list, j, grad) && (uintptr_t)buf_of(list, j, grad) == next; j++) {
        total += list[j].tensor->size;
        next += list[j].tensor->size * sizeof(nd_real);
    }
    *end = j, *elems = total;
}

/* elements over the list's data (or grads, skipping NULL ones) */
static size_t list_elems(const nd_param *list, int n, bool grad)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (buf_of(list, i, grad)) total += list[i].tensor->size;
    return total;
}

/* records an error for a bad list (the caller still meets, so the other ranks learn of it) */
static nd_status check_list(nd_ctx *ctx, const char *fn, const nd_param *list, int n)
{
    if (n < 0 || (n > 0 && !list))
        return nd_fail(ctx, ND_ERR_ARG, "%s: list is NULL or has length %d", fn, n);
    for (int i = 0; i < n; i++)
        if (!list[i].tensor)
            return nd_fail(ctx, ND_ERR_ARG, "%s: entry %d (%s) has no tensor", fn, i,
                           list[i].name ? list[i].name : "unnamed");
    return ND_OK;
}

nd_status nd_dist_broadcast(nd_ctx *ctx, nd_dist *d, const nd_param *list, int n)
{
    const char *fn = "nd_dist_broadcast";
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "%s: dist is NULL", fn);
    bool ok = check_list(ctx, fn, list, n) == ND_OK;
    nd_status st = meet(ctx, fn, d, 0, ok ? (double)list_elems(list, n, false) : 0);
    for (int i = 0, end; st == ND_OK && !alone(d) && i < n; i = end) {
        size_t elems;
        run_at(list, n, i, false, &end, &elems);
        st = nd_dist_be_bcast(ctx, fn, d->be, list[i].tensor->data, elems * sizeof(nd_real), 0);
    }
    return st;
}

nd_status nd_dist_broadcast_module(nd_ctx *ctx, nd_dist *d, nd_module *m)
{
    nd_param_list l = {0};
    if (!m) nd_fail(ctx, ND_ERR_ARG, "nd_dist_broadcast_module: module is NULL");
    /* a rank that cannot list the state still meets, with its error */
    if (m) nd_module_state(ctx, m, &l);
    nd_status st = nd_dist_broadcast(ctx, d, l.items, l.n);
    nd_param_list_destroy(&l);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Gradients and metrics.
 */

/* the sum of the weights the meeting brought, in rank order (the same on every rank) */
static double total_weight(const nd_dist *d)
{
    double w = 0;
    for (int r = 0; r < d->size; r++) w += d->meet[r * MEET_K + MEET_WEIGHT];
    return w;
}

/* g *= s over every gradient of the list */
static void scale_grads(const nd_param *params, int n, double s)
{
    for (int i = 0; i < n; i++) {
        nd_tensor *t = params[i].tensor;
        for (size_t k = 0; t->grad && k < t->size; k++) t->grad[k] = (nd_real)(t->grad[k] * s);
    }
}

nd_status nd_dist_allreduce_grads(nd_ctx *ctx, nd_dist *d, const nd_param *params, int n,
                                  double weight)
{
    const char *fn = "nd_dist_allreduce_grads";
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "%s: dist is NULL", fn);
    bool ok = check_list(ctx, fn, params, n) == ND_OK;
    if (!(weight >= 0) || !isfinite(weight))
        nd_fail(ctx, ND_ERR_ARG, "%s: weight %g (a rank's share of the batch: finite, >= 0)", fn,
                weight); /* still meets, so that the others learn of it */
    size_t elems = ok ? list_elems(params, n, true) : 0;
    nd_status st = meet(ctx, fn, d, weight, (double)elems);
    if (st != ND_OK) return st;
    double total = total_weight(d);
    if (!(total > 0))
        return nd_fail(ctx, ND_ERR_ARG, "%s: the ranks' weights sum to %g (must be positive)", fn,
                       total);
    /* every error above left the gradients as they were; from here a failed all-reduce leaves
     * them scaled and partly summed, which cannot be undone (dist.h: no step then) */
    double s = weight / total; /* exactly 1 on one rank: the gradient is left as it is */
    if (s != 1) scale_grads(params, n, s);
    double t0 = now_s();
    for (int i = 0, end; st == ND_OK && !alone(d) && i < n; i = end) {
        size_t run;
        if (!params[i].tensor->grad) { /* skipped, on every rank alike */
            end = i + 1;
            continue;
        }
        run_at(params, n, i, true, &end, &run);
        st = nd_dist_be_sum_real(ctx, fn, d->be, params[i].tensor->grad, run);
        d->stats.allreduce_calls++;
    }
    d->stats.comm_seconds += now_s() - t0;
    d->stats.grad_allreduces++;
    d->stats.bytes_reduced += (double)elems * sizeof(nd_real);
    return st;
}

nd_status nd_dist_reduce(nd_ctx *ctx, nd_dist *d, nd_dist_op op, double *values, int n)
{
    const char *fn = "nd_dist_reduce";
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "%s: dist is NULL", fn);
    if (n < 0 || (n > 0 && !values) || op < ND_DIST_SUM || op > ND_DIST_MAX)
        nd_fail(ctx, ND_ERR_ARG, "%s: op %d, %d values%s", fn, (int)op, n,
                values ? "" : " (NULL)"); /* still meets */
    nd_status st = meet(ctx, fn, d, 0, n);
    if (st == ND_OK && n > 0 && !alone(d))
        st = nd_dist_be_reduce_double(ctx, fn, d->be, op, values, n);
    for (int i = 0; st == ND_OK && op == ND_DIST_MEAN && i < n; i++) values[i] /= d->size;
    return st;
}

nd_status nd_dist_gather(nd_ctx *ctx, nd_dist *d, double value, double *all)
{
    const char *fn = "nd_dist_gather";
    if (!d) return nd_fail(ctx, ND_ERR_ARG, "%s: dist is NULL", fn);
    if (!all) nd_fail(ctx, ND_ERR_ARG, "%s: all is NULL", fn); /* still meets */
    /* the meeting carries the value as the weight: no second exchange */
    nd_status st = meet(ctx, fn, d, value, 1);
    for (int r = 0; st == ND_OK && r < d->size; r++) all[r] = d->meet[r * MEET_K + MEET_WEIGHT];
    return st;
}

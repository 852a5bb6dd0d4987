/* SPDX-License-Identifier: MIT
 * dist/dist.h: data-parallel training over MPI (libnodal_dist, pkg-config nodal-dist). Every
 * process (rank) holds the whole model and a share of each global batch; after its backward pass
 * the ranks average their gradients with one all-reduce, and every rank then takes the same
 * optimizer step, so the parameters stay identical everywhere.
 *
 *   nd_dist *d;
 *   if (nd_dist_init(ctx, &argc, &argv, &d) != ND_OK) ...          // MPI_Init, or one process
 *   nd_module_flatten(ctx, model);                                  // one block: one all-reduce
 *   nd_dist_broadcast_module(ctx, d, model);                        // rank 0's initial weights
 *   nd_loader_shard(ctx, loader, nd_dist_rank(d), nd_dist_size(d)); // io/io.h
 *   while (nd_loader_next(ctx, loader, x, NULL, labels, &m) == ND_OK && m > 0) {
 *       nd_tensor *loss = ...;                                      // mean over this rank's m
 *       if (loss) nd_backward(ctx, loss, 0);
 *       // every rank meets here, also one that failed above: then all of them return its error
 *       if (nd_dist_allreduce_grads(ctx, d, params, n, m) != ND_OK) break; // no step then
 *       nd_optimizer_step(ctx, opt);
 *       nd_ctx_reset(ctx);
 *   }
 *   nd_dist_destroy(d);                                             // MPI_Finalize
 *
 * Built with MPI (meson -Dmpi=enabled, or auto when Open MPI is found) it runs under mpirun;
 * without MPI the same API is the one-process implementation (rank 0 of 1, collectives are
 * no-ops), so a program written for it builds and runs everywhere.
 *
 * Errors. Ranks meet only in the functions below. Each meeting first exchanges every rank's
 * status (its ctx's error): when one or more ranks arrive with an error, every rank returns
 * ND_ERR_DIST with "rank R of N failed: <R's message>" for the lowest such R (rank R keeps its own
 * error), so a job stops with a clear error on every rank instead of a hang in a collective whose
 * partner will never come. A rank that cannot reach a meeting (or wants out at once) calls
 * nd_dist_abort, which prints its error and aborts every rank (MPI_Abort); a rank that dies is
 * noticed by mpirun, which stops the job. Ranks must call the same meetings in the same order
 * with the same parameter lists, as with MPI itself; a gradient size that differs between ranks
 * is detected and reported as an error on all of them.
 */
#ifndef ND_DIST_DIST_H
#define ND_DIST_DIST_H

#include <stdbool.h>

#include "nn/nn.h" /* nd_module, nd_param */
#include "tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nd_dist nd_dist;

/* true when this libnodal_dist was built with MPI; false for the one-process implementation. */
ND_API bool nd_dist_has_mpi(void);

/* Initialises MPI when it is not yet (then nd_dist_destroy finalises it) and makes a
 * communicator of every process (a duplicate of MPI_COMM_WORLD, errors returned, not fatal).
 * A process that no MPI launcher started (no mpirun, srun: none of OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE, PMIX_RANK in the environment) runs as one rank without initialising MPI, as does
 * every process of a build without MPI. argc and argv may be NULL. *out NULL on failure
 * (ND_ERR_DIST). */
ND_API nd_status nd_dist_init(nd_ctx *ctx, int *argc, char ***argv, nd_dist **out);
/* The same over an existing communicator: comm points to an MPI_Comm (&comm), which is
 * duplicated; MPI must be initialised, and nd_dist_destroy does not finalise it. ND_ERR_ARG in a
 * build without MPI. */
ND_API nd_status nd_dist_from_comm(nd_ctx *ctx, const void *comm, nd_dist **out);
/* Frees the communicator and finalises MPI if nd_dist_init initialised it. NULL is a no-op. */
ND_API void nd_dist_destroy(nd_dist *d);

ND_API int nd_dist_rank(const nd_dist *d); /* 0 .. size - 1 (0 for NULL) */
ND_API int nd_dist_size(const nd_dist *d); /* number of ranks (1 for NULL) */

/* Copies rank 0's values of the listed tensors to every rank (a meeting). Tensors adjacent in
 * memory (a flattened model's parameters) go in one call. */
ND_API nd_status nd_dist_broadcast(nd_ctx *ctx, nd_dist *d, const nd_param *list, int n);
/* nd_dist_broadcast of m's state (nd_module_state: parameters and buffers): every rank starts
 * from rank 0's initial weights. */
ND_API nd_status nd_dist_broadcast_module(nd_ctx *ctx, nd_dist *d, nd_module *m);

/* The weighted mean of the ranks' gradients, in place on every rank (a meeting):
 * g = sum_r weight_r g_r / sum_r weight_r, where weight is this rank's share of the global batch
 * (its number of examples, when its loss is a mean over them): then g is the gradient of the
 * mean loss over the global batch, as one process would compute it on the whole batch, up to the
 * order of floating-point sums. The sum is one MPI_Allreduce per run of gradients adjacent in
 * memory: one call for a flattened model (nd_module_flatten). Parameters whose grad is NULL are
 * skipped (on every rank alike). weight must be finite and >= 0, and the total positive. The time
 * spent is split in the statistics: waiting at the status exchange (for the slowest rank: load
 * imbalance) and the all-reduce itself (communication).
 * On an error no rank may take the optimizer step with these gradients. When the meeting reports
 * it (this rank's own error, ND_ERR_DIST for another rank's, ranks whose sizes disagree, a bad
 * weight: ND_ERR_ARG), every rank's gradients are left as they were. When the all-reduce itself
 * fails (ND_ERR_DIST "nd_dist_allreduce_grads: MPI_Allreduce failed: ...": the transport broke
 * mid-way) they are undefined, already scaled by this rank's share and partly summed, which cannot
 * be undone; the job is then better stopped. */
ND_API nd_status nd_dist_allreduce_grads(nd_ctx *ctx, nd_dist *d, const nd_param *params, int n,
                                         double weight);

typedef enum { ND_DIST_SUM, ND_DIST_MEAN, ND_DIST_MIN, ND_DIST_MAX } nd_dist_op;
/* values[0..n) combined over the ranks, in place on every rank (a meeting): metrics such as a
 * loss, a count of right answers or the NFE, for reporting. */
ND_API nd_status nd_dist_reduce(nd_ctx *ctx, nd_dist *d, nd_dist_op op, double *values, int n);
/* Every rank's value: all[r] = rank r's value (all has nd_dist_size(d) entries), on every rank
 * (a meeting). Per-rank NFE, per-rank waiting time. */
ND_API nd_status nd_dist_gather(nd_ctx *ctx, nd_dist *d, double value, double *all);
/* A meeting that only exchanges the status: ND_OK when no rank has an error, else the error as
 * above on every rank. */
ND_API nd_status nd_dist_check(nd_ctx *ctx, nd_dist *d);

/* Prints "nodal: rank R of N: <where>: <ctx's error>; aborting every rank" to stderr and stops the
 * whole job (MPI_Abort; exit(1) without MPI). For a rank that cannot reach the next meeting. */
ND_API void nd_dist_abort(nd_ctx *ctx, nd_dist *d, const char *where);

/* This rank's meeting statistics since nd_dist_init or the last reset. */
typedef struct {
    long grad_allreduces; /* nd_dist_allreduce_grads calls */
    long meetings;        /* every meeting, grad all-reduces included */
    double wait_seconds;  /* at the status exchanges: waiting for the other ranks */
    double comm_seconds;  /* in the gradient all-reduces themselves */
    double bytes_reduced; /* gradient bytes this rank all-reduced */
    long allreduce_calls; /* MPI_Allreduce calls over gradients (one per run, per chunk) */
} nd_dist_stats;
ND_API nd_dist_stats nd_dist_get_stats(const nd_dist *d);
ND_API void nd_dist_reset_stats(nd_dist *d);

#ifdef __cplusplus
}
#endif

#endif /* ND_DIST_DIST_H */

/* SPDX-License-Identifier: MIT
 * dist/backend.h: the few primitives dist.c needs from a transport, implemented over MPI
 * (backend_mpi.c) or for one process (backend_serial.c); meson builds exactly one of them.
 * Library-private. Every function returns ND_OK or records ND_ERR_DIST naming fn and the
 * transport's error.
 */
#ifndef ND_DIST_BACKEND_H
#define ND_DIST_BACKEND_H

#include <stddef.h>

#include "dist/dist.h"

typedef struct nd_dist_be nd_dist_be;

/* Opens a communicator: a duplicate of comm (an MPI_Comm *) or, when comm is NULL, of every
 * process (initialising MPI if needed, with argc / argv). */
nd_status nd_dist_be_open(nd_ctx *ctx, int *argc, char ***argv, const void *comm, nd_dist_be **out,
                          int *rank, int *size);
void nd_dist_be_close(nd_dist_be *be);
bool nd_dist_be_has_mpi(void);

/* all[r * k .. r * k + k) = rank r's mine[0..k), on every rank */
nd_status nd_dist_be_allgather(nd_ctx *ctx, const char *fn, nd_dist_be *be, const double *mine,
                               int k, double *all);
/* bytes of buf from root to every rank */
nd_status nd_dist_be_bcast(nd_ctx *ctx, const char *fn, nd_dist_be *be, void *buf, size_t bytes,
                           int root);
/* buf[0..n) summed over the ranks, in place */
nd_status nd_dist_be_sum_real(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_real *buf, size_t n);
/* buf[0..n) combined by op (SUM, MIN or MAX; MEAN is SUM here) over the ranks, in place */
nd_status nd_dist_be_reduce_double(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_dist_op op,
                                   double *buf, int n);
/* stops every rank with status code */
void nd_dist_be_abort(nd_dist_be *be, int code);

#endif

/* SPDX-License-Identifier: MIT
 * dist/backend_serial.c: the transport of a build without MPI: one process, rank 0 of 1, so every
 * collective leaves its data as it is.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/backend.h"

struct nd_dist_be {
    int unused;
};

bool nd_dist_be_has_mpi(void)
{
    return false;
}

nd_status nd_dist_be_open(nd_ctx *ctx, int *argc, char ***argv, const void *comm, nd_dist_be **out,
                          int *rank, int *size)
{
    (void)argc, (void)argv;
    if (comm)
        return nd_fail(ctx, ND_ERR_ARG,
                       "nd_dist_from_comm: this libnodal_dist was built without MPI "
                       "(meson -Dmpi=enabled)");
    *out = calloc(1, sizeof **out);
    if (!*out) return nd_fail(ctx, ND_ERR_NOMEM, "nd_dist_init");
    *rank = 0, *size = 1;
    return ND_OK;
}

void nd_dist_be_close(nd_dist_be *be)
{
    free(be);
}

nd_status nd_dist_be_allgather(nd_ctx *ctx, const char *fn, nd_dist_be *be, const double *mine,
                               int k, double *all)
{
    (void)ctx, (void)fn, (void)be;
    memmove(all, mine, (size_t)k * sizeof *all);
    return ND_OK;
}

nd_status nd_dist_be_bcast(nd_ctx *ctx, const char *fn, nd_dist_be *be, void *buf, size_t bytes,
                           int root)
{
    (void)ctx, (void)fn, (void)be, (void)buf, (void)bytes, (void)root;
    return ND_OK;
}

nd_status nd_dist_be_sum_real(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_real *buf, size_t n)
{
    (void)ctx, (void)fn, (void)be, (void)buf, (void)n;
    return ND_OK;
}

nd_status nd_dist_be_reduce_double(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_dist_op op,
                                   double *buf, int n)
{
    (void)ctx, (void)fn, (void)be, (void)op, (void)buf, (void)n;
    return ND_OK;
}

void nd_dist_be_abort(nd_dist_be *be, int code)
{
    (void)be;
    exit(code);
}

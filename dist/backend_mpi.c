/* SPDX-License-Identifier: MIT
 * dist/backend_mpi.c: the transport over MPI (Open MPI from Debian). A communicator duplicated
 * from the user's or from MPI_COMM_WORLD, with MPI_ERRORS_RETURN so a failed call becomes an
 * nd_status naming the function and MPI's error string; large buffers go in chunks whose counts
 * fit MPI's int.
 */
#include <mpi.h>
#include <stdlib.h>

#include "dist/backend.h"

#ifdef ND_REAL_FLOAT
#define MPI_ND_REAL MPI_FLOAT
#else
#define MPI_ND_REAL MPI_DOUBLE
#endif

enum { CHUNK = 1 << 28 }; /* elements per MPI call: counts are ints */

struct nd_dist_be {
    MPI_Comm comm; /* MPI_COMM_NULL for a process started without a launcher */
    bool finalize; /* we initialised MPI */
};

/* true when an MPI launcher started this process (Open MPI's mpirun, or a PMI one: MPICH's,
 * Slurm's srun); a program started on its own runs as one process without initialising MPI
 * (a singleton MPI_Init would start a helper daemon for nothing) */
static bool launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

bool nd_dist_be_has_mpi(void)
{
    return true;
}

/* records MPI's error rc for fn; ND_ERR_DIST */
static nd_status mpi_fail(nd_ctx *ctx, const char *fn, const char *call, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
    text[len] = '\0';
    return nd_fail(ctx, ND_ERR_DIST, "%s: %s failed: %s", fn, call, len ? text : "unknown error");
}

nd_status nd_dist_be_open(nd_ctx *ctx, int *argc, char ***argv, const void *comm, nd_dist_be **out,
                          int *rank, int *size)
{
    const char *fn = comm ? "nd_dist_from_comm" : "nd_dist_init";
    int inited = 0, finalized = 0, rc;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return nd_fail(ctx, ND_ERR_DIST, "%s: MPI was already finalised", fn);
    if (comm && !inited) return nd_fail(ctx, ND_ERR_ARG, "%s: MPI is not initialised", fn);
    nd_dist_be *be = calloc(1, sizeof *be);
    if (!be) return nd_fail(ctx, ND_ERR_NOMEM, "%s", fn);
    be->comm = MPI_COMM_NULL;
    if (!inited && !launched()) {
        *out = be, *rank = 0, *size = 1;
        return ND_OK;
    }
    if (!inited) {
        if ((rc = MPI_Init(argc, argv)) != MPI_SUCCESS) {
            free(be);
            return mpi_fail(ctx, fn, "MPI_Init", rc);
        }
        be->finalize = true;
    }
    MPI_Comm from = comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD;
    if ((rc = MPI_Comm_dup(from, &be->comm)) != MPI_SUCCESS) {
        nd_dist_be_close(be);
        return mpi_fail(ctx, fn, "MPI_Comm_dup", rc);
    }
    MPI_Comm_set_errhandler(be->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(be->comm, rank);
    MPI_Comm_size(be->comm, size);
    *out = be;
    return ND_OK;
}

void nd_dist_be_close(nd_dist_be *be)
{
    if (!be) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && be->comm != MPI_COMM_NULL) MPI_Comm_free(&be->comm);
    if (be->finalize && !finalized) MPI_Finalize();
    free(be);
}

nd_status nd_dist_be_allgather(nd_ctx *ctx, const char *fn, nd_dist_be *be, const double *mine,
                               int k, double *all)
{
    int rc = MPI_Allgather(mine, k, MPI_DOUBLE, all, k, MPI_DOUBLE, be->comm);
    return rc == MPI_SUCCESS ? ND_OK : mpi_fail(ctx, fn, "MPI_Allgather", rc);
}

nd_status nd_dist_be_bcast(nd_ctx *ctx, const char *fn, nd_dist_be *be, void *buf, size_t bytes,
                           int root)
{
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int count = bytes - off < CHUNK ? (int)(bytes - off) : CHUNK;
        int rc = MPI_Bcast((char *)buf + off, count, MPI_BYTE, root, be->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(ctx, fn, "MPI_Bcast", rc);
    }
    return ND_OK;
}

nd_status nd_dist_be_sum_real(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_real *buf, size_t n)
{
    for (size_t off = 0; off < n; off += CHUNK) {
        int count = n - off < CHUNK ? (int)(n - off) : CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, count, MPI_ND_REAL, MPI_SUM, be->comm);
        if (rc != MPI_SUCCESS) return mpi_fail(ctx, fn, "MPI_Allreduce", rc);
    }
    return ND_OK;
}

nd_status nd_dist_be_reduce_double(nd_ctx *ctx, const char *fn, nd_dist_be *be, nd_dist_op op,
                                   double *buf, int n)
{
    MPI_Op mop = op == ND_DIST_MIN ? MPI_MIN : op == ND_DIST_MAX ? MPI_MAX : MPI_SUM;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, mop, be->comm);
    return rc == MPI_SUCCESS ? ND_OK : mpi_fail(ctx, fn, "MPI_Allreduce", rc);
}

void nd_dist_be_abort(nd_dist_be *be, int code)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) MPI_Abort(be && be->comm != MPI_COMM_NULL ? be->comm : MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; should it, the process still stops */
}

/* SPDX-License-Identifier: MIT
 * bench/bench_allreduce.c: what one gradient all-reduce costs on this machine, for a model of P
 * parameters: nd_dist_allreduce_grads on a flattened block of P reals (the status exchange, then
 * one MPI_Allreduce), timed over many calls. Run it under mpirun (bench/dist_scaling.sh does):
 *   mpirun -np 2 ./build/bench/bench_allreduce --elems 4546,14778,50186,1000000
 * One JSON object per size on stdout (rank 0): ranks, elements, bytes, microseconds per
 * all-reduce (the MPI call alone and the whole meeting; median and mean), and the bus bandwidth the
 * median implies under the ring model, 2 (N - 1) / N * bytes / time (nccl-tests' "busbw").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dist/dist.h"
#include "flags.h"
#include "json.h"
#include "stats.h"
#include "nodal.h"

/* reps timed all-reduces after 5 warm-up ones: per call, the MPI all-reduce (the statistics'
 * communication time) and the whole meeting; medians (a shared machine deschedules a rank now
 * and then, which the mean shows) and means. JSON from rank 0. */
static int measure(nd_ctx *ctx, nd_dist *d, long elems, int reps)
{
    nd_tensor *t = nd_tensor_create(ctx, 1, (int[]){(int)elems}, true);
    double *comm = malloc(2 * (size_t)reps * sizeof *comm), *meeting = comm + reps;
    if (!t || !comm) return nd_tensor_destroy(t), free(comm), 1;
    for (long i = 0; i < elems; i++) t->grad[i] = (nd_real)(i % 7);
    nd_param p = {"flat", t};
    for (int i = 0; i < 5; i++) nd_dist_allreduce_grads(ctx, d, &p, 1, 1); // warm-up
    double sum_comm = 0, sum_meeting = 0;
    for (int i = 0; i < reps && nd_ctx_error(ctx) == ND_OK; i++) {
        double c0 = nd_dist_get_stats(d).comm_seconds, t0 = clock_wall_ms();
        nd_dist_allreduce_grads(ctx, d, &p, 1, 1);
        meeting[i] = 1e3 * (clock_wall_ms() - t0),
        comm[i] = 1e6 * (nd_dist_get_stats(d).comm_seconds - c0);
        sum_comm += comm[i], sum_meeting += meeting[i];
    }
    nd_tensor_destroy(t);
    int N = nd_dist_size(d);
    double bytes = (double)elems * sizeof(nd_real);
    if (nd_ctx_error(ctx) != ND_OK || nd_dist_rank(d) != 0)
        return free(comm), nd_ctx_error(ctx) != ND_OK;
    double med_comm = median(comm, reps), med_meeting = median(meeting, reps);
    json_writer w = json_begin(stdout);
    json_str(&w, "bench", "allreduce");
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "ranks", N);
    json_int(&w, "elems", elems);
    json_num(&w, "bytes", bytes);
    json_int(&w, "reps", reps);
    json_num(&w, "median_us_allreduce", med_comm); // the MPI_Allreduce
    json_num(&w, "mean_us_allreduce", sum_comm / reps);
    json_num(&w, "median_us_meeting", med_meeting); // status exchange + scaling + all-reduce
    json_num(&w, "mean_us_meeting", sum_meeting / reps);
    json_num(&w, "bus_gb_per_s_at_median",
             N > 1 && med_comm > 0 ? 2.0 * (N - 1) / N * bytes / med_comm / 1e3 : 0);
    json_end(&w);
    free(comm);
    return 0;
}

int main(int argc, char **argv)
{
    nd_ctx *ctx = nd_ctx_create(0);
    nd_dist *d = NULL;
    if (!ctx || nd_dist_init(ctx, &argc, &argv, &d) != ND_OK) {
        fprintf(stderr, "bench_allreduce: %s\n", ctx ? nd_ctx_errmsg(ctx) : "out of memory");
        return 1;
    }
    const char *list = "4546,14778,50186,1000000";
    int reps = 200;
    const flag_spec flags[] = {
        FLAG_STRING("elems", &list, "P,P,...", "parameter counts to all-reduce"),
        FLAG_INT("reps", &reps, 1, 1000000, "timed all-reduces per size"),
    };
    int rc = flags_parse("bench_allreduce", "The cost of one gradient all-reduce.", flags,
                         FLAGS_N(flags), argc, argv);
    int status = rc == FLAGS_OK ? 0 : flags_exit_status(rc);
    char *copy = status == 0 ? strdup(list) : NULL;
    for (char *tok = copy ? strtok(copy, ",") : NULL; tok && status == 0; tok = strtok(NULL, ",")) {
        long elems;
        if (!nd_parse_long(tok, &elems) || elems < 1 || elems > 1L << 30) {
            fprintf(stderr, "bench_allreduce: --elems: bad count \"%s\"\n", tok);
            status = 2;
        } else if (measure(ctx, d, elems, reps) != 0) {
            fprintf(stderr, "bench_allreduce: %s\n", nd_ctx_errmsg(ctx));
            status = 1;
        }
    }
    free(copy);
    nd_dist_destroy(d);
    nd_ctx_destroy(ctx);
    return status;
}

/* SPDX-License-Identifier: MIT
 * tests/dist_fault.c: a data-parallel training loop whose last rank fails at step 3, run by
 * tests/dist_faults.sh under mpirun to show that the job stops with a clear error on every rank
 * and never hangs. Modes (argv[1]):
 *   error  the failing rank records an error and still meets the others at the gradient
 *          all-reduce: every rank prints "rank R: step 3: <error>" and exits 1 by itself
 *   abort  the failing rank calls nd_dist_abort, which prints its error and stops every rank
 *   die    the failing rank is killed (SIGKILL) while the others wait in the all-reduce: mpirun
 *          notices and stops the job
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "dist/dist.h"

int main(int argc, char **argv)
{
    nd_ctx *ctx = nd_ctx_create(0);
    nd_dist *d = NULL;
    if (!ctx || nd_dist_init(ctx, &argc, &argv, &d) != ND_OK) return 1;
    const char *mode = argc > 1 ? argv[1] : "error";
    int rank = nd_dist_rank(d), last = nd_dist_size(d) - 1, status = 0;
    nd_rng rng = nd_rng_seed(1);
    nd_module *m = nd_mlp_create(ctx, 2, (int[]){2, 2}, ND_ACT_NONE, &rng);
    nd_param_list l = {0};
    if (!m || nd_module_params(ctx, m, &l) != ND_OK) return 1;
    for (int step = 1; step <= 5; step++) {
        nd_tensor *x = nd_full(ctx, 2, (int[]){4, 2}, (nd_real)step);
        nd_tensor *loss = nd_mean(ctx, nd_module_forward(ctx, m, x));
        if (loss) nd_backward(ctx, loss, 0);
        if (rank == last && step == 3) {
            nd_fail(ctx, ND_ERR_NONFINITE, "odeint: injected failure at t = 0.25");
            if (strcmp(mode, "abort") == 0) nd_dist_abort(ctx, d, "step 3");
            if (strcmp(mode, "die") == 0) raise(SIGKILL);
        }
        if (nd_dist_allreduce_grads(ctx, d, l.items, l.n, 4) != ND_OK) {
            fprintf(stderr, "rank %d: step %d: %s\n", rank, step, nd_ctx_errmsg(ctx));
            status = 1;
            break;
        }
        nd_ctx_reset(ctx);
    }
    nd_param_list_destroy(&l);
    nd_module_destroy(m);
    nd_dist_destroy(d);
    nd_ctx_destroy(ctx);
    return status;
}

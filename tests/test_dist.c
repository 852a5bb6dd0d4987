/* SPDX-License-Identifier: MIT
 * tests/test_dist.c: the dist module's Check suite, run as one process and under
 * `mpirun -np 2` and `-np 4` (tests/mpirun.sh): rank 0's weights reach every rank, metrics reduce,
 * and data-parallel training equals one process on the whole global batch, for a plain MLP and for
 * an ODE block trained through the adjoint, up to the order of floating-point sums (the measured
 * difference is printed); one rank's error, a failed backward pass too, becomes an error on every
 * rank, and ranks that pass lists of different sizes are told so. Every collective of a test runs
 * before its assertions, so a failed check on one rank cannot leave another waiting. Only rank 0
 * prints Check's report; the exit status is the same on every rank.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "test_main.h"
#ifdef TEST_DIST_MPI
#include <mpi.h>
#endif

static nd_dist *D; /* every rank, for the whole run */

/* the relative difference training may show between 1 and N ranks: sums in another order */
/* measured on 2 and 4 ranks: 1.2e-16 in double, 6.2e-8 in float */
#define EQUIV_RTOL BY_PRECISION(1e-14, 5e-6)

START_TEST(test_rank_and_size)
{
    int rank = nd_dist_rank(D), size = nd_dist_size(D);
    ck_assert_int_ge(size, 1);
    ck_assert_int_ge(rank, 0);
    ck_assert_int_lt(rank, size);
    const char *env = getenv("OMPI_COMM_WORLD_SIZE"); /* set by mpirun */
    if (env) ck_assert_int_eq(size, atoi(env));
    if (!nd_dist_has_mpi()) ck_assert_int_eq(size, 1);
    ck_assert_int_eq(nd_dist_rank(NULL), 0);
    ck_assert_int_eq(nd_dist_size(NULL), 1);
}
END_TEST

START_TEST(test_reduce_and_gather_metrics)
{
    int rank = nd_dist_rank(D), N = nd_dist_size(D);
    double sum[2] = {rank + 1, 10.0 * rank}, mean[1] = {rank}, lo[1] = {rank}, hi[1] = {rank};
    double all[64];
    ck_assert_int_le(N, 64);
    nd_status st[5] = {
        nd_dist_reduce(ctx, D, ND_DIST_SUM, sum, 2), nd_dist_reduce(ctx, D, ND_DIST_MEAN, mean, 1),
        nd_dist_reduce(ctx, D, ND_DIST_MIN, lo, 1),  nd_dist_reduce(ctx, D, ND_DIST_MAX, hi, 1),
        nd_dist_gather(ctx, D, 0.5 + rank, all),
    };
    for (int i = 0; i < 5; i++) ck_assert_msg(st[i] == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert(sum[0] == N * (N + 1) / 2.0);
    ck_assert(sum[1] == 10.0 * N * (N - 1) / 2.0);
    ck_assert(mean[0] == (N - 1) / 2.0);
    ck_assert(lo[0] == 0 && hi[0] == N - 1);
    for (int r = 0; r < N; r++) ck_assert(all[r] == 0.5 + r);
}
END_TEST

/* an MLP 4 -> 16 -> 3 (tanh) from seed, and a batch-norm buffer after it */
static nd_module *mlp(uint64_t seed)
{
    nd_rng rng = nd_rng_seed(seed);
    nd_module *m = nd_mlp_create(ctx, 3, (int[]){4, 16, 3}, ND_ACT_TANH, &rng);
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    return m;
}

/* Every rank starts with its own weights and buffers; after the broadcast they are rank 0's */
START_TEST(test_broadcast_gives_rank_0s_weights_and_buffers)
{
    int rank = nd_dist_rank(D);
    nd_module *mine = nd_sequential_create(
        ctx, 2,
        (nd_module *[]){mlp(100 + (uint64_t)rank), nd_batch_norm1d_create(ctx, 3, 1e-5, 0.1)});
    nd_module *want = nd_sequential_create(
        ctx, 2, (nd_module *[]){mlp(100), nd_batch_norm1d_create(ctx, 3, 1e-5, 0.1)});
    ck_assert_ptr_nonnull(mine);
    ck_assert_ptr_nonnull(want);
    nd_param_list l = {0}, w = {0};
    ck_assert_int_eq(nd_module_state(ctx, mine, &l), ND_OK);
    ck_assert_int_eq(nd_module_state(ctx, want, &w), ND_OK);
    nd_tensor *running_mean = nd_param_list_find(&l, "1.running_mean");
    for (int c = 0; c < 3; c++) running_mean->data[c] = (nd_real)(rank + c);
    nd_param_list_find(&w, "1.running_mean")->data[1] = 1;
    nd_param_list_find(&w, "1.running_mean")->data[2] = 2;
    ck_assert_ptr_nonnull(nd_module_flatten(ctx, mine));
    nd_status st = nd_dist_broadcast_module(ctx, D, mine);
    nd_dist_stats s = nd_dist_get_stats(D);
    ck_assert_msg(st == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(l.n, w.n);
    for (int i = 0; i < l.n; i++)
        ck_assert_msg(memcmp(l.items[i].tensor->data, w.items[i].tensor->data,
                             l.items[i].tensor->size * sizeof(nd_real)) == 0,
                      "rank %d: %s is not rank 0's", rank, l.items[i].name);
    ck_assert_int_ge(s.meetings, 1);
    nd_param_list_destroy(&l);
    nd_param_list_destroy(&w);
    nd_module_destroy(mine);
    nd_module_destroy(want);
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Equivalence: k steps of Adam on N ranks against one process on the global batch.
 */
enum { IN = 4, OUT = 3, STEPS = 5 };

typedef nd_module *(*model_fn)(void);

static nd_module *plain_model(void)
{
    return mlp(7);
}

/* x (4) -> Linear 4 -> 6 -> ODE block dx/dt = MLP([x, t]) over [0, 1] (rk4, 8 steps, adjoint) ->
 * Linear 6 -> 3 */
static nd_module *ode_model(void)
{
    nd_rng rng = nd_rng_seed(9);
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = ND_RK4;
    o.solver.step_size = 0.125;
    o.grad = ND_GRAD_ADJOINT;
    nd_module *f = nd_mlp_create(ctx, 3, (int[]){7, 12, 6}, ND_ACT_TANH, &rng);
    nd_module *m = nd_sequential_create(
        ctx, 3,
        (nd_module *[]){nd_linear_create(ctx, IN, 6, true, &rng),
                        nd_odeblock_create(ctx, f, ND_TIME_CONCAT, 0.0, 1.0, &o),
                        nd_linear_create(ctx, 6, OUT, true, &rng)});
    ck_assert_msg(m, "%s", nd_ctx_errmsg(ctx));
    return m;
}

/* the global batch of step k: B rows of inputs and targets, the same on every rank */
static void global_batch(int k, int B, nd_real *x, nd_real *y)
{
    nd_rng rng = nd_rng_seed(1000 + (uint64_t)k);
    for (int i = 0; i < B * IN; i++) x[i] = (nd_real)nd_rng_normal(&rng);
    for (int i = 0; i < B * OUT; i++) y[i] = (nd_real)nd_rng_normal(&rng);
}

/* mean squared error of m on rows [lo, lo + n) of the batch; backward into m's grads. The graph
 * and any error stay in the ctx: the caller meets the other ranks with it, then resets. */
static nd_status loss_backward(nd_module *m, const nd_real *x, const nd_real *y, int lo, int n)
{
    nd_tensor *xt = nd_tensor_from(ctx, 2, (int[]){n, IN}, x + lo * IN);
    nd_tensor *yt = nd_tensor_from(ctx, 2, (int[]){n, OUT}, y + lo * OUT);
    nd_tensor *loss = nd_mse_loss(ctx, nd_module_forward(ctx, m, xt), yt, ND_REDUCE_MEAN);
    return loss ? nd_backward(ctx, loss, 0) : nd_ctx_error(ctx);
}

/* a NaN in the first target of rank `rank`'s share at step `step`, so that its backward fails
 * (through an ODE block's adjoint); -1: none */
typedef struct {
    int rank, step;
} fault;
static const fault NO_FAULT = {-1, -1};

/* k steps of Adam on model_fn's model: alone on the global batch (dist NULL), or sharded over the
 * ranks of d. Stops at the first error (left in the ctx, no optimizer step with that step's
 * gradients). Leaves the parameters in *params_out (flattened, numel). */
static nd_status train(model_fn make, nd_dist *d, int B, fault f, nd_real *params_out,
                       size_t *numel)
{
    nd_module *m = make();
    nd_tensor *flat = nd_module_flatten(ctx, m);
    nd_param_list l = {0};
    ck_assert_int_eq(nd_module_params(ctx, m, &l), ND_OK);
    nd_optimizer *opt =
        nd_adam_create(ctx, l.items, l.n,
                       &(nd_adam_options){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    ck_assert_ptr_nonnull(opt);
    ck_assert_ptr_nonnull(flat);
    int N = d ? nd_dist_size(d) : 1, r = d ? nd_dist_rank(d) : 0;
    int lo = r * B / N, n = (r + 1) * B / N - lo; /* this rank's rows, as nd_loader_shard */
    nd_real *x = malloc(sizeof(nd_real) * (size_t)B * IN), *y = malloc(sizeof(nd_real) * B * OUT);
    nd_status st = d ? nd_dist_broadcast_module(ctx, d, m) : ND_OK;
    for (int k = 0; st == ND_OK && k < STEPS; k++) {
        global_batch(k, B, x, y);
        if (r == f.rank && k == f.step) y[lo * OUT] = (nd_real)NAN;
        nd_optimizer_zero_grad(opt);
        nd_status backward = loss_backward(m, x, y, lo, n);
        /* every rank meets here, one whose backward failed too: then every rank stops */
        st = d ? nd_dist_allreduce_grads(ctx, d, l.items, l.n, n) : backward;
        if (st == ND_OK) st = nd_optimizer_step(ctx, opt);
        if (st == ND_OK) nd_ctx_reset(ctx); /* after the meeting; an error stays for the caller */
    }
    memcpy(params_out, flat->data, flat->size * sizeof(nd_real));
    *numel = flat->size;
    free(x), free(y);
    nd_optimizer_destroy(opt);
    nd_param_list_destroy(&l);
    nd_module_destroy(m);
    return st;
}

/* max |a - b| / max |b| */
static double rel_diff(const nd_real *a, const nd_real *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), s = fmax(s, fabs(b[i]));
    return d / s;
}

static void check_equivalence(const char *name, model_fn make, int B)
{
    enum { MAXP = 4096 };
    static nd_real alone[MAXP], shared[MAXP];
    size_t n_alone = 0, n_shared = 0;
    nd_status st_alone = train(make, NULL, B, NO_FAULT, alone, &n_alone);
    nd_status st = train(make, D, B, NO_FAULT, shared, &n_shared);
    ck_assert_msg(st_alone == ND_OK && st == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert_uint_eq(n_alone, n_shared);
    double diff = rel_diff(shared, alone, n_alone);
    if (nd_dist_rank(D) == 0)
        printf("equivalence %s: %d ranks, global batch %d, %d Adam steps, %zu parameters: max "
               "relative difference to one process %.3g (tolerance %.0e)\n",
               name, nd_dist_size(D), B, STEPS, n_alone, diff, EQUIV_RTOL);
    ck_assert_msg(diff <= EQUIV_RTOL, "%s: %d ranks differ from one process by %g", name,
                  nd_dist_size(D), diff);
    /* the training moved the weights, so the comparison is not between untouched copies */
    nd_real init[MAXP];
    nd_module *m = make();
    ck_assert_ptr_nonnull(nd_module_flatten(ctx, m));
    memcpy(init, m->flat->data, m->flat->size * sizeof(nd_real));
    nd_module_destroy(m);
    ck_assert(rel_diff(init, alone, n_alone) > 1e-3);
}

START_TEST(test_equivalence_plain_mlp)
{
    check_equivalence("mlp", plain_model, 12);
    check_equivalence("mlp (uneven shares)", plain_model, 10); /* 4 ranks: 2, 3, 2, 3 rows */
}
END_TEST

START_TEST(test_equivalence_ode_block_adjoint)
{
    check_equivalence("ode block, adjoint", ode_model, 12);
}
END_TEST

/* A second nd_dist over an existing communicator (MPI_COMM_WORLD) sees the same ranks, reduces
 * over them, and its destroy leaves MPI running for the first; without MPI, or with MPI not
 * initialised (a process started alone), it is refused with a message */
START_TEST(test_from_existing_communicator)
{
#ifdef TEST_DIST_MPI
    int inited = 0;
    MPI_Initialized(&inited);
    MPI_Comm world = MPI_COMM_WORLD;
    nd_dist *e = NULL;
    nd_status st = nd_dist_from_comm(ctx, &world, &e);
    if (!inited) {
        ck_assert_int_eq(st, ND_ERR_ARG);
        expect_error(ND_ERR_ARG, "nd_dist_from_comm", "MPI is not initialised");
        ck_assert_ptr_null(e);
        return;
    }
    ck_assert_msg(st == ND_OK, "%s", nd_ctx_errmsg(ctx));
    ck_assert_int_eq(nd_dist_rank(e), nd_dist_rank(D));
    ck_assert_int_eq(nd_dist_size(e), nd_dist_size(D));
    double v[1] = {1};
    st = nd_dist_reduce(ctx, e, ND_DIST_SUM, v, 1);
    nd_dist_destroy(e); /* frees its duplicate only: D goes on */
    ck_assert_int_eq(st, ND_OK);
    ck_assert(v[0] == nd_dist_size(D));
    v[0] = 1;
    ck_assert_int_eq(nd_dist_reduce(ctx, D, ND_DIST_SUM, v, 1), ND_OK);
    ck_assert(v[0] == nd_dist_size(D));
#else
    int comm = 0; /* anything: a build without MPI refuses every communicator */
    nd_dist *e = NULL;
    ck_assert_int_eq(nd_dist_from_comm(ctx, &comm, &e), ND_ERR_ARG);
    expect_error(ND_ERR_ARG, "nd_dist_from_comm", "built without MPI");
    ck_assert_ptr_null(e);
#endif
}
END_TEST

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* g[k] = base + k over every gradient of the list (each rank its own base) */
static void fill_grads(const nd_param *p, int n, double base)
{
    for (int i = 0, k = 0; i < n; i++)
        for (size_t j = 0; j < p[i].tensor->size; j++) p[i].tensor->grad[j] = (nd_real)(base + k++);
}

/* true when every gradient of the list still holds fill_grads(base)'s values */
static bool grads_are(const nd_param *p, int n, double base)
{
    for (int i = 0, k = 0; i < n; i++)
        for (size_t j = 0; j < p[i].tensor->size; j++)
            if (p[i].tensor->grad[j] != (nd_real)(base + k++)) return false;
    return true;
}

/* The last rank fails before the gradient meeting: every rank returns an error that names it, its
 * gradients left as they were (dist.h: no rank scales before the meeting agrees), and the
 * communicator still works afterwards */
START_TEST(test_error_on_one_rank_is_an_error_on_every_rank)
{
    int rank = nd_dist_rank(D), N = nd_dist_size(D);
    nd_tensor *w = nd_tensor_create(ctx, 1, (int[]){3}, true);
    nd_param p = {"w", w};
    fill_grads(&p, 1, 10.0 * rank);
    if (rank == N - 1) nd_fail(ctx, ND_ERR_NONFINITE, "odeint: injected failure at t = 0.5");
    nd_status st = nd_dist_allreduce_grads(ctx, D, &p, 1, 1);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_clear_error(ctx);
    double v[1] = {1};
    nd_status after = nd_dist_reduce(ctx, D, ND_DIST_SUM, v, 1);
    bool untouched = grads_are(&p, 1, 10.0 * rank);
    nd_tensor_destroy(w);
    ck_assert_msg(untouched, "rank %d: the gradients changed in a failed meeting", rank);
    if (rank == N - 1) {
        ck_assert_int_eq(st, ND_ERR_NONFINITE); /* its own error, as it was */
        ck_assert_str_eq(msg, "odeint: injected failure at t = 0.5");
    } else {
        char want[128];
        snprintf(want, sizeof want,
                 "nd_dist_allreduce_grads: rank %d of %d failed: odeint: "
                 "injected failure at t = 0.5",
                 N - 1, N);
        ck_assert_int_eq(st, ND_ERR_DIST);
        ck_assert_str_eq(msg, want);
    }
    ck_assert_int_eq(after, ND_OK);
    ck_assert(v[0] == N);
}
END_TEST

/* Training the ODE block, rank 1 (rank 0 alone) gets a NaN target at step 2, so its adjoint
 * backward fails: every rank stops at that step's gradient meeting, the failing rank with its own
 * error and every other with ND_ERR_DIST naming it; no rank takes the step, so the parameters are
 * one process's after the 2 good steps (a process alone, with its own NaN at step 2, stops there
 * too); the communicator still works afterwards */
START_TEST(test_failed_backward_on_one_rank_stops_every_rank)
{
    enum { MAXP = 4096, B = 12, BAD_STEP = 2 };
    static nd_real alone[MAXP], shared[MAXP];
    int rank = nd_dist_rank(D), N = nd_dist_size(D), bad = N > 1 ? 1 : 0;
    size_t n_alone = 0, n_shared = 0;
    nd_status st = train(ode_model, D, B, (fault){bad, BAD_STEP}, shared, &n_shared);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_reset(ctx);
    nd_status st_alone = train(ode_model, NULL, B, (fault){0, BAD_STEP}, alone, &n_alone);
    char msg_alone[600];
    snprintf(msg_alone, sizeof msg_alone, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_reset(ctx);
    double v[1] = {1};
    nd_status after = nd_dist_reduce(ctx, D, ND_DIST_SUM, v, 1);
    ck_assert_int_eq(st_alone, ND_ERR_NONFINITE);
    ck_assert_msg(strstr(msg_alone, "adjoint of nd_odeint") && strstr(msg_alone, "not finite"),
                  "%s", msg_alone);
    if (rank == bad) {
        ck_assert_int_eq(st, ND_ERR_NONFINITE); /* its own error, as it was */
        ck_assert_str_eq(msg, msg_alone);
    } else {
        char want[700];
        snprintf(want, sizeof want, "nd_dist_allreduce_grads: rank %d of %d failed: %s", bad, N,
                 msg_alone); /* the same failure as alone: the NaN reaches the same op */
        ck_assert_int_eq(st, ND_ERR_DIST);
        ck_assert_str_eq(msg, want);
    }
    ck_assert_uint_eq(n_alone, n_shared);
    double diff = rel_diff(shared, alone, n_alone); /* NaN, failing, had a rank stepped */
    ck_assert_msg(diff <= EQUIV_RTOL, "rank %d: %g from one process after %d steps", rank, diff,
                  BAD_STEP);
    ck_assert_int_eq(after, ND_OK);
    ck_assert(v[0] == N);
}
END_TEST

/* Rank 0 passes two tensors, the others one: an error on every rank, not a mismatched
 * all-reduce; a bad weight on one rank too; the gradients left as they were either way */
START_TEST(test_mismatched_lists_and_bad_weights_are_errors_everywhere)
{
    int rank = nd_dist_rank(D), N = nd_dist_size(D);
    nd_tensor *a = nd_tensor_create(ctx, 1, (int[]){3}, true);
    nd_tensor *b = nd_tensor_create(ctx, 1, (int[]){2}, true);
    nd_param p[] = {{"a", a}, {"b", b}};
    fill_grads(p, 2, 10.0 * rank);
    nd_status st = nd_dist_allreduce_grads(ctx, D, p, N > 1 && rank == 0 ? 2 : 1, 1);
    char msg[600];
    snprintf(msg, sizeof msg, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_clear_error(ctx);
    nd_status st_w = nd_dist_allreduce_grads(ctx, D, p, 2, rank == 0 ? NAN : 1);
    char msg_w[600];
    snprintf(msg_w, sizeof msg_w, "%s", nd_ctx_errmsg(ctx));
    nd_ctx_clear_error(ctx);
    bool untouched = grads_are(p, 2, 10.0 * rank); /* one rank alone: its weight's share is 1 */
    nd_tensor_destroy(a);
    nd_tensor_destroy(b);
    ck_assert_msg(untouched, "rank %d: the gradients changed in a failed meeting", rank);
    if (N > 1) {
        ck_assert_int_eq(st, ND_ERR_DIST);
        ck_assert_msg(strstr(msg, "ranks disagree on the size: rank 0 has 5, rank 1 has 3"), "%s",
                      msg);
    } else {
        ck_assert_int_eq(st, ND_OK);
    }
    ck_assert_int_eq(st_w, rank == 0 ? ND_ERR_ARG : ND_ERR_DIST);
    ck_assert_msg(strstr(msg_w, "weight nan"), "%s", msg_w);
}
END_TEST

static Suite *dist_suite(void)
{
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("dist");
    tcase_add_checked_fixture(tc, ctx_setup, ctx_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_rank_and_size);
    tcase_add_test(tc, test_reduce_and_gather_metrics);
    tcase_add_test(tc, test_broadcast_gives_rank_0s_weights_and_buffers);
    tcase_add_test(tc, test_equivalence_plain_mlp);
    tcase_add_test(tc, test_equivalence_ode_block_adjoint);
    tcase_add_test(tc, test_from_existing_communicator);
    tcase_add_test(tc, test_error_on_one_rank_is_an_error_on_every_rank);
    tcase_add_test(tc, test_failed_backward_on_one_rank_stops_every_rank);
    tcase_add_test(tc, test_mismatched_lists_and_bad_weights_are_errors_everywhere);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    nd_ctx *c = nd_ctx_create(0);
    if (!c || nd_dist_init(c, &argc, &argv, &D) != ND_OK) {
        fprintf(stderr, "test_dist: %s\n", c ? nd_ctx_errmsg(c) : "out of memory");
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(dist_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* MPI processes must not fork */
    srunner_run_all(sr, nd_dist_rank(D) == 0 ? CK_NORMAL : CK_SILENT);
    double failed[1] = {srunner_ntests_failed(sr)};
    srunner_free(sr);
    /* the same exit status on every rank */
    if (nd_dist_reduce(c, D, ND_DIST_SUM, failed, 1) != ND_OK) failed[0] = 1;
    nd_dist_destroy(D);
    nd_ctx_destroy(c);
    return failed[0] > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: MIT
 * bench/bench_autograd.c: what the autograd engine costs around the arithmetic. Prints one JSON
 * object per line on stdout (progress on stderr):
 *   mlp_step (threads 1 and 2)  one training step (forward + backward) of an MLP 64-512-512-64
 *                               (tanh, batch 256, MSE) vs the bare GEMM calls that step makes;
 *                               goal ratio <= 1.15 (ratio_with_update adds the SGD update)
 *   tiny_graph                  MLP 2-50-2 at batch 20: nanoseconds per recorded op; goal < 1000
 *   steady_state_memory         10,000 reset cycles: mallocs after warm-up (goal 0), flat RSS
 *
 * How it measures, so the numbers can be trusted:
 * - The GEMM baseline is not a guess at what the library calls: this program interposes
 *   cblas_dgemm / cblas_sgemm (the library calls them through the dynamic linker), records the
 *   exact calls of one training step (transposes, M, N, K, leading dims, alpha, beta), and replays
 *   them with the same cblas function on buffers of the same sizes.
 * - malloc, calloc, realloc, aligned_alloc, posix_memalign and memalign are interposed too and
 *   forwarded to glibc's __libc_* functions; they are counted only while a flag is set.
 * - OpenBLAS threads are set with openblas_set_num_threads() (1, then 2 for the second mlp_step
 *   line; every other case runs on 1 thread), which overrides OPENBLAS_NUM_THREADS.
 * Usage: bench_autograd [--steps N] [--case NAME]   (N: timed steps of mlp_step, default 40;
 *        NAME: run only that case: mlp_step, tiny_graph or steady_state_memory)
 * Needs OpenBLAS and glibc; not built under sanitizers (they interpose malloc themselves).
 */
#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flags.h"
#include "interpose.h"
#include "json.h"
#include "nodal.h"

/* --------------------------------------------------------------------------------------------- */
/* helpers                                                                                        */

static long rss_bytes(void)
{
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = -1;
    fclose(f);
    return pages_resident < 0 ? -1 : pages_resident * sysconf(_SC_PAGESIZE);
}

/* RssAnon from /proc/self/status in KiB: the heap and arena pages alone, without the shared
 * libraries' code pages that statm's count also holds (they page in as new code first runs). */
static long rss_anon_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static void die(nd_ctx *ctx, const char *what)
{
    fprintf(stderr, "bench_autograd: %s: %s (%s)\n", what, nd_ctx_errmsg(ctx),
            nd_status_str(nd_ctx_error(ctx)));
    exit(1);
}

/* --------------------------------------------------------------------------------------------- */
/* the model: an MLP with tanh between layers, MSE loss, plain SGD                                */

#define MAX_LAYERS 4

typedef struct {
    int n_layers;
    int dims[MAX_LAYERS + 1];
    int batch;
    nd_tensor *w[MAX_LAYERS];          /* (dims[l], dims[l+1]) persistent, requires grad */
    nd_tensor *b[MAX_LAYERS];          /* (dims[l+1],) persistent, requires grad */
    nd_tensor *params[2 * MAX_LAYERS]; /* w0, b0, w1, b1, ... */
    nd_tensor *x;                      /* (batch, dims[0]) persistent input */
    nd_tensor *y;                      /* (batch, dims[n_layers]) persistent target */
} mlp;

static void mlp_create(nd_ctx *ctx, mlp *m, int n_layers, const int *dims, int batch, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->n_layers = n_layers;
    m->batch = batch;
    memcpy(m->dims, dims, (size_t)(n_layers + 1) * sizeof *dims);
    nd_rng rng = nd_rng_seed(seed);
    for (int l = 0; l < n_layers; l++) {
        double bound = 1.0 / __builtin_sqrt((double)dims[l]); /* PyTorch's Linear init range */
        m->w[l] = nd_tensor_create(ctx, 2, (int[]){dims[l], dims[l + 1]}, true);
        m->b[l] = nd_tensor_create(ctx, 1, (int[]){dims[l + 1]}, true);
        if (!m->w[l] || !m->b[l]) die(ctx, "mlp_create");
        nd_fill_uniform(m->w[l], &rng, -bound, bound);
        nd_fill_uniform(m->b[l], &rng, -bound, bound);
        m->params[2 * l] = m->w[l];
        m->params[2 * l + 1] = m->b[l];
    }
    m->x = nd_tensor_create(ctx, 2, (int[]){batch, dims[0]}, false);
    m->y = nd_tensor_create(ctx, 2, (int[]){batch, dims[n_layers]}, false);
    if (!m->x || !m->y) die(ctx, "mlp_create");
    nd_fill_uniform(m->x, &rng, -1, 1);
    nd_fill_uniform(m->y, &rng, -1, 1);
}

static void mlp_destroy(mlp *m)
{
    for (int i = 0; i < 2 * m->n_layers; i++) nd_tensor_destroy(m->params[i]);
    nd_tensor_destroy(m->x);
    nd_tensor_destroy(m->y);
}

/* loss = mean((mlp(x) - y)^2), a scalar; NULL with the ctx error on failure */
static nd_tensor *mlp_loss(nd_ctx *ctx, const mlp *m)
{
    nd_tensor *h = m->x; /* (B, dims[l]) */
    for (int l = 0; l < m->n_layers; l++) {
        nd_tensor *z = nd_add(ctx, nd_matmul(ctx, h, m->w[l]), m->b[l]); /* (B, dims[l+1]) */
        h = l < m->n_layers - 1 ? nd_tanh(ctx, z) : z;
    }
    nd_tensor *d = nd_sub(ctx, h, m->y);           /* (B, D_out) */
    return nd_mean(ctx, nd_pow_scalar(ctx, d, 2)); /* scalar */
}

/* p -= lr * dp, and dp = 0 for the next step (nd_zero_grad's work, fused into the same pass) */
static void sgd_update(const mlp *m, nd_real lr)
{
    for (int i = 0; i < 2 * m->n_layers; i++) {
        nd_real *p = m->params[i]->data;  /* (size,) */
        nd_real *dp = m->params[i]->grad; /* (size,) */
        for (size_t k = 0; k < m->params[i]->size; k++) {
            p[k] -= lr * dp[k];
            dp[k] = 0;
        }
    }
}

/* One training step; fills the times of its parts in ns when t is not NULL. */
static void train_step(nd_ctx *ctx, const mlp *m, double t[3])
{
    double t0 = now_ns();
    nd_tensor *loss = mlp_loss(ctx, m);
    if (!loss) die(ctx, "forward");
    double t1 = now_ns();
    if (nd_backward(ctx, loss, 0) != ND_OK) die(ctx, "nd_backward");
    double t2 = now_ns();
    sgd_update(m, (nd_real)1e-3);
    nd_ctx_reset(ctx);
    double t3 = now_ns();
    if (t) t[0] = t1 - t0, t[1] = t2 - t1, t[2] = t3 - t2;
}

/* --------------------------------------------------------------------------------------------- */
/* mlp_step                                                                                       */

/* Buffers for one recorded call: A, B, C sized from the call's shapes and leading dims. */
static void bench_mlp_step(int threads, int n_steps)
{
    openblas_set_num_threads(threads);
    const int dims[] = {64, 512, 512, 64};
    const int batch = 256;
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    mlp m;
    mlp_create(ctx, &m, 3, dims, batch, 1);

    for (int i = 0; i < 3; i++) train_step(ctx, &m, NULL); /* warm-up: arena, caches, threads */
    g_n_calls = 0;
    g_record_gemm = true;
    train_step(ctx, &m, NULL);
    g_record_gemm = false;
    int n_calls = g_n_calls;
    double flops = recorded_flops(n_calls);

    /* the same calls on buffers of the same sizes */
    gemm_bufs bufs[MAX_CALLS];
    replay_buffers_create(bufs, n_calls, 2);

    /* Steps and GEMM rounds alternate, so a load from elsewhere on the machine slows both alike;
     * the ratio reported is the median of the per-pair ratios. */
    double *step = malloc(sizeof(double) * (size_t)n_steps * 8);
    if (!step) exit(1);
    double *fwd = step + n_steps, *bwd = fwd + n_steps, *upd = bwd + n_steps;
    double *gemm = upd + n_steps, *ratio = gemm + n_steps, *inside = ratio + n_steps;
    double *ratio_upd = inside + n_steps;
    for (int s = -3; s < n_steps; s++) { /* 3 warm-up pairs */
        double t[3];
        g_gemm_ns = 0;
        g_time_gemm = true;
        train_step(ctx, &m, t);
        g_time_gemm = false;
        double tg = replay_calls(bufs, n_calls);
        if (s < 0) continue;
        fwd[s] = t[0], bwd[s] = t[1], upd[s] = t[2];
        step[s] = t[0] + t[1] + t[2];
        gemm[s] = tg;
        ratio[s] = (t[0] + t[1]) / tg; /* the step: forward + backward */
        ratio_upd[s] = step[s] / tg;   /* and with the SGD update too */
        inside[s] = g_gemm_ns;
    }
    replay_buffers_destroy(bufs, n_calls);

    double step_ms = median(step, n_steps) / 1e6, gemm_ms = median(gemm, n_steps) / 1e6;
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "mlp_step");
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "threads", threads);
    json_int(&w, "batch", batch);
    json_int_array(&w, "dims", (int[]){64, 512, 512, 64}, 4);
    json_int(&w, "steps", n_steps);
    json_num(&w, "step_ms", step_ms);
    json_num(&w, "forward_ms", median(fwd, n_steps) / 1e6);
    json_num(&w, "backward_ms", median(bwd, n_steps) / 1e6);
    json_num(&w, "update_ms", median(upd, n_steps) / 1e6);
    json_num(&w, "gemm_ms", gemm_ms);
    json_int(&w, "gemm_calls", n_calls);
    json_num(&w, "gemm_gflops", flops / (gemm_ms * 1e6));
    json_num(&w, "gemm_inside_step_ms", median(inside, n_steps) / 1e6);
    json_num(&w, "ratio", median(ratio, n_steps));
    json_num(&w, "ratio_with_update", median(ratio_upd, n_steps));
    json_num(&w, "goal_ratio", 1.15);
    json_end(&w);
    fflush(stdout);
    free(step);
    mlp_destroy(&m);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */
/* tiny_graph                                                                                     */

/* Counts the op nodes reachable from roots that are not in `skip` (n_skip entries); adds every
 * node it meets to seen (capacity cap). Explicit stack: no recursion. */
#define MAX_NODES 4096
static int count_ops(nd_tensor **roots, int n_roots, nd_tensor **seen, int *n_seen)
{
    nd_tensor *stack[MAX_NODES];
    int sp = 0, count = 0;
    for (int r = 0; r < n_roots; r++) stack[sp++] = roots[r];
    while (sp > 0) {
        nd_tensor *t = stack[--sp];
        bool known = false;
        for (int i = 0; i < *n_seen && !known; i++) known = seen[i] == t;
        if (known || *n_seen == MAX_NODES) continue;
        seen[(*n_seen)++] = t;
        if (t->op == ND_OP_NONE) continue;
        count++;
        for (int i = 0; i < t->n_src && sp < MAX_NODES; i++) stack[sp++] = t->src[i];
    }
    return count;
}

static void bench_tiny_graph(void)
{
    openblas_set_num_threads(1);
    const int dims[] = {2, 50, 2};
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    mlp m;
    mlp_create(ctx, &m, 2, dims, 20, 3);

    /* Ops in one step. Forward: op nodes of the loss's graph. Backward: the same backward rules
     * run once under create_graph with a seed that requires grad, so every op they call is
     * recorded, and the new op nodes are counted; the timed backward runs the same calls
     * without recording. */
    static nd_tensor *seen[MAX_NODES];
    int n_seen = 0;
    nd_tensor *loss = mlp_loss(ctx, &m);
    if (!loss) die(ctx, "forward");
    int fwd_ops = count_ops(&loss, 1, seen, &n_seen);
    nd_tensor *seed = nd_ones_like(ctx, loss);
    if (!seed) die(ctx, "seed");
    seed->requires_grad = true;
    nd_tensor *grads[2 * MAX_LAYERS];
    if (nd_grad(ctx, &loss, &seed, 1, m.params, 2 * m.n_layers, grads, ND_CREATE_GRAPH) != ND_OK)
        die(ctx, "nd_grad");
    int bwd_ops = count_ops(grads, 2 * m.n_layers, seen, &n_seen);
    nd_ctx_reset(ctx);

    const int block = 2000, n_blocks = 21;
    double per_step[21];
    for (int s = 0; s < 2000; s++) { /* warm-up */
        loss = mlp_loss(ctx, &m);
        if (!loss || nd_backward(ctx, loss, 0) != ND_OK) die(ctx, "tiny step");
        nd_zero_grad(m.params, 2 * m.n_layers);
        nd_ctx_reset(ctx);
    }
    for (int k = 0; k < n_blocks; k++) {
        double t0 = now_ns();
        for (int s = 0; s < block; s++) {
            loss = mlp_loss(ctx, &m);
            if (!loss || nd_backward(ctx, loss, 0) != ND_OK) die(ctx, "tiny step");
            nd_zero_grad(m.params, 2 * m.n_layers);
            nd_ctx_reset(ctx);
        }
        per_step[k] = (now_ns() - t0) / block;
    }
    double step_ns = median(per_step, n_blocks);
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "tiny_graph");
    json_str(&w, "real", ND_REAL_NAME);
    json_int(&w, "batch", 20);
    json_int_array(&w, "dims", (int[]){2, 50, 2}, 3);
    json_int(&w, "forward_ops", fwd_ops);
    json_int(&w, "backward_ops", bwd_ops);
    json_num(&w, "step_us", step_ns / 1e3);
    json_num(&w, "ns_per_op", step_ns / (fwd_ops + bwd_ops));
    json_int(&w, "goal_ns_per_op", 1000);
    json_end(&w);
    fflush(stdout);
    mlp_destroy(&m);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */
/* steady_state_memory                                                                            */

static void bench_steady_state(void)
{
    openblas_set_num_threads(1);
    /* a step of about 1 MB of arena, so it spans more than one of the ctx's default 1 MiB chunks */
    const int dims[] = {16, 128, 128, 16};
    const int cycles = 10000, warmup = 100;
    nd_ctx *ctx = nd_ctx_create(0);
    if (!ctx) exit(1);
    mlp m;
    mlp_create(ctx, &m, 3, dims, 64, 4);
    long rss_warm = 0, anon_warm = 0;
    size_t cap_warm = 0, used = 0;
    double t0 = 0;
    for (int c = 1; c <= cycles; c++) {
        nd_tensor *loss = mlp_loss(ctx, &m);
        if (!loss) die(ctx, "forward");
        if (nd_backward(ctx, loss, 0) != ND_OK) die(ctx, "nd_backward");
        used = nd_ctx_used(ctx);
        sgd_update(&m, (nd_real)1e-3);
        nd_ctx_reset(ctx);
        if (c == warmup) {
            rss_warm = rss_bytes();
            anon_warm = rss_anon_kib();
            cap_warm = nd_ctx_capacity(ctx);
            t0 = now_ns();
            atomic_store(&g_allocs, 0);
            atomic_store(&g_blas_allocs, 0);
            atomic_store(&g_count_allocs, true);
        }
    }
    atomic_store(&g_count_allocs, false);
    double secs = (now_ns() - t0) / 1e9;
    long rss_end = rss_bytes(), anon_end = rss_anon_kib();
    json_writer w = json_begin(stdout);
    json_str(&w, "case", "steady_state_memory");
    json_str(&w, "real", ND_REAL_NAME);
    json_int_array(&w, "dims", (int[]){16, 128, 128, 16}, 4);
    json_int(&w, "batch", 64);
    json_int(&w, "cycles", cycles);
    json_int(&w, "warmup_cycles", warmup);
    json_int(&w, "mallocs_after_warmup", atomic_load(&g_allocs) + atomic_load(&g_blas_allocs));
    json_int(&w, "rss_kib_at_100", rss_warm / 1024);
    json_int(&w, "rss_kib_at_10000", rss_end / 1024);
    json_int(&w, "rss_anon_kib_at_100", anon_warm);
    json_int(&w, "rss_anon_kib_at_10000", anon_end);
    json_int(&w, "arena_bytes_used_per_step", (long long)used);
    json_int(&w, "arena_capacity_at_100", (long long)cap_warm);
    json_int(&w, "arena_capacity_at_10000", (long long)nd_ctx_capacity(ctx));
    json_num(&w, "seconds", secs);
    json_int(&w, "goal_mallocs", 0);
    json_end(&w);
    fflush(stdout);
    mlp_destroy(&m);
    nd_ctx_destroy(ctx);
}

/* --------------------------------------------------------------------------------------------- */

static const char *const case_names[] = {"all", "mlp_step", "tiny_graph", "steady_state_memory",
                                         NULL};

int main(int argc, char **argv)
{
    int n_steps = 40, which = 0;
    const flag_spec flags[] = {
        FLAG_INT("steps", &n_steps, 1, 1000000, "timed steps per case (medians)"),
        FLAG_CHOICE("case", &which, case_names, "the case to run"),
    };
    int rc = flags_parse("bench_autograd", "The autograd engine: speed, GEMM share, memory.", flags,
                         FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    bench_use_blas_gemm();
    const char *only = which ? case_names[which] : NULL;
    fprintf(stderr, "bench_autograd: nd_real = %s, %s\n", ND_REAL_NAME, OPENBLAS_VERSION);
    if (!only || !strcmp(only, "mlp_step")) {
        fprintf(stderr, "mlp_step, 1 thread...\n");
        bench_mlp_step(1, n_steps);
        fprintf(stderr, "mlp_step, 2 threads...\n");
        bench_mlp_step(2, n_steps);
    }
    if (!only || !strcmp(only, "tiny_graph")) {
        fprintf(stderr, "tiny_graph...\n");
        bench_tiny_graph();
    }
    if (!only || !strcmp(only, "steady_state_memory")) {
        fprintf(stderr, "steady_state_memory...\n");
        bench_steady_state();
    }
    return 0;
}

/* SPDX-License-Identifier: MIT
 * bench/adjoint_modes.c: which gradient mode to pick (README: "Choosing a gradient mode"). For
 * each workload and mode, in one run on one machine: the gradient's error against a
 * high-accuracy reference (backprop through dopri8 at rtol = atol = 1e-12; 1e-6 in a float build),
 * the evaluations of f forward, backward and recomputed (the interpolating adjoints' re-solves),
 * the backward's accepted steps, the memory the gradient took (the arena's high-water mark, which
 * grows in 1 MiB chunks, plus the heap the dense output of one checkpoint interval held) and the
 * backward's wall time (the least of 3 runs: the machine may be shared).
 *
 *   damped  y' = y A^T, 3-D, eigenvalues near -0.3 +- 2i and -10, over [0, 10] (3 outputs):
 *           run backwards, z's fast mode grows as e^(10 t), so the backsolve's z is noise
 *   lorenz  Lorenz-63 with (sigma, rho, beta) = (10, 28, 8/3) as parameters over [0, 3]
 *           (~2.7 Lyapunov times; 4 outputs): a chaotic flow, unstable in reverse
 *   mlp     f = tanh(y W1^T + b1) W2^T + b2, 2-64-2, batch 128, 11 outputs on [0, 10]: a neural
 *           ODE where every mode is right; memory and cost
 * With --sweep: the mlp workload at rtol 1e-3 .. 1e-8 (atol = rtol / 100) for the adjoint modes:
 * how each one's error follows the tolerance (the quadrature adjoint's has no norm to set).
 * One JSON object per line on stdout, progress on stderr.
 * Usage: adjoint_modes [--workloads damped,lorenz,mlp] [--rtol X] [--every N] [--checkpoints N]
 *                      [--sweep] [--quick]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"
#include "json.h"
#include "nodal.h"

/* The reference's tolerance: 1e-12 in double; a float build cannot resolve that (its steps
 * underflow), so there the reference is dopri8 at 1e-6, near float's resolution, and the errors
 * below ~1e-6 say nothing. */
#ifdef ND_REAL_FLOAT
#define REFERENCE_TOL 1e-6
#else
#define REFERENCE_TOL 1e-12
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * ts.tv_sec + 1e-6 * ts.tv_nsec;
}

/* ---- workloads ---------------------------------------------------------------------------- */

enum { MAX_PARAMS = 4, MLP_H = 64, MLP_B = 128, REPEATS = 3 };

typedef struct {
    const char *name;
    nd_ode_fn f;
    int n_params;
    nd_tensor *params[MAX_PARAMS]; /* requiring grad */
    nd_tensor *y0;                 /* requiring grad */
    double t0, t1;
    int n_t;
} workload;

static int linear_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    *dy = nd_matmul_t(c, y, ((workload *)u)->params[0], false, true);
    return *dy ? 0 : -1;
}

/* y = (x, y, z): (sigma (y - x), x (rho - z) - y, x y - beta z), params sigma, rho, beta */
static int lorenz_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    nd_tensor *const *p = ((workload *)u)->params;
    nd_tensor *x = nd_slice(c, y, 0, 0, 1), *v = nd_slice(c, y, 0, 1, 1),
              *z = nd_slice(c, y, 0, 2, 1);
    nd_tensor *dx = nd_mul(c, p[0], nd_sub(c, v, x));
    nd_tensor *dv = nd_sub(c, nd_mul(c, x, nd_sub(c, p[1], z)), v);
    nd_tensor *dz = nd_sub(c, nd_mul(c, x, v), nd_mul(c, p[2], z));
    *dy = nd_concat(c, (nd_tensor *[]){dx, dv, dz}, 3, 0);
    return *dy ? 0 : -1;
}

static int mlp_f(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    (void)t;
    nd_tensor *const *p = ((workload *)u)->params;
    nd_tensor *h = nd_tanh(c, nd_add(c, nd_matmul_t(c, y, p[0], false, true), p[1]));
    *dy = nd_add(c, nd_matmul_t(c, h, p[2], false, true), p[3]);
    return *dy ? 0 : -1;
}

static nd_tensor *persistent(nd_ctx *ctx, int ndim, const int *shape, const nd_real *v)
{
    nd_tensor *p = nd_tensor_create(ctx, ndim, shape, true);
    if (v) memcpy(p->data, v, p->size * sizeof(nd_real));
    return p;
}

static void make_workload(nd_ctx *ctx, const char *name, bool quick, workload *w)
{
    memset(w, 0, sizeof *w);
    w->name = name;
    if (strcmp(name, "damped") == 0) {
        *w = (workload){name, linear_f, 1, .t0 = 0, .t1 = 10, .n_t = 3};
        w->params[0] = persistent(ctx, 2, (int[]){3, 3},
                                  (nd_real[]){-0.3, 2.0, 0.5, -2.0, -0.3, 0.4, 0.6, 0.2, -10});
        w->y0 = persistent(ctx, 2, (int[]){1, 3}, (nd_real[]){1.0, -0.5, 2.0});
    } else if (strcmp(name, "lorenz") == 0) {
        *w = (workload){name, lorenz_f, 3, .t0 = 0, .t1 = 3, .n_t = 4};
        w->params[0] = persistent(ctx, 0, NULL, (nd_real[]){10});
        w->params[1] = persistent(ctx, 0, NULL, (nd_real[]){28});
        w->params[2] = persistent(ctx, 0, NULL, (nd_real[]){8.0 / 3});
        w->y0 = persistent(ctx, 1, (int[]){3}, (nd_real[]){-8, 7, 27});
    } else {
        *w = (workload){name, mlp_f, 4, .t0 = 0, .t1 = 10, .n_t = 11};
        nd_rng rng = nd_rng_seed(3);
        int shapes[4][2] = {{MLP_H, 2}, {MLP_H, 0}, {2, MLP_H}, {2, 0}};
        for (int i = 0; i < 4; i++) {
            w->params[i] = persistent(ctx, shapes[i][1] ? 2 : 1, shapes[i], NULL);
            nd_fill_normal(w->params[i], &rng, 0, i % 2 ? 0.1 : 1.0 / sqrt(shapes[i][1] + 1));
        }
        w->y0 = persistent(ctx, 2, (int[]){MLP_B, 2}, NULL);
        nd_fill_normal(w->y0, &rng, 0, 1);
        if (quick) w->t1 = 2, w->n_t = 3;
    }
}

static void free_workload(workload *w)
{
    for (int i = 0; i < w->n_params; i++) nd_tensor_destroy(w->params[i]);
    nd_tensor_destroy(w->y0);
}

/* the number of gradient entries: y0's and the params' */
static size_t n_grads(const char *name)
{
    nd_ctx *ctx = nd_ctx_create(0);
    workload w;
    make_workload(ctx, name, false, &w);
    size_t n = w.y0->size;
    for (int i = 0; i < w.n_params; i++) n += w.params[i]->size;
    free_workload(&w);
    nd_ctx_destroy(ctx);
    return n;
}

/* ---- one measured solve ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    nd_grad_mode grad;
    nd_norm_kind norm;
    bool every; /* checkpoint_every = --every */
} mode;

static const mode modes[] = {
    {"backprop", ND_GRAD_BACKPROP, ND_NORM_RMS, false},
    {"adjoint", ND_GRAD_ADJOINT, ND_NORM_RMS, false},
    {"adjoint_seminorm", ND_GRAD_ADJOINT, ND_NORM_SEMINORM, false},
    {"interp", ND_GRAD_INTERP_ADJOINT, ND_NORM_RMS, false},
    {"interp_seminorm", ND_GRAD_INTERP_ADJOINT, ND_NORM_SEMINORM, false},
    {"interp_seminorm_every", ND_GRAD_INTERP_ADJOINT, ND_NORM_SEMINORM, true},
    {"quadrature", ND_GRAD_QUADRATURE_ADJOINT, ND_NORM_RMS, false},
    {"quadrature_every", ND_GRAD_QUADRATURE_ADJOINT, ND_NORM_RMS, true},
    {"checkpointed", ND_GRAD_CHECKPOINTED, ND_NORM_RMS, false},
};
#define N_MODES ((int)(sizeof modes / sizeof modes[0]))

typedef struct {
    bool ok;
    nd_ode_stats st;
    size_t arena_bytes;
    double ms_backward, error;
} measured;

/* One solve and its gradient in a fresh ctx, the workload's tensors made in it (the engine's
 * sweep state is per ctx): loss = sum over the outputs of sum(y^2); grads (y0, then params) into
 * g. */
static measured run(const char *name, bool quick, const nd_ode_options *o, nd_real *g)
{
    measured r = {0};
    nd_ctx *ctx = nd_ctx_create(0);
    workload w;
    make_workload(ctx, name, quick, &w);
    nd_tensor *t = nd_tensor_new(ctx, 1, (int[]){w.n_t});
    for (int i = 0; i < w.n_t; i++) t->data[i] = (nd_real)(w.t0 + (w.t1 - w.t0) * i / (w.n_t - 1));
    nd_tensor *ys = nd_odeint(ctx, w.f, &w, w.y0, t, w.params, w.n_params, o);
    nd_tensor *L = nd_sum(ctx, nd_mul(ctx, ys, ys));
    nd_tensor *in[1 + MAX_PARAMS] = {w.y0}, *grads[1 + MAX_PARAMS];
    for (int i = 0; i < w.n_params; i++) in[1 + i] = w.params[i];
    double t0 = now_ms();
    r.ok = L && nd_grad(ctx, &L, NULL, 1, in, 1 + w.n_params, grads, 0) == ND_OK;
    r.ms_backward = now_ms() - t0;
    if (r.ok) {
        r.st = *nd_odeint_stats(ys);
        size_t k = 0;
        for (int i = 0; i <= w.n_params; i++)
            for (size_t e = 0; e < grads[i]->size; e++) g[k++] = grads[i]->data[e];
    } else {
        fprintf(stderr, "  failed: %s\n", nd_ctx_errmsg(ctx));
    }
    r.arena_bytes = nd_ctx_capacity(ctx);
    free_workload(&w);
    nd_ctx_destroy(ctx);
    return r;
}

/* max |g - ref| / max |ref| */
static double grad_error(const nd_real *g, const nd_real *ref, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t k = 0; k < n; k++) {
        worst = fmax(worst, fabs((double)g[k] - ref[k]));
        scale = fmax(scale, fabs((double)ref[k]));
    }
    return isfinite(worst) ? worst / scale : INFINITY;
}

static void report(const char *name, const mode *m, const nd_ode_options *o, const measured *r)
{
    json_writer j = json_begin(stdout);
    json_str(&j, "workload", name);
    json_str(&j, "mode", m->name);
    json_str(&j, "grad", nd_ode_grad_name(m->grad));
    json_str(&j, "norm", nd_ode_norm_name(m->norm));
    json_int(&j, "checkpoint_every", o->checkpoint_every);
    json_int(&j, "checkpoints", m->grad == ND_GRAD_CHECKPOINTED ? o->checkpoints : 0);
    json_num(&j, "rtol", o->solver.rtol);
    json_num(&j, "reference_tol", REFERENCE_TOL);
    json_num(&j, "atol", o->solver.atol);
    json_bool(&j, "ok", r->ok);
    json_num_prec(&j, "grad_rel_error", r->error, 3);
    json_int(&j, "nfe_forward", r->st.forward.nfe);
    json_int(&j, "nfe_backward", r->st.backward.nfe);
    json_int(&j, "nfe_recomputed", r->st.recomputed.nfe);
    json_int(&j, "nfe_total", r->st.forward.nfe + r->st.backward.nfe + r->st.recomputed.nfe);
    json_int(&j, "accepted_forward", r->st.forward.accepted);
    json_int(&j, "accepted_backward", r->st.backward.accepted);
    json_int(&j, "arena_bytes", (long long)r->arena_bytes);
    json_int(&j, "dense_bytes", (long long)r->st.dense_bytes);
    json_int(&j, "memory_bytes", (long long)(r->arena_bytes + r->st.dense_bytes));
    json_num(&j, "ms_backward", r->ms_backward);
    json_end(&j);
}

/* every mode in which on one workload at one tolerance, against the reference ref */
static void bench_workload(const char *name, bool quick, double rtol, int every, int checkpoints,
                           const nd_real *ref, const int *which, int n_which)
{
    size_t n = n_grads(name);
    nd_real *g = calloc(n, sizeof *g);
    for (int k = 0; k < n_which; k++) {
        const mode *m = &modes[which[k]];
        nd_ode_options o = ND_ODE_DEFAULT;
        o.solver.rtol = rtol, o.solver.atol = rtol * 1e-2;
        o.grad = m->grad, o.adjoint.norm = m->norm;
        o.checkpoint_every = m->every ? every : 0;
        o.checkpoints = checkpoints;
        fprintf(stderr, "adjoint_modes: %s %s rtol %g\n", name, m->name, rtol);
        measured r = run(name, quick, &o, g);
        for (int rep = 1; rep < REPEATS && r.ok; rep++)
            r.ms_backward = fmin(r.ms_backward, run(name, quick, &o, g).ms_backward);
        r.error = r.ok ? grad_error(g, ref, n) : NAN;
        report(name, m, &o, &r);
    }
    free(g);
}

static nd_real *reference(const char *name, bool quick)
{
    nd_real *ref = calloc(n_grads(name), sizeof *ref);
    nd_ode_options o = ND_ODE_DEFAULT;
    o.solver.method = ND_DOPRI8;
    o.solver.rtol = o.solver.atol = REFERENCE_TOL;
    o.grad = ND_GRAD_BACKPROP;
    fprintf(stderr, "adjoint_modes: %s reference (backprop, dopri8 at %g)\n", name, REFERENCE_TOL);
    if (!run(name, quick, &o, ref).ok) {
        free(ref);
        return NULL;
    }
    return ref;
}

int main(int argc, char **argv)
{
    const char *list = "damped,lorenz,mlp";
    double rtol = 1e-6;
    int every = 16, checkpoints = 8;
    bool sweep = false, quick = false;
    const flag_spec flags[] = {
        FLAG_STRING("workloads", &list, "LIST", "comma-separated: damped, lorenz, mlp"),
        FLAG_POSITIVE("rtol", &rtol, "forward and adjoint rtol (atol = rtol / 100)"),
        FLAG_INT("every", &every, 1, 1000000, "checkpoint_every of the *_every modes"),
        FLAG_INT("checkpoints", &checkpoints, 1, 1000000, "checkpoints of the checkpointed mode"),
        FLAG_BOOL("sweep", &sweep, "also the mlp workload at rtol 1e-3 .. 1e-8"),
        FLAG_BOOL("quick", &quick, "rtol 1e-4, the mlp on [0, 2]: seconds, for CI"),
    };
    int rc = flags_parse("adjoint_modes",
                         "Every gradient mode's error against a dopri8 reference, evaluations, "
                         "memory and time, side by side.",
                         flags, FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    const char *known[3] = {"damped", "lorenz", "mlp"};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        bool ok = false;
        for (int i = 0; i < 3; i++) ok |= strcmp(tok, known[i]) == 0;
        if (!ok) {
            fprintf(stderr,
                    "adjoint_modes: --workloads: unknown workload '%s' (damped, lorenz, mlp)\n",
                    tok);
            return 2;
        }
    }
    if (quick) rtol = 1e-4;
    int all[N_MODES];
    for (int i = 0; i < N_MODES; i++) all[i] = i;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        nd_real *ref = reference(tok, quick);
        if (!ref) return 1;
        bench_workload(tok, quick, rtol, every, checkpoints, ref, all, N_MODES);
        if (sweep && strcmp(tok, "mlp") == 0) {
            const int sweep_modes[5] = {0, 1, 3, 4, 6};
            for (double r = 1e-3; r >= 0.99e-8; r /= 10)
                bench_workload(tok, quick, r, every, checkpoints, ref, sweep_modes, 5);
        }
        free(ref);
    }
    return 0;
}

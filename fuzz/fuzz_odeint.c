/* SPDX-License-Identifier: MIT
 * fuzz/fuzz_odeint.c: libFuzzer target for what users feed the solver. The input is decoded into
 * a whole nd_odeint call: the method, tolerances and per-block tolerances, first / min / max step,
 * max_num_steps (always a small budget, so no input hangs), step_size and grid, step_t / jump_t,
 * the output times, the norms, the controller and its constants, the gradient mode, the adjoint's
 * options (inherited or overridden field by field), a single or tuple state, grad mode on or off,
 * and one of a few small dynamics (linear, tanh MLP, stiff, a Hamiltonian through nd_ode_vjp).
 * Each input runs forward and, when something requires grad, backward; a single state also
 * goes through a dense solution (evaluated at a decoded time) and an event search (the first
 * component crossing a decoded level), each with a backward when it is differentiable.
 *
 * It aborts when f is handed a time or state that is not finite, when a call fails without a
 * message, or when it succeeds with an error recorded. Built by fuzz/run.sh.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "odeint/odeint.h"

enum { D = 2, H = 3, MAX_BLOCKS = 3, MAX_T = 5, MAX_BP = 3, MAX_GRID = 4, BUDGET = 64 };

/* ---- decoding ----------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned byte(reader *r)
{
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

/* values users get wrong: signs, zeros, extremes, NaN, infinities, and ordinary ones */
static const double interesting[] = {
    0,         -0.0,   1,      -1,     0.5,   2,     10,    0.1, 1e-3,  1e-6,   1e-9,
    1e-12,     1e-160, 1e-300, 5e-324, 1e300, 1e308, -1e-3, 100, 0.25,  NAN,    INFINITY,
    -INFINITY, 3,      -2,     1e-5,   0.9,   0.2,   0.7,   0.4, 1e-15, 1e-100,
};

#define N_INTERESTING ((unsigned)(sizeof interesting / sizeof interesting[0]))

static double number(reader *r)
{
    unsigned b = byte(r);
    if (b < 224) return interesting[b % N_INTERESTING];
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | byte(r);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* mostly valid, sometimes not */
static int pick(reader *r, int n_valid)
{
    unsigned b = byte(r);
    return b < 240 ? (int)(b % (unsigned)n_valid) : (int)b - 250;
}

/* ---- the dynamics ------------------------------------------------------------------------- */

typedef enum { DYN_LINEAR, DYN_MLP, DYN_STIFF, DYN_HAMILTONIAN, DYN_COUNT } dyn_kind;

typedef struct {
    dyn_kind kind;
    int reject_every; /* > 0: return 1 (reject the step) on every such call */
    long calls;
} problem;

static nd_tensor *A, *W1, *b1, *W2; /* (D, D), (H, D), (H,), (D, H): persistent parameters */

static void check_input(nd_tensor *t, nd_tensor *const *y, int n)
{
    if (!isfinite((double)t->data[0])) abort(); /* a NaN or infinite time handed to f */
    for (int i = 0; i < n; i++)
        if (!nd_all_finite(y[i])) abort(); /* a non-finite state handed to f */
}

static nd_tensor *mlp(nd_ctx *c, nd_tensor *y)
{
    nd_tensor *h = nd_tanh(c, nd_add(c, nd_matmul_t(c, y, W1, false, true), b1)); /* (R, H) */
    return nd_matmul_t(c, h, W2, false, true);                                    /* (R, D) */
}

/* dH/dy rotated: a Hamiltonian field whose f takes a derivative of its own output */
static nd_tensor *hamiltonian(nd_ctx *c, nd_tensor *y)
{
    nd_ode_diff d;
    nd_tensor *yl = y, *g = NULL;
    if (nd_ode_diff_begin(c, &d, &yl, 1) != ND_OK) return NULL;
    nd_tensor *energy = nd_sum(c, mlp(c, yl));
    nd_status st = energy ? nd_ode_vjp(c, &d, &energy, NULL, 1, &yl, 1, &g) : nd_ctx_error(c);
    nd_tensor *dy = st == ND_OK ? nd_matmul_t(c, g, A, false, true) : NULL;
    return nd_ode_diff_end(c, &d, &dy, 1) == ND_OK ? dy : NULL;
}

static nd_tensor *one_block(nd_ctx *c, const problem *pb, nd_tensor *t, nd_tensor *y)
{
    switch (pb->kind) {
    case DYN_LINEAR:
        return nd_add(c, nd_matmul_t(c, y, A, false, true), t);
    case DYN_MLP:
        return mlp(c, y);
    case DYN_STIFF:
        return nd_mul_scalar(c, nd_sub(c, nd_sin(c, t), y), 1e4);
    default:
        return hamiltonian(c, y);
    }
}

static int dynamics(nd_ctx *c, nd_tensor *t, nd_tensor *const *y, int n, nd_tensor **dy, void *u)
{
    problem *pb = u;
    check_input(t, y, n);
    if (pb->reject_every > 0 && ++pb->calls % pb->reject_every == 0) return 1;
    for (int i = 0; i < n; i++)
        if (!(dy[i] = one_block(c, pb, t, y[i]))) return -1;
    return 0;
}

static int dynamics1(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    return dynamics(c, t, &y, 1, dy, u);
}

/* a user norm: the largest scaled error of the blocks it is shown */
static double max_norm(int n_blocks, const nd_real *const *blocks, const size_t *sizes,
                       const nd_block_role *roles, void *data)
{
    (void)roles, (void)data;
    double m = 0;
    for (int b = 0; b < n_blocks; b++)
        for (size_t i = 0; i < sizes[b]; i++) m = fmax(m, fabs((double)blocks[b][i]));
    return m;
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct {
    double rtol_blocks[MAX_BLOCKS], atol_blocks[MAX_BLOCKS], grid[MAX_GRID];
} solver_arrays;

static void decode_solver(reader *r, nd_solver_options *o, solver_arrays *a, bool adjoint)
{
    unsigned set = adjoint ? byte(r) | byte(r) << 8 : 0xffffu; /* which fields the adjoint sets */
    if (set & 1) o->method = (nd_ode_method)pick(r, ND_METHOD_COUNT);
    if (set & 2) o->rtol = number(r), o->atol = number(r);
    if (set & 4 && byte(r) < 64) {
        for (int i = 0; i < MAX_BLOCKS; i++) a->rtol_blocks[i] = number(r);
        for (int i = 0; i < MAX_BLOCKS; i++) a->atol_blocks[i] = number(r);
        o->rtol_blocks = a->rtol_blocks, o->atol_blocks = byte(r) & 1 ? a->atol_blocks : NULL;
    }
    if (set & 8 && byte(r) < 96) o->first_step = number(r);
    if (set & 16 && byte(r) < 64) o->min_step = number(r);
    if (set & 32 && byte(r) < 64) o->max_step = number(r);
    if (set & 64) o->max_num_steps = 1 + byte(r) % BUDGET; /* the step budget: never a hang */
    if (set & 128 && byte(r) < 128) o->step_size = number(r);
    if (set & 256 && byte(r) < 48) {
        o->n_grid = (int)(byte(r) % (MAX_GRID + 1));
        for (int i = 0; i < o->n_grid; i++) a->grid[i] = number(r);
        o->grid = a->grid;
    }
    if (set & 512) o->norm = (nd_norm_kind)pick(r, ND_NORM_USER + 1);
    o->norm_fn = o->norm == ND_NORM_USER && byte(r) < 224 ? max_norm : NULL;
    if (set & 1024) o->controller = (nd_controller)pick(r, 2);
    if (set & 2048 && byte(r) < 64) o->safety = number(r), o->ifactor = number(r);
    if (set & 4096 && byte(r) < 64) o->dfactor = number(r);
    if (set & 8192 && byte(r) < 64) o->pi_beta1 = number(r), o->pi_beta2 = number(r);
}

typedef struct {
    solver_arrays fwd, adj;
    double step_t[MAX_BP], jump_t[MAX_BP];
} option_arrays;

static void decode_options(reader *r, nd_ode_options *o, option_arrays *a)
{
    *o = ND_ODE_DEFAULT;
    decode_solver(r, &o->solver, &a->fwd, false);
    if (o->solver.max_num_steps > BUDGET) o->solver.max_num_steps = BUDGET;
    unsigned how = byte(r);
    if (how < 32) o->adjoint = ND_SOLVER_DEFAULT;
    decode_solver(r, &o->adjoint, &a->adj, true);
    if (o->adjoint.max_num_steps > BUDGET) o->adjoint.max_num_steps = BUDGET;
    o->grad = (nd_grad_mode)pick(r, ND_GRAD_CHECKPOINTED + 1); /* every gradient mode */
    o->checkpoint_every = (int)pick(r, 4);                     /* 0: output times only */
    o->checkpoints = (int)pick(r, 4);                          /* 0 is an error */
    o->n_step_t = (int)(byte(r) % (MAX_BP + 1));
    o->n_jump_t = (int)(byte(r) % (MAX_BP + 1));
    for (int i = 0; i < o->n_step_t; i++) a->step_t[i] = number(r);
    for (int i = 0; i < o->n_jump_t; i++) a->jump_t[i] = number(r);
    o->step_t = a->step_t, o->jump_t = a->jump_t;
}

/* ---- one input ---------------------------------------------------------------------------- */

static nd_ctx *ctx;

static void init(void)
{
    ctx = nd_ctx_create(0);
    A = nd_tensor_create(ctx, 2, (int[]){D, D}, true);
    W1 = nd_tensor_create(ctx, 2, (int[]){H, D}, true);
    b1 = nd_tensor_create(ctx, 1, (int[]){H}, true);
    W2 = nd_tensor_create(ctx, 2, (int[]){D, H}, true);
    nd_rng rng = nd_rng_seed(5);
    nd_fill_normal(A, &rng, 0, 0.5);
    nd_fill_normal(W1, &rng, 0, 0.5);
    nd_fill_normal(b1, &rng, 0, 0.5);
    nd_fill_normal(W2, &rng, 0, 0.5);
}

/* an outcome is a result with no error, or no result with a message */
static void check_outcome(bool ok)
{
    nd_status st = nd_ctx_error(ctx);
    if (ok && st != ND_OK) abort();
    if (!ok && (st == ND_OK || !nd_ctx_errmsg(ctx)[0])) abort();
}

/* g(t, y): the first component minus a level (f and g share the user data: the level is here) */
static double event_level;

static nd_tensor *level_crossing(nd_ctx *c, nd_tensor *t, nd_tensor *y, void *u)
{
    (void)u;
    check_input(t, &y, 1);
    nd_tensor *flat = nd_reshape(c, y, 1, (int[]){(int)y->size});
    return nd_sub(c, nd_slice(c, flat, 0, 0, 1), nd_scalar(c, (nd_real)event_level));
}

/* the state's trajectory from t[0] to t[n_t - 1] as a dense solution, and an event on it */
static void dense_and_event(reader *r, problem *pb, nd_tensor *y0, nd_tensor *t, nd_tensor **params,
                            const nd_ode_options *o)
{
    double t0 = t->data[0], t1 = t->data[t->size - 1], x = byte(r) / 255.0;
    nd_mark m = nd_ctx_mark(ctx);
    nd_ode_solution *sol = nd_ode_solution_create(ctx, dynamics1, pb, y0, t0, t1, params, 4, o);
    check_outcome(sol != NULL);
    nd_tensor *y = sol ? nd_ode_solution_at(ctx, sol, t0 + x * (t1 - t0)) : NULL;
    if (sol) check_outcome(y != NULL);
    nd_tensor *loss = y ? nd_sum(ctx, nd_mul(ctx, y, y)) : NULL;
    if (loss && loss->requires_grad) check_outcome(nd_backward(ctx, loss, 0) == ND_OK);
    if (sol && byte(r) & 1) { /* an out-of-range time is an error, never a crash */
        check_outcome(nd_ode_solution_at(ctx, sol, t1 + (t1 - t0)) != NULL);
        nd_ctx_clear_error(ctx);
    }
    nd_ode_solution_destroy(sol);
    nd_ctx_clear_error(ctx);
    nd_ctx_rewind(ctx, m);

    event_level = number(r);
    nd_event_options eo = {.direction = (int)(byte(r) % 3) - 1, .tol = byte(r) < 128 ? 0 : 1e-3};
    nd_tensor *te = NULL, *ye = NULL;
    nd_status st = nd_odeint_event(ctx, dynamics1, level_crossing, pb, y0, t0, t1, params, 4, o,
                                   &eo, &te, &ye);
    check_outcome(st == ND_OK);
    if ((st == ND_OK) != (te && ye)) abort();
    loss = te ? nd_add(ctx, te, nd_sum(ctx, ye)) : NULL;
    if (loss && loss->requires_grad) check_outcome(nd_backward(ctx, loss, 0) == ND_OK);
    nd_ctx_clear_error(ctx);
}

static nd_tensor *times(reader *r)
{
    int n_t = 1 + (int)(byte(r) % MAX_T);
    nd_tensor *t = nd_tensor_new(ctx, 1, &n_t);
    double v = number(r), step = byte(r) < 200 ? 0.1 + byte(r) / 64.0 : number(r);
    if (byte(r) & 1) step = -step;
    for (int i = 0; i < n_t; i++, v += step) t->data[i] = (nd_real)v;
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) init();
    nd_ctx_reset(ctx);
    reader r = {data, size};
    problem pb = {.kind = (dyn_kind)(byte(&r) % DYN_COUNT)};
    pb.reject_every = byte(&r) < 32 ? 2 + (int)(byte(&r) % 5) : 0;
    int n_y = 1 + (int)(byte(&r) % MAX_BLOCKS);
    nd_tensor *y0s[MAX_BLOCKS], *ys[MAX_BLOCKS];
    for (int b = 0; b < n_y; b++) {
        y0s[b] = nd_tensor_new(ctx, 2, (int[]){1 + (int)(byte(&r) % 2), D});
        for (size_t i = 0; i < y0s[b]->size; i++) y0s[b]->data[i] = (nd_real)number(&r);
        y0s[b]->requires_grad = byte(&r) & 1;
    }
    nd_tensor *t = times(&r);
    t->requires_grad = byte(&r) < 64;
    nd_ode_options o;
    option_arrays arrays;
    decode_options(&r, &o, &arrays);
    /* backprop through a solve whose f takes a VJP: each VJP walks the whole tape so far, so the
     * cost grows with the square of the steps; keep that case's tape short */
    bool taped = o.grad == ND_GRAD_BACKPROP || o.grad == ND_GRAD_CHECKPOINTED;
    if (pb.kind == DYN_HAMILTONIAN && taped && o.solver.max_num_steps > 8)
        o.solver.max_num_steps = 8;
    bool grad_on = byte(&r)<200, tuple = n_y> 1 || byte(&r) & 1;
    nd_tensor *params[4] = {A, W1, b1, W2};
    for (int i = 0; i < 4; i++) nd_zero_grad(&params[i], 1);

    bool prev = nd_ctx_set_grad(ctx, grad_on);
    nd_tensor *out = tuple ? nd_odeint_tuple(ctx, dynamics, &pb, y0s, n_y, t, params, 4, &o, ys)
                           : nd_odeint(ctx, dynamics1, &pb, y0s[0], t, params, 4, &o);
    nd_ctx_set_grad(ctx, prev);
    check_outcome(out != NULL);
    if (!out) return 0;
    if (!nd_odeint_stats(out)) abort();
    nd_tensor *loss = nd_sum(ctx, nd_mul(ctx, out, out));
    if (grad_on && loss && loss->requires_grad) {
        nd_status st = nd_backward(ctx, loss, 0);
        check_outcome(st == ND_OK);
    }
    nd_ctx_clear_error(ctx);
    if (!tuple && t->size >= 2) {
        prev = nd_ctx_set_grad(ctx, grad_on);
        dense_and_event(&r, &pb, y0s[0], t, params, &o);
        nd_ctx_set_grad(ctx, prev);
    }
    return 0;
}

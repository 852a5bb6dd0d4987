/* SPDX-License-Identifier: MIT
 * odeint/checkpoint.c: checkpointed backprop (ND_GRAD_CHECKPOINTED): the gradient of backprop
 * through the solver, without keeping the tape of the whole solve.
 *
 * The forward solve runs untaped and keeps at most C = opts.checkpoints solver states (the state,
 * f for the next step's first stage, the next step's size, the PI controller's memory, the next
 * breakpoints: all the solve needs to go on exactly as it did). The schedule is bounded and
 * online, since the number of steps N is unknown until the end: a state is kept every `stride`
 * accepted steps, starting with the initial one; when C are kept and another is due, every other
 * one is dropped and the stride doubles. So the kept states are stride apart, N / C <= stride <
 * 2 N / C (for N >= C). The states grow on the heap during the solve (doubling, up to C) and
 * move into the arena when it ends, as the interpolating adjoints' checkpoints do (replay.c):
 * memory follows the min(N + 1, C) states kept, not C.
 *
 * The backward goes through the segments between kept states from the last to the first: each is
 * solved again, taped, from its state (the same steps, rejections and outputs, since the solve is
 * deterministic), and nd_grad takes the outputs inside it and its end state (y, f) back to its
 * start state (y, f) and the params, seeded by dL/d(outputs) and by what the later segment gave
 * its start. Memory is the kept states plus one segment's tape (under 2 N / C steps); every step is
 * solved twice in all (recomputed = forward). With C >= N it is backprop through the solver, one
 * step at a time. A simpler schedule than revolve's (Griewank & Walther 2000), whose binomial
 * placement needs N in advance and recomputes more to save more; diffrax uses it with a
 * user-given max_steps.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "odeint/interp.h"
#include "odeint/odeint_internal.h"

struct nd_checkpoints {
    nd_forward_system fs; /* first: the solve sees its sys, our hooks in it */
    nd_odeint_saved *sv;
    size_t n;
    int cap, n_kept;
    long stride, total; /* the kept states' spacing; the forward's accepted steps */
    /* during the forward solve: the states on the heap, room for heap_cap <= cap of them, doubled
     * as needed (a short solve keeps few: memory follows the states kept, not cap) */
    int heap_cap;
    nd_solver_state *hk; /* (heap_cap,) y and f unused */
    nd_real *hy, *hf;    /* (heap_cap, n) */
    /* after it: the n_kept states in the arena */
    nd_solver_state *kept; /* (n_kept,) each state's y and f: views into Y and F */
    nd_tensor *Y, *F;      /* (n_kept n,) */
    /* a replayed segment: where it stops, its last step's interpolant and end state */
    long stop_at;
    nd_interp last;
    nd_tensor *end_y, *end_f;
};

/* ---- the forward solve: keeping states ---------------------------------------------------- */

static void keep_state(nd_checkpoints *cp, int slot, const nd_solver_state *st)
{
    cp->hk[slot] = *st;
    cp->hk[slot].y = cp->hk[slot].f = NULL;
    memcpy(cp->hy + (size_t)slot * cp->n, st->y->data, cp->n * sizeof(nd_real));
    memcpy(cp->hf + (size_t)slot * cp->n, st->f->data, cp->n * sizeof(nd_real));
}

/* drops every other kept state (the odd ones) */
static void thin(nd_checkpoints *cp)
{
    int m = 0;
    size_t n = cp->n;
    for (int i = 0; i < cp->n_kept; i += 2) {
        if (i != m) {
            cp->hk[m] = cp->hk[i];
            memcpy(cp->hy + (size_t)m * n, cp->hy + (size_t)i * n, n * sizeof(nd_real));
            memcpy(cp->hf + (size_t)m * n, cp->hf + (size_t)i * n, n * sizeof(nd_real));
        }
        m++;
    }
    cp->n_kept = m;
    cp->stride *= 2;
}

static bool regrow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes);
    if (q) *p = q;
    return q != NULL;
}

/* room for one more state on the heap: the capacity doubled, at most cap */
static bool grow(nd_ctx *ctx, nd_checkpoints *cp)
{
    int c = cp->heap_cap ? cp->heap_cap : 4;
    if (cp->heap_cap) c = c > cp->cap / 2 ? cp->cap : 2 * c;
    if (c > cp->cap) c = cp->cap;
    size_t n = cp->n;
    if (!regrow((void **)&cp->hk, (size_t)c * sizeof *cp->hk) ||
        !regrow((void **)&cp->hy, (size_t)c * n * sizeof(nd_real)) ||
        !regrow((void **)&cp->hf, (size_t)c * n * sizeof(nd_real))) {
        nd_fail(ctx, ND_ERR_NOMEM, "%s: out of memory keeping %d solver states of %zu elements",
                cp->sv->us.what, c, n);
        return false;
    }
    cp->heap_cap = c;
    return true;
}

static void free_heap(nd_checkpoints *cp)
{
    free(cp->hk), free(cp->hy), free(cp->hf);
    cp->hk = NULL, cp->hy = cp->hf = NULL, cp->heap_cap = 0;
}

static int record_state(nd_ode_system *sys, nd_ctx *ctx, const nd_solver_state *st)
{
    nd_checkpoints *cp = (nd_checkpoints *)sys;
    cp->total = st->accepted;
    if (st->accepted % cp->stride != 0) return 0;
    if (cp->n_kept == cp->cap) {
        if (cp->cap == 1) return 0; /* the initial state only: backprop in one segment */
        thin(cp);
        if (st->accepted % cp->stride != 0) return 0;
    }
    if (cp->n_kept == cp->heap_cap && !grow(ctx, cp)) return -1;
    keep_state(cp, cp->n_kept++, st);
    return 0;
}

bool nd_checkpoint_begin(nd_ctx *ctx, nd_odeint_saved *sv, const nd_forward_system *fs)
{
    const char *what = sv->us.what;
    if (!nd_tableau_get(sv->opts.solver.method)->c_error) {
        nd_fail(ctx, ND_ERR_ARG,
                "%s: ND_GRAD_CHECKPOINTED needs an adaptive method (%s is fixed-step; use "
                "ND_GRAD_BACKPROP)",
                what, nd_ode_method_name(sv->opts.solver.method));
        return false;
    }
    if (sv->t_grad) {
        nd_fail(ctx, ND_ERR_ARG,
                "%s: ND_GRAD_CHECKPOINTED does not give dL/dt (t requires grad); use "
                "ND_GRAD_BACKPROP or an adjoint mode",
                what);
        return false;
    }
    nd_checkpoints *cp = nd_ctx_alloc(ctx, sizeof *cp);
    int cap = sv->opts.checkpoints;
    size_t n = sv->us.n;
    if (!cp) return false;
    *cp = (nd_checkpoints){.fs = *fs, .sv = sv, .n = n, .cap = cap, .stride = 1};
    if ((double)cap * (double)n > (double)INT32_MAX) {
        nd_fail(ctx, ND_ERR_SHAPE, "%s: %d checkpoints of a state of %zu elements are too many",
                what, cap, n);
        return false;
    }
    cp->fs.sys.on_state = record_state;
    sv->ckpt = cp;
    return !nd_ctx_error(ctx);
}

nd_ode_system *nd_checkpoint_system(nd_odeint_saved *sv)
{
    return &sv->ckpt->fs.sys;
}

/* The kept states moved from the heap into the arena (Y and F, each state's y and f a view), the
 * heap freed. */
static bool move_to_arena(nd_ctx *ctx, nd_checkpoints *cp)
{
    int k = cp->n_kept;
    size_t n = cp->n;
    cp->kept = nd_ctx_alloc(ctx, (size_t)k * sizeof *cp->kept);
    cp->Y = nd_tensor_from(ctx, 1, (int[]){k * (int)n}, cp->hy);
    cp->F = nd_tensor_from(ctx, 1, (int[]){k * (int)n}, cp->hf);
    if (!cp->kept || !cp->Y || !cp->F) return false;
    for (int i = 0; i < k; i++) {
        cp->kept[i] = cp->hk[i];
        cp->kept[i].y = nd_view(ctx, cp->Y, (size_t)i * n, 1, (int[]){(int)n});
        cp->kept[i].f = nd_view(ctx, cp->F, (size_t)i * n, 1, (int[]){(int)n});
        if (!cp->kept[i].y || !cp->kept[i].f) return false;
    }
    return true;
}

/* A state kept at the forward's last step starts an empty segment: dropped. */
bool nd_checkpoint_end(nd_ctx *ctx, nd_odeint_saved *sv, const nd_tensor *packed)
{
    nd_checkpoints *cp = sv->ckpt;
    cp->fs.sys.on_state = NULL;
    bool ok = packed != NULL; /* the initial state is always kept: n_kept >= 1 */
    if (ok && cp->n_kept > 1 && cp->hk[cp->n_kept - 1].accepted >= cp->total) cp->n_kept--;
    ok = ok && move_to_arena(ctx, cp);
    free_heap(cp);
    return ok;
}

/* ---- the backward: one segment at a time -------------------------------------------------- */

static int replay_step(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip)
{
    (void)ctx;
    ((nd_checkpoints *)sys)->last = *ip; /* taped: its coefficients stay */
    return 0;
}

static int replay_state(nd_ode_system *sys, nd_ctx *ctx, const nd_solver_state *st)
{
    (void)ctx;
    nd_checkpoints *cp = (nd_checkpoints *)sys;
    if (st->accepted < cp->stop_at) return 0;
    cp->end_y = st->y, cp->end_f = st->f;
    return 1;
}

/* The output times' indices in segment k: (start, end], the first segment's from t[0] on. */
static void segment_outputs(const nd_checkpoints *cp, int k, double s_end, bool last, int *lo,
                            int *hi)
{
    const nd_odeint_saved *sv = cp->sv;
    double dir = sv->tv[sv->n_t - 1] > sv->tv[0] ? 1 : -1, s_start = cp->kept[k].s1;
    int i = k == 0 ? 0 : 1;
    while (i < sv->n_t && k > 0 && dir * sv->tv[i] <= s_start) i++;
    int j = i;
    while (j < sv->n_t && (last || dir * sv->tv[j] <= s_end)) j++;
    *lo = i, *hi = j;
}

typedef struct {
    nd_checkpoints *cp;
    const nd_tensor *g; /* (n_t, n) dL/d(trajectory) */
    nd_real *a_y, *a_f; /* (n,) dL/d(start state) of the segment after */
    nd_real *acc;       /* (sum of the params' sizes,) dL/dparams so far */
    nd_real *a_y0;      /* (n,) dL/d(packed y0) */
} ckpt_pass;

/* Segment k solved again taped; the outputs it holds into rows[lo, hi). */
static bool replay_segment(nd_ctx *ctx, ckpt_pass *p, int k, nd_tensor **start, nd_tensor **rows,
                           int *lo, int *hi)
{
    nd_checkpoints *cp = p->cp;
    nd_odeint_saved *sv = cp->sv;
    bool last = k == cp->n_kept - 1;
    nd_solver_state from = cp->kept[k];
    if (k == 0) {
        start[0] = nd_user_pack(ctx, &sv->us, sv->us.y0s);
    } else {
        from.y = start[0] = nd_copy(ctx, cp->kept[k].y);
        from.f = start[1] = nd_copy(ctx, cp->kept[k].f);
        if (!start[0] || !start[1]) return false;
        start[0]->requires_grad = start[1]->requires_grad = true;
    }
    cp->stop_at = last ? LONG_MAX : cp->kept[k + 1].accepted;
    cp->end_y = cp->end_f = NULL;
    nd_ode_system *sys = &cp->fs.sys; /* the hooks find cp through it */
    sys->on_step = replay_step, sys->on_state = replay_state;
    sys->resume = k == 0 ? NULL : &from;
    nd_breakpoints bp = {sv->opts.step_t, sv->opts.jump_t, sv->opts.n_step_t, sv->opts.n_jump_t};
    nd_status st = start[0] ? nd_ode_solve(ctx, sys, &sv->opts.solver, &bp, start[0], sv->tv,
                                           sv->n_t, true, NULL, rows, &sv->stats.recomputed)
                            : nd_ctx_error(ctx);
    sys->on_step = NULL, sys->on_state = NULL, sys->resume = NULL;
    if (st != ND_OK || (!last && !cp->end_y)) return false;
    double s_end = last ? INFINITY : cp->kept[k + 1].s1;
    segment_outputs(cp, k, s_end, last, lo, hi);
    /* the outputs in the step the replay stopped after: the solver stops before it writes them
     * (it fills them with the state where it stopped) */
    double dir = sv->tv[sv->n_t - 1] > sv->tv[0] ? 1 : -1;
    for (int i = *lo; i < *hi && !last; i++)
        if (dir * sv->tv[i] > dir * cp->last.t0 &&
            !(rows[i] = nd_interp_at(ctx, &cp->last, sv->tv[i])))
            return false;
    return true;
}

/* nd_grad through segment k: its outputs and end state back to its start (or y0) and params. */
static bool backprop_segment(nd_ctx *ctx, ckpt_pass *p, int k)
{
    nd_checkpoints *cp = p->cp;
    nd_odeint_saved *sv = cp->sv;
    size_t n = cp->n;
    bool last = k == cp->n_kept - 1;
    nd_tensor **rows = nd_ctx_alloc(ctx, (size_t)sv->n_t * sizeof *rows), *start[2] = {0};
    int max_io = sv->n_t + 2 + sv->n_params + sv->us.n_y;
    nd_tensor **outs = nd_ctx_alloc(ctx, 3 * (size_t)max_io * sizeof *outs);
    if (!rows || !outs) return false;
    memset(rows, 0, (size_t)sv->n_t * sizeof *rows);
    nd_tensor **seeds = outs + max_io, **ins = seeds + max_io, **grads = outs;
    int lo, hi, n_out = 0, n_in = 0;
    if (!replay_segment(ctx, p, k, start, rows, &lo, &hi)) return false;
    int shape_n[1] = {(int)n};
    for (int i = lo; i < hi; i++) {
        outs[n_out] = rows[i];
        seeds[n_out++] = nd_tensor_from(ctx, 1, shape_n, p->g->data + (size_t)i * n);
    }
    if (!last) {
        outs[n_out] = cp->end_y, seeds[n_out++] = nd_tensor_from(ctx, 1, shape_n, p->a_y);
        outs[n_out] = cp->end_f, seeds[n_out++] = nd_tensor_from(ctx, 1, shape_n, p->a_f);
    }
    ins[n_in++] = start[0];
    if (k > 0) ins[n_in++] = start[1];
    for (int i = 0; i < sv->n_params; i++) ins[n_in++] = sv->params[i];
    for (int i = 0; i < n_out; i++)
        if (!seeds[i]) return false;
    nd_tensor **g = nd_ctx_alloc(ctx, (size_t)n_in * sizeof *g);
    (void)grads;
    if (!g || nd_grad(ctx, outs, seeds, n_out, ins, n_in, g, ND_ALLOW_UNUSED) != ND_OK)
        return false;
    memcpy(k > 0 ? p->a_y : p->a_y0, g[0]->data, n * sizeof(nd_real));
    if (k > 0) memcpy(p->a_f, g[1]->data, n * sizeof(nd_real));
    size_t off = 0;
    for (int i = 0; i < sv->n_params; i++)
        for (size_t e = 0; e < sv->params[i]->size; e++)
            p->acc[off++] += g[n_in - sv->n_params + i]->data[e];
    return true;
}

/* a_y0 to the initial states' blocks, acc to the params */
static void finish(nd_ctx *ctx, const ckpt_pass *p)
{
    nd_odeint_saved *sv = p->cp->sv;
    const nd_user_system *us = &sv->us;
    size_t off = 0;
    for (int b = 0; b < us->n_y; off += us->block_size[b], b++) {
        nd_tensor *y0 = us->y0s[b];
        nd_accumulate_grad(ctx, y0, nd_tensor_from(ctx, y0->ndim, y0->shape, p->a_y0 + off));
    }
    off = 0;
    for (int i = 0; i < sv->n_params; off += sv->params[i]->size, i++) {
        nd_tensor *prm = sv->params[i];
        nd_accumulate_grad(ctx, prm, nd_tensor_from(ctx, prm->ndim, prm->shape, p->acc + off));
    }
}

void nd_odeint_checkpoint_backward(nd_ctx *ctx, nd_tensor *out, void *state)
{
    nd_odeint_saved *sv = state;
    if (nd_ctx_grad_enabled(ctx)) {
        nd_fail(ctx, ND_ERR_GRAPH,
                "%s: the checkpointed gradient cannot be differentiated again (create_graph); "
                "use opts.grad = ND_GRAD_BACKPROP for higher derivatives through a solve",
                sv->us.what);
        return;
    }
    nd_checkpoints *cp = sv->ckpt;
    size_t n = cp->n, n_p = 0;
    for (int i = 0; i < sv->n_params; i++) n_p += sv->params[i]->size;
    ckpt_pass p = {.cp = cp, .g = out->gnode};
    p.a_y = nd_ctx_alloc(ctx, (4 * n + n_p + 1) * sizeof(nd_real));
    if (!p.a_y) return;
    memset(p.a_y, 0, (4 * n + n_p + 1) * sizeof(nd_real));
    p.a_f = p.a_y + n, p.a_y0 = p.a_f + n, p.acc = p.a_y0 + n;
    memset(&sv->stats.recomputed, 0, sizeof sv->stats.recomputed);
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, true), ok = true;
    for (int k = cp->n_kept - 1; ok && k >= 0; k--) {
        ok = backprop_segment(ctx, &p, k);
        nd_ctx_rewind(ctx, m);
    }
    nd_ctx_set_grad(ctx, prev);
    if (ok) finish(ctx, &p);
}

/* SPDX-License-Identifier: MIT
 * odeint/replay.c: the forward solution recomputed from checkpoints (replay.h). The forward solve
 * records a checkpoint after every k-th accepted step through the solver's on_step hook; the
 * output times are checkpoints too (their states are the trajectory). The backward pass's z(t)
 * re-solves the checkpoint interval holding t with the forward's own options and keeps every
 * step's interpolant (the same hook), so z never runs backwards in time.
 */
#include <stdlib.h>
#include <string.h>

#include "odeint/replay.h"

/* ---- growing heap arrays ------------------------------------------------------------------ */

/* Makes room for `need` elements of `size` bytes in *p (capacity *cap); false when out of memory.
 */
static bool reserve(void **p, long *cap, long need, size_t size)
{
    if (need <= *cap) return true;
    long c = *cap > 0 ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* ---- recording during the forward solve --------------------------------------------------- */

static int record_step(nd_replay *rp, nd_ctx *ctx, const nd_interp *ip)
{
    if (rp->every <= 0 || ++rp->since < rp->every) return 0;
    rp->since = 0;
    long cap = rp->cap_rec;
    void *t = rp->rec_t, *y = rp->rec_y;
    bool ok = reserve(&t, &cap, rp->n_rec + 1, sizeof(double));
    rp->rec_t = t;
    cap = rp->cap_rec;
    ok = ok && reserve(&y, &cap, rp->n_rec + 1, rp->n * sizeof(nd_real));
    rp->rec_y = y;
    if (!ok) {
        nd_fail(ctx, ND_ERR_NOMEM, "%s: out of memory storing checkpoint %ld", rp->fs.us->what,
                rp->n_rec);
        return -1;
    }
    rp->cap_rec = cap;
    rp->rec_t[rp->n_rec] = ip->t1;
    nd_interp_at_buf(ip, ip->t1, rp->rec_y + (size_t)rp->n_rec * rp->n); /* the step's end */
    rp->n_rec++;
    return 0;
}

/* The heap both slots hold. */
static size_t cache_bytes(const nd_replay *rp)
{
    size_t per_step = 2 * sizeof(double) + ND_INTERP_MAX_COEFF * rp->n * sizeof(nd_real);
    return (size_t)(rp->slot[0].cap + rp->slot[1].cap) * per_step;
}

/* A step of a re-solve: its interpolant appended to the slot being filled. */
static int cache_step(nd_replay *rp, nd_ctx *ctx, const nd_interp *ip)
{
    nd_replay_slot *sl = &rp->slot[rp->filling];
    long cap = sl->cap;
    void *s = sl->step_s, *c = sl->coeff;
    bool ok = reserve(&s, &cap, sl->n_steps + 1, 2 * sizeof(double));
    sl->step_s = s;
    cap = sl->cap;
    ok = ok && reserve(&c, &cap, sl->n_steps + 1, ND_INTERP_MAX_COEFF * rp->n * sizeof(nd_real));
    sl->coeff = c;
    if (!ok) {
        nd_fail(ctx, ND_ERR_NOMEM, "%s: out of memory keeping the dense output of %ld steps",
                rp->fs.us->what_adjoint, sl->n_steps + 1);
        return -1;
    }
    sl->cap = cap;
    if (cache_bytes(rp) > rp->peak_bytes) rp->peak_bytes = cache_bytes(rp);
    sl->step_s[2 * sl->n_steps] = rp->dir * ip->t0;
    sl->step_s[2 * sl->n_steps + 1] = rp->dir * ip->t1;
    sl->n_coeff = ip->n_coeff;
    nd_real *dst = sl->coeff + (size_t)sl->n_steps * ND_INTERP_MAX_COEFF * rp->n;
    for (int i = 0; i < ip->n_coeff; i++)
        memcpy(dst + (size_t)i * rp->n, ip->c[i]->data, rp->n * sizeof(nd_real));
    sl->n_steps++;
    return 0;
}

static int on_step(nd_ode_system *sys, nd_ctx *ctx, const nd_interp *ip)
{
    nd_replay *rp = (nd_replay *)sys; /* rp->fs.sys, first of both */
    if (!rp->recording) return cache_step(rp, ctx, ip);
    int rc = record_step(rp, ctx, ip);
    const nd_step_observer *obs = rp->fs.obs; /* dense solutions, events: the forward solve only */
    return rc == 0 && obs ? obs->on_step(obs->data, ctx, ip) : rc;
}

bool nd_replay_begin(nd_ctx *ctx, nd_odeint_saved *sv, const nd_forward_system *fs)
{
    nd_replay *rp = nd_ctx_alloc(ctx, sizeof *rp);
    if (!rp) return false;
    memset(rp, 0, sizeof *rp);
    rp->fs = *fs; /* the forward's system with the hook: the forward solve and the re-solves */
    rp->fs.sys.on_step = on_step;
    rp->stats = &sv->stats.recomputed;
    rp->n = sv->us.n;
    rp->dir = sv->tv[sv->n_t - 1] > sv->tv[0] ? 1 : -1;
    rp->recording = true;
    rp->every = sv->opts.checkpoint_every;
    rp->slot[0].interval = rp->slot[1].interval = -1;
    sv->replay = rp;
    return true;
}

/* The recorded checkpoints and the output times, merged in forward order into the arena. */
bool nd_replay_end(nd_ctx *ctx, nd_odeint_saved *sv, const nd_tensor *packed)
{
    nd_replay *rp = sv->replay;
    bool ok = packed != NULL;
    if (ok) {
        size_t n = rp->n, max = (size_t)sv->n_t + (size_t)rp->n_rec;
        rp->ck_t = nd_ctx_alloc(ctx, max * sizeof *rp->ck_t);
        rp->ck_y = nd_ctx_alloc(ctx, max * n * sizeof *rp->ck_y);
        ok = rp->ck_t && rp->ck_y;
        long r = 0;
        for (int i = 0; ok && i < sv->n_t; i++) {
            double ti = rp->dir * sv->tv[i];
            for (; r < rp->n_rec && rp->dir * rp->rec_t[r] <= ti; r++) {
                if (rp->dir * rp->rec_t[r] == ti) continue; /* the output time's own state */
                rp->ck_t[rp->n_ck] = rp->rec_t[r];
                memcpy(rp->ck_y + (size_t)rp->n_ck++ * n, rp->rec_y + (size_t)r * n,
                       n * sizeof(nd_real));
            }
            rp->ck_t[rp->n_ck] = sv->tv[i];
            memcpy(rp->ck_y + (size_t)rp->n_ck++ * n, packed->data + (size_t)i * n,
                   n * sizeof(nd_real));
        }
    }
    free(rp->rec_t), free(rp->rec_y);
    rp->rec_t = NULL, rp->rec_y = NULL, rp->n_rec = rp->cap_rec = 0;
    rp->recording = false;
    return ok;
}

/* ---- z(t) in the backward pass ------------------------------------------------------------ */

/* the checkpoint interval j holding forward-internal time s: [ck(j), ck(j + 1)] (an end shared by
 * two intervals goes to the later one) */
static int interval_of(const nd_replay *rp, double s)
{
    int lo = 0, hi = rp->n_ck - 2; /* the last j with ck(j) <= s, within [0, n_ck - 2] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (rp->dir * rp->ck_t[mid] <= s)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Solves interval j forward again from its checkpoint into the least recently used slot,
 * keeping every step's interpolant. */
static nd_replay_slot *resolve(nd_ctx *ctx, nd_replay *rp, const nd_odeint_saved *sv, int j)
{
    rp->filling = rp->slot[0].used <= rp->slot[1].used ? 0 : 1;
    nd_replay_slot *sl = &rp->slot[rp->filling];
    sl->n_steps = 0;
    sl->interval = -1;
    nd_mark m = nd_ctx_mark(ctx);
    bool prev = nd_ctx_set_grad(ctx, false);
    nd_breakpoints bp = {sv->opts.step_t, sv->opts.jump_t, sv->opts.n_step_t, sv->opts.n_jump_t};
    nd_tensor *y0 = nd_tensor_from(ctx, 1, (int[]){(int)rp->n}, rp->ck_y + (size_t)j * rp->n);
    nd_real *rows = nd_ctx_alloc(ctx, 2 * rp->n * sizeof *rows);
    nd_status st = y0 && rows ? nd_ode_solve(ctx, &rp->fs.sys, &sv->opts.solver, &bp, y0,
                                             rp->ck_t + j, 2, false, rows, NULL, rp->stats)
                              : nd_ctx_error(ctx);
    nd_ctx_set_grad(ctx, prev);
    nd_ctx_rewind(ctx, m);
    if (st != ND_OK) return NULL;
    sl->interval = j;
    return sl;
}

bool nd_replay_eval(nd_ctx *ctx, nd_replay *rp, const nd_odeint_saved *sv, double t, nd_real *out)
{
    double s = rp->dir * t;
    int j = interval_of(rp, s); /* the first or last interval also past the ends */
    nd_replay_slot *sl = rp->slot[0].interval == j   ? &rp->slot[0]
                         : rp->slot[1].interval == j ? &rp->slot[1]
                                                     : resolve(ctx, rp, sv, j);
    if (!sl) return false;
    sl->used = ++rp->clock;
    long lo = 0, hi = sl->n_steps - 1; /* the last step starting at or before s */
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (sl->step_s[2 * mid] <= s)
            lo = mid;
        else
            hi = mid - 1;
    }
    double s0 = sl->step_s[2 * lo], s1 = sl->step_s[2 * lo + 1];
    const nd_real *c = sl->coeff + (size_t)lo * ND_INTERP_MAX_COEFF * rp->n;
    nd_interp_eval(c, sl->n_coeff, rp->n, (s - s0) / (s1 - s0), out);
    return true;
}

/* ---- the backward solve's breakpoints ----------------------------------------------------- */

static bool in_list(const double *v, int n, double x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

bool nd_replay_breakpoints(nd_ctx *ctx, const nd_replay *rp, const nd_odeint_saved *sv,
                           nd_breakpoints *bp)
{
    const nd_ode_options *o = &sv->opts;
    *bp = (nd_breakpoints){o->step_t, o->jump_t, o->n_step_t, o->n_jump_t};
    double *v = nd_ctx_alloc(ctx, ((size_t)rp->n_ck + (size_t)o->n_step_t) * sizeof *v);
    if (!v) return false;
    int n = 0, a = 0, b = 0;
    const double d = rp->dir;
    while (a < rp->n_ck || b < o->n_step_t) { /* merge in forward order, without repeats */
        bool take_ck = b >= o->n_step_t || (a < rp->n_ck && d * rp->ck_t[a] <= d * o->step_t[b]);
        double x = take_ck ? rp->ck_t[a++] : o->step_t[b++];
        if (in_list(o->jump_t, o->n_jump_t, x) || (n > 0 && v[n - 1] == x)) continue;
        v[n++] = x;
    }
    bp->step_t = v, bp->n_step_t = n;
    return true;
}

void nd_replay_release(nd_replay *rp)
{
    if (!rp) return;
    for (int i = 0; i < 2; i++) {
        nd_replay_slot *sl = &rp->slot[i];
        free(sl->step_s), free(sl->coeff);
        *sl = (nd_replay_slot){.interval = -1};
    }
    rp->clock = 0;
}

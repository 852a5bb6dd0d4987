/* SPDX-License-Identifier: MIT
 * autograd/graph.c: recording and the reverse sweep.
 *
 * The sweep orders the graph by an iterative depth-first search (graphs from ODE solves are far
 * too deep for recursion), seeds the outputs, and runs each op's backward rule in reverse order;
 * rules accumulate into src->gnode. With ND_CREATE_GRAPH the sweep records, so gradients are
 * graphs.
 *
 * nd_backward is all-or-nothing for .grad: on failure every .grad is as it was. Yet it adds each
 * parameter's (persistent leaf's) gradient straight into its .grad as it is produced (a matmul's
 * rule even lets GEMM accumulate into it), so no pass is spent summing pending gradients there.
 * The two meet thus: only custom ops' rules (odeint's adjoint) can fail on user data; the built-in
 * rules fail only when the arena cannot grow. The direct path is taken by the rules that run
 * after the last custom rule of the sweep (the topological order says which); before that point
 * gradients stay pending in the arena and reach .grad when the whole sweep has succeeded. A graph
 * without custom ops (an MLP) is direct throughout; in loss = head(odeint(...)) the head's
 * gradients wait for the adjoint. Leaves' missing .grad buffers are made before any rule runs.
 *
 * Only the gradients that lead to a requested input are computed: a tensor is needed when it is
 * an input asked for (nd_grad) or a leaf (nd_backward), or when one of its sources is needed;
 * rules skip the others (in f's trace inside a CNF, the weights' gradients are never asked for).
 *
 * Sweeps nest: an op's backward may itself call nd_grad (the adjoint of odeint does, once per
 * evaluation). A nested sweep may visit tensors of the outer one (parameters), so it saves their
 * pending gradients and needed-marks and restores them when it ends. Its stacks (autograd/engine.h)
 * sit above the outer sweep's entries and are addressed by index, since a push may move them.
 *
 * nd_backward without ND_RETAIN_GRAPH marks the op nodes it went through as consumed (leaves are
 * shared between graphs and are never marked); a later sweep through a consumed node fails, as
 * PyTorch does once a graph's buffers are freed.
 */
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/engine.h"
#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

nd_tensor *nd_record(nd_ctx *ctx, nd_tensor *out, nd_op op, int n_src, nd_tensor *const *src)
{
    if (!out || !nd_ctx_grad_enabled(ctx)) return out;
    bool any = false;
    for (int i = 0; i < n_src; i++) any |= src[i]->requires_grad;
    if (!any) return out;
    if (n_src > (int)(sizeof out->src_inline / sizeof out->src_inline[0])) {
        out->src = nd_ctx_alloc(ctx, (size_t)n_src * sizeof *out->src);
        if (!out->src) return NULL;
    }
    for (int i = 0; i < n_src; i++) out->src[i] = src[i];
    out->n_src = n_src;
    out->op = op;
    out->requires_grad = true;
    return out;
}

nd_tensor *nd_record_custom(nd_ctx *ctx, nd_tensor *out, const nd_custom_op *op, int n_src,
                            nd_tensor *const *src)
{
    if (!ND_CHECK1(ctx, "nd_record_custom", out)) return NULL;
    if (!op || !op->backward || n_src < 0 || (n_src > 0 && !src))
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_record_custom: op, its backward or src is NULL");
    if (!nd_check_inputs(ctx, "nd_record_custom", n_src, (const nd_tensor *const *)src, NULL))
        return NULL;
    nd_custom_op *saved = nd_ctx_alloc(ctx, sizeof *saved);
    if (!saved) return NULL;
    *saved = *op;
    out->aux = saved;
    return nd_record(ctx, out, ND_OP_CUSTOM, n_src, src);
}

void nd_custom_backward(nd_ctx *ctx, nd_tensor *out)
{
    const nd_custom_op *op = out->aux;
    op->backward(ctx, out, op->state);
}

bool nd_needs_grad(const nd_ctx *ctx, const nd_tensor *x)
{
    const nd_engine *e = nd_engine_peek(ctx);
    return x->requires_grad && x->needed == (e ? e->sweep : 0);
}

nd_real *nd_direct_grad(const nd_ctx *ctx, const nd_tensor *x)
{
    const nd_engine *e = nd_engine_peek(ctx);
    return e && e->direct_grads && x->op == ND_OP_NONE && x->persistent && x->grad &&
                   nd_needs_grad(ctx, x)
               ? x->grad
               : NULL;
}

void nd_accumulate_grad(nd_ctx *ctx, nd_tensor *x, nd_tensor *g)
{
    if (!g || !nd_needs_grad(ctx, x)) return;
    nd_real *direct = nd_direct_grad(ctx, x);
    if (direct && nd_same_shape(x, g)) { /* a parameter: straight into .grad, no pending sum */
        const nd_real *gd = g->data;     /* a local: a store through direct cannot change it */
        for (size_t k = 0, n = x->size; k < n; k++) direct[k] += gd[k];
        return;
    }
    if (!nd_same_shape(x, g)) {
        /* a rule produced a gradient of the wrong shape: our bug, reported rather than hidden */
        char sx[64], sg[64];
        nd_fail(ctx, ND_ERR_GRAPH, "autograd: gradient %s for tensor %s (op %s)",
                nd_shape_str(g, sg), nd_shape_str(x, sx), x->op ? nd_ops[x->op].name : "leaf");
        return;
    }
    x->gnode = x->gnode ? nd_add(ctx, x->gnode, g) : g;
}

/* s = [p +] g c over n values (p NULL: none); s overlaps neither */
ND_AVX2_CLONES static void add_scaled(nd_real *restrict s, const nd_real *restrict p,
                                      const nd_real *restrict g, nd_real c, size_t n)
{
    if (p)
        for (size_t k = 0; k < n; k++) s[k] = p[k] + g[k] * c;
    else
        for (size_t k = 0; k < n; k++) s[k] = g[k] * c;
}

void nd_accumulate_scaled(nd_ctx *ctx, nd_tensor *x, nd_tensor *g, nd_real c)
{
    if (!g || !nd_needs_grad(ctx, x)) return;
    if (nd_ctx_grad_enabled(ctx) || !nd_same_shape(x, g)) { /* recording, or a bug to report */
        nd_accumulate_grad(ctx, x, nd_mul_scalar(ctx, g, c));
        return;
    }
    const nd_real *gd = g->data;
    nd_real *direct = nd_direct_grad(ctx, x);
    if (direct) {
        for (size_t k = 0; k < x->size; k++) direct[k] += gd[k] * c;
        return;
    }
    nd_tensor *sum = nd_tensor_alloc(ctx, x->ndim, x->shape);
    if (!sum) return;
    add_scaled(sum->data, x->gnode ? x->gnode->data : NULL, gd, c, x->size);
    x->gnode = sum;
}

/* Post-order DFS from the roots over tensors that require grad. Appends to the topo stack;
 * returns false on error. */
static bool topo_sort(nd_ctx *ctx, nd_engine *e, nd_tensor **roots, int n_roots, uint64_t mark)
{
    nd_ptr_stack *topo = &e->topo, *dfs = &e->dfs;
    size_t dfs_base = dfs->len;
    for (int r = 0; r < n_roots; r++) {
        nd_tensor *root = roots[r];
        if (!root->requires_grad || root->visit == mark) continue;
        root->visit = mark;
        /* each dfs entry is a node; its next child index is kept in the entry above it */
        if (!nd_ptr_stack_push(ctx, dfs, root) || !nd_ptr_stack_push(ctx, dfs, (void *)0))
            return false;
        while (dfs->len > dfs_base) {
            nd_tensor *node = dfs->items[dfs->len - 2];
            size_t child = (size_t)dfs->items[dfs->len - 1];
            if (child < (size_t)node->n_src) {
                dfs->items[dfs->len - 1] = (void *)(child + 1);
                nd_tensor *s = node->src[child];
                if (s->requires_grad && s->visit != mark) {
                    s->visit = mark;
                    if (!nd_ptr_stack_push(ctx, dfs, s) || !nd_ptr_stack_push(ctx, dfs, (void *)0))
                        return false;
                }
            } else {
                dfs->len -= 2;
                if (!nd_ptr_stack_push(ctx, topo, node)) return false;
            }
        }
    }
    return true;
}

typedef enum { SWEEP_GRAD, SWEEP_BACKWARD } sweep_kind;

/* One sweep over the graph below the outputs; what it fills depends on kind. */
typedef struct {
    sweep_kind kind;
    const char *fn;
    unsigned flags;
    uint64_t mark;
    size_t topo_base, n_topo;
    size_t fallible_lo; /* lowest topo index of a rule that can fail; n_topo when none */
} sweep_plan;

static nd_tensor *topo_at(nd_engine *e, const sweep_plan *p, size_t i)
{
    return e->topo.items[p->topo_base + i];
}

/* A graph already consumed by nd_backward is an error; also finds the lowest custom rule. */
static bool check_graph(nd_ctx *ctx, nd_engine *e, sweep_plan *p)
{
    p->fallible_lo = p->n_topo;
    for (size_t i = 0; i < p->n_topo; i++) {
        nd_tensor *t = topo_at(e, p, i);
        if (t->consumed) {
            nd_fail(ctx, ND_ERR_GRAPH,
                    "%s: the graph was already backpropagated through (op %s); pass "
                    "ND_RETAIN_GRAPH to the earlier nd_backward to go through it again",
                    p->fn, nd_ops[t->op].name);
            return false;
        }
        if (t->op == ND_OP_CUSTOM && p->fallible_lo == p->n_topo) p->fallible_lo = i;
    }
    return true;
}

/* The inputs the outputs reach (they carry the fresh mark); an unreached one is an error unless
 * ND_ALLOW_UNUSED. Noted now: nested sweeps inside backward rules re-mark what they visit. */
static bool note_reached(nd_ctx *ctx, const sweep_plan *p, nd_tensor **outputs, int n_out,
                         nd_tensor **inputs, int n_in, nd_tensor **grads_out)
{
    static nd_tensor reached;
    for (int j = 0; j < n_in; j++) {
        bool hit = inputs[j]->requires_grad && inputs[j]->visit == p->mark;
        grads_out[j] = hit ? &reached : NULL;
        if (hit || (p->flags & ND_ALLOW_UNUSED)) continue;
        bool any_out = false;
        for (int i = 0; i < n_out; i++) any_out |= outputs[i]->requires_grad;
        nd_fail(ctx, ND_ERR_GRAPH, "%s: inputs[%d] %s (pass ND_ALLOW_UNUSED for zeros)", p->fn, j,
                !any_out ? "is not reached: no output requires grad (was grad mode off?)"
                : !inputs[j]->requires_grad ? "does not require grad"
                                            : "is not reached by the outputs");
        return false;
    }
    return true;
}

/* Gives every leaf of a plain backward its .grad buffer before any rule runs, so nothing can fail
 * between the first write into a .grad and the end. A parameter's is its own (freed with it).
 * Each new buffer is noted, so that a failed backward takes it back (.grad NULL again). */
static bool make_leaf_grads(nd_ctx *ctx, nd_engine *e, const sweep_plan *p)
{
    for (size_t i = 0; i < p->n_topo; i++) {
        nd_tensor *t = topo_at(e, p, i);
        if (t->op != ND_OP_NONE || t->grad) continue;
        if (!nd_ptr_stack_push(ctx, &e->fresh, t)) return false;
        if (t->persistent && t->base) { /* a view of a flat block: its slice of the block's grad */
            t->grad = t->base->grad + (t->data - t->base->data);
        } else if (t->persistent) {
            t->grad = calloc(t->size, sizeof *t->grad);
            if (!t->grad) {
                nd_fail(ctx, ND_ERR_NOMEM, "nd_backward: cannot allocate a .grad of %zu", t->size);
                return false;
            }
        } else {
            t->grad = nd_ctx_alloc(ctx, t->size * sizeof *t->grad);
            if (!t->grad) return false;
            memset(t->grad, 0, t->size * sizeof *t->grad);
        }
    }
    return true;
}

/* A failed backward leaves no .grad buffer it made. */
static void drop_fresh_grads(nd_engine *e, size_t base)
{
    for (size_t i = base; i < e->fresh.len; i++) {
        nd_tensor *t = e->fresh.items[i];
        if (t->persistent && !t->base) free(t->grad);
        t->grad = NULL;
    }
}

/* needed: the inputs asked for (every leaf for nd_backward), and whatever depends on one; the
 * topological order puts sources first. The mark is fresh, so only the inputs carry it. */
static void mark_needed(nd_engine *e, const sweep_plan *p, nd_tensor **inputs, int n_in,
                        nd_tensor **grads_out)
{
    for (int j = 0; j < n_in; j++)
        if (grads_out[j]) inputs[j]->needed = p->mark;
    for (size_t i = 0; i < p->n_topo; i++) {
        nd_tensor *t = topo_at(e, p, i);
        bool need = t->needed == p->mark || (p->kind == SWEEP_BACKWARD && t->op == ND_OP_NONE);
        for (int k = 0; k < t->n_src && !need; k++)
            need = t->src[k]->requires_grad && t->src[k]->needed == p->mark;
        t->needed = need ? p->mark : 0;
    }
}

/* May the rule at topo position i (n_topo: the seeding) write parameters' .grad directly? */
static bool direct_at(const sweep_plan *p, size_t i)
{
    return p->kind == SWEEP_BACKWARD && !(p->flags & ND_CREATE_GRAPH) &&
           (p->fallible_lo == p->n_topo || i < p->fallible_lo);
}

static bool seed_outputs(nd_ctx *ctx, nd_engine *e, const sweep_plan *p, nd_tensor **outputs,
                         nd_tensor **seeds, int n_out)
{
    e->direct_grads = direct_at(p, p->n_topo);
    for (int i = 0; i < n_out; i++) {
        nd_tensor *out = outputs[i];
        if (!out->requires_grad) continue;
        nd_tensor *seed = seeds && seeds[i] ? seeds[i] : nd_ones_like(ctx, out);
        if (seed && !nd_same_shape(seed, out)) {
            char so[64], ss[64];
            nd_fail(ctx, ND_ERR_SHAPE, "%s: seed %d has shape %s, output has %s", p->fn, i,
                    nd_shape_str(seed, ss), nd_shape_str(out, so));
            return false;
        }
        nd_accumulate_grad(ctx, out, seed);
    }
    return nd_ctx_error(ctx) == ND_OK;
}

static bool run_rules(nd_ctx *ctx, nd_engine *e, const sweep_plan *p)
{
    for (size_t i = p->n_topo; i-- > 0;) {
        nd_tensor *t = topo_at(e, p, i);
        bool feeds = false; /* an input asked for as an intermediate still stops here */
        for (int k = 0; k < t->n_src && !feeds; k++) feeds = nd_needs_grad(ctx, t->src[k]);
        e->direct_grads = direct_at(p, i);
        if (t->op != ND_OP_NONE && t->gnode && feeds) nd_ops[t->op].backward(ctx, t);
        if (nd_ctx_error(ctx) != ND_OK) return false;
    }
    return true;
}

/* After a successful plain backward: pending leaf gradients into .grad, and the graph consumed
 * unless ND_RETAIN_GRAPH. Cannot fail. */
static void finish_backward(nd_engine *e, const sweep_plan *p)
{
    for (size_t i = 0; i < p->n_topo; i++) {
        nd_tensor *t = topo_at(e, p, i);
        if (t->op != ND_OP_NONE) {
            if (!(p->flags & ND_RETAIN_GRAPH)) t->consumed = true;
        } else if (t->gnode) {
            nd_real *gr = t->grad;
            const nd_real *gd = t->gnode->data;
            for (size_t k = 0, n = t->size; k < n; k++) gr[k] += gd[k];
        }
    }
}

static nd_status sweep(nd_ctx *ctx, sweep_plan *p, nd_tensor **outputs, nd_tensor **seeds,
                       int n_out, nd_tensor **inputs, int n_in, nd_tensor **grads_out)
{
    for (int j = 0; j < n_in; j++) grads_out[j] = NULL; /* a failed sweep hands back none */
    nd_engine *e = nd_engine_get(ctx);
    if (!e || nd_ctx_error(ctx) != ND_OK) return nd_ctx_error(ctx);
    p->topo_base = e->topo.len;
    size_t saved_base = e->saved.len, fresh_base = e->fresh.len;
    bool prev_mode = nd_ctx_set_grad(ctx, (p->flags & ND_CREATE_GRAPH) != 0);
    uint64_t prev_sweep = e->sweep;
    bool prev_direct = e->direct_grads;
    e->direct_grads = false;
    p->mark = ++e->visit;

    if (!topo_sort(ctx, e, outputs, n_out, p->mark)) goto done;
    p->n_topo = e->topo.len - p->topo_base;
    if (!check_graph(ctx, e, p) || !note_reached(ctx, p, outputs, n_out, inputs, n_in, grads_out))
        goto done;
    /* save what an enclosing sweep keeps on these tensors; two entries each */
    for (size_t i = 0; i < p->n_topo; i++) {
        nd_tensor *t = topo_at(e, p, i);
        if (!nd_ptr_stack_push(ctx, &e->saved, t->gnode) ||
            !nd_ptr_stack_push(ctx, &e->saved, (void *)(uintptr_t)t->needed))
            goto done;
        t->gnode = NULL;
    }
    if (p->kind == SWEEP_BACKWARD && !make_leaf_grads(ctx, e, p)) goto done;
    e->sweep = p->mark;
    mark_needed(e, p, inputs, n_in, grads_out);
    if (!seed_outputs(ctx, e, p, outputs, seeds, n_out) || !run_rules(ctx, e, p)) goto done;
    if (p->kind == SWEEP_GRAD) {
        for (int j = 0; j < n_in; j++) {
            nd_tensor *x = inputs[j];
            grads_out[j] = grads_out[j] && x->gnode ? x->gnode : nd_zeros_like(ctx, x);
        }
    } else {
        finish_backward(e, p);
    }
done:;
    nd_status st = nd_ctx_error(ctx);
    if (st != ND_OK) {
        for (int j = 0; j < n_in; j++) grads_out[j] = NULL;
        drop_fresh_grads(e, fresh_base);
    }
    /* restore what an enclosing sweep had pending on the tensors we visited */
    for (size_t i = 0; 2 * i + 1 < e->saved.len - saved_base; i++) {
        nd_tensor *t = topo_at(e, p, i);
        t->gnode = e->saved.items[saved_base + 2 * i];
        t->needed = (uint64_t)(uintptr_t)e->saved.items[saved_base + 2 * i + 1];
    }
    e->sweep = prev_sweep;
    e->direct_grads = prev_direct;
    e->topo.len = p->topo_base;
    e->saved.len = saved_base;
    e->fresh.len = fresh_base;
    nd_ctx_set_grad(ctx, prev_mode);
    return st;
}

static bool check_list(nd_ctx *ctx, const char *fn, const char *what, nd_tensor **ts, int n)
{
    if (n < 0 || (n > 0 && !ts)) {
        nd_fail(ctx, ND_ERR_ARG, "%s: %s list is NULL or has negative length", fn, what);
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (!ts[i]) {
            nd_fail(ctx, ND_ERR_ARG, "%s: %s[%d] is NULL", fn, what, i);
            return false;
        }
    }
    return true;
}

#define ND_GRAD_FLAGS (ND_CREATE_GRAPH | ND_ALLOW_UNUSED | ND_RETAIN_GRAPH)

nd_status nd_grad(nd_ctx *ctx, nd_tensor **outputs, nd_tensor **seeds, int n_out,
                  nd_tensor **inputs, int n_in, nd_tensor **grads_out, unsigned flags)
{
    for (int j = 0; grads_out && j < n_in; j++) grads_out[j] = NULL;
    if (!ctx) return ND_ERR_ARG;
    if (n_in > 0 && !grads_out) return nd_fail(ctx, ND_ERR_ARG, "nd_grad: grads_out is NULL");
    if (!check_list(ctx, "nd_grad", "outputs", outputs, n_out) ||
        !check_list(ctx, "nd_grad", "inputs", inputs, n_in))
        return nd_ctx_error(ctx);
    if (flags & ~(unsigned)ND_GRAD_FLAGS)
        return nd_fail(ctx, ND_ERR_ARG, "nd_grad: unknown flags 0x%x", flags);
    sweep_plan p = {.kind = SWEEP_GRAD, .fn = "nd_grad", .flags = flags};
    return sweep(ctx, &p, outputs, seeds, n_out, inputs, n_in, grads_out);
}

nd_status nd_backward(nd_ctx *ctx, nd_tensor *loss, unsigned flags)
{
    if (!ctx) return ND_ERR_ARG;
    if (!loss) return nd_fail(ctx, ND_ERR_ARG, "nd_backward: input loss is NULL");
    if (flags & ~(unsigned)(ND_RETAIN_GRAPH | ND_ALLOW_UNUSED))
        return nd_fail(ctx, ND_ERR_ARG,
                       "nd_backward: flags 0x%x: only ND_RETAIN_GRAPH applies (.grad holds "
                       "values, not graphs: for a differentiable gradient use nd_grad with "
                       "ND_CREATE_GRAPH)",
                       flags);
    if (loss->size != 1) {
        char sl[64];
        return nd_fail(ctx, ND_ERR_SHAPE,
                       "nd_backward: loss has shape %s; it must be a scalar (size 1): reduce it "
                       "(nd_sum, nd_mean) or pass seeds to nd_grad",
                       nd_shape_str(loss, sl));
    }
    if (!loss->requires_grad)
        return nd_fail(ctx, ND_ERR_GRAPH,
                       "nd_backward: the loss does not require grad (no input of its graph "
                       "requires grad, or grad mode was off)");
    sweep_plan p = {.kind = SWEEP_BACKWARD, .fn = "nd_backward", .flags = flags};
    return sweep(ctx, &p, &loss, NULL, 1, NULL, 0, NULL);
}

/* SPDX-License-Identifier: MIT
 * autograd/graph.c: recording and the reverse sweep.
 *
 * The sweep orders the graph by an iterative depth-first search (graphs from ODE solves are far
 * too deep for recursion), seeds the outputs, and runs each op's backward rule in reverse order;
 * rules accumulate into src->gnode. With create_graph the sweep records, so gradients are graphs.
 *
 * nd_backward without create_graph adds each parameter's (persistent leaf's) gradient straight
 * into its .grad as it is produced (a matmul's rule even lets GEMM accumulate into it), so no
 * pass is spent summing pending gradients there.
 *
 * Only the gradients that lead to a requested input are computed: a tensor is needed when it is
 * an input asked for (nd_grad) or a leaf (nd_backward), or when one of its sources is needed;
 * rules skip the others (in f's trace inside a CNF, the weights' gradients are never asked for).
 *
 * Sweeps nest: an op's backward may itself call nd_grad (the adjoint of odeint does, once per
 * evaluation). A nested sweep may visit tensors of the outer one (parameters), so it saves their
 * pending gradients and needed-marks and restores them when it ends. Its stacks live in the ctx
 * above the outer sweep's entries and are addressed by index, since a push may move them.
 */
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/ops_internal.h"
#include "tensor/ctx_internal.h"

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
    if (!out) return NULL;
    nd_custom_op *saved = nd_ctx_alloc(ctx, sizeof *saved);
    if (!saved) return NULL;
    *saved = *op;
    out->aux = saved;
    return nd_record(ctx, out, ND_OP_CUSTOM, n_src, src);
}

void custom_backward(nd_ctx *ctx, nd_tensor *out)
{
    const nd_custom_op *op = out->aux;
    op->backward(ctx, out, op->state);
}

bool nd_needs_grad(const nd_ctx *ctx, const nd_tensor *x)
{
    return x->requires_grad && x->needed == nd_ctx_sweep(ctx);
}

nd_real *nd_direct_grad(const nd_ctx *ctx, const nd_tensor *x)
{
    return nd_ctx_direct_grads(ctx) && x->op == ND_OP_NONE && x->persistent && x->grad &&
                   nd_needs_grad(ctx, x)
               ? x->grad
               : NULL;
}

void nd_accumulate_grad(nd_ctx *ctx, nd_tensor *x, nd_tensor *g)
{
    if (!g || !nd_needs_grad(ctx, x)) return;
    nd_real *direct = nd_direct_grad(ctx, x);
    if (direct && nd_same_shape(x, g)) { /* a parameter: straight into .grad, no pending sum */
        for (size_t k = 0; k < x->size; k++) direct[k] += g->data[k];
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

/* Post-order DFS from the roots over tensors that require grad. Appends to the topo stack from
 * index base; returns false on error. */
static bool topo_sort(nd_ctx *ctx, nd_tensor **roots, int n_roots, uint64_t mark)
{
    nd_ptr_stack *topo = nd_ctx_stack(ctx, ND_STACK_TOPO);
    nd_ptr_stack *dfs = nd_ctx_stack(ctx, ND_STACK_DFS);
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

static nd_status sweep(nd_ctx *ctx, nd_tensor **outputs, nd_tensor **seeds, int n_out,
                       nd_tensor **inputs, int n_in, nd_tensor **grads_out, bool create_graph,
                       sweep_kind kind)
{
    if (nd_ctx_error(ctx) != ND_OK) { /* a failed sweep hands back no gradients */
        for (int j = 0; j < n_in; j++) grads_out[j] = NULL;
        return nd_ctx_error(ctx);
    }
    nd_ptr_stack *topo = nd_ctx_stack(ctx, ND_STACK_TOPO);
    nd_ptr_stack *saved = nd_ctx_stack(ctx, ND_STACK_SAVED);
    size_t topo_base = topo->len, saved_base = saved->len;
    bool prev_mode = nd_ctx_set_grad(ctx, create_graph);
    uint64_t prev_sweep = nd_ctx_sweep(ctx);
    bool prev_direct = nd_ctx_direct_grads(ctx);
    nd_ctx_set_direct_grads(ctx, kind == SWEEP_BACKWARD && !create_graph);
    nd_status st = ND_OK;

    uint64_t mark = nd_ctx_next_visit(ctx);
    if (!topo_sort(ctx, outputs, n_out, mark)) goto done;
    size_t n_topo = topo->len - topo_base;
    /* note now which inputs the outputs reach: nested sweeps inside backward rules re-mark the
     * tensors they visit, and an unreached input may carry an enclosing sweep's gradient */
    static nd_tensor reached;
    for (int j = 0; j < n_in; j++)
        grads_out[j] = inputs[j]->requires_grad && inputs[j]->visit == mark ? &reached : NULL;
    /* save what an enclosing sweep keeps on these tensors; two entries each */
    for (size_t i = 0; i < n_topo; i++) {
        nd_tensor *t = topo->items[topo_base + i];
        if (!nd_ptr_stack_push(ctx, saved, t->gnode) ||
            !nd_ptr_stack_push(ctx, saved, (void *)(uintptr_t)t->needed))
            goto done;
        t->gnode = NULL;
    }
    /* needed: the inputs asked for (every leaf for nd_backward), and whatever depends on one;
     * the topological order puts sources first. The mark is fresh, so only the inputs carry it
     * before the pass. */
    nd_ctx_set_sweep(ctx, mark);
    for (int j = 0; j < n_in; j++)
        if (grads_out[j]) inputs[j]->needed = mark;
    for (size_t i = 0; i < n_topo; i++) {
        nd_tensor *t = topo->items[topo_base + i];
        bool need = t->needed == mark || (kind == SWEEP_BACKWARD && t->op == ND_OP_NONE);
        for (int k = 0; k < t->n_src && !need; k++)
            need = t->src[k]->requires_grad && t->src[k]->needed == mark;
        t->needed = need ? mark : 0;
    }
    for (int i = 0; i < n_out; i++) {
        nd_tensor *out = outputs[i];
        if (!out->requires_grad) continue;
        nd_tensor *seed = seeds && seeds[i] ? seeds[i] : nd_ones_like(ctx, out);
        if (seed && !nd_same_shape(seed, out)) {
            char so[64], ss[64];
            nd_fail(ctx, ND_ERR_SHAPE, "nd_grad: seed %zu has shape %s, output has %s", (size_t)i,
                    nd_shape_str(seed, ss), nd_shape_str(out, so));
            goto done;
        }
        nd_accumulate_grad(ctx, out, seed);
    }
    for (size_t i = n_topo; i-- > 0;) {
        nd_tensor *t = topo->items[topo_base + i];
        bool feeds = false; /* an input asked for as an intermediate still stops here */
        for (int k = 0; k < t->n_src && !feeds; k++) feeds = nd_needs_grad(ctx, t->src[k]);
        if (t->op != ND_OP_NONE && t->gnode && feeds) nd_ops[t->op].backward(ctx, t);
        if (nd_ctx_error(ctx) != ND_OK) goto done;
    }
    if (kind == SWEEP_GRAD) {
        for (int j = 0; j < n_in; j++) {
            nd_tensor *x = inputs[j];
            grads_out[j] = grads_out[j] && x->gnode ? x->gnode : nd_zeros_like(ctx, x);
        }
    } else {
        for (size_t i = 0; i < n_topo; i++) {
            nd_tensor *t = topo->items[topo_base + i];
            if (t->op != ND_OP_NONE || !t->gnode) continue;
            if (!t->grad) {
                t->grad = nd_ctx_alloc(ctx, t->size * sizeof *t->grad);
                if (!t->grad) goto done;
                memset(t->grad, 0, t->size * sizeof *t->grad);
            }
            for (size_t k = 0; k < t->size; k++) t->grad[k] += t->gnode->data[k];
        }
    }
done:
    st = nd_ctx_error(ctx);
    if (st != ND_OK && kind == SWEEP_GRAD)
        for (int j = 0; j < n_in; j++) grads_out[j] = NULL;
    /* restore what an enclosing sweep had pending on the tensors we visited */
    for (size_t i = 0; 2 * i + 1 < saved->len - saved_base; i++) {
        nd_tensor *t = topo->items[topo_base + i];
        t->gnode = saved->items[saved_base + 2 * i];
        t->needed = (uint64_t)(uintptr_t)saved->items[saved_base + 2 * i + 1];
    }
    nd_ctx_set_sweep(ctx, prev_sweep);
    nd_ctx_set_direct_grads(ctx, prev_direct);
    topo->len = topo_base;
    saved->len = saved_base;
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
            if (nd_ctx_error(ctx) == ND_OK)
                nd_fail(ctx, ND_ERR_ARG, "%s: %s %d is NULL", fn, what, i);
            return false;
        }
    }
    return true;
}

nd_status nd_grad(nd_ctx *ctx, nd_tensor **outputs, nd_tensor **seeds, int n_out,
                  nd_tensor **inputs, int n_in, nd_tensor **grads_out, bool create_graph)
{
    if (!check_list(ctx, "nd_grad", "output", outputs, n_out) ||
        !check_list(ctx, "nd_grad", "input", inputs, n_in))
        return nd_ctx_error(ctx);
    if (n_in > 0 && !grads_out) return nd_fail(ctx, ND_ERR_ARG, "nd_grad: grads_out is NULL");
    return sweep(ctx, outputs, seeds, n_out, inputs, n_in, grads_out, create_graph, SWEEP_GRAD);
}

nd_status nd_backward(nd_ctx *ctx, nd_tensor *loss)
{
    if (!loss) {
        if (nd_ctx_error(ctx) == ND_OK) nd_fail(ctx, ND_ERR_ARG, "nd_backward: loss is NULL");
        return nd_ctx_error(ctx);
    }
    if (!loss->requires_grad)
        return nd_fail(ctx, ND_ERR_GRAPH,
                       "nd_backward: the loss does not require grad (no input of its graph "
                       "requires grad, or grad mode was off)");
    return sweep(ctx, &loss, NULL, 1, NULL, 0, NULL, false, SWEEP_BACKWARD);
}

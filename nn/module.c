/* SPDX-License-Identifier: MIT
 * nn/module.c: the module header every layer starts with: registration of named parameters,
 * buffers and children, recursive listing under dotted names (PyTorch's state_dict order), train /
 * eval, destruction; and the two containers built on it, Sequential and the MLP builder.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* ND_CHECK1, ND_CHECK2: the NULL-input check */

/* ---------------------------------------------------------------------------------------------
 * Named lists.
 */
static bool list_push(nd_param_list *l, const char *prefix, const char *name, nd_tensor *t)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        nd_param *items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return false;
        l->items = items, l->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) return false;
    snprintf(full, len, "%s%s", prefix, name);
    l->items[l->n++] = (nd_param){.name = full, .tensor = t};
    return true;
}

void nd_param_list_destroy(nd_param_list *l)
{
    if (!l) return;
    for (int i = 0; i < l->n; i++) free((char *)l->items[i].name);
    free(l->items);
    *l = (nd_param_list){0};
}

nd_tensor *nd_param_list_find(const nd_param_list *l, const char *name)
{
    for (int i = 0; l && name && i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0) return l->items[i].tensor;
    return NULL;
}

size_t nd_param_list_numel(const nd_param_list *l)
{
    size_t n = 0;
    for (int i = 0; l && i < l->n; i++) n += l->items[i].tensor->size;
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * The module header.
 */
nd_module *nd_module_create(nd_ctx *ctx, const char *kind, nd_forward_fn forward, size_t size)
{
    if (!kind || !forward || size < sizeof(nd_module))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_module_create: needs a kind, a forward and size >= %zu (got %zu)",
                            sizeof(nd_module), size);
    nd_module *m = calloc(1, size);
    if (!m) return nd_fail_null(ctx, ND_ERR_NOMEM, "nd_module_create: %s: %zu bytes", kind, size);
    m->kind = kind;
    m->forward = forward;
    m->training = true;
    return m;
}

void nd_module_destroy(nd_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) {
        nd_module_destroy(m->children[i].module);
        free(m->children[i].name);
    }
    for (int i = 0; i < m->n_params; i++) {
        nd_tensor_destroy(m->params[i].tensor);
        free((char *)m->params[i].name);
    }
    for (int i = 0; i < m->n_buffers; i++) {
        nd_tensor_destroy(m->buffers[i].tensor);
        free((char *)m->buffers[i].name);
    }
    if (m->on_destroy) m->on_destroy(m);
    nd_tensor_destroy(m->flat); /* after the parameters, which were views of it */
    free(m->children);
    free(m->params);
    free(m->buffers);
    free(m);
}

/* true if name is free in m: unique among params, buffers and children, non-empty, no '.' */
static bool name_ok(nd_ctx *ctx, const nd_module *m, const char *fn, const char *name)
{
    if (!name || !*name || strchr(name, '.')) {
        nd_fail(ctx, ND_ERR_ARG, "%s: %s: invalid name \"%s\" (empty or containing '.')", fn,
                m->kind, name ? name : "(null)");
        return false;
    }
    bool taken = false;
    for (int i = 0; i < m->n_params; i++) taken |= strcmp(m->params[i].name, name) == 0;
    for (int i = 0; i < m->n_buffers; i++) taken |= strcmp(m->buffers[i].name, name) == 0;
    for (int i = 0; i < m->n_children; i++) taken |= strcmp(m->children[i].name, name) == 0;
    if (taken) nd_fail(ctx, ND_ERR_ARG, "%s: %s already has \"%s\"", fn, m->kind, name);
    return !taken;
}

static nd_status add_named(nd_ctx *ctx, nd_module *m, const char *fn, nd_param **arr, int *n,
                           const char *name, nd_tensor *t)
{
    if (!m || !t) {
        nd_tensor_destroy(t);
        return nd_fail(ctx, ND_ERR_ARG, "%s: module or tensor is NULL", fn);
    }
    if (!t->persistent) {
        /* arena tensors die at the next reset; the module would keep a dangling pointer */
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s.%s: tensor is not persistent (nd_tensor_create)",
                       fn, m->kind, name ? name : "(null)");
    }
    if (!name_ok(ctx, m, fn, name)) {
        nd_tensor_destroy(t);
        return nd_ctx_error(ctx);
    }
    nd_param *grown = realloc(*arr, (size_t)(*n + 1) * sizeof *grown);
    char *copy = malloc(strlen(name) + 1);
    if (grown) *arr = grown;
    if (!grown || !copy) {
        free(copy);
        nd_tensor_destroy(t);
        return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s.%s", fn, m->kind, name);
    }
    strcpy(copy, name);
    t->name = copy;
    (*arr)[(*n)++] = (nd_param){.name = copy, .tensor = t};
    return ND_OK;
}

nd_status nd_module_add_param(nd_ctx *ctx, nd_module *m, const char *name, nd_tensor *t)
{
    return add_named(ctx, m, "nd_module_add_param", m ? &m->params : NULL, m ? &m->n_params : NULL,
                     name, t);
}

nd_status nd_module_add_buffer(nd_ctx *ctx, nd_module *m, const char *name, nd_tensor *t)
{
    return add_named(ctx, m, "nd_module_add_buffer", m ? &m->buffers : NULL,
                     m ? &m->n_buffers : NULL, name, t);
}

nd_tensor *nd_module_new_param(nd_ctx *ctx, nd_module *m, const char *name, int ndim,
                               const int *shape)
{
    nd_tensor *t = nd_tensor_create(ctx, ndim, shape, true);
    if (!t) return NULL;
    return nd_module_add_param(ctx, m, name, t) == ND_OK ? t : NULL;
}

nd_status nd_module_add_child(nd_ctx *ctx, nd_module *m, const char *name, nd_module *child)
{
    if (!m || !child) {
        nd_module_destroy(child);
        return nd_fail(ctx, ND_ERR_ARG, "nd_module_add_child: module or child is NULL");
    }
    if (!name_ok(ctx, m, "nd_module_add_child", name)) {
        nd_module_destroy(child);
        return nd_ctx_error(ctx);
    }
    nd_module_child *grown = realloc(m->children, (size_t)(m->n_children + 1) * sizeof *grown);
    char *copy = malloc(strlen(name) + 1);
    if (grown) m->children = grown;
    if (!grown || !copy) {
        free(copy);
        nd_module_destroy(child);
        return nd_fail(ctx, ND_ERR_NOMEM, "nd_module_add_child: %s.%s", m->kind, name);
    }
    strcpy(copy, name);
    m->children[m->n_children++] = (nd_module_child){.name = copy, .module = child};
    return ND_OK;
}

nd_tensor *nd_module_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    if (!m || !m->forward) {
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_module_forward: module is NULL or has no forward");
    }
    if (!ND_CHECK1(ctx, "nd_module_forward", x)) return NULL;
    return m->forward(ctx, m, x);
}

void nd_module_train(nd_module *m, bool training)
{
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->n_children; i++) nd_module_train(m->children[i].module, training);
}

void nd_module_eval(nd_module *m)
{
    nd_module_train(m, false);
}

/* Appends m's state under prefix: its params, its buffers if asked, then each child's. */
static bool collect(nd_module *m, const char *prefix, bool buffers, nd_param_list *l)
{
    for (int i = 0; i < m->n_params; i++)
        if (!list_push(l, prefix, m->params[i].name, m->params[i].tensor)) return false;
    for (int i = 0; buffers && i < m->n_buffers; i++)
        if (!list_push(l, prefix, m->buffers[i].name, m->buffers[i].tensor)) return false;
    for (int i = 0; i < m->n_children; i++) {
        size_t len = strlen(prefix) + strlen(m->children[i].name) + 2;
        char *sub = malloc(len);
        if (!sub) return false;
        snprintf(sub, len, "%s%s.", prefix, m->children[i].name);
        bool ok = collect(m->children[i].module, sub, buffers, l);
        free(sub);
        if (!ok) return false;
    }
    return true;
}

static nd_status list_state(nd_ctx *ctx, const char *fn, nd_module *m, bool buffers,
                            nd_param_list *l)
{
    if (!m || !l) return nd_fail(ctx, ND_ERR_ARG, "%s: module or list is NULL", fn);
    if (!collect(m, "", buffers, l)) return nd_fail(ctx, ND_ERR_NOMEM, "%s: %s", fn, m->kind);
    return ND_OK;
}

nd_status nd_module_params(nd_ctx *ctx, nd_module *m, nd_param_list *l)
{
    return list_state(ctx, "nd_module_params", m, false, l);
}

nd_status nd_module_state(nd_ctx *ctx, nd_module *m, nd_param_list *l)
{
    return list_state(ctx, "nd_module_state", m, true, l);
}

void nd_module_zero_grad(nd_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) {
        nd_tensor *t = m->params[i].tensor;
        if (t->grad) memset(t->grad, 0, t->size * sizeof *t->grad);
    }
    for (int i = 0; i < m->n_children; i++) nd_module_zero_grad(m->children[i].module);
}

/* ---------------------------------------------------------------------------------------------
 * The flat parameter block.
 */

/* true when the list's tensors are the consecutive slices of flat, in order */
static bool is_flat(const nd_param_list *l, const nd_tensor *flat)
{
    size_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const nd_tensor *t = l->items[i].tensor;
        if (t->base != flat || t->data != flat->data + off) return false;
        off += t->size;
    }
    return off == flat->size;
}

/* ND_OK when every parameter of l can move into a new block: none is already a view, none is
 * listed twice, and there is at least one element */
static nd_status check_movable(nd_ctx *ctx, const nd_module *m, const nd_param_list *l)
{
    const char *fn = "nd_module_flatten";
    for (int i = 0; i < l->n; i++) {
        const nd_tensor *t = l->items[i].tensor;
        if (t->base)
            return nd_fail(ctx, ND_ERR_ARG,
                           "%s: %s: parameter %s already lives in a block (flatten the outermost "
                           "module once, after adding every parameter)",
                           fn, m->kind, l->items[i].name);
        for (int j = 0; j < i; j++)
            if (l->items[j].tensor == t)
                return nd_fail(ctx, ND_ERR_ARG, "%s: %s: %s and %s are the same tensor", fn,
                               m->kind, l->items[j].name, l->items[i].name);
    }
    size_t n = nd_param_list_numel(l);
    if (n == 0 || n > INT_MAX)
        return nd_fail(ctx, ND_ERR_ARG, "%s: %s has %zu parameter elements (1 to %d)", fn, m->kind,
                       n, INT_MAX);
    return ND_OK;
}

/* Copies each parameter's values and gradient into flat, frees its own memory and points it at
 * its slice. Cannot fail. */
static void move_into(const nd_param_list *l, nd_tensor *flat)
{
    size_t off = 0;
    for (int i = 0; i < l->n; i++) {
        nd_tensor *t = l->items[i].tensor;
        memcpy(flat->data + off, t->data, t->size * sizeof *t->data);
        if (t->grad) memcpy(flat->grad + off, t->grad, t->size * sizeof *t->grad);
        bool has_grad = t->grad || t->requires_grad;
        free(t->data);
        free(t->grad);
        t->data = flat->data + off;
        t->grad = has_grad ? flat->grad + off : NULL;
        t->base = flat;
        off += t->size;
    }
}

nd_tensor *nd_module_flatten(nd_ctx *ctx, nd_module *m)
{
    if (!m) return nd_fail_null(ctx, ND_ERR_ARG, "nd_module_flatten: module is NULL");
    nd_param_list l = {0};
    nd_tensor *flat = NULL;
    if (nd_module_params(ctx, m, &l) != ND_OK) goto done;
    if (m->flat) {
        if (is_flat(&l, m->flat))
            flat = m->flat;
        else
            nd_fail(ctx, ND_ERR_ARG,
                    "nd_module_flatten: %s: parameters were added or changed since it was "
                    "flattened",
                    m->kind);
        goto done;
    }
    if (check_movable(ctx, m, &l) != ND_OK) goto done;
    flat = nd_tensor_create(ctx, 1, (int[]){(int)nd_param_list_numel(&l)}, true);
    if (!flat) goto done;
    flat->name = "flat";
    move_into(&l, flat);
    m->flat = flat;
done:
    nd_param_list_destroy(&l);
    return flat;
}

/* ---------------------------------------------------------------------------------------------
 * Sequential and MLP.
 */
static nd_tensor *sequential_forward(nd_ctx *ctx, nd_module *m, nd_tensor *x)
{
    for (int i = 0; i < m->n_children && x; i++)
        x = nd_module_forward(ctx, m->children[i].module, x);
    return x;
}

nd_status nd_sequential_append(nd_ctx *ctx, nd_module *seq, nd_module *child)
{
    if (seq && seq->forward != sequential_forward) {
        nd_module_destroy(child);
        return nd_fail(ctx, ND_ERR_ARG, "nd_sequential_append: module is a %s, not a Sequential",
                       seq->kind);
    }
    char name[16];
    snprintf(name, sizeof name, "%d", seq ? seq->n_children : 0);
    return nd_module_add_child(ctx, seq, name, child);
}

nd_module *nd_sequential_create(nd_ctx *ctx, int n, nd_module *const *modules)
{
    bool ok = n >= 0 && (n == 0 || modules);
    for (int i = 0; ok && i < n; i++) ok = modules[i] != NULL;
    nd_module *seq =
        ok ? nd_module_create(ctx, "Sequential", sequential_forward, sizeof *seq) : NULL;
    if (!seq) {
        for (int i = 0; modules && i < n; i++) nd_module_destroy(modules[i]);
        return nd_fail_null(ctx, ND_ERR_ARG, "nd_sequential_create: %d modules, or a NULL module",
                            n);
    }
    for (int i = 0; i < n; i++) {
        if (nd_sequential_append(ctx, seq, modules[i]) != ND_OK) {
            for (int j = i + 1; j < n; j++) nd_module_destroy(modules[j]);
            nd_module_destroy(seq);
            return NULL;
        }
    }
    return seq;
}

nd_module *nd_mlp_create(nd_ctx *ctx, int n_sizes, const int *sizes, nd_activation act, nd_rng *rng)
{
    if (n_sizes < 2 || !sizes || !rng)
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_mlp_create: needs at least 2 sizes and an rng "
                            "(got %d sizes)",
                            n_sizes);
    nd_module *seq = nd_sequential_create(ctx, 0, NULL);
    for (int i = 0; seq && i + 1 < n_sizes; i++) {
        nd_status st = nd_sequential_append(
            ctx, seq, nd_linear_create(ctx, sizes[i], sizes[i + 1], true, rng));
        if (st == ND_OK && act != ND_ACT_NONE && i + 2 < n_sizes)
            st = nd_sequential_append(ctx, seq, nd_activation_create(ctx, act));
        if (st != ND_OK) {
            nd_module_destroy(seq);
            return NULL;
        }
    }
    return seq;
}

/* SPDX-License-Identifier: MIT
 * nn/optim.c: SGD, Adam, AdamW and RMSprop with torch.optim's update rules and defaults, written
 * out as plain loops over each parameter (the single-tensor form in torch/optim), gradient
 * clipping by global norm, and closed-form learning-rate schedules. Every state buffer is a
 * persistent tensor made at create, so a step does no allocation and a checkpoint can save them.
 * Each kind of state (exp_avg, ...) is one block with a view per parameter, so when the parameters
 * are one block too (nd_module_flatten) a step is one loop over everything: the same arithmetic
 * element by element, in one pass.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/ctx_internal.h" /* nd_tensor_persistent_view */

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP } opt_kind;

enum { MAX_SLOTS = 3 }; /* state buffers per parameter */

struct nd_optimizer {
    opt_kind kind;
    double lr;
    nd_sgd_options sgd;
    nd_adam_options adam;
    nd_rmsprop_options rms;
    int n;                       /* parameters */
    nd_param *params;            /* (n,) names owned, tensors not */
    nd_tensor *step;             /* scalar: steps taken (a tensor so checkpoints save it) */
    int n_slots;                 /* state buffers per parameter */
    nd_tensor **slot[MAX_SLOTS]; /* (n,) each: slot[s][i] has param i's shape */
    nd_tensor *block[MAX_SLOTS]; /* (numel,) each: slot[s][i] are consecutive views of block[s] */
    size_t numel;                /* elements over all parameters */
    int n_state;
    nd_param *state; /* (1 + n * n_slots,) "step", then "<param>.<slot name>" */
};

void nd_optimizer_destroy(nd_optimizer *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) free((char *)o->params[i].name);
    for (int i = 0; i < o->n_state; i++) {
        nd_tensor_destroy(o->state[i].tensor);
        free((char *)o->state[i].name);
    }
    for (int s = 0; s < MAX_SLOTS; s++) free(o->slot[s]), nd_tensor_destroy(o->block[s]);
    free(o->params);
    free(o->state);
    free(o);
}

static char *join(const char *a, const char *b)
{
    size_t len = strlen(a) + strlen(b) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s%s%s", a, *a && *b ? "." : "", b);
    return s;
}

/* Allocates the optimizer, copies the parameter list and makes zeroed state buffers named by
 * slot_names (n_slots of them). */
static nd_optimizer *optimizer_new(nd_ctx *ctx, const char *fn, opt_kind kind,
                                   const nd_param *params, int n, int n_slots,
                                   const char *const *slot_names)
{
    if (n < 0 || (n > 0 && !params))
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: parameter list is NULL or has length %d", fn, n);
    for (int i = 0; i < n; i++)
        if (!params[i].tensor || !params[i].tensor->persistent)
            return nd_fail_null(ctx, ND_ERR_ARG, "%s: parameter %d (%s) is %s", fn, i,
                                params[i].name ? params[i].name : "unnamed",
                                params[i].tensor ? "not persistent" : "NULL");
    nd_optimizer *o = calloc(1, sizeof *o);
    if (!o) return nd_fail_null(ctx, ND_ERR_NOMEM, "%s", fn);
    o->kind = kind;
    o->n = n;
    o->n_slots = n_slots;
    o->params = calloc((size_t)n + 1, sizeof *o->params);
    o->state = calloc((size_t)n * n_slots + 1, sizeof *o->state);
    bool ok = o->params && o->state;
    for (int s = 0; ok && s < n_slots; s++)
        ok = (o->slot[s] = calloc((size_t)n + 1, sizeof(nd_tensor *)));
    for (int i = 0; i < n; i++) o->numel += params[i].tensor->size;
    ok = ok && o->numel <= INT_MAX;
    for (int s = 0; ok && s < n_slots && o->numel > 0; s++) /* one block per kind of state */
        ok = (o->block[s] = nd_tensor_create(ctx, 1, (int[]){(int)o->numel}, false)) != NULL;
    if (ok) {
        o->step = nd_tensor_create(ctx, 0, NULL, false);
        char *name = join("", "step");
        o->state[o->n_state++] = (nd_param){.name = name, .tensor = o->step};
        ok = o->step && name;
    }
    size_t off = 0;
    for (int i = 0; ok && i < n; off += params[i].tensor->size, i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        const char *pname = params[i].name ? params[i].name : idx;
        o->params[i] = (nd_param){.name = join("", pname), .tensor = params[i].tensor};
        ok = o->params[i].name != NULL;
        for (int s = 0; ok && s < n_slots; s++) {
            const nd_tensor *p = params[i].tensor;
            nd_tensor *t = nd_tensor_persistent_view(ctx, o->block[s], off, p->ndim, p->shape);
            char *name = join(pname, slot_names[s]);
            o->state[o->n_state++] = (nd_param){.name = name, .tensor = t};
            o->slot[s][i] = t;
            ok = t && name;
        }
    }
    if (!ok) {
        nd_optimizer_destroy(o);
        return nd_fail_null(ctx, ND_ERR_NOMEM, "%s: state buffers", fn);
    }
    return o;
}

nd_optimizer *nd_sgd_create(nd_ctx *ctx, const nd_param *params, int n,
                            const nd_sgd_options *options)
{
    nd_sgd_options opts = options ? *options : ND_SGD_DEFAULT;
    if (!(opts.lr >= 0) || !(opts.momentum >= 0) || !(opts.weight_decay >= 0) ||
        !isfinite(opts.dampening) || (opts.nesterov && (opts.momentum <= 0 || opts.dampening != 0)))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_sgd_create: lr %g, momentum %g, dampening %g, weight_decay %g, "
                            "nesterov %d (nesterov needs momentum > 0 and dampening 0)",
                            opts.lr, opts.momentum, opts.dampening, opts.weight_decay,
                            opts.nesterov);
    static const char *const names[] = {"momentum_buffer"};
    nd_optimizer *o =
        optimizer_new(ctx, "nd_sgd_create", OPT_SGD, params, n, opts.momentum > 0 ? 1 : 0, names);
    if (o) o->sgd = opts, o->lr = opts.lr;
    return o;
}

static nd_optimizer *adam_create(nd_ctx *ctx, const char *fn, opt_kind kind, const nd_param *params,
                                 int n, nd_adam_options opts)
{
    if (!(opts.lr >= 0) || !(opts.beta1 >= 0 && opts.beta1 < 1) ||
        !(opts.beta2 >= 0 && opts.beta2 < 1) || !(opts.eps >= 0) || !(opts.weight_decay >= 0))
        return nd_fail_null(ctx, ND_ERR_ARG, "%s: lr %g, betas (%g, %g), eps %g, weight_decay %g",
                            fn, opts.lr, opts.beta1, opts.beta2, opts.eps, opts.weight_decay);
    static const char *const names[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    nd_optimizer *o = optimizer_new(ctx, fn, kind, params, n, opts.amsgrad ? 3 : 2, names);
    if (o) o->adam = opts, o->lr = opts.lr;
    return o;
}

nd_optimizer *nd_adam_create(nd_ctx *ctx, const nd_param *params, int n,
                             const nd_adam_options *opts)
{
    return adam_create(ctx, "nd_adam_create", OPT_ADAM, params, n, opts ? *opts : ND_ADAM_DEFAULT);
}

nd_optimizer *nd_adamw_create(nd_ctx *ctx, const nd_param *params, int n,
                              const nd_adam_options *opts)
{
    return adam_create(ctx, "nd_adamw_create", OPT_ADAMW, params, n,
                       opts ? *opts : ND_ADAMW_DEFAULT);
}

nd_optimizer *nd_rmsprop_create(nd_ctx *ctx, const nd_param *params, int n,
                                const nd_rmsprop_options *options)
{
    nd_rmsprop_options opts = options ? *options : ND_RMSPROP_DEFAULT;
    if (!(opts.lr >= 0) || !(opts.alpha >= 0 && opts.alpha <= 1) || !(opts.eps >= 0) ||
        !(opts.weight_decay >= 0) || !(opts.momentum >= 0))
        return nd_fail_null(ctx, ND_ERR_ARG,
                            "nd_rmsprop_create: lr %g, alpha %g, eps %g, weight_decay %g, "
                            "momentum %g",
                            opts.lr, opts.alpha, opts.eps, opts.weight_decay, opts.momentum);
    /* slots in use: square_avg always, then momentum_buffer and grad_avg as configured */
    const char *names[3];
    int k = 0;
    names[k++] = "square_avg";
    if (opts.momentum > 0) names[k++] = "momentum_buffer";
    if (opts.centered) names[k++] = "grad_avg";
    nd_optimizer *o = optimizer_new(ctx, "nd_rmsprop_create", OPT_RMSPROP, params, n, k, names);
    if (o) o->rms = opts, o->lr = opts.lr;
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * The updates. p, g and the state are (size,) arrays of one parameter; arithmetic in double.
 */

/* https://pytorch.org/docs/stable/generated/torch.optim.SGD.html */
static void sgd_update(const nd_sgd_options *o, double lr, bool first, nd_real *p, const nd_real *g,
                       nd_real *buf, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        double d = g[i];
        if (o->weight_decay != 0) d += o->weight_decay * p[i];
        if (buf) {
            double b = first ? d : o->momentum * buf[i] + (1 - o->dampening) * d;
            buf[i] = (nd_real)b;
            d = o->nesterov ? d + o->momentum * b : b;
        }
        p[i] = (nd_real)(p[i] - lr * d);
    }
}

/* https://pytorch.org/docs/stable/generated/torch.optim.Adam.html and AdamW.html: AdamW decays
 * the parameter directly (p *= 1 - lr wd) instead of adding wd p to the gradient. */
static void adam_update(const nd_adam_options *o, bool decoupled, double lr, double t, nd_real *p,
                        const nd_real *g, nd_real *m, nd_real *v, nd_real *vmax, size_t size)
{
    double bc1 = 1 - pow(o->beta1, t), bc2_sqrt = sqrt(1 - pow(o->beta2, t));
    double step_size = lr / bc1;
    for (size_t i = 0; i < size; i++) {
        double d = g[i], pi = p[i];
        if (decoupled)
            pi *= 1 - lr * o->weight_decay;
        else if (o->weight_decay != 0)
            d += o->weight_decay * pi;
        double mi = m[i] + (1 - o->beta1) * (d - m[i]); /* exp_avg.lerp_(grad, 1 - beta1) */
        double vi = o->beta2 * v[i] + (1 - o->beta2) * d * d;
        m[i] = (nd_real)mi, v[i] = (nd_real)vi;
        if (vmax) {
            vmax[i] = vmax[i] > v[i] ? vmax[i] : v[i];
            vi = vmax[i];
        }
        double denom = sqrt(vi) / bc2_sqrt + o->eps;
        p[i] = (nd_real)(pi - step_size * mi / denom);
    }
}

/* https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html (eps after the sqrt) */
static void rmsprop_update(const nd_rmsprop_options *o, double lr, nd_real *p, const nd_real *g,
                           nd_real *sq, nd_real *buf, nd_real *gavg, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        double d = g[i];
        if (o->weight_decay != 0) d += o->weight_decay * p[i];
        double s = o->alpha * sq[i] + (1 - o->alpha) * d * d;
        sq[i] = (nd_real)s;
        double avg;
        if (gavg) {
            double ga =
                gavg[i] + (1 - o->alpha) * (d - gavg[i]); /* grad_avg.lerp_(grad, 1-alpha) */
            gavg[i] = (nd_real)ga;
            avg = sqrt(s - ga * ga) + o->eps;
        } else {
            avg = sqrt(s) + o->eps;
        }
        if (buf) {
            double b = o->momentum * buf[i] + d / avg;
            buf[i] = (nd_real)b;
            p[i] = (nd_real)(p[i] - lr * b);
        } else {
            p[i] = (nd_real)(p[i] - lr * d / avg);
        }
    }
}

/* One update of size elements: p, g and the state slices s[0..n_slots) */
static void update(const nd_optimizer *o, bool first, double t, nd_real *p, const nd_real *g,
                   nd_real *const *s, size_t size)
{
    switch (o->kind) {
    case OPT_SGD:
        sgd_update(&o->sgd, o->lr, first, p, g, s[0], size);
        break;
    case OPT_ADAM:
    case OPT_ADAMW:
        adam_update(&o->adam, o->kind == OPT_ADAMW, o->lr, t, p, g, s[0], s[1], s[2], size);
        break;
    case OPT_RMSPROP: {
        nd_real *buf = o->rms.momentum > 0 ? s[1] : NULL;
        nd_real *gavg = o->rms.centered ? (o->rms.momentum > 0 ? s[2] : s[1]) : NULL;
        rmsprop_update(&o->rms, o->lr, p, g, s[0], buf, gavg, size);
        break;
    }
    }
}

/* true when the parameters are consecutive slices of one block, values and gradients alike, each
 * with a gradient (nd_module_flatten): then one update covers them all */
static bool params_flat(const nd_optimizer *o)
{
    if (o->n == 0 || !o->params[0].tensor->grad) return false;
    uintptr_t data = (uintptr_t)o->params[0].tensor->data;
    uintptr_t grad = (uintptr_t)o->params[0].tensor->grad;
    for (int i = 0; i < o->n; i++) {
        const nd_tensor *p = o->params[i].tensor;
        if ((uintptr_t)p->data != data || (uintptr_t)p->grad != grad) return false;
        data += p->size * sizeof(nd_real), grad += p->size * sizeof(nd_real);
    }
    return true;
}

nd_status nd_optimizer_step(nd_ctx *ctx, nd_optimizer *o)
{
    if (!o) return nd_fail(ctx, ND_ERR_ARG, "nd_optimizer_step: optimizer is NULL");
    /* check first, so a bad gradient leaves parameters and state as they were */
    for (int i = 0; i < o->n; i++) {
        const nd_tensor *p = o->params[i].tensor;
        for (size_t k = 0; p->grad && k < p->size; k++)
            if (!isfinite(p->grad[k]))
                return nd_fail(ctx, ND_ERR_NONFINITE,
                               "nd_optimizer_step: gradient of %s has a non-finite value at "
                               "element %zu; parameters left unchanged",
                               o->params[i].name, k);
    }
    bool first = o->step->data[0] == 0;
    double t = (double)o->step->data[0] + 1;
    if (params_flat(o)) { /* one pass over the block */
        const nd_tensor *p0 = o->params[0].tensor;
        nd_real *s[MAX_SLOTS] = {0};
        for (int k = 0; k < o->n_slots; k++) s[k] = o->block[k]->data;
        update(o, first, t, p0->data, p0->grad, s, o->numel);
    } else {
        for (int i = 0; i < o->n; i++) {
            nd_tensor *p = o->params[i].tensor;
            if (!p->grad) continue; /* no gradient: skipped, as PyTorch skips grad None */
            nd_real *s[MAX_SLOTS] = {0};
            for (int k = 0; k < o->n_slots; k++) s[k] = o->slot[k][i]->data;
            update(o, first, t, p->data, p->grad, s, p->size);
        }
    }
    o->step->data[0] = (nd_real)t;
    return ND_OK;
}

void nd_optimizer_zero_grad(nd_optimizer *o)
{
    for (int i = 0; o && i < o->n; i++) {
        nd_tensor *p = o->params[i].tensor;
        if (p->grad) memset(p->grad, 0, p->size * sizeof *p->grad);
    }
}

double nd_optimizer_lr(const nd_optimizer *o)
{
    return o ? o->lr : 0;
}

void nd_optimizer_set_lr(nd_optimizer *o, double lr)
{
    if (o) o->lr = lr;
}

long nd_optimizer_steps(const nd_optimizer *o)
{
    return o ? (long)o->step->data[0] : 0;
}

const nd_param *nd_optimizer_state(const nd_optimizer *o, int *n)
{
    if (n) *n = o ? o->n_state : 0;
    return o ? o->state : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Clipping and schedules
 */
double nd_clip_grad_norm(const nd_param *params, int n, double max_norm)
{
    double sq = 0;
    for (int i = 0; params && i < n; i++) {
        const nd_tensor *p = params[i].tensor;
        for (size_t k = 0; p && p->grad && k < p->size; k++) sq += (double)p->grad[k] * p->grad[k];
    }
    double norm = sqrt(sq);
    if (!isfinite(norm)) return norm; /* the caller decides; nd_optimizer_step refuses anyway */
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < n; i++) {
            nd_tensor *p = params[i].tensor;
            for (size_t k = 0; p && p->grad && k < p->size; k++)
                p->grad[k] = (nd_real)(p->grad[k] * coef);
        }
    return norm;
}

nd_lr_schedule nd_lr_step(double base_lr, int step_size, double gamma)
{
    return (nd_lr_schedule){
        .kind = ND_LR_STEP, .base_lr = base_lr, .step_size = step_size, .gamma = gamma};
}

nd_lr_schedule nd_lr_cosine(double base_lr, int t_max, double eta_min)
{
    return (nd_lr_schedule){
        .kind = ND_LR_COSINE, .base_lr = base_lr, .t_max = t_max, .eta_min = eta_min};
}

double nd_lr_at(const nd_lr_schedule *s, int epoch)
{
    if (!s) return 0;
    switch (s->kind) {
    case ND_LR_STEP:
        return s->step_size > 0 ? s->base_lr * pow(s->gamma, epoch / s->step_size) : s->base_lr;
    case ND_LR_COSINE:
        if (s->t_max <= 0) return s->base_lr;
        return s->eta_min +
               (s->base_lr - s->eta_min) * (1 + cos(M_PI * epoch / (double)s->t_max)) / 2;
    case ND_LR_CONSTANT:
        break;
    }
    return s->base_lr;
}

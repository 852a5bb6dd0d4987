/* SPDX-License-Identifier: MIT
 * tests/gradcheck.c: see gradcheck.h. Differences are taken in double on the build's nd_real,
 * so the float build uses a larger step and tolerance. */
#include <math.h>
#include <stdio.h>

#include "gradcheck.h"

gc_tol gc_default_tol(void)
{
#ifdef ND_REAL_FLOAT
    return (gc_tol){.eps = 1e-2, .atol = 2e-2, .rtol = 2e-2};
#else
    return (gc_tol){.eps = 1e-6, .atol = 1e-6, .rtol = 1e-5};
#endif
}

/* Random weights for the reduction, the same for every evaluation of one check. */
static nd_tensor *weights_like(nd_ctx *ctx, const nd_tensor *y, uint64_t seed)
{
    nd_tensor *w = nd_tensor_new(ctx, y->ndim, y->shape);
    if (!w) return NULL;
    nd_rng rng = nd_rng_seed(seed);
    nd_fill_uniform(w, &rng, 0.5, 1.5);
    return w;
}

/* L = sum(w * f(x)) */
static nd_tensor *reduced(nd_ctx *ctx, gc_fn f, nd_tensor **x, void *user)
{
    nd_tensor *y = f(ctx, x, user);
    if (!y) return NULL;
    return nd_sum(ctx, nd_mul(ctx, y, weights_like(ctx, y, 1234)));
}

/* h = sum(v * dL/dx) over all inputs, the gradient built with create_graph when asked */
static nd_tensor *grad_dot(nd_ctx *ctx, gc_fn f, nd_tensor **x, int n, void *user, bool create)
{
    nd_tensor *L = reduced(ctx, f, x, user);
    if (!L) return NULL;
    nd_tensor *g[16];
    if (n > 16 || nd_grad(ctx, &L, NULL, 1, x, n, g, create ? ND_CREATE_GRAPH : 0) != ND_OK)
        return NULL;
    nd_tensor *h = NULL;
    for (int i = 0; i < n; i++) {
        nd_tensor *term = nd_sum(ctx, nd_mul(ctx, g[i], weights_like(ctx, g[i], 99 + i)));
        h = h ? nd_add(ctx, h, term) : term;
    }
    return h;
}

typedef nd_tensor *(*scalar_fn)(nd_ctx *, gc_fn, nd_tensor **, int, void *, bool);

static nd_tensor *first_order(nd_ctx *ctx, gc_fn f, nd_tensor **x, int n, void *user, bool c)
{
    (void)n, (void)c;
    return reduced(ctx, f, x, user);
}

/* Compares nd_grad of s(x) with central differences of s. */
static bool compare(nd_ctx *ctx, scalar_fn s, gc_fn f, nd_tensor **x, int n, void *user,
                    bool create, gc_tol tol, char *report)
{
    nd_mark m = nd_ctx_mark(ctx);
    nd_tensor *S = s(ctx, f, x, n, user, create);
    nd_tensor *analytic[16];
    if (!S || nd_grad(ctx, &S, NULL, 1, x, n, analytic, ND_ALLOW_UNUSED) != ND_OK) {
        snprintf(report, 256, "could not build the gradient: %s", nd_ctx_errmsg(ctx));
        return false;
    } /* an S that does not depend on x (a zero second derivative) gets zero gradients */
    bool ok = true;
    double worst = -1;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < x[i]->size; k++) {
            nd_real saved = x[i]->data[k];
            nd_mark inner = nd_ctx_mark(ctx);
            bool prev = nd_ctx_set_grad(ctx, true); /* s may need a graph for its own gradient */
            x[i]->data[k] = (nd_real)(saved + tol.eps);
            double sp = nd_item(s(ctx, f, x, n, user, false));
            nd_ctx_rewind(ctx, inner);
            x[i]->data[k] = (nd_real)(saved - tol.eps);
            double sm = nd_item(s(ctx, f, x, n, user, false));
            nd_ctx_rewind(ctx, inner);
            nd_ctx_set_grad(ctx, prev);
            x[i]->data[k] = saved;
            double numeric = (sp - sm) / (2 * tol.eps), a = analytic[i]->data[k];
            double excess = fabs(a - numeric) - (tol.atol + tol.rtol * fabs(numeric));
            if (!(excess <= 0) && excess > worst) { /* NaN counts as a failure */
                worst = isnan(excess) ? INFINITY : excess;
                ok = false;
                snprintf(report, 256, "input %d element %zu: analytic %.10g, numeric %.10g", i, k,
                         a, numeric);
            }
        }
    }
    nd_ctx_rewind(ctx, m);
    return ok && nd_ctx_error(ctx) == ND_OK;
}

bool gradcheck(nd_ctx *ctx, gc_fn f, nd_tensor **x, int n, void *user, gc_tol tol, char *report)
{
    return compare(ctx, first_order, f, x, n, user, false, tol, report);
}

bool gradgradcheck(nd_ctx *ctx, gc_fn f, nd_tensor **x, int n, void *user, gc_tol tol, char *report)
{
    return compare(ctx, grad_dot, f, x, n, user, true, tol, report);
}

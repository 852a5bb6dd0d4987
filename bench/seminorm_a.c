/* SPDX-License-Identifier: MIT
 * bench/seminorm_a.c: workload A, torchdiffeq's own seminorm test with its exact weights:
 * f(t, x) = tanh(W2 tanh(W1 x + b1) + b2) sin(2t), width 1024, x0 = [1, 2], t = [0, 1], loss the
 * sum of the solution at both times, gradients with respect to x0 and every weight. Every
 * adaptive method, at the three tolerances and at the test's own (1e-8, 1e-8). torchdiffeq's
 * counts for the same runs come from the same file. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodal.h"
#include "seminorm_workloads.h"

typedef struct {
    nd_tensor *W1, *b1, *W2, *b2;
} mlp;

static int dynamics(nd_ctx *c, nd_tensor *t, nd_tensor *y, nd_tensor **dy, void *u)
{
    mlp *m = u;
    nd_tensor *x = nd_reshape(c, y, 2, (int[]){1, 2});
    nd_tensor *h = nd_tanh(c, nd_add(c, nd_matmul_t(c, x, m->W1, false, true), m->b1));
    nd_tensor *o = nd_tanh(c, nd_add(c, nd_matmul_t(c, h, m->W2, false, true), m->b2));
    *dy = nd_reshape(c, nd_mul(c, o, nd_sin(c, nd_mul_scalar(c, t, 2))), 1, (int[]){2});
    return *dy ? 0 : -1;
}

static cJSON *load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    cJSON *j = NULL;
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = 0;
        j = cJSON_Parse(buf);
    }
    free(buf);
    fclose(f);
    return j;
}

static size_t fill(nd_tensor *t, const cJSON *a, size_t k)
{
    if (cJSON_IsObject(a)) a = cJSON_GetObjectItemCaseSensitive(a, "value");
    if (cJSON_IsNumber(a)) {
        if (k < t->size) t->data[k] = (nd_real)a->valuedouble;
        return k + 1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, a) k = fill(t, e, k);
    return k;
}

/* torchdiffeq's backward NFE for (method, rtol, atol, column), or -1 */
static long torchdiffeq_count(const cJSON *runs, const char *method, double rtol, double atol,
                              const char *column)
{
    const cJSON *run;
    cJSON_ArrayForEach(run, runs)
    {
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(run, "dtype");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(run, "method");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "float64") || !cJSON_IsString(m) ||
            strcmp(m->valuestring, method))
            continue;
        double r = cJSON_GetObjectItemCaseSensitive(run, "rtol")->valuedouble;
        double a = cJSON_GetObjectItemCaseSensitive(run, "atol")->valuedouble;
        if (fabs(r - rtol) > 1e-3 * rtol || fabs(a - atol) > 1e-3 * atol) continue;
        const cJSON *col = cJSON_GetObjectItemCaseSensitive(run, column);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(col, "nfe_backward");
        return cJSON_IsNumber(n) ? (long)n->valuedouble : -1;
    }
    return -1;
}

int sn_workload_a(bool quick)
{
    cJSON *j = load(SN_REFERENCE_DIR "/test_seminorm.json");
    if (!j)
        return fprintf(stderr, "seminorm A: cannot read %s\n",
                       SN_REFERENCE_DIR "/test_seminorm.json"),
               1;
    nd_ctx *ctx = nd_ctx_create(0);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "weights");
    mlp m = {nd_tensor_create(ctx, 2, (int[]){1024, 2}, true),
             nd_tensor_create(ctx, 1, (int[]){1024}, true),
             nd_tensor_create(ctx, 2, (int[]){2, 1024}, true),
             nd_tensor_create(ctx, 1, (int[]){2}, true)};
    fill(m.W1, cJSON_GetObjectItemCaseSensitive(w, "W1"), 0);
    fill(m.b1, cJSON_GetObjectItemCaseSensitive(w, "b1"), 0);
    fill(m.W2, cJSON_GetObjectItemCaseSensitive(w, "W2"), 0);
    fill(m.b2, cJSON_GetObjectItemCaseSensitive(w, "b2"), 0);
    nd_tensor *params[4] = {m.W1, m.b1, m.W2, m.b2};
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(j, "runs");

    const char *methods[6] = {"dopri5", "tsit5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"};
    sn_tol tols[SN_N_TOLS + 1] = {sn_tols[0], sn_tols[1], sn_tols[2], {1e-8, 1e-8}};
    const char *norms[3] = {"default", "default_no_t", "seminorm"};
    const char *columns[3] = {"default", "default_no_t", "seminorm_no_t"};
    size_t n_grad = 2;
    for (int p = 0; p < 4; p++) n_grad += params[p]->size;
    double *grads = malloc(3 * n_grad * sizeof *grads);
    int status = 0;
    /* one untimed solve first, so the first timing does not pay for cold caches */
    {
        nd_ode_options o = ND_ODE_DEFAULT;
        nd_tensor *y0 = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){1, 2});
        y0->requires_grad = true;
        nd_tensor *L = nd_sum(ctx, nd_odeint(ctx, dynamics, &m, y0,
                                             nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1}),
                                             params, 4, &o));
        if (L) nd_backward(ctx, L, 0);
        nd_ctx_reset(ctx);
    }
    for (int mi = 0; mi < (quick ? 1 : 6) && !status; mi++) {
        for (int ti = 0; ti < (quick ? 1 : SN_N_TOLS + 1) && !status; ti++) {
            for (int k = 0; k < 3; k++) {
                nd_tensor *y0 = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){1, 2});
                nd_tensor *t = nd_tensor_from(ctx, 1, (int[]){2}, (nd_real[]){0, 1});
                y0->requires_grad = true;
                t->requires_grad = k == 0; /* "default": the time adjoint is integrated */
                nd_ode_options o = ND_ODE_DEFAULT;
                if (!nd_ode_method_from_name(methods[mi], &o.solver.method)) return 2;
                o.adjoint.method = o.solver.method;
                o.solver.rtol = o.adjoint.rtol = tols[ti].rtol;
                o.solver.atol = o.adjoint.atol = tols[ti].atol;
                o.adjoint.norm = k == 2 ? ND_NORM_SEMINORM : ND_NORM_RMS;
                nd_zero_grad(params, 4);
                nd_tensor *ys = nd_odeint(ctx, dynamics, &m, y0, t, params, 4, &o);
                nd_tensor *L = nd_sum(ctx, ys);
                double t0 = sn_now();
                if (!L || nd_backward(ctx, L, 0) != ND_OK) {
                    fprintf(stderr, "seminorm A: %s\n", nd_ctx_errmsg(ctx));
                    status = 1;
                    break;
                }
                double ms = 1e3 * (sn_now() - t0);
                nd_ode_stats st = *nd_odeint_stats(ys);
                double *g = grads + k * n_grad;
                size_t q = 0;
                g[q++] = y0->grad[0], g[q++] = y0->grad[1];
                for (int p = 0; p < 4; p++)
                    for (size_t e = 0; e < params[p]->size; e++) g[q++] = params[p]->grad[e];
                sn_result r = {.workload = "A",
                               .method = methods[mi],
                               .norm = norms[k],
                               .rtol = tols[ti].rtol,
                               .atol = tols[ti].atol,
                               .nfe_forward = st.forward.nfe,
                               .nfe_backward = st.backward.nfe,
                               .accepted_backward = st.backward.accepted,
                               .rejected_backward = st.backward.rejected,
                               .ms_backward = ms,
                               .max_rel_grad_diff = sn_max_rel_diff(g, grads, n_grad),
                               .rel_grad_diff_norm = sn_rel_diff_norm(g, grads, n_grad),
                               .torchdiffeq_nfe_backward = torchdiffeq_count(
                                   runs, methods[mi], tols[ti].rtol, tols[ti].atol, columns[k])};
                sn_add_bound(&r, &st.backward.limit);
                if (k == 0)
                    snprintf(r.note, sizeof r.note, "nfe includes 1 f per output time for dL/dt");
                sn_report(&r);
                nd_ctx_reset(ctx);
            }
        }
    }
    free(grads);
    for (int p = 0; p < 4; p++) nd_tensor_destroy(params[p]);
    nd_ctx_destroy(ctx);
    cJSON_Delete(j);
    return status;
}

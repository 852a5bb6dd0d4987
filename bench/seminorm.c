/* SPDX-License-Identifier: MIT
 * bench/seminorm.c: where the seminorm saves work in the adjoint, and where it cannot: the
 * workloads of shared/reference/WORKLOADS.md, paired (the same weights, batch and forward solve
 * for every norm), at (rtol, atol) = (1e-3, 1e-6), (1e-4, 1e-7), (1e-5, 1e-8).
 *
 *   A        torchdiffeq's seminorm test, exact weights (tests/reference/test_seminorm.json),
 *            every adaptive method; also at its test tolerance (1e-8, 1e-8)
 *   B        a continuous normalising flow on 8 gaussians, trained with the seminorm and
 *            measured at checkpoints (examples/cnf2d.c's paired measurement)
 *   C        a neural CDE on the spirals task, cubic path ("C") and piecewise-linear path with a
 *            jump at every knot ("C-linear") (examples/ncde.c's)
 *   spiral   control: torchdiffeq's ode_demo at initialisation, 10 batches
 *   wide     control: an MLP 64-512-512-64, batch 256, 5 output times on [0, 1]
 *
 * Norms: "default" is the RMS norm with the time adjoint integrated (t requires grad, as
 * torchdiffeq does whenever f depends on t), "default_no_t" the RMS norm without it, "seminorm"
 * nodal's ND_NORM_SEMINORM (the paper's: state and state adjoint only). For autonomous f the
 * first two coincide and only "default" is run.
 *
 * Output: one JSON object per measurement on stdout; with --markdown FILE a table of backward
 * NFE and savings beside torchdiffeq's numbers; with --chart FILE.png a bar chart.
 * Usage: seminorm [--workloads A,B,C,spiral,wide] [--quick] [--markdown F] [--chart F.png]
 *                 [--from RESULTS.jsonl]   (redraw the table and chart from a run's output)
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodal.h"
#include "seminorm_workloads.h"
#ifdef HAVE_PLOT
#include "plot.h"
#endif

/* ---- recording results ------------------------------------------------------------------- */

#define MAX_ROWS 512
static sn_result rows[MAX_ROWS];
static int n_rows;

void sn_report(const sn_result *r)
{
    if (n_rows < MAX_ROWS) rows[n_rows++] = *r;
    printf("{\"workload\": \"%s\", \"method\": \"%s\", \"norm\": \"%s\", \"rtol\": %g, "
           "\"atol\": %g, \"nfe_forward\": %ld, \"nfe_backward\": %ld, \"accepted_backward\": %ld, "
           "\"rejected_backward\": %ld, \"ms_backward\": %.3f, \"max_rel_grad_diff\": %.3g",
           r->workload, r->method, r->norm, r->rtol, r->atol, r->nfe_forward, r->nfe_backward,
           r->accepted_backward, r->rejected_backward, r->ms_backward, r->max_rel_grad_diff);
    if (!isnan(r->rel_grad_diff_norm)) /* JSON has no NaN: an unmeasured value is left out */
        printf(", \"rel_grad_diff_norm\": %.3g", r->rel_grad_diff_norm);
    if (r->torchdiffeq_nfe_backward >= 0)
        printf(", \"torchdiffeq_nfe_backward\": %ld", r->torchdiffeq_nfe_backward);
    if (r->note[0]) printf(", \"note\": \"%s\"", r->note);
    printf("}\n");
    fflush(stdout);
}

double sn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double sn_rel_diff_norm(const double *g, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (g[i] - ref[i]) * (g[i] - ref[i]), den += ref[i] * ref[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double sn_max_rel_diff(const double *g, const double *ref, size_t n)
{
    double scale = 0, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(g[i] - ref[i]) / fmax(fabs(ref[i]), 1e-3 * scale));
    return worst;
}

const sn_tol sn_tols[SN_N_TOLS] = {{1e-3, 1e-6}, {1e-4, 1e-7}, {1e-5, 1e-8}};

/* ---- the table and the chart -------------------------------------------------------------- */

/* the row of (workload, method, rtol, atol, norm), or NULL */
static const sn_result *find(const char *workload, const char *method, double rtol, double atol,
                             const char *norm)
{
    for (int i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].workload, workload) && !strcmp(rows[i].method, method) &&
            rows[i].rtol == rtol && rows[i].atol == atol && !strcmp(rows[i].norm, norm))
            return &rows[i];
    return NULL;
}

/* Field k of a JSON line: a copy of its string (NULL if absent), its number (d if absent). */
static char *json_str(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static double json_num(const cJSON *j, const char *k, double d)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : d;
}

/* Rows from a previous run's JSON lines, to redraw the table and chart without rerunning. */
static int read_jsonl(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    while (fgets(line, sizeof line, f) && n_rows < MAX_ROWS) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        sn_result *r = &rows[n_rows];
#define STR(k) json_str(j, k)
#define NUM(k, d) json_num(j, k, d)
        *r = (sn_result){.workload = STR("workload"), .method = STR("method"), .norm = STR("norm"),
                         .rtol = NUM("rtol", 0), .atol = NUM("atol", 0),
                         .nfe_forward = (long)NUM("nfe_forward", 0),
                         .nfe_backward = (long)NUM("nfe_backward", 0),
                         .accepted_backward = (long)NUM("accepted_backward", 0),
                         .rejected_backward = (long)NUM("rejected_backward", 0),
                         .ms_backward = NUM("ms_backward", 0),
                         .max_rel_grad_diff = NUM("max_rel_grad_diff", NAN),
                         .rel_grad_diff_norm = NUM("rel_grad_diff_norm", NAN),
                         .torchdiffeq_nfe_backward = (long)NUM("torchdiffeq_nfe_backward", -1)};
#undef STR
#undef NUM
        if (r->workload && r->method && r->norm) n_rows++; /* the strings live until exit */
        cJSON_Delete(j);
    }
    fclose(f);
    return 0;
}

static int write_markdown(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "| workload | method | rtol, atol | backward NFE: default | default without a_t | "
               "seminorm | saving vs default | torchdiffeq: paper seminorm vs default (saving) | "
               "grad diff: norm-wise / largest entry | ms backward (default / seminorm) |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++) {
        const sn_result *r = &rows[i];
        if (strcmp(r->norm, "seminorm")) continue;
        const sn_result *d = find(r->workload, r->method, r->rtol, r->atol, "default");
        const sn_result *d0 = find(r->workload, r->method, r->rtol, r->atol, "default_no_t");
        char no_t[32] = "=", td[64] = "";
        if (d0) snprintf(no_t, sizeof no_t, "%ld", d0->nfe_backward);
        if (r->torchdiffeq_nfe_backward >= 0) {
            /* torchdiffeq's "default without a_t" where it was measured, else its default */
            long tb = d0 && d0->torchdiffeq_nfe_backward >= 0 ? d0->torchdiffeq_nfe_backward
                      : d ? d->torchdiffeq_nfe_backward : -1;
            if (tb > 0)
                snprintf(td, sizeof td, "%ld vs %ld (%.0f%%)", r->torchdiffeq_nfe_backward, tb,
                         100.0 * (1 - (double)r->torchdiffeq_nfe_backward / tb));
            else
                snprintf(td, sizeof td, "%ld", r->torchdiffeq_nfe_backward);
        }
        long ref = d ? d->nfe_backward : 0;
        char gd[48];
        if (isnan(r->rel_grad_diff_norm))
            snprintf(gd, sizeof gd, "- / %.1e", r->max_rel_grad_diff);
        else
            snprintf(gd, sizeof gd, "%.1e / %.1e", r->rel_grad_diff_norm, r->max_rel_grad_diff);
        fprintf(f, "| %s | %s | %g, %g | %ld | %s | %ld | %.0f%% | %s | %s | %.1f / %.1f |\n",
                r->workload, r->method, r->rtol, r->atol, ref, no_t, r->nfe_backward,
                ref ? 100.0 * (1 - (double)r->nfe_backward / ref) : 0.0, td, gd,
                d ? d->ms_backward : 0, r->ms_backward);
    }
    fclose(f);
    return rename(tmp, path);
}

#ifdef HAVE_PLOT
/* Backward NFE of each norm relative to the default, one group of bars per workload (dopri5 at
 * 1e-4 / 1e-7; the controls at their own tolerance when that is all that ran). */
static int write_chart(const char *path)
{
    const char *names[16];
    double vals[16][3];
    int n = 0;
    for (int i = 0; i < n_rows && n < 16; i++) {
        const sn_result *r = &rows[i];
        if (strcmp(r->norm, "seminorm") || strcmp(r->method, "dopri5")) continue;
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= !strcmp(names[k], r->workload);
        if (seen || (r->rtol != 1e-4 && find(r->workload, "dopri5", 1e-4, 1e-7, "seminorm"))) continue;
        const sn_result *d = find(r->workload, r->method, r->rtol, r->atol, "default");
        const sn_result *d0 = find(r->workload, r->method, r->rtol, r->atol, "default_no_t");
        if (!d || !d->nfe_backward) continue;
        names[n] = r->workload;
        vals[n][0] = 1;
        vals[n][1] = d0 ? (double)d0->nfe_backward / d->nfe_backward : 1;
        vals[n][2] = (double)r->nfe_backward / d->nfe_backward;
        n++;
    }
    if (!n) return 0;
    plot_figure *fig = plot_create(1, 150 * n + 260, 480, "Backward NFE of the adjoint, per norm");
    if (!fig) return -1;
    plot_axes_categories(fig, 0, "dopri5, rtol 1e-4, atol 1e-7 (relative to the default norm)",
                         "backward NFE / default", 0, 1.5, n, names);
    const plot_rgb colours[3] = {PLOT_GRAY, PLOT_BLUE, PLOT_ORANGE};
    const char *labels[3] = {"default (with a_t)", "default without a_t", "seminorm"};
    char buf[32];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            double x0 = i + 0.14 + 0.25 * k;
            plot_rect(fig, 0, x0, 0, x0 + 0.22, vals[i][k], colours[k]);
            snprintf(buf, sizeof buf, "%.2f", vals[i][k]);
            plot_text(fig, 0, x0 + 0.11, vals[i][k] + 0.04, buf, 10);
        }
    for (int k = 0; k < 3; k++) plot_legend(fig, 0, k, labels[k], colours[k], false);
    int rc = plot_save(fig, path);
    plot_destroy(fig);
    return rc;
}
#endif

int main(int argc, char **argv)
{
    const char *which = "A,B,C,spiral,wide", *md = NULL, *chart = NULL, *from = NULL;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--workloads")) which = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--markdown")) md = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--chart")) chart = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--from")) from = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--workloads A,B,C,spiral,wide] [--quick] [--markdown F] "
                            "[--chart F.png] [--from RESULTS.jsonl]\n", argv[0]);
            return 2;
        }
    }
    double t0 = sn_now();
    int failed = 0;
    if (from) {
        if (read_jsonl(from) != 0) return fprintf(stderr, "seminorm: cannot read %s\n", from), 1;
        which = ""; /* only redraw */
    }
    if (strstr(which, "A")) failed |= sn_workload_a(quick) != 0;
    if (strstr(which, "B")) failed |= sn_workload_b(quick) != 0;
    if (strstr(which, "C")) failed |= sn_workload_c(quick) != 0;
    if (strstr(which, "spiral")) failed |= sn_workload_spiral(quick) != 0;
    if (strstr(which, "wide")) failed |= sn_workload_wide(quick) != 0;
    if (md && write_markdown(md) != 0) fprintf(stderr, "seminorm: cannot write %s\n", md), failed = 1;
#ifdef HAVE_PLOT
    if (chart && write_chart(chart) != 0) fprintf(stderr, "seminorm: cannot write %s\n", chart), failed = 1;
#else
    if (chart) fprintf(stderr, "seminorm: built without cairo, no chart\n"), failed = 1;
#endif
    fprintf(stderr, "seminorm: %d measurements in %.1f s\n", n_rows, sn_now() - t0);
    return failed;
}

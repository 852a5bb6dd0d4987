/* SPDX-License-Identifier: MIT
 * bench/seminorm.c: where the seminorm saves work in the adjoint, and where it cannot: the
 * workloads of docs/WORKLOADS.md, paired (the same weights, batch and forward solve
 * for every norm), at (rtol, atol) = (1e-3, 1e-6), (1e-4, 1e-7), (1e-5, 1e-8).
 *
 *   A        torchdiffeq's seminorm test, exact weights (tests/reference/test_seminorm.json),
 *            every adaptive method; also at its test tolerance (1e-8, 1e-8)
 *   B        a continuous normalising flow on 8 gaussians, trained with the seminorm and
 *            measured at checkpoints (examples/cnf2d.c's model: examples/models/cnf.c)
 *   C        a neural CDE on the spirals task, cubic path ("C") and piecewise-linear path with a
 *            jump at every knot ("C-linear") (examples/ncde.c's: examples/models/ncde.c)
 *   E        Symplectic ODE-Net on the MuJoCo Acrobot, windows of 8 points ("E") and of 2 s
 *            ("E-2s"), measured at checkpoints (examples/acrobot.c's model:
 *            examples/models/symoden.c); skipped without MuJoCo
 *   spiral   control: torchdiffeq's ode_demo at initialisation, 10 batches
 *   wide     control: an MLP 64-512-512-64, batch 256, 5 output times on [0, 1]
 *   F        the latent ODE on the toy sinusoids (examples/latent_ode.c's: examples/models/
 *            latent.c): an ODE-RNN encoder's many short intervals (dopri5: "F"; the program's
 *            one RK4 step each: "F-rk4") and the decoder, trained with the seminorm
 *
 * Norms: "default" is the RMS norm with the time adjoint integrated (t requires grad, as
 * torchdiffeq does whenever f depends on t), "default_no_t" the RMS norm without it, "seminorm"
 * nodal's ND_NORM_SEMINORM (the paper's: state and state adjoint only). For autonomous f the
 * first two coincide and only "default" is run.
 *
 * Output: one JSON object per measurement on stdout; with --markdown FILE a table of backward
 * NFE and savings beside torchdiffeq's numbers; with --chart FILE.png a bar chart.
 * Usage: seminorm [--workloads A,B,C,E,spiral,wide,F] [--quick] [--markdown F] [--chart F.png]
 *                 [--from RESULTS.jsonl]   (redraw the table and chart from a run's output)
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flags.h"
#include "json.h"
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
    json_writer w = json_begin(stdout);
    json_str(&w, "workload", r->workload);
    json_str(&w, "method", r->method);
    json_str(&w, "norm", r->norm);
    json_num(&w, "rtol", r->rtol);
    json_num(&w, "atol", r->atol);
    json_int(&w, "nfe_forward", r->nfe_forward);
    json_int(&w, "nfe_backward", r->nfe_backward);
    json_int(&w, "accepted_backward", r->accepted_backward);
    json_int(&w, "rejected_backward", r->rejected_backward);
    json_num(&w, "ms_backward", r->ms_backward);
    json_num_prec(&w, "max_rel_grad_diff", r->max_rel_grad_diff, 3);
    if (!isnan(r->rel_grad_diff_norm)) /* an unmeasured value is left out */
        json_num_prec(&w, "rel_grad_diff_norm", r->rel_grad_diff_norm, 3);
    if (r->torchdiffeq_nfe_backward >= 0)
        json_int(&w, "torchdiffeq_nfe_backward", r->torchdiffeq_nfe_backward);
    /* which block bound the backward steps: [accepted, rejected] per role */
    json_object(&w, "bound_backward");
    for (int role = 0; role < ND_ROLE_COUNT; role++) {
        json_array(&w, nd_block_role_name((nd_block_role)role));
        json_int(&w, NULL, r->bound_backward[role][0]);
        json_int(&w, NULL, r->bound_backward[role][1]);
        json_close(&w);
    }
    json_close(&w);
    if (r->note[0]) json_str(&w, "note", r->note);
    json_end(&w);
}

void sn_add_bound(sn_result *r, const nd_limit_stats *l)
{
    for (int role = 0; role < ND_ROLE_COUNT; role++) {
        r->bound_backward[role][0] += nd_limit_count(l, (nd_block_role)role, true);
        r->bound_backward[role][1] += nd_limit_count(l, (nd_block_role)role, false);
    }
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
static char *field_str(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static double field_num(const cJSON *j, const char *k, double d)
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
#define STR(k) field_str(j, k)
#define NUM(k, d) field_num(j, k, d)
        *r = (sn_result){.workload = STR("workload"),
                         .method = STR("method"),
                         .norm = STR("norm"),
                         .rtol = NUM("rtol", 0),
                         .atol = NUM("atol", 0),
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
                      : d                                     ? d->torchdiffeq_nfe_backward
                                                              : -1;
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
        if (seen || (r->rtol != 1e-4 && find(r->workload, "dopri5", 1e-4, 1e-7, "seminorm")))
            continue;
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

#define N_WORKLOADS 7

/* --workloads: a comma-separated list of A, B, C, E, spiral, wide, F; each into run[] (by the order
 * of names). false with a message when a name is unknown or empty. */
static bool parse_workloads(const char *list, bool run[N_WORKLOADS])
{
    static const char *const names[N_WORKLOADS] = {"A", "B", "C", "E", "spiral", "wide", "F"};
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        int k = 0;
        while (k < N_WORKLOADS && (strlen(names[k]) != len || strncmp(p, names[k], len) != 0)) k++;
        if (k == N_WORKLOADS) {
            fprintf(stderr,
                    "seminorm: --workloads: '%.*s' is not one of A, B, C, E, spiral, wide, F\n",
                    (int)len, p);
            return false;
        }
        run[k] = true;
        p += len;
        if (!*p) return true;
    }
}

int main(int argc, char **argv)
{
    const char *which = "A,B,C,E,spiral,wide,F", *md = NULL, *chart = NULL, *from = NULL;
    bool quick = false, run[N_WORKLOADS] = {false};
    const flag_spec flags[] = {
        FLAG_STRING("workloads", &which, "LIST", "comma-separated: A, B, C, E, spiral, wide, F"),
        FLAG_BOOL("quick", &quick, "fewer settings per workload (CI)"),
        FLAG_STRING("markdown", &md, "FILE", "write the table of backward NFE and savings"),
        FLAG_STRING("chart", &chart, "FILE.png", "draw the bar chart (needs cairo)"),
        FLAG_STRING("from", &from, "RESULTS.jsonl", "redraw the table and chart from a run"),
    };
    int rc = flags_parse("seminorm",
                         "The adjoint's backward NFE under each norm, paired, on the "
                         "workloads of docs/WORKLOADS.md.",
                         flags, FLAGS_N(flags), argc, argv);
    if (rc != FLAGS_OK) return flags_exit_status(rc);
    if (!parse_workloads(which, run)) return 2;
    double t0 = sn_now();
    int failed = 0;
    if (from) {
        if (read_jsonl(from) != 0) return fprintf(stderr, "seminorm: cannot read %s\n", from), 1;
        memset(run, 0, sizeof run); /* only redraw */
    }
    int (*const workloads[N_WORKLOADS])(bool) = {
        sn_workload_a,      sn_workload_b,    sn_workload_c, sn_workload_e,
        sn_workload_spiral, sn_workload_wide, sn_workload_f};
    for (int k = 0; k < N_WORKLOADS; k++)
        if (run[k]) failed |= workloads[k](quick) != 0;
    if (md && write_markdown(md) != 0)
        fprintf(stderr, "seminorm: cannot write %s\n", md), failed = 1;
#ifdef HAVE_PLOT
    if (chart && write_chart(chart) != 0)
        fprintf(stderr, "seminorm: cannot write %s\n", chart), failed = 1;
#else
    if (chart) fprintf(stderr, "seminorm: built without cairo, no chart\n"), failed = 1;
#endif
    fprintf(stderr, "seminorm: %d measurements in %.1f s\n", n_rows, sn_now() - t0);
    return failed;
}

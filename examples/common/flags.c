/* SPDX-License-Identifier: MIT
 * examples/common/flags.c: the strict flag parser of every program (see flags.h). Each value is
 * converted whole (strtol / strtoull / strtod with the end pointer and errno checked), then held
 * to the flag's range; the first problem ends parsing with one message naming the flag and value.
 */
#include "flags.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nodal.h"

const char *flags_norm_at(int i)
{
    return i >= 0 && i < ND_NORM_USER ? nd_ode_norm_name((nd_norm_kind)i) : NULL;
}

const char *flags_method_at(int i)
{
    return i >= 0 && i < ND_METHOD_COUNT ? nd_ode_method_name((nd_ode_method)i) : NULL;
}

int flags_exit_status(int rc)
{
    return rc == FLAGS_HELP ? 0 : rc == FLAGS_OK ? 0 : 2;
}

static const char *choice_name(const flag_spec *f, int i)
{
    return f->choices ? f->choices[i] : f->choice_at(i);
}

/* ---- converting one value ----------------------------------------------------------------- */

/* The flag's choices as "a, b, c" into buf. */
static const char *choice_list(const flag_spec *f, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; choice_name(f, i) && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", choice_name(f, i));
    return buf;
}

/* A whole signed integer in [min, max]; false with why set. */
static bool parse_integer(const char *s, double min, double max, long long *out, const char **why)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end) return *why = "is not an integer", false;
    if (errno == ERANGE || (double)v < min || (double)v > max)
        return *why = "is out of range", false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out, const char **why)
{
    char *end;
    errno = 0;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '-' || *s == '+') return *why = "is not an unsigned integer", false;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end) return *why = "is not an unsigned integer", false;
    if (errno == ERANGE || v > UINT64_MAX) return *why = "is out of range", false;
    *out = (uint64_t)v;
    return true;
}

static bool parse_double(const flag_spec *f, const char *s, double *out, const char **why)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end) return *why = "is not a number", false;
    if (!isfinite(v) || errno == ERANGE) return *why = "is not a finite number", false;
    if (f->min_open ? !(v > f->min) : !(v >= f->min)) return *why = "is too small", false;
    if (v > f->max) return *why = "is too large", false;
    *out = v;
    return true;
}

/* Stores text as f's value; false with why set (nothing stored). */
static bool set_value(const flag_spec *f, const char *s, const char **why)
{
    long long n;
    switch (f->type) {
    case FLAG_T_INT:
        if (!parse_integer(s, f->min, f->max, &n, why)) return false;
        *(int *)f->value = (int)n;
        return true;
    case FLAG_T_LONG:
        if (!parse_integer(s, f->min, f->max, &n, why)) return false;
        *(long *)f->value = (long)n;
        return true;
    case FLAG_T_U64:
        return parse_u64(s, f->value, why);
    case FLAG_T_DOUBLE:
        return parse_double(f, s, f->value, why);
    case FLAG_T_STRING:
        if (!*s) return *why = "is empty", false;
        *(const char **)f->value = s;
        return true;
    case FLAG_T_CHOICE:
        for (int i = 0; choice_name(f, i); i++)
            if (!strcmp(s, choice_name(f, i))) return *(int *)f->value = i, true;
        return *why = "is not one of the choices", false;
    case FLAG_T_BOOL:
        break;
    }
    return *why = "takes no value", false;
}

/* ---- the table ---------------------------------------------------------------------------- */

static void print_value(FILE *out, const flag_spec *f)
{
    switch (f->type) {
    case FLAG_T_BOOL:
        fprintf(out, "%s", *(bool *)f->value ? "on" : "off");
        break;
    case FLAG_T_INT:
        fprintf(out, "%d", *(int *)f->value);
        break;
    case FLAG_T_LONG:
        fprintf(out, "%ld", *(long *)f->value);
        break;
    case FLAG_T_U64:
        fprintf(out, "%llu", (unsigned long long)*(uint64_t *)f->value);
        break;
    case FLAG_T_DOUBLE:
        fprintf(out, "%g", *(double *)f->value);
        break;
    case FLAG_T_STRING: {
        const char *s = *(const char **)f->value;
        fprintf(out, "%s", s ? s : "none");
        break;
    }
    case FLAG_T_CHOICE: {
        const char *s = choice_name(f, *(int *)f->value);
        fprintf(out, "%s", s ? s : "?");
        break;
    }
    }
}

static void print_help(FILE *out, const char *prog, const char *summary, const flag_spec *table,
                       int n)
{
    fprintf(out, "usage: %s [flags]\n%s%s", prog, summary ? summary : "", summary ? "\n" : "");
    fprintf(out, "flags (default in brackets):\n");
    for (int i = 0; i < n; i++) {
        const flag_spec *f = &table[i];
        char head[64], list[512];
        snprintf(head, sizeof head, "--%s%s%s", f->name, *f->meta ? " " : "", f->meta);
        fprintf(out, "  %-22s %s [", head, f->help);
        print_value(out, f);
        fprintf(out, "]");
        if (f->type == FLAG_T_CHOICE)
            fprintf(out, "; one of %s", choice_list(f, list, sizeof list));
        fprintf(out, "\n");
    }
    fprintf(out, "  %-22s this table\n", "--help");
}

static const flag_spec *lookup(const flag_spec *table, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(table[i].name) == len && !strncmp(table[i].name, name, len)) return &table[i];
    return NULL;
}

int flags_parse_to(FILE *out, FILE *err, const char *prog, const char *summary,
                   const flag_spec *table, int n, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(out, prog, summary, table, n);
            return FLAGS_HELP;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err, "%s: unexpected argument '%s' (flags start with --; see --help)\n", prog,
                    a);
            return FLAGS_ERROR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const flag_spec *f = lookup(table, n, name, len);
        if (!f) {
            fprintf(err, "%s: unknown flag --%.*s (see --help)\n", prog, (int)len, name);
            return FLAGS_ERROR;
        }
        const char *v = eq ? eq + 1 : NULL, *why = NULL;
        if (f->type == FLAG_T_BOOL) {
            if (v) {
                fprintf(err, "%s: --%s takes no value (got '%s')\n", prog, f->name, v);
                return FLAGS_ERROR;
            }
            *(bool *)f->value = true;
            continue;
        }
        if (!v && i + 1 >= argc) {
            fprintf(err, "%s: --%s needs a value (%s)\n", prog, f->name, f->meta);
            return FLAGS_ERROR;
        }
        if (!v) v = argv[++i];
        if (!set_value(f, v, &why)) {
            char list[512];
            fprintf(err, "%s: --%s: '%s' %s", prog, f->name, v, why);
            if (f->type == FLAG_T_CHOICE)
                fprintf(err, " (%s)", choice_list(f, list, sizeof list));
            else if (f->type == FLAG_T_DOUBLE)
                fprintf(err, f->max < 1e308 ? " (need %s %g and <= %g)" : " (need %s %g)",
                        f->min_open ? ">" : ">=", f->min, f->max);
            else if (f->type == FLAG_T_INT || f->type == FLAG_T_LONG)
                fprintf(err, " (need %.0f .. %.0f)", f->min, f->max);
            fprintf(err, "\n");
            return FLAGS_ERROR;
        }
    }
    return FLAGS_OK;
}

int flags_parse(const char *prog, const char *summary, const flag_spec *table, int n, int argc,
                char **argv)
{
    return flags_parse_to(stdout, stderr, prog, summary, table, n, argc, argv);
}

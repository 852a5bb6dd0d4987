/* SPDX-License-Identifier: MIT
 * examples/common/flags.h: the one command-line parser of every program in examples/ and bench/.
 * A program declares its flags as a table (name, type, where the value goes, help), and
 * flags_parse fills them strictly: a value that is not entirely a number of the flag's type, out
 * of its range, an overflow, NaN or inf, a name not among the choices, an unknown flag or a
 * missing value is an error that names the flag and the value. --help prints the table with each
 * flag's current value as its default. Not part of the library.
 *
 *   int iters = 2000; double lr = 1e-3; bool json = false;
 *   const flag_spec flags[] = {
 *       FLAG_INT("iters", &iters, 0, INT_MAX, "training iterations"),
 *       FLAG_POSITIVE("lr", &lr, "learning rate"),
 *       FLAG_BOOL("json", &json, "print one JSON summary on stdout"),
 *   };
 *   int rc = flags_parse("spiral", "a neural ODE", flags, FLAGS_N(flags), argc, argv);
 *   if (rc != FLAGS_OK) return flags_exit_status(rc); // 0 after --help, 2 on a bad flag
 */
#ifndef EXAMPLES_FLAGS_H
#define EXAMPLES_FLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    FLAG_T_BOOL,   /* bool *: present means true; takes no value */
    FLAG_T_INT,    /* int *, within [min, max] */
    FLAG_T_LONG,   /* long *, within [min, max] */
    FLAG_T_U64,    /* uint64_t *, no sign: seeds */
    FLAG_T_DOUBLE, /* double *, finite, within [min, max] (or (min, max] when min_open) */
    FLAG_T_STRING, /* const char **: any text (a path, a list) */
    FLAG_T_CHOICE, /* int *: the index of the value in choices (NULL-terminated) */
} flag_type;

typedef struct {
    const char *name; /* without the leading "--" */
    flag_type type;
    void *value;
    const char *help;
    double min, max;                 /* numbers: the allowed range */
    bool min_open;                   /* doubles: strictly above min (tolerances, learning rates) */
    const char *const *choices;      /* FLAG_T_CHOICE: the accepted names, NULL-terminated, or */
    const char *(*choice_at)(int i); /* the i-th name, NULL past the last (an enum's names) */
    const char *meta;                /* the value's name in --help: N, X, FILE, ... */
} flag_spec;

/* (the compound literals check each pointer's type at compile time) */
// clang-format off
#define FLAG_BOOL(name, ptr, help) {name, FLAG_T_BOOL, (bool *){ptr}, help, .meta = ""}
#define FLAG_INT(name, ptr, lo, hi, help) \
    {name, FLAG_T_INT, (int *){ptr}, help, .min = lo, .max = hi, .meta = "N"}
#define FLAG_LONG(name, ptr, lo, hi, help) \
    {name, FLAG_T_LONG, (long *){ptr}, help, .min = lo, .max = hi, .meta = "N"}
#define FLAG_U64(name, ptr, help) {name, FLAG_T_U64, (uint64_t *){ptr}, help, .meta = "N"}
#define FLAG_DOUBLE(name, ptr, lo, hi, help) \
    {name, FLAG_T_DOUBLE, (double *){ptr}, help, .min = lo, .max = hi, .meta = "X"}
/* a finite double > 0 (tolerances, learning rates) */
#define FLAG_POSITIVE(name, ptr, help) \
    {name, FLAG_T_DOUBLE, (double *){ptr}, help, .min = 0, .max = 1e308, .min_open = true, \
     .meta = "X"}
#define FLAG_STRING(name, ptr, meta_, help) \
    {name, FLAG_T_STRING, (const char **){ptr}, help, .meta = meta_}
#define FLAG_CHOICE(name, ptr, names, help) \
    {name, FLAG_T_CHOICE, (int *){ptr}, help, .choices = names, .meta = "NAME"}
/* --method: an nd_ode_method (stored as int); --norm: an nd_norm_kind other than ND_NORM_USER */
#define FLAG_METHOD(ptr, help) \
    {"method", FLAG_T_CHOICE, (int *){ptr}, help, .choice_at = flags_method_at, .meta = "NAME"}
#define FLAG_NORM(ptr, help) \
    {"norm", FLAG_T_CHOICE, (int *){ptr}, help, .choice_at = flags_norm_at, .meta = "NAME"}
// clang-format on

#define FLAGS_N(table) ((int)(sizeof(table) / sizeof *(table)))

enum { FLAGS_OK = 0, FLAGS_HELP = 1, FLAGS_ERROR = 2 };

/* Parses argv[1 ..] against the table (the values keep their defaults where a flag is absent).
 * "--name value" and "--name=value" both work; the last occurrence wins. FLAGS_OK, FLAGS_HELP
 * after printing the table to stdout, or FLAGS_ERROR after one line on stderr naming prog, the
 * flag and the value (and the usage hint). */
int flags_parse(const char *prog, const char *summary, const flag_spec *table, int n, int argc,
                char **argv);
/* The same, with the messages written to err and the help to out (for tests). */
int flags_parse_to(FILE *out, FILE *err, const char *prog, const char *summary,
                   const flag_spec *table, int n, int argc, char **argv);
/* What main returns for a FLAGS_HELP (0) or FLAGS_ERROR (2). */
int flags_exit_status(int rc);

/* The choices every program shares, named by the library's own tables: the adjoint's norm by its
 * nd_norm_kind (nd_ode_norm_name: "rms", "seminorm", "seminorm_keep_t"; ND_NORM_USER has no
 * name), and the solver's method by its nd_ode_method (nd_ode_method_name). A name the flag
 * accepts is exactly one nd_ode_norm_from_name / nd_ode_method_from_name maps to that index
 * (aliases such as "heun_euler" aside). */
const char *flags_norm_at(int i);   /* nd_ode_norm_name(i) below ND_NORM_USER, else NULL */
const char *flags_method_at(int i); /* nd_ode_method_name(i), NULL past the last */

#endif

/* SPDX-License-Identifier: MIT
 * io/parse.c: strict number parsing for checkpoint metadata and command-line flags. Unlike
 * atoi / atof, the whole string must be the number, and garbage, overflow, NaN and infinities are
 * rejected instead of becoming 0, a wrapped value or a non-finite one.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "io/io.h"

/* A number starts with a sign, a digit or a point: not with spaces, which strto* would skip. */
static bool starts_like_a_number(const char *s)
{
    return s && (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+' || s[0] == '.');
}

bool nd_parse_double(const char *s, double *out)
{
    if (!out || !starts_like_a_number(s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* ERANGE: overflow to +-HUGE_VAL, or underflow to a denormal or zero */
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool nd_parse_long(const char *s, long *out)
{
    if (!out || !starts_like_a_number(s) || s[0] == '.') return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE) return false;
    *out = v;
    return true;
}

bool nd_parse_int(const char *s, int *out)
{
    long v;
    if (!out || !nd_parse_long(s, &v) || v < INT_MIN || v > INT_MAX) return false;
    *out = (int)v;
    return true;
}

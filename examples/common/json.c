/* SPDX-License-Identifier: MIT
 * examples/common/json.c: the JSON writer (see json.h): members and elements with their commas,
 * escaped strings, non-finite numbers as null, nesting tracked up to JSON_MAX_DEPTH levels.
 */
#include "json.h"

#include <math.h>

static void put_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", out);
        else if (*c == '\t')
            fputs("\\t", out);
        else if (*c < 0x20)
            fprintf(out, "\\u%04x", *c);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

/* the comma and the key before a member or element */
static void lead(json_writer *w, const char *key)
{
    int d = w->depth - 1;
    if (!w->first[d]) fputs(", ", w->out);
    w->first[d] = false;
    if (key) {
        put_string(w->out, key);
        fputs(": ", w->out);
    }
}

static void open_level(json_writer *w, char open, char close)
{
    fputc(open, w->out);
    if (w->depth < JSON_MAX_DEPTH) {
        w->first[w->depth] = true;
        w->close[w->depth] = close;
        w->depth++;
    }
}

json_writer json_begin(FILE *out)
{
    json_writer w = {.out = out};
    open_level(&w, '{', '}');
    return w;
}

void json_close(json_writer *w)
{
    if (w->depth > 0) fputc(w->close[--w->depth], w->out);
}

void json_end(json_writer *w)
{
    while (w->depth > 0) json_close(w);
    fputc('\n', w->out);
    fflush(w->out);
}

void json_array(json_writer *w, const char *key)
{
    lead(w, key);
    open_level(w, '[', ']');
}

void json_object(json_writer *w, const char *key)
{
    lead(w, key);
    open_level(w, '{', '}');
}

void json_str(json_writer *w, const char *key, const char *value)
{
    lead(w, key);
    if (value)
        put_string(w->out, value);
    else
        fputs("null", w->out);
}

void json_int(json_writer *w, const char *key, long long value)
{
    lead(w, key);
    fprintf(w->out, "%lld", value);
}

void json_u64(json_writer *w, const char *key, uint64_t value)
{
    lead(w, key);
    fprintf(w->out, "%llu", (unsigned long long)value);
}

void json_bool(json_writer *w, const char *key, bool value)
{
    lead(w, key);
    fputs(value ? "true" : "false", w->out);
}

void json_num_prec(json_writer *w, const char *key, double value, int digits)
{
    lead(w, key);
    if (!isfinite(value)) {
        fputs("null", w->out);
        return;
    }
    digits = digits < 1 ? 1 : digits > 17 ? 17 : digits;
    fprintf(w->out, "%.*g", digits, value);
}

void json_num(json_writer *w, const char *key, double value)
{
    json_num_prec(w, key, value, 6);
}

void json_int_array(json_writer *w, const char *key, const int *v, int n)
{
    json_array(w, key);
    for (int i = 0; i < n; i++) json_int(w, NULL, v[i]);
    json_close(w);
}

/* SPDX-License-Identifier: MIT
 * examples/common/json.h: the one JSON writer of every program and benchmark. It writes one object
 * per line, puts the commas and escapes strings, and writes a number that is NaN or infinite as
 * null, so that the output is valid JSON whatever the run produced. Not part of the library.
 *
 *   json_writer w = json_begin(stdout);             // {
 *   json_str(&w, "example", "spiral");              //  "example": "spiral"
 *   json_num(&w, "test_loss", loss);                //  , "test_loss": 0.1234 (or null)
 *   json_array(&w, "curve"); json_num(&w, NULL, 1); json_close(&w);   // , "curve": [1]
 *   json_end(&w);                                   // }\n
 */
#ifndef EXAMPLES_JSON_H
#define EXAMPLES_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 8

typedef struct {
    FILE *out;
    int depth;                  /* open objects and arrays, the top object included */
    bool first[JSON_MAX_DEPTH]; /* nothing written yet at this depth: no comma */
    char close[JSON_MAX_DEPTH]; /* '}' or ']' for each open level */
} json_writer;

json_writer json_begin(FILE *out); /* "{" */
void json_end(json_writer *w);     /* closes what is open, "}\n", and flushes */

/* Inside an object key is the member's name; inside an array it must be NULL. */
void json_str(json_writer *w, const char *key, const char *value); /* NULL is null */
void json_int(json_writer *w, const char *key, long long value);
void json_u64(json_writer *w, const char *key, uint64_t value);
void json_bool(json_writer *w, const char *key, bool value);
/* A double with 6 significant digits (json_num_prec: digits 1 .. 17); NaN / inf as null. */
void json_num(json_writer *w, const char *key, double value);
void json_num_prec(json_writer *w, const char *key, double value, int digits);
/* [v0, v1, ...] of n ints (a shape) */
void json_int_array(json_writer *w, const char *key, const int *v, int n);

/* Open a nested array or object as the next member (key) or element (NULL); json_close ends it. */
void json_array(json_writer *w, const char *key);
void json_object(json_writer *w, const char *key);
void json_close(json_writer *w);

#endif

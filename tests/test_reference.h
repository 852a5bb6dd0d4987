/* SPDX-License-Identifier: MIT
 * tests/test_reference.h: PyTorch's reference values for the suites that compare against them
 * (test_nn, test_rnn). A reference file under tests/ is a JSON object whose values are flat lists
 * of float64 numbers (row-major), written by a script beside it; a suite parses it once per test
 * case by an unchecked fixture (in the runner's process, before the tests fork):
 *
 *   static void ref_load(void) { ref_load_file("reference-nn/nn.json"); }
 *   tcase_add_unchecked_fixture(tc, ref_load, ref_free);
 *
 * Include after test_main.h (it needs ctx and the tolerances REF_RTOL / REF_ATOL).
 */
#ifndef ND_TEST_REFERENCE_H
#define ND_TEST_REFERENCE_H

#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *ref_json;
static const char *ref_file = "(none)";

static inline void ref_load_file(const char *rel)
{
    char path[4096];
    ref_file = rel;
    FILE *f = fopen(nd_test_path(path, sizeof path, rel), "rb");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
        text[n] = 0;
        ref_json = cJSON_Parse(text);
    }
    free(text);
    fclose(f);
}

static inline void ref_free(void)
{
    cJSON_Delete(ref_json);
    ref_json = NULL;
}

/* Entry name's list; fails the test when the file or the entry is missing. */
static inline const cJSON *ref_list(const char *name)
{
    ck_assert_msg(ref_json, "tests/%s not found or unreadable (ND_TEST_DIR)", ref_file);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(ref_json, name);
    ck_assert_msg(cJSON_IsArray(a), "reference entry %s missing", name);
    return a;
}

/* The numbers of entry name (count in *n) as doubles in the ctx arena. */
static inline double *ref(const char *name, size_t *n)
{
    const cJSON *a = ref_list(name), *v;
    size_t len = (size_t)cJSON_GetArraySize(a), i = 0;
    double *out = nd_ctx_alloc(ctx, len * sizeof *out + 1);
    ck_assert_ptr_nonnull(out);
    cJSON_ArrayForEach(v, a) out[i++] = v->valuedouble;
    if (n) *n = len;
    return out;
}

/* t's values from entry name, which must have exactly t->size numbers. */
static inline void set_from_ref(nd_tensor *t, const char *name)
{
    size_t n;
    double *v = ref(name, &n);
    ck_assert_msg(n == t->size, "%s has %zu values, expected %zu", name, n, t->size);
    for (size_t i = 0; i < n; i++) t->data[i] = (nd_real)v[i];
}

/* An arena tensor of shape holding entry name. */
static inline nd_tensor *ref_tensor(const char *name, int ndim, const int *shape,
                                    bool requires_grad)
{
    nd_tensor *t = nd_tensor_new(ctx, ndim, shape);
    ck_assert_ptr_nonnull(t);
    set_from_ref(t, name);
    t->requires_grad = requires_grad;
    return t;
}

/* got (n values) agrees with want at REF_RTOL / REF_ATOL. */
static inline void expect_close(const char *what, const nd_real *got, const double *want, size_t n)
{
    ck_assert_msg(got, "%s: no values (%s)", what, nd_ctx_errmsg(ctx));
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        ck_assert_msg(err <= REF_ATOL + REF_RTOL * fabs(want[i]),
                      "%s[%zu]: got %.17g, PyTorch %.17g (difference %.3g)", what, i,
                      (double)got[i], want[i], err);
    }
}

/* got (n values) agrees with entry name at REF_RTOL / REF_ATOL. */
static inline void expect_ref(const char *what, const nd_real *got, size_t n, const char *name)
{
    size_t m;
    double *want = ref(name, &m);
    ck_assert_msg(m == n, "%s: %zu values, reference %s has %zu", what, n, name, m);
    expect_close(what, got, want, n);
}

#endif

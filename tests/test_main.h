/* SPDX-License-Identifier: MIT
 * tests/test_main.h: what every Check suite shares, included once by each tests/test_*.c: the
 * per-test ctx (ctx_setup / ctx_teardown as a checked fixture), tolerances per precision, the
 * error check (status and message fragments), paths of files under tests/, and main
 * (ND_TEST_MAIN(suite_fn) at the end of a suite's file).
 */
#ifndef ND_TEST_MAIN_H
#define ND_TEST_MAIN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodal.h"

/* ---------------------------------------------------------------------------------------------
 * Tolerances per precision.
 */
/* Forward values agree to a few ulps of nd_real, relative to the value's magnitude. */
#define FWD_TOL (64 * ND_REAL_EPS)

#ifdef ND_REAL_FLOAT
#define BY_PRECISION(d, f) (f)
#define DOUBLE_ONLY() return /* reference counts and tight tolerances are float64 facts */
#else
#define BY_PRECISION(d, f) (d)
#define DOUBLE_ONLY() (void)0
#endif

/* Agreement with PyTorch's / torchdiffeq's float64 values: 1e-10 relative in double, looser in
 * float. */
#define REF_RTOL BY_PRECISION(1e-10, 2e-4)
#define REF_ATOL BY_PRECISION(1e-12, 2e-5)

/* ---------------------------------------------------------------------------------------------
 * The ctx every test runs in: fresh per test (a checked fixture runs in the test's process).
 */
static nd_ctx *ctx;

static inline void ctx_setup(void)
{
    ctx = nd_ctx_create(0);
    ck_assert_ptr_nonnull(ctx);
}

static inline void ctx_teardown(void)
{
    nd_ctx_destroy(ctx);
    ctx = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Errors: expect_error(code, "fragment", ...) asserts the ctx holds code and a message that
 * contains each non-NULL fragment.
 */
static inline void nd_test_check_error(nd_status code, const char *const *want, size_t n, int line)
{
    const char *msg = nd_ctx_errmsg(ctx);
    ck_assert_msg(nd_ctx_error(ctx) == code, "line %d: status %s, expected %s (\"%s\")", line,
                  nd_status_str(nd_ctx_error(ctx)), nd_status_str(code), msg);
    for (size_t i = 0; i < n; i++)
        if (want[i])
            ck_assert_msg(strstr(msg, want[i]), "line %d: message \"%s\" lacks \"%s\"", line, msg,
                          want[i]);
}

/* call returns NULL and records ND_ERR_ARG with exactly text (the op given a NULL input). */
#define EXPECT_NULL_NAMED(call, text)                                                              \
    do {                                                                                           \
        nd_ctx_clear_error(ctx);                                                                   \
        ck_assert_ptr_null(call);                                                                  \
        ck_assert_int_eq(nd_ctx_error(ctx), ND_ERR_ARG);                                           \
        ck_assert_str_eq(nd_ctx_errmsg(ctx), text);                                                \
    } while (0)

#define expect_error(code, ...)                                                                    \
    nd_test_check_error(code, (const char *const[]){__VA_ARGS__},                                  \
                        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *),         \
                        __LINE__)

/* ---------------------------------------------------------------------------------------------
 * Files under tests/ (reference data, fixtures): rel such as "reference/mlp.json" resolved in
 * $ND_TEST_DIR when set, else in the tests/ source directory the build compiled in. Writes the
 * path into buf (n bytes) and returns buf.
 */
#ifndef ND_TEST_SRCDIR
#define ND_TEST_SRCDIR "tests"
#endif

static inline const char *nd_test_path(char *buf, size_t n, const char *rel)
{
    const char *dir = getenv("ND_TEST_DIR");
    snprintf(buf, n, "%s/%s", dir && dir[0] ? dir : ND_TEST_SRCDIR, rel);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * main: runs one suite; exit status is non-zero when any test failed.
 */
static inline int nd_test_run(Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define ND_TEST_MAIN(suite_fn)                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        return nd_test_run(suite_fn());                                                            \
    }

#endif

/* SPDX-License-Identifier: MIT
 * tests/test_flags.c: the Check suite of the programs' strict flag parser (examples/common/flags.c)
 * and JSON writer (examples/common/json.c). Every bad value is rejected with FLAGS_ERROR (exit 2)
 * and a message naming the flag and the value: garbage, overflow, a value beyond the range,
 * negative where not allowed, NaN and inf, an unknown choice or flag, a missing value; good values
 * land in their variables, --help prints the table; JSON writes non-finite numbers as null.
 */
#include <limits.h>
#include <math.h>

#include "flags.h"
#include "json.h"
#include "test_main.h"

/* the variables a program would declare, with their defaults */
static int iters, which, method, norm;
static long big;
static double lr, rtol;
static uint64_t seed;
static bool json_out;
static const char *path;
static const char *const opt_names[] = {"rmsprop", "adam", NULL};

static char err_text[1024], out_text[4096];

static void reset_values(void)
{
    iters = 2000, which = 0, method = ND_DOPRI5, norm = ND_NORM_RMS, big = 5, lr = 1e-3,
    rtol = 1e-7, seed = 0, json_out = false, path = NULL;
}

/* Parses the arguments (after a program name) against the table; the messages in err_text. */
static int parse(int n_args, const char *const *args)
{
    const flag_spec flags[] = {
        FLAG_INT("iters", &iters, 0, 10000000, "iterations"),
        FLAG_LONG("big", &big, -10, (double)LONG_MAX, "a long"),
        FLAG_POSITIVE("lr", &lr, "learning rate"),
        FLAG_DOUBLE("rtol", &rtol, 0, 1, "relative tolerance"),
        FLAG_U64("seed", &seed, "seed"),
        FLAG_BOOL("json", &json_out, "JSON"),
        FLAG_STRING("plot", &path, "FILE", "picture"),
        FLAG_CHOICE("optimizer", &which, opt_names, "optimizer"),
        FLAG_METHOD(&method, "method"),
        FLAG_NORM(&norm, "norm"),
    };
    char *argv[32] = {"prog"};
    ck_assert_int_lt(n_args, 32);
    for (int i = 0; i < n_args; i++) argv[i + 1] = (char *)args[i];
    FILE *out = tmpfile(), *err = tmpfile();
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(err);
    int rc =
        flags_parse_to(out, err, "prog", "a test program", flags, FLAGS_N(flags), n_args + 1, argv);
    rewind(err), rewind(out);
    size_t n = fread(err_text, 1, sizeof err_text - 1, err);
    err_text[n] = 0;
    n = fread(out_text, 1, sizeof out_text - 1, out);
    out_text[n] = 0;
    fclose(out), fclose(err);
    return rc;
}

#define PARSE(...)                                                                                 \
    parse((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),                     \
          (const char *[]){__VA_ARGS__})

/* the parse fails with exit status 2 and a message naming the flag and the value */
static void expect_reject(int rc, const char *flag, const char *value)
{
    ck_assert_int_eq(rc, FLAGS_ERROR);
    ck_assert_int_eq(flags_exit_status(rc), 2);
    ck_assert_msg(strstr(err_text, flag), "message '%s' does not name %s", err_text, flag);
    if (value) ck_assert_msg(strstr(err_text, value), "message '%s' lacks '%s'", err_text, value);
}

// ------------------------------------------------------------------------------------------------
// good values

START_TEST(test_defaults_kept)
{
    ck_assert_int_eq(parse(0, NULL), FLAGS_OK);
    ck_assert_int_eq(iters, 2000);
    ck_assert_double_eq(lr, 1e-3);
    ck_assert(!json_out);
    ck_assert_ptr_null(path);
}
END_TEST

START_TEST(test_values_set)
{
    ck_assert_int_eq(PARSE("--iters", "40", "--lr=0.01", "--seed", "18446744073709551615", "--json",
                           "--plot", "x.png", "--optimizer", "adam", "--method", "bosh3", "--norm",
                           "seminorm", "--big", "-10", "--rtol", "0"),
                     FLAGS_OK);
    ck_assert_int_eq(iters, 40);
    ck_assert_double_eq(lr, 0.01);
    ck_assert(seed == UINT64_MAX);
    ck_assert(json_out);
    ck_assert_str_eq(path, "x.png");
    ck_assert_int_eq(which, 1);
    ck_assert_int_eq(method, ND_BOSH3);
    ck_assert_int_eq(norm, ND_NORM_SEMINORM);
    ck_assert_int_eq(big, -10);
    ck_assert_double_eq(rtol, 0);
}
END_TEST

/* --norm takes the library's names (nd_ode_norm_name / nd_ode_norm_from_name, issue 15 audit: the
 * programs had their own table of two): each name selects the kind the library maps it to, and
 * ND_NORM_USER, which has no name, is not offered. */
START_TEST(test_norm_names_are_the_library_s)
{
    const char *names[] = {"rms", "seminorm", "seminorm_keep_t"};
    for (int i = 0; i < 3; i++) {
        reset_values();
        nd_norm_kind want = ND_NORM_USER;
        ck_assert(nd_ode_norm_from_name(names[i], &want));
        ck_assert_int_eq(PARSE("--norm", names[i]), FLAGS_OK);
        ck_assert_int_eq(norm, (int)want);
        ck_assert_str_eq(nd_ode_norm_name((nd_norm_kind)norm), names[i]);
    }
    ck_assert_ptr_null(flags_norm_at(ND_NORM_USER));
    expect_reject(PARSE("--norm", "user"), "--norm", "user");
}
END_TEST

START_TEST(test_help)
{
    ck_assert_int_eq(PARSE("--help"), FLAGS_HELP);
    ck_assert_int_eq(flags_exit_status(FLAGS_HELP), 0);
    ck_assert(strstr(out_text, "--iters N"));
    ck_assert(strstr(out_text, "[2000]")); // the default
    ck_assert(strstr(out_text, "rmsprop, adam"));
    ck_assert(strstr(out_text, "dopri5"));
}
END_TEST

// ------------------------------------------------------------------------------------------------
// rejections (issue 15, item 7): each one exit 2, naming the flag and the value

START_TEST(test_reject_garbage)
{
    reset_values();
    expect_reject(PARSE("--iters", "abc"), "--iters", "abc");
    ck_assert_int_eq(iters, 2000); // untouched
    expect_reject(PARSE("--iters", "12abc"), "--iters", "12abc");
    expect_reject(PARSE("--iters", ""), "--iters", NULL);
    expect_reject(PARSE("--lr", "abc"), "--lr", "abc");
    expect_reject(PARSE("--seed", "abc"), "--seed", "abc");
    expect_reject(PARSE("--iters", "1.5"), "--iters", "1.5");
}
END_TEST

START_TEST(test_reject_overflow_and_range)
{
    reset_values();
    expect_reject(PARSE("--iters", "99999999999999"), "--iters", "99999999999999");
    expect_reject(PARSE("--iters", "4294967297"), "--iters", "4294967297");
    expect_reject(PARSE("--iters", "10000001"), "--iters", "10000001");
    expect_reject(PARSE("--big", "99999999999999999999"), "--big", NULL);
    expect_reject(PARSE("--seed", "18446744073709551616"), "--seed", NULL);
    expect_reject(PARSE("--lr", "1e999"), "--lr", "1e999");
    expect_reject(PARSE("--rtol", "2"), "--rtol", "2");
    ck_assert_int_eq(iters, 2000);
}
END_TEST

START_TEST(test_reject_negative)
{
    reset_values();
    expect_reject(PARSE("--iters", "-1"), "--iters", "-1");
    expect_reject(PARSE("--seed", "-1"), "--seed", "-1");
    expect_reject(PARSE("--lr", "-0.1"), "--lr", "-0.1");
    expect_reject(PARSE("--lr", "0"), "--lr", "0"); // > 0 strictly
    expect_reject(PARSE("--big", "-11"), "--big", "-11");
}
END_TEST

START_TEST(test_reject_non_finite)
{
    reset_values();
    const char *bad[] = {"nan", "NaN", "inf", "-inf", "infinity"};
    for (int i = 0; i < 5; i++) {
        expect_reject(PARSE("--lr", bad[i]), "--lr", bad[i]);
        expect_reject(PARSE("--rtol", bad[i]), "--rtol", bad[i]);
    }
    ck_assert_double_eq(lr, 1e-3);
}
END_TEST

START_TEST(test_reject_choices)
{
    reset_values();
    expect_reject(PARSE("--optimizer", "foo"), "--optimizer", "foo");
    ck_assert(strstr(err_text, "rmsprop")); // the choices are listed
    expect_reject(PARSE("--method", "rk45"), "--method", "rk45");
    expect_reject(PARSE("--norm", "l2"), "--norm", "l2");
    ck_assert_int_eq(which, 0);
}
END_TEST

START_TEST(test_reject_unknown_and_missing)
{
    reset_values();
    expect_reject(PARSE("--iter", "5"), "--iter", NULL);
    expect_reject(PARSE("--iters"), "--iters", NULL); // no value
    expect_reject(PARSE("--json=1"), "--json", "1");  // a switch takes none
    expect_reject(PARSE("stray"), "stray", NULL);     // not a flag
    expect_reject(PARSE("-iters", "5"), "-iters", NULL);
}
END_TEST

// ------------------------------------------------------------------------------------------------
// the JSON writer

START_TEST(test_json_valid)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    json_writer w = json_begin(f);
    json_str(&w, "name", "a \"quoted\"\\ path\n");
    json_num(&w, "nan", NAN);
    json_num(&w, "inf", -INFINITY);
    json_num(&w, "x", 0.5);
    json_int(&w, "n", -3);
    json_bool(&w, "ok", true);
    json_array(&w, "curve");
    json_array(&w, NULL);
    json_int(&w, NULL, 1);
    json_num(&w, NULL, NAN);
    json_close(&w);
    json_close(&w);
    json_object(&w, "inner");
    json_str(&w, "s", NULL);
    json_end(&w); // closes the inner object too
    rewind(f);
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    ck_assert_str_eq(buf,
                     "{\"name\": \"a \\\"quoted\\\"\\\\ path\\n\", \"nan\": null, \"inf\": null, "
                     "\"x\": 0.5, \"n\": -3, \"ok\": true, \"curve\": [[1, null]], "
                     "\"inner\": {\"s\": null}}\n");
}
END_TEST

static Suite *flags_suite(void)
{
    Suite *s = suite_create("flags");
    TCase *good = tcase_create("accepted");
    tcase_add_checked_fixture(good, reset_values, NULL);
    tcase_add_test(good, test_defaults_kept);
    tcase_add_test(good, test_values_set);
    tcase_add_test(good, test_norm_names_are_the_library_s);
    tcase_add_test(good, test_help);
    suite_add_tcase(s, good);
    TCase *bad = tcase_create("errors");
    tcase_add_test(bad, test_reject_garbage);
    tcase_add_test(bad, test_reject_overflow_and_range);
    tcase_add_test(bad, test_reject_negative);
    tcase_add_test(bad, test_reject_non_finite);
    tcase_add_test(bad, test_reject_choices);
    tcase_add_test(bad, test_reject_unknown_and_missing);
    suite_add_tcase(s, bad);
    TCase *json = tcase_create("json");
    tcase_add_test(json, test_json_valid);
    suite_add_tcase(s, json);
    return s;
}

ND_TEST_MAIN(flags_suite)

/* SPDX-License-Identifier: MIT
 * tests/test_classify.c: the MNIST-family programs' checkpoint resume (examples/classify/data.c,
 * mnist_resume), called directly on small checkpoints written here: the metadata "epochs",
 * "pixel_mean" and "pixel_std" are parsed strictly (issue 15 audit: garbage, NaN, 0, negative
 * and overflowing values had no test), absent metadata keeps the defaults, and good values are
 * read back with the tensors.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "test_main.h"

static char path[256];
static nd_tensor *w; /* (2,) the one tensor of every checkpoint */

static void files_setup(void)
{
    ctx_setup();
    snprintf(path, sizeof path, "/tmp/nd_test_classify_%ld.safetensors", (long)getpid());
    w = nd_tensor_create(ctx, 1, (int[]){2}, false);
    ck_assert_ptr_nonnull(w);
}

static void files_teardown(void)
{
    unlink(path);
    nd_tensor_destroy(w);
    ctx_teardown();
}

/* Saves w = (1, 2) with the n metadata entries (key, value pairs) to path. */
static void save_with(int n, const nd_meta *meta)
{
    w->data[0] = 1, w->data[1] = 2;
    nd_save_options o = {.dtype = ND_DTYPE_NATIVE, .meta = meta, .n_meta = n};
    ck_assert_int_eq(nd_save(ctx, path, &(nd_param){"w", w}, 1, &o), ND_OK);
    w->data[0] = w->data[1] = 0;
}

/* mnist_resume into w; epochs, mean and std start at -7, 0.5, 0.25 */
static int resume(int *epochs, double *mean, double *std)
{
    *epochs = -7, *mean = 0.5, *std = 0.25;
    mnist_ckpt l = {1, &(nd_param){"w", w}};
    return mnist_resume(ctx, "test", path, &l, epochs, mean, std);
}

START_TEST(test_resume_reads_good_metadata)
{
    save_with(3, (nd_meta[]){{"epochs", "3"}, {"pixel_mean", "0.125"}, {"pixel_std", "2"}});
    int e;
    double m, s;
    ck_assert_int_eq(resume(&e, &m, &s), 0);
    ck_assert_int_eq(e, 3);
    ck_assert_double_eq(m, 0.125);
    ck_assert_double_eq(s, 2);
    ck_assert(w->data[0] == 1 && w->data[1] == 2);
}
END_TEST

START_TEST(test_resume_without_metadata_keeps_defaults)
{
    save_with(0, NULL);
    int e;
    double m, s;
    ck_assert_int_eq(resume(&e, &m, &s), 0);
    ck_assert_int_eq(e, 0);
    ck_assert_double_eq(m, 0.5);
    ck_assert_double_eq(s, 0.25);
}
END_TEST

/* Each bad value: mnist_resume fails with ND_ERR_FORMAT naming the key, and leaves the outputs */
static const struct {
    const char *key, *value;
} bad_meta[] = {
    {"pixel_std", "0"},
    {"pixel_std", "-1"},
    {"pixel_std", "nan"},
    {"pixel_std", "inf"},
    {"pixel_std", "0.5x"},
    {"pixel_std", ""},
    {"pixel_mean", "abc"},
    {"epochs", "-1"},
    {"epochs", "4294967297"},              /* past INT_MAX */
    {"epochs", "99999999999999999999999"}, /* past LONG_MAX */
    {"epochs", "3.5"},
    {"epochs", " 3"},
};

START_TEST(test_resume_rejects_bad_metadata)
{
    const char *key = bad_meta[_i].key, *value = bad_meta[_i].value;
    nd_meta meta[] = {{"epochs", "1"}, {"pixel_mean", "0.125"}, {"pixel_std", "1"}};
    for (int i = 0; i < 3; i++)
        if (strcmp(meta[i].key, key) == 0) meta[i].value = value; /* the others are good */
    save_with(3, meta);
    int e;
    double m, s;
    ck_assert_msg(resume(&e, &m, &s) == 1, "%s = \"%s\" accepted", key, value);
    expect_error(ND_ERR_FORMAT, key);
    ck_assert_int_eq(e, -7);
    ck_assert_double_eq(m, 0.5);
    ck_assert_double_eq(s, 0.25);
}
END_TEST

static Suite *classify_suite(void)
{
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("resume");
    tcase_add_checked_fixture(tc, files_setup, files_teardown);
    tcase_add_test(tc, test_resume_reads_good_metadata);
    tcase_add_test(tc, test_resume_without_metadata_keeps_defaults);
    tcase_add_loop_test(tc, test_resume_rejects_bad_metadata, 0,
                        (int)(sizeof bad_meta / sizeof bad_meta[0]));
    suite_add_tcase(s, tc);
    return s;
}

ND_TEST_MAIN(classify_suite)

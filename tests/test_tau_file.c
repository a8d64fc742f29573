/* The per-head tau file of clsa-calibrate and clsa-bench --tau-file (bench/tau_file.h). */
#include "tau_file.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_round_trip_and_merge(void **state)
{
    (void)state;
    char path[512], err[512];
    path_of(path, sizeof path, "taus.txt");
    unlink(path);
    const float l5[2] = {0.004f, 0.128f}, l11[3] = {0.0f, 1.5e-5f, 0.3333333f}, l5b[2] = {0.016f, 0.002f};
    assert_int_equal(tau_file_write_layer(path, 5, 2, l5, err, sizeof err), 0);
    assert_int_equal(tau_file_write_layer(path, 11, 3, l11, err, sizeof err), 0);
    float got[3];
    assert_int_equal(tau_file_read(path, 11, 3, got, err, sizeof err), 0);
    assert_memory_equal(got, l11, sizeof l11); /* %.9g round-trips every float */
    /* Rewriting layer 5 replaces its lines and keeps layer 11's and the header comment. */
    assert_int_equal(tau_file_write_layer(path, 5, 2, l5b, err, sizeof err), 0);
    assert_int_equal(tau_file_read(path, 5, 2, got, err, sizeof err), 0);
    assert_memory_equal(got, l5b, sizeof l5b);
    assert_int_equal(tau_file_read(path, 11, 3, got, err, sizeof err), 0);
    assert_memory_equal(got, l11, sizeof l11);
    const char *text = read_text(path);
    assert_non_null(strstr(text, "# clsa tau file"));
    assert_null(strstr(text, "0.004\n"));
    unlink(path);
}

/* Calibration over several texts keeps, per head, the smaller tau. */
static void test_keep_smaller(void **state)
{
    (void)state;
    char path[512], err[512];
    path_of(path, sizeof path, "taus-min.txt");
    unlink(path);
    float tau[3] = {0.004f, 0.128f, 0.0f};
    assert_int_equal(tau_file_keep_smaller(path, 5, 3, tau), 0); /* no file yet: unchanged */
    assert_true(tau[0] == 0.004f && tau[1] == 0.128f && tau[2] == 0.0f);
    assert_int_equal(tau_file_write_layer(path, 5, 3, tau, err, sizeof err), 0);
    float other[3] = {0.016f, 0.002f, 0.5f};
    assert_int_equal(tau_file_keep_smaller(path, 11, 3, other), 0); /* no layer 11 */
    assert_true(other[0] == 0.016f && other[1] == 0.002f && other[2] == 0.5f);
    assert_int_equal(tau_file_keep_smaller(path, 5, 3, other), 1);
    assert_true(other[0] == 0.004f && other[1] == 0.002f && other[2] == 0.0f); /* 0 (dense) is the smallest */
    write_text(path, "5 0 0.1\n5 0 0.2\n"); /* malformed: left to tau_file_write_layer to report */
    float again[1] = {0.3f};
    assert_int_equal(tau_file_keep_smaller(path, 5, 1, again), 0);
    assert_true(again[0] == 0.3f);
    unlink(path);
}

static void test_comments_blanks_and_order(void **state)
{
    (void)state;
    char path[512], err[512];
    path_of(path, sizeof path, "hand.txt");
    write_text(path, "# written by hand\n\n  3 1 0.5\n3 0 0.25   \n# end\n7 0 1\n");
    float got[2];
    assert_int_equal(tau_file_read(path, 3, 2, got, err, sizeof err), 0);
    assert_true(got[0] == 0.25f && got[1] == 0.5f);
    const float one[1] = {0.125f};
    assert_int_equal(tau_file_write_layer(path, 3, 1, one, err, sizeof err), 0);
    const char *text = read_text(path);
    assert_non_null(strstr(text, "# written by hand\n"));
    assert_non_null(strstr(text, "# end\n7 0 1\n"));
    assert_non_null(strstr(text, "3 0 0.125\n"));
    assert_null(strstr(text, "3 1 0.5"));
    unlink(path);
}

/* Every bad file fails with a message naming the line, writes nothing into tau, and makes a
   merge fail without touching the file. */
static void test_bad_files(void **state)
{
    (void)state;
    static const char *const bad[] = {"2 0\n", "2 0 -1\n", "2 0 nan\n", "2 0 inf\n", "x 0 0.1\n", "2 0 0.1 extra\n",
                                      "-1 0 0.1\n", "2 -3 0.1\n", "2 0 0.1x\n"};
    char path[512], err[512];
    path_of(path, sizeof path, "bad.txt");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        char text[128];
        snprintf(text, sizeof text, "2 1 0.5\n%s", bad[i]);
        write_text(path, text);
        float got[2] = {-7.0f, -7.0f};
        err[0] = '\0';
        assert_int_equal(tau_file_read(path, 2, 2, got, err, sizeof err), -1);
        printf("# %s\n", err);
        assert_non_null(strstr(err, ":2:"));
        assert_true(got[0] == -7.0f && got[1] == -7.0f);
        const float one[1] = {0.1f};
        assert_int_equal(tau_file_write_layer(path, 9, 1, one, err, sizeof err), -1);
        assert_string_equal(read_text(path), text);
    }
    unlink(path);
}

static void test_missing_repeated_and_extra_heads(void **state)
{
    (void)state;
    char path[512], err[512];
    float got[3] = {-7.0f, -7.0f, -7.0f};
    path_of(path, sizeof path, "heads.txt");
    write_text(path, "4 0 0.1\n4 2 0.1\n");
    assert_int_equal(tau_file_read(path, 4, 3, got, err, sizeof err), -1);
    assert_non_null(strstr(err, "no threshold for layer 4 head 1"));
    assert_int_equal(tau_file_read(path, 5, 1, got, err, sizeof err), -1); /* layer 5: none */
    write_text(path, "4 0 0.1\n4 0 0.2\n");
    assert_int_equal(tau_file_read(path, 4, 1, got, err, sizeof err), -1);
    assert_non_null(strstr(err, "appears twice"));
    write_text(path, "4 0 0.1\n4 1 0.2\n");
    assert_int_equal(tau_file_read(path, 4, 1, got, err, sizeof err), -1);
    assert_non_null(strstr(err, "has head 1, but the tensors have 1 query heads"));
    assert_true(got[0] == -7.0f);
    path_of(path, sizeof path, "absent.txt");
    assert_int_equal(tau_file_read(path, 0, 1, got, err, sizeof err), -1);
    const float negative[1] = {-0.5f};
    path_of(path, sizeof path, "neg.txt");
    assert_int_equal(tau_file_write_layer(path, 0, 1, negative, err, sizeof err), -1);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/clsa-tau-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_merge),
        cmocka_unit_test(test_keep_smaller),
        cmocka_unit_test(test_comments_blanks_and_order),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_missing_repeated_and_extra_heads),
    };
    const int failed = cmocka_run_group_tests_name("tau_file", tests, NULL, NULL);
    rmdir(dir);
    return failed;
}

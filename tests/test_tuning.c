/* The tuning database: the built-in row, the tuning file read back, precedence, bad files and keys,
   and features a device lacks. Results under tuned parameters are checked in test_dense. */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *write_file(const char *text)
{
    char *path = strdup("/tmp/clsa-tuning-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static clsa_status make(const char *file, const char *tuning, clsa_context **out)
{
    clsa_context_options opt = {0};
    opt.tuning_file = file;
    opt.tuning = tuning;
    *out = NULL;
    return clsa_context_create_default(&opt, out);
}

/* Every context reports the row that tuned it. */
static void test_builtin_row(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const char *t = clsa_context_tuning(ctx);
    printf("# %s: %s\n", clsa_context_device_name(ctx), t);
    assert_non_null(strstr(t, "(from built-in: "));
    assert_non_null(strstr(t, "cpu_dense_rows="));
    clsa_context_release(ctx);
}

/* A file's first matching row applies over the table; rows for other devices do not. The options
   win over the file. */
static void test_file_read_back(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    char text[2048];
    snprintf(text, sizeof text,
             "# written by test_tuning\n"
             "[device]\n"
             "match.name = no such device anywhere\n"
             "cpu_dense_rows = 8\n"
             "[device]\n"
             "match.name = %.40s   # the device's own name\n"
             "match.type = any\n"
             "source = test_tuning\n"
             "cpu_dense_rows = 2\n"
             "cpu_local = 16\n"
             "[device]\n"
             "cpu_dense_rows = 1\n",
             clsa_context_device_name(ctx));
    clsa_context_release(ctx);
    char *path = write_file(text);
    assert_int_equal(make(path, NULL, &ctx), CLSA_SUCCESS);
    const char *t = clsa_context_tuning(ctx);
    printf("# %s\n", t);
    assert_non_null(strstr(t, "cpu_dense_rows=2,"));
    assert_non_null(strstr(t, "cpu_local=16,"));
    assert_non_null(strstr(t, "(test_tuning)"));
    clsa_context_release(ctx);
    assert_int_equal(make(path, "cpu_local=32", &ctx), CLSA_SUCCESS);
    t = clsa_context_tuning(ctx);
    assert_non_null(strstr(t, "cpu_dense_rows=2,"));
    assert_non_null(strstr(t, "cpu_local=32,"));
    assert_non_null(strstr(t, "clsa_context_options.tuning"));
    clsa_context_release(ctx);
    unlink(path);
    free(path);
}

/* A missing file, a bad line or a bad key fails context creation (the message, naming the line, is
   printed to stderr: a context that failed has no last error to read). */
static void test_bad_files(void **state)
{
    (void)state;
    static const struct { const char *text; } bad[] = {
        {"cpu_dense_rows = 2\n"},
        {"[device]\ncpu_dense_rows = 3\n"},
        {"[device]\nmatch.type = any\nwarp_size = 32\n"},
        {"[device]\njust words\n"},
        {"[device]\nestimate = tpu\n"},
        {"[device]\nmatch.type = GPU\n"},
        {"[device]\nmatch.isa = sse\n"},
    };
    clsa_context *ctx = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        char *path = write_file(bad[i].text);
        assert_int_equal(make(path, NULL, &ctx), CLSA_ERR_INVALID_OPTION);
        assert_null(ctx);
        unlink(path);
        free(path);
    }
    assert_int_equal(make("/nonexistent/clsa-tuning", NULL, &ctx), CLSA_ERR_INVALID_OPTION);
    assert_null(ctx);
    /* A directory and a FIFO (which must not block context creation) are refused. */
    assert_int_equal(make("/tmp", NULL, &ctx), CLSA_ERR_INVALID_OPTION);
    char fifo[] = "/tmp/clsa-tuning-fifo-XXXXXX";
    assert_non_null(mkdtemp(fifo));
    char fifo_path[64];
    snprintf(fifo_path, sizeof fifo_path, "%s/f", fifo);
    assert_int_equal(mkfifo(fifo_path, 0600), 0);
    assert_int_equal(make(fifo_path, NULL, &ctx), CLSA_ERR_INVALID_OPTION);
    assert_null(ctx);
    unlink(fifo_path);
    rmdir(fifo);
}

/* Forcing a feature the device lacks is an error; where it has it, the context accepts it. */
static void test_forced_features(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const clsa_device_info *info = clsa_context_device_info(ctx);
    const bool dot = (info->integer_dot_product & CLSA_INT_DOT_4X8_PACKED) != 0, sub = info->has_subgroups != 0;
    clsa_context_release(ctx);
    assert_int_equal(make(NULL, "int_dot=1", &ctx), dot ? CLSA_SUCCESS : CLSA_ERR_DEVICE_UNSUPPORTED);
    clsa_context_release(ctx);
    assert_int_equal(make(NULL, "subgroups=1", &ctx), sub ? CLSA_SUCCESS : CLSA_ERR_DEVICE_UNSUPPORTED);
    clsa_context_release(ctx);
    /* Turning a feature off is always possible. */
    assert_int_equal(make(NULL, "int_dot=0,subgroups=0", &ctx), CLSA_SUCCESS);
    clsa_context_release(ctx);
}

/* Resources are checked before launch: work-groups above the kernel's limit, and private memory past
   the budget where the device reports it, are refused with CLSA_ERR_DEVICE_UNSUPPORTED. */
static void test_resources_checked(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    cl_program p = NULL;
    char options[512];
    const clsa_shape shape = clsa_shape_make(1, 1, 1, 16, 16, 16, CLSA_F32, 0);
    assert_int_equal(clsa_build_options(ctx, options, sizeof options, &shape, 0, NULL), CLSA_SUCCESS);
    assert_int_equal(clsa_program_get(ctx, "fits",
                                      "__kernel void small(__global float *x) { x[get_global_id(0)] = 1.0f; }\n"
                                      "__kernel void big(__global float *x, int n) {\n"
                                      "    float t[32768];\n"
                                      "    for (int i = 0; i < n; ++i) t[(i * 7919) & 32767] = x[i];\n"
                                      "    x[get_global_id(0)] = t[n & 32767];\n"
                                      "}\n",
                                      options, &p),
                     CLSA_SUCCESS);
    cl_int err = CL_SUCCESS;
    cl_kernel small = clCreateKernel(p, "small", &err), big = clCreateKernel(p, "big", &err);
    assert_int_equal(err, CL_SUCCESS);
    size_t max_items = 0;
    cl_ulong private_bytes = 0;
    assert_int_equal(clGetKernelWorkGroupInfo(small, clsa_context_device(ctx), CL_KERNEL_WORK_GROUP_SIZE, sizeof max_items,
                                              &max_items, NULL),
                     CL_SUCCESS);
    assert_int_equal(clsa_kernel_fits(ctx, small, "small", 1), CLSA_SUCCESS);
    assert_int_equal(clsa_kernel_fits(ctx, small, "small", max_items), CLSA_SUCCESS);
    assert_int_equal(clsa_kernel_fits(ctx, small, "small", max_items + 1), CLSA_ERR_DEVICE_UNSUPPORTED);
    assert_non_null(strstr(clsa_context_last_error(ctx), "small"));
    clGetKernelWorkGroupInfo(big, clsa_context_device(ctx), CL_KERNEL_PRIVATE_MEM_SIZE, sizeof private_bytes,
                             &private_bytes, NULL);
    printf("# %s: small runs %zu per group; big reports %llu private bytes per work-item\n",
           clsa_context_device_name(ctx), max_items, (unsigned long long)private_bytes);
    /* 128 KiB per work-item: 64 work-items exceed the 8 MiB budget wherever it is reported. */
    if (private_bytes >= 32768 * 4)
        assert_int_equal(clsa_kernel_fits(ctx, big, "big", 64), CLSA_ERR_DEVICE_UNSUPPORTED);
    clReleaseKernel(small);
    clReleaseKernel(big);
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("tuning");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_row),
        cmocka_unit_test(test_file_read_back),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_forced_features),
        cmocka_unit_test(test_resources_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

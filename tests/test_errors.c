/*
 * Bad inputs: each returns its own status, sets a last-error message, and writes nothing (the
 * output buffer keeps its poison, and *out stays NULL).
 */
#include "harness.h"
#include "../src/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clsa_context *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = harness_context(CLSA_STYLE_AUTO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clsa_context_release(ctx);
    return 0;
}

static clsa_shape good_shape(void) { return clsa_shape_make(1, 4, 2, 40, 48, 16, CLSA_F32, 1); }

/* Plan creation with this shape fails with `want`, leaves the plan NULL and says why. */
static void expect_plan_error(const clsa_shape *s, const clsa_sparsity *sp, clsa_status want)
{
    clsa_plan *plan = (clsa_plan *)0x1;
    clsa_status st = clsa_plan_create(ctx, s, sp, &plan);
    printf("# %s: %s\n", clsa_status_string(st), clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_null(plan);
    assert_true(strlen(clsa_context_last_error(ctx)) > 0);
}

static void test_dimensions(void **state)
{
    (void)state;
    int64_t *fields[6];
    for (int f = 0; f < 6; ++f) {
        for (int bad = 0; bad < 2; ++bad) {
            clsa_shape s = good_shape();
            fields[0] = &s.batch, fields[1] = &s.q_heads, fields[2] = &s.kv_heads;
            fields[3] = &s.q_len, fields[4] = &s.kv_len, fields[5] = &s.head_dim;
            *fields[f] = bad ? -3 : 0;
            expect_plan_error(&s, NULL, CLSA_ERR_INVALID_DIMENSION);
        }
    }
}

static void test_head_ratio(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    s.q_heads = 6, s.kv_heads = 4;
    expect_plan_error(&s, NULL, CLSA_ERR_HEAD_RATIO);
}

static void test_head_dim(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    s.head_dim = 257;
    expect_plan_error(&s, NULL, CLSA_ERR_UNSUPPORTED_HEAD_DIM);
}

static void test_dtype(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    s.dtype = (clsa_dtype)7;
    expect_plan_error(&s, NULL, CLSA_ERR_UNKNOWN_DTYPE);
}

static void test_overflow(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    s.batch = (int64_t)1 << 20, s.q_heads = (int64_t)1 << 20, s.kv_heads = 1;
    expect_plan_error(&s, NULL, CLSA_ERR_SIZE_OVERFLOW); /* batch x heads beyond 2^30 */
    s = good_shape();
    s.q_strides = (clsa_tensor_strides){INT64_MAX / 2, 16, 16 * 4};
    s.batch = 4;
    expect_plan_error(&s, NULL, CLSA_ERR_SIZE_OVERFLOW); /* (batch-1) x stride overflows */
    s = good_shape();
    s.q_len = (int64_t)1 << 40;
    expect_plan_error(&s, NULL, CLSA_ERR_SIZE_OVERFLOW);
}

/* clsa_strides_blhd once overflowed signed 64-bit arithmetic (UBSan) and returned garbage strides;
   now it returns CLSA_STRIDES_OVERFLOW, and a plan with those refuses them. */
static void test_strides_blhd_overflow_is_reported(void **state)
{
    (void)state;
    const clsa_tensor_strides ok = clsa_strides_blhd(100, 4, 16);
    assert_true(ok.batch == 6400 && ok.head == 16 && ok.token == 64);
    const int64_t huge[][3] = {{INT64_MAX / 2, 4, 128}, {1, INT64_MAX, 2}, {3, 0, 16}, {-5, 2, 16}};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; ++i) {
        const clsa_tensor_strides st = clsa_strides_blhd(huge[i][0], huge[i][1], huge[i][2]);
        assert_true(st.batch == -1 && st.head == -1 && st.token == -1);
    }
    clsa_shape s = good_shape();
    s.q_strides = clsa_strides_blhd(INT64_MAX / 2, 4, 128);
    expect_plan_error(&s, NULL, CLSA_ERR_SIZE_OVERFLOW);
}

/* The device-selector grammar, checked against the machine's own device list: every device by
   index, by "platform:device" indices and by its platform's name; name substrings that match
   several devices are refused with the candidates listed; nonsense matches nothing. */
static void test_device_selector(void **state)
{
    (void)state;
    cl_platform_id plats[16];
    cl_uint nplat = 0;
    assert_int_equal(clGetPlatformIDs(16, plats, &nplat), CL_SUCCESS);
    cl_uint overall = 0;
    char sel[300], why[4096];
    for (cl_uint p = 0; p < nplat && p < 16; ++p) {
        cl_device_id devs[16];
        cl_uint n = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs, &n) != CL_SUCCESS)
            continue;
        char pname[128];
        assert_int_equal(clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL), CL_SUCCESS);
        for (cl_uint d = 0; d < n && d < 16; ++d, ++overall) {
            cl_device_id got = NULL;
            snprintf(sel, sizeof sel, "%u", overall);
            assert_int_equal(clsa_select_device(sel, &got, why, sizeof why), CLSA_SUCCESS);
            assert_ptr_equal(got, devs[d]);
            snprintf(sel, sizeof sel, "%u:%u", p, d);
            assert_int_equal(clsa_select_device(sel, &got, why, sizeof why), CLSA_SUCCESS);
            assert_ptr_equal(got, devs[d]);
            for (char *c = pname; *c; ++c) /* case-insensitive */
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
            snprintf(sel, sizeof sel, "%s:%u", pname, d);
            clsa_status st = clsa_select_device(sel, &got, why, sizeof why);
            printf("# %s -> %s%s\n", sel, clsa_status_string(st), st ? why : "");
            if (st == CLSA_SUCCESS) /* two platforms may share a name; then it must say so */
                assert_ptr_equal(got, devs[d]);
            else
                assert_non_null(strstr(why, "more than one platform"));
        }
    }
    /* A one-letter substring: the selector must pick the device when exactly one name holds it,
       and list every candidate otherwise. */
    cl_device_id got = NULL;
    for (const char *letter = "aeiou"; *letter; ++letter) {
        char needle[2] = {*letter, 0};
        cl_uint holders = 0;
        cl_device_id holder = NULL;
        for (cl_uint p = 0; p < nplat && p < 16; ++p) {
            cl_device_id devs[16];
            cl_uint n = 0;
            if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs, &n) != CL_SUCCESS)
                continue;
            for (cl_uint d = 0; d < n && d < 16; ++d) {
                char name[256];
                clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof name, name, NULL);
                for (char *c = name; *c; ++c)
                    *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                if (strchr(name, *letter))
                    ++holders, holder = devs[d];
            }
        }
        const clsa_status st = clsa_select_device(needle, &got, why, sizeof why);
        printf("# \"%s\" (%u devices hold it) -> %s\n", needle, holders, clsa_status_string(st));
        if (holders == 1) {
            assert_int_equal(st, CLSA_SUCCESS);
            assert_ptr_equal(got, holder);
        } else {
            assert_int_equal(st, CLSA_ERR_INVALID_OPTION);
            assert_non_null(strstr(why, holders ? "ambiguous" : "matches no device"));
        }
    }
    assert_int_equal(clsa_select_device("no such device anywhere", &got, why, sizeof why), CLSA_ERR_INVALID_OPTION);
    assert_non_null(strstr(why, "matches no device"));
    assert_null(got);
    snprintf(sel, sizeof sel, "%u", overall);
    assert_int_equal(clsa_select_device(sel, &got, why, sizeof why), CLSA_ERR_INVALID_OPTION);
    assert_int_equal(clsa_select_device("0:999", &got, why, sizeof why), CLSA_ERR_INVALID_OPTION);
    assert_int_equal(clsa_select_device("no such platform:0", &got, why, sizeof why), CLSA_ERR_INVALID_OPTION);
    assert_int_equal(clsa_select_device("0", NULL, why, sizeof why), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_select_device(NULL, &got, NULL, 0), CLSA_SUCCESS);
    assert_non_null(got);
}

static void test_strides_and_scale(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    s.k_strides = (clsa_tensor_strides){100, -1, 16};
    expect_plan_error(&s, NULL, CLSA_ERR_INVALID_STRIDE);
    s = good_shape();
    s.o_strides = (clsa_tensor_strides){4 * 40 * 16, 40 * 16, 8}; /* token stride < head_dim: rows overlap */
    expect_plan_error(&s, NULL, CLSA_ERR_INVALID_STRIDE);
    s = good_shape();
    s.scale = NAN;
    expect_plan_error(&s, NULL, CLSA_ERR_INVALID_SCALE);
    s.scale = -1.0f;
    expect_plan_error(&s, NULL, CLSA_ERR_INVALID_SCALE);
}

static void test_method(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, (clsa_method)10);
    expect_plan_error(&s, &sp, CLSA_ERR_INVALID_METHOD);
    clsa_sparsity_init(&sp, (clsa_method)-1);
    expect_plan_error(&s, &sp, CLSA_ERR_INVALID_METHOD);
}

static void test_null_plan_arguments(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(NULL, &s, NULL, &plan), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_plan_create(ctx, NULL, NULL, &plan), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, NULL), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_context_create(NULL, NULL, NULL, NULL), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_attention(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL), CLSA_ERR_NULL_ARGUMENT);
}

/* A call that must fail with `want` and leave the poisoned output exactly as it was. */
typedef struct call_case {
    const char *what;
    clsa_status want;
} call_case;

static void expect_call_error(clsa_plan *plan, harness_buffers *b, cl_command_queue queue, cl_mem q, cl_mem k,
                              cl_mem v, cl_mem o, cl_mem ws, cl_uint nw, const cl_event *wl, clsa_status want)
{
    clsa_status st = clsa_attention(plan, queue, q, k, v, o, ws, nw, wl, NULL);
    printf("# %s: %s\n", clsa_status_string(st), clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_true(strlen(clsa_context_last_error(ctx)) > 0);
    assert_int_equal(clFinish(b->queue), CL_SUCCESS);
    unsigned char *now = malloc(b->o_bytes);
    assert_int_equal(clEnqueueReadBuffer(b->queue, b->o, CL_TRUE, 0, b->o_bytes, now, 0, NULL, NULL), CL_SUCCESS);
    for (size_t i = 0; i < b->o_bytes; ++i)
        if (now[i] != 0xFF) {
            print_error("output byte %zu was written by a failing call\n", i);
            fail();
        }
    free(now);
}

static cl_mem buffer_of(size_t bytes)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void test_call_arguments(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    harness_rng rng = harness_rng_make(5);
    harness_buffers b;
    harness_buffers_make(ctx, &s, &rng, &b);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    cl_mem small_q = buffer_of(b.q_bytes - 4), small_k = buffer_of(b.k_bytes / 2), small_v = buffer_of(16);
    cl_mem small_ws = buffer_of(clsa_plan_workspace_size(plan) - 4);
    cl_mem ws = buffer_of(clsa_plan_workspace_size(plan));
    cl_mem small_o = buffer_of(b.o_bytes - 2);
    cl_event ev = NULL;

    expect_call_error(plan, &b, NULL, b.q, b.k, b.v, b.o, NULL, 0, NULL, CLSA_ERR_NULL_ARGUMENT);
    expect_call_error(plan, &b, b.queue, NULL, b.k, b.v, b.o, NULL, 0, NULL, CLSA_ERR_NULL_ARGUMENT);
    expect_call_error(plan, &b, b.queue, b.q, NULL, b.v, b.o, NULL, 0, NULL, CLSA_ERR_NULL_ARGUMENT);
    expect_call_error(plan, &b, b.queue, b.q, b.k, NULL, b.o, NULL, 0, NULL, CLSA_ERR_NULL_ARGUMENT);
    expect_call_error(plan, &b, b.queue, b.q, b.k, b.v, NULL, NULL, 0, NULL, CLSA_ERR_NULL_ARGUMENT);
    expect_call_error(plan, &b, b.queue, small_q, b.k, b.v, b.o, NULL, 0, NULL, CLSA_ERR_BUFFER_TOO_SMALL);
    expect_call_error(plan, &b, b.queue, b.q, small_k, b.v, b.o, NULL, 0, NULL, CLSA_ERR_BUFFER_TOO_SMALL);
    expect_call_error(plan, &b, b.queue, b.q, b.k, small_v, b.o, NULL, 0, NULL, CLSA_ERR_BUFFER_TOO_SMALL);
    expect_call_error(plan, &b, b.queue, b.q, b.k, b.v, b.o, small_ws, 0, NULL, CLSA_ERR_WORKSPACE_TOO_SMALL);
    expect_call_error(plan, &b, b.queue, b.q, b.k, b.v, b.o, ws, 1, NULL, CLSA_ERR_INVALID_WAIT_LIST);
    expect_call_error(plan, &b, b.queue, b.q, b.k, b.v, b.o, ws, 0, &ev, CLSA_ERR_INVALID_WAIT_LIST);
    /* An output that is too small: its own content must stay too. */
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, small_o, ws, 0, NULL, NULL), CLSA_ERR_BUFFER_TOO_SMALL);

    /* With a good workspace the same call succeeds: the failures above were the arguments. */
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    cl_mem all[] = {small_q, small_k, small_v, small_ws, ws, small_o};
    for (int i = 0; i < 6; ++i)
        clReleaseMemObject(all[i]);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
}

static void test_host_call_nulls(void **state)
{
    (void)state;
    clsa_shape s = good_shape();
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    float x[4];
    assert_int_equal(clsa_attention_host(plan, NULL, NULL, x, x, x), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_attention_host(plan, NULL, x, x, x, NULL), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_attention_host(NULL, NULL, x, x, x, x), CLSA_ERR_NULL_ARGUMENT);
    clsa_plan_release(plan);
}

/* Whether the space-separated list names `want` exactly (the test's own reading of the list). */
static bool lists_extension(const char *list, const char *want)
{
    char word[256];
    for (const char *p = list; *p;) {
        while (*p == ' ')
            ++p;
        size_t n = strcspn(p, " ");
        if (n > 0 && n < sizeof word) {
            memcpy(word, p, n);
            word[n] = '\0';
            if (!strcmp(word, want))
                return true;
        }
        p += n;
    }
    return false;
}

/* The device information agrees with what OpenCL reports when asked directly. */
static void test_device_info(void **state)
{
    (void)state;
    assert_null(clsa_context_device_info(NULL));
    assert_string_equal(clsa_context_device_extensions(NULL), "");
    const clsa_device_info *d = clsa_context_device_info(ctx);
    assert_non_null(d);
    cl_device_id dev = clsa_context_device(ctx);
    char name[256] = "";
    cl_uint units = 0;
    size_t wg = 0, ext_size = 0;
    cl_ulong local = 0;
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL), CL_SUCCESS);
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL), CL_SUCCESS);
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL), CL_SUCCESS);
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL), CL_SUCCESS);
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size), CL_SUCCESS);
    char *ext = calloc(ext_size + 1, 1);
    assert_non_null(ext);
    assert_int_equal(clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL), CL_SUCCESS);
    assert_string_equal(d->name, name);
    assert_string_equal(clsa_context_device_extensions(ctx), ext);
    assert_int_equal(d->compute_units, units);
    assert_int_equal(d->max_work_group_size, wg);
    assert_int_equal(d->local_mem_size, local);
    assert_int_equal(strncmp(d->c_version, "OpenCL C ", 9), 0);
    assert_int_equal(d->has_fp16, lists_extension(ext, "cl_khr_fp16"));
    assert_int_equal(d->has_fp64, lists_extension(ext, "cl_khr_fp64"));
    if (lists_extension(ext, "cl_khr_subgroups")) /* OpenCL >= 2.1 devices may have them without it */
        assert_true(d->has_subgroups);
    assert_int_equal(d->has_intel_subgroups, lists_extension(ext, "cl_intel_subgroups"));
    assert_int_equal(d->has_intel_required_subgroup_size, lists_extension(ext, "cl_intel_required_subgroup_size"));
    assert_int_equal(d->has_integer_dot_product, lists_extension(ext, "cl_khr_integer_dot_product"));
    if (d->has_intel_required_subgroup_size)
        assert_true(d->num_subgroup_sizes > 0);
    else
        assert_int_equal(d->num_subgroup_sizes, 0);
    for (cl_uint i = 0; i < d->num_subgroup_sizes; ++i)
        assert_true(d->subgroup_sizes[i] > 0 && d->subgroup_sizes[i] <= wg);
    if (!d->has_integer_dot_product)
        assert_int_equal(d->integer_dot_product, 0);
    printf("# %s: %s; fp16 %d, sub-groups khr %d intel %d (%u sizes), integer dot %d (caps %u)\n", d->name,
           d->c_version, d->has_fp16, d->has_subgroups, d->has_intel_subgroups, d->num_subgroup_sizes,
           d->has_integer_dot_product, d->integer_dot_product);
    free(ext);
}

static void test_context_options(void **state)
{
    (void)state;
    clsa_context_options opt = {0};
    opt.kernel_style = (clsa_kernel_style)5;
    clsa_context *c = (clsa_context *)0x1;
    assert_int_equal(clsa_context_create(clsa_context_cl_context(ctx), clsa_context_device(ctx), &opt, &c),
                     CLSA_ERR_INVALID_OPTION);
    assert_null(c);
    setenv("CLSA_KERNEL_STYLE", "fpga", 1);
    assert_int_equal(clsa_context_create_default(NULL, &c), CLSA_ERR_INVALID_OPTION);
    setenv("CLSA_KERNEL_STYLE", "gpu", 1);
    assert_int_equal(clsa_context_create_default(NULL, &c), CLSA_SUCCESS);
    assert_int_equal(clsa_context_kernel_style(c), CLSA_STYLE_GPU);
    clsa_context_release(c);
    unsetenv("CLSA_KERNEL_STYLE");
    setenv("CLSA_DEVICE", "no such device name", 1);
    assert_int_equal(clsa_context_create_default(NULL, &c), CLSA_ERR_INVALID_OPTION);
    setenv("CLSA_DEVICE", "99", 1);
    assert_int_equal(clsa_context_create_default(NULL, &c), CLSA_ERR_INVALID_OPTION);
    setenv("CLSA_DEVICE", "0", 1);
    assert_int_equal(clsa_context_create_default(NULL, &c), CLSA_SUCCESS);
    clsa_context_release(c);
    unsetenv("CLSA_DEVICE");
    /* A bad tuning key fails context creation with its own status. */
    const char *bad_tunes[] = {"cpu_rows=3", "gpu_group=512", "warp=32", "cpu_rows=", "cpu_rows=4x",
                               "estimate=fpga", "int_dot=2", "cpu_sparse_tiles=-1", ",=,"};
    for (size_t i = 0; i < sizeof bad_tunes / sizeof bad_tunes[0]; ++i) {
        clsa_context_options opt = {0};
        opt.tuning = bad_tunes[i];
        c = NULL;
        assert_int_equal(clsa_context_create_default(&opt, &c), CLSA_ERR_INVALID_OPTION);
        assert_null(c);
    }
}

/* A build failure reports the build log, the device name and the build options. */
static void test_build_failure_message(void **state)
{
    (void)state;
    cl_program p = NULL;
    clsa_status st = clsa_program_get(ctx, "broken", "__kernel void k(void) { this is not C; }",
                                      "-DCLSA_MARKER_OPTION=1", &p);
    assert_int_equal(st, CLSA_ERR_BUILD_FAILED);
    const char *msg = clsa_context_last_error(ctx);
    printf("# %.300s...\n", msg);
    assert_non_null(strstr(msg, clsa_context_device_name(ctx)));
    assert_non_null(strstr(msg, "-DCLSA_MARKER_OPTION=1"));
    assert_non_null(strstr(msg, "build log"));
    assert_non_null(strstr(msg, "error"));
}

static void test_status_strings(void **state)
{
    (void)state;
    for (int code = CLSA_ERR_INVALID_MASK_COUNT; code <= CLSA_ERR_NULL_ARGUMENT; ++code)
        assert_string_not_equal(clsa_status_string((clsa_status)code), "CLSA_UNKNOWN_STATUS");
    assert_string_equal(clsa_status_string(CLSA_SUCCESS), "CLSA_SUCCESS");
    assert_string_equal(clsa_status_string((clsa_status)CL_INVALID_MEM_OBJECT), "CL_INVALID_MEM_OBJECT");
    assert_string_equal(clsa_status_string((clsa_status)-9999), "CLSA_UNKNOWN_STATUS");
    assert_int_equal(clsa_version_number(), CLSA_VERSION);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", CLSA_VERSION_MAJOR, CLSA_VERSION_MINOR, CLSA_VERSION_PATCH);
    assert_string_equal(clsa_version(), want);
}

int main(void)
{
    harness_init("errors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dimensions),        cmocka_unit_test(test_head_ratio),
        cmocka_unit_test(test_head_dim),          cmocka_unit_test(test_dtype),
        cmocka_unit_test(test_overflow),          cmocka_unit_test(test_strides_and_scale), cmocka_unit_test(test_strides_blhd_overflow_is_reported),
        cmocka_unit_test(test_device_selector),
        cmocka_unit_test(test_method),            cmocka_unit_test(test_null_plan_arguments),
        cmocka_unit_test(test_call_arguments),    cmocka_unit_test(test_host_call_nulls),
        cmocka_unit_test(test_context_options),   cmocka_unit_test(test_build_failure_message),
        cmocka_unit_test(test_status_strings),    cmocka_unit_test(test_device_info),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

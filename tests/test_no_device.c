/*
 * With no OpenCL device (meson runs this with OCL_ICD_VENDORS pointing at an empty place), the
 * default constructor reports CLSA_ERR_NO_DEVICE. meson.build also runs the dense suite in the
 * same environment and expects it to FAIL: a test run without a device never passes by skipping.
 */
#include "harness.h"

#include <stdlib.h>

static void test_no_device_is_an_error(void **state)
{
    (void)state;
    const char *vendors = getenv("OCL_ICD_VENDORS");
    assert_non_null(vendors); /* set by tests/meson.build; without it this test proves nothing */
    clsa_context *ctx = (clsa_context *)0x1;
    assert_int_equal(clsa_context_create_default(NULL, &ctx), CLSA_ERR_NO_DEVICE);
    assert_null(ctx);
}

int main(void)
{
    harness_init("no-device");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_device_is_an_error)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

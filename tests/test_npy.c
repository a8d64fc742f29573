/* bench/npy.c: well-formed files load; every malformed one is a clear error, never a crash; what
   the writer writes reads back. */
#include "harness.h"
#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[256];

/* Writes a .npy file: magic, version 1.0, the header padded to 64 bytes, then `data`. */
static void write_npy(const char *magic, const char *header, const void *data, size_t bytes)
{
    char padded[256];
    size_t n = (size_t)snprintf(padded, sizeof padded, "%s", header);
    while ((10 + n + 1) % 64)
        padded[n++] = ' ';
    padded[n++] = '\n';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(magic, 1, 6, f);
    const unsigned char version[4] = {1, 0, (unsigned char)(n & 0xFF), (unsigned char)(n >> 8)};
    fwrite(version, 1, 4, f);
    fwrite(padded, 1, n, f);
    if (bytes)
        fwrite(data, 1, bytes, f);
    fclose(f);
}

static void expect_error(const char *what)
{
    npy_array a;
    char err[512] = "";
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_null(a.data);
    printf("# %s -> %s\n", what, err);
    assert_true(strlen(err) > strlen(path));
}

/* A small file whose header claims a huge shape once made the reader allocate for the shape
   (18 GB for a 130-byte file) before it looked at the file's size. Now the size is compared first:
   the error is the size mismatch, never an allocation failure. 2^38 x 4 floats is 4 TiB, more
   than any allocator here grants, so the old order fails this test deterministically. */
static void test_size_checked_before_allocation(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "%s/clsa-npy-big-%ld.npy", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    const float some[16] = {0};
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (274877906944, 4), }", some, sizeof some);
    npy_array a;
    char err[512] = "";
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    printf("# huge shape in a small file -> %s\n", err);
    assert_null(a.data);
    assert_non_null(strstr(err, "its shape needs 4398046511104"));
    /* Not a regular file (a FIFO would block a plain open): refused at once. */
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(path);
}

static void test_npy(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "%s/clsa-npy-%ld.npy", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    float data[2 * 3 * 4];
    for (int i = 0; i < 24; ++i)
        data[i] = (float)i * 0.5f;

    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", data, sizeof data);
    npy_array a;
    char err[512];
    assert_int_equal(npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.ndim, 3);
    assert_int_equal(a.shape[0], 2), assert_int_equal(a.shape[1], 3), assert_int_equal(a.shape[2], 4);
    assert_int_equal(a.is_f16, 0);
    assert_memory_equal(a.data, data, sizeof data);
    npy_free(&a);

    uint16_t halves[6];
    for (int i = 0; i < 6; ++i)
        halves[i] = ref_f32_to_f16((float)i);
    write_npy("\x93NUMPY", "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1, 2, 3), }", halves, sizeof halves);
    assert_int_equal(npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.ndim, 4);
    assert_int_equal(a.is_f16, 1);
    npy_free(&a);

    write_npy("\x93NUMPX", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", data, sizeof data);
    expect_error("bad magic");
    write_npy("\x93NUMPY", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 4), }", data, sizeof data);
    expect_error("float64");
    write_npy("\x93NUMPY", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3, 4), }", data, sizeof data);
    expect_error("big-endian");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }", data, sizeof data);
    expect_error("Fortran order");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", data, sizeof data - 4);
    expect_error("truncated data");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 3), }", data, sizeof data);
    expect_error("trailing data");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3, 4), }", data, sizeof data);
    expect_error("negative dimension");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4", data, sizeof data);
    expect_error("unterminated shape");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False}", data, sizeof data);
    expect_error("missing shape");
    write_npy("\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", data, sizeof data);
    expect_error("overflowing shape");
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01", 1, 7, f);
    fclose(f);
    expect_error("truncated header");
    unlink(path);
    expect_error("missing file");
}

/* npy_write_f32 writes what npy_read reads back: shape (one and several dimensions) and data. */
static void test_write_round_trip(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "%s/clsa-npy-write-%ld.npy", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    float data[2 * 3 * 4];
    for (int i = 0; i < 24; ++i)
        data[i] = (float)i - 7.25f;
    const int64_t shapes[2][3] = {{2, 3, 4}, {24}};
    for (int s = 0; s < 2; ++s) {
        const int ndim = s == 0 ? 3 : 1;
        char err[512] = "";
        assert_int_equal(npy_write_f32(path, data, ndim, shapes[s], err, sizeof err), 0);
        npy_array a;
        assert_int_equal(npy_read(path, &a, err, sizeof err), 0);
        assert_int_equal(a.ndim, ndim);
        for (int d = 0; d < ndim; ++d)
            assert_int_equal(a.shape[d], shapes[s][d]);
        assert_int_equal(a.is_f16, 0);
        assert_memory_equal(a.data, data, sizeof data);
        npy_free(&a);
    }
    unlink(path);
}

int main(void)
{
    harness_init("npy");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_npy), cmocka_unit_test(test_size_checked_before_allocation),
                                       cmocka_unit_test(test_write_round_trip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

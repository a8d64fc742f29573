/*
 * The opt-in program binary cache: entries appear on first build, are reused, and a corrupt
 * entry (garbage, truncated, or a well-formed file holding a binary the driver rejects) is
 * rebuilt silently, with correct results.
 */
#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static char dir[256];

static int list_entries(char names[][512], int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (dot && strcmp(dot, ".clbin") == 0 && n < max)
            snprintf(names[n++], 512, "%s/%s", dir, e->d_name);
        else if (strstr(e->d_name, ".tmp"))
            fail_msg("temporary file %s left behind", e->d_name);
    }
    closedir(d);
    return n;
}

/* Makes a context on the cache dir, runs one dense plan and checks it against the reference. */
static void run_once(void)
{
    clsa_context_options opt = {0};
    opt.cache_dir = dir;
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(&opt, &ctx);
    if (st)
        fail_msg("no OpenCL device: %s", clsa_status_string(st));
    clsa_shape s = clsa_shape_make(1, 2, 1, 37, 37, 24, CLSA_F32, 1);
    double err = harness_dense_error(ctx, &s, 3);
    assert_true(err <= 1e-5);
    clsa_context_release(ctx);
}

typedef struct entry_header {
    char magic[8];
    uint64_t size, hash;
} entry_header;

/* An entry is well-formed when its header's magic, payload size and XXH3-64 all match. (PoCL's
   binaries differ in size between builds, so a rebuilt entry is not compared byte for byte.) */
static bool entry_is_valid(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    entry_header h;
    bool ok = fread(&h, sizeof h, 1, f) == 1 && memcmp(h.magic, "CLSABIN1", 8) == 0 && h.size > 0 &&
              h.size < (1u << 30);
    unsigned char *payload = ok ? malloc(h.size) : NULL;
    ok = ok && payload && fread(payload, 1, h.size, f) == h.size && fgetc(f) == EOF &&
         XXH3_64bits(payload, h.size) == h.hash;
    free(payload);
    fclose(f);
    return ok;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_cache(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/clsa-cache-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    char names[16][512];

    run_once();
    int n = list_entries(names, 16);
    assert_int_equal(n, 2); /* kv_layout and attention */
    for (int i = 0; i < n; ++i)
        assert_true(entry_is_valid(names[i]));
    struct stat before;
    assert_int_equal(stat(names[0], &before), 0);

    /* Reuse: a second context loads the entries and leaves them as they are. */
    run_once();
    assert_int_equal(list_entries(names, 16), n);
    struct stat after;
    assert_int_equal(stat(names[0], &after), 0);
    assert_int_equal(after.st_ino, before.st_ino); /* not replaced by a rename */

    /* 1. Garbage over the first entry, 2. the second truncated to half. */
    write_file(names[0], "not a program binary", 20);
    struct stat second;
    assert_int_equal(stat(names[1], &second), 0);
    assert_int_equal(truncate(names[1], second.st_size / 2), 0);
    assert_false(entry_is_valid(names[0]));
    assert_false(entry_is_valid(names[1]));
    run_once();
    assert_true(entry_is_valid(names[0]));
    assert_true(entry_is_valid(names[1]));

    /* 3. A well-formed entry (right magic, size and hash) whose payload the driver rejects. */
    const char payload[] = "this payload passes the checksum but is no binary";
    entry_header header;
    memcpy(header.magic, "CLSABIN1", 8);
    header.size = sizeof payload;
    header.hash = XXH3_64bits(payload, sizeof payload);
    unsigned char buf[sizeof header + sizeof payload];
    memcpy(buf, &header, sizeof header);
    memcpy(buf + sizeof header, payload, sizeof payload);
    write_file(names[0], buf, sizeof buf);
    assert_true(entry_is_valid(names[0]));
    run_once();
    assert_true(entry_is_valid(names[0]));
    assert_true(stat(names[0], &after) == 0 && after.st_size != (off_t)sizeof buf); /* rebuilt */

    for (int i = 0; i < n; ++i)
        unlink(names[i]);
    rmdir(dir);
}

int main(void)
{
    harness_init("cache");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cache)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

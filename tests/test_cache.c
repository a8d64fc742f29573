/*
 * The opt-in program binary cache: entries appear on first build and are reused; a corrupt entry
 * (garbage, truncated, or a well-formed file holding a binary the driver rejects) or an entry
 * copied from another key is rebuilt silently, with correct results; entries are only ever
 * regular files, opened without following links; and the cache is used only in a directory that
 * the user owns and nobody else can write.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_ENTRIES 16

/* Each test gets a fresh cache directory, and a directory beside it for files planted outside. */
static char dir[256], outside[256];

static void make_temp_dir(char *path, size_t size, const char *name)
{
    snprintf(path, size, "%s/clsa-%s-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", name);
    assert_non_null(mkdtemp(path));
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
    }
    if (d)
        closedir(d);
    rmdir(path);
}

static int make_dirs(void **state)
{
    (void)state;
    make_temp_dir(dir, sizeof dir, "cache-test");
    make_temp_dir(outside, sizeof outside, "cache-outside");
    return 0;
}

static int remove_dirs(void **state)
{
    (void)state;
    remove_tree(dir);
    remove_tree(outside);
    return 0;
}

/* The entries of a cache directory, sorted by name; a left-over temporary file fails the test. */
static int list_entries(const char *in, char names[][512], int max)
{
    DIR *d = opendir(in);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (dot && strcmp(dot, ".clbin") == 0 && n < max)
            snprintf(names[n++], 512, "%s/%s", in, e->d_name);
        else if (strstr(e->d_name, ".tmp"))
            fail_msg("temporary file %s left behind", e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, 512, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* Files of any kind in a directory, but . and .. */
static int count_files(const char *in)
{
    DIR *d = opendir(in);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static clsa_context *cache_context(const char *cache_dir)
{
    clsa_context_options opt = {0};
    opt.cache_dir = cache_dir;
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(&opt, &ctx);
    if (st)
        fail_msg("no OpenCL device: %s", clsa_status_string(st));
    return ctx;
}

/* One dense plan at a head_dim (which is built into every program's options), checked against
   the reference. */
static void check_dense(clsa_context *ctx, int64_t head_dim)
{
    clsa_shape s = clsa_shape_make(1, 2, 1, 37, 37, head_dim, CLSA_F32, 1);
    double err = harness_dense_error(ctx, &s, 3);
    assert_true(err <= 1e-5);
}

/* Makes a context on a cache dir, runs one dense plan and checks it against the reference. */
static void run_once_in(const char *cache_dir, int64_t head_dim)
{
    clsa_context *ctx = cache_context(cache_dir);
    check_dense(ctx, head_dim);
    clsa_context_release(ctx);
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static bool same_bytes(const char *path, const unsigned char *data, size_t n)
{
    size_t size = 0;
    unsigned char *now = read_file(path, &size);
    bool same = size == n && memcmp(now, data, n) == 0;
    free(now);
    return same;
}

/* Every entry format clsa has written starts with an 8-byte magic "CLSABIN<version>", then the
   payload's size and XXH3-64 at bytes 8 and 16; the payload is the file's last `size` bytes.
   The tests read entries through this alone, so they run unchanged against older formats. */
typedef struct entry_prefix {
    char magic[8];
    uint64_t size, hash;
} entry_prefix;

/* An entry is well-formed when its magic, payload size and XXH3-64 all match. (PoCL's binaries
   differ in size between builds, so a rebuilt entry is not compared byte for byte.) */
static bool entry_is_valid(const char *path)
{
    size_t n = 0;
    unsigned char *file = read_file(path, &n);
    entry_prefix h;
    bool ok = n >= sizeof h;
    if (ok)
        memcpy(&h, file, sizeof h);
    ok = ok && memcmp(h.magic, "CLSABIN", 7) == 0 && h.size > 0 && h.size <= n - sizeof h &&
         XXH3_64bits(file + n - h.size, h.size) == h.hash;
    free(file);
    return ok;
}

/* Rewrites a real entry around another payload, with its size and hash made to match, as only
   someone who can write the cache directory could. The rest of the header stays as it was. */
static void forge_payload(const char *path, const void *payload, uint64_t size)
{
    size_t n = 0;
    unsigned char *file = read_file(path, &n);
    entry_prefix h;
    assert_true(n >= sizeof h);
    memcpy(&h, file, sizeof h);
    assert_true(h.size < n);
    size_t header = n - h.size;
    h.size = size;
    h.hash = XXH3_64bits(payload, size);
    memcpy(file, &h, sizeof h);
    unsigned char *out = malloc(header + size);
    assert_non_null(out);
    memcpy(out, file, header);
    memcpy(out + header, payload, size);
    write_file(path, out, header + size);
    free(out);
    free(file);
}

static uint64_t payload_size(const char *path)
{
    size_t n = 0;
    unsigned char *file = read_file(path, &n);
    entry_prefix h;
    assert_true(n >= sizeof h);
    memcpy(&h, file, sizeof h);
    free(file);
    return h.size;
}

static void test_entries_reused_and_corrupt_ones_rebuilt(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512];

    run_once_in(dir, 24);
    int n = list_entries(dir, names, MAX_ENTRIES);
    assert_int_equal(n, 2); /* kv_layout and attention */
    for (int i = 0; i < n; ++i)
        assert_true(entry_is_valid(names[i]));
    struct stat before;
    assert_int_equal(stat(names[0], &before), 0);

    /* Reuse: a second context loads the entries and leaves them as they are. */
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), n);
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
    run_once_in(dir, 24);
    assert_true(entry_is_valid(names[0]));
    assert_true(entry_is_valid(names[1]));

    /* 3. A well-formed entry (right header, size and hash) whose payload the driver rejects. */
    const char payload[] = "this payload passes the checksum but is no binary";
    forge_payload(names[0], payload, sizeof payload);
    assert_true(entry_is_valid(names[0]));
    assert_int_equal(payload_size(names[0]), sizeof payload);
    run_once_in(dir, 24);
    assert_true(entry_is_valid(names[0]));
    assert_true(payload_size(names[0]) != sizeof payload); /* rebuilt */
}

/* Item 3 of issue 8: an entry copied over another key's name (the same kernels built for another
   head_dim, or another stage's kernels) is rebuilt, and the results stay right. */
static void test_entry_copied_over_other_key_is_rebuilt(void **state)
{
    (void)state;
    char small[MAX_ENTRIES][512], all[MAX_ENTRIES][512], large[2][512];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, small, MAX_ENTRIES), 2);
    run_once_in(dir, 32);
    assert_int_equal(list_entries(dir, all, MAX_ENTRIES), 4);
    int n = 0;
    for (int i = 0; i < 4; ++i)
        if (strcmp(all[i], small[0]) != 0 && strcmp(all[i], small[1]) != 0)
            memcpy(large[n++], all[i], sizeof all[i]);
    assert_int_equal(n, 2);

    /* Both pairings, so that one of them puts each head_dim 24 program under the name of the
       same stage's head_dim 32 program. */
    for (int swap = 0; swap < 2; ++swap) {
        size_t size[2];
        unsigned char *copied[2];
        for (int i = 0; i < 2; ++i) {
            copied[i] = read_file(small[i ^ swap], &size[i]);
            write_file(large[i], copied[i], size[i]);
        }
        run_once_in(dir, 32);
        for (int i = 0; i < 2; ++i) {
            assert_true(entry_is_valid(large[i]));
            assert_false(same_bytes(large[i], copied[i], size[i]));
            free(copied[i]);
        }
    }
}

/* Item 4 of issue 8: a truncated program binary never reaches the driver (PoCL crashes on one).
   Cut short under its own header, the length check catches it. Behind a header remade to match
   it, only someone who can write the cache directory could have put it there, and clsa does not
   use a directory that others can write: the entry is never read. */
static void test_truncated_payload_never_reaches_driver(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), 2);

    for (int i = 0; i < 2; ++i) {
        struct stat st;
        assert_int_equal(stat(names[i], &st), 0);
        assert_int_equal(truncate(names[i], st.st_size - (off_t)payload_size(names[i]) / 2), 0);
    }
    run_once_in(dir, 24);
    for (int i = 0; i < 2; ++i)
        assert_true(entry_is_valid(names[i]));

    size_t sizes[2];
    unsigned char *forged[2];
    for (int i = 0; i < 2; ++i) {
        size_t n = 0;
        unsigned char *file = read_file(names[i], &n);
        uint64_t size = payload_size(names[i]);
        forge_payload(names[i], file + n - size, size / 2);
        free(file);
        forged[i] = read_file(names[i], &sizes[i]);
    }
    assert_int_equal(chmod(dir, 0777), 0);
    run_once_in(dir, 24);
    for (int i = 0; i < 2; ++i) {
        assert_true(same_bytes(names[i], forged[i], sizes[i])); /* neither used nor rebuilt */
        free(forged[i]);
    }
}

/* Item 4 of issue 8: the payload's length is the file's, to the byte: bytes after it mean the
   entry is not what clsa wrote, and it is rebuilt. */
static void test_entry_with_trailing_bytes_is_rebuilt(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), 2);
    FILE *f = fopen(names[0], "ab");
    assert_non_null(f);
    assert_int_equal(fwrite("trailing", 1, 8, f), 8);
    fclose(f);
    assert_false(entry_is_valid(names[0]));
    run_once_in(dir, 24);
    /* Rewritten, valid, and without the appended bytes. Not "the same size as before": Intel's
       runtime may return a binary a few bytes longer or shorter on a rebuild in the same process. */
    assert_true(entry_is_valid(names[0]));
    size_t size = 0;
    unsigned char *bytes = read_file(names[0], &size);
    assert_true(size < 8 || memcmp(bytes + size - 8, "trailing", 8) != 0);
    free(bytes);
}

/* Item 4 of issue 8: the cache is off, with a message naming the directory, in a directory that
   group or others can write; plans still work, and nothing is written there. */
static void test_group_writable_dir_refused(void **state)
{
    (void)state;
    const mode_t modes[] = {0770, 0707, 0777};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; ++i) {
        assert_int_equal(chmod(dir, modes[i]), 0);
        clsa_context *ctx = cache_context(dir);
        const char *why = clsa_context_last_error(ctx);
        if (!strstr(why, dir) || !strstr(why, "writable"))
            fail_msg("mode %o: no message says the cache directory was refused (last error: \"%s\")",
                     (unsigned)modes[i], why);
        check_dense(ctx, 24);
        clsa_context_release(ctx);
        assert_int_equal(count_files(dir), 0);
    }
}

/* Item 4 of issue 8: the cache is off in a directory another user owns (root included: the test
   hands its directory to nobody when run as root). */
static void test_foreign_owned_dir_refused(void **state)
{
    (void)state;
    const char *foreign = "/"; /* owned by root, so by someone else unless we are root */
    if (geteuid() == 0) {
        assert_int_equal(chown(dir, 65534, 65534), 0);
        foreign = dir;
    }
    clsa_context *ctx = cache_context(foreign);
    const char *why = clsa_context_last_error(ctx);
    if (!strstr(why, foreign) || !strstr(why, "owned"))
        fail_msg("no message says the cache directory was refused (last error: \"%s\")", why);
    check_dense(ctx, 24);
    clsa_context_release(ctx);
    if (geteuid() == 0)
        assert_int_equal(count_files(dir), 0);
}

/* A cache directory that cannot be made, or a file in its place, turns the cache off with a
   message; plans still work. */
static void test_unusable_dir_turns_cache_off(void **state)
{
    (void)state;
    char missing_parent[512], file[512];
    snprintf(missing_parent, sizeof missing_parent, "%s/no/such/parent", dir);
    snprintf(file, sizeof file, "%s/a-file", dir);
    write_file(file, "x", 1);
    const char *paths[] = {missing_parent, file};
    for (int i = 0; i < 2; ++i) {
        clsa_context *ctx = cache_context(paths[i]);
        const char *why = clsa_context_last_error(ctx);
        if (!strstr(why, paths[i]))
            fail_msg("no message says the cache directory %s was refused (last error: \"%s\")", paths[i], why);
        check_dense(ctx, 24);
        clsa_context_release(ctx);
    }
    assert_int_equal(count_files(dir), 1);
}

/* Item 5 of issue 8: the directory clsa makes is 0700 and its entries 0600, whatever the umask. */
static void test_created_dir_is_0700(void **state)
{
    (void)state;
    char made[512], names[MAX_ENTRIES][512];
    snprintf(made, sizeof made, "%s/made-by-clsa", dir);
    mode_t old_mask = umask(0);
    run_once_in(made, 24);
    umask(old_mask);
    struct stat st;
    assert_int_equal(stat(made, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    int n = list_entries(made, names, MAX_ENTRIES);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; ++i) {
        assert_int_equal(stat(names[i], &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
    }
}

/* Item 5 of issue 8: a symlink at an entry's path is not followed, even to a valid entry: the
   link is replaced by a fresh entry, and its target is left as it was. */
static void test_symlink_entry_not_followed(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512], targets[2][600];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), 2);
    size_t sizes[2];
    unsigned char *kept[2];
    for (int i = 0; i < 2; ++i) {
        snprintf(targets[i], sizeof targets[i], "%s/%s", outside, strrchr(names[i], '/') + 1);
        assert_int_equal(rename(names[i], targets[i]), 0);
        assert_int_equal(symlink(targets[i], names[i]), 0);
        kept[i] = read_file(targets[i], &sizes[i]);
    }
    run_once_in(dir, 24);
    for (int i = 0; i < 2; ++i) {
        struct stat st;
        assert_int_equal(lstat(names[i], &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_true(entry_is_valid(names[i]));
        assert_true(same_bytes(targets[i], kept[i], sizes[i]));
        free(kept[i]);
    }
}

/* Item 5 of issue 8: a symlink planted where the temporary file used to go (the entry's path,
   the pid and ".tmp") does not make clsa overwrite its target. */
static void test_planted_temp_symlink_leaves_target_unchanged(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512], planted[2][600], victim[600];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), 2);
    const char precious[] = "a file the attacker wants overwritten";
    snprintf(victim, sizeof victim, "%s/victim", outside);
    write_file(victim, precious, sizeof precious);
    for (int i = 0; i < 2; ++i) {
        assert_int_equal(unlink(names[i]), 0);
        snprintf(planted[i], sizeof planted[i], "%.511s.%ld.tmp", names[i], (long)getpid());
        assert_int_equal(symlink(victim, planted[i]), 0);
    }
    run_once_in(dir, 24);
    assert_true(same_bytes(victim, (const unsigned char *)precious, sizeof precious));
    for (int i = 0; i < 2; ++i) {
        unlink(planted[i]);
        struct stat st;
        assert_int_equal(lstat(names[i], &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_true(entry_is_valid(names[i]));
    }
}

/* Watches FIFOs while a plan is made: a FIFO that has a reader means clsa opened it and would
   block until a writer comes. The watchdog then opens it for writing (and closes it at once), which
   ends the wait, so the test fails instead of hanging. */
typedef struct fifo_watch {
    char (*paths)[512];
    int count;
    atomic_bool stop, reader_blocked;
} fifo_watch;

static void *watch_fifos(void *arg)
{
    fifo_watch *w = arg;
    const struct timespec tick = {0, 20 * 1000 * 1000};
    while (!atomic_load(&w->stop)) {
        for (int i = 0; i < w->count; ++i) {
            int fd = open(w->paths[i], O_WRONLY | O_NONBLOCK);
            struct stat st;
            if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
                atomic_store(&w->reader_blocked, true);
            if (fd >= 0)
                close(fd);
        }
        nanosleep(&tick, NULL);
    }
    return NULL;
}

/* Item 6 of issue 8: a FIFO at an entry's path is no entry: plan creation does not wait on it,
   succeeds, and replaces it with a fresh entry. */
static void test_fifo_entry_does_not_hang(void **state)
{
    (void)state;
    char names[MAX_ENTRIES][512];
    run_once_in(dir, 24);
    assert_int_equal(list_entries(dir, names, MAX_ENTRIES), 2);
    for (int i = 0; i < 2; ++i) {
        assert_int_equal(unlink(names[i]), 0);
        assert_int_equal(mkfifo(names[i], 0600), 0);
    }
    fifo_watch w = {.paths = names, .count = 2};
    atomic_init(&w.stop, false);
    atomic_init(&w.reader_blocked, false);
    pthread_t watchdog;
    assert_int_equal(pthread_create(&watchdog, NULL, watch_fifos, &w), 0);
    run_once_in(dir, 24);
    atomic_store(&w.stop, true);
    pthread_join(watchdog, NULL);
    assert_false(atomic_load(&w.reader_blocked));
    for (int i = 0; i < 2; ++i) {
        struct stat st;
        assert_int_equal(lstat(names[i], &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_true(entry_is_valid(names[i]));
    }
}

int main(void)
{
    harness_init("cache");
#define CACHE_TEST(name) cmocka_unit_test_setup_teardown(name, make_dirs, remove_dirs)
    const struct CMUnitTest tests[] = {
        CACHE_TEST(test_entries_reused_and_corrupt_ones_rebuilt),
        CACHE_TEST(test_entry_copied_over_other_key_is_rebuilt),
        CACHE_TEST(test_truncated_payload_never_reaches_driver),
        CACHE_TEST(test_entry_with_trailing_bytes_is_rebuilt),
        CACHE_TEST(test_group_writable_dir_refused),
        CACHE_TEST(test_foreign_owned_dir_refused),
        CACHE_TEST(test_unusable_dir_turns_cache_off),
        CACHE_TEST(test_created_dir_is_0700),
        CACHE_TEST(test_symlink_entry_not_followed),
        CACHE_TEST(test_planted_temp_symlink_leaves_target_unchanged),
        CACHE_TEST(test_fifo_entry_does_not_hang),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

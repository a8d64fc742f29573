/*
 * Opt-in on-disk cache of program binaries.
 *
 * An entry is <dir>/<key>.clbin, where the key is an XXH3-128 hash of everything that could
 * change the binary: the source, the build options, the device name, the driver, device and
 * platform versions and the clsa version. The file is a header, then the payload (the binary).
 * The header repeats the key, with a second, differently seeded XXH3-128 of the same material,
 * so an entry copied under another key's name is not taken for that key's program; and it gives
 * the payload's size and XXH3-64, checked against the file's length and bytes before the driver
 * sees any of it (PoCL crashes on a truncated binary). An entry that fails a check, or fails to
 * load or build, is ignored and rebuilt from source, without an error.
 *
 * No check can stop someone who can write the directory: they can write a well-formed entry for
 * any key. So the cache trusts its directory, and clsa uses only one that the user owns and that
 * group and others cannot write. Inside it, clsa reads only regular files and never follows a
 * link (a FIFO would block the read, a link could lead anywhere), and writes each entry to a
 * fresh mkstemp file that it renames into place.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CACHE_MAGIC "CLSABIN2"
/* Seed of the second hash of the key material; the first, which names the entry, has seed 0. */
#define KEY_CHECK_SEED 0x636c7361u

typedef struct cache_key {
    XXH128_hash_t name;  /* names the entry's file */
    XXH128_hash_t check; /* the same material, hashed with KEY_CHECK_SEED */
} cache_key;

/* The payload's size and hash sit at bytes 8 and 16, where the first format (CLSABIN1) had them. */
typedef struct cache_header {
    char magic[8];
    uint64_t payload_size;
    uint64_t payload_hash; /* XXH3-64 of the payload */
    cache_key key;
} cache_header;

#define TRUST_RULE "; clsa trusts only a directory that its user owns and that group and others cannot write"

clsa_status clsa_cache_open(clsa_context *ctx, const char *dir)
{
    char why[256] = "";
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        snprintf(why, sizeof why, "cannot be created (%s)", strerror(errno));
    else if (stat(dir, &st) != 0)
        snprintf(why, sizeof why, "cannot be examined (%s)", strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        snprintf(why, sizeof why, "is not a directory");
    else if (st.st_uid != geteuid())
        snprintf(why, sizeof why, "is owned by uid %ld, not by this process's user (uid %ld)%s", (long)st.st_uid,
                 (long)geteuid(), TRUST_RULE);
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        snprintf(why, sizeof why, "is writable by group or others (mode %03o)%s", (unsigned)(st.st_mode & 0777),
                 TRUST_RULE);
    if (why[0]) {
        /* The context still works, only uncached; the message is all that tells the user why. */
        clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "cache directory \"%s\" %s, so the program cache is off for this context",
                  dir, why);
        fprintf(stderr, "clsa: %s\n", ctx->last_error);
        return CLSA_SUCCESS;
    }
    ctx->cache_dir = strdup(dir);
    if (!ctx->cache_dir)
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the cache directory's name");
    return CLSA_SUCCESS;
}

static void hash_field(XXH3_state_t *state, const char *text)
{
    /* The length first, so that ("ab","c") and ("a","bc") hash differently. */
    uint64_t len = strlen(text);
    XXH3_128bits_update(state, &len, sizeof len);
    XXH3_128bits_update(state, text, len);
}

static bool make_key(clsa_context *ctx, const char *source, const char *options, cache_key *key)
{
    XXH3_state_t *state = XXH3_createState();
    if (!state)
        return false;
    const char *fields[] = {source, options, ctx->caps.name, ctx->caps.driver_version,
                            ctx->caps.device_version, ctx->caps.platform_version, clsa_version()};
    const XXH64_hash_t seeds[2] = {0, KEY_CHECK_SEED};
    XXH128_hash_t *digests[2] = {&key->name, &key->check};
    for (int d = 0; d < 2; ++d) {
        XXH3_128bits_reset_withSeed(state, seeds[d]);
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; ++i)
            hash_field(state, fields[i]);
        *digests[d] = XXH3_128bits_digest(state);
    }
    XXH3_freeState(state);
    return true;
}

/* <dir>/<key's name hash in hex><suffix>. Caller frees. */
static char *key_path(const char *dir, const cache_key *key, const char *suffix)
{
    size_t n = strlen(dir) + 34 + strlen(suffix);
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%016llx%016llx%s", dir, (unsigned long long)key->name.high64,
                 (unsigned long long)key->name.low64, suffix);
    return path;
}

char *clsa_cache_entry_path(clsa_context *ctx, const char *source, const char *options)
{
    cache_key key;
    if (!ctx->cache_dir || !make_key(ctx, source, options, &key))
        return NULL;
    return key_path(ctx->cache_dir, &key, ".clbin");
}

/* read() and write() may move fewer bytes than asked: these loop, and fail on an error or EOF. */
static bool read_all(int fd, void *buf, size_t n)
{
    unsigned char *at = buf;
    while (n > 0) {
        ssize_t done = read(fd, at, n);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0)
            return false;
        at += done;
        n -= (size_t)done;
    }
    return true;
}

static bool write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *at = buf;
    while (n > 0) {
        ssize_t done = write(fd, at, n);
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0)
            return false;
        at += done;
        n -= (size_t)done;
    }
    return true;
}

/* The header is clsa's, for this key, and its payload fills the rest of the file exactly. */
static bool header_matches(const cache_header *header, const cache_key *key, off_t file_size)
{
    return memcmp(header->magic, CACHE_MAGIC, 8) == 0 && XXH128_isEqual(header->key.name, key->name) &&
           XXH128_isEqual(header->key.check, key->check) && header->payload_size > 0 &&
           (uint64_t)file_size >= sizeof *header && (uint64_t)file_size - sizeof *header == header->payload_size;
}

/* The payload of the entry at path when it is what clsa wrote for key, else NULL. */
static unsigned char *read_entry(const char *path, const cache_key *key, size_t *size)
{
    /* O_NOFOLLOW: a link may lead anywhere. O_NONBLOCK: opening a FIFO to read waits for a
       writer; open returns at once with it, and the S_ISREG check turns the FIFO away. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    cache_header header;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read_all(fd, &header, sizeof header) &&
              header_matches(&header, key, st.st_size);
    unsigned char *payload = ok ? malloc(header.payload_size) : NULL;
    ok = payload && read_all(fd, payload, header.payload_size) &&
         XXH3_64bits(payload, header.payload_size) == header.payload_hash;
    close(fd);
    if (!ok) {
        free(payload);
        return NULL;
    }
    *size = header.payload_size;
    return payload;
}

cl_program clsa_cache_load(clsa_context *ctx, const char *source, const char *options)
{
    cache_key key;
    char *path = make_key(ctx, source, options, &key) ? key_path(ctx->cache_dir, &key, ".clbin") : NULL;
    if (!path)
        return NULL;
    size_t size = 0;
    unsigned char *binary = read_entry(path, &key, &size);
    free(path);
    if (!binary)
        return NULL;
    cl_int status = CL_SUCCESS, err = CL_SUCCESS;
    const unsigned char *bins[1] = {binary};
    cl_program program = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size, bins, &status, &err);
    free(binary);
    if (err || status) {
        if (program)
            clReleaseProgram(program);
        return NULL;
    }
    if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

/* Writes the entry to a fresh file beside it and renames that into place. mkstemp makes the file
   itself (O_EXCL, mode 0600), so nothing planted under a guessed name is followed; rename()
   replaces a link at the entry's path rather than writing through it, and is atomic: readers see
   the old entry or the whole new one, never a part. */
static void write_entry(const char *dir, const cache_key *key, const unsigned char *binary, size_t size)
{
    char *path = key_path(dir, key, ".clbin");
    char *tmp = key_path(dir, key, ".tmp.XXXXXX");
    int fd = path && tmp ? mkstemp(tmp) : -1;
    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC); /* not inherited by a program another thread starts */
        cache_header header = {.payload_size = size, .payload_hash = XXH3_64bits(binary, size), .key = *key};
        memcpy(header.magic, CACHE_MAGIC, 8);
        bool ok = write_all(fd, &header, sizeof header) && write_all(fd, binary, size);
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, path) != 0)
            unlink(tmp);
    }
    free(path);
    free(tmp);
}

void clsa_cache_store(clsa_context *ctx, cl_program program, const char *source, const char *options)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return;
    unsigned char *binary = malloc(size);
    unsigned char *bins[1] = {binary};
    cache_key key;
    if (binary && make_key(ctx, source, options, &key) &&
        clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS)
        write_entry(ctx->cache_dir, &key, binary, size);
    free(binary);
}

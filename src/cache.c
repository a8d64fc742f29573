/*
 * Opt-in on-disk cache of program binaries.
 *
 * An entry is <dir>/<xxh3-128 hex>.clbin. Its key hashes everything that could change the
 * binary: the source, the build options, the device name, the driver, device and platform
 * versions and the clsa version. The file holds a header (magic, payload size, XXH3-64 of the
 * payload) so truncated or corrupted entries are detected before they reach the driver; any entry
 * that fails to load or build is ignored and rebuilt from source, without an error.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CACHE_MAGIC "CLSABIN1"

typedef struct cache_header {
    char magic[8];
    uint64_t payload_size;
    uint64_t payload_hash;
} cache_header;

static void hash_field(XXH3_state_t *state, const char *text)
{
    /* The length first, so that ("ab","c") and ("a","bc") hash differently. */
    uint64_t len = strlen(text);
    XXH3_128bits_update(state, &len, sizeof len);
    XXH3_128bits_update(state, text, len);
}

char *clsa_cache_entry_path(clsa_context *ctx, const char *source, const char *options)
{
    if (!ctx->cache_dir)
        return NULL;
    XXH3_state_t *state = XXH3_createState();
    if (!state)
        return NULL;
    XXH3_128bits_reset(state);
    const char *fields[] = {source, options, ctx->caps.name, ctx->caps.driver_version,
                            ctx->caps.device_version, ctx->caps.platform_version, clsa_version()};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; ++i)
        hash_field(state, fields[i]);
    XXH128_hash_t h = XXH3_128bits_digest(state);
    XXH3_freeState(state);
    size_t n = strlen(ctx->cache_dir) + 64;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%016llx%016llx.clbin", ctx->cache_dir, (unsigned long long)h.high64,
                 (unsigned long long)h.low64);
    return path;
}

static unsigned char *read_entry(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    cache_header header;
    unsigned char *payload = NULL;
    if (fread(&header, sizeof header, 1, f) == 1 && memcmp(header.magic, CACHE_MAGIC, 8) == 0 &&
        header.payload_size > 0 && header.payload_size < ((uint64_t)1 << 31)) {
        payload = malloc(header.payload_size);
        if (payload && (fread(payload, 1, header.payload_size, f) != header.payload_size ||
                        XXH3_64bits(payload, header.payload_size) != header.payload_hash)) {
            free(payload);
            payload = NULL;
        }
    }
    fclose(f);
    if (payload)
        *size = header.payload_size;
    return payload;
}

cl_program clsa_cache_load(clsa_context *ctx, const char *source, const char *options)
{
    char *path = clsa_cache_entry_path(ctx, source, options);
    if (!path)
        return NULL;
    size_t size = 0;
    unsigned char *binary = read_entry(path, &size);
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

void clsa_cache_store(clsa_context *ctx, cl_program program, const char *source, const char *options)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return;
    unsigned char *binary = malloc(size);
    char *path = clsa_cache_entry_path(ctx, source, options);
    char *tmp = path ? malloc(strlen(path) + 32) : NULL;
    unsigned char *bins[1] = {binary};
    if (binary && tmp && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        mkdir(ctx->cache_dir, 0755); /* EEXIST is fine; other failures show up at fopen */
        snprintf(tmp, strlen(path) + 32, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            cache_header header;
            memcpy(header.magic, CACHE_MAGIC, 8);
            header.payload_size = size;
            header.payload_hash = XXH3_64bits(binary, size);
            bool ok = fwrite(&header, sizeof header, 1, f) == 1 && fwrite(binary, 1, size, f) == size;
            ok = (fclose(f) == 0) && ok;
            /* rename() is atomic: readers see the old entry or the whole new one, never a part. */
            if (!ok || rename(tmp, path) != 0)
                unlink(tmp);
        }
    }
    free(binary);
    free(path);
    free(tmp);
}

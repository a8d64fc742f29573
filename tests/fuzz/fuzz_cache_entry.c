/*
 * libFuzzer target: the program binary cache's entry loader (src/cache.c) on arbitrary files at
 * an entry's path. The first input byte picks the file: 0 writes the rest of the input as it is;
 * otherwise the input patches a real entry that clsa wrote for the same key (byte offsets and
 * values, then a truncation length), so the checks of a well-formed header are reached too. A
 * load must either give a working program or NULL; the fuzzer's sanitizers catch the rest.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static clsa_context *ctx;
static char *entry_path;
static unsigned char *real_entry;
static size_t real_size;
static const char *stage_source = "__kernel void k(__global int *x) { x[get_global_id(0)] = 7; }";
static char options[512];
static char *source; /* the common header + stage_source, as the cache keys it */

static char *cache_dir;

static void remove_cache(void)
{
    unlink(entry_path);
    rmdir(cache_dir);
}

static void setup(void)
{
    /* In memory where possible: every input is written to the entry file and read back. */
    static char dir[] = "/dev/shm/clsa-fuzz-cache-XXXXXX", fallback[] = "/tmp/clsa-fuzz-cache-XXXXXX";
    const char *made = mkdtemp(dir) ? dir : mkdtemp(fallback);
    if (!made)
        abort();
    cache_dir = (char *)made;
    clsa_context_options opt = {0};
    opt.cache_dir = made;
    if (clsa_context_create_default(&opt, &ctx) != CLSA_SUCCESS)
        abort();
    const clsa_shape shape = clsa_shape_make(1, 1, 1, 16, 16, 16, CLSA_F32, 1);
    clsa_defines fuzz = {0};
    clsa_define(&fuzz, "CLSA_FUZZ", 1);
    if (clsa_build_options(ctx, options, sizeof options, &shape, 0, &fuzz) != CLSA_SUCCESS)
        abort();
    cl_program p = NULL;
    if (clsa_program_get(ctx, "fuzz", stage_source, options, &p) != CLSA_SUCCESS)
        abort(); /* builds and stores the real entry */
    source = malloc(strlen(clsa_cl_common) + strlen(stage_source) + 2);
    sprintf(source, "%s\n%s", clsa_cl_common, stage_source);
    entry_path = clsa_cache_entry_path(ctx, source, options);
    FILE *f = entry_path ? fopen(entry_path, "rb") : NULL;
    if (!f)
        abort();
    fseek(f, 0, SEEK_END);
    real_size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    real_entry = malloc(real_size);
    if (!real_entry || fread(real_entry, 1, real_size, f) != real_size)
        abort();
    fclose(f);
    atexit(remove_cache);
    cl_program loaded = clsa_cache_load(ctx, source, options);
    if (!loaded)
        abort(); /* the entry clsa wrote must load */
    clReleaseProgram(loaded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        setup();
    if (size == 0)
        return 0;
    unsigned char *file = NULL;
    size_t file_size = 0;
    if (data[0] == 0) {
        file = malloc(size);
        memcpy(file, data + 1, size - 1);
        file_size = size - 1;
    } else {
        file = malloc(real_size);
        memcpy(file, real_entry, real_size);
        file_size = real_size;
        size_t at = 1;
        for (; at + 3 <= size && data[at] != 0xFF; at += 3) { /* patches: 16-bit offset, value */
            const size_t where = ((size_t)data[at] | (size_t)data[at + 1] << 8) % real_size;
            file[where] = data[at + 2];
        }
        if (at + 3 <= size) /* after the 0xFF marker: a truncation length */
            file_size = ((size_t)data[at + 1] | (size_t)data[at + 2] << 8) % (real_size + 1);
    }
    /* The real entry itself loads (setup checked that); driving the OpenCL compiler again for each
       copy of it would only slow the search, so it is skipped. */
    if (file_size == real_size && memcmp(file, real_entry, real_size) == 0) {
        free(file);
        return 0;
    }
    FILE *f = fopen(entry_path, "wb");
    if (!f || fwrite(file, 1, file_size, f) != file_size)
        abort();
    fclose(f);
    free(file);
    cl_program p = clsa_cache_load(ctx, source, options);
    if (p)
        clReleaseProgram(p);
    return 0;
}

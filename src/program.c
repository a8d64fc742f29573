/* Building kernel programs: the common header is prepended to each embedded stage source. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *join_source(const char *source)
{
    size_t a = strlen(clsa_cl_common), b = strlen(source);
    char *all = malloc(a + b + 2);
    if (!all)
        return NULL;
    memcpy(all, clsa_cl_common, a);
    all[a] = '\n';
    memcpy(all + a + 1, source, b + 1);
    return all;
}

static clsa_status build_failed(clsa_context *ctx, cl_program program, cl_int err,
                                const char *source_name, const char *options)
{
    size_t log_size = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size) == CL_SUCCESS &&
        (log = malloc(log_size + 1)) != NULL) {
        clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
        log[log_size] = '\0';
    }
    clsa_status st = clsa_fail(ctx, CLSA_ERR_BUILD_FAILED,
                               "building cl/%s.cl failed (%s) on device \"%s\" with options \"%s\"; build log:\n%s",
                               source_name, clsa_status_string((clsa_status)err), ctx->caps.name, options,
                               log ? log : "(no log)");
    free(log);
    return st;
}

static clsa_status build_from_source(clsa_context *ctx, const char *source_name, const char *source,
                                     const char *options, cl_program *out)
{
    cl_int err = CL_SUCCESS;
    cl_program program = clCreateProgramWithSource(ctx->cl_ctx, 1, &source, NULL, &err);
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "clCreateProgramWithSource for cl/%s.cl", source_name);
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    if (err) {
        clsa_status st = build_failed(ctx, program, err, source_name, options);
        clReleaseProgram(program);
        return st;
    }
    *out = program;
    return CLSA_SUCCESS;
}

clsa_status clsa_program_get(clsa_context *ctx, const char *source_name, const char *source,
                             const char *options, cl_program *out)
{
    for (clsa_program_entry *e = ctx->programs; e; e = e->next) {
        if (strcmp(e->source_name, source_name) == 0 && strcmp(e->options, options) == 0) {
            *out = e->program;
            return CLSA_SUCCESS;
        }
    }
    clsa_program_entry *entry = calloc(1, sizeof *entry);
    char *full = join_source(source);
    if (!entry || !full || !(entry->options = strdup(options))) {
        free(full);
        if (entry)
            free(entry->options);
        free(entry);
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the kernel source");
    }
    cl_program program = ctx->cache_dir ? clsa_cache_load(ctx, full, options) : NULL;
    clsa_status st = CLSA_SUCCESS;
    if (!program) {
        st = build_from_source(ctx, source_name, full, options, &program);
        if (!st && ctx->cache_dir)
            clsa_cache_store(ctx, program, full, options);
    }
    free(full);
    if (st) {
        free(entry->options);
        free(entry);
        return st;
    }
    entry->source_name = source_name;
    entry->program = program;
    entry->next = ctx->programs;
    ctx->programs = entry;
    *out = program;
    return CLSA_SUCCESS;
}

void clsa_programs_release(clsa_context *ctx)
{
    clsa_program_entry *e = ctx->programs;
    while (e) {
        clsa_program_entry *next = e->next;
        clReleaseProgram(e->program);
        free(e->options);
        free(e);
        e = next;
    }
    ctx->programs = NULL;
}

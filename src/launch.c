/*
 * Kernel launching, below every stage: build options from the device's capabilities and the
 * stage's parameters (the one place that writes them), program and kernel creation with the
 * resource checks that reject a variant before launch, kernel arguments, and enqueueing.
 * Calls go downward only: plan.c -> the stage files -> launch.c -> program.c.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

void clsa_define(clsa_defines *d, const char *name, int value)
{
    /* The stages add at most a dozen; more is a programming error, caught by the tests. */
    if (d->count < CLSA_DEFINES_MAX) {
        d->items[d->count].name = name;
        d->items[d->count].value = value;
    }
    d->count++;
}

clsa_status clsa_build_options(clsa_context *ctx, char *buf, size_t size, const clsa_shape *shape, unsigned features,
                               const clsa_defines *defines)
{
    if (defines && defines->count > CLSA_DEFINES_MAX)
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "%d kernel parameters, more than the %d a build takes",
                         defines->count, CLSA_DEFINES_MAX);
    const clsa_device_info *c = &ctx->caps;
    const struct { unsigned bit; bool present; const char *define, *what; } wanted[] = {
        {CLSA_FEATURE_FP16, c->has_fp16, "USE_FP16", "half arithmetic (cl_khr_fp16)"},
        {CLSA_FEATURE_SUBGROUPS, c->has_subgroups, "USE_SUBGROUPS", "sub-groups (cl_khr_subgroups)"},
        {CLSA_FEATURE_INT_DOT, (c->integer_dot_product & CLSA_INT_DOT_4X8_PACKED) != 0, "USE_INT_DOT",
         "packed 4x8-bit integer dot products (cl_khr_integer_dot_product)"},
    };
    char flags[128] = "";
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; ++i) {
        const bool on = (features & wanted[i].bit) != 0;
        if (on && !wanted[i].present)
            return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED, "this kernel variant needs %s, which device \"%s\" lacks",
                             wanted[i].what, c->name);
        size_t used = strlen(flags);
        snprintf(flags + used, sizeof flags - used, " -D%s=%d", wanted[i].define, on ? 1 : 0);
    }
    /* OpenCL C 1.2 everywhere (PoCL here and oclgrind know no later), except for a variant that uses
       a feature whose built-ins some compilers declare only in a later language version (Intel's
       runtime declares the integer dot products for OpenCL C 3.0 alone). */
    int major = 1, minor = 2;
    const bool later = features && sscanf(c->c_version, "OpenCL C %d.%d", &major, &minor) == 2 && major >= 3;
    int n = snprintf(buf, size, "-cl-std=%s -DCLSA_DTYPE=%d -DHEAD_DIM=%lld -DQUANT_GROUP=%d%s",
                     later ? "CL3.0" : "CL1.2", (int)shape->dtype, (long long)shape->head_dim, CLSA_QUANT_GROUP, flags);
    for (int i = 0; defines && i < defines->count && n >= 0 && (size_t)n < size; ++i)
        n += snprintf(buf + n, size - (size_t)n, " -D%s=%d", defines->items[i].name, defines->items[i].value);
    if (n < 0 || (size_t)n >= size)
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "the build options do not fit in %zu bytes", size);
    return CLSA_SUCCESS;
}

clsa_status clsa_stage_kernels(clsa_context *ctx, const char *source_name, const char *source, const clsa_shape *shape,
                               unsigned features, const clsa_defines *defines, const char *const *names,
                               cl_kernel *const *kernels, int count)
{
    char options[768];
    clsa_status st = clsa_build_options(ctx, options, sizeof options, shape, features, defines);
    cl_program program;
    if (!st)
        st = clsa_program_get(ctx, source_name, source, options, &program);
    for (int i = 0; !st && i < count; ++i) {
        cl_int err = CL_SUCCESS;
        *kernels[i] = clCreateKernel(program, names[i], &err);
        if (err)
            st = clsa_fail(ctx, (clsa_status)err, "clCreateKernel(%s)", names[i]);
    }
    return st;
}

clsa_status clsa_kernel_fits(clsa_context *ctx, cl_kernel kernel, const char *name, size_t local_items)
{
    size_t max_items = 0;
    cl_ulong local_bytes = 0, private_bytes = 0;
    cl_int err = clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof max_items, &max_items, NULL);
    if (!err)
        err = clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local_bytes, &local_bytes, NULL);
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "querying the resources of kernel %s", name);
    /* Drivers lower CL_KERNEL_WORK_GROUP_SIZE when a kernel's registers or private memory would not
       fit a larger group, so this check also rejects private state that is too large. */
    if (local_items > max_items)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                         "kernel %s needs work-groups of %zu work-items; device \"%s\" runs it with at most %zu "
                         "(its registers, private or local memory)",
                         name, local_items, ctx->caps.name, max_items);
    if (local_bytes > ctx->caps.local_mem_size)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED, "kernel %s needs %llu bytes of local memory; device \"%s\" has %llu",
                         name, (unsigned long long)local_bytes, ctx->caps.name, (unsigned long long)ctx->caps.local_mem_size);
    /* Private memory per work-group, where the device reports it: CPU runtimes keep a work-group's
       private arrays on one thread's stack. */
    if (!clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof private_bytes, &private_bytes,
                                  NULL) &&
        private_bytes * local_items > CLSA_PRIVATE_BUDGET)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                         "kernel %s needs %llu bytes of private memory per work-item, %llu per work-group of %zu: "
                         "more than clsa's budget of %d",
                         name, (unsigned long long)private_bytes, (unsigned long long)(private_bytes * local_items),
                         local_items, CLSA_PRIVATE_BUDGET);
    return CLSA_SUCCESS;
}

clsa_status clsa_enqueue(clsa_context *ctx, cl_command_queue queue, cl_kernel kernel, const char *name,
                         const size_t global[2], const size_t *local, cl_uint num_wait, const cl_event *wait_list,
                         cl_event *out)
{
    /* The global size is padded to a multiple of the local size; every kernel bounds-checks. */
    size_t padded[2] = {global[0], global[1]};
    for (int d = 0; local && d < 2; ++d)
        padded[d] = (global[d] + local[d] - 1) / local[d] * local[d];
    cl_int err = clEnqueueNDRangeKernel(queue, kernel, 2, NULL, padded, local, num_wait, wait_list, out);
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "enqueueing kernel %s", name);
    return CLSA_SUCCESS;
}

void clsa_arg(clsa_args *a, size_t size, const void *value)
{
    if (a->err == CL_SUCCESS)
        a->err = clSetKernelArg(a->kernel, a->index, size, value);
    a->index++;
}

void clsa_arg_tensor(clsa_args *a, cl_mem buffer, const clsa_tensor_layout *t)
{
    const cl_long strides[3] = {t->batch, t->head, t->token};
    CLSA_ARG(a, buffer);
    for (int i = 0; i < 3; ++i)
        CLSA_ARG(a, strides[i]);
}

cl_float clsa_scale_log2e(const clsa_shape *shape) { return (cl_float)(shape->scale * 1.4426950408889634); }

void clsa_arg_mask(clsa_args *a, const clsa_block_mask *mask)
{
    const cl_long counts_at = (cl_long)(mask->counts_offset / 4), indices_at = (cl_long)(mask->indices_offset / 4);
    CLSA_ARG(a, mask->counts);
    CLSA_ARG(a, counts_at);
    CLSA_ARG(a, mask->indices);
    CLSA_ARG(a, indices_at);
}

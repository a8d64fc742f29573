/* Context creation on the caller's OpenCL objects, device picking and capability reading. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Extension queries, in case the OpenCL headers predate them (values from the Khronos registry). */
#ifndef CL_DEVICE_SUB_GROUP_SIZES_INTEL
#define CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108
#endif
#ifndef CL_DEVICE_MAX_NUM_SUB_GROUPS
#define CL_DEVICE_MAX_NUM_SUB_GROUPS 0x105C
#endif
#ifndef CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR
#define CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR 0x1073
#endif

static cl_int read_string(cl_device_id device, cl_device_info what, char *buf, size_t size)
{
    cl_int err = clGetDeviceInfo(device, what, size, buf, NULL);
    buf[size - 1] = '\0';
    return err;
}

/* Whether the space-separated list holds `name` as a whole word. */
static bool has_extension(const char *list, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static clsa_status read_caps(clsa_context *ctx)
{
    clsa_device_caps *caps = &ctx->caps;
    cl_device_id d = ctx->device;
    cl_int err = read_string(d, CL_DEVICE_NAME, caps->name, sizeof caps->name);
    if (!err) err = read_string(d, CL_DEVICE_VENDOR, caps->vendor, sizeof caps->vendor);
    if (!err) err = read_string(d, CL_DRIVER_VERSION, caps->driver_version, sizeof caps->driver_version);
    if (!err) err = read_string(d, CL_DEVICE_VERSION, caps->device_version, sizeof caps->device_version);
    if (!err) err = read_string(d, CL_DEVICE_OPENCL_C_VERSION, caps->c_version, sizeof caps->c_version);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof caps->type, &caps->type, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof caps->local_mem_size, &caps->local_mem_size, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof caps->max_mem_alloc, &caps->max_mem_alloc, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof caps->max_work_group_size, &caps->max_work_group_size, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof caps->native_float_width, &caps->native_float_width, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof caps->compute_units, &caps->compute_units, NULL);
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL);
    if (!err) {
        err = clGetPlatformInfo(ctx->platform, CL_PLATFORM_VERSION, sizeof caps->platform_version, caps->platform_version, NULL);
        caps->platform_version[sizeof caps->platform_version - 1] = '\0';
    }
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "reading the device's capabilities failed");
    /* The extensions are read for features, never required: a device that fails to report them
       is used without any. */
    size_t ext_size = 0;
    err = clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size);
    ctx->extensions = calloc(err ? 1 : ext_size + 1, 1);
    if (!ctx->extensions)
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the device's extension list");
    if (!err && clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_size, ctx->extensions, NULL))
        ctx->extensions[0] = '\0';
    const char *ext = ctx->extensions;
    caps->has_fp64 = has_extension(ext, "cl_khr_fp64");
    caps->has_fp16 = has_extension(ext, "cl_khr_fp16");
    caps->has_subgroups = has_extension(ext, "cl_khr_subgroups");
    /* OpenCL 2.1 made sub-groups core, and 3.0 optional again: a device that can run any reports
       CL_DEVICE_MAX_NUM_SUB_GROUPS > 0. Older versions do not know the query. */
    int major = 0, minor = 0;
    cl_uint max_sub_groups = 0;
    if (sscanf(caps->device_version, "OpenCL %d.%d", &major, &minor) == 2 && (major > 2 || (major == 2 && minor >= 1)) &&
        !clGetDeviceInfo(d, CL_DEVICE_MAX_NUM_SUB_GROUPS, sizeof max_sub_groups, &max_sub_groups, NULL))
        caps->has_subgroups = caps->has_subgroups || max_sub_groups > 0;
    caps->has_intel_subgroups = has_extension(ext, "cl_intel_subgroups");
    caps->has_intel_required_subgroup_size = has_extension(ext, "cl_intel_required_subgroup_size");
    caps->has_integer_dot_product = has_extension(ext, "cl_khr_integer_dot_product");
    size_t sizes_bytes = 0;
    if (caps->has_intel_required_subgroup_size &&
        !clGetDeviceInfo(d, CL_DEVICE_SUB_GROUP_SIZES_INTEL, 0, NULL, &sizes_bytes) && sizes_bytes > 0) {
        size_t sizes[64];
        if (sizes_bytes <= sizeof sizes && !clGetDeviceInfo(d, CL_DEVICE_SUB_GROUP_SIZES_INTEL, sizes_bytes, sizes, NULL)) {
            const size_t n = sizes_bytes / sizeof sizes[0];
            caps->num_subgroup_sizes = (cl_uint)(n < 8 ? n : 8);
            memcpy(caps->subgroup_sizes, sizes, caps->num_subgroup_sizes * sizeof sizes[0]);
        }
    }
    cl_ulong dot = 0; /* cl_device_integer_dot_product_capabilities_khr is a cl_bitfield */
    if (caps->has_integer_dot_product &&
        !clGetDeviceInfo(d, CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR, sizeof dot, &dot, NULL))
        caps->integer_dot_product = (cl_uint)(dot & (CLSA_INT_DOT_4X8_PACKED | CLSA_INT_DOT_4X8));
    return CLSA_SUCCESS;
}

static clsa_status resolve_style(clsa_context *ctx, clsa_kernel_style requested)
{
    if (requested != CLSA_STYLE_AUTO && requested != CLSA_STYLE_CPU && requested != CLSA_STYLE_GPU)
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "kernel_style %d is not a clsa_kernel_style", (int)requested);
    if (requested == CLSA_STYLE_AUTO) {
        const char *env = getenv("CLSA_KERNEL_STYLE");
        if (env && *env) {
            if (strcmp(env, "cpu") == 0)
                requested = CLSA_STYLE_CPU;
            else if (strcmp(env, "gpu") == 0)
                requested = CLSA_STYLE_GPU;
            else
                return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "CLSA_KERNEL_STYLE=\"%s\": expected cpu or gpu", env);
        }
    }
    if (requested == CLSA_STYLE_AUTO)
        requested = (ctx->caps.type & CL_DEVICE_TYPE_CPU) ? CLSA_STYLE_CPU : CLSA_STYLE_GPU;
    ctx->style = requested;
    return CLSA_SUCCESS;
}

/* Reports failure from a context that could not be finished: it is released, *out stays NULL. */
static clsa_status abandon(clsa_context *ctx, clsa_status status)
{
    fprintf(stderr, "clsa: %s\n", ctx->last_error);
    clsa_context_release(ctx);
    return status;
}

clsa_status clsa_context_create(cl_context cl_ctx, cl_device_id device,
                                const clsa_context_options *options, clsa_context **out)
{
    if (!out)
        return CLSA_ERR_NULL_ARGUMENT;
    *out = NULL;
    if (!cl_ctx || !device)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return CLSA_ERR_OUT_OF_HOST_MEMORY;
    cl_int err = clRetainContext(cl_ctx);
    if (err) {
        free(ctx);
        return (clsa_status)err;
    }
    ctx->cl_ctx = cl_ctx;
    err = clRetainDevice(device);
    if (err) {
        clReleaseContext(cl_ctx);
        free(ctx);
        return (clsa_status)err;
    }
    ctx->device = device;
    clsa_status st = read_caps(ctx);
    if (!st)
        st = resolve_style(ctx, options ? options->kernel_style : CLSA_STYLE_AUTO);
    if (!st)
        st = clsa_tuning_resolve(ctx, options);
    if (st)
        return abandon(ctx, st);
    const char *dir = options && options->cache_dir ? options->cache_dir : getenv("CLSA_CACHE_DIR");
    if (dir && *dir) {
        st = clsa_cache_open(ctx, dir);
        if (st)
            return abandon(ctx, st);
    }
    *out = ctx;
    return CLSA_SUCCESS;
}

clsa_status clsa_context_create_default(const clsa_context_options *options, clsa_context **out)
{
    if (!out)
        return CLSA_ERR_NULL_ARGUMENT;
    *out = NULL;
    cl_device_id device = NULL;
    char why[2048] = "";
    clsa_status st = clsa_select_device(getenv("CLSA_DEVICE"), &device, why, sizeof why);
    if (st) {
        fprintf(stderr, "clsa: %s%s\n", getenv("CLSA_DEVICE") && st == CLSA_ERR_INVALID_OPTION ? "CLSA_DEVICE: " : "", why);
        return st;
    }
    cl_int err = CL_SUCCESS;
    cl_context cl_ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    if (err)
        return (clsa_status)err;
    st = clsa_context_create(cl_ctx, device, options, out);
    clReleaseContext(cl_ctx); /* the clsa context holds its own reference */
    return st;
}

void clsa_context_release(clsa_context *ctx)
{
    if (!ctx)
        return;
    clsa_programs_release(ctx);
    if (ctx->device)
        clReleaseDevice(ctx->device);
    if (ctx->cl_ctx)
        clReleaseContext(ctx->cl_ctx);
    free(ctx->cache_dir);
    free(ctx->extensions);
    free(ctx);
}

cl_context clsa_context_cl_context(const clsa_context *ctx) { return ctx ? ctx->cl_ctx : NULL; }
cl_device_id clsa_context_device(const clsa_context *ctx) { return ctx ? ctx->device : NULL; }
clsa_kernel_style clsa_context_kernel_style(const clsa_context *ctx) { return ctx ? ctx->style : CLSA_STYLE_AUTO; }
const char *clsa_context_device_name(const clsa_context *ctx) { return ctx ? ctx->caps.name : ""; }
const clsa_device_info *clsa_context_device_info(const clsa_context *ctx) { return ctx ? &ctx->caps : NULL; }
const char *clsa_context_device_extensions(const clsa_context *ctx)
{
    return ctx && ctx->extensions ? ctx->extensions : "";
}

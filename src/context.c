/* Context creation on the caller's OpenCL objects, device picking and capability reading. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cl_int read_string(cl_device_id device, cl_device_info what, char *buf, size_t size)
{
    cl_int err = clGetDeviceInfo(device, what, size, buf, NULL);
    buf[size - 1] = '\0';
    return err;
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
    if (!err) err = clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL);
    if (!err) {
        err = clGetPlatformInfo(ctx->platform, CL_PLATFORM_VERSION, sizeof caps->platform_version, caps->platform_version, NULL);
        caps->platform_version[sizeof caps->platform_version - 1] = '\0';
    }
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "reading the device's capabilities failed");
    size_t ext_size = 0;
    err = clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size);
    char *ext = err ? NULL : malloc(ext_size + 1);
    if (ext && !clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL)) {
        ext[ext_size] = '\0';
        caps->has_fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    }
    free(ext);
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

/* "No platform" and "no device on this platform" mean there is nothing to use; any other error
   (out of memory, say) is the loader's or driver's and is passed through as it is. */
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif
static clsa_status listing_error(cl_int err)
{
    return err == CL_PLATFORM_NOT_FOUND_KHR || err == CL_DEVICE_NOT_FOUND ? CLSA_ERR_NO_DEVICE : (clsa_status)err;
}

/* Lists every device of every platform, in enumeration order. */
static clsa_status list_devices(cl_device_id **devices, cl_uint *count)
{
    cl_uint nplat = 0;
    *devices = NULL;
    *count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err || nplat == 0)
        return err ? listing_error(err) : CLSA_ERR_NO_DEVICE;
    cl_platform_id *plats = calloc(nplat, sizeof *plats);
    if (!plats)
        return CLSA_ERR_OUT_OF_HOST_MEMORY;
    err = clGetPlatformIDs(nplat, plats, NULL);
    cl_uint total = 0;
    for (cl_uint p = 0; !err && p < nplat; ++p) {
        cl_uint n = 0;
        cl_int e = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n);
        if (e == CL_SUCCESS)
            total += n;
        else if (e != CL_DEVICE_NOT_FOUND)
            err = e;
    }
    cl_device_id *all = !err && total ? calloc(total, sizeof *all) : NULL;
    if (!err && total && !all) {
        free(plats);
        return CLSA_ERR_OUT_OF_HOST_MEMORY;
    }
    cl_uint filled = 0;
    for (cl_uint p = 0; all && !err && p < nplat; ++p) {
        cl_uint n = 0;
        cl_int e = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, total - filled, all + filled, &n);
        if (e == CL_SUCCESS)
            filled += n;
        else if (e != CL_DEVICE_NOT_FOUND)
            err = e;
    }
    free(plats);
    if (err || !filled) {
        free(all);
        return err ? listing_error(err) : CLSA_ERR_NO_DEVICE;
    }
    *devices = all;
    *count = filled;
    return CLSA_SUCCESS;
}

static clsa_status pick_device(cl_device_id *devices, cl_uint count, cl_device_id *out, char *why, size_t why_size)
{
    const char *env = getenv("CLSA_DEVICE");
    if (env && *env) {
        char *end = NULL;
        long index = strtol(env, &end, 10);
        if (*end == '\0') {
            if (index < 0 || (cl_ulong)index >= count) {
                snprintf(why, why_size, "CLSA_DEVICE=%s but there are %u devices", env, count);
                return CLSA_ERR_INVALID_OPTION;
            }
            *out = devices[index];
            return CLSA_SUCCESS;
        }
        for (cl_uint i = 0; i < count; ++i) {
            char name[256] = "";
            read_string(devices[i], CL_DEVICE_NAME, name, sizeof name);
            if (strstr(name, env)) {
                *out = devices[i];
                return CLSA_SUCCESS;
            }
        }
        snprintf(why, why_size, "CLSA_DEVICE=\"%s\" matches no device name", env);
        return CLSA_ERR_INVALID_OPTION;
    }
    for (cl_uint i = 0; i < count; ++i) {
        cl_device_type type = 0;
        clGetDeviceInfo(devices[i], CL_DEVICE_TYPE, sizeof type, &type, NULL);
        if (type & CL_DEVICE_TYPE_GPU) {
            *out = devices[i];
            return CLSA_SUCCESS;
        }
    }
    *out = devices[0];
    return CLSA_SUCCESS;
}

clsa_status clsa_context_create_default(const clsa_context_options *options, clsa_context **out)
{
    if (!out)
        return CLSA_ERR_NULL_ARGUMENT;
    *out = NULL;
    cl_device_id *devices = NULL;
    cl_uint count = 0;
    clsa_status st = list_devices(&devices, &count);
    if (st == CLSA_ERR_NO_DEVICE)
        fprintf(stderr, "clsa: no OpenCL device found (no platform, or no device on any platform)\n");
    else if (st)
        fprintf(stderr, "clsa: %s: listing the OpenCL platforms and devices failed\n", clsa_status_string(st));
    if (st)
        return st;
    cl_device_id device = NULL;
    char why[512] = "";
    st = pick_device(devices, count, &device, why, sizeof why);
    free(devices);
    if (st) {
        fprintf(stderr, "clsa: %s\n", why);
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
    free(ctx);
}

cl_context clsa_context_cl_context(const clsa_context *ctx) { return ctx ? ctx->cl_ctx : NULL; }
cl_device_id clsa_context_device(const clsa_context *ctx) { return ctx ? ctx->device : NULL; }
clsa_kernel_style clsa_context_kernel_style(const clsa_context *ctx) { return ctx ? ctx->style : CLSA_STYLE_AUTO; }
const char *clsa_context_device_name(const clsa_context *ctx) { return ctx ? ctx->caps.name : ""; }

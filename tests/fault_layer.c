#include "fault_layer.h"

#include <stddef.h>

static bool armed, fired;
static long fail_at, counted, per_entry[FAULT_ENTRY_COUNT];
static fault_entry fired_at;

void fault_arm(long at)
{
    armed = true, fired = false, fail_at = at, counted = 0;
    for (int e = 0; e < FAULT_ENTRY_COUNT; ++e)
        per_entry[e] = 0;
}

long fault_disarm(void)
{
    armed = false;
    return counted;
}

bool fault_fired(fault_entry *where)
{
    if (fired && where)
        *where = fired_at;
    return fired;
}

long fault_calls_of(fault_entry entry) { return per_entry[entry]; }

const char *fault_entry_name(fault_entry entry)
{
    static const char *names[] = {
#define FAULT_NAME(name) #name,
        FAULT_ENTRY_POINTS(FAULT_NAME)
#undef FAULT_NAME
    };
    return entry < FAULT_ENTRY_COUNT ? names[entry] : "?";
}

/* Counts one call; true when it is the one to fail. */
static bool should_fail(fault_entry entry)
{
    if (!armed)
        return false;
    ++per_entry[entry];
    if (counted++ != fail_at)
        return false;
    fired = true, fired_at = entry;
    return true;
}

/* Wrappers returning a status, and wrappers returning an object with the status in errcode_ret.
   The error each returns is one the specification lists for that call running out of resources. */
#define STATUS_WRAPPER(name, error, params, args)                                                   \
    cl_int __real_##name params;                                                                    \
    cl_int __wrap_##name params                                                                     \
    {                                                                                               \
        return should_fail(FAULT_##name) ? (error) : __real_##name args;                            \
    }
#define OBJECT_WRAPPER(type, name, error, params, args)                                             \
    type __real_##name params;                                                                      \
    type __wrap_##name params                                                                       \
    {                                                                                               \
        if (should_fail(FAULT_##name)) {                                                            \
            if (errcode_ret)                                                                        \
                *errcode_ret = (error);                                                             \
            return NULL;                                                                            \
        }                                                                                           \
        return __real_##name args;                                                                  \
    }

STATUS_WRAPPER(clGetPlatformIDs, CL_OUT_OF_HOST_MEMORY, (cl_uint n, cl_platform_id *p, cl_uint *np), (n, p, np))
STATUS_WRAPPER(clGetPlatformInfo, CL_OUT_OF_HOST_MEMORY,
               (cl_platform_id p, cl_platform_info i, size_t s, void *v, size_t *r), (p, i, s, v, r))
STATUS_WRAPPER(clGetDeviceIDs, CL_OUT_OF_HOST_MEMORY,
               (cl_platform_id p, cl_device_type t, cl_uint n, cl_device_id *d, cl_uint *nd), (p, t, n, d, nd))
STATUS_WRAPPER(clGetDeviceInfo, CL_OUT_OF_RESOURCES, (cl_device_id d, cl_device_info i, size_t s, void *v, size_t *r),
               (d, i, s, v, r))
OBJECT_WRAPPER(cl_context, clCreateContext, CL_OUT_OF_HOST_MEMORY,
               (const cl_context_properties *p, cl_uint n, const cl_device_id *d,
                void(CL_CALLBACK *f)(const char *, const void *, size_t, void *), void *u, cl_int *errcode_ret),
               (p, n, d, f, u, errcode_ret))
STATUS_WRAPPER(clRetainContext, CL_OUT_OF_HOST_MEMORY, (cl_context c), (c))
STATUS_WRAPPER(clRetainDevice, CL_OUT_OF_RESOURCES, (cl_device_id d), (d))
OBJECT_WRAPPER(cl_command_queue, clCreateCommandQueue, CL_OUT_OF_RESOURCES,
               (cl_context c, cl_device_id d, cl_command_queue_properties p, cl_int *errcode_ret), (c, d, p, errcode_ret))
OBJECT_WRAPPER(cl_mem, clCreateBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE,
               (cl_context c, cl_mem_flags f, size_t s, void *h, cl_int *errcode_ret), (c, f, s, h, errcode_ret))
STATUS_WRAPPER(clGetMemObjectInfo, CL_OUT_OF_RESOURCES, (cl_mem m, cl_mem_info i, size_t s, void *v, size_t *r),
               (m, i, s, v, r))
OBJECT_WRAPPER(cl_program, clCreateProgramWithSource, CL_OUT_OF_HOST_MEMORY,
               (cl_context c, cl_uint n, const char **src, const size_t *len, cl_int *errcode_ret),
               (c, n, src, len, errcode_ret))
OBJECT_WRAPPER(cl_program, clCreateProgramWithBinary, CL_OUT_OF_HOST_MEMORY,
               (cl_context c, cl_uint n, const cl_device_id *d, const size_t *len, const unsigned char **bin,
                cl_int *status, cl_int *errcode_ret),
               (c, n, d, len, bin, status, errcode_ret))
STATUS_WRAPPER(clBuildProgram, CL_OUT_OF_HOST_MEMORY,
               (cl_program p, cl_uint n, const cl_device_id *d, const char *o,
                void(CL_CALLBACK *f)(cl_program, void *), void *u),
               (p, n, d, o, f, u))
STATUS_WRAPPER(clGetProgramBuildInfo, CL_OUT_OF_RESOURCES,
               (cl_program p, cl_device_id d, cl_program_build_info i, size_t s, void *v, size_t *r), (p, d, i, s, v, r))
STATUS_WRAPPER(clGetProgramInfo, CL_OUT_OF_RESOURCES, (cl_program p, cl_program_info i, size_t s, void *v, size_t *r),
               (p, i, s, v, r))
OBJECT_WRAPPER(cl_kernel, clCreateKernel, CL_OUT_OF_RESOURCES, (cl_program p, const char *n, cl_int *errcode_ret),
               (p, n, errcode_ret))
STATUS_WRAPPER(clSetKernelArg, CL_OUT_OF_RESOURCES, (cl_kernel k, cl_uint i, size_t s, const void *v), (k, i, s, v))
STATUS_WRAPPER(clEnqueueNDRangeKernel, CL_OUT_OF_RESOURCES,
               (cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o, const size_t *g, const size_t *l,
                cl_uint n, const cl_event *w, cl_event *e),
               (q, k, d, o, g, l, n, w, e))
STATUS_WRAPPER(clEnqueueReadBuffer, CL_OUT_OF_RESOURCES,
               (cl_command_queue q, cl_mem m, cl_bool b, size_t o, size_t s, void *p, cl_uint n, const cl_event *w,
                cl_event *e),
               (q, m, b, o, s, p, n, w, e))

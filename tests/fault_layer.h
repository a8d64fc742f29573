/*
 * Fault injection for the OpenCL calls clsa makes. tests/meson.build links test_faults with
 * -Wl,--wrap=<name> for every entry point in FAULT_ENTRY_POINTS, so the static library's calls
 * land in fault_layer.c's wrappers, which count them and can make the n-th one fail.
 */
#ifndef CLSA_TEST_FAULT_LAYER_H
#define CLSA_TEST_FAULT_LAYER_H

#include <stdbool.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

/* Every fallible OpenCL entry point the library calls (releases cannot fail on valid objects). */
#define FAULT_ENTRY_POINTS(X)                                                                       \
    X(clGetPlatformIDs) X(clGetPlatformInfo) X(clGetDeviceIDs) X(clGetDeviceInfo) X(clCreateContext) \
    X(clRetainContext) X(clRetainDevice) X(clCreateCommandQueue) X(clCreateBuffer)                   \
    X(clGetMemObjectInfo) X(clCreateProgramWithSource) X(clCreateProgramWithBinary)                 \
    X(clBuildProgram) X(clGetProgramBuildInfo) X(clGetProgramInfo) X(clCreateKernel)                \
    X(clSetKernelArg) X(clEnqueueNDRangeKernel) X(clEnqueueReadBuffer)

typedef enum fault_entry {
#define FAULT_ENUM(name) FAULT_##name,
    FAULT_ENTRY_POINTS(FAULT_ENUM)
#undef FAULT_ENUM
    FAULT_ENTRY_COUNT
} fault_entry;

/* Starts counting calls; the call with index fail_at (0-based) fails, or none when fail_at < 0. */
void fault_arm(long fail_at);
/* Stops counting and failing; returns the calls counted since fault_arm. */
long fault_disarm(void);
/* Whether the armed failure fired, and at which entry point. */
bool fault_fired(fault_entry *where);
/* Calls counted per entry point since fault_arm. */
long fault_calls_of(fault_entry entry);
const char *fault_entry_name(fault_entry entry);

#endif

/* Status names, the per-context last-error message and the version calls. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

const char *clsa_version(void)
{
#define CLSA_STR2(x) #x
#define CLSA_STR(x) CLSA_STR2(x)
    return CLSA_STR(CLSA_VERSION_MAJOR) "." CLSA_STR(CLSA_VERSION_MINOR) "." CLSA_STR(CLSA_VERSION_PATCH);
}

int clsa_version_number(void) { return CLSA_VERSION; }

const char *clsa_status_string(clsa_status status)
{
    switch ((int)status) {
#define NAME(x) case x: return #x;
        NAME(CLSA_SUCCESS)
        NAME(CLSA_ERR_NULL_ARGUMENT)
        NAME(CLSA_ERR_INVALID_DIMENSION)
        NAME(CLSA_ERR_HEAD_RATIO)
        NAME(CLSA_ERR_UNSUPPORTED_HEAD_DIM)
        NAME(CLSA_ERR_UNKNOWN_DTYPE)
        NAME(CLSA_ERR_BUFFER_TOO_SMALL)
        NAME(CLSA_ERR_SIZE_OVERFLOW)
        NAME(CLSA_ERR_WORKSPACE_TOO_SMALL)
        NAME(CLSA_ERR_NO_DEVICE)
        NAME(CLSA_ERR_BUILD_FAILED)
        NAME(CLSA_ERR_OUT_OF_HOST_MEMORY)
        NAME(CLSA_ERR_INVALID_STRIDE)
        NAME(CLSA_ERR_INVALID_SCALE)
        NAME(CLSA_ERR_INVALID_TAU)
        NAME(CLSA_ERR_INVALID_BLOCK_SIZE)
        NAME(CLSA_ERR_MASK_TOO_SMALL)
        NAME(CLSA_ERR_INVALID_MASK)
        NAME(CLSA_ERR_INVALID_METHOD)
        NAME(CLSA_ERR_WRONG_PLAN)
        NAME(CLSA_ERR_DEVICE_UNSUPPORTED)
        NAME(CLSA_ERR_INVALID_OPTION)
        NAME(CLSA_ERR_INVALID_WAIT_LIST)
        NAME(CLSA_ERR_INVALID_TOKENS)
        NAME(CLSA_ERR_INVALID_REFINE)
        NAME(CLSA_ERR_INVALID_PRECISION)
        NAME(CLSA_ERR_INVALID_MASK_COUNT)
        NAME(CLSA_ERR_INVALID_SELECTOR)
        NAME(CLSA_ERR_INVALID_VALUE_PRUNE)
        NAME(CLSA_ERR_INVALID_VALUE_BITS)
        /* OpenCL 1.2 codes, passed through. */
        NAME(CL_DEVICE_NOT_FOUND)
        NAME(CL_DEVICE_NOT_AVAILABLE)
        NAME(CL_COMPILER_NOT_AVAILABLE)
        NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        NAME(CL_OUT_OF_RESOURCES)
        NAME(CL_OUT_OF_HOST_MEMORY)
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        NAME(CL_MEM_COPY_OVERLAP)
        NAME(CL_IMAGE_FORMAT_MISMATCH)
        NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        NAME(CL_BUILD_PROGRAM_FAILURE)
        NAME(CL_MAP_FAILURE)
        NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        NAME(CL_COMPILE_PROGRAM_FAILURE)
        NAME(CL_LINKER_NOT_AVAILABLE)
        NAME(CL_LINK_PROGRAM_FAILURE)
        NAME(CL_DEVICE_PARTITION_FAILED)
        NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        NAME(CL_INVALID_VALUE)
        NAME(CL_INVALID_DEVICE_TYPE)
        NAME(CL_INVALID_PLATFORM)
        NAME(CL_INVALID_DEVICE)
        NAME(CL_INVALID_CONTEXT)
        NAME(CL_INVALID_QUEUE_PROPERTIES)
        NAME(CL_INVALID_COMMAND_QUEUE)
        NAME(CL_INVALID_HOST_PTR)
        NAME(CL_INVALID_MEM_OBJECT)
        NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        NAME(CL_INVALID_IMAGE_SIZE)
        NAME(CL_INVALID_SAMPLER)
        NAME(CL_INVALID_BINARY)
        NAME(CL_INVALID_BUILD_OPTIONS)
        NAME(CL_INVALID_PROGRAM)
        NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        NAME(CL_INVALID_KERNEL_NAME)
        NAME(CL_INVALID_KERNEL_DEFINITION)
        NAME(CL_INVALID_KERNEL)
        NAME(CL_INVALID_ARG_INDEX)
        NAME(CL_INVALID_ARG_VALUE)
        NAME(CL_INVALID_ARG_SIZE)
        NAME(CL_INVALID_KERNEL_ARGS)
        NAME(CL_INVALID_WORK_DIMENSION)
        NAME(CL_INVALID_WORK_GROUP_SIZE)
        NAME(CL_INVALID_WORK_ITEM_SIZE)
        NAME(CL_INVALID_GLOBAL_OFFSET)
        NAME(CL_INVALID_EVENT_WAIT_LIST)
        NAME(CL_INVALID_EVENT)
        NAME(CL_INVALID_OPERATION)
        NAME(CL_INVALID_GL_OBJECT)
        NAME(CL_INVALID_BUFFER_SIZE)
        NAME(CL_INVALID_MIP_LEVEL)
        NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        NAME(CL_INVALID_PROPERTY)
        NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        NAME(CL_INVALID_COMPILER_OPTIONS)
        NAME(CL_INVALID_LINKER_OPTIONS)
        NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
    default:
        return "CLSA_UNKNOWN_STATUS";
    }
}

clsa_status clsa_fail(clsa_context *ctx, clsa_status status, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(ctx->last_error, sizeof ctx->last_error, "%s: ", clsa_status_string(status));
        if (n > 0 && (size_t)n < sizeof ctx->last_error)
            vsnprintf(ctx->last_error + n, sizeof ctx->last_error - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return status;
}

void clsa_clear_error(clsa_context *ctx)
{
    if (ctx)
        ctx->last_error[0] = '\0';
}

const char *clsa_context_last_error(const clsa_context *ctx) { return ctx ? ctx->last_error : ""; }

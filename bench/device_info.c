/* `clsa-bench --info`: what clsa read from a context's device, for bug reports. */
#include "device_info.h"

static const char *yes_no(int x) { return x ? "yes" : "no"; }

static const char *type_name(cl_device_type t)
{
    return (t & CL_DEVICE_TYPE_GPU) ? "GPU" : (t & CL_DEVICE_TYPE_CPU) ? "CPU"
         : (t & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator" : "other";
}

void device_info_print(FILE *f, const clsa_context *ctx)
{
    const clsa_device_info *d = clsa_context_device_info(ctx);
    fprintf(f, "device:                 %s\n", d->name);
    fprintf(f, "vendor:                 %s\n", d->vendor);
    fprintf(f, "type:                   %s\n", type_name(d->type));
    fprintf(f, "device version:         %s\n", d->device_version);
    fprintf(f, "OpenCL C version:       %s\n", d->c_version);
    fprintf(f, "driver version:         %s\n", d->driver_version);
    fprintf(f, "platform version:       %s\n", d->platform_version);
    fprintf(f, "compute units:          %u\n", d->compute_units);
    fprintf(f, "max work-group size:    %zu\n", d->max_work_group_size);
    fprintf(f, "local memory:           %llu bytes\n", (unsigned long long)d->local_mem_size);
    fprintf(f, "max allocation:         %llu bytes\n", (unsigned long long)d->max_mem_alloc);
    fprintf(f, "native float vector:    %u\n", d->native_float_width);
    fprintf(f, "cl_khr_fp64:            %s\n", yes_no(d->has_fp64));
    fprintf(f, "cl_khr_fp16:            %s\n", yes_no(d->has_fp16));
    fprintf(f, "cl_khr_subgroups:       %s\n", yes_no(d->has_subgroups));
    fprintf(f, "cl_intel_subgroups:     %s\n", yes_no(d->has_intel_subgroups));
    fprintf(f, "cl_intel_required_subgroup_size: %s", yes_no(d->has_intel_required_subgroup_size));
    for (cl_uint i = 0; i < d->num_subgroup_sizes; ++i)
        fprintf(f, "%s%zu", i ? ", " : " (sizes ", d->subgroup_sizes[i]);
    fprintf(f, "%s\n", d->num_subgroup_sizes ? ")" : "");
    fprintf(f, "cl_khr_integer_dot_product: %s", yes_no(d->has_integer_dot_product));
    if (d->has_integer_dot_product)
        fprintf(f, " (4x8-bit packed: %s, 4x8-bit vectors: %s)", yes_no(d->integer_dot_product & CLSA_INT_DOT_4X8_PACKED),
                yes_no(d->integer_dot_product & CLSA_INT_DOT_4X8));
    fprintf(f, "\nkernel style:           %s\n", clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu");
    fprintf(f, "tuning:                 %s\n", clsa_context_tuning(ctx));
    fprintf(f, "extensions:             %s\n", clsa_context_device_extensions(ctx));
}

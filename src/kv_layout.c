/* Host side of cl/kv_layout.cl: K^T and V as padded f32 in the workspace. */
#include "internal.h"

#include <stdio.h>

clsa_status clsa_kv_layout_size(clsa_context *ctx, const clsa_shape *shape, clsa_kv_layout *out)
{
    out->kv_len_padded = clsa_round_up(shape->kv_len, CLSA_KEY_PAD);
    out->head_dim_padded = clsa_round_up(shape->head_dim, CLSA_CHANNEL_PAD);
    int64_t heads = shape->batch * shape->kv_heads; /* fits: checked against 2^30 in validation */
    int64_t kt_elems, v_elems, kt_bytes, v_bytes, total;
    if (!clsa_mul_i64(heads * shape->head_dim, out->kv_len_padded, &kt_elems) ||
        !clsa_mul_i64(heads * out->head_dim_padded, out->kv_len_padded, &v_elems) ||
        !clsa_mul_i64(kt_elems, 4, &kt_bytes) || !clsa_mul_i64(v_elems, 4, &v_bytes) ||
        !clsa_add_i64(kt_bytes, v_bytes, &total))
        return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW, "the K/V workspace size overflows");
    out->kt_offset = 0;
    out->v_offset = (size_t)kt_bytes;
    out->bytes = (size_t)total; /* the plan checks the whole workspace against the device */
    return CLSA_SUCCESS;
}

clsa_status clsa_kv_layout_init(clsa_context *ctx, const clsa_shape *shape, clsa_kv_layout *out)
{
    const char *const names[1] = {"kv_layout"};
    cl_kernel *const kernels[1] = {&out->kernel};
    return clsa_stage_kernels(ctx, "kv_layout", clsa_cl_kv_layout, shape, 0, NULL, names, kernels, 1);
}

/* The workspace is passed whole with element offsets rather than as sub-buffers, which would
   need CL_DEVICE_MEM_BASE_ADDR_ALIGN-aligned offsets. */
clsa_status clsa_kv_layout_enqueue(const clsa_kv_layout *layout, const clsa_plan *plan,
                                   cl_command_queue queue, cl_mem k, cl_mem v, cl_mem workspace,
                                   cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    clsa_args a = {layout->kernel, 0, CL_SUCCESS};
    cl_int kv_heads = (cl_int)s->kv_heads, kv_len = (cl_int)s->kv_len, padded = (cl_int)layout->kv_len_padded;
    cl_int with_v = v != NULL;
    cl_mem v_arg = with_v ? v : k; /* without V, any valid buffer: the kernel does not touch it */
    cl_long kt_at = (cl_long)(layout->kt_offset / 4), v_at = (cl_long)(layout->v_offset / 4);
    clsa_arg_tensor(&a, k, &plan->k);
    clsa_arg_tensor(&a, v_arg, with_v ? &plan->v : &plan->k);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, kt_at);
    CLSA_ARG(&a, v_at);
    CLSA_ARG(&a, kv_heads);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, padded);
    CLSA_ARG(&a, with_v);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting kv_layout argument %u", a.index - 1);
    size_t global[2] = {(size_t)layout->kv_len_padded, (size_t)(s->batch * s->kv_heads)};
    return clsa_enqueue(plan->ctx, queue, layout->kernel, "kv_layout", global, NULL, num_wait, wait_list, out);
}

void clsa_kv_layout_release(clsa_kv_layout *layout)
{
    if (layout->kernel)
        clReleaseKernel(layout->kernel);
    layout->kernel = NULL;
}

/* Host side of cl/attention.cl: picks the kernel style's parameters, builds, sets args, enqueues. */
#include "internal.h"

#include <math.h>
#include <stdio.h>

/*
 * Parameter table per kernel style. CPU: 8 query rows per work-item against 16-key float16
 * chunks is the 8 x 16 register tile that reached 82 GFLOP/s in POCL-NOTES.md's GEMM; local
 * size 8 is what that measurement used. GPU: one query row per work-item, 64 rows per group,
 * with the key tile shrunk for large head_dim so K and V tiles fit in 32 KiB of local memory.
 */
enum { CPU_ROWS_PER_ITEM = 8, CPU_LOCAL_SIZE = 8, GPU_GROUP_SIZE = 64, GPU_KEY_TILE = 32 };

clsa_status clsa_attention_init(clsa_context *ctx, const clsa_shape *shape, const clsa_kv_layout *kv,
                                clsa_attention_stage *out)
{
    (void)kv;
    char extra[256];
    out->style = ctx->style;
    if (ctx->style == CLSA_STYLE_CPU) {
        out->rows_per_group = CPU_ROWS_PER_ITEM;
        out->local_size = CPU_LOCAL_SIZE;
        snprintf(extra, sizeof extra, "-DSPARSE=0 -DKERNEL_STYLE_CPU -DROWS_PER_ITEM=%d", CPU_ROWS_PER_ITEM);
    } else {
        const int key_tile = shape->head_dim > 128 ? GPU_KEY_TILE / 2 : GPU_KEY_TILE;
        size_t local_bytes = 2 * (size_t)key_tile * (size_t)shape->head_dim * sizeof(float);
        if (local_bytes > ctx->caps.local_mem_size || GPU_GROUP_SIZE > ctx->caps.max_work_group_size)
            return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                             "GPU-style attention at head_dim %lld needs %zu bytes of local memory and "
                             "work-groups of %d; device \"%s\" has %llu bytes and %zu",
                             (long long)shape->head_dim, local_bytes, GPU_GROUP_SIZE, ctx->caps.name,
                             (unsigned long long)ctx->caps.local_mem_size, ctx->caps.max_work_group_size);
        out->rows_per_group = GPU_GROUP_SIZE;
        out->local_size = GPU_GROUP_SIZE;
        snprintf(extra, sizeof extra, "-DSPARSE=0 -DKERNEL_STYLE_GPU -DGROUP_SIZE=%d -DKEY_TILE=%d",
                 GPU_GROUP_SIZE, key_tile);
    }
    char options[512];
    clsa_format_options(options, sizeof options, shape, extra);
    cl_program program;
    clsa_status st = clsa_program_get(ctx, "attention", clsa_cl_attention, options, &program);
    if (st)
        return st;
    cl_int err = CL_SUCCESS;
    out->kernel = clCreateKernel(program, "attention", &err);
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "clCreateKernel(attention)");
    return CLSA_SUCCESS;
}

clsa_status clsa_attention_enqueue(const clsa_attention_stage *stage, const clsa_plan *plan,
                                   cl_command_queue queue, cl_mem q, cl_mem o, cl_mem workspace,
                                   cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    const double log2e = 1.4426950408889634;
    cl_float scale_log2e = (cl_float)(s->scale * log2e);
    cl_int q_heads = (cl_int)s->q_heads, group = (cl_int)(s->q_heads / s->kv_heads);
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len;
    cl_int padded = (cl_int)plan->kv.kv_len_padded, causal = s->causal ? 1 : 0;
    cl_long kt_at = (cl_long)(plan->kv.kt_offset / 4), v_at = (cl_long)(plan->kv.v_offset / 4);
    cl_long qs[3] = {plan->q.batch, plan->q.head, plan->q.token};
    cl_long os[3] = {plan->o.batch, plan->o.head, plan->o.token};
    clsa_args a = {stage->kernel, 0, CL_SUCCESS};
    CLSA_ARG(&a, q);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, kt_at);
    CLSA_ARG(&a, v_at);
    CLSA_ARG(&a, o);
    for (int i = 0; i < 3; ++i)
        CLSA_ARG(&a, qs[i]);
    for (int i = 0; i < 3; ++i)
        CLSA_ARG(&a, os[i]);
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, padded);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, scale_log2e);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting attention argument %u", a.index - 1);
    size_t row_groups = (size_t)((s->q_len + (int64_t)stage->rows_per_group - 1) / (int64_t)stage->rows_per_group);
    size_t items = stage->style == CLSA_STYLE_CPU ? row_groups : row_groups * stage->rows_per_group;
    size_t global[2] = {(size_t)clsa_round_up((int64_t)items, (int64_t)stage->local_size),
                        (size_t)(s->batch * s->q_heads)};
    size_t local[2] = {stage->local_size, 1};
    cl_int err = clEnqueueNDRangeKernel(queue, stage->kernel, 2, NULL, global, local, num_wait, wait_list, out);
    if (err)
        return clsa_fail(plan->ctx, (clsa_status)err, "enqueueing attention");
    return CLSA_SUCCESS;
}

void clsa_attention_release(clsa_attention_stage *stage)
{
    if (stage->kernel)
        clReleaseKernel(stage->kernel);
    stage->kernel = NULL;
}

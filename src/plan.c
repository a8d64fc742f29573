/* Plans: validation, kernel baking, the workspace, and the one-call attention entry point. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void clsa_sparsity_init(clsa_sparsity *s, clsa_method method)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    s->method = method;
    s->tau = 0.004f;
    s->sink_tokens = 32;
    s->local_tokens = 256;
    s->block_q = 64;
    s->block_k = 32;
}

clsa_status clsa_plan_create(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                             clsa_plan **out)
{
    if (!ctx)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(ctx);
    if (!out)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "out is NULL");
    *out = NULL;
    clsa_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the plan");
    plan->ctx = ctx;
    clsa_status st = clsa_shape_validate(ctx, shape, &plan->q, &plan->k, &plan->v, &plan->o);
    if (!st && sparsity && sparsity->method != CLSA_METHOD_DENSE)
        st = clsa_fail(ctx, sparsity->method == CLSA_METHOD_SALE || sparsity->method == CLSA_METHOD_MASK
                                ? CLSA_ERR_WRONG_PLAN : CLSA_ERR_INVALID_METHOD,
                       "sparsity method %d is not available in this version", (int)sparsity->method);
    if (st) {
        free(plan);
        return st;
    }
    plan->shape = *shape;
    if (plan->shape.scale == 0.0f)
        plan->shape.scale = (float)(1.0 / sqrt((double)shape->head_dim));
    clsa_sparsity_init(&plan->sparsity, CLSA_METHOD_DENSE);
    st = clsa_kv_layout_init(ctx, &plan->shape, 0, &plan->kv);
    if (!st)
        st = clsa_attention_init(ctx, &plan->shape, &plan->kv, &plan->attention);
    if (st) {
        clsa_plan_release(plan);
        return st;
    }
    plan->workspace_bytes = plan->kv.bytes;
    *out = plan;
    return CLSA_SUCCESS;
}

void clsa_plan_release(clsa_plan *plan)
{
    if (!plan)
        return;
    clsa_kv_layout_release(&plan->kv);
    clsa_attention_release(&plan->attention);
    if (plan->own_workspace)
        clReleaseMemObject(plan->own_workspace);
    free(plan);
}

size_t clsa_plan_workspace_size(const clsa_plan *plan) { return plan ? plan->workspace_bytes : 0; }
const clsa_shape *clsa_plan_shape(const clsa_plan *plan) { return plan ? &plan->shape : NULL; }

static size_t tensor_bytes(const clsa_plan *plan, const clsa_tensor_layout *t)
{
    return (size_t)t->elements * clsa_dtype_size(plan->shape.dtype);
}

/* Validates every buffer and the wait list before anything is enqueued. */
static clsa_status check_call(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem *workspace, cl_uint num_wait, const cl_event *wait_list)
{
    clsa_context *ctx = plan->ctx;
    if (!queue)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "queue is NULL");
    clsa_status st = clsa_check_buffer(ctx, q, tensor_bytes(plan, &plan->q), "q", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st) st = clsa_check_buffer(ctx, k, tensor_bytes(plan, &plan->k), "k", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st) st = clsa_check_buffer(ctx, v, tensor_bytes(plan, &plan->v), "v", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st) st = clsa_check_buffer(ctx, o, tensor_bytes(plan, &plan->o), "o", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st && *workspace)
        st = clsa_check_buffer(ctx, *workspace, plan->workspace_bytes, "workspace", CLSA_ERR_WORKSPACE_TOO_SMALL);
    if (!st)
        st = clsa_check_wait_list(ctx, num_wait, wait_list);
    if (st || *workspace)
        return st;
    if (!plan->own_workspace) {
        cl_int err = CL_SUCCESS;
        plan->own_workspace = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, plan->workspace_bytes, NULL, &err);
        if (err)
            return clsa_fail(ctx, (clsa_status)err, "allocating the plan's own workspace of %zu bytes",
                             plan->workspace_bytes);
    }
    *workspace = plan->own_workspace;
    return CLSA_SUCCESS;
}

clsa_status clsa_attention(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                           cl_mem workspace, cl_uint num_wait, const cl_event *wait_list, cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(plan->ctx);
    clsa_status st = check_call(plan, queue, q, k, v, o, &workspace, num_wait, wait_list);
    if (st)
        return st;
    /* Stages are chained by events so an out-of-order queue keeps their order. */
    cl_event layout_done = NULL;
    st = clsa_kv_layout_enqueue(&plan->kv, plan, queue, k, v, workspace, num_wait, wait_list, &layout_done);
    if (!st)
        st = clsa_attention_enqueue(&plan->attention, plan, queue, q, o, workspace, 1, &layout_done, out_event);
    if (layout_done)
        clReleaseEvent(layout_done);
    return st;
}

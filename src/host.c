/* clsa_attention_host: the one call for users with host arrays instead of cl_mem buffers. */
#include "internal.h"

static cl_mem make_buffer(clsa_context *ctx, cl_mem_flags flags, size_t bytes, const void *data, cl_int *err)
{
    if (*err)
        return NULL;
    return clCreateBuffer(ctx->cl_ctx, flags | (data ? CL_MEM_COPY_HOST_PTR : 0), bytes, (void *)data, err);
}

clsa_status clsa_attention_host(clsa_plan *plan, cl_command_queue queue, const void *q, const void *k,
                                const void *v, void *o)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = plan->ctx;
    clsa_clear_error(ctx);
    if (!q || !k || !v || !o)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "a host array (q, k, v or o) is NULL");
    size_t es = clsa_dtype_size(plan->shape.dtype);
    size_t qb = (size_t)plan->q.elements * es, kb = (size_t)plan->k.elements * es;
    size_t vb = (size_t)plan->v.elements * es, ob = (size_t)plan->o.elements * es;
    cl_int err = CL_SUCCESS;
    cl_command_queue own_queue = NULL;
    if (!queue)
        queue = own_queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device, 0, &err);
    cl_mem qm = make_buffer(ctx, CL_MEM_READ_ONLY, qb, q, &err);
    cl_mem km = make_buffer(ctx, CL_MEM_READ_ONLY, kb, k, &err);
    cl_mem vm = make_buffer(ctx, CL_MEM_READ_ONLY, vb, v, &err);
    /* O starts as the caller's array so that elements between strided rows keep their values. */
    cl_mem om = make_buffer(ctx, CL_MEM_READ_WRITE, ob, o, &err);
    clsa_status st = err ? clsa_fail(ctx, (clsa_status)err, "creating the queue or device buffers") : CLSA_SUCCESS;
    cl_event done = NULL;
    if (!st)
        st = clsa_attention(plan, queue, qm, km, vm, om, NULL, 0, NULL, &done);
    if (!st) {
        /* Wait on the attention's own event: on an out-of-order queue, queue order alone would let
           the read run before the kernels. */
        err = clEnqueueReadBuffer(queue, om, CL_TRUE, 0, ob, o, 1, &done, NULL);
        if (err)
            st = clsa_fail(ctx, (clsa_status)err, "reading o back");
    }
    if (done)
        clReleaseEvent(done);
    cl_mem all[] = {qm, km, vm, om};
    for (int i = 0; i < 4; ++i)
        if (all[i])
            clReleaseMemObject(all[i]);
    if (own_queue)
        clReleaseCommandQueue(own_queue);
    return st;
}

/* Plans: validation, kernel baking, the workspace layout, and the attention entry points. */
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
    s->refine_nats = 0.5f;
    s->keep_forced = 1;
    s->window_tokens = 1024;
    s->topk = 0.5f;
    s->cdf_gamma = 0.9f;
    s->xattn_threshold = 0.9f;
    s->xattn_stride = 8;
}

static const char *const method_names[] = {
    [CLSA_METHOD_DENSE] = "dense",     [CLSA_METHOD_SALE] = "sale",       [CLSA_METHOD_MASK] = "mask",
    [CLSA_METHOD_SALE_EXACT] = "sale-exact", [CLSA_METHOD_STREAMING] = "streaming",
    [CLSA_METHOD_SLIDING] = "sliding", [CLSA_METHOD_TOPK] = "topk",       [CLSA_METHOD_CDF] = "cdf",
    [CLSA_METHOD_XATTN] = "xattn",     [CLSA_METHOD_PER_HEAD] = "per-head",
};
#define METHOD_COUNT ((int)(sizeof method_names / sizeof method_names[0]))

const char *clsa_method_name(clsa_method method)
{
    return (int)method >= 0 && (int)method < METHOD_COUNT ? method_names[method] : NULL;
}

clsa_status clsa_method_from_name(const char *name, clsa_method *out)
{
    if (!name || !out)
        return CLSA_ERR_NULL_ARGUMENT;
    for (int m = 0; m < METHOD_COUNT; ++m)
        if (strcmp(name, method_names[m]) == 0) {
            *out = (clsa_method)m;
            return CLSA_SUCCESS;
        }
    return CLSA_ERR_INVALID_METHOD;
}

static bool is_sparse(const clsa_plan *plan) { return plan->sparsity.method != CLSA_METHOD_DENSE; }
static bool is_estimating(const clsa_plan *plan)
{
    return plan->sparsity.method == CLSA_METHOD_SALE || plan->sparsity.method == CLSA_METHOD_SALE_EXACT;
}

static bool valid_tau(float tau) { return isfinite(tau) && tau >= 0.0f; }
static bool valid_block(int32_t b) { return b >= 16 && b <= 128 && (b & (b - 1)) == 0; }

static clsa_status validate_sparsity(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp)
{
    if (sp->method != CLSA_METHOD_DENSE && sp->method != CLSA_METHOD_SALE && sp->method != CLSA_METHOD_MASK &&
        sp->method != CLSA_METHOD_SALE_EXACT)
        return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD, "sparsity method %d is not a clsa_method", (int)sp->method);
    if (sp->method == CLSA_METHOD_DENSE)
        return CLSA_SUCCESS;
    if (!valid_block(sp->block_q) || !valid_block(sp->block_k))
        return clsa_fail(ctx, CLSA_ERR_INVALID_BLOCK_SIZE,
                         "block_q = %d, block_k = %d: each must be a power of two from 16 to 128", sp->block_q,
                         sp->block_k);
    if (sp->method == CLSA_METHOD_MASK)
        return CLSA_SUCCESS;
    if (!valid_tau(sp->tau))
        return clsa_fail(ctx, CLSA_ERR_INVALID_TAU, "tau = %g: must be finite and >= 0", (double)sp->tau);
    for (int64_t h = 0; sp->tau_per_head && h < shape->q_heads; ++h)
        if (!valid_tau(sp->tau_per_head[h]))
            return clsa_fail(ctx, CLSA_ERR_INVALID_TAU, "tau_per_head[%lld] = %g: must be finite and >= 0",
                             (long long)h, (double)sp->tau_per_head[h]);
    if (sp->sink_tokens < 0 || sp->local_tokens < 0)
        return clsa_fail(ctx, CLSA_ERR_INVALID_TOKENS, "sink_tokens = %d, local_tokens = %d: must be >= 0",
                         sp->sink_tokens, sp->local_tokens);
    if (!(sp->refine_nats >= 0.0f && sp->refine_nats <= 16.0f))
        return clsa_fail(ctx, CLSA_ERR_INVALID_REFINE, "refine_nats = %g: must be from 0 to 16 nats",
                         (double)sp->refine_nats);
    return CLSA_SUCCESS;
}

/* Places a region of n1 * n2 * n3 * elem bytes at *offset (256-byte aligned); false on overflow. */
static bool region(size_t *at, int64_t *offset, int64_t n1, int64_t n2, int64_t n3, int64_t elem)
{
    int64_t bytes, end;
    if (!clsa_mul_i64(n1, n2, &bytes) || !clsa_mul_i64(bytes, n3, &bytes) || !clsa_mul_i64(bytes, elem, &bytes) ||
        !clsa_add_i64(*offset, bytes, &end) || !clsa_add_i64(end, 255, &end))
        return false;
    *at = (size_t)*offset;
    *offset = end / 256 * 256;
    return true;
}

/* The workspace: K^T and V (all plans), then the SALE buffers, then the block mask. */
static clsa_status lay_out_workspace(clsa_plan *plan)
{
    clsa_context *ctx = plan->ctx;
    const clsa_shape *s = &plan->shape;
    int64_t offset = clsa_round_up((int64_t)plan->kv.bytes, 256);
    const int64_t bq = s->batch * s->q_heads, bk = s->batch * s->kv_heads;
    bool ok = true;
    if (is_estimating(plan)) {
        clsa_quant_layout *L = &plan->quant;
        L->head_dim_even = clsa_round_up(s->head_dim, 2);
        L->kv_len_padded = plan->kv.kv_len_padded;
        const int64_t code_bytes = L->head_dim_even / 2;
        L->group_channels = CLSA_QUANT_GROUP;
        L->groups = (s->head_dim + CLSA_QUANT_GROUP - 1) / CLSA_QUANT_GROUP;
        ok = region(&L->q_mean, &offset, bq, s->head_dim, 1, 4) && region(&L->k_mean, &offset, bk, s->head_dim, 1, 4) &&
             region(&L->q_codes, &offset, bq, s->q_len, code_bytes, 1) &&
             region(&L->q_scales, &offset, bq, s->q_len, L->groups, 4) &&
             region(&L->k_codes, &offset, bk, code_bytes, L->kv_len_padded, 1) &&
             region(&L->k_scales, &offset, bk, L->groups, L->kv_len_padded, 4) &&
             region(&L->k_correction, &offset, bq, L->kv_len_padded, 1, 4) &&
             region(&L->k_pairs, &offset, bk, L->groups * L->group_channels, L->kv_len_padded / 2, 4) &&
             region(&L->row_threshold, &offset, bq, s->q_len, 1, 4) &&
             region(&L->row_shift, &offset, bq, s->q_len, 1, 4);
    }
    if (ok && is_sparse(plan)) {
        clsa_mask_geometry *m = &plan->mask;
        m->block_q = plan->sparsity.block_q;
        m->block_k = plan->sparsity.block_k;
        m->num_q_blocks = (s->q_len + m->block_q - 1) / m->block_q;
        m->num_k_blocks = (s->kv_len + m->block_k - 1) / m->block_k;
        m->rows = bq * m->num_q_blocks;
        ok = region(&plan->mask_counts_at, &offset, m->rows, 1, 1, 4) &&
             region(&plan->mask_indices_at, &offset, m->rows, m->num_k_blocks, 1, 4);
        m->counts_bytes = (size_t)m->rows * 4;
        m->indices_bytes = (size_t)(m->rows * m->num_k_blocks) * 4;
    }
    if (!ok)
        return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW, "the workspace size overflows");
    if ((cl_ulong)offset > ctx->caps.max_mem_alloc)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                         "the workspace needs %lld bytes but device \"%s\" allocates at most %llu per buffer",
                         (long long)offset, ctx->caps.name, (unsigned long long)ctx->caps.max_mem_alloc);
    plan->workspace_bytes = (size_t)offset;
    return CLSA_SUCCESS;
}

/* Per-head thresholds on the device, as log2(tau), or -inf for a dense head (tau <= 1e-5). */
static clsa_status upload_thresholds(clsa_plan *plan, const float *tau_per_head)
{
    const int64_t heads = plan->shape.q_heads;
    plan->tau = malloc(sizeof(float) * (size_t)heads);
    float *log2_tau = malloc(sizeof(float) * (size_t)heads);
    if (!plan->tau || !log2_tau) {
        free(log2_tau);
        return clsa_fail(plan->ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the thresholds");
    }
    for (int64_t h = 0; h < heads; ++h) {
        plan->tau[h] = tau_per_head ? tau_per_head[h] : plan->sparsity.tau;
        log2_tau[h] = plan->tau[h] <= 1e-5f ? -INFINITY : log2f(plan->tau[h]);
    }
    plan->sparsity.tau_per_head = plan->tau;
    cl_int err = CL_SUCCESS;
    plan->head_log2_tau = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                         sizeof(float) * (size_t)heads, log2_tau, &err);
    free(log2_tau);
    return err ? clsa_fail(plan->ctx, (clsa_status)err, "creating the threshold buffer") : CLSA_SUCCESS;
}

clsa_status clsa_plan_validate(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                               clsa_plan *plan)
{
    plan->ctx = ctx;
    clsa_status st = clsa_shape_validate(ctx, shape, &plan->q, &plan->k, &plan->v, &plan->o);
    if (!st && sparsity)
        st = validate_sparsity(ctx, shape, sparsity);
    if (st)
        return st;
    plan->shape = *shape;
    if (plan->shape.scale == 0.0f)
        plan->shape.scale = (float)(1.0 / sqrt((double)shape->head_dim));
    if (sparsity)
        plan->sparsity = *sparsity;
    else
        clsa_sparsity_init(&plan->sparsity, CLSA_METHOD_DENSE);
    plan->sparsity.tau_per_head = NULL; /* the caller's array is copied by upload_thresholds */
    st = clsa_kv_layout_size(ctx, &plan->shape, &plan->kv);
    return st ? st : lay_out_workspace(plan);
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
    clsa_status st = clsa_plan_validate(ctx, shape, sparsity, plan);
    if (st) {
        free(plan);
        return st;
    }
    st = clsa_kv_layout_init(ctx, &plan->shape, &plan->kv);
    if (!st)
        st = clsa_attention_init(ctx, &plan->shape, is_sparse(plan) ? &plan->sparsity : NULL, &plan->attention);
    if (!st && is_estimating(plan))
        st = upload_thresholds(plan, sparsity->tau_per_head);
    if (!st && plan->sparsity.method == CLSA_METHOD_SALE)
        st = clsa_quantize_init(ctx, &plan->shape, &plan->quantize);
    if (!st && is_estimating(plan))
        st = clsa_estimate_init(ctx, &plan->shape, &plan->sparsity, &plan->estimate);
    if (st) {
        clsa_plan_release(plan);
        return st;
    }
    *out = plan;
    return CLSA_SUCCESS;
}

void clsa_plan_release(clsa_plan *plan)
{
    if (!plan)
        return;
    clsa_kv_layout_release(&plan->kv);
    clsa_attention_release(&plan->attention);
    clsa_quantize_release(&plan->quantize);
    clsa_estimate_release(&plan->estimate);
    if (plan->head_log2_tau)
        clReleaseMemObject(plan->head_log2_tau);
    if (plan->own_workspace)
        clReleaseMemObject(plan->own_workspace);
    free(plan->tau);
    free(plan);
}

size_t clsa_plan_workspace_size(const clsa_plan *plan) { return plan ? plan->workspace_bytes : 0; }
const clsa_shape *clsa_plan_shape(const clsa_plan *plan) { return plan ? &plan->shape : NULL; }

clsa_status clsa_plan_mask_geometry(const clsa_plan *plan, clsa_mask_geometry *out)
{
    if (!plan || !out)
        return CLSA_ERR_NULL_ARGUMENT;
    if (!is_sparse(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "a dense plan has no block mask");
    *out = plan->mask;
    return CLSA_SUCCESS;
}

clsa_status clsa_plan_quant_layout(const clsa_plan *plan, clsa_quant_layout *out)
{
    if (!plan || !out)
        return CLSA_ERR_NULL_ARGUMENT;
    if (!is_estimating(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "only SALE plans have quantization buffers");
    *out = plan->quant;
    return CLSA_SUCCESS;
}

clsa_status clsa_plan_workspace_mask(const clsa_plan *plan, cl_mem workspace, clsa_block_mask *out)
{
    if (!plan || !out || !workspace)
        return CLSA_ERR_NULL_ARGUMENT;
    if (!is_sparse(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "a dense plan has no block mask");
    out->counts = out->indices = workspace;
    out->counts_offset = plan->mask_counts_at;
    out->indices_offset = plan->mask_indices_at;
    return CLSA_SUCCESS;
}

static size_t tensor_bytes(const clsa_plan *plan, const clsa_tensor_layout *t)
{
    return (size_t)t->elements * clsa_dtype_size(plan->shape.dtype);
}

/* Checks the queue, the wait list and a caller's workspace. */
static clsa_status check_common(clsa_plan *plan, cl_command_queue queue, cl_mem workspace, cl_uint num_wait,
                                const cl_event *wait_list)
{
    clsa_context *ctx = plan->ctx;
    if (!queue)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "queue is NULL");
    clsa_status st = clsa_check_wait_list(ctx, num_wait, wait_list);
    if (!st && workspace)
        st = clsa_check_buffer(ctx, workspace, plan->workspace_bytes, "workspace", CLSA_ERR_WORKSPACE_TOO_SMALL);
    return st;
}

/* A NULL workspace becomes the plan's own, allocated on first use. Called only once every argument
   has passed its checks, so that a rejected call allocates nothing. */
static clsa_status own_workspace_if_null(clsa_plan *plan, cl_mem *workspace)
{
    if (*workspace)
        return CLSA_SUCCESS;
    if (!plan->own_workspace) {
        cl_int err = CL_SUCCESS;
        plan->own_workspace = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, plan->workspace_bytes, NULL, &err);
        if (err) {
            plan->own_workspace = NULL;
            return clsa_fail(plan->ctx, (clsa_status)err, "allocating the plan's own workspace of %zu bytes",
                             plan->workspace_bytes);
        }
    }
    *workspace = plan->own_workspace;
    return CLSA_SUCCESS;
}

/* Checks the tensors a call reads and writes (NULL entries are not used by the call). */
static clsa_status check_tensors(clsa_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, bool need_v_o)
{
    clsa_context *ctx = plan->ctx;
    clsa_status st = clsa_check_buffer(ctx, q, tensor_bytes(plan, &plan->q), "q", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st) st = clsa_check_buffer(ctx, k, tensor_bytes(plan, &plan->k), "k", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st && need_v_o) st = clsa_check_buffer(ctx, v, tensor_bytes(plan, &plan->v), "v", CLSA_ERR_BUFFER_TOO_SMALL);
    if (!st && need_v_o) st = clsa_check_buffer(ctx, o, tensor_bytes(plan, &plan->o), "o", CLSA_ERR_BUFFER_TOO_SMALL);
    return st;
}

/* Resolves a caller's mask (NULL: the workspace's) and checks its buffers' sizes. */
static clsa_status resolve_mask(clsa_plan *plan, cl_mem workspace, const clsa_block_mask *given, clsa_block_mask *out)
{
    clsa_context *ctx = plan->ctx;
    if (!given)
        return clsa_plan_workspace_mask(plan, workspace, out);
    *out = *given;
    if (out->counts_offset % 4 || out->indices_offset % 4)
        return clsa_fail(ctx, CLSA_ERR_INVALID_MASK, "mask offsets %zu and %zu must be multiples of 4",
                         out->counts_offset, out->indices_offset);
    /* An offset near SIZE_MAX must not wrap past the size check. */
    size_t counts_end, indices_end;
    if (!clsa_add_size(out->counts_offset, plan->mask.counts_bytes, &counts_end) ||
        !clsa_add_size(out->indices_offset, plan->mask.indices_bytes, &indices_end))
        return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW,
                         "mask offsets %zu and %zu plus the mask's %zu and %zu bytes overflow a size_t",
                         out->counts_offset, out->indices_offset, plan->mask.counts_bytes, plan->mask.indices_bytes);
    clsa_status st = clsa_check_buffer(ctx, out->counts, counts_end, "mask.counts", CLSA_ERR_MASK_TOO_SMALL);
    if (!st)
        st = clsa_check_buffer(ctx, out->indices, indices_end, "mask.indices", CLSA_ERR_MASK_TOO_SMALL);
    return st;
}

/* Reads a mask back (blocking, after wait_list) into host arrays. Caller frees both. */
static clsa_status read_mask(clsa_plan *plan, cl_command_queue queue, const clsa_block_mask *mask, bool with_indices,
                             cl_uint num_wait, const cl_event *wait_list, int32_t **counts, int32_t **indices)
{
    *counts = malloc(plan->mask.counts_bytes);
    *indices = with_indices ? malloc(plan->mask.indices_bytes ? plan->mask.indices_bytes : 1) : NULL;
    if (!*counts || (with_indices && !*indices))
        return clsa_fail(plan->ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory to read the mask back");
    cl_int err = clEnqueueReadBuffer(queue, mask->counts, CL_TRUE, mask->counts_offset, plan->mask.counts_bytes,
                                     *counts, num_wait, wait_list, NULL);
    if (!err && with_indices)
        err = clEnqueueReadBuffer(queue, mask->indices, CL_TRUE, mask->indices_offset, plan->mask.indices_bytes,
                                  *indices, 0, NULL, NULL);
    return err ? clsa_fail(plan->ctx, (clsa_status)err, "reading the mask back") : CLSA_SUCCESS;
}

clsa_status clsa_quantize(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                          cl_uint num_wait, const cl_event *wait_list, cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(plan->ctx);
    if (plan->sparsity.method != CLSA_METHOD_SALE)
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "clsa_quantize needs a CLSA_METHOD_SALE plan");
    if (!workspace)
        return clsa_fail(plan->ctx, CLSA_ERR_NULL_ARGUMENT, "clsa_quantize writes into the workspace: it cannot be NULL");
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, NULL, NULL, false);
    return st ? st : clsa_quantize_enqueue(plan, queue, q, k, workspace, num_wait, wait_list, out_event);
}

/* Estimation after the checks: the exact-score oracle and SALE's exact second look first lay
   K^T out in the workspace (attention lays it out again with V: its caller may change K between). */
static clsa_status run_estimate(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                                const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                                cl_event *out_event)
{
    if (plan->sparsity.method != CLSA_METHOD_SALE_EXACT && plan->sparsity.refine_nats == 0.0f)
        return clsa_estimate_enqueue(plan, queue, q, k, workspace, mask, num_wait, wait_list, out_event);
    cl_event kt_done = NULL;
    clsa_status st = clsa_kv_layout_enqueue(&plan->kv, plan, queue, k, NULL, workspace, num_wait, wait_list, &kt_done);
    if (!st)
        st = clsa_estimate_enqueue(plan, queue, q, k, workspace, mask, 1, &kt_done, out_event);
    if (kt_done)
        clReleaseEvent(kt_done);
    return st;
}

clsa_status clsa_estimate_mask(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                               const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                               cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(plan->ctx);
    if (!is_estimating(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "clsa_estimate_mask needs a SALE or SALE_EXACT plan");
    if (!workspace)
        return clsa_fail(plan->ctx, CLSA_ERR_NULL_ARGUMENT, "clsa_estimate_mask reads clsa_quantize's workspace: it cannot be NULL");
    clsa_block_mask m;
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, NULL, NULL, false);
    if (!st)
        st = resolve_mask(plan, workspace, mask, &m);
    return st ? st : run_estimate(plan, queue, q, k, workspace, &m, num_wait, wait_list, out_event);
}

/* K/V layout then sparse or dense attention, chained by events. */
static clsa_status run_attention(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                 cl_mem workspace, const clsa_block_mask *mask, cl_uint num_wait,
                                 const cl_event *wait_list, cl_event *out_event)
{
    cl_event layout_done = NULL;
    clsa_status st = clsa_kv_layout_enqueue(&plan->kv, plan, queue, k, v, workspace, num_wait, wait_list, &layout_done);
    if (!st)
        st = clsa_attention_enqueue(&plan->attention, plan, queue, q, o, workspace, mask, 1, &layout_done, out_event);
    if (layout_done)
        clReleaseEvent(layout_done);
    return st;
}

clsa_status clsa_attention_masked(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v,
                                  cl_mem o, cl_mem workspace, const clsa_block_mask *mask,
                                  clsa_mask_check check, cl_uint num_wait, const cl_event *wait_list,
                                  cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = plan->ctx;
    clsa_clear_error(ctx);
    if (!is_sparse(plan))
        return clsa_fail(ctx, CLSA_ERR_WRONG_PLAN, "clsa_attention_masked needs a sparse plan (method MASK, SALE or SALE_EXACT)");
    if (check != CLSA_MASK_CHECK && check != CLSA_MASK_TRUST)
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "check = %d is not a clsa_mask_check", (int)check);
    if (!mask && !workspace)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "the mask lives in the workspace, but both are NULL");
    clsa_block_mask m;
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, v, o, true);
    if (!st)
        st = resolve_mask(plan, workspace, mask, &m);
    if (!st && check == CLSA_MASK_CHECK) {
        int32_t *counts = NULL, *indices = NULL;
        st = read_mask(plan, queue, &m, true, num_wait, wait_list, &counts, &indices);
        if (!st)
            st = clsa_mask_check_host(ctx, counts, indices, plan->mask.rows, plan->mask.num_k_blocks);
        free(counts);
        free(indices);
    }
    if (!st)
        st = own_workspace_if_null(plan, &workspace);
    return st ? st : run_attention(plan, queue, q, k, v, o, workspace, &m, num_wait, wait_list, out_event);
}

clsa_status clsa_attention(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                           cl_mem workspace, cl_uint num_wait, const cl_event *wait_list, cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = plan->ctx;
    clsa_clear_error(ctx);
    if (plan->sparsity.method == CLSA_METHOD_MASK)
        return clsa_fail(ctx, CLSA_ERR_WRONG_PLAN, "a CLSA_METHOD_MASK plan takes its mask in clsa_attention_masked");
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, v, o, true);
    if (!st)
        st = own_workspace_if_null(plan, &workspace);
    if (st)
        return st;
    if (!is_estimating(plan))
        return run_attention(plan, queue, q, k, v, o, workspace, NULL, num_wait, wait_list, out_event);
    /* SALE: quantize -> estimate (into the workspace's mask) -> sparse attention. */
    clsa_block_mask m;
    clsa_plan_workspace_mask(plan, workspace, &m);
    cl_event quantized = NULL, estimated = NULL;
    if (plan->sparsity.method == CLSA_METHOD_SALE)
        st = clsa_quantize_enqueue(plan, queue, q, k, workspace, num_wait, wait_list, &quantized);
    if (!st)
        st = quantized ? run_estimate(plan, queue, q, k, workspace, &m, 1, &quantized, &estimated)
                       : run_estimate(plan, queue, q, k, workspace, &m, num_wait, wait_list, &estimated);
    if (!st)
        st = run_attention(plan, queue, q, k, v, o, workspace, &m, 1, &estimated, out_event);
    if (quantized)
        clReleaseEvent(quantized);
    if (estimated)
        clReleaseEvent(estimated);
    return st;
}

clsa_status clsa_mask_density(clsa_plan *plan, cl_command_queue queue, cl_mem workspace,
                              const clsa_block_mask *mask, double *density)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = plan->ctx;
    clsa_clear_error(ctx);
    if (!is_sparse(plan))
        return clsa_fail(ctx, CLSA_ERR_WRONG_PLAN, "a dense plan has no block mask");
    if (!queue || !density || (!mask && !workspace))
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "queue, density and one of mask or workspace are needed");
    if (workspace) {
        clsa_status st = clsa_check_buffer(ctx, workspace, plan->workspace_bytes, "workspace", CLSA_ERR_WORKSPACE_TOO_SMALL);
        if (st)
            return st;
    }
    clsa_block_mask m;
    int32_t *counts = NULL, *indices = NULL;
    clsa_status st = resolve_mask(plan, workspace, mask, &m);
    if (!st)
        st = read_mask(plan, queue, &m, true, 0, NULL, &counts, &indices);
    if (!st)
        st = clsa_mask_check_host(ctx, counts, indices, plan->mask.rows, plan->mask.num_k_blocks);
    if (!st) {
        /* Only blocks a row can see count, so that a mask listing causally invalid blocks (which
           the kernels skip) never reads as denser than it runs, or above 1. */
        const clsa_shape *s = &plan->shape;
        const int64_t nqb = plan->mask.num_q_blocks, nkb = plan->mask.num_k_blocks;
        for (int64_t h = 0; h < s->q_heads; ++h) {
            double kept = 0.0, valid = 0.0;
            for (int64_t b = 0; b < s->batch; ++b)
                for (int64_t qb = 0; qb < nqb; ++qb) {
                    const int64_t row = (b * s->q_heads + h) * nqb + qb, visible = clsa_valid_key_blocks(s, &plan->mask, qb);
                    for (int32_t n = 0; n < counts[row] && indices[row * nkb + n] < visible; ++n)
                        kept += 1.0;
                    valid += (double)visible;
                }
            density[h] = valid > 0 ? kept / valid : 0.0;
        }
    }
    free(counts);
    free(indices);
    return st;
}

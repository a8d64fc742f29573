/* Plans: validation, kernel baking, the workspace layout, and the attention entry points. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
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
/* Plans whose mask a selector writes (all sparse plans but MASK). */
static bool is_selecting(const clsa_plan *plan)
{
    return is_sparse(plan) && plan->sparsity.method != CLSA_METHOD_MASK;
}
static bool has_sale(const clsa_plan *plan)
{
    return plan->uses[CLSA_METHOD_SALE] || plan->uses[CLSA_METHOD_SALE_EXACT];
}

static bool valid_tau(float tau) { return isfinite(tau) && tau >= 0.0f; }
static bool valid_block(int32_t b) { return b >= 16 && b <= 128 && (b & (b - 1)) == 0; }
static bool is_method(clsa_method m) { return clsa_method_name(m) != NULL; }
/* The methods a query head may have in a CLSA_METHOD_PER_HEAD plan. */
static bool is_head_method(clsa_method m)
{
    return is_method(m) && m != CLSA_METHOD_MASK && m != CLSA_METHOD_SALE_EXACT && m != CLSA_METHOD_PER_HEAD;
}

/* One method's own settings (a whole plan's, or one head's). */
static clsa_status validate_settings(clsa_context *ctx, const clsa_sparsity *sp, const char *who)
{
    const bool sale = sp->method == CLSA_METHOD_SALE || sp->method == CLSA_METHOD_SALE_EXACT;
    if (sale && !valid_tau(sp->tau))
        return clsa_fail(ctx, CLSA_ERR_INVALID_TAU, "%stau = %g: must be finite and >= 0", who, (double)sp->tau);
    if (sp->sink_tokens < 0 || sp->local_tokens < 0)
        return clsa_fail(ctx, CLSA_ERR_INVALID_TOKENS, "%ssink_tokens = %d, local_tokens = %d: must be >= 0", who,
                         sp->sink_tokens, sp->local_tokens);
    return clsa_selector_validate(ctx, sp, who);
}

/* The entries of a CLSA_METHOD_PER_HEAD plan. */
static clsa_status validate_heads(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp)
{
    if (!sp->per_head)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "CLSA_METHOD_PER_HEAD needs per_head (q_heads settings)");
    if (sp->tau_per_head)
        return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD, "CLSA_METHOD_PER_HEAD takes each head's tau from per_head, "
                         "not tau_per_head");
    for (int64_t h = 0; h < shape->q_heads; ++h) {
        const clsa_sparsity *e = &sp->per_head[h];
        char who[48];
        snprintf(who, sizeof who, "per_head[%lld]: ", (long long)h);
        if (!is_head_method(e->method))
            return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD,
                             "%smethod %d: a head's method must be dense, sale, streaming, sliding, topk, cdf or xattn",
                             who, (int)e->method);
        if (e->block_q != sp->block_q || e->block_k != sp->block_k)
            return clsa_fail(ctx, CLSA_ERR_INVALID_BLOCK_SIZE, "%sblocks %d x %d differ from the plan's %d x %d", who,
                             e->block_q, e->block_k, sp->block_q, sp->block_k);
        if (e->per_head || e->tau_per_head)
            return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD, "%sper_head and tau_per_head must be NULL", who);
        if (e->method == CLSA_METHOD_SALE && (e->sink_tokens != sp->sink_tokens || e->local_tokens != sp->local_tokens))
            return clsa_fail(ctx, CLSA_ERR_INVALID_TOKENS,
                             "%sa SALE head's sink_tokens and local_tokens (%d, %d) must equal the plan's (%d, %d)", who,
                             e->sink_tokens, e->local_tokens, sp->sink_tokens, sp->local_tokens);
        clsa_status st = validate_settings(ctx, e, who);
        if (st)
            return st;
    }
    return CLSA_SUCCESS;
}

static clsa_status validate_sparsity(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp)
{
    if (!is_method(sp->method))
        return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD, "sparsity method %d is not a clsa_method", (int)sp->method);
    if (sp->method == CLSA_METHOD_DENSE)
        return CLSA_SUCCESS;
    if (!valid_block(sp->block_q) || !valid_block(sp->block_k))
        return clsa_fail(ctx, CLSA_ERR_INVALID_BLOCK_SIZE,
                         "block_q = %d, block_k = %d: each must be a power of two from 16 to 128", sp->block_q,
                         sp->block_k);
    if (sp->method == CLSA_METHOD_MASK)
        return CLSA_SUCCESS;
    if (sp->method != CLSA_METHOD_PER_HEAD && sp->per_head)
        return clsa_fail(ctx, CLSA_ERR_INVALID_METHOD, "per_head is set, but the method is %s, not per-head",
                         clsa_method_name(sp->method));
    for (int64_t h = 0; sp->tau_per_head && h < shape->q_heads; ++h)
        if (!valid_tau(sp->tau_per_head[h]))
            return clsa_fail(ctx, CLSA_ERR_INVALID_TAU, "tau_per_head[%lld] = %g: must be finite and >= 0",
                             (long long)h, (double)sp->tau_per_head[h]);
    if (!(sp->refine_nats >= 0.0f && sp->refine_nats <= 16.0f))
        return clsa_fail(ctx, CLSA_ERR_INVALID_REFINE, "refine_nats = %g: must be from 0 to 16 nats",
                         (double)sp->refine_nats);
    if (sp->method == CLSA_METHOD_PER_HEAD) {
        if (sp->sink_tokens < 0 || sp->local_tokens < 0)
            return clsa_fail(ctx, CLSA_ERR_INVALID_TOKENS, "sink_tokens = %d, local_tokens = %d: must be >= 0",
                             sp->sink_tokens, sp->local_tokens);
        return validate_heads(ctx, shape, sp);
    }
    return validate_settings(ctx, sp, "");
}

/* The methods the plan's heads use (nothing for DENSE and MASK plans), and SALE's settings. */
static void note_methods(clsa_plan *plan, const clsa_sparsity *sp)
{
    memset(plan->uses, 0, sizeof plan->uses);
    if (!is_selecting(plan))
        return;
    if (sp->method != CLSA_METHOD_PER_HEAD)
        plan->uses[sp->method] = true;
    for (int64_t h = 0; sp->method == CLSA_METHOD_PER_HEAD && h < plan->shape.q_heads; ++h)
        plan->uses[sp->per_head[h].method] = true;
    plan->sale = plan->sparsity;
    plan->sale.method = plan->uses[CLSA_METHOD_SALE_EXACT] ? CLSA_METHOD_SALE_EXACT : CLSA_METHOD_SALE;
    plan->sale.per_head = NULL;
    plan->sale.tau_per_head = NULL;
}

/* Every query head's own settings: per_head's entries, or the plan's with tau_per_head's tau. */
static clsa_status resolve_heads(clsa_plan *plan, const clsa_sparsity *sp)
{
    const int64_t heads = plan->shape.q_heads;
    plan->heads = calloc((size_t)heads, sizeof *plan->heads);
    if (!plan->heads)
        return clsa_fail(plan->ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the per-head settings");
    for (int64_t h = 0; h < heads; ++h) {
        clsa_sparsity *e = &plan->heads[h];
        *e = sp->method == CLSA_METHOD_PER_HEAD ? sp->per_head[h] : *sp;
        if (sp->method != CLSA_METHOD_PER_HEAD && sp->tau_per_head)
            e->tau = sp->tau_per_head[h];
        e->per_head = NULL;
        e->tau_per_head = NULL;
    }
    return CLSA_SUCCESS;
}

/* The workspace: K^T and V (all plans), each selector's own buffers, then the block mask. */
static clsa_status lay_out_workspace(clsa_plan *plan)
{
    clsa_context *ctx = plan->ctx;
    const clsa_shape *s = &plan->shape;
    int64_t offset = clsa_round_up((int64_t)plan->kv.bytes, 256);
    const int64_t bq = s->batch * s->q_heads;
    bool ok = true;
    if (is_sparse(plan)) {
        clsa_mask_geometry *m = &plan->mask;
        m->block_q = plan->sparsity.block_q;
        m->block_k = plan->sparsity.block_k;
        m->num_q_blocks = (s->q_len + m->block_q - 1) / m->block_q;
        m->num_k_blocks = (s->kv_len + m->block_k - 1) / m->block_k;
        m->rows = bq * m->num_q_blocks;
    }
    for (const clsa_selector *const *sel = clsa_selectors; ok && *sel; ++sel)
        if (plan->uses[(*sel)->method] && (*sel)->lay_out)
            ok = (*sel)->lay_out(plan, &plan->selector[(*sel)->method], &offset);
    if (ok && s->value_prune > 0.0f)
        ok = clsa_workspace_region(&plan->value_counts_at, &offset, bq, s->q_len, 2, 4);
    if (ok && is_sparse(plan)) {
        clsa_mask_geometry *m = &plan->mask;
        ok = clsa_workspace_region(&plan->mask_counts_at, &offset, m->rows, 1, 1, 4) &&
             clsa_workspace_region(&plan->mask_indices_at, &offset, m->rows, m->num_k_blocks, 1, 4);
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
    note_methods(plan, plan->sparsity.method == CLSA_METHOD_DENSE ? &plan->sparsity : sparsity);
    /* The caller's arrays are copied into plan->heads by clsa_plan_create. */
    plan->sparsity.tau_per_head = NULL;
    plan->sparsity.per_head = NULL;
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
    if (!st && is_selecting(plan))
        st = resolve_heads(plan, sparsity);
    for (const clsa_selector *const *sel = clsa_selectors; !st && *sel; ++sel)
        if (plan->uses[(*sel)->method])
            st = (*sel)->build(plan, &plan->selector[(*sel)->method]);
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
    for (const clsa_selector *const *sel = clsa_selectors; *sel; ++sel)
        if (plan->uses[(*sel)->method])
            (*sel)->release(plan, &plan->selector[(*sel)->method]);
    if (plan->head_settings)
        clReleaseMemObject(plan->head_settings);
    if (plan->own_workspace)
        clReleaseMemObject(plan->own_workspace);
    free(plan->heads);
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
    if (!has_sale(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "only plans with SALE heads have quantization buffers");
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

/* Enqueues, in the registry's order, each used selector's preparation (with `prepare`) and then
   its selection (with `select`), each after the one before; *out is the last one's event. */
static clsa_status run_selectors(clsa_plan *plan, bool prepare, bool select, const clsa_select_call *call,
                                 cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    cl_event last = NULL;
    clsa_status st = CLSA_SUCCESS;
    for (const clsa_selector *const *sel = clsa_selectors; !st && *sel; ++sel) {
        if (!plan->uses[(*sel)->method])
            continue;
        clsa_selector_state *state = &plan->selector[(*sel)->method];
        for (int step = 0; !st && step < 2; ++step) {
            clsa_status (*op)(clsa_plan *, clsa_selector_state *, const clsa_select_call *, cl_uint, const cl_event *,
                              cl_event *) = step == 0 ? (prepare ? (*sel)->prepare : NULL) : (select ? (*sel)->select : NULL);
            if (!op)
                continue;
            cl_event done = NULL;
            st = last ? op(plan, state, call, 1, &last, &done) : op(plan, state, call, num_wait, wait_list, &done);
            if (last)
                clReleaseEvent(last);
            last = done;
        }
    }
    /* Every selecting plan has a selection, and every plan with SALE heads a preparation. */
    if (st || !out) {
        if (last)
            clReleaseEvent(last);
        return st;
    }
    *out = last;
    return CLSA_SUCCESS;
}

clsa_status clsa_quantize(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                          cl_uint num_wait, const cl_event *wait_list, cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(plan->ctx);
    if (!plan->uses[CLSA_METHOD_SALE])
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "clsa_quantize needs a plan with SALE heads");
    if (!workspace)
        return clsa_fail(plan->ctx, CLSA_ERR_NULL_ARGUMENT, "clsa_quantize writes into the workspace: it cannot be NULL");
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, NULL, NULL, false);
    const clsa_select_call call = {queue, q, k, workspace, NULL};
    return st ? st : run_selectors(plan, true, false, &call, num_wait, wait_list, out_event);
}

clsa_status clsa_estimate_mask(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                               const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                               cl_event *out_event)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_clear_error(plan->ctx);
    if (!is_selecting(plan))
        return clsa_fail(plan->ctx, CLSA_ERR_WRONG_PLAN, "clsa_estimate_mask needs a plan whose mask a selector writes "
                         "(not dense or mask)");
    if (!workspace)
        return clsa_fail(plan->ctx, CLSA_ERR_NULL_ARGUMENT, "clsa_estimate_mask works in the workspace: it cannot be NULL");
    clsa_block_mask m;
    clsa_status st = check_common(plan, queue, workspace, num_wait, wait_list);
    if (!st)
        st = check_tensors(plan, q, k, NULL, NULL, false);
    if (!st)
        st = resolve_mask(plan, workspace, mask, &m);
    const clsa_select_call call = {queue, q, k, workspace, &m};
    return st ? st : run_selectors(plan, false, true, &call, num_wait, wait_list, out_event);
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
    if (!is_selecting(plan))
        return run_attention(plan, queue, q, k, v, o, workspace, NULL, num_wait, wait_list, out_event);
    /* The selectors (SALE: quantize, then estimate) into the workspace's mask, then sparse attention. */
    clsa_block_mask m;
    clsa_plan_workspace_mask(plan, workspace, &m);
    const clsa_select_call call = {queue, q, k, workspace, &m};
    cl_event selected = NULL;
    st = run_selectors(plan, true, true, &call, num_wait, wait_list, &selected);
    if (!st)
        st = run_attention(plan, queue, q, k, v, o, workspace, &m, 1, &selected, out_event);
    if (selected)
        clReleaseEvent(selected);
    return st;
}

clsa_status clsa_pruned_fraction(clsa_plan *plan, cl_command_queue queue, cl_mem workspace, double *fraction,
                                 double *per_head)
{
    if (!plan)
        return CLSA_ERR_NULL_ARGUMENT;
    clsa_context *ctx = plan->ctx;
    clsa_clear_error(ctx);
    const clsa_shape *s = &plan->shape;
    if (s->value_prune == 0.0f)
        return clsa_fail(ctx, CLSA_ERR_WRONG_PLAN, "the plan does not prune attention values (value_prune 0)");
    if (!queue || !fraction)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "queue and fraction are needed");
    if (!workspace && !plan->own_workspace)
        return clsa_fail(ctx, CLSA_ERR_WRONG_PLAN, "the workspace is NULL and the plan has run no attention in its own");
    if (!workspace)
        workspace = plan->own_workspace;
    clsa_status st = clsa_check_buffer(ctx, workspace, plan->workspace_bytes, "workspace", CLSA_ERR_WORKSPACE_TOO_SMALL);
    if (st)
        return st;
    const size_t rows = (size_t)(s->batch * s->q_heads * s->q_len), bytes = rows * 2 * sizeof(cl_uint);
    cl_uint *counts = malloc(bytes);
    if (!counts)
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory to read the pruning counts");
    cl_int err = clEnqueueReadBuffer(queue, workspace, CL_TRUE, plan->value_counts_at, bytes, counts, 0, NULL, NULL);
    if (err) {
        free(counts);
        return clsa_fail(ctx, (clsa_status)err, "reading the pruning counts");
    }
    double pruned_all = 0.0, seen_all = 0.0;
    for (int64_t h = 0; h < s->q_heads; ++h) {
        double pruned = 0.0, seen = 0.0;
        for (int64_t b = 0; b < s->batch; ++b)
            for (int64_t i = 0; i < s->q_len; ++i) {
                const cl_uint *row = counts + 2 * ((b * s->q_heads + h) * s->q_len + i);
                pruned += row[0], seen += row[1];
            }
        if (per_head)
            per_head[h] = seen > 0 ? pruned / seen : 0.0;
        pruned_all += pruned, seen_all += seen;
    }
    *fraction = seen_all > 0 ? pruned_all / seen_all : 0.0;
    free(counts);
    return CLSA_SUCCESS;
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

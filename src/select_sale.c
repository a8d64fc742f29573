/* SALE as a selector: the int4 quantizer (src/quantize.c) and the estimator (src/estimate.c) behind
   the selector table, for SALE and for its exact-score oracle. Its state lives in the plan's
   quantize, estimate, quant and head_log2_tau, which the two stages read. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* The quantization buffers and row statistics. */
static bool lay_out(clsa_plan *plan, clsa_selector_state *state, int64_t *offset)
{
    (void)state;
    if (plan->quant.head_dim_even) /* SALE and its oracle share them */
        return true;
    const clsa_shape *s = &plan->shape;
    const int64_t bq = s->batch * s->q_heads, bk = s->batch * s->kv_heads;
    clsa_quant_layout *L = &plan->quant;
    L->head_dim_even = clsa_round_up(s->head_dim, 2);
    L->kv_len_padded = plan->kv.kv_len_padded;
    const int64_t code_bytes = L->head_dim_even / 2;
    L->group_channels = CLSA_QUANT_GROUP;
    L->groups = (s->head_dim + CLSA_QUANT_GROUP - 1) / CLSA_QUANT_GROUP;
    return clsa_workspace_region(&L->q_mean, offset, bq, s->head_dim, 1, 4) &&
           clsa_workspace_region(&L->k_mean, offset, bk, s->head_dim, 1, 4) &&
           clsa_workspace_region(&L->q_codes, offset, bq, s->q_len, code_bytes, 1) &&
           clsa_workspace_region(&L->q_scales, offset, bq, s->q_len, L->groups, 4) &&
           clsa_workspace_region(&L->k_codes, offset, bk, code_bytes, L->kv_len_padded, 1) &&
           clsa_workspace_region(&L->k_scales, offset, bk, L->groups, L->kv_len_padded, 4) &&
           clsa_workspace_region(&L->k_correction, offset, bq, L->kv_len_padded, 1, 4) &&
           clsa_workspace_region(&L->k_pairs, offset, bk, L->groups * L->group_channels, L->kv_len_padded / 2, 4) &&
           clsa_workspace_region(&L->row_threshold, offset, bq, s->q_len, 1, 4) &&
           clsa_workspace_region(&L->row_shift, offset, bq, s->q_len, 1, 4);
}

/* Per-head thresholds on the device, as log2(tau), or -inf for a dense head (tau <= 1e-5). Heads of
   other selectors get NaN, which the estimator's kernels read as "not mine": they skip them. */
static clsa_status upload_thresholds(clsa_plan *plan)
{
    const int64_t heads = plan->shape.q_heads;
    float *log2_tau = malloc(sizeof(float) * (size_t)heads);
    if (!log2_tau)
        return clsa_fail(plan->ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the thresholds");
    for (int64_t h = 0; h < heads; ++h) {
        const clsa_sparsity *e = &plan->heads[h];
        const bool sale = e->method == CLSA_METHOD_SALE || e->method == CLSA_METHOD_SALE_EXACT;
        log2_tau[h] = !sale ? NAN : e->tau <= 1e-5f ? -INFINITY : log2f(e->tau);
    }
    cl_int err = CL_SUCCESS;
    plan->head_log2_tau = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                         sizeof(float) * (size_t)heads, log2_tau, &err);
    free(log2_tau);
    if (err) {
        plan->head_log2_tau = NULL;
        return clsa_fail(plan->ctx, (clsa_status)err, "creating the threshold buffer");
    }
    return CLSA_SUCCESS;
}

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    (void)state;
    if (plan->head_log2_tau) /* built already, for the other of SALE and its oracle */
        return CLSA_SUCCESS;
    clsa_status st = upload_thresholds(plan);
    if (!st && plan->sale.method == CLSA_METHOD_SALE)
        st = clsa_quantize_init(plan->ctx, &plan->shape, &plan->quantize);
    if (!st)
        st = clsa_estimate_init(plan->ctx, &plan->shape, &plan->sale, &plan->estimate);
    return st;
}

static clsa_status quantize(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                            cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    (void)state;
    return clsa_quantize_enqueue(plan, call->queue, call->q, call->k, call->workspace, num_wait, wait_list, out);
}

/* The exact-score oracle and SALE's exact second look first lay K^T out in the workspace (attention
   lays it out again with V: its caller may change K between). */
static clsa_status estimate(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                            cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    (void)state;
    if (plan->sale.method != CLSA_METHOD_SALE_EXACT && plan->sale.refine_nats == 0.0f)
        return clsa_estimate_enqueue(plan, call->queue, call->q, call->k, call->workspace, call->mask, num_wait,
                                     wait_list, out);
    cl_event kt_done = NULL;
    clsa_status st = clsa_kv_layout_enqueue(&plan->kv, plan, call->queue, call->k, NULL, call->workspace, num_wait,
                                            wait_list, &kt_done);
    if (!st)
        st = clsa_estimate_enqueue(plan, call->queue, call->q, call->k, call->workspace, call->mask, 1, &kt_done, out);
    if (kt_done)
        clReleaseEvent(kt_done);
    return st;
}

static void release(clsa_plan *plan, clsa_selector_state *state)
{
    (void)state;
    clsa_quantize_release(&plan->quantize);
    clsa_estimate_release(&plan->estimate);
    if (plan->head_log2_tau)
        clReleaseMemObject(plan->head_log2_tau);
    plan->head_log2_tau = NULL;
}

const clsa_selector clsa_select_sale = {
    .method = CLSA_METHOD_SALE,
    .lay_out = lay_out,
    .build = build,
    .prepare = quantize,
    .select = estimate,
    .release = release,
};

const clsa_selector clsa_select_sale_exact = {
    .method = CLSA_METHOD_SALE_EXACT,
    .lay_out = lay_out,
    .build = build,
    .select = estimate,
    .release = release,
};

/* Block selectors: the registry, settings checks, the per-head settings table, and the launch of
   the selectors that write one mask row per work-item (cl/common.cl, "Block selectors"). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern const clsa_selector clsa_select_sale, clsa_select_sale_exact, clsa_select_dense, clsa_select_streaming,
    clsa_select_sliding, clsa_select_topk, clsa_select_cdf, clsa_select_xattn;

/* Every selector writes only its own heads' rows; they run in this order. Adding a selector: its
   files (src/select_<name>.c, cl/select_<name>.cl, listed in meson.build), and one line here. */
const clsa_selector *const clsa_selectors[] = {
    &clsa_select_sale,
    &clsa_select_sale_exact,
    &clsa_select_dense,
    &clsa_select_streaming,
    &clsa_select_sliding,
    &clsa_select_topk,
    &clsa_select_cdf,
    &clsa_select_xattn,
    NULL,
};

bool clsa_workspace_region(size_t *at, int64_t *offset, int64_t n1, int64_t n2, int64_t n3, int64_t elem)
{
    int64_t bytes, end;
    if (!clsa_mul_i64(n1, n2, &bytes) || !clsa_mul_i64(bytes, n3, &bytes) || !clsa_mul_i64(bytes, elem, &bytes) ||
        !clsa_add_i64(*offset, bytes, &end) || !clsa_add_i64(end, 255, &end))
        return false;
    *at = (size_t)*offset;
    *offset = end / 256 * 256;
    return true;
}

static bool in_unit_interval(float x) { return x > 0.0f && x <= 1.0f; }

clsa_status clsa_selector_validate(clsa_context *ctx, const clsa_sparsity *sp, const char *who)
{
    const char *name = clsa_method_name(sp->method);
    switch (sp->method) {
    case CLSA_METHOD_SLIDING:
        if (sp->window_tokens < 1 || sp->window_tokens > (1 << 30))
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%swindow_tokens = %d: must be from 1 to 2^30", who,
                             sp->window_tokens);
        if (sp->window_symmetric != 0 && sp->window_symmetric != 1)
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%swindow_symmetric = %d: must be 0 or 1", who,
                             sp->window_symmetric);
        break;
    case CLSA_METHOD_TOPK:
        if (!in_unit_interval(sp->topk))
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%stopk = %g: must be in (0, 1]", who, (double)sp->topk);
        break;
    case CLSA_METHOD_CDF:
        if (!in_unit_interval(sp->cdf_gamma))
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%scdf_gamma = %g: must be in (0, 1]", who, (double)sp->cdf_gamma);
        break;
    case CLSA_METHOD_XATTN: {
        const int32_t s = sp->xattn_stride, limit = sp->block_q < sp->block_k ? sp->block_q : sp->block_k;
        if (!in_unit_interval(sp->xattn_threshold))
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%sxattn_threshold = %g: must be in (0, 1]", who,
                             (double)sp->xattn_threshold);
        if (s < 1 || s > limit || (s & (s - 1)))
            return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR,
                             "%sxattn_stride = %d: must be a power of two from 1 to min(block_q, block_k) = %d", who, s,
                             limit);
        break;
    }
    default:
        break;
    }
    if (sp->method != CLSA_METHOD_SALE && sp->method != CLSA_METHOD_SALE_EXACT && sp->keep_forced != 0 &&
        sp->keep_forced != 1)
        return clsa_fail(ctx, CLSA_ERR_INVALID_SELECTOR, "%s%s: keep_forced = %d: must be 0 or 1", who, name ? name : "?",
                         sp->keep_forced);
    return CLSA_SUCCESS;
}

static cl_int fraction_bits(const clsa_sparsity *h)
{
    float f = h->method == CLSA_METHOD_TOPK ? h->topk : h->method == CLSA_METHOD_CDF ? h->cdf_gamma : h->xattn_threshold;
    cl_int bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

clsa_status clsa_head_settings_upload(clsa_plan *plan)
{
    if (plan->head_settings)
        return CLSA_SUCCESS;
    const int64_t heads = plan->shape.q_heads;
    cl_int *table = calloc((size_t)heads, sizeof(cl_int) * CLSA_HEAD_SETTINGS);
    if (!table)
        return clsa_fail(plan->ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "no memory for the per-head settings");
    for (int64_t h = 0; h < heads; ++h) {
        const clsa_sparsity *e = &plan->heads[h];
        cl_int *row = table + h * CLSA_HEAD_SETTINGS;
        row[CLSA_HS_METHOD] = (cl_int)e->method;
        row[CLSA_HS_SINK] = e->sink_tokens;
        row[CLSA_HS_LOCAL] = e->local_tokens;
        /* STREAMING's rule is the forced set itself. */
        row[CLSA_HS_FORCED] = e->method == CLSA_METHOD_STREAMING ? 1 : e->keep_forced;
        row[CLSA_HS_WINDOW] = e->window_tokens;
        row[CLSA_HS_SYMMETRIC] = e->window_symmetric;
        row[CLSA_HS_STRIDE] = e->xattn_stride;
        row[CLSA_HS_FRACTION] = fraction_bits(e);
    }
    cl_int err = CL_SUCCESS;
    plan->head_settings = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                         sizeof(cl_int) * CLSA_HEAD_SETTINGS * (size_t)heads, table, &err);
    free(table);
    if (err) {
        plan->head_settings = NULL;
        return clsa_fail(plan->ctx, (clsa_status)err, "creating the per-head settings buffer");
    }
    return CLSA_SUCCESS;
}

clsa_status clsa_select_build(clsa_plan *plan, clsa_selector_state *state, const char *source_name,
                              const char *source, const char *const *names, int count)
{
    clsa_status st = clsa_head_settings_upload(plan);
    if (st)
        return st;
    clsa_defines d = {0};
    clsa_define(&d, "BLOCK_Q", plan->mask.block_q);
    clsa_define(&d, "BLOCK_K", plan->mask.block_k);
    clsa_define(&d, "METHOD_DENSE", CLSA_METHOD_DENSE);
    clsa_define(&d, "METHOD_STREAMING", CLSA_METHOD_STREAMING);
    clsa_define(&d, "METHOD_SLIDING", CLSA_METHOD_SLIDING);
    clsa_define(&d, "METHOD_TOPK", CLSA_METHOD_TOPK);
    clsa_define(&d, "METHOD_CDF", CLSA_METHOD_CDF);
    clsa_define(&d, "METHOD_XATTN", CLSA_METHOD_XATTN);
    cl_kernel *kernels[CLSA_SELECTOR_KERNELS];
    for (int i = 0; i < count; ++i)
        kernels[i] = &state->kernels[i];
    st = clsa_stage_kernels(plan->ctx, source_name, source, &plan->shape, 0, &d, names, kernels, count);
    for (int i = 0; !st && i < count; ++i)
        st = clsa_kernel_fits(plan->ctx, state->kernels[i], names[i], CLSA_PRIVATE_LOCAL);
    return st;
}

clsa_status clsa_select_rows(clsa_plan *plan, cl_kernel kernel, const char *name, const clsa_select_call *call,
                             const cl_long *regions, int region_count, cl_uint num_wait, const cl_event *wait_list,
                             cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    cl_int q_heads = (cl_int)s->q_heads, group = (cl_int)(s->q_heads / s->kv_heads);
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len, causal = s->causal ? 1 : 0;
    cl_int num_q_blocks = (cl_int)plan->mask.num_q_blocks, num_k_blocks = (cl_int)plan->mask.num_k_blocks;
    cl_float scale_log2e = clsa_scale_log2e(s);
    clsa_args a = {kernel, 0, CL_SUCCESS};
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, num_q_blocks);
    CLSA_ARG(&a, num_k_blocks);
    CLSA_ARG(&a, scale_log2e);
    CLSA_ARG(&a, plan->head_settings);
    clsa_arg_mask(&a, call->mask);
    clsa_arg_tensor(&a, call->q, &plan->q);
    clsa_arg_tensor(&a, call->k, &plan->k);
    CLSA_ARG(&a, call->workspace);
    for (int i = 0; i < region_count; ++i)
        CLSA_ARG(&a, regions[i]);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting %s argument %u", name, a.index - 1);
    const size_t global[2] = {(size_t)plan->mask.num_q_blocks, (size_t)(s->batch * s->q_heads)};
    const size_t local[2] = {CLSA_PRIVATE_LOCAL, 1};
    return clsa_enqueue(plan->ctx, call->queue, kernel, name, global, local, num_wait, wait_list, out);
}

clsa_status clsa_select_rows_enqueue(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                                     cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    char name[64];
    size_t len = 0;
    clGetKernelInfo(state->kernels[0], CL_KERNEL_FUNCTION_NAME, sizeof name, name, &len);
    name[len < sizeof name ? len : sizeof name - 1] = '\0';
    return clsa_select_rows(plan, state->kernels[0], name, call, NULL, 0, num_wait, wait_list, out);
}

void clsa_select_release(clsa_plan *plan, clsa_selector_state *state)
{
    (void)plan;
    for (int i = 0; i < CLSA_SELECTOR_KERNELS; ++i)
        if (state->kernels[i])
            clReleaseKernel(state->kernels[i]);
    memset(state, 0, sizeof *state);
}

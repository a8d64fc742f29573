/* Host side of cl/quantize.cl: token means, int4 codes and scales, per-key corrections. */
#include "internal.h"

#include <stdio.h>

clsa_status clsa_quantize_init(clsa_context *ctx, const clsa_shape *shape, clsa_quantize_stage *out)
{
    /* The GPU variant sums each head's tokens in a work-group (cl/quantize.cl); its size is the
       table's mean_group (auto: 256), at most what the device allows. */
    const clsa_tuning *t = &ctx->tuning;
    const bool gpu = clsa_tuned_variant(ctx, t->quantize) == CLSA_STYLE_GPU;
    size_t group = t->mean_group ? (size_t)t->mean_group : 256;
    while (group > 16 && group > ctx->caps.max_work_group_size)
        group /= 2;
    out->mean_group = gpu ? group : 0;
    const unsigned features = gpu && clsa_tuned_on(t->subgroups, ctx->caps.has_subgroups != 0) ? CLSA_FEATURE_SUBGROUPS : 0;
    clsa_defines d = {0};
    clsa_define(&d, "QUANTIZE_GPU", gpu ? 1 : 0);
    clsa_define(&d, "MEAN_GROUP", (int)group);
    const char *const names[4] = {"token_mean", "quantize_q", "quantize_k", "pair_key_codes"};
    cl_kernel *const kernels[4] = {&out->token_mean, &out->quantize_q, &out->quantize_k, &out->pair_key_codes};
    clsa_status st = clsa_stage_kernels(ctx, "quantize", clsa_cl_quantize, shape, features, &d, names, kernels, 4);
    return st || !gpu ? st : clsa_kernel_fits(ctx, out->token_mean, "token_mean", group);
}

static clsa_status enqueue_mean(const clsa_plan *plan, cl_command_queue queue, cl_mem workspace, cl_mem x,
                                const clsa_tensor_layout *t, size_t mean_at, cl_uint num_wait,
                                const cl_event *wait_list, cl_event *out)
{
    const clsa_quantize_stage *stage = &plan->quantize;
    cl_long at = (cl_long)mean_at;
    cl_int heads = (cl_int)t->heads, len = (cl_int)t->len;
    clsa_args a = {stage->token_mean, 0, CL_SUCCESS};
    clsa_arg_tensor(&a, x, t);
    CLSA_ARG(&a, heads);
    CLSA_ARG(&a, len);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, at);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting token_mean argument %u", a.index - 1);
    const size_t per_group = stage->mean_group ? stage->mean_group : 1;
    size_t global[2] = {(size_t)plan->quant.groups * per_group, (size_t)(plan->shape.batch * t->heads)};
    const size_t local[2] = {per_group, 1};
    return clsa_enqueue(plan->ctx, queue, stage->token_mean, "token_mean", global, stage->mean_group ? local : NULL,
                        num_wait, wait_list, out);
}

clsa_status clsa_quantize_enqueue(const clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k,
                                  cl_mem workspace, cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    const clsa_quant_layout *L = &plan->quant;
    const clsa_quantize_stage *stage = &plan->quantize;
    cl_event means[2] = {NULL, NULL}, q_done = NULL, k_done = NULL;
    clsa_status st = enqueue_mean(plan, queue, workspace, q, &plan->q, L->q_mean, num_wait, wait_list, &means[0]);
    if (!st)
        st = enqueue_mean(plan, queue, workspace, k, &plan->k, L->k_mean, num_wait, wait_list, &means[1]);

    cl_int q_heads = (cl_int)s->q_heads, q_len = (cl_int)s->q_len, kv_heads = (cl_int)s->kv_heads;
    cl_int group = (cl_int)(s->q_heads / s->kv_heads), kv_len = (cl_int)s->kv_len;
    cl_int padded = (cl_int)L->kv_len_padded;
    cl_long q_mean = (cl_long)L->q_mean, k_mean = (cl_long)L->k_mean, q_codes = (cl_long)L->q_codes;
    cl_long q_scales = (cl_long)L->q_scales, k_codes = (cl_long)L->k_codes, k_scales = (cl_long)L->k_scales;
    cl_long corr = (cl_long)L->k_correction;
    const size_t local[2] = {CLSA_PRIVATE_LOCAL, 1};
    if (!st) {
        clsa_args a = {stage->quantize_q, 0, CL_SUCCESS};
        clsa_arg_tensor(&a, q, &plan->q);
        CLSA_ARG(&a, q_heads);
        CLSA_ARG(&a, q_len);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, q_mean);
        CLSA_ARG(&a, q_codes);
        CLSA_ARG(&a, q_scales);
        size_t global[2] = {(size_t)s->q_len, (size_t)(s->batch * s->q_heads)};
        st = a.err ? clsa_fail(plan->ctx, (clsa_status)a.err, "setting quantize_q argument %u", a.index - 1)
                   : clsa_enqueue(plan->ctx, queue, stage->quantize_q, "quantize_q", global, local, 1, &means[0], &q_done);
    }
    if (!st) {
        /* quantize_k needs both means (its corrections use mean_q), and runs after quantize_q so
           that the returned event covers the whole stage. */
        cl_event deps[3] = {means[0], means[1], q_done};
        clsa_args a = {stage->quantize_k, 0, CL_SUCCESS};
        clsa_arg_tensor(&a, k, &plan->k);
        CLSA_ARG(&a, kv_heads);
        CLSA_ARG(&a, group);
        CLSA_ARG(&a, kv_len);
        CLSA_ARG(&a, padded);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, q_mean);
        CLSA_ARG(&a, k_mean);
        CLSA_ARG(&a, k_codes);
        CLSA_ARG(&a, k_scales);
        CLSA_ARG(&a, corr);
        size_t global[2] = {(size_t)L->kv_len_padded, (size_t)(s->batch * s->kv_heads)};
        st = a.err ? clsa_fail(plan->ctx, (clsa_status)a.err, "setting quantize_k argument %u", a.index - 1)
                   : clsa_enqueue(plan->ctx, queue, stage->quantize_k, "quantize_k", global, local, 3, deps, &k_done);
    }
    if (!st) {
        /* The key codes in the estimator's paired form (cl/common.cl, PAIR_SHIFT). */
        cl_long pairs = (cl_long)L->k_pairs;
        clsa_args a = {stage->pair_key_codes, 0, CL_SUCCESS};
        CLSA_ARG(&a, padded);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, k_codes);
        CLSA_ARG(&a, pairs);
        size_t global[2] = {(size_t)L->kv_len_padded / 2, (size_t)(s->batch * s->kv_heads)};
        st = a.err ? clsa_fail(plan->ctx, (clsa_status)a.err, "setting pair_key_codes argument %u", a.index - 1)
                   : clsa_enqueue(plan->ctx, queue, stage->pair_key_codes, "pair_key_codes", global, local, 1, &k_done, out);
    }
    if (k_done)
        clReleaseEvent(k_done);
    for (int i = 0; i < 2; ++i)
        if (means[i])
            clReleaseEvent(means[i]);
    if (q_done)
        clReleaseEvent(q_done);
    return st;
}

void clsa_quantize_release(clsa_quantize_stage *stage)
{
    cl_kernel *all[4] = {&stage->token_mean, &stage->quantize_q, &stage->quantize_k, &stage->pair_key_codes};
    for (int i = 0; i < 4; ++i)
        if (*all[i]) {
            clReleaseKernel(*all[i]);
            *all[i] = NULL;
        }
}

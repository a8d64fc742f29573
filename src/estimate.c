/* Host side of cl/estimate.cl: per-row thresholds, then the block mask. */
#include "internal.h"

#include <stdio.h>

clsa_status clsa_estimate_init(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp,
                               clsa_estimate_stage *out)
{
    /* Rows per register tile of the CPU variant: 4, on every device. With AVX2 code (a float16 is
       two of its 16 registers) 8 rows spilled: 70 against 63 ms at 8K on Intel's runtime made to
       emit AVX2 (CL_CONFIG_CPU_TARGET_ARCH=core-avx2); on AVX-512 4 and 8 rows ran the same (45-46
       ms Intel, 63.5 ms PoCL). The devices' reported native vector width is no guide: Intel's
       runtime reports 16 floats when it emits AVX2. */
    const int est_rows = 4;
    const clsa_tuning *t = &ctx->tuning;
    const clsa_device_info *c = &ctx->caps;
    /* The GPU variant estimates with int4 codes; the exact-score oracle (an evaluation tool) always
       runs the CPU variant's kernel. */
    out->gpu = sp->method == CLSA_METHOD_SALE && clsa_tuned_variant(ctx, t->estimate) == CLSA_STYLE_GPU;
    unsigned features = 0;
    if (out->gpu && clsa_tuned_on(t->int_dot, (c->integer_dot_product & CLSA_INT_DOT_4X8_PACKED) != 0))
        features |= CLSA_FEATURE_INT_DOT;
    if (out->gpu && clsa_tuned_on(t->subgroups, c->has_subgroups != 0))
        features |= CLSA_FEATURE_SUBGROUPS;
    clsa_defines d = {0};
    clsa_define(&d, "BLOCK_Q", sp->block_q);
    clsa_define(&d, "BLOCK_K", sp->block_k);
    clsa_define(&d, "EST_ROWS", est_rows);
    clsa_define(&d, "EXACT", sp->method == CLSA_METHOD_SALE_EXACT ? 1 : 0);
    clsa_define(&d, "ESTIMATE_GPU", out->gpu ? 1 : 0);
    if (!out->gpu) {
        const char *const names[2] = {"row_threshold", "estimate_mask"};
        cl_kernel *const kernels[2] = {&out->row_threshold, &out->estimate_mask};
        clsa_status st = clsa_stage_kernels(ctx, "estimate", clsa_cl_estimate, shape, features, &d, names, kernels, 2);
        return st ? st : clsa_kernel_fits(ctx, out->estimate_mask, "estimate_mask", CLSA_PRIVATE_LOCAL);
    }
    const char *const names[4] = {"row_threshold", "reference_thresholds", "estimate_blocks", "compact_mask"};
    cl_kernel *const kernels[4] = {&out->row_threshold, &out->reference_thresholds, &out->estimate_blocks,
                                   &out->compact_mask};
    clsa_status st = clsa_stage_kernels(ctx, "estimate", clsa_cl_estimate, shape, features, &d, names, kernels, 4);
    return st ? st : clsa_kernel_fits(ctx, out->estimate_blocks, "estimate_blocks", (size_t)sp->block_k);
}

/* GPU variant: rows with no reference set get theirs (in place, after row_threshold). On success
   *after is replaced by the event of this kernel (the old one released). */
static clsa_status enqueue_reference(const clsa_plan *plan, cl_command_queue queue, cl_mem workspace, cl_event *after)
{
    const clsa_shape *s = &plan->shape;
    const clsa_quant_layout *L = &plan->quant;
    cl_kernel k = plan->estimate.reference_thresholds;
    cl_int q_heads = (cl_int)s->q_heads, group = (cl_int)(s->q_heads / s->kv_heads);
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len, causal = s->causal ? 1 : 0;
    cl_int padded = (cl_int)L->kv_len_padded;
    cl_float scale_log2e = clsa_scale_log2e(s);
    cl_long thr = (cl_long)L->row_threshold, q_codes = (cl_long)L->q_codes, q_scales = (cl_long)L->q_scales;
    cl_long k_codes = (cl_long)L->k_codes, k_scales = (cl_long)L->k_scales, corr = (cl_long)L->k_correction;
    clsa_args a = {k, 0, CL_SUCCESS};
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, padded);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, scale_log2e);
    CLSA_ARG(&a, plan->head_log2_tau);
    CLSA_ARG(&a, thr);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, q_codes);
    CLSA_ARG(&a, q_scales);
    CLSA_ARG(&a, k_codes);
    CLSA_ARG(&a, k_scales);
    CLSA_ARG(&a, corr);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting reference_thresholds argument %u", a.index - 1);
    size_t global[2] = {(size_t)s->q_len, (size_t)(s->batch * s->q_heads)};
    cl_event done = NULL;
    clsa_status st = clsa_enqueue(plan->ctx, queue, k, "reference_thresholds", global, NULL, 1, after, &done);
    if (!st) {
        clReleaseEvent(*after);
        *after = done;
    }
    return st;
}

/* GPU variant: the per-block decisions, then the packing of each mask row. */
static clsa_status enqueue_blocks(const clsa_plan *plan, cl_command_queue queue, const clsa_block_mask *mask,
                                  cl_event after, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    const clsa_mask_geometry *m = &plan->mask;
    const size_t local[2] = {(size_t)m->block_k, 1};
    const size_t global[2] = {(size_t)(m->num_k_blocks * m->block_k), (size_t)(m->num_q_blocks * s->batch * s->q_heads)};
    cl_event decided = NULL;
    clsa_status st = clsa_enqueue(plan->ctx, queue, plan->estimate.estimate_blocks, "estimate_blocks", global, local, 1,
                                  &after, &decided);
    if (st)
        return st;
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len, causal = s->causal ? 1 : 0;
    cl_int local_keys = plan->sale.local_tokens, nkb = (cl_int)m->num_k_blocks;
    cl_int q_heads = (cl_int)s->q_heads;
    clsa_args a = {plan->estimate.compact_mask, 0, CL_SUCCESS};
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, local_keys);
    CLSA_ARG(&a, nkb);
    CLSA_ARG(&a, plan->head_log2_tau);
    clsa_arg_mask(&a, mask);
    if (a.err)
        st = clsa_fail(plan->ctx, (clsa_status)a.err, "setting compact_mask argument %u", a.index - 1);
    const size_t rows[2] = {(size_t)m->num_q_blocks, (size_t)(s->batch * s->q_heads)};
    if (!st)
        st = clsa_enqueue(plan->ctx, queue, plan->estimate.compact_mask, "compact_mask", rows, NULL, 1, &decided, out);
    clReleaseEvent(decided);
    return st;
}

clsa_status clsa_estimate_enqueue(const clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k,
                                  cl_mem workspace, const clsa_block_mask *mask, cl_uint num_wait,
                                  const cl_event *wait_list, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    const clsa_sparsity *sp = &plan->sale;
    const clsa_quant_layout *L = &plan->quant;
    const clsa_estimate_stage *stage = &plan->estimate;
    cl_int q_heads = (cl_int)s->q_heads, group = (cl_int)(s->q_heads / s->kv_heads);
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len, causal = s->causal ? 1 : 0;
    cl_int sink = sp->sink_tokens, local = sp->local_tokens, padded = (cl_int)L->kv_len_padded;
    cl_int nkb = (cl_int)plan->mask.num_k_blocks;
    cl_float scale_log2e = clsa_scale_log2e(s);
    cl_long thr = (cl_long)L->row_threshold;

    clsa_args a = {stage->row_threshold, 0, CL_SUCCESS};
    clsa_arg_tensor(&a, q, &plan->q);
    clsa_arg_tensor(&a, k, &plan->k);
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, scale_log2e);
    CLSA_ARG(&a, sink);
    CLSA_ARG(&a, local);
    CLSA_ARG(&a, plan->head_log2_tau);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, thr);
    cl_long k_mean = plan->sale.method == CLSA_METHOD_SALE ? (cl_long)L->k_mean : -1; /* exact scores need no shift */
    cl_long shift_at = (cl_long)L->row_shift;
    CLSA_ARG(&a, k_mean);
    CLSA_ARG(&a, shift_at);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting row_threshold argument %u", a.index - 1);
    size_t global[2] = {(size_t)((s->q_len + 15) / 16), (size_t)(s->batch * s->q_heads)};
    cl_event thr_done = NULL;
    const size_t tile_local[2] = {CLSA_PRIVATE_LOCAL, 1};
    clsa_status st = clsa_enqueue(plan->ctx, queue, stage->row_threshold, "row_threshold", global, tile_local, num_wait,
                                  wait_list, &thr_done);
    if (st)
        return st;

    if (stage->gpu) {
        st = enqueue_reference(plan, queue, workspace, &thr_done);
        if (st) {
            clReleaseEvent(thr_done);
            return st;
        }
    }
    /* The CPU variant reads the key pairs, the GPU variant the key codes, at the same argument. */
    cl_long q_codes = (cl_long)L->q_codes, q_scales = (cl_long)L->q_scales;
    cl_long k_pairs = stage->gpu ? (cl_long)L->k_codes : (cl_long)L->k_pairs;
    cl_long k_scales = (cl_long)L->k_scales, corr = (cl_long)L->k_correction;
    cl_long kt_at = (cl_long)(plan->kv.kt_offset / 4);
    a = (clsa_args){stage->gpu ? stage->estimate_blocks : stage->estimate_mask, 0, CL_SUCCESS};
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, padded);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, scale_log2e);
    CLSA_ARG(&a, sink);
    CLSA_ARG(&a, local);
    CLSA_ARG(&a, nkb);
    CLSA_ARG(&a, plan->head_log2_tau);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, q_codes);
    CLSA_ARG(&a, q_scales);
    CLSA_ARG(&a, k_pairs);
    CLSA_ARG(&a, k_scales);
    CLSA_ARG(&a, corr);
    CLSA_ARG(&a, thr);
    clsa_arg_mask(&a, mask);
    if (plan->sale.method == CLSA_METHOD_SALE_EXACT) {
        /* The oracle scores Q against the f32 K^T that the K/V layout stage wrote. */
        clsa_arg_tensor(&a, q, &plan->q);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, kt_at);
    } else {
        /* The exact second look (rule 5 of clsa_sparsity) scores stored Q against the f32 K^T, as
           the oracle does. */
        cl_float refine_log2 = (cl_float)(sp->refine_nats * 1.4426950408889634);
        clsa_arg_tensor(&a, q, &plan->q);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, kt_at);
        CLSA_ARG(&a, shift_at);
        CLSA_ARG(&a, refine_log2);
    }
    if (a.err) {
        clReleaseEvent(thr_done);
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting estimate_mask argument %u", a.index - 1);
    }
    if (stage->gpu) {
        st = enqueue_blocks(plan, queue, mask, thr_done, out);
        clReleaseEvent(thr_done);
        return st;
    }
    size_t global2[2] = {(size_t)plan->mask.num_q_blocks, (size_t)(s->batch * s->q_heads)};
    /* Work-groups of 4 adjacent query blocks share each key tile in cache (cl/estimate.cl). */
    size_t local2[2] = {CLSA_PRIVATE_LOCAL, 1};
    st = clsa_enqueue(plan->ctx, queue, stage->estimate_mask, "estimate_mask", global2, local2, 1, &thr_done, out);
    clReleaseEvent(thr_done);
    return st;
}

void clsa_estimate_release(clsa_estimate_stage *stage)
{
    cl_kernel *all[5] = {&stage->row_threshold, &stage->estimate_mask, &stage->reference_thresholds,
                         &stage->estimate_blocks, &stage->compact_mask};
    for (int i = 0; i < 5; ++i)
        if (*all[i]) {
            clReleaseKernel(*all[i]);
            *all[i] = NULL;
        }
}

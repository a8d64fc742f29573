/*
 * The pooled selectors, TOPK and CDF (SpargeAttn, FlexPrefill): mean-pool each query block's rows
 * and each key block's keys, softmax the pooled scores of a query block over its visible key
 * blocks, then keep the top ceil(topk * n) of its n blocks (f32 product), or blocks in descending
 * order until their mass reaches cdf_gamma of the row's total. Rules in clsa.h (clsa_sparsity).
 * Defines: those of cl/common.cl's block selectors.
 */
#define GROUPS16 ((HEAD_DIM + 15) / 16)

/* The mean of each key block's keys (inside the tensor), per batch and kv head:
   pool[(bhk * num_key_blocks + kb) * HEAD_DIM_PADDED + c]. Global size (num_key_blocks, B*Hkv). */
__kernel void pool_keys(int kv_heads, int kv_len, int num_key_blocks, __global const STORAGE *k, long k_sb, long k_sh,
                        long k_st, __global uchar *ws, long pool_at)
{
    const int kb = get_global_id(0);
    const long bhk = get_global_id(1);
    if (kb >= num_key_blocks)
        return;
    const long at = (bhk / kv_heads) * k_sb + (bhk % kv_heads) * k_sh;
    const int first = kb * BLOCK_K, end = min(first + BLOCK_K, kv_len);
    float16 sum[GROUPS16];
    for (int g = 0; g < GROUPS16; ++g)
        sum[g] = (float16)(0.0f);
    for (int j = first; j < end; ++j)
        for (int g = 0; g < GROUPS16; ++g)
            sum[g] += load_group(k, at + j * k_st, g);
    __global float *out = ws_f32(ws, pool_at) + (bhk * num_key_blocks + kb) * HEAD_DIM_PADDED;
    for (int g = 0; g < GROUPS16; ++g)
        vstore16(sum[g] / (float)(end - first), g, out);
}

/* Global size (num_q_blocks, B*Hq); scores_at holds num_key_blocks floats per mask row. Serves the
   heads of `method` (METHOD_TOPK or METHOD_CDF). */
__kernel void select_pooled(SELECT_ARGS, long pool_at, long scores_at, long method)
{
    select_row r;
    if (!SELECT_BEGIN(r))
        return;
    if (r.settings[HS_METHOD] != method)
        return;
    if (r.visible_blocks == 0) {
        WRITE_MASK_ROW(r, kb, false);
        return;
    }
    /* The block's mean query, in log2 units (scores go through exp2). */
    float16 mean_q[GROUPS16];
    for (int g = 0; g < GROUPS16; ++g)
        mean_q[g] = (float16)(0.0f);
    for (int i = r.row_first; i <= r.row_last; ++i)
        for (int g = 0; g < GROUPS16; ++g)
            mean_q[g] += load_group(q, r.q_at + i * q_st, g);
    const float to_log2 = scale_log2e / (float)(r.row_last - r.row_first + 1);
    const int n = r.visible_blocks;
    __global const float *pool = ws_f32(ws, pool_at) + r.bhk * num_key_blocks * HEAD_DIM_PADDED;
    __global float *p = ws_f32(ws, scores_at) + r.mask_row * num_key_blocks;
    float m = -INFINITY;
    bool finite = true;
    for (int kb = 0; kb < n; ++kb) {
        float16 acc = (float16)(0.0f);
        for (int g = 0; g < GROUPS16; ++g)
            acc = fma(mean_q[g], vload16(g, pool + kb * HEAD_DIM_PADDED), acc);
        p[kb] = hsum16(acc) * to_log2;
        finite = finite && isfinite(p[kb]);
        m = fmax(m, p[kb]);
    }
    if (!finite) {
        WRITE_MASK_ROW(r, kb, true);
        return;
    }
    float l = 0.0f;
    for (int kb = 0; kb < n; ++kb) {
        p[kb] = exp2(p[kb] - m);
        l += p[kb];
    }
    float total = 0.0f;
    for (int kb = 0; kb < n; ++kb) {
        p[kb] /= l;
        total += p[kb];
    }
    const float fraction = as_float(r.settings[HS_FRACTION]);
    const uint cut = method == METHOD_TOPK ? kth_largest_bits(p, n, clamp((int)ceil(fraction * (float)n), 1, n))
                                           : mass_threshold_bits(p, n, fraction * total);
    WRITE_MASK_ROW(r, kb, as_uint(p[kb]) >= cut);
}

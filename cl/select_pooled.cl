/*
 * The pooled selectors, TOPK and CDF (SpargeAttn, FlexPrefill): mean-pool each query block's rows
 * and each key block's keys, softmax the pooled scores of a query block over its visible key
 * blocks, then keep the top ceil(topk * n) of its n blocks (f32 product), or blocks in descending
 * order until their mass reaches cdf_gamma of the row's total. Rules in clsa.h (clsa_sparsity).
 * Defines: those of cl/common.cl's block selectors.
 */
/* The mean of each key block's keys (inside the tensor), per batch and kv head:
   pool[(bhk * num_key_blocks + kb) * HEAD_DIM_PADDED + c]. Global size (num_key_blocks, B*Hkv). */
__kernel void pool_keys(int kv_heads, int kv_len, int num_key_blocks, __global const STORAGE *k, long k_sb, long k_sh,
                        long k_st, __global uchar *ws, long pool_at)
{
    const int kb = get_global_id(0);
    const long bhk = get_global_id(1);
    if (kb >= num_key_blocks)
        return;
    const long b = bhk / kv_heads;
    const long at = b * k_sb + (bhk - b * kv_heads) * k_sh; /* not %: see select_row_begin */
    const int first = kb * BLOCK_K, end = min(first + BLOCK_K, kv_len);
    __global float *out = ws_f32(ws, pool_at) + (bhk * num_key_blocks + kb) * HEAD_DIM_PADDED;
    /* Channel by channel: the block's keys stay in the cache, and oclgrind 21.10 loses track of
       private float16 arrays (it took a vector sum here for uninitialized). */
    for (int c = 0; c < HEAD_DIM; ++c) {
        float sum = 0.0f;
        for (long row = at + first * k_st, stop = at + end * k_st; row < stop; row += k_st)
            sum += load_elem(k, row + c);
        out[c] = sum / (float)(end - first);
    }
    for (int c = HEAD_DIM; c < HEAD_DIM_PADDED; ++c)
        out[c] = 0.0f;
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
    /* The block's mean query, in log2 units (scores go through exp2). Scalar loops, as in
       pool_keys: this is O(num_key_blocks * HEAD_DIM) per row. */
    float mean_q[HEAD_DIM];
    for (int c = 0; c < HEAD_DIM; ++c)
        mean_q[c] = 0.0f;
    for (int i = r.row_first; i <= r.row_last; ++i)
        for (int c = 0; c < HEAD_DIM; ++c)
            mean_q[c] += load_elem(q, r.q_at + i * q_st + c);
    const float to_log2 = scale_log2e / (float)(r.row_last - r.row_first + 1);
    const int n = r.visible_blocks;
    __global const float *pool = ws_f32(ws, pool_at) + r.bhk * num_key_blocks * HEAD_DIM_PADDED;
    __global float *p = ws_f32(ws, scores_at) + r.mask_row * num_key_blocks;
    float m = -INFINITY;
    bool finite = true;
    for (int kb = 0; kb < n; ++kb) {
        float dot = 0.0f;
        for (int c = 0; c < HEAD_DIM; ++c)
            dot = fma(mean_q[c], pool[kb * HEAD_DIM_PADDED + c], dot);
        p[kb] = dot * to_log2;
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

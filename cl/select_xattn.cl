/*
 * The XAttention selector (arXiv 2503.16428): strided antidiagonal scores with a cumulative
 * threshold. With stride S, query group a (rows S*a .. S*a+S-1 of the block) and key group b
 * (keys S*b .. S*b+S-1) score x(a, b) = scale / S * sum_r q[S*a + S-1-r] . k[S*b + r], over the
 * terms whose key the row sees: the mean of the antidiagonal, as XAttention's reference code
 * divides the strided product by the stride. Each query group's scores are softmaxed over the key groups with a term;
 * a key block's score is the sum of its groups' probabilities over the query block's groups (divided
 * by the number of groups with a term), and blocks are kept in descending order until their sum
 * reaches xattn_threshold of the total. Rules in clsa.h (clsa_sparsity).
 * Key groups run in the outer loop and the block's query groups in the inner one, so each key
 * group's S rows are read from memory once per pass and then hit the cache; the softmax of every
 * query group is carried along (two passes: max and sum, then the probabilities).
 * Defines: those of cl/common.cl's block selectors.
 */

/* The antidiagonal sum of query group row0 and key group key0 (unscaled); *any tells whether some
   term's key is visible to its row. */
static inline float antidiagonal(__global const STORAGE *q, long q_at, long q_st, __global const STORAGE *k, long k_at,
                                 long k_st, int row0, int key0, int stride, int q_len, int kv_len, int causal, bool *any)
{
    /* One vector sum over the whole antidiagonal, and one horizontal sum at the end. */
    float16 acc = (float16)(0.0f);
    *any = false;
    for (int t = 0; t < stride; ++t) {
        const int i = row0 + stride - 1 - t, j = key0 + t;
        if (j <= last_visible_key(i, q_len, kv_len, causal)) {
            for (int g = 0; g < (HEAD_DIM + 15) / 16; ++g)
                acc = fma(load_group(q, q_at + i * q_st, g), load_group(k, k_at + j * k_st, g), acc);
            *any = true;
        }
    }
    return hsum16(acc);
}

/* Global size (num_q_blocks, B*Hq); scores_at holds num_key_blocks floats per mask row. */
__kernel void select_xattn(SELECT_ARGS, long scores_at)
{
    select_row r;
    if (!SELECT_BEGIN(r) || r.settings[HS_METHOD] != METHOD_XATTN)
        return;
    const int n = r.visible_blocks, stride = r.settings[HS_STRIDE];
    const float to_log2 = scale_log2e / (float)stride;
    const int groups = BLOCK_Q / stride, key_groups = r.last_visible < 0 ? 0 : r.last_visible / stride + 1;
    __global float *score = ws_f32(ws, scores_at) + r.mask_row * num_key_blocks;
    for (int kb = 0; kb < n; ++kb)
        score[kb] = 0.0f;
    float m[BLOCK_Q], l[BLOCK_Q];
    for (int a = 0; a < groups; ++a) {
        m[a] = -INFINITY;
        l[a] = 0.0f;
    }
    bool finite = true;
    for (int pass = 0; pass < 2 && finite; ++pass)
        for (int b = 0; b < key_groups; ++b)
            for (int a = 0; a < groups; ++a) {
                bool any;
                const float x = to_log2 * antidiagonal(q, r.q_at, q_st, k, r.k_at, k_st, r.row_first + a * stride,
                                                           b * stride, stride, q_len, kv_len, causal, &any);
                if (!any)
                    continue;
                if (pass == 0) {
                    finite = finite && isfinite(x);
                    const float m_new = fmax(m[a], x);
                    l[a] = l[a] * exp2(m[a] - m_new) + exp2(x - m_new);
                    m[a] = m_new;
                } else {
                    score[b * stride / BLOCK_K] += exp2(x - m[a]) / l[a];
                }
            }
    int scored = 0;
    for (int a = 0; a < groups; ++a)
        scored += l[a] > 0.0f;
    /* Non-finite scores, or no antidiagonal term in the block: keep every visible block. */
    if (!finite || scored == 0) {
        WRITE_MASK_ROW(r, kb, true);
        return;
    }
    float total = 0.0f;
    for (int kb = 0; kb < n; ++kb) {
        score[kb] /= (float)scored;
        total += score[kb];
    }
    const uint cut = mass_threshold_bits(score, n, as_float(r.settings[HS_FRACTION]) * total);
    WRITE_MASK_ROW(r, kb, as_uint(score[kb]) >= cut);
}

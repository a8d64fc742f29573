/*
 * Quantization stage of SALE: per-head token means, smoothing, symmetric int4 codes with one
 * scale per token and 16-channel group, and the per-key corrections mean_q . K'_j.
 *
 * The int4 layout is common.cl's (CODE_BYTES, NUM_GROUPS and the offset helpers), which
 * estimate.cl reads with the same definitions. Channels past HEAD_DIM (an odd head_dim's last
 * nibble) and keys past kv_len are zero.
 */

/* Mean over the `len` tokens of channel c of one head, leaving out non-finite values (0 when none
   is finite), so that one Inf or NaN token does not reach every other token's codes (clsa.h,
   "Non-finite values"). Partial sums of 64 tokens keep the f32 error near that of a pairwise sum.
   Global size: (HEAD_DIM, B*H). */
__kernel void token_mean(__global const STORAGE *x, long sb, long sh, long st, int heads, int len,
                         __global uchar *ws, long mean_at)
{
    const int c = get_global_id(0), bh = get_global_id(1);
    if (c >= HEAD_DIM)
        return;
    const int b = bh / heads, h = bh - b * heads;
    const long base = b * sb + h * sh + c;
    float total = 0.0f;
    int count = 0;
    for (int t0 = 0; t0 < len; t0 += 64) {
        float part = 0.0f;
        for (int t = t0; t < min(t0 + 64, len); ++t) {
            const float v = load_elem(x, base + t * st);
            part += isfinite(v) ? v : 0.0f;
            count += isfinite(v) ? 1 : 0;
        }
        total += part;
    }
    ws_f32(ws, mean_at)[(long)bh * HEAD_DIM + c] = count > 0 ? total / (float)count : 0.0f;
}

/* Smooths one token into xs (x - mean) and sets the scale of each channel group, max|x'| / 7, and
   its inverse (0 for an all-zero group). A group holding a value that is not finite (in the input,
   or after smoothing overflowed) gets scale NaN and inverse 0: every estimate with this token is
   then NaN, and estimate_mask keeps such a block. */
static inline void smooth_row(__global const STORAGE *x, long at, __global const float *mean, float *xs,
                              float *scale, float *inv_scale)
{
    for (int g = 0; g < NUM_GROUPS; ++g)
        scale[g] = 0.0f;
    for (int c = 0; c < HEAD_DIM; ++c) {
        xs[c] = load_elem(x, at + c) - mean[c];
        scale[c / QUANT_GROUP] = fmax(scale[c / QUANT_GROUP], isfinite(xs[c]) ? fabs(xs[c]) : INFINITY);
    }
    for (int g = 0; g < NUM_GROUPS; ++g) {
        scale[g] = isinf(scale[g]) ? NAN : scale[g] / 7.0f;
        inv_scale[g] = scale[g] > 0.0f ? 1.0f / scale[g] : 0.0f;
    }
}

/* One int4 code: round to nearest even, clamp to [-7, 7]; 0 for the NaN of a non-finite value
   times its group's zero inverse scale. */
static inline int code_of(float x) { return isnan(x) ? 0 : (int)clamp(rint(x), -7.0f, 7.0f); }

/* The code byte of channels (2p, 2p+1), which share a group. */
static inline uchar code_pair(const float *xs, int p, const float *inv_scale)
{
    const int c = 2 * p;
    const float inv = inv_scale[c / QUANT_GROUP];
    const int lo = code_of(xs[c] * inv);
    const int hi = c + 1 < HEAD_DIM ? code_of(xs[c + 1] * inv) : 0;
    return code_byte(lo, hi);
}

/* Global size: (q_len, B*Hq). */
__kernel void quantize_q(__global const STORAGE *q, long sb, long sh, long st, int q_heads, int q_len,
                         __global uchar *ws, long mean_at, long codes_at, long scales_at)
{
    const int i = get_global_id(0), bh = get_global_id(1);
    if (i >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads;
    float xs[HEAD_DIM], scale[NUM_GROUPS], inv[NUM_GROUPS];
    smooth_row(q, b * sb + h * sh + (long)i * st, ws_f32(ws, mean_at) + (long)bh * HEAD_DIM, xs, scale, inv);
    __global uchar *codes = ws + codes_at + q_codes_at_row(bh, q_len, i);
    for (int p = 0; p < CODE_BYTES; ++p)
        codes[p] = code_pair(xs, p, inv);
    for (int g = 0; g < NUM_GROUPS; ++g)
        ws_f32(ws, scales_at)[q_scales_at_row(bh, q_len, i) + g] = scale[g];
}

/* Global size: (kv_len_padded, B*Hkv). Also writes the correction of each query head of the group. */
__kernel void quantize_k(__global const STORAGE *k, long sb, long sh, long st, int kv_heads, int group,
                         int kv_len, int kv_len_padded, __global uchar *ws, long q_mean_at, long k_mean_at,
                         long codes_at, long scales_at, long corr_at)
{
    const int j = get_global_id(0), bh = get_global_id(1);
    if (j >= kv_len_padded)
        return;
    const int b = bh / kv_heads, h = bh - b * kv_heads;
    __global uchar *codes = ws + codes_at + k_codes_at_head(bh, kv_len_padded) + j;
    __global float *corr = ws_f32(ws, corr_at) + ((long)b * kv_heads * group + (long)h * group) * kv_len_padded + j;
    __global float *scales = ws_f32(ws, scales_at) + k_scales_at_head(bh, kv_len_padded) + j;
    if (j >= kv_len) {
        for (int p = 0; p < CODE_BYTES; ++p)
            codes[(long)p * kv_len_padded] = 0;
        for (int g = 0; g < NUM_GROUPS; ++g)
            scales[(long)g * kv_len_padded] = 0.0f;
        for (int g = 0; g < group; ++g)
            corr[(long)g * kv_len_padded] = 0.0f;
        return;
    }
    float xs[HEAD_DIM], scale[NUM_GROUPS], inv[NUM_GROUPS];
    smooth_row(k, b * sb + h * sh + (long)j * st, ws_f32(ws, k_mean_at) + (long)bh * HEAD_DIM, xs, scale, inv);
    for (int p = 0; p < CODE_BYTES; ++p)
        codes[(long)p * kv_len_padded] = code_pair(xs, p, inv);
    for (int g = 0; g < NUM_GROUPS; ++g)
        scales[(long)g * kv_len_padded] = scale[g];
    /* Subtracting mean_q from Q shifts score (i, j) by mean_q . K'_j, which differs per key: it
       is added back to the estimate, exactly (f32, on the smoothed but unquantized key). */
    __global const float *qmean = ws_f32(ws, q_mean_at) + ((long)b * kv_heads * group + (long)h * group) * HEAD_DIM;
    for (int g = 0; g < group; ++g) {
        float dot = 0.0f;
        for (int c = 0; c < HEAD_DIM; ++c)
            dot = fma(qmean[(long)g * HEAD_DIM + c], xs[c], dot);
        corr[(long)g * kv_len_padded] = dot;
    }
}

/* Writes the key codes in the estimator's paired form (common.cl, PAIR_SHIFT) from the bytes that
   quantize_k wrote: element (c, chunk * 16 + lane) holds channel c of keys chunk * 32 + lane and
   chunk * 32 + 16 + lane. Global size: (kv_len_padded / 2, B*Hkv). */
__kernel void pair_key_codes(int kv_len_padded, __global uchar *ws, long codes_at, long pairs_at)
{
    const int u = get_global_id(0), bhk = get_global_id(1), pair_stride = kv_len_padded / 2;
    if (u >= pair_stride)
        return;
    const int j = u / 16 * 32 + u % 16;
    __global const uchar *codes = ws + codes_at + k_codes_at_head(bhk, kv_len_padded) + j;
    __global float *pairs = ws_f32(ws, pairs_at) + k_pairs_at_head(bhk, kv_len_padded) + u;
    for (int p = 0; p < CODE_BYTES; ++p) {
        const char first = as_char(codes[(long)p * kv_len_padded]), second = as_char(codes[(long)p * kv_len_padded + 16]);
        pairs[(long)(2 * p) * pair_stride] = (float)code_low(first) + PAIR_SHIFT * (float)code_low(second);
        pairs[(long)(2 * p + 1) * pair_stride] = (float)code_high(first) + PAIR_SHIFT * (float)code_high(second);
    }
    for (int c = 2 * CODE_BYTES; c < PAIR_CHANNELS; ++c)
        pairs[(long)c * pair_stride] = 0.0f;
}

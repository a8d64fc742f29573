/*
 * Quantization stage of SALE: per-head token means, smoothing, symmetric int4 codes with one
 * scale per token and 16-channel group, and the per-key corrections mean_q . K'_j.
 *
 * The int4 layout is common.cl's (CODE_BYTES, NUM_GROUPS and the offset helpers), which
 * estimate.cl reads with the same definitions. Channels past HEAD_DIM (an odd head_dim's last
 * nibble) and keys past kv_len are zero.
 */

#if QUANT_GROUP != 16
#error "the quantizer works on one 16-lane vector per channel group"
#endif

/* Channels [16 g, 16 g + 16) of a per-head f32 array of HEAD_DIM channels (the means), as
   load_group (common.cl) reads a token. */
static inline float16 load_group_f32(__global const float *x, int g)
{
    const int c0 = g * 16;
    if (c0 + 16 <= HEAD_DIM)
        return vload16(0, x + c0);
    float t[16];
    for (int i = 0; i < 16; ++i)
        t[i] = c0 + i < HEAD_DIM ? x[c0 + i] : 0.0f;
    return vload16(0, t);
}

/* Mean over the `len` tokens of each channel of group g of one head, leaving out non-finite values
   (0 when none is finite), so that one Inf or NaN token does not reach every other token's codes
   (clsa.h, "Non-finite values"). Partial sums of 64 tokens keep the f32 error near that of a
   pairwise sum. One work-item reads whole 16-channel rows, so each cache line it loads is used.
   Global size: (NUM_GROUPS, B*H). */
#if QUANTIZE_GPU
/* The GPU variant: MEAN_GROUP work-items per (channel group, head), each summing every MEAN_GROUP-th
   token, then a work-group sum per channel (group_sum, common.cl). The mean differs from the CPU
   variant's in its f32 rounding only (another summation order).
   Global size: (NUM_GROUPS * MEAN_GROUP, B*H), local size (MEAN_GROUP, 1). */
__kernel __attribute__((reqd_work_group_size(MEAN_GROUP, 1, 1))) void token_mean(
    __global const STORAGE *x, long sb, long sh, long st, int heads, int len, __global uchar *ws, long mean_at)
{
    __local float scratch[MEAN_GROUP];
    const int lid = get_local_id(0), g = get_group_id(0), bh = get_global_id(1);
    const int b = bh / heads, h = bh - b * heads;
    const long base = b * sb + h * sh;
    float16 part = (float16)(0.0f), seen = (float16)(0.0f);
    for (int t = lid; t < len; t += MEAN_GROUP) {
        const float16 v = load_group(x, base + t * st, g);
        const int16 finite = isfinite(v);
        part += select((float16)(0.0f), v, finite);
        seen += select((float16)(0.0f), (float16)(1.0f), finite);
    }
    float parts[16], counts[16];
    vstore16(part, 0, parts);
    vstore16(seen, 0, counts);
    __global float *out = ws_f32(ws, mean_at) + (long)bh * HEAD_DIM;
    for (int i = 0; i < 16; ++i) {
        const float total = group_sum(parts[i], scratch, lid, MEAN_GROUP);
        const float count = group_sum(counts[i], scratch, lid, MEAN_GROUP); /* exact below 2^24 tokens */
        if (lid == 0 && g * 16 + i < HEAD_DIM)
            out[g * 16 + i] = count > 0.0f ? total / count : 0.0f;
    }
}
#else
__kernel void token_mean(__global const STORAGE *x, long sb, long sh, long st, int heads, int len,
                         __global uchar *ws, long mean_at)
{
    const int g = get_global_id(0), bh = get_global_id(1);
    if (g >= NUM_GROUPS)
        return;
    const int b = bh / heads, h = bh - b * heads;
    const long base = b * sb + h * sh;
    float16 total = (float16)(0.0f);
    int16 count = (int16)(0);
    for (int t0 = 0; t0 < len; t0 += 64) {
        float16 part = (float16)(0.0f);
        for (int t = t0; t < min(t0 + 64, len); ++t) {
            const float16 v = load_group(x, base + t * st, g);
            /* selects on the test, not arithmetic on the mask: oclgrind 21.10 may give a set lane
               of a combined mask as 1 instead of -1 */
            const int16 finite = isfinite(v);
            part += select((float16)(0.0f), v, finite);
            count += select((int16)(0), (int16)(1), finite);
        }
        total += part;
    }
    float mean[16];
    vstore16(select((float16)(0.0f), total / convert_float16(max(count, (int16)(1))), count > (int16)(0)), 0, mean);
    __global float *out = ws_f32(ws, mean_at) + (long)bh * HEAD_DIM;
    for (int i = 0; i < 16 && g * 16 + i < HEAD_DIM; ++i)
        out[g * 16 + i] = mean[i];
}
#endif

/* Smooths channel group g of one token into xs (x - mean) and returns the group's scale,
   max|x'| / 7, setting its inverse (0 for an all-zero group). A group holding a value that is not
   finite (in the input, or after smoothing overflowed) gets scale NaN and inverse 0: every estimate
   with this token is then NaN, and estimate_mask keeps such a block. */
static inline float smooth_group(__global const STORAGE *x, long at, __global const float *mean, int g, float16 *xs,
                                 float *inv_scale)
{
    *xs = load_group(x, at, g) - load_group_f32(mean, g);
    const float largest = hmax16(select((float16)(INFINITY), fabs(*xs), isfinite(*xs)));
    const float scale = isinf(largest) ? NAN : largest / 7.0f;
    *inv_scale = scale > 0.0f ? 1.0f / scale : 0.0f;
    return scale;
}

/* The int4 codes of a group, written as its code bytes into codes[p], p < 8 and within CODE_BYTES
   (the step between bytes is `stride`): round to nearest even, clamp to [-7, 7]; 0 for the NaN of a
   non-finite value times its group's zero inverse scale. Rounding adds and subtracts 1.5 * 2^23,
   exact for |y| <= 7 and the same as rint (PoCL's rint is a long software sequence). */
static inline void store_group_codes(float16 y, int g, __global uchar *codes, long stride)
{
    const float16 rounded = (clamp(y, -7.0f, 7.0f) + (float16)(12582912.0f)) - (float16)(12582912.0f);
    int c[16];
    vstore16(select(convert_int16(rounded), (int16)(0), isnan(y)), 0, c);
    for (int p = 0; p < 8 && g * 8 + p < CODE_BYTES; ++p)
        codes[(long)(g * 8 + p) * stride] = code_byte(c[2 * p], c[2 * p + 1]);
}

/* Global size: (q_len, B*Hq). */
__kernel void quantize_q(__global const STORAGE *q, long sb, long sh, long st, int q_heads, int q_len,
                         __global uchar *ws, long mean_at, long codes_at, long scales_at)
{
    const int i = get_global_id(0), bh = get_global_id(1);
    if (i >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads;
    const long at = b * sb + h * sh + (long)i * st;
    __global const float *mean = ws_f32(ws, mean_at) + (long)bh * HEAD_DIM;
    __global uchar *codes = ws + codes_at + q_codes_at_row(bh, q_len, i);
    __global float *scales = ws_f32(ws, scales_at) + q_scales_at_row(bh, q_len, i);
    for (int g = 0; g < NUM_GROUPS; ++g) {
        float16 xs;
        float inv;
        scales[g] = smooth_group(q, at, mean, g, &xs, &inv);
        store_group_codes(xs * inv, g, codes, 1);
    }
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
    /* Subtracting mean_q from Q shifts score (i, j) by mean_q . K'_j, which differs per key: it
       is added back to the estimate, exactly (f32, on the smoothed but unquantized key). */
    __global const float *qmean = ws_f32(ws, q_mean_at) + ((long)b * kv_heads * group + (long)h * group) * HEAD_DIM;
    __global const float *kmean = ws_f32(ws, k_mean_at) + (long)bh * HEAD_DIM;
    const long at = b * sb + h * sh + (long)j * st;
    for (int hq = 0; hq < group; ++hq) {
        float16 dot = (float16)(0.0f);
        for (int g = 0; g < NUM_GROUPS; ++g) {
            float16 xs;
            float inv;
            const float scale = smooth_group(k, at, kmean, g, &xs, &inv);
            if (hq == 0) {
                scales[(long)g * kv_len_padded] = scale;
                store_group_codes(xs * inv, g, codes, kv_len_padded);
            }
            dot = fma(load_group_f32(qmean + (long)hq * HEAD_DIM, g), xs, dot);
        }
        corr[(long)hq * kv_len_padded] = hsum16(dot);
    }
}

/* Writes the key codes in the estimator's paired form (common.cl, PAIR_SHIFT) from the bytes that
   quantize_k wrote: element (c, chunk * 16 + lane) (common.cl, k_pair_index) holds channel c of keys
   chunk * 32 + lane and chunk * 32 + 16 + lane. Global size: (kv_len_padded / 2, B*Hkv). */
__kernel void pair_key_codes(int kv_len_padded, __global uchar *ws, long codes_at, long pairs_at)
{
    const int u = get_global_id(0), bhk = get_global_id(1), pair_stride = kv_len_padded / 2;
    if (u >= pair_stride)
        return;
    /* Bit operations, not / and %: LLVM pairs those with a `freeze`, which oclgrind 21.10's
       --uninitialized cannot run (it stops the work-item). */
    const int j = ((u >> 4) << 5) | (u & 15);
    __global const uchar *codes = ws + codes_at + k_codes_at_head(bhk, kv_len_padded) + j;
    __global float *pairs = ws_f32(ws, pairs_at) + k_pairs_at_head(bhk, kv_len_padded);
    for (int p = 0; p < CODE_BYTES; ++p) {
        const char first = as_char(codes[(long)p * kv_len_padded]), second = as_char(codes[(long)p * kv_len_padded + 16]);
        pairs[k_pair_index(2 * p, u)] = (float)code_low(first) + PAIR_SHIFT * (float)code_low(second);
        pairs[k_pair_index(2 * p + 1, u)] = (float)code_high(first) + PAIR_SHIFT * (float)code_high(second);
    }
    for (int c = 2 * CODE_BYTES; c < PAIR_CHANNELS; ++c)
        pairs[k_pair_index(c, u)] = 0.0f;
}

/*
 * Quantization stage of SALE: per-head token means, smoothing, symmetric int4 codes with one
 * scale per token, and the per-key corrections mean_q . K'_j.
 *
 * Code layout (byte offsets into the workspace come as arguments):
 *   q codes [B*Hq][q_len][CODE_BYTES]            row-major: one query's channels together
 *   k codes [B*Hkv][CODE_BYTES][kv_len_padded]   transposed: one channel pair of 16 keys is one uchar16
 *   byte = (code[2p] & 0xF) | (code[2p+1] << 4); codes are int4 two's complement in [-7, 7].
 * Channels past HEAD_DIM (an odd head_dim's last nibble) and keys past kv_len are zero.
 */
#define CODE_BYTES ((HEAD_DIM + 1) / 2)

static inline __global float *ws_f32(__global uchar *ws, long at) { return (__global float *)(ws + at); }

/* Mean over `len` tokens of channel c of one head. Partial sums of 64 tokens keep the f32 error
   near that of a pairwise sum. Global size: (HEAD_DIM, B*H). */
__kernel void token_mean(__global const STORAGE *x, long sb, long sh, long st, int heads, int len,
                         __global uchar *ws, long mean_at)
{
    const int c = get_global_id(0), bh = get_global_id(1);
    if (c >= HEAD_DIM)
        return;
    const int b = bh / heads, h = bh - b * heads;
    const long base = b * sb + h * sh + c;
    float total = 0.0f;
    for (int t0 = 0; t0 < len; t0 += 64) {
        float part = 0.0f;
        for (int t = t0; t < min(t0 + 64, len); ++t)
            part += load_elem(x, base + t * st);
        total += part;
    }
    ws_f32(ws, mean_at)[(long)bh * HEAD_DIM + c] = total / (float)len;
}

/* Smooths one token into xs (x - mean) and returns its scale, max|x'| / 7. */
static inline float smooth_row(__global const STORAGE *x, long at, __global const float *mean, float *xs)
{
    float amax = 0.0f;
    for (int c = 0; c < HEAD_DIM; ++c) {
        xs[c] = load_elem(x, at + c) - mean[c];
        amax = fmax(amax, fabs(xs[c]));
    }
    return amax / 7.0f;
}

/* The code byte of channels (2p, 2p+1): round to nearest even, clamp to [-7, 7]. */
static inline uchar code_pair(const float *xs, int p, float inv_scale)
{
    const int c = 2 * p;
    const int lo = (int)clamp(rint(xs[c] * inv_scale), -7.0f, 7.0f);
    const int hi = c + 1 < HEAD_DIM ? (int)clamp(rint(xs[c + 1] * inv_scale), -7.0f, 7.0f) : 0;
    return (uchar)((lo & 0xF) | ((hi & 0xF) << 4));
}

/* Global size: (q_len, B*Hq). */
__kernel void quantize_q(__global const STORAGE *q, long sb, long sh, long st, int q_heads, int q_len,
                         __global uchar *ws, long mean_at, long codes_at, long scales_at)
{
    const int i = get_global_id(0), bh = get_global_id(1);
    if (i >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads;
    float xs[HEAD_DIM];
    const float scale = smooth_row(q, b * sb + h * sh + (long)i * st, ws_f32(ws, mean_at) + (long)bh * HEAD_DIM, xs);
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    __global uchar *codes = ws + codes_at + ((long)bh * q_len + i) * CODE_BYTES;
    for (int p = 0; p < CODE_BYTES; ++p)
        codes[p] = code_pair(xs, p, inv);
    ws_f32(ws, scales_at)[(long)bh * q_len + i] = scale;
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
    __global uchar *codes = ws + codes_at + (long)bh * CODE_BYTES * kv_len_padded + j;
    __global float *corr = ws_f32(ws, corr_at) + ((long)b * kv_heads * group + (long)h * group) * kv_len_padded + j;
    if (j >= kv_len) {
        for (int p = 0; p < CODE_BYTES; ++p)
            codes[(long)p * kv_len_padded] = 0;
        ws_f32(ws, scales_at)[(long)bh * kv_len_padded + j] = 0.0f;
        for (int g = 0; g < group; ++g)
            corr[(long)g * kv_len_padded] = 0.0f;
        return;
    }
    float xs[HEAD_DIM];
    const float scale = smooth_row(k, b * sb + h * sh + (long)j * st, ws_f32(ws, k_mean_at) + (long)bh * HEAD_DIM, xs);
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int p = 0; p < CODE_BYTES; ++p)
        codes[(long)p * kv_len_padded] = code_pair(xs, p, inv);
    ws_f32(ws, scales_at)[(long)bh * kv_len_padded + j] = scale;
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

/*
 * K/V layout stage: copies K transposed and V row-major into the workspace as f32, from any
 * storage dtype and strides, so the attention kernels read one fixed layout:
 *   kt: [B*Hkv][kv_len_padded/16][HEAD_DIM][16] (common.cl, kt_index: a float16 load is 16 keys)
 *   vw: [B*Hkv][kv_len_padded][HEAD_DIM_PADDED] (channels contiguous: a float16 is 16 channels)
 * Both live in the workspace at element offsets kt_at and v_at. with_v = 0 lays out K alone.
 * Tokens past kv_len and channels past HEAD_DIM are written as zero, so tiles may read them.
 * A K row with a non-finite value becomes all NaN (see below).
 * Global size: (kv_len_padded, B*Hkv).
 */
__kernel void kv_layout(__global const STORAGE *k, long k_sb, long k_sh, long k_st, __global const STORAGE *v,
                        long v_sb, long v_sh, long v_st, __global float *workspace, long kt_at, long v_at,
                        int kv_heads, int kv_len, int kv_len_padded, int with_v)
{
    __global float *kt = workspace + kt_at;
    __global float *vw = workspace + v_at;
    const int j = get_global_id(0);
    const int bh = get_global_id(1);
    if (j >= kv_len_padded)
        return;
    const int b = bh / kv_heads, h = bh - b * kv_heads;
    __global float *kt_head = kt + (long)bh * HEAD_DIM * kv_len_padded;
    __global float *vrow = vw + ((long)bh * kv_len_padded + j) * HEAD_DIM_PADDED;
    if (j < kv_len) {
        const long ko = b * k_sb + h * k_sh + j * k_st;
        const long vo = b * v_sb + h * v_sh + j * v_st;
        /* A key with a value that is not finite is laid out as NaN in every channel, so that its
           score is NaN for every query. q . k could otherwise be -inf, which attention would
           take for a masked key and weight 0 (clsa.h, "Non-finite values"). */
        bool finite = true;
        for (int c = 0; c < HEAD_DIM; ++c)
            finite = finite && isfinite(load_elem(k, ko + c));
        for (int c = 0; c < HEAD_DIM; ++c)
            kt_head[kt_index(c, j)] = finite ? load_elem(k, ko + c) : NAN;
        for (int c = 0; with_v && c < HEAD_DIM; ++c)
            vrow[c] = load_elem(v, vo + c);
    } else {
        for (int c = 0; c < HEAD_DIM; ++c)
            kt_head[kt_index(c, j)] = 0.0f;
        for (int c = 0; with_v && c < HEAD_DIM; ++c)
            vrow[c] = 0.0f;
    }
    for (int c = HEAD_DIM; with_v && c < HEAD_DIM_PADDED; ++c)
        vrow[c] = 0.0f;
}

/*
 * Estimation stage of SALE: the exact sink/local row statistics, then the block mask.
 * All scores are in log2 units, t = scale * log2(e) * q.k, so that exp2 gives softmax weights and
 * the Relative Attention Score test S~ >= m~ + ln(tau l~) reads t~ >= m2 + log2(tau * l).
 *
 * Defines: HEAD_DIM, CLSA_DTYPE, BLOCK_Q, BLOCK_K, EXACT (1: exact f32 scores, the oracle).
 */
#define EST_ROWS 16 /* query rows of one register tile; BLOCK_Q is a multiple */

/* The local keys of a row end at its diagonal key d = i + kv_len - q_len when causal, and are
   centred on it otherwise: [d - local/2, d + local - local/2 - 1]. */
static inline int local_first(int diag, int local_keys, int causal)
{
    return causal ? diag - local_keys + 1 : diag - local_keys / 2;
}
static inline int local_last(int diag, int local_keys, int causal)
{
    return causal ? diag : diag + local_keys - local_keys / 2 - 1;
}

/*
 * Per query row: m2 = max and l = sum of exp2(t - m2) over the row's sink and local keys, both
 * exact in f32, and the threshold m2 + log2(tau_h * l). The 16 rows of a work-item are the 16
 * lanes of the vectors; each key's row is loaded once and broadcast over them.
 * A dense head (log2_tau = -inf) gets -inf. A row with no sink or local key gets +inf: its
 * reference set is empty, and estimate_mask then uses its highest estimate instead. A row with a
 * non-finite score among them (a non-finite value in its query or such a key) gets NaN, which
 * estimate_mask reads as "keep every visible block".
 * With k_mean_at >= 0 (SALE), the threshold is moved into the frame of the estimate: the int4
 * estimate scores the mean-smoothed keys K' = K - mean_k, which lowers every score of row i by
 * q_i . mean_k; that exact row term is subtracted from the threshold. (The softmax ignores a
 * per-row shift, but the comparison with exact statistics does not.)
 * Global size: (ceil(q_len / 16), B*Hq).
 */
__kernel void row_threshold(__global const STORAGE *q, long q_sb, long q_sh, long q_st,
                            __global const STORAGE *k, long k_sb, long k_sh, long k_st, int q_heads,
                            int group, int q_len, int kv_len, int causal, float scale_log2e, int sink,
                            int local_keys, __global const float *head_log2_tau, __global uchar *ws, long thr_at,
                            long k_mean_at)
{
    const int row0 = get_global_id(0) * 16, bh = get_global_id(1);
    if (row0 >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads, hk = h / group;
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int16 row = (int16)(row0) + lane;
    const int16 diag = row + (int16)(kv_len - q_len);
    const int16 limit = causal ? min(diag, (int16)(kv_len - 1)) : (int16)(kv_len - 1);
    const int16 lo = max(diag - (int16)(causal ? local_keys - 1 : local_keys / 2), (int16)(0));
    const int16 hi = min(diag + (int16)(causal ? 0 : local_keys - local_keys / 2 - 1), limit);

    float qt[HEAD_DIM][16]; /* Q transposed: qt[c][r] is channel c of row row0 + r */
    for (int r = 0; r < 16; ++r) {
        const long qo = b * q_sb + h * q_sh + (long)(row0 + r) * q_st;
        for (int c = 0; c < HEAD_DIM; ++c)
            qt[c][r] = row0 + r < q_len ? load_elem(q, qo + c) * scale_log2e : 0.0f;
    }
    const int sink_end = min(sink, kv_len);
    const int last_row = min(row0 + 15, q_len - 1);
    const int first_diag = row0 + kv_len - q_len, last_diag = last_row + kv_len - q_len;
    const int span_first = max(local_first(first_diag, local_keys, causal), sink_end);
    const int span_last = min(local_last(last_diag, local_keys, causal), kv_len - 1);

    float16 m = (float16)(-INFINITY), l = (float16)(0.0f);
    int16 nonfinite = (int16)(0);
    const long kbase = b * k_sb + hk * k_sh;
    for (int pass = 0; pass < 2; ++pass) {
        const int first = pass == 0 ? 0 : span_first, last = pass == 0 ? sink_end - 1 : span_last;
        for (int j = first; j <= last; ++j) {
            float16 t = (float16)(0.0f);
            const long ko = kbase + (long)j * k_st;
            for (int c = 0; c < HEAD_DIM; ++c)
                t = fma(vload16(0, qt[c]), (float16)(load_elem(k, ko + c)), t);
            /* Pass 0 holds sink keys, pass 1 local keys (past the sink, so none counts twice). */
            const int16 member = pass == 0 ? ((int16)(j) <= limit) : ((int16)(j) >= lo && (int16)(j) <= hi);
            nonfinite |= member & (isfinite(t) == (int16)(0));
            t = select((float16)(-INFINITY), t, member);
            const float16 m_new = fmax(m, t);
            const int16 seen = m_new != (float16)(-INFINITY);
            const float16 safe = select((float16)(0.0f), m_new, seen);
            l = select(l, l * exp2(m - safe) + exp2(t - safe), seen);
            m = m_new;
        }
    }
    float16 shift = (float16)(0.0f);
    if (k_mean_at >= 0) {
        __global const float *kmean = ws_f32(ws, k_mean_at) + ((long)b * (q_heads / group) + hk) * HEAD_DIM;
        for (int c = 0; c < HEAD_DIM; ++c)
            shift = fma(vload16(0, qt[c]), (float16)(kmean[c]), shift);
    }
    const float log2_tau = head_log2_tau[h];
    float thr[16], ms[16], ls[16], shifts[16];
    int bad[16];
    vstore16(m, 0, ms);
    vstore16(l, 0, ls);
    vstore16(shift, 0, shifts);
    vstore16(nonfinite, 0, bad);
    for (int r = 0; r < 16; ++r)
        thr[r] = bad[r] ? NAN
                 : ls[r] > 0.0f ? (log2_tau == -INFINITY ? -INFINITY : ms[r] + log2(ls[r]) + log2_tau - shifts[r])
                                : INFINITY;
    __global float *out = ws_f32(ws, thr_at) + (long)bh * q_len;
    for (int r = 0; r < 16 && row0 + r < q_len; ++r)
        out[row0 + r] = thr[r];
}

#if EXACT
#define SCORE_ARGS , __global const STORAGE *q, long q_sb, long q_sh, long q_st, __global const float *kt, long kt_at
#else
#define SCORE_ARGS
#endif

/*
 * One work-item per (batch, query head, query block): walks the key blocks in ascending order,
 * keeps the forced ones (sink, local, diagonal) and those where some element's estimate passes
 * its row's threshold, and writes the count and the index list. A block stops being evaluated at
 * its first passing element. An estimate that is not finite passes (a non-finite query or key:
 * its score is unknown, so it cannot be ruled small), and so does every estimate of a row whose
 * threshold is NaN.
 * A row that sees a key but has no sink or local key (threshold +inf) takes its visible key with
 * the highest estimate e as its reference set: a first pass over the key blocks finds e, and the
 * row's threshold becomes e + min(log2 tau, 0), which that key's block always passes; without it
 * such a row kept no block at all and gave zeros.
 * Global size: (num_q_blocks, B*Hq), local size 1.
 */
__kernel void estimate_mask(int q_heads, int group, int q_len, int kv_len, int kv_len_padded, int causal,
                            float scale_log2e, int sink, int local_keys, int num_key_blocks,
                            __global const float *head_log2_tau, __global uchar *ws, long q_codes_at,
                            long q_scales_at, long k_codes_at, long k_scales_at, long corr_at, long thr_at,
                            __global int *mask_counts, long counts_at, __global int *mask_indices,
                            long indices_at SCORE_ARGS)
{
    const int qb = get_global_id(0), bh = get_global_id(1);
    const int b = bh / q_heads, h = bh - b * q_heads, hk = h / group;
    const long bhk = (long)b * (q_heads / group) + hk;
    const int row_first = qb * BLOCK_Q, row_last = min(row_first + BLOCK_Q, q_len) - 1;
    const int diag_first = row_first + kv_len - q_len, diag_last = row_last + kv_len - q_len;
    const long mask_row = (long)bh * ((q_len + BLOCK_Q - 1) / BLOCK_Q) + qb;
    __global int *list = mask_indices + indices_at + mask_row * num_key_blocks;

    /* Visible key blocks, and the forced key range of the block's rows. */
    const int last_visible = causal ? min(diag_last, kv_len - 1) : kv_len - 1;
    const int kb_end = last_visible < 0 ? 0 : last_visible / BLOCK_K + 1;
    const int sink_end = min(sink, kv_len);
    /* Local keys of every row, and the diagonal keys even when local is 0. */
    const int forced_first = max(min(local_first(diag_first, local_keys, causal), diag_first), 0);
    const int forced_last = min(max(local_last(diag_last, local_keys, causal), diag_last), last_visible);
    const bool dense_head = head_log2_tau[h] == -INFINITY;

    /* Per-row data of the whole query block, loaded once. A NaN threshold becomes -inf: every
       estimate passes it. */
    float thr[BLOCK_Q], best[BLOCK_Q];
    int limit[BLOCK_Q];
    bool need_reference = false;
    __global const float *thr_row = ws_f32(ws, thr_at) + (long)bh * q_len;
    for (int r = 0; r < BLOCK_Q; ++r) {
        const int row = row_first + r;
        limit[r] = row < q_len ? (causal ? min(row + kv_len - q_len, kv_len - 1) : kv_len - 1) : -1;
        thr[r] = row < q_len ? thr_row[row] : INFINITY;
        thr[r] = isnan(thr[r]) ? -INFINITY : thr[r];
        need_reference = need_reference || (!dense_head && thr[r] == INFINITY && limit[r] >= 0);
        best[r] = -INFINITY;
    }
#if EXACT
    __global const float *ktb = kt + kt_at + bhk * HEAD_DIM * kv_len_padded;
#else
    char qc[BLOCK_Q][CODE_BYTES * 2];
    float qscale[BLOCK_Q][NUM_GROUPS];
    __global const uchar *qcodes = ws + q_codes_at;
    for (int r = 0; r < BLOCK_Q; ++r) {
        const int row = row_first + r;
        for (int gr = 0; gr < NUM_GROUPS; ++gr)
            qscale[r][gr] = row < q_len ? ws_f32(ws, q_scales_at)[q_scales_at_row(bh, q_len, row) + gr] : 0.0f;
        for (int p = 0; p < CODE_BYTES; ++p) {
            const char byte = row < q_len ? as_char(qcodes[q_codes_at_row(bh, q_len, row) + p]) : 0;
            qc[r][2 * p] = code_low(byte);
            qc[r][2 * p + 1] = code_high(byte);
        }
    }
    __global const uchar *kcodes = ws + k_codes_at + k_codes_at_head(bhk, kv_len_padded);
    __global const float *kscale = ws_f32(ws, k_scales_at) + k_scales_at_head(bhk, kv_len_padded);
    __global const float *corr = ws_f32(ws, corr_at) + (long)bh * kv_len_padded;
#endif
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    int count = 0;
    /* Pass 0 (only when some row has no reference set) finds each row's highest visible estimate;
       pass 1 decides. */
    for (int pass = need_reference ? 0 : 1; pass < 2; ++pass) {
        for (int kb = 0; kb < kb_end; ++kb) {
            const int k0 = kb * BLOCK_K, k1 = k0 + BLOCK_K - 1;
            bool keep = pass == 1 && (dense_head || k0 < sink_end || (k1 >= forced_first && k0 <= forced_last));
            for (int g = 0; !keep && g < BLOCK_Q && row_first + g < q_len; g += EST_ROWS) {
                for (int j0 = k0; !keep && j0 <= min(k1, last_visible); j0 += 16) {
#if EXACT
                    float16 acc[EST_ROWS];
                    for (int r = 0; r < EST_ROWS; ++r)
                        acc[r] = (float16)(0.0f);
                    float qrow[EST_ROWS][HEAD_DIM];
                    for (int r = 0; r < EST_ROWS; ++r) {
                        const int row = row_first + g + r;
                        const long qo = b * q_sb + h * q_sh + (long)row * q_st;
                        for (int c = 0; c < HEAD_DIM; ++c)
                            qrow[r][c] = row < q_len ? load_elem(q, qo + c) : 0.0f;
                    }
                    for (int c = 0; c < HEAD_DIM; ++c) {
                        const float16 kv = vload16(0, ktb + (long)c * kv_len_padded + j0);
                        for (int r = 0; r < EST_ROWS; ++r)
                            acc[r] = fma((float16)(qrow[r][c]), kv, acc[r]);
                    }
#else
                    /* Per channel group an exact int16 sum (|sum| <= 49 * 16), scaled by the group's
                       query and key scales into the f32 estimate, which starts at the correction. */
                    const float16 cj = vload16(0, corr + j0);
                    float16 est[EST_ROWS];
                    for (int r = 0; r < EST_ROWS; ++r)
                        est[r] = cj;
                    for (int gr = 0; gr < NUM_GROUPS; ++gr) {
                        short16 acc[EST_ROWS];
                        for (int r = 0; r < EST_ROWS; ++r)
                            acc[r] = (short16)(0);
                        for (int p = gr * QUANT_GROUP / 2; p < min((gr + 1) * QUANT_GROUP / 2, CODE_BYTES); ++p) {
                            const uchar16 packed = vload16(0, kcodes + (long)p * kv_len_padded + j0);
                            const short16 klo = convert_short16(as_char16(packed << (uchar16)(4)) >> (char16)(4));
                            const short16 khi = convert_short16(as_char16(packed) >> (char16)(4));
                            for (int r = 0; r < EST_ROWS; ++r)
                                acc[r] += (short)qc[g + r][2 * p] * klo + (short)qc[g + r][2 * p + 1] * khi;
                        }
                        const float16 ks = vload16(0, kscale + (long)gr * kv_len_padded + j0);
                        for (int r = 0; r < EST_ROWS; ++r)
                            est[r] = fma(convert_float16(acc[r]) * qscale[g + r][gr], ks, est[r]);
                    }
#endif
                    const int16 key = (int16)(j0) + lane;
                    for (int r = 0; r < EST_ROWS; ++r) {
#if EXACT
                        const float16 t = acc[r] * scale_log2e;
#else
                        const float16 t = est[r] * scale_log2e;
#endif
                        const int16 visible = key <= (int16)(limit[g + r]);
                        if (pass == 0)
                            best[g + r] = fmax(best[g + r], hmax16(select((float16)(-INFINITY), t, visible)));
                        else
                            keep = keep || any((t >= (float16)(thr[g + r]) || isfinite(t) == (int16)(0)) && visible);
                    }
                }
            }
            if (keep)
                list[count++] = kb;
        }
        if (pass == 0)
            for (int r = 0; r < BLOCK_Q; ++r)
                if (thr[r] == INFINITY && limit[r] >= 0)
                    thr[r] = best[r] + fmin(head_log2_tau[h], 0.0f);
    }
    mask_counts[counts_at + mask_row] = count;
}

/*
 * Estimation stage of SALE: the exact sink/local row statistics, then the block mask.
 * All scores are in log2 units, t = scale * log2(e) * q.k, so that exp2 gives softmax weights and
 * the Relative Attention Score test S~ >= m~ + ln(tau l~) reads t~ >= m2 + log2(tau * l).
 *
 * Defines: HEAD_DIM, CLSA_DTYPE, BLOCK_Q, BLOCK_K, EST_ROWS (rows per register tile, divides
 * BLOCK_Q), EXACT (1: exact f32 scores, the oracle), ESTIMATE_GPU (1: the GPU variant at the end
 * of this file, with USE_INT_DOT and USE_SUBGROUPS).
 *
 * The exact second look (SALE only, refine_log2 > 0): a block that the int4 estimates drop, but
 * whose best estimate falls short of its row's threshold by less than refine_log2, is scored again
 * on exact f32 scores and kept when one of them passes. On real attention the blocks the int4
 * estimate misses lie within about 2 nats of the threshold at 16K (bench/real/recall.py): the
 * misses are the codes' rounding, not the rule.
 *
 * Every variant computes the same exact integer sums per channel group and then the same f32
 * operations in the same order, so their masks are bit-identical; contraction of a multiply and an
 * add into one fma, which the compiler may otherwise choose per variant, is off.
 */
#pragma OPENCL FP_CONTRACT OFF

/* Keys scored at once by row_threshold: 4 float16 accumulators (8 of AVX2's 16 registers). 8
   ran the same on AVX-512 and 30% slower with AVX2 code (Intel's runtime, core-avx2, 8K). */
#define THRESHOLD_KEYS 4

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
                            long k_mean_at, long shift_at)
{
    const int row0 = get_global_id(0) * 16, bh = get_global_id(1);
    if (row0 >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads, hk = h / group;
    if (isnan(head_log2_tau[h])) { /* another selector's head: thresholds that decide nothing */
        for (int r = 0; r < 16 && row0 + r < q_len; ++r) {
            ws_f32(ws, thr_at)[(long)bh * q_len + row0 + r] = NAN;
            ws_f32(ws, shift_at)[(long)bh * q_len + row0 + r] = 0.0f;
        }
        return;
    }
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
        /* THRESHOLD_KEYS keys at a time: each key's score is a chain of HEAD_DIM dependent
           multiply-adds, and one chain at a time left the core waiting on their latency. Keys
           past `last` are computed on key `last` (in bounds) and left out by `member`. */
        for (int j0 = first; j0 <= last; j0 += THRESHOLD_KEYS) {
            float16 t[THRESHOLD_KEYS];
            long ko[THRESHOLD_KEYS];
            _Pragma("unroll") for (int u = 0; u < THRESHOLD_KEYS; ++u) {
                t[u] = (float16)(0.0f);
                ko[u] = kbase + (long)min(j0 + u, last) * k_st;
            }
            for (int c = 0; c < HEAD_DIM; ++c) {
                const float16 qc = vload16(0, qt[c]);
                _Pragma("unroll") for (int u = 0; u < THRESHOLD_KEYS; ++u)
                    t[u] = fma(qc, (float16)(load_elem(k, ko[u] + c)), t[u]);
            }
            for (int u = 0; u < THRESHOLD_KEYS && j0 + u <= last; ++u) {
                const int j = j0 + u;
                /* Pass 0 holds sink keys, pass 1 local keys (past the sink, so none counts twice). */
                const int16 member = pass == 0 ? ((int16)(j) <= limit) : ((int16)(j) >= lo && (int16)(j) <= hi);
                nonfinite |= member & (isfinite(t[u]) == (int16)(0));
                const float16 tm = select((float16)(-INFINITY), t[u], member);
                const float16 m_new = fmax(m, tm);
                const int16 seen = m_new != (float16)(-INFINITY);
                const float16 safe = select((float16)(0.0f), m_new, seen);
                l = select(l, l * exp2(m - safe) + exp2(tm - safe), seen);
                m = m_new;
            }
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
    /* The shift, for the exact second look (estimate_mask), which compares exact scores. */
    __global float *shift_out = ws_f32(ws, shift_at) + (long)bh * q_len;
    for (int r = 0; k_mean_at >= 0 && r < 16 && row0 + r < q_len; ++r)
        shift_out[row0 + r] = shifts[r];
}

#if !ESTIMATE_GPU /* the CPU variant: up to the end of estimate_mask */
#if EXACT
#define SCORE_ARGS , __global const STORAGE *q, long q_sb, long q_sh, long q_st, __global const float *kt, long kt_at
#else
/* The exact second look reads Q as stored, the f32 K^T that the K/V layout stage wrote, and the
   rows' shifts that row_threshold stored. */
#define SCORE_ARGS , __global const STORAGE *q, long q_sb, long q_sh, long q_st, __global const float *kt, long kt_at, \
                   long shift_at, float refine_log2
#endif

#define R EST_ROWS /* query rows of one register tile (src/estimate.c) */
/* Key blocks per cache tile: about 512 KiB of key data (2 bytes per key and channel in the pairs,
   4 in the oracle's f32 K^T). */
#if EXACT
#define KB_TILE max(1, 131072 / (HEAD_DIM * BLOCK_K))
#else
#define KB_TILE max(1, 262144 / (PAIR_CHANNELS * BLOCK_K))
#endif
#define CHUNK 32   /* keys per step: the two 16-key halves of a key-pair vector (PAIR_SHIFT) */

#if EXACT
/* Exact f32 scores (log2 units) of rows qv[g, g + R) against keys j0 .. j0 + 31, as two halves. */
static inline __attribute__((always_inline)) void chunk_scores(const float qv[BLOCK_Q][HEAD_DIM], int g, __global const float *ktb, int kv_len_padded,
                                int j0, float scale_log2e, float16 lo[R], float16 hi[R])
{
    _Pragma("unroll") for (int r = 0; r < R; ++r)
        lo[r] = hi[r] = (float16)(0.0f);
    for (int c = 0; c < HEAD_DIM; ++c) {
        const float16 k_lo = vload16(0, ktb + kt_index(c, j0));
        const float16 k_hi = vload16(0, ktb + kt_index(c, j0 + 16));
        _Pragma("unroll") for (int r = 0; r < R; ++r) {
            lo[r] = fma((float16)(qv[g + r][c]), k_lo, lo[r]);
            hi[r] = fma((float16)(qv[g + r][c]), k_hi, hi[r]);
        }
    }
    _Pragma("unroll") for (int r = 0; r < R; ++r) {
        lo[r] *= scale_log2e;
        hi[r] *= scale_log2e;
    }
}
#else
/* int4 estimates (log2 units) of rows g .. g + R - 1 against keys j0 .. j0 + 31, as two halves.
   Per channel group, one f32 multiply-add per (row, channel) sums the products of both halves at
   once on the paired key codes; the exact integer sums then separate (common.cl, PAIR_SHIFT) and
   are scaled by the group's query and key scales into the estimate, which starts at the key's
   correction. The f32 operations per (row, key) are those of a plain int16 sum, so the estimate
   does not depend on the pairing. */
static inline __attribute__((always_inline)) void chunk_scores(const float qv[BLOCK_Q][PAIR_CHANNELS], const float qscale[BLOCK_Q][NUM_GROUPS],
                                int g, __global const float *pairs, __global const float *kscale,
                                __global const float *corr, int kv_len_padded, int j0, float scale_log2e,
                                float16 lo[R], float16 hi[R])
{
    const float16 corr_lo = vload16(0, corr + j0), corr_hi = vload16(0, corr + j0 + 16);
    _Pragma("unroll") for (int r = 0; r < R; ++r) {
        lo[r] = corr_lo;
        hi[r] = corr_hi;
    }
    __global const float *kp = pairs + k_pair_index(0, j0 / 2); /* the chunk's contiguous pairs */
    for (int gr = 0; gr < NUM_GROUPS; ++gr) {
        float16 acc[R];
        _Pragma("unroll") for (int r = 0; r < R; ++r)
            acc[r] = (float16)(0.0f);
        _Pragma("unroll") for (int cc = 0; cc < QUANT_GROUP; ++cc) {
            const int c = gr * QUANT_GROUP + cc;
            const float16 kv = vload16(c, kp);
            _Pragma("unroll") for (int r = 0; r < R; ++r)
                acc[r] = fma((float16)(qv[g + r][c]), kv, acc[r]);
        }
        const float16 ks_lo = vload16(0, kscale + (long)gr * kv_len_padded + j0);
        const float16 ks_hi = vload16(0, kscale + (long)gr * kv_len_padded + j0 + 16);
        _Pragma("unroll") for (int r = 0; r < R; ++r) {
            /* rint of the upper field: |acc / PAIR_SHIFT| < 785, so adding 1.5 * 2^23 in one
               rounded fma and subtracting it again rounds to the nearest integer (ties to even),
               exactly as rint does, in two instructions (PoCL's rint is a long software sequence). */
            const float16 upper = fma(acc[r], (float16)(1.0f / PAIR_SHIFT), (float16)(12582912.0f)) - (float16)(12582912.0f);
            const float16 lower = fma(upper, (float16)(-PAIR_SHIFT), acc[r]);
            lo[r] = fma(lower * qscale[g + r][gr], ks_lo, lo[r]);
            hi[r] = fma(upper * qscale[g + r][gr], ks_hi, hi[r]);
        }
    }
    _Pragma("unroll") for (int r = 0; r < R; ++r) {
        lo[r] *= scale_log2e;
        hi[r] *= scale_log2e;
    }
}
#endif

/* One half (16 keys from k) of a row's values x with the lanes outside the block's keys [k0, k1]
   or past the row's last visible key `limit` set to -inf, so that they take no part. Masks here
   come only from plain comparisons and are combined by select: oclgrind 21.10 evaluates & and | of
   two lane masks to 1 instead of -1, which would lose lanes. */
static inline __attribute__((always_inline)) float16 hide_invisible(float16 x, int k, int k0, int k1, int limit)
{
    const int16 key = (int16)(k) + (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    x = select(x, (float16)(-INFINITY), key < (int16)(k0));
    return select(x, (float16)(-INFINITY), key > (int16)(min(k1, limit)));
}

/* A half's margins over the row's threshold, t - thr, visible lanes only: +inf where t is not
   finite (its size is unknown, so it passes). A block is kept when a margin is >= 0. */
static inline __attribute__((always_inline)) float16 half_margin(float16 t, float thr, int k, int k0, int k1, int limit)
{
    const float16 margin = select(t - (float16)(thr), (float16)(INFINITY), isfinite(t) == (int16)(0));
    return hide_invisible(margin, k, k0, k1, limit);
}

#if !EXACT
/* The exact second look at key block [k0, k1] for the query block's rows at q_rows (rows `rows`,
   each q_st apart): true when some visible element's exact score t = scale * log2(e) * q.k reaches
   its row's threshold. The thresholds are in the frame of the smoothed estimate, so t - shift[r]
   is compared (shift: the row term scale * log2(e) * q_i . mean_k, rows_shift). A score that is not
   finite passes, as an estimate does. R rows by 16 keys at a time, as the oracle scores them:
   each key vector of the f32 K^T (ktb, kt_index) meets R query values read from storage. */
static bool exact_block_passes(__global const STORAGE *q, long q_rows, long q_st, __global const float *ktb, int rows,
                               int k0, int k1, const int limit[BLOCK_Q], const float thr[BLOCK_Q],
                               const float shift[BLOCK_Q], float scale_log2e)
{
    for (int g = 0; g < rows; g += R) {
        for (int j0 = k0; j0 <= min(k1, limit[min(g + R, rows) - 1]); j0 += 16) {
            float16 acc[R];
            _Pragma("unroll") for (int r = 0; r < R; ++r)
                acc[r] = (float16)(0.0f);
            for (int c = 0; c < HEAD_DIM; ++c) {
                const float16 kv = vload16(0, ktb + kt_index(c, j0));
                _Pragma("unroll") for (int r = 0; r < R; ++r)
                    acc[r] = fma((float16)(load_elem(q, q_rows + (long)min(g + r, rows - 1) * q_st + c)), kv, acc[r]);
            }
            _Pragma("unroll") for (int r = 0; r < R; ++r)
                if (g + r < rows &&
                    any(half_margin(acc[r] * scale_log2e, thr[g + r] + shift[g + r], j0, k0, k1, limit[g + r]) >=
                        (float16)(0.0f)))
                    return true;
        }
    }
    return false;
}

#endif

/*
 * One work-item per (batch, query head, query block): walks the key blocks in ascending order,
 * keeps the forced ones (sink, local, diagonal) and those where some element's estimate passes
 * its row's threshold, and writes the count and the index list. A block stops being evaluated at
 * the first R-row by 32-key tile with a passing element. An estimate that is not finite passes (a
 * non-finite query or key: its score is unknown, so it cannot be ruled small), and so does every
 * estimate of a row whose threshold is NaN.
 * A row that sees a key but has no sink or local key (threshold +inf) takes its visible key with
 * the highest estimate e as its reference set: a first pass over the key blocks finds e, and the
 * row's threshold becomes e + min(log2 tau, 0), which that key's block always passes; without it
 * such a row kept no block at all and gave zeros.
 * The block's query values (codes as f32 for SALE) sit in a private array, [BLOCK_Q][HEAD_DIM]
 * f32, so each is converted once and then broadcast into the multiply-adds. A dropped block whose
 * best margin is within refine_log2 of passing gets the exact second look (top of this file).
 * Global size: (num_q_blocks rounded up to the local size, B*Hq), local size (4, 1).
 */
__kernel void estimate_mask(int q_heads, int group, int q_len, int kv_len, int kv_len_padded, int causal,
                            float scale_log2e, int sink, int local_keys, int num_key_blocks,
                            __global const float *head_log2_tau, __global uchar *ws, long q_codes_at,
                            long q_scales_at, long k_pairs_at, long k_scales_at, long corr_at, long thr_at,
                            __global int *mask_counts, long counts_at, __global int *mask_indices,
                            long indices_at SCORE_ARGS)
{
    /* Work-items past the last query block (the global size is a multiple of the local size)
       take part in the barriers and do nothing else. */
    const int num_q_blocks = (q_len + BLOCK_Q - 1) / BLOCK_Q;
    const int qb = min((int)get_global_id(0), num_q_blocks - 1), bh = get_global_id(1);
    const int b = bh / q_heads, h = bh - b * q_heads, hk = h / group;
    /* A head of another selector (NaN threshold) is left alone: its work-items do no work and write
       nothing, but still meet every barrier. Loop bounds around barriers come from the group's ids
       and the arguments only, never from a value loaded from memory: PoCL then gave masks that
       changed from run to run (seen in the GPU variant's estimate_blocks). */
    const bool active = (int)get_global_id(0) < num_q_blocks && !isnan(head_log2_tau[h]);
    const long bhk = (long)b * (q_heads / group) + hk;
    const int row_first = qb * BLOCK_Q, row_last = min(row_first + BLOCK_Q, q_len) - 1;
    const long mask_row = (long)bh * ((q_len + BLOCK_Q - 1) / BLOCK_Q) + qb;
    __global int *list = mask_indices + indices_at + mask_row * num_key_blocks;

    /* Visible key blocks, and the forced key range of the block's rows. */
    int last_visible, forced_first, forced_last;
    query_block_keys(qb, q_len, kv_len, causal, local_keys, &last_visible, &forced_first, &forced_last);
    const int kb_end = last_visible < 0 || !active ? 0 : last_visible / BLOCK_K + 1;
    /* The key blocks the work-group's query blocks see, for the uniform tile loop: those of its
       last query block (causal rows see more keys further down; otherwise all see all). */
    const int group_last_qb = min((int)((get_group_id(0) + 1) * get_local_size(0)), num_q_blocks) - 1;
    const int group_last_visible = last_visible_key(min(group_last_qb * BLOCK_Q + BLOCK_Q, q_len) - 1, q_len, kv_len, causal);
    const int group_kb_end = group_last_visible < 0 ? 0 : group_last_visible / BLOCK_K + 1;
    const int sink_end = min(sink, kv_len);
    const bool dense_head = head_log2_tau[h] == -INFINITY;

    /* Per-row data of the whole query block, loaded once. A NaN threshold becomes -inf: every
       estimate passes it. */
    float thr[BLOCK_Q], best[BLOCK_Q];
    int limit[BLOCK_Q];
    bool need_reference = false;
    __global const float *thr_row = ws_f32(ws, thr_at) + (long)bh * q_len;
    for (int r = 0; r < BLOCK_Q; ++r) {
        const int row = row_first + r;
        limit[r] = last_visible_key(row, q_len, kv_len, causal);
        thr[r] = row < q_len ? thr_row[row] : INFINITY;
        thr[r] = isnan(thr[r]) ? -INFINITY : thr[r];
        need_reference = need_reference || (!dense_head && thr[r] == INFINITY && limit[r] >= 0);
        best[r] = -INFINITY;
    }
#if EXACT
    __global const float *ktb = kt + kt_at + bhk * HEAD_DIM * kv_len_padded;
    float qv[BLOCK_Q][HEAD_DIM];
    for (int r = 0; r < BLOCK_Q; ++r) {
        const int row = row_first + r;
        const long qo = b * q_sb + h * q_sh + (long)row * q_st;
        for (int c = 0; c < HEAD_DIM; ++c)
            qv[r][c] = row < q_len ? load_elem(q, qo + c) : 0.0f;
    }
#define CHUNK_SCORES(g, j0, lo, hi) chunk_scores(qv, g, ktb, kv_len_padded, j0, scale_log2e, lo, hi)
#else
    float qv[BLOCK_Q][PAIR_CHANNELS], qscale[BLOCK_Q][NUM_GROUPS];
    __global const uchar *qcodes = ws + q_codes_at;
    for (int r = 0; r < BLOCK_Q; ++r) {
        const int row = row_first + r;
        for (int gr = 0; gr < NUM_GROUPS; ++gr)
            qscale[r][gr] = row < q_len ? ws_f32(ws, q_scales_at)[q_scales_at_row(bh, q_len, row) + gr] : 0.0f;
        for (int p = 0; p < CODE_BYTES; ++p) {
            const char byte = row < q_len ? as_char(qcodes[q_codes_at_row(bh, q_len, row) + p]) : 0;
            qv[r][2 * p] = (float)code_low(byte);
            qv[r][2 * p + 1] = (float)code_high(byte);
        }
        for (int c = 2 * CODE_BYTES; c < PAIR_CHANNELS; ++c)
            qv[r][c] = 0.0f;
    }
    __global const float *pairs = ws_f32(ws, k_pairs_at) + k_pairs_at_head(bhk, kv_len_padded);
    __global const float *kscale = ws_f32(ws, k_scales_at) + k_scales_at_head(bhk, kv_len_padded);
    __global const float *corr = ws_f32(ws, corr_at) + (long)bh * kv_len_padded;
#define CHUNK_SCORES(g, j0, lo, hi) \
    chunk_scores(qv, qscale, g, pairs, kscale, corr, kv_len_padded, j0, scale_log2e, lo, hi)
    const long q_rows = b * q_sb + h * q_sh + (long)row_first * q_st;
    __global const float *ktb = kt + kt_at + bhk * HEAD_DIM * kv_len_padded;
    const int rows = row_last - row_first + 1;
    float shift[BLOCK_Q];
    bool shifted = false; /* shift[] is filled at the first second look */
#endif

    /* Pass 0 (only when some row of the work-group has no reference set) finds each row's
       highest visible estimate; pass 1 decides. The passes and key tiles are the same for every
       work-item of the group, which meet at a barrier after each tile of KB_TILE key blocks
       (about 512 KiB of key data): the group's adjacent query blocks then read a tile while it is
       in cache, instead of each streaming all keys from memory. */
    __local int group_needs_reference;
    if (get_local_id(0) == 0)
        group_needs_reference = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (need_reference && active)
        atomic_or(&group_needs_reference, 1);
    barrier(CLK_LOCAL_MEM_FENCE);
    int count = 0;
    for (int pass = group_needs_reference ? 0 : 1; pass < 2; ++pass) {
        const int my_kb_end = pass == 0 && !need_reference ? 0 : kb_end;
        for (int tile = 0; tile < group_kb_end; tile += KB_TILE) {
            for (int kb = tile; kb < min(tile + KB_TILE, my_kb_end); ++kb) {
                const int k0 = kb * BLOCK_K, k1 = k0 + BLOCK_K - 1;
                bool keep = pass == 1 && (dense_head || k0 < sink_end || (k1 >= forced_first && k0 <= forced_last));
                const bool evaluated = !keep;
                float16 block_best = (float16)(-INFINITY); /* pass 1: the block's margins, lane-wise max */
                for (int g = 0; !keep && g < BLOCK_Q && row_first + g < q_len; g += R) {
                    /* A block of 16 keys is one half of its 32-key chunk. */
                    for (int j0 = k0 / CHUNK * CHUNK; !keep && j0 <= min(k1, last_visible); j0 += CHUNK) {
                        float16 lo[R], hi[R];
                        CHUNK_SCORES(g, j0, lo, hi);
                        /* Pass 0 raises each row's best visible estimate (fmax leaves NaN out); pass 1
                           keeps the block when a visible margin is >= 0, tested once per tile on the
                           lane-wise maximum over its rows. */
                        float16 widest = (float16)(-INFINITY);
                        _Pragma("unroll") for (int r = 0; r < R; ++r) {
                            if (pass == 0)
                                best[g + r] = fmax(best[g + r], hmax16(fmax(hide_invisible(lo[r], j0, k0, k1, limit[g + r]),
                                                                            hide_invisible(hi[r], j0 + 16, k0, k1, limit[g + r]))));
                            else
                                widest = fmax(widest, fmax(half_margin(lo[r], thr[g + r], j0, k0, k1, limit[g + r]),
                                                           half_margin(hi[r], thr[g + r], j0 + 16, k0, k1, limit[g + r])));
                        }
                        keep = any(widest >= (float16)(0.0f));
                        block_best = fmax(block_best, widest);
                    }
                }
#if !EXACT
                if (pass == 1 && evaluated && !keep && refine_log2 > 0.0f && hmax16(block_best) >= -refine_log2) {
                    for (int r = 0; !shifted && r < rows; ++r)
                        shift[r] = ws_f32(ws, shift_at)[(long)bh * q_len + row_first + r];
                    shifted = true;
                    keep = exact_block_passes(q, q_rows, q_st, ktb, rows, k0, k1, limit, thr, shift, scale_log2e);
                }
#endif
                if (keep)
                    list[count++] = kb;
            }
            barrier(CLK_GLOBAL_MEM_FENCE);
        }
        if (pass == 0)
            for (int r = 0; r < BLOCK_Q; ++r)
                if (thr[r] == INFINITY && limit[r] >= 0)
                    thr[r] = best[r] + fmin(head_log2_tau[h], 0.0f);
    }
    if (active)
        mask_counts[counts_at + mask_row] = count;
}
#endif /* !ESTIMATE_GPU */

#if ESTIMATE_GPU
/* ---- The GPU variant (SALE) -------------------------------------------------------------------
 * The CPU variant gives a work-item a whole query block against every key block: 256 work-items at
 * 8K with 2 heads, where a GPU wants tens of thousands. Here the key range is split across
 * work-groups: a work-group is one (query block, key block) pair and a work-item one key of it,
 * 8K x 128 x 2 = 2M work-items at 8K. The group's query codes, scales and thresholds sit in local
 * memory and every work-item reads the same element (a broadcast); the keep decision is a
 * reduction over the group, taken every ROW_CHUNK rows so that a kept block stops early.
 * Then compact_mask turns the per-block flags into the ascending index lists of the mask format.
 * Rows with no sink or local key take their highest estimate as reference (the CPU variant's pass
 * 0) in reference_thresholds first.
 * The integer sums are exact (4-bit codes sign-extended into bytes, products summed in int, with
 * cl_khr_integer_dot_product's packed dot product where USE_INT_DOT), and the f32 operations after
 * them are the CPU variant's, in its order.
 */
#if USE_INT_DOT
#pragma OPENCL EXTENSION cl_khr_integer_dot_product : enable
#endif
#define CODE_WORDS (NUM_GROUPS * 2) /* a channel group's 16 codes: 8 bytes of two nibbles, two uints */
#define ROW_CHUNK 16                /* rows between keep decisions */

/* Sign-extends the 4-bit two's-complement value in the low half of each byte to the whole byte:
   (x & 0x08080808) * 0x1E copies each byte's sign bit into bits 4-7 of the same byte, without a
   carry into the next (8 * 0x1E = 0xF0). */
static inline uint sign_extend_nibbles(uint x) { return x | ((x & 0x08080808u) * 0x1Eu); }

/* The sum of the products of the four signed bytes of a and b, exact. */
static inline int dot4(uint a, uint b)
{
#if USE_INT_DOT
    return dot_4x8packed_ss_int(a, b);
#else
    /* Byte i, sign-extended, by shifts on int: (int)(a << (24 - 8 i)) >> 24. Scalar shifts rather
       than as_char4, whose vector bitcast oclgrind 21.10's --uninitialized stopped on. */
    int sum = 0;
    for (int i = 0; i < 4; ++i)
        sum += ((int)(a << (24 - 8 * i)) >> 24) * ((int)(b << (24 - 8 * i)) >> 24);
    return sum;
#endif
}

/* A channel group's exact sum of code products from the two code words of each side. Low and high
   nibbles are separated alike on both sides, so the channels still meet their own partners. */
static inline int group_dot(uint q0, uint q1, uint k0, uint k1)
{
    const uint m = 0x0F0F0F0Fu;
    return dot4(sign_extend_nibbles(q0 & m), sign_extend_nibbles(k0 & m)) +
           dot4(sign_extend_nibbles((q0 >> 4) & m), sign_extend_nibbles((k0 >> 4) & m)) +
           dot4(sign_extend_nibbles(q1 & m), sign_extend_nibbles(k1 & m)) +
           dot4(sign_extend_nibbles((q1 >> 4) & m), sign_extend_nibbles((k1 >> 4) & m));
}

/* The code bytes of one token (`stride` bytes apart) as CODE_WORDS little-endian words; bytes past
   CODE_BYTES are 0. */
static inline void load_code_words(__global const uchar *codes, long stride, uint w[CODE_WORDS])
{
    for (int i = 0; i < CODE_WORDS; ++i)
        w[i] = 0u;
    for (int p = 0; p < CODE_BYTES; ++p)
        w[p >> 2] |= (uint)codes[(long)p * stride] << ((p & 3) * 8);
}

/* The int4 estimate (log2 units) of one (row, key) pair, in the CPU variant's f32 operations:
   start at the key's correction, add each group's sum times the query scale times the key scale
   (one rounded product, then one fma), scale at the end. */
static inline float pair_estimate(const uint qw[CODE_WORDS], const float qs[NUM_GROUPS], const uint kw[CODE_WORDS],
                                  const float ks[NUM_GROUPS], float corr, float scale_log2e)
{
    float e = corr;
    for (int g = 0; g < NUM_GROUPS; ++g) {
        const float scaled = (float)group_dot(qw[2 * g], qw[2 * g + 1], kw[2 * g], kw[2 * g + 1]) * qs[g];
        e = fma(scaled, ks[g], e);
    }
    return e * scale_log2e;
}

/* A row's int4 data and key data come from the workspace layouts of common.cl. */
#define ROW_ARGS                                                                                          \
    __global uchar *ws, long q_codes_at, long q_scales_at, long k_codes_at, long k_scales_at, long corr_at

static inline void load_key(__global uchar *ws, long k_codes_at, long k_scales_at, long corr_at, long bhk, long bh,
                            int kv_len_padded, int j, uint kw[CODE_WORDS], float ks[NUM_GROUPS], float *corr)
{
    load_code_words(ws + k_codes_at + k_codes_at_head(bhk, kv_len_padded) + j, kv_len_padded, kw);
    __global const float *scales = ws_f32(ws, k_scales_at) + k_scales_at_head(bhk, kv_len_padded) + j;
    for (int g = 0; g < NUM_GROUPS; ++g)
        ks[g] = scales[(long)g * kv_len_padded];
    *corr = ws_f32(ws, corr_at)[bh * kv_len_padded + j];
}

/*
 * For each row with no sink or local key that sees a key (threshold +inf, not a dense head): the
 * threshold becomes its highest visible estimate e plus min(log2 tau, 0), as in the CPU variant.
 * Estimates that are NaN are left out (fmax). Every other row returns at once.
 * Global size: (q_len, B*Hq).
 */
__kernel void reference_thresholds(int q_heads, int group, int q_len, int kv_len, int kv_len_padded, int causal,
                                   float scale_log2e, __global const float *head_log2_tau, long thr_at, ROW_ARGS)
{
    const int row = get_global_id(0), bh = get_global_id(1);
    if (row >= q_len)
        return;
    const int b = bh / q_heads, h = bh - b * q_heads;
    const long bhk = (long)b * (q_heads / group) + h / group;
    __global float *thr = ws_f32(ws, thr_at) + (long)bh * q_len + row;
    const int limit = last_visible_key(row, q_len, kv_len, causal);
    if (*thr != INFINITY || limit < 0 || head_log2_tau[h] == -INFINITY || isnan(head_log2_tau[h]))
        return;
    uint qw[CODE_WORDS], kw[CODE_WORDS];
    float qs[NUM_GROUPS], ks[NUM_GROUPS], corr;
    load_code_words(ws + q_codes_at + q_codes_at_row(bh, q_len, row), 1, qw);
    for (int g = 0; g < NUM_GROUPS; ++g)
        qs[g] = ws_f32(ws, q_scales_at)[q_scales_at_row(bh, q_len, row) + g];
    float best = -INFINITY;
    for (int j = 0; j <= limit; ++j) {
        load_key(ws, k_codes_at, k_scales_at, corr_at, bhk, bh, kv_len_padded, j, kw, ks, &corr);
        best = fmax(best, pair_estimate(qw, qs, kw, ks, corr, scale_log2e));
    }
    *thr = best + fmin(head_log2_tau[h], 0.0f);
}

/*
 * Decides one key block for one query block, writing kb (kept) or -1 at position kb of the mask
 * row's index list (compact_mask then packs the list). The arguments are estimate_mask's (SALE),
 * with the key codes at k_codes_at where the CPU variant takes its key pairs.
 * Global size: (num_key_blocks * BLOCK_K, num_q_blocks * B*Hq), local size (BLOCK_K, 1).
 */
__kernel __attribute__((reqd_work_group_size(BLOCK_K, 1, 1))) void estimate_blocks(
    int q_heads, int group, int q_len, int kv_len, int kv_len_padded, int causal, float scale_log2e, int sink,
    int local_keys, int num_key_blocks, __global const float *head_log2_tau, __global uchar *ws, long q_codes_at,
    long q_scales_at, long k_codes_at, long k_scales_at, long corr_at, long thr_at, __global int *mask_counts,
    long counts_at, __global int *mask_indices, long indices_at, __global const STORAGE *q, long q_sb, long q_sh,
    long q_st, __global const float *kt, long kt_at, long shift_at, float refine_log2)
{
    __local uint q_words[BLOCK_Q][CODE_WORDS];
    __local float q_scales[BLOCK_Q][NUM_GROUPS], thr[BLOCK_Q], shift[BLOCK_Q], scratch[BLOCK_K];
    __local int limit[BLOCK_Q];
    const int lid = get_local_id(0), kb = get_group_id(0);
    const int num_q_blocks = (q_len + BLOCK_Q - 1) / BLOCK_Q;
    const int bh = get_global_id(1) / num_q_blocks, qb = get_global_id(1) - bh * num_q_blocks;
    const int b = bh / q_heads, h = bh - b * q_heads;
    const long bhk = (long)b * (q_heads / group) + h / group;
    int last_visible, forced_first, forced_last;
    query_block_keys(qb, q_len, kv_len, causal, local_keys, &last_visible, &forced_first, &forced_last);
    if (last_visible < 0 || kb > last_visible / BLOCK_K)
        return; /* the whole group: compact_mask reads only visible blocks */
    const int row_first = qb * BLOCK_Q, rows = min(BLOCK_Q, q_len - row_first);
    const int k0 = kb * BLOCK_K, k1 = k0 + BLOCK_K - 1, j = k0 + lid;
    __global int *list = mask_indices + indices_at + ((long)bh * num_q_blocks + qb) * num_key_blocks;
    if (head_log2_tau[h] == -INFINITY || k0 < min(sink, kv_len) || (k1 >= forced_first && k0 <= forced_last)) {
        if (lid == 0)
            list[kb] = kb;
        return;
    }
    for (int r = lid; r < BLOCK_Q; r += BLOCK_K) {
        const int row = row_first + r;
        uint w[CODE_WORDS];
        load_code_words(ws + q_codes_at + q_codes_at_row(bh, q_len, min(row, q_len - 1)), 1, w);
        for (int i = 0; i < CODE_WORDS; ++i)
            q_words[r][i] = w[i];
        for (int g = 0; g < NUM_GROUPS; ++g)
            q_scales[r][g] = ws_f32(ws, q_scales_at)[q_scales_at_row(bh, q_len, min(row, q_len - 1)) + g];
        const float t = row < q_len ? ws_f32(ws, thr_at)[(long)bh * q_len + row] : INFINITY;
        thr[r] = isnan(t) ? -INFINITY : t; /* NaN: every estimate passes */
        shift[r] = row < q_len ? ws_f32(ws, shift_at)[(long)bh * q_len + row] : 0.0f;
        limit[r] = last_visible_key(row, q_len, kv_len, causal);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint qw[CODE_WORDS], kw[CODE_WORDS];
    float qs[NUM_GROUPS], ks[NUM_GROUPS], corr;
    load_key(ws, k_codes_at, k_scales_at, corr_at, bhk, bh, kv_len_padded, min(j, kv_len_padded - 1), kw, ks, &corr);
    /* Margins t - thr of the visible pairs; +inf where t is not finite (its size is unknown). */
    /* Every loop holding a barrier has a fixed trip count, and no barrier sits under a branch:
       PoCL runs a work-group as loops between barriers and gave nondeterministic masks with a
       data-dependent exit (the branches were uniform, but it could not know). */
    float widest = -INFINITY;
    bool keep = false;
    for (int r0 = 0; r0 < BLOCK_Q; r0 += ROW_CHUNK) {
        for (int r = r0; !keep && r < min(r0 + ROW_CHUNK, rows); ++r) {
            if (j > limit[r])
                continue;
            for (int i = 0; i < CODE_WORDS; ++i)
                qw[i] = q_words[r][i];
            for (int g = 0; g < NUM_GROUPS; ++g)
                qs[g] = q_scales[r][g];
            const float t = pair_estimate(qw, qs, kw, ks, corr, scale_log2e);
            widest = fmax(widest, isfinite(t) ? t - thr[r] : INFINITY);
        }
        const float chunk_best = group_max(widest, scratch, lid, BLOCK_K); /* unconditional: a barrier */
        keep = keep || chunk_best >= 0.0f;
    }
    /* The exact second look (top of this file), on the same f32 operations as the CPU variant's:
       channel by channel multiply-adds, then the scale, against threshold + shift. */
    const float block_best = group_max(widest, scratch, lid, BLOCK_K);
    const bool refine = !keep && refine_log2 > 0.0f && block_best >= -refine_log2;
    float passing = -INFINITY;
    if (refine) {
        __global const float *ktb = kt + kt_at + bhk * HEAD_DIM * kv_len_padded;
        for (int r = 0; r < rows; ++r) {
            if (j > limit[r])
                continue;
            const long qo = b * q_sb + h * q_sh + (long)(row_first + r) * q_st;
            float acc = 0.0f;
            for (int c = 0; c < HEAD_DIM; ++c)
                acc = fma(load_elem(q, qo + c), ktb[kt_index(c, j)], acc);
            const float t = acc * scale_log2e;
            const float bar = thr[r] + shift[r];
            passing = fmax(passing, isfinite(t) ? t - bar : INFINITY);
        }
    }
    const float exact_best = group_max(passing, scratch, lid, BLOCK_K);
    keep = keep || exact_best >= 0.0f;
    if (lid == 0 && !isnan(head_log2_tau[h])) /* not another selector's head (a store, no barrier) */
        list[kb] = keep ? kb : -1;
}

/* Packs each mask row's flags (estimate_blocks) into its ascending list and count, in place: the
   write position never passes the read position. Global size: (num_q_blocks, B*Hq). */
__kernel void compact_mask(int q_heads, int q_len, int kv_len, int causal, int local_keys, int num_key_blocks,
                           __global const float *head_log2_tau, __global int *mask_counts, long counts_at,
                           __global int *mask_indices, long indices_at)
{
    const int qb = get_global_id(0), bh = get_global_id(1), num_q_blocks = (q_len + BLOCK_Q - 1) / BLOCK_Q;
    if (qb >= num_q_blocks || isnan(head_log2_tau[bh % q_heads]))
        return;
    int last_visible, forced_first, forced_last;
    query_block_keys(qb, q_len, kv_len, causal, local_keys, &last_visible, &forced_first, &forced_last);
    const int kb_end = last_visible < 0 ? 0 : last_visible / BLOCK_K + 1;
    const long mask_row = (long)bh * num_q_blocks + qb;
    __global int *list = mask_indices + indices_at + mask_row * num_key_blocks;
    int count = 0;
    for (int kb = 0; kb < kb_end; ++kb)
        if (list[kb] >= 0)
            list[count++] = kb;
    mask_counts[counts_at + mask_row] = count;
}
#endif /* ESTIMATE_GPU */

/*
 * Attention stage: FlashAttention-2-style tiled attention with an online softmax and f32
 * accumulation, over every visible key (SPARSE == 0) or over the key blocks listed in a block
 * mask (SPARSE == 1, the clsa_block_mask layout of clsa.h: per (batch, query head, query block) a count and that
 * many ascending key-block indices, rows padded to num_key_blocks).
 *
 * Inputs: Q in its storage dtype and strides; K^T and V prepared by kv_layout.cl.
 * Scores are computed in base 2: Q is pre-multiplied by scale * log2(e), so exp2 gives the
 * softmax weights without a multiply per score.
 *
 * Non-finite values (the policy is in clsa.h, "Non-finite values"): a key a row cannot see
 * contributes nothing, so its weight is never multiplied into its V row (0 x Inf is NaN). A query
 * row with a value that is not finite is made all NaN here, and so is such a K row by kv_layout,
 * so that their scores are NaN, never a -inf that would pass for a masked key. A NaN score gives
 * a NaN weight, and the row's sum and output turn NaN: the kernels skip a row's chunk or tile
 * only when it holds none of the row's visible keys, not when its maximum is -inf (fmax drops
 * NaN, so an all-NaN chunk has maximum -inf).
 *
 * Defines: HEAD_DIM, CLSA_DTYPE, SPARSE, KERNEL_STYLE_CPU or KERNEL_STYLE_GPU, and
 *   CPU: ROWS_PER_ITEM (query rows per work-item), KEY_TILE (keys per cache tile; sparse tiles hold
 *   KEY_TILE / BLOCK_K kept blocks, when SPARSE_TILES is 1)
 *   GPU: GROUP_SIZE (query rows per work-group, one per work-item), KEY_TILE (keys per tile)
 *   SPARSE: BLOCK_Q, BLOCK_K (a work-item's or work-group's rows lie in one query block)
 *   QK_HALF: 1 multiplies Q and K in half precision, each product added to an f32 score
 *   (clsa_shape.qk_half; needs cl_khr_fp16, USE_FP16)
 *   VALUE_PRUNE: 1 prunes (and with VALUE_BITS 1..8 log-quantizes) the probabilities
 *   (clsa_shape.value_prune, value_bits): two passes over the keys, the first for each row's
 *   exact max and sum only, the second forming p = 2^(s - m) / l, pruning it and multiplying by V;
 *   each row's counts of pruned and seen probabilities go to value_counts.
 */

#if QK_HALF
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
/* acc + q * k with the product rounded to half (q, k rounded to half first; acc stays f32). */
#define QK_TERM(q, k, acc) ((acc) + convert_float((half)(q) * (half)(k)))
#define QK_TERM16(q, k, acc) ((acc) + convert_float16((half16)((half)(q)) * convert_half16(k)))
#else
#define QK_TERM(q, k, acc) fma((q), (k), (acc))
#define QK_TERM16(q, k, acc) fma((float16)(q), (k), (acc))
#endif

#if VALUE_PRUNE
#define VALUE_ARGS                                                                                 \
    , float value_t, float value_min_exp, float value_base, float value_max_k, __global uint *value_counts, \
        long value_counts_at
/* Ji et al.'s rule on probabilities p (float or float16): 0 below value_t; above, p itself or,
   with VALUE_BITS, the middle (in the log domain) of its bin among 2^bits - 1 log-uniform bins on
   [value_t, 1]. NaN stays NaN (p < t is false, and the level is not taken for it). */
#if VALUE_BITS
#define VALUE_KEPT(p)                                                                              \
    select(exp2(value_min_exp +                                                                    \
                (clamp(floor((log2(p) - value_min_exp) / value_base), 0.0f, value_max_k) + 0.5f) * value_base), \
           (p), isnan(p))
#else
#define VALUE_KEPT(p) (p)
#endif
#define VALUE_RULE(p) select(VALUE_KEPT(p), (p)*0.0f, (p) < value_t)
/* Where a row's two counts (pruned, seen) go. */
#define VALUE_COUNTS(bh, row) (value_counts + value_counts_at + 2 * ((long)(bh) * q_len + (row)))
#else
#define VALUE_ARGS
#endif

#if SPARSE
#define MASK_ARGS                                                                                  \
    , __global const int *mask_counts, long counts_at, __global const int *mask_indices,            \
        long indices_at, int num_key_blocks
/* Visits the [start, end) key ranges of the blocks listed in mask row `mask_row`, cut at key_end.
   A count is clamped to [0, num_key_blocks] and an index outside [0, num_key_blocks) skipped, so
   that even an unchecked mask (CLSA_MASK_TRUST) never makes the kernel read out of bounds. */
#define FOR_EACH_KEY_RANGE(mask_row, key_end, start, end)                                          \
    const int mask_count_ = clamp(mask_counts[counts_at + (mask_row)], 0, num_key_blocks);         \
    __global const int *mask_list_ = mask_indices + indices_at + (long)(mask_row)*num_key_blocks;  \
    for (int mb_ = 0; mb_ < mask_count_; ++mb_)                                                    \
        for (int kb_ = mask_list_[mb_], once_ = kb_ >= 0 && kb_ < num_key_blocks,                  \
                 start = once_ ? kb_ * BLOCK_K : 0, end = min(start + BLOCK_K, key_end);           \
             once_; once_ = 0)
#else
#define MASK_ARGS
#define FOR_EACH_KEY_RANGE(mask_row, key_end, start, end)                                          \
    for (int start = 0, end = key_end, once_ = 1; once_; once_ = 0)
#endif

/* Loads query row `row` (HEAD_DIM values at qo) pre-multiplied by scale_log2e into qs: all NaN
   when a value is not finite (also after the multiply), zeros past q_len. 16 channels at a time:
   at low density a work-item sees few keys, and a value at a time made this and the output's
   stores a tenth of sparse attention's time. */
static inline void load_query(__global const STORAGE *q, long qo, int row, int q_len, float scale_log2e, float *qs)
{
    bool finite = true;
    int c = 0;
    for (; c + 16 <= HEAD_DIM; c += 16) {
        const float16 x = row < q_len ? load16(q, qo + c) * scale_log2e : (float16)(0.0f);
        vstore16(x, 0, qs + c);
        finite = finite && all(isfinite(x));
    }
    for (; c < HEAD_DIM; ++c) {
        qs[c] = row < q_len ? load_elem(q, qo + c) * scale_log2e : 0.0f;
        finite = finite && isfinite(qs[c]);
    }
    for (c = 0; !finite && c < HEAD_DIM; ++c)
        qs[c] = NAN;
}

/* 1 / l for the output: a row that saw no key has l == 0 and gets zeros; a row that saw a
   non-finite score has l NaN and keeps it. */
static inline float inverse_sum(float l) { return l == 0.0f ? 0.0f : 1.0f / l; }

#if VALUE_PRUNE
/* The sum of a count's 16 lanes. */
static inline uint hsum_ints(int16 x)
{
    int t[16];
    vstore16(x, 0, t);
    uint sum = 0;
    for (int i = 0; i < 16; ++i)
        sum += (uint)t[i];
    return sum;
}
#endif

#define ATTENTION_ARGS                                                                             \
    __global const STORAGE *q, long q_sb, long q_sh, long q_st, __global const float *workspace,   \
        long kt_at, long v_at, __global STORAGE *o, long o_sb, long o_sh, long o_st,               \
        int q_heads, int group, int q_len, int kv_len, int kv_len_padded, int causal,              \
        float scale_log2e MASK_ARGS VALUE_ARGS

#ifdef KERNEL_STYLE_CPU
/*
 * CPU style. Each work-item owns ROWS_PER_ITEM query rows and walks the keys 16 at a time, with
 * explicit float16 vectors and register tiles (no local memory, no barriers): PoCL runs a
 * work-group as a loop, and this shape is what reaches the GEMM-like rate there (measured on
 * PoCL 3.1: 8 rows x float16 register tiles ran a 1024^3 f32 GEMM at 82 GFLOP/s, local-memory
 * GPU-style tiles at 6-8).
 *   scores: s[r] (16 keys) += q[r][c] * K^T[c][16 keys]   (R float16 accumulators)
 *   values: acc[r][v] (16 channels) += p[r][j] * V[j][16 channels]
 * Global size: (row groups rounded up to the local size, B*Hq).
 */
#define R ROWS_PER_ITEM
#define NV (HEAD_DIM_PADDED / 16)
#if SPARSE
#define TILE_BLOCKS max(1, KEY_TILE / BLOCK_K) /* kept blocks per cache tile */
#endif

/* acc[r] (16 channels of V chunk v) += p[r][jj] * V[jj] over the 16 keys of a chunk at vp. With
   `masked` (a chunk that reaches past some row's last visible key), a key past row r's last
   visible key is skipped rather than weighted by its zero: 0 x Inf is NaN, and a value the row
   cannot see must not reach it. Callers pass a constant, so the full chunks keep the plain loop. */
static inline __attribute__((always_inline)) void accumulate_values(float16 acc[R][NV], const float ps[R][16],
                                                                   __global const float *vp, const int limit[R], int j0,
                                                                   bool masked)
{
    for (int v = 0; v < NV; ++v) {
        float16 a[R]; /* unrolled, so that the R accumulators of channel chunk v stay in registers */
        _Pragma("unroll") for (int r = 0; r < R; ++r)
            a[r] = acc[r][v];
        for (int jj = 0; jj < 16; ++jj) {
            const float16 vv = vload16(v, vp + jj * HEAD_DIM_PADDED);
            _Pragma("unroll") for (int r = 0; r < R; ++r)
                if (!masked || j0 + jj <= limit[r])
                    a[r] = fma((float16)(ps[r][jj]), vv, a[r]);
        }
        _Pragma("unroll") for (int r = 0; r < R; ++r)
            acc[r][v] = a[r];
    }
}

__kernel void attention(ATTENTION_ARGS)
{
    /* No early return for rows past q_len: dense attention meets a barrier per key tile, which
       every work-item of the group must reach (such rows see no key and store nothing). */
    const int row0 = get_global_id(0) * R;
    const int bh = get_global_id(1);
    const int b = bh / q_heads, h = bh - b * q_heads;
    const long kv_bh = (long)b * (q_heads / group) + h / group;
    __global const float *ktb = workspace + kt_at + kv_bh * HEAD_DIM * kv_len_padded;
    __global const float *vb = workspace + v_at + kv_bh * kv_len_padded * HEAD_DIM_PADDED;

    float qs[R][HEAD_DIM];
    int limit[R];
    int min_limit = INT_MAX, max_limit = -1;
    for (int r = 0; r < R; ++r) {
        const int row = row0 + r;
        limit[r] = last_visible_key(row, q_len, kv_len, causal);
        min_limit = min(min_limit, limit[r]);
        max_limit = max(max_limit, limit[r]);
        load_query(q, b * q_sb + h * q_sh + (long)row * q_st, row, q_len, scale_log2e, qs[r]);
    }

    /* Per row: the running maximum m (scalar) and the sum of weights l, kept as 16 lane partial
       sums (one horizontal sum at the end, and a more accurate sum than one running scalar). */
    float16 acc[R][NV], l[R];
    float m[R];
    float ps[R][16];
    for (int r = 0; r < R; ++r) {
        m[r] = -INFINITY;
        l[r] = (float16)(0.0f);
        for (int v = 0; v < NV; ++v)
            acc[r][v] = (float16)(0.0f);
    }
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int key_end = max_limit + 1;
#if VALUE_PRUNE
    /* Two passes over the same keys: the first finds m and l (acc untouched), the second forms
       p = 2^(s - m) / l, prunes it and multiplies by V, counting per lane what it pruned and saw. */
    int16 pruned[R], seen[R];
    float16 inv_l[R];
    for (int r = 0; r < R; ++r)
        pruned[r] = seen[r] = (int16)(0);
    for (int pass = 0; pass < 2; ++pass) {
        for (int r = 0; pass == 1 && r < R; ++r)
            inv_l[r] = (float16)(inverse_sum(hsum16(l[r])));
#endif
#if SPARSE
    /* Sparse: the kept blocks in tiles of TILE_BLOCKS (about KEY_TILE keys, as dense's tiles) with a
       barrier after each, so that the work-group's work-items (the rows of one query block, which
       share its mask row) read a tile's blocks while the others' reads left them in cache. Without
       it each work-item streamed its blocks from memory for its own rows: at head_dim 256 (Gemma 3,
       8K) sparse attention took 1.3-2.2 x dense x density. The tile loop runs to the largest count
       among the group's mask rows, the same for every work-item (rows past q_len see no key).
       SPARSE_TILES 0 leaves the tiles and barriers out (src/attention.c says where). */
    const int q_blocks = (q_len + BLOCK_Q - 1) / BLOCK_Q;
#if SPARSE_TILES
    const int group_row0 = (int)(get_group_id(0) * get_local_size(0)) * R;
    const int group_first_qb = min(group_row0 / BLOCK_Q, q_blocks - 1);
    const int group_last_qb = min((group_row0 + (int)get_local_size(0) * R - 1) / BLOCK_Q, q_blocks - 1);
    int group_count = 0;
    for (int qb = group_first_qb; qb <= group_last_qb; ++qb)
        group_count = max(group_count, clamp(mask_counts[counts_at + bh * q_blocks + qb], 0, num_key_blocks));
#endif
    const int mask_row = bh * q_blocks + min(row0 / BLOCK_Q, q_blocks - 1);
    const int my_count = clamp(mask_counts[counts_at + mask_row], 0, num_key_blocks);
    __global const int *mask_list = mask_indices + indices_at + (long)mask_row * num_key_blocks;
#if SPARSE_TILES
    for (int tile = 0; tile < group_count; tile += TILE_BLOCKS, barrier(CLK_GLOBAL_MEM_FENCE))
        for (int mb = tile; mb < min(tile + TILE_BLOCKS, my_count); ++mb)
#else /* without tiles (SPARSE_TILES 0, src/attention.c): each work-item walks its blocks alone */
    for (int mb = 0; mb < my_count; ++mb)
#endif
#else
    /* Dense: the keys in tiles of KEY_TILE (about 512 KiB of K and V, which stay in the L2 cache),
       with a barrier after each, so that the work-group's work-items (adjacent rows) read a tile
       while the others' reads left it in cache. Without it each work-item streamed all of K and V
       from memory for its own 16 rows, and dense fell to 0.4 of SGEMM at 32K. The tile loop runs
       to the group's last key, the same for every work-item. */
    const int group_last_row = min((int)((get_group_id(0) + 1) * get_local_size(0)) * R, q_len) - 1;
    const int group_key_end = last_visible_key(group_last_row, q_len, kv_len, causal) + 1;
    for (int tile = 0; tile < group_key_end; tile += KEY_TILE, barrier(CLK_GLOBAL_MEM_FENCE))
#endif
    {
#if SPARSE
        /* An index outside [0, num_key_blocks) is skipped, so that even an unchecked mask
           (CLSA_MASK_TRUST) never makes the kernel read out of bounds. */
        const int kb = mask_list[mb];
        const bool listed = kb >= 0 && kb < num_key_blocks;
        const int first = listed ? kb * BLOCK_K : 0, last = listed ? min(first + BLOCK_K, key_end) : 0;
#else
        const int first = tile, last = min(tile + KEY_TILE, key_end);
#endif
        for (int j0 = first; j0 < last; j0 += 16) {
            float16 s[R];
            _Pragma("unroll") for (int r = 0; r < R; ++r)
                s[r] = (float16)(0.0f);
            __global const float *kp = ktb + kt_index(0, j0); /* the chunk's contiguous K^T */
            for (int c = 0; c < HEAD_DIM; ++c) {
                const float16 kv = vload16(c, kp);
                _Pragma("unroll") for (int r = 0; r < R; ++r)
                    s[r] = QK_TERM16(qs[r][c], kv, s[r]);
            }
            /* Only chunks that reach past some row's last visible key need the mask; a masked
               score is -inf, whose weight is 0. */
            const bool partial = j0 + 15 > min_limit;
            int16 above = (int16)(0);
            _Pragma("unroll") for (int r = 0; r < R; ++r) {
                if (partial)
                    s[r] = select(s[r], (float16)(-INFINITY), (int16)(j0) + lane > (int16)(limit[r]));
                /* a select on the comparison, not |=: oclgrind 21.10 loses lanes of the latter */
                above = select(above, (int16)(-1), s[r] > (float16)(m[r]));
            }
            /* The running maximum moves only when a score exceeds it, which after the first
               chunks is rare: the horizontal maxima and the rescaling of the accumulators are
               skipped otherwise (with no score above m, fmax(m, max s) is m and the rescale
               factor 1, so the result is the same). NaN scores compare false and leave m. */
#if VALUE_PRUNE
            if (pass == 1) {
                _Pragma("unroll") for (int r = 0; r < R; ++r) {
                    const float16 p = exp2(s[r] - (float16)(m[r] == -INFINITY ? 0.0f : m[r])) * inv_l[r];
                    const int16 visible = (int16)(j0) + lane <= (int16)(limit[r]); /* -1 where true */
                    seen[r] -= visible;
                    pruned[r] -= visible & (p < (float16)(value_t));
                    vstore16(VALUE_RULE(p), 0, ps[r]);
                }
                __global const float *vp = vb + (long)j0 * HEAD_DIM_PADDED;
                if (partial)
                    accumulate_values(acc, ps, vp, limit, j0, true);
                else
                    accumulate_values(acc, ps, vp, limit, j0, false);
                continue;
            }
#endif
            if (any(above))
                for (int r = 0; r < R; ++r) {
                    const float m_new = fmax(m[r], hmax16(s[r]));
                    if (m_new > m[r]) {
                        const float alpha = exp2(m[r] - m_new);
                        l[r] *= alpha;
#if !VALUE_PRUNE
                        for (int v = 0; v < NV; ++v)
                            acc[r][v] *= alpha;
#endif
                        m[r] = m_new;
                    }
                }
            _Pragma("unroll") for (int r = 0; r < R; ++r) {
                /* A row that has seen no finite score (m -inf) has only masked or NaN scores
                   here: subtracting 0 keeps their weights 0 and NaN, where -inf - -inf would be NaN. */
                const float16 p = exp2(s[r] - (float16)(m[r] == -INFINITY ? 0.0f : m[r]));
                l[r] += p;
                vstore16(p, 0, ps[r]);
            }
#if !VALUE_PRUNE
            __global const float *vp = vb + (long)j0 * HEAD_DIM_PADDED;
            if (partial)
                accumulate_values(acc, ps, vp, limit, j0, true);
            else
                accumulate_values(acc, ps, vp, limit, j0, false);
#endif
        }
    }
#if VALUE_PRUNE
    } /* the passes */
#endif

    for (int r = 0; r < R; ++r) {
        const int row = row0 + r;
        if (row >= q_len)
            break;
#if VALUE_PRUNE
        const float inv = 1.0f; /* the pruned probabilities are not renormalized */
        __global uint *counts = VALUE_COUNTS(bh, row);
        counts[0] = hsum_ints(pruned[r]);
        counts[1] = hsum_ints(seen[r]);
#else
        const float inv = inverse_sum(hsum16(l[r]));
#endif
        const long oo = b * o_sb + h * o_sh + (long)row * o_st;
        int v = 0;
        for (; v < HEAD_DIM / 16; ++v)
            store16(o, oo + v * 16, acc[r][v] * inv);
        if (HEAD_DIM % 16) { /* the last, partial channel chunk */
            float out[16];
            vstore16(acc[r][v] * inv, 0, out);
            for (int c = 0; c < HEAD_DIM % 16; ++c)
                store_elem(o, oo + v * 16 + c, out[c]);
        }
    }
}
#endif /* KERNEL_STYLE_CPU */

#ifdef KERNEL_STYLE_GPU
/*
 * GPU style. A work-group of GROUP_SIZE work-items owns GROUP_SIZE consecutive query rows, one
 * per work-item, and stages KEY_TILE keys of K and V at a time in local memory; every work-item
 * then reads the same local element (a broadcast). The key loop bounds are uniform across the
 * group so that every work-item reaches every barrier.
 * Global size: (row groups * GROUP_SIZE, B*Hq), local size (GROUP_SIZE, 1).
 */
__kernel __attribute__((reqd_work_group_size(GROUP_SIZE, 1, 1))) void attention(ATTENTION_ARGS)
{
    __local float ks[KEY_TILE][HEAD_DIM];
    __local float vs[KEY_TILE][HEAD_DIM];
    const int lid = get_local_id(0);
    const int row0 = get_group_id(0) * GROUP_SIZE;
    const int row = row0 + lid;
    const int bh = get_global_id(1);
    const int b = bh / q_heads, h = bh - b * q_heads;
    const long kv_bh = (long)b * (q_heads / group) + h / group;
    __global const float *ktb = workspace + kt_at + kv_bh * HEAD_DIM * kv_len_padded;
    __global const float *vb = workspace + v_at + kv_bh * kv_len_padded * HEAD_DIM_PADDED;

    const int limit = last_visible_key(row, q_len, kv_len, causal);
    const int key_end = last_visible_key(min(row0 + GROUP_SIZE, q_len) - 1, q_len, kv_len, causal) + 1;
    float qv[HEAD_DIM], acc[HEAD_DIM];
    load_query(q, b * q_sb + h * q_sh + (long)row * q_st, row, q_len, scale_log2e, qv);
    for (int c = 0; c < HEAD_DIM; ++c)
        acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
#if SPARSE
    const int mask_row = bh * ((q_len + BLOCK_Q - 1) / BLOCK_Q) + row0 / BLOCK_Q;
#endif
#if VALUE_PRUNE
    /* Two passes over the same keys (as the CPU style): m and l, then the pruned p times V. */
    uint pruned = 0, seen = 0;
    float inv_l = 0.0f;
    for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1)
            inv_l = inverse_sum(l);
#endif
    FOR_EACH_KEY_RANGE(mask_row, key_end, start, end)
    {
        for (int j0 = start; j0 < end; j0 += KEY_TILE) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
            for (int e = lid; e < KEY_TILE * HEAD_DIM; e += GROUP_SIZE) {
                const int kc = e / KEY_TILE, kj = e - kc * KEY_TILE; /* consecutive keys in K^T */
                ks[kj][kc] = ktb[kt_index(kc, j0 + kj)];
                const int vj = e / HEAD_DIM, vc = e - vj * HEAD_DIM; /* consecutive channels in V */
                vs[vj][vc] = vb[(long)(j0 + vj) * HEAD_DIM_PADDED + vc];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            float s[KEY_TILE];
            float mx = -INFINITY;
            for (int j = 0; j < KEY_TILE; ++j) {
                float dot = 0.0f;
                for (int c = 0; c < HEAD_DIM; ++c)
                    dot = QK_TERM(qv[c], ks[j][c], dot);
                s[j] = j0 + j > limit ? -INFINITY : dot;
                mx = fmax(mx, s[j]);
            }
            const float m_new = fmax(m, mx);
            if (j0 > limit)
                continue; /* the tile holds no key this row sees; the barriers stay uniform */
            /* Keys past the row's last visible key are left out, not weighted by 0: 0 x Inf is NaN. */
            const int visible = min(limit - j0 + 1, KEY_TILE);
#if VALUE_PRUNE
            if (pass == 1) {
                for (int j = 0; j < visible; ++j) {
                    const float p = exp2(s[j] - (m == -INFINITY ? 0.0f : m)) * inv_l;
                    pruned += p < value_t;
                    const float kept = VALUE_RULE(p);
                    for (int c = 0; c < HEAD_DIM; ++c)
                        acc[c] = fma(kept, vs[j][c], acc[c]);
                }
                seen += visible;
                continue;
            }
#endif
            const float alpha = exp2(m - m_new);
#if !VALUE_PRUNE
            for (int c = 0; c < HEAD_DIM; ++c)
                acc[c] *= alpha;
#endif
            float tile_sum = 0.0f; /* summed per tile first: a long running sum loses accuracy */
            for (int j = 0; j < visible; ++j) {
                const float p = exp2(s[j] - m_new);
                tile_sum += p;
#if !VALUE_PRUNE
                for (int c = 0; c < HEAD_DIM; ++c)
                    acc[c] = fma(p, vs[j][c], acc[c]);
#endif
            }
            l = fma(l, alpha, tile_sum);
            m = m_new;
        }
    }
#if VALUE_PRUNE
    } /* the passes */
#endif
    if (row < q_len) {
#if VALUE_PRUNE
        const float inv = 1.0f; /* the pruned probabilities are not renormalized */
        __global uint *counts = VALUE_COUNTS(bh, row);
        counts[0] = pruned;
        counts[1] = seen;
#else
        const float inv = inverse_sum(l);
#endif
        const long oo = b * o_sb + h * o_sh + (long)row * o_st;
        for (int c = 0; c < HEAD_DIM; ++c)
            store_elem(o, oo + c, acc[c] * inv);
    }
}
#endif /* KERNEL_STYLE_GPU */

/*
 * Prepended to every clsa kernel source.
 *
 * CLSA_DTYPE picks the storage type of Q, K, V and O: 0 f32, 1 f16, 2 bf16. All arithmetic is
 * f32. f16 goes through vload_half/vstore_half, which are core OpenCL and need no cl_khr_fp16;
 * bf16 is the top half of an f32 bit pattern and is stored with round-to-nearest-even.
 */
#ifndef CLSA_DTYPE
#error "CLSA_DTYPE must be defined"
#endif

#if CLSA_DTYPE == 0
#define STORAGE float
static inline float load_elem(__global const float *p, long i) { return p[i]; }
static inline void store_elem(__global float *p, long i, float x) { p[i] = x; }
#elif CLSA_DTYPE == 1
#define STORAGE half
static inline float load_elem(__global const half *p, long i) { return vload_half((size_t)i, p); }
static inline void store_elem(__global half *p, long i, float x) { vstore_half_rte(x, (size_t)i, p); }
#elif CLSA_DTYPE == 2
#define STORAGE ushort
/* The bf16 bits of f32 bits u (a uint or a uintN; store_elem and store16 share them): rounded to
   nearest, ties to even, and a NaN kept a (quiet) NaN. */
#define BF16_ROUNDED(u) (((u) + 0x7FFFu + (((u) >> 16) & 1u)) >> 16)
#define BF16_QUIET_NAN(u) (((u) >> 16) | 0x40u)
static inline float load_elem(__global const ushort *p, long i) { return as_float((uint)p[i] << 16); }
static inline void store_elem(__global ushort *p, long i, float x)
{
    const uint u = as_uint(x);
    p[i] = (ushort)(isnan(x) ? BF16_QUIET_NAN(u) : BF16_ROUNDED(u));
}
#else
#error "unknown CLSA_DTYPE"
#endif

/* Channels of the prepared V rows: HEAD_DIM rounded up to the 16 lanes of a float16. */
#define HEAD_DIM_PADDED (((HEAD_DIM) + 15) / 16 * 16)

/* Chunk-major index of channel c of item i in an array of `channels` channels: items in chunks of
   16, each chunk's channels x 16 floats contiguous, channel after channel, so that a float16 load
   is 16 items of one channel. Rows of all items per channel would put a chunk's channels a power
   of two apart (at 16K keys, 64 KiB): all in one cache set, more lines than the L1 and L2 have
   ways, so the chunk never stayed in cache between reads. Bit operations, not / and % (oclgrind,
   see pair_key_codes). */
static inline long chunk16_index(int c, int i, int channels) { return ((long)(i >> 4) * channels + c) * 16 + (i & 15); }

/* Where kv_layout.cl puts channel c of key j in a head's f32 K^T (from the head's start). */
static inline long kt_index(int c, int j) { return chunk16_index(c, j, HEAD_DIM); }

/* The last key (inclusive) query `row` may see; -1 when it sees none. Causal rows align to the
   end of the keys (FlashAttention >= 2.1): row i sees keys j <= i + kv_len - q_len. */
static inline int last_visible_key(int row, int q_len, int kv_len, int causal)
{
    if (row >= q_len)
        return -1;
    return causal ? min(row + kv_len - q_len, kv_len - 1) : kv_len - 1;
}

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

#ifdef BLOCK_Q
/* The keys the rows of query block qb see and must keep: the last visible key (-1: none) and the
   forced range [forced_first, forced_last] of every row's local keys and diagonal key (even when
   local_keys is 0). */
static inline void query_block_keys(int qb, int q_len, int kv_len, int causal, int local_keys, int *last_visible,
                                    int *forced_first, int *forced_last)
{
    const int row_first = qb * BLOCK_Q, row_last = min(row_first + BLOCK_Q, q_len) - 1;
    const int diag_first = row_first + kv_len - q_len, diag_last = row_last + kv_len - q_len;
    *last_visible = causal ? min(diag_last, kv_len - 1) : kv_len - 1;
    *forced_first = max(min(local_first(diag_first, local_keys, causal), diag_first), 0);
    *forced_last = min(max(local_last(diag_last, local_keys, causal), diag_last), *last_visible);
}
#endif

/* Horizontal max lane by lane (fmax: NaN lanes are ignored). The shorter tree over .lo/.hi halves
   is what one would write, but oclgrind 21.10's --uninitialized mis-tracks shuffles of 16-wide
   vectors (false reports on the halves, and a crash in its plugin on a sum). */
static inline float hmax16(float16 x)
{
    const float a = fmax(fmax(x.s0, x.s1), fmax(x.s2, x.s3)), b = fmax(fmax(x.s4, x.s5), fmax(x.s6, x.s7));
    const float c = fmax(fmax(x.s8, x.s9), fmax(x.sa, x.sb)), d = fmax(fmax(x.sc, x.sd), fmax(x.se, x.sf));
    return fmax(fmax(a, b), fmax(c, d));
}

/* Horizontal sum lane by lane, as hmax16 and for the same reason. */
static inline float hsum16(float16 x)
{
    float t[16];
    vstore16(x, 0, t);
    float even = 0.0f, odd = 0.0f;
    for (int i = 0; i < 16; i += 2) {
        even += t[i];
        odd += t[i + 1];
    }
    return even + odd;
}

/* 16 consecutive elements from p + i as f32 (vload_half16 is core OpenCL; bf16 is the top half
   of an f32). Only element alignment is needed. */
static inline float16 load16(__global const STORAGE *p, long i)
{
#if CLSA_DTYPE == 0
    return vload16(0, p + i);
#elif CLSA_DTYPE == 1
    return vload_half16(0, p + i);
#else
    return as_float16(convert_uint16(vload16(0, p + i)) << (uint16)(16));
#endif
}

/* Channels [16 g, 16 g + 16) of the token at `at`, as f32; lanes past HEAD_DIM are 0 (quantize.cl
   and the exact second look of estimate.cl). */
static inline float16 load_group(__global const STORAGE *x, long at, int g)
{
    const int c0 = g * 16;
    if (c0 + 16 <= HEAD_DIM)
        return load16(x, at + c0);
    float t[16];
    for (int i = 0; i < 16; ++i)
        t[i] = c0 + i < HEAD_DIM ? load_elem(x, at + c0 + i) : 0.0f;
    return vload16(0, t);
}

/* Stores the 16 values of x at p + i in the storage dtype, each as store_elem would. */
static inline void store16(__global STORAGE *p, long i, float16 x)
{
#if CLSA_DTYPE == 0
    vstore16(x, 0, p + i);
#elif CLSA_DTYPE == 1
    vstore_half16_rte(x, 0, p + i);
#else
    const uint16 u = as_uint16(x);
    vstore16(convert_ushort16(select(BF16_ROUNDED(u), BF16_QUIET_NAN(u), isnan(x))), 0, p + i);
#endif
}

/* ---- The int4 layout that quantize.cl writes and estimate.cl reads (byte offsets of each array
   in the workspace come as kernel arguments; clsa_quant_layout documents them for the host) ----
 *   q codes  [B*Hq][q_len][CODE_BYTES]           row-major: one query's channels together
 *   q scales [B*Hq][q_len][NUM_GROUPS]
 *   k codes  [B*Hkv][CODE_BYTES][kv_len_padded]  transposed: a channel pair of 16 keys is one uchar16
 *   k scales [B*Hkv][NUM_GROUPS][kv_len_padded]  transposed likewise
 *   k corrections [B*Hq][kv_len_padded]          mean_q . K'_j per query head
 *   byte = (code[2p] & 0xF) | (code[2p+1] << 4); codes are int4 two's complement in [-7, 7].
 * QUANT_GROUP channels share one scale; it is even, so both channels of a byte share it. */
#define CODE_BYTES ((HEAD_DIM + 1) / 2)
#define NUM_GROUPS ((HEAD_DIM + QUANT_GROUP - 1) / QUANT_GROUP)

static inline __global float *ws_f32(__global uchar *ws, long at) { return (__global float *)(ws + at); }

/* Where one query row's codes and scales start (bh = batch * Hq + query head). */
static inline long q_codes_at_row(long bh, int q_len, int row) { return (bh * q_len + row) * CODE_BYTES; }
static inline long q_scales_at_row(long bh, int q_len, int row) { return (bh * q_len + row) * NUM_GROUPS; }
/* Where one kv head's transposed codes and scales start (bhk = batch * Hkv + kv head); byte p
   (scale group g) of key j is then at + p (g) * kv_len_padded + j. */
static inline long k_codes_at_head(long bhk, int kv_len_padded) { return bhk * CODE_BYTES * kv_len_padded; }
static inline long k_scales_at_head(long bhk, int kv_len_padded) { return bhk * NUM_GROUPS * kv_len_padded; }

/* The estimator's key pairs (clsa_quant_layout.k_pairs): keys j and j + 16 of a 32-key chunk in one
   f32, code_j + PAIR_SHIFT * code_{j+16}. A channel group's products sum to at most 16 * 49 = 784
   in magnitude, below PAIR_SHIFT / 2, so the two sums separate exactly (rint of the f32 sum over
   PAIR_SHIFT is the upper one), and the packed sum stays below 2^24, exact in f32. */
#define PAIR_SHIFT 2048.0f
/* Channels of the key pairs: whole groups, so that the estimator's channel loop has a fixed trip
   count; channels past HEAD_DIM are zero. */
#define PAIR_CHANNELS (NUM_GROUPS * QUANT_GROUP)
static inline long k_pairs_at_head(long bhk, int kv_len_padded) { return bhk * PAIR_CHANNELS * (kv_len_padded / 2); }
/* A head's pairs are chunk-major (chunk16_index): the PAIR_CHANNELS x 16 floats of one 32-key
   chunk are contiguous (8 KiB at head_dim 128). Element (c, u) is channel c of pair u = chunk*16 +
   lane. */
static inline long k_pair_index(int c, int u) { return chunk16_index(c, u, PAIR_CHANNELS); }

/* The two codes of a byte, sign-extended (the low nibble is channel 2p). */
static inline char code_low(char byte) { return (char)(byte << 4) >> 4; }
static inline char code_high(char byte) { return byte >> 4; }
static inline uchar code_byte(int low, int high) { return (uchar)((low & 0xF) | ((high & 0xF) << 4)); }

/* ---- Work-group reductions (the GPU variants) ----
 * group_max(x, scratch, lid, n) and group_sum(...) return to every work-item the maximum or sum of x
 * over its work-group of n work-items (a power of two); scratch holds n floats of local memory.
 * Every work-item must call them (they hold barriers). With USE_SUBGROUPS each sub-group reduces
 * its own first (cl_khr_subgroups), and one work-item combines the sub-groups' results. */
#if USE_SUBGROUPS
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif
static inline float add_floats(float a, float b) { return a + b; }
#if USE_SUBGROUPS
#define GROUP_REDUCE(name, combine, sub_group_reduce)                                              \
    static inline float name(float x, __local float *scratch, int lid, int n)                     \
    {                                                                                            \
        x = sub_group_reduce(x);                                                                 \
        if (get_sub_group_local_id() == 0)                                                       \
            scratch[get_sub_group_id()] = x;                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                            \
        if (lid == 0)                                                                            \
            for (int i = 1; i < (int)get_num_sub_groups(); ++i)                                  \
                scratch[0] = combine(scratch[0], scratch[i]);                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                                            \
        const float all = scratch[0];                                                            \
        barrier(CLK_LOCAL_MEM_FENCE); /* scratch may be reused at once */                        \
        return all;                                                                              \
    }
#else
#define GROUP_REDUCE(name, combine, sub_group_reduce)                                              \
    static inline float name(float x, __local float *scratch, int lid, int n)                     \
    {                                                                                            \
        scratch[lid] = x;                                                                        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                            \
        for (int width = n >> 1; width > 0; width >>= 1) {                                       \
            if (lid < width)                                                                     \
                scratch[lid] = combine(scratch[lid], scratch[lid + width]);                      \
            barrier(CLK_LOCAL_MEM_FENCE);                                                        \
        }                                                                                        \
        const float all = scratch[0];                                                            \
        barrier(CLK_LOCAL_MEM_FENCE); /* scratch may be reused at once */                        \
        return all;                                                                              \
    }
#endif
GROUP_REDUCE(group_max, fmax, sub_group_reduce_max)
GROUP_REDUCE(group_sum, add_floats, sub_group_reduce_add)

#ifdef METHOD_DENSE
/* ---- Block selectors (cl/select_*.cl; host side src/select.c) ----
 * One work-item per mask row (query block qb = global id 0, batch x query head = global id 1); it
 * returns at once for a head of another method, so that selectors of different heads share a mask.
 * Per-head settings: HEAD_SETTINGS ints per query head, in the order of src/internal.h's CLSA_HS_*. */
#define HEAD_SETTINGS 8
#define HS_METHOD 0
#define HS_SINK 1
#define HS_LOCAL 2
#define HS_FORCED 3
#define HS_WINDOW 4
#define HS_SYMMETRIC 5
#define HS_STRIDE 6
#define HS_FRACTION 7 /* as_int of the f32 topk, cdf_gamma or xattn_threshold */

#define SELECT_ARGS                                                                                \
    int q_heads, int group, int q_len, int kv_len, int causal, int num_q_blocks, int num_key_blocks, \
        float scale_log2e, __global const int *head_settings, __global int *mask_counts, long counts_at, \
        __global int *mask_indices, long indices_at, __global const STORAGE *q, long q_sb, long q_sh, \
        long q_st, __global const STORAGE *k, long k_sb, long k_sh, long k_st, __global uchar *ws

/* What a work-item knows about its mask row. */
typedef struct select_row {
    int qb, h, kv_len;
    long mask_row, bhk; /* bhk: batch x kv heads index of the row's kv head */
    long q_at, k_at; /* the row block's head in Q, and its kv head in K */
    __global const int *settings;
    int row_first, row_last;   /* query rows inside the tensor */
    int diag_first, diag_last; /* their diagonal keys */
    int last_visible, visible_blocks;
    int forced, sink_end, forced_first, forced_last;
} select_row;

static inline bool select_row_begin(int q_heads, int group, int q_len, int kv_len, int causal, int num_q_blocks,
                                    __global const int *head_settings, long q_sb, long q_sh, long k_sb, long k_sh,
                                    select_row *r)
{
    r->qb = get_global_id(0);
    const long bh = get_global_id(1);
    if (r->qb >= num_q_blocks)
        return false;
    const long b = bh / q_heads;
    r->h = (int)(bh - b * q_heads); /* not %: oclgrind cannot follow the freeze that / with % becomes */
    r->kv_len = kv_len;
    r->mask_row = bh * num_q_blocks + r->qb;
    r->q_at = b * q_sb + r->h * q_sh;
    r->k_at = b * k_sb + (r->h / group) * k_sh;
    r->bhk = b * (q_heads / group) + r->h / group;
    r->settings = head_settings + r->h * HEAD_SETTINGS;
    r->row_first = r->qb * BLOCK_Q;
    r->row_last = min(r->row_first + BLOCK_Q, q_len) - 1;
    r->diag_first = r->row_first + kv_len - q_len;
    r->diag_last = r->row_last + kv_len - q_len;
    query_block_keys(r->qb, q_len, kv_len, causal, r->settings[HS_LOCAL], &r->last_visible, &r->forced_first,
                     &r->forced_last);
    r->visible_blocks = r->last_visible < 0 ? 0 : r->last_visible / BLOCK_K + 1;
    r->forced = r->settings[HS_FORCED];
    r->sink_end = min(r->settings[HS_SINK], kv_len);
    return true;
}
#define SELECT_BEGIN(r)                                                                            \
    select_row_begin(q_heads, group, q_len, kv_len, causal, num_q_blocks, head_settings, q_sb, q_sh, k_sb, k_sh, &(r))

/* The blocks SALE forces (sink, local, diagonal), when the head keeps them. */
static inline bool block_forced(const select_row *r, int kb)
{
    const int k0 = kb * BLOCK_K, k1 = min(k0 + BLOCK_K, r->kv_len) - 1;
    return r->forced && (k0 < r->sink_end || (k1 >= r->forced_first && k0 <= r->forced_last));
}

/* Writes the row's visible key blocks kb for which `keep` (an expression of kb) holds, or that
   are forced, ascending, and their count. */
#define WRITE_MASK_ROW(r, kb, keep)                                                                \
    do {                                                                                           \
        __global int *list_ = mask_indices + indices_at + (r).mask_row * num_key_blocks;           \
        int n_ = 0;                                                                                \
        for (int kb = 0; kb < (r).visible_blocks; ++kb)                                            \
            if ((keep) || block_forced(&(r), kb))                                                  \
                list_[n_++] = kb;                                                                  \
        mask_counts[counts_at + (r).mask_row] = n_;                                                \
    } while (0)

/* The selectors' per-row scores (non-negative and finite) are compared as bit patterns, whose
   order is the values' order; a binary search over the patterns finds a threshold exactly, with
   no sort. */
/* The k-th largest of p[0..n) (1 <= k <= n), as a bit pattern: keeping p >= it keeps k or more. */
static inline uint kth_largest_bits(__global const float *p, int n, int k)
{
    uint lo = 0, hi = 0x7F800000u;
    while (lo < hi) {
        const uint mid = lo + (hi - lo + 1) / 2;
        int count = 0;
        for (int i = 0; i < n; ++i)
            count += as_uint(p[i]) >= mid;
        if (count >= k)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}
/* The highest t such that the values p >= t sum (in index order) to at least target: keeping
   them keeps blocks in descending order until the mass reaches target, the crossing one and its
   ties included. target must not exceed the sum of all of p. */
static inline uint mass_threshold_bits(__global const float *p, int n, float target)
{
    uint lo = 0, hi = 0x7F800000u;
    while (lo < hi) {
        const uint mid = lo + (hi - lo + 1) / 2;
        float sum = 0.0f;
        for (int i = 0; i < n; ++i)
            sum += as_uint(p[i]) >= mid ? p[i] : 0.0f;
        if (sum >= target)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* q . k over HEAD_DIM channels of two stored rows. */
static inline float dot_rows(__global const STORAGE *a, long a_at, __global const STORAGE *b, long b_at)
{
    float16 acc = (float16)(0.0f);
    for (int g = 0; g < (HEAD_DIM + 15) / 16; ++g)
        acc = fma(load_group(a, a_at, g), load_group(b, b_at, g), acc);
    return hsum16(acc);
}
#endif

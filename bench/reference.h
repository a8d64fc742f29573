/* Float64 host reference of every clsa stage, and host-side storage conversions.
   Shared by tests/ and bench/. */
#ifndef CLSA_BENCH_REFERENCE_H
#define CLSA_BENCH_REFERENCE_H

#include "clsa/clsa.h"

#include <stdbool.h>
#include <stdint.h>

/* Host conversions between f32 and the storage types (round to nearest even). */
uint16_t ref_f32_to_f16(float x);
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_bf16(float x);
float ref_bf16_to_f32(uint16_t b);

/* Element strides of a tensor as the library resolves them (zero strides: contiguous). */
typedef struct ref_strides {
    int64_t batch, head, token;
} ref_strides;
ref_strides ref_resolve(clsa_tensor_strides s, int64_t heads, int64_t len, int64_t dim);
/* Elements a buffer with these strides must hold. */
int64_t ref_tensor_elements(ref_strides s, int64_t batch, int64_t heads, int64_t len, int64_t dim);

/* Reads element i of a storage array as a double. */
double ref_load(const void *data, clsa_dtype dtype, int64_t i);
/* Writes x into element i of a storage array, rounding to the dtype. */
void ref_store(void *data, clsa_dtype dtype, int64_t i, float x);

/*
 * O = softmax(scale * Q K^T) V in float64, with the library's causal convention (row i sees
 * keys j <= i + Lk - Lq) and, when block_mask is not NULL, only the key blocks it keeps:
 * block_mask[((b * Hq + h) * num_qblocks + qb) * num_kblocks + kb] != 0. Rows with no visible
 * key give zeros. A row with a non-finite score (a non-finite value in its Q row or in a key it
 * sees) gives NaN; a non-finite value in a V row it sees reaches its output through IEEE
 * arithmetic. This is clsa.h's "Non-finite values" policy. o is contiguous [B, Hq, Lq, D].
 */
void ref_attention(const clsa_shape *shape, const void *q, const void *k, const void *v,
                   const uint8_t *block_mask, int block_q, int block_k, double *o);

/*
 * A rule for each attention probability before it multiplies V (ref_attention_rule): apply gets
 * the exact float64 p = exp(s - max) / sum of output row `row` ((b * Hq + h) * Lq + i), the V row
 * of its key (head_dim values), and returns the weight that replaces p; the row's weights are not
 * renormalized. A row with a non-finite score gets p = NaN for each key it sees (its output is
 * NaN whatever apply returns), so that apply sees every probability the row saw.
 */
typedef struct ref_prob_rule {
    double (*apply)(void *user, int64_t row, double p, const double *v_row, int64_t head_dim);
    void *user;
} ref_prob_rule;

/* ref_attention with each probability replaced by rule's weight (rule NULL: ref_attention). */
void ref_attention_rule(const clsa_shape *shape, const void *q, const void *k, const void *v,
                        const uint8_t *block_mask, int block_q, int block_k, const ref_prob_rule *rule, double *o);

/* Attention-value pruning's level of a probability p >= t (clsa.h, clsa_shape.value_bits): p for
   bits 0, else the middle of its log bin among the 2^bits - 1 bins on [t, 1]. */
double ref_value_level(double p, double t, int bits);

/* ref_attention with attention-value pruning (clsa_shape.value_prune, value_bits): each p < t is
   0, the others ref_value_level(p), not renormalized. */
void ref_attention_pruned(const clsa_shape *shape, const void *q, const void *k, const void *v,
                          const uint8_t *block_mask, int block_q, int block_k, double *o);

/* max |got - want| / max |want| over n elements of a [B,Hq,Lq,D] output in the shape's layout. */
double ref_max_rel_error(const clsa_shape *shape, const void *got, const double *want);

/* The last key (inclusive) that query row `row` sees: kv_len - 1, or for causal rows aligned to the
   end of the keys row + kv_len - q_len when that is smaller (negative: it sees none). */
int64_t ref_last_visible(const clsa_shape *shape, int64_t row);

/* FLOPs of one attention call: 4 * D per visible (query, key) pair (QK^T and PV). */
double ref_attention_flops(const clsa_shape *shape);

/* ---- the SALE rule on the host (float64), for tests and the bench oracle ---- */

/* SALE settings as the host reference needs them. tau has q_heads entries. With refine_log2 > 0
   and `exact` set, a block that the scores drop with a best margin >= -refine_log2 is decided again
   on exact(exact_ctx, ...) against the same thresholds: rule 5 of clsa_sparsity, the exact second
   look (refine_log2 = refine_nats * log2(e)). */
typedef struct ref_sale {
    const float *tau;
    int sink, local, block_q, block_k;
    double refine_log2;
    double (*exact)(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j);
    void *exact_ctx;
} ref_sale;

/* Per row (b, h, i), in log2 units t = scale * log2(e) * q.k: the threshold m + log2(tau_h * l)
   over the row's sink and local keys, exactly; -inf for a dense head, +inf for a row with no sink
   or local key (ref_sale_mask then uses its highest estimate), NaN when one of their scores is not
   finite. thr is [B*Hq*Lq]. */
void ref_sale_thresholds(const clsa_shape *shape, const void *q, const void *k, const ref_sale *p, double *thr);

/* A score in log2 units for (b, h, i, j); `ctx` is the callback's own data. */
typedef double (*ref_score_fn)(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j);

/* Exact log2-unit scores of the shape's q and k (the oracle's scores). */
typedef struct ref_exact_scores {
    const clsa_shape *shape;
    const void *q, *k;
} ref_exact_scores;
double ref_exact_score(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j);

/*
 * The block decisions of the SALE rule with thresholds thr and scores from `score`: keep is
 * [B*Hq*num_q_blocks][num_k_blocks]; margin (may be NULL) receives per block the largest
 * score - threshold over its evaluated elements (+inf for forced blocks and for a non-finite
 * score, -inf when none). A NaN threshold passes every score; a row with threshold +inf that
 * sees a key takes its highest visible score e as reference, with threshold e + min(log2 tau, 0).
 * With the second look (ref_sale.refine_log2), a dropped block's margin is instead the deciding
 * test nearest its boundary: its best margin + refine_log2 when that is nearer 0 than the exact
 * scores' best margin (or when the block had no second look), else the exact best margin; tests
 * read |margin| as the distance from a tie.
 */
void ref_sale_mask(const clsa_shape *shape, const ref_sale *p, const double *thr, ref_score_fn score, void *ctx,
                   uint8_t *keep, double *margin);

/* ---- SALE's int4 quantization on the host (f32, in the order cl/quantize.cl computes) ---- */

/*
 * Unpacked codes, scales, means and corrections of one shape's Q and K, as the device's quantize
 * stage computes them: per-head token means (f32, partial sums of 64 tokens), smoothing, one
 * absmax/7 scale per token and `group` channels, round-to-nearest-even codes in [-7, 7], and the
 * per-key correction mean_q . K'_j. Tests fill the same struct from the device's own workspace.
 */
typedef struct ref_int4 {
    const clsa_shape *shape;   /* scale resolved (never 0) */
    const void *q;             /* the raw queries, for the row term q_i . mean_k */
    int64_t group, groups;     /* channels per scale, scales per token */
    int8_t *q_codes, *k_codes; /* [B*Hq][Lq][D] and [B*Hkv][Lk][D] */
    float *q_scales, *k_scales; /* [B*Hq][Lq][groups] and [B*Hkv][Lk][groups] */
    float *k_mean;             /* [B*Hkv][D] */
    float *correction;         /* [B*Hq][Lk] */
    double *row_term;          /* [B*Hq][Lq]: q_i . mean_k, set by ref_int4_row_terms */
} ref_int4;

/* Allocates the arrays of `out` for the shape (zeroed); false when out of memory. */
bool ref_int4_alloc(const clsa_shape *shape, const void *q, int64_t group, ref_int4 *out);
/* Quantizes q and k on the host into an allocated ref_int4 (row terms included). */
void ref_int4_quantize(const void *q, const void *k, ref_int4 *out);
/* Sets row_term from q and k_mean: smoothing K removed q_i . mean_k from every score of row i,
   and the estimate adds it back (the device subtracts it from the exact threshold instead). */
void ref_int4_row_terms(ref_int4 *x);
void ref_int4_free(ref_int4 *x);
/* The estimated score of (b, h, i, j) in log2 units from a ref_int4 (ctx): the exact integer sums
   times the scales, plus the correction and the row term, as cl/estimate.cl computes them. */
double ref_int4_score(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j);

#endif

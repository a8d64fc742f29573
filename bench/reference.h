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

/* max |got - want| / max |want| over n elements of a [B,Hq,Lq,D] output in the shape's layout. */
double ref_max_rel_error(const clsa_shape *shape, const void *got, const double *want);

/* FLOPs of one attention call: 4 * D per visible (query, key) pair (QK^T and PV). */
double ref_attention_flops(const clsa_shape *shape);

#endif

/* ---- the SALE rule on the host (float64), for tests and the bench oracle ---- */

/* SALE settings as the host reference needs them. tau has q_heads entries. */
typedef struct ref_sale {
    const float *tau;
    int sink, local, block_q, block_k;
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
 */
void ref_sale_mask(const clsa_shape *shape, const ref_sale *p, const double *thr, ref_score_fn score, void *ctx,
                   uint8_t *keep, double *margin);

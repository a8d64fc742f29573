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
 * key give zeros. o is contiguous [B, Hq, Lq, D].
 */
void ref_attention(const clsa_shape *shape, const void *q, const void *k, const void *v,
                   const uint8_t *block_mask, int block_q, int block_k, double *o);

/* max |got - want| / max |want| over n elements of a [B,Hq,Lq,D] output in the shape's layout. */
double ref_max_rel_error(const clsa_shape *shape, const void *got, const double *want);

/* FLOPs of one attention call: 4 * D per visible (query, key) pair (QK^T and PV). */
double ref_attention_flops(const clsa_shape *shape);

#endif

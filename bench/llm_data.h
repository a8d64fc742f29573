/*
 * LLM-like synthetic Q, K and V, seeded. What each part models, and the published observation it
 * follows, is in bench/README.md. The parameters are fixed here and were not tuned to flatter any
 * result.
 */
#ifndef CLSA_BENCH_LLM_DATA_H
#define CLSA_BENCH_LLM_DATA_H

#include "clsa/clsa.h"

#include <stdint.h>

/* Fills q, k and v (storage arrays in the shape's dtype and strides) for `shape`. */
void llm_data_generate(const clsa_shape *shape, uint64_t seed, void *q, void *k, void *v);

#endif

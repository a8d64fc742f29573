/* The block selectors' rules on the host in float64 (clsa.h, clsa_sparsity), for tests. */
#ifndef CLSA_TEST_SELECT_REFERENCE_H
#define CLSA_TEST_SELECT_REFERENCE_H

#include <stdint.h>

#include "clsa/clsa.h"

/*
 * Decides the mask rows of query head h (every batch) under that head's settings `head` (method
 * DENSE, STREAMING, SLIDING, TOPK, CDF or XATTN). must and may are bitmaps [B*Hq*num_q_blocks]
 * [num_k_blocks]; only head h's rows are written. A device's mask is right when it keeps every
 * `must` block and only `may` blocks: they differ only where float64 and f32 may decide a
 * near-tie differently (a probability within a relative 1e-4 of the row's cut, or a cumulative
 * mass within 1e-4 of the target). Returns the number of blocks left ambiguous.
 */
int64_t ref_select_head(const clsa_shape *shape, const clsa_sparsity *head, int64_t h, const void *q, const void *k,
                        uint8_t *must, uint8_t *may);

#endif

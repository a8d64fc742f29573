#include "recall.h"

#include <math.h>

clsa_sparsity recall_sparsity(clsa_method method, bool small)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, method);
    if (small)
        sp.local_tokens = 16, sp.sink_tokens = 8, sp.block_q = 16, sp.block_k = 16;
    return sp;
}

clsa_shape recall_shape(bool small)
{
    const int64_t L = small ? 96 : 2048;
    return clsa_shape_make(small ? 16 : 2, 4, 2, L, L, small ? 32 : 128, CLSA_F32, 1);
}

recall_tally recall_count(const uint8_t *sale, const uint8_t *oracle, int64_t n)
{
    recall_tally t = {0, 0, 0};
    for (int64_t e = 0; e < n; ++e) {
        t.in_oracle += oracle[e] != 0;
        t.found += oracle[e] && sale[e];
        t.in_sale += sale[e] != 0;
    }
    return t;
}

double recall_value(recall_tally t) { return t.in_oracle ? (double)t.found / (double)t.in_oracle : 1.0; }

int64_t recall_allowed_misses(int64_t in_oracle) { return (int64_t)floor(0.01 * (double)in_oracle); }

bool recall_passes(recall_tally t) { return t.in_oracle - t.found <= recall_allowed_misses(t.in_oracle); }

/* Block masks on the host: checks, bitmap conversions, and causally valid block counts. */
#include "internal.h"

#include <string.h>

clsa_status clsa_mask_check_host(clsa_context *ctx, const int32_t *counts, const int32_t *indices, int64_t rows,
                                 int64_t num_k_blocks)
{
    for (int64_t r = 0; r < rows; ++r) {
        if (counts[r] < 0 || counts[r] > num_k_blocks)
            return clsa_fail(ctx, CLSA_ERR_INVALID_MASK_COUNT, "mask row %lld has count %d, outside [0, %lld]",
                             (long long)r, counts[r], (long long)num_k_blocks);
        const int32_t *list = indices + r * num_k_blocks;
        for (int32_t n = 0; n < counts[r]; ++n) {
            if (list[n] < 0 || list[n] >= num_k_blocks)
                return clsa_fail(ctx, CLSA_ERR_INVALID_MASK, "mask row %lld entry %d is key block %d, outside [0, %lld)",
                                 (long long)r, n, list[n], (long long)num_k_blocks);
            if (n > 0 && list[n] <= list[n - 1])
                return clsa_fail(ctx, CLSA_ERR_INVALID_MASK,
                                 "mask row %lld is not strictly ascending: entry %d is %d after %d", (long long)r, n,
                                 list[n], list[n - 1]);
        }
    }
    return CLSA_SUCCESS;
}

clsa_status clsa_mask_from_bitmap(const uint8_t *bitmap, int64_t rows, int64_t num_k_blocks, int32_t *counts,
                                  int32_t *indices)
{
    if (!bitmap || !counts || !indices)
        return CLSA_ERR_NULL_ARGUMENT;
    if (rows <= 0 || num_k_blocks <= 0 || num_k_blocks > INT32_MAX)
        return CLSA_ERR_INVALID_DIMENSION;
    int64_t total;
    if (!clsa_mul_i64(rows, num_k_blocks, &total))
        return CLSA_ERR_SIZE_OVERFLOW;
    for (int64_t r = 0; r < rows; ++r) {
        int32_t *list = indices + r * num_k_blocks;
        int32_t n = 0;
        for (int64_t kb = 0; kb < num_k_blocks; ++kb)
            if (bitmap[r * num_k_blocks + kb])
                list[n++] = (int32_t)kb;
        memset(list + n, 0, sizeof(int32_t) * (size_t)(num_k_blocks - n));
        counts[r] = n;
    }
    return CLSA_SUCCESS;
}

clsa_status clsa_mask_to_bitmap(const int32_t *counts, const int32_t *indices, int64_t rows, int64_t num_k_blocks,
                                uint8_t *bitmap)
{
    if (!bitmap || !counts || !indices)
        return CLSA_ERR_NULL_ARGUMENT;
    if (rows <= 0 || num_k_blocks <= 0)
        return CLSA_ERR_INVALID_DIMENSION;
    int64_t total;
    if (!clsa_mul_i64(rows, num_k_blocks, &total))
        return CLSA_ERR_SIZE_OVERFLOW;
    clsa_status st = clsa_mask_check_host(NULL, counts, indices, rows, num_k_blocks);
    if (st)
        return st; /* nothing written */
    memset(bitmap, 0, (size_t)total);
    for (int64_t r = 0; r < rows; ++r)
        for (int32_t n = 0; n < counts[r]; ++n)
            bitmap[r * num_k_blocks + indices[r * num_k_blocks + n]] = 1;
    return CLSA_SUCCESS;
}

int64_t clsa_valid_key_blocks(const clsa_shape *s, const clsa_mask_geometry *m, int64_t qb)
{
    if (!s->causal)
        return m->num_k_blocks;
    int64_t last_row = (qb + 1) * m->block_q - 1;
    if (last_row > s->q_len - 1)
        last_row = s->q_len - 1;
    int64_t last_key = last_row + s->kv_len - s->q_len;
    if (last_key < 0)
        return 0;
    if (last_key > s->kv_len - 1)
        last_key = s->kv_len - 1;
    return last_key / m->block_k + 1;
}

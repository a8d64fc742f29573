/*
 * Checked integer arithmetic: every size, offset and element count that comes from a caller goes
 * through these before it reaches an allocation, a CL_MEM_SIZE comparison or a kernel argument.
 * Each returns false on overflow and then leaves *out unspecified.
 */
#ifndef CLSA_CHECKED_H
#define CLSA_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool clsa_add_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool clsa_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool clsa_add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool clsa_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
/* A non-negative int64 as a size_t (false for negatives, or values a size_t cannot hold). */
static inline bool clsa_i64_to_size(int64_t a, size_t *out)
{
    if (a < 0 || (uint64_t)a > SIZE_MAX)
        return false;
    *out = (size_t)a;
    return true;
}
/* n elements of elem_size bytes, from an int64 count. */
static inline bool clsa_bytes_of(int64_t n, size_t elem_size, size_t *out)
{
    size_t count;
    return clsa_i64_to_size(n, &count) && clsa_mul_size(count, elem_size, out);
}

#endif

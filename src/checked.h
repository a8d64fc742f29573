/*
 * Checked integer arithmetic: sizes, offsets and element counts that come from a caller go through
 * these before they reach an allocation, a CL_MEM_SIZE comparison or a kernel argument.
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

#endif

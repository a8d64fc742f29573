/* An attention tensor from a .npy file, for the bench tools (clsa-bench --data npy:, clsa-calibrate). */
#ifndef CLSA_BENCH_NPY_TENSOR_H
#define CLSA_BENCH_NPY_TENSOR_H

#include "clsa/clsa.h"

#include <stddef.h>
#include <stdint.h>

/* Reads a float32 or float16 .npy file of shape [B, H, L, D] or [H, L, D] (B = 1) and returns its
   elements converted to `dtype` (malloc'd; free it), with dims = {B, H, L, D}. NULL with a
   message in err on any error. */
void *npy_load_bhld(const char *path, clsa_dtype dtype, int64_t dims[4], char *err, size_t err_size);

#endif

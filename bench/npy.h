/* Strict reader of .npy files (NumPy format 1.0/2.0): little-endian float32 or float16, C order. */
#ifndef CLSA_BENCH_NPY_H
#define CLSA_BENCH_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef struct npy_array {
    int ndim;
    int64_t shape[8];
    int is_f16;     /* 1: '<f2', 0: '<f4' */
    void *data;     /* raw little-endian elements */
    int64_t count;
} npy_array;

/* Reads path; on failure returns -1 and writes a message into err (never crashes on bad input). */
int npy_read(const char *path, npy_array *out, char *err, size_t err_size);
void npy_free(npy_array *a);

#endif

/* An attention tensor from a .npy file (bench/npy_tensor.h). */
#include "npy_tensor.h"

#include "npy.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *npy_load_bhld(const char *path, clsa_dtype dtype, int64_t dims[4], char *err, size_t err_size)
{
    npy_array a;
    if (npy_read(path, &a, err, err_size) != 0)
        return NULL;
    if (a.ndim != 3 && a.ndim != 4) {
        snprintf(err, err_size, "%s: expected [B,H,L,D] or [H,L,D], got %d dimensions", path, a.ndim);
        npy_free(&a);
        return NULL;
    }
    const int64_t got[4] = {a.ndim == 4 ? a.shape[0] : 1, a.shape[a.ndim - 3], a.shape[a.ndim - 2], a.shape[a.ndim - 1]};
    void *out = malloc((size_t)(a.count > 0 ? a.count : 1) * clsa_dtype_size(dtype));
    if (!out) {
        snprintf(err, err_size, "%s: out of memory for %lld elements", path, (long long)a.count);
        npy_free(&a);
        return NULL;
    }
    memcpy(dims, got, sizeof got);
    for (int64_t i = 0; i < a.count; ++i) {
        float x;
        if (a.is_f16) {
            uint16_t h;
            memcpy(&h, (const char *)a.data + 2 * i, 2);
            x = ref_f16_to_f32(h);
        } else {
            memcpy(&x, (const char *)a.data + 4 * i, 4);
        }
        ref_store(out, dtype, i, x);
    }
    npy_free(&a);
    return out;
}

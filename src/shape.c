/* Shape validation: dimensions, strides, sizes with overflow checks, buffers and wait lists. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

int64_t clsa_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

size_t clsa_dtype_size(clsa_dtype dtype)
{
    switch (dtype) {
    case CLSA_F32: return 4;
    case CLSA_F16: return 2;
    case CLSA_BF16: return 2;
    }
    return 0;
}

clsa_tensor_strides clsa_strides_blhd(int64_t len, int64_t heads, int64_t head_dim)
{
    clsa_tensor_strides s = CLSA_STRIDES_OVERFLOW;
    int64_t token, batch;
    if (len > 0 && heads > 0 && head_dim > 0 && clsa_mul_i64(heads, head_dim, &token) &&
        clsa_mul_i64(len, token, &batch))
        s = (clsa_tensor_strides){batch, head_dim, token};
    return s;
}

clsa_shape clsa_shape_make(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                           int64_t kv_len, int64_t head_dim, clsa_dtype dtype, int causal)
{
    clsa_shape s = {0};
    s.batch = batch;
    s.q_heads = q_heads;
    s.kv_heads = kv_heads;
    s.q_len = q_len;
    s.kv_len = kv_len;
    s.head_dim = head_dim;
    s.dtype = dtype;
    s.causal = causal;
    return s;
}

/* Resolves one tensor's strides and the number of elements its buffer must hold. */
static clsa_status resolve_layout(clsa_context *ctx, const char *name, clsa_tensor_strides s, int64_t batch,
                                  int64_t heads, int64_t len, int64_t dim, bool written, clsa_tensor_layout *out)
{
    out->heads = heads;
    out->len = len;
    if (s.batch == 0 && s.head == 0 && s.token == 0) {
        out->token = dim;
        if (!clsa_mul_i64(len, dim, &out->head) || !clsa_mul_i64(heads, out->head, &out->batch))
            return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW, "%s: heads x len x head_dim overflows", name);
    } else {
        if (s.batch == -1 && s.head == -1 && s.token == -1)
            return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW,
                             "%s strides are CLSA_STRIDES_OVERFLOW: clsa_strides_blhd's len x heads x head_dim "
                             "overflowed, or a dimension was not positive", name);
        if (s.batch <= 0 || s.head <= 0 || s.token <= 0)
            return clsa_fail(ctx, CLSA_ERR_INVALID_STRIDE,
                             "%s strides (%lld, %lld, %lld): all three must be positive, or all zero for contiguous",
                             name, (long long)s.batch, (long long)s.head, (long long)s.token);
        out->batch = s.batch;
        out->head = s.head;
        out->token = s.token;
        if (written) {
            /* Rows of an output must not overlap, or work-items would race on them. Sorting the
               three dimensions by stride, each stride must step over the whole extent below it. */
            int64_t st[3] = {s.token, s.head, s.batch}, n[3] = {len, heads, batch};
            for (int i = 0; i < 3; ++i)
                for (int j = i + 1; j < 3; ++j)
                    if (st[j] < st[i]) {
                        int64_t t = st[i]; st[i] = st[j]; st[j] = t;
                        t = n[i]; n[i] = n[j]; n[j] = t;
                    }
            int64_t extent = dim;
            for (int i = 0; i < 3; ++i) {
                if (n[i] == 1)
                    continue;
                if (st[i] < extent)
                    return clsa_fail(ctx, CLSA_ERR_INVALID_STRIDE,
                                     "%s strides (%lld, %lld, %lld) make rows overlap", name,
                                     (long long)s.batch, (long long)s.head, (long long)s.token);
                if (!clsa_mul_i64(st[i], n[i], &extent))
                    return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW, "%s: stride x extent overflows", name);
            }
        }
    }
    int64_t a, b, c, total = dim;
    if (!clsa_mul_i64(batch - 1, out->batch, &a) || !clsa_mul_i64(heads - 1, out->head, &b) ||
        !clsa_mul_i64(len - 1, out->token, &c) || !clsa_add_i64(total, a, &total) ||
        !clsa_add_i64(total, b, &total) || !clsa_add_i64(total, c, &total) ||
        !clsa_mul_i64(total, 4, &a))
        return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW, "%s: the extent of the tensor overflows 64 bits", name);
    out->elements = total;
    return CLSA_SUCCESS;
}

clsa_status clsa_shape_validate(clsa_context *ctx, const clsa_shape *s, clsa_tensor_layout *q,
                                clsa_tensor_layout *k, clsa_tensor_layout *v, clsa_tensor_layout *o)
{
    if (!s)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "shape is NULL");
    const struct { const char *name; int64_t value; } dims[] = {
        {"batch", s->batch}, {"q_heads", s->q_heads}, {"kv_heads", s->kv_heads},
        {"q_len", s->q_len}, {"kv_len", s->kv_len}, {"head_dim", s->head_dim}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; ++i)
        if (dims[i].value <= 0)
            return clsa_fail(ctx, CLSA_ERR_INVALID_DIMENSION, "%s = %lld: must be at least 1", dims[i].name,
                             (long long)dims[i].value);
    if (s->q_heads % s->kv_heads != 0)
        return clsa_fail(ctx, CLSA_ERR_HEAD_RATIO, "q_heads = %lld is not a multiple of kv_heads = %lld",
                         (long long)s->q_heads, (long long)s->kv_heads);
    if (s->head_dim > 256)
        return clsa_fail(ctx, CLSA_ERR_UNSUPPORTED_HEAD_DIM, "head_dim = %lld: clsa supports 1 to 256",
                         (long long)s->head_dim);
    if (clsa_dtype_size(s->dtype) == 0)
        return clsa_fail(ctx, CLSA_ERR_UNKNOWN_DTYPE, "dtype = %d is not CLSA_F32, CLSA_F16 or CLSA_BF16",
                         (int)s->dtype);
    if (!(s->value_prune >= 0.0f && s->value_prune < 1.0f))
        return clsa_fail(ctx, CLSA_ERR_INVALID_VALUE_PRUNE, "value_prune = %g: must be from 0 (off) to below 1",
                         (double)s->value_prune);
    if (s->value_bits < 0 || s->value_bits > 8)
        return clsa_fail(ctx, CLSA_ERR_INVALID_VALUE_BITS, "value_bits = %d: must be from 0 (no quantization) to 8",
                         s->value_bits);
    if (s->value_bits > 0 && s->value_prune == 0.0f)
        return clsa_fail(ctx, CLSA_ERR_INVALID_VALUE_PRUNE,
                         "value_bits = %d needs value_prune > 0: the levels lie on [value_prune, 1]", s->value_bits);
    if (s->qk_half && s->dtype == CLSA_F32)
        return clsa_fail(ctx, CLSA_ERR_INVALID_PRECISION,
                         "qk_half needs f16 or bf16 storage: f32 inputs would lose 13 bits before the product");
    if (s->qk_half && !ctx->caps.has_fp16)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED, "qk_half: device \"%s\" has no half arithmetic (cl_khr_fp16)",
                         ctx->caps.name);
    if (!isfinite(s->scale) || s->scale < 0)
        return clsa_fail(ctx, CLSA_ERR_INVALID_SCALE, "scale = %g: must be finite and >= 0 (0: 1/sqrt(head_dim))",
                         (double)s->scale);
    /* Kernels index rows, heads and padded lengths with 32-bit ints, and elements with 64-bit. */
    const int64_t int_limit = (int64_t)1 << 30;
    int64_t bh;
    if (s->q_len > int_limit || s->kv_len > int_limit || !clsa_mul_i64(s->batch, s->q_heads, &bh) || bh > int_limit)
        return clsa_fail(ctx, CLSA_ERR_SIZE_OVERFLOW,
                         "batch x q_heads, q_len and kv_len must each be at most 2^30 (kernels index them with int)");
    clsa_status st = resolve_layout(ctx, "q", s->q_strides, s->batch, s->q_heads, s->q_len, s->head_dim, false, q);
    if (!st) st = resolve_layout(ctx, "k", s->k_strides, s->batch, s->kv_heads, s->kv_len, s->head_dim, false, k);
    if (!st) st = resolve_layout(ctx, "v", s->v_strides, s->batch, s->kv_heads, s->kv_len, s->head_dim, false, v);
    if (!st) st = resolve_layout(ctx, "o", s->o_strides, s->batch, s->q_heads, s->q_len, s->head_dim, true, o);
    return st;
}

clsa_status clsa_check_buffer(clsa_context *ctx, cl_mem buffer, size_t bytes, const char *name,
                              clsa_status too_small)
{
    if (!buffer)
        return clsa_fail(ctx, CLSA_ERR_NULL_ARGUMENT, "buffer %s is NULL", name);
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (err)
        return clsa_fail(ctx, (clsa_status)err, "CL_MEM_SIZE of buffer %s", name);
    if (size < bytes)
        return clsa_fail(ctx, too_small,
                         "buffer %s holds %zu bytes but needs %zu", name, size, bytes);
    return CLSA_SUCCESS;
}

clsa_status clsa_check_wait_list(clsa_context *ctx, cl_uint num_wait, const cl_event *wait_list)
{
    if ((num_wait == 0) != (wait_list == NULL))
        return clsa_fail(ctx, CLSA_ERR_INVALID_WAIT_LIST, "num_wait = %u but wait_list is %s", num_wait,
                         wait_list ? "not NULL" : "NULL");
    return CLSA_SUCCESS;
}

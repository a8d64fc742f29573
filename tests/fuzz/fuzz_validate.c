/*
 * libFuzzer target: argument and mask validation, with no kernel built for any input.
 *   - Shapes and sparsity settings from the input go through clsa_plan_validate, which is
 *     clsa_plan_create's checks and workspace layout without the build.
 *   - Block masks (counts, indices, byte offsets) from the input go to one fixed MASK plan, made
 *     once: clsa_mask_density and clsa_attention_masked (CLSA_MASK_CHECK) must refuse every bad
 *     mask with a status, and accept a good one.
 * The host mask conversions get the same lists.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const uint8_t *data;
    size_t size, at;
} reader;

static uint64_t take(reader *r, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i)
        v |= (uint64_t)(r->at < r->size ? r->data[r->at++] : 0) << (8 * i);
    return v;
}
/* Mostly small values, sometimes any 64-bit value: both the common and the overflowing cases. */
static int64_t take_dim(reader *r)
{
    const uint8_t kind = (uint8_t)take(r, 1);
    return kind < 200 ? (int64_t)(kind % 70) - 2 : (int64_t)take(r, 8);
}

static clsa_context *ctx;
static cl_command_queue queue;
static clsa_plan *plan; /* MASK, 1 x 2 heads, 64 x 64, blocks 32 x 16: 4 rows of 4 key blocks */
static cl_mem q, k, v, o, counts_buf, indices_buf;

static cl_mem buffer(size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err)
        abort();
    return m;
}

static void setup(void)
{
    if (clsa_context_create_default(NULL, &ctx) != CLSA_SUCCESS)
        abort();
    cl_int err;
    queue = clCreateCommandQueue(clsa_context_cl_context(ctx), clsa_context_device(ctx), 0, &err);
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_MASK);
    sp.block_q = 32, sp.block_k = 16;
    if (err || clsa_plan_create(ctx, &s, &sp, &plan) != CLSA_SUCCESS)
        abort();
    q = buffer(2 * 64 * 16 * 4), k = buffer(64 * 16 * 4), v = buffer(64 * 16 * 4), o = buffer(2 * 64 * 16 * 4);
    counts_buf = buffer(64), indices_buf = buffer(256);
}

static void fuzz_plan_settings(reader *r)
{
    clsa_shape s = clsa_shape_make(take_dim(r), take_dim(r), take_dim(r), take_dim(r), take_dim(r), take_dim(r),
                                   (clsa_dtype)(take(r, 1) % 4), (int)(take(r, 1) % 3));
    if (take(r, 1) & 1) {
        clsa_tensor_strides *all[4] = {&s.q_strides, &s.k_strides, &s.v_strides, &s.o_strides};
        for (int t = 0; t < 4; ++t)
            *all[t] = (clsa_tensor_strides){take_dim(r), take_dim(r), take_dim(r)};
    }
    uint32_t bits = (uint32_t)take(r, 4);
    memcpy(&s.scale, &bits, 4);
    if (take(r, 1) & 1) { /* attention-value pruning */
        bits = (uint32_t)take(r, 4);
        memcpy(&s.value_prune, &bits, 4);
        s.value_bits = (int32_t)(int8_t)take(r, 1);
    }
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, (clsa_method)(take(r, 1) % 12 - 1)); /* -1 and 10: not methods */
    bits = (uint32_t)take(r, 4);
    memcpy(&sp.tau, &bits, 4);
    sp.sink_tokens = (int32_t)take_dim(r), sp.local_tokens = (int32_t)take_dim(r);
    sp.block_q = 1 << (take(r, 1) % 9), sp.block_k = 1 << (take(r, 1) % 9);
    float taus[70];
    for (int h = 0; h < 70; ++h) {
        bits = (uint32_t)take(r, 1) << 24;
        memcpy(&taus[h], &bits, 4);
    }
    sp.tau_per_head = s.q_heads > 0 && s.q_heads <= 70 && (take(r, 1) & 1) ? taus : NULL;
    /* The other selectors' settings, and per-head entries of their own. */
    sp.keep_forced = (int32_t)(int8_t)take(r, 1), sp.window_tokens = (int32_t)take_dim(r);
    sp.window_symmetric = (int32_t)(int8_t)take(r, 1), sp.xattn_stride = (int32_t)(int8_t)take(r, 1);
    float *fractions[3] = {&sp.topk, &sp.cdf_gamma, &sp.xattn_threshold};
    for (int f = 0; f < 3; ++f) {
        bits = (uint32_t)take(r, 4);
        memcpy(fractions[f], &bits, 4);
    }
    static clsa_sparsity heads[70];
    if (s.q_heads > 0 && s.q_heads <= 70 && (take(r, 1) & 1)) {
        for (int h = 0; h < 70; ++h) {
            heads[h] = sp;
            heads[h].method = (clsa_method)(take(r, 1) % 12 - 1);
            heads[h].tau_per_head = NULL;
            heads[h].per_head = NULL;
            if (take(r, 1) & 1)
                heads[h].window_tokens = (int32_t)take_dim(r), heads[h].block_k = 1 << (take(r, 1) % 9);
        }
        sp.per_head = heads;
    }
    clsa_plan scratch;
    memset(&scratch, 0, sizeof scratch);
    clsa_status st = clsa_plan_validate(ctx, &s, take(r, 1) & 1 ? &sp : NULL, &scratch);
    if (st && !clsa_context_last_error(ctx)[0])
        __builtin_trap(); /* every refusal says why */
}

static void fuzz_mask(reader *r)
{
    int32_t counts[16], indices[64];
    for (int i = 0; i < 16; ++i)
        counts[i] = (int32_t)(int8_t)take(r, 1);
    for (int i = 0; i < 64; ++i)
        indices[i] = (int32_t)(int8_t)take(r, 1);
    if (clEnqueueWriteBuffer(queue, counts_buf, CL_TRUE, 0, sizeof counts, counts, 0, NULL, NULL) ||
        clEnqueueWriteBuffer(queue, indices_buf, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL))
        abort();
    const uint8_t kind = (uint8_t)take(r, 1);
    clsa_block_mask m = {counts_buf, kind & 1 ? (size_t)take(r, 8) : (size_t)(take(r, 1) % 64), indices_buf,
                         kind & 2 ? (size_t)take(r, 8) : (size_t)(take(r, 1) % 256)};
    double density[2];
    clsa_status st = clsa_mask_density(plan, queue, NULL, &m, density);
    if (!st && (!(density[0] >= 0.0 && density[0] <= 1.0) || !(density[1] >= 0.0 && density[1] <= 1.0)))
        __builtin_trap();
    clsa_status attend = clsa_attention_masked(plan, queue, q, k, v, o, NULL, &m, CLSA_MASK_CHECK, 0, NULL, NULL);
    if ((st == CLSA_SUCCESS) != (attend == CLSA_SUCCESS))
        __builtin_trap(); /* both entry points judge a mask the same way */
    if (clFinish(queue))
        abort();
    const int64_t rows = (int64_t)(take(r, 1) % 5) + 1, nkb = (int64_t)(take(r, 1) % 5) + 1;
    uint8_t bitmap[25];
    if (clsa_mask_to_bitmap(counts, indices, rows, nkb, bitmap) == CLSA_SUCCESS) {
        int32_t c2[5], i2[25];
        if (clsa_mask_from_bitmap(bitmap, rows, nkb, c2, i2) != CLSA_SUCCESS)
            __builtin_trap(); /* what converts one way converts back */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        setup();
    reader r = {data, size, 0};
    if (size && data[0] & 1)
        fuzz_mask(&r);
    else
        fuzz_plan_settings(&r);
    return 0;
}

#include "harness.h"
#include "llm_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t harness_seed;
int harness_small;

void harness_init(const char *suite)
{
    const char *env = getenv("CLSA_TEST_SEED");
    harness_seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    const char *small = getenv("CLSA_TEST_SMALL");
    harness_small = small && *small && strcmp(small, "0") != 0;
    /* CLSA_TEST_FILTER=PATTERN runs only the tests whose names match (cmocka's * and ? wildcards),
       e.g. to rerun one test over many seeds. */
    const char *filter = getenv("CLSA_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    printf("# %s: seed %llu (rerun with CLSA_TEST_SEED=%llu)%s\n", suite, (unsigned long long)harness_seed,
           (unsigned long long)harness_seed, harness_small ? ", small shapes" : "");
    fflush(stdout);
}

clsa_context *harness_context(clsa_kernel_style style) { return harness_tuned_context(style, NULL); }

clsa_context *harness_tuned_context(clsa_kernel_style style, const char *tuning)
{
    clsa_context_options opt = {0};
    opt.kernel_style = style;
    opt.tuning = tuning;
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(&opt, &ctx);
    if (st != CLSA_SUCCESS) {
        print_error("no usable OpenCL device (%s): clsa's tests need one and do not skip\n", clsa_status_string(st));
        fail();
    }
    return ctx;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

harness_rng harness_rng_make(uint64_t stream)
{
    uint64_t x = harness_seed ^ (stream * 0xD1B54A32D192ED03ull);
    harness_rng r = {{splitmix(&x), splitmix(&x)}};
    return r;
}

static uint64_t next(harness_rng *r)
{
    /* xoroshiro128+ */
    uint64_t s0 = r->s[0], s1 = r->s[1], out = s0 + s1;
    s1 ^= s0;
    r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    r->s[1] = (s1 << 37) | (s1 >> 27);
    return out;
}

double harness_uniform(harness_rng *r) { return (double)(next(r) >> 11) * 0x1.0p-53; }

double harness_normal(harness_rng *r)
{
    double u = harness_uniform(r), v = harness_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

void *harness_random_tensor(harness_rng *r, clsa_dtype dtype, int64_t elements, double sd)
{
    void *data = malloc((size_t)elements * clsa_dtype_size(dtype));
    assert_non_null(data);
    for (int64_t i = 0; i < elements; ++i)
        ref_store(data, dtype, i, (float)(sd * harness_normal(r)));
    return data;
}

void harness_tensor_elements(const clsa_shape *s, int64_t *q, int64_t *k, int64_t *v, int64_t *o)
{
    *q = ref_tensor_elements(ref_resolve(s->q_strides, s->q_heads, s->q_len, s->head_dim), s->batch, s->q_heads, s->q_len, s->head_dim);
    *k = ref_tensor_elements(ref_resolve(s->k_strides, s->kv_heads, s->kv_len, s->head_dim), s->batch, s->kv_heads, s->kv_len, s->head_dim);
    *v = ref_tensor_elements(ref_resolve(s->v_strides, s->kv_heads, s->kv_len, s->head_dim), s->batch, s->kv_heads, s->kv_len, s->head_dim);
    *o = ref_tensor_elements(ref_resolve(s->o_strides, s->q_heads, s->q_len, s->head_dim), s->batch, s->q_heads, s->q_len, s->head_dim);
}

static cl_mem device_copy(clsa_context *ctx, const void *host, size_t bytes)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                              (void *)host, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

void harness_buffers_make(clsa_context *ctx, const clsa_shape *s, harness_rng *rng, harness_buffers *b)
{
    memset(b, 0, sizeof *b);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(s, &nq, &nk, &nv, &no);
    size_t es = clsa_dtype_size(s->dtype);
    b->q_bytes = (size_t)nq * es;
    b->k_bytes = (size_t)nk * es;
    b->v_bytes = (size_t)nv * es;
    b->o_bytes = (size_t)no * es;
    b->hq = harness_random_tensor(rng, s->dtype, nq, 1.0);
    b->hk = harness_random_tensor(rng, s->dtype, nk, 1.0);
    b->hv = harness_random_tensor(rng, s->dtype, nv, 1.0);
    b->ho = malloc(b->o_bytes);
    assert_non_null(b->ho);
    memset(b->ho, 0xFF, b->o_bytes);
    cl_int err = CL_SUCCESS;
    b->queue = clCreateCommandQueue(clsa_context_cl_context(ctx), clsa_context_device(ctx), 0, &err);
    assert_int_equal(err, CL_SUCCESS);
    b->q = device_copy(ctx, b->hq, b->q_bytes);
    b->k = device_copy(ctx, b->hk, b->k_bytes);
    b->v = device_copy(ctx, b->hv, b->v_bytes);
    b->o = device_copy(ctx, b->ho, b->o_bytes);
}

void harness_read_o(harness_buffers *b)
{
    assert_int_equal(clEnqueueReadBuffer(b->queue, b->o, CL_TRUE, 0, b->o_bytes, b->ho, 0, NULL, NULL), CL_SUCCESS);
}

void harness_buffers_release(harness_buffers *b)
{
    cl_mem all[] = {b->q, b->k, b->v, b->o};
    for (int i = 0; i < 4; ++i)
        if (all[i])
            clReleaseMemObject(all[i]);
    if (b->queue)
        clReleaseCommandQueue(b->queue);
    free(b->hq);
    free(b->hk);
    free(b->hv);
    free(b->ho);
    memset(b, 0, sizeof *b);
}

/* Counts output elements that are not inside some row of the tensor yet changed from the poison. */
static int64_t touched_gaps(const clsa_shape *s, const unsigned char *o, size_t bytes)
{
    size_t es = clsa_dtype_size(s->dtype);
    int64_t n = (int64_t)(bytes / es);
    unsigned char *inside = calloc((size_t)n, 1);
    ref_strides os = ref_resolve(s->o_strides, s->q_heads, s->q_len, s->head_dim);
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i)
                memset(inside + b * os.batch + h * os.head + i * os.token, 1, (size_t)s->head_dim);
    int64_t touched = 0;
    for (int64_t e = 0; e < n; ++e)
        if (!inside[e])
            for (size_t byte = 0; byte < es; ++byte)
                touched += o[(size_t)e * es + byte] != 0xFF;
    free(inside);
    return touched;
}

double harness_dense_error(clsa_context *ctx, const clsa_shape *s, uint64_t stream)
{
    harness_rng rng = harness_rng_make(stream);
    harness_buffers b;
    harness_buffers_make(ctx, s, &rng, &b);
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, s, NULL, &plan);
    if (st)
        print_error("plan: %s\n", clsa_context_last_error(ctx));
    assert_int_equal(st, CLSA_SUCCESS);
    cl_event done = NULL;
    st = clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, NULL, 0, NULL, &done);
    if (st)
        print_error("attention: %s\n", clsa_context_last_error(ctx));
    assert_int_equal(st, CLSA_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    harness_read_o(&b);
    double *want = malloc(sizeof(double) * (size_t)(s->batch * s->q_heads * s->q_len * s->head_dim));
    ref_attention(s, b.hq, b.hk, b.hv, NULL, 0, 0, want);
    double err = ref_max_rel_error(s, b.ho, want);
    assert_int_equal(touched_gaps(s, b.ho, b.o_bytes), 0);
    free(want);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    return err;
}

double harness_tolerance(clsa_dtype dtype)
{
    switch (dtype) {
    case CLSA_F32: return 1e-5;
    case CLSA_F16: return 1.25 * 0x1p-11; /* one half-ulp of the output rounding, plus f32 slack */
    case CLSA_BF16: return 1.25 * 0x1p-8;
    }
    return 0.0;
}

const char *harness_dtype_name(clsa_dtype dtype)
{
    return dtype == CLSA_F32 ? "f32" : dtype == CLSA_F16 ? "f16" : dtype == CLSA_BF16 ? "bf16" : "?";
}

void *harness_read_buffer(cl_command_queue queue, cl_mem m, size_t offset, size_t bytes)
{
    void *out = malloc(bytes ? bytes : 1);
    assert_non_null(out);
    assert_int_equal(clEnqueueReadBuffer(queue, m, CL_TRUE, offset, bytes, out, 0, NULL, NULL), CL_SUCCESS);
    return out;
}

cl_mem harness_new_buffer(clsa_context *ctx, size_t bytes, const void *init)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes, (void *)init, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

uint8_t *harness_workspace_bitmap(cl_command_queue queue, const clsa_plan *plan, cl_mem ws)
{
    clsa_mask_geometry g;
    assert_int_equal(clsa_plan_mask_geometry(plan, &g), CLSA_SUCCESS);
    clsa_block_mask m;
    assert_int_equal(clsa_plan_workspace_mask(plan, ws, &m), CLSA_SUCCESS);
    int32_t *counts = harness_read_buffer(queue, ws, m.counts_offset, g.counts_bytes);
    int32_t *indices = harness_read_buffer(queue, ws, m.indices_offset, g.indices_bytes);
    uint8_t *bitmap = malloc((size_t)(g.rows * g.num_k_blocks));
    assert_non_null(bitmap);
    assert_int_equal(clsa_mask_to_bitmap(counts, indices, g.rows, g.num_k_blocks, bitmap), CLSA_SUCCESS);
    free(counts), free(indices);
    return bitmap;
}

void harness_llm_buffers(clsa_context *ctx, const clsa_shape *s, uint64_t stream, harness_buffers *b)
{
    harness_rng rng = harness_rng_make(stream);
    harness_buffers_make(ctx, s, &rng, b);
    llm_data_generate(s, harness_seed ^ stream, b->hq, b->hk, b->hv);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->q, CL_TRUE, 0, b->q_bytes, b->hq, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->k, CL_TRUE, 0, b->k_bytes, b->hk, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->v, CL_TRUE, 0, b->v_bytes, b->hv, 0, NULL, NULL), CL_SUCCESS);
}

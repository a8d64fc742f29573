/*
 * Dense attention against the float64 reference over the shape grid, in both kernel
 * styles: lengths 1..2048, head_dim 1..256, GQA/MQA, batch, causal with q_len < kv_len and
 * q_len > kv_len, strided [B,L,H,D] layouts and every storage dtype.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct dense_case {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
    clsa_dtype dtype;
    int causal;
    int blhd; /* 1: Q, K, V and O in [B, L, H, D]; 2: the same with padded token rows */
} dense_case;

static void set_blhd(clsa_shape *s, int padded)
{
    const int64_t pad = padded ? 3 : 0;
    s->q_strides = clsa_strides_blhd(s->q_len, s->q_heads, s->head_dim);
    s->k_strides = clsa_strides_blhd(s->kv_len, s->kv_heads, s->head_dim);
    s->v_strides = s->k_strides;
    s->o_strides = s->q_strides;
    if (pad) { /* rows of H*D + 3 elements: the gaps must stay untouched */
        s->q_strides.token += pad;
        s->q_strides.batch = s->q_strides.token * s->q_len;
        s->o_strides = s->q_strides;
        s->k_strides.token += pad;
        s->k_strides.batch = s->k_strides.token * s->kv_len;
        s->v_strides = s->k_strides;
    }
}

static void run_cases(clsa_kernel_style style, const char *tuning, const dense_case *cases, size_t n)
{
    clsa_context *ctx = harness_tuned_context(style, tuning);
    for (size_t i = 0; i < n; ++i) {
        const dense_case *c = &cases[i];
        clsa_shape s = clsa_shape_make(c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, c->head_dim,
                                       c->dtype, c->causal);
        if (c->blhd)
            set_blhd(&s, c->blhd == 2);
        const double err = harness_dense_error(ctx, &s, i + 1000 * (uint64_t)style);
        const double tol = harness_tolerance(c->dtype);
        printf("# %s B%lld Hq%lld Hkv%lld Lq%lld Lk%lld D%lld %s %s%s: max rel err %.3g (tol %.3g)\n",
               style == CLSA_STYLE_CPU ? "cpu" : "gpu", (long long)c->batch, (long long)c->q_heads,
               (long long)c->kv_heads, (long long)c->q_len, (long long)c->kv_len, (long long)c->head_dim,
               harness_dtype_name(c->dtype), c->causal ? "causal" : "full", c->blhd ? " blhd" : "", err, tol);
        if (!(err <= tol)) {
            print_error("case %zu failed with seed %llu\n", i, (unsigned long long)harness_seed);
            fail();
        }
    }
    clsa_context_release(ctx);
}

#define RUN(name, big, small)                                                                      \
    static void name(void **state)                                                                 \
    {                                                                                              \
        clsa_kernel_style style = (clsa_kernel_style)(intptr_t)*state;                             \
        if (harness_small)                                                                         \
            run_cases(style, NULL, small, sizeof small / sizeof small[0]);                               \
        else                                                                                       \
            run_cases(style, NULL, big, sizeof big / sizeof big[0]);                                     \
    }

static const dense_case lengths[] = {
    {1, 1, 1, 1, 1, 64, CLSA_F32, 0, 0},       {1, 1, 1, 1, 1, 64, CLSA_F32, 1, 0},
    {1, 2, 2, 17, 17, 64, CLSA_F32, 1, 0},     {1, 2, 1, 64, 64, 64, CLSA_F32, 0, 0},
    {1, 1, 1, 1000, 1000, 64, CLSA_F32, 1, 0}, {1, 1, 1, 2048, 2048, 64, CLSA_F32, 1, 0},
    {1, 1, 1, 2048, 2048, 128, CLSA_F32, 0, 0},
    /* 8 heads x 520 row groups of 4 rows: on a device of <= 16 compute units, dense CPU
       work-groups grow past the table's 4 work-items (dense_cpu_local_size in src/attention.c). */
    {1, 8, 2, 2079, 2079, 16, CLSA_F32, 1, 0},
};
static const dense_case lengths_small[] = {
    {1, 1, 1, 1, 1, 16, CLSA_F32, 1, 0}, {1, 2, 2, 17, 17, 16, CLSA_F32, 1, 0}, {1, 1, 1, 64, 64, 16, CLSA_F32, 0, 0},
};
RUN(test_lengths, lengths, lengths_small)

static const dense_case head_dims[] = {
    {1, 2, 1, 100, 100, 1, CLSA_F32, 1, 0},   {1, 2, 1, 100, 100, 7, CLSA_F32, 0, 0},
    {1, 2, 1, 100, 100, 64, CLSA_F32, 1, 0},  {1, 2, 1, 100, 100, 80, CLSA_F32, 1, 0},
    {1, 2, 1, 100, 100, 128, CLSA_F32, 0, 0}, {1, 2, 1, 100, 100, 256, CLSA_F32, 1, 0},
    {1, 1, 1, 1000, 1000, 80, CLSA_F32, 0, 0},
};
static const dense_case head_dims_small[] = {
    {1, 1, 1, 9, 9, 1, CLSA_F32, 1, 0}, {1, 1, 1, 9, 9, 7, CLSA_F32, 0, 0}, {1, 1, 1, 9, 9, 80, CLSA_F32, 1, 0},
    {1, 1, 1, 5, 5, 256, CLSA_F32, 1, 0},
};
RUN(test_head_dims, head_dims, head_dims_small)

static const dense_case gqa[] = {
    {2, 4, 4, 64, 64, 64, CLSA_F32, 1, 0},    {2, 4, 2, 64, 64, 64, CLSA_F32, 1, 0},
    {2, 8, 2, 100, 100, 64, CLSA_F32, 0, 0},  {1, 8, 1, 100, 100, 128, CLSA_F32, 1, 0}, /* MQA */
};
static const dense_case gqa_small[] = {
    {2, 4, 2, 9, 9, 8, CLSA_F32, 1, 0}, {1, 4, 1, 9, 9, 8, CLSA_F32, 0, 0},
};
RUN(test_gqa, gqa, gqa_small)

static const dense_case misaligned[] = {
    {1, 2, 1, 17, 64, 64, CLSA_F32, 1, 0},    {1, 1, 1, 100, 1000, 80, CLSA_F32, 1, 0},
    {1, 2, 1, 64, 17, 64, CLSA_F32, 1, 0},    {1, 1, 1, 1000, 100, 64, CLSA_F32, 1, 0},
    {1, 1, 1, 64, 17, 64, CLSA_F32, 0, 0},    {1, 1, 1, 17, 1000, 128, CLSA_F32, 0, 0},
};
static const dense_case misaligned_small[] = {
    {1, 1, 1, 5, 19, 8, CLSA_F32, 1, 0}, {1, 1, 1, 19, 5, 8, CLSA_F32, 1, 0},
};
RUN(test_causal_misaligned, misaligned, misaligned_small)

static const dense_case strided[] = {
    {2, 4, 2, 100, 100, 64, CLSA_F32, 1, 1},  {2, 4, 2, 100, 120, 80, CLSA_F32, 1, 2},
    {1, 2, 1, 64, 64, 128, CLSA_F16, 0, 2},   {1, 2, 2, 64, 64, 7, CLSA_BF16, 1, 1},
};
static const dense_case strided_small[] = {
    {2, 2, 1, 9, 11, 8, CLSA_F32, 1, 2}, {1, 2, 2, 9, 9, 7, CLSA_F16, 0, 1},
};
RUN(test_strided, strided, strided_small)

static const dense_case dtypes[] = {
    {1, 2, 1, 1000, 1000, 80, CLSA_F16, 1, 0},  {1, 2, 1, 1000, 1000, 80, CLSA_BF16, 1, 0},
    {1, 1, 1, 64, 64, 256, CLSA_F16, 0, 0},    {1, 1, 1, 64, 64, 256, CLSA_BF16, 0, 0},
    {1, 1, 1, 17, 17, 7, CLSA_F16, 1, 0},      {1, 1, 1, 17, 17, 1, CLSA_BF16, 1, 0},
};
static const dense_case dtypes_small[] = {
    {1, 1, 1, 9, 9, 7, CLSA_F16, 1, 0}, {1, 1, 1, 9, 9, 7, CLSA_BF16, 1, 0}, {1, 1, 1, 5, 5, 256, CLSA_BF16, 0, 0},
};
RUN(test_dtypes, dtypes, dtypes_small)

/* clsa_attention_host on the caller's out-of-order queue: the blocking call must return only after
   its own kernels wrote o. Before, the read-back had no dependency on them and PoCL ran it first,
   returning o's initial values. The shape is large enough that the kernels take far longer than
   the read. */
static void test_host_call_waits_on_out_of_order_queue(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const int64_t L = harness_small ? 24 : 1536;
    clsa_shape s = clsa_shape_make(1, 2, 1, L, L, harness_small ? 16 : 128, CLSA_F32, 1);
    harness_rng rng = harness_rng_make(78);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(&s, &nq, &nk, &nv, &no);
    float *q = harness_random_tensor(&rng, s.dtype, nq, 1.0), *k = harness_random_tensor(&rng, s.dtype, nk, 1.0);
    float *v = harness_random_tensor(&rng, s.dtype, nv, 1.0), *o = harness_random_tensor(&rng, s.dtype, no, 1.0);
    cl_int err = CL_SUCCESS;
    cl_command_queue ooo = clCreateCommandQueue(clsa_context_cl_context(ctx), clsa_context_device(ctx),
                                                CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    assert_int_equal(err, CL_SUCCESS);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    double *want = malloc(sizeof(double) * (size_t)no);
    ref_attention(&s, q, k, v, NULL, 0, 0, want);
    for (int run = 0; run < 3; ++run) {
        for (int64_t e = 0; e < no; ++e)
            o[e] = NAN;
        assert_int_equal(clsa_attention_host(plan, ooo, q, k, v, o), CLSA_SUCCESS);
        const double e = ref_max_rel_error(&s, o, want);
        if (!(e <= 1e-5))
            fail_msg("run %d: max rel error %g after the call returned (seed %llu)", run, e,
                     (unsigned long long)harness_seed);
    }
    /* The SALE pipeline's stages chain by events too: the same bytes as on an in-order queue. */
    clsa_sparsity sale;
    clsa_sparsity_init(&sale, CLSA_METHOD_SALE);
    if (harness_small)
        sale.sink_tokens = 4, sale.local_tokens = 8, sale.block_q = sale.block_k = 16;
    clsa_plan *sparse = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, &sale, &sparse), CLSA_SUCCESS);
    float *in_order = malloc(sizeof(float) * (size_t)no);
    for (int64_t e = 0; e < no; ++e)
        in_order[e] = o[e] = NAN;
    assert_int_equal(clsa_attention_host(sparse, NULL, q, k, v, in_order), CLSA_SUCCESS);
    assert_int_equal(clsa_attention_host(sparse, ooo, q, k, v, o), CLSA_SUCCESS);
    assert_memory_equal(in_order, o, sizeof(float) * (size_t)no);
    clsa_plan_release(sparse);
    free(in_order);
    free(want);
    free(q), free(k), free(v), free(o);
    clReleaseCommandQueue(ooo);
    clsa_plan_release(plan);
    clsa_context_release(ctx);
}

/* The host call gives the same result as the reference, on host arrays. */
static void test_host_call(void **state)
{
    clsa_context *ctx = harness_context((clsa_kernel_style)(intptr_t)*state);
    clsa_shape s = clsa_shape_make(1, 2, 1, 33, 40, 16, CLSA_F32, 1);
    harness_rng rng = harness_rng_make(77);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(&s, &nq, &nk, &nv, &no);
    float *q = harness_random_tensor(&rng, s.dtype, nq, 1.0), *k = harness_random_tensor(&rng, s.dtype, nk, 1.0);
    float *v = harness_random_tensor(&rng, s.dtype, nv, 1.0), *o = harness_random_tensor(&rng, s.dtype, no, 1.0);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    assert_int_equal(clsa_attention_host(plan, NULL, q, k, v, o), CLSA_SUCCESS);
    double *want = malloc(sizeof(double) * (size_t)no);
    ref_attention(&s, q, k, v, NULL, 0, 0, want);
    assert_true(ref_max_rel_error(&s, o, want) <= 1e-5);
    free(want);
    free(q), free(k), free(v), free(o);
    clsa_plan_release(plan);
    clsa_context_release(ctx);
}

/* Every tuning variant the tuning keys can select gives exact results too. */
static void test_tuning_variants(void **state)
{
    (void)state;
    static const char *variants[] = {"cpu_rows=1,cpu_local=1", "cpu_rows=4,cpu_local=16", "cpu_rows=2",
                                     "cpu_local=32", "cpu_rows=16", "gpu_group=16,gpu_tile=16", "gpu_group=128",
                                     "gpu_group=32"};
    static const dense_case cases[] = {
        {1, 2, 1, 40, 45, 24, CLSA_F32, 1, 0}, {1, 1, 1, 19, 19, 7, CLSA_BF16, 0, 2},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; ++i) {
        printf("# tuning %s\n", variants[i]);
        run_cases(variants[i][0] == 'c' ? CLSA_STYLE_CPU : CLSA_STYLE_GPU, variants[i], cases,
                  sizeof cases / sizeof cases[0]);
    }
}

/*
 * Half-precision Q.K products (clsa_shape.qk_half) against the float64 reference, with a tolerance
 * derived from half's unit roundoff u = 2^-11. Each product q'_c k_c (q' = q * scale * log2 e) picks
 * up at most three roundings of u (q' to half, k to half, the product), so a score in log2 units
 * moves by at most eps = 3u * max_ij sum_c |q'_ic k_jc| (plus f32's accumulation, D * 2^-24 of the
 * same sum). Softmax weights 2^s then change by a factor within 2^(+-2 eps) after normalisation, so
 * an output moves by at most (2^(2 eps) - 1) * max |v|, on top of the storage's own tolerance.
 * On devices without cl_khr_fp16 the plan is refused; f32 storage is refused everywhere.
 */
static void test_qk_half(void **state)
{
    (void)state;
    for (int style = CLSA_STYLE_CPU; style <= CLSA_STYLE_GPU; ++style) {
        clsa_context *ctx = harness_context((clsa_kernel_style)style);
        const bool fp16 = clsa_context_device_info(ctx)->has_fp16 != 0;
        clsa_shape f32 = clsa_shape_make(1, 1, 1, 32, 32, 64, CLSA_F32, 1);
        f32.qk_half = 1;
        clsa_plan *plan = NULL;
        assert_int_equal(clsa_plan_create(ctx, &f32, NULL, &plan), CLSA_ERR_INVALID_PRECISION);
        const struct { int64_t hq, hkv, lq, lk, d; clsa_dtype dtype; int causal; } cases[] = {
            {2, 1, 70, 90, 64, CLSA_F16, 1}, {1, 1, 45, 45, 7, CLSA_BF16, 0}, {2, 2, 33, 64, 128, CLSA_BF16, 1}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
            clsa_shape s = clsa_shape_make(1, cases[i].hq, cases[i].hkv, cases[i].lq, cases[i].lk, cases[i].d,
                                           cases[i].dtype, cases[i].causal);
            s.qk_half = 1;
            if (!fp16) {
                assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_ERR_DEVICE_UNSUPPORTED);
                printf("# qk_half on %s: refused, no cl_khr_fp16\n", clsa_context_device_name(ctx));
                continue;
            }
            harness_rng rng = harness_rng_make(700 + i);
            harness_buffers b;
            harness_buffers_make(ctx, &s, &rng, &b);
            assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
            assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, NULL, 0, NULL, NULL), CLSA_SUCCESS);
            assert_int_equal(clFinish(b.queue), CL_SUCCESS);
            harness_read_o(&b);
            const int64_t D = s.head_dim, group = s.q_heads / s.kv_heads;
            const double scale = 1.4426950408889634 / sqrt((double)D), u = 0x1p-11;
            double widest = 0.0, vmax = 0.0; /* max_ij sum_c |q'_ic k_jc|, max |v| */
            for (int64_t h = 0; h < s.q_heads; ++h)
                for (int64_t r = 0; r < s.q_len; ++r)
                    for (int64_t j = 0; j < s.kv_len; ++j) {
                        double sum = 0.0;
                        for (int64_t c = 0; c < D; ++c)
                            sum += fabs(ref_load(b.hq, s.dtype, (h * s.q_len + r) * D + c) * scale *
                                        ref_load(b.hk, s.dtype, ((h / group) * s.kv_len + j) * D + c));
                        widest = fmax(widest, sum);
                    }
            for (int64_t e = 0; e < s.kv_heads * s.kv_len * D; ++e)
                vmax = fmax(vmax, fabs(ref_load(b.hv, s.dtype, e)));
            const double eps = (3.0 * u + (double)D * 0x1p-24) * widest;
            double *want = malloc(sizeof(double) * (size_t)(s.q_heads * s.q_len * D));
            ref_attention(&s, b.hq, b.hk, b.hv, NULL, 0, 0, want);
            double max_ref = 0.0;
            for (int64_t e = 0; e < s.q_heads * s.q_len * D; ++e)
                max_ref = fmax(max_ref, fabs(want[e]));
            const double err = ref_max_rel_error(&s, b.ho, want) * max_ref;
            const double bound = (exp2(2.0 * eps) - 1.0) * vmax + harness_tolerance(s.dtype) * max_ref;
            printf("# qk_half %s Hq%lld L%lld/%lld D%lld %s: max abs err %.3g, bound %.3g (eps %.3g log2 units)\n",
                   style == CLSA_STYLE_CPU ? "cpu" : "gpu", (long long)s.q_heads, (long long)s.q_len,
                   (long long)s.kv_len, (long long)D, harness_dtype_name(s.dtype), err, bound, eps);
            assert_true(err <= bound);
            free(want);
            clsa_plan_release(plan);
            plan = NULL;
            harness_buffers_release(&b);
        }
        clsa_context_release(ctx);
    }
}

int main(void)
{
    harness_init("dense");
    const struct CMUnitTest tests[] = {
        BOTH(test_lengths), BOTH(test_head_dims), BOTH(test_gqa), BOTH(test_causal_misaligned),
        BOTH(test_strided), BOTH(test_dtypes), BOTH(test_host_call), cmocka_unit_test(test_host_call_waits_on_out_of_order_queue),
        cmocka_unit_test(test_tuning_variants), cmocka_unit_test(test_qk_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

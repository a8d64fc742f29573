/*
 * The block selectors (streaming, sliding, topk, cdf, xattn, and heads mixed in one plan) against
 * float64 host implementations of their rules (select_reference.c): the device's mask must keep
 * every block the rule keeps for sure and only blocks it may keep (they differ only at f32
 * near-ties), and attention must equal the float64 reference on the device's mask.
 */
#include "harness.h"
#include "select_reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clsa_context *ctx;

static int setup(void **state)
{
    (void)state;
    ctx = harness_context(CLSA_STYLE_CPU);
    return ctx ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    clsa_context_release(ctx);
    return 0;
}

static clsa_plan *make_plan_in(clsa_context *c, const clsa_shape *s, const clsa_sparsity *sp)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(c, s, sp, &plan);
    if (st)
        fail_msg("plan: %s", clsa_context_last_error(c));
    return plan;
}
static clsa_plan *make_plan(const clsa_shape *s, const clsa_sparsity *sp) { return make_plan_in(ctx, s, sp); }

/* The context of one plan: under oclgrind a fresh one, because oclgrind 21.10 takes the arguments of
   kernels made from a program that an earlier (released) kernel came from for uninitialized (the
   Python suite runs each test in a fresh context for the same reason); elsewhere the shared one. */
static clsa_context *plan_context(void) { return harness_small ? harness_context(CLSA_STYLE_CPU) : ctx; }
static void plan_context_release(clsa_context *c)
{
    if (c != ctx)
        clsa_context_release(c);
}

static const clsa_sparsity *head_settings(const clsa_sparsity *sp, int64_t h)
{
    return sp->method == CLSA_METHOD_PER_HEAD ? &sp->per_head[h] : sp;
}

/* The mask of a SALE-only plan with sp's blocks, sink and local and threshold tau, on the same
   data as check_plan's (the same stream): what a per-head plan's SALE heads must keep. */
static uint8_t *sale_alone_mask(const clsa_shape *s, const clsa_sparsity *sp, float tau, uint64_t stream)
{
    clsa_context *c = plan_context();
    harness_buffers b;
    harness_llm_buffers(c, s, stream, &b);
    clsa_sparsity alone = *sp;
    alone.method = CLSA_METHOD_SALE;
    alone.per_head = NULL;
    alone.tau = tau;
    clsa_plan *plan = make_plan_in(c, s, &alone);
    cl_mem ws = harness_new_buffer(c, clsa_plan_workspace_size(plan), NULL);
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    uint8_t *mask = harness_workspace_bitmap(b.queue, plan, ws);
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    plan_context_release(c);
    return mask;
}

/* Runs one plan through clsa_attention on LLM-like data, checks each head's mask against its rule
   (SALE heads against a SALE-only plan's mask, when sale_check) and the output against the float64
   reference on the device's mask. Returns the density of the mask's visible blocks. */
static double check_plan(const char *what, const clsa_shape *s, const clsa_sparsity *sp, uint64_t stream)
{
    clsa_context *c = plan_context();
    harness_buffers b;
    harness_llm_buffers(c, s, stream, &b);
    clsa_plan *plan = make_plan_in(c, s, sp);
    cl_mem ws = harness_new_buffer(c, clsa_plan_workspace_size(plan), NULL);
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    uint8_t *got = harness_workspace_bitmap(b.queue, plan, ws);
    harness_read_o(&b);
    clsa_mask_geometry g;
    assert_int_equal(clsa_plan_mask_geometry(plan, &g), CLSA_SUCCESS);
    const size_t cells = (size_t)(g.rows * g.num_k_blocks);
    uint8_t *must = calloc(cells, 1), *may = calloc(cells, 1);
    int64_t ambiguous = 0, kept = 0, visible = 0, wrong = 0;
    uint8_t *sale_mask = NULL;
    for (int64_t h = 0; h < s->q_heads; ++h) {
        const clsa_sparsity *e = head_settings(sp, h);
        if (e->method == CLSA_METHOD_SALE) {
            /* SALE's own tests cover its rule; here its rows must equal a SALE-only plan's. */
            if (!sale_mask)
                sale_mask = sale_alone_mask(s, sp, e->tau, stream);
            for (int64_t bt = 0; bt < s->batch; ++bt) {
                const size_t at = (size_t)((bt * s->q_heads + h) * g.num_q_blocks * g.num_k_blocks);
                memcpy(must + at, sale_mask + at, (size_t)(g.num_q_blocks * g.num_k_blocks));
                memcpy(may + at, sale_mask + at, (size_t)(g.num_q_blocks * g.num_k_blocks));
            }
            continue;
        }
        ambiguous += ref_select_head(s, e, h, b.hq, b.hk, must, may);
    }
    for (int64_t r = 0; r < g.rows; ++r) {
        const int64_t qb = r % g.num_q_blocks, h = (r / g.num_q_blocks) % s->q_heads;
        int64_t last_row = (qb + 1) * g.block_q - 1;
        last_row = last_row < s->q_len - 1 ? last_row : s->q_len - 1;
        const int64_t last_key = s->causal ? last_row + s->kv_len - s->q_len : s->kv_len - 1;
        const int64_t nvis = last_key < 0 ? 0 : (last_key < s->kv_len - 1 ? last_key : s->kv_len - 1) / g.block_k + 1;
        for (int64_t kb = 0; kb < g.num_k_blocks; ++kb) {
            const size_t i = (size_t)(r * g.num_k_blocks + kb);
            const bool bad = (must[i] && !got[i]) || (got[i] && !may[i]) || (got[i] && kb >= nvis);
            if (bad && wrong++ < 8)
                printf("# %s: head %lld (%s) query block %lld key block %lld: device %d, rule must %d may %d\n", what,
                       (long long)h, clsa_method_name(head_settings(sp, h)->method), (long long)qb, (long long)kb,
                       got[i], must[i], may[i]);
            kept += got[i] && kb < nvis;
            visible += kb < nvis;
        }
    }
    const int64_t nq = s->batch * s->q_heads * s->q_len * s->head_dim;
    double *want = malloc(sizeof(double) * (size_t)nq);
    ref_attention(s, b.hq, b.hk, b.hv, got, g.block_q, g.block_k, want);
    const double err = ref_max_rel_error(s, b.ho, want);
    const double density = visible ? (double)kept / (double)visible : 0.0;
    printf("# %-44s density %.3f, %lld near-tie blocks, max rel error %.2e\n", what, density, (long long)ambiguous, err);
    assert_int_equal(wrong, 0);
    assert_true(err <= harness_tolerance(s->dtype));
    free(want), free(must), free(may), free(got), free(sale_mask);
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    plan_context_release(c);
    return density;
}

/* A small shape: harness_small (oclgrind) shrinks lengths. */
static clsa_shape shape(int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t d, clsa_dtype dt, int causal)
{
    if (harness_small)
        lq = lq / 3 + 1, lk = lk / 3 + 1;
    return clsa_shape_make(1, hq, hkv, lq, lk, d, dt, causal);
}

static clsa_sparsity settings(clsa_method m, int32_t bq, int32_t bk)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, m);
    sp.block_q = bq, sp.block_k = bk;
    sp.sink_tokens = 16, sp.local_tokens = 48;
    return sp;
}

static void test_streaming(void **state)
{
    (void)state;
    clsa_shape s = shape(4, 2, 300, 300, 32, CLSA_F32, 1);
    clsa_sparsity sp = settings(CLSA_METHOD_STREAMING, 32, 16);
    check_plan("streaming, causal", &s, &sp, 1);
    sp.keep_forced = 0; /* ignored: streaming's rule is the forced set */
    s = shape(2, 1, 150, 260, 24, CLSA_F16, 0);
    check_plan("streaming, not causal, Lq < Lk, f16", &s, &sp, 2);
    s = shape(3, 3, 260, 150, 16, CLSA_F32, 1);
    sp.sink_tokens = 0, sp.local_tokens = 0;
    check_plan("streaming, causal, Lq > Lk, diagonal only", &s, &sp, 3);
}

static void test_sliding(void **state)
{
    (void)state;
    clsa_shape s = shape(4, 2, 300, 300, 32, CLSA_F32, 1);
    clsa_sparsity sp = settings(CLSA_METHOD_SLIDING, 32, 16);
    sp.window_tokens = 70;
    check_plan("sliding 70, causal, forced kept", &s, &sp, 4);
    sp.keep_forced = 0;
    check_plan("sliding 70, causal, no forced", &s, &sp, 5);
    sp.window_symmetric = 1, sp.window_tokens = 40;
    s = shape(2, 2, 200, 330, 40, CLSA_BF16, 0);
    check_plan("sliding 40 symmetric, not causal", &s, &sp, 6);
    s = shape(2, 1, 200, 330, 40, CLSA_F32, 1);
    check_plan("sliding 40 symmetric, causal, Lq < Lk", &s, &sp, 7);
    sp.window_tokens = 1 << 30;
    check_plan("sliding 2^30 (all)", &s, &sp, 8);
}

static void test_pooled(void **state)
{
    (void)state;
    clsa_shape s = shape(4, 2, 320, 320, 64, CLSA_F32, 1);
    const float topks[3] = {0.3f, 0.5f, 1.0f}, gammas[3] = {0.5f, 0.9f, 1.0f};
    for (int i = 0; i < 3; ++i) {
        char what[64];
        clsa_sparsity sp = settings(CLSA_METHOD_TOPK, 16, 16);
        sp.topk = topks[i];
        sp.keep_forced = i != 0;
        snprintf(what, sizeof what, "topk %.1f, forced %d", (double)sp.topk, sp.keep_forced);
        check_plan(what, &s, &sp, 10 + (uint64_t)i);
        sp.method = CLSA_METHOD_CDF;
        sp.cdf_gamma = gammas[i];
        snprintf(what, sizeof what, "cdf %.1f, forced %d", (double)sp.cdf_gamma, sp.keep_forced);
        check_plan(what, &s, &sp, 20 + (uint64_t)i);
    }
    s = shape(3, 1, 330, 200, 40, CLSA_F16, 1);
    clsa_sparsity sp = settings(CLSA_METHOD_TOPK, 32, 32);
    sp.keep_forced = 0;
    check_plan("topk 0.5, causal, Lq > Lk, f16, MQA", &s, &sp, 30);
    s = shape(2, 2, 150, 300, 24, CLSA_F32, 0);
    sp.method = CLSA_METHOD_CDF;
    check_plan("cdf 0.9, not causal", &s, &sp, 31);
}

static void test_xattn(void **state)
{
    (void)state;
    const int32_t strides[4] = {1, 4, 8, 16};
    for (int i = 0; i < 4; ++i) {
        char what[64];
        clsa_shape s = shape(2, 1, 300, 300, 32, CLSA_F32, 1);
        clsa_sparsity sp = settings(CLSA_METHOD_XATTN, 32, 16);
        sp.xattn_stride = strides[i];
        sp.xattn_threshold = i == 1 ? 0.5f : 0.9f;
        sp.keep_forced = i % 2;
        snprintf(what, sizeof what, "xattn stride %d, threshold %.1f, forced %d", sp.xattn_stride,
                 (double)sp.xattn_threshold, sp.keep_forced);
        check_plan(what, &s, &sp, 40 + (uint64_t)i);
    }
    clsa_shape s = shape(4, 2, 200, 290, 40, CLSA_F16, 0);
    clsa_sparsity sp = settings(CLSA_METHOD_XATTN, 16, 32);
    check_plan("xattn stride 8, not causal, f16", &s, &sp, 45);
    s = shape(2, 2, 290, 200, 24, CLSA_F32, 1);
    check_plan("xattn stride 8, causal, Lq > Lk", &s, &sp, 46);
}

/* DuoAttention's split and more: every method in one plan, each head with its own settings. */
static void test_per_head(void **state)
{
    (void)state;
    clsa_shape s = shape(8, 2, 300, 300, 32, CLSA_F32, 1);
    s.batch = 2;
    const clsa_method methods[8] = {CLSA_METHOD_DENSE, CLSA_METHOD_STREAMING, CLSA_METHOD_SALE, CLSA_METHOD_SLIDING,
                                    CLSA_METHOD_TOPK,  CLSA_METHOD_CDF,       CLSA_METHOD_XATTN, CLSA_METHOD_SALE};
    clsa_sparsity heads[8];
    for (int h = 0; h < 8; ++h) {
        heads[h] = settings(methods[h], 32, 16);
        heads[h].window_tokens = 40 + 10 * h;
        heads[h].topk = 0.25f;
        heads[h].cdf_gamma = 0.8f;
        heads[h].xattn_stride = 4;
        heads[h].tau = 0.01f;
        if (methods[h] != CLSA_METHOD_SALE)
            heads[h].sink_tokens = 8 * h, heads[h].local_tokens = 16 * h;
    }
    clsa_sparsity sp = settings(CLSA_METHOD_PER_HEAD, 32, 16);
    sp.per_head = heads;
    const double density = check_plan("per head: every method", &s, &sp, 50);
    assert_true(density > 0.0 && density < 1.0);
    /* The same heads without SALE, and GQA groups of mixed methods. */
    for (int h = 0; h < 8; ++h)
        if (heads[h].method == CLSA_METHOD_SALE)
            heads[h] = settings(CLSA_METHOD_STREAMING, 32, 16);
    check_plan("per head: no SALE", &s, &sp, 51);
}

/* clsa_estimate_mask runs any selector: the same mask as clsa_attention's; clsa_quantize only
   applies to plans with SALE heads. */
static void test_stages(void **state)
{
    (void)state;
    clsa_shape s = shape(2, 1, 200, 200, 32, CLSA_F32, 1);
    clsa_sparsity sp = settings(CLSA_METHOD_TOPK, 32, 32);
    harness_buffers b;
    harness_llm_buffers(ctx, &s, 60, &b);
    clsa_plan *plan = make_plan(&s, &sp);
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    assert_int_equal(clsa_quantize(plan, b.queue, b.q, b.k, ws, 0, NULL, NULL), CLSA_ERR_WRONG_PLAN);
    assert_int_equal(clsa_plan_quant_layout(plan, &(clsa_quant_layout){0}), CLSA_ERR_WRONG_PLAN);
    assert_int_equal(clsa_estimate_mask(plan, b.queue, b.q, b.k, ws, NULL, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    uint8_t *staged = harness_workspace_bitmap(b.queue, plan, ws);
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    uint8_t *whole = harness_workspace_bitmap(b.queue, plan, ws);
    clsa_mask_geometry g;
    assert_int_equal(clsa_plan_mask_geometry(plan, &g), CLSA_SUCCESS);
    assert_memory_equal(staged, whole, (size_t)(g.rows * g.num_k_blocks));
    free(staged), free(whole);
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
}

static void expect_bad(const clsa_sparsity *sp, clsa_status want, const char *what)
{
    clsa_shape s = clsa_shape_make(1, 4, 2, 64, 64, 16, CLSA_F32, 1);
    clsa_plan *plan = (clsa_plan *)0x1;
    const clsa_status st = clsa_plan_create(ctx, &s, sp, &plan);
    printf("# %s: %s: %s\n", what, clsa_status_string(st), clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_null(plan);
}

static void test_bad_settings(void **state)
{
    (void)state;
    clsa_sparsity sp = settings(CLSA_METHOD_SLIDING, 32, 32);
    sp.window_tokens = 0;
    expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "window 0");
    sp.window_tokens = 8, sp.window_symmetric = 2;
    expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "window_symmetric 2");
    sp = settings(CLSA_METHOD_TOPK, 32, 32);
    const float bad_fractions[4] = {0.0f, -0.5f, 1.5f, NAN};
    for (int i = 0; i < 4; ++i) {
        sp.method = CLSA_METHOD_TOPK, sp.topk = bad_fractions[i];
        expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "topk");
        sp.topk = 0.5f, sp.method = CLSA_METHOD_CDF, sp.cdf_gamma = bad_fractions[i];
        expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "cdf_gamma");
        sp.cdf_gamma = 0.9f, sp.method = CLSA_METHOD_XATTN, sp.xattn_threshold = bad_fractions[i];
        expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "xattn_threshold");
        sp.xattn_threshold = 0.9f;
    }
    const int32_t bad_strides[4] = {0, 3, 64, -8};
    for (int i = 0; i < 4; ++i) {
        sp.xattn_stride = bad_strides[i];
        expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "xattn_stride");
    }
    sp = settings(CLSA_METHOD_STREAMING, 32, 32);
    sp.sink_tokens = -1;
    expect_bad(&sp, CLSA_ERR_INVALID_TOKENS, "streaming sink -1");
    sp = settings(CLSA_METHOD_CDF, 32, 32);
    sp.keep_forced = 2;
    expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "keep_forced 2");
    /* Per-head plans. */
    clsa_sparsity heads[4];
    for (int h = 0; h < 4; ++h)
        heads[h] = settings(CLSA_METHOD_STREAMING, 32, 32);
    sp = settings(CLSA_METHOD_PER_HEAD, 32, 32);
    expect_bad(&sp, CLSA_ERR_NULL_ARGUMENT, "per-head without per_head");
    sp.per_head = heads;
    heads[1].block_k = 16;
    expect_bad(&sp, CLSA_ERR_INVALID_BLOCK_SIZE, "per-head block sizes differ");
    heads[1].block_k = 32, heads[2].method = CLSA_METHOD_MASK;
    expect_bad(&sp, CLSA_ERR_INVALID_METHOD, "per-head mask head");
    heads[2].method = CLSA_METHOD_SALE_EXACT;
    expect_bad(&sp, CLSA_ERR_INVALID_METHOD, "per-head oracle head");
    heads[2].method = CLSA_METHOD_PER_HEAD;
    expect_bad(&sp, CLSA_ERR_INVALID_METHOD, "per-head nested");
    heads[2].method = CLSA_METHOD_TOPK, heads[2].topk = 2.0f;
    expect_bad(&sp, CLSA_ERR_INVALID_SELECTOR, "per-head bad topk");
    heads[2].topk = 0.5f, heads[3].method = CLSA_METHOD_SALE, heads[3].sink_tokens = 8;
    expect_bad(&sp, CLSA_ERR_INVALID_TOKENS, "per-head SALE head with its own sink");
    heads[3].sink_tokens = sp.sink_tokens, heads[3].tau = -1.0f;
    expect_bad(&sp, CLSA_ERR_INVALID_TAU, "per-head SALE head with tau -1");
    heads[3].tau = 0.01f;
    float taus[4] = {0.1f, 0.1f, 0.1f, 0.1f};
    sp.tau_per_head = taus;
    expect_bad(&sp, CLSA_ERR_INVALID_METHOD, "per-head with tau_per_head");
    sp.tau_per_head = NULL;
    clsa_sparsity topk = settings(CLSA_METHOD_TOPK, 32, 32);
    topk.per_head = heads;
    expect_bad(&topk, CLSA_ERR_INVALID_METHOD, "per_head with method topk");
    /* The names. */
    clsa_method m;
    for (int i = 0; i < 10; ++i) {
        assert_non_null(clsa_method_name((clsa_method)i));
        assert_int_equal(clsa_method_from_name(clsa_method_name((clsa_method)i), &m), CLSA_SUCCESS);
        assert_int_equal((int)m, i);
    }
    assert_null(clsa_method_name((clsa_method)10));
    assert_null(clsa_method_name((clsa_method)-1));
    assert_int_equal(clsa_method_from_name("Streaming", &m), CLSA_ERR_INVALID_METHOD);
    assert_int_equal(clsa_method_from_name(NULL, &m), CLSA_ERR_NULL_ARGUMENT);
}

int main(void)
{
    harness_init("selectors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streaming), cmocka_unit_test(test_sliding), cmocka_unit_test(test_pooled),
        cmocka_unit_test(test_xattn),     cmocka_unit_test(test_per_head), cmocka_unit_test(test_stages),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * Attention-value pruning and log quantization (clsa_shape.value_prune, value_bits; Ji et al.
 * 2021) against a float64 reference of the same rule: exact row max and sum first, then each
 * probability pruned below t or set to the middle of its log bin, times V, not renormalized.
 * A probability within 1e-4 (relative) of t or of a bin edge may go either way in f32: the
 * reference adds |level difference| x |v| of such elements to that output's allowance, and allows
 * the pruned count to differ by the number of them near t. Dense, caller masks and SALE; both
 * kernel styles; causal and not; f32, f16, GQA, head_dim 24 and 64.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_EPS 1e-4

/* The rule's level of p >= t (clsa.h, clsa_shape.value_bits), in float64; p itself for bits 0. */
static double level_of(double p, double t, int bits)
{
    if (bits == 0)
        return p;
    const double min_exp = log2(t), base = -min_exp / (double)((1 << bits) - 1);
    double k = floor((log2(p) - min_exp) / base);
    k = k < 0 ? 0 : k > (double)((1 << bits) - 2) ? (double)((1 << bits) - 2) : k;
    return exp2(min_exp + (k + 0.5) * base);
}

/* The rule applied to p, and the other value it may take in f32 (itself when p is not near an edge). */
static double rule(double p, double t, int bits, double *alternative, bool *near_t)
{
    const double kept = p < t ? 0.0 : level_of(p, t, bits);
    *alternative = kept;
    *near_t = fabs(p - t) <= EDGE_EPS * t;
    if (*near_t)
        *alternative = p < t ? level_of(t, t, bits) : 0.0;
    else if (bits > 0 && p >= t) {
        const double below = level_of(p * (1.0 - EDGE_EPS), t, bits), above = level_of(p * (1.0 + EDGE_EPS), t, bits);
        *alternative = below != kept ? below : above;
    }
    return kept;
}

typedef struct pruned_reference {
    double *out, *allowance; /* [B*Hq*Lq*D] */
    double max_abs;
    int64_t pruned, seen, near_t;
} pruned_reference;

/* The float64 reference on the block mask `keep` (NULL: every visible key). */
static void reference(const clsa_shape *s, const void *q, const void *k, const void *v, const uint8_t *keep,
                      int block_q, int block_k, double t, int bits, pruned_reference *r)
{
    const int64_t D = s->head_dim, n = s->batch * s->q_heads * s->q_len * D;
    r->out = calloc((size_t)n, sizeof(double));
    r->allowance = calloc((size_t)n, sizeof(double));
    r->max_abs = 0.0, r->pruned = r->seen = r->near_t = 0;
    const ref_strides qs = ref_resolve(s->q_strides, s->q_heads, s->q_len, D);
    const ref_strides ks = ref_resolve(s->k_strides, s->kv_heads, s->kv_len, D);
    const ref_strides vs = ref_resolve(s->v_strides, s->kv_heads, s->kv_len, D);
    const double scale = s->scale > 0 ? s->scale : 1.0 / sqrt((double)D);
    const int64_t nqb = (s->q_len + block_q - 1) / block_q, nkb = (s->kv_len + block_k - 1) / block_k;
    double *score = malloc(sizeof(double) * (size_t)s->kv_len);
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h) {
            const int64_t hk = h / (s->q_heads / s->kv_heads);
            for (int64_t i = 0; i < s->q_len; ++i) {
                const int64_t last = ref_last_visible(s, i);
                const uint8_t *row_keep = keep ? keep + ((b * s->q_heads + h) * nqb + i / block_q) * nkb : NULL;
                double m = -INFINITY;
                for (int64_t j = 0; j <= last; ++j) {
                    score[j] = -INFINITY;
                    if (row_keep && !row_keep[j / block_k])
                        continue;
                    double dot = 0.0;
                    for (int64_t c = 0; c < D; ++c)
                        dot += ref_load(q, s->dtype, b * qs.batch + h * qs.head + i * qs.token + c) *
                               ref_load(k, s->dtype, b * ks.batch + hk * ks.head + j * ks.token + c);
                    score[j] = dot * scale;
                    m = fmax(m, score[j]);
                }
                double l = 0.0;
                for (int64_t j = 0; j <= last; ++j)
                    l += score[j] == -INFINITY ? 0.0 : exp(score[j] - m);
                double *o = r->out + ((b * s->q_heads + h) * s->q_len + i) * D;
                double *allow = r->allowance + ((b * s->q_heads + h) * s->q_len + i) * D;
                for (int64_t j = 0; j <= last; ++j) {
                    if (score[j] == -INFINITY)
                        continue;
                    const double p = exp(score[j] - m) / l;
                    double alternative;
                    bool near_t;
                    const double kept = rule(p, t, bits, &alternative, &near_t);
                    r->seen++, r->pruned += p < t, r->near_t += near_t;
                    for (int64_t c = 0; c < D; ++c) {
                        const double vv = ref_load(v, s->dtype, b * vs.batch + hk * vs.head + j * vs.token + c);
                        o[c] += kept * vv;
                        allow[c] += fabs(alternative - kept) * fabs(vv);
                    }
                }
                for (int64_t c = 0; c < D; ++c)
                    r->max_abs = fmax(r->max_abs, fabs(o[c]));
            }
        }
    free(score);
}

static void reference_free(pruned_reference *r) { free(r->out), free(r->allowance); }

/* Checks the device's output and pruned fraction against the reference; returns rel_l1 to the reference. */
static void check(const char *what, clsa_plan *plan, cl_command_queue queue, cl_mem ws, const harness_buffers *b,
                  const pruned_reference *r)
{
    const clsa_shape *s = clsa_plan_shape(plan);
    const int64_t D = s->head_dim;
    const ref_strides os = ref_resolve(s->o_strides, s->q_heads, s->q_len, D);
    const double tol = harness_tolerance(s->dtype) * r->max_abs;
    int64_t bad = 0;
    double worst = 0.0;
    for (int64_t bt = 0; bt < s->batch; ++bt)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i)
                for (int64_t c = 0; c < D; ++c) {
                    const int64_t at = ((bt * s->q_heads + h) * s->q_len + i) * D + c;
                    const double got = ref_load(b->ho, s->dtype, bt * os.batch + h * os.head + i * os.token + c);
                    const double err = fabs(got - r->out[at]);
                    worst = fmax(worst, err / (tol + r->allowance[at]));
                    if (!(err <= tol + r->allowance[at]) && bad++ < 5)
                        printf("# %s: o[%lld][%lld][%lld][%lld] = %.9g, want %.9g (allowed %.3g)\n", what, (long long)bt,
                               (long long)h, (long long)i, (long long)c, got, r->out[at], tol + r->allowance[at]);
                }
    double fraction, *per_head = malloc(sizeof(double) * (size_t)s->q_heads);
    assert_int_equal(clsa_pruned_fraction(plan, queue, ws, &fraction, per_head), CLSA_SUCCESS);
    const double want = r->seen ? (double)r->pruned / (double)r->seen : 0.0;
    const double slack = r->seen ? (double)r->near_t / (double)r->seen + 1e-12 : 0.0;
    printf("# %-48s pruned %.4f (float64 %.4f, %lld near t), error / allowance %.2f\n", what, fraction, want,
           (long long)r->near_t, worst);
    assert_int_equal(bad, 0);
    assert_true(fabs(fraction - want) <= slack);
    free(per_head);
}

typedef struct prune_case {
    const char *what;
    clsa_shape shape;
    clsa_method method; /* DENSE, MASK (a random caller mask) or SALE */
    float t;
    int bits;
} prune_case;

static void run_case(clsa_kernel_style style, const prune_case *pc, uint64_t stream)
{
    clsa_context *ctx = harness_context(style);
    clsa_shape s = pc->shape;
    s.value_prune = pc->t, s.value_bits = pc->bits;
    harness_buffers b;
    harness_llm_buffers(ctx, &s, stream, &b);
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, pc->method);
    sp.block_q = 32, sp.block_k = 16;
    clsa_plan *plan = NULL;
    if (clsa_plan_create(ctx, &s, pc->method == CLSA_METHOD_DENSE ? NULL : &sp, &plan))
        fail_msg("plan: %s", clsa_context_last_error(ctx));
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    uint8_t *keep = NULL;
    if (pc->method == CLSA_METHOD_MASK) {
        clsa_mask_geometry g;
        assert_int_equal(clsa_plan_mask_geometry(plan, &g), CLSA_SUCCESS);
        harness_rng rng = harness_rng_make(stream + 1000);
        keep = malloc((size_t)(g.rows * g.num_k_blocks));
        for (int64_t e = 0; e < g.rows * g.num_k_blocks; ++e)
            keep[e] = harness_uniform(&rng) < 0.5;
        int32_t *lists = malloc(g.counts_bytes + g.indices_bytes);
        assert_int_equal(clsa_mask_from_bitmap(keep, g.rows, g.num_k_blocks, lists, lists + g.rows), CLSA_SUCCESS);
        cl_mem m = harness_new_buffer(ctx, g.counts_bytes + g.indices_bytes, lists);
        const clsa_block_mask mask = {m, 0, m, g.counts_bytes};
        assert_int_equal(clsa_attention_masked(plan, b.queue, b.q, b.k, b.v, b.o, ws, &mask, CLSA_MASK_CHECK, 0, NULL,
                                               NULL),
                         CLSA_SUCCESS);
        assert_int_equal(clFinish(b.queue), CL_SUCCESS);
        clReleaseMemObject(m);
        free(lists);
    } else {
        assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, NULL), CLSA_SUCCESS);
        assert_int_equal(clFinish(b.queue), CL_SUCCESS);
        if (pc->method == CLSA_METHOD_SALE)
            keep = harness_workspace_bitmap(b.queue, plan, ws);
    }
    harness_read_o(&b);
    pruned_reference r;
    reference(clsa_plan_shape(plan), b.hq, b.hk, b.hv, keep, sp.block_q, sp.block_k, pc->t, pc->bits, &r);
    char what[96];
    snprintf(what, sizeof what, "%s, %s style", pc->what, style == CLSA_STYLE_CPU ? "cpu" : "gpu");
    check(what, plan, b.queue, ws, &b, &r);
    reference_free(&r);
    free(keep);
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

static clsa_shape small_shape(int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t d, clsa_dtype dt, int causal)
{
    if (harness_small)
        lq = lq / 3 + 1, lk = lk / 3 + 1;
    return clsa_shape_make(1, hq, hkv, lq, lk, d, dt, causal);
}

static void test_pruning(void **state)
{
    const clsa_kernel_style style = (clsa_kernel_style)(intptr_t)*state;
    const prune_case cases[] = {
        {"dense, prune 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-3f, 0},
        {"dense, 3 bits 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-3f, 3},
        {"dense, 1 bit 1e-2, not causal, f16", small_shape(2, 1, 150, 230, 24, CLSA_F16, 0), CLSA_METHOD_DENSE, 1e-2f, 1},
        {"dense, 8 bits 1e-4, causal Lq > Lk", small_shape(2, 2, 230, 150, 24, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-4f, 8},
        {"caller mask, 3 bits 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_MASK, 1e-3f, 3},
        {"caller mask, prune 5e-3, not causal, f16", small_shape(2, 2, 170, 200, 24, CLSA_F16, 0), CLSA_METHOD_MASK, 5e-3f, 0},
        {"SALE, 3 bits 1e-3, causal", small_shape(4, 2, 256, 256, 64, CLSA_F32, 1), CLSA_METHOD_SALE, 1e-3f, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        run_case(style, &cases[i], 70 + i);
}

/* The levels the rule gives for b = 3 and t = 1e-3 are the published ones (DESIGN.md section 4),
   on the host and through the device: with V the identity, O's row i is row i's p'. */
static void test_published_levels(void **state)
{
    (void)state;
    const double published[7] = {0.00164, 0.00439, 0.0118, 0.0316, 0.0848, 0.228, 0.611};
    const double min_exp = log2(1e-3), base = -min_exp / 7.0;
    for (int k = 0; k < 7; ++k) {
        const double level = exp2(min_exp + (k + 0.5) * base);
        const double unit = pow(10.0, floor(log10(published[k])) - 2); /* the last printed digit */
        printf("# level %d: %.6f (published %g)\n", k, level, published[k]);
        assert_true(fabs(level - published[k]) <= 0.5 * unit);
        assert_true(fabs(level_of(exp2(min_exp + (k + 0.5) * base), 1e-3, 3) - level) <= 1e-15);
    }
    /* Through the device: 16 keys, V = identity, so o[i][j] = p'_ij. */
    clsa_context *ctx = harness_context(CLSA_STYLE_CPU);
    clsa_shape s = clsa_shape_make(1, 1, 1, 64, 16, 16, CLSA_F32, 0);
    s.value_prune = 1e-3f, s.value_bits = 3;
    harness_rng rng = harness_rng_make(90);
    harness_buffers b;
    harness_buffers_make(ctx, &s, &rng, &b);
    float *q = b.hq, *v = b.hv;
    for (int64_t e = 0; e < 64 * 16; ++e)
        q[e] *= 3.0f; /* peaked rows: probabilities across all seven bins and below t */
    for (int j = 0; j < 16; ++j)
        for (int c = 0; c < 16; ++c)
            v[j * 16 + c] = j == c ? 1.0f : 0.0f;
    assert_int_equal(clEnqueueWriteBuffer(b.queue, b.q, CL_TRUE, 0, b.q_bytes, b.hq, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b.queue, b.v, CL_TRUE, 0, b.v_bytes, b.hv, 0, NULL, NULL), CL_SUCCESS);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, NULL, 0, NULL, NULL), CLSA_SUCCESS);
    harness_read_o(&b);
    int used[8] = {0};
    const float *o = b.ho;
    for (int64_t e = 0; e < 64 * 16; ++e) {
        int which = -1;
        if (o[e] == 0.0f)
            which = 7;
        for (int k = 0; k < 7; ++k)
            if (fabs(o[e] - exp2(min_exp + (k + 0.5) * base)) <= 1e-6 * o[e])
                which = k;
        if (which < 0)
            fail_msg("o[%lld] = %.9g is neither 0 nor one of the seven levels", (long long)e, (double)o[e]);
        used[which]++;
    }
    printf("# device outputs per level 0..6, zero: %d %d %d %d %d %d %d, %d\n", used[0], used[1], used[2], used[3],
           used[4], used[5], used[6], used[7]);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

static void expect_shape_error(clsa_context *ctx, float t, int bits, clsa_status want)
{
    clsa_shape s = clsa_shape_make(1, 2, 1, 32, 32, 16, CLSA_F32, 1);
    s.value_prune = t, s.value_bits = bits;
    clsa_plan *plan = (clsa_plan *)0x1;
    const clsa_status st = clsa_plan_create(ctx, &s, NULL, &plan);
    printf("# value_prune %g, value_bits %d: %s: %s\n", (double)t, bits, clsa_status_string(st),
           clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_null(plan);
}

static void test_bad_settings(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_CPU);
    expect_shape_error(ctx, -1e-3f, 0, CLSA_ERR_INVALID_VALUE_PRUNE);
    expect_shape_error(ctx, 1.0f, 0, CLSA_ERR_INVALID_VALUE_PRUNE);
    expect_shape_error(ctx, NAN, 0, CLSA_ERR_INVALID_VALUE_PRUNE);
    expect_shape_error(ctx, INFINITY, 0, CLSA_ERR_INVALID_VALUE_PRUNE);
    expect_shape_error(ctx, 0.0f, 3, CLSA_ERR_INVALID_VALUE_PRUNE);
    expect_shape_error(ctx, 1e-3f, 9, CLSA_ERR_INVALID_VALUE_BITS);
    expect_shape_error(ctx, 1e-3f, -1, CLSA_ERR_INVALID_VALUE_BITS);
    /* clsa_pruned_fraction: a plan without pruning, NULL arguments, no own workspace yet. */
    clsa_shape s = clsa_shape_make(1, 2, 1, 32, 32, 16, CLSA_F32, 1);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    harness_rng rng = harness_rng_make(91);
    harness_buffers b;
    harness_buffers_make(ctx, &s, &rng, &b);
    double f;
    assert_int_equal(clsa_pruned_fraction(plan, b.queue, NULL, &f, NULL), CLSA_ERR_WRONG_PLAN);
    clsa_plan_release(plan);
    s.value_prune = 1e-3f;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    assert_int_equal(clsa_pruned_fraction(plan, b.queue, NULL, &f, NULL), CLSA_ERR_WRONG_PLAN);
    assert_int_equal(clsa_pruned_fraction(plan, NULL, NULL, &f, NULL), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_pruned_fraction(plan, b.queue, NULL, NULL, NULL), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_pruned_fraction(NULL, b.queue, NULL, &f, NULL), CLSA_ERR_NULL_ARGUMENT);
    cl_mem tiny = harness_new_buffer(ctx, 4, NULL);
    assert_int_equal(clsa_pruned_fraction(plan, b.queue, tiny, &f, NULL), CLSA_ERR_WORKSPACE_TOO_SMALL);
    clReleaseMemObject(tiny);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("value-prune");
    const struct CMUnitTest tests[] = {
        BOTH(test_pruning),
        cmocka_unit_test(test_published_levels),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

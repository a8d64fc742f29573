/*
 * Attention-value pruning and log quantization (clsa_shape.value_prune, value_bits; Ji et al.
 * 2021) against a float64 reference of the same rule: exact row max and sum first, then each
 * probability pruned below t or set to the middle of its log bin, times V, not renormalized.
 * A probability within 1e-4 (relative) of t or of a bin edge may go either way in f32: the
 * reference adds |level difference| x |v| of such elements to that output's allowance, and allows
 * the pruned count to differ by the number of them near t. Dense, caller masks and SALE; both
 * kernel styles; causal and not; f32, f16, GQA, head_dim 24, 40 and 64; per-head fractions; NaN
 * and Inf inputs (clsa.h, "Non-finite values").
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_EPS 1e-4

/* The rule applied to p, and the other value it may take in f32 (itself when p is not near an edge). */
static double rule(double p, double t, int bits, double *alternative, bool *near_t)
{
    const double kept = p < t ? 0.0 : ref_value_level(p, t, bits);
    *alternative = kept;
    *near_t = fabs(p - t) <= EDGE_EPS * t;
    if (*near_t)
        *alternative = p < t ? ref_value_level(t, t, bits) : 0.0;
    else if (bits > 0 && p >= t) {
        const double below = ref_value_level(p * (1.0 - EDGE_EPS), t, bits), above = ref_value_level(p * (1.0 + EDGE_EPS), t, bits);
        *alternative = below != kept ? below : above;
    }
    return kept;
}

typedef struct pruned_reference {
    double *out, *allowance; /* [B*Hq*Lq*D] */
    double t;
    int bits;
    int64_t q_heads, q_len;
    int64_t pruned, seen, near_t;           /* over every row */
    int64_t *head_pruned, *head_seen, *head_near_t; /* per query head, over the batch */
} pruned_reference;

/* The rule as ref_attention_rule applies it: counts p (pruned, seen, near t, per head), adds the
   output allowance of a p that may go either way, and returns its weight. NaN p (a row with a
   non-finite score) is seen and not pruned, as on the device. */
static double apply_rule(void *user, int64_t row, double p, const double *v_row, int64_t head_dim)
{
    pruned_reference *r = user;
    const int64_t h = (row / r->q_len) % r->q_heads;
    r->seen++, r->head_seen[h]++;
    if (isnan(p))
        return p;
    double alternative;
    bool near_t;
    const double kept = rule(p, r->t, r->bits, &alternative, &near_t);
    r->pruned += p < r->t, r->head_pruned[h] += p < r->t;
    r->near_t += near_t, r->head_near_t[h] += near_t;
    double *allow = r->allowance + row * head_dim;
    for (int64_t c = 0; c < head_dim; ++c)
        allow[c] += fabs(alternative - kept) * fabs(v_row[c]);
    return kept;
}

/* The float64 reference on the block mask `keep` (NULL: every visible key). */
static void reference(const clsa_shape *s, const void *q, const void *k, const void *v, const uint8_t *keep,
                      int block_q, int block_k, double t, int bits, pruned_reference *r)
{
    const int64_t n = s->batch * s->q_heads * s->q_len * s->head_dim;
    *r = (pruned_reference){.t = t, .bits = bits, .q_heads = s->q_heads, .q_len = s->q_len};
    r->out = malloc(sizeof(double) * (size_t)n);
    r->allowance = calloc((size_t)n, sizeof(double));
    r->head_pruned = calloc((size_t)s->q_heads, sizeof(int64_t));
    r->head_seen = calloc((size_t)s->q_heads, sizeof(int64_t));
    r->head_near_t = calloc((size_t)s->q_heads, sizeof(int64_t));
    assert_true(r->out && r->allowance && r->head_pruned && r->head_seen && r->head_near_t);
    const ref_prob_rule pr = {apply_rule, r};
    ref_attention_rule(s, q, k, v, keep, block_q, block_k, &pr, r->out);
}

static void reference_free(pruned_reference *r)
{
    free(r->out), free(r->allowance), free(r->head_pruned), free(r->head_seen), free(r->head_near_t);
}

/* A device fraction against the float64 counts, allowing each p near t to go either way. */
static bool fraction_matches(double got, int64_t pruned, int64_t seen, int64_t near_t)
{
    if (!seen)
        return got == 0.0;
    return fabs(got - (double)pruned / (double)seen) <= (double)near_t / (double)seen + 1e-12;
}

/* Checks the device's output and pruned fractions (overall and per head) against the reference.
   Elements the reference has non-finite (rows that see an Inf or NaN) must be non-finite on the
   device, the others within the storage tolerance plus their allowance. */
static void check(const char *what, clsa_plan *plan, cl_command_queue queue, cl_mem ws, const harness_buffers *b,
                  const pruned_reference *r)
{
    const clsa_shape *s = clsa_plan_shape(plan);
    const int64_t D = s->head_dim, n = s->batch * s->q_heads * s->q_len * D;
    const ref_strides os = ref_resolve(s->o_strides, s->q_heads, s->q_len, D);
    double max_abs = 0.0;
    int64_t nonfinite = 0;
    for (int64_t at = 0; at < n; ++at)
        if (isfinite(r->out[at]))
            max_abs = fmax(max_abs, fabs(r->out[at]));
        else
            ++nonfinite;
    const double tol = harness_tolerance(s->dtype) * max_abs;
    int64_t bad = 0;
    double worst = 0.0;
    for (int64_t bt = 0; bt < s->batch; ++bt)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i)
                for (int64_t c = 0; c < D; ++c) {
                    const int64_t at = ((bt * s->q_heads + h) * s->q_len + i) * D + c;
                    const double got = ref_load(b->ho, s->dtype, bt * os.batch + h * os.head + i * os.token + c);
                    const double want = r->out[at], err = fabs(got - want);
                    bool ok;
                    if (!isfinite(want))
                        ok = !isfinite(got);
                    else {
                        ok = err <= tol + r->allowance[at];
                        worst = fmax(worst, err / (tol + r->allowance[at]));
                    }
                    if (!ok && bad++ < 5)
                        printf("# %s: o[%lld][%lld][%lld][%lld] = %.9g, want %.9g (allowed %.3g)\n", what, (long long)bt,
                               (long long)h, (long long)i, (long long)c, got, want, tol + r->allowance[at]);
                }
    double fraction, *per_head = malloc(sizeof(double) * (size_t)s->q_heads);
    assert_non_null(per_head);
    assert_int_equal(clsa_pruned_fraction(plan, queue, ws, &fraction, per_head), CLSA_SUCCESS);
    const double want = r->seen ? (double)r->pruned / (double)r->seen : 0.0;
    printf("# %-48s pruned %.4f (float64 %.4f, %lld near t), error / allowance %.2f, %lld non-finite\n", what, fraction,
           want, (long long)r->near_t, worst, (long long)nonfinite);
    assert_int_equal(bad, 0);
    assert_true(fraction_matches(fraction, r->pruned, r->seen, r->near_t));
    for (int64_t h = 0; h < s->q_heads; ++h)
        if (!fraction_matches(per_head[h], r->head_pruned[h], r->head_seen[h], r->head_near_t[h]))
            fail_msg("%s: head %lld pruned %.6f, float64 %lld of %lld (%lld near t)", what, (long long)h, per_head[h],
                     (long long)r->head_pruned[h], (long long)r->head_seen[h], (long long)r->head_near_t[h]);
    free(per_head);
}

typedef struct prune_case {
    const char *what;
    clsa_shape shape;
    clsa_method method; /* DENSE, MASK (a random caller mask) or SALE */
    float t;
    int bits;
    bool poison; /* a NaN in Q, an Inf in K and in V (clsa.h, "Non-finite values") */
} prune_case;

/* One element of a host tensor [B, heads, len, D] in the shape's layout. */
static void poison_host(const clsa_shape *s, void *host, clsa_tensor_strides st, int64_t heads, int64_t len,
                        int64_t h, int64_t t, int64_t c, float value)
{
    const ref_strides rs = ref_resolve(st, heads, len, s->head_dim);
    ref_store(host, s->dtype, h * rs.head + t * rs.token + c, value);
}

/* A NaN in a middle query row of head 0, an Inf in one of the last keys of the last KV head
   (causal: only the last rows see it), and an Inf in V of a key a third of the way in, seen by
   many rows, which reaches them even where its probability is pruned (0 x Inf). */
static void poison(const clsa_shape *s, harness_buffers *b)
{
    const int64_t D = s->head_dim, hk = s->kv_heads - 1;
    poison_host(s, b->hq, s->q_strides, s->q_heads, s->q_len, 0, s->q_len / 2, 1 % D, NAN);
    poison_host(s, b->hk, s->k_strides, s->kv_heads, s->kv_len, hk, s->kv_len - 3, 0, INFINITY);
    poison_host(s, b->hv, s->v_strides, s->kv_heads, s->kv_len, 0, s->kv_len / 3, D - 1, INFINITY);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->q, CL_TRUE, 0, b->q_bytes, b->hq, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->k, CL_TRUE, 0, b->k_bytes, b->hk, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, b->v, CL_TRUE, 0, b->v_bytes, b->hv, 0, NULL, NULL), CL_SUCCESS);
}

static void run_case(clsa_kernel_style style, const prune_case *pc, uint64_t stream)
{
    clsa_context *ctx = harness_context(style);
    clsa_shape s = pc->shape;
    s.value_prune = pc->t, s.value_bits = pc->bits;
    harness_buffers b;
    harness_llm_buffers(ctx, &s, stream, &b);
    if (pc->poison)
        poison(&s, &b);
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
        {"dense, prune 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-3f, 0, false},
        {"dense, 3 bits 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-3f, 3, false},
        {"dense, 1 bit 1e-2, not causal, f16", small_shape(2, 1, 150, 230, 24, CLSA_F16, 0), CLSA_METHOD_DENSE, 1e-2f, 1, false},
        {"dense, 8 bits 1e-4, causal Lq > Lk", small_shape(2, 2, 230, 150, 24, CLSA_F32, 1), CLSA_METHOD_DENSE, 1e-4f, 8, false},
        {"caller mask, 3 bits 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_MASK, 1e-3f, 3, false},
        {"caller mask, prune 5e-3, not causal, f16", small_shape(2, 2, 170, 200, 24, CLSA_F16, 0), CLSA_METHOD_MASK, 5e-3f, 0, false},
        {"SALE, 3 bits 1e-3, causal", small_shape(4, 2, 256, 256, 64, CLSA_F32, 1), CLSA_METHOD_SALE, 1e-3f, 3, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        run_case(style, &cases[i], 70 + i);
}

/* Non-finite inputs with pruning: a row that sees a NaN or Inf in Q or K is non-finite in every
   channel, one that sees an Inf in V in that channel (also where the key's p is pruned: 0 x Inf),
   every other row finite and as the reference; the pruned fractions count the NaN rows' keys as
   seen and not pruned. Dense and a caller mask, causal and not, f32 and f16. */
static void test_pruning_nonfinite(void **state)
{
    const clsa_kernel_style style = (clsa_kernel_style)(intptr_t)*state;
    const prune_case cases[] = {
        {"non-finite, dense, prune 1e-3, causal", small_shape(4, 2, 200, 200, 64, CLSA_F32, 1), CLSA_METHOD_DENSE,
         1e-3f, 0, true},
        {"non-finite, dense, 3 bits 1e-3, causal, f16", small_shape(2, 1, 150, 230, 24, CLSA_F16, 1),
         CLSA_METHOD_DENSE, 1e-3f, 3, true},
        {"non-finite, caller mask, 2 bits 1e-2, not causal", small_shape(2, 2, 170, 200, 40, CLSA_F32, 0),
         CLSA_METHOD_MASK, 1e-2f, 2, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        run_case(style, &cases[i], 80 + i);
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
        assert_true(fabs(ref_value_level(exp2(min_exp + (k + 0.5) * base), 1e-3, 3) - level) <= 1e-15);
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
    /* the message names the setting it refuses */
    assert_non_null(strstr(clsa_context_last_error(ctx), want == CLSA_ERR_INVALID_VALUE_BITS ? "value_bits" : "value_prune"));
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
        BOTH(test_pruning_nonfinite),
        cmocka_unit_test(test_published_levels),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

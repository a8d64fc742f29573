/*
 * The SALE pipeline and block-sparse attention against float64 host references:
 * quantization round trip and packing, the estimator against the same rule on the same int4 codes,
 * recall against the exact-score oracle on LLM-like data, sparse attention with all-ones, random
 * and empty masks, the one-call pipeline against the per-stage calls, and density.
 */
#include "harness.h"
#include "recall.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clsa_plan *make_plan(clsa_context *ctx, const clsa_shape *s, const clsa_sparsity *sp)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, s, sp, &plan);
    if (st)
        fail_msg("plan: %s", clsa_context_last_error(ctx));
    return plan;
}

static clsa_sparsity sale_settings(clsa_method method) { return recall_sparsity(method, harness_small); }

/* ---------------------------------------------------------------- quantization ---------- */

static int nibble(uint8_t byte, int high) { return (int8_t)(uint8_t)((high ? byte : (uint8_t)(byte << 4))) >> 4; }

static void check_quantization(clsa_context *ctx, clsa_shape s)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    harness_rng rng = harness_rng_make(11);
    harness_buffers b;
    harness_buffers_make(ctx, &s, &rng, &b);
    clsa_plan *plan = make_plan(ctx, &s, &sp);
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    assert_int_equal(clsa_quantize(plan, b.queue, b.q, b.k, ws, 0, NULL, NULL), CLSA_SUCCESS);
    assert_int_equal(clFinish(b.queue), CL_SUCCESS);
    clsa_quant_layout L;
    assert_int_equal(clsa_plan_quant_layout(plan, &L), CLSA_SUCCESS);
    const int64_t D = s.head_dim, CB = L.head_dim_even / 2, Lkp = L.kv_len_padded, G = s.q_heads / s.kv_heads;
    const int64_t bq = s.batch * s.q_heads, bk = s.batch * s.kv_heads;
    float *qmean = harness_read_buffer(b.queue, ws, L.q_mean, (size_t)(bq * D) * 4);
    float *kmean = harness_read_buffer(b.queue, ws, L.k_mean, (size_t)(bk * D) * 4);
    uint8_t *qcodes = harness_read_buffer(b.queue, ws, L.q_codes, (size_t)(bq * s.q_len * CB));
    const int64_t NG = L.groups;
    float *qscales = harness_read_buffer(b.queue, ws, L.q_scales, (size_t)(bq * s.q_len * NG) * 4);
    uint8_t *kcodes = harness_read_buffer(b.queue, ws, L.k_codes, (size_t)(bk * CB * Lkp));
    float *kscales = harness_read_buffer(b.queue, ws, L.k_scales, (size_t)(bk * NG * Lkp) * 4);
    float *corr = harness_read_buffer(b.queue, ws, L.k_correction, (size_t)(bq * Lkp) * 4);
    const int64_t GC = L.group_channels;
    assert_int_equal(NG, (D + GC - 1) / GC);
    const ref_strides qs = ref_resolve(s.q_strides, s.q_heads, s.q_len, D), ks = ref_resolve(s.k_strides, s.kv_heads, s.kv_len, D);
    double worst_mean = 0.0, worst_corr = 0.0;
    int64_t checked = 0;
    for (int side = 0; side < 2; ++side) {
        const int64_t H = side ? s.kv_heads : s.q_heads, len = side ? s.kv_len : s.q_len;
        const ref_strides st = side ? ks : qs;
        const void *x = side ? b.hk : b.hq;
        for (int64_t bb = 0; bb < s.batch; ++bb)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t bh = bb * H + h;
                const float *mean = (side ? kmean : qmean) + bh * D;
                for (int64_t c = 0; c < D; ++c) { /* the means, against float64 */
                    double m = 0.0;
                    for (int64_t t = 0; t < len; ++t)
                        m += ref_load(x, s.dtype, bb * st.batch + h * st.head + t * st.token + c);
                    m /= (double)len;
                    worst_mean = fmax(worst_mean, fabs(m - mean[c]));
                }
                for (int64_t t = 0; t < len; ++t) {
                    for (int64_t gr = 0; gr < NG; ++gr) { /* each group's scale is its max|x'| / 7 */
                        const float scale = side ? kscales[(bh * NG + gr) * Lkp + t] : qscales[(bh * s.q_len + t) * NG + gr];
                        double amax = 0.0;
                        for (int64_t c = gr * GC; c < D && c < gr * GC + GC; ++c)
                            amax = fmax(amax, fabs((double)(float)(ref_load(x, s.dtype, bb * st.batch + h * st.head + t * st.token + c) - mean[c])));
                        assert_true(fabs(scale - amax / 7.0) <= 1e-6 * amax + 1e-30);
                    }
                    for (int64_t c = 0; c < L.head_dim_even; ++c) {
                        const float scale = side ? kscales[(bh * NG + c / GC) * Lkp + t] : qscales[(bh * s.q_len + t) * NG + c / GC];
                        const uint8_t byte = side ? kcodes[(bh * CB + c / 2) * Lkp + t] : qcodes[(bh * s.q_len + t) * CB + c / 2];
                        const int code = nibble(byte, (int)(c & 1));
                        assert_true(code >= -7 && code <= 7);
                        if (c >= D) { /* the padding nibble of an odd head_dim */
                            assert_int_equal(code, 0);
                            continue;
                        }
                        const double xs = (float)(ref_load(x, s.dtype, bb * st.batch + h * st.head + t * st.token + c) - mean[c]);
                        if (fabs(xs - code * (double)scale) > 0.5 * scale * (1 + 1e-5) + 1e-30)
                            fail_msg("%s b%lld h%lld t%lld c%lld: x' = %g, code %d x scale %g: off by more than scale/2 (seed %llu)",
                                     side ? "k" : "q", (long long)bb, (long long)h, (long long)t, (long long)c, xs, code,
                                     scale, (unsigned long long)harness_seed);
                        ++checked;
                    }
                }
                if (side) { /* corrections and padding of the keys */
                    for (int64_t g = 0; g < G; ++g) {
                        const int64_t hq = h * G + g;
                        for (int64_t t = 0; t < Lkp; ++t) {
                            const float got = corr[(bb * s.q_heads + hq) * Lkp + t];
                            if (t >= len) {
                                assert_true(got == 0.0f);
                                continue;
                            }
                            double want = 0.0, mag = 0.0;
                            for (int64_t c = 0; c < D; ++c) {
                                const double kp = (float)(ref_load(x, s.dtype, bb * st.batch + h * st.head + t * st.token + c) - mean[c]);
                                want += qmean[(bb * s.q_heads + hq) * D + c] * kp;
                                mag += fabs(qmean[(bb * s.q_heads + hq) * D + c] * kp);
                            }
                            worst_corr = fmax(worst_corr, fabs(got - want) / (mag + 1e-30));
                        }
                    }
                    for (int64_t t = len; t < Lkp; ++t) {
                        for (int64_t gr = 0; gr < NG; ++gr)
                            assert_true(kscales[(bh * NG + gr) * Lkp + t] == 0.0f);
                        for (int64_t p = 0; p < CB; ++p)
                            assert_int_equal(kcodes[(bh * CB + p) * Lkp + t], 0);
                    }
                }
            }
    }
    printf("# quantize D%lld %s: %lld codes within scale/2, mean err %.2g, corr rel err %.2g\n", (long long)D,
           harness_dtype_name(s.dtype), (long long)checked, worst_mean, worst_corr);
    assert_true(worst_mean <= 1e-5);
    assert_true(worst_corr <= 1e-5);
    /* The estimator's paired key codes: channel c of keys j and j + 16 of each 32-key chunk as
       code_j + 2048 * code_{j+16}, exactly, and 0 on the channels past the codes; chunk-major,
       the chunk's channels of 16 pairs each one after another. */
    const int64_t PC = NG * GC, half = Lkp / 2;
    float *pairs = harness_read_buffer(b.queue, ws, L.k_pairs, (size_t)(bk * PC * half) * 4);
    for (int64_t bh = 0; bh < bk; ++bh)
        for (int64_t c = 0; c < PC; ++c)
            for (int64_t u = 0; u < half; ++u) {
                const int64_t j = u / 16 * 32 + u % 16;
                const float want = c >= L.head_dim_even ? 0.0f
                                   : (float)nibble(kcodes[(bh * CB + c / 2) * Lkp + j], (int)(c & 1)) +
                                         2048.0f * (float)nibble(kcodes[(bh * CB + c / 2) * Lkp + j + 16], (int)(c & 1));
                const float got = pairs[bh * PC * half + ((u / 16) * PC + c) * 16 + u % 16];
                if (got != want)
                    fail_msg("k pairs head %lld channel %lld lane %lld: %g, want %g", (long long)bh, (long long)c,
                             (long long)u, (double)got, (double)want);
            }
    free(pairs);
    free(qmean), free(kmean), free(qcodes), free(qscales), free(kcodes), free(kscales), free(corr);
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
}

/* Both quantizer variants (the GPU one with and without sub-group sums where the device has them). */
static void test_quantize(void **state)
{
    (void)state;
    const char *variants[3] = {"quantize=cpu", "quantize=gpu,subgroups=0", "quantize=gpu,subgroups=1"};
    clsa_context *probe = harness_context(CLSA_STYLE_AUTO);
    const int n = clsa_context_device_info(probe)->has_subgroups ? 3 : 2;
    clsa_context_release(probe);
    for (int v = 0; v < n; ++v) {
        printf("# quantizer %s\n", variants[v]);
        clsa_context *ctx = harness_tuned_context(CLSA_STYLE_AUTO, variants[v]);
        const int64_t L = harness_small ? 20 : 300;
        clsa_shape s = clsa_shape_make(2, 4, 2, L, L + 37, 64, CLSA_F32, 1);
        check_quantization(ctx, s);
        s = clsa_shape_make(1, 2, 1, L, L, 7, CLSA_F16, 0); /* odd head_dim: a padding nibble */
        check_quantization(ctx, s);
        s = clsa_shape_make(1, 3, 1, L, L, 128, CLSA_BF16, 1);
        s.q_strides = clsa_strides_blhd(L, 3, 128);
        s.k_strides = clsa_strides_blhd(L, 1, 128);
        check_quantization(ctx, s);
        clsa_context_release(ctx);
    }
}

/* ---------------------------------------------------------------- estimation ------------ */

/* The device's int4 codes, scales, means and corrections, unpacked into the host reference's form
   so that ref_int4_score scores them with the float64 rule. */
static void device_codes(cl_command_queue queue, cl_mem ws, const clsa_plan *plan, const void *hq, ref_int4 *out)
{
    const clsa_shape *s = clsa_plan_shape(plan);
    clsa_quant_layout L;
    assert_int_equal(clsa_plan_quant_layout(plan, &L), CLSA_SUCCESS);
    assert_true(ref_int4_alloc(s, hq, L.group_channels, out));
    const int64_t bq = s->batch * s->q_heads, bk = s->batch * s->kv_heads, CB = L.head_dim_even / 2;
    const int64_t D = s->head_dim, G = L.groups, Lkp = L.kv_len_padded, Lq = s->q_len, Lk = s->kv_len;
    uint8_t *qcodes = harness_read_buffer(queue, ws, L.q_codes, (size_t)(bq * Lq * CB));
    uint8_t *kcodes = harness_read_buffer(queue, ws, L.k_codes, (size_t)(bk * CB * Lkp));
    float *kscales = harness_read_buffer(queue, ws, L.k_scales, (size_t)(bk * G * Lkp) * 4);
    float *corr = harness_read_buffer(queue, ws, L.k_correction, (size_t)(bq * Lkp) * 4);
    free(out->q_scales), free(out->k_mean); /* these two have the device's layout already */
    out->q_scales = harness_read_buffer(queue, ws, L.q_scales, (size_t)(bq * Lq * G) * 4);
    out->k_mean = harness_read_buffer(queue, ws, L.k_mean, (size_t)(bk * D) * 4);
    for (int64_t r = 0; r < bq * Lq; ++r) /* q codes: [bq][Lq][byte], row-major */
        for (int64_t c = 0; c < D; ++c)
            out->q_codes[r * D + c] = (int8_t)nibble(qcodes[r * CB + c / 2], (int)(c & 1));
    for (int64_t h = 0; h < bk; ++h) /* k codes and scales: transposed, [bk][byte or group][Lkp] */
        for (int64_t j = 0; j < Lk; ++j) {
            for (int64_t c = 0; c < D; ++c)
                out->k_codes[(h * Lk + j) * D + c] = (int8_t)nibble(kcodes[(h * CB + c / 2) * Lkp + j], (int)(c & 1));
            for (int64_t g = 0; g < G; ++g)
                out->k_scales[(h * Lk + j) * G + g] = kscales[(h * G + g) * Lkp + j];
        }
    for (int64_t h = 0; h < bq; ++h)
        memcpy(out->correction + h * Lk, corr + h * Lkp, sizeof(float) * (size_t)Lk);
    free(qcodes), free(kcodes), free(kscales), free(corr);
    ref_int4_row_terms(out);
}

/* Runs one SALE (or SALE_EXACT) plan on LLM-like data; returns its mask as a bitmap. */
static uint8_t *device_mask(clsa_context *ctx, const clsa_shape *s, const clsa_sparsity *sp, harness_buffers *b,
                            ref_int4 *codes_out, cl_mem *ws_out, clsa_plan **plan_out)
{
    clsa_plan *plan = make_plan(ctx, s, sp);
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    if (sp->method == CLSA_METHOD_SALE)
        assert_int_equal(clsa_quantize(plan, b->queue, b->q, b->k, ws, 0, NULL, NULL), CLSA_SUCCESS);
    clsa_status st = clsa_estimate_mask(plan, b->queue, b->q, b->k, ws, NULL, 0, NULL, NULL);
    if (st)
        fail_msg("estimate: %s", clsa_context_last_error(ctx));
    assert_int_equal(clFinish(b->queue), CL_SUCCESS);
    uint8_t *bitmap = harness_workspace_bitmap(b->queue, plan, ws);
    if (codes_out)
        device_codes(b->queue, ws, plan, b->hq, codes_out);
    if (ws_out)
        *ws_out = ws;
    else
        clReleaseMemObject(ws);
    if (plan_out)
        *plan_out = plan;
    else
        clsa_plan_release(plan);
    return bitmap;
}

/* Two masks agree except where the host's margin is a tie (|margin| within tie). */
static int64_t disagreements(const uint8_t *got, const uint8_t *want, const double *margin, int64_t n, double tie,
                             int64_t *ties)
{
    int64_t bad = 0;
    *ties = 0;
    for (int64_t e = 0; e < n; ++e)
        if (got[e] != want[e]) {
            if (fabs(margin[e]) <= tie)
                ++*ties;
            else
                ++bad;
        }
    return bad;
}

/* Tie window, in log2 score units: the 1e-6. The int4 sums are exact on both sides; the
   f32 scale products, corrections and row statistics have so far stayed inside it. */
#define TIE 1e-6

/* Checks the device's SALE mask against the host rule on the device's own codes; returns how many
   blocks the exact second look added to the int4 rule's. */
static int64_t check_estimate_on(clsa_context *ctx, clsa_shape s, clsa_sparsity sp, uint64_t stream, bool llm)
{
    harness_buffers b;
    if (llm)
        harness_llm_buffers(ctx, &s, stream, &b);
    else {
        harness_rng rng = harness_rng_make(stream);
        harness_buffers_make(ctx, &s, &rng, &b);
    }
    ref_int4 codes;
    clsa_plan *plan = NULL;
    uint8_t *got = device_mask(ctx, &s, &sp, &b, &codes, NULL, &plan);
    const clsa_shape *ps = clsa_plan_shape(plan);
    float tau[64];
    for (int64_t h = 0; h < s.q_heads; ++h)
        tau[h] = sp.tau_per_head ? sp.tau_per_head[h] : sp.tau;
    /* The device's mask is the int4 rule plus the exact second look (clsa.h, rule 5). */
    ref_exact_scores exact = {ps, b.hq, b.hk};
    ref_sale p = {tau, sp.sink_tokens, sp.local_tokens, sp.block_q, sp.block_k,
                  sp.refine_nats * 1.4426950408889634, ref_exact_score, &exact};
    double *thr = malloc(sizeof(double) * (size_t)(s.batch * s.q_heads * s.q_len));
    ref_sale_thresholds(ps, b.hq, b.hk, &p, thr);
    clsa_mask_geometry g;
    clsa_plan_mask_geometry(plan, &g);
    const int64_t n = g.rows * g.num_k_blocks;
    uint8_t *want = malloc((size_t)n);
    double *margin = malloc(sizeof(double) * (size_t)n);
    ref_sale_mask(ps, &p, thr, ref_int4_score, &codes, want, margin);
    uint8_t *int4_only = malloc((size_t)n);
    ref_sale plain = p;
    plain.refine_log2 = 0.0;
    ref_sale_mask(ps, &plain, thr, ref_int4_score, &codes, int4_only, NULL);
    int64_t ties = 0, kept = 0, added = 0;
    const int64_t bad = disagreements(got, want, margin, n, TIE, &ties);
    for (int64_t e = 0; e < n; ++e)
        kept += want[e], added += want[e] && !int4_only[e];
    free(int4_only);
    printf("# estimate B%lld H%lld/%lld L%lld/%lld D%lld %s blocks %dx%d tau %g refine %g: %lld/%lld blocks kept (%lld by the second look), %lld ties, %lld disagreements\n",
           (long long)s.batch, (long long)s.q_heads, (long long)s.kv_heads, (long long)s.q_len, (long long)s.kv_len,
           (long long)s.head_dim, s.causal ? "causal" : "full", sp.block_q, sp.block_k, (double)sp.tau,
           (double)sp.refine_nats, (long long)kept,
           (long long)n, (long long)added, (long long)ties, (long long)bad);
    if (bad)
        fail_msg("the estimator disagrees with the float64 rule on the same codes (seed %llu)", (unsigned long long)harness_seed);
    free(thr), free(want), free(margin), free(got);
    ref_int4_free(&codes);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    return added;
}

static int64_t check_estimate(clsa_context *ctx, clsa_shape s, clsa_sparsity sp, uint64_t stream)
{
    return check_estimate_on(ctx, s, sp, stream, true);
}

/* The estimator variants this device can run, as tuning keys: the CPU variant, the GPU variant
   with plain integer arithmetic, and where the device has them, with packed integer dot products
   and with sub-group reductions. Returns how many. */
static int estimator_variants(const char *out[4])
{
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const clsa_device_info *info = clsa_context_device_info(ctx);
    int n = 0;
    out[n++] = "estimate=cpu";
    out[n++] = "estimate=gpu,int_dot=0,subgroups=0";
    if (info->integer_dot_product & CLSA_INT_DOT_4X8_PACKED)
        out[n++] = "estimate=gpu,int_dot=1,subgroups=0";
    if (info->has_subgroups)
        out[n++] = "estimate=gpu,int_dot=0,subgroups=1";
    clsa_context_release(ctx);
    return n;
}

/* One estimator variant against the float64 rule on the device's own codes. */
static void estimate_cases(clsa_context *ctx)
{
    clsa_sparsity sp = sale_settings(CLSA_METHOD_SALE);
    const int64_t L = harness_small ? 80 : 700;
    if (!harness_small)
        sp.local_tokens = 64;
    check_estimate(ctx, clsa_shape_make(1, 4, 2, L, L, 64, CLSA_F32, 1), sp, 21);
    sp.block_q = 32, sp.block_k = 64;
    check_estimate(ctx, clsa_shape_make(1, 2, 1, L / 2, L, 80, CLSA_F16, 1), sp, 22);
    check_estimate(ctx, clsa_shape_make(2, 2, 2, L, L / 2 + 3, 33, CLSA_BF16, 0), sp, 23);
    const float taus[4] = {0.0f, 0.02f, 1e-6f, 0.004f}; /* dense heads among sparse ones */
    sp.tau_per_head = taus;
    sp.block_q = 128, sp.block_k = 16;
    check_estimate(ctx, clsa_shape_make(1, 4, 1, L, L, 128, CLSA_F32, 1), sp, 24);
    /* Rows with no sink or local key take their highest estimate as the reference: every row
       causally (sink 0, local 0), and the rows far from the diagonal when q_len > kv_len. */
    sp.tau_per_head = NULL;
    sp.sink_tokens = 0, sp.local_tokens = 0, sp.block_q = 64, sp.block_k = 32;
    check_estimate(ctx, clsa_shape_make(1, 2, 1, L, L, 64, CLSA_F32, 1), sp, 25);
    sp.local_tokens = 16, sp.block_q = 16, sp.block_k = 16;
    check_estimate(ctx, clsa_shape_make(1, 2, 2, 2 * L, L / 2, 64, CLSA_F16, 0), sp, 26);
    /* The exact second look off (SALE's rule alone), and where it must decide blocks: on random
       data at head_dim 256 with scale 1 the int4 estimates drop many blocks that exact scores
       keep, and a device that skipped the second look would disagree on all of them. */
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.refine_nats = 0.0f;
    assert_int_equal(check_estimate(ctx, clsa_shape_make(1, 4, 2, L, L, 64, CLSA_F32, 1), sp, 27), 0);
    sp.refine_nats = 1.0f, sp.tau = 200.0f, sp.block_q = 16, sp.block_k = 16;
    clsa_shape spread = clsa_shape_make(1, 4, 1, L, L, 256, CLSA_BF16, 1);
    spread.scale = 1.0f; /* scores of random data spread over several nats, and tau 200 with 16 x 16 blocks drops many */
    const int64_t added = check_estimate_on(ctx, spread, sp, 28, false);
    if (added == 0 && !harness_small) /* 80 tokens leave too few blocks to count on one */
        fail_msg("the second look added no block at 3 nats (seed %llu)", (unsigned long long)harness_seed);
}

static void test_estimate_matches_host(void **state)
{
    (void)state;
    const char *variants[4];
    const int n = estimator_variants(variants);
    for (int i = 0; i < n; ++i) {
        printf("# estimator %s\n", variants[i]);
        clsa_context *ctx = harness_tuned_context(CLSA_STYLE_AUTO, variants[i]);
        estimate_cases(ctx);
        clsa_context_release(ctx);
    }
}

/* The integer sums are exact and the f32 operations after them the same, so every integer variant
   of the estimator gives the same mask, bit for bit, on the same inputs: LLM-like data with GQA,
   an odd head_dim in bf16 without causality, rows that need their reference estimate (sink and
   local 0; and rows far from the diagonal when q_len > kv_len), and random data where the exact
   second look decides many blocks. */
static void test_integer_variants_identical(void **state)
{
    (void)state;
    const char *variants[4];
    const int n = estimator_variants(variants);
    clsa_context *base = harness_context(CLSA_STYLE_AUTO);
    const int64_t L = harness_small ? 80 : 600;
    struct { clsa_shape shape; int block_q, block_k, sink, local; float tau, refine, scale; bool llm; } cases[5] = {
        {clsa_shape_make(1, 4, 2, L, L, 64, CLSA_F32, 1), 64, 32, 32, 64, 0.004f, 0.5f, 0.0f, true},
        {clsa_shape_make(2, 2, 2, L, L / 2 + 3, 33, CLSA_BF16, 0), 32, 64, 32, 64, 0.004f, 0.5f, 0.0f, true},
        {clsa_shape_make(1, 2, 1, L, L, 64, CLSA_F16, 1), 64, 32, 0, 0, 0.004f, 0.5f, 0.0f, true},
        {clsa_shape_make(1, 4, 1, L, L, 256, CLSA_BF16, 1), 16, 16, 32, 256, 200.0f, 1.0f, 1.0f, false},
        {clsa_shape_make(1, 2, 2, 2 * L, L / 2, 64, CLSA_F16, 0), 16, 16, 0, 16, 0.004f, 2.0f, 0.0f, true},
    };
    for (int c = 0; c < 5; ++c) {
        clsa_shape s = cases[c].shape;
        s.scale = cases[c].scale;
        clsa_sparsity sp;
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        sp.block_q = cases[c].block_q, sp.block_k = cases[c].block_k, sp.sink_tokens = cases[c].sink;
        sp.local_tokens = cases[c].local, sp.tau = cases[c].tau, sp.refine_nats = cases[c].refine;
        harness_buffers b;
        if (cases[c].llm)
            harness_llm_buffers(base, &s, 40 + (uint64_t)c, &b);
        else {
            harness_rng rng = harness_rng_make(40 + (uint64_t)c);
            harness_buffers_make(base, &s, &rng, &b);
        }
        uint8_t *first = NULL;
        for (int v = 0; v < n; ++v) {
            clsa_context_options opt = {0};
            opt.tuning = variants[v];
            clsa_context *ctx = NULL;
            assert_int_equal(clsa_context_create(clsa_context_cl_context(base), clsa_context_device(base), &opt, &ctx),
                             CLSA_SUCCESS);
            clsa_plan *plan = NULL;
            uint8_t *got = device_mask(ctx, &s, &sp, &b, NULL, NULL, &plan);
            clsa_mask_geometry g;
            clsa_plan_mask_geometry(plan, &g);
            const size_t bytes = (size_t)(g.rows * g.num_k_blocks);
            int64_t kept = 0, differ = 0;
            for (size_t e = 0; e < bytes; ++e)
                kept += got[e], differ += first && got[e] != first[e];
            printf("# case %d, %s: %lld of %zu blocks kept, %lld differ from %s\n", c, variants[v], (long long)kept,
                   bytes, (long long)differ, variants[0]);
            if (differ)
                fail_msg("estimator variant %s differs from %s in %lld blocks (case %d, seed %llu)", variants[v],
                         variants[0], (long long)differ, c, (unsigned long long)harness_seed);
            if (!first)
                first = got;
            else
                free(got);
            clsa_plan_release(plan);
            clsa_context_release(ctx);
        }
        free(first);
        harness_buffers_release(&b);
    }
    clsa_context_release(base);
}

/* Recall of SALE's mask against the oracle (the rule on exact scores) on LLM-like data, and the
   device oracle against the host oracle. The shape and the bound are tests/recall.c's, checked
   over 1,000 seeds by `recall-seeds` (tests/README.md). */
static void test_recall_vs_oracle(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    clsa_shape s = recall_shape(harness_small);
    const int64_t L = s.q_len;
    clsa_sparsity sp = sale_settings(CLSA_METHOD_SALE);
    harness_buffers b;
    harness_llm_buffers(ctx, &s, RECALL_DATA_STREAM, &b);
    uint8_t *sale = device_mask(ctx, &s, &sp, &b, NULL, NULL, NULL);
    clsa_sparsity exact = sale_settings(CLSA_METHOD_SALE_EXACT);
    uint8_t *oracle_dev = device_mask(ctx, &s, &exact, &b, NULL, NULL, NULL);

    float tau[4] = {sp.tau, sp.tau, sp.tau, sp.tau};
    ref_sale p = {tau, sp.sink_tokens, sp.local_tokens, sp.block_q, sp.block_k, 0.0, NULL, NULL}; /* the oracle */
    clsa_shape ps = s;
    ps.scale = (float)(1.0 / sqrt((double)s.head_dim));
    double *thr = malloc(sizeof(double) * (size_t)(s.batch * s.q_heads * L));
    ref_sale_thresholds(&ps, b.hq, b.hk, &p, thr);
    const int64_t nqb = (L + sp.block_q - 1) / sp.block_q, nkb = (L + sp.block_k - 1) / sp.block_k;
    const int64_t n = s.batch * s.q_heads * nqb * nkb;
    uint8_t *oracle = malloc((size_t)n);
    double *margin = malloc(sizeof(double) * (size_t)n);
    ref_exact_scores e = {&ps, b.hq, b.hk};
    ref_sale_mask(&ps, &p, thr, ref_exact_score, &e, oracle, margin);
    int64_t ties = 0, valid = 0;
    const int64_t bad = disagreements(oracle_dev, oracle, margin, n, TIE, &ties);
    const recall_tally t = recall_count(sale, oracle, n);
    for (int64_t qb = 0; qb < nqb; ++qb)
        valid += s.batch * s.q_heads * ((qb + 1) * sp.block_q - 1 < L ? ((qb + 1) * sp.block_q - 1) / sp.block_k + 1 : nkb);
    printf("# L%lld tau %g: oracle keeps %lld, SALE %lld of %lld valid blocks (density %.3f); recall %.4f "
           "(%lld misses, %lld allowed); device oracle: %lld ties, %lld disagreements\n",
           (long long)L, (double)sp.tau, (long long)t.in_oracle, (long long)t.in_sale, (long long)valid,
           (double)t.in_sale / (double)valid, recall_value(t), (long long)(t.in_oracle - t.found),
           (long long)recall_allowed_misses(t.in_oracle), (long long)ties, (long long)bad);
    assert_int_equal(bad, 0);
    if (!recall_passes(t))
        fail_msg("recall %.4f < 0.99 (seed %llu)", recall_value(t), (unsigned long long)harness_seed);
    free(sale), free(oracle_dev), free(oracle), free(margin), free(thr);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

/* ---------------------------------------------------------------- sparse attention ------ */

/* Runs a MASK plan with a host bitmap and returns the max rel error against the float64 masked
   reference; optionally compares with the dense plan's output (rel_to_dense). */
static double masked_error(clsa_context *ctx, const clsa_shape *s, int block_q, int block_k, const uint8_t *bitmap,
                           uint64_t stream, double *rel_to_dense)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_MASK);
    sp.block_q = block_q, sp.block_k = block_k;
    harness_rng rng = harness_rng_make(stream);
    harness_buffers b;
    harness_buffers_make(ctx, s, &rng, &b);
    clsa_plan *plan = make_plan(ctx, s, &sp);
    clsa_mask_geometry g;
    clsa_plan_mask_geometry(plan, &g);
    int32_t *counts = malloc(g.counts_bytes), *indices = malloc(g.indices_bytes);
    assert_int_equal(clsa_mask_from_bitmap(bitmap, g.rows, g.num_k_blocks, counts, indices), CLSA_SUCCESS);
    clsa_block_mask m = {harness_new_buffer(ctx, g.counts_bytes, counts), 0, harness_new_buffer(ctx, g.indices_bytes, indices), 0};
    clsa_status st = clsa_attention_masked(plan, b.queue, b.q, b.k, b.v, b.o, NULL, &m, CLSA_MASK_CHECK, 0, NULL, NULL);
    if (st)
        fail_msg("masked: %s", clsa_context_last_error(ctx));
    harness_read_o(&b);
    const clsa_shape *ps = clsa_plan_shape(plan);
    const int64_t no = s->batch * s->q_heads * s->q_len * s->head_dim;
    double *want = malloc(sizeof(double) * (size_t)no);
    ref_attention(ps, b.hq, b.hk, b.hv, bitmap, block_q, block_k, want);
    const double err = ref_max_rel_error(ps, b.ho, want);
    if (rel_to_dense) {
        clsa_plan *dense = make_plan(ctx, s, NULL);
        cl_mem od = harness_new_buffer(ctx, b.o_bytes, NULL);
        assert_int_equal(clsa_attention(dense, b.queue, b.q, b.k, b.v, od, NULL, 0, NULL, NULL), CLSA_SUCCESS);
        void *hd = harness_read_buffer(b.queue, od, 0, b.o_bytes);
        double max_diff = 0.0, max_ref = 0.0;
        const ref_strides os = ref_resolve(s->o_strides, s->q_heads, s->q_len, s->head_dim);
        for (int64_t bb = 0; bb < s->batch; ++bb)
            for (int64_t h = 0; h < s->q_heads; ++h)
                for (int64_t i = 0; i < s->q_len; ++i)
                    for (int64_t c = 0; c < s->head_dim; ++c) {
                        const int64_t at = bb * os.batch + h * os.head + i * os.token + c;
                        const double x = ref_load(b.ho, s->dtype, at), y = ref_load(hd, s->dtype, at);
                        max_diff = fmax(max_diff, isnan(x - y) ? INFINITY : fabs(x - y));
                        max_ref = fmax(max_ref, fabs(y));
                    }
        *rel_to_dense = max_ref > 0 ? max_diff / max_ref : max_diff;
        free(hd);
        clReleaseMemObject(od);
        clsa_plan_release(dense);
    }
    free(want), free(counts), free(indices);
    clReleaseMemObject(m.counts);
    clReleaseMemObject(m.indices);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    return err;
}

static uint8_t *make_bitmap(const clsa_shape *s, int bq, int bk, double keep, uint64_t stream)
{
    const int64_t rows = s->batch * s->q_heads * ((s->q_len + bq - 1) / bq), nkb = (s->kv_len + bk - 1) / bk;
    uint8_t *bm = malloc((size_t)(rows * nkb));
    harness_rng r = harness_rng_make(stream);
    for (int64_t e = 0; e < rows * nkb; ++e)
        bm[e] = harness_uniform(&r) < keep;
    return bm;
}

typedef struct mask_case {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
    clsa_dtype dtype;
    int causal, blhd, block_q, block_k;
} mask_case;

static clsa_shape case_shape(const mask_case *c)
{
    clsa_shape s = clsa_shape_make(c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, c->head_dim, c->dtype, c->causal);
    if (c->blhd) {
        s.q_strides = s.o_strides = clsa_strides_blhd(c->q_len, c->q_heads, c->head_dim);
        s.k_strides = s.v_strides = clsa_strides_blhd(c->kv_len, c->kv_heads, c->head_dim);
    }
    return s;
}

static const mask_case mask_cases[] = {
    {1, 2, 1, 300, 300, 64, CLSA_F32, 1, 0, 64, 32},   {2, 4, 2, 200, 260, 80, CLSA_F32, 1, 1, 16, 16},
    {1, 2, 2, 260, 200, 128, CLSA_F16, 1, 0, 32, 128}, {1, 4, 1, 150, 150, 7, CLSA_BF16, 0, 1, 128, 64},
    {1, 1, 1, 100, 100, 256, CLSA_F32, 1, 0, 16, 32},
};
static const mask_case mask_cases_small[] = {
    {1, 2, 1, 40, 40, 16, CLSA_F32, 1, 0, 16, 16}, {1, 2, 2, 33, 20, 7, CLSA_F16, 1, 1, 16, 32},
    {1, 1, 1, 20, 30, 8, CLSA_BF16, 0, 0, 32, 16},
};

static void test_masked(void **state)
{
    clsa_context *ctx = harness_context((clsa_kernel_style)(intptr_t)*state);
    const mask_case *cases = harness_small ? mask_cases_small : mask_cases;
    const size_t n = harness_small ? sizeof mask_cases_small / sizeof mask_cases_small[0]
                                   : sizeof mask_cases / sizeof mask_cases[0];
    for (size_t i = 0; i < n; ++i) {
        const mask_case *c = &cases[i];
        const clsa_shape s = case_shape(c);
        const double tol = harness_tolerance(c->dtype);
        /* All-ones: equals dense (same arithmetic order, so within 1e-6 of dense). */
        uint8_t *ones = make_bitmap(&s, c->block_q, c->block_k, 2.0, 0);
        double to_dense = 0.0;
        double err = masked_error(ctx, &s, c->block_q, c->block_k, ones, 100 + i, &to_dense);
        printf("# case %zu all-ones: err %.3g, vs dense %.3g\n", i, err, to_dense);
        assert_true(err <= tol);
        assert_true(to_dense <= (c->dtype == CLSA_F32 ? 1e-6 : tol));
        free(ones);
        /* Random masks, including empty rows (keep 0.0: every row empty, zeros everywhere). */
        const double keeps[3] = {0.3, 0.05, 0.0};
        for (int k = 0; k < 3; ++k) {
            uint8_t *bm = make_bitmap(&s, c->block_q, c->block_k, keeps[k], 200 + i * 3 + (uint64_t)k);
            err = masked_error(ctx, &s, c->block_q, c->block_k, bm, 300 + i, NULL);
            printf("# case %zu random mask keep %.2f: err %.3g (tol %.3g)\n", i, keeps[k], err, tol);
            if (!(err <= tol))
                fail_msg("masked attention error %.3g > %.3g (seed %llu)", err, tol, (unsigned long long)harness_seed);
            free(bm);
        }
    }
    clsa_context_release(ctx);
}

/* The one call equals the three stage calls, and the output is exact for the mask it used. */
static void test_pipeline(void **state)
{
    clsa_context *ctx = harness_context((clsa_kernel_style)(intptr_t)*state);
    const int64_t L = harness_small ? 48 : 1024;
    clsa_shape s = clsa_shape_make(1, 4, 2, L, L, harness_small ? 16 : 64, CLSA_F32, 1);
    clsa_sparsity sp = sale_settings(CLSA_METHOD_SALE);
    harness_buffers b;
    harness_llm_buffers(ctx, &s, 41, &b);
    clsa_plan *plan = make_plan(ctx, &s, &sp);
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    cl_event done = NULL;
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, ws, 0, NULL, &done), CLSA_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    harness_read_o(&b);
    void *one_call = malloc(b.o_bytes);
    memcpy(one_call, b.ho, b.o_bytes);

    clsa_mask_geometry g;
    clsa_plan_mask_geometry(plan, &g);
    clsa_block_mask m;
    clsa_plan_workspace_mask(plan, ws, &m);
    int32_t *counts = harness_read_buffer(b.queue, ws, m.counts_offset, g.counts_bytes);
    int32_t *indices = harness_read_buffer(b.queue, ws, m.indices_offset, g.indices_bytes);
    uint8_t *bitmap = malloc((size_t)(g.rows * g.num_k_blocks));
    assert_int_equal(clsa_mask_to_bitmap(counts, indices, g.rows, g.num_k_blocks, bitmap), CLSA_SUCCESS);
    double density[4];
    assert_int_equal(clsa_mask_density(plan, b.queue, ws, NULL, density), CLSA_SUCCESS);
    printf("# pipeline L%lld: density per head %.3f %.3f %.3f %.3f\n", (long long)L, density[0], density[1],
           density[2], density[3]);
    for (int h = 0; h < 4; ++h)
        assert_true(density[h] > 0.0 && density[h] <= 1.0);

    double *want = malloc(sizeof(double) * (size_t)(4 * L * s.head_dim));
    ref_attention(clsa_plan_shape(plan), b.hq, b.hk, b.hv, bitmap, sp.block_q, sp.block_k, want);
    const double err = ref_max_rel_error(clsa_plan_shape(plan), one_call, want);
    printf("# pipeline output vs float64 masked reference: %.3g\n", err);
    assert_true(err <= 1e-5);

    /* The stages one by one, into a fresh workspace and output. */
    cl_mem ws2 = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    cl_event e1 = NULL, e2 = NULL;
    memset(b.ho, 0xFF, b.o_bytes);
    assert_int_equal(clEnqueueWriteBuffer(b.queue, b.o, CL_TRUE, 0, b.o_bytes, b.ho, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clsa_quantize(plan, b.queue, b.q, b.k, ws2, 0, NULL, &e1), CLSA_SUCCESS);
    assert_int_equal(clsa_estimate_mask(plan, b.queue, b.q, b.k, ws2, NULL, 1, &e1, &e2), CLSA_SUCCESS);
    assert_int_equal(clsa_attention_masked(plan, b.queue, b.q, b.k, b.v, b.o, ws2, NULL, CLSA_MASK_CHECK, 1, &e2, NULL),
                     CLSA_SUCCESS);
    clReleaseEvent(e1), clReleaseEvent(e2);
    harness_read_o(&b);
    assert_memory_equal(b.ho, one_call, b.o_bytes);

    free(one_call), free(counts), free(indices), free(bitmap), free(want);
    clReleaseMemObject(ws), clReleaseMemObject(ws2);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

/* ---------------------------------------------------------------- bad inputs ------------ */

static void expect_plan(clsa_context *ctx, const clsa_shape *s, const clsa_sparsity *sp, clsa_status want)
{
    clsa_plan *plan = (clsa_plan *)0x1;
    clsa_status st = clsa_plan_create(ctx, s, sp, &plan);
    printf("# %s\n", clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_null(plan);
}

static void test_bad_sparsity(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    clsa_sparsity sp;
    const float bad_taus[3] = {-0.1f, NAN, INFINITY};
    for (int i = 0; i < 3; ++i) {
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        sp.tau = bad_taus[i];
        expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_TAU);
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        const float per_head[2] = {0.004f, bad_taus[i]};
        sp.tau_per_head = per_head;
        expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_TAU);
    }
    const int32_t bad_blocks[5] = {0, 8, 48, 256, -64};
    for (int i = 0; i < 5; ++i) {
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        sp.block_q = bad_blocks[i];
        expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_BLOCK_SIZE);
        clsa_sparsity_init(&sp, CLSA_METHOD_MASK);
        sp.block_k = bad_blocks[i];
        expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_BLOCK_SIZE);
    }
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.sink_tokens = -1;
    expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_TOKENS);
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.local_tokens = -5;
    expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_TOKENS);
    const float bad_refine[3] = {-0.25f, 16.5f, NAN};
    for (int i = 0; i < 3; ++i) {
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        sp.refine_nats = bad_refine[i];
        expect_plan(ctx, &s, &sp, CLSA_ERR_INVALID_REFINE);
    }
    clsa_context_release(ctx);
}

/* A masked call with this mask fails with `want` and leaves the poisoned output as it was. */
static void expect_mask_error(clsa_context *ctx, clsa_plan *plan, harness_buffers *b, const clsa_block_mask *m,
                              clsa_mask_check check, clsa_status want)
{
    clsa_status st = clsa_attention_masked(plan, b->queue, b->q, b->k, b->v, b->o, NULL, m, check, 0, NULL, NULL);
    printf("# %s\n", clsa_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_int_equal(clFinish(b->queue), CL_SUCCESS);
    uint8_t *now = harness_read_buffer(b->queue, b->o, 0, b->o_bytes);
    for (size_t i = 0; i < b->o_bytes; ++i)
        if (now[i] != 0xFF)
            fail_msg("a failing masked call wrote output byte %zu", i);
    free(now);
}

/* Offsets near SIZE_MAX once wrapped offset + size past the size check: every entry point that
   takes a mask must refuse them with CLSA_ERR_SIZE_OVERFLOW and write nothing. */
static void test_mask_offsets_that_wrap(clsa_context *ctx, clsa_plan *plan, harness_buffers *b,
                                        const clsa_block_mask *m)
{
    const size_t huge = SIZE_MAX - 3; /* a multiple of 4, so only the size check can catch it */
    clsa_block_mask wrap_counts = {m->counts, huge, m->indices, 0}, wrap_indices = {m->counts, 0, m->indices, huge};
    const clsa_block_mask *bad[2] = {&wrap_counts, &wrap_indices};
    for (int i = 0; i < 2; ++i) {
        expect_mask_error(ctx, plan, b, bad[i], CLSA_MASK_CHECK, CLSA_ERR_SIZE_OVERFLOW);
        expect_mask_error(ctx, plan, b, bad[i], CLSA_MASK_TRUST, CLSA_ERR_SIZE_OVERFLOW);
        double density[2] = {-7.0, -7.0};
        assert_int_equal(clsa_mask_density(plan, b->queue, NULL, bad[i], density), CLSA_ERR_SIZE_OVERFLOW);
        assert_true(density[0] == -7.0 && density[1] == -7.0);
    }
    /* The estimator writes a mask: with a SALE plan, a wrapping offset must not let it write. */
    clsa_sparsity sp = sale_settings(CLSA_METHOD_SALE);
    sp.block_q = 32, sp.block_k = 16;
    clsa_plan *sale = make_plan(ctx, clsa_plan_shape(plan), &sp);
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(sale), NULL);
    int32_t before[4], after[4];
    assert_int_equal(clEnqueueReadBuffer(b->queue, m->counts, CL_TRUE, 0, sizeof before, before, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clsa_quantize(sale, b->queue, b->q, b->k, ws, 0, NULL, NULL), CLSA_SUCCESS);
    for (int i = 0; i < 2; ++i)
        assert_int_equal(clsa_estimate_mask(sale, b->queue, b->q, b->k, ws, bad[i], 0, NULL, NULL), CLSA_ERR_SIZE_OVERFLOW);
    assert_int_equal(clFinish(b->queue), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(b->queue, m->counts, CL_TRUE, 0, sizeof after, after, 0, NULL, NULL), CL_SUCCESS);
    assert_memory_equal(before, after, sizeof before);
    clReleaseMemObject(ws);
    clsa_plan_release(sale);
}

/* A mask that lists every key block of a causal plan (as a bitmap of ones converts to) has
   density 1: blocks no row can see are not counted. */
static void test_density_counts_visible_blocks_only(clsa_context *ctx, clsa_plan *plan, harness_buffers *b,
                                                    const clsa_block_mask *m)
{
    (void)ctx;
    int32_t all_counts[4] = {4, 4, 4, 4}, all_indices[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    assert_int_equal(clEnqueueWriteBuffer(b->queue, m->counts, CL_TRUE, 0, sizeof all_counts, all_counts, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(b->queue, m->indices, CL_TRUE, 0, sizeof all_indices, all_indices, 0, NULL, NULL), CL_SUCCESS);
    double density[2];
    assert_int_equal(clsa_mask_density(plan, b->queue, NULL, m, density), CLSA_SUCCESS);
    assert_true(density[0] == 1.0 && density[1] == 1.0);
    /* A bad list is refused, not counted. */
    all_counts[1] = 5;
    assert_int_equal(clEnqueueWriteBuffer(b->queue, m->counts, CL_TRUE, 0, sizeof all_counts, all_counts, 0, NULL, NULL), CL_SUCCESS);
    density[0] = density[1] = -7.0;
    assert_int_equal(clsa_mask_density(plan, b->queue, NULL, m, density), CLSA_ERR_INVALID_MASK_COUNT);
    assert_true(density[0] == -7.0 && density[1] == -7.0);
}

static void test_bad_masks(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_MASK);
    sp.block_q = 32, sp.block_k = 16;
    harness_rng rng = harness_rng_make(51);
    harness_buffers b;
    harness_buffers_make(ctx, &s, &rng, &b);
    clsa_plan *plan = make_plan(ctx, &s, &sp);
    clsa_mask_geometry g;
    clsa_plan_mask_geometry(plan, &g);
    assert_int_equal(g.rows, 4);
    assert_int_equal(g.num_k_blocks, 4);
    int32_t counts[4] = {1, 2, 1, 4}, indices[16] = {0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 1, 2, 3};
    clsa_block_mask m = {harness_new_buffer(ctx, sizeof counts, counts), 0, harness_new_buffer(ctx, sizeof indices, indices), 0};

    indices[12 + 3] = 4; /* out of range */
    clEnqueueWriteBuffer(b.queue, m.indices, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK);
    indices[12 + 3] = -1;
    clEnqueueWriteBuffer(b.queue, m.indices, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK);
    indices[12 + 3] = 3, indices[4] = 1, indices[5] = 0; /* unsorted */
    clEnqueueWriteBuffer(b.queue, m.indices, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK);
    indices[4] = 1, indices[5] = 1; /* repeated */
    clEnqueueWriteBuffer(b.queue, m.indices, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK);
    indices[4] = 0;
    clEnqueueWriteBuffer(b.queue, m.indices, CL_TRUE, 0, sizeof indices, indices, 0, NULL, NULL);
    counts[2] = 5;
    clEnqueueWriteBuffer(b.queue, m.counts, CL_TRUE, 0, sizeof counts, counts, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK_COUNT);
    counts[2] = -1;
    clEnqueueWriteBuffer(b.queue, m.counts, CL_TRUE, 0, sizeof counts, counts, 0, NULL, NULL);
    expect_mask_error(ctx, plan, &b, &m, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK_COUNT);
    counts[2] = 1;
    clEnqueueWriteBuffer(b.queue, m.counts, CL_TRUE, 0, sizeof counts, counts, 0, NULL, NULL);

    /* Buffers too small for the geometry, bad offsets, bad check mode, wrong plans. */
    clsa_block_mask small = {harness_new_buffer(ctx, sizeof counts - 4, counts), 0, m.indices, 0};
    expect_mask_error(ctx, plan, &b, &small, CLSA_MASK_CHECK, CLSA_ERR_MASK_TOO_SMALL);
    clsa_block_mask small_idx = {m.counts, 0, m.indices, 8};
    expect_mask_error(ctx, plan, &b, &small_idx, CLSA_MASK_TRUST, CLSA_ERR_MASK_TOO_SMALL);
    clsa_block_mask odd = {m.counts, 2, m.indices, 0};
    expect_mask_error(ctx, plan, &b, &odd, CLSA_MASK_CHECK, CLSA_ERR_INVALID_MASK);
    expect_mask_error(ctx, plan, &b, &m, (clsa_mask_check)7, CLSA_ERR_INVALID_OPTION);
    test_mask_offsets_that_wrap(ctx, plan, &b, &m);
    assert_int_equal(clsa_attention(plan, b.queue, b.q, b.k, b.v, b.o, NULL, 0, NULL, NULL), CLSA_ERR_WRONG_PLAN);
    assert_int_equal(clsa_quantize(plan, b.queue, b.q, b.k, m.counts, 0, NULL, NULL), CLSA_ERR_WRONG_PLAN);
    clsa_plan *dense = make_plan(ctx, &s, NULL);
    assert_int_equal(clsa_attention_masked(dense, b.queue, b.q, b.k, b.v, b.o, NULL, &m, CLSA_MASK_CHECK, 0, NULL, NULL),
                     CLSA_ERR_WRONG_PLAN);
    double density[2];
    assert_int_equal(clsa_mask_density(dense, b.queue, NULL, &m, density), CLSA_ERR_WRONG_PLAN);
    clsa_plan_release(dense);

    /* The valid mask then works, and its density is what the counts say. */
    assert_int_equal(clsa_attention_masked(plan, b.queue, b.q, b.k, b.v, b.o, NULL, &m, CLSA_MASK_CHECK, 0, NULL, NULL),
                     CLSA_SUCCESS);
    assert_int_equal(clsa_mask_density(plan, b.queue, NULL, &m, density), CLSA_SUCCESS);
    /* causal 64 x 64, blocks 32 x 16: valid key blocks per query block are 2 and 4. Head 1's
       first query block lists key block 2, which none of its rows can see: it does not count. */
    assert_true(fabs(density[0] - 3.0 / 6.0) < 1e-12);
    assert_true(fabs(density[1] - 4.0 / 6.0) < 1e-12);
    test_density_counts_visible_blocks_only(ctx, plan, &b, &m);

    /* Host conversions reject bad lists and write nothing. */
    uint8_t bitmap[16];
    memset(bitmap, 0xAB, sizeof bitmap);
    int32_t bad_counts[4] = {1, 2, 1, 9};
    assert_int_equal(clsa_mask_to_bitmap(bad_counts, indices, 4, 4, bitmap), CLSA_ERR_INVALID_MASK_COUNT);
    int32_t bad_indices[16];
    memcpy(bad_indices, indices, sizeof indices);
    bad_indices[5] = 0;
    assert_int_equal(clsa_mask_to_bitmap(counts, bad_indices, 4, 4, bitmap), CLSA_ERR_INVALID_MASK);
    for (int i = 0; i < 16; ++i)
        assert_int_equal(bitmap[i], 0xAB);
    assert_int_equal(clsa_mask_to_bitmap(counts, indices, 4, 4, bitmap), CLSA_SUCCESS);
    int32_t c2[4], i2[16];
    assert_int_equal(clsa_mask_from_bitmap(bitmap, 4, 4, c2, i2), CLSA_SUCCESS);
    for (int r = 0; r < 4; ++r) {
        assert_int_equal(c2[r], counts[r]);
        for (int n = 0; n < counts[r]; ++n)
            assert_int_equal(i2[r * 4 + n], indices[r * 4 + n]);
    }
    assert_int_equal(clsa_mask_from_bitmap(NULL, 4, 4, c2, i2), CLSA_ERR_NULL_ARGUMENT);
    assert_int_equal(clsa_mask_from_bitmap(bitmap, 0, 4, c2, i2), CLSA_ERR_INVALID_DIMENSION);
    assert_int_equal(clsa_mask_from_bitmap(bitmap, INT64_MAX / 2, 4, c2, i2), CLSA_ERR_SIZE_OVERFLOW);

    clReleaseMemObject(m.counts), clReleaseMemObject(m.indices), clReleaseMemObject(small.counts);
    clsa_plan_release(plan);
    harness_buffers_release(&b);
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("sparse");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize),     cmocka_unit_test(test_estimate_matches_host),
        cmocka_unit_test(test_integer_variants_identical),
        cmocka_unit_test(test_recall_vs_oracle), BOTH(test_masked), BOTH(test_pipeline),
        cmocka_unit_test(test_bad_sparsity), cmocka_unit_test(test_bad_masks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

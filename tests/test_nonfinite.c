/*
 * Non-finite inputs, against the float64 reference (clsa.h, "Non-finite values"): an Inf or NaN
 * reaches exactly the rows that see it (causally visible and, under a mask, in a kept block),
 * those rows are non-finite rather than silent zeros, and every other row stays finite and equal
 * to the reference. In both kernel styles, dense and masked, f32 and f16.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tensor_id { IN_Q, IN_K, IN_V } tensor_id;
static const char *const tensor_names[3] = {"Q", "K", "V"};

/* One non-finite value at (batch, head of its tensor, token, channel). */
typedef struct poison {
    tensor_id where;
    int64_t b, h, t, c;
    float value;
} poison;

static int64_t last_visible(const clsa_shape *s, int64_t row)
{
    const int64_t last = s->kv_len - 1, diag = row + s->kv_len - s->q_len;
    return s->causal && diag < last ? diag : last;
}

/* Does row (b, h, i) see the poisoned value? A key value is seen when the key is causally visible
   and, under a mask, in a kept block; a query value when its row sees any key at all. */
static bool row_sees(const clsa_shape *s, const poison *p, const uint8_t *bitmap, int bq, int bk, int64_t b, int64_t h,
                     int64_t i)
{
    const int64_t nqb = bitmap ? (s->q_len + bq - 1) / bq : 1, nkb = bitmap ? (s->kv_len + bk - 1) / bk : 1;
    const uint8_t *mrow = bitmap ? bitmap + ((b * s->q_heads + h) * nqb + i / bq) * nkb : NULL;
    const int64_t last = last_visible(s, i);
    if (b != p->b)
        return false;
    if (p->where == IN_Q) {
        if (h != p->h || i != p->t)
            return false;
        for (int64_t j = 0; j <= last; ++j)
            if (!mrow || mrow[j / bk])
                return true;
        return false;
    }
    return h / (s->q_heads / s->kv_heads) == p->h && p->t <= last && (!mrow || mrow[p->t / bk]);
}

static void write_host(const clsa_shape *s, harness_buffers *hb, const poison *p)
{
    const clsa_tensor_strides st = p->where == IN_Q ? s->q_strides : p->where == IN_K ? s->k_strides : s->v_strides;
    const int64_t heads = p->where == IN_Q ? s->q_heads : s->kv_heads, len = p->where == IN_Q ? s->q_len : s->kv_len;
    const ref_strides rs = ref_resolve(st, heads, len, s->head_dim);
    void *host = p->where == IN_Q ? hb->hq : p->where == IN_K ? hb->hk : hb->hv;
    ref_store(host, s->dtype, p->b * rs.batch + p->h * rs.head + p->t * rs.token + p->c, p->value);
}

static void upload(harness_buffers *hb)
{
    assert_int_equal(clEnqueueWriteBuffer(hb->queue, hb->q, CL_TRUE, 0, hb->q_bytes, hb->hq, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(hb->queue, hb->k, CL_TRUE, 0, hb->k_bytes, hb->hk, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(hb->queue, hb->v, CL_TRUE, 0, hb->v_bytes, hb->hv, 0, NULL, NULL), CL_SUCCESS);
}

/*
 * Checks an output against the float64 reference `want`, row by row. A row that does not see the
 * poisoned value must be finite and within tol of the reference. A row that sees it must be NaN in
 * every channel for a value in Q or K (its scores are not finite), and non-finite in the poisoned
 * channel for a value in V (its other channels are checked against the reference). Element by
 * element, the output is finite exactly where the reference is.
 */
static void check_rows(const clsa_shape *s, const void *got, const double *want, const poison *p, const uint8_t *bitmap,
                       int bq, int bk, const char *label)
{
    const ref_strides os = ref_resolve(s->o_strides, s->q_heads, s->q_len, s->head_dim);
    int64_t leaked = 0, missed = 0, unlike_reference = 0, seeing = 0;
    double max_err = 0.0, max_ref = 0.0;
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i) {
                const bool sees = row_sees(s, p, bitmap, bq, bk, b, h, i);
                bool any_bad = false, all_nan = true;
                seeing += sees;
                for (int64_t c = 0; c < s->head_dim; ++c) {
                    const double w = want[((b * s->q_heads + h) * s->q_len + i) * s->head_dim + c];
                    const double g = ref_load(got, s->dtype, b * os.batch + h * os.head + i * os.token + c);
                    any_bad = any_bad || !isfinite(g);
                    all_nan = all_nan && isnan(g);
                    if (isfinite(g) != isfinite(w))
                        ++unlike_reference;
                    if (isfinite(w) && !(sees && p->where == IN_V && c == p->c)) {
                        max_err = fmax(max_err, isfinite(g) ? fabs(g - w) : INFINITY);
                        max_ref = fmax(max_ref, fabs(w));
                    }
                    if (sees && p->where == IN_V && c == p->c && isfinite(g))
                        ++missed;
                }
                if (!sees && any_bad)
                    ++leaked;
                if (sees && p->where != IN_V && !all_nan)
                    ++missed;
            }
    const double err = max_ref > 0 ? max_err / max_ref : max_err, tol = harness_tolerance(s->dtype);
    printf("# %s: %s[b%lld h%lld t%lld c%lld] = %g seen by %lld rows; %lld rows leaked, %lld missed, %lld elements "
           "unlike the reference, max rel err elsewhere %.3g (tol %.3g)\n",
           label, tensor_names[p->where], (long long)p->b, (long long)p->h, (long long)p->t, (long long)p->c,
           (double)p->value, (long long)seeing, (long long)leaked, (long long)missed, (long long)unlike_reference, err,
           tol);
    if (leaked || missed || unlike_reference || !(err <= tol))
        fail_msg("%s: the non-finite value did not stay in the rows that see it (seed %llu)", label,
                 (unsigned long long)harness_seed);
}

/* A mask for key poisons: the poisoned key's block is kept for even query blocks only, so that odd
   ones have rows that could causally see the key but must not; other blocks kept at random. */
static uint8_t *make_bitmap(const clsa_shape *s, int bq, int bk, const poison *p, harness_rng *rng)
{
    const int64_t nqb = (s->q_len + bq - 1) / bq, nkb = (s->kv_len + bk - 1) / bk, rows = s->batch * s->q_heads * nqb;
    uint8_t *bm = malloc((size_t)(rows * nkb));
    assert_non_null(bm);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t kb = 0; kb < nkb; ++kb)
            bm[r * nkb + kb] = p->where != IN_Q && kb == p->t / bk ? (r % nqb) % 2 == 0 : harness_uniform(rng) < 0.6;
    return bm;
}

typedef struct attn_case {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
    int causal;
} attn_case;

static const attn_case cases_big[] = {
    {2, 4, 2, 100, 100, 40, 1}, /* GQA, batch: other heads and sequences stay clean */
    {1, 2, 1, 70, 150, 64, 1},  /* q_len < kv_len: rows end-aligned */
    {1, 2, 2, 90, 50, 24, 1},   /* q_len > kv_len: the first rows see no key */
    {1, 2, 1, 50, 90, 16, 0},   /* not causal: under a mask only */
};
static const attn_case cases_small[] = {
    {1, 2, 1, 40, 40, 16, 1},
    {1, 1, 1, 20, 37, 8, 1},
    {1, 1, 1, 20, 30, 8, 0},
};

/* Places the poison: a key past the first rows' diagonals, away from a 16-key chunk's first key
   (whose chunk holds no earlier key), or a query row that sees keys. */
static poison place(const clsa_shape *s, tensor_id where, float value, harness_rng *rng)
{
    poison p = {where, 0, 0, 0, 0, value};
    p.b = (int64_t)(harness_uniform(rng) * (double)s->batch);
    p.h = (int64_t)(harness_uniform(rng) * (double)(where == IN_Q ? s->q_heads : s->kv_heads));
    p.c = (int64_t)(harness_uniform(rng) * (double)s->head_dim);
    if (where == IN_Q) {
        const int64_t first = s->causal && s->q_len > s->kv_len ? s->q_len - s->kv_len : 0;
        p.t = first + (int64_t)(harness_uniform(rng) * (double)(s->q_len - first));
    } else {
        const int64_t first = s->causal && s->kv_len > s->q_len ? s->kv_len - s->q_len + 1 : 1;
        p.t = first + (int64_t)(harness_uniform(rng) * (double)(s->kv_len - first));
        if (p.t % 16 == 0)
            p.t = p.t + 1 < s->kv_len ? p.t + 1 : p.t - 1;
    }
    return p;
}

/* Runs dense (block_q 0) or masked attention on random data with one poisoned value, and checks it. */
static void run_poisoned(clsa_context *ctx, const attn_case *c, clsa_dtype dtype, tensor_id where, float value,
                         int block_q, int block_k, uint64_t stream)
{
    clsa_shape s = clsa_shape_make(c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, c->head_dim, dtype, c->causal);
    if (!c->causal && !block_q)
        return; /* dense and not causal: every row sees every key, nothing to tell apart */
    harness_rng rng = harness_rng_make(stream);
    harness_buffers hb;
    harness_buffers_make(ctx, &s, &rng, &hb);
    const poison p = place(&s, where, value, &rng);
    write_host(&s, &hb, &p);
    upload(&hb);

    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_MASK);
    sp.block_q = block_q, sp.block_k = block_k;
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, &s, block_q ? &sp : NULL, &plan);
    if (st)
        fail_msg("plan: %s", clsa_context_last_error(ctx));
    uint8_t *bitmap = NULL;
    cl_mem counts = NULL, indices = NULL;
    if (block_q) {
        clsa_mask_geometry g;
        assert_int_equal(clsa_plan_mask_geometry(plan, &g), CLSA_SUCCESS);
        bitmap = make_bitmap(&s, block_q, block_k, &p, &rng);
        int32_t *hc = malloc(g.counts_bytes), *hi = malloc(g.indices_bytes);
        assert_int_equal(clsa_mask_from_bitmap(bitmap, g.rows, g.num_k_blocks, hc, hi), CLSA_SUCCESS);
        cl_int err = CL_SUCCESS;
        counts = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, g.counts_bytes, hc, &err);
        assert_int_equal(err, CL_SUCCESS);
        indices = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, g.indices_bytes, hi, &err);
        assert_int_equal(err, CL_SUCCESS);
        free(hc), free(hi);
        const clsa_block_mask m = {counts, 0, indices, 0};
        st = clsa_attention_masked(plan, hb.queue, hb.q, hb.k, hb.v, hb.o, NULL, &m, CLSA_MASK_CHECK, 0, NULL, NULL);
    } else {
        st = clsa_attention(plan, hb.queue, hb.q, hb.k, hb.v, hb.o, NULL, 0, NULL, NULL);
    }
    if (st)
        fail_msg("attention: %s", clsa_context_last_error(ctx));
    harness_read_o(&hb);
    double *want = malloc(sizeof(double) * (size_t)(s.batch * s.q_heads * s.q_len * s.head_dim));
    assert_non_null(want);
    ref_attention(clsa_plan_shape(plan), hb.hq, hb.hk, hb.hv, bitmap, block_q, block_k, want);
    char label[160];
    snprintf(label, sizeof label, "%s %s %s B%lld H%lld/%lld L%lld/%lld D%lld %s",
             clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu", block_q ? "masked" : "dense",
             harness_dtype_name(dtype), (long long)s.batch, (long long)s.q_heads, (long long)s.kv_heads,
             (long long)s.q_len, (long long)s.kv_len, (long long)s.head_dim, s.causal ? "causal" : "full");
    check_rows(&s, hb.ho, want, &p, bitmap, block_q, block_k, label);
    free(want), free(bitmap);
    if (counts)
        clReleaseMemObject(counts), clReleaseMemObject(indices);
    clsa_plan_release(plan);
    harness_buffers_release(&hb);
}

/* Every case, dtype (f32, f16), method (dense, masked) and value, poisoned in one tensor. */
static void run_tensor(void **state, tensor_id where, const float *values, int n_values)
{
    clsa_context *ctx = harness_context((clsa_kernel_style)(intptr_t)*state);
    const attn_case *cases = harness_small ? cases_small : cases_big;
    const size_t n = harness_small ? sizeof cases_small / sizeof cases_small[0] : sizeof cases_big / sizeof cases_big[0];
    const clsa_dtype dtypes[2] = {CLSA_F32, CLSA_F16};
    const int block = harness_small ? 16 : 32;
    uint64_t stream = 1000 * (uint64_t)where;
    for (size_t i = 0; i < n; ++i)
        for (int d = 0; d < 2; ++d)
            for (int masked = 0; masked < 2; ++masked)
                for (int v = 0; v < n_values; ++v)
                    run_poisoned(ctx, &cases[i], dtypes[d], where, values[v], masked ? block : 0, masked ? block : 0, ++stream);
    clsa_context_release(ctx);
}

/* Item 11: an Inf or NaN in V reaches only the rows that see its key. It used to leak into the
   rows of the same 16-key chunk (cpu) or key tile (gpu) that could not see it, as 0 x Inf. */
static void test_inf_and_nan_in_v_stay_in_rows_that_see_them(void **state)
{
    const float values[3] = {INFINITY, -INFINITY, NAN};
    run_tensor(state, IN_V, values, 3);
}

/* Item 11 for K, and item 12: a key with an Inf or NaN gives the rows that see it NaN, whatever
   the sign of its score (a -inf score used to pass for a masked key), and no other row. */
static void test_inf_and_nan_in_k_stay_in_rows_that_see_them(void **state)
{
    const float values[2] = {INFINITY, NAN};
    run_tensor(state, IN_K, values, 2);
}

/* Item 12: a NaN (or Inf) in a query row gives that row NaN, not a silent row of zeros. */
static void test_nan_in_q_gives_a_nan_row_not_zeros(void **state)
{
    const float values[2] = {NAN, INFINITY};
    run_tensor(state, IN_Q, values, 2);
}

#define BOTH(f) cmocka_unit_test_prestate(f, (void *)(intptr_t)CLSA_STYLE_CPU), \
                cmocka_unit_test_prestate(f, (void *)(intptr_t)CLSA_STYLE_GPU)

int main(void)
{
    harness_init("nonfinite");
    const struct CMUnitTest tests[] = {
        BOTH(test_inf_and_nan_in_v_stay_in_rows_that_see_them),
        BOTH(test_inf_and_nan_in_k_stay_in_rows_that_see_them),
        BOTH(test_nan_in_q_gives_a_nan_row_not_zeros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Non-finite inputs and empty selections, against the float64 reference (clsa.h, "Non-finite
 * values"): an Inf or NaN reaches exactly the rows that see it (causally visible and, under a
 * mask, in a kept block), those rows are non-finite rather than silent zeros, and every other
 * row stays finite and equal to the reference. In both kernel styles, dense and masked, f32 and
 * f16. Then SALE: its means leave non-finite tokens out, it keeps the blocks of non-finite
 * queries and keys, and it keeps a block for every row that sees a key.
 */
#include "harness.h"
#include "llm_data.h"

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

/* An Inf or NaN in V reaches only the rows that see its key. It used to leak into the rows of the
   same 16-key chunk (cpu) or key tile (gpu) that could not see it, as 0 x Inf. */
static void test_inf_and_nan_in_v_stay_in_rows_that_see_them(void **state)
{
    const float values[3] = {INFINITY, -INFINITY, NAN};
    run_tensor(state, IN_V, values, 3);
}

/* A key with an Inf or NaN gives the rows that see it NaN, whatever the sign of its score (a -inf
   score used to pass for a masked key), and no other row. */
static void test_inf_and_nan_in_k_stay_in_rows_that_see_them(void **state)
{
    const float values[2] = {INFINITY, NAN};
    run_tensor(state, IN_K, values, 2);
}

/* A NaN (or Inf) in a query row gives that row NaN, not a silent row of zeros. */
static void test_nan_in_q_gives_a_nan_row_not_zeros(void **state)
{
    const float values[2] = {NAN, INFINITY};
    run_tensor(state, IN_Q, values, 2);
}

/* ---------------------------------------------------------------- SALE ------------------ */

/* SALE settings with some blocks estimated rather than forced at these lengths. */
static clsa_sparsity sale_settings(void)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.local_tokens = harness_small ? 16 : 64;
    sp.sink_tokens = harness_small ? 8 : 32;
    if (harness_small)
        sp.block_q = 16, sp.block_k = 16;
    return sp;
}

/* The per-head means of SALE's smoothing leave out non-finite values, and the group of the bad
   token gets a NaN scale. They used to become NaN or Inf, and with them every token's codes and
   every row's threshold. */
static void test_sale_means_leave_out_nonfinite_tokens(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const int64_t L = harness_small ? 20 : 200, D = 40;
    const float values[2] = {INFINITY, NAN};
    for (int v = 0; v < 2; ++v) {
        clsa_shape s = clsa_shape_make(1, 2, 1, L, L + 5, D, CLSA_F32, 1);
        harness_rng rng = harness_rng_make(500 + (uint64_t)v);
        harness_buffers hb;
        harness_buffers_make(ctx, &s, &rng, &hb);
        const poison pk = place(&s, IN_K, values[v], &rng), pq = place(&s, IN_Q, values[v], &rng);
        write_host(&s, &hb, &pk);
        write_host(&s, &hb, &pq);
        upload(&hb);
        clsa_sparsity sp;
        clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
        clsa_plan *plan = NULL;
        assert_int_equal(clsa_plan_create(ctx, &s, &sp, &plan), CLSA_SUCCESS);
        cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
        assert_int_equal(clsa_quantize(plan, hb.queue, hb.q, hb.k, ws, 0, NULL, NULL), CLSA_SUCCESS);
        assert_int_equal(clFinish(hb.queue), CL_SUCCESS);
        clsa_quant_layout ql;
        assert_int_equal(clsa_plan_quant_layout(plan, &ql), CLSA_SUCCESS);
        const int64_t NG = ql.groups, GC = ql.group_channels, Lkp = ql.kv_len_padded;
        float *means[2] = {harness_read_buffer(hb.queue, ws, ql.q_mean, (size_t)(s.q_heads * D) * 4),
                           harness_read_buffer(hb.queue, ws, ql.k_mean, (size_t)(s.kv_heads * D) * 4)};
        float *qscales = harness_read_buffer(hb.queue, ws, ql.q_scales, (size_t)(s.q_heads * L * NG) * 4);
        float *kscales = harness_read_buffer(hb.queue, ws, ql.k_scales, (size_t)(s.kv_heads * NG * Lkp) * 4);
        double worst = 0.0;
        int64_t wrong_scales = 0;
        for (int side = 0; side < 2; ++side) {
            const poison *p = side ? &pk : &pq;
            const int64_t H = side ? s.kv_heads : s.q_heads, len = side ? s.kv_len : s.q_len;
            const void *x = side ? hb.hk : hb.hq;
            for (int64_t h = 0; h < H; ++h) {
                for (int64_t c = 0; c < D; ++c) { /* float64 mean of the finite values */
                    double sum = 0.0;
                    int64_t n = 0;
                    for (int64_t t = 0; t < len; ++t) {
                        const double e = ref_load(x, s.dtype, (h * len + t) * D + c);
                        if (isfinite(e))
                            sum += e, ++n;
                    }
                    const float got = means[side][h * D + c];
                    worst = fmax(worst, isfinite(got) ? fabs(got - sum / (double)n) : INFINITY);
                }
                for (int64_t t = 0; t < len; ++t)
                    for (int64_t g = 0; g < NG; ++g) {
                        const float sc = side ? kscales[(h * NG + g) * Lkp + t] : qscales[(h * len + t) * NG + g];
                        const bool bad = h == p->h && t == p->t && g == p->c / GC;
                        wrong_scales += bad ? !isnan(sc) : !isfinite(sc);
                    }
            }
        }
        printf("# %s in Q and K: means off by %.3g from the finite values' float64 means; %lld scales wrong\n",
               v ? "NaN" : "Inf", worst, (long long)wrong_scales);
        if (!(worst <= 1e-5) || wrong_scales)
            fail_msg("SALE's smoothing let a non-finite token in (seed %llu)", (unsigned long long)harness_seed);
        free(means[0]), free(means[1]), free(qscales), free(kscales);
        clReleaseMemObject(ws);
        clsa_plan_release(plan);
        harness_buffers_release(&hb);
    }
    clsa_context_release(ctx);
}

/* Runs the whole SALE pipeline; returns its mask as a bitmap and leaves the output in hb->ho. */
static uint8_t *run_sale(clsa_context *ctx, const clsa_shape *s, const clsa_sparsity *sp, harness_buffers *hb,
                         clsa_plan **plan_out)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, s, sp, &plan);
    if (st)
        fail_msg("plan: %s", clsa_context_last_error(ctx));
    cl_mem ws = harness_new_buffer(ctx, clsa_plan_workspace_size(plan), NULL);
    st = clsa_attention(plan, hb->queue, hb->q, hb->k, hb->v, hb->o, ws, 0, NULL, NULL);
    if (st)
        fail_msg("attention: %s", clsa_context_last_error(ctx));
    harness_read_o(hb);
    uint8_t *bitmap = harness_workspace_bitmap(hb->queue, plan, ws);
    clReleaseMemObject(ws);
    *plan_out = plan;
    return bitmap;
}

/* SALE: a non-finite key reaches every row that can causally see it (its estimate is NaN, which
   passes), a non-finite query row keeps every block it can see, and a non-finite V value reaches
   the rows whose mask keeps it; every other row is finite and exact for the mask used. Such a key
   used to be hidden from the rows whose block was not forced. */
static void test_sale_keeps_the_blocks_of_nonfinite_queries_and_keys(void **state)
{
    clsa_context *ctx = harness_context((clsa_kernel_style)(intptr_t)*state);
    const int64_t L = harness_small ? 96 : 512;
    const clsa_shape s = clsa_shape_make(1, 4, 2, L, L, harness_small ? 16 : 64, CLSA_F32, 1);
    const clsa_sparsity sp = sale_settings();
    const struct { tensor_id where; float value; } poisons[4] = {{IN_K, NAN}, {IN_K, INFINITY}, {IN_Q, NAN}, {IN_V, INFINITY}};
    for (int n = 0; n < 4; ++n) {
        harness_rng rng = harness_rng_make(600 + (uint64_t)n);
        harness_buffers hb;
        harness_buffers_make(ctx, &s, &rng, &hb);
        llm_data_generate(&s, harness_seed ^ (600 + (uint64_t)n), hb.hq, hb.hk, hb.hv);
        const poison p = place(&s, poisons[n].where, poisons[n].value, &rng);
        write_host(&s, &hb, &p);
        upload(&hb);
        clsa_plan *plan = NULL;
        uint8_t *bitmap = run_sale(ctx, &s, &sp, &hb, &plan);
        /* Q and K: the mask lets the value reach every row dense attention gives it to. */
        int64_t hidden = 0;
        for (int64_t h = 0; h < s.q_heads && p.where != IN_V; ++h)
            for (int64_t i = 0; i < s.q_len; ++i)
                hidden += row_sees(&s, &p, NULL, 0, 0, p.b, h, i) && !row_sees(&s, &p, bitmap, sp.block_q, sp.block_k, p.b, h, i);
        const int64_t nkb = (L + sp.block_k - 1) / sp.block_k, qb = p.t / sp.block_q;
        for (int64_t kb = 0; p.where == IN_Q && kb * sp.block_k <= last_visible(&s, p.t); ++kb)
            hidden += !bitmap[((p.b * s.q_heads + p.h) * ((L + sp.block_q - 1) / sp.block_q) + qb) * nkb + kb];
        double *want = malloc(sizeof(double) * (size_t)(s.q_heads * L * s.head_dim));
        assert_non_null(want);
        ref_attention(clsa_plan_shape(plan), hb.hq, hb.hk, hb.hv, bitmap, sp.block_q, sp.block_k, want);
        char label[96];
        snprintf(label, sizeof label, "%s sale L%lld", clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu",
                 (long long)L);
        printf("# %s: %lld rows (or blocks of the query) that dense attention gives the value to are masked off\n",
               label, (long long)hidden);
        if (hidden)
            fail_msg("SALE hid a non-finite %s value from rows that see it (seed %llu)", tensor_names[p.where],
                     (unsigned long long)harness_seed);
        check_rows(&s, hb.ho, want, &p, bitmap, sp.block_q, sp.block_k, label);
        free(want), free(bitmap);
        clsa_plan_release(plan);
        harness_buffers_release(&hb);
    }
    clsa_context_release(ctx);
}

/* ---------------------------------------------------------------- empty selections ------ */

/* sum |o - dense| / sum |dense| against the float64 dense reference, and the rows that see a key
   yet came out all zeros. */
static double rel_l1_to_dense(const clsa_shape *s, const void *got, const harness_buffers *hb, int64_t *zero_rows)
{
    const int64_t n = s->batch * s->q_heads * s->q_len * s->head_dim;
    double *dense = malloc(sizeof(double) * (size_t)n);
    assert_non_null(dense);
    ref_attention(s, hb->hq, hb->hk, hb->hv, NULL, 0, 0, dense);
    double diff = 0.0, ref = 0.0;
    *zero_rows = 0;
    for (int64_t r = 0; r < n / s->head_dim; ++r) {
        bool zero = true;
        for (int64_t c = 0; c < s->head_dim; ++c) {
            const double g = ref_load(got, s->dtype, r * s->head_dim + c), w = dense[r * s->head_dim + c];
            diff += fabs(g - w);
            ref += fabs(w);
            zero = zero && g == 0.0;
        }
        *zero_rows += zero && last_visible(s, r % s->q_len) >= 0;
    }
    free(dense);
    return diff / ref;
}

/* Every row that sees a key keeps a block, also when its sink and local sets are empty (it then
   takes its highest estimate as the reference). Not causal with q_len 4 x kv_len, sink 0 and
   local 16, most rows have no local key in range and used to give zeros; with sink and local both
   0 every threshold was +inf, and only the diagonal blocks were kept. */
static void test_every_row_that_sees_a_key_keeps_a_block(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const int64_t L = harness_small ? 64 : 1024;
    const struct { clsa_shape s; int local; double max_rel_l1; } cases[2] = {
        {clsa_shape_make(1, 2, 1, 4 * L, L, harness_small ? 16 : 64, CLSA_F32, 0), 16, 0.05},
        {clsa_shape_make(1, 2, 1, L, L, harness_small ? 16 : 64, CLSA_F32, 1), 0, 0.05},
    };
    for (int n = 0; n < 2; ++n) {
        const clsa_shape *s = &cases[n].s;
        clsa_sparsity sp = sale_settings();
        sp.sink_tokens = 0, sp.local_tokens = cases[n].local;
        harness_rng rng = harness_rng_make(700 + (uint64_t)n);
        harness_buffers hb;
        harness_buffers_make(ctx, s, &rng, &hb);
        llm_data_generate(s, harness_seed ^ (700 + (uint64_t)n), hb.hq, hb.hk, hb.hv);
        upload(&hb);
        clsa_plan *plan = NULL;
        uint8_t *bitmap = run_sale(ctx, s, &sp, &hb, &plan);
        int64_t zero_rows = 0;
        const double rel_l1 = rel_l1_to_dense(clsa_plan_shape(plan), hb.ho, &hb, &zero_rows);
        double density = 0.0;
        const int64_t cells = s->q_heads * ((s->q_len + sp.block_q - 1) / sp.block_q) * ((s->kv_len + sp.block_k - 1) / sp.block_k);
        for (int64_t e = 0; e < cells; ++e)
            density += bitmap[e];
        printf("# sale Lq %lld Lk %lld %s sink 0 local %d: %lld rows that see a key gave zeros; %.0f of %lld blocks "
               "kept; rel_l1 to dense %.4f (max %.2f)\n",
               (long long)s->q_len, (long long)s->kv_len, s->causal ? "causal" : "full", sp.local_tokens,
               (long long)zero_rows, density, (long long)cells, rel_l1, cases[n].max_rel_l1);
        if (zero_rows || !(rel_l1 <= cases[n].max_rel_l1))
            fail_msg("rows without sink or local keys lost their keys (seed %llu)", (unsigned long long)harness_seed);
        free(bitmap);
        clsa_plan_release(plan);
        harness_buffers_release(&hb);
    }
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("nonfinite");
    const struct CMUnitTest tests[] = {
        BOTH(test_inf_and_nan_in_v_stay_in_rows_that_see_them),
        BOTH(test_inf_and_nan_in_k_stay_in_rows_that_see_them),
        BOTH(test_nan_in_q_gives_a_nan_row_not_zeros),
        cmocka_unit_test(test_sale_means_leave_out_nonfinite_tokens),
        BOTH(test_sale_keeps_the_blocks_of_nonfinite_queries_and_keys),
        cmocka_unit_test(test_every_row_that_sees_a_key_keeps_a_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

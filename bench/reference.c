/* Float64 reference attention and host storage conversions. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint16_t ref_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7FFFFFFFu;
    if (absu > 0x7F800000u)
        return (uint16_t)(sign | 0x7E00u); /* NaN */
    if (absu >= 0x477FF000u)               /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (absu < 0x38800000u) {              /* below the smallest normal half: subnormal or zero */
        float a;
        memcpy(&a, &absu, 4);
        /* a * 2^24 is the subnormal's integer mantissa; nearbyintf rounds half to even. */
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t mant = absu & 0x7FFFFFu;
    uint32_t exp = (absu >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

float ref_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    uint32_t u = exp == 31 ? (sign | 0x7F800000u | (mant << 13)) : (sign | ((exp - 15 + 127) << 23) | (mant << 13));
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ref_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x))
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ref_bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

ref_strides ref_resolve(clsa_tensor_strides s, int64_t heads, int64_t len, int64_t dim)
{
    if (s.batch == 0 && s.head == 0 && s.token == 0) {
        ref_strides r = {heads * len * dim, len * dim, dim};
        return r;
    }
    ref_strides r = {s.batch, s.head, s.token};
    return r;
}

int64_t ref_tensor_elements(ref_strides s, int64_t batch, int64_t heads, int64_t len, int64_t dim)
{
    return (batch - 1) * s.batch + (heads - 1) * s.head + (len - 1) * s.token + dim;
}

double ref_load(const void *data, clsa_dtype dtype, int64_t i)
{
    switch (dtype) {
    case CLSA_F32: return ((const float *)data)[i];
    case CLSA_F16: return ref_f16_to_f32(((const uint16_t *)data)[i]);
    case CLSA_BF16: return ref_bf16_to_f32(((const uint16_t *)data)[i]);
    }
    return NAN;
}

void ref_store(void *data, clsa_dtype dtype, int64_t i, float x)
{
    switch (dtype) {
    case CLSA_F32: ((float *)data)[i] = x; break;
    case CLSA_F16: ((uint16_t *)data)[i] = ref_f32_to_f16(x); break;
    case CLSA_BF16: ((uint16_t *)data)[i] = ref_f32_to_bf16(x); break;
    }
}

int64_t ref_last_visible(const clsa_shape *s, int64_t row)
{
    int64_t last = s->kv_len - 1;
    if (s->causal && row + s->kv_len - s->q_len < last)
        last = row + s->kv_len - s->q_len;
    return last;
}

void ref_attention(const clsa_shape *s, const void *q, const void *k, const void *v,
                   const uint8_t *block_mask, int block_q, int block_k, double *o)
{
    ref_attention_rule(s, q, k, v, block_mask, block_q, block_k, NULL, o);
}

void ref_attention_rule(const clsa_shape *s, const void *q, const void *k, const void *v,
                        const uint8_t *block_mask, int block_q, int block_k, const ref_prob_rule *rule, double *o)
{
    const int64_t B = s->batch, Hq = s->q_heads, Hkv = s->kv_heads, Lq = s->q_len, Lk = s->kv_len, D = s->head_dim;
    const double scale = s->scale > 0 ? s->scale : 1.0 / sqrt((double)D);
    ref_strides qs = ref_resolve(s->q_strides, Hq, Lq, D), ks = ref_resolve(s->k_strides, Hkv, Lk, D);
    ref_strides vs = ref_resolve(s->v_strides, Hkv, Lk, D);
    const int64_t nqb = block_mask ? (Lq + block_q - 1) / block_q : 1;
    const int64_t nkb = block_mask ? (Lk + block_k - 1) / block_k : 1;
    double *qrow = malloc(sizeof(double) * (size_t)D);
    double *scores = malloc(sizeof(double) * (size_t)Lk);
    double *kmat = malloc(sizeof(double) * (size_t)(Lk * D));
    double *vmat = malloc(sizeof(double) * (size_t)(Lk * D));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < Hq; ++h) {
            const int64_t hk = h / (Hq / Hkv);
            for (int64_t j = 0; j < Lk; ++j)
                for (int64_t c = 0; c < D; ++c) {
                    kmat[j * D + c] = ref_load(k, s->dtype, b * ks.batch + hk * ks.head + j * ks.token + c);
                    vmat[j * D + c] = ref_load(v, s->dtype, b * vs.batch + hk * vs.head + j * vs.token + c);
                }
            for (int64_t i = 0; i < Lq; ++i) {
                double *out = o + ((b * Hq + h) * Lq + i) * D;
                for (int64_t c = 0; c < D; ++c) {
                    qrow[c] = ref_load(q, s->dtype, b * qs.batch + h * qs.head + i * qs.token + c);
                    out[c] = 0.0;
                }
                const int64_t last = ref_last_visible(s, i);
                const uint8_t *mrow = block_mask ? block_mask + ((b * Hq + h) * nqb + i / block_q) * nkb : NULL;
                double mx = -INFINITY;
                bool finite = true;
                for (int64_t j = 0; j <= last; ++j) {
                    if (mrow && !mrow[j / block_k]) {
                        scores[j] = -INFINITY;
                        continue;
                    }
                    double dot = 0.0;
                    for (int64_t c = 0; c < D; ++c)
                        dot += qrow[c] * kmat[j * D + c];
                    scores[j] = dot * scale;
                    finite = finite && isfinite(scores[j]);
                    if (scores[j] > mx)
                        mx = scores[j];
                }
                const int64_t row = (b * Hq + h) * Lq + i;
                if (!finite) { /* a non-finite value in Q or a seen key: NaN (clsa.h, "Non-finite values") */
                    for (int64_t j = 0; rule && j <= last; ++j)
                        if (!mrow || mrow[j / block_k])
                            rule->apply(rule->user, row, NAN, vmat + j * D, D);
                    for (int64_t c = 0; c < D; ++c)
                        out[c] = NAN;
                    continue;
                }
                if (mx == -INFINITY)
                    continue; /* no visible key: zeros */
                double sum = 0.0;
                for (int64_t j = 0; j <= last; ++j) {
                    if (scores[j] == -INFINITY)
                        continue;
                    const double p = exp(scores[j] - mx);
                    sum += p;
                    for (int64_t c = 0; !rule && c < D; ++c)
                        out[c] += p * vmat[j * D + c];
                }
                if (!rule) {
                    for (int64_t c = 0; c < D; ++c)
                        out[c] /= sum;
                    continue;
                }
                /* With a rule: the exact p once the sum is known, its weight times V, no renormalization. */
                for (int64_t j = 0; j <= last; ++j) {
                    if (scores[j] == -INFINITY)
                        continue;
                    const double w = rule->apply(rule->user, row, exp(scores[j] - mx) / sum, vmat + j * D, D);
                    for (int64_t c = 0; c < D; ++c)
                        out[c] += w * vmat[j * D + c];
                }
            }
        }
    free(qrow);
    free(scores);
    free(kmat);
    free(vmat);
}

double ref_value_level(double p, double t, int bits)
{
    if (bits == 0)
        return p;
    const double min_exp = log2(t), base = -min_exp / (double)((1 << bits) - 1);
    const double k = fmin(fmax(floor((log2(p) - min_exp) / base), 0.0), (double)((1 << bits) - 2));
    return exp2(min_exp + (k + 0.5) * base);
}

static double apply_value_rule(void *user, int64_t row, double p, const double *v_row, int64_t head_dim)
{
    (void)row, (void)v_row, (void)head_dim;
    const clsa_shape *s = user;
    return p < s->value_prune ? 0.0 : ref_value_level(p, s->value_prune, s->value_bits);
}

void ref_attention_pruned(const clsa_shape *s, const void *q, const void *k, const void *v,
                          const uint8_t *block_mask, int block_q, int block_k, double *o)
{
    const ref_prob_rule rule = {apply_value_rule, (void *)s};
    ref_attention_rule(s, q, k, v, block_mask, block_q, block_k, &rule, o);
}

double ref_max_rel_error(const clsa_shape *s, const void *got, const double *want)
{
    const int64_t B = s->batch, H = s->q_heads, L = s->q_len, D = s->head_dim;
    ref_strides os = ref_resolve(s->o_strides, H, L, D);
    double max_err = 0.0, max_ref = 0.0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < L; ++i)
                for (int64_t c = 0; c < D; ++c) {
                    const double w = want[((b * H + h) * L + i) * D + c];
                    const double g = ref_load(got, s->dtype, b * os.batch + h * os.head + i * os.token + c);
                    const double err = fabs(g - w);
                    if (!(err <= max_err)) /* NaN propagates as an infinite error */
                        max_err = isnan(err) ? INFINITY : err;
                    if (fabs(w) > max_ref)
                        max_ref = fabs(w);
                }
    return max_ref > 0 ? max_err / max_ref : max_err;
}

double ref_attention_flops(const clsa_shape *s)
{
    /* Visible pairs per (batch, head): sum over rows of (last visible key + 1), at least 0. */
    double pairs = 0.0;
    for (int64_t i = 0; i < s->q_len; ++i) {
        const int64_t last = ref_last_visible(s, i);
        if (last >= 0)
            pairs += (double)(last + 1);
    }
    return 4.0 * (double)s->head_dim * pairs * (double)(s->batch * s->q_heads);
}

static double head_log2_tau(const ref_sale *p, int64_t h) { return p->tau[h] <= 1e-5f ? -INFINITY : log2((double)p->tau[h]); }

double ref_exact_score(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const ref_exact_scores *e = ctx;
    const clsa_shape *s = e->shape;
    const ref_strides qs = ref_resolve(s->q_strides, s->q_heads, s->q_len, s->head_dim);
    const ref_strides ks = ref_resolve(s->k_strides, s->kv_heads, s->kv_len, s->head_dim);
    const int64_t hk = h / (s->q_heads / s->kv_heads);
    const double scale = s->scale > 0 ? s->scale : 1.0 / sqrt((double)s->head_dim);
    double dot = 0.0;
    for (int64_t c = 0; c < s->head_dim; ++c)
        dot += ref_load(e->q, s->dtype, b * qs.batch + h * qs.head + i * qs.token + c) *
               ref_load(e->k, s->dtype, b * ks.batch + hk * ks.head + j * ks.token + c);
    return dot * scale * 1.4426950408889634;
}

/* The local keys of a row: ending at its diagonal when causal, centred on it otherwise. */
static int64_t local_first(int64_t diag, int64_t local, int causal) { return causal ? diag - local + 1 : diag - local / 2; }
static int64_t local_last(int64_t diag, int64_t local, int causal) { return causal ? diag : diag + local - local / 2 - 1; }

void ref_sale_thresholds(const clsa_shape *s, const void *q, const void *k, const ref_sale *p, double *thr)
{
    ref_exact_scores e = {s, q, k};
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i) {
                const int64_t diag = i + s->kv_len - s->q_len, limit = ref_last_visible(s, i);
                const int64_t sink_end = p->sink < s->kv_len ? p->sink : s->kv_len;
                int64_t lo = local_first(diag, p->local, s->causal), hi = local_last(diag, p->local, s->causal);
                if (lo < sink_end)
                    lo = sink_end; /* sink keys are counted once */
                if (hi > limit)
                    hi = limit;
                double m = -INFINITY, l = 0.0;
                bool finite = true;
                for (int pass = 0; pass < 2; ++pass) {
                    const int64_t first = pass ? lo : 0, last = pass ? hi : (sink_end - 1 < limit ? sink_end - 1 : limit);
                    for (int64_t j = first < 0 ? 0 : first; j <= last; ++j) {
                        const double t = ref_exact_score(&e, b, h, i, j);
                        finite = finite && isfinite(t);
                        if (t > m) {
                            l = l * exp2(m - t) + 1.0;
                            m = t;
                        } else {
                            l += exp2(t - m);
                        }
                    }
                }
                const double lt = head_log2_tau(p, h);
                thr[(b * s->q_heads + h) * s->q_len + i] =
                    !finite ? NAN : l > 0 ? (lt == -INFINITY ? -INFINITY : m + log2(l) + lt) : INFINITY;
            }
}

/* The largest score - threshold over the visible elements of rows [r0, r1] and keys [k0, k1]
   (+inf for a non-finite score: it cannot be ruled small); with stop_at_pass, it stops at the
   first margin >= 0. */
static double block_margin(const clsa_shape *s, ref_score_fn score, void *ctx, int64_t b, int64_t h, int64_t r0,
                           int64_t r1, int64_t k0, int64_t k1, const double *row_thr, bool stop_at_pass)
{
    double best = -INFINITY;
    for (int64_t i = r0; i <= r1 && !(stop_at_pass && best >= 0.0); ++i) {
        const int64_t lim = ref_last_visible(s, i);
        for (int64_t j = k0; j <= k1 && j <= lim && !(stop_at_pass && best >= 0.0); ++j) {
            const double sc = score(ctx, b, h, i, j);
            const double m = isfinite(sc) ? sc - row_thr[i - r0] : INFINITY;
            if (m > best)
                best = m;
        }
    }
    return best;
}

void ref_sale_mask(const clsa_shape *s, const ref_sale *p, const double *thr, ref_score_fn score, void *ctx,
                   uint8_t *keep, double *margin)
{
    const int64_t nqb = (s->q_len + p->block_q - 1) / p->block_q, nkb = (s->kv_len + p->block_k - 1) / p->block_k;
    double *row_thr = malloc(sizeof(double) * (size_t)p->block_q); /* the thresholds of a query block's rows */
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t qb = 0; qb < nqb; ++qb) {
                const int64_t row = (b * s->q_heads + h) * nqb + qb;
                const int64_t r0 = qb * p->block_q, r1 = (r0 + p->block_q < s->q_len ? r0 + p->block_q : s->q_len) - 1;
                const int64_t d0 = r0 + s->kv_len - s->q_len, d1 = r1 + s->kv_len - s->q_len;
                const int64_t last = ref_last_visible(s, r1);
                const int64_t sink_end = p->sink < s->kv_len ? p->sink : s->kv_len;
                int64_t f0 = local_first(d0, p->local, s->causal), f1 = local_last(d1, p->local, s->causal);
                f0 = f0 < d0 ? f0 : d0;
                f1 = f1 > d1 ? f1 : d1;
                f0 = f0 < 0 ? 0 : f0;
                f1 = f1 < last ? f1 : last;
                const bool dense = head_log2_tau(p, h) == -INFINITY;
                for (int64_t i = r0; i <= r1; ++i) {
                    const double t_i = thr[(b * s->q_heads + h) * s->q_len + i];
                    const int64_t lim = ref_last_visible(s, i);
                    row_thr[i - r0] = isnan(t_i) ? -INFINITY : t_i; /* every estimate passes */
                    if (!dense && t_i == INFINITY && lim >= 0) {
                        /* No sink or local key: the reference is the row's highest visible estimate. */
                        double best = -INFINITY;
                        for (int64_t j = 0; j <= lim; ++j) {
                            const double sc = score(ctx, b, h, i, j);
                            if (sc > best)
                                best = sc;
                        }
                        row_thr[i - r0] = best + fmin(head_log2_tau(p, h), 0.0);
                    }
                }
                for (int64_t kb = 0; kb < nkb; ++kb) {
                    const int64_t k0 = kb * p->block_k, k1 = k0 + p->block_k - 1;
                    uint8_t *out = &keep[row * nkb + kb];
                    double best = -INFINITY;
                    if (last < 0 || k0 > last) {
                        *out = 0;
                    } else if (dense || k0 < sink_end || (k1 >= f0 && k0 <= f1)) {
                        *out = 1;
                        best = INFINITY;
                    } else {
                        /* Without margins, the first passing element decides the block. */
                        best = block_margin(s, score, ctx, b, h, r0, r1, k0, k1, row_thr, !margin);
                        *out = best >= 0.0;
                        if (!*out && p->refine_log2 > 0.0 && p->exact) {
                            /* Rule 5: within refine_log2 of passing, exact scores decide. */
                            const double boundary = best + p->refine_log2;
                            const double exact = boundary >= 0.0 ? block_margin(s, p->exact, p->exact_ctx, b, h, r0, r1,
                                                                                k0, k1, row_thr, !margin)
                                                                 : -INFINITY;
                            *out = exact >= 0.0;
                            best = boundary < 0.0 || fabs(boundary) < fabs(exact) ? boundary : exact;
                        }
                    }
                    if (margin)
                        margin[row * nkb + kb] = best;
                }
            }
    free(row_thr);
}

/* ---- SALE's int4 quantization on the host ---- */

bool ref_int4_alloc(const clsa_shape *s, const void *q, int64_t group, ref_int4 *x)
{
    memset(x, 0, sizeof *x);
    x->shape = s;
    x->q = q;
    x->group = group;
    x->groups = (s->head_dim + group - 1) / group;
    const size_t bq = (size_t)(s->batch * s->q_heads), bk = (size_t)(s->batch * s->kv_heads);
    const size_t D = (size_t)s->head_dim, G = (size_t)x->groups, Lq = (size_t)s->q_len, Lk = (size_t)s->kv_len;
    x->q_codes = calloc(bq * Lq * D, 1);
    x->k_codes = calloc(bk * Lk * D, 1);
    x->q_scales = calloc(bq * Lq * G, sizeof(float));
    x->k_scales = calloc(bk * Lk * G, sizeof(float));
    x->k_mean = calloc(bk * D, sizeof(float));
    x->correction = calloc(bq * Lk, sizeof(float));
    x->row_term = calloc(bq * Lq, sizeof(double));
    if (x->q_codes && x->k_codes && x->q_scales && x->k_scales && x->k_mean && x->correction && x->row_term)
        return true;
    ref_int4_free(x);
    return false;
}

void ref_int4_free(ref_int4 *x)
{
    free(x->q_codes), free(x->k_codes), free(x->q_scales), free(x->k_scales), free(x->k_mean), free(x->correction);
    free(x->row_term);
    memset(x, 0, sizeof *x);
}

/* Channel c's mean over the finite values of the `len` tokens of one head, as token_mean sums it. */
static float token_mean(const void *x, clsa_dtype dtype, int64_t base, int64_t token_stride, int64_t len)
{
    float total = 0.0f;
    int64_t count = 0;
    for (int64_t t0 = 0; t0 < len; t0 += 64) {
        float part = 0.0f;
        for (int64_t t = t0; t < t0 + 64 && t < len; ++t) {
            const float v = (float)ref_load(x, dtype, base + t * token_stride);
            part += isfinite(v) ? v : 0.0f;
            count += isfinite(v);
        }
        total += part;
    }
    return count > 0 ? total / (float)count : 0.0f;
}

/* Smooths one token (xs = x - mean), sets its group scales and writes its codes. */
static void quantize_token(const void *x, clsa_dtype dtype, int64_t at, const float *mean, int64_t D, int64_t group,
                           float *xs, float *scales, int8_t *codes)
{
    const int64_t G = (D + group - 1) / group;
    for (int64_t g = 0; g < G; ++g)
        scales[g] = 0.0f;
    for (int64_t c = 0; c < D; ++c) {
        xs[c] = (float)ref_load(x, dtype, at + c) - mean[c];
        scales[c / group] = fmaxf(scales[c / group], isfinite(xs[c]) ? fabsf(xs[c]) : INFINITY);
    }
    for (int64_t g = 0; g < G; ++g) /* a group with a non-finite value: scale NaN, codes 0 */
        scales[g] = isinf(scales[g]) ? NAN : scales[g] / 7.0f;
    for (int64_t c = 0; c < D; ++c) {
        const float s = scales[c / group], inv = s > 0.0f ? 1.0f / s : 0.0f, code = xs[c] * inv;
        codes[c] = isnan(code) ? 0 : (int8_t)fminf(fmaxf(rintf(code), -7.0f), 7.0f);
    }
}

void ref_int4_quantize(const void *q, const void *k, ref_int4 *x)
{
    const clsa_shape *s = x->shape;
    const int64_t D = s->head_dim, G = x->groups, group = s->q_heads / s->kv_heads;
    const ref_strides qs = ref_resolve(s->q_strides, s->q_heads, s->q_len, D);
    const ref_strides ks = ref_resolve(s->k_strides, s->kv_heads, s->kv_len, D);
    float *q_mean = malloc(sizeof(float) * (size_t)(s->batch * s->q_heads * D)), *xs = malloc(sizeof(float) * (size_t)D);
    for (int64_t bq = 0; bq < s->batch * s->q_heads; ++bq) {
        const int64_t b = bq / s->q_heads, h = bq % s->q_heads, qbase = b * qs.batch + h * qs.head;
        for (int64_t c = 0; c < D; ++c)
            q_mean[bq * D + c] = token_mean(q, s->dtype, qbase + c, qs.token, s->q_len);
        for (int64_t i = 0; i < s->q_len; ++i)
            quantize_token(q, s->dtype, qbase + i * qs.token, q_mean + bq * D, D, x->group, xs,
                           x->q_scales + (bq * s->q_len + i) * G, x->q_codes + (bq * s->q_len + i) * D);
    }
    for (int64_t bk = 0; bk < s->batch * s->kv_heads; ++bk) {
        const int64_t b = bk / s->kv_heads, hk = bk % s->kv_heads, kbase = b * ks.batch + hk * ks.head;
        float *k_mean = x->k_mean + bk * D;
        for (int64_t c = 0; c < D; ++c)
            k_mean[c] = token_mean(k, s->dtype, kbase + c, ks.token, s->kv_len);
        for (int64_t j = 0; j < s->kv_len; ++j) {
            quantize_token(k, s->dtype, kbase + j * ks.token, k_mean, D, x->group, xs,
                           x->k_scales + (bk * s->kv_len + j) * G, x->k_codes + (bk * s->kv_len + j) * D);
            for (int64_t h = hk * group; h < (hk + 1) * group; ++h) { /* each query head of the group */
                const int64_t bq = b * s->q_heads + h;
                float dot = 0.0f;
                for (int64_t c = 0; c < D; ++c)
                    dot = fmaf(q_mean[bq * D + c], xs[c], dot);
                x->correction[bq * s->kv_len + j] = dot;
            }
        }
    }
    free(q_mean);
    free(xs);
    ref_int4_row_terms(x);
}

void ref_int4_row_terms(ref_int4 *x)
{
    const clsa_shape *s = x->shape;
    const int64_t D = s->head_dim, group = s->q_heads / s->kv_heads;
    const ref_strides qs = ref_resolve(s->q_strides, s->q_heads, s->q_len, D);
    for (int64_t bq = 0; bq < s->batch * s->q_heads; ++bq) {
        const int64_t b = bq / s->q_heads, h = bq % s->q_heads, bk = b * s->kv_heads + h / group;
        for (int64_t i = 0; i < s->q_len; ++i) {
            double t = 0.0;
            for (int64_t c = 0; c < D; ++c)
                t += ref_load(x->q, s->dtype, b * qs.batch + h * qs.head + i * qs.token + c) * x->k_mean[bk * D + c];
            x->row_term[bq * s->q_len + i] = t;
        }
    }
}

double ref_int4_score(void *ctx, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const ref_int4 *x = ctx;
    const clsa_shape *s = x->shape;
    const int64_t D = s->head_dim, G = x->groups, hk = h / (s->q_heads / s->kv_heads);
    const int64_t bq = b * s->q_heads + h, bk = b * s->kv_heads + hk;
    const int8_t *qc = x->q_codes + (bq * s->q_len + i) * D, *kc = x->k_codes + (bk * s->kv_len + j) * D;
    double est = x->correction[bq * s->kv_len + j];
    for (int64_t g = 0; g < G; ++g) {
        long dot = 0; /* exact, as the device's integer sums */
        for (int64_t c = g * x->group; c < D && c < (g + 1) * x->group; ++c)
            dot += qc[c] * kc[c];
        est += (double)dot * x->q_scales[(bq * s->q_len + i) * G + g] * x->k_scales[(bk * s->kv_len + j) * G + g];
    }
    est += x->row_term[bq * s->q_len + i];
    return est * s->scale * 1.4426950408889634;
}

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

static int64_t last_visible(const clsa_shape *s, int64_t row)
{
    int64_t last = s->kv_len - 1;
    if (s->causal && row + s->kv_len - s->q_len < last)
        last = row + s->kv_len - s->q_len;
    return last;
}

void ref_attention(const clsa_shape *s, const void *q, const void *k, const void *v,
                   const uint8_t *block_mask, int block_q, int block_k, double *o)
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
                const int64_t last = last_visible(s, i);
                const uint8_t *mrow = block_mask ? block_mask + ((b * Hq + h) * nqb + i / block_q) * nkb : NULL;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= last; ++j) {
                    if (mrow && !mrow[j / block_k]) {
                        scores[j] = -INFINITY;
                        continue;
                    }
                    double dot = 0.0;
                    for (int64_t c = 0; c < D; ++c)
                        dot += qrow[c] * kmat[j * D + c];
                    scores[j] = dot * scale;
                    if (scores[j] > mx)
                        mx = scores[j];
                }
                if (mx == -INFINITY)
                    continue; /* no visible key: zeros */
                double sum = 0.0;
                for (int64_t j = 0; j <= last; ++j) {
                    if (scores[j] == -INFINITY)
                        continue;
                    const double p = exp(scores[j] - mx);
                    sum += p;
                    for (int64_t c = 0; c < D; ++c)
                        out[c] += p * vmat[j * D + c];
                }
                for (int64_t c = 0; c < D; ++c)
                    out[c] /= sum;
            }
        }
    free(qrow);
    free(scores);
    free(kmat);
    free(vmat);
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
        const int64_t last = last_visible(s, i);
        if (last >= 0)
            pairs += (double)(last + 1);
    }
    return 4.0 * (double)s->head_dim * pairs * (double)(s->batch * s->q_heads);
}

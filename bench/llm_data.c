#include "llm_data.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the presets' parameters (see bench/README.md) ---- */
enum { SINK_TOKENS = 4, NEEDLES = 4 };
static const double ROPE_BASE = 500000.0; /* Llama-3.1's rope_theta */

/* Query-side gains of one head role. */
typedef struct role {
    double local, sink, heavy, needle, noise;
} role;

typedef struct preset {
    /* Key-side gains (every kv head carries every feature). */
    double key_local, key_sink, key_heavy, key_needle, key_noise;
    int heavy_hitters; /* keys per sequence */
    role roles[4]; /* streaming, retrieval, heavy-hitter, diffuse */
} preset;

static const preset PRESETS[] = {
    [LLM_PRESET_LLM] = {8.0, 12.0, 6.0, 8.0, 1.0, 8, {
        {6.0, 9.0, 2.0, 0.0, 1.0}, /* streaming: sink + local (StreamingLLM, DuoAttention streaming heads) */
        {3.0, 6.0, 2.0, 9.0, 1.0}, /* retrieval: looks far back at needles (DuoAttention retrieval heads) */
        {4.0, 7.0, 6.0, 0.0, 1.0}, /* heavy hitters: vertical stripes (MInference vertical-slash) */
        {3.0, 4.0, 1.5, 0.0, 1.5}, /* diffuse: weak structure, more noise */
    }},
    /* Prefill-sparse: the same structure, but with key noise 0.35 and query gains about twice as
       large, so that blocks holding no structure fall below SALE's threshold while sink, local,
       heavy-hitter and needle keys pass; and 235 heavy hitters, the density knob (bench/README.md). */
    [LLM_PRESET_SPARSE] = {8.0, 12.0, 6.0, 8.0, 0.35, SPARSE_HEAVY_HITTERS, {
        {17.0, 15.0, 21.7, 0.0, 1.0},
        {17.0, 15.0, 21.7, 17.0, 1.0},
        {17.0, 15.0, 21.7, 0.0, 1.0},
        {12.0, 15.0, 18.0, 0.0, 1.5},
    }},
};

typedef struct rng {
    uint64_t s;
} rng;
static uint64_t next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform(rng *r) { return ((double)(next(r) >> 11) + 0.5) * 0x1.0p-53; }
static double normal(rng *r) { return sqrt(-2.0 * log(uniform(r))) * cos(6.283185307179586 * uniform(r)); }

/* A random unit vector whose energy lies in rotary pairs [p0, p1) (pair p = channels p, p + D/2). */
static void band_vector(rng *r, int64_t d, int64_t p0, int64_t p1, double *out)
{
    memset(out, 0, sizeof(double) * (size_t)d);
    double norm = 0.0;
    for (int64_t p = p0; p < p1; ++p)
        for (int half = 0; half < 2; ++half) {
            const double x = normal(r);
            out[p + half * (d / 2)] = x;
            norm += x * x;
        }
    for (int64_t c = 0; c < d; ++c)
        out[c] /= sqrt(norm > 0 ? norm : 1.0);
}

/* Rotary embedding (the half-split convention of Llama): pair p rotates by pos * base^(-2p/D). */
static void rope(double *x, int64_t d, double pos)
{
    for (int64_t p = 0; p < d / 2; ++p) {
        const double theta = pos * pow(ROPE_BASE, -2.0 * (double)p / (double)d);
        const double c = cos(theta), s = sin(theta), a = x[p], b = x[p + d / 2];
        x[p] = a * c - b * s;
        x[p + d / 2] = a * s + b * c;
    }
}

void llm_data_generate(const clsa_shape *shape, uint64_t seed, void *q, void *k, void *v)
{
    llm_data_generate_preset(shape, seed, LLM_PRESET_LLM, q, k, v);
}

void llm_data_generate_preset(const clsa_shape *shape, uint64_t seed, llm_preset which, void *q, void *k, void *v)
{
    const preset *P = &PRESETS[which];
    const int64_t B = shape->batch, Hq = shape->q_heads, Hkv = shape->kv_heads, Lq = shape->q_len,
                  Lk = shape->kv_len, D = shape->head_dim, G = Hq / Hkv;
    const ref_strides qs = ref_resolve(shape->q_strides, Hq, Lq, D), ks = ref_resolve(shape->k_strides, Hkv, Lk, D);
    const ref_strides vs = ref_resolve(shape->v_strides, Hkv, Lk, D);
    /* Bands of rotary pairs: fast pairs carry position (locality decays with distance), the
       slowest pairs carry content that stays aligned over long distances. With D < 8 every band
       is the whole range. */
    const int64_t pairs = D / 2 > 0 ? D / 2 : 1;
    const int64_t fast_end = pairs >= 4 ? pairs / 2 : pairs, slow_start = pairs >= 4 ? pairs - pairs / 4 : 0;
    double *a_loc = malloc(sizeof(double) * (size_t)D), *u_sink = malloc(sizeof(double) * (size_t)D);
    double *u_heavy = malloc(sizeof(double) * (size_t)D), *needle = malloc(sizeof(double) * (size_t)(NEEDLES * D));
    double *x = malloc(sizeof(double) * (size_t)D);
    const int heavy_count = P->heavy_hitters;
    int64_t needle_pos[NEEDLES];
    /* How many heavy hitters sit at each key (two may draw the same position, and then add up). */
    uint16_t *heavy_at = malloc(sizeof(uint16_t) * (size_t)Lk);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t hk = 0; hk < Hkv; ++hk) {
            rng r = {seed * 0x100000001B3ull + (uint64_t)(b * Hkv + hk) * 7919u + 1};
            band_vector(&r, D, 0, fast_end, a_loc);
            band_vector(&r, D, slow_start, pairs, u_sink);
            band_vector(&r, D, slow_start, pairs, u_heavy);
            for (int n = 0; n < NEEDLES; ++n)
                band_vector(&r, D, slow_start, pairs, needle + n * D);
            memset(heavy_at, 0, sizeof(uint16_t) * (size_t)Lk);
            for (int n = 0; n < heavy_count; ++n)
                ++heavy_at[(int64_t)(uniform(&r) * (double)Lk)];
            for (int n = 0; n < NEEDLES; ++n) /* needles sit in the first 80% of the keys */
                needle_pos[n] = (int64_t)(uniform(&r) * 0.8 * (double)Lk);
            for (int64_t j = 0; j < Lk; ++j) {
                for (int64_t c = 0; c < D; ++c)
                    x[c] = P->key_local * a_loc[c] + P->key_noise * normal(&r);
                if (j < SINK_TOKENS)
                    for (int64_t c = 0; c < D; ++c)
                        x[c] += P->key_sink * u_sink[c];
                for (int n = 0; n < heavy_at[j]; ++n)
                    for (int64_t c = 0; c < D; ++c)
                        x[c] += P->key_heavy * u_heavy[c];
                for (int n = 0; n < NEEDLES; ++n)
                    if (needle_pos[n] == j)
                        for (int64_t c = 0; c < D; ++c)
                            x[c] += P->key_needle * needle[n * D + c];
                rope(x, D, (double)j);
                for (int64_t c = 0; c < D; ++c) {
                    ref_store(k, shape->dtype, b * ks.batch + hk * ks.head + j * ks.token + c, (float)x[c]);
                    ref_store(v, shape->dtype, b * vs.batch + hk * vs.head + j * vs.token + c, (float)normal(&r));
                }
            }
            for (int64_t g = 0; g < G; ++g) {
                const int64_t h = hk * G + g;
                const role *role = &P->roles[h % 4];
                for (int64_t i = 0; i < Lq; ++i) {
                    const double pos = (double)(i + Lk - Lq);
                    for (int64_t c = 0; c < D; ++c)
                        x[c] = role->local * a_loc[c] + role->sink * u_sink[c] + role->heavy * u_heavy[c] +
                               role->noise * normal(&r);
                    /* A retrieval query looks for one of the needles already behind it. */
                    int seen = 0;
                    for (int n = 0; n < NEEDLES; ++n)
                        seen += needle_pos[n] <= pos;
                    if (role->needle > 0 && seen > 0) {
                        int pick = (int)(i % seen), n = 0;
                        for (int m = 0; m < NEEDLES; ++m)
                            if (needle_pos[m] <= pos && pick-- == 0)
                                n = m;
                        for (int64_t c = 0; c < D; ++c)
                            x[c] += role->needle * needle[n * D + c];
                    }
                    rope(x, D, pos);
                    for (int64_t c = 0; c < D; ++c)
                        ref_store(q, shape->dtype, b * qs.batch + h * qs.head + i * qs.token + c, (float)x[c]);
                }
            }
        }
    free(a_loc), free(u_sink), free(u_heavy), free(needle), free(x), free(heavy_at);
}

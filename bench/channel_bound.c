/*
 * channel-bound: would a Quest-style pre-filter (arXiv 2406.10774) let the estimator skip work?
 *
 * The estimator must compute every score of a (query block, key block) pair that fails the SALE
 * rule, so failing blocks set its cost. A cheap bound could prove some of them fail first: with
 * the per-channel minimum and maximum of K over a group of keys, q.k <= sum_c max(q_c min_c,
 * q_c max_c) for every key of the group. This program measures, on the bench generator's data
 * and in float64 with exact scores, which share of the failing blocks that bound proves, for
 * groups of `--sub` keys inside each 32-key block (a smaller group is a tighter bound but costs
 * more). The rule is SALE's with clsa's defaults: sink 32, local 256, blocks 64 x 32, causal.
 *
 * usage: channel-bound [--seq N] [--head-dim D] [--tau T] [--sub S] [--data llm|sparse] [--seed N]
 */
#include "llm_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK_Q = 64, BLOCK_K = 32, SINK = 32, LOCAL = 256, HEADS = 2 };

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int c = 0; c < n; ++c)
        s += (double)a[c] * b[c];
    return s;
}

/* Row thresholds of the SALE rule in natural-log units: m + ln(tau * l) over the row's sink and
   local keys, with exact scores. */
static void row_thresholds(const float *q, const float *k, int L, int D, double scale, double tau, double *thr)
{
    for (int i = 0; i < L; ++i) {
        double m = -INFINITY, l = 0.0;
        for (int j = 0; j <= i; ++j) {
            if (j >= SINK && j <= i - LOCAL)
                j = i - LOCAL + 1; /* skip to the local keys */
            const double t = scale * dot(q + (long)i * D, k + (long)j * D, D);
            if (t > m) {
                l = l * exp(m - t) + 1.0;
                m = t;
            } else {
                l += exp(t - m);
            }
        }
        thr[i] = m + log(tau * l);
    }
}

int main(int argc, char **argv)
{
    int L = 8192, D = 128, sub = 16;
    double tau = 0.004;
    uint64_t seed = 1;
    llm_preset preset = LLM_PRESET_SPARSE;
    for (int a = 1; a < argc; ++a) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(argv[a], "--seq") && v) L = atoi(v), ++a;
        else if (!strcmp(argv[a], "--head-dim") && v) D = atoi(v), ++a;
        else if (!strcmp(argv[a], "--tau") && v) tau = atof(v), ++a;
        else if (!strcmp(argv[a], "--sub") && v) sub = atoi(v), ++a;
        else if (!strcmp(argv[a], "--seed") && v) seed = strtoull(v, NULL, 10), ++a;
        else if (!strcmp(argv[a], "--data") && v) preset = !strcmp(v, "llm") ? LLM_PRESET_LLM : LLM_PRESET_SPARSE, ++a;
        else {
            fprintf(stderr, "usage: channel-bound [--seq N] [--head-dim D] [--tau T] [--sub S] [--data llm|sparse] [--seed N]\n");
            return 2;
        }
    }
    if (L < BLOCK_Q || L % BLOCK_Q || D < 1 || D > 256 || sub < 1 || BLOCK_K % sub || !(tau > 0.0)) {
        fprintf(stderr, "channel-bound: --seq must be a multiple of %d, --sub divide %d, --tau be > 0\n", BLOCK_Q, BLOCK_K);
        return 2;
    }
    const clsa_shape shape = clsa_shape_make(1, HEADS, HEADS, L, L, D, CLSA_F32, 1);
    const size_t elems = (size_t)HEADS * L * D;
    float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4);
    float *kmin = malloc((size_t)L / sub * D * 4), *kmax = malloc((size_t)L / sub * D * 4);
    double *thr = malloc((size_t)L * 8);
    if (!q || !k || !v || !kmin || !kmax || !thr) {
        fprintf(stderr, "channel-bound: out of memory\n");
        return 1;
    }
    llm_data_generate_preset(&shape, seed, preset, q, k, v);
    const double scale = 1.0 / sqrt((double)D);
    long visible = 0, kept = 0, failing = 0, proved = 0;
    for (int h = 0; h < HEADS; ++h) {
        const float *Q = q + (size_t)h * L * D, *K = k + (size_t)h * L * D;
        for (int g = 0; g < L / sub; ++g)
            for (int c = 0; c < D; ++c) {
                float lo = INFINITY, hi = -INFINITY;
                for (int j = g * sub; j < (g + 1) * sub; ++j)
                    lo = fminf(lo, K[(long)j * D + c]), hi = fmaxf(hi, K[(long)j * D + c]);
                kmin[(long)g * D + c] = lo, kmax[(long)g * D + c] = hi;
            }
        row_thresholds(Q, K, L, D, scale, tau, thr);
        for (int qb = 0; qb < L / BLOCK_Q; ++qb) {
            const int row0 = qb * BLOCK_Q, row_end = row0 + BLOCK_Q;
            for (int k0 = 0; k0 < row_end; k0 += BLOCK_K) {
                ++visible;
                /* Forced: sink keys, or local keys of some row of the block. */
                if (k0 < SINK || k0 + BLOCK_K - 1 > row0 - LOCAL) {
                    ++kept;
                    continue;
                }
                int passes = 0;
                for (int i = row0; i < row_end && !passes; ++i)
                    for (int j = k0; j < k0 + BLOCK_K && j <= i && !passes; ++j)
                        passes = scale * dot(Q + (long)i * D, K + (long)j * D, D) >= thr[i];
                if (passes) {
                    ++kept;
                    continue;
                }
                ++failing;
                int bound_passes = 0;
                for (int i = row0; i < row_end && !bound_passes; ++i)
                    for (int g = k0 / sub; g < (k0 + BLOCK_K) / sub && !bound_passes; ++g) {
                        double b = 0.0;
                        for (int c = 0; c < D; ++c) {
                            const double x = Q[(long)i * D + c];
                            b += x > 0 ? x * kmax[(long)g * D + c] : x * kmin[(long)g * D + c];
                        }
                        bound_passes = scale * b >= thr[i];
                    }
                proved += !bound_passes;
            }
        }
    }
    printf("seq %d, head_dim %d, %d heads, tau %g, %s data, seed %llu: %ld visible blocks, %.3f kept; of the %ld "
           "failing blocks the %d-key channel bound proves %ld (%.4f)\n",
           L, D, HEADS, tau, preset == LLM_PRESET_LLM ? "llm" : "sparse", (unsigned long long)seed, visible,
           (double)kept / visible, failing, sub, proved, failing ? (double)proved / failing : 0.0);
    free(q), free(k), free(v), free(kmin), free(kmax), free(thr);
    return 0;
}

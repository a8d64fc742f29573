/*
 * Checks the recall test's bound over many seeds on the host, with no kernels: LLM-like data as
 * the test draws it, the float64 SALE rule on host int4 codes (bench/reference.c mirrors
 * cl/quantize.cl) against the same rule on exact scores.
 *
 *   ./build/tests/recall-seeds [--small] [--seeds N] [--first S]
 *
 * Prints the distribution of misses and every seed that fails the bound; exits 1 if any does.
 */
#include "llm_data.h"
#include "recall.h"
#include "reference.h"
#include "internal.h" /* CLSA_QUANT_GROUP: the channels per int4 scale */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    bool small = false;
    uint64_t seeds = 1000, first = 1;
    for (int a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--small"))
            small = true;
        else if (!strcmp(argv[a], "--seeds") && a + 1 < argc)
            seeds = strtoull(argv[++a], NULL, 0);
        else if (!strcmp(argv[a], "--first") && a + 1 < argc)
            first = strtoull(argv[++a], NULL, 0);
        else {
            fprintf(stderr, "usage: %s [--small] [--seeds N] [--first S]\n", argv[0]);
            return 2;
        }
    }
    clsa_shape s = recall_shape(small);
    s.scale = (float)(1.0 / sqrt((double)s.head_dim));
    const clsa_sparsity sp = recall_sparsity(CLSA_METHOD_SALE, small);
    float tau[4] = {sp.tau, sp.tau, sp.tau, sp.tau};
    ref_sale p = {tau, sp.sink_tokens, sp.local_tokens, sp.block_q, sp.block_k, 0.0, NULL, NULL};
    const int64_t nqb = (s.q_len + sp.block_q - 1) / sp.block_q, nkb = (s.kv_len + sp.block_k - 1) / sp.block_k;
    const int64_t n = s.batch * s.q_heads * nqb * nkb;
    const size_t q_elems = (size_t)(s.batch * s.q_heads * s.q_len * s.head_dim);
    const size_t k_elems = (size_t)(s.batch * s.kv_heads * s.kv_len * s.head_dim);
    float *q = malloc(q_elems * 4), *k = malloc(k_elems * 4), *v = malloc(k_elems * 4);
    double *thr = malloc(sizeof(double) * (size_t)(s.batch * s.q_heads * s.q_len));
    uint8_t *oracle = malloc((size_t)n), *sale = malloc((size_t)n);
    ref_int4 codes;
    if (!q || !k || !v || !thr || !oracle || !sale || !ref_int4_alloc(&s, q, CLSA_QUANT_GROUP, &codes)) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    int64_t failures = 0, worst_misses = 0, histogram[8] = {0};
    double worst_recall = 1.0, sum_recall = 0.0, sum_oracle = 0.0;
    for (uint64_t seed = first; seed < first + seeds; ++seed) {
        llm_data_generate(&s, seed ^ RECALL_DATA_STREAM, q, k, v);
        ref_sale_thresholds(&s, q, k, &p, thr);
        ref_exact_scores exact = {&s, q, k};
        p.refine_log2 = 0.0; /* the oracle */
        ref_sale_mask(&s, &p, thr, ref_exact_score, &exact, oracle, NULL);
        ref_int4_quantize(q, k, &codes);
        /* the library's rule: int4 estimates and the exact second look (clsa.h, rule 5) */
        p.refine_log2 = sp.refine_nats * 1.4426950408889634, p.exact = ref_exact_score, p.exact_ctx = &exact;
        ref_sale_mask(&s, &p, thr, ref_int4_score, &codes, sale, NULL);
        const recall_tally t = recall_count(sale, oracle, n);
        const int64_t misses = t.in_oracle - t.found;
        const double r = recall_value(t);
        ++histogram[misses < 7 ? misses : 7];
        worst_misses = misses > worst_misses ? misses : worst_misses;
        worst_recall = r < worst_recall ? r : worst_recall;
        sum_recall += r, sum_oracle += (double)t.in_oracle;
        if (!recall_passes(t)) {
            ++failures;
            printf("seed %llu fails: %lld misses of %lld oracle blocks (recall %.4f, allowed %lld)\n",
                   (unsigned long long)seed, (long long)misses, (long long)t.in_oracle, r,
                   (long long)recall_allowed_misses(t.in_oracle));
        }
    }
    printf("%s shape L%lld D%lld, %llu seeds from %llu: mean oracle blocks %.1f, mean recall %.5f, worst %.5f "
           "(%lld misses)\n", small ? "small" : "full", (long long)s.q_len, (long long)s.head_dim,
           (unsigned long long)seeds, (unsigned long long)first, sum_oracle / (double)seeds,
           sum_recall / (double)seeds, worst_recall, (long long)worst_misses);
    printf("misses per seed: ");
    for (int m = 0; m < 8; ++m)
        printf("%s%d: %lld", m ? ", " : "", m, (long long)histogram[m]);
    printf(" (7 means 7 or more)\n%lld of %llu seeds fail the bound\n", (long long)failures, (unsigned long long)seeds);
    ref_int4_free(&codes);
    free(q), free(k), free(v), free(thr), free(oracle), free(sale);
    return failures ? 1 : 0;
}

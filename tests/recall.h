/*
 * Recall of SALE's block mask against the exact-score oracle: the shape and settings the test
 * uses, the tally, and the bound it is held to. Shared by tests/test_sparse.c (device masks) and
 * tests/recall_seeds.c (host masks over many seeds), so the bound checked over 1,000 seeds is the
 * one the test applies.
 */
#ifndef CLSA_TEST_RECALL_H
#define CLSA_TEST_RECALL_H

#include "clsa/clsa.h"

#include <stdbool.h>
#include <stdint.h>

/* SALE defaults; at the oclgrind setup's small shapes, windows and blocks small enough that
   some blocks are estimated rather than forced. */
clsa_sparsity recall_sparsity(clsa_method method, bool small);

/* The recall test's shape: independent sequences of 4 heads (one of each LLM-like role). */
clsa_shape recall_shape(bool small);

/* The stream number the test's LLM-like data is drawn from (seed ^ stream). */
#define RECALL_DATA_STREAM 31

typedef struct recall_tally {
    int64_t in_oracle; /* blocks the oracle keeps */
    int64_t found;     /* of those, blocks SALE keeps too */
    int64_t in_sale;   /* blocks SALE keeps */
} recall_tally;

recall_tally recall_count(const uint8_t *sale, const uint8_t *oracle, int64_t n);
double recall_value(recall_tally t);
/* Misses the bound allows for this many oracle blocks (see recall.c for why). */
int64_t recall_allowed_misses(int64_t in_oracle);
bool recall_passes(recall_tally t);

#endif

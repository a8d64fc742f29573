/*
 * PyTorch's CPU torch.nn.functional.scaled_dot_product_attention as an anchor: what a user of the
 * most common framework gets on the same CPU. clsa-bench hands its Q/K/V to bench/torch_sdpa.py
 * (as .npy files in a temporary directory) and reads back the script's JSON line and output.
 * Torch is never a build or test dependency: without it the anchor reports why and is skipped.
 *
 * The Python that runs the script, first found of:
 *   1. $CLSA_TORCH_PYTHON;
 *   2. build/torch-venv/bin/python in the source tree (what bench/torch-venv.sh creates);
 *   3. python3 on PATH.
 */
#ifndef CLSA_BENCH_TORCH_ANCHOR_H
#define CLSA_BENCH_TORCH_ANCHOR_H

#include "clsa/clsa.h"

#include <stddef.h>

typedef struct torch_sdpa_run {
    double median_ms;
    int threads;       /* what torch.get_num_threads() said */
    char version[48];  /* torch.__version__ */
    char backend[96];  /* the aten kernel that ran (e.g. the CPU flash kernel), or "unknown" */
    char gqa[24];      /* how K/V heads met Q heads: none, enable_gqa or repeat_interleave */
} torch_sdpa_run;

/* Runs the script on host q, k, v (contiguous f32 in the shape's [B, H, L, D] layout) with
   `threads` torch threads (0: torch's default): `warmup` untimed calls, then `repeat` timed ones.
   Fills run and out (the output, q's size). Returns 0, or -1 with the reason in why (not f32, no
   Python that imports torch, the script or its files failed). */
int torch_sdpa_anchor(const clsa_shape *shape, const float *q, const float *k, const float *v, int threads,
                      int repeat, int warmup, torch_sdpa_run *run, float *out, char *why, size_t why_size);

#endif

/*
 * Per-head SALE thresholds from calibration tensors: the search behind clsa-calibrate.
 *
 * For every query head, the largest tau on the grid calibrate_grid_tau(0..CALIBRATE_GRID-1) =
 * 0.512 * 2^-i (0.512 down to 1.6e-5) whose SALE output stays within rel_l1 <= theta of dense
 * attention on the same device, rel_l1 = sum |o - o_dense| / sum |o_dense| over the head's outputs;
 * 0 (a dense head) when no grid tau does. Each grid point runs SALE once with every head at that
 * tau: a head's output depends on its own tau alone.
 */
#ifndef CLSA_BENCH_CALIBRATE_H
#define CLSA_BENCH_CALIBRATE_H

#include "clsa/clsa.h"

enum { CALIBRATE_GRID = 16 };
float calibrate_grid_tau(int i);

/* q, k, v: host f32 arrays of `shape` (dtype CLSA_F32, contiguous). sale: the SALE settings other
   than tau (sink, local, blocks). Writes tau[q_heads]; when not NULL, rel_l1[i * q_heads + h] and
   density[i * q_heads + h] for grid point i. Returns the first failing status (the context's last
   error has its message), writing no tau then. */
clsa_status calibrate_heads(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sale, const float *q,
                            const float *k, const float *v, double theta, float *tau, double *rel_l1, double *density);

#endif

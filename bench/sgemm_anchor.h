/* The OpenBLAS SGEMM anchor: the practical f32 matrix-work ceiling of the host CPU. */
#ifndef CLSA_BENCH_SGEMM_ANCHOR_H
#define CLSA_BENCH_SGEMM_ANCHOR_H

/* GFLOP/s of an n x n x n SGEMM, median of `repeat` runs after one warm-up; < 0 when clsa-bench
   was built without OpenBLAS. */
double bench_sgemm_gflops(int n, int repeat);

#endif

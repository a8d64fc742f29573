/*
 * The device's own FMA peak, measured with a probe kernel (bench/fma_peak.c): many independent
 * fused multiply-add chains per work-item on wide vectors, timed on the host. clsa-bench --anchors
 * reports each row's rate as a fraction of the f32 figure.
 */
#ifndef CLSA_BENCH_FMA_PEAK_H
#define CLSA_BENCH_FMA_PEAK_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>

typedef struct fma_peak {
    double gflops;   /* 2 flops per lane FMA / median time */
    double ms;       /* median wall time of one run (enqueue to clFinish) */
    long iters;      /* loop trips per work-item (each trip: 2 FMAs on every accumulator) */
    size_t global;   /* work-items (local size left to the runtime) */
    int vec, accs;   /* vector width and independent vector accumulators per work-item */
    int runs;        /* timed runs behind the median */
} fma_peak;

/* Measures the f32 (half = 0) or f16 (half = 1) FMA peak of dev on queue: calibrates the loop
   count, warms up once, then takes the median of 5 runs. Returns 0 with *out filled; 1 when the
   precision is not available on the device (f16 without cl_khr_fp16), with the reason in why;
   -1 on an OpenCL error, a build failure or a probe result that fails the host check. */
int fma_peak_measure(cl_context ctx, cl_device_id dev, cl_command_queue queue, int half, fma_peak *out, char *why,
                     size_t why_size);

#endif

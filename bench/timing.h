/* Host timing helpers for bench/: a monotonic clock and medians. */
#ifndef CLSA_BENCH_TIMING_H
#define CLSA_BENCH_TIMING_H

#include <stddef.h>

double bench_now_ms(void);
/* Median of n samples (sorts them in place). */
double bench_median(double *samples, size_t n);

#endif

/* `clsa-bench --info`: what clsa read from a context's device, for bug reports. */
#ifndef CLSA_BENCH_DEVICE_INFO_H
#define CLSA_BENCH_DEVICE_INFO_H

#include <clsa/clsa.h>
#include <stdio.h>

/* Prints clsa_context_device_info and the extension list, one field per line. */
void device_info_print(FILE *f, const clsa_context *ctx);

#endif

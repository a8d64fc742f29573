/*
 * The unfused OpenCL attention a user could assemble today from a BLAS: per head and per chunk of
 * query rows, S = scale * Q K^T with CLBlast's SGEMM, a row softmax kernel (causal mask applied
 * there), then O = P V with SGEMM again, on clsa's device and queue. It computes every score,
 * masked ones included, as such code does. The anchor clsa's fused kernels are compared with.
 */
#ifndef CLSA_BENCH_CLBLAST_ANCHOR_H
#define CLSA_BENCH_CLBLAST_ANCHOR_H

#include "clsa/clsa.h"

/* Runs the anchor on contiguous f32 q, k, v into o (the shape's layout): `warmup` untimed calls,
   then the median of `repeat` timed ones, in *ms. Returns 0, or -1 with the reason in why (built
   without CLBlast, a dtype other than f32, strided tensors, an OpenCL or CLBlast error). */
int clblast_attention_ms(clsa_context *ctx, cl_command_queue queue, const clsa_shape *shape, cl_mem q, cl_mem k,
                         cl_mem v, cl_mem o, int repeat, int warmup, double *ms, char *why, size_t why_size);

#endif

/* Shared test support: the device, seeded random inputs, and one dense run against the reference. */
#ifndef CLSA_TEST_HARNESS_H
#define CLSA_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "clsa/clsa.h"
#include "reference.h"

/* Seed of this run: CLSA_TEST_SEED if set, else from the clock. Printed by harness_init. */
extern uint64_t harness_seed;
/* True under `meson test --setup oclgrind` (CLSA_TEST_SMALL=1): tests shrink their shapes. */
extern int harness_small;

/* Reads the seed and prints it. Call first in main(). */
void harness_init(const char *suite);

/* A context on the default device with the given style. Fails the test (never skips) when there
   is no OpenCL device. */
clsa_context *harness_context(clsa_kernel_style style);
/* The same with tuning keys ("key=value,...", clsa_context_options.tuning); NULL: none. */
clsa_context *harness_tuned_context(clsa_kernel_style style, const char *tuning);

/* xoshiro-style generator seeded from harness_seed and a per-call stream number. */
typedef struct harness_rng {
    uint64_t s[2];
} harness_rng;
harness_rng harness_rng_make(uint64_t stream);
double harness_uniform(harness_rng *r);  /* [0, 1) */
double harness_normal(harness_rng *r);   /* N(0, 1) */

/* A host array of `elements` storage elements of dtype, filled with N(0, sd) values. */
void *harness_random_tensor(harness_rng *r, clsa_dtype dtype, int64_t elements, double sd);

/* Sizes of the four tensors of a shape, in elements. */
void harness_tensor_elements(const clsa_shape *s, int64_t *q, int64_t *k, int64_t *v, int64_t *o);

/* Device buffers for a shape, filled from host arrays (o is poisoned with 0xFF bytes, a NaN in
   every dtype). */
typedef struct harness_buffers {
    cl_command_queue queue;
    cl_mem q, k, v, o;
    void *hq, *hk, *hv, *ho;
    size_t q_bytes, k_bytes, v_bytes, o_bytes;
} harness_buffers;
void harness_buffers_make(clsa_context *ctx, const clsa_shape *s, harness_rng *rng, harness_buffers *b);
void harness_buffers_release(harness_buffers *b);
/* The same, holding seeded LLM-like data (bench/llm_data.h) instead of N(0, 1) values. */
void harness_llm_buffers(clsa_context *ctx, const clsa_shape *s, uint64_t stream, harness_buffers *b);
/* Reads o back into b->ho. */
void harness_read_o(harness_buffers *b);

/* Runs dense attention for the shape and returns the max relative error against the float64
   reference; also checks that output elements outside the tensor's rows are untouched. */
double harness_dense_error(clsa_context *ctx, const clsa_shape *s, uint64_t stream);

/* Tolerance of a dtype against a float64 reference computed on the same rounded inputs: f32 is
   the project's 1e-5 bound; f16 and bf16 outputs are rounded to their storage on the way out, which
   costs up to one half-ulp (2^-11 and 2^-8 relative), so the bound is 1.25 half-ulps. */
double harness_tolerance(clsa_dtype dtype);

const char *harness_dtype_name(clsa_dtype dtype);

/* A host copy of `bytes` of a buffer from `offset` (blocking read); the caller frees it. */
void *harness_read_buffer(cl_command_queue queue, cl_mem m, size_t offset, size_t bytes);
/* A read-write buffer of `bytes`, filled from init when it is not NULL. */
cl_mem harness_new_buffer(clsa_context *ctx, size_t bytes, const void *init);
/* The block mask a sparse plan left in its workspace, as a bitmap [rows][num_k_blocks] (caller
   frees); the queue must have finished the work that wrote it. */
uint8_t *harness_workspace_bitmap(cl_command_queue queue, const clsa_plan *plan, cl_mem ws);

/* A test once per kernel style; the test reads its style from *state. */
#define BOTH(f) cmocka_unit_test_prestate(f, (void *)(intptr_t)CLSA_STYLE_CPU), \
                cmocka_unit_test_prestate(f, (void *)(intptr_t)CLSA_STYLE_GPU)

#endif

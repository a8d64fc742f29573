/*
 * Fault injection: every OpenCL call the library makes is made to fail in turn (tests/fault_layer.c
 * wraps them at link time). Each failure must give a clear status and message, leak nothing
 * (LeakSanitizer, in the sanitizer build) and leave the context usable for the next plan; a call
 * the library can do without (a cache write, a build log) may fail silently, but then the result
 * must still be right. The test prints how many failure points it covered, and fails unless every
 * wrapped entry point was made to fail at least once.
 */
#include "fault_layer.h"
#include "harness.h"
#include "internal.h" /* clsa_program_get, to build a broken kernel */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Inputs and float64 references of the two runs of the scenario. */
typedef struct inputs {
    clsa_shape shape;
    float *q, *k, *v, *o;
    double *want_dense;
    int64_t no;
    char cache_dir[64];
} inputs;

static clsa_sparsity sale_settings(void)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.sink_tokens = 8, sp.local_tokens = 16, sp.block_q = sp.block_k = 16;
    return sp;
}

static bool output_matches(const inputs *in, const double *want)
{
    return ref_max_rel_error(&in->shape, in->o, want) <= 1e-5;
}

/* What one run of the scenario did: the first failing status and where. */
typedef struct outcome {
    clsa_status status;
    const char *step;
    char message[512];
    clsa_context *ctx; /* kept for the after-check; NULL when context creation failed */
} outcome;

static void note(outcome *r, clsa_status st, const char *step)
{
    r->status = st, r->step = step;
    snprintf(r->message, sizeof r->message, "%s", r->ctx ? clsa_context_last_error(r->ctx) : "");
}

/* Context (with the binary cache on), a SALE plan (unless dense_only) and a dense plan, each run
   on host arrays: buffers, a queue, every stage's kernels, the read-back. */
static void run_scenario(inputs *in, const double *want_sale, bool dense_only, outcome *r)
{
    memset(r, 0, sizeof *r);
    clsa_context_options opt = {0};
    opt.cache_dir = in->cache_dir;
    clsa_status st = clsa_context_create_default(&opt, &r->ctx);
    if (st) {
        r->ctx = NULL;
        return note(r, st, "context");
    }
    clsa_sparsity sp = sale_settings();
    clsa_plan *sale = NULL, *dense = NULL;
    if (dense_only)
        goto dense_plan;
    if ((st = clsa_plan_create(r->ctx, &in->shape, &sp, &sale)))
        return note(r, st, "SALE plan");
    for (int64_t e = 0; e < in->no; ++e)
        in->o[e] = -1.0f;
    if ((st = clsa_attention_host(sale, NULL, in->q, in->k, in->v, in->o))) {
        clsa_plan_release(sale);
        return note(r, st, "SALE attention");
    }
    if (want_sale && !output_matches(in, want_sale)) {
        clsa_plan_release(sale);
        return note(r, CLSA_SUCCESS, "SALE output differs");
    }
    clsa_plan_release(sale);
dense_plan:
    if ((st = clsa_plan_create(r->ctx, &in->shape, NULL, &dense)))
        return note(r, st, "dense plan");
    for (int64_t e = 0; e < in->no; ++e)
        in->o[e] = -1.0f;
    st = clsa_attention_host(dense, NULL, in->q, in->k, in->v, in->o);
    clsa_plan_release(dense);
    if (st)
        return note(r, st, "dense attention");
    if (!output_matches(in, in->want_dense))
        return note(r, CLSA_SUCCESS, "dense output differs");
    r->step = "none";
}

/* After a failure, the same context must still make a plan and compute the right output. */
static void check_context_still_usable(inputs *in, clsa_context *ctx, long point)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, &in->shape, NULL, &plan);
    if (st)
        fail_msg("failure point %ld: the context cannot make a plan afterwards: %s", point, clsa_context_last_error(ctx));
    st = clsa_attention_host(plan, NULL, in->q, in->k, in->v, in->o);
    if (st || !output_matches(in, in->want_dense))
        fail_msg("failure point %ld: the context computes wrong results afterwards (%s)", point, clsa_status_string(st));
    clsa_plan_release(plan);
}

static void empty_cache(const inputs *in)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s/*", in->cache_dir);
    assert_int_equal(system(cmd), 0);
}

/* Fails each call of the scenario in turn. With a fresh cache, every program is built from source
   and stored; otherwise it is loaded from the entries a first run wrote. The fresh-cache pass runs
   the dense plan alone: it reaches the same source-build and store calls, and a source build
   takes seconds on some implementations (Intel's CPU runtime), once per failure point. */
static void fail_each_call(inputs *in, const double *want_sale, bool fresh_cache, long *points_out,
                           long fired_per_entry[FAULT_ENTRY_COUNT])
{
    outcome clean;
    run_scenario(in, NULL, fresh_cache, &clean); /* fills the cache */
    if (clean.ctx)
        clsa_context_release(clean.ctx);
    if (fresh_cache)
        empty_cache(in);
    fault_arm(-1);
    run_scenario(in, NULL, fresh_cache, &clean);
    const long points = fault_disarm();
    if (clean.status || strcmp(clean.step, "none"))
        fail_msg("the clean run failed at %s: %s", clean.step, clean.message);
    clsa_context_release(clean.ctx);

    long failed_cleanly = 0, absorbed = 0;
    for (long point = 0; point < points; ++point) {
        outcome r;
        if (fresh_cache)
            empty_cache(in);
        fault_arm(point);
        run_scenario(in, want_sale, fresh_cache, &r);
        fault_disarm();
        fault_entry where = FAULT_ENTRY_COUNT;
        if (!fault_fired(&where))
            fail_msg("failure point %ld of %ld was never reached", point, points);
        ++fired_per_entry[where];
        if (r.status != CLSA_SUCCESS) {
            /* A clear status, and (once a context exists) a message naming what failed. */
            if (r.ctx && !r.message[0])
                fail_msg("failure point %ld (%s) at %s gave %s with no message", point, fault_entry_name(where), r.step,
                         clsa_status_string(r.status));
            ++failed_cleanly;
        } else if (strcmp(r.step, "none")) {
            fail_msg("failure point %ld (%s): reported success but %s", point, fault_entry_name(where), r.step);
        } else {
            ++absorbed; /* the library did without that call, and the results are right */
        }
        if (r.ctx) {
            check_context_still_usable(in, r.ctx, point);
            clsa_context_release(r.ctx);
        }
    }
    printf("# %s cache: %ld failure points, %ld gave an error status with a message, %ld were absorbed with "
           "correct results\n", fresh_cache ? "empty" : "filled", points, failed_cleanly, absorbed);
    *points_out += points;
}

/* A kernel that fails to build: the build log is read only then, so its failure is tested here. */
static void fail_build_log_calls(long *points_out, long fired_per_entry[FAULT_ENTRY_COUNT])
{
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    for (long point = 0;; ++point) {
        cl_program p = NULL;
        fault_arm(point);
        clsa_status st = clsa_program_get(ctx, "broken", "__kernel void k(void) { this is not C; }", "-DFAULTS=1", &p);
        fault_disarm();
        fault_entry where;
        if (!fault_fired(&where))
            break;
        ++fired_per_entry[where];
        ++*points_out;
        assert_true(st != CLSA_SUCCESS);
        assert_non_null(strstr(clsa_context_last_error(ctx), "cl/broken.cl"));
    }
    clsa_context_release(ctx);
}

static void test_every_call_fails_cleanly(void **state)
{
    (void)state;
    inputs in = {0};
    in.shape = clsa_shape_make(1, 2, 1, harness_small ? 32 : 64, harness_small ? 32 : 64, 16, CLSA_F32, 1);
    harness_rng rng = harness_rng_make(91);
    int64_t nq, nk, nv;
    harness_tensor_elements(&in.shape, &nq, &nk, &nv, &in.no);
    in.q = harness_random_tensor(&rng, CLSA_F32, nq, 1.0), in.k = harness_random_tensor(&rng, CLSA_F32, nk, 1.0);
    in.v = harness_random_tensor(&rng, CLSA_F32, nv, 1.0), in.o = malloc(sizeof(float) * (size_t)in.no);
    in.want_dense = malloc(sizeof(double) * (size_t)in.no);
    ref_attention(&in.shape, in.q, in.k, in.v, NULL, 0, 0, in.want_dense);
    snprintf(in.cache_dir, sizeof in.cache_dir, "/tmp/clsa-faults-XXXXXX");
    assert_non_null(mkdtemp(in.cache_dir));

    /* The SALE output of a clean run is the reference for the faulted runs (the same kernels on
       the same inputs give the same bytes). */
    double *want_sale = malloc(sizeof(double) * (size_t)in.no);
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    clsa_sparsity sp = sale_settings();
    clsa_plan *sale = NULL;
    assert_int_equal(clsa_plan_create(ctx, &in.shape, &sp, &sale), CLSA_SUCCESS);
    assert_int_equal(clsa_attention_host(sale, NULL, in.q, in.k, in.v, in.o), CLSA_SUCCESS);
    for (int64_t e = 0; e < in.no; ++e)
        want_sale[e] = in.o[e];
    clsa_plan_release(sale);
    clsa_context_release(ctx);

    long points = 0, fired_per_entry[FAULT_ENTRY_COUNT] = {0};
    fail_each_call(&in, want_sale, false, &points, fired_per_entry);
    fail_each_call(&in, want_sale, true, &points, fired_per_entry);
    fail_build_log_calls(&points, fired_per_entry);
    printf("# %ld failure points in all; per entry point:\n", points);
    int missing = 0;
    for (int e = 0; e < FAULT_ENTRY_COUNT; ++e) {
        printf("#   %-26s %ld\n", fault_entry_name((fault_entry)e), fired_per_entry[e]);
        missing += fired_per_entry[e] == 0;
    }
    if (missing)
        fail_msg("%d wrapped entry points were never made to fail", missing);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", in.cache_dir);
    assert_int_equal(system(cmd), 0);
    free(want_sale), free(in.q), free(in.k), free(in.v), free(in.o), free(in.want_dense);
}

/* A call rejected for a bad argument allocates nothing, not even the plan's own workspace. */
static void test_rejected_call_allocates_nothing(void **state)
{
    (void)state;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, NULL, &plan), CLSA_SUCCESS);
    cl_int err;
    cl_command_queue queue = clCreateCommandQueue(clsa_context_cl_context(ctx), clsa_context_device(ctx), 0, &err);
    cl_mem tiny = clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE, 16, NULL, &err);
    fault_arm(-1);
    clsa_status st = clsa_attention(plan, queue, tiny, tiny, tiny, tiny, NULL, 0, NULL, NULL);
    fault_disarm();
    assert_int_equal(st, CLSA_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(fault_calls_of(FAULT_clCreateBuffer), 0);
    clReleaseMemObject(tiny);
    clReleaseCommandQueue(queue);
    clsa_plan_release(plan);
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("faults");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejected_call_allocates_nothing),
        cmocka_unit_test(test_every_call_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

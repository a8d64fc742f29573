/*
 * clsa-demo: dense attention on the default device (CLSA_DEVICE picks another), timed, and
 * checked against the float64 host reference.
 */
#include "reference.h"
#include "timing.h"

#include "clsa/clsa.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(clsa_context *ctx, clsa_status st, const char *what)
{
    fprintf(stderr, "clsa-demo: %s: %s %s\n", what, clsa_status_string(st), ctx ? clsa_context_last_error(ctx) : "");
    return 1;
}

int main(void)
{
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(NULL, &ctx);
    if (st)
        return fail(NULL, st, "no OpenCL device");
    const clsa_shape shape = clsa_shape_make(1, 4, 2, 2048, 2048, 128, CLSA_F32, 1);
    printf("clsa %s on \"%s\" (%s-style kernels)\n", clsa_version(), clsa_context_device_name(ctx),
           clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu");
    printf("dense causal attention: batch 1, 4 query heads on 2 kv heads, 2048 tokens, head_dim 128, f32\n");

    const size_t n = 4 * 2048 * 128, nkv = 2 * 2048 * 128;
    float *q = malloc(n * 4), *k = malloc(nkv * 4), *v = malloc(nkv * 4), *o = malloc(n * 4);
    srand(1);
    for (size_t i = 0; i < n; ++i)
        q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < nkv; ++i) {
        k[i] = (float)rand() / RAND_MAX - 0.5f;
        v[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    clsa_plan *plan = NULL;
    double t0 = bench_now_ms();
    st = clsa_plan_create(ctx, &shape, NULL, &plan);
    if (st)
        return fail(ctx, st, "clsa_plan_create");
    printf("plan (kernel build): %.1f ms\n", bench_now_ms() - t0);

    double times[5];
    for (int r = -1; r < 5; ++r) { /* one warm-up run */
        t0 = bench_now_ms();
        st = clsa_attention_host(plan, NULL, q, k, v, o);
        if (st)
            return fail(ctx, st, "clsa_attention_host");
        if (r >= 0)
            times[r] = bench_now_ms() - t0;
    }
    const double ms = bench_median(times, 5);
    printf("median of 5 (host call, copies included): %.2f ms, %.1f GFLOP/s\n", ms,
           ref_attention_flops(&shape) / (ms * 1e6));

    double *want = malloc(n * sizeof(double));
    ref_attention(&shape, q, k, v, NULL, 0, 0, want);
    const double err = ref_max_rel_error(&shape, o, want);
    printf("max relative error against the float64 reference: %.3g (%s)\n", err, err <= 1e-5 ? "ok" : "TOO LARGE");
    free(want), free(q), free(k), free(v), free(o);
    clsa_plan_release(plan);
    clsa_context_release(ctx);
    return err <= 1e-5 ? 0 : 1;
}

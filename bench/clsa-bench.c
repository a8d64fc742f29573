/*
 * clsa-bench: times clsa attention and its anchors on one device, and prints a table (and JSON).
 *
 *   clsa-bench [--seq N] [--kv-seq N] [--batch N] [--heads N] [--kv-heads N] [--head-dim N]
 *              [--dtype f32|f16|bf16] [--causal|--no-causal] [--method dense]
 *              [--repeat N] [--warmup N] [--check] [--json FILE] [--device SEL] [--style cpu|gpu]
 *              [--sgemm N]
 *
 * Timing: `warmup` untimed calls (kernel builds and PoCL's per-local-size specialisation stay
 * out of the timing), then `repeat` calls, each timed on the host from enqueue to clFinish; the
 * table shows the median.
 * FLOPs: 4 * head_dim per visible (query, key) pair (2 for Q K^T, 2 for P V), times batch and
 * q_heads. A causal run counts only the pairs with key <= query + kv_seq - seq, so its GFLOP/s
 * is comparable with a non-causal one.
 * --check adds the max relative error, max |o - ref| / max |ref|, against the float64 host
 * reference (slow at long sequences: it is O(seq^2 * head_dim) in double on one core).
 * --sgemm N times OpenBLAS SGEMM at N^3 as the CPU f32 ceiling anchor (0 turns it off).
 */
#include "reference.h"
#include "sgemm_anchor.h"
#include "timing.h"

#include "clsa/clsa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
    int64_t seq, kv_seq, batch, heads, kv_heads, head_dim;
    clsa_dtype dtype;
    int causal, repeat, warmup, check, sgemm;
    const char *methods, *json, *device, *style;
} options;

static void usage(void)
{
    fprintf(stderr,
            "usage: clsa-bench [--seq N] [--kv-seq N] [--batch N] [--heads N] [--kv-heads N] [--head-dim N]\n"
            "                  [--dtype f32|f16|bf16] [--causal|--no-causal] [--method dense]\n"
            "                  [--repeat N] [--warmup N] [--check] [--json FILE] [--device SEL]\n"
            "                  [--style cpu|gpu] [--sgemm N]\n");
    exit(2);
}

static int64_t parse_int(const char *flag, const char *text)
{
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (!text[0] || *end || v < 0) {
        fprintf(stderr, "clsa-bench: %s needs a non-negative integer, got \"%s\"\n", flag, text);
        exit(2);
    }
    return v;
}

static options parse(int argc, char **argv)
{
    options o = {4096, 0, 1, 1, 0, 128, CLSA_F32, 1, 5, 1, 0, 1024, "dense", NULL, NULL, NULL};
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE() (val ? (++i, val) : (usage(), ""))
        if (!strcmp(a, "--seq")) o.seq = parse_int(a, TAKE());
        else if (!strcmp(a, "--kv-seq")) o.kv_seq = parse_int(a, TAKE());
        else if (!strcmp(a, "--batch")) o.batch = parse_int(a, TAKE());
        else if (!strcmp(a, "--heads")) o.heads = parse_int(a, TAKE());
        else if (!strcmp(a, "--kv-heads")) o.kv_heads = parse_int(a, TAKE());
        else if (!strcmp(a, "--head-dim")) o.head_dim = parse_int(a, TAKE());
        else if (!strcmp(a, "--repeat")) o.repeat = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--warmup")) o.warmup = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--sgemm")) o.sgemm = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--method")) o.methods = TAKE();
        else if (!strcmp(a, "--json")) o.json = TAKE();
        else if (!strcmp(a, "--device")) o.device = TAKE();
        else if (!strcmp(a, "--style")) o.style = TAKE();
        else if (!strcmp(a, "--causal")) o.causal = 1;
        else if (!strcmp(a, "--no-causal")) o.causal = 0;
        else if (!strcmp(a, "--check")) o.check = 1;
        else if (!strcmp(a, "--dtype")) {
            const char *d = TAKE();
            if (!strcmp(d, "f32")) o.dtype = CLSA_F32;
            else if (!strcmp(d, "f16")) o.dtype = CLSA_F16;
            else if (!strcmp(d, "bf16")) o.dtype = CLSA_BF16;
            else usage();
        } else usage();
#undef TAKE
    }
    if (!o.kv_seq)
        o.kv_seq = o.seq;
    if (!o.kv_heads)
        o.kv_heads = o.heads;
    if (o.repeat < 1)
        o.repeat = 1;
    return o;
}

static const char *dtype_name(clsa_dtype d) { return d == CLSA_F32 ? "f32" : d == CLSA_F16 ? "f16" : "bf16"; }

static void die(clsa_context *ctx, clsa_status st, const char *what)
{
    fprintf(stderr, "clsa-bench: %s failed: %s\n%s\n", what, clsa_status_string(st),
            ctx ? clsa_context_last_error(ctx) : "");
    exit(1);
}

/* Fills a storage array with N(0, 1) values from a fixed-seed generator (bench runs repeat). */
static void *random_tensor(clsa_dtype dtype, int64_t n, uint64_t seed)
{
    void *data = malloc((size_t)n * clsa_dtype_size(dtype));
    if (!data) {
        fprintf(stderr, "clsa-bench: out of host memory\n");
        exit(1);
    }
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i += 2) {
        double u[2];
        for (int k = 0; k < 2; ++k) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            u[k] = ((double)(x >> 11) + 0.5) * 0x1.0p-53;
        }
        const double r = sqrt(-2.0 * log(u[0]));
        ref_store(data, dtype, i, (float)(r * cos(6.283185307179586 * u[1])));
        if (i + 1 < n)
            ref_store(data, dtype, i + 1, (float)(r * sin(6.283185307179586 * u[1])));
    }
    return data;
}

typedef struct result {
    char method[32];
    double time_ms, gflops, max_rel_err;
} result;

int main(int argc, char **argv)
{
    options o = parse(argc, argv);
    if (o.device)
        setenv("CLSA_DEVICE", o.device, 1);
    clsa_context_options copt = {0};
    if (o.style)
        copt.kernel_style = !strcmp(o.style, "cpu") ? CLSA_STYLE_CPU : !strcmp(o.style, "gpu") ? CLSA_STYLE_GPU : (usage(), CLSA_STYLE_AUTO);
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(&copt, &ctx);
    if (st)
        die(NULL, st, "creating a context (is an OpenCL device installed?)");

    clsa_shape shape = clsa_shape_make(o.batch, o.heads, o.kv_heads, o.seq, o.kv_seq, o.head_dim, o.dtype, o.causal);
    const int64_t nq = o.batch * o.heads * o.seq * o.head_dim, nkv = o.batch * o.kv_heads * o.kv_seq * o.head_dim;
    const size_t es = clsa_dtype_size(o.dtype);
    void *hq = random_tensor(o.dtype, nq, 1), *hk = random_tensor(o.dtype, nkv, 2), *hv = random_tensor(o.dtype, nkv, 3);
    void *ho = malloc((size_t)nq * es);
    cl_int err = CL_SUCCESS;
    cl_context clc = clsa_context_cl_context(ctx);
    cl_command_queue queue = clCreateCommandQueue(clc, clsa_context_device(ctx), 0, &err);
    cl_mem q = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nq * es, hq, &err);
    cl_mem k = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nkv * es, hk, &err);
    cl_mem v = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nkv * es, hv, &err);
    cl_mem out = clCreateBuffer(clc, CL_MEM_READ_WRITE, (size_t)nq * es, NULL, &err);
    if (err)
        die(ctx, (clsa_status)err, "allocating device buffers");

    printf("device: %s (%s kernels)\n", clsa_context_device_name(ctx),
           clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu");
    printf("shape: batch %lld, heads %lld/%lld, seq %lld, kv_seq %lld, head_dim %lld, %s, %s\n",
           (long long)o.batch, (long long)o.heads, (long long)o.kv_heads, (long long)o.seq, (long long)o.kv_seq,
           (long long)o.head_dim, dtype_name(o.dtype), o.causal ? "causal" : "non-causal");

    double *want = NULL;
    result results[8];
    int nresults = 0;
    const double flops = ref_attention_flops(&shape);
    char methods[256];
    snprintf(methods, sizeof methods, "%s", o.methods);
    for (char *save = NULL, *m = strtok_r(methods, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        if (strcmp(m, "dense") != 0) {
            fprintf(stderr, "clsa-bench: unknown method \"%s\" (this version has: dense)\n", m);
            return 2;
        }
        clsa_plan *plan = NULL;
        st = clsa_plan_create(ctx, &shape, NULL, &plan);
        if (st)
            die(ctx, st, "clsa_plan_create");
        cl_mem ws = clCreateBuffer(clc, CL_MEM_READ_WRITE, clsa_plan_workspace_size(plan), NULL, &err);
        if (err)
            die(ctx, (clsa_status)err, "allocating the workspace");
        double *t = calloc((size_t)o.repeat, sizeof *t);
        for (int r = -o.warmup; r < o.repeat; ++r) {
            double t0 = bench_now_ms();
            st = clsa_attention(plan, queue, q, k, v, out, ws, 0, NULL, NULL);
            if (st)
                die(ctx, st, "clsa_attention");
            clFinish(queue);
            if (r >= 0)
                t[r] = bench_now_ms() - t0;
        }
        result *res = &results[nresults++];
        snprintf(res->method, sizeof res->method, "%s", m);
        res->time_ms = bench_median(t, (size_t)o.repeat);
        res->gflops = flops / (res->time_ms * 1e6);
        res->max_rel_err = NAN;
        if (o.check) {
            clEnqueueReadBuffer(queue, out, CL_TRUE, 0, (size_t)nq * es, ho, 0, NULL, NULL);
            if (!want) {
                want = malloc(sizeof(double) * (size_t)nq);
                ref_attention(&shape, hq, hk, hv, NULL, 0, 0, want);
            }
            res->max_rel_err = ref_max_rel_error(&shape, ho, want);
        }
        free(t);
        clReleaseMemObject(ws);
        clsa_plan_release(plan);
    }

    const double sgemm = o.sgemm > 0 ? bench_sgemm_gflops(o.sgemm, 3) : -1.0;
    printf("\n%-10s %12s %10s %14s %16s\n", "method", "median ms", "GFLOP/s", "vs SGEMM", "max rel err");
    for (int i = 0; i < nresults; ++i) {
        char vs[32] = "-", e[32] = "-";
        if (sgemm > 0)
            snprintf(vs, sizeof vs, "%.3f", results[i].gflops / sgemm);
        if (!isnan(results[i].max_rel_err))
            snprintf(e, sizeof e, "%.3g", results[i].max_rel_err);
        printf("%-10s %12.3f %10.2f %14s %16s\n", results[i].method, results[i].time_ms, results[i].gflops, vs, e);
    }
    if (sgemm > 0)
        printf("%-10s %12s %10.2f %14s %16s   (OpenBLAS %d^3, the CPU f32 ceiling)\n", "sgemm", "-", sgemm, "1.000", "-", o.sgemm);

    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) {
            fprintf(stderr, "clsa-bench: cannot write %s\n", o.json);
            return 1;
        }
        fprintf(f, "[\n");
        for (int i = 0; i < nresults; ++i) {
            const result *r = &results[i];
            fprintf(f,
                    "  {\"method\": \"%s\", \"device\": \"%s\", \"style\": \"%s\", \"batch\": %lld, \"seq\": %lld, "
                    "\"kv_seq\": %lld, \"heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, \"dtype\": \"%s\", "
                    "\"causal\": %s, \"time_ms\": %.6f, \"gflops\": %.4f",
                    r->method, clsa_context_device_name(ctx),
                    clsa_context_kernel_style(ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu", (long long)o.batch,
                    (long long)o.seq, (long long)o.kv_seq, (long long)o.heads, (long long)o.kv_heads,
                    (long long)o.head_dim, dtype_name(o.dtype), o.causal ? "true" : "false", r->time_ms, r->gflops);
            if (!isnan(r->max_rel_err))
                fprintf(f, ", \"max_rel_err_vs_ref\": %.6g", r->max_rel_err);
            if (sgemm > 0)
                fprintf(f, ", \"sgemm_gflops\": %.4f, \"ratio_vs_sgemm\": %.4f", sgemm, r->gflops / sgemm);
            fprintf(f, "}%s\n", i + 1 < nresults ? "," : "");
        }
        fprintf(f, "]\n");
        fclose(f);
    }

    free(want);
    free(hq), free(hk), free(hv), free(ho);
    clReleaseMemObject(q), clReleaseMemObject(k), clReleaseMemObject(v), clReleaseMemObject(out);
    clReleaseCommandQueue(queue);
    clsa_context_release(ctx);
    return 0;
}

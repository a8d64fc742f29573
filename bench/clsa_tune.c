/*
 * clsa-tune: searches clsa's kernel variants and sizes for one device and shape class, checks
 * every candidate's output against the float64 reference, and writes the fastest as a tuning file
 * row (clsa.h, "Tuning") that the library then reads back.
 *
 *   clsa-tune --device SEL --seq N --head-dim D [--heads H] [--causal] [--repeat R] [--tau T]
 *             --out FILE
 *
 * The search is coordinate-wise, one stage after another, each timed on the call that runs it:
 *   1. dense attention: CPU rows x local sizes, GPU group x key tile;
 *   2. sparse attention (SALE plan): CPU rows x cache tiles;
 *   3. the estimator: cpu, gpu, gpu with integer dot products, gpu with sub-groups;
 *   4. the quantizer: cpu, gpu with each token-mean group size.
 * Each stage keeps the best candidate so far in the keys of the next. A candidate the device cannot
 * run (its work-group, local or private memory too large, or a missing feature) is refused by plan
 * creation before any launch and reported as rejected. A candidate whose output leaves the
 * tolerance (1e-5 relative to max |O| in f32; SALE: against the float64 output on its own mask,
 * and for the estimator's variants, all run on the CPU quantizer, the same mask bit for bit) is
 * rejected as wrong. Data: the `sparse` LLM-like preset (bench/README.md)
 * for SALE, so that the sparse stages meet a realistic density.
 */
#include "clsa/clsa.h"
#include "llm_data.h"
#include "reference.h"
#include "timing.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct options {
    const char *device, *out;
    int64_t seq, head_dim, heads;
    int causal, repeat;
    float tau;
} options;

static void usage(void)
{
    fprintf(stderr, "usage: clsa-tune --device SEL --seq N --head-dim D [--heads H] [--causal] [--repeat R] "
                    "[--tau T] --out FILE\n");
    exit(2);
}

static options parse(int argc, char **argv)
{
    options o = {NULL, NULL, 4096, 128, 2, 0, 5, 0.004f};
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--causal"))
            o.causal = 1;
        else if (!v)
            usage();
        else if (!strcmp(a, "--device")) o.device = v, ++i;
        else if (!strcmp(a, "--out")) o.out = v, ++i;
        else if (!strcmp(a, "--seq")) o.seq = atoll(v), ++i;
        else if (!strcmp(a, "--head-dim")) o.head_dim = atoll(v), ++i;
        else if (!strcmp(a, "--heads")) o.heads = atoll(v), ++i;
        else if (!strcmp(a, "--repeat")) o.repeat = atoi(v), ++i;
        else if (!strcmp(a, "--tau")) o.tau = (float)atof(v), ++i;
        else
            usage();
    }
    if (!o.out || o.seq < 16 || o.head_dim < 1 || o.head_dim > 256 || o.heads < 1 || o.repeat < 1 || !(o.tau >= 0))
        usage();
    return o;
}

/* The run state: one OpenCL context and queue, the inputs and the references. */
typedef struct bench {
    cl_context cl_ctx;
    cl_device_id device;
    cl_command_queue queue;
    clsa_shape shape;
    void *hq, *hk, *hv, *ho;
    cl_mem q, k, v, o;
    size_t bytes;
    double *dense_want;
    bool match_masks;    /* the estimator stage: every candidate's mask must equal the first's */
    uint8_t *first_mask; /* that first mask */
    size_t mask_bytes;
    const options *opt;
} bench;

typedef enum { DENSE, SALE } which_call;

typedef struct result {
    int status; /* 0 ran and passed, 1 rejected before launch, 2 wrong output */
    double ms;
    char why[256];
} result;

/* Runs one candidate: a context with these tuning keys, a plan, a checked run, then the timing. */
static result run_candidate(bench *b, which_call call, const char *tuning)
{
    result r = {0, 0.0, ""};
    clsa_context_options copt = {0};
    copt.tuning = tuning;
    copt.tuning_file = ""; /* the table alone, never a CLSA_TUNE_FILE from the environment */
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create(b->cl_ctx, b->device, &copt, &ctx);
    clsa_plan *plan = NULL;
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    sp.tau = b->opt->tau;
    if (!st)
        st = clsa_plan_create(ctx, &b->shape, call == SALE ? &sp : NULL, &plan);
    if (st) {
        r.status = 1;
        snprintf(r.why, sizeof r.why, "%s: %s", clsa_status_string(st),
                 ctx ? clsa_context_last_error(ctx) : "the context refused the keys (the reason is on stderr)");
        clsa_context_release(ctx);
        return r;
    }
    cl_mem ws = clCreateBuffer(b->cl_ctx, CL_MEM_READ_WRITE, clsa_plan_workspace_size(plan), NULL, NULL);
    st = clsa_attention(plan, b->queue, b->q, b->k, b->v, b->o, ws, 0, NULL, NULL);
    if (!st)
        st = (clsa_status)clEnqueueReadBuffer(b->queue, b->o, CL_TRUE, 0, b->bytes, b->ho, 0, NULL, NULL);
    double err = INFINITY;
    if (!st && call == DENSE)
        err = ref_max_rel_error(&b->shape, b->ho, b->dense_want);
    else if (!st) {
        clsa_mask_geometry g;
        clsa_block_mask m;
        clsa_plan_mask_geometry(plan, &g);
        clsa_plan_workspace_mask(plan, ws, &m);
        const size_t rows = (size_t)g.rows, nkb = (size_t)g.num_k_blocks;
        int32_t *counts = malloc(rows * 4), *indices = malloc(rows * nkb * 4);
        uint8_t *bitmap = malloc(rows * nkb);
        clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.counts_offset, rows * 4, counts, 0, NULL, NULL);
        clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.indices_offset, rows * nkb * 4, indices, 0, NULL, NULL);
        if (!counts || !indices || !bitmap ||
            clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.counts_offset, rows * 4, counts, 0, NULL, NULL) ||
            clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.indices_offset, rows * nkb * 4, indices, 0, NULL, NULL) ||
            clsa_mask_to_bitmap(counts, indices, (int64_t)rows, (int64_t)nkb, bitmap)) {
            snprintf(r.why, sizeof r.why, "its mask could not be read back");
        } else if (b->match_masks && b->first_mask && memcmp(bitmap, b->first_mask, b->mask_bytes) != 0) {
            /* Estimator variants on the same quantizer must agree bit for bit (clsa.h, "Tuning"). */
            snprintf(r.why, sizeof r.why, "its mask differs from the stage's first candidate's");
        } else {
            /* Every SALE candidate against the float64 reference on its own mask: the quantizer's
               variants may round the token means differently, and so keep other blocks. */
            double *want = malloc(sizeof(double) * b->bytes / clsa_dtype_size(b->shape.dtype));
            ref_attention(&b->shape, b->hq, b->hk, b->hv, bitmap, g.block_q, g.block_k, want);
            err = ref_max_rel_error(&b->shape, b->ho, want);
            free(want);
            if (b->match_masks && !b->first_mask) {
                b->first_mask = bitmap;
                b->mask_bytes = rows * nkb;
                bitmap = NULL;
            }
        }
        free(counts), free(indices), free(bitmap);
    }
    if (st || !(err <= 1e-5)) {
        r.status = 2;
        if (st)
            snprintf(r.why, sizeof r.why, "%s: %s", clsa_status_string(st), clsa_context_last_error(ctx));
        else if (!r.why[0])
            snprintf(r.why, sizeof r.why, "max relative error %.3g above 1e-5", err);
    } else {
        double *t = malloc(sizeof(double) * (size_t)b->opt->repeat);
        for (int i = 0; i < b->opt->repeat && !st; ++i) {
            const double t0 = bench_now_ms();
            st = clsa_attention(plan, b->queue, b->q, b->k, b->v, b->o, ws, 0, NULL, NULL);
            if (!st)
                st = (clsa_status)clFinish(b->queue);
            t[i] = bench_now_ms() - t0;
        }
        r.ms = bench_median(t, (size_t)b->opt->repeat);
        if (st) {
            r.status = 2;
            snprintf(r.why, sizeof r.why, "a timed run failed: %s", clsa_status_string(st));
        }
        free(t);
    }
    clReleaseMemObject(ws);
    clsa_plan_release(plan);
    clsa_context_release(ctx);
    return r;
}

/* Tries base + each candidate's keys; keeps the fastest passing one in best (a key list). */
static void search(bench *b, which_call call, const char *stage, const char *const *cands, int n, char *best,
                   size_t best_size)
{
    double best_ms = INFINITY;
    char chosen[512] = "";
    for (int i = 0; i < n; ++i) {
        char keys[512];
        snprintf(keys, sizeof keys, "%s%s%s", best, best[0] && cands[i][0] ? "," : "", cands[i]);
        result r = run_candidate(b, call, keys);
        if (r.status == 0)
            printf("  %-10s %-52s %9.2f ms\n", stage, cands[i], r.ms);
        else
            printf("  %-10s %-52s %s: %s\n", stage, cands[i], r.status == 1 ? "rejected" : "WRONG", r.why);
        fflush(stdout);
        if (r.status == 0 && r.ms < best_ms) {
            best_ms = r.ms;
            snprintf(chosen, sizeof chosen, "%s", cands[i]);
        }
    }
    if (best_ms == INFINITY) {
        fprintf(stderr, "clsa-tune: no %s candidate ran correctly\n", stage);
        exit(1);
    }
    printf("  %-10s best: %s (%.2f ms)\n", stage, chosen[0] ? chosen : "(defaults)", best_ms);
    if (chosen[0]) {
        size_t used = strlen(best);
        snprintf(best + used, best_size - used, "%s%s", used ? "," : "", chosen);
    }
}

static void fill(bench *b, llm_preset preset)
{
    llm_data_generate_preset(&b->shape, 1234, preset, b->hq, b->hk, b->hv);
    clEnqueueWriteBuffer(b->queue, b->q, CL_TRUE, 0, b->bytes, b->hq, 0, NULL, NULL);
    clEnqueueWriteBuffer(b->queue, b->k, CL_TRUE, 0, b->bytes, b->hk, 0, NULL, NULL);
    clEnqueueWriteBuffer(b->queue, b->v, CL_TRUE, 0, b->bytes, b->hv, 0, NULL, NULL);
}

/* Writes the row: match lines for this device, where the values come from, and the keys. The
   file is written to a temporary name and renamed, so that a failed run leaves no partial file. */
static int write_file(const options *o, const clsa_device_info *info, const char *keys)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", o->out);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        perror("clsa-tune: creating the output");
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return 1;
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    fprintf(f, "# clsa tuning file (clsa.h, \"Tuning\"), written by clsa-tune %s\n[device]\n", clsa_version());
    fprintf(f, "match.name = %s\n", info->name);
    fprintf(f, "match.vendor = %s\n", info->vendor);
    if (strstr(info->device_version, "PoCL"))
        fprintf(f, "match.version = PoCL\n");
    fprintf(f, "match.type = %s\n", info->type & CL_DEVICE_TYPE_GPU ? "gpu" : info->type & CL_DEVICE_TYPE_CPU ? "cpu" : "accelerator");
    fprintf(f, "source = clsa-tune on \"%s\" (%s, %s), seq %lld, head_dim %lld, %lld heads, %s, %s\n", info->name,
            info->device_version, info->driver_version, (long long)o->seq, (long long)o->head_dim, (long long)o->heads,
            o->causal ? "causal" : "non-causal", date);
    for (const char *p = keys; *p;) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        if (eq)
            fprintf(f, "%.*s = %.*s\n", (int)(eq - p), p, (int)(len - (size_t)(eq - p) - 1), eq + 1);
        p += len + (p[len] == ',');
    }
    if (fclose(f) != 0 || rename(tmp, o->out) != 0) {
        perror("clsa-tune: writing the output");
        unlink(tmp);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = parse(argc, argv);
    bench b = {0};
    b.opt = &o;
    char why[2048];
    if (clsa_select_device(o.device, &b.device, why, sizeof why)) {
        fprintf(stderr, "clsa-tune: %s\n", why);
        return 1;
    }
    cl_int err = CL_SUCCESS;
    b.cl_ctx = clCreateContext(NULL, 1, &b.device, NULL, NULL, &err);
    if (!err)
        b.queue = clCreateCommandQueue(b.cl_ctx, b.device, 0, &err);
    if (err) {
        fprintf(stderr, "clsa-tune: OpenCL context or queue: %s\n", clsa_status_string((clsa_status)err));
        return 1;
    }
    b.shape = clsa_shape_make(1, o.heads, o.heads, o.seq, o.seq, o.head_dim, CLSA_F32, o.causal);
    b.bytes = (size_t)(o.heads * o.seq * o.head_dim) * 4;
    b.hq = malloc(b.bytes), b.hk = malloc(b.bytes), b.hv = malloc(b.bytes), b.ho = malloc(b.bytes);
    cl_mem *tensors[4] = {&b.q, &b.k, &b.v, &b.o};
    for (int i = 0; i < 4 && !err; ++i)
        *tensors[i] = clCreateBuffer(b.cl_ctx, CL_MEM_READ_WRITE, b.bytes, NULL, &err);
    if (!b.hq || !b.hk || !b.hv || !b.ho)
        err = CL_OUT_OF_HOST_MEMORY;
    clsa_context *probe = NULL;
    clsa_context_options popt = {0};
    popt.tuning_file = "";
    if (err || clsa_context_create(b.cl_ctx, b.device, &popt, &probe)) {
        fprintf(stderr, "clsa-tune: cannot set up the device\n");
        return 1;
    }
    const clsa_device_info *info = clsa_context_device_info(probe);
    printf("clsa-tune on \"%s\" (%s): seq %lld, head_dim %lld, %lld heads, %s, median of %d\n", info->name,
           info->device_version, (long long)o.seq, (long long)o.head_dim, (long long)o.heads,
           o.causal ? "causal" : "non-causal", o.repeat);

    char best[1024] = "";
    fill(&b, LLM_PRESET_LLM);
    b.dense_want = malloc(sizeof(double) * b.bytes / 4);
    ref_attention(&b.shape, b.hq, b.hk, b.hv, NULL, 0, 0, b.dense_want);
    /* 1. dense attention: both kernel styles on every device (the other style is slower there,
       but the table records that it was measured). */
    static const char *const dense[] = {
        "attention=cpu,cpu_dense_rows=4", "attention=cpu,cpu_dense_rows=2", "attention=cpu,cpu_dense_rows=8",
        "attention=cpu,cpu_dense_rows=16", "attention=cpu,cpu_dense_rows=4,cpu_local=16",
        "attention=cpu,cpu_dense_rows=4,cpu_local=64", "attention=gpu,gpu_group=64,gpu_tile=32",
        "attention=gpu,gpu_group=128,gpu_tile=32", "attention=gpu,gpu_group=32,gpu_tile=16",
        "attention=gpu,gpu_group=256,gpu_tile=16"};
    search(&b, DENSE, "dense", dense, 10, best, sizeof best);
    /* 2-4: a SALE plan on the sparse preset. */
    fill(&b, LLM_PRESET_SPARSE);
    static const char *const sparse_cpu[] = {"cpu_sparse_rows=4,cpu_sparse_tiles=1", "cpu_sparse_rows=16,cpu_sparse_tiles=1",
                                             "cpu_sparse_rows=4,cpu_sparse_tiles=0", "cpu_sparse_rows=16,cpu_sparse_tiles=0"};
    static const char *const sparse_gpu[] = {"gpu_group=64,gpu_tile=32", "gpu_group=32,gpu_tile=32",
                                             "gpu_group=64,gpu_tile=16"};
    const bool gpu_attention = strstr(best, "attention=gpu") != NULL;
    search(&b, SALE, "sparse", gpu_attention ? sparse_gpu : sparse_cpu, gpu_attention ? 3 : 4, best, sizeof best);
    static const char *const estimators[] = {
        "quantize=cpu,estimate=cpu", "quantize=cpu,estimate=gpu,int_dot=0,subgroups=0",
        "quantize=cpu,estimate=gpu,int_dot=1,subgroups=0", "quantize=cpu,estimate=gpu,int_dot=0,subgroups=1",
        "quantize=cpu,estimate=gpu,int_dot=1,subgroups=1"};
    b.match_masks = true; /* on one quantizer (pinned to cpu here), every estimator gives one mask */
    search(&b, SALE, "estimate", estimators, 5, best, sizeof best);
    b.match_masks = false;
    static const char *const quantizers[] = {"quantize=cpu", "quantize=gpu,mean_group=64", "quantize=gpu,mean_group=256"};
    search(&b, SALE, "quantize", quantizers, 3, best, sizeof best);
    printf("best: %s\n", best);
    if (write_file(&o, info, best))
        return 1;
    /* Read back: a context given the file must take its row. */
    clsa_context_options copt = {0};
    copt.tuning_file = o.out;
    clsa_context *check = NULL;
    if (clsa_context_create(b.cl_ctx, b.device, &copt, &check) || !strstr(clsa_context_tuning(check), "file ")) {
        fprintf(stderr, "clsa-tune: the library did not take the row of %s: %s\n", o.out,
                check ? clsa_context_tuning(check) : "");
        return 1;
    }
    printf("wrote %s; the library reads it back as: %s\n", o.out, clsa_context_tuning(check));
    clsa_context_release(check);
    clsa_context_release(probe);
    clReleaseMemObject(b.q), clReleaseMemObject(b.k), clReleaseMemObject(b.v), clReleaseMemObject(b.o);
    clReleaseCommandQueue(b.queue);
    clReleaseContext(b.cl_ctx);
    free(b.hq), free(b.hk), free(b.hv), free(b.ho), free(b.dense_want), free(b.first_mask);
    return 0;
}

/*
 * clsa-bench: times clsa attention methods and anchors on one device; prints a table and JSON.
 *
 *   clsa-bench [--seq N] [--kv-seq N] [--batch N] [--heads N] [--kv-heads N] [--head-dim N]
 *              [--dtype f32|f16|bf16] [--causal|--no-causal] [--method dense,sale,oracle,random:P]
 *              [--tau T] [--tau-file F [--layer N]] [--sink N] [--local N] [--block-q N] [--block-k N] [--refine NATS]
 *              [--data random|llm|sparse|npy:DIR] [--repeat N] [--warmup N] [--check] [--json FILE]
 *              [--device SEL] [--style cpu|gpu] [--sgemm N] [--anchors[=clblast,torch,fma]]
 *   clsa-bench [--device SEL] --info       (what clsa read from the device, and its extensions)
 *
 * Methods: dense (exact), sale (int4 estimate + Relative Attention Score), oracle (the SALE rule
 * on exact f32 scores: the rule's quality ceiling, as costly as dense), random:P (sparse attention
 * alone on a random caller mask: each visible key block kept with probability P, diagonal blocks
 * always; for the attend-time-against-density sweep).
 * --anchors adds the unfused OpenCL attention assembled from CLBlast SGEMM + softmax + SGEMM on the
 * same device and data (row "clblast"; bench/clblast_anchor.h), next to the OpenBLAS SGEMM rate, and
 * PyTorch's CPU scaled_dot_product_attention on the same data (row "torch_sdpa", f32 only;
 * bench/torch_anchor.h), with as many torch threads as the OpenCL device has compute units when it
 * is a CPU, else as many as the host has online. An anchor that cannot run prints why and is left out.
 * --anchors=torch (or =clblast) runs one of them: the CLBlast anchor takes minutes at 32K.
 * Every form of --anchors also measures the device's own f32 and f16 FMA peak with a probe kernel
 * (bench/fma_peak.h; f16 only with cl_khr_fp16) and reports each row's GFLOP/s as a fraction of the
 * f32 peak (dense-equivalent FLOPs for sparse methods); --anchors=fma runs only the probe.
 * Timing: `warmup` untimed calls, then `repeat` timed calls, each from enqueue to clFinish on the
 * host; medians. time_ms is the one-call pipeline; quant_ms, estimate_ms and attend_ms time the
 * stages called one by one (attend: clsa_attention_masked without the host mask check).
 * FLOPs: 4 * head_dim per visible (query, key) pair, times batch and q_heads; a causal run counts
 * only the visible pairs. Sparse methods report the dense-equivalent rate (dense FLOPs / time).
 * density = kept blocks / causally valid blocks; rel_l1_vs_dense = sum|o - o_dense| / sum|o_dense|;
 * recall_vs_oracle = kept oracle blocks that the method also keeps / oracle blocks.
 * --check: max |o - ref| / max |ref| against the float64 host reference (for a sparse method, the
 * reference of attention under that method's own mask).
 * --tau-file F takes the per-head thresholds of layer --layer N (default 0) from a tau file
 * (bench/tau_file.h, as clsa-calibrate writes it) for every sparse method; --tau is then unused.
 * --data npy:DIR reads DIR/q.npy, DIR/k.npy, DIR/v.npy ([B,H,L,D] or [H,L,D], float32 or float16,
 * C order); their shape replaces the shape options.
 */
#include "llm_data.h"
#include "npy.h"
#include "device_info.h"
#include "npy_tensor.h"
#include "tau_file.h"
#include "reference.h"
#include "clblast_anchor.h"
#include "fma_peak.h"
#include "torch_anchor.h"
#include "sgemm_anchor.h"
#include "timing.h"

#include "clsa/clsa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ANCHOR_CLBLAST = 1, ANCHOR_TORCH = 2, ANCHOR_FMA = 4 };

/* The anchors of --anchors=LIST, a comma-separated subset of clblast, torch and fma; the FMA peak
   probe runs with every list. */
static int parse_anchors(const char *list)
{
    int set = 0;
    for (const char *p = list; *p;) {
        const size_t n = strcspn(p, ",");
        if (n == 7 && !strncmp(p, "clblast", 7))
            set |= ANCHOR_CLBLAST;
        else if (n == 5 && !strncmp(p, "torch", 5))
            set |= ANCHOR_TORCH;
        else if (n == 3 && !strncmp(p, "fma", 3))
            set |= ANCHOR_FMA;
        else {
            fprintf(stderr, "clsa-bench: --anchors=%s: anchors are clblast, torch and fma\n", list);
            exit(2);
        }
        p += n + (p[n] == ',');
    }
    return set | ANCHOR_FMA;
}

typedef struct options {
    int64_t seq, kv_seq, batch, heads, kv_heads, head_dim;
    clsa_dtype dtype;
    int causal, repeat, warmup, check, sgemm, anchors;
    float tau;
    int sink, local, block_q, block_k;
    const char *methods, *json, *device, *style, *data;
    const char *tau_file; /* per-head tau of layer `layer` (bench/tau_file.h), read once in main */
    int layer;
    float *tau_per_head;
    float refine; /* the exact second look's margin in nats; < 0: the library's default */
    int window, symmetric, xattn_stride, no_forced; /* the other selectors' settings */
    float value_prune; /* "+v" methods: clsa_shape.value_prune (0: 1e-3 when value_bits is set) */
    int value_bits;
    int info;     /* --info: print the device's information and stop */
} options;

/* Rows of the table: the methods asked for (dense first), then up to two anchors. */
#define MAX_RESULTS 16

static void usage(void)
{
    fprintf(stderr,
            "usage: clsa-bench [--seq N] [--kv-seq N] [--batch N] [--heads N] [--kv-heads N] [--head-dim N]\n"
            "                  [--dtype f32|f16|bf16] [--causal|--no-causal] [--method dense,sale,oracle,random:P]\n"
            "                  (also streaming, sliding[:W], topk[:F], cdf[:F], xattn[:F], with [--window N]\n"
            "                  [--symmetric] [--xattn-stride N] [--no-forced]; any method+v prunes attention\n"
            "                  values with [--value-prune T] [--value-bits B])\n"
            "                  [--tau T] [--tau-file F [--layer N]] [--sink N] [--local N] [--block-q N] [--block-k N] [--refine NATS]\n"
            "                  [--data random|llm|sparse|npy:DIR] [--repeat N] [--warmup N] [--check] [--json FILE]\n"
            "                  [--device SEL] [--style cpu|gpu] [--sgemm N] [--anchors[=clblast,torch,fma]]\n"
            "       clsa-bench [--device SEL] --info\n");
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
    options o = {4096, 0, 1, 1, 0, 128, CLSA_F32, 1, 5, 1, 0, 1024, 0, 0.004f, 32, 256, 64, 32,
                 "dense", NULL, NULL, NULL, "random", NULL, 0, NULL, -1.0f, 1024, 0, 8, 0, 0.0f, 0, 0};
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
        else if (!strcmp(a, "--sink")) o.sink = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--local")) o.local = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--refine")) o.refine = strtof(TAKE(), NULL);
        else if (!strcmp(a, "--window")) o.window = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--symmetric")) o.symmetric = 1;
        else if (!strcmp(a, "--xattn-stride")) o.xattn_stride = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--no-forced")) o.no_forced = 1;
        else if (!strcmp(a, "--value-prune")) o.value_prune = strtof(TAKE(), NULL);
        else if (!strcmp(a, "--value-bits")) o.value_bits = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--block-q")) o.block_q = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--block-k")) o.block_k = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--tau")) o.tau = strtof(TAKE(), NULL);
        else if (!strcmp(a, "--tau-file")) o.tau_file = TAKE();
        else if (!strcmp(a, "--layer")) o.layer = (int)parse_int(a, TAKE());
        else if (!strcmp(a, "--method")) o.methods = TAKE();
        else if (!strcmp(a, "--data")) o.data = TAKE();
        else if (!strcmp(a, "--json")) o.json = TAKE();
        else if (!strcmp(a, "--device")) o.device = TAKE();
        else if (!strcmp(a, "--info")) o.info = 1;
        else if (!strcmp(a, "--style")) o.style = TAKE();
        else if (!strcmp(a, "--causal")) o.causal = 1;
        else if (!strcmp(a, "--no-causal")) o.causal = 0;
        else if (!strcmp(a, "--check")) o.check = 1;
        else if (!strcmp(a, "--anchors")) o.anchors = ANCHOR_CLBLAST | ANCHOR_TORCH | ANCHOR_FMA;
        else if (!strncmp(a, "--anchors=", 10)) o.anchors = parse_anchors(a + 10);
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

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "clsa-bench: out of host memory\n");
        exit(1);
    }
    return p;
}

/* N(0, 1) values from a fixed-seed generator, so bench runs repeat. */
static void random_fill(void *data, clsa_dtype dtype, int64_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; ++i) {
        double u[2];
        for (int k = 0; k < 2; ++k) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            u[k] = ((double)(x >> 11) + 0.5) * 0x1.0p-53;
        }
        ref_store(data, dtype, i, (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1])));
    }
}

/* Loads DIR/name.npy into storage of dtype; sets or checks the [B, H, L, D] dims. */
static void *load_npy(const char *dir, const char *name, clsa_dtype dtype, int64_t dims[4])
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    void *out = npy_load_bhld(path, dtype, dims, err, sizeof err);
    if (!out) {
        fprintf(stderr, "clsa-bench: %s\n", err);
        exit(1);
    }
    return out;
}

typedef struct result {
    char method[16];
    int sparse, anchor;
    double time_ms, quant_ms, estimate_ms, attend_ms, gflops, density, rel_l1, max_abs, recall, max_rel_err;
    double pruned; /* "+v" methods: the fraction of probabilities value pruning zeroed; NaN otherwise */
    double *head_rel_l1; /* per query head (over batch), for sparse methods and anchors */
    uint8_t *bitmap; /* kept blocks, for recall */
    torch_sdpa_run torch; /* the torch anchor's version, threads and kernel */
} result;

typedef struct bench {
    options o;
    clsa_context *ctx;
    cl_context clc;
    cl_command_queue queue;
    clsa_shape shape;
    cl_mem q, k, v, out;
    void *hq, *hk, *hv;
    size_t out_bytes;
} bench;

static double time_calls(bench *b, int reps, int warmup, clsa_status (*call)(bench *, void *), void *arg)
{
    double *t = xmalloc(sizeof(double) * (size_t)reps);
    for (int r = -warmup; r < reps; ++r) {
        const double t0 = bench_now_ms();
        clsa_status st = call(b, arg);
        if (st)
            die(b->ctx, st, "a timed call");
        clFinish(b->queue);
        if (r >= 0)
            t[r] = bench_now_ms() - t0;
    }
    const double m = bench_median(t, (size_t)reps);
    free(t);
    return m;
}

typedef struct call_args {
    clsa_plan *plan;
    cl_mem ws;
    const clsa_block_mask *mask; /* NULL: the workspace's own (SALE's) mask */
} call_args;

static clsa_status call_full(bench *b, void *a_)
{
    call_args *a = a_;
    return clsa_attention(a->plan, b->queue, b->q, b->k, b->v, b->out, a->ws, 0, NULL, NULL);
}
static clsa_status call_quant(bench *b, void *a_)
{
    call_args *a = a_;
    return clsa_quantize(a->plan, b->queue, b->q, b->k, a->ws, 0, NULL, NULL);
}
static clsa_status call_estimate(bench *b, void *a_)
{
    call_args *a = a_;
    return clsa_estimate_mask(a->plan, b->queue, b->q, b->k, a->ws, NULL, 0, NULL, NULL);
}
static clsa_status call_attend(bench *b, void *a_)
{
    call_args *a = a_;
    return clsa_attention_masked(a->plan, b->queue, b->q, b->k, b->v, b->out, a->ws, a->mask, CLSA_MASK_TRUST, 0, NULL,
                                 NULL);
}

/* Visible (query, key) pairs of one mask block: rows [r0, r1), keys [k0, k1). */
static double block_visible_pairs(const clsa_shape *s, int64_t r0, int64_t r1, int64_t k0, int64_t k1)
{
    double pairs = 0.0;
    for (int64_t i = r0; i < r1; ++i) {
        const int64_t last = ref_last_visible(s, i);
        pairs += (double)(last >= k0 ? (last < k1 ? last : k1 - 1) - k0 + 1 : 0);
    }
    return pairs;
}

/*
 * The estimate's product rate over dense attention's, with a lower bound on the estimate's work:
 * it computes every score of each visible block it does not keep (it cannot rule one out sooner),
 * and some scores of the blocks it keeps (up to the first passing tile; forced blocks none). Only
 * the first are counted here. The definition: estimate rate = computed pairs x head_dim /
 * time; dense rate = 2 x visible pairs x head_dim / time (QK^T and PV).
 */
static double estimate_rate_vs_dense(const bench *b, const result *r, double dense_ms)
{
    const clsa_shape *s = &b->shape;
    const int64_t bq = b->o.block_q, bk = b->o.block_k;
    const int64_t nqb = (s->q_len + bq - 1) / bq, nkb = (s->kv_len + bk - 1) / bk;
    double visible = 0.0, failing = 0.0;
    for (int64_t row = 0; row < s->batch * s->q_heads * nqb; ++row) {
        const int64_t qb = row % nqb, r0 = qb * bq, r1 = r0 + bq < s->q_len ? r0 + bq : s->q_len;
        for (int64_t kb = 0; kb < nkb; ++kb) {
            const int64_t k0 = kb * bk, k1 = k0 + bk < s->kv_len ? k0 + bk : s->kv_len;
            const double pairs = block_visible_pairs(s, r0, r1, k0, k1);
            visible += pairs;
            failing += r->bitmap[row * nkb + kb] ? 0.0 : pairs;
        }
    }
    return visible > 0.0 && r->estimate_ms > 0.0 ? (failing / r->estimate_ms) / (2.0 * visible / dense_ms) : NAN;
}

/* Reads a plan's workspace mask as a bitmap [rows][num_k_blocks]. */
static uint8_t *read_bitmap(bench *b, clsa_plan *plan, cl_mem ws)
{
    clsa_mask_geometry g;
    clsa_block_mask m;
    clsa_plan_mask_geometry(plan, &g);
    clsa_plan_workspace_mask(plan, ws, &m);
    int32_t *counts = xmalloc(g.counts_bytes), *indices = xmalloc(g.indices_bytes);
    clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.counts_offset, g.counts_bytes, counts, 0, NULL, NULL);
    clEnqueueReadBuffer(b->queue, ws, CL_TRUE, m.indices_offset, g.indices_bytes, indices, 0, NULL, NULL);
    uint8_t *bitmap = xmalloc((size_t)(g.rows * g.num_k_blocks));
    clsa_status st = clsa_mask_to_bitmap(counts, indices, g.rows, g.num_k_blocks, bitmap);
    if (st)
        die(b->ctx, st, "reading the mask");
    free(counts), free(indices);
    return bitmap;
}

/*
 * A random caller mask for method "random:P": every causally visible key block is kept with
 * probability P, and the blocks that hold a row's diagonal key always are (as any selector keeps
 * them), so every row sees a key. Written into the plan's workspace mask, which the attend call then
 * reads as a caller mask would be read. The generator has a fixed seed, so runs repeat.
 */
static void write_random_mask(bench *b, clsa_plan *plan, cl_mem ws, double keep, clsa_block_mask *m)
{
    clsa_mask_geometry g;
    clsa_plan_mask_geometry(plan, &g);
    clsa_plan_workspace_mask(plan, ws, m);
    const clsa_shape *s = &b->shape;
    int32_t *counts = xmalloc(g.counts_bytes), *indices = xmalloc(g.indices_bytes);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    for (int64_t row = 0; row < g.rows; ++row) {
        const int64_t qb = row % g.num_q_blocks;
        const int64_t first = qb * g.block_q, last = (qb + 1) * g.block_q < s->q_len ? (qb + 1) * g.block_q - 1 : s->q_len - 1;
        const int64_t shift = s->kv_len - s->q_len; /* causal rows align to the end of the keys */
        const int64_t last_key = ref_last_visible(s, last);
        int32_t n = 0;
        for (int64_t kb = 0; kb < g.num_k_blocks && kb * g.block_k <= last_key; ++kb) {
            const int64_t k0 = kb * g.block_k, k1 = k0 + g.block_k - 1;
            const bool diagonal = s->causal && k1 >= first + shift && k0 <= last + shift;
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const double u = (double)(state >> 11) / 9007199254740992.0;
            if (diagonal || u < keep)
                indices[row * g.num_k_blocks + n++] = (int32_t)kb;
        }
        counts[row] = n;
    }
    clEnqueueWriteBuffer(b->queue, ws, CL_TRUE, m->counts_offset, g.counts_bytes, counts, 0, NULL, NULL);
    clEnqueueWriteBuffer(b->queue, ws, CL_TRUE, m->indices_offset, g.indices_bytes, indices, 0, NULL, NULL);
    free(counts), free(indices);
}

/* rel_l1 and max_abs of an output (the shape's storage, contiguous [B, Hq, L, D]) against the
   dense one, overall and per query head. */
static void compare_to_dense(const bench *b, const void *out, const float *dense_out, result *res)
{
    const int64_t n = (int64_t)(b->out_bytes / clsa_dtype_size(b->shape.dtype));
    const int64_t H = b->shape.q_heads, per_head = b->shape.q_len * b->shape.head_dim;
    double *diff = xmalloc(sizeof(double) * (size_t)H), *ref = xmalloc(sizeof(double) * (size_t)H), max_abs = 0.0;
    for (int64_t h = 0; h < H; ++h)
        diff[h] = ref[h] = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double x = ref_load(out, b->shape.dtype, i), y = ref_load(dense_out, b->shape.dtype, i);
        const int64_t h = i / per_head % H;
        diff[h] += fabs(x - y);
        ref[h] += fabs(y);
        max_abs = fmax(max_abs, fabs(x - y));
    }
    double all_diff = 0.0, all_ref = 0.0;
    res->head_rel_l1 = xmalloc(sizeof(double) * (size_t)H);
    for (int64_t h = 0; h < H; ++h) {
        all_diff += diff[h], all_ref += ref[h];
        res->head_rel_l1[h] = ref[h] > 0 ? diff[h] / ref[h] : diff[h];
    }
    res->rel_l1 = all_ref > 0 ? all_diff / all_ref : all_diff;
    res->max_abs = max_abs;
    free(diff), free(ref);
}

static void run_method(bench *b, const char *full_name, result *res, const float *dense_out)
{
    const options *o = &b->o;
    memset(res, 0, sizeof *res);
    snprintf(res->method, sizeof res->method, "%s", full_name);
    res->pruned = NAN;
    /* "+v": the method with attention-value pruning (--value-prune, --value-bits). */
    char name[32];
    snprintf(name, sizeof name, "%s", full_name);
    const size_t len = strlen(name);
    const bool value_pruned = len > 2 && !strcmp(name + len - 2, "+v");
    clsa_shape shape = b->shape;
    if (value_pruned) {
        name[len - 2] = '\0';
        shape.value_prune = o->value_prune > 0.0f || o->value_bits == 0 ? o->value_prune : 1e-3f;
        shape.value_bits = o->value_bits;
    }
    clsa_sparsity sp;
    const bool random_mask = !strncmp(name, "random:", 7);
    char *end = NULL;
    const double keep = random_mask ? strtod(name + 7, &end) : 0.0;
    if (random_mask && (!end || *end || !(keep >= 0.0 && keep <= 1.0))) {
        fprintf(stderr, "clsa-bench: method \"%s\": random:P needs a keep probability P in [0, 1]\n", name);
        exit(2);
    }
    /* The other selectors by their library names, optionally with their main setting after a colon:
       topk:F, cdf:F, xattn:F (threshold), sliding:W (window tokens). */
    char base[16];
    snprintf(base, sizeof base, "%.*s", (int)strcspn(name, ":"), name);
    const char *setting = strchr(name, ':');
    clsa_method method = !strcmp(name, "dense") ? CLSA_METHOD_DENSE
                       : !strcmp(name, "sale") || random_mask ? CLSA_METHOD_SALE
                       : !strcmp(name, "oracle") ? CLSA_METHOD_SALE_EXACT : (clsa_method)-1;
    if ((int)method < 0 && (clsa_method_from_name(base, &method) != CLSA_SUCCESS || method == CLSA_METHOD_MASK ||
                            method == CLSA_METHOD_PER_HEAD || method == CLSA_METHOD_SALE ||
                            method == CLSA_METHOD_DENSE || method == CLSA_METHOD_SALE_EXACT))
        method = (clsa_method)-1;
    double value = setting ? strtod(setting + 1, &end) : 0.0;
    if ((int)method < 0 || (setting && (!end || *end || method == CLSA_METHOD_STREAMING))) {
        fprintf(stderr, "clsa-bench: unknown method \"%s\" (dense, sale, oracle, random:P, streaming, sliding[:W], "
                        "topk[:F], cdf[:F], xattn[:F])\n", name);
        exit(2);
    }
    clsa_sparsity_init(&sp, method);
    sp.tau = o->tau, sp.sink_tokens = o->sink, sp.local_tokens = o->local, sp.block_q = o->block_q, sp.block_k = o->block_k;
    sp.tau_per_head = o->tau_per_head;
    if (o->refine >= 0.0f || o->refine != o->refine) /* NaN reaches the library, which rejects it */
        sp.refine_nats = o->refine;
    sp.keep_forced = o->no_forced ? 0 : 1;
    sp.window_tokens = o->window, sp.window_symmetric = o->symmetric, sp.xattn_stride = o->xattn_stride;
    if (setting && method == CLSA_METHOD_SLIDING)
        sp.window_tokens = (int32_t)value;
    if (setting && method == CLSA_METHOD_TOPK)
        sp.topk = (float)value;
    if (setting && method == CLSA_METHOD_CDF)
        sp.cdf_gamma = (float)value;
    if (setting && method == CLSA_METHOD_XATTN)
        sp.xattn_threshold = (float)value;
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(b->ctx, &shape, &sp, &plan);
    if (st)
        die(b->ctx, st, "clsa_plan_create");
    cl_int err = CL_SUCCESS;
    call_args a = {plan, clCreateBuffer(b->clc, CL_MEM_READ_WRITE, clsa_plan_workspace_size(plan), NULL, &err), NULL};
    if (err)
        die(b->ctx, (clsa_status)err, "allocating the workspace");
    res->sparse = method != CLSA_METHOD_DENSE;
    clsa_block_mask caller_mask;
    if (random_mask) {
        /* Only the attend stage runs, on the caller mask: time_ms is attend_ms. */
        write_random_mask(b, plan, a.ws, keep, &caller_mask);
        a.mask = &caller_mask;
        res->time_ms = time_calls(b, o->repeat, o->warmup, call_attend, &a);
    } else
        res->time_ms = time_calls(b, o->repeat, o->warmup, call_full, &a);
    res->gflops = ref_attention_flops(&b->shape) / (res->time_ms * 1e6);
    res->density = 1.0;
    res->attend_ms = res->time_ms;
    res->max_rel_err = NAN;
    res->recall = NAN;
    if (res->sparse) {
        if (method == CLSA_METHOD_SALE && !random_mask)
            res->quant_ms = time_calls(b, o->repeat, 0, call_quant, &a);
        if (!random_mask)
            res->estimate_ms = time_calls(b, o->repeat, 0, call_estimate, &a);
        res->attend_ms = random_mask ? res->time_ms : time_calls(b, o->repeat, 0, call_attend, &a);
        double *density = xmalloc(sizeof(double) * (size_t)b->shape.q_heads), kept = 0.0;
        st = clsa_mask_density(plan, b->queue, a.ws, NULL, density);
        if (st)
            die(b->ctx, st, "clsa_mask_density");
        for (int64_t h = 0; h < b->shape.q_heads; ++h)
            kept += density[h];
        res->density = kept / (double)b->shape.q_heads; /* every head has the same valid blocks */
        free(density);
        res->bitmap = read_bitmap(b, plan, a.ws);
    }
    if (value_pruned && (st = clsa_pruned_fraction(plan, b->queue, a.ws, &res->pruned, NULL)))
        die(b->ctx, st, "clsa_pruned_fraction");
    float *out = xmalloc(b->out_bytes);
    clEnqueueReadBuffer(b->queue, b->out, CL_TRUE, 0, b->out_bytes, out, 0, NULL, NULL);
    if (dense_out)
        compare_to_dense(b, out, dense_out, res);
    if (o->check) { /* pruned: against the float64 rule, where a p within rounding of an edge may differ */
        const clsa_shape *ps = clsa_plan_shape(plan);
        double *want = xmalloc(sizeof(double) * (size_t)(b->out_bytes / clsa_dtype_size(b->shape.dtype)));
        (value_pruned ? ref_attention_pruned : ref_attention)(ps, b->hq, b->hk, b->hv, res->bitmap, o->block_q,
                                                              o->block_k, want);
        res->max_rel_err = ref_max_rel_error(ps, out, want);
        free(want);
    }
    free(out);
    clReleaseMemObject(a.ws);
    clsa_plan_release(plan);
}

/* Fills an anchor's row from its median time and its output (the shape's storage). */
static void finish_anchor_row(const bench *b, result *r, const void *out, const float *dense_out)
{
    r->anchor = 1;
    r->gflops = ref_attention_flops(&b->shape) / (r->time_ms * 1e6);
    r->density = 1.0, r->attend_ms = r->time_ms, r->recall = NAN, r->max_rel_err = NAN;
    if (dense_out) /* the anchor's output against clsa dense: it must be the same attention */
        compare_to_dense(b, out, dense_out, r);
}

/* The unfused CLBlast attention on the same device and data (bench/clblast_anchor.h). Returns the
   rows it added: 1, or 0 after printing why it was skipped. */
static int run_clblast_anchor(bench *b, result *r, const float *dense_out)
{
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "clblast");
    char why[256] = "";
    if (clblast_attention_ms(b->ctx, b->queue, &b->shape, b->q, b->k, b->v, b->out, b->o.repeat, b->o.warmup,
                             &r->time_ms, why, sizeof why) != 0) {
        printf("anchor clblast skipped: %s\n", why);
        return 0;
    }
    float *out = xmalloc(b->out_bytes);
    clEnqueueReadBuffer(b->queue, b->out, CL_TRUE, 0, b->out_bytes, out, 0, NULL, NULL);
    finish_anchor_row(b, r, out, dense_out);
    free(out);
    return 1;
}

/* Torch threads for the anchor: a CPU device's compute units are the cores clsa ran on, so torch
   gets as many; a GPU's say nothing about the host, where torch then uses every online core. */
static int torch_threads(const bench *b)
{
    cl_device_id dev = clsa_context_device(b->ctx);
    cl_device_type type = 0;
    cl_uint units = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL) == CL_SUCCESS && (type & CL_DEVICE_TYPE_CPU) &&
        clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL) == CL_SUCCESS && units > 0)
        return (int)units;
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 0;
}

/* PyTorch's CPU scaled_dot_product_attention on the same host data (bench/torch_anchor.h).
   Returns the rows it added: 1, or 0 after printing why it was skipped. */
static int run_torch_anchor(bench *b, result *r, const float *dense_out)
{
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "torch_sdpa");
    char why[512] = "";
    float *out = xmalloc(b->out_bytes);
    const int ok = torch_sdpa_anchor(&b->shape, b->hq, b->hk, b->hv, torch_threads(b), b->o.repeat, b->o.warmup,
                                     &r->torch, out, why, sizeof why) == 0;
    if (ok) {
        r->time_ms = r->torch.median_ms;
        finish_anchor_row(b, r, out, dense_out);
    } else {
        printf("torch anchor skipped: %s\n", why);
    }
    free(out);
    return ok;
}

int main(int argc, char **argv)
{
    bench b = {0};
    b.o = parse(argc, argv);
    options *o = &b.o;
    if (o->device)
        setenv("CLSA_DEVICE", o->device, 1);
    clsa_context_options copt = {0};
    if (o->style)
        copt.kernel_style = !strcmp(o->style, "cpu") ? CLSA_STYLE_CPU : !strcmp(o->style, "gpu") ? CLSA_STYLE_GPU : (usage(), CLSA_STYLE_AUTO);
    clsa_status st = clsa_context_create_default(&copt, &b.ctx);
    if (st)
        die(NULL, st, "creating a context (is an OpenCL device installed?)");
    if (o->info) {
        device_info_print(stdout, b.ctx);
        clsa_context_release(b.ctx);
        return 0;
    }

    if (!strncmp(o->data, "npy:", 4)) {
        int64_t dq[4], dk[4], dv[4];
        b.hq = load_npy(o->data + 4, "q", o->dtype, dq);
        b.hk = load_npy(o->data + 4, "k", o->dtype, dk);
        b.hv = load_npy(o->data + 4, "v", o->dtype, dv);
        if (memcmp(dk, dv, sizeof dk) || dq[0] != dk[0] || dq[3] != dk[3]) {
            fprintf(stderr, "clsa-bench: q, k and v shapes do not fit together\n");
            return 1;
        }
        o->batch = dq[0], o->heads = dq[1], o->seq = dq[2], o->head_dim = dq[3], o->kv_heads = dk[1], o->kv_seq = dk[2];
    } else if (strcmp(o->data, "random") && strcmp(o->data, "llm") && strcmp(o->data, "sparse")) {
        usage();
    }
    if (o->tau_file) {
        char err[1024];
        o->tau_per_head = xmalloc(sizeof(float) * (size_t)o->heads);
        if (tau_file_read(o->tau_file, o->layer, (int)o->heads, o->tau_per_head, err, sizeof err) != 0) {
            fprintf(stderr, "clsa-bench: %s\n", err);
            return 1;
        }
    }
    b.shape = clsa_shape_make(o->batch, o->heads, o->kv_heads, o->seq, o->kv_seq, o->head_dim, o->dtype, o->causal);
    const int64_t nq = o->batch * o->heads * o->seq * o->head_dim, nkv = o->batch * o->kv_heads * o->kv_seq * o->head_dim;
    const size_t es = clsa_dtype_size(o->dtype);
    if (!b.hq) {
        b.hq = xmalloc((size_t)nq * es), b.hk = xmalloc((size_t)nkv * es), b.hv = xmalloc((size_t)nkv * es);
        if (!strcmp(o->data, "llm") || !strcmp(o->data, "sparse")) {
            llm_data_generate_preset(&b.shape, 1, strcmp(o->data, "llm") ? LLM_PRESET_SPARSE : LLM_PRESET_LLM, b.hq, b.hk,
                                     b.hv);
        } else {
            random_fill(b.hq, o->dtype, nq, 1);
            random_fill(b.hk, o->dtype, nkv, 2);
            random_fill(b.hv, o->dtype, nkv, 3);
        }
    }
    cl_int err = CL_SUCCESS;
    b.clc = clsa_context_cl_context(b.ctx);
    b.out_bytes = (size_t)nq * es;
    b.queue = clCreateCommandQueue(b.clc, clsa_context_device(b.ctx), 0, &err);
    b.q = clCreateBuffer(b.clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nq * es, b.hq, &err);
    b.k = clCreateBuffer(b.clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nkv * es, b.hk, &err);
    b.v = clCreateBuffer(b.clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nkv * es, b.hv, &err);
    b.out = clCreateBuffer(b.clc, CL_MEM_READ_WRITE, b.out_bytes, NULL, &err);
    if (err)
        die(b.ctx, (clsa_status)err, "allocating device buffers");

    printf("device: %s (%s kernels)\n", clsa_context_device_name(b.ctx),
           clsa_context_kernel_style(b.ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu");
    printf("shape: batch %lld, heads %lld/%lld, seq %lld, kv_seq %lld, head_dim %lld, %s, %s; data %s\n",
           (long long)o->batch, (long long)o->heads, (long long)o->kv_heads, (long long)o->seq, (long long)o->kv_seq,
           (long long)o->head_dim, dtype_name(o->dtype), o->causal ? "causal" : "non-causal", o->data);

    /* Dense runs first: its output and time are what the sparse methods are compared with. */
    char list[256];
    snprintf(list, sizeof list, "%s", o->methods);
    int want_sparse = strcmp(list, "dense") != 0; /* any method but dense alone */
    result results[MAX_RESULTS];
    int nres = 0;
    float *dense_out = NULL;
    double dense_ms = NAN;
    if (want_sparse || strstr(list, "dense") || strstr(list, "random")) {
        run_method(&b, "dense", &results[nres], NULL);
        dense_ms = results[nres].time_ms;
        dense_out = xmalloc(b.out_bytes);
        clEnqueueReadBuffer(b.queue, b.out, CL_TRUE, 0, b.out_bytes, dense_out, 0, NULL, NULL);
        nres++;
    }
    for (char *save = NULL, *m = strtok_r(list, ",", &save); m && nres < MAX_RESULTS - 2; m = strtok_r(NULL, ",", &save))
        if (strcmp(m, "dense") != 0)
            run_method(&b, m, &results[nres++], dense_out);
    /* Recall against the oracle's mask (computed untimed when oracle was not asked for). */
    const uint8_t *oracle = NULL;
    result extra;
    for (int i = 0; i < nres; ++i)
        if (!strcmp(results[i].method, "oracle"))
            oracle = results[i].bitmap;
    if (!oracle && want_sparse) {
        int keep_repeat = o->repeat, keep_warm = o->warmup, keep_check = o->check;
        o->repeat = 1, o->warmup = 0, o->check = 0;
        run_method(&b, "oracle", &extra, NULL);
        o->repeat = keep_repeat, o->warmup = keep_warm, o->check = keep_check;
        oracle = extra.bitmap;
    }
    const int64_t mask_elems = o->batch * o->heads * ((o->seq + o->block_q - 1) / o->block_q) *
                               ((o->kv_seq + o->block_k - 1) / o->block_k);
    for (int i = 0; i < nres; ++i)
        if (results[i].bitmap && oracle) {
            int64_t in = 0, found = 0;
            for (int64_t e = 0; e < mask_elems; ++e) {
                in += oracle[e];
                found += oracle[e] && results[i].bitmap[e];
            }
            results[i].recall = in ? (double)found / (double)in : 1.0;
        }

    if ((o->anchors & ANCHOR_CLBLAST) && nres < MAX_RESULTS)
        nres += run_clblast_anchor(&b, &results[nres], dense_out);
    if ((o->anchors & ANCHOR_TORCH) && nres < MAX_RESULTS)
        nres += run_torch_anchor(&b, &results[nres], dense_out);
    const double sgemm = o->sgemm > 0 ? bench_sgemm_gflops(o->sgemm, 3) : -1.0;
    /* The device's own f32 ([0]) and f16 ([1]) FMA peaks (bench/fma_peak.h); rc 0: measured. */
    fma_peak peak[2] = {{0}};
    char peak_why[2][512] = {"", ""};
    int peak_rc[2] = {1, 1};
    for (int h = 0; h < 2 && (o->anchors & ANCHOR_FMA); ++h)
        peak_rc[h] = fma_peak_measure(b.clc, clsa_context_device(b.ctx), b.queue, h, &peak[h], peak_why[h],
                                      sizeof peak_why[h]);
    printf("\n%-10s %10s %9s %8s %9s %9s %9s %8s %8s %9s %8s %10s\n", "method", "median ms", "GFLOP/s", "density",
           "quant ms", "estim ms", "attend ms", "speedup", "rel_l1", "max_abs", "recall", "max_rel_err");
    for (int i = 0; i < nres; ++i) {
        const result *r = &results[i];
        printf("%-10s %10.3f %9.2f %8.4f %9.3f %9.3f %9.3f %8.3f %8.2g %9.2g %8.4f %10.3g\n", r->method, r->time_ms,
               r->gflops, r->density, r->quant_ms, r->estimate_ms, r->attend_ms, dense_ms / r->time_ms, r->rel_l1,
               r->max_abs, r->recall, r->max_rel_err);
    }
    if (sgemm > 0)
        printf("sgemm: OpenBLAS %d^3 at %.2f GFLOP/s (the CPU f32 ceiling); dense reaches %.3f of it\n", o->sgemm, sgemm,
               nres ? results[0].gflops / sgemm : 0.0);
    for (int h = 0; h < 2 && (o->anchors & ANCHOR_FMA); ++h) {
        if (peak_rc[h] == 0)
            printf("%s FMA peak: %.2f GFLOP/s (probe: %zu work-items x %d %s%d accumulators x %ld x 2 FMAs, "
                   "median of %d runs, %.1f ms)\n", h ? "f16" : "f32", peak[h].gflops, peak[h].global, peak[h].accs,
                   h ? "half" : "float", peak[h].vec, peak[h].iters, peak[h].runs, peak[h].ms);
        else
            printf("%s FMA peak: %s (%s)\n", h ? "f16" : "f32", peak_rc[h] > 0 ? "not available" : "failed",
                   peak_why[h]);
    }
    for (int i = 0; i < nres && peak_rc[0] == 0; ++i)
        printf("%s: %.3f of the f32 FMA peak%s\n", results[i].method, results[i].gflops / peak[0].gflops,
               results[i].sparse ? " (dense-equivalent FLOPs)" : "");
    for (int i = 0; i < nres; ++i)
        if (!strcmp(results[i].method, "torch_sdpa"))
            printf("torch_sdpa: torch %s, %d threads, kernel %s, GQA %s\n", results[i].torch.version,
                   results[i].torch.threads, results[i].torch.backend, results[i].torch.gqa);
    for (int i = 0; i < nres; ++i)
        if (results[i].sparse)
            printf("%s: overhead (quant + estimate) / dense = %.3f; attend / (dense x density) = %.3f\n",
                   results[i].method, (results[i].quant_ms + results[i].estimate_ms) / dense_ms,
                   results[i].attend_ms / (dense_ms * results[i].density));
    for (int i = 0; i < nres; ++i)
        if (!isnan(results[i].pruned))
            printf("%s: value pruning zeroed %.4f of the probabilities; rel_l1 to dense %.4g\n", results[i].method,
                   results[i].pruned, results[i].rel_l1);
    for (int i = 0; i < nres; ++i)
        if ((results[i].sparse || !isnan(results[i].pruned)) && results[i].head_rel_l1) {
            printf("%s: rel_l1 per query head:", results[i].method);
            for (int64_t h = 0; h < b.shape.q_heads; ++h)
                printf(" %.4g", results[i].head_rel_l1[h]);
            printf("\n");
        }
    for (int i = 0; i < nres; ++i)
        if (results[i].sparse && results[i].estimate_ms > 0.0 && results[i].bitmap)
            printf("%s: estimate rate >= %.2f x dense's product rate (pairs of the blocks it drops only)\n",
                   results[i].method, estimate_rate_vs_dense(&b, &results[i], dense_ms));

    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f) {
            fprintf(stderr, "clsa-bench: cannot write %s\n", o->json);
            return 1;
        }
        fprintf(f, "[\n");
        for (int i = 0; i < nres; ++i) {
            const result *r = &results[i];
            fprintf(f,
                    "  {\"method\": \"%s\", \"device\": \"%s\", \"style\": \"%s\", \"data\": \"%s\", \"batch\": %lld, "
                    "\"seq\": %lld, \"kv_seq\": %lld, \"heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, "
                    "\"dtype\": \"%s\", \"causal\": %s, \"time_ms\": %.6f, \"gflops\": %.4f, \"tau\": %g, "
                    "\"sink\": %d, \"local\": %d, \"block_q\": %d, \"block_k\": %d, \"density\": %.6f, "
                    "\"quant_ms\": %.6f, \"estimate_ms\": %.6f, \"attend_ms\": %.6f, \"speedup_vs_dense\": %.6f",
                    r->method, clsa_context_device_name(b.ctx),
                    clsa_context_kernel_style(b.ctx) == CLSA_STYLE_CPU ? "cpu" : "gpu", o->data, (long long)o->batch,
                    (long long)o->seq, (long long)o->kv_seq, (long long)o->heads, (long long)o->kv_heads,
                    (long long)o->head_dim, dtype_name(o->dtype), o->causal ? "true" : "false", r->time_ms, r->gflops,
                    r->sparse ? (double)o->tau : 0.0, o->sink, o->local, o->block_q, o->block_k, r->density,
                    r->quant_ms, r->estimate_ms, r->attend_ms, dense_ms / r->time_ms);
            if (r->sparse) {
                fprintf(f, ", \"rel_l1_vs_dense\": %.6g, \"max_abs_vs_dense\": %.6g", r->rel_l1, r->max_abs);
                for (int64_t h = 0; r->head_rel_l1 && h < b.shape.q_heads; ++h)
                    fprintf(f, "%s%.6g%s", h ? ", " : ", \"rel_l1_per_head\": [", r->head_rel_l1[h],
                            h + 1 < b.shape.q_heads ? "" : "]");
                if (!isnan(r->recall)) /* none for a random mask; JSON has no NaN */
                    fprintf(f, ", \"recall_vs_oracle\": %.6f", r->recall);
            }
            else if (r->anchor)
                fprintf(f, ", \"anchor\": true, \"rel_l1_vs_dense\": %.6g, \"max_abs_vs_dense\": %.6g", r->rel_l1,
                        r->max_abs);
            if (!strcmp(r->method, "torch_sdpa"))
                fprintf(f, ", \"torch_version\": \"%s\", \"torch_threads\": %d, \"torch_backend\": \"%s\", "
                        "\"torch_gqa\": \"%s\"", r->torch.version, r->torch.threads, r->torch.backend, r->torch.gqa);
            if (!isnan(r->max_rel_err))
                fprintf(f, ", \"max_rel_err_vs_ref\": %.6g", r->max_rel_err);
            for (int h = 0; h < 2 && (o->anchors & ANCHOR_FMA); ++h) { /* null: not available or failed */
                if (peak_rc[h] == 0)
                    fprintf(f, ", \"fma_peak_%s_gflops\": %.4f", h ? "f16" : "f32", peak[h].gflops);
                else
                    fprintf(f, ", \"fma_peak_%s_gflops\": null", h ? "f16" : "f32");
            }
            if ((o->anchors & ANCHOR_FMA) && peak_rc[0] == 0)
                fprintf(f, ", \"fraction_of_f32_fma_peak\": %.6f, \"fma_fraction_flops\": \"%s\"",
                        r->gflops / peak[0].gflops, r->sparse ? "dense-equivalent" : "actual");
            if (sgemm > 0)
                fprintf(f, ", \"sgemm_gflops\": %.4f, \"ratio_vs_sgemm\": %.4f", sgemm, r->gflops / sgemm);
            fprintf(f, "}%s\n", i + 1 < nres ? "," : "");
        }
        fprintf(f, "]\n");
        fclose(f);
    }
    return 0;
}

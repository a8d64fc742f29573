/*
 * clsa-run: runs one attention method on real tensors from .npy files and writes O, statistics and
 * a picture of a head's block mask.
 *
 *   clsa-run --q Q.npy --k K.npy --v V.npy --out O.npy --method M [options]
 *            [--stats FILE.json] [--mask-png FILE.png --head H] [--device SEL]
 *
 * Exit status: 0 done; 1 usage error; 2 input error (a file, a shape, a dtype); 3 library or device
 * error; 4 an output could not be written. Every output is written to a temporary file beside it
 * and renamed, so a failure leaves no partial file.
 */
#include "clsa/clsa.h"
#include "mask_png.h"
#include "npy.h"
#include "reference.h"
#include "tau_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_INPUT = 2, EXIT_LIBRARY = 3, EXIT_OUTPUT = 4 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clsa-run --q Q.npy --k K.npy --v V.npy --out O.npy --method M [options]\n"
            "                [--stats FILE.json] [--mask-png FILE.png --head H] [--device SEL]\n"
            "  Q [B,Hq,L,D] or [Hq,L,D]; K, V [B,Hkv,Lk,D] or [Hkv,Lk,D]; float32 or float16, one dtype.\n"
            "  --method dense | sale | sale-exact | streaming | sliding | topk | cdf | xattn, or a comma list\n"
            "           of Hq of those (not sale-exact): one method per query head.\n"
            "  options: --causal  --scale S  --tau T  --tau-file F [--layer N]  --sink N  --local N\n"
            "           --block-q N  --block-k N  --refine NATS  --window N  --symmetric  --topk F  --gamma F\n"
            "           --xattn-threshold F  --xattn-stride N  --no-forced\n"
            "           --value-prune T  --value-bits B (B alone: T = 1e-3)  --compare-dense  --repeat N\n"
            "  --stats: JSON with the device, shape, settings, density per head, milliseconds per stage\n"
            "           (median of --repeat runs after one warm-up), the pruned fraction, and with\n"
            "           --compare-dense rel_l1 = sum |O - O_dense| / sum |O_dense| against dense on the device.\n"
            "  --mask-png: head H's block mask (batch 0): kept, sink, local/diagonal and skipped blocks in\n"
            "           their colours, axes in tokens. A mask over %d blocks on a side is downsampled:\n"
            "           each pixel covers ceil(blocks / %d) blocks and shows the highest class among them\n"
            "           (sink > local > kept > skipped), so that no kept block disappears.\n"
            "  Exit status: 1 usage, 2 input, 3 library or device, 4 output.\n",
            MASK_PNG_MAX_SIDE, MASK_PNG_MAX_SIDE);
}

typedef struct options {
    const char *q, *k, *v, *out, *method, *stats, *mask_png, *device, *tau_file;
    int head, layer, repeat, compare_dense, causal;
    float scale, tau, refine, topk, gamma, xattn_threshold, value_prune;
    int sink, local, block_q, block_k, window, symmetric, xattn_stride, no_forced, value_bits;
    bool tau_set, refine_set;
} options;

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "clsa-run: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (status == EXIT_USAGE)
        usage(stderr);
    exit(status);
}

static long parse_long(const char *flag, const char *s)
{
    char *end = NULL;
    errno = 0;
    const long x = strtol(s, &end, 10);
    if (errno || !end || *end || end == s)
        die(EXIT_USAGE, "%s %s: not an integer", flag, s);
    return x;
}
static float parse_float(const char *flag, const char *s)
{
    char *end = NULL;
    const float x = strtof(s, &end);
    if (!end || *end || end == s || !isfinite(x))
        die(EXIT_USAGE, "%s %s: not a finite number", flag, s);
    return x;
}

static options parse(int argc, char **argv)
{
    options o = {0};
    clsa_sparsity d;
    clsa_sparsity_init(&d, CLSA_METHOD_SALE);
    o.head = -1, o.repeat = 1, o.tau = d.tau, o.sink = d.sink_tokens, o.local = d.local_tokens;
    o.block_q = d.block_q, o.block_k = d.block_k, o.refine = d.refine_nats, o.window = d.window_tokens;
    o.topk = d.topk, o.gamma = d.cdf_gamma, o.xattn_threshold = d.xattn_threshold, o.xattn_stride = d.xattn_stride;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (die(EXIT_USAGE, "%s needs a value", a), ""))
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--q")) o.q = VALUE();
        else if (!strcmp(a, "--k")) o.k = VALUE();
        else if (!strcmp(a, "--v")) o.v = VALUE();
        else if (!strcmp(a, "--out")) o.out = VALUE();
        else if (!strcmp(a, "--method")) o.method = VALUE();
        else if (!strcmp(a, "--stats")) o.stats = VALUE();
        else if (!strcmp(a, "--mask-png")) o.mask_png = VALUE();
        else if (!strcmp(a, "--head")) o.head = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--device")) o.device = VALUE();
        else if (!strcmp(a, "--causal")) o.causal = 1;
        else if (!strcmp(a, "--scale")) o.scale = parse_float(a, VALUE());
        else if (!strcmp(a, "--tau")) o.tau = parse_float(a, VALUE()), o.tau_set = true;
        else if (!strcmp(a, "--tau-file")) o.tau_file = VALUE();
        else if (!strcmp(a, "--layer")) o.layer = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--sink")) o.sink = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--local")) o.local = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--block-q")) o.block_q = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--block-k")) o.block_k = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--refine")) o.refine = parse_float(a, VALUE()), o.refine_set = true;
        else if (!strcmp(a, "--window")) o.window = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--symmetric")) o.symmetric = 1;
        else if (!strcmp(a, "--topk")) o.topk = parse_float(a, VALUE());
        else if (!strcmp(a, "--gamma")) o.gamma = parse_float(a, VALUE());
        else if (!strcmp(a, "--xattn-threshold")) o.xattn_threshold = parse_float(a, VALUE());
        else if (!strcmp(a, "--xattn-stride")) o.xattn_stride = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--no-forced")) o.no_forced = 1;
        else if (!strcmp(a, "--value-prune")) o.value_prune = parse_float(a, VALUE());
        else if (!strcmp(a, "--value-bits")) o.value_bits = (int)parse_long(a, VALUE());
        else if (!strcmp(a, "--compare-dense")) o.compare_dense = 1;
        else if (!strcmp(a, "--repeat")) o.repeat = (int)parse_long(a, VALUE());
        else
            die(EXIT_USAGE, "unknown option %s", a);
#undef VALUE
    }
    if (!o.q || !o.k || !o.v || !o.out || !o.method)
        die(EXIT_USAGE, "--q, --k, --v, --out and --method are required");
    if (o.repeat < 1 || o.repeat > 1000)
        die(EXIT_USAGE, "--repeat %d: must be from 1 to 1000", o.repeat);
    if (o.mask_png && o.head < 0)
        die(EXIT_USAGE, "--mask-png needs --head H");
    if (o.head >= 0 && !o.mask_png)
        die(EXIT_USAGE, "--head only applies to --mask-png");
    if (o.value_bits && o.value_prune == 0.0f)
        o.value_prune = 1e-3f; /* DESIGN.md section 4: the threshold of Ji et al.'s examples */
    return o;
}

/* An input tensor: [B, H, L, D] (a 3-D file is B = 1). */
typedef struct tensor {
    npy_array a;
    int64_t dims[4];
} tensor;

static void load(const char *path, const char *name, tensor *t)
{
    char err[512];
    if (npy_read(path, &t->a, err, sizeof err) != 0)
        die(EXIT_INPUT, "--%s %s: %s", name, path, err);
    if (t->a.ndim != 3 && t->a.ndim != 4)
        die(EXIT_INPUT, "--%s %s: %d dimensions; expected [B, H, L, D] or [H, L, D]", name, path, t->a.ndim);
    const int off = 4 - t->a.ndim;
    t->dims[0] = 1;
    for (int i = 0; i < t->a.ndim; ++i)
        t->dims[off + i] = t->a.shape[i];
    for (int i = 0; i < 4; ++i)
        if (t->dims[i] <= 0)
            die(EXIT_INPUT, "--%s %s: dimension %d is %lld", name, path, i, (long long)t->dims[i]);
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, by_value);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

typedef struct run {
    clsa_context *ctx;
    cl_context cl;
    cl_command_queue queue;
    cl_mem q, k, v, o, ws;
    clsa_plan *plan;
    bool selecting; /* a selector writes the mask */
    bool sale;      /* some head is SALE: quantize first */
} run;

static void check(const run *r, clsa_status st, const char *what)
{
    if (st)
        die(EXIT_LIBRARY, "%s: %s: %s", what, clsa_status_string(st), r->ctx ? clsa_context_last_error(r->ctx) : "");
}

/* One attention call, stage by stage, each waited for: ms[0..2] get the wall time of quantize, select
   and attend (NaN where absent), ms[3] their sum. Waiting between stages costs a little overlap,
   but times every stage whole, however many kernels it enqueues. */
static void run_once(run *r, double ms[4])
{
    ms[0] = ms[1] = NAN;
    double t = now_ms();
#define STAGE(slot, call, what)                                                                    \
    do {                                                                                           \
        check(r, call, what);                                                                      \
        if (clFinish(r->queue))                                                                    \
            die(EXIT_LIBRARY, "clFinish after %s failed", what);                                   \
        const double t_end = now_ms();                                                             \
        ms[slot] = t_end - t, t = t_end;                                                           \
    } while (0)
    if (!r->selecting)
        STAGE(2, clsa_attention(r->plan, r->queue, r->q, r->k, r->v, r->o, r->ws, 0, NULL, NULL), "clsa_attention");
    else {
        if (r->sale)
            STAGE(0, clsa_quantize(r->plan, r->queue, r->q, r->k, r->ws, 0, NULL, NULL), "clsa_quantize");
        STAGE(1, clsa_estimate_mask(r->plan, r->queue, r->q, r->k, r->ws, NULL, 0, NULL, NULL), "clsa_estimate_mask");
        STAGE(2, clsa_attention_masked(r->plan, r->queue, r->q, r->k, r->v, r->o, r->ws, NULL, CLSA_MASK_TRUST, 0, NULL,
                                       NULL),
              "clsa_attention_masked");
    }
#undef STAGE
    ms[3] = (isnan(ms[0]) ? 0.0 : ms[0]) + (isnan(ms[1]) ? 0.0 : ms[1]) + ms[2];
}

/* The temporary name beside path (for mkstemp). */
static void temp_beside(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    const int dir_len = slash ? (int)(slash - path + 1) : 0;
    if (snprintf(out, size, "%.*s.%s.XXXXXX", dir_len, path, slash ? slash + 1 : path) >= (int)size)
        die(EXIT_OUTPUT, "%s: path too long", path);
}

static void write_output(const char *path, const float *o, const int64_t dims[4], int ndim)
{
    char tmp[4096], err[512] = "";
    temp_beside(path, tmp, sizeof tmp);
    const int fd = mkstemp(tmp);
    if (fd < 0)
        die(EXIT_OUTPUT, "--out %s: cannot create a file there: %s", path, strerror(errno));
    close(fd);
    if (npy_write_f32(tmp, o, ndim, dims + (4 - ndim), err, sizeof err) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        die(EXIT_OUTPUT, "--out %s: %s", path, err[0] ? err : strerror(errno));
    }
}

/* The methods of --method: one name, or one per query head. */
static int parse_methods(const char *list, int64_t q_heads, clsa_method *methods)
{
    char copy[1024];
    if (snprintf(copy, sizeof copy, "%s", list) >= (int)sizeof copy)
        die(EXIT_USAGE, "--method: list too long");
    int n = 0;
    for (char *save = NULL, *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        clsa_method method;
        if (clsa_method_from_name(m, &method) != CLSA_SUCCESS || method == CLSA_METHOD_MASK ||
            method == CLSA_METHOD_PER_HEAD)
            die(EXIT_USAGE, "--method %s: \"%s\" is not a method clsa-run runs", list, m);
        if (n >= q_heads)
            die(EXIT_INPUT, "--method %s: more methods than the %lld query heads", list, (long long)q_heads);
        methods[n++] = method;
    }
    if (n != 1 && n != q_heads)
        die(EXIT_INPUT, "--method %s: %d methods for %lld query heads: give one, or one per head", list, n,
            (long long)q_heads);
    for (int i = 0; n > 1 && i < n; ++i)
        if (methods[i] == CLSA_METHOD_SALE_EXACT)
            die(EXIT_INPUT, "--method %s: sale-exact runs only as the whole plan's method", list);
    return n;
}

static clsa_sparsity settings(const options *o, clsa_method method, float tau)
{
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, method);
    sp.tau = tau, sp.sink_tokens = o->sink, sp.local_tokens = o->local, sp.block_q = o->block_q, sp.block_k = o->block_k;
    sp.refine_nats = o->refine, sp.keep_forced = o->no_forced ? 0 : 1, sp.window_tokens = o->window;
    sp.window_symmetric = o->symmetric, sp.topk = o->topk, sp.cdf_gamma = o->gamma;
    sp.xattn_threshold = o->xattn_threshold, sp.xattn_stride = o->xattn_stride;
    return sp;
}

static int plan_error_exit(clsa_status st)
{
    return st == CLSA_ERR_DEVICE_UNSUPPORTED || st == CLSA_ERR_BUILD_FAILED || st == CLSA_ERR_OUT_OF_HOST_MEMORY ||
                   st > -2000
               ? EXIT_LIBRARY
               : EXIT_INPUT;
}

static cl_mem buffer(const run *r, size_t bytes, const void *init)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(r->cl, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes, (void *)init, &err);
    if (err)
        die(EXIT_LIBRARY, "allocating %zu bytes on the device: OpenCL error %d", bytes, err);
    return m;
}

/* O as float32 (converted from the storage dtype). */
static float *read_output(const run *r, const clsa_shape *s, int64_t elements)
{
    const size_t es = clsa_dtype_size(s->dtype);
    void *raw = malloc((size_t)elements * es);
    float *out = malloc((size_t)elements * sizeof(float));
    if (!raw || !out)
        die(EXIT_LIBRARY, "no memory for the output");
    if (clEnqueueReadBuffer(r->queue, r->o, CL_TRUE, 0, (size_t)elements * es, raw, 0, NULL, NULL))
        die(EXIT_LIBRARY, "reading O back failed");
    for (int64_t i = 0; i < elements; ++i)
        out[i] = (float)ref_load(raw, s->dtype, i);
    free(raw);
    return out;
}

/* The picture's class of each block of head h (batch 0), from the plan's mask and its settings. */
static uint8_t *classify(const run *r, const clsa_shape *s, const clsa_sparsity *head, int64_t h,
                         const clsa_mask_geometry *g)
{
    clsa_block_mask m;
    check(r, clsa_plan_workspace_mask(r->plan, r->ws, &m), "clsa_plan_workspace_mask");
    int32_t *counts = malloc(g->counts_bytes), *indices = malloc(g->indices_bytes);
    uint8_t *bitmap = malloc((size_t)(g->rows * g->num_k_blocks)), *cells = malloc((size_t)(g->num_q_blocks * g->num_k_blocks));
    if (!counts || !indices || !bitmap || !cells)
        die(EXIT_LIBRARY, "no memory for the mask");
    if (clEnqueueReadBuffer(r->queue, r->ws, CL_TRUE, m.counts_offset, g->counts_bytes, counts, 0, NULL, NULL) ||
        clEnqueueReadBuffer(r->queue, r->ws, CL_TRUE, m.indices_offset, g->indices_bytes, indices, 0, NULL, NULL))
        die(EXIT_LIBRARY, "reading the mask back failed");
    check(r, clsa_mask_to_bitmap(counts, indices, g->rows, g->num_k_blocks, bitmap), "clsa_mask_to_bitmap");
    for (int64_t qb = 0; qb < g->num_q_blocks; ++qb) {
        /* The rows' diagonal keys and local ranges, as clsa.h defines them (clsa_sparsity). */
        const int64_t row_first = qb * g->block_q, row_last = (qb + 1) * g->block_q - 1 < s->q_len - 1
                                                                  ? (qb + 1) * g->block_q - 1 : s->q_len - 1;
        const int64_t d0 = row_first + s->kv_len - s->q_len, d1 = row_last + s->kv_len - s->q_len;
        const int64_t last_visible = s->causal ? (d1 < s->kv_len - 1 ? d1 : s->kv_len - 1) : s->kv_len - 1;
        const int64_t local = head->local_tokens;
        const int64_t local_first = s->causal ? d0 - local + 1 : d0 - local / 2;
        const int64_t local_last = s->causal ? d1 : d1 + local - local / 2 - 1;
        for (int64_t kb = 0; kb < g->num_k_blocks; ++kb) {
            const int64_t k0 = kb * g->block_k, k1 = k0 + g->block_k - 1;
            const bool kept = bitmap[(h * g->num_q_blocks + qb) * g->num_k_blocks + kb];
            uint8_t cell = k0 > last_visible ? CELL_HIDDEN : !kept ? CELL_SKIPPED : CELL_KEPT;
            if (kept && k0 < head->sink_tokens)
                cell = CELL_SINK;
            else if (kept && ((k1 >= local_first && k0 <= local_last) || (k1 >= d0 && k0 <= d1)))
                cell = CELL_LOCAL;
            cells[qb * g->num_k_blocks + kb] = cell;
        }
    }
    free(counts), free(indices), free(bitmap);
    return cells;
}

int main(int argc, char **argv)
{
    const options o = parse(argc, argv);
    tensor tq, tk, tv;
    load(o.q, "q", &tq), load(o.k, "k", &tk), load(o.v, "v", &tv);
    if (tq.a.is_f16 != tk.a.is_f16 || tq.a.is_f16 != tv.a.is_f16)
        die(EXIT_INPUT, "Q, K and V must share one dtype (float32 or float16): Q is %s, K %s, V %s",
            tq.a.is_f16 ? "f16" : "f32", tk.a.is_f16 ? "f16" : "f32", tv.a.is_f16 ? "f16" : "f32");
    for (int i = 0; i < 4; ++i)
        if (tk.dims[i] != tv.dims[i])
            die(EXIT_INPUT, "K [%lld,%lld,%lld,%lld] and V [%lld,%lld,%lld,%lld] must have one shape",
                (long long)tk.dims[0], (long long)tk.dims[1], (long long)tk.dims[2], (long long)tk.dims[3],
                (long long)tv.dims[0], (long long)tv.dims[1], (long long)tv.dims[2], (long long)tv.dims[3]);
    if (tq.dims[0] != tk.dims[0] || tq.dims[3] != tk.dims[3])
        die(EXIT_INPUT, "Q [%lld,%lld,%lld,%lld] and K [%lld,%lld,%lld,%lld] need the same batch and head_dim",
            (long long)tq.dims[0], (long long)tq.dims[1], (long long)tq.dims[2], (long long)tq.dims[3],
            (long long)tk.dims[0], (long long)tk.dims[1], (long long)tk.dims[2], (long long)tk.dims[3]);
    if (tq.dims[1] % tk.dims[1])
        die(EXIT_INPUT, "Q's %lld heads are not a multiple of K's %lld", (long long)tq.dims[1], (long long)tk.dims[1]);
    const clsa_dtype dtype = tq.a.is_f16 ? CLSA_F16 : CLSA_F32;
    clsa_shape shape = clsa_shape_make(tq.dims[0], tq.dims[1], tk.dims[1], tq.dims[2], tk.dims[2], tq.dims[3], dtype,
                                       o.causal);
    shape.scale = o.scale;
    shape.value_prune = o.value_prune, shape.value_bits = o.value_bits;
    if (o.head >= shape.q_heads)
        die(EXIT_INPUT, "--head %d: Q has %lld query heads", o.head, (long long)shape.q_heads);

    /* Methods and settings, with per-head thresholds from a tau file. */
    clsa_method *methods = malloc(sizeof *methods * (size_t)shape.q_heads);
    float *taus = malloc(sizeof *taus * (size_t)shape.q_heads);
    clsa_sparsity *heads = malloc(sizeof *heads * (size_t)shape.q_heads);
    if (!methods || !taus || !heads)
        die(EXIT_LIBRARY, "no memory");
    const int n_methods = parse_methods(o.method, shape.q_heads, methods);
    char err[512];
    for (int64_t h = 0; h < shape.q_heads; ++h)
        taus[h] = o.tau;
    if (o.tau_file && tau_file_read(o.tau_file, o.layer, (int)shape.q_heads, taus, err, sizeof err) != 0)
        die(EXIT_INPUT, "--tau-file %s: %s", o.tau_file, err);
    clsa_sparsity sp = settings(&o, n_methods == 1 ? methods[0] : CLSA_METHOD_PER_HEAD, o.tau);
    if (n_methods == 1)
        sp.tau_per_head = o.tau_file ? taus : NULL;
    else {
        for (int64_t h = 0; h < shape.q_heads; ++h)
            heads[h] = settings(&o, methods[h], taus[h]);
        sp.per_head = heads;
    }

    /* The device, a queue, the plan. */
    run r = {0};
    clsa_status st;
    if (o.device) {
        cl_device_id device;
        if ((st = clsa_select_device(o.device, &device, err, sizeof err)))
            die(EXIT_LIBRARY, "--device %s: %s", o.device, err);
        cl_int e = CL_SUCCESS;
        r.cl = clCreateContext(NULL, 1, &device, NULL, NULL, &e);
        if (e)
            die(EXIT_LIBRARY, "clCreateContext: OpenCL error %d", e);
        check(&r, clsa_context_create(r.cl, device, NULL, &r.ctx), "clsa_context_create");
    } else {
        check(&r, clsa_context_create_default(NULL, &r.ctx), "clsa_context_create_default (is an OpenCL device installed?)");
        r.cl = clsa_context_cl_context(r.ctx);
    }
    cl_int e = CL_SUCCESS;
    r.queue = clCreateCommandQueue(r.cl, clsa_context_device(r.ctx), 0, &e);
    if (e)
        die(EXIT_LIBRARY, "clCreateCommandQueue: OpenCL error %d", e);
    const clsa_sparsity *plan_sp = sp.method == CLSA_METHOD_DENSE ? NULL : &sp;
    if ((st = clsa_plan_create(r.ctx, &shape, plan_sp, &r.plan)))
        die(plan_error_exit(st), "%s: %s", clsa_status_string(st), clsa_context_last_error(r.ctx));
    r.selecting = plan_sp != NULL;
    for (int64_t h = 0; h < shape.q_heads; ++h)
        r.sale = r.sale || methods[n_methods == 1 ? 0 : h] == CLSA_METHOD_SALE;
    if (o.mask_png && !r.selecting)
        die(EXIT_USAGE, "--mask-png: a dense plan has no block mask");
    const size_t es = clsa_dtype_size(dtype);
    const int64_t q_elems = tq.a.count, kv_elems = tk.a.count;
    r.q = buffer(&r, (size_t)q_elems * es, tq.a.data);
    r.k = buffer(&r, (size_t)kv_elems * es, tk.a.data);
    r.v = buffer(&r, (size_t)kv_elems * es, tv.a.data);
    r.o = buffer(&r, (size_t)q_elems * es, NULL);
    r.ws = buffer(&r, clsa_plan_workspace_size(r.plan), NULL);

    /* One warm-up, then the timed runs. */
    double ms[4], *runs = malloc(sizeof(double) * 4 * (size_t)o.repeat), med[4];
    run_once(&r, ms);
    for (int i = 0; i < o.repeat; ++i)
        run_once(&r, runs + 4 * i);
    for (int stage = 0; stage < 4; ++stage) {
        double col[1000];
        for (int i = 0; i < o.repeat; ++i)
            col[i] = runs[4 * i + stage];
        med[stage] = median(col, o.repeat);
    }
    float *out = read_output(&r, &shape, q_elems);
    double *density = calloc((size_t)shape.q_heads, sizeof(double)), *pruned_head = calloc((size_t)shape.q_heads, sizeof(double));
    double *rel_head = calloc((size_t)shape.q_heads, sizeof(double)), pruned = NAN, rel_l1 = NAN, max_abs = NAN;
    if (r.selecting)
        check(&r, clsa_mask_density(r.plan, r.queue, r.ws, NULL, density), "clsa_mask_density");
    else
        for (int64_t h = 0; h < shape.q_heads; ++h)
            density[h] = 1.0;
    if (shape.value_prune > 0.0f)
        check(&r, clsa_pruned_fraction(r.plan, r.queue, r.ws, &pruned, pruned_head), "clsa_pruned_fraction");

    /* The mask picture, before the dense comparison reuses the queue. */
    if (o.mask_png) {
        clsa_mask_geometry g;
        check(&r, clsa_plan_mask_geometry(r.plan, &g), "clsa_plan_mask_geometry");
        const clsa_sparsity *head = n_methods == 1 ? &sp : &heads[o.head];
        uint8_t *cells = classify(&r, &shape, head, o.head, &g);
        char title[160];
        snprintf(title, sizeof title, "%s, head %d of %lld, %lld x %lld tokens%s",
                 clsa_method_name(methods[n_methods == 1 ? 0 : o.head]), o.head, (long long)shape.q_heads,
                 (long long)shape.q_len, (long long)shape.kv_len, shape.causal ? ", causal" : "");
        if (mask_png_write(o.mask_png, cells, g.num_q_blocks, g.num_k_blocks, g.block_q, g.block_k, shape.q_len,
                           shape.kv_len, title, err, sizeof err) != 0)
            die(EXIT_OUTPUT, "--mask-png %s", err);
        free(cells);
    }
    if (o.compare_dense) {
        clsa_shape dense_shape = shape;
        dense_shape.value_prune = 0.0f, dense_shape.value_bits = 0;
        clsa_plan *dense = NULL;
        check(&r, clsa_plan_create(r.ctx, &dense_shape, NULL, &dense), "clsa_plan_create (dense)");
        check(&r, clsa_attention(dense, r.queue, r.q, r.k, r.v, r.o, NULL, 0, NULL, NULL), "clsa_attention (dense)");
        float *ref = read_output(&r, &shape, q_elems);
        double num = 0.0, den = 0.0;
        max_abs = 0.0;
        const int64_t per_head = shape.q_len * shape.head_dim;
        for (int64_t h = 0; h < shape.q_heads; ++h) {
            double hn = 0.0, hd = 0.0;
            for (int64_t b = 0; b < shape.batch; ++b)
                for (int64_t i = 0; i < per_head; ++i) {
                    const int64_t at = (b * shape.q_heads + h) * per_head + i;
                    const double diff = fabs((double)out[at] - (double)ref[at]);
                    hn += diff, hd += fabs((double)ref[at]);
                    max_abs = fmax(max_abs, diff);
                }
            rel_head[h] = hd > 0 ? hn / hd : 0.0;
            num += hn, den += hd;
        }
        rel_l1 = den > 0 ? num / den : 0.0;
        free(ref);
        clsa_plan_release(dense);
    }
    write_output(o.out, out, tq.dims, tq.a.ndim);

    double mean_density = 0.0;
    for (int64_t h = 0; h < shape.q_heads; ++h)
        mean_density += density[h] / (double)shape.q_heads;
    printf("clsa-run: %s on %s: [%lld, %lld, %lld, %lld] x [%lld, %lld, %lld, %lld] %s%s\n", o.method,
           clsa_context_device_name(r.ctx), (long long)shape.batch, (long long)shape.q_heads, (long long)shape.q_len,
           (long long)shape.head_dim, (long long)shape.batch, (long long)shape.kv_heads, (long long)shape.kv_len,
           (long long)shape.head_dim, dtype == CLSA_F16 ? "f16" : "f32", shape.causal ? ", causal" : "");
    printf("  density %.4f; ms: quantize %.3f, select %.3f, attend %.3f, all %.3f (median of %d)\n", mean_density,
           med[0], med[1], med[2], med[3], o.repeat);
    if (!isnan(pruned))
        printf("  value pruning (t = %g, %d bits) zeroed %.4f of the probabilities\n", (double)shape.value_prune,
               shape.value_bits, pruned);
    if (!isnan(rel_l1))
        printf("  rel_l1 to dense %.4g, max abs %.3g\n", rel_l1, max_abs);

    if (o.stats) {
        char tmp[4096];
        temp_beside(o.stats, tmp, sizeof tmp);
        const int fd = mkstemp(tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f)
            die(EXIT_OUTPUT, "--stats %s: cannot create a file there: %s", o.stats, strerror(errno));
        fprintf(f, "{\n  \"device\": \"%s\",\n", clsa_context_device_name(r.ctx));
        fprintf(f, "  \"shape\": {\"batch\": %lld, \"q_heads\": %lld, \"kv_heads\": %lld, \"q_len\": %lld, "
                   "\"kv_len\": %lld, \"head_dim\": %lld, \"dtype\": \"%s\", \"causal\": %s, \"scale\": %g},\n",
                (long long)shape.batch, (long long)shape.q_heads, (long long)shape.kv_heads, (long long)shape.q_len,
                (long long)shape.kv_len, (long long)shape.head_dim, dtype == CLSA_F16 ? "f16" : "f32",
                shape.causal ? "true" : "false", (double)clsa_plan_shape(r.plan)->scale);
        fprintf(f, "  \"methods\": [");
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s\"%s\"", h ? ", " : "", clsa_method_name(methods[n_methods == 1 ? 0 : h]));
        fprintf(f, "],\n  \"settings\": {\"tau\": [");
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s%g", h ? ", " : "", (double)taus[h]);
        fprintf(f, "], \"sink_tokens\": %d, \"local_tokens\": %d, \"block_q\": %d, \"block_k\": %d, "
                   "\"refine_nats\": %g, \"keep_forced\": %d, \"window_tokens\": %d, \"window_symmetric\": %d, "
                   "\"topk\": %g, \"cdf_gamma\": %g, \"xattn_threshold\": %g, \"xattn_stride\": %d, "
                   "\"value_prune\": %g, \"value_bits\": %d},\n",
                o.sink, o.local, o.block_q, o.block_k, (double)o.refine, o.no_forced ? 0 : 1, o.window, o.symmetric,
                (double)o.topk, (double)o.gamma, (double)o.xattn_threshold, o.xattn_stride, (double)shape.value_prune,
                shape.value_bits);
        fprintf(f, "  \"density\": %.6f,\n  \"density_per_head\": [", mean_density);
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s%.6f", h ? ", " : "", density[h]);
        fprintf(f, "],\n  \"ms\": {\"quantize\": ");
        const char *names[4] = {"quantize", "select", "attend", "total"};
        for (int stage = 0; stage < 4; ++stage) {
            if (stage)
                fprintf(f, ", \"%s\": ", names[stage]);
            if (isnan(med[stage]))
                fprintf(f, "null");
            else
                fprintf(f, "%.4f", med[stage]);
        }
        fprintf(f, ", \"repeat\": %d},\n", o.repeat);
        if (isnan(pruned))
            fprintf(f, "  \"pruned_fraction\": null,\n");
        else {
            fprintf(f, "  \"pruned_fraction\": %.6f,\n  \"pruned_fraction_per_head\": [", pruned);
            for (int64_t h = 0; h < shape.q_heads; ++h)
                fprintf(f, "%s%.6f", h ? ", " : "", pruned_head[h]);
            fprintf(f, "],\n");
        }
        if (isnan(rel_l1))
            fprintf(f, "  \"rel_l1\": null\n}\n");
        else {
            fprintf(f, "  \"rel_l1\": %.6g,\n  \"max_abs\": %.6g,\n  \"rel_l1_per_head\": [", rel_l1, max_abs);
            for (int64_t h = 0; h < shape.q_heads; ++h)
                fprintf(f, "%s%.6g", h ? ", " : "", rel_head[h]);
            fprintf(f, "]\n}\n");
        }
        if (fclose(f) != 0 || rename(tmp, o.stats) != 0) {
            unlink(tmp);
            die(EXIT_OUTPUT, "--stats %s: %s", o.stats, strerror(errno));
        }
    }
    free(out), free(density), free(pruned_head), free(rel_head), free(runs), free(methods), free(taus), free(heads);
    clReleaseMemObject(r.q), clReleaseMemObject(r.k), clReleaseMemObject(r.v), clReleaseMemObject(r.o);
    clReleaseMemObject(r.ws);
    clsa_plan_release(r.plan);
    clReleaseCommandQueue(r.queue);
    clsa_context_release(r.ctx);
    if (o.device)
        clReleaseContext(r.cl);
    npy_free(&tq.a), npy_free(&tk.a), npy_free(&tv.a);
    return 0;
}

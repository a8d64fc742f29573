/*
 * clsa-run: runs one attention method on real tensors from .npy files and writes O, statistics and
 * a picture of a head's block mask.
 *
 *   clsa-run --q Q.npy --k K.npy --v V.npy --out O.npy --method M [options]
 *            [--stats FILE.json] [--mask-png FILE.png --head H] [--device SEL]
 *
 * Exit status: 0 done; 1 usage error; 2 input error (a file, a shape, a dtype, a setting the library
 * refuses); 3 library or device error; 4 an output could not be written.
 *
 * Outputs: each one gets a temporary file beside it (mkstemp, mode 0666 less the umask) before any
 * device work, so an unwritable directory fails at once; they are renamed into place together at
 * the end, and every failure on the way (and SIGINT, SIGTERM, SIGHUP) removes them, so no partial
 * file is ever left.
 *
 * Timing: the queue has CL_QUEUE_PROFILING_ENABLE. A sparse plan runs as its stages (clsa_quantize
 * when some head is SALE, clsa_estimate_mask, clsa_attention_masked with CLSA_MASK_TRUST), enqueued
 * back to back after a marker; each stage's device time is the end of its event minus the end of the
 * event before it, so it covers all the kernels the stage enqueues. A dense plan is one
 * clsa_attention. Separately, the whole clsa_attention call is timed on the host clock, from the
 * call to clFinish. One warm-up run of each, then the median of --repeat runs.
 */
#include "clsa/clsa.h"
#include "mask_png.h"
#include "npy.h"
#include "reference.h"
#include "tau_file.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 1, EXIT_INPUT = 2, EXIT_LIBRARY = 3, EXIT_OUTPUT = 4 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clsa-run --q Q.npy --k K.npy --v V.npy --out O.npy --method M [options]\n"
            "                [--stats FILE.json] [--mask-png FILE.png --head H] [--device SEL]\n"
            "  Q [B,Hq,L,D] or [Hq,L,D]; K, V [B,Hkv,Lk,D] or [Hkv,Lk,D]; float32 or float16, one dtype.\n"
            "  O is written as float32 with Q's shape.\n"
            "  --method dense | sale | sale-exact | streaming | sliding | topk | cdf | xattn, or a comma list\n"
            "           of Hq of those (not sale-exact): one method per query head.\n"
            "  options: --causal  --scale S  --tau T  --tau-file F [--layer N]  --sink N  --local N\n"
            "           --block-q N  --block-k N  --refine NATS  --window N  --symmetric  --topk F  --gamma F\n"
            "           --xattn-threshold F  --xattn-stride N  --no-forced\n"
            "           --value-prune T  --value-bits B (B alone: T = 1e-3)  --compare-dense  --repeat N\n"
            "  --device: clsa_select_device's grammar (\"N\", \"PLATFORM:DEVICE\", a name); default: CLSA_DEVICE,\n"
            "           else the first GPU, else the first device.\n"
            "  --stats: JSON with the device, shape, settings, density per head, milliseconds per stage\n"
            "           (device time from profiling events, median of --repeat runs after one warm-up), the\n"
            "           host time of a whole clsa_attention call, the pruned fraction, and with\n"
            "           --compare-dense rel_l1 = sum |O - O_dense| / sum |O_dense| against dense on the device.\n"
            "  --mask-png: head H's block mask (batch 0): kept by the rule, sink, local/diagonal, visible but\n"
            "           skipped, and not visible (causal) blocks in their colours, a legend, axes in tokens\n"
            "           (query tokens down, key tokens across). A mask over %d blocks on a side is downsampled:\n"
            "           each pixel covers ceil(blocks / %d) blocks along that axis and shows the highest class\n"
            "           among them (sink > local > kept > skipped > not visible), so that no kept block\n"
            "           disappears; a mask under 512 blocks on a side is magnified. Dense plans have no mask.\n"
            "  Outputs appear whole or not at all (temporary files, renamed at the end).\n"
            "  Exit status: 1 usage, 2 input (files, shapes, dtypes, settings), 3 library or device, 4 output.\n",
            MASK_PNG_MAX_SIDE, MASK_PNG_MAX_SIDE);
}

typedef struct options {
    const char *q, *k, *v, *out, *method, *stats, *mask_png, *device, *tau_file;
    int head, layer, repeat, compare_dense, causal;
    float scale, tau, refine, topk, gamma, xattn_threshold, value_prune;
    int sink, local, block_q, block_k, window, symmetric, xattn_stride, no_forced, value_bits;
} options;

/* ---- Outputs: temporary files made up front, renamed together at the end ---- */

typedef struct output {
    const char *flag, *path;
    char tmp[4096]; /* "" once renamed, or before it exists */
} output;

enum { OUT_O, OUT_STATS, OUT_PNG, OUT_COUNT };
static output outputs[OUT_COUNT];

/* Removes every temporary file still there: on any exit before commit_outputs (atexit). */
static void remove_temporaries(void)
{
    for (int i = 0; i < OUT_COUNT; ++i)
        if (outputs[i].tmp[0]) {
            unlink(outputs[i].tmp);
            outputs[i].tmp[0] = '\0';
        }
}

/* SIGINT, SIGTERM, SIGHUP: the temporary files go too (unlink is async-signal-safe), then the signal
   ends the process as it would have. */
static void on_signal(int sig)
{
    for (int i = 0; i < OUT_COUNT; ++i)
        if (outputs[i].tmp[0])
            unlink(outputs[i].tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

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
        fprintf(stderr, "(clsa-run --help lists the options)\n");
    exit(status); /* remove_temporaries runs */
}

/* Makes the temporary file ".NAME.XXXXXX" beside path, with the mode a new file would get. */
static void prepare_output(int which, const char *flag, const char *path)
{
    output *o = &outputs[which];
    o->flag = flag, o->path = path;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        die(EXIT_OUTPUT, "%s %s: is a directory", flag, path);
    const char *slash = strrchr(path, '/');
    const int dir_len = slash ? (int)(slash - path + 1) : 0;
    char tmp[sizeof o->tmp];
    if (!*path || (slash && !slash[1]) ||
        snprintf(tmp, sizeof tmp, "%.*s.%s.XXXXXX", dir_len, path, slash ? slash + 1 : path) >= (int)sizeof tmp)
        die(EXIT_OUTPUT, "%s %s: not a usable file name", flag, path);
    const int fd = mkstemp(tmp);
    if (fd < 0)
        die(EXIT_OUTPUT, "%s %s: cannot create a file there: %s", flag, path, strerror(errno));
    memcpy(o->tmp, tmp, sizeof tmp);
    const mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || close(fd) != 0)
        die(EXIT_OUTPUT, "%s %s: %s", flag, path, strerror(errno));
}

static FILE *open_output(int which, const char *mode)
{
    FILE *f = fopen(outputs[which].tmp, mode);
    if (!f)
        die(EXIT_OUTPUT, "%s %s: %s", outputs[which].flag, outputs[which].path, strerror(errno));
    return f;
}

static void close_output(int which, FILE *f)
{
    const bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        die(EXIT_OUTPUT, "%s %s: write failed: %s", outputs[which].flag, outputs[which].path,
            errno ? strerror(errno) : "I/O error");
}

/* Renames every output into place. */
static void commit_outputs(void)
{
    for (int i = 0; i < OUT_COUNT; ++i)
        if (outputs[i].tmp[0]) {
            if (rename(outputs[i].tmp, outputs[i].path) != 0)
                die(EXIT_OUTPUT, "%s %s: %s", outputs[i].flag, outputs[i].path, strerror(errno));
            outputs[i].tmp[0] = '\0';
        }
}

/* ---- Options ---- */

static int parse_int(const char *flag, const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    const long x = strtol(s, &end, 10);
    if (errno || !end || *end || end == s)
        die(EXIT_USAGE, "%s %s: not an integer", flag, s);
    if (x < lo || x > hi)
        die(EXIT_USAGE, "%s %s: must be from %ld to %ld", flag, s, lo, hi);
    return (int)x;
}
static float parse_float(const char *flag, const char *s)
{
    char *end = NULL;
    errno = 0;
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
        else if (!strcmp(a, "--head")) o.head = parse_int(a, VALUE(), 0, INT_MAX);
        else if (!strcmp(a, "--device")) o.device = VALUE();
        else if (!strcmp(a, "--causal")) o.causal = 1;
        else if (!strcmp(a, "--scale")) o.scale = parse_float(a, VALUE());
        else if (!strcmp(a, "--tau")) o.tau = parse_float(a, VALUE());
        else if (!strcmp(a, "--tau-file")) o.tau_file = VALUE();
        else if (!strcmp(a, "--layer")) o.layer = parse_int(a, VALUE(), 0, 1000000);
        /* Token counts and sizes: the library checks what each method allows; here only what fits. */
        else if (!strcmp(a, "--sink")) o.sink = parse_int(a, VALUE(), 0, INT32_MAX);
        else if (!strcmp(a, "--local")) o.local = parse_int(a, VALUE(), 0, INT32_MAX);
        else if (!strcmp(a, "--block-q")) o.block_q = parse_int(a, VALUE(), 1, INT32_MAX);
        else if (!strcmp(a, "--block-k")) o.block_k = parse_int(a, VALUE(), 1, INT32_MAX);
        else if (!strcmp(a, "--refine")) o.refine = parse_float(a, VALUE());
        else if (!strcmp(a, "--window")) o.window = parse_int(a, VALUE(), 1, INT32_MAX);
        else if (!strcmp(a, "--symmetric")) o.symmetric = 1;
        else if (!strcmp(a, "--topk")) o.topk = parse_float(a, VALUE());
        else if (!strcmp(a, "--gamma")) o.gamma = parse_float(a, VALUE());
        else if (!strcmp(a, "--xattn-threshold")) o.xattn_threshold = parse_float(a, VALUE());
        else if (!strcmp(a, "--xattn-stride")) o.xattn_stride = parse_int(a, VALUE(), 1, INT32_MAX);
        else if (!strcmp(a, "--no-forced")) o.no_forced = 1;
        else if (!strcmp(a, "--value-prune")) o.value_prune = parse_float(a, VALUE());
        else if (!strcmp(a, "--value-bits")) o.value_bits = parse_int(a, VALUE(), 0, INT32_MAX);
        else if (!strcmp(a, "--compare-dense")) o.compare_dense = 1;
        else if (!strcmp(a, "--repeat")) o.repeat = parse_int(a, VALUE(), 1, 1000);
        else
            die(EXIT_USAGE, "unknown option %s", a);
#undef VALUE
    }
    if (!o.q || !o.k || !o.v || !o.out || !o.method)
        die(EXIT_USAGE, "--q, --k, --v, --out and --method are required");
    if (o.mask_png && o.head < 0)
        die(EXIT_USAGE, "--mask-png needs --head H");
    if (o.head >= 0 && !o.mask_png)
        die(EXIT_USAGE, "--head only applies to --mask-png");
    const char *paths[3] = {o.out, o.stats, o.mask_png};
    for (int i = 0; i < 3; ++i)
        for (int j = i + 1; j < 3; ++j)
            if (paths[i] && paths[j] && !strcmp(paths[i], paths[j]))
                die(EXIT_USAGE, "--out, --stats and --mask-png must name different files (%s twice)", paths[i]);
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
        die(EXIT_INPUT, "--%s: %s", name, err);
    if (t->a.ndim != 3 && t->a.ndim != 4)
        die(EXIT_INPUT, "--%s %s: %d dimensions; expected [B, H, L, D] or [H, L, D]", name, path, t->a.ndim);
    const int off = 4 - t->a.ndim;
    t->dims[0] = 1;
    for (int i = 0; i < t->a.ndim; ++i)
        t->dims[off + i] = t->a.shape[i];
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* Median of n samples, NaN when any is NaN (a time that could not be read). */
static double median(double *x, int n)
{
    for (int i = 0; i < n; ++i)
        if (isnan(x[i]))
            return NAN;
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
    bool selecting;      /* a selector writes the mask */
    bool sale;           /* some head is SALE: quantize first */
    bool timing_warned;  /* device times could not be read once: said so */
} run;

/* The library's message for st: its last error names the status and says why; the status name
   alone when there is no context or no message. */
static const char *why(const clsa_context *ctx, clsa_status st)
{
    const char *m = ctx ? clsa_context_last_error(ctx) : "";
    return m && *m ? m : clsa_status_string(st);
}

static void check(const run *r, clsa_status st, const char *what)
{
    if (st)
        die(EXIT_LIBRARY, "%s: %s", what, why(r->ctx, st));
}

static void check_cl(cl_int err, const char *what)
{
    if (err)
        die(EXIT_LIBRARY, "%s: OpenCL error %d", what, err);
}

/* The end of an event on the device, in ns; NaN (said once) when the device gives none. */
static double event_end(run *r, cl_event e)
{
    cl_ulong t = 0;
    const cl_int err = clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof t, &t, NULL);
    if (err) {
        if (!r->timing_warned)
            fprintf(stderr, "clsa-run: the device gives no profiling times (OpenCL error %d): stage times are "
                            "left out\n", err);
        r->timing_warned = true;
        return NAN;
    }
    return (double)t;
}

/* Times of one run, in ms. */
enum { T_QUANTIZE, T_SELECT, T_ATTEND, T_STAGES, T_WALL, T_COUNT };
static const char *const time_names[T_COUNT] = {"quantize", "select", "attend", "total", "stages_wall"};

/* One run, stage by stage, on the device: the stages back to back after a marker, one clFinish.
   ms[stage] is the end of the stage's event minus the end of the one before (NaN where absent),
   ms[T_STAGES] their sum, ms[T_WALL] the host time from the first enqueue to clFinish. */
static void run_stages(run *r, double ms[T_COUNT])
{
    cl_event ev[4] = {NULL, NULL, NULL, NULL}; /* marker, quantize, select, attend */
    const double t0 = now_ms();
    check_cl(clEnqueueMarkerWithWaitList(r->queue, 0, NULL, &ev[0]), "clEnqueueMarkerWithWaitList");
    int last = 0;
    if (!r->selecting) {
        check(r, clsa_attention(r->plan, r->queue, r->q, r->k, r->v, r->o, r->ws, 1, &ev[0], &ev[3]), "clsa_attention");
    } else {
        if (r->sale) {
            check(r, clsa_quantize(r->plan, r->queue, r->q, r->k, r->ws, 1, &ev[0], &ev[1]), "clsa_quantize");
            last = 1;
        }
        check(r, clsa_estimate_mask(r->plan, r->queue, r->q, r->k, r->ws, NULL, 1, &ev[last], &ev[2]),
              "clsa_estimate_mask");
        check(r, clsa_attention_masked(r->plan, r->queue, r->q, r->k, r->v, r->o, r->ws, NULL, CLSA_MASK_TRUST, 1,
                                       &ev[2], &ev[3]),
              "clsa_attention_masked");
    }
    check_cl(clFinish(r->queue), "clFinish");
    ms[T_WALL] = now_ms() - t0;
    ms[T_QUANTIZE] = ms[T_SELECT] = NAN;
    double prev = event_end(r, ev[0]), sum = 0.0;
    for (int s = 1; s < 4; ++s) {
        if (!ev[s])
            continue;
        const double end = event_end(r, ev[s]);
        ms[T_QUANTIZE + s - 1] = (end - prev) * 1e-6;
        sum += ms[T_QUANTIZE + s - 1];
        prev = end;
        clReleaseEvent(ev[s]);
    }
    clReleaseEvent(ev[0]);
    ms[T_STAGES] = sum;
}

/* The host time of one whole clsa_attention call, from the call to clFinish, in ms. */
static double time_attention_call(run *r)
{
    const double t0 = now_ms();
    check(r, clsa_attention(r->plan, r->queue, r->q, r->k, r->v, r->o, r->ws, 0, NULL, NULL), "clsa_attention");
    check_cl(clFinish(r->queue), "clFinish");
    return now_ms() - t0;
}

/* A JSON string literal of s. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
/* A number, or null when it is not finite. */
static void json_number(FILE *f, double x, const char *format)
{
    if (isfinite(x))
        fprintf(f, format, x);
    else
        fputs("null", f);
}

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
    atexit(remove_temporaries);
    const int signals[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; ++i) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(signals[i], &sa, NULL);
    }
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
        die(EXIT_INPUT, "--head %d: Q has %lld query heads (0 to %lld)", o.head, (long long)shape.q_heads,
            (long long)shape.q_heads - 1);

    /* Methods and settings, with per-head thresholds from a tau file. */
    clsa_method *methods = malloc(sizeof *methods * (size_t)shape.q_heads);
    float *taus = malloc(sizeof *taus * (size_t)shape.q_heads);
    clsa_sparsity *heads = malloc(sizeof *heads * (size_t)shape.q_heads);
    if (!methods || !taus || !heads)
        die(EXIT_LIBRARY, "no memory");
    const int n_methods = parse_methods(o.method, shape.q_heads, methods);
    if (o.mask_png && n_methods == 1 && methods[0] == CLSA_METHOD_DENSE)
        die(EXIT_USAGE, "--mask-png: a dense plan has no block mask");
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

    /* The outputs' temporary files, before any device work: an unwritable place fails now. */
    prepare_output(OUT_O, "--out", o.out);
    if (o.stats)
        prepare_output(OUT_STATS, "--stats", o.stats);
    if (o.mask_png)
        prepare_output(OUT_PNG, "--mask-png", o.mask_png);

    /* The device, a profiling queue, the plan. */
    run r = {0};
    clsa_status st;
    if (o.device) {
        cl_device_id device;
        if ((st = clsa_select_device(o.device, &device, err, sizeof err)))
            die(EXIT_LIBRARY, "--device %s: %s: %s", o.device, clsa_status_string(st), err);
        cl_int e = CL_SUCCESS;
        r.cl = clCreateContext(NULL, 1, &device, NULL, NULL, &e);
        check_cl(e, "clCreateContext");
        check(&r, clsa_context_create(r.cl, device, NULL, &r.ctx), "clsa_context_create");
    } else {
        check(&r, clsa_context_create_default(NULL, &r.ctx), "clsa_context_create_default (is an OpenCL device installed?)");
        r.cl = clsa_context_cl_context(r.ctx);
    }
    cl_int e = CL_SUCCESS;
    r.queue = clCreateCommandQueue(r.cl, clsa_context_device(r.ctx), CL_QUEUE_PROFILING_ENABLE, &e);
    check_cl(e, "clCreateCommandQueue (with CL_QUEUE_PROFILING_ENABLE)");
    const clsa_sparsity *plan_sp = sp.method == CLSA_METHOD_DENSE ? NULL : &sp;
    if ((st = clsa_plan_create(r.ctx, &shape, plan_sp, &r.plan)))
        die(plan_error_exit(st), "clsa_plan_create: %s", why(r.ctx, st));
    r.selecting = plan_sp != NULL;
    for (int64_t h = 0; h < shape.q_heads; ++h)
        r.sale = r.sale || methods[n_methods == 1 ? 0 : h] == CLSA_METHOD_SALE;
    const size_t es = clsa_dtype_size(dtype);
    const int64_t q_elems = tq.a.count, kv_elems = tk.a.count;
    r.q = buffer(&r, (size_t)q_elems * es, tq.a.data);
    r.k = buffer(&r, (size_t)kv_elems * es, tk.a.data);
    r.v = buffer(&r, (size_t)kv_elems * es, tv.a.data);
    r.o = buffer(&r, (size_t)q_elems * es, NULL);
    r.ws = buffer(&r, clsa_plan_workspace_size(r.plan), NULL);

    /* One warm-up, then the timed runs: stage by stage, then whole clsa_attention calls. Every run
       computes the same O and mask. */
    double ms[T_COUNT], *runs = malloc(sizeof(double) * T_COUNT * (size_t)o.repeat), med[T_COUNT + 1];
    double *calls = malloc(sizeof(double) * (size_t)o.repeat);
    if (!runs || !calls)
        die(EXIT_LIBRARY, "no memory");
    run_stages(&r, ms);
    for (int i = 0; i < o.repeat; ++i)
        run_stages(&r, runs + T_COUNT * i);
    for (int t = 0; t < T_COUNT; ++t) {
        double col[1000];
        for (int i = 0; i < o.repeat; ++i)
            col[i] = runs[T_COUNT * i + t];
        med[t] = median(col, o.repeat);
    }
    time_attention_call(&r);
    for (int i = 0; i < o.repeat; ++i)
        calls[i] = time_attention_call(&r);
    const double call_ms = median(calls, o.repeat);

    float *out = read_output(&r, &shape, q_elems);
    double *density = calloc((size_t)shape.q_heads, sizeof(double)), *pruned_head = calloc((size_t)shape.q_heads, sizeof(double));
    double *rel_head = calloc((size_t)shape.q_heads, sizeof(double)), pruned = NAN, rel_l1 = NAN, max_abs = NAN;
    if (!out || !density || !pruned_head || !rel_head)
        die(EXIT_LIBRARY, "no memory");
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
        FILE *f = open_output(OUT_PNG, "wb");
        if (mask_png_write(f, cells, g.num_q_blocks, g.num_k_blocks, g.block_q, g.block_k, shape.q_len, shape.kv_len,
                           title, err, sizeof err) != 0)
            die(EXIT_OUTPUT, "--mask-png %s: %s", o.mask_png, err);
        close_output(OUT_PNG, f);
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
    if (npy_write_f32(outputs[OUT_O].tmp, out, tq.a.ndim, tq.dims + (4 - tq.a.ndim), err, sizeof err) != 0)
        die(EXIT_OUTPUT, "--out %s: %s", o.out, err);

    double mean_density = 0.0;
    for (int64_t h = 0; h < shape.q_heads; ++h)
        mean_density += density[h] / (double)shape.q_heads;
    if (o.stats) {
        FILE *f = open_output(OUT_STATS, "w");
        fprintf(f, "{\n  \"device\": ");
        json_string(f, clsa_context_device_name(r.ctx));
        fprintf(f, ",\n  \"shape\": {\"batch\": %lld, \"q_heads\": %lld, \"kv_heads\": %lld, \"q_len\": %lld, "
                   "\"kv_len\": %lld, \"head_dim\": %lld, \"dtype\": \"%s\", \"causal\": %s, \"scale\": %.7g},\n",
                (long long)shape.batch, (long long)shape.q_heads, (long long)shape.kv_heads, (long long)shape.q_len,
                (long long)shape.kv_len, (long long)shape.head_dim, dtype == CLSA_F16 ? "f16" : "f32",
                shape.causal ? "true" : "false", (double)clsa_plan_shape(r.plan)->scale);
        fprintf(f, "  \"methods\": [");
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s\"%s\"", h ? ", " : "", clsa_method_name(methods[n_methods == 1 ? 0 : h]));
        fprintf(f, "],\n  \"settings\": {\"tau\": [");
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s%.7g", h ? ", " : "", (double)taus[h]);
        fprintf(f, "], \"sink_tokens\": %d, \"local_tokens\": %d, \"block_q\": %d, \"block_k\": %d, "
                   "\"refine_nats\": %.7g, \"keep_forced\": %d, \"window_tokens\": %d, \"window_symmetric\": %d, "
                   "\"topk\": %.7g, \"cdf_gamma\": %.7g, \"xattn_threshold\": %.7g, \"xattn_stride\": %d, "
                   "\"value_prune\": %.7g, \"value_bits\": %d},\n",
                o.sink, o.local, o.block_q, o.block_k, (double)o.refine, o.no_forced ? 0 : 1, o.window, o.symmetric,
                (double)o.topk, (double)o.gamma, (double)o.xattn_threshold, o.xattn_stride, (double)shape.value_prune,
                shape.value_bits);
        fprintf(f, "  \"density\": %.6f,\n  \"density_per_head\": [", mean_density);
        for (int64_t h = 0; h < shape.q_heads; ++h)
            fprintf(f, "%s%.6f", h ? ", " : "", density[h]);
        fprintf(f, "],\n  \"ms\": {");
        for (int t = 0; t < T_COUNT; ++t) {
            fprintf(f, "%s\"%s\": ", t ? ", " : "", time_names[t]);
            json_number(f, med[t], "%.4f");
        }
        fprintf(f, ", \"attention_call\": ");
        json_number(f, call_ms, "%.4f");
        fprintf(f, ", \"repeat\": %d},\n", o.repeat);
        fprintf(f, "  \"ms_note\": \"quantize, select, attend: device time of each stage from profiling events "
                   "(null where the plan has no such stage); total: their sum; stages_wall: host time of the "
                   "stages from the first enqueue to clFinish; attention_call: host time of one whole "
                   "clsa_attention call to clFinish; each the median of repeat runs after one warm-up\",\n");
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
        close_output(OUT_STATS, f);
    }
    commit_outputs();

    printf("clsa-run: %s on %s: q [%lld, %lld, %lld, %lld], k/v [%lld, %lld, %lld, %lld] %s%s\n", o.method,
           clsa_context_device_name(r.ctx), (long long)shape.batch, (long long)shape.q_heads, (long long)shape.q_len,
           (long long)shape.head_dim, (long long)shape.batch, (long long)shape.kv_heads, (long long)shape.kv_len,
           (long long)shape.head_dim, dtype == CLSA_F16 ? "f16" : "f32", shape.causal ? ", causal" : "");
    printf("  density %.4f (per head:", mean_density);
    for (int64_t h = 0; h < shape.q_heads; ++h)
        printf(" %.4f", density[h]);
    printf(")\n  ms, median of %d: device", o.repeat);
    for (int t = T_QUANTIZE; t <= T_STAGES; ++t)
        if (!isnan(med[t]) || t == T_STAGES)
            printf(" %s %.3f", time_names[t], med[t]);
    printf("; host: stages %.3f, one clsa_attention call %.3f\n", med[T_WALL], call_ms);
    if (!isnan(pruned))
        printf("  value pruning (t = %g, %d bits) zeroed %.4f of the probabilities\n", (double)shape.value_prune,
               shape.value_bits, pruned);
    if (!isnan(rel_l1)) {
        printf("  rel_l1 to dense %.4g (per head:", rel_l1);
        for (int64_t h = 0; h < shape.q_heads; ++h)
            printf(" %.4g", rel_head[h]);
        printf("), max abs %.3g\n", max_abs);
    }

    free(out), free(density), free(pruned_head), free(rel_head), free(runs), free(calls), free(methods), free(taus);
    free(heads);
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

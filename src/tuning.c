/*
 * The per-device tuning database: a table of rows in the source, a text file that overrides it,
 * CLSA_TUNE and clsa_context_options.tuning, resolved once per context into one clsa_tuning.
 *
 * A row matches a device by substrings of its vendor, CL_DEVICE_VERSION (which names the
 * implementation: "PoCL") and name, its type, and for CPUs its instruction set. The first matching
 * row of the table applies, then the first matching row of the file, then CLSA_TUNE, then the
 * options: each sets only the keys it names. Every row's parameters are written in the grammar of
 * CLSA_TUNE, so the table, the file and the overrides share one parser.
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tuning_row {
    const char *vendor, *version, *name; /* case-insensitive substrings; NULL matches any */
    const char *type;                    /* "cpu", "gpu", "accelerator" or NULL */
    const char *isa;                     /* "avx512", "avx2", "other" or NULL (CPUs) */
    const char *params;                  /* CLSA_TUNE grammar */
    const char *source;                  /* where the values come from */
} tuning_row;

/*
 * The built-in rows. The CPU values were measured on both CPU implementations (bench/RESULTS.md,
 * "Kernel variants and the tuning table"), on an AVX-512 host and with AVX2 code (Intel's runtime
 * with CL_CONFIG_CPU_TARGET_ARCH=core-avx2), and are explained in src/attention.c:
 *  - sparse CPU attention takes 16 rows per work-item where a float16 is one register (AVX-512)
 *    and 4 with AVX2; dense takes 4 everywhere;
 *  - sparse cache tiles pay on PoCL (attend / (dense x density) 1.3-2.2 -> 1.0-1.1 at head_dim
 *    256) and cost 3-9x on Intel's runtime, whose barriers are expensive with this much private
 *    state per work-item.
 * GPU rows come from clsa-tune run on that GPU (none measured yet: the default GPU row holds the
 * textbook sizes).
 */
static const tuning_row builtin_rows[] = {
    {NULL, "PoCL", NULL, "cpu", "avx512", "cpu_dense_rows=4,cpu_sparse_rows=16,cpu_sparse_tiles=1",
     "built-in: PoCL, AVX-512 (measured on AMD EPYC, PoCL 3.1, 2026-11)"},
    {NULL, "PoCL", NULL, "cpu", NULL, "cpu_dense_rows=4,cpu_sparse_rows=4,cpu_sparse_tiles=1",
     "built-in: PoCL, AVX2 or other (measured with AVX2 code, 2026-11)"},
    {"Intel", NULL, NULL, "cpu", "avx512", "cpu_dense_rows=4,cpu_sparse_rows=16,cpu_sparse_tiles=0",
     "built-in: Intel OpenCL CPU runtime, AVX-512 (measured on AMD EPYC, runtime 2026.2, 2026-11)"},
    {"Intel", NULL, NULL, "cpu", NULL, "cpu_dense_rows=4,cpu_sparse_rows=4,cpu_sparse_tiles=0",
     "built-in: Intel OpenCL CPU runtime, AVX2 (measured with core-avx2 code, 2026-11)"},
    {NULL, NULL, NULL, "cpu", NULL, "cpu_dense_rows=4,cpu_sparse_rows=4,cpu_sparse_tiles=1",
     "built-in: other CPU runtimes (the PoCL AVX2 row's values)"},
    {NULL, NULL, NULL, NULL, NULL, "gpu_group=64,gpu_tile=32,mean_group=256",
     "built-in: default for any other device (textbook GPU sizes, not measured on a GPU)"},
};

/* The keys, their fields and ranges. "auto" is accepted for every key: 0 for sizes and variants
   (AUTO), -1 for on/off keys. Sizes must be powers of two. */
enum key_kind { KEY_POW2, KEY_FLAG, KEY_VARIANT };
typedef struct tuning_key {
    const char *name;
    size_t offset;
    enum key_kind kind;
    int lo, hi;
} tuning_key;
#define FIELD(f) offsetof(clsa_tuning, f)
static const tuning_key keys[] = {
    {"attention", FIELD(attention), KEY_VARIANT, 0, 0},
    {"estimate", FIELD(estimate), KEY_VARIANT, 0, 0},
    {"quantize", FIELD(quantize), KEY_VARIANT, 0, 0},
    {"cpu_dense_rows", FIELD(cpu_dense_rows), KEY_POW2, 1, 16},
    {"cpu_sparse_rows", FIELD(cpu_sparse_rows), KEY_POW2, 1, 16},
    {"cpu_local", FIELD(cpu_local), KEY_POW2, 1, 256},
    {"cpu_sparse_tiles", FIELD(cpu_sparse_tiles), KEY_FLAG, 0, 1},
    {"gpu_group", FIELD(gpu_group), KEY_POW2, 16, 256},
    {"gpu_tile", FIELD(gpu_tile), KEY_POW2, 16, 32},
    {"mean_group", FIELD(mean_group), KEY_POW2, 16, 1024},
    {"int_dot", FIELD(int_dot), KEY_FLAG, 0, 1},
    {"subgroups", FIELD(subgroups), KEY_FLAG, 0, 1},
};

static int *field_of(clsa_tuning *t, const tuning_key *k) { return (int *)((char *)t + k->offset); }

void clsa_tuning_defaults(clsa_tuning *t)
{
    memset(t, 0, sizeof *t);
    t->cpu_sparse_tiles = t->int_dot = t->subgroups = -1;
}

static bool parse_value(const tuning_key *k, const char *text, size_t len, int *out)
{
    if (len == 4 && strncmp(text, "auto", 4) == 0) {
        *out = k->kind == KEY_FLAG ? -1 : 0;
        return true;
    }
    if (k->kind == KEY_VARIANT) {
        if (len == 3 && strncmp(text, "cpu", 3) == 0)
            *out = CLSA_STYLE_CPU;
        else if (len == 3 && strncmp(text, "gpu", 3) == 0)
            *out = CLSA_STYLE_GPU;
        else
            return false;
        return true;
    }
    char buf[16];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < k->lo || v > k->hi || (k->kind == KEY_POW2 && (v & (v - 1)) != 0))
        return false;
    *out = (int)v;
    return true;
}

/* Applies one "key=value" pair (its text ends at len); false when the key is unknown or the value
   out of range. Spaces around the key and the value are allowed. */
static bool apply_pair(clsa_tuning *t, const char *pair, size_t len)
{
    const char *eq = memchr(pair, '=', len);
    if (!eq)
        return false;
    const char *key = pair, *key_end = eq, *value = eq + 1, *value_end = pair + len;
    while (key < key_end && isspace((unsigned char)*key)) ++key;
    while (key_end > key && isspace((unsigned char)key_end[-1])) --key_end;
    while (value < value_end && isspace((unsigned char)*value)) ++value;
    while (value_end > value && isspace((unsigned char)value_end[-1])) --value_end;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i)
        if (strlen(keys[i].name) == (size_t)(key_end - key) && strncmp(keys[i].name, key, (size_t)(key_end - key)) == 0)
            return parse_value(&keys[i], value, (size_t)(value_end - value), field_of(t, &keys[i]));
    /* The key of earlier versions: cpu_rows sets both row counts. */
    if (key_end - key == 8 && strncmp(key, "cpu_rows", 8) == 0) {
        int v;
        if (!parse_value(&keys[3] /* cpu_dense_rows: the same range */, value, (size_t)(value_end - value), &v))
            return false;
        t->cpu_dense_rows = t->cpu_sparse_rows = v;
        return true;
    }
    return false;
}

clsa_status clsa_tuning_apply(clsa_context *ctx, clsa_tuning *t, const char *list, const char *where)
{
    clsa_tuning copy = *t; /* a bad list changes nothing */
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        bool blank = strspn(p, " \t") >= len;
        if (!blank && !apply_pair(&copy, p, len)) {
            /* The keys and their values, from the table itself. */
            char known[1024] = "";
            for (size_t i = 0, used = 0; i < sizeof keys / sizeof keys[0] && used < sizeof known; ++i) {
                const tuning_key *k = &keys[i];
                int n = k->kind == KEY_VARIANT ? snprintf(known + used, sizeof known - used, "%s%s=cpu|gpu", i ? ", " : "", k->name)
                        : k->kind == KEY_FLAG  ? snprintf(known + used, sizeof known - used, "%s%s=0|1", i ? ", " : "", k->name)
                                               : snprintf(known + used, sizeof known - used, "%s%s=%d..%d (a power of two)",
                                                          i ? ", " : "", k->name, k->lo, k->hi);
                used += n > 0 ? (size_t)n : 0;
            }
            return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "%s: cannot use \"%.*s\" (keys, each also =auto: %s)", where,
                             (int)len, p, known);
        }
        p += len;
        if (*p == ',')
            ++p;
    }
    *t = copy;
    return CLSA_SUCCESS;
}

static bool contains_nocase(const char *haystack, const char *needle)
{
    const size_t n = strlen(needle);
    for (const char *h = haystack; *h; ++h)
        if (strncasecmp(h, needle, n) == 0)
            return true;
    return n == 0;
}

const char *clsa_device_isa(const clsa_device_info *caps)
{
    /* PoCL names the target in the device name ("pthread-skylake-avx512-..."), Intel's runtime does
       not; both report 16-float native vectors with AVX-512 and 8 with AVX2. */
    if (!(caps->type & CL_DEVICE_TYPE_CPU))
        return "";
    if (contains_nocase(caps->name, "avx512") || caps->native_float_width >= 16)
        return "avx512";
    return caps->native_float_width >= 8 ? "avx2" : "other";
}

static const char *type_word(cl_device_type type)
{
    return type & CL_DEVICE_TYPE_GPU ? "gpu" : type & CL_DEVICE_TYPE_CPU ? "cpu" : "accelerator";
}

static bool row_matches(const clsa_device_info *caps, const tuning_row *r)
{
    return (!r->vendor || contains_nocase(caps->vendor, r->vendor)) &&
           (!r->version || contains_nocase(caps->device_version, r->version)) &&
           (!r->name || contains_nocase(caps->name, r->name)) &&
           (!r->type || strcmp(r->type, "any") == 0 || strcmp(r->type, type_word(caps->type)) == 0) &&
           (!r->isa || strcmp(r->isa, "any") == 0 || strcmp(r->isa, clsa_device_isa(caps)) == 0);
}

/* ---- The tuning file ----------------------------------------------------------------------
 * Lines "key = value"; "#" starts a comment; "[device]" starts a row. A row's match.vendor,
 * match.version, match.name, match.type and match.isa lines say which devices it fits, its
 * `source` line where its values come from, and every other line is a parameter in CLSA_TUNE's
 * grammar. Rows are tried in file order.
 */
enum { FILE_ROWS_MAX = 64, FILE_LINE_MAX = 1024, FILE_BYTES_MAX = 1 << 20 };
typedef struct file_row {
    char match[5][256];
    char source[256];
    char params[2048];
} file_row;

static bool file_row_matches(const clsa_device_info *caps, const file_row *f)
{
    const tuning_row r = {f->match[0][0] ? f->match[0] : NULL, f->match[1][0] ? f->match[1] : NULL,
                          f->match[2][0] ? f->match[2] : NULL, f->match[3][0] ? f->match[3] : NULL,
                          f->match[4][0] ? f->match[4] : NULL, NULL, NULL};
    return row_matches(caps, &r);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        ++s;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static clsa_status file_error(clsa_context *ctx, const char *path, int line, const char *what)
{
    return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "tuning file %s, line %d: %s", path, line, what);
}

/* Finds the first row of the file at path that matches the device; *found says whether one did. */
static clsa_status read_file_row(clsa_context *ctx, const char *path, file_row *row, bool *found)
{
    static const char *const match_keys[5] = {"match.vendor", "match.version", "match.name", "match.type", "match.isa"};
    *found = false;
    /* A regular file only: a FIFO would block context creation (O_NONBLOCK keeps the open itself
       from waiting), and a directory or device is no tuning file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat info;
    if (fd < 0)
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "tuning file %s: %s", path, strerror(errno));
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || info.st_size > FILE_BYTES_MAX) {
        close(fd);
        return clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "tuning file %s: not a regular file of at most %d bytes", path,
                         FILE_BYTES_MAX);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return clsa_fail(ctx, CLSA_ERR_OUT_OF_HOST_MEMORY, "tuning file %s: %s", path, strerror(errno));
    }
    char line[FILE_LINE_MAX + 1]; /* a line of FILE_LINE_MAX - 1 bytes, its newline and the NUL */
    int number = 0, rows = 0;
    long read_bytes = 0;
    bool in_row = false;
    clsa_status st = CLSA_SUCCESS;
    file_row current;
    while (!st && !*found && fgets(line, sizeof line, f)) {
        ++number;
        const size_t length = strlen(line);
        read_bytes += (long)length;
        if (length >= FILE_LINE_MAX && line[length - 1] != '\n') {
            st = file_error(ctx, path, number, "line longer than 1023 bytes");
            break;
        }
        if (read_bytes > FILE_BYTES_MAX) { /* a file that grew after it was opened */
            st = file_error(ctx, path, number, "more than 1 MiB");
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *text = trim(line);
        if (!*text)
            continue;
        if (strcmp(text, "[device]") == 0) {
            if (in_row) {
                if (file_row_matches(&ctx->caps, &current)) {
                    *found = true;
                    break;
                }
            }
            if (++rows > FILE_ROWS_MAX) {
                st = file_error(ctx, path, number, "more than 64 rows");
                break;
            }
            memset(&current, 0, sizeof current);
            in_row = true;
            continue;
        }
        char *eq = strchr(text, '=');
        if (!eq) {
            st = file_error(ctx, path, number, "expected \"[device]\" or \"key = value\"");
            break;
        }
        if (!in_row) {
            st = file_error(ctx, path, number, "a parameter before the first [device]");
            break;
        }
        *eq = '\0';
        char *key = trim(text), *value = trim(eq + 1);
        bool done = false;
        static const char *const types = " cpu gpu accelerator any ", *const isas = " avx512 avx2 other any ";
        char word[FILE_LINE_MAX + 3];
        snprintf(word, sizeof word, " %s ", value);
        if ((strcmp(key, "match.type") == 0 && !strstr(types, word)) || (strcmp(key, "match.isa") == 0 && !strstr(isas, word))) {
            st = file_error(ctx, path, number, "match.type takes cpu, gpu, accelerator or any; match.isa avx512, avx2, other or any");
            break;
        }
        for (int i = 0; i < 5 && !done; ++i)
            if (strcmp(key, match_keys[i]) == 0) {
                snprintf(current.match[i], sizeof current.match[i], "%s", value);
                done = true;
            }
        if (!done && strcmp(key, "source") == 0) {
            snprintf(current.source, sizeof current.source, "%s", value);
            done = true;
        }
        if (!done) {
            /* Checked here, so that a bad parameter names its line even in a row that does not match. */
            char pair[FILE_LINE_MAX + 4];
            snprintf(pair, sizeof pair, "%s=%s", key, value);
            clsa_tuning scratch;
            clsa_tuning_defaults(&scratch);
            if (!apply_pair(&scratch, pair, strlen(pair))) {
                st = file_error(ctx, path, number, "unknown key or bad value (see clsa.h, \"Tuning\")");
                break;
            }
            size_t used = strlen(current.params);
            if (used + strlen(pair) + 2 > sizeof current.params) {
                st = file_error(ctx, path, number, "too many parameters in one row");
                break;
            }
            snprintf(current.params + used, sizeof current.params - used, "%s%s", used ? "," : "", pair);
        }
    }
    if (!st && !*found && in_row && !ferror(f)) {
        *found = file_row_matches(&ctx->caps, &current);
    }
    if (!st && ferror(f))
        st = clsa_fail(ctx, CLSA_ERR_INVALID_OPTION, "tuning file %s: read error", path);
    fclose(f);
    if (*found)
        *row = current;
    return st;
}

static void note_source(clsa_context *ctx, const char *source)
{
    size_t used = strlen(ctx->tuning_source);
    snprintf(ctx->tuning_source + used, sizeof ctx->tuning_source - used, "%s%s", used ? "; " : "", source);
}

clsa_status clsa_tuning_resolve(clsa_context *ctx, const clsa_context_options *options)
{
    clsa_tuning *t = &ctx->tuning;
    clsa_tuning_defaults(t);
    ctx->tuning_source[0] = '\0';
    clsa_status st = CLSA_SUCCESS;
    for (size_t i = 0; i < sizeof builtin_rows / sizeof builtin_rows[0]; ++i)
        if (row_matches(&ctx->caps, &builtin_rows[i])) {
            st = clsa_tuning_apply(ctx, t, builtin_rows[i].params, builtin_rows[i].source);
            note_source(ctx, builtin_rows[i].source);
            break;
        }
    const char *path = options && options->tuning_file ? options->tuning_file : getenv("CLSA_TUNE_FILE");
    if (!st && path && *path) {
        file_row row;
        bool found = false;
        st = read_file_row(ctx, path, &row, &found);
        if (!st && found) {
            char where[1200];
            snprintf(where, sizeof where, "tuning file %s", path);
            st = clsa_tuning_apply(ctx, t, row.params, where);
            snprintf(where, sizeof where, "file %s (%s)", path, row.source[0] ? row.source : "no source line");
            note_source(ctx, where);
        }
    }
    const char *env = getenv("CLSA_TUNE");
    if (!st && env && *env) {
        st = clsa_tuning_apply(ctx, t, env, "CLSA_TUNE");
        note_source(ctx, "CLSA_TUNE");
    }
    if (!st && options && options->tuning && *options->tuning) {
        st = clsa_tuning_apply(ctx, t, options->tuning, "clsa_context_options.tuning");
        note_source(ctx, "clsa_context_options.tuning");
    }
    if (st)
        return st;
    int used = clsa_tuning_format(t, ctx->tuning_text, sizeof ctx->tuning_text);
    if (used >= 0 && (size_t)used < sizeof ctx->tuning_text)
        snprintf(ctx->tuning_text + used, sizeof ctx->tuning_text - (size_t)used, " (from %s)", ctx->tuning_source);
    /* A feature the device lacks is never chosen, and forcing it is an error. */
    const clsa_device_info *c = &ctx->caps;
    if (t->int_dot == 1 && !(c->integer_dot_product & CLSA_INT_DOT_4X8_PACKED))
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                         "int_dot=1: device \"%s\" has no packed 4x8-bit integer dot product (cl_khr_integer_dot_product)",
                         c->name);
    if (t->subgroups == 1 && !c->has_subgroups)
        return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED, "subgroups=1: device \"%s\" has no sub-groups (cl_khr_subgroups)",
                         c->name);
    return CLSA_SUCCESS;
}

bool clsa_tuned_on(int flag, bool present) { return flag == 1 || (flag < 0 && present); }

clsa_kernel_style clsa_tuned_variant(const clsa_context *ctx, int variant)
{
    return variant == CLSA_STYLE_AUTO ? ctx->style : (clsa_kernel_style)variant;
}

int clsa_tuning_format(const clsa_tuning *t, char *buf, size_t size)
{
    int used = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i) {
        const int v = *field_of((clsa_tuning *)t, &keys[i]);
        char value[16];
        if ((keys[i].kind == KEY_FLAG && v < 0) || (keys[i].kind != KEY_FLAG && v == 0))
            snprintf(value, sizeof value, "auto");
        else if (keys[i].kind == KEY_VARIANT)
            snprintf(value, sizeof value, "%s", v == CLSA_STYLE_CPU ? "cpu" : "gpu");
        else
            snprintf(value, sizeof value, "%d", v);
        int n = snprintf(buf + used, used < (int)size ? size - (size_t)used : 0, "%s%s=%s", i ? "," : "", keys[i].name, value);
        used += n > 0 ? n : 0;
    }
    return used;
}

const char *clsa_context_tuning(const clsa_context *ctx) { return ctx ? ctx->tuning_text : ""; }

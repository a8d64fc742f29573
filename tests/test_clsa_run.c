/*
 * clsa-run end to end: random Q, K, V written as .npy files (float32 and float16, [B,H,L,D] and
 * [H,L,D], GQA), the tool run on them, and its O read back and checked:
 *   - dense, SALE with tau 0 (every block kept) and the dense heads of a per-head plan against the
 *     float64 reference, to the dense bound (tests/README.md);
 *   - streaming against the float64 reference on the mask its float64 rule gives
 *     (tests/select_reference.c), and its PNG read back with libpng: every block's pixel has the
 *     colour of the class the rule and clsa.h's sink/local definitions give it;
 *   - SALE with tau 0.004 on peaked data (one strong key per row) loosely: blocks dropped, and
 *     rel_l1 to dense (--compare-dense) <= 0.01;
 *   - the statistics JSON parsed by Python's json module, and the values read from it;
 *   - the PNG downsampling rule on a synthetic 2000 x 3000-block mask (no device);
 *   - every error it must report with its exit status and without leaving a file: malformed .npy
 *     (truncated, bad magic, bad header), shapes and dtypes that disagree, unwritable outputs
 *     (and an unwritable --stats or --mask-png leaves no O either), a head out of range, an
 *     unknown method, bad settings.
 * usage: test_clsa_run PATH/TO/clsa-run PATH/TO/python3
 */
#include "harness.h"
#include "mask_png.h"
#include "npy.h"
#include "select_reference.h"

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tool, *python;
static char dir[256];

/* Writes a float16 .npy file (format 1.0) of the raw halves. */
static void write_f16(const char *path, const uint16_t *data, int ndim, const int64_t *shape)
{
    char header[256];
    int n = snprintf(header, sizeof header, "{'descr': '<f2', 'fortran_order': False, 'shape': (");
    int64_t count = 1;
    for (int i = 0; i < ndim; ++i) {
        n += snprintf(header + n, sizeof header - (size_t)n, "%lld, ", (long long)shape[i]);
        count *= shape[i];
    }
    n += snprintf(header + n, sizeof header - (size_t)n, "), }");
    while ((10 + n + 1) % 64)
        header[n++] = ' ';
    header[n++] = '\n';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 0xFF),
                                        (unsigned char)(n >> 8)};
    assert_int_equal(fwrite(preamble, 1, 10, f), 10);
    assert_int_equal(fwrite(header, 1, (size_t)n, f), (size_t)n);
    assert_int_equal(fwrite(data, 2, (size_t)count, f), (size_t)count);
    assert_int_equal(fclose(f), 0);
}

/* Writes host tensors q, k, v of shape s (in its dtype) to dir/{q,k,v}.npy, as [H,L,D] files when
   three_d (batch 1). */
static void write_tensors(const clsa_shape *s, bool three_d, void *hq, void *hk, void *hv)
{
    const int64_t qshape[4] = {s->batch, s->q_heads, s->q_len, s->head_dim};
    const int64_t kshape[4] = {s->batch, s->kv_heads, s->kv_len, s->head_dim};
    const int off = three_d ? 1 : 0, ndim = 4 - off;
    const char *names[3] = {"q", "k", "v"};
    void *data[3] = {hq, hk, hv};
    for (int t = 0; t < 3; ++t) {
        char path[512], err[256];
        snprintf(path, sizeof path, "%s/%s.npy", dir, names[t]);
        const int64_t *shape = (t == 0 ? qshape : kshape) + off;
        if (s->dtype == CLSA_F16)
            write_f16(path, data[t], ndim, shape);
        else if (npy_write_f32(path, data[t], ndim, shape, err, sizeof err) != 0)
            fail_msg("%s", err);
    }
}

/* Random N(0, 1) tensors of shape s written to dir/{q,k,v}.npy. */
static void write_inputs(const clsa_shape *s, uint64_t stream, bool three_d, void **hq, void **hk, void **hv)
{
    harness_rng rng = harness_rng_make(stream);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(s, &nq, &nk, &nv, &no);
    *hq = harness_random_tensor(&rng, s->dtype, nq, 1.0);
    *hk = harness_random_tensor(&rng, s->dtype, nk, 1.0);
    *hv = harness_random_tensor(&rng, s->dtype, nv, 1.0);
    write_tensors(s, three_d, *hq, *hk, *hv);
}

/* Peaked tensors (tests/python's peaked_qkv): k_j = 4 b_j, q_i = b_{diag(i)} + 0.1 noise, v N(0, 1),
   so that each row has one strong key and SALE drops the far blocks. */
static void write_peaked(const clsa_shape *s, uint64_t stream, void **hq, void **hk, void **hv)
{
    harness_rng rng = harness_rng_make(stream);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(s, &nq, &nk, &nv, &no);
    const size_t es = clsa_dtype_size(s->dtype);
    double *base = malloc(sizeof(double) * (size_t)nk);
    *hq = malloc((size_t)nq * es), *hk = malloc((size_t)nk * es), *hv = malloc((size_t)nv * es);
    assert_true(base && *hq && *hk && *hv);
    for (int64_t i = 0; i < nk; ++i) {
        base[i] = harness_normal(&rng);
        ref_store(*hk, s->dtype, i, (float)(4.0 * base[i]));
        ref_store(*hv, s->dtype, i, (float)harness_normal(&rng));
    }
    const int64_t group = s->q_heads / s->kv_heads, D = s->head_dim;
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h)
            for (int64_t i = 0; i < s->q_len; ++i) {
                int64_t d = i + s->kv_len - s->q_len;
                d = d < 0 ? 0 : d > s->kv_len - 1 ? s->kv_len - 1 : d;
                const double *row = base + ((b * s->kv_heads + h / group) * s->kv_len + d) * D;
                for (int64_t c = 0; c < D; ++c)
                    ref_store(*hq, s->dtype, ((b * s->q_heads + h) * s->q_len + i) * D + c,
                              (float)(row[c] + 0.1 * harness_normal(&rng)));
            }
    free(base);
    write_tensors(s, false, *hq, *hk, *hv);
}

/* Runs clsa-run in dir with the arguments; returns its exit status. */
static int run_tool(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' --q q.npy --k k.npy --v v.npy %s", dir, tool, args);
    printf("# %s\n", cmd);
    fflush(stdout);
    const int st = system(cmd);
    assert_true(WIFEXITED(st));
    printf("# exit status %d\n", WEXITSTATUS(st));
    return WEXITSTATUS(st);
}

/* dir/name read back as float32. */
static float *read_result(const char *name, int64_t expect)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_false(a.is_f16);
    assert_int_equal(a.count, expect);
    return a.data;
}

static bool exists(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void remove_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

/* No temporary file (".name.XXXXXX") is left in dir. */
static void assert_no_temporaries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            fail_msg("temporary file %s left behind", e->d_name);
    closedir(d);
}

/* A value from dir/name, a JSON file, read by Python's json module (which fails the test when the
   file does not parse): `expr` is a Python expression of the parsed object d (no double quotes),
   printed with print(); its output goes to out. */
static void json_query(const char *name, const char *expr, char *out, size_t out_size)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "
                              "'%s/%s' \"%s\"", python, dir, name, expr);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    const size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    const int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s: Python could not read %s from it (%s)", name, expr, cmd);
    printf("# %s: %s = %s", name, expr, out);
}
static double json_number(const char *name, const char *expr)
{
    char out[256], *end, as_float[512];
    snprintf(as_float, sizeof as_float, "float(%s)", expr); /* True is 1.0 */
    json_query(name, as_float, out, sizeof out);
    const double x = strtod(out, &end);
    if (end == out)
        fail_msg("%s: %s is not a number: %s", name, expr, out);
    return x;
}

/* max |got - want| / max |want| over the query heads h with heads[h] set (NULL: all). */
static double max_rel(const clsa_shape *s, const float *got, const double *want, const bool *heads)
{
    double err = 0.0, scale = 0.0;
    const int64_t per_head = s->q_len * s->head_dim;
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t h = 0; h < s->q_heads; ++h) {
            if (heads && !heads[h])
                continue;
            const int64_t at = (b * s->q_heads + h) * per_head;
            for (int64_t i = 0; i < per_head; ++i) {
                err = fmax(err, fabs((double)got[at + i] - want[at + i]));
                scale = fmax(scale, fabs(want[at + i]));
            }
        }
    return err / scale;
}

static void check_against(const clsa_shape *s, const void *hq, const void *hk, const void *hv, const uint8_t *mask,
                          int bq, int bk, const bool *heads, const char *what)
{
    const int64_t n = s->batch * s->q_heads * s->q_len * s->head_dim;
    float *got = read_result("o.npy", n);
    double *want = malloc(sizeof(double) * (size_t)n);
    assert_non_null(want);
    ref_attention(s, hq, hk, hv, mask, bq, bk, want);
    const double err = max_rel(s, got, want, heads);
    printf("# %s: max rel error %.2e (bound %.2e)\n", what, err, harness_tolerance(s->dtype));
    assert_true(err <= harness_tolerance(s->dtype));
    free(got), free(want);
}

/* An RGB PNG read back with libpng. */
typedef struct picture {
    png_uint_32 width, height;
    uint8_t *rgb;
} picture;

static void read_png(const char *path, picture *p)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, f), 8);
    assert_int_equal(png_sig_cmp(sig, 0, 8), 0);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    assert_non_null(info);
    p->rgb = NULL;
    if (setjmp(png_jmpbuf(png)))
        fail_msg("%s: libpng could not read it", path);
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    p->width = png_get_image_width(png, info), p->height = png_get_image_height(png, info);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    assert_int_equal(png_get_bit_depth(png, info), 8);
    p->rgb = malloc((size_t)p->width * p->height * 3);
    assert_non_null(p->rgb);
    for (png_uint_32 y = 0; y < p->height; ++y)
        png_read_row(png, p->rgb + (size_t)y * p->width * 3, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    printf("# %s: %u x %u pixels\n", path, (unsigned)p->width, (unsigned)p->height);
}

/* The class (mask_cell) shown at pixel (x, y), or -1 for another colour. */
static int pixel_class(const picture *p, int x, int y)
{
    assert_true(x >= 0 && y >= 0 && (png_uint_32)x < p->width && (png_uint_32)y < p->height);
    const uint8_t *px = p->rgb + ((size_t)y * p->width + (size_t)x) * 3;
    for (int c = 0; c <= CELL_SINK; ++c)
        if (!memcmp(px, mask_png_palette[c], 3))
            return c;
    return -1;
}

/* The class clsa.h's definitions give block (qb, kb) of a causal or non-causal plan, given whether
   the mask keeps it. */
static int expected_class(const clsa_shape *s, const clsa_sparsity *sp, int64_t qb, int64_t kb, bool kept)
{
    const int64_t r0 = qb * sp->block_q, r1 = fmin((double)(qb + 1) * sp->block_q, (double)s->q_len) - 1;
    const int64_t d0 = r0 + s->kv_len - s->q_len, d1 = r1 + s->kv_len - s->q_len;
    const int64_t k0 = kb * sp->block_k, k1 = fmin((double)(kb + 1) * sp->block_k, (double)s->kv_len) - 1;
    if (s->causal && k0 > d1)
        return CELL_HIDDEN;
    if (!kept)
        return CELL_SKIPPED;
    if (k0 < sp->sink_tokens)
        return CELL_SINK;
    const int64_t lo = s->causal ? d0 - sp->local_tokens + 1 : d0 - sp->local_tokens / 2;
    const int64_t hi = s->causal ? d1 : d1 + sp->local_tokens - sp->local_tokens / 2 - 1;
    if ((k1 >= lo && k0 <= hi) || (k1 >= d0 && k0 <= d1))
        return CELL_LOCAL;
    return CELL_KEPT;
}

static void test_outputs(void **state)
{
    (void)state;
    void *hq, *hk, *hv;
    /* Dense, [H,L,D] f32, GQA, causal. */
    clsa_shape s = clsa_shape_make(1, 4, 2, 150, 150, 40, CLSA_F32, 1);
    write_inputs(&s, 1, true, &hq, &hk, &hv);
    assert_int_equal(run_tool("--out o.npy --method dense --causal --stats st.json --repeat 3"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, NULL, "dense f32 [H,L,D]");
    /* O has the mode a new file gets (mkstemp's 0600 is not left on it). */
    struct stat st;
    char path[512];
    snprintf(path, sizeof path, "%s/o.npy", dir);
    assert_int_equal(stat(path, &st), 0);
    const mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
    assert_true(json_number("st.json", "d['density']") == 1.0);
    assert_true(json_number("st.json", "d['ms']['attend'] > 0 and d['ms']['attention_call'] > 0 and "
                                       "d['ms']['quantize'] is None and d['ms']['repeat'] == 3") == 1.0);
    char text[256];
    json_query("st.json", "d['methods'], d['shape']['dtype'], d['shape']['causal'], d['rel_l1']", text, sizeof text);
    assert_string_equal(text, "(['dense', 'dense', 'dense', 'dense'], 'f32', True, None)\n");
    /* SALE with tau 0 keeps every block: dense again, through the stages of the sparse path. */
    assert_int_equal(run_tool("--out o.npy --method sale --tau 0 --causal --block-q 32 --block-k 16 --stats st.json"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, NULL, "sale tau 0");
    assert_true(json_number("st.json", "d['ms']['quantize'] > 0 and d['ms']['select'] > 0 and d['density'] == 1") == 1.0);
    /* Methods per head: the dense heads are exact, whatever the SALE heads keep. */
    assert_int_equal(run_tool("--out o.npy --method dense,sale,dense,sale --causal --block-q 32 --block-k 16 "
                              "--stats st.json"), 0);
    const bool dense_heads[4] = {true, false, true, false};
    check_against(&s, hq, hk, hv, NULL, 0, 0, dense_heads, "dense heads of dense,sale,dense,sale");
    json_query("st.json", "d['methods'], d['density_per_head'][0], d['density_per_head'][2]", text, sizeof text);
    assert_string_equal(text, "(['dense', 'sale', 'dense', 'sale'], 1.0, 1.0)\n");

    /* Streaming with statistics and a picture, on the mask its float64 rule gives. */
    assert_int_equal(run_tool("--out o.npy --method streaming --causal --block-q 32 --block-k 16 --sink 16 --local 32 "
                              "--stats st.json --mask-png m.png --head 1 --compare-dense"),
                     0);
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_STREAMING);
    sp.block_q = 32, sp.block_k = 16, sp.sink_tokens = 16, sp.local_tokens = 32;
    const int64_t nqb = (s.q_len + 31) / 32, nkb = (s.kv_len + 15) / 16, cells = s.q_heads * nqb * nkb;
    uint8_t *must = malloc((size_t)cells), *may = malloc((size_t)cells);
    assert_true(must && may);
    for (int64_t h = 0; h < s.q_heads; ++h)
        assert_int_equal(ref_select_head(&s, &sp, h, hq, hk, must, may), 0);
    check_against(&s, hq, hk, hv, must, 32, 16, NULL, "streaming on its float64 mask");
    assert_true(json_number("st.json", "d['rel_l1'] > 0 and len(d['rel_l1_per_head']) == 4 and "
                                       "d['max_abs'] > 0 and 0 < d['density'] < 1") == 1.0);
    json_query("st.json", "d['methods'][1], d['settings']['sink_tokens'], d['settings']['local_tokens']", text,
               sizeof text);
    assert_string_equal(text, "('streaming', 16, 32)\n");
    /* Every block of head 1 in the picture has its class's colour. */
    snprintf(path, sizeof path, "%s/m.png", dir);
    picture pic;
    read_png(path, &pic);
    mask_png_layout L;
    mask_png_layout_of(nqb, nkb, &L);
    assert_int_equal(pic.width, L.width);
    assert_int_equal(pic.height, L.height);
    assert_int_equal(L.blocks_per_px_q, 1);
    int seen[5] = {0};
    for (int64_t qb = 0; qb < nqb; ++qb)
        for (int64_t kb = 0; kb < nkb; ++kb) {
            const int want = expected_class(&s, &sp, qb, kb, must[(1 * nqb + qb) * nkb + kb]);
            const int got = pixel_class(&pic, MASK_PNG_LEFT + (int)kb * L.zoom + L.zoom / 2,
                                        MASK_PNG_TOP + (int)qb * L.zoom + L.zoom / 2);
            if (got != want)
                fail_msg("block (%lld, %lld) of head 1 is drawn as class %d, expected %d", (long long)qb,
                         (long long)kb, got, want);
            seen[want]++;
        }
    printf("# picture classes: hidden %d, skipped %d, kept %d, local %d, sink %d\n", seen[0], seen[1], seen[2],
           seen[3], seen[4]);
    assert_true(seen[CELL_HIDDEN] && seen[CELL_SKIPPED] && seen[CELL_LOCAL] && seen[CELL_SINK]);
    free(pic.rgb);

    /* Value pruning: the fraction lands in the statistics. */
    assert_int_equal(run_tool("--out o.npy --method dense --causal --value-bits 3 --stats st.json"), 0);
    assert_true(json_number("st.json", "0 < d['pruned_fraction'] < 1 and d['settings']['value_bits'] == 3 and "
                                       "abs(d['settings']['value_prune'] - 1e-3) < 1e-9") == 1.0);
    free(must), free(may), free(hq), free(hk), free(hv);

    /* Dense, [B,H,L,D] f16, not causal, Lq != Lk. */
    s = clsa_shape_make(2, 2, 1, 70, 110, 24, CLSA_F16, 0);
    write_inputs(&s, 2, false, &hq, &hk, &hv);
    assert_int_equal(run_tool("--out o.npy --method dense"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, NULL, "dense f16 [B,H,L,D]");
    free(hq), free(hk), free(hv);

    /* SALE at tau 0.004 on peaked f16 [B,H,L,D] GQA data: far blocks dropped, O within rel_l1 0.01 of
       dense (tests/README.md: the dropped keys carry about 1e-8 of each row's mass). */
    s = clsa_shape_make(2, 4, 2, 256, 256, 64, CLSA_F16, 1);
    write_peaked(&s, 3, &hq, &hk, &hv);
    assert_int_equal(run_tool("--out o.npy --method sale --causal --tau 0.004 --sink 16 --local 32 --block-q 32 "
                              "--block-k 16 --compare-dense --stats st.json --mask-png m.png --head 3"),
                     0);
    assert_true(json_number("st.json", "d['density']") < 1.0);
    assert_true(json_number("st.json", "d['rel_l1']") <= 0.01);
    assert_true(json_number("st.json", "min(d['density_per_head'])") > 0.0);
    read_png(path, &pic);
    free(pic.rgb);
    free(hq), free(hk), free(hv);
    assert_no_temporaries();
}

/* The downsampling rule, on the host: a 2000 x 3000-block mask is drawn at 2 x 3 blocks per pixel,
   and its one kept block survives as its pixel's colour. */
static void test_downsampling(void **state)
{
    (void)state;
    const int64_t nqb = 2000, nkb = 3000;
    uint8_t *cells = malloc((size_t)(nqb * nkb));
    assert_non_null(cells);
    for (int64_t qb = 0; qb < nqb; ++qb)
        for (int64_t kb = 0; kb < nkb; ++kb)
            cells[qb * nkb + kb] = kb * 2 > qb * 3 + 1 ? CELL_HIDDEN : CELL_SKIPPED;
    cells[1235 * nkb + 1001] = CELL_KEPT;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/big.png", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (mask_png_write(f, cells, nqb, nkb, 16, 16, nqb * 16, nkb * 16, "downsampling test", err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(fclose(f), 0);
    mask_png_layout L;
    mask_png_layout_of(nqb, nkb, &L);
    assert_int_equal(L.blocks_per_px_q, 2);
    assert_int_equal(L.blocks_per_px_k, 3);
    assert_true(L.mask_w <= MASK_PNG_MAX_SIDE && L.mask_h <= MASK_PNG_MAX_SIDE);
    picture pic;
    read_png(path, &pic);
    assert_int_equal(pic.width, L.width);
    assert_int_equal(pic.height, L.height);
    /* Block (1235, 1001) is in pixel (1001 / 3, 1235 / 2); its neighbours are skipped. */
    assert_int_equal(pixel_class(&pic, MASK_PNG_LEFT + 333, MASK_PNG_TOP + 617), CELL_KEPT);
    assert_int_equal(pixel_class(&pic, MASK_PNG_LEFT + 334, MASK_PNG_TOP + 617), CELL_SKIPPED);
    assert_int_equal(pixel_class(&pic, MASK_PNG_LEFT + 333, MASK_PNG_TOP + 618), CELL_SKIPPED);
    assert_int_equal(pixel_class(&pic, MASK_PNG_LEFT + 999, MASK_PNG_TOP + 0), CELL_HIDDEN);
    free(pic.rgb), free(cells);
    unlink(path);
}

static void test_errors(void **state)
{
    (void)state;
    void *hq, *hk, *hv;
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    write_inputs(&s, 4, true, &hq, &hk, &hv);
    free(hq), free(hk), free(hv);
    remove_file("o.npy"), remove_file("st.json"), remove_file("m.png");
    assert_int_equal(run_tool("--help > /dev/null"), 0);
    /* Usage errors: 1. */
    assert_int_equal(run_tool("--out o.npy --method nonsense"), 1);
    assert_int_equal(run_tool("--out o.npy"), 1);
    assert_int_equal(run_tool("--out o.npy --method dense --bogus"), 1);
    assert_int_equal(run_tool("--out o.npy --method dense --mask-png m2.png --head 0"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --mask-png m2.png"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --head -1 --mask-png m2.png"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --sink 99999999999"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --tau nan"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --repeat 0"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --stats o.npy"), 1);
    /* Input errors: 2 (a head out of range, methods that do not fit the heads, settings the library
       refuses). */
    assert_int_equal(run_tool("--out o.npy --method sale --mask-png m2.png --head 2"), 2);
    assert_int_equal(run_tool("--out o.npy --method sale,dense,sale"), 2);
    assert_int_equal(run_tool("--out o.npy --method topk --topk 2"), 2);
    assert_int_equal(run_tool("--out o.npy --method sale --block-q 24"), 2);
    assert_int_equal(run_tool("--out o.npy --method sale --tau -1"), 2);
    assert_int_equal(run_tool("--out o.npy --method sale --tau-file missing.txt"), 2);
    /* Output errors: 4, and nothing left: a missing directory, a file used as a directory, a
       directory as the output, and an unwritable --stats or --mask-png (no O either). */
    assert_int_equal(run_tool("--out /nonexistent-dir/o.npy --method dense"), 4);
    assert_int_equal(run_tool("--out q.npy/o.npy --method dense"), 4);
    assert_int_equal(run_tool("--out . --method dense"), 4);
    assert_int_equal(run_tool("--out o.npy --method dense --stats q.npy/st.json"), 4);
    assert_int_equal(run_tool("--out o.npy --method sale --stats st.json --mask-png q.npy/m.png --head 0"), 4);
    if (geteuid() != 0) { /* root writes anywhere */
        char ro[512];
        snprintf(ro, sizeof ro, "%s/ro", dir);
        assert_int_equal(mkdir(ro, 0555), 0);
        assert_int_equal(run_tool("--out ro/o.npy --method dense"), 4);
        DIR *d = opendir(ro);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                fail_msg("%s left in the unwritable directory", e->d_name);
        closedir(d);
        rmdir(ro);
    }
    assert_false(exists("o.npy"));
    assert_false(exists("st.json"));
    assert_false(exists("m2.png"));
    /* K with another head_dim, then another dtype, then a truncated file, a file that is no .npy, and
       a .npy whose header lacks its shape. */
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/k.npy", dir);
    const int64_t wrong_dim[3] = {1, 64, 8};
    float zeros[64 * 16] = {0};
    assert_int_equal(npy_write_f32(path, zeros, 3, wrong_dim, err, sizeof err), 0);
    assert_int_equal(run_tool("--out o.npy --method dense"), 2);
    const int64_t k_shape[3] = {1, 64, 16};
    uint16_t halves[64 * 16] = {0};
    write_f16(path, halves, 3, k_shape);
    assert_int_equal(run_tool("--out o.npy --method dense"), 2);
    assert_int_equal(npy_write_f32(path, zeros, 3, k_shape, err, sizeof err), 0);
    assert_int_equal(truncate(path, 200), 0);
    assert_int_equal(run_tool("--out o.npy --method dense"), 2);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("not a numpy file at all", f);
    fclose(f);
    assert_int_equal(run_tool("--out o.npy --method dense"), 2);
    f = fopen(path, "wb");
    assert_non_null(f);
    const char header[] = "{'descr': '<f4', 'fortran_order': False, }                    \n";
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(sizeof header - 1), 0};
    fwrite(preamble, 1, sizeof preamble, f);
    fwrite(header, 1, sizeof header - 1, f);
    fwrite(zeros, sizeof(float), 64 * 16, f);
    fclose(f);
    assert_int_equal(run_tool("--out o.npy --method dense"), 2);
    assert_int_equal(run_tool("--out o.npy --method dense --k missing.npy"), 2);
    assert_false(exists("o.npy"));
    assert_no_temporaries();
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_clsa_run PATH/TO/clsa-run PATH/TO/python3\n");
        return 2;
    }
    tool = argv[1], python = argv[2];
    harness_init("clsa-run");
    snprintf(dir, sizeof dir, "%s/clsa-run-test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_outputs), cmocka_unit_test(test_downsampling),
                                       cmocka_unit_test(test_errors)};
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failed;
}

/*
 * clsa-run end to end: random Q, K, V written as .npy files (float32 and float16, [B,H,L,D] and
 * [H,L,D], GQA), the tool run on them, and its O read back and checked against the float64
 * reference: dense, SALE with tau 0 (every block kept, so dense), and streaming on the mask its
 * float64 rule gives (tests/select_reference.c); its statistics JSON and mask PNG; and every error
 * it must report with its exit status and without leaving a file: malformed .npy, shapes and
 * dtypes that disagree, an unwritable output, a head out of range, an unknown method.
 * usage: test_clsa_run PATH/TO/clsa-run
 */
#include "harness.h"
#include "npy.h"
#include "select_reference.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tool;
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

/* Random tensors of shape s written to dir/{q,k,v}.npy, as [H,L,D] files when three_d (batch 1). */
static void write_inputs(const clsa_shape *s, uint64_t stream, bool three_d, void **hq, void **hk, void **hv)
{
    harness_rng rng = harness_rng_make(stream);
    int64_t nq, nk, nv, no;
    harness_tensor_elements(s, &nq, &nk, &nv, &no);
    *hq = harness_random_tensor(&rng, s->dtype, nq, 1.0);
    *hk = harness_random_tensor(&rng, s->dtype, nk, 1.0);
    *hv = harness_random_tensor(&rng, s->dtype, nv, 1.0);
    const int64_t qshape[4] = {s->batch, s->q_heads, s->q_len, s->head_dim};
    const int64_t kshape[4] = {s->batch, s->kv_heads, s->kv_len, s->head_dim};
    const int off = three_d ? 1 : 0, ndim = 4 - off;
    const char *names[3] = {"q", "k", "v"};
    void *data[3] = {*hq, *hk, *hv};
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

/* Runs clsa-run in dir with the arguments; returns its exit status. */
static int run_tool(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' --q q.npy --k k.npy --v v.npy %s", dir, tool, args);
    printf("# %s\n", cmd);
    fflush(stdout);
    const int st = system(cmd);
    assert_true(WIFEXITED(st));
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

/* max |got - want| / max |want| with got as f32 in the reference's [B,Hq,Lq,D] order. */
static double max_rel(const float *got, const double *want, int64_t n)
{
    double err = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    return err / scale;
}

static void check_against(const clsa_shape *s, const void *hq, const void *hk, const void *hv, const uint8_t *mask,
                          int bq, int bk, const char *what)
{
    const int64_t n = s->batch * s->q_heads * s->q_len * s->head_dim;
    float *got = read_result("o.npy", n);
    double *want = malloc(sizeof(double) * (size_t)n);
    ref_attention(s, hq, hk, hv, mask, bq, bk, want);
    const double err = max_rel(got, want, n);
    printf("# %s: max rel error %.2e\n", what, err);
    assert_true(err <= harness_tolerance(s->dtype));
    free(got), free(want);
}

static void test_outputs(void **state)
{
    (void)state;
    void *hq, *hk, *hv;
    /* Dense, [H,L,D] f32, GQA, causal. */
    clsa_shape s = clsa_shape_make(1, 4, 2, 150, 150, 40, CLSA_F32, 1);
    write_inputs(&s, 1, true, &hq, &hk, &hv);
    assert_int_equal(run_tool("--out o.npy --method dense --causal"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, "dense f32 [H,L,D]");
    /* SALE with tau 0 keeps every block: dense again, through the sparse path. */
    assert_int_equal(run_tool("--out o.npy --method sale --tau 0 --causal --block-q 32 --block-k 16"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, "sale tau 0");
    /* Streaming with statistics and a picture, on the mask its float64 rule gives. */
    assert_int_equal(run_tool("--out o.npy --method streaming --causal --block-q 32 --block-k 16 --sink 16 --local 32 "
                              "--stats st.json --mask-png m.png --head 1 --compare-dense"),
                     0);
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_STREAMING);
    sp.block_q = 32, sp.block_k = 16, sp.sink_tokens = 16, sp.local_tokens = 32;
    const int64_t nqb = (s.q_len + 31) / 32, nkb = (s.kv_len + 15) / 16, cells = s.q_heads * nqb * nkb;
    uint8_t *must = malloc((size_t)cells), *may = malloc((size_t)cells);
    for (int64_t h = 0; h < s.q_heads; ++h)
        assert_int_equal(ref_select_head(&s, &sp, h, hq, hk, must, may), 0);
    check_against(&s, hq, hk, hv, must, 32, 16, "streaming on its float64 mask");
    char path[512];
    snprintf(path, sizeof path, "%s/st.json", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char json[8192];
    const size_t len = fread(json, 1, sizeof json - 1, f);
    json[len] = '\0';
    fclose(f);
    const char *keys[] = {"\"device\"", "\"density_per_head\"", "\"ms\"", "\"rel_l1\"", "\"methods\": [\"streaming\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; ++i)
        if (!strstr(json, keys[i]))
            fail_msg("the statistics lack %s:\n%s", keys[i], json);
    snprintf(path, sizeof path, "%s/m.png", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char head[24];
    assert_int_equal(fread(head, 1, 24, f), 24);
    fclose(f);
    assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
    const unsigned width = (unsigned)head[16] << 24 | (unsigned)head[17] << 16 | (unsigned)head[18] << 8 | head[19];
    const unsigned height = (unsigned)head[20] << 24 | (unsigned)head[21] << 16 | (unsigned)head[22] << 8 | head[23];
    printf("# picture %u x %u\n", width, height);
    /* 5 x 10 blocks, magnified to about 512 pixels along the longer side, plus margins and legend. */
    assert_true(width >= 510 && height >= 255 && width < 2000 && height < 2000);
    /* Value pruning: the fraction lands in the statistics. */
    assert_int_equal(run_tool("--out o.npy --method dense --causal --value-bits 3 --stats st.json"), 0);
    snprintf(path, sizeof path, "%s/st.json", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    const size_t len2 = fread(json, 1, sizeof json - 1, f);
    json[len2] = '\0';
    fclose(f);
    assert_non_null(strstr(json, "\"pruned_fraction\": 0."));
    assert_non_null(strstr(json, "\"value_bits\": 3"));
    free(must), free(may), free(hq), free(hk), free(hv);
    /* Dense, [B,H,L,D] f16, not causal, Lq != Lk. */
    s = clsa_shape_make(2, 2, 1, 70, 110, 24, CLSA_F16, 0);
    write_inputs(&s, 2, false, &hq, &hk, &hv);
    assert_int_equal(run_tool("--out o.npy --method dense"), 0);
    check_against(&s, hq, hk, hv, NULL, 0, 0, "dense f16 [B,H,L,D]");
    free(hq), free(hk), free(hv);
    assert_no_temporaries();
}

static void test_errors(void **state)
{
    (void)state;
    void *hq, *hk, *hv;
    clsa_shape s = clsa_shape_make(1, 2, 1, 64, 64, 16, CLSA_F32, 1);
    write_inputs(&s, 3, true, &hq, &hk, &hv);
    free(hq), free(hk), free(hv);
    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/o.npy", dir);
    unlink(out_path);
    assert_int_equal(run_tool("--out o.npy --method nonsense"), 1);
    assert_int_equal(run_tool("--out o.npy"), 1);
    assert_int_equal(run_tool("--out o.npy --method dense --mask-png m2.png --head 0"), 1);
    assert_int_equal(run_tool("--out o.npy --method sale --mask-png m2.png --head 9"), 2);
    assert_int_equal(run_tool("--out o.npy --method sale,dense,sale"), 2);
    assert_int_equal(run_tool("--out o.npy --method topk --topk 2"), 2);
    assert_int_equal(run_tool("--out /nonexistent-dir/o.npy --method dense"), 4);
    assert_false(exists("o.npy"));
    assert_false(exists("m2.png"));
    /* K with another head_dim, then another dtype, then a truncated and a garbled file. */
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
    assert_false(exists("o.npy"));
    assert_no_temporaries();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_clsa_run PATH/TO/clsa-run\n");
        return 2;
    }
    tool = argv[1];
    harness_init("clsa-run");
    snprintf(dir, sizeof dir, "%s/clsa-run-test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_outputs), cmocka_unit_test(test_errors)};
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failed;
}

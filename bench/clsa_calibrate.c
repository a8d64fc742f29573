/*
 * clsa-calibrate: per-head SALE thresholds from calibration tensors.
 *
 * usage: clsa-calibrate --q Q.npy --k K.npy --v V.npy --theta T --out TAU_FILE [--layer N]
 *                       [--keep-smaller] [--device SEL] [--no-causal] [--sink N] [--local N]
 *                       [--block-q N] [--block-k N]
 *
 * For every query head, the largest tau on a grid from 0.512 down to 1.6e-5 whose SALE output on
 * these tensors stays within rel_l1 <= theta of dense attention (bench/calibrate.h); 0 (dense)
 * when none does. SALE's own procedure (arXiv 2505.24179) starts at 0.008 and halves tau while a
 * summed error is too large; this criterion is per head and relative, and the grid reaches the
 * larger taus that sparse heads can take. The table printed shows every head's error and density
 * at every grid point.
 *
 * The thresholds of layer N (default 0) are merged into TAU_FILE (bench/tau_file.h): lines of
 * other layers are kept. With --keep-smaller, a head that TAU_FILE already holds for layer N (the
 * whole layer, read as clsa-bench reads it) keeps the smaller of its old and new tau: run once per
 * calibration text to get, per head, a tau that every text allows. Q is [B, Hq, L, D], K and V [B, Hkv, Lk, D] (or 3-D), float32 or float16;
 * the computation is f32.
 */
#include "calibrate.h"
#include "npy_tensor.h"
#include "tau_file.h"

#include "clsa/clsa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: clsa-calibrate --q Q.npy --k K.npy --v V.npy --theta T --out TAU_FILE [--layer N] [--keep-smaller]\n"
                    "                      [--device SEL] [--no-causal] [--sink N] [--local N] [--block-q N] [--block-k N]\n");
    exit(2);
}

static long parse_long(const char *opt, const char *s)
{
    char *end;
    const long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0) {
        fprintf(stderr, "clsa-calibrate: %s %s: expected an integer >= 0\n", opt, s);
        exit(2);
    }
    return v;
}

static void die(clsa_context *ctx, clsa_status st, const char *what)
{
    fprintf(stderr, "clsa-calibrate: %s: %s%s%s\n", what, clsa_status_string(st), ctx ? ": " : "",
            ctx ? clsa_context_last_error(ctx) : "");
    exit(1);
}

static void *load(const char *path, int64_t dims[4])
{
    char err[1024];
    void *x = npy_load_bhld(path, CLSA_F32, dims, err, sizeof err);
    if (!x) {
        fprintf(stderr, "clsa-calibrate: %s\n", err);
        exit(1);
    }
    return x;
}

int main(int argc, char **argv)
{
    const char *qpath = NULL, *kpath = NULL, *vpath = NULL, *out_path = NULL, *device = NULL;
    double theta = -1.0;
    int layer = 0, causal = 1, keep_smaller = 0;
    clsa_sparsity sp;
    clsa_sparsity_init(&sp, CLSA_METHOD_SALE);
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-causal")) {
            causal = 0;
            continue;
        }
        if (!strcmp(a, "--keep-smaller")) {
            keep_smaller = 1;
            continue;
        }
        if (!v)
            usage();
        ++i;
        if (!strcmp(a, "--q")) qpath = v;
        else if (!strcmp(a, "--k")) kpath = v;
        else if (!strcmp(a, "--v")) vpath = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--layer")) layer = (int)parse_long(a, v);
        else if (!strcmp(a, "--sink")) sp.sink_tokens = (int32_t)parse_long(a, v);
        else if (!strcmp(a, "--local")) sp.local_tokens = (int32_t)parse_long(a, v);
        else if (!strcmp(a, "--block-q")) sp.block_q = (int32_t)parse_long(a, v);
        else if (!strcmp(a, "--block-k")) sp.block_k = (int32_t)parse_long(a, v);
        else if (!strcmp(a, "--theta")) {
            char *end;
            theta = strtod(v, &end);
            if (end == v || *end || !(theta >= 0.0) || !isfinite(theta)) {
                fprintf(stderr, "clsa-calibrate: --theta %s: expected a finite number >= 0\n", v);
                return 2;
            }
        } else usage();
    }
    if (!qpath || !kpath || !vpath || !out_path || theta < 0.0)
        usage();

    int64_t dq[4], dk[4], dv[4];
    float *q = load(qpath, dq), *k = load(kpath, dk), *v = load(vpath, dv);
    if (memcmp(dk, dv, sizeof dk) || dq[0] != dk[0] || dq[3] != dk[3]) {
        fprintf(stderr, "clsa-calibrate: q [%lld,%lld,%lld,%lld] and k/v [%lld,%lld,%lld,%lld] / [%lld,%lld,%lld,%lld] do not fit together\n",
                (long long)dq[0], (long long)dq[1], (long long)dq[2], (long long)dq[3], (long long)dk[0],
                (long long)dk[1], (long long)dk[2], (long long)dk[3], (long long)dv[0], (long long)dv[1],
                (long long)dv[2], (long long)dv[3]);
        return 1;
    }
    const int64_t B = dq[0], H = dq[1];
    if (device)
        setenv("CLSA_DEVICE", device, 1);
    clsa_context *ctx = NULL;
    clsa_status st = clsa_context_create_default(NULL, &ctx);
    if (st)
        die(NULL, st, "creating a context");
    const clsa_shape shape = clsa_shape_make(B, H, dk[1], dq[2], dk[2], dq[3], CLSA_F32, causal);
    float *tau = calloc((size_t)H, sizeof *tau);
    double *err = malloc(sizeof(double) * CALIBRATE_GRID * (size_t)H), *density = malloc(sizeof(double) * CALIBRATE_GRID * (size_t)H);
    if (!tau || !err || !density) {
        fprintf(stderr, "clsa-calibrate: out of memory\n");
        return 1;
    }
    if ((st = calibrate_heads(ctx, &shape, &sp, q, k, v, theta, tau, err, density)))
        die(ctx, st, "calibrating");
    printf("clsa-calibrate: %s, q [%lld, %lld, %lld, %lld], k/v heads %lld, %s, theta %g, layer %d\n",
           clsa_context_device_name(ctx), (long long)B, (long long)H, (long long)dq[2], (long long)dq[3],
           (long long)dk[1], causal ? "causal" : "non-causal", theta, layer);
    printf("%10s", "tau");
    for (int64_t h = 0; h < H; ++h)
        printf("  head %-3lld rel_l1 density", (long long)h);
    printf("\n");
    for (int i = CALIBRATE_GRID - 1; i >= 0; --i) {
        printf("%10.6g", (double)calibrate_grid_tau(i));
        for (int64_t h = 0; h < H; ++h)
            printf("  %c        %.4f  %.3f ", err[i * H + h] <= theta ? '+' : ' ', err[i * H + h], density[i * H + h]);
        printf("\n");
    }
    char msg[1024];
    if (keep_smaller && tau_file_keep_smaller(out_path, layer, (int)H, tau))
        printf("layer %d: %s held thresholds for it; each head keeps the smaller\n", layer, out_path);
    if (tau_file_write_layer(out_path, layer, (int)H, tau, msg, sizeof msg) != 0) {
        fprintf(stderr, "clsa-calibrate: %s\n", msg);
        return 1;
    }
    printf("layer %d thresholds (0: dense) written to %s:", layer, out_path);
    for (int64_t h = 0; h < H; ++h)
        printf(" %g", (double)tau[h]);
    printf("\n");
    free(q), free(k), free(v), free(tau), free(err), free(density);
    clsa_context_release(ctx);
    return 0;
}

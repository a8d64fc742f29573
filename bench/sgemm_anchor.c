#include "sgemm_anchor.h"
#include "timing.h"

#include <stdlib.h>

#ifdef CLSA_HAVE_OPENBLAS
#include <cblas.h>

double bench_sgemm_gflops(int n, int repeat)
{
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    double *t = malloc((size_t)(repeat > 0 ? repeat : 1) * sizeof *t);
    if (!a || !b || !c || !t) {
        free(a), free(b), free(c), free(t);
        return -1.0;
    }
    for (size_t i = 0; i < nn; ++i) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        b[i] = (float)((i * 5) % 11) * 0.01f;
    }
    for (int r = -1; r < repeat; ++r) { /* r = -1 is the warm-up */
        double t0 = bench_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r >= 0)
            t[r] = bench_now_ms() - t0;
    }
    double ms = bench_median(t, (size_t)repeat);
    free(a), free(b), free(c), free(t);
    return 2.0 * (double)n * n * n / (ms * 1e6);
}
#else
double bench_sgemm_gflops(int n, int repeat)
{
    (void)n, (void)repeat;
    return -1.0;
}
#endif

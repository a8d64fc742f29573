/* Per-head tau calibration (bench/calibrate.h) against the float64 reference, on the default device. */
#include "calibrate.h"
#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* rel_l1 of head h of o against the float64 reference want (B = 1). */
static double head_error(const clsa_shape *s, const float *o, const double *want, int64_t h)
{
    const int64_t n = s->q_len * s->head_dim;
    double diff = 0.0, norm = 0.0;
    for (int64_t i = h * n; i < (h + 1) * n; ++i) {
        diff += fabs((double)o[i] - want[i]);
        norm += fabs(want[i]);
    }
    return diff / norm;
}

/*
 * Two heads with different attention: head 0 peaked on its diagonal key (k = 4 b, q = b + noise,
 * so its diagonal score is about 4 sqrt(D), 5 or more standard deviations above the others), head
 * 1 flat (q scaled down to 0.3). Each head's tau must meet theta against the float64 reference,
 * the next grid tau up must not (on the device's own dense output, as the search measures), and
 * the peaked head must take the larger tau.
 */
static void test_calibrated_taus_meet_theta(void **state)
{
    (void)state;
    const int64_t L = harness_small ? 160 : 1024, D = 64, H = 2;
    const double theta = 0.02;
    clsa_context *ctx = harness_context(CLSA_STYLE_AUTO);
    const clsa_shape s = clsa_shape_make(1, H, H, L, L, D, CLSA_F32, 1);
    harness_rng rng = harness_rng_make(1);
    float *q = malloc(sizeof(float) * H * L * D), *k = malloc(sizeof(float) * H * L * D);
    float *v = harness_random_tensor(&rng, CLSA_F32, H * L * D, 1.0);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < L * D; ++i) {
            const double b = harness_normal(&rng);
            k[h * L * D + i] = (float)(h == 0 ? 4.0 * b : b);
            q[h * L * D + i] = (float)((b + 0.1 * harness_normal(&rng)) * (h == 0 ? 1.0 : 0.3));
        }
    clsa_sparsity sale;
    clsa_sparsity_init(&sale, CLSA_METHOD_SALE);
    sale.sink_tokens = 16, sale.local_tokens = 64;
    float tau[2];
    double err[CALIBRATE_GRID * 2], density[CALIBRATE_GRID * 2];
    assert_int_equal(calibrate_heads(ctx, &s, &sale, q, k, v, theta, tau, err, density), CLSA_SUCCESS);
    printf("# calibrated tau: head 0 %g, head 1 %g\n", (double)tau[0], (double)tau[1]);
    assert_true(tau[0] > tau[1]);

    double *want = malloc(sizeof(double) * H * L * D);
    float *o = malloc(sizeof(float) * H * L * D);
    ref_attention(&s, q, k, v, NULL, 0, 0, want);
    sale.tau_per_head = tau;
    clsa_plan *plan = NULL;
    assert_int_equal(clsa_plan_create(ctx, &s, &sale, &plan), CLSA_SUCCESS);
    assert_int_equal(clsa_attention_host(plan, NULL, q, k, v, o), CLSA_SUCCESS);
    for (int64_t h = 0; h < H; ++h) {
        const double e = head_error(&s, o, want, h);
        printf("# head %lld: rel_l1 %.5f at tau %g (theta %g)\n", (long long)h, e, (double)tau[h], theta);
        assert_true(e <= theta + 1e-5); /* the device's dense output is within 1e-5 of float64 */
        for (int i = 0; i < CALIBRATE_GRID; ++i) /* every larger grid tau failed */
            if (calibrate_grid_tau(i) > tau[h])
                assert_true(err[i * H + h] > theta);
        for (int i = 0; i < CALIBRATE_GRID; ++i)
            assert_true(density[i * H + h] > 0.0 && density[i * H + h] <= 1.0);
    }
    clsa_plan_release(plan);
    free(q), free(k), free(v), free(want), free(o);
    clsa_context_release(ctx);
}

int main(void)
{
    harness_init("calibrate");
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_calibrated_taus_meet_theta)};
    return cmocka_run_group_tests_name("calibrate", tests, NULL, NULL);
}

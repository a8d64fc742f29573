/* Per-head SALE thresholds from calibration tensors (bench/calibrate.h). */
#include "calibrate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float calibrate_grid_tau(int i) { return 0.512f * ldexpf(1.0f, -i); }

/* Per head h: sum |o - ref| / sum |ref| over batch, rows and channels. */
static void head_rel_l1(const float *o, const float *ref, int64_t B, int64_t H, int64_t per_head, double *out)
{
    for (int64_t h = 0; h < H; ++h) {
        double diff = 0.0, norm = 0.0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = (b * H + h) * per_head, end = i + per_head; i < end; ++i) {
                diff += fabs((double)o[i] - (double)ref[i]);
                norm += fabs((double)ref[i]);
            }
        out[h] = norm > 0.0 ? diff / norm : (diff > 0.0 ? INFINITY : 0.0);
    }
}

/* SALE at one tau for every head: the output into o, the density per head into density. */
static clsa_status run_sale(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp, const float *q,
                            const float *k, const float *v, float *o, double *density)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, shape, sp, &plan);
    if (st)
        return st;
    const cl_context clc = clsa_context_cl_context(ctx);
    const size_t qbytes = (size_t)(shape->batch * shape->q_heads * shape->q_len * shape->head_dim) * sizeof(float);
    const size_t kvbytes = (size_t)(shape->batch * shape->kv_heads * shape->kv_len * shape->head_dim) * sizeof(float);
    cl_int err = CL_SUCCESS;
    cl_command_queue queue = clCreateCommandQueue(clc, clsa_context_device(ctx), 0, &err);
    cl_mem bufs[5] = {NULL};
    if (!err)
        bufs[0] = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, qbytes, (void *)q, &err);
    if (!err)
        bufs[1] = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, kvbytes, (void *)k, &err);
    if (!err)
        bufs[2] = clCreateBuffer(clc, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, kvbytes, (void *)v, &err);
    if (!err)
        bufs[3] = clCreateBuffer(clc, CL_MEM_READ_WRITE, qbytes, NULL, &err);
    if (!err)
        bufs[4] = clCreateBuffer(clc, CL_MEM_READ_WRITE, clsa_plan_workspace_size(plan), NULL, &err);
    st = (clsa_status)err;
    if (!st)
        st = clsa_attention(plan, queue, bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], 0, NULL, NULL);
    if (!st)
        st = (clsa_status)clEnqueueReadBuffer(queue, bufs[3], CL_TRUE, 0, qbytes, o, 0, NULL, NULL);
    if (!st)
        st = clsa_mask_density(plan, queue, bufs[4], NULL, density);
    for (int i = 0; i < 5; ++i)
        if (bufs[i])
            clReleaseMemObject(bufs[i]);
    if (queue)
        clReleaseCommandQueue(queue);
    clsa_plan_release(plan);
    return st;
}

clsa_status calibrate_heads(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sale, const float *q,
                            const float *k, const float *v, double theta, float *tau, double *rel_l1, double *density)
{
    const int64_t H = shape->q_heads, count = shape->batch * H * shape->q_len * shape->head_dim;
    float *dense = malloc((size_t)count * sizeof *dense), *o = malloc((size_t)count * sizeof *o);
    float *best = calloc((size_t)H, sizeof *best);
    double *err = malloc((size_t)H * sizeof *err), *dens = malloc((size_t)H * sizeof *dens);
    clsa_plan *plan = NULL;
    clsa_status st = dense && o && best && err && dens ? CLSA_SUCCESS : CLSA_ERR_OUT_OF_HOST_MEMORY;
    if (!st)
        st = clsa_plan_create(ctx, shape, NULL, &plan);
    if (!st)
        st = clsa_attention_host(plan, NULL, q, k, v, dense);
    clsa_plan_release(plan);
    /* From the smallest tau up, so that each head ends with the largest one that passed. */
    for (int i = CALIBRATE_GRID - 1; !st && i >= 0; --i) {
        clsa_sparsity sp = *sale;
        sp.method = CLSA_METHOD_SALE, sp.tau = calibrate_grid_tau(i), sp.tau_per_head = NULL;
        st = run_sale(ctx, shape, &sp, q, k, v, o, dens);
        if (st)
            break;
        head_rel_l1(o, dense, shape->batch, H, shape->q_len * shape->head_dim, err);
        for (int64_t h = 0; h < H; ++h) {
            if (err[h] <= theta)
                best[h] = sp.tau;
            if (rel_l1)
                rel_l1[i * H + h] = err[h];
            if (density)
                density[i * H + h] = dens[h];
        }
    }
    if (!st)
        memcpy(tau, best, (size_t)H * sizeof *tau);
    free(dense), free(o), free(best), free(err), free(dens);
    return st;
}

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

/* The device side of one calibration: a queue and q, k, v and o buffers, filled once and reused
   by the dense run and every grid point. */
typedef struct device_io {
    cl_command_queue queue;
    cl_mem q, k, v, o;
    size_t o_bytes;
} device_io;

static clsa_status io_make(clsa_context *ctx, const clsa_shape *shape, const float *q, const float *k,
                           const float *v, device_io *io)
{
    const cl_context clc = clsa_context_cl_context(ctx);
    const size_t kv_bytes = (size_t)(shape->batch * shape->kv_heads * shape->kv_len * shape->head_dim) * sizeof(float);
    const cl_mem_flags in = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    cl_int err = CL_SUCCESS;
    io->o_bytes = (size_t)(shape->batch * shape->q_heads * shape->q_len * shape->head_dim) * sizeof(float);
    io->queue = clCreateCommandQueue(clc, clsa_context_device(ctx), 0, &err);
    if (!err)
        io->q = clCreateBuffer(clc, in, io->o_bytes, (void *)q, &err);
    if (!err)
        io->k = clCreateBuffer(clc, in, kv_bytes, (void *)k, &err);
    if (!err)
        io->v = clCreateBuffer(clc, in, kv_bytes, (void *)v, &err);
    if (!err)
        io->o = clCreateBuffer(clc, CL_MEM_READ_WRITE, io->o_bytes, NULL, &err);
    return (clsa_status)err;
}

static void io_release(device_io *io)
{
    cl_mem all[4] = {io->q, io->k, io->v, io->o};
    for (int i = 0; i < 4; ++i)
        if (all[i])
            clReleaseMemObject(all[i]);
    if (io->queue)
        clReleaseCommandQueue(io->queue);
}

/* Attention under sparsity sp (NULL: dense) into o; for a sparse plan also the density per head. */
static clsa_status run(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sp, const device_io *io,
                       float *o, double *density)
{
    clsa_plan *plan = NULL;
    clsa_status st = clsa_plan_create(ctx, shape, sp, &plan);
    cl_int err = CL_SUCCESS;
    cl_mem ws = st ? NULL : clCreateBuffer(clsa_context_cl_context(ctx), CL_MEM_READ_WRITE,
                                            clsa_plan_workspace_size(plan), NULL, &err);
    if (!st)
        st = (clsa_status)err;
    if (!st)
        st = clsa_attention(plan, io->queue, io->q, io->k, io->v, io->o, ws, 0, NULL, NULL);
    if (!st)
        st = (clsa_status)clEnqueueReadBuffer(io->queue, io->o, CL_TRUE, 0, io->o_bytes, o, 0, NULL, NULL);
    if (!st && sp)
        st = clsa_mask_density(plan, io->queue, ws, NULL, density);
    if (ws)
        clReleaseMemObject(ws);
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
    device_io io = {0};
    clsa_status st = dense && o && best && err && dens ? CLSA_SUCCESS : CLSA_ERR_OUT_OF_HOST_MEMORY;
    if (!st)
        st = io_make(ctx, shape, q, k, v, &io);
    if (!st)
        st = run(ctx, shape, NULL, &io, dense, NULL);
    /* From the smallest tau up, so that each head ends with the largest one that passed. */
    for (int i = CALIBRATE_GRID - 1; !st && i >= 0; --i) {
        clsa_sparsity sp = *sale;
        sp.method = CLSA_METHOD_SALE, sp.tau = calibrate_grid_tau(i), sp.tau_per_head = NULL;
        st = run(ctx, shape, &sp, &io, o, dens);
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
    io_release(&io);
    if (!st)
        memcpy(tau, best, (size_t)H * sizeof *tau);
    free(dense), free(o), free(best), free(err), free(dens);
    return st;
}

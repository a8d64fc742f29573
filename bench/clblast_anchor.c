#include "clblast_anchor.h"

#include <stdio.h>

#ifndef CLSA_HAVE_CLBLAST

int clblast_attention_ms(clsa_context *ctx, cl_command_queue queue, const clsa_shape *shape, cl_mem q, cl_mem k,
                         cl_mem v, cl_mem o, int repeat, int warmup, double *ms, char *why, size_t why_size)
{
    (void)ctx, (void)queue, (void)shape, (void)q, (void)k, (void)v, (void)o, (void)repeat, (void)warmup, (void)ms;
    snprintf(why, why_size, "clsa-bench was built without CLBlast (Debian: libclblast-dev)");
    return -1;
}

#else

#include "timing.h"

#include <clblast_c.h>
#include <math.h>
#include <stdlib.h>

/* One work-item per score row: max, exp and sum over the keys the row sees, zeros past them. */
static const char *softmax_source =
    "__kernel void softmax_rows(__global float *s, int rows, int cols, int first_row, int q_len, int kv_len,\n"
    "                           int causal)\n"
    "{\n"
    "    const int r = get_global_id(0);\n"
    "    if (r >= rows)\n"
    "        return;\n"
    "    const int i = first_row + r, last = causal ? min(i + kv_len - q_len, cols - 1) : cols - 1;\n"
    "    __global float *row = s + (long)r * cols;\n"
    "    float m = -INFINITY, sum = 0.0f;\n"
    "    for (int j = 0; j <= last; ++j)\n"
    "        m = fmax(m, row[j]);\n"
    "    for (int j = 0; j <= last; ++j) {\n"
    "        row[j] = exp(row[j] - m);\n"
    "        sum += row[j];\n"
    "    }\n"
    "    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;\n"
    "    for (int j = 0; j < cols; ++j)\n"
    "        row[j] = j <= last ? row[j] * inv : 0.0f;\n"
    "}\n";

typedef struct anchor {
    const clsa_shape *s;
    cl_command_queue queue;
    cl_mem q, k, v, o, scores;
    cl_kernel softmax;
    int64_t chunk;
} anchor;

/* One whole attention call; returns a CL or CLBlast status (0 on success). */
static int run_once(const anchor *a)
{
    const clsa_shape *s = a->s;
    const int64_t D = s->head_dim, Lq = s->q_len, Lk = s->kv_len, group = s->q_heads / s->kv_heads;
    const float scale = s->scale > 0 ? s->scale : (float)(1.0 / sqrt((double)D));
    cl_command_queue queue = a->queue;
    for (int64_t bh = 0; bh < s->batch * s->q_heads; ++bh) {
        const int64_t bk = (bh / s->q_heads) * s->kv_heads + (bh % s->q_heads) / group;
        for (int64_t r0 = 0; r0 < Lq; r0 += a->chunk) {
            const int64_t rows = Lq - r0 < a->chunk ? Lq - r0 : a->chunk;
            CLBlastStatusCode st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                                (size_t)rows, (size_t)Lk, (size_t)D, scale, a->q,
                                                (size_t)((bh * Lq + r0) * D), (size_t)D, a->k, (size_t)(bk * Lk * D),
                                                (size_t)D, 0.0f, a->scores, 0, (size_t)Lk, &queue, NULL);
            if (st != CLBlastSuccess)
                return (int)st;
            cl_int r = (cl_int)rows, cols = (cl_int)Lk, first = (cl_int)r0, lq = (cl_int)Lq, lk = (cl_int)Lk;
            cl_int causal = s->causal;
            cl_int err = clSetKernelArg(a->softmax, 0, sizeof(cl_mem), &a->scores);
            err |= clSetKernelArg(a->softmax, 1, sizeof r, &r);
            err |= clSetKernelArg(a->softmax, 2, sizeof cols, &cols);
            err |= clSetKernelArg(a->softmax, 3, sizeof first, &first);
            err |= clSetKernelArg(a->softmax, 4, sizeof lq, &lq);
            err |= clSetKernelArg(a->softmax, 5, sizeof lk, &lk);
            err |= clSetKernelArg(a->softmax, 6, sizeof causal, &causal);
            const size_t global = (size_t)rows;
            if (err || (err = clEnqueueNDRangeKernel(queue, a->softmax, 1, NULL, &global, NULL, 0, NULL, NULL)))
                return err;
            st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, (size_t)rows, (size_t)D,
                              (size_t)Lk, 1.0f, a->scores, 0, (size_t)Lk, a->v, (size_t)(bk * Lk * D), (size_t)D, 0.0f,
                              a->o, (size_t)((bh * Lq + r0) * D), (size_t)D, &queue, NULL);
            if (st != CLBlastSuccess)
                return (int)st;
        }
    }
    return clFinish(queue);
}

int clblast_attention_ms(clsa_context *ctx, cl_command_queue queue, const clsa_shape *shape, cl_mem q, cl_mem k,
                         cl_mem v, cl_mem o, int repeat, int warmup, double *ms, char *why, size_t why_size)
{
    if (shape->dtype != CLSA_F32 || shape->q_strides.token || shape->k_strides.token || shape->v_strides.token ||
        shape->o_strides.token) {
        snprintf(why, why_size, "the CLBlast anchor takes contiguous f32 tensors only");
        return -1;
    }
    cl_context clc = clsa_context_cl_context(ctx);
    cl_device_id dev = clsa_context_device(ctx);
    cl_int err = CL_SUCCESS;
    /* Score rows per chunk: about 64 MiB of scores, so that long sequences fit any device. */
    int64_t chunk = (int64_t)((64u << 20) / (4 * (size_t)shape->kv_len));
    chunk = chunk < 16 ? 16 : chunk > shape->q_len ? shape->q_len : chunk;
    anchor a = {shape, queue, q, k, v, o, NULL, NULL, chunk};
    a.scores = clCreateBuffer(clc, CL_MEM_READ_WRITE, (size_t)chunk * (size_t)shape->kv_len * 4, NULL, &err);
    cl_program program = err ? NULL : clCreateProgramWithSource(clc, 1, &softmax_source, NULL, &err);
    if (!err)
        err = clBuildProgram(program, 1, &dev, "", NULL, NULL);
    if (!err)
        a.softmax = clCreateKernel(program, "softmax_rows", &err);
    double *t = malloc(sizeof(double) * (size_t)(repeat > 0 ? repeat : 1));
    int status = err;
    for (int r = -warmup; !status && t && r < repeat; ++r) {
        const double t0 = bench_now_ms();
        status = run_once(&a);
        if (r >= 0)
            t[r] = bench_now_ms() - t0;
    }
    if (status)
        snprintf(why, why_size, "the CLBlast anchor failed with status %d", status);
    else
        *ms = bench_median(t, (size_t)repeat);
    free(t);
    if (a.softmax)
        clReleaseKernel(a.softmax);
    if (program)
        clReleaseProgram(program);
    if (a.scores)
        clReleaseMemObject(a.scores);
    return status ? -1 : 0;
}

#endif

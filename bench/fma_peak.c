#include "fma_peak.h"

#include "timing.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The probe. Why it is shaped so:
 * - fma() on vectors (float16 / half16 on a CPU, float8 / half8 elsewhere): each call is one
 *   vector FMA instruction where the hardware has one (a 512-bit FMA for float16 with AVX-512,
 *   packed half2 FMAs on GPUs), and fma() may not be split into a multiply and an add.
 * - NACC independent accumulators per work-item: one chain waits for its previous FMA (4 cycles
 *   on current CPUs, a few on GPUs), so the FMA units only stay busy with (latency x FMA pipes)
 *   chains in flight. A CPU core has no other source of independent work, so it gets 16 (two
 *   512-bit pipes x 4 cycles = 8, doubled for headroom; 16 zmm registers of 32). A GPU also hides
 *   latency across the threads of a compute unit, so 8 float8 (64 registers) keeps occupancy up.
 * - Multiplier and addend are kernel arguments and the lanes start at different values, so the
 *   compiler can neither fold the loop nor turn a vector chain into a broadcast scalar one; the
 *   loop count is an argument, so the host can calibrate it. With m = 1 - 2^-10 and c = 2^-10
 *   every lane moves toward 1 and stays finite in f16.
 * - The accumulators are summed into out[gid], which the host reads and checks, so nothing is
 *   dead code and a miscompiled probe is noticed.
 * - vec_type_hint tells a CPU compiler that vectorizes across work-items (Intel's) that the kernel
 *   is already vectorized.
 */
static const char *PROBE_SRC =
    "#ifdef PROBE_HALF\n"
    "#pragma OPENCL EXTENSION cl_khr_fp16 : enable\n"
    "#define T half\n"
    "#else\n"
    "#define T float\n"
    "#endif\n"
    "#define CAT_(a, b) a##b\n"
    "#define CAT(a, b) CAT_(a, b)\n"
    "#define VT CAT(T, VEC)\n"
    "#define FVT CAT(float, VEC)\n"
    "#define TO_VT CAT(convert_, VT)\n"
    "#define TO_FVT CAT(convert_, FVT)\n"
    "#if VEC == 16\n"
    "#define LANES ((FVT)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))\n"
    "#else\n"
    "#define LANES ((FVT)(0, 1, 2, 3, 4, 5, 6, 7))\n"
    "#endif\n"
    "#if NACC == 16\n"
    "#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)\n"
    "#else\n"
    "#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)\n"
    "#endif\n"
    "#define DECL(i) VT a##i = TO_VT(x0 + (float)(i) * 0.00390625f);\n"
    "#define STEP(i) a##i = fma(a##i, m, c);\n"
    "#define SUM(i) s += TO_FVT(a##i);\n"
    "__kernel __attribute__((vec_type_hint(VT)))\n"
    "void fma_peak(__global float *out, const int iters, const float mul, const float add)\n"
    "{\n"
    "    const size_t gid = get_global_id(0);\n"
    "    const FVT x0 = 0.5f + 0.015625f * (float)(gid & 7) + 0.0078125f * LANES;\n"
    "    const VT m = (VT)((T)mul), c = (VT)((T)add);\n"
    "    EACH(DECL)\n"
    "    for (int i = 0; i < iters; ++i) {\n"
    "        EACH(STEP)\n"
    "        EACH(STEP)\n"
    "    }\n"
    "    FVT s = (FVT)(0.0f);\n"
    "    EACH(SUM)\n"
    "#if VEC == 16\n"
    "    const float8 s8 = s.lo + s.hi;\n"
    "#else\n"
    "    const float8 s8 = s;\n"
    "#endif\n"
    "    const float4 s4 = s8.lo + s8.hi;\n"
    "    const float2 s2 = s4.lo + s4.hi;\n"
    "    out[gid] = s2.x + s2.y;\n"
    "}\n";

enum { FMA_PER_TRIP = 2, TIMED_RUNS = 5 };
static const float MUL = 1.0f - 0x1.0p-10f, ADD = 0x1.0p-10f;

static int fail(char *why, size_t why_size, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && why_size)
        vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
    return rc;
}

static int has_fp16(cl_device_id dev)
{
    size_t n = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &n) != CL_SUCCESS || !n)
        return 0;
    char *ext = malloc(n + 2);
    if (!ext || clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, n, ext + 1, NULL) != CL_SUCCESS) {
        free(ext);
        return 0;
    }
    ext[0] = ' ';
    ext[n] = '\0';
    for (size_t i = 1; i < n; ++i) /* whole-word match: " cl_khr_fp16 " */
        if (ext[i] == '\t' || ext[i] == '\n')
            ext[i] = ' ';
    const char *p = ext;
    int found = 0;
    while ((p = strstr(p, " cl_khr_fp16")) != NULL) {
        const char end = p[12];
        if (end == ' ' || end == '\0') {
            found = 1;
            break;
        }
        p += 12;
    }
    free(ext);
    return found;
}

/* One run: enqueue, clFinish, wall ms (< 0 on an OpenCL error). */
static double run_once(cl_command_queue queue, cl_kernel k, size_t global, int iters)
{
    if (clSetKernelArg(k, 1, sizeof iters, &iters) != CL_SUCCESS)
        return -1.0;
    const double t0 = bench_now_ms();
    if (clEnqueueNDRangeKernel(queue, k, 1, NULL, &global, NULL, 0, NULL, NULL) != CL_SUCCESS ||
        clFinish(queue) != CL_SUCCESS)
        return -1.0;
    return bench_now_ms() - t0;
}

/*
 * The host check of the last run's output. Lane (gid, accumulator i, lane l) starts at
 * x0 = 0.5 + (gid & 7) / 64 + l / 128 + i / 256 and after n FMAs is 1 + (x0 - 1) m^n in exact
 * arithmetic. f32 rounding stays within about ulp / (1 - m) = 6e-5 of that; f16 can stall where
 * the step (1 - x) 2^-10 falls under half an ulp, about 0.25 below 1. Returns the worst relative
 * deviation of a work-item's sum, or -1 when an output is not finite.
 */
static double check_output(const float *out, size_t global, int vec, int accs, long iters)
{
    const double mn = pow((double)MUL, (double)iters * FMA_PER_TRIP); /* FMAs on each lane */
    double worst = 0.0;
    for (size_t g = 0; g < global; ++g) {
        if (!isfinite(out[g]))
            return -1.0;
        double want = 0.0;
        for (int i = 0; i < accs; ++i)
            for (int l = 0; l < vec; ++l) {
                const double x0 = 0.5 + (double)(g & 7) / 64.0 + l / 128.0 + i / 256.0;
                want += 1.0 + (x0 - 1.0) * mn;
            }
        const double dev = fabs(out[g] - want) / want;
        worst = dev > worst ? dev : worst;
    }
    return worst;
}

int fma_peak_measure(cl_context ctx, cl_device_id dev, cl_command_queue queue, int half, fma_peak *out, char *why,
                     size_t why_size)
{
    memset(out, 0, sizeof *out);
    if (half && !has_fp16(dev))
        return fail(why, why_size, 1, "no cl_khr_fp16");
    cl_device_type type = 0;
    cl_uint units = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL) != CL_SUCCESS || !units)
        return fail(why, why_size, -1, "cannot read the device's type and compute units");
    const int cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    out->vec = cpu ? 16 : 8;
    out->accs = cpu ? 16 : 8;
    out->runs = TIMED_RUNS;
    /* 2048 work-items per compute unit: many work-groups on every unit whatever local size the
       runtime picks, and a GPU's full thread occupancy. */
    out->global = (size_t)units * 2048;

    cl_int err = CL_SUCCESS;
    cl_program prog = clCreateProgramWithSource(ctx, 1, &PROBE_SRC, NULL, &err);
    if (err != CL_SUCCESS)
        return fail(why, why_size, -1, "clCreateProgramWithSource: %d", (int)err);
    char opts[128];
    snprintf(opts, sizeof opts, "-DVEC=%d -DNACC=%d%s", out->vec, out->accs, half ? " -DPROBE_HALF" : "");
    err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[2048] = "";
        clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        log[sizeof log - 1] = '\0';
        for (char *p = log; *p; ++p)
            if (*p == '\n')
                *p = ' ';
        clReleaseProgram(prog);
        return fail(why, why_size, -1, "probe build failed (%d): %.400s", (int)err, log);
    }
    cl_kernel k = clCreateKernel(prog, "fma_peak", &err);
    cl_mem buf = err == CL_SUCCESS ? clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, out->global * sizeof(float), NULL, &err)
                                   : NULL;
    float *host = malloc(out->global * sizeof(float));
    int rc = 0;
    if (err != CL_SUCCESS || !host) {
        rc = fail(why, why_size, -1, "setting up the probe: %d", (int)err);
        goto done;
    }
    clSetKernelArg(k, 0, sizeof buf, &buf);
    clSetKernelArg(k, 2, sizeof MUL, &MUL);
    clSetKernelArg(k, 3, sizeof ADD, &ADD);

    /* Calibration: after a first (warm-up) run, double the loop count until a run takes over
       30 ms, then scale it to about 100 ms. */
    int iters = 16;
    double ms = run_once(queue, k, out->global, iters);
    while (ms >= 0.0) {
        ms = run_once(queue, k, out->global, iters);
        if (ms < 0.0 || ms >= 30.0 || iters >= (1 << 29))
            break;
        iters *= 2;
    }
    if (ms < 0.0) {
        rc = fail(why, why_size, -1, "an OpenCL error while running the probe");
        goto done;
    }
    if (ms > 0.0) {
        const double scaled = iters * (100.0 / ms);
        iters = scaled < 1.0 ? 1 : scaled > (double)(1 << 30) ? (1 << 30) : (int)scaled;
    }
    double t[TIMED_RUNS];
    for (int r = -1, rescaled = 0; r < TIMED_RUNS && rc == 0; ++r) { /* r = -1: warm-up at the final count */
        const double m = run_once(queue, k, out->global, iters);
        if (m < 0.0)
            rc = fail(why, why_size, -1, "an OpenCL error while running the probe");
        else if (r >= 0)
            t[r] = m;
        else if (m > 0.0 && m < 50.0 && !rescaled && iters < (1 << 29)) {
            /* the calibration ran slower than the warm machine does (thread pools starting up) */
            const double scaled = iters * (100.0 / m);
            iters = scaled > (double)(1 << 30) ? (1 << 30) : (int)scaled;
            rescaled = 1, r = -2; /* warm up again at the new count */
        }
    }
    if (rc)
        goto done;
    out->iters = iters;
    out->ms = bench_median(t, TIMED_RUNS);
    const double flops = 2.0 * (double)out->global * (double)iters * FMA_PER_TRIP * out->accs * out->vec;
    out->gflops = flops / (out->ms * 1e6);

    if (clEnqueueReadBuffer(queue, buf, CL_TRUE, 0, out->global * sizeof(float), host, 0, NULL, NULL) != CL_SUCCESS) {
        rc = fail(why, why_size, -1, "reading the probe's output");
        goto done;
    }
    const double dev_rel = check_output(host, out->global, out->vec, out->accs, iters);
    const double bound = half ? 0.3 : 1e-3;
    if (dev_rel < 0.0 || dev_rel > bound)
        rc = fail(why, why_size, -1, "probe output fails the host check (%s; relative deviation %.3g, bound %g)",
                  dev_rel < 0.0 ? "not finite" : "wrong value", dev_rel, bound);
done:
    free(host);
    if (buf)
        clReleaseMemObject(buf);
    if (k)
        clReleaseKernel(k);
    clReleaseProgram(prog);
    return rc;
}

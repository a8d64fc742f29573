/* Host side of cl/attention.cl: picks the kernel style's parameters, builds, sets args, enqueues. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Why the tuning table's values and the rules below (src/tuning.c holds the table). CPU: R query rows per work-item against 16-key float16
 * chunks, an R x 16 register tile of scores.
 *   Dense: R = 4 on every CPU device. 16 rows (the tile that fills AVX-512's 32 registers) ran
 *   within 5% of 4 on AVX-512 (PoCL and Intel, 4K-32K, head_dim 64-256), but spilled with AVX2
 *   code, where a float16 takes two of 16 registers: Intel's runtime made to emit AVX2
 *   (CL_CONFIG_CPU_TARGET_ARCH=core-avx2) ran dense at 8K in 324 ms with 16 rows and 212 ms with
 *   4. Local size 4 at least, growing with the rows (dense_cpu_local_size).
 *   Sparse: a work-item re-reads each kept block's K and V for its own rows, so more rows per
 *   work-item pay: the table (src/tuning.c) gives R = 16 where the device reports 16-float native
 *   vectors (AVX-512: 397 against 435-478 ms for R = 4 at 16K, density 0.5, PoCL; Intel alike)
 *   and 4 otherwise (with AVX2 code R = 4 ran 630 ms, 16 rows 702 and 8 rows 998). A work-group
 *   is one query block (local size block_q / R), whose work-items read the same blocks. Caveat:
 *   Intel's runtime made to emit AVX2 on an AVX-512 host still reports 16 floats, so only a real
 *   AVX2 host takes R = 4 there.
 *   Above head_dim 128 sparse takes R = 4 as well: on Gemma 3's head_dim-256 tensors (8K, random
 *   masks of density 0.3 and 0.6, PoCL, AVX-512) attend / (dense x density) was 1.27-1.55 with
 *   R = 16, 1.27-1.32 with 8 and 1.14-1.17 with 4, before sparse attention read its kept blocks
 *   in cache tiles (cl/attention.cl); with the tiles 16 and 4 rows ran within noise (1.06-1.16).
 * GPU: one query row per work-item, 64 rows per group, with the key tile halved above head_dim
 * 128 so the K and V tiles fit in 32 KiB of local memory. bench/RESULTS.md has the runs.
 */
enum { SPARSE_WIDE_ROWS_MAX_DIM = 128 }; /* sparse CPU work-items take the table's rows up to this head_dim */
enum { DENSE_ROWS = 4, SPARSE_NARROW_ROWS = 4, DENSE_MIN_LOCAL = 4 };
enum { GPU_GROUP = 64, GPU_TILE = 32 };

/*
 * Dense CPU work-groups grow with the number of rows: the work-items of a group walk the keys
 * together, one key tile per barrier, so each tile read from memory serves all the group's rows.
 * At 32K (2 heads, head_dim 128, 16 rows per work-item) local 4 fell to 0.72 of the 8K rate on
 * PoCL and local 32 kept it (3853 -> 3193 ms; Intel runtime 3623 -> 3026 ms); with 4 rows, local
 * 128 runs as fast (2902 ms; bench/RESULTS.md). Fewer, larger
 * groups balance worse across the cores (causal rows differ in cost; local 16 at 4K was 14%
 * slower than 4), so the size is the largest power of two that keeps a group within 512 rows
 * and leaves at least 32 groups per compute unit, and never below the table's.
 */
enum { DENSE_GROUPS_PER_UNIT = 32, DENSE_MAX_GROUP_ROWS = 512 };
static int dense_cpu_local_size(const clsa_context *ctx, const clsa_shape *shape, int rows_per_item, int floor_size)
{
    const int64_t row_groups = shape->batch * shape->q_heads * ((shape->q_len + rows_per_item - 1) / rows_per_item);
    const int64_t units = ctx->caps.compute_units > 0 ? ctx->caps.compute_units : 1;
    int size = floor_size;
    while ((size * 2) * rows_per_item <= DENSE_MAX_GROUP_ROWS && row_groups / (size * 2) >= DENSE_GROUPS_PER_UNIT * units &&
           (size_t)size * 2 <= ctx->caps.max_work_group_size)
        size *= 2;
    return size;
}

clsa_status clsa_attention_init(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                                clsa_attention_stage *out)
{
    /* The context's tuning (src/tuning.c) with what it leaves on auto resolved for this shape. */
    const clsa_tuning *tuned = &ctx->tuning;
    struct {
        int cpu_rows_per_item, cpu_local_size, gpu_group_size, gpu_key_tile, cpu_sparse_tiles;
    } t = {sparsity ? tuned->cpu_sparse_rows : tuned->cpu_dense_rows, tuned->cpu_local,
           tuned->gpu_group ? tuned->gpu_group : GPU_GROUP, tuned->gpu_tile ? tuned->gpu_tile : GPU_TILE,
           tuned->cpu_sparse_tiles};
    if (t.cpu_rows_per_item == 0)
        t.cpu_rows_per_item = sparsity ? SPARSE_NARROW_ROWS : DENSE_ROWS;
    if (sparsity && shape->head_dim > SPARSE_WIDE_ROWS_MAX_DIM && t.cpu_rows_per_item > SPARSE_NARROW_ROWS)
        t.cpu_rows_per_item = SPARSE_NARROW_ROWS;
    /* A sparse kernel's work-item (CPU) or work-group (GPU) must lie in one query block, and a
       GPU key tile in one key block: both block sizes are powers of two >= 16. */
    clsa_defines d = {0};
    clsa_define(&d, "SPARSE", sparsity ? 1 : 0);
    out->sparse = sparsity != NULL;
    if (sparsity) {
        clsa_define(&d, "BLOCK_Q", sparsity->block_q);
        clsa_define(&d, "BLOCK_K", sparsity->block_k);
        if (t.cpu_rows_per_item > sparsity->block_q)
            t.cpu_rows_per_item = sparsity->block_q;
        if (t.gpu_group_size > sparsity->block_q)
            t.gpu_group_size = sparsity->block_q;
        if (t.gpu_key_tile > sparsity->block_k)
            t.gpu_key_tile = sparsity->block_k;
    }
    out->style = clsa_tuned_variant(ctx, tuned->attention);
    if (out->style == CLSA_STYLE_CPU) {
        out->rows_per_group = (size_t)t.cpu_rows_per_item;
        if (t.cpu_local_size != 0)
            out->local_size = (size_t)t.cpu_local_size;
        else if (sparsity) /* one query block per work-group */
            out->local_size = (size_t)(sparsity->block_q / t.cpu_rows_per_item);
        else
            out->local_size = (size_t)dense_cpu_local_size(ctx, shape, t.cpu_rows_per_item, DENSE_MIN_LOCAL);
        /* Dense key tiles of about 512 KiB of K and V (f32), a size that stays in the L2 cache of
           current CPUs (1-2 MiB per core) next to the rows' own state. */
        const int64_t padded_dim = (shape->head_dim + 15) / 16 * 16;
        const int key_tile = (int)(65536 / padded_dim) / 16 * 16 > 16 ? (int)(65536 / padded_dim) / 16 * 16 : 16;
        /* Sparse cache tiles (cl/attention.cl): the table (src/tuning.c) turns them off on
           Intel's runtime, where its barriers made them 3-4x slower; elsewhere they are on. */
        if (t.cpu_sparse_tiles < 0)
            t.cpu_sparse_tiles = 1;
        clsa_define(&d, "KERNEL_STYLE_CPU", 1);
        clsa_define(&d, "ROWS_PER_ITEM", t.cpu_rows_per_item);
        clsa_define(&d, "KEY_TILE", key_tile);
        clsa_define(&d, "SPARSE_TILES", t.cpu_sparse_tiles);
    } else {
        const int key_tile = shape->head_dim > 128 ? 16 : t.gpu_key_tile;
        size_t local_bytes = 2 * (size_t)key_tile * (size_t)shape->head_dim * sizeof(float);
        if (local_bytes > ctx->caps.local_mem_size || (size_t)t.gpu_group_size > ctx->caps.max_work_group_size)
            return clsa_fail(ctx, CLSA_ERR_DEVICE_UNSUPPORTED,
                             "GPU-style attention at head_dim %lld needs %zu bytes of local memory and "
                             "work-groups of %d; device \"%s\" has %llu bytes and %zu",
                             (long long)shape->head_dim, local_bytes, t.gpu_group_size, ctx->caps.name,
                             (unsigned long long)ctx->caps.local_mem_size, ctx->caps.max_work_group_size);
        out->rows_per_group = (size_t)t.gpu_group_size;
        out->local_size = (size_t)t.gpu_group_size;
        clsa_define(&d, "KERNEL_STYLE_GPU", 1);
        clsa_define(&d, "GROUP_SIZE", t.gpu_group_size);
        clsa_define(&d, "KEY_TILE", key_tile);
    }
    /* Half-precision Q.K products (a plan option, clsa_shape.qk_half) need cl_khr_fp16. */
    const unsigned features = shape->qk_half ? CLSA_FEATURE_FP16 : 0;
    clsa_define(&d, "QK_HALF", shape->qk_half ? 1 : 0);
    /* Value pruning and log quantization (clsa_shape.value_prune, value_bits): the two-pass form. */
    clsa_define(&d, "VALUE_PRUNE", shape->value_prune > 0.0f ? 1 : 0);
    clsa_define(&d, "VALUE_BITS", shape->value_bits);
    const char *const names[1] = {"attention"};
    cl_kernel *const kernels[1] = {&out->kernel};
    clsa_status st = clsa_stage_kernels(ctx, "attention", clsa_cl_attention, shape, features, &d, names, kernels, 1);
    return st ? st : clsa_kernel_fits(ctx, out->kernel, "attention", out->local_size);
}

clsa_status clsa_attention_enqueue(const clsa_attention_stage *stage, const clsa_plan *plan,
                                   cl_command_queue queue, cl_mem q, cl_mem o, cl_mem workspace,
                                   const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                                   cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    cl_float scale_log2e = clsa_scale_log2e(s);
    cl_int q_heads = (cl_int)s->q_heads, group = (cl_int)(s->q_heads / s->kv_heads);
    cl_int q_len = (cl_int)s->q_len, kv_len = (cl_int)s->kv_len;
    cl_int padded = (cl_int)plan->kv.kv_len_padded, causal = s->causal ? 1 : 0;
    cl_long kt_at = (cl_long)(plan->kv.kt_offset / 4), v_at = (cl_long)(plan->kv.v_offset / 4);
    clsa_args a = {stage->kernel, 0, CL_SUCCESS};
    clsa_arg_tensor(&a, q, &plan->q);
    CLSA_ARG(&a, workspace);
    CLSA_ARG(&a, kt_at);
    CLSA_ARG(&a, v_at);
    clsa_arg_tensor(&a, o, &plan->o);
    CLSA_ARG(&a, q_heads);
    CLSA_ARG(&a, group);
    CLSA_ARG(&a, q_len);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, padded);
    CLSA_ARG(&a, causal);
    CLSA_ARG(&a, scale_log2e);
    if (stage->sparse) {
        cl_int nkb = (cl_int)plan->mask.num_k_blocks;
        clsa_arg_mask(&a, mask);
        CLSA_ARG(&a, nkb);
    }
    if (s->value_prune > 0.0f) {
        /* The rule's constants (clsa.h, clsa_shape.value_bits), computed once in double. */
        const double min_exp = log2((double)s->value_prune);
        const double levels = s->value_bits ? (double)((1 << s->value_bits) - 1) : 1.0;
        cl_float t = s->value_prune, min_exp_f = (cl_float)min_exp, base = (cl_float)(-min_exp / levels);
        cl_float max_k = (cl_float)(levels - 1.0);
        cl_long counts_at = (cl_long)(plan->value_counts_at / 4);
        CLSA_ARG(&a, t);
        CLSA_ARG(&a, min_exp_f);
        CLSA_ARG(&a, base);
        CLSA_ARG(&a, max_k);
        CLSA_ARG(&a, workspace);
        CLSA_ARG(&a, counts_at);
    }
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting attention argument %u", a.index - 1);
    size_t row_groups = (size_t)((s->q_len + (int64_t)stage->rows_per_group - 1) / (int64_t)stage->rows_per_group);
    size_t items = stage->style == CLSA_STYLE_CPU ? row_groups : row_groups * stage->rows_per_group;
    size_t global[2] = {(size_t)clsa_round_up((int64_t)items, (int64_t)stage->local_size),
                        (size_t)(s->batch * s->q_heads)};
    size_t local[2] = {stage->local_size, 1};
    return clsa_enqueue(plan->ctx, queue, stage->kernel, "attention", global, local, num_wait, wait_list, out);
}

void clsa_attention_release(clsa_attention_stage *stage)
{
    if (stage->kernel)
        clReleaseKernel(stage->kernel);
    stage->kernel = NULL;
}

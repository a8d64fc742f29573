/* Internal declarations shared by the host files of clsa. Not installed. */
#ifndef CLSA_INTERNAL_H
#define CLSA_INTERNAL_H

#include "checked.h"
#include "clsa/clsa.h"

#include <stdarg.h>
#include <stdbool.h>

#define CLSA_ERROR_MAX 16384

/* Device facts read once per context. */
/* The device's capabilities: the public clsa_device_info, read once by context.c. */
typedef clsa_device_info clsa_device_caps;

/* Tuning parameters, resolved once per context (tuning.c). 0 is "auto" for sizes and variants,
   -1 for on/off keys; the stages resolve what is left on auto from the shape and capabilities. */
typedef struct clsa_tuning {
    int attention, estimate, quantize; /* kernel variants: a clsa_kernel_style, AUTO = the context's */
    int cpu_dense_rows, cpu_sparse_rows, cpu_local, cpu_sparse_tiles;
    int gpu_group, gpu_tile; /* GPU attention */
    int mean_group;          /* GPU quantizer's token-mean reduction */
    int int_dot, subgroups;  /* GPU estimator's integer dot products; sub-group reductions */
} clsa_tuning;

/* A program built for one (source, options) pair, kept by the context so plans share it. */
typedef struct clsa_program_entry {
    const char *source_name;
    char *options;
    cl_program program;
    struct clsa_program_entry *next;
} clsa_program_entry;

struct clsa_context {
    cl_context cl_ctx;
    cl_device_id device;
    cl_platform_id platform;
    clsa_device_caps caps;
    char *extensions; /* CL_DEVICE_EXTENSIONS, owned; never NULL after creation */
    clsa_kernel_style style;
    char *cache_dir; /* NULL when the binary cache is off */
    clsa_program_entry *programs;
    clsa_tuning tuning;
    char tuning_source[2048]; /* which rows and overrides made it */
    char tuning_text[3072];   /* clsa_context_tuning() */
    char last_error[CLSA_ERROR_MAX];
};

/* Sets ctx->last_error from a printf format and returns status, so callers can `return fail(...)`. */
clsa_status clsa_fail(clsa_context *ctx, clsa_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void clsa_clear_error(clsa_context *ctx);

/* Kernel sources embedded at build time (generated from cl/ by cl/embed_cl.py). */
extern const char clsa_cl_common[];
extern const char clsa_cl_kv_layout[];
extern const char clsa_cl_attention[];
extern const char clsa_cl_quantize[];
extern const char clsa_cl_estimate[];
extern const char clsa_cl_select_dense[];
extern const char clsa_cl_select_streaming[];
extern const char clsa_cl_select_sliding[];
extern const char clsa_cl_select_pooled[];
extern const char clsa_cl_select_xattn[];

/*
 * Returns a built program for the common header + source under options, from the context's
 * in-memory list, the binary cache or a fresh build, in that order. The context owns it.
 */
clsa_status clsa_program_get(clsa_context *ctx, const char *source_name, const char *source,
                             const char *options, cl_program *out);
void clsa_programs_release(clsa_context *ctx);

/* ---- Tuning (tuning.c) ---- */
void clsa_tuning_defaults(clsa_tuning *t);
/* Applies a "key=value,..." list (CLSA_TUNE's grammar) to t; nothing changes when it fails.
   `where` names the list in the message. */
clsa_status clsa_tuning_apply(clsa_context *ctx, clsa_tuning *t, const char *list, const char *where);
/* Resolves ctx->tuning from the built-in table, the tuning file, CLSA_TUNE and the options. */
clsa_status clsa_tuning_resolve(clsa_context *ctx, const clsa_context_options *options);
/* "key=value,..." of every key, auto where unset; returns the length snprintf would. */
int clsa_tuning_format(const clsa_tuning *t, char *buf, size_t size);
/* Whether an on/off key (-1: auto) turns a feature on: forced on, or auto where the device has it
   (forcing a missing feature already failed context creation). */
bool clsa_tuned_on(int flag, bool present);
/* A tuned variant (0: auto) as the style it runs: auto is the context's style. */
clsa_kernel_style clsa_tuned_variant(const clsa_context *ctx, int variant);
/* "avx512", "avx2" or "other" for a CPU device, by its native float vector width; "" otherwise. */
const char *clsa_device_isa(const clsa_device_info *caps);

/* ---- Launching (launch.c), below every stage ---- */
/* Device features a kernel variant uses; clsa_build_options turns each into -DUSE_...=0|1 and
   refuses (CLSA_ERR_DEVICE_UNSUPPORTED) one the device lacks. */
enum { CLSA_FEATURE_FP16 = 1, CLSA_FEATURE_SUBGROUPS = 2, CLSA_FEATURE_INT_DOT = 4 };
/* A stage's own compile-time parameters (from its shape, settings and tuning), as CLBlast passes
   its kernel parameters: name = value pairs that clsa_build_options writes as -Dname=value. */
#define CLSA_DEFINES_MAX 16
typedef struct clsa_defines {
    int count;
    struct { const char *name; int value; } items[CLSA_DEFINES_MAX];
} clsa_defines;
void clsa_define(clsa_defines *d, const char *name, int value);
/* The build options of one stage, the one place they are written: the shared ones (dtype,
   head_dim, quantization group), the features, then the stage's parameters (NULL: none). */
clsa_status clsa_build_options(clsa_context *ctx, char *buf, size_t size, const clsa_shape *shape, unsigned features,
                               const clsa_defines *defines);
/* Builds (or reuses) the program of one stage for a shape and creates its `count` kernels by name. */
clsa_status clsa_stage_kernels(clsa_context *ctx, const char *source_name, const char *source, const clsa_shape *shape,
                               unsigned features, const clsa_defines *defines, const char *const *names,
                               cl_kernel *const *kernels, int count);
/* Private memory one work-group may hold (bytes) before a variant is refused. */
#define CLSA_PRIVATE_BUDGET (8 << 20)
/* Rejects, before any launch, a kernel that cannot run in work-groups of local_items on this device
   (CL_KERNEL_WORK_GROUP_SIZE, local and private memory): CLSA_ERR_DEVICE_UNSUPPORTED naming it. */
clsa_status clsa_kernel_fits(clsa_context *ctx, cl_kernel kernel, const char *name, size_t local_items);

/* Binary cache (cache.c). open turns the cache on for ctx in dir, making dir (0700) when it is
   missing, if the user owns it and group and others cannot write it; otherwise the cache stays
   off, with the reason on stderr and in the last error. It fails only when out of memory. */
clsa_status clsa_cache_open(clsa_context *ctx, const char *dir);
/* load returns a built program or NULL (any failure means "not cached"). */
cl_program clsa_cache_load(clsa_context *ctx, const char *source, const char *options);
void clsa_cache_store(clsa_context *ctx, cl_program program, const char *source, const char *options);
/* The path of the entry for (source, options); used by tests to corrupt it. Caller frees. */
char *clsa_cache_entry_path(clsa_context *ctx, const char *source, const char *options);

/* A tensor's resolved strides (never zero) and the elements its buffer must hold. */
typedef struct clsa_tensor_layout {
    int64_t batch, head, token;
    int64_t heads, len;
    int64_t elements; /* highest element offset + 1 */
} clsa_tensor_layout;

/* Validates a shape for a device and fills the resolved layouts. Sets the last error. */
clsa_status clsa_shape_validate(clsa_context *ctx, const clsa_shape *shape,
                                clsa_tensor_layout *q, clsa_tensor_layout *k,
                                clsa_tensor_layout *v, clsa_tensor_layout *o);

/* Checks that a buffer is non-NULL and holds at least `bytes`, else returns too_small. */
clsa_status clsa_check_buffer(clsa_context *ctx, cl_mem buffer, size_t bytes, const char *name,
                              clsa_status too_small);
clsa_status clsa_check_wait_list(clsa_context *ctx, cl_uint num_wait, const cl_event *wait_list);

/* Kernel-argument helper: sets args in order, stops at the first failure. */
typedef struct clsa_args {
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
} clsa_args;
void clsa_arg(clsa_args *a, size_t size, const void *value);
#define CLSA_ARG(a, v) clsa_arg((a), sizeof(v), &(v))
/* A tensor's buffer followed by its batch, head and token strides (as long), the order every
   kernel takes them in. */
void clsa_arg_tensor(clsa_args *a, cl_mem buffer, const clsa_tensor_layout *t);
/* The softmax scale in log2 units: kernels score with exp2, so they take scale * log2(e). */
cl_float clsa_scale_log2e(const clsa_shape *shape);
/* A block mask's counts, counts offset, indices and indices offset (offsets in int32 elements). */
void clsa_arg_mask(clsa_args *a, const clsa_block_mask *mask);

/* Channels that share one int4 scale (passed to the kernels as -DQUANT_GROUP; even, so the two
   channels of a code byte share a scale). */
#define CLSA_QUANT_GROUP 16
/* Key-side padding of the workspace layouts: a multiple of the largest key block. */
#define CLSA_KEY_PAD 128
/* Channel padding of the prepared V rows: the CPU kernels read 16 channels at a time. */
#define CLSA_CHANNEL_PAD 16

int64_t clsa_round_up(int64_t x, int64_t m);

/* The K/V layout stage (kv_layout.c): K^T and V as padded f32 in the workspace. */
typedef struct clsa_kv_layout {
    cl_kernel kernel;
    int64_t kv_len_padded, head_dim_padded;
    size_t kt_offset, v_offset, bytes; /* in the workspace */
} clsa_kv_layout;
/* K^T and V sit at the start of the workspace. _size sets the sizes and offsets only; _init
   builds the kernel. */
clsa_status clsa_kv_layout_size(clsa_context *ctx, const clsa_shape *shape, clsa_kv_layout *out);
clsa_status clsa_kv_layout_init(clsa_context *ctx, const clsa_shape *shape, clsa_kv_layout *out);
/* v may be NULL to lay out K alone (the exact-score estimator needs K^T before V is given). */
clsa_status clsa_kv_layout_enqueue(const clsa_kv_layout *layout, const clsa_plan *plan,
                                   cl_command_queue queue, cl_mem k, cl_mem v, cl_mem workspace,
                                   cl_uint num_wait, const cl_event *wait_list, cl_event *out);
void clsa_kv_layout_release(clsa_kv_layout *layout);

/* Local size of the kernels that keep arrays in private memory: PoCL places a work-group's
   private arrays on one thread's stack, and with a NULL local size it may choose work-groups
   large enough to overflow it (seen with row_threshold's 8 KiB per work-item). */
#define CLSA_PRIVATE_LOCAL 4
/* Enqueues one kernel (global padded up to a multiple of local); on failure sets the last error
   naming the kernel. */
clsa_status clsa_enqueue(clsa_context *ctx, cl_command_queue queue, cl_kernel kernel, const char *name,
                         const size_t global[2], const size_t *local, cl_uint num_wait,
                         const cl_event *wait_list, cl_event *out);

/* The attention stage (attention.c). sparsity is NULL for a dense plan. */
typedef struct clsa_attention_stage {
    cl_kernel kernel;
    clsa_kernel_style style;
    size_t local_size, rows_per_group;
    bool sparse;
} clsa_attention_stage;
clsa_status clsa_attention_init(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                                clsa_attention_stage *out);
/* mask is NULL for a dense plan. */
clsa_status clsa_attention_enqueue(const clsa_attention_stage *stage, const clsa_plan *plan,
                                   cl_command_queue queue, cl_mem q, cl_mem o, cl_mem workspace,
                                   const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                                   cl_event *out);
void clsa_attention_release(clsa_attention_stage *stage);

/* The quantization stage (quantize.c). */
typedef struct clsa_quantize_stage {
    cl_kernel token_mean, quantize_q, quantize_k, pair_key_codes;
    size_t mean_group; /* the GPU variant's token-mean work-group; 0 for the CPU variant */
} clsa_quantize_stage;
clsa_status clsa_quantize_init(clsa_context *ctx, const clsa_shape *shape, clsa_quantize_stage *out);
clsa_status clsa_quantize_enqueue(const clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k,
                                  cl_mem workspace, cl_uint num_wait, const cl_event *wait_list, cl_event *out);
void clsa_quantize_release(clsa_quantize_stage *stage);

/* The estimation stage (estimate.c). */
typedef struct clsa_estimate_stage {
    cl_kernel row_threshold;
    cl_kernel estimate_mask;                                     /* the CPU variant, and the oracle */
    cl_kernel reference_thresholds, estimate_blocks, compact_mask; /* the GPU variant */
    bool gpu;
} clsa_estimate_stage;
clsa_status clsa_estimate_init(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                               clsa_estimate_stage *out);
clsa_status clsa_estimate_enqueue(const clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k,
                                  cl_mem workspace, const clsa_block_mask *mask, cl_uint num_wait,
                                  const cl_event *wait_list, cl_event *out);
void clsa_estimate_release(clsa_estimate_stage *stage);

/* ---- Block selectors (select.c, and one select_<name>.c + cl/select_<name>.cl per selector) ----
 * Each method that writes a block mask is a clsa_selector: a small table of operations, as clFFT's
 * actions are. plan.c resolves every query head's settings (plan->heads), then, for each selector
 * of the registry (select.c) that some head uses, lays out its workspace, builds it, and at run
 * time enqueues it; it never looks inside one. A selector writes the mask rows of its own heads
 * only (the others' rows are left alone), so selectors may run in any order. */
#define CLSA_METHOD_COUNT 10
#define CLSA_SELECTOR_KERNELS 4
#define CLSA_SELECTOR_REGIONS 4
typedef struct clsa_selector_state {
    cl_kernel kernels[CLSA_SELECTOR_KERNELS];
    size_t regions[CLSA_SELECTOR_REGIONS]; /* workspace offsets (bytes) of its own buffers */
} clsa_selector_state;
/* The buffers of one selection call, after every check. */
typedef struct clsa_select_call {
    cl_command_queue queue;
    cl_mem q, k, workspace;
    const clsa_block_mask *mask;
} clsa_select_call;
typedef struct clsa_selector {
    clsa_method method;
    /* Places the selector's own workspace buffers from *offset (clsa_workspace_region); NULL when
       it has none. False on overflow. */
    bool (*lay_out)(clsa_plan *plan, clsa_selector_state *state, int64_t *offset);
    /* Builds its kernels and any buffers of its own. */
    clsa_status (*build)(clsa_plan *plan, clsa_selector_state *state);
    /* Work that callers may run on its own before selection (SALE: clsa_quantize); NULL: none. */
    clsa_status (*prepare)(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                           cl_uint num_wait, const cl_event *wait_list, cl_event *out);
    /* Writes the mask rows of its heads into call->mask. */
    clsa_status (*select)(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                          cl_uint num_wait, const cl_event *wait_list, cl_event *out);
    void (*release)(clsa_plan *plan, clsa_selector_state *state);
} clsa_selector;
/* The registry, in the order selectors run; NULL-terminated. */
extern const clsa_selector *const clsa_selectors[];
/* Checks one head's (or a whole plan's) selector settings; sets the last error, starting with who. */
clsa_status clsa_selector_validate(clsa_context *ctx, const clsa_sparsity *sp, const char *who);
/* Places a region of n1 * n2 * n3 * elem bytes at *offset (256-byte aligned); false on overflow. */
bool clsa_workspace_region(size_t *at, int64_t *offset, int64_t n1, int64_t n2, int64_t n3, int64_t elem);
/* The per-head settings table on the device (select.c; cl/common.cl reads it): CLSA_HEAD_SETTINGS
   ints per query head, uploaded once per plan for the selectors that read it. */
enum {
    CLSA_HS_METHOD, CLSA_HS_SINK, CLSA_HS_LOCAL, CLSA_HS_FORCED, CLSA_HS_WINDOW, CLSA_HS_SYMMETRIC, CLSA_HS_STRIDE,
    CLSA_HS_FRACTION, /* the f32 bits of topk, cdf_gamma or xattn_threshold, as the method reads */
    CLSA_HEAD_SETTINGS
};
clsa_status clsa_head_settings_upload(clsa_plan *plan);
/* Shared by the selectors whose kernels write one mask row per work-item (cl/common.cl,
   SELECT_ARGS): builds `count` kernels of one source with the block sizes and the methods' ids
   defined, and enqueues one of them over (query blocks, batch x query heads). */
clsa_status clsa_select_build(clsa_plan *plan, clsa_selector_state *state, const char *source_name,
                              const char *source, const char *const *names, int count);
clsa_status clsa_select_rows(clsa_plan *plan, cl_kernel kernel, const char *name, const clsa_select_call *call,
                             const cl_long *regions, int region_count, cl_uint num_wait, const cl_event *wait_list,
                             cl_event *out);
void clsa_select_release(clsa_plan *plan, clsa_selector_state *state);
clsa_status clsa_select_rows_enqueue(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                                     cl_uint num_wait, const cl_event *wait_list, cl_event *out);

/* Block masks on the host (mask.c). */
clsa_status clsa_mask_check_host(clsa_context *ctx, const int32_t *counts, const int32_t *indices, int64_t rows,
                                 int64_t num_k_blocks);
/* Causally valid key blocks of query block qb (every block when not causal). */
int64_t clsa_valid_key_blocks(const clsa_shape *shape, const clsa_mask_geometry *mask, int64_t qb);

struct clsa_plan {
    clsa_context *ctx;
    clsa_shape shape;
    clsa_sparsity sparsity; /* the caller's, without its arrays (tau_per_head, per_head) */
    clsa_sparsity sale;     /* SALE's estimator settings: the plan's, method SALE or SALE_EXACT */
    clsa_tensor_layout q, k, v, o;
    clsa_kv_layout kv;
    clsa_attention_stage attention;
    clsa_quantize_stage quantize; /* SALE plans */
    clsa_estimate_stage estimate; /* SALE and SALE_EXACT plans */
    clsa_quant_layout quant;      /* SALE and SALE_EXACT plans */
    clsa_mask_geometry mask;      /* sparse plans */
    clsa_sparsity *heads;         /* q_heads resolved settings, one method each (selector plans) */
    bool uses[CLSA_METHOD_COUNT]; /* the methods some head uses */
    clsa_selector_state selector[CLSA_METHOD_COUNT];
    cl_mem head_settings;         /* int [q_heads][CLSA_HEAD_SETTINGS], or NULL */
    size_t value_counts_at;       /* value pruning: uint [B*Hq*q_len][2], pruned and seen per row */
    size_t mask_counts_at, mask_indices_at; /* the workspace's own mask, bytes */
    cl_mem head_log2_tau;         /* f32 [q_heads]: log2(tau), -inf for a dense head */
    size_t workspace_bytes;
    cl_mem own_workspace; /* allocated on the first call with a NULL workspace */
};

/* Validates a shape and sparsity settings (NULL: dense) and fills plan's shape, settings, tensor
   layouts and workspace layout, building nothing and allocating nothing: clsa_plan_create's
   checks, callable alone (the validation fuzz target does). Sets the last error. */
clsa_status clsa_plan_validate(clsa_context *ctx, const clsa_shape *shape, const clsa_sparsity *sparsity,
                               clsa_plan *plan);


#endif

/*
 * clsa: sparse attention for long-context transformer prefill on any OpenCL device.
 *
 * This header is the whole public API and its documentation.
 *
 * Overview
 * --------
 *   1. Make a context from your own cl_context and cl_device_id (clsa_context_create), or let
 *      clsa pick a device (clsa_context_create_default).
 *   2. Describe the tensors with a clsa_shape and, for sparse attention, a clsa_sparsity.
 *   3. Make a plan (clsa_plan_create). This compiles every kernel the plan needs, so the first
 *      enqueue is not slow, and fixes the workspace size (clsa_plan_workspace_size).
 *   4. Enqueue (clsa_attention) on your queue with your cl_mem buffers, or call
 *      clsa_attention_host with host arrays.
 *
 * Tensors
 * -------
 *   Q is [B, Hq, Lq, D]; K and V are [B, Hkv, Lk, D]; O is [B, Hq, Lq, D]. Hq must be a multiple
 *   of Hkv (GQA; Hkv = 1 is MQA). The innermost (channel) dimension is always contiguous; the
 *   batch, head and token element strides of each tensor are free (clsa_tensor_strides), which
 *   covers the [B, L, H, D] layout most engines use. Storage is f32, f16 or bf16; all arithmetic
 *   is f32. Causal queries align to the END of the keys (FlashAttention >= 2.1): query row i sees
 *   keys j <= i + Lk - Lq. When Lq > Lk the first rows see no key; a row with no visible key gives
 *   an output row of zeros, never NaN.
 *
 * Errors
 * ------
 *   Every function returns a clsa_status. OpenCL errors pass through unchanged as their
 *   (negative) CL_* values; clsa's own codes sit at -2000 and below. clsa_status_string() names
 *   every code, and clsa_context_last_error() holds a sentence with the details (the failing
 *   argument, or for a failed kernel build the device, the build options and the build log).
 *   Every argument is validated before anything is enqueued: a call that fails validation
 *   enqueues nothing and writes nothing. A failed context creation has no context to hold its
 *   message, so it also prints that one line to stderr.
 *
 * Threads
 * -------
 *   clsa has no global mutable state. A context and the plans made from it may be used by one
 *   thread at a time (the context holds the last-error message and a cache of built programs);
 *   use one context per thread, or your own lock around each context, to use clsa from several
 *   threads. Different contexts may share one cl_context and cl_device_id.
 *
 * Environment
 * -----------
 *   CLSA_DEVICE        device for clsa_context_create_default, in clsa_select_device's grammar:
 *                      an index over all devices, "PLATFORM:DEVICE" (each an index or a
 *                      case-insensitive substring, e.g. "pocl:0", "intel:0"), or a device-name
 *                      substring that must match one device.
 *   CLSA_KERNEL_STYLE  "cpu" or "gpu": overrides the kernel style picked from the device type
 *                      (an explicit clsa_context_options.kernel_style wins over it).
 *   CLSA_CACHE_DIR     directory for the on-disk program binary cache (off when unset); see
 *                      clsa_context_options.cache_dir for what the cache trusts.
 *   CLSA_TUNE_FILE     tuning file used when clsa_context_options.tuning_file is NULL ("Tuning").
 *   CLSA_TUNE          tuning parameters for experiments, "key=value,..." ("Tuning"); they win
 *                      over the table and the file, and clsa_context_options.tuning wins over them.
 *
 * Tuning
 * ------
 *   Each kernel stage has variants (the same cl/ source built with other -D parameters) and sizes.
 *   A context resolves them once from, in increasing precedence: the built-in table (src/tuning.c;
 *   rows keyed by vendor, implementation, device name, type and, for CPUs, instruction set), the
 *   first matching row of the tuning file, CLSA_TUNE, and clsa_context_options.tuning. Each sets
 *   only the keys it names; clsa_context_tuning() shows the result and where it came from.
 *   The keys ("auto" is every key's default and lets the stage decide from shape and device):
 *     attention, estimate, quantize   variant of that stage: cpu | gpu (auto: the kernel style)
 *     cpu_dense_rows, cpu_sparse_rows query rows per work-item of CPU attention: 1-16 (sparse:
 *                                     at most 4 above head_dim 128)
 *     cpu_rows                        sets both
 *     cpu_local                       CPU attention work-group size: 1-256
 *     cpu_sparse_tiles                sparse CPU attention shares kept blocks in cache tiles: 0 | 1
 *     gpu_group                       GPU attention rows (work-items) per work-group: 16-256
 *     gpu_tile                        GPU attention keys per local-memory tile: 16-32
 *     mean_group                      GPU quantizer work-items per token-mean reduction: 16-1024
 *                                     (halved until the device's work-group limit allows it)
 *     int_dot                         GPU estimator with packed 4x8-bit integer dot products: 0 | 1
 *     subgroups                       GPU kernels reduce with sub-group functions: 0 | 1
 *   Sizes are powers of two. A variant or feature the device lacks is never chosen on auto;
 *   forcing one gives CLSA_ERR_DEVICE_UNSUPPORTED (int_dot, subgroups: at context creation;
 *   sizes that exceed the device's work-group size, local or private memory: at plan creation).
 *   Every integer variant of the estimator computes the same exact integer sums and the same f32
 *   operations after them, so their masks are bit-identical.
 *   The tuning file (written by clsa-tune) is text: "#" starts a comment, "[device]" starts a row,
 *   and each other line is "key = value". A row's match.vendor, match.version (a substring of
 *   CL_DEVICE_VERSION, which names the implementation, e.g. "PoCL"), match.name (substrings,
 *   case-insensitive), match.type (cpu, gpu, accelerator or any) and match.isa (avx512, avx2,
 *   other or any) lines select devices (an absent line matches any), its "source" line says where
 *   the values come from, and its other lines are tuning keys. The first matching row applies.
 *   A file that cannot be read, is no regular file (a FIFO is not waited on) or is above 1 MiB, or
 *   that holds a bad line, fails context creation with CLSA_ERR_INVALID_OPTION naming the line.
 */
#ifndef CLSA_CLSA_H
#define CLSA_CLSA_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

/* Marks the public API: the library is built with hidden visibility, so only these are exported. */
#if defined(__GNUC__)
#define CLSA_API __attribute__((visibility("default")))
#else
#define CLSA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Versions                                                                                   */
/* ------------------------------------------------------------------------------------------ */

#define CLSA_VERSION_MAJOR 0
#define CLSA_VERSION_MINOR 1
#define CLSA_VERSION_PATCH 0
/** The version as one number, major * 10000 + minor * 100 + patch. */
#define CLSA_VERSION (CLSA_VERSION_MAJOR * 10000 + CLSA_VERSION_MINOR * 100 + CLSA_VERSION_PATCH)

/** The version of the library linked at run time, as "major.minor.patch". */
CLSA_API const char *clsa_version(void);

/** The version of the library linked at run time, as CLSA_VERSION would give it. */
CLSA_API int clsa_version_number(void);

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

/**
 * Result of every call. CLSA_SUCCESS is 0. Negative values above -2000 are OpenCL error codes
 * passed through unchanged (CL_OUT_OF_RESOURCES, CL_INVALID_MEM_OBJECT, ...).
 */
typedef enum clsa_status {
    CLSA_SUCCESS = 0,
    CLSA_ERR_NULL_ARGUMENT = -2001,        /**< a required pointer or cl_mem is NULL */
    CLSA_ERR_INVALID_DIMENSION = -2002,    /**< a dimension is zero or negative */
    CLSA_ERR_HEAD_RATIO = -2003,           /**< q_heads is not a multiple of kv_heads */
    CLSA_ERR_UNSUPPORTED_HEAD_DIM = -2004, /**< head_dim above 256 (or above what the device can hold) */
    CLSA_ERR_UNKNOWN_DTYPE = -2005,        /**< dtype is not one of clsa_dtype */
    CLSA_ERR_BUFFER_TOO_SMALL = -2006,     /**< a cl_mem is smaller than its tensor needs (CL_MEM_SIZE) */
    CLSA_ERR_SIZE_OVERFLOW = -2007,        /**< a product of sizes overflows 64 bits or the device's limits */
    CLSA_ERR_WORKSPACE_TOO_SMALL = -2008,  /**< the workspace is smaller than clsa_plan_workspace_size() */
    CLSA_ERR_NO_DEVICE = -2009,            /**< no OpenCL platform or device was found */
    CLSA_ERR_BUILD_FAILED = -2010,         /**< a kernel failed to compile; see the last-error message */
    CLSA_ERR_OUT_OF_HOST_MEMORY = -2011,   /**< a host allocation failed */
    CLSA_ERR_INVALID_STRIDE = -2012,       /**< a stride is negative, or makes rows of a tensor overlap */
    CLSA_ERR_INVALID_SCALE = -2013,        /**< the softmax scale is negative, infinite or NaN */
    CLSA_ERR_INVALID_TAU = -2014,          /**< a threshold tau is negative, infinite or NaN */
    CLSA_ERR_INVALID_BLOCK_SIZE = -2015,   /**< a block size is not a power of two in [16, 128] */
    CLSA_ERR_MASK_TOO_SMALL = -2016,       /**< a block-mask buffer is smaller than the plan's mask needs */
    CLSA_ERR_INVALID_MASK = -2017,         /**< a block mask has an index out of range or unsorted */
    CLSA_ERR_INVALID_METHOD = -2018,       /**< an unknown sparsity method */
    CLSA_ERR_WRONG_PLAN = -2019,           /**< the call does not apply to this plan's method */
    CLSA_ERR_DEVICE_UNSUPPORTED = -2020,   /**< the device lacks something the plan needs */
    CLSA_ERR_INVALID_OPTION = -2021,       /**< a bad context option or environment value */
    CLSA_ERR_INVALID_WAIT_LIST = -2022,    /**< num_wait and wait_list disagree */
    CLSA_ERR_INVALID_TOKENS = -2023,       /**< sink or local token count is negative */
    CLSA_ERR_INVALID_MASK_COUNT = -2024,   /**< a block-mask count is negative or above the key blocks */
    CLSA_ERR_INVALID_REFINE = -2025,       /**< clsa_sparsity.refine_nats is negative, above 16, or NaN */
    CLSA_ERR_INVALID_PRECISION = -2026,    /**< clsa_shape.qk_half with f32 storage */
    CLSA_ERR_INVALID_VALUE_PRUNE = -2027,  /**< clsa_shape.value_prune is negative, >= 1 or NaN, or 0 with value_bits */
    CLSA_ERR_INVALID_VALUE_BITS = -2028,   /**< clsa_shape.value_bits is not 0 to 8 */
    CLSA_ERR_INVALID_SELECTOR = -2030,     /**< a block selector's setting is out of range (window, topk, ...) */
} clsa_status;

/** A short constant name for any status, clsa's or OpenCL's ("CLSA_ERR_HEAD_RATIO", "CL_INVALID_VALUE"). */
CLSA_API const char *clsa_status_string(clsa_status status);

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct clsa_context clsa_context;

/** Which family of kernels a context uses. */
typedef enum clsa_kernel_style {
    /** CPU devices get CLSA_STYLE_CPU, all others CLSA_STYLE_GPU; CLSA_KERNEL_STYLE overrides. */
    CLSA_STYLE_AUTO = 0,
    /** Explicit vector types and per-work-item register tiles, no local memory (PoCL, CPUs). */
    CLSA_STYLE_CPU = 1,
    /** Local-memory tiles shared by work-groups of 16 to 128 work-items (GPUs). */
    CLSA_STYLE_GPU = 2,
} clsa_kernel_style;

/** Options for context creation. Zero-initialise, then set what you need; NULL means all defaults. */
typedef struct clsa_context_options {
    /** Kernel family; CLSA_STYLE_AUTO picks from the device type and CLSA_KERNEL_STYLE. */
    clsa_kernel_style kernel_style;
    /**
     * Directory of the program binary cache. NULL uses CLSA_CACHE_DIR, and the cache is off when
     * that is unset too. Entries are keyed by an XXH3-128 hash of the kernel source, build
     * options, device name, driver, device and platform versions and the clsa version; they are
     * written to a fresh temporary file (mkstemp) and renamed into place. An entry's header holds
     * its key (and a second hash of the same material), its payload's length and an XXH3-64 of
     * the payload, all checked before the driver sees the binary: an entry that is corrupt,
     * truncated, made for another key, or no regular file (a symlink is not followed, a FIFO not
     * waited on) is rebuilt silently.
     *
     * The cache trusts its directory. The checks catch accidents, not someone who can write the
     * directory: they could plant a well-formed entry holding any program. So clsa uses the
     * directory only when it is owned by the process's effective user (geteuid(), root included)
     * and not writable by group or others; it creates a missing directory (not its parents) with
     * mode 0700, and entries with mode 0600. The directories above it are trusted as well. When
     * the directory cannot be created or is refused, context creation still succeeds, with the
     * cache off for that context (plans are built from source): the reason is printed to stderr
     * and left in clsa_context_last_error() as a CLSA_ERR_INVALID_OPTION message until the next
     * call on the context.
     */
    const char *cache_dir;
    /** Tuning file ("Tuning" above). NULL uses CLSA_TUNE_FILE; "" (or neither) the built-in table alone. */
    const char *tuning_file;
    /** Tuning keys, "key=value,..." ("Tuning" above); they win over everything else. NULL: none. */
    const char *tuning;
} clsa_context_options;

/**
 * Makes a context on the caller's OpenCL context and device. Both are retained and released by
 * clsa_context_release. Device capabilities are read once, here.
 */
CLSA_API clsa_status clsa_context_create(cl_context cl_ctx, cl_device_id device,
                                const clsa_context_options *options, clsa_context **out);

/**
 * Makes a context on the device that CLSA_DEVICE selects (clsa_select_device's grammar); unset,
 * the first GPU, else the first device. Returns CLSA_ERR_NO_DEVICE when there is none, and
 * CLSA_ERR_INVALID_OPTION when CLSA_DEVICE matches no device or more than one (the message on
 * stderr lists the candidates).
 */
CLSA_API clsa_status clsa_context_create_default(const clsa_context_options *options, clsa_context **out);

/**
 * Picks a device by selector, the grammar every clsa tool and CLSA_DEVICE use:
 *   NULL or ""  the first GPU, else the first device;
 *   "N"         device N of all platforms' devices, in enumeration order;
 *   "P:D"       device D of platform P. Each part is an index, or a case-insensitive substring
 *               (P of the platform's name or vendor, D of the device's name); an empty part is 0.
 *               Examples: "pocl:0", "intel:0", "1:0", "nvidia:";
 *   "NAME"      the one device whose name contains NAME, case-insensitively.
 * A part that matches several platforms or devices is an error (CLSA_ERR_INVALID_OPTION) whose
 * message, written into why (why_size bytes; may be NULL), lists the candidates as
 * "index = platform:device  platform name (vendor): device name". CLSA_ERR_NO_DEVICE when there
 * is no device at all.
 */
CLSA_API clsa_status clsa_select_device(const char *selector, cl_device_id *out, char *why, size_t why_size);

/** Releases the context and what it retained. Plans made from it must be released first. NULL is a no-op. */
CLSA_API void clsa_context_release(clsa_context *ctx);

/** The last error message of this context ("" when none). Valid until the next call on the context. */
CLSA_API const char *clsa_context_last_error(const clsa_context *ctx);

/** The OpenCL context the clsa context runs on (not retained for the caller). */
CLSA_API cl_context clsa_context_cl_context(const clsa_context *ctx);

/** The OpenCL device the clsa context runs on (not retained for the caller). */
CLSA_API cl_device_id clsa_context_device(const clsa_context *ctx);

/** The kernel style this context resolved to: CLSA_STYLE_CPU or CLSA_STYLE_GPU. */
CLSA_API clsa_kernel_style clsa_context_kernel_style(const clsa_context *ctx);

/**
 * The tuning this context resolved, as "key=value,... (from SOURCES)": every key ("auto" where the
 * stages decide per plan) and the table row, file row and overrides that set them.
 */
CLSA_API const char *clsa_context_tuning(const clsa_context *ctx);

/** The device name, as CL_DEVICE_NAME reports it. */
CLSA_API const char *clsa_context_device_name(const clsa_context *ctx);

/** Bits of clsa_device_info.integer_dot_product (cl_khr_integer_dot_product's capabilities). */
#define CLSA_INT_DOT_4X8_PACKED 1u /**< dot products of 4 x 8-bit values packed in a 32-bit integer */
#define CLSA_INT_DOT_4X8 2u        /**< the same on char4 / uchar4 vectors */

/**
 * What clsa read from a context's device, once, when the context was created: what kernel
 * variants it may use, and what a bug report needs. Strings are as the device reports them, cut
 * to 255 bytes. Extension flags come from CL_DEVICE_EXTENSIONS, whole names only.
 */
typedef struct clsa_device_info {
    char name[256];             /**< CL_DEVICE_NAME */
    char vendor[256];           /**< CL_DEVICE_VENDOR */
    char driver_version[256];   /**< CL_DRIVER_VERSION */
    char device_version[256];   /**< CL_DEVICE_VERSION ("OpenCL 3.0 ...") */
    char platform_version[256]; /**< CL_PLATFORM_VERSION of the device's platform */
    char c_version[256];        /**< CL_DEVICE_OPENCL_C_VERSION ("OpenCL C 1.2 ...") */
    cl_device_type type;        /**< CL_DEVICE_TYPE bits (CPU, GPU, accelerator) */
    cl_uint compute_units;      /**< CL_DEVICE_MAX_COMPUTE_UNITS: cores (CPU) or SMs / CUs (GPU) */
    cl_ulong local_mem_size;    /**< CL_DEVICE_LOCAL_MEM_SIZE, bytes */
    cl_ulong max_mem_alloc;     /**< CL_DEVICE_MAX_MEM_ALLOC_SIZE, bytes */
    size_t max_work_group_size; /**< CL_DEVICE_MAX_WORK_GROUP_SIZE */
    cl_uint native_float_width; /**< CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT: 16 with AVX-512, 8 with AVX2 */
    int has_fp64;               /**< cl_khr_fp64 */
    int has_fp16;               /**< cl_khr_fp16: half arithmetic (clsa stores f16 without it) */
    int has_subgroups;          /**< cl_khr_subgroups, or OpenCL >= 2.1 with CL_DEVICE_MAX_NUM_SUB_GROUPS > 0 */
    int has_intel_subgroups;    /**< cl_intel_subgroups (shuffles, block reads) */
    int has_intel_required_subgroup_size; /**< cl_intel_required_subgroup_size */
    cl_uint num_subgroup_sizes; /**< entries of subgroup_sizes (0 unless cl_intel_required_subgroup_size) */
    size_t subgroup_sizes[8];   /**< CL_DEVICE_SUB_GROUP_SIZES_INTEL, the first 8 */
    int has_integer_dot_product; /**< cl_khr_integer_dot_product */
    cl_uint integer_dot_product; /**< its capabilities: CLSA_INT_DOT_* bits (0 without it) */
} clsa_device_info;

/** The context's device information (valid while the context lives); NULL for a NULL context. */
CLSA_API const clsa_device_info *clsa_context_device_info(const clsa_context *ctx);

/** The device's whole CL_DEVICE_EXTENSIONS string ("" for a NULL context or when unreadable). */
CLSA_API const char *clsa_context_device_extensions(const clsa_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Shapes                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** Storage type of Q, K, V and O. Arithmetic is always f32. */
typedef enum clsa_dtype {
    CLSA_F32 = 0,
    CLSA_F16 = 1,  /**< IEEE half, read with vload_half: cl_khr_fp16 is not needed */
    CLSA_BF16 = 2, /**< the top 16 bits of an f32; stores round to nearest even */
} clsa_dtype;

/**
 * Element strides of one tensor (in elements, not bytes). All three zero means contiguous
 * [B, H, L, D]. Otherwise all three must be positive, and a tensor's rows must not overlap.
 */
typedef struct clsa_tensor_strides {
    int64_t batch, head, token;
} clsa_tensor_strides;

/** Strides that clsa_strides_blhd returns when it cannot give valid ones; plans refuse them. */
#define CLSA_STRIDES_OVERFLOW ((clsa_tensor_strides){-1, -1, -1})

/**
 * Strides of a contiguous [B, L, H, D] tensor with `heads` heads of `head_dim` channels. When a
 * dimension is not positive or len x heads x head_dim overflows 64 bits, it returns
 * CLSA_STRIDES_OVERFLOW (all three -1), which clsa_plan_create rejects with
 * CLSA_ERR_SIZE_OVERFLOW: the overflow is reported where the shape is validated, never silently.
 */
CLSA_API clsa_tensor_strides clsa_strides_blhd(int64_t len, int64_t heads, int64_t head_dim);

/** Everything about the tensors of one attention call. */
typedef struct clsa_shape {
    int64_t batch;    /**< B >= 1 */
    int64_t q_heads;  /**< Hq >= 1, a multiple of kv_heads */
    int64_t kv_heads; /**< Hkv >= 1 */
    int64_t q_len;    /**< Lq >= 1 */
    int64_t kv_len;   /**< Lk >= 1 */
    int64_t head_dim; /**< D, 1 to 256 */
    clsa_dtype dtype; /**< storage of Q, K, V and O */
    int causal;       /**< non-zero: query i sees keys j <= i + Lk - Lq */
    float scale;      /**< softmax scale; 0 means 1/sqrt(head_dim) */
    clsa_tensor_strides q_strides, k_strides, v_strides, o_strides; /**< zero: contiguous */
    /**
     * Non-zero: attention multiplies Q and K in half precision and accumulates each score in f32
     * (for GPUs, where half arithmetic runs at twice the rate). Off by default. Only for f16 and
     * bf16 storage (CLSA_ERR_INVALID_PRECISION otherwise) on devices with cl_khr_fp16
     * (CLSA_ERR_DEVICE_UNSUPPORTED otherwise). Each product is rounded to half (unit roundoff
     * u = 2^-11), so a score moves by at most scale * u * sum_c |q_c k_c| more than in f32; bf16
     * values beyond half's range overflow. The estimator is unaffected.
     */
    int qk_half;
    /**
     * Attention-value pruning (Ji et al., ACL Findings 2021; DESIGN.md section 4), for dense and
     * every sparse method: with t = value_prune in (0, 1), each attention probability
     * p = exp(s - m) / l < t becomes 0, and the kept ones are not renormalized:
     * O = sum_j p'_j V_j. p is exact: the kernels first find each row's m and l (a first pass over
     * its keys), then form p, prune it and multiply by V (a second pass), so pruning costs one
     * more pass of scores. 0 (the default) is off. clsa_pruned_fraction reports the fraction of
     * probabilities pruned, counted on the device.
     */
    float value_prune;
    /**
     * With value_prune t > 0: 0 keeps the unpruned p as it is; 1 to 8 quantizes it to b bits on a
     * log scale: zero is one code (p < t), and the other 2^b - 1 levels are log-uniform on [t, 1]:
     * with min_exp = log2(t) and base = -min_exp / (2^b - 1), k = floor((log2 p - min_exp) / base)
     * clamped to [0, 2^b - 2], and p' = 2^(min_exp + (k + 0.5) base), the middle of its bin in the
     * log domain (b = 3, t = 1e-3: 0.00164, 0.00439, 0.0118, 0.0316, 0.0848, 0.228, 0.611). In f32,
     * a p within rounding of a bin edge may land in either bin. value_bits > 0 needs value_prune > 0
     * (CLSA_ERR_INVALID_VALUE_PRUNE); clsa-run uses t = 1e-3 when only the bits are given.
     */
    int32_t value_bits;
} clsa_shape;

/** A contiguous [B, H, L, D] shape with default scale, non-causal. Fill the rest as needed. */
CLSA_API clsa_shape clsa_shape_make(int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                           int64_t kv_len, int64_t head_dim, clsa_dtype dtype, int causal);

/** Bytes of one element of dtype (0 for an unknown dtype). */
CLSA_API size_t clsa_dtype_size(clsa_dtype dtype);

/* ------------------------------------------------------------------------------------------ */
/* Sparsity                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** How a plan decides which (query block, key block) pairs to compute. */
typedef enum clsa_method {
    CLSA_METHOD_DENSE = 0, /**< every causally visible key: exact attention */
    CLSA_METHOD_SALE = 1,  /**< int4 estimate + Relative Attention Score (arXiv 2505.24179) */
    CLSA_METHOD_MASK = 2,  /**< a block mask given by the caller (clsa_attention_masked) */
    /**
     * The SALE rule on exact f32 scores instead of the int4 estimate: the quality ceiling of the
     * rule (the "oracle" of clsa-bench). As costly as dense attention; for evaluation only.
     */
    CLSA_METHOD_SALE_EXACT = 3,
    /* The other block selectors (DESIGN.md section 5; rules in clsa_sparsity below). */
    CLSA_METHOD_STREAMING = 4, /**< static sink + local window (StreamingLLM, DuoAttention's streaming heads) */
    CLSA_METHOD_SLIDING = 5,   /**< a sliding window of window_tokens keys, causal or symmetric */
    CLSA_METHOD_TOPK = 6,      /**< mean-pooled block scores, the top topk fraction of each row's blocks */
    CLSA_METHOD_CDF = 7,       /**< mean-pooled block scores, blocks until their mass reaches cdf_gamma */
    CLSA_METHOD_XATTN = 8,     /**< XAttention's strided antidiagonal scores with a cumulative threshold */
    /** Each query head has its own settings and method: clsa_sparsity.per_head. */
    CLSA_METHOD_PER_HEAD = 9,
} clsa_method;

/** The method's name in the tools ("dense", "sale", "mask", "sale-exact", "streaming", "sliding",
    "topk", "cdf", "xattn", "per-head"), or NULL for a value that is not a clsa_method. */
CLSA_API const char *clsa_method_name(clsa_method method);

/** The method with that name (as clsa_method_name spells it); CLSA_ERR_INVALID_METHOD for any
    other name, CLSA_ERR_NULL_ARGUMENT for NULL. */
CLSA_API clsa_status clsa_method_from_name(const char *name, clsa_method *out);

/**
 * Sparsity settings of a plan. Fill with clsa_sparsity_init, then change what you need.
 *
 * The SALE rule (arXiv 2505.24179), per query head h with threshold tau_h:
 *   1. Q and K are smoothed by their per-head token means (Q' = Q - mean_q, K' = K - mean_k) and
 *      quantized to symmetric int4 in [-7, 7] with ONE SCALE PER TOKEN AND 16-CHANNEL GROUP
 *      (scale = max|x'| / 7 over the group). Why: a per-token scale factors out of the integer dot
 *      product (SALE's groups of several tokens follow its GPU's int4 MMA layout, which OpenCL
 *      does not expose), and 16-channel groups keep a few large rotary channels (attention sinks,
 *      retrieval keys) from coarsening every other channel's codes. Recall against the
 *      exact-score oracle on bench's LLM-like data at tau 0.004 (tests/test_sparse.c, 6 seeds):
 *      0.996-0.997 with 16-channel groups, 0.993-0.997 with one scale per token; the groups cost
 *      one f32 multiply-add per 16 channels of the estimate.
 *   2. The estimate of a score is S~[i,j] = scale * (sum_g s_q(i,g) s_k(j,g) sum_{c in g}
 *      qcode[i,c] kcode[j,c] + mean_q . K'_j); the inner sums are exact integers (summed in
 *      f32, two keys per multiply-add: clsa_quant_layout.k_pairs); the per-key correction is f32.
 *   3. For each row, m~ and l~ are the exact max and sum of exp over the row's reference set:
 *      its sink keys (the first sink_tokens keys) and local keys (the local_tokens keys ending at
 *      the row's diagonal key i + Lk - Lq when causal; centred on it when not causal) that it
 *      can see, in f32. When that set is empty for a row that sees a key (sink_tokens 0 and no
 *      local key in range: local_tokens 0, or a row far from its diagonal when not causal and
 *      Lq > Lk), the reference set is the row's one visible key with the highest estimate
 *      S~max instead: the row keeps the blocks where S~ >= S~max + ln(min(tau_h, 1)), so always
 *      the block of that key. Every row that sees a key keeps at least one block.
 *   4. A (query block, key block) pair is kept iff some element has S~ >= m~ + ln(tau_h * l~),
 *      where S~ also gets back the exact row term scale * q_i . mean_k that smoothing K removed
 *      (it shifts a whole row, so the softmax ignores it, but the exact m~ includes it).
 *      Blocks holding sink, local or diagonal keys of any of the block's rows are always kept;
 *      causal blocks with no visible key are never kept. tau_h <= 1e-5 keeps every visible
 *      block (a dense head).
 *   5. The exact second look (clsa's addition; refine_nats > 0, method SALE): a block that rule 4
 *      drops although its best S~ - threshold is >= -refine_nats is scored again with exact f32
 *      scores (scale * q_i . k_j, compared with the same threshold) and kept when one of its
 *      visible elements passes. Why: at head_dim 256 (Gemma 3) the int4 mask kept only 0.94-0.99
 *      of the blocks that the rule keeps on exact scores, and every block it missed stood less
 *      than 0.5 nats (8K) to 2 nats (16K) above the threshold, most under 0.5 (recall.py in
 *      bench/real): the codes' rounding, spread over 256 channels, not the scale groups (8-channel
 *      groups did little better) or the smoothing (none did worse). Lowering tau would recover those blocks only by keeping many more; the
 *      second look costs about one half of dense attention's work per block it scores, and only
 *      near-threshold blocks are scored. The default, 0.5 nats, is the margin that gave recall
 *      >= 0.996 on every head of Gemma 3's layer 5 at 16K in that simulation (0.25 left a head at
 *      0.981); refine_nats 0 gives SALE's rule alone.
 */
typedef struct clsa_sparsity {
    clsa_method method;
    /** Default threshold tau of every query head (SALE's README uses 0.004). tau <= 1e-5 means dense. */
    float tau;
    /** NULL, or q_heads thresholds that replace tau per query head; copied at plan creation. */
    const float *tau_per_head;
    int32_t sink_tokens;  /**< keys always kept at the start (default 32; 0 allowed, see rule 3) */
    int32_t local_tokens; /**< keys always kept around each query's diagonal (default 256; 0 allowed) */
    int32_t block_q;      /**< query rows per mask block, power of two 16..128 (default 64) */
    int32_t block_k;      /**< keys per mask block, power of two 16..128 (default 32) */
    /** SALE: the exact second look's margin in nats (rule 5), 0 (off) to 16; default 0.5. */
    float refine_nats;

    /* The other selectors. A block is visible to a query block when some row of it can see some
       key of it (every block when not causal). Each selector keeps only visible blocks, and writes
       the common mask format; rows of a query block share its kept key blocks. */

    /**
     * Non-zero (default 1): STREAMING, SLIDING, TOPK, CDF and XATTN also keep the blocks that
     * SALE forces: blocks holding a sink key (the first sink_tokens keys), a local key (the
     * local_tokens keys ending at a row's diagonal key i + Lk - Lq when causal, centred on it
     * when not) or the diagonal key of any row of the query block. 0: only the selector's own
     * rule (STREAMING's rule is that set, so it ignores this; SALE always forces them).
     */
    int32_t keep_forced;
    /**
     * SLIDING: a row's window. Causal form (window_symmetric 0): the window_tokens keys ending
     * at its diagonal key d, [d - window_tokens + 1, d]. Symmetric form (1): every key within
     * window_tokens of d on either side, [d - window_tokens, d + window_tokens] (causal plans
     * still see only keys <= d). window_tokens from 1 to 2^30; default 1024.
     */
    int32_t window_tokens;
    int32_t window_symmetric;
    /**
     * TOPK and CDF (SpargeAttn, FlexPrefill): each query block's rows and each key block's keys
     * are mean-pooled (over rows and keys inside the tensors), the pooled scores
     * scale * mean_q . mean_k of a query block's visible key blocks are softmaxed, and
     *   TOPK keeps the ceil(topk * n) highest-scoring of its n visible blocks (topk in (0, 1],
     *        default 0.5, SpargeAttn's); blocks tied with the last one kept are kept too;
     *   CDF  keeps blocks in descending order of score until their probabilities sum to at least
     *        cdf_gamma (in (0, 1], default 0.9, FlexPrefill's; SpargeAttn uses 0.98): the block
     *        that crosses gamma is kept, and so are blocks tied with it.
     * A query block whose pooled scores are not all finite keeps every visible block.
     */
    float topk;
    float cdf_gamma;
    /**
     * XATTN (XAttention, arXiv 2503.16428): with stride S = xattn_stride (a power of two from 1
     * to min(block_q, block_k); default 8), query group a (rows S*a .. S*a+S-1) and key group b
     * (keys S*b .. S*b+S-1) score x(a, b) = scale / S * sum_r q[S*a + S-1-r] . k[S*b + r], the
     * mean over the antidiagonal r = 0..S-1 (as XAttention's code divides by the stride), counting
     * only terms whose key the row can see (and rows and keys inside the tensors). Each group's scores are softmaxed over the groups b with a term; a
     * block's score is the sum of its groups' probabilities divided by the number of its query
     * groups that see any key, and the query block keeps blocks in descending order of score
     * until their sum reaches xattn_threshold (in (0, 1], default 0.9; the paper uses 0.8-0.9),
     * the crossing block and ties included. Non-finite scores keep every visible block.
     */
    float xattn_threshold;
    int32_t xattn_stride;
    /**
     * CLSA_METHOD_PER_HEAD: q_heads settings, one per query head, each with its own method
     * (DENSE, SALE, STREAMING, SLIDING, TOPK, CDF or XATTN) and that method's settings, so that a
     * plan may run some heads dense, some streaming and some SALE (DuoAttention's split). Every
     * entry's block_q and block_k must equal this struct's; their per_head and tau_per_head must
     * be NULL; SALE heads share this struct's refine_nats. Copied at plan creation. NULL for
     * every other method.
     */
    const struct clsa_sparsity *per_head;
} clsa_sparsity;

/** Defaults: the given method, tau 0.004, sink 32, local 256, blocks 64 x 32 (SALE's), and the
    exact second look at blocks within 0.5 nats of the threshold; keep_forced 1, window 1024
    (causal form), topk 0.5, cdf_gamma 0.9, xattn_threshold 0.9 and xattn_stride 8. */
CLSA_API void clsa_sparsity_init(clsa_sparsity *sparsity, clsa_method method);

/* ------------------------------------------------------------------------------------------ */
/* Plans                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct clsa_plan clsa_plan;

/**
 * Validates shape and sparsity (NULL sparsity means dense), compiles every kernel the plan
 * needs and fixes its workspace size. The plan keeps a pointer to ctx, which must outlive it.
 */
CLSA_API clsa_status clsa_plan_create(clsa_context *ctx, const clsa_shape *shape,
                             const clsa_sparsity *sparsity, clsa_plan **out);

/** Releases a plan and any workspace it allocated for itself. NULL is a no-op. */
CLSA_API void clsa_plan_release(clsa_plan *plan);

/**
 * Bytes of device workspace the plan needs (always > 0): f32 copies of K^T and V (O(L*D)), SALE's
 * codes, scales and corrections (O(L*D)), and the block mask, whose index lists hold one int32 per
 * (query head, query block, key block): Hq * (Lq/block_q) * (Lk/block_k) * 4 bytes, which is
 * quadratic in L. For 32 query heads, 8 kv heads, head_dim 128, f16, default blocks (64 x 32):
 * dense 64 MiB at 8K and 1 GiB at 128K; SALE 100 MiB at 8K, 448 MiB at 32K and 2.5 GiB at 128K,
 * of which 1 GiB is the mask. Plan creation fails with CLSA_ERR_DEVICE_UNSUPPORTED when the
 * workspace exceeds the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE (1 GiB on PoCL here).
 */
CLSA_API size_t clsa_plan_workspace_size(const clsa_plan *plan);

/** The shape the plan was made for, with scale resolved (never 0). */
CLSA_API const clsa_shape *clsa_plan_shape(const clsa_plan *plan);

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * Non-finite values
 * -----------------
 *   clsa does not scan its inputs and reports no status for Inf or NaN: it passes them on to
 *   exactly the output rows that see them, and keeps every other row finite and exact. A row
 *   sees key j when j is causally visible to it and, for masked and SALE attention, in a key
 *   block its mask keeps.
 *   - A row that sees a non-finite value gives a non-finite output row: NaN in every channel
 *     when the value is in its Q row or in the K row of a key it sees (the score is not finite,
 *     whatever its sign), and a non-finite value at least in the channel that holds it when it
 *     is in the V row of a key it sees. Never a silent row of zeros.
 *   - A key a row does not see contributes nothing to it, whatever K and V hold there: the row
 *     stays finite and exact.
 *   - A row that sees no key gives zeros (see Tensors), even when its own Q row is not finite.
 *   - Scores that overflow f32 (for instance Q and K values near 1e38, or a large scale) follow
 *     IEEE arithmetic and may give the row NaN: a score that overflows to +inf always does, and
 *     so does a query value that overflows when scaled; one that overflows to -inf gets weight 0
 *     (NaN when the row has no other key). The float64 reference does not overflow there.
 *   SALE (CLSA_METHOD_SALE and CLSA_METHOD_SALE_EXACT) decides its mask so that non-finite Q and
 *   K values reach the same rows as in dense attention:
 *   - The per-head token means used for smoothing leave out non-finite values (each channel's
 *     mean is over its finite values; 0 when there are none), so one bad token does not change
 *     the other tokens' codes and estimates.
 *   - A channel group of a token that holds a non-finite value (also after smoothing, if
 *     x - mean overflows) gets a NaN scale and zero codes, so every estimate with that token is
 *     NaN. A non-finite estimate passes the threshold: a non-finite key's block is kept for every
 *     query block with a row that can causally see it, and a non-finite query's block keeps every
 *     key block it can see (its other rows then get exact attention there).
 *   - A row whose sink or local keys give a non-finite score keeps every block it can see.
 *   - V does not take part in the mask: a non-finite V value reaches the rows whose mask keeps
 *     its key's block, as with a mask given to clsa_attention_masked.
 *   Non-finite values thus cost SALE sparsity (more kept blocks), never correctness of the
 *   other rows, and never a silent zero.
 */

/**
 * Enqueues attention O = softmax(scale * Q K^T [masked]) V on `queue`.
 *
 * q, k, v and o are the caller's buffers, laid out as the plan's shape says; their sizes are
 * checked with CL_MEM_SIZE. workspace is a buffer of at least clsa_plan_workspace_size() bytes,
 * or NULL to let the plan allocate (once) and keep its own. The call waits for the num_wait
 * events of wait_list, and, when out_event is not NULL, returns an event that completes when O
 * is written (release it with clReleaseEvent). Internal kernels are chained by events, so
 * in-order and out-of-order queues both work. The call never blocks.
 */
CLSA_API clsa_status clsa_attention(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v,
                           cl_mem o, cl_mem workspace, cl_uint num_wait, const cl_event *wait_list,
                           cl_event *out_event);

/*
 * For plans whose mask a selector writes (every method but DENSE and MASK), clsa_attention runs
 * the whole pipeline: clsa_quantize (when some head is SALE), clsa_estimate_mask (every selector
 * of the plan, into the workspace's mask) and clsa_attention_masked, chained by events.
 * CLSA_METHOD_MASK plans need clsa_attention_masked (CLSA_ERR_WRONG_PLAN here).
 */

/**
 * The same as clsa_attention for host arrays: copies q, k and v in, runs, and copies o out,
 * blocking until done. The arrays are laid out as the shape says, in the shape's dtype (f16 and
 * bf16 as uint16_t bit patterns). queue may be NULL to use a queue made for this call.
 */
CLSA_API clsa_status clsa_attention_host(clsa_plan *plan, cl_command_queue queue, const void *q,
                                const void *k, const void *v, void *o);

/* ------------------------------------------------------------------------------------------ */
/* Block masks and the stages of the sparse pipeline                                           */
/* ------------------------------------------------------------------------------------------ */

/**
 * A block mask on the device, in the layout of PyTorch FlexAttention's kv_num_blocks and
 * kv_indices. For each mask row r = (b * q_heads + h) * num_q_blocks + qb:
 *   counts[r]                       int32, the number of kept key blocks (0..num_k_blocks);
 *   indices[r * num_k_blocks + n]   int32, for n < counts[r]: kept key-block indices, ascending.
 * Entries of a row past its count are ignored. Query block qb covers rows [qb*block_q,
 * (qb+1)*block_q); key block kb covers keys [kb*block_k, (kb+1)*block_k).
 * Both arrays may live in one buffer (as in the workspace) or two; offsets are in bytes and
 * must be multiples of 4.
 */
typedef struct clsa_block_mask {
    cl_mem counts;
    size_t counts_offset;
    cl_mem indices;
    size_t indices_offset;
} clsa_block_mask;

/** Geometry of a plan's block mask. */
typedef struct clsa_mask_geometry {
    int64_t rows;         /**< batch * q_heads * num_q_blocks */
    int64_t num_q_blocks; /**< ceil(q_len / block_q) */
    int64_t num_k_blocks; /**< ceil(kv_len / block_k) */
    int32_t block_q, block_k;
    size_t counts_bytes;  /**< 4 * rows */
    size_t indices_bytes; /**< 4 * rows * num_k_blocks */
} clsa_mask_geometry;

/**
 * The fraction of attention probabilities that the last attention call in `workspace` (NULL: the
 * plan's own) pruned, of all those its rows saw (the visible keys of the blocks their mask keeps),
 * as counted by the attention kernels; per_head (NULL, or q_heads entries) receives each query
 * head's fraction over the batch. Blocks until the read is done, so call it after the attention
 * call's work. CLSA_ERR_WRONG_PLAN for a plan without value pruning, or with a NULL workspace
 * before the plan allocated its own.
 */
CLSA_API clsa_status clsa_pruned_fraction(clsa_plan *plan, cl_command_queue queue, cl_mem workspace, double *fraction,
                                          double *per_head);

/** The mask geometry of a sparse plan (CLSA_ERR_WRONG_PLAN for a dense plan). */
CLSA_API clsa_status clsa_plan_mask_geometry(const clsa_plan *plan, clsa_mask_geometry *out);

/** The block mask that lives inside a workspace of this plan (where clsa_estimate_mask writes). */
CLSA_API clsa_status clsa_plan_workspace_mask(const clsa_plan *plan, cl_mem workspace, clsa_block_mask *out);

/** Byte offsets of the SALE buffers inside a workspace, and their padded sizes. */
typedef struct clsa_quant_layout {
    int64_t head_dim_even;   /**< head_dim rounded up to even: two codes per byte */
    int64_t group_channels;  /**< channels that share one scale */
    int64_t groups;          /**< scales per token: ceil(head_dim / group_channels) */
    int64_t kv_len_padded;   /**< kv_len rounded up to a multiple of 128 */
    size_t q_mean, k_mean;   /**< f32 [B*Hq][head_dim], f32 [B*Hkv][head_dim] */
    size_t q_codes, q_scales; /**< bytes [B*Hq][q_len][head_dim_even/2], f32 [B*Hq][q_len][groups] */
    size_t k_codes, k_scales; /**< bytes [B*Hkv][head_dim_even/2][kv_len_padded], f32 [B*Hkv][groups][kv_len_padded] */
    size_t k_correction;     /**< f32 [B*Hq][kv_len_padded]: mean_q . K'_j of each query head */
    /** f32 [B*Hq][q_len]: m~ + log2(tau l~) in log2 units (scale*log2e*score); for SALE minus the
        row's exact q_i . mean_k term, which the smoothed-key estimate leaves out. +inf for a row
        with no sink or local key (clsa_estimate_mask then uses its highest estimate), NaN when
        one of their scores is not finite */
    size_t row_threshold;
    /** f32 [B*Hkv][kv_len_padded/32][groups*group_channels][16]: the key codes in the
        estimator's form, one 32-key chunk after another (channels past head_dim are 0). Keys
        j and j+16 of a chunk share one f32, code_j + 2048 * code_{j+16} (lane j - chunk*32 of the
        chunk's channel), so that one f32 multiply-add makes two int4 products; a channel group's
        sums stay exact integers (|sum| <= 16*49 < 1024). Chunk-major keeps a chunk's channels
        contiguous instead of a power of two apart (one cache set) */
    size_t k_pairs;
    /** f32 [B*Hq][q_len]: scale*log2e * q_i . mean_k, the term row_threshold removed (SALE; the
        exact second look adds it back to exact scores) */
    size_t row_shift;
} clsa_quant_layout;

/** Where a SALE plan keeps its buffers in the workspace (CLSA_ERR_WRONG_PLAN for other plans). */
CLSA_API clsa_status clsa_plan_quant_layout(const clsa_plan *plan, clsa_quant_layout *out);

/**
 * Stage 1 of SALE (plans with SALE heads: CLSA_METHOD_SALE, or CLSA_METHOD_PER_HEAD with a SALE
 * head; CLSA_ERR_WRONG_PLAN otherwise, also for the exact-score oracle): token means, int4 codes,
 * per-token scales and the per-key corrections of q and k, into the workspace (not NULL here).
 * Workspace layout of the codes (for inspection; see clsa_plan_quant_layout):
 *   q codes: [B*Hq][q_len][head_dim_even / 2] bytes, row-major;
 *   k codes: [B*Hkv][head_dim_even / 2][kv_len_padded] bytes (transposed: consecutive keys);
 *   byte = (code[c] & 0xF) | (code[c+1] << 4), codes two's-complement int4 in [-7, 7];
 *   scales: f32 per token and 16-channel group; k correction: f32 [B*Hq][kv_len_padded] (0 past kv_len).
 */
CLSA_API clsa_status clsa_quantize(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                          cl_uint num_wait, const cl_event *wait_list, cl_event *out_event);

/**
 * The selection stage: every selector of the plan writes its heads' rows of the block mask to
 * `mask` (NULL: the workspace's own mask); for any method but DENSE and MASK (CLSA_ERR_WRONG_PLAN).
 * SALE: exact sink/local statistics per row, then the block decisions; it needs clsa_quantize's
 * output in the same workspace. The other selectors need nothing before (they keep their own
 * scratch, such as pooled key means, in the workspace). No host round trip.
 */
CLSA_API clsa_status clsa_estimate_mask(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem workspace,
                               const clsa_block_mask *mask, cl_uint num_wait, const cl_event *wait_list,
                               cl_event *out_event);

/** How clsa_attention_masked treats a mask it is given. */
typedef enum clsa_mask_check {
    /**
     * Read the mask back and check it before enqueueing anything: every count in
     * [0, num_k_blocks], every index in [0, num_k_blocks) and strictly ascending. This BLOCKS:
     * it waits for wait_list, copies counts_bytes + indices_bytes to the host and scans them,
     * O(number of blocks). A bad mask gives CLSA_ERR_INVALID_MASK_COUNT or CLSA_ERR_INVALID_MASK
     * and nothing is written.
     */
    CLSA_MASK_CHECK = 0,
    /**
     * Trust the mask; nothing blocks. The kernel still never reads outside its buffers: counts are
     * clamped to [0, num_k_blocks] and out-of-range indices skipped. Unsorted or repeated indices
     * then give wrong results (a repeated block counts twice).
     */
    CLSA_MASK_TRUST = 1,
} clsa_mask_check;

/**
 * Stage 3: block-sparse attention over the key blocks listed in `mask` (NULL: the workspace's
 * own mask), with causal masking inside blocks. A row with no kept key gives zeros. Works on
 * plans of every sparse method (CLSA_METHOD_MASK, SALE, SALE_EXACT).
 */
CLSA_API clsa_status clsa_attention_masked(clsa_plan *plan, cl_command_queue queue, cl_mem q, cl_mem k, cl_mem v,
                                  cl_mem o, cl_mem workspace, const clsa_block_mask *mask,
                                  clsa_mask_check check, cl_uint num_wait, const cl_event *wait_list,
                                  cl_event *out_event);

/**
 * Reads a mask back (blocking; NULL mask: the workspace's), checks it as CLSA_MASK_CHECK does
 * (CLSA_ERR_INVALID_MASK_COUNT, CLSA_ERR_INVALID_MASK), and writes per query head the density:
 * kept blocks that some row of their query block can see / causally valid blocks, summed over
 * batch and query blocks. Listed blocks that no row can see are skipped by the kernels and not
 * counted, so the density is in [0, 1]. density has q_heads entries; nothing is written on error.
 */
CLSA_API clsa_status clsa_mask_density(clsa_plan *plan, cl_command_queue queue, cl_mem workspace,
                              const clsa_block_mask *mask, double *density);

/**
 * Host conversions between a dense bitmap (uint8 [rows][num_k_blocks], non-zero = kept) and the
 * count + index-list layout (int32 counts[rows], int32 indices[rows][num_k_blocks]).
 * clsa_mask_from_bitmap writes ascending indices and zero-fills each row's unused tail.
 * clsa_mask_to_bitmap checks the lists (CLSA_ERR_INVALID_MASK_COUNT, CLSA_ERR_INVALID_MASK).
 */
CLSA_API clsa_status clsa_mask_from_bitmap(const uint8_t *bitmap, int64_t rows, int64_t num_k_blocks, int32_t *counts,
                                  int32_t *indices);
CLSA_API clsa_status clsa_mask_to_bitmap(const int32_t *counts, const int32_t *indices, int64_t rows,
                                int64_t num_k_blocks, uint8_t *bitmap);

#ifdef __cplusplus
}
#endif

#endif /* CLSA_CLSA_H */

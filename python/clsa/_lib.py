"""ctypes bindings: the clsa shared library, and the few OpenCL calls the Python API needs.

The structures mirror include/clsa/clsa.h field for field; ctypes applies the same alignment
rules as the C compiler, so the layouts match.
"""
import ctypes as C
import ctypes.util
import os

_here = os.path.dirname(os.path.abspath(__file__))


def _load(names, what, env):
    """The first library that loads: $env if set, else each of names in turn."""
    given = os.environ.get(env)
    tried = []
    for name in [given] if given else names:
        if not name:
            continue
        try:
            return C.CDLL(name)
        except OSError as e:
            tried.append(f"{name}: {e}")
    raise ImportError(f"clsa: cannot load {what} ({'; '.join(tried) or 'no candidate'}); set {env} to its path")


# Installed by `pip install .`, the library sits next to this file; CLSA_LIBRARY points elsewhere
# (a build directory, for example).
clsa = _load([os.path.join(_here, "libclsa.so"), ctypes.util.find_library("clsa")], "libclsa", "CLSA_LIBRARY")
opencl = _load(["libOpenCL.so.1", ctypes.util.find_library("OpenCL")], "the OpenCL ICD loader", "CLSA_OPENCL_LIBRARY")

status_t = C.c_int
handle = C.c_void_p  # cl_context, cl_device_id, cl_command_queue, cl_mem, clsa_context *, clsa_plan *


class Strides(C.Structure):
    _fields_ = [("batch", C.c_int64), ("head", C.c_int64), ("token", C.c_int64)]


class Shape(C.Structure):
    _fields_ = [("batch", C.c_int64), ("q_heads", C.c_int64), ("kv_heads", C.c_int64), ("q_len", C.c_int64),
                ("kv_len", C.c_int64), ("head_dim", C.c_int64), ("dtype", C.c_int), ("causal", C.c_int),
                ("scale", C.c_float), ("q_strides", Strides), ("k_strides", Strides), ("v_strides", Strides),
                ("o_strides", Strides), ("qk_half", C.c_int), ("value_prune", C.c_float), ("value_bits", C.c_int32)]


class Sparsity(C.Structure):
    _fields_ = [("method", C.c_int), ("tau", C.c_float), ("tau_per_head", C.POINTER(C.c_float)),
                ("sink_tokens", C.c_int32), ("local_tokens", C.c_int32), ("block_q", C.c_int32),
                ("block_k", C.c_int32), ("refine_nats", C.c_float), ("keep_forced", C.c_int32),
                ("window_tokens", C.c_int32), ("window_symmetric", C.c_int32), ("topk", C.c_float),
                ("cdf_gamma", C.c_float), ("xattn_threshold", C.c_float), ("xattn_stride", C.c_int32),
                ("per_head", C.c_void_p)]


class BlockMask(C.Structure):
    _fields_ = [("counts", handle), ("counts_offset", C.c_size_t), ("indices", handle),
                ("indices_offset", C.c_size_t)]


class MaskGeometry(C.Structure):
    _fields_ = [("rows", C.c_int64), ("num_q_blocks", C.c_int64), ("num_k_blocks", C.c_int64),
                ("block_q", C.c_int32), ("block_k", C.c_int32), ("counts_bytes", C.c_size_t),
                ("indices_bytes", C.c_size_t)]


# clsa_dtype, clsa_method, clsa_mask_check
F32, F16 = 0, 1
METHOD_DENSE, METHOD_SALE = 0, 1
MASK_TRUST = 1


def _sig(lib, name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


P = C.POINTER
_sig(clsa, "clsa_version", C.c_char_p)
_sig(clsa, "clsa_status_string", C.c_char_p, status_t)
_sig(clsa, "clsa_select_device", status_t, C.c_char_p, P(handle), C.c_char_p, C.c_size_t)
_sig(clsa, "clsa_context_create", status_t, handle, handle, C.c_void_p, P(handle))
_sig(clsa, "clsa_context_release", None, handle)
_sig(clsa, "clsa_context_last_error", C.c_char_p, handle)
_sig(clsa, "clsa_context_device_name", C.c_char_p, handle)
_sig(clsa, "clsa_shape_make", Shape, C.c_int64, C.c_int64, C.c_int64, C.c_int64, C.c_int64, C.c_int64, C.c_int,
     C.c_int)
_sig(clsa, "clsa_sparsity_init", None, P(Sparsity), C.c_int)
_sig(clsa, "clsa_plan_create", status_t, handle, P(Shape), P(Sparsity), P(handle))
_sig(clsa, "clsa_plan_release", None, handle)
_sig(clsa, "clsa_plan_workspace_size", C.c_size_t, handle)
_sig(clsa, "clsa_plan_mask_geometry", status_t, handle, P(MaskGeometry))
_sig(clsa, "clsa_plan_workspace_mask", status_t, handle, handle, P(BlockMask))
_sig(clsa, "clsa_attention", status_t, handle, handle, handle, handle, handle, handle, handle, C.c_uint,
     C.c_void_p, C.c_void_p)
_sig(clsa, "clsa_quantize", status_t, handle, handle, handle, handle, handle, C.c_uint, C.c_void_p, C.c_void_p)
_sig(clsa, "clsa_estimate_mask", status_t, handle, handle, handle, handle, handle, P(BlockMask), C.c_uint,
     C.c_void_p, C.c_void_p)
_sig(clsa, "clsa_attention_masked", status_t, handle, handle, handle, handle, handle, handle, handle,
     P(BlockMask), C.c_int, C.c_uint, C.c_void_p, C.c_void_p)
_sig(clsa, "clsa_mask_density", status_t, handle, handle, handle, P(BlockMask), P(C.c_double))
_sig(clsa, "clsa_pruned_fraction", status_t, handle, handle, handle, P(C.c_double), P(C.c_double))
_sig(clsa, "clsa_mask_to_bitmap", status_t, P(C.c_int32), P(C.c_int32), C.c_int64, C.c_int64, P(C.c_uint8))

# OpenCL 1.2 entry points (cl_mem_flags and cl_command_queue_properties are 64-bit bitfields).
CL_MEM_READ_WRITE, CL_MEM_READ_ONLY, CL_MEM_COPY_HOST_PTR = 1 << 0, 1 << 2, 1 << 5
_sig(opencl, "clCreateContext", handle, C.c_void_p, C.c_uint, P(handle), C.c_void_p, C.c_void_p, P(C.c_int))
_sig(opencl, "clCreateCommandQueue", handle, handle, handle, C.c_uint64, P(C.c_int))
_sig(opencl, "clCreateBuffer", handle, handle, C.c_uint64, C.c_size_t, C.c_void_p, P(C.c_int))
_sig(opencl, "clEnqueueReadBuffer", C.c_int, handle, handle, C.c_uint, C.c_size_t, C.c_size_t, C.c_void_p, C.c_uint,
     C.c_void_p, C.c_void_p)
_sig(opencl, "clFinish", C.c_int, handle)
_sig(opencl, "clReleaseMemObject", C.c_int, handle)
_sig(opencl, "clReleaseCommandQueue", C.c_int, handle)
_sig(opencl, "clReleaseContext", C.c_int, handle)

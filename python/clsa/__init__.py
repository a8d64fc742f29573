"""clsa: sparse attention for long-context prefill on any OpenCL device, from numpy.

    import numpy as np, clsa
    out, stats = clsa.attention(q, k, v, causal=True, method="sale", tau=0.004, device="pocl:0")

q is [B, Hq, Lq, D] and k, v are [B, Hkv, Lk, D] (Hq a multiple of Hkv; 3-D arrays [H, L, D] are
taken as B = 1), float32 or float16; the output has q's shape and dtype. Computation is f32 on the
device. Errors of the library raise clsa.Error with its message; wrong Python arguments raise
TypeError or ValueError. The C library's header, include/clsa/clsa.h, documents the rule and every
status.

Contexts (one per device selector) and plans (one per shape and setting: building a plan compiles
its kernels) are kept between calls, so repeated calls on one shape are cheap. Set CLSA_CACHE_DIR
to keep compiled kernels across processes as well.
"""
import ctypes as C
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import _lib as L

__all__ = ["attention", "Error", "Stats", "version"]


class Error(RuntimeError):
    """A clsa or OpenCL status. `status` is its number, `name` its constant's name
    ("CLSA_ERR_HEAD_RATIO", "CL_OUT_OF_RESOURCES"), and the text is the library's message."""

    def __init__(self, status, message):
        self.status = int(status)
        self.name = L.clsa.clsa_status_string(self.status).decode()
        super().__init__(message if message.startswith(self.name) else f"{self.name}: {message}")


@dataclass
class Stats:
    """What one call did. Times are host wall-clock milliseconds per stage, each stage waited for."""
    method: str
    device: str
    density: list = field(default_factory=list)  # per query head: kept blocks / visible blocks (1.0 dense)
    times_ms: dict = field(default_factory=dict)  # dense: attend; sale: quantize, estimate, attend
    mask: np.ndarray = None  # sale: bool [B, Hq, q blocks, key blocks], the kept blocks
    pruned_fraction: float = None  # value_prune > 0: the probabilities pruned (p < t) of those the rows saw
    pruned_per_head: list = None  # value_prune > 0: the same per query head


def version():
    """The linked library's version string."""
    return L.clsa.clsa_version().decode()


def _check(status, what, ctx=None):
    if status:
        detail = L.clsa.clsa_context_last_error(ctx).decode() if ctx else ""
        raise Error(status, detail or what)


class _Device:
    """An OpenCL context, queue and clsa context on one device, and the plans built on it."""

    def __init__(self, selector):
        why = C.create_string_buffer(4096)
        device = L.handle()
        st = L.clsa.clsa_select_device(selector.encode() if selector else None, C.byref(device), why, len(why))
        _check(st, why.value.decode() or f"selecting device {selector!r}")
        err = C.c_int(0)
        self.cl_context = L.opencl.clCreateContext(None, 1, C.byref(device), None, None, C.byref(err))
        _check(err.value, "creating an OpenCL context")
        self.queue = L.opencl.clCreateCommandQueue(self.cl_context, device, 0, C.byref(err))
        if err.value:
            L.opencl.clReleaseContext(self.cl_context)
            _check(err.value, "creating an OpenCL command queue")
        self.ctx = L.handle()
        st = L.clsa.clsa_context_create(self.cl_context, device, None, C.byref(self.ctx))
        if st:
            self.close()
            _check(st, "creating the clsa context")
        self.name = L.clsa.clsa_context_device_name(self.ctx).decode()
        self.plans = {}

    def plan(self, key, shape, sparsity):
        if key not in self.plans:
            if len(self.plans) >= _MAX_PLANS:  # drop the oldest
                L.clsa.clsa_plan_release(self.plans.pop(next(iter(self.plans))))
            plan = L.handle()
            st = L.clsa.clsa_plan_create(self.ctx, C.byref(shape), C.byref(sparsity) if sparsity else None,
                                         C.byref(plan))
            _check(st, "creating the plan", self.ctx)
            self.plans[key] = plan
        return self.plans[key]

    def buffer(self, flags, nbytes, host=None):
        err = C.c_int(0)
        flags |= L.CL_MEM_COPY_HOST_PTR if host is not None else 0
        mem = L.opencl.clCreateBuffer(self.cl_context, flags, nbytes, host, C.byref(err))
        _check(err.value, f"creating a {nbytes}-byte device buffer")
        return mem

    def close(self):
        for plan in self.plans.values():
            L.clsa.clsa_plan_release(plan)
        self.plans = {}
        if getattr(self, "ctx", None):
            L.clsa.clsa_context_release(self.ctx)
        if self.queue:
            L.opencl.clReleaseCommandQueue(self.queue)
        L.opencl.clReleaseContext(self.cl_context)


_MAX_PLANS = 8
_devices = {}


def _device(selector):
    if selector is None:
        selector = os.environ.get("CLSA_DEVICE") or None
    if selector not in _devices:
        _devices[selector] = _Device(selector)
    return _devices[selector]


def _as_bhld(x, name):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.dtype not in (np.float32, np.float16):
        raise TypeError(f"{name} must be float32 or float16, not {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, H, L, D] or [H, L, D], not {x.ndim}-D")
    return np.ascontiguousarray(x)


def _taus(tau, q_heads):
    """(default tau, per-head array or None) from a number or a sequence of q_heads numbers."""
    if np.ndim(tau) == 0:
        return float(tau), None
    per_head = np.ascontiguousarray(tau, dtype=np.float32)
    if per_head.shape != (q_heads,):
        raise ValueError(f"tau must be a number or {q_heads} per-head values, not shape {per_head.shape}")
    return float(per_head[0]), per_head


def attention(q, k, v, causal=True, method="dense", tau=0.004, scale=None, device=None, sink_tokens=32,
              local_tokens=256, block_q=64, block_k=32, refine_nats=0.5, value_prune=0.0, value_bits=0):
    """softmax(scale * q k^T [causal]) v on an OpenCL device; returns (output, Stats).

    method: "dense" (exact) or "sale" (int4 estimate, then block-sparse attention; arXiv 2505.24179).
    tau: SALE's threshold, one number or one per query head (<= 1e-5: a dense head).
    scale: softmax scale, default 1/sqrt(D). causal rows align to the end of the keys.
    device: a selector in clsa's grammar ("pocl:0", "intel:0", "1"; None: CLSA_DEVICE, else the
    first GPU, else the first device).
    sink_tokens, local_tokens, block_q, block_k: SALE's reference set and block sizes.
    refine_nats: the exact second look at blocks the int4 estimate drops within this many nats of
    the threshold (clsa.h, rule 5); 0 gives SALE's rule alone.
    value_prune, value_bits: attention-value pruning (Ji et al. 2021; clsa.h, clsa_shape.value_prune):
    probabilities below value_prune become 0 and the others are not renormalized; value_bits 1..8
    log-quantizes them on [value_prune, 1]. Stats.pruned_fraction then says how many were pruned.
    """
    if method not in ("dense", "sale"):
        raise ValueError(f'method must be "dense" or "sale", not {method!r}')
    q, k, v = _as_bhld(q, "q"), _as_bhld(k, "k"), _as_bhld(v, "v")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, not {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have one shape, not {k.shape} and {v.shape}")
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k must be [{B}, Hkv, Lk, {D}] for q of shape {q.shape}, not {k.shape}")
    Hkv, Lk = k.shape[1], k.shape[2]
    dev = _device(device)
    shape = L.clsa.clsa_shape_make(B, Hq, Hkv, Lq, Lk, D, L.F16 if q.dtype == np.float16 else L.F32, int(bool(causal)))
    shape.scale = 0.0 if scale is None else float(scale)
    shape.value_prune, shape.value_bits = float(value_prune), int(value_bits)
    sparsity, per_head = None, None
    if method == "sale":
        sparsity = L.Sparsity()
        L.clsa.clsa_sparsity_init(C.byref(sparsity), L.METHOD_SALE)
        sparsity.tau, per_head = _taus(tau, Hq)
        if per_head is not None:
            sparsity.tau_per_head = per_head.ctypes.data_as(C.POINTER(C.c_float))
        sparsity.sink_tokens, sparsity.local_tokens = sink_tokens, local_tokens
        sparsity.block_q, sparsity.block_k = block_q, block_k
        sparsity.refine_nats = refine_nats
    key = (q.shape, k.shape, q.dtype.str, bool(causal), shape.scale, method, float(sparsity.tau) if sparsity else 0.0,
           per_head.tobytes() if per_head is not None else b"", sink_tokens, local_tokens, block_q, block_k, refine_nats,
           shape.value_prune, shape.value_bits)
    plan = dev.plan(key, shape, sparsity)

    out = np.empty_like(q)
    bufs = []
    try:
        qm, km, vm = (dev.buffer(L.CL_MEM_READ_ONLY, x.nbytes, x.ctypes.data) for x in (q, k, v))
        bufs += [qm, km, vm]
        bufs.append(dev.buffer(L.CL_MEM_READ_WRITE, out.nbytes))
        om = bufs[-1]
        bufs.append(dev.buffer(L.CL_MEM_READ_WRITE, L.clsa.clsa_plan_workspace_size(plan)))
        ws = bufs[-1]
        stats = Stats(method=method, device=dev.name)

        def stage(name, call):
            t0 = time.perf_counter()
            _check(call(), f"running {name}", dev.ctx)
            _check(L.opencl.clFinish(dev.queue), f"waiting for {name}")
            stats.times_ms[name] = (time.perf_counter() - t0) * 1e3

        if method == "dense":
            stage("attend", lambda: L.clsa.clsa_attention(plan, dev.queue, qm, km, vm, om, ws, 0, None, None))
            stats.density = [1.0] * Hq
        else:
            stage("quantize", lambda: L.clsa.clsa_quantize(plan, dev.queue, qm, km, ws, 0, None, None))
            stage("estimate", lambda: L.clsa.clsa_estimate_mask(plan, dev.queue, qm, km, ws, None, 0, None, None))
            stage("attend", lambda: L.clsa.clsa_attention_masked(plan, dev.queue, qm, km, vm, om, ws, None,
                                                                 L.MASK_TRUST, 0, None, None))
            density = (C.c_double * Hq)()
            _check(L.clsa.clsa_mask_density(plan, dev.queue, ws, None, density), "reading the density", dev.ctx)
            stats.density = list(density)
            stats.mask = _read_mask(dev, plan, ws, B, Hq)
        if shape.value_prune > 0:
            fraction, per_head = C.c_double(), (C.c_double * Hq)()
            _check(L.clsa.clsa_pruned_fraction(plan, dev.queue, ws, C.byref(fraction), per_head),
                   "reading the pruned fraction", dev.ctx)
            stats.pruned_fraction, stats.pruned_per_head = fraction.value, list(per_head)
        _check(L.opencl.clEnqueueReadBuffer(dev.queue, om, 1, 0, out.nbytes, out.ctypes.data, 0, None, None),
               "reading the output")
    finally:
        for mem in bufs:
            L.opencl.clReleaseMemObject(mem)
    return out, stats


def _read_mask(dev, plan, ws, B, Hq):
    """The workspace's block mask as a bool array [B, Hq, q blocks, key blocks]."""
    geo, mask = L.MaskGeometry(), L.BlockMask()
    _check(L.clsa.clsa_plan_mask_geometry(plan, C.byref(geo)), "mask geometry", dev.ctx)
    _check(L.clsa.clsa_plan_workspace_mask(plan, ws, C.byref(mask)), "workspace mask", dev.ctx)
    counts = np.empty(geo.rows, np.int32)
    indices = np.empty(geo.rows * geo.num_k_blocks, np.int32)
    for array, offset in ((counts, mask.counts_offset), (indices, mask.indices_offset)):
        _check(L.opencl.clEnqueueReadBuffer(dev.queue, ws, 1, offset, array.nbytes, array.ctypes.data, 0, None, None),
               "reading the mask")
    bitmap = np.empty(geo.rows * geo.num_k_blocks, np.uint8)
    P32 = C.POINTER(C.c_int32)
    _check(L.clsa.clsa_mask_to_bitmap(counts.ctypes.data_as(P32), indices.ctypes.data_as(P32), geo.rows,
                                      geo.num_k_blocks, bitmap.ctypes.data_as(C.POINTER(C.c_uint8))),
           "converting the mask")
    return bitmap.reshape(B, Hq, geo.num_q_blocks, geo.num_k_blocks).astype(bool)

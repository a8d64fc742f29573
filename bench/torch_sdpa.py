#!/usr/bin/env python3
"""Times PyTorch's CPU scaled_dot_product_attention on q.npy, k.npy, v.npy: clsa-bench's torch anchor.

    torch_sdpa.py --q Q.npy --k K.npy --v V.npy [--causal] [--scale S] [--threads N]
                  [--repeat R] [--warmup W] [--out O.npy]

Arrays are float32, [B, H, L, D] or [H, L, D]; K and V may have fewer heads than Q (GQA/MQA).
Prints one JSON line on stdout: torch_version, threads, median_ms, times_ms, backend (the aten
kernel that ran, from the profiler), gqa (how K/V heads were matched to Q heads). Any failure,
torch not importing included, is one JSON line {"error": ...} and exit status 1, so that
clsa-bench can name the reason and go on without this anchor.
"""
import argparse
import json
import os
import statistics
import sys
import time


def fail(reason):
    print(json.dumps({"error": reason}))
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--q", required=True)
    p.add_argument("--k", required=True)
    p.add_argument("--v", required=True)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--scale", type=float, default=0.0, help="softmax scale; 0 means 1/sqrt(head_dim)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads; 0 leaves torch's default")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", help="writes the output here (float32, Q's shape)")
    return p.parse_args()


def causal_mask(torch, q_len, kv_len):
    """clsa's causal rule: row i sees keys j <= i + kv_len - q_len (rows aligned to the end of the keys).
    For q_len == kv_len that is is_causal=True; otherwise torch's is_causal aligns rows to the start,
    so the mask is given explicitly."""
    i = torch.arange(q_len).unsqueeze(1)
    j = torch.arange(kv_len).unsqueeze(0)
    return j <= i + (kv_len - q_len)


def make_attend(torch, F, q, k, v, causal, scale):
    """Returns (call, gqa): one SDPA call as a user of this torch version would write it."""
    q_len, kv_len = q.shape[-2], k.shape[-2]
    mask = causal_mask(torch, q_len, kv_len) if causal and q_len != kv_len else None
    kwargs = {"attn_mask": mask, "is_causal": causal and mask is None, "scale": scale}
    group = q.shape[-3] // k.shape[-3]
    if group == 1:
        return (lambda: F.scaled_dot_product_attention(q, k, v, **kwargs)), "none"
    try:  # enable_gqa came with torch 2.5; older versions need K/V expanded to Q's heads.
        F.scaled_dot_product_attention(q[..., :1, :], k[..., :1, :], v[..., :1, :], enable_gqa=True)
        return (lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)), "enable_gqa"
    except TypeError:
        # The expansion is inside the call: it is work such a user pays on every call.
        def expanded():
            ke, ve = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
            return F.scaled_dot_product_attention(q, ke, ve, **kwargs)
        return expanded, "repeat_interleave"


def kernel_that_ran(torch, attend):
    """The most specific scaled_dot_product aten op one call records (e.g. the CPU flash kernel or
    the math fallback); None if the profiler is not available."""
    # The profiler's start-up logs lines on stderr (kineto, a CUDA probe): noise for a label.
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                attend()
        names = [e.key for e in prof.key_averages() if "scaled_dot_product" in e.key]
    except Exception:  # the backend is only a label: its absence must not stop the timing
        return None
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    return max(names, key=len) if names else None


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn.functional as F
        import numpy as np
    except Exception as e:  # ImportError, or a broken install that fails while importing
        fail(f"{sys.executable} cannot import torch and numpy ({e}); bench/torch-venv.sh makes a venv with both")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        q, k, v = (torch.from_numpy(np.load(path)) for path in (args.q, args.k, args.v))
    except Exception as e:
        fail(f"cannot read the inputs: {e}")
    if any(t.dtype != torch.float32 for t in (q, k, v)) or not (3 <= q.dim() <= 4):
        fail("the inputs must be float32 [B, H, L, D] or [H, L, D]")
    scale = args.scale if args.scale > 0 else None  # None: torch's default, 1/sqrt(head_dim)
    with torch.inference_mode():
        attend, gqa = make_attend(torch, F, q, k, v, args.causal, scale)
        for _ in range(args.warmup):
            attend()
        times = []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            out = attend()
            times.append((time.perf_counter() - t0) * 1e3)
        backend = kernel_that_ran(torch, attend)
        if args.causal and q.shape[-2] > k.shape[-2]:
            # Rows that see no key: torch gives NaN there, clsa gives zeros (include/clsa/clsa.h).
            out[..., : q.shape[-2] - k.shape[-2], :] = 0
    if args.out:
        np.save(args.out, out.contiguous().numpy())
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(),
                      "median_ms": statistics.median(times), "times_ms": times, "backend": backend, "gqa": gqa}))


if __name__ == "__main__":
    main()

"""Where the int4 mask's misses come from: SALE's block rule on real tensors, simulated on the host
with the estimate built in several ways, each against the exact-score oracle.

    PY=$(bash bench/real/setup.sh | tail -1)
    $PY bench/real/recall.py --data /tmp/gemma16k/layer11 --tau 0.004

It reads DIR/{q,k,v}.npy as clsa-bench's npy: data does (causal, query rows aligned to the end of
the keys, scale 1/sqrt(D) unless --scale), and follows clsa.h's rule exactly, except that the
integer sums are formed as f32 products of dequantized codes (the same numbers to f32 rounding):

  S~[i,j] = scale * (Qhat'_i . Khat'_j + mean_q . K'_j + q_i . mean_k)

where X' = X - mean_x over the head's tokens and Xhat' is X' quantized to symmetric codes with one
scale per token and channel group. A row's reference set is its visible sink and local keys, on
exact scores; a block is kept when some visible element reaches m + ln(tau * l), and sink, local
and diagonal blocks always are.

Variants (--variants, comma-separated):
  int4/G     clsa's estimate: smoothed, 4-bit codes in [-7, 7], G-channel scale groups (int4/16 is
             what the library does; G = 8, 32, ..., head_dim);
  int4raw/G  the same without smoothing (X' = X);
  int8/G     8-bit codes in [-127, 127] (is it the resolution of the codes?);
  exact      the oracle's own scores (recall 1 by definition; a check of the simulation).

For every head and variant it prints recall (kept oracle blocks also kept / oracle blocks, the
definition of clsa-bench), density (kept / visible blocks), and the softmax mass that the missed
blocks carry (per row, averaged over rows). For the first variant it also splits the missed blocks
by how far their best exact score stands above the threshold, in nats: a miss at under 0.1 is a
tie, decided by any rounding; a miss far above the threshold is the estimate's error. And for the
first variant, with a slack of d nats (d in --slack): the recall and density of the rule "keep when
the estimate reaches the threshold minus d", and the share of visible blocks whose best estimate
falls in [threshold - d, threshold), which an exact second look at those blocks would have to score.
"""
import argparse
import json
import math
import os

import numpy as np
import torch


def load(path):
    x = np.load(path)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise SystemExit(f"recall.py: {path}: batch {x.shape[0]} (only 1 is supported)")
        x = x[0]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def quantize(x, bits, group):
    """x [L, D] dequantized after symmetric quantization with one scale per token and group."""
    L, D = x.shape
    pad = (-D) % group
    xp = torch.nn.functional.pad(x, (0, pad)).view(L, -1, group)
    top = (1 << (bits - 1)) - 1
    scale = xp.abs().amax(dim=2, keepdim=True) / top
    codes = torch.where(scale > 0, torch.round(xp / torch.where(scale > 0, scale, 1)), 0).clamp(-top, top)
    return (codes * scale).view(L, -1)[:, :D]


def parse_variant(name):
    if name == "exact":
        return None
    kind, _, group = name.partition("/")
    if kind not in ("int4", "int4raw", "int8") or not group.isdigit():
        raise SystemExit(f"recall.py: unknown variant {name!r}")
    return {"bits": 8 if kind == "int8" else 4, "smooth": kind != "int4raw", "group": int(group)}


def head_recall(q, k, scale, tau, variants, block_q, block_k, sink, local, chunk, slacks):
    """Per variant: recall, density, missed mass; and the first variant's misses by exact margin."""
    Lq, D = q.shape
    Lk = k.shape[0]
    offset = Lk - Lq  # causal rows aligned to the end of the keys
    mean_q, mean_k = q.mean(0), k.mean(0)
    estimates = []
    for v in variants:
        if v is None:
            estimates.append(None)
            continue
        qs, ks = (q - mean_q, k - mean_k) if v["smooth"] else (q, k)
        qh, kh = quantize(qs, v["bits"], v["group"]), quantize(ks, v["bits"], v["group"])
        shift_k = (mean_q @ ks.T) if v["smooth"] else torch.zeros(Lk)  # mean_q . K'_j
        row_k = mean_k if v["smooth"] else torch.zeros(D)              # q_i . mean_k
        estimates.append((qh, kh, shift_k, row_k))
    nkb = math.ceil(Lk / block_k)
    kpad = nkb * block_k - Lk
    stats = [{"oracle": 0, "found": 0, "kept": 0, "visible": 0, "missed_mass": 0.0} for _ in variants]
    margins = []
    slack_stats = {d: {"found": 0, "kept": 0, "border": 0} for d in slacks}
    rows_total = 0
    for r0 in range(0, Lq, chunk):
        r1 = min(Lq, r0 + chunk)
        rows = torch.arange(r0, r1)[:, None] + offset  # each row's diagonal key
        keys = torch.arange(Lk)[None, :]
        visible = keys <= rows
        exact = scale * (q[r0:r1] @ k.T)
        exact = exact.masked_fill(~visible, -math.inf)
        reference = visible & ((keys < sink) | ((rows - keys) < local))
        ref_scores = exact.masked_fill(~reference, -math.inf)
        m = ref_scores.amax(1, keepdim=True)
        l = torch.exp(ref_scores - m).sum(1, keepdim=True)
        threshold = m + math.log(tau) + torch.log(l)
        p = torch.exp(exact - exact.amax(1, keepdim=True))
        p = p / p.sum(1, keepdim=True)

        def blocks(x, reduce):
            """[rows, keys] -> [row blocks, key blocks] by reduce over each block's elements."""
            x = torch.nn.functional.pad(x, (0, kpad), value=(-math.inf if reduce == "max" else 0))
            x = x.view(-1, block_q, nkb, block_k)
            return x.amax((1, 3)) if reduce == "max" else x.sum((1, 3))

        if (r1 - r0) % block_q:
            raise SystemExit("recall.py: q_len must be a multiple of --block-q")
        forced = blocks(reference.float() + (keys == rows).float(), "sum") > 0
        vis_blocks = blocks(visible.float(), "sum") > 0
        exact_best = blocks(exact - threshold, "max")  # best exact margin of each block
        oracle = (exact_best >= 0) | forced
        p_blocks = blocks(p, "sum") / block_q  # softmax mass per row, averaged over the block's rows
        for s, est in zip(stats, estimates):
            if est is None:
                kept = oracle
            else:
                qh, kh, shift_k, row_k = est
                approx = scale * (qh[r0:r1] @ kh.T + shift_k[None, :] + (q[r0:r1] @ row_k)[:, None])
                approx = approx.masked_fill(~visible, -math.inf)
                est_best = blocks(approx - threshold, "max")
                kept = (est_best >= 0) | forced
                if s is stats[0]:
                    for d, t in slack_stats.items():
                        loose = ((est_best >= -d) | forced) & vis_blocks
                        t["found"] += int((oracle & loose).sum())
                        t["kept"] += int(loose.sum())
                        t["border"] += int(((est_best >= -d) & (est_best < 0) & ~forced & vis_blocks).sum())
            missed = oracle & ~kept & vis_blocks
            s["oracle"] += int(oracle.sum())
            s["found"] += int((oracle & kept).sum())
            s["kept"] += int((kept & vis_blocks).sum())
            s["visible"] += int(vis_blocks.sum())
            s["missed_mass"] += float((p_blocks * missed).sum()) * block_q
            if s is stats[0]:
                margins.append(exact_best[missed])
        rows_total += r1 - r0
    out = [{"recall": s["found"] / s["oracle"], "density": s["kept"] / s["visible"],
            "missed_mass_per_row": s["missed_mass"] / rows_total} for s in stats]
    margins = torch.cat(margins) if margins else torch.zeros(0)
    edges = [0.1, 0.25, 0.5, 1.0, 2.0]
    split = {f"<{e}": int((margins < e).sum()) for e in edges}
    split[f">={edges[-1]}"] = int((margins >= edges[-1]).sum())
    visible_total = stats[0]["visible"]
    slack = {str(d): {"recall": t["found"] / stats[0]["oracle"], "density": t["kept"] / visible_total,
                      "border_share": t["border"] / visible_total} for d, t in slack_stats.items()}
    return out, split, int(margins.numel()), slack


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a directory with q.npy, k.npy, v.npy")
    ap.add_argument("--tau", type=float, default=0.004)
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--variants", default="int4/16,int4/8,int4/32,int4raw/16,int8/16,exact")
    ap.add_argument("--block-q", type=int, default=64)
    ap.add_argument("--block-k", type=int, default=32)
    ap.add_argument("--sink", type=int, default=32)
    ap.add_argument("--local", type=int, default=256)
    ap.add_argument("--slack", default="0.1,0.25,0.5", help="nats, comma-separated")
    ap.add_argument("--chunk", type=int, default=1024, help="query rows per step (a multiple of --block-q)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    variants = [parse_variant(n) for n in names]
    slacks = [float(d) for d in args.slack.split(",")] if args.slack else []
    q, k = load(os.path.join(args.data, "q.npy")), load(os.path.join(args.data, "k.npy"))
    if q.shape[-1] != k.shape[-1] or q.shape[0] % k.shape[0]:
        raise SystemExit("recall.py: q and k do not fit (head_dim, or q heads not a multiple of kv heads)")
    scale = args.scale if args.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    group = q.shape[0] // k.shape[0]
    report = {"data": os.path.abspath(args.data), "tau": args.tau, "variants": names, "heads": []}
    print(f"{args.data}: q {tuple(q.shape)}, k {tuple(k.shape)}, tau {args.tau}, scale {scale:g}")
    print("head  " + "  ".join(f"{n:>26}" for n in names) + "   (recall / density / missed mass)")
    for h in range(q.shape[0]):
        per_variant, split, misses, slack = head_recall(q[h], k[h // group], scale, args.tau, variants, args.block_q,
                                                        args.block_k, args.sink, args.local, args.chunk, slacks)
        print(f"{h:4}  " + "  ".join(f"{r['recall']:.4f} / {r['density']:.3f} / {r['missed_mass_per_row']:.1e}"
                                     for r in per_variant))
        print(f"      {names[0]} misses ({misses}) by exact margin over the threshold, nats: {split}")
        print(f"      {names[0]} with slack d nats (recall / density / border share): " +
              ", ".join(f"d={d}: {t['recall']:.4f} / {t['density']:.3f} / {t['border_share']:.3f}"
                        for d, t in slack.items()))
        report["heads"].append({"head": h, "variants": dict(zip(names, per_variant)), "misses": misses,
                                "miss_margin_nats": split, "slack": slack})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

"""Dumps the queries, keys and values of Gemma 3 270M's global-attention layers, as they enter
attention (after the q/k norms and RoPE), for `clsa-bench --data npy:DIR/layerN`.

    PY=$(bash bench/real/setup.sh | tail -1)
    $PY bench/real/dump.py --tokens 8192 --out /tmp/gemma8k

The input is the first --tokens tokens of --text, by default Python's own pydoc_data/topics.py
(the text of Python's help topics, which ships with every CPython). Each global layer N gets
DIR/layerN/{q,k,v}.npy: q [1, 4, L, 256], k and v [1, 1, L, 256], float32. DIR/meta.json names the
text, the token count, the layers and the check below.

The sliding-window layers run in the exact chunked form of gemma.py (checked against the model's
SDPA on the first call); --sliding sdpa runs the model's own SDPA there instead.

Check: for every dumped layer, attention recomputed in float64 from the dumped arrays (causal,
the layer's own scale) must equal the model's attention output in that layer to 1e-4 relative
(max |diff| / max |output|); the script fails otherwise.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

import pydoc_data.topics
from gemma import SlidingLayers, load_model, read_tokens, sdpa


def reference(q, k, v, scale, rows=2048):
    """float64 causal attention with GQA, [1, Hq, L, D] from [1, Hkv, L, D], rows queries at a time
    (a 32K head's whole score matrix would be 8 GB)."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    L = q.shape[2]
    out = np.empty(q.shape)
    for h in range(q.shape[1]):
        for start in range(0, L, rows):
            end = min(L, start + rows)
            s = scale * q[0, h, start:end] @ k[0, h // group, :end].T
            s[np.arange(start, end)[:, None] < np.arange(end)[None, :]] = -np.inf
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[0, h, start:end] = (p / p.sum(axis=1, keepdims=True)) @ v[0, h // group, :end]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", default=pydoc_data.topics.__file__,
                    help="a UTF-8 text file (default: Python's pydoc_data/topics.py)")
    ap.add_argument("--sliding", choices=("chunked", "sdpa"), default="chunked")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    captured, checks = {}, {}
    sliding = SlidingLayers(args.sliding)

    def dump_attention(module, query, key, value, attention_mask, **kwargs):
        if kwargs.get("sliding_window") is not None:
            return sliding(module, query, key, value, attention_mask, **kwargs)
        out, weights = sdpa(module, query, key, value, attention_mask, **kwargs)
        captured[module.layer_idx] = (query.detach().float().numpy().copy(), key.detach().float().numpy().copy(),
                                      value.detach().float().numpy().copy(), kwargs.get("scaling", module.scaling),
                                      out.detach().float().numpy().transpose(0, 2, 1, 3).copy())
        return out, weights

    model, tokenizer, model_name = load_model(dump_attention)
    ids = read_tokens(tokenizer, args.text, args.tokens, "dump.py")
    t0 = time.time()
    with torch.no_grad():
        model.model(input_ids=ids, use_cache=False)  # no logits: they would be [L, 262144]
    print(f"forward pass over {args.tokens} tokens in {time.time() - t0:.0f} s", file=sys.stderr)
    if not captured:
        sys.exit("dump.py: no global attention layer was seen")

    worst = 0.0
    for layer, (q, k, v, scale, model_out) in sorted(captured.items()):
        d = os.path.join(args.out, f"layer{layer}")
        os.makedirs(d, exist_ok=True)
        for name, x in (("q", q), ("k", k), ("v", v)):
            np.save(os.path.join(d, f"{name}.npy"), np.ascontiguousarray(x, dtype=np.float32))
        want = reference(q, k, v, scale)
        err = float(np.abs(model_out - want).max() / np.abs(want).max())
        checks[layer] = err
        worst = max(worst, err)
        print(f"layer {layer}: q {q.shape}, k {k.shape}, scale {scale:g}, recomputed vs model attention: "
              f"max rel err {err:.2e}", file=sys.stderr)
    meta = {"model": model_name, "text": os.path.abspath(args.text), "tokens": args.tokens,
            "sliding": args.sliding, "sliding_check_rel_err": sliding.checked_error,
            "layers": sorted(captured), "scale": float(captured[min(captured)][3]),
            "check_max_rel_err": {str(k): v for k, v in checks.items()}}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if worst > 1e-4:
        sys.exit(f"dump.py: recomputed attention differs from the model's by {worst:.2e} (> 1e-4)")


if __name__ == "__main__":
    main()

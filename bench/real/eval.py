"""Runs Gemma 3 270M on a long text with the attention of its global layers replaced by clsa's,
and reports the next-token loss, the density per layer and head, and the time spent in attention.

    PY=$(bash bench/real/setup.sh | tail -1)
    $PY bench/real/eval.py --tokens 8192 --method model,dense,sale --tau 0.004 --device pocl:0 --json /tmp/e8k.json

Methods (a comma-separated list runs each in turn on the one loaded model):
  model  the model's own attention everywhere (PyTorch SDPA), the anchor;
  dense  clsa's exact attention in the global layers (5, 11 and 17);
  sale   clsa's SALE attention in the global layers, with --tau (a number, or a comma-separated list of
         numbers that each get a run) or --tau-file (per-head τ from clsa-calibrate; a layer missing
         from the file is an error).

The loss is the mean next-token cross-entropy over the targets in the last half of the tokens:
positions L/2 .. L-1 predicted from everything before them, in nats. Logits are formed 1024 positions
at a time so that a 16K run never holds the [L, 262144] logit matrix.

Sliding-window layers. SDPA with the model's [L, L] sliding mask computes every one of the L^2
scores, which makes a 16K forward take minutes. Unless --sliding sdpa is given, the sliding layers of
every method (model included) run an exact chunked form instead: queries in chunks of 512 attend to
the keys of their window only (distance < 512, the model's rule) through SDPA. The first sliding call
of each run is also computed by SDPA with the model's own mask, and the run fails if the two differ by
more than 1e-5 relative.

Attention time is the wall-clock time of the global layers' attention calls (for clsa: numpy
conversion, upload, every stage and read-back), and separately the sum of clsa's own stage times.
The first clsa call of each setting (method, tau, shape) builds its plan and compiles kernels; it is
run once untimed before the timed call.

The global layers' attention mask is not passed to clsa: for one unpadded sequence it is the causal
mask, which clsa applies itself.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import pydoc_data.topics
from gemma import SlidingLayers, load_model, read_tokens, sdpa

import clsa

# (method, tau) settings that clsa has already run once in this process. The first call of a setting
# builds its plan and, on PoCL, compiles kernels for the launch sizes; it is repeated untimed.
warmed = set()


def read_tau_file(path):
    """{layer: {head: tau}} from the format of bench/tau_file.h: 'LAYER HEAD TAU' lines, '#' comments."""
    taus = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) != 3:
                sys.exit(f"eval.py: {path}:{number}: expected 'LAYER HEAD TAU'")
            taus.setdefault(int(line[0]), {})[int(line[1])] = float(line[2])
    return taus


class Run:
    """The attention function of one forward pass, and what it saw."""

    def __init__(self, method, tau, taus_by_layer, device, sliding):
        self.method, self.tau, self.taus_by_layer, self.device = method, tau, taus_by_layer, device
        self.density, self.wall_ms, self.stage_ms = {}, {}, {}
        self.sliding = SlidingLayers(sliding)

    def __call__(self, module, query, key, value, attention_mask, **kwargs):
        scaling = kwargs.get("scaling", module.scaling)
        window = kwargs.get("sliding_window")
        if kwargs.get("softcap") is not None or getattr(module, "attn_logit_softcapping", None) is not None:
            raise RuntimeError("eval.py: attention logit soft-capping is not supported")
        if window is not None:
            return self.sliding(module, query, key, value, attention_mask, **kwargs)
        layer = module.layer_idx
        t0 = time.perf_counter()
        if self.method == "model":
            out, _ = sdpa(module, query, key, value, attention_mask, **kwargs)
            self.density[layer] = [1.0] * query.shape[1]
        else:
            q, k, v = (x.detach().float().contiguous().numpy() for x in (query, key, value))
            tau = self.tau
            if self.method == "sale" and self.taus_by_layer is not None:
                if layer not in self.taus_by_layer:
                    raise RuntimeError(f"eval.py: the tau file has no line for layer {layer}")
                heads = self.taus_by_layer[layer]
                missing = [h for h in range(q.shape[1]) if h not in heads]
                if missing:
                    raise RuntimeError(f"eval.py: the tau file has no tau for layer {layer}, heads {missing}")
                tau = [heads[h] for h in range(q.shape[1])]
            setting = (self.method, str(tau), q.shape)
            if setting not in warmed:
                clsa.attention(q, k, v, causal=True, method=self.method, tau=tau, scale=scaling, device=self.device)
                warmed.add(setting)
                t0 = time.perf_counter()
            o, stats = clsa.attention(q, k, v, causal=True, method=self.method, tau=tau, scale=scaling,
                                      device=self.device)
            out = torch.from_numpy(o).transpose(1, 2).contiguous()
            self.density[layer] = [float(d) for d in stats.density]
            self.stage_ms[layer] = {name: float(ms) for name, ms in stats.times_ms.items()}
        self.wall_ms[layer] = (time.perf_counter() - t0) * 1e3
        return out, None


def next_token_loss(model, ids):
    """Mean cross-entropy (nats) of the targets at positions L/2 .. L-1, in chunks of logits."""
    L = ids.shape[1]
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[0]
    first = L // 2
    total, count = 0.0, 0
    cap = model.config.final_logit_softcapping
    for start in range(first - 1, L - 1, 1024):
        end = min(L - 1, start + 1024)
        logits = model.lm_head(hidden[start:end]).float()
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        total += float(F.cross_entropy(logits, ids[0, start + 1:end + 1], reduction="sum"))
        count += end - start
    return total / count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--method", required=True, help="model, dense or sale; or a comma-separated list")
    ap.add_argument("--tau", default="0.004", help="SALE's global tau, or a comma-separated list (a run each)")
    ap.add_argument("--tau-file", help="per-head tau from clsa-calibrate (replaces --tau)")
    ap.add_argument("--device", default=None, help="clsa device selector (pocl:0, intel:0, ...)")
    ap.add_argument("--text", default=pydoc_data.topics.__file__,
                    help="a UTF-8 text file (default: Python's pydoc_data/topics.py)")
    ap.add_argument("--sliding", choices=("chunked", "sdpa"), default="chunked")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", required=True, help="where to write the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.method.split(",")
    for m in methods:
        if m not in ("model", "dense", "sale"):
            sys.exit(f"eval.py: unknown method {m!r} (model, dense, sale)")
    taus_by_layer = read_tau_file(args.tau_file) if args.tau_file else None
    try:
        global_taus = [float(t) for t in args.tau.split(",")]
    except ValueError:
        sys.exit(f"eval.py: --tau must be numbers, not {args.tau!r}")
    if any(not math.isfinite(t) or t < 0 for t in global_taus):
        sys.exit("eval.py: --tau must be finite and >= 0")

    current = {}
    model, tokenizer, model_name = load_model(lambda *a, **kw: current["run"](*a, **kw))
    ids = read_tokens(tokenizer, args.text, args.tokens, "eval.py")

    plan = []
    for m in methods:
        if m != "sale":
            plan.append((m, None))
        elif taus_by_layer is not None:
            plan.append((m, "file"))
        else:
            plan += [(m, t) for t in global_taus]
    results = {"model": model_name, "text": os.path.abspath(args.text), "tokens": args.tokens,
               "loss_targets": f"{args.tokens // 2}..{args.tokens - 1}", "sliding": args.sliding,
               "tau_file": os.path.abspath(args.tau_file) if args.tau_file else None, "runs": []}
    for method, tau in plan:
        run = Run(method, tau if tau != "file" else None, taus_by_layer if tau == "file" else None,
                  args.device, args.sliding)
        current["run"] = run
        t0 = time.time()
        with torch.no_grad():
            loss = next_token_loss(model, ids)
        entry = {"method": method, "tau": tau, "loss": loss, "forward_s": time.time() - t0,
                 "attention_wall_ms": sum(run.wall_ms.values()),
                 "attention_stage_ms": sum(sum(s.values()) for s in run.stage_ms.values()) if run.stage_ms else None,
                 "per_layer": {str(layer): {"density": run.density[layer], "wall_ms": run.wall_ms[layer],
                                            "stage_ms": run.stage_ms.get(layer)} for layer in sorted(run.density)},
                 "sliding_check_rel_err": run.sliding.checked_error,
                 "device": clsa._device(args.device).name if method != "model" else "torch"}
        dens = {layer: round(float(np.mean(d)), 3) for layer, d in run.density.items()}
        print(f"{method:5} tau={tau}: loss {loss:.5f} nats, attention {entry['attention_wall_ms']:.0f} ms wall"
              f" ({entry['attention_stage_ms'] or 0:.0f} ms in clsa stages), mean density by layer {dens},"
              f" forward {entry['forward_s']:.0f} s", file=sys.stderr)
        results["runs"].append(entry)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Draws clsa-bench JSON (from bench/sweep.sh) as PNG plots with gnuplot.

usage: python3 bench/plot.py JSONDIR OUTDIR

Writes, per run of bench/sweep.sh:
  speedup_vs_length.png   SALE's speed-up over clsa dense against sequence length, one line per
                          OpenCL implementation (dense is 1 by definition; PyTorch SDPA appears
                          when the JSON holds a "torch_sdpa" anchor)
  stage_times.png         time per stage (quantize, estimate, attend) against dense, per length
                          and implementation
  attend_vs_density.png   attend time / dense time against the kept-block density (SALE masks and
                          random caller masks), with
                          the ideal (= density) and the 1.15 x density goal
Only the Python standard library and gnuplot (Debian: gnuplot-nox) are needed."""
import glob
import json
import os
import shutil
import subprocess
import sys


def load(jsondir):
    runs = []
    for path in sorted(glob.glob(os.path.join(jsondir, "*.json"))):
        with open(path) as f:
            entries = json.load(f)
        # bench/sweep.sh names files KIND_SELECTOR_VALUE.json; the selector tells implementations
        # apart where device names do not (PoCL and Intel's runtime both report the CPU's name).
        parts = os.path.basename(path)[:-len(".json")].split("_")
        kind, selector = parts[0], ":".join(parts[1:-1])
        for e in entries:
            e["kind"] = kind
            e["device"] = f"{selector} ({e['device']})" if selector else e["device"]
            runs.append(e)
    return runs


def by_device(runs, kind):
    out = {}
    for e in runs:
        if e["kind"] == kind:
            out.setdefault(e["device"], []).append(e)
    return out


def write_table(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join(str(x) for x in row) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    jsondir, outdir = sys.argv[1], sys.argv[2]
    if not shutil.which("gnuplot"):
        sys.exit("plot.py: gnuplot is not installed (Debian: apt-get install gnuplot-nox)")
    runs = load(jsondir)
    if not runs:
        sys.exit(f"plot.py: no JSON files in {jsondir}")
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(outdir, "data")
    os.makedirs(data, exist_ok=True)
    script = ["set terminal pngcairo size 1000,620 font ',11'", "set grid", "set key outside right"]

    # 1. Speed-up against length.
    plots = []
    for i, (dev, es) in enumerate(sorted(by_device(runs, "length").items())):
        dense = {e["seq"]: e["time_ms"] for e in es if e["method"] == "dense"}
        for method in ("sale", "torch_sdpa"):
            rows = sorted((e["seq"], dense[e["seq"]] / e["time_ms"]) for e in es
                          if e["method"] == method and e["seq"] in dense)
            if rows:
                name = os.path.join(data, f"speedup_{i}_{method}.dat")
                write_table(name, rows)
                label = "SALE" if method == "sale" else "PyTorch SDPA"
                plots.append(f"'{name}' using 1:2 with linespoints lw 2 title '{label}, {dev}'")
    if plots:
        script += [f"set output '{os.path.join(outdir, 'speedup_vs_length.png')}'",
                   "set title 'Speed-up over clsa dense (sparse preset, 2 heads, head\\_dim 128, causal, tau 0.004)'",
                   "set xlabel 'sequence length (tokens)'", "set ylabel 'speed-up over dense'",
                   "set logscale x 2", "set yrange [0:*]",
                   "plot 1 with lines dt 2 lc rgb 'black' title 'dense', " + ", ".join(plots), "unset logscale x"]

    # 2. Time per stage, per implementation and length (clustered bars).
    devices = sorted(by_device(runs, "length").items())
    if devices:
        script += [f"set output '{os.path.join(outdir, 'stage_times.png')}'",
                   f"set multiplot layout 1,{len(devices)} title 'Time per stage (sparse preset, tau 0.004)'",
                   "set style data histograms", "set style histogram rowstacked", "set style fill solid 0.8 border -1",
                   "set boxwidth 0.7", "set ylabel 'ms'", "set xlabel 'sequence length'", "set key top left inside",
                   "unset logscale x", "set yrange [0:*]"]
        for i, (dev, es) in enumerate(devices):
            dense = {e["seq"]: e["time_ms"] for e in es if e["method"] == "dense"}
            rows = []
            for e in sorted((e for e in es if e["method"] == "sale"), key=lambda e: e["seq"]):
                rows.append((f"{e['seq'] // 1024}K", e["quant_ms"], e["estimate_ms"], e["attend_ms"],
                             dense.get(e["seq"], 0)))
            name = os.path.join(data, f"stages_{i}.dat")
            write_table(name, rows)
            script += [f"set title '{dev}'",
                       f"plot newhistogram 'SALE stages', '{name}' using 2:xtic(1) title 'quantize', "
                       "'' using 3 title 'estimate', '' using 4 title 'attend', "
                       f"newhistogram 'dense', '{name}' using 5:xtic(1) title 'dense'"]
        script += ["unset multiplot"]

    # 3. Attend time against density: SALE masks (density sweep) and random caller masks.
    plots = []
    for kind, method, label, style in (("density", "sale", "SALE masks", "pt 7"), ("random", "random:", "random masks", "pt 5 dt 4")):
        for i, (dev, es) in enumerate(sorted(by_device(runs, kind).items())):
            dense = {e["seq"]: e["time_ms"] for e in es if e["method"] == "dense"}
            rows = sorted((e["density"], e["attend_ms"] / dense[e["seq"]]) for e in es
                          if e["method"].startswith(method) and e["seq"] in dense)
            if rows:
                name = os.path.join(data, f"{kind}_{i}.dat")
                write_table(name, rows)
                plots.append(f"'{name}' using 1:2 with linespoints {style} lw 2 title '{label}, {dev}'")
    if plots:
        script += [f"set output '{os.path.join(outdir, 'attend_vs_density.png')}'",
                   "set style data lines", "set key outside right",
                   "set title 'Sparse attention time against density (16K; SALE masks at tau 0.001-0.128, random masks)'",
                   "set xlabel 'kept-block density'", "set ylabel 'attend time / dense time'",
                   "set xrange [0:1]", "set yrange [0:*]",
                   "plot x with lines dt 2 lc rgb 'black' title 'ideal: density', "
                   "1.15 * x with lines dt 3 lc rgb 'red' title 'goal: 1.15 x density', " + ", ".join(plots)]
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)
    for png in ("speedup_vs_length.png", "stage_times.png", "attend_vs_density.png"):
        path = os.path.join(outdir, png)
        if os.path.exists(path):
            print(path)


if __name__ == "__main__":
    main()

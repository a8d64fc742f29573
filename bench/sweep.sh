#!/usr/bin/env bash
# Runs the benchmark sweeps that bench/plot.sh draws, on the sparse preset, writing one JSON file
# per run into OUTDIR:
#   - length sweep: dense, SALE (tau 0.004) and PyTorch's CPU SDPA (when torch imports; see
#     bench/torch-venv.sh) at 4K, 8K, 16K and 32K tokens;
#   - density sweep at 16K: SALE with tau 0.001 to 0.128, and random caller masks (random:P, each
#     visible key block kept with probability P, diagonal blocks always): attend time against density.
# 2 heads, head_dim 128, causal, f32. Devices are selectors in clsa_select_device's grammar
# (default: every device clinfo lists, by index). Set OCL_ICD_VENDORS as for the tests to reach
# the Intel runtime: OCL_ICD_VENDORS=$(bash scripts/intel-opencl.sh) bash bench/sweep.sh OUT
#   bash bench/sweep.sh OUTDIR [SELECTOR ...]
set -euo pipefail
out=${1:?usage: bench/sweep.sh OUTDIR [SELECTOR ...]}
shift
bench=$(dirname "$0")/../build/bench/clsa-bench
mkdir -p "$out"
devices=("$@")
if [ ${#devices[@]} -eq 0 ]; then
    n=$(clinfo -l 2>/dev/null | grep -c "Device #" || true)
    for ((i = 0; i < n; ++i)); do devices+=("$i"); done
fi
common=(--heads 2 --head-dim 128 --causal --data sparse --repeat 3 --warmup 1 --sgemm 1024)
for dev in "${devices[@]}"; do
    tag=${dev//[^A-Za-z0-9]/_}
    for len in 4096 8192 16384 32768; do
        "$bench" --device "$dev" --seq "$len" --method dense,sale --tau 0.004 --anchors=torch "${common[@]}" \
            --json "$out/length_${tag}_${len}.json"
    done
    for tau in 0.001 0.004 0.016 0.064 0.128; do
        "$bench" --device "$dev" --seq 16384 --method dense,sale --tau "$tau" "${common[@]}" \
            --json "$out/density_${tag}_${tau}.json"
    done
    "$bench" --device "$dev" --seq 16384 --method random:0.05,random:0.1,random:0.2,random:0.3,random:0.5 \
        "${common[@]}" --json "$out/random_${tag}_masks.json"
done

#!/usr/bin/env bash
# Creates a Python venv with torch and numpy from PyPI for clsa-bench's torch anchor
# (bench/torch_sdpa.py), by default at build/torch-venv, where clsa-bench looks for it.
# PyPI's Linux torch wheel brings its CUDA libraries: several GB on disk, a couple of minutes.
# Torch is only ever an optional anchor: nothing in the build or the tests needs it.
#   bash bench/torch-venv.sh [VENV_DIR]
set -euo pipefail
venv=${1:-$(dirname "$0")/../build/torch-venv}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch numpy
"$venv/bin/python" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__, "in", __import__("sys").prefix)'

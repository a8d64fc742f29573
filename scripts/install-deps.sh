#!/usr/bin/env bash
# Installs the Debian packages clsa needs to build, test and benchmark, when missing.
# As root (or with password-less sudo) it installs them; otherwise it names what to install.
set -euo pipefail
packages=(gcc pkg-config meson ninja-build python3 ocl-icd-opencl-dev opencl-headers pocl-opencl-icd
          libxxhash-dev libcmocka-dev oclgrind libopenblas-dev libclblast-dev gnuplot-nox clinfo clang libclang-rt-14-dev python3-venv
          libpng-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo)
else
    echo "clsa needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

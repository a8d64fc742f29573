#!/usr/bin/env bash
# Installs Intel's OpenCL CPU runtime from PyPI (intel-opencl-rt, intel-cmplr-lib-rt) into a
# project-local virtual environment, with no system-wide change, and writes an ICD vendors
# directory that lists it beside the system's own ICDs (PoCL). Prints that directory; use it as
#   OCL_ICD_VENDORS=$(bash scripts/intel-opencl.sh) clinfo -l
# The runtime is under Intel's end-user licence: it is installed at test time, never vendored.
# Exits non-zero when the install fails or the runtime does not show up as a platform.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CLSA_INTEL_OPENCL_DIR:-$PWD/.intel-opencl}
venv=$dir/venv
if [ ! -f "$venv/lib/libintelocl.so" ]; then
    echo "installing Intel's OpenCL CPU runtime from PyPI into $venv (about 800 MB)" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check intel-opencl-rt intel-cmplr-lib-rt >&2
fi
# The wheel's own .icd names a path on Intel's build machine, so clsa writes its own. Only the
# vendors directory is needed: libintelocl.so finds its libraries through its RUNPATH ($ORIGIN),
# and LD_LIBRARY_PATH stays unset so that the venv's own libOpenCL.so never replaces the system's
# ICD loader.
mkdir -p "$dir/vendors"
echo "$venv/lib/libintelocl.so" > "$dir/vendors/intel-cpu.icd"
for icd in /etc/OpenCL/vendors/*.icd; do
    [ -e "$icd" ] && cp "$icd" "$dir/vendors/"
done
if ! OCL_ICD_VENDORS=$dir/vendors clinfo -l 2>/dev/null | grep -q "Intel(R) OpenCL"; then
    echo "Intel's OpenCL runtime installed in $venv but is not listed by clinfo" >&2
    exit 1
fi
echo "$dir/vendors"

#!/usr/bin/env bash
# Quick start 2: installs what is missing, builds clsa, and runs the whole test suite:
#   1. every test on PoCL (the default device);
#   2. the kernel tests at small shapes under oclgrind --data-races --uninitialized;
#   3. every test again with AddressSanitizer and UndefinedBehaviorSanitizer on the host code;
#   4. each libFuzzer target (tests/fuzz) for 100,000 inputs, built with clang, ASan and UBSan.
# With no OpenCL device the run fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
clinfo -l || true
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
meson test -C build --print-errorlogs
meson test -C build --setup oclgrind --suite kernels --print-errorlogs
[ -f build-sanitize/build.ninja ] || meson setup build-sanitize -Db_sanitize=address,undefined -Dbuildtype=debug -Dbench=false
ninja -C build-sanitize
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 meson test -C build-sanitize --print-errorlogs
[ -f build-fuzz/build.ninja ] || CC=clang CFLAGS=-fsanitize=fuzzer-no-link meson setup build-fuzz -Dfuzz=true \
    -Dtests=false -Dbench=false -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
ninja -C build-fuzz
meson test -C build-fuzz --print-errorlogs
# One closing line over the three stages, counted from meson's JSON logs.
python3 - build/meson-logs/testlog.json build/meson-logs/testlog-oclgrind.json build-sanitize/meson-logs/testlog.json \
    build-fuzz/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = 0
for path in sys.argv[1:]:
    for line in open(path):
        if line.strip():
            ok = json.loads(line)["result"] in ("OK", "EXPECTEDFAIL")
            passed, failed = passed + ok, failed + (not ok)
print(f"clsa: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

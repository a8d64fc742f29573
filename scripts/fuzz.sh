#!/usr/bin/env bash
# Runs clsa's libFuzzer targets (tests/fuzz) for longer than the test command does.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [--merge]
# Default 600 s each. --merge adds the new inputs that widen coverage to tests/fuzz/corpus/.
# A crash is written to build-fuzz/tests/fuzz/crash-<target>-<hash> and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
merge=${2:-}
bash scripts/install-deps.sh
[ -f build-fuzz/build.ninja ] || CC=clang CFLAGS=-fsanitize=fuzzer-no-link meson setup build-fuzz -Dfuzz=true \
    -Dtests=false -Dbench=false -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
ninja -C build-fuzz
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for target in npy cache_entry validate; do
    work=build-fuzz/tests/fuzz/long-units/$target
    mkdir -p "$work"
    echo "== fuzz_$target for ${seconds}s"
    build-fuzz/tests/fuzz/fuzz_$target -max_total_time="$seconds" -artifact_prefix=build-fuzz/tests/fuzz/crash-$target- \
        "$work" tests/fuzz/corpus/$target
    if [ "$merge" = --merge ]; then
        build-fuzz/tests/fuzz/fuzz_$target -merge=1 tests/fuzz/corpus/$target "$work"
    fi
done

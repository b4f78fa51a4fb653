#!/usr/bin/env bash
# Builds dgc and runs the whole test suite: the GoogleTest suite (ctest), the
# trace tests again under ASan+UBSan, and each libFuzzer target for a bounded
# time. Run from anywhere; dependencies come from deploy/install-deps.sh.
#   DGC_FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips fuzzing)
#   DGC_SKIP_ASAN=1    skip the sanitizer build
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }

step "build (RelWithDebInfo) in build/"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$jobs"

step "test suite"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

if [[ "${DGC_SKIP_ASAN:-0}" != 1 ]]; then
  step "trace tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDGC_SANITIZE=ON -DDGC_TRACE_ONLY=ON >/dev/null
  ninja -C build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900
fi

secs=${DGC_FUZZ_SECONDS:-20}
if [[ "$secs" != 0 ]]; then
  step "fuzz targets, ${secs}s each (build-fuzz/)"
  tests/fuzz/run_fuzzers.sh "$secs" build-fuzz
fi
echo
echo "all tests passed"

#!/usr/bin/env bash
# Builds dgc and runs the whole test suite: the GoogleTest suite (ctest), the
# trace tests again under ASan+UBSan, and each libFuzzer target for a bounded
# time. Run from anywhere; dependencies come from deploy/install-deps.sh.
# Ends with one line of counts over every step:
#   tests: N passed, N failed, N skipped
# A test skips only when ../shared/data is absent or for what this machine
# cannot have (a GPU); a missing tool or library that install-deps.sh
# installs is a failure.
#   DGC_FUZZ_SECONDS   seconds per fuzz target (default 20; 0 skips fuzzing)
#   DGC_SKIP_ASAN=1    skip the sanitizer build
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)
passed=0 failed=0 skipped=0 status=0

step() { printf '\n== %s\n' "$*"; }

# ctest over BUILD_DIR, adding its counts to the totals; its exit status is
# kept, not fatal, so the counts are printed whatever happens.
run_ctest() {
  local dir=$1 log rc=0 total fail skip
  shift
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 "$@" 2>&1 | tee "$log" || rc=$?
  total=$(sed -nE 's/.* tests? failed out of ([0-9]+).*/\1/p' "$log" | tail -n 1)
  fail=$(sed -nE 's/.*, ([0-9]+) tests? failed out of.*/\1/p' "$log" | tail -n 1)
  skip=$(grep -cE '^[[:space:]]*[0-9]+ - .*\(Skipped\)' "$log" || true)
  rm -f "$log"
  if [[ -z "$total" ]]; then
    echo "run.sh: ctest in $dir printed no summary (exit $rc)" >&2
    failed=$((failed + 1)) status=1
    return
  fi
  passed=$((passed + total - fail - skip)) failed=$((failed + fail)) skipped=$((skipped + skip))
  if ((rc != 0 || fail > 0)); then status=1; fi
  if ((total == 0)); then
    echo "run.sh: ctest in $dir ran no test" >&2
    status=1
  fi
}

step "build (RelWithDebInfo) in build/"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$jobs"

step "test suite"
run_ctest build

if [[ "${DGC_SKIP_ASAN:-0}" != 1 ]]; then
  step "trace tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDGC_SANITIZE=ON -DDGC_TRACE_ONLY=ON >/dev/null
  ninja -C build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan
fi

secs=${DGC_FUZZ_SECONDS:-20}
if [[ "$secs" != 0 ]]; then
  step "fuzz targets, ${secs}s each (build-fuzz/)"
  fuzz_log=$(mktemp)
  fuzz_rc=0
  tests/fuzz/run_fuzzers.sh "$secs" build-fuzz 2>&1 | tee "$fuzz_log" || fuzz_rc=$?
  fuzz_ok=$(grep -c 'stat::number_of_executed_units' "$fuzz_log" || true)
  fuzz_bad=$(grep -c '^fuzz_.* FAILED' "$fuzz_log" || true)
  rm -f "$fuzz_log"
  passed=$((passed + fuzz_ok)) failed=$((failed + fuzz_bad))
  if ((fuzz_rc != 0)); then
    status=1
    ((fuzz_bad > 0)) || failed=$((failed + 1))
  fi
fi
echo
if ((status == 0)); then echo "all tests passed"; else echo "some tests FAILED (see above)"; fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status

#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a bounded time.
# Usage: tests/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET] [BUILD_DIR]
# Seeds: small captures and chunks the test suite makes, plus the edge cases
# of ../shared/data when present. Crashes land in BUILD_DIR/fuzz-artifacts/.
set -euo pipefail
secs=${1:-30}
build=${2:-build-fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cmake -S . -B "$build" -G Ninja -DDGC_FUZZ=ON -DDGC_BUILD_BENCH=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" fuzz_parse_frame fuzz_chunk_decode fuzz_pcap_reader fuzz_wire fuzz_skeleton_decode fuzz_model_format \
  fuzz_library_records fuzz_generate_segment >/dev/null

corpus="$build/fuzz-corpus"
art="$build/fuzz-artifacts"
mkdir -p "$corpus"/{parse_frame,chunk_decode,pcap_reader} "$art"
mkdir -p "$corpus/wire" "$corpus/skeleton_decode" "$corpus/model_format" "$corpus/library_records" "$corpus/generate_segment"
# Seeds for the reader: the shared edge cases (small ones).
if [[ -d ../shared/data/edge-cases ]]; then
  find ../shared/data/edge-cases -type f -size -64k -exec cp -f {} "$corpus/pcap_reader/" \;
fi
# Seeds for the chunk decoder and the parser come from the fuzz_seeds tool
# when built (ordinary build), else libFuzzer starts from nothing.
if [[ -x build/tests/fuzz/dgc-fuzz-seeds ]]; then
  build/tests/fuzz/dgc-fuzz-seeds "$corpus"
fi

status=0
for t in parse_frame chunk_decode pcap_reader wire skeleton_decode model_format library_records generate_segment; do
  echo "fuzz_$t: ${secs}s"
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$art/$t-" -print_final_stats=1 "$corpus/$t" 2>"$art/$t.log"; then
    echo "fuzz_$t FAILED: see $art/$t.log"; tail -30 "$art/$t.log"; status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$art/$t.log" | tail -2
  fi
done
exit $status

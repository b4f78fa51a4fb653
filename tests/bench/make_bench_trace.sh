#!/usr/bin/env bash
# Builds the 1M-packet benchmark trace (a dense one-hour link overlaid from
# one-hour windows of the real dev captures) unless it already exists, and
# prints what it holds. Never commit the trace: it lives under build*/.
#
#   tests/bench/make_bench_trace.sh [OUT.pcap] [extra dgc-make-bench-trace flags]
#
# Environment: DGC_DATA_DIR (default ../shared/data from the repository root),
# DGC_BUILD_DIR (default: the first of build-bench, build holding the tool,
# else build, where it is configured and built), FORCE=1 to rebuild the trace.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/build/bench/bench-1m.pcap}"
[[ $# -gt 0 ]] && shift
data="${DGC_DATA_DIR:-$root/../shared/data}"

if [[ -z "${DGC_BUILD_DIR:-}" ]]; then
  for d in "$root/build-bench" "$root/build"; do
    if [[ -x "$d/tests/bench/dgc-make-bench-trace" ]]; then DGC_BUILD_DIR="$d"; break; fi
  done
fi
build="${DGC_BUILD_DIR:-$root/build}"
tool="$build/tests/bench/dgc-make-bench-trace"

if [[ -s "$out" && "${FORCE:-0}" != 1 ]]; then
  echo "bench trace already there: $out ($(stat -c %s "$out") bytes); FORCE=1 rebuilds it"
  if [[ -s "$out.json" ]]; then
    python3 - "$out.json" <<'EOF' 2>/dev/null || true
import json, sys
m = json.load(open(sys.argv[1]))
print(f"packets    {m['packets']} ({m['ipv4_packets']} IPv4, {m['ipv6_packets']} IPv6)")
print(f"span       {m['first_packet']} .. {m['last_packet']} ({m['span_seconds']:.1f} s)")
print(f"overlay    {m['window_copies']} copies of {m['windows_used']}/{m['windows_available']} "
      f"windows from {m['source_files']} files, {m['passes']} passes, seed {m['seed']}")
EOF
  fi
  exit 0
fi
if [[ ! -d "$data" ]]; then
  echo "no dev captures at $data (set DGC_DATA_DIR)" >&2
  exit 1
fi
if [[ ! -x "$tool" ]]; then
  echo "building dgc-make-bench-trace in $build"
  if [[ ! -f "$build/build.ninja" && ! -f "$build/Makefile" ]]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$build" --target dgc-make-bench-trace
fi

echo "building $out from $data"
start=$(date +%s%N)
"$tool" --data "$data" --out "$out" --manifest "$out.json" --quiet "$@"
end=$(date +%s%N)
awk -v ns=$((end - start)) 'BEGIN { printf "took       %.1f s\n", ns / 1e9 }'

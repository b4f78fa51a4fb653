#!/usr/bin/env bash
# Ingest benchmark: `dgc-ingest FILE --out SPOOL` (pcap to chunks on disk)
# beside libpcap's raw read rate, `tcpdump -r FILE -w /dev/null`, on the same
# file in the same run. Each is run RUNS times, alternating which goes first;
# the table shows the median wall time (and the best), packets/s, and the
# ratio of dgc-ingest's rate to tcpdump's. DESIGN.md's goal: ratio >= 0.5.
#
#   tests/bench/ingest_bench.sh [TRACE.pcap]
#
# TRACE defaults to build/bench/bench-1m.pcap, built by make_bench_trace.sh
# when missing. Environment:
#   RUNS=5           runs of each tool
#   DGC_BUILD_DIR    where dgc-ingest is (default: build-bench, else build)
#   SPOOL_DIR        parent of the per-run spools (default: next to the
#                    trace, so chunks are written and fsynced to a real disk;
#                    a tmpfs such as /dev/shm leaves the disk out)
#   CHECK=1          exit 1 when the ratio is below 0.5
#   DGC_INGEST, TCPDUMP  the binaries (default: the build's, and tcpdump on PATH)
#   WRAP             a command prefix for both, e.g. "taskset -c 0,1" to pin
#                    them to two cores on a bigger machine
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
trace="${1:-$root/build/bench/bench-1m.pcap}"
runs="${RUNS:-5}"

if [[ ! -s "$trace" ]]; then
  if [[ $# -gt 0 ]]; then echo "no such trace: $trace" >&2; exit 1; fi
  "$root/tests/bench/make_bench_trace.sh" "$trace"
fi
if [[ -z "${DGC_BUILD_DIR:-}" ]]; then
  for d in "$root/build-bench" "$root/build"; do
    if [[ -x "$d/ingest/dgc-ingest" ]]; then DGC_BUILD_DIR="$d"; break; fi
  done
fi
ingest="${DGC_INGEST:-${DGC_BUILD_DIR:-$root/build}/ingest/dgc-ingest}"
if [[ ! -x "$ingest" ]]; then
  echo "dgc-ingest not built: cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release &&" \
       "ninja -C build-bench dgc-ingest" >&2
  exit 1
fi
read -r -a tcpdump <<<"${TCPDUMP:-tcpdump}"
read -r -a wrap <<<"${WRAP:-}"
command -v "${tcpdump[0]}" >/dev/null || { echo "tcpdump is not installed" >&2; exit 1; }

spool_parent="${SPOOL_DIR:-$(dirname "$trace")}"
mkdir -p "$spool_parent"
work="$(mktemp -d "$spool_parent/ingest-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cat "$trace" >/dev/null  # both read it from the page cache

# Runs a command; appends "wall cpu" seconds (cpu = user + sys) to $2.
TIMEFORMAT='%3R %3U %3S'
timed() {
  local out=$1; shift
  local t
  t=$( { time "$@" >"$work/stdout" 2>"$work/stderr"; } 2>&1 ) || {
    echo "failed: $*" >&2; cat "$work/stderr" >&2; exit 1; }
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' <<<"$t" >>"$out"
}
run_tcpdump() { timed "$work/tcpdump.times" "${wrap[@]}" "${tcpdump[@]}" -r "$trace" -w /dev/null; }
# A fresh spool each run, all removed at the end: ext4 avoids reusing inodes
# freed in the last minutes (recently_deleted), so removing the last run's
# tens of thousands of chunk files before the next run would bill that search
# to dgc-ingest.
dgc_runs=0
run_dgc() {
  dgc_runs=$((dgc_runs + 1))
  timed "$work/dgc.times" "${wrap[@]}" "$ingest" "$trace" --out "$work/spool.$dgc_runs" --no-progress -o json
  cp "$work/stdout" "$work/summary.json"
}

for ((i = 1; i <= runs; i++)); do
  if ((i % 2)); then run_tcpdump; run_dgc; else run_dgc; run_tcpdump; fi
done

# Packets in the file: dgc-ingest's frame count (every record libpcap returns).
json_field() { sed -n "s/^ *\"$1\": *\([0-9.]*\),*$/\1/p" "$work/summary.json" | head -1; }
packets=$(json_field frames)
ip_packets=$(json_field ip_packets)
chunks=$(json_field chunks)
spool_bytes=$(json_field spool_bytes)

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
best() { sort -n | head -1; }
tcp_med=$(cut -d' ' -f1 "$work/tcpdump.times" | median)
tcp_best=$(cut -d' ' -f1 "$work/tcpdump.times" | best)
tcp_cpu=$(cut -d' ' -f2 "$work/tcpdump.times" | median)
dgc_med=$(cut -d' ' -f1 "$work/dgc.times" | median)
dgc_best=$(cut -d' ' -f1 "$work/dgc.times" | best)
dgc_cpu=$(cut -d' ' -f2 "$work/dgc.times" | median)

awk -v trace="$trace" -v size="$(stat -c %s "$trace")" -v packets="$packets" -v ip="$ip_packets" \
    -v chunks="$chunks" -v spool="$spool_bytes" -v runs="$runs" -v cores="$(nproc)" \
    -v load="$(cut -d' ' -f1-3 /proc/loadavg)" -v spooldir="$spool_parent" \
    -v tm="$tcp_med" -v tb="$tcp_best" -v tc="$tcp_cpu" \
    -v dm="$dgc_med" -v db="$dgc_best" -v dc="$dgc_cpu" -v check="${CHECK:-0}" '
function rate(t) { return t > 0 ? packets / t : 0 }
BEGIN {
  printf "input      %s (%.1f MB, %d packets, %d IP)\n", trace, size / 1e6, packets, ip
  printf "machine    %d cores, load average %s; %d runs each, spool under %s\n", cores, load, runs, spooldir
  printf "dgc-ingest wrote %d chunks, %.1f MB\n\n", chunks, spool / 1e6
  printf "%-32s %9s %9s %13s %9s\n", "", "median s", "best s", "packets/s", "cpu s"
  printf "%-32s %9.3f %9.3f %13.0f %9.3f\n", "tcpdump -r FILE -w /dev/null", tm, tb, rate(tm), tc
  printf "%-32s %9.3f %9.3f %13.0f %9.3f\n", "dgc-ingest FILE --out SPOOL", dm, db, rate(dm), dc
  ratio = dm > 0 ? tm / dm : 0
  printf "\nratio      dgc-ingest / tcpdump packets/s = %.2f (median), %.2f (best); goal >= 0.50: %s\n",
         ratio, (db > 0 ? tb / db : 0), (ratio >= 0.5 ? "met" : "NOT met")
  exit (check == 1 && ratio < 0.5) ? 1 : 0
}'

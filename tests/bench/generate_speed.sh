#!/usr/bin/env bash
# Regeneration speed and what it costs in fidelity (issue: step 3): per
# library, `dgcctl generate` with --threads 1 and with every core, at each
# --exact-templates value (0: every exact flow sampled), best of REPEAT runs;
# then `dgcctl eval` of each output against the real trace.
#
#   tests/bench/generate_speed.sh NAME=LIBRARY:REAL.pcap [...]
#
# TEMPLATES="0 8" picks the values, REPEAT=2 the runs per cell. Prints one
# row per (library, templates, threads): packets out, wall seconds, packets/s,
# the ratio to templates 0 on the same thread count, the regenerated trace's
# mean and worst metric. Run it by hand on an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ctl="${DGCCTL:-$root/build/coordinator/dgcctl/dgcctl}"
templates=(${TEMPLATES:-0 8})
repeat=${REPEAT:-2}
[[ $# -gt 0 ]] || { sed -n 2,12p "$0" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-14s %9s %7s %9s %8s %10s %6s %7s  %s\n' trace templates threads packets wall_s packets/s ratio mean worst
for spec in "$@"; do
  name=${spec%%=*}
  rest=${spec#*=}
  lib=${rest%%:*}
  real=${rest#*:}
  for threads in 1 0; do
    base_rate=""
    for m in "${templates[@]}"; do
      best=""
      for ((r = 0; r < repeat; r++)); do
        line=$("$ctl" generate --library "$lib" --threads "$threads" --exact-templates "$m" -o "$tmp/out.pcap" 2>&1 |
          grep '^generated' || true)
        [[ -n "$line" ]] || { echo "$name: generate failed" >&2; exit 1; }
        # "generated N packets from C chunk(s) in S s (R packets/s), ..."
        s=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<<"$line")
        n=$(sed -E 's/^generated ([0-9]+) packets.*/\1/' <<<"$line")
        if [[ -z "$best" ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s; fi
      done
      rate=$(awk -v n="$n" -v s="$best" 'BEGIN { printf "%.0f", n / s }')
      [[ -z "$base_rate" ]] && base_rate=$rate
      ratio=$(awk -v a="$rate" -v b="$base_rate" 'BEGIN { printf "%.2f", a / b }')
      ev=$("$ctl" eval "$real" "$tmp/out.pcap" 2>&1)
      mean=$(awk '/^ *mean \(/ { print $NF }' <<<"$ev")
      worst=$(awk '/^ *worst / { print $2, $3 }' <<<"$ev")
      printf '%-14s %9s %7s %9s %8s %10s %6s %7s  %s\n' "$name" "$m" "$([[ $threads == 0 ]] && nproc || echo 1)" \
        "$n" "$best" "$rate" "$ratio" "$mean" "$worst"
    done
  done
done

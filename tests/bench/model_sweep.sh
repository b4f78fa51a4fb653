#!/usr/bin/env bash
# The knobs that matter, swept one at a time around the defaults: adapter rank,
# adapted weights, fine-tune sample size and steps. Each point fine-tunes the
# same chunk from the same base (no fidelity check, so the budget is exactly
# the steps), regenerates it and scores it: stored bytes against the mean of
# the 17 metrics, the curve the defaults are chosen on. "run s" is the wall time
# of the whole `dgcctl compress` run (compress's `seconds`: opening the library,
# reading the chunk, the fine-tune, delta and commit), not of training alone.
#
# Usage: tests/bench/model_sweep.sh BASE.dgcm CHUNK.pcap [CHUNK_SECONDS]
#   dgcctl warmup first600s.pcap -o base.dgcm
#   tests/bench/model_sweep.sh base.dgcm next600s.pcap 600
# Environment: DGCCTL (default build/coordinator/dgcctl/dgcctl), OUT (work dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ctl=${DGCCTL:-$root/build/coordinator/dgcctl/dgcctl}
base=$1 chunk=$2 secs=${3:-600}
if [[ -n ${OUT:-} ]]; then work=$OUT; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

points=(
  "default|"
  "rank 1|--rank 1"
  "rank 2|--rank 2"
  "rank 8|--rank 8"
  "no emb adapter|--adapters q,k,v,o,mlp_in,mlp_out,head_bias"
  "sample 512|--sample-flows 512"
  "sample 8192|--sample-flows 8192"
  "steps 30|--steps 30"
  "steps 120|--steps 120"
  "full delta|--full-delta"
)
printf '%-16s %10s %8s %8s %-12s %9s\n' point "stored B" mean worst worst-metric "run s"
for p in "${points[@]}"; do
  name=${p%%|*}; flags=${p#*|}
  d="$work/${name// /_}"; rm -rf "$d"; mkdir -p "$d"
  # shellcheck disable=SC2086
  "$ctl" compress "$chunk" --library "$d/lib" --base "$base" --chunk-seconds "$secs" --no-check \
    --seconds 100000 -o json $flags > "$d/c.json" 2> "$d/c.log"
  "$ctl" generate --library "$d/lib" -o "$d/g.pcap" 2> /dev/null
  "$ctl" eval "$chunk" "$d/g.pcap" -o json > "$d/e.json"
  python3 - "$d" "$name" <<'PY'
import json, sys
d, name = sys.argv[1], sys.argv[2]
c = json.load(open(f"{d}/c.json")); s = json.load(open(f"{d}/e.json"))["scores"]
print(f"{name:<16} {c['stored_bytes']:10d} {s['mean']:8.3f} {s['worst']:8.3f} {s['worst_metric'][:12]:<12} {c['seconds']:9.1f}")
PY
done

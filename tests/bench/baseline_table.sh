#!/usr/bin/env bash
# The bar the model must clear: for each capture, the floor and the baselines
# (sampling 1:10 and 1:100, flow records, marginals) scored with dgcctl eval,
# with the bytes each keeps per million packets.
# Usage: tests/bench/baseline_table.sh [DGCCTL] CAPTURE...
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ctl=${DGCCTL:-$root/build/coordinator/dgcctl/dgcctl}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '%-28s %-14s %8s %8s %-14s %14s\n' capture method mean worst worst-metric "kept B/Mpkt"
for cap in "$@"; do
  name=$(basename "$cap")
  "$ctl" eval "$cap" --floor -o json > "$tmp/floor.json"
  python3 - "$tmp/floor.json" "$name" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); f = j["floor"]
print(f"{sys.argv[2][:28]:<28} {'floor':<14} {f['mean']:8.3f} {f['worst']:8.3f} {f['worst_metric']:<14} {'-':>14}")
PY
  for m in "sampling --rate 1:10" "sampling --rate 1:100" flows marginals; do
    "$ctl" baseline --method $m "$cap" -o "$tmp/s.pcap" --summary json > "$tmp/b.json" 2>/dev/null
    "$ctl" eval "$cap" "$tmp/s.pcap" -o json > "$tmp/e.json"
    python3 - "$tmp/e.json" "$tmp/b.json" "$name" "$m" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
s = e["scores"]; m = sys.argv[4].replace("sampling --rate ", "sampling ")
print(f"{sys.argv[3][:28]:<28} {m:<14} {s['mean']:8.3f} {s['worst']:8.3f} {s['worst_metric']:<14} {b['kept_bytes_per_million_packets']:14.0f}")
PY
  done
done

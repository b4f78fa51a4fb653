#!/usr/bin/env bash
# Streaming the IoT weeks into the RocksDB model library (issue 5, step 4):
#   1. each capture of ../shared/data/iot-oconnor is one link; it is cut into
#      per-day files (editcap -i 86400) that a feeder drops, one by one, into
#      a directory `dgcctl compress --follow` watches (10-minute chunks);
#      the per-chunk lines give decision, drift, chain depth and lag;
#   2. the library's chunk records (dgcctl get chunks -o json) give where the
#      drift triggers fired and the deepest delta chain;
#   3. one day of one link is regenerated as one range (flows stitched across
#      chunk edges) and chunk by chunk (each chunk its own generate run,
#      concatenated); both are scored against the real day (dgcctl eval -o json).
# Small budgets (--steps, --warmup-steps, --no-check) keep the whole run to a
# few minutes on 2 cores; they are printed with the results.
#
# Usage: tests/bench/library_stream.sh [BUILD_DIR] [OUT_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
OUT=${2:-$(mktemp -d /tmp/dgc-library-stream.XXXXXX)}
DATA=${DGC_DATA:-$ROOT/../shared/data}/iot-oconnor
CTL=$BUILD/coordinator/dgcctl/dgcctl
[ -x "$CTL" ] || { echo "no dgcctl at $CTL: build it first" >&2; exit 1; }
[ -d "$DATA" ] || { echo "no $DATA: skipped" >&2; exit 0; }
for t in editcap mergecap; do command -v $t >/dev/null || { echo "needs $t (wireshark-common)" >&2; exit 1; }; done
BUDGET=${BUDGET:-"--chunk-seconds 600 --steps 20 --seconds 5 --warmup-steps 100 --warmup-seconds 10 --no-check"}
LIB=$OUT/lib
mkdir -p "$OUT"
echo "budget: $BUDGET"
echo "output: $OUT"
T0=$(date +%s)
for f in "$DATA"/*.pcap; do
  link=$(basename "$f" .pcap)
  spool=$OUT/split/$link follow=$OUT/follow/$link
  mkdir -p "$spool" "$follow"
  editcap -i 86400 "$f" "$spool/$link.pcap" >/dev/null
  # The feeder: each day file appears whole (written aside, then renamed).
  ( for d in $(ls "$spool" | sort); do
      cp "$spool/$d" "$follow/.$d.part" && mv "$follow/.$d.part" "$follow/$d"
      sleep 2
    done ) &
  feeder=$!
  "$CTL" compress --follow "$follow" --library "$LIB" --link "$link" $BUDGET \
      --idle-exit 6 --settle-seconds 1 --poll-seconds 0.5 -o json \
      >"$OUT/$link.json" 2>"$OUT/$link.log"
  wait $feeder
  left=$(ls "$follow" | wc -l)
  python3 - "$OUT/$link.json" "$link" "$left" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:16s} chunks {j['chunks']:5d} packets {j['packets']:6d} decisions {j['decisions']} "
      f"deepest chain {j['max_chain_depth']} (bound {j['max_depth_bound']}) "
      f"max wait after chunk complete {j['max_wait_seconds']:.1f} s, raw files deleted {j['deleted_raw_files']} "
      f"(left {sys.argv[3]}), {j['seconds']:.0f} s")
PY
done
echo "streaming: $(( $(date +%s) - T0 )) s in all"

"$CTL" get chunks --library "$LIB" -o json >"$OUT/chunks.json"
echo
echo "== drift triggers (decisions other than continue) =="
python3 - "$OUT/chunks.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
rows = j if isinstance(j, list) else j.get("chunks", j)
n = {}
for c in rows:
    d = c.get("decision", "")
    n[d] = n.get(d, 0) + 1
    if d and d != "continue":
        print(f"{c.get('link')} {c.get('start')} {d:8s} drift {c.get('drift')} packets {c.get('packets')}: {c.get('reason')}")
print("decisions:", n)
PY

echo
echo "== one day across chunk edges vs chunk by chunk =="
LINK=${DAY_LINK:-lockly-hub-01}
SINCE=${DAY_SINCE:-2021-03-10T00:00:00Z}
UNTIL=${DAY_UNTIL:-2021-03-11T00:00:00Z}
editcap -A "${SINCE/T/ }" -B "${UNTIL/T/ }" "$DATA/$LINK.pcap" "$OUT/real-day.pcap" >/dev/null 2>&1 || \
  editcap -A "$(date -u -d "$SINCE" '+%Y-%m-%d %H:%M:%S')" -B "$(date -u -d "$UNTIL" '+%Y-%m-%d %H:%M:%S')" \
    "$DATA/$LINK.pcap" "$OUT/real-day.pcap"
"$CTL" generate --library "$LIB" --link "$LINK" --since "$SINCE" --until "$UNTIL" -o "$OUT/range.pcap" 2>/dev/null
mkdir -p "$OUT/per-chunk"
s=$(date -u -d "$SINCE" +%s) u=$(date -u -d "$UNTIL" +%s) i=0
for ((t = s; t < u; t += 600)); do
  "$CTL" generate --library "$LIB" --link "$LINK" --since $t --until $((t + 600)) \
      -o "$OUT/per-chunk/$(printf %04d $i).pcap" 2>/dev/null || true
  i=$((i + 1))
done
mergecap -a -w "$OUT/per-chunk.pcap" "$OUT"/per-chunk/*.pcap
"$CTL" eval "$OUT/real-day.pcap" "$OUT/range.pcap" -o json >"$OUT/eval-range.json"
"$CTL" eval "$OUT/real-day.pcap" "$OUT/per-chunk.pcap" -o json >"$OUT/eval-per-chunk.json"
python3 - "$OUT/eval-range.json" "$OUT/eval-per-chunk.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ma, mb = a["scores"]["mean"], b["scores"]["mean"]
print(f"range (stitched) mean {ma:.4f}  per-chunk concatenated mean {mb:.4f}  difference {abs(ma - mb):.4f} "
      f"({'within' if abs(ma - mb) <= 0.02 else 'NOT within'} 0.02)")
print(f"packets: real {a['real']['ip_packets']}, range {a['synth']['ip_packets']}, per-chunk {b['synth']['ip_packets']}; "
      f"flows: real {a['real']['flows']}, range {a['synth']['flows']}, per-chunk {b['synth']['flows']}")
for k in sorted(a["scores"]["metrics"]):
    print(f"  {k:22s} range {a['scores']['metrics'][k]}  per-chunk {b['scores']['metrics'].get(k)}")
PY
echo "total: $(( $(date +%s) - T0 )) s"

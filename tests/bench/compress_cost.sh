#!/usr/bin/env bash
# What compress costs and what it keeps (issue 16): each trace through the
# embedded `dgcctl compress` at its default budget, timed by /usr/bin/time
# (user + system CPU, wall, peak RSS), then regenerated and scored by
# `dgcctl eval`. Prints one row per trace: packets, link-hours, chunks,
# CPU-s, CPU-s per million packets and per link-hour, peak RSS, and the
# regenerated trace's mean and worst metric.
#
# Usage: tests/bench/compress_cost.sh [--build DIR] [--out DIR] [--base FILE]
#          NAME=CAPTURE:CHUNK_SECONDS... [-- COMPRESS_FLAGS...]
#   --base FILE: every trace starts from this base (as with the bench traces,
#   "base apart"); without it each trace trains its own, and pays for it.
#   COMPRESS_FLAGS go to every `dgcctl compress` (for example --futile-after 0
#   --exact-reference to measure the session-16 behaviour).
# Without traces: the five IoT weeks of ../shared/data/iot-oconnor, 1 h chunks.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
build=$ROOT/build out="" base=""
traces=()
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "compress_cost.sh: unknown option $1" >&2; exit 2 ;;
    *) traces+=("$1"); shift ;;
  esac
done
flags=("$@")
data=$ROOT/../shared/data
if ((${#traces[@]} == 0)); then
  for f in "$data"/iot-oconnor/*.pcap; do [[ -r $f ]] && traces+=("$(basename "$f" .pcap)=$f:3600"); done
fi
((${#traces[@]})) || { echo "compress_cost.sh: no traces given and none in $data/iot-oconnor" >&2; exit 2; }
build=$(cd "$build" && pwd)
ctl=$build/coordinator/dgcctl/dgcctl
[[ -x $ctl ]] || { echo "compress_cost.sh: $ctl not built" >&2; exit 2; }
out=${out:-$(mktemp -d /tmp/dgc-cost.XXXXXX)}
mkdir -p "$out"
base_args=()
[[ -n $base ]] && base_args=(--base "$base")

echo "# compress_cost: $(date -u +%FT%TZ), $(nproc) cores, flags: ${flags[*]:-(defaults)}${base:+, base $base}"
printf '%-18s %9s %7s %6s %8s %9s %10s %7s %6s %6s %s\n' trace packets link-h chunks CPU-s CPU/Mpkt CPU/link-h RSS-MB mean worst worst_metric
for t in "${traces[@]}"; do
  name=${t%%=*} rest=${t#*=}
  path=${rest%:*} chunk=${rest##*:}
  [[ -r $path ]] || { echo "compress_cost.sh: $path: not readable" >&2; exit 2; }
  lib=$out/$name.lib
  rm -rf "$lib"
  /usr/bin/time -f '%U %S %e %M' -o "$out/$name.time" \
    "$ctl" compress "$path" --library "$lib" --chunk-seconds "$chunk" "${base_args[@]}" "${flags[@]}" \
    >"$out/$name.compress.log" 2>&1 || { echo "compress_cost.sh: compress of $name failed: $out/$name.compress.log" >&2; exit 1; }
  "$ctl" generate --library "$lib" -o "$out/$name.synth.pcap" >"$out/$name.generate.log" 2>&1
  "$ctl" eval "$path" "$out/$name.synth.pcap" -o json >"$out/$name.eval.json" 2>/dev/null
  python3 - "$out/$name" "$name" <<'EOF'
import json, re, sys
stem, name = sys.argv[1], sys.argv[2]
u, s, wall, rss = open(stem + ".time").read().split()[-4:]
log = open(stem + ".compress.log").read()
m = re.search(r"compressed (\d+) packets .* into (\d+) chunks", log)
packets, chunks = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
ev = json.load(open(stem + ".eval.json"))
span_h = ev["real"]["span_s"] / 3600
cpu = float(u) + float(s)
sc = ev["scores"]
print("%-18s %9d %7.1f %6d %8.1f %9.1f %10.2f %7.0f %6.3f %6.3f %s" % (
    name, packets, span_h, chunks, cpu, cpu / max(packets, 1) * 1e6, cpu / max(span_h, 1e-9),
    int(rss) / 1024, sc["mean"], sc["worst"], sc["worst_metric"]))
EOF
done
echo "# logs and libraries: $out"

#!/usr/bin/env bash
# The model on real captures: for each input, compress it into a fresh model
# library (the first chunks train the base; later chunks are fine-tuned from
# the previous model), regenerate it, and report
#   fidelity  mean and worst of the 17 metrics (dgcctl eval), replay rate
#   storage   bytes kept in chunks per million packets, the base apart, and
#             the ratio to zstd -19 of the header-only pcap (dgcctl storage)
#   cost      compress CPU seconds (user+sys) per million packets with every
#             full-model training of the run (the base and each retrain) taken
#             out, estimated: the trainings' wall seconds (from each base/retrain
#             model's training report in the library) at the process's CPU/wall
#             ratio; the trainings' wall seconds and their count; generated packets/s
#   validity  tshark: malformed packets and IP/TCP/UDP checksum errors
# and the flow-records and sampling baselines beside it (dgcctl baseline).
#
# Usage: tests/bench/model_table.sh [-- COMPRESS FLAGS] NAME=CHUNK_SECONDS=INPUT...
#   tests/bench/model_table.sh blink=3600=../shared/data/iot-oconnor/blink-cam-01.pcap
#   tests/bench/model_table.sh -- --rank 2 -- bench=600=build/bench/bench-1m.pcap
# INPUT may be a directory (its captures are merged by time).
# Environment: DGCCTL (default build/coordinator/dgcctl/dgcctl), OUT (work
# directory, default a temp dir removed at exit), BASELINES=0 to skip them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ctl=${DGCCTL:-$root/build/coordinator/dgcctl/dgcctl}
extra=()
if [[ ${1:-} == -- ]]; then
  shift
  while [[ $# -gt 0 && $1 != -- ]]; do extra+=("$1"); shift; done
  shift || true
fi
if [[ -n ${OUT:-} ]]; then work=$OUT; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

row() { printf '%-12s %-16s %7s %7s %-14s %8s %12s %10s %9s %10s %9s %10s %7s\n' "$@"; }
row trace method mean worst worst-metric replay "kept B/Mpkt" "1/x zstd" "CPU-s/M" "train s(n)" "base B" "gen pkt/s" "tshark"
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; secs=${rest%%=*}; input=${rest#*=}
  d="$work/$name"; rm -rf "$d"; mkdir -p "$d"
  real="$d/real.pcap"
  if [[ -d $input ]]; then
    mergecap -F pcap -w "$real" "$input"/*.pcap* 2>/dev/null
  else
    editcap -F pcap "$input" "$real" 2>/dev/null || cp "$input" "$real"
  fi
  /usr/bin/time -f "%U %S %e" -o "$d/compress.time" \
    "$ctl" compress "$real" --library "$d/lib" --chunk-seconds "$secs" -o json "${extra[@]}" > "$d/compress.json" 2> "$d/compress.log"
  # Every full model this run trained (the library is fresh): its training report.
  # A --base given in the flags is stored without one and counts nothing.
  "$ctl" get models --library "$d/lib" -o json > "$d/models.json"
  python3 -c 'import json,sys; [print(m["id"]) for m in json.load(open(sys.argv[1])) if m["kind"] in ("base", "retrain")]' \
    "$d/models.json" | while read -r id; do
    "$ctl" describe model "$id" --library "$d/lib" -o json
  done | python3 -c 'import json,sys; d=json.JSONDecoder(); t=sys.stdin.read().strip(); out=[]
while t:
    o, i = d.raw_decode(t); out.append(o); t = t[i:].lstrip()
json.dump(out, sys.stdout)' > "$d/full_models.json"
  /usr/bin/time -f "%U %S %e" -o "$d/generate.time" \
    "$ctl" generate --library "$d/lib" -o "$d/synth.pcap" 2> "$d/generate.log"
  "$ctl" eval "$real" "$d/synth.pcap" -o json > "$d/eval.json"
  "$ctl" storage "$real" -o json > "$d/storage.json" 2>/dev/null
  bad=$(tshark -r "$d/synth.pcap" -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE \
          -Y '_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad"' \
          -T fields -e frame.number 2>/dev/null | wc -l)
  python3 - "$d" "$name" "$bad" <<'PY'
import json, sys
d, name, bad = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = json.load(open(f"{d}/compress.json")); e = json.load(open(f"{d}/eval.json")); s = json.load(open(f"{d}/storage.json"))
cu, cs, cw = map(float, open(f"{d}/compress.time").read().split()[-3:])
gu, gs, gw = map(float, open(f"{d}/generate.time").read().split()[-3:])
rows = {r["id"]: r["bytes"] for r in s["rows"]}
zstd = rows["header_zstd19"]
pk = max(c["packets"], 1)
full = [m for m in json.load(open(f"{d}/full_models.json")) if isinstance(m.get("training"), dict)]
train_s = sum(m["training"].get("seconds", 0.0) for m in full)
# CPU of the full-model trainings (base and retrains): their share of wall time,
# at the process's CPU/wall ratio (an estimate: training may use the cores more
# or less than the rest of compress does).
cpu = (cu + cs) - train_s * (cu + cs) / max(cw, 1e-9)
sc = e["scores"]
gen_pkts = e["synth"]["ip_packets"]
replay = e.get("replay", {}).get("rate")
print(f"{name[:12]:<12} {'dgc':<16} {sc['mean']:7.3f} {sc['worst']:7.3f} {sc['worst_metric'][:14]:<14} "
      f"{(replay if replay is not None else float('nan')):8.3f} {c['stored_bytes']*1e6/pk:12.0f} {zstd/max(c['stored_bytes'],1):10.1f} "
      f"{cpu*1e6/pk:9.0f} {f'{train_s:.1f}({len(full)})':>10} {c['base_model_bytes']:9d} {gen_pkts/max(gw,1e-9):10.0f} {bad:7d}")
json.dump({"name": name, "packets": c["packets"], "mean": sc["mean"], "worst": sc["worst"],
           "worst_metric": sc["worst_metric"], "metrics": sc["metrics"],
           "replay": replay, "stored_bytes": c["stored_bytes"], "header_zstd19": zstd,
           "cpu_s_per_mpkt_without_full_training": cpu * 1e6 / pk,
           "full_training_seconds": train_s, "full_trainings": len(full), "base_bytes": c["base_model_bytes"],
           "gen_pkts_per_s": gen_pkts / max(gw, 1e-9), "tshark_bad": bad,
           "chunks": c["chunks"], "chunks_retried": c["chunks_retried"]}, open(f"{d}/row.json", "w"))
PY
  if [[ ${BASELINES:-1} != 0 ]]; then
    for m in flows "sampling --rate 1:100" "sampling --rate 1:10"; do
      "$ctl" baseline --method $m "$real" -o "$d/b.pcap" --summary json > "$d/b.json" 2>/dev/null
      "$ctl" eval "$real" "$d/b.pcap" -o json > "$d/be.json"
      python3 - "$d" "$name" "$m" <<'PY'
import json, sys
d, name, m = sys.argv[1], sys.argv[2], sys.argv[3].replace("sampling --rate ", "sampling ")
e = json.load(open(f"{d}/be.json")); b = json.load(open(f"{d}/b.json")); s = json.load(open(f"{d}/storage.json"))
zstd = {r["id"]: r["bytes"] for r in s["rows"]}["header_zstd19"]
sc = e["scores"]; replay = e.get("replay", {}).get("rate")
print(f"{name[:12]:<12} {m:<16} {sc['mean']:7.3f} {sc['worst']:7.3f} {sc['worst_metric'][:14]:<14} "
      f"{(replay if replay is not None else float('nan')):8.3f} {b['kept_bytes_per_million_packets']:12.0f} {zstd/max(b['kept_bytes'],1):10.1f}")
PY
    done
  fi
done

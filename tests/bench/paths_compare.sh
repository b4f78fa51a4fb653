#!/usr/bin/env bash
# One capture through both compression paths (issue 15): the embedded
# `dgcctl compress` and a loopback cluster (a coordinator, two workers, one
# ingest on 127.0.0.1), with the same chunking, budget and knobs. Prints, per
# path, the decisions (continue, switch, base, retrain), the regenerated
# trace's mean distance (dgcctl eval) and stored bytes, then every chunk
# whose decision differs between the paths.
#
# Usage: tests/bench/paths_compare.sh [--build DIR] [--out DIR] [--base FILE]
#          [--chunk-seconds N] [--budget B] [--min-flows N] [--first-chunks N] CAPTURE [-- KNOBS...]
#   KNOBS go to both `dgcctl compress` and `dgc-coordinator` (e.g. --steps 20).
# Without --base each path trains its link's first base on its first
# --first-chunks chunks (default 6; fewer when they hold --warmup-flows
# flows): `dgcctl compress --warmup-chunks N`, `dgc-coordinator
# --first-base-chunks N`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
build=$ROOT/build out="" base="" chunk=3600 budget=0.1x min_flows=4096 first=6
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --chunk-seconds) chunk=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --min-flows) min_flows=$2; shift 2 ;;
    --first-chunks) first=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "paths_compare.sh: unknown option $1" >&2; exit 2 ;;
    *) capture=$1; shift ;;
  esac
done
knobs=("$@")
[[ -n ${capture:-} && -r $capture ]] || { echo "paths_compare.sh: a readable CAPTURE is required" >&2; exit 2; }
build=$(cd "$build" && pwd)
ctl=$build/coordinator/dgcctl/dgcctl
out=${out:-$(mktemp -d /tmp/dgc-paths.XXXXXX)}
mkdir -p "$out"
link=$(basename "$capture" | sed 's/\.[^.]*$//; s/[^A-Za-z0-9_.-]/-/g')
base_args=()
[[ -n $base ]] && base_args=(--base "$base")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
echo "capture $capture, link $link, ${chunk} s chunks, budget $budget, --min-flows $min_flows ${knobs[*]:-}"
echo "output  $out"

# --- embedded ---------------------------------------------------------------
t0=$(date +%s.%N)
"$ctl" compress "$capture" --library "$out/emb" --link "$link" --chunk-seconds "$chunk" --budget "$budget" \
  --min-flows "$min_flows" --warmup-chunks "$first" "${base_args[@]}" "${knobs[@]}" >"$out/emb.log" 2>&1 \
  || { tail -20 "$out/emb.log"; exit 1; }
t1=$(date +%s.%N)

# --- cluster ----------------------------------------------------------------
"$build/coordinator/dgc-coordinator" --library "$out/lib" --listen tcp://127.0.0.1:0 --api tcp://127.0.0.1:0 \
  --metrics 127.0.0.1:0 --budget "$budget" --min-flows "$min_flows" --first-base-chunks "$first" \
  "${base_args[@]}" "${knobs[@]}" \
  >"$out/coordinator.log" 2>&1 &
cpid=$!
pids+=($cpid)
for _ in $(seq 200); do grep -q "operator API on" "$out/coordinator.log" && break; sleep 0.1; done
grep -q "operator API on" "$out/coordinator.log" || { tail -20 "$out/coordinator.log"; exit 1; }
listen=$(grep -o "listening on tcp://[0-9.:]*" "$out/coordinator.log" | head -1 | awk '{print $3}')
api=$(grep -o "operator API on tcp://[0-9.:]*" "$out/coordinator.log" | awk '{print $4}')
metrics=$(grep -o "metrics listening on [0-9.:]*" "$out/coordinator.log" | awk '{print $4}')
for k in 1 2; do
  "$build/worker/dgc-worker" --coordinator "$listen" --name "w$k" --metrics 127.0.0.1:0 >"$out/w$k.log" 2>&1 &
  pids+=($!)
done
"$build/ingest/dgc-ingest" "$capture" --coordinator "$listen" --spool-dir "$out/spool" --link "$link" \
  --chunk-seconds "$chunk" --metrics 127.0.0.1:0 >"$out/ingest.log" 2>&1 || { tail -20 "$out/ingest.log"; exit 1; }
# Done when no job is queued or leased (bounded: 60 minutes, or 10 minutes without progress).
last=-1 still=0
for _ in $(seq 7200); do
  left=$("$ctl" get jobs --coordinator "$api" -o json | python3 -c '
import json, sys
print(sum(1 for r in json.load(sys.stdin) if r["state"] in ("queued", "leased")))')
  [[ $left == 0 ]] && break
  if [[ $left == "$last" ]]; then still=$((still + 1)); else still=0; last=$left; fi
  ((still > 1200)) && { echo "no progress for 10 minutes: $left jobs left" >&2; break; }
  sleep 0.5
done
t2=$(date +%s.%N)
curl -fsS "http://$metrics/metrics" >"$out/metrics.txt"
"$ctl" get jobs --coordinator "$api" -o json >"$out/jobs.json"
cleanup
pids=()

# --- regenerate, score, compare ---------------------------------------------
for p in emb lib; do
  "$ctl" generate --library "$out/$p" -o "$out/$p.pcap" >"$out/$p.gen.log" 2>&1 || { tail "$out/$p.gen.log"; exit 1; }
  "$ctl" eval "$capture" "$out/$p.pcap" -o json >"$out/$p.eval.json" 2>/dev/null
  "$ctl" get chunks --library "$out/$p" -o json >"$out/$p.chunks.json"
done
python3 - "$out" "$t0" "$t1" "$t2" <<'PY'
import collections, json, sys
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:5])
rows = {}
for p in ("emb", "lib"):
    chunks = json.load(open(f"{out}/{p}.chunks.json"))
    ev = json.load(open(f"{out}/{p}.eval.json"))
    rows[p] = dict(chunks=chunks, mean=ev["scores"]["mean"],
                   stored=sum(c.get("stored_bytes", 0) for c in chunks),
                   decisions=collections.Counter(c.get("decision", "") for c in chunks))
drift = 0
for line in open(f"{out}/metrics.txt"):
    if line.startswith('dgc_drift_triggers_total{reason="drift"}'):
        drift = int(float(line.split()[-1]))
names = {"emb": f"embedded ({t1 - t0:.0f} s)", "lib": f"cluster, 2 workers ({t2 - t1:.0f} s)"}
print("| path | chunks | continue | switch | base | retrain | other | mean | stored B |")
print("|---|---|---|---|---|---|---|---|---|")
for p, r in rows.items():
    d = r["decisions"]
    other = sum(v for k, v in d.items() if k not in ("continue", "switch", "base", "retrain"))
    print(f"| {names[p]} | {len(r['chunks'])} | {d['continue']} | {d['switch']} | {d['base']} | {d['retrain']} | "
          f"{other} | {r['mean']:.3f} | {r['stored']} |")
e = {c["start"]: c for c in rows["emb"]["chunks"]}
l = {c["start"]: c for c in rows["lib"]["chunks"]}
diff = [s for s in sorted(set(e) | set(l)) if e.get(s, {}).get("decision") != l.get(s, {}).get("decision")]
print(f"\nsame decision: {len(set(e) & set(l)) - len([s for s in diff if s in e and s in l])} of {len(set(e) | set(l))} "
      f"chunks; mean difference {abs(rows['emb']['mean'] - rows['lib']['mean']):.3f}; "
      f"cluster dgc_drift_triggers_total{{reason=\"drift\"}} {drift}")
for s in diff[:20]:
    a, b = e.get(s, {}), l.get(s, {})
    print(f"  {s}: embedded {a.get('decision', '-')} (drift {a.get('drift', -1):.3f}), "
          f"cluster {b.get('decision', '-')} (drift {b.get('drift', -1):.3f})")
PY

#!/usr/bin/env bash
# Load on the distributed runtime (issue 6): about 2,000 small chunks through a
# coordinator and 4 workers on 127.0.0.1, shipped by several ingest shards (each
# shard is its own stream, so the workers run in parallel). Tiny fine-tunes
# (--steps 1, --no-check): this measures the runtime, not the model.
# Usage: tests/bench/runtime_load.sh [BUILD_DIR] [--workers N] [--shards S] [--seconds T] [--chunk-seconds C]
#        [--steps N] [--min-flows N]  (min-flows 1: every chunk gets a fine-tune; 32: quiet chunks share their parent)
# Prints a table: chunks, wall time, chunks/s, job duration, coordinator memory.
set -euo pipefail
build=${1:-build}
[[ $# -gt 0 ]] && shift
workers=4 shards=4 seconds=500 chunk_seconds=1 steps=1 min_flows=1
while (($#)); do
  case "$1" in
    --workers) workers=$2; shift ;;
    --shards) shards=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --chunk-seconds) chunk_seconds=$2; shift ;;
    --steps) steps=$2; shift ;;
    --min-flows) min_flows=$2; shift ;;
    *) echo "runtime_load.sh: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done
build=$(cd "$build" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
ctl="$build/coordinator/dgcctl/dgcctl"

"$ctl" synth-trace -o "$tmp/t.pcap" --seconds "$seconds" --sessions-per-second 20 >/dev/null
"$ctl" warmup "$tmp/t.pcap" -o "$tmp/base.dgcm" --chunk-seconds 60 --warmup-steps 5 --warmup-flows 500 >/dev/null 2>&1

"$build/coordinator/dgc-coordinator" --library "$tmp/lib" --listen tcp://127.0.0.1:0 --api tcp://127.0.0.1:0 \
  --metrics 127.0.0.1:0 --base "$tmp/base.dgcm" --steps "$steps" --seconds 1 --min-flows "$min_flows" --no-check --heartbeat-seconds 1 \
  >"$tmp/coordinator.log" 2>&1 &
cpid=$!
pids+=($cpid)
for _ in $(seq 100); do grep -q "operator API on" "$tmp/coordinator.log" && break; sleep 0.1; done
listen=$(grep -o "listening on tcp://[0-9.:]*" "$tmp/coordinator.log" | head -1 | awk '{print $3}')
api=$(grep -o "operator API on tcp://[0-9.:]*" "$tmp/coordinator.log" | awk '{print $4}')
metrics=$(grep -o "metrics listening on [0-9.:]*" "$tmp/coordinator.log" | awk '{print $4}')
for ((k = 0; k < workers; k++)); do
  "$build/worker/dgc-worker" --coordinator "$listen" --name "w$k" --metrics 127.0.0.1:0 >"$tmp/w$k.log" 2>&1 &
  pids+=($!)
done
sleep 1
t0=$(date +%s.%N)
ipids=()
for ((i = 0; i < shards; i++)); do
  "$build/ingest/dgc-ingest" "$tmp/t.pcap" --coordinator "$listen" --spool-dir "$tmp/spool" --link load \
    --shard "$i/$shards" --chunk-seconds "$chunk_seconds" --metrics 127.0.0.1:0 >"$tmp/ingest$i.log" 2>&1 &
  ipids+=($!)
done
for p in "${ipids[@]}"; do wait "$p"; done
t_ingested=$(date +%s.%N)
# Done when no job is queued or leased (bounded: 30 minutes, or 60 s without progress).
last=-1 still=0
for _ in $(seq 3600); do
  left=$("$ctl" get jobs --coordinator "$api" -o json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(sum(1 for r in j if r["state"] in ("queued", "leased")))')
  [[ $left == 0 ]] && break
  if [[ $left == "$last" ]]; then still=$((still + 1)); else still=0; last=$left; fi
  ((still > 120)) && { echo "no progress for 60 s: $left jobs left" >&2; break; }
  sleep 0.5
done
t1=$(date +%s.%N)
"$ctl" get jobs --coordinator "$api" -o json >"$tmp/jobs.json"
curl -fsS "http://$metrics/metrics" >"$tmp/metrics.txt"
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$cpid/status)
python3 - "$tmp/jobs.json" "$tmp/metrics.txt" "$t0" "$t_ingested" "$t1" "$rss_kb" "$workers" "$shards" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))
m = {}
for line in open(sys.argv[2]):
    if line.startswith("#") or not line.strip(): continue
    k, v = line.rsplit(" ", 1); m[k] = float(v)
t0, ti, t1 = map(float, sys.argv[3:6])
done = [j for j in jobs if j["state"] == "done" and j["kind"] == "compress"]
failed = [j for j in jobs if j["state"] == "failed"]
n = m.get('dgc_job_duration_seconds_count{kind="finetune"}', 0)
s = m.get('dgc_job_duration_seconds_sum{kind="finetune"}', 0)
rows = [
  ("workers / ingest shards (streams)", f"{sys.argv[7]} / {sys.argv[8]}"),
  ("chunks committed", f"{int(m.get('dgc_chunks_committed_total', 0))} ({len(done)} jobs done, {len(failed)} failed)"),
  ("ingest: all chunks acknowledged after", f"{ti - t0:.1f} s"),
  ("all jobs done after", f"{t1 - t0:.1f} s"),
  ("throughput", f"{len(done) / (t1 - t0):.1f} chunks/s"),
  ("job duration (lease to commit), mean", f"{s / n:.3f} s" if n else "-"),
  ("lease expiries / failed jobs", f"{int(m.get('dgc_lease_expiries_total', 0))} / {int(m.get('dgc_jobs_failed_total', 0))}"),
  ("stored bytes / raw bytes", f"{int(m.get('dgc_chunk_stored_bytes_total', 0))} / {int(m.get('dgc_chunk_raw_bytes_total', 0))}"),
  ("coordinator peak RSS", f"{int(sys.argv[6]) / 1024:.0f} MiB"),
]
w = max(len(a) for a, _ in rows)
print(f"| {'measure'.ljust(w)} | value |")
print(f"|{'-' * (w + 2)}|-------|")
for a, b in rows: print(f"| {a.ljust(w)} | {b} |")
PY

#!/usr/bin/env bash
# Regeneration here and on the cluster, on one library: `dgcctl generate
# --library` with --threads 1 and with every core, then a dgc-coordinator on a
# copy of the library with WORKERS dgc-worker processes on 127.0.0.1 (each
# --threads WORKER_THREADS) and `dgcctl generate --coordinator`. Prints
# packets/s of each (wall clock of the dgcctl command, start to pcap closed)
# and whether the cluster's pcap is byte-identical to the embedded one.
# Usage: tests/bench/generate_cluster.sh LIBRARY [WORKERS] [WORKER_THREADS]
set -euo pipefail
lib=${1:?usage: generate_cluster.sh LIBRARY [WORKERS] [WORKER_THREADS]}
workers=${2:-2}
wthreads=${3:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${DGC_BUILD:-$root/build}
ctl=$bin/coordinator/dgcctl/dgcctl
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

run() {  # name, then the command; prints name, packets, seconds, packets/s
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" 2>"$work/$name.err" >/dev/null || { cat "$work/$name.err"; exit 1; }
  t1=$(date +%s.%N)
  local pk
  pk=$(grep -o "generated [0-9]* packets" "$work/$name.err" | awk '{print $2}')
  awk -v n="$name" -v p="$pk" -v a="$t0" -v b="$t1" 'BEGIN { printf "| %s | %d | %.2f | %.0f |\n", n, p, b - a, p / (b - a) }'
}

echo "library: $lib ($(nproc) CPUs here)"
echo "| path | packets | seconds | packets/s |"
echo "|---|---|---|---|"
run "embedded --threads 1" "$ctl" generate --library "$lib" --threads 1 -o "$work/emb1.pcap"
run "embedded --threads 0 (every core)" "$ctl" generate --library "$lib" --threads 0 -o "$work/emb.pcap"
cp -r "$lib" "$work/lib"
"$bin/coordinator/dgc-coordinator" --library "$work/lib" --listen tcp://127.0.0.1:0 --api tcp://127.0.0.1:0 \
  --metrics 127.0.0.1:0 --pack-hours 0 >"$work/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "operator API on" "$work/coordinator.log" && break; sleep 0.1; done
listen=$(grep -o "listening on tcp://[0-9.:]*" "$work/coordinator.log" | head -1 | awk '{print $3}')
api=$(grep -o "operator API on tcp://[0-9.:]*" "$work/coordinator.log" | awk '{print $4}')
for i in $(seq "$workers"); do
  "$bin/worker/dgc-worker" --coordinator "$listen" --name "w$i" --threads "$wthreads" --metrics 127.0.0.1:0 \
    >"$work/w$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  n=$("$ctl" get workers --coordinator "$api" -o json 2>/dev/null | grep -c '"name"' || true)
  [[ $n -ge $workers ]] && break
  sleep 0.2
done
run "cluster, $workers workers x $wthreads thread(s)" "$ctl" generate --coordinator "$api" -o "$work/dist.pcap"
if cmp -s "$work/emb.pcap" "$work/dist.pcap"; then echo "cluster pcap: byte-identical to the embedded one"
else echo "cluster pcap: DIFFERS from the embedded one"; exit 1; fi
for i in $(seq "$workers"); do echo "w$i: $(grep -c regenerated "$work/w$i.log") segment(s)"; done

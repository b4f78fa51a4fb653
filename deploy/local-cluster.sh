#!/usr/bin/env bash
# Starts a dgc cluster on 127.0.0.1 (deploy/PROCESSES.md, "Build and files"): a
# coordinator (--listen P, --api P+1, --metrics M, library DIR/library), N workers
# (--metrics M+2+k) and one ingest (--metrics M+1, spool DIR/spool) reading
# DIR/captures --follow. Prints "local-cluster: ready" once every /readyz answers
# 200, runs in the foreground, and on SIGTERM or SIGINT stops them all and exits 0.
# Logs: DIR/logs/<process>.log; pid files: DIR/run/<process>.pid.
#
# Usage: deploy/local-cluster.sh [--build DIR] [--dir DIR] [--workers N] [--port P]
#                                [--metrics-port M] [-- EXTRA COORDINATOR FLAGS...]
#        deploy/local-cluster.sh stop [--dir DIR]    stops a cluster started elsewhere
# A capture moved into DIR/captures/ is ingested.
set -euo pipefail

build=build
dir=build/local-cluster
workers=2
port=7070
metrics_port=9460
action=run
extra=()
while (($#)); do
  case "$1" in
    stop) action=stop ;;
    --build) build=$2; shift ;;
    --dir) dir=$2; shift ;;
    --workers) workers=$2; shift ;;
    --port) port=$2; shift ;;
    --metrics-port) metrics_port=$2; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-cluster.sh: unknown argument '$1' (see --help)" >&2; exit 1 ;;
  esac
  shift
done

stop_all() {
  local pids=() f
  for f in "$dir"/run/ingest.pid "$dir"/run/worker-*.pid "$dir"/run/coordinator.pid; do
    [[ -f $f ]] || continue
    local p
    p=$(cat "$f")
    kill -TERM "$p" 2>/dev/null && pids+=("$p")
  done
  # Shutdown completes within 10 s per PROCESSES.md; wait up to 15 s, then KILL.
  local deadline=$((SECONDS + 15))
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
  rm -f "$dir"/run/*.pid
}

if [[ $action == stop ]]; then
  stop_all
  echo "local-cluster: stopped"
  exit 0
fi

for b in coordinator/dgc-coordinator worker/dgc-worker ingest/dgc-ingest; do
  [[ -x $build/$b ]] || { echo "local-cluster.sh: $build/$b not built (cmake --build $build)" >&2; exit 1; }
done
mkdir -p "$dir"/{logs,run,captures,spool,library}
if compgen -G "$dir/run/*.pid" >/dev/null; then
  for f in "$dir"/run/*.pid; do
    if kill -0 "$(cat "$f")" 2>/dev/null; then
      echo "local-cluster.sh: a cluster already runs in $dir ($f); 'local-cluster.sh stop --dir $dir' first" >&2
      exit 1
    fi
  done
  rm -f "$dir"/run/*.pid
fi

started=0
on_signal() {
  echo "local-cluster: stopping"
  stop_all
  echo "local-cluster: stopped"
  exit 0
}
trap on_signal TERM INT

"$build/coordinator/dgc-coordinator" --library "$dir/library" \
  --listen "tcp://127.0.0.1:$port" --api "tcp://127.0.0.1:$((port + 1))" --metrics "127.0.0.1:$metrics_port" \
  "${extra[@]}" >"$dir/logs/coordinator.log" 2>&1 &
echo $! >"$dir/run/coordinator.pid"
for ((k = 0; k < workers; k++)); do
  "$build/worker/dgc-worker" --coordinator "tcp://127.0.0.1:$port" --name "worker-$k" \
    --metrics "127.0.0.1:$((metrics_port + 2 + k))" >"$dir/logs/worker-$k.log" 2>&1 &
  echo $! >"$dir/run/worker-$k.pid"
done
"$build/ingest/dgc-ingest" "$dir/captures" --follow --link local --spool-dir "$dir/spool" \
  --coordinator "tcp://127.0.0.1:$port" --metrics "127.0.0.1:$((metrics_port + 1))" >"$dir/logs/ingest.log" 2>&1 &
echo $! >"$dir/run/ingest.pid"

# Ready once every /readyz answers 200 (60 s at most).
ports=("$metrics_port" "$((metrics_port + 1))")
for ((k = 0; k < workers; k++)); do ports+=("$((metrics_port + 2 + k))"); done
ready=0
for _ in $(seq 300); do
  ok=1
  for p in "${ports[@]}"; do
    curl -fsS -o /dev/null "http://127.0.0.1:$p/readyz" 2>/dev/null || { ok=0; break; }
  done
  if ((ok)); then ready=1; break; fi
  for f in "$dir"/run/*.pid; do
    kill -0 "$(cat "$f")" 2>/dev/null || { echo "local-cluster: $(basename "$f" .pid) exited; see $dir/logs/" >&2; stop_all; exit 1; }
  done
  sleep 0.2
done
if ((!ready)); then
  echo "local-cluster: not ready after 60 s; see $dir/logs/" >&2
  stop_all
  exit 1
fi
echo "local-cluster: ready (coordinator tcp://127.0.0.1:$port, api tcp://127.0.0.1:$((port + 1)), metrics 127.0.0.1:$metrics_port..$((metrics_port + 1 + workers)), captures $dir/captures)"
# Foreground until a signal; `wait` returns early when a process exits.
while true; do
  for f in "$dir"/run/*.pid; do
    if ! kill -0 "$(cat "$f")" 2>/dev/null; then
      echo "local-cluster: $(basename "$f" .pid) exited; see $dir/logs/" >&2
    fi
  done
  sleep 1 &
  wait $! || true
done

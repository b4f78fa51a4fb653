#!/usr/bin/env bash
# Soak: many small chunks through a cluster on 127.0.0.1 (a coordinator,
# workers, one ingest per shard) while a random process (an ingest, a worker
# or the coordinator) is killed with SIGKILL every --kill-every committed
# chunks and started again with the same flags. Tiny fine-tunes (--steps 1,
# --no-check): this measures the runtime under faults, not the model.
#
# Shows: every window of the trace is in the library exactly once when the
# run ends (the library's chunk records against the windows dgc-ingest cuts alone,
# per shard), how many kills of each kind landed, and each process's RSS over
# the run (sampled every 2 s; per incarnation: a restarted process starts
# over), so a leak shows as growth within one incarnation. RSS is split into
# anonymous memory (what a leak or the allocator's retained pages grow) and
# file-backed pages (the binary and libraries paged in), and the
# coordinator's RocksDB memory (dgc_library_memory_bytes: memtables, block
# cache, table readers) is sampled beside it.
#
# The ingests follow a directory (--follow) that a feeder fills with the
# trace in 20 s pieces, one every --feed-seconds, so they are alive, and
# candidates for a kill, for as long as the feed runs; a restarted one reads
# the directory from its first piece again and resends what it cuts (the
# coordinator must recognise every chunk it already committed). Once the
# feed is done each ingest is stopped (SIGTERM) and started once more on the
# directory without --follow: it cuts the last windows (a followed input
# never ends, so they stay open), ships its spool and exits.
#
# Bounded: at most --max-minutes of wall time, at most chunks/kill-every + 1
# kills, and every wait has its own bound.
#
# Usage: tests/bench/soak.sh [BUILD_DIR] [--chunks N] [--kill-every K] [--workers W]
#        [--shards S] [--max-minutes M] [--seed R] [--feed-seconds F] [--keep DIR]
#        [--coordinator-flags "FLAGS"]   (appended to dgc-coordinator's, e.g. "--library-memory-mb 8")
#        [--coordinator-env "VAR=VALUE ..."]   (its environment, e.g. "MALLOC_ARENA_MAX=2")
#   defaults: 10000 chunks, a kill every 300, 2 workers, 2 shards, 90 minutes,
#   a 20 s piece of trace fed every 1.5 s
set -euo pipefail
build=${1:-build}
[[ $# -gt 0 ]] && shift
chunks=10000 kill_every=300 workers=2 shards=2 max_minutes=90 seed=1 keep="" feed_seconds=1.5 coordinator_flags="" coordinator_env=
while (($#)); do
  case "$1" in
    --chunks) chunks=$2; shift ;;
    --kill-every) kill_every=$2; shift ;;
    --workers) workers=$2; shift ;;
    --shards) shards=$2; shift ;;
    --max-minutes) max_minutes=$2; shift ;;
    --seed) seed=$2; shift ;;
    --keep) keep=$2; shift ;;
    --feed-seconds) feed_seconds=$2; shift ;;
    --coordinator-flags) coordinator_flags=$2; shift ;;
    --coordinator-env) coordinator_env=$2; shift ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
build=$(cd "$build" && pwd)
ctl="$build/coordinator/dgcctl/dgcctl"
tmp=$(mktemp -d)
declare -A pid cmd
feeder=""
cleanup() {
  [[ -n $feeder ]] && kill -9 "$feeder" 2>/dev/null || true
  for k in "${!pid[@]}"; do kill -9 "${pid[$k]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n $keep ]]; then mkdir -p "$keep" && cp "$tmp"/*.log "$tmp"/*.csv "$tmp"/*.json "$keep"/ 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
RANDOM=$seed

seconds=$(((chunks + shards - 1) / shards))
"$ctl" synth-trace -o "$tmp/t.pcap" --seconds "$seconds" --sessions-per-second 20 --seed "$seed" >/dev/null
"$ctl" warmup "$tmp/t.pcap" -o "$tmp/base.dgcm" --chunk-seconds 60 --warmup-steps 5 --warmup-flows 500 >/dev/null 2>&1
expected=0
for ((i = 0; i < shards; i++)); do
  # A shard is a stream of its own (network mode): with no coordinator its
  # chunks stay in the spool, one file per window.
  "$build/ingest/dgc-ingest" "$tmp/t.pcap" --out "$tmp/probe" --link probe --shard "$i/$shards" \
    --chunk-seconds 1 --metrics 127.0.0.1:0 >/dev/null 2>&1
  n=$(find "$tmp/probe" -path "*probe#$i/*.dgcc" | wc -l)
  expected=$((expected + n))
done
rm -rf "$tmp/probe"
# The feed: the trace in 20 s pieces (names in time order), moved into the
# followed directory one at a time by the feeder below.
mkdir -p "$tmp/pieces" "$tmp/feed"
editcap -i 20 "$tmp/t.pcap" "$tmp/pieces/p.pcap" >/dev/null
pieces=("$tmp"/pieces/p_*.pcap)
read -r p_listen p_api p_metrics < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
metrics="127.0.0.1:$p_metrics"
cmd[coordinator]="env $coordinator_env $build/coordinator/dgc-coordinator --library $tmp/lib --listen tcp://127.0.0.1:$p_listen \
 --api tcp://127.0.0.1:$p_api --metrics $metrics --base $tmp/base.dgcm --steps 1 --seconds 1 --min-flows 1 \
 --no-check --heartbeat-seconds 1 --lease-seconds 5 $coordinator_flags"
for ((k = 0; k < workers; k++)); do
  cmd[worker$k]="$build/worker/dgc-worker --coordinator tcp://127.0.0.1:$p_listen --name w$k --metrics 127.0.0.1:0"
done
for ((i = 0; i < shards; i++)); do
  cmd[ingest$i]="$build/ingest/dgc-ingest $tmp/feed --follow --settle-seconds 1 \
 --coordinator tcp://127.0.0.1:$p_listen --spool-dir $tmp/spool --link soak --shard $i/$shards --chunk-seconds 1 \
 --metrics 127.0.0.1:0"
done
declare -A incarnation kills
start() {  # start NAME: runs cmd[NAME], its log appended to NAME.log
  incarnation[$1]=$((${incarnation[$1]:-0} + 1))
  echo "== incarnation ${incarnation[$1]}" >>"$tmp/$1.log"
  # shellcheck disable=SC2086
  ${cmd[$1]} >>"$tmp/$1.log" 2>&1 &
  pid[$1]=$!
}
committed() {  # chunks in the coordinator's library (its API), or -1 while it is away
  "$ctl" get chunks --coordinator "tcp://127.0.0.1:$p_api" --timeout 2 -o json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo -1
}

start coordinator
for _ in $(seq 100); do grep -q "operator API on" "$tmp/coordinator.log" && break; sleep 0.1; done
grep -q "operator API on" "$tmp/coordinator.log" || { tail "$tmp/coordinator.log"; exit 1; }
for ((k = 0; k < workers; k++)); do start "worker$k"; done
sleep 1
for ((i = 0; i < shards; i++)); do start "ingest$i"; done
# Bounded: one move per piece.
(
  for f in "${pieces[@]}"; do
    cp "$f" "$tmp/feed/$(basename "$f").part" && mv "$tmp/feed/$(basename "$f").part" "$tmp/feed/$(basename "$f")"
    sleep "$feed_seconds"
  done
) &
feeder=$!
fed=0

echo "t_s,process,incarnation,rss_kib,anon_kib,file_kib" >"$tmp/rss.csv"
echo "t_s,memtables,block_cache,table_readers" >"$tmp/libmem.csv"
t0=$(date +%s)
next_kill=$kill_every max_kills=$((chunks / kill_every + 1)) n_kills=0 done=0 last=-1
while :; do
  now=$(date +%s)
  ((now - t0 > max_minutes * 60)) && { echo "soak: stopped at --max-minutes $max_minutes" >&2; break; }
  for k in "${!pid[@]}"; do
    if [[ -r /proc/${pid[$k]}/status ]]; then
      # VmRSS and its parts: anonymous memory (heap, arenas: what a leak
      # grows) and file-backed pages (the binary and libraries paged in).
      rss=$(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {if (r != "") print r "," a "," f}' \
        "/proc/${pid[$k]}/status")
      [[ -n $rss ]] && echo "$((now - t0)),$k,${incarnation[$k]},$rss" >>"$tmp/rss.csv"
    fi
  done
  # The coordinator's RocksDB memory (dgc_library_memory_bytes), beside its RSS.
  curl -fsS --max-time 2 "http://$metrics/metrics" 2>/dev/null | awk -v t=$((now - t0)) '
    /^dgc_library_memory_bytes\{kind="memtables"\}/ {m=$2} /^dgc_library_memory_bytes\{kind="block_cache"\}/ {c=$2}
    /^dgc_library_memory_bytes\{kind="table_readers"\}/ {r=$2}
    END {if (m != "") printf "%s,%d,%d,%d\n", t, m, c, r}' >>"$tmp/libmem.csv" || true
  if ((!fed)) && ! kill -0 "$feeder" 2>/dev/null; then
    # Fed: each ingest once more without --follow, to cut its last windows.
    fed=1
    wait "$feeder" 2>/dev/null || true
    feeder=""
    echo "$(date +%T) fed ${#pieces[@]} pieces: ingests restarted without --follow" >>"$tmp/kills.log"
    for ((i = 0; i < shards; i++)); do
      kill -TERM "${pid[ingest$i]}" 2>/dev/null || true
      wait "${pid[ingest$i]}" 2>/dev/null || true
      cmd[ingest$i]=${cmd[ingest$i]/ --follow --settle-seconds 1/}
      start "ingest$i"
    done
  fi
  # Counting lists every chunk (by pages): every 5th sample, so the count
  # does not load the coordinator it measures.
  polls=$((${polls:-0} + 1))
  if ((polls % 5 == 1)); then
    c=$(committed)
    ((c >= 0)) && last=$c
  fi
  if ((last >= expected)); then done=1; break; fi
  if ((last >= next_kill && n_kills < max_kills)); then
    victims=(coordinator)
    for ((k = 0; k < workers; k++)); do victims+=("worker$k"); done
    # An ingest that shipped everything has exited 0 (its chunks are
    # acknowledged); the feeder keeps the followers alive until it is done.
    for ((i = 0; i < shards; i++)); do kill -0 "${pid[ingest$i]}" 2>/dev/null && victims+=("ingest$i"); done
    v=${victims[RANDOM % ${#victims[@]}]}
    kill -9 "${pid[$v]}" 2>/dev/null || true
    wait "${pid[$v]}" 2>/dev/null || true
    kills[$v]=$((${kills[$v]:-0} + 1))
    n_kills=$((n_kills + 1))
    echo "$(date +%T) kill -9 $v at $last committed chunks" >>"$tmp/kills.log"
    start "$v"
    next_kill=$((next_kill + kill_every))
  fi
  sleep 2
done
t1=$(date +%s)
# The library itself, after a clean stop: every window once.
for k in "${!pid[@]}"; do kill -TERM "${pid[$k]}" 2>/dev/null || true; done
for k in "${!pid[@]}"; do wait "${pid[$k]}" 2>/dev/null || true; done
pid=()
"$ctl" get chunks --library "$tmp/lib" -o json >"$tmp/chunks.json"
kill_list=$(for k in "${!kills[@]}"; do echo "$k=${kills[$k]}"; done | sort | paste -sd ' ' -)
python3 - "$tmp/chunks.json" "$tmp/rss.csv" "$expected" "$((t1 - t0))" "$n_kills" "$kill_list" "$done" \
  "$tmp/libmem.csv" <<'PY'
import collections, csv, json, sys
chunks = json.load(open(sys.argv[1]))
expected, wall, n_kills, kill_list, done = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7] == "1"
keys = collections.Counter((c["link"], c["start"]) for c in chunks)
dups = sum(v - 1 for v in keys.values() if v > 1)
print("| measure | value |")
print("|---|---|")
print("| windows expected (each shard cut by dgc-ingest alone) | %d |" % expected)
print("| chunks in the library | %d (%d distinct, %d twice) |" % (len(chunks), len(keys), dups))
print("| wall time | %d s (%.1f chunks/s) |" % (wall, len(keys) / max(wall, 1)))
print("| kills (SIGKILL) | %d: %s |" % (n_kills, kill_list or "none"))
rows = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[2])):
    rows[(r["process"], int(r["incarnation"]))].append(
        (int(r["t_s"]), int(r["rss_kib"]), int(r["anon_kib"] or 0), int(r["file_kib"] or 0)))
def quarters(xs):
    q = max(1, len(xs) // 4)
    return sorted(xs[:q])[q // 2], sorted(xs[-q:])[q // 2]
def second(xs):  # the median of the second quarter: caches fill in the first
    q = max(1, len(xs) // 4)
    return sorted(xs[q:2 * q] or xs)[len(xs[q:2 * q] or xs) // 2]
print()
print("| process (incarnation) | samples | RSS MiB first / median / last / max | growth last vs first quarter "
      "| anon MiB first / second / last quarter | file MiB first / last quarter |")
print("|---|---|---|---|---|---|")
for (p, inc), v in sorted(rows.items()):
    rss = [x[1] for x in v]
    first, last_q = quarters(rss)
    a0, a1 = quarters([x[2] for x in v])
    f0, f1 = quarters([x[3] for x in v])
    print("| %s (%d) | %d | %.0f / %.0f / %.0f / %.0f | %+.0f%% | %.1f / %.1f / %.1f | %.1f / %.1f |" % (
        p, inc, len(rss), rss[0] / 1024, sorted(rss)[len(rss) // 2] / 1024, rss[-1] / 1024, max(rss) / 1024,
        100.0 * (last_q - first) / max(first, 1), a0 / 1024, second([x[2] for x in v]) / 1024, a1 / 1024,
        f0 / 1024, f1 / 1024))
mem = list(csv.DictReader(open(sys.argv[8])))
if mem:
    print()
    print("| coordinator's RocksDB (dgc_library_memory_bytes) | MiB first / last quarter | max |")
    print("|---|---|---|")
    for k in ("memtables", "block_cache", "table_readers"):
        xs = [int(r[k]) for r in mem]
        a, b = quarters(xs)
        print("| %s | %.1f / %.1f | %.1f |" % (k, a / 2**20, b / 2**20, max(xs) / 2**20))
ok = done and len(keys) == expected and dups == 0
print("\nsoak: %s" % ("every window committed once" if ok else "FAILED: %d of %d windows, %d twice%s" % (
    len(keys), expected, dups, "" if done else ", the run did not finish")))
sys.exit(0 if ok else 1)
PY

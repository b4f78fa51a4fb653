#!/usr/bin/env bash
# A real Prometheus (Debian's prometheus package) scrapes deploy/local-cluster.sh:
# every target (coordinator, ingest, two workers) is up, every process exports
# dgc_build_info, the alert rules load, and dgc_ingest_packets_total grows while a
# capture is fed. A missing local-cluster.sh, binary, or tool deploy/install-deps.sh
# installs (prometheus, curl, python3) is a failure, not a skip.
# Usage: prometheus_scrape_test.sh REPO_ROOT BUILD_DIR   (ctest: deploy_prometheus_scrape)
# DGC_TEST_CAPTURE=FILE feeds that capture instead of a synthetic one.
set -euo pipefail
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
missing() { echo "FAIL: $*"; exit 1; }
fail() { echo "FAIL: $*"; for f in "$tmp"/lc.log "$tmp"/lc/logs/*; do [[ -f $f ]] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }

[[ -f $root/deploy/local-cluster.sh ]] || missing "deploy/local-cluster.sh does not exist"
for b in coordinator/dgc-coordinator worker/dgc-worker ingest/dgc-ingest; do
  [[ -x $build/$b ]] || missing "$build/$b not built"
done
for t in prometheus curl python3; do
  command -v "$t" >/dev/null || missing "$t not installed: install the Debian package $t (deploy/install-deps.sh installs it)"
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Free ports: P, P+1 (ZeroMQ), M..M+3 (metrics), and one for Prometheus.
read -r zmq_port metrics_port prom_port < <(python3 - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
def run(n):
    while True:
        p = random.randrange(20000, 60000 - n)
        if all(free(p + i) for i in range(n)):
            return p
print(run(2), run(4), run(1))
EOF
)

capture=${DGC_TEST_CAPTURE:-}
if [[ -z $capture ]]; then
  capture=$tmp/trace.pcap
  "$build/coordinator/dgcctl/dgcctl" synth-trace -o "$capture" --seconds 180 >/dev/null
fi

bash "$root/deploy/local-cluster.sh" --build "$build" --dir "$tmp/lc" --workers 2 \
  --port "$zmq_port" --metrics-port "$metrics_port" >"$tmp/lc.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
  grep -q "local-cluster: ready" "$tmp/lc.log" && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "local-cluster.sh exited"
  sleep 0.5
done
grep -q "local-cluster: ready" "$tmp/lc.log" || fail "local-cluster.sh not ready after 60 s"

m=$metrics_port
mkdir -p "$tmp/prom"
cp "$root/deploy/prometheus/alerts.yml" "$tmp/prom/"
cat >"$tmp/prom/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: dgc-coordinator
    static_configs: [{targets: ["127.0.0.1:$m"], labels: {node: localhost, namespace: local}}]
  - job_name: dgc-ingest
    static_configs: [{targets: ["127.0.0.1:$((m + 1))"], labels: {node: localhost, namespace: local}}]
  - job_name: dgc-worker
    static_configs: [{targets: ["127.0.0.1:$((m + 2))", "127.0.0.1:$((m + 3))"], labels: {node: localhost, namespace: local}}]
EOF
prometheus --config.file="$tmp/prom/prometheus.yml" --storage.tsdb.path="$tmp/prom/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prom.log" 2>&1 &
pids+=($!)
api=http://127.0.0.1:$prom_port
for _ in $(seq 60); do curl -fsS "$api/-/ready" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "$api/-/ready" >/dev/null || { cat "$tmp/prom.log"; fail "prometheus not ready"; }

# query EXPR: the sum of the result's values, or "none" when it is empty.
query() {
  curl -fsS --get "$api/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(sum(float(x["value"][1]) for x in r) if r else "none")'
}
wait_for() {  # wait_for SECONDS DESCRIPTION PYTHON-CONDITION-ON-v EXPR
  local v
  for _ in $(seq $(($1 * 2))); do
    v=$(query "$4")
    python3 -c "v = None if '$v' == 'none' else float('$v'); import sys; sys.exit(0 if ($3) else 1)" && { echo "ok: $2 ($v)"; return 0; }
    sleep 0.5
  done
  fail "$2: $4 = $v"
}

wait_for 30 "all 4 targets up" "v == 4" 'sum(up{job=~"dgc-.*"})'
wait_for 10 "dgc_build_info from coordinator, ingest and workers" "v == 3" 'count(count by (job) (dgc_build_info))'
[[ $(curl -fsS "$api/api/v1/rules" | python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))') -gt 0 ]] ||
  fail "prometheus loaded no alert rule"
before=$(query 'sum(dgc_ingest_packets_total)')
[[ $before == none ]] && fail "dgc_ingest_packets_total is not exported"
cp "$capture" "$tmp/feed.pcap"
mv "$tmp/feed.pcap" "$tmp/lc/captures/feed.pcap"
wait_for 60 "dgc_ingest_packets_total grew while the capture was fed" "v is not None and v > $before" 'sum(dgc_ingest_packets_total)'
echo "PASS: prometheus scraped the local cluster"

#!/usr/bin/env bash
# Use case 2, system testing: a regenerated trace loaded onto a network with
# the tools operators use. The trace is compressed, regenerated with
# `dgcctl generate --full-packets`, its addresses rewritten into 127.0.0.0/8
# and ::1 with `tcprewrite --pnat`, then replayed with tcpreplay on the
# loopback of a network namespace this script creates (and deletes; nothing
# else is in it), once at its recorded timing and once at --topspeed, and
# captured back there with tcpdump.
#
# Checks: tcprewrite exits 0 and keeps every packet; tcpreplay reports no
# failed packet; tcpdump captures every packet sent and the kernel drops none;
# packets and bytes per 1 s window of the recorded-timing capture track the
# regenerated trace's (median relative error <= 0.05, METRICS.md's
# |synth - real| / max(real, 1) over windows active on either side). The same
# figures against the real trace are printed: they are the model's error, not
# the replay's (the CI fixture's tiny model is far off; --trace runs dgcctl's
# defaults on a real capture).
#
# Needs root (ip netns), tcpreplay, tcprewrite, tcpdump, ip and python3; exits
# 77 (ctest: skipped) without them.
#
# Usage: replay_test.sh REPO_ROOT BUILD_DIR [--trace PCAP] [--seconds N] [--keep DIR]
#   default: dgcctl synth-trace --seconds 40, compressed with a tiny model (CI)
#   --trace PCAP: a real capture, compressed with dgcctl's defaults; its first
#                 N seconds (--seconds, default 60) are regenerated and replayed
#   --keep DIR:   leave the pcaps and the summary (replay.json) in DIR
set -euo pipefail
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shift 2
trace="" seconds="" keep=""
while (($#)); do
  case "$1" in
    --trace) trace=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "replay_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
ctl="$build/coordinator/dgcctl/dgcctl"
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root for ip netns"; exit 77; fi
for t in tcpreplay tcprewrite tcpdump ip python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (deploy/install-deps.sh installs it)"; exit 77; }
done
tmp=$(mktemp -d)
ns="dgc-replay-$$"
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  if [[ -n $keep ]]; then mkdir -p "$keep" && cp "$tmp"/*.pcap "$tmp"/*.json "$tmp"/*.log "$keep"/ 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

t0=$(date +%s.%N)
if [[ -z $trace ]]; then
  seconds=${seconds:-40}
  "$ctl" synth-trace -o "$tmp/real.pcap" --seconds "$seconds" --seed 7 >/dev/null 2>&1
  opts=(--chunk-seconds 20 --width 32 --depth 1 --heads 2 --warmup-steps 60 --warmup-seconds 20
        --steps 10 --seconds 5 --sample-flows 256 --no-check)
else
  seconds=${seconds:-60}
  cp "$trace" "$tmp/real.pcap"
  opts=()
fi
"$ctl" compress "$tmp/real.pcap" --library "$tmp/lib" "${opts[@]}" >"$tmp/compress.log" 2>&1 ||
  { cat "$tmp/compress.log"; exit 1; }
first=$(python3 "$root/tests/deploy/replay_rates.py" first "$tmp/real.pcap")
"$ctl" generate --library "$tmp/lib" --full-packets --since "$first" \
  --until "$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$first" "$seconds")" \
  -o "$tmp/synth.pcap" 2>"$tmp/generate.log" || { cat "$tmp/generate.log"; exit 1; }
t1=$(date +%s.%N)

tcprewrite --pnat=0.0.0.0/0:127.0.0.0/8,[::/0]:[::1/128] -i "$tmp/synth.pcap" -o "$tmp/lo.pcap" \
  2>"$tmp/tcprewrite.log" || { echo "FAIL: tcprewrite exited $?"; cat "$tmp/tcprewrite.log"; exit 1; }
rewrite_warnings=$(grep -c '^Warning' "$tmp/tcprewrite.log" || true)

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# One replay: tcpdump on the namespace's loopback, tcpreplay into it, tcpdump
# stopped once the last packet can have arrived. Writes $tmp/cap-$1.pcap and
# $tmp/replay-$1.log and $tmp/tcpdump-$1.log.
replay() {
  local name=$1
  shift
  ip netns exec "$ns" tcpdump -i lo -s 0 -B 32768 --time-stamp-precision=nano -w "$tmp/cap-$name.pcap" \
    2>"$tmp/tcpdump-$name.log" &
  local td=$!
  for _ in $(seq 100); do  # bounded: 10 s for tcpdump to start listening
    grep -q "listening on" "$tmp/tcpdump-$name.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$tmp/tcpdump-$name.log" || { echo "FAIL: tcpdump did not start"; cat "$tmp/tcpdump-$name.log"; exit 1; }
  ip netns exec "$ns" tcpreplay -i lo "$@" "$tmp/lo.pcap" >"$tmp/replay-$name.log" 2>&1 ||
    { echo "FAIL: tcpreplay exited $?"; cat "$tmp/replay-$name.log"; exit 1; }
  # tcpdump hands packets over a ring block at a time; a block is retired when
  # full or after tcpdump's 1 s timeout, and one not retired at SIGINT is lost.
  sleep 2
  kill -INT "$td"
  wait "$td" || true
}
replay timed
replay topspeed --topspeed
t2=$(date +%s.%N)

# The timed replay's rates hold only on a machine that is otherwise idle
# (tcpreplay sleeps between packets): a failure says what the load was.
python3 "$root/tests/deploy/replay_rates.py" check --real "$tmp/real.pcap" --synth "$tmp/synth.pcap" \
  --rewritten "$tmp/lo.pcap" --seconds "$seconds" --rewrite-warnings "$rewrite_warnings" \
  --timed "$tmp/cap-timed.pcap" "$tmp/replay-timed.log" "$tmp/tcpdump-timed.log" \
  --topspeed "$tmp/cap-topspeed.pcap" "$tmp/replay-topspeed.log" "$tmp/tcpdump-topspeed.log" \
  --summary "$tmp/replay.json" || {
  echo "replay_test: FAILED with load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPU(s): the timed" \
    "replay's rate error needs an idle machine; run it alone before reading it as a regression"
  exit 1
}
python3 -c "import sys; print('times: compress+generate %.1f s, rewrite+replay %.1f s' % (float(sys.argv[2]) - float(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2])))" "$t0" "$t1" "$t2"

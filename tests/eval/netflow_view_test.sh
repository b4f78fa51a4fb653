#!/usr/bin/env bash
# The NetFlow view (tests/bench/netflow_view.py, METRICS.md) through nfdump's
# own nfpcapd: a trace against itself reads the same (0), flow records
# regenerated from it nearly the same, 1:20 packet sampling far off, and the
# trace compressed by dgc with every flow exact (--budget 1x) and
# regenerated reads what an operator's NetFlow statistics read of the real
# one: per window (300 s, or a tenth of a shorter trace) flows, packets, bytes, distinct sources and
# destinations within 5% (medians), the figure at most flow records' + 0.01.
# Skips (exit 77) without nfdump (deploy/install-deps.sh installs it).
# Usage: netflow_view_test.sh REPO_ROOT BUILD_DIR   (ctest: netflow_view)
set -euo pipefail
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
ctl="$build/coordinator/dgcctl/dgcctl"
for t in nfpcapd nfdump python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (Debian package nfdump; deploy/install-deps.sh installs it)"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ctl" synth-trace -o "$tmp/t.pcap" --seconds 900 --seed 4 >/dev/null 2>&1
"$ctl" baseline --method flows "$tmp/t.pcap" -o "$tmp/flows.pcap" >/dev/null
"$ctl" baseline --method sampling --rate 1:20 "$tmp/t.pcap" -o "$tmp/s20.pcap" >/dev/null
view() { python3 "$root/tests/bench/netflow_view.py" "$tmp/t.pcap" "$1"; }
figure() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["figure"])' "$1"; }
tiny="--chunk-seconds 300 --width 32 --depth 1 --heads 2 --warmup-steps 40 --warmup-seconds 20 --steps 10 --seconds 5 --sample-flows 256 --no-check"
# shellcheck disable=SC2086
"$ctl" compress "$tmp/t.pcap" --library "$tmp/lib" $tiny --budget 1x >/dev/null 2>&1
"$ctl" generate --library "$tmp/lib" -o "$tmp/dgc.pcap" >/dev/null 2>&1
same=$(view "$tmp/t.pcap"); flows=$(view "$tmp/flows.pcap"); s20=$(view "$tmp/s20.pcap"); dgc=$(view "$tmp/dgc.pcap")
echo "self: $same"; echo "flow records: $flows"; echo "sampling 1:20: $s20"; echo "dgc --budget 1x: $dgc"
# dgcctl's own implementation (common/eval/netflow_view.cc) must agree with this script.
ctl_s20=$("$ctl" eval "$tmp/t.pcap" "$tmp/s20.pcap" --netflow -o json)
python3 - "$same" "$flows" "$s20" "$ctl_s20" "$dgc" <<'PY'
import json, sys
same, flows, s20, ctl, dgc = (json.loads(a) for a in sys.argv[1:])
fail = []
for k in ("flows", "packets", "bytes", "src", "dst"):
    if not dgc["medians"][k] <= 0.05: fail.append("dgc --budget 1x: median %s error %s > 0.05" % (k, dgc["medians"][k]))
if not dgc["figure"] <= flows["figure"] + 0.01:
    fail.append("dgc --budget 1x reads %s, flow records %s" % (dgc["figure"], flows["figure"]))
c = ctl["netflow"]
if abs(c["figure"] - s20["figure"]) > 1e-9: fail.append("dgcctl eval --netflow %s != netflow_view.py %s" % (c["figure"], s20["figure"]))
for k, v in s20["medians"].items():
    if abs(c["medians"][k] - v) > 1e-9: fail.append("median %s: dgcctl %s, script %s" % (k, c["medians"][k], v))
if (c["windows"], c["real_records"], c["synth_records"]) != (s20["windows"], s20["real_records"], s20["synth_records"]):
    fail.append("windows/records differ: dgcctl %s, script %s" % (c, s20))
if same["figure"] != 0: fail.append("a trace against itself must read 0, got %s" % same["figure"])
if same["windows"] < 10: fail.append("expected at least 10 windows, got %d" % same["windows"])
if not flows["figure"] < 0.05: fail.append("flow records should read nearly the same, got %s" % flows["figure"])
if not s20["figure"] > 0.2: fail.append("1:20 sampling should read far off, got %s" % s20["figure"])
if same["top10_dport_share"] != 1: fail.append("top-10 ports of a trace against itself must all match")
for f in fail: print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
echo "netflow view: 4 checks passed, dgcctl eval --netflow agrees with the script"

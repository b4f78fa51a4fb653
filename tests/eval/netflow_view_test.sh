#!/usr/bin/env bash
# The NetFlow view (tests/bench/netflow_view.py, METRICS.md) through nfdump's
# own nfpcapd: a trace against itself reads the same (0), flow records
# regenerated from it nearly the same, and 1:20 packet sampling far off.
# nfdump is required (deploy/install-deps.sh installs it).
# Usage: netflow_view_test.sh REPO_ROOT BUILD_DIR   (ctest: netflow_view)
set -euo pipefail
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
ctl="$build/coordinator/dgcctl/dgcctl"
for t in nfpcapd nfdump python3; do
  command -v "$t" >/dev/null || { echo "FAIL: $t not installed (Debian package nfdump; deploy/install-deps.sh installs it)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ctl" synth-trace -o "$tmp/t.pcap" --seconds 900 --seed 4 >/dev/null 2>&1
"$ctl" baseline --method flows "$tmp/t.pcap" -o "$tmp/flows.pcap" >/dev/null
"$ctl" baseline --method sampling --rate 1:20 "$tmp/t.pcap" -o "$tmp/s20.pcap" >/dev/null
view() { python3 "$root/tests/bench/netflow_view.py" "$tmp/t.pcap" "$1"; }
figure() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["figure"])' "$1"; }
same=$(view "$tmp/t.pcap"); flows=$(view "$tmp/flows.pcap"); s20=$(view "$tmp/s20.pcap")
echo "self: $same"; echo "flow records: $flows"; echo "sampling 1:20: $s20"
# dgcctl's own implementation (common/eval/netflow_view.cc) must agree with this script.
ctl_s20=$("$ctl" eval "$tmp/t.pcap" "$tmp/s20.pcap" --netflow -o json)
python3 - "$same" "$flows" "$s20" "$ctl_s20" <<'PY'
import json, sys
same, flows, s20, ctl = (json.loads(a) for a in sys.argv[1:])
fail = []
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
echo "netflow view: 3 checks passed, dgcctl eval --netflow agrees with the script"

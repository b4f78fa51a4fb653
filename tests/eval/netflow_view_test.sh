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
python3 - "$same" "$flows" "$s20" <<'PY'
import json, sys
same, flows, s20 = (json.loads(a) for a in sys.argv[1:])
fail = []
if same["figure"] != 0: fail.append("a trace against itself must read 0, got %s" % same["figure"])
if same["windows"] < 10: fail.append("expected at least 10 windows, got %d" % same["windows"])
if not flows["figure"] < 0.05: fail.append("flow records should read nearly the same, got %s" % flows["figure"])
if not s20["figure"] > 0.2: fail.append("1:20 sampling should read far off, got %s" % s20["figure"])
if same["top10_dport_share"] != 1: fail.append("top-10 ports of a trace against itself must all match")
for f in fail: print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
echo "netflow view: 3 checks passed"

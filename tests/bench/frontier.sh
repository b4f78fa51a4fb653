#!/usr/bin/env bash
# The frontier of fidelity against kept bytes (issue: step 1): per trace, dgc at
# budgets of 0.01x, 0.03x, 0.1x, 0.3x and 1x of zstd -19 of the header-only pcap,
# and packet sampling, flow records (flow-sampled below their full size) and the
# marginals at the bytes dgc kept; the table on stdout, OUT/frontier.html with
# the curves. See frontier.py for what is measured.
#
#   tests/bench/frontier.sh [OUT_DIR] [NAME=PATH:CHUNK_SECONDS ...]
#
# Without traces: the five IoT weeks (1 h chunks), the merged pcapplusplus LAN
# captures (600 s), the ndpi sessions merged (600 s), the 1M bench trace (600 s,
# built by make_bench_trace.sh) and the CAIDA sample. BUDGETS="0.1x,1x" narrows
# the budgets. Needs nfdump and mergecap (deploy/install-deps.sh installs them).
# About half an hour on 2 cores for the whole set (28 min in session 18):
# run it by hand, not in CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/build/frontier}"
[[ $# -gt 0 ]] && shift
data="${DGC_DATA_DIR:-$root/../shared/data}"
mkdir -p "$out"
traces=("$@")
if [[ ${#traces[@]} -eq 0 ]]; then
  for f in "$data"/iot-oconnor/*.pcap; do traces+=("$(basename "$f" .pcap)=$f:3600"); done
  mergecap -F pcap -w "$out/lan.pcap" "$data"/pcapplusplus/*.pcap
  traces+=("lan=$out/lan.pcap:600")
  # The ndpi sessions mix link types (Ethernet, Linux SLL, pcapng) that one
  # classic pcap cannot hold: each goes to header-only raw IP first
  # (`baseline --method sampling --rate 1:1` keeps every packet), shifted to
  # start at the same instant, then merged.
  nd="$out/ndpi-parts"
  rm -rf "$nd" && mkdir -p "$nd"
  i=0
  for f in "$data"/ndpi/*; do
    i=$((i + 1))
    "$root/build/coordinator/dgcctl/dgcctl" baseline --method sampling --rate 1:1 "$f" -o "$nd/$i.pcap" \
      --summary json >/dev/null
    first=$(capinfos -a -S -r -T "$nd/$i.pcap" | awk -F'\t' '{print $2}')
    [[ -z "$first" ]] && continue
    editcap -t "$(awk -v f="$first" 'BEGIN { printf "%.6f", 1600000000 - f }')" "$nd/$i.pcap" "$nd/$i.s.pcap"
  done
  mergecap -F pcap -w "$out/ndpi.pcap" "$nd"/*.s.pcap
  rm -rf "$nd"
  traces+=("ndpi=$out/ndpi.pcap:600")
  "$root/tests/bench/make_bench_trace.sh" "$out/bench-1m.pcap" >/dev/null
  traces+=("bench-1m=$out/bench-1m.pcap:600")
  traces+=("caida=$data/netshare/caida-small_raw.pcap:1")
fi
exec python3 "$root/tests/bench/frontier.py" --out "$out" --budgets "${BUDGETS:-0.01x,0.03x,0.1x,0.3x,1x}" "${traces[@]}"

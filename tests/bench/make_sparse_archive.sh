#!/usr/bin/env bash
# Builds a long sparse archive from the five dev IoT weeks: an operator's year
# of old captures of a quiet link, in small. The weeks are merged into one
# 7.3-day trace (125k packets), and COPIES copies of it, each shifted SHIFT_DAYS
# further on, are merged into one pcap: by default 8 copies, 8 days apart,
# about 1.0M packets over 65 days, so about 84k one-minute chunks.
#
#   tests/bench/make_sparse_archive.sh [OUT.pcap]   (default build/bench/iot-65d.pcap)
#
# Environment: COPIES (8), SHIFT_DAYS (8), DATA (../shared/data).
# Needs editcap and mergecap (wireshark-common, installed with tshark).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/build/bench/iot-65d.pcap}"
copies="${COPIES:-8}"
shift_days="${SHIFT_DAYS:-8}"
data="${DATA:-$root/../shared/data}"
weeks=("$data"/iot-oconnor/*.pcap)
if [[ ! -s "${weeks[0]}" ]]; then
  echo "no IoT weeks under $data/iot-oconnor (../shared/data/README.md)" >&2
  exit 1
fi
for tool in editcap mergecap; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install tshark)" >&2; exit 1; }
done

mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mergecap -F pcap -w "$work/week.pcap" "${weeks[@]}"
parts=()
for ((i = 0; i < copies; i++)); do
  editcap -F pcap -t $((i * shift_days * 86400)) "$work/week.pcap" "$work/copy-$i.pcap"
  parts+=("$work/copy-$i.pcap")
done
mergecap -F pcap -w "$out.tmp" "${parts[@]}"
mv "$out.tmp" "$out"
capinfos -c -u "$out" | sed -n 's/^ *//p' | tail -n +2 >&2
echo "$out" >&2

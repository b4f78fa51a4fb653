#!/usr/bin/env bash
# The main job on a built-in default: builds dgc, then runs it on a trace.
# Today (step 1 of the plan) that is ingest: the trace is cut into chunks and
# the chunk summary printed. With ../shared/data present it uses a real IoT
# capture; otherwise a trace that dgc generates itself.
#   DGC_DEMO_TRACE=FILE   use this capture instead
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build dgc-ingest dgcctl >/dev/null

trace=${DGC_DEMO_TRACE:-}
if [[ -z "$trace" && -f ../shared/data/iot-oconnor/blink-cam-01.pcap ]]; then
  trace=../shared/data/iot-oconnor/blink-cam-01.pcap
fi
if [[ -z "$trace" ]]; then
  trace=build/demo/demo-trace.pcap
  mkdir -p build/demo
  build/coordinator/dgcctl/dgcctl synth-trace -o "$trace"
fi
spool=build/demo/spool
rm -rf "$spool"
echo "dgc demo: ingest $trace -> $spool (60 s chunks)"
build/ingest/dgc-ingest "$trace" --out "$spool" --link demo

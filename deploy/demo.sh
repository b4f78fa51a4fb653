#!/usr/bin/env bash
# The main job on a built-in default: build dgc, compress a trace into a model
# library, regenerate it, and print the fidelity (dgcctl eval) and storage
# (dgcctl storage) tables.
# The trace: with ../shared/data present, a real week-long IoT capture
# (iot-oconnor/blink-cam-01.pcap, 1 h chunks); without it, dgc's built-in
# synthetic trace (dgcctl synth-trace: a made-up LAN of web, DNS, NTP and ping
# sessions, 10 minutes, 5 min chunks), so the demo runs on any machine.
#   DGC_DEMO_TRACE=FILE           use this capture instead
#   DGC_DEMO_CHUNK_SECONDS=N      chunk length
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "== build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build dgc-ingest dgcctl >/dev/null
ctl=build/coordinator/dgcctl/dgcctl
out=build/demo
mkdir -p "$out"

trace=${DGC_DEMO_TRACE:-}
chunk=${DGC_DEMO_CHUNK_SECONDS:-}
if [[ -z "$trace" && -f ../shared/data/iot-oconnor/blink-cam-01.pcap ]]; then
  trace=../shared/data/iot-oconnor/blink-cam-01.pcap
  chunk=${chunk:-3600}
fi
if [[ -z "$trace" ]]; then
  trace=$out/synthetic-trace.pcap
  "$ctl" synth-trace -o "$trace" --seconds 600
  chunk=${chunk:-300}
fi
chunk=${chunk:-600}

echo "== compress $trace (chunks of ${chunk}s) into $out/library"
rm -rf "$out/library"
"$ctl" compress "$trace" --library "$out/library" --chunk-seconds "$chunk" -o json >"$out/compress.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("  %d chunks, %d packets, %d B stored (%.0f B per million packets), base %d B, %.1f s wall, %.1f CPU-s" % (j["chunks"], j["packets"], j["stored_bytes"], j["stored_bytes_per_million_packets"], j["base_model_bytes"], j["seconds"], j["cpu_seconds"]))' "$out/compress.json"

echo "== generate $out/synthetic.pcap"
"$ctl" generate --library "$out/library" -o "$out/synthetic.pcap"

echo "== fidelity (dgcctl eval; HTML report in $out/report.html)"
"$ctl" eval "$trace" "$out/synthetic.pcap" --report "$out/report.html"

echo "== storage (dgcctl storage, DGC = the chunks' stored bytes and compress's CPU seconds, user+sys)"
stored=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_bytes"])' "$out/compress.json")
cpu_secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cpu_seconds"])' "$out/compress.json")
"$ctl" storage "$trace" --model-bytes "$stored" --compute-seconds "$cpu_secs"

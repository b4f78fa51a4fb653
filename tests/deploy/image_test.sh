#!/usr/bin/env bash
# Builds deploy/docker/Dockerfile with podman and runs it: `dgcctl --version`,
# the demo (synthetic trace compressed, regenerated, scored) and a
# coordinator's /readyz, each inside the image. Prints the image's size and
# the time of each step. Not in ctest: it needs Debian's package mirror (the
# base image and the runtime packages come from debootstrap and apt-get) and
# minutes.
#
# No registry is needed: the base image debian:12 is made with debootstrap
# (variant minbase) and imported, once; later runs reuse it.
#
# Engine settings that work on this machine kind (the defaults do not):
# runc rather than crun, cgroupfs, chroot isolation for RUN steps, and no
# default ulimits (CONTAINERS_CONF below); host networking and no health
# check timers (they need systemd) for the run steps.
#
# Usage: image_test.sh REPO_ROOT BUILD_DIR [--from-source] [--tag T]
#   default:       the binaries come from BUILD_DIR (cmake --install --strip),
#                  imported as an image and passed as --build-arg DGC_BIN_FROM:
#                  the runtime stage as shipped, the builder stage skipped
#   --from-source: the builder stage too (install-deps.sh and a full build in
#                  the image; about 40 min on 2 cores)
# Needs root, podman, runc and debootstrap (exit 77 without them).
set -euo pipefail
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
shift 2
from_source=0 tag=localhost/dgc:test
while (($#)); do
  case "$1" in
    --from-source) from_source=1; shift ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "image_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root"; exit 77; fi
for t in podman runc debootstrap curl; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (apt-get install podman runc debootstrap curl)"; exit 77; }
done
work=${DGC_IMAGE_WORK:-/var/tmp/dgc-image}
mkdir -p "$work"
conf="$work/containers.conf"
cat >"$conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF=$conf
pm() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }
now() { date +%s.%N; }
took() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
declare -A times

# 1. debian:12 without a registry.
t=$(now)
if ! pm image exists docker.io/library/debian:12; then
  if [[ ! -x $work/rootfs/bin/bash ]]; then
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -20 "$work/debootstrap.log"; exit 1; }
  fi
  # The image's apt reads the same mirror debootstrap used, with security updates.
  cat >"$work/rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  tar -C "$work/rootfs" -c . | pm import - docker.io/library/debian:12 >/dev/null 2>&1
fi
times[base]=$(took "$t")

# 2. The image.
args=()
t=$(now)
if ((from_source == 0)); then
  stage="$work/bin-context"
  rm -rf "$stage"
  cmake --install "$build" --prefix "$stage/opt/dgc" --strip >/dev/null
  for b in dgc-coordinator dgc-worker dgc-ingest dgcctl; do
    [[ -x $stage/opt/dgc/bin/$b ]] || { echo "FAIL: $build has no $b (build it first)"; exit 1; }
  done
  tar -C "$stage" -c opt | pm import - localhost/dgc-bin:local >/dev/null 2>&1
  args+=(--build-arg DGC_BIN_FROM=localhost/dgc-bin:local)
fi
pm build --format docker --isolation chroot --pull=never "${args[@]}" -f "$root/deploy/docker/Dockerfile" -t "$tag" "$root" \
  >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "FAIL: podman build (log: $work/build.log)"; exit 1; }
times[build]=$(took "$t")
size=$(pm image inspect --format '{{.Size}}' "$tag")
health=$(pm image inspect --format '{{.Config.Healthcheck.Test}}' "$tag" 2>/dev/null || echo none)

# 3. Inside it.
fail=0
t=$(now)
version=$(pm run --rm --no-healthcheck --network host "$tag" dgcctl --version 2>&1) || { echo "FAIL: dgcctl --version: $version"; fail=1; }
times[version]=$(took "$t")
t=$(now)
if ! pm run --rm --no-healthcheck --network host "$tag" bash -c '
    set -e; cd /tmp
    dgcctl synth-trace -o t.pcap --seconds 600
    dgcctl compress t.pcap --library lib --chunk-seconds 300
    dgcctl generate --library lib -o s.pcap
    dgcctl eval t.pcap s.pcap
    dgcctl storage t.pcap --model-bytes "$(du -sb lib | cut -f1)"' >"$work/demo.log" 2>&1; then
  tail -30 "$work/demo.log"; echo "FAIL: the demo inside the image"; fail=1
fi
times[demo]=$(took "$t")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="dgc-readyz-$$"
t=$(now)
pm run -d --rm --no-healthcheck --name "$name" --network host "$tag" dgc-coordinator --library /var/lib/dgc/lib \
  --metrics "127.0.0.1:$port" --listen tcp://127.0.0.1:0 --api tcp://127.0.0.1:0 >/dev/null
ready=""
for _ in $(seq 100); do  # bounded: 20 s
  ready=$(curl -fsS "http://127.0.0.1:$port/readyz" 2>/dev/null) && break
  sleep 0.2
done
times[readyz]=$(took "$t")
logs=$(pm logs "$name" 2>&1 | tail -5 || true)
pm stop -t 5 "$name" >/dev/null 2>&1 || true
[[ -n $ready ]] || { echo "FAIL: coordinator /readyz did not answer in 20 s; its log:"; echo "$logs"; fail=1; }

echo "image $tag ($( ((from_source)) && echo "built from source" || echo "binaries from $build")): $((size / 1000000)) MB"
echo "  dgcctl --version: $version"
echo "  demo: $(grep -E "^(fidelity|stored) |^ +mean \(" "$work/demo.log" | tr -s ' ' | paste -sd ';' -)"
echo "  coordinator /readyz: ${ready:-no answer}; HEALTHCHECK in the image: $health (not run by podman here: no systemd)"
printf '  seconds: base image %s, build %s, dgcctl --version %s, demo %s, coordinator to /readyz %s\n' \
  "${times[base]}" "${times[build]}" "${times[version]}" "${times[demo]}" "${times[readyz]}"
exit $fail

#!/usr/bin/env bash
# Installs every Debian 12 package dgc needs to build, test and run.
# Idempotent: packages already present are left as they are. Run as root.
# Nothing is downloaded outside Debian's package archive.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang libclang-rt-14-dev            # libFuzzer and sanitizer runtimes
  # trace layer
  libpcap-dev libzstd-dev zlib1g-dev liblzma-dev libxxhash-dev
  # base libraries
  libabsl-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  # model (libtorch on OpenBLAS: without libopenblas0-pthread matmuls fall back to
  # reference BLAS, ~14x slower)
  libtorch-dev libopenblas0-pthread
  # library, wire, runtime
  librocksdb-dev cppzmq-dev libzmq3-dev capnproto libcapnp-dev
  prometheus-cpp-dev libboost-dev libboost-system-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  tshark tcpdump python3 prometheus
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps.sh: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps.sh: done"

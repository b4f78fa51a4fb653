#!/usr/bin/env bash
# Installs every Debian 12 package dgc needs to build, test and run.
# Idempotent: packages already present are left as they are. Run as root.
# Nothing is downloaded outside Debian's package archive.
#   --runtime  install only what the built binaries need to run (the container
#              image's runtime stage, deploy/docker/Dockerfile)
#   --print    print the package list (with --runtime: the runtime list) and exit
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang libclang-rt-14-dev            # libFuzzer and sanitizer runtimes
  # trace layer
  libpcap-dev libzstd-dev zlib1g-dev liblzma-dev libxxhash-dev
  libssl-dev libsodium-dev            # --pseudonymize: CryptoPAn (AES-128), the legacy SipHash scheme
  # base libraries
  libabsl-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  # model (libtorch on OpenBLAS: without libopenblas0-pthread matmuls fall back to
  # reference BLAS, ~14x slower)
  libtorch-dev libgloo-dev libopenblas0-pthread
  # library, wire, runtime
  librocksdb-dev cppzmq-dev libzmq3-dev capnproto libcapnp-dev
  prometheus-cpp-dev libboost-dev libboost-system-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  tshark tcpdump python3 prometheus curl
  zstd xz-utils gzip                  # codec_test: the command-line tools read what dgc writes
  nfdump                              # the NetFlow view (nfpcapd, nfdump): tests/bench/netflow_view.py
  tcpreplay iproute2                  # tests/deploy/replay_test.sh: tcprewrite, tcpreplay, ip netns
  python3-yaml python3-jsonschema     # tests/deploy/check_deploy.sh
)

# The shared libraries the built binaries link (ldd of dgc-coordinator,
# dgc-worker, dgc-ingest, dgcctl: prometheus-cpp's pull, civetweb and
# boost_system are not among them; the /metrics server is Boost.Beast, header
# only), and curl for health checks. A new library dependency adds its -dev
# package above and its runtime one here.
RUNTIME_PACKAGES=(
  libpcap0.8 libzstd1 zlib1g liblzma5 libxxhash0 libssl3 libsodium23
  libabsl20220623 libspdlog1.10 libfmt9
  libtorch1.13 libopenblas0-pthread
  librocksdb7.8 libzmq5 libcapnp-0.9.2
  libprometheus-cpp-core1.0 libgloo0
  ca-certificates curl
)

print_only=0
for arg in "$@"; do
  case "$arg" in
    --runtime) PACKAGES=("${RUNTIME_PACKAGES[@]}") ;;
    --print) print_only=1 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (use --runtime, --print)" >&2; exit 1 ;;
  esac
done
if ((print_only)); then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

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

// Pseudonymizer: a keyed, prefix-preserving, invertible permutation of IP
// addresses (the CryptoPAn construction of Xu, Fan, Ammar and Moon), applied
// to every packet before anything is trained or stored, so that neither the
// model library nor a model ever sees a real address.
//
// Construction: bit i of the output is bit i of the input XOR one
// pseudo-random bit of the input's first i bits (a PRF of the prefix). Two
// addresses sharing a k-bit prefix therefore map to addresses sharing exactly
// a k-bit prefix (subnets stay subnets), and the map inverts bit by bit: the
// first i output bits give back the first i input bits, which give the flip
// of bit i.
//
// The PRF is SipHash-2-4 (Aumasson and Bernstein, 2012), implemented here.
// CryptoPAn uses AES-128; SipHash is a PRF with a 128-bit key designed for
// exactly this use (short keyed inputs), needs no crypto library (deploy/
// install-deps.sh installs none), is 40 lines checked against the published
// test vector, and unlike a keyed non-cryptographic hash (XXH3 with a
// secret) it comes with a security claim as a PRF: without the key, the
// flip bits cannot be predicted, so addresses cannot be mapped or unmapped.
//
// The key never leaves this class: the library stores only KeyFingerprint(),
// a SipHash of the derived key under a public constant, which tells whether
// two runs used the same key and reveals nothing usable about it.
//
// Not thread safe (the caches are not locked): one per thread.
#ifndef DGC_COMMON_TRACE_PSEUDONYMIZE_H_
#define DGC_COMMON_TRACE_PSEUDONYMIZE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/trace/packet.h"

namespace dgc {

// SipHash-2-4 of `data` under the 128-bit `key` (bytes k0..k15 as in the paper).
uint64_t SipHash24(const std::array<uint8_t, 16>& key, const uint8_t* data, size_t size);

class Pseudonymizer {
 public:
  // Key material: at least 16 bytes of secret (random bytes, or text such as
  // `openssl rand -hex 32` or `head -c 32 /dev/urandom | base64`); trailing
  // whitespace is ignored. It is condensed to the 128-bit SipHash key.
  // InvalidArgument when shorter.
  [[nodiscard]] static StatusOr<Pseudonymizer> FromKeyMaterial(absl::string_view material);
  // Reads key material from `path`. NotFound / InvalidArgument naming it.
  [[nodiscard]] static StatusOr<Pseudonymizer> FromKeyFile(const std::string& path);

  // The permutation and its inverse, over 32 bits (IPv4, `v6` false: bytes
  // 12..15 of IpAddress; the rest is kept) or 128 bits (IPv6).
  IpAddress Map(const IpAddress& a, bool v6);
  IpAddress Unmap(const IpAddress& a, bool v6);
  // Both addresses of a packet, by its version.
  void Apply(PacketRecord* p);
  void Invert(PacketRecord* p);

  // "siphash24-cryptopan:<16 hex digits>": identifies the key, for the library.
  const std::string& KeyFingerprint() const { return fingerprint_; }

 private:
  explicit Pseudonymizer(const std::array<uint8_t, 16>& key);
  // The flip bit for position `i` given the first `i` bits in `prefix`
  // (bits at and after i are zero).
  bool Flip(bool v6, int i, const uint8_t* prefix, int nbytes) const;
  IpAddress Permute(const IpAddress& a, bool v6, bool inverse) const;

  std::array<uint8_t, 16> key_{};
  std::string fingerprint_;
  // Addresses repeat across packets; each direction and family is cached
  // (bounded: cleared when it holds kMaxCache entries).
  absl::flat_hash_map<IpAddress, IpAddress> map_cache_[2], unmap_cache_[2];
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PSEUDONYMIZE_H_

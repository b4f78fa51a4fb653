// Pseudonymizer: a keyed, prefix-preserving, invertible permutation of IP
// addresses, applied to every packet before anything is trained or stored, so
// that neither the model library nor a model ever sees a real address.
//
// Construction (both schemes): bit i of the output is bit i of the input XOR
// one pseudo-random bit of the input's first i bits (a PRF of the prefix).
// Two addresses sharing a k-bit prefix therefore map to addresses sharing
// exactly a k-bit prefix (subnets stay subnets), and the map inverts bit by
// bit: the first i output bits give back the first i input bits, which give
// the flip of bit i.
//
// Schemes (PseudonymScheme), named by the prefix of KeyFingerprint():
//  - "cryptopan-aes128" (the default; every new chunk): standard CryptoPAn
//    (Xu, Fan, Ammar, Moon) with AES-128 from OpenSSL's libcrypto. The 32-byte
//    key's first 16 bytes are the AES key; its last 16 bytes, encrypted with
//    it, are the pad. The PRF input for bit i is the input's first i bits
//    followed by bits i..127 of the pad; the flip is the most significant bit
//    of its encryption. IPv4 runs over 32 bits, IPv6 over 128 bits. IPv4
//    output equals the reference implementation's (its published sample is in
//    the unit test) and nfdump's `nfanon -K KEY` given the same key
//    (pseudonymize_nfanon_test). IPv6 is the same construction over 128 bits,
//    as nfanon's code describes it and other CryptoPAn ports implement it; it
//    does NOT equal what nfanon 1.7.1 (Debian 12) writes for IPv6: that
//    version's anonymize_v6 stores each flip bit mirrored within its byte,
//    feeds the bit being flipped and the whole pad byte into the PRF input,
//    works on host-order 64-bit halves and derives the destination from the
//    already-anonymized source (fixed upstream in part since), so its output
//    is neither prefix-preserving nor invertible.
//  - "siphash24-cryptopan" (legacy: libraries made before the switch; read
//    back only, selected by a chunk's recorded fingerprint): the same
//    construction with SipHash-2-4 (libsodium's crypto_shorthash_siphash24)
//    of (family, prefix length, prefix) as the PRF, under a 128-bit key
//    condensed from the key material. Its outputs are bit-identical to those
//    made before the switch (frozen in the unit test).
//
// Key material (a key file's contents; trailing whitespace, e.g. the final
// newline, is ignored):
//  - cryptopan-aes128: exactly what `nfanon -K` takes: 32 characters used as
//    the 32 key bytes, or "0x" followed by 64 hex digits. Anything else is
//    rejected (InvalidArgument), with the way to make a key:
//      openssl rand -hex 32 | sed 's/^/0x/' > KEYFILE
//    No derivation is applied, so one key file serves dgc and nfanon alike.
//  - siphash24-cryptopan: at least 16 bytes of anything, condensed by
//    SipHash under public constants (the rule of the old scheme, unchanged;
//    every cryptopan-aes128 key is also a valid legacy key).
//
// The key never leaves this class: the library stores only KeyFingerprint(),
// "<scheme>:<hex>", a one-way function of the key (cryptopan-aes128:
// HMAC-SHA256 under the key of a fixed domain string, first 16 bytes; legacy:
// SipHash of the condensed key under a public constant), which tells whether
// two runs used the same key and reveals nothing usable about it.
//
// Not thread safe (the caches and the cipher context are not locked): one per
// thread. Movable, not copyable.
#ifndef DGC_COMMON_TRACE_PSEUDONYMIZE_H_
#define DGC_COMMON_TRACE_PSEUDONYMIZE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/trace/packet.h"

namespace dgc {

enum class PseudonymScheme {
  kCryptoPanAes128,     // "cryptopan-aes128": the default
  kLegacySipHash24,     // "siphash24-cryptopan": libraries made before it
};

// "cryptopan-aes128" / "siphash24-cryptopan": the fingerprint's prefix.
absl::string_view PseudonymSchemeName(PseudonymScheme scheme);
// The scheme a recorded fingerprint ("<scheme>:<hex>") names. InvalidArgument
// for an unknown prefix (a library written by a newer dgc).
[[nodiscard]] StatusOr<PseudonymScheme> PseudonymSchemeOfFingerprint(absl::string_view fingerprint);

class Pseudonymizer {
 public:
  // Key material as described above for `scheme`. InvalidArgument saying
  // what a key must be (and, for cryptopan-aes128, how to make one).
  [[nodiscard]] static StatusOr<Pseudonymizer> FromKeyMaterial(
      absl::string_view material, PseudonymScheme scheme = PseudonymScheme::kCryptoPanAes128);
  // Reads key material from `path`. NotFound / InvalidArgument naming it.
  [[nodiscard]] static StatusOr<Pseudonymizer> FromKeyFile(
      const std::string& path, PseudonymScheme scheme = PseudonymScheme::kCryptoPanAes128);

  Pseudonymizer(Pseudonymizer&&) noexcept;
  Pseudonymizer& operator=(Pseudonymizer&&) noexcept;
  ~Pseudonymizer();

  // The permutation and its inverse, over 32 bits (IPv4, `v6` false: bytes
  // 12..15 of IpAddress; the rest is kept) or 128 bits (IPv6).
  IpAddress Map(const IpAddress& a, bool v6);
  IpAddress Unmap(const IpAddress& a, bool v6);
  // Both addresses of a packet, by its version.
  void Apply(PacketRecord* p);
  void Invert(PacketRecord* p);

  PseudonymScheme scheme() const { return scheme_; }
  // "<scheme name>:<hex>" (cryptopan-aes128: 32 hex digits; legacy: 16):
  // identifies the key and the scheme, for the library.
  const std::string& KeyFingerprint() const { return fingerprint_; }

 private:
  struct Aes;  // the libcrypto cipher context (cryptopan-aes128 only)
  Pseudonymizer(PseudonymScheme scheme, std::unique_ptr<Aes> aes, const std::array<uint8_t, 16>& siphash_key,
                std::string fingerprint);
  // The flip bit for position `i` given the first `i` bits in `prefix`
  // (bits at and after i are zero; `nbytes` 4 or 16).
  bool Flip(bool v6, int i, const uint8_t* prefix, int nbytes) const;
  IpAddress Permute(const IpAddress& a, bool v6, bool inverse) const;

  PseudonymScheme scheme_;
  std::unique_ptr<Aes> aes_;
  std::array<uint8_t, 16> siphash_key_{};  // legacy scheme only
  std::string fingerprint_;
  // Addresses repeat across packets; each direction and family is cached
  // (bounded: cleared when it holds kMaxCache entries).
  absl::flat_hash_map<IpAddress, IpAddress> map_cache_[2], unmap_cache_[2];
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PSEUDONYMIZE_H_

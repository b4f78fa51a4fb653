#include "common/trace/pseudonymize.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"

namespace dgc {
namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }
inline uint64_t Load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline void Round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1; v1 = Rotl(v1, 13); v1 ^= v0; v0 = Rotl(v0, 32);
  v2 += v3; v3 = Rotl(v3, 16); v3 ^= v2;
  v0 += v3; v3 = Rotl(v3, 21); v3 ^= v0;
  v2 += v1; v1 = Rotl(v1, 17); v1 ^= v2; v2 = Rotl(v2, 32);
}

// Public constants for key condensing and the fingerprint (any fixed values
// do: they only separate the three uses of SipHash).
constexpr std::array<uint8_t, 16> kCondenseLo = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'l', 'o', 0, 0, 0, 0, 0, 1};
constexpr std::array<uint8_t, 16> kCondenseHi = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'h', 'i', 0, 0, 0, 0, 0, 2};
constexpr std::array<uint8_t, 16> kFingerprint = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'f', 'p', 0, 0, 0, 0, 0, 3};
constexpr size_t kMaxCache = 1 << 20;

}  // namespace

uint64_t SipHash24(const std::array<uint8_t, 16>& key, const uint8_t* data, size_t n) {
  uint64_t k0 = Load64(key.data()), k1 = Load64(key.data() + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  size_t full = n & ~size_t(7);
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = Load64(data + i);
    v3 ^= m;
    Round(v0, v1, v2, v3);
    Round(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = uint64_t(n) << 56;
  for (size_t i = full; i < n; ++i) b |= uint64_t(data[i]) << (8 * (i - full));
  v3 ^= b;
  Round(v0, v1, v2, v3);
  Round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) Round(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

Pseudonymizer::Pseudonymizer(const std::array<uint8_t, 16>& key) : key_(key) {
  uint64_t fp = SipHash24(kFingerprint, key_.data(), key_.size());
  fingerprint_ = absl::StrFormat("siphash24-cryptopan:%016x", fp);
}

StatusOr<Pseudonymizer> Pseudonymizer::FromKeyMaterial(absl::string_view material) {
  material = absl::StripTrailingAsciiWhitespace(material);
  if (material.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pseudonymization key has ", material.size(),
        " bytes; it needs at least 16 bytes of secret (e.g. head -c 32 /dev/urandom | base64 > KEYFILE)"));
  }
  const auto* p = reinterpret_cast<const uint8_t*>(material.data());
  uint64_t lo = SipHash24(kCondenseLo, p, material.size());
  uint64_t hi = SipHash24(kCondenseHi, p, material.size());
  std::array<uint8_t, 16> key{};
  for (int i = 0; i < 8; ++i) {
    key[i] = uint8_t(lo >> (8 * i));
    key[8 + i] = uint8_t(hi >> (8 * i));
  }
  return Pseudonymizer(key);
}

StatusOr<Pseudonymizer> Pseudonymizer::FromKeyFile(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto p = FromKeyMaterial(bytes);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", p.status().message()));
  return p;
}

bool Pseudonymizer::Flip(bool v6, int i, const uint8_t* prefix, int nbytes) const {
  // Message: family, prefix length, the prefix bytes (bits >= i are zero).
  uint8_t msg[18];
  msg[0] = v6 ? 6 : 4;
  msg[1] = uint8_t(i);
  std::memcpy(msg + 2, prefix, size_t(nbytes));
  return SipHash24(key_, msg, size_t(2 + nbytes)) & 1;
}

IpAddress Pseudonymizer::Permute(const IpAddress& a, bool v6, bool inverse) const {
  const int nbytes = v6 ? 16 : 4;
  const uint8_t* in = a.bytes.data() + (v6 ? 0 : 12);
  IpAddress out = a;
  uint8_t* o = out.bytes.data() + (v6 ? 0 : 12);
  // `prefix` holds the original address's first i bits: read from the input
  // when mapping, from what has been recovered so far when unmapping.
  uint8_t prefix[16] = {};
  for (int i = 0; i < nbytes * 8; ++i) {
    int byte = i / 8, shift = 7 - i % 8;
    uint8_t in_bit = (in[byte] >> shift) & 1;
    uint8_t flip = Flip(v6, i, prefix, nbytes) ? 1 : 0;
    uint8_t out_bit = in_bit ^ flip;
    uint8_t orig_bit = inverse ? out_bit : in_bit;
    prefix[byte] |= uint8_t(orig_bit << shift);
    o[byte] = uint8_t((o[byte] & ~(1u << shift)) | (out_bit << shift));
  }
  return out;
}

IpAddress Pseudonymizer::Map(const IpAddress& a, bool v6) {
  auto& cache = map_cache_[v6 ? 1 : 0];
  if (auto it = cache.find(a); it != cache.end()) return it->second;
  IpAddress r = Permute(a, v6, false);
  if (cache.size() >= kMaxCache) cache.clear();
  cache.emplace(a, r);
  return r;
}

IpAddress Pseudonymizer::Unmap(const IpAddress& a, bool v6) {
  auto& cache = unmap_cache_[v6 ? 1 : 0];
  if (auto it = cache.find(a); it != cache.end()) return it->second;
  IpAddress r = Permute(a, v6, true);
  if (cache.size() >= kMaxCache) cache.clear();
  cache.emplace(a, r);
  return r;
}

void Pseudonymizer::Apply(PacketRecord* p) {
  p->src = Map(p->src, p->is_v6());
  p->dst = Map(p->dst, p->is_v6());
}

void Pseudonymizer::Invert(PacketRecord* p) {
  p->src = Unmap(p->src, p->is_v6());
  p->dst = Unmap(p->dst, p->is_v6());
}

}  // namespace dgc

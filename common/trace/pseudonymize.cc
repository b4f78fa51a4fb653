#include "common/trace/pseudonymize.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"

namespace dgc {
namespace {

constexpr absl::string_view kCryptoPanName = "cryptopan-aes128";
constexpr absl::string_view kLegacyName = "siphash24-cryptopan";
constexpr absl::string_view kMakeKey = "make one with: openssl rand -hex 32 | sed 's/^/0x/' > KEYFILE";
// HMAC-SHA256 message for the cryptopan-aes128 fingerprint: the key is the
// HMAC key, so the fingerprint is a PRF output that says nothing about it.
constexpr absl::string_view kFingerprintDomain = "dgc pseudonymize key fingerprint v1 cryptopan-aes128";

// Legacy scheme: public SipHash keys for key condensing and the fingerprint
// (any fixed values do: they only separate the three uses of SipHash).
constexpr std::array<uint8_t, 16> kCondenseLo = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'l', 'o', 0, 0, 0, 0, 0, 1};
constexpr std::array<uint8_t, 16> kCondenseHi = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'h', 'i', 0, 0, 0, 0, 0, 2};
constexpr std::array<uint8_t, 16> kFingerprint = {'d', 'g', 'c', '-', 'k', 'e', 'y', '-', 'f', 'p', 0, 0, 0, 0, 0, 3};
constexpr size_t kMaxCache = 1 << 20;

// SipHash-2-4 (libsodium), as the little-endian 64-bit value the paper defines.
uint64_t SipHash24(const std::array<uint8_t, 16>& key, const uint8_t* data, size_t n) {
  static_assert(crypto_shorthash_siphash24_BYTES == 8 && crypto_shorthash_siphash24_KEYBYTES == 16);
  unsigned char out[8];
  crypto_shorthash_siphash24(out, data, n, key.data());
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | out[i];
  return v;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The 32 key bytes from material as `nfanon -K` takes it.
StatusOr<std::array<uint8_t, 32>> ParseCryptoPanKey(absl::string_view m) {
  std::array<uint8_t, 32> key{};
  if (m.size() == 32) {
    std::memcpy(key.data(), m.data(), 32);
    return key;
  }
  if (m.size() == 66 && m[0] == '0' && (m[1] == 'x' || m[1] == 'X')) {
    for (int i = 0; i < 32; ++i) {
      int hi = HexValue(m[2 + 2 * i]), lo = HexValue(m[3 + 2 * i]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pseudonymization key: '", m.substr(2 + 2 * i, 2), "' at offset ", 2 + 2 * i,
            " is not two hex digits; a key is 32 characters or 0x followed by 64 hex digits (as nfanon -K "
            "takes it); ",
            kMakeKey));
      }
      key[i] = uint8_t(hi << 4 | lo);
    }
    return key;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "pseudonymization key has ", m.size(),
      " bytes (trailing whitespace ignored); a CryptoPAn key is exactly 32 characters or 0x followed by 64 hex "
      "digits (as nfanon -K takes it), nothing else is accepted; ",
      kMakeKey));
}

}  // namespace

struct Pseudonymizer::Aes {
  struct Free {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
  };
  std::unique_ptr<EVP_CIPHER_CTX, Free> ctx;
  std::array<uint8_t, 16> pad{};  // AES_K(key[16..31])

  // One AES-128 block. libcrypto cannot fail on a keyed ECB context short of
  // memory exhaustion; the result is then all zero, and Create's self-check
  // has already proved the context works.
  void Encrypt(const uint8_t in[16], uint8_t out[16]) const {
    int n = 0;
    if (EVP_EncryptUpdate(ctx.get(), out, &n, in, 16) != 1 || n != 16) std::memset(out, 0, 16);
  }

  static StatusOr<std::unique_ptr<Aes>> Create(const std::array<uint8_t, 32>& key) {
    auto aes = std::make_unique<Aes>();
    aes->ctx.reset(EVP_CIPHER_CTX_new());
    if (!aes->ctx || EVP_EncryptInit_ex(aes->ctx.get(), EVP_aes_128_ecb(), nullptr, key.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(aes->ctx.get(), 0) != 1) {
      return absl::InternalError("pseudonymization: libcrypto could not set up AES-128");
    }
    int n = 0;
    if (EVP_EncryptUpdate(aes->ctx.get(), aes->pad.data(), &n, key.data() + 16, 16) != 1 || n != 16) {
      return absl::InternalError("pseudonymization: libcrypto AES-128 failed");
    }
    return aes;
  }
};

absl::string_view PseudonymSchemeName(PseudonymScheme scheme) {
  return scheme == PseudonymScheme::kCryptoPanAes128 ? kCryptoPanName : kLegacyName;
}

StatusOr<PseudonymScheme> PseudonymSchemeOfFingerprint(absl::string_view fp) {
  for (PseudonymScheme s : {PseudonymScheme::kCryptoPanAes128, PseudonymScheme::kLegacySipHash24}) {
    absl::string_view name = PseudonymSchemeName(s);
    if (fp.size() > name.size() && fp.substr(0, name.size()) == name && fp[name.size()] == ':') return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown pseudonymization scheme in key fingerprint '", fp,
                                                 "' (known: ", kCryptoPanName, ", ", kLegacyName, ")"));
}

Pseudonymizer::Pseudonymizer(PseudonymScheme scheme, std::unique_ptr<Aes> aes,
                             const std::array<uint8_t, 16>& siphash_key, std::string fingerprint)
    : scheme_(scheme), aes_(std::move(aes)), siphash_key_(siphash_key), fingerprint_(std::move(fingerprint)) {}
Pseudonymizer::Pseudonymizer(Pseudonymizer&&) noexcept = default;
Pseudonymizer& Pseudonymizer::operator=(Pseudonymizer&&) noexcept = default;
Pseudonymizer::~Pseudonymizer() = default;

StatusOr<Pseudonymizer> Pseudonymizer::FromKeyMaterial(absl::string_view material, PseudonymScheme scheme) {
  material = absl::StripTrailingAsciiWhitespace(material);
  if (scheme == PseudonymScheme::kCryptoPanAes128) {
    DGC_ASSIGN_OR_RETURN(auto key, ParseCryptoPanKey(material));
    DGC_ASSIGN_OR_RETURN(auto aes, Aes::Create(key));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(kFingerprintDomain.data()),
             kFingerprintDomain.size(), md, &md_len) == nullptr ||
        md_len < 16) {
      return absl::InternalError("pseudonymization: libcrypto HMAC-SHA256 failed");
    }
    std::string fp = absl::StrCat(kCryptoPanName, ":",
                                  absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), 16)));
    return Pseudonymizer(scheme, std::move(aes), {}, std::move(fp));
  }
  if (material.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pseudonymization key has ", material.size(), " bytes; the ", kLegacyName,
        " scheme needs at least 16 bytes of secret"));
  }
  if (sodium_init() < 0) return absl::InternalError("pseudonymization: libsodium failed to initialize");
  const auto* p = reinterpret_cast<const uint8_t*>(material.data());
  uint64_t lo = SipHash24(kCondenseLo, p, material.size());
  uint64_t hi = SipHash24(kCondenseHi, p, material.size());
  std::array<uint8_t, 16> key{};
  for (int i = 0; i < 8; ++i) {
    key[i] = uint8_t(lo >> (8 * i));
    key[8 + i] = uint8_t(hi >> (8 * i));
  }
  std::string fp = absl::StrFormat("%s:%016x", kLegacyName, SipHash24(kFingerprint, key.data(), key.size()));
  return Pseudonymizer(scheme, nullptr, key, std::move(fp));
}

StatusOr<Pseudonymizer> Pseudonymizer::FromKeyFile(const std::string& path, PseudonymScheme scheme) {
  DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto p = FromKeyMaterial(bytes, scheme);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", p.status().message()));
  return p;
}

bool Pseudonymizer::Flip(bool v6, int i, const uint8_t* prefix, int nbytes) const {
  if (aes_) {
    // The first i bits of the address, then bits i..127 of the pad.
    uint8_t in[16], out[16];
    std::memcpy(in, aes_->pad.data(), 16);
    const int byte = i / 8, bits = i % 8;
    std::memcpy(in, prefix, size_t(byte));
    if (bits) {
      const uint8_t high = uint8_t(0xff << (8 - bits));
      in[byte] = uint8_t((prefix[byte] & high) | (aes_->pad[byte] & ~high));
    }
    aes_->Encrypt(in, out);
    return out[0] >> 7;
  }
  // Legacy message: family, prefix length, the prefix bytes (bits >= i are zero).
  uint8_t msg[18];
  msg[0] = v6 ? 6 : 4;
  msg[1] = uint8_t(i);
  std::memcpy(msg + 2, prefix, size_t(nbytes));
  return SipHash24(siphash_key_, msg, size_t(2 + nbytes)) & 1;
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

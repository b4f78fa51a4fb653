#include "common/trace/pseudonymize.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <random>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace dgc {
namespace {

// The key of the Crypto-PAn reference distribution's sample (sample.cpp):
// bytes 21, 34, 23, 141, ... as nfanon -K takes them.
constexpr char kReferenceKey[] = "0x1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202";

int CommonPrefixBits(const IpAddress& a, const IpAddress& b, bool v6) {
  int first = v6 ? 0 : 12;
  for (int i = first; i < 16; ++i) {
    uint8_t x = a.bytes[i] ^ b.bytes[i];
    if (x) return (i - first) * 8 + __builtin_clz(uint32_t(x)) - 24;
  }
  return (16 - first) * 8;
}

IpAddress RandomAddress(std::mt19937_64& rng, bool v6) {
  if (!v6) return IpAddress::FromV4(uint32_t(rng()));
  uint8_t b[16];
  for (auto& x : b) x = uint8_t(rng());
  return IpAddress::FromV6(b);
}

IpAddress V4(const char* s) {
  uint8_t b[4];
  EXPECT_EQ(inet_pton(AF_INET, s, b), 1) << s;
  return IpAddress::FromV4(b);
}
IpAddress V6(const char* s) {
  uint8_t b[16];
  EXPECT_EQ(inet_pton(AF_INET6, s, b), 1) << s;
  return IpAddress::FromV6(b);
}
IpAddress V4Hex(uint32_t a) { return IpAddress::FromV4(a); }
IpAddress V6Hex(const std::string& hex) {
  uint8_t b[16];
  for (int i = 0; i < 16; ++i) b[i] = uint8_t(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return IpAddress::FromV6(b);
}

Pseudonymizer Make(const std::string& key, PseudonymScheme scheme = PseudonymScheme::kCryptoPanAes128) {
  auto p = Pseudonymizer::FromKeyMaterial(key, scheme);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

constexpr PseudonymScheme kSchemes[] = {PseudonymScheme::kCryptoPanAes128, PseudonymScheme::kLegacySipHash24};

// The sanitized addresses of sample_trace_raw.dat in sample_trace_sanitized.dat
// (Crypto-PAn 1.0 reference distribution, every distinct address of the trace)
// under kReferenceKey.
const std::vector<std::pair<const char*, const char*>> kReferenceSample = {
    {"128.11.68.132", "135.242.180.132"}, {"129.118.74.4", "134.136.186.123"},
    {"130.132.252.244", "133.68.164.234"}, {"141.223.7.43", "141.167.8.160"},
    {"141.233.145.108", "141.129.237.235"}, {"152.163.225.39", "151.140.114.167"},
    {"156.29.3.236", "147.225.12.42"}, {"165.247.96.84", "162.9.99.234"},
    {"166.107.77.190", "160.132.178.185"}, {"192.102.249.13", "252.138.62.131"},
    {"192.215.32.125", "252.43.47.189"}, {"192.233.80.103", "252.25.108.8"},
    {"192.41.57.43", "252.222.221.184"}, {"193.150.244.223", "253.169.52.216"},
    {"195.205.63.100", "255.186.223.5"}, {"198.200.171.101", "249.199.68.213"},
    {"198.26.132.101", "249.36.123.202"}, {"198.36.213.5", "249.7.21.132"},
    {"198.51.77.238", "249.18.186.254"}, {"199.217.79.101", "248.38.184.213"},
    {"202.49.198.20", "245.206.7.234"}, {"203.12.160.252", "244.248.163.4"},
    {"204.184.162.189", "243.192.77.90"}, {"204.202.136.230", "243.178.4.198"},
    {"204.29.20.4", "243.33.20.123"}, {"205.178.38.67", "242.108.198.51"},
    {"205.188.147.153", "242.96.16.101"}, {"205.188.248.25", "242.96.88.27"},
    {"205.245.121.43", "242.21.121.163"}, {"207.105.49.5", "241.118.205.138"},
    {"207.135.65.238", "241.202.129.222"}, {"207.155.9.214", "241.220.250.22"},
    {"207.188.7.45", "241.255.249.220"}, {"207.25.71.27", "241.33.119.156"},
    {"207.33.151.131", "241.1.233.131"}, {"208.147.89.59", "227.237.98.191"},
    {"208.234.120.210", "227.154.67.17"}, {"208.28.185.184", "227.39.94.90"},
    {"208.52.56.122", "227.8.63.165"}, {"209.12.231.7", "226.243.167.8"},
    {"209.238.72.3", "226.6.119.243"}, {"209.246.74.109", "226.22.124.76"},
    {"209.68.60.238", "226.184.220.233"}, {"209.85.249.6", "226.170.70.6"},
    {"212.120.124.31", "228.135.163.231"}, {"212.146.8.236", "228.19.4.234"},
    {"212.186.227.154", "228.59.98.98"}, {"212.204.172.118", "228.71.195.169"},
    {"212.206.130.201", "228.69.242.193"}, {"216.148.237.145", "235.84.194.111"},
    {"216.157.30.252", "235.89.31.26"}, {"216.184.159.48", "235.96.225.78"},
    {"216.227.10.221", "235.28.253.36"}, {"216.254.18.172", "235.7.16.162"},
    {"216.32.132.250", "235.192.139.38"}, {"216.35.217.178", "235.195.157.81"},
    {"24.0.250.221", "100.15.198.226"}, {"24.13.62.231", "100.2.192.247"},
    {"24.14.213.138", "100.1.42.141"}, {"24.5.0.80", "100.9.15.210"},
    {"24.7.198.88", "100.10.6.25"}, {"24.94.26.44", "100.88.228.35"},
    {"38.15.67.68", "64.3.66.187"}, {"4.3.88.225", "124.60.155.63"},
    {"63.14.55.111", "95.9.215.7"}, {"63.195.241.44", "95.179.238.44"},
    {"63.97.7.140", "95.97.9.123"}, {"64.14.118.196", "0.255.183.58"},
    {"64.34.154.117", "0.221.154.117"}, {"64.39.15.238", "0.219.7.41"},
    {"10.185.25.118", "117.161.29.118"},
};

TEST(CryptoPanTest, MatchesTheReferenceImplementationsSample) {
  Pseudonymizer p = Make(kReferenceKey);
  Pseudonymizer q = Make(kReferenceKey);  // fresh caches for the inverse
  int agree = 0;
  for (const auto& [raw, sanitized] : kReferenceSample) {
    IpAddress m = p.Map(V4(raw), false);
    EXPECT_EQ(m.ToString(false), sanitized) << raw;
    agree += m.ToString(false) == sanitized;
    EXPECT_EQ(q.Unmap(V4(sanitized), false).ToString(false), raw) << sanitized;
  }
  EXPECT_EQ(agree, 71);
  std::printf("reference sample: %d/%zu addresses agree\n", agree, kReferenceSample.size());
}

TEST(CryptoPanTest, MatchesPublishedVectorsOfOtherPorts) {
  // The text key of the pycryptopan/CryptoPan.jl tests: 32 characters are the key bytes.
  Pseudonymizer text = Make("boojahyoo3vaeToong0Eijee7Ahz3yee");
  EXPECT_EQ(text.Map(V4("192.0.2.1"), false).ToString(false), "206.2.124.120");
  // IPv6 over 128 bits with the reference key (Yawning Angel's Go cryptopan).
  Pseudonymizer p = Make(kReferenceKey);
  const std::pair<const char*, const char*> v6[] = {
      {"::1", "78ff:f001:9fc0:20df:8380:b1f1:704:ed"},
      {"::2", "78ff:f001:9fc0:20df:8380:b1f1:704:ef"},
      {"::ffff", "78ff:f001:9fc0:20df:8380:b1f1:704:f838"},
      {"2001:db8::1", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e"},
      {"2001:db8::2", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c"},
  };
  for (const auto& [raw, anon] : v6) {
    EXPECT_EQ(p.Map(V6(raw), true), V6(anon)) << raw << " -> " << p.Map(V6(raw), true).ToString(true);
    EXPECT_EQ(p.Unmap(V6(anon), true), V6(raw)) << anon;
  }
}

TEST(CryptoPanTest, TakesKeysAsNfanonDoes) {
  // 32 characters are the key bytes; 0x + 64 hex digits (either case) the same bytes.
  const std::string text = "boojahyoo3vaeToong0Eijee7Ahz3yee";
  std::string hex = "0x";
  for (unsigned char c : text) hex += absl::StrFormat("%02x", c);
  std::string upper = "0X" + absl::AsciiStrToUpper(hex.substr(2));
  Pseudonymizer a = Make(text), b = Make(hex + "\n"), c = Make(upper + "  \n");
  EXPECT_EQ(a.KeyFingerprint(), b.KeyFingerprint());
  EXPECT_EQ(a.KeyFingerprint(), c.KeyFingerprint());
  EXPECT_EQ(b.Map(V4("192.0.2.1"), false).ToString(false), "206.2.124.120");
  EXPECT_EQ(c.Map(V4("192.0.2.1"), false).ToString(false), "206.2.124.120");
  EXPECT_EQ(a.scheme(), PseudonymScheme::kCryptoPanAes128);

  // Anything else is refused, saying how to make a key.
  for (const std::string& bad : {std::string("short\n"), std::string(33, 'k'), std::string(31, 'k'),
                                 std::string("this-is-a-longer-passphrase-than-32-characters"),
                                 "0x" + std::string(63, 'a'), "0x" + std::string(62, 'a') + "zz",
                                 "0y" + std::string(64, 'a'), std::string()}) {
    auto p = Pseudonymizer::FromKeyMaterial(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("openssl rand -hex 32"), std::string::npos) << p.status();
  }
  auto missing = Pseudonymizer::FromKeyFile("/nonexistent/key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/key"), std::string::npos) << missing.status();
}

TEST(CryptoPanTest, FingerprintNamesTheSchemeAndHidesTheKey) {
  Pseudonymizer a = Make("key number one, 32 bytes long...");
  Pseudonymizer b = Make("key number two, 32 bytes long...");
  const std::string& fp = a.KeyFingerprint();
  EXPECT_EQ(fp.rfind("cryptopan-aes128:", 0), 0u) << fp;
  EXPECT_EQ(fp.size(), std::string("cryptopan-aes128:").size() + 32) << fp;
  EXPECT_NE(fp, b.KeyFingerprint());
  EXPECT_EQ(fp.find("key number"), std::string::npos);
  EXPECT_EQ(fp.find(absl::BytesToHexString("key number one")), std::string::npos);
  // The same material under the legacy scheme: another scheme, another fingerprint.
  Pseudonymizer legacy = Make("key number one, 32 bytes long...", PseudonymScheme::kLegacySipHash24);
  EXPECT_EQ(legacy.KeyFingerprint().rfind("siphash24-cryptopan:", 0), 0u);

  for (const Pseudonymizer* p : {&a, &legacy}) {
    auto s = PseudonymSchemeOfFingerprint(p->KeyFingerprint());
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(*s, p->scheme());
    EXPECT_EQ(p->KeyFingerprint().rfind(std::string(PseudonymSchemeName(*s)) + ":", 0), 0u);
  }
  EXPECT_FALSE(PseudonymSchemeOfFingerprint("blowfish-pan:0123").ok());
  EXPECT_FALSE(PseudonymSchemeOfFingerprint("cryptopan-aes128").ok());
  EXPECT_FALSE(PseudonymSchemeOfFingerprint("").ok());
}

TEST(LegacySchemeTest, LibsodiumSipHashMatchesThePaperTestVector) {
  // SipHash-2-4, key 00..0f, message 00..0e (Aumasson & Bernstein, appendix A),
  // and the empty message (reference vectors.h): the PRF of the legacy scheme.
  ASSERT_GE(sodium_init(), 0);
  unsigned char key[16], msg[15], out[8];
  for (int i = 0; i < 16; ++i) key[i] = uint8_t(i);
  for (int i = 0; i < 15; ++i) msg[i] = uint8_t(i);
  auto le = [&] {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | out[i];
    return v;
  };
  crypto_shorthash_siphash24(out, msg, 15, key);
  EXPECT_EQ(le(), 0xa129ca6149be45e5ULL);
  crypto_shorthash_siphash24(out, msg, 0, key);
  EXPECT_EQ(le(), 0x726fdb47dd0e0e31ULL);
}

TEST(LegacySchemeTest, OutputsAreBitIdenticalToThePreviousImplementation) {
  // Computed with the project's own SipHash-2-4 before libsodium replaced it
  // (commit 5dfbe8f): libraries made then must map back the same.
  struct Frozen {
    const char* key;
    const char* fingerprint;
    std::vector<std::pair<uint32_t, uint32_t>> v4;
    std::vector<std::pair<const char*, const char*>> v6;
  };
  const Frozen frozen[] = {
      {"this-is-the-test-secret-0123456789",
       "siphash24-cryptopan:7fa1417e0f12b3aa",
       {{0xc0a80001, 0x99582af2}, {0x08080808, 0x173e2627}, {0x0a000001, 0x14cfc6ce}, {0x7f000001, 0x742962cb},
        {0x00000000, 0x1bc79b02}, {0xffffffff, 0xa79344b5}, {0x800b4484, 0xf198dcad}, {0xac100a0b, 0xdf3ad4b6}},
       {{"20010db8000000000000000000000001", "d9ccebda9a7a7688c22f7fa4029f7bcb"},
        {"fe80000000000000021122fffe334455", "438533f651df2130712e7fc189ee1852"},
        {"00000000000000000000000000000000", "fbf34604484ad482fab6a9628ba41869"}}},
      {"0123456789abcdef-test-key",
       "siphash24-cryptopan:e82d0d1bb1e6a0c1",
       {{0xc0a80001, 0x2cb21a25}, {0x08080808, 0xad09a331}, {0x0a000001, 0xaf807afe}, {0x7f000001, 0xd06aaabf},
        {0x00000000, 0xa2c580a2}, {0xffffffff, 0x0f0613ca}, {0x800b4484, 0x4b026205}, {0xac100a0b, 0x72dc0aab}},
       {{"20010db8000000000000000000000001", "d16e1f31051eafc8121535f4ad24007e"},
        {"fe80000000000000021122fffe334455", "005c9e583b7a536a157d0d46c02330ab"},
        {"00000000000000000000000000000000", "e892abe3ee06691df06b793c5adacb82"}}},
  };
  for (const Frozen& f : frozen) {
    Pseudonymizer p = Make(f.key, PseudonymScheme::kLegacySipHash24);
    Pseudonymizer q = Make(std::string(f.key) + "\n", PseudonymScheme::kLegacySipHash24);
    EXPECT_EQ(p.KeyFingerprint(), f.fingerprint);
    EXPECT_EQ(q.KeyFingerprint(), f.fingerprint);
    for (const auto& [in, out] : f.v4) {
      EXPECT_EQ(p.Map(V4Hex(in), false), V4Hex(out)) << f.key << " " << std::hex << in;
      EXPECT_EQ(q.Unmap(V4Hex(out), false), V4Hex(in)) << f.key << " " << std::hex << out;
    }
    for (const auto& [in, out] : f.v6) {
      EXPECT_EQ(p.Map(V6Hex(in), true), V6Hex(out)) << f.key << " " << in;
      EXPECT_EQ(q.Unmap(V6Hex(out), true), V6Hex(in)) << f.key << " " << out;
    }
  }
  // The old key rule still applies to it: at least 16 bytes, anything else refused.
  auto p = Pseudonymizer::FromKeyMaterial("short\n", PseudonymScheme::kLegacySipHash24);
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("16 bytes"), std::string::npos);
}

TEST(PseudonymizeTest, PreservesPrefixesExactly) {
  for (PseudonymScheme scheme : kSchemes) {
    for (bool v6 : {false, true}) {
      Pseudonymizer p = Make("0123456789abcdef-test-key-32-byt", scheme);
      std::mt19937_64 rng(7);
      for (int n = 0; n < 2000; ++n) {
        IpAddress a = RandomAddress(rng, v6), b = RandomAddress(rng, v6);
        // Force a shared prefix of random length.
        int k = int(rng() % (v6 ? 129 : 33));
        int first = v6 ? 0 : 12;
        for (int i = 0; i < k; ++i) {
          int byte = first + i / 8, shift = 7 - i % 8;
          b.bytes[byte] = uint8_t((b.bytes[byte] & ~(1u << shift)) | (a.bytes[byte] & (1u << shift)));
        }
        int before = CommonPrefixBits(a, b, v6);
        ASSERT_EQ(CommonPrefixBits(p.Map(a, v6), p.Map(b, v6), v6), before)
            << PseudonymSchemeName(scheme) << " v6=" << v6;
      }
    }
  }
}

TEST(PseudonymizeTest, InvertsEveryAddress) {
  for (PseudonymScheme scheme : kSchemes) {
    for (bool v6 : {false, true}) {
      Pseudonymizer p = Make("another key of exactly 32 bytes.", scheme);
      Pseudonymizer q = Make("another key of exactly 32 bytes.", scheme);  // fresh caches: no shortcut
      std::mt19937_64 rng(11);
      int changed = 0;
      for (int n = 0; n < 3000; ++n) {
        IpAddress a = RandomAddress(rng, v6);
        IpAddress m = p.Map(a, v6);
        changed += m != a;
        ASSERT_EQ(q.Unmap(m, v6), a) << PseudonymSchemeName(scheme);
        if (!v6) {
          ASSERT_TRUE(m.is_v4_mapped());  // IPv4 stays IPv4
        }
      }
      EXPECT_GT(changed, 2900);
    }
    PacketRecord pkt;
    pkt.src = IpAddress::FromV4(0xc0a80001);
    pkt.dst = IpAddress::FromV4(0x08080808);
    PacketRecord orig = pkt;
    Pseudonymizer p = Make("yet another key, 32 bytes long..", scheme);
    p.Apply(&pkt);
    EXPECT_NE(pkt.src, orig.src);
    p.Invert(&pkt);
    EXPECT_EQ(pkt.src, orig.src);
    EXPECT_EQ(pkt.dst, orig.dst);
  }
}

TEST(PseudonymizeTest, DifferentKeysGiveDifferentMapsAndFingerprints) {
  for (PseudonymScheme scheme : kSchemes) {
    Pseudonymizer a = Make("key number one, 32 bytes long...", scheme);
    Pseudonymizer b = Make("key number two, 32 bytes long...", scheme);
    Pseudonymizer a2 = Make("key number one, 32 bytes long...\n", scheme);  // trailing newline ignored
    EXPECT_NE(a.KeyFingerprint(), b.KeyFingerprint());
    EXPECT_EQ(a.KeyFingerprint(), a2.KeyFingerprint());
    std::mt19937_64 rng(3);
    int same = 0;
    for (int n = 0; n < 1000; ++n) {
      IpAddress x = RandomAddress(rng, false);
      same += a.Map(x, false) == b.Map(x, false);
      EXPECT_EQ(a.Map(x, false), a2.Map(x, false));
    }
    EXPECT_LT(same, 5) << PseudonymSchemeName(scheme);
  }
  // The two schemes are different permutations of the same key.
  Pseudonymizer aes = Make("key number one, 32 bytes long...");
  Pseudonymizer sip = Make("key number one, 32 bytes long...", PseudonymScheme::kLegacySipHash24);
  EXPECT_NE(aes.Map(V4("192.0.2.1"), false), sip.Map(V4("192.0.2.1"), false));
}

TEST(PseudonymizeTest, MovedPseudonymizerKeepsWorking) {
  Pseudonymizer p = Make(kReferenceKey);
  Pseudonymizer moved = std::move(p);
  EXPECT_EQ(moved.Map(V4("128.11.68.132"), false).ToString(false), "135.242.180.132");
  Pseudonymizer other = Make("boojahyoo3vaeToong0Eijee7Ahz3yee");
  other = std::move(moved);
  EXPECT_EQ(other.Map(V4("129.118.74.4"), false).ToString(false), "134.136.186.123");
}

}  // namespace
}  // namespace dgc

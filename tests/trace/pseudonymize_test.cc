#include "common/trace/pseudonymize.h"

#include <random>

#include "gtest/gtest.h"

namespace dgc {
namespace {

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

Pseudonymizer Make(const std::string& key) {
  auto p = Pseudonymizer::FromKeyMaterial(key);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

TEST(SipHashTest, MatchesThePaperTestVector) {
  // SipHash-2-4, key 00..0f, message 00..0e (Aumasson & Bernstein, appendix A).
  std::array<uint8_t, 16> key;
  for (int i = 0; i < 16; ++i) key[i] = uint8_t(i);
  uint8_t msg[15];
  for (int i = 0; i < 15; ++i) msg[i] = uint8_t(i);
  EXPECT_EQ(SipHash24(key, msg, 15), 0xa129ca6149be45e5ULL);
  EXPECT_EQ(SipHash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);  // empty message (reference vectors.h)
}

TEST(PseudonymizeTest, PreservesPrefixesExactly) {
  for (bool v6 : {false, true}) {
    Pseudonymizer p = Make("0123456789abcdef-test-key");
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
      EXPECT_EQ(CommonPrefixBits(p.Map(a, v6), p.Map(b, v6), v6), before) << "v6=" << v6;
    }
  }
}

TEST(PseudonymizeTest, InvertsEveryAddress) {
  for (bool v6 : {false, true}) {
    Pseudonymizer p = Make("another key of enough length");
    Pseudonymizer q = Make("another key of enough length");  // fresh caches: no shortcut
    std::mt19937_64 rng(11);
    int changed = 0;
    for (int n = 0; n < 3000; ++n) {
      IpAddress a = RandomAddress(rng, v6);
      IpAddress m = p.Map(a, v6);
      changed += m != a;
      EXPECT_EQ(q.Unmap(m, v6), a);
      if (!v6) EXPECT_TRUE(m.is_v4_mapped());  // IPv4 stays IPv4
    }
    EXPECT_GT(changed, 2900);
  }
  PacketRecord pkt;
  pkt.src = IpAddress::FromV4(0xc0a80001);
  pkt.dst = IpAddress::FromV4(0x08080808);
  PacketRecord orig = pkt;
  Pseudonymizer p = Make("yet another key, 32 bytes long..");
  p.Apply(&pkt);
  EXPECT_NE(pkt.src, orig.src);
  p.Invert(&pkt);
  EXPECT_EQ(pkt.src, orig.src);
  EXPECT_EQ(pkt.dst, orig.dst);
}

TEST(PseudonymizeTest, DifferentKeysGiveDifferentMapsAndFingerprints) {
  Pseudonymizer a = Make("key number one, long enough");
  Pseudonymizer b = Make("key number two, long enough");
  Pseudonymizer a2 = Make("key number one, long enough\n");  // trailing newline ignored
  EXPECT_NE(a.KeyFingerprint(), b.KeyFingerprint());
  EXPECT_EQ(a.KeyFingerprint(), a2.KeyFingerprint());
  EXPECT_EQ(a.KeyFingerprint().find("key number"), std::string::npos);
  std::mt19937_64 rng(3);
  int same = 0;
  for (int n = 0; n < 1000; ++n) {
    IpAddress x = RandomAddress(rng, false);
    same += a.Map(x, false) == b.Map(x, false);
    EXPECT_EQ(a.Map(x, false), a2.Map(x, false));
  }
  EXPECT_LT(same, 5);
}

TEST(PseudonymizeTest, RefusesShortKeys) {
  auto p = Pseudonymizer::FromKeyMaterial("short\n");
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("16 bytes"), std::string::npos);
  EXPECT_FALSE(Pseudonymizer::FromKeyFile("/nonexistent/key").ok());
}

}  // namespace
}  // namespace dgc

// Pseudonymizer against nfdump's nfanon given the same key file: a pcap of
// UDP packets goes through nfpcapd (flow records), nfanon -K KEY and
// nfdump -o csv; every anonymized IPv4 address must equal Pseudonymizer::Map.
// IPv6 is counted and printed, not compared: nfanon 1.7.1's IPv6 is not
// CryptoPAn (see common/trace/pseudonymize.h). Skipped without nfdump's tools
// (Debian package nfdump; deploy/install-deps.sh installs it).
#include <arpa/inet.h>

#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/str_split.h"
#include "common/trace/pseudonymize.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

namespace fs = std::filesystem;

IpAddress Parse(const std::string& s, bool* v6) {
  IpAddress a;
  uint8_t b[16];
  if (inet_pton(AF_INET, s.c_str(), b) == 1) {
    *v6 = false;
    return IpAddress::FromV4(b);
  }
  EXPECT_EQ(inet_pton(AF_INET6, s.c_str(), b), 1) << "not an address: '" << s << "'";
  *v6 = true;
  return IpAddress::FromV6(b);
}

// A single-quoted shell word.
std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Flow {
  IpAddress src, dst;
  bool v6;
};

// One UDP packet per flow, each with its own source port (the key that pairs
// nfdump's records with the packets).
std::vector<PacketRecord> MakePackets(std::map<uint16_t, Flow>* flows) {
  std::mt19937_64 rng(17);
  std::vector<uint32_t> v4 = {0x800b4484, 0x81764a04, 0x8284fcf4, 0x8ddf072b, 0xc0000201, 0x0a000001, 0x0a000002,
                              0x0a0000ff, 0xc0a80101, 0xc0a801fe, 0xac100a0b, 0x08080808, 0x01020304, 0x7f000001,
                              0x00000001, 0xfffffffe, 0x80000000, 0x7fffffff};
  while (v4.size() < 48) v4.push_back(uint32_t(rng()));
  std::vector<PacketRecord> packets;
  const int64_t t0 = 1'700'000'000'000'000'000;
  uint16_t port = 20000;
  for (size_t i = 0; i < v4.size(); ++i) {
    PacketRecord p = testing::MakePacket(t0 + int64_t(i) * 1'000'000, v4[i], v4[(i * 7 + 3) % v4.size()], 17,
                                         port, 53, 20 + 8 + 4);
    (*flows)[port++] = {p.src, p.dst, false};
    packets.push_back(p);
  }
  for (int i = 0; i < 12; ++i) {
    uint8_t s[16] = {0x20, 0x01, 0x0d, 0xb8}, d[16] = {0xfe, 0x80};
    for (int k = 4; k < 16; ++k) s[k] = uint8_t(rng());
    for (int k = 8; k < 16; ++k) d[k] = uint8_t(rng());
    PacketRecord p = testing::MakePacket(t0 + int64_t(100 + i) * 1'000'000, 0, 0, 17, port, 53, 40 + 8 + 4);
    p.version = 6;
    p.src = IpAddress::FromV6(s);
    p.dst = IpAddress::FromV6(d);
    (*flows)[port++] = {p.src, p.dst, true};
    packets.push_back(p);
  }
  return packets;
}

class NfanonTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NfanonTest, Ipv4AddressesEqualNfanonsUnderTheSameKey) {
  for (const char* tool : {"nfpcapd", "nfanon", "nfdump"}) {
    if (!testing::HaveTool(tool)) GTEST_SKIP() << tool << " not installed (Debian package nfdump)";
  }
  testing::TempDir dir;
  const std::string key = GetParam();
  testing::WriteBytes(dir.File("key"), key + "\n");
  auto pseudo = Pseudonymizer::FromKeyFile(dir.File("key"));
  ASSERT_TRUE(pseudo.ok()) << pseudo.status();

  std::map<uint16_t, Flow> flows;
  testing::WritePcap(dir.File("in.pcap"), MakePackets(&flows));
  fs::create_directories(dir.File("flows"));
  std::string out;
  ASSERT_EQ(testing::Run("nfpcapd -r " + dir.File("in.pcap") + " -w " + dir.File("flows") + " 2>&1", &out), 0)
      << out;
  std::string nfcapd;
  for (const auto& e : fs::recursive_directory_iterator(dir.File("flows"))) {
    if (e.is_regular_file() && e.path().filename().string().rfind("nfcapd.2", 0) == 0) nfcapd = e.path();
  }
  ASSERT_FALSE(nfcapd.empty()) << "nfpcapd wrote no flow file: " << out;
  // The key file's contents, as nfanon -K takes them.
  ASSERT_EQ(testing::Run("nfanon -q -K " + Quote(key) + " -r " + nfcapd + " -w " + dir.File("anon") + " 2>&1", &out),
            0)
      << out;
  ASSERT_EQ(testing::Run("nfdump -q -o csv -r " + dir.File("anon") + " 2>&1", &out), 0) << out;

  int v4_agree = 0, v4_total = 0, v6_agree = 0, v6_total = 0;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    // ts,te,td,sa,da,sp,dp,pr,...
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() < 7) continue;
    const auto it = flows.find(uint16_t(std::stoi(f[5])));
    ASSERT_NE(it, flows.end()) << line;
    const Flow& flow = it->second;
    bool sv6 = false, dv6 = false;
    IpAddress sa = Parse(f[3], &sv6), da = Parse(f[4], &dv6);
    ASSERT_EQ(sv6, flow.v6) << line;
    int agree = (sa == pseudo->Map(flow.src, flow.v6)) + (da == pseudo->Map(flow.dst, flow.v6));
    if (flow.v6) {
      v6_agree += agree;
      v6_total += 2;
    } else {
      EXPECT_EQ(sa, pseudo->Map(flow.src, false)) << flow.src.ToString(false) << ": " << line;
      EXPECT_EQ(da, pseudo->Map(flow.dst, false)) << flow.dst.ToString(false) << ": " << line;
      v4_agree += agree;
      v4_total += 2;
    }
    flows.erase(it);
  }
  EXPECT_TRUE(flows.empty()) << flows.size() << " flows missing from nfdump's output:\n" << out;
  EXPECT_EQ(v4_total, 96);
  EXPECT_EQ(v4_agree, v4_total);
  std::printf("nfanon agreement: IPv4 %d/%d addresses; IPv6 %d/%d (not compared: nfanon's IPv6 is not CryptoPAn)\n",
              v4_agree, v4_total, v6_agree, v6_total);
}

INSTANTIATE_TEST_SUITE_P(Keys, NfanonTest,
                         ::testing::Values(
                             // The Crypto-PAn reference sample's key, as 0x + 64 hex digits.
                             "0x1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202",
                             // A 32-character text key.
                             "boojahyoo3vaeToong0Eijee7Ahz3yee"));

}  // namespace
}  // namespace dgc

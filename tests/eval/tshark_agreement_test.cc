// dgcctl eval against an independent implementation: tests/eval/tshark_scorer.py
// reads the same captures through tshark (not dgc's parser) and computes the 17
// metrics its own way in Python. METRICS.md holds the two to 0.01 per metric.
#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

// testutil's BinaryPath("dgcctl") finds the build folder coordinator/dgcctl
// (a directory, which passes its X_OK check) before the binary inside it.
std::string Dgcctl() { return DGC_BINARY_DIR "/coordinator/dgcctl/dgcctl"; }

using ::dgc::testing::DataDir;

struct Pair {
  const char* name;
  const char* real;  // under ../shared/data, or "" for a capture the test writes
  const char* synth;
};

constexpr double kTolerance = 0.01;

class TsharkAgreementTest : public ::testing::TestWithParam<Pair> {
 protected:
  void SetUp() override {
    DGC_REQUIRE_DATA();
    ASSERT_TRUE(::dgc::testing::RequireTool("tshark"));
    ASSERT_TRUE(::dgc::testing::RequireTool("python3"));
  }

  // Writes a header-only raw-IP capture, as a generator would: the sizes come
  // from the IP header (orig_len), not from captured bytes.
  std::string Generated() {
    std::vector<PacketRecord> v;
    for (int i = 0; i < 2000; ++i) {
      v.push_back(::dgc::testing::MakePacket(
          int64_t{1700000000} * 1000000000 + i * int64_t{3517219}, 0x0a000001u + i % 13,
          0xc0a80001u + i % 5, i % 4 ? kProtoTcp : kProtoUdp, static_cast<uint16_t>(1024 + i % 97),
          i % 4 ? 443 : 53, static_cast<uint32_t>(40 + (i * 131) % 1460), i % 7 ? 0x10 : 0x02));
    }
    std::string path = dir_.File("generated.pcap");
    ::dgc::testing::WritePcap(path, v);
    return path;
  }

  ::dgc::testing::TempDir dir_;
};

TEST_P(TsharkAgreementTest, AgreesWithinOneHundredthOnEveryMetric) {
  const Pair& p = GetParam();
  std::string real = *p.real ? DataDir() + "/" + p.real : Generated();
  std::string synth = DataDir() + "/" + p.synth;
  std::string dgc_out, ref_out;
  ASSERT_EQ(
      ::dgc::testing::Run(Dgcctl() + " eval -o json '" + real + "' '" + synth + "'", &dgc_out), 0);
  ASSERT_EQ(::dgc::testing::Run("python3 " DGC_SOURCE_DIR "/tests/eval/tshark_scorer.py '" + real +
                                    "' '" + synth + "'",
                                &ref_out),
            0);
  auto d = nlohmann::json::parse(dgc_out);
  auto t = nlohmann::json::parse(ref_out);
  // Both read the same packets.
  EXPECT_EQ(d["real"]["ip_packets"], t["real"]["ip_packets"]);
  EXPECT_EQ(d["synth"]["ip_packets"], t["synth"]["ip_packets"]);
  EXPECT_EQ(d["real"]["flows"], t["flows"]["real"]);
  EXPECT_EQ(d["synth"]["flows"], t["flows"]["synth"]);
  double max_diff = 0;
  for (const auto& [name, dv] : d["scores"]["metrics"].items()) {
    const auto& tv = t["metrics"][name];
    ASSERT_EQ(dv.is_null(), tv.is_null()) << name << ": dgc " << dv << ", tshark " << tv;
    if (dv.is_null()) continue;
    double diff = std::fabs(dv.get<double>() - tv.get<double>());
    EXPECT_LE(diff, kTolerance) << name << ": dgc " << dv << ", tshark " << tv;
    max_diff = std::max(max_diff, diff);
  }
  std::cout << "[ agreement ] " << p.name << ": max |dgc - tshark| = " << max_diff << " over "
            << d["scores"]["scored"] << " metrics\n";
  RecordProperty("max_abs_diff", std::to_string(max_diff));
}

INSTANTIATE_TEST_SUITE_P(
    DevCaptures, TsharkAgreementTest,
    ::testing::Values(
        Pair{"LanVsSmb", "pcapplusplus/example.pcap", "zeek/smb2.pcap"},
        Pair{"IotVsApp", "iot-oconnor/blink-cam-01.pcap", "ndpi/teams.pcap"},
        // Linux SLL against raw IP: different link types.
        Pair{"SllVsRawIp", "ndpi/KakaoTalk_chat.pcap", "netshare/caida-small_raw.pcap"},
        // IPv6 with fragment and extension headers against IPv4 fragments.
        Pair{"Ipv6VsFragments", "edge-cases/ipv6_fragments.pcapng",
             "edge-cases/ip4_fragments.pcap"},
        // ICMP errors quoting IP headers (pcapng) against GRE tunnels: only the outer
        // header counts.
        Pair{"Tunnels", "ndpi/stun_signal.pcapng", "edge-cases/pptp.pcap"},
        // A header-only capture written by dgc's own PcapWriter, as regenerated traces are.
        Pair{"GeneratedVsLan", "", "pcapplusplus/example.pcap"}),
    [](const ::testing::TestParamInfo<Pair>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace dgc

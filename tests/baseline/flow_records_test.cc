#include "common/baseline/flow_records.h"

#include <random>

#include "common/baseline/baseline.h"
#include "common/baseline/codec.h"
#include "common/trace/flow.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1600000000 * kSec;

PacketRecord V6(int64_t ts, uint8_t last_src, uint8_t last_dst, uint16_t sport, uint16_t dport,
                uint32_t len) {
  PacketRecord p = MakePacket(ts, 0, 0, kProtoUdp, sport, dport, len);
  p.version = 6;
  uint8_t a[16] = {0xfe, 0x80};
  a[15] = last_src;
  p.src = IpAddress::FromV6(a);
  a[15] = last_dst;
  p.dst = IpAddress::FromV6(a);
  return p;
}

// Hand-made: a TCP connection (5 packets), a UDP flow broken by a 100 s gap
// into two flows, an ICMP echo, an IPv6 flow, timestamps with nanoseconds.
std::vector<PacketRecord> Trace() {
  std::vector<PacketRecord> v = {
      MakePacket(kT0 + 0, 0x0a000001, 0x0a000002, kProtoTcp, 40000, 80, 60, 0x02),
      MakePacket(kT0 + 100, 0x0a000003, 0x0a000001, kProtoUdp, 53, 5353, 100),
      MakePacket(kT0 + 1 * kSec, 0x0a000001, 0x0a000002, kProtoTcp, 40000, 80, 52, 0x10),
      MakePacket(kT0 + 1 * kSec + 7, 0x0a000004, 0x08080808, kProtoIcmp, 0, 0, 84),
      MakePacket(kT0 + 2 * kSec, 0x0a000001, 0x0a000002, kProtoTcp, 40000, 80, 1500, 0x18),
      V6(kT0 + 2 * kSec + 5, 1, 2, 546, 547, 120),
      MakePacket(kT0 + 3 * kSec, 0x0a000001, 0x0a000002, kProtoTcp, 40000, 80, 1500, 0x18),
      MakePacket(kT0 + 3 * kSec + 1, 0x0a000003, 0x0a000001, kProtoUdp, 53, 5353, 101),
      MakePacket(kT0 + 4 * kSec, 0x0a000001, 0x0a000002, kProtoTcp, 40000, 80, 52, 0x11),
      V6(kT0 + 9 * kSec, 1, 2, 546, 547, 140),
      MakePacket(kT0 + 104 * kSec, 0x0a000003, 0x0a000001, kProtoUdp, 53, 5353, 102),
  };
  return v;
}

void ExpectSameFlows(const std::vector<Flow>& got, const std::vector<Flow>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(got[i].key == want[i].key) << "flow " << i;
    EXPECT_EQ(got[i].first_ns, want[i].first_ns) << "flow " << i;
    EXPECT_EQ(got[i].last_ns, want[i].last_ns) << "flow " << i;
    EXPECT_EQ(got[i].packets, want[i].packets) << "flow " << i;
    EXPECT_EQ(got[i].bytes, want[i].bytes) << "flow " << i;
    EXPECT_EQ(got[i].tcp_flags, want[i].tcp_flags) << "flow " << i;
  }
}

TEST(FlowRecordsTest, DecodedRecordsEqualBuildFlowsOfTheInput) {
  auto flows = BuildFlows(Trace());
  ASSERT_EQ(flows.size(), 5u);  // TCP, UDP, ICMP, IPv6, and the UDP tuple again after 101 s
  auto decoded = DecodeFlowRecords(EncodeFlowRecords(flows));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameFlows(*decoded, flows);
  auto packed = PackFlowRecords(flows);
  ASSERT_TRUE(packed.ok());
  auto unpacked = UnpackFlowRecords(*packed);
  ASSERT_TRUE(unpacked.ok()) << unpacked.status();
  ExpectSameFlows(*unpacked, flows);
}

TEST(FlowRecordsTest, ManyRandomFlowsRoundTripAtEveryTimeUnit) {
  std::mt19937_64 rng(1);
  for (int64_t unit : {int64_t{1}, int64_t{1000}, int64_t{1000000}, kSec}) {
    std::vector<PacketRecord> v;
    int64_t t = kT0;
    for (int i = 0; i < 5000; ++i) {
      t += int64_t(rng() % 50000) * unit;
      v.push_back(MakePacket(t, 0x0a000000 + rng() % 300, 0xc0a80000 + rng() % 40,
                             rng() % 2 ? kProtoTcp : kProtoUdp, rng() % 4, 80, 40 + rng() % 1460,
                             uint8_t(rng())));
    }
    auto flows = BuildFlows(v);
    auto decoded = DecodeFlowRecords(EncodeFlowRecords(flows));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSameFlows(*decoded, flows);
  }
}

TEST(FlowRecordsTest, TruncatedOrCorruptBlobsAreErrorsNotCrashes) {
  std::string raw = EncodeFlowRecords(BuildFlows(Trace()));
  for (size_t n = 0; n < raw.size(); ++n) {
    EXPECT_FALSE(DecodeFlowRecords(raw.substr(0, n)).ok()) << "cut at " << n;
  }
  EXPECT_FALSE(DecodeFlowRecords(raw + "x").ok());
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    std::string bad = raw;
    bad[4 + rng() % (bad.size() - 4)] ^= static_cast<char>(1 + rng() % 255);
    (void)DecodeFlowRecords(bad);  // any result but a crash
  }
  std::string future = raw;
  future[4] = 9;
  EXPECT_EQ(DecodeFlowRecords(future).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(UnpackFlowRecords("garbage").ok());
}

TEST(FlowRecordsTest, PacketsAreSpreadEvenlyAtTheMeanSize) {
  Flow f;
  f.key = FlowKey::Of(MakePacket(0, 0x0a000001, 0x0a000002, kProtoTcp, 1, 2, 0));
  f.first_ns = kT0;
  f.last_ns = kT0 + 10 * kSec;
  f.packets = 6;
  f.bytes = 6 * 100 + 4;  // mean 100.67: four packets of 101, two of 100
  f.tcp_flags = 0x02 | 0x10 | 0x08 | 0x01;
  auto out = PacketsFromFlows({f}, 57);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 6u);
  uint64_t bytes = 0;
  for (size_t i = 0; i < 6; ++i) {
    const auto& p = (*out)[i];
    EXPECT_EQ(p.ts_ns, kT0 + int64_t(i) * 2 * kSec);
    EXPECT_EQ(p.ip_len, i < 4 ? 101u : 100u);
    EXPECT_EQ(p.ttl, 57);
    uint8_t want = 0x18 | (i == 0 ? 0x02 : 0) | (i == 5 ? 0x01 : 0);
    EXPECT_EQ(p.tcp_flags, want) << i;
    bytes += p.ip_len;
  }
  EXPECT_EQ(bytes, f.bytes);
  f.packets = 1;
  out = PacketsFromFlows({f});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].tcp_flags, f.tcp_flags);  // one packet carries the whole OR
  EXPECT_EQ((*out)[0].ttl, 64);
}

TEST(FlowRecordsTest, RegeneratedTraceHasTheSameFlows) {
  // Even spreading keeps every gap <= the flow's largest, so no flow splits
  // or merges: the flows of the regenerated trace are the records.
  auto in = Trace();
  auto r = RunBaseline(BaselineMethod::kFlows, in);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->packets.size(), in.size());
  ExpectSameFlows(BuildFlows(r->packets), BuildFlows(in));
  EXPECT_EQ(r->kept_records, BuildFlows(in).size());
  auto packed = PackFlowRecords(BuildFlows(in));
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ(r->kept.bytes, *packed);
  EXPECT_EQ(r->kept_bytes, packed->size());
}

TEST(FlowRecordsTest, RegenerationLimitIsEnforced) {
  Flow f;
  f.packets = 1000;
  f.bytes = 1000;
  EXPECT_EQ(PacketsFromFlows({f, f}, 64, 1500).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace dgc::baseline

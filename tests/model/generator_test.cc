#include "common/model/generator.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;

TEST(GeneratorTest, StitchGivesContinuedFlowsTheTupleOfAnOpenOne) {
  std::vector<OpenFlow> open;
  // Chunk 1 (ends at 100 s): one flow idle since 1 s, one seen at 59 s.
  std::vector<PacketRecord> c1 = {MakePacket(kT0 + 1 * kSec, 1, 2, kProtoTcp, 40000, 443, 100),
                                  MakePacket(kT0 + 59 * kSec, 5, 6, kProtoTcp, 41000, 443, 100)};
  StitchFlows(&open, kT0 + 100 * kSec, &c1);
  ASSERT_EQ(open.size(), 1u);  // only the flow seen within 60 s of the end
  EXPECT_EQ(open[0].key, FlowKey::Of(c1[1]));
  // Chunk 2: the model says its first flow continues one; its sampled tuple differs.
  std::vector<PacketRecord> c2 = {MakePacket(kT0 + 101 * kSec, 9, 9, kProtoTcp, 50000, 443, 100),
                                  MakePacket(kT0 + 102 * kSec, 9, 9, kProtoTcp, 50000, 443, 100),
                                  MakePacket(kT0 + 103 * kSec, 7, 7, kProtoUdp, 53, 53, 80)};
  c2[0].flags |= kPktFlowContinued;
  c2[2].flags |= kPktFlowContinued;  // UDP: no open UDP flow, keeps its tuple
  StitchFlows(&open, kT0 + 180 * kSec, &c2);
  EXPECT_EQ(c2[0].src, c1[1].src);
  EXPECT_EQ(c2[0].sport, 41000);
  EXPECT_EQ(c2[1].sport, 41000);  // every packet of the flow follows
  EXPECT_EQ(c2[2].sport, 53);
}

TEST(GeneratorTest, MatchPacketCountsGivesEveryBinItsCount) {
  Skeleton sk;
  sk.start_ns = kT0;
  sk.duration_ns = 10 * kSec;
  sk.bin_ns = kSec;
  sk.new_flows.assign(10, 0);
  sk.bytes.assign(10, 0);
  sk.packets = {0, 5, 0, 0, 10, 0, 0, 0, 5, 0};
  std::vector<PacketRecord> ps;
  for (int i = 0; i < 20; ++i) ps.push_back(MakePacket(kT0 + i * kSec / 2, 1, 2, kProtoUdp, 1, 2, 60));
  MatchPacketCounts(sk, &ps);
  std::vector<int> per_bin(10, 0);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (i) EXPECT_LE(ps[i - 1].ts_ns, ps[i].ts_ns);
    per_bin[(ps[i].ts_ns - kT0) / kSec]++;
  }
  EXPECT_EQ(per_bin, (std::vector<int>{0, 5, 0, 0, 10, 0, 0, 0, 5, 0}));
}

}  // namespace
}  // namespace dgc::model

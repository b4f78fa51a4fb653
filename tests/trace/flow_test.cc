#include "common/trace/flow.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;

TEST(FlowTest, GapOfMoreThanSixtySecondsStartsANewFlow) {
  std::vector<PacketRecord> ps = {
      MakePacket(0, 1, 2, kProtoTcp, 10, 20, 100, 0x02),
      MakePacket(60 * kSec, 1, 2, kProtoTcp, 10, 20, 200, 0x10),      // exactly 60 s: same flow
      MakePacket(120 * kSec + 1, 1, 2, kProtoTcp, 10, 20, 300, 0x01),  // 60 s + 1 ns: new flow
  };
  std::vector<uint32_t> of;
  auto flows = BuildFlows(ps, std::numeric_limits<int64_t>::max(), &of);
  ASSERT_EQ(flows.size(), 2u);
  EXPECT_EQ(flows[0].packets, 2u);
  EXPECT_EQ(flows[0].bytes, 300u);
  EXPECT_EQ(flows[0].duration_ns(), 60 * kSec);
  EXPECT_EQ(flows[0].tcp_flags, 0x12);
  EXPECT_EQ(flows[1].packets, 1u);
  EXPECT_EQ(flows[1].duration_ns(), 0);
  EXPECT_EQ(of, (std::vector<uint32_t>{0, 0, 1}));
}

TEST(FlowTest, FlowsAreUnidirectionalFiveTuples) {
  std::vector<PacketRecord> ps = {
      MakePacket(0, 1, 2, kProtoTcp, 10, 20, 60),
      MakePacket(1, 2, 1, kProtoTcp, 20, 10, 60),  // reverse direction
      MakePacket(2, 1, 2, kProtoUdp, 10, 20, 60),  // other protocol
      MakePacket(3, 1, 2, kProtoTcp, 11, 20, 60),  // other port
      MakePacket(4, 1, 2, kProtoTcp, 10, 20, 60),
  };
  auto flows = BuildFlows(ps);
  ASSERT_EQ(flows.size(), 4u);
  EXPECT_EQ(flows[0].packets, 2u);
}

TEST(FlowTest, MarksFlowsThatMayContinueAndThatContinued) {
  std::vector<PacketRecord> ps = {
      MakePacket(1 * kSec, 1, 2, kProtoUdp, 1, 1, 60),   // idle long before the end
      MakePacket(50 * kSec, 3, 4, kProtoUdp, 1, 1, 60),  // close to the window end
  };
  ps[0].flags |= kPktFlowContinued;
  auto flows = BuildFlows(ps, /*window_end_ns=*/100 * kSec);
  ASSERT_EQ(flows.size(), 2u);
  EXPECT_EQ(flows[0].marks, kFlowContinued);
  EXPECT_EQ(flows[1].marks, kFlowOpenAtEnd);
}

}  // namespace
}  // namespace dgc

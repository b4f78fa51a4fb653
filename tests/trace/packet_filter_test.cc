#include "common/trace/packet_filter.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

TEST(PacketFilterTest, MatchesByPortProtocolAndHost) {
  auto f = PacketFilter::Compile("tcp port 443 and host 10.0.0.1");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->Matches(testing::MakePacket(0, 0x0a000001, 0x0a000002, kProtoTcp, 50000, 443, 60)));
  EXPECT_FALSE((*f)->Matches(testing::MakePacket(0, 0x0a000001, 0x0a000002, kProtoTcp, 50000, 80, 60)));
  EXPECT_FALSE((*f)->Matches(testing::MakePacket(0, 0x0a000001, 0x0a000002, kProtoUdp, 50000, 443, 60)));
  EXPECT_FALSE((*f)->Matches(testing::MakePacket(0, 0x0a000003, 0x0a000002, kProtoTcp, 50000, 443, 60)));
  auto big = PacketFilter::Compile("greater 1000", OutputLink::kEthernet);
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE((*big)->Matches(testing::MakePacket(0, 1, 2, kProtoTcp, 1, 2, 1400)));
  EXPECT_FALSE((*big)->Matches(testing::MakePacket(0, 1, 2, kProtoTcp, 1, 2, 400)));
}

TEST(PacketFilterTest, BadExpressionIsAClearError) {
  auto f = PacketFilter::Compile("tcp port banana");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("bad filter 'tcp port banana'"), std::string::npos);
}

}  // namespace
}  // namespace dgc

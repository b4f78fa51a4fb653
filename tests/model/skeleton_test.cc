#include "common/model/skeleton.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;

Chunk SomeChunk() {
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 3600 * kSec;
  for (int i = 0; i < 300; ++i) {
    c.packets.push_back(testing::MakePacket(kT0 + int64_t(i) * i * 40000000LL, 1 + i % 4, 9, kProtoUdp,
                                            uint16_t(1 + i % 3), 53, 100 + i));
  }
  return c;
}

TEST(SkeletonTest, CountsAreExactPerBin) {
  Chunk c = SomeChunk();
  auto flows = BuildFlows(c.packets, c.end_ns());
  Skeleton s = Skeleton::FromChunk(c, flows, Skeleton::DefaultBinNs(c.duration_ns));
  EXPECT_EQ(s.bin_ns, kSec);
  EXPECT_EQ(s.bins(), 3600u);
  EXPECT_EQ(s.total_packets(), 300u);
  EXPECT_EQ(s.total_flows(), flows.size());
  uint64_t bytes = 0;
  for (const auto& p : c.packets) bytes += p.ip_len;
  EXPECT_EQ(s.total_bytes(), bytes);
  EXPECT_EQ(s.packets[0], 5u);  // packet i at i*i*40 ms: i = 0..4 fall in the first second
}

TEST(SkeletonTest, EncodeDecodeIsExactAndSmall) {
  Chunk c = SomeChunk();
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec);
  std::string bytes = s.Encode();
  EXPECT_LT(bytes.size(), 1200u);
  auto d = Skeleton::Decode(bytes, "s");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->new_flows, s.new_flows);
  EXPECT_EQ(d->packets, s.packets);
  EXPECT_EQ(d->bytes, s.bytes);
  EXPECT_EQ(d->start_ns, s.start_ns);
  EXPECT_EQ(d->bin_ns, s.bin_ns);
}

TEST(SkeletonTest, CorruptTruncatedAndNewerInputsAreErrorsNamingTheFile) {
  Chunk c = SomeChunk();
  std::string good = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec).Encode();
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x41);
    auto d = Skeleton::Decode(bad, "sk.bin");
    ASSERT_FALSE(d.ok()) << "byte " << i;
    EXPECT_NE(d.status().message().find("sk.bin"), std::string::npos);
  }
  for (size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(Skeleton::Decode(good.substr(0, n), "sk").ok());
  std::string newer = good;
  newer[4] = 9;
  EXPECT_TRUE(absl::IsUnimplemented(Skeleton::Decode(newer, "sk").status()));
}

}  // namespace
}  // namespace dgc::model

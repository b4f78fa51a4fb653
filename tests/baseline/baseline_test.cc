#include "common/baseline/baseline.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;

std::vector<PacketRecord> Trace() {
  std::vector<PacketRecord> v;
  for (int i = 0; i < 500; ++i) {
    v.push_back(MakePacket(int64_t(i) * 3000000, 0x0a000001 + i % 9, 0x0a000100 + i % 4,
                           i % 3 ? kProtoTcp : kProtoUdp, 1000 + i % 13, 80, 40 + i % 200, 0x10));
  }
  return v;
}

constexpr BaselineMethod kAll[] = {BaselineMethod::kSampling, BaselineMethod::kFlows,
                                   BaselineMethod::kMarginals};

TEST(BaselineTest, KeptBytesAreTheBlobAndRegenerationReadsOnlyTheBlob) {
  auto in = Trace();
  for (BaselineMethod m : kAll) {
    BaselineOptions o;
    o.sampling_n = 10;
    auto r = RunBaseline(m, in, o);
    ASSERT_TRUE(r.ok()) << BaselineMethodName(m) << ": " << r.status();
    EXPECT_EQ(r->kept_bytes, r->kept.bytes.size());
    EXPECT_GT(r->kept_bytes, 0u);
    EXPECT_DOUBLE_EQ(r->KeptBytesPerMillionPackets(), r->kept_bytes * 1e6 / in.size());
    // A fresh baseline with the same options, given only the blob, makes the same trace.
    auto b = Baseline::Create(m, o);
    ASSERT_TRUE(b.ok());
    auto again = (*b)->Regenerate(r->kept.bytes);
    ASSERT_TRUE(again.ok()) << again.status();
    ASSERT_EQ(again->size(), r->packets.size());
    for (size_t i = 0; i < again->size(); ++i) {
      ASSERT_TRUE(SameMetricFields((*again)[i], r->packets[i])) << BaselineMethodName(m) << " " << i;
    }
    for (size_t i = 1; i < r->packets.size(); ++i) {
      ASSERT_LE(r->packets[i - 1].ts_ns, r->packets[i].ts_ns) << BaselineMethodName(m);
    }
  }
}

TEST(BaselineTest, UnsortedInputIsKeptAsIfSorted) {
  auto in = Trace();
  auto shuffled = in;
  std::reverse(shuffled.begin(), shuffled.end());
  for (BaselineMethod m : kAll) {
    auto a = RunBaseline(m, in);
    auto b = RunBaseline(m, shuffled);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->kept.bytes, b->kept.bytes) << BaselineMethodName(m);
  }
}

TEST(BaselineTest, EmptyInputGivesAnEmptyTrace) {
  for (BaselineMethod m : kAll) {
    auto r = RunBaseline(m, {});
    ASSERT_TRUE(r.ok()) << BaselineMethodName(m) << ": " << r.status();
    EXPECT_TRUE(r->packets.empty());
    EXPECT_EQ(r->KeptBytesPerMillionPackets(), 0);
  }
}

TEST(BaselineTest, ForeignBlobsAreErrors) {
  for (BaselineMethod m : kAll) {
    auto b = Baseline::Create(m, {});
    ASSERT_TRUE(b.ok());
    EXPECT_FALSE((*b)->Regenerate("").ok()) << BaselineMethodName(m);
    EXPECT_FALSE((*b)->Regenerate("\x28\xb5\x2f\xfd garbage").ok()) << BaselineMethodName(m);
  }
  // Each method's blob is rejected by the others.
  auto flows = RunBaseline(BaselineMethod::kFlows, Trace());
  auto marginals = Baseline::Create(BaselineMethod::kMarginals, {});
  ASSERT_TRUE(flows.ok() && marginals.ok());
  EXPECT_FALSE((*marginals)->Regenerate(flows->kept.bytes).ok());
}

TEST(BaselineTest, NamesOptionsAndDescriptions) {
  EXPECT_EQ(*ParseBaselineMethod("flows"), BaselineMethod::kFlows);
  auto bad = ParseBaselineMethod("netflow");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sampling, flows or marginals"), absl::string_view::npos);
  BaselineOptions o;
  o.sampling_n = 0;
  EXPECT_FALSE(Baseline::Create(BaselineMethod::kSampling, o).ok());
  o.sampling_n = 10;
  o.zstd_level = 40;
  EXPECT_FALSE(Baseline::Create(BaselineMethod::kFlows, o).ok());
  o.zstd_level = 19;
  o.sampling_random = true;
  o.seed = 3;
  EXPECT_EQ((*Baseline::Create(BaselineMethod::kSampling, o))->Describe(),
            "sampling 1:10 random (seed 3)");
  EXPECT_EQ((*Baseline::Create(BaselineMethod::kFlows, o))->Describe(), "flows");
}

}  // namespace
}  // namespace dgc::baseline

#include "common/baseline/sampling.h"

#include "common/baseline/baseline.h"
#include "common/baseline/pcap_image.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

// n packets, 1 ms apart, sizes 40..(40 + n - 1) so each is recognisable.
std::vector<PacketRecord> Ramp(size_t n) {
  std::vector<PacketRecord> v;
  for (size_t i = 0; i < n; ++i) {
    v.push_back(testing::MakePacket(1000000000 + int64_t(i) * 1000000, 0x0a000001 + i % 7,
                                    0x0a0000ff, kProtoTcp, 1000 + i % 5, 80, 40 + i, 0x10));
  }
  return v;
}

uint64_t Bytes(const std::vector<PacketRecord>& v) {
  uint64_t b = 0;
  for (const auto& p : v) b += p.ip_len;
  return b;
}

TEST(SamplingTest, OneInOneReproducesTheTrace) {
  auto in = Ramp(1000);
  BaselineOptions o;
  o.sampling_n = 1;
  auto r = RunBaseline(BaselineMethod::kSampling, in, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->packets.size(), in.size());
  EXPECT_EQ(Bytes(r->packets), Bytes(in));
  for (size_t i = 0; i < in.size(); ++i) EXPECT_TRUE(SameMetricFields(r->packets[i], in[i])) << i;
  EXPECT_EQ(r->kept_records, in.size());
  EXPECT_EQ(r->kept_bytes, PcapImageSize(in));
}

TEST(SamplingTest, OneInNKeepsCeilNOverNAndRegeneratesAboutN) {
  for (size_t n : {size_t{1}, size_t{99}, size_t{100}, size_t{101}, size_t{1000}, size_t{1234}}) {
    auto in = Ramp(n);
    BaselineOptions o;
    o.sampling_n = 100;
    auto r = RunBaseline(BaselineMethod::kSampling, in, o);
    ASSERT_TRUE(r.ok()) << r.status();
    size_t kept = (n + 99) / 100;
    EXPECT_EQ(r->kept_records, kept) << n;
    EXPECT_EQ(r->packets.size(), kept * 100) << n;
    EXPECT_GE(r->packets.size(), n);
    EXPECT_LT(r->packets.size(), n + 100);
    // The kept form is the header-only pcap of packets 0, 100, 200...
    std::vector<PacketRecord> every;
    for (size_t i = 0; i < n; i += 100) every.push_back(in[i]);
    EXPECT_EQ(r->kept.bytes, PcapImage(every));
    EXPECT_EQ(r->kept_bytes, r->kept.bytes.size());
  }
}

TEST(SamplingTest, CopiesAreSpreadEvenlyOverTheGapToTheNextKeptPacket) {
  auto in = Ramp(30);  // kept: 0, 10, 20 at 0, 10, 20 ms (plus 1 s)
  auto out = ExpandSample({in[0], in[10], in[20]}, 10);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 30u);
  for (size_t i = 0; i < 30; ++i) {
    EXPECT_EQ((*out)[i].ts_ns, in[0].ts_ns + int64_t(i) * 1000000) << i;  // the original times
    EXPECT_EQ((*out)[i].ip_len, in[i / 10 * 10].ip_len) << i;              // copies of the kept one
  }
  auto one = ExpandSample({in[5]}, 4);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 4u);
  for (const auto& p : *one) EXPECT_EQ(p.ts_ns, in[5].ts_ns);  // no gap known: stacked
}

TEST(SamplingTest, RandomVariantIsSeededAndKeepsAboutOneInN) {
  auto in = Ramp(20000);
  BaselineOptions o;
  o.sampling_n = 10;
  o.sampling_random = true;
  o.seed = 42;
  auto a = RunBaseline(BaselineMethod::kSampling, in, o);
  auto b = RunBaseline(BaselineMethod::kSampling, in, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->kept.bytes, b->kept.bytes);
  // Binomial(20000, 0.1): mean 2000, sd 42.
  EXPECT_NEAR(double(a->kept_records), 2000, 250);
  EXPECT_EQ(a->packets.size(), a->kept_records * 10);
  o.seed = 43;
  auto c = RunBaseline(BaselineMethod::kSampling, in, o);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->kept.bytes, c->kept.bytes);
  EXPECT_EQ(SampleIndices(1000, 7, true, 5), SampleIndices(1000, 7, true, 5));
}

TEST(SamplingTest, RateParsing) {
  EXPECT_EQ(*ParseSamplingRate("1:100"), 100u);
  EXPECT_EQ(*ParseSamplingRate("100"), 100u);
  EXPECT_EQ(*ParseSamplingRate(" 1:10 "), 10u);
  EXPECT_EQ(*ParseSamplingRate("1:1"), 1u);
  for (const char* bad : {"1:0", "0", "", "1:", "2:10", "1:x", "-5", "1:4294967296", "1:1.5"}) {
    EXPECT_FALSE(ParseSamplingRate(bad).ok()) << bad;
  }
}

TEST(SamplingTest, RegenerationLimitIsEnforced) {
  auto in = Ramp(10);
  EXPECT_EQ(ExpandSample(in, 1000, 5000).status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace dgc::baseline

// The distance and binning primitives of METRICS.md, against values computed
// by hand (the formulas are in the comments).
#include "common/eval/distance.h"

#include <cmath>

#include "gtest/gtest.h"

namespace dgc::eval {
namespace {

Histogram Of(std::initializer_list<std::pair<int64_t, uint64_t>> bins) {
  Histogram h;
  for (auto [k, n] : bins) h.Add(k, n);
  return h;
}

TEST(Log10x10BinTest, PutsValuesBelowOneInBinZeroAndDecadesTenBinsApart) {
  EXPECT_EQ(Log10x10Bin(0), 0);
  EXPECT_EQ(Log10x10Bin(0.999), 0);
  EXPECT_EQ(Log10x10Bin(1), 1);
  EXPECT_EQ(Log10x10Bin(1.25), 1);  // 10 * log10(1.25) = 0.97
  EXPECT_EQ(Log10x10Bin(1.26), 2);  // 10 * log10(1.26) = 1.004
  EXPECT_EQ(Log10x10Bin(9.99), 10);
  EXPECT_EQ(Log10x10Bin(10), 11);
  EXPECT_EQ(Log10x10Bin(100), 21);
  EXPECT_EQ(Log10x10Bin(1e6), 61);
  EXPECT_EQ(Log10x10Bin(std::nan("")), 0);
  EXPECT_DOUBLE_EQ(Log10x10Lower(11), 10);
}

TEST(JsdTest, IsZeroForIdenticalAndOneForDisjointHistograms) {
  EXPECT_DOUBLE_EQ(Jsd(Of({{1, 5}, {2, 5}}), Of({{1, 1}, {2, 1}})), 0);
  EXPECT_DOUBLE_EQ(Jsd(Of({{1, 5}}), Of({{2, 5}})), 1);
  // Keys beyond the dense range go through the sparse map the same way.
  EXPECT_DOUBLE_EQ(Jsd(Of({{1 << 20, 5}}), Of({{(1 << 20) + 1, 5}})), 1);
  EXPECT_DOUBLE_EQ(Jsd(Of({{1 << 20, 5}}), Of({{1 << 20, 2}})), 0);
}

TEST(JsdTest, MatchesTheBase2JensenShannonDistance) {
  // p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
  // KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075, KL(q||m) = log2(4/3) = 0.4150,
  // JSD = sqrt((0.2075 + 0.4150) / 2) = 0.55792.
  EXPECT_NEAR(Jsd(Of({{7, 1}, {9, 1}}), Of({{7, 2}})), 0.5579230452841438, 1e-12);
  EXPECT_NEAR(Jsd(Of({{7, 2}}), Of({{7, 1}, {9, 1}})), 0.5579230452841438, 1e-12);
}

TEST(JsdTest, EmptySyntheticHistogramScoresOne) {
  EXPECT_DOUBLE_EQ(Jsd(Of({{1, 3}}), Histogram()), 1);
  EXPECT_DOUBLE_EQ(Jsd(Histogram(), Histogram()), 0);
}

TEST(RankJsdTest, SortsDescendingAndPadsWithZeros) {
  // (3/4, 1/4) against (1/2, 1/2).
  EXPECT_NEAR(RankJsd({1, 3}, {2, 2}), 0.22089576884901735, 1e-12);
  // (1, 0, 0, 0) against (1/4, 1/4, 1/4, 1/4): the shorter list is padded.
  EXPECT_NEAR(RankJsd({4}, {1, 1, 1, 1}), 0.740806952380577, 1e-12);
  // Only the shape counts, not which address has which count.
  EXPECT_DOUBLE_EQ(RankJsd({5, 1, 2}, {20, 10, 50}), 0);
  EXPECT_DOUBLE_EQ(RankJsd({5}, {}), 1);
}

TEST(QuantileTest, InterpolatesLinearlyBetweenClosestRanks) {
  EXPECT_DOUBLE_EQ(Quantile({4, 1, 3, 2}, 0.5), 2.5);
  std::vector<double> v;
  for (int i = 99; i >= 0; --i) v.push_back(i);
  EXPECT_DOUBLE_EQ(Quantile(v, 0.95), 94.05);
  EXPECT_DOUBLE_EQ(Quantile({7}, 0.95), 7);
  EXPECT_DOUBLE_EQ(Quantile({}, 0.5), 0);
}

TEST(HistogramTest, SortedListsDenseAndSparseBinsInKeyOrder) {
  Histogram h = Of({{1 << 20, 1}, {3, 2}, {0, 1}, {(1 << 18), 4}});
  auto s = h.Sorted();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0], (std::pair<int64_t, uint64_t>{0, 1}));
  EXPECT_EQ(s[1], (std::pair<int64_t, uint64_t>{3, 2}));
  EXPECT_EQ(s[2], (std::pair<int64_t, uint64_t>{1 << 18, 4}));
  EXPECT_EQ(s[3], (std::pair<int64_t, uint64_t>{1 << 20, 1}));
  EXPECT_EQ(h.total(), 8u);
  EXPECT_EQ(h.Count(3), 2u);
  EXPECT_EQ(h.Count(4), 0u);
}

}  // namespace
}  // namespace dgc::eval

// SampleRows, the sampler's CPU draw, against the plain definition.
#include "common/model/sample_kernel.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace dgc::model {
namespace {

// The fused CPU draw (one pass for the maximum, exp only where min_p keeps
// a token, one scan) against the plain definition in double: softmax of
// logits * inv_temp over the row's allowed range, tokens below min_p of the
// likeliest dropped, then the first token whose cumulative mass reaches u.
TEST(SampleRowsTest, DrawsTheInverseCdfOfTheKeptTokensInTheAllowedRange) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0, 2);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const int64_t win = 40;
  int64_t draws = 0;
  for (double inv_temp : {1.0, 0.5, 2.0}) {
    for (double min_p : {0.0, 0.02, 0.3}) {
      const int64_t ns = 64;
      std::vector<float> logits(ns * win), uni(ns);
      std::vector<int64_t> lo(ns), hi(ns), pick(ns);
      for (int64_t i = 0; i < ns; ++i) {
        for (int64_t j = 0; j < win; ++j) logits[i * win + j] = normal(rng);
        lo[i] = static_cast<int64_t>(rng() % 20);
        hi[i] = lo[i] + 1 + static_cast<int64_t>(rng() % (win - lo[i]));
        logits[i * win + (lo[i] > 0 ? lo[i] - 1 : win - 1)] = 50;  // outside the range: never drawn
        uni[i] = unit(rng);
      }
      std::vector<float> scratch;
      SampleRows(logits.data(), ns, win, lo.data(), hi.data(), uni.data(), /*greedy=*/false, inv_temp,
                              min_p, &scratch, pick.data());
      for (int64_t i = 0; i < ns; ++i, ++draws) {
        const float* x = &logits[i * win];
        double mx = -INFINITY;
        for (int64_t j = lo[i]; j < hi[i]; ++j) mx = std::max<double>(mx, x[j]);
        std::vector<double> p(win, 0.0);
        double total = 0;
        for (int64_t j = lo[i]; j < hi[i]; ++j) {
          const double e = std::exp((x[j] - mx) * inv_temp);
          p[j] = e >= min_p ? e : 0;
          total += p[j];
        }
        double acc = 0;
        int64_t want = hi[i] - 1;
        for (int64_t j = lo[i]; j < hi[i]; ++j) {
          acc += p[j];
          if (acc >= uni[i] * total) {
            want = j;
            break;
          }
        }
        ASSERT_GE(pick[i], lo[i]);
        ASSERT_LT(pick[i], hi[i]);
        ASSERT_GT(p[pick[i]], 0) << "a token min_p drops was drawn";
        // float against double: a u within rounding of a cdf step may land
        // on the neighbour; anything else is a different rule.
        if (pick[i] != want) {
          double below = 0;
          for (int64_t j = lo[i]; j < std::min(pick[i], want); ++j) below += p[j];
          const double edge = below + p[std::min(pick[i], want)];
          EXPECT_NEAR(edge / total, uni[i], 1e-5) << "row " << i << " picked " << pick[i] << ", want " << want;
        }
      }
      // Greedy: the first maximum of the allowed range.
      SampleRows(logits.data(), ns, win, lo.data(), hi.data(), uni.data(), /*greedy=*/true, inv_temp,
                              min_p, &scratch, pick.data());
      for (int64_t i = 0; i < ns; ++i) {
        const float* x = &logits[i * win];
        EXPECT_EQ(pick[i], std::max_element(x + lo[i], x + hi[i]) - x) << "row " << i;
      }
    }
  }
  EXPECT_EQ(draws, 9 * 64);
}

}  // namespace
}  // namespace dgc::model

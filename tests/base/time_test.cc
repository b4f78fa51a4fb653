#include "common/base/time.h"

#include "gtest/gtest.h"

namespace dgc {
namespace {

constexpr int64_t kNow = 1764169200LL * kNanosPerSecond;  // 2025-11-26T15:00:00Z

TEST(TimeTest, FormatsRfc3339InUtcWithTrimmedFraction) {
  EXPECT_EQ(FormatRfc3339(kNow), "2025-11-26T15:00:00Z");
  EXPECT_EQ(FormatRfc3339(kNow + 500000000), "2025-11-26T15:00:00.500Z");
  EXPECT_EQ(FormatRfc3339(kNow + 1), "2025-11-26T15:00:00.000000001Z");
}

TEST(TimeTest, ParsesRfc3339EpochAndRelativeForms) {
  EXPECT_EQ(*ParseTime("2025-11-26T15:00:00Z", 0), kNow);
  EXPECT_EQ(*ParseTime("2025-11-26T16:00:00+01:00", 0), kNow);
  EXPECT_EQ(*ParseTime("1764169200", 0), kNow);
  EXPECT_EQ(*ParseTime("3h ago", kNow), kNow - 3 * 3600 * kNanosPerSecond);
  EXPECT_EQ(*ParseTime("2d ago", kNow), kNow - 2 * 86400 * kNanosPerSecond);
  EXPECT_EQ(*ParseTime("now", kNow), kNow);
}

TEST(TimeTest, RejectsGarbageWithTheAcceptedForms) {
  auto t = ParseTime("yesterday-ish", kNow);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("RFC 3339"), std::string::npos);
  EXPECT_FALSE(ParseDurationNs("10x").ok());
  EXPECT_FALSE(ParseDurationNs("").ok());
}

TEST(TimeTest, ParsesDurations) {
  EXPECT_EQ(*ParseDurationNs("90s"), 90 * kNanosPerSecond);
  EXPECT_EQ(*ParseDurationNs("10m"), 600 * kNanosPerSecond);
  EXPECT_EQ(*ParseDurationNs("7d"), 7 * 86400 * kNanosPerSecond);
  EXPECT_EQ(*ParseDurationNs("2.5"), 2500000000LL);
}

}  // namespace
}  // namespace dgc

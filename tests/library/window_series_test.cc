// WindowSeriesOf (dgcctl stats): a link's history per window from the
// skeletons alone, exact where the skeleton holds the figure, bounds where
// it does not, against skeletons made by hand.
#include "library/window_series.h"

#include "common/model/skeleton.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

constexpr int64_t kS = 1000000000;
constexpr int64_t kT0 = 1700000640 * kS;  // a multiple of 240 s and of 90 s

// A 120 s chunk: 1 s bins with i+1 packets of 100 bytes, two 60 s
// structure windows and the chunk total.
model::Skeleton Chunk120(int64_t start, model::WindowStats a, model::WindowStats b, model::WindowStats total) {
  model::Skeleton s;
  s.start_ns = start;
  s.duration_ns = 120 * kS;
  s.bin_ns = kS;
  for (int i = 0; i < 120; ++i) {
    s.packets.push_back(i + 1);
    s.bytes.push_back(100 * (i + 1));
    s.new_flows.push_back(i % 2);
  }
  s.window_ns = 60 * kS;
  s.windows = {a, b};
  s.total = total;
  return s;
}

class WindowSeriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = RocksDbModelLibrary::Open(tmp_.File("lib"));
    ASSERT_TRUE(l.ok()) << l.status();
    lib_ = std::move(*l);
    library::ModelRecord base;
    base.id = "base-1";
    base.kind = library::ModelKind::kBase;
    base.blob = "weights";
    ASSERT_TRUE(lib_->PutFullModel(base).ok());
    Put("tap0", Chunk120(kT0, {3, 4, 5, 6}, {2, 3, 4, 5}, {4, 5, 7, 9}));
    Put("tap0", Chunk120(kT0 + 120 * kS, {5, 1, 5, 5}, {1, 1, 1, 1}, {5, 1, 5, 6}));
  }
  void Put(const std::string& link, const model::Skeleton& s) {
    RocksDbModelLibrary::ChunkCommit c;
    c.artifact.link = link;
    c.artifact.start_ns = s.start_ns;
    c.artifact.duration_ns = s.duration_ns;
    c.artifact.skeleton = s.Encode();
    c.artifact.parent_id = c.artifact.model_id = "base-1";
    c.artifact.report = nlohmann::json::object();
    ASSERT_TRUE(lib_->CommitChunk(c).ok());
  }
  library::WindowSeries Series(int64_t every, const std::string& link = "tap0", ChunkQuery q = {}) {
    auto s = library::WindowSeriesOf(*lib_, link, q, every);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : library::WindowSeries{};
  }
  testing::TempDir tmp_;
  std::unique_ptr<RocksDbModelLibrary> lib_;
};

// Packets of bins [a, b) of Chunk120: sum of i+1.
double Packets(int a, int b) { return (b * (b + 1) - a * (a + 1)) / 2.0; }

TEST_F(WindowSeriesTest, MinuteWindowsAreTheStructureWindowsExactly) {
  auto s = Series(60 * kS);
  ASSERT_EQ(s.rows.size(), 4u);
  EXPECT_EQ(s.chunks, 2u);
  const model::WindowStats want[] = {{3, 4, 5, 6}, {2, 3, 4, 5}, {5, 1, 5, 5}, {1, 1, 1, 1}};
  for (size_t w = 0; w < 4; ++w) {
    const auto& r = s.rows[w];
    EXPECT_EQ(r.start_ns, kT0 + static_cast<int64_t>(w) * 60 * kS);
    EXPECT_TRUE(r.volume_exact);
    EXPECT_TRUE(r.distinct_exact) << w;
    EXPECT_EQ(r.distinct_lo, want[w]) << w;
    EXPECT_EQ(r.distinct_hi, want[w]) << w;
    const int a = (w % 2) * 60;
    EXPECT_DOUBLE_EQ(r.packets, Packets(a, a + 60)) << w;
    EXPECT_DOUBLE_EQ(r.bytes, 100 * Packets(a, a + 60));
    EXPECT_DOUBLE_EQ(r.new_flows, 30);
  }
}

TEST_F(WindowSeriesTest, AWindowOfOneWholeChunkIsItsTotalAndOfTwoChunksBounds) {
  auto two = Series(120 * kS);
  ASSERT_EQ(two.rows.size(), 2u);
  EXPECT_TRUE(two.rows[0].distinct_exact);
  EXPECT_EQ(two.rows[0].distinct_lo, (model::WindowStats{4, 5, 7, 9}));
  EXPECT_DOUBLE_EQ(two.rows[0].packets, Packets(0, 120));
  auto four = Series(240 * kS);
  ASSERT_EQ(four.rows.size(), 1u);
  const auto& r = four.rows[0];
  EXPECT_FALSE(r.distinct_exact);  // a host of the first chunk may be one of the second's
  EXPECT_EQ(r.distinct_lo, (model::WindowStats{5, 5, 7, 9}));
  EXPECT_EQ(r.distinct_hi, (model::WindowStats{9, 6, 12, 15}));
  EXPECT_TRUE(r.volume_exact);
  EXPECT_DOUBLE_EQ(r.packets, 2 * Packets(0, 120));
  EXPECT_EQ(r.chunks, 2u);
}

TEST_F(WindowSeriesTest, WindowsAcrossStructureWindowsGiveBoundsAndSplitBinsAreMarked) {
  // 90 s windows from the epoch (kT0 is a multiple of 90 s).
  auto s = Series(90 * kS);
  ASSERT_EQ(s.rows.size(), 3u);
  EXPECT_EQ(s.rows[0].start_ns, kT0);
  double total = 0;
  for (const auto& r : s.rows) {
    total += r.packets;
    EXPECT_TRUE(r.volume_exact) << "1 s bins fit 90 s windows";
    EXPECT_LE(r.distinct_lo.srcs, r.distinct_hi.srcs);
  }
  EXPECT_DOUBLE_EQ(total, 2 * Packets(0, 120));
  // The first window holds the first minute whole and half of the second:
  // at least the first's, at most their sum capped by the chunk's total.
  const auto& r = s.rows[0];
  EXPECT_FALSE(r.distinct_exact);
  EXPECT_EQ(r.distinct_lo, (model::WindowStats{3, 4, 5, 6}));
  EXPECT_EQ(r.distinct_hi, (model::WindowStats{4, 5, 7, 9}));
  // The second: half of minute 2 (at most its counts) and minute 3 whole.
  EXPECT_EQ(s.rows[1].distinct_lo, (model::WindowStats{5, 1, 5, 5}));
  EXPECT_EQ(s.rows[1].distinct_hi, (model::WindowStats{7, 4, 9, 10}));

  auto fine = Series(1500 * kS / 1000);  // 1.5 s: every other bin straddles an edge
  double fine_total = 0;
  bool split = false;
  for (const auto& w : fine.rows) {
    fine_total += w.packets;
    split = split || !w.volume_exact;
  }
  EXPECT_TRUE(split);
  EXPECT_NEAR(fine_total, 2 * Packets(0, 120), 1e-6) << "split bins keep every packet";
}

TEST_F(WindowSeriesTest, ShardsAreSummedAsBoundsAndRangesAndErrorsAreClear) {
  Put("tap0#1", Chunk120(kT0, {1, 1, 1, 1}, {0, 0, 0, 0}, {1, 1, 1, 1}));
  Put("tap9", Chunk120(kT0, {9, 9, 9, 9}, {9, 9, 9, 9}, {9, 9, 9, 9}));
  auto s = Series(60 * kS);
  EXPECT_EQ(s.links, (std::vector<std::string>{"tap0", "tap0#1"}));
  EXPECT_FALSE(s.rows[0].distinct_exact);
  EXPECT_EQ(s.rows[0].distinct_hi, (model::WindowStats{4, 5, 6, 7}));
  EXPECT_TRUE(s.rows[1].distinct_exact) << "the shard had no flow in the second minute";
  EXPECT_DOUBLE_EQ(s.rows[0].packets, 2 * Packets(0, 60));

  ChunkQuery q;
  q.since_ns = kT0 + 130 * kS;  // inside the third minute: whole windows are read
  q.until_ns = kT0 + 170 * kS;
  auto part = Series(60 * kS, "tap0", q);
  ASSERT_EQ(part.rows.size(), 1u);
  EXPECT_EQ(part.rows[0].start_ns, kT0 + 120 * kS);
  EXPECT_EQ(part.rows[0].distinct_lo, (model::WindowStats{5, 1, 5, 5}));

  EXPECT_EQ(library::WindowSeriesOf(*lib_, "tap0", {}, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(library::WindowSeriesOf(*lib_, "nope", {}, 60 * kS).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace dgc

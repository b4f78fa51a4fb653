#include "common/trace/chunk.h"

#include <random>

#include "common/trace/chunk_format.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;  // a multiple of 60 s

struct Collected {
  std::vector<Chunk> chunks;
  std::vector<bool> amends;
};

ChunkSink Collect(Collected* c) {
  return [c](Chunk&& chunk, bool amend) {
    c->chunks.push_back(std::move(chunk));
    c->amends.push_back(amend);
    return absl::OkStatus();
  };
}

TEST(ChunkTest, WindowStartIsAlignedToTheEpochAlsoBefore1970) {
  EXPECT_EQ(WindowStart(125 * kSec, 60 * kSec), 120 * kSec);
  EXPECT_EQ(WindowStart(120 * kSec, 60 * kSec), 120 * kSec);
  EXPECT_EQ(WindowStart(-1, 60 * kSec), -60 * kSec);
}

TEST(ChunkTest, CutsPacketsIntoWindowsInTimeOrder) {
  Collected got;
  Chunker chunker({"tap0", 60 * kSec, 10 * kSec}, Collect(&got));
  for (int64_t t : {0LL, 5LL, 59LL, 61LL, 130LL, 200LL}) {
    ASSERT_TRUE(chunker.Add(MakePacket(kT0 + t * kSec, 1, 2, kProtoUdp, 1, 2, 100), 116).ok());
  }
  ASSERT_TRUE(chunker.Flush().ok());
  ASSERT_EQ(got.chunks.size(), 4u);
  EXPECT_EQ(got.chunks[0].start_ns, kT0);
  EXPECT_EQ(got.chunks[0].packets.size(), 3u);
  EXPECT_EQ(got.chunks[0].raw_bytes, 3u * 116);
  EXPECT_EQ(got.chunks[0].link, "tap0");
  EXPECT_EQ(got.chunks[1].start_ns, kT0 + 60 * kSec);
  EXPECT_EQ(got.chunks[3].start_ns, kT0 + 180 * kSec);
  for (bool a : got.amends) EXPECT_FALSE(a);
}

TEST(ChunkTest, OutOfOrderPacketsAreSortedAndLateOnesAmendTheirWindow) {
  Collected got;
  Chunker chunker({"l", 60 * kSec, 10 * kSec}, Collect(&got));
  auto add = [&](int64_t t) {
    ASSERT_TRUE(chunker.Add(MakePacket(kT0 + t, 1, 2, kProtoUdp, 1, 2, 100), 116).ok());
  };
  add(30 * kSec);
  add(20 * kSec);  // out of order, within the reorder slack
  add(65 * kSec);
  add(75 * kSec);  // closes window 0 (60 s + 10 s slack passed)
  add(10 * kSec);  // late: window 0 was already emitted
  ASSERT_TRUE(chunker.Flush().ok());
  ASSERT_EQ(got.chunks.size(), 3u);
  EXPECT_EQ(got.chunks[0].packets.size(), 2u);
  EXPECT_EQ(got.chunks[0].packets[0].ts_ns, kT0 + 20 * kSec);  // sorted
  EXPECT_FALSE(got.amends[0]);
  EXPECT_TRUE(got.amends[1]);  // the late packet, as an amendment of window 0
  EXPECT_EQ(got.chunks[1].start_ns, kT0);
  EXPECT_EQ(got.chunks[1].packets.size(), 1u);
  EXPECT_EQ(chunker.late_packets(), 1u);
  EXPECT_EQ(chunker.chunks_emitted(), 2u);
}

TEST(ChunkTest, MarksFlowsThatCrossAChunkEdge) {
  Collected got;
  Chunker chunker({"l", 60 * kSec, 0}, Collect(&got));
  ASSERT_TRUE(chunker.Add(MakePacket(kT0 + 50 * kSec, 1, 2, kProtoTcp, 1, 2, 100), 0).ok());
  ASSERT_TRUE(chunker.Add(MakePacket(kT0 + 55 * kSec, 7, 8, kProtoTcp, 1, 2, 100), 0).ok());
  ASSERT_TRUE(chunker.Add(MakePacket(kT0 + 70 * kSec, 1, 2, kProtoTcp, 1, 2, 100), 0).ok());   // continues
  ASSERT_TRUE(chunker.Add(MakePacket(kT0 + 200 * kSec, 7, 8, kProtoTcp, 1, 2, 100), 0).ok());  // too late
  ASSERT_TRUE(chunker.Flush().ok());
  ASSERT_EQ(got.chunks.size(), 3u);
  EXPECT_TRUE(got.chunks[1].packets[0].flags & kPktFlowContinued);
  EXPECT_FALSE(got.chunks[2].packets[0].flags & kPktFlowContinued);
  auto flows = BuildFlows(got.chunks[0].packets, got.chunks[0].end_ns());
  EXPECT_TRUE(flows[0].marks & kFlowOpenAtEnd);
  EXPECT_EQ(chunker.flows(), 4u);
}

Chunk RandomChunk(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  Chunk c;
  c.link = "link-\xc3\xa9";
  c.start_ns = kT0;
  c.duration_ns = 60 * kSec;
  c.raw_bytes = 12345;
  int64_t t = kT0;
  for (int i = 0; i < n; ++i) {
    t += rng() % 1000000;
    PacketRecord p = MakePacket(t, rng(), rng(), uint8_t(rng()), uint16_t(rng()), uint16_t(rng()),
                                rng() % 70000, uint8_t(rng()));
    if (rng() % 4 == 0) {
      p.version = 6;
      for (auto& b : p.src.bytes) b = uint8_t(rng());
      for (auto& b : p.dst.bytes) b = uint8_t(rng());
    }
    p.ttl = uint8_t(rng());
    p.tos = uint8_t(rng());
    p.ip_id = rng();
    p.frag = uint16_t(rng());
    p.flags = uint8_t(rng());
    c.packets.push_back(p);
  }
  return c;
}

TEST(ChunkFormatTest, RoundTripIsExact) {
  for (int n : {0, 1, 1000}) {
    Chunk c = RandomChunk(n, n + 1);
    auto d = DecodeChunk(EncodeChunk(c), "mem");
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->link, c.link);
    EXPECT_EQ(d->start_ns, c.start_ns);
    EXPECT_EQ(d->duration_ns, c.duration_ns);
    EXPECT_EQ(d->raw_bytes, c.raw_bytes);
    ASSERT_EQ(d->packets.size(), c.packets.size());
    for (size_t i = 0; i < c.packets.size(); ++i) {
      const auto& a = c.packets[i];
      const auto& b = d->packets[i];
      ASSERT_EQ(0, std::memcmp(&a.src, &b.src, sizeof a.src));
      ASSERT_TRUE(SameMetricFields(a, b)) << i;
      ASSERT_EQ(a.tos, b.tos);
      ASSERT_EQ(a.ip_id, b.ip_id);
      ASSERT_EQ(a.frag, b.frag);
      ASSERT_EQ(a.flags, b.flags);
    }
  }
}

TEST(ChunkFormatTest, FilesRoundTripAndAreNamedByWindow) {
  testing::TempDir dir;
  Chunk c = RandomChunk(10, 7);
  std::string path = dir.File(ChunkFileName(c));
  EXPECT_NE(path.find("chunk-000028333334-20231114T221400Z.dgcc"), std::string::npos) << path;
  ASSERT_TRUE(WriteChunkFile(path, c).ok());
  auto d = ReadChunkFile(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->packets.size(), 10u);
}

TEST(ChunkFormatTest, EveryCorruptionIsAnErrorNamingTheFile) {
  std::string good = EncodeChunk(RandomChunk(50, 3));
  for (size_t i = 0; i < good.size(); i += 3) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    auto d = DecodeChunk(bad, "x.dgcc");
    ASSERT_FALSE(d.ok()) << "byte " << i;
    EXPECT_NE(d.status().message().find("x.dgcc"), std::string::npos);
  }
  for (size_t n = 0; n < good.size(); n += 7) {
    EXPECT_FALSE(DecodeChunk(good.substr(0, n), "x.dgcc").ok()) << "truncated to " << n;
  }
}

TEST(ChunkFormatTest, NewerVersionAndForeignFilesAreRefusedClearly) {
  std::string good = EncodeChunk(RandomChunk(5, 9));
  std::string newer = good;
  newer[8] = 2;
  auto d = DecodeChunk(newer, "n.dgcc");
  EXPECT_TRUE(absl::IsUnimplemented(d.status())) << d.status();
  EXPECT_NE(d.status().message().find("version 2"), std::string::npos);
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeChunk("GIF89a....", "f").status()));
}

}  // namespace
}  // namespace dgc

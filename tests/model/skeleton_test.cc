#include "common/model/skeleton.h"

#include <xxhash.h>

#include <cstring>
#include <set>

#include "common/base/byte_io.h"
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

// A chunk of several minutes: two busy hosts talking to a few servers, and a
// sprinkle of one-packet flows from many others.
Chunk BusyChunk() {
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 300 * kSec;
  for (int i = 0; i < 3000; ++i) {
    int64_t t = kT0 + int64_t(i) * 100000000LL;
    uint32_t src = i % 10 == 0 ? 100 + i % 97 : 1 + i % 2;
    c.packets.push_back(testing::MakePacket(t, src, 50 + i % 3, i % 4 ? kProtoTcp : kProtoUdp,
                                            uint16_t(40000 + i % 5), uint16_t(i % 4 ? 443 : 53), 60 + i % 1400,
                                            i % 4 ? 0x10 : 0));
  }
  return c;
}

TEST(SkeletonTest, StructureWindowsCountDistinctHostsPairsAndTuples) {
  Chunk c = BusyChunk();
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec);
  s.AddStructure(c, kStructureWindowNs);
  ASSERT_EQ(s.windows.size(), 5u);
  // The first window: packets 0..599; sources 1, 2 and 100 + i % 97 for i % 10 == 0.
  std::set<uint32_t> srcs, dsts;
  for (int i = 0; i < 600; ++i) {
    srcs.insert(i % 10 == 0 ? 100 + i % 97 : 1 + i % 2);
    dsts.insert(50 + i % 3);
  }
  EXPECT_EQ(s.windows[0].srcs, srcs.size());
  EXPECT_EQ(s.windows[0].dsts, dsts.size());
  EXPECT_GE(s.windows[0].pairs, s.windows[0].srcs);
  EXPECT_GE(s.windows[0].five_tuples, s.windows[0].pairs);
  EXPECT_GE(s.total.srcs, s.windows[0].srcs);
}

TEST(SkeletonTest, ExactFlowsAreTheHeaviestAndRoundTripWithTheWindows) {
  Chunk c = BusyChunk();
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec);
  s.AddStructure(c, kStructureWindowNs);
  std::vector<ExactFlow> ranked = Skeleton::RankFlows(c);
  ASSERT_GT(ranked.size(), 10u);
  for (size_t i = 1; i < ranked.size(); ++i) {
    ASSERT_TRUE(ranked[i - 1].packets > ranked[i].packets ||
                (ranked[i - 1].packets == ranked[i].packets && ranked[i - 1].bytes >= ranked[i].bytes))
        << i;
  }
  uint64_t packets = 0;
  for (const auto& e : ranked) packets += e.packets;
  EXPECT_EQ(packets, c.packets.size());
  s.SetExactFlows(ranked, 8);
  ASSERT_EQ(s.exact.size(), 8u);
  for (size_t i = 1; i < s.exact.size(); ++i) EXPECT_LE(s.exact[i - 1].start_offset_us, s.exact[i].start_offset_us);
  const std::string bytes = s.Encode();
  const Skeleton::Sizes z = s.EncodedSizes();
  EXPECT_EQ(z.bins + z.structure + z.exact, bytes.size());
  EXPECT_GT(z.exact, 0u);
  auto d = Skeleton::Decode(bytes, "s");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->packets, s.packets);
  EXPECT_EQ(d->window_ns, s.window_ns);
  EXPECT_EQ(d->windows, s.windows);
  EXPECT_EQ(d->total, s.total);
  EXPECT_EQ(d->exact, s.exact);
}

// Rewrites `bytes` (a v2 skeleton) with its checksum recomputed after `edit`.
std::string Resum(std::string bytes) {
  uint64_t sum = XXH64(bytes.data() + 48, bytes.size() - 48, XXH64(bytes.data(), 40, 0));
  std::memcpy(&bytes[40], &sum, 8);
  return bytes;
}

TEST(SkeletonTest, FormatOneIsStillRead) {
  Chunk c = SomeChunk();
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec);
  std::string v2 = s.EncodeFormat(2);
  // Version 1: the same header, then the bins' zstd frame without a length.
  ByteReader r(absl::string_view(v2).substr(48));
  uint64_t len = 0;
  ASSERT_TRUE(r.Varint(&len));
  std::string v1 = v2.substr(0, 48) + v2.substr(48 + r.position(), len);
  v1[4] = 1;
  v1[5] = 0;
  auto d = Skeleton::Decode(Resum(v1), "old");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->packets, s.packets);
  EXPECT_TRUE(d->exact.empty());
  EXPECT_EQ(d->window_ns, 0);
}

TEST(SkeletonTest, FormatTwoIsStillReadAndFormatThreeIsSmallerForAQuietChunk) {
  // A quiet hour: a dozen packets in a few flows, its windows, two exact flows.
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 3600 * kSec;
  for (int i = 0; i < 12; ++i) {
    c.packets.push_back(testing::MakePacket(kT0 + int64_t(i) * 290 * kSec, 1 + i % 2, 9, kProtoUdp, 5353, 53, 90));
  }
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns));
  s.AddStructure(c, kStructureWindowNs);
  s.SetExactFlows(Skeleton::RankFlows(c), 2);
  const std::string v2 = s.EncodeFormat(2), v3 = s.Encode();
  EXPECT_EQ(LoadFixed<uint16_t>(v2.data() + 4), 2);
  EXPECT_EQ(LoadFixed<uint16_t>(v3.data() + 4), 3);
  for (const std::string* bytes : {&v2, &v3}) {
    auto d = Skeleton::Decode(*bytes, "quiet");
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->start_ns, s.start_ns);
    EXPECT_EQ(d->duration_ns, s.duration_ns);
    EXPECT_EQ(d->packets, s.packets);
    EXPECT_EQ(d->bytes, s.bytes);
    EXPECT_EQ(d->new_flows, s.new_flows);
    EXPECT_EQ(d->windows, s.windows);
    EXPECT_EQ(d->total, s.total);
    EXPECT_EQ(d->exact, s.exact);
  }
  const Skeleton::Sizes z = s.EncodedSizes();
  EXPECT_EQ(z.bins + z.structure + z.exact, v3.size());
  std::cerr << "quiet hour skeleton: format 2 " << v2.size() << " B, format 3 " << v3.size() << " B\n";
  EXPECT_LE(v3.size() + 20, v2.size());
  // Every flip and every truncation of format 3 is an error naming the chunk.
  for (size_t i = 0; i < v3.size(); ++i) {
    std::string bad = v3;
    bad[i] = static_cast<char>(bad[i] ^ 0x24);
    auto d = Skeleton::Decode(bad, "tap0 chunk 7");
    ASSERT_FALSE(d.ok()) << i;
    EXPECT_NE(d.status().message().find("tap0 chunk 7"), std::string::npos) << d.status();
  }
  for (size_t n = 0; n < v3.size(); ++n) EXPECT_FALSE(Skeleton::Decode(v3.substr(0, n), "q").ok()) << n;
}

TEST(SkeletonTest, ACorruptExactFlowSectionIsAClearErrorNamingTheChunk) {
  // Format 2's sections have their own frames: a flip past the checksum
  // reaches the section's own checks.
  Chunk c = BusyChunk();
  Skeleton s = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), kSec);
  s.SetExactFlows(Skeleton::RankFlows(c), 20);
  const std::string good = s.EncodeFormat(2);
  size_t exact_at = 48;
  for (int section = 0; section < 1; ++section) {  // skip the bins section: the exact one follows
    ByteReader r(absl::string_view(good).substr(exact_at));
    uint64_t len = 0;
    ASSERT_TRUE(r.Varint(&len));
    exact_at += r.position() + len;
  }
  int errors = 0;
  for (size_t i = exact_at; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x24);
    auto d = Skeleton::Decode(Resum(bad), "tap0 chunk 42");  // past the checksum: the section's own checks
    if (d.ok()) continue;  // a flip zstd and the ranges cannot see (an address byte, say)
    ++errors;
    EXPECT_NE(d.status().message().find("tap0 chunk 42"), std::string::npos) << d.status();
    EXPECT_NE(d.status().message().find("corrupt skeleton"), std::string::npos) << d.status();
  }
  EXPECT_GT(errors, 0);
  // And the checksum catches every flip before that.
  for (size_t i = exact_at; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x24);
    EXPECT_FALSE(Skeleton::Decode(bad, "tap0 chunk 42").ok()) << i;
  }
}

}  // namespace
}  // namespace dgc::model

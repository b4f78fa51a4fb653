// The segment format of regeneration on the cluster: every PacketRecord
// field and the order survive, and bad bytes or options are clear errors.
#include "common/wire/generate_segment.h"

#include "gtest/gtest.h"

namespace dgc::wire {
namespace {

PacketRecord Packet(int64_t ts, uint16_t sport) {
  PacketRecord p;
  p.ts_ns = ts;
  p.src = IpAddress::FromV4(0x0a000001);
  p.dst = IpAddress::FromV4(0x0a000002);
  p.ip_len = 1500;
  p.ip_id = 77;
  p.sport = sport;
  p.dport = 443;
  p.frag = 0x4000;
  p.proto = kProtoTcp;
  p.ttl = 63;
  p.tcp_flags = 0x12;
  p.tos = 0x10;
  p.flags = kPktFlowContinued;
  return p;
}

bool Same(const PacketRecord& a, const PacketRecord& b) {
  return SameMetricFields(a, b) && a.ip_id == b.ip_id && a.frag == b.frag && a.tos == b.tos && a.flags == b.flags;
}

TEST(GenerateSegmentTest, PacketsRoundTripWithEveryFieldAndTheirOrder) {
  const int64_t s = 60'000'000'000;
  std::vector<SegmentChunk> chunks = {{"tap0", 0, s, 1}, {"tap0", s, s, 2}, {"tap0", 2 * s, s, 3}};
  // Out of time order on purpose (generation's order is kept), one chunk empty.
  std::vector<std::vector<PacketRecord>> packets = {{Packet(5, 1000), Packet(3, 1001)}, {}, {Packet(2 * s + 1, 9)}};
  auto back = DecodeSegmentPackets(EncodeSegmentPackets(chunks, packets), 3);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  for (size_t c = 0; c < 3; ++c) {
    ASSERT_EQ((*back)[c].size(), packets[c].size()) << c;
    for (size_t i = 0; i < packets[c].size(); ++i) EXPECT_TRUE(Same((*back)[c][i], packets[c][i])) << c << " " << i;
  }
}

TEST(GenerateSegmentTest, DamagedOrMiscountedBytesAreClearErrors) {
  const int64_t s = 60'000'000'000;
  std::vector<SegmentChunk> chunks = {{"tap0", 0, s, 1}, {"tap0", s, s, 2}};
  const std::string bytes = EncodeSegmentPackets(chunks, {{Packet(5, 1)}, {Packet(s + 5, 2)}});
  auto wrong = DecodeSegmentPackets(bytes, 3);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("number of chunks"), std::string::npos) << wrong.status();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto cut = DecodeSegmentPackets(bytes.substr(0, n), 2);
    EXPECT_FALSE(cut.ok()) << "truncated to " << n;
    if (!cut.ok()) EXPECT_FALSE(cut.status().message().empty());
  }
  // A flipped byte anywhere: an error, or (in a varint that still frames
  // the same) the same packets; never a crash.
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string b = bytes;
    b[n] ^= 0x5a;
    auto d = DecodeSegmentPackets(b, 2);
    if (d.ok()) EXPECT_EQ(d->size(), 2u);
  }
  EXPECT_FALSE(DecodeSegmentPackets(bytes + "x", 2).ok());
}

TEST(GenerateSegmentTest, OptionsRoundTripAndBadOnesSayWhy) {
  SegmentOptions o;
  o.chunks = {{"tap0#1", -60'000'000'000, 60'000'000'000, ~uint64_t{0}}};
  o.min_p = 0.05;
  o.exact_templates = 3;
  o.tokenizer = nlohmann::json{{"max_packets", 12}};
  auto back = DecodeSegmentOptions(EncodeSegmentOptions(o));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->chunks.size(), 1u);
  EXPECT_EQ(back->chunks[0].link, "tap0#1");
  EXPECT_EQ(back->chunks[0].start_ns, -60'000'000'000);
  EXPECT_EQ(back->chunks[0].seed, ~uint64_t{0});
  EXPECT_EQ(back->min_p, 0.05);
  EXPECT_EQ(back->exact_templates, 3);
  auto older = DecodeSegmentOptions(R"({"chunks":[{"link":"a","start_ns":0,"duration_ns":1,"seed":1}]})");
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_EQ(older->exact_templates, 0) << "a segment without the field samples every exact flow, as before it";
  EXPECT_EQ(back->tokenizer, o.tokenizer);
  for (const char* bad : {"", "[]", "{}", R"({"chunks":[]})", R"({"chunks":[{"link":"a"}]})",
                          R"({"chunks":[{"link":"a","start_ns":0,"duration_ns":0,"seed":1}]})",
                          R"({"chunks":[{"link":"a","start_ns":0,"duration_ns":1,"seed":1}],"min_p":"x"})",
                          R"({"chunks":[{"link":"a","start_ns":0,"duration_ns":1,"seed":1}],"exact_templates":-1})",
                          R"({"chunks":[{"link":"a","start_ns":0,"duration_ns":1,"seed":1}],"exact_templates":0.5})"}) {
    auto d = DecodeSegmentOptions(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) EXPECT_NE(d.status().message().find("generate segment"), std::string::npos) << d.status();
  }
}

}  // namespace
}  // namespace dgc::wire

#include "common/model/tokenizer.h"

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;

FlowSample MakeFlow(uint8_t proto, uint16_t sport, uint16_t dport, std::vector<uint32_t> sizes,
                    std::vector<int64_t> gaps_ns, uint8_t ttl = 64) {
  FlowSample fs;
  int64_t t = kT0 + 7 * kSec;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0) t += gaps_ns[i - 1];
    PacketRecord p = MakePacket(t, 0x0a000001, 0xc0a80102, proto, sport, dport, sizes[i], uint8_t(0x10 | (i == 0 ? 0x02 : 0)));
    p.ttl = ttl;
    fs.packets.push_back(p);
  }
  fs.flow = BuildFlows(fs.packets)[0];
  return fs;
}

// Every token of `seq` is allowed by the grammar, and the grammar ends at EOS.
void ExpectGrammatical(const FlowTokenizer& tok, const std::vector<Token>& seq) {
  ASSERT_EQ(seq[0], kBos);
  GrammarState s = tok.Start();
  for (size_t i = 1; i < seq.size(); ++i) {
    ASSERT_FALSE(s.done) << "token after EOS at " << i;
    ASSERT_TRUE(tok.Allowed(s).Contains(seq[i])) << "position " << i << " token " << seq[i];
    tok.Advance(&s, seq[i]);
  }
  EXPECT_TRUE(s.done);
  EXPECT_LE(int32_t(seq.size()), tok.max_length());
  for (Token t : seq) EXPECT_LT(t, tok.vocab_size());
}

TEST(TokenizerTest, ShortTcpFlowRoundTripsEveryField) {
  FlowTokenizer tok;
  FlowSample fs = MakeFlow(kProtoTcp, 51234, 443, {60, 52, 1500}, {20000, 350});
  auto seq = tok.Encode(fs, kT0, 60 * kSec);
  ExpectGrammatical(tok, seq);
  std::mt19937_64 rng(1);
  auto d = tok.Decode(seq, rng);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, 4);
  EXPECT_EQ(d->proto, kProtoTcp);
  EXPECT_EQ(d->src.v4(), 0x0a000001u);
  EXPECT_EQ(d->dst.v4(), 0xc0a80102u);
  EXPECT_EQ(d->sport, 51234);  // uncommon: high and low byte tokens
  EXPECT_EQ(d->dport, 443);    // common: one token
  EXPECT_EQ(d->packets, 3u);
  ASSERT_EQ(d->head.size(), 3u);
  EXPECT_EQ(d->head[0].size, 60u);
  EXPECT_EQ(d->head[2].size, 1500u);  // sizes are exact
  EXPECT_EQ(d->head[0].flags, 0x12);
  EXPECT_EQ(d->head[1].flags, 0x10);
  // Gaps come back within their bucket: 20 per decade, about 12 % wide.
  EXPECT_NEAR(double(d->head[1].gap_ns), 20000.0, 20000.0 * 0.13);
  EXPECT_NEAR(double(d->head[2].gap_ns), 350.0, 350.0 * 0.13 + 1000);
  EXPECT_EQ(d->start_bucket, tok.StartToken(7 * kSec, 60 * kSec) - tok.StartToken(0, 60 * kSec));
  EXPECT_EQ(d->ttl, 64);
  EXPECT_FALSE(d->ttl_varies);
}

TEST(TokenizerTest, LongFlowKeepsCountDurationAndRestSummary) {
  FlowTokenizer tok({/*max_packets=*/4, /*start_buckets=*/64});
  std::vector<uint32_t> sizes(1000, 1500);
  sizes[0] = 60;
  sizes[500] = 52;
  std::vector<int64_t> gaps(999, 1000000);  // 1 ms apart: 999 ms in all
  FlowSample fs = MakeFlow(kProtoTcp, 443, 50000, sizes, gaps);
  auto seq = tok.Encode(fs, kT0, 60 * kSec);
  ExpectGrammatical(tok, seq);
  std::mt19937_64 rng(2);
  auto d = tok.Decode(seq, rng);
  ASSERT_TRUE(d.ok()) << d.status();
  auto [lo, hi] = FlowTokenizer::PacketCountRange(FlowTokenizer::PacketCountBucket(1000));
  EXPECT_LE(lo, 1000u);
  EXPECT_GT(hi, 1000u);
  EXPECT_GE(d->packets, lo);
  EXPECT_LT(d->packets, hi);
  EXPECT_NEAR(double(d->duration_ns), 999e6, 999e6 * 0.13);
  EXPECT_EQ(d->head.size(), 4u);
  EXPECT_NEAR(double(d->rest_mean_size), (1500.0 * 995 + 52) / 996, 1.0);
  auto packets = tok.Expand(*d, kT0, rng);
  ASSERT_EQ(packets.size(), d->packets);
  uint64_t bytes = 0;
  for (size_t i = 1; i < packets.size(); ++i) EXPECT_LE(packets[i - 1].ts_ns, packets[i].ts_ns);
  for (const auto& p : packets) bytes += p.ip_len;
  // The rest keeps the summary's mean size.
  double rest_mean = double(bytes - 60 - 3 * 1500) / double(packets.size() - 4);
  EXPECT_NEAR(rest_mean, d->rest_mean_size, 15.0);
  EXPECT_EQ(packets.back().ts_ns - packets.front().ts_ns, d->duration_ns);
}

TEST(TokenizerTest, UdpIcmpIpv6AndVaryingTtl) {
  FlowTokenizer tok;
  FlowSample udp = MakeFlow(kProtoUdp, 5353, 5353, {120, 130}, {1000000}, 255);
  udp.packets[1].ttl = 254;
  udp.flow = BuildFlows(udp.packets)[0];
  auto seq = tok.Encode(udp, kT0, 60 * kSec);
  ExpectGrammatical(tok, seq);
  std::mt19937_64 rng(3);
  auto d = tok.Decode(seq, rng);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->ttl_varies);
  EXPECT_EQ(d->head[1].ttl, 254);
  EXPECT_EQ(d->head[0].flags, 0);  // no flags outside TCP

  FlowSample icmp6 = MakeFlow(kProtoIcmpV6, 0, 0, {64}, {});
  for (auto& p : icmp6.packets) {
    p.version = 6;
    p.src.bytes = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  }
  icmp6.flow = BuildFlows(icmp6.packets)[0];
  seq = tok.Encode(icmp6, kT0, 60 * kSec);
  ExpectGrammatical(tok, seq);
  d = tok.Decode(seq, rng);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->version, 6);
  EXPECT_EQ(d->src, icmp6.packets[0].src);
  EXPECT_EQ(d->sport, 0);
  EXPECT_EQ(d->packets, 1u);
  EXPECT_EQ(d->duration_ns, 0);
}

TEST(TokenizerTest, DetailKeyLeavesOutWhatMakesAFlowOneFlow) {
  FlowTokenizer tok;
  FlowKey a;
  a.version = 4;
  a.proto = kProtoTcp;
  a.src = IpAddress::FromV4(0x0a000001);
  a.dst = IpAddress::FromV4(0xc0a80102);
  a.sport = 40001;  // ephemeral: no token of its own
  a.dport = 443;
  const auto key = tok.DetailKey(a, 12, 3 * kSec, 64);
  FlowKey b = a;
  b.src = IpAddress::FromV4(0x0a000099);
  b.dst = IpAddress::FromV4(0xc0a80177);
  b.sport = 51234;
  EXPECT_EQ(tok.DetailKey(b, 12, 3 * kSec, 64), key) << "addresses and an ephemeral port do not count";
  b.dport = 80;
  EXPECT_NE(tok.DetailKey(b, 12, 3 * kSec, 64), key) << "a service port does";
  EXPECT_NE(tok.DetailKey(a, 13, 3 * kSec, 64), key) << "so do the packet count,";
  EXPECT_NE(tok.DetailKey(a, 12, 30 * kSec, 64), key) << "the duration";
  EXPECT_NE(tok.DetailKey(a, 12, 3 * kSec, 128), key) << "and the TTL";
  FlowKey u = a;
  u.proto = kProtoUdp;
  EXPECT_NE(tok.DetailKey(u, 12, 3 * kSec, 64), key);
}

TEST(TokenizerTest, BucketsCoverTheirRanges) {
  for (uint64_t n : {1ULL, 2ULL, 16ULL, 17ULL, 18ULL, 100ULL, 12345ULL, 99999999ULL}) {
    auto [lo, hi] = FlowTokenizer::PacketCountRange(FlowTokenizer::PacketCountBucket(n));
    EXPECT_LE(lo, n);
    EXPECT_GT(hi, n);
    EXPECT_LE(double(hi - lo), std::max(1.0, 0.2 * double(n) + 1)) << n;
  }
  for (int64_t ns : {0LL, 999LL, 1000LL, 1500LL, 123456789LL, 3600LL * kSec}) {
    auto [lo, hi] = FlowTokenizer::LogUsRange(FlowTokenizer::LogUsBucket(ns));
    EXPECT_LE(lo, ns / 1000.0 + 1e-9);
    EXPECT_GT(hi, ns / 1000.0);
  }
  for (uint32_t s : {0u, 40u, 1599u, 1600u, 9000u, 65535u}) {
    auto [lo, hi] = FlowTokenizer::SizeRange(FlowTokenizer::SizeBucket(s));
    EXPECT_LE(lo, s);
    EXPECT_GT(hi, s);
  }
}

TEST(TokenizerTest, DecodeRejectsWhatTheGrammarForbids) {
  FlowTokenizer tok;
  FlowSample fs = MakeFlow(kProtoUdp, 1000, 53, {80}, {});
  auto seq = tok.Encode(fs, kT0, 60 * kSec);
  std::mt19937_64 rng(4);
  auto truncated = seq;
  truncated.pop_back();
  EXPECT_FALSE(tok.Decode(truncated, rng).ok());
  auto wrong = seq;
  wrong[3] = kEos;
  EXPECT_FALSE(tok.Decode(wrong, rng).ok());
  EXPECT_FALSE(tok.Decode({}, rng).ok());
}

TEST(TokenizerTest, ChunkFlowsAllEncodeAndDecode) {
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 60 * kSec;
  for (int i = 0; i < 500; ++i) {
    c.packets.push_back(MakePacket(kT0 + i * 100000000LL, 0x0a000000 + i % 13, 0x0a0000ff,
                                   i % 3 ? kProtoTcp : kProtoUdp, uint16_t(40000 + i % 5), 80, 40 + i, 0x10));
  }
  FlowTokenizer tok;
  auto flows = FlowsOfChunk(c);
  size_t packets = 0;
  std::mt19937_64 rng(5);
  for (const auto& f : flows) {
    packets += f.packets.size();
    auto seq = tok.Encode(f, c.start_ns, c.duration_ns);
    ExpectGrammatical(tok, seq);
    ASSERT_TRUE(tok.Decode(seq, rng).ok());
  }
  EXPECT_EQ(packets, 500u);
}

}  // namespace
}  // namespace dgc::model

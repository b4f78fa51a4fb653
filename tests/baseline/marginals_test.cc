#include "common/baseline/marginals.h"

#include <limits>
#include <map>
#include <random>

#include "common/baseline/baseline.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;

// A few thousand packets over TCP, UDP, ICMP and IPv6 with varied fields.
std::vector<PacketRecord> Trace(size_t n = 5000) {
  std::mt19937_64 rng(11);
  std::vector<PacketRecord> v;
  int64_t t = 1600000000LL * 1000000000;
  const uint8_t protos[] = {kProtoTcp, kProtoTcp, kProtoUdp, kProtoIcmp};
  for (size_t i = 0; i < n; ++i) {
    t += int64_t(rng() % 3 == 0 ? 0 : rng() % 100000000);
    uint8_t proto = protos[rng() % 4];
    PacketRecord p = MakePacket(t, 0x0a000000 + rng() % 50, 0xc0a80000 + rng() % 20, proto,
                                uint16_t(rng() % 30), uint16_t(rng() % 2 ? 443 : 53),
                                uint32_t(60 + rng() % 1400), uint8_t(rng() % 32));
    p.ttl = uint8_t(rng() % 2 ? 64 : 128);
    p.tos = uint8_t(rng() % 5 == 0 ? 0xb8 : 0);
    if (i % 10 == 0) {
      p.version = 6;
      uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8};
      a[15] = uint8_t(rng() % 4);
      p.src = IpAddress::FromV6(a);
      a[15] = uint8_t(100 + rng() % 4);
      p.dst = IpAddress::FromV6(a);
      p.ip_len += 20;
    }
    v.push_back(p);
  }
  return v;
}

template <typename F>
std::map<uint64_t, uint64_t> Count(const std::vector<PacketRecord>& v, F field,
                                   bool (*keep)(const PacketRecord&) = nullptr) {
  std::map<uint64_t, uint64_t> m;
  for (const auto& p : v) {
    if (!keep || keep(p)) m[field(p)]++;
  }
  return m;
}

bool Ported(const PacketRecord& p) { return ProtoHasPorts(p.proto); }
bool Tcp(const PacketRecord& p) { return p.proto == kProtoTcp; }

TEST(MarginalsTest, GapBinsFollowTheirDefinition) {
  EXPECT_EQ(GapBin(0), 0);
  EXPECT_EQ(GapBin(-5), 0);
  EXPECT_EQ(GapBin(1), 1);
  EXPECT_EQ(GapBin(10), 21);
  EXPECT_EQ(GapBin(1000000), 121);
  EXPECT_EQ(GapBin(std::numeric_limits<int64_t>::max()), kMaxGapBin);
  // Each range holds exactly the integers of its bin.
  for (int b = 1; b <= kMaxGapBin; ++b) {
    auto [lo, hi] = GapBinRange(b);
    if (lo > hi) continue;  // a bin no integer reaches
    EXPECT_EQ(GapBin(lo), b) << b;
    EXPECT_EQ(GapBin(hi), b) << b;
    if (lo > 1) {
      EXPECT_LT(GapBin(lo - 1), b) << b;
    }
    if (hi < std::numeric_limits<int64_t>::max()) {
      EXPECT_GT(GapBin(hi + 1), b) << b;
    }
  }
  for (int64_t g = 1; g < 20000; ++g) {
    auto [lo, hi] = GapBinRange(GapBin(g));
    ASSERT_TRUE(lo <= g && g <= hi) << g;
  }
}

TEST(MarginalsTest, EncodeDecodeRoundTrips) {
  Marginals m = BuildMarginals(Trace());
  auto d = DecodeMarginals(EncodeMarginals(m));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->packets, m.packets);
  EXPECT_EQ(d->first_ts_ns, m.first_ts_ns);
  EXPECT_EQ(d->gap_bins, m.gap_bins);
  EXPECT_EQ(d->sizes, m.sizes);
  EXPECT_EQ(d->versions, m.versions);
  EXPECT_EQ(d->protos, m.protos);
  EXPECT_EQ(d->ttls, m.ttls);
  EXPECT_EQ(d->tos, m.tos);
  EXPECT_EQ(d->sports, m.sports);
  EXPECT_EQ(d->dports, m.dports);
  EXPECT_EQ(d->tcp_flags, m.tcp_flags);
  for (int f = 0; f < 2; ++f) {
    EXPECT_EQ(d->src[f], m.src[f]);
    EXPECT_EQ(d->dst[f], m.dst[f]);
  }
  EXPECT_EQ(m.versions, (Histogram{{4, 4500}, {6, 500}}));
}

TEST(MarginalsTest, DrawnTraceHasExactlyTheKeptMarginals) {
  auto in = Trace();
  auto r = RunBaseline(BaselineMethod::kMarginals, in);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& out = r->packets;
  ASSERT_EQ(out.size(), in.size());
  EXPECT_EQ(out.front().ts_ns, in.front().ts_ns);
  auto size = [](const PacketRecord& p) -> uint64_t { return p.ip_len; };
  EXPECT_EQ(Count(out, size), Count(in, size));
  EXPECT_EQ(Count(out, [](const PacketRecord& p) -> uint64_t { return p.proto; }),
            Count(in, [](const PacketRecord& p) -> uint64_t { return p.proto; }));
  EXPECT_EQ(Count(out, [](const PacketRecord& p) -> uint64_t { return p.ttl; }),
            Count(in, [](const PacketRecord& p) -> uint64_t { return p.ttl; }));
  EXPECT_EQ(Count(out, [](const PacketRecord& p) -> uint64_t { return p.tos; }),
            Count(in, [](const PacketRecord& p) -> uint64_t { return p.tos; }));
  EXPECT_EQ(Count(out, [](const PacketRecord& p) -> uint64_t { return p.version; }),
            Count(in, [](const PacketRecord& p) -> uint64_t { return p.version; }));
  auto sport = [](const PacketRecord& p) -> uint64_t { return p.sport; };
  EXPECT_EQ(Count(out, sport, Ported), Count(in, sport, Ported));
  auto dport = [](const PacketRecord& p) -> uint64_t { return p.dport; };
  EXPECT_EQ(Count(out, dport, Ported), Count(in, dport, Ported));
  auto flags = [](const PacketRecord& p) -> uint64_t { return p.tcp_flags; };
  EXPECT_EQ(Count(out, flags, Tcp), Count(in, flags, Tcp));
  // Gaps fall in the same bins, and so are close in total.
  std::map<int, int> gin, gout;
  for (size_t i = 1; i < in.size(); ++i) {
    gin[GapBin(in[i].ts_ns - in[i - 1].ts_ns)]++;
    gout[GapBin(out[i].ts_ns - out[i - 1].ts_ns)]++;
  }
  EXPECT_EQ(gin, gout);
  double span_in = double(in.back().ts_ns - in.front().ts_ns);
  double span_out = double(out.back().ts_ns - out.front().ts_ns);
  EXPECT_NEAR(span_out / span_in, 1.0, 0.05);
  // Addresses: per-address counts match, families never mix.
  std::map<IpAddress, int> sin, sout;
  for (const auto& p : in) sin[p.src]++;
  for (const auto& p : out) {
    sout[p.src]++;
    EXPECT_EQ(p.src.is_v4_mapped(), p.version == 4);
    EXPECT_EQ(p.dst.is_v4_mapped(), p.version == 4);
    if (!ProtoHasPorts(p.proto)) {
      EXPECT_EQ(p.sport + p.dport, 0);
    }
    if (p.proto != kProtoTcp) {
      EXPECT_EQ(p.tcp_flags, 0);
    }
  }
  EXPECT_EQ(sin, sout);
  // ...but the fields were drawn independently: the joint is not the input's.
  size_t same = 0;
  for (size_t i = 0; i < in.size(); ++i) same += SameMetricFields(in[i], out[i]);
  EXPECT_LT(same, in.size() / 100);
  auto packed = PackMarginals(BuildMarginals(in));
  ASSERT_TRUE(packed.ok());
  EXPECT_EQ(r->kept_bytes, packed->size());
  EXPECT_EQ(r->kept_records, BuildMarginals(in).entries());
}

TEST(MarginalsTest, SameSeedSameTraceOtherSeedOtherTrace) {
  auto in = Trace(2000);
  BaselineOptions o;
  o.seed = 5;
  auto a = RunBaseline(BaselineMethod::kMarginals, in, o);
  auto b = RunBaseline(BaselineMethod::kMarginals, in, o);
  o.seed = 6;
  auto c = RunBaseline(BaselineMethod::kMarginals, in, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_EQ(a->packets.size(), b->packets.size());
  size_t differ_b = 0, differ_c = 0;
  for (size_t i = 0; i < a->packets.size(); ++i) {
    differ_b += !SameMetricFields(a->packets[i], b->packets[i]);
    differ_c += !SameMetricFields(a->packets[i], c->packets[i]);
  }
  EXPECT_EQ(differ_b, 0u);
  EXPECT_GT(differ_c, a->packets.size() / 2);
  EXPECT_EQ(a->kept.bytes, c->kept.bytes);  // the seed changes the draw, not what is kept
}

TEST(MarginalsTest, SizesTooSmallForTheDrawnProtocolAreRaised) {
  // ICMP packets of 28 bytes and TCP packets of 1500: a TCP packet drawn
  // with 28 bytes would have no room for its header.
  std::vector<PacketRecord> in;
  for (int i = 0; i < 200; ++i) {
    in.push_back(MakePacket(i * 1000, 1, 2, i % 2 ? kProtoTcp : kProtoIcmp, 1, 2,
                            i % 2 ? 1500 : 28));
  }
  auto out = DrawFromMarginals(BuildMarginals(in), 1);
  ASSERT_TRUE(out.ok());
  for (const auto& p : *out) EXPECT_GE(p.ip_len, MinPacketSize(p.version, p.proto));
  EXPECT_EQ(MinPacketSize(4, kProtoTcp), 40u);
  EXPECT_EQ(MinPacketSize(6, kProtoUdp), 48u);
  EXPECT_EQ(MinPacketSize(4, 47), 20u);
}

TEST(MarginalsTest, InconsistentOrTruncatedBlobsAreRejected) {
  std::string raw = EncodeMarginals(BuildMarginals(Trace(300)));
  for (size_t n = 0; n < raw.size(); ++n) {
    EXPECT_FALSE(DecodeMarginals(raw.substr(0, n)).ok()) << "cut at " << n;
  }
  std::mt19937 rng(9);
  for (int i = 0; i < 3000; ++i) {
    std::string bad = raw;
    bad[5 + rng() % (bad.size() - 5)] ^= static_cast<char>(1 + rng() % 255);
    auto m = DecodeMarginals(bad);
    if (m.ok()) {  // a flip that keeps it consistent must still draw safely
      auto out = DrawFromMarginals(*m, 1, 100000);
      if (out.ok()) {
        EXPECT_EQ(out->size(), m->packets);
      }
    }
  }
  Marginals m = BuildMarginals(Trace(300));
  m.packets += 1;  // totals no longer agree
  EXPECT_FALSE(DecodeMarginals(EncodeMarginals(m)).ok());
  EXPECT_FALSE(DrawFromMarginals(m, 1).ok());
  Marginals big;
  big.packets = uint64_t{1} << 40;
  EXPECT_EQ(DrawFromMarginals(big, 1).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(MarginalsTest, EmptyTrace) {
  auto r = RunBaseline(BaselineMethod::kMarginals, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->packets.empty());
}

}  // namespace
}  // namespace dgc::baseline

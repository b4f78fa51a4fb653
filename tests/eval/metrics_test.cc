// Every metric of METRICS.md on small hand-made traces whose answers are
// worked out in the comments.
#include "common/eval/metrics.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::eval {
namespace {

using ::dgc::testing::MakePacket;

constexpr int64_t kUs = 1000;
constexpr int64_t kMs = 1000 * kUs;
constexpr int64_t kS = 1000 * kMs;

constexpr uint32_t Ip(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}
const uint32_t kA = Ip(10, 0, 0, 1), kB = Ip(10, 0, 0, 2), kC = Ip(10, 0, 0, 3),
               kD = Ip(10, 0, 0, 4), kE = Ip(10, 0, 0, 5);

// Three flows over 9 s, every packet 100 bytes, TTL 64:
//   A: kA -> kB TCP 40000 -> 80, PSH|ACK, at 0, 1, ..., 9 s (10 packets)
//   B: kC -> kB UDP 5353 -> 53, at 0.5, 3.5, 6.5 s (3 packets)
//   C: kB -> kA TCP 80 -> 40000, ACK, at 0.25, 4.25, 8.25 s (3 packets)
std::vector<PacketRecord> BasePackets() {
  std::vector<PacketRecord> v;
  for (int i = 0; i < 10; ++i)
    v.push_back(MakePacket(i * kS, kA, kB, kProtoTcp, 40000, 80, 100, 0x18));
  for (int i = 0; i < 3; ++i) {
    v.push_back(MakePacket(500 * kMs + i * 3 * kS, kC, kB, kProtoUdp, 5353, 53, 100));
    v.push_back(MakePacket(250 * kMs + i * 4 * kS, kB, kA, kProtoTcp, 80, 40000, 100, 0x10));
  }
  return v;
}

bool IsFlowB(const PacketRecord& p) { return p.src == IpAddress::FromV4(kC); }
bool IsFlowC(const PacketRecord& p) { return p.src == IpAddress::FromV4(kB); }

// Expects every metric to be 0 except those in `nonzero`, which must be > 0.
// Only tcp_flags may be n/a (in traces without TCP).
void ExpectOnlyNonZero(const Scores& s, std::vector<int> nonzero) {
  for (int i = 0; i < kNumMetrics; ++i) {
    if (i == kTcpFlags && !s.metrics[i].jsd) continue;
    ASSERT_TRUE(s.metrics[i].jsd.has_value()) << Info(i).name;
    bool expect = std::find(nonzero.begin(), nonzero.end(), i) != nonzero.end();
    if (expect) {
      EXPECT_GT(*s.metrics[i].jsd, 0) << Info(i).name;
    } else {
      EXPECT_NEAR(*s.metrics[i].jsd, 0, 1e-12) << Info(i).name;
    }
  }
}

TEST(WindowTest, IsOneSecondForLongTracesAndAHundredthOfTheSpanOtherwise) {
  EXPECT_DOUBLE_EQ(WindowFor(10 * kS).seconds(), 0.1);
  EXPECT_EQ(WindowFor(10 * kS).Count(10 * kS), 100);
  EXPECT_EQ(WindowFor(10 * kS).Index(10 * kS - 1), 99);
  EXPECT_DOUBLE_EQ(WindowFor(100 * kS).seconds(), 1);
  EXPECT_DOUBLE_EQ(WindowFor(3600 * kS).seconds(), 1);
  EXPECT_DOUBLE_EQ(WindowFor(0).seconds(), 1);  // one packet: no time scale at all
  EXPECT_EQ(WindowFor(0).Count(0), 1);
  WindowSize w = WindowFor(250 * kS);
  EXPECT_EQ(w.Count(250 * kS + 500 * kMs), 251);
  EXPECT_EQ(w.Times(10).Count(250 * kS), 25);
  EXPECT_EQ(w.Index(2 * kS - 1), 1);
  EXPECT_EQ(w.Index(2 * kS), 2);
  // W = 7 ns / 100 stays exact: no rounding of the window edges.
  WindowSize tiny = WindowFor(7);
  EXPECT_EQ(tiny.Count(7), 100);
  EXPECT_EQ(tiny.Index(7), 100);  // the last packet; callers clamp it into window 99
}

TEST(EvaluateTest, IdenticalTracesScoreZeroEverywhere) {
  Trace t = MakeTrace(BasePackets(), "base");
  EvalReport r = Evaluate(t, t);
  EXPECT_EQ(r.scores.scored, 17);
  ExpectOnlyNonZero(r.scores, {});
  EXPECT_DOUBLE_EQ(*r.scores.mean, 0);
  EXPECT_DOUBLE_EQ(*r.scores.worst, 0);
  for (const UseCase* u : {&r.scores.w, &r.scores.w10}) {
    for (const ErrorStats* e : {&u->packets, &u->bytes, &u->src, &u->dst, &u->pairs, &u->tuples}) {
      EXPECT_EQ(e->median, 0);
      EXPECT_EQ(e->p95, 0);
    }
  }
  EXPECT_EQ(r.scores.total_packets, 0);
  EXPECT_EQ(r.scores.total_bytes, 0);
  EXPECT_EQ(r.scores.total_flows, 0);
  ASSERT_TRUE(r.replay.rate.has_value());
  EXPECT_DOUBLE_EQ(*r.replay.rate, 1);
  EXPECT_EQ(r.real.flows, 3u);
  EXPECT_EQ(r.real.ip_packets, 16u);
  EXPECT_EQ(r.real.bytes, 1600u);
  EXPECT_EQ(r.real.distinct_src, 3u);
  EXPECT_EQ(r.real.distinct_dst, 2u);
  EXPECT_EQ(r.real.span_ns, 9 * kS);
  // 9 s span: W = 90 ms, 100 windows, 10 W = 900 ms, 10 windows.
  EXPECT_DOUBLE_EQ(r.window.seconds(), 0.09);
  EXPECT_EQ(r.scores.w.windows, 100);
  EXPECT_EQ(r.scores.w10.windows, 10);
  EXPECT_EQ(r.scores.metrics[kThroughput].real_values, 100u);  // empty windows count
}

TEST(EvaluateTest, EmptySyntheticTraceScoresOneEverywhere) {
  Trace real = MakeTrace(BasePackets());
  EvalReport r = Evaluate(real, MakeTrace({}));
  EXPECT_EQ(r.scores.scored, 17);
  for (int i = 0; i < kNumMetrics; ++i)
    EXPECT_DOUBLE_EQ(*r.scores.metrics[i].jsd, 1) << Info(i).name;
  EXPECT_DOUBLE_EQ(*r.scores.mean, 1);
  EXPECT_DOUBLE_EQ(r.scores.total_packets, 1);
  EXPECT_DOUBLE_EQ(r.scores.total_flows, 1);
  EXPECT_EQ(r.replay.synth_flows, 0u);
  EXPECT_FALSE(r.replay.rate.has_value());
}

TEST(EvaluateTest, EmptyRealTraceLeavesEveryMetricNotApplicable) {
  EvalReport r = Evaluate(MakeTrace({}), MakeTrace(BasePackets()));
  EXPECT_EQ(r.scores.scored, 0);
  EXPECT_FALSE(r.scores.mean.has_value());
  EXPECT_FALSE(r.scores.worst.has_value());
  EXPECT_EQ(r.scores.worst_metric, -1);
}

TEST(EvaluateTest, TracesDifferingOnlyInSizesDifferOnlyInSizeAndByteMetrics) {
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (p.proto == kProtoTcp && p.sport == 40000) p.ip_len = 1500;  // flow A
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kPktSize, kThroughput, kFlowBytes});
  // pkt_size: real {100: 16}, synthetic {100: 6, 1500: 10}:
  // p = (1, 0), q = (3/8, 5/8), m = (11/16, 5/16);
  // JSD = sqrt((log2(16/11) + 3/8 log2(6/11) + 5/8 log2(2)) / 2) = 0.64716.
  EXPECT_NEAR(*r.scores.metrics[kPktSize].jsd, 0.6471639908648155, 1e-12);
  // flow_bytes: flow A has 1000 bytes (bin 31) against 15000 (bin 42), B and C
  // keep 300 (bin 25): (1/3, 2/3, 0) against (0, 2/3, 1/3).
  EXPECT_NEAR(*r.scores.metrics[kFlowBytes].jsd, 0.5773502691896258, 1e-12);
  EXPECT_NEAR(r.scores.total_bytes, (6 * 100 + 10 * 1500 - 1600) / 1600.0, 1e-12);
  EXPECT_EQ(r.scores.total_packets, 0);
}

TEST(EvaluateTest, TtlChangeMovesOnlyTtl) {
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (IsFlowB(p)) p.ttl = 128;
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kTtl});
  // {64: 16} against {64: 13, 128: 3}.
  EXPECT_NEAR(*r.scores.metrics[kTtl].jsd, 0.3174245716078963, 1e-12);
}

TEST(EvaluateTest, PortChangeMovesOnlyThatPortMetric) {
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (IsFlowB(p)) p.sport = 5454;
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kSrcPort});
  // {40000: 10, 5353: 3, 80: 3} against {40000: 10, 5454: 3, 80: 3}.
  EXPECT_NEAR(*r.scores.metrics[kSrcPort].jsd, 0.4330127018922193, 1e-12);
  // Flow B's 5-tuple no longer occurs in the real trace.
  EXPECT_NEAR(*r.replay.rate, 2.0 / 3.0, 1e-12);

  synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (IsFlowB(p)) p.dport = 5353;
  }
  r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kDstPort});
}

TEST(EvaluateTest, ProtocolChangeMovesOnlyProto) {
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (IsFlowB(p)) p.proto = kProtoSctp;  // UDP -> SCTP keeps the ports
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kProto});
  // {6: 13, 17: 3} against {6: 13, 132: 3}: p = (13, 3, 0)/16, q = (13, 0, 3)/16.
  EXPECT_NEAR(*r.scores.metrics[kProto].jsd, 0.4330127018922193, 1e-12);
}

TEST(EvaluateTest, TcpFlagsCountOnlyTcpPackets) {
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    if (IsFlowC(p)) p.tcp_flags = 0x11;  // FIN|ACK instead of ACK
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {kTcpFlags});
  EXPECT_EQ(r.scores.metrics[kTcpFlags].real_values, 13u);  // the 3 UDP packets do not count
  // {0x18: 10, 0x10: 3} against {0x18: 10, 0x11: 3}.
  EXPECT_NEAR(*r.scores.metrics[kTcpFlags].jsd, 0.4803844614152614, 1e-12);
}

TEST(EvaluateTest, TcpFlagsIsNotApplicableWithoutTcpAndLeftOutOfTheMean) {
  std::vector<PacketRecord> real, synth;
  for (int i = 0; i < 4; ++i) {
    real.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1000, 53, 80));
    synth.push_back(MakePacket(i * kS, kA, kB, kProtoTcp, 1000, 53, 80, 0x02));
  }
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_FALSE(r.scores.metrics[kTcpFlags].jsd.has_value());
  EXPECT_EQ(r.scores.scored, 16);
  // Only proto differs (disjoint: 1), so the mean is 1/16, not 1/17.
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kProto].jsd, 1);
  EXPECT_DOUBLE_EQ(*r.scores.mean, 1.0 / 16);
  EXPECT_EQ(r.scores.worst_metric, kProto);
}

TEST(EvaluateTest, RankMetricsAndFanoutIgnoreWhichAddressesAreUsed) {
  // A bijective renaming of every address changes nothing the 17 metrics see.
  std::vector<PacketRecord> synth = BasePackets();
  for (PacketRecord& p : synth) {
    p.src = IpAddress::FromV4(p.src.v4() + Ip(182, 168, 0, 0));
    p.dst = IpAddress::FromV4(p.dst.v4() + Ip(182, 168, 0, 0));
  }
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  ExpectOnlyNonZero(r.scores, {});
  // ... but the synthetic trace no longer shares the real address space.
  EXPECT_FALSE(r.replay.rate.has_value());
  EXPECT_EQ(r.replay.address_overlap, 0);
}

TEST(EvaluateTest, RankComparesSortedPacketShares) {
  // Sources: real kA 3 packets, kB 1; synthetic kC 2, kD 2:
  // (3/4, 1/4) against (1/2, 1/2).
  std::vector<PacketRecord> real = {MakePacket(0, kA, kE, kProtoUdp, 1, 1, 60),
                                    MakePacket(1 * kS, kA, kE, kProtoUdp, 1, 1, 60),
                                    MakePacket(2 * kS, kA, kE, kProtoUdp, 1, 1, 60),
                                    MakePacket(3 * kS, kB, kE, kProtoUdp, 1, 1, 60)};
  std::vector<PacketRecord> synth = {MakePacket(0, kC, kE, kProtoUdp, 1, 1, 60),
                                     MakePacket(1 * kS, kC, kE, kProtoUdp, 1, 1, 60),
                                     MakePacket(2 * kS, kD, kE, kProtoUdp, 1, 1, 60),
                                     MakePacket(3 * kS, kD, kE, kProtoUdp, 1, 1, 60)};
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_NEAR(*r.scores.metrics[kSrcIpRank].jsd, 0.22089576884901735, 1e-12);
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kDstIpRank].jsd, 0);  // one destination on both sides
}

TEST(EvaluateTest, PacketGapsAreBinnedInMicroseconds) {
  // Real gaps 10, 10, 10 us (bin 11); synthetic 10, 10, 100 us (bins 11, 11, 21):
  // (1, 0) against (2/3, 1/3).
  std::vector<PacketRecord> real, synth;
  for (int64_t t : {0, 10, 20, 30})
    real.push_back(MakePacket(t * kUs, kA, kB, kProtoUdp, 1, 2, 60));
  for (int64_t t : {0, 10, 20, 120})
    synth.push_back(MakePacket(t * kUs, kA, kB, kProtoUdp, 1, 2, 60));
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_NEAR(*r.scores.metrics[kPktIat].jsd, 0.43689186833942056, 1e-12);
  EXPECT_EQ(r.scores.metrics[kPktIat].real_values, 3u);
  // Flow-level gap: mean 10 us (bin 11) against 40 us (bin 17): disjoint.
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kFlowIat].jsd, 1);
  // Duration 30 us (bin 15) against 120 us (bin 21).
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kFlowDuration].jsd, 1);
}

TEST(EvaluateTest, AGapOfMoreThanSixtySecondsStartsANewFlow) {
  auto trace = [](int64_t gap) {
    return MakeTrace(
        {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 60), MakePacket(gap, kA, kB, kProtoUdp, 1, 2, 60)});
  };
  EXPECT_EQ(Evaluate(trace(60 * kS), trace(60 * kS)).real.flows, 1u);
  EXPECT_EQ(Evaluate(trace(60 * kS + 1), trace(60 * kS)).real.flows, 2u);
  // One flow of 2 packets against two of 1: flow_size (bin 4) vs (bin 1).
  EvalReport r = Evaluate(trace(60 * kS), trace(60 * kS + 1));
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kFlowSize].jsd, 1);
  EXPECT_DOUBLE_EQ(r.scores.total_flows, 1);
  // flow_iat needs two packets: the synthetic side has no value at all.
  EXPECT_DOUBLE_EQ(*r.scores.metrics[kFlowIat].jsd, 1);
  EXPECT_EQ(r.scores.metrics[kFlowIat].synth_values, 0u);
}

TEST(EvaluateTest, FlowStartIsRelativeToTheRealSpanWithAnOverflowBin) {
  // Real span 100 s: flows start at 0 (bin 0) and 50 s (bin 50). The synthetic
  // flows start at 0 and 150 s: 1.5 real spans, the overflow bin 100.
  std::vector<PacketRecord> real = {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 60),
                                    MakePacket(50 * kS, kA, kB, kProtoUdp, 3, 4, 60),
                                    MakePacket(100 * kS, kA, kB, kProtoUdp, 3, 4, 60)};
  std::vector<PacketRecord> synth = {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 60),
                                     MakePacket(150 * kS, kA, kB, kProtoUdp, 3, 4, 60)};
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_NEAR(*r.scores.metrics[kFlowStart].jsd, 0.7071067811865476, 1e-12);
  // Windows start at each trace's own first packet: a shifted copy is identical.
  std::vector<PacketRecord> shifted = real;
  for (PacketRecord& p : shifted) p.ts_ns += 12345 * kS;
  r = Evaluate(MakeTrace(real), MakeTrace(shifted));
  ExpectOnlyNonZero(r.scores, {});
}

TEST(EvaluateTest, SourceFanoutCountsDistinctDestinations) {
  // Real: kA talks to kB, kC, kD (fanout 3, bin 5), kE to kB (1, bin 1).
  // Synthetic: both talk to kB only: (1/2, 1/2) against (1, 0).
  std::vector<PacketRecord> real = {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 60),
                                    MakePacket(1 * kS, kA, kC, kProtoUdp, 1, 2, 60),
                                    MakePacket(2 * kS, kA, kD, kProtoUdp, 1, 2, 60),
                                    MakePacket(3 * kS, kE, kB, kProtoUdp, 1, 2, 60)};
  std::vector<PacketRecord> synth = {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 60),
                                     MakePacket(1 * kS, kA, kB, kProtoUdp, 1, 2, 60),
                                     MakePacket(2 * kS, kA, kB, kProtoUdp, 1, 2, 60),
                                     MakePacket(3 * kS, kE, kB, kProtoUdp, 1, 2, 60)};
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_NEAR(*r.scores.metrics[kSrcFanout].jsd, 0.5579230452841438, 1e-12);
  EXPECT_EQ(r.scores.metrics[kSrcFanout].real_values, 2u);
}

TEST(EvaluateTest, WindowMetricsHistogramBytesAndPacketsPerWindow) {
  // Real: one 100-byte packet per second for 100 s (W = 1 s, 100 windows; the
  // last packet, at exactly 100 s, closes window 99, which holds 2).
  // Synthetic: the same with all packets in windows 50..99 removed but the
  // span kept by the last packet: 50 windows of 1, 49 empty, 1 of 1.
  std::vector<PacketRecord> real, synth;
  for (int i = 0; i <= 100; ++i) {
    real.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
    if (i < 50 || i == 100) synth.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
  }
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_EQ(r.scores.w.windows, 100);
  // pkt_rate: real {1 (bin 1): 99, 2 (bin 4): 1}; synthetic {0 (bin 0): 49, 1: 51}.
  // throughput: real {100 B (bin 21): 99, 200 B (bin 24): 1}; synthetic {bin 0: 49, bin 21: 51}.
  // Both are (99, 1, 0)/100 against (51, 0, 49)/100 over (shared, real-only, synth-only).
  EXPECT_NEAR(*r.scores.metrics[kPktRate].jsd, 0.5535214280136114, 1e-12);
  EXPECT_NEAR(*r.scores.metrics[kThroughput].jsd, 0.5535214280136114, 1e-12);
}

TEST(EvaluateTest, UseCaseFiguresAreMedianAndP95OfPerWindowRelativeErrors) {
  // Real: one packet a second for 100 s (W = 1 s, 100 windows). Synthetic: the
  // same plus one more packet in each of the first 10 windows.
  std::vector<PacketRecord> real, synth;
  for (int i = 0; i <= 100; ++i) real.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
  synth = real;
  for (int i = 0; i < 10; ++i) {
    synth.push_back(MakePacket(i * kS + 500 * kMs, kA, kB, kProtoUdp, 1, 2, 100));
  }
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  // Windows 0..9: |2 - 1| / 1 = 1, the other 90: 0. Median 0; p95 at position
  // 0.95 * 99 = 94.05 of the sorted errors, past the 90 zeros: 1.
  EXPECT_EQ(r.scores.w.packets.median, 0);
  EXPECT_DOUBLE_EQ(r.scores.w.packets.p95, 1);
  EXPECT_DOUBLE_EQ(r.scores.w.bytes.p95, 1);
  EXPECT_EQ(r.scores.w.src.p95, 0);  // still the one source per window
  EXPECT_EQ(r.scores.w.tuples.p95, 0);
  // 10 W = 10 s, 10 windows: window 0 has 10 real packets and 20 synthetic (1),
  // the rest 0. p95 at position 0.95 * 9 = 8.55: 0 + 0.55 * (1 - 0).
  EXPECT_EQ(r.scores.w10.windows, 10);
  EXPECT_EQ(r.scores.w10.packets.median, 0);
  EXPECT_NEAR(r.scores.w10.packets.p95, 0.55, 1e-12);
  EXPECT_NEAR(r.scores.total_packets, 10.0 / 101, 1e-12);
  EXPECT_EQ(r.scores.total_flows, 0);
}

TEST(EvaluateTest, UseCaseCountsWindowsBeyondTheShorterTraceAsEmpty) {
  // Real spans 100 s with one packet a second; the synthetic trace stops at 49 s.
  std::vector<PacketRecord> real, synth;
  for (int i = 0; i <= 100; ++i) {
    real.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
    if (i < 50) synth.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
  }
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_EQ(r.scores.w.windows, 100);
  // The synthetic trace has ceil(49 s / W) = 49 windows, the last closed on
  // the right: window 48 holds its packets at 48 s and 49 s (error 1). Windows
  // 0..47 match (0) and windows 49..99 are missing (1): 48 zeros, 52 ones.
  EXPECT_DOUBLE_EQ(r.scores.w.packets.median, 1);
  EXPECT_DOUBLE_EQ(r.scores.w.src.median, 1);  // window 48 matches here: 49 zeros, 51 ones
  // At 10 W: the synthetic windows 0..4 hold 10 packets like the real ones,
  // windows 5..9 are missing: 5 zeros and 5 ones.
  EXPECT_EQ(r.scores.w10.windows, 10);
  EXPECT_DOUBLE_EQ(r.scores.w10.packets.median, 0.5);
  EXPECT_DOUBLE_EQ(r.scores.w10.packets.p95, 1);
}

TEST(EvaluateTest, UseCaseIgnoresWindowsEmptyOnBothSides) {
  // Packets at 0 s and 100 s only: 98 of the 100 windows are empty on both
  // sides. The synthetic trace has one more packet in window 0.
  std::vector<PacketRecord> real = {MakePacket(0, kA, kB, kProtoUdp, 1, 2, 100),
                                    MakePacket(100 * kS, kA, kB, kProtoUdp, 1, 2, 100)};
  std::vector<PacketRecord> synth = real;
  synth.push_back(MakePacket(kS / 2, kA, kB, kProtoUdp, 1, 2, 100));
  EvalReport r = Evaluate(MakeTrace(real), MakeTrace(synth));
  EXPECT_EQ(r.scores.w.windows, 100);
  EXPECT_EQ(r.scores.w.active_windows, 2);
  // Errors (1, 0): median 0.5, p95 at position 0.95: 0.95.
  EXPECT_DOUBLE_EQ(r.scores.w.packets.median, 0.5);
  EXPECT_DOUBLE_EQ(r.scores.w.packets.p95, 0.95);
  // The empty windows still count in the window metrics (bin 0 on both sides).
  EXPECT_EQ(r.scores.metrics[kPktRate].real_values, 100u);
}

TEST(EvaluateTest, ReplayRateCountsSyntheticFlowsWithARealFiveTuple) {
  std::vector<PacketRecord> synth = BasePackets();
  synth.push_back(MakePacket(2 * kS, kA, kB, kProtoTcp, 40001, 80, 100, 0x02));
  EvalReport r = Evaluate(MakeTrace(BasePackets()), MakeTrace(synth));
  EXPECT_EQ(r.replay.synth_flows, 4u);
  EXPECT_EQ(r.replay.replayed_flows, 3u);
  EXPECT_DOUBLE_EQ(*r.replay.rate, 0.75);
  EXPECT_DOUBLE_EQ(r.replay.address_overlap, 1);
}

TEST(EvaluateTest, ScoresIpv6TracesLikeIpv4Ones) {
  auto v6 = [](int64_t ts, uint8_t last, uint16_t sport) {
    PacketRecord p = MakePacket(ts, 0, 0, kProtoUdp, sport, 53, 120);
    uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8};
    a[15] = last;
    p.version = 6;
    p.src = IpAddress::FromV6(a);
    a[15] = 0xff;
    p.dst = IpAddress::FromV6(a);
    return p;
  };
  std::vector<PacketRecord> t = {v6(0, 1, 1000), v6(kS, 2, 1001), v6(2 * kS, 1, 1000)};
  EvalReport r = Evaluate(MakeTrace(t), MakeTrace(t));
  EXPECT_EQ(r.scores.scored, 16);  // no TCP: tcp_flags is n/a
  EXPECT_DOUBLE_EQ(*r.scores.mean, 0);
  EXPECT_EQ(r.real.distinct_src, 2u);
  EXPECT_EQ(r.real.distinct_dst, 1u);
  EXPECT_EQ(r.real.flows, 2u);
  // The same traffic over IPv4 addresses shares nothing with it.
  std::vector<PacketRecord> v4 = t;
  for (PacketRecord& p : v4) {
    p.version = 4;
    p.src = IpAddress::FromV4(kA);
    p.dst = IpAddress::FromV4(kB);
  }
  EXPECT_FALSE(Evaluate(MakeTrace(t), MakeTrace(v4)).replay.rate.has_value());
}

// A trace of `flows` flows with varied sizes, ports and timing, deterministic.
std::vector<PacketRecord> VariedPackets(int flows, uint64_t seed) {
  std::vector<PacketRecord> v;
  uint64_t x = seed;
  auto next = [&x] {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(x >> 33);
  };
  for (int f = 0; f < flows; ++f) {
    uint32_t src = Ip(10, 0, next() % 8, next() % 16);
    uint32_t dst = Ip(192, 168, 0, next() % 32);
    bool tcp = next() % 3 != 0;
    uint16_t sport = static_cast<uint16_t>(1024 + next() % 60000);
    uint16_t dport = tcp ? 443 : 53;
    int64_t t = static_cast<int64_t>(next() % 200) * kS + next() % kS;
    int n = 1 + static_cast<int>(next() % 20);
    for (int i = 0; i < n; ++i) {
      v.push_back(MakePacket(t, src, dst, tcp ? kProtoTcp : kProtoUdp, sport, dport,
                             40 + next() % 1460, i == 0 ? 0x02 : 0x10));
      t += static_cast<int64_t>(next() % 3000) * kMs / 10;
    }
  }
  return v;
}

TEST(EvaluateTest, SortsTracesBuiltOutOfOrder) {
  Trace shuffled;
  shuffled.packets = BasePackets();  // flows appended one after another, not in time order
  std::reverse(shuffled.packets.begin(), shuffled.packets.end());
  EvalReport r = Evaluate(MakeTrace(BasePackets()), shuffled);
  ExpectOnlyNonZero(r.scores, {});
  EXPECT_EQ(r.synth.flows, 3u);
}

TEST(FloorTest, SplitsTheRealTraceByFlowAndScoresTheHalvesAgainstEachOther) {
  Trace real = MakeTrace(VariedPackets(400, 1));
  EvalOptions opt;
  opt.floor = true;
  EvalReport r = Evaluate(real, MakeTrace(VariedPackets(400, 2)), opt);
  ASSERT_TRUE(r.floor.has_value());
  EXPECT_EQ(r.floor_half_packets[0] + r.floor_half_packets[1], real.packets.size());
  EXPECT_GT(r.floor_half_packets[0], real.packets.size() / 4);
  EXPECT_GT(r.floor_half_packets[1], real.packets.size() / 4);
  EXPECT_EQ(r.floor->scored, 17);
  for (int i = 0; i < kNumMetrics; ++i) {
    ASSERT_TRUE(r.floor->metrics[i].jsd.has_value());
    EXPECT_GE(*r.floor->metrics[i].jsd, 0);
    EXPECT_LE(*r.floor->metrics[i].jsd, 1);
  }
  // Two halves of the same traffic are close, but not identical.
  EXPECT_GT(*r.floor->mean, 0);
  EXPECT_LT(*r.floor->mean, 0.3);
  // The split is a fixed hash: the same numbers every time, and the same as
  // the floor alone.
  EvalReport again = EvaluateFloor(real, opt);
  EXPECT_FALSE(again.has_synth);
  EXPECT_EQ(*again.floor->mean, *r.floor->mean);
  EXPECT_EQ(again.floor_half_packets[0], r.floor_half_packets[0]);
}

TEST(FloorTest, WholeTraceOfOneFlowCannotBeSplitAndScoresOne) {
  std::vector<PacketRecord> one;
  for (int i = 0; i < 10; ++i) one.push_back(MakePacket(i * kS, kA, kB, kProtoUdp, 1, 2, 100));
  EvalReport r = EvaluateFloor(MakeTrace(one));
  ASSERT_TRUE(r.floor.has_value());
  EXPECT_DOUBLE_EQ(*r.floor->mean, 1);
}

TEST(LoadTraceTest, ReadsIpPacketsSortedStablyByTimestamp) {
  ::dgc::testing::TempDir dir;
  std::string path = dir.File("unsorted.pcap");
  // Out of order, with two packets at the same instant told apart by port.
  ::dgc::testing::WritePcap(path,
                            {MakePacket(3 * kS, kA, kB, kProtoUdp, 3, 9, 60),
                             MakePacket(1 * kS, kA, kB, kProtoUdp, 1, 9, 60),
                             MakePacket(2 * kS, kA, kB, kProtoUdp, 2, 9, 60),
                             MakePacket(1 * kS, kA, kB, kProtoUdp, 4, 9, 60)},
                            OutputLink::kEthernet);
  StatusOr<Trace> t = LoadTrace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->packets.size(), 4u);
  EXPECT_EQ(t->packets[0].sport, 1);
  EXPECT_EQ(t->packets[1].sport, 4);
  EXPECT_EQ(t->packets[2].sport, 2);
  EXPECT_EQ(t->packets[3].sport, 3);
  EXPECT_EQ(t->stats.frames, 4u);
  EXPECT_EQ(t->link, "ethernet");
  EXPECT_EQ(t->name, path);
}

TEST(LoadTraceTest, FailsWithTheFileNameWhenMissingOrNotACapture) {
  StatusOr<Trace> t = LoadTrace("/nonexistent/dir/x.pcap");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("/nonexistent/dir/x.pcap"), std::string::npos);
  ::dgc::testing::TempDir dir;
  std::string path = dir.File("notes.txt");
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("this is not a capture, just some text long enough to have a header\n", f);
  std::fclose(f);
  t = LoadTrace(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("notes.txt"), std::string::npos);
}

}  // namespace
}  // namespace dgc::eval

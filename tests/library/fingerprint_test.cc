#include "library/fingerprint.h"

#include <algorithm>
#include <iostream>
#include <random>

#include "common/base/byte_io.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::library {
namespace {

constexpr int64_t kSec = 1000000000;
constexpr int64_t kChunkNs = 600 * kSec;  // 10-minute chunks

enum class Regime { kIot, kStreaming, kScan, kDnsStorm };

// Ten minutes of synthetic traffic. kIot: devices talking MQTT, DNS and NTP
// at a few packets a second; kStreaming: the same plus a video stream (443,
// full-size packets, 60/s); kScan: the IoT traffic plus a SYN scan of random
// ports; kDnsStorm: the IoT traffic plus a DNS retry storm (a device asking
// 150 times a second, a new source port each time). `seed` changes every
// draw, not the regime.
std::vector<PacketRecord> Traffic(Regime regime, uint32_t seed, int64_t start_ns) {
  std::mt19937 rng(seed);
  std::vector<PacketRecord> out;
  std::poisson_distribution<int> iot_rate(8);
  std::uniform_int_distribution<int> dev(2, 30);
  std::uniform_int_distribution<int> pick(0, 99);
  for (int s = 0; s < 600; ++s) {
    int64_t t0 = start_ns + s * kSec;
    int n = iot_rate(rng);
    for (int k = 0; k < n; ++k) {
      int64_t ts = t0 + std::uniform_int_distribution<int64_t>(0, kSec - 1)(rng);
      uint32_t src = 0x0a000000 | dev(rng);
      int r = pick(rng);
      if (r < 70) {
        out.push_back(testing::MakePacket(ts, src, 0x0a0000fe, kProtoTcp, 40000 + (src & 0xff), 1883,
                                          std::uniform_int_distribution<int>(60, 140)(rng), 0x18));
      } else if (r < 90) {
        out.push_back(testing::MakePacket(ts, src, 0x08080808, kProtoUdp, 50000 + k, 53,
                                          std::uniform_int_distribution<int>(60, 90)(rng)));
      } else {
        out.push_back(testing::MakePacket(ts, src, 0xc0000201, kProtoUdp, 123, 123, 76));
      }
    }
    if (regime == Regime::kStreaming) {
      for (int k = 0; k < 60; ++k) {
        int64_t ts = t0 + k * (kSec / 60);
        out.push_back(testing::MakePacket(ts, 0x97650001, 0x0a000040, kProtoTcp, 443, 51000,
                                          std::uniform_int_distribution<int>(1400, 1500)(rng), 0x10));
      }
    } else if (regime == Regime::kDnsStorm) {
      for (int k = 0; k < 150; ++k) {
        int64_t ts = t0 + k * (kSec / 150);
        out.push_back(testing::MakePacket(ts, 0x0a000007, 0x08080808, kProtoUdp,
                                          std::uniform_int_distribution<int>(1024, 65535)(rng), 53,
                                          std::uniform_int_distribution<int>(70, 80)(rng)));
      }
    } else if (regime == Regime::kScan) {
      for (int k = 0; k < 20; ++k) {
        int64_t ts = t0 + k * (kSec / 20);
        out.push_back(testing::MakePacket(ts, 0xcb007101, 0x0a000000 | dev(rng), kProtoTcp, 61000,
                                          std::uniform_int_distribution<int>(1, 65535)(rng), 44, 0x02));
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  return out;
}

Fingerprint Of(Regime regime, uint32_t seed, int64_t start_ns = 0) {
  auto packets = Traffic(regime, seed, start_ns);
  auto flows = BuildFlows(packets, start_ns + kChunkNs);
  return Fingerprint::Compute(packets, flows, start_ns, kChunkNs);
}

TEST(FingerprintTest, EncodesAndDecodes) {
  Fingerprint f = Of(Regime::kIot, 1);
  EXPECT_GT(f.packets, 3000u);
  auto d = Fingerprint::Decode(f.Encode(), "chunk");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->port, f.port);
  EXPECT_EQ(d->rate, f.rate);
  EXPECT_EQ(d->flows, f.flows);
  std::string bad = f.Encode();
  bad.pop_back();
  EXPECT_EQ(Fingerprint::Decode(bad, "tap0@x").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_LT(f.Encode().size(), 200u);
}

// Version 1 as earlier builds wrote it: every bin, after a bin count.
std::string EncodeVersionOne(const Fingerprint& f) {
  ByteWriter w;
  w.U8('F');
  w.U8(1);
  w.Varint(f.packets);
  w.Varint(f.flows);
  auto hist = [&w](const auto& h) {
    w.U8(static_cast<uint8_t>(h.size()));
    for (uint32_t v : h) w.Varint(v);
  };
  hist(f.proto);
  hist(f.port);
  hist(f.size);
  hist(f.rate);
  hist(f.flow);
  return w.Take();
}

// A model trained on two chunks has the fingerprint of both: the sum of
// their histograms, nearer to either than they are to each other.
TEST(FingerprintTest, AddSumsTwoChunks) {
  Fingerprint a = Of(Regime::kIot, 1), b = Of(Regime::kStreaming, 2);
  Fingerprint both = a;
  both.Add(b);
  EXPECT_EQ(both.packets, a.packets + b.packets);
  EXPECT_EQ(both.flows, a.flows + b.flows);
  for (int i = 0; i < Fingerprint::kPortBins; ++i) EXPECT_EQ(both.port[i], a.port[i] + b.port[i]);
  EXPECT_LT(ComputeDrift(both, a).score, ComputeDrift(a, b).score);
  EXPECT_LT(ComputeDrift(both, b).score, ComputeDrift(a, b).score);
}

TEST(FingerprintTest, VersionOneStillReadsAndAQuietChunksFingerprintIsSmall) {
  // A quiet hour: a few DNS and MQTT packets.
  std::vector<PacketRecord> packets;
  for (int i = 0; i < 40; ++i) {
    packets.push_back(testing::MakePacket(int64_t(i) * 90 * kSec, 0x0a000002, i % 3 ? 0x0a0000fe : 0x08080808,
                                          i % 3 ? kProtoTcp : kProtoUdp, 40002, i % 3 ? 1883 : 53, 80 + i % 7,
                                          0x18));
  }
  const int64_t hour = 3600 * kSec;
  Fingerprint f = Fingerprint::Compute(packets, BuildFlows(packets, hour), 0, hour);
  const std::string v1 = EncodeVersionOne(f), v2 = f.Encode();
  for (const std::string* bytes : {&v1, &v2}) {
    auto d = Fingerprint::Decode(*bytes, "quiet");
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->packets, f.packets);
    EXPECT_EQ(d->flows, f.flows);
    EXPECT_EQ(d->proto, f.proto);
    EXPECT_EQ(d->port, f.port);
    EXPECT_EQ(d->size, f.size);
    EXPECT_EQ(d->rate, f.rate);
    EXPECT_EQ(d->flow, f.flow);
  }
  std::cerr << "quiet hour fingerprint: version 1 " << v1.size() << " B, version 2 " << v2.size() << " B\n";
  EXPECT_LE(v2.size() * 2, v1.size());
  // A bit for a bin past the histogram, or a zero count under a set bit, is corruption.
  for (size_t n = 0; n < v2.size(); ++n) EXPECT_FALSE(Fingerprint::Decode(v2.substr(0, n), "q").ok()) << n;
  ByteWriter w;
  w.U8('F');
  w.U8(2);
  w.Varint(1);
  w.Varint(1);
  w.Varint(uint64_t{1} << 5);  // proto has 5 bins: bit 5 is past it
  w.Varint(1);
  EXPECT_EQ(Fingerprint::Decode(w.Take(), "tap0@x").status().code(), absl::StatusCode::kDataLoss);
}

TEST(FingerprintTest, DriftIsSmallForNoiseAndLargeForARealChange) {
  Fingerprint a = Of(Regime::kIot, 1);
  const double threshold = ParentSelector::Options().drift_threshold;
  for (uint32_t seed = 2; seed < 8; ++seed) {
    Drift noise = ComputeDrift(a, Of(Regime::kIot, seed, seed * kChunkNs));
    EXPECT_LT(noise.score, threshold / 2) << noise.Describe();
  }
  Drift stream = ComputeDrift(a, Of(Regime::kStreaming, 9));
  Drift scan = ComputeDrift(a, Of(Regime::kScan, 10));
  EXPECT_GT(stream.score, threshold) << stream.Describe();
  EXPECT_GT(scan.score, threshold) << scan.Describe();
  EXPECT_GT(stream.size, 0.3) << "full-size packets are a size change";
  EXPECT_GT(scan.port, 0.3) << "a port scan is a port change";
  EXPECT_EQ(ComputeDrift(a, a).score, 0);
  EXPECT_EQ(ComputeDrift(Fingerprint(), Fingerprint()).score, 0);
  EXPECT_LE(ComputeDrift(a, Fingerprint()).score, 1.0);
}

ParentCandidate Model(const std::string& id, const Fingerprint& f, uint32_t depth, bool full = false) {
  ParentCandidate c;
  c.model_id = id;
  c.fingerprint = f;
  c.depth = depth;
  c.full = full;
  return c;
}

TEST(ParentSelectorTest, ContinuesTheLatestModelOnNoise) {
  ParentSelector sel;
  auto d = sel.Decide(Of(Regime::kIot, 3), {Model("tap0-9", Of(Regime::kIot, 2), 5)},
                      Model("base", Of(Regime::kIot, 1), 0, true));
  EXPECT_EQ(d.kind, ParentDecision::Kind::kContinue) << d.reason;
  EXPECT_EQ(d.trigger, ParentDecision::Trigger::kWithinDrift);
  EXPECT_EQ(d.parent_id, "tap0-9");
  EXPECT_GE(d.drift, 0);
}

TEST(ParentSelectorTest, SwitchesBackToTheModelOfAnEarlierRegime) {
  // IoT, then a streaming evening, then IoT again: the chunk after the
  // streaming hours should start from the last IoT model, not the stream's.
  ParentSelector sel;
  std::vector<ParentCandidate> recent = {Model("tap0-20", Of(Regime::kStreaming, 20), 4),
                                         Model("tap0-19", Of(Regime::kStreaming, 19), 3),
                                         Model("tap0-15", Of(Regime::kIot, 15), 9)};
  auto d = sel.Decide(Of(Regime::kIot, 21), recent, Model("base", Of(Regime::kStreaming, 1), 0, true));
  EXPECT_EQ(d.kind, ParentDecision::Kind::kSwitch) << d.reason;
  EXPECT_EQ(d.trigger, ParentDecision::Trigger::kDrift);
  EXPECT_EQ(d.parent_id, "tap0-15");
  EXPECT_NE(d.reason.find("tap0-20"), std::string::npos) << d.reason;
}

TEST(ParentSelectorTest, RetrainsOnANewRegimeAndOnDeepChains) {
  ParentSelector sel;
  auto d = sel.Decide(Of(Regime::kStreaming, 5), {Model("tap0-4", Of(Regime::kIot, 4), 2)},
                      Model("base", Of(Regime::kIot, 1), 0, true));
  EXPECT_EQ(d.kind, ParentDecision::Kind::kRetrain) << d.reason;
  EXPECT_NE(d.reason.find("retrain threshold"), std::string::npos) << d.reason;

  ParentSelector::Options o;
  o.max_depth = 8;
  ParentSelector shallow(o);
  auto deep = shallow.Decide(Of(Regime::kIot, 5), {Model("tap0-4", Of(Regime::kIot, 4), 8)},
                             Model("base", Of(Regime::kIot, 1), 0, true));
  EXPECT_EQ(deep.kind, ParentDecision::Kind::kRetrain) << deep.reason;
  EXPECT_EQ(deep.trigger, ParentDecision::Trigger::kDepth);
  EXPECT_NE(deep.reason.find("max_depth"), std::string::npos) << deep.reason;

  auto first = sel.Decide(Of(Regime::kIot, 5), {}, std::nullopt);
  EXPECT_EQ(first.kind, ParentDecision::Kind::kRetrain);
  EXPECT_EQ(first.trigger, ParentDecision::Trigger::kNoModel);
}

TEST(ParentSelectorTest, SwitchesBackToTheEarlierFullModelAfterAShortEpisode) {
  // Normal IoT traffic on the base, a DNS retry storm that retrains, then
  // normal traffic again. After the retrain the storm model is both the
  // latest model and the root of the latest chain; the base is only among
  // the link's previous full models, and the return to normal must switch
  // back to it, not retrain a third time.
  ParentSelector sel;
  ParentCandidate base = Model("base-a1", Of(Regime::kIot, 1), 0, true);
  auto normal = sel.Decide(Of(Regime::kIot, 2, kChunkNs), {base}, base);
  EXPECT_EQ(normal.kind, ParentDecision::Kind::kContinue) << normal.reason;
  EXPECT_EQ(normal.parent_id, "base-a1");

  Fingerprint storm_fp = Of(Regime::kDnsStorm, 3, 2 * kChunkNs);
  auto storm = sel.Decide(storm_fp, {base}, base);
  EXPECT_EQ(storm.kind, ParentDecision::Kind::kRetrain) << storm.reason;
  EXPECT_EQ(storm.trigger, ParentDecision::Trigger::kDrift);
  EXPECT_GT(storm.drift, sel.options().retrain_threshold);

  ParentCandidate retrain = Model("tap0-3-retrain", storm_fp, 0, true);
  Fingerprint again = Of(Regime::kIot, 4, 3 * kChunkNs);
  auto back = sel.Decide(again, {retrain}, retrain, {base});
  EXPECT_EQ(back.kind, ParentDecision::Kind::kSwitch) << back.reason;
  EXPECT_EQ(back.parent_id, "base-a1");
  EXPECT_LT(back.drift, sel.options().drift_threshold);
  EXPECT_NE(back.reason.find("earlier full model"), std::string::npos) << back.reason;

  // The storm comes back later: the storm model is one of the earlier full
  // models then, and it is chosen again.
  ParentCandidate tuned = Model("tap0-5", Of(Regime::kIot, 5, 4 * kChunkNs), 1);
  auto storm2 = sel.Decide(Of(Regime::kDnsStorm, 6, 5 * kChunkNs), {tuned, base}, base, {retrain, base});
  EXPECT_EQ(storm2.kind, ParentDecision::Kind::kSwitch) << storm2.reason;
  EXPECT_EQ(storm2.parent_id, "tap0-3-retrain");

  // Without the earlier full models (the flaw this guards against), or with
  // them turned off, the return to normal retrains.
  EXPECT_EQ(sel.Decide(again, {retrain}, retrain).kind, ParentDecision::Kind::kRetrain);
  ParentSelector::Options off;
  off.previous_full_models = 0;
  EXPECT_EQ(ParentSelector(off).Decide(again, {retrain}, retrain, {base}).kind, ParentDecision::Kind::kRetrain);
}

TEST(ParentSelectorTest, QuietChunksKeepTheLatestModel) {
  Fingerprint quiet;
  quiet.packets = 10;
  quiet.port[14] = 10;
  ParentSelector sel;
  auto d = sel.Decide(quiet, {Model("tap0-4", Of(Regime::kIot, 4), 2)}, std::nullopt);
  EXPECT_EQ(d.kind, ParentDecision::Kind::kContinue) << d.reason;
}

}  // namespace
}  // namespace dgc::library

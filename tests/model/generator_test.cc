#include "common/model/generator.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

using testing::MakePacket;
constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;

TEST(GeneratorTest, StitchGivesContinuedFlowsTheTupleOfAnOpenOne) {
  std::vector<OpenFlow> open;
  // Chunk 1 (ends at 100 s): one flow idle since 1 s, one seen at 59 s.
  std::vector<PacketRecord> c1 = {MakePacket(kT0 + 1 * kSec, 1, 2, kProtoTcp, 40000, 443, 100),
                                  MakePacket(kT0 + 59 * kSec, 5, 6, kProtoTcp, 41000, 443, 100)};
  StitchFlows(&open, kT0 + 100 * kSec, &c1);
  ASSERT_EQ(open.size(), 1u);  // only the flow seen within 60 s of the end
  EXPECT_EQ(open[0].key, FlowKey::Of(c1[1]));
  // Chunk 2: the model says its first flow continues one; its sampled tuple differs.
  std::vector<PacketRecord> c2 = {MakePacket(kT0 + 101 * kSec, 9, 9, kProtoTcp, 50000, 443, 100),
                                  MakePacket(kT0 + 102 * kSec, 9, 9, kProtoTcp, 50000, 443, 100),
                                  MakePacket(kT0 + 103 * kSec, 7, 7, kProtoUdp, 53, 53, 80)};
  c2[0].flags |= kPktFlowContinued;
  c2[2].flags |= kPktFlowContinued;  // UDP: no open UDP flow, keeps its tuple
  StitchFlows(&open, kT0 + 180 * kSec, &c2);
  EXPECT_EQ(c2[0].src, c1[1].src);
  EXPECT_EQ(c2[0].sport, 41000);
  EXPECT_EQ(c2[1].sport, 41000);  // every packet of the flow follows
  EXPECT_EQ(c2[2].sport, 53);
}

TEST(GeneratorTest, MatchPacketCountsGivesEveryBinItsCount) {
  Skeleton sk;
  sk.start_ns = kT0;
  sk.duration_ns = 10 * kSec;
  sk.bin_ns = kSec;
  sk.new_flows.assign(10, 0);
  sk.bytes.assign(10, 0);
  sk.packets = {0, 5, 0, 0, 10, 0, 0, 0, 5, 0};
  std::vector<PacketRecord> ps;
  for (int i = 0; i < 20; ++i) ps.push_back(MakePacket(kT0 + i * kSec / 2, 1, 2, kProtoUdp, 1, 2, 60));
  MatchPacketCounts(sk, &ps);
  std::vector<int> per_bin(10, 0);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (i) EXPECT_LE(ps[i - 1].ts_ns, ps[i].ts_ns);
    per_bin[(ps[i].ts_ns - kT0) / kSec]++;
  }
  EXPECT_EQ(per_bin, (std::vector<int>{0, 5, 0, 0, 10, 0, 0, 0, 5, 0}));
}

Skeleton TenBins(std::vector<uint32_t> packets, int64_t bin_ns = kSec) {
  Skeleton sk;
  sk.start_ns = kT0;
  sk.bin_ns = bin_ns;
  sk.duration_ns = bin_ns * int64_t(packets.size());
  sk.new_flows.assign(packets.size(), 0);
  sk.bytes.assign(packets.size(), 0);
  sk.packets = std::move(packets);
  return sk;
}

// One flow: a head packet at `first`, `tail` tail packets, the last at `last`.
ExpandedFlow OneFlow(int64_t first, int64_t last, int tail) {
  ExpandedFlow f;
  f.head = 1;
  f.packets.push_back(MakePacket(first, 1, 2, kProtoTcp, 40000, 443, 1500));
  for (int i = 0; i < tail; ++i) f.packets.push_back(MakePacket(last, 1, 2, kProtoTcp, 40000, 443, 1500));
  return f;
}

TEST(GeneratorTest, PlaceTailPacketsFillsTheBinsTheSkeletonLacks) {
  // 20 packets: the head in bin 0, the last in bin 9; the skeleton wants 10 in bin 4.
  Skeleton sk = TenBins({1, 0, 0, 0, 10, 0, 0, 0, 0, 9});
  std::vector<ExpandedFlow> flows = {OneFlow(kT0 + kSec / 10, kT0 + 9 * kSec + kSec / 2, 19)};
  std::mt19937_64 rng(7);
  PlaceTailPackets(sk, &flows, rng);
  const auto& ps = flows[0].packets;
  ASSERT_EQ(ps.size(), 20u);
  EXPECT_EQ(ps.front().ts_ns, kT0 + kSec / 10);           // the head keeps its time
  EXPECT_EQ(ps.back().ts_ns, kT0 + 9 * kSec + kSec / 2);  // the flow keeps its end
  std::vector<int> per_bin(10, 0);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (i) EXPECT_LE(ps[i - 1].ts_ns, ps[i].ts_ns);
    per_bin[(ps[i].ts_ns - kT0) / kSec]++;
  }
  // One backbone packet may land anywhere in the span; the 17 others where packets lack.
  EXPECT_GE(per_bin[0] + per_bin[4] + per_bin[9], 19);
  EXPECT_GE(per_bin[4], 9);
  EXPECT_GE(per_bin[9], 8);
}

TEST(GeneratorTest, PlaceTailPacketsNeverLeavesAFlowIdleLongEnoughToEnd) {
  // A 300 s flow whose missing packets are all in its first bin: placing them
  // all there would leave a 300 s gap, which METRICS.md's 60 s rule splits.
  std::vector<uint32_t> want(30, 0);
  want[0] = 60;
  Skeleton sk = TenBins(want, 10 * kSec);
  std::vector<ExpandedFlow> flows = {OneFlow(kT0, kT0 + 299 * kSec, 59)};
  std::mt19937_64 rng(3);
  PlaceTailPackets(sk, &flows, rng);
  const auto& ps = flows[0].packets;
  int in_first = 0;
  for (size_t i = 1; i < ps.size(); ++i) {
    EXPECT_LE(ps[i].ts_ns - ps[i - 1].ts_ns, kFlowIdleTimeoutNs) << "packet " << i;
    in_first += ps[i].ts_ns < kT0 + 10 * kSec;
  }
  EXPECT_GE(in_first, 40);  // still, most go where the skeleton wants them
}

TEST(GeneratorTest, PlaceTailPacketsIsDeterministicForASeed) {
  Skeleton sk = TenBins({1, 3, 0, 5, 0, 2, 0, 4, 0, 1});
  auto run = [&](uint64_t seed) {
    std::vector<ExpandedFlow> flows = {OneFlow(kT0, kT0 + 9 * kSec, 15), OneFlow(kT0 + kSec, kT0 + 8 * kSec, 3)};
    std::mt19937_64 rng(seed);
    PlaceTailPackets(sk, &flows, rng);
    std::vector<int64_t> ts;
    for (const auto& f : flows) {
      for (const auto& p : f.packets) ts.push_back(p.ts_ns);
    }
    return ts;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

// A chunk of a few hosts in many flows, and a model that knows nothing (so
// whatever comes out right, the skeleton made right).
struct Untrained {
  FlowTokenizer tok;
  std::unique_ptr<FlowModel> model;
  Untrained() {
    NetworkConfig net;
    net.vocab_size = tok.vocab_size();
    net.max_length = tok.max_length();
    net.width = 16;
    net.depth = 1;
    net.heads = 2;
    auto m = FlowModel::Create(net, 3);
    EXPECT_TRUE(m.ok()) << m.status();
    model = std::move(m).value();
  }
};

Chunk FewHostsChunk() {
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 180 * kSec;
  for (int i = 0; i < 900; ++i) {
    const int flow = i % 30;  // 30 flows between 3 clients and 2 servers
    c.packets.push_back(MakePacket(kT0 + int64_t(i) * 200000000LL, 1 + flow % 3, 200 + flow % 2, kProtoTcp,
                                   uint16_t(40000 + flow), 443, 80 + (i % 7) * 100, 0x10));
  }
  return c;
}

// Every flow of `c` kept exactly comes out as its record says: tuple,
// packets, start (to the microsecond), OR of flags and bytes. FewHostsChunk
// has one flow per client port.
void ExpectEveryFlowAsRecorded(const Chunk& c, const std::vector<PacketRecord>& out) {
  std::vector<Flow> real = BuildFlows(c.packets, c.end_ns()), synth = BuildFlows(out, c.end_ns());
  ASSERT_EQ(synth.size(), real.size());
  auto by_port = [](std::vector<Flow> v) {
    std::sort(v.begin(), v.end(), [](const Flow& a, const Flow& b) { return a.key.sport < b.key.sport; });
    return v;
  };
  real = by_port(real);
  synth = by_port(synth);
  for (size_t i = 0; i < real.size(); ++i) {
    EXPECT_EQ(synth[i].key, real[i].key) << i;
    EXPECT_EQ(synth[i].packets, real[i].packets) << i;
    EXPECT_EQ(synth[i].first_ns / 1000, real[i].first_ns / 1000) << i;
    EXPECT_EQ(synth[i].tcp_flags, real[i].tcp_flags) << i << ": an exact flow has its record's OR of flags, no more";
    EXPECT_EQ(synth[i].bytes, real[i].bytes) << i << ": an exact flow totals its recorded bytes";
  }
}

TEST(GeneratorTest, ExactFlowsKeepTheirTupleStartPacketsAndFlags) {
  Untrained u;
  Chunk c = FewHostsChunk();
  Skeleton sk = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns));
  std::vector<ExactFlow> ranked = Skeleton::RankFlows(c);
  sk.SetExactFlows(ranked, ranked.size());  // every flow exact
  GenerateOptions o;
  o.threads = 1;
  GenerateStats st;
  auto out = GenerateChunk(*u.model, u.tok, sk, o, &st);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(st.exact_flows, ranked.size());
  EXPECT_EQ(out->size(), c.packets.size());
  ExpectEveryFlowAsRecorded(c, *out);
  // Without the fit, the untrained model's sizes miss the totals.
  o.fit_exact_bytes = false;
  auto unfit = GenerateChunk(*u.model, u.tok, sk, o, &st);
  ASSERT_TRUE(unfit.ok());
  uint64_t real_bytes = 0, unfit_bytes = 0;
  for (const auto& p : c.packets) real_bytes += p.ip_len;
  for (const auto& p : *unfit) unfit_bytes += p.ip_len;
  EXPECT_NE(unfit_bytes, real_bytes);
}

TEST(GeneratorTest, SteeredHostsFollowThePerWindowDistinctCounts) {
  Untrained u;
  Chunk c = FewHostsChunk();
  Skeleton sk = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns));
  sk.AddStructure(c, kStructureWindowNs);
  ASSERT_EQ(sk.windows.size(), 3u);
  GenerateOptions o;
  o.threads = 1;
  // IPv4 only: an untrained model draws IPv6 flows too, and those can only
  // take IPv6 hosts (there are none in the real windows).
  auto distinct = [&](const std::vector<PacketRecord>& ps, size_t w, bool src) {
    std::set<std::vector<uint8_t>> seen;
    for (const auto& p : ps) {
      if ((p.ts_ns - kT0) / kStructureWindowNs != int64_t(w) || p.version != 4) continue;
      const auto& a = src ? p.src.bytes : p.dst.bytes;
      seen.insert(std::vector<uint8_t>(a.begin(), a.end()));
    }
    return seen.size();
  };
  o.steer_hosts = false;
  auto free = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(free.ok()) << free.status();
  o.steer_hosts = true;
  auto steered = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(steered.ok()) << steered.status();
  // An untrained model draws a new host for nearly every flow; steered, no
  // window holds more hosts than the real one did.
  size_t free_hosts = 0, steered_hosts = 0;
  for (size_t w = 0; w < 3; ++w) {
    free_hosts += distinct(*free, w, true) + distinct(*free, w, false);
    steered_hosts += distinct(*steered, w, true) + distinct(*steered, w, false);
    EXPECT_LE(distinct(*steered, w, true), sk.windows[w].srcs) << w;
    EXPECT_LE(distinct(*steered, w, false), sk.windows[w].dsts) << w;
  }
  EXPECT_GT(free_hosts, 2 * steered_hosts);
}


TEST(GeneratorTest, SteeredTuplesReuseAConversationsPortsWithoutJoiningItsFlows) {
  // A heartbeat: one client, one server, one 5-tuple, a packet every 120 s:
  // 30 flows (each idle past the flow timeout before the next) of one
  // 5-tuple, as an IoT hub's keep-alives are. The model, trained a little
  // on TCP flows of random ports, draws TCP with new ports for each.
  Untrained u;
  {
    Chunk t;
    t.start_ns = kT0;
    t.duration_ns = 3600 * kSec;
    for (int i = 0; i < 200; ++i) {
      t.packets.push_back(MakePacket(kT0 + int64_t(i) * 18 * kSec, 1 + i % 5, 200, kProtoTcp,
                                     uint16_t(30000 + (i * 7919) % 30000), 8883, 60, 0x18));
    }
    std::vector<std::vector<Token>> seqs;
    for (const auto& f : FlowsOfChunk(t)) seqs.push_back(u.tok.Encode(f, t.start_ns, t.duration_ns));
    TrainOptions to;
    to.max_steps = 30;
    to.max_seconds = 30;
    to.batch_size = 64;
    to.learning_rate = 1e-2;
    ASSERT_TRUE(u.model->Train(seqs, to).ok());
  }
  Chunk c;
  c.start_ns = kT0;
  c.duration_ns = 3600 * kSec;
  for (int i = 0; i < 30; ++i) {
    c.packets.push_back(MakePacket(kT0 + int64_t(i) * 120 * kSec, 1, 200, kProtoTcp, 40001, 8883, 60, 0x18));
  }
  Skeleton sk = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns));
  sk.AddStructure(c, kStructureWindowNs);
  ASSERT_EQ(sk.total.five_tuples, 1u);
  GenerateOptions o;
  o.threads = 1;
  auto tuples = [](const std::vector<PacketRecord>& ps) {
    std::set<std::tuple<uint8_t, uint16_t, uint16_t>> seen;  // the hosts are steered already
    for (const auto& p : ps) {
      if (ProtoHasPorts(p.proto)) seen.insert({p.proto, p.sport, p.dport});
    }
    return seen.size();
  };
  o.steer_tuples = false;
  auto free = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(free.ok()) << free.status();
  o.steer_tuples = true;
  auto steered = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(steered.ok()) << steered.status();
  // An untrained model draws new ports for every flow; steered, the flows
  // between the same hosts with the same protocol take one 5-tuple.
  EXPECT_GE(tuples(*free), 20u);
  EXPECT_LE(3 * tuples(*steered), tuples(*free)) << "a drawn flow still going keeps its own 5-tuple";
  // And the flows stay flows: a reused 5-tuple is idle past the timeout.
  EXPECT_EQ(BuildFlows(*steered, c.end_ns()).size(), BuildFlows(*free, c.end_ns()).size());
}

// Every field of every packet, for comparing whole outputs.
std::vector<std::tuple<int64_t, IpAddress, IpAddress, uint32_t, uint32_t, uint16_t, uint16_t, uint16_t, uint8_t,
                       uint8_t, uint8_t, uint8_t, uint8_t, uint8_t>>
Fields(const std::vector<PacketRecord>& ps) {
  std::vector<std::tuple<int64_t, IpAddress, IpAddress, uint32_t, uint32_t, uint16_t, uint16_t, uint16_t, uint8_t,
                         uint8_t, uint8_t, uint8_t, uint8_t, uint8_t>>
      out;
  for (const auto& p : ps) {
    out.emplace_back(p.ts_ns, p.src, p.dst, p.ip_len, p.ip_id, p.sport, p.dport, p.frag, p.version, p.proto, p.ttl,
                     p.tcp_flags, p.tos, p.flags);
  }
  return out;
}

TEST(GeneratorTest, ChunksSampledTogetherGiveWhatEachGivesAlone) {
  // Three chunks of one model (quiet chunks share their parent's), one with
  // exact flows: sampled in one pass, each as GenerateChunk makes it with
  // its own seed, whatever the batch size or thread count.
  Untrained u;
  std::vector<Skeleton> sks;
  for (int k = 0; k < 3; ++k) {
    Chunk c = FewHostsChunk();
    c.start_ns += k * c.duration_ns;
    for (auto& p : c.packets) p.ts_ns += k * c.duration_ns;
    if (k == 1) c.packets.resize(300);  // fewer flows than the others
    sks.push_back(Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns)));
    sks.back().AddStructure(c, kStructureWindowNs);
    if (k == 2) {
      std::vector<ExactFlow> ranked = Skeleton::RankFlows(c);
      sks.back().SetExactFlows(ranked, 5);
    }
  }
  const std::vector<const Skeleton*> ptrs = {&sks[0], &sks[1], &sks[2]};
  const std::vector<uint64_t> seeds = {11, 12, 13};
  GenerateOptions o;
  o.threads = 1;
  std::vector<std::vector<PacketRecord>> alone;
  for (size_t k = 0; k < 3; ++k) {
    GenerateOptions ok = o;
    ok.seed = seeds[k];
    auto one = GenerateChunk(*u.model, u.tok, sks[k], ok);
    ASSERT_TRUE(one.ok()) << one.status();
    ASSERT_FALSE(one->empty());
    alone.push_back(std::move(*one));
  }
  EXPECT_NE(Fields(alone[0]), Fields(alone[2]));
  for (int32_t batch : {512, 7}) {
    for (int32_t threads : {1, 3}) {
      o.batch_size = batch;
      o.threads = threads;
      GenerateStats st;
      auto together = GenerateChunks(*u.model, u.tok, ptrs, seeds, o, &st);
      ASSERT_TRUE(together.ok()) << together.status();
      ASSERT_EQ(together->size(), 3u);
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(Fields((*together)[k]), Fields(alone[k]))
            << "chunk " << k << ", batch " << batch << ", " << threads << " threads";
      }
      EXPECT_EQ(st.packets, alone[0].size() + alone[1].size() + alone[2].size());
      EXPECT_EQ(st.exact_flows, 5u);
    }
  }
  EXPECT_FALSE(GenerateChunks(*u.model, u.tok, ptrs, {1, 2}, o).ok()) << "a seed per chunk";
}

TEST(GeneratorTest, ExactFlowsAlikeCopyTheirTemplatesPackets) {
  // 30 flows between 3 clients and a server's two addresses, all to 443 with
  // 30 packets over about the same time: one DetailKey or a few. With one
  // template per key the rest copy its packets (no decode steps) and are
  // then fit to their own records like any exact flow.
  Untrained u;
  Chunk c = FewHostsChunk();
  Skeleton sk = Skeleton::FromChunk(c, BuildFlows(c.packets, c.end_ns()), Skeleton::DefaultBinNs(c.duration_ns));
  std::vector<ExactFlow> ranked = Skeleton::RankFlows(c);
  sk.SetExactFlows(ranked, ranked.size());
  std::set<std::vector<Token>> keys;
  for (const auto& e : sk.exact) keys.insert(u.tok.DetailKey(e.key, e.packets, e.duration_us * 1000, e.ttl));
  ASSERT_LT(keys.size(), ranked.size() / 2) << "the fixture must have flows alike";
  GenerateOptions o;
  o.threads = 1;
  o.exact_templates = 1;
  GenerateStats st;
  auto out = GenerateChunk(*u.model, u.tok, sk, o, &st);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(st.exact_flows, ranked.size());
  EXPECT_EQ(st.exact_shared, ranked.size() - keys.size());
  // Every record still holds: tuple, packets, start, flags, bytes.
  ExpectEveryFlowAsRecorded(c, *out);
  // Unfit, a copy's head sizes are its template's (sizes under 1600 bytes
  // are exact tokens): flows of one key share one pattern. Sampled each,
  // the untrained model gives each its own.
  auto patterns = [&](const std::vector<PacketRecord>& pkts) {
    std::map<uint16_t, std::vector<uint32_t>> sizes;  // by client port: one flow each here
    for (const auto& p : pkts) {
      auto& v = sizes[p.sport];
      if (v.size() < 16) v.push_back(p.ip_len);
    }
    std::set<std::vector<uint32_t>> distinct;
    for (const auto& [k, v] : sizes) distinct.insert(v);
    return distinct.size();
  };
  o.fit_exact_bytes = false;
  auto copied = GenerateChunk(*u.model, u.tok, sk, o, &st);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(patterns(*copied), keys.size());
  o.exact_templates = 0;
  auto each = GenerateChunk(*u.model, u.tok, sk, o, &st);
  ASSERT_TRUE(each.ok()) << each.status();
  EXPECT_EQ(st.exact_shared, 0u);
  EXPECT_GT(patterns(*each), keys.size());
  // The copies are keyed like the draws: the same output for any thread
  // count and batch size.
  o.fit_exact_bytes = true;
  o.exact_templates = 2;
  o.batch_size = 512;
  auto one = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(one.ok());
  o.threads = 3;
  o.batch_size = 5;
  auto three = GenerateChunk(*u.model, u.tok, sk, o);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(Fields(*one), Fields(*three));
}

}  // namespace
}  // namespace dgc::model

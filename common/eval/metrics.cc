#include "common/eval/metrics.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/eval/distance.h"
#include "common/trace/flow.h"
#include "common/trace/parse.h"

namespace dgc::eval {
namespace {

constexpr MetricInfo kMetrics[kNumMetrics] = {
    {"pkt_size", "packet", "IP length, bytes", Binning::kExact},
    {"pkt_iat", "packet", "gap to the previous packet, us", Binning::kLog10x10},
    {"throughput", "window", "bytes per window", Binning::kLog10x10},
    {"pkt_rate", "window", "packets per window", Binning::kLog10x10},
    {"proto", "packet", "IP protocol", Binning::kExact},
    {"src_port", "packet", "source port", Binning::kExact},
    {"dst_port", "packet", "destination port", Binning::kExact},
    {"ttl", "packet", "TTL / hop limit", Binning::kExact},
    {"tcp_flags", "packet", "TCP flags (TCP only)", Binning::kExact},
    {"src_ip_rank", "packet", "packets per source, ranked", Binning::kRank},
    {"dst_ip_rank", "packet", "packets per destination, ranked", Binning::kRank},
    {"flow_size", "flow", "packets per flow", Binning::kLog10x10},
    {"flow_bytes", "flow", "bytes per flow", Binning::kLog10x10},
    {"flow_duration", "flow", "flow duration, us", Binning::kLog10x10},
    {"flow_start", "flow", "flow start / real span", Binning::kFlowStart},
    {"flow_iat", "flow", "mean gap within a flow, us", Binning::kLog10x10},
    {"src_fanout", "address", "distinct destinations per source", Binning::kLog10x10},
};

constexpr int64_t kFlowStartBins = 100;  // plus bin 100, the overflow

// One window's counts; `index` is the window's number from the trace start.
struct WindowStat {
  int64_t index = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t src = 0;
  uint64_t dst = 0;
  uint64_t pairs = 0;
  uint64_t tuples = 0;
};

struct FlowRec {
  int64_t first_ns = 0;
  int64_t last_ns = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// A distinct 5-tuple and the ids of its addresses, so that a packet of a
// known tuple costs one hash lookup.
struct TupleRec {
  uint32_t src = 0;
  uint32_t dst = 0;
  uint32_t pair = 0;
  uint32_t last_flow = 0;  // index of the tuple's latest flow in Summary::flows
  uint32_t flows = 0;      // flows of this tuple
};

// The window scales the use-case figures need: W, 10 W, and the minute and
// five minutes operators count in (METRICS.md).
constexpr int kScales = 4;
constexpr int64_t kFixedScaleNs[kScales] = {0, 0, 60LL * 1000000000, 300LL * 1000000000};
WindowSize ScaleWindow(WindowSize w, int k) {
  if (k == 0) return w;
  if (k == 1) return w.Times(10);
  return WindowSize{kFixedScaleNs[k], 1};
}

// Everything the metrics need from one trace, in one pass over its packets.
// Memory is linear in flows, addresses and non-empty windows, not in packets.
struct Summary {
  bool empty = true;
  int64_t t0 = 0;
  int64_t span = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  Histogram size, iat, proto, sport, dport, ttl, tcp_flags;
  std::vector<FlowRec> flows;
  absl::flat_hash_map<FlowKey, uint32_t> tuple_ids;
  std::vector<TupleRec> tuples;
  absl::flat_hash_map<IpAddress, uint32_t> src_ids, dst_ids;
  absl::flat_hash_map<uint64_t, uint32_t> pair_ids;
  std::vector<uint32_t> pair_src;  // source id of each pair
  std::vector<uint64_t> src_packets, dst_packets;
  // Non-empty windows, in increasing index, at W and 10 W.
  std::vector<WindowStat> windows[kScales];
  int64_t window_count[kScales] = {0, 0, 0, 0};  // empty ones included; 0 for an empty trace
};

// Tracks distinct ids per window: an id counts once per window index. Works
// because packets arrive in time order, so window indices never decrease.
class DistinctPerWindow {
 public:
  // True the first time `id` is seen in window `w`.
  bool Mark(uint32_t id, int64_t w) {
    if (id >= last_.size()) last_.resize(id + 1, -1);
    if (last_[id] == w) return false;
    last_[id] = w;
    return true;
  }

 private:
  std::vector<int64_t> last_;
};

uint64_t FlowHash(const FlowKey& k) {
  // A fixed serialisation and a fixed-seed hash: the split of the floor must
  // not change between runs or builds (absl::Hash is seeded per process).
  uint8_t buf[38];
  std::memcpy(buf, k.src.bytes.data(), 16);
  std::memcpy(buf + 16, k.dst.bytes.data(), 16);
  buf[32] = uint8_t(k.sport >> 8);
  buf[33] = uint8_t(k.sport);
  buf[34] = uint8_t(k.dport >> 8);
  buf[35] = uint8_t(k.dport);
  buf[36] = k.proto;
  buf[37] = k.version;
  return XXH64(buf, sizeof(buf), 0);
}

// Summarises the packets of `packets` for which `keep` is null or keep[i] is
// set, with windows of size `w` starting at the first kept packet, or, with
// `whole_trace_clock`, at the first packet of `packets` whether kept or not
// (the floor's halves share the real trace's clock and span).
Summary Summarize(const std::vector<PacketRecord>& packets, const std::vector<uint8_t>* keep,
                  WindowSize w, bool whole_trace_clock = false) {
  Summary s;
  auto kept = [&](size_t i) { return keep == nullptr || (*keep)[i] != 0; };
  size_t first = 0, last = packets.size();
  while (first < packets.size() && !kept(first)) ++first;
  if (first == packets.size()) return s;
  while (!kept(last - 1)) --last;
  s.empty = false;
  if (whole_trace_clock) {
    s.t0 = packets.front().ts_ns;
    s.span = packets.back().ts_ns - s.t0;
  } else {
    s.t0 = packets[first].ts_ns;
    s.span = packets[last - 1].ts_ns - s.t0;
  }
  WindowSize scale_w[kScales];
  for (int k = 0; k < kScales; ++k) {
    scale_w[k] = ScaleWindow(w, k);
    s.window_count[k] = scale_w[k].Count(s.span);
  }
  DistinctPerWindow src_seen[kScales], dst_seen[kScales], pair_seen[kScales], tuple_seen[kScales];
  s.tuple_ids.reserve(1024);
  int64_t prev_ts = 0;
  for (size_t i = first; i < last; ++i) {
    if (!kept(i)) continue;
    const PacketRecord& p = packets[i];
    auto [it, inserted] = s.tuple_ids.try_emplace(FlowKey::Of(p), 0);
    uint32_t tid;
    if (inserted) {
      tid = it->second = static_cast<uint32_t>(s.tuples.size());
      TupleRec t;
      auto [si, snew] = s.src_ids.try_emplace(p.src, static_cast<uint32_t>(s.src_packets.size()));
      if (snew) s.src_packets.push_back(0);
      auto [di, dnew] = s.dst_ids.try_emplace(p.dst, static_cast<uint32_t>(s.dst_packets.size()));
      if (dnew) s.dst_packets.push_back(0);
      t.src = si->second;
      t.dst = di->second;
      uint64_t pair_key = uint64_t(t.src) << 32 | t.dst;
      auto [pi, pnew] = s.pair_ids.try_emplace(pair_key, static_cast<uint32_t>(s.pair_src.size()));
      if (pnew) s.pair_src.push_back(t.src);
      t.pair = pi->second;
      s.tuples.push_back(t);
    } else {
      tid = it->second;
    }
    TupleRec& t = s.tuples[tid];
    if (inserted || p.ts_ns - s.flows[t.last_flow].last_ns > kFlowIdleTimeoutNs) {
      t.last_flow = static_cast<uint32_t>(s.flows.size());
      t.flows++;
      s.flows.push_back(FlowRec{p.ts_ns, p.ts_ns, 0, 0});
    }
    FlowRec& f = s.flows[t.last_flow];
    f.last_ns = p.ts_ns;
    f.packets++;
    f.bytes += p.ip_len;
    s.src_packets[t.src]++;
    s.dst_packets[t.dst]++;
    s.packets++;
    s.bytes += p.ip_len;

    s.size.Add(p.ip_len);
    if (s.packets > 1) s.iat.Add(Log10x10Bin(static_cast<double>(p.ts_ns - prev_ts) / 1000.0));
    prev_ts = p.ts_ns;
    s.proto.Add(p.proto);
    s.sport.Add(p.sport);
    s.dport.Add(p.dport);
    s.ttl.Add(p.ttl);
    if (p.proto == kProtoTcp) s.tcp_flags.Add(p.tcp_flags);

    for (int k = 0; k < kScales; ++k) {
      int64_t idx = std::min(scale_w[k].Index(p.ts_ns - s.t0), s.window_count[k] - 1);
      std::vector<WindowStat>& ws = s.windows[k];
      if (ws.empty() || ws.back().index != idx) ws.push_back(WindowStat{idx});
      WindowStat& cur = ws.back();
      cur.packets++;
      cur.bytes += p.ip_len;
      if (src_seen[k].Mark(t.src, idx)) cur.src++;
      if (dst_seen[k].Mark(t.dst, idx)) cur.dst++;
      if (pair_seen[k].Mark(t.pair, idx)) cur.pairs++;
      if (tuple_seen[k].Mark(tid, idx)) cur.tuples++;
    }
  }
  return s;
}

// Builds the histogram of a per-window count over all windows, the empty
// ones included (they fall in bin 0).
template <typename Get>
Histogram WindowHistogram(const Summary& s, uint64_t scale, Get get) {
  Histogram h;
  if (s.empty) return h;
  for (const WindowStat& ws : s.windows[0]) {
    h.Add(Log10x10Bin(static_cast<double>(get(ws) * scale)));
  }
  h.Add(0, static_cast<uint64_t>(s.window_count[0]) - s.windows[0].size());
  return h;
}

struct FlowHistograms {
  Histogram size, bytes, duration, start, iat, fanout;
};

FlowHistograms FlowLevel(const Summary& s, int64_t real_span) {
  FlowHistograms h;
  for (const FlowRec& f : s.flows) {
    int64_t dur = f.last_ns - f.first_ns;
    h.size.Add(Log10x10Bin(static_cast<double>(f.packets)));
    h.bytes.Add(Log10x10Bin(static_cast<double>(f.bytes)));
    h.duration.Add(Log10x10Bin(static_cast<double>(dur) / 1000.0));
    if (f.packets >= 2) {
      double mean_gap_ns = static_cast<double>(dur) / static_cast<double>(f.packets - 1);
      h.iat.Add(Log10x10Bin(mean_gap_ns / 1000.0));
    }
    int64_t off = f.first_ns - s.t0;
    int64_t bin;
    if (real_span <= 0) {
      bin = off == 0 ? 0 : kFlowStartBins;
    } else {
      __int128 b = static_cast<__int128>(off) * kFlowStartBins / real_span;
      bin = b >= kFlowStartBins ? kFlowStartBins : static_cast<int64_t>(b);
    }
    h.start.Add(bin);
  }
  std::vector<uint64_t> fanout(s.src_packets.size(), 0);
  for (uint32_t src : s.pair_src) fanout[src]++;
  for (uint64_t n : fanout) h.fanout.Add(Log10x10Bin(static_cast<double>(n)));
  return h;
}

void FillPlot(const Histogram& r, const Histogram& s, MetricScore* m) {
  auto a = r.Sorted(), b = s.Sorted();
  double tr = static_cast<double>(std::max<uint64_t>(r.total(), 1));
  double ts = static_cast<double>(std::max<uint64_t>(s.total(), 1));
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    int64_t key;
    if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
      key = a[i].first;
    } else {
      key = b[j].first;
    }
    double pr = 0, ps = 0;
    if (i < a.size() && a[i].first == key) pr = static_cast<double>(a[i++].second) / tr;
    if (j < b.size() && b[j].first == key) ps = static_cast<double>(b[j++].second) / ts;
    m->bins.push_back(key);
    m->real_p.push_back(pr);
    m->synth_p.push_back(ps);
  }
}

MetricScore ScoreHistograms(const Histogram& r, const Histogram& s, bool plot) {
  MetricScore m;
  m.real_values = r.total();
  m.synth_values = s.total();
  if (!r.empty()) m.jsd = Jsd(r, s);
  if (plot) FillPlot(r, s, &m);
  return m;
}

MetricScore ScoreRanks(const std::vector<uint64_t>& r, const std::vector<uint64_t>& s, bool plot) {
  MetricScore m;
  for (uint64_t v : r) m.real_values += v;
  for (uint64_t v : s) m.synth_values += v;
  std::vector<uint64_t> rs = r, ss = s;
  std::sort(rs.begin(), rs.end(), std::greater<>());
  std::sort(ss.begin(), ss.end(), std::greater<>());
  if (m.real_values > 0) m.jsd = JsdOfCounts(rs, ss);
  if (plot) {
    size_t n = std::max(rs.size(), ss.size());
    double tr = static_cast<double>(std::max<uint64_t>(m.real_values, 1));
    double ts = static_cast<double>(std::max<uint64_t>(m.synth_values, 1));
    for (size_t i = 0; i < n; ++i) {
      m.bins.push_back(static_cast<int64_t>(i));
      m.real_p.push_back(i < rs.size() ? static_cast<double>(rs[i]) / tr : 0.0);
      m.synth_p.push_back(i < ss.size() ? static_cast<double>(ss[i]) / ts : 0.0);
    }
  }
  return m;
}

double RelError(double synth, double real) { return std::fabs(synth - real) / std::max(real, 1.0); }

UseCase UseCaseAt(const Summary& r, const Summary& s, int k, WindowSize w, uint64_t scale) {
  UseCase u;
  u.window_s = ScaleWindow(w, k).seconds();
  u.windows = std::max(r.window_count[k], s.window_count[k]);
  std::vector<double> err[6];
  const auto& a = r.windows[k];
  const auto& b = s.windows[k];
  size_t i = 0, j = 0;
  WindowStat zero;
  while (i < a.size() || j < b.size()) {
    int64_t idx =
        (j == b.size() || (i < a.size() && a[i].index < b[j].index)) ? a[i].index : b[j].index;
    const WindowStat& x = (i < a.size() && a[i].index == idx) ? a[i++] : zero;
    const WindowStat& y = (j < b.size() && b[j].index == idx) ? b[j++] : zero;
    double sc = static_cast<double>(scale);
    err[0].push_back(RelError(sc * double(y.packets), sc * double(x.packets)));
    err[1].push_back(RelError(sc * double(y.bytes), sc * double(x.bytes)));
    err[2].push_back(RelError(double(y.src), double(x.src)));
    err[3].push_back(RelError(double(y.dst), double(x.dst)));
    err[4].push_back(RelError(double(y.pairs), double(x.pairs)));
    err[5].push_back(RelError(double(y.tuples), double(x.tuples)));
  }
  u.active_windows = static_cast<int64_t>(err[0].size());
  ErrorStats* out[6] = {&u.packets, &u.bytes, &u.src, &u.dst, &u.pairs, &u.tuples};
  for (int m = 0; m < 6; ++m) {
    out[m]->median = Quantile(err[m], 0.5);
    out[m]->p95 = Quantile(err[m], 0.95);
  }
  return u;
}

// Scores `s` against `r`. `scale` multiplies the window-level packet and byte
// counts of both sides (the floor's halves); 1 otherwise.
Scores Score(const Summary& r, const Summary& s, WindowSize w, int64_t real_span, uint64_t scale,
             bool plot) {
  Scores sc;
  auto& m = sc.metrics;
  m[kPktSize] = ScoreHistograms(r.size, s.size, plot);
  m[kPktIat] = ScoreHistograms(r.iat, s.iat, plot);
  m[kThroughput] =
      ScoreHistograms(WindowHistogram(r, scale, [](const WindowStat& x) { return x.bytes; }),
                      WindowHistogram(s, scale, [](const WindowStat& x) { return x.bytes; }), plot);
  m[kPktRate] = ScoreHistograms(
      WindowHistogram(r, scale, [](const WindowStat& x) { return x.packets; }),
      WindowHistogram(s, scale, [](const WindowStat& x) { return x.packets; }), plot);
  m[kProto] = ScoreHistograms(r.proto, s.proto, plot);
  m[kSrcPort] = ScoreHistograms(r.sport, s.sport, plot);
  m[kDstPort] = ScoreHistograms(r.dport, s.dport, plot);
  m[kTtl] = ScoreHistograms(r.ttl, s.ttl, plot);
  m[kTcpFlags] = ScoreHistograms(r.tcp_flags, s.tcp_flags, plot);
  m[kSrcIpRank] = ScoreRanks(r.src_packets, s.src_packets, plot);
  m[kDstIpRank] = ScoreRanks(r.dst_packets, s.dst_packets, plot);
  FlowHistograms fr = FlowLevel(r, real_span), fs = FlowLevel(s, real_span);
  m[kFlowSize] = ScoreHistograms(fr.size, fs.size, plot);
  m[kFlowBytes] = ScoreHistograms(fr.bytes, fs.bytes, plot);
  m[kFlowDuration] = ScoreHistograms(fr.duration, fs.duration, plot);
  m[kFlowStart] = ScoreHistograms(fr.start, fs.start, plot);
  m[kFlowIat] = ScoreHistograms(fr.iat, fs.iat, plot);
  m[kSrcFanout] = ScoreHistograms(fr.fanout, fs.fanout, plot);

  double sum = 0;
  for (int i = 0; i < kNumMetrics; ++i) {
    if (!m[i].jsd) continue;
    sc.scored++;
    sum += *m[i].jsd;
    if (!sc.worst || *m[i].jsd > *sc.worst) {
      sc.worst = m[i].jsd;
      sc.worst_metric = i;
    }
  }
  if (sc.scored > 0) sc.mean = sum / sc.scored;
  UseCase* uc[kScales] = {&sc.w, &sc.w10, &sc.m1, &sc.m5};
  for (int k = 0; k < kScales; ++k) {
    // The minute scales only where the real trace spans ten such windows.
    if (k >= 2 && real_span < 10 * kFixedScaleNs[k]) continue;
    *uc[k] = UseCaseAt(r, s, k, w, scale);
  }
  double f = static_cast<double>(scale);
  sc.total_packets = RelError(f * double(s.packets), f * double(r.packets));
  sc.total_bytes = RelError(f * double(s.bytes), f * double(r.bytes));
  sc.total_flows = RelError(double(s.flows.size()), double(r.flows.size()));
  return sc;
}

TraceCounts Counts(const Trace& t, const Summary& s) {
  TraceCounts c;
  c.name = t.name;
  c.link = t.link;
  c.frames = t.stats.frames;
  c.ip_packets = t.packets.size();
  c.non_ip = t.stats.non_ip;
  c.malformed = t.stats.malformed;
  c.unsupported_link = t.stats.unsupported_link;
  c.corrupt_records = t.stats.corrupt_records;
  c.bytes = s.bytes;
  c.flows = s.flows.size();
  c.distinct_src = s.src_ids.size();
  c.distinct_dst = s.dst_ids.size();
  c.first_ts_ns = s.t0;
  c.span_ns = s.span;
  c.warnings = t.stats.warnings;
  return c;
}

Replay ReplayOf(const Summary& r, const Summary& s) {
  Replay rp;
  rp.synth_flows = s.flows.size();
  for (const auto& [key, tid] : s.tuple_ids) {
    if (r.tuple_ids.contains(key)) rp.replayed_flows += s.tuples[tid].flows;
  }
  absl::flat_hash_set<IpAddress> synth_addrs;
  for (const auto& [a, id] : s.src_ids) synth_addrs.insert(a);
  for (const auto& [a, id] : s.dst_ids) synth_addrs.insert(a);
  uint64_t seen = 0;
  for (const IpAddress& a : synth_addrs) {
    if (r.src_ids.contains(a) || r.dst_ids.contains(a)) seen++;
  }
  if (!synth_addrs.empty()) rp.address_overlap = double(seen) / double(synth_addrs.size());
  if (seen > 0 && rp.synth_flows > 0) rp.rate = double(rp.replayed_flows) / double(rp.synth_flows);
  return rp;
}

WindowSeries Series(const Summary& s, int64_t group) {
  WindowSeries out;
  out.group = group;
  if (s.empty) return out;
  size_t points = static_cast<size_t>((s.window_count[0] + group - 1) / group);
  out.packets.assign(points, 0);
  out.bytes.assign(points, 0);
  out.src.assign(points, 0);
  for (const WindowStat& ws : s.windows[0]) {
    size_t p = static_cast<size_t>(ws.index / group);
    out.packets[p] += double(ws.packets);
    out.bytes[p] += double(ws.bytes);
    out.src[p] += double(ws.src);
  }
  // Mean per window; the last point may cover fewer windows.
  for (size_t p = 0; p < points; ++p) {
    int64_t n = std::min<int64_t>(group, s.window_count[0] - int64_t(p) * group);
    out.packets[p] /= double(n);
    out.bytes[p] /= double(n);
    out.src[p] /= double(n);
  }
  return out;
}

// Mean of two optional scores: the defined one when only one is.
std::optional<double> MeanOf(std::optional<double> a, std::optional<double> b) {
  if (a && b) return 0.5 * (*a + *b);
  return a ? a : b;
}

ErrorStats MeanOf(const ErrorStats& a, const ErrorStats& b) {
  return ErrorStats{0.5 * (a.median + b.median), 0.5 * (a.p95 + b.p95)};
}

Scores FloorScores(const Trace& real, WindowSize w, int64_t real_span, bool plot,
                   uint64_t half_packets[2]) {
  std::vector<uint8_t> in_a(real.packets.size()), in_b(real.packets.size());
  for (size_t i = 0; i < real.packets.size(); ++i) {
    bool a = (FlowHash(FlowKey::Of(real.packets[i])) & 1) == 0;
    in_a[i] = a;
    in_b[i] = !a;
  }
  Summary sa = Summarize(real.packets, &in_a, w, /*whole_trace_clock=*/true);
  Summary sb = Summarize(real.packets, &in_b, w, /*whole_trace_clock=*/true);
  half_packets[0] = sa.packets;
  half_packets[1] = sb.packets;
  Scores ab = Score(sa, sb, w, real_span, 2, plot);
  Scores ba = Score(sb, sa, w, real_span, 2, false);
  Scores f = ab;  // plot data: half A as "real", half B as "synthetic"
  f.scored = 0;
  f.mean.reset();
  f.worst.reset();
  f.worst_metric = -1;
  double sum = 0;
  for (int i = 0; i < kNumMetrics; ++i) {
    f.metrics[i].jsd = MeanOf(ab.metrics[i].jsd, ba.metrics[i].jsd);
    if (!f.metrics[i].jsd) continue;
    f.scored++;
    sum += *f.metrics[i].jsd;
    if (!f.worst || *f.metrics[i].jsd > *f.worst) {
      f.worst = f.metrics[i].jsd;
      f.worst_metric = i;
    }
  }
  if (f.scored > 0) f.mean = sum / f.scored;
  UseCase* fu[kScales] = {&f.w, &f.w10, &f.m1, &f.m5};
  const UseCase* au[kScales] = {&ab.w, &ab.w10, &ab.m1, &ab.m5};
  const UseCase* bu[kScales] = {&ba.w, &ba.w10, &ba.m1, &ba.m5};
  for (int k = 0; k < kScales; ++k) {
    fu[k]->packets = MeanOf(au[k]->packets, bu[k]->packets);
    fu[k]->bytes = MeanOf(au[k]->bytes, bu[k]->bytes);
    fu[k]->src = MeanOf(au[k]->src, bu[k]->src);
    fu[k]->dst = MeanOf(au[k]->dst, bu[k]->dst);
    fu[k]->pairs = MeanOf(au[k]->pairs, bu[k]->pairs);
    fu[k]->tuples = MeanOf(au[k]->tuples, bu[k]->tuples);
  }
  f.total_packets = 0.5 * (ab.total_packets + ba.total_packets);
  f.total_bytes = 0.5 * (ab.total_bytes + ba.total_bytes);
  f.total_flows = 0.5 * (ab.total_flows + ba.total_flows);
  return f;
}

bool ByTime(const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; }

// `t` itself when its packets are in time order (LoadTrace and MakeTrace see
// to it), else a sorted copy kept in *storage: the one-pass summary relies on
// windows never going backwards.
const Trace& InTimeOrder(const Trace& t, Trace* storage) {
  if (std::is_sorted(t.packets.begin(), t.packets.end(), ByTime)) return t;
  *storage = t;
  std::stable_sort(storage->packets.begin(), storage->packets.end(), ByTime);
  return *storage;
}

}  // namespace

const char* BinningName(Binning b) {
  switch (b) {
    case Binning::kExact:
      return "exact";
    case Binning::kLog10x10:
      return "log10x10";
    case Binning::kRank:
      return "rank";
    case Binning::kFlowStart:
      return "flow_start";
  }
  return "?";
}

const MetricInfo& Info(int metric) { return kMetrics[metric]; }

int64_t WindowSize::Index(int64_t offset_ns) const {
  if (offset_ns <= 0) return 0;
  return static_cast<int64_t>(static_cast<__int128>(offset_ns) * den / num_ns);
}

int64_t WindowSize::Count(int64_t span_ns) const {
  if (span_ns <= 0) return 1;
  __int128 n = (static_cast<__int128>(span_ns) * den + num_ns - 1) / num_ns;
  return std::max<int64_t>(1, static_cast<int64_t>(n));
}

WindowSize WindowFor(int64_t real_span_ns) {
  constexpr int64_t kSecond = 1000000000;
  if (real_span_ns <= 0 || real_span_ns >= 100 * kSecond) return WindowSize{kSecond, 1};
  return WindowSize{real_span_ns, 100};
}


Trace MakeTrace(std::vector<PacketRecord> packets, std::string name) {
  Trace t;
  t.name = std::move(name);
  std::stable_sort(packets.begin(), packets.end(), ByTime);
  t.packets = std::move(packets);
  t.stats.frames = t.packets.size();
  t.stats.ip_packets = t.packets.size();
  return t;
}

EvalReport Evaluate(const Trace& real_in, const Trace& synth_in, const EvalOptions& options) {
  Trace real_sorted, synth_sorted;
  const Trace& real = InTimeOrder(real_in, &real_sorted);
  const Trace& synth = InTimeOrder(synth_in, &synth_sorted);
  EvalReport rep;
  int64_t real_span =
      real.packets.empty() ? 0 : real.packets.back().ts_ns - real.packets.front().ts_ns;
  rep.window = WindowFor(real_span);
  Summary r = Summarize(real.packets, nullptr, rep.window);
  Summary s = Summarize(synth.packets, nullptr, rep.window);
  rep.real = Counts(real, r);
  rep.synth = Counts(synth, s);
  rep.scores = Score(r, s, rep.window, real_span, 1, options.plot_data);
  rep.replay = ReplayOf(r, s);
  if (options.plot_data) {
    int64_t n = std::max(r.window_count[0], s.window_count[0]);
    int64_t group =
        std::max<int64_t>(1, (n + WindowSeries::kMaxPoints - 1) / WindowSeries::kMaxPoints);
    rep.real_series = Series(r, group);
    rep.synth_series = Series(s, group);
  }
  if (options.floor) {
    rep.floor = FloorScores(real, rep.window, real_span, options.plot_data, rep.floor_half_packets);
  }
  return rep;
}

EvalReport EvaluateFloor(const Trace& real_in, const EvalOptions& options) {
  Trace real_sorted;
  const Trace& real = InTimeOrder(real_in, &real_sorted);
  EvalReport rep;
  rep.has_synth = false;
  int64_t real_span =
      real.packets.empty() ? 0 : real.packets.back().ts_ns - real.packets.front().ts_ns;
  rep.window = WindowFor(real_span);
  Summary r = Summarize(real.packets, nullptr, rep.window);
  rep.real = Counts(real, r);
  if (options.plot_data) {
    int64_t group = std::max<int64_t>(
        1, (r.window_count[0] + WindowSeries::kMaxPoints - 1) / WindowSeries::kMaxPoints);
    rep.real_series = Series(r, group);
  }
  rep.floor = FloorScores(real, rep.window, real_span, options.plot_data, rep.floor_half_packets);
  return rep;
}

}  // namespace dgc::eval

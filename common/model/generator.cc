#include "common/model/generator.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/base/rng.h"

namespace dgc::model {
namespace {
double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// A sampled size can be impossible on the wire (smaller than the headers the
// protocol needs, or an IPv4 packet over 64 KiB): bring it to the nearest
// valid one, so every written packet is well-formed.
uint32_t MinWireLength(const PacketRecord& p) {
  uint32_t ip_hdr = p.version == 6 ? 40 : 20;
  uint32_t l4 = 0;
  if (!p.is_later_fragment()) {
    switch (p.proto) {
      case kProtoTcp: l4 = 20; break;
      case kProtoUdp: case kProtoIcmp: case kProtoIcmpV6: l4 = 8; break;
      case kProtoSctp: l4 = 12; break;
      default: break;
    }
  }
  return ip_hdr + l4;
}
uint32_t MaxWireLength(const PacketRecord& p) { return p.version == 6 ? 65535 + 40 : 65535; }
void MakeWireValid(PacketRecord* p) { p->ip_len = std::clamp(p->ip_len, MinWireLength(*p), MaxWireLength(*p)); }

// A flow kept exactly has its byte total on record; the model drew its
// packets' sizes. Bring the flow to its total while keeping the sizes the
// model drew (pkt_size is scored on exact values): move whole packets from
// the flow's smallest drawn size to its largest (or back) while that fits the
// difference, then let one packet absorb what is left; only when that is not
// enough (every packet already at an end) spread the rest over all of them,
// within the headers' floor and max(1500, the largest drawn size).
// Deterministic: no draw, the same output for any thread count.
void FitFlowBytes(std::vector<PacketRecord>* pkts, uint64_t target) {
  if (pkts->empty()) return;
  int64_t have = 0;
  uint32_t cap = 1500, smallest = UINT32_MAX, largest = 0;
  for (auto& p : *pkts) {
    MakeWireValid(&p);
    have += p.ip_len;
    cap = std::max(cap, p.ip_len);
    smallest = std::min(smallest, p.ip_len);
    largest = std::max(largest, p.ip_len);
  }
  int64_t diff = static_cast<int64_t>(target) - have;
  if (diff == 0) return;
  std::vector<size_t> order(pkts->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Growing: smallest packets first, each to the largest size; shrinking: the reverse.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return diff > 0 ? (*pkts)[a].ip_len < (*pkts)[b].ip_len : (*pkts)[a].ip_len > (*pkts)[b].ip_len;
  });
  for (size_t i : order) {
    if (diff == 0) break;
    PacketRecord& p = (*pkts)[i];
    const uint32_t to = diff > 0 ? largest : std::max(smallest, MinWireLength(p));
    const int64_t step = static_cast<int64_t>(to) - p.ip_len;
    if (step == 0 || (diff > 0 ? step > diff : step < diff)) continue;
    p.ip_len = to;
    diff -= step;
  }
  // What is left, on as few packets as the bounds allow.
  for (size_t i : order) {
    if (diff == 0) break;
    PacketRecord& p = (*pkts)[i];
    const int64_t lo = MinWireLength(p), hi = std::min(cap, MaxWireLength(p));
    const int64_t next = std::clamp<int64_t>(static_cast<int64_t>(p.ip_len) + diff, lo, hi);
    diff -= next - p.ip_len;
    p.ip_len = static_cast<uint32_t>(next);
  }
}

}  // namespace

void StitchFlows(std::vector<OpenFlow>* open, int64_t chunk_end_ns, std::vector<PacketRecord>* packets) {
  std::vector<uint32_t> flow_of;
  std::vector<Flow> flows = BuildFlows(*packets, chunk_end_ns, &flow_of);
  std::vector<bool> used(open->size(), false);
  std::vector<FlowKey> new_key(flows.size());
  for (size_t f = 0; f < flows.size(); ++f) {
    new_key[f] = flows[f].key;
    if (!(flows[f].marks & kFlowContinued)) continue;
    const FlowKey& k = flows[f].key;
    int best = -1, best_score = -1;
    for (size_t i = 0; i < open->size(); ++i) {
      const OpenFlow& o = (*open)[i];
      if (used[i] || o.key.proto != k.proto || o.key.version != k.version) continue;
      if (flows[f].first_ns - o.last_ns > kFlowIdleTimeoutNs) continue;
      int score = 2 * (o.key.dport == k.dport) + 2 * (o.key.sport == k.sport) + (o.key.src == k.src) +
                  (o.key.dst == k.dst);
      if (score > best_score) {
        best = static_cast<int>(i);
        best_score = score;
      }
    }
    if (best >= 0) {
      used[best] = true;
      new_key[f] = (*open)[best].key;
    }
  }
  for (size_t i = 0; i < packets->size(); ++i) {
    PacketRecord& p = (*packets)[i];
    const FlowKey& k = new_key[flow_of[i]];
    p.src = k.src;
    p.dst = k.dst;
    p.sport = k.sport;
    p.dport = k.dport;
  }
  open->clear();
  for (size_t f = 0; f < flows.size(); ++f) {
    if (flows[f].marks & kFlowOpenAtEnd) open->push_back({new_key[f], flows[f].last_ns});
  }
}

void PlaceTailPackets(const Skeleton& sk, std::vector<ExpandedFlow>* flows, std::mt19937_64& rng) {
  if (sk.bins() == 0) return;
  const int64_t end = sk.start_ns + sk.duration_ns;
  auto bin_of = [&](int64_t t) {
    return static_cast<size_t>(std::clamp<int64_t>((t - sk.start_ns) / sk.bin_ns, 0, int64_t(sk.bins()) - 1));
  };
  // What each bin still lacks once every head packet is in place.
  std::vector<double> lack(sk.packets.begin(), sk.packets.end());
  std::vector<size_t> order;
  for (size_t i = 0; i < flows->size(); ++i) {
    ExpandedFlow& f = (*flows)[i];
    for (size_t k = 0; k < f.head && k < f.packets.size(); ++k) {
      if (f.packets[k].ts_ns < end) lack[bin_of(f.packets[k].ts_ns)] -= 1;
    }
    if (f.packets.size() > f.head && f.head > 0) {
      order.push_back(i);
      // The last packet stays at the flow's end (clamped to the chunk's).
      f.packets.back().ts_ns = std::min(f.packets.back().ts_ns, end - 1);
      lack[bin_of(f.packets.back().ts_ns)] -= 1;
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return (*flows)[a].packets.size() - (*flows)[a].head > (*flows)[b].packets.size() - (*flows)[b].head;
  });
  std::vector<double> want;
  std::vector<uint64_t> count;
  std::vector<int64_t> times;
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (size_t i : order) {
    ExpandedFlow& f = (*flows)[i];
    const int64_t a = f.packets[f.head - 1].ts_ns;
    const int64_t e = f.packets.back().ts_ns;
    const size_t n = f.packets.size() - f.head - 1;  // the last keeps the flow's end
    if (e <= a || n == 0) continue;
    times.clear();
    // A stratified backbone first, one packet per half idle timeout of the
    // span: the flow never goes quiet long enough to end (METRICS.md's 60 s
    // rule would split it).
    const size_t backbone = std::min<size_t>(n, size_t((e - a) / (kFlowIdleTimeoutNs / 2)) + 1);
    for (size_t k = 0; k < backbone; ++k) {
      times.push_back(a + static_cast<int64_t>((double(k) + u01(rng)) * double(e - a) / double(backbone)));
    }
    // The others fill the bins of the span that lack packets, each up to its
    // lack, shared in proportion (largest remainder) when they lack more than
    // the flow has; what no bin lacks spreads uniformly over the span.
    const size_t b0 = bin_of(a), b1 = bin_of(e);
    const size_t left = n - backbone;
    want.assign(b1 - b0 + 1, 0.0);
    double total = 0;
    for (size_t b = b0; b <= b1; ++b) total += want[b - b0] = std::max(lack[b], 0.0);
    count.assign(want.size(), 0);
    uint64_t placed = 0;
    if (total > 0 && left > 0) {
      double scale = std::min(1.0, double(left) / total);
      std::vector<std::pair<double, size_t>> remainder;
      for (size_t j = 0; j < want.size(); ++j) {
        double x = want[j] * scale;
        count[j] = static_cast<uint64_t>(x);
        placed += count[j];
        remainder.push_back({x - double(count[j]), j});
      }
      uint64_t extra = std::min<uint64_t>(left, static_cast<uint64_t>(std::llround(total * scale))) - placed;
      std::sort(remainder.begin(), remainder.end(), std::greater<>());
      for (size_t j = 0; j < extra && j < remainder.size(); ++j) ++count[remainder[j].second], ++placed;
    }
    for (size_t j = 0; j < count.size(); ++j) {
      const size_t b = b0 + j;
      const int64_t lo = std::max(a, sk.start_ns + int64_t(b) * sk.bin_ns);
      const int64_t hi = std::max(lo, std::min(e, sk.start_ns + int64_t(b + 1) * sk.bin_ns));
      for (uint64_t c = 0; c < count[j]; ++c) times.push_back(lo + static_cast<int64_t>(u01(rng) * double(hi - lo)));
    }
    while (times.size() < n) times.push_back(a + static_cast<int64_t>(u01(rng) * double(e - a)));
    std::sort(times.begin(), times.end());
    for (size_t k = 0; k < n; ++k) {
      f.packets[f.head + k].ts_ns = times[k];
      lack[bin_of(times[k])] -= 1;
    }
  }
}

void MatchPacketCounts(const Skeleton& sk, std::vector<PacketRecord>* packets) {
  auto& ps = *packets;
  uint64_t real_total = sk.total_packets();
  if (ps.empty() || real_total == 0) return;
  // Knots: for each bin edge e (recorded cumulative R_e), the generated time at
  // which the same fraction of generated packets has passed.
  size_t n = ps.size();
  std::vector<int64_t> from, to;  // generated time -> recorded time
  from.reserve(sk.bins() + 1);
  to.reserve(sk.bins() + 1);
  uint64_t cum = 0;
  int64_t lo = std::min(ps.front().ts_ns, sk.start_ns);
  from.push_back(lo);
  to.push_back(sk.start_ns);
  for (size_t b = 0; b < sk.bins(); ++b) {
    cum += sk.packets[b];
    int64_t edge = sk.start_ns + int64_t(b + 1) * sk.bin_ns;
    double q = double(cum) / double(real_total) * double(n);  // generated packets before the edge
    size_t k = static_cast<size_t>(std::min<double>(q, double(n)));
    int64_t t;
    if (k == 0) {
      t = from.back();
    } else if (k >= n) {
      t = ps.back().ts_ns + 1;
    } else {
      t = ps[k - 1].ts_ns + (ps[k].ts_ns - ps[k - 1].ts_ns) / 2;  // between packet k-1 and k
    }
    // An empty bin gives a zero-width source segment: packets jump past it.
    t = std::max(t, from.back());
    from.push_back(t);
    to.push_back(edge);
  }
  size_t seg = 0;
  for (auto& p : ps) {
    while (seg + 1 < from.size() && p.ts_ns >= from[seg + 1]) ++seg;
    if (seg + 1 >= from.size()) {
      p.ts_ns = std::min<int64_t>(to.back() - 1, p.ts_ns);
      continue;
    }
    int64_t f0 = from[seg], f1 = from[seg + 1], t0 = to[seg], t1 = to[seg + 1];
    double frac = f1 > f0 ? double(p.ts_ns - f0) / double(f1 - f0) : 0.0;
    p.ts_ns = t0 + static_cast<int64_t>(frac * double(t1 - t0));
    if (p.ts_ns >= t1 && t1 > t0) p.ts_ns = t1 - 1;
  }
  std::stable_sort(ps.begin(), ps.end(), [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
}

namespace {

// Steers the hosts of the sampled flows to the skeleton's structure windows:
// flows drawn one by one invent a new host for nearly every flow, where real
// windows hold a few hosts that talk a lot. Flows go in start order; a
// sampled address that would add a host to a window already holding its
// recorded number of distinct hosts (or to the chunk, past its total) is
// replaced by one already active there, chosen in proportion to the flows
// that host has (the few busy hosts stay busy). The same for (src, dst)
// pairs: a new pair past the window's count takes a destination its source
// already talks to. Fixed flows (kept exactly) keep their hosts and count.
class HostSteering {
 public:
  explicit HostSteering(const Skeleton& sk) : sk_(sk), active_(sk.windows.size()) {}

  void Add(ExpandedFlow& f, bool fixed) {
    if (f.packets.empty()) return;
    auto [w0, w1] = Windows(f);
    const PacketRecord& p0 = f.packets.front();
    IpAddress src = p0.src, dst = p0.dst;
    if (!fixed) {
      src = Choose(0, src, p0.version, w0, w1);
      dst = Choose(1, dst, p0.version, w0, w1);
      if (sk_.windows[w0].pairs > 0 && !active_[w0].pairs.count({src, dst}) &&
          active_[w0].pairs.size() >= sk_.windows[w0].pairs) {
        // A new pair past the count: a destination this source already has.
        auto it = active_[w0].dsts_of.find(src);
        if (it != active_[w0].dsts_of.end() && !it->second.empty()) {
          std::uniform_int_distribution<size_t> pick(0, it->second.size() - 1);
          dst = it->second[pick(rng_)];
        }
      }
      for (auto& p : f.packets) {
        p.src = src;
        p.dst = dst;
      }
    }
    FlowKey key = FlowKey::Of(f.packets.front());
    if (!fixed && tuples_ && ProtoHasPorts(key.proto)) {
      const FlowKey reused = ChooseTuple(key, w0, w1, f.packets);
      if (!(reused == key)) {
        key = reused;
        for (auto& p : f.packets) {
          p.sport = key.sport;
          p.dport = key.dport;
        }
      }
    }
    for (size_t w = w0; w <= w1; ++w) {
      Window& a = active_[w];
      for (int role = 0; role < 2; ++role) {
        const IpAddress& h = role == 0 ? src : dst;
        auto [it, fresh] = a.flows[role].try_emplace(h, 0);
        if (fresh) a.hosts[role].push_back(h);
        ++it->second;
        a.weighted[role].push_back(h);
      }
      if (a.pairs.insert({src, dst}).second) a.dsts_of[src].push_back(dst);
      if (a.tuples.insert(key).second) a.tuples_of[Ends(key)].push_back(key);
    }
    for (int role = 0; role < 2; ++role) {
      const IpAddress& h = role == 0 ? src : dst;
      if (pool_[role].insert(h).second) pool_list_[role].push_back(h);
    }
    if (tuple_pool_.insert(key).second) tuple_pool_of_[Ends(key)].push_back(key);
    if (tuples_) {
      auto& times = tuple_times_[key];
      for (const auto& p : f.packets) times.insert(p.ts_ns);
    }
  }

  // Steer 5-tuples too (GenerateOptions::steer_tuples).
  void set_tuples(bool on) { tuples_ = on; }

 private:
  struct Window {
    absl::flat_hash_map<IpAddress, uint32_t> flows[2];
    std::vector<IpAddress> hosts[2];     // distinct, in order of arrival
    std::vector<IpAddress> weighted[2];  // one entry per flow: drawing from it is drawing by flows
    absl::flat_hash_set<std::pair<IpAddress, IpAddress>> pairs;
    absl::flat_hash_map<IpAddress, std::vector<IpAddress>> dsts_of;
    absl::flat_hash_set<FlowKey> tuples;
    absl::flat_hash_map<FlowKey, std::vector<FlowKey>> tuples_of;  // by Ends()
  };

  // The key without its ports: the conversation a 5-tuple belongs to.
  static FlowKey Ends(FlowKey k) {
    k.sport = k.dport = 0;
    return k;
  }

  // A flow's 5-tuple that adds none past a window's count (or the chunk's
  // total) is kept; otherwise one already seen between the same hosts with
  // the same protocol takes its place, the same destination port first, in
  // the flow's first window before the rest of the chunk: the one used
  // last before the flow starts, among those with no packet within the
  // flow timeout of the flow's (so the two stay two flows, as the real
  // trace's heartbeats do, which flow tools with coarser expiry then join).
  // With none, the drawn one stays.
  FlowKey ChooseTuple(const FlowKey& k, size_t w0, size_t w1, const std::vector<PacketRecord>& packets) {
    bool ok = true;
    for (size_t w = w0; w <= w1 && ok; ++w) {
      const uint32_t target = sk_.windows[w].five_tuples;
      if (target > 0 && !active_[w].tuples.count(k) && active_[w].tuples.size() >= target) ok = false;
    }
    if (ok && sk_.total.five_tuples > 0 && !tuple_pool_.count(k) && tuple_pool_.size() >= sk_.total.five_tuples) {
      ok = false;
    }
    if (ok) return k;
    const FlowKey ends = Ends(k);
    for (const auto* of : {&active_[w0].tuples_of, &tuple_pool_of_}) {
      auto it = of->find(ends);
      if (it == of->end()) continue;
      const FlowKey* best[2] = {nullptr, nullptr};  // same destination port, any
      int64_t best_last[2] = {0, 0};
      const int64_t first_ns = packets.front().ts_ns;
      for (const auto& c : it->second) {
        const std::set<int64_t>& times = tuple_times_.at(c);
        bool joins = false;
        for (const auto& p : packets) {
          auto near = times.lower_bound(p.ts_ns - kFlowIdleTimeoutNs);
          if (near != times.end() && *near <= p.ts_ns + kFlowIdleTimeoutNs) {
            joins = true;  // would join a flow of that 5-tuple
            break;
          }
        }
        if (joins) continue;
        auto before = times.lower_bound(first_ns);
        const int64_t last = before == times.begin() ? std::numeric_limits<int64_t>::min() : *std::prev(before);
        for (int b = c.dport == k.dport ? 0 : 1; b < 2; ++b) {
          if (!best[b] || last > best_last[b]) {
            best[b] = &c;
            best_last[b] = last;
          }
        }
      }
      if (best[0]) return *best[0];
      if (best[1]) return *best[1];
    }
    return k;
  }

  std::pair<size_t, size_t> Windows(const ExpandedFlow& f) const {
    auto w = [&](int64_t t) {
      return static_cast<size_t>(
          std::clamp<int64_t>((t - sk_.start_ns) / sk_.window_ns, 0, int64_t(sk_.windows.size()) - 1));
    };
    int64_t last = f.packets.front().ts_ns;
    for (const auto& p : f.packets) last = std::max(last, p.ts_ns);
    return {w(f.packets.front().ts_ns), w(std::min(last, sk_.start_ns + sk_.duration_ns - 1))};
  }
  uint32_t Target(int role, size_t w) const { return role == 0 ? sk_.windows[w].srcs : sk_.windows[w].dsts; }
  uint32_t TotalTarget(int role) const { return role == 0 ? sk_.total.srcs : sk_.total.dsts; }

  IpAddress Choose(int role, const IpAddress& sampled, uint8_t version, size_t w0, size_t w1) {
    // Acceptable: adds no host past a window's count, nor to the chunk past its total.
    bool ok = true;
    for (size_t w = w0; w <= w1 && ok; ++w) {
      if (!active_[w].flows[role].count(sampled) && active_[w].flows[role].size() >= Target(role, w)) ok = false;
    }
    if (ok && !pool_[role].count(sampled) && TotalTarget(role) > 0 && pool_[role].size() >= TotalTarget(role)) {
      ok = false;
    }
    if (ok) return sampled;
    const Window& a = active_[w0];
    const bool window_full = a.flows[role].size() >= Target(role, w0);
    if (window_full && !a.weighted[role].empty()) {
      // A host of this window, by its flows (same family only).
      for (int tries = 0; tries < 8; ++tries) {
        std::uniform_int_distribution<size_t> pick(0, a.weighted[role].size() - 1);
        const IpAddress& h = a.weighted[role][pick(rng_)];
        if (h.is_v4_mapped() == (version == 4)) return h;
      }
      return sampled;
    }
    // Room in the window but not in the chunk: a host of the chunk not yet here.
    const auto& list = pool_list_[role];
    for (int tries = 0; tries < 8 && !list.empty(); ++tries) {
      std::uniform_int_distribution<size_t> pick(0, list.size() - 1);
      const IpAddress& h = list[pick(rng_)];
      if (h.is_v4_mapped() == (version == 4) && !a.flows[role].count(h)) return h;
    }
    return sampled;
  }

  const Skeleton& sk_;
  std::vector<Window> active_;
  absl::flat_hash_set<IpAddress> pool_[2];
  std::vector<IpAddress> pool_list_[2];
  absl::flat_hash_set<FlowKey> tuple_pool_;
  absl::flat_hash_map<FlowKey, std::vector<FlowKey>> tuple_pool_of_;
  absl::flat_hash_map<FlowKey, std::set<int64_t>> tuple_times_;  // the packets of each 5-tuple so far
  bool tuples_ = true;
  std::mt19937_64 rng_{0x5eed5eed};
};

// A chunk between its two halves: the prefixes to sample (the drawn flows'
// first, then the exact ones'), where each flow starts, and the chunk's RNG
// as the first half left it.
struct ChunkPlan {
  explicit ChunkPlan(uint64_t seed) : rng(seed ^ 0x9e3779b97f4a7c15ULL) {}
  std::mt19937_64 rng;
  std::vector<std::vector<Token>> prefixes;
  std::vector<int64_t> starts;
  size_t n_sampled = 0;
};

// The first half: where the skeleton says flows start, their prefixes.
ChunkPlan PlanChunk(const FlowTokenizer& tok, const Skeleton& sk, uint64_t seed) {
  ChunkPlan p(seed);
  const int64_t end = sk.start_ns + sk.duration_ns;
  auto bin_of = [&](int64_t t) {
    return static_cast<size_t>(std::clamp<int64_t>((t - sk.start_ns) / sk.bin_ns, 0, int64_t(sk.bins()) - 1));
  };
  // The exact flows start where they did; the skeleton's bins count them
  // among their new flows, so only the others are drawn.
  std::vector<uint32_t> exact_in_bin(sk.bins(), 0);
  for (const auto& e : sk.exact) {
    if (sk.bins() > 0) ++exact_in_bin[bin_of(sk.start_ns + e.start_offset_us * 1000)];
  }
  p.prefixes.reserve(sk.total_flows() + sk.exact.size());
  for (size_t b = 0; b < sk.bins(); ++b) {
    int64_t bin_start = sk.start_ns + int64_t(b) * sk.bin_ns;
    std::uniform_int_distribution<int64_t> within(0, std::max<int64_t>(sk.bin_ns - 1, 0));
    const uint32_t drawn = sk.new_flows[b] > exact_in_bin[b] ? sk.new_flows[b] - exact_in_bin[b] : 0;
    for (uint32_t j = 0; j < drawn; ++j) {
      int64_t start = std::min(bin_start + within(p.rng), end - 1);
      p.prefixes.push_back({kBos, tok.StartToken(start - sk.start_ns, sk.duration_ns)});
      p.starts.push_back(start);
    }
  }
  p.n_sampled = p.prefixes.size();
  for (const auto& e : sk.exact) {
    const int64_t start = std::min(sk.start_ns + e.start_offset_us * 1000, end - 1);
    p.prefixes.push_back(tok.EncodeHeader(e.key, e.marks, start - sk.start_ns, e.packets, e.duration_us * 1000,
                                          e.ttl, sk.duration_ns));
    p.starts.push_back(start);
  }
  return p;
}

// The second half: the sampled sequences to the chunk's time-ordered packets.
StatusOr<std::vector<PacketRecord>> ExpandChunk(ChunkPlan& plan, const std::vector<std::vector<Token>>& seqs,
                                                const FlowTokenizer& tok, const Skeleton& sk,
                                                const GenerateOptions& opt, GenerateStats& st) {
  auto t1 = std::chrono::steady_clock::now();
  std::mt19937_64& rng = plan.rng;
  const std::vector<int64_t>& starts = plan.starts;
  const size_t n_sampled = plan.n_sampled;
  const int64_t end = sk.start_ns + sk.duration_ns;
  std::vector<PacketRecord> out;
  out.reserve(sk.total_packets() + 16);
  uint64_t max_flow_packets = std::max<uint64_t>(1, sk.total_packets());
  std::vector<DecodedFlow> flows;
  flows.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto flow = tok.Decode(seqs[i], rng);
    if (!flow.ok()) {
      return absl::InternalError(absl::StrCat("sampled sequence ", i, " does not decode: ", flow.status().message()));
    }
    if (i >= n_sampled) {
      // A flow kept exactly: its counts and duration are the record's (the
      // tokens held only their buckets); the model drew its packets.
      const ExactFlow& e = sk.exact[i - n_sampled];
      flow->packets = e.packets;
      flow->duration_ns = std::min<int64_t>(e.duration_us * 1000, end - starts[i]);
      if (flow->head.size() > flow->packets) flow->head.resize(flow->packets);
      // One flow by definition: no gap reaches the idle timeout (the
      // tail's backbone keeps to half of it; so does the head).
      int64_t span = 0;
      for (size_t g = 1; g < flow->head.size(); ++g) {
        flow->head[g].gap_ns = std::min<int64_t>(flow->head[g].gap_ns, kFlowIdleTimeoutNs / 2);
        span += flow->head[g].gap_ns;
      }
      // The head fits the duration, and a flow that is all head ends at it.
      if (span > 0 && (span > flow->duration_ns || flow->head.size() == flow->packets)) {
        const double k = double(flow->duration_ns) / double(span);
        for (size_t g = 1; g < flow->head.size(); ++g) flow->head[g].gap_ns = int64_t(double(flow->head[g].gap_ns) * k);
      }
      if (flow->packets > flow->head.size()) {
        uint64_t head_bytes = 0;
        for (const auto& h : flow->head) head_bytes += h.size;
        const uint64_t rest = flow->packets - flow->head.size();
        if (e.bytes > head_bytes) flow->rest_mean_size = uint32_t((e.bytes - head_bytes + rest / 2) / rest);
      }
    } else {
      // A sample can ask for more than the chunk ever held (an undertrained
      // model, the tail of a bucket): no flow outgrows the chunk's packets or
      // its window, so memory and time stay bounded by the skeleton.
      flow->packets = std::min<uint64_t>(flow->packets, std::max<uint64_t>(max_flow_packets, flow->head.size()));
      flow->duration_ns = std::min<int64_t>(flow->duration_ns, end - starts[i]);
    }
    flows.push_back(std::move(*flow));
  }
  // The skeleton knows the chunk's packet count exactly. Sampled long flows
  // miss it both ways (their counts are log buckets; a few heavy flows carry
  // most packets): the summarised rest of every sampled long flow whose head
  // ends inside the chunk is scaled so that the packets inside the chunk
  // total the skeleton's; exact flows count as they are. (Head packets past
  // the end are dropped; tails are placed inside the chunk by
  // PlaceTailPackets.)
  uint64_t fixed_in = 0, rest = 0;
  std::vector<char> tail_fits(flows.size(), 0);
  for (size_t i = 0; i < flows.size(); ++i) {
    const auto& f = flows[i];
    if (i >= n_sampled) {
      fixed_in += f.packets;
      continue;
    }
    int64_t t = starts[i];
    for (const auto& h : f.head) {
      t += h.gap_ns;
      if (t < end) ++fixed_in;
    }
    if (t < end - 1 && f.packets > f.head.size() && !f.head.empty()) {
      tail_fits[i] = 1;
      rest += f.packets - f.head.size();
    }
  }
  uint64_t target = sk.total_packets();
  if (opt.match_packet_counts && rest > 0 && fixed_in + rest != target) {
    double scale = target > fixed_in ? double(target - fixed_in) / double(rest) : 0.0;
    for (size_t i = 0; i < n_sampled; ++i) {
      auto& f = flows[i];
      if (!tail_fits[i]) continue;
      uint64_t r = f.packets - f.head.size();
      // At least the flow's last packet stays: it carries its duration.
      f.packets = f.head.size() + std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(double(r) * scale)));
    }
  }
  std::vector<ExpandedFlow> expanded(flows.size());
  for (size_t i = 0; i < flows.size(); ++i) {
    expanded[i].packets = tok.Expand(flows[i], starts[i], rng);
    expanded[i].head = std::min(flows[i].head.size(), expanded[i].packets.size());
    if (i >= n_sampled && !expanded[i].packets.empty()) {
      // The record's OR of TCP flags: a bit it lacks was on no packet, so
      // drawn packets lose it (a packet left with none keeps ACK, or the
      // whole OR, rather than become a flagless probe); bits the packets
      // still lack go on the last. A one-packet flow gets exactly its flags.
      const ExactFlow& e = sk.exact[i - n_sampled];
      if (e.key.proto == kProtoTcp) {
        uint8_t have = 0;
        for (auto& p : expanded[i].packets) {
          p.tcp_flags &= e.tcp_flags;
          if (p.tcp_flags == 0) p.tcp_flags = (e.tcp_flags & kTcpAck) ? kTcpAck : e.tcp_flags;
          have |= p.tcp_flags;
        }
        expanded[i].packets.back().tcp_flags |= e.tcp_flags & ~have;
      }
      if (opt.fit_exact_bytes) FitFlowBytes(&expanded[i].packets, e.bytes);
    }
  }
  if (opt.match_packet_counts) PlaceTailPackets(sk, &expanded, rng);
  if (opt.steer_hosts && sk.window_ns > 0 && !sk.windows.empty()) {
    // In start order, the exact flows among the drawn ones.
    std::vector<size_t> order(expanded.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return starts[a] < starts[b]; });
    HostSteering steer(sk);
    steer.set_tuples(opt.steer_tuples);
    for (size_t i : order) steer.Add(expanded[i], i >= n_sampled);
  }
  for (auto& f : expanded) {
    for (auto& p : f.packets) {
      if (p.ts_ns >= end) {
        ++st.dropped_past_end;
        continue;
      }
      MakeWireValid(&p);
      out.push_back(p);
    }
    std::vector<PacketRecord>().swap(f.packets);
  }
  std::stable_sort(out.begin(), out.end(), [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  if (opt.warp_times) MatchPacketCounts(sk, &out);
  st.flows = flows.size();
  st.exact_flows = flows.size() - n_sampled;
  st.packets = out.size();
  st.expand_seconds = SecondsSince(t1);
  return out;
}

SampleOptions SampleOptionsOf(const GenerateOptions& opt) {
  SampleOptions so;
  so.temperature = opt.temperature;
  so.min_p = opt.min_p;
  so.batch_size = opt.batch_size;
  so.threads = opt.threads;
  so.seed = opt.seed;
  return so;
}

}  // namespace

StatusOr<std::vector<PacketRecord>> GenerateChunk(FlowModel& model, const FlowTokenizer& tok, const Skeleton& sk,
                                                  const GenerateOptions& opt, GenerateStats* stats) {
  // A run of one: its draws keyed (opt.seed, index), as Sample keys them
  // without draw_keys.
  GenerateStats one;
  DGC_ASSIGN_OR_RETURN(auto packets, GenerateChunks(model, tok, {&sk}, {opt.seed}, opt, &one));
  if (stats) *stats = one;
  return std::move(packets[0]);
}

StatusOr<std::vector<std::vector<PacketRecord>>> GenerateChunks(FlowModel& model, const FlowTokenizer& tok,
                                                                const std::vector<const Skeleton*>& skeletons,
                                                                const std::vector<uint64_t>& seeds,
                                                                const GenerateOptions& opt, GenerateStats* stats) {
  if (seeds.size() != skeletons.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GenerateChunks: ", seeds.size(), " seeds for ", skeletons.size(), " chunks"));
  }
  GenerateStats local;
  GenerateStats& st = stats ? *stats : local;
  std::vector<ChunkPlan> plans;
  SampleOptions so = SampleOptionsOf(opt);
  // Per chunk, its flows that copy another's packets (exact_templates):
  // flow -> the flow whose sequence it copies past its own header.
  std::vector<std::vector<std::pair<size_t, size_t>>> shared(skeletons.size());
  std::vector<std::vector<Token>> prefixes;
  std::vector<std::pair<size_t, size_t>> sampled;  // (chunk, flow) of each prefix
  for (size_t c = 0; c < skeletons.size(); ++c) {
    plans.push_back(PlanChunk(tok, *skeletons[c], seeds[c]));
    ChunkPlan& plan = plans.back();
    std::vector<char> copies(plan.prefixes.size(), 0);
    if (opt.exact_templates > 0) {
      const auto& exact = skeletons[c]->exact;
      const size_t m = static_cast<size_t>(opt.exact_templates);
      absl::flat_hash_map<std::vector<Token>, std::vector<size_t>> templates;
      for (size_t j = 0; j < exact.size(); ++j) {
        const ExactFlow& e = exact[j];
        const size_t i = plan.n_sampled + j;
        auto& mine = templates[tok.DetailKey(e.key, e.packets, e.duration_us * 1000, e.ttl)];
        if (mine.size() < m) {
          mine.push_back(i);
          continue;
        }
        // Which template: keyed like the flow's draws, so the same for any
        // batching, thread count or run of chunks.
        const size_t from = mine[Mix3(seeds[c], i, 0x7e3a) % mine.size()];
        shared[c].emplace_back(i, from);
        copies[i] = 1;
      }
    }
    for (size_t i = 0; i < plan.prefixes.size(); ++i) {
      if (copies[i]) continue;
      prefixes.push_back(std::move(plan.prefixes[i]));  // a copy's own header stays in the plan
      so.draw_keys.emplace_back(seeds[c], i);  // as GenerateChunk with this seed draws it
      sampled.emplace_back(c, i);
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<Token>> seqs;
  if (!prefixes.empty()) {
    DGC_ASSIGN_OR_RETURN(seqs, model.Sample(prefixes, tok, so));
  }
  std::vector<std::vector<std::vector<Token>>> chunk_seqs(skeletons.size());
  for (size_t c = 0; c < skeletons.size(); ++c) chunk_seqs[c].resize(plans[c].prefixes.size());
  for (size_t k = 0; k < seqs.size(); ++k) chunk_seqs[sampled[k].first][sampled[k].second] = std::move(seqs[k]);
  // A copy is its own header, then the template's tokens past the
  // template's header. One DetailKey means headers of one length (the same
  // family and the same ports with or without a token of their own) and the
  // same grammar after them, so the copy is a whole sequence; Decode, in
  // ExpandChunk, still rejects one that is not.
  for (size_t c = 0; c < skeletons.size(); ++c) {
    for (const auto& [i, from] : shared[c]) {
      std::vector<Token> seq = std::move(plans[c].prefixes[i]);
      const size_t head = seq.size();  // the template's too
      const auto& tmpl = chunk_seqs[c][from];
      if (tmpl.size() > head) seq.insert(seq.end(), tmpl.begin() + static_cast<ptrdiff_t>(head), tmpl.end());
      chunk_seqs[c][i] = std::move(seq);
      ++st.exact_shared;
    }
  }
  const double sample_seconds = SecondsSince(t0);
  std::vector<std::vector<PacketRecord>> out;
  for (size_t c = 0; c < skeletons.size(); ++c) {
    GenerateStats one;
    GenerateOptions o = opt;
    o.seed = seeds[c];
    DGC_ASSIGN_OR_RETURN(auto packets, ExpandChunk(plans[c], chunk_seqs[c], tok, *skeletons[c], o, one));
    st.flows += one.flows;
    st.exact_flows += one.exact_flows;
    st.packets += one.packets;
    st.dropped_past_end += one.dropped_past_end;
    st.expand_seconds += one.expand_seconds;
    out.push_back(std::move(packets));
  }
  st.sample_seconds += sample_seconds;
  return out;
}

}  // namespace dgc::model

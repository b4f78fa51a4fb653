#include "library/fingerprint.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/byte_io.h"
#include "common/base/time.h"

namespace dgc::library {
namespace {

// 2: each histogram as a bitmap of its non-empty bins, then their counts (a
// quiet chunk's fingerprint is mostly empty bins: ~30 B instead of ~70);
// 1: every bin, after a bin count. Both read.
constexpr uint8_t kFingerprintVersion = 2;

// Service ports with their own bin; everything else by range.
int PortBin(const PacketRecord& p) {
  if (!ProtoHasPorts(p.proto) || p.is_later_fragment()) return 15;  // no ports
  auto service = [](uint16_t port) -> int {
    switch (port) {
      case 53: case 5353: return 0;    // DNS, mDNS
      case 80: case 8080: return 1;    // HTTP
      case 443: case 8443: return 2;   // HTTPS, QUIC
      case 123: return 3;              // NTP
      case 67: case 68: case 546: case 547: return 4;  // DHCP
      case 22: case 23: return 5;      // SSH, telnet
      case 1883: case 8883: return 6;  // MQTT
      case 1900: case 5683: case 3702: return 7;  // SSDP, CoAP, WS-Discovery
      case 137: case 138: case 139: case 445: return 8;  // NetBIOS, SMB
      case 25: case 465: case 587: case 993: case 143: case 110: case 995: return 9;  // mail
      default: return -1;
    }
  };
  int s = service(p.dport);
  if (s < 0) s = service(p.sport);
  if (s >= 0) return s;
  uint16_t port = std::min(p.sport, p.dport);
  if (port < 1024) return 10;
  if (port < 5000) return 11;
  if (port < 10000) return 12;
  if (port < 49152) return 13;
  return 14;
}

int SizeBin(uint32_t len) {
  // Half-octave buckets: 2*log2(len) from 10 (32 B) to 21 (~1.4 kB) and above.
  double b = 2 * std::log2(std::max<uint32_t>(len, 1));
  return std::clamp(static_cast<int>(b) - 10, 0, Fingerprint::kSizeBins - 1);
}

int Log2Bin(uint64_t n, int bins) {
  int b = 0;
  while (n > 1 && b < bins - 1) {
    n >>= 1;
    ++b;
  }
  return b;
}

template <size_t N>
double JsDistance(const std::array<uint32_t, N>& a, const std::array<uint32_t, N>& b) {
  double sa = 0, sb = 0;
  for (size_t i = 0; i < N; ++i) {
    sa += a[i];
    sb += b[i];
  }
  if (sa == 0 && sb == 0) return 0;
  if (sa == 0 || sb == 0) return 1;
  double js = 0;
  for (size_t i = 0; i < N; ++i) {
    double p = a[i] / sa, q = b[i] / sb, m = (p + q) / 2;
    if (p > 0) js += 0.5 * p * std::log2(p / m);
    if (q > 0) js += 0.5 * q * std::log2(q / m);
  }
  return std::sqrt(std::clamp(js, 0.0, 1.0));
}

template <size_t N>
bool GetHist(ByteReader* r, std::array<uint32_t, N>* h) {
  uint8_t n = 0;
  if (!r->U8(&n) || n != N) return false;
  for (auto& v : *h) {
    uint64_t x;
    if (!r->Varint(&x) || x > UINT32_MAX) return false;
    v = static_cast<uint32_t>(x);
  }
  return true;
}

template <size_t N>
void PutSparseHist(ByteWriter* w, const std::array<uint32_t, N>& h) {
  static_assert(N <= 32);
  uint64_t present = 0;
  for (size_t i = 0; i < N; ++i) present |= uint64_t(h[i] != 0) << i;
  w->Varint(present);
  for (uint32_t v : h) {
    if (v != 0) w->Varint(v);
  }
}

template <size_t N>
bool GetSparseHist(ByteReader* r, std::array<uint32_t, N>* h) {
  uint64_t present = 0;
  if (!r->Varint(&present) || (present >> N) != 0) return false;
  for (size_t i = 0; i < N; ++i) {
    (*h)[i] = 0;
    if (!(present >> i & 1)) continue;
    uint64_t x;
    if (!r->Varint(&x) || x == 0 || x > UINT32_MAX) return false;
    (*h)[i] = static_cast<uint32_t>(x);
  }
  return true;
}

}  // namespace

Fingerprint Fingerprint::Compute(absl::Span<const PacketRecord> packets, absl::Span<const Flow> flows,
                                 int64_t start_ns, int64_t duration_ns) {
  Fingerprint f;
  f.packets = packets.size();
  f.flows = flows.size();
  int64_t seconds = std::max<int64_t>(1, (duration_ns + kNanosPerSecond - 1) / kNanosPerSecond);
  std::vector<uint32_t> per_second(static_cast<size_t>(std::min<int64_t>(seconds, 1 << 22)), 0);
  for (const auto& p : packets) {
    int proto = p.proto == kProtoTcp ? 0 : p.proto == kProtoUdp ? 1 : p.proto == kProtoIcmp ? 2
              : p.proto == kProtoIcmpV6 ? 3 : 4;
    f.proto[proto]++;
    f.port[PortBin(p)]++;
    f.size[SizeBin(p.ip_len)]++;
    int64_t s = (p.ts_ns - start_ns) / kNanosPerSecond;
    if (s >= 0 && s < static_cast<int64_t>(per_second.size())) per_second[s]++;
  }
  for (uint32_t n : per_second) f.rate[Log2Bin(uint64_t(n) + 1, kRateBins)]++;
  for (const auto& fl : flows) f.flow[Log2Bin(fl.packets, kFlowBins)]++;
  return f;
}

void Fingerprint::Add(const Fingerprint& o) {
  auto add = [](auto& x, const auto& y) {
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  };
  add(proto, o.proto);
  add(port, o.port);
  add(size, o.size);
  add(rate, o.rate);
  add(flow, o.flow);
  packets += o.packets;
  flows += o.flows;
}

std::string Fingerprint::Encode() const {
  ByteWriter w;
  w.U8('F');
  w.U8(kFingerprintVersion);
  w.Varint(packets);
  w.Varint(flows);
  PutSparseHist(&w, proto);
  PutSparseHist(&w, port);
  PutSparseHist(&w, size);
  PutSparseHist(&w, rate);
  PutSparseHist(&w, flow);
  return w.Take();
}

StatusOr<Fingerprint> Fingerprint::Decode(absl::string_view bytes, absl::string_view name) {
  ByteReader r(bytes);
  Fingerprint f;
  uint8_t tag = 0, version = 0;
  bool ok = r.U8(&tag) && r.U8(&version) && tag == 'F' && (version == 1 || version == 2) &&
            r.Varint(&f.packets) && r.Varint(&f.flows);
  if (ok && version == 1) {
    ok = GetHist(&r, &f.proto) && GetHist(&r, &f.port) && GetHist(&r, &f.size) && GetHist(&r, &f.rate) &&
         GetHist(&r, &f.flow);
  } else if (ok) {
    ok = GetSparseHist(&r, &f.proto) && GetSparseHist(&r, &f.port) && GetSparseHist(&r, &f.size) &&
         GetSparseHist(&r, &f.rate) && GetSparseHist(&r, &f.flow);
  }
  ok = ok && r.remaining() == 0;
  if (!ok) return absl::DataLossError(absl::StrCat("corrupt fingerprint of ", name));
  return f;
}

Drift ComputeDrift(const Fingerprint& a, const Fingerprint& b) {
  Drift d;
  d.proto = JsDistance(a.proto, b.proto);
  d.port = JsDistance(a.port, b.port);
  d.size = JsDistance(a.size, b.size);
  d.rate = JsDistance(a.rate, b.rate);
  d.flow = JsDistance(a.flow, b.flow);
  d.score = (d.proto + d.port + d.size + d.rate + d.flow) / 5;
  return d;
}

std::string Drift::Describe() const {
  return absl::StrFormat("%.3f (proto %.2f port %.2f size %.2f rate %.2f flow %.2f)", score, proto, port, size,
                         rate, flow);
}

const char* DecisionName(ParentDecision::Kind kind) {
  switch (kind) {
    case ParentDecision::Kind::kContinue: return "continue";
    case ParentDecision::Kind::kSwitch: return "switch";
    case ParentDecision::Kind::kBase: return "base";
    case ParentDecision::Kind::kRetrain: return "retrain";
  }
  return "unknown";
}

ParentDecision ParentSelector::Decide(const Fingerprint& chunk, const std::vector<ParentCandidate>& recent,
                                      const std::optional<ParentCandidate>& base,
                                      const std::vector<ParentCandidate>& previous_full) const {
  const Options& o = options_;
  ParentDecision d;
  using K = ParentDecision::Kind;
  if (recent.empty() && !base) {
    d.kind = K::kRetrain;
    d.reason = "no model for this link yet: train a base";
    return d;
  }
  auto too_deep = [&](const ParentCandidate& c) { return !c.full && c.depth + 1 > o.max_depth; };
  const ParentCandidate& latest = recent.empty() ? *base : recent.front();
  std::optional<Drift> latest_drift;
  if (latest.fingerprint) latest_drift = ComputeDrift(chunk, *latest.fingerprint);
  bool noisy = chunk.packets < o.min_packets;
  if (!latest_drift || noisy || latest_drift->score <= o.drift_threshold) {
    d.drift = latest_drift ? latest_drift->score : -1;
    if (too_deep(latest)) {
      d.kind = K::kRetrain;
      d.trigger = ParentDecision::Trigger::kDepth;
      d.reason = absl::StrFormat("chain depth %d would exceed max_depth %d: train a new base", latest.depth + 1,
                                 o.max_depth);
      return d;
    }
    d.kind = K::kContinue;
    d.trigger = latest_drift && !noisy ? ParentDecision::Trigger::kWithinDrift : ParentDecision::Trigger::kUnknownDrift;
    d.parent_id = latest.model_id;
    d.reason = !latest_drift ? absl::StrCat("latest model ", latest.model_id, " (its fingerprint is unknown)")
               : noisy ? absl::StrFormat("latest model %s (only %d packets: too few to judge drift)",
                                         latest.model_id, chunk.packets)
                       : absl::StrFormat("latest model %s, drift %s <= %.2f", latest.model_id,
                                         latest_drift->Describe(), o.drift_threshold);
    return d;
  }
  // The latest model is far: the nearest usable candidate.
  const ParentCandidate* best = nullptr;
  Drift best_drift;
  bool best_is_base = false;
  auto consider = [&](const ParentCandidate& c, bool is_base) {
    if (!c.fingerprint || too_deep(c)) return;
    Drift dr = ComputeDrift(chunk, *c.fingerprint);
    if (!best || dr.score < best_drift.score) {
      best = &c;
      best_drift = dr;
      best_is_base = is_base;
    }
  };
  std::set<std::string> seen;
  for (size_t i = 0; i < recent.size() && i < size_t(std::max(o.recent_models, 1)); ++i) {
    seen.insert(recent[i].model_id);
    consider(recent[i], false);
  }
  if (base && seen.insert(base->model_id).second) consider(*base, true);
  for (size_t i = 0; i < previous_full.size() && i < size_t(std::max(o.previous_full_models, 0)); ++i) {
    if (seen.insert(previous_full[i].model_id).second) consider(previous_full[i], false);
  }
  d.trigger = ParentDecision::Trigger::kDrift;
  std::string why = absl::StrFormat("drift %s against latest model %s > %.2f", latest_drift->Describe(),
                                    latest.model_id, o.drift_threshold);
  if (!best || best_drift.score > o.retrain_threshold) {
    d.kind = K::kRetrain;
    d.drift = best ? best_drift.score : latest_drift->score;
    d.reason = best ? absl::StrFormat("%s; nearest model %s at %.3f > retrain threshold %.2f: train a new base",
                                      why, best->model_id, best_drift.score, o.retrain_threshold)
                    : absl::StrCat(why, "; no usable candidate: train a new base");
    return d;
  }
  // The root of the latest chain is kBase wherever it was found; any other
  // model (an earlier full model included) is a switch.
  bool is_base = best_is_base || (base && best->model_id == base->model_id);
  d.kind = best == &latest ? K::kContinue : is_base ? K::kBase : K::kSwitch;
  d.parent_id = best->model_id;
  d.drift = best_drift.score;
  d.reason = absl::StrFormat("%s; nearest model %s%s at %s", why, best->model_id,
                             !is_base && best->full ? " (an earlier full model)" : "", best_drift.Describe());
  return d;
}

}  // namespace dgc::library

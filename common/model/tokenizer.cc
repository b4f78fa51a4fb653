#include "common/model/tokenizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace dgc::model {
namespace {

constexpr int32_t kExactPacketCounts = 16;
constexpr double kPacketCountRatio = 1.189207115002721;  // 2^(1/4)
constexpr int32_t kPacketCountBuckets = 100;             // up to ~2.5e8 packets
constexpr int32_t kLogUsPerDecade = 20;
constexpr int32_t kLogUsBuckets = 1 + 11 * kLogUsPerDecade;  // < 1 us, then 1 us .. 1e11 us
constexpr uint32_t kExactSizes = 1600;
constexpr int32_t kLargeSizeBuckets = 60;  // 20 per decade above 1599 bytes

uint8_t FlagsOf(uint8_t proto, uint8_t flags) { return proto == kProtoTcp ? flags : 0; }

// Bits of GrammarState::c.
constexpr int32_t kTcp = 1, kPorts = 2, kV6 = 4, kTtlVaries = 8, kRest = 16, kMulti = 32;

}  // namespace

nlohmann::json TokenizerConfig::ToJson() const {
  return {{"max_packets", max_packets}, {"start_buckets", start_buckets}};
}

StatusOr<TokenizerConfig> TokenizerConfig::FromJson(const nlohmann::json& j) {
  TokenizerConfig c;
  try {
    c.max_packets = j.at("max_packets").get<int32_t>();
    c.start_buckets = j.at("start_buckets").get<int32_t>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer config: ", e.what()));
  }
  if (c.max_packets < 1 || c.max_packets > kExactPacketCounts || c.start_buckets < 1 ||
      c.start_buckets > 4096) {
    return absl::InvalidArgumentError("tokenizer config out of range");
  }
  return c;
}

const std::vector<uint16_t>& CommonPorts() {
  static const std::vector<uint16_t> ports = [] {
    std::vector<uint16_t> p;
    for (uint16_t i = 0; i < 1024; ++i) p.push_back(i);
    for (uint16_t q : {1080, 1194, 1433, 1521, 1701, 1723, 1812, 1813, 1883, 1900, 2049, 2082, 2083,
                       2181, 2375, 2376, 3000, 3128, 3306, 3389, 3478, 3479, 3480, 3481, 4500, 4789,
                       5000, 5060, 5061, 5222, 5223, 5228, 5353, 5355, 5432, 5683, 5900, 5938, 6379,
                       6443, 6881, 6969, 7000, 8000, 8008, 8080, 8081, 8443, 8883, 8888, 9000, 9001,
                       9090, 9092, 9100, 9200, 9418, 10000, 11211, 19302, 27017, 50000}) {
      p.push_back(q);
    }
    return p;
  }();
  return ports;
}

namespace {
int32_t CommonPortIndex(uint16_t port) {
  if (port < 1024) return port;
  const auto& ports = CommonPorts();
  auto it = std::lower_bound(ports.begin() + 1024, ports.end(), port);
  if (it != ports.end() && *it == port) return static_cast<int32_t>(it - ports.begin());
  return -1;
}
}  // namespace

FlowTokenizer::FlowTokenizer(TokenizerConfig config) : config_(config) {
  config_.max_packets = std::clamp(config_.max_packets, 1, kExactPacketCounts);
  config_.start_buckets = std::clamp(config_.start_buckets, 1, 4096);
  Token next = 3;  // after kPad, kBos, kEos
  auto take = [&next](int32_t n) {
    TokenRange r{next, next + n};
    next += n;
    return r;
  };
  start_ = take(config_.start_buckets);
  mark_ = take(4);
  family_ = take(2);
  proto_ = take(256);
  addr_ = take(256);
  port_common_ = take(static_cast<int32_t>(CommonPorts().size()));
  port_hi_ = take(256);  // must follow port_common_: a port is either, one range
  port_lo_ = take(256);
  npkt_ = take(kExactPacketCounts + kPacketCountBuckets);
  dur_ = take(kLogUsBuckets);
  ttl_ = take(256);
  ttl_mode_ = take(2);
  size_ = take(static_cast<int32_t>(kExactSizes) + kLargeSizeBuckets);
  gap_ = take(kLogUsBuckets);
  flags_ = take(256);
  vocab_size_ = next;
  int32_t k = config_.max_packets;
  max_length_ = 1 + 1 + 1 + 1 + 1 + 16 + 16 + 2 + 2 + 1 + 1 + 1 + 1 + 4 * k + 2 + 1;
}

int32_t FlowTokenizer::PacketCountBucket(uint64_t n) {
  if (n == 0) n = 1;
  if (n <= static_cast<uint64_t>(kExactPacketCounts)) return static_cast<int32_t>(n - 1);
  int32_t b = static_cast<int32_t>(std::floor(std::log(double(n) / (kExactPacketCounts + 1)) /
                                              std::log(kPacketCountRatio)));
  return kExactPacketCounts + std::clamp(b, 0, kPacketCountBuckets - 1);
}

std::pair<uint64_t, uint64_t> FlowTokenizer::PacketCountRange(int32_t bucket) {
  if (bucket < kExactPacketCounts) return {uint64_t(bucket) + 1, uint64_t(bucket) + 2};
  int32_t b = bucket - kExactPacketCounts;
  auto edge = [](int32_t i) {
    return static_cast<uint64_t>(std::ceil((kExactPacketCounts + 1) * std::pow(kPacketCountRatio, i) - 1e-9));
  };
  uint64_t lo = edge(b), hi = std::max(edge(b + 1), lo + 1);
  return {lo, hi};
}

int32_t FlowTokenizer::LogUsBucket(int64_t ns) {
  double us = double(ns) / 1000.0;
  if (us < 1.0) return 0;
  int32_t b = 1 + static_cast<int32_t>(std::floor(std::log10(us) * kLogUsPerDecade));
  return std::clamp(b, 1, kLogUsBuckets - 1);
}

std::pair<double, double> FlowTokenizer::LogUsRange(int32_t bucket) {
  if (bucket <= 0) return {0.0, 1.0};
  return {std::pow(10.0, double(bucket - 1) / kLogUsPerDecade), std::pow(10.0, double(bucket) / kLogUsPerDecade)};
}

int32_t FlowTokenizer::SizeBucket(uint32_t size) {
  if (size < kExactSizes) return static_cast<int32_t>(size);
  int32_t b = static_cast<int32_t>(std::floor(std::log10(double(size) / kExactSizes) * 20));
  return static_cast<int32_t>(kExactSizes) + std::clamp(b, 0, kLargeSizeBuckets - 1);
}

std::pair<uint32_t, uint32_t> FlowTokenizer::SizeRange(int32_t bucket) {
  if (bucket < static_cast<int32_t>(kExactSizes)) return {uint32_t(bucket), uint32_t(bucket) + 1};
  int32_t b = bucket - static_cast<int32_t>(kExactSizes);
  auto edge = [](int32_t i) { return static_cast<uint32_t>(std::ceil(kExactSizes * std::pow(10.0, i / 20.0))); };
  uint32_t lo = edge(b), hi = std::max(edge(b + 1), lo + 1);
  return {lo, hi};
}

Token FlowTokenizer::StartToken(int64_t offset_ns, int64_t chunk_ns) const {
  int32_t n = config_.start_buckets;
  int64_t b = chunk_ns > 0 ? static_cast<int64_t>(static_cast<double>(offset_ns) / double(chunk_ns) * n) : 0;
  return start_.begin + static_cast<Token>(std::clamp<int64_t>(b, 0, n - 1));
}

void FlowTokenizer::EncodePort(uint16_t port, std::vector<Token>* out) const {
  int32_t idx = CommonPortIndex(port);
  if (idx >= 0) {
    out->push_back(port_common_.begin + idx);
  } else {
    out->push_back(port_hi_.begin + (port >> 8));
    out->push_back(port_lo_.begin + (port & 0xff));
  }
}

void FlowTokenizer::AppendCounts(uint64_t packets, int64_t duration_ns, uint8_t ttl, std::vector<Token>* t) const {
  const uint64_t n = std::max<uint64_t>(1, packets);
  t->push_back(npkt_.begin + PacketCountBucket(n));
  if (n > 1) t->push_back(dur_.begin + LogUsBucket(duration_ns));
  t->push_back(ttl_.begin + ttl);
}

std::vector<Token> FlowTokenizer::EncodeHeader(const FlowKey& key, uint8_t marks, int64_t offset_ns, uint64_t packets,
                                               int64_t duration_ns, uint8_t ttl, int64_t chunk_ns) const {
  std::vector<Token> t;
  t.reserve(static_cast<size_t>(max_length_));
  t.push_back(kBos);
  t.push_back(StartToken(offset_ns, chunk_ns));
  t.push_back(mark_.begin + (marks & 3));
  bool v6 = key.version == 6;
  t.push_back(family_.begin + (v6 ? 1 : 0));
  t.push_back(proto_.begin + key.proto);
  for (const IpAddress* a : {&key.src, &key.dst}) {
    for (int i = v6 ? 0 : 12; i < 16; ++i) t.push_back(addr_.begin + a->bytes[i]);
  }
  if (ProtoHasPorts(key.proto)) {
    EncodePort(key.sport, &t);
    EncodePort(key.dport, &t);
  }
  AppendCounts(packets, duration_ns, ttl, &t);
  return t;
}

std::vector<Token> FlowTokenizer::DetailKey(const FlowKey& key, uint64_t packets, int64_t duration_ns,
                                            uint8_t ttl) const {
  std::vector<Token> t;
  t.reserve(8);
  t.push_back(family_.begin + (key.version == 6 ? 1 : 0));
  t.push_back(proto_.begin + key.proto);
  if (ProtoHasPorts(key.proto)) {
    for (uint16_t port : {key.sport, key.dport}) {
      const int32_t idx = CommonPortIndex(port);
      t.push_back(idx >= 0 ? port_common_.begin + idx : kPad);
    }
  }
  AppendCounts(packets, duration_ns, ttl, &t);
  return t;
}

std::vector<Token> FlowTokenizer::Encode(const FlowSample& fs, int64_t chunk_start_ns, int64_t chunk_ns) const {
  const Flow& f = fs.flow;
  const auto& ps = fs.packets;
  uint64_t n = std::max<uint64_t>(1, ps.size());
  uint8_t ttl0 = ps.empty() ? 64 : ps[0].ttl;
  std::vector<Token> t =
      EncodeHeader(f.key, f.marks, f.first_ns - chunk_start_ns, n, f.duration_ns(), ttl0, chunk_ns);
  bool varies = false;
  for (const auto& p : ps) varies |= p.ttl != ttl0;
  if (n > 1) t.push_back(ttl_mode_.begin + (varies ? 1 : 0));
  bool tcp = f.key.proto == kProtoTcp;
  size_t head = std::min<size_t>(ps.size(), static_cast<size_t>(config_.max_packets));
  for (size_t g = 0; g < head; ++g) {
    t.push_back(size_.begin + SizeBucket(ps[g].ip_len));
    if (g > 0) t.push_back(gap_.begin + LogUsBucket(ps[g].ts_ns - ps[g - 1].ts_ns));
    if (tcp) t.push_back(flags_.begin + ps[g].tcp_flags);
    if (varies) t.push_back(ttl_.begin + ps[g].ttl);
  }
  if (ps.size() > head) {
    uint64_t sum = 0;
    uint8_t fl = 0;
    for (size_t i = head; i < ps.size(); ++i) {
      sum += ps[i].ip_len;
      fl |= ps[i].tcp_flags;
    }
    uint32_t mean = static_cast<uint32_t>((sum + (ps.size() - head) / 2) / (ps.size() - head));
    t.push_back(size_.begin + SizeBucket(mean));
    if (tcp) t.push_back(flags_.begin + fl);
  }
  t.push_back(kEos);
  return t;
}

GrammarState FlowTokenizer::Start() const {
  GrammarState s;
  s.step = kStepStart;
  return s;
}

TokenRange FlowTokenizer::Allowed(const GrammarState& s) const {
  switch (static_cast<Step>(s.step)) {
    case kStepStart: return start_;
    case kStepMark: return mark_;
    case kStepFamily: return family_;
    case kStepProto: return proto_;
    case kStepSrc:
    case kStepDst: return addr_;
    case kStepSport:
    case kStepDport: return {port_common_.begin, port_hi_.end};
    case kStepSportLo:
    case kStepDportLo: return port_lo_;
    case kStepNpkt: return npkt_;
    case kStepDur: return dur_;
    case kStepTtl:
    case kStepPktTtl: return ttl_;
    case kStepTtlMode: return ttl_mode_;
    case kStepSize:
    case kStepRestSize: return size_;
    case kStepGap: return gap_;
    case kStepFlags:
    case kStepRestFlags: return flags_;
    case kStepEos: return {kEos, kEos + 1};
    case kStepDone: break;
  }
  return {kPad, kPad + 1};
}

void FlowTokenizer::BeginPackets(GrammarState* s) const {
  s->a = 0;
  s->step = kStepSize;
}

void FlowTokenizer::EndPacket(GrammarState* s) const {
  s->a++;
  if (s->a < s->b) {
    s->step = kStepSize;
  } else if (s->c & kRest) {
    s->step = kStepRestSize;
  } else {
    s->step = kStepEos;
  }
}

void FlowTokenizer::Advance(GrammarState* s, Token tok) const {
  int32_t addr_len = (s->c & kV6) ? 16 : 4;
  switch (static_cast<Step>(s->step)) {
    case kStepStart: s->step = kStepMark; break;
    case kStepMark: s->step = kStepFamily; break;
    case kStepFamily:
      if (tok == family_.begin + 1) s->c |= kV6;
      s->step = kStepProto;
      break;
    case kStepProto: {
      uint8_t proto = static_cast<uint8_t>(tok - proto_.begin);
      if (proto == kProtoTcp) s->c |= kTcp;
      if (ProtoHasPorts(proto)) s->c |= kPorts;
      s->a = 0;
      s->step = kStepSrc;
      break;
    }
    case kStepSrc:
      if (++s->a == addr_len) {
        s->a = 0;
        s->step = kStepDst;
      }
      break;
    case kStepDst:
      if (++s->a == addr_len) s->step = (s->c & kPorts) ? kStepSport : kStepNpkt;
      break;
    case kStepSport: s->step = port_hi_.Contains(tok) ? kStepSportLo : kStepDport; break;
    case kStepSportLo: s->step = kStepDport; break;
    case kStepDport: s->step = port_hi_.Contains(tok) ? kStepDportLo : kStepNpkt; break;
    case kStepDportLo: s->step = kStepNpkt; break;
    case kStepNpkt: {
      int32_t bucket = tok - npkt_.begin;
      uint64_t lo = PacketCountRange(bucket).first;
      s->d = bucket;
      s->b = static_cast<int32_t>(std::min<uint64_t>(lo, uint64_t(config_.max_packets)));
      if (lo > uint64_t(config_.max_packets)) s->c |= kRest;
      if (lo > 1) {
        s->c |= kMulti;
        s->step = kStepDur;
      } else {
        s->step = kStepTtl;
      }
      break;
    }
    case kStepDur: s->step = kStepTtl; break;
    case kStepTtl:
      if (s->c & kMulti) {
        s->step = kStepTtlMode;
      } else {
        BeginPackets(s);
      }
      break;
    case kStepTtlMode:
      if (tok == ttl_mode_.begin + 1) s->c |= kTtlVaries;
      BeginPackets(s);
      break;
    case kStepSize:
      if (s->a > 0) {
        s->step = kStepGap;
        break;
      }
      [[fallthrough]];
    case kStepGap:
      if (s->c & kTcp) {
        s->step = kStepFlags;
      } else if (s->c & kTtlVaries) {
        s->step = kStepPktTtl;
      } else {
        EndPacket(s);
      }
      break;
    case kStepFlags:
      if (s->c & kTtlVaries) {
        s->step = kStepPktTtl;
      } else {
        EndPacket(s);
      }
      break;
    case kStepPktTtl: EndPacket(s); break;
    case kStepRestSize: s->step = (s->c & kTcp) ? kStepRestFlags : kStepEos; break;
    case kStepRestFlags: s->step = kStepEos; break;
    case kStepEos:
      s->step = kStepDone;
      s->done = true;
      break;
    case kStepDone: break;
  }
}

StatusOr<DecodedFlow> FlowTokenizer::Decode(const std::vector<Token>& tokens, std::mt19937_64& rng) const {
  if (tokens.size() < 2 || tokens[0] != kBos) return absl::InvalidArgumentError("sequence does not start with BOS");
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  auto log_uniform_ns = [&](int32_t bucket) -> int64_t {
    auto [lo, hi] = LogUsRange(bucket);
    double us = bucket == 0 ? u01(rng) * hi : lo * std::pow(hi / lo, u01(rng));
    return static_cast<int64_t>(us * 1000.0);
  };
  auto draw_size = [&](int32_t bucket) -> uint32_t {
    auto [lo, hi] = SizeRange(bucket);
    return hi - lo <= 1 ? lo : lo + static_cast<uint32_t>(rng() % (hi - lo));
  };
  DecodedFlow f;
  GrammarState s = Start();
  int addr_i = 0;
  uint32_t pending_hi = 0;
  DecodedFlow::Packet pkt;
  for (size_t i = 1; i < tokens.size(); ++i) {
    Token t = tokens[i];
    if (s.done) return absl::InvalidArgumentError("tokens after EOS");
    if (!Allowed(s).Contains(t)) {
      return absl::InvalidArgumentError(absl::StrCat("token ", t, " not allowed at position ", i));
    }
    switch (static_cast<Step>(s.step)) {
      case kStepStart: f.start_bucket = t - start_.begin; break;
      case kStepMark: f.marks = static_cast<uint8_t>(t - mark_.begin); break;
      case kStepFamily: f.version = t == family_.begin + 1 ? 6 : 4; break;
      case kStepProto: f.proto = static_cast<uint8_t>(t - proto_.begin); break;
      case kStepSrc:
      case kStepDst: {
        IpAddress& a = s.step == kStepSrc ? f.src : f.dst;
        if (f.version == 4) {
          if (addr_i == 0) a = IpAddress::FromV4(uint32_t(0));
          a.bytes[12 + addr_i] = static_cast<uint8_t>(t - addr_.begin);
        } else {
          a.bytes[addr_i] = static_cast<uint8_t>(t - addr_.begin);
        }
        addr_i = (addr_i + 1) % (f.version == 4 ? 4 : 16);
        break;
      }
      case kStepSport:
      case kStepDport: {
        uint16_t& port = s.step == kStepSport ? f.sport : f.dport;
        if (port_hi_.Contains(t)) {
          pending_hi = static_cast<uint32_t>(t - port_hi_.begin);
        } else {
          port = CommonPorts()[static_cast<size_t>(t - port_common_.begin)];
        }
        break;
      }
      case kStepSportLo: f.sport = static_cast<uint16_t>(pending_hi << 8 | uint32_t(t - port_lo_.begin)); break;
      case kStepDportLo: f.dport = static_cast<uint16_t>(pending_hi << 8 | uint32_t(t - port_lo_.begin)); break;
      case kStepNpkt: {
        auto [lo, hi] = PacketCountRange(t - npkt_.begin);
        f.packets = hi - lo <= 1 ? lo : lo + rng() % (hi - lo);
        break;
      }
      case kStepDur: f.duration_ns = log_uniform_ns(t - dur_.begin); break;
      case kStepTtl: f.ttl = static_cast<uint8_t>(t - ttl_.begin); break;
      case kStepTtlMode: f.ttl_varies = t == ttl_mode_.begin + 1; break;
      case kStepSize:
        pkt = DecodedFlow::Packet{};
        pkt.size = draw_size(t - size_.begin);
        pkt.ttl = f.ttl;
        break;
      case kStepGap: pkt.gap_ns = log_uniform_ns(t - gap_.begin); break;
      case kStepFlags: pkt.flags = static_cast<uint8_t>(t - flags_.begin); break;
      case kStepPktTtl: pkt.ttl = static_cast<uint8_t>(t - ttl_.begin); break;
      case kStepRestSize: f.rest_mean_size = draw_size(t - size_.begin); break;
      case kStepRestFlags: f.rest_flags = static_cast<uint8_t>(t - flags_.begin); break;
      case kStepEos:
      case kStepDone: break;
    }
    Step before = static_cast<Step>(s.step);
    int32_t group_before = s.a;
    Advance(&s, t);
    // A packet group ends when the grammar moves to another group or past them.
    bool in_group = before == kStepSize || before == kStepGap || before == kStepFlags || before == kStepPktTtl;
    bool still_same = (s.step == kStepGap || s.step == kStepFlags || s.step == kStepPktTtl) && s.a == group_before;
    if (in_group && !still_same) f.head.push_back(pkt);
  }
  if (!s.done) return absl::InvalidArgumentError("sequence ends before EOS");
  if (f.packets < f.head.size()) f.packets = f.head.size();
  return f;
}

std::vector<PacketRecord> FlowTokenizer::Expand(const DecodedFlow& f, int64_t start_ns, std::mt19937_64& rng) const {
  std::vector<PacketRecord> out;
  out.reserve(f.packets);
  PacketRecord base;
  base.version = f.version;
  base.src = f.src;
  base.dst = f.dst;
  base.proto = f.proto;
  base.sport = f.sport;
  base.dport = f.dport;
  base.frag = f.version == 4 ? kFragDontFragment : 0;
  base.flags = (f.marks & kFlowContinued) ? kPktFlowContinued : 0;
  uint32_t ip_id = static_cast<uint32_t>(rng());
  int64_t t = start_ns;
  for (size_t g = 0; g < f.head.size(); ++g) {
    const auto& h = f.head[g];
    t += h.gap_ns;
    PacketRecord p = base;
    p.ts_ns = t;
    p.ip_len = h.size;
    p.tcp_flags = FlagsOf(f.proto, h.flags);
    p.ttl = f.ttl_varies ? h.ttl : f.ttl;
    p.ip_id = (ip_id++) & (f.version == 4 ? 0xffff : 0xffffffff);
    if (g > 0) p.flags = 0;
    out.push_back(p);
  }
  uint64_t rest = f.packets > f.head.size() ? f.packets - f.head.size() : 0;
  if (rest == 0) return out;
  // The rest: times uniform over what the duration leaves, the last at its end.
  int64_t remaining = std::max<int64_t>(0, f.duration_ns - (t - start_ns));
  std::vector<int64_t> times(rest);
  std::uniform_int_distribution<int64_t> when(0, std::max<int64_t>(remaining, 0));
  for (auto& x : times) x = when(rng);
  times.back() = remaining;
  std::sort(times.begin(), times.end());
  // Sizes: drawn from the head's sizes, tilted so their mean is the summary's.
  std::vector<double> sizes;
  for (const auto& h : f.head) sizes.push_back(h.size);
  double target = f.rest_mean_size;
  double lo = *std::min_element(sizes.begin(), sizes.end()), hi = *std::max_element(sizes.begin(), sizes.end());
  std::vector<double> w(sizes.size(), 1.0);
  if (hi - lo < 0.5) {
    // one size only: keep it, unless the summary is far from it
    if (std::abs(target - lo) > 0.1 * std::max(lo, 1.0)) sizes.assign(1, target), w.assign(1, 1.0);
  } else if (target <= lo || target >= hi) {
    // The rest is unlike the head (a bulk transfer after a small handshake):
    // the summary's mean is the best size there is.
    sizes.assign(1, target);
    w.assign(1, 1.0);
  } else {
    double a = -50.0 / (hi - lo), b = 50.0 / (hi - lo);
    for (int it = 0; it < 60; ++it) {
      double theta = (a + b) / 2, num = 0, den = 0;
      for (double s : sizes) {
        double e = std::exp(theta * (s - lo));
        num += e * s;
        den += e;
      }
      (num / den < target ? a : b) = theta;
    }
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::exp(a * (sizes[i] - lo));
  }
  std::discrete_distribution<size_t> pick_size(w.begin(), w.end());
  std::vector<uint8_t> flag_choices;
  if (f.proto == kProtoTcp) {
    for (const auto& h : f.head) {
      if (!(h.flags & 0x07)) flag_choices.push_back(h.flags);  // no SYN, FIN or RST mid-flow
    }
    if (flag_choices.empty()) flag_choices.push_back(0x10);
  }
  uint8_t last_ttl = f.head.empty() ? f.ttl : (f.ttl_varies ? f.head.back().ttl : f.ttl);
  for (uint64_t i = 0; i < rest; ++i) {
    PacketRecord p = base;
    p.flags = 0;
    p.ts_ns = t + times[i];
    p.ip_len = static_cast<uint32_t>(std::lround(sizes[pick_size(rng)]));
    p.ttl = last_ttl;
    p.ip_id = (ip_id++) & (f.version == 4 ? 0xffff : 0xffffffff);
    if (f.proto == kProtoTcp) {
      p.tcp_flags = flag_choices[rng() % flag_choices.size()];
      if (i + 1 == rest && (f.rest_flags & 0x01)) p.tcp_flags = 0x11;
      if (i + 1 == rest && (f.rest_flags & 0x04)) p.tcp_flags = 0x14;
    }
    out.push_back(p);
  }
  return out;
}

std::vector<FlowSample> FlowsOfChunk(const Chunk& chunk) {
  std::vector<uint32_t> of;
  std::vector<Flow> flows = BuildFlows(chunk.packets, chunk.end_ns(), &of);
  std::vector<FlowSample> out(flows.size());
  for (size_t i = 0; i < flows.size(); ++i) {
    out[i].flow = flows[i];
    out[i].packets.reserve(flows[i].packets);
  }
  for (size_t i = 0; i < chunk.packets.size(); ++i) out[of[i]].packets.push_back(chunk.packets[i]);
  return out;
}

}  // namespace dgc::model

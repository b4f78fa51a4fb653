#include "common/baseline/marginals.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/baseline/codec.h"
#include "common/baseline/rng.h"

namespace dgc::baseline {
namespace {

constexpr char kMagic[4] = {'D', 'G', 'C', 'M'};
constexpr uint8_t kVersion = 1;
constexpr int64_t kMaxTs = std::numeric_limits<int64_t>::max();

// Streams of the per-field random sources (MixSeed), fixed forever so a seed
// keeps meaning the same trace.
enum Stream : uint64_t {
  kStreamGapOrder = 1,
  kStreamGapValue,
  kStreamSize,
  kStreamVersion,
  kStreamProto,
  kStreamTtl,
  kStreamTos,
  kStreamSrc4,
  kStreamDst4,
  kStreamSrc6,
  kStreamDst6,
  kStreamSport,
  kStreamDport,
  kStreamTcpFlags,
};

template <typename K>
std::vector<std::pair<K, uint64_t>> Sorted(const absl::flat_hash_map<K, uint64_t>& counts) {
  std::vector<std::pair<K, uint64_t>> v(counts.begin(), counts.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return v;
}

void PutHistogram(ByteWriter* w, const Histogram& h) {
  w->Varint(h.size());
  uint64_t prev = 0;
  for (const auto& [value, count] : h) {
    w->Varint(value - prev);
    prev = value;
  }
  for (const auto& [value, count] : h) w->Varint(count);
}

void PutAddresses(ByteWriter* w, const AddressHistogram& h, bool v6) {
  w->Varint(h.size());
  for (const auto& [addr, count] : h) {
    w->Bytes(v6 ? addr.bytes.data() : addr.bytes.data() + 12, v6 ? 16 : 4);
  }
  for (const auto& [addr, count] : h) w->Varint(count);
}

Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("marginal histograms: ", what));
}

// Reads an exact histogram whose values are <= max_value and whose counts sum
// to `total`.

// The counts that follow a histogram's k values: each positive, summing to
// exactly `total`; stored as the .second of each entry.
template <typename Histogram>
Status GetCounts(ByteReader* r, const char* name, uint64_t total, Histogram* h) {
  uint64_t sum = 0;
  for (auto& entry : *h) {
    uint64_t c = 0;
    if (!r->Varint(&c)) return Corrupt(absl::StrCat(name, ": truncated"));
    if (c == 0 || c > total - sum) {
      return Corrupt(absl::StrCat(name, ": counts exceed the ", total, " expected"));
    }
    sum += c;
    entry.second = c;
  }
  if (sum != total) return Corrupt(absl::StrCat(name, ": counts sum to ", sum, ", not ", total));
  return absl::OkStatus();
}

Status GetHistogram(ByteReader* r, const char* name, uint64_t max_value, uint64_t total,
                    Histogram* h) {
  uint64_t k = 0;
  // Each entry takes at least 2 bytes, so k is bounded before allocating.
  if (!r->Varint(&k) || k > r->remaining() / 2) return Corrupt(absl::StrCat(name, ": truncated"));
  h->resize(k);
  uint64_t value = 0;
  for (uint64_t i = 0; i < k; ++i) {
    uint64_t delta = 0;
    if (!r->Varint(&delta)) return Corrupt(absl::StrCat(name, ": truncated"));
    if ((i > 0 && delta == 0) || delta > max_value - value) {
      return Corrupt(absl::StrCat(name, ": values out of order or above ", max_value));
    }
    value += delta;
    (*h)[i].first = value;
  }
  return GetCounts(r, name, total, h);
}

Status GetAddresses(ByteReader* r, const char* name, bool v6, uint64_t total,
                    AddressHistogram* h) {
  const size_t width = v6 ? 16 : 4;
  uint64_t k = 0;
  if (!r->Varint(&k) || k > r->remaining() / (width + 1)) {
    return Corrupt(absl::StrCat(name, ": truncated"));
  }
  h->resize(k);
  for (uint64_t i = 0; i < k; ++i) {
    uint8_t b[16] = {};
    r->Bytes(b, width);
    (*h)[i].first = v6 ? IpAddress::FromV6(b) : IpAddress::FromV4(b);
  }
  return GetCounts(r, name, total, h);
}

uint64_t CountOf(const Histogram& h, uint64_t value) {
  for (const auto& [v, c] : h) {
    if (v == value) return c;
  }
  return 0;
}

// The histogram as an urn: each value repeated by its count, shuffled.
template <typename V, typename K>
std::vector<V> Urn(const std::vector<std::pair<K, uint64_t>>& h, uint64_t seed, Stream stream,
                   V (*convert)(const K&, size_t index)) {
  std::vector<V> out;
  uint64_t total = 0;
  for (const auto& e : h) total += e.second;
  out.reserve(total);
  for (size_t i = 0; i < h.size(); ++i) out.insert(out.end(), h[i].second, convert(h[i].first, i));
  Rng rng(MixSeed(seed, stream));
  rng.Shuffle(&out);
  return out;
}

template <typename V>
V AsValue(const uint64_t& v, size_t) {
  return static_cast<V>(v);
}
uint32_t AsIndex(const IpAddress&, size_t i) { return static_cast<uint32_t>(i); }

// Smallest gap whose bin is >= bin; kMaxTs when none.
int64_t FirstGapOfBin(int bin) {
  if (bin <= 0) return 0;
  long double e = std::pow(10.0L, static_cast<long double>(bin - 1) / kGapBinsPerDecade);
  if (e >= 9.2e18L) {
    if (GapBin(kMaxTs) < bin) return kMaxTs;
    e = 9.2e18L;
  }
  int64_t g = std::max<int64_t>(1, static_cast<int64_t>(e) - 2);
  while (g > 1 && GapBin(g - 1) >= bin) --g;
  while (g < kMaxTs && GapBin(g) < bin) ++g;
  return g;
}

}  // namespace

uint64_t Marginals::entries() const {
  uint64_t n = gap_bins.size() + sizes.size() + versions.size() + protos.size() + ttls.size() +
               tos.size() + sports.size() + dports.size() + tcp_flags.size();
  for (int f = 0; f < 2; ++f) n += src[f].size() + dst[f].size();
  return n;
}

int GapBin(int64_t gap_ns) {
  if (gap_ns <= 0) return 0;
  return 1 + static_cast<int>(std::floor(kGapBinsPerDecade * std::log10(static_cast<double>(gap_ns))));
}

std::pair<int64_t, int64_t> GapBinRange(int bin) {
  // Computed once: the search in FirstGapOfBin is too slow to run per packet.
  static const std::vector<std::pair<int64_t, int64_t>> kRanges = [] {
    std::vector<std::pair<int64_t, int64_t>> r(kMaxGapBin + 1);
    r[0] = {0, 0};
    for (int b = 1; b <= kMaxGapBin; ++b) {
      int64_t lo = FirstGapOfBin(b);
      int64_t next = FirstGapOfBin(b + 1);
      r[b] = {lo, next == kMaxTs && GapBin(kMaxTs) == b ? kMaxTs : next - 1};
    }
    return r;
  }();
  if (bin <= 0) return {0, 0};
  if (bin > kMaxGapBin) return {kMaxTs, kMaxTs};
  return kRanges[bin];
}

uint32_t MinPacketSize(uint8_t version, uint8_t proto) {
  uint32_t ip = version == 6 ? 40 : 20;
  switch (proto) {
    case kProtoTcp:
      return ip + 20;
    case kProtoUdp:
    case kProtoIcmp:
    case kProtoIcmpV6:
      return ip + 8;
    case kProtoSctp:
      return ip + 12;
    default:
      return ip;
  }
}

Marginals BuildMarginals(absl::Span<const PacketRecord> packets) {
  Marginals m;
  m.packets = packets.size();
  if (packets.empty()) return m;
  m.first_ts_ns = packets[0].ts_ns;
  absl::flat_hash_map<uint64_t, uint64_t> gaps, sizes, versions, protos, ttls, tos, sports, dports,
      flags;
  absl::flat_hash_map<IpAddress, uint64_t> src[2], dst[2];
  for (size_t i = 0; i < packets.size(); ++i) {
    const PacketRecord& p = packets[i];
    if (i > 0) gaps[GapBin(p.ts_ns - packets[i - 1].ts_ns)]++;
    sizes[p.ip_len]++;
    int fam = p.version == 6 ? 1 : 0;
    versions[fam ? 6 : 4]++;
    protos[p.proto]++;
    ttls[p.ttl]++;
    tos[p.tos]++;
    src[fam][p.src]++;
    dst[fam][p.dst]++;
    if (ProtoHasPorts(p.proto)) {
      sports[p.sport]++;
      dports[p.dport]++;
    }
    if (p.proto == kProtoTcp) flags[p.tcp_flags]++;
  }
  m.gap_bins = Sorted(gaps);
  m.sizes = Sorted(sizes);
  m.versions = Sorted(versions);
  m.protos = Sorted(protos);
  m.ttls = Sorted(ttls);
  m.tos = Sorted(tos);
  m.sports = Sorted(sports);
  m.dports = Sorted(dports);
  m.tcp_flags = Sorted(flags);
  for (int f = 0; f < 2; ++f) {
    m.src[f] = Sorted(src[f]);
    m.dst[f] = Sorted(dst[f]);
  }
  return m;
}

std::string EncodeMarginals(const Marginals& m) {
  ByteWriter w;
  w.Bytes(kMagic, 4);
  w.U8(kVersion);
  w.Varint(m.packets);
  w.SignedVarint(m.first_ts_ns);
  PutHistogram(&w, m.gap_bins);
  PutHistogram(&w, m.sizes);
  PutHistogram(&w, m.versions);
  PutHistogram(&w, m.protos);
  PutHistogram(&w, m.ttls);
  PutHistogram(&w, m.tos);
  PutAddresses(&w, m.src[0], false);
  PutAddresses(&w, m.dst[0], false);
  PutAddresses(&w, m.src[1], true);
  PutAddresses(&w, m.dst[1], true);
  PutHistogram(&w, m.sports);
  PutHistogram(&w, m.dports);
  PutHistogram(&w, m.tcp_flags);
  return w.Take();
}

StatusOr<Marginals> DecodeMarginals(absl::string_view bytes) {
  ByteReader r(bytes);
  char magic[4];
  if (!r.Bytes(magic, 4) || std::memcmp(magic, kMagic, 4) != 0) {
    return absl::InvalidArgumentError("marginal histograms: not a dgc marginals blob (bad magic)");
  }
  uint8_t version = 0;
  if (!r.U8(&version)) return Corrupt("truncated header");
  if (version != kVersion) {
    return absl::UnimplementedError(absl::StrCat("marginal histograms: format version ", version,
                                                 " (this build reads ", kVersion, ")"));
  }
  Marginals m;
  if (!r.Varint(&m.packets) || !r.SignedVarint(&m.first_ts_ns)) return Corrupt("truncated header");
  const uint64_t n = m.packets;
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "gaps", kMaxGapBin, n == 0 ? 0 : n - 1, &m.gap_bins));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "sizes", std::numeric_limits<uint32_t>::max(), n, &m.sizes));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "versions", 6, n, &m.versions));
  for (const auto& [v, c] : m.versions) {
    if (v != 4 && v != 6) return Corrupt(absl::StrCat("versions: IP version ", v));
  }
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "protocols", 255, n, &m.protos));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "ttls", 255, n, &m.ttls));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "tos", 255, n, &m.tos));
  const uint64_t n4 = CountOf(m.versions, 4), n6 = CountOf(m.versions, 6);
  DGC_RETURN_IF_ERROR(GetAddresses(&r, "IPv4 sources", false, n4, &m.src[0]));
  DGC_RETURN_IF_ERROR(GetAddresses(&r, "IPv4 destinations", false, n4, &m.dst[0]));
  DGC_RETURN_IF_ERROR(GetAddresses(&r, "IPv6 sources", true, n6, &m.src[1]));
  DGC_RETURN_IF_ERROR(GetAddresses(&r, "IPv6 destinations", true, n6, &m.dst[1]));
  uint64_t ported = 0;
  for (const auto& [proto, c] : m.protos) {
    if (ProtoHasPorts(static_cast<uint8_t>(proto))) ported += c;
  }
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "source ports", 65535, ported, &m.sports));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "destination ports", 65535, ported, &m.dports));
  DGC_RETURN_IF_ERROR(GetHistogram(&r, "TCP flags", 255, CountOf(m.protos, kProtoTcp), &m.tcp_flags));
  if (!r.ok()) return Corrupt("truncated");
  if (r.remaining() != 0) return Corrupt(absl::StrCat(r.remaining(), " trailing bytes"));
  return m;
}

StatusOr<std::string> PackMarginals(const Marginals& m, int zstd_level) {
  return Compress(Codec::kZstd, zstd_level, EncodeMarginals(m));
}

StatusOr<Marginals> UnpackMarginals(absl::string_view packed) {
  auto raw = Decompress(Codec::kZstd, packed, uint64_t{1} << 32);
  if (!raw.ok()) return Corrupt(raw.status().message());
  return DecodeMarginals(*raw);
}

StatusOr<std::vector<PacketRecord>> DrawFromMarginals(const Marginals& m, uint64_t seed,
                                                      uint64_t max_packets) {
  if (m.packets > max_packets) {
    return absl::ResourceExhaustedError(absl::StrCat("marginals describe ", m.packets,
                                                     " packets, more than the limit of ",
                                                     max_packets));
  }
  // Totals are checked by DecodeMarginals; a hand-built Marginals is checked
  // here too, so an urn can never run dry.
  auto total = [](const auto& h) {
    uint64_t s = 0;
    for (const auto& e : h) s += e.second;
    return s;
  };
  const uint64_t n = m.packets;
  if (n == 0) return std::vector<PacketRecord>{};
  uint64_t ported = 0;
  for (const auto& [proto, c] : m.protos) {
    if (ProtoHasPorts(static_cast<uint8_t>(proto))) ported += c;
  }
  const uint64_t n4 = CountOf(m.versions, 4), n6 = CountOf(m.versions, 6);
  if (total(m.gap_bins) != n - 1 || total(m.sizes) != n || total(m.versions) != n ||
      n4 + n6 != n || total(m.protos) != n || total(m.ttls) != n || total(m.tos) != n ||
      total(m.src[0]) != n4 || total(m.dst[0]) != n4 || total(m.src[1]) != n6 ||
      total(m.dst[1]) != n6 || total(m.sports) != ported || total(m.dports) != ported ||
      total(m.tcp_flags) != CountOf(m.protos, kProtoTcp)) {
    return absl::InvalidArgumentError("marginal histograms: totals disagree with the packet count");
  }

  auto gaps = Urn<int, uint64_t>(m.gap_bins, seed, kStreamGapOrder, AsValue<int>);
  auto sizes = Urn<uint32_t, uint64_t>(m.sizes, seed, kStreamSize, AsValue<uint32_t>);
  auto versions = Urn<uint8_t, uint64_t>(m.versions, seed, kStreamVersion, AsValue<uint8_t>);
  auto protos = Urn<uint8_t, uint64_t>(m.protos, seed, kStreamProto, AsValue<uint8_t>);
  auto ttls = Urn<uint8_t, uint64_t>(m.ttls, seed, kStreamTtl, AsValue<uint8_t>);
  auto tos = Urn<uint8_t, uint64_t>(m.tos, seed, kStreamTos, AsValue<uint8_t>);
  auto sports = Urn<uint16_t, uint64_t>(m.sports, seed, kStreamSport, AsValue<uint16_t>);
  auto dports = Urn<uint16_t, uint64_t>(m.dports, seed, kStreamDport, AsValue<uint16_t>);
  auto flags = Urn<uint8_t, uint64_t>(m.tcp_flags, seed, kStreamTcpFlags, AsValue<uint8_t>);
  std::vector<uint32_t> src[2] = {Urn<uint32_t, IpAddress>(m.src[0], seed, kStreamSrc4, AsIndex),
                                  Urn<uint32_t, IpAddress>(m.src[1], seed, kStreamSrc6, AsIndex)};
  std::vector<uint32_t> dst[2] = {Urn<uint32_t, IpAddress>(m.dst[0], seed, kStreamDst4, AsIndex),
                                  Urn<uint32_t, IpAddress>(m.dst[1], seed, kStreamDst6, AsIndex)};

  Rng gap_rng(MixSeed(seed, kStreamGapValue));
  std::vector<PacketRecord> out(n);
  size_t next_port = 0, next_flags = 0, next_addr[2] = {0, 0};
  int64_t ts = m.first_ts_ns;
  for (uint64_t i = 0; i < n; ++i) {
    PacketRecord& p = out[i];
    if (i > 0) {
      auto [lo, hi] = GapBinRange(gaps[i - 1]);
      int64_t g = lo;
      if (hi > lo) {
        // Log-uniform over [lo, hi + 1), as the bins are logarithmic.
        double a = std::log(static_cast<double>(lo)), b = std::log(static_cast<double>(hi) + 1);
        double x = std::exp(a + gap_rng.Unit() * (b - a));
        g = x >= static_cast<double>(hi) ? hi : std::max(lo, static_cast<int64_t>(x));
      }
      ts = g > kMaxTs - ts ? kMaxTs : ts + g;
    }
    p.ts_ns = ts;
    p.version = versions[i];
    int fam = p.version == 6 ? 1 : 0;
    p.src = m.src[fam][src[fam][next_addr[fam]]].first;
    p.dst = m.dst[fam][dst[fam][next_addr[fam]]].first;
    next_addr[fam]++;
    p.proto = protos[i];
    p.ttl = ttls[i];
    p.tos = tos[i];
    if (ProtoHasPorts(p.proto)) {
      p.sport = sports[next_port];
      p.dport = dports[next_port];
      ++next_port;
    }
    if (p.proto == kProtoTcp) p.tcp_flags = flags[next_flags++];
    uint32_t size = std::max(sizes[i], MinPacketSize(p.version, p.proto));
    if (p.version == 4) size = std::min<uint32_t>(size, 65535);
    p.ip_len = size;
  }
  return out;
}

}  // namespace dgc::baseline

#include "common/model/skeleton.h"

#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"

namespace dgc::model {
namespace {

constexpr char kMagic[4] = {'D', 'G', 'C', 'S'};
constexpr size_t kHeader = 4 + 2 + 2 + 8 + 8 + 8 + 4 + 4 + 8;  // see Encode
constexpr uint32_t kMaxBins = 1u << 24;
constexpr uint64_t kMaxWindows = 1u << 20;
constexpr uint64_t kMaxExact = 1u << 24;
constexpr uint16_t kHasStructure = 1, kHasExact = 2;

std::string Zstd19(const std::string& raw) {
  std::string z(ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 19);
  z.resize(ZSTD_isError(n) ? 0 : n);
  return z;
}

std::string BinsBody(const Skeleton& s) {
  ByteWriter w;
  uint64_t prev = 0;
  bool first = true;
  for (size_t i = 0; i < s.bins(); ++i) {
    if (s.new_flows[i] == 0 && s.packets[i] == 0 && s.bytes[i] == 0) continue;
    w.Varint(first ? i : i - prev - 1);  // gap since the previous non-empty bin
    w.Varint(s.new_flows[i]);
    w.Varint(s.packets[i]);
    w.Varint(s.bytes[i]);
    prev = i;
    first = false;
  }
  return w.Take();
}

// Columns, each delta-coded against the previous window: the series are smooth.
std::string StructureBody(const Skeleton& s) {
  ByteWriter w;
  w.Varint(static_cast<uint64_t>(s.window_ns));
  w.Varint(s.windows.size());
  for (uint32_t WindowStats::*field : {&WindowStats::srcs, &WindowStats::dsts, &WindowStats::pairs,
                                       &WindowStats::five_tuples}) {
    int64_t prev = 0;
    for (const auto& win : s.windows) {
      w.SignedVarint(int64_t(win.*field) - prev);
      prev = win.*field;
    }
  }
  for (uint32_t v : {s.total.srcs, s.total.dsts, s.total.pairs, s.total.five_tuples}) w.Varint(v);
  return w.Take();
}

// Columnar: all families and protocols, then addresses, ports, starts (delta
// against the previous start), durations, counts, TTLs, flags, marks; zstd
// then finds the repeats within each column.
std::string ExactBody(const Skeleton& s) {
  ByteWriter w;
  const auto& e = s.exact;
  w.Varint(e.size());
  for (const auto& f : e) w.U8(static_cast<uint8_t>(f.key.version == 6 ? 1 : 0));
  for (const auto& f : e) w.U8(f.key.proto);
  for (bool src : {true, false}) {
    for (const auto& f : e) {
      const IpAddress& a = src ? f.key.src : f.key.dst;
      if (f.key.version == 6) {
        w.Bytes(a.bytes.data(), 16);
      } else {
        w.Bytes(a.bytes.data() + 12, 4);
      }
    }
  }
  for (bool sport : {true, false}) {
    for (const auto& f : e) {
      if (ProtoHasPorts(f.key.proto)) w.U16(sport ? f.key.sport : f.key.dport);
    }
  }
  int64_t prev = 0;
  for (const auto& f : e) {
    w.SignedVarint(f.start_offset_us - prev);
    prev = f.start_offset_us;
  }
  for (const auto& f : e) w.Varint(static_cast<uint64_t>(f.duration_us));
  for (const auto& f : e) w.Varint(f.packets);
  for (const auto& f : e) w.Varint(f.bytes);
  for (const auto& f : e) w.U8(f.ttl);
  for (const auto& f : e) {
    if (f.key.proto == kProtoTcp) w.U8(f.tcp_flags);
  }
  for (const auto& f : e) w.U8(f.marks);
  return w.Take();
}

struct Sections {
  std::string bins, structure, exact;  // zstd -19 each; empty when absent
  size_t bins_raw = 0;
};

Sections Compress(const Skeleton& s) {
  Sections out;
  std::string b = BinsBody(s);
  out.bins_raw = b.size();
  out.bins = Zstd19(b);
  if (s.window_ns > 0) out.structure = Zstd19(StructureBody(s));
  if (!s.exact.empty()) out.exact = Zstd19(ExactBody(s));
  return out;
}

void PutSection(std::string* out, const std::string& z) {
  ByteWriter w;
  w.Varint(z.size());
  *out += w.Take();
  *out += z;
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}

}  // namespace

uint64_t Skeleton::total_flows() const { return std::accumulate(new_flows.begin(), new_flows.end(), uint64_t{0}); }
uint64_t Skeleton::total_packets() const { return std::accumulate(packets.begin(), packets.end(), uint64_t{0}); }
uint64_t Skeleton::total_bytes() const { return std::accumulate(bytes.begin(), bytes.end(), uint64_t{0}); }

int64_t Skeleton::DefaultBinNs(int64_t chunk_ns) {
  return std::max<int64_t>(1, std::min<int64_t>(1000000000, chunk_ns / 100));
}

Skeleton Skeleton::FromChunk(const Chunk& chunk, const std::vector<Flow>& flows, int64_t bin_ns) {
  Skeleton s;
  s.start_ns = chunk.start_ns;
  s.duration_ns = chunk.duration_ns;
  s.bin_ns = std::max<int64_t>(1, bin_ns);
  size_t nbins = static_cast<size_t>((chunk.duration_ns + s.bin_ns - 1) / s.bin_ns);
  s.new_flows.assign(nbins, 0);
  s.packets.assign(nbins, 0);
  s.bytes.assign(nbins, 0);
  auto bin = [&](int64_t ts) {
    int64_t b = (ts - chunk.start_ns) / s.bin_ns;
    return static_cast<size_t>(std::clamp<int64_t>(b, 0, static_cast<int64_t>(nbins) - 1));
  };
  for (const auto& p : chunk.packets) {
    size_t b = bin(p.ts_ns);
    s.packets[b]++;
    s.bytes[b] += p.ip_len;
  }
  for (const auto& f : flows) s.new_flows[bin(f.first_ns)]++;
  return s;
}

void Skeleton::AddStructure(const Chunk& chunk, int64_t wns) {
  window_ns = std::max<int64_t>(1, std::min(wns, chunk.duration_ns));
  size_t n = static_cast<size_t>((chunk.duration_ns + window_ns - 1) / window_ns);
  windows.assign(n, WindowStats{});
  absl::flat_hash_set<IpAddress> srcs, dsts;
  absl::flat_hash_set<std::pair<IpAddress, IpAddress>> pairs;
  absl::flat_hash_set<FlowKey> tuples;
  size_t cur = 0;
  auto flush = [&](size_t w) {
    if (w >= n) return;
    windows[w] = {uint32_t(srcs.size()), uint32_t(dsts.size()), uint32_t(pairs.size()), uint32_t(tuples.size())};
    srcs.clear(), dsts.clear(), pairs.clear(), tuples.clear();
  };
  for (const auto& p : chunk.packets) {  // time-sorted
    size_t w = static_cast<size_t>(std::clamp<int64_t>((p.ts_ns - chunk.start_ns) / window_ns, 0, int64_t(n) - 1));
    if (w != cur) {
      flush(cur);
      cur = w;
    }
    srcs.insert(p.src);
    dsts.insert(p.dst);
    pairs.insert({p.src, p.dst});
    tuples.insert(FlowKey::Of(p));
  }
  flush(cur);
  absl::flat_hash_set<IpAddress> all_srcs, all_dsts;
  absl::flat_hash_set<std::pair<IpAddress, IpAddress>> all_pairs;
  absl::flat_hash_set<FlowKey> all_tuples;
  for (const auto& p : chunk.packets) {
    all_srcs.insert(p.src);
    all_dsts.insert(p.dst);
    all_pairs.insert({p.src, p.dst});
    all_tuples.insert(FlowKey::Of(p));
  }
  total = {uint32_t(all_srcs.size()), uint32_t(all_dsts.size()), uint32_t(all_pairs.size()),
           uint32_t(all_tuples.size())};
}

std::vector<ExactFlow> Skeleton::RankFlows(const Chunk& chunk) {
  std::vector<uint32_t> flow_of;
  std::vector<Flow> flows = BuildFlows(chunk.packets, chunk.end_ns(), &flow_of);
  std::vector<ExactFlow> out(flows.size());
  std::vector<char> seen(flows.size(), 0);
  for (size_t i = 0; i < chunk.packets.size(); ++i) {
    uint32_t f = flow_of[i];
    if (!seen[f]) out[f].ttl = chunk.packets[i].ttl, seen[f] = 1;
  }
  for (size_t f = 0; f < flows.size(); ++f) {
    ExactFlow& e = out[f];
    e.key = flows[f].key;
    e.start_offset_us = (flows[f].first_ns - chunk.start_ns) / 1000;
    e.duration_us = flows[f].duration_ns() / 1000;
    e.packets = flows[f].packets;
    e.bytes = flows[f].bytes;
    e.tcp_flags = flows[f].tcp_flags;
    e.marks = flows[f].marks & (kFlowContinued | kFlowOpenAtEnd);
  }
  std::stable_sort(out.begin(), out.end(), [](const ExactFlow& a, const ExactFlow& b) {
    if (a.packets != b.packets) return a.packets > b.packets;
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.start_offset_us < b.start_offset_us;
  });
  return out;
}

void Skeleton::SetExactFlows(const std::vector<ExactFlow>& ranked, size_t k) {
  exact.assign(ranked.begin(), ranked.begin() + std::min(k, ranked.size()));
  std::stable_sort(exact.begin(), exact.end(),
                   [](const ExactFlow& a, const ExactFlow& b) { return a.start_offset_us < b.start_offset_us; });
}

Skeleton::Sizes Skeleton::EncodedSizes() const {
  Sections z = Compress(*this);
  Sizes s;
  s.bins = kHeader + VarintSize(z.bins.size()) + z.bins.size();
  if (window_ns > 0) s.structure = VarintSize(z.structure.size()) + z.structure.size();
  if (!exact.empty()) s.exact = VarintSize(z.exact.size()) + z.exact.size();
  return s;
}

std::string Skeleton::Encode() const {
  Sections z = Compress(*this);
  uint16_t present = (window_ns > 0 ? kHasStructure : 0) | (!exact.empty() ? kHasExact : 0);
  std::string out;
  out.append(kMagic, 4);
  PutFixed<uint16_t>(&out, kSkeletonFormatVersion);
  PutFixed<uint16_t>(&out, present);
  PutFixed<int64_t>(&out, start_ns);
  PutFixed<int64_t>(&out, duration_ns);
  PutFixed<int64_t>(&out, bin_ns);
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(bins()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(z.bins_raw));
  std::string body;
  PutSection(&body, z.bins);
  if (present & kHasStructure) PutSection(&body, z.structure);
  if (present & kHasExact) PutSection(&body, z.exact);
  PutFixed<uint64_t>(&out, XXH64(body.data(), body.size(), XXH64(out.data(), out.size(), 0)));
  out += body;
  return out;
}

StatusOr<Skeleton> Skeleton::Decode(const std::string& b, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(name, ": corrupt skeleton: ", what));
  };
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a dgc skeleton (bad magic)"));
  }
  uint16_t version = LoadFixed<uint16_t>(b.data() + 4);
  if (version < 1 || version > kSkeletonFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(name, ": skeleton format version ", version,
                                                 " is not supported (this build reads 1 to ",
                                                 kSkeletonFormatVersion, ")"));
  }
  const uint16_t present = version >= 2 ? LoadFixed<uint16_t>(b.data() + 6) : 0;
  Skeleton s;
  s.start_ns = LoadFixed<int64_t>(b.data() + 8);
  s.duration_ns = LoadFixed<int64_t>(b.data() + 16);
  s.bin_ns = LoadFixed<int64_t>(b.data() + 24);
  uint32_t nbins = LoadFixed<uint32_t>(b.data() + 32);
  uint32_t body_size = LoadFixed<uint32_t>(b.data() + 36);
  uint64_t sum = LoadFixed<uint64_t>(b.data() + 40);
  if (XXH64(b.data() + kHeader, b.size() - kHeader, XXH64(b.data(), kHeader - 8, 0)) != sum) {
    return bad("checksum mismatch");
  }
  if (nbins > kMaxBins || s.bin_ns <= 0 || s.duration_ns <= 0 || body_size > 16u * nbins + 64 ||
      (present & ~(kHasStructure | kHasExact)) != 0) {
    return bad("header out of range");
  }
  // The sections: v1 has the bins alone, the rest of the bytes; v2 gives
  // each present section a length.
  absl::string_view rest(b.data() + kHeader, b.size() - kHeader);
  auto next_section = [&](absl::string_view* z) -> bool {
    ByteReader r(rest);
    uint64_t len;
    if (!r.Varint(&len) || len > r.remaining()) return false;
    *z = rest.substr(r.position(), len);
    rest.remove_prefix(r.position() + len);
    return true;
  };
  auto inflate = [&](absl::string_view z, uint64_t max_raw, std::string* raw) -> bool {
    unsigned long long n = ZSTD_getFrameContentSize(z.data(), z.size());
    if (n == ZSTD_CONTENTSIZE_UNKNOWN || n == ZSTD_CONTENTSIZE_ERROR || n > max_raw) return false;
    raw->assign(n, '\0');
    size_t got = ZSTD_decompress(raw->data(), raw->size(), z.data(), z.size());
    return !ZSTD_isError(got) && got == n;
  };
  absl::string_view zbins = rest;
  if (version >= 2 && !next_section(&zbins)) return bad("truncated bins section");
  std::string body(body_size, '\0');
  size_t got = ZSTD_decompress(body.data(), body.size(), zbins.data(), zbins.size());
  if (ZSTD_isError(got) || got != body_size) return bad("payload does not decompress");
  s.new_flows.assign(nbins, 0);
  s.packets.assign(nbins, 0);
  s.bytes.assign(nbins, 0);
  {
    ByteReader r(body);
    int64_t idx = -1;
    while (r.remaining() > 0) {
      uint64_t gap, f, p, by;
      if (!r.Varint(&gap) || !r.Varint(&f) || !r.Varint(&p) || !r.Varint(&by)) return bad("truncated bin");
      if (gap >= nbins) return bad("bin out of range");
      idx = idx < 0 ? static_cast<int64_t>(gap) : idx + 1 + static_cast<int64_t>(gap);
      if (idx < 0 || idx >= static_cast<int64_t>(nbins) || f > UINT32_MAX || p > UINT32_MAX) {
        return bad("bin out of range");
      }
      s.new_flows[idx] = static_cast<uint32_t>(f);
      s.packets[idx] = static_cast<uint32_t>(p);
      s.bytes[idx] = by;
    }
  }
  if (version < 2) return s;

  if (present & kHasStructure) {
    absl::string_view z;
    std::string raw;
    if (!next_section(&z) || !inflate(z, 16 + 40 * kMaxWindows, &raw)) return bad("structure section does not decompress");
    ByteReader r(raw);
    uint64_t wns = 0, n = 0;
    if (!r.Varint(&wns) || !r.Varint(&n)) return bad("truncated structure section");
    if (wns == 0 || wns > uint64_t(s.duration_ns) || n > kMaxWindows ||
        n != uint64_t((s.duration_ns + int64_t(wns) - 1) / int64_t(wns))) {
      return bad("structure windows out of range");
    }
    s.window_ns = static_cast<int64_t>(wns);
    s.windows.assign(n, WindowStats{});
    for (uint32_t WindowStats::*field : {&WindowStats::srcs, &WindowStats::dsts, &WindowStats::pairs,
                                         &WindowStats::five_tuples}) {
      int64_t prev = 0;
      for (auto& win : s.windows) {
        int64_t d;
        if (!r.SignedVarint(&d)) return bad("truncated structure section");
        prev += d;
        if (prev < 0 || prev > int64_t(UINT32_MAX)) return bad("structure count out of range");
        win.*field = static_cast<uint32_t>(prev);
      }
    }
    uint64_t t[4];
    for (auto& v : t) {
      if (!r.Varint(&v) || v > UINT32_MAX) return bad("truncated structure section");
    }
    s.total = {uint32_t(t[0]), uint32_t(t[1]), uint32_t(t[2]), uint32_t(t[3])};
    if (r.remaining() != 0) return bad("trailing bytes in the structure section");
  }
  if (present & kHasExact) {
    absl::string_view z;
    std::string raw;
    if (!next_section(&z) || !inflate(z, 64 * kMaxExact, &raw)) return bad("exact-flow section does not decompress");
    ByteReader r(raw);
    uint64_t n = 0;
    if (!r.Varint(&n) || n > kMaxExact || n > raw.size()) return bad("exact-flow count out of range");
    s.exact.assign(n, ExactFlow{});
    auto& e = s.exact;
    for (auto& f : e) {
      uint8_t v6 = 0;
      if (!r.U8(&v6) || v6 > 1) return bad("exact-flow family out of range");
      f.key.version = v6 ? 6 : 4;
    }
    for (auto& f : e) r.U8(&f.key.proto);
    for (bool src : {true, false}) {
      for (auto& f : e) {
        IpAddress& a = src ? f.key.src : f.key.dst;
        if (f.key.version == 6) {
          r.Bytes(a.bytes.data(), 16);
        } else {
          uint8_t v4[4] = {0, 0, 0, 0};
          r.Bytes(v4, 4);
          a = IpAddress::FromV4(v4);
        }
      }
    }
    for (bool sport : {true, false}) {
      for (auto& f : e) {
        if (ProtoHasPorts(f.key.proto)) r.U16(sport ? &f.key.sport : &f.key.dport);
      }
    }
    int64_t prev = 0;
    for (auto& f : e) {
      int64_t d = 0;
      r.SignedVarint(&d);
      prev += d;
      f.start_offset_us = prev;
    }
    uint64_t v = 0;
    for (auto& f : e) r.Varint(&v), f.duration_us = static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX / 1000));
    for (auto& f : e) r.Varint(&f.packets);
    for (auto& f : e) r.Varint(&f.bytes);
    for (auto& f : e) r.U8(&f.ttl);
    for (auto& f : e) {
      if (f.key.proto == kProtoTcp) r.U8(&f.tcp_flags);
    }
    for (auto& f : e) r.U8(&f.marks);
    if (!r.ok()) return bad("truncated exact-flow section");
    if (r.remaining() != 0) return bad("trailing bytes in the exact-flow section");
    const int64_t chunk_us = s.duration_ns / 1000;
    for (size_t i = 0; i < e.size(); ++i) {
      const auto& f = e[i];
      if (f.start_offset_us < 0 || f.start_offset_us > chunk_us || f.duration_us > chunk_us ||
          f.packets == 0 || f.packets > (uint64_t{1} << 40) || f.bytes > (uint64_t{1} << 56) ||
          (f.marks & ~(kFlowContinued | kFlowOpenAtEnd)) != 0 || (i > 0 && f.start_offset_us < e[i - 1].start_offset_us)) {
        return bad(absl::StrCat("exact flow ", i, " out of range"));
      }
    }
  }
  if (!rest.empty()) return bad("trailing bytes");
  return s;
}

}  // namespace dgc::model

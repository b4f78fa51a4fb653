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
constexpr uint16_t kRawBody = 4;  // format 3: the sections are stored as they are (zstd would not shrink them)
// Format 3: magic, version, then varints, then a 32-bit checksum.
constexpr size_t kMinHeader3 = 4 + 2 + 6 + 4;

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
  std::string bins, structure, exact;  // raw bodies; empty when absent
};

Sections RawSections(const Skeleton& s, bool with_structure, bool with_exact) {
  Sections out;
  out.bins = BinsBody(s);
  if (with_structure && s.window_ns > 0) out.structure = StructureBody(s);
  if (with_exact && !s.exact.empty()) out.exact = ExactBody(s);
  return out;
}

void PutSection(std::string* out, const std::string& z) {
  ByteWriter w;
  w.Varint(z.size());
  *out += w.Take();
  *out += z;
}

// Format 2: a fixed header, each section its own zstd -19 frame with a length.
std::string EncodeFormat2(const Skeleton& s) {
  Sections raw = RawSections(s, true, true);
  uint16_t present = (s.window_ns > 0 ? kHasStructure : 0) | (!s.exact.empty() ? kHasExact : 0);
  std::string out;
  out.append(kMagic, 4);
  PutFixed<uint16_t>(&out, 2);
  PutFixed<uint16_t>(&out, present);
  PutFixed<int64_t>(&out, s.start_ns);
  PutFixed<int64_t>(&out, s.duration_ns);
  PutFixed<int64_t>(&out, s.bin_ns);
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(s.bins()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(raw.bins.size()));
  std::string body;
  PutSection(&body, Zstd19(raw.bins));
  if (present & kHasStructure) PutSection(&body, Zstd19(raw.structure));
  if (present & kHasExact) PutSection(&body, Zstd19(raw.exact));
  PutFixed<uint64_t>(&out, XXH64(body.data(), body.size(), XXH64(out.data(), out.size(), 0)));
  out += body;
  return out;
}

// Format 3: a varint header (the chunk's times cost what they need) and one
// zstd -19 frame over all sections (one frame header, one set of tables),
// or the sections as they are when zstd would not shrink them; a quiet
// chunk's skeleton is mostly framing otherwise.
std::string EncodeFormat3(const Skeleton& s, bool with_structure, bool with_exact, bool compress = true) {
  Sections raw = RawSections(s, with_structure, with_exact);
  uint16_t present = (!raw.structure.empty() ? kHasStructure : 0) | (!raw.exact.empty() ? kHasExact : 0);
  const std::string all = raw.bins + raw.structure + raw.exact;
  std::string body = compress ? Zstd19(all) : std::string();
  if (body.empty() || body.size() >= all.size()) {
    body = all;
    present |= kRawBody;
  }
  ByteWriter h;
  h.Varint(present);
  h.SignedVarint(s.start_ns);
  h.Varint(static_cast<uint64_t>(s.duration_ns));
  h.Varint(static_cast<uint64_t>(s.bin_ns));
  h.Varint(s.bins());
  h.Varint(raw.bins.size());
  if (present & kHasStructure) h.Varint(raw.structure.size());
  if (present & kHasExact) h.Varint(raw.exact.size());
  std::string out;
  out.append(kMagic, 4);
  PutFixed<uint16_t>(&out, 3);
  out += h.Take();
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(XXH64(body.data(), body.size(), XXH64(out.data(), out.size(), 0))));
  out += body;
  return out;
}

// Section parsers, shared by every format: "" or what is wrong.
std::string ParseBins(const std::string& body, uint32_t nbins, Skeleton* s) {
  s->new_flows.assign(nbins, 0);
  s->packets.assign(nbins, 0);
  s->bytes.assign(nbins, 0);
  ByteReader r(body);
  int64_t idx = -1;
  while (r.remaining() > 0) {
    uint64_t gap, f, p, by;
    if (!r.Varint(&gap) || !r.Varint(&f) || !r.Varint(&p) || !r.Varint(&by)) return "truncated bin";
    if (gap >= nbins) return "bin out of range";
    idx = idx < 0 ? static_cast<int64_t>(gap) : idx + 1 + static_cast<int64_t>(gap);
    if (idx < 0 || idx >= static_cast<int64_t>(nbins) || f > UINT32_MAX || p > UINT32_MAX) return "bin out of range";
    s->new_flows[idx] = static_cast<uint32_t>(f);
    s->packets[idx] = static_cast<uint32_t>(p);
    s->bytes[idx] = by;
  }
  return "";
}

std::string ParseStructure(const std::string& raw, Skeleton* s) {
  ByteReader r(raw);
  uint64_t wns = 0, n = 0;
  if (!r.Varint(&wns) || !r.Varint(&n)) return "truncated structure section";
  if (wns == 0 || wns > uint64_t(s->duration_ns) || n > kMaxWindows ||
      n != uint64_t((s->duration_ns + int64_t(wns) - 1) / int64_t(wns))) {
    return "structure windows out of range";
  }
  s->window_ns = static_cast<int64_t>(wns);
  s->windows.assign(n, WindowStats{});
  for (uint32_t WindowStats::*field : {&WindowStats::srcs, &WindowStats::dsts, &WindowStats::pairs,
                                       &WindowStats::five_tuples}) {
    int64_t prev = 0;
    for (auto& win : s->windows) {
      int64_t d;
      if (!r.SignedVarint(&d)) return "truncated structure section";
      prev += d;
      if (prev < 0 || prev > int64_t(UINT32_MAX)) return "structure count out of range";
      win.*field = static_cast<uint32_t>(prev);
    }
  }
  uint64_t t[4];
  for (auto& v : t) {
    if (!r.Varint(&v) || v > UINT32_MAX) return "truncated structure section";
  }
  s->total = {uint32_t(t[0]), uint32_t(t[1]), uint32_t(t[2]), uint32_t(t[3])};
  if (r.remaining() != 0) return "trailing bytes in the structure section";
  return "";
}

std::string ParseExact(const std::string& raw, Skeleton* s) {
  ByteReader r(raw);
  uint64_t n = 0;
  if (!r.Varint(&n) || n > kMaxExact || n > raw.size()) return "exact-flow count out of range";
  s->exact.assign(n, ExactFlow{});
  auto& e = s->exact;
  for (auto& f : e) {
    uint8_t v6 = 0;
    if (!r.U8(&v6) || v6 > 1) return "exact-flow family out of range";
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
  if (!r.ok()) return "truncated exact-flow section";
  if (r.remaining() != 0) return "trailing bytes in the exact-flow section";
  const int64_t chunk_us = s->duration_ns / 1000;
  for (size_t i = 0; i < e.size(); ++i) {
    const auto& f = e[i];
    if (f.start_offset_us < 0 || f.start_offset_us > chunk_us || f.duration_us > chunk_us || f.packets == 0 ||
        f.packets > (uint64_t{1} << 40) || f.bytes > (uint64_t{1} << 56) ||
        (f.marks & ~(kFlowContinued | kFlowOpenAtEnd)) != 0 ||
        (i > 0 && f.start_offset_us < e[i - 1].start_offset_us)) {
      return absl::StrCat("exact flow ", i, " out of range");
    }
  }
  return "";
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
  // One frame holds every section: each is priced by what adding it costs.
  const size_t bins_only = EncodeFormat3(*this, false, false).size();
  const size_t with_structure = window_ns > 0 ? EncodeFormat3(*this, true, false).size() : bins_only;
  const size_t all = exact.empty() ? with_structure : EncodeFormat3(*this, true, true).size();
  Sizes s;
  s.bins = std::min(bins_only, all);
  s.structure = std::min(with_structure > s.bins ? with_structure - s.bins : 0, all - s.bins);
  s.exact = all - s.bins - s.structure;
  return s;
}

std::string Skeleton::Encode() const { return EncodeFormat3(*this, true, true); }

std::string Skeleton::EncodePlain() const { return EncodeFormat3(*this, true, true, /*compress=*/false); }

std::string Skeleton::EncodeFormat(uint16_t version) const {
  return version == 2 ? EncodeFormat2(*this) : EncodeFormat3(*this, true, true);
}

StatusOr<Skeleton> Skeleton::Decode(const std::string& b, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(name, ": corrupt skeleton: ", what));
  };
  if (b.size() < 6 || std::memcmp(b.data(), kMagic, 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a dgc skeleton (bad magic)"));
  }
  uint16_t version = LoadFixed<uint16_t>(b.data() + 4);
  if (version < 1 || version > kSkeletonFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(name, ": skeleton format version ", version,
                                                 " is not supported (this build reads 1 to ",
                                                 kSkeletonFormatVersion, ")"));
  }
  auto inflate = [&](absl::string_view z, uint64_t max_raw, std::string* raw) -> bool {
    unsigned long long n = ZSTD_getFrameContentSize(z.data(), z.size());
    if (n == ZSTD_CONTENTSIZE_UNKNOWN || n == ZSTD_CONTENTSIZE_ERROR || n > max_raw) return false;
    raw->assign(n, '\0');
    size_t got = ZSTD_decompress(raw->data(), raw->size(), z.data(), z.size());
    return !ZSTD_isError(got) && got == n;
  };
  Skeleton s;
  uint16_t present = 0;
  uint64_t nbins = 0;
  std::string bins_raw, structure_raw, exact_raw;
  if (version >= 3) {
    if (b.size() < kMinHeader3) return bad("shorter than its header");
    ByteReader h(absl::string_view(b).substr(6));
    uint64_t pr = 0, dur = 0, bin = 0, sizes[3] = {0, 0, 0};
    int64_t start = 0;
    if (!h.Varint(&pr) || !h.SignedVarint(&start) || !h.Varint(&dur) || !h.Varint(&bin) || !h.Varint(&nbins) ||
        !h.Varint(&sizes[0]) || ((pr & kHasStructure) && !h.Varint(&sizes[1])) ||
        ((pr & kHasExact) && !h.Varint(&sizes[2]))) {
      return bad("truncated header");
    }
    if ((pr & ~uint64_t(kHasStructure | kHasExact | kRawBody)) != 0 || nbins > kMaxBins || bin == 0 || dur == 0 ||
        bin > uint64_t(INT64_MAX) || dur > uint64_t(INT64_MAX) || sizes[0] > 16u * nbins + 64 ||
        sizes[1] > 16 + 40 * kMaxWindows || sizes[2] > 64 * kMaxExact) {
      return bad("header out of range");
    }
    const size_t at = 6 + h.position();
    if (b.size() < at + 4) return bad("truncated header");
    const uint32_t sum = LoadFixed<uint32_t>(b.data() + at);
    absl::string_view body(b.data() + at + 4, b.size() - at - 4);
    if (static_cast<uint32_t>(XXH64(body.data(), body.size(), XXH64(b.data(), at, 0))) != sum) {
      return bad("checksum mismatch");
    }
    present = static_cast<uint16_t>(pr);
    s.start_ns = start;
    s.duration_ns = static_cast<int64_t>(dur);
    s.bin_ns = static_cast<int64_t>(bin);
    const uint64_t total = sizes[0] + sizes[1] + sizes[2];
    std::string all;
    if (present & kRawBody) {
      if (body.size() != total) return bad("body size does not match its sections");
      all.assign(body.data(), body.size());
    } else if (!inflate(body, total, &all) || all.size() != total) {
      return bad("payload does not decompress");
    }
    bins_raw = all.substr(0, sizes[0]);
    structure_raw = all.substr(sizes[0], sizes[1]);
    exact_raw = all.substr(sizes[0] + sizes[1], sizes[2]);
  } else {
    if (b.size() < kHeader) return bad("shorter than its header");
    present = version >= 2 ? LoadFixed<uint16_t>(b.data() + 6) : 0;
    s.start_ns = LoadFixed<int64_t>(b.data() + 8);
    s.duration_ns = LoadFixed<int64_t>(b.data() + 16);
    s.bin_ns = LoadFixed<int64_t>(b.data() + 24);
    nbins = LoadFixed<uint32_t>(b.data() + 32);
    uint32_t body_size = LoadFixed<uint32_t>(b.data() + 36);
    uint64_t sum = LoadFixed<uint64_t>(b.data() + 40);
    if (XXH64(b.data() + kHeader, b.size() - kHeader, XXH64(b.data(), kHeader - 8, 0)) != sum) {
      return bad("checksum mismatch");
    }
    if (nbins > kMaxBins || s.bin_ns <= 0 || s.duration_ns <= 0 || body_size > 16u * nbins + 64 ||
        (present & ~(kHasStructure | kHasExact)) != 0) {
      return bad("header out of range");
    }
    // v1 has the bins alone, the rest of the bytes; v2 gives each present
    // section a length.
    absl::string_view rest(b.data() + kHeader, b.size() - kHeader);
    auto next_section = [&](absl::string_view* z) -> bool {
      ByteReader r(rest);
      uint64_t len;
      if (!r.Varint(&len) || len > r.remaining()) return false;
      *z = rest.substr(r.position(), len);
      rest.remove_prefix(r.position() + len);
      return true;
    };
    absl::string_view zbins = rest;
    if (version >= 2 && !next_section(&zbins)) return bad("truncated bins section");
    if (version < 2) rest = {};
    bins_raw.assign(body_size, '\0');
    size_t got = ZSTD_decompress(bins_raw.data(), bins_raw.size(), zbins.data(), zbins.size());
    if (ZSTD_isError(got) || got != body_size) return bad("payload does not decompress");
    if (present & kHasStructure) {
      absl::string_view z;
      if (!next_section(&z) || !inflate(z, 16 + 40 * kMaxWindows, &structure_raw)) {
        return bad("structure section does not decompress");
      }
    }
    if (present & kHasExact) {
      absl::string_view z;
      if (!next_section(&z) || !inflate(z, 64 * kMaxExact, &exact_raw)) {
        return bad("exact-flow section does not decompress");
      }
    }
    if (!rest.empty()) return bad("trailing bytes");
  }
  std::string why = ParseBins(bins_raw, static_cast<uint32_t>(nbins), &s);
  if (why.empty() && (present & kHasStructure)) why = ParseStructure(structure_raw, &s);
  if (why.empty() && (present & kHasExact)) why = ParseExact(exact_raw, &s);
  if (!why.empty()) return bad(why);
  return s;
}

}  // namespace dgc::model

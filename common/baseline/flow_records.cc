#include "common/baseline/flow_records.h"

#include <algorithm>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/baseline/codec.h"

namespace dgc::baseline {
namespace {

constexpr char kMagic[4] = {'D', 'G', 'C', 'F'};
constexpr uint8_t kVersion = 1;
// Smallest possible per-flow footprint in the columns (1-byte varints): lets
// the decoder reject a flow count the input cannot hold before allocating.
constexpr size_t kMinFlowBytes = 11;

int64_t TimeUnit(absl::Span<const Flow> flows) {
  for (int64_t unit : {int64_t{1000000000}, int64_t{1000000}, int64_t{1000}}) {
    bool all = std::all_of(flows.begin(), flows.end(), [unit](const Flow& f) {
      return f.first_ns % unit == 0 && f.last_ns % unit == 0;
    });
    if (all) return unit;
  }
  return 1;
}

Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("flow records: ", what));
}

}  // namespace

std::string EncodeFlowRecords(absl::Span<const Flow> flows) {
  // Address table, busiest first; v4 before v6 so the family is in the index.
  absl::flat_hash_map<IpAddress, uint64_t> uses[2];
  for (const Flow& f : flows) {
    int fam = f.key.version == 6 ? 1 : 0;
    uses[fam][f.key.src]++;
    uses[fam][f.key.dst]++;
  }
  std::vector<std::pair<IpAddress, uint64_t>> table[2];
  absl::flat_hash_map<IpAddress, uint64_t> index[2];
  uint64_t next = 0;
  for (int fam = 0; fam < 2; ++fam) {
    table[fam].assign(uses[fam].begin(), uses[fam].end());
    std::sort(table[fam].begin(), table[fam].end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    for (const auto& [addr, n] : table[fam]) index[fam][addr] = next++;
  }

  const int64_t unit = TimeUnit(flows);
  ByteWriter w;
  w.Bytes(kMagic, 4);
  w.U8(kVersion);
  w.Varint(flows.size());
  w.Varint(static_cast<uint64_t>(unit));
  w.Varint(table[0].size());
  for (const auto& [addr, n] : table[0]) w.Bytes(addr.bytes.data() + 12, 4);
  w.Varint(table[1].size());
  for (const auto& [addr, n] : table[1]) w.Bytes(addr.bytes.data(), 16);

  auto fam = [](const Flow& f) { return f.key.version == 6 ? 1 : 0; };
  for (const Flow& f : flows) w.Varint(index[fam(f)][f.key.src]);
  for (const Flow& f : flows) w.Varint(index[fam(f)][f.key.dst]);
  for (const Flow& f : flows) w.U8(f.key.proto);
  for (const Flow& f : flows) w.U16(f.key.sport);
  for (const Flow& f : flows) w.U16(f.key.dport);
  int64_t prev = 0;
  for (const Flow& f : flows) {
    int64_t t = f.first_ns / unit;
    w.SignedVarint(t - prev);
    prev = t;
  }
  for (const Flow& f : flows) {
    w.Varint(static_cast<uint64_t>(std::max<int64_t>(0, f.last_ns / unit - f.first_ns / unit)));
  }
  for (const Flow& f : flows) w.Varint(f.packets);
  for (const Flow& f : flows) w.Varint(f.bytes);
  for (const Flow& f : flows) {
    if (f.key.proto == kProtoTcp) w.U8(f.tcp_flags);
  }
  return w.Take();
}

StatusOr<std::vector<Flow>> DecodeFlowRecords(absl::string_view bytes) {
  ByteReader r(bytes);
  char magic[4];
  uint8_t version = 0;
  if (!r.Bytes(magic, 4) || std::memcmp(magic, kMagic, 4) != 0) {
    return absl::InvalidArgumentError("flow records: not a dgc flow-record blob (bad magic)");
  }
  if (!r.U8(&version)) return Corrupt("truncated header");
  if (version != kVersion) {
    return absl::UnimplementedError(
        absl::StrCat("flow records: format version ", version, " (this build reads ", kVersion, ")"));
  }
  uint64_t n = 0, unit = 0, n4 = 0, n6 = 0;
  if (!r.Varint(&n) || !r.Varint(&unit)) return Corrupt("truncated header");
  if (unit != 1 && unit != 1000 && unit != 1000000 && unit != 1000000000) {
    return Corrupt(absl::StrCat("time unit ", unit, " ns is not 1, 1e3, 1e6 or 1e9"));
  }
  if (!r.Varint(&n4) || n4 > r.remaining() / 4) return Corrupt("IPv4 address table truncated");
  std::vector<IpAddress> table;
  table.reserve(n4);
  for (uint64_t i = 0; i < n4; ++i) {
    uint8_t b[4] = {};
    r.Bytes(b, 4);
    table.push_back(IpAddress::FromV4(b));
  }
  if (!r.Varint(&n6) || n6 > r.remaining() / 16) return Corrupt("IPv6 address table truncated");
  for (uint64_t i = 0; i < n6; ++i) {
    uint8_t b[16] = {};
    r.Bytes(b, 16);
    table.push_back(IpAddress::FromV6(b));
  }
  if (n > r.remaining() / kMinFlowBytes) {
    return Corrupt(absl::StrCat(n, " flows cannot fit in ", r.remaining(), " bytes"));
  }
  std::vector<Flow> flows(n);
  const uint64_t nt = table.size();
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t idx = 0;
    if (!r.Varint(&idx) || idx >= nt) return Corrupt(absl::StrCat("flow ", i, ": bad source index"));
    flows[i].key.src = table[idx];
    flows[i].key.version = idx < n4 ? 4 : 6;
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t idx = 0;
    if (!r.Varint(&idx) || idx >= nt) {
      return Corrupt(absl::StrCat("flow ", i, ": bad destination index"));
    }
    if ((idx < n4 ? 4 : 6) != flows[i].key.version) {
      return Corrupt(absl::StrCat("flow ", i, ": source and destination of different families"));
    }
    flows[i].key.dst = table[idx];
  }
  for (auto& f : flows) r.U8(&f.key.proto);
  for (auto& f : flows) r.U16(&f.key.sport);
  for (auto& f : flows) r.U16(&f.key.dport);
  if (!r.ok()) return Corrupt("truncated in the protocol/port columns");
  const int64_t max_units = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(unit);
  int64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t delta = 0;
    if (!r.SignedVarint(&delta)) return Corrupt("truncated in the start-time column");
    // prev + delta must stay within +-max_units so that * unit cannot overflow.
    if ((delta > 0 && prev > max_units - delta) || (delta < 0 && prev < -max_units - delta)) {
      return Corrupt(absl::StrCat("flow ", i, ": start time out of range"));
    }
    prev += delta;
    flows[i].first_ns = prev * static_cast<int64_t>(unit);
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t d = 0;
    if (!r.Varint(&d)) return Corrupt("truncated in the duration column");
    int64_t start_units = flows[i].first_ns / static_cast<int64_t>(unit);
    if (d > static_cast<uint64_t>(max_units) || start_units > max_units - static_cast<int64_t>(d)) {
      return Corrupt(absl::StrCat("flow ", i, ": duration out of range"));
    }
    flows[i].last_ns = (start_units + static_cast<int64_t>(d)) * static_cast<int64_t>(unit);
  }
  for (uint64_t i = 0; i < n; ++i) {
    if (!r.Varint(&flows[i].packets) || flows[i].packets == 0) {
      return Corrupt(absl::StrCat("flow ", i, ": missing or zero packet count"));
    }
  }
  for (auto& f : flows) r.Varint(&f.bytes);
  for (auto& f : flows) {
    if (f.key.proto == kProtoTcp) r.U8(&f.tcp_flags);
  }
  if (!r.ok()) return Corrupt("truncated in the byte or TCP-flag column");
  if (r.remaining() != 0) return Corrupt(absl::StrCat(r.remaining(), " trailing bytes"));
  return flows;
}

StatusOr<std::string> PackFlowRecords(absl::Span<const Flow> flows, int zstd_level) {
  return Compress(Codec::kZstd, zstd_level, EncodeFlowRecords(flows));
}

StatusOr<std::vector<Flow>> UnpackFlowRecords(absl::string_view packed) {
  // The raw form is at most ~60 bytes a flow; 4 GiB is far beyond any blob we
  // write and keeps a corrupt frame header from claiming all memory.
  auto raw = Decompress(Codec::kZstd, packed, uint64_t{1} << 32);
  if (!raw.ok()) return Corrupt(raw.status().message());
  return DecodeFlowRecords(*raw);
}

StatusOr<std::vector<PacketRecord>> PacketsFromFlows(absl::Span<const Flow> flows, uint8_t ttl,
                                                     uint64_t max_packets) {
  uint64_t total = 0;
  for (const Flow& f : flows) {
    total += f.packets;
    if (total > max_packets) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "flow records describe more than ", max_packets, " packets; refusing to regenerate"));
    }
  }
  std::vector<PacketRecord> out;
  out.reserve(total);
  for (const Flow& f : flows) {
    const uint64_t n = f.packets;
    const uint64_t base = f.bytes / n, extra = f.bytes % n;
    const __int128 dur = static_cast<__int128>(f.last_ns) - f.first_ns;
    const uint8_t rest = f.tcp_flags & static_cast<uint8_t>(~(kTcpSyn | kTcpFin | kTcpRst));
    PacketRecord p;
    p.src = f.key.src;
    p.dst = f.key.dst;
    p.sport = f.key.sport;
    p.dport = f.key.dport;
    p.proto = f.key.proto;
    p.version = f.key.version;
    p.ttl = ttl;
    for (uint64_t i = 0; i < n; ++i) {
      p.ts_ns = n == 1 ? f.first_ns
                       : static_cast<int64_t>(f.first_ns + dur * static_cast<__int128>(i) /
                                                               static_cast<__int128>(n - 1));
      uint64_t size = base + (i < extra ? 1 : 0);
      p.ip_len = static_cast<uint32_t>(std::min<uint64_t>(size, std::numeric_limits<uint32_t>::max()));
      if (f.key.proto != kProtoTcp) {
        p.tcp_flags = 0;
      } else if (n == 1) {
        p.tcp_flags = f.tcp_flags;
      } else {
        p.tcp_flags = rest;
        if (i == 0) p.tcp_flags |= f.tcp_flags & kTcpSyn;
        if (i == n - 1) p.tcp_flags |= f.tcp_flags & (kTcpFin | kTcpRst);
      }
      out.push_back(p);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  return out;
}

}  // namespace dgc::baseline

#include "common/trace/chunk_format.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "absl/time/time.h"

namespace dgc {
namespace {

constexpr char kMagic[8] = {'D', 'G', 'C', 'C', 'H', 'U', 'N', 'K'};
constexpr size_t kFixedHeader = 64;
constexpr size_t kDirEntry = 32;
constexpr uint8_t kEncodingZstd = 1;
constexpr uint64_t kMaxPackets = 1ULL << 32;  // sanity bound on a decoded count

enum ColumnId : uint16_t {
  kColTs = 1, kColVersion, kColSrc, kColDst, kColProto, kColSport, kColDport, kColIpLen,
  kColTtl, kColTcpFlags, kColTos, kColIpId, kColFrag, kColFlags,
};
constexpr uint16_t kNumColumns = 14;

void Put16(std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); }
void Put32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
void Put64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }
template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Raw (uncompressed) bytes of one column, appended to *out. Sized up front
// and written in place: this runs for every packet ingested.
void ColumnBytes(const Chunk& c, uint16_t id, std::string* out) {
  const auto& ps = c.packets;
  const size_t n = ps.size();
  auto fixed = [&](size_t width, auto&& put) {
    size_t base = out->size();
    out->resize(base + n * width);
    char* w = out->data() + base;
    for (const auto& p : ps) {
      put(w, p);
      w += width;
    }
  };
  switch (id) {
    case kColTs: {  // zigzag varints of the deltas: sized in a first pass
      auto zigzag = [](int64_t d) {
        return (static_cast<uint64_t>(d) << 1) ^ static_cast<uint64_t>(d >> 63);
      };
      size_t bytes = 0;
      int64_t prev = c.start_ns;
      for (const auto& p : ps) {
        uint64_t v = zigzag(p.ts_ns - prev);
        do {
          ++bytes;
          v >>= 7;
        } while (v != 0);
        prev = p.ts_ns;
      }
      size_t base = out->size();
      out->resize(base + bytes);
      char* w = out->data() + base;
      prev = c.start_ns;
      for (const auto& p : ps) {
        uint64_t v = zigzag(p.ts_ns - prev);
        while (v >= 0x80) {
          *w++ = static_cast<char>(v | 0x80);
          v >>= 7;
        }
        *w++ = static_cast<char>(v);
        prev = p.ts_ns;
      }
      break;
    }
    case kColVersion: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.version); }); break;
    case kColSrc:
    case kColDst: {
      size_t bytes = 0;
      for (const auto& p : ps) bytes += p.version == 6 ? 16 : 4;
      size_t base = out->size();
      out->resize(base + bytes);
      char* w = out->data() + base;
      for (const auto& p : ps) {
        const IpAddress& a = id == kColSrc ? p.src : p.dst;
        if (p.version == 6) {
          std::memcpy(w, a.bytes.data(), 16);
          w += 16;
        } else {
          std::memcpy(w, a.bytes.data() + 12, 4);
          w += 4;
        }
      }
      break;
    }
    case kColProto: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.proto); }); break;
    case kColSport: fixed(2, [](char* w, const PacketRecord& p) { std::memcpy(w, &p.sport, 2); }); break;
    case kColDport: fixed(2, [](char* w, const PacketRecord& p) { std::memcpy(w, &p.dport, 2); }); break;
    case kColIpLen: fixed(4, [](char* w, const PacketRecord& p) { std::memcpy(w, &p.ip_len, 4); }); break;
    case kColTtl: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.ttl); }); break;
    case kColTcpFlags: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.tcp_flags); }); break;
    case kColTos: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.tos); }); break;
    case kColIpId: fixed(4, [](char* w, const PacketRecord& p) { std::memcpy(w, &p.ip_id, 4); }); break;
    case kColFrag: fixed(2, [](char* w, const PacketRecord& p) { std::memcpy(w, &p.frag, 2); }); break;
    case kColFlags: fixed(1, [](char* w, const PacketRecord& p) { *w = char(p.flags); }); break;
  }
}

// One compression context per thread, reused: ZSTD_compress() would set up
// (and zero) a fresh one for every column. The output is the same bytes.
ZSTD_CCtx* ThreadCCtx() {
  struct Holder {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ~Holder() { ZSTD_freeCCtx(cctx); }
  };
  thread_local Holder holder;
  return holder.cctx;
}

}  // namespace

std::string EncodeChunk(const Chunk& c, int zstd_level) {
  // Columns are compressed one after another into `body`; stored_off[i] is
  // where column i starts in it.
  std::vector<uint64_t> raw_sizes(kNumColumns);
  std::vector<size_t> stored_off(kNumColumns + 1, 0);
  std::string raw;  // one column at a time
  std::string body;
  ZSTD_CCtx* cctx = ThreadCCtx();
  for (uint16_t i = 0; i < kNumColumns; ++i) {
    raw.clear();
    ColumnBytes(c, i + 1, &raw);
    raw_sizes[i] = raw.size();
    size_t base = body.size();
    body.resize(base + ZSTD_compressBound(raw.size()));
    size_t n = cctx ? ZSTD_compressCCtx(cctx, body.data() + base, body.size() - base, raw.data(),
                                        raw.size(), zstd_level)
                    : ZSTD_compress(body.data() + base, body.size() - base, raw.data(), raw.size(),
                                    zstd_level);
    body.resize(base + (ZSTD_isError(n) ? 0 : n));
    stored_off[i + 1] = body.size();
  }
  auto stored_size = [&](uint16_t i) { return stored_off[i + 1] - stored_off[i]; };
  std::string h;
  uint32_t header_size = static_cast<uint32_t>(kFixedHeader + c.link.size() + kNumColumns * kDirEntry);
  h.append(kMagic, 8);
  Put16(&h, kChunkFormatVersion);
  Put16(&h, kNumColumns);
  Put32(&h, header_size);
  Put64(&h, static_cast<uint64_t>(c.start_ns));
  Put64(&h, static_cast<uint64_t>(c.duration_ns));
  Put64(&h, c.packets.size());
  Put64(&h, c.raw_bytes);
  Put16(&h, static_cast<uint16_t>(c.link.size()));
  Put16(&h, 0);  // flags, reserved
  Put32(&h, 0);  // reserved
  Put64(&h, 0);  // header checksum, filled below
  h.append(c.link);
  for (uint16_t i = 0; i < kNumColumns; ++i) {
    Put16(&h, i + 1);
    h.push_back(char(kEncodingZstd));
    h.push_back(0);
    Put32(&h, 0);
    Put64(&h, raw_sizes[i]);
    Put64(&h, stored_size(i));
    Put64(&h, XXH64(body.data() + stored_off[i], stored_size(i), 0));
  }
  uint64_t hsum = XXH64(h.data(), h.size(), 0);
  std::memcpy(&h[56], &hsum, 8);
  h.append(body);
  return h;
}

StatusOr<Chunk> DecodeChunk(absl::string_view b, absl::string_view name) {
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(name, ": corrupt chunk file: ", what));
  };
  if (b.size() < kFixedHeader || std::memcmp(b.data(), kMagic, 8) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a dgc chunk file (bad magic)"));
  }
  uint16_t version = Get<uint16_t>(b.data() + 8);
  if (version != kChunkFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(name, ": chunk format version ", version,
                                                 " is not supported (this build reads version ",
                                                 kChunkFormatVersion, ")"));
  }
  uint16_t ncols = Get<uint16_t>(b.data() + 10);
  uint32_t header_size = Get<uint32_t>(b.data() + 12);
  uint16_t link_len = Get<uint16_t>(b.data() + 48);
  if (header_size > b.size() || header_size != kFixedHeader + link_len + size_t(ncols) * kDirEntry) {
    return bad("header size does not match its contents (file truncated?)");
  }
  std::string header(b.substr(0, header_size));
  uint64_t want_sum = Get<uint64_t>(header.data() + 56);
  std::memset(&header[56], 0, 8);
  if (XXH64(header.data(), header.size(), 0) != want_sum) return bad("header checksum mismatch");

  Chunk c;
  c.start_ns = static_cast<int64_t>(Get<uint64_t>(b.data() + 16));
  c.duration_ns = static_cast<int64_t>(Get<uint64_t>(b.data() + 24));
  uint64_t n = Get<uint64_t>(b.data() + 32);
  c.raw_bytes = Get<uint64_t>(b.data() + 40);
  if (n > kMaxPackets) return bad("packet count out of range");
  if (c.duration_ns <= 0) return bad("window length is not positive");
  c.link.assign(b.data() + kFixedHeader, link_len);

  std::vector<std::string> cols(kNumColumns + 1);
  std::vector<bool> have(kNumColumns + 1, false);
  size_t off = header_size;
  for (uint16_t i = 0; i < ncols; ++i) {
    const char* e = b.data() + kFixedHeader + link_len + size_t(i) * kDirEntry;
    uint16_t id = Get<uint16_t>(e);
    uint8_t enc = static_cast<uint8_t>(e[2]);
    uint64_t raw = Get<uint64_t>(e + 8), stored = Get<uint64_t>(e + 16), sum = Get<uint64_t>(e + 24);
    if (stored > b.size() - off) return bad(absl::StrCat("column ", id, " runs past the end of the file"));
    absl::string_view z = b.substr(off, stored);
    off += stored;
    if (XXH64(z.data(), z.size(), 0) != sum) return bad(absl::StrCat("column ", id, " checksum mismatch"));
    if (id == 0 || id > kNumColumns) continue;  // a column of a later minor revision: skip
    if (enc != kEncodingZstd) return bad(absl::StrCat("column ", id, " has unknown encoding ", enc));
    if (raw > n * 16 + 16 && raw > n * 10 + 16) return bad(absl::StrCat("column ", id, " size out of range"));
    std::string out(raw, '\0');
    size_t got = ZSTD_decompress(out.data(), out.size(), z.data(), z.size());
    if (ZSTD_isError(got) || got != raw) return bad(absl::StrCat("column ", id, " does not decompress"));
    cols[id] = std::move(out);
    have[id] = true;
  }
  if (off != b.size()) return bad("trailing bytes after the last column");
  for (uint16_t id = 1; id <= kNumColumns; ++id) {
    if (!have[id]) return bad(absl::StrCat("column ", id, " is missing"));
  }
  auto fixed = [&](uint16_t id, size_t width) -> Status {
    if (cols[id].size() != n * width) return bad(absl::StrCat("column ", id, " has the wrong length"));
    return absl::OkStatus();
  };
  DGC_RETURN_IF_ERROR(fixed(kColVersion, 1));
  DGC_RETURN_IF_ERROR(fixed(kColProto, 1));
  DGC_RETURN_IF_ERROR(fixed(kColSport, 2));
  DGC_RETURN_IF_ERROR(fixed(kColDport, 2));
  DGC_RETURN_IF_ERROR(fixed(kColIpLen, 4));
  DGC_RETURN_IF_ERROR(fixed(kColTtl, 1));
  DGC_RETURN_IF_ERROR(fixed(kColTcpFlags, 1));
  DGC_RETURN_IF_ERROR(fixed(kColTos, 1));
  DGC_RETURN_IF_ERROR(fixed(kColIpId, 4));
  DGC_RETURN_IF_ERROR(fixed(kColFrag, 2));
  DGC_RETURN_IF_ERROR(fixed(kColFlags, 1));
  size_t addr_bytes = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t v = static_cast<uint8_t>(cols[kColVersion][i]);
    if (v != 4 && v != 6) return bad(absl::StrCat("packet ", i, " has IP version ", v));
    addr_bytes += v == 6 ? 16 : 4;
  }
  if (cols[kColSrc].size() != addr_bytes || cols[kColDst].size() != addr_bytes) {
    return bad("address columns do not match the version column");
  }

  c.packets.resize(n);
  const std::string& ts = cols[kColTs];
  size_t tpos = 0, apos = 0;
  int64_t prev = c.start_ns;
  for (uint64_t i = 0; i < n; ++i) {
    PacketRecord& p = c.packets[i];
    uint64_t z = 0;
    int shift = 0;
    while (true) {
      if (tpos >= ts.size() || shift > 63) return bad("timestamp column is truncated");
      uint8_t byte = static_cast<uint8_t>(ts[tpos++]);
      z |= uint64_t(byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    int64_t d = static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1);
    p.ts_ns = static_cast<int64_t>(static_cast<uint64_t>(prev) + static_cast<uint64_t>(d));
    prev = p.ts_ns;
    p.version = static_cast<uint8_t>(cols[kColVersion][i]);
    if (p.version == 6) {
      p.src = IpAddress::FromV6(reinterpret_cast<const uint8_t*>(cols[kColSrc].data() + apos));
      p.dst = IpAddress::FromV6(reinterpret_cast<const uint8_t*>(cols[kColDst].data() + apos));
      apos += 16;
    } else {
      p.src = IpAddress::FromV4(reinterpret_cast<const uint8_t*>(cols[kColSrc].data() + apos));
      p.dst = IpAddress::FromV4(reinterpret_cast<const uint8_t*>(cols[kColDst].data() + apos));
      apos += 4;
    }
    p.proto = static_cast<uint8_t>(cols[kColProto][i]);
    p.sport = Get<uint16_t>(cols[kColSport].data() + 2 * i);
    p.dport = Get<uint16_t>(cols[kColDport].data() + 2 * i);
    p.ip_len = Get<uint32_t>(cols[kColIpLen].data() + 4 * i);
    p.ttl = static_cast<uint8_t>(cols[kColTtl][i]);
    p.tcp_flags = static_cast<uint8_t>(cols[kColTcpFlags][i]);
    p.tos = static_cast<uint8_t>(cols[kColTos][i]);
    p.ip_id = Get<uint32_t>(cols[kColIpId].data() + 4 * i);
    p.frag = Get<uint16_t>(cols[kColFrag].data() + 2 * i);
    p.flags = static_cast<uint8_t>(cols[kColFlags][i]);
  }
  if (tpos != ts.size()) return bad("timestamp column has trailing bytes");
  return c;
}

Status WriteChunkFile(const std::string& path, const Chunk& chunk, int zstd_level) {
  return WriteFileAtomic(path, EncodeChunk(chunk, zstd_level));
}

StatusOr<Chunk> ReadChunkFile(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeChunk(bytes, path);
}

std::string ChunkFileName(const Chunk& c) {
  std::string when = absl::FormatTime("%Y%m%dT%H%M%SZ", absl::FromUnixNanos(c.start_ns),
                                      absl::UTCTimeZone());
  return absl::StrFormat("chunk-%012d-%s%s", c.seq(), when, kChunkFileSuffix);
}

}  // namespace dgc

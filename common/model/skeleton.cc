#include "common/model/skeleton.h"

#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"

namespace dgc::model {
namespace {

constexpr char kMagic[4] = {'D', 'G', 'C', 'S'};
constexpr size_t kHeader = 4 + 2 + 2 + 8 + 8 + 8 + 4 + 4 + 8;  // see Encode
constexpr uint32_t kMaxBins = 1u << 24;

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

std::string Skeleton::Encode() const {
  ByteWriter body_w;
  uint64_t prev = 0;
  bool first = true;
  for (size_t i = 0; i < bins(); ++i) {
    if (new_flows[i] == 0 && packets[i] == 0 && bytes[i] == 0) continue;
    body_w.Varint(first ? i : i - prev - 1);  // gap since the previous non-empty bin
    body_w.Varint(new_flows[i]);
    body_w.Varint(packets[i]);
    body_w.Varint(bytes[i]);
    prev = i;
    first = false;
  }
  std::string body = body_w.Take();
  std::string z(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compress(z.data(), z.size(), body.data(), body.size(), 19);
  z.resize(ZSTD_isError(n) ? 0 : n);
  std::string out;
  out.append(kMagic, 4);
  PutFixed<uint16_t>(&out, kSkeletonFormatVersion);
  PutFixed<uint16_t>(&out, 0);
  PutFixed<int64_t>(&out, start_ns);
  PutFixed<int64_t>(&out, duration_ns);
  PutFixed<int64_t>(&out, bin_ns);
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(bins()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(body.size()));
  PutFixed<uint64_t>(&out, XXH64(z.data(), z.size(), XXH64(out.data(), out.size(), 0)));
  out += z;
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
  if (version != kSkeletonFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(name, ": skeleton format version ", version,
                                                 " is not supported (this build reads ",
                                                 kSkeletonFormatVersion, ")"));
  }
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
  if (nbins > kMaxBins || s.bin_ns <= 0 || s.duration_ns <= 0 || body_size > 16u * nbins + 64) {
    return bad("header out of range");
  }
  std::string body(body_size, '\0');
  size_t got = ZSTD_decompress(body.data(), body.size(), b.data() + kHeader, b.size() - kHeader);
  if (ZSTD_isError(got) || got != body_size) return bad("payload does not decompress");
  s.new_flows.assign(nbins, 0);
  s.packets.assign(nbins, 0);
  s.bytes.assign(nbins, 0);
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
  return s;
}

}  // namespace dgc::model

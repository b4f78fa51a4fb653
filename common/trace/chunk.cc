#include "common/trace/chunk.h"

#include <algorithm>
#include <cstring>

namespace dgc {
namespace {

// The flow tuple packed into five words, for the per-chunk map of Emit that
// sees every packet: hashing and comparing it stays inline (FlowKey's
// equality compares its addresses with memcmp calls).
struct PackedFlowKey {
  uint64_t w[5] = {};

  explicit PackedFlowKey(const PacketRecord& p) {
    std::memcpy(&w[0], p.src.bytes.data(), 16);
    std::memcpy(&w[2], p.dst.bytes.data(), 16);
    w[4] = uint64_t(p.sport) | uint64_t(p.dport) << 16 | uint64_t(p.proto) << 32 |
           uint64_t(p.version) << 40;
  }
  FlowKey Unpack() const {
    FlowKey k;
    std::memcpy(k.src.bytes.data(), &w[0], 16);
    std::memcpy(k.dst.bytes.data(), &w[2], 16);
    k.sport = uint16_t(w[4]);
    k.dport = uint16_t(w[4] >> 16);
    k.proto = uint8_t(w[4] >> 32);
    k.version = uint8_t(w[4] >> 40);
    return k;
  }
  friend bool operator==(const PackedFlowKey& a, const PackedFlowKey& b) {
    return ((a.w[0] ^ b.w[0]) | (a.w[1] ^ b.w[1]) | (a.w[2] ^ b.w[2]) | (a.w[3] ^ b.w[3]) |
            (a.w[4] ^ b.w[4])) == 0;
  }
};

struct PackedFlowKeyHash {
  size_t operator()(const PackedFlowKey& k) const {
    uint64_t h = 0x243f6a8885a308d3ULL;
    for (uint64_t x : k.w) h = (h ^ x) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

}  // namespace

int64_t WindowStart(int64_t ts_ns, int64_t duration_ns) {
  int64_t q = ts_ns / duration_ns;
  if (ts_ns % duration_ns != 0 && ts_ns < 0) --q;
  return q * duration_ns;
}

Chunker::Chunker(ChunkerOptions options, ChunkSink sink)
    : options_(std::move(options)), sink_(std::move(sink)) {}

Status Chunker::Add(const PacketRecord& p, uint32_t raw_bytes) {
  int64_t start = WindowStart(p.ts_ns, options_.chunk_ns);
  auto it = open_.find(start);
  if (it == open_.end()) {
    Chunk c;
    c.link = options_.link;
    c.start_ns = start;
    c.duration_ns = options_.chunk_ns;
    // A window after every open one (time moving on, not a late packet)
    // gets room for as many packets as the latest holds: windows of one link
    // are alike, and growing by doubling copies every record.
    if (!open_.empty() && start > open_.rbegin()->first) {
      c.packets.reserve(open_.rbegin()->second.packets.size());
    }
    it = open_.emplace(start, std::move(c)).first;
  }
  if (start <= last_emitted_start_) ++late_packets_;
  it->second.packets.push_back(p);
  it->second.raw_bytes += raw_bytes;
  if (p.ts_ns > watermark_ns_) {
    watermark_ns_ = p.ts_ns;
    // Close every window that ended more than reorder_ns before the watermark.
    while (!open_.empty()) {
      auto first = open_.begin();
      if (first->second.end_ns() + options_.reorder_ns > watermark_ns_) break;
      Chunk c = std::move(first->second);
      open_.erase(first);
      DGC_RETURN_IF_ERROR(Emit(std::move(c)));
    }
  }
  return absl::OkStatus();
}

Status Chunker::Flush() {
  while (!open_.empty()) {
    Chunk c = std::move(open_.begin()->second);
    open_.erase(open_.begin());
    DGC_RETURN_IF_ERROR(Emit(std::move(c)));
  }
  return absl::OkStatus();
}

Status Chunker::Emit(Chunk&& c) {
  auto by_time = [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; };
  // Usually already in order; a stable sort would still move every record.
  if (!std::is_sorted(c.packets.begin(), c.packets.end(), by_time)) {
    std::stable_sort(c.packets.begin(), c.packets.end(), by_time);
  }
  bool amend = c.start_ns <= last_emitted_start_;
  if (!amend) {
    // Mark continuations and remember where each tuple was last seen. Flows
    // idle for longer than the timeout before this window are forgotten.
    absl::flat_hash_map<PackedFlowKey, int64_t, PackedFlowKeyHash> seen_here;
    seen_here.reserve(c.packets.size() / 4 + 16);
    for (PacketRecord& p : c.packets) {
      auto [it, first_here] = seen_here.try_emplace(PackedFlowKey(p), p.ts_ns);
      if (first_here || p.ts_ns - it->second > kFlowIdleTimeoutNs) ++flows_;
      if (first_here) {
        auto prev = last_seen_.find(FlowKey::Of(p));
        if (prev != last_seen_.end() && p.ts_ns - prev->second <= kFlowIdleTimeoutNs) {
          p.flags |= kPktFlowContinued;
        }
      }
      it->second = p.ts_ns;
    }
    for (const auto& [key, ts] : seen_here) last_seen_[key.Unpack()] = ts;
    int64_t horizon = c.end_ns() - kFlowIdleTimeoutNs;
    absl::erase_if(last_seen_, [horizon](const auto& kv) { return kv.second < horizon; });
    last_emitted_start_ = c.start_ns;
    ++chunks_emitted_;
  } else {
    ++amendments_;
  }
  return sink_(std::move(c), amend);
}

}  // namespace dgc

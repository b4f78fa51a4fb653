#include "common/trace/chunk.h"

#include <algorithm>

namespace dgc {

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
  std::stable_sort(c.packets.begin(), c.packets.end(),
                   [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  bool amend = c.start_ns <= last_emitted_start_;
  if (!amend) {
    // Mark continuations and remember where each tuple was last seen. Flows
    // idle for longer than the timeout before this window are forgotten.
    absl::flat_hash_map<FlowKey, int64_t> seen_here;
    seen_here.reserve(c.packets.size() / 4 + 16);
    for (PacketRecord& p : c.packets) {
      FlowKey key = FlowKey::Of(p);
      auto [it, first_here] = seen_here.try_emplace(key, p.ts_ns);
      if (first_here || p.ts_ns - it->second > kFlowIdleTimeoutNs) ++flows_;
      if (first_here) {
        auto prev = last_seen_.find(key);
        if (prev != last_seen_.end() && p.ts_ns - prev->second <= kFlowIdleTimeoutNs) {
          p.flags |= kPktFlowContinued;
        }
      }
      it->second = p.ts_ns;
    }
    for (const auto& [key, ts] : seen_here) last_seen_[key] = ts;
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

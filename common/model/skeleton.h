// Skeleton: what dgc keeps exactly beside the model for one chunk (it holds
// nothing the model could learn better):
// - per time bin, the exact counts of new flows, packets and bytes;
// - per structure window (60 s), the distinct sources, destinations, (src,
//   dst) pairs and 5-tuples active in it: what longitudinal analysis reads
//   per window and what flows drawn one by one get wrong;
// - the K heaviest flows (by packets, then bytes) as exact records: 5-tuple,
//   start, packets, bytes, duration, first TTL, OR of TCP flags, marks.
// Generation conditions on all three: volume over time and flow starts come
// out right by construction, the exact flows' headers are forced, and the
// sampled flows' hosts are steered to the windows' distinct counts.
#ifndef DGC_COMMON_MODEL_SKELETON_H_
#define DGC_COMMON_MODEL_SKELETON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/chunk.h"
#include "common/trace/flow.h"

namespace dgc::model {

// 3: a varint header and one zstd -19 frame over every section (or the
// sections as they are when that is smaller); 2: structure windows and exact
// flows (sections, each zstd -19, a fixed 48-byte header); 1: bins only.
// All three are read.
constexpr uint16_t kSkeletonFormatVersion = 3;
constexpr int64_t kStructureWindowNs = 60LL * 1000000000;

// Distinct counts over the flows active (with a packet) in one window.
struct WindowStats {
  uint32_t srcs = 0, dsts = 0, pairs = 0, five_tuples = 0;
  friend bool operator==(const WindowStats& a, const WindowStats& b) {
    return a.srcs == b.srcs && a.dsts == b.dsts && a.pairs == b.pairs && a.five_tuples == b.five_tuples;
  }
};

// One flow kept exactly. Times at microsecond resolution.
struct ExactFlow {
  FlowKey key;
  int64_t start_offset_us = 0;  // first packet, from the chunk's start
  int64_t duration_us = 0;
  uint64_t packets = 1;
  uint64_t bytes = 0;
  uint8_t ttl = 64;        // of the first packet
  uint8_t tcp_flags = 0;   // OR over the flow's packets
  uint8_t marks = 0;       // kFlowContinued | kFlowOpenAtEnd
  friend bool operator==(const ExactFlow& a, const ExactFlow& b) {
    return a.key == b.key && a.start_offset_us == b.start_offset_us && a.duration_us == b.duration_us &&
           a.packets == b.packets && a.bytes == b.bytes && a.ttl == b.ttl && a.tcp_flags == b.tcp_flags &&
           a.marks == b.marks;
  }
};

struct Skeleton {
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  int64_t bin_ns = 0;
  std::vector<uint32_t> new_flows;  // per bin: flows whose first packet (in this chunk) falls in it
  std::vector<uint32_t> packets;    // per bin
  std::vector<uint64_t> bytes;      // per bin: sum of IP lengths
  int64_t window_ns = 0;            // 0: no structure windows
  std::vector<WindowStats> windows; // from start_ns, window_ns each
  WindowStats total;                // the same over the whole chunk
  std::vector<ExactFlow> exact;     // in order of start

  // Bytes each section takes in Encode(): what adding it to the one frame
  // costs; the header is counted in `bins`. They sum to Encode().size().
  struct Sizes {
    size_t bins = 0, structure = 0, exact = 0;
  };

  size_t bins() const { return new_flows.size(); }
  uint64_t total_flows() const;
  uint64_t total_packets() const;
  uint64_t total_bytes() const;

  // Bins of min(1 s, chunk / 100): fine enough for METRICS.md's windows
  // (1 s for spans of 100 s or more, span / 100 below).
  static int64_t DefaultBinNs(int64_t chunk_ns);
  static Skeleton FromChunk(const Chunk& chunk, const std::vector<Flow>& flows, int64_t bin_ns);
  // Adds the structure windows (window_ns: min(60 s, the chunk)).
  void AddStructure(const Chunk& chunk, int64_t window_ns);
  // The flows of `chunk` in exact-flow order: by packets, then bytes, then
  // start (the first `k` are what SetExactFlows keeps).
  static std::vector<ExactFlow> RankFlows(const Chunk& chunk);
  // Keeps the first `k` of `ranked` (RankFlows), in order of start.
  void SetExactFlows(const std::vector<ExactFlow>& ranked, size_t k);
  Sizes EncodedSizes() const;

  // Compact form (format 3): header, then the sections (varint-coded
  // non-empty bins; the windows; the exact flows, columnar, delta-coded) in
  // one zstd -19 frame, a 32-bit checksum over both.
  std::string Encode() const;
  // Format 3 with the sections as they are, not compressed: for a container
  // that compresses many skeletons together (the library's packs of quiet
  // chunks), where one frame over all of them is a third of their frames.
  std::string EncodePlain() const;
  // Encode() in an older format (2), for tests of what older builds wrote.
  std::string EncodeFormat(uint16_t version) const;
  // DataLoss / InvalidArgument / Unimplemented naming `name` on bad input.
  [[nodiscard]] static StatusOr<Skeleton> Decode(const std::string& bytes, const std::string& name);
};

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_SKELETON_H_

// Skeleton: per time bin of a chunk, the exact counts of new flows, packets
// and bytes. Stored beside the model (it holds nothing per flow); generation
// conditions on it so that volume over time and flow start times come out
// right by construction.
#ifndef DGC_COMMON_MODEL_SKELETON_H_
#define DGC_COMMON_MODEL_SKELETON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/chunk.h"
#include "common/trace/flow.h"

namespace dgc::model {

constexpr uint16_t kSkeletonFormatVersion = 1;

struct Skeleton {
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  int64_t bin_ns = 0;
  std::vector<uint32_t> new_flows;  // per bin: flows whose first packet (in this chunk) falls in it
  std::vector<uint32_t> packets;    // per bin
  std::vector<uint64_t> bytes;      // per bin: sum of IP lengths

  size_t bins() const { return new_flows.size(); }
  uint64_t total_flows() const;
  uint64_t total_packets() const;
  uint64_t total_bytes() const;

  // Bins of min(1 s, chunk / 100): fine enough for METRICS.md's windows
  // (1 s for spans of 100 s or more, span / 100 below).
  static int64_t DefaultBinNs(int64_t chunk_ns);
  static Skeleton FromChunk(const Chunk& chunk, const std::vector<Flow>& flows, int64_t bin_ns);

  // Compact form: header, varint-coded non-empty bins, zstd, XXH64.
  std::string Encode() const;
  // DataLoss / InvalidArgument / Unimplemented naming `name` on bad input.
  [[nodiscard]] static StatusOr<Skeleton> Decode(const std::string& bytes, const std::string& name);
};

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_SKELETON_H_

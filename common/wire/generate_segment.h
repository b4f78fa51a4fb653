// GenerateSegment: a run of chunks one worker regenerates for `dgcctl
// generate --coordinator` (a JobAssign of kind kGenerate), and the packets it
// sends back (JobResult.artifact, then OperatorReply.data to dgcctl).
//
// The request travels in the JobAssign's fields: `parent` is the model the
// chunks share (a ParentBundle, or its id when the worker holds it),
// `train_chunks` the chunks' skeletons (Skeleton::Encode bytes, as the
// library keeps them), `options_json` the rest (EncodeSegmentOptions).
// Chunks of one segment share their model and tokenizer, as the embedded
// generate's runs do; each is sampled with its own seed, so a segment's
// packets are the same whatever run it is part of and whichever worker
// samples it.
//
// Packets: "DGCGS" 0x01, varint chunk count, then per chunk a varint length
// and that chunk's packets as a .dgcc chunk file (EncodeChunk, which keeps
// every PacketRecord field and the order).
#ifndef DGC_COMMON_WIRE_GENERATE_SEGMENT_H_
#define DGC_COMMON_WIRE_GENERATE_SEGMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/trace/packet.h"
#include "nlohmann/json.hpp"

namespace dgc::wire {

struct SegmentChunk {
  std::string link;
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  uint64_t seed = 0;  // the embedded generate's: --seed XOR the chunk's seq
};

struct SegmentOptions {
  std::vector<SegmentChunk> chunks;
  nlohmann::json tokenizer;  // TokenizerConfig JSON of the chunks' report; null: the default
  double min_p = 0;
  int32_t exact_templates = 0;  // GenerateOptions::exact_templates; absent: 0 (every exact flow sampled)
};

std::string EncodeSegmentOptions(const SegmentOptions& o);
// InvalidArgument naming what is wrong (never throws).
[[nodiscard]] StatusOr<SegmentOptions> DecodeSegmentOptions(absl::string_view json);

// packets[c]: chunk c's packets, in the order generation gave them.
std::string EncodeSegmentPackets(const std::vector<SegmentChunk>& chunks,
                                 const std::vector<std::vector<PacketRecord>>& packets);
// InvalidArgument / DataLoss on bytes EncodeSegmentPackets did not write, or
// for another number of chunks than `chunks` expected.
[[nodiscard]] StatusOr<std::vector<std::vector<PacketRecord>>> DecodeSegmentPackets(absl::string_view bytes,
                                                                                    size_t chunks);

}  // namespace dgc::wire

#endif  // DGC_COMMON_WIRE_GENERATE_SEGMENT_H_

// Regeneration of one chunk: the skeleton says how many flows start in each
// time bin; the model, conditioned on where each starts, samples the rest of
// every flow in large batches; the tokenizer expands flows to packets.
#ifndef DGC_COMMON_MODEL_GENERATOR_H_
#define DGC_COMMON_MODEL_GENERATOR_H_

#include <cstdint>
#include <vector>

#include "common/base/status.h"
#include "common/model/flow_model.h"
#include "common/model/skeleton.h"
#include "common/model/tokenizer.h"
#include "common/trace/flow.h"
#include "common/trace/packet.h"

namespace dgc::model {

struct GenerateOptions {
  uint64_t seed = 1;
  double temperature = 1.0;
  int32_t batch_size = 2048;
  // Warp packet times so that every skeleton bin holds its exact packet count.
  bool match_packet_counts = true;
};

struct GenerateStats {
  uint64_t flows = 0;
  uint64_t packets = 0;
  uint64_t dropped_past_end = 0;  // packets of flows running past the chunk's end
  double sample_seconds = 0;
  double expand_seconds = 0;
};

// Time-ordered packets for the chunk the skeleton describes. Same model,
// skeleton and seed: same packets.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> GenerateChunk(FlowModel& model, const FlowTokenizer& tokenizer,
                                                                const Skeleton& skeleton,
                                                                const GenerateOptions& options,
                                                                GenerateStats* stats = nullptr);

// A flow the previous chunk left open (its idle timeout had not expired at
// the chunk's end), for stitching.
struct OpenFlow {
  FlowKey key;
  int64_t last_ns = 0;
};

// Stitches flows cut by a chunk edge. Flows of `packets` (one chunk, time
// ordered, ending at `chunk_end_ns`) that the model marked as continuing one
// of the previous chunk take the 5-tuple of a flow in `open` (same protocol
// and family, idle for at most the flow timeout, most fields in common
// first); each open flow is used once. On return `open` holds this chunk's
// flows left open at its end. Pass an empty `open` for a link's first chunk.
void StitchFlows(std::vector<OpenFlow>* open, int64_t chunk_end_ns, std::vector<PacketRecord>* packets);

// Moves packet times (sorted on entry and exit) so that each skeleton bin gets
// its recorded packet count, by a monotone piecewise-linear warp between the
// points where generated and recorded cumulative counts agree; gaps inside a
// segment keep their proportions. Exposed for tests.
void MatchPacketCounts(const Skeleton& skeleton, std::vector<PacketRecord>* packets);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_GENERATOR_H_

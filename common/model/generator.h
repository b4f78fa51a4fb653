// Regeneration of one chunk: the skeleton says how many flows start in each
// time bin; the model, conditioned on where each starts, samples the rest of
// every flow in large batches; the tokenizer expands flows to packets.
#ifndef DGC_COMMON_MODEL_GENERATOR_H_
#define DGC_COMMON_MODEL_GENERATOR_H_

#include <cstdint>
#include <random>
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
  double min_p = 0.02;  // SampleOptions::min_p; measured in DESIGN_NOTES.md
  // Flows sampled together. 512 measured 1.55x faster than 2048 on a 211k-
  // packet chunk (2 cores: the KV cache of a smaller batch stays in cache);
  // 256 is no faster.
  int32_t batch_size = 512;
  // Threads sampling batches (SampleOptions::threads; the output is the same
  // for any value). 0: the CPUs this process may use (1 on a GPU).
  int32_t threads = 0;
  // Scale the summarised rest of long flows so the chunk's packet total is
  // the skeleton's, and place those rest packets where the skeleton's bins
  // still lack packets (flow starts, heads and durations stay as sampled).
  bool match_packet_counts = true;
  // Then also warp all packet times so every bin gets its exact count
  // (MatchPacketCounts). Off: it moves flow starts, and measured worse
  // (DESIGN_NOTES.md).
  bool warp_times = false;
  // Steer the drawn flows' hosts to the skeleton's per-window distinct
  // counts (reuse hosts already active in the window before inventing one).
  bool steer_hosts = true;
  // With it, the drawn flows' 5-tuples too, to the windows' and the chunk's
  // distinct 5-tuples: past the count a flow takes the ports of one already
  // active between its hosts (a persistent conversation's flows keep their
  // 5-tuple, so flow tools such as nfpcapd merge them as in the real trace).
  bool steer_tuples = true;
  // Scale the drawn sizes of each exactly kept flow's packets so the flow
  // totals its recorded bytes (a flow record's byte count is exact too).
  bool fit_exact_bytes = true;
  // Exact flows with the same DetailKey (protocol, service ports, packet
  // count and duration buckets, TTL) draw their packets from at most this
  // many of them: the first N of a key are sampled, each later one copies
  // the packets one of those drew (picked by its draw key) and is then fit
  // to its own bytes, duration and flags like any exact flow. Those flows
  // cost no decode steps. 0: every exact flow is sampled. Measured on the
  // 1M bench trace (DESIGN_NOTES.md, session 18), packets/s on one thread
  // and whole-trace mean, 0 / 1 / 2 / 8: at 1x 30.6k 0.0827 / 254k 0.0852 /
  // 165k 0.0823 / 72k 0.0823; at 0.1x 28.7k 0.1715 / 64k 0.1725 / 52k
  // 0.1731 / 37k 0.1721. 2: the mean as sampling each, within the noise.
  int32_t exact_templates = 2;
};

struct GenerateStats {
  uint64_t flows = 0;
  uint64_t exact_flows = 0;  // of `flows`, kept exactly (their headers forced)
  uint64_t exact_shared = 0;  // of `exact_flows`, packets copied from another (exact_templates)
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

// Several chunks of one model at once, chunk c as GenerateChunk with
// options.seed = seeds[c] would make it: their flows are sampled in the same
// batches (the draws keyed per chunk: SampleOptions::draw_keys), so a run of
// quiet chunks, a few flows each, pays the per-step cost of decoding once,
// not once per chunk. Same packets as chunk by chunk, but where float
// rounding of a differently shaped product flips a draw (rare).
[[nodiscard]] StatusOr<std::vector<std::vector<PacketRecord>>> GenerateChunks(
    FlowModel& model, const FlowTokenizer& tokenizer, const std::vector<const Skeleton*>& skeletons,
    const std::vector<uint64_t>& seeds, const GenerateOptions& options, GenerateStats* stats = nullptr);

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

// One generated flow's packets: its first `head` packets keep their sampled
// times; the rest are the flow's summarised tail.
struct ExpandedFlow {
  std::vector<PacketRecord> packets;
  size_t head = 0;
};

// Re-times the tail packets of `flows` (all but each flow's last, which marks
// its end) inside their flow's span [last head packet, last packet], drawing
// bins in proportion to what the skeleton's bins still lack after every head
// packet is counted; uniform in the span when no bin there lacks any. The
// heaviest tails go first. Deterministic given `rng`. Exposed for tests.
void PlaceTailPackets(const Skeleton& skeleton, std::vector<ExpandedFlow>* flows, std::mt19937_64& rng);

// Moves packet times (sorted on entry and exit) so that each skeleton bin gets
// its recorded packet count, by a monotone piecewise-linear warp between the
// points where generated and recorded cumulative counts agree; gaps inside a
// segment keep their proportions. Exposed for tests.
void MatchPacketCounts(const Skeleton& skeleton, std::vector<PacketRecord>* packets);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_GENERATOR_H_

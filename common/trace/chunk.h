// A chunk: all IP packets of one link in the window [start, start + W).
// Windows are aligned to multiples of W since the Unix epoch, so every ingest
// node (and file mode and live mode) cuts the same windows.
#ifndef DGC_COMMON_TRACE_CHUNK_H_
#define DGC_COMMON_TRACE_CHUNK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/base/status.h"
#include "common/trace/flow.h"
#include "common/trace/packet.h"

namespace dgc {

constexpr int64_t kDefaultChunkNs = 60LL * 1000000000;

struct Chunk {
  std::string link;           // name of the link (tap) the packets came from
  int64_t start_ns = 0;       // window start, a multiple of duration_ns
  int64_t duration_ns = kDefaultChunkNs;
  uint64_t raw_bytes = 0;     // bytes these packets took in the source capture (16 + caplen each)
  std::vector<PacketRecord> packets;  // sorted by ts_ns (stable)

  int64_t end_ns() const { return start_ns + duration_ns; }
  // Window index since the epoch; unique per link and chunk length.
  int64_t seq() const { return duration_ns > 0 ? start_ns / duration_ns : 0; }
};

// Window start of `ts_ns` for windows of `duration_ns` (floor, also for
// timestamps before 1970).
int64_t WindowStart(int64_t ts_ns, int64_t duration_ns);

struct ChunkerOptions {
  std::string link = "default";
  int64_t chunk_ns = kDefaultChunkNs;
  // A window is closed once a packet this much later than its end has been
  // seen: packets that arrive out of order by less are placed without cost.
  // Later ones still reach their window, as an amendment (see ChunkSink).
  int64_t reorder_ns = 10LL * 1000000000;
};

// Receives finished chunks. `amend` is true when the chunk holds late packets
// for a window that was already emitted: the sink must merge them into it.
using ChunkSink = std::function<Status(Chunk&& chunk, bool amend)>;

// Cuts a packet stream into chunks. Not thread safe: one owner feeds it.
// Marks the first packet of each flow that continues a flow of an earlier
// chunk (kPktFlowContinued), so flows cut by an edge can be stitched.
class Chunker {
 public:
  Chunker(ChunkerOptions options, ChunkSink sink);

  // `raw_bytes`: what the packet took in its capture (record header + caplen).
  [[nodiscard]] Status Add(const PacketRecord& packet, uint32_t raw_bytes);
  // Emits every open window, oldest first.
  [[nodiscard]] Status Flush();

  uint64_t chunks_emitted() const { return chunks_emitted_; }
  uint64_t amendments() const { return amendments_; }
  uint64_t late_packets() const { return late_packets_; }
  uint64_t flows() const { return flows_; }

 private:
  [[nodiscard]] Status Emit(Chunk&& chunk);

  ChunkerOptions options_;
  ChunkSink sink_;
  std::map<int64_t, Chunk> open_;  // by window start
  int64_t watermark_ns_ = std::numeric_limits<int64_t>::min();
  int64_t last_emitted_start_ = std::numeric_limits<int64_t>::min();
  absl::flat_hash_map<FlowKey, int64_t> last_seen_;  // tuple -> last ts in emitted chunks
  uint64_t chunks_emitted_ = 0;
  uint64_t amendments_ = 0;
  uint64_t late_packets_ = 0;
  uint64_t flows_ = 0;
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_CHUNK_H_

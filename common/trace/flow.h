// Flows as METRICS.md defines them: a unidirectional 5-tuple whose packets are
// never more than 60 s apart; a longer gap starts a new flow of the same tuple.
#ifndef DGC_COMMON_TRACE_FLOW_H_
#define DGC_COMMON_TRACE_FLOW_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/types/span.h"
#include "common/trace/packet.h"

namespace dgc {

constexpr int64_t kFlowIdleTimeoutNs = 60LL * 1000000000;

struct FlowKey {
  IpAddress src;
  IpAddress dst;
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t proto = 0;
  uint8_t version = 4;

  static FlowKey Of(const PacketRecord& p) {
    return FlowKey{p.src, p.dst, p.sport, p.dport, p.proto, p.version};
  }
  friend bool operator==(const FlowKey& a, const FlowKey& b) {
    return a.src == b.src && a.dst == b.dst && a.sport == b.sport && a.dport == b.dport &&
           a.proto == b.proto && a.version == b.version;
  }
  template <typename H>
  friend H AbslHashValue(H h, const FlowKey& k) {
    return H::combine(std::move(h), k.src, k.dst, k.sport, k.dport, k.proto, k.version);
  }
};

// Flow::marks bits, for stitching flows cut by chunk edges.
constexpr uint8_t kFlowContinued = 0x01;  // began in an earlier chunk (its first packet here
                                          // carries kPktFlowContinued)
constexpr uint8_t kFlowOpenAtEnd = 0x02;  // its idle timeout had not expired at the chunk's
                                          // end: it may go on in the next chunk

struct Flow {
  FlowKey key;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
  uint64_t packets = 0;
  uint64_t bytes = 0;       // sum of ip_len
  uint8_t tcp_flags = 0;    // OR over the flow's packets
  uint8_t marks = 0;

  int64_t duration_ns() const { return last_ns - first_ns; }
};

// Splits time-sorted `packets` into flows, in order of first packet.
// `window_end_ns` (exclusive end of the chunk) sets kFlowOpenAtEnd; pass
// INT64_MAX for a whole trace. When `flow_of_packet` is given it receives,
// for each packet, the index of its flow.
std::vector<Flow> BuildFlows(absl::Span<const PacketRecord> packets,
                             int64_t window_end_ns = std::numeric_limits<int64_t>::max(),
                             std::vector<uint32_t>* flow_of_packet = nullptr);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_FLOW_H_

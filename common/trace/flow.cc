#include "common/trace/flow.h"

#include "absl/container/flat_hash_map.h"

namespace dgc {

std::vector<Flow> BuildFlows(absl::Span<const PacketRecord> packets, int64_t window_end_ns,
                             std::vector<uint32_t>* flow_of_packet) {
  std::vector<Flow> flows;
  absl::flat_hash_map<FlowKey, uint32_t> open;  // tuple -> index of its latest flow
  open.reserve(packets.size() / 4 + 16);
  if (flow_of_packet) flow_of_packet->resize(packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    const PacketRecord& p = packets[i];
    FlowKey key = FlowKey::Of(p);
    auto [it, inserted] = open.try_emplace(key, 0);
    if (!inserted && p.ts_ns - flows[it->second].last_ns > kFlowIdleTimeoutNs) inserted = true;
    if (inserted) {
      it->second = static_cast<uint32_t>(flows.size());
      Flow& f = flows.emplace_back();
      f.key = key;
      f.first_ns = p.ts_ns;
      if (p.flags & kPktFlowContinued) f.marks |= kFlowContinued;
    }
    Flow& f = flows[it->second];
    f.last_ns = p.ts_ns;
    f.packets++;
    f.bytes += p.ip_len;
    f.tcp_flags |= p.tcp_flags;
    if (flow_of_packet) (*flow_of_packet)[i] = it->second;
  }
  if (window_end_ns != std::numeric_limits<int64_t>::max()) {
    for (Flow& f : flows) {
      if (window_end_ns - f.last_ns <= kFlowIdleTimeoutNs) f.marks |= kFlowOpenAtEnd;
    }
  }
  return flows;
}

}  // namespace dgc

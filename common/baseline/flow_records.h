// Flow records, the summary operators already keep (NetFlow/IPFIX style):
// per flow of METRICS.md the 5-tuple, first and last timestamp, packets,
// bytes and the OR of TCP flags. Nothing else: no TTL, no per-packet sizes.
//
// Serialized form (version 1), before zstd. Columns, each written whole
// before the next, so that zstd sees runs of like values:
//   "DGCF" u8 version
//   varint flows, varint time unit in ns (1e9, 1e6, 1e3 or 1: the largest that
//     divides every first/last timestamp, so times stay exact)
//   varint v4 addresses, then 4 bytes each; varint v6 addresses, 16 bytes each.
//     The table is in descending order of use, so busy addresses get short
//     indices; an index below the v4 count is an IPv4 address.
//   per flow: varint src index | varint dst index | u8 proto | u16 sport |
//     u16 dport | zigzag varint first-timestamp delta from the previous flow
//     (units) | varint duration (units) | varint packets | varint bytes
//   per TCP flow: u8 OR of TCP flags
// Flow::marks are not kept (they concern chunk edges, not a whole trace).
#ifndef DGC_COMMON_BASELINE_FLOW_RECORDS_H_
#define DGC_COMMON_BASELINE_FLOW_RECORDS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/flow.h"

namespace dgc::baseline {

// The uncompressed serialized form above.
std::string EncodeFlowRecords(absl::Span<const Flow> flows);

// Parses EncodeFlowRecords output. DataLoss naming the part when the bytes are
// truncated or inconsistent (an index out of the table, mixed families in
// one flow, a flow with no packets); never reads out of bounds.
[[nodiscard]] StatusOr<std::vector<Flow>> DecodeFlowRecords(absl::string_view bytes);

// EncodeFlowRecords + zstd at `zstd_level`: the kept form of the flows
// baseline and of the "flow records" row of the storage report.
[[nodiscard]] StatusOr<std::string> PackFlowRecords(absl::Span<const Flow> flows,
                                                    int zstd_level = 19);
[[nodiscard]] StatusOr<std::vector<Flow>> UnpackFlowRecords(absl::string_view packed);

// How packets are rebuilt from flow records (the record keeps nothing else):
// - a flow of n packets gets n packets spread evenly over [first, last]: packet
//   i at first + floor(i * duration / (n - 1)), so first and last are exact;
// - sizes are the mean: floor(bytes / n), one byte more for the first
//   bytes % n packets, so the flow's total bytes are exact;
// - TCP flags: SYN only on the first packet, FIN and RST only on the last,
//   the other bits of the OR (ACK, PSH, URG, ECE, CWR) on every packet; a
//   one-packet flow carries the whole OR;
// - TTL (hop limit) is the constant `ttl`; ToS, IP ID and fragment fields 0.
// The result is sorted by time (stable: flow order, then packet order).
// ResourceExhausted when the flows hold more than `max_packets` packets.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> PacketsFromFlows(absl::Span<const Flow> flows,
                                                                   uint8_t ttl = 64,
                                                                   uint64_t max_packets = uint64_t{1}
                                                                                          << 31);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_FLOW_RECORDS_H_

// Packet sampling, the oldest way to keep less: keep 1 packet in N (every Nth,
// or each packet independently with probability 1/N), as header-only pcap.
#ifndef DGC_COMMON_BASELINE_SAMPLING_H_
#define DGC_COMMON_BASELINE_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/packet.h"

namespace dgc::baseline {

// Indices (ascending) of the packets kept out of `n`: with `random` false the
// 0th, Nth, 2Nth... (ceil(n / N) of them); with `random` true each index
// independently with probability 1/N from a stream seeded by `seed`.
// `every` must be >= 1.
std::vector<size_t> SampleIndices(size_t n, uint32_t every, bool random, uint64_t seed);

// Scales a sample back up: each kept packet (time-sorted) is repeated
// `every` times, copy j at t + floor(j * gap / every) where gap is the time
// to the next kept packet; the last kept packet uses the mean gap between
// kept packets (0 when only one was kept). Copies are identical but for ts.
// ResourceExhausted when kept.size() * every > max_packets.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> ExpandSample(
    absl::Span<const PacketRecord> kept, uint32_t every,
    uint64_t max_packets = uint64_t{1} << 31);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_SAMPLING_H_

// Independent marginals: every field of the packet record summarised by its
// own histogram, with no joint structure at all (no flows, no time pattern
// beyond the gap distribution). The histograms are what this baseline keeps.
//
// Fields and how each is kept:
// - timestamps: the first timestamp, and the histogram of the gaps between
//   consecutive packets in log bins (kGapBinsPerDecade per decade of ns);
// - exact histograms of size (ip_len), IP version, proto, TTL, ToS;
// - exact histograms of source and of destination addresses, per family;
// - exact histograms of source and destination ports over the packets whose
//   protocol has ports (TCP, UDP, SCTP), and of TCP flags over TCP packets:
//   a field that does not exist in a packet is not counted;
// - the packet count.
// IP ID and fragment fields are not kept (regenerated packets are whole, ID 0).
//
// Serialized form (version 1), before zstd: "DGCM" u8 version, varint packets,
// zigzag varint first timestamp, then the histograms in the order of the
// struct below. An exact histogram is varint entries, the values as
// increasing varint deltas, then the counts as varints; an address histogram
// is varint entries, the addresses ascending (4 or 16 bytes), then the counts.
#ifndef DGC_COMMON_BASELINE_MARGINALS_H_
#define DGC_COMMON_BASELINE_MARGINALS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/packet.h"

namespace dgc::baseline {

// value -> count, ascending by value, counts >= 1.
using Histogram = std::vector<std::pair<uint64_t, uint64_t>>;
using AddressHistogram = std::vector<std::pair<IpAddress, uint64_t>>;

struct Marginals {
  uint64_t packets = 0;
  int64_t first_ts_ns = 0;
  Histogram gap_bins;  // GapBin() of each of the packets - 1 gaps
  Histogram sizes;
  Histogram versions;  // 4 and 6
  Histogram protos;
  Histogram ttls;
  Histogram tos;
  AddressHistogram src[2];  // [0] IPv4 (v4-mapped), [1] IPv6
  AddressHistogram dst[2];
  Histogram sports;     // packets whose protocol has ports
  Histogram dports;
  Histogram tcp_flags;  // TCP packets

  // Entries over all histograms: the "records" this baseline keeps.
  uint64_t entries() const;
};

constexpr int kGapBinsPerDecade = 20;
// Bin 0 holds a zero gap; a gap of g >= 1 ns goes to 1 + floor(20 log10 g).
int GapBin(int64_t gap_ns);
// The integer gaps [lo, hi] that fall in `bin`; lo > hi for a bin no integer
// reaches (there are such bins below 10 ns).
std::pair<int64_t, int64_t> GapBinRange(int bin);
constexpr int kMaxGapBin = 380;  // GapBin(INT64_MAX): 1 + floor(20 * 18.96)

// `packets` must be sorted by time (gaps of unsorted input are clamped to 0).
Marginals BuildMarginals(absl::Span<const PacketRecord> packets);

std::string EncodeMarginals(const Marginals& m);
// DataLoss naming the histogram when the bytes are truncated or inconsistent
// (totals that disagree with the packet count, values out of a field's range).
[[nodiscard]] StatusOr<Marginals> DecodeMarginals(absl::string_view bytes);

[[nodiscard]] StatusOr<std::string> PackMarginals(const Marginals& m, int zstd_level = 19);
[[nodiscard]] StatusOr<Marginals> UnpackMarginals(absl::string_view packed);

// Draws `m.packets` packets. Each field is drawn from its own histogram
// without replacement (the histogram is an urn, shuffled with its own seeded
// stream), independently of every other field, so each regenerated marginal
// equals the kept one exactly, except gaps, drawn log-uniformly within their
// bin. Ports are drawn for packets whose drawn protocol has ports, TCP flags
// for TCP packets, addresses from the drawn family's histograms. A drawn size
// too small for the drawn protocol's headers (IPv4 20 / IPv6 40, plus TCP 20,
// UDP 8, SCTP 12, ICMP 8) is raised to that minimum so every written packet
// is well formed; IPv4 sizes are capped at 65535. Same `seed`, same packets.
// ResourceExhausted when m.packets > max_packets.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> DrawFromMarginals(
    const Marginals& m, uint64_t seed, uint64_t max_packets = uint64_t{1} << 31);

// The smallest ip_len for which PcapWriter writes the full L4 header.
uint32_t MinPacketSize(uint8_t version, uint8_t proto);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_MARGINALS_H_

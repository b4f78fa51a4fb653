// Header-only pcap files in memory: the exact bytes PcapWriter would write
// for the same packets (so sizes measured here are the sizes on disk), and
// the way back through TraceReader.
#ifndef DGC_COMMON_BASELINE_PCAP_IMAGE_H_
#define DGC_COMMON_BASELINE_PCAP_IMAGE_H_

#include <string>
#include <vector>

#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/packet.h"
#include "common/trace/pcap_writer.h"

namespace dgc::baseline {

// Bytes of the classic pcap PcapWriter::Open(path, options) + Write(each) +
// Close() produces: 24-byte file header, then per packet a 16-byte record
// header and the rebuilt IP + L4 headers (caplen), wire length as orig_len.
// Unlike PcapWriter it does not refuse timestamps pcap cannot hold
// (!PcapCanRepresent): their seconds are cut to 32 bits, which keeps sizes
// right for the storage report; a caller that reads the image back checks.
std::string PcapImage(absl::Span<const PacketRecord> packets, PcapWriterOptions options = {});

// Size of PcapImage(packets, options) without building it.
uint64_t PcapImageSize(absl::Span<const PacketRecord> packets, PcapWriterOptions options = {});

// Parses a capture held in memory (any format TraceReader reads), in file
// order. `name` appears in error messages.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> ReadPcapImage(std::string bytes,
                                                                const std::string& name);

// Writes `packets` to `path` ("-" for stdout) with PcapWriter.
[[nodiscard]] Status WritePcapFile(const std::string& path, absl::Span<const PacketRecord> packets,
                                   PcapWriterOptions options = {});

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_PCAP_IMAGE_H_

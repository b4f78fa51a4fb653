// TraceReader: IP packet records from one capture (pcap or pcapng, as the
// magic number says; any byte order; micro- or nanosecond timestamps; gzip,
// zstd or xz compressed; a path or "-" for stdin), read through libpcap.
#ifndef DGC_COMMON_TRACE_PCAP_READER_H_
#define DGC_COMMON_TRACE_PCAP_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/input_stream.h"
#include "common/trace/packet.h"

typedef struct pcap pcap_t;

namespace dgc {

class PcapngBlockReader;

struct ReadStats {
  uint64_t frames = 0;            // records libpcap returned
  uint64_t ip_packets = 0;        // IPv4 + IPv6 packets returned by Next()
  uint64_t non_ip = 0;            // frames that carry no IP (ARP, LLDP, encrypted 802.11...)
  uint64_t malformed = 0;         // frames whose IP header is unusable
  uint64_t unsupported_link = 0;  // frames of a link type dgc does not decode
  uint64_t corrupt_records = 0;   // corrupt capture records skipped (resynchronised)
  uint64_t captured_bytes = 0;    // sum of caplen over frames
  uint64_t wire_bytes = 0;        // sum of the wire length over frames
  bool truncated = false;         // the input ended early or could not be read to its end
  // Human-readable problems, each naming the file and byte offset; at most
  // kMaxWarnings kept (the counters above count them all).
  std::vector<std::string> warnings;
  static constexpr size_t kMaxWarnings = 20;

  void Add(const ReadStats& o);
  uint64_t errors() const { return malformed + corrupt_records + (truncated ? 1 : 0); }
};

class TraceReader {
 public:
  // Opens a capture. InvalidArgument naming the file when it is neither pcap
  // nor pcapng (libpcap's reason included), NotFound when missing.
  [[nodiscard]] static StatusOr<std::unique_ptr<TraceReader>> Open(const std::string& path);
  [[nodiscard]] static StatusOr<std::unique_ptr<TraceReader>> FromSource(
      std::unique_ptr<InputSource> source);
  ~TraceReader();
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;

  // Reads the next IPv4/IPv6 packet into *out; false at the end of input.
  // Non-IP frames and malformed or corrupt records are counted and skipped:
  // a corrupt record in a classic pcap is skipped by finding the next valid
  // record header; where that is impossible (pcapng, compressed stream errors)
  // the rest of the file is given up, recorded in stats().warnings.
  bool Next(PacketRecord* out);

  // Bytes the last returned packet took in the capture (record header + caplen).
  uint32_t last_record_bytes() const { return last_record_bytes_; }
  const ReadStats& stats() const { return stats_; }
  int linktype() const { return linktype_; }
  bool nanosecond_file() const { return nano_file_; }
  const std::string& name() const { return source_->name(); }
  const InputSource& source() const { return *source_; }

 private:
  TraceReader() = default;
  [[nodiscard]] Status OpenPcap();
  bool Resync(uint64_t record_offset);
  // Counts one frame and parses it; true when it is an IP packet.
  bool TakeFrame(int linktype, int64_t ts_ns, const uint8_t* data, uint32_t caplen,
                 uint32_t wirelen, uint64_t offset, PacketRecord* out);
  // Switches to PcapngBlockReader from the start of the input, skipping the
  // frames libpcap already returned.
  bool FallBackToBlockReader();
  bool NextFromBlocks(PacketRecord* out);
  void Warn(std::string msg);

  std::unique_ptr<InputSource> source_;
  std::unique_ptr<PcapngBlockReader> blocks_;  // only for multi-link-type pcapng
  uint64_t blocks_skip_ = 0;
  pcap_t* pcap_ = nullptr;
  FILE* file_ = nullptr;
  int linktype_ = -1;
  bool classic_ = false;     // classic pcap (resync possible), not pcapng
  bool swapped_ = false;     // classic pcap written in the other byte order
  bool nano_file_ = false;
  uint32_t snaplen_ = 0;
  uint8_t file_header_[24] = {};
  int64_t last_ts_sec_ = -1;
  uint32_t last_record_bytes_ = 0;
  bool done_ = false;
  ReadStats stats_;
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PCAP_READER_H_

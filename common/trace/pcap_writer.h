// PcapWriter: packet records to a classic pcap that tcpdump, tshark and
// tcpreplay read. Header-only by default: each record becomes its IP header and
// L4 header (caplen), with the IP length on the wire as orig_len; IPv4 header,
// TCP, UDP and ICMP checksums are correct for a zero-filled payload.
// With full_packets every record becomes a whole Ethernet frame that a test
// network can be loaded with (FullFrameBuilder).
#ifndef DGC_COMMON_TRACE_PCAP_WRITER_H_
#define DGC_COMMON_TRACE_PCAP_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

#include "common/base/status.h"
#include "common/trace/flow.h"
#include "common/trace/packet.h"

typedef struct pcap pcap_t;
typedef struct pcap_dumper pcap_dumper_t;

namespace dgc {

enum class OutputLink { kRawIp, kEthernet };

struct PcapWriterOptions {
  OutputLink link = OutputLink::kRawIp;
  bool nanosecond = true;  // nanosecond timestamps keep ts_ns exact
  // Whole frames (FullFrameBuilder); forces link = kEthernet.
  bool full_packets = false;
};

// Whole frames for replay (dgcctl generate --full-packets): Ethernet, the IP
// packet as long as its IP length says with the payload zero-filled, TCP
// options instead of data on SYN and SYN-ACK (MSS, SACK permitted, timestamps,
// window scale: as many as the SYN's length leaves room for), and sequence and
// acknowledgment numbers that advance per connection with the bytes sent, so
// that a stream reassembler follows the flow. Every checksum is right (SCTP's
// CRC32c excepted: it is left 0). A packet whose IP length is shorter than its
// headers is lengthened to them, and one of another protocol to 4 bytes past
// the IP header (its IP length field says so). Frames are built in the order packets are
// given (time order): the TCP numbering depends on what came before.
class FullFrameBuilder {
 public:
  // The frame for `p`; valid until the next call. Its size is the wire length,
  // at most kMaxFullFrame (longer IPv6 jumbograms are cut there).
  absl::Span<const uint8_t> Build(const PacketRecord& p);

 private:
  struct Direction {
    uint32_t next_seq = 0;
  };
  Direction& StateOf(const FlowKey& k);
  std::vector<uint8_t> buf_;
  absl::flat_hash_map<FlowKey, Direction> tcp_;
};
constexpr size_t kMaxFullFrame = 262144;

class PcapWriter {
 public:
  // "-" writes to standard output.
  [[nodiscard]] static StatusOr<std::unique_ptr<PcapWriter>> Open(const std::string& path,
                                                                  PcapWriterOptions options = {});
  ~PcapWriter();

  // OutOfRange for a timestamp pcap cannot hold (see PcapCanRepresent).
  [[nodiscard]] Status Write(const PacketRecord& packet);
  // Flushes and closes; the file is complete only after an OK Close().
  [[nodiscard]] Status Close();

  uint64_t packets_written() const { return packets_; }

 private:
  PcapWriter() = default;
  std::string path_;
  PcapWriterOptions options_;
  pcap_t* dead_ = nullptr;
  pcap_dumper_t* dumper_ = nullptr;
  std::unique_ptr<FullFrameBuilder> full_;
  uint64_t packets_ = 0;
};

// pcap stores 32-bit seconds, and libpcap reads them back as signed: only
// 1970-01-01 .. 2038-01-19 survive a round trip.
inline bool PcapCanRepresent(int64_t ts_ns) {
  return ts_ns >= 0 && ts_ns / 1000000000 <= 0x7fffffffLL;
}

// The bytes PcapWriter writes for one record (link header included), and the
// frame's original length. Exposed for tests and the fuzz target.
size_t BuildFrame(const PacketRecord& p, OutputLink link, uint8_t* buf, size_t cap,
                  uint32_t* orig_len);
constexpr size_t kMaxFrameHeader = 14 + 40 + 8 + 8 + 20;

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PCAP_WRITER_H_

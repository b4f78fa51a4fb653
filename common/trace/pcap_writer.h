// PcapWriter: packet records to a classic pcap that tcpdump, tshark and
// tcpreplay read. Header-only: each record becomes its IP header and L4 header
// (caplen), with the IP length on the wire as orig_len; IPv4 header, TCP, UDP
// and ICMP checksums are correct for a zero-filled payload.
#ifndef DGC_COMMON_TRACE_PCAP_WRITER_H_
#define DGC_COMMON_TRACE_PCAP_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/base/status.h"
#include "common/trace/packet.h"

typedef struct pcap pcap_t;
typedef struct pcap_dumper pcap_dumper_t;

namespace dgc {

enum class OutputLink { kRawIp, kEthernet };

struct PcapWriterOptions {
  OutputLink link = OutputLink::kRawIp;
  bool nanosecond = true;  // nanosecond timestamps keep ts_ns exact
};

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

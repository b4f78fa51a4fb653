// PacketFilter: a BPF expression (tcpdump syntax, compiled by libpcap) applied
// to packet records, through the frame PcapWriter would write for them.
#ifndef DGC_COMMON_TRACE_PACKET_FILTER_H_
#define DGC_COMMON_TRACE_PACKET_FILTER_H_

#include <memory>
#include <string>

#include "common/base/status.h"
#include "common/trace/packet.h"
#include "common/trace/pcap_writer.h"

namespace dgc {

class PacketFilter {
 public:
  // InvalidArgument with libpcap's message when `expression` does not compile.
  [[nodiscard]] static StatusOr<std::unique_ptr<PacketFilter>> Compile(const std::string& expression,
                                                                       OutputLink link = OutputLink::kRawIp);
  ~PacketFilter();
  bool Matches(const PacketRecord& packet) const;

 private:
  PacketFilter() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PACKET_FILTER_H_

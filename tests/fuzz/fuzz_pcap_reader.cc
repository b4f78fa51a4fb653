// Fuzzes the capture reader end to end (compression sniffing, libpcap, the
// corrupt-record resync and the pcapng block reader) on in-memory files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/trace/pcap_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src = dgc::InputSource::FromBuffer(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!src.ok()) return 0;
  auto reader = dgc::TraceReader::FromSource(std::move(*src));
  if (!reader.ok()) return 0;
  dgc::PacketRecord p;
  for (int i = 0; i < 100000 && (*reader)->Next(&p); ++i) {
  }
  return 0;
}

#include "common/baseline/pcap_image.h"

#include <cstring>

#include "common/trace/input_stream.h"
#include "common/trace/pcap_reader.h"

namespace dgc::baseline {
namespace {

// The file's link type as libpcap writes it (LINKTYPE_*, not the DLT_* value).
constexpr uint32_t kLinktypeEthernet = 1;
constexpr uint32_t kLinktypeRaw = 101;
constexpr uint32_t kSnaplen = 262144;  // what PcapWriter opens its dead handle with

// libpcap writes headers in host byte order.
void PutHost32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
void PutHost16(std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); }

}  // namespace

std::string PcapImage(absl::Span<const PacketRecord> packets, PcapWriterOptions options) {
  std::string out;
  out.reserve(PcapImageSize(packets, options));
  PutHost32(&out, options.nanosecond ? 0xa1b23c4d : 0xa1b2c3d4);
  PutHost16(&out, 2);
  PutHost16(&out, 4);
  PutHost32(&out, 0);  // thiszone
  PutHost32(&out, 0);  // sigfigs
  PutHost32(&out, kSnaplen);
  PutHost32(&out, options.link == OutputLink::kEthernet ? kLinktypeEthernet : kLinktypeRaw);
  uint8_t buf[kMaxFrameHeader];
  const int64_t div = options.nanosecond ? 1 : 1000;
  const int64_t per_sec = options.nanosecond ? 1000000000 : 1000000;
  for (const PacketRecord& p : packets) {
    uint32_t orig_len;
    size_t caplen = BuildFrame(p, options.link, buf, sizeof buf, &orig_len);
    // The same arithmetic as PcapWriter::Write, truncation to 32 bits included.
    int64_t ts = p.ts_ns / div;
    int64_t sec = ts / per_sec;
    int64_t frac = ts % per_sec;
    if (frac < 0) {
      frac += per_sec;
      sec -= 1;
    }
    PutHost32(&out, static_cast<uint32_t>(sec));
    PutHost32(&out, static_cast<uint32_t>(frac));
    PutHost32(&out, static_cast<uint32_t>(caplen));
    PutHost32(&out, orig_len);
    out.append(reinterpret_cast<const char*>(buf), caplen);
  }
  return out;
}

uint64_t PcapImageSize(absl::Span<const PacketRecord> packets, PcapWriterOptions options) {
  uint64_t total = 24;
  uint8_t buf[kMaxFrameHeader];
  for (const PacketRecord& p : packets) {
    uint32_t orig_len;
    total += 16 + BuildFrame(p, options.link, buf, sizeof buf, &orig_len);
  }
  return total;
}

StatusOr<std::vector<PacketRecord>> ReadPcapImage(std::string bytes, const std::string& name) {
  DGC_ASSIGN_OR_RETURN(auto source, InputSource::FromBuffer(std::move(bytes), name));
  DGC_ASSIGN_OR_RETURN(auto reader, TraceReader::FromSource(std::move(source)));
  std::vector<PacketRecord> out;
  PacketRecord p;
  while (reader->Next(&p)) out.push_back(p);
  if (reader->stats().errors() > 0) {
    return absl::DataLossError(name + ": " +
                               (reader->stats().warnings.empty() ? std::string("unreadable records")
                                                                 : reader->stats().warnings[0]));
  }
  return out;
}

Status WritePcapFile(const std::string& path, absl::Span<const PacketRecord> packets,
                     PcapWriterOptions options) {
  DGC_ASSIGN_OR_RETURN(auto writer, PcapWriter::Open(path, options));
  for (const PacketRecord& p : packets) DGC_RETURN_IF_ERROR(writer->Write(p));
  return writer->Close();
}

}  // namespace dgc::baseline

// A minimal pcapng block reader, used only where libpcap refuses a valid file:
// pcapng sections whose interfaces have different link types (libpcap reads
// only files whose interfaces all share the first one's link type). Handles
// SHB (either byte order), IDB (if_tsresol, if_tsoffset), EPB, SPB and OPB;
// other blocks are skipped.
#ifndef DGC_COMMON_TRACE_PCAPNG_BLOCKS_H_
#define DGC_COMMON_TRACE_PCAPNG_BLOCKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/trace/input_stream.h"

namespace dgc {

struct PcapngRecord {
  int linktype = 0;
  int64_t ts_ns = 0;
  uint32_t caplen = 0;
  uint32_t wirelen = 0;
  const uint8_t* data = nullptr;  // valid until the next call
};

class PcapngBlockReader {
 public:
  explicit PcapngBlockReader(InputSource* source) : source_(source) {}

  // 1: a packet in *out; 0: end of input; -1: error (see error()).
  int Next(PcapngRecord* out);
  const std::string& error() const { return error_; }
  uint64_t block_offset() const { return block_offset_; }

 private:
  struct Interface {
    int linktype = 0;
    uint32_t snaplen = 0;
    uint64_t units_per_second = 1000000;
    int64_t offset_seconds = 0;
  };
  uint32_t U32(const uint8_t* p) const;
  uint16_t U16(const uint8_t* p) const;
  bool ParseIdb(const uint8_t* body, size_t len);
  int64_t ToNanos(const Interface& itf, uint64_t units) const;

  InputSource* source_;
  bool swapped_ = false;
  bool seen_shb_ = false;
  std::vector<Interface> interfaces_;
  std::vector<uint8_t> block_;
  uint64_t block_offset_ = 0;
  std::string error_;
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PCAPNG_BLOCKS_H_

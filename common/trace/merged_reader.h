// MergedReader: the captures of one link, read as one stream in time order.
// Each file is read in its own order; packets are interleaved across files by
// timestamp (files that are themselves out of order are handled downstream by
// the Chunker, which places late packets in their window).
#ifndef DGC_COMMON_TRACE_MERGED_READER_H_
#define DGC_COMMON_TRACE_MERGED_READER_H_

#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/pcap_reader.h"

namespace dgc {

class MergedReader {
 public:
  // Opens every path ("-" for stdin, at most once). Fails on the first file
  // that cannot be opened, naming it; nothing is read before all are open.
  [[nodiscard]] static StatusOr<std::unique_ptr<MergedReader>> Open(
      const std::vector<std::string>& paths);
  explicit MergedReader(std::vector<std::unique_ptr<TraceReader>> readers);

  // Next packet across all files, earliest first; false when all are done.
  bool Next(PacketRecord* out, uint32_t* record_bytes);

  // Sum of the readers' stats.
  ReadStats stats() const;
  // For progress: compressed bytes consumed and total (0 total if unknown).
  uint64_t raw_position() const;
  uint64_t raw_size() const;
  const std::vector<std::unique_ptr<TraceReader>>& readers() const { return readers_; }

 private:
  struct Head {
    PacketRecord packet;
    uint32_t record_bytes = 0;
    bool valid = false;
  };
  void Advance(size_t i);

  std::vector<std::unique_ptr<TraceReader>> readers_;
  std::vector<Head> heads_;
};

// Expands inputs: a directory becomes its regular files (sorted by name);
// files and "-" are kept as given. NotFound for a missing path.
[[nodiscard]] StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& inputs);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_MERGED_READER_H_

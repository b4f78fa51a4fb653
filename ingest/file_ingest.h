// File-mode ingest: captures of one link -> chunks in a spool directory.
#ifndef DGC_INGEST_FILE_INGEST_H_
#define DGC_INGEST_FILE_INGEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/chunk.h"
#include "common/trace/pcap_reader.h"
#include "nlohmann/json.hpp"

namespace dgc {

struct FileIngestOptions {
  std::vector<std::string> inputs;  // files, directories, or "-" for stdin
  std::string spool_dir;            // chunks go to <spool_dir>/<link>/
  ChunkerOptions chunker;
  int zstd_level = 3;
  bool progress = false;  // draw a progress bar on stderr
};

struct FileIngestSummary {
  std::vector<std::string> files;
  ReadStats read;
  uint64_t chunks = 0;          // distinct windows written
  uint64_t amended_chunks = 0;  // rewrites for packets that arrived after their window closed
  uint64_t late_packets = 0;
  uint64_t flows = 0;
  uint64_t ipv4 = 0;
  uint64_t ipv6 = 0;
  uint64_t input_bytes = 0;     // compressed size of the inputs, where known
  uint64_t spool_bytes = 0;     // bytes of chunk files written
  int64_t first_ts_ns = 0;
  int64_t last_ts_ns = 0;
  double seconds = 0;
  std::string link_dir;

  nlohmann::json ToJson() const;
  std::string ToTable() const;
};

// Reads every input (merged by time), cuts chunks and writes them. Fails
// before writing anything when an input cannot be opened; read problems
// inside a file (corrupt records, truncation) are counted and described in
// summary.read.warnings, and the rest of the input is still read.
[[nodiscard]] StatusOr<FileIngestSummary> RunFileIngest(const FileIngestOptions& options);

}  // namespace dgc

#endif  // DGC_INGEST_FILE_INGEST_H_

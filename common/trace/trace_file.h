// Reading a whole capture into memory as METRICS.md wants it: IP packets only,
// sorted by timestamp (stable), with the reader's counters. Used by eval,
// the baselines and the storage report.
#ifndef DGC_COMMON_TRACE_TRACE_FILE_H_
#define DGC_COMMON_TRACE_TRACE_FILE_H_

#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/input_stream.h"
#include "common/trace/packet.h"
#include "common/trace/pcap_reader.h"

namespace dgc {

struct LoadedTrace {
  std::string name;  // the path, or a label for in-memory traces
  std::string link;  // link type name ("ethernet", "linux-sll", ...); "" in memory
  std::vector<PacketRecord> packets;  // sorted by ts_ns, stable
  ReadStats stats;                    // non-IP frames, wire bytes, warnings
  bool nanosecond = false;            // the capture records nanoseconds
};

// Reads every IP packet of `path` ("-" for stdin). NotFound / InvalidArgument
// from TraceReader::Open when the file is missing or not a capture. Damage
// inside the file (corrupt records, early end) is not an error: it is in
// stats.warnings, for the caller to report.
[[nodiscard]] StatusOr<LoadedTrace> LoadTrace(const std::string& path);
[[nodiscard]] StatusOr<LoadedTrace> LoadTrace(std::unique_ptr<InputSource> source);

// Stable-sorts by timestamp unless already sorted (the common case: O(n) check).
void SortByTime(std::vector<PacketRecord>* packets);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_TRACE_FILE_H_

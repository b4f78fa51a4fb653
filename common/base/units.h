// Sizes and byte budgets as operators type them on the command line.
#ifndef DGC_COMMON_BASE_UNITS_H_
#define DGC_COMMON_BASE_UNITS_H_

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace dgc {

// "1048576", "500k", "20MB", "1.5G", "2GiB": decimal units, or binary with "i".
[[nodiscard]] StatusOr<uint64_t> ParseBytes(const std::string& text);

// A chunk's storage budget (dgcctl compress --budget, dgc-coordinator --budget):
// "0.1x" is that fraction of zstd -19 of the chunk's header-only pcap (what
// an operator would otherwise keep); a size ("50KB", "50000") is bytes per
// million packets; "none" is no budget (nothing kept exactly).
struct Budget {
  double fraction = 0;        // > 0: of zstd -19 of the header-only pcap
  double bytes_per_mpkt = 0;  // > 0: bytes per million packets
  std::string ToString() const;
};
[[nodiscard]] StatusOr<Budget> ParseBudget(const std::string& text);

}  // namespace dgc

#endif  // DGC_COMMON_BASE_UNITS_H_

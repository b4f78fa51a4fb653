// Time formatting and parsing for operators: RFC 3339 in UTC, epoch seconds,
// and relative forms such as "3h ago".
#ifndef DGC_COMMON_BASE_TIME_H_
#define DGC_COMMON_BASE_TIME_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "common/base/status.h"

namespace dgc {

constexpr int64_t kNanosPerSecond = 1'000'000'000;

// "2026-11-26T15:07:29.123456789Z" (fraction trimmed to what is non-zero,
// in groups of 3 digits).
std::string FormatRfc3339(int64_t unix_ns);

// Parses "2026-11-26T15:07:29Z" (offsets and fractions allowed), "1700000000"
// or "1700000000.5" (epoch seconds), and "<N><s|m|h|d|w> ago" relative to
// `now_ns`. InvalidArgument with the accepted forms on anything else.
[[nodiscard]] StatusOr<int64_t> ParseTime(absl::string_view text, int64_t now_ns);

// The start of the window of `step` ns, aligned to the epoch, that holds
// `t` (floor to a multiple of step > 0, negative times too): dgcctl stats'
// windows and the library's pack spans.
inline int64_t FloorTo(int64_t t, int64_t step) {
  int64_t q = t / step;
  if (t % step != 0 && t < 0) --q;
  return q * step;
}

// Parses a duration such as "90s", "10m", "1h", "7d", "2w" or plain seconds.
[[nodiscard]] StatusOr<int64_t> ParseDurationNs(absl::string_view text);

}  // namespace dgc

#endif  // DGC_COMMON_BASE_TIME_H_

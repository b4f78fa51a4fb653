#include "common/base/time.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace dgc {

std::string FormatRfc3339(int64_t unix_ns) {
  int64_t secs = unix_ns / kNanosPerSecond;
  int64_t frac = unix_ns % kNanosPerSecond;
  if (frac < 0) {
    frac += kNanosPerSecond;
    secs -= 1;
  }
  std::string base = absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(secs),
                                      absl::UTCTimeZone());
  if (frac == 0) return base + "Z";
  std::string digits = absl::StrFormat("%09d", frac);
  while (digits.size() > 3 && digits.substr(digits.size() - 3) == "000") digits.resize(digits.size() - 3);
  return absl::StrCat(base, ".", digits, "Z");
}

StatusOr<int64_t> ParseDurationNs(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty()) return absl::InvalidArgumentError("empty duration");
  int64_t unit = kNanosPerSecond;
  char last = t.back();
  absl::string_view num = t;
  if (!absl::ascii_isdigit(static_cast<unsigned char>(last))) {
    num = t.substr(0, t.size() - 1);
    switch (last) {
      case 's': unit = kNanosPerSecond; break;
      case 'm': unit = 60 * kNanosPerSecond; break;
      case 'h': unit = 3600 * kNanosPerSecond; break;
      case 'd': unit = 86400 * kNanosPerSecond; break;
      case 'w': unit = 7 * 86400 * kNanosPerSecond; break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "bad duration '", text, "': use a number with s, m, h, d or w (e.g. 90s, 10m, 7d)"));
    }
  }
  double v;
  if (!absl::SimpleAtod(num, &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad duration '", text, "': use a number with s, m, h, d or w (e.g. 90s, 10m, 7d)"));
  }
  return static_cast<int64_t>(v * static_cast<double>(unit));
}

StatusOr<int64_t> ParseTime(absl::string_view text, int64_t now_ns) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "now") return now_ns;
  absl::string_view rel = t;
  if (absl::ConsumeSuffix(&rel, "ago")) {
    rel = absl::StripAsciiWhitespace(rel);
    std::string compact(rel);
    compact.erase(std::remove(compact.begin(), compact.end(), ' '), compact.end());
    auto d = ParseDurationNs(compact);
    if (d.ok()) return now_ns - *d;
  }
  double secs;
  if (absl::SimpleAtod(t, &secs)) {
    return static_cast<int64_t>(secs * 1e9);
  }
  absl::Time parsed;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, std::string(t), &parsed, &err)) {
    return absl::ToUnixNanos(parsed);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "bad time '", text,
      "': use RFC 3339 (2026-11-26T15:00:00Z), epoch seconds (1764169200) or a relative "
      "form (3h ago, 2d ago)"));
}

}  // namespace dgc

#include "common/base/units.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dgc {

StatusOr<uint64_t> ParseBytes(const std::string& text) {
  std::string s = absl::AsciiStrToLower(text);
  if (!s.empty() && s.back() == 'b') s.pop_back();
  double mult = 1;
  bool binary = !s.empty() && s.back() == 'i';
  if (binary) s.pop_back();
  if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.back()))) {
    const std::string units = "kmgtp";
    size_t u = units.find(s.back());
    if (u == std::string::npos) {
      s.clear();
    } else {
      for (size_t i = 0; i <= u; ++i) mult *= binary ? 1024 : 1000;
      s.pop_back();
    }
  }
  double v = 0;
  if (s.empty() || !absl::SimpleAtod(s, &v) || !(v >= 0) || v * mult > 9e18) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a size: use bytes, or a number with kB, MB, GB, TB (or KiB, MiB...)"));
  }
  return static_cast<uint64_t>(v * mult);
}

StatusOr<Budget> ParseBudget(const std::string& text) {
  Budget b;
  std::string s = absl::AsciiStrToLower(text);
  if (s == "none" || s == "0") return b;
  if (!s.empty() && s.back() == 'x') {
    double f = 0;
    if (!absl::SimpleAtod(s.substr(0, s.size() - 1), &f) || !(f > 0) || f > 1000) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--budget '", text, "': a fraction of zstd -19 of the header-only pcap is a positive number and x (0.1x)"));
    }
    b.fraction = f;
    return b;
  }
  auto bytes = ParseBytes(text);
  if (!bytes.ok() || *bytes == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--budget '", text,
                                                   "': use a fraction of zstd -19 of the header-only pcap (0.1x), "
                                                   "bytes per million packets (50KB), or none"));
  }
  b.bytes_per_mpkt = static_cast<double>(*bytes);
  return b;
}

std::string Budget::ToString() const {
  if (fraction > 0) return absl::StrFormat("%gx", fraction);
  if (bytes_per_mpkt > 0) return absl::StrFormat("%g B per million packets", bytes_per_mpkt);
  return "none";
}

}  // namespace dgc

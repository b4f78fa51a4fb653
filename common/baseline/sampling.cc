#include "common/baseline/sampling.h"

#include "absl/strings/str_cat.h"
#include "common/baseline/rng.h"

namespace dgc::baseline {

std::vector<size_t> SampleIndices(size_t n, uint32_t every, bool random, uint64_t seed) {
  std::vector<size_t> kept;
  if (every == 0) every = 1;
  if (!random) {
    kept.reserve(n / every + 1);
    for (size_t i = 0; i < n; i += every) kept.push_back(i);
    return kept;
  }
  Rng rng(MixSeed(seed, 0));
  for (size_t i = 0; i < n; ++i) {
    if (rng.Below(every) == 0) kept.push_back(i);
  }
  return kept;
}

StatusOr<std::vector<PacketRecord>> ExpandSample(absl::Span<const PacketRecord> kept,
                                                 uint32_t every, uint64_t max_packets) {
  if (every == 0) return absl::InvalidArgumentError("sampling rate 1:0");
  if (static_cast<unsigned __int128>(kept.size()) * every > max_packets) {
    return absl::ResourceExhaustedError(absl::StrCat("scaling ", kept.size(), " packets by ", every,
                                                     " exceeds the limit of ", max_packets));
  }
  std::vector<PacketRecord> out;
  out.reserve(kept.size() * every);
  const size_t k = kept.size();
  const __int128 mean_gap =
      k >= 2 ? (static_cast<__int128>(kept[k - 1].ts_ns) - kept[0].ts_ns) / (k - 1) : 0;
  for (size_t i = 0; i < k; ++i) {
    __int128 gap = i + 1 < k ? static_cast<__int128>(kept[i + 1].ts_ns) - kept[i].ts_ns : mean_gap;
    if (gap < 0) gap = 0;  // unsorted input: stack the copies
    PacketRecord p = kept[i];
    for (uint32_t j = 0; j < every; ++j) {
      __int128 t = kept[i].ts_ns + gap * j / every;
      p.ts_ns = t > INT64_MAX ? INT64_MAX : static_cast<int64_t>(t);
      out.push_back(p);
    }
  }
  return out;
}

}  // namespace dgc::baseline

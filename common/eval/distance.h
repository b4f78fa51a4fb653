// The distance of METRICS.md and the histograms it is computed over.
//
// Everything here is deterministic and independent of hash seeds, so that two
// runs (and the tshark-based reference scorer) give the same numbers.
#ifndef DGC_COMMON_EVAL_DISTANCE_H_
#define DGC_COMMON_EVAL_DISTANCE_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace dgc::eval {

// log10x10 binning: bin 0 holds values < 1, a value x >= 1 goes to bin
// 1 + floor(10 * log10(x)). Times must be in microseconds, sizes in bytes.
int Log10x10Bin(double x);

// The value at the lower edge of a log10x10 bin (0 for bin 0); for axis labels.
double Log10x10Lower(int bin);

// A histogram over non-negative integer bin keys. Small keys (ports, sizes,
// log bins) are counted in a dense array, which keeps the per-packet cost to
// one increment; larger keys (IPv6 jumbograms, rank positions) go to a map.
class Histogram {
 public:
  static constexpr int64_t kDenseLimit = 1 << 17;

  void Add(int64_t key, uint64_t n = 1) {
    if (key >= 0 && key < kDenseLimit) {
      if (static_cast<size_t>(key) >= dense_.size()) dense_.resize(static_cast<size_t>(key) + 1);
      dense_[static_cast<size_t>(key)] += n;
    } else {
      sparse_[key] += n;
    }
    total_ += n;
  }
  uint64_t total() const { return total_; }
  bool empty() const { return total_ == 0; }
  uint64_t Count(int64_t key) const;

  // (key, count) for every non-empty bin, sorted by key.
  std::vector<std::pair<int64_t, uint64_t>> Sorted() const;

 private:
  friend double Jsd(const Histogram& real, const Histogram& synth);
  std::vector<uint64_t> dense_;
  absl::flat_hash_map<int64_t, uint64_t> sparse_;
  uint64_t total_ = 0;
};

// Jensen-Shannon distance, base 2 (scipy.spatial.distance.jensenshannon(p, q,
// base=2)), between the two histograms normalised, over the union of their
// bins. In [0, 1]. 1 when `synth` is empty; the caller decides what an empty
// `real` means (METRICS.md: n/a), here it also gives 1 unless both are empty (0).
double Jsd(const Histogram& real, const Histogram& synth);

// The rank distance: both count lists sorted in descending order, normalised,
// the shorter padded with zeros, then Jsd position by position.
// Takes the vectors by value because it sorts them.
double RankJsd(std::vector<uint64_t> real, std::vector<uint64_t> synth);

// Jensen-Shannon distance of two aligned count vectors (each normalised by its
// own sum). 1 when `q` sums to zero, 0 when both do.
double JsdOfCounts(absl::Span<const uint64_t> p, absl::Span<const uint64_t> q);

// The q-quantile (q in [0, 1]) with linear interpolation between closest
// ranks (numpy's default): sorted v at position q * (n - 1). 0 when empty.
// Takes the vector by value because it partially sorts it.
double Quantile(std::vector<double> v, double q);

}  // namespace dgc::eval

#endif  // DGC_COMMON_EVAL_DISTANCE_H_

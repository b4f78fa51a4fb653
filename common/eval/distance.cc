#include "common/eval/distance.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace dgc::eval {
namespace {

// Accumulates the base-2 JS divergence bin by bin; inputs are raw counts
// normalised by their totals, which must be known up front.
class JsAccumulator {
 public:
  JsAccumulator(uint64_t total_p, uint64_t total_q)
      : tp_(static_cast<double>(total_p)), tq_(static_cast<double>(total_q)) {}

  void Add(uint64_t a, uint64_t b) {
    if (a == 0 && b == 0) return;
    double p = a ? static_cast<double>(a) / tp_ : 0.0;
    double q = b ? static_cast<double>(b) / tq_ : 0.0;
    double m = 0.5 * (p + q);
    if (p > 0) sum_ += p * std::log2(p / m);
    if (q > 0) sum_ += q * std::log2(q / m);
  }

  double Distance() const {
    double js = 0.5 * sum_;
    // Rounding can push the divergence a hair outside [0, 1].
    js = std::min(1.0, std::max(0.0, js));
    return std::sqrt(js);
  }

 private:
  double tp_, tq_;
  double sum_ = 0;
};

}  // namespace

int Log10x10Bin(double x) {
  if (!(x >= 1.0)) return 0;  // also catches NaN
  return 1 + static_cast<int>(std::floor(10.0 * std::log10(x)));
}

double Log10x10Lower(int bin) {
  if (bin <= 0) return 0.0;
  return std::pow(10.0, (bin - 1) / 10.0);
}

uint64_t Histogram::Count(int64_t key) const {
  if (key >= 0 && key < kDenseLimit) {
    return static_cast<size_t>(key) < dense_.size() ? dense_[static_cast<size_t>(key)] : 0;
  }
  auto it = sparse_.find(key);
  return it == sparse_.end() ? 0 : it->second;
}

std::vector<std::pair<int64_t, uint64_t>> Histogram::Sorted() const {
  std::vector<std::pair<int64_t, uint64_t>> out;
  for (size_t i = 0; i < dense_.size(); ++i) {
    if (dense_[i]) out.emplace_back(static_cast<int64_t>(i), dense_[i]);
  }
  size_t dense_end = out.size();
  for (const auto& [k, v] : sparse_) out.emplace_back(k, v);
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(dense_end), out.end());
  std::inplace_merge(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(dense_end), out.end());
  return out;
}

double Jsd(const Histogram& real, const Histogram& synth) {
  if (synth.empty()) return real.empty() ? 0.0 : 1.0;
  if (real.empty()) return 1.0;
  JsAccumulator acc(real.total_, synth.total_);
  size_t n = std::max(real.dense_.size(), synth.dense_.size());
  for (size_t i = 0; i < n; ++i) {
    uint64_t a = i < real.dense_.size() ? real.dense_[i] : 0;
    uint64_t b = i < synth.dense_.size() ? synth.dense_[i] : 0;
    acc.Add(a, b);
  }
  for (const auto& [k, a] : real.sparse_) {
    auto it = synth.sparse_.find(k);
    acc.Add(a, it == synth.sparse_.end() ? 0 : it->second);
  }
  for (const auto& [k, b] : synth.sparse_) {
    if (!real.sparse_.contains(k)) acc.Add(0, b);
  }
  return acc.Distance();
}

double JsdOfCounts(absl::Span<const uint64_t> p, absl::Span<const uint64_t> q) {
  uint64_t tp = 0, tq = 0;
  for (uint64_t v : p) tp += v;
  for (uint64_t v : q) tq += v;
  if (tq == 0) return tp == 0 ? 0.0 : 1.0;
  if (tp == 0) return 1.0;
  JsAccumulator acc(tp, tq);
  size_t n = std::max(p.size(), q.size());
  for (size_t i = 0; i < n; ++i) acc.Add(i < p.size() ? p[i] : 0, i < q.size() ? q[i] : 0);
  return acc.Distance();
}

double RankJsd(std::vector<uint64_t> real, std::vector<uint64_t> synth) {
  std::sort(real.begin(), real.end(), std::greater<>());
  std::sort(synth.begin(), synth.end(), std::greater<>());
  return JsdOfCounts(real, synth);  // JsdOfCounts pads the shorter one with zeros
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  q = std::min(1.0, std::max(0.0, q));
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  double a = v[lo];
  if (hi == lo) return a;
  // The next order statistic is the minimum of the part after lo.
  double b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

}  // namespace dgc::eval

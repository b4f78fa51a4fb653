// A seeded random source whose draws are the same on every platform and
// standard library: std::mt19937_64 is specified bit for bit, but the
// std::*_distribution classes and std::shuffle are not, so the few
// distributions the baselines need are written here.
#ifndef DGC_COMMON_BASELINE_RNG_H_
#define DGC_COMMON_BASELINE_RNG_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "common/base/rng.h"

namespace dgc::baseline {

// Independent seeds from one user seed (SplitMix64 of seed + stream * the
// golden gamma): each field gets its own stream, and adding a field does
// not shift the others.
inline uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  return SplitMix64(seed + 0x9e3779b97f4a7c15ULL * stream);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t Next() { return engine_(); }

  // Uniform in [0, bound); bound must be > 0. Rejection keeps it unbiased.
  uint64_t Below(uint64_t bound) {
    uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % bound);
    uint64_t x;
    do {
      x = engine_();
    } while (x >= limit);
    return x % bound;
  }

  // Uniform in [0, 1) with 53 random bits.
  double Unit() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }

  // Fisher-Yates.
  template <typename T>
  void Shuffle(std::vector<T>* v) {
    for (size_t i = v->size(); i > 1; --i) {
      size_t j = static_cast<size_t>(Below(i));
      std::swap((*v)[i - 1], (*v)[j]);
    }
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_RNG_H_

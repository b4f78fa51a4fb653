// Deterministic randomness for everything a decoder must reproduce bit for
// bit: initial weights, adapter inits that a delta names only by seed, batch
// order, the sampler's per-token uniforms, and the seed streams of the
// baselines. libtorch's generators and the std::*_distribution classes are
// not promised stable across versions, devices or standard libraries; these
// are plain integer arithmetic and the same everywhere.
#ifndef DGC_COMMON_BASE_RNG_H_
#define DGC_COMMON_BASE_RNG_H_

#include <cmath>
#include <cstdint>

namespace dgc {

// The SplitMix64 step and finaliser (Steele, Lea and Flood 2014).
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A counter-based hash of (seed, a, b): the sampler's uniform for sequence a
// at position b does not depend on how the sequences are batched or on how
// many threads draw them.
inline uint64_t Mix3(uint64_t seed, uint64_t a, uint64_t b) {
  return SplitMix64(SplitMix64(SplitMix64(seed) ^ a) ^ (b * 0xd6e8feb86659fd93ULL));
}

// A sequential SplitMix64 stream with the few distributions the model needs.
class DetRng {
 public:
  explicit DetRng(uint64_t seed) : state_(SplitMix64(seed ^ 0x5851f42d4c957f2dULL)) {}

  uint64_t Next() {
    const uint64_t z = SplitMix64(state_);  // the step adds the gamma first
    state_ += 0x9e3779b97f4a7c15ULL;
    return z;
  }
  // Uniform in (0, 1), 53 random bits.
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  // Standard normal (Box-Muller, the spare kept for the next call).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = Uniform(), u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  // In [0, n), n > 0 (modulo: a bias of n / 2^64, negligible for batch order).
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace dgc

#endif  // DGC_COMMON_BASE_RNG_H_

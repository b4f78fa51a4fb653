// SampleRows: the sampler's draw from a row of logits, in plain C++.
#include "common/model/sample_kernel.h"

#include <cmath>

namespace dgc::model {

// One pass finds the row's maximum, one computes exp only for the tokens
// min_p keeps (a wide window, the exact sizes, keeps a few dozen of its
// ~1,500), one scans for the draw: instead of a softmax, a mask, a cumsum and
// a comparison each writing an [ns, win] tensor (2.3x faster generation on
// the bench trace).
void SampleRows(const float* logits, int64_t ns, int64_t win, const int64_t* lo, const int64_t* hi,
                const float* uni, bool greedy, double inv_temp, double min_p, std::vector<float>* scratch,
                int64_t* pick) {
  scratch->resize(static_cast<size_t>(win));
  float* e = scratch->data();
  const float it = static_cast<float>(inv_temp);
  // exp((x - mx) * it) >= min_p  <=>  x >= mx + log(min_p) / it.
  const float cut = min_p > 0 ? static_cast<float>(std::log(min_p) / inv_temp) : -INFINITY;
  for (int64_t i = 0; i < ns; ++i) {
    const float* x = logits + i * win;
    const int64_t a = lo[i], b = hi[i];
    int64_t best = a;
    float mx = x[a];
    for (int64_t j = a + 1; j < b; ++j) {
      if (x[j] > mx) {
        mx = x[j];
        best = j;
      }
    }
    if (greedy || !std::isfinite(mx)) {
      pick[i] = best;
      continue;
    }
    const float floor = mx + cut;
    float total = 0;
    for (int64_t j = a; j < b; ++j) {
      const float v = x[j] >= floor ? std::exp((x[j] - mx) * it) : 0.0f;
      e[j] = v;
      total += v;
    }
    const float target = uni[i] * total;
    float acc = 0;
    int64_t k = a;
    for (; k < b - 1; ++k) {
      acc += e[k];
      if (acc >= target) break;  // target > 0: a dropped token (e 0) never reaches it first
    }
    pick[i] = k;
  }
}

}  // namespace dgc::model

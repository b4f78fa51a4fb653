// The sampler's draw of one token per row of logits, on the CPU: plain C++
// (no libtorch), so it is tested without torch (tests/model/sample_kernel_test.cc).
#ifndef DGC_COMMON_MODEL_SAMPLE_KERNEL_H_
#define DGC_COMMON_MODEL_SAMPLE_KERNEL_H_

#include <cstdint>
#include <vector>

namespace dgc::model {

// Draws one token per row of `logits` [ns, win] (row-major), each in its own
// allowed [lo[i], hi[i]) of the window: the softmax of logits * inv_temp over
// that range, tokens whose probability is below min_p times the likeliest's
// dropped (min_p 0: none), then the first token whose cumulative probability
// reaches uni[i] (in (0, 1)) of the kept total. greedy: the first maximum of
// the range. pick[i] is an index into the row. `scratch` is reused between
// calls. Row by row: the same picks for any batching or thread count.
void SampleRows(const float* logits, int64_t ns, int64_t win, const int64_t* lo, const int64_t* hi,
                const float* uni, bool greedy, double inv_temp, double min_p, std::vector<float>* scratch,
                int64_t* pick);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_SAMPLE_KERNEL_H_

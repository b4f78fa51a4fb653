// The small model fuzz_model_format applies its deltas to, and that
// dgc-fuzz-seeds writes its checkpoint and delta seeds for: one definition,
// so the seeds always fit the fuzzed model.
#ifndef DGC_TESTS_FUZZ_MODEL_FORMAT_FUZZ_CONFIG_H_
#define DGC_TESTS_FUZZ_MODEL_FORMAT_FUZZ_CONFIG_H_

#include "common/model/flow_model.h"

namespace dgc::fuzz {

inline model::NetworkConfig ModelFormatFuzzConfig() {
  model::NetworkConfig c;
  c.vocab_size = 40;
  c.max_length = 12;
  c.width = 8;
  c.depth = 2;
  c.heads = 2;
  return c;
}

}  // namespace dgc::fuzz

#endif  // DGC_TESTS_FUZZ_MODEL_FORMAT_FUZZ_CONFIG_H_

// The model's two file formats, without libtorch (MODEL_FORMATS.md has the
// byte layouts): the checkpoint (.dgcm, the base weights of a model) and the
// delta (one chunk's fine-tune against a named parent). Both are untrusted
// input: every reader checks magic, version, framing and an XXH64 of the
// whole before it believes a length, and bounds what it allocates by what
// the config implies. tests/fuzz/fuzz_model_format.cc fuzzes both readers.
// Internal to common/model.
#ifndef DGC_COMMON_MODEL_MODEL_FORMAT_H_
#define DGC_COMMON_MODEL_MODEL_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/model/flow_model.h"
#include "common/model/weights.h"

namespace dgc::model {

// The weights `weights` (layout `l` of config `c`) as a checkpoint.
std::string EncodeCheckpoint(const NetworkConfig& c, const Layout& l, const std::vector<float>& weights);

struct Checkpoint {
  NetworkConfig config;
  Layout layout;
  std::vector<float> weights;  // layout.total floats, all finite
};
// DataLoss naming `name` for anything malformed; FailedPrecondition for
// another format version.
[[nodiscard]] StatusOr<Checkpoint> DecodeCheckpoint(absl::string_view bytes, const std::string& name);

enum class DeltaKind : uint32_t { kLora = 1, kFull = 2 };

// A delta of trained adapters (`adapters`: lora.total floats, A then B of
// each adapter at its offsets; A is left out when a_from_seed, the decoder
// regenerating it from `seed`).
[[nodiscard]] StatusOr<std::string> EncodeLoraDelta(const LoraLayout& lora, const std::vector<float>& adapters,
                                                    bool a_from_seed, uint64_t seed, uint64_t parent_hash,
                                                    int zstd_level);
// A delta of every weight (`diff`: trained minus parent, layout order).
[[nodiscard]] StatusOr<std::string> EncodeFullDelta(const Layout& l, const std::vector<float>& diff,
                                                    uint64_t parent_hash, int zstd_level);

struct DeltaHeader {
  DeltaKind kind = DeltaKind::kFull;
  uint64_t parent_hash = 0;  // HashWeights of the model it applies to
  uint32_t raw_size = 0;     // payload size once decompressed
  absl::string_view payload;  // zstd frame, a view into the delta
};
// Checks the framing and checksum of `delta` for a model of `parameters`
// weights (which bounds the payload it may claim).
[[nodiscard]] StatusOr<DeltaHeader> ParseDelta(absl::string_view delta, const std::string& name,
                                               int64_t parameters);
// Decompresses the payload and adds it to `base` (layout `l` of config `c`,
// the parent's weights). On error `base` is partly changed: pass a copy.
[[nodiscard]] Status ApplyDeltaPayload(const DeltaHeader& h, const std::string& name, const NetworkConfig& c,
                                       const Layout& l, std::vector<float>* base);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_MODEL_FORMAT_H_

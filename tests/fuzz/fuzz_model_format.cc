// Fuzzes the model's file readers without libtorch (common/model/
// model_format.h): the checkpoint decoder and the delta parser with its
// payload decoder, against a fixed small model. Any bytes give weights or an
// error, never a crash, a hang or an allocation beyond what the model
// implies. Each input is also tried with its trailing XXH64 made right, so
// the fuzzer gets past the checksum into the headers and payloads.
// A checkpoint that decodes must re-encode to the same bytes.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/model/model_format.h"
#include "common/model/weights.h"
#include "tests/fuzz/model_format_fuzz_config.h"

namespace {

namespace m = dgc::model;

const m::NetworkConfig& Config() {
  static const m::NetworkConfig c = dgc::fuzz::ModelFormatFuzzConfig();
  return c;
}

std::string WithChecksum(std::string b) {
  if (b.size() < 8) return b;
  const uint64_t h = XXH64(b.data(), b.size() - 8, 0);
  std::memcpy(b.data() + b.size() - 8, &h, 8);
  return b;
}

void Check(const std::string& bytes) {
  auto ck = m::DecodeCheckpoint(bytes, "fuzz");
  if (ck.ok() && m::EncodeCheckpoint(ck->config, ck->layout, ck->weights) != bytes) {
    // The JSON header may be spelled differently (key order, spaces) and
    // still decode: the re-encoded file must decode to the same weights.
    auto again = m::DecodeCheckpoint(m::EncodeCheckpoint(ck->config, ck->layout, ck->weights), "again");
    if (!again.ok() || again->weights != ck->weights) {
      std::fprintf(stderr, "re-encoded checkpoint differs\n");
      std::abort();
    }
  }
  static const m::Layout layout = m::MakeLayout(Config());
  static const std::vector<float> base = m::InitialWeights(Config(), layout, 1);
  auto h = m::ParseDelta(bytes, "fuzz", layout.total);
  if (!h.ok()) return;
  std::vector<float> w = base;
  (void)m::ApplyDeltaPayload(*h, "fuzz", Config(), layout, &w);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  const std::string fixed = WithChecksum(bytes);
  if (fixed != bytes) Check(fixed);
  return 0;
}

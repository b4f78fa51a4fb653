// Fuzzes the model library's record decoders (library/library_records.h):
// chunk records (full, stub and pack member), packs, models and jobs. Any
// bytes give a record or an error, never a crash, a hang or an absurd
// allocation; a pack that decodes gives members whose records decode or
// fail cleanly, and re-encodes to the same members.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "library/library_records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string key = dgc::library::ChunkKey("tap0", 1704067200LL * 1000000000);
  (void)dgc::library::DecodeChunk(key, bytes);
  (void)dgc::library::DecodeModel("m", bytes);
  (void)dgc::library::DecodeJob("j", bytes);
  auto pack = dgc::library::DecodePack(key, bytes);
  if (pack.ok()) {
    for (const auto& m : *pack) (void)dgc::library::DecodeChunk(key, m.record);
    auto again = dgc::library::DecodePack(key, dgc::library::EncodePack(*pack, 1704067200LL * 1000000000));
    if (!again.ok() || again->size() != pack->size()) {
      std::fprintf(stderr, "re-encoded pack differs\n");
      std::abort();
    }
    for (size_t i = 0; i < pack->size(); ++i) {
      if ((*again)[i].start_ns != (*pack)[i].start_ns || (*again)[i].record != (*pack)[i].record ||
          (*again)[i].fingerprint != (*pack)[i].fingerprint) {
        std::fprintf(stderr, "re-encoded pack member %zu differs\n", i);
        std::abort();
      }
    }
  }
  return 0;
}

// Fuzzes the chunk file decoder: any bytes give a chunk or an error, never a
// crash, a hang or an absurd allocation. Inputs that decode must re-encode to
// a chunk that decodes to the same packets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/trace/chunk_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto chunk = dgc::DecodeChunk(bytes, "fuzz");
  if (!chunk.ok()) return 0;
  auto again = dgc::DecodeChunk(dgc::EncodeChunk(*chunk, 1), "fuzz-again");
  if (!again.ok() || again->packets.size() != chunk->packets.size()) std::abort();
  return 0;
}

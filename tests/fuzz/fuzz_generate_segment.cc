// Fuzzes the regeneration segment readers (common/wire/generate_segment.h):
// the packets a worker sends back, which dgcctl generate --coordinator
// decodes, and the options JSON a worker reads from its JobAssign. Any bytes
// give a value or an error Status with a message, never a crash. Packets
// that decode must re-encode to bytes that decode to the same packets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/wire/generate_segment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte: how many chunks the caller expects (0..15).
  const size_t chunks = data[0] & 15;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto packets = dgc::wire::DecodeSegmentPackets(bytes, chunks);
  if (!packets.ok()) {
    if (packets.status().message().empty()) std::abort();
  } else {
    std::vector<dgc::wire::SegmentChunk> meta(packets->size(), dgc::wire::SegmentChunk{"f", 0, 1, 0});
    auto again = dgc::wire::DecodeSegmentPackets(dgc::wire::EncodeSegmentPackets(meta, *packets), chunks);
    if (!again.ok() || again->size() != packets->size()) std::abort();
    for (size_t i = 0; i < packets->size(); ++i) {
      if ((*again)[i].size() != (*packets)[i].size()) std::abort();
    }
  }
  auto options = dgc::wire::DecodeSegmentOptions(bytes);
  if (!options.ok()) {
    if (options.status().message().empty()) std::abort();
  } else {
    auto twice = dgc::wire::DecodeSegmentOptions(dgc::wire::EncodeSegmentOptions(*options));
    if (!twice.ok() || twice->chunks.size() != options->chunks.size()) std::abort();
  }
  return 0;
}

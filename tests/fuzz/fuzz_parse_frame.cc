// Fuzzes the frame parser: first byte picks the link type, the rest is the
// frame. The parser must never read outside the frame or crash.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/trace/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr int kLinks[] = {0, 1, 12, 14, 101, 105, 108, 113, 127, 228, 229, 276};
  if (size < 1) return 0;
  int link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  // Copy into an exact-size buffer so ASan catches any overread.
  std::vector<uint8_t> frame(data + 1, data + size);
  dgc::PacketRecord p;
  dgc::ParseFrame(link, frame.data(), frame.size(), frame.size() + (size % 7) * 100, &p);
  return 0;
}

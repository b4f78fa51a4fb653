// Fuzzes the frame parser: first byte picks the link type, the rest is the
// frame. The parser must never read outside the frame or crash. Whatever it
// parses is then written as a whole frame (generate --full-packets) and parsed
// again: the same addresses, ports, protocol and flags must come back.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/trace/parse.h"
#include "common/trace/pcap_writer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr int kLinks[] = {0, 1, 12, 14, 101, 105, 108, 113, 127, 228, 229, 276};
  if (size < 1) return 0;
  int link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
  // Copy into an exact-size buffer so ASan catches any overread.
  std::vector<uint8_t> frame(data + 1, data + size);
  dgc::PacketRecord p;
  if (dgc::ParseFrame(link, frame.data(), frame.size(), frame.size() + (size % 7) * 100, &p) !=
      dgc::ParseOutcome::kIp) {
    return 0;
  }
  if (p.ip_len > 70000) return 0;  // keep each run small; jumbograms are cut anyway
  static dgc::FullFrameBuilder builder;
  absl::Span<const uint8_t> f = builder.Build(p);
  std::vector<uint8_t> whole(f.begin(), f.end());
  dgc::PacketRecord q;
  if (dgc::ParseFrame(1, whole.data(), whole.size(), whole.size(), &q) != dgc::ParseOutcome::kIp) __builtin_trap();
  // An IPv6 record whose protocol is an extension header (a capture cut inside
  // it) reads back through the filler as that header: its protocol may differ.
  bool v6_extension = false;
  if (p.version == 6) {
    switch (p.proto) {
      case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140: case 253: case 254:
        v6_extension = true;
        break;
      default:
        break;
    }
  }
  if (!(q.src == p.src) || !(q.dst == p.dst) || q.version != p.version) __builtin_trap();
  if (v6_extension) return 0;
  if (q.proto != p.proto) __builtin_trap();
  if (!p.is_later_fragment() && (q.sport != p.sport || q.dport != p.dport || q.tcp_flags != p.tcp_flags)) {
    __builtin_trap();
  }
  return 0;
}

// Fuzzes the chunk file decoder: any bytes give a chunk or an error, never a
// crash, a hang or an absurd allocation. Inputs that decode must re-encode to
// a chunk that decodes to the same chunk: the same link, window and raw
// bytes, and the same packets, field by field, in the same order.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/trace/chunk_format.h"

namespace {

bool SamePacket(const dgc::PacketRecord& a, const dgc::PacketRecord& b) {
  return a.ts_ns == b.ts_ns && a.src == b.src && a.dst == b.dst && a.ip_len == b.ip_len && a.ip_id == b.ip_id &&
         a.sport == b.sport && a.dport == b.dport && a.frag == b.frag && a.version == b.version &&
         a.proto == b.proto && a.ttl == b.ttl && a.tcp_flags == b.tcp_flags && a.tos == b.tos && a.flags == b.flags;
}

[[noreturn]] void Differs(const char* what, size_t i) {
  std::fprintf(stderr, "re-encoded chunk differs: %s (packet %zu)\n", what, i);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto chunk = dgc::DecodeChunk(bytes, "fuzz");
  if (!chunk.ok()) return 0;
  auto again = dgc::DecodeChunk(dgc::EncodeChunk(*chunk, 1), "fuzz-again");
  if (!again.ok()) Differs("does not decode", 0);
  if (again->link != chunk->link) Differs("link", 0);
  if (again->start_ns != chunk->start_ns || again->duration_ns != chunk->duration_ns) Differs("window", 0);
  if (again->raw_bytes != chunk->raw_bytes) Differs("raw bytes", 0);
  if (again->packets.size() != chunk->packets.size()) Differs("packet count", 0);
  for (size_t i = 0; i < chunk->packets.size(); ++i) {
    if (!SamePacket(again->packets[i], chunk->packets[i])) Differs("packet fields", i);
  }
  return 0;
}

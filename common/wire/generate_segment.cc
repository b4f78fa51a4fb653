#include "common/wire/generate_segment.h"

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/trace/chunk_format.h"

namespace dgc::wire {
namespace {
constexpr char kMagic[] = "DGCGS\x01";
constexpr size_t kMagicSize = 6;
}  // namespace

std::string EncodeSegmentOptions(const SegmentOptions& o) {
  nlohmann::json chunks = nlohmann::json::array();
  for (const auto& c : o.chunks) {
    chunks.push_back({{"link", c.link}, {"start_ns", c.start_ns}, {"duration_ns", c.duration_ns}, {"seed", c.seed}});
  }
  nlohmann::json j = {{"chunks", chunks}, {"min_p", o.min_p}, {"exact_templates", o.exact_templates}};
  if (!o.tokenizer.is_null()) j["tokenizer"] = o.tokenizer;
  return j.dump();
}

StatusOr<SegmentOptions> DecodeSegmentOptions(absl::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  auto bad = [](absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("generate segment: ", what)); };
  if (j.is_discarded() || !j.is_object()) return bad("options are not a JSON object");
  auto it = j.find("chunks");
  if (it == j.end() || !it->is_array() || it->empty()) return bad("no chunks");
  SegmentOptions o;
  for (const auto& c : *it) {
    if (!c.is_object() || !c.contains("link") || !c["link"].is_string() || !c.contains("start_ns") ||
        !c["start_ns"].is_number_integer() || !c.contains("duration_ns") || !c["duration_ns"].is_number_integer() ||
        !c.contains("seed") || !c["seed"].is_number_unsigned()) {
      return bad("a chunk needs link, start_ns, duration_ns and seed");
    }
    SegmentChunk s;
    s.link = c["link"].get<std::string>();
    s.start_ns = c["start_ns"].get<int64_t>();
    s.duration_ns = c["duration_ns"].get<int64_t>();
    s.seed = c["seed"].get<uint64_t>();
    if (s.duration_ns <= 0) return bad("a chunk's duration_ns must be positive");
    o.chunks.push_back(std::move(s));
  }
  if (auto t = j.find("tokenizer"); t != j.end()) o.tokenizer = *t;
  if (auto m = j.find("min_p"); m != j.end()) {
    if (!m->is_number()) return bad("min_p is not a number");
    o.min_p = m->get<double>();
  }
  if (auto e = j.find("exact_templates"); e != j.end()) {
    if (!e->is_number_integer() || e->get<int64_t>() < 0 || e->get<int64_t>() > 1000000) {
      return bad("exact_templates is not an integer in [0, 1000000]");
    }
    o.exact_templates = e->get<int32_t>();
  }
  return o;
}

std::string EncodeSegmentPackets(const std::vector<SegmentChunk>& chunks,
                                 const std::vector<std::vector<PacketRecord>>& packets) {
  ByteWriter w;
  w.Bytes(kMagic, kMagicSize);
  w.Varint(packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    Chunk c;
    if (i < chunks.size()) {
      c.link = chunks[i].link;
      c.start_ns = chunks[i].start_ns;
      c.duration_ns = chunks[i].duration_ns;
    }
    c.packets = packets[i];
    const std::string bytes = EncodeChunk(c, /*zstd_level=*/1);
    w.Varint(bytes.size());
    w.Bytes(bytes.data(), bytes.size());
  }
  return w.Take();
}

StatusOr<std::vector<std::vector<PacketRecord>>> DecodeSegmentPackets(absl::string_view bytes, size_t chunks) {
  if (bytes.size() < kMagicSize || bytes.substr(0, kMagicSize) != absl::string_view(kMagic, kMagicSize)) {
    return absl::InvalidArgumentError("generated segment: bad magic");
  }
  ByteReader r(bytes.substr(kMagicSize));
  uint64_t n = 0;
  if (!r.Varint(&n) || n != chunks) {
    return absl::InvalidArgumentError(absl::StrCat("generated segment: holds another number of chunks than ", chunks));
  }
  std::vector<std::vector<PacketRecord>> out;
  out.reserve(chunks);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len = 0;
    if (!r.Varint(&len) || len > r.remaining()) return absl::InvalidArgumentError("generated segment: truncated");
    std::string c(len, '\0');
    if (!r.Bytes(c.data(), len)) return absl::InvalidArgumentError("generated segment: truncated");
    DGC_ASSIGN_OR_RETURN(Chunk chunk, DecodeChunk(c, absl::StrCat("generated segment, chunk ", i + 1)));
    out.push_back(std::move(chunk.packets));
  }
  if (r.remaining() != 0) return absl::InvalidArgumentError("generated segment: bytes after the last chunk");
  return out;
}

}  // namespace dgc::wire

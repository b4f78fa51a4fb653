#include "common/model/artifact.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"

namespace dgc::model {
namespace {

constexpr char kMagic[4] = {'D', 'G', 'C', 'A'};
constexpr size_t kHeader = 4 + 2 + 2 + 4 + 4 + 4 + 4 + 8;
constexpr uint32_t kMaxPart = 1u << 30;

}  // namespace

std::string ChunkArtifact::Encode() const {
  nlohmann::json meta = {{"link", link},         {"start_ns", start_ns}, {"duration_ns", duration_ns},
                         {"model_id", model_id}, {"parent_id", parent_id}, {"report", report}};
  std::string m = meta.dump();
  std::string z(ZSTD_compressBound(m.size()), '\0');
  size_t n = ZSTD_compress(z.data(), z.size(), m.data(), m.size(), 19);
  z.resize(ZSTD_isError(n) ? 0 : n);
  std::string out;
  out.append(kMagic, 4);
  PutFixed<uint16_t>(&out, kArtifactFormatVersion);
  PutFixed<uint16_t>(&out, 0);
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(m.size()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(z.size()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(skeleton.size()));
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(delta.size()));
  std::string body = z + skeleton + delta;
  PutFixed<uint64_t>(&out, XXH64(body.data(), body.size(), XXH64(out.data(), out.size(), 0)));
  return out + body;
}

StatusOr<ChunkArtifact> ChunkArtifact::Decode(const std::string& b, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(name, ": corrupt chunk artifact: ", what));
  };
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, 4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a dgc chunk artifact (bad magic)"));
  }
  uint16_t version = LoadFixed<uint16_t>(b.data() + 4);
  if (version != kArtifactFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(name, ": chunk artifact version ", version,
                                                 " is not supported (this build reads ",
                                                 kArtifactFormatVersion, ")"));
  }
  uint32_t meta_raw = LoadFixed<uint32_t>(b.data() + 8), meta_z = LoadFixed<uint32_t>(b.data() + 12),
           sk = LoadFixed<uint32_t>(b.data() + 16), dl = LoadFixed<uint32_t>(b.data() + 20);
  uint64_t sum = LoadFixed<uint64_t>(b.data() + 24);
  if (meta_raw > kMaxPart || meta_z > kMaxPart || sk > kMaxPart || dl > kMaxPart ||
      uint64_t(meta_z) + sk + dl != b.size() - kHeader) {
    return bad("part sizes do not match the file size (truncated?)");
  }
  if (XXH64(b.data() + kHeader, b.size() - kHeader, XXH64(b.data(), kHeader - 8, 0)) != sum) {
    return bad("checksum mismatch");
  }
  std::string m(meta_raw, '\0');
  size_t got = ZSTD_decompress(m.data(), m.size(), b.data() + kHeader, meta_z);
  if (ZSTD_isError(got) || got != meta_raw) return bad("metadata does not decompress");
  ChunkArtifact a;
  try {
    auto j = nlohmann::json::parse(m);
    a.link = j.at("link").get<std::string>();
    a.start_ns = j.at("start_ns").get<int64_t>();
    a.duration_ns = j.at("duration_ns").get<int64_t>();
    a.model_id = j.at("model_id").get<std::string>();
    a.parent_id = j.at("parent_id").get<std::string>();
    a.report = j.value("report", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    return bad(absl::StrCat("metadata: ", e.what()));
  }
  a.skeleton = b.substr(kHeader + meta_z, sk);
  a.delta = b.substr(kHeader + meta_z + sk, dl);
  return a;
}

}  // namespace dgc::model

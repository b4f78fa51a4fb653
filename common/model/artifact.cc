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

// The dictionary of format 2: a raw-content zstd dictionary holding the
// metadata's usual keys and values, so that a small chunk's metadata costs
// its numbers and little else. Frozen: changing it is a new format version.
constexpr char kMetaDictionaryV2[] =
    R"({"duration_ns":3600000000000,"link":"default","model_id":"default-","parent_id":"base-0000000000000000",)"
    R"("report":{"attempts":[{"budget":{"batch_size":64,"learning_rate":0.003,"lora_rank":4,"max_seconds":20.0,)"
    R"("max_steps":60},"delta_bytes":0,"fidelity":{"mean":0.,"metrics":{"dst_ip_rank":0.,"dst_port":0.,)"
    R"("flow_bytes":0.,"flow_duration":0.,"flow_iat":0.,"flow_size":0.,"flow_start":0.,"pkt_iat":0.,)"
    R"("pkt_rate":0.,"pkt_size":0.,"proto":0.,"src_fanout":0.,"src_ip_rank":0.,"src_port":0.,)"
    R"("tcp_flags":0.,"throughput":0.,"ttl":0.},"replay_rate":0.,"scored":17,"worst":0.,)"
    R"("worst_metric":"src_port"},"train":{"final_loss":0.,"first_loss":0.,"seconds":0.,"steps":60,)"
    R"("tokens":0}}],"bytes":0,"check_window":{"flows":4096,"packets":0,"seconds":0.,"start":"2021-)"
    R"("},"fidelity_mean":0.,"fidelity_met":false,"fidelity_worst":0.,"flows":0,"packets":0,)"
    R"("pooled_flows":0,"raw_bytes":0,"replay_rate":0.,"retried":true,"seconds":0.,"shared":true},)"
    R"("start_ns":1600000000000000000})";

std::string CompressMeta(const std::string& m) {
  std::string z(ZSTD_compressBound(m.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  size_t n = ZSTD_compress_usingDict(cctx, z.data(), z.size(), m.data(), m.size(), kMetaDictionaryV2,
                                     sizeof(kMetaDictionaryV2) - 1, 19);
  ZSTD_freeCCtx(cctx);
  z.resize(ZSTD_isError(n) ? 0 : n);
  return z;
}

// `version` 1: plain zstd; 2: with kMetaDictionaryV2. False when it does not
// decompress to exactly `raw_size` bytes.
bool DecompressMeta(uint16_t version, const char* z, size_t z_size, size_t raw_size, std::string* out) {
  out->assign(raw_size, '\0');
  size_t got;
  if (version == 1) {
    got = ZSTD_decompress(out->data(), out->size(), z, z_size);
  } else {
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    got = ZSTD_decompress_usingDict(dctx, out->data(), out->size(), z, z_size, kMetaDictionaryV2,
                                    sizeof(kMetaDictionaryV2) - 1);
    ZSTD_freeDCtx(dctx);
  }
  return !ZSTD_isError(got) && got == raw_size;
}

}  // namespace

std::string CompressReport(const std::string& json) { return CompressMeta(json); }

std::optional<std::string> DecompressReport(const std::string& compressed, size_t raw_size) {
  std::string out;
  if (raw_size > kMaxPart || !DecompressMeta(2, compressed.data(), compressed.size(), raw_size, &out)) {
    return std::nullopt;
  }
  return out;
}

std::string ChunkArtifact::Encode() const {
  nlohmann::json meta = {{"link", link},         {"start_ns", start_ns}, {"duration_ns", duration_ns},
                         {"model_id", model_id}, {"parent_id", parent_id}, {"report", report}};
  std::string m = meta.dump();
  std::string z = CompressMeta(m);
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
  if (version != kArtifactFormatVersion && version != 1) {
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
  std::string m;
  if (!DecompressMeta(version, b.data() + kHeader, meta_z, meta_raw, &m)) return bad("metadata does not decompress");
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

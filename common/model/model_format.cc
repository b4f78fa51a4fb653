// Checkpoint and delta formats: see model_format.h and MODEL_FORMATS.md.
#include "common/model/model_format.h"

#include <xxhash.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"

namespace dgc::model {
namespace {

constexpr char kModelMagic[8] = {'D', 'G', 'C', 'M', 'O', 'D', 'E', 'L'};
constexpr uint32_t kModelVersion = 1;
constexpr char kDeltaMagic[8] = {'D', 'G', 'C', 'D', 'E', 'L', 'T', 'A'};
constexpr uint32_t kDeltaVersion = 1;
// Bounds on what a file may claim, checked before allocating.
constexpr uint32_t kMaxJsonBytes = 1 << 20;
constexpr uint32_t kMaxDeltaRawBytes = 1u << 30;

bool LittleEndianHost() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

// A NaN or an infinity (training that diverged) has no int8 form: the
// delta is refused, naming the tensor, instead of storing garbage.
Status PutQuantized(ByteWriter* w, const float* x, int64_t n, absl::string_view what) {
  Quantized q = Quantize(x, n);
  if (!q.finite) {
    return absl::FailedPreconditionError(
        absl::StrCat("ExportDelta: ", what, " holds NaN or infinity (training diverged)"));
  }
  w->Fixed<float>(q.scale);
  if (q.scale != 0) w->Bytes(q.q.data(), q.q.size());
  return absl::OkStatus();
}

// n weights as stored by PutQuantized.
bool GetQuantized(ByteReader* r, int64_t n, std::vector<float>* out) {
  float scale;
  if (!r->Fixed(&scale) || !std::isfinite(scale)) return false;
  out->assign(static_cast<size_t>(n), 0.0f);
  if (scale == 0) return true;
  const char* q;
  if (!r->View(static_cast<size_t>(n), &q)) return false;
  Dequantize(scale, reinterpret_cast<const int8_t*>(q), n, out->data());
  return true;
}

StatusOr<std::string> Frame(DeltaKind kind, uint64_t parent_hash, const std::string& raw, int zstd_level) {
  std::string z(ZSTD_compressBound(raw.size()), '\0');
  const size_t zn = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), zstd_level);
  if (ZSTD_isError(zn)) return absl::InternalError(absl::StrCat("ExportDelta: zstd: ", ZSTD_getErrorName(zn)));
  z.resize(zn);
  ByteWriter w;
  w.Bytes(kDeltaMagic, sizeof(kDeltaMagic));
  w.Fixed<uint32_t>(kDeltaVersion);
  w.Fixed<uint32_t>(static_cast<uint32_t>(kind));
  w.Fixed<uint64_t>(parent_hash);
  w.Fixed<uint32_t>(static_cast<uint32_t>(raw.size()));
  w.Fixed<uint32_t>(static_cast<uint32_t>(z.size()));
  w.Bytes(z.data(), z.size());
  w.Fixed<uint64_t>(XXH64(w.buffer().data(), w.buffer().size(), 0));
  return w.Take();
}

}  // namespace

std::string EncodeCheckpoint(const NetworkConfig& c, const Layout& l, const std::vector<float>& weights) {
  ByteWriter w;
  w.Bytes(kModelMagic, sizeof(kModelMagic));
  w.Fixed<uint32_t>(kModelVersion);
  nlohmann::json j = c.ToJson();
  j["format"] = "dgcm";
  j["parameters"] = l.total;
  const std::string js = j.dump();
  w.Fixed<uint32_t>(static_cast<uint32_t>(js.size()));
  w.Bytes(js.data(), js.size());
  w.Fixed<uint32_t>(static_cast<uint32_t>(l.specs.size()));
  for (const ParamSpec& s : l.specs) {
    w.Fixed<uint16_t>(static_cast<uint16_t>(s.name.size()));
    w.Bytes(s.name.data(), s.name.size());
    w.Fixed<uint8_t>(static_cast<uint8_t>(s.shape.size()));
    for (int64_t d : s.shape) w.Fixed<uint32_t>(static_cast<uint32_t>(d));
    w.Bytes(weights.data() + s.offset, static_cast<size_t>(s.numel) * sizeof(float));
  }
  w.Fixed<uint64_t>(XXH64(w.buffer().data(), w.buffer().size(), 0));
  return w.Take();
}

StatusOr<Checkpoint> DecodeCheckpoint(absl::string_view bytes, const std::string& name) {
  auto err = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("model file ", name, ": ", what));
  };
  if (!LittleEndianHost()) return absl::UnimplementedError("dgcm files need a little-endian host");
  ByteReader r(bytes);
  const char* magic;
  if (!r.View(sizeof(kModelMagic), &magic)) {
    return err(absl::StrCat("truncated: ", bytes.size(), " bytes, too short for a dgc model"));
  }
  if (std::memcmp(magic, kModelMagic, sizeof(kModelMagic)) != 0) {
    return err("not a dgc model (bad magic; expected a .dgcm checkpoint)");
  }
  uint32_t version;
  if (!r.Fixed(&version)) return err("truncated after the magic");
  if (version != kModelVersion) {
    return absl::FailedPreconditionError(absl::StrCat("model file ", name, ": format version ", version,
                                                      ", this build reads version ", kModelVersion));
  }
  if (bytes.size() < sizeof(kModelMagic) + 4 + 8) return err("truncated");
  const size_t body = bytes.size() - 8;
  const uint64_t stored = LoadFixed<uint64_t>(bytes.data() + body);
  if (XXH64(bytes.data(), body, 0) != stored) {
    return err(absl::StrCat("checksum mismatch: the file is corrupt or truncated (", bytes.size(), " bytes)"));
  }
  ByteReader b(bytes.substr(0, body));
  b.View(sizeof(kModelMagic) + 4, &magic);
  uint32_t json_len;
  const char* js;
  if (!b.Fixed(&json_len) || json_len > kMaxJsonBytes || !b.View(json_len, &js)) return err("bad config header");
  nlohmann::json j = nlohmann::json::parse(js, js + json_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return err("config is not valid JSON");
  StatusOr<NetworkConfig> config = NetworkConfig::FromJson(j);
  if (!config.ok()) return err(std::string(config.status().message()));
  Checkpoint out;
  out.config = *config;
  out.layout = MakeLayout(out.config);
  const Layout& layout = out.layout;
  uint32_t count;
  if (!b.Fixed(&count)) return err("truncated tensor table");
  if (count != layout.specs.size()) {
    return err(absl::StrCat(count, " tensors, the config needs ", layout.specs.size()));
  }
  if (static_cast<uint64_t>(layout.total) * 4 > b.remaining()) {
    return err(absl::StrCat("truncated: the config needs ", layout.total * 4, " bytes of weights, ",
                            b.remaining(), " left"));
  }
  out.weights.resize(static_cast<size_t>(layout.total));
  for (const ParamSpec& s : layout.specs) {
    uint16_t nlen;
    const char* nm;
    uint8_t ndim;
    if (!b.Fixed(&nlen) || !b.View(nlen, &nm) || !b.Fixed(&ndim)) return err("truncated tensor header");
    if (absl::string_view(nm, nlen) != s.name) {
      return err(absl::StrCat("tensor '", absl::string_view(nm, nlen), "' where '", s.name, "' was expected"));
    }
    if (ndim != s.shape.size()) return err(absl::StrCat("tensor ", s.name, " has ", ndim, " dimensions"));
    for (int64_t d : s.shape) {
      uint32_t got;
      if (!b.Fixed(&got)) return err("truncated tensor header");
      if (got != d) return err(absl::StrCat("tensor ", s.name, " has the wrong shape for the config"));
    }
    if (!b.Bytes(out.weights.data() + s.offset, static_cast<size_t>(s.numel) * 4)) {
      return err(absl::StrCat("truncated tensor ", s.name));
    }
  }
  if (b.remaining() != 0) return err(absl::StrCat(b.remaining(), " unexpected bytes after the tensors"));
  for (float x : out.weights) {
    if (!std::isfinite(x)) return err("weights contain NaN or infinity");
  }
  return out;
}

StatusOr<std::string> EncodeLoraDelta(const LoraLayout& lora, const std::vector<float>& adapters,
                                      bool a_from_seed, uint64_t seed, uint64_t parent_hash, int zstd_level) {
  ByteWriter p;
  p.Fixed<uint32_t>(static_cast<uint32_t>(lora.rank));
  p.Fixed<double>(lora.scale);
  p.Fixed<uint8_t>(a_from_seed ? 1 : 0);
  p.Fixed<uint64_t>(seed);
  p.Fixed<uint32_t>(static_cast<uint32_t>(lora.adapters.size()));
  for (const AdapterSpec& a : lora.adapters) {
    p.Fixed<uint16_t>(static_cast<uint16_t>(a.block));
    p.Fixed<uint8_t>(static_cast<uint8_t>(a.target));
    const std::string what = absl::StrCat("the adapter of ", kTargetNames[a.target], " in block ", a.block);
    if (!a.vector && !a_from_seed) {
      DGC_RETURN_IF_ERROR(PutQuantized(&p, adapters.data() + a.a_offset, lora.rank * a.in, what));
    }
    DGC_RETURN_IF_ERROR(PutQuantized(&p, adapters.data() + a.b_offset, a.out * (a.vector ? 1 : lora.rank), what));
  }
  return Frame(DeltaKind::kLora, parent_hash, p.buffer(), zstd_level);
}

StatusOr<std::string> EncodeFullDelta(const Layout& l, const std::vector<float>& diff, uint64_t parent_hash,
                                      int zstd_level) {
  ByteWriter p;
  p.Fixed<uint32_t>(static_cast<uint32_t>(l.specs.size()));
  for (const ParamSpec& s : l.specs) {
    DGC_RETURN_IF_ERROR(PutQuantized(&p, diff.data() + s.offset, s.numel, absl::StrCat("tensor ", s.name)));
  }
  return Frame(DeltaKind::kFull, parent_hash, p.buffer(), zstd_level);
}

StatusOr<DeltaHeader> ParseDelta(absl::string_view delta, const std::string& name, int64_t parameters) {
  auto err = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("delta ", name, ": ", what));
  };
  ByteReader r(delta);
  const char* magic;
  if (!r.View(sizeof(kDeltaMagic), &magic)) return err(absl::StrCat("truncated: ", delta.size(), " bytes"));
  if (std::memcmp(magic, kDeltaMagic, sizeof(kDeltaMagic)) != 0) return err("not a dgc delta (bad magic)");
  uint32_t version, kind, raw_size, z_size;
  uint64_t parent;
  if (!r.Fixed(&version)) return err("truncated after the magic");
  if (version != kDeltaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("delta ", name, ": format version ", version,
                                                      ", this build reads version ", kDeltaVersion));
  }
  if (!r.Fixed(&kind) || !r.Fixed(&parent) || !r.Fixed(&raw_size) || !r.Fixed(&z_size)) {
    return err("truncated header");
  }
  if (r.remaining() != static_cast<size_t>(z_size) + 8) {
    return err(absl::StrCat("truncated or padded: ", delta.size(), " bytes, header says ",
                            r.position() + static_cast<size_t>(z_size) + 8));
  }
  const uint64_t stored = LoadFixed<uint64_t>(delta.data() + delta.size() - 8);
  if (XXH64(delta.data(), delta.size() - 8, 0) != stored) return err("checksum mismatch: the delta is corrupt");
  if (kind != static_cast<uint32_t>(DeltaKind::kLora) && kind != static_cast<uint32_t>(DeltaKind::kFull)) {
    return err(absl::StrCat("unknown delta kind ", kind));
  }
  // A delta holds at most about two int8 values per weight (A and B of
  // full-rank adapters) plus small headers.
  if (raw_size > kMaxDeltaRawBytes || raw_size > 4 * static_cast<uint64_t>(parameters) + 65536) {
    return err(absl::StrCat("implausible payload size ", raw_size, " for this model"));
  }
  DeltaHeader h;
  h.kind = static_cast<DeltaKind>(kind);
  h.parent_hash = parent;
  h.raw_size = raw_size;
  h.payload = delta.substr(r.position(), z_size);
  return h;
}

Status ApplyDeltaPayload(const DeltaHeader& h, const std::string& name, const NetworkConfig& c, const Layout& l,
                         std::vector<float>* base) {
  auto err = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("delta ", name, ": ", what));
  };
  std::string raw(h.raw_size, '\0');
  const size_t rn = ZSTD_decompress(raw.data(), raw.size(), h.payload.data(), h.payload.size());
  if (ZSTD_isError(rn) || rn != h.raw_size) return err("payload does not decompress");
  ByteReader p(raw);
  auto trunc = [&]() { return err("payload truncated"); };
  if (h.kind == DeltaKind::kFull) {
    uint32_t count;
    if (!p.Fixed(&count)) return trunc();
    if (count != l.specs.size()) return err("tensor count does not match the model");
    std::vector<float> d;
    for (const ParamSpec& s : l.specs) {
      if (!GetQuantized(&p, s.numel, &d)) return trunc();
      float* w = base->data() + s.offset;
      for (int64_t i = 0; i < s.numel; ++i) w[i] += d[i];
    }
  } else {
    uint32_t rank, count;
    double scale;
    uint8_t a_from_seed;
    uint64_t seed;
    if (!p.Fixed(&rank) || !p.Fixed(&scale) || !p.Fixed(&a_from_seed) || !p.Fixed(&seed) || !p.Fixed(&count)) {
      return trunc();
    }
    if (rank < 1 || rank > static_cast<uint32_t>(c.width) || !std::isfinite(scale)) {
      return err("bad adapter rank or scale");
    }
    // Geometry of every possible adapter, to look entries up by (block, target).
    const LoraLayout all =
        MakeLoraLayout(c, l, static_cast<int32_t>(rank), scale, (1u << kNumTargets) - 1);
    std::vector<float> a, bm;
    for (uint32_t i = 0; i < count; ++i) {
      uint16_t block;
      uint8_t target;
      if (!p.Fixed(&block) || !p.Fixed(&target)) return trunc();
      const AdapterSpec* as = nullptr;
      for (const AdapterSpec& cand : all.adapters) {
        if (cand.block == block && cand.target == target) as = &cand;
      }
      if (as == nullptr) return err("adapter for a matrix the model does not have");
      if (as->vector) {
        a.clear();
      } else if (a_from_seed) {
        a = AdapterAInit(seed, *as, static_cast<int32_t>(rank));
      } else if (!GetQuantized(&p, rank * as->in, &a)) {
        return trunc();
      }
      if (!GetQuantized(&p, as->out * (as->vector ? 1 : rank), &bm)) return trunc();
      MergeOneCpu(l, *as, a.data(), bm.data(), static_cast<int32_t>(rank), scale, base->data());
    }
  }
  if (p.remaining() != 0) return err("unexpected bytes after the payload");
  return absl::OkStatus();
}

}  // namespace dgc::model

// A deterministic delta chain for the library tests and the crash helper:
// chunk i of link "tap0" (10-minute chunks from 2024-01-01T00:00Z) is
//   i % 10 == 0: a new full model "base-i" (base for i == 0, retrain after)
//                committed with it, and a delta "tap0-i" against it;
//   i % 7 == 3:  a quiet chunk: no delta, it reuses the previous model;
//   otherwise:   a delta "tap0-i" against the previous chunk's model,
//                100 B .. 6 kB (some above the blob threshold).
#ifndef DGC_TESTS_LIBRARY_CHAIN_FIXTURE_H_
#define DGC_TESTS_LIBRARY_CHAIN_FIXTURE_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "library/rocksdb_model_library.h"

namespace dgc::testing {

constexpr int64_t kChainT0 = 1704067200LL * 1000000000;  // 2024-01-01T00:00:00Z
constexpr int64_t kChainChunkNs = 600LL * 1000000000;

inline std::string Bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

inline std::string ChainModelId(int i, const std::string& link = "tap0") {
  if (i % 7 == 3 && i % 10 != 0) return ChainModelId(i - 1, link);
  return absl::StrCat(link, "-", i);
}
inline std::string ChainBaseId(int i, const std::string& link = "tap0") {
  return link == "tap0" ? absl::StrCat("base-", i) : absl::StrCat("base-", link, "-", i);
}

inline library::Fingerprint ChainFingerprint(int i) {
  library::Fingerprint f;
  f.proto = {uint32_t(100 + i % 5), 50, 3, 0, 1};
  f.port[i % 16] = 10;
  f.size[i % 12] = 5;
  f.rate[1] = 600;
  f.flow[0] = 20;
  f.packets = 160;
  f.flows = 20;
  return f;
}

inline RocksDbModelLibrary::ChunkCommit ChainChunk(int i, const std::string& link = "tap0") {
  RocksDbModelLibrary::ChunkCommit c;
  model::ChunkArtifact& a = c.artifact;
  a.link = link;
  a.start_ns = kChainT0 + i * kChainChunkNs;
  a.duration_ns = kChainChunkNs;
  a.skeleton = Bytes(300, 1000 + i);
  a.report = {{"packets", 1000 + i}, {"bytes", 100000 + i}, {"flows", 50}, {"raw_bytes", 200000}};
  if (i % 10 == 0) {
    library::ModelRecord base;
    base.id = ChainBaseId(i, link);
    base.kind = i == 0 ? library::ModelKind::kBase : library::ModelKind::kRetrain;
    base.blob = Bytes(20000, i);
    base.fingerprint = ChainFingerprint(i).Encode();
    c.new_full_model = base;
    a.parent_id = base.id;
    a.model_id = ChainModelId(i, link);
    a.delta = Bytes(500, 7 * i);
  } else if (i % 7 == 3) {
    a.parent_id = a.model_id = ChainModelId(i - 1, link);
  } else {
    a.parent_id = ChainModelId(i - 1, link);
    a.model_id = ChainModelId(i, link);
    a.delta = Bytes(100 + (i * 737) % 6000, 7 * i);
  }
  c.fingerprint = ChainFingerprint(i);
  library::ParentDecision d;
  d.kind = i % 10 == 0 ? library::ParentDecision::Kind::kRetrain : library::ParentDecision::Kind::kContinue;
  d.parent_id = a.parent_id;
  d.drift = 0.01 * (i % 10);
  d.reason = i % 10 == 0 ? "chain depth would exceed max_depth" : "latest model";
  c.decision = d;
  return c;
}

}  // namespace dgc::testing

#endif  // DGC_TESTS_LIBRARY_CHAIN_FIXTURE_H_

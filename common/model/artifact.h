// ChunkArtifact: everything dgc keeps for one chunk: its skeleton, the model
// delta against its parent (or nothing, when the chunk shares its parent's
// model), and a small report. One file per chunk (.dgca); every byte of it
// counts in the chunk's stored bytes.
#ifndef DGC_COMMON_MODEL_ARTIFACT_H_
#define DGC_COMMON_MODEL_ARTIFACT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "common/base/status.h"
#include "nlohmann/json.hpp"

namespace dgc::model {

// 2: metadata compressed with a built-in zstd dictionary (a quiet chunk's
// metadata shrinks from ~200 to ~70 bytes); 1 (plain zstd) is still read.
constexpr uint16_t kArtifactFormatVersion = 2;
constexpr char kArtifactSuffix[] = ".dgca";

struct ChunkArtifact {
  std::string link;
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  std::string model_id;   // the model this chunk regenerates from: parent + delta
  std::string parent_id;  // the model `delta` applies to
  std::string skeleton;   // Skeleton::Encode()
  std::string delta;      // FlowModel::ExportDelta(); empty: model_id == parent_id
  nlohmann::json report;  // counts, training, fidelity (see pipeline.h)

  int64_t seq() const { return duration_ns > 0 ? start_ns / duration_ns : 0; }
  // Magic, version, zstd-compressed JSON metadata (MODEL_FORMATS.md), skeleton, delta, XXH64.
  std::string Encode() const;
  // DataLoss / InvalidArgument / Unimplemented naming `name` on bad input.
  [[nodiscard]] static StatusOr<ChunkArtifact> Decode(const std::string& bytes, const std::string& name);
};

// A chunk's report (JSON text) compressed the way format 2 compresses the
// artifact's metadata (zstd -19 with the built-in dictionary): what the
// RocksDB library stores for it. Decompress returns nullopt unless the bytes
// decompress to exactly `raw_size` bytes.
std::string CompressReport(const std::string& json);
std::optional<std::string> DecompressReport(const std::string& compressed, size_t raw_size);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_ARTIFACT_H_

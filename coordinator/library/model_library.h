// ModelLibrary: where dgc keeps base models and chunk artifacts (skeleton +
// delta + report), queried by link and time. DirModelLibrary is the plain
// directory layout of step 3; the RocksDB library (step 4) implements the
// same interface.
#ifndef DGC_COORDINATOR_LIBRARY_MODEL_LIBRARY_H_
#define DGC_COORDINATOR_LIBRARY_MODEL_LIBRARY_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/artifact.h"

namespace dgc {

struct ChunkQuery {
  std::string link;  // empty: every link
  int64_t since_ns = std::numeric_limits<int64_t>::min();  // chunks ending after this
  int64_t until_ns = std::numeric_limits<int64_t>::max();  // chunks starting before this
};

class ModelLibrary {
 public:
  virtual ~ModelLibrary() = default;
  // Stores a full model (checkpoint bytes) under `id`; an existing id is kept.
  [[nodiscard]] virtual Status PutModel(const std::string& id, const std::string& bytes) = 0;
  [[nodiscard]] virtual StatusOr<std::string> GetModel(const std::string& id) = 0;
  [[nodiscard]] virtual bool HasModel(const std::string& id) = 0;
  // Stores a chunk; the same link and window again replaces it (idempotent).
  [[nodiscard]] virtual Status PutChunk(const model::ChunkArtifact& chunk) = 0;
  // Chunks overlapping the query, ordered by link then start.
  [[nodiscard]] virtual StatusOr<std::vector<model::ChunkArtifact>> Chunks(const ChunkQuery& query) = 0;
  // Bytes kept: chunk artifacts and base models, apart.
  struct Usage {
    uint64_t chunk_bytes = 0;
    uint64_t chunks = 0;
    uint64_t model_bytes = 0;
    uint64_t models = 0;
  };
  [[nodiscard]] virtual StatusOr<Usage> GetUsage() = 0;
};

// DIR/models/<id>.dgcm, DIR/chunks/<link>/chunk-<seq>-<time>.dgca.
class DirModelLibrary final : public ModelLibrary {
 public:
  // Creates the layout when missing. InvalidArgument when `dir` exists and
  // holds something else than a library.
  [[nodiscard]] static StatusOr<std::unique_ptr<DirModelLibrary>> Open(const std::string& dir);

  Status PutModel(const std::string& id, const std::string& bytes) override;
  StatusOr<std::string> GetModel(const std::string& id) override;
  bool HasModel(const std::string& id) override;
  Status PutChunk(const model::ChunkArtifact& chunk) override;
  StatusOr<std::vector<model::ChunkArtifact>> Chunks(const ChunkQuery& query) override;
  StatusOr<Usage> GetUsage() override;

  const std::string& dir() const { return dir_; }

 private:
  explicit DirModelLibrary(std::string dir) : dir_(std::move(dir)) {}
  std::string ModelPath(const std::string& id) const;
  std::string dir_;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_LIBRARY_MODEL_LIBRARY_H_

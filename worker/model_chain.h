// ModelChain: rebuilds the model of any chunk from the library: its base,
// then every delta on the way down to it, applied in place. Keeps the last
// model built, so walking chunks in time order costs one delta per chunk.
// Not thread safe.
#ifndef DGC_WORKER_MODEL_CHAIN_H_
#define DGC_WORKER_MODEL_CHAIN_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/artifact.h"
#include "common/model/flow_model.h"
#include "coordinator/library/model_library.h"

namespace dgc {

class ModelChain {
 public:
  // `artifacts`: every chunk whose delta may be on a path (usually all chunks
  // of the links involved).
  ModelChain(ModelLibrary* library, const std::vector<model::ChunkArtifact>& artifacts);

  // The model with library id `id`. NotFound when neither a base nor a chunk
  // model of that id exists; DataLoss when a delta does not match its parent.
  [[nodiscard]] StatusOr<model::FlowModel*> Get(const std::string& id);
  int deltas_applied() const { return deltas_applied_; }

 private:
  ModelLibrary* library_;
  std::map<std::string, const model::ChunkArtifact*> by_model_;  // chunk model id -> its artifact
  std::string current_id_;
  std::unique_ptr<model::FlowModel> current_;
  int deltas_applied_ = 0;
};

}  // namespace dgc

#endif  // DGC_WORKER_MODEL_CHAIN_H_

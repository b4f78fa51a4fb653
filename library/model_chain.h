// ModelChain: rebuilds any model of the library from its lineage: the full
// model at the root of its chain (base or retrain), then every delta on the
// way down, applied in place. The chain comes from RocksDbModelLibrary::
// Ancestors() and each delta from the model's own record (GetModelRecord), so
// a model stays buildable after Expire dropped the chunk that introduced it.
// Keeps the last model built: walking chunks in time order costs one delta per
// new model. Not thread safe.
#ifndef DGC_LIBRARY_MODEL_CHAIN_H_
#define DGC_LIBRARY_MODEL_CHAIN_H_

#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/flow_model.h"
#include "library/rocksdb_model_library.h"

namespace dgc {

class ModelChain {
 public:
  // `library` must outlive the chain.
  explicit ModelChain(RocksDbModelLibrary* library) : library_(library) {}

  // The model with library id `id`, owned by the chain and valid until the
  // next Get. NotFound when the library has no such model; DataLoss when its
  // lineage is broken or a delta does not match its parent (naming the model).
  [[nodiscard]] StatusOr<model::FlowModel*> Get(const std::string& id);
  // Deltas applied so far, and the depth of the last model built.
  int deltas_applied() const { return deltas_applied_; }
  uint32_t last_depth() const { return last_depth_; }
  // Forgets the model held (e.g. after the caller modified it in place).
  void Reset() {
    current_.reset();
    current_id_.clear();
  }

 private:
  RocksDbModelLibrary* library_;
  std::string current_id_;
  std::vector<std::string> current_path_;  // current_id_ first, up to its full model
  std::unique_ptr<model::FlowModel> current_;
  int deltas_applied_ = 0;
  uint32_t last_depth_ = 0;
};

}  // namespace dgc

#endif  // DGC_LIBRARY_MODEL_CHAIN_H_

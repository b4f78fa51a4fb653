#include "worker/model_chain.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dgc {

ModelChain::ModelChain(ModelLibrary* library, const std::vector<model::ChunkArtifact>& artifacts)
    : library_(library) {
  for (const auto& a : artifacts) {
    if (!a.delta.empty()) by_model_[a.model_id] = &a;
  }
}

StatusOr<model::FlowModel*> ModelChain::Get(const std::string& id) {
  if (current_ && id == current_id_) return current_.get();
  // Walk up to a base, or to the model we already hold.
  std::vector<const model::ChunkArtifact*> path;
  std::string at = id;
  for (size_t guard = 0; guard <= by_model_.size() + 1; ++guard) {
    if (current_ && at == current_id_) break;
    auto it = by_model_.find(at);
    if (it == by_model_.end()) break;
    path.push_back(it->second);
    at = it->second->parent_id;
  }
  if (!(current_ && at == current_id_)) {
    if (!library_->HasModel(at)) {
      return absl::NotFoundError(absl::StrCat("model ", at, " (an ancestor of ", id, ") is not in the library"));
    }
    DGC_ASSIGN_OR_RETURN(std::string bytes, library_->GetModel(at));
    DGC_ASSIGN_OR_RETURN(current_, model::FlowModel::FromBytes(bytes, at));
    current_id_ = at;
  }
  std::reverse(path.begin(), path.end());
  for (const auto* a : path) {
    DGC_RETURN_IF_ERROR(current_->ApplyDelta(a->delta, absl::StrCat("delta of chunk ", a->model_id)));
    current_id_ = a->model_id;
    ++deltas_applied_;
  }
  return current_.get();
}

}  // namespace dgc

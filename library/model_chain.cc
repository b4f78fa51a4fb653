#include "library/model_chain.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dgc {

StatusOr<model::FlowModel*> ModelChain::Get(const std::string& id) {
  if (current_ && id == current_id_) return current_.get();
  DGC_ASSIGN_OR_RETURN(std::vector<library::ModelRecord> chain, library_->Ancestors(id));
  // chain: id, its parent, ..., the full model. Start from the model held
  // when it is on the chain (the common case: the next chunk's model is a
  // child of the last one), else from the root.
  size_t start = chain.size() - 1;
  bool from_current = false;
  if (current_) {
    for (size_t i = 0; i < chain.size(); ++i) {
      if (chain[i].id == current_id_) {
        start = i;
        from_current = true;
        break;
      }
    }
  }
  if (!from_current) {
    const std::string& root = chain.back().id;
    current_.reset();
    current_id_.clear();
    DGC_ASSIGN_OR_RETURN(std::string bytes, library_->GetModel(root));
    DGC_ASSIGN_OR_RETURN(current_, model::FlowModel::FromBytes(bytes, "model " + root));
    current_id_ = root;
  }
  for (size_t i = start; i-- > 0;) {
    DGC_ASSIGN_OR_RETURN(library::ModelRecord m, library_->GetModelRecord(chain[i].id));
    Status st = current_->ApplyDelta(m.blob, absl::StrCat("delta of model ", m.id));
    if (!st.ok()) {
      current_.reset();
      current_id_.clear();
      return st;
    }
    current_id_ = m.id;
    ++deltas_applied_;
  }
  last_depth_ = chain.front().depth;
  return current_.get();
}

}  // namespace dgc

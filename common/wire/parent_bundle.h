// ParentBundle: a parent model as it travels in JobAssign.parent_bytes. The
// coordinator does not link libtorch, so it cannot send a rebuilt model;
// it sends the chain instead: the full model (base or retrain checkpoint) and
// every delta from it down to the parent, in order. The worker rebuilds the
// parent with FlowModel::FromBytes and ApplyDelta (and may skip all of it when
// it already holds the parent, by id).
//
// Format: "DGCPB" 0x01, varint count, then per link: varint id length, id,
// varint blob length, blob. The first link is the full model.
#ifndef DGC_COMMON_WIRE_PARENT_BUNDLE_H_
#define DGC_COMMON_WIRE_PARENT_BUNDLE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"

namespace dgc::wire {

struct ParentLink {
  std::string model_id;
  std::string blob;  // first link: a full checkpoint; the others: deltas
};

struct ParentBundle {
  std::vector<ParentLink> chain;  // full model first, the parent last
  const std::string& parent_id() const { return chain.back().model_id; }
};

std::string EncodeParentBundle(const ParentBundle& bundle);
// InvalidArgument on anything EncodeParentBundle did not write (never throws).
[[nodiscard]] StatusOr<ParentBundle> DecodeParentBundle(absl::string_view bytes);

}  // namespace dgc::wire

#endif  // DGC_COMMON_WIRE_PARENT_BUNDLE_H_

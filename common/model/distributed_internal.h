// The tensor side of DataParallelGroup, for flow_model_train.cc only (includes
// torch; most of dgc must not).
#ifndef DGC_COMMON_MODEL_DISTRIBUTED_INTERNAL_H_
#define DGC_COMMON_MODEL_DISTRIBUTED_INTERNAL_H_

#include <ATen/Tensor.h>

#include "common/base/status.h"
#include "common/model/distributed.h"

namespace dgc::model::internal {

// Sums `t` (contiguous) over the ranks, in place; every rank gets the sum.
[[nodiscard]] Status AllReduceSumInPlace(DataParallelGroup& group, at::Tensor& t);
// Copies rank `root`'s `t` (contiguous) into every rank's `t`.
[[nodiscard]] Status BroadcastInPlace(DataParallelGroup& group, at::Tensor& t, int root);

}  // namespace dgc::model::internal

#endif  // DGC_COMMON_MODEL_DISTRIBUTED_INTERNAL_H_

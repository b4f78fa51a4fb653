// CompressionPolicy: what becomes of one chunk before anything is trained,
// the same for the embedded `dgcctl compress` (coordinator/dgcctl/
// cmd_compress.cc) and the cluster (coordinator/server.cc, at a compress
// job's first assignment). Both call Plan() with the chunk's fingerprint and
// the library as it stands once the link's earlier chunks are committed, so
// both reach the same decision for every chunk:
//
//   - no model for the link: the --base model (kBase), or, without one, a
//     base trained on the link's first chunks (kRetrain, trigger kNoModel);
//   - else the ParentSelector's choice by drift among the link's recent
//     models, its base and earlier full models (continue, switch, base), or
//     a retrain when every candidate is past retrain_threshold or the chain
//     is too deep;
//   - a retrain by drift is trained on this chunk and the recent chunks that
//     look like it (drift at most drift_threshold), up to warmup_flows flows;
//     when those hold fewer than min_flows flows it is deferred: the link
//     continues its latest model and the drift stays on record (a base
//     trained on one quiet hour's DNS storm regenerates every later chunk
//     worse than the model it replaces: schlage-lock-01, mean 0.145 ->
//     0.216). A retrain by depth always goes ahead, on all recent chunks.
//
// The decision is an enum with the figures behind it (ParentDecision: kind,
// trigger, drift, parent); `reason` is prose for people only. Thread safety:
// as the library's reads; the policy itself holds no state.
#ifndef DGC_LIBRARY_COMPRESSION_POLICY_H_
#define DGC_LIBRARY_COMPRESSION_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "library/fingerprint.h"
#include "library/rocksdb_model_library.h"

namespace dgc::library {

struct PolicyOptions {
  ParentSelector::Options selector;
  // A retrain by drift on fewer flows (this chunk's and the recent chunks'
  // like it) is deferred. The embedded path's --min-flows, the cluster's job
  // option min_flows.
  uint64_t min_flows = 4096;
  // A retrain trains on at most this many flows (--warmup-flows).
  uint64_t warmup_flows = 20000;
  // The recent chunks a retrain may train with: the link's newest this many,
  // fewer once they hold recent_packets packets (at least one).
  size_t recent_chunks = 6;
  uint64_t recent_packets = 2'000'000;
  // A fine-tune of a parent whose last `futile_after` fine-tunes on this link
  // all gained less than min_delta_gain (their deltas dropped) is skipped:
  // it would cost a chunk's training and two check regenerations to be
  // dropped again. Every `futile_retry_after` skipped chunks one is tried
  // again, so a link whose traffic moves gets its fine-tunes back. 0: never
  // skip (--futile-after, the cluster's job option futile_after).
  uint32_t futile_after = 2;
  uint32_t futile_retry_after = 6;
};

// futile_after as both paths set it: deltas are dropped for their gain only
// when the check runs and min_delta_gain > 0; otherwise there is no evidence
// and nothing is skipped (0).
inline uint32_t FutileAfter(uint32_t futile_after, bool check, double min_delta_gain) {
  return check && min_delta_gain > 0 ? futile_after : 0;
}

// A recent chunk of the link, as the library holds it.
struct RecentChunk {
  int64_t start_ns = 0;
  uint64_t packets = 0;
  Fingerprint fingerprint;
};

struct ChunkPlan {
  ParentDecision decision;  // for kRetrain, parent_id is empty: the new model
  // kRetrain by drift or depth: the recent chunks (newest first) that train
  // with this one, and the flows of the whole set.
  std::vector<RecentChunk> retrain_with;
  uint64_t retrain_flows = 0;
  bool deferred = false;  // a retrain by drift below min_flows, continuing instead
};

class CompressionPolicy {
 public:
  // `library` must outlive the policy.
  CompressionPolicy(RocksDbModelLibrary* library, PolicyOptions options) : library_(library), options_(options) {}
  const PolicyOptions& options() const { return options_; }

  // The plan for a chunk of `link` with fingerprint `fp` (its flows are
  // fp.flows), given the library as it is now. `base_id`: the model a link
  // with nothing in the library starts from ("": its first chunks train
  // one). Errors: the library's.
  [[nodiscard]] StatusOr<ChunkPlan> Plan(absl::string_view link, const Fingerprint& fp,
                                         const std::string& base_id) const;

  // The link's recent chunks with a fingerprint, newest first, bounded as
  // PolicyOptions says.
  [[nodiscard]] StatusOr<std::vector<RecentChunk>> Recent(absl::string_view link) const;

  // Why a chunk of `link` continuing `parent_id` should not fine-tune
  // (CompressOptions::skip_finetune), or "" when it should: the link's
  // newest chunks that continued parent_id, back to the last that kept a
  // delta or retrained, hold at least futile_after fine-tunes whose delta
  // was dropped for gaining too little, and fewer than futile_retry_after
  // chunks have skipped since the newest of them.
  [[nodiscard]] StatusOr<std::string> FutileFinetune(absl::string_view link, const std::string& parent_id) const;

  // The pool a chunk of `link` continuing `parent_id` fine-tunes with
  // (CompressChunk's `pool`): the link's newest chunks that shared
  // parent_id without training on their flows (report "shared"), back to the
  // last chunk that trained, a retrain, or a chunk that started the run by
  // switching to parent_id; newest first, at most `max_chunks`. The embedded
  // path keeps the same run in memory as it goes; the cluster, whose workers
  // hold nothing between jobs, reads it here and sends those chunks along.
  [[nodiscard]] StatusOr<std::vector<ChunkRecord>> Pooled(absl::string_view link, const std::string& parent_id,
                                                          size_t max_chunks) const;

 private:
  RocksDbModelLibrary* library_;
  PolicyOptions options_;
};

}  // namespace dgc::library

#endif  // DGC_LIBRARY_COMPRESSION_POLICY_H_

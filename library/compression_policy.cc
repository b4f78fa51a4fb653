#include "library/compression_policy.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace dgc::library {

StatusOr<std::vector<RecentChunk>> CompressionPolicy::Recent(absl::string_view link) const {
  DGC_ASSIGN_OR_RETURN(std::vector<ChunkRecord> chunks, library_->RecentChunks(link, options_.recent_chunks));
  std::vector<RecentChunk> out;
  uint64_t packets = 0;
  for (const ChunkRecord& c : chunks) {
    packets += c.packets;
    if (packets > options_.recent_packets && !out.empty()) break;
    auto fp = library_->GetFingerprint(link, c.start_ns);
    if (absl::IsNotFound(fp.status())) continue;  // committed without one (PutChunk): not comparable
    if (!fp.ok()) return fp.status();
    out.push_back(RecentChunk{c.start_ns, c.packets, *std::move(fp)});
  }
  return out;
}

StatusOr<std::vector<ChunkRecord>> CompressionPolicy::Pooled(absl::string_view link, const std::string& parent_id,
                                                             size_t max_chunks) const {
  DGC_ASSIGN_OR_RETURN(std::vector<ChunkRecord> chunks, library_->RecentChunks(link, max_chunks));
  std::vector<ChunkRecord> out;
  for (ChunkRecord& c : chunks) {
    if (c.model_id != parent_id || c.parent_id != c.model_id || c.decision == DecisionName(ParentDecision::Kind::kRetrain)) {
      break;  // trained on its flows: a delta of its own, or the full model it shares was trained on it
    }
    auto report = nlohmann::json::parse(c.report_json, nullptr, /*allow_exceptions=*/false);
    if (!report.is_object() || !report.value("shared", false)) break;  // fine-tuned, the delta then dropped
    const bool started_run = c.decision != DecisionName(ParentDecision::Kind::kContinue);
    out.push_back(std::move(c));
    if (started_run) break;  // switched to parent_id here: the pool began with it
  }
  return out;
}

StatusOr<std::string> CompressionPolicy::FutileFinetune(absl::string_view link, const std::string& parent_id) const {
  if (options_.futile_after == 0 || parent_id.empty()) return std::string();
  DGC_ASSIGN_OR_RETURN(std::vector<ChunkRecord> chunks,
                       library_->RecentChunks(link, options_.futile_after + options_.futile_retry_after + 8));
  uint32_t dropped = 0, skipped_since = 0;
  for (const ChunkRecord& c : chunks) {
    if (c.model_id != parent_id || c.parent_id != c.model_id || c.decision == DecisionName(ParentDecision::Kind::kRetrain)) {
      break;  // a delta kept, another model, or a retrain: the evidence ends
    }
    auto report = nlohmann::json::parse(c.report_json, nullptr, /*allow_exceptions=*/false);
    if (!report.is_object()) break;
    if (report.contains("finetune_skipped")) {
      if (dropped == 0) ++skipped_since;
    } else if (absl::StartsWith(report.value("delta_dropped", std::string()), "gain")) {
      ++dropped;  // trained, and gained less than min_delta_gain
    }
    // Else a quiet chunk that shared the parent untrained: no evidence.
  }
  if (dropped < options_.futile_after || skipped_since >= options_.futile_retry_after) return std::string();
  return absl::StrFormat(
      "the last %d fine-tunes of %s on this link gained less than min_delta_gain; one is tried again after %d skipped",
      dropped, parent_id, options_.futile_retry_after);
}

StatusOr<ChunkPlan> CompressionPolicy::Plan(absl::string_view link, const Fingerprint& fp,
                                            const std::string& base_id) const {
  using K = ParentDecision::Kind;
  using T = ParentDecision::Trigger;
  const ParentSelector::Options& so = options_.selector;
  DGC_ASSIGN_OR_RETURN(RocksDbModelLibrary::Candidates cands,
                       library_->ParentCandidates(link, so.recent_models, so.previous_full_models));
  ChunkPlan plan;
  ParentDecision& d = plan.decision;
  if (cands.recent.empty() && !cands.base) {
    if (base_id.empty()) {
      d.kind = K::kRetrain;
      d.trigger = T::kNoModel;
      d.reason = absl::StrCat("no model for link ", link, " yet: a base is trained on its first chunks");
      return plan;
    }
    d.kind = K::kBase;
    d.trigger = T::kNoModel;
    d.parent_id = base_id;
    d.reason = absl::StrCat("first chunk of link ", link, ": the --base model ", base_id);
    return plan;
  }
  d = ParentSelector(so).Decide(fp, cands.recent, cands.base, cands.previous_full);
  if (d.kind != K::kRetrain) return plan;

  // The set a retrain trains on: this chunk and the recent ones like it (all
  // recent ones for a retrain by depth), up to warmup_flows flows.
  const bool by_depth = d.trigger == T::kDepth;
  DGC_ASSIGN_OR_RETURN(std::vector<RecentChunk> recent, Recent(link));
  plan.retrain_flows = fp.flows;
  for (RecentChunk& r : recent) {
    if (plan.retrain_flows >= options_.warmup_flows) break;
    if (!by_depth && ComputeDrift(fp, r.fingerprint).score > so.drift_threshold) continue;
    plan.retrain_flows += r.fingerprint.flows;
    plan.retrain_with.push_back(std::move(r));
  }
  if (!by_depth && plan.retrain_flows < options_.min_flows) {
    auto latest = library_->LatestChunk(link);
    if (latest.ok()) {
      d.reason = absl::StrCat(d.reason, "; retrain deferred: ", plan.retrain_flows, " flows < --min-flows ",
                              options_.min_flows, ", continuing ", latest->model_id);
      d.kind = K::kContinue;
      d.parent_id = latest->model_id;
      plan.deferred = true;
      plan.retrain_with.clear();
    } else if (!absl::IsNotFound(latest.status())) {
      return latest.status();
    }
  }
  return plan;
}

}  // namespace dgc::library

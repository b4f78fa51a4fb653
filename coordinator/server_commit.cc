// Result commit: a worker's result is committed once through the library with
// the chunk's fingerprint and decision, then acknowledged; failures requeue.
#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/model/artifact.h"
#include "common/trace/chunk_format.h"
#include "common/trace/flow.h"
#include "coordinator/server_internal.h"
#include "spdlog/spdlog.h"

namespace dgc {

using coordinator_internal::FingerprintOfChunkFile;
using coordinator_internal::kNsPerSec;
using coordinator_internal::SteadyNs;
using coordinator_internal::ModelIdOfCheckpoint;

void Coordinator::OnResult(const std::string& peer, wire::JobResult& res) {
  wire::JobAck ack;
  ack.job_id = res.job_id;
  auto cls = scheduler_->ClassifyResult(res.job_id);
  const JobRecord* job = scheduler_->FindJob(res.job_id);
  // Unknown, or committed and no longer held (Scheduler, Memory): nothing to commit.
  if (!cls.ok() || !job) {
    ack.duplicate = true;
    Send(peer, ack);
    return;
  }
  std::string result_ref;
  bool newly_committed = false;
  nlohmann::json report;
  uint64_t raw_bytes = 0, stored_bytes = 0;
  std::optional<library::ParentDecision> decision;
  if (*cls == CompletionOutcome::kCommitted) {
    Status st;
    if (job->kind == JobKind::kRetrain) {
      library::ModelRecord m;
      m.id = ModelIdOfCheckpoint(res.artifact);
      m.kind = job->parent_job == 0 ? library::ModelKind::kBase : library::ModelKind::kRetrain;
      m.created_ns = clock_->NowNs();
      m.training_json = res.stats.json;
      m.blob = res.artifact;
      // The fingerprint of what it was trained on (its chunk and the further
      // chunks of its set, which are still there: their compress jobs wait
      // behind it, or they are among the recent kept), so the policy judges
      // drift against it as against the embedded path's retrains.
      if (auto set = RetrainSetOf(*job); set.ok()) {
        m.fingerprint = set->fingerprint.Encode();
      } else if (auto fp = FingerprintOfChunkFile(job->chunk_ref); fp.ok()) {
        m.fingerprint = fp->Encode();  // the library failed: its own chunk's
      } else {
        spdlog::warn("job {}: retrain model {} stored without a fingerprint: {}", res.job_id, m.id,
                     std::string(fp.status().message()));
      }
      st = library_->PutFullModel(m);
      result_ref = m.id;
    } else {
      auto art = model::ChunkArtifact::Decode(res.artifact, absl::StrCat("result of job ", res.job_id));
      if (!art.ok()) {
        st = art.status();
      } else {
        auto sc = shard_counts_.find(StreamKey(job->link, job->shard));
        uint32_t shard_count = sc == shard_counts_.end() ? (job->shard > 0 ? job->shard + 1 : 1) : sc->second;
        art->link = LibraryLink(job->link, job->shard, shard_count);
        report = art->report;
        RocksDbModelLibrary::ChunkCommit commit;
        commit.training_json = res.stats.json;
        auto policy = PolicyFor(*job, job->parent_job);
        if (policy.ok()) {
          commit.fingerprint = (*policy)->fingerprint;
          commit.decision = (*policy)->decision;
          commit.decision->parent_id = art->parent_id;  // what the worker trained from
          decision = commit.decision;
        } else {
          spdlog::warn("job {}: committed without a fingerprint: {}", res.job_id, std::string(policy.status().message()));
        }
        commit.artifact = *std::move(art);
        auto cr = library_->CommitChunk(commit);
        if (!cr.ok()) {
          st = cr.status();
        } else {
          newly_committed = *cr == RocksDbModelLibrary::CommitResult::kCommitted;
          if (newly_committed) {
            int64_t& newest = pack_newest_[commit.artifact.link];
            newest = std::max(newest, commit.artifact.start_ns);
          }
          result_ref = commit.artifact.model_id;
          raw_bytes = report.value("raw_bytes", uint64_t{0});
          auto rec = library_->GetChunk(commit.artifact.link, commit.artifact.start_ns);
          if (rec.ok()) stored_bytes = rec->stored_bytes;
          // The next chunk of the link is priced from this record as in
          // dgcctl compress (a link not priced yet loads it from the library).
          if (auto p = pricers_.find(commit.artifact.link); p != pricers_.end() && rec.ok() && newly_committed) {
            p->second.Note(*rec, commit.fingerprint ? commit.fingerprint->Encode() : std::string());
          }
        }
      }
    }
    if (!st.ok()) {
      ExitIfLibraryFull(st, absl::StrCat("job ", res.job_id, ": result not committed"));
      spdlog::error("job {}: result not committed: {}", res.job_id, std::string(st.message()));
      auto f = scheduler_->Fail(res.worker_id, res.job_id, res.attempt,
                                absl::StrCat("result not committed: ", st.message()), /*retryable=*/true);
      if (f.ok() && *f == FailureOutcome::kFailed) metrics_->jobs_failed.Increment();
      ack.duplicate = false;
      Send(peer, ack);
      ScheduleAndSend();
      return;
    }
  }
  std::string chunk_ref = job->chunk_ref;
  JobKind kind = job->kind;
  auto done = scheduler_->Complete(res.worker_id, res.job_id, res.attempt, result_ref);
  if (!done.ok()) {
    spdlog::warn("job {}: result from {} refused: {}", res.job_id, res.worker_id, std::string(done.status().message()));
    ack.duplicate = true;
    Send(peer, ack);
    return;
  }
  ack.duplicate = done->outcome != CompletionOutcome::kCommitted;
  if (auto w = workers_.find(res.worker_id); w != workers_.end() && !result_ref.empty()) w->second.Remember(result_ref);
  if (done->outcome == CompletionOutcome::kCommitted) {
    auto ls = lease_started_ns_.find(res.job_id);
    if (ls != lease_started_ns_.end()) {
      metrics_->Duration(kind == JobKind::kRetrain ? "retrain" : "finetune")
          .Observe(static_cast<double>(SteadyNs() - ls->second) / kNsPerSec);
      lease_started_ns_.erase(ls);
    }
    if (kind == JobKind::kRetrain) {
      metrics_->drift->Add({{"reason", "retrain"}}).Increment();
      spdlog::info("job {} (retrain {}/{}): base {} committed", res.job_id, job->link, job->shard, result_ref);
    } else {
      if (newly_committed) {
        metrics_->committed.Increment();
        metrics_->raw_bytes.Increment(static_cast<double>(raw_bytes));
        metrics_->stored_bytes.Increment(static_cast<double>(stored_bytes));
        if (report.contains("fidelity_mean") && report["fidelity_mean"].is_number()) {
          metrics_->fidelity.Observe(report["fidelity_mean"].get<double>());
        }
        if (report.value("retried", false)) metrics_->drift->Add({{"reason", "fidelity_retry"}}).Increment();
        if (decision && decision->trigger == library::ParentDecision::Trigger::kDrift) {
          metrics_->drift->Add({{"reason", "drift"}}).Increment();
          spdlog::info("job {} ({}/{} seq {}): drift {:.3f}: {}: {}", res.job_id, job->link, job->shard, job->seq,
                       decision->drift, library::DecisionName(decision->kind), decision->reason);
        }
      }
      policies_.erase(res.job_id);
      spdlog::info("job {} ({}/{} seq {}): model {} committed{}", res.job_id, job->link, job->shard, job->seq,
                   result_ref, newly_committed ? "" : " (chunk already in the library)");
      KeepRecentRaw(*job);
    }
  }
  Send(peer, ack);
  UpdateGauges();
  ScheduleAndSend();
}

void Coordinator::OnFailed(const std::string& peer, const wire::JobFailed& f) {
  auto out = scheduler_->Fail(f.worker_id, f.job_id, f.attempt, f.reason, f.retryable);
  if (out.ok()) {
    spdlog::warn("job {} failed on {} (attempt {}): {}{}", f.job_id, f.worker_id, f.attempt, f.reason,
                 *out == FailureOutcome::kFailed ? ": marked failed" : "");
    if (*out == FailureOutcome::kFailed) metrics_->jobs_failed.Increment();
  }
  wire::JobAck ack;
  ack.job_id = f.job_id;
  Send(peer, ack);
  ScheduleAndSend();
}

}  // namespace dgc

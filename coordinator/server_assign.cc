// Assignment: the worker pool (registration, heartbeats), the compression
// policy at a compress job's first assignment (library::CompressionPolicy),
// the parent chain sent with each job, and the leases the scheduler hands out.
#include <algorithm>
#include <filesystem>
#include <limits>
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

using coordinator_internal::FingerprintOfChunk;
using coordinator_internal::FingerprintOfChunkFile;
using coordinator_internal::SteadyNs;

void Coordinator::OnRegister(const std::string& peer, const wire::Register& reg) {
  wire::RegisterAck ack;
  ack.heartbeat_interval_ms = static_cast<uint32_t>(options_.heartbeat_ns / 1'000'000);
  ack.lease_ms = static_cast<uint32_t>(options_.lease_ns / 1'000'000);
  if (reg.cpu_threads == 0 && reg.gpus.empty()) {  // leaving: requeue its leases now
    Status st = scheduler_->RemoveWorker(reg.worker_id);
    workers_.erase(reg.worker_id);
    spdlog::info("worker {} left ({})", reg.worker_id, st.ok() ? "leases requeued" : std::string(st.message()));
    RequeueGenerateSegments(reg.worker_id);
    ScheduleAndSend();
    return;
  }
  WorkerCapacity cap;
  cap.cpu_threads = reg.cpu_threads;
  cap.gpus = static_cast<uint32_t>(reg.gpus.size());
  cap.slots = reg.max_jobs;
  cap.data_parallel = !reg.peer_address.empty();
  for (const auto& g : reg.gpus) {
    if (cap.gpu_memory_bytes == 0 || g.memory_bytes < cap.gpu_memory_bytes) cap.gpu_memory_bytes = g.memory_bytes;
  }
  Status st = scheduler_->RegisterWorker(reg.worker_id, cap);
  if (!st.ok()) {
    ack.accepted = false;
    ack.reason = std::string(st.message());
    spdlog::warn("worker registration refused: {}", std::string(st.message()));
    Send(peer, ack);
    return;
  }
  bool known = workers_.count(reg.worker_id) > 0;
  WorkerPeer& w = workers_[reg.worker_id];
  w.peer = peer;
  w.hostname = reg.hostname;
  w.build = reg.build;
  w.peer_address = reg.peer_address;
  w.ranks = std::max<uint32_t>(1, reg.ranks);
  if (!known) {
    spdlog::info("worker {} registered: {} CPU threads, {} GPUs, {} slots", reg.worker_id, reg.cpu_threads,
                 reg.gpus.size(), scheduler_->FindWorker(reg.worker_id)->slots);
  }
  ack.accepted = true;
  Send(peer, ack);
  ScheduleAndSend();
}

void Coordinator::OnHeartbeat(const std::string& peer, const wire::Heartbeat& hb) {
  wire::RegisterAck ack;  // the answer to a heartbeat: accepted, or register again
  ack.heartbeat_interval_ms = static_cast<uint32_t>(options_.heartbeat_ns / 1'000'000);
  ack.lease_ms = static_cast<uint32_t>(options_.lease_ns / 1'000'000);
  Status st = scheduler_->Heartbeat(hb.worker_id, hb.active_jobs);
  NoteGenerateHeartbeat(hb);
  auto it = workers_.find(hb.worker_id);
  if (!st.ok() || it == workers_.end()) {
    ack.accepted = false;
    ack.reason = "unknown worker: register again";
  } else {
    it->second.peer = peer;
    it->second.tokens_per_second = hb.tokens_per_second;
    ack.accepted = true;
  }
  Send(peer, ack);
}

StatusOr<std::string> Coordinator::ParentModelId(const JobRecord& job, JobId parent_job) {
  if (parent_job != 0) {
    const JobRecord* p = scheduler_->FindJob(parent_job);
    if (p && !p->result_ref.empty()) return p->result_ref;
  }
  if (!base_model_id_.empty()) return base_model_id_;
  auto sc = shard_counts_.find(StreamKey(job.link, job.shard));
  uint32_t shards = sc == shard_counts_.end() ? 1 : sc->second;
  auto latest = library_->LatestChunk(LibraryLink(job.link, job.shard, shards));
  if (latest.ok()) return latest->model_id;
  return absl::FailedPreconditionError(absl::StrCat("no parent model for ", job.link, "/", job.shard,
                                                    ": no base (--base) and no earlier chunk"));
}

StatusOr<const Coordinator::ChunkPolicy*> Coordinator::PolicyFor(const JobRecord& job, JobId parent_job) {
  using K = library::ParentDecision::Kind;
  // A base trained on this very chunk: the stream's first without --base, a
  // retrain the policy asked for, or dgcctl retrain.
  const JobRecord* pj = parent_job ? scheduler_->FindJob(parent_job) : nullptr;
  const bool trained_here = pj && pj->kind == JobKind::kRetrain && pj->seq == job.seq && !pj->result_ref.empty();
  if (auto it = policies_.find(job.id); it != policies_.end()) {
    ChunkPolicy& p = it->second;
    if (p.decision.kind == K::kRetrain && trained_here) p.decision.parent_id = pj->result_ref;
    return &p;
  }
  ChunkPolicy p;
  DGC_ASSIGN_OR_RETURN(p.fingerprint, FingerprintOfChunkFile(job.chunk_ref));
  auto sc = shard_counts_.find(StreamKey(job.link, job.shard));
  const std::string link = LibraryLink(job.link, job.shard, sc == shard_counts_.end() ? 1 : sc->second);
  // The library is as the policy needs it: the stream's earlier chunks are
  // committed (this job waited for them), its later ones are not. After a
  // restart the same plan comes out again.
  DGC_ASSIGN_OR_RETURN(library::ChunkPlan plan, policy_->Plan(link, p.fingerprint, base_model_id_));
  library::ParentDecision& d = p.decision;
  d = std::move(plan.decision);
  if (trained_here) {
    if (d.kind != K::kRetrain) {
      d.reason = absl::StrCat("dgcctl retrain: a new base ", pj->result_ref, " trained on this chunk (the policy chose ",
                              library::DecisionName(d.kind), ": ", d.reason, ")");
    }
    d.kind = K::kRetrain;
    d.parent_id = pj->result_ref;
  } else if (d.kind == K::kRetrain) {
    d.parent_id.clear();  // RetrainFirst: a retrain job on this chunk runs before it
  }
  spdlog::debug("job {} ({}/{} seq {}): {} {} (drift {:.3f}): {}", job.id, job.link, job.shard, job.seq,
                library::DecisionName(d.kind), d.parent_id, d.drift, d.reason);
  return &policies_.emplace(job.id, std::move(p)).first->second;
}

StatusOr<Coordinator::RetrainSet> Coordinator::RetrainSetOf(const JobRecord& job) {
  constexpr size_t kMaxSetBytes = coordinator_internal::kMaxTrainSetBytes;
  RetrainSet set;
  DGC_ASSIGN_OR_RETURN(set.fingerprint, FingerprintOfChunkFile(job.chunk_ref));
  size_t bytes = 0;
  const std::string key = StreamKey(job.link, job.shard);
  auto sc = shard_counts_.find(key);
  const std::string link = LibraryLink(job.link, job.shard, sc == shard_counts_.end() ? 1 : sc->second);
  auto latest = library_->LatestChunk(link);
  if (absl::IsNotFound(latest.status())) {
    // The stream's first base: its own chunk and the next ones (queued
    // compress jobs, in chunk order) until --first-base-chunks chunks or
    // --warmup-flows flows, as dgcctl compress trains a link's first base.
    if (!base_model_id_.empty() || options_.first_base_chunks <= 1) return set;
    const uint64_t warmup_flows = options_.job_options.value("warmup_flows", uint64_t{20000});
    std::vector<JobRecord> next;
    for (JobRecord& j : scheduler_->Jobs()) {
      if (j.kind == JobKind::kCompress && j.link == job.link && j.shard == job.shard && j.seq > job.seq &&
          j.state == JobState::kQueued) {
        next.push_back(std::move(j));
      }
    }
    std::sort(next.begin(), next.end(), [](const JobRecord& a, const JobRecord& b) { return a.seq < b.seq; });
    for (const JobRecord& j : next) {
      if (set.chunks.size() + 1 >= options_.first_base_chunks || set.fingerprint.flows >= warmup_flows) break;
      auto b = ReadFile(j.chunk_ref);
      if (!b.ok()) continue;
      auto c = DecodeChunk(*b, j.chunk_ref);
      if (!c.ok()) continue;
      if (bytes + b->size() > kMaxSetBytes) break;
      set.fingerprint.Add(FingerprintOfChunk(*c));
      bytes += b->size();
      set.chunks.push_back(*std::move(b));
    }
    return set;
  }
  if (!latest.ok()) return latest.status();
  // A retrain the policy asked for: the recent chunks like this one, as
  // dgcctl compress trains it. (dgcctl retrain: its chunk alone.)
  DGC_ASSIGN_OR_RETURN(library::ChunkPlan plan, policy_->Plan(link, set.fingerprint, base_model_id_));
  if (plan.decision.kind != library::ParentDecision::Kind::kRetrain) return set;
  const auto& recent = recent_raw_[key];
  for (const library::RecentChunk& rc : plan.retrain_with) {
    for (const auto& [start, path] : recent) {
      if (start != rc.start_ns) continue;
      auto b = ReadFile(path);
      if (b.ok() && bytes + b->size() <= kMaxSetBytes) {
        bytes += b->size();
        set.chunks.push_back(*std::move(b));
        set.fingerprint.Add(rc.fingerprint);
      }
    }
  }
  return set;
}

std::vector<std::string> Coordinator::PoolOf(const JobRecord& job, const std::string& parent_id) {
  std::vector<std::string> out;
  auto pool = policy_->Pooled(LibraryLinkOf(job.link, job.shard), parent_id, coordinator_internal::kMaxPoolChunks);
  if (!pool.ok()) {
    spdlog::warn("job {}: fine-tunes without the pool of quiet chunks: {}", job.id, std::string(pool.status().message()));
    return out;
  }
  const auto& recent = recent_raw_[StreamKey(job.link, job.shard)];
  size_t bytes = 0, missing = 0;
  for (auto c = pool->rbegin(); c != pool->rend(); ++c) {  // oldest first
    auto r = std::find_if(recent.begin(), recent.end(), [&](const auto& e) { return e.first == c->start_ns; });
    auto b = r == recent.end() ? StatusOr<std::string>(absl::NotFoundError("")) : ReadFile(r->second);
    if (!b.ok() || bytes + b->size() > coordinator_internal::kMaxTrainSetBytes) {
      ++missing;
      continue;
    }
    bytes += b->size();
    out.push_back(*std::move(b));
  }
  if (missing > 0) {
    spdlog::warn("job {}: {} of the {} pooled quiet chunks' raw files are gone or over the limit: left out", job.id,
                 missing, pool->size());
  }
  return out;
}

Status Coordinator::RetrainFirst(const JobRecord& job, const ChunkPolicy& policy) {
  DGC_RETURN_IF_ERROR(scheduler_->Release(job.id, "a retrain of its chunk runs first"));
  JobSpec rs{JobKind::kRetrain, job.link, job.shard, job.seq, job.start_ns, job.packets, job.chunk_ref};
  DGC_ASSIGN_OR_RETURN(SubmitResult r, scheduler_->Submit(rs));
  streams_with_base_.insert(StreamKey(job.link, job.shard));
  spdlog::info("job {} ({}/{} seq {}): retrain (drift {:.3f}): {}; retrain job {} first", job.id, job.link,
               job.shard, job.seq, policy.decision.drift, policy.decision.reason, r.job);
  return absl::CancelledError("a retrain of this chunk runs first");
}

StatusOr<std::string> Coordinator::ParentBundleBytes(const std::string& model_id) {
  std::vector<std::shared_ptr<const wire::ParentLink>> chain;
  for (auto it = bundle_cache_.begin(); it != bundle_cache_.end(); ++it) {
    if (it->first == model_id) {
      chain = it->second;
      bundle_cache_.splice(bundle_cache_.begin(), bundle_cache_, it);
      break;
    }
  }
  if (chain.empty()) {
    DGC_ASSIGN_OR_RETURN(library::ModelRecord rec, library_->GetModelRecord(model_id));
    std::vector<std::shared_ptr<const wire::ParentLink>> parent_chain;
    if (rec.kind == library::ModelKind::kFinetune) {
      for (auto& [id, c] : bundle_cache_) {
        if (id == rec.parent_id) parent_chain = c;
      }
      if (parent_chain.empty()) {
        DGC_ASSIGN_OR_RETURN(auto ancestors, library_->Ancestors(rec.parent_id));  // parent first, full model last
        for (auto a = ancestors.rbegin(); a != ancestors.rend(); ++a) {
          DGC_ASSIGN_OR_RETURN(library::ModelRecord full, library_->GetModelRecord(a->id));
          parent_chain.push_back(std::make_shared<wire::ParentLink>(wire::ParentLink{full.id, std::move(full.blob)}));
        }
      }
    }
    chain = std::move(parent_chain);
    chain.push_back(std::make_shared<wire::ParentLink>(wire::ParentLink{rec.id, std::move(rec.blob)}));
    bundle_cache_.emplace_front(model_id, chain);
    while (bundle_cache_.size() > 32) bundle_cache_.pop_back();
  }
  wire::ParentBundle b;
  for (const auto& l : chain) b.chain.push_back(*l);
  return wire::EncodeParentBundle(b);
}

void Coordinator::ScheduleAndSend() {
  if (scheduling_ || stopped_) return;
  scheduling_ = true;
  std::vector<Assignment> out;
  Status st = scheduler_->Schedule(&out);
  if (!st.ok()) {
    ExitIfLibraryFull(st, "scheduling");
    spdlog::error("scheduling: {}", std::string(st.message()));
  }
  bool lost_worker = false;
  for (const Assignment& a : out) {
    Status s = SendAssignment(a);
    if (absl::IsCancelled(s)) {  // taken back: a retrain of its chunk runs first
      lost_worker = true;
      continue;
    }
    if (absl::IsAborted(s)) {  // a gang lost a helper before anything was sent
      spdlog::warn("job {}: {}", a.job, std::string(s.message()));
      lease_started_ns_.erase(a.job);
      lost_worker = true;
      continue;
    }
    if (absl::IsUnavailable(s)) {
      // The worker's connection is gone (killed, restarted): forget it, which
      // requeues its leases without counting a failure; it registers again
      // if it comes back.
      spdlog::warn("worker {}: {}: forgotten, its jobs requeued", a.worker, std::string(s.message()));
      Status r = scheduler_->RemoveWorker(a.worker);
      if (!r.ok() && !absl::IsNotFound(r)) spdlog::error("removing worker {}: {}", a.worker, std::string(r.message()));
      workers_.erase(a.worker);
      lease_started_ns_.erase(a.job);
      RequeueGenerateSegments(a.worker);
      lost_worker = true;
      continue;
    }
    if (!s.ok()) {
      spdlog::error("job {}: cannot be sent to {}: {}", a.job, a.worker, std::string(s.message()));
      auto f = scheduler_->Fail(a.worker, a.job, a.attempt, std::string(s.message()),
                                /*retryable=*/!absl::IsFailedPrecondition(s) && !absl::IsNotFound(s));
      if (f.ok() && *f == FailureOutcome::kFailed) metrics_->jobs_failed.Increment();
    }
  }
  scheduling_ = false;
  AssignGenerateSegments();  // regeneration takes the slots compress jobs left
  UpdateGauges();
  if (lost_worker) boost::asio::post(io_, [this] { ScheduleAndSend(); });
}

Status Coordinator::SendAssignment(const Assignment& a) {
  const JobRecord* job = scheduler_->FindJob(a.job);
  if (!job) return absl::InternalError("assigned job vanished");
  auto w = workers_.find(a.worker);
  if (w == workers_.end()) return absl::UnavailableError("worker has no connection");
  wire::JobAssign ja;
  ja.job_id = a.job;
  ja.attempt = a.attempt;
  ja.kind = job->kind == JobKind::kRetrain ? wire::JobKind::kRetrain : wire::JobKind::kCompress;
  ja.lease_deadline_ns = a.lease_deadline_ns;
  ja.meta.link = job->link;
  ja.meta.shard = job->shard;
  auto sc = shard_counts_.find(StreamKey(job->link, job->shard));
  ja.meta.shard_count = sc == shard_counts_.end() ? 1 : sc->second;
  ja.meta.seq = job->seq;
  ja.meta.start_ns = job->start_ns;
  ja.meta.packets = job->packets;
  if (!options_.shared_dir.empty()) {
    if (!std::filesystem::exists(job->chunk_ref)) return absl::NotFoundError("raw chunk file missing: " + job->chunk_ref);
    ja.chunk_path = job->chunk_ref;
  } else {
    auto bytes = ReadFile(job->chunk_ref);
    if (!bytes.ok()) return absl::NotFoundError(absl::StrCat("raw chunk: ", bytes.status().message()));
    ja.chunk_bytes = *std::move(bytes);
  }
  if (job->kind == JobKind::kRetrain) {
    auto set = RetrainSetOf(*job);
    if (set.ok()) {
      ja.train_chunks = std::move(set->chunks);
      if (!ja.train_chunks.empty()) {
        spdlog::info("job {} (retrain {}/{} seq {}): trains on {} more chunk(s) with its own", job->id, job->link,
                     job->shard, job->seq, ja.train_chunks.size());
      }
    } else {
      spdlog::warn("job {}: retrain on its chunk alone: {}", job->id, std::string(set.status().message()));
    }
  }
  if (job->kind == JobKind::kCompress) {
    DGC_ASSIGN_OR_RETURN(const ChunkPolicy* policy, PolicyFor(*job, a.parent_job));
    if (policy->decision.kind == library::ParentDecision::Kind::kRetrain && policy->decision.parent_id.empty()) {
      return RetrainFirst(*job, *policy);
    }
    const std::string parent = policy->decision.parent_id;
    if (a.attempt == 1 && w->second.Holds(parent)) {
      ja.parent = wire::JobAssign::Parent::kId;  // the worker has it; a miss fails retryably and goes by bytes
      ja.parent_id = parent;
    } else {
      DGC_ASSIGN_OR_RETURN(ja.parent_bytes, ParentBundleBytes(parent));
      ja.parent = wire::JobAssign::Parent::kBytes;
    }
    w->second.Remember(parent);
    if (policy->decision.kind == library::ParentDecision::Kind::kContinue) {
      // The quiet chunks since its parent last trained: the chunk fine-tunes
      // on their flows with its own once they reach min_flows together, as
      // dgcctl compress pools them.
      ja.train_chunks = PoolOf(*job, parent);
    }
  }
  nlohmann::json opts = options_.job_options;
  opts["fidelity_target"] = options_.fidelity_target;
  if (job->kind == JobKind::kCompress) {
    auto p = policies_.find(job->id);
    if (p != policies_.end() && p->second.decision.kind == library::ParentDecision::Kind::kRetrain) {
      // Its parent was trained on this very chunk: the chunk shares it, as
      // in the embedded path, instead of fine-tuning on the same flows again.
      opts["min_flows"] = std::numeric_limits<int32_t>::max();
    } else if (p != policies_.end()) {
      // The parent's recent fine-tunes all dropped: skip this one, as the
      // embedded path does (library::CompressionPolicy::FutileFinetune).
      auto futile = policy_->FutileFinetune(LibraryLinkOf(job->link, job->shard), p->second.decision.parent_id);
      if (futile.ok() && !futile->empty()) opts["skip_finetune"] = *futile;
    }
  }
  if (job->kind == JobKind::kCompress) {
    // Priced as dgcctl compress prices it: the record's packed cost once
    // its span is packed, and the last record's metadata (library::PackPricer).
    const std::string lib_link = LibraryLinkOf(job->link, job->shard);
    auto p = pricers_.find(lib_link);
    if (p == pricers_.end()) {
      auto loaded = library::PackPricer::Load(*library_, lib_link, job->start_ns, options_.pack_span_ns);
      if (loaded.ok()) {
        p = pricers_.emplace(lib_link, *std::move(loaded)).first;
      } else {
        spdlog::warn("job {}: priced unpacked: {}", job->id, std::string(loaded.status().message()));
      }
    }
    if (p != pricers_.end()) {
      if (const double c = p->second.PackedCost(job->start_ns); c > 0) opts["packed_cost"] = c;
      if (p->second.metadata_bytes() > 0) opts["metadata_bytes"] = p->second.metadata_bytes();
    }
  }
  ja.options_json = opts.dump();
  ja.slots = std::max<uint32_t>(1, a.slots);
  // A gang: every member meets at the lead's store, under this lease's
  // prefix; the helpers get the same job with their first rank and nothing
  // else (the lead sends them each training round).
  std::vector<std::pair<WorkerPeer*, wire::JobAssign>> helpers;
  if (!a.helpers.empty()) {
    ja.gang.store_address = w->second.peer_address;
    ja.gang.store_prefix = absl::StrCat("job/", a.job, "/", a.attempt, "/");
    uint32_t rank = w->second.ranks;
    for (const LeaseShare& h : a.helpers) {
      auto hw = workers_.find(h.worker);
      if (hw == workers_.end()) {
        // Forgetting the helper ends the gang lease (requeued, not counted).
        Status r = scheduler_->RemoveWorker(h.worker);
        if (!r.ok() && !absl::IsNotFound(r)) spdlog::error("removing worker {}: {}", h.worker, std::string(r.message()));
        return absl::AbortedError(absl::StrCat("gang helper ", h.worker, " has no connection: requeued"));
      }
      wire::JobAssign hj;
      hj.job_id = ja.job_id;
      hj.attempt = ja.attempt;
      hj.kind = ja.kind;
      hj.lease_deadline_ns = ja.lease_deadline_ns;
      hj.meta = ja.meta;
      hj.options_json = ja.options_json;
      hj.slots = std::max<uint32_t>(1, h.slots);
      hj.gang = ja.gang;
      hj.gang.first_rank = rank;
      rank += hw->second.ranks;
      helpers.emplace_back(&hw->second, std::move(hj));
    }
    ja.gang.world_size = rank;
    for (auto& [peer, hj] : helpers) hj.gang.world_size = rank;
  }
  if (Status st = router_->Send(w->second.peer, ja); !st.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot reach it: ", st.message()));
  }
  for (auto& [peer, hj] : helpers) {
    // A helper that cannot be reached leaves the lead waiting at the store:
    // it times out and fails the attempt, which is then requeued.
    if (Status st = router_->Send(peer->peer, hj); !st.ok()) {
      spdlog::warn("job {}: gang helper unreachable: {}", a.job, std::string(st.message()));
    }
  }
  if (!helpers.empty()) {
    spdlog::info("job {}: data-parallel over {} workers, {} ranks (store {})", a.job, helpers.size() + 1,
                 ja.gang.world_size, ja.gang.store_address);
  }
  lease_started_ns_[a.job] = SteadyNs();
  spdlog::debug("job {} ({} {}/{} seq {}) -> {} (attempt {})", a.job, JobKindName(job->kind), job->link, job->shard,
                job->seq, a.worker, a.attempt);
  return absl::OkStatus();
}

}  // namespace dgc

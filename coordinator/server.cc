#include "coordinator/server.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <xxhash.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/model/artifact.h"
#include "common/trace/chunk_format.h"
#include "common/trace/flow.h"
#include "spdlog/spdlog.h"

namespace dgc {
namespace {

constexpr int64_t kNsPerSec = 1'000'000'000;

int64_t SteadyNs() { return runtime::LoopLiveness::NowSteadyNs(); }

std::string ModelIdOfCheckpoint(const std::string& bytes) {
  return absl::StrFormat("base-%016x", XXH64(bytes.data(), bytes.size(), 0));
}

nlohmann::json ParseOr(const std::string& text, nlohmann::json fallback) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

wire::OperatorReply Error(const std::string& message) {
  wire::OperatorReply r;
  r.ok = false;
  r.error = message;
  return r;
}

wire::OperatorReply Ok(const nlohmann::json& j) {
  wire::OperatorReply r;
  r.ok = true;
  r.json = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

}  // namespace

// The coordinator's metrics (PROCESSES.md, "Metrics").
struct Coordinator::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : raw_bytes(prometheus::BuildCounter().Name("dgc_chunk_raw_bytes_total")
                      .Help("committed chunks' packets as classic pcap bytes").Register(r).Add({})),
        stored_bytes(prometheus::BuildCounter().Name("dgc_chunk_stored_bytes_total")
                         .Help("bytes the library stores for committed chunks").Register(r).Add({})),
        committed(prometheus::BuildCounter().Name("dgc_chunks_committed_total")
                      .Help("chunks whose model is committed (once each)").Register(r).Add({})),
        fidelity(prometheus::BuildHistogram().Name("dgc_chunk_fidelity_mean")
                     .Help("per committed chunk: mean distance over the 17 metrics").Register(r)
                     .Add({}, prometheus::Histogram::BucketBoundaries{0.02, 0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25,
                                                                      0.30, 0.50, 1})),
        target(prometheus::BuildGauge().Name("dgc_fidelity_target").Help("--fidelity-target").Register(r).Add({})),
        jobs(&prometheus::BuildGauge().Name("dgc_jobs").Help("jobs now in each state").Register(r)),
        jobs_failed(prometheus::BuildCounter().Name("dgc_jobs_failed_total")
                        .Help("jobs marked failed after --max-attempts").Register(r).Add({})),
        duration(&prometheus::BuildHistogram().Name("dgc_job_duration_seconds")
                      .Help("lease to committed result, successful attempts").Register(r)),
        expiries(prometheus::BuildCounter().Name("dgc_lease_expiries_total")
                     .Help("leases expired and requeued").Register(r).Add({})),
        drift(&prometheus::BuildCounter().Name("dgc_drift_triggers_total")
                   .Help("chunks that got more than a short fine-tune, and why").Register(r)),
        workers(&prometheus::BuildGauge().Name("dgc_workers").Help("registered workers").Register(r)) {
    for (const char* s : {"pending", "running", "failed"}) jobs->Add({{"state", s}});
    for (const char* s : {"idle", "busy", "draining"}) workers->Add({{"state", s}});
    for (const char* s : {"long_finetune", "retrain", "fidelity_retry"}) drift->Add({{"reason", s}});
    for (const char* k : {"finetune", "retrain"}) Duration(k);
  }
  prometheus::Histogram& Duration(const std::string& kind) {
    return duration->Add({{"kind", kind}},
                         prometheus::Histogram::BucketBoundaries{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600});
  }
  prometheus::Counter& raw_bytes;
  prometheus::Counter& stored_bytes;
  prometheus::Counter& committed;
  prometheus::Histogram& fidelity;
  prometheus::Gauge& target;
  prometheus::Family<prometheus::Gauge>* jobs;
  prometheus::Counter& jobs_failed;
  prometheus::Family<prometheus::Histogram>* duration;
  prometheus::Counter& expiries;
  prometheus::Family<prometheus::Counter>* drift;
  prometheus::Family<prometheus::Gauge>* workers;
};

Coordinator::Coordinator(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
                         CoordinatorOptions options)
    : io_(io), zmq_(zmq), process_metrics_(metrics), options_(std::move(options)), tick_timer_(io) {}

Coordinator::~Coordinator() { Stop(); }

StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(boost::asio::io_context& io, wire::ZmqContext& zmq,
                                                           runtime::ProcessMetrics& metrics,
                                                           CoordinatorOptions options) {
  if (options.library_dir.empty()) return absl::InvalidArgumentError("--library is required");
  std::unique_ptr<Coordinator> c(new Coordinator(io, zmq, metrics, std::move(options)));
  DGC_RETURN_IF_ERROR(c->Init());
  return c;
}

Status Coordinator::Init() {
  metrics_ = std::make_unique<Metrics>(process_metrics_.registry());
  metrics_->target.Set(options_.fidelity_target);
  DGC_ASSIGN_OR_RETURN(library_, OpenModelLibrary(options_.library_dir));
  store_ = std::make_unique<RocksDbJobStore>(library_.get());
  SchedulerOptions so;
  so.lease_ns = options_.lease_ns;
  so.worker_timeout_ns = options_.lease_ns + 3 * options_.heartbeat_ns;
  so.max_failures = options_.max_attempts;
  so.large_job_packets = std::max<uint64_t>(1, options_.large_job_packets);
  so.max_workers_per_job = std::max<uint32_t>(1, options_.max_workers_per_job);
  DGC_ASSIGN_OR_RETURN(scheduler_, Scheduler::Create(so, store_.get(), &clock_));

  if (!options_.base_model_file.empty()) {
    DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(options_.base_model_file));
    library::ModelRecord m;
    m.id = ModelIdOfCheckpoint(bytes);
    m.kind = library::ModelKind::kBase;
    m.created_ns = clock_.NowNs();
    m.blob = std::move(bytes);
    DGC_RETURN_IF_ERROR(library_->PutFullModel(m));
    base_model_id_ = m.id;
    spdlog::info("base model {} from {}", base_model_id_, options_.base_model_file);
  }
  // Recovery: which streams have a base, and raw chunk files still to delete.
  size_t resumed = 0;
  for (const JobRecord& j : scheduler_->Jobs()) {
    if (j.kind == JobKind::kRetrain && j.state != JobState::kCancelled) streams_with_base_.insert(StreamKey(j.link, j.shard));
    if (j.state == JobState::kDone) {
      if (j.kind == JobKind::kCompress) streams_with_base_.insert(StreamKey(j.link, j.shard));
      if (!j.chunk_ref.empty() && std::filesystem::exists(j.chunk_ref)) DeleteRawLater(j.chunk_ref, j.updated_ns);
    } else if (j.state == JobState::kQueued || j.state == JobState::kLeased) {
      ++resumed;
    }
  }
  spdlog::info("library {}: {} jobs stored, {} to resume", options_.library_dir, scheduler_->Jobs().size(), resumed);

  wire::SocketOptions so_router;
  so_router.security = options_.security;
  so_router.send_timeout_ms = 100;
  DGC_ASSIGN_OR_RETURN(router_, wire::ZmqRouter::Bind(zmq_, options_.listen, so_router));
  DGC_ASSIGN_OR_RETURN(api_, wire::ZmqRouter::Bind(zmq_, options_.api, so_router));
  spdlog::info("listening on {} (workers, ingest), operator API on {}", router_->endpoint(), api_->endpoint());
  router_watch_ = std::make_unique<runtime::ZmqWatcher>(io_, router_->socket(), [this] { DrainRouter(); });
  api_watch_ = std::make_unique<runtime::ZmqWatcher>(io_, api_->socket(), [this] { DrainApi(); });
  DGC_RETURN_IF_ERROR(router_watch_->Start());
  DGC_RETURN_IF_ERROR(api_watch_->Start());
  Tick();
  ready_ = true;
  return absl::OkStatus();
}

std::string Coordinator::listen_endpoint() const { return router_ ? router_->endpoint() : ""; }
std::string Coordinator::api_endpoint() const { return api_ ? api_->endpoint() : ""; }

void Coordinator::Stop() {
  if (stopped_) return;
  stopped_ = true;
  ready_ = false;
  tick_timer_.cancel();
  if (router_watch_) router_watch_->Stop();
  if (api_watch_) api_watch_->Stop();
  router_watch_.reset();
  api_watch_.reset();
  router_.reset();
  api_.reset();
}

Status Coordinator::ReloadAllowList() {
  if (options_.curve_allow_dir.empty() || !router_) return absl::OkStatus();
  DGC_ASSIGN_OR_RETURN(auto keys, runtime::ReadAllowDir(options_.curve_allow_dir));
  if (keys.empty()) return absl::InvalidArgumentError("allow dir holds no *.pub key: keeping the old list");
  DGC_RETURN_IF_ERROR(zmq_.AllowClients(router_->socket().zap_domain(), keys));
  DGC_RETURN_IF_ERROR(zmq_.AllowClients(api_->socket().zap_domain(), keys));
  spdlog::info("allow-list reloaded: {} client keys", keys.size());
  return absl::OkStatus();
}

std::string Coordinator::StreamKey(const std::string& link, uint32_t shard) {
  return absl::StrCat(link, "/", shard);
}

std::string Coordinator::LibraryLink(const std::string& link, uint32_t shard, uint32_t shard_count) {
  return shard_count <= 1 ? link : absl::StrCat(link, "#", shard);
}

std::string Coordinator::RawPath(const wire::ChunkMeta& m) const {
  std::string root = options_.shared_dir.empty() ? options_.library_dir + "/raw" : options_.shared_dir + "/chunks";
  return absl::StrCat(root, "/", m.link, "/", m.shard, "/", m.seq, ".dgcc");
}

void Coordinator::Send(const std::string& peer, const wire::Message& msg) {
  Status st = router_->Send(peer, msg);
  if (!st.ok()) spdlog::debug("send {} to a peer: {}", wire::MessageKindName(wire::KindOf(msg)), std::string(st.message()));
}

void Coordinator::DrainRouter() {
  if (!router_) return;
  runtime::DrainSocket(router_, 256, process_metrics_, "a message",
                       [this](wire::ZmqRouter::Inbound& in) { OnWorkerMessage(in.peer, in.message); });
  uint64_t denied = zmq_.zap_denied();
  for (; zap_denied_seen_ < denied; ++zap_denied_seen_) {
    process_metrics_.Reject("unauthorized");
    spdlog::warn("refused a client whose key is not in the allow-list");
  }
}

void Coordinator::DrainApi() {
  runtime::DrainSocket(api_, 64, process_metrics_, "an operator message", [this](wire::ZmqRouter::Inbound& in) {
    auto* req = std::get_if<wire::OperatorRequest>(&in.message.message);
    if (!req) {
      spdlog::warn("operator API: unexpected {}", wire::MessageKindName(in.message.kind()));
      return;
    }
    wire::OperatorReply reply = OnOperator(*req);
    reply.request_id = req->request_id;
    Status st = api_->Send(in.peer, reply);
    if (!st.ok()) spdlog::warn("operator reply: {}", std::string(st.message()));
  });
}

void Coordinator::OnWorkerMessage(const std::string& peer, wire::Decoded& msg) {
  switch (msg.kind()) {
    case wire::MessageKind::kChunkOffer: {
      wire::Credit c;
      c.credits = scheduler_->counts()[JobState::kQueued] < options_.max_queued_jobs ? options_.ingest_credits : 0;
      Send(peer, c);
      break;
    }
    case wire::MessageKind::kChunkData: OnChunk(peer, std::get<wire::ChunkData>(msg.message)); break;
    case wire::MessageKind::kRegister: OnRegister(peer, std::get<wire::Register>(msg.message)); break;
    case wire::MessageKind::kHeartbeat: OnHeartbeat(peer, std::get<wire::Heartbeat>(msg.message)); break;
    case wire::MessageKind::kJobResult: OnResult(peer, std::get<wire::JobResult>(msg.message)); break;
    case wire::MessageKind::kJobFailed: OnFailed(peer, std::get<wire::JobFailed>(msg.message)); break;
    default:
      process_metrics_.Reject("malformed");
      spdlog::warn("unexpected {} on the worker/ingest socket: dropped", wire::MessageKindName(msg.kind()));
  }
}

void Coordinator::OnChunk(const std::string& peer, wire::ChunkData& data) {
  const wire::ChunkMeta& m = data.meta;
  wire::ChunkAck ack;
  ack.link = m.link;
  ack.shard = m.shard;
  ack.seq = m.seq;
  auto refuse = [&](const std::string& reason) {
    process_metrics_.Reject("malformed");
    spdlog::warn("chunk {}/{}/{} refused: {}", m.link, m.shard, m.seq, reason);
    ack.accepted = false;
    ack.reason = reason;
    Send(peer, ack);
  };
  if (Status st = library::ValidateId("link", m.link); !st.ok()) return refuse(std::string(st.message()));
  if (m.link.find('#') != std::string::npos) return refuse("link names may not hold '#'");
  if (m.duration_ns <= 0 || m.start_ns % m.duration_ns != 0 || m.seq != m.start_ns / m.duration_ns ||
      m.shard_count == 0 || m.shard >= m.shard_count) {
    return refuse("inconsistent chunk metadata (start, duration, seq, shard)");
  }
  if (data.payload.empty()) return refuse("empty chunk payload");
  const std::string key = StreamKey(m.link, m.shard);
  shard_counts_[key] = m.shard_count;
  if (!m.amend) {
    std::string path = RawPath(m);
    Status st = MakeDirs(std::filesystem::path(path).parent_path().string());
    if (st.ok()) st = WriteFileAtomic(path, data.payload);
    if (!st.ok()) {
      ack.accepted = false;
      ack.reason = absl::StrCat("cannot store the chunk: ", st.message());
      spdlog::error("{}", ack.reason);
      Send(peer, ack);
      return;
    }
    // A stream without a base trains one from its first chunk (a retrain job
    // runs before the compress job of the same chunk); dgcctl retrain asks
    // for one at the next chunk.
    bool need_base = base_model_id_.empty() && !streams_with_base_.count(key);
    if (need_base) {
      auto latest = library_->LatestChunk(LibraryLink(m.link, m.shard, m.shard_count));
      if (latest.ok()) {
        streams_with_base_.insert(key);
        need_base = false;
      }
    }
    if (need_base || retrain_requested_.count(key)) {
      JobSpec rs{JobKind::kRetrain, m.link, m.shard, m.seq, m.start_ns, m.packets, path};
      auto r = scheduler_->Submit(rs);
      if (!r.ok()) {
        ack.accepted = false;
        ack.reason = absl::StrCat("cannot store the job: ", r.status().message());
        Send(peer, ack);
        return;
      }
      streams_with_base_.insert(key);
      retrain_requested_.erase(key);
    }
    JobSpec spec{JobKind::kCompress, m.link, m.shard, m.seq, m.start_ns, m.packets, path};
    auto r = scheduler_->Submit(spec);
    if (!r.ok()) {
      ack.accepted = false;
      ack.reason = absl::StrCat("cannot store the job: ", r.status().message());
      spdlog::error("{}", ack.reason);
      Send(peer, ack);
      return;
    }
    if (!r->created) {
      const JobRecord* j = scheduler_->FindJob(r->job);
      if (j && j->state == JobState::kDone) {
        std::error_code ec;
        std::filesystem::remove(path, ec);  // a resend of a committed chunk: its raw file went already
      }
      spdlog::debug("chunk {}/{}/{} again: job {} already exists", m.link, m.shard, m.seq, r->job);
    } else {
      spdlog::debug("chunk {}/{}/{}: job {} ({} packets)", m.link, m.shard, m.seq, r->job, m.packets);
    }
  } else {
    spdlog::info("late packets for chunk {}/{}/{} ({}): counted, not modelled", m.link, m.shard, m.seq, m.packets);
  }
  ack.accepted = true;
  Send(peer, ack);
  wire::Credit c;
  c.credits = scheduler_->counts()[JobState::kQueued] < options_.max_queued_jobs ? options_.ingest_credits : 0;
  Send(peer, c);
  ScheduleAndSend();
}

void Coordinator::OnRegister(const std::string& peer, const wire::Register& reg) {
  wire::RegisterAck ack;
  ack.heartbeat_interval_ms = static_cast<uint32_t>(options_.heartbeat_ns / 1'000'000);
  ack.lease_ms = static_cast<uint32_t>(options_.lease_ns / 1'000'000);
  if (reg.cpu_threads == 0 && reg.gpus.empty()) {  // leaving: requeue its leases now
    Status st = scheduler_->RemoveWorker(reg.worker_id);
    workers_.erase(reg.worker_id);
    spdlog::info("worker {} left ({})", reg.worker_id, st.ok() ? "leases requeued" : std::string(st.message()));
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

void Coordinator::OnResult(const std::string& peer, wire::JobResult& res) {
  wire::JobAck ack;
  ack.job_id = res.job_id;
  auto cls = scheduler_->ClassifyResult(res.job_id);
  if (!cls.ok()) {  // unknown job: nothing to commit
    ack.duplicate = true;
    Send(peer, ack);
    return;
  }
  const JobRecord* job = scheduler_->FindJob(res.job_id);
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
      m.created_ns = clock_.NowNs();
      m.training_json = res.stats.json;
      m.blob = res.artifact;
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
          result_ref = commit.artifact.model_id;
          raw_bytes = report.value("raw_bytes", uint64_t{0});
          auto rec = library_->GetChunk(commit.artifact.link, commit.artifact.start_ns);
          if (rec.ok()) stored_bytes = rec->stored_bytes;
        }
      }
    }
    if (!st.ok()) {
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
      DeleteRawLater(chunk_ref, clock_.NowNs());
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
  if (auto it = policies_.find(job.id); it != policies_.end()) return &it->second;
  using K = library::ParentDecision::Kind;
  using T = library::ParentDecision::Trigger;
  ChunkPolicy p;
  DGC_ASSIGN_OR_RETURN(Chunk chunk, ReadChunkFile(job.chunk_ref));
  std::vector<Flow> flows = BuildFlows(chunk.packets, chunk.end_ns());
  p.fingerprint = library::Fingerprint::Compute(chunk.packets, flows, chunk.start_ns, chunk.duration_ns);
  auto sc = shard_counts_.find(StreamKey(job.link, job.shard));
  const std::string link = LibraryLink(job.link, job.shard, sc == shard_counts_.end() ? 1 : sc->second);
  library::ParentDecision& d = p.decision;
  const JobRecord* pj = parent_job ? scheduler_->FindJob(parent_job) : nullptr;
  if (pj && pj->kind == JobKind::kRetrain && !pj->result_ref.empty()) {
    // A base trained on this very chunk (the stream's first, or dgcctl retrain).
    d.kind = K::kRetrain;
    d.trigger = T::kNoModel;
    d.parent_id = pj->result_ref;
    d.reason = absl::StrCat("a new base ", pj->result_ref, " trained on this chunk (first chunk of ", link,
                            ", or dgcctl retrain)");
  } else {
    DGC_ASSIGN_OR_RETURN(d, library_->SelectParent(link, p.fingerprint, library::ParentSelector(options_.selector)));
    if (d.kind == K::kRetrain && d.trigger == T::kNoModel) {
      // Nothing of this link in the library yet: the --base model.
      DGC_ASSIGN_OR_RETURN(d.parent_id, ParentModelId(job, parent_job));
      d.kind = K::kBase;
      d.reason = absl::StrCat("first chunk of link ", link, ": the --base model ", d.parent_id);
    } else if (d.kind == K::kRetrain) {
      // A new base is trained from the stream's next chunk (a retrain job
      // before its compress job, as dgcctl retrain asks); this chunk
      // continues the latest model meanwhile.
      DGC_ASSIGN_OR_RETURN(d.parent_id, ParentModelId(job, parent_job));
      retrain_requested_.insert(StreamKey(job.link, job.shard));
      d.kind = K::kContinue;
      d.reason = absl::StrCat(d.reason, "; retrain scheduled with the stream's next chunk, continuing ", d.parent_id);
    }
  }
  spdlog::debug("job {} ({}/{} seq {}): {} {} (drift {:.3f}): {}", job.id, job.link, job.shard, job.seq,
                library::DecisionName(d.kind), d.parent_id, d.drift, d.reason);
  return &policies_.emplace(job.id, std::move(p)).first->second;
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
  if (!st.ok()) spdlog::error("scheduling: {}", std::string(st.message()));
  bool lost_worker = false;
  for (const Assignment& a : out) {
    Status s = SendAssignment(a);
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
  if (job->kind == JobKind::kCompress) {
    DGC_ASSIGN_OR_RETURN(const ChunkPolicy* policy, PolicyFor(*job, a.parent_job));
    const std::string parent = policy->decision.parent_id;
    if (a.attempt == 1 && w->second.Holds(parent)) {
      ja.parent = wire::JobAssign::Parent::kId;  // the worker has it; a miss fails retryably and goes by bytes
      ja.parent_id = parent;
    } else {
      DGC_ASSIGN_OR_RETURN(ja.parent_bytes, ParentBundleBytes(parent));
      ja.parent = wire::JobAssign::Parent::kBytes;
    }
    w->second.Remember(parent);
  }
  nlohmann::json opts = options_.job_options;
  opts["fidelity_target"] = options_.fidelity_target;
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

void Coordinator::DeleteRawLater(const std::string& path, int64_t committed_ns) {
  if (path.empty()) return;
  if (options_.raw_retention_ns <= 0) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return;
  }
  raw_deletions_.emplace(committed_ns + options_.raw_retention_ns, path);
}

void Coordinator::Tick() {
  if (stopped_) return;
  int64_t now = clock_.NowNs();
  while (!raw_deletions_.empty() && raw_deletions_.begin()->first <= now) {
    std::error_code ec;
    std::filesystem::remove(raw_deletions_.begin()->second, ec);
    raw_deletions_.erase(raw_deletions_.begin());
  }
  TickReport report;
  Status st = scheduler_->Tick(&report);
  if (!st.ok()) spdlog::error("scheduler tick: {}", std::string(st.message()));
  for (JobId j : report.expired) {
    metrics_->expiries.Increment();
    lease_started_ns_.erase(j);
    const JobRecord* r = scheduler_->FindJob(j);
    spdlog::warn("job {}: lease of {} expired, {}", j, r ? r->worker : "?",
                 r && r->state == JobState::kFailed ? "marked failed" : "requeued");
    if (r && r->state == JobState::kFailed) metrics_->jobs_failed.Increment();
  }
  for (const auto& w : report.lost_workers) {
    spdlog::warn("worker {} silent: forgotten", w);
    workers_.erase(w);
  }
  ScheduleAndSend();
  tick_timer_.expires_after(std::chrono::milliseconds(250));
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void Coordinator::UpdateGauges() {
  const JobCounts& c = scheduler_->counts();
  metrics_->jobs->Add({{"state", "pending"}}).Set(static_cast<double>(c[JobState::kQueued]));
  metrics_->jobs->Add({{"state", "running"}}).Set(static_cast<double>(c[JobState::kLeased]));
  metrics_->jobs->Add({{"state", "failed"}}).Set(static_cast<double>(c[JobState::kFailed]));
  double idle = 0, busy = 0, draining = 0;
  for (const auto& w : scheduler_->Workers()) {
    if (w.draining) ++draining;
    else if (w.used_slots > 0) ++busy;
    else ++idle;
  }
  metrics_->workers->Add({{"state", "idle"}}).Set(idle);
  metrics_->workers->Add({{"state", "busy"}}).Set(busy);
  metrics_->workers->Add({{"state", "draining"}}).Set(draining);
}

nlohmann::json Coordinator::WorkerJson(const WorkerInfo& w) const {
  nlohmann::json j = {{"name", w.id},
                      {"state", w.draining ? (w.used_slots ? "draining" : "drained") : (w.used_slots ? "busy" : "idle")},
                      {"slots", w.slots},
                      {"used_slots", w.used_slots},
                      {"cpu_threads", w.capacity.cpu_threads},
                      {"gpus", w.capacity.gpus},
                      {"leases", w.leases},
                      {"registered", FormatRfc3339(w.registered_ns)},
                      {"last_heartbeat", FormatRfc3339(w.last_heartbeat_ns)},
                      {"registered_ns", w.registered_ns}};
  auto it = workers_.find(w.id);
  if (it != workers_.end()) {
    j["hostname"] = it->second.hostname;
    j["build"] = it->second.build;
    j["tokens_per_second"] = it->second.tokens_per_second;
    j["ranks"] = it->second.ranks;
    j["peer_address"] = it->second.peer_address;
  }
  return j;
}

wire::OperatorReply Coordinator::OnOperator(const wire::OperatorRequest& req) {
  nlohmann::json args = ParseOr(req.args_json.empty() ? "{}" : req.args_json, nlohmann::json::object());
  auto job_id = [&](JobId* id) {
    return absl::SimpleAtoi(req.name, id) ? absl::OkStatus()
                                          : absl::InvalidArgumentError(absl::StrCat("'", req.name, "' is not a job id"));
  };
  auto job_json = [](const JobRecord& r) { return nlohmann::json::parse(EncodeJobRecord(r)); };
  switch (req.verb) {
    case wire::OperatorVerb::kGet:
    case wire::OperatorVerb::kDescribe: {
      bool describe = req.verb == wire::OperatorVerb::kDescribe;
      if (req.noun == "jobs" || req.noun == "job") {
        if (describe || !req.name.empty()) {
          JobId id = 0;
          if (Status st = job_id(&id); !st.ok()) return Error(std::string(st.message()));
          const JobRecord* r = scheduler_->FindJob(id);
          if (!r) return Error(absl::StrCat("job ", id, " not found"));
          nlohmann::json j = job_json(*r);
          if (describe && r->parent_job) j["parent_model"] = scheduler_->FindJob(r->parent_job) ?
              scheduler_->FindJob(r->parent_job)->result_ref : "";
          return Ok(describe ? j : nlohmann::json::array({j}));
        }
        std::string state = args.value("state", "");
        std::string link = args.value("link", "");
        nlohmann::json arr = nlohmann::json::array();
        for (const JobRecord& r : scheduler_->Jobs()) {
          if (!state.empty() && state != JobStateName(r.state)) continue;
          if (!link.empty() && link != r.link) continue;
          arr.push_back(job_json(r));
        }
        return Ok(arr);
      }
      if (req.noun == "workers" || req.noun == "worker") {
        if (!req.name.empty()) {
          auto w = scheduler_->FindWorker(req.name);
          if (!w) return Error(absl::StrCat("worker ", req.name, " not found"));
          return Ok(describe ? WorkerJson(*w) : nlohmann::json::array({WorkerJson(*w)}));
        }
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& w : scheduler_->Workers()) arr.push_back(WorkerJson(w));
        return Ok(arr);
      }
      if (req.noun == "chunks") {
        ChunkQuery q;
        q.link = args.value("link", "");
        auto chunks = library_->ListChunks(q);
        if (!chunks.ok()) return Error(std::string(chunks.status().message()));
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& c : *chunks) {
          arr.push_back({{"chunk", library::ChunkKeyToString(library::ChunkKey(c.link, c.start_ns))},
                         {"link", c.link}, {"start", FormatRfc3339(c.start_ns)}, {"seq", c.seq},
                         {"packets", c.packets}, {"flows", c.flows}, {"model", c.model_id},
                         {"parent", c.parent_id}, {"stored_bytes", c.stored_bytes}, {"raw_bytes", c.raw_bytes}});
        }
        return Ok(arr);
      }
      if (req.noun == "models") {
        auto models = library_->ListModels(false);
        if (!models.ok()) return Error(std::string(models.status().message()));
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& m : *models) {
          arr.push_back({{"id", m.id}, {"kind", library::ModelKindName(m.kind)}, {"parent", m.parent_id},
                         {"depth", m.depth}, {"blob_bytes", m.blob_bytes}, {"created", FormatRfc3339(m.created_ns)}});
        }
        return Ok(arr);
      }
      return Error(absl::StrCat("unknown noun '", req.noun, "': use jobs, workers, chunks or models"));
    }
    case wire::OperatorVerb::kCancel:
    case wire::OperatorVerb::kRetry: {
      JobId id = 0;
      if (Status st = job_id(&id); !st.ok()) return Error(std::string(st.message()));
      if (!scheduler_->FindJob(id)) return Error(absl::StrCat("job ", id, " not found"));
      if (req.verb == wire::OperatorVerb::kCancel) {
        auto holder = scheduler_->Cancel(id);
        if (!holder.ok()) return Error(std::string(holder.status().message()));
        lease_started_ns_.erase(id);
        spdlog::info("job {} cancelled by an operator{}", id, holder->empty() ? "" : " (its worker's result will be discarded)");
      } else {
        Status st = scheduler_->Retry(id);
        if (!st.ok()) return Error(std::string(st.message()));
        spdlog::info("job {} queued again by an operator", id);
      }
      ScheduleAndSend();
      return Ok(job_json(*scheduler_->FindJob(id)));
    }
    case wire::OperatorVerb::kRetrain: {
      if (req.name.empty()) return Error("retrain: name the link");
      uint32_t shard = args.value("shard", 0u);
      retrain_requested_.insert(StreamKey(req.name, shard));
      spdlog::info("retrain of {}/{} requested: its next chunk trains a new base", req.name, shard);
      return Ok({{"link", req.name}, {"shard", shard}, {"retrain", "at the next chunk"}});
    }
    case wire::OperatorVerb::kDrain: {
      if (req.name.empty()) return Error("drain: name the worker");
      bool undo = args.value("undo", false);
      Status st = scheduler_->SetDraining(req.name, !undo);
      if (!st.ok()) return Error(absl::StrCat("worker ", req.name, ": ", st.message()));
      spdlog::info("worker {} {}", req.name, undo ? "takes work again" : "draining");
      UpdateGauges();
      ScheduleAndSend();
      return Ok(WorkerJson(*scheduler_->FindWorker(req.name)));
    }
  }
  return Error("unknown verb");
}

}  // namespace dgc

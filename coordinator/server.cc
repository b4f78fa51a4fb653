// The coordinator's lifetime (open the library, recover the jobs, bind, stop), its
// sockets and timer, the gauges.
#include "coordinator/server.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <malloc.h>
#include <optional>
#include <set>
#include <utility>

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

using coordinator_internal::ModelIdOfCheckpoint;

StatusOr<CoordinatorStores> CoordinatorStores::Open(const std::string& library_dir, uint64_t memory_budget_bytes) {
  if (library_dir.empty()) return absl::InvalidArgumentError("--library is required");
  CoordinatorStores s;
  RocksDbModelLibrary::Options lo;
  lo.memory_budget_bytes = memory_budget_bytes;
  DGC_ASSIGN_OR_RETURN(s.library, RocksDbModelLibrary::Open(library_dir, lo));
  s.jobs = std::make_unique<RocksDbJobStore>(s.library.get());
  return s;
}

Coordinator::Coordinator(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
                         CoordinatorOptions options, CoordinatorStores stores, const Clock* clock)
    : io_(io),
      zmq_(zmq),
      process_metrics_(metrics),
      options_(std::move(options)),
      clock_(clock),
      library_(std::move(stores.library)),
      store_(std::move(stores.jobs)),
      tick_timer_(io) {}

Coordinator::~Coordinator() { Stop(); }

StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(boost::asio::io_context& io, wire::ZmqContext& zmq,
                                                           runtime::ProcessMetrics& metrics,
                                                           CoordinatorOptions options, CoordinatorStores stores,
                                                           const Clock* clock) {
  if (!stores.library || !stores.jobs || !clock) {
    return absl::InvalidArgumentError("the coordinator needs a library, a job store and a clock");
  }
  std::unique_ptr<Coordinator> c(
      new Coordinator(io, zmq, metrics, std::move(options), std::move(stores), clock));
  DGC_RETURN_IF_ERROR(c->Init());
  return c;
}

Status Coordinator::Init() {
  metrics_ = std::make_unique<Metrics>(process_metrics_.registry());
  metrics_->target.Set(options_.fidelity_target);
  {
    // The embedded path's policy, with the training knobs the workers get.
    library::PolicyOptions po;
    po.selector = options_.selector;
    po.min_flows = options_.job_options.value("min_flows", po.min_flows);
    po.warmup_flows = options_.job_options.value("warmup_flows", po.warmup_flows);
    po.futile_after = library::FutileAfter(options_.job_options.value("futile_after", po.futile_after),
                                           options_.job_options.value("check", true),
                                           options_.job_options.value("min_delta_gain", 0.01));
    policy_ = std::make_unique<library::CompressionPolicy>(library_.get(), po);
  }
  SchedulerOptions so;
  so.lease_ns = options_.lease_ns;
  so.worker_timeout_ns = options_.lease_ns + 3 * options_.heartbeat_ns;
  so.max_failures = options_.max_attempts;
  so.large_job_packets = std::max<uint64_t>(1, options_.large_job_packets);
  so.max_workers_per_job = std::max<uint32_t>(1, options_.max_workers_per_job);
  // Every stored record, read once: the recovery below needs the committed
  // ones the scheduler no longer holds (Scheduler, Memory), whose raw files
  // may still be kept, and the scheduler then takes them all.
  DGC_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->List());  // by id

  if (!options_.base_model_file.empty()) {
    DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(options_.base_model_file));
    library::ModelRecord m;
    m.id = ModelIdOfCheckpoint(bytes);
    m.kind = library::ModelKind::kBase;
    m.created_ns = clock_->NowNs();
    m.blob = std::move(bytes);
    DGC_RETURN_IF_ERROR(library_->PutFullModel(m));
    base_model_id_ = m.id;
    spdlog::info("base model {} from {}", base_model_id_, options_.base_model_file);
  }
  // Recovery: which streams have a base, first bases still waiting for their
  // chunks, the recent raw chunks a retrain may train on, and raw chunk files
  // still to delete.
  size_t resumed = 0;
  std::set<std::pair<std::string, uint32_t>> kept_streams;
  std::vector<const JobRecord*> by_seq(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) by_seq[i] = &jobs[i];
  std::stable_sort(by_seq.begin(), by_seq.end(),
                   [](const JobRecord* a, const JobRecord* b) { return a->seq < b->seq; });
  // Chunks already queued for a stream's first base: counted once the
  // scheduler holds that base's job (CountForFirstBase asks it).
  std::vector<std::pair<std::string, std::string>> first_base_chunks;  // stream, chunk_ref
  for (const JobRecord* jp : by_seq) {
    const JobRecord& j = *jp;
    const std::string key = StreamKey(j.link, j.shard);
    if (j.kind == JobKind::kRetrain && j.state != JobState::kCancelled) streams_with_base_.insert(key);
    if (j.kind == JobKind::kRetrain && j.state == JobState::kQueued && j.not_before_ns > 0) {
      first_bases_[key] = FirstBase{j.id, 0, 0};
    }
    if (j.state == JobState::kDone) {
      if (j.kind == JobKind::kCompress) streams_with_base_.insert(key);
      if (j.kind == JobKind::kCompress && !j.chunk_ref.empty() && std::filesystem::exists(j.chunk_ref)) {
        KeepRecentRaw(j, /*trim=*/false);
        kept_streams.emplace(j.link, j.shard);
      }
    } else if (j.state == JobState::kQueued || j.state == JobState::kLeased) {
      ++resumed;
      if (j.kind == JobKind::kCompress && first_bases_.count(key)) first_base_chunks.emplace_back(key, j.chunk_ref);
    }
  }
  by_seq.clear();
  const size_t stored = jobs.size();
  DGC_ASSIGN_OR_RETURN(scheduler_, Scheduler::Create(so, store_.get(), clock_, std::move(jobs)));
  // Streams whose committed jobs' records expired have a base all the same.
  for (const auto& [link, shard] : scheduler_->StreamsWithCommits()) streams_with_base_.insert(StreamKey(link, shard));
  for (const auto& [key, chunk_ref] : first_base_chunks) {
    if (auto bytes = ReadFile(chunk_ref); bytes.ok()) CountForFirstBase(key, *bytes);
  }
  for (const auto& [link, shard] : kept_streams) TrimRecentRaw(link, shard);
  spdlog::info("library {}: {} jobs stored ({} held), {} to resume", options_.library_dir, stored,
               scheduler_->resident_jobs(), resumed);

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
  // What closed since the last pass, packed before the process goes (a
  // restart would scan the link again otherwise).
  if (options_.pack_span_ns > 0 && library_) PackClosedSpans(clock_->NowNs());
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
    case wire::MessageKind::kJobResult: {
      auto& r = std::get<wire::JobResult>(msg.message);
      if (r.job_id & kGenerateJobBit) OnGenerateResult(peer, r);
      else OnResult(peer, r);
      break;
    }
    case wire::MessageKind::kJobFailed: {
      const auto& f = std::get<wire::JobFailed>(msg.message);
      if (f.job_id & kGenerateJobBit) OnGenerateFailed(peer, f);
      else OnFailed(peer, f);
      break;
    }
    default:
      process_metrics_.Reject("malformed");
      spdlog::warn("unexpected {} on the worker/ingest socket: dropped", wire::MessageKindName(msg.kind()));
  }
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

void Coordinator::KeepRecentRaw(const JobRecord& job, bool trim) {
  if (job.chunk_ref.empty()) return;
  recent_raw_[StreamKey(job.link, job.shard)].emplace_front(job.start_ns, job.chunk_ref);
  if (trim) TrimRecentRaw(job.link, job.shard);
}

void Coordinator::TrimRecentRaw(const std::string& link, uint32_t shard) {
  auto& recent = recent_raw_[StreamKey(link, shard)];
  if (recent.size() <= policy_->options().recent_chunks) return;
  // The oldest chunk of the pool the stream's next chunk would fine-tune
  // with, when its latest chunk shares its model without training on it.
  int64_t floor = std::numeric_limits<int64_t>::max();
  const std::string lib_link = LibraryLinkOf(link, shard);
  if (auto latest = library_->LatestChunk(lib_link); latest.ok()) {
    auto pool = policy_->Pooled(lib_link, latest->model_id, coordinator_internal::kMaxPoolChunks);
    if (pool.ok() && !pool->empty()) floor = pool->back().start_ns;
  }
  while (recent.size() > policy_->options().recent_chunks && recent.back().first < floor) {
    DeleteRawLater(recent.back().second, clock_->NowNs());
    recent.pop_back();
  }
}

std::string Coordinator::LibraryLinkOf(const std::string& link, uint32_t shard) const {
  auto sc = shard_counts_.find(StreamKey(link, shard));
  return LibraryLink(link, shard, sc == shard_counts_.end() ? 1 : sc->second);
}

void Coordinator::Tick() {
  if (stopped_) return;
  int64_t now = clock_->NowNs();
  while (!raw_deletions_.empty() && raw_deletions_.begin()->first <= now) {
    std::error_code ec;
    std::filesystem::remove(raw_deletions_.begin()->second, ec);
    raw_deletions_.erase(raw_deletions_.begin());
  }
  TickReport report;
  Status st = scheduler_->Tick(&report);
  if (!st.ok()) {
    ExitIfLibraryFull(st, "scheduler tick");
    spdlog::error("scheduler tick: {}", std::string(st.message()));
  }
  if (now >= next_trim_ns_) {
    // Freed pages inside glibc's arenas go back to the system every 10 s
    // (otherwise only each arena's top is returned). The heap in use stays
    // at 5-15 MB over a soak (heaptrack), but anonymous RSS kept each
    // arena's high-water mark: over 6,000 chunks it ended at 27.8 MiB with
    // this and 31.2 MiB without (tests/bench/soak.sh, --library-memory-mb 8).
    next_trim_ns_ = now + 10'000'000'000LL;
    malloc_trim(0);
  }
  if (options_.pack_span_ns > 0 && now >= next_pack_ns_) {
    next_pack_ns_ = now + 60'000'000'000LL;
    PackClosedSpans(now);
  }
  // RocksDB's memory changes with writes and flushes, not per message: read
  // with the tick (a dozen property reads), not on every commit.
  const RocksDbModelLibrary::MemoryUsage mem = library_->Memory();
  metrics_->library_memory->Add({{"kind", "memtables"}}).Set(static_cast<double>(mem.memtable_bytes));
  metrics_->library_memory->Add({{"kind", "block_cache"}}).Set(static_cast<double>(mem.block_cache_bytes));
  metrics_->library_memory->Add({{"kind", "table_readers"}}).Set(static_cast<double>(mem.table_reader_bytes));
  if (options_.job_history_ns > 0 && now >= next_expiry_ns_) {
    // A page of old records a second (2,000: far more than a fleet commits)
    // while pages have records to delete, else one every 10 s: the sweep
    // never holds the loop long, keeps up with any backlog, and costs little
    // once it has.
    next_expiry_ns_ = now + 10'000'000'000LL;
    auto expired = scheduler_->ExpireHistory(now - options_.job_history_ns, 2000, [](const JobRecord& r) {
      std::error_code ec;
      return r.chunk_ref.empty() || !std::filesystem::exists(r.chunk_ref, ec);
    });
    if (!expired.ok()) {
      ExitIfLibraryFull(expired.status(), "job history");
      spdlog::error("job history: {}", std::string(expired.status().message()));
    } else if (*expired > 0) {
      next_expiry_ns_ = now + 1'000'000'000;
      metrics_->job_records_expired.Increment(static_cast<double>(*expired));
      spdlog::debug("job history: {} committed job record(s) older than {} h deleted", *expired,
                    options_.job_history_ns / 3'600'000'000'000.0);
    }
  }
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
    RequeueGenerateSegments(w);
  }
  RequeueGenerateSegments("");  // segments no heartbeat listed for a lease, idle sessions
  ScheduleAndSend();
  tick_timer_.expires_after(std::chrono::milliseconds(250));
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void Coordinator::PackClosedSpans(int64_t now) {
  const int64_t span = options_.pack_span_ns;
  for (const auto& [link, newest] : pack_newest_) {
    // Spans that ended a grace before both the clock and the link's newest
    // chunk (a replay of old captures is "now" as far as it has come).
    const int64_t until = std::min(now, newest) - options_.pack_grace_ns;
    const int64_t closed = FloorTo(until, span);  // the end of the last span that has closed
    auto done = packed_until_.find(link);
    const int64_t since = done == packed_until_.end() ? std::numeric_limits<int64_t>::min() : done->second;
    if (closed <= since) continue;
    RocksDbModelLibrary::PackOptions po;
    po.span_ns = span;
    po.since_ns = since;
    po.until_ns = closed;
    auto r = library_->PackChunks(link, po);
    if (!r.ok()) {
      ExitIfLibraryFull(r.status(), "packing");
      spdlog::error("packing {}: {}", link, std::string(r.status().message()));
      continue;  // tried again at the next pass
    }
    packed_until_[link] = closed;
    if (r->chunks > 0) {
      spdlog::info("packed {} quiet chunk(s) of {} into {} pack(s): {} B -> {} B", r->chunks, link, r->packs,
                   r->bytes_before, r->bytes_after);
    }
  }
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

void Coordinator::ExitIfLibraryFull(const Status& st, absl::string_view what) {
  if (!absl::IsResourceExhausted(st)) return;
  spdlog::critical("{}: {}; the library's database takes no writes until it is reopened: exiting with status 75 "
                   "so the supervisor restarts dgc-coordinator once {} has space (nothing unacknowledged was "
                   "committed; ingests keep their chunks, leases expire)",
                   std::string(what), std::string(st.message()), options_.library_dir);
  spdlog::shutdown();
  std::_Exit(75);
}

}  // namespace dgc

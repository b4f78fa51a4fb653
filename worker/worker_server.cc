#include "worker/worker_server.h"

#include <algorithm>
#include <iterator>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/fault.h"
#include "common/base/files.h"
#include "common/base/units.h"
#include "common/trace/chunk_format.h"
#include "common/wire/generate_segment.h"
#include "common/wire/parent_bundle.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "common/compress/chunk_compressor.h"

namespace dgc {
namespace {

int64_t SteadyNs() { return runtime::LoopLiveness::NowSteadyNs(); }
std::string Str(const Status& s) { return std::string(s.message()); }

// The training knobs the coordinator sends (coordinator_main.cc) onto
// CompressOptions; absent keys keep dgcctl compress's defaults.
CompressOptions OptionsFromJson(const std::string& text) {
  CompressOptions o;
  o.finetune.max_steps = 60;
  o.finetune.max_seconds = 20;
  o.finetune.lora_rank = 4;
  auto j = nlohmann::json::parse(text.empty() ? "{}" : text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return o;
  o.finetune.max_steps = j.value("steps", o.finetune.max_steps);
  o.finetune.max_seconds = j.value("seconds", o.finetune.max_seconds);
  o.finetune.lora_rank = j.value("rank", o.finetune.lora_rank);
  o.sample_flows = j.value("sample_flows", o.sample_flows);
  o.min_flows_to_finetune = j.value("min_flows", o.min_flows_to_finetune);
  o.check_fidelity = j.value("check", o.check_fidelity);
  o.check_flows = j.value("check_flows", o.check_flows);
  o.fidelity_target = j.value("fidelity_target", o.fidelity_target);
  o.warmup.max_steps = j.value("warmup_steps", 600);
  o.warmup.max_seconds = j.value("warmup_seconds", 120.0);
  o.warmup_flows = j.value("warmup_flows", o.warmup_flows);
  o.network.width = j.value("width", o.network.width);
  o.network.depth = j.value("depth", o.network.depth);
  o.network.heads = j.value("heads", o.network.heads);
  o.tokenizer.max_packets = j.value("packets_per_flow", o.tokenizer.max_packets);
  o.seed = j.value("seed", o.seed);
  if (auto b = ParseBudget(j.value("budget", std::string("0.1x"))); b.ok()) {
    o.budget_fraction = b->fraction;
    o.budget_bytes_per_mpkt = b->bytes_per_mpkt;
  }
  o.exact_flows = j.value("exact", o.exact_flows);
  o.skip_finetune = j.value("skip_finetune", std::string());
  o.min_delta_gain = j.value("min_delta_gain", o.min_delta_gain);
  // The coordinator's pricing of the record (library::PackPricer).
  o.packed_cost = j.value("packed_cost", o.packed_cost);
  o.metadata_bytes = j.value("metadata_bytes", o.metadata_bytes);
  return o;
}

}  // namespace

ThreadPool::ThreadPool(size_t n) {
  for (size_t i = 0; i < std::max<size_t>(n, 1); ++i) {
    threads_.emplace_back([this] {
      while (true) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
          if (stop_) return;
          task = std::move(tasks_.front());
          tasks_.pop_front();
          ++busy_;
        }
        task();
        {
          std::lock_guard<std::mutex> lock(mu_);
          --busy_;
        }
        cv_.notify_all();
      }
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    tasks_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_all();
}

bool ThreadPool::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return busy_.load() == 0 && tasks_.empty(); });
}

WorkerServer::WorkerServer(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
                           WorkerOptions options)
    : io_(io),
      zmq_(zmq),
      metrics_(metrics),
      options_(std::move(options)),
      timer_(io),
      tokens_gauge_(prometheus::BuildGauge().Name("dgc_worker_tokens_per_second")
                        .Help("training throughput over the last 10 s (0 when idle)").Register(metrics.registry()).Add({})),
      running_gauge_(prometheus::BuildGauge().Name("dgc_worker_jobs_running").Help("jobs running now")
                         .Register(metrics.registry()).Add({})),
      jobs_total_(&prometheus::BuildCounter().Name("dgc_worker_jobs_total").Help("jobs finished, by result")
                       .Register(metrics.registry())) {
  for (const char* r : {"ok", "error", "cancelled", "helper"}) jobs_total_->Add({{"result", r}});
}

WorkerServer::~WorkerServer() {
  watch_.reset();
  dealer_.reset();
  pool_.reset();
}

Status WorkerServer::Start() {
  pool_ = std::make_unique<ThreadPool>(options_.max_jobs);
  if (!options_.peer_host.empty()) {
    auto store = model::StoreServer::Start(options_.peer_host, options_.peer_port, options_.peer_timeout_seconds);
    if (!store.ok()) {
      return Status(store.status().code(),
                    absl::StrCat("--peer-address ", options_.peer_host, ":", options_.peer_port, ": ",
                                 store.status().message()));
    }
    store_ = *std::move(store);
    peer_address_ = absl::StrCat(options_.peer_host, ":", store_->port());
    spdlog::info("data-parallel store on {} (jobs spanning workers meet here)", peer_address_);
  }
  DGC_RETURN_IF_ERROR(Connect());
  SendRegister();
  Timer();
  return absl::OkStatus();
}

Status WorkerServer::Connect() {
  if (watch_) watch_->Stop();
  watch_.reset();
  dealer_.reset();
  wire::SocketOptions so;
  so.security = options_.security;
  so.send_timeout_ms = 0;  // never block the loop; what is not queued is resent
  so.linger_ms = 500;      // the leaving message on shutdown
  DGC_ASSIGN_OR_RETURN(dealer_, wire::ZmqDealer::Connect(zmq_, options_.coordinator, so));
  watch_ = std::make_unique<runtime::ZmqWatcher>(io_, dealer_->socket(), [this] { Drain(); });
  DGC_RETURN_IF_ERROR(watch_->Start());
  last_heard_ns_ = SteadyNs();
  return absl::OkStatus();
}

void WorkerServer::SendRegister() {
  wire::Register r;
  r.worker_id = options_.name;
  r.cpu_threads = options_.threads;
  r.gpus = options_.gpus;
  r.max_jobs = options_.max_jobs;
  r.peer_address = peer_address_;
  r.ranks = static_cast<uint32_t>(options_.devices.size());
  r.build = runtime::Version();
  r.hostname = runtime::HostName();
  last_register_ns_ = SteadyNs();
  Status st = dealer_->Send(r);
  if (!st.ok()) spdlog::debug("register: {}", Str(st));
}

void WorkerServer::Drain() {
  runtime::DrainSocket(dealer_, 64, metrics_, "a message from the coordinator", [this](wire::Decoded& msg) {
    last_heard_ns_ = SteadyNs();
    OnMessage(msg);
  });
}

void WorkerServer::OnMessage(wire::Decoded& msg) {
  switch (msg.kind()) {
    case wire::MessageKind::kRegisterAck: {
      const auto& ack = std::get<wire::RegisterAck>(msg.message);
      if (ack.accepted) {
        if (!registered_) {
          spdlog::info("registered with {} as {} ({} jobs at once)", options_.coordinator, options_.name,
                       options_.max_jobs);
          // Results finished while the coordinator was away go again now.
          for (const auto& [id, m] : unacked_) (void)dealer_->Send(m);
        }
        registered_ = true;
        if (ack.heartbeat_interval_ms > 0) heartbeat_ns_ = int64_t{ack.heartbeat_interval_ms} * 1'000'000;
      } else {
        if (registered_) spdlog::warn("coordinator: {}", ack.reason);
        registered_ = false;
        SendRegister();
      }
      break;
    }
    case wire::MessageKind::kJobAssign: OnAssign(std::get<wire::JobAssign>(msg.message)); break;
    case wire::MessageKind::kJobAck: {
      const auto& ack = std::get<wire::JobAck>(msg.message);
      unacked_.erase(ack.job_id);
      if (running_.count(ack.job_id)) cancelled_[ack.job_id] = true;  // done elsewhere or cancelled
      break;
    }
    default:
      metrics_.Reject("malformed");
      spdlog::warn("unexpected {} from the coordinator: dropped", wire::MessageKindName(msg.kind()));
  }
}

void WorkerServer::OnAssign(wire::JobAssign& job) {
  if (running_.count(job.job_id)) return;  // a resend of what runs already
  if (auto it = unacked_.find(job.job_id); it != unacked_.end()) {
    (void)dealer_->Send(it->second);
    return;
  }
  running_[job.job_id] = job.attempt;
  running_gauge_.Set(static_cast<double>(running_.size()));
  spdlog::info("job {} ({} {}/{} seq {}, attempt {})", job.job_id,
               job.kind == wire::JobKind::kRetrain    ? "retrain"
               : job.kind == wire::JobKind::kGenerate ? "generate"
                                                      : "compress",
               job.meta.link, job.meta.shard,
               job.meta.seq, job.attempt);
  auto shared = std::make_shared<wire::JobAssign>(std::move(job));
  pool_->Submit([this, shared] {
    Outcome out = shared->gang.world_size > 0 && shared->gang.first_rank > 0 ? ServeGang(*shared) : RunJob(*shared);
    boost::asio::post(io_, [this, out = std::move(out)]() mutable { OnDone(std::move(out)); });
  });
}

void WorkerServer::OnDone(Outcome out) {
  running_.erase(out.job_id);
  bool cancelled = cancelled_.erase(out.job_id) > 0;
  running_gauge_.Set(static_cast<double>(running_.size()));
  if (out.tokens_per_second > 0) tokens_per_second_ = out.tokens_per_second;
  last_done_ns_ = SteadyNs();
  jobs_total_->Add({{"result", out.helper ? "helper" : cancelled ? "cancelled" : out.ok ? "ok" : "error"}}).Increment();
  if (stopped_ || cancelled || out.helper) return;
  wire::Message m;
  if (out.ok) m = std::move(out.result);
  else m = std::move(out.failed);
  Status st = dealer_->Send(m);
  if (!st.ok()) spdlog::warn("job {}: result not sent yet: {}", out.job_id, Str(st));
  unacked_[out.job_id] = std::move(m);
}

void WorkerServer::Timer() {
  if (stopped_) return;
  int64_t now = SteadyNs();
  // Silence: the coordinator is gone or restarted; reconnect (drops what
  // libzmq queued for the dead connection) and register again.
  int64_t silence_limit = std::max<int64_t>(3 * heartbeat_ns_, 3'000'000'000);
  if (now - last_heard_ns_ > silence_limit) {
    if (registered_) spdlog::warn("coordinator silent for {} ms: reconnecting", (now - last_heard_ns_) / 1000000);
    registered_ = false;
    Status st = Connect();
    if (!st.ok()) spdlog::error("reconnect: {}", Str(st));
    if (dealer_) SendRegister();
  } else if (!registered_ && now - last_register_ns_ > heartbeat_ns_) {
    SendRegister();
  } else if (registered_ && now - last_heartbeat_ns_ >= heartbeat_ns_) {
    wire::Heartbeat hb;
    hb.worker_id = options_.name;
    for (const auto& [id, attempt] : running_) hb.active_jobs.push_back(id);
    for (const auto& [id, m] : unacked_) {
      hb.active_jobs.push_back(id);
      (void)dealer_->Send(m);  // not acknowledged yet: again
    }
    hb.tokens_per_second = running_.empty() ? 0 : tokens_per_second_;
    last_heartbeat_ns_ = now;
    (void)dealer_->Send(hb);
  }
  if (running_.empty() && now - last_done_ns_ > 10'000'000'000LL) tokens_per_second_ = 0;
  tokens_gauge_.Set(running_.empty() && now - last_done_ns_ > 10'000'000'000LL ? 0 : tokens_per_second_);
  timer_.expires_after(std::chrono::milliseconds(100));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Timer();
  });
}

bool WorkerServer::Stop(std::chrono::milliseconds wait) {
  if (stopped_) return true;
  stopped_ = true;
  timer_.cancel();
  registered_ = false;
  if (dealer_) {
    wire::Register leave;  // no CPU thread, no GPU: leaving, requeue my leases
    leave.worker_id = options_.name;
    leave.build = runtime::Version();
    (void)dealer_->Send(leave);
  }
  if (watch_) watch_->Stop();
  watch_.reset();
  dealer_.reset();  // lingers up to 500 ms to deliver the leaving message
  return pool_ ? pool_->WaitIdle(wait) : true;
}

StatusOr<std::unique_ptr<model::FlowModel>> WorkerServer::ParentModel(const wire::JobAssign& job,
                                                                      std::string* parent_id) {
  std::optional<wire::ParentBundle> bundle;
  if (job.parent == wire::JobAssign::Parent::kBytes) {
    DGC_ASSIGN_OR_RETURN(bundle, wire::DecodeParentBundle(job.parent_bytes));
    *parent_id = bundle->parent_id();
  } else if (job.parent == wire::JobAssign::Parent::kId) {
    *parent_id = job.parent_id;
  } else {
    return absl::InvalidArgumentError("a compress job without a parent model");
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->first == *parent_id) {
        cache_.splice(cache_.begin(), cache_, it);  // most recently used first
        return cache_.front().second->Clone();
      }
    }
  }
  if (!bundle) return absl::FailedPreconditionError(absl::StrCat("parent model ", *parent_id, " not sent and not cached"));
  DGC_ASSIGN_OR_RETURN(auto m, model::FlowModel::FromBytes(bundle->chain[0].blob, bundle->chain[0].model_id));
  for (size_t i = 1; i < bundle->chain.size(); ++i) {
    DGC_RETURN_IF_ERROR(m->ApplyDelta(bundle->chain[i].blob, bundle->chain[i].model_id));
  }
  CacheModel(*parent_id, *m);
  return m;
}

void WorkerServer::CacheModel(const std::string& id, const model::FlowModel& m) {
  auto copy = m.Clone();
  if (!copy.ok()) return;
  std::lock_guard<std::mutex> lock(cache_mu_);
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->first == id) {
      cache_.erase(it);
      break;
    }
  }
  cache_.emplace_front(id, *std::move(copy));
  while (cache_.size() > 8) cache_.pop_back();
}

std::vector<size_t> WorkerServer::AcquireDevices(uint32_t slots) {
  const size_t n = options_.devices.size();
  const size_t want = slots >= 2 || options_.max_jobs == 1 ? n : 1;
  std::lock_guard<std::mutex> lock(devices_mu_);
  device_jobs_.resize(n, 0);
  // The least-loaded devices, lowest index first among equals: jobs never
  // wait for a device (the coordinator leases no more than the slots; more
  // jobs than GPUs, with --max-jobs, share them).
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return device_jobs_[a] < device_jobs_[b]; });
  order.resize(want);
  std::sort(order.begin(), order.end());
  for (size_t i : order) ++device_jobs_[i];
  return order;
}

void WorkerServer::ReleaseDevices(const std::vector<size_t>& devices) {
  std::lock_guard<std::mutex> lock(devices_mu_);
  for (size_t i : devices) {
    if (i < device_jobs_.size() && device_jobs_[i] > 0) --device_jobs_[i];
  }
}

model::SessionOptions WorkerServer::GangSession(const wire::JobAssign& job,
                                                const std::vector<std::string>& devices) const {
  model::SessionOptions s;
  const std::string& addr = job.gang.store_address;
  const size_t colon = addr.rfind(':');
  s.store_host = addr.substr(0, colon == std::string::npos ? addr.size() : colon);
  if (colon != std::string::npos) s.store_port = std::atoi(addr.c_str() + colon + 1);
  s.store_prefix = job.gang.store_prefix;
  s.world_size = static_cast<int32_t>(job.gang.world_size);
  s.first_rank = static_cast<int32_t>(job.gang.first_rank);
  s.devices = devices;
  s.interface_host = options_.peer_host.empty() ? "127.0.0.1" : options_.peer_host;
  s.timeout_seconds = options_.peer_timeout_seconds;
  return s;
}

WorkerServer::Outcome WorkerServer::ServeGang(const wire::JobAssign& job) {
  Outcome out;
  out.job_id = job.job_id;
  out.attempt = job.attempt;
  out.helper = true;
  const std::vector<size_t> held = AcquireDevices(UINT32_MAX);
  std::vector<std::string> devices;
  for (size_t i : held) devices.push_back(options_.devices[i]);
  spdlog::info("job {}: serving ranks {}..{} of {} for the gang at {}", job.job_id, job.gang.first_rank,
               job.gang.first_rank + devices.size() - 1, job.gang.world_size, job.gang.store_address);
  auto t0 = std::chrono::steady_clock::now();
  auto rounds = model::ServeSession(GangSession(job, devices));
  ReleaseDevices(held);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.ok = rounds.ok();
  if (rounds.ok()) {
    spdlog::info("job {}: served {} training round(s) in {:.1f} s", job.job_id, *rounds, secs);
  } else {
    // The lead fails the attempt the same way (its collectives time out or
    // break); the coordinator requeues it.
    spdlog::error("job {}: gang rank {}: {}", job.job_id, job.gang.first_rank, Str(rounds.status()));
  }
  return out;
}

WorkerServer::Outcome WorkerServer::Failed(const wire::JobAssign& job, const Status& st, bool retryable) const {
  Outcome out;
  out.job_id = job.job_id;
  out.attempt = job.attempt;
  out.ok = false;
  out.failed.job_id = job.job_id;
  out.failed.attempt = job.attempt;
  out.failed.worker_id = options_.name;
  out.failed.reason = Str(st);
  out.failed.retryable = retryable;
  spdlog::error("job {} failed: {}", job.job_id, Str(st));
  return out;
}

WorkerServer::Outcome WorkerServer::RunGenerate(const wire::JobAssign& job) {
  auto t0 = std::chrono::steady_clock::now();
  auto opts = wire::DecodeSegmentOptions(job.options_json);
  if (!opts.ok()) return Failed(job, opts.status(), /*retryable=*/false);
  if (opts->chunks.size() != job.train_chunks.size()) {
    return Failed(job, absl::InvalidArgumentError("generate segment: chunks and skeletons differ in number"), false);
  }
  std::string model_id;
  auto m = ParentModel(job, &model_id);
  if (!m.ok()) return Failed(job, m.status(), /*retryable=*/true);
  model::TokenizerConfig tc;
  if (!opts->tokenizer.is_null()) {
    auto t = model::TokenizerConfig::FromJson(opts->tokenizer);
    if (t.ok()) tc = *t;  // as the embedded generate reads it
  }
  std::vector<model::ChunkArtifact> artifacts(opts->chunks.size());
  std::vector<const model::ChunkArtifact*> ptrs;
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < artifacts.size(); ++i) {
    model::ChunkArtifact& a = artifacts[i];
    a.link = opts->chunks[i].link;
    a.start_ns = opts->chunks[i].start_ns;
    a.duration_ns = opts->chunks[i].duration_ns;
    a.model_id = a.parent_id = model_id;
    a.skeleton = job.train_chunks[i];
    ptrs.push_back(&a);
    seeds.push_back(opts->chunks[i].seed);
  }
  model::GenerateOptions go;
  go.min_p = opts->min_p;
  go.exact_templates = opts->exact_templates;
  // Each job its share of the cores; the output is the same for any count.
  go.threads = static_cast<int32_t>(std::max<uint32_t>(1, options_.threads / std::max<uint32_t>(1, options_.max_jobs)));
  auto packets = RegenerateChunks(**m, ptrs, tc, seeds, go);
  if (!packets.ok()) return Failed(job, packets.status(), /*retryable=*/false);
  // Sampled, not yet sent: a worker dying here leaves the segment for the
  // coordinator to requeue (tests/runtime, regeneration on the cluster).
  FaultPoint("worker.generate.after_sampling");
  uint64_t n = 0;
  for (const auto& p : *packets) n += p.size();
  Outcome out;
  out.job_id = job.job_id;
  out.attempt = job.attempt;
  out.ok = true;
  out.result.job_id = job.job_id;
  out.result.attempt = job.attempt;
  out.result.worker_id = options_.name;
  out.result.artifact = wire::EncodeSegmentPackets(opts->chunks, *packets);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.result.stats.train_seconds = secs;
  out.result.stats.artifact_bytes = out.result.artifact.size();
  out.result.stats.json = nlohmann::json{{"packets", n}, {"chunks", artifacts.size()}, {"seconds", secs}}.dump();
  spdlog::info("job {}: regenerated {} chunk(s), {} packets in {:.2f} s ({:.0f} packets/s)", job.job_id,
               artifacts.size(), n, secs, secs > 0 ? n / secs : 0.0);
  return out;
}

WorkerServer::Outcome WorkerServer::RunJob(const wire::JobAssign& job) {
  if (job.kind == wire::JobKind::kGenerate) return RunGenerate(job);
  Outcome out;
  out.job_id = job.job_id;
  out.attempt = job.attempt;
  auto fail = [&](const Status& st, bool retryable) {
    out = Failed(job, st, retryable);
    return out;
  };
  auto t0 = std::chrono::steady_clock::now();
  const bool gang = job.gang.world_size > 0;
  const std::vector<size_t> held = AcquireDevices(gang ? UINT32_MAX : job.slots);
  struct Release {
    WorkerServer* w;
    const std::vector<size_t>& d;
    ~Release() { w->ReleaseDevices(d); }
  } release{this, held};
  std::vector<std::string> devices;
  for (size_t i : held) devices.push_back(options_.devices[i]);
  // Leading a gang: the helpers wait at this worker's store from now on;
  // the session's end (its destructor, on every path below) releases them.
  std::unique_ptr<model::TrainingSession> session;
  if (gang) {
    auto s = model::TrainingSession::Lead(GangSession(job, devices));
    if (!s.ok()) return fail(s.status(), /*retryable=*/true);
    session = *std::move(s);
    spdlog::info("job {}: leading {} data-parallel ranks ({} here: {})", job.job_id, session->world_size(),
                 devices.size(), absl::StrJoin(devices, ","));
  }
  std::string name = absl::StrCat("job ", job.job_id, " chunk");
  StatusOr<Chunk> chunk = absl::UnknownError("no chunk");
  if (!job.chunk_path.empty()) {
    chunk = ReadChunkFile(job.chunk_path);
  } else {
    chunk = DecodeChunk(job.chunk_bytes, name);
  }
  if (!chunk.ok()) return fail(chunk.status(), /*retryable=*/false);
  // The stream's name in the library (the coordinator's LibraryLink): model
  // ids derive from it, so shards of one link never collide.
  chunk->link = job.meta.shard_count > 1 ? absl::StrCat(job.meta.link, "#", job.meta.shard) : job.meta.link;
  CompressOptions opt = OptionsFromJson(job.options_json);
  opt.train_devices = devices;
  opt.finetune.device = opt.warmup.device = devices[0];
  if (session) {
    opt.train_devices.clear();
    opt.trainer = [&session](model::FlowModel& m, const std::vector<std::vector<model::Token>>& seqs,
                             const model::TrainOptions& t) { return session->Train(m, seqs, t); };
  } else if (opt.train_devices.size() == 1) {
    opt.train_devices.clear();  // plain training on that device
  } else {
    spdlog::info("job {}: data-parallel over {} ranks ({})", job.job_id, opt.train_devices.size(),
                 absl::StrJoin(opt.train_devices, ","));
  }
  nlohmann::json report;
  if (job.kind == wire::JobKind::kRetrain) {
    // Its own chunk first, then the further chunks of its retrain set in the
    // coordinator's order (as dgcctl compress orders a retrain's chunks).
    std::vector<Chunk> train = {*chunk};
    for (size_t i = 0; i < job.train_chunks.size(); ++i) {
      auto c = DecodeChunk(job.train_chunks[i], absl::StrCat(name, " (retrain set ", i + 1, ")"));
      if (!c.ok()) return fail(c.status(), /*retryable=*/false);
      train.push_back(*std::move(c));
    }
    auto base = TrainBase(train, opt, &report);
    if (!base.ok()) return fail(base.status(), true);
    std::string bytes = (*base)->ToBytes();
    std::string id = BaseModelId(bytes);
    CacheModel(id, **base);
    out.result.artifact = std::move(bytes);
    report["model_id"] = id;
  } else {
    std::string parent_id;
    auto parent = ParentModel(job, &parent_id);
    if (!parent.ok()) return fail(parent.status(), true);
    // The quiet chunks before it that shared the parent untrained (the
    // coordinator's pool, oldest first): their flows train with its own, as
    // in dgcctl compress, sampled the same way.
    std::vector<std::vector<model::Token>> pool;
    if (!job.train_chunks.empty()) {
      model::FlowTokenizer tok(opt.tokenizer);
      for (size_t i = 0; i < job.train_chunks.size(); ++i) {
        auto c = DecodeChunk(job.train_chunks[i], absl::StrCat(name, " (pooled chunk ", i + 1, ")"));
        if (!c.ok()) return fail(c.status(), /*retryable=*/false);
        auto seqs = ChunkSequences(*c, tok, opt.sample_flows, opt.seed ^ static_cast<uint64_t>(c->seq()));
        pool.insert(pool.end(), std::make_move_iterator(seqs.begin()), std::make_move_iterator(seqs.end()));
      }
    }
    auto r = CompressChunk(*chunk, **parent, parent_id, opt, pool);
    if (!r.ok()) return fail(r.status(), true);
    CacheModel(r->artifact.model_id, *r->model);
    report = r->artifact.report;
    out.result.artifact = r->artifact.Encode();
    if (report.contains("fidelity_mean") && report["fidelity_mean"].is_number()) {
      out.result.stats.fidelity = report["fidelity_mean"].get<double>();
    }
  }
  if (session) {
    // The helpers stop here; their errors do not undo a finished job.
    if (Status st = session->Finish(); !st.ok()) spdlog::warn("job {}: ending the gang: {}", job.job_id, Str(st));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.ok = true;
  out.result.job_id = job.job_id;
  out.result.attempt = job.attempt;
  out.result.worker_id = options_.name;
  out.result.stats.train_seconds = secs;
  out.result.stats.artifact_bytes = out.result.artifact.size();
  uint64_t tokens = 0;
  for (const char* k : {"tokens", "train_tokens"}) {
    if (report.contains(k) && report[k].is_number()) tokens = report[k].get<uint64_t>();
  }
  out.result.stats.tokens = tokens;
  out.tokens_per_second = secs > 0 ? tokens / secs : 0;
  out.result.stats.json = report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  spdlog::info("job {} done in {:.1f} s ({} bytes)", job.job_id, secs, out.result.artifact.size());
  return out;
}

}  // namespace dgc

// DataParallelGroup on c10d: the one adapter between dgc and libtorch's
// process groups and stores; c10 exceptions become Status here.
//
// Backends are compile-time options: DGC_HAVE_GLOO (CMake sets it when
// libtorch has c10d Gloo and the gloo headers are installed: Debian's
// libgloo-dev) and DGC_HAVE_NCCL (a CUDA libtorch with NCCL). The c10d
// headers only declare their process groups under USE_C10D_GLOO /
// USE_C10D_NCCL, which libtorch's own build defines.
#if defined(DGC_HAVE_GLOO) && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO 1
#endif
#if defined(DGC_HAVE_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL 1
#endif

#include "common/model/distributed.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#ifdef DGC_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef DGC_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/model/distributed_internal.h"
#include "common/model/tokenizer.h"

namespace dgc::model {
namespace {

std::string FirstLine(const std::string& s) {
  const size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// A c10d failure as a Status: timeouts are DeadlineExceeded, the rest
// Unavailable (a peer or the store went away).
Status FromException(const std::string& where, const std::exception& e) {
  std::string what = FirstLine(e.what());
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) what = FirstLine(ce->what_without_backtrace());
  const std::string msg = absl::StrCat(where, ": ", what);
  const std::string lower = absl::AsciiStrToLower(what);
  if (absl::StrContains(lower, "timeout") || absl::StrContains(lower, "timed out")) {
    return absl::DeadlineExceededError(msg);
  }
  return absl::UnavailableError(msg);
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.001, seconds) * 1000));
}

}  // namespace

bool BackendAvailable(const std::string& backend) {
#ifdef DGC_HAVE_GLOO
  if (backend == "gloo") return true;
#endif
#ifdef DGC_HAVE_NCCL
  if (backend == "nccl") return torch::cuda::is_available();
#endif
  return false;
}

// ---------------------------------------------------------------------------

struct StoreServer::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

StoreServer::StoreServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreServer::~StoreServer() = default;
int32_t StoreServer::port() const { return impl_->store->getPort(); }

StatusOr<std::unique_ptr<StoreServer>> StoreServer::Start(const std::string& host, int32_t port,
                                                          double timeout_seconds) {
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("store port ", port));
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = true;
    o.waitWorkers = false;
    o.timeout = Millis(timeout_seconds);
    auto impl = std::make_unique<Impl>();
    impl->store = c10::make_intrusive<c10d::TCPStore>(host, o);
    return std::unique_ptr<StoreServer>(new StoreServer(std::move(impl)));
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("store server on ", host, ":", port), e);
  }
}

// ---------------------------------------------------------------------------

struct DataParallelGroup::Impl {
  int32_t rank = 0, world_size = 1;
  std::string backend, device;
  double timeout_seconds = 120;
  c10::intrusive_ptr<c10d::Store> store;
#ifdef DGC_HAVE_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef DGC_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif

  // Runs one collective on `t` through the group's backend.
  template <typename F>
  Status Run(const char* what, at::Tensor& t, F&& op) {
    try {
      std::vector<at::Tensor> v;
#ifdef DGC_HAVE_NCCL
      if (nccl) {
        v.push_back(t);
        auto work = op(*nccl, v);
        work->wait(Millis(timeout_seconds));
        return absl::OkStatus();
      }
#endif
#ifdef DGC_HAVE_GLOO
      if (gloo) {
        // Gloo here works on CPU tensors: a GPU tensor travels through a
        // CPU copy (the NCCL backend is the GPU path).
        const bool copy = !t.is_cpu();
        v.push_back(copy ? t.to(at::kCPU) : t);
        auto work = op(*gloo, v);
        work->wait(Millis(timeout_seconds));
        if (copy) t.copy_(v[0]);
        return absl::OkStatus();
      }
#endif
      (void)op;
      return absl::FailedPreconditionError(absl::StrCat(what, ": no backend"));
    } catch (const std::exception& e) {
      return FromException(absl::StrCat(what, " (rank ", rank, " of ", world_size, ", ", backend, ")"), e);
    }
  }
};

DataParallelGroup::DataParallelGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DataParallelGroup::~DataParallelGroup() = default;
int32_t DataParallelGroup::rank() const { return impl_->rank; }
int32_t DataParallelGroup::world_size() const { return impl_->world_size; }
const std::string& DataParallelGroup::backend() const { return impl_->backend; }
const std::string& DataParallelGroup::device() const { return impl_->device; }

StatusOr<std::unique_ptr<DataParallelGroup>> DataParallelGroup::Create(const DistributedOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("data parallel: rank ", o.rank, " outside [0, world_size ", o.world_size, ")"));
  }
  if (!(o.timeout_seconds > 0)) return absl::InvalidArgumentError("data parallel: timeout must be > 0");
  auto impl = std::make_unique<Impl>();
  impl->rank = o.rank;
  impl->world_size = o.world_size;
  impl->timeout_seconds = o.timeout_seconds;
  // Device: "auto" spreads the ranks of a node over its GPUs.
  impl->device = o.device.empty() ? "cpu" : o.device;
  int gpus = 0;
  try {
    gpus = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  } catch (const std::exception&) {
  }
  if (impl->device == "auto") impl->device = gpus > 0 ? absl::StrCat("cuda:", o.rank % gpus) : "cpu";
  const bool on_gpu = absl::StartsWith(impl->device, "cuda");
  impl->backend = o.backend;
  if (impl->backend == "auto" || impl->backend.empty()) {
    impl->backend = on_gpu && BackendAvailable("nccl") ? "nccl" : "gloo";
  }
  if (impl->backend != "gloo" && impl->backend != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("data parallel: backend '", o.backend, "': expected gloo, nccl or auto"));
  }
  if (!BackendAvailable(impl->backend)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data parallel: this build has no ", impl->backend, " backend (",
        impl->backend == "nccl" ? "NCCL needs a CUDA libtorch with NCCL and a GPU"
                                : "Gloo needs libtorch with c10d Gloo and the gloo headers: apt install libgloo-dev",
        ")"));
  }
  if (impl->backend == "nccl" && !on_gpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("data parallel: the nccl backend needs a cuda device, not '", impl->device, "'"));
  }
  const std::string where =
      o.file_store_path.empty() ? absl::StrCat("tcp store ", o.store_host, ":", o.store_port)
                                : absl::StrCat("file store ", o.file_store_path);
  if (o.file_store_path.empty() && (o.store_port < 1 || o.store_port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data parallel: store port ", o.store_port,
        " (give a port, or start a StoreServer and pass its port, or a file store path)"));
  }
  try {
    if (!o.file_store_path.empty()) {
      impl->store = c10::make_intrusive<c10d::FileStore>(o.file_store_path, o.world_size);
    } else {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(o.store_port);
      so.isServer = o.host_store && o.rank == 0;
      so.waitWorkers = false;
      so.timeout = Millis(o.timeout_seconds);
      impl->store = c10::make_intrusive<c10d::TCPStore>(o.store_host, so);
    }
    if (!o.store_prefix.empty()) impl->store = c10::make_intrusive<c10d::PrefixStore>(o.store_prefix, impl->store);
    impl->store->setTimeout(Millis(o.timeout_seconds));
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("data parallel rank ", o.rank, ": ", where), e);
  }
  try {
#ifdef DGC_HAVE_NCCL
    if (impl->backend == "nccl") {
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = Millis(o.timeout_seconds);
      impl->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, o.rank, o.world_size, opts);
    }
#endif
#ifdef DGC_HAVE_GLOO
    if (impl->backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(Millis(o.timeout_seconds));
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.interface_host));
      impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, o.rank, o.world_size, opts);
    }
#endif
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("data parallel rank ", o.rank, " of ", o.world_size, " (", impl->backend,
                                      ", ", where, ")"),
                         e);
  }
  return std::unique_ptr<DataParallelGroup>(new DataParallelGroup(std::move(impl)));
}

// ---------------------------------------------------------------------------

StatusOr<std::vector<std::string>> ResolveDevices(const std::string& spec) {
  const int gpus = static_cast<int>(CudaDevices().size());
  std::vector<std::string> all;
  for (int i = 0; i < gpus; ++i) all.push_back(absl::StrCat("cuda:", i));
  const std::string s(absl::StripAsciiWhitespace(spec));
  const std::string none = " (this libtorch has no CUDA, or no GPU is visible to this process); use cpu or auto";
  if (s.empty() || s == "auto") return gpus > 0 ? all : std::vector<std::string>{"cpu"};
  if (s == "cuda") {
    if (gpus == 0) return absl::FailedPreconditionError(absl::StrCat("device 'cuda': no GPU here", none));
    return all;
  }
  std::vector<std::string> out;
  std::set<int> seen;
  int cpus = 0;
  for (absl::string_view item : absl::StrSplit(s, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item == "cpu") {
      out.emplace_back("cpu");
      ++cpus;
      continue;
    }
    int index = -1;
    if (absl::ConsumePrefix(&item, "cuda:") && absl::SimpleAtoi(item, &index) && index >= 0) {
      if (index >= gpus) {
        return absl::FailedPreconditionError(absl::StrCat("device 'cuda:", index, "': this process sees ", gpus,
                                                          " GPU(s)", gpus == 0 ? none : ""));
      }
      if (!seen.insert(index).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("device 'cuda:", index, "' listed twice in '", s, "' (one rank per GPU)"));
      }
      out.push_back(absl::StrCat("cuda:", index));
      continue;
    }
    if (item == "cuda" || item == "auto") {
      return absl::InvalidArgumentError(absl::StrCat("device '", s, "': '", std::string(item),
                                                     "' stands alone; in a list name each GPU as cuda:N"));
    }
    return absl::InvalidArgumentError(absl::StrCat("device '", s,
                                                   "': expected auto, cpu, cuda, cuda:N or a comma list of cpu and "
                                                   "cuda:N (e.g. cuda:0,cuda:1)"));
  }
  if (cpus > 0 && !seen.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("device '", s, "': CPU and GPU ranks do not mix"));
  }
  return out;
}

// --- Training sessions -------------------------------------------------------

nlohmann::json TrainOptionsToJson(const TrainOptions& o) {
  return {{"max_steps", o.max_steps},       {"max_seconds", o.max_seconds},   {"batch_size", o.batch_size},
          {"learning_rate", o.learning_rate}, {"weight_decay", o.weight_decay}, {"lora_rank", o.lora_rank},
          {"seed", o.seed},                 {"warmup_steps", o.warmup_steps}, {"grad_clip", o.grad_clip},
          {"lora_alpha", o.lora_alpha},     {"lora_targets", o.lora_targets}, {"lora_train_a", o.lora_train_a},
          {"precision", o.precision}};
}

StatusOr<TrainOptions> TrainOptionsFromJson(const nlohmann::json& j) {
  TrainOptions o;
  try {
    o.max_steps = j.at("max_steps").get<int32_t>();
    o.max_seconds = j.at("max_seconds").get<double>();
    o.batch_size = j.at("batch_size").get<int32_t>();
    o.learning_rate = j.at("learning_rate").get<double>();
    o.weight_decay = j.at("weight_decay").get<double>();
    o.lora_rank = j.at("lora_rank").get<int32_t>();
    o.seed = j.at("seed").get<uint64_t>();
    o.warmup_steps = j.at("warmup_steps").get<int32_t>();
    o.grad_clip = j.at("grad_clip").get<double>();
    o.lora_alpha = j.at("lora_alpha").get<double>();
    o.lora_targets = j.at("lora_targets").get<std::vector<std::string>>();
    o.lora_train_a = j.at("lora_train_a").get<bool>();
    o.precision = j.at("precision").get<std::string>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("training options: ", e.what()));
  }
  return o;
}

namespace {

// Rank 0's bytes to every rank (size first, then the bytes).
Status BroadcastBytes(DataParallelGroup& g, std::string* bytes) {
  const torch::Device dev = g.backend() == "nccl" ? torch::Device(g.device()) : torch::Device(torch::kCPU);
  try {
    at::Tensor n = torch::full({1}, static_cast<int64_t>(bytes->size()), torch::dtype(torch::kInt64)).to(dev);
    DGC_RETURN_IF_ERROR(internal::BroadcastInPlace(g, n, 0));
    const int64_t size = n.to(torch::kCPU).item<int64_t>();
    if (size < 0 || size > (int64_t{1} << 34)) {
      return absl::DataLossError(absl::StrCat("session message of ", size, " bytes"));
    }
    if (size == 0) {
      bytes->clear();
      return absl::OkStatus();
    }
    at::Tensor b = g.rank() == 0
                       ? torch::from_blob(bytes->data(), {size}, torch::dtype(torch::kUInt8)).clone().to(dev)
                       : torch::empty({size}, torch::dtype(torch::kUInt8).device(dev));
    DGC_RETURN_IF_ERROR(internal::BroadcastInPlace(g, b, 0));
    if (g.rank() != 0) {
      at::Tensor c = b.to(torch::kCPU).contiguous();
      bytes->assign(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(size));
    }
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("session broadcast (rank ", g.rank(), ")"), e);
  }
  return absl::OkStatus();
}

std::string EncodeSequences(const std::vector<std::vector<Token>>& seqs) {
  std::string out;
  auto put = [&out](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put(static_cast<uint32_t>(seqs.size()));
  for (const auto& s : seqs) put(static_cast<uint32_t>(s.size()));
  for (const auto& s : seqs) out.append(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(Token));
  return out;
}

StatusOr<std::vector<std::vector<Token>>> DecodeSequences(const std::string& in) {
  size_t p = 0;
  auto get = [&](uint32_t* v) {
    if (in.size() - p < 4) return false;
    std::memcpy(v, in.data() + p, 4);
    p += 4;
    return true;
  };
  uint32_t n = 0;
  if (!get(&n) || n > (in.size() - p) / 4) return absl::DataLossError("session sequences: bad count");
  std::vector<uint32_t> lens(n);
  for (auto& l : lens) {
    if (!get(&l)) return absl::DataLossError("session sequences: truncated lengths");
  }
  std::vector<std::vector<Token>> seqs(n);
  for (uint32_t i = 0; i < n; ++i) {
    const size_t bytes = size_t{lens[i]} * sizeof(Token);
    if (in.size() - p < bytes) return absl::DataLossError("session sequences: truncated tokens");
    seqs[i].resize(lens[i]);
    std::memcpy(seqs[i].data(), in.data() + p, bytes);
    p += bytes;
  }
  if (p != in.size()) return absl::DataLossError("session sequences: trailing bytes");
  return seqs;
}

// The error to report of two (either may be OK): a rank that failed on its
// own before one that timed out waiting for it.
Status Cause(const Status& a, const Status& b) {
  if (a.ok()) return b;
  if (b.ok() || !absl::IsDeadlineExceeded(a) || absl::IsDeadlineExceeded(b)) return a;
  return b;
}

DistributedOptions RankOptions(const SessionOptions& s, int32_t local) {
  DistributedOptions d;
  d.rank = s.first_rank + local;
  d.world_size = s.world_size;
  d.backend = "auto";
  d.device = s.devices[local];
  d.store_host = s.store_host;
  d.store_port = s.store_port;
  d.host_store = false;
  d.store_prefix = s.store_prefix;
  d.interface_host = s.interface_host;
  d.timeout_seconds = s.timeout_seconds;
  return d;
}

Status CheckSession(const SessionOptions& s) {
  if (s.devices.empty()) return absl::InvalidArgumentError("training session: no device");
  if (s.first_rank < 0 || s.world_size < 1 ||
      s.first_rank + static_cast<int64_t>(s.devices.size()) > s.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("training session: ranks ", s.first_rank, "..",
                                                   s.first_rank + s.devices.size() - 1, " outside world size ",
                                                   s.world_size));
  }
  return absl::OkStatus();
}

// Serves rounds on a joined group until rank 0 ends the session.
StatusOr<int> ServeRounds(DataParallelGroup& g) {
  int rounds = 0;
  for (;;) {
    std::string control;
    DGC_RETURN_IF_ERROR(BroadcastBytes(g, &control));
    auto j = nlohmann::json::parse(control, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return absl::DataLossError("session: unreadable round header");
    if (j.value("op", "") == "end") return rounds;
    DGC_ASSIGN_OR_RETURN(TrainOptions t, TrainOptionsFromJson(j.value("options", nlohmann::json::object())));
    std::string model_bytes, seq_bytes;
    DGC_RETURN_IF_ERROR(BroadcastBytes(g, &model_bytes));
    DGC_RETURN_IF_ERROR(BroadcastBytes(g, &seq_bytes));
    DGC_ASSIGN_OR_RETURN(auto seqs, DecodeSequences(seq_bytes));
    DGC_ASSIGN_OR_RETURN(auto model, FlowModel::FromBytes(model_bytes, "session round"));
    std::optional<FlowTokenizer> tok;
    if (j.contains("tokenizer")) {
      DGC_ASSIGN_OR_RETURN(TokenizerConfig tc, TokenizerConfig::FromJson(j["tokenizer"]));
      tok.emplace(tc);
      t.grammar = &*tok;
    }
    t.device = g.device();
    t.data_parallel = &g;
    DGC_ASSIGN_OR_RETURN(TrainStats st, model->Train(seqs, t));
    (void)st;
    ++rounds;
  }
}

// The local ranks after the first, each on its own thread.
class LocalRanks {
 public:
  void Start(const SessionOptions& s, int32_t from_local) {
    results_.assign(s.devices.size(), StatusOr<int>(0));
    for (int32_t l = from_local; l < static_cast<int32_t>(s.devices.size()); ++l) {
      threads_.emplace_back([this, s, l] {
        auto group = DataParallelGroup::Create(RankOptions(s, l));
        if (!group.ok()) {
          results_[l] = group.status();
          return;
        }
        results_[l] = ServeRounds(**group);
      });
    }
  }
  // Joins; the first error, or the rounds of `local`.
  StatusOr<int> Join(const SessionOptions& s, int32_t local) {
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (size_t l = 0; l < results_.size(); ++l) {
      if (!results_[l].ok()) {
        return Status(results_[l].status().code(),
                      absl::StrCat("rank ", s.first_rank + l, " on ", s.devices[l], ": ", results_[l].status().message()));
      }
    }
    return results_.empty() ? 0 : *results_[local];
  }
  ~LocalRanks() {
    for (auto& t : threads_) t.join();
  }

 private:
  std::vector<std::thread> threads_;
  std::vector<StatusOr<int>> results_;
};

}  // namespace

struct TrainingSession::Impl {
  SessionOptions options;
  LocalRanks local;
  std::unique_ptr<DataParallelGroup> group;  // rank 0
  bool finished = false;
};

TrainingSession::TrainingSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TrainingSession::~TrainingSession() {
  // No logging here: this file builds without spdlog on the GPU bench's
  // fallback path. A caller that cares about the helpers' errors calls Finish.
  if (impl_ && !impl_->finished) (void)Finish();
}

int32_t TrainingSession::world_size() const { return impl_->options.world_size; }

StatusOr<std::unique_ptr<TrainingSession>> TrainingSession::Lead(const SessionOptions& options) {
  DGC_RETURN_IF_ERROR(CheckSession(options));
  if (options.first_rank != 0) return absl::InvalidArgumentError("training session: only rank 0 leads");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->local.Start(options, 1);
  auto group = DataParallelGroup::Create(RankOptions(options, 0));
  if (!group.ok()) {
    // The local ranks wait for a rank 0 that will not come: they time out.
    (void)impl->local.Join(options, 0);
    return group.status();
  }
  impl->group = *std::move(group);
  return std::unique_ptr<TrainingSession>(new TrainingSession(std::move(impl)));
}

StatusOr<TrainStats> TrainingSession::Train(FlowModel& model, const std::vector<std::vector<Token>>& sequences,
                                            const TrainOptions& options) {
  if (impl_->finished) return absl::FailedPreconditionError("training session already finished");
  DataParallelGroup& g = *impl_->group;
  nlohmann::json round = {{"op", "train"}, {"options", TrainOptionsToJson(options)}};
  // Every rank scores the same loss: the grammar travels as its tokenizer's
  // configuration (the only grammar compress trains with).
  TrainOptions t = options;
  if (options.grammar != nullptr) {
    const auto* tok = dynamic_cast<const FlowTokenizer*>(options.grammar);
    if (tok != nullptr) {
      round["tokenizer"] = tok->config().ToJson();
    } else {
      t.grammar = nullptr;  // no way to send it: the whole-vocabulary loss on every rank
    }
  }
  std::string control = round.dump();
  std::string model_bytes = model.ToBytes();
  std::string seq_bytes = EncodeSequences(sequences);
  DGC_RETURN_IF_ERROR(BroadcastBytes(g, &control));
  DGC_RETURN_IF_ERROR(BroadcastBytes(g, &model_bytes));
  DGC_RETURN_IF_ERROR(BroadcastBytes(g, &seq_bytes));
  t.device = impl_->options.devices[0];
  t.data_parallel = &g;
  return model.Train(sequences, t);
}

Status TrainingSession::Finish() {
  if (impl_->finished) return absl::OkStatus();
  impl_->finished = true;
  std::string end = R"({"op":"end"})";
  Status st = BroadcastBytes(*impl_->group, &end);
  auto local = impl_->local.Join(impl_->options, 0);
  return Cause(local.status(), st);
}

StatusOr<int> ServeSession(const SessionOptions& options) {
  DGC_RETURN_IF_ERROR(CheckSession(options));
  if (options.first_rank == 0) return absl::InvalidArgumentError("training session: rank 0 leads, it does not serve");
  LocalRanks local;
  local.Start(options, 0);
  return local.Join(options, 0);
}

StatusOr<TrainStats> TrainOnDevices(FlowModel& model, const std::vector<std::vector<Token>>& sequences,
                                    const TrainOptions& options, const std::vector<std::string>& devices,
                                    double timeout_seconds) {
  if (devices.empty()) return absl::InvalidArgumentError("data parallel: no device to train on");
  TrainOptions one = options;
  one.data_parallel = nullptr;
  if (devices.size() == 1) {
    one.device = devices[0];
    return model.Train(sequences, one);
  }
  // A one-round session whose ranks all live here, meeting at a store on a
  // port the system chose.
  DGC_ASSIGN_OR_RETURN(auto server, StoreServer::Start("127.0.0.1", 0, timeout_seconds));
  SessionOptions so;
  so.store_port = server->port();
  so.world_size = static_cast<int32_t>(devices.size());
  so.devices = devices;
  so.timeout_seconds = timeout_seconds;
  DGC_ASSIGN_OR_RETURN(auto session, TrainingSession::Lead(so));
  StatusOr<TrainStats> stats = session->Train(model, sequences, one);
  Status done = session->Finish();
  if (!stats.ok()) return Cause(stats.status(), done);
  if (!done.ok()) return done;
  return stats;
}

namespace internal {

Status AllReduceSumInPlace(DataParallelGroup& group, at::Tensor& t) {
  if (group.world_size() == 1) return absl::OkStatus();
  return group.impl().Run("all-reduce", t, [](auto& pg, std::vector<at::Tensor>& v) {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    return pg.allreduce(v, opts);
  });
}

Status BroadcastInPlace(DataParallelGroup& group, at::Tensor& t, int root) {
  if (group.world_size() == 1) return absl::OkStatus();
  return group.impl().Run("broadcast", t, [root](auto& pg, std::vector<at::Tensor>& v) {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    return pg.broadcast(v, opts);
  });
}

}  // namespace internal
}  // namespace dgc::model

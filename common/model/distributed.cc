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
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#ifdef DGC_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef DGC_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
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

StatusOr<TrainStats> TrainOnDevices(FlowModel& model, const std::vector<std::vector<Token>>& sequences,
                                    const TrainOptions& options, const std::vector<std::string>& devices,
                                    double timeout_seconds) {
  if (devices.empty()) return absl::InvalidArgumentError("data parallel: no device to train on");
  TrainOptions one = options;
  one.data_parallel = nullptr;
  const int world = static_cast<int>(devices.size());
  if (world == 1) {
    one.device = devices[0];
    return model.Train(sequences, one);
  }
  DGC_ASSIGN_OR_RETURN(auto server, StoreServer::Start("127.0.0.1", 0, timeout_seconds));
  // The other ranks' copies: their weights are replaced by rank 0's in the
  // first broadcast, so a copy only needs the right shapes.
  std::vector<std::unique_ptr<FlowModel>> copies;
  for (int r = 1; r < world; ++r) {
    DGC_ASSIGN_OR_RETURN(auto copy, model.Clone());
    copies.push_back(std::move(copy));
  }
  std::vector<StatusOr<TrainStats>> results(world, absl::UnknownError("rank did not run"));
  const int port = server->port();
  auto run_rank = [&](int r) {
    DistributedOptions d;
    d.rank = r;
    d.world_size = world;
    d.backend = "auto";
    d.device = devices[r];
    d.store_port = port;
    d.host_store = false;
    d.timeout_seconds = timeout_seconds;
    auto group = DataParallelGroup::Create(d);
    if (!group.ok()) {
      results[r] = group.status();
      return;
    }
    TrainOptions t = one;
    t.device = devices[r];
    t.data_parallel = group->get();
    results[r] = (r == 0 ? model : *copies[r - 1]).Train(sequences, t);
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < world; ++r) threads.emplace_back(run_rank, r);
  run_rank(0);
  for (auto& t : threads) t.join();
  // The cause first: a rank that failed on its own, not one that timed out
  // waiting for it.
  int culprit = -1;
  for (int r = 0; r < world; ++r) {
    if (results[r].ok()) continue;
    if (culprit < 0 || (absl::IsDeadlineExceeded(results[culprit].status()) &&
                        !absl::IsDeadlineExceeded(results[r].status()))) {
      culprit = r;
    }
  }
  if (culprit >= 0) {
    const Status& st = results[culprit].status();
    return Status(st.code(), absl::StrCat("data-parallel training, rank ", culprit, " of ", world, " on ",
                                          devices[culprit], ": ", st.message()));
  }
  return results[0];
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

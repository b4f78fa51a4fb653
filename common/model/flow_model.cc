// FlowModel's devices, lifecycle (create, load, save, clone), deltas and
// CPU set-up. flow_model_internal.h describes the state; training and
// sampling are flow_model_train.cc and flow_model_sample.cc.
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#ifdef DGC_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/model/flow_model.h"
#include "common/model/flow_model_internal.h"

namespace dgc::model {
namespace internal {

StatusOr<torch::Device> ParseDevice(const std::string& name) {
  if (name.empty() || name == "cpu") return torch::Device(torch::kCPU);
  if (name == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device '", name,
          "': this build's libtorch has no CUDA (Debian's libtorch is CPU-only; build against a CUDA "
          "libtorch as tests/bench/gpu/README.md shows, or use --device cpu or auto)"));
    }
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device '", name, "': libtorch has CUDA but sees no GPU on this machine (driver, "
          "CUDA_VISIBLE_DEVICES; use --device cpu or auto)"));
    }
    try {
      torch::Device d(name);
      if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count())) {
        return absl::InvalidArgumentError(absl::StrCat("device '", name, "': only ",
                                                       torch::cuda::device_count(), " CUDA devices"));
      }
      return d;
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("device '", name, "': ", e.what()));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device '", name, "': expected cpu, cuda, cuda:N or auto"));
}

std::string DeviceName(const torch::Device& d) {
  if (d.is_cpu()) return "cpu";
  return d.has_index() ? absl::StrCat("cuda:", static_cast<int>(d.index())) : std::string("cuda:0");
}

// Compute capability major of a CUDA device, read through the CUDA runtime
// that a CUDA libtorch has loaded (no CUDA headers needed); -1 if unknown.
int CudaComputeMajor(int index) {
  using GetAttr = int (*)(int*, int, int);  // cudaDeviceGetAttribute(value, attr, device)
  auto f = reinterpret_cast<GetAttr>(dlsym(RTLD_DEFAULT, "cudaDeviceGetAttribute"));
  if (f == nullptr) return -1;
  int major = -1;
  constexpr int kCudaDevAttrComputeCapabilityMajor = 75;
  if (f(&major, kCudaDevAttrComputeCapabilityMajor, index) != 0) return -1;
  return major;
}

StatusOr<torch::ScalarType> ResolvePrecision(const std::string& p, const torch::Device& device) {
  if (p == "fp32") return torch::kFloat32;
  if (p == "bf16") return torch::kBFloat16;
  if (p != "auto" && !p.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("Train: precision '", p, "': expected auto, fp32 or bf16"));
  }
  if (device.is_cpu()) return torch::kFloat32;
  const int major = CudaComputeMajor(device.has_index() ? device.index() : 0);
  if (major >= 0 && major < 8) return torch::kFloat32;  // no bf16 tensor cores (V100, T4)
  // Unknown capability: use bf16 if a bf16 product runs on the device.
  try {
    Tensor a = torch::ones({8, 8}, torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    (void)torch::mm(a, a).sum().item<float>();
    return torch::kBFloat16;
  } catch (const std::exception&) {
    return torch::kFloat32;
  }
}

std::string FirstLine(const char* what) {
  std::string s(what);
  size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::mutex SingleThreadedBlas::mu_;
int SingleThreadedBlas::users_ = 0;
int SingleThreadedBlas::saved_ = 0;

// CPUs this process may use (its affinity mask).
int UsableCpuCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Sequences as a padded int64 matrix [n, max_len] (kPad after each end).
Tensor PadSequences(const std::vector<std::vector<Token>>& seqs, int64_t max_len) {
  Tensor t = torch::full({static_cast<int64_t>(seqs.size()), max_len}, kPad, torch::kInt64);
  int64_t* p = t.data_ptr<int64_t>();
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (size_t j = 0; j < seqs[i].size(); ++j) p[i * max_len + j] = seqs[i][j];
  }
  return t;
}


}  // namespace internal

using internal::Clock;
using internal::Guarded;
using internal::SecondsSince;
using internal::Tensor;
using internal::DeviceName;
using internal::OpenBlasGetInt;
using internal::OpenBlasSetThreads;
using internal::ParseDevice;

nlohmann::json TrainStats::ToJson() const {
  nlohmann::json j{{"steps", steps},           {"seconds", seconds},
                        {"first_loss", first_loss}, {"final_loss", final_loss},
                        {"tokens", tokens},         {"tokens_per_second", tokens_per_second}};
  // Only what differs from a one-process fp32 CPU run: reports are stored.
  if (!device.empty() && device != "cpu") j["device"] = device;
  if (!precision.empty() && precision != "fp32") j["precision"] = precision;
  if (world_size > 1) j["world_size"] = world_size;
  return j;
}

// ---------------------------------------------------------------------------
// Lifecycle.

FlowModel::FlowModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FlowModel::~FlowModel() = default;

const NetworkConfig& FlowModel::config() const { return impl_->config; }
int64_t FlowModel::parameter_count() const { return impl_->layout.total; }
std::string FlowModel::device() const { return DeviceName(impl_->device); }

Status FlowModel::To(const std::string& device) {
  DGC_ASSIGN_OR_RETURN(torch::Device dev, ParseDevice(device));
  return Guarded("FlowModel::To", [&]() -> Status {
    impl_->MoveTo(dev);
    return absl::OkStatus();
  });
}

StatusOr<std::unique_ptr<FlowModel>> FlowModel::Create(const NetworkConfig& config, uint64_t seed,
                                                       const std::string& device) {
  DGC_RETURN_IF_ERROR(ValidateConfig(config));
  DGC_ASSIGN_OR_RETURN(torch::Device dev, ParseDevice(device));
  return Guarded("FlowModel::Create", [&]() -> StatusOr<std::unique_ptr<FlowModel>> {
    auto impl = std::make_unique<Impl>();
    impl->config = config;
    impl->device = dev;
    impl->layout = MakeLayout(config);
    std::vector<float> init = InitialWeights(config, impl->layout, seed);
    impl->SetFlat(torch::from_blob(init.data(), {impl->layout.total}, torch::kFloat32).to(dev, /*non_blocking=*/false, /*copy=*/true));
    return std::unique_ptr<FlowModel>(new FlowModel(std::move(impl)));
  });
}

StatusOr<std::unique_ptr<FlowModel>> FlowModel::Load(const std::string& path, const std::string& device) {
  DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return FromBytes(bytes, path, device);
}

StatusOr<std::unique_ptr<FlowModel>> FlowModel::FromBytes(const std::string& bytes, const std::string& name,
                                                          const std::string& device) {
  DGC_ASSIGN_OR_RETURN(Checkpoint ck, DecodeCheckpoint(bytes, name));
  DGC_ASSIGN_OR_RETURN(torch::Device dev, ParseDevice(device));
  return Guarded("FlowModel::FromBytes", [&]() -> StatusOr<std::unique_ptr<FlowModel>> {
    auto impl = std::make_unique<Impl>();
    impl->config = ck.config;
    impl->device = dev;
    impl->layout = std::move(ck.layout);
    impl->SetFlat(
        torch::from_blob(ck.weights.data(), {impl->layout.total}, torch::kFloat32).to(dev, false, true));
    return std::unique_ptr<FlowModel>(new FlowModel(std::move(impl)));
  });
}

std::string FlowModel::ToBytes() const {
  try {
    return impl_->Serialize();
  } catch (const std::exception& e) {
    // Only a device failure can get here; an empty string fails every reader.
    return std::string();
  }
}

Status FlowModel::Save(const std::string& path) const {
  std::string bytes = ToBytes();
  if (bytes.empty()) return absl::InternalError(absl::StrCat("cannot serialise the model for ", path));
  return WriteFileAtomic(path, bytes);
}

StatusOr<std::unique_ptr<FlowModel>> FlowModel::Clone() const {
  return Guarded("FlowModel::Clone", [&]() -> StatusOr<std::unique_ptr<FlowModel>> {
    torch::NoGradGuard ng;
    auto impl = std::make_unique<Impl>();
    const Impl& s = *impl_;
    impl->config = s.config;
    impl->device = s.device;
    impl->layout = s.layout;
    impl->SetFlat(s.flat.detach().clone());
    impl->lora = s.lora;
    if (s.lora_flat.defined()) impl->lora_flat = s.lora_flat.detach().clone();
    impl->lora_a_from_seed = s.lora_a_from_seed;
    impl->lora_seed = s.lora_seed;
    impl->trained = s.trained;
    impl->trained_rank = s.trained_rank;
    impl->parent_hash = s.parent_hash;
    if (s.start_flat.defined()) impl->start_flat = s.start_flat.clone();
    return std::unique_ptr<FlowModel>(new FlowModel(std::move(impl)));
  });
}

// ---------------------------------------------------------------------------
// Deltas.

StatusOr<std::string> FlowModel::ExportDelta(const DeltaOptions& options) const {
  const Impl& m = *impl_;
  if (!m.trained) return absl::FailedPreconditionError("ExportDelta: the model has not been trained");
  if (m.trained_rank > 0 && !m.HasAdapters()) {
    return absl::FailedPreconditionError("ExportDelta: the adapters of the last Train are gone");
  }
  return Guarded("FlowModel::ExportDelta", [&]() -> StatusOr<std::string> {
    if (m.trained_rank > 0) {
      return EncodeLoraDelta(m.lora, m.FlatCpu(m.lora_flat), m.lora_a_from_seed, m.lora_seed, m.parent_hash,
                             options.zstd_level);
    }
    std::vector<float> now = m.FlatCpu(m.flat), before = m.FlatCpu(m.start_flat);
    for (size_t i = 0; i < now.size(); ++i) now[i] -= before[i];
    return EncodeFullDelta(m.layout, now, m.parent_hash, options.zstd_level);
  });
}

Status FlowModel::ApplyDelta(const std::string& delta, const std::string& name) {
  Impl& m = *impl_;
  DGC_ASSIGN_OR_RETURN(const DeltaHeader h, ParseDelta(delta, name, m.layout.total));
  return Guarded("FlowModel::ApplyDelta", [&]() -> Status {
    m.FoldAdapters();
    std::vector<float> base = m.FlatCpu(m.flat);
    const uint64_t have = HashWeights(m.layout, base.data());
    if (have != h.parent_hash) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "delta %s was made from parent model %016x, but this model is %016x: apply it to the "
          "model it was trained from",
          name, h.parent_hash, have));
    }
    DGC_RETURN_IF_ERROR(ApplyDeltaPayload(h, name, m.config, m.layout, &base));
    m.LoadFlat(base);
    m.trained = false;
    m.start_flat = Tensor();
    return absl::OkStatus();
  });
}

Status FlowModel::AdoptDelta(const std::string& delta, const std::string& name) {
  Impl& m = *impl_;
  if (!m.trained) return absl::FailedPreconditionError("AdoptDelta: the model has not been trained");
  DGC_RETURN_IF_ERROR(Guarded("FlowModel::AdoptDelta", [&]() -> Status {
    torch::NoGradGuard ng;
    if (m.trained_rank > 0) {
      m.DropAdapters();
    } else {
      m.flat.copy_(m.start_flat);
    }
    return absl::OkStatus();
  }));
  return ApplyDelta(delta, name);
}

// ---------------------------------------------------------------------------
// CPU threads.

namespace {
using OpenBlasGetStr = char* (*)();
}  // namespace

std::vector<CudaDeviceInfo> CudaDevices() {
  std::vector<CudaDeviceInfo> out;
  if (!torch::cuda::is_available()) return out;
  const int n = static_cast<int>(torch::cuda::device_count());
  for (int i = 0; i < n; ++i) {
    CudaDeviceInfo d;
    d.index = i;
#ifdef DGC_TORCH_CUDA
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
    d.name = p->name;
    d.memory_bytes = p->totalGlobalMem;
#else
    d.name = "cuda:" + std::to_string(i);
#endif
    out.push_back(std::move(d));
  }
  return out;
}

void ConfigureCpuThreads(int intra_op_threads) {
  // glibc hands out blocks over its mmap threshold (at most 32 MiB) by mmap
  // and unmaps them at free, so the ~100 MB tensors of every training step
  // (logits over the vocabulary) were faulted in and zeroed afresh each time:
  // compressing the 1M bench trace spent 199 of its 389 CPU-s in the kernel.
  // Served from the heap, never trimmed, they are reused: 1,200 s of it went
  // from 100 s to 54 s wall, 200 to 107 CPU-s, same output (peak RSS 1.6 GB).
  // An operator's MALLOC_* or GLIBC_TUNABLES settings win.
  if (std::getenv("MALLOC_MMAP_MAX_") == nullptr && std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr &&
      std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr && std::getenv("GLIBC_TUNABLES") == nullptr) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
  }
  // One torch intra-op thread: at this model size the per-op work is small
  // and a second OpenMP team spinning next to OpenBLAS's threads halves the
  // speed (measured). Matrix products still use every core through OpenBLAS.
  torch::set_num_threads(std::max(1, intra_op_threads));
  // OpenBLAS's idle threads spin (sched_yield) for 2^28 cycles, about 0.1 s,
  // before they sleep: between the products of a training step they never
  // sleep, and compressing the 1M bench trace spent 12 of its 73 CPU-s in
  // the kernel yielding. 2^18 cycles (~0.1 ms) still spans the gap between
  // one step's products: 61 CPU-s, the same wall time (DESIGN_NOTES, session
  // 16). The timeout is read when the pool starts (at load), so the pool is
  // stopped here and restarts at the next product with it. Once per process,
  // before any product runs; an operator's OPENBLAS_THREAD_TIMEOUT wins.
  static std::once_flag blas_timeout_once;
  std::call_once(blas_timeout_once, [] {
    if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr || std::getenv("GOTO_THREAD_TIMEOUT") != nullptr) return;
    auto read_env = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "openblas_read_env"));
    auto shutdown = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
    if (read_env == nullptr || shutdown == nullptr) return;
    setenv("OPENBLAS_THREAD_TIMEOUT", "18", 0);
    read_env();
    shutdown();
  });
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) {
    if (auto set = reinterpret_cast<OpenBlasSetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
      set(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    }
  }
}

double CpuMatmulGflops(int n) {
  try {
    torch::NoGradGuard ng;
    n = std::max(16, n);
    Tensor a = torch::rand({n, n}), b = torch::rand({n, n}), c = torch::empty({n, n});
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = Clock::now();
      int iters = 0;
      while (iters < 3 || SecondsSince(t0) < 0.05) {
        torch::mm_out(c, a, b);
        ++iters;
      }
      best = std::min(best, SecondsSince(t0) / iters);
    }
    return 2.0 * n * n * n / best / 1e9;
  } catch (const std::exception&) {
    return 0;
  }
}

bool CudaBuild() { return at::hasCUDA(); }

int CudaDeviceCount() {
  try {
    return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

std::string CpuBackendInfo() {
  std::string blas = at::hasMKL() ? "BLAS: MKL"
                                  : "BLAS: neither OpenBLAS nor MKL found (reference BLAS is ~14x slower: "
                                    "install libopenblas0-pthread)";
  if (auto cfg = reinterpret_cast<OpenBlasGetStr>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    auto core = reinterpret_cast<OpenBlasGetStr>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    auto threads = reinterpret_cast<OpenBlasGetInt>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    blas = absl::StrCat("BLAS: ", cfg(), core ? absl::StrCat(" core ", core()) : "",
                        threads ? absl::StrCat(", ", threads(), " threads") : "");
  }
  return absl::StrCat("libtorch ", TORCH_VERSION, ", intra-op threads ", torch::get_num_threads(), ", ",
                      torch::cuda::is_available() ? "CUDA available, " : "", blas);
}

}  // namespace dgc::model

// FlowModel in libtorch: the only dgc file that includes torch (see the
// header for why). Formats written here are documented in MODEL_FORMATS.md.
//
// Layout of the state:
//  - The base weights live in one flat float32 tensor on the device; every
//    named weight is a view into it. One flat buffer makes the optimizer a
//    handful of tensor ops per step (not a loop over ~30 tensors), lets the
//    gradient of every weight land in one flat gradient buffer, and makes
//    hashing, cloning and serialising one copy.
//  - Adapters (after a Train with lora_rank > 0) live the same way in their
//    own flat tensor; the effective weights are base + scale * B A, computed
//    once per Sample/Loss call (so sampling costs nothing extra) and per step
//    while training (cheap: out * in * rank flops per matrix).
//  - Everything a decoder must rebuild bit for bit (random inits that a delta
//    refers to by seed, merging a delta into weights) is computed with our own
//    RNG and plain C++ on the CPU, never with torch kernels whose rounding may
//    differ between devices, BLAS builds or libtorch versions.
#include "common/model/flow_model.h"

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <torch/torch.h>
#ifdef DGC_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/files.h"
#include "common/model/distributed.h"
#include "common/model/distributed_internal.h"

namespace dgc::model {
namespace {

using torch::Tensor;

static_assert(sizeof(float) == 4, "float32 weights");

bool LittleEndianHost() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

// ---------------------------------------------------------------------------
// Deterministic randomness, independent of libtorch's generators (whose
// streams are not promised stable across versions and devices): initial
// weights, adapter inits that a delta names by seed, batch order, and the
// per-token uniforms of the sampler.

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A counter-based hash of (seed, a, b): the sampler's uniform for sequence a
// at position b does not depend on how the sequences are batched.
uint64_t Mix3(uint64_t seed, uint64_t a, uint64_t b) {
  return SplitMix64(SplitMix64(SplitMix64(seed) ^ a) ^ (b * 0xd6e8feb86659fd93ULL));
}

class DetRng {
 public:
  explicit DetRng(uint64_t seed) : state_(SplitMix64(seed ^ 0x5851f42d4c957f2dULL)) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1).
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// ---------------------------------------------------------------------------
// Little-endian byte IO with bounds checks (files are untrusted input).

class ByteWriter {
 public:
  template <typename T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void PutBytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class ByteReader {
 public:
  ByteReader(const char* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  bool Get(T* v) {
    if (n_ - pos_ < sizeof(T)) return false;
    std::memcpy(v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(size_t n, const char** out) {
    if (n_ - pos_ < n) return false;
    *out = p_ + pos_;
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

 private:
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Network layout.

enum class Init { kNormal, kResidual, kZero, kOne };

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;
  int64_t numel = 0;
  Init init = Init::kNormal;
  bool decay = false;  // weight decay applies (matrices, not norms or biases)
};

// Adapter targets. Per block: the q, k and v projections (one fused [3W, W]
// matrix: one GEMM instead of three; their adapters touch its row blocks),
// o, and the MLP's two matrices. Once per model: the token embedding (the
// output head too when tied), and the output bias, a plain vector (token
// frequency shifts between chunks land there).
enum Target : int { kQ = 0, kK, kV, kO, kMlpIn, kMlpOut, kEmb, kHeadBias, kNumTargets };
constexpr int kNumBlockTargets = kEmb;
constexpr std::array<const char*, kNumTargets> kTargetNames = {"q", "k", "v", "o", "mlp_in",
                                                                "mlp_out", "emb", "head_bias"};

// Indexes of one block's weights in the layout.
struct BlockIdx {
  int ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, in_w, in_b, out_w, out_b;
};
struct LayoutIdx {
  int tok_emb, pos_emb, lnf_w, lnf_b, head_w = -1, head_b;
  std::vector<BlockIdx> blocks;
};

struct Layout {
  std::vector<ParamSpec> specs;
  LayoutIdx idx;
  int64_t total = 0;
};

Layout MakeLayout(const NetworkConfig& c) {
  Layout l;
  auto add = [&](std::string name, std::vector<int64_t> shape, Init init, bool decay) {
    ParamSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.numel = 1;
    for (int64_t d : s.shape) s.numel *= d;
    s.offset = l.total;
    s.init = init;
    s.decay = decay;
    l.total += s.numel;
    l.specs.push_back(std::move(s));
    return static_cast<int>(l.specs.size() - 1);
  };
  const int64_t w = c.width, m = static_cast<int64_t>(c.width) * c.mlp_ratio;
  l.idx.tok_emb = add("tok_emb", {c.vocab_size, w}, Init::kNormal, true);
  l.idx.pos_emb = add("pos_emb", {c.max_length, w}, Init::kNormal, false);
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = absl::StrCat("blocks.", i, ".");
    BlockIdx b;
    b.ln1_w = add(p + "ln1.weight", {w}, Init::kOne, false);
    b.ln1_b = add(p + "ln1.bias", {w}, Init::kZero, false);
    b.qkv_w = add(p + "attn.qkv.weight", {3 * w, w}, Init::kNormal, true);
    b.qkv_b = add(p + "attn.qkv.bias", {3 * w}, Init::kZero, false);
    b.o_w = add(p + "attn.o.weight", {w, w}, Init::kResidual, true);
    b.o_b = add(p + "attn.o.bias", {w}, Init::kZero, false);
    b.ln2_w = add(p + "ln2.weight", {w}, Init::kOne, false);
    b.ln2_b = add(p + "ln2.bias", {w}, Init::kZero, false);
    b.in_w = add(p + "mlp.in.weight", {m, w}, Init::kNormal, true);
    b.in_b = add(p + "mlp.in.bias", {m}, Init::kZero, false);
    b.out_w = add(p + "mlp.out.weight", {w, m}, Init::kResidual, true);
    b.out_b = add(p + "mlp.out.bias", {w}, Init::kZero, false);
    l.idx.blocks.push_back(b);
  }
  l.idx.lnf_w = add("ln_f.weight", {w}, Init::kOne, false);
  l.idx.lnf_b = add("ln_f.bias", {w}, Init::kZero, false);
  if (!c.tie_embeddings) l.idx.head_w = add("head.weight", {c.vocab_size, w}, Init::kNormal, true);
  l.idx.head_b = add("head.bias", {c.vocab_size}, Init::kZero, false);
  return l;
}

// The weights the forward pass reads (views, or merged copies).
struct BlockW {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, in_w, in_b, out_w, out_b;
};
struct NetW {
  Tensor tok_emb, pos_emb, lnf_w, lnf_b, head_w, head_b;
  std::vector<BlockW> blocks;
};

NetW Bind(const Layout& l, const std::vector<Tensor>& v) {
  NetW n;
  n.tok_emb = v[l.idx.tok_emb];
  n.pos_emb = v[l.idx.pos_emb];
  n.lnf_w = v[l.idx.lnf_w];
  n.lnf_b = v[l.idx.lnf_b];
  n.head_w = l.idx.head_w >= 0 ? v[l.idx.head_w] : v[l.idx.tok_emb];
  n.head_b = v[l.idx.head_b];
  for (const BlockIdx& b : l.idx.blocks) {
    n.blocks.push_back({v[b.ln1_w], v[b.ln1_b], v[b.qkv_w], v[b.qkv_b], v[b.o_w], v[b.o_b],
                        v[b.ln2_w], v[b.ln2_b], v[b.in_w], v[b.in_b], v[b.out_w], v[b.out_b]});
  }
  return n;
}

std::vector<Tensor> MakeViews(const Layout& l, const Tensor& flat) {
  std::vector<Tensor> v;
  v.reserve(l.specs.size());
  for (const ParamSpec& s : l.specs) v.push_back(flat.narrow(0, s.offset, s.numel).view(s.shape));
  return v;
}

// Adapter geometry: which layout matrix and which rows of it an adapter
// changes, and its A [rank, in] / B [out, rank] shapes.
// A vector adapter (head_bias) has no A: its "B" [out] is added as is.
struct AdapterSpec {
  int block = 0;        // 0 for the per-model targets
  Target target = kQ;
  bool vector = false;
  int matrix = 0;       // layout index of the base matrix (or vector)
  int64_t row0 = 0;     // first row of the base matrix it changes
  int64_t in = 0, out = 0;
  int64_t a_offset = 0, b_offset = 0;  // in the flat adapter buffer
};

struct LoraLayout {
  int32_t rank = 0;
  double scale = 0;
  std::vector<AdapterSpec> adapters;
  int64_t total = 0;
};

LoraLayout MakeLoraLayout(const NetworkConfig& c, const Layout& l, int32_t rank, double scale,
                          uint32_t target_mask) {
  LoraLayout ll;
  ll.rank = rank;
  ll.scale = scale;
  const int64_t w = c.width, m = static_cast<int64_t>(c.width) * c.mlp_ratio;
  auto add = [&](AdapterSpec a) {
    if (!a.vector) {
      a.a_offset = ll.total;
      ll.total += rank * a.in;
    }
    a.b_offset = ll.total;
    ll.total += a.out * (a.vector ? 1 : rank);
    ll.adapters.push_back(a);
  };
  for (int b = 0; b < c.depth; ++b) {
    const BlockIdx& bi = l.idx.blocks[b];
    for (int t = 0; t < kNumBlockTargets; ++t) {
      if (!(target_mask & (1u << t))) continue;
      AdapterSpec a;
      a.block = b;
      a.target = static_cast<Target>(t);
      switch (a.target) {
        case kQ: case kK: case kV:
          a.matrix = bi.qkv_w; a.row0 = t * w; a.in = w; a.out = w; break;
        case kO: a.matrix = bi.o_w; a.in = w; a.out = w; break;
        case kMlpIn: a.matrix = bi.in_w; a.in = w; a.out = m; break;
        case kMlpOut: a.matrix = bi.out_w; a.in = m; a.out = w; break;
        default: break;
      }
      add(a);
    }
  }
  if (target_mask & (1u << kEmb)) {
    AdapterSpec a;
    a.target = kEmb;
    a.matrix = l.idx.tok_emb;
    a.in = w;
    a.out = c.vocab_size;
    add(a);
  }
  if (target_mask & (1u << kHeadBias)) {
    AdapterSpec a;
    a.target = kHeadBias;
    a.vector = true;
    a.matrix = l.idx.head_b;
    a.out = c.vocab_size;
    add(a);
  }
  return ll;
}

// A's init, from a seed, in plain C++: Kaiming-uniform-like U(-1/sqrt(in),
// 1/sqrt(in)) as in common LoRA code. A delta that does not store A (lora_train_a
// false) names this seed, and the decoder must regenerate A bit for bit.
std::vector<float> AdapterAInit(uint64_t seed, const AdapterSpec& a, int32_t rank) {
  DetRng rng(Mix3(seed, static_cast<uint64_t>(a.block), static_cast<uint64_t>(a.target)));
  std::vector<float> v(static_cast<size_t>(rank * a.in));
  const double bound = 1.0 / std::sqrt(static_cast<double>(a.in));
  for (float& x : v) x = static_cast<float>((2.0 * rng.Uniform() - 1.0) * bound);
  return v;
}

// base[row0 + i, j] += scale * sum_k B[i, k] A[k, j], in double, on the CPU:
// the same bits on every machine, so a decoder reproduces the encoder's
// merged weights exactly (a chain of deltas depends on it).
void MergeAdapterCpu(float* base, int64_t base_cols, int64_t row0, const float* a,
                     const float* b, int64_t out, int64_t in, int32_t rank, double scale) {
  std::vector<double> acc(static_cast<size_t>(in));
  for (int64_t i = 0; i < out; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int32_t k = 0; k < rank; ++k) {
      const double bik = b[i * rank + k];
      const float* arow = a + k * in;
      for (int64_t j = 0; j < in; ++j) acc[j] += bik * static_cast<double>(arow[j]);
    }
    float* row = base + (row0 + i) * base_cols;
    for (int64_t j = 0; j < in; ++j) {
      row[j] = static_cast<float>(static_cast<double>(row[j]) + scale * acc[j]);
    }
  }
}

void AddVectorCpu(float* base, const float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) base[i] += d[i];
}

// Merges adapter `a` (its A and B, or its vector) into the flat base weights.
void MergeOneCpu(const Layout& l, const AdapterSpec& a, const float* av, const float* bv, int32_t rank,
                 double scale, float* base) {
  const ParamSpec& mat = l.specs[a.matrix];
  if (a.vector) {
    AddVectorCpu(base + mat.offset, bv, a.out);
  } else {
    MergeAdapterCpu(base + mat.offset, mat.shape[1], a.row0, av, bv, a.out, a.in, rank, scale);
  }
}

// ---------------------------------------------------------------------------
// int8 quantisation (symmetric, one float scale per tensor).

struct Quantized {
  float scale = 0;  // 0: all zeros, no data stored
  std::vector<int8_t> q;
};

Quantized Quantize(const float* x, int64_t n) {
  Quantized r;
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax > 0) || !std::isfinite(amax)) return r;
  r.scale = amax / 127.0f;
  r.q.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / r.scale);
    r.q[i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
  }
  return r;
}

void Dequantize(float scale, const int8_t* q, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale;
}

// ---------------------------------------------------------------------------
// Formats.

constexpr char kModelMagic[8] = {'D', 'G', 'C', 'M', 'O', 'D', 'E', 'L'};
constexpr uint32_t kModelVersion = 1;
constexpr char kDeltaMagic[8] = {'D', 'G', 'C', 'D', 'E', 'L', 'T', 'A'};
constexpr uint32_t kDeltaVersion = 1;
constexpr uint32_t kDeltaLora = 1;
constexpr uint32_t kDeltaFull = 2;
// Bounds on what a file may claim, checked before allocating.
constexpr uint32_t kMaxJsonBytes = 1 << 20;
constexpr uint32_t kMaxDeltaRawBytes = 1u << 30;

// XXH64 over names, shapes and float data of the weights, in layout order:
// identifies a parent model for its deltas.
uint64_t HashWeights(const Layout& l, const float* flat) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0x64676377656967ULL);
  for (const ParamSpec& s : l.specs) {
    XXH64_update(st, s.name.data(), s.name.size());
    for (int64_t d : s.shape) XXH64_update(st, &d, sizeof(d));
    XXH64_update(st, flat + s.offset, static_cast<size_t>(s.numel) * sizeof(float));
  }
  uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

Status ValidateConfig(const NetworkConfig& c) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("network config: ", what));
  };
  if (c.vocab_size < 3 || c.vocab_size > (1 << 22)) {
    return bad(absl::StrCat("vocab_size ", c.vocab_size, " outside [3, 4194304]"));
  }
  if (c.max_length < 2 || c.max_length > 65536) {
    return bad(absl::StrCat("max_length ", c.max_length, " outside [2, 65536]"));
  }
  if (c.width < 1 || c.width > 16384) return bad(absl::StrCat("width ", c.width, " outside [1, 16384]"));
  if (c.depth < 1 || c.depth > 256) return bad(absl::StrCat("depth ", c.depth, " outside [1, 256]"));
  if (c.heads < 1 || c.width % c.heads != 0) {
    return bad(absl::StrCat("heads ", c.heads, " must divide width ", c.width));
  }
  if (c.mlp_ratio < 1 || c.mlp_ratio > 64) {
    return bad(absl::StrCat("mlp_ratio ", c.mlp_ratio, " outside [1, 64]"));
  }
  const double params = static_cast<double>(MakeLayout(c).total);
  if (params > 2e9) return bad(absl::StrCat("too many parameters (", params, ")"));
  return absl::OkStatus();
}

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

// "fp32" or "bf16" for TrainOptions::precision on `device`.
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

// First line of a c10 error (the rest is a C++ backtrace).
std::string FirstLine(const char* what) {
  std::string s(what);
  size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// Runs `f`, turning libtorch exceptions into a Status: no exception escapes
// the adapter.
template <typename F>
auto Guarded(const char* op, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(op, ": libtorch: ", FirstLine(e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(op, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(op, ": ", FirstLine(e.what())));
  }
}

using OpenBlasSetThreads = void (*)(int);
using OpenBlasGetInt = int (*)();

// While any CPU sampling runs, OpenBLAS runs single-threaded:
// calls from several threads into a threaded OpenBLAS are serialised on its
// one thread pool, so two sampling threads were slower than one (229k vs 252k
// tokens/s on 2 cores), and with OpenBLAS at one thread they ran twice as
// fast as one (377k vs 187k). The setting is process-wide: training in
// another thread meanwhile runs with one BLAS thread too (slower, correct).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mu_);
    if (users_++ > 0 || !Set() || !Get()) return;
    saved_ = Get()();
    if (saved_ > 1) Set()(1);
  }
  ~SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--users_ == 0 && saved_ > 1 && Set()) Set()(saved_);
  }

 private:
  static OpenBlasSetThreads Set() {
    return reinterpret_cast<OpenBlasSetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  }
  static OpenBlasGetInt Get() {
    return reinterpret_cast<OpenBlasGetInt>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  }
  static std::mutex mu_;
  static int users_;  // GUARDED_BY(mu_)
  static int saved_;  // GUARDED_BY(mu_): the thread count to restore
};
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

using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Decode-step attention on the CPU, for one new query per (row, head) over
// the cached keys/values [B*H, L, Dh] (first `t` positions): hand-written
// because libtorch runs this as B*H tiny matrix products (8192 BLAS calls a
// layer at batch 2048), about 5x slower. kDh > 0 fixes the head width at
// compile time (unrolled, vectorised); 0 is the generic fallback.
template <int kDh>
void AttnScores(const float* __restrict q, const float* __restrict k, float* __restrict s, int64_t bh_n,
                int64_t len, int64_t t, float scale, int64_t dh_rt) {
  const int64_t dh = kDh > 0 ? kDh : dh_rt;
  float qv[kDh > 0 ? kDh : 1];
  std::vector<float> qdyn(kDh > 0 ? 0 : static_cast<size_t>(dh));
  float* qs = kDh > 0 ? qv : qdyn.data();
  for (int64_t bh = 0; bh < bh_n; ++bh) {
    const float* qq = q + bh * dh;
    const float* kb = k + bh * len * dh;
    float* ss = s + bh * t;
    for (int64_t d = 0; d < dh; ++d) qs[d] = qq[d] * scale;
    for (int64_t j = 0; j < t; ++j) {
      const float* kk = kb + j * dh;
      if constexpr (kDh > 0 && kDh % 4 == 0) {
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;  // four chains: no serial add dependency
        for (int d = 0; d < kDh; d += 4) {
          a0 += qs[d] * kk[d];
          a1 += qs[d + 1] * kk[d + 1];
          a2 += qs[d + 2] * kk[d + 2];
          a3 += qs[d + 3] * kk[d + 3];
        }
        ss[j] = (a0 + a1) + (a2 + a3);
      } else {
        float acc = 0;
        for (int64_t d = 0; d < dh; ++d) acc += qs[d] * kk[d];
        ss[j] = acc;
      }
    }
  }
}

template <int kDh>
void AttnMix(const float* __restrict p, const float* __restrict v, float* __restrict y, int64_t bh_n, int64_t len,
             int64_t t, int64_t dh_rt) {
  const int64_t dh = kDh > 0 ? kDh : dh_rt;
  float fixed[kDh > 0 ? kDh : 1];
  std::vector<float> dyn(kDh > 0 ? 0 : static_cast<size_t>(dh));
  float* acc = kDh > 0 ? fixed : dyn.data();
  for (int64_t bh = 0; bh < bh_n; ++bh) {
    const float* pp = p + bh * t;
    const float* vb = v + bh * len * dh;
    for (int64_t d = 0; d < dh; ++d) acc[d] = 0;
    for (int64_t j = 0; j < t; ++j) {
      const float w = pp[j];
      const float* vv = vb + j * dh;
      for (int64_t d = 0; d < dh; ++d) acc[d] += w * vv[d];
    }
    for (int64_t d = 0; d < dh; ++d) y[bh * dh + d] = acc[d];
  }
}

// Softmax over each row of [rows, t]. libtorch's costs ~80 ns a row whatever
// t is; a plain loop wins while rows are short.
void SoftmaxRows(Tensor& s) {
  const int64_t rows = s.size(0), t = s.size(1);
  if (t > 12) {
    s = torch::softmax(s, 1);
    return;
  }
  float* p = s.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float* x = p + r * t;
    float mx = x[0];
    for (int64_t j = 1; j < t; ++j) mx = std::max(mx, x[j]);
    float sum = 0;
    for (int64_t j = 0; j < t; ++j) {
      x[j] = std::exp(x[j] - mx);
      sum += x[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < t; ++j) x[j] *= inv;
  }
}

// qkv [B, 3W] contiguous (this step's q, k, v per row); k/v caches
// [B, H, L, Dh] contiguous. Writes this step's k and v at position t - 1 and
// returns the attention output [B, W] over positions [0, t).
Tensor CpuDecodeAttention(const Tensor& qkv, Tensor& kc, Tensor& vc, int64_t t, double scale) {
  const int64_t b = kc.size(0), h = kc.size(1), len = kc.size(2), dh = kc.size(3), bh = b * h, w = h * dh;
  const float* src = qkv.data_ptr<float>();
  float* kp = kc.data_ptr<float>();
  float* vp = vc.data_ptr<float>();
  Tensor q = torch::empty({b, w}, qkv.options());
  float* qp = q.data_ptr<float>();
  for (int64_t r = 0; r < b; ++r) {
    const float* row = src + r * 3 * w;
    std::memcpy(qp + r * w, row, w * sizeof(float));
    for (int64_t hh = 0; hh < h; ++hh) {
      const int64_t dst = ((r * h + hh) * len + (t - 1)) * dh;
      std::memcpy(kp + dst, row + w + hh * dh, dh * sizeof(float));
      std::memcpy(vp + dst, row + 2 * w + hh * dh, dh * sizeof(float));
    }
  }
  Tensor s = torch::empty({bh, t}, qkv.options());
  const float sc = static_cast<float>(scale);
  switch (dh) {
    case 8: AttnScores<8>(qp, kp, s.data_ptr<float>(), bh, len, t, sc, dh); break;
    case 16: AttnScores<16>(qp, kp, s.data_ptr<float>(), bh, len, t, sc, dh); break;
    case 32: AttnScores<32>(qp, kp, s.data_ptr<float>(), bh, len, t, sc, dh); break;
    default: AttnScores<0>(qp, kp, s.data_ptr<float>(), bh, len, t, sc, dh); break;
  }
  SoftmaxRows(s);
  const float* pp = s.data_ptr<float>();
  Tensor y = torch::empty({b, w}, qkv.options());
  switch (dh) {
    case 8: AttnMix<8>(pp, vp, y.data_ptr<float>(), bh, len, t, dh); break;
    case 16: AttnMix<16>(pp, vp, y.data_ptr<float>(), bh, len, t, dh); break;
    case 32: AttnMix<32>(pp, vp, y.data_ptr<float>(), bh, len, t, dh); break;
    default: AttnMix<0>(pp, vp, y.data_ptr<float>(), bh, len, t, dh); break;
  }
  return y;
}


}  // namespace

// ---------------------------------------------------------------------------
// Config JSON.

nlohmann::json NetworkConfig::ToJson() const {
  return nlohmann::json{{"vocab_size", vocab_size}, {"max_length", max_length},
                        {"width", width},           {"depth", depth},
                        {"heads", heads},           {"mlp_ratio", mlp_ratio},
                        {"tie_embeddings", tie_embeddings}};
}

StatusOr<NetworkConfig> NetworkConfig::FromJson(const nlohmann::json& j) {
  NetworkConfig c;
  try {
    if (!j.is_object()) return absl::InvalidArgumentError("network config: not a JSON object");
    c.vocab_size = j.at("vocab_size").get<int32_t>();
    c.max_length = j.at("max_length").get<int32_t>();
    c.width = j.at("width").get<int32_t>();
    c.depth = j.at("depth").get<int32_t>();
    c.heads = j.at("heads").get<int32_t>();
    c.mlp_ratio = j.value("mlp_ratio", 4);
    c.tie_embeddings = j.value("tie_embeddings", true);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("network config: ", e.what()));
  }
  DGC_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

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

struct FlowModel::Impl {
  NetworkConfig config;
  torch::Device device{torch::kCPU};
  Layout layout;
  Tensor flat;                 // base weights [layout.total], float32, on `device`
  std::vector<Tensor> views;   // named views into `flat`, layout order

  // Live adapters from the last Train with lora_rank > 0 (rank 0: none).
  LoraLayout lora;
  Tensor lora_flat;            // [lora.total] on `device`
  bool lora_a_from_seed = false;
  uint64_t lora_seed = 0;

  // What the last Train started from, for ExportDelta / AdoptDelta.
  bool trained = false;
  int32_t trained_rank = 0;
  uint64_t parent_hash = 0;
  Tensor start_flat;           // lora_rank 0 only: the weights before training

  std::map<int64_t, Tensor> causal_masks;  // by sequence length
  // Dtype of the matrix products in Hidden: float32, or bfloat16 while a
  // mixed-precision Train runs (weights and the residual stream stay fp32).
  torch::ScalarType compute = torch::kFloat32;

  void SetFlat(Tensor f) {
    flat = std::move(f);
    views = MakeViews(layout, flat);
  }
  bool HasAdapters() const { return lora.rank > 0 && lora_flat.defined(); }

  // Moves every tensor to `d`; all copies are made before any is swapped in,
  // so a failed copy (device out of memory) leaves the model as it was.
  void MoveTo(const torch::Device& d) {
    if (d == device) return;
    torch::NoGradGuard ng;
    Tensor nf = flat.to(d, /*non_blocking=*/false, /*copy=*/true);
    Tensor nl = lora_flat.defined() ? lora_flat.to(d, false, true) : Tensor();
    Tensor ns = start_flat.defined() ? start_flat.to(d, false, true) : Tensor();
    SetFlat(nf);
    lora_flat = nl;
    start_flat = ns;
    causal_masks.clear();
    device = d;
  }

  std::vector<float> FlatCpu(const Tensor& t) const {
    Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  void LoadFlat(const std::vector<float>& v) {
    Tensor c = torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                                torch::kFloat32);
    torch::NoGradGuard ng;
    flat.copy_(c);
  }

  // Folds live adapters into the base weights (deterministically, on the CPU)
  // and drops them: the effective weights become the base.
  void FoldAdapters() {
    if (!HasAdapters()) return;
    std::vector<float> base = FlatCpu(flat);
    MergeAdaptersInto(&base);
    LoadFlat(base);
    DropAdapters();
  }
  void MergeAdaptersInto(std::vector<float>* base) const {
    if (!HasAdapters()) return;
    std::vector<float> ad = FlatCpu(lora_flat);
    for (const AdapterSpec& a : lora.adapters) {
      MergeOneCpu(layout, a, ad.data() + a.a_offset, ad.data() + a.b_offset, lora.rank, lora.scale,
                  base->data());
    }
  }
  void DropAdapters() {
    lora = LoraLayout();
    lora_flat = Tensor();
  }

  // A and B of every live adapter, as views into lora_flat.
  void AdapterViews(std::vector<Tensor>* a, std::vector<Tensor>* b) const {
    a->clear();
    b->clear();
    for (const AdapterSpec& s : lora.adapters) {
      if (s.vector) {
        a->push_back(Tensor());
        b->push_back(lora_flat.narrow(0, s.b_offset, s.out));
      } else {
        a->push_back(lora_flat.narrow(0, s.a_offset, lora.rank * s.in).view({lora.rank, s.in}));
        b->push_back(lora_flat.narrow(0, s.b_offset, s.out * lora.rank).view({s.out, lora.rank}));
      }
    }
  }

  // The weights the network computes with: the base views plus scale * B A
  // for every adapter (differentiable in A and B when training).
  NetW EffectiveWith(const std::vector<Tensor>& a, const std::vector<Tensor>& b) const {
    NetW n = Bind(layout, views);
    // Per block, q/k/v deltas go into one [3W, W] delta for the fused matrix.
    const int64_t w = config.width;
    std::vector<std::array<Tensor, 3>> qkv(config.depth);
    for (size_t i = 0; i < lora.adapters.size(); ++i) {
      const AdapterSpec& s = lora.adapters[i];
      if (s.vector) {
        n.head_b = n.head_b + b[i];
        continue;
      }
      Tensor d = torch::mm(b[i], a[i]) * lora.scale;
      BlockW& bw = n.blocks[s.block];
      switch (s.target) {
        case kQ: case kK: case kV: qkv[s.block][s.target] = d; break;
        case kO: bw.o_w = bw.o_w + d; break;
        case kMlpIn: bw.in_w = bw.in_w + d; break;
        case kMlpOut: bw.out_w = bw.out_w + d; break;
        case kEmb:
          n.tok_emb = n.tok_emb + d;
          if (layout.idx.head_w < 0) n.head_w = n.tok_emb;  // tied head
          break;
        default: break;
      }
    }
    for (int blk = 0; blk < config.depth; ++blk) {
      if (!qkv[blk][0].defined() && !qkv[blk][1].defined() && !qkv[blk][2].defined()) continue;
      std::vector<Tensor> parts;
      for (int t = 0; t < 3; ++t) {
        parts.push_back(qkv[blk][t].defined() ? qkv[blk][t] : torch::zeros({w, w}, flat.options()));
      }
      n.blocks[blk].qkv_w = n.blocks[blk].qkv_w + torch::cat(parts, 0);
    }
    return n;
  }
  NetW Effective() const {
    if (!HasAdapters()) return Bind(layout, views);
    std::vector<Tensor> a, b;
    AdapterViews(&a, &b);
    return EffectiveWith(a, b);
  }

  const Tensor& CausalMask(int64_t t) {
    auto it = causal_masks.find(t);
    if (it != causal_masks.end()) return it->second;
    Tensor m = torch::ones({t, t}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
    return causal_masks.emplace(t, m).first->second;
  }

  // Full causal forward: tokens [B, T] int64 -> final hidden states [B, T, W].
  // Full forward pass -> final hidden states [B, T, W]. tokens [B, T]
  // int64. With `positions` ([B, T] int64) and `blocked` ([B, 1, T, T] bool,
  // true where a query may not attend a key) several sequences share a row
  // (packed training batches); without them each row is one sequence and
  // the mask is plain causal.
  Tensor Hidden(const NetW& n, const Tensor& tokens, const Tensor& positions = Tensor(),
                const Tensor& blocked = Tensor()) {
    const int64_t bsz = tokens.size(0), t = tokens.size(1);
    const int64_t w = config.width, h = config.heads, dh = w / h;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    Tensor x = torch::embedding(n.tok_emb, tokens) +
               (positions.defined() ? torch::embedding(n.pos_emb, positions) : n.pos_emb.narrow(0, 0, t));
    const Tensor& mask = blocked.defined() ? blocked : CausalMask(t);
    if (compute != torch::kFloat32) return HiddenMixed(n, x, mask);
    for (const BlockW& b : n.blocks) {
      Tensor y = torch::layer_norm(x, {w}, b.ln1_w, b.ln1_b, 1e-5);
      Tensor qkv = torch::linear(y, b.qkv_w, b.qkv_b).view({bsz, t, 3, h, dh}).permute({2, 0, 3, 1, 4});
      Tensor q = qkv[0], k = qkv[1], v = qkv[2];  // [B, H, T, Dh]
      Tensor att = torch::matmul(q, k.transpose(-2, -1)).mul_(scale).masked_fill_(mask, -INFINITY);
      att = torch::softmax(att, -1);
      y = torch::matmul(att, v).transpose(1, 2).reshape({bsz, t, w});
      x = x + torch::linear(y, b.o_w, b.o_b);
      y = torch::layer_norm(x, {w}, b.ln2_w, b.ln2_b, 1e-5);
      y = torch::gelu(torch::linear(y, b.in_w, b.in_b));
      x = x + torch::linear(y, b.out_w, b.out_b);
    }
    return torch::layer_norm(x, {w}, n.lnf_w, n.lnf_b, 1e-5);
  }

  // Hidden's blocks in mixed precision: products in `compute` (bf16),
  // layer norms, softmax and the residual stream in float32. Casting a
  // weight is differentiable, so its gradient lands in the fp32 master.
  Tensor HiddenMixed(const NetW& n, Tensor x, const Tensor& mask) {
    const int64_t bsz = x.size(0), t = x.size(1);
    const int64_t w = config.width, h = config.heads, dh = w / h;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    const auto lin = [&](const Tensor& in, const Tensor& wt, const Tensor& bias) {
      return torch::linear(in.to(compute), wt.to(compute), bias.to(compute));
    };
    for (const BlockW& b : n.blocks) {
      Tensor y = torch::layer_norm(x, {w}, b.ln1_w, b.ln1_b, 1e-5);
      Tensor qkv = lin(y, b.qkv_w, b.qkv_b).view({bsz, t, 3, h, dh}).permute({2, 0, 3, 1, 4});
      Tensor q = qkv[0], k = qkv[1], v = qkv[2];  // [B, H, T, Dh], compute dtype
      Tensor att = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat32).mul_(scale).masked_fill_(mask, -INFINITY);
      att = torch::softmax(att, -1).to(compute);
      y = torch::matmul(att, v).transpose(1, 2).reshape({bsz, t, w});
      x = x + lin(y, b.o_w, b.o_b).to(torch::kFloat32);
      y = torch::layer_norm(x, {w}, b.ln2_w, b.ln2_b, 1e-5);
      y = torch::gelu(lin(y, b.in_w, b.in_b));
      x = x + lin(y, b.out_w, b.out_b).to(torch::kFloat32);
    }
    return torch::layer_norm(x, {w}, n.lnf_w, n.lnf_b, 1e-5);
  }

  // Output logits [.., vocab] in float32 (the head's product in `compute`).
  Tensor Head(const NetW& n, const Tensor& hidden) const {
    if (compute == torch::kFloat32) return torch::linear(hidden, n.head_w, n.head_b);
    return torch::linear(hidden.to(compute), n.head_w.to(compute), n.head_b.to(compute)).to(torch::kFloat32);
  }

  // Logits of the head rows [lo, lo + n) only, in float32.
  Tensor HeadWindow(const NetW& n, const Tensor& hidden, int64_t lo, int64_t count) const {
    Tensor w = n.head_w.narrow(0, lo, count), bias = n.head_b.narrow(0, lo, count);
    if (compute == torch::kFloat32) return torch::linear(hidden, w, bias);
    return torch::linear(hidden.to(compute), w.to(compute), bias.to(compute)).to(torch::kFloat32);
  }

  // A batch of sequences packed into rows: flow lengths are very skewed, and
  // padding every sequence to the longest wastes most of the compute. Each
  // sequence keeps its own positions and attends only to itself.
  // The targets of a packed batch that share one grammar window [lo, hi):
  // their flat positions in the batch and their tokens less lo.
  struct WindowGroup {
    int64_t lo = 0, hi = 0;
    Tensor positions, target;
  };
  struct PackedBatch {
    Tensor input, target, positions, blocked;
    std::vector<WindowGroup> windows;  // filled when Pack is given windows
  };
  // `windows` (optional): per sequence, the allowed window of each target
  // (windows[i][j] for target seqs[i][j + 1]).
  PackedBatch Pack(const std::vector<std::vector<Token>>& seqs, const std::vector<int64_t>& idx,
                   const std::vector<std::vector<TokenRange>>* windows = nullptr) {
    // First-fit decreasing on the input lengths (a sequence of n tokens
    // gives n - 1 input/target pairs).
    std::vector<int64_t> by_len(idx);
    std::stable_sort(by_len.begin(), by_len.end(),
                     [&](int64_t a, int64_t b) { return seqs[a].size() > seqs[b].size(); });
    const int64_t longest = static_cast<int64_t>(seqs[by_len[0]].size()) - 1;
    const int64_t capacity = std::max<int64_t>(longest, 64);
    std::vector<int64_t> fill;
    std::vector<std::vector<int64_t>> members;
    for (int64_t i : by_len) {
      const int64_t n = static_cast<int64_t>(seqs[i].size()) - 1;
      size_t r = 0;
      while (r < fill.size() && fill[r] + n > capacity) ++r;
      if (r == fill.size()) {
        fill.push_back(0);
        members.emplace_back();
      }
      fill[r] += n;
      members[r].push_back(i);
    }
    const int64_t rows = static_cast<int64_t>(fill.size());
    const int64_t t = *std::max_element(fill.begin(), fill.end());
    // Padding: token and target kPad (ignored by the loss), segment -1, so a
    // pad attends to earlier pads of its row and never sees an empty row
    // (which would make the softmax NaN).
    Tensor in = torch::full({rows, t}, kPad, torch::kInt64), tg = torch::full({rows, t}, kPad, torch::kInt64);
    Tensor pos = torch::zeros({rows, t}, torch::kInt64), seg = torch::full({rows, t}, -1, torch::kInt64);
    int64_t *pi = in.data_ptr<int64_t>(), *pt = tg.data_ptr<int64_t>(), *pp = pos.data_ptr<int64_t>(),
            *ps = seg.data_ptr<int64_t>();
    std::map<std::pair<Token, Token>, std::pair<std::vector<int64_t>, std::vector<int64_t>>> by_window;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t c = r * t;
      for (size_t k = 0; k < members[r].size(); ++k) {
        const auto& s = seqs[members[r][k]];
        const std::vector<TokenRange>* w = windows ? &(*windows)[members[r][k]] : nullptr;
        for (size_t j = 0; j + 1 < s.size(); ++j, ++c) {
          pi[c] = s[j];
          pt[c] = s[j + 1];
          pp[c] = static_cast<int64_t>(j);
          ps[c] = static_cast<int64_t>(k);
          if (w) {
            auto& g = by_window[{(*w)[j].begin, (*w)[j].end}];
            g.first.push_back(c);
            g.second.push_back(s[j + 1] - (*w)[j].begin);
          }
        }
      }
    }
    PackedBatch b;
    for (auto& [range, g] : by_window) {
      WindowGroup wg;
      wg.lo = range.first;
      wg.hi = range.second;
      const int64_t n = static_cast<int64_t>(g.first.size());
      wg.positions = torch::from_blob(g.first.data(), {n}, torch::kInt64).to(device, false, true);
      wg.target = torch::from_blob(g.second.data(), {n}, torch::kInt64).to(device, false, true);
      b.windows.push_back(std::move(wg));
    }
    b.input = in.to(device);
    b.target = tg.to(device);
    b.positions = pos.to(device);
    Tensor sg = seg.to(device);
    b.blocked = (sg.unsqueeze(2) != sg.unsqueeze(1)).logical_or_(CausalMask(t)).unsqueeze(1);
    return b;
  }

  // The token-loss sum of a packed batch: over each target's grammar window
  // when the batch has windows, else over the whole vocabulary.
  Tensor LossSum(const NetW& n, const Tensor& hidden, const PackedBatch& pb) const {
    if (pb.windows.empty()) {
      Tensor logits = Head(n, hidden);
      return torch::cross_entropy_loss(logits.reshape({-1, config.vocab_size}), pb.target.reshape({-1}), {},
                                       at::Reduction::Sum, kPad);
    }
    Tensor flat = hidden.reshape({-1, hidden.size(-1)});
    Tensor sum;
    for (const WindowGroup& g : pb.windows) {
      Tensor logits = HeadWindow(n, flat.index_select(0, g.positions), g.lo, g.hi - g.lo);
      Tensor part = torch::cross_entropy_loss(logits, g.target, {}, at::Reduction::Sum);
      sum = sum.defined() ? sum + part : part;
    }
    return sum;
  }

  // KV cache of an incremental decode: per block K and V [B, H, L, Dh].
  struct Cache {
    std::vector<Tensor> k, v;
  };
  // Makes room for position `pos`: caches start short and double, since
  // most sequences end long before max_length (at batch 2048, width 128,
  // depth 3 and length 200 a full-length cache would take 1.2 GB).
  void ReserveCache(Cache* c, int64_t pos, int64_t max_len) const {
    if (pos < c->k[0].size(2)) return;
    const int64_t cap = std::min(max_len, std::max<int64_t>(2 * c->k[0].size(2), pos + 1));
    for (auto* list : {&c->k, &c->v}) {
      for (Tensor& x : *list) {
        Tensor nx = torch::empty({x.size(0), x.size(1), cap, x.size(3)}, x.options());
        nx.narrow(2, 0, pos).copy_(x.narrow(2, 0, pos));
        x = nx;
      }
    }
  }
  Cache NewCache(int64_t bsz, int64_t len) const {
    Cache c;
    const int64_t h = config.heads, dh = config.width / h;
    for (int i = 0; i < config.depth; ++i) {
      c.k.push_back(torch::empty({bsz, h, len, dh}, flat.options()));
      c.v.push_back(torch::empty({bsz, h, len, dh}, flat.options()));
    }
    return c;
  }
  // Keeps rows `keep` (int64 on device) of the first `t` positions.
  void CompactCache(Cache* c, const std::vector<int64_t>& keep_rows, int64_t t) const {
    if (device.is_cpu()) {
      // In place: keep_rows is increasing, so row keep_rows[i] >= i moves
      // down without overwriting a row still to be moved. Only the first t
      // positions of each (row, head) are live.
      for (auto* list : {&c->k, &c->v}) {
        for (Tensor& x : *list) {
          const int64_t h = x.size(1), len = x.size(2), dh = x.size(3);
          float* p = x.data_ptr<float>();
          for (size_t i = 0; i < keep_rows.size(); ++i) {
            const int64_t r = keep_rows[i];
            if (r == static_cast<int64_t>(i)) continue;
            for (int64_t hh = 0; hh < h; ++hh) {
              std::memcpy(p + (static_cast<int64_t>(i) * h + hh) * len * dh, p + (r * h + hh) * len * dh,
                          t * dh * sizeof(float));
            }
          }
          x = x.narrow(0, 0, static_cast<int64_t>(keep_rows.size()));
        }
      }
      return;
    }
    Tensor keep = torch::from_blob(const_cast<int64_t*>(keep_rows.data()),
                                   {static_cast<int64_t>(keep_rows.size())}, torch::kInt64)
                      .to(device);
    for (auto* list : {&c->k, &c->v}) {
      for (Tensor& x : *list) {
        Tensor nx = torch::empty({keep.size(0), x.size(1), x.size(2), x.size(3)}, x.options());
        nx.narrow(2, 0, t).copy_(x.narrow(2, 0, t).index_select(0, keep));
        x = nx;
      }
    }
  }

  // One decode step: tokens [B] at position `pos` -> final hidden [B, W];
  // appends this position's keys and values to the cache.
  Tensor Step(const NetW& n, const Tensor& tokens, int64_t pos, Cache* c) {
    const int64_t bsz = tokens.size(0);
    const int64_t w = config.width, h = config.heads, dh = w / h;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    Tensor x = n.tok_emb.index_select(0, tokens) + n.pos_emb[pos];
    for (size_t i = 0; i < n.blocks.size(); ++i) {
      const BlockW& b = n.blocks[i];
      Tensor y = torch::layer_norm(x, {w}, b.ln1_w, b.ln1_b, 1e-5);
      Tensor qkv = torch::addmm(b.qkv_b, y, b.qkv_w.t());
      if (c->k[i].is_cpu() && c->k[i].scalar_type() == torch::kFloat32 && c->k[i].is_contiguous()) {
        y = CpuDecodeAttention(qkv.contiguous(), c->k[i], c->v[i], pos + 1, scale);
      } else {
        qkv = qkv.view({bsz, 3, h, dh});
        c->k[i].select(2, pos).copy_(qkv.select(1, 1));
        c->v[i].select(2, pos).copy_(qkv.select(1, 2));
        Tensor q = qkv.select(1, 0).unsqueeze(-1);          // [B, H, Dh, 1]
        Tensor kk = c->k[i].narrow(2, 0, pos + 1);           // [B, H, t, Dh]
        Tensor vv = c->v[i].narrow(2, 0, pos + 1);
        Tensor att = torch::softmax(torch::matmul(kk, q).mul_(scale), 2);  // [B, H, t, 1]
        y = torch::matmul(att.transpose(2, 3), vv).reshape({bsz, w});      // [B, H, 1, Dh]
      }
      x = torch::addmm(x + b.o_b, y, b.o_w.t());
      y = torch::layer_norm(x, {w}, b.ln2_w, b.ln2_b, 1e-5);
      y = torch::addmm(b.in_b, y, b.in_w.t());
      y = torch::gelu(y);
      x = torch::addmm(x + b.out_b, y, b.out_w.t());
    }
    return torch::layer_norm(x, {w}, n.lnf_w, n.lnf_b, 1e-5);
  }

  Status CheckSequences(const std::vector<std::vector<Token>>& seqs, const char* what) const {
    if (seqs.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no sequences"));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto& s = seqs[i];
      if (s.size() < 2 || static_cast<int64_t>(s.size()) > config.max_length) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": sequence ", i, " has ", s.size(),
                                                       " tokens, expected 2..", config.max_length));
      }
      if (s[0] != kBos) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": sequence ", i, " does not start with kBos"));
      }
      for (Token t : s) {
        if (t <= kPad || t >= config.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat(what, ": sequence ", i, " has token ", t,
                                                         " outside [1, ", config.vocab_size, ")"));
        }
      }
    }
    return absl::OkStatus();
  }

  // Save writes the effective weights (live adapters merged into a copy;
  // the model keeps its adapters for ExportDelta).
  std::string Serialize() const {
    std::vector<float> data = FlatCpu(flat);
    MergeAdaptersInto(&data);
    return SerializeFlat(data);
  }
  std::string SerializeFlat(const std::vector<float>& data) const {
    ByteWriter w;
    w.PutBytes(kModelMagic, sizeof(kModelMagic));
    w.Put<uint32_t>(kModelVersion);
    nlohmann::json j = config.ToJson();
    j["format"] = "dgcm";
    j["parameters"] = layout.total;
    std::string js = j.dump();
    w.Put<uint32_t>(static_cast<uint32_t>(js.size()));
    w.PutBytes(js.data(), js.size());
    w.Put<uint32_t>(static_cast<uint32_t>(layout.specs.size()));
    for (const ParamSpec& s : layout.specs) {
      w.Put<uint16_t>(static_cast<uint16_t>(s.name.size()));
      w.PutBytes(s.name.data(), s.name.size());
      w.Put<uint8_t>(static_cast<uint8_t>(s.shape.size()));
      for (int64_t d : s.shape) w.Put<uint32_t>(static_cast<uint32_t>(d));
      w.PutBytes(data.data() + s.offset, static_cast<size_t>(s.numel) * sizeof(float));
    }
    uint64_t h = XXH64(w.out().data(), w.out().size(), 0);
    w.Put<uint64_t>(h);
    return std::move(w.out());
  }
};

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
    // GPT-2 style init: N(0, 0.02), residual projections scaled down by
    // sqrt(2 * depth) so the residual stream does not grow with depth.
    std::vector<float> init(static_cast<size_t>(impl->layout.total));
    DetRng rng(seed);
    const double resid = 0.02 / std::sqrt(2.0 * config.depth);
    for (const ParamSpec& s : impl->layout.specs) {
      float* p = init.data() + s.offset;
      for (int64_t i = 0; i < s.numel; ++i) {
        switch (s.init) {
          case Init::kNormal: p[i] = static_cast<float>(0.02 * rng.Normal()); break;
          case Init::kResidual: p[i] = static_cast<float>(resid * rng.Normal()); break;
          case Init::kZero: p[i] = 0; break;
          case Init::kOne: p[i] = 1; break;
        }
      }
    }
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
  auto err = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("model file ", name, ": ", what));
  };
  if (!LittleEndianHost()) return absl::UnimplementedError("dgcm files need a little-endian host");
  ByteReader r(bytes.data(), bytes.size());
  const char* magic;
  if (!r.GetBytes(sizeof(kModelMagic), &magic)) {
    return err(absl::StrCat("truncated: ", bytes.size(), " bytes, too short for a dgc model"));
  }
  if (std::memcmp(magic, kModelMagic, sizeof(kModelMagic)) != 0) {
    return err("not a dgc model (bad magic; expected a .dgcm checkpoint)");
  }
  uint32_t version;
  if (!r.Get(&version)) return err("truncated after the magic");
  if (version != kModelVersion) {
    return absl::FailedPreconditionError(absl::StrCat("model file ", name, ": format version ", version,
                                                      ", this build reads version ", kModelVersion));
  }
  if (bytes.size() < sizeof(kModelMagic) + 4 + 8) return err("truncated");
  const size_t body = bytes.size() - 8;
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body, 8);
  if (XXH64(bytes.data(), body, 0) != stored) {
    return err(absl::StrCat("checksum mismatch: the file is corrupt or truncated (", bytes.size(), " bytes)"));
  }
  ByteReader b(bytes.data(), body);
  b.GetBytes(sizeof(kModelMagic) + 4, &magic);
  uint32_t json_len;
  const char* js;
  if (!b.Get(&json_len) || json_len > kMaxJsonBytes || !b.GetBytes(json_len, &js)) {
    return err("bad config header");
  }
  nlohmann::json j = nlohmann::json::parse(js, js + json_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return err("config is not valid JSON");
  StatusOr<NetworkConfig> config = NetworkConfig::FromJson(j);
  if (!config.ok()) return err(std::string(config.status().message()));
  DGC_ASSIGN_OR_RETURN(torch::Device dev, ParseDevice(device));
  Layout layout = MakeLayout(*config);
  uint32_t count;
  if (!b.Get(&count)) return err("truncated tensor table");
  if (count != layout.specs.size()) {
    return err(absl::StrCat(count, " tensors, the config needs ", layout.specs.size()));
  }
  if (static_cast<uint64_t>(layout.total) * 4 > b.left()) {
    return err(absl::StrCat("truncated: the config needs ", layout.total * 4, " bytes of weights, ", b.left(),
                            " left"));
  }
  std::vector<float> data(static_cast<size_t>(layout.total));
  for (const ParamSpec& s : layout.specs) {
    uint16_t nlen;
    const char* nm;
    uint8_t ndim;
    if (!b.Get(&nlen) || !b.GetBytes(nlen, &nm) || !b.Get(&ndim)) return err("truncated tensor header");
    if (std::string(nm, nlen) != s.name) {
      return err(absl::StrCat("tensor '", std::string(nm, nlen), "' where '", s.name, "' was expected"));
    }
    if (ndim != s.shape.size()) return err(absl::StrCat("tensor ", s.name, " has ", ndim, " dimensions"));
    for (int64_t d : s.shape) {
      uint32_t got;
      if (!b.Get(&got)) return err("truncated tensor header");
      if (got != d) return err(absl::StrCat("tensor ", s.name, " has the wrong shape for the config"));
    }
    const char* p;
    if (!b.GetBytes(static_cast<size_t>(s.numel) * 4, &p)) return err(absl::StrCat("truncated tensor ", s.name));
    std::memcpy(data.data() + s.offset, p, static_cast<size_t>(s.numel) * 4);
  }
  if (b.left() != 0) return err(absl::StrCat(b.left(), " unexpected bytes after the tensors"));
  for (float x : data) {
    if (!std::isfinite(x)) return err("weights contain NaN or infinity");
  }
  return Guarded("FlowModel::FromBytes", [&]() -> StatusOr<std::unique_ptr<FlowModel>> {
    auto impl = std::make_unique<Impl>();
    impl->config = *config;
    impl->device = dev;
    impl->layout = std::move(layout);
    impl->SetFlat(torch::from_blob(data.data(), {impl->layout.total}, torch::kFloat32).to(dev, false, true));
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
// Training.

StatusOr<TrainStats> FlowModel::Train(const std::vector<std::vector<Token>>& sequences,
                                      const TrainOptions& options) {
  Impl& m = *impl_;
  DGC_RETURN_IF_ERROR(m.CheckSequences(sequences, "Train"));
  if (options.max_steps < 1) return absl::InvalidArgumentError("Train: max_steps must be >= 1");
  if (options.batch_size < 1) return absl::InvalidArgumentError("Train: batch_size must be >= 1");
  if (!(options.learning_rate > 0)) return absl::InvalidArgumentError("Train: learning_rate must be > 0");
  if (options.lora_rank < 0 || options.lora_rank > m.config.width) {
    return absl::InvalidArgumentError(absl::StrCat("Train: lora_rank ", options.lora_rank, " outside [0, width]"));
  }
  uint32_t target_mask = 0;
  for (const std::string& t : options.lora_targets) {
    auto it = std::find(kTargetNames.begin(), kTargetNames.end(), t);
    if (it == kTargetNames.end()) {
      return absl::InvalidArgumentError(absl::StrCat("Train: unknown lora target '", t, "' (expected ",
                                                     absl::StrJoin(kTargetNames, ", "), ")"));
    }
    target_mask |= 1u << (it - kTargetNames.begin());
  }
  if (options.lora_rank > 0 && target_mask == 0) {
    return absl::InvalidArgumentError("Train: lora_rank > 0 needs at least one lora target");
  }
  DataParallelGroup* dp = options.data_parallel;
  const int world = dp != nullptr ? dp->world_size() : 1;
  const int dp_rank = dp != nullptr ? dp->rank() : 0;
  if (!options.device.empty()) DGC_RETURN_IF_ERROR(To(options.device));
  DGC_ASSIGN_OR_RETURN(const torch::ScalarType compute, ResolvePrecision(options.precision, m.device));
  return Guarded("FlowModel::Train", [&]() -> StatusOr<TrainStats> {
    const auto t0 = Clock::now();
    const int32_t rank = options.lora_rank;
    // The starting point a delta is relative to: effective weights, with any
    // earlier adapters folded in.
    m.FoldAdapters();
    if (world > 1) {
      // Every rank starts from rank 0's weights (as DDP does), so a rank
      // that loaded a different parent cannot silently diverge.
      torch::NoGradGuard ng;
      DGC_RETURN_IF_ERROR(internal::BroadcastInPlace(*dp, m.flat, 0));
    }
    struct ComputeReset {
      torch::ScalarType* c;
      ~ComputeReset() { *c = torch::kFloat32; }
    } compute_reset{&m.compute};
    m.compute = compute;
    m.parent_hash = HashWeights(m.layout, m.FlatCpu(m.flat).data());
    m.trained = false;
    m.start_flat = Tensor();

    Tensor trainable;                 // flat buffer the optimizer updates
    std::vector<Tensor> leaves;       // views of it that autograd sees as leaves
    std::vector<std::pair<int64_t, int64_t>> leaf_ranges;
    Tensor decay_mask;                // 1 where weight decay applies
    if (rank == 0) {
      m.start_flat = m.flat.detach().clone();
      trainable = m.flat;
      leaves = m.views;
      std::vector<float> mask(static_cast<size_t>(m.layout.total), 0.0f);
      for (const ParamSpec& s : m.layout.specs) {
        leaf_ranges.emplace_back(s.offset, s.numel);
        if (s.decay) std::fill(mask.begin() + s.offset, mask.begin() + s.offset + s.numel, 1.0f);
      }
      decay_mask = torch::from_blob(mask.data(), {m.layout.total}, torch::kFloat32).to(m.device, false, true);
    } else {
      const double alpha = options.lora_alpha > 0 ? options.lora_alpha : 2.0 * rank;
      m.lora = MakeLoraLayout(m.config, m.layout, rank, alpha / rank, target_mask);
      m.lora_a_from_seed = !options.lora_train_a;
      m.lora_seed = Mix3(options.seed, 0x4c6f5241ULL, 1);
      std::vector<float> init(static_cast<size_t>(m.lora.total), 0.0f);  // B = 0
      std::vector<std::vector<int64_t>> shapes;
      for (const AdapterSpec& a : m.lora.adapters) {
        if (a.vector) {
          leaf_ranges.emplace_back(a.b_offset, a.out);
          shapes.push_back({a.out});
          continue;
        }
        std::vector<float> av = AdapterAInit(m.lora_seed, a, rank);
        std::copy(av.begin(), av.end(), init.begin() + a.a_offset);
        if (options.lora_train_a) {
          leaf_ranges.emplace_back(a.a_offset, rank * a.in);
          shapes.push_back({rank, a.in});
        }
        leaf_ranges.emplace_back(a.b_offset, a.out * rank);
        shapes.push_back({a.out, rank});
      }
      m.lora_flat = torch::from_blob(init.data(), {m.lora.total}, torch::kFloat32).to(m.device, false, true);
      trainable = m.lora_flat;
      std::vector<float> mask(static_cast<size_t>(m.lora.total), 0.0f);  // a seeded A stays put
      for (size_t i = 0; i < leaf_ranges.size(); ++i) {
        auto [off, n] = leaf_ranges[i];
        // The forward pass must use these very tensors (not views of them):
        // autograd accumulates into a leaf's .grad only.
        leaves.push_back(trainable.narrow(0, off, n).view(shapes[i]));
        std::fill(mask.begin() + off, mask.begin() + off + n, 1.0f);
      }
      decay_mask = torch::from_blob(mask.data(), {m.lora.total}, torch::kFloat32).to(m.device, false, true);
    }
    // Gradients accumulate in place into views of one flat buffer (autograd
    // adds into an existing .grad), so clipping and AdamW are a few ops.
    // Data-parallel: the buffer has two more slots, this rank's share of
    // the loss and a "time is up" flag, so one all-reduce a step carries the
    // gradient, the loss and the joint decision to stop.
    const int64_t ntrain = trainable.numel();
    Tensor comm = torch::zeros({ntrain + (world > 1 ? 2 : 0)}, trainable.options());
    Tensor grad = comm.narrow(0, 0, ntrain);
    // Leaves stop requiring gradients however Train ends (an exception
    // included), so later inference builds no graph.
    struct LeafReset {
      std::vector<Tensor>* leaves;
      ~LeafReset() {
        for (Tensor& l : *leaves) {
          try {
            l.mutable_grad() = Tensor();
            l.requires_grad_(false);
          } catch (...) {
          }
        }
      }
    } leaf_reset{&leaves};
    for (size_t i = 0; i < leaves.size(); ++i) {
      leaves[i].requires_grad_(true);
      leaves[i].mutable_grad() =
          grad.narrow(0, leaf_ranges[i].first, leaf_ranges[i].second).view(leaves[i].sizes());
    }
    Tensor exp_avg = torch::zeros_like(trainable), exp_avg_sq = torch::zeros_like(trainable);

    // The A/B views that the forward pass reads in LoRA mode.
    std::vector<Tensor> lora_a(m.lora.adapters.size()), lora_b(m.lora.adapters.size());
    if (rank > 0) {
      size_t li = 0;
      for (size_t i = 0; i < m.lora.adapters.size(); ++i) {
        const AdapterSpec& a = m.lora.adapters[i];
        if (a.vector) {
          lora_b[i] = leaves[li++];
          continue;
        }
        if (options.lora_train_a) {
          lora_a[i] = leaves[li++];
        } else {
          lora_a[i] = trainable.narrow(0, a.a_offset, rank * a.in).view({rank, a.in});
        }
        lora_b[i] = leaves[li++];
      }
    }

    // Each target's grammar window, once per Train (cheap beside a step).
    std::vector<std::vector<TokenRange>> windows;
    if (options.grammar != nullptr) {
      const TokenRange whole{0, static_cast<Token>(m.config.vocab_size)};
      windows.resize(sequences.size());
      for (size_t i = 0; i < sequences.size(); ++i) {
        const auto& sq = sequences[i];
        auto& w = windows[i];
        w.reserve(sq.size());
        GrammarState st = options.grammar->Start();  // after sq[0], kBos
        bool valid = true;
        for (size_t j = 1; j < sq.size(); ++j) {
          TokenRange a = valid && !st.done ? options.grammar->Allowed(st) : whole;
          if (!a.Contains(sq[j]) || a.begin < 0 || a.end > m.config.vocab_size) {
            a = whole;
            valid = false;  // the grammar rejects the rest: score it over the whole vocabulary
          }
          w.push_back(a);
          if (valid) options.grammar->Advance(&st, sq[j]);
        }
      }
    }

    DetRng rng(options.seed);
    std::vector<int64_t> order(sequences.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    size_t cursor = order.size();  // forces a shuffle first
    const int64_t batch = std::min<int64_t>(options.batch_size, static_cast<int64_t>(sequences.size()));
    const int32_t warmup = std::max(1, std::min(options.warmup_steps, options.max_steps / 4));
    const double b1 = 0.9, b2 = 0.98, eps = 1e-8;

    TrainStats stats;
    std::vector<Tensor> losses;
    std::vector<int64_t> idx(static_cast<size_t>(batch));
    std::vector<int64_t> local;
    for (int32_t step = 0; step < options.max_steps; ++step) {
      if (world == 1 && step > 0 && SecondsSince(t0) >= options.max_seconds) break;
      int64_t batch_tokens = 0;
      for (int64_t i = 0; i < batch; ++i) {
        if (cursor == order.size()) {
          for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[rng.Below(k)]);
          cursor = 0;
        }
        idx[i] = order[cursor++];
        batch_tokens += static_cast<int64_t>(sequences[idx[i]].size()) - 1;
      }
      stats.tokens += batch_tokens;
      // This rank's shard of the global batch.
      local.clear();
      for (int64_t i = dp_rank; i < batch; i += world) local.push_back(idx[i]);
      comm.zero_();
      Tensor loss;
      if (!local.empty()) {
        Impl::PackedBatch pb = m.Pack(sequences, local, windows.empty() ? nullptr : &windows);
        NetW net = rank == 0 ? Bind(m.layout, m.views) : m.EffectiveWith(lora_a, lora_b);
        Tensor hidden = m.Hidden(net, pb.input, pb.positions, pb.blocked);
        // The token-loss sum over the tokens of the whole batch: with one
        // rank the mean; with several their terms add up to it, and so do
        // their gradients.
        loss = m.LossSum(net, hidden, pb).div(static_cast<double>(batch_tokens));
        loss.backward();
      }
      bool stop = false;
      if (world > 1) {
        torch::NoGradGuard ng;
        if (loss.defined()) comm[ntrain].copy_(loss.detach());
        comm[ntrain + 1].fill_(SecondsSince(t0) >= options.max_seconds ? 1.0 : 0.0);
        DGC_RETURN_IF_ERROR(internal::AllReduceSumInPlace(*dp, comm));
        losses.push_back(comm[ntrain].clone());
        stop = comm[ntrain + 1].item<float>() > 0;
      } else {
        losses.push_back(loss.detach());
      }

      torch::NoGradGuard ng;
      if (options.grad_clip > 0) {
        Tensor norm = grad.norm();
        grad.mul_(torch::clamp_max(options.grad_clip / (norm + 1e-6), 1.0));
      }
      const double progress = static_cast<double>(std::max(0, step - warmup + 1)) /
                              std::max(1, options.max_steps - warmup);
      double lr = options.learning_rate *
                  (step < warmup ? static_cast<double>(step + 1) / warmup
                                 : 0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
      const double bc1 = 1.0 - std::pow(b1, step + 1), bc2 = 1.0 - std::pow(b2, step + 1);
      exp_avg.mul_(b1).add_(grad, 1.0 - b1);
      exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
      Tensor denom = (exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(eps);
      if (options.weight_decay > 0) trainable.addcmul_(trainable, decay_mask, -lr * options.weight_decay);
      trainable.addcdiv_(exp_avg, denom, -lr / bc1);
      ++stats.steps;
      if (stop) break;
    }
    Tensor all = torch::stack(losses).to(torch::kCPU, torch::kFloat64);
    const double* lp = all.data_ptr<double>();
    const int64_t nl = all.numel();
    stats.first_loss = lp[0];
    const int64_t tail = std::min<int64_t>(nl, std::max<int64_t>(1, std::min<int64_t>(10, nl / 5 + 1)));
    double sum = 0;
    for (int64_t i = nl - tail; i < nl; ++i) sum += lp[i];
    stats.final_loss = sum / tail;
    stats.seconds = SecondsSince(t0);
    stats.tokens_per_second = stats.seconds > 0 ? stats.tokens / stats.seconds : 0;
    stats.device = DeviceName(m.device);
    stats.precision = compute == torch::kFloat32 ? "fp32" : "bf16";
    stats.world_size = world;
    m.trained = true;
    m.trained_rank = rank;
    return stats;
  });
}

StatusOr<double> FlowModel::Loss(const std::vector<std::vector<Token>>& sequences) {
  Impl& m = *impl_;
  DGC_RETURN_IF_ERROR(m.CheckSequences(sequences, "Loss"));
  return Guarded("FlowModel::Loss", [&]() -> StatusOr<double> {
    torch::NoGradGuard ng;
    NetW net = m.Effective();
    double sum = 0;
    int64_t count = 0;
    const size_t kBatch = 256;
    for (size_t s = 0; s < sequences.size(); s += kBatch) {
      std::vector<int64_t> idx;
      for (size_t i = s; i < std::min(sequences.size(), s + kBatch); ++i) {
        idx.push_back(static_cast<int64_t>(i));
        count += static_cast<int64_t>(sequences[i].size()) - 1;
      }
      Impl::PackedBatch pb = m.Pack(sequences, idx);
      Tensor logits = torch::linear(m.Hidden(net, pb.input, pb.positions, pb.blocked), net.head_w, net.head_b);
      Tensor loss = torch::cross_entropy_loss(logits.reshape({-1, m.config.vocab_size}), pb.target.reshape({-1}),
                                              {}, at::Reduction::Sum, kPad);
      sum += loss.item<double>();
    }
    return sum / std::max<int64_t>(1, count);
  });
}

StatusOr<std::vector<std::vector<float>>> FlowModel::Logits(const std::vector<std::vector<Token>>& sequences,
                                                            bool kv_cached) {
  Impl& m = *impl_;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const auto& s = sequences[i];
    if (s.empty() || static_cast<int64_t>(s.size()) > m.config.max_length) {
      return absl::InvalidArgumentError(absl::StrCat("Logits: sequence ", i, " has ", s.size(), " tokens"));
    }
    for (Token t : s) {
      if (t < 0 || t >= m.config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("Logits: token ", t, " outside the vocabulary"));
      }
    }
  }
  if (sequences.empty()) return std::vector<std::vector<float>>();
  return Guarded("FlowModel::Logits", [&]() -> StatusOr<std::vector<std::vector<float>>> {
    torch::NoGradGuard ng;
    NetW net = m.Effective();
    int64_t tmax = 0;
    for (const auto& s : sequences) tmax = std::max<int64_t>(tmax, s.size());
    Tensor data = PadSequences(sequences, tmax).to(m.device);
    Tensor logits;  // [N, T, V]
    if (!kv_cached) {
      logits = torch::linear(m.Hidden(net, data), net.head_w, net.head_b);
    } else {
      Impl::Cache cache = m.NewCache(data.size(0), tmax);
      std::vector<Tensor> rows;
      for (int64_t t = 0; t < tmax; ++t) {
        Tensor h = m.Step(net, data.select(1, t).contiguous(), t, &cache);
        rows.push_back(torch::linear(h, net.head_w, net.head_b));
      }
      logits = torch::stack(rows, 1);
    }
    logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
    const int64_t v = m.config.vocab_size;
    std::vector<std::vector<float>> out(sequences.size());
    for (size_t i = 0; i < sequences.size(); ++i) {
      const float* p = logits.data_ptr<float>() + static_cast<int64_t>(i) * tmax * v;
      out[i].assign(p, p + static_cast<int64_t>(sequences[i].size()) * v);
    }
    return out;
  });
}

// ---------------------------------------------------------------------------
// Sampling.

StatusOr<std::vector<std::vector<Token>>> FlowModel::Sample(const std::vector<std::vector<Token>>& prefixes,
                                                            const Grammar& grammar,
                                                            const SampleOptions& options) {
  Impl& m = *impl_;
  if (grammar.vocab_size() != m.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("Sample: grammar vocabulary ", grammar.vocab_size(),
                                                   " != model vocabulary ", m.config.vocab_size));
  }
  const int64_t max_len = grammar.max_length();
  if (max_len < 2 || max_len > m.config.max_length) {
    return absl::InvalidArgumentError(absl::StrCat("Sample: grammar max_length ", max_len,
                                                   " outside [2, model max_length ", m.config.max_length, "]"));
  }
  if (options.batch_size < 1) return absl::InvalidArgumentError("Sample: batch_size must be >= 1");
  if (!std::isfinite(options.temperature) || options.temperature < 0) {
    return absl::InvalidArgumentError("Sample: temperature must be finite and >= 0");
  }
  if (!(options.min_p >= 0 && options.min_p < 1)) {
    return absl::InvalidArgumentError("Sample: min_p must be in [0, 1)");
  }
  // Check every forced prefix against the grammar now, so a bad prefix is an
  // error, not a sequence that does not decode.
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const auto& p = prefixes[i];
    if (p.empty() || p[0] != kBos) {
      return absl::InvalidArgumentError(absl::StrCat("Sample: prefix ", i, " does not start with kBos"));
    }
    if (static_cast<int64_t>(p.size()) >= max_len) {
      return absl::InvalidArgumentError(absl::StrCat("Sample: prefix ", i, " has ", p.size(),
                                                     " tokens; the grammar allows ", max_len, " in all"));
    }
    GrammarState st = grammar.Start();
    for (size_t j = 1; j < p.size(); ++j) {
      if (st.done || !grammar.Allowed(st).Contains(p[j])) {
        return absl::InvalidArgumentError(absl::StrCat("Sample: prefix ", i, " token ", j, " (", p[j],
                                                       ") is not allowed by the grammar there"));
      }
      grammar.Advance(&st, p[j]);
    }
    if (st.done) return absl::InvalidArgumentError(absl::StrCat("Sample: prefix ", i, " already ends"));
  }
  return Guarded("FlowModel::Sample", [&]() -> StatusOr<std::vector<std::vector<Token>>> {
    torch::NoGradGuard ng;
    NetW net = m.Effective();
    const bool greedy = options.temperature == 0;
    const double inv_temp = greedy ? 1.0 : 1.0 / options.temperature;
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<std::vector<Token>> out(prefixes.size());
    // One batch: its own cache and rows of `out`; nothing else is written, so
    // batches may run on several threads (the draws depend on the seed, the
    // sequence and the position only: the output does not depend on them).
    auto run_batch = [&](size_t start) -> Status {
      torch::NoGradGuard ng_thread;  // grad mode is per thread
      const int64_t n = std::min<int64_t>(options.batch_size, prefixes.size() - start);
      // Row r of the batch (and of its KV cache) decodes sequence rows[r].
      // A finished row stays as an idle row (fed kEos, never sampled) until a
      // quarter of the rows are idle; then the cache is compacted. Copying
      // the cache costs about a step, so compacting at every finish would
      // cost more than the idle rows.
      std::vector<int64_t> rows(n);
      std::vector<GrammarState> states(n, grammar.Start());
      std::vector<char> alive(n, 1);
      int64_t n_alive = n;
      for (int64_t r = 0; r < n; ++r) {
        rows[r] = static_cast<int64_t>(start) + r;
        out[rows[r]] = prefixes[rows[r]];
        const auto& p = prefixes[rows[r]];
        for (size_t j = 1; j < p.size(); ++j) grammar.Advance(&states[r], p[j]);
      }
      Impl::Cache cache = m.NewCache(n, std::min<int64_t>(max_len, 16));
      std::vector<int64_t> cur(n), lo(n), hi(n), sample_rows;
      std::vector<float> uni;
      for (int64_t t = 0; n_alive > 0; ++t) {
        const int64_t b = static_cast<int64_t>(rows.size());
        if (t + 1 >= max_len) {
          return absl::InternalError(absl::StrCat("Sample: the grammar let a sequence reach max_length ",
                                                  max_len, " without kEos"));
        }
        for (int64_t r = 0; r < b; ++r) cur[r] = alive[r] ? out[rows[r]][t] : kEos;
        Tensor tok = torch::from_blob(cur.data(), {b}, i64).to(m.device);
        m.ReserveCache(&cache, t, max_len);
        Tensor hidden = m.Step(net, tok, t, &cache);
        // Rows whose next token is forced (prefix) skip the head; the others
        // sample in their allowed [lo, hi). The head only computes the union
        // window of those ranges: the grammar's ranges are narrow and rows
        // move through it together, so this saves most of the head's work.
        sample_rows.clear();
        int64_t wlo = m.config.vocab_size, whi = 0;
        for (int64_t r = 0; r < b; ++r) {
          if (!alive[r] || static_cast<int64_t>(out[rows[r]].size()) > t + 1) continue;
          TokenRange a = grammar.Allowed(states[r]);
          if (a.size() <= 0 || a.begin < 0 || a.end > m.config.vocab_size) {
            return absl::InternalError(absl::StrCat("Sample: grammar allowed an empty or invalid range [",
                                                    a.begin, ", ", a.end, ")"));
          }
          const size_t i = sample_rows.size();
          sample_rows.push_back(r);
          lo[i] = a.begin;
          hi[i] = a.end;
          wlo = std::min<int64_t>(wlo, a.begin);
          whi = std::max<int64_t>(whi, a.end);
        }
        const int64_t ns = static_cast<int64_t>(sample_rows.size());
        if (ns > 0) {
          Tensor h = hidden;
          if (ns < b) h = h.index_select(0, torch::from_blob(sample_rows.data(), {ns}, i64).to(m.device));
          const int64_t win = whi - wlo;
          Tensor logits = torch::addmm(net.head_b.narrow(0, wlo, win), h, net.head_w.narrow(0, wlo, win).t());
          for (int64_t i = 0; i < ns; ++i) {
            lo[i] -= wlo;
            hi[i] -= wlo;
          }
          Tensor lo_t = torch::from_blob(lo.data(), {ns, 1}, i64).to(m.device);
          Tensor hi_t = torch::from_blob(hi.data(), {ns, 1}, i64).to(m.device);
          bool uniform = true;  // rows in lockstep: every row allows the whole window
          for (int64_t i = 0; i < ns && uniform; ++i) uniform = lo[i] == 0 && hi[i] == win;
          if (!uniform) {
            Tensor ar = torch::arange(win, i64.device(m.device)).unsqueeze(0);
            logits.masked_fill_((ar < lo_t).logical_or_(ar >= hi_t), -INFINITY);
          }
          Tensor pick;
          if (greedy) {
            pick = logits.argmax(1);
          } else {
            if (inv_temp != 1.0) logits.mul_(inv_temp);
            Tensor probs = torch::softmax(logits, 1);
            if (options.min_p > 0) {
              // The likeliest token always survives (its ratio is 1 > min_p).
              Tensor keep = probs >= std::get<0>(probs.max(1, true)) * options.min_p;
              probs.mul_(keep);
            }
            Tensor cdf = probs.cumsum_(1);
            uni.resize(ns);
            for (int64_t i = 0; i < ns; ++i) {
              // The uniform depends on (seed, sequence, position) only, not
              // on the batching. 24 bits: exact in float, never 0 or 1.
              uint64_t bits = Mix3(options.seed, static_cast<uint64_t>(rows[sample_rows[i]]), t) >> 40;
              uni[i] = static_cast<float>((static_cast<double>(bits) + 0.5) * 0x1.0p-24);
            }
            Tensor u = torch::from_blob(uni.data(), {ns, 1}, torch::kFloat32).to(m.device);
            // Inverse CDF: the first index whose cumulative probability
            // reaches u * total. A masked token has probability 0, so the cdf
            // does not step there and it is never picked (threshold > 0).
            pick = (cdf < u * cdf.narrow(1, win - 1, 1)).sum(1);
          }
          pick = torch::max(torch::min(pick, hi_t.squeeze(1) - 1), lo_t.squeeze(1)).to(torch::kCPU);
          const int64_t* pp = pick.data_ptr<int64_t>();
          for (int64_t i = 0; i < ns; ++i) {
            out[rows[sample_rows[i]]].push_back(static_cast<Token>(pp[i] + wlo));
          }
        }
        // Advance every live row by its token t+1 (forced or sampled).
        for (int64_t r = 0; r < b; ++r) {
          if (!alive[r]) continue;
          const Token next = out[rows[r]][t + 1];
          if (static_cast<int64_t>(prefixes[rows[r]].size()) <= t + 1) grammar.Advance(&states[r], next);
          if (states[r].done || next == kEos) {
            alive[r] = 0;
            --n_alive;
          }
        }
        if (n_alive > 0 && n_alive * 4 <= b * 3) {
          std::vector<int64_t> keep;
          std::vector<int64_t> nrows;
          std::vector<GrammarState> nstates;
          for (int64_t r = 0; r < b; ++r) {
            if (!alive[r]) continue;
            keep.push_back(r);
            nrows.push_back(rows[r]);
            nstates.push_back(states[r]);
          }
          m.CompactCache(&cache, keep, t + 1);
          rows = std::move(nrows);
          states = std::move(nstates);
          alive.assign(n_alive, 1);
        }
      }
      return absl::OkStatus();
    };
    std::vector<size_t> starts;
    for (size_t start = 0; start < prefixes.size(); start += options.batch_size) starts.push_back(start);
    int threads = options.threads > 0 ? options.threads : (m.device.is_cpu() ? UsableCpuCount() : 1);
    threads = std::max(1, std::min<int>(threads, static_cast<int>(starts.size())));
    // On a CPU every batch is computed by single-threaded OpenBLAS, however
    // many sampling threads: the same products, so the same draws, for any
    // `threads` (a threaded product sums in another order, which flipped
    // 6 draws in a million packets).
    std::optional<SingleThreadedBlas> blas;
    if (m.device.is_cpu()) blas.emplace();
    if (threads == 1) {
      for (size_t start : starts) DGC_RETURN_IF_ERROR(run_batch(start));
      return out;
    }
    // Batches go to threads in turn; the first error stops every thread at
    // its next batch.
    std::atomic<size_t> next{0};
    std::mutex mu;
    Status first = absl::OkStatus();
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < starts.size();) {
        Status st = Guarded("FlowModel::Sample", [&] { return run_batch(starts[i]); });
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first.ok()) first = st;
          next = starts.size();
        }
      }
    };
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; ++k) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
    if (!first.ok()) return first;
    return out;
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
    ByteWriter p;  // payload, compressed below
    uint32_t kind;
    if (m.trained_rank > 0) {
      kind = kDeltaLora;
      std::vector<float> ad = m.FlatCpu(m.lora_flat);
      p.Put<uint32_t>(static_cast<uint32_t>(m.lora.rank));
      p.Put<double>(m.lora.scale);
      p.Put<uint8_t>(m.lora_a_from_seed ? 1 : 0);
      p.Put<uint64_t>(m.lora_seed);
      p.Put<uint32_t>(static_cast<uint32_t>(m.lora.adapters.size()));
      for (const AdapterSpec& a : m.lora.adapters) {
        p.Put<uint16_t>(static_cast<uint16_t>(a.block));
        p.Put<uint8_t>(static_cast<uint8_t>(a.target));
        std::vector<std::pair<int64_t, int64_t>> parts;
        if (!a.vector && !m.lora_a_from_seed) parts.emplace_back(a.a_offset, m.lora.rank * a.in);
        parts.emplace_back(a.b_offset, a.out * (a.vector ? 1 : m.lora.rank));
        for (auto [off, n] : parts) {
          Quantized q = Quantize(ad.data() + off, n);
          p.Put<float>(q.scale);
          if (q.scale != 0) p.PutBytes(q.q.data(), q.q.size());
        }
      }
    } else {
      kind = kDeltaFull;
      std::vector<float> now = m.FlatCpu(m.flat), before = m.FlatCpu(m.start_flat);
      for (size_t i = 0; i < now.size(); ++i) now[i] -= before[i];
      p.Put<uint32_t>(static_cast<uint32_t>(m.layout.specs.size()));
      for (const ParamSpec& s : m.layout.specs) {
        Quantized q = Quantize(now.data() + s.offset, s.numel);
        p.Put<float>(q.scale);
        if (q.scale != 0) p.PutBytes(q.q.data(), q.q.size());
      }
    }
    const std::string& raw = p.out();
    std::string z(ZSTD_compressBound(raw.size()), '\0');
    size_t zn = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), options.zstd_level);
    if (ZSTD_isError(zn)) {
      return absl::InternalError(absl::StrCat("ExportDelta: zstd: ", ZSTD_getErrorName(zn)));
    }
    z.resize(zn);
    ByteWriter w;
    w.PutBytes(kDeltaMagic, sizeof(kDeltaMagic));
    w.Put<uint32_t>(kDeltaVersion);
    w.Put<uint32_t>(kind);
    w.Put<uint64_t>(m.parent_hash);
    w.Put<uint32_t>(static_cast<uint32_t>(raw.size()));
    w.Put<uint32_t>(static_cast<uint32_t>(z.size()));
    w.PutBytes(z.data(), z.size());
    w.Put<uint64_t>(XXH64(w.out().data(), w.out().size(), 0));
    return std::move(w.out());
  });
}

Status FlowModel::ApplyDelta(const std::string& delta, const std::string& name) {
  Impl& m = *impl_;
  auto err = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("delta ", name, ": ", what));
  };
  ByteReader r(delta.data(), delta.size());
  const char* magic;
  if (!r.GetBytes(sizeof(kDeltaMagic), &magic)) return err(absl::StrCat("truncated: ", delta.size(), " bytes"));
  if (std::memcmp(magic, kDeltaMagic, sizeof(kDeltaMagic)) != 0) return err("not a dgc delta (bad magic)");
  uint32_t version, kind, raw_size, z_size;
  uint64_t parent;
  if (!r.Get(&version)) return err("truncated after the magic");
  if (version != kDeltaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("delta ", name, ": format version ", version,
                                                      ", this build reads version ", kDeltaVersion));
  }
  if (!r.Get(&kind) || !r.Get(&parent) || !r.Get(&raw_size) || !r.Get(&z_size)) return err("truncated header");
  if (r.left() != static_cast<size_t>(z_size) + 8) {
    return err(absl::StrCat("truncated or padded: ", delta.size(), " bytes, header says ",
                            r.pos() + static_cast<size_t>(z_size) + 8));
  }
  uint64_t stored;
  std::memcpy(&stored, delta.data() + delta.size() - 8, 8);
  if (XXH64(delta.data(), delta.size() - 8, 0) != stored) return err("checksum mismatch: the delta is corrupt");
  if (kind != kDeltaLora && kind != kDeltaFull) return err(absl::StrCat("unknown delta kind ", kind));
  // A delta holds at most about two int8 values per weight (A and B of
  // full-rank adapters) plus small headers.
  if (raw_size > kMaxDeltaRawBytes || raw_size > 4 * static_cast<uint64_t>(m.layout.total) + 65536) {
    return err(absl::StrCat("implausible payload size ", raw_size, " for this model"));
  }
  return Guarded("FlowModel::ApplyDelta", [&]() -> Status {
    m.FoldAdapters();
    std::vector<float> base = m.FlatCpu(m.flat);
    const uint64_t have = HashWeights(m.layout, base.data());
    if (have != parent) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "delta %s was made from parent model %016x, but this model is %016x: apply it to the "
          "model it was trained from",
          name, parent, have));
    }
    const char* zp;
    r.GetBytes(z_size, &zp);
    std::string raw(raw_size, '\0');
    size_t rn = ZSTD_decompress(raw.data(), raw.size(), zp, z_size);
    if (ZSTD_isError(rn) || rn != raw_size) return err("payload does not decompress");
    ByteReader p(raw.data(), raw.size());
    auto trunc = [&]() { return err("payload truncated"); };
    auto read_q = [&](int64_t n, std::vector<float>* outv) -> bool {
      float scale;
      if (!p.Get(&scale) || !std::isfinite(scale)) return false;
      outv->assign(static_cast<size_t>(n), 0.0f);
      if (scale == 0) return true;
      const char* q;
      if (!p.GetBytes(static_cast<size_t>(n), &q)) return false;
      Dequantize(scale, reinterpret_cast<const int8_t*>(q), n, outv->data());
      return true;
    };
    if (kind == kDeltaFull) {
      uint32_t count;
      if (!p.Get(&count)) return trunc();
      if (count != m.layout.specs.size()) return err("tensor count does not match the model");
      std::vector<float> d;
      for (const ParamSpec& s : m.layout.specs) {
        if (!read_q(s.numel, &d)) return trunc();
        float* w = base.data() + s.offset;
        for (int64_t i = 0; i < s.numel; ++i) w[i] += d[i];
      }
    } else {
      uint32_t rank, count;
      double scale;
      uint8_t a_from_seed;
      uint64_t seed;
      if (!p.Get(&rank) || !p.Get(&scale) || !p.Get(&a_from_seed) || !p.Get(&seed) || !p.Get(&count)) {
        return trunc();
      }
      if (rank < 1 || rank > static_cast<uint32_t>(m.config.width) || !std::isfinite(scale)) {
        return err("bad adapter rank or scale");
      }
      // Geometry of every possible adapter, to look entries up by (block, target).
      LoraLayout all = MakeLoraLayout(m.config, m.layout, static_cast<int32_t>(rank), scale,
                                      (1u << kNumTargets) - 1);
      std::vector<float> a, bm;
      for (uint32_t i = 0; i < count; ++i) {
        uint16_t block;
        uint8_t target;
        if (!p.Get(&block) || !p.Get(&target)) return trunc();
        const AdapterSpec* as = nullptr;
        for (const AdapterSpec& c : all.adapters) {
          if (c.block == block && c.target == target) as = &c;
        }
        if (as == nullptr) return err("adapter for a matrix the model does not have");
        if (as->vector) {
          a.clear();
        } else if (a_from_seed) {
          a = AdapterAInit(seed, *as, static_cast<int32_t>(rank));
        } else if (!read_q(rank * as->in, &a)) {
          return trunc();
        }
        if (!read_q(as->out * (as->vector ? 1 : rank), &bm)) return trunc();
        MergeOneCpu(m.layout, *as, a.data(), bm.data(), static_cast<int32_t>(rank), scale, base.data());
      }
    }
    if (p.left() != 0) return err("unexpected bytes after the payload");
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

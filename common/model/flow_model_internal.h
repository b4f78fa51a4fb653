// The libtorch side of FlowModel, shared by its three files (flow_model.cc:
// devices, lifecycle, checkpoints and deltas; flow_model_train.cc: training
// and scoring; flow_model_sample.cc: sampling and its CPU attention kernel).
// Includes torch: nothing outside those files may include it. The torch-free
// parts (layout, quantisation, formats, RNG) are weights.h, model_format.h
// and common/base/rng.h.
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
//    RNG and plain C++ on the CPU (weights.cc), never with torch kernels whose
//    rounding may differ between devices, BLAS builds or libtorch versions.
#ifndef DGC_COMMON_MODEL_FLOW_MODEL_INTERNAL_H_
#define DGC_COMMON_MODEL_FLOW_MODEL_INTERNAL_H_

#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/model/flow_model.h"
#include "common/model/model_format.h"
#include "common/model/weights.h"

namespace dgc::model::internal {

using torch::Tensor;

// The weights the forward pass reads (views, or merged copies).
struct BlockW {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_w, ln2_b, in_w, in_b, out_w, out_b;
};
struct NetW {
  Tensor tok_emb, pos_emb, lnf_w, lnf_b, head_w, head_b;
  std::vector<BlockW> blocks;
};

inline NetW Bind(const Layout& l, const std::vector<Tensor>& v) {
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

inline std::vector<Tensor> MakeViews(const Layout& l, const Tensor& flat) {
  std::vector<Tensor> v;
  v.reserve(l.specs.size());
  for (const ParamSpec& s : l.specs) v.push_back(flat.narrow(0, s.offset, s.numel).view(s.shape));
  return v;
}

// "", "cpu", "cuda", "cuda:N" or "auto" as a device this build and machine have.
StatusOr<torch::Device> ParseDevice(const std::string& name);
std::string DeviceName(const torch::Device& d);
// "fp32", "bf16" or "auto" for TrainOptions::precision on `device`.
StatusOr<torch::ScalarType> ResolvePrecision(const std::string& p, const torch::Device& device);
// First line of a c10 error (the rest is a C++ backtrace).
std::string FirstLine(const char* what);

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

// CPUs this process may use (its affinity mask).
int UsableCpuCount();
// Sequences as a padded int64 matrix [n, max_len] (kPad after each end).
Tensor PadSequences(const std::vector<std::vector<Token>>& seqs, int64_t max_len);

using Clock = std::chrono::steady_clock;
inline double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// qkv [B, 3W] contiguous (this step's q, k, v per row); k/v caches
// [B, H, L, Dh] contiguous. Writes this step's k and v at position t - 1 and
// returns the attention output [B, W] over positions [0, t).
Tensor CpuDecodeAttention(const Tensor& qkv, Tensor& kc, Tensor& vc, int64_t t, double scale);

}  // namespace dgc::model::internal

namespace dgc::model {

// Uses the helpers above by their plain names.
struct FlowModel::Impl {
  using Tensor = internal::Tensor;
  using NetW = internal::NetW;
  using BlockW = internal::BlockW;

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
    views = internal::MakeViews(layout, flat);
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
    NetW n = internal::Bind(layout, views);
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
    if (!HasAdapters()) return internal::Bind(layout, views);
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
        y = internal::CpuDecodeAttention(qkv.contiguous(), c->k[i], c->v[i], pos + 1, scale);
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
    return EncodeCheckpoint(config, layout, data);
  }
};


}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_FLOW_MODEL_INTERNAL_H_

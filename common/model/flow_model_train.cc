// FlowModel's training (AdamW over packed batches, the loss over each
// target's grammar window, data-parallel steps) and scoring (Loss, Logits).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/rng.h"
#include "common/model/distributed.h"
#include "common/model/distributed_internal.h"
#include "common/model/flow_model.h"
#include "common/model/flow_model_internal.h"

namespace dgc::model {

using internal::Clock;
using internal::Guarded;
using internal::SecondsSince;
using internal::Tensor;
using internal::Bind;
using internal::DeviceName;
using internal::NetW;
using internal::PadSequences;
using internal::ResolvePrecision;

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

}  // namespace dgc::model

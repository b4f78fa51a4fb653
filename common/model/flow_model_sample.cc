// FlowModel's sampling: batched incremental decoding under the grammar,
// the per-token uniforms from a counter-based hash (the same draws for any
// batching and thread count), and the CPU decode-step attention kernel.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/rng.h"
#include "common/model/flow_model.h"
#include "common/model/flow_model_internal.h"
#include "common/model/sample_kernel.h"

namespace dgc::model {
namespace internal {
namespace {

// Decode-step attention on the CPU, for one new query per (row, head) over
// the cached keys/values [B*H, L, Dh] (first `t` positions): hand-written
// because libtorch runs this as B*H tiny matrix products (8192 BLAS calls a
// layer at batch 2048), about 5x slower. kDh > 0 fixes the head width at
// compile time (unrolled, vectorised); 0 is the generic fallback.
template <int kDh>
[[gnu::always_inline]] inline void AttnScores(const float* __restrict q, const float* __restrict k,
                                              float* __restrict s, int64_t bh_n, int64_t len, int64_t t, float scale,
                                              int64_t dh_rt) {
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
[[gnu::always_inline]] inline void AttnMix(const float* __restrict p, const float* __restrict v,
                                           float* __restrict y, int64_t bh_n, int64_t len, int64_t t, int64_t dh_rt) {
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

// The kernels by head width, each compiled twice: for AVX2 and for any
// x86-64 (picked once at load by the CPU). AVX2 without FMA: the same
// products and sums in the same order, so the same bits on either.
[[gnu::target_clones("avx2", "default")]] void AttnScoresAny(const float* q, const float* k, float* s,
                                                              int64_t bh, int64_t len, int64_t t, float sc,
                                                              int64_t dh) {
  switch (dh) {
    case 8: AttnScores<8>(q, k, s, bh, len, t, sc, dh); break;
    case 16: AttnScores<16>(q, k, s, bh, len, t, sc, dh); break;
    case 32: AttnScores<32>(q, k, s, bh, len, t, sc, dh); break;
    default: AttnScores<0>(q, k, s, bh, len, t, sc, dh); break;
  }
}

[[gnu::target_clones("avx2", "default")]] void AttnMixAny(const float* p, const float* v, float* y, int64_t bh,
                                                           int64_t len, int64_t t, int64_t dh) {
  switch (dh) {
    case 8: AttnMix<8>(p, v, y, bh, len, t, dh); break;
    case 16: AttnMix<16>(p, v, y, bh, len, t, dh); break;
    case 32: AttnMix<32>(p, v, y, bh, len, t, dh); break;
    default: AttnMix<0>(p, v, y, bh, len, t, dh); break;
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

}  // namespace

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
  AttnScoresAny(qp, kp, s.data_ptr<float>(), bh, len, t, sc, dh);
  SoftmaxRows(s);
  const float* pp = s.data_ptr<float>();
  Tensor y = torch::empty({b, w}, qkv.options());
  AttnMixAny(pp, vp, y.data_ptr<float>(), bh, len, t, dh);
  return y;
}

}  // namespace internal

using internal::Clock;
using internal::Guarded;
using internal::SecondsSince;
using internal::Tensor;
using internal::NetW;
using internal::SingleThreadedBlas;
using internal::UsableCpuCount;

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
  if (!options.draw_keys.empty() && options.draw_keys.size() != prefixes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Sample: ", options.draw_keys.size(), " draw keys for ",
                                                   prefixes.size(), " prefixes"));
  }
  const bool keyed = !options.draw_keys.empty();
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
      std::vector<int64_t> cur(n), lo(n), hi(n), sample_rows, picks, by_range, idx, glo, ghi;
      std::vector<float> uni(n), guni, scratch;
      struct HeadGroup {
        int64_t first, lo, hi;  // its rows: by_range[first, next group's first)
      };
      std::vector<HeadGroup> groups;
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
        if (ns > 0 && !greedy) {
          for (int64_t i = 0; i < ns; ++i) {
            // The uniform depends on (seed, sequence, position) only, not
            // on the batching. 24 bits: exact in float, never 0 or 1.
            const uint64_t row = static_cast<uint64_t>(rows[sample_rows[i]]);
            const auto [seed, index] =
                keyed ? options.draw_keys[row] : std::pair<uint64_t, uint64_t>{options.seed, row};
            uint64_t bits = Mix3(seed, index, t) >> 40;
            uni[i] = static_cast<float>((static_cast<double>(bits) + 0.5) * 0x1.0p-24);
          }
        }
        if (ns > 0 && m.device.is_cpu()) {
          // Rows in the same grammar state share a window; rows out of
          // step (a flow at its ports beside one at a packet size) would
          // make the union window 4-5x what the rows need. So the head
          // runs once per group of rows with the same window, neighbouring
          // groups merged while one product over their union costs less
          // than two (a call costs about kCallLogits logits).
          constexpr int64_t kCallLogits = 4096;
          by_range.resize(ns);
          for (int64_t i = 0; i < ns; ++i) by_range[i] = i;
          std::sort(by_range.begin(), by_range.end(), [&](int64_t x, int64_t y) {
            return lo[x] != lo[y] ? lo[x] < lo[y] : hi[x] != hi[y] ? hi[x] < hi[y] : x < y;
          });
          // Runs of rows with the same window, in order of window; then a
          // run joins the group before it when the product over their union
          // costs no more than the two apart.
          groups.clear();
          int64_t cost = 0;  // of the last group: rows x width
          for (int64_t k = 0; k < ns;) {
            const int64_t i = by_range[k];
            int64_t e = k + 1;
            while (e < ns && lo[by_range[e]] == lo[i] && hi[by_range[e]] == hi[i]) ++e;
            const int64_t run = (e - k) * (hi[i] - lo[i]);
            if (!groups.empty()) {
              HeadGroup& g = groups.back();
              const int64_t ulo = std::min(g.lo, lo[i]), uhi = std::max(g.hi, hi[i]);
              const int64_t joined = (e - g.first) * (uhi - ulo);
              if (joined <= cost + run + kCallLogits) {
                g.lo = ulo;
                g.hi = uhi;
                cost = joined;
                k = e;
                continue;
              }
            }
            groups.push_back({k, lo[i], hi[i]});
            cost = run;
            k = e;
          }
          for (size_t gi = 0; gi < groups.size(); ++gi) {
            const HeadGroup& g = groups[gi];
            const int64_t end = gi + 1 < groups.size() ? groups[gi + 1].first : ns, n = end - g.first;
            const int64_t gw = g.hi - g.lo;
            idx.resize(n);
            glo.resize(n);
            ghi.resize(n);
            guni.resize(n);
            for (int64_t k = 0; k < n; ++k) {
              const int64_t i = by_range[g.first + k];
              idx[k] = sample_rows[i];
              glo[k] = lo[i] - g.lo;
              ghi[k] = hi[i] - g.lo;
              guni[k] = uni[i];
            }
            bool all_in_order = n == b;
            for (int64_t k = 0; k < n && all_in_order; ++k) all_in_order = idx[k] == k;
            Tensor h = all_in_order ? hidden : hidden.index_select(0, torch::from_blob(idx.data(), {n}, i64));
            Tensor logits =
                torch::addmm(net.head_b.narrow(0, g.lo, gw), h, net.head_w.narrow(0, g.lo, gw).t()).contiguous();
            picks.resize(n);
            SampleRows(logits.data_ptr<float>(), n, gw, glo.data(), ghi.data(), guni.data(), greedy, inv_temp,
                       options.min_p, &scratch, picks.data());
            for (int64_t k = 0; k < n; ++k) out[rows[idx[k]]].push_back(static_cast<Token>(picks[k] + g.lo));
          }
        } else if (ns > 0) {
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
        if (n_alive > 0 && n_alive * 8 <= b * 7) {
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

}  // namespace dgc::model

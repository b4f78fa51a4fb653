// The torch-free half of the model's weights: see weights.h.
#include "common/model/weights.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/rng.h"

namespace dgc::model {

static_assert(sizeof(float) == 4, "float32 weights");

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

std::vector<float> InitialWeights(const NetworkConfig& c, const Layout& l, uint64_t seed) {
  std::vector<float> init(static_cast<size_t>(l.total));
  DetRng rng(seed);
  const double resid = 0.02 / std::sqrt(2.0 * c.depth);
  for (const ParamSpec& s : l.specs) {
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
  return init;
}

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

std::vector<float> AdapterAInit(uint64_t seed, const AdapterSpec& a, int32_t rank) {
  DetRng rng(Mix3(seed, static_cast<uint64_t>(a.block), static_cast<uint64_t>(a.target)));
  std::vector<float> v(static_cast<size_t>(rank * a.in));
  const double bound = 1.0 / std::sqrt(static_cast<double>(a.in));
  for (float& x : v) x = static_cast<float>((2.0 * rng.Uniform() - 1.0) * bound);
  return v;
}

namespace {

// base[row0 + i, j] += scale * sum_k B[i, k] A[k, j], in double, on the CPU:
// the same bits on every machine.
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

}  // namespace

void MergeOneCpu(const Layout& l, const AdapterSpec& a, const float* av, const float* bv, int32_t rank,
                 double scale, float* base) {
  const ParamSpec& mat = l.specs[a.matrix];
  if (a.vector) {
    AddVectorCpu(base + mat.offset, bv, a.out);
  } else {
    MergeAdapterCpu(base + mat.offset, mat.shape[1], a.row0, av, bv, a.out, a.in, rank, scale);
  }
}

Quantized Quantize(const float* x, int64_t n) {
  Quantized r;
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      r.finite = false;
      return r;
    }
    amax = std::max(amax, std::fabs(x[i]));
  }
  if (!(amax > 0)) return r;
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

}  // namespace dgc::model

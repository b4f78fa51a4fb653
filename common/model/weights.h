// The weights of a FlowModel as plain floats, without libtorch: the layout of
// the flat weight buffer (which named tensor lives where), the geometry of
// low-rank adapters, their seeded inits and their deterministic merge, int8
// quantisation, and the hash that names a parent model. Everything a decoder
// must rebuild bit for bit lives here, in plain C++ on the CPU, so it can be
// tested and fuzzed without torch and gives the same bits on every machine.
// Internal to common/model (flow_model*.cc, model_format.cc, their tests).
#ifndef DGC_COMMON_MODEL_WEIGHTS_H_
#define DGC_COMMON_MODEL_WEIGHTS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/flow_model.h"

namespace dgc::model {

enum class Init { kNormal, kResidual, kZero, kOne };

// One named tensor: its shape and where it lives in the flat buffer.
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

// The layout of a (valid) config, in the order the checkpoint stores it.
Layout MakeLayout(const NetworkConfig& c);

// Bounds a checkpoint or a caller may ask for (before anything is allocated).
[[nodiscard]] Status ValidateConfig(const NetworkConfig& c);

// GPT-2 style init from a seed: N(0, 0.02), residual projections scaled down
// by sqrt(2 * depth) so the residual stream does not grow with depth.
std::vector<float> InitialWeights(const NetworkConfig& c, const Layout& l, uint64_t seed);

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

// The adapters of `target_mask` (bit t for Target t), in storage order.
LoraLayout MakeLoraLayout(const NetworkConfig& c, const Layout& l, int32_t rank, double scale,
                          uint32_t target_mask);

// A's init, from a seed, in plain C++: Kaiming-uniform-like U(-1/sqrt(in),
// 1/sqrt(in)) as in common LoRA code. A delta that does not store A
// (lora_train_a false) names this seed, and the decoder regenerates A bit for bit.
std::vector<float> AdapterAInit(uint64_t seed, const AdapterSpec& a, int32_t rank);

// Merges adapter `a` (its A [rank, in] and B [out, rank], or its vector) into
// the flat base weights: base[row0 + i, j] += scale * sum_k B[i, k] A[k, j],
// accumulated in double, so a decoder reproduces the encoder's merged weights
// exactly (a chain of deltas depends on it).
void MergeOneCpu(const Layout& l, const AdapterSpec& a, const float* av, const float* bv, int32_t rank,
                 double scale, float* base);

// int8 quantisation, symmetric, one float scale per tensor.
struct Quantized {
  float scale = 0;  // 0: all zeros, no data stored
  std::vector<int8_t> q;
  bool finite = true;  // false: x held a NaN or an infinity, nothing stored
};
Quantized Quantize(const float* x, int64_t n);
void Dequantize(float scale, const int8_t* q, int64_t n, float* out);

// XXH64 over names, shapes and float data of the weights, in layout order:
// identifies a parent model for its deltas.
uint64_t HashWeights(const Layout& l, const float* flat);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_WEIGHTS_H_

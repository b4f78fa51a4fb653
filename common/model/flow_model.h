// FlowModel: a small decoder-only transformer over token sequences (one
// sequence per flow, see tokenizer.h), in libtorch's C++ API. This header is
// torch-free on purpose: most of dgc includes it, and a file that includes
// torch takes ~15 s and ~1 GB to compile. The implementation lives behind a
// pimpl in flow_model.cc, flow_model_train.cc and flow_model_sample.cc
// (flow_model_internal.h); the torch-free weight layout, quantisation and
// file formats are weights.h and model_format.h.
//
// Thread safety: a FlowModel is used by one thread at a time.
#ifndef DGC_COMMON_MODEL_FLOW_MODEL_H_
#define DGC_COMMON_MODEL_FLOW_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/base/status.h"
#include "common/model/grammar.h"
#include "nlohmann/json.hpp"

namespace dgc::model {

class DataParallelGroup;  // common/model/distributed.h

struct NetworkConfig {
  int32_t vocab_size = 0;  // from the grammar
  int32_t max_length = 0;  // from the grammar
  int32_t width = 64;      // model dimension
  int32_t depth = 2;       // transformer blocks
  int32_t heads = 4;
  int32_t mlp_ratio = 4;   // hidden width of each block's MLP, as a multiple of width
  // The output head reuses the token embedding (transposed): saves
  // vocab_size * width parameters, i.e. bytes in the base and in full deltas.
  bool tie_embeddings = true;

  nlohmann::json ToJson() const;
  static StatusOr<NetworkConfig> FromJson(const nlohmann::json& j);
};

struct TrainOptions {
  int32_t max_steps = 200;        // optimizer steps
  double max_seconds = 60;        // wall-clock budget; training stops at whichever comes first
  int32_t batch_size = 64;        // sequences per step
  double learning_rate = 3e-3;    // AdamW; cosine decay to 10% over max_steps, short warm-up
  double weight_decay = 0.0;
  int32_t lora_rank = 0;          // 0: train all weights; > 0: train only low-rank adapters
  uint64_t seed = 1;
  int32_t warmup_steps = 10;      // linear warm-up from lr/warmup_steps (capped at max_steps / 4)
  double grad_clip = 1.0;         // global gradient-norm clip; 0 disables
  // Adapter scale is lora_alpha / lora_rank; 0 means lora_alpha = 2 * lora_rank.
  double lora_alpha = 0;
  // What gets adapters. Per block: "q", "k", "v", "o" (attention
  // projections), "mlp_in", "mlp_out". Once per model: "emb" (the token
  // embedding, and with it the tied output head; its B is vocab_size x rank,
  // the most valuable bytes for a chunk whose token frequencies moved) and
  // "head_bias" (the output bias, vocab_size values, trained in full).
  // Measured in tests/bench/model_bench.cc.
  std::vector<std::string> lora_targets = {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"};
  // true: A is trained and stored too. false: A stays at its random init,
  // which the decoder regenerates from a seed kept in the delta, and only B
  // is trained and stored: half the bytes at the same rank, but per byte no
  // better (measured: trained rank 2 ~ seeded rank 4).
  bool lora_train_a = true;
  // Where to train: "" keeps the model on its device; "cpu", "cuda",
  // "cuda:N" or "auto" (the first GPU when there is one) moves the model
  // there first, and it stays there (Sample and Loss then run there too).
  // Serialised forms (ToBytes, ExportDelta) are the same on every device. A
  // cuda device on a build or machine without CUDA is FailedPrecondition.
  std::string device;
  // Arithmetic of the training forward and backward passes. "fp32"; "bf16":
  // matrix products (projections, attention, output head) in bfloat16 with
  // float32 master weights, optimizer state, layer norms, softmax and loss
  // (what CUDA autocast does, written out so it is the same code on every
  // libtorch version); "auto" (default): bf16 on a CUDA device of compute
  // capability 8.0 or later (A100, H100, ...), fp32 elsewhere (CPUs, V100).
  std::string precision = "auto";
  // Data-parallel training (not owned; must outlive Train; null: one
  // process). Every rank passes the same sequences and options: each step
  // every rank draws the same global batch of batch_size sequences, computes
  // the gradient of its shard (sequence i of the batch goes to rank
  // i % world_size), the gradients are summed across ranks (each rank's loss
  // is its token-loss sum over the global batch's token count, so the sum is
  // the one-rank gradient) and every rank applies the same update: the ranks
  // end with the same weights as one rank would, up to float rounding. Rank
  // 0's starting weights are broadcast first; the time budget is decided
  // jointly (all stop after the same step). See distributed.h.
  DataParallelGroup* data_parallel = nullptr;
  // The grammar the sequences follow (not owned; must outlive Train; null:
  // none). With it the loss at each position is the cross-entropy over the
  // tokens the grammar allows there, the window sampling draws from, and the
  // output head computes only those rows: most of a step's work at a 4.5k
  // vocabulary was the full softmax, which also spent capacity pushing down
  // tokens that can never be drawn. A target outside its window (a sequence
  // the grammar rejects) is scored over the whole vocabulary.
  const Grammar* grammar = nullptr;
};

struct TrainStats {
  int32_t steps = 0;
  double seconds = 0;
  double first_loss = 0;          // mean token cross-entropy, first step (over the grammar windows when given)
  double final_loss = 0;          // mean over the last few steps
  int64_t tokens = 0;             // non-pad tokens seen (the global batches, all ranks together)
  double tokens_per_second = 0;
  std::string device;             // where it trained, e.g. "cpu", "cuda:0"
  std::string precision;          // "fp32" or "bf16", as resolved
  int32_t world_size = 1;         // data-parallel ranks
  nlohmann::json ToJson() const;
};

struct SampleOptions {
  double temperature = 1.0;
  // Tokens less likely than min_p x the likeliest allowed one are never
  // drawn: an undertrained model's flat tail (a one-packet protocol given a
  // huge packet count) costs more fidelity than the rare real value it keeps.
  double min_p = 0.0;
  int32_t batch_size = 2048;      // sequences decoded together (KV-cached)
  uint64_t seed = 1;
  // Threads decoding batches at once (the output is the same for any
  // value). 0: on a CPU, the CPUs this process may use; on a GPU, 1.
  int32_t threads = 0;
  // Per prefix, what its draws are keyed on instead of (seed, its index):
  // (seed, index) pairs, so prefixes of several chunks sampled in one call
  // draw as when each chunk is sampled alone. Empty: (seed, index).
  std::vector<std::pair<uint64_t, uint64_t>> draw_keys;
};

struct DeltaOptions {
  int zstd_level = 19;
};

class FlowModel {
 public:
  // A freshly initialised model. `device`: "cpu", "cuda", "cuda:N" or "auto".
  [[nodiscard]] static StatusOr<std::unique_ptr<FlowModel>> Create(const NetworkConfig& config,
                                                                   uint64_t seed,
                                                                   const std::string& device = "cpu");
  // Checkpoint (.dgcm): magic, format version, config JSON echo, tensors,
  // XXH64 checksum. A corrupt, truncated or wrong-version file is an error
  // naming `path`.
  [[nodiscard]] static StatusOr<std::unique_ptr<FlowModel>> Load(const std::string& path,
                                                                 const std::string& device = "cpu");
  [[nodiscard]] static StatusOr<std::unique_ptr<FlowModel>> FromBytes(const std::string& bytes,
                                                                      const std::string& name,
                                                                      const std::string& device = "cpu");
  // Save/ToBytes write the effective weights: live adapters are merged into
  // the saved copy (the model keeps them, so ExportDelta still works). Save
  // writes atomically (common/base/files.h).
  [[nodiscard]] Status Save(const std::string& path) const;
  std::string ToBytes() const;
  ~FlowModel();

  const NetworkConfig& config() const;
  int64_t parameter_count() const;
  // The device the weights live on, e.g. "cpu" or "cuda:0".
  std::string device() const;
  // Moves weights, adapters and training state to `device` (as in Create).
  // On failure the model is unchanged.
  [[nodiscard]] Status To(const std::string& device);

  // Trains on `sequences` (each starts with kBos, ends with kEos, at most
  // max_length tokens), sampling batches with the seed. With lora_rank > 0
  // the base weights stay frozen and adapters (re)initialised here are
  // trained; ExportDelta then stores just them. Adapters of an earlier Train
  // are first merged into the base. Batches pack several sequences into each
  // row (no padding waste); tokens_per_second counts real tokens.
  [[nodiscard]] StatusOr<TrainStats> Train(const std::vector<std::vector<Token>>& sequences,
                                           const TrainOptions& options);

  // Mean token cross-entropy (nats) on `sequences`: for held-out checks.
  [[nodiscard]] StatusOr<double> Loss(const std::vector<std::vector<Token>>& sequences);

  // The change made by the last Train call against the weights it started
  // from: the adapters (lora_rank > 0) or the full difference (lora_rank 0),
  // int8-quantised per tensor and zstd-compressed, with a format version, a
  // hash of the parent weights and a checksum (MODEL_FORMATS.md). ApplyDelta
  // on a model equal to that starting point restores the trained model up to
  // quantisation, merging the change into the weights (sampling costs
  // nothing extra); on any other model it is refused (FailedPrecondition), a
  // corrupt or truncated delta is DataLoss, an unknown version
  // FailedPrecondition, all naming `name`. The merge runs in plain C++ on the
  // CPU, so every machine gets the same bits.
  [[nodiscard]] StatusOr<std::string> ExportDelta(const DeltaOptions& options) const;
  [[nodiscard]] Status ApplyDelta(const std::string& delta, const std::string& name);
  // Resets the model to the weights the last Train started from and applies
  // `delta` (normally this model's own ExportDelta): the model then equals,
  // bit for bit, what a decoder rebuilds from parent + delta, so it can be the
  // parent of the next chunk's delta. Without this, a chain would drift by
  // the quantisation error and the next delta's parent hash would not match.
  [[nodiscard]] Status AdoptDelta(const std::string& delta, const std::string& name);

  // Completes each prefix (each begins with kBos; further tokens are forced,
  // e.g. a start-offset token from the skeleton; lengths may differ) into a
  // full sequence under `grammar`: KV-cached incremental decoding, logits
  // outside grammar.Allowed() masked, sequences end at kEos. Same seed,
  // inputs and batch_size: same output. The random draw for a token depends
  // on (seed, index of the prefix, position) only (or on its draw_keys
  // entry and the position), so other batch sizes give
  // the same output except where float rounding of a differently shaped
  // product flips a draw (rare). temperature 0 is greedy. A prefix the
  // grammar rejects is InvalidArgument.
  [[nodiscard]] StatusOr<std::vector<std::vector<Token>>> Sample(
      const std::vector<std::vector<Token>>& prefixes, const Grammar& grammar,
      const SampleOptions& options);

  // Next-token logits after every position of each sequence: result[i] holds
  // sequences[i].size() rows of vocab_size floats, row p scoring the token
  // after sequences[i][0..p]. `kv_cached` runs the incremental decoder Sample
  // uses instead of the full causal forward pass; the two agree to float
  // rounding (the tests check it). For tests and diagnostics.
  [[nodiscard]] StatusOr<std::vector<std::vector<float>>> Logits(
      const std::vector<std::vector<Token>>& sequences, bool kv_cached);

  // A copy (weights and adapters) on the same device.
  [[nodiscard]] StatusOr<std::unique_ptr<FlowModel>> Clone() const;

 private:
  struct Impl;
  explicit FlowModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The CUDA devices this process can use, as a worker advertises them to the
// coordinator. Empty on a CPU-only libtorch (Debian's) or a machine without
// a visible GPU.
struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  uint64_t memory_bytes = 0;
};
std::vector<CudaDeviceInfo> CudaDevices();

// Configures libtorch's threads for this process the way that measured
// fastest on CPU: torch intra-op threads = 1, OpenBLAS uses the cores (unless
// OPENBLAS_NUM_THREADS says otherwise). Other values are for benchmarks.
void ConfigureCpuThreads(int intra_op_threads = 1);

// GFLOP/s of an n x n float32 matrix product through libtorch on the CPU
// (best of a few): tells whether OpenBLAS is in use (tens of GFLOP/s on two
// cores) or the reference BLAS (a few).
double CpuMatmulGflops(int n = 512);

// Whether this libtorch build has CUDA, and how many devices the machine shows.
bool CudaBuild();
int CudaDeviceCount();

// One line naming libtorch's version, its intra-op thread count and the BLAS
// it calls (OpenBLAS version, core type and threads when found), for logs and
// benchmark headers.
std::string CpuBackendInfo();

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_FLOW_MODEL_H_

// Chunk compression, the work a worker does (and the embedded `dgcctl
// compress` does in-process): from a parent model, fine-tune low-rank
// adapters on a bounded sample of the chunk's flows, store the delta
// quantised, check fidelity by regenerating the chunk and scoring it with the
// eval code, and raise the budget once when the score misses the target.
#ifndef DGC_COMMON_COMPRESS_CHUNK_COMPRESSOR_H_
#define DGC_COMMON_COMPRESS_CHUNK_COMPRESSOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/artifact.h"
#include "common/model/flow_model.h"
#include "common/model/generator.h"
#include "common/model/tokenizer.h"
#include "common/trace/chunk.h"
#include "nlohmann/json.hpp"

namespace dgc {

struct CompressOptions {
  model::TokenizerConfig tokenizer;
  model::NetworkConfig network;    // shape of a base trained here (vocab and length come from the tokenizer)
  model::TrainOptions warmup;      // base training (lora_rank 0)
  model::TrainOptions finetune;    // per chunk (lora_rank > 0: adapters; 0: full delta)
  int32_t sample_flows = 2048;     // flows of a chunk the fine-tune sees, at most
  int32_t warmup_flows = 20000;    // flows a base is trained on, at most
  // A chunk fine-tunes only when its flows plus the pool of flows from quiet
  // chunks since the last fine-tune reach this; otherwise it shares its
  // parent's model and its flows join the pool. On a quiet link one delta
  // then serves many chunks (a delta costs ~10-30 KB; a quiet hour's
  // header-only pcap compresses to a few hundred bytes).
  int32_t min_flows_to_finetune = 4096;
  bool check_fidelity = true;
  // The check regenerates and scores a window of the chunk holding about this
  // many flows (whole skeleton bins from a random start), not the whole chunk:
  // its cost stays bounded however busy the chunk. 0: the whole chunk.
  int32_t check_flows = 4096;
  double fidelity_target = 0.10;   // mean of the 17 metrics
  bool retry_on_miss = true;       // raise the budget once (x2 steps and seconds) on a miss
  // With the check on, a delta is kept only when it beats the parent alone
  // by this much (mean of the 17, same window and seed); otherwise the chunk
  // shares its parent's model. 0: always keep it.
  double min_delta_gain = 0.01;
  model::GenerateOptions generate;
  uint64_t seed = 1;
  // The byte budget of a chunk (--budget): `budget_fraction` of zstd -19 of
  // its header-only pcap when > 0, else `budget_bytes_per_mpkt` bytes per
  // million packets when > 0, else none (no exact flows). Within it the
  // skeleton and structure windows come first, then the delta (a chunk whose
  // budget leaves no room for one shares its parent's model), then as many
  // of the heaviest flows as fit, kept exactly. Each chunk's report gives the
  // split ("bytes": skeleton, structure, exact, delta, metadata).
  double budget_fraction = 0.1;
  double budget_bytes_per_mpkt = 0;
  // A fractional budget's reference is measured on header-only images up to
  // this many bytes and estimated beyond (baseline::Zstd19Size: zstd -19
  // alone would cost about 28 CPU-s per million packets). The report of a
  // chunk whose reference was estimated gives it as "reference_estimated".
  uint64_t exact_reference_up_to = uint64_t{4} << 20;
  // Non-empty: the caller's policy found fine-tuning from this parent futile
  // (library::CompressionPolicy::FutileFinetune, which says why): the chunk
  // shares its parent untrained, as if its delta had been dropped, and the
  // report gives the reason as "finetune_skipped".
  std::string skip_finetune;
  // Budget bytes earlier chunks left unspent, added to this chunk's (when it
  // has one): the last of a run of quiet chunks trains their pooled flows
  // with what they did not use.
  uint64_t extra_budget_bytes = 0;
  // What a byte of this chunk's record will cost once packed with its
  // span's other quiet records (RocksDbModelLibrary::PackChunks), as the
  // caller measured on the records of the span so far: the skeleton,
  // structure and record metadata are priced at it, so exact flows get
  // what packing frees. Applied only to a record that stays packable (under
  // 16 KB). 0 or >= 1: each byte costs a byte (a chunk that may stay alone).
  double packed_cost = 0;
  // What the chunk's record takes besides its skeleton (record fields,
  // report, fingerprint, keys), as the caller measured on the last chunk
  // committed; 0: an estimate (250 B, a quiet chunk's).
  int64_t metadata_bytes = 0;
  bool exact_flows = true;  // false (--no-exact): model only, no real 5-tuple kept
  bool structure = true;    // per-window distinct counts, and hosts steered to them
  // Where this process trains (not part of the options a job carries: each
  // worker decides). Empty: warmup.device / finetune.device. Two or more:
  // every training runs data-parallel, one rank per device
  // (model::TrainOnDevices); the model then samples on the first.
  std::vector<std::string> train_devices;
  // When set, every training goes through it instead (a worker leading a
  // job that spans workers: model::TrainingSession::Train).
  std::function<StatusOr<model::TrainStats>(model::FlowModel&, const std::vector<std::vector<model::Token>>&,
                                            const model::TrainOptions&)>
      trainer;

  nlohmann::json ToJson() const;
};

struct ChunkResult {
  model::ChunkArtifact artifact;
  // The model the library will rebuild for this chunk (parent + quantised
  // delta): the parent of the next chunk, so compression and regeneration
  // never drift apart.
  std::unique_ptr<model::FlowModel> model;
  // True when the chunk was fine-tuned (the caller's pool is used up), even
  // if the delta was then dropped for too small a gain, or when its
  // fine-tune was skipped as futile (CompressOptions::skip_finetune).
  bool finetuned = false;
  double seconds = 0;
  // How the chunk's bytes split (not stored: the skeleton and the delta say
  // it): {"budget", "skeleton", "structure", "exact", "delta", "exact_flows"}.
  nlohmann::json split;
};

// Training sequences for a chunk: a uniform sample of at most `max_flows` flows.
std::vector<std::vector<model::Token>> ChunkSequences(const Chunk& chunk, const model::FlowTokenizer& tokenizer,
                                                      int32_t max_flows, uint64_t seed);

// Trains a base model from scratch on the flows of `chunks` (the warm-up).
[[nodiscard]] StatusOr<std::unique_ptr<model::FlowModel>> TrainBase(const std::vector<Chunk>& chunks,
                                                                    const CompressOptions& options,
                                                                    nlohmann::json* report);

// Compresses one chunk against `parent` (whose library id is `parent_id`).
// `pool`: training sequences of earlier quiet chunks not yet fine-tuned on
// (see min_flows_to_finetune); the caller adds a quiet chunk's sequences
// (ChunkSequences) to it when the result says it was not fine-tuned, and
// clears it when it was.
[[nodiscard]] StatusOr<ChunkResult> CompressChunk(const Chunk& chunk, model::FlowModel& parent,
                                                  const std::string& parent_id, const CompressOptions& options,
                                                  const std::vector<std::vector<model::Token>>& pool = {});

// Regenerates a chunk from its rebuilt model and artifact.
[[nodiscard]] StatusOr<std::vector<PacketRecord>> RegenerateChunk(model::FlowModel& model,
                                                                  const model::ChunkArtifact& artifact,
                                                                  const model::TokenizerConfig& tokenizer,
                                                                  const model::GenerateOptions& options);

// Regenerates chunks that share `model` and `tokenizer` in one sampling
// pass (model::GenerateChunks), chunk c seeded with seeds[c]: the same
// packets as RegenerateChunk of each, for runs of quiet chunks at a fraction
// of the cost.
[[nodiscard]] StatusOr<std::vector<std::vector<PacketRecord>>> RegenerateChunks(
    model::FlowModel& model, const std::vector<const model::ChunkArtifact*>& artifacts,
    const model::TokenizerConfig& tokenizer, const std::vector<uint64_t>& seeds,
    const model::GenerateOptions& options);

// "base-<16 hex digits of XXH64>" of a checkpoint's bytes.
std::string BaseModelId(const std::string& checkpoint_bytes);

}  // namespace dgc

#endif  // DGC_COMMON_COMPRESS_CHUNK_COMPRESSOR_H_

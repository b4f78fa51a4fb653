// dgcctl warmup and dgcctl compress: the offline and the online phase, all in
// one process (the embedded default), over the RocksDB model library: per
// chunk a fingerprint, a parent chosen by drift (continue, switch, base, or
// retrain a new base), a fine-tune, and one WriteBatch commit. Inputs: files,
// stdin (`tcpdump -w - | dgcctl compress -`), or a directory followed as
// captures appear in it (--follow).
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/directory_follower.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/base/units.h"
#include "common/model/distributed.h"
#include "common/model/flow_model.h"
#include "common/trace/merged_reader.h"
#include "coordinator/dgcctl/commands.h"
#include "common/trace/pseudonymize.h"
#include "library/compression_policy.h"
#include "library/fingerprint.h"
#include "library/pack_pricer.h"
#include "library/rocksdb_model_library.h"
#include "common/compress/chunk_compressor.h"
#include "library/model_chain.h"

namespace dgc::ctl {
namespace {

// User + system CPU time of this process so far (every thread).
double ProcessCpuSeconds() {
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Knobs shared by warmup and compress.
struct ModelFlags {
  int width = 64, depth = 2, heads = 4;
  int warmup_steps = 600;
  double warmup_seconds = 120;
  int warmup_flows = 20000;
  int packets_per_flow = 16;
  std::string device = "auto";
};

void AddModelFlags(CLI::App* cmd, ModelFlags* f) {
  cmd->add_option("--width", f->width, "model width of a base trained here")->capture_default_str();
  cmd->add_option("--device", f->device,
                  "where to train and sample: auto (every GPU, else the CPU), cpu, cuda (every GPU), cuda:N, or a "
                  "list (cuda:0,cuda:1); several devices train data-parallel, one rank each")
      ->capture_default_str();
  cmd->add_option("--depth", f->depth, "transformer blocks")->capture_default_str();
  cmd->add_option("--heads", f->heads, "attention heads")->capture_default_str();
  cmd->add_option("--warmup-steps", f->warmup_steps, "base training steps")->capture_default_str();
  cmd->add_option("--warmup-seconds", f->warmup_seconds, "base training time budget")->capture_default_str();
  cmd->add_option("--warmup-flows", f->warmup_flows, "flows a base is trained on, at most")->capture_default_str();
  cmd->add_option("--packets-per-flow", f->packets_per_flow,
                  "packets of each flow with their own tokens (the rest is summarised)")
      ->capture_default_str()->check(CLI::Range(1, 16));
}

[[nodiscard]] Status ApplyModelFlags(const ModelFlags& f, CompressOptions* o) {
  o->network.width = f.width;
  o->network.depth = f.depth;
  o->network.heads = f.heads;
  o->warmup.max_steps = f.warmup_steps;
  o->warmup.max_seconds = f.warmup_seconds;
  o->warmup_flows = f.warmup_flows;
  o->tokenizer.max_packets = f.packets_per_flow;
  DGC_ASSIGN_OR_RETURN(std::vector<std::string> devices, model::ResolveDevices(f.device));
  o->warmup.device = o->finetune.device = devices[0];
  if (devices.size() > 1) o->train_devices = devices;
  return absl::OkStatus();
}

ChunkerOptions MakeChunkerOptions(const std::string& link, int64_t chunk_ns) {
  ChunkerOptions co;
  co.link = link;
  co.chunk_ns = chunk_ns;
  co.reorder_ns = std::min<int64_t>(chunk_ns, 60LL * kNanosPerSecond);
  return co;
}

// Reads inputs (files, directories, "-" for stdin) into chunks, handing each
// to `sink` as it completes (a stream is processed while it is read).
// `pseudo`, when set, maps every address before the chunker sees it.
Status ReadChunks(const std::vector<std::string>& inputs, const std::string& link, int64_t chunk_ns,
                  const std::function<Status(Chunk&&)>& sink, uint64_t* late_dropped,
                  Pseudonymizer* pseudo = nullptr) {
  DGC_ASSIGN_OR_RETURN(auto files, ExpandInputs(inputs));
  DGC_ASSIGN_OR_RETURN(auto reader, MergedReader::Open(files));
  Chunker chunker(MakeChunkerOptions(link, chunk_ns), [&](Chunk&& c, bool amend) -> Status {
    if (amend) {  // a window already compressed: its late packets are counted, not modelled
      *late_dropped += c.packets.size();
      return absl::OkStatus();
    }
    return sink(std::move(c));
  });
  PacketRecord p;
  uint32_t rb = 0;
  while (reader->Next(&p, &rb)) {
    if (pseudo) pseudo->Apply(&p);
    DGC_RETURN_IF_ERROR(chunker.Add(p, rb));
  }
  DGC_RETURN_IF_ERROR(chunker.Flush());
  for (const auto& w : reader->stats().warnings) std::cerr << "dgcctl: warning: " << w << "\n";
  return absl::OkStatus();
}

void Fail(const char* verb, const Status& st, int* exit_code) {
  std::cerr << "dgcctl " << verb << ": " << st.message() << "\n";
  *exit_code = 1;
}

}  // namespace

void RegisterWarmupCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("warmup", "train a base model on historical captures (the offline phase)");
  cmd->footer(R"(The base model is what every chunk's small delta is fine-tuned from; a
deployment pays for it once. Train it on a few representative captures of the
links it will serve.

Example:
  dgcctl warmup /captures/last-week/ -o base.dgcm
  dgcctl compress /captures/today/ --library lib/ --base base.dgcm)");
  struct Opts {
    std::vector<std::string> inputs;
    std::string out;
    double chunk_seconds = 600;
    ModelFlags model;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("inputs", o->inputs, "capture files or directories")->required();
  cmd->add_option("-o,--output", o->out, "base model file (.dgcm)")->required();
  cmd->add_option("--chunk-seconds", o->chunk_seconds, "chunk length the model will see")->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  AddModelFlags(cmd, &o->model);
  cmd->callback([o, exit_code] {
    model::ConfigureCpuThreads();
    CompressOptions opt;
    if (Status st = ApplyModelFlags(o->model, &opt); !st.ok()) return Fail("warmup", st, exit_code);
    opt.seed = o->seed;
    std::vector<Chunk> chunks;
    uint64_t late = 0;
    Status st = ReadChunks(o->inputs, "warmup", static_cast<int64_t>(o->chunk_seconds * 1e9),
                           [&](Chunk&& c) { chunks.push_back(std::move(c)); return absl::OkStatus(); }, &late);
    if (!st.ok()) return Fail("warmup", st, exit_code);
    nlohmann::json report;
    auto base = TrainBase(chunks, opt, &report);
    if (!base.ok()) return Fail("warmup", base.status(), exit_code);
    st = (*base)->Save(o->out);
    if (!st.ok()) return Fail("warmup", st, exit_code);
    std::cout << absl::StrFormat("base model %s: %d parameters, %d flows, %d steps in %.1f s, loss %.3f -> %.3f\n",
                                 o->out, (*base)->parameter_count(), report.value("flows", 0),
                                 report.value("steps", 0), report.value("seconds", 0.0),
                                 report.value("first_loss", 0.0), report.value("final_loss", 0.0));
  });
}

namespace {

int64_t WallNs() { return absl::ToUnixNanos(absl::Now()); }

// "42 s", "7.5 min", "3.1 h", "120 d": lags range from seconds (live) to years
// (an old capture replayed).
std::string HumanSeconds(double s) {
  if (s < 120) return absl::StrFormat("%.1f s", s);
  if (s < 7200) return absl::StrFormat("%.1f min", s / 60);
  if (s < 2 * 86400) return absl::StrFormat("%.1f h", s / 3600);
  return absl::StrFormat("%.0f d", s / 86400);
}


// The per-chunk work of the embedded compress: skip chunks the library holds
// already, fingerprint, choose a parent (ParentSelector over the library),
// train (a fine-tune, or a new base on a retrain), commit in one WriteBatch.
// Lives on the one thread that reads the input; not thread safe.
class Pipeline {
 public:
  struct Config {
    std::string link;
    CompressOptions opt;
    library::ParentSelector::Options selector;
    std::string key_fingerprint;  // of --pseudonymize; "" when addresses are real
    bool streaming = false;       // print lag on each chunk line
    size_t recent_chunks = 6;     // raw chunks kept in memory for a retrain
    // A link's first base is trained once its first chunks hold warmup_flows
    // flows or number this many, whichever comes first: a quiet link must
    // not wait days for its first commit.
    size_t warmup_chunks = 6;
    uint64_t recent_packets = 2000000;
    uint32_t futile_after = 2;  // --futile-after (library::PolicyOptions)
    // The spans the end of the input packs (--pack-span; 0: none): a chunk
    // after the first of its span is priced at the packed cost measured on
    // the span's records so far (CompressOptions::packed_cost).
    int64_t pack_span_ns = 0;
  };
  struct Totals {
    uint64_t chunks = 0, packets = 0, flows = 0, stored = 0, raw = 0, retried = 0, retry_skipped = 0, already = 0;
    double fidelity_sum = 0;
    int fidelity_n = 0;
    std::map<std::string, uint64_t> decisions;
    uint32_t max_depth = 0;
    double max_lag = 0, max_wait = 0;
    uint64_t deleted_raw_files = 0;
    // Stored bytes by what they hold; metadata is the rest: records, keys, fingerprints, model records.
    uint64_t skeleton = 0, structure = 0, exact = 0, delta = 0, exact_flows = 0;
  };

  Pipeline(RocksDbModelLibrary* lib, Config config)
      : lib_(lib),
        cfg_(std::move(config)),
        policy_(lib, PolicyOptionsOf(cfg_)),
        chain_(lib),
        pool_tokenizer_(cfg_.opt.tokenizer),
        pricer_(cfg_.pack_span_ns) {}

  // Stores a base model from 'dgcctl warmup': the first chunk of a link with
  // no model starts from it instead of training one.
  Status UseBase(const std::string& bytes) {
    base_id_ = BaseModelId(bytes);
    return lib_->PutModel(base_id_, bytes);
  }

  // A chunk as the chunker completed it.
  Status Add(Chunk&& c) {
    DGC_RETURN_IF_ERROR(CommitHeld(/*train_pool=*/false));  // a successor came: the held chunk goes as it is
    Entry e;
    e.emitted_ns = WallNs();
    auto existing = lib_->GetChunk(c.link, c.start_ns);
    if (existing.ok()) {
      tot_.already++;
      committed_until_ = std::max(committed_until_, c.end_ns());
      std::cerr << absl::StrFormat("chunk %s  %8d packets  already committed (model %s)\n", FormatRfc3339(c.start_ns),
                                   c.packets.size(), existing->model_id);
      return absl::OkStatus();
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    std::vector<Flow> flows = BuildFlows(c.packets, c.end_ns());
    e.flows = flows.size();
    e.fp = library::Fingerprint::Compute(c.packets, flows, c.start_ns, c.duration_ns);
    e.chunk = std::move(c);
    if (!pending_.empty()) return AddPending(std::move(e));
    return Route(std::move(e));
  }

  // End of input: chunks still waiting for a first base train it now, and
  // the last quiet chunk fine-tunes on the pool of flows its predecessors
  // left untrained (when the budget has room for a delta), so a capture
  // never ends with its last chunks unadapted.
  Status Finish() {
    if (!pending_.empty()) DGC_RETURN_IF_ERROR(TrainFirstBase());
    return CommitHeld(/*train_pool=*/true);
  }

  // Streaming: a quiet chunk held for its successor longer than
  // `hold_seconds` (wall time) is committed as at the end of the input.
  Status Tick(double hold_seconds) {
    if (!held_ || hold_seconds <= 0 || double(WallNs() - held_->since_ns) / 1e9 < hold_seconds) {
      return absl::OkStatus();
    }
    std::cerr << absl::StrFormat("no chunk after %s for %.0f s: training the pooled flows now\n",
                                 FormatRfc3339(held_->e.chunk.start_ns), hold_seconds);
    return CommitHeld(/*train_pool=*/true);
  }

  // End of the newest chunk committed (or found committed): raw input before
  // it is no longer needed.
  int64_t committed_until() const { return committed_until_; }
  Totals& totals() { return tot_; }
  const nlohmann::json& base_report() const { return base_report_; }

 private:
  struct Entry {
    Chunk chunk;
    library::Fingerprint fp;
    size_t flows = 0;
    int64_t emitted_ns = 0;
  };

  Status AddPending(Entry&& e) {
    pending_flows_ += e.flows;
    pending_.push_back(std::move(e));
    if (pending_flows_ >= uint64_t(cfg_.opt.warmup_flows) || pending_.size() >= cfg_.warmup_chunks) {
      return TrainFirstBase();
    }
    return absl::OkStatus();
  }

  // The options for `c`: the packed cost of its span so far, when it has
  // earlier chunks of its span to be packed with (library::PackPricer).
  CompressOptions OptionsFor(const Chunk& c) const {
    CompressOptions o = cfg_.opt;
    o.packed_cost = pricer_.PackedCost(c.start_ns);
    o.metadata_bytes = pricer_.metadata_bytes();
    return o;
  }

  Status Route(Entry&& e) {
    using K = library::ParentDecision::Kind;
    DGC_RETURN_IF_ERROR(CommitHeld(/*train_pool=*/false));  // chunks commit in order
    // The decision is the shared policy's (library/compression_policy.h), as
    // the cluster's coordinator makes it.
    DGC_ASSIGN_OR_RETURN(library::ChunkPlan plan, policy_.Plan(cfg_.link, e.fp, base_id_));
    library::ParentDecision d = plan.decision;
    if (d.kind == K::kRetrain) {
      if (d.trigger == library::ParentDecision::Trigger::kNoModel) return AddPending(std::move(e));
      return Retrain(std::move(e), plan);
    }
    DGC_ASSIGN_OR_RETURN(model::FlowModel * parent, chain_.Get(d.parent_id));
    uint32_t depth = chain_.last_depth();
    if (d.kind != K::kContinue || pool_parent_ != d.parent_id) ResetPool(d.parent_id);  // pooled flows belong to another model
    CompressOptions o = OptionsFor(e.chunk);
    DGC_ASSIGN_OR_RETURN(o.skip_finetune, policy_.FutileFinetune(cfg_.link, d.parent_id));
    DGC_ASSIGN_OR_RETURN(ChunkResult r, CompressChunk(e.chunk, *parent, d.parent_id, o, pool_));
    if (r.finetuned) {
      ResetPool(r.artifact.model_id);
      depth++;
      return Commit(std::move(e), d, std::move(r), std::nullopt, depth);
    }
    // A quiet chunk: its flows join the pool, and it waits (in memory, its
    // input not yet released) for its successor, or for the end of the input
    // that trains the pool on it.
    const size_t pool_before = pool_.size();
    auto seqs = ChunkSequences(e.chunk, pool_tokenizer_, cfg_.opt.sample_flows,
                               cfg_.opt.seed ^ static_cast<uint64_t>(e.chunk.seq()));
    pool_.insert(pool_.end(), std::make_move_iterator(seqs.begin()), std::make_move_iterator(seqs.end()));
    pool_parent_ = d.parent_id;
    held_.emplace(Held{std::move(e), d, std::move(r), depth, pool_before, WallNs()});
    return absl::OkStatus();
  }

  // Commits the held quiet chunk. With `train_pool` (end of input, or held
  // too long) it is compressed again, fine-tuning on the pooled flows of the
  // quiet chunks before it whatever --min-flows says, with the budget those
  // chunks left unspent added to its own; the delta is kept when it fits and
  // pays its way (the usual checks), else the chunk goes as first compressed.
  Status CommitHeld(bool train_pool) {
    if (!held_) return absl::OkStatus();
    Held h = std::move(*held_);
    held_.reset();
    if (train_pool && h.pool_before > 0) {
      DGC_ASSIGN_OR_RETURN(model::FlowModel * parent, chain_.Get(h.d.parent_id));
      CompressOptions o = OptionsFor(h.e.chunk);
      o.min_flows_to_finetune = 0;
      o.extra_budget_bytes = pool_unspent_;
      std::vector<std::vector<model::Token>> pool(pool_.begin(), pool_.begin() + long(h.pool_before));
      DGC_ASSIGN_OR_RETURN(ChunkResult r, CompressChunk(h.e.chunk, *parent, h.d.parent_id, o, pool));
      if (!r.artifact.delta.empty()) {
        r.artifact.report["pool_trained"] = absl::StrFormat("%d pooled flows, at the end of the input", pool.size());
        std::cerr << absl::StrFormat("chunk %s: fine-tuned on %d pooled flows of the quiet chunks before it\n",
                                     FormatRfc3339(h.e.chunk.start_ns), pool.size());
        ResetPool(r.artifact.model_id);
        return Commit(std::move(h.e), h.d, std::move(r), std::nullopt, h.depth + 1);
      }
    }
    uint64_t unspent = 0;
    if (int64_t b = h.r.split.value("budget", int64_t{0}); b > 0) unspent = uint64_t(b);
    const uint64_t kept = h.r.artifact.skeleton.size() + h.r.artifact.delta.size();
    unspent = unspent > kept ? unspent - kept : 0;
    DGC_RETURN_IF_ERROR(Commit(std::move(h.e), h.d, std::move(h.r), std::nullopt, h.depth));
    pool_unspent_ += unspent;
    return absl::OkStatus();
  }

  void ResetPool(const std::string& parent) {
    pool_.clear();
    pool_parent_ = parent;
    pool_unspent_ = 0;
  }

  // Trains a full model on `chunks` (newest first is fine) and returns its record.
  StatusOr<library::ModelRecord> TrainFull(const std::vector<const Entry*>& chunks, library::ModelKind kind,
                                           const std::string& reason, std::unique_ptr<model::FlowModel>* out) {
    std::vector<Chunk> train;
    library::Fingerprint fp;
    for (const Entry* e : chunks) {
      train.push_back(e->chunk);
      fp.Add(e->fp);
    }
    nlohmann::json report;
    DGC_ASSIGN_OR_RETURN(*out, TrainBase(train, cfg_.opt, &report));
    library::ModelRecord m;
    m.kind = kind;
    m.blob = (*out)->ToBytes();
    m.id = kind == library::ModelKind::kBase
               ? BaseModelId(m.blob)
               : absl::StrFormat("%s-%d-retrain", cfg_.link, chunks.front()->chunk.seq());
    report["chunks"] = chunks.size();
    report["reason"] = reason;
    m.training_json = report.dump();
    m.config_json = nlohmann::json{{"network", cfg_.opt.ToJson()["network"]}, {"tokenizer", cfg_.opt.tokenizer.ToJson()}}.dump();
    m.fingerprint = fp.Encode();
    base_report_ = report;
    std::cerr << absl::StrFormat("%s %s: %d chunk(s), %d flows, %d steps in %.1f s, loss %.3f -> %.3f\n",
                                 library::ModelKindName(kind), m.id, chunks.size(), report.value("flows", 0),
                                 report.value("steps", 0), report.value("seconds", 0.0),
                                 report.value("first_loss", 0.0), report.value("final_loss", 0.0));
    return m;
  }

  // The chunk's model is the full model just trained on it: no delta.
  StatusOr<ChunkResult> ShareFull(const Entry& e, model::FlowModel& full, const std::string& id) {
    CompressOptions o = OptionsFor(e.chunk);
    o.min_flows_to_finetune = std::numeric_limits<int32_t>::max();
    return CompressChunk(e.chunk, full, id, o, {});
  }

  Status TrainFirstBase() {
    std::deque<Entry> pending = std::move(pending_);
    pending_.clear();
    uint64_t flows = pending_flows_;
    pending_flows_ = 0;
    std::vector<const Entry*> all;
    for (const auto& e : pending) all.push_back(&e);
    library::ParentDecision d;
    d.kind = library::ParentDecision::Kind::kRetrain;
    d.reason = absl::StrFormat("no model for link %s yet: a base trained on its first %d chunk(s), %d flows",
                               cfg_.link, pending.size(), flows);
    std::cerr << absl::StrFormat("training a base model on the first %d chunk(s), %d flows...\n", pending.size(),
                                 flows);
    std::unique_ptr<model::FlowModel> base;
    DGC_ASSIGN_OR_RETURN(library::ModelRecord rec, TrainFull(all, library::ModelKind::kBase, d.reason, &base));
    d.parent_id = rec.id;
    Entry first = std::move(pending.front());
    pending.pop_front();
    DGC_ASSIGN_OR_RETURN(ChunkResult r, ShareFull(first, *base, rec.id));
    ResetPool(rec.id);
    DGC_RETURN_IF_ERROR(Commit(std::move(first), d, std::move(r), std::move(rec), 0));
    while (!pending.empty()) {
      Entry e = std::move(pending.front());
      pending.pop_front();
      DGC_RETURN_IF_ERROR(Route(std::move(e)));
    }
    return absl::OkStatus();
  }

  // Drift too large for every candidate, or the chain too deep: a new full
  // model (kind retrain) on this chunk and the recent chunks the policy chose
  // (those that look like it; all recent ones for a retrain by depth). A
  // chosen chunk no longer in memory (committed by an earlier run) is left out.
  Status Retrain(Entry&& e, const library::ChunkPlan& plan) {
    std::vector<const Entry*> set = {&e};
    for (const library::RecentChunk& rc : plan.retrain_with) {
      for (const Entry& r : recent_) {
        if (r.chunk.start_ns == rc.start_ns) set.push_back(&r);
      }
    }
    std::unique_ptr<model::FlowModel> full;
    DGC_ASSIGN_OR_RETURN(library::ModelRecord rec,
                         TrainFull(set, library::ModelKind::kRetrain, plan.decision.reason, &full));
    library::ParentDecision dd = plan.decision;
    dd.parent_id = rec.id;
    DGC_ASSIGN_OR_RETURN(ChunkResult r, ShareFull(e, *full, rec.id));
    ResetPool(rec.id);
    return Commit(std::move(e), dd, std::move(r), std::move(rec), 0);
  }

  Status Commit(Entry&& e, const library::ParentDecision& d, ChunkResult&& r,
                std::optional<library::ModelRecord> full, uint32_t depth) {
    const Chunk& c = e.chunk;
    RocksDbModelLibrary::ChunkCommit cc;
    cc.artifact = std::move(r.artifact);
    nlohmann::json& rep = cc.artifact.report;
    if (!cfg_.key_fingerprint.empty()) rep["pseudonymized"] = cfg_.key_fingerprint;
    // The replay rate of the attempt kept, next to the headline figures.
    if (!rep.contains("replay_rate") && rep.contains("attempts") && rep.contains("fidelity_mean")) {
      for (const auto& at : rep["attempts"]) {
        if (at.contains("fidelity") && at["fidelity"].value("mean", -1.0) == rep["fidelity_mean"].get<double>()) {
          rep["replay_rate"] = at["fidelity"].value("replay_rate", 0.0);
        }
      }
    }
    cc.fingerprint = e.fp;
    cc.decision = d;
    cc.new_full_model = std::move(full);
    if (!cc.artifact.delta.empty()) {
      cc.model_config_json = nlohmann::json{{"lora_rank", cfg_.opt.finetune.lora_rank}}.dump();
    }
    DGC_ASSIGN_OR_RETURN(auto result, lib_->CommitChunk(cc));
    committed_until_ = std::max(committed_until_, c.end_ns());
    if (result == RocksDbModelLibrary::CommitResult::kAlreadyCommitted) {
      tot_.already++;  // another process committed it meanwhile
      std::cerr << absl::StrFormat("chunk %s  already committed\n", FormatRfc3339(c.start_ns));
      return absl::OkStatus();
    }
    uint64_t stored = 0;
    if (auto rec = lib_->GetChunk(c.link, c.start_ns); rec.ok()) {
      stored = rec->stored_bytes;
      pricer_.Note(*rec, e.fp.Encode());
    }
    const auto& rp = cc.artifact.report;
    tot_.chunks++;
    tot_.packets += c.packets.size();
    tot_.flows += rp.value("flows", 0);
    tot_.stored += stored;
    tot_.raw += c.raw_bytes;
    tot_.retried += rp.value("retried", false) ? 1 : 0;
    tot_.retry_skipped += rp.contains("retry_skipped") ? 1 : 0;
    const nlohmann::json& sp = r.split;
    tot_.skeleton += sp.value("skeleton", uint64_t{0});
    tot_.structure += sp.value("structure", uint64_t{0});
    tot_.exact += sp.value("exact", uint64_t{0});
    tot_.delta += sp.value("delta", uint64_t{0});
    tot_.exact_flows += sp.value("exact_flows", uint64_t{0});
    tot_.decisions[library::DecisionName(d.kind)]++;
    tot_.max_depth = std::max(tot_.max_depth, depth);
    std::string fid = "-";
    if (rp.contains("fidelity_mean")) {
      double f = rp["fidelity_mean"].get<double>();
      tot_.fidelity_sum += f;
      tot_.fidelity_n++;
      fid = absl::StrFormat("%.3f%s", f, rp.value("retried", false) ? " (retried)" : "");
    }
    int64_t now = WallNs();
    double lag = double(now - c.end_ns()) / 1e9, wait = double(now - e.emitted_ns) / 1e9;
    tot_.max_lag = std::max(tot_.max_lag, lag);
    tot_.max_wait = std::max(tot_.max_wait, wait);
    std::string drift = d.drift >= 0 ? absl::StrFormat("%.3f", d.drift) : "-";
    std::string stream = cfg_.streaming ? absl::StrFormat("  lag %s (wait %.1f s)", HumanSeconds(lag), wait) : "";
    std::cerr << absl::StrFormat(
        "chunk %s  %8d packets %6d flows  %6.1f s  %7d B stored  fidelity %s  %-8s drift %s  depth %d  exact %d%s\n",
        FormatRfc3339(c.start_ns), c.packets.size(), rp.value("flows", 0), r.seconds, stored, fid,
        library::DecisionName(d.kind), drift, depth, sp.value("exact_flows", 0), stream);
    if (d.kind == library::ParentDecision::Kind::kRetrain || d.kind == library::ParentDecision::Kind::kSwitch ||
        d.kind == library::ParentDecision::Kind::kBase) {
      std::cerr << "  " << library::DecisionName(d.kind) << ": " << d.reason << "\n";
    }
    // Kept for a retrain; bounded by count and packets.
    recent_.push_front(std::move(e));
    uint64_t packets = 0;
    size_t keep = 0;
    for (; keep < recent_.size() && keep < cfg_.recent_chunks; ++keep) {
      packets += recent_[keep].chunk.packets.size();
      if (packets > cfg_.recent_packets && keep > 0) break;
    }
    recent_.resize(keep);
    return absl::OkStatus();
  }

  RocksDbModelLibrary* lib_;
  Config cfg_;
  static library::PolicyOptions PolicyOptionsOf(const Config& c) {
    library::PolicyOptions p;
    p.selector = c.selector;
    p.min_flows = uint64_t(std::max(0, c.opt.min_flows_to_finetune));
    p.warmup_flows = uint64_t(std::max(0, c.opt.warmup_flows));
    p.recent_chunks = c.recent_chunks;
    p.recent_packets = c.recent_packets;
    p.futile_after = library::FutileAfter(c.futile_after, c.opt.check_fidelity, c.opt.min_delta_gain);
    return p;
  }

  library::CompressionPolicy policy_;
  ModelChain chain_;
  model::FlowTokenizer pool_tokenizer_;
  std::string base_id_;
  std::deque<Entry> pending_;  // chunks waiting for the link's first base
  uint64_t pending_flows_ = 0;
  std::vector<std::vector<model::Token>> pool_;  // flows of quiet chunks since the last fine-tune
  std::string pool_parent_;                      // the model those quiet chunks shared
  uint64_t pool_unspent_ = 0;                    // budget bytes those quiet chunks did not use
  struct Held {
    Entry e;
    library::ParentDecision d;
    ChunkResult r;
    uint32_t depth = 0;
    size_t pool_before = 0;  // pool_ entries before this chunk's own
    int64_t since_ns = 0;
  };
  std::optional<Held> held_;  // the latest quiet chunk, not committed yet
  std::deque<Entry> recent_;                     // newest first
  int64_t committed_until_ = std::numeric_limits<int64_t>::min();
  library::PackPricer pricer_;  // what the next record costs once packed, and its metadata
  nlohmann::json base_report_;
  Totals tot_;
};

std::atomic<bool> g_stop{false};
extern "C" void OnStopSignal(int) { g_stop = true; }

struct FollowOptions {
  std::string dir;
  double poll_seconds = 1;
  double settle_seconds = 2;
  double idle_exit_seconds = 0;  // 0: follow until SIGINT/SIGTERM
  double keep_raw_hours = -1;    // < 0: delete a capture once all its chunks are committed
  // A quiet chunk waits for its successor before it commits (the last one
  // trains the pooled flows); past this many seconds of wall time without
  // one it commits as at the end of the input. 0: the chunk length.
  double hold_seconds = 0;
};

// Follows `o.dir`: capture files are read whole, in name order, once complete
// (a later file exists, or it has not changed for settle_seconds); chunks
// span files (one chunker). A file is deleted once every chunk holding its
// packets is committed, unless keep_raw_hours keeps it (by its mtime).
// Stops after idle_exit_seconds without a new file (then the open chunk is
// committed as it is: the stream is taken as ended), or on SIGINT/SIGTERM
// (then the open chunk is not committed: its files stay, and the next run
// reads them again; committed chunks are skipped).
Status Follow(const FollowOptions& o, const std::string& link, int64_t chunk_ns, Pipeline& pipe,
              Pseudonymizer* pseudo, uint64_t* late) {
  namespace fs = std::filesystem;
  using Clock = std::chrono::steady_clock;
  DGC_ASSIGN_OR_RETURN(DirectoryFollower follower, DirectoryFollower::Create({o.dir}, o.settle_seconds));
  Chunker chunker(MakeChunkerOptions(link, chunk_ns), [&](Chunk&& c, bool amend) -> Status {
    if (amend) {
      *late += c.packets.size();
      return absl::OkStatus();
    }
    return pipe.Add(std::move(c));
  });
  struct ReadFile {
    std::string path;
    int64_t max_ts = std::numeric_limits<int64_t>::min();
  };
  std::deque<ReadFile> waiting;  // read, not deleted yet (name order)
  auto last_activity = Clock::now();

  auto retention = [&]() {
    while (!waiting.empty()) {
      const ReadFile& f = waiting.front();
      if (f.max_ts != std::numeric_limits<int64_t>::min() && pipe.committed_until() <= f.max_ts) break;
      if (o.keep_raw_hours >= 0) {
        std::error_code e2;
        auto mt = fs::last_write_time(f.path, e2);
        if (!e2 && fs::file_time_type::clock::now() - mt <
                       std::chrono::duration<double>(o.keep_raw_hours * 3600)) {
          break;  // kept a while longer; later files wait behind it (name order)
        }
      }
      std::error_code e3;
      uintmax_t bytes = fs::file_size(f.path, e3);
      if (fs::remove(f.path, e3)) {
        pipe.totals().deleted_raw_files++;
        std::cerr << absl::StrFormat("deleted raw capture %s (%d bytes): all its chunks are committed\n", f.path,
                                     e3 ? 0 : bytes);
      } else if (e3) {
        std::cerr << "dgcctl compress: warning: could not delete " << f.path << ": " << e3.message() << "\n";
      } else {
        std::cerr << "dgcctl compress: warning: " << f.path << " was already gone (deleted by someone else)\n";
      }
      waiting.pop_front();
    }
  };

  while (!g_stop) {
    for (const std::string& path : follower.Poll()) {
      if (g_stop) break;  // not read: the next run reads it (it is kept)
      auto reader = MergedReader::Open({path});
      if (!reader.ok()) {
        std::cerr << "dgcctl compress: warning: skipping " << path << ": " << reader.status().message()
                  << " (kept)\n";
        continue;
      }
      ReadFile rf{path};
      PacketRecord p;
      uint32_t rb = 0;
      uint64_t n = 0;
      while ((*reader)->Next(&p, &rb)) {
        if (pseudo) pseudo->Apply(&p);
        rf.max_ts = std::max(rf.max_ts, p.ts_ns);
        DGC_RETURN_IF_ERROR(chunker.Add(p, rb));
        ++n;
      }
      for (const auto& w : (*reader)->stats().warnings) std::cerr << "dgcctl: warning: " << w << "\n";
      std::cerr << absl::StrFormat("read %s: %d packets\n", path, n);
      last_activity = Clock::now();  // idle counts from the end of the work, not its start
      waiting.push_back(std::move(rf));
      retention();
    }
    DGC_RETURN_IF_ERROR(pipe.Tick(o.hold_seconds > 0 ? o.hold_seconds : double(chunk_ns) / 1e9));
    retention();
    if (o.idle_exit_seconds > 0 &&
        std::chrono::duration<double>(Clock::now() - last_activity).count() >= o.idle_exit_seconds) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(o.poll_seconds));
  }
  if (g_stop) {
    std::cerr << "dgcctl compress: stopping; the open chunk is left to the next run (its captures are kept)\n";
    return absl::OkStatus();
  }
  DGC_RETURN_IF_ERROR(chunker.Flush());
  DGC_RETURN_IF_ERROR(pipe.Finish());
  retention();
  return absl::OkStatus();
}

}  // namespace

void RegisterCompressCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("compress", "compress captures into a model library (all in one process)");
  cmd->footer(R"(Each chunk of --chunk-seconds becomes a skeleton (exact per-bin counts) and a
small delta of low-rank adapters fine-tuned from a parent model the library
chooses by drift: the fingerprint of the chunk's traffic (protocols, ports,
sizes, rates, flow sizes) against the link's latest model (continue), a nearer
recent model (switch) or the base (base); when every candidate is too far, or
the delta chain would pass --max-depth, a new base is trained on the chunk and
the recent chunks like it (retrain). Each decision, its drift and reason are
recorded (dgcctl describe chunk). Without --base, the first chunks train the
base model. A chunk fine-tunes only when its flows plus those of the quiet
chunks before it reach --min-flows; until then chunks share the previous model
(or, when the parent alone misses --target by far and the budget has room, the
chunk fine-tunes anyway). The last chunk of the input (with --follow: a quiet
chunk with no successor for --hold-seconds) fine-tunes on the pooled flows of
the quiet chunks before it, with the budget they left unspent.
After training, a window of the chunk holding about --check-flows flows is
regenerated and scored (the 17 metrics of eval and the replay rate); a chunk
whose mean misses --target is trained once more with twice the budget. A
delta that beats its parent by less than --min-delta-gain on that window is
dropped; once the last --futile-after fine-tunes of a parent were all dropped,
its next chunks share it without training (every 7th tries again):
"finetune_skipped" in the chunk's report.

Every chunk is committed in one RocksDB write: compressing the same input
again changes nothing (its chunks are reported as already committed).

Streaming: '-' reads a pcap stream from stdin, and --follow DIR reads capture
files as they complete in DIR (in name order; a file is complete when a later
one exists or it has not changed for --settle-seconds), compressing chunks as
they complete and printing their lag (now - chunk end). With --follow, a
capture is deleted once all its chunks are committed (--keep-raw-hours keeps
it that long after it was written).

--budget B sets what each chunk may keep: a fraction of zstd -19 of its
header-only pcap (0.1x, the default) or bytes per million packets (50KB). The
skeleton (per-bin counts) and the per-minute distinct counts come first, then
the model delta when there is room for one (else the chunk shares its
parent's model), then the heaviest flows, kept exactly (5-tuple, start,
packets, bytes, duration, TTL, flags): regeneration forces their headers and
draws only their packets. With a large budget every flow is exact. Each
chunk's report gives the split (dgcctl describe chunk ... -o json: .report.bytes).
--no-exact keeps no real 5-tuple at all. zstd -19 runs at about 2.5 MB/s, so
on a chunk whose header-only pcap is over 4 MiB the 0.1x reference is
estimated (zstd -9 over it all, scaled by -19's ratio on a 16th of it; within
-1% to +4.5% on the bench traces, the report's "reference_estimated");
--exact-reference measures it on every chunk, at about 28 CPU-s per million
packets more.

--pseudonymize KEYFILE maps every address through CryptoPAn (Xu et al.,
AES-128; prefix-preserving: subnets stay subnets) before anything is trained
or stored; the library keeps only the scheme and the key's fingerprint
(cryptopan-aes128:<hex>), and 'dgcctl generate --key KEYFILE' maps generated
addresses back. KEYFILE holds the key as nfanon -K takes it, so both give the
same IPv4 pseudonyms: exactly 32 characters, or 0x and 64 hex digits (a final
newline is ignored); anything else is refused. Make one with
  openssl rand -hex 32 | sed 's/^/0x/' > site.key
Chunks compressed before dgc used CryptoPAn record siphash24-cryptopan; their
key file still maps them back, but new chunks get other pseudonyms.

Examples:
  dgcctl compress trace.pcap --library lib/
  dgcctl compress /captures/week/ --library lib/ --base base.dgcm --chunk-seconds 3600
  tcpdump -i eth0 -w - | dgcctl compress - --library lib/ --link eth0
  dgcctl compress --follow /spool/tap0 --library lib/ --link tap0 --keep-raw-hours 24
  dgcctl generate --library lib/ -o synth.pcap)");
  struct Opts {
    std::vector<std::string> inputs;
    std::string library, base, link = "default", output = "table", pseudonymize;
    double chunk_seconds = 600;
    ModelFlags model;
    CompressOptions opt;
    library::ParentSelector::Options selector;
    FollowOptions follow;
    size_t warmup_chunks = 0;  // 0: 6 when streaming, else --warmup-flows alone decides
    bool no_check = false, full_delta = false, no_exact = false, no_structure = false;
    std::string budget = "0.1x";
    std::string pack_span = "7d";
    uint32_t futile_after = 2;
  };
  auto o = std::make_shared<Opts>();
  o->opt.finetune.max_steps = 60;
  o->opt.finetune.max_seconds = 20;
  o->opt.finetune.lora_rank = 4;
  cmd->add_option("inputs", o->inputs, "capture files, directories, or - for stdin");
  cmd->add_option("--library", o->library, "model library directory (created when missing)")->required();
  cmd->add_option("--base", o->base, "a base model from 'dgcctl warmup'");
  cmd->add_option("--link", o->link, "link name of these captures")->capture_default_str();
  cmd->add_option("--chunk-seconds", o->chunk_seconds, "chunk length")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--rank", o->opt.finetune.lora_rank, "adapter rank")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->add_option("--adapters", o->opt.finetune.lora_targets,
                  "weights that get adapters, comma separated, of q,k,v,o,mlp_in,mlp_out,emb,head_bias")
      ->delimiter(',')
      ->check(CLI::IsMember({"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}))
      ->capture_default_str();
  cmd->add_flag("--full-delta", o->full_delta, "fine-tune every weight and store the full delta (for comparison)");
  cmd->add_option("--steps", o->opt.finetune.max_steps, "fine-tune steps per chunk")->capture_default_str();
  cmd->add_option("--seconds", o->opt.finetune.max_seconds, "fine-tune time budget per chunk")->capture_default_str();
  cmd->add_option("--sample-flows", o->opt.sample_flows, "flows per chunk the fine-tune sees, at most")
      ->capture_default_str();
  cmd->add_option("--min-delta-gain", o->opt.min_delta_gain,
                  "a delta must beat its parent's check mean by this much, else it is dropped (0: keep every delta)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--futile-after", o->futile_after,
                  "skip fine-tuning a parent whose last N fine-tunes were dropped for gaining too little (0: never)")
      ->capture_default_str();
  cmd->add_option("--min-flows", o->opt.min_flows_to_finetune, "flows (with those of quiet chunks before) a chunk needs to fine-tune; fewer: share the previous model")
      ->capture_default_str();
  cmd->add_option("--target", o->opt.fidelity_target, "fidelity target: mean of the 17 metrics")->capture_default_str();
  cmd->add_flag("--no-check", o->no_check, "skip the fidelity check (faster, no retry, no replay rate)");
  cmd->add_option("--check-flows", o->opt.check_flows,
                  "the check scores a window of the chunk with about this many flows (0: the whole chunk)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", o->opt.seed, "random seed")->capture_default_str();
  cmd->add_option("--budget", o->budget,
                  "bytes each chunk may keep: 0.1x = a tenth of zstd -19 of its header-only pcap, 50KB = per "
                  "million packets, none; dgc splits it between the skeleton, the delta and exact flows")
      ->capture_default_str();
  cmd->add_flag_callback(
      "--exact-reference", [o] { o->opt.exact_reference_up_to = UINT64_MAX; },
      "measure a fractional budget's zstd -19 reference on every chunk (by default it is estimated on "
      "chunks over 4 MiB of headers, measured within -1% to +4.5%)");
  cmd->add_flag("--no-exact", o->no_exact, "keep no flow exactly (model only: no real 5-tuple is stored)");
  cmd->add_flag("--no-structure", o->no_structure,
                "keep no per-window distinct counts (and do not steer regenerated hosts to them)");
  cmd->add_option("--drift-threshold", o->selector.drift_threshold,
                  "drift against the latest model above which a nearer model is sought")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--retrain-threshold", o->selector.retrain_threshold,
                  "drift against every candidate above which a new base is trained")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--max-depth", o->selector.max_depth, "longest delta chain; past it a new base is trained")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--warmup-chunks", o->warmup_chunks,
                  "without --base: train the link's first base after this many chunks (or --warmup-flows flows); "
                  "0: 6 when streaming (--follow, stdin), else only --warmup-flows (a quiet week's base sees all of it)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--follow", o->follow.dir, "follow a directory: compress capture files as they complete in it");
  cmd->add_option("--idle-exit", o->follow.idle_exit_seconds,
                  "with --follow: stop after this many seconds without a new file (0: follow until interrupted)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--poll-seconds", o->follow.poll_seconds, "with --follow: how often the directory is listed")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--settle-seconds", o->follow.settle_seconds,
                  "with --follow: the newest file is complete once unchanged this long (earlier files once a later "
                  "one exists; *.part, *.tmp and hidden files are never read: write aside, then rename; the rule "
                  "dgc-ingest --follow uses)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-raw-hours", o->follow.keep_raw_hours,
                  "with --follow: keep a capture this many hours after it was written (default: delete it once "
                  "its chunks are committed)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--hold-seconds", o->follow.hold_seconds,
                  "with --follow: a quiet chunk waits this long for its successor, then fine-tunes on the "
                  "pooled flows of the quiet chunks before it as at the end of the input (0: --chunk-seconds)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--pseudonymize", o->pseudonymize,
                  "key file (32 characters or 0x + 64 hex digits, as nfanon -K): map every address through "
                  "CryptoPAn before training");
  cmd->add_option("--pack-span", o->pack_span,
                  "at the end, pack the small records of quiet chunks of each span (aligned to the epoch) together: "
                  "one compressed frame per span is about half their frames one by one (0: keep each on its own)")
      ->capture_default_str();
  cmd->add_option("-o,--output", o->output, "summary format: table or json")
      ->capture_default_str()->check(CLI::IsMember({"table", "json"}));
  AddModelFlags(cmd, &o->model);
  cmd->callback([o, exit_code] {
    if (o->follow.dir.empty() == o->inputs.empty()) {
      return Fail("compress", absl::InvalidArgumentError("give capture inputs (or - for stdin), or --follow DIR, not both"),
                  exit_code);
    }
    model::ConfigureCpuThreads();
    int64_t span_ns = 0;
    if (o->pack_span != "0") {
      auto d = ParseDurationNs(o->pack_span);
      if (!d.ok() || *d <= 0) {
        return Fail("compress", absl::InvalidArgumentError(absl::StrCat("--pack-span '", o->pack_span,
                                                                        "': give a duration such as 1d or 6h, or 0")),
                    exit_code);
      }
      span_ns = *d;
    }
    auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = ProcessCpuSeconds();
    CompressOptions& opt = o->opt;
    if (Status st = ApplyModelFlags(o->model, &opt); !st.ok()) return Fail("compress", st, exit_code);
    opt.check_fidelity = !o->no_check;
    if (o->full_delta) opt.finetune.lora_rank = 0;
    auto budget = ParseBudget(o->budget);
    if (!budget.ok()) return Fail("compress", budget.status(), exit_code);
    opt.budget_fraction = budget->fraction;
    opt.budget_bytes_per_mpkt = budget->bytes_per_mpkt;
    opt.exact_flows = !o->no_exact;
    opt.structure = !o->no_structure;
    std::optional<Pseudonymizer> pseudo;
    if (!o->pseudonymize.empty()) {
      auto p = Pseudonymizer::FromKeyFile(o->pseudonymize);
      if (!p.ok()) return Fail("compress", p.status(), exit_code);
      pseudo.emplace(std::move(*p));
    }
    auto lib = OpenModelLibrary(o->library);
    if (!lib.ok()) return Fail("compress", lib.status(), exit_code);
    if (pseudo) {
      // The link's earlier chunks under another scheme or key hold other
      // pseudonyms for the same hosts: say so (generate --key maps each back).
      if (auto latest = (*lib)->LatestChunk(o->link); latest.ok()) {
        auto rep = nlohmann::json::parse(latest->report_json, nullptr, /*allow_exceptions=*/false);
        std::string fp = rep.is_object() ? rep.value("pseudonymized", "") : "";
        if (!fp.empty() && fp != pseudo->KeyFingerprint()) {
          auto scheme = PseudonymSchemeOfFingerprint(fp);
          std::cerr << "dgcctl compress: note: link " << o->link << "'s latest chunk was pseudonymized "
                    << (scheme.ok() && *scheme != pseudo->scheme() ? "with the older scheme " : "with another key ")
                    << fp << "; new chunks get " << pseudo->KeyFingerprint()
                    << ", so a host has another pseudonym in them\n";
        }
      }
    }

    Pipeline::Config pc;
    pc.link = o->link;
    pc.opt = opt;
    pc.selector = o->selector;
    pc.futile_after = o->futile_after;
    pc.key_fingerprint = pseudo ? pseudo->KeyFingerprint() : "";
    pc.streaming = !o->follow.dir.empty() ||
                   std::find(o->inputs.begin(), o->inputs.end(), "-") != o->inputs.end();
    // Streaming cannot wait for a quiet link's --warmup-flows; files can, and
    // a base that saw more of the link measured better (blink-cam-01: mean
    // 0.18 with the week's flows, 0.27 with its first 6 hours').
    pc.pack_span_ns = span_ns;
    pc.warmup_chunks = o->warmup_chunks ? o->warmup_chunks
                                        : (pc.streaming ? 6 : std::numeric_limits<size_t>::max());
    Pipeline pipe(lib->get(), pc);
    if (!o->base.empty()) {
      auto bytes = ReadFile(o->base);
      if (!bytes.ok()) return Fail("compress", bytes.status(), exit_code);
      auto m = model::FlowModel::FromBytes(*bytes, o->base);
      if (!m.ok()) return Fail("compress", m.status(), exit_code);
      Status st = pipe.UseBase(*bytes);
      if (!st.ok()) return Fail("compress", st, exit_code);
    }
    uint64_t late = 0;
    int64_t chunk_ns = static_cast<int64_t>(o->chunk_seconds * 1e9);
    Status st;
    if (!o->follow.dir.empty()) {
      std::signal(SIGINT, OnStopSignal);
      std::signal(SIGTERM, OnStopSignal);
      st = Follow(o->follow, o->link, chunk_ns, pipe, pseudo ? &*pseudo : nullptr, &late);
    } else {
      st = ReadChunks(o->inputs, o->link, chunk_ns, [&](Chunk&& c) { return pipe.Add(std::move(c)); }, &late,
                      pseudo ? &*pseudo : nullptr);
      if (st.ok()) st = pipe.Finish();
    }
    if (!st.ok()) return Fail("compress", st, exit_code);
    Pipeline::Totals tot = pipe.totals();
    const uint64_t stored_unpacked = tot.stored;  // the split below is of the chunks as compressed one by one
    // Pack the quiet chunks of the spans this run wrote (their records are
    // committed: a kill here leaves them unpacked, nothing lost).
    RocksDbModelLibrary::PackReport packed;
    if (span_ns > 0 && tot.chunks > 0) {
      RocksDbModelLibrary::PackOptions po;
      po.span_ns = span_ns;
      auto pr = (*lib)->PackChunks(o->link, po);
      if (!pr.ok()) return Fail("compress", pr.status(), exit_code);
      packed = *pr;
      tot.stored = tot.stored + packed.bytes_after > packed.bytes_before ? tot.stored + packed.bytes_after - packed.bytes_before : 0;
    }
    auto usage = (*lib)->GetUsage();
    std::string base_model;
    if (auto latest = (*lib)->LatestChunk(o->link); latest.ok()) {
      if (auto chain = (*lib)->Ancestors(latest->model_id); chain.ok()) base_model = chain->back().id;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = ProcessCpuSeconds() - cpu0;
    nlohmann::json decisions = nlohmann::json::object();
    for (const auto& [k, v] : tot.decisions) decisions[k] = v;
    nlohmann::json j = {{"library", o->library},
                        {"link", o->link},
                        {"chunks", tot.chunks},
                        {"already_committed", tot.already},
                        {"packets", tot.packets},
                        {"flows", tot.flows},
                        {"stored_bytes", tot.stored},
                        {"stored_bytes_per_million_packets", tot.packets ? tot.stored * 1e6 / tot.packets : 0.0},
                        {"stored_split",
                         {{"skeleton", tot.skeleton},
                          {"structure", tot.structure},
                          {"exact", tot.exact},
                          {"delta", tot.delta},
                          {"metadata", stored_unpacked - std::min(stored_unpacked, tot.skeleton + tot.structure +
                                                                                       tot.exact + tot.delta)}}},
                        {"exact_flows", tot.exact_flows},
                        {"packed",
                         {{"packs", packed.packs},
                          {"chunks", packed.chunks},
                          {"bytes_before", packed.bytes_before},
                          {"bytes_after", packed.bytes_after}}},
                        {"budget", o->budget},
                        {"raw_bytes", tot.raw},
                        {"base_model", base_model},
                        {"base_model_bytes", usage.ok() ? usage->model_bytes : 0},
                        {"fidelity_mean", tot.fidelity_n ? tot.fidelity_sum / tot.fidelity_n : 0.0},
                        {"chunks_retried", tot.retried},
                        {"retries_skipped", tot.retry_skipped},
                        {"decisions", decisions},
                        {"max_chain_depth", tot.max_depth},
                        {"max_depth_bound", o->selector.max_depth},
                        {"max_lag_seconds", tot.max_lag},
                        {"max_wait_seconds", tot.max_wait},
                        {"deleted_raw_files", tot.deleted_raw_files},
                        {"pseudonymized", pc.key_fingerprint},
                        {"late_packets_dropped", late},
                        {"seconds", secs},
                        {"seconds_per_million_packets", tot.packets ? secs * 1e6 / tot.packets : 0.0},
                        {"cpu_seconds", cpu},
                        {"cpu_seconds_per_million_packets", tot.packets ? cpu * 1e6 / tot.packets : 0.0},
                        {"options", opt.ToJson()}};
    if (!pipe.base_report().is_null()) j["base_training"] = pipe.base_report();
    if (o->output == "json") {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::string dec;
    for (const auto& [k, v] : tot.decisions) absl::StrAppend(&dec, dec.empty() ? "" : ", ", k, " ", v);
    std::cout << absl::StrFormat(
        "compressed %d packets (%d flows) into %d chunks in %.1f s, %.1f CPU-s (%d already committed)\n"
        "stored     %d bytes in chunks (%.0f B per million packets), base models %d bytes (paid once)\n"
        "raw        %d bytes captured: %.1fx smaller\n"
        "fidelity   mean of the 17 metrics over chunks: %.3f (target %.2f), %d chunk(s) retried, %d retry(ies) "
        "skipped (the miss beyond what twice the steps gain)\n"
        "parents    %s; deepest delta chain %d (bound %d)\n",
        tot.packets, tot.flows, tot.chunks, secs, cpu, tot.already, tot.stored,
        tot.packets ? tot.stored * 1e6 / tot.packets : 0.0, usage.ok() ? usage->model_bytes : 0, tot.raw,
        tot.stored ? double(tot.raw) / tot.stored : 0.0, tot.fidelity_n ? tot.fidelity_sum / tot.fidelity_n : 0.0,
        opt.fidelity_target, tot.retried, tot.retry_skipped, dec.empty() ? "-" : dec, tot.max_depth, o->selector.max_depth);
    const auto& split = j["stored_split"];
    std::cout << absl::StrFormat(
        "budget     %s: skeleton %d B, structure %d B, exact flows %d B (%d flows), deltas %d B, metadata %d B\n",
        o->budget, split["skeleton"].get<uint64_t>(), split["structure"].get<uint64_t>(),
        split["exact"].get<uint64_t>(), tot.exact_flows, split["delta"].get<uint64_t>(),
        split["metadata"].get<uint64_t>());
    if (packed.packs) {
      std::cout << absl::StrFormat("packed     %d quiet chunks into %d pack(s): %d B -> %d B (the budget split above is "
                                   "per chunk, before packing)\n",
                                   packed.chunks, packed.packs, packed.bytes_before, packed.bytes_after);
    }
    if (pc.streaming) {
      std::cout << absl::StrFormat("lag        at most %s after chunk end, %.1f s after the chunk completed\n",
                                   HumanSeconds(tot.max_lag), tot.max_wait);
    }
    if (pseudo) std::cout << "pseudonym  " << pc.key_fingerprint << " (scheme " << PseudonymSchemeName(pseudo->scheme()) << ")\n";
    if (tot.deleted_raw_files) std::cout << "retention  " << tot.deleted_raw_files << " raw capture(s) deleted\n";
    if (late) std::cout << "warning: " << late << " packets arrived after their chunk was compressed\n";
  });
}

}  // namespace dgc::ctl

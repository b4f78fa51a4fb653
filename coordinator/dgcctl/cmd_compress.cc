// dgcctl warmup and dgcctl compress: the offline and the online phase, all in
// one process (the embedded default).
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>

#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/model/flow_model.h"
#include "common/trace/merged_reader.h"
#include "coordinator/dgcctl/commands.h"
#include "coordinator/library/model_library.h"
#include "worker/chunk_compressor.h"
#include "worker/model_chain.h"

namespace dgc::ctl {
namespace {

// Knobs shared by warmup and compress.
struct ModelFlags {
  int width = 64, depth = 2, heads = 4;
  int warmup_steps = 600;
  double warmup_seconds = 120;
  int warmup_flows = 20000;
  int packets_per_flow = 16;
};

void AddModelFlags(CLI::App* cmd, ModelFlags* f) {
  cmd->add_option("--width", f->width, "model width of a base trained here")->capture_default_str();
  cmd->add_option("--depth", f->depth, "transformer blocks")->capture_default_str();
  cmd->add_option("--heads", f->heads, "attention heads")->capture_default_str();
  cmd->add_option("--warmup-steps", f->warmup_steps, "base training steps")->capture_default_str();
  cmd->add_option("--warmup-seconds", f->warmup_seconds, "base training time budget")->capture_default_str();
  cmd->add_option("--warmup-flows", f->warmup_flows, "flows a base is trained on, at most")->capture_default_str();
  cmd->add_option("--packets-per-flow", f->packets_per_flow,
                  "packets of each flow with their own tokens (the rest is summarised)")
      ->capture_default_str()->check(CLI::Range(1, 16));
}

void ApplyModelFlags(const ModelFlags& f, CompressOptions* o) {
  o->network.width = f.width;
  o->network.depth = f.depth;
  o->network.heads = f.heads;
  o->warmup.max_steps = f.warmup_steps;
  o->warmup.max_seconds = f.warmup_seconds;
  o->warmup_flows = f.warmup_flows;
  o->tokenizer.max_packets = f.packets_per_flow;
}

// Reads inputs into chunks, handing each to `sink` as it completes.
Status ReadChunks(const std::vector<std::string>& inputs, const std::string& link, int64_t chunk_ns,
                  const std::function<Status(Chunk&&)>& sink, uint64_t* late_dropped) {
  DGC_ASSIGN_OR_RETURN(auto files, ExpandInputs(inputs));
  DGC_ASSIGN_OR_RETURN(auto reader, MergedReader::Open(files));
  ChunkerOptions co;
  co.link = link;
  co.chunk_ns = chunk_ns;
  co.reorder_ns = std::min<int64_t>(chunk_ns, 60LL * kNanosPerSecond);
  Chunker chunker(co, [&](Chunk&& c, bool amend) -> Status {
    if (amend) {  // a window already compressed: its late packets are counted, not modelled
      *late_dropped += c.packets.size();
      return absl::OkStatus();
    }
    return sink(std::move(c));
  });
  PacketRecord p;
  uint32_t rb = 0;
  while (reader->Next(&p, &rb)) DGC_RETURN_IF_ERROR(chunker.Add(p, rb));
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
    ApplyModelFlags(o->model, &opt);
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

void RegisterCompressCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("compress", "compress captures into a model library (all in one process)");
  cmd->footer(R"(Each chunk of --chunk-seconds becomes a skeleton (exact per-bin counts) and a
small delta of low-rank adapters fine-tuned from the previous chunk's model.
Without --base, the first chunks train the base model. A chunk fine-tunes only
when its flows plus those of the quiet chunks before it reach --min-flows;
until then chunks share the previous model (quiet links stay cheap: one delta
serves many quiet hours, trained on all their flows). After
training, a window of the chunk holding about --check-flows flows is
regenerated and scored (the 17 metrics of eval); a chunk whose mean misses
--target is trained once more with twice the budget.

Examples:
  dgcctl compress trace.pcap --library lib/
  dgcctl compress /captures/week/ --library lib/ --base base.dgcm --chunk-seconds 3600
  dgcctl generate --library lib/ -o synth.pcap)");
  struct Opts {
    std::vector<std::string> inputs;
    std::string library, base, link = "default", output = "table";
    double chunk_seconds = 600;
    ModelFlags model;
    CompressOptions opt;
    bool no_check = false, full_delta = false;
  };
  auto o = std::make_shared<Opts>();
  o->opt.finetune.max_steps = 60;
  o->opt.finetune.max_seconds = 20;
  o->opt.finetune.lora_rank = 4;
  cmd->add_option("inputs", o->inputs, "capture files, directories, or - for stdin")->required();
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
  cmd->add_option("--min-flows", o->opt.min_flows_to_finetune, "flows (with those of quiet chunks before) a chunk needs to fine-tune; fewer: share the previous model")
      ->capture_default_str();
  cmd->add_option("--target", o->opt.fidelity_target, "fidelity target: mean of the 17 metrics")->capture_default_str();
  cmd->add_flag("--no-check", o->no_check, "skip the fidelity check (faster, no retry)");
  cmd->add_option("--check-flows", o->opt.check_flows,
                  "the check scores a window of the chunk with about this many flows (0: the whole chunk)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", o->opt.seed, "random seed")->capture_default_str();
  cmd->add_option("-o,--output", o->output, "summary format: table or json")
      ->capture_default_str()->check(CLI::IsMember({"table", "json"}));
  AddModelFlags(cmd, &o->model);
  cmd->callback([o, exit_code] {
    model::ConfigureCpuThreads();
    auto t0 = std::chrono::steady_clock::now();
    CompressOptions& opt = o->opt;
    ApplyModelFlags(o->model, &opt);
    opt.check_fidelity = !o->no_check;
    if (o->full_delta) opt.finetune.lora_rank = 0;
    auto lib = DirModelLibrary::Open(o->library);
    if (!lib.ok()) return Fail("compress", lib.status(), exit_code);

    std::unique_ptr<model::FlowModel> current;
    std::string current_id;
    nlohmann::json base_report;
    if (!o->base.empty()) {
      auto bytes = ReadFile(o->base);
      if (!bytes.ok()) return Fail("compress", bytes.status(), exit_code);
      auto m = model::FlowModel::FromBytes(*bytes, o->base);
      if (!m.ok()) return Fail("compress", m.status(), exit_code);
      current = std::move(*m);
      current_id = BaseModelId(*bytes);
      Status st = (*lib)->PutModel(current_id, *bytes);
      if (!st.ok()) return Fail("compress", st, exit_code);
    } else {
      // Continue the link's chain when the library already holds it.
      ChunkQuery q;
      q.link = o->link;
      auto existing = (*lib)->Chunks(q);
      if (!existing.ok()) return Fail("compress", existing.status(), exit_code);
      if (!existing->empty()) {
        ModelChain chain(lib->get(), *existing);
        auto m = chain.Get(existing->back().model_id);
        if (!m.ok()) return Fail("compress", m.status(), exit_code);
        auto c = (*m)->Clone();
        if (!c.ok()) return Fail("compress", c.status(), exit_code);
        current = std::move(*c);
        current_id = existing->back().model_id;
      }
    }
    struct Totals {
      uint64_t chunks = 0, packets = 0, flows = 0, stored = 0, raw = 0, retried = 0;
      double fidelity_sum = 0;
      int fidelity_n = 0;
    } tot;
    std::deque<Chunk> pending;  // chunks waiting for a base model
    uint64_t pending_flows = 0;
    std::vector<std::vector<model::Token>> pool;  // flows of quiet chunks since the last fine-tune
    model::FlowTokenizer pool_tokenizer(opt.tokenizer);
    auto compress_one = [&](Chunk&& c) -> Status {
      DGC_ASSIGN_OR_RETURN(ChunkResult r, CompressChunk(c, *current, current_id, opt, pool));
      if (r.finetuned) {
        pool.clear();
      } else {
        auto seqs = ChunkSequences(c, pool_tokenizer, opt.sample_flows, opt.seed ^ static_cast<uint64_t>(c.seq()));
        pool.insert(pool.end(), std::make_move_iterator(seqs.begin()), std::make_move_iterator(seqs.end()));
      }
      DGC_RETURN_IF_ERROR((*lib)->PutChunk(r.artifact));
      uint64_t stored = r.artifact.Encode().size();
      const auto& rep = r.artifact.report;
      tot.chunks++;
      tot.packets += c.packets.size();
      tot.flows += rep.value("flows", 0);
      tot.stored += stored;
      tot.raw += c.raw_bytes;
      tot.retried += rep.value("retried", false) ? 1 : 0;
      std::string fid = "-";
      if (rep.contains("fidelity_mean")) {
        double f = rep["fidelity_mean"].get<double>();
        tot.fidelity_sum += f;
        tot.fidelity_n++;
        fid = absl::StrFormat("%.3f%s", f, rep.value("retried", false) ? " (retried)" : "");
      }
      std::cerr << absl::StrFormat("chunk %s  %8d packets %6d flows  %6.1f s  %7d B stored  fidelity %s\n",
                                   FormatRfc3339(c.start_ns), c.packets.size(), rep.value("flows", 0), r.seconds,
                                   stored, fid);
      current = std::move(r.model);
      current_id = r.artifact.model_id;
      return absl::OkStatus();
    };
    auto train_base_from_pending = [&]() -> Status {
      std::vector<Chunk> warm(pending.begin(), pending.end());
      std::cerr << absl::StrFormat("training a base model on the first %d chunk(s), %d flows...\n", warm.size(),
                                   pending_flows);
      DGC_ASSIGN_OR_RETURN(current, TrainBase(warm, opt, &base_report));
      std::string bytes = current->ToBytes();
      current_id = BaseModelId(bytes);
      DGC_RETURN_IF_ERROR((*lib)->PutModel(current_id, bytes));
      std::cerr << absl::StrFormat("base %s: %d steps in %.1f s, loss %.3f -> %.3f\n", current_id,
                                   base_report.value("steps", 0), base_report.value("seconds", 0.0),
                                   base_report.value("first_loss", 0.0), base_report.value("final_loss", 0.0));
      while (!pending.empty()) {
        Chunk c = std::move(pending.front());
        pending.pop_front();
        DGC_RETURN_IF_ERROR(compress_one(std::move(c)));
      }
      return absl::OkStatus();
    };
    uint64_t late = 0;
    Status st = ReadChunks(o->inputs, o->link, static_cast<int64_t>(o->chunk_seconds * 1e9),
                           [&](Chunk&& c) -> Status {
                             if (current) return compress_one(std::move(c));
                             pending_flows += BuildFlows(c.packets).size();
                             pending.push_back(std::move(c));
                             if (pending_flows >= uint64_t(opt.warmup_flows)) return train_base_from_pending();
                             return absl::OkStatus();
                           },
                           &late);
    if (st.ok() && !current && !pending.empty()) st = train_base_from_pending();
    if (!st.ok()) return Fail("compress", st, exit_code);
    auto usage = (*lib)->GetUsage();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json j = {{"library", o->library},
                        {"link", o->link},
                        {"chunks", tot.chunks},
                        {"packets", tot.packets},
                        {"flows", tot.flows},
                        {"stored_bytes", tot.stored},
                        {"stored_bytes_per_million_packets", tot.packets ? tot.stored * 1e6 / tot.packets : 0.0},
                        {"raw_bytes", tot.raw},
                        {"base_model", current_id.rfind("base-", 0) == 0 ? current_id : ""},
                        {"base_model_bytes", usage.ok() ? usage->model_bytes : 0},
                        {"fidelity_mean", tot.fidelity_n ? tot.fidelity_sum / tot.fidelity_n : 0.0},
                        {"chunks_retried", tot.retried},
                        {"late_packets_dropped", late},
                        {"seconds", secs},
                        {"cpu_seconds_per_million_packets", tot.packets ? secs * 1e6 / tot.packets : 0.0},
                        {"options", opt.ToJson()}};
    if (!base_report.is_null()) j["base_training"] = base_report;
    if (o->output == "json") {
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << absl::StrFormat(
        "compressed %d packets (%d flows) into %d chunks in %.1f s\n"
        "stored     %d bytes in chunks (%.0f B per million packets), base models %d bytes (paid once)\n"
        "raw        %d bytes captured: %.1fx smaller\n"
        "fidelity   mean of the 17 metrics over chunks: %.3f (target %.2f), %d chunk(s) retried\n",
        tot.packets, tot.flows, tot.chunks, secs, tot.stored, tot.packets ? tot.stored * 1e6 / tot.packets : 0.0,
        usage.ok() ? usage->model_bytes : 0, tot.raw, tot.stored ? double(tot.raw) / tot.stored : 0.0,
        tot.fidelity_n ? tot.fidelity_sum / tot.fidelity_n : 0.0, opt.fidelity_target, tot.retried);
    if (late) std::cout << "warning: " << late << " packets arrived after their chunk was compressed\n";
  });
}

}  // namespace dgc::ctl

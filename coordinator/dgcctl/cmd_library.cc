// dgcctl verbs on a RocksDB model library: lineage, get, describe, expire.
// (`dgcctl storage --library DIR` lives in cmd_storage.cc and uses
// LibraryStorageReport below.)
//
// -o json fields:
//   get models: [{id, kind, parent, depth, blob_bytes, created, source_chunk}]
//   get chunks: [{chunk, link, start, end, seq, packets, bytes, flows, raw_bytes, model, parent,
//                 decision, drift, reason, stored_bytes}]
//   describe model: the model fields + {ancestors[], children[], config, training, fingerprint}
//   describe chunk: the chunk fields + {report, fingerprint, committed}
//   lineage: {model, ancestors[{id, kind, depth}], descendants[]}
//   expire: {dry_run, items[{kind, name, bytes, reason}], warnings[], bytes_before, bytes_after,
//            size_goal_met, note}
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/time.h"
#include "common/base/units.h"
#include "coordinator/dgcctl/commands.h"
#include "library/rocksdb_model_library.h"
#include "nlohmann/json.hpp"

namespace dgc::ctl {

// Bytes by kind of a library and their ratio to the raw bytes ingested, as a
// table or JSON (used by `dgcctl storage --library`). Errors: the library's.
[[nodiscard]] Status LibraryStorageReport(const std::string& dir, bool json);

namespace {

using library::ChunkRecord;
using library::ModelRecord;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An existing library; NotFound naming `dir` when there is none.
// Verbs that only read open the library read-only: they work on a full
// disk, and beside a process that holds it for writing.
StatusOr<std::unique_ptr<RocksDbModelLibrary>> OpenExisting(const std::string& dir, bool read_only = true) {
  RocksDbModelLibrary::Options o;
  o.create_if_missing = false;
  o.read_only = read_only;
  return RocksDbModelLibrary::Open(dir, o);
}

Status CheckOutput(const std::string& o) {
  if (o != "table" && o != "json") return absl::InvalidArgumentError(absl::StrCat("-o '", o, "': use table or json"));
  return absl::OkStatus();
}

std::string Human(uint64_t b) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%d B", b) : absl::StrFormat("%.3g %s", v, kUnits[u]);
}

nlohmann::json ModelJson(const ModelRecord& m) {
  return {{"id", m.id},
          {"kind", library::ModelKindName(m.kind)},
          {"parent", m.parent_id},
          {"depth", m.depth},
          {"blob_bytes", m.blob_bytes},
          {"created", FormatRfc3339(m.created_ns)},
          {"source_chunk", m.source_chunk.empty() ? "" : library::ChunkKeyToString(m.source_chunk)}};
}

nlohmann::json ChunkJson(const ChunkRecord& c) {
  return {{"chunk", library::ChunkKeyToString(library::ChunkKey(c.link, c.start_ns))},
          {"link", c.link},
          {"start", FormatRfc3339(c.start_ns)},
          {"end", FormatRfc3339(c.end_ns())},
          {"seq", c.seq},
          {"packets", c.packets},
          {"bytes", c.bytes},
          {"flows", c.flows},
          {"raw_bytes", c.raw_bytes},
          {"model", c.model_id},
          {"parent", c.parent_id},
          {"decision", c.decision},
          {"drift", c.drift},
          {"reason", c.reason},
          {"state", library::ChunkStateName(c.state)},
          {"stored_bytes", c.stored_bytes}};
}

nlohmann::json FingerprintJson(const library::Fingerprint& f) {
  return {{"packets", f.packets}, {"flows", f.flows}, {"proto", f.proto}, {"port", f.port},
          {"size", f.size},       {"rate", f.rate},   {"flow", f.flow}};
}

std::string Drift(double d) { return d < 0 ? "-" : absl::StrFormat("%.3f", d); }

// --- lineage ----------------------------------------------------------------

struct LineageArgs {
  std::string model, library, output = "table";
};

Status RunLineage(const LineageArgs& a) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library));
  DGC_ASSIGN_OR_RETURN(auto anc, lib->Ancestors(a.model));
  DGC_ASSIGN_OR_RETURN(auto desc, lib->Descendants(a.model));
  if (a.output == "json") {
    nlohmann::json j = {{"model", a.model}, {"ancestors", nlohmann::json::array()}, {"descendants", desc}};
    for (const auto& m : anc) j["ancestors"].push_back({{"id", m.id}, {"kind", library::ModelKindName(m.kind)}, {"depth", m.depth}});
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("ANCESTORS of %s (%zu, to its full model)\n", a.model.c_str(), anc.size() - 1);
  for (const auto& m : anc) {
    std::printf("  %-40s %-8s depth %-3u %s\n", m.id.c_str(), library::ModelKindName(m.kind), m.depth,
                m.source_chunk.empty() ? "" : ("from " + library::ChunkKeyToString(m.source_chunk)).c_str());
  }
  std::printf("DESCENDANTS (%zu)\n", desc.size());
  size_t shown = 0;
  for (const auto& d : desc) {
    if (++shown > 50) {
      std::printf("  ... %zu more (-o json lists them all)\n", desc.size() - 50);
      break;
    }
    std::printf("  %s\n", d.c_str());
  }
  return absl::OkStatus();
}

// --- get --------------------------------------------------------------------

struct GetArgs {
  std::string noun, library, link, since, until, output = "table";
  std::string state;   // jobs of this state (coordinator)
  uint64_t chunk_size = 500;  // jobs per answer (coordinator)
  RemoteFlags remote;  // without --library: ask the coordinator
};

Status RunGet(const GetArgs& a) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  if (a.library.empty() || a.noun == "jobs" || a.noun == "job" || a.noun == "workers" || a.noun == "worker") {
    nlohmann::json args = nlohmann::json::object();
    if (!a.state.empty()) args["state"] = a.state;
    if (!a.link.empty()) args["link"] = a.link;
    if (a.noun == "jobs" || a.noun == "job") return RunGetJobs(a.remote, std::move(args), a.chunk_size, a.output);
    if (a.noun == "chunks") return RunGetChunks(a.remote, std::move(args), a.chunk_size, a.output);
    return RunRemote(a.remote, "get", a.noun, "", args.dump(), a.output);
  }
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library));
  if (a.noun == "models" || a.noun == "model") {
    DGC_ASSIGN_OR_RETURN(auto models, lib->ListModels());
    if (a.output == "json") {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& m : models) j.push_back(ModelJson(m));
      std::printf("%s\n", j.dump(2).c_str());
      return absl::OkStatus();
    }
    std::printf("%-36s %-8s %-36s %5s %10s  %s\n", "ID", "KIND", "PARENT", "DEPTH", "BYTES", "CREATED");
    for (const auto& m : models) {
      std::printf("%-36s %-8s %-36s %5u %10s  %s\n", m.id.c_str(), library::ModelKindName(m.kind),
                  m.parent_id.empty() ? "-" : m.parent_id.c_str(), m.depth, Human(m.blob_bytes).c_str(),
                  FormatRfc3339(m.created_ns).c_str());
    }
    return absl::OkStatus();
  }
  if (a.noun != "chunks" && a.noun != "chunk") {
    return absl::InvalidArgumentError(absl::StrCat("get '", a.noun, "': use models or chunks"));
  }
  ChunkQuery q;
  q.link = a.link;
  int64_t now = NowNs();
  if (!a.since.empty()) {
    DGC_ASSIGN_OR_RETURN(q.since_ns, ParseTime(a.since, now));
  }
  if (!a.until.empty()) {
    DGC_ASSIGN_OR_RETURN(q.until_ns, ParseTime(a.until, now));
  }
  bool json = a.output == "json";
  if (json) std::printf("[");
  else {
    std::printf("%-36s %9s %7s %-30s %-9s %6s %9s\n", "CHUNK", "PACKETS", "FLOWS", "MODEL", "DECISION", "DRIFT",
                "STORED");
  }
  bool first = true;
  DGC_RETURN_IF_ERROR(lib->ForEachChunk(q, [&](const ChunkRecord& c) {
    if (json) {
      std::printf("%s\n  %s", first ? "" : ",", ChunkJson(c).dump().c_str());
    } else {
      std::printf("%-36s %9llu %7llu %-30s %-9s %6s %9s\n",
                  library::ChunkKeyToString(library::ChunkKey(c.link, c.start_ns)).c_str(),
                  static_cast<unsigned long long>(c.packets), static_cast<unsigned long long>(c.flows),
                  c.model_id.c_str(), c.decision.empty() ? "-" : c.decision.c_str(), Drift(c.drift).c_str(),
                  Human(c.stored_bytes).c_str());
    }
    first = false;
    return absl::OkStatus();
  }));
  if (json) std::printf("%s]\n", first ? "" : "\n");
  return absl::OkStatus();
}

// --- describe ---------------------------------------------------------------

struct DescribeArgs {
  std::string noun, id, library, output = "table";
  RemoteFlags remote;  // jobs and workers: ask the coordinator
};

Status RunDescribe(const DescribeArgs& a) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  if (a.noun == "job" || a.noun == "jobs" || a.noun == "worker" || a.noun == "workers") {
    return RunRemote(a.remote, "describe", a.noun, a.id, "", a.output);
  }
  if (a.library.empty()) return absl::InvalidArgumentError("describe model|chunk needs --library");
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library));
  auto parse = [](const std::string& s) {
    auto j = nlohmann::json::parse(s.empty() ? "null" : s, nullptr, false);
    return j.is_discarded() ? nlohmann::json(s) : j;
  };
  if (a.noun == "model") {
    DGC_ASSIGN_OR_RETURN(ModelRecord m, lib->GetModelRecord(a.id));
    DGC_ASSIGN_OR_RETURN(auto anc, lib->Ancestors(a.id));
    DGC_ASSIGN_OR_RETURN(auto kids, lib->Children(a.id));
    DGC_ASSIGN_OR_RETURN(auto fp, lib->ModelFingerprint(m));
    nlohmann::json j = ModelJson(m);
    j["ancestors"] = nlohmann::json::array();
    for (size_t i = 1; i < anc.size(); ++i) j["ancestors"].push_back(anc[i].id);
    j["children"] = kids;
    j["config"] = parse(m.config_json);
    j["training"] = parse(m.training_json);
    j["fingerprint"] = fp ? FingerprintJson(*fp) : nlohmann::json();
    if (a.output == "json") {
      std::printf("%s\n", j.dump(2).c_str());
      return absl::OkStatus();
    }
    std::printf("Model:        %s\nKind:         %s\nParent:       %s\nDepth:        %u (deltas from its full model)\n"
                "Blob:         %s (%s)\nCreated:      %s\nTrained on:   %s\nFull model:   %s\nChildren:     %zu\n",
                m.id.c_str(), library::ModelKindName(m.kind), m.parent_id.empty() ? "-" : m.parent_id.c_str(), m.depth,
                Human(m.blob_bytes).c_str(), library::IsFullModel(m.kind) ? "checkpoint" : "delta",
                FormatRfc3339(m.created_ns).c_str(),
                m.source_chunk.empty() ? "-" : library::ChunkKeyToString(m.source_chunk).c_str(),
                anc.back().id.c_str(), kids.size());
    if (!m.training_json.empty()) std::printf("Training:     %s\n", m.training_json.c_str());
    if (!m.config_json.empty()) std::printf("Config:       %s\n", m.config_json.c_str());
    return absl::OkStatus();
  }
  if (a.noun != "chunk") return absl::InvalidArgumentError(absl::StrCat("describe '", a.noun, "': use model or chunk"));
  DGC_ASSIGN_OR_RETURN(ChunkRecord c, lib->FindChunk(a.id));
  auto fp = lib->GetFingerprint(c.link, c.start_ns);
  nlohmann::json j = ChunkJson(c);
  j["report"] = parse(c.report_json);
  j["fingerprint"] = fp.ok() ? FingerprintJson(*fp) : nlohmann::json();
  j["committed"] = FormatRfc3339(c.committed_ns);
  j["raw_path"] = c.raw_path;
  if (a.output == "json") {
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("Chunk:        %s (seq %lld)\nWindow:       %s .. %s\nTraffic:      %llu packets, %llu bytes, %llu flows "
              "(%s raw ingested)\nModel:        %s\nParent:       %s\nSelection:    %s, drift %s\nReason:       %s\n"
              "Stored:       %s\nCommitted:    %s\nRaw file:     %s\n",
              j["chunk"].get<std::string>().c_str(), static_cast<long long>(c.seq), FormatRfc3339(c.start_ns).c_str(),
              FormatRfc3339(c.end_ns()).c_str(), static_cast<unsigned long long>(c.packets),
              static_cast<unsigned long long>(c.bytes), static_cast<unsigned long long>(c.flows),
              Human(c.raw_bytes).c_str(), c.model_id.c_str(), c.parent_id.c_str(),
              c.decision.empty() ? "not recorded" : c.decision.c_str(), Drift(c.drift).c_str(),
              c.reason.empty() ? "-" : c.reason.c_str(), Human(c.stored_bytes).c_str(),
              FormatRfc3339(c.committed_ns).c_str(), c.raw_path.empty() ? "-" : c.raw_path.c_str());
  std::printf("Report:       %s\n", j["report"].dump().c_str());
  return absl::OkStatus();
}

// --- pack -------------------------------------------------------------------

struct PackArgs {
  std::string library, link, span = "7d", until = "now", output = "table";
};

Status RunPack(const PackArgs& a) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  DGC_ASSIGN_OR_RETURN(int64_t span, ParseDurationNs(a.span));
  if (span <= 0) return absl::InvalidArgumentError("--span must be positive (e.g. 1d, 6h)");
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  DGC_ASSIGN_OR_RETURN(int64_t until, ParseTime(a.until, now));
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library, /*read_only=*/false));
  std::vector<std::string> links;
  if (!a.link.empty()) {
    links.push_back(a.link);
  } else {
    std::set<std::string> seen;
    DGC_RETURN_IF_ERROR(lib->ForEachChunk({}, [&](const ChunkRecord& c) {
      seen.insert(c.link);
      return absl::OkStatus();
    }));
    links.assign(seen.begin(), seen.end());
  }
  nlohmann::json out = {{"library", a.library}, {"links", nlohmann::json::array()}};
  RocksDbModelLibrary::PackReport all;
  for (const auto& link : links) {
    RocksDbModelLibrary::PackOptions po;
    po.span_ns = span;
    po.until_ns = until;
    DGC_ASSIGN_OR_RETURN(auto r, lib->PackChunks(link, po));
    out["links"].push_back({{"link", link}, {"packs", r.packs}, {"chunks", r.chunks},
                            {"bytes_before", r.bytes_before}, {"bytes_after", r.bytes_after}});
    all.packs += r.packs;
    all.chunks += r.chunks;
    all.bytes_before += r.bytes_before;
    all.bytes_after += r.bytes_after;
    if (a.output == "table") {
      std::printf("%-20s %6llu chunks into %4llu pack(s): %s -> %s\n", link.c_str(),
                  static_cast<unsigned long long>(r.chunks), static_cast<unsigned long long>(r.packs),
                  Human(r.bytes_before).c_str(), Human(r.bytes_after).c_str());
    }
  }
  if (a.output == "json") {
    out["packs"] = all.packs;
    out["chunks"] = all.chunks;
    out["bytes_before"] = all.bytes_before;
    out["bytes_after"] = all.bytes_after;
    std::printf("%s\n", out.dump(2).c_str());
  } else if (all.chunks == 0) {
    std::printf("nothing to pack: no closed span holds two or more unpacked quiet chunks\n");
  }
  return absl::OkStatus();
}

// --- expire -----------------------------------------------------------------

struct ExpireArgs {
  std::string library, max_age, max_bytes, keep_raw, output = "table";
  bool dry_run = false;
  size_t batch = RocksDbModelLibrary::ExpireOptions{}.batch_chunks;
};

Status RunExpire(const ExpireArgs& a) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  if (a.max_age.empty() && a.max_bytes.empty() && a.keep_raw.empty()) {
    return absl::InvalidArgumentError("give --max-age, --max-bytes or --keep-raw: what may go");
  }
  RocksDbModelLibrary::ExpireOptions o;
  if (!a.max_age.empty()) {
    DGC_ASSIGN_OR_RETURN(o.max_age_ns, ParseDurationNs(a.max_age));
  }
  if (!a.keep_raw.empty()) {
    DGC_ASSIGN_OR_RETURN(o.keep_raw_ns, ParseDurationNs(a.keep_raw));
  }
  if (!a.max_bytes.empty()) {
    DGC_ASSIGN_OR_RETURN(o.max_bytes, ParseBytes(a.max_bytes));
  }
  if (!a.max_age.empty() && o.max_age_ns <= 0) return absl::InvalidArgumentError("--max-age must be positive");
  if (!a.max_bytes.empty() && o.max_bytes == 0) return absl::InvalidArgumentError("--max-bytes must be positive");
  o.dry_run = a.dry_run;
  o.batch_chunks = a.batch;
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library, /*read_only=*/a.dry_run));
  DGC_ASSIGN_OR_RETURN(auto rep, lib->Expire(o));
  for (const auto& w : rep.warnings) std::fprintf(stderr, "dgcctl expire: warning: %s\n", w.c_str());
  if (a.output == "json") {
    nlohmann::json j = {{"dry_run", a.dry_run},          {"items", nlohmann::json::array()},
                        {"warnings", rep.warnings},      {"bytes_before", rep.bytes_before},
                        {"bytes_after", rep.bytes_after}, {"size_goal_met", rep.size_goal_met},
                        {"note", rep.note}};
    for (const auto& i : rep.items) j["items"].push_back({{"kind", i.kind}, {"name", i.name}, {"bytes", i.bytes}, {"reason", i.reason}});
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  const char* verb = a.dry_run ? "would go" : "went";
  std::printf("%-6s %-44s %9s  %s\n", "KIND", "NAME", "BYTES", "WHY");
  for (const auto& i : rep.items) {
    std::printf("%-6s %-44s %9s  %s\n", i.kind.c_str(), i.name.c_str(), Human(i.bytes).c_str(), i.reason.c_str());
  }
  size_t chunks = 0, models = 0, raws = 0;
  for (const auto& i : rep.items) (i.kind == "chunk" ? chunks : i.kind == "model" ? models : raws)++;
  std::printf("\n%zu chunk(s), %zu model(s), %zu raw file(s) %s: %s -> %s%s\n", chunks, models, raws, verb,
              Human(rep.bytes_before).c_str(), Human(rep.bytes_after).c_str(),
              a.dry_run ? " (dry run: nothing was changed)" : "");
  if (!rep.size_goal_met) std::printf("note: %s\n", rep.note.c_str());
  return absl::OkStatus();
}

struct CheckArgs {
  std::string library, output = "table";
};

// Exit 1 when anything is damaged or inconsistent (RunCheck's status is for
// failures to read at all).
Status RunCheck(const CheckArgs& a, int* exit_code) {
  DGC_RETURN_IF_ERROR(CheckOutput(a.output));
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(a.library));
  DGC_ASSIGN_OR_RETURN(auto rep, lib->Check());
  const bool bad = !rep.damaged.empty() || !rep.problems.empty();
  if (a.output == "json") {
    nlohmann::json j = {{"library", a.library},
                        {"ok", !bad},
                        {"chunks", rep.chunks},
                        {"models", rep.models},
                        {"lineage_edges", rep.lineage_edges},
                        {"fingerprints", rep.fingerprints},
                        {"damaged", nlohmann::json::array()},
                        {"problems", rep.problems},
                        {"unreferenced_models", rep.unreferenced_models},
                        {"unreferenced_packs", rep.unreferenced_packs}};
    for (const auto& d : rep.damaged) j["damaged"].push_back({{"kind", d.kind}, {"name", d.name}, {"error", d.error}});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("checked %llu chunks, %llu models, %llu lineage edges, %llu fingerprints in %s\n",
                static_cast<unsigned long long>(rep.chunks), static_cast<unsigned long long>(rep.models),
                static_cast<unsigned long long>(rep.lineage_edges), static_cast<unsigned long long>(rep.fingerprints),
                a.library.c_str());
    for (const auto& d : rep.damaged) std::printf("damaged  %-6s %s: %s\n", d.kind.c_str(), d.name.c_str(), d.error.c_str());
    for (const auto& p : rep.problems) std::printf("problem  %s\n", p.c_str());
    for (const auto& m : rep.unreferenced_models) {
      std::printf("garbage  model %s: no chunk builds on it (dgcctl expire collects it)\n", m.c_str());
    }
    for (const auto& p : rep.unreferenced_packs) {
      std::printf("garbage  pack %s: no chunk is in it any more (dgcctl expire collects it)\n", p.c_str());
    }
    if (bad) {
      std::printf("\n%zu damaged record(s), %zu problem(s): 'dgcctl generate --skip-damaged' regenerates around them\n",
                  rep.damaged.size(), rep.problems.size());
    } else {
      std::printf("ok: every record passes its checksums and every chunk's model chain is whole\n");
    }
  }
  if (bad) *exit_code = 1;
  return absl::OkStatus();
}

template <typename F>
void Wire(CLI::App* cmd, const char* verb, int* exit_code, F run) {
  cmd->callback([verb, exit_code, run] {
    Status s = run();
    if (!s.ok()) {
      std::fprintf(stderr, "dgcctl %s: error: %s\n", verb, std::string(s.message()).c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace

Status LibraryStorageReport(const std::string& dir, bool json) {
  DGC_ASSIGN_OR_RETURN(auto lib, OpenExisting(dir));
  DGC_ASSIGN_OR_RETURN(auto u, lib->GetDetailedUsage());
  struct Row {
    const char* id;
    const char* name;
    uint64_t bytes;
  };
  std::vector<Row> rows = {{"skeletons", "chunk skeletons", u.skeleton_bytes},
                           {"deltas", "model deltas", u.delta_bytes},
                           {"reports", "chunk reports", u.report_bytes},
                           {"metadata", "records, fingerprints", u.chunk_meta_bytes + u.model_meta_bytes},
                           {"packs", "packs (quiet chunks)", u.pack_bytes},
                           {"chunks_total", "per-chunk total", u.ChunkBytes()},
                           {"base_models", "base models (paid once)", u.full_model_bytes},
                           {"total", "everything", u.TotalBytes()}};
  double raw = static_cast<double>(u.raw_bytes_ingested);
  if (json) {
    nlohmann::json j = {{"library", dir},
                        {"chunks", u.chunks},
                        {"packets", u.packets},
                        {"finetune_models", u.finetune_models},
                        {"full_models", u.full_models},
                        {"packs", u.packs},
                        {"packed_chunks", u.packed_chunks},
                        {"raw_bytes_ingested", u.raw_bytes_ingested},
                        {"rows", nlohmann::json::array()}};
    for (const auto& r : rows) {
      j["rows"].push_back({{"id", r.id}, {"name", r.name}, {"bytes", r.bytes},
                           {"ratio_to_raw", raw > 0 ? r.bytes / raw : 0.0}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("LIBRARY %s\n        %llu chunks, %llu packets, %llu finetune models, %llu base models; raw ingested %s\n",
              dir.c_str(), static_cast<unsigned long long>(u.chunks), static_cast<unsigned long long>(u.packets),
              static_cast<unsigned long long>(u.finetune_models), static_cast<unsigned long long>(u.full_models),
              Human(u.raw_bytes_ingested).c_str());
  if (u.packs) {
    std::printf("        %llu of them packed in %llu pack(s): their skeletons, reports and fingerprints are in the "
                "packs row\n",
                static_cast<unsigned long long>(u.packed_chunks), static_cast<unsigned long long>(u.packs));
  }
  std::printf("\n%-24s %10s %9s %8s\n", "KIND", "BYTES", "OF RAW", "B/PKT");
  for (const auto& r : rows) {
    std::printf("%-24s %10s %9s %8s\n", r.name, Human(r.bytes).c_str(),
                raw > 0 ? absl::StrFormat("%.3f%%", 100 * r.bytes / raw).c_str() : "-",
                u.packets ? absl::StrFormat("%.2f", double(r.bytes) / u.packets).c_str() : "-");
  }
  if (u.chunk_meta_bytes + u.ChunkBytes() > 0 && raw > 0) {
    std::printf("\nper-chunk bytes are %.1fx smaller than the raw captures (%.1fx with the base models)\n",
                raw / std::max<double>(1, u.ChunkBytes()), raw / std::max<double>(1, u.TotalBytes()));
  }
  return absl::OkStatus();
}

void RegisterLibraryCommands(CLI::App& app, int* exit_code) {
  // lineage
  auto la = std::make_shared<LineageArgs>();
  CLI::App* lin = app.add_subcommand("lineage", "a model's ancestors (to its base) and descendants");
  lin->add_option("model", la->model, "model id (see 'dgcctl get models')")->required();
  lin->add_option("--library", la->library, "model library directory")->required();
  lin->add_option("-o,--output", la->output, "table or json")->capture_default_str();
  lin->footer(R"(Every chunk's model is a delta against its parent; a chain ends at a full model
(base: warm-up; retrain: trained anew when drift or chain depth called for it).

Examples:
  dgcctl lineage tap0-2840000 --library lib/
  dgcctl lineage base-3f2a9c --library lib/ -o json | jq '.descendants | length')");
  Wire(lin, "lineage", exit_code, [la] { return RunLineage(*la); });

  // get
  auto ga = std::make_shared<GetArgs>();
  CLI::App* get = app.add_subcommand("get", "list models or chunks of a library, or a coordinator's jobs or workers");
  get->add_option("noun", ga->noun, "models, chunks, jobs or workers")->required();
  get->add_option("--library", ga->library, "model library directory (without it: ask the coordinator)");
  get->add_option("--state", ga->state, "jobs in this state only (queued, leased, done, failed, cancelled)");
  get->add_option("--chunk-size", ga->chunk_size,
                  "jobs and chunks from a coordinator: ask for them this many per answer (0: all in one answer)")
      ->capture_default_str();
  AddRemoteFlags(get, &ga->remote);
  get->add_option("--link", ga->link, "chunks (or jobs) of this link only");
  get->add_option("--since", ga->since, "chunks ending after (RFC 3339, epoch seconds, or '3h ago')");
  get->add_option("--until", ga->until, "chunks starting before");
  get->add_option("-o,--output", ga->output, "table or json (one object per chunk, streamed)")->capture_default_str();
  get->footer(R"(Chunks are named LINK@START; DECISION is how its parent was chosen (continue,
switch, base, retrain) and DRIFT its distance to that parent in [0,1].

Examples:
  dgcctl get models --library lib/
  dgcctl get chunks --library lib/ --link tap0 --since "2024-03-09T00:00:00Z" --until "2024-03-10T00:00:00Z"
  dgcctl get chunks --library lib/ --since "1d ago" -o json | jq -r '.[] | select(.decision=="retrain") | .chunk'
  dgcctl get jobs --coordinator tcp://127.0.0.1:7071 --state failed
  dgcctl get workers -o json)");
  Wire(get, "get", exit_code, [ga] { return RunGet(*ga); });

  // describe
  auto da = std::make_shared<DescribeArgs>();
  CLI::App* desc = app.add_subcommand("describe", "everything known of one model, chunk, job or worker");
  desc->add_option("noun", da->noun, "model, chunk (a library), job or worker (a coordinator)")->required();
  desc->add_option("id", da->id, "model id, chunk as LINK@TIME or LINK/SEQ, job id, worker name")->required();
  desc->add_option("--library", da->library, "model library directory (models and chunks)");
  AddRemoteFlags(desc, &da->remote);
  desc->add_option("-o,--output", da->output, "table or json")->capture_default_str();
  desc->footer(R"(A chunk shows its counts, model, parent, the parent-selection decision with its
drift and reason (why a retrain fired), and its fidelity report.

Examples:
  dgcctl describe chunk tap0@2024-03-09T14:10:00Z --library lib/
  dgcctl describe chunk tap0/2840000 --library lib/ -o json | jq .report.fidelity_mean
  dgcctl describe model tap0-2840000 --library lib/
  dgcctl describe job 42 --coordinator tcp://127.0.0.1:7071)");
  Wire(desc, "describe", exit_code, [da] { return RunDescribe(*da); });

  // expire
  auto ea = std::make_shared<ExpireArgs>();
  CLI::App* exp = app.add_subcommand("expire", "delete old chunks (and the models nothing needs) from a library");
  exp->add_option("--library", ea->library, "model library directory")->required();
  exp->add_option("--max-age", ea->max_age, "chunks that ended longer ago than this go (90s, 10m, 36h, 30d, 2w)");
  exp->add_option("--max-bytes", ea->max_bytes, "then the oldest chunks go until the library fits (e.g. 20GB)");
  exp->add_option("--keep-raw", ea->keep_raw, "raw chunk files kept beside chunks go after this (e.g. 24h)");
  exp->add_flag("--dry-run", ea->dry_run, "print what would go, change nothing");
  exp->add_option("--batch", ea->batch,
                  "deletions per atomic RocksDB write: chunk records in batches first, then the "
                  "models no kept chunk needs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  exp->add_option("-o,--output", ea->output, "table or json")->capture_default_str();
  exp->footer(R"(Rules: the newest chunk of every link is never expired; a model stays while a kept
chunk builds on it (its own model or any ancestor), so deleting the head of a delta
chain frees the chunk records first and the deltas once the chain's last chunk goes.
Raw files someone else already deleted are reported as warnings, not errors. An
interrupted expire leaves a consistent library; run it again to finish.

Examples:
  dgcctl expire --library lib/ --max-age 90d --dry-run
  dgcctl expire --library lib/ --max-bytes 50GB
  dgcctl expire --library lib/ --max-age 365d --max-bytes 2TB --keep-raw 24h -o json)");
  Wire(exp, "expire", exit_code, [ea] { return RunExpire(*ea); });

  // pack
  auto pa = std::make_shared<PackArgs>();
  CLI::App* pk = app.add_subcommand("pack", "pack the quiet chunks of each closed week into one compressed record");
  pk->add_option("--library", pa->library, "model library directory")->required();
  pk->add_option("--link", pa->link, "only this link (default: every link)");
  pk->add_option("--span", pa->span, "span packed together, aligned to the epoch (7d; 1d: UTC days)")
      ->capture_default_str();
  pk->add_option("--until", pa->until, "only spans that ended by then (RFC 3339, epoch seconds, now, 2d ago)")
      ->capture_default_str();
  pk->add_option("-o,--output", pa->output, "table or json")->capture_default_str();
  pk->footer(R"(A quiet chunk's record (its skeleton, report and fingerprint) compressed on its
own is mostly zstd's framing and tables. pack rewrites each closed span of a
link: its records of at most 16 KB with no raw file kept go into one zstd -19
frame (several past 4 MB of records), and each chunk's record becomes an
8-byte stub naming the pack; one atomic write per span, so a kill leaves a
span as it was or packed. Every reader (get, describe, generate, stats,
check, expire) reads through the stubs, and generate gives the same pcap.
'dgcctl compress' packs what it wrote at the end of its input (--pack-span)
and dgc-coordinator packs spans as they close (--pack-hours); run this for
libraries written before, or with another span (stop a coordinator that
holds the library first: pack opens it for writing).

Examples:
  dgcctl pack --library lib/
  dgcctl pack --library lib/ --link tap0 --until "2d ago" -o json)");
  Wire(pk, "pack", exit_code, [pa] { return RunPack(*pa); });

  // check
  auto ca = std::make_shared<CheckArgs>();
  CLI::App* chk = app.add_subcommand("check", "read every record of a library: name each damaged chunk and model");
  chk->add_option("--library", ca->library, "model library directory")->required();
  chk->add_option("-o,--output", ca->output, "table or json")->capture_default_str();
  chk->footer(R"(Reads every chunk, model, lineage edge and fingerprint with its checksums (a
flipped bit in a blob or table file shows as 'damaged'), decodes each, and
walks every chunk's model chain to its full model: a chunk building on a
damaged or missing model is a problem naming both. Models no chunk needs are
listed as garbage ('dgcctl expire' collects them). Exit 0 when nothing is
damaged or inconsistent, 1 otherwise (and on errors).

Examples:
  dgcctl check --library lib/
  dgcctl check --library lib/ -o json | jq -r '.damaged[] | .kind + " " + .name')");
  Wire(chk, "check", exit_code, [ca, exit_code] { return RunCheck(*ca, exit_code); });
}

}  // namespace dgc::ctl

// dgcctl generate: regenerate a time range of a model library as a pcap.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/files.h"
#include "common/base/progress.h"
#include "common/base/time.h"
#include "common/model/flow_model.h"
#include "common/trace/packet_filter.h"
#include "common/trace/pcap_writer.h"
#include "common/trace/pseudonymize.h"
#include "common/wire/generate_segment.h"
#include "coordinator/dgcctl/commands.h"
#include "library/rocksdb_model_library.h"
#include "common/compress/chunk_compressor.h"
#include "library/model_chain.h"

namespace dgc::ctl {

void RegisterGenerateCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("generate", "regenerate a synthetic pcap from a model library");
  cmd->footer(R"(Every chunk overlapping [--since, --until) is regenerated whole from its model
and skeleton; packets outside the range are then dropped. The pcap is raw IP
(or Ethernet with --ethernet), header-only with the generated wire lengths,
valid checksums, time-ordered. A sidecar <output>.dgc.json marks it synthetic.
Same library and --seed: same output.

--full-packets writes whole Ethernet frames instead, for loading a test
network (tcpreplay, tcprewrite): each packet as long as its wire length with
a zero-filled payload, TCP options (MSS, SACK, timestamps, window scale) in
place of data on SYN and SYN-ACK, sequence and acknowledgment numbers that
advance per connection, every checksum right. Such a pcap is as large as the
traffic it stands for.

Chunks are regenerated in time order per link; flows the model marks as
continuing across a chunk edge take the 5-tuple of a flow the previous chunk
left open (StitchFlows), so a range of many chunks has whole flows. Each
model is rebuilt from its lineage: the full model at the root of its chain,
then its deltas.

A library compressed with --pseudonymize holds pseudonymous addresses;
--key KEYFILE (the same key) maps them back to the real address space. Each
chunk records its scheme and key fingerprint: cryptopan-aes128 (CryptoPAn,
what compress writes), or siphash24-cryptopan (chunks made before dgc used
CryptoPAn; the same key file maps them back).

A chunk whose record, or a model it builds on, fails its checksums (a
flipped bit on disk) stops generate with the chunk named; --skip-damaged
leaves its window empty instead, says so, and lists it in the sidecar
(damaged_chunks_left_empty). dgcctl check --library lib/ lists every damaged
record.

--coordinator ENDPOINT (a dgc-coordinator's --api) regenerates on the
cluster instead of here: the coordinator cuts the range into segments (runs
of chunks sharing a model), its workers regenerate them (each segment on the
worker with a free slot, again elsewhere if that worker is lost), and this
process merges their packets by time into the pcap. The output is
byte-identical to generate --library on the coordinator's library with the
same options and --seed.

Times: RFC 3339 (2026-11-26T15:00:00Z), epoch seconds, or relative (3h ago).

Examples:
  dgcctl generate --library lib/ -o synth.pcap
  dgcctl generate --library lib/ --skip-damaged -o synth.pcap
  dgcctl generate --library lib/ --link tap0 --since "2d ago" --until "1d ago" -o day.pcap
  dgcctl generate --library lib/ --filter "tcp port 443" -o https.pcap
  dgcctl generate --library lib/ --full-packets -o replay.pcap
  dgcctl generate --library lib/ --key secret.key -o real-addresses.pcap
  dgcctl generate --coordinator tcp://coordinator:7071 --link tap0 --since "1d ago" -o day.pcap)");
  struct Opts {
    std::string library, link, since, until, filter, out, key;
    uint64_t seed = 1;
    double min_p = model::GenerateOptions{}.min_p;
    int exact_templates = model::GenerateOptions{}.exact_templates;
    int threads = 0;
    bool ethernet = false;
    bool full_packets = false;
    bool skip_damaged = false;
    RemoteFlags remote;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--library", o->library, "model library directory (or --coordinator)");
  cmd->add_option("--link", o->link, "only this link, with all its shards LINK#i (default: every link)");
  cmd->add_option("--since", o->since, "start of the range");
  cmd->add_option("--until", o->until, "end of the range (exclusive)");
  cmd->add_option("--filter", o->filter, "keep only packets matching this BPF expression");
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  cmd->add_option("--min-p", o->min_p,
                  "never draw a token less likely than this fraction of the likeliest (0: plain sampling)")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  cmd->add_option("--exact-templates", o->exact_templates,
                  "exact flows alike (protocol, service ports, packet count and duration buckets, TTL) draw their "
                  "packets from at most this many of them, each later one copying one of those; 0: sample every one")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "threads sampling flows (0: the CPUs this process may use); the output is the same for any value")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--key", o->key, "key file given to compress --pseudonymize: map addresses back");
  cmd->add_flag("--ethernet", o->ethernet, "write Ethernet frames instead of raw IP");
  cmd->add_flag("--full-packets", o->full_packets,
                "whole Ethernet frames, payload zero-filled to the wire length, for replay");
  cmd->add_flag("--skip-damaged", o->skip_damaged,
                "leave the window of a damaged chunk (its record, or a model it builds on, fails its checksums) "
                "empty and say so, instead of stopping");
  cmd->add_option("-o,--output", o->out, "output pcap (- for stdout)")->required();
  AddRemoteFlags(cmd, &o->remote);
  CLI::Option* coordinator = cmd->get_option("--coordinator");
  coordinator->description("regenerate on this coordinator's workers (its --api endpoint) instead of from --library");
  cmd->callback([o, exit_code, coordinator] {
    auto fail = [&](const Status& st) {
      std::cerr << "dgcctl generate: " << st.message() << "\n";
      *exit_code = 1;
    };
    model::ConfigureCpuThreads();
    auto t0 = std::chrono::steady_clock::now();
    int64_t now = absl::ToUnixNanos(absl::Now());
    // A link sharded over several ingest nodes is stored as LINK#0, LINK#1,
    // ... (one stream per shard; every flow on one shard): --link LINK
    // regenerates all its shards, merged by time.
    ChunkQuery range;
    if (!o->since.empty()) {
      auto t = ParseTime(o->since, now);
      if (!t.ok()) return fail(t.status());
      range.since_ns = *t;
    }
    if (!o->until.empty()) {
      auto t = ParseTime(o->until, now);
      if (!t.ok()) return fail(t.status());
      range.until_ns = *t;
    }
    const bool remote = coordinator->count() > 0;
    if (remote == !o->library.empty()) {
      return fail(absl::InvalidArgumentError("give --library (regenerate here) or --coordinator (on the cluster)"));
    }
    // With --key: the key under each scheme the chunks were made with (a
    // library begun before the switch to cryptopan-aes128 holds siphash24-
    // cryptopan chunks; the key file made both), by recorded fingerprint.
    const bool key = !o->key.empty();
    std::map<std::string, Pseudonymizer> key_by_fp;
    std::set<std::string> schemes;  // of the chunks in the range, for the report
    if (key) {
      if (auto bytes = ReadFile(o->key); !bytes.ok()) return fail(bytes.status());
    }
    // The chunks in the range, in time order, as either source lists them.
    struct ChunkInfo {
      std::string link;
      int64_t start_ns = 0, duration_ns = 0;
      std::string pseudonymized;  // the key fingerprint it was made with
    };
    std::vector<ChunkInfo> infos;
    std::vector<std::string> skipped;  // "chunk ...: why", for the side file
    auto warn_damaged = [&](const std::string& name, const std::string& error) {
      std::cerr << "dgcctl generate: warning: chunk " << name << " is damaged (" << error
                << "): its window is left empty\n";
      skipped.push_back(absl::StrCat("chunk ", name, ": ", error));
    };
    auto where_of = [&](size_t i) { return absl::StrCat("chunk ", infos[i].link, "@", FormatRfc3339(infos[i].start_ns)); };
    // Embedded: the library and the chunks' artifacts (models come from
    // their lineage, ModelChain). Remote: the coordinator's session.
    std::unique_ptr<RocksDbModelLibrary> lib;
    std::vector<model::ChunkArtifact> artifacts;
    std::vector<uint64_t> artifact_flows;  // the record's flow count, by artifact
    std::vector<const model::ChunkArtifact*> chunks;
    std::map<const model::ChunkArtifact*, uint64_t> flows_of;
    std::unique_ptr<CoordinatorClient> client;
    std::string session;
    std::vector<size_t> segments;  // chunks per segment, in order
    if (!remote) {
      std::error_code ec;
      if (!std::filesystem::is_directory(o->library, ec) || std::filesystem::is_empty(o->library, ec)) {
        return fail(absl::NotFoundError("no model library at " + o->library));
      }
      auto opened = OpenModelLibrary(o->library, /*read_only=*/true);
      if (!opened.ok()) return fail(opened.status());
      lib = *std::move(opened);
      // Damaged chunks (dgcctl check lists them): named, and with
      // --skip-damaged their windows stay empty.
      std::vector<RocksDbModelLibrary::DamagedRecord> damaged;
      auto records = lib->ListChunks(range, o->skip_damaged ? &damaged : nullptr);
      if (!records.ok()) {
        if (absl::IsDataLoss(records.status())) {
          return fail(absl::DataLossError(absl::StrCat(records.status().message(),
                                                       "; --skip-damaged leaves its window empty")));
        }
        return fail(records.status());
      }
      for (const auto& d : damaged) warn_damaged(d.name, d.error);
      for (const auto& r : *records) {
        if (!IsLinkOrShard(r.link, o->link)) continue;
        model::ChunkArtifact a = ArtifactFields(r);
        a.report = nlohmann::json::parse(r.report_json, nullptr, /*allow_exceptions=*/false);
        if (a.report.is_discarded() || !a.report.is_object()) a.report = nlohmann::json::object();
        artifacts.push_back(std::move(a));
        artifact_flows.push_back(r.flows);
      }
      for (size_t k = 0; k < artifacts.size(); ++k) {
        chunks.push_back(&artifacts[k]);
        flows_of[&artifacts[k]] = artifact_flows[k];
      }
      std::stable_sort(chunks.begin(), chunks.end(),
                       [](const auto* a, const auto* b) { return a->start_ns < b->start_ns; });
      for (const auto* a : chunks) {
        infos.push_back({a->link, a->start_ns, a->duration_ns, a->report.value("pseudonymized", "")});
      }
    } else {
      auto c = CoordinatorClient::Connect(o->remote);
      if (!c.ok()) return fail(c.status());
      client = *std::move(c);
      nlohmann::json args = {{"link", o->link},      {"since_ns", range.since_ns}, {"until_ns", range.until_ns},
                             {"seed", o->seed},      {"min_p", o->min_p},          {"skip_damaged", o->skip_damaged},
                             {"exact_templates", o->exact_templates}};
      auto a = client->Call("generate", "start", "", args.dump());
      if (!a.ok()) return fail(a.status());
      session = std::to_string(a->json.value("session", uint64_t{0}));
      for (const auto& d : a->json.value("damaged", nlohmann::json::array())) {
        warn_damaged(d.value("name", ""), d.value("error", ""));
      }
      for (const auto& c : a->json.value("chunks", nlohmann::json::array())) {
        infos.push_back({c.value("link", ""), c.value("start_ns", int64_t{0}), c.value("duration_ns", int64_t{0}),
                         c.value("pseudonymized", "")});
      }
      for (const auto& n : a->json.value("segments", nlohmann::json::array())) segments.push_back(n.get<size_t>());
      size_t total = 0;
      for (size_t n : segments) total += n;
      if (total != infos.size()) return fail(absl::DataLossError("the coordinator's segments do not add up to its chunks"));
    }
    // Ends the coordinator's session on every path (best effort).
    struct StopSession {
      CoordinatorClient* c;
      const std::string& s;
      ~StopSession() {
        if (c && !s.empty()) (void)c->Call("generate", "stop", s, "{}");
      }
    } stop_session{client.get(), session};
    std::string pseudonymized;  // the key fingerprint the chunks were made with
    for (size_t i = 0; i < infos.size(); ++i) {
      const std::string& fp = infos[i].pseudonymized;
      const std::string where = where_of(i);
      if (key && fp.empty()) {
        return fail(absl::InvalidArgumentError(absl::StrCat("--key: ", where, " was not pseudonymized; drop --key")));
      }
      if (fp.empty()) continue;
      auto scheme = PseudonymSchemeOfFingerprint(fp);
      if (!scheme.ok()) return fail(absl::InvalidArgumentError(absl::StrCat(where, ": ", scheme.status().message())));
      schemes.insert(std::string(PseudonymSchemeName(*scheme)));
      if (key && !key_by_fp.count(fp)) {
        auto k = Pseudonymizer::FromKeyFile(o->key, *scheme);
        if (!k.ok()) {
          return fail(absl::InvalidArgumentError(absl::StrCat(
              "--key: ", where, " was pseudonymized with ", PseudonymSchemeName(*scheme), ", and ", k.status().message())));
        }
        if (k->KeyFingerprint() != fp) {
          return fail(absl::InvalidArgumentError(absl::StrCat(
              "--key: ", where, " was pseudonymized with another key (", fp, "; this key is ", k->KeyFingerprint(), ")")));
        }
        key_by_fp.emplace(fp, std::move(*k));
      }
      pseudonymized = fp;
    }
    if (infos.empty()) return fail(absl::NotFoundError("no chunk of the library overlaps the range"));
    if (!pseudonymized.empty() && !key) {
      std::cerr << "dgcctl generate: note: the library holds pseudonymized addresses (" << pseudonymized
                << "); --key KEYFILE maps them back\n";
    }
    std::unique_ptr<PacketFilter> filter;
    PcapWriterOptions wo;
    wo.link = o->ethernet || o->full_packets ? OutputLink::kEthernet : OutputLink::kRawIp;
    wo.full_packets = o->full_packets;
    if (!o->filter.empty()) {
      auto f = PacketFilter::Compile(o->filter, wo.link);
      if (!f.ok()) return fail(f.status());
      filter = std::move(*f);
    }
    auto writer = PcapWriter::Open(o->out, wo);
    if (!writer.ok()) return fail(writer.status());
    // Packets wait in a min-heap until no later chunk can precede them.
    auto later = [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns > b.ts_ns; };
    std::priority_queue<PacketRecord, std::vector<PacketRecord>, decltype(later)> heap(later);
    uint64_t written = 0, generated = 0;
    Status st;
    auto flush_before = [&](int64_t t) {
      while (st.ok() && !heap.empty() && heap.top().ts_ns < t) {
        const PacketRecord& p = heap.top();
        if (!filter || filter->Matches(p)) {
          st = (*writer)->Write(p);
          ++written;
        }
        heap.pop();
      }
    };
    // Per link: flows the previous chunk left open, and where that chunk ended.
    std::map<std::string, std::pair<int64_t, std::vector<model::OpenFlow>>> open_by_link;
    ProgressBar bar("generate", infos.size());
    // Chunk i's packets, in time order of chunks whichever source made them:
    // stitched to the flows its link's previous chunk left open, mapped back
    // with --key, cut to the range, and written once no later chunk can
    // precede them. Both sources call it the same way, so they write the
    // same bytes.
    auto emit = [&](size_t i, std::vector<PacketRecord>& packets) {
      const ChunkInfo& c = infos[i];
      auto& [prev_end, open] = open_by_link[c.link];
      if (prev_end != c.start_ns) open.clear();  // not adjacent: nothing to stitch to
      model::StitchFlows(&open, c.start_ns + c.duration_ns, &packets);
      prev_end = c.start_ns + c.duration_ns;
      generated += packets.size();
      if (key) {
        Pseudonymizer& k = key_by_fp.at(c.pseudonymized);
        for (auto& p : packets) k.Invert(&p);
      }
      for (auto& p : packets) {
        if (p.ts_ns >= range.since_ns && p.ts_ns < range.until_ns) heap.push(p);
      }
      std::vector<PacketRecord>().swap(packets);
      flush_before(i + 1 < infos.size() ? infos[i + 1].start_ns : std::numeric_limits<int64_t>::max());
      bar.Update(i + 1, absl::StrFormat("%d packets", generated));
    };
    // A chunk whose model is damaged: stop, or leave its window empty.
    auto damaged_model = [&](size_t i, const std::string& error) -> bool {
      if (!o->skip_damaged) {
        fail(absl::DataLossError(absl::StrCat(where_of(i), " cannot be regenerated: ", error,
                                              "; --skip-damaged leaves its window empty")));
        return false;
      }
      std::cerr << "dgcctl generate: warning: " << where_of(i) << " builds on a damaged model (" << error
                << "): its window is left empty\n";
      skipped.push_back(absl::StrCat(where_of(i), ": ", error));
      return true;
    };
    if (remote) {
      for (size_t k = 0, i = 0; k < segments.size() && st.ok(); ++k) {
        const size_t n = segments[k];
        StatusOr<CoordinatorClient::Answer> a = absl::UnknownError("");
        bool waiting_said = false;
        while (true) {
          a = client->Call("generate", "fetch", session, nlohmann::json{{"segment", k}}.dump());
          if (!a.ok()) return fail(a.status());
          const std::string state = a->json.value("state", "");
          if (state == "done" || state == "failed") break;
          if (a->json.value("workers", size_t{1}) == 0 && !waiting_said) {
            std::cerr << "dgcctl generate: waiting for a worker: none is registered with the coordinator\n";
            waiting_said = true;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (a->json.value("state", "") == "failed") {
          const std::string error = a->json.value("error", "");
          if (!a->json.value("damaged", false)) {
            return fail(absl::InternalError(absl::StrCat(
                "the workers could not regenerate ", where_of(i),
                n > 1 ? absl::StrCat(" and the ", n - 1, " chunk(s) after it that share its model") : "", ": ", error)));
          }
          for (size_t r = 0; r < n; ++r, ++i) {
            if (!damaged_model(i, error)) return;
          }
          continue;
        }
        auto packets_of = wire::DecodeSegmentPackets(a->data, n);
        if (!packets_of.ok()) return fail(packets_of.status());
        for (size_t r = 0; r < n && st.ok(); ++r, ++i) emit(i, (*packets_of)[r]);
      }
    }
    std::optional<ModelChain> chain;
    if (!remote) chain.emplace(lib.get());
    for (size_t i = 0; !remote && i < chunks.size() && st.ok();) {
      const auto* a = chunks[i];
      auto m = chain->Get(a->model_id);
      if (!m.ok()) {
        if (!absl::IsDataLoss(m.status())) return fail(m.status());
        if (!damaged_model(i, std::string(m.status().message()))) return;
        ++i;
        continue;
      }
      model::TokenizerConfig tc;
      if (a->report.contains("tokenizer")) {
        auto t = model::TokenizerConfig::FromJson(a->report["tokenizer"]);
        if (t.ok()) tc = *t;
      }
      model::GenerateOptions go;
      go.min_p = o->min_p;
      go.exact_templates = o->exact_templates;
      go.threads = o->threads;
      // The run of chunks after this one with the same model and tokenizer
      // (quiet chunks share their parent's), up to kRunFlows flows: sampled
      // in one pass, each chunk with its own seed, so the output is what
      // chunk-by-chunk regeneration gives, at a fraction of the cost of a few
      // flows a chunk.
      constexpr uint64_t kRunFlows = 4096;
      constexpr size_t kRunChunks = 256;
      size_t j = i + 1;
      uint64_t run_flows = flows_of.at(a);
      while (j < chunks.size() && j - i < kRunChunks && chunks[j]->model_id == a->model_id &&
             chunks[j]->report.value("tokenizer", nlohmann::json()) == a->report.value("tokenizer", nlohmann::json()) &&
             run_flows + flows_of.at(chunks[j]) <= kRunFlows) {
        run_flows += flows_of.at(chunks[j]);
        ++j;
      }
      std::vector<const model::ChunkArtifact*> run(chunks.begin() + i, chunks.begin() + j);
      std::vector<uint64_t> seeds;
      for (const auto* c : run) seeds.push_back(o->seed ^ static_cast<uint64_t>(c->seq()));
      auto packets_of = RegenerateChunks(**m, run, tc, seeds, go);
      if (!packets_of.ok()) return fail(packets_of.status());
      for (size_t r = 0; r < run.size() && st.ok(); ++r, ++i) emit(i, (*packets_of)[r]);
    }
    bar.Finish();
    if (st.ok()) st = (*writer)->Close();
    if (!st.ok()) return fail(st);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o->out != "-") {
      nlohmann::json side = {{"synthetic", true},
                             {"generator", "dgc"},
                             {"library", o->library},
                             {"coordinator", remote ? o->remote.coordinator : ""},
                             {"link", o->link},
                             {"chunks", infos.size()},
                             {"since", FormatRfc3339(std::max(range.since_ns, infos.front().start_ns))},
                             {"until", FormatRfc3339(std::min(range.until_ns, infos.back().start_ns + infos.back().duration_ns))},
                             {"filter", o->filter},
                             {"seed", o->seed},
                             {"frames", o->full_packets ? "full (payload zero-filled)"
                                        : wo.link == OutputLink::kEthernet ? "header-only, Ethernet"
                                                                           : "header-only, raw IP"},
                             {"pseudonymized", pseudonymized.empty() ? ""
                                               : key ? absl::StrCat("mapped back with --key (",
                                                                    absl::StrJoin(schemes, ", "), ")")
                                                     : pseudonymized},
                             {"packets", written},
                             {"damaged_chunks_left_empty", skipped}};
      Status s2 = WriteFileAtomic(o->out + ".dgc.json", side.dump(2) + "\n");
      if (!s2.ok()) std::cerr << "dgcctl generate: warning: " << s2.message() << "\n";
    }
    std::cerr << absl::StrFormat("generated %d packets from %d chunk(s) in %.2f s (%.0f packets/s), wrote %d to %s\n",
                                 generated, infos.size(), secs, secs > 0 ? generated / secs : 0.0, written, o->out);
    if (!skipped.empty()) {
      std::cerr << absl::StrFormat("%d damaged chunk(s) left empty (--skip-damaged); dgcctl check --library %s lists them\n",
                                   skipped.size(), remote ? "<the coordinator's library>" : o->library);
    }
  });
}

}  // namespace dgc::ctl

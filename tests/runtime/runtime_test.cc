// The distributed runtime with real processes on 127.0.0.1: ingest ->
// coordinator -> workers end to end against the embedded `dgcctl compress`,
// and the fault cases of issue 6 (a worker killed mid-job, the coordinator
// killed and restarted, the coordinator away while ingest runs, a client
// without an allowed key, hostile messages). Every wait is bounded.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/time.h"
#include "common/trace/chunk_format.h"
#include "common/trace/pcap_reader.h"
#include "common/wire/codec.h"
#include "library/rocksdb_model_library.h"
#include "common/wire/zmq_transport.h"
#include "gtest/gtest.h"
#include "tests/runtime/cluster.h"
#include "tests/testutil/testutil.h"

namespace dgc::testing {
namespace {

using std::chrono::seconds;
namespace fs = std::filesystem;

constexpr int kChunkSeconds = 30;

struct Coord {
  std::unique_ptr<Process> proc;
  std::string listen, api, metrics;
};

class RuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new TempDir();
    trace_ = shared_->File("t.pcap");
    base_ = shared_->File("base.dgcm");
    ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " synth-trace -o " + trace_ + " --seconds 120 --seed 3 >/dev/null"), 0);
    std::string out;
    ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " warmup " + trace_ + " -o " + base_ + " --chunk-seconds " +
                      std::to_string(kChunkSeconds) + " --warmup-steps 30 --warmup-flows 3000 2>&1",
                  &out),
              0)
        << out;
    // The windows the trace makes, as file-mode ingest cuts them.
    ASSERT_EQ(testing::Run(BinaryPath("dgc-ingest") + " " + trace_ + " --out " + shared_->File("probe") + " --link probe " +
                      "--chunk-seconds " + std::to_string(kChunkSeconds) + " -o json --no-progress",
                  &out),
              0);
    chunks_ = nlohmann::json::parse(out).value("chunks", 0);
    ASSERT_GT(chunks_, 2);
    auto r = TraceReader::Open(trace_);
    ASSERT_TRUE(r.ok()) << r.status();
    PacketRecord p;
    constexpr int64_t kChunkNs = kChunkSeconds * 1'000'000'000LL;
    while ((*r)->Next(&p)) windows_[FormatRfc3339(p.ts_ns / kChunkNs * kChunkNs)]++;
    ASSERT_EQ(static_cast<int>(windows_.size()), chunks_);
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(RequireTool("curl")); }  // HttpGet

  Coord StartCoordinator(const std::string& lib, std::vector<std::string> extra = {},
                         const std::string& listen = "tcp://127.0.0.1:0", const std::string& api = "tcp://127.0.0.1:0",
                         bool with_base = true) {
    Coord c;
    std::vector<std::string> args = {"--library", lib, "--listen", listen, "--api", api, "--metrics", "127.0.0.1:0",
                                     "--lease-seconds", "3", "--heartbeat-seconds", "0.5"};
    if (!check_) args.push_back("--no-check");
    // Room for a delta in these small chunks, as the embedded runs below.
    if (std::find(extra.begin(), extra.end(), "--budget") == extra.end()) extra.insert(extra.end(), {"--budget", "10x"});
    if (std::find(extra.begin(), extra.end(), "--steps") == extra.end()) extra.insert(extra.end(), {"--steps", "10"});
    // Fine-tunes on these small chunks (the default, dgcctl compress's, is 4096).
    if (std::find(extra.begin(), extra.end(), "--min-flows") == extra.end()) extra.insert(extra.end(), {"--min-flows", "32"});
    if (with_base) extra.insert(extra.end(), {"--base", base_});
    args.insert(args.end(), extra.begin(), extra.end());
    c.proc = std::make_unique<Process>(BinaryPath("dgc-coordinator"), args, dir_.File("coordinator.log"));
    auto l = c.proc->WaitForLog("listening on (tcp://[0-9.:]+) \\(workers", seconds(20));
    auto a = c.proc->WaitForLog("operator API on (tcp://[0-9.:]+)", seconds(1));
    auto m = c.proc->WaitForLog("metrics listening on ([0-9.:]+)", seconds(1));
    EXPECT_TRUE(l && a && m) << c.proc->ReadLog();
    c.listen = l.value_or("");
    c.api = a.value_or("");
    c.metrics = m.value_or("");
    return c;
  }
  std::unique_ptr<Process> StartWorker(const std::string& coordinator, const std::string& name,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--coordinator", coordinator, "--name", name, "--metrics", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(BinaryPath("dgc-worker"), args, dir_.File(name + ".log"));
  }
  std::unique_ptr<Process> StartIngest(const std::string& coordinator, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {trace_, "--coordinator", coordinator, "--spool-dir", dir_.File("spool"),
                                     "--link", "test", "--chunk-seconds", std::to_string(kChunkSeconds),
                                     "--metrics", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(BinaryPath("dgc-ingest"), args, dir_.File("ingest.log"));
  }
  std::unique_ptr<Process> StartIngest(const std::string& coordinator, const std::vector<std::string>& env,
                                       const std::string& log) {
    std::vector<std::string> args = {trace_, "--coordinator", coordinator, "--spool-dir", dir_.File("spool"),
                                     "--link", "test", "--chunk-seconds", std::to_string(kChunkSeconds),
                                     "--metrics", "127.0.0.1:0"};
    return std::make_unique<Process>(BinaryPath("dgc-ingest"), args, dir_.File(log), env);
  }
  // The trace through a coordinator (with `flags`), two workers and an
  // ingest until every chunk is committed; then each stops cleanly.
  void RunTraceThroughTwoWorkers(const std::vector<std::string>& flags) {
    Coord c = StartCoordinator(dir_.File("lib"), flags);
    auto w1 = StartWorker(c.listen, "w1");
    auto w2 = StartWorker(c.listen, "w2");
    auto ingest = StartIngest(c.listen);
    EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
    ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
    for (Process* p : {w1.get(), w2.get(), c.proc.get()}) p->Signal(SIGTERM);
    for (Process* p : {w1.get(), w2.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  }
  static std::vector<nlohmann::json> Jobs(const std::string& api, const std::string& kind = "compress") {
    std::vector<nlohmann::json> out;
    auto j = Ctl("get jobs --coordinator " + api + " --timeout 3");
    if (!j) return out;
    for (const auto& r : *j) {
      if (r.value("kind", "") == kind) out.push_back(r);
    }
    return out;
  }
  // Every chunk of the trace has a compress job, and every one is done.
  static bool AllDone(const std::string& api) {
    auto jobs = Jobs(api);
    if (static_cast<int>(jobs.size()) != chunks_) return false;
    for (const auto& j : jobs) {
      if (j.value("state", "") != "done") return false;
    }
    return true;
  }
  std::string Logs() {
    std::string s;
    for (const auto& e : fs::directory_iterator(dir_.path())) {
      if (e.path().extension() == ".log") {
        std::string out;
        testing::Run("tail -n 25 " + e.path().string(), &out);
        s += "== " + e.path().filename().string() + "\n" + out;
      }
    }
    return s;
  }
  // The library after the coordinator stopped: chunks of `link` and models.
  static std::pair<int, int> LibraryCounts(const std::string& lib) {
    auto chunks = Ctl("get chunks --library " + lib);
    auto models = Ctl("get models --library " + lib);
    int finetune = 0;
    if (models) {
      for (const auto& m : *models) finetune += m.value("kind", "") == "finetune";
    }
    return {chunks ? static_cast<int>(chunks->size()) : -1, finetune};
  }

  // The library after the coordinator stopped, chunk by chunk: every window
  // of the trace exactly once with its packets, nothing else, no broken
  // invariant and no model that no chunk needs (a job's result committed
  // twice would leave one).
  static void ExpectEveryWindowOnce(const std::string& lib) {
    auto chunks = Ctl("get chunks --library " + lib);
    ASSERT_TRUE(chunks);
    std::set<std::string> seen;
    for (const auto& c : *chunks) {
      const std::string start = c.value("start", "");
      EXPECT_TRUE(seen.insert(start).second) << "chunk at " << start << " twice";
      auto w = windows_.find(start);
      if (w == windows_.end()) {
        ADD_FAILURE() << "chunk at " << start << " is no window of the trace";
        continue;
      }
      EXPECT_EQ(c.value("packets", uint64_t{0}), w->second) << "chunk at " << start;
    }
    for (const auto& [start, packets] : windows_) EXPECT_TRUE(seen.count(start)) << "window " << start << " lost";
    auto l = RocksDbModelLibrary::Open(lib);
    ASSERT_TRUE(l.ok()) << l.status();
    auto check = (*l)->Check();
    ASSERT_TRUE(check.ok()) << check.status();
    for (const auto& p : check->problems) ADD_FAILURE() << p;
    for (const auto& m : check->unreferenced_models) ADD_FAILURE() << "orphan model " << m;
  }

  // `dgcctl get chunks` of a library, oldest first.
  static nlohmann::json ChunksOf(const std::string& lib) {
    std::string text;
    EXPECT_EQ(testing::Run(BinaryPath("dgcctl") + " get chunks --library " + lib + " -o json 2>/dev/null", &text), 0);
    return nlohmann::json::parse(text, nullptr, false);
  }
  // Whether a chunk of `lib` trained a delta of its own (else it shares its
  // parent's model, its flows pooled for a later fine-tune).
  static bool HasDelta(const std::string& lib, const nlohmann::json& chunk) {
    auto d = Ctl("describe chunk " + chunk.value("chunk", "") + " --library " + lib);
    return d && d->value("model", "") != d->value("parent", "");
  }
  // The embedded path on `trace` into `emb` with the cluster's knobs
  // (`flags`: what dgcctl compress takes for them) makes the same decision
  // for every chunk as the cluster did into `lib`, and trains a delta on the
  // same chunks, except the last (at the end of its input dgcctl compress
  // trains a held quiet chunk on the pool; a cluster's input has no end).
  static void ExpectSameDecisionsAsEmbedded(const std::string& trace, const std::string& lib, const std::string& emb,
                                            const std::string& flags) {
    std::string out;
    ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " compress " + trace + " --library " + emb +
                               " --link test --chunk-seconds " + std::to_string(kChunkSeconds) + " " + flags + " 2>&1",
                           &out),
              0)
        << out;
    nlohmann::json ce = ChunksOf(emb), cd = ChunksOf(lib);
    ASSERT_TRUE(ce.is_array() && cd.is_array());
    ASSERT_EQ(cd.size(), ce.size());
    for (size_t i = 0; i < ce.size(); ++i) {
      EXPECT_EQ(cd[i]["start"], ce[i]["start"]);
      EXPECT_EQ(cd[i]["decision"], ce[i]["decision"]) << "chunk " << i << ": cluster " << cd[i].dump()
                                                      << "\nembedded " << ce[i].dump();
      if (i + 1 < ce.size()) {
        EXPECT_EQ(HasDelta(lib, cd[i]), HasDelta(emb, ce[i])) << "chunk " << i << ": cluster " << cd[i].dump()
                                                              << "\nembedded " << ce[i].dump();
      }
    }
  }

  bool check_ = false;  // StartCoordinator: workers run the fidelity check
  static TempDir* shared_;
  static std::string trace_, base_;
  static int chunks_;
  static std::map<std::string, uint64_t> windows_;  // chunk start (RFC 3339) -> packets of the trace
  TempDir dir_;
};

TempDir* RuntimeTest::shared_ = nullptr;
std::string RuntimeTest::trace_;
std::string RuntimeTest::base_;
int RuntimeTest::chunks_ = 0;
std::map<std::string, uint64_t> RuntimeTest::windows_;

double EvalMean(const std::string& real, const std::string& synth) {
  std::string out;
  if (testing::Run(BinaryPath("dgcctl") + " eval " + real + " " + synth + " -o json 2>/dev/null", &out) != 0) return -1;
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.contains("scores") || !j["scores"].is_object()) return -1;
  return j["scores"].value("mean", -1.0);
}

// Every fine-tune recorded in `lib` trained on `ranks` data-parallel ranks
// (and there was at least one).
void ExpectEveryTrainingOnRanks(const std::string& lib, int chunks, int ranks) {
  auto list = Ctl("get chunks --library " + lib);
  ASSERT_TRUE(list);
  ASSERT_EQ(static_cast<int>(list->size()), chunks);
  int trainings = 0, on_ranks = 0;
  for (const auto& ch : *list) {
    auto d = Ctl("describe chunk " + ch.value("chunk", "") + " --library " + lib);
    ASSERT_TRUE(d) << ch.dump();
    const nlohmann::json& report = (*d)["report"];
    if (!report.is_object() || !report.contains("attempts")) continue;
    for (const auto& at : report["attempts"]) {
      ++trainings;
      on_ranks += at["train"].value("world_size", 0) == ranks;
    }
  }
  EXPECT_GT(trainings, 0) << list->dump();
  EXPECT_EQ(on_ranks, trainings);
}

TEST_F(RuntimeTest, TwoWorkersCommitEveryChunkAndRegenerateLikeTheEmbeddedPath) {
  // Spans of two chunks, packed as soon as the stream is past them.
  static_assert(kChunkSeconds == 30, "spans of two chunks: 60 s");
  Coord c = StartCoordinator(dir_.File("lib"), {"--pack-hours", "0.0166666666667", "--pack-grace-seconds", "0"});
  auto w1 = StartWorker(c.listen, "w1");
  auto w2 = StartWorker(c.listen, "w2");
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  std::string metrics = HttpGet(c.metrics, "/metrics");
  EXPECT_EQ(MetricValue(metrics, "dgc_chunks_committed_total"), chunks_) << metrics;
  EXPECT_GT(MetricValue(metrics, "dgc_chunk_stored_bytes_total").value_or(0), 0);
  EXPECT_GT(MetricValue(metrics, "dgc_chunk_raw_bytes_total").value_or(0), 0);
  auto workers = Ctl("get workers --coordinator " + c.api);
  ASSERT_TRUE(workers);
  EXPECT_EQ(workers->size(), 2u);
  // `get jobs` by pages of 1 or 2 (filtered or not) lists what one answer
  // does, each job once, in one table with one header.
  auto ids = [&](const std::string& flags, const std::string& state = "") {
    std::vector<uint64_t> out;
    auto j = Ctl("get jobs --coordinator " + c.api + " " + flags);
    EXPECT_TRUE(j && j->is_array()) << flags;
    if (j && j->is_array()) {
      for (const auto& r : *j) {
        if (state.empty() || r.value("state", "") == state) out.push_back(r.value("id", uint64_t{0}));
      }
    }
    return out;
  };
  const std::vector<uint64_t> all = ids("--chunk-size 0");
  EXPECT_GE(all.size(), static_cast<size_t>(chunks_));
  EXPECT_EQ(ids("--chunk-size 1"), all);
  EXPECT_EQ(ids("--chunk-size 2 --state done"), ids("--chunk-size 0", "done"));
  EXPECT_GE(ids("--chunk-size 2 --state done").size(), static_cast<size_t>(chunks_));  // every compress job
  EXPECT_TRUE(ids("--chunk-size 2 --state failed").empty());
  std::string table;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " get jobs --chunk-size 2 --coordinator " + c.api + " 2>&1", &table), 0)
      << table;
  size_t lines = 0, headers = 0;
  for (absl::string_view line : absl::StrSplit(table, '\n', absl::SkipEmpty())) {
    ++lines;
    headers += absl::StartsWith(line, "NAME ");
  }
  EXPECT_EQ(headers, 1u) << table;
  EXPECT_EQ(lines, all.size() + 1) << table;
  // `get chunks` by pages of 1 or 2 (one link or every link) lists what one
  // answer does, each chunk once, in key order.
  auto chunk_names = [&](const std::string& flags) {
    std::vector<std::string> out;
    auto j = Ctl("get chunks --coordinator " + c.api + " " + flags);
    EXPECT_TRUE(j && j->is_array()) << flags;
    if (j && j->is_array()) {
      for (const auto& r : *j) out.push_back(r.value("chunk", ""));
    }
    return out;
  };
  const std::vector<std::string> every = chunk_names("--chunk-size 0");
  EXPECT_EQ(every.size(), static_cast<size_t>(chunks_));
  EXPECT_EQ(chunk_names("--chunk-size 1"), every);
  EXPECT_EQ(chunk_names("--chunk-size 2"), every);
  ASSERT_FALSE(every.empty());
  const std::string link = every[0].substr(0, every[0].find('@'));
  EXPECT_EQ(chunk_names("--chunk-size 2 --link " + link), chunk_names("--chunk-size 0 --link " + link));
  EXPECT_TRUE(chunk_names("--chunk-size 2 --link no-such-link").empty());
  // Clean shutdown: exit 0 within the 10 s the contract allows.
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  EXPECT_EQ(LibraryCounts(dir_.File("lib")).first, chunks_);
  // The coordinator packed the closed spans' quiet chunks (at the latest as
  // it stopped); every reader below reads through the packs.
  {
    std::string st;
    ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " storage --library " + dir_.File("lib") + " -o json 2>&1", &st), 0)
        << st;
    auto sj = nlohmann::json::parse(st, nullptr, false);
    ASSERT_TRUE(sj.is_object()) << st;
    EXPECT_GE(sj.value("packs", 0), 1) << st << c.proc->ReadLog();
    EXPECT_GE(sj.value("packed_chunks", 0), 2) << st;
    EXPECT_NE(c.proc->ReadLog().find("packed "), std::string::npos) << c.proc->ReadLog();
  }

  // The embedded path on the same input, base and knobs.
  std::string out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " compress " + trace_ + " --library " + dir_.File("emb") + " --base " + base_ +
                    " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                    " --steps 10 --no-check --budget 10x --min-flows 32 2>&1",  // as the coordinator above
                &out),
            0)
      << out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("emb") + " -o " + dir_.File("emb.pcap") +
                " 2>&1", &out), 0) << out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("lib") + " -o " + dir_.File("dist.pcap") +
                " 2>&1", &out), 0) << out;
  double emb = EvalMean(trace_, dir_.File("emb.pcap"));
  double dist = EvalMean(trace_, dir_.File("dist.pcap"));
  ASSERT_GE(emb, 0);
  ASSERT_GE(dist, 0);
  std::cerr << "fidelity mean: embedded " << emb << ", distributed " << dist << "\n";
  EXPECT_NEAR(dist, emb, 0.02);
  // One policy: the cluster fingerprints every chunk and records the same
  // decision the embedded path made, with its drift.
  nlohmann::json ce = ChunksOf(dir_.File("emb")), cd = ChunksOf(dir_.File("lib"));
  ASSERT_TRUE(ce.is_array() && cd.is_array());
  ASSERT_EQ(ce.size(), cd.size());
  for (size_t i = 0; i < ce.size(); ++i) {
    EXPECT_EQ(cd[i]["start"], ce[i]["start"]);
    EXPECT_FALSE(cd[i]["decision"].get<std::string>().empty()) << cd[i].dump();
    EXPECT_EQ(cd[i]["decision"], ce[i]["decision"]) << "chunk " << i << ": cluster " << cd[i].dump() << "\nembedded "
                                                    << ce[i].dump();
    if (i > 0) EXPECT_GE(cd[i].value("drift", -1.0), 0.0) << cd[i].dump();
  }
}

// A parent whose fine-tunes keep being dropped stops being fine-tuned, on
// both paths alike (library::CompressionPolicy::FutileFinetune): with every
// delta dropped (--min-delta-gain 2) and --futile-after 1, the first chunk
// fine-tunes and drops its delta and the next ones skip, saying why.
TEST_F(RuntimeTest, FutileFinetunesAreSkippedOnTheSameChunksOnBothPaths) {
  check_ = true;
  const std::vector<std::string> knobs = {"--min-delta-gain", "2", "--futile-after", "1", "--check-flows", "64"};
  Coord c = StartCoordinator(dir_.File("lib"), knobs);
  auto w1 = StartWorker(c.listen, "w1");
  auto w2 = StartWorker(c.listen, "w2");
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(180))) << Logs();
  EXPECT_EQ(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_chunks_committed_total"), chunks_);
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();

  std::string out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " compress " + trace_ + " --library " + dir_.File("emb") + " --base " +
                             base_ + " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                             " --steps 10 --budget 10x --min-flows 32 --min-delta-gain 2 --futile-after 1"
                             " --check-flows 64 2>&1",
                         &out),
            0)
      << out;
  auto report = [](const std::string& lib, const nlohmann::json& chunk) {
    auto d = Ctl("describe chunk " + chunk.value("chunk", "") + " --library " + lib);
    return d ? d->value("report", nlohmann::json::object()) : nlohmann::json();
  };
  nlohmann::json ce = ChunksOf(dir_.File("emb")), cd = ChunksOf(dir_.File("lib"));
  ASSERT_TRUE(ce.is_array() && cd.is_array());
  ASSERT_EQ(static_cast<int>(ce.size()), chunks_);
  ASSERT_EQ(cd.size(), ce.size());
  int skipped = 0;
  for (size_t i = 0; i < ce.size(); ++i) {
    const nlohmann::json re = report(dir_.File("emb"), ce[i]), rd = report(dir_.File("lib"), cd[i]);
    ASSERT_TRUE(re.is_object() && rd.is_object()) << i;
    EXPECT_EQ(cd[i]["decision"], ce[i]["decision"]) << i;
    EXPECT_EQ(rd.contains("finetune_skipped"), re.contains("finetune_skipped"))
        << "chunk " << i << ": cluster " << rd.dump() << "\nembedded " << re.dump();
    EXPECT_EQ(rd.contains("delta_dropped"), re.contains("delta_dropped")) << i;
    if (i == 0) {
      EXPECT_TRUE(re.contains("delta_dropped")) << re.dump();  // the evidence
    } else if (i <= 6) {
      EXPECT_NE(re.value("finetune_skipped", "").find("gained less than min_delta_gain"), std::string::npos)
          << i << ": " << re.dump();
      EXPECT_FALSE(re.contains("attempts")) << re.dump();  // nothing trained
      EXPECT_TRUE(re.contains("fidelity_mean")) << re.dump();  // still scored
    }
    skipped += re.contains("finetune_skipped");
  }
  EXPECT_EQ(skipped, std::min(chunks_ - 1, 6));
}

// dgcctl generate --coordinator: the coordinator cuts the range into
// segments, two workers regenerate them, dgcctl merges them, and the pcap is
// byte-identical to the embedded generate on the same library; again with a
// range and a filter, and again when a worker is killed (fault point) after
// sampling a segment it never sends: the coordinator requeues it on the
// survivor once no heartbeat lists it.
TEST_F(RuntimeTest, RegenerationOnTwoWorkersIsByteIdenticalToTheEmbeddedPathAndSurvivesAKilledWorker) {
  const std::string ctl = BinaryPath("dgcctl");
  std::string out;
  ASSERT_EQ(testing::Run(ctl + " compress " + trace_ + " --library " + dir_.File("lib") + " --base " + base_ +
                             " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                             " --steps 10 --no-check --budget 10x --min-flows 32 2>&1",
                         &out),
            0)
      << out;
  auto embedded = [&](const std::string& flags, const std::string& pcap) {
    ASSERT_EQ(testing::Run(ctl + " generate --library " + dir_.File("lib") + " " + flags + " -o " + dir_.File(pcap) + " 2>&1",
                           &out),
              0)
        << out;
  };
  auto chunks = ChunksOf(dir_.File("lib"));
  ASSERT_TRUE(chunks.is_array() && chunks.size() >= 3) << chunks.dump();
  const std::string range = "--since " + chunks[1].value("start", "") + " --until " + chunks[2].value("start", "") +
                            " --filter tcp";
  embedded("--seed 5", "emb.pcap");
  embedded("--seed 7 " + range, "emb-range.pcap");
  auto same = [&](const std::string& a, const std::string& b) {
    return testing::Run("cmp -s " + dir_.File(a) + " " + dir_.File(b)) == 0;
  };
  // --library or --coordinator, one of them.
  EXPECT_NE(testing::Run(ctl + " generate -o " + dir_.File("x.pcap") + " 2>&1", &out), 0);
  EXPECT_NE(out.find("give --library"), std::string::npos) << out;

  Coord c = StartCoordinator(dir_.File("lib"));
  auto w1 = StartWorker(c.listen, "w1");
  auto w2 = StartWorker(c.listen, "w2");
  ASSERT_TRUE(WaitUntil([&] { return Ctl("get workers --coordinator " + c.api).value_or(nlohmann::json()).size() == 2; },
                        seconds(20)))
      << Logs();
  auto remote = [&](const std::string& flags, const std::string& pcap) {
    // Bounded: a segment never requeued would leave it waiting.
    ASSERT_EQ(testing::Run("timeout 120 " + ctl + " generate --coordinator " + c.api + " " + flags + " -o " + dir_.File(pcap) + " 2>&1",
                           &out),
              0)
        << out << Logs();
  };
  remote("--seed 5", "dist.pcap");
  EXPECT_TRUE(same("emb.pcap", "dist.pcap"));
  // Both workers took segments (one per chunk: each chunk fine-tuned a model).
  for (Process* w : {w1.get(), w2.get()}) EXPECT_NE(w->ReadLog().find("regenerated"), std::string::npos) << w->ReadLog();
  remote("--seed 7 " + range, "dist-range.pcap");
  EXPECT_TRUE(same("emb-range.pcap", "dist-range.pcap"));

  // A worker that dies holding a segment.
  w2->Signal(SIGTERM);
  EXPECT_EQ(w2->Wait(seconds(10)), 0);
  auto victim = std::make_unique<Process>(BinaryPath("dgc-worker"),
                                          std::vector<std::string>{"--coordinator", c.listen, "--name", "victim",
                                                                   "--metrics", "127.0.0.1:0"},
                                          dir_.File("victim.log"),
                                          std::vector<std::string>{"DGC_FAULT=worker.generate.after_sampling"});
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto w = Ctl("get workers --coordinator " + c.api);
        if (!w) return false;
        for (const auto& r : *w) {
          if (r.value("name", "") == "victim") return w->size() == 2;
        }
        return false;
      },
      seconds(20)))
      << Logs();
  remote("--seed 5", "dist-kill.pcap");
  EXPECT_NE(victim->ReadLog().find("dgc fault point worker.generate.after_sampling hit 1: SIGKILL"), std::string::npos)
      << victim->ReadLog();
  EXPECT_EQ(victim->Wait(seconds(5)), 128 + SIGKILL);
  EXPECT_NE(c.proc->ReadLog().find("requeued"), std::string::npos) << c.proc->ReadLog();
  EXPECT_TRUE(same("emb.pcap", "dist-kill.pcap"));
  for (Process* p : {w1.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
}

// A drift episode through both paths: the synthetic LAN, then a minute of a
// DNS retry storm (one host, 150 queries a second, a new source port each).
// The shared policy (library/compression_policy.h) must retrain on the
// storm's first chunk itself in both, and the cluster must count it in
// dgc_drift_triggers_total{reason="drift"}; every chunk gets the same
// decision on both paths.
TEST_F(RuntimeTest, DriftEpisodeRetrainsTheSameChunkOnBothPaths) {
  constexpr int64_t kChunkNs = kChunkSeconds * 1'000'000'000LL;
  std::vector<PacketRecord> packets;
  {
    auto r = TraceReader::Open(trace_);
    ASSERT_TRUE(r.ok()) << r.status();
    PacketRecord p;
    while ((*r)->Next(&p)) packets.push_back(p);
  }
  ASSERT_FALSE(packets.empty());
  const int64_t storm_start = (packets.back().ts_ns / kChunkNs + 1) * kChunkNs;
  uint32_t lcg = 12345;
  for (int i = 0; i < 2 * kChunkSeconds * 150; ++i) {
    lcg = lcg * 1103515245u + 12345u;
    packets.push_back(MakePacket(storm_start + int64_t(i) * (1'000'000'000LL / 150), 0x0a000007, 0x08080808,
                                 kProtoUdp, uint16_t(1024 + (lcg >> 16) % 60000), 53, 70 + (lcg >> 8) % 10));
  }
  const std::string trace = dir_.File("storm.pcap");
  WritePcap(trace, packets);
  const std::string storm_chunk = FormatRfc3339(storm_start);
  const std::vector<std::string> knobs = {"--warmup-steps", "30", "--warmup-seconds", "300", "--warmup-flows", "3000"};

  Coord c = StartCoordinator(dir_.File("lib"), knobs);
  auto w1 = StartWorker(c.listen, "w1");
  auto w2 = StartWorker(c.listen, "w2");
  Process ingest(BinaryPath("dgc-ingest"),
                 {trace, "--coordinator", c.listen, "--spool-dir", dir_.File("spool"), "--link", "test",
                  "--chunk-seconds", std::to_string(kChunkSeconds), "--metrics", "127.0.0.1:0"},
                 dir_.File("ingest.log"));
  EXPECT_EQ(ingest.Wait(seconds(60)), 0) << Logs();
  const int chunks = chunks_ + 2;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto jobs = Jobs(c.api);
        if (static_cast<int>(jobs.size()) != chunks) return false;
        for (const auto& j : jobs) {
          if (j.value("state", "") != "done") return false;
        }
        return true;
      },
      seconds(180)))
      << Logs();
  std::string metrics = HttpGet(c.metrics, "/metrics");
  EXPECT_GE(MetricValue(metrics, "dgc_drift_triggers_total{reason=\"drift\"}").value_or(0), 1) << metrics;
  EXPECT_EQ(Jobs(c.api, "retrain").size(), 1u);  // the storm's first chunk; --base serves the first
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();

  std::string out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " compress " + trace + " --library " + dir_.File("emb") + " --base " +
                             base_ + " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                             " --steps 10 --no-check --budget 10x --min-flows 32 --warmup-steps 30"
                             " --warmup-seconds 300 --warmup-flows 3000 2>&1",
                         &out),
            0)
      << out;
  nlohmann::json ce = ChunksOf(dir_.File("emb")), cd = ChunksOf(dir_.File("lib"));
  ASSERT_TRUE(ce.is_array() && cd.is_array());
  ASSERT_EQ(static_cast<int>(ce.size()), chunks);
  ASSERT_EQ(cd.size(), ce.size());
  for (size_t i = 0; i < ce.size(); ++i) {
    EXPECT_EQ(cd[i]["start"], ce[i]["start"]);
    EXPECT_EQ(cd[i]["decision"], ce[i]["decision"]) << "chunk " << i << ": cluster " << cd[i].dump() << "\nembedded "
                                                    << ce[i].dump();
    if (ce[i]["start"] == storm_chunk) {
      EXPECT_EQ(ce[i]["decision"], "retrain") << ce[i].dump();
      EXPECT_GT(cd[i].value("drift", -1.0), 0.35) << cd[i].dump();
    }
  }
}

// Without --base: the cluster's first base waits for the stream's first
// chunks (--first-base-chunks) and trains on them all, as dgcctl compress
// --warmup-chunks does; both paths then decide alike and regenerate alike.
TEST_F(RuntimeTest, FirstBaseTrainsOnTheFirstChunksOnBothPaths) {
  // Bases bounded by steps, not by wall time (300 s is never reached), so
  // both paths train alike however busy the cores are: at 10 s, run beside
  // another runtime test, the cluster's base got fewer steps (means 0.119
  // and 0.145).
  const std::vector<std::string> knobs = {"--warmup-steps", "30", "--warmup-seconds", "300", "--warmup-flows", "100000"};
  std::vector<std::string> extra = knobs;
  extra.insert(extra.end(), {"--first-base-chunks", "3"});
  Coord c = StartCoordinator(dir_.File("lib"), extra, "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", /*with_base=*/false);
  auto w1 = StartWorker(c.listen, "w1");
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(180))) << Logs();
  auto retrains = Jobs(c.api, "retrain");
  ASSERT_EQ(retrains.size(), 1u);
  EXPECT_TRUE(c.proc->WaitForLog("trains on (2) more chunk", seconds(1))) << c.proc->ReadLog();
  for (Process* p : {w1.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();

  std::string out;
  std::string cmd = BinaryPath("dgcctl") + " compress " + trace_ + " --library " + dir_.File("emb") +
                    " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                    " --steps 10 --no-check --budget 10x --min-flows 32 --warmup-chunks 3";
  for (const auto& k : knobs) cmd += " " + k;
  ASSERT_EQ(testing::Run(cmd + " 2>&1", &out), 0) << out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("emb") + " -o " +
                             dir_.File("emb.pcap") + " 2>&1", &out), 0) << out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("lib") + " -o " +
                             dir_.File("dist.pcap") + " 2>&1", &out), 0) << out;
  const double emb = EvalMean(trace_, dir_.File("emb.pcap")), dist = EvalMean(trace_, dir_.File("dist.pcap"));
  std::cerr << "fidelity mean without --base: embedded " << emb << ", distributed " << dist << "\n";
  ASSERT_GE(emb, 0);
  ASSERT_GE(dist, 0);
  EXPECT_NEAR(dist, emb, 0.02);
  auto ce = Ctl("get chunks --library " + dir_.File("emb"));
  auto cd = Ctl("get chunks --library " + dir_.File("lib"));
  ASSERT_TRUE(ce && cd);
  ASSERT_EQ(ce->size(), cd->size());
  for (size_t i = 0; i < ce->size(); ++i) {
    EXPECT_EQ((*cd)[i]["decision"], (*ce)[i]["decision"]) << "chunk " << i << ": cluster " << (*cd)[i].dump()
                                                          << "\nembedded " << (*ce)[i].dump();
  }
  EXPECT_EQ((*ce)[0]["decision"], "retrain");
}

TEST_F(RuntimeTest, WorkerWithTwoRanksTrainsEveryJobDataParallel) {
  // "--device cpu,cpu": two Gloo ranks on the CPU, the path a multi-GPU
  // worker takes over its GPUs (one job at a time: it uses every device).
  Coord c = StartCoordinator(dir_.File("lib"), {"--min-flows", "1"});
  auto w = StartWorker(c.listen, "dp", {"--device", "cpu,cpu", "--max-jobs", "1"});
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  EXPECT_TRUE(w->WaitForLog("data-parallel over 2 ranks \\(cpu,cpu\\)", seconds(1))) << w->ReadLog();
  for (Process* p : {w.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  ExpectEveryTrainingOnRanks(dir_.File("lib"), chunks_, 2);
}

TEST_F(RuntimeTest, LargeJobsSpanTwoWorkersDataParallel) {
  // Every chunk is large (--large-job-packets 1) and may span two workers
  // that advertise a peer address: one leads (its store on a port the system
  // chose), the other serves rank 1 over Gloo on 127.0.0.1.
  Coord c = StartCoordinator(dir_.File("lib"), {"--min-flows", "1", "--large-job-packets", "1",
                                                "--max-workers-per-job", "2"});
  auto w1 = StartWorker(c.listen, "g1", {"--device", "cpu", "--peer-address", "127.0.0.1"});
  auto w2 = StartWorker(c.listen, "g2", {"--device", "cpu", "--peer-address", "127.0.0.1:0"});
  ASSERT_TRUE(WaitUntil([&] { return Ctl("get workers --coordinator " + c.api).value_or(nlohmann::json()).size() == 2; },
                        seconds(20)))
      << Logs();
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  EXPECT_TRUE(c.proc->WaitForLog("data-parallel over 2 workers, 2 ranks", seconds(1))) << c.proc->ReadLog();
  // Each worker led some jobs and served others, or one did all the leading.
  const std::string logs = w1->ReadLog() + w2->ReadLog();
  EXPECT_NE(logs.find("leading 2 data-parallel ranks"), std::string::npos) << logs;
  EXPECT_NE(logs.find("training round(s)"), std::string::npos) << logs;
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), w2.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  ExpectEveryTrainingOnRanks(dir_.File("lib"), chunks_, 2);
  std::string out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("lib") + " -o " +
                             dir_.File("gang.pcap") + " 2>&1",
                         &out),
            0)
      << out;
  // Two ranks train as one does (within float tolerance; distributed_test
  // shows it step by step): the regenerated trace scores as the embedded
  // path's with the same knobs.
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " compress " + trace_ + " --library " + dir_.File("emb") + " --base " +
                             base_ + " --link test --chunk-seconds " + std::to_string(kChunkSeconds) +
                             " --steps 10 --no-check --min-flows 1 --budget 10x 2>&1",
                         &out),
            0)
      << out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " generate --library " + dir_.File("emb") + " -o " +
                             dir_.File("emb.pcap") + " 2>&1",
                         &out),
            0)
      << out;
  const double gang = EvalMean(trace_, dir_.File("gang.pcap")), emb = EvalMean(trace_, dir_.File("emb.pcap"));
  ASSERT_GE(gang, 0);
  ASSERT_GE(emb, 0);
  std::cerr << "fidelity mean: gang of two workers " << gang << ", embedded " << emb << "\n";
  EXPECT_NEAR(gang, emb, 0.03);
}

TEST_F(RuntimeTest, GangHelperKilledMidJobItsJobIsRequeuedAndCompletes) {
  // Long jobs (a 4 s budget each) so the kill lands mid-job; a short peer
  // timeout so the lead notices within seconds.
  Coord c = StartCoordinator(dir_.File("lib"), {"--steps", "100000", "--seconds", "4", "--min-flows", "1",
                                                "--large-job-packets", "1", "--max-workers-per-job", "2"});
  const std::vector<std::string> peer = {"--device", "cpu", "--peer-address", "127.0.0.1", "--peer-timeout-seconds",
                                         "5"};
  auto w1 = StartWorker(c.listen, "g1", peer);
  auto w2 = StartWorker(c.listen, "g2", peer);
  ASSERT_TRUE(WaitUntil([&] { return Ctl("get workers --coordinator " + c.api).value_or(nlohmann::json()).size() == 2; },
                        seconds(20)));
  auto ingest = StartIngest(c.listen);
  uint64_t job = 0;
  std::string helper;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const auto& j : Jobs(c.api)) {
          if (j.value("state", "") == "leased" && j.contains("helpers") && j["helpers"].size() == 1) {
            job = j.value("id", 0ull);
            helper = j["helpers"][0].value("worker", "");
            return true;
          }
        }
        return false;
      },
      seconds(30)))
      << Logs();
  ASSERT_TRUE(helper == "g1" || helper == "g2") << helper;
  Process* victim = helper == "g1" ? w1.get() : w2.get();
  Process* lead = helper == "g1" ? w2.get() : w1.get();
  victim->Signal(SIGKILL);
  EXPECT_EQ(victim->Wait(seconds(5)), 128 + SIGKILL);
  // The gang cannot finish: the job is requeued, and with one worker left
  // the large jobs run on it alone.
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  auto j = Ctl("describe job " + std::to_string(job) + " --coordinator " + c.api);
  ASSERT_TRUE(j);
  EXPECT_GE(j->value("attempts", 0u), 2u) << j->dump();
  EXPECT_TRUE(!j->contains("helpers") || (*j)["helpers"].empty()) << j->dump();
  EXPECT_TRUE(lead->Running());
  std::string metrics = HttpGet(c.metrics, "/metrics");
  EXPECT_EQ(MetricValue(metrics, "dgc_chunks_committed_total"), chunks_);
  lead->Signal(SIGTERM);
  EXPECT_EQ(lead->Wait(seconds(10)), 0) << lead->ReadLog();
}

TEST_F(RuntimeTest, WorkerKilledMidJobItsJobCompletesOnTheOther) {
  // Long jobs (a 4 s budget each) so the kill lands mid-job.
  Coord c = StartCoordinator(dir_.File("lib"), {"--steps", "100000", "--seconds", "4"});
  auto victim = StartWorker(c.listen, "victim");
  ASSERT_TRUE(WaitUntil([&] { return Ctl("get workers --coordinator " + c.api).value_or(nlohmann::json()).size() == 1; },
                        seconds(20)));
  auto ingest = StartIngest(c.listen);
  uint64_t job = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const auto& j : Jobs(c.api)) {
          if (j.value("state", "") == "leased" && j.value("worker", "") == "victim") {
            job = j.value("id", 0ull);
            return true;
          }
        }
        return false;
      },
      seconds(30)))
      << Logs();
  victim->Signal(SIGKILL);
  EXPECT_EQ(victim->Wait(seconds(5)), 128 + SIGKILL);
  auto survivor = StartWorker(c.listen, "survivor");
  EXPECT_EQ(ingest->Wait(seconds(30)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  auto j = Ctl("describe job " + std::to_string(job) + " --coordinator " + c.api);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->value("worker", ""), "survivor");
  EXPECT_GE(j->value("attempts", 0u), 2u);
  std::string metrics = HttpGet(c.metrics, "/metrics");
  EXPECT_GE(MetricValue(metrics, "dgc_lease_expiries_total").value_or(0), 1);
  EXPECT_EQ(MetricValue(metrics, "dgc_chunks_committed_total"), chunks_);
  for (Process* p : {survivor.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {survivor.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  ExpectEveryWindowOnce(dir_.File("lib"));
  // The kill changed no decision: the same as the embedded path's.
  ExpectSameDecisionsAsEmbedded(trace_, dir_.File("lib"), dir_.File("emb"),
                                "--base " + base_ + " --steps 10 --no-check --budget 10x --min-flows 32");
}

TEST_F(RuntimeTest, CoordinatorKilledAndRestartedMidStreamLosesNothingAndCommitsNothingTwice) {
  // The coordinator dies where a result is most at risk: its second chunk is
  // in the library, but the job is not yet marked done and the worker not yet
  // told (fault point library.commit.after_write). The restarted coordinator
  // must not commit it again, nor lose any chunk.
  std::vector<std::string> args = {"--library", dir_.File("lib"), "--listen", "tcp://127.0.0.1:0",
                                   "--api", "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0", "--base", base_,
                                   "--no-check", "--lease-seconds", "3", "--heartbeat-seconds", "0.5",
                                   "--steps", "100000", "--seconds", "1.5", "--budget", "10x",
                                   // quiet chunks pool their flows: the pool survives the restart
                                   "--min-flows", "500"};
  Coord c;
  c.proc = std::make_unique<Process>(BinaryPath("dgc-coordinator"), args, dir_.File("coordinator.log"),
                                     std::vector<std::string>{"DGC_FAULT=library.commit.after_write:2"});
  auto l = c.proc->WaitForLog("listening on (tcp://[0-9.:]+) \\(workers", seconds(20));
  auto a = c.proc->WaitForLog("operator API on (tcp://[0-9.:]+)", seconds(1));
  ASSERT_TRUE(l && a) << c.proc->ReadLog();
  c.listen = *l;
  c.api = *a;
  auto w1 = StartWorker(c.listen, "w1");
  auto w2 = StartWorker(c.listen, "w2");
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(c.proc->Wait(seconds(90)), 128 + SIGKILL) << Logs();
  const bool landed = c.proc->ReadLog().find("dgc fault point library.commit.after_write hit 2") != std::string::npos;
  std::cerr << "coordinator: " << landed << " of 1 planned kill landed between a commit and its job's completion\n";
  ASSERT_TRUE(landed) << c.proc->ReadLog();
  std::this_thread::sleep_for(seconds(2));  // workers finish jobs and hold their results
  Coord again = StartCoordinator(dir_.File("lib"), {"--steps", "100000", "--seconds", "1.5", "--min-flows", "500"},
                                 c.listen, c.api);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(again.api); }, seconds(120))) << Logs();
  // One job per chunk (no chunk submitted twice), one library chunk per window.
  std::set<int64_t> seqs;
  for (const auto& j : Jobs(again.api)) EXPECT_TRUE(seqs.insert(j.value("seq", 0ll)).second) << j.dump();
  // The result committed before the kill was found in the library, not committed again.
  EXPECT_TRUE(again.proc->WaitForLog("chunk already in the library", seconds(1)) ||
              again.proc->WaitForLog("job [0-9]+ .* committed", seconds(1)))
      << again.proc->ReadLog();
  for (Process* p : {w1.get(), w2.get(), again.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w1.get(), w2.get(), again.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0);
  ExpectEveryWindowOnce(dir_.File("lib"));
  // The restart changed no decision, and the quiet chunks' pool outlived it.
  ExpectSameDecisionsAsEmbedded(trace_, dir_.File("lib"), dir_.File("emb"),
                                "--base " + base_ + " --steps 10 --no-check --budget 10x --min-flows 500");
}

// Chunks too quiet to fine-tune alone (--min-flows above any chunk's flows)
// share their parent and pool their flows; the chunk that brings the pool to
// --min-flows fine-tunes on all of them. The cluster's workers hold nothing
// between jobs: the coordinator sends the pooled chunks with the job (the
// library says which, library::CompressionPolicy::Pooled), so the same
// chunks train deltas on both paths.
TEST_F(RuntimeTest, QuietChunksPoolTheirFlowsOnBothPaths) {
  ASSERT_NO_FATAL_FAILURE(RunTraceThroughTwoWorkers({"--min-flows", "500"}));
  ExpectEveryWindowOnce(dir_.File("lib"));
  nlohmann::json cd = ChunksOf(dir_.File("lib"));
  ASSERT_TRUE(cd.is_array());
  int pooled = 0, shared = 0;
  for (const auto& ch : cd) {
    ASSERT_LT(ch.value("flows", 0), 500) << "every chunk must be quiet alone: " << ch.dump();
    auto d = Ctl("describe chunk " + ch.value("chunk", "") + " --library " + dir_.File("lib"));
    ASSERT_TRUE(d);
    pooled += (*d)["report"].value("pooled_flows", 0) > 0;
    shared += (*d)["report"].value("shared", false);
  }
  EXPECT_GE(pooled, 1) << cd.dump();
  EXPECT_GE(shared, 1) << cd.dump();
  ExpectSameDecisionsAsEmbedded(trace_, dir_.File("lib"), dir_.File("emb"),
                                "--base " + base_ + " --steps 10 --no-check --budget 10x --min-flows 500");
}

// At the default budget the records are small enough to be packed, and the
// coordinator prices each compress job as dgcctl compress prices its chunk
// (library::PackPricer): the span's first chunk unpriced, each later one at
// the packed cost the records before it measured, near the embedded path's.
TEST_F(RuntimeTest, RecordsArePricedAtTheirPackedCostOnBothPaths) {
  ASSERT_NO_FATAL_FAILURE(RunTraceThroughTwoWorkers({"--budget", "0.1x"}));
  ExpectSameDecisionsAsEmbedded(trace_, dir_.File("lib"), dir_.File("emb"),
                                "--base " + base_ + " --steps 10 --no-check --budget 0.1x --min-flows 32");
  nlohmann::json cd = ChunksOf(dir_.File("lib")), ce = ChunksOf(dir_.File("emb"));
  ASSERT_TRUE(cd.is_array() && ce.is_array());
  ASSERT_EQ(ce.size(), cd.size());
  int priced = 0;
  for (size_t i = 0; i < cd.size(); ++i) {
    auto dc = Ctl("describe chunk " + cd[i].value("chunk", "") + " --library " + dir_.File("lib"));
    auto de = Ctl("describe chunk " + ce[i].value("chunk", "") + " --library " + dir_.File("emb"));
    ASSERT_TRUE(dc && de);
    const double pc = (*dc)["report"].value("packed_cost", 0.0), pe = (*de)["report"].value("packed_cost", 0.0);
    EXPECT_EQ(pc > 0, pe > 0) << "chunk " << i << ": cluster " << dc->dump() << "\nembedded " << de->dump();
    EXPECT_NEAR(pc, pe, 0.1) << "chunk " << i;
    if (i == 0) EXPECT_EQ(pc, 0.0) << "a span's first chunk is unpriced";
    priced += pc > 0;
  }
  EXPECT_GE(priced, 1) << cd.dump();
}

TEST_F(RuntimeTest, IngestKilledMidStreamLosesNothingAndCommitsNothingTwice) {
  // dgc-ingest dies twice mid-stream, each time where it is dangerous: once
  // just after the coordinator accepted its second chunk but before the
  // spool file went (a restart resends it), once just after its third chunk
  // reached the spool, before it was offered. Each restart reads the capture
  // again into the same spool.
  Coord c = StartCoordinator(dir_.File("lib"));
  auto w = StartWorker(c.listen, "w1");
  int landed = 0;
  const std::vector<std::string> points = {"ingest.ack.before_remove:2", "ingest.chunk.spooled:3"};
  for (size_t i = 0; i < points.size(); ++i) {
    const std::string log = "ingest-" + std::to_string(i) + ".log";
    auto ingest = StartIngest(c.listen, {"DGC_FAULT=" + points[i]}, log);
    EXPECT_EQ(ingest->Wait(seconds(60)), 128 + SIGKILL) << ingest->ReadLog();
    const std::string point = points[i].substr(0, points[i].find(':'));
    const bool hit = ingest->ReadLog().find("dgc fault point " + point + " hit ") != std::string::npos;
    EXPECT_TRUE(hit) << ingest->ReadLog();
    landed += hit;
  }
  std::cerr << "ingest: " << landed << " of " << points.size() << " planned kills landed mid-stream\n";
  EXPECT_EQ(landed, static_cast<int>(points.size()));
  // A kill inside a spool write leaves "<chunk>.tmp.<pid>" behind (the
  // capture thread writes while the shipping thread dies): one such file,
  // of a pid that is gone, must not outlive the next run.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string partial =
      dir_.File("spool") + "/test/chunk-000000000001-20260101T000030Z.dgcc.tmp." + std::to_string(dead);
  std::ofstream(partial) << "torn";
  auto ingest = StartIngest(c.listen, {}, "ingest-final.log");
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  EXPECT_NE(ingest->ReadLog().find("a partial spool file a killed run left"), std::string::npos) << ingest->ReadLog();
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_TRUE(fs::is_empty(dir_.File("spool") + "/test"));
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  std::set<int64_t> seqs;
  for (const auto& j : Jobs(c.api)) EXPECT_TRUE(seqs.insert(j.value("seq", 0ll)).second) << j.dump();
  EXPECT_EQ(static_cast<int>(seqs.size()), chunks_);
  EXPECT_EQ(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_chunks_committed_total"), chunks_);
  for (Process* p : {w.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0);
  ExpectEveryWindowOnce(dir_.File("lib"));
}

// Issue 17: job records are not kept forever. With a short
// --job-history-hours the committed jobs' records leave the library once
// their raw chunks are gone; a restarted coordinator, sent the whole trace
// again, knows every chunk as committed from the library's job history: it
// runs nothing again, trains no new base, and ids go on.
TEST_F(RuntimeTest, ExpiredJobRecordsLeaveTheLibraryAndAResentTraceRunsNothingAgain) {
  // Longer than the suite's trace: a stream keeps the raw files of its
  // latest 6 chunks (a retrain's pool), and a record expires only once its
  // raw file is gone.
  const std::string trace = dir_.File("long.pcap");
  std::string out;
  ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " synth-trace -o " + trace + " --seconds 420 --seed 5 >/dev/null"), 0);
  ASSERT_EQ(testing::Run(BinaryPath("dgc-ingest") + " " + trace + " --out " + dir_.File("probe") + " --link probe " +
                             "--chunk-seconds " + std::to_string(kChunkSeconds) + " -o json --no-progress",
                         &out),
            0);
  const int chunks = nlohmann::json::parse(out).value("chunks", 0);
  ASSERT_GE(chunks, 12);
  auto ingest_long = [&](const std::string& listen, const std::string& log) {
    return std::make_unique<Process>(
        BinaryPath("dgc-ingest"),
        std::vector<std::string>{trace, "--coordinator", listen, "--spool-dir", dir_.File("spool"), "--link", "test",
                                 "--chunk-seconds", std::to_string(kChunkSeconds), "--metrics", "127.0.0.1:0"},
        dir_.File(log));
  };
  const std::vector<std::string> history = {"--job-history-hours", "0.0003"};  // about 1 s
  Coord c = StartCoordinator(dir_.File("lib"), history);
  auto w = StartWorker(c.listen, "w1");
  auto ingest = ingest_long(c.listen, "ingest.log");
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  auto committed = [](const Coord& k) {
    return MetricValue(HttpGet(k.metrics, "/metrics"), "dgc_chunks_committed_total").value_or(-1);
  };
  ASSERT_TRUE(WaitUntil([&] { return committed(c) == chunks; }, seconds(120))) << Logs();
  std::optional<double> expired;
  ASSERT_TRUE(WaitUntil(
      [&] {
        expired = MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_job_records_expired_total");
        return expired.value_or(0) >= 1;
      },
      seconds(20)))
      << HttpGet(c.metrics, "/metrics");
  const std::vector<nlohmann::json> left = Jobs(c.api);
  EXPECT_LT(left.size(), static_cast<size_t>(chunks)) << "some committed records expired";
  uint64_t max_id = 0;
  auto all = Ctl("get jobs --coordinator " + c.api);
  ASSERT_TRUE(all);
  for (const auto& j : *all) max_id = std::max(max_id, j.value("id", uint64_t{0}));
  std::cerr << "job records: " << expired.value_or(0) << " expired, " << all->size() << " left\n";
  std::string err;
  EXPECT_FALSE(Ctl("describe job 2 --coordinator " + c.api, &err));  // the first compress job: long expired
  EXPECT_NE(err.find("its record expired"), std::string::npos) << err;
  c.proc->Signal(SIGTERM);
  EXPECT_EQ(c.proc->Wait(seconds(10)), 0);

  Coord again = StartCoordinator(dir_.File("lib"), history, c.listen, c.api);
  auto resend = ingest_long(again.listen, "ingest-again.log");
  EXPECT_EQ(resend->Wait(seconds(60)), 0) << Logs();
  std::this_thread::sleep_for(seconds(2));
  // (The restarted coordinator logs to the same file: its metrics address is
  // not known here. A chunk run again would show as a job below.)
  auto after = Ctl("get jobs --coordinator " + again.api);
  ASSERT_TRUE(after);
  for (const auto& j : *after) {
    EXPECT_LE(j.value("id", uint64_t{0}), max_id) << "a new job: " << j.dump();
    EXPECT_EQ(j.value("state", ""), "done") << j.dump();
  }
  EXPECT_EQ(again.proc->ReadLog().find("first base"), std::string::npos) << again.proc->ReadLog();
  for (Process* p : {w.get(), again.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), again.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0);
  EXPECT_EQ(LibraryCounts(dir_.File("lib")).first, chunks);  // every window once
}

TEST_F(RuntimeTest, OperatorVerbsCancelRetryDrainAndRetrainAJobAsTheRunbookSays) {
  // The runbook's verbs against a live coordinator: retrain asked for before
  // the link's next chunk, a worker drained before any job exists, jobs
  // queued and none leased to it, one cancelled, the worker taking work
  // again, the cancelled job retried to completion.
  Coord c = StartCoordinator(dir_.File("lib"), {"--warmup-steps", "20", "--warmup-seconds", "5"});
  std::string err;
  auto w = StartWorker(c.listen, "w1");
  ASSERT_TRUE(WaitUntil([&] { return Ctl("get workers --coordinator " + c.api).value_or(nlohmann::json()).size() == 1; },
                        seconds(20)));
  auto drained = Ctl("drain w1 --coordinator " + c.api + " --timeout 3", &err);
  ASSERT_TRUE(drained) << err;
  EXPECT_EQ(drained->value("state", ""), "drained") << drained->dump();
  EXPECT_FALSE(Ctl("drain nobody --coordinator " + c.api + " --timeout 3", &err));
  EXPECT_NE(err.find("no worker nobody"), std::string::npos) << err;
  auto rt = Ctl("retrain test --coordinator " + c.api + " --timeout 3", &err);
  ASSERT_TRUE(rt) << err;
  EXPECT_EQ(rt->value("link", ""), "test") << rt->dump();

  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_EQ(static_cast<int>(Jobs(c.api).size()), chunks_) << Logs();
  ASSERT_EQ(Jobs(c.api, "retrain").size(), 1u) << "retrain asked for: the next chunk trains a new base";
  std::this_thread::sleep_for(seconds(2));  // heartbeats come and go: still nothing for a drained worker
  for (const char* kind : {"compress", "retrain"}) {
    for (const auto& j : Jobs(c.api, kind)) EXPECT_EQ(j.value("state", ""), "queued") << j.dump();
  }
  const uint64_t victim = Jobs(c.api).back().value("id", 0ull);
  auto cancelled = Ctl("cancel job " + std::to_string(victim) + " --coordinator " + c.api + " --timeout 3", &err);
  ASSERT_TRUE(cancelled) << err;
  EXPECT_EQ(cancelled->value("state", ""), "cancelled") << cancelled->dump();
  EXPECT_FALSE(Ctl("cancel job 999999 --coordinator " + c.api + " --timeout 3", &err));
  EXPECT_NE(err.find("not found"), std::string::npos) << err;

  auto undone = Ctl("drain w1 --undo --coordinator " + c.api + " --timeout 3", &err);
  ASSERT_TRUE(undone) << err;
  EXPECT_NE(undone->value("state", ""), "drained") << undone->dump();
  // Every job but the cancelled one completes; the cancelled one stays so.
  ASSERT_TRUE(WaitUntil(
      [&] {
        int done = 0;
        for (const auto& j : Jobs(c.api)) done += j.value("state", "") == "done";
        return done == chunks_ - 1;
      },
      seconds(120)))
      << Logs();
  for (const auto& j : Jobs(c.api, "retrain")) EXPECT_EQ(j.value("state", ""), "done") << j.dump();
  auto still = Ctl("describe job " + std::to_string(victim) + " --coordinator " + c.api);
  ASSERT_TRUE(still);
  EXPECT_EQ(still->value("state", ""), "cancelled") << still->dump();
  auto retried = Ctl("retry job " + std::to_string(victim) + " --coordinator " + c.api + " --timeout 3", &err);
  ASSERT_TRUE(retried) << err;
  EXPECT_NE(retried->value("state", ""), "cancelled") << retried->dump();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(60))) << Logs();
  for (Process* p : {w.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0);
  ExpectEveryWindowOnce(dir_.File("lib"));
  // The retrain made a full model of its own beside the --base one (kind
  // "base": it is the link's first), and every chunk builds on it.
  auto given = c.proc->WaitForLog("base model (base-[0-9a-f]+) from", seconds(1));
  ASSERT_TRUE(given) << c.proc->ReadLog();
  auto models = Ctl("get models --library " + dir_.File("lib"));
  ASSERT_TRUE(models);
  std::string retrained;
  int full = 0;
  for (const auto& m : *models) {
    const std::string kind = m.value("kind", "");
    if (kind != "base" && kind != "retrain") continue;
    ++full;
    if (m.value("id", "") != *given) retrained = m.value("id", "");
  }
  EXPECT_EQ(full, 2) << models->dump();
  ASSERT_FALSE(retrained.empty()) << models->dump();
  auto chunks = Ctl("get chunks --library " + dir_.File("lib"));
  ASSERT_TRUE(chunks);
  for (const auto& ch : *chunks) {
    auto lineage = Ctl("lineage " + ch.value("model", "") + " --library " + dir_.File("lib"));
    ASSERT_TRUE(lineage) << ch.dump();
    EXPECT_NE(lineage->dump().find(retrained), std::string::npos) << lineage->dump();
  }
}

TEST_F(RuntimeTest, IngestSpoolsWhileTheCoordinatorIsAwayAndDrainsWhenItReturns) {
  // Learn a free port pair, then leave it empty while ingest runs.
  std::string listen, api;
  {
    Coord probe = StartCoordinator(dir_.File("probe-lib"));
    listen = probe.listen;
    api = probe.api;
    probe.proc->Signal(SIGTERM);
    ASSERT_EQ(probe.proc->Wait(seconds(10)), 0);
  }
  auto ingest = StartIngest(listen);
  auto addr = ingest->WaitForLog("metrics listening on ([0-9.:]+)", seconds(10));
  ASSERT_TRUE(addr);
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string m = HttpGet(*addr, "/metrics");
        return MetricValue(m, "dgc_spool_bytes").value_or(0) > 0 &&
               MetricValue(m, "dgc_ingest_chunks_total").value_or(0) == chunks_;
      },
      seconds(30)))
      << Logs();
  std::this_thread::sleep_for(seconds(4));  // past the ack timeout: still waiting, nothing lost
  ASSERT_TRUE(ingest->Running()) << Logs();
  EXPECT_EQ(MetricValue(HttpGet(*addr, "/metrics"), "dgc_ingest_coordinator_connected"), 0);
  Coord c = StartCoordinator(dir_.File("lib"), {}, listen, api);
  auto w = StartWorker(c.listen, "w1");
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  EXPECT_TRUE(fs::is_empty(dir_.File("spool") + "/test"));
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
}

TEST_F(RuntimeTest, IngestPausesOnAFullSpoolDiskAndResumesWhenSpaceReturns) {
  const std::string mnt = dir_.File("spoolfs");
  TmpfsMount fs_mount(mnt, "4m");
  if (!fs_mount.mounted()) GTEST_SKIP() << "needs root to mount a tmpfs";
  testing::Run("dd if=/dev/zero of=" + mnt + "/filler bs=64k 2>/dev/null");  // the file system is full
  const std::string in = dir_.File("incoming");
  fs::create_directories(in);
  fs::copy_file(trace_, in + "/t.pcap");
  Process ingest(BinaryPath("dgc-ingest"),
                 {in, "--follow", "--settle-seconds", "0.2", "--spool-dir", mnt + "/spool", "--link", "test",
                  "--chunk-seconds", std::to_string(kChunkSeconds), "--metrics", "127.0.0.1:0"},
                 dir_.File("ingest.log"));
  auto addr = ingest.WaitForLog("metrics listening on ([0-9.:]+)", seconds(10));
  ASSERT_TRUE(addr) << ingest.ReadLog();
  // Paused, not failed: the error names the spool file, the process keeps
  // running, /readyz and the gauge say why.
  ASSERT_TRUE(ingest.WaitForLog("capture paused until the spool has space", seconds(30))) << ingest.ReadLog();
  EXPECT_NE(ingest.ReadLog().find(mnt + "/spool/test/chunk-"), std::string::npos) << ingest.ReadLog();
  std::this_thread::sleep_for(seconds(2));
  ASSERT_TRUE(ingest.Running()) << ingest.ReadLog();
  int code = 0;
  std::string body = HttpGet(*addr, "/readyz", &code);
  EXPECT_EQ(code, 503) << body;
  EXPECT_NE(body.find("no space left"), std::string::npos) << body;
  EXPECT_EQ(MetricValue(HttpGet(*addr, "/metrics"), "dgc_ingest_spool_disk_full"), 1);
  // Space returns: the capture resumes by itself.
  fs::remove(mnt + "/filler");
  ASSERT_TRUE(ingest.WaitForLog("capture resumed", seconds(30))) << ingest.ReadLog();
  EXPECT_EQ(MetricValue(HttpGet(*addr, "/metrics"), "dgc_ingest_spool_disk_full"), 0);
  HttpGet(*addr, "/readyz", &code);
  EXPECT_EQ(code, 200);
  // Nothing lost: once stopped (which writes the open window) the spool holds
  // every window of the trace with every packet.
  ASSERT_TRUE(WaitUntil([&] { return MetricValue(HttpGet(*addr, "/metrics"), "dgc_ingest_chunks_total").value_or(0) >=
                                     chunks_ - 1; },
                        seconds(30)))
      << ingest.ReadLog();
  ingest.Signal(SIGTERM);
  ASSERT_EQ(ingest.Wait(seconds(20)), 0) << ingest.ReadLog();
  std::map<std::string, uint64_t> spooled;
  for (const auto& e : fs::directory_iterator(mnt + "/spool/test")) {
    auto c = ReadChunkFile(e.path().string());
    ASSERT_TRUE(c.ok()) << e.path() << ": " << c.status();
    spooled[FormatRfc3339(c->start_ns)] += c->packets.size();
  }
  EXPECT_EQ(spooled, windows_);
}

TEST_F(RuntimeTest, CoordinatorPausesIntakeOnAFullLibraryDiskAndResumesWhenSpaceReturns) {
  const std::string mnt = dir_.File("libfs");
  TmpfsMount fs_mount(mnt, "32m");
  if (!fs_mount.mounted()) GTEST_SKIP() << "needs root to mount a tmpfs";
  const std::string lib = mnt + "/lib";
  Coord c = StartCoordinator(lib);
  auto w = StartWorker(c.listen, "w1");
  testing::Run("dd if=/dev/zero of=" + mnt + "/filler bs=64k 2>/dev/null");  // the file system is full
  auto ingest = StartIngest(c.listen);
  // Paused, not failed: the error names the library, nothing is acknowledged,
  // the ingest keeps its chunks, /readyz and the gauge say why.
  ASSERT_TRUE(c.proc->WaitForLog("chunk intake paused until the library's file system has space", seconds(30)))
      << Logs();
  EXPECT_NE(c.proc->ReadLog().find(lib + "/raw/test/"), std::string::npos) << c.proc->ReadLog();
  ASSERT_TRUE(ingest->WaitForLog("coordinator cannot take chunks for now", seconds(10))) << Logs();
  std::this_thread::sleep_for(seconds(3));
  ASSERT_TRUE(ingest->Running()) << Logs();
  ASSERT_TRUE(c.proc->Running()) << Logs();
  int code = 0;
  std::string body = HttpGet(c.metrics, "/readyz", &code);
  EXPECT_EQ(code, 503) << body;
  EXPECT_NE(body.find("no space left"), std::string::npos) << body;
  EXPECT_EQ(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_library_disk_full"), 1);
  EXPECT_EQ(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_chunks_committed_total").value_or(0), 0);
  EXPECT_FALSE(fs::is_empty(dir_.File("spool") + "/test"));
  // Space returns: intake resumes by itself, and every chunk the ingest kept
  // arrives and is committed once.
  fs::remove(mnt + "/filler");
  ASSERT_TRUE(c.proc->WaitForLog("chunk intake resumed", seconds(30))) << Logs();
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  HttpGet(c.metrics, "/readyz", &code);
  EXPECT_EQ(code, 200);
  EXPECT_EQ(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_library_disk_full"), 0);
  for (Process* p : {w.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  ExpectEveryWindowOnce(lib);
}

// The disk fills under the database: every chunk is stored and queued, the
// disk fills, and only then does a worker come. Whether a write of RocksDB's
// then fails depends on what its log has preallocated: when one does, RocksDB
// takes no more and the coordinator exits 75, saying why, and started while
// the disk is still full exits 1; started again once space is back, it
// resumes. Either way every window ends up committed once.
TEST_F(RuntimeTest, LibraryDiskFillingUnderTheDatabaseLosesNothingOnceSpaceReturns) {
  const std::string mnt = dir_.File("libfs");
  TmpfsMount fs_mount(mnt, "32m");
  if (!fs_mount.mounted()) GTEST_SKIP() << "needs root to mount a tmpfs";
  const std::string lib = mnt + "/lib";
  Coord c = StartCoordinator(lib);
  auto ingest = StartIngest(c.listen);
  EXPECT_EQ(ingest->Wait(seconds(60)), 0) << Logs();  // every chunk stored and acknowledged
  ASSERT_EQ(static_cast<int>(Jobs(c.api).size()), chunks_) << Logs();
  testing::Run("dd if=/dev/zero of=" + mnt + "/filler bs=4k 2>/dev/null");
  auto w = StartWorker(c.listen, "w1");
  bool exited = false;
  ASSERT_TRUE(WaitUntil([&] { return (exited = !c.proc->Running()) || AllDone(c.api); }, seconds(120))) << Logs();
  if (exited) {
    EXPECT_EQ(c.proc->Wait(seconds(1)), 75) << c.proc->ReadLog();
    EXPECT_NE(c.proc->ReadLog().find("exiting with status 75 so the supervisor restarts dgc-coordinator once " + lib),
              std::string::npos)
        << c.proc->ReadLog();
    Process again(BinaryPath("dgc-coordinator"), {"--library", lib, "--listen", "tcp://127.0.0.1:0", "--api",
                                                  "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0"},
                  dir_.File("coordinator-full.log"));
    EXPECT_EQ(again.Wait(seconds(30)), 1) << again.ReadLog();
    EXPECT_NE(again.ReadLog().find("no space left"), std::string::npos) << again.ReadLog();
  }
  std::cerr << "disk full under the database: "
            << (exited ? "the coordinator exited 75, restarted once space returned" : "every write fit") << "\n";
  fs::remove(mnt + "/filler");
  if (exited) {
    std::string listen = c.listen, api = c.api;
    c = StartCoordinator(lib, {}, listen, api);
  }
  ASSERT_TRUE(WaitUntil([&] { return AllDone(c.api); }, seconds(120))) << Logs();
  for (Process* p : {w.get(), c.proc.get()}) p->Signal(SIGTERM);
  for (Process* p : {w.get(), c.proc.get()}) EXPECT_EQ(p->Wait(seconds(10)), 0) << p->ReadLog();
  ExpectEveryWindowOnce(lib);
}

TEST_F(RuntimeTest, ClientWithoutAnAllowedKeyIsRefused) {
  std::string keys = dir_.File("keys"), allow = dir_.File("allow");
  for (const char* k : {"coordinator", "good", "bad"}) {
    ASSERT_EQ(testing::Run(BinaryPath("dgcctl") + " keygen " + k + " --out " + keys + " >/dev/null"), 0);
  }
  fs::create_directories(allow);
  fs::copy_file(keys + "/good.pub", allow + "/good.pub");
  Coord c = StartCoordinator(dir_.File("lib"), {"--curve-secret-key-file", keys + "/coordinator.key",
                                                "--curve-allow-dir", allow});
  std::string server = " --curve-server-key-file " + keys + "/coordinator.pub --coordinator " + c.api + " --timeout 2";
  std::string err;
  EXPECT_TRUE(Ctl("get workers --curve-secret-key-file " + keys + "/good.key" + server, &err)) << err;
  EXPECT_FALSE(Ctl("get workers --curve-secret-key-file " + keys + "/bad.key" + server, &err));
  EXPECT_NE(err.find("no answer"), std::string::npos) << err;
  EXPECT_FALSE(Ctl("get workers --coordinator " + c.api + " --timeout 2"));  // plain TCP: no handshake
  // A worker with a key outside the list never registers.
  auto w = StartWorker(c.listen, "intruder", {"--curve-secret-key-file", keys + "/bad.key",
                                              "--curve-server-key-file", keys + "/coordinator.pub"});
  std::this_thread::sleep_for(seconds(2));
  EXPECT_EQ(Ctl("get workers --curve-secret-key-file " + keys + "/good.key" + server).value_or(nlohmann::json()).size(),
            0u);
  EXPECT_GE(MetricValue(HttpGet(c.metrics, "/metrics"), "dgc_messages_rejected_total{reason=\"unauthorized\"}")
                .value_or(0),
            1);
}

TEST_F(RuntimeTest, HostileMessagesAreCountedAndTheCoordinatorKeepsServing) {
  Coord c = StartCoordinator(dir_.File("lib"));
  auto ctx = wire::ZmqContext::Create();
  ASSERT_TRUE(ctx.ok());
  {
    auto sock = wire::ZmqSocket::Connect(**ctx, wire::SocketType::kDealer, c.listen, {});
    ASSERT_TRUE(sock.ok());
    ASSERT_TRUE((*sock)->SendFrames({"garbage that is no capnp"}).ok());
    ASSERT_TRUE((*sock)->SendFrames({std::string(8, '\xff')}).ok());
    wire::Register r;
    r.worker_id = "x";
    r.cpu_threads = 1;
    auto old = wire::EncodeWithVersion(r, 99);
    ASSERT_TRUE(old.ok());
    ASSERT_TRUE((*sock)->SendFrames({*old}).ok());
    wire::ChunkData bad;  // inconsistent metadata
    bad.meta.link = "x";
    bad.meta.duration_ns = 0;
    bad.payload = "x";
    auto enc = wire::Encode(bad);
    ASSERT_TRUE((*sock)->SendFrames({*enc}).ok());
    auto reply = (*sock)->ReceiveFrames(5000);  // the refusal
    ASSERT_TRUE(reply.ok() && reply->has_value());
    auto ack = wire::Decode((**reply)[0]);
    ASSERT_TRUE(ack.ok());
    auto* a = std::get_if<wire::ChunkAck>(&ack->message);
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->accepted);
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string m = HttpGet(c.metrics, "/metrics");
        return MetricValue(m, "dgc_messages_rejected_total{reason=\"version\"}").value_or(0) >= 1 &&
               MetricValue(m, "dgc_messages_rejected_total{reason=\"malformed\"}").value_or(0) +
                       MetricValue(m, "dgc_messages_rejected_total{reason=\"truncated\"}").value_or(0) >=
                   3;
      },
      seconds(10)))
      << HttpGet(c.metrics, "/metrics");
  int code = 0;
  HttpGet(c.metrics, "/healthz", &code);
  EXPECT_EQ(code, 200);
  HttpGet(c.metrics, "/readyz", &code);
  EXPECT_EQ(code, 200);
  EXPECT_TRUE(Ctl("get jobs --coordinator " + c.api));
}

// No cluster and no HTTP: a plain test, run even where the fixture's
// warm-up would fail.
TEST(RuntimeStartupTest, StartupErrorsExitOneAndVersionExitsZero) {
  TempDir dir_;
  std::string out;
  EXPECT_EQ(testing::Run(BinaryPath("dgc-coordinator") + " --version 2>&1", &out), 0);
  EXPECT_NE(out.find("0."), std::string::npos);
  EXPECT_EQ(testing::Run(BinaryPath("dgc-coordinator") + " --listen tcp://127.0.0.1:0 2>&1", &out), 1);  // no --library
  EXPECT_EQ(testing::Run(BinaryPath("dgc-coordinator") + " --library " + dir_.File("l") +
                " --listen tcp://0.0.0.0:0 --api tcp://127.0.0.1:0 --metrics 127.0.0.1:0 2>&1", &out), 1);
  EXPECT_NE(out.find("insecure"), std::string::npos) << out;
  EXPECT_EQ(testing::Run(BinaryPath("dgc-worker") + " --coordinator tcp://10.1.2.3:7070 --metrics 127.0.0.1:0 2>&1", &out), 1);
  EXPECT_EQ(testing::Run(BinaryPath("dgc-worker") + " --coordinator tcp://127.0.0.1:1 --device cuda:99 2>&1", &out), 1);
  EXPECT_NE(out.find("GPU"), std::string::npos) << out;
  EXPECT_EQ(testing::Run(BinaryPath("dgc-worker") + " --coordinator tcp://127.0.0.1:1 --device gpu 2>&1", &out), 1);
  EXPECT_NE(out.find("expected auto, cpu, cuda"), std::string::npos) << out;
  for (const char* peer : {":29500", "127.0.0.1:x", "127.0.0.1:70000", "127.0.0.1:"}) {
    EXPECT_EQ(testing::Run(BinaryPath("dgc-worker") + " --coordinator tcp://127.0.0.1:1 --peer-address " + peer + " 2>&1",
                           &out),
              1)
        << peer;
    EXPECT_NE(out.find("--peer-address"), std::string::npos) << out;
  }
  // A config file: one long-flag = value per line.
  WriteBytes(dir_.File("c.conf"), "library = \"" + dir_.File("l") + "\"\nlisten = \"tcp://0.0.0.0:0\"\n");
  EXPECT_EQ(testing::Run(BinaryPath("dgc-coordinator") + " --config " + dir_.File("c.conf") +
                " --api tcp://127.0.0.1:0 --metrics 127.0.0.1:0 2>&1", &out), 1);
  EXPECT_NE(out.find("insecure"), std::string::npos) << out;
}

}  // namespace
}  // namespace dgc::testing

// Crash safety with the real compressing process: `dgcctl compress` (and
// `dgcctl expire`) killed with SIGKILL, re-run after each kill, then run to
// the end. crash_test.cc does the same with a small helper that commits
// synthetic chunks as fast as it can; this test proves the same of the real
// pipeline (reading, base training, fine-tuning, commit).
//
// Kills land where they are dangerous, placed by fault points
// (common/base/fault.h: DGC_FAULT=POINT:N makes the process SIGKILL itself the
// N-th time it reaches POINT): just before and just after a chunk's commit
// batch is written (committed but not yet reported), and between expire's
// deletion batches. Each such kill is checked to have landed (the process died
// of SIGKILL after printing the fault line), the count is printed, and every
// planned kill must land. Checks go chunk by chunk.
//
// Bounded: a 120 s synthetic trace in 10 s chunks (12 chunk windows), tiny
// budgets, 7 kills of compress and up to 6 of expire, every wait capped.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/base/time.h"
#include "common/trace/pcap_reader.h"
#include "library/rocksdb_model_library.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kCtl = DGCCTL_PATH;
constexpr int64_t kChunkNs = 10LL * 1000000000;
// The point is the commit path, not fidelity: budgets as small as they go.
const std::vector<std::string> kTiny = {
    "--chunk-seconds", "10", "--width", "16", "--depth", "1", "--heads", "2",
    "--warmup-steps", "5", "--warmup-seconds", "5", "--steps", "2", "--seconds", "2",
    "--sample-flows", "64", "--no-check",
    "--min-flows", "1",  // every chunk fine-tunes: a delta per chunk, a chain to keep whole
    "--budget", "10x",   // room for a delta and every flow exact in each small chunk
};

struct ChildRun {
  std::string err;  // stderr (dgcctl's per-chunk lines)
  std::string out;  // stdout
  bool killed = false;
  int status = 0;
  double seconds = 0;
  std::vector<double> commit_seconds;  // when each "chunk ... packets" line arrived
};

// When to kill: `after_ms` after the start (< 0: never), or `then_ms` after
// the child reported its `after_commits`-th new commit (< 0: never),
// whichever comes first. Every run is killed after 90 s all the same.
struct KillAt {
  int after_ms = -1;
  int after_commits = -1;
  int then_ms = 0;
};

bool IsCommitLine(const std::string& line) {
  return line.rfind("chunk ", 0) == 0 && line.find(" packets ") != std::string::npos &&
         line.find("already committed") == std::string::npos;
}

// `env`: "NAME=VALUE" added to the child's environment (a DGC_FAULT point).
ChildRun RunCtl(const std::vector<std::string>& args, KillAt kill = {}, const std::vector<std::string>& env = {}) {
  int err_fds[2], out_fds[2];
  EXPECT_EQ(::pipe(err_fds), 0);
  EXPECT_EQ(::pipe(out_fds), 0);
  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_fds[1], 1);
    ::dup2(err_fds[1], 2);
    for (int fd : {err_fds[0], err_fds[1], out_fds[0], out_fds[1]}) ::close(fd);
    for (const auto& e : env) {
      auto eq = e.find('=');
      if (eq != std::string::npos) ::setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), 1);
    }
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    std::string ctl = kCtl;
    argv.push_back(ctl.data());
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(ctl.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(err_fds[1]);
  ::close(out_fds[1]);
  ChildRun run;
  auto deadline = t0 + std::chrono::milliseconds(kill.after_ms < 0 ? 90000 : std::min(kill.after_ms, 90000));
  if (kill.after_commits == 0) deadline = std::min(deadline, t0 + std::chrono::milliseconds(kill.then_ms));
  char buf[4096];
  pollfd p[2] = {{err_fds[0], POLLIN, 0}, {out_fds[0], POLLIN, 0}};
  std::string* sink[2] = {&run.err, &run.out};
  size_t scanned = 0;  // of run.err, in whole lines
  int open = 2;
  while (open > 0) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) break;
    if (::poll(p, 2, left) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n > 0) {
        sink[i]->append(buf, n);
      } else {
        p[i].fd = -1;
        --open;
      }
    }
    for (size_t nl; (nl = run.err.find('\n', scanned)) != std::string::npos; scanned = nl + 1) {
      if (!IsCommitLine(run.err.substr(scanned, nl - scanned))) continue;
      auto now = Clock::now();
      run.commit_seconds.push_back(std::chrono::duration<double>(now - t0).count());
      if (int(run.commit_seconds.size()) == kill.after_commits) {
        deadline = std::min(deadline, now + std::chrono::milliseconds(kill.then_ms));
      }
    }
  }
  if (open > 0) {
    ::kill(pid, SIGKILL);
    run.killed = true;
  }
  for (int i = 0; i < 2; ++i) {  // what it wrote before it died
    int fd = i == 0 ? err_fds[0] : out_fds[0];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) sink[i]->append(buf, n);
    ::close(fd);
  }
  ::waitpid(pid, &run.status, 0);
  run.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return run;
}

bool ExitedOk(const ChildRun& r) { return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0; }

// The run died at fault point `point` (its own SIGKILL, not the test's timer).
bool FaultLanded(const ChildRun& r, const std::string& point) {
  return !r.killed && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL &&
         r.err.find("dgc fault point " + point + " hit ") != std::string::npos;
}

std::vector<std::string> FaultEnv(const std::string& point, int n) {
  return {"DGC_FAULT=" + point + ":" + std::to_string(n)};
}

std::vector<std::string> CompressArgs(const std::string& trace, const std::string& lib) {
  std::vector<std::string> a = {"compress", trace, "--library", lib};
  a.insert(a.end(), kTiny.begin(), kTiny.end());
  return a;
}

// The chunk lines of a run's stderr: "chunk TIME  N packets ..." for a
// commit, "chunk TIME  already committed" for one found in the library.
void ParseChunkLines(const std::string& err, std::vector<std::string>* committed,
                     std::vector<std::string>* already) {
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("chunk ", 0) != 0) continue;
    std::istringstream words(line.substr(6));
    std::string time;
    words >> time;
    if (line.find("already committed") != std::string::npos) {
      already->push_back(time);
    } else if (line.find(" packets ") != std::string::npos) {
      committed->push_back(time);
    }
  }
}

class CompressKillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trace_ = dir_.File("in.pcap");
    ASSERT_EQ(testing::Run(kCtl + " synth-trace -o " + trace_ + " --seconds 120 --sessions-per-second 1.5 2>/dev/null"),
              0);
    auto r = TraceReader::Open(trace_);
    ASSERT_TRUE(r.ok()) << r.status();
    PacketRecord p;
    while ((*r)->Next(&p)) {
      windows_[p.ts_ns / kChunkNs * kChunkNs]++;
      packets_++;
    }
    ASSERT_GE(windows_.size(), 12u);
  }

  // Opens `lib` and checks it: no broken invariant, no orphan model unless
  // `allow_unreferenced`, every chunk of the input's windows and nothing else,
  // each with the packets of its window. Returns the chunks' start times.
  std::set<int64_t> ExpectConsistent(const std::string& lib, bool allow_unreferenced, bool complete,
                                     const std::string& when) {
    std::set<int64_t> starts;
    auto l = RocksDbModelLibrary::Open(lib);
    EXPECT_TRUE(l.ok()) << when << ": " << l.status();
    if (!l.ok()) return starts;
    auto check = (*l)->Check();
    EXPECT_TRUE(check.ok()) << check.status();
    if (!check.ok()) return starts;
    for (const auto& p : check->problems) ADD_FAILURE() << when << ": " << p;
    if (!allow_unreferenced) {
      for (const auto& m : check->unreferenced_models) ADD_FAILURE() << when << ": orphan model " << m;
    }
    auto chunks = (*l)->ListChunks({});
    EXPECT_TRUE(chunks.ok()) << chunks.status();
    if (!chunks.ok()) return starts;
    for (const auto& c : *chunks) {
      EXPECT_TRUE(starts.insert(c.start_ns).second) << when << ": chunk " << c.start_ns << " twice";
      auto w = windows_.find(c.start_ns);
      if (w == windows_.end()) {
        ADD_FAILURE() << when << ": chunk at " << c.start_ns << " is no window of the input";
        continue;
      }
      EXPECT_EQ(c.packets, w->second) << when << ": chunk at " << c.start_ns << " has the wrong packet count";
      EXPECT_EQ(c.duration_ns, kChunkNs);
      // Its model chain reaches a full model (Check says so too).
      EXPECT_TRUE((*l)->Ancestors(c.model_id).ok()) << when << ": chunk at " << c.start_ns;
    }
    if (complete) {
      EXPECT_EQ(starts.size(), windows_.size()) << when;
    }
    return starts;
  }

  testing::TempDir dir_;
  std::string trace_;
  std::map<int64_t, uint64_t> windows_;  // chunk window start -> packets of the input
  uint64_t packets_ = 0;
};

TEST_F(CompressKillTest, KilledCompressLosesNoChunkAndCommitsNoneTwice) {
  // An uninterrupted run into another library: how long a run takes, and
  // how long one chunk takes once the base is trained.
  ChildRun ref = RunCtl(CompressArgs(trace_, dir_.File("ref")));
  ASSERT_TRUE(ExitedOk(ref)) << ref.err;
  ExpectConsistent(dir_.File("ref"), false, true, "reference run");
  ASSERT_EQ(ref.commit_seconds.size(), windows_.size()) << ref.err;
  const int first_commit_ms = static_cast<int>(ref.commit_seconds.front() * 1000);
  const int chunk_ms = std::max(
      5, static_cast<int>((ref.commit_seconds.back() - ref.commit_seconds.front()) * 1000 / windows_.size()));
  std::map<std::string, int64_t> start_of;  // the time a chunk line prints -> the window
  for (const auto& [start, packets] : windows_) start_of[FormatRfc3339(start)] = start;

  // Each round's kill. A fault point counts the commits of that run, which
  // skips what earlier runs committed, so every round makes progress:
  // after_write:N commits N chunks and reports N-1, before_write:N commits
  // N-1 (7 of the 12 windows in all). Round 0 dies at a random time before
  // the first commit (reading, training the base); the last dies at a random
  // time among later commits (mostly inside a fine-tune).
  struct Round {
    std::string point;  // empty: a timed kill
    int n = 0;
  };
  const std::vector<Round> rounds = {{"", 0},
                                     {"library.commit.after_write", 1},
                                     {"library.commit.before_write", 2},
                                     {"library.commit.after_write", 2},
                                     {"library.commit.before_write", 1},
                                     {"library.commit.after_write", 3},
                                     {"", 1}};
  const std::string lib = dir_.File("lib");
  std::mt19937 rng(20240601);
  std::set<std::string> reported;    // chunk times some run reported committed
  std::set<int64_t> unreported;      // committed by a run killed before it said so
  std::set<int64_t> in_library;      // after the previous round
  int planned = 0, landed = 0;
  size_t expected_silent = 0;  // three after_write kills, and a timed kill that fell there
  for (size_t round = 0; round < rounds.size(); ++round) {
    const Round& r = rounds[round];
    KillAt kill;
    std::vector<std::string> env;
    if (!r.point.empty()) {
      env = FaultEnv(r.point, r.n);
      ++planned;
    } else if (r.n == 0) {
      kill.after_ms = std::uniform_int_distribution<int>(50, std::max(60, first_commit_ms))(rng);
    } else {
      kill.after_commits = r.n;
      kill.then_ms = std::uniform_int_distribution<int>(1, chunk_ms)(rng);
    }
    ChildRun run = RunCtl(CompressArgs(trace_, lib), kill, env);
    const bool hit = !r.point.empty() && FaultLanded(run, r.point);
    landed += hit;
    if (!r.point.empty()) {
      EXPECT_TRUE(hit) << "round " << round << ": the kill at " << r.point << ":" << r.n
                       << " did not land (exit status " << run.status << ")\n" << run.err;
    }
    std::vector<std::string> now, already;
    ParseChunkLines(run.err, &now, &already);
    for (const auto& t : now) {
      EXPECT_TRUE(reported.insert(t).second) << "chunk " << t << " committed twice (round " << round << ")";
    }
    std::cerr << "round " << round << " (" << (r.point.empty() ? "timed kill" : r.point + ":" + std::to_string(r.n))
              << "): " << (hit ? "fault landed" : run.killed ? "killed by the timer" : "finished") << " after "
              << run.seconds << " s, " << now.size() << " chunk(s) committed, " << already.size()
              << " found committed\n";
    if (r.point.empty() && !run.killed) EXPECT_TRUE(ExitedOk(run)) << run.err;

    std::set<int64_t> starts = ExpectConsistent(lib, /*allow_unreferenced=*/false, /*complete=*/false,
                                                "after round " + std::to_string(round));
    // Chunk by chunk: every chunk a run reported committed is there ...
    for (const auto& t : reported) {
      ASSERT_TRUE(start_of.count(t)) << "a chunk line names " << t << ", no window of the input";
      EXPECT_TRUE(starts.count(start_of[t])) << "chunk " << t << " was reported committed and is lost";
    }
    // ... what a run found committed was committed before it ...
    for (const auto& t : already) {
      EXPECT_TRUE(in_library.count(start_of[t])) << "round " << round << " found " << t << " committed, "
                                                  << "which no earlier run committed";
      unreported.erase(start_of[t]);
    }
    // ... and the chunks new in the library are those this run reported,
    // plus exactly one when the kill fell between a commit and its line.
    std::set<int64_t> fresh;
    for (auto s : starts) {
      if (!in_library.count(s)) fresh.insert(s);
    }
    for (const auto& t : now) EXPECT_TRUE(fresh.count(start_of[t])) << "round " << round << ": " << t;
    size_t silent = fresh.size() - std::min(fresh.size(), now.size());
    const bool after_write = hit && r.point == "library.commit.after_write";
    if (r.point.empty()) {
      EXPECT_LE(silent, 1u) << "round " << round;  // a timer may fall between a commit and its line too
    } else {
      EXPECT_EQ(silent, after_write ? 1u : 0u) << "round " << round << ": " << fresh.size() << " new chunk(s), "
                                               << now.size() << " reported";
    }
    expected_silent += silent;
    for (auto s : fresh) {
      if (std::find_if(now.begin(), now.end(), [&](const std::string& t) { return start_of[t] == s; }) == now.end()) {
        unreported.insert(s);
      }
    }
    in_library = starts;
    if (HasFailure()) return;
  }
  std::cerr << "compress: " << landed << " of " << planned << " planned kills landed inside a commit window\n";
  EXPECT_EQ(landed, planned);

  ChildRun last = RunCtl(CompressArgs(trace_, lib));
  ASSERT_TRUE(ExitedOk(last)) << last.err;
  std::vector<std::string> now, already;
  ParseChunkLines(last.err, &now, &already);
  for (const auto& t : now) EXPECT_TRUE(reported.insert(t).second) << "chunk " << t << " committed twice (last run)";
  for (const auto& t : already) unreported.erase(start_of[t]);
  EXPECT_TRUE(unreported.empty()) << unreported.size() << " chunk(s) committed by a killed run were never reported";
  std::set<int64_t> starts = ExpectConsistent(lib, false, true, "complete");
  // Every window once: reported by the run that committed it, or (when a
  // kill fell between the commit and the line) found by the next run.
  size_t silent_total = 0;
  for (auto s : starts) {
    silent_total += !reported.count(FormatRfc3339(s));
  }
  EXPECT_EQ(reported.size() + silent_total, windows_.size());
  EXPECT_EQ(silent_total, expected_silent);
  EXPECT_GE(silent_total, 3u) << "three kills fell between a commit and its line";
  {
    // The runs fine-tuned: what survived the kills is a delta chain, not
    // only chunks sharing the base.
    auto l = RocksDbModelLibrary::Open(lib);
    ASSERT_TRUE(l.ok()) << l.status();
    auto models = (*l)->ListModels();
    ASSERT_TRUE(models.ok()) << models.status();
    size_t deltas = 0;
    for (const auto& m : *models) deltas += m.kind == library::ModelKind::kFinetune;
    EXPECT_GE(deltas, windows_.size() / 2);
  }
  uint64_t packets = 0;
  for (auto s : starts) packets += windows_[s];
  EXPECT_EQ(packets, packets_);

  std::string out = dir_.File("gen.pcap"), err;
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + out + " 2>&1", &err), 0) << err;
  auto r = TraceReader::Open(out);
  ASSERT_TRUE(r.ok()) << r.status();
  PacketRecord p;
  uint64_t generated = 0;
  while ((*r)->Next(&p)) ++generated;
  EXPECT_GT(generated, 0u);
}

// The chunks and the model ids of a closed library.
std::pair<std::set<int64_t>, std::set<std::string>> Contents(const std::string& lib) {
  std::pair<std::set<int64_t>, std::set<std::string>> out;
  auto l = RocksDbModelLibrary::Open(lib);
  EXPECT_TRUE(l.ok()) << l.status();
  if (!l.ok()) return out;
  auto chunks = (*l)->ListChunks({});
  auto models = (*l)->ListModels();
  EXPECT_TRUE(chunks.ok() && models.ok());
  if (!chunks.ok() || !models.ok()) return out;
  for (const auto& c : *chunks) out.first.insert(c.start_ns);
  for (const auto& m : *models) out.second.insert(m.id);
  return out;
}

TEST_F(CompressKillTest, KilledExpireLeavesAConsistentLibrary) {
  const std::string filled = dir_.File("filled");
  ChildRun fill = RunCtl(CompressArgs(trace_, filled));
  ASSERT_TRUE(ExitedOk(fill)) << fill.err;
  std::set<int64_t> before = ExpectConsistent(filled, false, true, "filled");
  ASSERT_FALSE(before.empty());
  const int64_t newest = *before.rbegin();
  uint64_t half = 0;
  {
    auto l = RocksDbModelLibrary::Open(filled);
    ASSERT_TRUE(l.ok()) << l.status();
    auto u = (*l)->GetDetailedUsage();
    ASSERT_TRUE(u.ok()) << u.status();
    half = u->TotalBytes() / 2;
  }
  // Keep about half: the oldest chunks and the deltas only they need go, two
  // deletions per write, so there are several writes to die between.
  auto expire = [&](const std::string& lib) {
    return std::vector<std::string>{"expire", "--library", lib, "--max-bytes", std::to_string(half), "--batch", "2",
                                    "-o", "json"};
  };
  std::vector<std::string> dry = expire(filled);
  dry.push_back("--dry-run");
  ChildRun plan = RunCtl(dry);
  ASSERT_TRUE(ExitedOk(plan)) << plan.err << plan.out;
  auto j = nlohmann::json::parse(plan.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << plan.out;
  int chunk_items = 0, model_items = 0;
  for (const auto& item : j["items"]) {
    chunk_items += item.value("kind", "") == "chunk";
    model_items += item.value("kind", "") == "model";
  }
  ASSERT_GE(chunk_items, 4) << plan.out;
  ASSERT_GE(model_items, 3) << plan.out;

  // What an uninterrupted expire leaves.
  const std::string ref = dir_.File("ref");
  fs::copy(filled, ref, fs::copy_options::recursive);
  ChildRun whole = RunCtl(expire(ref));
  ASSERT_TRUE(ExitedOk(whole)) << whole.err << whole.out;
  const auto [kept_chunks, kept_models] = Contents(ref);
  ASSERT_LT(kept_chunks.size(), before.size());
  ASSERT_TRUE(kept_chunks.count(newest));

  // Each kill on a fresh copy of the filled library: after the first chunk
  // batch, after the last (every record gone, every model still there), and
  // between model batches (some models gone, others not yet).
  struct Kill {
    std::string point;
    int n;
  };
  const int chunk_batches = (chunk_items + 1) / 2, full_model_batches = (model_items - 1) / 2;
  std::vector<Kill> kills = {{"library.expire.after_chunk_batch", 1},
                             {"library.expire.after_chunk_batch", chunk_batches}};
  for (int k = 1; k <= std::min(full_model_batches, 2); ++k) kills.push_back({"library.expire.after_model_batch", k});
  int landed = 0;
  for (size_t round = 0; round < kills.size(); ++round) {
    const Kill& k = kills[round];
    const std::string lib = dir_.File("lib" + std::to_string(round));
    fs::copy(filled, lib, fs::copy_options::recursive);
    ChildRun run = RunCtl(expire(lib), {}, FaultEnv(k.point, k.n));
    const bool hit = FaultLanded(run, k.point);
    landed += hit;
    EXPECT_TRUE(hit) << k.point << ":" << k.n << " did not land (exit status " << run.status << ")\n" << run.err;
    std::cerr << "expire kill at " << k.point << ":" << k.n << ": " << (hit ? "landed" : "missed") << "\n";
    // Killed between batches: consistent, maybe with models no chunk needs
    // (the next run collects them); only chunks the plan named are gone.
    std::set<int64_t> starts = ExpectConsistent(lib, /*allow_unreferenced=*/true, /*complete=*/false,
                                                "after expire kill " + std::to_string(round));
    EXPECT_TRUE(starts.count(newest)) << "the newest chunk was expired";
    for (auto s : kept_chunks) EXPECT_TRUE(starts.count(s)) << "chunk " << s << " is gone though the plan keeps it";
    EXPECT_LT(starts.size(), before.size()) << "the kill landed before any deletion";
    if (k.point == "library.expire.after_model_batch" || k.n == chunk_batches) {
      EXPECT_EQ(starts, kept_chunks) << "every chunk batch was written before this kill";
    }
    // Run again: exactly what an uninterrupted expire leaves, no orphan.
    ChildRun again = RunCtl(expire(lib));
    ASSERT_TRUE(ExitedOk(again)) << again.err << again.out;
    ExpectConsistent(lib, /*allow_unreferenced=*/false, false, "after expire kill " + std::to_string(round) + " and a rerun");
    const auto [chunks_after, models_after] = Contents(lib);
    EXPECT_EQ(chunks_after, kept_chunks);
    EXPECT_EQ(models_after, kept_models);
    if (HasFailure()) return;
  }
  std::cerr << "expire: " << landed << " of " << kills.size() << " planned kills landed between deletion batches\n";
  EXPECT_EQ(landed, static_cast<int>(kills.size()));
  EXPECT_GE(kills.size(), 3u);

  std::string out = dir_.File("gen.pcap"), err;
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + ref + " -o " + out + " 2>&1", &err), 0) << err;
}

}  // namespace
}  // namespace dgc

// Crash safety with the real compressing process: `dgcctl compress` (and
// `dgcctl expire`) killed with SIGKILL at random points, re-run after each
// kill, then run to the end. crash_test.cc does the same with a small helper
// that commits synthetic chunks as fast as it can; this test proves the same
// of the real pipeline (reading, base training, fine-tuning, commit).
//
// Bounded: a 120 s synthetic trace in 10 s chunks (12 chunk windows), tiny
// budgets, 6 kills of compress and 6 of expire, each after a random delay
// within the measured length of an uninterrupted run, every wait capped.
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

#include "common/trace/pcap_reader.h"
#include "coordinator/library/rocksdb_model_library.h"
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

ChildRun RunCtl(const std::vector<std::string>& args, KillAt kill = {}) {
  int err_fds[2], out_fds[2];
  EXPECT_EQ(::pipe(err_fds), 0);
  EXPECT_EQ(::pipe(out_fds), 0);
  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_fds[1], 1);
    ::dup2(err_fds[1], 2);
    for (int fd : {err_fds[0], err_fds[1], out_fds[0], out_fds[1]}) ::close(fd);
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
  const int full_ms = std::max(200, static_cast<int>(ref.seconds * 1000));
  const int first_commit_ms = static_cast<int>(ref.commit_seconds.front() * 1000);
  const int chunk_ms = std::max(
      5, static_cast<int>((ref.commit_seconds.back() - ref.commit_seconds.front()) * 1000 / windows_.size()));

  const std::string lib = dir_.File("lib");
  std::mt19937 rng(20240601);
  std::set<std::string> committed;  // chunk times some run reported committed
  int kills = 0, kills_among_commits = 0;
  for (int round = 0; round < 6; ++round) {
    // Round 0 dies anywhere before the first commit (opening the library,
    // reading, training the base). The others die among the commits: after
    // 0-2 new ones, within about two chunks' time of the last, so the kill
    // lands in a fine-tune, a commit or between them.
    KillAt kill;
    if (round == 0) {
      kill.after_ms = std::uniform_int_distribution<int>(50, std::max(60, first_commit_ms))(rng);
    } else {
      kill.after_commits = std::uniform_int_distribution<int>(0, 2)(rng);
      kill.then_ms = std::uniform_int_distribution<int>(0, 2 * chunk_ms)(rng);
      if (kill.after_commits == 0) kill.then_ms += first_commit_ms / 2;  // from the start: skip process start
    }
    ChildRun run = RunCtl(CompressArgs(trace_, lib), kill);
    kills += run.killed;
    kills_among_commits += run.killed && round > 0;
    std::vector<std::string> now, already;
    ParseChunkLines(run.err, &now, &already);
    for (const auto& t : now) {
      EXPECT_TRUE(committed.insert(t).second) << "chunk " << t << " committed twice (round " << round << ")";
    }
    for (const auto& t : already) {
      // Only chunks an earlier run committed, maybe killed before it said so.
      EXPECT_EQ(std::find(now.begin(), now.end(), t), now.end()) << t;
    }
    std::cerr << "round " << round << ": " << (run.killed ? "killed" : "finished") << " after " << run.seconds
              << " s (run " << full_ms << " ms, chunk " << chunk_ms << " ms), " << now.size()
              << " chunk(s) committed, " << already.size() << " found committed\n";
    if (!run.killed) {
      EXPECT_TRUE(ExitedOk(run)) << run.err;
    }
    std::set<int64_t> starts =
        ExpectConsistent(lib, /*allow_unreferenced=*/false, /*complete=*/!run.killed,
                         "after kill " + std::to_string(round));
    // Every chunk a run reported committed is there.
    EXPECT_GE(starts.size(), committed.size());
    if (HasFailure()) return;
  }
  EXPECT_GE(kills_among_commits, 3) << "compress finished before most kills (a run takes " << full_ms
                                    << " ms): the test proves little";

  ChildRun last = RunCtl(CompressArgs(trace_, lib));
  ASSERT_TRUE(ExitedOk(last)) << last.err;
  std::vector<std::string> now, already;
  ParseChunkLines(last.err, &now, &already);
  for (const auto& t : now) EXPECT_TRUE(committed.insert(t).second) << "chunk " << t << " committed twice (last run)";
  std::set<int64_t> starts = ExpectConsistent(lib, false, true, "complete");
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
  // A run killed between a commit and its line leaves a chunk that no run
  // reported: the next run found it committed. None was reported twice.
  EXPECT_LE(committed.size(), windows_.size());
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

TEST_F(CompressKillTest, KilledExpireLeavesAConsistentLibrary) {
  const std::string lib = dir_.File("lib");
  ChildRun fill = RunCtl(CompressArgs(trace_, lib));
  ASSERT_TRUE(ExitedOk(fill)) << fill.err;
  std::set<int64_t> before = ExpectConsistent(lib, false, true, "filled");
  ASSERT_FALSE(before.empty());
  const int64_t newest = *before.rbegin();
  uint64_t half = 0;
  {
    auto l = RocksDbModelLibrary::Open(lib);
    ASSERT_TRUE(l.ok()) << l.status();
    auto u = (*l)->GetDetailedUsage();
    ASSERT_TRUE(u.ok()) << u.status();
    half = u->TotalBytes() / 2;
  }
  // Keep about half: the oldest chunks and the deltas only they need go.
  const std::vector<std::string> expire = {"expire", "--library", lib, "--max-bytes", std::to_string(half)};
  std::vector<std::string> dry = expire;
  dry.push_back("--dry-run");
  ChildRun measure = RunCtl(dry);
  ASSERT_TRUE(ExitedOk(measure)) << measure.err << measure.out;
  const int full_ms = std::max(20, static_cast<int>(measure.seconds * 1000));

  std::mt19937 rng(7);
  int kills = 0;
  for (int round = 0; round < 6; ++round) {
    int ms = std::uniform_int_distribution<int>(full_ms / 4, full_ms)(rng);
    KillAt kill;
    kill.after_ms = ms;
    ChildRun run = RunCtl(expire, kill);
    kills += run.killed;
    std::cerr << "expire round " << round << ": " << (run.killed ? "killed" : "finished") << " after " << ms
              << " ms of " << full_ms << "\n";
    if (!run.killed) {
      EXPECT_TRUE(ExitedOk(run)) << run.err << run.out;
    }
    // A kill between the chunk batches and the model batches may leave
    // models no chunk needs (the next run collects them); nothing may break.
    std::set<int64_t> starts = ExpectConsistent(lib, /*allow_unreferenced=*/true, /*complete=*/false,
                                                "after expire kill " + std::to_string(round));
    EXPECT_TRUE(starts.count(newest)) << "the newest chunk was expired";
    if (HasFailure()) return;
  }
  // Expire is short: most of a run is process start, so fewer kills land.
  EXPECT_GE(kills, 2) << "expire finished before most kills (a run takes " << full_ms << " ms)";

  ChildRun last = RunCtl(expire);
  ASSERT_TRUE(ExitedOk(last)) << last.err << last.out;
  std::set<int64_t> after = ExpectConsistent(lib, /*allow_unreferenced=*/false, false, "after a complete expire");
  EXPECT_LT(after.size(), before.size());
  EXPECT_TRUE(after.count(newest));
  // What is kept is the newest part of the input.
  ASSERT_FALSE(after.empty());
  for (auto s : before) {
    if (s >= *after.begin()) {
      EXPECT_TRUE(after.count(s)) << "chunk " << s << " went though an older one stayed";
    }
  }
  std::string out = dir_.File("gen.pcap"), err;
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + out + " 2>&1", &err), 0) << err;
}

}  // namespace
}  // namespace dgc

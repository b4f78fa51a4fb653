// Crash safety of the RocksDB library: a helper process commits chunks (or
// expires them) and is killed with SIGKILL at random points; after each kill
// the library is reopened and checked. Bounded: a fixed number of kills, each
// within a fraction of a second.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "library/rocksdb_model_library.h"
#include "gtest/gtest.h"
#include "tests/library/chain_fixture.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

struct ChildRun {
  std::string out;
  bool killed = false;
  int status = 0;
};

// Runs the helper with `args`; kills it with SIGKILL after `kill_after_ms`
// (< 0: lets it finish, at most 60 s). Returns everything it printed.
ChildRun RunHelper(const std::vector<std::string>& args, int kill_after_ms) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    std::string helper = DGC_LIBRARY_CRASH_HELPER;
    argv.push_back(helper.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(helper.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ChildRun run;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(kill_after_ms < 0 ? 60000 : kill_after_ms);
  char buf[4096];
  bool eof = false;
  while (!eof) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) eof = true;
    else run.out.append(buf, n);
  }
  if (!eof) {
    ::kill(pid, SIGKILL);
    run.killed = true;
  }
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) run.out.append(buf, n);  // lines printed before death
  ::close(fds[0]);
  ::waitpid(pid, &run.status, 0);
  return run;
}

void ExpectConsistent(RocksDbModelLibrary& lib, bool allow_unreferenced, const std::string& when) {
  auto check = lib.Check();
  ASSERT_TRUE(check.ok()) << check.status();
  for (const auto& p : check->problems) ADD_FAILURE() << when << ": " << p;
  if (!allow_unreferenced) {
    for (const auto& m : check->unreferenced_models) ADD_FAILURE() << when << ": orphan model " << m;
  }
}

constexpr int kChunks = 8000;

TEST(LibraryCrashTest, KilledCommitterLosesNothingAndCommitsNothingTwice) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("lib");
  std::mt19937 rng(42);
  std::set<int> committed;  // reported as committed by some run
  int kills = 0;
  for (int round = 0; round < 20; ++round) {
    int ms = std::uniform_int_distribution<int>(5, 150)(rng);
    // Resume a little before the last chunk reported: those commits must be
    // no-ops ("already"), the one the kill may have cut included.
    int from = committed.empty() ? 0 : std::max(0, *committed.rbegin() - 20);
    ChildRun run = RunHelper({"commit", dir, std::to_string(from), std::to_string(kChunks)}, ms);
    kills += run.killed;
    std::istringstream in(run.out);
    std::string word;
    int i;
    while (in >> word >> i) {
      if (word == "committed") {
        EXPECT_TRUE(committed.insert(i).second) << "chunk " << i << " committed twice (round " << round << ")";
      } else {
        EXPECT_EQ(word, "already");
        // Only chunks an earlier run committed (maybe killed before it said so).
      }
    }
    auto lib = RocksDbModelLibrary::Open(dir);
    ASSERT_TRUE(lib.ok()) << lib.status();
    auto chunks = (*lib)->ListChunks({});
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    std::set<int64_t> seqs;
    for (const auto& c : *chunks) EXPECT_TRUE(seqs.insert(c.seq).second);
    for (int c : committed) {
      EXPECT_TRUE(seqs.count((testing::kChainT0 + c * testing::kChainChunkNs) / testing::kChainChunkNs))
          << "chunk " << c << " was reported committed and is lost";
    }
    // Commits are sequential: what is there is a prefix.
    EXPECT_EQ(seqs.size(), seqs.empty() ? 0 : size_t(*seqs.rbegin() - *seqs.begin() + 1));
    ExpectConsistent(**lib, /*allow_unreferenced=*/false, "after kill " + std::to_string(round));
    if (HasFailure()) return;
  }
  EXPECT_GE(kills, 10) << "the helper finished before most kills: the test proves little";
  // Finish the run; every chunk exactly once.
  ChildRun last = RunHelper({"commit", dir, "0", std::to_string(kChunks)}, -1);
  ASSERT_TRUE(WIFEXITED(last.status) && WEXITSTATUS(last.status) == 0) << last.out;
  auto lib = RocksDbModelLibrary::Open(dir);
  ASSERT_TRUE(lib.ok());
  auto chunks = (*lib)->ListChunks({});
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(chunks->size(), size_t(kChunks));
  ExpectConsistent(**lib, false, "complete");
  auto anc = (*lib)->Ancestors(testing::ChainModelId(kChunks - 1));
  ASSERT_TRUE(anc.ok()) << anc.status();
  EXPECT_EQ(anc->back().id, "base-" + std::to_string((kChunks - 1) / 10 * 10));
}

TEST(LibraryCrashTest, KilledExpireLeavesAConsistentLibrary) {
  testing::TempDir tmp;
  const std::string dir = tmp.File("lib");
  ChildRun fill = RunHelper({"commit", dir, "0", std::to_string(kChunks / 4)}, -1);
  ASSERT_TRUE(WIFEXITED(fill.status) && WEXITSTATUS(fill.status) == 0) << fill.out;
  uint64_t target = 0;
  int64_t newest_start = 0;
  {
    auto lib = RocksDbModelLibrary::Open(dir);
    ASSERT_TRUE(lib.ok());
    auto u = (*lib)->GetDetailedUsage();
    ASSERT_TRUE(u.ok());
    target = u->TotalBytes() / 4;
    auto latest = (*lib)->LatestChunk("tap0");
    ASSERT_TRUE(latest.ok());
    newest_start = latest->start_ns;
  }
  std::mt19937 rng(7);
  int kills = 0;
  for (int round = 0; round < 12; ++round) {
    int ms = std::uniform_int_distribution<int>(3, 80)(rng);
    kills += RunHelper({"expire", dir, std::to_string(target)}, ms).killed;
    auto lib = RocksDbModelLibrary::Open(dir);
    ASSERT_TRUE(lib.ok()) << lib.status();
    // Unreferenced models may be left by a kill between the chunk and the
    // model batches; nothing may be broken.
    ExpectConsistent(**lib, /*allow_unreferenced=*/true, "after expire kill " + std::to_string(round));
    EXPECT_TRUE((*lib)->GetChunk("tap0", newest_start).ok()) << "the newest chunk was expired";
    if (HasFailure()) return;
  }
  EXPECT_GE(kills, 3) << "expire finished before most kills: the test proves little";
  ChildRun last = RunHelper({"expire", dir, std::to_string(target)}, -1);
  ASSERT_TRUE(WIFEXITED(last.status) && WEXITSTATUS(last.status) == 0) << last.out;
  auto lib = RocksDbModelLibrary::Open(dir);
  ASSERT_TRUE(lib.ok());
  ExpectConsistent(**lib, /*allow_unreferenced=*/false, "after a complete expire");
  auto chunks = (*lib)->ListChunks({});
  ASSERT_TRUE(chunks.ok());
  EXPECT_LT(chunks->size(), size_t(kChunks / 4));
  EXPECT_FALSE(chunks->empty());
}

}  // namespace
}  // namespace dgc

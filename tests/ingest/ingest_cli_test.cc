// dgc-ingest as an operator runs it: a real process, real files, exit codes.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "common/base/files.h"
#include "common/trace/chunk_format.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;
using testing::MakePacket;

constexpr int64_t kSec = 1000000000;
constexpr int64_t kT0 = 1700000040LL * kSec;

std::string Ingest() { return testing::BinaryPath("dgc-ingest"); }

// n packets over `seconds`, on a few flows.
std::vector<PacketRecord> Traffic(int n, int seconds, int64_t t0 = kT0, uint32_t host = 1) {
  std::vector<PacketRecord> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(MakePacket(t0 + int64_t(i) * seconds * kSec / n, 0x0a000000 + host, 0x0a0000ff,
                           kProtoTcp, uint16_t(40000 + i % 7), 443, 60 + i % 1400, 0x10));
  }
  return v;
}

uint64_t PacketsInSpool(const std::string& dir, std::vector<int64_t>* starts = nullptr) {
  uint64_t n = 0;
  auto files = ListFiles(dir);
  EXPECT_TRUE(files.ok()) << files.status();
  if (!files.ok()) return 0;
  for (const auto& f : *files) {
    auto c = ReadChunkFile(f);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) continue;
    n += c->packets.size();
    for (size_t i = 1; i < c->packets.size(); ++i) {
      EXPECT_LE(c->packets[i - 1].ts_ns, c->packets[i].ts_ns);
    }
    if (starts) starts->push_back(c->start_ns);
  }
  return n;
}

TEST(IngestCliTest, WritesChunksAndReportsJson) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("a.pcap"), Traffic(1000, 300));
  std::string out;
  int rc = testing::Run(Ingest() + " " + dir.File("a.pcap") + " --out " + dir.File("spool") +
                            " --link tap0 -o json 2>&1",
                        &out);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ip_packets"], 1000);
  EXPECT_EQ(j["frames"], 1000);
  EXPECT_EQ(j["errors"], 0);
  EXPECT_EQ(j["chunks"], 5);  // 300 s in 60 s windows, aligned to the epoch
  EXPECT_EQ(j["flows"].get<int>() >= 7, true);
  std::vector<int64_t> starts;
  EXPECT_EQ(PacketsInSpool(dir.File("spool/tap0"), &starts), 1000u);
  ASSERT_EQ(starts.size(), 5u);
  for (int64_t s : starts) EXPECT_EQ(s % (60 * kSec), 0);
}

TEST(IngestCliTest, MergesSeveralFilesOfOneLinkByTime) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("a.pcap"), Traffic(500, 120, kT0, 1));
  testing::WritePcap(dir.File("b.pcap"), Traffic(500, 120, kT0 + kSec / 3, 2));
  std::string out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("a.pcap") + " " + dir.File("b.pcap") + " --out " +
                             dir.File("spool") + " -o json",
                         &out),
            0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ip_packets"], 1000);
  EXPECT_EQ(j["amended_chunks"], 0);  // merged in order: nothing arrived late
  EXPECT_EQ(PacketsInSpool(dir.File("spool/default")), 1000u);
}

TEST(IngestCliTest, ReadsCompressedCaptureFromStdin) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("a.pcap"), Traffic(200, 30));
  std::string out;
  ASSERT_EQ(testing::Run("gzip -c " + dir.File("a.pcap") + " | " + Ingest() + " - --out " +
                             dir.File("spool") + " -o json",
                         &out),
            0);
  EXPECT_EQ(nlohmann::json::parse(out)["ip_packets"], 200);
}

TEST(IngestCliTest, HandlesOutOfOrderFilesWithoutDroppingPackets) {
  testing::TempDir dir;
  auto v = Traffic(300, 600);
  std::reverse(v.begin(), v.end());  // the worst order there is
  testing::WritePcap(dir.File("rev.pcap"), v);
  std::string out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("rev.pcap") + " --out " + dir.File("spool") + " -o json",
                         &out),
            0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ip_packets"], 300);
  EXPECT_EQ(PacketsInSpool(dir.File("spool/default")), 300u);
}

// A long sparse archive: one packet every 70 s for ~4 days, so ~5,000
// one-minute chunks, several group commits' worth (and an amendment or two
// from the packets put out of order).
std::vector<PacketRecord> SparseArchive(int n) {
  std::vector<PacketRecord> v = Traffic(n, n * 70);
  for (size_t i = 100; i + 1 < v.size(); i += 997) std::swap(v[i], v[i + 1]);
  return v;
}

// The names of the files in `dir`.
std::set<std::string> FileNames(const std::string& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

// Runs `command` (sh -c) and kills it with SIGKILL as soon as `link` holds a
// committed chunk file (one that is not a temporary). Fails when none came
// within 20 s or when the process had already exited: the kill must land
// while it runs.
void KillAfterFirstCommit(const std::string& command, const std::string& link) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  bool committed = false;
  for (int i = 0; i < 20000 && !committed; ++i) {  // at most 20 s
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(link, ec)) {
      if (!AtomicWriteTempPid(e.path().filename().string())) committed = true;
    }
    if (!committed) ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(committed) << "no chunk committed in 20 s";
  ASSERT_TRUE(WIFSIGNALED(status)) << "it finished before the kill landed: make the input longer";
}

TEST(IngestCliTest, SparseArchiveLandsWholeThroughGroupCommits) {
  testing::TempDir dir;
  const int n = 5000;
  testing::WritePcap(dir.File("a.pcap"), SparseArchive(n));
  std::string out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("a.pcap") + " --out " + dir.File("spool") + " -o json", &out), 0)
      << out;
  auto j = nlohmann::json::parse(out);
  std::vector<int64_t> starts;
  EXPECT_EQ(PacketsInSpool(dir.File("spool/default"), &starts), uint64_t(n));
  EXPECT_GT(starts.size(), 2048u) << "more chunks than two group commits hold";
  EXPECT_EQ(j["chunks"].get<size_t>(), starts.size());
  EXPECT_EQ(std::set<int64_t>(starts.begin(), starts.end()).size(), starts.size());
  for (const auto& e : fs::directory_iterator(dir.File("spool/default"))) {
    EXPECT_FALSE(AtomicWriteTempPid(e.path().filename().string()).has_value()) << e.path();
  }
}

// kill -9 in the middle of an import: every chunk file that is visible is
// whole, and running the import again gives exactly the spool of a run
// never interrupted. The kill must land while the import runs: the test
// waits for its first committed chunk and fails if it had already exited.
TEST(IngestCliTest, KilledImportLeavesOnlyWholeChunksAndARerunCompletesIt) {
  testing::TempDir dir;
  const int n = 12000;  // ~12,000 chunks: ~12 commits, the first after 1,024 files or 1 s
  testing::WritePcap(dir.File("a.pcap"), SparseArchive(n));
  const std::string spool = dir.File("spool");
  const std::string link = spool + "/default";
  KillAfterFirstCommit(Ingest() + " " + dir.File("a.pcap") + " --out " + spool + " --no-progress -o json", link);
  if (HasFatalFailure()) return;
  std::vector<int64_t> partial;
  const uint64_t kept = PacketsInSpool(link, &partial);  // every visible file decodes
  EXPECT_GT(partial.size(), 0u);
  EXPECT_LT(kept, uint64_t(n)) << "killed mid-run, yet every packet is there";

  std::string out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("a.pcap") + " --out " + spool + " -o json 2>&1", &out), 0) << out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("a.pcap") + " --out " + dir.File("clean") + " -o json", &out), 0);
  EXPECT_EQ(FileNames(link), FileNames(dir.File("clean/default"))) << "the rerun leaves no temporary and misses no chunk";
  EXPECT_EQ(PacketsInSpool(link), uint64_t(n));
}

// Network mode (a filter is enough to choose it; no coordinator: the chunks
// stay in the spool) cuts the same chunks as file mode through its own group
// commits, amendments of reordered packets included, and a kill -9 in the
// middle leaves only whole chunks that a rerun completes.
TEST(IngestCliTest, NetworkModeSpoolsWhatFileModeWritesAndSurvivesAKill) {
  testing::TempDir dir;
  const int n = 12000;
  testing::WritePcap(dir.File("a.pcap"), SparseArchive(n));
  const std::string net = Ingest() + " " + dir.File("a.pcap") + " --filter 'ip or ip6' --metrics 127.0.0.1:0 --spool-dir ";
  std::string out;
  ASSERT_EQ(testing::Run(Ingest() + " " + dir.File("a.pcap") + " --out " + dir.File("file") + " -o json", &out), 0)
      << out;
  const std::set<std::string> want = FileNames(dir.File("file/default"));
  ASSERT_GT(want.size(), 2u * 256) << "more chunks than two of network mode's group commits hold";
  ASSERT_EQ(testing::Run(net + dir.File("whole") + " 2>&1", &out), 0) << out;
  EXPECT_EQ(FileNames(dir.File("whole/default")), want);
  EXPECT_EQ(PacketsInSpool(dir.File("whole/default")), uint64_t(n));

  const std::string spool = dir.File("killed");
  const std::string link = spool + "/default";
  KillAfterFirstCommit(net + spool + " 2>/dev/null", link);
  if (HasFatalFailure()) return;
  std::vector<int64_t> partial;
  const uint64_t kept = PacketsInSpool(link, &partial);  // every visible file decodes
  EXPECT_GT(partial.size(), 0u);
  EXPECT_LT(kept, uint64_t(n)) << "killed mid-run, yet every packet is there";
  ASSERT_EQ(testing::Run(net + spool + " 2>&1", &out), 0) << out;
  EXPECT_EQ(FileNames(link), want) << "the rerun leaves no temporary and misses no chunk";
  EXPECT_EQ(PacketsInSpool(link), uint64_t(n));
}

TEST(IngestCliTest, UnreadableInputFailsWithTheFileNameAndWritesNothing) {
  testing::TempDir dir;
  testing::WriteBytes(dir.File("junk.pcap"), "this is not a capture");
  testing::WritePcap(dir.File("good.pcap"), Traffic(10, 1));
  std::string err;
  int rc = testing::Run(Ingest() + " " + dir.File("good.pcap") + " " + dir.File("junk.pcap") +
                            " --out " + dir.File("spool") + " 2>&1 >/dev/null",
                        &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("junk.pcap"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir.File("spool/default")));
  rc = testing::Run(Ingest() + " " + dir.File("missing.pcap") + " --out " + dir.File("spool") + " 2>&1",
                    &err);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("missing.pcap"), std::string::npos) << err;
}

TEST(IngestCliTest, CorruptRecordIsReportedWithOffsetAndTheRestIngested) {
  testing::TempDir dir;
  std::vector<testing::RawFrame> frames;
  for (int i = 0; i < 20; ++i) {
    frames.push_back({kT0 + i * kSec, testing::Ipv4Header(0x0a000001, 0x0a000002, 17, 28) +
                                          testing::UdpHeader(1000 + i, 53, 8)});
  }
  std::string image = testing::MakePcapImage(101, frames);
  size_t off = 24 + 10 * (16 + 28);
  image[off + 11] = '\x7f';  // record 10's caplen becomes ~2 GB
  testing::WriteBytes(dir.File("c.pcap"), image);
  std::string out;
  int rc = testing::Run(Ingest() + " " + dir.File("c.pcap") + " --out " + dir.File("spool") +
                            " -o json 2>" + dir.File("err.txt"),
                        &out);
  EXPECT_EQ(rc, 0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ip_packets"], 19);
  EXPECT_EQ(j["corrupt_records"], 1);
  std::string err = *ReadFile(dir.File("err.txt"));
  EXPECT_NE(err.find("c.pcap: corrupt record at offset " + std::to_string(off)), std::string::npos) << err;
  // --strict turns read errors into a failure for scripts that want that.
  rc = testing::Run(Ingest() + " " + dir.File("c.pcap") + " --strict --out " + dir.File("spool2") +
                    " >/dev/null 2>&1");
  EXPECT_EQ(rc, 1);
}

TEST(IngestCliTest, HelpTeachesWithExamples) {
  std::string out;
  EXPECT_EQ(testing::Run(Ingest() + " --help", &out), 0);
  EXPECT_NE(out.find("Examples"), std::string::npos);
  EXPECT_NE(out.find("--chunk-seconds"), std::string::npos);
  std::string err;
  EXPECT_EQ(testing::Run(Ingest() + " 2>&1 >/dev/null", &err), 1);  // usage errors exit 1
  EXPECT_NE(err.find("--help"), std::string::npos) << err;
}

}  // namespace
}  // namespace dgc

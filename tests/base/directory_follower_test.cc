// The one rule for a complete capture file in a followed directory
// (common/base/directory_follower.h), shared by dgc-ingest and dgcctl.
#include "common/base/directory_follower.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;
using Clock = DirectoryFollower::Clock;

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(DirectoryFollowerTest, PartialAndHiddenNamesAreNeverCaptures) {
  for (const char* n : {"cap.pcap", "cap-0001.pcapng", "x.pcap.gz", "a.tmp.pcap"}) {
    EXPECT_TRUE(DirectoryFollower::Candidate(n)) << n;
  }
  for (const char* n : {".cap.pcap", "cap.pcap.part", "cap.partial", "cap.tmp", "cap.pcap.dgc.json",
                        "chunk-1.dgcc.tmp.4242", ""}) {
    EXPECT_FALSE(DirectoryFollower::Candidate(n)) << n;
  }
}

TEST(DirectoryFollowerTest, AFileIsCompleteWhenALaterOneExistsOrItSettled) {
  testing::TempDir dir;
  EXPECT_FALSE(DirectoryFollower::Create({dir.File("absent")}, 2).ok());
  auto f = DirectoryFollower::Create({dir.path()}, 2);
  ASSERT_TRUE(f.ok()) << f.status();
  const auto t0 = Clock::now();
  Write(dir.File("cap-1.pcap"), "one");
  Write(dir.File("cap-2.pcap.part"), "being written");
  // The newest file is still young: nothing yet.
  EXPECT_TRUE(f->Poll(t0).empty());
  EXPECT_TRUE(f->Poll(t0 + std::chrono::seconds(1)).empty());
  // Unchanged for the settle time: complete.
  auto ready = f->Poll(t0 + std::chrono::seconds(3));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], dir.File("cap-1.pcap"));
  EXPECT_TRUE(f->Poll(t0 + std::chrono::seconds(9)).empty());  // once each; the .part never
  // Renamed into place, and a later file appears: the earlier is complete at once.
  fs::rename(dir.File("cap-2.pcap.part"), dir.File("cap-2.pcap"));
  Write(dir.File("cap-3.pcap"), "three");
  ready = f->Poll(t0 + std::chrono::seconds(10));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], dir.File("cap-2.pcap"));
  // A file that grows starts its settle time again; an empty one never settles.
  Write(dir.File("cap-3.pcap"), "three, longer now");
  EXPECT_TRUE(f->Poll(t0 + std::chrono::seconds(13)).empty());
  ready = f->Poll(t0 + std::chrono::seconds(16));
  ASSERT_EQ(ready.size(), 1u);
  Write(dir.File("cap-4.pcap"), "");
  EXPECT_TRUE(f->Poll(t0 + std::chrono::seconds(100)).empty());
}

}  // namespace
}  // namespace dgc

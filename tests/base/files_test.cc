#include "common/base/files.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

TEST(FilesTest, AtomicWriteReplacesContentAndLeavesNoTemporary) {
  testing::TempDir dir;
  std::string path = dir.File("a.bin");
  ASSERT_TRUE(WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two").ok());
  EXPECT_EQ(*ReadFile(path), "two");
  auto files = ListFiles(dir.path());
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 1u);
}

TEST(FilesTest, MissingFileIsNotFoundNamingThePath) {
  auto r = ReadFile("/nonexistent/dgc/x");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  EXPECT_NE(r.status().message().find("/nonexistent/dgc/x"), std::string::npos);
}

TEST(FilesTest, RemovesOnlyTheTemporariesOfDeadWriters) {
  testing::TempDir dir;
  // A child that exits at once gives a pid that is no live process.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string stale = dir.File("chunk-1.dgcc.tmp." + std::to_string(dead));
  const std::string live = dir.File("chunk-2.dgcc.tmp." + std::to_string(::getpid()));
  for (const auto& f : {stale, live, dir.File("chunk-3.dgcc"), dir.File("notes.tmp.x")}) std::ofstream(f) << "x";
  auto removed = RemoveStaleTempFiles(dir.path());
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, std::vector<std::string>{stale});
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(dir.File("chunk-3.dgcc")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("notes.tmp.x")));
  EXPECT_FALSE(RemoveStaleTempFiles(dir.File("missing")).ok());
}

TEST(FilesTest, BatchShowsNothingBeforeCommitThenEveryFileWhole) {
  testing::TempDir dir;
  std::vector<std::string> paths;
  {
    FileBatch batch;
    for (int i = 0; i < 50; ++i) {
      paths.push_back(dir.File("chunk-" + std::to_string(i) + ".dgcc"));
      ASSERT_TRUE(batch.Add(paths.back(), std::string(100 + i, char('a' + i % 26))).ok());
    }
    EXPECT_EQ(batch.files(), 50u);
    EXPECT_EQ(batch.bytes(), 50u * 100 + 49 * 50 / 2);
    for (const auto& p : paths) EXPECT_FALSE(std::filesystem::exists(p)) << "visible before its commit: " << p;
    EXPECT_TRUE(ListFiles(dir.path())->empty());
    ASSERT_TRUE(batch.Commit().ok());
    EXPECT_TRUE(batch.empty());
    EXPECT_EQ(batch.bytes(), 0u);
    // The batch is reusable; a path committed before may be written again.
    ASSERT_TRUE(batch.Add(paths[0], "again").ok());
    ASSERT_TRUE(batch.Commit().ok());
  }
  auto files = ListFiles(dir.path());
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 50u);
  size_t temporaries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    temporaries += AtomicWriteTempPid(e.path().filename().string()).has_value();
  }
  EXPECT_EQ(temporaries, 0u);
  EXPECT_EQ(*ReadFile(paths[0]), "again");
  for (int i = 1; i < 50; ++i) EXPECT_EQ(*ReadFile(paths[i]), std::string(100 + i, char('a' + i % 26)));
}

TEST(FilesTest, BatchRefusesAPathTwiceAndLeavesNothingWhenAbandoned) {
  testing::TempDir dir;
  {
    FileBatch batch;
    ASSERT_TRUE(batch.Add(dir.File("a"), "1").ok());
    Status twice = batch.Add(dir.File("a"), "2");
    EXPECT_FALSE(twice.ok());
    EXPECT_NE(twice.message().find(dir.File("a")), std::string::npos) << twice;
    ASSERT_TRUE(batch.Add(dir.File("b"), "3").ok());
    EXPECT_EQ(batch.files(), 2u);
    Status missing = batch.Add("/nonexistent/dgc/x", "data");
    EXPECT_FALSE(missing.ok());
    EXPECT_NE(missing.message().find("/nonexistent/dgc/x"), std::string::npos) << missing;
    EXPECT_EQ(batch.files(), 2u) << "a failed Add leaves the batch as it was";
  }  // destroyed uncommitted
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "an abandoned batch leaves no file, not even a temporary";
}

TEST(FilesTest, WriteIntoMissingDirectoryFailsCleanly) {
  EXPECT_FALSE(WriteFileAtomic("/nonexistent/dgc/x", "data").ok());
}

}  // namespace
}  // namespace dgc

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

TEST(FilesTest, WriteIntoMissingDirectoryFailsCleanly) {
  EXPECT_FALSE(WriteFileAtomic("/nonexistent/dgc/x", "data").ok());
}

}  // namespace
}  // namespace dgc

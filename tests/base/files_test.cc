#include "common/base/files.h"

#include <filesystem>

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

TEST(FilesTest, WriteIntoMissingDirectoryFailsCleanly) {
  EXPECT_FALSE(WriteFileAtomic("/nonexistent/dgc/x", "data").ok());
}

}  // namespace
}  // namespace dgc

// dgcctl lineage / get / describe / expire / storage --library, as a real
// process against a library filled through the API.
#include <string>

#include "library/rocksdb_model_library.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/library/chain_fixture.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

class LibraryCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto lib = RocksDbModelLibrary::Open(dir());
    ASSERT_TRUE(lib.ok()) << lib.status();
    for (int i = 0; i < 25; ++i) ASSERT_TRUE((*lib)->CommitChunk(testing::ChainChunk(i)).ok());
  }
  std::string dir() const { return tmp_.File("lib"); }
  int Ctl(const std::string& args, std::string* out) {
    return testing::Run(std::string(DGCCTL_PATH) + " " + args + " 2>&1", out);
  }
  testing::TempDir tmp_;
};

TEST_F(LibraryCliTest, GetsChunksOfATimeRangeAsJson) {
  std::string out;
  ASSERT_EQ(Ctl("get chunks --library " + dir() +
                    " --link tap0 --since 2024-01-01T01:00:00Z --until 2024-01-01T02:00:00Z -o json",
                &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), 6u);
  EXPECT_EQ(j[0]["chunk"], "tap0@2024-01-01T01:00:00Z");
  EXPECT_EQ(j[4]["decision"], "retrain");  // chunk 10
  ASSERT_EQ(Ctl("get models --library " + dir(), &out), 0) << out;
  EXPECT_NE(out.find("base-20"), std::string::npos);
}

TEST_F(LibraryCliTest, DescribesAChunkWithItsSelectionReason) {
  std::string out;
  ASSERT_EQ(Ctl("describe chunk tap0@2024-01-01T01:40:00Z --library " + dir(), &out), 0) << out;
  EXPECT_NE(out.find("retrain"), std::string::npos) << out;
  EXPECT_NE(out.find("chain depth would exceed max_depth"), std::string::npos) << out;
  ASSERT_EQ(Ctl("describe model tap0-12 --library " + dir() + " -o json", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ancestors"].back(), "base-10");
}

TEST_F(LibraryCliTest, ShowsLineageExpiresAndCountsStorage) {
  std::string out;
  ASSERT_EQ(Ctl("lineage tap0-14 --library " + dir() + " -o json", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ancestors"].size(), 6u);
  EXPECT_EQ(j["descendants"].size(), 4u);
  ASSERT_EQ(Ctl("expire --library " + dir() + " --max-age 1d --dry-run -o json", &out), 0) << out;
  j = nlohmann::json::parse(out);
  EXPECT_TRUE(j["dry_run"].get<bool>());
  EXPECT_GT(j["items"].size(), 20u);
  ASSERT_EQ(Ctl("get chunks --library " + dir() + " -o json", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out).size(), 25u) << "a dry run changes nothing";
  ASSERT_EQ(Ctl("storage --library " + dir() + " -o json", &out), 0) << out;
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["raw_bytes_ingested"], 25u * 200000);
  EXPECT_GT(j["rows"].back()["ratio_to_raw"].get<double>(), 0);
  ASSERT_EQ(Ctl("expire --library " + dir() + " --max-age 1d", &out), 0) << out;
  ASSERT_EQ(Ctl("get chunks --library " + dir() + " -o json", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out).size(), 1u);
}

TEST_F(LibraryCliTest, ErrorsGoToStderrWithExitOne) {
  std::string out;
  EXPECT_EQ(Ctl("get chunks --library " + tmp_.File("none"), &out), 1);
  EXPECT_NE(out.find("no model library"), std::string::npos) << out;
  EXPECT_EQ(Ctl("describe chunk tap0@2030-01-01T00:00:00Z --library " + dir(), &out), 1);
  EXPECT_EQ(Ctl("lineage nope --library " + dir(), &out), 1);
  EXPECT_EQ(Ctl("expire --library " + dir() + " --max-bytes lots", &out), 1);
  EXPECT_NE(out.find("not a size"), std::string::npos) << out;
  EXPECT_EQ(Ctl("expire --help", &out), 0);
  EXPECT_NE(out.find("Examples"), std::string::npos);
}

}  // namespace
}  // namespace dgc

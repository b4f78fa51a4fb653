#include "common/model/artifact.h"

#include "gtest/gtest.h"

namespace dgc::model {
namespace {

ChunkArtifact Some() {
  ChunkArtifact a;
  a.link = "tap0";
  a.start_ns = 1700000040LL * 1000000000;
  a.duration_ns = 60LL * 1000000000;
  a.model_id = "tap0-28333334";
  a.parent_id = "base-abc";
  a.skeleton = std::string("DGCS\x01\x00", 6) + std::string(40, 'k');
  a.delta = std::string(300, 'd');
  a.report = {{"packets", 1234}, {"fidelity_mean", 0.07}};
  return a;
}

TEST(ArtifactTest, RoundTripsEveryPart) {
  ChunkArtifact a = Some();
  auto d = ChunkArtifact::Decode(a.Encode(), "a.dgca");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->link, a.link);
  EXPECT_EQ(d->start_ns, a.start_ns);
  EXPECT_EQ(d->duration_ns, a.duration_ns);
  EXPECT_EQ(d->model_id, a.model_id);
  EXPECT_EQ(d->parent_id, a.parent_id);
  EXPECT_EQ(d->skeleton, a.skeleton);
  EXPECT_EQ(d->delta, a.delta);
  EXPECT_EQ(d->report, a.report);
  EXPECT_EQ(d->seq(), 28333334);
}

TEST(ArtifactTest, CorruptTruncatedAndNewerFilesAreErrorsNamingTheFile) {
  std::string good = Some().Encode();
  for (size_t i = 0; i < good.size(); i += 2) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x11);
    auto d = ChunkArtifact::Decode(bad, "c.dgca");
    ASSERT_FALSE(d.ok()) << "byte " << i;
    EXPECT_NE(d.status().message().find("c.dgca"), std::string::npos);
  }
  for (size_t n = 0; n < good.size(); n += 3) EXPECT_FALSE(ChunkArtifact::Decode(good.substr(0, n), "c").ok());
  std::string newer = good;
  newer[4] = 2;
  EXPECT_TRUE(absl::IsUnimplemented(ChunkArtifact::Decode(newer, "c").status()));
}

}  // namespace
}  // namespace dgc::model

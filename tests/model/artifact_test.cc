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
  newer[4] = 3;
  EXPECT_TRUE(absl::IsUnimplemented(ChunkArtifact::Decode(newer, "c").status()));
}

std::string FromHex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(ArtifactTest, ReadsFormatOneWrittenByEarlierBuilds) {
  // A quiet chunk's artifact as format 1 (plain zstd metadata) wrote it.
  const std::string v1 = FromHex(
    "444743410100000028010000c20000004e00000000000000207d7c887b1df77928b52ffd602800c50500624c251970ad"
    "0e003c48f4a387122622e2ff7f2bfc58b0c4f2005561081573c3235ad1dac6be5f1547b6e125dbc8dc2f47b0c31d8eb1"
    "2b6955f87e0943e38e1699e27cee2152b45fadd9515883bf529dcb170b1a7c5f5ba5421002064f233fc8d4cd64d92c5f"
    "cf20e02ff7949c826f5b21b64dd946e8eb457b6f1800d92093657dbede338a0bcbc33bb4995fac10e02f45686d3ada48"
    "9e0a0c00b8f111d6b9194b1436fedab0b01b982559bc9872c60550158c136230b0034447435301000000002028e7bc9f"
    "6c1600a0b8304603000000ca9a3b00000000100e00001d000000149d07ca325d22f328b52ffd201dad00007802020250"
    "abf00101016d00010295010100908b16");
  auto d = ChunkArtifact::Decode(v1, "old.dgca");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->link, "default");
  EXPECT_EQ(d->duration_ns, 3600000000000LL);
  EXPECT_TRUE(d->report.contains("packets"));
  EXPECT_TRUE(d->delta.empty());
  // Written again, it is format 2 and smaller (the metadata dictionary).
  std::string v2 = d->Encode();
  EXPECT_EQ(v2[4], 2);
  EXPECT_LT(v2.size(), v1.size());
  auto again = ChunkArtifact::Decode(v2, "new.dgca");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->report, d->report);
}

}  // namespace
}  // namespace dgc::model

#include "library/library_records.h"

#include <iostream>
#include <limits>

#include "common/base/byte_io.h"
#include "common/model/artifact.h"
#include "nlohmann/json.hpp"

#include "gtest/gtest.h"

namespace dgc::library {
namespace {

TEST(LibraryRecordsTest, ChunkKeysSortByLinkThenTimeIncludingNegativeTimes) {
  EXPECT_LT(ChunkKey("a", -5), ChunkKey("a", 3));
  EXPECT_LT(ChunkKey("a", 3), ChunkKey("a", 1LL << 40));
  EXPECT_LT(ChunkKey("a", std::numeric_limits<int64_t>::max()), ChunkKey("a2", std::numeric_limits<int64_t>::min()));
  std::string link;
  int64_t t = 0;
  ASSERT_TRUE(ParseChunkKey(ChunkKey("tap0", -123456789), &link, &t));
  EXPECT_EQ(link, "tap0");
  EXPECT_EQ(t, -123456789);
  EXPECT_EQ(ChunkKeyToString(ChunkKey("tap0", 1704067200LL * 1000000000)), "tap0@2024-01-01T00:00:00Z");
  EXPECT_FALSE(ParseChunkKey("short", &link, &t));
}

TEST(LibraryRecordsTest, ModelAndChunkRoundTrip) {
  ModelRecord m;
  m.id = "tap0-7";
  m.kind = ModelKind::kFinetune;
  m.parent_id = "tap0-6";
  m.depth = 7;
  m.source_chunk = ChunkKey("tap0", 42);
  m.created_ns = -1;
  m.config_json = R"({"width":128})";
  m.training_json = R"({"steps":10})";
  m.fingerprint = "fp";
  m.blob = std::string(10000, 'x');
  auto d = DecodeModel(m.id, EncodeModel(m));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->parent_id, m.parent_id);
  EXPECT_EQ(d->depth, 7u);
  EXPECT_EQ(d->source_chunk, m.source_chunk);
  EXPECT_EQ(d->blob, m.blob);
  EXPECT_EQ(d->training_json, m.training_json);

  ChunkRecord c;
  c.link = "tap0";
  c.start_ns = 42;
  c.duration_ns = 600;
  c.packets = 5;
  c.model_id = "tap0-7";
  c.parent_id = "tap0-6";
  c.skeleton = "sk";
  c.report_json = "{}";
  c.drift = 0.25;
  c.decision = "switch";
  c.reason = "because";
  auto dc = DecodeChunk(ChunkKey("tap0", 42), EncodeChunk(c));
  ASSERT_TRUE(dc.ok()) << dc.status();
  EXPECT_EQ(dc->drift, 0.25);
  EXPECT_EQ(dc->reason, "because");
  EXPECT_EQ(dc->packets, 5u);
}

TEST(LibraryRecordsTest, BadBytesAreErrorsNamingTheKey) {
  ChunkRecord c;
  c.link = "tap0";
  c.start_ns = 1704067200LL * 1000000000;
  c.duration_ns = 600;
  c.model_id = c.parent_id = "m";
  std::string key = ChunkKey("tap0", c.start_ns);
  std::string good = EncodeChunk(c);
  // Every truncation fails cleanly.
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = DecodeChunk(key, good.substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_NE(r.status().message().find("tap0@2024-01-01T00:00:00Z"), std::string::npos) << r.status();
  }
  auto wrong_key = DecodeChunk(ChunkKey("tap1", c.start_ns), good);
  EXPECT_EQ(wrong_key.status().code(), absl::StatusCode::kDataLoss);
  std::string newer = good;
  newer[1] = 99;
  EXPECT_EQ(DecodeChunk(key, newer).status().code(), absl::StatusCode::kUnimplemented);
  auto model = DecodeModel("base-1", "garbage!");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(model.status().message().find("base-1"), std::string::npos);
}

TEST(LibraryRecordsTest, ReadsVersionOneChunksWithAPlainReport) {
  // Version 1 stored the report as plain JSON; version 2 compresses it.
  auto str = [](ByteWriter* w, const std::string& v) {
    w->Varint(v.size());
    w->Bytes(v.data(), v.size());
  };
  const std::string report = R"({"flows":3,"packets":10,"shared":true})";
  ByteWriter w;
  w.U8('C');  // the chunk record tag
  w.U8(1);
  str(&w, "tap0");
  w.SignedVarint(42);
  w.SignedVarint(60);
  w.SignedVarint(0);
  w.Varint(10);
  w.Varint(800);
  w.Varint(3);
  w.Varint(1000);
  str(&w, "base-1");
  str(&w, "base-1");
  w.U8(1);  // committed
  str(&w, "SK");
  str(&w, report);
  double drift = 0.25;
  w.Bytes(&drift, sizeof drift);
  str(&w, "continue");
  str(&w, "");
  str(&w, "");
  w.SignedVarint(7);
  w.Varint(123);
  auto c = DecodeChunk(ChunkKey("tap0", 42), w.Take());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->report_json, report);
  EXPECT_EQ(c->skeleton, "SK");
  EXPECT_EQ(c->decision, "continue");
  // Written again it is the newest version, with a smaller report than the JSON.
  std::string v3 = EncodeChunk(*c);
  EXPECT_EQ(static_cast<uint8_t>(v3[1]), 4);
  auto again = DecodeChunk(ChunkKey("tap0", 42), v3);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->report_json, report);
}

TEST(LibraryRecordsTest, AQuietChunkStoresNoFigureTwice) {
  // A shared chunk: its parent is its model, its report repeats the record's
  // counts. Version 3 stores neither twice and reads back the same record.
  ChunkRecord c;
  c.link = "tap0";
  c.start_ns = 1704067200LL * 1000000000;
  c.duration_ns = 3600LL * 1000000000;
  c.seq = 473352;
  c.packets = 212;
  c.bytes = 40310;
  c.flows = 9;
  c.raw_bytes = 52000;
  c.model_id = c.parent_id = "base-00112233445566ff";
  c.skeleton = "SK";
  nlohmann::json report = {{"packets", 212}, {"flows", 9}, {"bytes", 40310}, {"raw_bytes", 52000},
                           {"shared", true}, {"fidelity_mean", 0.125}, {"seconds", 0.21}};
  c.report_json = report.dump();
  c.decision = "continue";
  const std::string key = ChunkKey("tap0", c.start_ns);
  const std::string v3 = EncodeChunk(c);
  auto d = DecodeChunk(key, v3);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->report_json, c.report_json);
  EXPECT_EQ(d->parent_id, c.model_id);
  EXPECT_EQ(d->drift, -1);
  EXPECT_EQ(d->packets, 212u);
  // What version 2 stored for the same record: both ids, the drift, the
  // whole report.
  ByteWriter w;
  auto str = [&w](const std::string& v) {
    w.Varint(v.size());
    w.Bytes(v.data(), v.size());
  };
  w.U8('C');
  w.U8(2);
  str(c.link);
  w.SignedVarint(c.start_ns);
  w.SignedVarint(c.duration_ns);
  w.SignedVarint(c.seq);
  for (uint64_t v : {c.packets, c.bytes, c.flows, c.raw_bytes}) w.Varint(v);
  str(c.model_id);
  str(c.parent_id);
  w.U8(1);
  str(c.skeleton);
  w.Varint(c.report_json.size());
  str(model::CompressReport(c.report_json));
  double drift = -1;
  w.Bytes(&drift, sizeof drift);
  str(c.decision);
  str("");
  str("");
  w.SignedVarint(0);
  w.Varint(0);
  const std::string v2 = w.Take();
  auto old = DecodeChunk(key, v2);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->report_json, c.report_json);
  EXPECT_EQ(old->parent_id, c.parent_id);
  std::cerr << "quiet chunk record: version 2 " << v2.size() << " B, version 4 " << v3.size() << " B\n";
  EXPECT_LE(v3.size() + 30 + 20, v2.size());
  // A report whose counts are not the record's is kept as it was.
  c.report_json = R"({"flows":8,"packets":212})";
  c.parent_id = "base-1";
  c.drift = 0.5;
  auto other = DecodeChunk(key, EncodeChunk(c));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->report_json, c.report_json);
  EXPECT_EQ(other->parent_id, "base-1");
  EXPECT_EQ(other->drift, 0.5);
  // Unknown flags are corruption, not a guess.
  std::string bad = v3;
  const size_t at = bad.find(c.model_id) + c.model_id.size();
  bad[at] = static_cast<char>(0x80);
  EXPECT_EQ(DecodeChunk(key, bad).status().code(), absl::StatusCode::kDataLoss);
}

TEST(LibraryRecordsTest, ValidatesIds) {
  EXPECT_TRUE(ValidateId("model id", "base-abc_1.2").ok());
  EXPECT_FALSE(ValidateId("model id", "").ok());
  EXPECT_FALSE(ValidateId("model id", std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ValidateId("link", "a@b").ok());
  EXPECT_FALSE(ValidateId("link", std::string(201, 'a')).ok());
}


TEST(LibraryRecordsTest, VersionFourReadsTheLinkFromTheKeyAndCodesDecisionSeqAndCommitTime) {
  ChunkRecord c;
  c.link = "lockly-hub-01";
  c.start_ns = 1704067200LL * 1000000000;
  c.duration_ns = 3600LL * 1000000000;
  c.seq = c.start_ns / c.duration_ns;
  c.model_id = c.parent_id = "base-00112233445566ff";
  c.report_json = "{}";
  c.committed_ns = c.end_ns() + 1500LL * 1000000;
  const std::string key = ChunkKey(c.link, c.start_ns);
  for (const char* decision : {"", "continue", "switch", "retrain", "base", "something new"}) {
    c.decision = decision;
    const std::string v4 = EncodeChunk(c);
    EXPECT_EQ(v4.find(c.link), std::string::npos) << "the link is the key's, not stored twice";
    auto d = DecodeChunk(key, v4);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->link, c.link);
    EXPECT_EQ(d->start_ns, c.start_ns);
    EXPECT_EQ(d->seq, c.seq);
    EXPECT_EQ(d->decision, c.decision);
    EXPECT_EQ(d->committed_ns, c.committed_ns);
  }
  // A seq that is not start / duration and a commit before the chunk's end are kept as they are.
  c.seq = 7;
  c.committed_ns = c.start_ns - 123;
  auto d = DecodeChunk(key, EncodeChunk(c));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->seq, 7);
  EXPECT_EQ(d->committed_ns, c.start_ns - 123);
  // A bad decision code is a clear error naming the chunk.
  c.decision = "continue";
  c.seq = c.start_ns / c.duration_ns;
  c.committed_ns = c.end_ns();
  std::string bad = EncodeChunk(c);
  size_t at = bad.size() - 1 /*stored*/ - 1 /*commit ms*/ - 1 /*raw path*/ - 1 /*reason*/ - 1;
  ASSERT_EQ(static_cast<uint8_t>(bad[at]), 1);  // "continue"
  bad[at] = char(77);
  auto e = DecodeChunk(key, bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("decision code"), std::string::npos) << e.status();
  EXPECT_NE(e.status().message().find("lockly-hub-01@2024-01-01"), std::string::npos) << e.status();

  // Version 3 (link and seq stored, decision as text, commit in ns) still reads.
  ByteWriter w;
  auto str = [&w](const std::string& v) {
    w.Varint(v.size());
    w.Bytes(v.data(), v.size());
  };
  w.U8('C');
  w.U8(3);
  str(c.link);
  w.SignedVarint(c.start_ns);
  w.SignedVarint(c.duration_ns);
  w.SignedVarint(c.seq);
  for (uint64_t v : {0, 0, 0, 0}) w.Varint(v);
  str(c.model_id);
  w.U8(1 | 2);  // same parent, no drift
  w.U8(1);
  str("SK");
  w.Varint(2);
  str(model::CompressReport("{}"));
  str("retrain");
  str("why");
  str("");
  w.SignedVarint(987654321);
  w.Varint(55);
  auto v3 = DecodeChunk(key, w.Take());
  ASSERT_TRUE(v3.ok()) << v3.status();
  EXPECT_EQ(v3->decision, "retrain");
  EXPECT_EQ(v3->reason, "why");
  EXPECT_EQ(v3->committed_ns, 987654321);
  EXPECT_EQ(v3->stored_bytes, 55u);
  EXPECT_EQ(v3->link, c.link);
}

ChunkRecord QuietChunk(int64_t start_ns) {
  ChunkRecord c;
  c.link = "tap0";
  c.start_ns = start_ns;
  c.duration_ns = 3600LL * 1000000000;
  c.seq = start_ns / c.duration_ns;
  c.packets = 185;
  c.bytes = 11704;
  c.flows = 41;
  c.raw_bytes = 14087;
  c.model_id = "base-8521dabfe651c68e";
  c.parent_id = c.model_id;
  c.skeleton = "DGCS-plain-skeleton-bytes";
  c.report_json = R"({"bytes":11704,"fidelity_mean":0.371,"flows":41,"packets":185,"raw_bytes":14087,"shared":true})";
  c.decision = "continue";
  c.committed_ns = c.end_ns() + 5000000;
  c.stored_bytes = 300;
  return c;
}

TEST(LibraryRecordsTest, AStubNamesItsPackAndAMemberIsTheWholeRecord) {
  const int64_t day = 1614988800LL * 1000000000;  // 2021-03-06T00:00:00Z
  ChunkRecord c = QuietChunk(day + 5 * 3600LL * 1000000000);
  const std::string key = ChunkKey(c.link, c.start_ns);
  ChunkRecord stub = c;
  stub.in_pack = true;
  stub.pack_start_ns = day;
  const std::string sv = EncodeChunk(stub);
  EXPECT_LE(sv.size(), 8u) << "a stub is the tag, version, flags, key check and the offset";
  auto ds = DecodeChunk(key, sv);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE(ds->in_pack);
  EXPECT_EQ(ds->pack_start_ns, day);
  EXPECT_EQ(ds->start_ns, c.start_ns);
  EXPECT_TRUE(ds->model_id.empty()) << "the stub holds no record fields";
  // Under another key the key check catches it.
  EXPECT_EQ(DecodeChunk(ChunkKey("tap0", c.start_ns + 1), sv).status().code(), absl::StatusCode::kDataLoss);

  const std::string mv = EncodePackMember(c);
  EXPECT_GT(mv.size(), EncodeChunk(c).size() - 10) << "a member's report is not compressed on its own";
  auto dm = DecodeChunk(key, mv);
  ASSERT_TRUE(dm.ok()) << dm.status();
  EXPECT_FALSE(dm->in_pack);
  EXPECT_EQ(dm->report_json, c.report_json);
  EXPECT_EQ(dm->skeleton, c.skeleton);
  EXPECT_EQ(dm->model_id, c.model_id);
  EXPECT_EQ(dm->stored_bytes, c.stored_bytes);
  EXPECT_EQ(dm->committed_ns, c.committed_ns);
}

TEST(LibraryRecordsTest, PacksRoundTripAndEveryDamageIsAClearError) {
  const int64_t day = 1614988800LL * 1000000000;
  std::vector<PackMember> members;
  size_t one_by_one = 0;
  for (int h = 0; h < 24; ++h) {
    ChunkRecord c = QuietChunk(day + h * 3600LL * 1000000000);
    members.push_back({c.start_ns, EncodePackMember(c), h % 3 ? std::string("fingerprint-") + char('a' + h) : ""});
    one_by_one += EncodeChunk(c).size();
  }
  const std::string key = ChunkKey("tap0", day);
  const std::string pack = EncodePack(members, day);
  EXPECT_LT(pack.size() * 3, one_by_one) << "24 like records pack to well under a third of their own encodings";
  auto back = DecodePack(key, pack);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    EXPECT_EQ((*back)[i].start_ns, members[i].start_ns);
    EXPECT_EQ((*back)[i].record, members[i].record);
    EXPECT_EQ((*back)[i].fingerprint, members[i].fingerprint);
  }
  // Every truncation and every flipped byte: an error naming the pack, never a crash.
  for (size_t n = 0; n < pack.size(); ++n) {
    auto t = DecodePack(key, pack.substr(0, n));
    ASSERT_FALSE(t.ok()) << n;
    EXPECT_NE(std::string(t.status().message()).find("tap0@2021-03-06T00:00:00Z"), std::string::npos) << t.status();
  }
  for (size_t i = 0; i < pack.size(); ++i) {
    std::string bad = pack;
    bad[i] ^= 0x10;
    auto t = DecodePack(key, bad);
    // A flip zstd's frame does not depend on (a header bit) may still give
    // the same members: the checksum over them then holds. Anything else fails.
    if (t.ok()) {
      ASSERT_EQ(t->size(), members.size()) << "flipped byte " << i;
      for (size_t m = 0; m < members.size(); ++m) EXPECT_EQ((*t)[m].record, members[m].record) << i;
    }
  }
  // Members out of order are refused.
  std::vector<PackMember> swapped = {members[1], members[0]};
  EXPECT_EQ(DecodePack(key, EncodePack(swapped, day)).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace dgc::library

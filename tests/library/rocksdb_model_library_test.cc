// RocksDbModelLibrary against a real RocksDB in a temp dir.
#include "library/rocksdb_model_library.h"

#include "library/compression_policy.h"

#include <fcntl.h>
#include <rocksdb/db.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "library/compression_policy.h"
#include "library/model_library.h"
#include "library/pack_pricer.h"
#include "absl/strings/str_format.h"
#include "common/base/time.h"
#include "common/model/skeleton.h"
#include "gtest/gtest.h"
#include "tests/library/chain_fixture.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using library::ModelKind;
using testing::ChainChunk;
using testing::ChainModelId;
using testing::kChainChunkNs;
using testing::kChainT0;

class RocksDbModelLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    lib_.reset();
    RocksDbModelLibrary::Options o;
    o.sync = false;
    o.clock = [this] { return now_; };
    auto l = RocksDbModelLibrary::Open(dir(), o);
    ASSERT_TRUE(l.ok()) << l.status();
    lib_ = std::move(*l);
  }
  std::string dir() const { return tmp_.File("lib"); }
  // Chunk `i` of tap0 as the policy tests commit it: on `decision`'s parent,
  // sharing it when `model` is the parent, else with a 300-byte delta that
  // introduces `model`.
  static RocksDbModelLibrary::ChunkCommit PolicyChunk(int i, const library::ParentDecision& decision,
                                                      const std::string& model, nlohmann::json report) {
    RocksDbModelLibrary::ChunkCommit c;
    model::ChunkArtifact& a = c.artifact;
    a.link = "tap0";
    a.start_ns = kChainT0 + i * kChainChunkNs;
    a.duration_ns = kChainChunkNs;
    a.skeleton = testing::Bytes(100, i);
    a.report = std::move(report);
    a.parent_id = decision.parent_id;
    a.model_id = model;
    if (model != decision.parent_id) a.delta = testing::Bytes(300, i);
    c.decision = decision;
    return c;
  }
  void Commit(int from, int to, const std::string& link = "tap0") {
    for (int i = from; i < to; ++i) {
      auto r = lib_->CommitChunk(ChainChunk(i, link));
      ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    }
  }
  // Writes raw values into a column family, bypassing the library.
  void RawPut(const std::string& cf, const std::string& key, const std::string& value, bool reopen = true) {
    lib_.reset();
    rocksdb::DBOptions o;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : RocksDbModelLibrary::ColumnFamilyNames()) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir(), cfs, &h, &db).ok());
    size_t i = std::find(RocksDbModelLibrary::ColumnFamilyNames().begin(), RocksDbModelLibrary::ColumnFamilyNames().end(), cf) -
               RocksDbModelLibrary::ColumnFamilyNames().begin();
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[i], key, value).ok());
    for (auto* x : h) db->DestroyColumnFamilyHandle(x);
    delete db;
    if (reopen) Reopen();
  }

  testing::TempDir tmp_;
  int64_t now_ = kChainT0 + 1000 * kChainChunkNs;
  std::unique_ptr<RocksDbModelLibrary> lib_;
};

TEST_F(RocksDbModelLibraryTest, RoundTripsModelsAndChunks) {
  ASSERT_TRUE(lib_->PutModel("base-x", std::string(50000, 'b')).ok());
  auto bytes = lib_->GetModel("base-x");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, std::string(50000, 'b'));
  EXPECT_TRUE(lib_->HasModel("base-x"));
  EXPECT_FALSE(lib_->HasModel("nope"));
  EXPECT_EQ(lib_->GetModel("nope").status().code(), absl::StatusCode::kNotFound);

  Commit(0, 5);
  Reopen();
  auto chunks = lib_->Chunks({});
  ASSERT_TRUE(chunks.ok()) << chunks.status();
  ASSERT_EQ(chunks->size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const auto want = ChainChunk(i).artifact;
    const auto& got = (*chunks)[i];
    EXPECT_EQ(got.start_ns, want.start_ns);
    EXPECT_EQ(got.model_id, want.model_id);
    EXPECT_EQ(got.parent_id, want.parent_id);
    EXPECT_EQ(got.skeleton, want.skeleton);
    EXPECT_EQ(got.delta, want.delta) << i;
    EXPECT_EQ(got.report, want.report);
  }
  auto rec = lib_->GetChunk("tap0", kChainT0 + 2 * kChainChunkNs);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->packets, 1002u);
  EXPECT_EQ(rec->raw_bytes, 200000u);
  EXPECT_EQ(rec->decision, "continue");
  EXPECT_GT(rec->stored_bytes, rec->skeleton.size());
  EXPECT_EQ(lib_->GetModel("tap0-1").status().code(), absl::StatusCode::kFailedPrecondition);
  auto fp = lib_->GetFingerprint("tap0", kChainT0 + 2 * kChainChunkNs);
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(fp->port, testing::ChainFingerprint(2).port);
  auto found = lib_->FindChunk("tap0@2024-01-01T00:20:00Z");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->model_id, "tap0-2");
  auto by_seq = lib_->FindChunk("tap0/" + std::to_string((kChainT0 + 3 * kChainChunkNs) / kChainChunkNs));
  ASSERT_TRUE(by_seq.ok()) << by_seq.status();
  EXPECT_EQ(by_seq->model_id, "tap0-2");  // chunk 3 is quiet: it reuses tap0-2
}

TEST_F(RocksDbModelLibraryTest, CommittingTheSameChunkTwiceIsANoOp) {
  Commit(0, 3);
  auto again = ChainChunk(2);
  again.artifact.delta = "something else";
  again.artifact.model_id = "other-id";
  auto r = lib_->CommitChunk(again);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, RocksDbModelLibrary::CommitResult::kAlreadyCommitted);
  EXPECT_FALSE(lib_->HasModel("other-id"));
  auto models = lib_->ListModels();
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->size(), 4u);  // base-0, tap0-0, tap0-1, tap0-2
  auto chunks = lib_->Chunks({});
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(chunks->size(), 3u);
  EXPECT_EQ((*chunks)[2].delta, ChainChunk(2).artifact.delta);
  // PutChunk (the ModelLibrary call) is the same no-op.
  EXPECT_TRUE(lib_->PutChunk(again.artifact).ok());
}

TEST_F(RocksDbModelLibraryTest, RefusesAChunkWhoseParentIsMissingAndWritesNothing) {
  auto c = ChainChunk(5);
  auto r = lib_->CommitChunk(c);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("tap0-4"), std::string::npos);
  auto chunks = lib_->ListChunks({});
  ASSERT_TRUE(chunks.ok());
  EXPECT_TRUE(chunks->empty());
  EXPECT_FALSE(lib_->HasModel("tap0-5"));
}

TEST_F(RocksDbModelLibraryTest, QueriesByLinkAndTimeRange) {
  Commit(0, 60, "tap0");
  Commit(0, 60, "tap1");
  Commit(0, 60, "a-first");
  auto at = [](double chunks) { return kChainT0 + static_cast<int64_t>(chunks * kChainChunkNs); };
  ChunkQuery q;
  q.link = "tap1";
  q.since_ns = at(10.5);  // inside chunk 10: it overlaps
  q.until_ns = at(20);    // chunk 20 starts at until: excluded
  auto r = lib_->ListChunks(q);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 10u);
  EXPECT_EQ(r->front().start_ns, at(10));
  EXPECT_EQ(r->back().start_ns, at(19));
  for (const auto& c : *r) EXPECT_EQ(c.link, "tap1");

  ChunkQuery all;
  all.since_ns = at(59);
  auto every = lib_->ListChunks(all);
  ASSERT_TRUE(every.ok());
  ASSERT_EQ(every->size(), 3u);  // the last chunk of each link, by link
  EXPECT_EQ((*every)[0].link, "a-first");
  EXPECT_EQ((*every)[1].link, "tap0");
  EXPECT_EQ((*every)[2].link, "tap1");

  ChunkQuery none;
  none.link = "tap0";
  none.since_ns = at(100);
  auto empty = lib_->ListChunks(none);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  ChunkQuery before;
  before.link = "tap0";
  before.until_ns = at(0);
  EXPECT_TRUE(lib_->ListChunks(before)->empty());
  // Paging: after_key, a chunk's key, lists what follows it in key order,
  // across links and within one link's range.
  ChunkQuery rest;
  rest.after_key = library::ChunkKey("tap0", at(57));
  auto tail = lib_->ListChunks(rest);
  ASSERT_TRUE(tail.ok()) << tail.status();
  ASSERT_EQ(tail->size(), 2u + 60u);  // tap0's last two, then all of tap1
  EXPECT_EQ(tail->front().link, "tap0");
  EXPECT_EQ(tail->front().start_ns, at(58));
  EXPECT_EQ(tail->back().link, "tap1");
  ChunkQuery page = q;  // tap1, chunks 10 to 19
  page.after_key = library::ChunkKey("tap1", at(14));
  auto second = lib_->ListChunks(page);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 5u);
  EXPECT_EQ(second->front().start_ns, at(15));
  page.after_key = library::ChunkKey("tap0", at(30));  // before the link: no effect
  EXPECT_EQ(lib_->ListChunks(page)->size(), 10u);
  page.after_key = library::ChunkKey("tap1", at(59));  // its last chunk: nothing after
  EXPECT_TRUE(lib_->ListChunks(page)->empty());
  auto latest = lib_->LatestChunk("tap1");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->start_ns, at(59));
  EXPECT_EQ(lib_->LatestChunk("tap9").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RocksDbModelLibraryTest, LineageWalksToTheBaseAndDown) {
  Commit(0, 25);
  auto anc = lib_->Ancestors("tap0-15");
  ASSERT_TRUE(anc.ok()) << anc.status();
  // tap0-15 -> 14 -> 13 -> 12 -> 11 -> 10 -> base-10 (chunk 10 is a retrain).
  std::vector<std::string> ids;
  for (const auto& m : *anc) ids.push_back(m.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"tap0-15", "tap0-14", "tap0-13", "tap0-12", "tap0-11", "tap0-10", "base-10"}));
  EXPECT_EQ(anc->back().kind, ModelKind::kRetrain);
  EXPECT_EQ(anc->front().depth, 6u);
  // Chunk 17 is quiet (17 % 7 == 3): tap0-16's child is tap0-18.
  auto kids = lib_->Children("tap0-16");
  ASSERT_TRUE(kids.ok());
  EXPECT_EQ(*kids, std::vector<std::string>{"tap0-18"});
  auto desc = lib_->Descendants("base-10");
  ASSERT_TRUE(desc.ok());
  EXPECT_EQ(desc->size(), 9u);  // tap0-10 .. tap0-19 less the quiet 17
  EXPECT_EQ(desc->front(), "tap0-10");
  EXPECT_EQ(lib_->Ancestors("nope").status().code(), absl::StatusCode::kNotFound);
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  EXPECT_TRUE(check->unreferenced_models.empty());
}

TEST_F(RocksDbModelLibraryTest, UpgradesAVersionZeroStore) {
  lib_.reset();
  std::filesystem::remove_all(dir());
  {
    // The schema-0 layout: models (v0 records: no depth, no source chunk),
    // chunks, meta = 0, and no lineage.
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                        {"models", {}}, {"chunks", {}}, {"meta", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir(), cfs, &h, &db).ok());
    for (int i = 0; i < 4; ++i) {
      auto c = ChainChunk(i);
      if (c.new_full_model) {
        ASSERT_TRUE(db->Put({}, h[1], c.new_full_model->id, library::EncodeModelV0ForUpgrade(*c.new_full_model)).ok());
      }
      if (!c.artifact.delta.empty()) {
        library::ModelRecord m;
        m.id = c.artifact.model_id;
        m.kind = ModelKind::kFinetune;
        m.parent_id = c.artifact.parent_id;
        m.blob = c.artifact.delta;
        ASSERT_TRUE(db->Put({}, h[1], m.id, library::EncodeModelV0ForUpgrade(m)).ok());
      }
      library::ChunkRecord r;
      r.link = "tap0";
      r.start_ns = c.artifact.start_ns;
      r.duration_ns = c.artifact.duration_ns;
      r.model_id = c.artifact.model_id;
      r.parent_id = c.artifact.parent_id;
      ASSERT_TRUE(db->Put({}, h[2], library::ChunkKey("tap0", r.start_ns), library::EncodeChunk(r)).ok());
    }
    std::string zero(4, '\0');
    ASSERT_TRUE(db->Put({}, h[3], "schema_version", zero).ok());
    for (auto* x : h) db->DestroyColumnFamilyHandle(x);
    delete db;
  }
  {
    // A reader (generate, stats, check open read-only) gets the old store
    // upgraded first: the missing column families and the new records.
    RocksDbModelLibrary::Options ro;
    ro.read_only = true;
    auto r = RocksDbModelLibrary::Open(dir(), ro);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->schema_version(), library::kSchemaVersion);
    EXPECT_EQ((*r)->ListChunks({})->size(), 4u);
    EXPECT_EQ((*r)->PutJob({"job-1", 1, "x"}).code(), absl::StatusCode::kFailedPrecondition) << "read-only";
  }
  Reopen();
  EXPECT_EQ(lib_->schema_version(), library::kSchemaVersion);
  auto anc = lib_->Ancestors("tap0-2");
  ASSERT_TRUE(anc.ok()) << anc.status();
  EXPECT_EQ(anc->size(), 4u);
  EXPECT_EQ(anc->front().depth, 3u);
  EXPECT_EQ(anc->front().source_chunk, library::ChunkKey("tap0", kChainT0 + 2 * kChainChunkNs));
  auto kids = lib_->Children("tap0-1");
  ASSERT_TRUE(kids.ok());
  EXPECT_EQ(*kids, std::vector<std::string>{"tap0-2"});
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  // And it stays upgraded.
  Reopen();
  EXPECT_EQ(lib_->schema_version(), library::kSchemaVersion);
}

TEST_F(RocksDbModelLibraryTest, RefusesANewerSchema) {
  std::string v(4, '\0');
  v[0] = 99;
  RawPut("meta", "schema_version", v, /*reopen=*/false);
  auto r = RocksDbModelLibrary::Open(dir());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST_F(RocksDbModelLibraryTest, CorruptValuesAreClearErrorsNotCrashes) {
  Commit(0, 3);
  RawPut("chunks", library::ChunkKey("tap0", kChainT0 + kChainChunkNs), "\x43\x01garbage");
  auto chunks = lib_->Chunks({});
  ASSERT_FALSE(chunks.ok());
  EXPECT_EQ(chunks.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(chunks.status().message().find("tap0@2024-01-01T00:10:00Z"), std::string::npos) << chunks.status();
  RawPut("models", "tap0-0", "nonsense");
  auto m = lib_->GetModelRecord("tap0-0");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(m.status().message().find("tap0-0"), std::string::npos) << m.status();
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_GE(check->problems.size(), 2u);
}

TEST_F(RocksDbModelLibraryTest, ExpireKeepsTheNewestChunkAndModelsKeptChunksBuildOn) {
  Commit(0, 25, "tap0");
  Commit(0, 2, "tap1");
  auto before = lib_->GetDetailedUsage();
  ASSERT_TRUE(before.ok());
  RocksDbModelLibrary::ExpireOptions o;
  o.max_age_ns = 1;  // everything is old
  o.dry_run = true;
  auto dry = lib_->Expire(o);
  ASSERT_TRUE(dry.ok()) << dry.status();
  EXPECT_EQ(lib_->ListChunks({})->size(), 27u) << "a dry run changes nothing";
  o.dry_run = false;
  auto rep = lib_->Expire(o);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->items.size(), dry->items.size());
  auto left = lib_->ListChunks({});
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 2u);  // the newest of each link
  EXPECT_EQ((*left)[0].start_ns, kChainT0 + 24 * kChainChunkNs);
  // Chunk 24 is quiet: it uses tap0-23, whose chain (23..20, base-20) stays.
  for (const char* id : {"tap0-23", "tap0-22", "tap0-20", "base-20"}) EXPECT_TRUE(lib_->HasModel(id)) << id;
  for (const char* id : {"tap0-19", "tap0-5", "base-10"}) EXPECT_FALSE(lib_->HasModel(id)) << id;
  auto a = lib_->Chunks({});
  ASSERT_TRUE(a.ok()) << a.status();
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  EXPECT_TRUE(check->unreferenced_models.empty());
  auto after = lib_->GetDetailedUsage();
  EXPECT_LT(after->TotalBytes(), before->TotalBytes());
}

// Retention as a plan and its application: the plan is what a dry run
// prints; applying it does exactly that; a plan made before a commit is
// refused (the new chunk could build on a model it removes) and changes
// nothing.
TEST_F(RocksDbModelLibraryTest, ExpirePlanIsAppliedAsPlannedOrRefusedWhenStale) {
  Commit(0, 12);
  RocksDbModelLibrary::ExpireOptions o;
  o.max_age_ns = 1;
  auto plan = lib_->PlanExpire(o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->chunk_keys.size(), 11u);  // all but the newest
  EXPECT_FALSE(plan->models.empty());
  EXPECT_EQ(lib_->ListChunks({})->size(), 12u) << "planning changes nothing";
  o.dry_run = true;
  auto dry = lib_->Expire(o);
  ASSERT_TRUE(dry.ok());
  ASSERT_EQ(dry->items.size(), plan->report.items.size());
  for (size_t i = 0; i < dry->items.size(); ++i) EXPECT_EQ(dry->items[i].name, plan->report.items[i].name);

  Commit(12, 13);
  auto stale = lib_->ApplyExpire(*plan);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_NE(std::string(stale.status().message()).find("plan again"), std::string::npos);
  EXPECT_EQ(lib_->ListChunks({})->size(), 13u) << "a stale plan changes nothing";

  auto fresh = lib_->PlanExpire(o);
  ASSERT_TRUE(fresh.ok());
  auto rep = lib_->ApplyExpire(*fresh);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->items.size(), fresh->report.items.size());
  EXPECT_EQ(lib_->ListChunks({})->size(), 1u);
  for (const auto& m : fresh->models) EXPECT_FALSE(lib_->HasModel(m.id)) << m.id;
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty());
  EXPECT_TRUE(check->unreferenced_models.empty());
  EXPECT_EQ(lib_->ApplyExpire(*fresh).status().code(), absl::StatusCode::kFailedPrecondition)
      << "a plan is applied once";
}

// Flips one byte of `value`'s first copy in the library's blob files;
// false when no blob file holds it.
bool FlipByteOfBlob(const std::string& dir, const std::string& value) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".blob") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t at = bytes.find(value.substr(0, 256));
    if (at == std::string::npos) continue;
    std::fstream f(e.path(), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(at + 100));
    f.put(static_cast<char>(bytes[at + 100] ^ 0x5a));
    return static_cast<bool>(f);
  }
  return false;
}

// A flipped byte in a blob file: the check names each damaged record and
// every chunk that builds on a damaged model; a read of a range with a
// damaged chunk names it, or lists it and goes on past it.
TEST_F(RocksDbModelLibraryTest, DamagedRecordsAreNamedByCheckAndByReads) {
  Commit(0, 12);
  auto big = ChainChunk(12);
  big.artifact.skeleton = testing::Bytes(6000, 4242);  // over min_blob_size: kept in a blob file
  ASSERT_TRUE(lib_->CommitChunk(big).ok());
  Commit(13, 14);
  ASSERT_TRUE(lib_->Flush().ok());
  lib_.reset();
  ASSERT_TRUE(FlipByteOfBlob(dir(), testing::Bytes(20000, 10)));  // base-10's checkpoint
  ASSERT_TRUE(FlipByteOfBlob(dir(), testing::Bytes(6000, 4242)));  // chunk 12's skeleton
  Reopen();

  auto check = lib_->Check();
  ASSERT_TRUE(check.ok()) << check.status();
  std::set<std::string> damaged;
  for (const auto& d : check->damaged) {
    damaged.insert(d.kind + " " + d.name);
    EXPECT_NE(d.error.find("Corruption"), std::string::npos) << d.error;
  }
  const std::string chunk12 = "tap0@" + FormatRfc3339(kChainT0 + 12 * kChainChunkNs);
  EXPECT_EQ(damaged, (std::set<std::string>{"model " + testing::ChainBaseId(10), "chunk " + chunk12}));
  EXPECT_EQ(check->chunks, 14u);
  int on_damaged = 0;
  for (const auto& p : check->problems) {
    if (p.find("builds on damaged model " + testing::ChainBaseId(10)) != std::string::npos) ++on_damaged;
  }
  EXPECT_EQ(on_damaged, 3) << "chunks 10, 11 and 13 build on base-10";  // 12 is damaged itself
  EXPECT_TRUE(check->unreferenced_models.empty());

  auto all = lib_->ListChunks({});
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(all.status().message()).find("chunk " + chunk12 + " in "), std::string::npos)
      << all.status();
  std::vector<RocksDbModelLibrary::DamagedRecord> skipped;
  auto rest = lib_->ListChunks({}, &skipped);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->size(), 13u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].name, chunk12);
  EXPECT_EQ(rest->back().start_ns, kChainT0 + 13 * kChainChunkNs) << "the walk goes on past the damaged chunk";
  auto before = lib_->ListChunks({"tap0", kChainT0, kChainT0 + 12 * kChainChunkNs});
  EXPECT_TRUE(before.ok()) << "a range without the damaged chunk reads: " << before.status();

  auto base = lib_->GetModelRecord(testing::ChainBaseId(10));
  EXPECT_EQ(base.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(base.status().message()).find("model " + testing::ChainBaseId(10) + " in "),
            std::string::npos)
      << base.status();
}

TEST_F(RocksDbModelLibraryTest, ExpireBySizeStopsAtTheGoalOrSaysWhy) {
  Commit(0, 40);
  auto u = lib_->GetDetailedUsage();
  ASSERT_TRUE(u.ok());
  RocksDbModelLibrary::ExpireOptions o;
  o.max_bytes = u->TotalBytes() * 6 / 10;
  auto rep = lib_->Expire(o);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_TRUE(rep->size_goal_met) << rep->note;
  EXPECT_LE(rep->bytes_after, o.max_bytes);
  auto left = lib_->ListChunks({});
  EXPECT_GT(left->size(), 5u);
  EXPECT_LT(left->size(), 40u);
  o.max_bytes = 1;
  auto tiny = lib_->Expire(o);
  ASSERT_TRUE(tiny.ok());
  EXPECT_FALSE(tiny->size_goal_met);
  EXPECT_NE(tiny->note.find("newest chunk"), std::string::npos) << tiny->note;
  EXPECT_EQ(lib_->ListChunks({})->size(), 1u);
}

TEST_F(RocksDbModelLibraryTest, ExpireToleratesRawFilesDeletedBySomeoneElse) {
  Commit(0, 1);
  std::string kept_raw = tmp_.File("raw-1.dgcc"), gone_raw = tmp_.File("raw-2.dgcc");
  std::ofstream(kept_raw) << "raw";
  for (int i : {1, 2}) {
    auto c = ChainChunk(i);
    c.raw_path = i == 1 ? kept_raw : gone_raw;
    ASSERT_TRUE(lib_->CommitChunk(c).ok());
  }
  Commit(3, 5);
  RocksDbModelLibrary::ExpireOptions o;
  o.max_age_ns = 1;
  auto rep = lib_->Expire(o);
  ASSERT_TRUE(rep.ok()) << rep.status();
  ASSERT_EQ(rep->warnings.size(), 1u);
  EXPECT_NE(rep->warnings[0].find(gone_raw), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(kept_raw));
}

TEST_F(RocksDbModelLibraryTest, SelectsParentsFromFingerprints) {
  Commit(0, 5);
  auto same = lib_->SelectParent("tap0", testing::ChainFingerprint(4), library::ParentSelector());
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->kind, library::ParentDecision::Kind::kContinue) << same->reason;
  EXPECT_EQ(same->parent_id, "tap0-4");
  library::Fingerprint other;
  other.proto = {0, 0, 0, 0, 500};
  other.port[15] = 500;
  other.size[11] = 500;
  other.rate[9] = 600;
  other.flow[11] = 3;
  other.packets = 500;
  auto far = lib_->SelectParent("tap0", other, library::ParentSelector());
  ASSERT_TRUE(far.ok());
  EXPECT_EQ(far->kind, library::ParentDecision::Kind::kRetrain) << far->reason;
  auto none = lib_->SelectParent("tap9", other, library::ParentSelector());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->kind, library::ParentDecision::Kind::kRetrain);
}

// Two traffic regimes as fingerprints: normal (MQTT over TCP at a few
// packets a second) and a DNS retry storm (small UDP queries at 150/s).
library::Fingerprint NormalFingerprint(int i) {
  library::Fingerprint f;
  f.proto = {uint32_t(3500 + 13 * i), uint32_t(1400 + 7 * i), 0, 0, 0};
  f.port[6] = 3500 + 13 * i;
  f.port[0] = 1000 + 5 * i;
  f.port[3] = 400 + 2 * i;
  f.size[3] = 2000;
  f.size[4] = 2900 + 20 * i;
  f.rate[3] = 500 + i;
  f.rate[4] = 100 - i;
  f.flow[2] = 40;
  f.flow[5] = 30 + i;
  f.packets = 4900 + 20 * i;
  f.flows = 70 + i;
  return f;
}
library::Fingerprint StormFingerprint(int i) {
  library::Fingerprint f = NormalFingerprint(i);
  f.proto[1] += 90000;
  f.port[0] += 90000;
  f.size[2] += 90000;
  f.rate = {};
  f.rate[7] = 600;
  f.flow[0] += 90000;
  f.packets += 90000;
  f.flows += 90000;
  return f;
}

TEST_F(RocksDbModelLibraryTest, SwitchesBackToTheEarlierBaseAfterAShortEpisode) {
  // A link's chunks as `dgcctl compress` commits them: chunk 0 trains the
  // base; normal chunks continue it (some with a delta); a storm retrains;
  // the storm's chunks fine-tune the retrain, pushing the base's models out
  // of the `recent_models` window (2 here; 16 by default takes a longer
  // episode); then normal traffic returns and must switch back to the base.
  library::ParentSelector::Options so;
  so.recent_models = 2;
  library::ParentSelector sel(so);
  std::string latest_model;
  auto commit = [&](int i, const library::Fingerprint& fp, const library::ParentDecision& d, bool delta,
                    std::optional<library::ModelRecord> full) {
    auto c = PolicyChunk(i, d, delta ? absl::StrCat("tap0-", i) : d.parent_id,
                         {{"packets", fp.packets}, {"flows", fp.flows}});
    c.fingerprint = fp;
    c.new_full_model = std::move(full);
    auto r = lib_->CommitChunk(c);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    latest_model = c.artifact.model_id;
  };
  auto full = [](const std::string& id, ModelKind kind, const library::Fingerprint& fp) {
    library::ModelRecord m;
    m.id = id;
    m.kind = kind;
    m.blob = testing::Bytes(5000, 1);
    m.fingerprint = fp.Encode();
    return m;
  };
  using K = library::ParentDecision::Kind;
  library::ParentDecision first;
  first.kind = K::kRetrain;
  first.parent_id = "base-1";
  commit(0, NormalFingerprint(0), first, false, full("base-1", ModelKind::kBase, NormalFingerprint(0)));
  for (int i = 1; i < 6; ++i) {
    auto d = lib_->SelectParent("tap0", NormalFingerprint(i), sel);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->kind, K::kContinue) << i << ": " << d->reason;
    EXPECT_EQ(d->parent_id, latest_model);
    commit(i, NormalFingerprint(i), *d, i % 2 == 0, std::nullopt);
  }
  auto storm = lib_->SelectParent("tap0", StormFingerprint(6), sel);
  ASSERT_TRUE(storm.ok());
  ASSERT_EQ(storm->kind, K::kRetrain) << storm->reason;
  library::ParentDecision retrain = *storm;
  retrain.parent_id = "tap0-6-retrain";
  commit(6, StormFingerprint(6), retrain, false, full("tap0-6-retrain", ModelKind::kRetrain, StormFingerprint(6)));
  for (int i = 7; i < 10; ++i) {
    auto d = lib_->SelectParent("tap0", StormFingerprint(i), sel);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->kind, K::kContinue) << i << ": " << d->reason;
    commit(i, StormFingerprint(i), *d, true, std::nullopt);
  }
  auto cands = lib_->ParentCandidates("tap0", so.recent_models, so.previous_full_models);
  ASSERT_TRUE(cands.ok()) << cands.status();
  ASSERT_TRUE(cands->base.has_value());
  EXPECT_EQ(cands->base->model_id, "tap0-6-retrain");
  ASSERT_EQ(cands->previous_full.size(), 1u);
  EXPECT_EQ(cands->previous_full[0].model_id, "base-1");

  auto back = lib_->SelectParent("tap0", NormalFingerprint(10), sel);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->kind, K::kSwitch) << back->reason;
  EXPECT_EQ(back->parent_id, "base-1");
  commit(10, NormalFingerprint(10), *back, true, std::nullopt);
  // Normal traffic goes on from there; the base is the root again.
  auto next = lib_->SelectParent("tap0", NormalFingerprint(11), sel);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->kind, K::kContinue) << next->reason;
  EXPECT_EQ(next->parent_id, "tap0-10");
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty());
}

// The policy both compress paths run (library/compression_policy.h): the
// first chunk, continue on noise, a retrain by drift on enough flows, and the
// same drift on a handful of flows deferred.
TEST_F(RocksDbModelLibraryTest, CompressionPolicyPlansEveryCaseFromTheLibrary) {
  using K = library::ParentDecision::Kind;
  using T = library::ParentDecision::Trigger;
  library::PolicyOptions po;
  po.min_flows = 4096;
  po.warmup_flows = 200000;
  po.recent_chunks = 3;
  library::CompressionPolicy policy(lib_.get(), po);

  auto first = policy.Plan("tap0", NormalFingerprint(0), "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->decision.kind, K::kRetrain);
  EXPECT_EQ(first->decision.trigger, T::kNoModel);
  auto with_base = policy.Plan("tap0", NormalFingerprint(0), "base-w");
  ASSERT_TRUE(with_base.ok());
  EXPECT_EQ(with_base->decision.kind, K::kBase);
  EXPECT_EQ(with_base->decision.parent_id, "base-w");

  std::string latest_model;
  auto commit = [&](int i, const library::Fingerprint& fp, const library::ParentDecision& d,
                    std::optional<library::ModelRecord> full) {
    auto c = PolicyChunk(i, d, d.parent_id, {{"packets", fp.packets}, {"flows", fp.flows}});
    c.fingerprint = fp;
    c.new_full_model = std::move(full);
    auto r = lib_->CommitChunk(c);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    latest_model = c.artifact.model_id;
  };
  library::ModelRecord base;
  base.id = "base-1";
  base.kind = ModelKind::kBase;
  base.blob = testing::Bytes(5000, 1);
  base.fingerprint = NormalFingerprint(0).Encode();
  library::ParentDecision d0 = first->decision;
  d0.parent_id = "base-1";
  commit(0, NormalFingerprint(0), d0, base);
  for (int i = 1; i < 5; ++i) {
    auto p = policy.Plan("tap0", NormalFingerprint(i), "");
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->decision.kind, K::kContinue) << i << ": " << p->decision.reason;
    EXPECT_EQ(p->decision.parent_id, latest_model);
    commit(i, NormalFingerprint(i), p->decision, std::nullopt);
  }
  auto recent = policy.Recent("tap0");
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(recent->size(), 3u);  // recent_chunks
  EXPECT_EQ((*recent)[0].start_ns, kChainT0 + 4 * kChainChunkNs);  // newest first
  EXPECT_EQ((*recent)[2].start_ns, kChainT0 + 2 * kChainChunkNs);

  // A storm of 90k flows: retrain by drift, on the storm alone (the normal
  // chunks are too far to train with it).
  auto storm = policy.Plan("tap0", StormFingerprint(5), "");
  ASSERT_TRUE(storm.ok());
  EXPECT_EQ(storm->decision.kind, K::kRetrain) << storm->decision.reason;
  EXPECT_EQ(storm->decision.trigger, T::kDrift);
  EXPECT_FALSE(storm->deferred);
  EXPECT_TRUE(storm->retrain_with.empty());
  EXPECT_EQ(storm->retrain_flows, StormFingerprint(5).flows);
  EXPECT_TRUE(storm->decision.parent_id.empty());

  // The same kind of change on 3 flows: deferred, the link continues.
  library::Fingerprint small;
  small.proto = {0, 0, 0, 0, 500};
  small.port[15] = 500;
  small.size[11] = 500;
  small.rate[9] = 600;
  small.flow[11] = 3;
  small.packets = 500;
  small.flows = 3;
  auto deferred = policy.Plan("tap0", small, "");
  ASSERT_TRUE(deferred.ok());
  EXPECT_TRUE(deferred->deferred);
  EXPECT_EQ(deferred->decision.kind, K::kContinue);
  EXPECT_EQ(deferred->decision.trigger, T::kDrift);
  EXPECT_EQ(deferred->decision.parent_id, latest_model);
  EXPECT_GT(deferred->decision.drift, 0.35);
  EXPECT_NE(deferred->decision.reason.find("deferred"), std::string::npos) << deferred->decision.reason;

}

// The pool a continuing chunk fine-tunes with (what the coordinator sends a
// worker): the link's newest chunks that shared the parent without training,
// back to one that trained (a delta of its own, a retrain) or that switched to
// the parent; never a chunk of another model.
TEST_F(RocksDbModelLibraryTest, PooledIsTheRunOfSharedChunksSinceTheParentLastTrained) {
  using K = library::ParentDecision::Kind;
  library::CompressionPolicy policy(lib_.get(), library::PolicyOptions{});
  auto commit = [&](int i, K kind, const std::string& parent, const std::string& model, bool shared,
                    std::optional<library::ModelRecord> full = std::nullopt) {
    library::ParentDecision d;
    d.kind = kind;
    d.parent_id = parent;
    nlohmann::json report = {{"flows", 10}};
    if (shared) report["shared"] = true;
    auto c = PolicyChunk(i, d, model, std::move(report));
    c.new_full_model = std::move(full);
    auto r = lib_->CommitChunk(c);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
  };
  auto pooled = [&](const std::string& parent, size_t max = 256) {
    std::vector<int> seqs;
    auto p = policy.Pooled("tap0", parent, max);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) {
      for (const auto& c : *p) seqs.push_back(static_cast<int>((c.start_ns - kChainT0) / kChainChunkNs));
    }
    return seqs;
  };
  library::ModelRecord base;
  base.id = "base-1";
  base.kind = ModelKind::kBase;
  base.blob = testing::Bytes(5000, 1);
  commit(0, K::kRetrain, "base-1", "base-1", false, base);
  EXPECT_TRUE(pooled("base-1").empty());  // the retrain trained on chunk 0
  commit(1, K::kContinue, "base-1", "base-1", true);
  commit(2, K::kContinue, "base-1", "base-1", true);
  EXPECT_EQ(pooled("base-1"), (std::vector<int>{2, 1}));  // newest first, back to the retrain
  EXPECT_EQ(pooled("base-1", 1), (std::vector<int>{2}));
  EXPECT_TRUE(pooled("other").empty());
  commit(3, K::kContinue, "base-1", "ft-3", false);  // fine-tuned on 1..3: the pool is spent
  EXPECT_TRUE(pooled("base-1").empty());
  EXPECT_TRUE(pooled("ft-3").empty());
  commit(4, K::kSwitch, "base-1", "base-1", true);  // back to base-1: a new run starts here
  commit(5, K::kContinue, "base-1", "base-1", true);
  EXPECT_EQ(pooled("base-1"), (std::vector<int>{5, 4}));
  // A chunk that fine-tuned but whose delta was dropped shares the parent
  // without "shared": its flows are in the parent's training already.
  commit(6, K::kContinue, "base-1", "base-1", false);
  EXPECT_TRUE(pooled("base-1").empty());
}


// Fine-tunes of a parent that keep being dropped for gaining too little stop
// being tried, until futile_retry_after chunks have skipped; the evidence is
// the parent's own run (a kept delta, a retrain or another parent ends it),
// and a delta dropped for the budget is no evidence.
TEST_F(RocksDbModelLibraryTest, FutileFinetuneSkipsAParentWhoseDeltasKeepBeingDropped) {
  using K = library::ParentDecision::Kind;
  library::PolicyOptions po;
  po.futile_after = 2;
  po.futile_retry_after = 3;
  library::CompressionPolicy policy(lib_.get(), po);
  int seq = 0;
  auto commit = [&](K kind, const std::string& model, nlohmann::json report,
                    std::optional<library::ModelRecord> full = std::nullopt) {
    library::ParentDecision d;
    d.kind = kind;
    d.parent_id = "base-1";
    report["flows"] = 10;
    auto c = PolicyChunk(seq++, d, model, std::move(report));
    c.new_full_model = std::move(full);
    auto r = lib_->CommitChunk(c);
    ASSERT_TRUE(r.ok()) << seq << ": " << r.status();
  };
  auto futile = [&](const std::string& parent) {
    auto f = policy.FutileFinetune("tap0", parent);
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() ? *f : std::string("error");
  };
  const nlohmann::json dropped = {{"delta_dropped", "gain 0.003 below min_delta_gain 0.010"}};
  const nlohmann::json skipped = {{"finetune_skipped", "..."}};
  library::ModelRecord base;
  base.id = "base-1";
  base.kind = ModelKind::kBase;
  base.blob = testing::Bytes(5000, 1);
  commit(K::kRetrain, "base-1", {{"shared", true}}, base);
  EXPECT_EQ(futile("base-1"), "");  // no evidence
  commit(K::kContinue, "base-1", dropped);
  EXPECT_EQ(futile("base-1"), "");  // one drop is not enough
  commit(K::kContinue, "base-1", {{"shared", true}});  // a quiet chunk in between is no evidence either way
  commit(K::kContinue, "base-1", {{"delta_dropped", "40000 B delta over the 30000 B budget"}});
  EXPECT_EQ(futile("base-1"), "");  // dropped for the budget, not for its gain
  commit(K::kContinue, "base-1", dropped);
  const std::string why = futile("base-1");
  EXPECT_NE(why.find("the last 2 fine-tunes of base-1"), std::string::npos) << why;
  EXPECT_EQ(futile("other"), "");
  commit(K::kContinue, "base-1", skipped);
  commit(K::kContinue, "base-1", skipped);
  EXPECT_NE(futile("base-1"), "");  // 2 skipped since the last try
  commit(K::kContinue, "base-1", skipped);
  EXPECT_EQ(futile("base-1"), "");  // 3 skipped: try once more
  commit(K::kContinue, "base-1", dropped);
  EXPECT_NE(futile("base-1"), "");  // dropped again: skip again
  commit(K::kContinue, "ft-9", {{"attempts", nlohmann::json::array()}});  // a delta kept: a new parent
  EXPECT_EQ(futile("ft-9"), "");
  EXPECT_EQ(futile("base-1"), "");  // the newest chunk is not base-1's any more

  library::PolicyOptions off = po;
  off.futile_after = 0;
  EXPECT_EQ(*library::CompressionPolicy(lib_.get(), off).FutileFinetune("tap0", "ft-9"), "");
}

// A quiet hour as compress commits it: a real skeleton (a few busy bins,
// per-minute windows), a report, a fingerprint, all on one base.
RocksDbModelLibrary::ChunkCommit QuietHour(int h) {
  RocksDbModelLibrary::ChunkCommit c;
  model::ChunkArtifact& a = c.artifact;
  a.link = "tap0";
  a.duration_ns = 3600LL * 1000000000;
  a.start_ns = kChainT0 + h * a.duration_ns;
  model::Skeleton sk;
  sk.start_ns = a.start_ns;
  sk.duration_ns = a.duration_ns;
  sk.bin_ns = 1000000000;
  sk.new_flows.assign(3600, 0);
  sk.packets.assign(3600, 0);
  sk.bytes.assign(3600, 0);
  for (int t = h % 7; t < 3600; t += 30) {  // a heartbeat every 30 s
    sk.new_flows[t] = 1;
    sk.packets[t] = 2;
    sk.bytes[t] = 120 + (t / 30) % 3;
  }
  sk.window_ns = 60LL * 1000000000;
  sk.windows.assign(60, model::WindowStats{2, 2, 2, 2});
  sk.total = {2, 3, 3, 40};
  a.skeleton = sk.Encode();
  a.report = {{"packets", 240}, {"bytes", 14520}, {"flows", 120}, {"raw_bytes", 20000},
              {"fidelity_mean", 0.1 + h * 0.001}, {"shared", true}};
  a.parent_id = "base-q";
  a.model_id = "base-q";
  if (h == 0) {
    library::ModelRecord base;
    base.id = "base-q";
    base.kind = library::ModelKind::kBase;
    base.blob = testing::Bytes(5000, 1);
    c.new_full_model = base;
  }
  c.fingerprint = testing::ChainFingerprint(h);
  return c;
}

// The packed pricing both compress paths use: a span's first record is
// unpriced, later ones at a cost below 1 measured on the records before
// them, a new span starts over; and the state rebuilt from the library
// (the coordinator after a restart) prices exactly as the notes taken at
// each commit did.
TEST_F(RocksDbModelLibraryTest, PackPricerPricesASpanFromItsRecordsAndLoadsTheSameFromTheLibrary) {
  const int64_t hour = 3600LL * 1000000000;
  const int64_t day = 24 * hour;
  library::PackPricer noted(day);
  for (int h = 0; h < 30; ++h) {
    const int64_t start = kChainT0 + h * hour;
    auto loaded = library::PackPricer::Load(*lib_, "tap0", start, day);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->PackedCost(start), noted.PackedCost(start)) << h;
    EXPECT_EQ(loaded->metadata_bytes(), noted.metadata_bytes()) << h;
    if (FloorTo(start, day) == start) {
      EXPECT_EQ(noted.PackedCost(start), 0.0) << "the first chunk of a day is unpriced: " << h;
    } else if (h > 0) {
      EXPECT_GT(noted.PackedCost(start), 0.0) << h;
      EXPECT_LE(noted.PackedCost(start), 1.0) << h;
      if (h % 24 >= 8) {
        EXPECT_LT(noted.PackedCost(start), 0.8) << "eight quiet records pack well: " << h;
      }
    }
    auto c = QuietHour(h);
    ASSERT_TRUE(lib_->CommitChunk(c).ok()) << h;
    auto rec = lib_->GetChunk("tap0", start);
    ASSERT_TRUE(rec.ok());
    auto fp = lib_->GetFingerprint("tap0", start);
    noted.Note(*rec, fp.ok() ? fp->Encode() : std::string());
    EXPECT_GT(noted.metadata_bytes(), 0);
  }
  library::PackPricer unpacked(0);  // no packing: metadata only
  auto rec = lib_->GetChunk("tap0", kChainT0);
  ASSERT_TRUE(rec.ok());
  unpacked.Note(*rec, "");
  EXPECT_EQ(unpacked.PackedCost(kChainT0 + hour), 0.0);
  EXPECT_GT(unpacked.metadata_bytes(), 0);
}

TEST_F(RocksDbModelLibraryTest, PacksClosedDaysOfQuietChunksAndEveryReaderReadsThroughThem) {
  const int64_t hour = 3600LL * 1000000000;
  for (int h = 0; h < 60; ++h) ASSERT_TRUE(lib_->CommitChunk(QuietHour(h)).ok()) << h;
  auto before = lib_->ListChunks({});
  ASSERT_TRUE(before.ok()) << before.status();
  auto usage_before = lib_->GetDetailedUsage();
  ASSERT_TRUE(usage_before.ok());

  RocksDbModelLibrary::PackOptions po;
  po.span_ns = 24 * hour;              // UTC days
  po.until_ns = kChainT0 + 48 * hour;  // two closed days; the third is open
  auto rep = lib_->PackChunks("tap0", po);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->packs, 2u);
  EXPECT_EQ(rep->chunks, 48u);
  EXPECT_LT(rep->bytes_after * 2, rep->bytes_before) << rep->bytes_before << " -> " << rep->bytes_after;
  auto usage = lib_->GetDetailedUsage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->packs, 2u);
  EXPECT_EQ(usage->packed_chunks, 48u);
  EXPECT_EQ(usage_before->ChunkBytes() - usage->ChunkBytes(), rep->bytes_before - rep->bytes_after)
      << "the storage report sees exactly what packing saved";

  Reopen();  // what is read next is what was written
  auto after = lib_->ListChunks({});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), before->size());
  uint64_t stored = 0;
  for (size_t i = 0; i < after->size(); ++i) {
    const auto& b = (*before)[i];
    const auto& a = (*after)[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(a.in_pack, i < 48);
    EXPECT_EQ(a.start_ns, b.start_ns);
    EXPECT_EQ(a.model_id, b.model_id);
    EXPECT_EQ(a.report_json, b.report_json);
    EXPECT_EQ(a.packets, b.packets);
    auto sa = model::Skeleton::Decode(a.skeleton, "after");
    auto sb = model::Skeleton::Decode(b.skeleton, "before");
    ASSERT_TRUE(sa.ok() && sb.ok());
    EXPECT_EQ(sa->packets, sb->packets);
    EXPECT_EQ(sa->bytes, sb->bytes);
    EXPECT_EQ(sa->windows, sb->windows);
    auto fp = lib_->GetFingerprint("tap0", a.start_ns);
    ASSERT_TRUE(fp.ok()) << fp.status();
    EXPECT_EQ(fp->Encode(), testing::ChainFingerprint(int(i)).Encode());
    if (i < 48) stored += a.stored_bytes;
  }
  EXPECT_EQ(stored, rep->bytes_after) << "packed chunks' stored bytes are their stubs and shares of the packs";
  auto one = lib_->GetChunk("tap0", kChainT0 + 30 * hour);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_TRUE(one->in_pack);
  EXPECT_EQ(one->report_json, (*before)[30].report_json);
  auto latest = lib_->RecentChunks("tap0", 20);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->back().start_ns, kChainT0 + 40 * hour);
  EXPECT_EQ(latest->back().report_json, (*before)[40].report_json);
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  EXPECT_TRUE(check->damaged.empty());

  // Again: nothing new to pack. The third day, once closed, packs on its own.
  auto again = lib_->PackChunks("tap0", po);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->chunks, 0u);
  po.until_ns = std::numeric_limits<int64_t>::max();
  auto third = lib_->PackChunks("tap0", po);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->packs, 1u);
  EXPECT_EQ(third->chunks, 12u);

  // Expire the first day and a half: the first pack goes with its last
  // chunk; the second stays while any of its chunks does.
  now_ = kChainT0 + 61 * hour;
  RocksDbModelLibrary::ExpireOptions eo;
  eo.max_age_ns = 25 * hour;  // chunks that ended by hour 36 go, but for the one that ends there
  auto ex = lib_->Expire(eo);
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<std::string> packs_gone;
  for (const auto& it : ex->items) {
    if (it.kind == "pack") packs_gone.push_back(it.name);
  }
  EXPECT_EQ(packs_gone, std::vector<std::string>{"tap0@" + FormatRfc3339(kChainT0)});
  auto kept = lib_->ListChunks({});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->size(), 25u);
  EXPECT_EQ(kept->front().start_ns, kChainT0 + 35 * hour);
  EXPECT_EQ(kept->front().report_json, (*before)[35].report_json);
  auto u2 = lib_->GetDetailedUsage();
  ASSERT_TRUE(u2.ok());
  EXPECT_EQ(u2->packs, 2u);
  check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
}

TEST_F(RocksDbModelLibraryTest, ASpanPastThePackSizeGoesIntoSeveralPacks) {
  for (int h = 0; h < 30; ++h) ASSERT_TRUE(lib_->CommitChunk(QuietHour(h)).ok()) << h;
  auto one = lib_->GetChunk("tap0", kChainT0);
  ASSERT_TRUE(one.ok());
  RocksDbModelLibrary::PackOptions po;
  po.max_pack_bytes = 10 * library::EncodeChunk(*one).size();  // about ten records a pack
  auto rep = lib_->PackChunks("tap0", po);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->chunks, 30u);
  EXPECT_GE(rep->packs, 3u);
  EXPECT_LE(rep->packs, 4u);
  auto all = lib_->ListChunks({});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 30u);
  for (const auto& c : *all) EXPECT_TRUE(c.in_pack);
}

TEST_F(RocksDbModelLibraryTest, APackNoChunkNamesIsGarbageThatExpireCollects) {
  for (int h = 0; h < 3; ++h) ASSERT_TRUE(lib_->CommitChunk(QuietHour(h)).ok()) << h;
  // What a kill between an expire's chunk deletions and its pack deletion
  // leaves: a pack whose chunks are gone.
  auto one = lib_->GetChunk("tap0", kChainT0);
  ASSERT_TRUE(one.ok());
  const int64_t old = kChainT0 - 30 * 86400LL * 1000000000;
  one->start_ns = old;
  RawPut("packs", library::ChunkKey("tap0", old),
         library::EncodePack({{old, library::EncodePackMember(*one), ""}}, old));
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->unreferenced_packs, std::vector<std::string>{"tap0@" + FormatRfc3339(old)});
  EXPECT_TRUE(check->problems.empty()) << check->problems.front();
  RocksDbModelLibrary::ExpireOptions eo;
  eo.max_age_ns = 365 * 86400LL * 1000000000;  // no chunk is that old
  auto ex = lib_->Expire(eo);
  ASSERT_TRUE(ex.ok()) << ex.status();
  ASSERT_EQ(ex->items.size(), 1u);
  EXPECT_EQ(ex->items[0].kind, "pack");
  check = lib_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->unreferenced_packs.empty());
  EXPECT_EQ(lib_->ListChunks({})->size(), 3u);
}

TEST_F(RocksDbModelLibraryTest, ADamagedPackNamesEachOfItsChunks) {
  const int64_t hour = 3600LL * 1000000000;
  for (int h = 0; h < 30; ++h) ASSERT_TRUE(lib_->CommitChunk(QuietHour(h)).ok()) << h;
  RocksDbModelLibrary::PackOptions po;
  po.span_ns = 24 * hour;
  po.until_ns = kChainT0 + 24 * hour;
  ASSERT_TRUE(lib_->PackChunks("tap0", po).ok());
  // A pack whose frame was damaged after RocksDB's checksums (a bad copy).
  std::string garbage = library::EncodePack({{kChainT0, "x", ""}}, kChainT0);
  garbage.back() ^= 0x40;
  RawPut("packs", library::ChunkKey("tap0", kChainT0), garbage);
  const std::string first = "tap0@" + FormatRfc3339(kChainT0);
  auto all = lib_->ListChunks({});
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(all.status().message()).find("chunk " + first), std::string::npos) << all.status();
  EXPECT_NE(std::string(all.status().message()).find("pack"), std::string::npos) << all.status();
  std::vector<RocksDbModelLibrary::DamagedRecord> skipped;
  auto rest = lib_->ListChunks({}, &skipped);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->size(), 6u) << "the unpacked hours still read";
  EXPECT_EQ(skipped.size(), 24u) << "every chunk of the damaged pack is named";
  auto check = lib_->Check();
  ASSERT_TRUE(check.ok()) << check.status();
  size_t named = 0;
  for (const auto& p : check->problems) named += p.find("its pack is damaged") != std::string::npos;
  EXPECT_EQ(named, 24u);
}

TEST_F(RocksDbModelLibraryTest, StoresJobRecords) {
  ASSERT_TRUE(lib_->PutJob({"job-2", 3, "payload two"}).ok());
  ASSERT_TRUE(lib_->PutJob({"job-1", 1, std::string("\0bin", 4)}).ok());
  auto j = lib_->GetJob("job-1");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->payload, std::string("\0bin", 4));
  auto all = lib_->ListJobs();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "job-1");
  EXPECT_EQ((*all)[1].version, 3u);
  ASSERT_TRUE(lib_->DeleteJob("job-1").ok());
  EXPECT_EQ(lib_->GetJob("job-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(lib_->DeleteJob("never").ok());
}

// A long-running coordinator writes job records forever: with a memory
// budget its memtables stay within half of it (the largest is flushed), where
// RocksDB's defaults let them grow to 64 MiB per column family. The job
// history and the records come back from a reopen either way.
TEST(RocksDbModelLibraryMemoryTest, MemoryBudgetBoundsTheMemtables) {
  testing::TempDir dir;
  const std::string payload(1000, 'j');
  const int records = 12000;  // 12 MB of job records
  for (uint64_t budget : {uint64_t{0}, uint64_t{4} << 20}) {
    SCOPED_TRACE(budget);
    const std::string path = dir.File("lib-" + std::to_string(budget));
    uint64_t peak = 0;
    {
      RocksDbModelLibrary::Options o;
      o.sync = false;
      o.memory_budget_bytes = budget;
      auto lib = RocksDbModelLibrary::Open(path, o);
      ASSERT_TRUE(lib.ok()) << lib.status();
      for (int i = 0; i < records; ++i) {
        ASSERT_TRUE((*lib)->PutJob({absl::StrFormat("%020d", i), 1, payload}).ok());
        if (i % 500 == 0) peak = std::max(peak, (*lib)->Memory().memtable_bytes);
      }
      peak = std::max(peak, (*lib)->Memory().memtable_bytes);
      ASSERT_TRUE((*lib)->PutJobHistory({"job_history", 1, "{}"}).ok());
      if (budget == 0) {
        EXPECT_GT(peak, uint64_t{8} << 20) << "RocksDB's defaults keep it all in memory";
        EXPECT_EQ((*lib)->Memory().block_cache_bytes, 0u);
      } else {
        EXPECT_LE(peak, budget / 2 + (budget / 4)) << "half the budget, and a memtable being flushed";
        // Flushed tables: their index and filter blocks are reported too
        // (dgc_library_memory_bytes{kind="table_readers"}).
        EXPECT_GT((*lib)->Memory().table_reader_bytes, 0u);
      }
    }
    auto lib = RocksDbModelLibrary::Open(path);
    ASSERT_TRUE(lib.ok()) << lib.status();
    auto all = (*lib)->ListJobs();
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(all->size(), static_cast<size_t>(records));
    auto page = (*lib)->ListJobs(absl::StrFormat("%020d", records - 3), 10);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->size(), 2u);
    EXPECT_EQ((*lib)->GetJobHistory()->payload, "{}");
  }
}

TEST_F(RocksDbModelLibraryTest, CountsUsageByKind) {
  Commit(0, 12);
  auto u = lib_->GetDetailedUsage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->chunks, 12u);
  EXPECT_EQ(u->full_models, 2u);                 // base-0, base-10
  EXPECT_EQ(u->full_model_bytes, 2u * 20000);
  EXPECT_EQ(u->skeleton_bytes, 12u * 300);
  EXPECT_EQ(u->raw_bytes_ingested, 12u * 200000);
  uint64_t deltas = 0;
  for (int i = 0; i < 12; ++i) deltas += ChainChunk(i).artifact.delta.size();
  EXPECT_EQ(u->delta_bytes, deltas);
  auto plain = lib_->GetUsage();
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->model_bytes, u->full_model_bytes);
  EXPECT_EQ(plain->chunks, 12u);
}

TEST(OpenModelLibraryTest, RefusesDirectoryLibrariesAndForeignDirectories) {
  testing::TempDir tmp;
  // A step-3 directory library, as that version laid it out.
  std::filesystem::create_directories(tmp.File("old/models"));
  std::filesystem::create_directories(tmp.File("old/chunks"));
  std::ofstream(tmp.File("old/DGC-LIBRARY")) << "dgc model library v1\n";
  auto r = OpenModelLibrary(tmp.File("old"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("step-3 directory library"), std::string::npos) << r.status();
  std::filesystem::create_directories(tmp.File("foreign"));
  std::ofstream(tmp.File("foreign/notes.txt")) << "mine";
  auto f = OpenModelLibrary(tmp.File("foreign"));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  auto fresh = OpenModelLibrary(tmp.File("new"));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  // A second process (or handle) on the same library is refused, not corrupted.
  auto twice = OpenModelLibrary(tmp.File("new"));
  EXPECT_FALSE(twice.ok());
}

TEST(OpenModelLibraryTest, FinishesACreationThatAKillInterruptedAndRefusesALostCurrent) {
  // A process killed inside RocksDB's DB::Open, before CURRENT: only its
  // creation files are there, nothing was stored, the next open creates.
  testing::TempDir tmp;
  const std::string dir = tmp.File("lib");
  std::filesystem::create_directories(dir);
  for (const char* f : {"LOCK", "LOG", "IDENTITY", "MANIFEST-000001", "000001.dbtmp"}) {
    std::ofstream(dir + "/" + f) << "partial";
  }
  {
    // While a live process holds RocksDB's lock, its creation is in
    // progress, not interrupted: refused, nothing removed.
    int ready[2], done[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(done), 0);
    pid_t holder = ::fork();
    if (holder == 0) {
      int fd = ::open((dir + "/LOCK").c_str(), O_RDWR);
      struct flock fl = {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      char c = ::fcntl(fd, F_SETLK, &fl) == 0 ? 'y' : 'n';
      (void)!::write(ready[1], &c, 1);
      (void)!::read(done[0], &c, 1);
      ::_exit(0);
    }
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ASSERT_EQ(c, 'y');
    auto busy = RocksDbModelLibrary::Open(dir);
    EXPECT_EQ(busy.status().code(), absl::StatusCode::kInvalidArgument) << busy.status();
    EXPECT_TRUE(std::filesystem::exists(dir + "/MANIFEST-000001"));
    (void)!::write(done[1], "x", 1);
    ASSERT_EQ(::waitpid(holder, nullptr, 0), holder);
    for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
  }
  auto lib = RocksDbModelLibrary::Open(dir);
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_TRUE(std::filesystem::exists(dir + "/CURRENT"));
  EXPECT_TRUE((*lib)->Check().ok());
  lib->reset();
  // CURRENT lost from a library that holds data (its log): refused, untouched.
  std::filesystem::remove(dir + "/CURRENT");
  size_t before = std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator());
  auto lost = RocksDbModelLibrary::Open(dir);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kInvalidArgument) << lost.status();
  size_t after = std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator());
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace dgc

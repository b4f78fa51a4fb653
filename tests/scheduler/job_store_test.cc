#include "coordinator/scheduler/job_store.h"

#include "library/rocksdb_model_library.h"
#include "coordinator/scheduler/rocksdb_job_store.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

JobRecord Sample() {
  JobRecord r;
  r.id = 42;
  r.kind = JobKind::kRetrain;
  r.link = "tap0";
  r.shard = 3;
  r.seq = 472222;
  r.start_ns = 1700000000LL * 1000000000;
  r.packets = 123456;
  r.chunk_ref = "chunks/tap0/3/472222";
  r.state = JobState::kLeased;
  r.attempts = 2;
  r.failures = 1;
  r.last_error = "lease expired";
  r.worker = "gpu-7";
  r.lease_deadline_ns = 99;
  r.lease_slots = 4;
  r.helpers = {{"gpu-8", 2}, {"gpu-9", 1}};
  r.parent_job = 41;
  r.result_ref = "";
  r.created_ns = 5;
  r.updated_ns = 6;
  return r;
}

TEST(JobRecordTest, JsonRoundTripsEveryField) {
  auto back = DecodeJobRecord(EncodeJobRecord(Sample()));
  ASSERT_TRUE(back.ok()) << back.status();
  JobRecord a = Sample();
  EXPECT_EQ(EncodeJobRecord(*back), EncodeJobRecord(a));
  EXPECT_EQ(back->kind, JobKind::kRetrain);
  EXPECT_EQ(back->state, JobState::kLeased);
  EXPECT_EQ(back->lease_slots, 4u);
  EXPECT_EQ(back->helpers, (std::vector<LeaseShare>{{"gpu-8", 2}, {"gpu-9", 1}}));
}

TEST(JobRecordTest, RecordWrittenBeforeGangsDecodesWithoutHelpers) {
  JobRecord r = Sample();
  r.helpers.clear();
  std::string s = EncodeJobRecord(r);
  const std::string key = R"("helpers":[],)";
  ASSERT_NE(s.find(key), std::string::npos) << s;
  s.erase(s.find(key), key.size());
  auto back = DecodeJobRecord(s);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->helpers.empty());
  EXPECT_EQ(back->worker, "gpu-7");
}

TEST(JobRecordTest, DecodeRejectsBadHelpersNamingTheField) {
  JobRecord r = Sample();
  r.helpers.clear();
  const std::string good = EncodeJobRecord(r);
  const std::string key = R"("helpers":[])";
  ASSERT_NE(good.find(key), std::string::npos) << good;
  auto with = [&](const std::string& helpers) {
    std::string s = good;
    s.replace(s.find(key), key.size(), R"("helpers":)" + helpers);
    return DecodeJobRecord(s).status();
  };
  for (const auto& [helpers, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"worker":"a","slots":1})", R"("helpers")"},
           {"null", R"("helpers")"},
           {R"(["a"])", R"("helpers[0]")"},
           {R"([{"worker":"a","slots":1},{"slots":1}])", R"("helpers[1].worker")"},
           {R"([{"worker":7,"slots":1}])", R"("helpers[0].worker")"},
           {R"([{"worker":"a"}])", R"("helpers[0].slots")"},
           {R"([{"worker":"a","slots":"one"}])", R"("helpers[0].slots")"},
       }) {
    Status st = with(helpers);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << helpers << ": " << st;
    EXPECT_NE(st.message().find(field), std::string::npos) << helpers << ": " << st;
  }
  EXPECT_TRUE(with(R"([{"worker":"a","slots":1}])").ok());
}

TEST(JobRecordTest, DecodeRejectsBadRecordsNamingTheField) {
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeJobRecord("not json").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeJobRecord("[1]").status()));
  auto r = DecodeJobRecord(R"({"id": 1, "kind": "compress"})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("link"), std::string::npos) << r.status();
  std::string s = EncodeJobRecord(Sample());
  s.replace(s.find("leased"), 6, "bogus!");
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeJobRecord(s).status()));
}

TEST(InMemoryJobStoreTest, PutGetListDelete) {
  InMemoryJobStore store;
  JobRecord a = Sample();
  ASSERT_TRUE(store.Put(a).ok());
  a.id = 7;
  ASSERT_TRUE(store.Put(a).ok());
  EXPECT_EQ(store.Get(42)->link, "tap0");
  EXPECT_TRUE(absl::IsNotFound(store.Get(1).status()));
  auto all = store.List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, 7u);  // id order
  EXPECT_TRUE(store.Delete(7).ok());
  EXPECT_TRUE(absl::IsNotFound(store.Delete(7)));
  store.set_put_status(absl::UnavailableError("disk full"));
  EXPECT_TRUE(absl::IsUnavailable(store.Put(a)));
  EXPECT_EQ(store.size(), 1u);
}

TEST(RocksDbJobStoreTest, PutGetListDeleteInIdOrderAndSurviveAReopen) {
  testing::TempDir dir;
  {
    auto lib = RocksDbModelLibrary::Open(dir.File("lib"));
    ASSERT_TRUE(lib.ok()) << lib.status();
    RocksDbJobStore store(lib->get());
    JobRecord a = Sample();
    for (JobId id : {42, 7, 100000}) {
      a.id = id;
      ASSERT_TRUE(store.Put(a).ok());
    }
    a.id = 7;
    a.state = JobState::kDone;
    ASSERT_TRUE(store.Put(a).ok());  // replaces
    EXPECT_TRUE(absl::IsNotFound(store.Get(1).status()));
    EXPECT_TRUE(store.Delete(42).ok());
    EXPECT_TRUE(absl::IsNotFound(store.Delete(42)));
  }
  auto lib = RocksDbModelLibrary::Open(dir.File("lib"));
  ASSERT_TRUE(lib.ok()) << lib.status();
  RocksDbJobStore store(lib->get());
  auto all = store.List();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, 7u);  // numeric order, not text order
  EXPECT_EQ((*all)[0].state, JobState::kDone);
  EXPECT_EQ((*all)[1].id, 100000u);
  EXPECT_EQ(EncodeJobRecord(*store.Get(100000)), EncodeJobRecord((*all)[1]));
}

// Pages of `limit` after each page's last id give every record once, in id
// order, whatever the ids' digits (RocksDB's keys are zero-padded text).
void ExpectPagesCoverTheStore(JobStore& store) {
  JobRecord a = Sample();
  const std::vector<JobId> ids = {1, 9, 10, 11, 99, 100, 1000, 123456789};
  for (JobId id : ids) {
    a.id = id;
    ASSERT_TRUE(store.Put(a).ok());
  }
  for (size_t limit : {1, 2, 3, 8, 9}) {
    std::vector<JobId> seen;
    JobId after = 0;
    for (int page = 0; page < 20; ++page) {
      auto got = store.ListAfter(after, limit);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_LE(got->size(), limit);
      for (const JobRecord& r : *got) seen.push_back(r.id);
      if (got->size() < limit) break;
      after = got->back().id;
    }
    EXPECT_EQ(seen, ids) << "limit " << limit;
  }
  auto tail = store.ListAfter(100, 0);  // 0: the rest
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ((*tail)[0].id, 1000u);
  auto mid = store.ListAfter(50, 2);  // after an id that is not stored
  ASSERT_TRUE(mid.ok());
  ASSERT_EQ(mid->size(), 2u);
  EXPECT_EQ((*mid)[0].id, 99u);
  EXPECT_TRUE(store.ListAfter(123456789, 5)->empty());
}

TEST(InMemoryJobStoreTest, PagesCoverTheStoreInIdOrder) {
  InMemoryJobStore store;
  ExpectPagesCoverTheStore(store);
}

TEST(RocksDbJobStoreTest, PagesCoverTheStoreInIdOrder) {
  testing::TempDir dir;
  auto lib = RocksDbModelLibrary::Open(dir.File("lib"));
  ASSERT_TRUE(lib.ok()) << lib.status();
  RocksDbJobStore store(lib->get());
  ExpectPagesCoverTheStore(store);
}

TEST(RocksDbJobStoreTest, CorruptRecordIsDataLossNamingTheJob) {
  testing::TempDir dir;
  auto lib = RocksDbModelLibrary::Open(dir.File("lib"));
  ASSERT_TRUE(lib.ok()) << lib.status();
  library::JobRecord bad;
  bad.id = RocksDbJobStore::Key(5);
  bad.version = RocksDbJobStore::kPayloadVersion;
  bad.payload = "{not json";
  ASSERT_TRUE((*lib)->PutJob(bad).ok());
  RocksDbJobStore store(lib->get());
  auto r = store.Get(5);
  ASSERT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_NE(r.status().message().find(RocksDbJobStore::Key(5)), std::string::npos);
  EXPECT_TRUE(absl::IsDataLoss(store.List().status()));
}

}  // namespace
}  // namespace dgc

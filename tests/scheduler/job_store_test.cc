#include "coordinator/scheduler/job_store.h"

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace dgc

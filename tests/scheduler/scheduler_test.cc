#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <limits>
#include <memory>

#include "library/rocksdb_model_library.h"
#include "coordinator/scheduler/rocksdb_job_store.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

constexpr int64_t kSec = 1'000'000'000;

// Wraps a real store and injects errors per operation (the fault knobs of
// InMemoryJobStore, for any backend).
class FaultInjectingJobStore final : public JobStore {
 public:
  void set_backend(JobStore* backend) { backend_ = backend; }
  Status Put(const JobRecord& job) override { return put_status_.ok() ? backend_->Put(job) : put_status_; }
  StatusOr<JobRecord> Get(JobId id) const override { return backend_->Get(id); }
  StatusOr<std::vector<JobRecord>> ListAfter(JobId after, size_t limit) const override {
    if (!list_status_.ok()) return list_status_;
    return backend_->ListAfter(after, limit);
  }
  Status Delete(JobId id) override { return backend_->Delete(id); }
  Status DeleteAll(const std::vector<JobId>& ids) override {
    return delete_status_.ok() ? backend_->DeleteAll(ids) : delete_status_;
  }
  StatusOr<JobHistory> GetHistory() const override { return backend_->GetHistory(); }
  Status PutHistory(const JobHistory& h) override { return put_status_.ok() ? backend_->PutHistory(h) : put_status_; }
  void set_put_status(Status s) { put_status_ = std::move(s); }
  void set_list_status(Status s) { list_status_ = std::move(s); }
  void set_delete_status(Status s) { delete_status_ = std::move(s); }

 private:
  JobStore* backend_ = nullptr;
  Status put_status_;
  Status list_status_;
  Status delete_status_;
};

// Every test runs against each JobStore backend: "memory" and "rocksdb" (the
// library's jobs column family in a temp dir, reopened on Restart()).
class SchedulerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_.set_backend(&memory_);
    } else {
      OpenLibrary();
    }
    options_.lease_ns = 30 * kSec;
    options_.worker_timeout_ns = 90 * kSec;
    options_.large_job_packets = 1'000'000;
    Restart();
  }
  // A new scheduler over the same store: what a restarted coordinator sees.
  void Restart() {
    sched_.reset();
    if (GetParam() == "rocksdb") OpenLibrary();
    auto s = Scheduler::Create(options_, &store_, &clock_);
    ASSERT_TRUE(s.ok()) << s.status();
    sched_ = *std::move(s);
  }
  JobId Submit(const std::string& link, int64_t seq, JobKind kind = JobKind::kCompress, uint64_t packets = 1000) {
    JobSpec spec;
    spec.link = link;
    spec.seq = seq;
    spec.start_ns = seq * 60 * kSec;
    spec.kind = kind;
    spec.packets = packets;
    spec.chunk_ref = link + "/" + std::to_string(seq);
    auto r = sched_->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->job : 0;
  }
  void AddWorker(const std::string& id, uint32_t gpus, uint32_t cpu_threads = 8, bool data_parallel = false) {
    WorkerCapacity c;
    c.gpus = gpus;
    c.cpu_threads = cpu_threads;
    c.data_parallel = data_parallel;
    ASSERT_TRUE(sched_->RegisterWorker(id, c).ok());
  }
  std::vector<Assignment> Schedule() {
    std::vector<Assignment> out;
    EXPECT_TRUE(sched_->Schedule(&out).ok());
    return out;
  }
  CompletionOutcome Complete(const Assignment& a, const std::string& ref = "model") {
    auto r = sched_->Complete(a.worker, a.job, a.attempt, ref);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->outcome : CompletionOutcome::kDiscarded;
  }
  JobState State(JobId id) { return sched_->FindJob(id)->state; }
  // A worker that may join a gang (it serves a rendezvous store).
  void AddGangWorker(const std::string& id, uint32_t gpus) { AddWorker(id, gpus, 8, /*data_parallel=*/true); }
  uint32_t Used(const std::string& worker) { return sched_->FindWorker(worker)->used_slots; }
  // Gangs of up to `n` workers from the next scheduler on.
  void AllowGangsOf(uint32_t n) {
    options_.max_workers_per_job = n;
    Restart();
  }
  TickReport Tick() {
    TickReport report;
    EXPECT_TRUE(sched_->Tick(&report).ok());
    return report;
  }

  void OpenLibrary() {
    rocks_store_.reset();
    library_.reset();
    auto lib = RocksDbModelLibrary::Open(dir_.path() + "/lib");
    ASSERT_TRUE(lib.ok()) << lib.status();
    library_ = *std::move(lib);
    rocks_store_ = std::make_unique<RocksDbJobStore>(library_.get());
    store_.set_backend(rocks_store_.get());
  }

  SchedulerOptions options_;
  ManualClock clock_;
  testing::TempDir dir_;
  InMemoryJobStore memory_;
  std::unique_ptr<RocksDbModelLibrary> library_;
  std::unique_ptr<RocksDbJobStore> rocks_store_;
  FaultInjectingJobStore store_;
  std::unique_ptr<Scheduler> sched_;
};

INSTANTIATE_TEST_SUITE_P(Stores, SchedulerTest, ::testing::Values("memory", "rocksdb"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(SchedulerTest, HandsOutALinksJobsOneAtATimeInChunkOrderWithTheParentChained) {
  AddWorker("w1", 0, 64);  // 8 slots: capacity is not what holds jobs back
  JobId j3 = Submit("tap0", 3), j1 = Submit("tap0", 1), j2 = Submit("tap0", 2);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j1);
  EXPECT_EQ(a[0].parent_job, 0u);
  EXPECT_TRUE(Schedule().empty());  // j2's parent is j1's model: it waits
  EXPECT_EQ(Complete(a[0]), CompletionOutcome::kCommitted);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j2);
  EXPECT_EQ(a[0].parent_job, j1);
  Complete(a[0]);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j3);
  EXPECT_EQ(a[0].parent_job, j2);
  EXPECT_EQ(sched_->FindJob(j3)->parent_job, j2);
}

TEST_P(SchedulerTest, DifferentLinksAndShardsRunInParallel) {
  AddWorker("w1", 0, 64);
  Submit("tap0", 1);
  Submit("tap1", 1);
  JobSpec shard1;
  shard1.link = "tap0";
  shard1.shard = 1;
  shard1.seq = 1;
  ASSERT_TRUE(sched_->Submit(shard1).ok());
  EXPECT_EQ(Schedule().size(), 3u);
  EXPECT_EQ(sched_->streams(), 3u);
}

TEST_P(SchedulerTest, RetrainJobsGoFirstThenOldestChunk) {
  AddWorker("w1", 1);  // one slot: one job per round shows the order
  JobId late = Submit("a", 50);
  JobId early = Submit("b", 10);
  JobId retrain = Submit("c", 90, JobKind::kRetrain);
  std::vector<JobId> order;
  for (int i = 0; i < 3; ++i) {
    auto a = Schedule();
    ASSERT_EQ(a.size(), 1u);
    order.push_back(a[0].job);
    Complete(a[0]);
  }
  EXPECT_EQ(order, (std::vector<JobId>{retrain, early, late}));
}

TEST_P(SchedulerTest, RetrainAtTheSameChunkRunsBeforeItsCompressJob) {
  AddWorker("w1", 0, 64);
  JobId compress = Submit("tap0", 5);
  JobId retrain = Submit("tap0", 5, JobKind::kRetrain);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, retrain);
  Complete(a[0]);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, compress);
  EXPECT_EQ(a[0].parent_job, retrain);
}

// A link's first base waits for its first chunks (not_before_ns): nothing of
// its stream is handed out until the time passes or MakeReady says so; a
// restart keeps the wait; other streams run meanwhile.
TEST_P(SchedulerTest, AWaitingRetrainHoldsItsStreamUntilItsTimeOrMakeReady) {
  AddWorker("w1", 0, 64);
  JobSpec spec;
  spec.link = "tap0";
  spec.seq = 1;
  spec.start_ns = 60 * kSec;
  spec.kind = JobKind::kRetrain;
  spec.chunk_ref = "tap0/1";
  spec.not_before_ns = clock_.NowNs() + 20 * kSec;
  auto r = sched_->Submit(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const JobId retrain = r->job;
  JobId compress = Submit("tap0", 1);
  Submit("tap0", 2);
  JobId other = Submit("tap1", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, other);
  Complete(a[0]);
  Restart();
  AddWorker("w1", 0, 64);
  clock_.Advance(19 * kSec);
  Tick();
  EXPECT_TRUE(Schedule().empty());
  clock_.Advance(2 * kSec);
  Tick();
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, retrain);
  Complete(a[0]);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, compress);

  // MakeReady ends a wait early.
  spec.link = "tap2";
  spec.not_before_ns = clock_.NowNs() + 1000 * kSec;
  r = sched_->Submit(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(Schedule().empty());
  ASSERT_TRUE(sched_->MakeReady(r->job).ok());
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, r->job);
  EXPECT_EQ(sched_->FindJob(r->job)->not_before_ns, 0);
  EXPECT_EQ(sched_->MakeReady(987654).code(), absl::StatusCode::kNotFound);
}

TEST_P(SchedulerTest, GivesWorkersJobsUpToTheirCapacity) {
  AddWorker("cpu", 0, 16);  // 16 / 8 = 2 slots
  AddWorker("gpu", 1);      // 1 slot
  for (int i = 0; i < 10; ++i) Submit("link" + std::to_string(i), 1);
  auto a = Schedule();
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(std::count_if(a.begin(), a.end(), [](auto& x) { return x.worker == "cpu"; }), 2);
  EXPECT_TRUE(Schedule().empty());
  EXPECT_EQ(sched_->FindWorker("cpu")->used_slots, 2u);
  Complete(a[0]);
  EXPECT_EQ(Schedule().size(), 1u);
}

TEST_P(SchedulerTest, SubmitIsIdempotentPerChunkAndKind) {
  JobId a = Submit("tap0", 1);
  JobSpec again;
  again.link = "tap0";
  again.seq = 1;
  auto r = sched_->Submit(again);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->job, a);
  EXPECT_FALSE(r->created);
  EXPECT_NE(Submit("tap0", 1, JobKind::kRetrain), a);
  JobSpec bad;
  EXPECT_TRUE(absl::IsInvalidArgument(sched_->Submit(bad).status()));
}

TEST_P(SchedulerTest, RequeuesJobWhenWorkerLeaseExpires) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  JobId j = Submit("tap0", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(sched_->NextDeadlineNs(), clock_.NowNs() + options_.lease_ns);
  clock_.Advance(options_.lease_ns - 1);
  EXPECT_TRUE(Tick().expired.empty());
  clock_.Advance(1);
  auto report = Tick();
  ASSERT_EQ(report.expired, std::vector<JobId>{j});
  EXPECT_EQ(State(j), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(j)->failures, 1u);
  EXPECT_NE(sched_->FindJob(j)->last_error.find("lease expired on worker " + a[0].worker), std::string::npos);
  EXPECT_EQ(sched_->FindWorker(a[0].worker)->used_slots, 0u);
  auto again = Schedule();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].job, j);
  EXPECT_EQ(again[0].attempt, 2u);
}

TEST_P(SchedulerTest, HeartbeatExtendsTheLeasesItListsOnly) {
  AddWorker("w1", 0, 16);
  JobId j1 = Submit("a", 1), j2 = Submit("b", 1);
  ASSERT_EQ(Schedule().size(), 2u);
  clock_.Advance(20 * kSec);
  ASSERT_TRUE(sched_->Heartbeat("w1", {j1}).ok());  // the worker lost j2 (e.g. restarted)
  clock_.Advance(20 * kSec);  // 40 s after the grant, 20 s after the heartbeat
  auto report = Tick();
  EXPECT_EQ(report.expired, std::vector<JobId>{j2});
  EXPECT_EQ(State(j1), JobState::kLeased);
  EXPECT_TRUE(absl::IsNotFound(sched_->Heartbeat("stranger", {})));
}

TEST_P(SchedulerTest, FailsJobAfterMaxFailuresWithItsReason) {
  AddWorker("w1", 1);
  JobId j = Submit("tap0", 1);
  for (uint32_t i = 1; i <= 3; ++i) {
    auto a = Schedule();
    ASSERT_EQ(a.size(), 1u);
    auto out = sched_->Fail("w1", j, a[0].attempt, "CUDA out of memory " + std::to_string(i));
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(*out, i < 3 ? FailureOutcome::kRequeued : FailureOutcome::kFailed);
  }
  EXPECT_EQ(State(j), JobState::kFailed);
  EXPECT_EQ(sched_->FindJob(j)->last_error, "worker w1: CUDA out of memory 3");
  EXPECT_TRUE(Schedule().empty());
  EXPECT_EQ(sched_->counts()[JobState::kFailed], 1u);
}

TEST_P(SchedulerTest, NonRetryableFailureFailsAtOnceAndStaleFailureIsIgnored) {
  AddWorker("w1", 1);
  JobId j = Submit("tap0", 1);
  auto a = Schedule();
  EXPECT_EQ(*sched_->Fail("w2", j, a[0].attempt, "not mine"), FailureOutcome::kStale);
  EXPECT_EQ(*sched_->Fail("w1", j, a[0].attempt + 1, "future"), FailureOutcome::kStale);
  EXPECT_EQ(State(j), JobState::kLeased);
  EXPECT_EQ(*sched_->Fail("w1", j, a[0].attempt, "corrupt chunk", false), FailureOutcome::kFailed);
  EXPECT_EQ(State(j), JobState::kFailed);
  EXPECT_TRUE(absl::IsNotFound(sched_->Fail("w1", 999, 1, "x").status()));
}

TEST_P(SchedulerTest, FailedJobBlocksItsStreamUntilRetried) {
  AddWorker("w1", 0, 64);
  JobId j1 = Submit("tap0", 1);
  JobId j2 = Submit("tap0", 2);
  auto a = Schedule();
  ASSERT_TRUE(sched_->Fail("w1", j1, a[0].attempt, "bad", false).ok());
  EXPECT_TRUE(Schedule().empty());  // j2 has no parent model
  ASSERT_TRUE(sched_->Retry(j1).ok());
  EXPECT_EQ(sched_->FindJob(j1)->failures, 0u);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j1);
  Complete(a[0]);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j2);
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Retry(j2)));
}

TEST_P(SchedulerTest, CancelledJobIsSkippedAndItsHolderIsNamed) {
  AddWorker("w1", 0, 64);
  JobId j1 = Submit("tap0", 1);
  JobId j2 = Submit("tap0", 2);
  auto a = Schedule();
  auto holder = sched_->Cancel(j1);
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(*holder, "w1");
  EXPECT_EQ(sched_->FindWorker("w1")->used_slots, 0u);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, j2);
  EXPECT_EQ(a[0].parent_job, 0u);
  // The cancelled job's late result changes nothing.
  auto late = sched_->Complete("w1", j1, 1, "late");
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome, CompletionOutcome::kDiscarded);
  EXPECT_EQ(State(j1), JobState::kCancelled);
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Cancel(j1).status()));
  auto queued_holder = sched_->Cancel(Submit("tap9", 1));
  ASSERT_TRUE(queued_holder.ok());
  EXPECT_EQ(*queued_holder, "");
}

TEST_P(SchedulerTest, RetryOfACancelledJobIsRefusedWhenANewerJobCoversTheChunk) {
  JobId j1 = Submit("tap0", 1);
  ASSERT_TRUE(sched_->Cancel(j1).ok());
  JobId j1b = Submit("tap0", 1);
  EXPECT_NE(j1b, j1);
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Retry(j1)));
  ASSERT_TRUE(sched_->Cancel(j1b).ok());
  EXPECT_TRUE(sched_->Retry(j1).ok());
  EXPECT_EQ(State(j1), JobState::kQueued);
}

TEST_P(SchedulerTest, DrainedWorkerGetsNoNewWorkButKeepsItsLeases) {
  AddWorker("w1", 0, 16);
  Submit("a", 1);
  Submit("b", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 2u);
  ASSERT_TRUE(sched_->SetDraining("w1", true).ok());
  Submit("c", 1);
  Complete(a[0]);
  EXPECT_TRUE(Schedule().empty());
  EXPECT_EQ(sched_->FindWorker("w1")->leases.size(), 1u);
  EXPECT_EQ(Complete(a[1]), CompletionOutcome::kCommitted);
  auto w = sched_->FindWorker("w1");
  EXPECT_TRUE(w->draining);
  EXPECT_EQ(w->used_slots, 0u);  // drained
  ASSERT_TRUE(sched_->SetDraining("w1", false).ok());
  EXPECT_EQ(Schedule().size(), 1u);
  EXPECT_TRUE(absl::IsNotFound(sched_->SetDraining("nobody", true)));
}

TEST_P(SchedulerTest, SecondResultForACommittedJobIsADuplicate) {
  AddWorker("w1", 1);
  JobId j = Submit("tap0", 1);
  auto a = Schedule();
  EXPECT_EQ(*sched_->ClassifyResult(j), CompletionOutcome::kCommitted);
  EXPECT_EQ(Complete(a[0], "ref-1"), CompletionOutcome::kCommitted);
  EXPECT_EQ(*sched_->ClassifyResult(j), CompletionOutcome::kDuplicate);
  EXPECT_EQ(Complete(a[0], "ref-2"), CompletionOutcome::kDuplicate);
  EXPECT_EQ(sched_->FindJob(j)->result_ref, "ref-1");
  EXPECT_EQ(sched_->counts()[JobState::kDone], 1u);
  EXPECT_TRUE(absl::IsInvalidArgument(sched_->Complete("w1", j, 7, "x").status()));
  EXPECT_TRUE(absl::IsNotFound(sched_->Complete("w1", 999, 1, "x").status()));
}

TEST_P(SchedulerTest, SlowWorkerFinishingAfterItsReplacementIsADuplicate) {
  AddWorker("slow", 1);
  JobId j = Submit("tap0", 1);
  auto first = Schedule();
  ASSERT_EQ(first[0].worker, "slow");
  clock_.Advance(options_.lease_ns);
  ASSERT_EQ(Tick().expired.size(), 1u);
  AddWorker("fast", 1);
  ASSERT_TRUE(sched_->SetDraining("slow", true).ok());
  auto second = Schedule();
  ASSERT_EQ(second.size(), 1u);
  ASSERT_EQ(second[0].worker, "fast");
  EXPECT_EQ(Complete(second[0], "fast-model"), CompletionOutcome::kCommitted);
  EXPECT_EQ(Complete(first[0], "slow-model"), CompletionOutcome::kDuplicate);
  EXPECT_EQ(sched_->FindJob(j)->result_ref, "fast-model");
}

TEST_P(SchedulerTest, LateResultFromAnExpiredLeaseCommitsAndEndsTheNewLease) {
  AddWorker("slow", 1);
  JobId j = Submit("tap0", 1);
  auto first = Schedule();
  clock_.Advance(options_.lease_ns);
  Tick();
  AddWorker("fast", 1);
  ASSERT_TRUE(sched_->SetDraining("slow", true).ok());
  auto second = Schedule();
  ASSERT_EQ(second[0].worker, "fast");
  auto r = sched_->Complete("slow", j, first[0].attempt, "slow-model");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, CompletionOutcome::kCommitted);
  EXPECT_EQ(r->preempted_worker, "fast");
  EXPECT_EQ(sched_->FindWorker("fast")->used_slots, 0u);
  EXPECT_EQ(Complete(second[0], "fast-model"), CompletionOutcome::kDuplicate);
  EXPECT_EQ(sched_->FindJob(j)->result_ref, "slow-model");
}

TEST_P(SchedulerTest, LargeJobTakesAWholeIdleMultiGpuWorker) {
  AddWorker("single", 1);
  AddWorker("quad", 4);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  JobId small = Submit("small", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 2u);
  for (const auto& x : a) {
    if (x.job == big) {
      EXPECT_EQ(x.worker, "quad");
      EXPECT_EQ(x.slots, 4u);
      EXPECT_TRUE(x.large);
    } else {
      EXPECT_EQ(x.job, small);
      EXPECT_EQ(x.worker, "single");
    }
  }
  EXPECT_EQ(sched_->FindWorker("quad")->used_slots, 4u);
}

TEST_P(SchedulerTest, SmallJobsPackOntoSingleGpuAndCpuWorkersBeforeMultiGpuOnes) {
  AddWorker("quad", 4);
  AddWorker("cpu", 0, 16);  // 2 slots
  for (int i = 0; i < 3; ++i) Submit("l" + std::to_string(i), 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(sched_->FindWorker("cpu")->used_slots, 2u);
  EXPECT_EQ(sched_->FindWorker("quad")->used_slots, 1u);
}

TEST_P(SchedulerTest, SmallJobsStayOffMultiGpuWorkersWhileALargeJobWaits) {
  AddWorker("quad", 4);
  Submit("s1", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].worker, "quad");  // nothing else to run on
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  Submit("s2", 1);
  EXPECT_TRUE(Schedule().empty());  // quad is reserved for the large job
  Complete(a[0]);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
  EXPECT_EQ(a[0].slots, 4u);
}

TEST_P(SchedulerTest, LargeJobsRunOnAnyWorkerWhenThereIsNoMultiGpuWorker) {
  AddWorker("single", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
  EXPECT_EQ(a[0].slots, 1u);
}

TEST_P(SchedulerTest, TickForgetsSilentWorkersAndRemoveRequeuesWithoutAFailure) {
  AddWorker("w1", 1);
  AddWorker("w2", 1);
  JobId j = Submit("tap0", 1);
  auto a = Schedule();
  ASSERT_TRUE(sched_->RemoveWorker(a[0].worker).ok());
  EXPECT_EQ(State(j), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(j)->failures, 0u);
  EXPECT_TRUE(absl::IsNotFound(sched_->RemoveWorker(a[0].worker)));
  const std::string other = a[0].worker == "w1" ? "w2" : "w1";
  clock_.Advance(options_.worker_timeout_ns);
  auto report = Tick();
  EXPECT_EQ(report.lost_workers, std::vector<std::string>{other});
  EXPECT_TRUE(sched_->Workers().empty());
}

TEST_P(SchedulerTest, LargeJobLeasesAGangOfIdleDataParallelWorkersMultiGpuHolderFirst) {
  AllowGangsOf(3);
  AddGangWorker("cpu", 0);  // 1 slot; fewest GPUs: left out of a gang of 3
  AddGangWorker("a", 1);
  AddGangWorker("duo", 2);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  JobId s1 = Submit("s1", 1);
  JobId s2 = Submit("s2", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 2u);
  const Assignment& gang = a[0].job == big ? a[0] : a[1];
  const Assignment& small = a[0].job == big ? a[1] : a[0];
  EXPECT_EQ(gang.worker, "duo");
  EXPECT_EQ(gang.slots, 2u);
  EXPECT_TRUE(gang.large);
  EXPECT_EQ(gang.helpers, (std::vector<LeaseShare>{{"a", 1}, {"b", 1}}));  // then registration order
  EXPECT_EQ(sched_->FindJob(big)->helpers, gang.helpers);
  EXPECT_EQ(small.job, s1);
  EXPECT_EQ(small.worker, "cpu");  // not on the gang's members
  for (const char* w : {"duo", "a", "b"}) {
    EXPECT_EQ(Used(w), sched_->FindWorker(w)->slots) << w;
    EXPECT_EQ(sched_->FindWorker(w)->leases, std::vector<JobId>{big}) << w;
  }
  EXPECT_TRUE(Schedule().empty());  // s2: every slot is held
  EXPECT_EQ(State(s2), JobState::kQueued);

  EXPECT_EQ(Complete(gang), CompletionOutcome::kCommitted);
  for (const char* w : {"duo", "a", "b"}) {
    EXPECT_EQ(Used(w), 0u) << w;
    EXPECT_TRUE(sched_->FindWorker(w)->leases.empty()) << w;
  }
  EXPECT_TRUE(sched_->FindJob(big)->helpers.empty());
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, s2);
}

TEST_P(SchedulerTest, GangFallsBackToAWholeWorkerWithOneIdleDataParallelWorker) {
  AllowGangsOf(3);
  AddGangWorker("one", 1);
  AddGangWorker("quad", 4);
  Submit("small", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].worker, "one");  // "one" is busy from now on
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
  EXPECT_EQ(a[0].worker, "quad");
  EXPECT_EQ(a[0].slots, 4u);
  EXPECT_TRUE(a[0].helpers.empty());
  EXPECT_TRUE(sched_->FindJob(big)->helpers.empty());
  EXPECT_EQ(Used("one"), 1u);
}

TEST_P(SchedulerTest, GangsDoNotMixGpuAndCpuWorkers) {
  // GPU ranks talk NCCL, CPU ranks Gloo: one group cannot hold both.
  AllowGangsOf(3);
  AddGangWorker("quad", 4);
  AddGangWorker("cpu1", 0);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
  EXPECT_EQ(a[0].worker, "quad");  // alone, as without gangs
  EXPECT_TRUE(a[0].helpers.empty());
  EXPECT_EQ(Used("cpu1"), 0u);
  // Two CPU workers do form a gang (the path CI tests over Gloo).
  AddGangWorker("cpu2", 0);
  JobId big2 = Submit("big2", 1, JobKind::kCompress, 5'000'000);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big2);
  EXPECT_EQ(a[0].worker, "cpu1");
  ASSERT_EQ(a[0].helpers.size(), 1u);
  EXPECT_EQ(a[0].helpers[0].worker, "cpu2");
}

TEST_P(SchedulerTest, NoGangsByDefault) {
  ASSERT_EQ(options_.max_workers_per_job, 1u);
  AddGangWorker("quad", 4);
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
  EXPECT_EQ(a[0].worker, "quad");
  EXPECT_TRUE(a[0].helpers.empty());
  EXPECT_EQ(Used("a"), 0u);
  EXPECT_EQ(Used("b"), 0u);
}

TEST_P(SchedulerTest, HelperLeavingRequeuesTheGangJobWithoutAFailure) {
  AllowGangsOf(2);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].helpers, (std::vector<LeaseShare>{{"a", 1}}));
  ASSERT_TRUE(sched_->RemoveWorker("a").ok());
  EXPECT_EQ(State(big), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(big)->failures, 0u);
  EXPECT_EQ(sched_->FindJob(big)->last_error, "worker a left (a gang helper)");
  EXPECT_TRUE(sched_->FindJob(big)->helpers.empty());
  EXPECT_EQ(Used("duo"), 0u);
  EXPECT_TRUE(sched_->FindWorker("duo")->leases.empty());
  EXPECT_EQ(sched_->NextDeadlineNs(), std::numeric_limits<int64_t>::max());
  a = Schedule();  // one data-parallel worker left: duo alone, as without gangs
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].worker, "duo");
  EXPECT_EQ(a[0].attempt, 2u);
  EXPECT_TRUE(a[0].helpers.empty());
}

TEST_P(SchedulerTest, HelperLostByTickRequeuesTheGangJobLikeALostHolder) {
  AllowGangsOf(3);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].helpers.size(), 2u);
  TickReport report;
  for (int i = 0; i < 3; ++i) {  // "a" falls silent; the others keep the lease alive
    clock_.Advance(30 * kSec);
    ASSERT_TRUE(sched_->Heartbeat("duo", {big}).ok());
    ASSERT_TRUE(sched_->Heartbeat("b", {big}).ok());
    report = Tick();
    if (i < 2) {
      EXPECT_EQ(State(big), JobState::kLeased);
    }
  }
  EXPECT_TRUE(report.expired.empty());
  EXPECT_EQ(report.lost_workers, std::vector<std::string>{"a"});
  EXPECT_EQ(State(big), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(big)->failures, 0u);  // as for a lost holder
  EXPECT_EQ(Used("duo"), 0u);
  EXPECT_EQ(Used("b"), 0u);
  EXPECT_FALSE(sched_->FindWorker("a").has_value());
  a = Schedule();  // duo and b form a new gang
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].worker, "duo");
  EXPECT_EQ(a[0].helpers, (std::vector<LeaseShare>{{"b", 1}}));
}

TEST_P(SchedulerTest, HolderAndHelperLostInOneTickEndTheGangLeaseOnce) {
  options_.lease_ns = 200 * kSec;  // outlives the workers: no expiry, only losses
  AllowGangsOf(3);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  ASSERT_EQ(Schedule().size(), 1u);
  clock_.Advance(options_.worker_timeout_ns);
  ASSERT_TRUE(sched_->Heartbeat("b", {big}).ok());  // only b stays in touch
  auto report = Tick();
  EXPECT_TRUE(report.expired.empty());
  EXPECT_EQ(report.lost_workers, (std::vector<std::string>{"a", "duo"}));
  EXPECT_EQ(State(big), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(big)->failures, 0u);
  EXPECT_EQ(sched_->FindJob(big)->last_error, "worker a left (a gang helper)");  // the first to go ends it
  EXPECT_EQ(sched_->counts()[JobState::kQueued], 1u);
  EXPECT_EQ(sched_->counts()[JobState::kLeased], 0u);
  EXPECT_EQ(Used("b"), 0u);
  EXPECT_TRUE(sched_->FindWorker("b")->leases.empty());
  AddGangWorker("c", 1);
  auto a = Schedule();  // the stream is not left counting a lease: the job runs again
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].job, big);
}

TEST_P(SchedulerTest, GangLeaseExpiryFreesEveryMemberAndOnlyTheHolderExtendsIt) {
  AllowGangsOf(3);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  clock_.Advance(20 * kSec);
  ASSERT_TRUE(sched_->Heartbeat("a", {big}).ok());  // a helper's heartbeat does not extend
  EXPECT_EQ(sched_->NextDeadlineNs(), a[0].lease_deadline_ns);
  clock_.Advance(10 * kSec);
  auto report = Tick();
  EXPECT_EQ(report.expired, std::vector<JobId>{big});
  EXPECT_EQ(State(big), JobState::kQueued);
  EXPECT_EQ(sched_->FindJob(big)->failures, 1u);
  EXPECT_TRUE(sched_->FindJob(big)->helpers.empty());
  for (const char* w : {"duo", "a", "b"}) {
    EXPECT_EQ(Used(w), 0u) << w;
    EXPECT_TRUE(sched_->FindWorker(w)->leases.empty()) << w;
  }
  // Holder's heartbeat does extend a gang lease.
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].helpers.size(), 2u);
  clock_.Advance(20 * kSec);
  ASSERT_TRUE(sched_->Heartbeat("duo", {big}).ok());
  clock_.Advance(20 * kSec);
  EXPECT_TRUE(Tick().expired.empty());
  EXPECT_EQ(State(big), JobState::kLeased);
}

TEST_P(SchedulerTest, OnlyTheGangHolderReportsAndCancelNamesTheHolder) {
  AllowGangsOf(2);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(*sched_->Fail("a", big, a[0].attempt, "helper crashed"), FailureOutcome::kStale);
  EXPECT_EQ(State(big), JobState::kLeased);
  EXPECT_EQ(*sched_->Fail("duo", big, a[0].attempt, "nccl timeout"), FailureOutcome::kRequeued);
  EXPECT_EQ(sched_->FindJob(big)->failures, 1u);
  EXPECT_EQ(Used("duo"), 0u);
  EXPECT_EQ(Used("a"), 0u);
  a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].helpers.size(), 1u);
  auto holder = sched_->Cancel(big);
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(*holder, "duo");
  EXPECT_EQ(Used("duo"), 0u);
  EXPECT_EQ(Used("a"), 0u);
  EXPECT_TRUE(sched_->FindWorker("a")->leases.empty());
  EXPECT_TRUE(sched_->FindJob(big)->helpers.empty());
}

TEST_P(SchedulerTest, RestartedSchedulerKeepsAGangLeaseWithItsHelpersSlots) {
  AllowGangsOf(3);
  AddGangWorker("duo", 2);
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  JobId big = Submit("big", 1, JobKind::kCompress, 5'000'000);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);

  Restart();  // the coordinator was killed; the workers reconnect, helpers first
  EXPECT_EQ(State(big), JobState::kLeased);
  EXPECT_EQ(sched_->FindJob(big)->helpers, (std::vector<LeaseShare>{{"a", 1}, {"b", 1}}));
  AddGangWorker("a", 1);
  AddGangWorker("b", 1);
  AddGangWorker("duo", 2);
  for (const char* w : {"duo", "a", "b"}) {
    EXPECT_EQ(Used(w), sched_->FindWorker(w)->slots) << w;
    EXPECT_EQ(sched_->FindWorker(w)->leases, std::vector<JobId>{big}) << w;
  }
  Submit("small", 1);
  Submit("big2", 1, JobKind::kCompress, 5'000'000);
  EXPECT_TRUE(Schedule().empty());  // no member is free for either
  auto r = sched_->Complete("duo", big, a[0].attempt, "big-model");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, CompletionOutcome::kCommitted);
  for (const char* w : {"duo", "a", "b"}) EXPECT_EQ(Used(w), 0u) << w;
  a = Schedule();  // big2 takes the whole gang again; the small job still waits
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].worker, "duo");
  EXPECT_EQ(a[0].helpers.size(), 2u);
}

TEST_P(SchedulerTest, RestartedSchedulerResumesEveryJobAndKeepsLeases) {
  AddWorker("w1", 0, 64);
  JobId a1 = Submit("a", 1), a2 = Submit("a", 2);
  JobId b1 = Submit("b", 1);
  JobId c1 = Submit("c", 1);
  auto first = Schedule();
  ASSERT_EQ(first.size(), 3u);
  for (const auto& x : first) {
    if (x.job == a1) Complete(x);
    if (x.job == c1) {
      ASSERT_TRUE(sched_->Fail("w1", c1, x.attempt, "boom", false).ok());
    }
  }
  const JobCounts before = sched_->counts();

  Restart();  // the coordinator was killed; the worker reconnects
  EXPECT_EQ(sched_->counts().by_state, before.by_state);
  EXPECT_EQ(State(b1), JobState::kLeased);
  EXPECT_EQ(State(c1), JobState::kFailed);
  AddWorker("w1", 0, 64);
  EXPECT_EQ(sched_->FindWorker("w1")->used_slots, 1u);  // b1's lease
  auto next = Schedule();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].job, a2);
  EXPECT_EQ(next[0].parent_job, a1);
  auto r = sched_->Complete("w1", b1, 1, "b-model");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, CompletionOutcome::kCommitted);
  EXPECT_GT(Submit("d", 1), c1);  // ids continue after the restart
}

TEST_P(SchedulerTest, LeaseOfAWorkerThatNeverReturnsAfterARestartExpires) {
  AddWorker("gone", 1);
  JobId j = Submit("tap0", 1);
  ASSERT_EQ(Schedule().size(), 1u);
  Restart();
  clock_.Advance(options_.lease_ns);
  EXPECT_EQ(Tick().expired, std::vector<JobId>{j});
  AddWorker("new", 1);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].worker, "new");
}

TEST_P(SchedulerTest, StoreErrorLeavesTheJobAsItWas) {
  AddWorker("w1", 1);
  JobId j = Submit("tap0", 1);
  store_.set_put_status(absl::UnavailableError("disk full"));
  JobSpec spec;
  spec.link = "tap1";
  EXPECT_TRUE(absl::IsUnavailable(sched_->Submit(spec).status()));
  std::vector<Assignment> out;
  EXPECT_TRUE(absl::IsUnavailable(sched_->Schedule(&out)));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(State(j), JobState::kQueued);
  EXPECT_EQ(sched_->counts()[JobState::kQueued], 1u);
  EXPECT_EQ(sched_->FindWorker("w1")->used_slots, 0u);
  store_.set_put_status(absl::OkStatus());
  EXPECT_EQ(Schedule().size(), 1u);
  store_.set_list_status(absl::UnavailableError("gone"));
  EXPECT_TRUE(absl::IsUnavailable(Scheduler::Create(options_, &store_, &clock_).status()));
}

// Issue 17: a long stream of chunks, each committed, holds only the jobs
// that can still matter; a chunk sent again long after its job was evicted
// is still recognised as committed and not run again.
class EvictionTest : public SchedulerTest {
 protected:
  // 20,000 chunks in memory; fewer against RocksDB (every write is synced).
  int64_t Chunks() const { return GetParam() == "memory" ? 20000 : 500; }
  static constexpr int64_t kAhead = 8;  // chunks queued ahead of the one running
  static constexpr int64_t kGap = 77;   // a seq the ingest never sends
  static constexpr size_t kBound = kAhead + 3;

  // Streams seqs [0, n) but kGap through "tap0", kAhead queued ahead of the
  // running one, committing each in turn. Returns the ids by seq; fills the
  // most jobs held at once.
  std::vector<JobId> StreamAndCommit(int64_t n, size_t* max_resident) {
    AddWorker("w1", 1);
    std::vector<JobId> ids(n, 0);
    int64_t next = 0;
    auto submit_ahead = [&](int64_t upto) {
      for (; next < std::min(upto, n); ++next) {
        if (next != kGap) ids[next] = Submit("tap0", next);
      }
    };
    submit_ahead(kAhead);
    *max_resident = 0;
    for (int64_t seq = 0; seq < n; ++seq) {
      if (seq == kGap) continue;
      auto a = Schedule();
      if (a.size() != 1u || a[0].job != ids[seq]) {
        ADD_FAILURE() << "seq " << seq << ": " << a.size() << " leases";
        return ids;
      }
      const JobId parent = seq == 0 ? 0 : ids[seq - 1 == kGap ? seq - 2 : seq - 1];
      EXPECT_EQ(a[0].parent_job, parent) << "seq " << seq;
      EXPECT_EQ(Complete(a[0], "model-" + std::to_string(seq)), CompletionOutcome::kCommitted);
      submit_ahead(seq + 1 + kAhead);
      *max_resident = std::max(*max_resident, sched_->resident_jobs());
    }
    return ids;
  }
  SubmitResult SubmitAgain(int64_t seq, JobKind kind = JobKind::kCompress) {
    JobSpec spec;
    spec.link = "tap0";
    spec.seq = seq;
    spec.start_ns = seq * 60 * kSec;
    spec.kind = kind;
    spec.chunk_ref = "tap0/" + std::to_string(seq) + "-again";
    auto r = sched_->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : SubmitResult{};
  }
};

INSTANTIATE_TEST_SUITE_P(Stores, EvictionTest, ::testing::Values("memory", "rocksdb"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(EvictionTest, ManyCommittedChunksHoldBoundedMemoryAndOldDuplicatesAreNotRunAgain) {
  const int64_t n = Chunks();
  size_t max_resident = 0;
  std::vector<JobId> ids = StreamAndCommit(n, &max_resident);
  ASSERT_FALSE(HasFailure());
  EXPECT_LE(max_resident, kBound);
  EXPECT_LE(sched_->resident_jobs(), 2u);  // the last committed job (the next one's parent), and one left to prune
  EXPECT_EQ(sched_->counts()[JobState::kDone], static_cast<uint64_t>(n - 1));
  const JobId last = ids[n - 1];
  ASSERT_NE(sched_->FindJob(last), nullptr);
  EXPECT_EQ(sched_->FindJob(last)->state, JobState::kDone);

  // A restarted ingest sends old chunks again: recognised, nothing to run.
  for (int64_t seq : {int64_t{0}, int64_t{5}, kGap - 1, kGap + 1, n / 2, n - 2, n - 1}) {
    SubmitResult r = SubmitAgain(seq);
    EXPECT_FALSE(r.created) << "seq " << seq;
    EXPECT_TRUE(r.done) << "seq " << seq;
  }
  EXPECT_EQ(sched_->counts()[JobState::kQueued], 0u);
  EXPECT_TRUE(Schedule().empty());
  // An evicted job: its late result is a duplicate, its record is in the store.
  const JobId old = ids[5];
  EXPECT_EQ(sched_->FindJob(old), nullptr);
  EXPECT_TRUE(sched_->Evicted(old));
  EXPECT_FALSE(sched_->Evicted(last));
  EXPECT_FALSE(sched_->Evicted(last + 1000));
  EXPECT_EQ(*sched_->ClassifyResult(old), CompletionOutcome::kDuplicate);
  auto late = sched_->Complete("w1", old, 1, "late");
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->outcome, CompletionOutcome::kDuplicate);
  EXPECT_EQ(*sched_->Fail("w1", old, 1, "late"), FailureOutcome::kStale);
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Cancel(old).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Retry(old)));
  EXPECT_TRUE(absl::IsNotFound(sched_->ClassifyResult(last + 1000).status()));
  auto stored = store_.Get(old);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state, JobState::kDone);
  EXPECT_EQ(stored->result_ref, "model-5");
  EXPECT_EQ(sched_->counts()[JobState::kDone], static_cast<uint64_t>(n - 1));

  // A chunk never seen (the gap) and a retrain of an old chunk are new work.
  SubmitResult gap = SubmitAgain(kGap);
  EXPECT_TRUE(gap.created);
  EXPECT_FALSE(gap.done);
  EXPECT_TRUE(SubmitAgain(5, JobKind::kRetrain).created);
  EXPECT_EQ(sched_->counts()[JobState::kQueued], 2u);
}

TEST_P(EvictionTest, RestartAfterManyCommitsHoldsBoundedMemoryAndKeepsSequenceHandling) {
  const int64_t n = Chunks();
  size_t max_resident = 0;
  std::vector<JobId> ids = StreamAndCommit(n, &max_resident);
  ASSERT_FALSE(HasFailure());
  Submit("tap1", 1);  // another stream, one job queued
  const JobCounts before = sched_->counts();

  Restart();
  EXPECT_LE(sched_->resident_jobs(), 2u);  // tap0's last committed job, tap1's queued one
  EXPECT_EQ(sched_->counts().by_state, before.by_state);
  EXPECT_NE(sched_->FindJob(ids[n - 1]), nullptr);
  EXPECT_EQ(sched_->FindJob(ids[n - 2]), nullptr);
  EXPECT_TRUE(sched_->Evicted(ids[n - 2]));
  for (int64_t seq : {int64_t{0}, kGap + 1, n / 2, n - 2, n - 1}) {
    SubmitResult r = SubmitAgain(seq);
    EXPECT_FALSE(r.created) << "seq " << seq;
    EXPECT_TRUE(r.done) << "seq " << seq;
  }
  EXPECT_EQ(*sched_->ClassifyResult(ids[3]), CompletionOutcome::kDuplicate);

  // The next chunk runs after the last committed one, with it as parent; ids go on.
  AddWorker("w1", 0, 64);
  JobId next = Submit("tap0", n);
  EXPECT_GT(next, ids[n - 1]);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 2u);  // tap0's next chunk and tap1's
  const Assignment& an = a[0].job == next ? a[0] : a[1];
  ASSERT_EQ(an.job, next);
  EXPECT_EQ(an.parent_job, ids[n - 1]);
  EXPECT_EQ(Complete(an), CompletionOutcome::kCommitted);
  EXPECT_LE(sched_->resident_jobs(), 3u);
  EXPECT_TRUE(SubmitAgain(kGap).created);  // the gap is still open after the restart
}

// Issue 17: records are not kept forever. Old committed records are deleted
// by pages; the scheduler answers as before, also after a restart that
// reads only the JobHistory and what is left, and ids never go back.
TEST_P(EvictionTest, ExpiredRecordsLeaveTheStoreButNotWhatTheyCommitted) {
  const int64_t n = Chunks();
  size_t max_resident = 0;
  std::vector<JobId> ids = StreamAndCommit(n, &max_resident);
  ASSERT_FALSE(HasFailure());
  const JobId last = ids[n - 1];
  // Too young: nothing goes.
  auto none = sched_->ExpireHistory(clock_.NowNs() - 3600 * kSec, 100000, [](const JobRecord&) { return true; });
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0u);
  clock_.Advance(7200 * kSec);
  // A predicate that keeps seq 5 (say its raw chunk is still on disk).
  auto keep5 = [&](const JobRecord& r) { return r.seq != 5; };
  size_t deleted = 0;
  const size_t page = static_cast<size_t>(n / 7);
  for (int call = 0; call < 20; ++call) {
    auto got = sched_->ExpireHistory(clock_.NowNs() - 3600 * kSec, page, keep5);
    ASSERT_TRUE(got.ok()) << got.status();
    deleted += *got;
  }
  const size_t resident = sched_->resident_jobs();
  EXPECT_EQ(deleted, static_cast<size_t>(n - 1) - 1 - resident) << "every evicted record but seq 5's";
  auto left = store_.List();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), resident + 1);
  EXPECT_TRUE(absl::IsNotFound(store_.Get(ids[3]).status()));
  EXPECT_TRUE(store_.Get(ids[5]).ok());
  EXPECT_TRUE(store_.Get(last).ok()) << "the next chunk's parent stays";
  EXPECT_EQ(sched_->counts()[JobState::kDone], static_cast<uint64_t>(n - 1) - deleted);

  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE(restart ? "after a restart" : "before a restart");
    for (int64_t seq : {int64_t{0}, int64_t{3}, int64_t{5}, kGap + 1, n / 2, n - 2, n - 1}) {
      SubmitResult r = SubmitAgain(seq);
      EXPECT_FALSE(r.created) << "seq " << seq;
      EXPECT_TRUE(r.done) << "seq " << seq;
    }
    EXPECT_TRUE(sched_->Evicted(ids[3]));
    EXPECT_EQ(*sched_->ClassifyResult(ids[3]), CompletionOutcome::kDuplicate);
    EXPECT_EQ(sched_->counts()[JobState::kDone], static_cast<uint64_t>(n - 1) - deleted);
    EXPECT_EQ(sched_->StreamsWithCommits(), (std::vector<std::pair<std::string, uint32_t>>{{"tap0", 0}}));
    Restart();
  }
  // Ids go on past every expired one; the gap is still open; the next chunk
  // takes the last committed job as its parent.
  AddWorker("w1", 1);
  JobId next = Submit("tap0", n);
  EXPECT_GT(next, last);
  auto a = Schedule();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].parent_job, last);
  EXPECT_EQ(Complete(a[0]), CompletionOutcome::kCommitted);
  EXPECT_TRUE(SubmitAgain(kGap).created);
  // Every record but the newest can go once old; a restart with (nearly)
  // nothing but the history still knows every committed chunk.
  clock_.Advance(7200 * kSec);
  for (int call = 0; call < 3; ++call) {
    ASSERT_TRUE(sched_->ExpireHistory(clock_.NowNs(), 100000, [](const JobRecord&) { return true; }).ok());
  }
  Restart();
  EXPECT_LE(store_.List()->size(), 4u);
  for (int64_t seq : {int64_t{0}, int64_t{5}, n - 1, n}) EXPECT_TRUE(SubmitAgain(seq).done) << "seq " << seq;
  EXPECT_GT(Submit("tap0", n + 1), next);
}

// ExpireHistory writes the JobHistory, then deletes the page. A coordinator
// killed between the two (the deletion never lands) or before the history
// (neither lands) restarts from records the history also covers, or from
// the records alone: every committed chunk is still answered done, counted
// once, and ids never go back; the next sweep deletes the page.
TEST_P(EvictionTest, ACrashAroundTheHistoryWriteLosesAndDoublesNothing) {
  const int64_t n = Chunks();
  size_t max_resident = 0;
  std::vector<JobId> ids = StreamAndCommit(n, &max_resident);
  ASSERT_FALSE(HasFailure());
  const JobId last = ids[n - 1];
  const size_t records = store_.List()->size();
  const uint64_t done = sched_->counts()[JobState::kDone];
  ASSERT_EQ(done, static_cast<uint64_t>(n - 1));
  clock_.Advance(7200 * kSec);
  auto all = [](const JobRecord&) { return true; };
  auto answers_every_seq_done = [&](const char* when) {
    SCOPED_TRACE(when);
    for (int64_t seq : {int64_t{0}, int64_t{3}, kGap + 1, n / 2, n - 2, n - 1}) {
      SubmitResult r = SubmitAgain(seq);
      EXPECT_FALSE(r.created) << "seq " << seq;
      EXPECT_TRUE(r.done) << "seq " << seq;
    }
  };
  // Killed before the history: nothing written, nothing deleted.
  store_.set_put_status(absl::UnavailableError("killed before the history"));
  EXPECT_FALSE(sched_->ExpireHistory(clock_.NowNs(), 100000, all).ok());
  store_.set_put_status(absl::OkStatus());
  EXPECT_EQ(store_.List()->size(), records);
  Restart();
  answers_every_seq_done("killed before the history");
  EXPECT_EQ(sched_->counts()[JobState::kDone], done);
  // Killed between the history and the deletions: the history covers the
  // records still there; a restart merges both and counts each job once.
  store_.set_delete_status(absl::UnavailableError("killed before the deletions"));
  EXPECT_FALSE(sched_->ExpireHistory(clock_.NowNs(), 100000, all).ok());
  store_.set_delete_status(absl::OkStatus());
  EXPECT_EQ(store_.List()->size(), records) << "the deletions never landed";
  auto h = store_.GetHistory();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_GE(h->next_id, last);
  EXPECT_FALSE(h->streams.empty()) << "the history landed";
  Restart();
  answers_every_seq_done("killed between the history and the deletions");
  EXPECT_EQ(sched_->counts()[JobState::kDone], done) << "no job counted twice after the merge";
  // The next sweep deletes the page; the answers stay.
  auto swept = sched_->ExpireHistory(clock_.NowNs(), 100000, all);
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_GT(*swept, 0u);
  EXPECT_EQ(store_.List()->size(), records - *swept);
  EXPECT_EQ(sched_->counts()[JobState::kDone], done - *swept);
  Restart();
  answers_every_seq_done("after the sweep");
  EXPECT_EQ(sched_->counts()[JobState::kDone], done - *swept);
  AddWorker("w1", 1);
  EXPECT_GT(Submit("tap0", n), last) << "ids go on past every expired one";
}

TEST(JobHistoryTest, RoundTripsAndRefusesRunsOutOfOrder) {
  JobHistory h;
  h.next_id = 12345;
  h.streams[{"tap0", 0}].compress = {{0, 76}, {78, 499}};
  h.streams[{"tap0", 0}].retrain = {{0, 0}};
  h.streams[{"a/b", 3}].compress = {{-5, -1}};
  auto back = DecodeJobHistory(EncodeJobHistory(h));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->next_id, 12345u);
  ASSERT_EQ(back->streams.size(), 2u);
  EXPECT_EQ((back->streams[{"tap0", 0}].compress), (std::map<int64_t, int64_t>{{0, 76}, {78, 499}}));
  EXPECT_EQ((back->streams[{"a/b", 3}].compress), (std::map<int64_t, int64_t>{{-5, -1}}));
  for (const char* bad : {"", "[]", R"({"streams": []})", R"({"next_id": 1, "streams": [{"link": "x"}]})",
                          R"({"next_id": 1, "streams": [{"link": "x", "shard": 0, "compress": [[5, 9], [9, 12]]}]})",
                          R"({"next_id": 1, "streams": [{"link": "x", "shard": 0, "compress": [[5, 4]]}]})",
                          R"({"next_id": 1, "streams": [{"link": "x", "shard": 0, "retrain": [[1]]}]})"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(DecodeJobHistory(bad).status())) << bad;
  }
}

TEST_P(EvictionTest, RetryOfACancelledJobIsRefusedWhenAnEvictedCommittedJobCoversTheChunk) {
  AddWorker("w1", 1);
  JobId j1 = Submit("tap0", 1);
  ASSERT_TRUE(sched_->Cancel(j1).ok());
  JobId j1b = Submit("tap0", 1);
  for (int64_t seq = 2; seq <= 4; ++seq) Submit("tap0", seq);
  for (int i = 0; i < 4; ++i) {
    auto a = Schedule();
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(Complete(a[0]), CompletionOutcome::kCommitted);
  }
  ASSERT_TRUE(sched_->Evicted(j1b));
  EXPECT_TRUE(absl::IsFailedPrecondition(sched_->Retry(j1)));
  EXPECT_EQ(State(j1), JobState::kCancelled);
  EXPECT_TRUE(Schedule().empty());
}

TEST_P(SchedulerTest, RejectsOptionsThatCannotWork) {
  SchedulerOptions o;
  o.max_failures = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(Scheduler::Create(o, &store_, &clock_).status()));
  o = SchedulerOptions();
  o.lease_ns = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(Scheduler::Create(o, &store_, &clock_).status()));
}

}  // namespace
}  // namespace dgc

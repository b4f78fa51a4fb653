// A bounded run of the scheduler simulation (tests/bench/scheduler_sim.cc
// runs the full size): every job finishes, each is committed once, in chunk
// order per stream, and no worker exceeds its capacity.
#include "coordinator/scheduler/simulation.h"

#include "gtest/gtest.h"

namespace dgc {
namespace {

TEST(SchedulerSimulationTest, SmallClusterFinishesEveryJobOnceInOrderWithinCapacity) {
  SimulationOptions o;
  o.workers = 40;
  o.jobs = 4000;
  o.links = 100;
  o.fail_fraction = 0.03;
  o.expire_fraction = 0.02;
  o.max_rounds = 2000;
  auto r = RunSchedulerSimulation(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_done + r->jobs_failed, 4000u);
  EXPECT_EQ(r->commits, r->jobs_done);
  EXPECT_EQ(r->order_violations, 0u);
  EXPECT_EQ(r->double_commits, 0u);
  EXPECT_EQ(r->concurrent_in_stream, 0u);
  EXPECT_EQ(r->capacity_violations, 0u);
  EXPECT_GT(r->failures_reported, 0u);
  EXPECT_GT(r->leases_expired, 0u);
  EXPECT_GT(r->duplicates, 0u);  // late results of expired leases
  EXPECT_GE(r->rounds, 40u);     // 40 chunks per link run one after another
}

TEST(SchedulerSimulationTest, FailedJobsBlockingStreamsIsReportedNotHung) {
  SimulationOptions o;
  o.workers = 10;
  o.jobs = 400;
  o.links = 10;
  o.fail_fraction = 0.5;  // some jobs reach max_failures
  o.expire_fraction = 0;
  o.max_rounds = 500;
  // Without blocking, a job that failed for good is skipped and its stream
  // goes on: every job ends, some of them failed, the invariants hold.
  auto free = RunSchedulerSimulation(o);
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_EQ(free->jobs_done + free->jobs_failed, 400u);
  EXPECT_GT(free->jobs_failed, 0u) << "no job reached max_failures: the blocking run below proves nothing";
  EXPECT_EQ(free->commits, free->jobs_done);
  EXPECT_EQ(free->order_violations, 0u);
  EXPECT_EQ(free->double_commits, 0u);
  EXPECT_EQ(free->concurrent_in_stream, 0u);
  EXPECT_EQ(free->capacity_violations, 0u);
  // With blocking, the same run (same seed) holds back the jobs behind a
  // failed one: it stops with a clear "stuck" error well before max_rounds,
  // instead of spinning until it runs out of rounds.
  o.scheduler.failed_job_blocks_stream = true;
  auto blocked = RunSchedulerSimulation(o);
  ASSERT_FALSE(blocked.ok()) << "every job finished although failed jobs block their streams";
  EXPECT_NE(blocked.status().message().find("stuck"), std::string::npos) << blocked.status();
}

}  // namespace
}  // namespace dgc

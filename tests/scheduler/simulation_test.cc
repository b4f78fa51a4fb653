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
  o.scheduler.failed_job_blocks_stream = true;
  auto r = RunSchedulerSimulation(o);
  // Either everything finished, or the run stops with a clear error instead
  // of spinning.
  if (!r.ok()) EXPECT_NE(r.status().message().find("stuck"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace dgc

// An in-process simulation of the scheduler at ISP scale: many workers, many
// links, jobs that fail, leases that expire and late duplicate results. It
// measures the scheduler's own cost (no sockets, no training) and checks its
// invariants on every event. Used by tests/bench/scheduler_sim.cc (the
// planning table) and by a bounded unit test.
#ifndef DGC_COORDINATOR_SCHEDULER_SIMULATION_H_
#define DGC_COORDINATOR_SCHEDULER_SIMULATION_H_

#include <cstdint>

#include "common/base/status.h"
#include "coordinator/scheduler/scheduler.h"

namespace dgc {

struct SimulationOptions {
  uint32_t workers = 1000;
  uint32_t jobs = 100'000;
  uint32_t links = 2000;          // streams; jobs are spread round-robin, in chunk order
  // Worker mix: this fraction has 4 GPUs, this one 1 GPU, the rest are CPU
  // workers with 16 threads (2 slots at the default cpu_threads_per_slot).
  double multi_gpu_fraction = 0.1;
  double single_gpu_fraction = 0.4;
  double large_fraction = 0.05;   // jobs of large_job_packets or more
  double retrain_fraction = 0.02;
  double fail_fraction = 0.01;    // leases that report a failure
  double expire_fraction = 0.005; // leases whose worker goes silent (then a late duplicate)
  uint32_t seed = 1;
  uint32_t max_rounds = 1'000'000;  // bound on scheduling rounds
  // Failed jobs do not block their streams here, so every run finishes.
  SchedulerOptions scheduler = [] {
    SchedulerOptions s;
    s.failed_job_blocks_stream = false;
    return s;
  }();
};

struct SimulationResult {
  uint64_t jobs_done = 0;
  uint64_t jobs_failed = 0;
  uint64_t rounds = 0;
  uint64_t assignments = 0;
  uint64_t commits = 0;
  uint64_t duplicates = 0;       // late results acknowledged as duplicates
  uint64_t preempted = 0;        // late results that committed and ended a newer lease
  uint64_t failures_reported = 0;
  uint64_t leases_expired = 0;
  uint64_t store_puts = 0;
  // Invariant checks, each must be 0.
  uint64_t order_violations = 0;     // a job committed before an earlier one of its stream
  uint64_t double_commits = 0;
  uint64_t concurrent_in_stream = 0; // two leases of one stream at once
  uint64_t capacity_violations = 0;  // a worker given more than its slots
  // Cost, in microseconds of wall time spent inside the scheduler.
  double submit_us = 0;
  double schedule_us = 0;   // Schedule() calls
  double complete_us = 0;   // Complete() and Fail() calls
  double heartbeat_tick_us = 0;  // Heartbeat() for every worker each round, and Tick()
};

// Runs the simulation to the end (every job done or failed) or max_rounds.
// Errors: the scheduler's (store errors cannot happen with the in-memory
// store), or Internal when the run does not finish within max_rounds.
[[nodiscard]] StatusOr<SimulationResult> RunSchedulerSimulation(const SimulationOptions& options);

}  // namespace dgc

#endif  // DGC_COORDINATOR_SCHEDULER_SIMULATION_H_

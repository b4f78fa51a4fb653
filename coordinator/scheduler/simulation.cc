#include "coordinator/scheduler/simulation.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dgc {
namespace {

using Steady = std::chrono::steady_clock;

double Us(Steady::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

struct InFlight {
  Assignment a;
  int fate = 0;  // 0 complete, 1 fail, 2 silent (lease expires; a late result follows)
};

}  // namespace

StatusOr<SimulationResult> RunSchedulerSimulation(const SimulationOptions& o) {
  SimulationResult res;
  ManualClock clock;
  InMemoryJobStore store;
  DGC_ASSIGN_OR_RETURN(auto sched, Scheduler::Create(o.scheduler, &store, &clock));
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> uni(0, 1);

  // Workers.
  std::vector<std::string> worker_ids;
  std::unordered_map<std::string, uint32_t> slots, used;
  for (uint32_t i = 0; i < o.workers; ++i) {
    WorkerCapacity c;
    double r = uni(rng);
    if (r < o.multi_gpu_fraction) {
      c.gpus = 4;
      c.cpu_threads = 64;
    } else if (r < o.multi_gpu_fraction + o.single_gpu_fraction) {
      c.gpus = 1;
      c.cpu_threads = 16;
    } else {
      c.cpu_threads = 16;
    }
    std::string id = absl::StrCat("worker-", i);
    DGC_RETURN_IF_ERROR(sched->RegisterWorker(id, c));
    slots[id] = sched->FindWorker(id)->slots;
    used[id] = 0;
    worker_ids.push_back(std::move(id));
  }

  // Jobs: link i % links, seq i / links, so every link's chunks arrive in order.
  const int64_t chunk_ns = 60LL * 1'000'000'000;
  std::lognormal_distribution<double> size(std::log(200'000.0), 1.0);
  auto t0 = Steady::now();
  for (uint32_t i = 0; i < o.jobs; ++i) {
    JobSpec spec;
    spec.link = absl::StrCat("link-", i % o.links);
    spec.seq = 28'000'000 + i / o.links;
    spec.start_ns = spec.seq * chunk_ns;
    spec.kind = uni(rng) < o.retrain_fraction ? JobKind::kRetrain : JobKind::kCompress;
    spec.packets = uni(rng) < o.large_fraction ? o.scheduler.large_job_packets * 2
                                               : std::min<uint64_t>(size(rng), o.scheduler.large_job_packets - 1);
    spec.chunk_ref = absl::StrCat(spec.link, "/", spec.seq);
    DGC_RETURN_IF_ERROR(sched->Submit(spec).status());
  }
  res.submit_us = Us(Steady::now() - t0);

  std::unordered_map<JobId, uint32_t> commit_count;
  std::unordered_map<std::string, int64_t> last_committed_seq;  // by link
  // The simulation's own view of the leases, to check the scheduler's.
  std::unordered_map<JobId, Assignment> leases;
  std::unordered_map<std::string, uint32_t> leased_in_stream;
  auto release = [&](JobId job) {
    auto it = leases.find(job);
    if (it == leases.end()) return;
    used[it->second.worker] -= it->second.slots;
    --leased_in_stream[sched->FindJob(job)->link];
    leases.erase(it);
  };
  std::vector<InFlight> late;  // silent leases: their results arrive after the re-lease
  std::vector<Assignment> batch;
  std::vector<InFlight> flight;

  auto on_commit = [&](JobId id) {
    const JobRecord* r = sched->FindJob(id);
    if (++commit_count[id] > 1) ++res.double_commits;
    auto [it, fresh] = last_committed_seq.emplace(r->link, r->seq);
    if (!fresh) {
      if (r->seq < it->second) ++res.order_violations;
      it->second = std::max(it->second, r->seq);
    }
    ++res.commits;
  };
  // A result from the lease `a`, possibly after it expired.
  auto deliver = [&](const Assignment& a, const char* ref) -> Status {
    auto t = Steady::now();
    auto done = sched->Complete(a.worker, a.job, a.attempt, ref);
    res.complete_us += Us(Steady::now() - t);
    DGC_RETURN_IF_ERROR(done.status());
    if (done->outcome == CompletionOutcome::kDuplicate) ++res.duplicates;
    if (done->outcome == CompletionOutcome::kCommitted) {
      on_commit(a.job);
      if (!done->preempted_worker.empty()) ++res.preempted;
      release(a.job);  // whoever held it: the scheduler ended that lease
    }
    return absl::OkStatus();
  };

  while (res.rounds < o.max_rounds) {
    const JobCounts& c = sched->counts();
    if (c[JobState::kDone] + c[JobState::kFailed] + c[JobState::kCancelled] == o.jobs) break;
    ++res.rounds;

    batch.clear();
    t0 = Steady::now();
    DGC_RETURN_IF_ERROR(sched->Schedule(&batch));
    res.schedule_us += Us(Steady::now() - t0);
    res.assignments += batch.size();
    if (batch.empty() && late.empty() && leases.empty()) {
      return absl::InternalError(absl::StrCat("simulation stuck in round ", res.rounds, ": nothing to hand out"));
    }

    flight.clear();
    for (const Assignment& a : batch) {
      if ((used[a.worker] += a.slots) > slots[a.worker]) ++res.capacity_violations;
      if (++leased_in_stream[sched->FindJob(a.job)->link] > 1) ++res.concurrent_in_stream;
      leases[a.job] = a;
      double roll = uni(rng);
      flight.push_back({a, roll < o.fail_fraction ? 1 : roll < o.fail_fraction + o.expire_fraction ? 2 : 0});
    }
    std::shuffle(flight.begin(), flight.end(), rng);

    // Late results of last round's silent leases (their jobs were requeued
    // and most are leased again by now): half arrive before the new holders
    // finish (they commit and end the new lease), half after (duplicates).
    std::vector<InFlight> pending_late;
    pending_late.swap(late);
    for (size_t i = 0; i < pending_late.size(); i += 2) DGC_RETURN_IF_ERROR(deliver(pending_late[i].a, "late"));

    for (const InFlight& f : flight) {
      if (f.fate == 2) {  // silent: the lease expires below, the result comes later
        late.push_back(f);
        continue;
      }
      if (f.fate == 1) {
        t0 = Steady::now();
        auto out = sched->Fail(f.a.worker, f.a.job, f.a.attempt, "simulated failure");
        res.complete_us += Us(Steady::now() - t0);
        DGC_RETURN_IF_ERROR(out.status());
        if (*out != FailureOutcome::kStale) {
          ++res.failures_reported;
          release(f.a.job);
        }
      } else {
        DGC_RETURN_IF_ERROR(deliver(f.a, "model"));
      }
    }
    for (size_t i = 1; i < pending_late.size(); i += 2) DGC_RETURN_IF_ERROR(deliver(pending_late[i].a, "late"));

    // Time passes; every worker sends a heartbeat listing nothing (its work
    // of this round is finished or silently lost), then the lease timer
    // fires: the silent leases run out.
    clock.Advance(o.scheduler.lease_ns + 1);
    std::vector<JobId> none;
    t0 = Steady::now();
    for (const std::string& id : worker_ids) DGC_RETURN_IF_ERROR(sched->Heartbeat(id, none));
    TickReport report;
    DGC_RETURN_IF_ERROR(sched->Tick(&report));
    res.heartbeat_tick_us += Us(Steady::now() - t0);
    res.leases_expired += report.expired.size();
    for (JobId j : report.expired) release(j);
    if (!report.lost_workers.empty()) {
      return absl::InternalError("simulation: a worker was forgotten despite heartbeats");
    }
  }
  const JobCounts& c = sched->counts();
  res.jobs_done = c[JobState::kDone];
  res.jobs_failed = c[JobState::kFailed];
  res.store_puts = store.puts();
  if (res.jobs_done + res.jobs_failed + c[JobState::kCancelled] != o.jobs) {
    return absl::InternalError(absl::StrCat("simulation did not finish in ", o.max_rounds, " rounds: ",
                                            res.jobs_done, " done, ", res.jobs_failed, " failed of ", o.jobs));
  }
  return res;
}

}  // namespace dgc

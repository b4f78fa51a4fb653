// dgc-scheduler-sim: the scheduler at ISP scale, in one process. Runs the
// simulation of coordinator/scheduler/simulation.h (default: 1,000 workers,
// 100,000 jobs over 2,000 links, with failures, lease expiries and late
// duplicate results) and prints what the scheduler cost per job and how much
// memory the process took. Run by hand (Release build):
//   build/tests/bench/dgc-scheduler-sim [--workers N] [--jobs N] [--links N] [-o json]
#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "coordinator/scheduler/simulation.h"

namespace {

// VmRSS and VmHWM (peak RSS) of this process, in KiB, from /proc/self/status.
struct Memory {
  long rss_kib = -1;
  long peak_kib = -1;
};

Memory ReadMemory() {
  Memory m;
  std::ifstream in("/proc/self/status");
  std::string key;
  long value;
  std::string unit;
  while (in >> key) {
    if (key == "VmRSS:" && in >> value >> unit) m.rss_kib = value;
    else if (key == "VmHWM:" && in >> value >> unit) m.peak_kib = value;
    else in.ignore(1 << 20, '\n');
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  dgc::SimulationOptions o;
  std::string format = "table";
  CLI::App app{"Simulates the dgc scheduler: cost per job and memory at ISP scale"};
  app.add_option("--workers", o.workers, "workers (10% with 4 GPUs, 40% with 1, the rest CPU)")->capture_default_str();
  app.add_option("--jobs", o.jobs, "jobs")->capture_default_str();
  app.add_option("--links", o.links, "links (streams)")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed")->capture_default_str();
  app.add_option("-o,--output", format, "table or json")->check(CLI::IsMember({"table", "json"}));
  CLI11_PARSE(app, argc, argv);

  const Memory before = ReadMemory();
  auto r = dgc::RunSchedulerSimulation(o);
  const Memory after = ReadMemory();
  if (!r.ok()) {
    std::fprintf(stderr, "dgc-scheduler-sim: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  const double jobs = o.jobs;
  const double per_job = (r->schedule_us + r->complete_us) / jobs;
  if (format == "json") {
    nlohmann::json j = {
        {"workers", o.workers}, {"jobs", o.jobs}, {"links", o.links}, {"rounds", r->rounds},
        {"assignments", r->assignments}, {"commits", r->commits}, {"duplicates", r->duplicates}, {"preempted", r->preempted},
        {"failures_reported", r->failures_reported}, {"leases_expired", r->leases_expired},
        {"jobs_failed", r->jobs_failed}, {"store_puts", r->store_puts},
        {"submit_us_per_job", r->submit_us / jobs}, {"schedule_us_per_job", r->schedule_us / jobs},
        {"complete_us_per_job", r->complete_us / jobs}, {"assign_complete_us_per_job", per_job},
        {"heartbeat_tick_us_per_round", r->heartbeat_tick_us / r->rounds},
        {"rss_before_kib", before.rss_kib}, {"rss_after_kib", after.rss_kib},
        {"peak_rss_before_kib", before.peak_kib}, {"peak_rss_after_kib", after.peak_kib},
        {"violations", r->order_violations + r->double_commits + r->concurrent_in_stream + r->capacity_violations}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("dgc scheduler simulation: %u workers, %u jobs over %u links, %lu rounds\n", o.workers, o.jobs,
              o.links, static_cast<unsigned long>(r->rounds));
  std::printf("(scheduler calls only, timed with steady_clock; in-memory JobStore; one thread)\n\n");
  std::printf("%-56s %14s\n", "MEASURE", "VALUE");
  auto row = [](const char* name, double v, const char* unit) { std::printf("%-56s %11.3f %s\n", name, v, unit); };
  auto count = [](const char* name, uint64_t v) { std::printf("%-56s %14lu\n", name, static_cast<unsigned long>(v)); };
  row("submit, per job", r->submit_us / jobs, "us");
  row("assign (Schedule), per job", r->schedule_us / jobs, "us");
  row("complete or fail, per job", r->complete_us / jobs, "us");
  row("assign + complete, per job", per_job, "us");
  row("heartbeats of every worker + Tick, per round", r->heartbeat_tick_us / r->rounds, "us");
  count("leases handed out", r->assignments);
  count("jobs committed", r->commits);
  count("jobs failed (3 failures)", r->jobs_failed);
  count("failures reported", r->failures_reported);
  count("leases expired", r->leases_expired);
  count("late results acknowledged as duplicates", r->duplicates);
  count("late results that committed first (newer lease ended)", r->preempted);
  count("job store writes", r->store_puts);
  count("invariant violations (order, twice, capacity)",
        r->order_violations + r->double_commits + r->concurrent_in_stream + r->capacity_violations);
  row("process RSS before", before.rss_kib / 1024.0, "MiB");
  row("process RSS after (all jobs held)", after.rss_kib / 1024.0, "MiB");
  row("process peak RSS (VmHWM) after", after.peak_kib / 1024.0, "MiB");
  row("peak RSS growth per job", (after.peak_kib - before.rss_kib) * 1024.0 / jobs, "bytes");
  return 0;
}

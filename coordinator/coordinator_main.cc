// dgc-coordinator: owns the model library (RocksDB) and the jobs, schedules
// chunk compression onto workers, serves the operator API and /metrics.
// The contract (flags, ports, metrics): deploy/PROCESSES.md.
#include <csignal>
#include <iostream>

#include <boost/asio.hpp>

#include "CLI/CLI.hpp"
#include "common/base/logging.h"
#include "common/base/units.h"
#include "common/runtime/health_server.h"
#include "common/runtime/process.h"
#include "coordinator/server.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{"dgc-coordinator: the model library, the job scheduler and the operator API of dgc"};
  app.footer(R"(Workers and ingest nodes connect to --listen, dgcctl to --api. Jobs and
models live in --library (RocksDB); a restarted coordinator resumes every job.

Examples:
  dgc-coordinator --library /var/lib/dgc/library
  dgc-coordinator --library lib/ --listen tcp://0.0.0.0:7070 --curve-secret-key-file coord.key \
      --curve-allow-dir clients/
  dgc-coordinator --config /etc/dgc/coordinator.conf

A full disk under --library pauses chunk intake (ingests keep their chunks
and resend them; /readyz says why) until a chunk can be stored again. A
database write that hits the full disk ends the process with status 75, as a
kill would (nothing unacknowledged is lost): start it again once there is
space (deploy/PROCESSES.md).

Exit status: 0 after SIGTERM or SIGINT (clean shutdown), 1 on a configuration
or startup error, 75 when the library's disk filled under a database write.)");
  dgc::runtime::CommonFlags common;
  dgc::runtime::AddCommonFlags(app, dgc::runtime::Role::kCoordinator, &common);
  dgc::CoordinatorOptions o;
  double lease_s = 60, heartbeat_s = 5, raw_retention_s = 0, job_history_h = 168, library_memory_mb = 64, pack_h = 168, pack_grace_s = 3600;
  // Training knobs sent to the workers with every job (defaults: dgcctl compress's).
  int steps = 60, warmup_steps = 600, rank = 4, sample_flows = 2048, min_flows = 4096, check_flows = 4096;
  int width = 64, depth = 2, heads = 4, packets_per_flow = 16, warmup_flows = 20000;
  double seconds = 20, warmup_seconds = 120;
  uint64_t seed = 1;
  bool no_check = false, no_exact = false;
  uint32_t futile_after = 2;
  double min_delta_gain = 0.01;
  std::string budget = "0.1x";
  app.add_option("--listen", o.listen, "ZeroMQ endpoint for workers and ingest")->capture_default_str();
  app.add_option("--api", o.api, "ZeroMQ endpoint for dgcctl")->capture_default_str();
  app.add_option("--library", o.library_dir, "model library directory (RocksDB; created if absent)")->required();
  app.add_option("--lease-seconds", lease_s, "a job whose worker sends no heartbeat this long is requeued")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-seconds", heartbeat_s, "the heartbeat interval workers are told to use")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-attempts", o.max_attempts, "a job failing this often is marked failed")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--large-job-packets", o.large_job_packets,
                 "a chunk of at least this many packets leases a whole multi-GPU worker, which trains it "
                 "data-parallel over its GPUs")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-workers-per-job", o.max_workers_per_job,
                 "a large job may span this many idle workers that advertise --peer-address, trained "
                 "data-parallel across them (1: one worker per job)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--fidelity-target", o.fidelity_target, "mean distance over the 17 metrics a chunk must reach")
      ->capture_default_str();
  app.add_option("--library-memory-mb", library_memory_mb,
                 "RocksDB's memory for the library: half memtables (all column families), half one shared block "
                 "cache; 0: RocksDB's defaults (up to 64 MiB of memtable and 32 MiB of cache per column family)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--job-history-hours", job_history_h,
                 "a committed job's record is deleted this long after it changed, once its raw chunk is gone "
                 "(what it committed is kept: a resent chunk is still not run again); 0 keeps every record")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--pack-hours", pack_h,
                 "a link's quiet chunks of each closed span of this many hours (aligned to the epoch; 24: UTC "
                 "days) go into one compressed pack, an hour after the span ends; 0: no packing")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--pack-grace-seconds", pack_grace_s,
                 "a span is closed once the clock and the link's newest chunk are this far past its end")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--raw-retention-seconds", raw_retention_s, "raw chunks are deleted this long after their model is committed")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--shared-dir", o.shared_dir, "chunks go to workers by path under DIR (mounted on both)");
  app.add_option("--base", o.base_model_file,
                 "a base model from 'dgcctl warmup' for new links (default: a link's first chunk trains one)");
  app.add_option("--steps", steps, "fine-tune steps per chunk")->capture_default_str();
  app.add_option("--seconds", seconds, "fine-tune time budget per chunk")->capture_default_str();
  app.add_option("--rank", rank, "adapter rank")->capture_default_str();
  app.add_option("--sample-flows", sample_flows, "flows per chunk the fine-tune sees, at most")->capture_default_str();
  app.add_option("--min-flows", min_flows,
                 "fewer flows: share the previous model; a retrain by drift on fewer flows is deferred")
      ->capture_default_str();
  app.add_flag("--no-check", no_check, "workers skip the fidelity check");
  app.add_option("--min-delta-gain", min_delta_gain,
                 "as dgcctl compress: a delta must beat its parent's check mean by this much, else it is dropped")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--futile-after", futile_after,
                 "as dgcctl compress: skip fine-tuning a parent whose last N fine-tunes were dropped (0: never)")
      ->capture_default_str();
  app.add_option("--budget", budget,
                 "bytes each chunk may keep (as dgcctl compress --budget): 0.1x of zstd -19 of its header-only "
                 "pcap, 50KB per million packets, or none")
      ->capture_default_str();
  app.add_flag("--no-exact", no_exact, "keep no flow exactly (model only)");
  app.add_option("--check-flows", check_flows, "flows the fidelity check scores (0: whole chunk)")->capture_default_str();
  app.add_option("--warmup-steps", warmup_steps, "base training steps (a new link's first chunk)")->capture_default_str();
  app.add_option("--warmup-seconds", warmup_seconds, "base training time budget")->capture_default_str();
  app.add_option("--warmup-flows", warmup_flows, "flows a base is trained on, at most")->capture_default_str();
  app.add_option("--width", width, "model width of a base trained here")->capture_default_str();
  app.add_option("--depth", depth, "transformer blocks")->capture_default_str();
  app.add_option("--heads", heads, "attention heads")->capture_default_str();
  app.add_option("--packets-per-flow", packets_per_flow, "packets of each flow with their own tokens")->capture_default_str();
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--drift-threshold", o.selector.drift_threshold,
                 "as dgcctl compress: above this drift against the latest model, look for a nearer model")
      ->capture_default_str();
  app.add_option("--retrain-threshold", o.selector.retrain_threshold,
                 "above this drift against every candidate, a new base is trained on the chunk (a retrain job first)")
      ->capture_default_str();
  app.add_option("--first-base-chunks", o.first_base_chunks,
                 "without --base, a link's first base trains on its first this many chunks (fewer when they hold "
                 "--warmup-flows flows, or when no more came within this many chunk lengths), as dgcctl compress "
                 "--warmup-chunks; 1: on its first chunk at once")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--max-depth", o.selector.max_depth, "longest delta chain; past it a new base is trained")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  if (int rc = dgc::runtime::ParseCommandLine(app, argc, argv, "dgc-coordinator"); rc >= 0) return rc;
  dgc::InitLogging("dgc-coordinator", common.log_level);

  if (auto b = dgc::ParseBudget(budget); !b.ok()) {
    spdlog::error("{}", std::string(b.status().message()));
    return 1;
  }
  o.lease_ns = static_cast<int64_t>(lease_s * 1e9);
  o.heartbeat_ns = static_cast<int64_t>(heartbeat_s * 1e9);
  o.raw_retention_ns = static_cast<int64_t>(raw_retention_s * 1e9);
  o.job_history_ns = static_cast<int64_t>(job_history_h * 3600e9);
  o.pack_span_ns = static_cast<int64_t>(pack_h * 3600e9);
  o.pack_grace_ns = static_cast<int64_t>(pack_grace_s * 1e9);
  o.job_options = {{"steps", steps}, {"seconds", seconds}, {"rank", rank}, {"sample_flows", sample_flows},
                   {"min_flows", min_flows}, {"check", !no_check}, {"check_flows", check_flows},
                   {"warmup_steps", warmup_steps}, {"warmup_seconds", warmup_seconds},
                   {"warmup_flows", warmup_flows}, {"width", width}, {"depth", depth}, {"heads", heads},
                   {"packets_per_flow", packets_per_flow}, {"seed", seed}, {"budget", budget},
                   {"exact", !no_exact}, {"min_delta_gain", min_delta_gain}, {"futile_after", futile_after}};
  auto security = dgc::runtime::ServerSecurity(common);
  if (!security.ok()) {
    spdlog::error("{}", std::string(security.status().message()));
    return 1;
  }
  o.security = *security;
  o.curve_allow_dir = common.curve_allow_dir;

  // Block the signals before any thread starts, so only the loop handles them.
  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  dgc::runtime::ProcessMetrics metrics;
  dgc::runtime::LoopLiveness liveness;
  std::unique_ptr<dgc::Coordinator> coordinator;
  std::atomic<dgc::Coordinator*> ready_view{nullptr};
  auto health = dgc::runtime::HealthServer::Start(
      common.metrics, &metrics.registry(), [&] { return liveness.Probe(); },
      [&]() -> std::string {
        dgc::Coordinator* c = ready_view.load();
        return c ? c->Ready() : "starting: opening the library";
      });
  if (!health.ok()) {
    spdlog::error("{}", std::string(health.status().message()));
    return 1;
  }
  spdlog::info("metrics listening on {}", (*health)->address());
  auto zmq = dgc::wire::ZmqContext::Create();
  if (!zmq.ok()) {
    spdlog::error("{}", std::string(zmq.status().message()));
    return 1;
  }
  int exit_code = 0;
  dgc::SystemClock clock;  // wall time: lease deadlines outlive a restart
  {
    auto stores = dgc::CoordinatorStores::Open(o.library_dir, static_cast<uint64_t>(library_memory_mb * (1 << 20)));
    if (!stores.ok()) {
      spdlog::error("{}", std::string(stores.status().message()));
      return 1;
    }
    auto c = dgc::Coordinator::Create(io, **zmq, metrics, o, *std::move(stores), &clock);
    if (!c.ok()) {
      spdlog::error("{}", std::string(c.status().message()));
      return 1;
    }
    coordinator = *std::move(c);
    ready_view = coordinator.get();
    std::function<void()> wait_signal = [&] {
      signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
          dgc::Status st = coordinator->ReloadAllowList();
          if (!st.ok()) spdlog::error("SIGHUP: {}", std::string(st.message()));
          wait_signal();
          return;
        }
        spdlog::info("signal {}: shutting down", sig);
        ready_view = nullptr;
        coordinator->Stop();
        io.stop();
      });
    };
    wait_signal();
    dgc::runtime::LivenessTicker ticker(io, liveness);
    ticker.Start();
    spdlog::info("ready");
    io.run();
    ready_view = nullptr;
    coordinator.reset();  // closes the library (RocksDB flushes) before the context goes
  }
  spdlog::info("stopped");
  return exit_code;
}

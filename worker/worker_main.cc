// dgc-worker: takes chunk-compression jobs from the coordinator and runs them
// (fine-tune, delta, fidelity check). The contract: deploy/PROCESSES.md.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <iostream>

#include <boost/asio.hpp>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "common/base/logging.h"
#include "common/model/distributed.h"
#include "common/model/flow_model.h"
#include "common/runtime/health_server.h"
#include "common/runtime/process.h"
#include "spdlog/spdlog.h"
#include "worker/worker_server.h"

namespace {

// CPUs this process may use: its affinity mask (a cgroup quota is not read).
uint32_t UsableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<uint32_t>(std::max(1, CPU_COUNT(&set)));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dgc-worker: compress chunks for a dgc coordinator"};
  app.footer(R"(Registers with the coordinator, heartbeats, and runs up to --max-jobs jobs
at once. On SIGTERM it tells the coordinator to requeue its jobs and exits.

GPUs: by default every GPU this process sees is used and advertised, one job
slot each. Small jobs take one GPU; a large job (the coordinator's
--large-job-packets) leases the whole worker and trains data-parallel over all
its GPUs (c10d, NCCL between GPUs where built with it). "--device cpu,cpu"
runs two Gloo ranks on the CPU: the same path, for tests.

Examples:
  dgc-worker --coordinator tcp://127.0.0.1:7070 --name worker-1
  dgc-worker --coordinator tcp://dgc-coordinator:7070 --curve-secret-key-file w.key \
      --curve-server-key-file coordinator.pub --metrics 0.0.0.0:9462)");
  dgc::runtime::CommonFlags common;
  dgc::runtime::AddCommonFlags(app, dgc::runtime::Role::kWorker, &common);
  dgc::WorkerOptions o;
  std::string device = "auto";
  uint32_t threads = 0;
  o.name = dgc::runtime::HostName();
  app.add_option("--coordinator", o.coordinator, "the coordinator's --listen endpoint")->required();
  app.add_option("--device", device,
                 "where jobs train: auto (every GPU, else the CPU), cpu, cuda (every GPU), cuda:N, or a list "
                 "(cuda:0,cuda:1). A large job, or every job with --max-jobs 1, trains data-parallel over all of "
                 "them (NCCL); other jobs take one GPU each")
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: the CPUs this process may use)")->capture_default_str();
  o.max_jobs = 0;
  app.add_option("--max-jobs", o.max_jobs, "jobs run at once, advertised as slots (0: one per GPU, 1 on a CPU)")
      ->capture_default_str();
  app.add_option("--name", o.name, "worker name shown by 'dgcctl get workers'")->capture_default_str();
  std::string peer;
  app.add_option("--peer-address", peer,
                 "HOST[:PORT] the other workers reach this one at (Kubernetes: the pod IP): with it the worker "
                 "serves a data-parallel store there (PORT 0 or none: one the system chooses) and may join "
                 "large jobs spanning workers (the coordinator's --max-workers-per-job)");
  app.add_option("--peer-timeout-seconds", o.peer_timeout_seconds,
                 "how long a job spanning workers waits for its other workers, at the start and at each step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--shared-dir", o.shared_dir, "directory shared with the coordinator (chunks by path)");
  if (int rc = dgc::runtime::ParseCommandLine(app, argc, argv, "dgc-worker"); rc >= 0) return rc;
  dgc::InitLogging("dgc-worker", common.log_level);

  // The devices jobs train on; the GPUs among them are advertised, one slot
  // each unless --max-jobs says otherwise.
  auto devices = dgc::model::ResolveDevices(device);
  if (!devices.ok()) {
    spdlog::error("--device: {}", std::string(devices.status().message()));
    return 1;
  }
  o.devices = *devices;
  for (const auto& d : dgc::model::CudaDevices()) {
    if (std::find(o.devices.begin(), o.devices.end(), "cuda:" + std::to_string(d.index)) != o.devices.end()) {
      o.gpus.push_back({static_cast<uint32_t>(d.index), d.memory_bytes, d.name});
    }
  }
  if (!peer.empty()) {
    const size_t colon = peer.rfind(':');
    o.peer_host = peer.substr(0, colon);
    if (colon != std::string::npos) {
      char* end = nullptr;
      const long port = std::strtol(peer.c_str() + colon + 1, &end, 10);
      if (colon + 1 == peer.size() || *end != '\0' || port < 0 || port > 65535) {
        spdlog::error("--peer-address {}: expected HOST or HOST:PORT (PORT 0-65535)", peer);
        return 1;
      }
      o.peer_port = static_cast<int32_t>(port);
    }
    if (o.peer_host.empty()) {
      spdlog::error("--peer-address {}: no host", peer);
      return 1;
    }
  }
  if (o.max_jobs == 0) o.max_jobs = o.gpus.empty() ? 1 : static_cast<uint32_t>(o.gpus.size());
  spdlog::info("devices: {} ({} job(s) at once)", absl::StrJoin(o.devices, ","), o.max_jobs);
  o.threads = threads ? threads : UsableCpus();
  auto security = dgc::runtime::ClientSecurity(common.curve_secret_key_file, common.curve_server_key_file,
                                               common.insecure);
  if (!security.ok()) {
    spdlog::error("{}", std::string(security.status().message()));
    return 1;
  }
  o.security = *security;
  if (auto st = dgc::runtime::CheckClientEndpoint(o.coordinator, o.security); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  dgc::model::ConfigureCpuThreads();

  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  dgc::runtime::ProcessMetrics metrics;
  dgc::runtime::LoopLiveness liveness;
  auto zmq = dgc::wire::ZmqContext::Create();
  if (!zmq.ok()) {
    spdlog::error("{}", std::string(zmq.status().message()));
    return 1;
  }
  bool idle_at_exit = true;
  {
    dgc::WorkerServer worker(io, **zmq, metrics, o);
    auto health = dgc::runtime::HealthServer::Start(
        common.metrics, &metrics.registry(), [&] { return liveness.Probe(); }, [&] { return worker.Ready(); });
    if (!health.ok()) {
      spdlog::error("{}", std::string(health.status().message()));
      return 1;
    }
    spdlog::info("metrics listening on {}", (*health)->address());
    if (auto st = worker.Start(); !st.ok()) {
      spdlog::error("{}", std::string(st.message()));
      return 1;
    }
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: leaving (the coordinator requeues this worker's jobs)", sig);
      idle_at_exit = worker.Stop(std::chrono::milliseconds(8000));
      io.stop();
    });
    dgc::runtime::LivenessTicker ticker(io, liveness);
    ticker.Start();
    io.run();
    if (!idle_at_exit) {
      // A training step cannot be interrupted and its job is requeued
      // already: exit within the 10 s the contract allows, without joining.
      spdlog::warn("a job is still training: exiting without waiting for it");
      spdlog::shutdown();
      _exit(0);
    }
  }
  spdlog::info("stopped");
  return 0;
}

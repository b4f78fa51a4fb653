// What dgc-coordinator, dgc-worker and dgc-ingest share (deploy/PROCESSES.md,
// "Common to the three processes"): the common flags and config file, key
// files and allow-lists, the Prometheus registry with dgc_build_info and
// dgc_messages_rejected_total, the loop-liveness probe, and a watcher that
// wakes an io_context loop when a ZeroMQ socket has messages.
#ifndef DGC_COMMON_RUNTIME_PROCESS_H_
#define DGC_COMMON_RUNTIME_PROCESS_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "common/base/status.h"
#include "common/wire/zmq_transport.h"

namespace dgc::runtime {

// The dgc version (the CMake project version).
const char* Version();

enum class Role { kCoordinator, kWorker, kIngest };

struct CommonFlags {
  std::string metrics;                 // HOST:PORT; the role's default port
  std::string curve_secret_key_file;
  std::string curve_server_key_file;   // worker, ingest
  std::string curve_allow_dir;         // coordinator
  bool insecure = false;
  std::string log_level = "info";
};

// Adds --config (CLI11 config file), --metrics, the curve flags of `role`,
// --insecure, --log-level and --version to `app`. Defaults per PROCESSES.md.
void AddCommonFlags(CLI::App& app, Role role, CommonFlags* flags);

// Parses argv; returns -1 to go on, else the exit code (0 after --help or
// --version, 1 on a usage error, message on stderr).
int ParseCommandLine(CLI::App& app, int argc, char** argv, const char* program);

// One Z85 key (40 characters, surrounding whitespace ignored) from `path`.
// InvalidArgument naming the file otherwise.
[[nodiscard]] StatusOr<std::string> ReadKeyFile(const std::string& path);
// The keys of every *.pub file in `dir` (sorted by name). Errors name the file.
[[nodiscard]] StatusOr<std::vector<std::string>> ReadAllowDir(const std::string& dir);

// The security options of a client socket (worker, ingest, dgcctl) from the
// curve flags: both key files or neither (InvalidArgument otherwise).
[[nodiscard]] StatusOr<wire::SecurityOptions> ClientSecurity(const std::string& secret_key_file,
                                                             const std::string& server_key_file, bool insecure);
// A server socket's (coordinator): secret key with allow dir, or neither.
[[nodiscard]] StatusOr<wire::SecurityOptions> ServerSecurity(const CommonFlags& flags);
// A client connecting to a non-loopback endpoint without keys needs --insecure
// (the transport checks binds; this checks connects). PermissionDenied.
[[nodiscard]] Status CheckClientEndpoint(const std::string& endpoint, const wire::SecurityOptions& security);

// The registry every process exports, with dgc_build_info{version} = 1 and
// the dgc_messages_rejected_total{reason} family.
class ProcessMetrics {
 public:
  ProcessMetrics();
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  // Counts one rejected message; `reason` is malformed, truncated, oversized,
  // version or unauthorized.
  void Reject(const std::string& reason);
  // The reason label for a Decode / Receive error (codec.h's codes).
  static std::string RejectReason(const Status& status);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* rejected_;
};

// Receives what `socket` (a ZmqRouter or ZmqDealer) holds, without waiting
// and at most `limit` messages, handing each decoded one to `on_message`. A
// message that does not decode is counted in `metrics` by its reason and
// logged as "rejected <what> (<reason>): <error>", never fatal. Stops early
// when `socket` is reset (on_message may close it). On the loop's thread.
template <typename Socket, typename OnMessage>
void DrainSocket(const std::unique_ptr<Socket>& socket, int limit, ProcessMetrics& metrics, const char* what,
                 OnMessage&& on_message) {
  for (int i = 0; i < limit && socket; ++i) {
    auto in = socket->Receive(0);
    if (!in.ok()) {
      std::string reason = ProcessMetrics::RejectReason(in.status());
      metrics.Reject(reason);
      spdlog::warn("rejected {} ({}): {}", what, reason, std::string(in.status().message()));
      continue;
    }
    if (!in->has_value()) break;
    on_message(**in);
  }
}

// Liveness: the control loop stamps Beat() from a timer; Probe() (any thread)
// answers "" while the last beat is younger than `max_age`.
class LoopLiveness {
 public:
  void Beat() { last_ns_.store(NowSteadyNs()); }
  std::string Probe(std::chrono::milliseconds max_age = std::chrono::milliseconds(1000)) const;
  static int64_t NowSteadyNs();

 private:
  std::atomic<int64_t> last_ns_{NowSteadyNs()};
};

// Beats `liveness` from the io_context every `period` while the loop runs,
// so /healthz sees a stuck loop. Lives on the io_context's thread; the timer
// stops when this object goes or the context stops.
class LivenessTicker {
 public:
  LivenessTicker(boost::asio::io_context& io, LoopLiveness& liveness,
                 std::chrono::milliseconds period = std::chrono::milliseconds(200));
  void Start();

 private:
  boost::asio::steady_timer timer_;
  LoopLiveness& liveness_;
  std::chrono::milliseconds period_;
};

// Calls `on_readable` on the io_context's thread whenever `socket` may have
// messages: when its ZMQ_FD fires, and from a fallback timer every `poll`
// (ZMQ_FD is edge-triggered and a send can swallow an edge). `on_readable`
// must drain (receive with timeout 0 until nothing is left, or a bounded
// batch). Lives on the io_context's thread; Stop() before the socket goes.
class ZmqWatcher {
 public:
  ZmqWatcher(boost::asio::io_context& io, wire::ZmqSocket& socket, std::function<void()> on_readable,
             std::chrono::milliseconds poll = std::chrono::milliseconds(20));
  ~ZmqWatcher();
  [[nodiscard]] Status Start();
  void Stop();

 private:
  void ArmFd();
  void ArmTimer();
  boost::asio::io_context& io_;
  wire::ZmqSocket& socket_;
  std::function<void()> on_readable_;
  std::chrono::milliseconds poll_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> fd_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Host name of this machine ("localhost" when unknown).
std::string HostName();

}  // namespace dgc::runtime

#endif  // DGC_COMMON_RUNTIME_PROCESS_H_

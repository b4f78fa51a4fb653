// Real processes for the runtime tests: start dgc-coordinator, dgc-worker and
// dgc-ingest on 127.0.0.1 (ports chosen by the system, read back from their
// logs), signal them, and wait for conditions with a bound on every wait.
#ifndef DGC_TESTS_RUNTIME_CLUSTER_H_
#define DGC_TESTS_RUNTIME_CLUSTER_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace dgc::testing {

// A child process; its stdout and stderr go to `log`, `env` ("NAME=VALUE",
// e.g. a DGC_FAULT point) is added to its environment. Killed (SIGKILL) by
// the destructor when still running.
class Process {
 public:
  Process(const std::string& binary, const std::vector<std::string>& args, const std::string& log,
          const std::vector<std::string>& env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }
  void Signal(int sig);
  bool Running();
  // The exit status (128+N when killed by signal N), or nullopt after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Waits until the log holds a line matching `regex`; returns its first
  // capture group (or the whole match), nullopt after `timeout`.
  std::optional<std::string> WaitForLog(const std::string& regex, std::chrono::milliseconds timeout);
  std::string ReadLog() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_;
};

// Polls `condition` every 100 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// GET http://ADDRESS/PATH with curl; the body, or "" on failure. *code gets
// the HTTP status (0 when no answer).
std::string HttpGet(const std::string& address, const std::string& path, int* code = nullptr);
// The value of one sample ("name{labels}") in a /metrics page; nullopt when absent.
std::optional<double> MetricValue(const std::string& page, const std::string& sample);

// dgcctl ARGS -o json against `api`; nullopt (and the output in *error) when it fails.
std::optional<nlohmann::json> Ctl(const std::string& args, std::string* error = nullptr);

}  // namespace dgc::testing

#endif  // DGC_TESTS_RUNTIME_CLUSTER_H_

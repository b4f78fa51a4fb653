// HealthServer: the one small HTTP server of a dgc process (PROCESSES.md):
// GET /metrics renders a prometheus-cpp registry with TextSerializer,
// GET /healthz and /readyz answer "200 ok" or "503 <reason>" in plain text.
// prometheus-cpp's own Exposer serves only /metrics, hence this server
// (Boost.Beast).
//
// Threads: the server runs its own io_context on one thread it owns and joins
// in the destructor, so a scrape is answered even while the process's control
// loop is busy. The probe callbacks run on that thread: they must be thread
// safe (read atomics, or lock). prometheus-cpp metrics are thread safe.
#ifndef DGC_COMMON_RUNTIME_HEALTH_SERVER_H_
#define DGC_COMMON_RUNTIME_HEALTH_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "common/base/status.h"

namespace prometheus {
class Registry;
}

namespace dgc::runtime {

// "" when healthy (200 ok); otherwise the reason, served as 503.
using Probe = std::function<std::string()>;

class HealthServer {
 public:
  // Binds `host_port` ("127.0.0.1:9460"; port 0 picks a free one) and starts
  // serving. InvalidArgument for a malformed address, Unavailable when it
  // cannot be bound. `registry` must outlive the server.
  [[nodiscard]] static StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& host_port,
                                                                    prometheus::Registry* registry,
                                                                    Probe healthz, Probe readyz);
  // Stops accepting, closes connections and joins the thread.
  ~HealthServer();
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // "HOST:PORT" with the real port.
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  explicit HealthServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// "HOST:PORT" -> host, port. InvalidArgument otherwise.
[[nodiscard]] Status ParseHostPort(const std::string& host_port, std::string* host, uint16_t* port);

}  // namespace dgc::runtime

#endif  // DGC_COMMON_RUNTIME_HEALTH_SERVER_H_

#include "common/runtime/health_server.h"

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dgc::runtime {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// One connection: read requests, answer each, until the peer closes or is idle.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, prometheus::Registry* registry, const Probe* healthz, const Probe* readyz)
      : stream_(std::move(socket)), registry_(registry), healthz_(healthz), readyz_(readyz) {}

  void Run() { Read(); }

 private:
  void Read() {
    request_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return;
    }
    response_ = Handle();
    response_.keep_alive(request_.keep_alive());
    response_.prepare_payload();
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->response_.keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        return;
      }
      self->Read();
    });
  }

  http::response<http::string_body> Handle() {
    http::response<http::string_body> res;
    res.version(request_.version());
    res.set(http::field::server, "dgc");
    std::string target(request_.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::content_type, "text/plain");
      res.body() = "method not allowed\n";
      return res;
    }
    if (target == "/metrics") {
      std::ostringstream out;
      prometheus::TextSerializer().Serialize(out, registry_->Collect());
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      res.body() = out.str();
    } else if (target == "/healthz" || target == "/readyz") {
      const Probe& probe = target == "/healthz" ? *healthz_ : *readyz_;
      std::string reason = probe ? probe() : "";
      res.result(reason.empty() ? http::status::ok : http::status::service_unavailable);
      res.set(http::field::content_type, "text/plain");
      res.body() = reason.empty() ? "ok\n" : reason + "\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "not found: try /metrics, /healthz, /readyz\n";
    }
    if (request_.method() == http::verb::head) res.body().clear();
    return res;
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  prometheus::Registry* registry_;
  const Probe* healthz_;
  const Probe* readyz_;
};

}  // namespace

struct HealthServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  prometheus::Registry* registry = nullptr;
  Probe healthz, readyz;
  std::thread thread;

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), registry, &healthz, &readyz)->Run();
      Accept();
    });
  }
};

Status ParseHostPort(const std::string& host_port, std::string* host, uint16_t* port) {
  auto colon = host_port.rfind(':');
  uint32_t p = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(host_port.substr(colon + 1), &p) ||
      p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", host_port, "' is not HOST:PORT (e.g. 127.0.0.1:9460)"));
  }
  *host = host_port.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

HealthServer::HealthServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& host_port,
                                                           prometheus::Registry* registry, Probe healthz,
                                                           Probe readyz) {
  std::string host;
  uint16_t port = 0;
  DGC_RETURN_IF_ERROR(ParseHostPort(host_port, &host, &port));
  auto impl = std::make_unique<Impl>();
  impl->registry = registry;
  impl->healthz = std::move(healthz);
  impl->readyz = std::move(readyz);
  beast::error_code ec;
  if (host == "localhost") host = "127.0.0.1";
  auto address = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("metrics address '", host_port, "': ", ec.message()));
  tcp::endpoint endpoint(address, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", host_port, ": ", ec.message()));
  auto bound = impl->acceptor.local_endpoint(ec);
  std::string bound_host = bound.address().to_string();
  if (bound.address().is_v6()) bound_host = "[" + bound_host + "]";
  std::unique_ptr<HealthServer> server(new HealthServer(std::move(impl)));
  server->address_ = absl::StrCat(bound_host, ":", bound.port());
  Impl* i = server->impl_.get();
  i->Accept();
  i->thread = std::thread([i] { i->io.run(); });
  return server;
}

HealthServer::~HealthServer() {
  asio::post(impl_->io, [i = impl_.get()] {
    beast::error_code ignored;
    i->acceptor.close(ignored);
    i->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace dgc::runtime

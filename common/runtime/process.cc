#include "common/runtime/process.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include <prometheus/gauge.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/files.h"

#ifndef DGC_VERSION
#define DGC_VERSION "0.0.0"
#endif

namespace dgc::runtime {

const char* Version() { return DGC_VERSION; }

void AddCommonFlags(CLI::App& app, Role role, CommonFlags* f) {
  app.set_config("--config", "", "config file: one 'long-flag-name = value' per line; the command line overrides it");
  switch (role) {
    case Role::kCoordinator: f->metrics = "127.0.0.1:9460"; break;
    case Role::kIngest: f->metrics = "127.0.0.1:9461"; break;
    case Role::kWorker: f->metrics = "127.0.0.1:9462"; break;
  }
  app.add_option("--metrics", f->metrics, "HOST:PORT of the HTTP server for /metrics, /healthz, /readyz (port 0: free)")
      ->capture_default_str();
  app.add_option("--curve-secret-key-file", f->curve_secret_key_file,
                 "this process's CurveZMQ secret key (turns on CurveZMQ on every socket)");
  if (role == Role::kCoordinator) {
    app.add_option("--curve-allow-dir", f->curve_allow_dir,
                   "every *.pub file here is an allowed client public key (re-read on SIGHUP)");
  } else {
    app.add_option("--curve-server-key-file", f->curve_server_key_file, "the coordinator's CurveZMQ public key");
  }
  app.add_flag("--insecure", f->insecure, "allow non-loopback ZeroMQ endpoints without CurveZMQ keys");
  app.add_option("--log-level", f->log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.set_version_flag("--version", std::string(Version()));
}

int ParseCommandLine(CLI::App& app, int argc, char** argv, const char* program) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    std::cout << program << " " << Version() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << program << ": " << e.what() << "\nRun '" << program << " --help' for usage.\n";
    return 1;
  }
  return -1;
}

StatusOr<std::string> ReadKeyFile(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string key(absl::StripAsciiWhitespace(text));
  if (key.size() != 40) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", path, ": expected one Z85 key of 40 characters, found ", key.size()));
  }
  return key;
}

StatusOr<std::vector<std::string>> ReadAllowDir(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".pub") files.push_back(it->path().string());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--curve-allow-dir ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  std::vector<std::string> keys;
  for (const auto& f : files) {
    DGC_ASSIGN_OR_RETURN(std::string k, ReadKeyFile(f));
    keys.push_back(std::move(k));
  }
  return keys;
}

StatusOr<wire::SecurityOptions> ClientSecurity(const std::string& secret_key_file,
                                               const std::string& server_key_file, bool insecure) {
  wire::SecurityOptions s;
  s.insecure = insecure;
  if (secret_key_file.empty() != server_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--curve-secret-key-file and --curve-server-key-file go together: give both or neither");
  }
  if (secret_key_file.empty()) return s;
  DGC_ASSIGN_OR_RETURN(s.secret_key, ReadKeyFile(secret_key_file));
  DGC_ASSIGN_OR_RETURN(s.server_public_key, ReadKeyFile(server_key_file));
  return s;
}

StatusOr<wire::SecurityOptions> ServerSecurity(const CommonFlags& f) {
  wire::SecurityOptions s;
  s.insecure = f.insecure;
  if (f.curve_secret_key_file.empty() != f.curve_allow_dir.empty()) {
    return absl::InvalidArgumentError("--curve-secret-key-file and --curve-allow-dir go together: give both or neither");
  }
  if (f.curve_secret_key_file.empty()) return s;
  DGC_ASSIGN_OR_RETURN(s.secret_key, ReadKeyFile(f.curve_secret_key_file));
  DGC_ASSIGN_OR_RETURN(s.allowed_client_keys, ReadAllowDir(f.curve_allow_dir));
  if (s.allowed_client_keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--curve-allow-dir ", f.curve_allow_dir, ": no *.pub key file"));
  }
  return s;
}

Status CheckClientEndpoint(const std::string& endpoint, const wire::SecurityOptions& s) {
  if (s.insecure || !s.server_public_key.empty() || wire::IsLoopbackEndpoint(endpoint)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "refusing to connect to ", endpoint,
      " without CurveZMQ keys: give --curve-secret-key-file and --curve-server-key-file, or --insecure"));
}

ProcessMetrics::ProcessMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge().Name("dgc_build_info").Help("dgc build; always 1").Register(*registry_)
      .Add({{"version", Version()}}).Set(1);
  rejected_ = &prometheus::BuildCounter()
                   .Name("dgc_messages_rejected_total")
                   .Help("hostile or broken messages dropped, by reason")
                   .Register(*registry_);
  for (const char* r : {"malformed", "truncated", "oversized", "version", "unauthorized"}) rejected_->Add({{"reason", r}});
}

void ProcessMetrics::Reject(const std::string& reason) { rejected_->Add({{"reason", reason}}).Increment(); }

std::string ProcessMetrics::RejectReason(const Status& st) {
  if (absl::IsResourceExhausted(st)) return "oversized";
  if (absl::IsFailedPrecondition(st)) return "version";
  if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st)) return "unauthorized";
  std::string m = absl::AsciiStrToLower(st.message());
  if (absl::StrContains(m, "truncat") || absl::StrContains(m, "whole number") || absl::StrContains(m, "empty")) {
    return "truncated";
  }
  return "malformed";
}

int64_t LoopLiveness::NowSteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

LivenessTicker::LivenessTicker(boost::asio::io_context& io, LoopLiveness& liveness,
                               std::chrono::milliseconds period)
    : timer_(io), liveness_(liveness), period_(period) {}

void LivenessTicker::Start() {
  liveness_.Beat();
  timer_.expires_after(period_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Start();
  });
}

std::string LoopLiveness::Probe(std::chrono::milliseconds max_age) const {
  int64_t age_ns = NowSteadyNs() - last_ns_.load();
  if (age_ns <= std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count()) return "";
  return absl::StrCat("control loop silent for ", age_ns / 1000000, " ms");
}

ZmqWatcher::ZmqWatcher(boost::asio::io_context& io, wire::ZmqSocket& socket, std::function<void()> on_readable,
                       std::chrono::milliseconds poll)
    : io_(io), socket_(socket), on_readable_(std::move(on_readable)), poll_(poll), timer_(io) {}

ZmqWatcher::~ZmqWatcher() { Stop(); }

Status ZmqWatcher::Start() {
  DGC_ASSIGN_OR_RETURN(int fd, socket_.fd());
  fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  ArmFd();
  ArmTimer();
  return absl::OkStatus();
}

void ZmqWatcher::Stop() {
  *alive_ = false;
  if (fd_) {
    boost::system::error_code ec;
    fd_->cancel(ec);
    fd_->release();  // the fd belongs to libzmq
    fd_.reset();
  }
  timer_.cancel();
}

void ZmqWatcher::ArmFd() {
  fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                  [this, alive = alive_](const boost::system::error_code& ec) {
                    if (!*alive || ec) return;
                    on_readable_();
                    if (*alive) ArmFd();
                  });
}

void ZmqWatcher::ArmTimer() {
  timer_.expires_after(poll_);
  timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!*alive || ec) return;
    on_readable_();
    if (*alive) ArmTimer();
  });
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

}  // namespace dgc::runtime

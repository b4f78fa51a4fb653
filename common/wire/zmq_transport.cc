#include "common/wire/zmq_transport.h"

#include <zmq.h>
#include <zmq_addon.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <array>
#include <future>
#include <map>
#include <set>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace dgc::wire {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr int kZapPollMs = 50;  // how quickly the ZAP thread notices shutdown
constexpr size_t kCurveKeyBytes = 32;
constexpr size_t kCurveZ85Chars = 40;

// The one place zmq errors become Status.
Status ZmqError(const zmq::error_t& e, absl::string_view what) {
  const int err = e.num();
  std::string msg = absl::StrCat(what, ": ", e.what());
  switch (err) {
    case ETERM: return absl::CancelledError(msg);
    case EAGAIN: return absl::UnavailableError(msg);
    case EHOSTUNREACH: return absl::NotFoundError(msg);
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case ENODEV:
    case ECONNREFUSED: return absl::UnavailableError(msg);
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO: return absl::InvalidArgumentError(msg);
    case EACCES: return absl::PermissionDeniedError(msg);
    case EMFILE: return absl::ResourceExhaustedError(msg);
    default: return absl::InternalError(msg);
  }
}

StatusOr<std::string> DecodeZ85Key(absl::string_view z85, absl::string_view what) {
  if (z85.size() != kCurveZ85Chars) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a CurveZMQ key is ", kCurveZ85Chars,
                                                   " Z85 characters, got ", z85.size()));
  }
  std::string text(z85);  // NUL-terminated for zmq_z85_decode
  std::string binary(kCurveKeyBytes, '\0');
  if (zmq_z85_decode(reinterpret_cast<uint8_t*>(binary.data()), text.c_str()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a valid Z85 key"));
  }
  return binary;
}

std::string Hex(absl::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes.substr(0, 16)) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  if (bytes.size() > 16) out += "...";
  return out;
}

}  // namespace

// ----- keys ----------------------------------------------------------------

StatusOr<CurveKeyPair> GenerateCurveKeyPair() {
  if (!zmq_has("curve")) return absl::UnimplementedError("libzmq was built without CurveZMQ");
  char pub[kCurveZ85Chars + 1];
  char sec[kCurveZ85Chars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return absl::InternalError(absl::StrCat("zmq_curve_keypair: ", zmq_strerror(zmq_errno())));
  }
  return CurveKeyPair{std::string(pub), std::string(sec)};
}

StatusOr<std::string> CurvePublicKey(absl::string_view secret_key) {
  DGC_RETURN_IF_ERROR(DecodeZ85Key(secret_key, "secret key").status());
  std::string sec(secret_key);
  char pub[kCurveZ85Chars + 1];
  if (zmq_curve_public(pub, sec.c_str()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("zmq_curve_public: ", zmq_strerror(zmq_errno())));
  }
  return std::string(pub);
}

bool IsLoopbackEndpoint(absl::string_view endpoint) {
  if (absl::StartsWith(endpoint, "inproc://") || absl::StartsWith(endpoint, "ipc://")) return true;
  if (!absl::ConsumePrefix(&endpoint, "tcp://")) return false;
  // tcp://HOST:PORT, HOST may be [v6]; a "source;" prefix applies to connect only.
  if (size_t semi = endpoint.find(';'); semi != absl::string_view::npos) endpoint = endpoint.substr(semi + 1);
  absl::string_view host;
  if (absl::StartsWith(endpoint, "[")) {
    size_t close = endpoint.find(']');
    if (close == absl::string_view::npos) return false;
    host = endpoint.substr(1, close - 1);
  } else {
    size_t colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos) return false;
    host = endpoint.substr(0, colon);
  }
  if (host == "localhost" || host == "lo" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad.
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4 || parts[0] != "127") return false;
  for (absl::string_view p : parts) {
    int v = 0;
    if (p.empty() || !absl::SimpleAtoi(p, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

// ----- ZAP handler -----------------------------------------------------------

// Answers ZAP requests (RFC 27) for the context's CurveZMQ server sockets: a
// client is accepted when its public key is in its socket's domain's
// allow-list. Owns one REP socket, used only by its own thread.
class ZmqContext::ZapHandler {
 public:
  ZapHandler(ZmqContext& owner) : owner_(owner) {}
  ~ZapHandler() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  // Starts the thread, which binds the ZAP endpoint; returns its bind status.
  Status Start() {
    std::promise<Status> bound;
    std::future<Status> result = bound.get_future();
    thread_ = std::thread([this, &bound] { Run(&bound); });
    Status s = result.get();
    if (!s.ok() && thread_.joinable()) thread_.join();
    return s;
  }

  void Allow(const std::string& domain, std::set<std::string> binary_keys) {
    absl::MutexLock lock(&mutex_);
    allowed_[domain] = std::move(binary_keys);
  }

 private:
  bool Allowed(const std::string& domain, const std::string& mechanism, const std::string& key) {
    if (mechanism != "CURVE") return false;
    absl::MutexLock lock(&mutex_);
    auto it = allowed_.find(domain);
    return it != allowed_.end() && it->second.count(key) > 0;
  }

  void Run(std::promise<Status>* bound) {
    std::optional<zmq::socket_t> rep;
    try {
      rep.emplace(owner_.context_, zmq::socket_type::rep);
      rep->set(zmq::sockopt::linger, 0);
      rep->bind(kZapEndpoint);
    } catch (const zmq::error_t& e) {
      bound->set_value(ZmqError(e, absl::StrCat("binding the ZAP handler at ", kZapEndpoint)));
      return;
    }
    bound->set_value(absl::OkStatus());  // `bound` is gone after this line
    while (!stop_.load()) {
      try {
        zmq::pollitem_t item{rep->handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, std::chrono::milliseconds(kZapPollMs)) <= 0) continue;
        std::vector<zmq::message_t> request;
        if (!zmq::recv_multipart(*rep, std::back_inserter(request), zmq::recv_flags::dontwait)) continue;
        // version, request id, domain, address, identity, mechanism, credentials...
        std::string status = "400", text = "denied";
        std::string request_id = request.size() > 1 ? request[1].to_string() : "";
        if (request.size() >= 7 && request[0].to_string() == "1.0" &&
            Allowed(request[2].to_string(), request[5].to_string(), request[6].to_string())) {
          status = "200";
          text = "OK";
          owner_.zap_allowed_.fetch_add(1);
        } else {
          owner_.zap_denied_.fetch_add(1);
        }
        std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id),
                                                  zmq::buffer(status), zmq::buffer(text),
                                                  zmq::str_buffer(""), zmq::str_buffer("")};
        (void)zmq::send_multipart(*rep, reply);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) break;
        // Anything else: a malformed request; REP resets on the next recv.
      }
    }
  }

  ZmqContext& owner_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mutex_;
  std::map<std::string, std::set<std::string>> allowed_ ABSL_GUARDED_BY(mutex_);
};

// ----- context ---------------------------------------------------------------

ZmqContext::ZmqContext(int io_threads) : context_(io_threads) {}

ZmqContext::~ZmqContext() { zap_.reset(); }

StatusOr<std::unique_ptr<ZmqContext>> ZmqContext::Create(int io_threads) {
  try {
    return std::unique_ptr<ZmqContext>(new ZmqContext(io_threads));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "creating the ZeroMQ context");
  }
}

Status ZmqContext::AllowClients(const std::string& domain, const std::vector<std::string>& z85_keys) {
  std::set<std::string> keys;
  for (const std::string& k : z85_keys) {
    DGC_ASSIGN_OR_RETURN(std::string binary, DecodeZ85Key(k, "allowed client key"));
    keys.insert(std::move(binary));
  }
  // Sockets are bound from one loop thread; the lock in ZapHandler covers the
  // map, creation happens-before any handshake the handler answers.
  if (!zap_) {
    auto handler = std::make_unique<ZapHandler>(*this);
    DGC_RETURN_IF_ERROR(handler->Start());
    zap_ = std::move(handler);
  }
  zap_->Allow(domain, std::move(keys));
  return absl::OkStatus();
}

// ----- socket ----------------------------------------------------------------

ZmqSocket::ZmqSocket(ZmqContext& context, SocketType type)
    : socket_(context.context_, type == SocketType::kRouter ? zmq::socket_type::router : zmq::socket_type::dealer),
      type_(type) {}

ZmqSocket::~ZmqSocket() = default;

Status ZmqSocket::Configure(const SocketOptions& options) {
  try {
    socket_.set(zmq::sockopt::linger, options.linger_ms);
    socket_.set(zmq::sockopt::sndhwm, options.send_hwm);
    socket_.set(zmq::sockopt::rcvhwm, options.recv_hwm);
    socket_.set(zmq::sockopt::sndtimeo, options.send_timeout_ms);
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_bytes));
    if (type_ == SocketType::kRouter) socket_.set(zmq::sockopt::router_mandatory, true);
    if (type_ == SocketType::kDealer && !options.routing_id.empty()) {
      socket_.set(zmq::sockopt::routing_id, zmq::buffer(options.routing_id));
    }
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "setting socket options");
  }
  return absl::OkStatus();
}

Status ZmqSocket::SetupCurveServer(ZmqContext& context, const SecurityOptions& security) {
  if (security.allowed_client_keys.empty()) {
    return absl::InvalidArgumentError(
        "a CurveZMQ secret key is configured but no client public key is allowed: add the clients' "
        "public keys (dgcctl keygen) to the allow-list");
  }
  DGC_ASSIGN_OR_RETURN(std::string secret, DecodeZ85Key(security.secret_key, "server secret key"));
  static std::atomic<uint64_t> next_domain{0};
  std::string domain = absl::StrCat("dgc-", next_domain.fetch_add(1));
  DGC_RETURN_IF_ERROR(context.AllowClients(domain, security.allowed_client_keys));
  zap_domain_ = domain;
  try {
    socket_.set(zmq::sockopt::zap_domain, domain);
    socket_.set(zmq::sockopt::curve_server, true);
    socket_.set(zmq::sockopt::curve_secretkey, zmq::buffer(secret));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "configuring CurveZMQ");
  }
  return absl::OkStatus();
}

Status ZmqSocket::SetupCurveClient(const SecurityOptions& security) {
  DGC_ASSIGN_OR_RETURN(std::string server, DecodeZ85Key(security.server_public_key, "server public key"));
  if (security.secret_key.empty()) {
    return absl::InvalidArgumentError("a server public key is configured but no client secret key");
  }
  DGC_ASSIGN_OR_RETURN(std::string secret, DecodeZ85Key(security.secret_key, "client secret key"));
  DGC_ASSIGN_OR_RETURN(std::string public_z85, CurvePublicKey(security.secret_key));
  DGC_ASSIGN_OR_RETURN(std::string pub, DecodeZ85Key(public_z85, "client public key"));
  try {
    socket_.set(zmq::sockopt::curve_serverkey, zmq::buffer(server));
    socket_.set(zmq::sockopt::curve_publickey, zmq::buffer(pub));
    socket_.set(zmq::sockopt::curve_secretkey, zmq::buffer(secret));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "configuring CurveZMQ");
  }
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<ZmqSocket>> ZmqSocket::Bind(ZmqContext& context, SocketType type,
                                                     const std::string& endpoint, const SocketOptions& options) {
  const bool curve = !options.security.secret_key.empty();
  if (!curve && !options.security.insecure && !IsLoopbackEndpoint(endpoint)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "refusing to bind ", endpoint,
        " without CurveZMQ keys: other machines could connect unauthenticated. Configure keys "
        "(dgcctl keygen), bind 127.0.0.1, or pass --insecure"));
  }
  std::unique_ptr<ZmqSocket> socket;
  try {
    socket.reset(new ZmqSocket(context, type));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "creating a socket");
  }
  DGC_RETURN_IF_ERROR(socket->Configure(options));
  if (curve) DGC_RETURN_IF_ERROR(socket->SetupCurveServer(context, options.security));
  try {
    socket->socket_.bind(endpoint);
    socket->endpoint_ = socket->socket_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return ZmqError(e, absl::StrCat("binding ", endpoint));
  }
  return socket;
}

StatusOr<std::unique_ptr<ZmqSocket>> ZmqSocket::Connect(ZmqContext& context, SocketType type,
                                                        const std::string& endpoint,
                                                        const SocketOptions& options) {
  std::unique_ptr<ZmqSocket> socket;
  try {
    socket.reset(new ZmqSocket(context, type));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "creating a socket");
  }
  DGC_RETURN_IF_ERROR(socket->Configure(options));
  if (!options.security.server_public_key.empty()) {
    DGC_RETURN_IF_ERROR(socket->SetupCurveClient(options.security));
  }
  try {
    socket->socket_.connect(endpoint);
    socket->endpoint_ = endpoint;
  } catch (const zmq::error_t& e) {
    return ZmqError(e, absl::StrCat("connecting to ", endpoint));
  }
  return socket;
}

Status ZmqSocket::SendFrames(const std::vector<std::string>& frames) {
  if (frames.empty()) return absl::InvalidArgumentError("no frames to send");
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket_.send(zmq::buffer(frames[i]), flags)) {
        return absl::UnavailableError(
            absl::StrCat("send on ", endpoint_, " timed out (peer gone or its queue is full)"));
      }
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) {
      return absl::NotFoundError(absl::StrCat("no connected peer ", Hex(frames[0]), " on ", endpoint_));
    }
    return ZmqError(e, absl::StrCat("send on ", endpoint_));
  }
  return absl::OkStatus();
}

StatusOr<std::optional<std::vector<std::string>>> ZmqSocket::ReceiveFrames(int timeout_ms) {
  try {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) <= 0) return std::nullopt;
    std::vector<zmq::message_t> parts;
    if (!zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      return std::nullopt;
    }
    std::vector<std::string> frames;
    frames.reserve(parts.size());
    for (auto& p : parts) frames.push_back(p.to_string());
    return frames;
  } catch (const zmq::error_t& e) {
    return ZmqError(e, absl::StrCat("receive on ", endpoint_));
  }
}

StatusOr<int> ZmqSocket::fd() {
  try {
    return static_cast<int>(socket_.get(zmq::sockopt::fd));
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "reading ZMQ_FD");
  }
}

StatusOr<bool> ZmqSocket::readable() {
  try {
    return (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
  } catch (const zmq::error_t& e) {
    return ZmqError(e, "reading ZMQ_EVENTS");
  }
}

// ----- message sockets -------------------------------------------------------

ZmqRouter::ZmqRouter(std::unique_ptr<ZmqSocket> socket, const SocketOptions& options)
    : socket_(std::move(socket)) {
  encode_.max_message_bytes = options.max_message_bytes;
  decode_.max_message_bytes = options.max_message_bytes;
}

StatusOr<std::unique_ptr<ZmqRouter>> ZmqRouter::Bind(ZmqContext& context, const std::string& endpoint,
                                                     const SocketOptions& options) {
  DGC_ASSIGN_OR_RETURN(auto socket, ZmqSocket::Bind(context, SocketType::kRouter, endpoint, options));
  return std::unique_ptr<ZmqRouter>(new ZmqRouter(std::move(socket), options));
}

Status ZmqRouter::Send(const std::string& peer, const Message& message) {
  DGC_ASSIGN_OR_RETURN(std::string frame, Encode(message, encode_));
  return socket_->SendFrames({peer, std::move(frame)});
}

StatusOr<std::optional<ZmqRouter::Inbound>> ZmqRouter::Receive(int timeout_ms) {
  DGC_ASSIGN_OR_RETURN(auto frames, socket_->ReceiveFrames(timeout_ms));
  if (!frames) return std::nullopt;
  if (frames->size() != 2) {
    ++rejected_;
    return absl::InvalidArgumentError(absl::StrCat("rejected a message of ", frames->size() - 1,
                                                   " frames (expected 1) from peer ", Hex((*frames)[0])));
  }
  auto decoded = Decode((*frames)[1], decode_);
  if (!decoded.ok()) {
    ++rejected_;
    return Status(decoded.status().code(), absl::StrCat("rejected a message from peer ", Hex((*frames)[0]),
                                                        ": ", decoded.status().message()));
  }
  return Inbound{std::move((*frames)[0]), *std::move(decoded)};
}

ZmqDealer::ZmqDealer(std::unique_ptr<ZmqSocket> socket, const SocketOptions& options)
    : socket_(std::move(socket)) {
  encode_.max_message_bytes = options.max_message_bytes;
  decode_.max_message_bytes = options.max_message_bytes;
}

StatusOr<std::unique_ptr<ZmqDealer>> ZmqDealer::Connect(ZmqContext& context, const std::string& endpoint,
                                                        const SocketOptions& options) {
  DGC_ASSIGN_OR_RETURN(auto socket, ZmqSocket::Connect(context, SocketType::kDealer, endpoint, options));
  return std::unique_ptr<ZmqDealer>(new ZmqDealer(std::move(socket), options));
}

Status ZmqDealer::Send(const Message& message) {
  DGC_ASSIGN_OR_RETURN(std::string frame, Encode(message, encode_));
  return socket_->SendFrames({std::move(frame)});
}

StatusOr<std::optional<Decoded>> ZmqDealer::Receive(int timeout_ms) {
  DGC_ASSIGN_OR_RETURN(auto frames, socket_->ReceiveFrames(timeout_ms));
  if (!frames) return std::nullopt;
  if (frames->size() != 1) {
    ++rejected_;
    return absl::InvalidArgumentError(
        absl::StrCat("rejected a message of ", frames->size(), " frames (expected 1) from ", socket_->endpoint()));
  }
  auto decoded = Decode((*frames)[0], decode_);
  if (!decoded.ok()) {
    ++rejected_;
    return Status(decoded.status().code(),
                  absl::StrCat("rejected a message from ", socket_->endpoint(), ": ", decoded.status().message()));
  }
  return *std::move(decoded);
}

}  // namespace dgc::wire

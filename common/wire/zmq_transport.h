// A thin adapter over cppzmq: ROUTER/DEALER sockets that carry dgc messages
// (codec.h), CurveZMQ with an allow-list of client keys, and key generation.
//
// This is the one adapter over ZeroMQ: zmq::error_t never leaves
// zmq_transport.cc; every call that can fail returns a Status.
//
// Threads: a ZmqContext is shared by the whole process and is thread safe. A
// socket (ZmqSocket, ZmqRouter, ZmqDealer) is not: create it, use it and
// destroy it on one thread (the process's io_context loop, or a test thread).
// Between threads, use inproc:// sockets. Every socket must be destroyed
// before its context.
//
// Security: Bind() refuses (PermissionDenied) an endpoint reachable from other
// machines unless CurveZMQ keys are configured or `insecure` is set. With keys,
// the server accepts only clients whose public key is in its allow-list; the
// check runs in the context's ZAP handler (inproc://zeromq.zap.01), a thread
// the context owns and joins.
#ifndef DGC_COMMON_WIRE_ZMQ_TRANSPORT_H_
#define DGC_COMMON_WIRE_ZMQ_TRANSPORT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/wire/codec.h"

namespace dgc::wire {

// A CurveZMQ key pair in Z85 text (40 characters each), as `dgcctl keygen`
// writes it.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;
};

// A fresh key pair. Unimplemented when libzmq was built without CURVE.
[[nodiscard]] StatusOr<CurveKeyPair> GenerateCurveKeyPair();

// The public key that belongs to `secret_key` (Z85). InvalidArgument when it
// is not a 40-character Z85 key.
[[nodiscard]] StatusOr<std::string> CurvePublicKey(absl::string_view secret_key);

// True when `endpoint` is reachable only from this machine: inproc://, ipc://,
// and tcp:// on 127.0.0.0/8, ::1, "localhost" or the "lo" interface.
// "tcp://*:5555", "tcp://0.0.0.0:..." and any other address are not.
bool IsLoopbackEndpoint(absl::string_view endpoint);

struct SecurityOptions {
  // This node's CurveZMQ secret key (Z85). Empty: no CurveZMQ (plain TCP).
  // A server (Bind) needs it, with allowed_client_keys; a client (Connect)
  // needs it together with server_public_key.
  std::string secret_key;
  // Server: the public keys (Z85) of the clients allowed to connect. Required,
  // non-empty, when secret_key is set on a bound socket.
  std::vector<std::string> allowed_client_keys;
  // Client: the public key of the server to connect to. Empty: plain TCP.
  std::string server_public_key;
  // Allows Bind() on a non-loopback endpoint without keys (--insecure).
  // Default false: such a bind is refused.
  bool insecure = false;
};

struct SocketOptions {
  SecurityOptions security;
  // Frames larger than this are dropped by libzmq (which disconnects the
  // peer) and refused by Decode. Default: kDefaultMaxMessageBytes (256 MiB).
  size_t max_message_bytes = kDefaultMaxMessageBytes;
  // Messages queued per peer before sends block (then fail after
  // send_timeout_ms). Default 1000 each way.
  int send_hwm = 1000;
  int recv_hwm = 1000;
  // A send that cannot be queued within this time fails with Unavailable.
  // Default 1000 ms.
  int send_timeout_ms = 1000;
  // How long close() waits to flush unsent messages. Default 0: drop them
  // (dgc's protocols resend what was not acknowledged).
  int linger_ms = 0;
  // DEALER: the routing id the ROUTER sees (a worker uses its worker id so
  // a reconnect keeps its identity). Empty: libzmq picks one.
  std::string routing_id;
};

// The process's ZeroMQ context and, once a CurveZMQ server socket is bound,
// its ZAP handler thread. Thread safe.
class ZmqContext {
 public:
  [[nodiscard]] static StatusOr<std::unique_ptr<ZmqContext>> Create(int io_threads = 1);
  // Stops and joins the ZAP thread. Every socket of the context must already
  // be destroyed (libzmq blocks otherwise).
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;

  // CurveZMQ handshakes refused by the allow-list, and accepted, so far.
  uint64_t zap_denied() const { return zap_denied_.load(); }
  uint64_t zap_allowed() const { return zap_allowed_.load(); }

  // Registers the allow-list for `domain` (a ZAP domain, one per server
  // socket), starting the ZAP handler on first use. Keys are Z85;
  // InvalidArgument on a malformed key. Used by ZmqSocket::Bind.
  [[nodiscard]] Status AllowClients(const std::string& domain, const std::vector<std::string>& z85_keys);

 private:
  friend class ZmqSocket;
  class ZapHandler;
  explicit ZmqContext(int io_threads);

  zmq::context_t context_;
  std::atomic<uint64_t> zap_denied_{0};
  std::atomic<uint64_t> zap_allowed_{0};
  std::unique_ptr<ZapHandler> zap_;  // created on first AllowClients; guarded by its own mutex
};

enum class SocketType { kRouter, kDealer };

// A ROUTER or DEALER socket moving raw frames. Not thread safe (see above).
class ZmqSocket {
 public:
  // Binds `endpoint` (e.g. "tcp://127.0.0.1:*"; read the chosen port back
  // with endpoint()). PermissionDenied for a non-loopback endpoint without
  // keys unless options.security.insecure; InvalidArgument for bad keys or a
  // secret key without allowed clients; Unavailable when the address is in
  // use or cannot be bound.
  [[nodiscard]] static StatusOr<std::unique_ptr<ZmqSocket>> Bind(ZmqContext& context, SocketType type,
                                                                 const std::string& endpoint,
                                                                 const SocketOptions& options);
  // Connects to `endpoint` (the connection itself is made in the background
  // and retried by libzmq). A CurveZMQ client when
  // options.security.server_public_key is set, which needs secret_key too.
  [[nodiscard]] static StatusOr<std::unique_ptr<ZmqSocket>> Connect(ZmqContext& context, SocketType type,
                                                                    const std::string& endpoint,
                                                                    const SocketOptions& options);
  ~ZmqSocket();

  // The bound or connected endpoint; after Bind, with the real port.
  const std::string& endpoint() const { return endpoint_; }
  SocketType type() const { return type_; }
  // The ZAP domain of a CurveZMQ server socket ("" otherwise): pass it to
  // ZmqContext::AllowClients to replace the allow-list (SIGHUP).
  const std::string& zap_domain() const { return zap_domain_; }

  // Sends one multipart message. Unavailable when it cannot be queued within
  // send_timeout_ms; NotFound (ROUTER) when the first frame names no
  // connected peer.
  [[nodiscard]] Status SendFrames(const std::vector<std::string>& frames);
  // Waits up to timeout_ms (0: do not wait) for one multipart message;
  // nullopt when none came. Errors only when the socket or context is broken
  // (Cancelled once the context is shutting down).
  [[nodiscard]] StatusOr<std::optional<std::vector<std::string>>> ReceiveFrames(int timeout_ms);

  // For an io_context: the edge-triggered file descriptor libzmq signals
  // (ZMQ_FD) and whether a message is waiting now (ZMQ_EVENTS & POLLIN).
  // After the fd fires, receive with timeout 0 until nothing is left.
  [[nodiscard]] StatusOr<int> fd();
  [[nodiscard]] StatusOr<bool> readable();

 private:
  ZmqSocket(ZmqContext& context, SocketType type);
  Status Configure(const SocketOptions& options);
  Status SetupCurveServer(ZmqContext& context, const SecurityOptions& security);
  Status SetupCurveClient(const SecurityOptions& security);

  zmq::socket_t socket_;
  SocketType type_;
  std::string endpoint_;
  std::string zap_domain_;
};

// A ROUTER carrying dgc messages: each inbound message is [peer id, frame].
class ZmqRouter {
 public:
  struct Inbound {
    std::string peer;  // the DEALER's routing id; pass it to Send to reply
    Decoded message;
  };

  // As ZmqSocket::Bind.
  [[nodiscard]] static StatusOr<std::unique_ptr<ZmqRouter>> Bind(ZmqContext& context,
                                                                 const std::string& endpoint,
                                                                 const SocketOptions& options);

  [[nodiscard]] Status Send(const std::string& peer, const Message& message);
  // Waits up to timeout_ms for one message; nullopt on timeout. A message
  // that is not exactly [peer, frame] or does not decode is counted in
  // rejected() and returned as its error (the codec's code, the message
  // naming the peer and the kind of fault); the socket stays usable, so the
  // caller logs and receives again.
  [[nodiscard]] StatusOr<std::optional<Inbound>> Receive(int timeout_ms);

  uint64_t rejected() const { return rejected_; }
  ZmqSocket& socket() { return *socket_; }
  const std::string& endpoint() const { return socket_->endpoint(); }

 private:
  ZmqRouter(std::unique_ptr<ZmqSocket> socket, const SocketOptions& options);
  std::unique_ptr<ZmqSocket> socket_;
  EncodeOptions encode_;
  DecodeOptions decode_;
  uint64_t rejected_ = 0;
};

// A DEALER carrying dgc messages: one frame per message.
class ZmqDealer {
 public:
  // As ZmqSocket::Connect.
  [[nodiscard]] static StatusOr<std::unique_ptr<ZmqDealer>> Connect(ZmqContext& context,
                                                                    const std::string& endpoint,
                                                                    const SocketOptions& options);

  [[nodiscard]] Status Send(const Message& message);
  // As ZmqRouter::Receive, for a message of one frame.
  [[nodiscard]] StatusOr<std::optional<Decoded>> Receive(int timeout_ms);

  uint64_t rejected() const { return rejected_; }
  ZmqSocket& socket() { return *socket_; }

 private:
  ZmqDealer(std::unique_ptr<ZmqSocket> socket, const SocketOptions& options);
  std::unique_ptr<ZmqSocket> socket_;
  EncodeOptions encode_;
  DecodeOptions decode_;
  uint64_t rejected_ = 0;
};

}  // namespace dgc::wire

#endif  // DGC_COMMON_WIRE_ZMQ_TRANSPORT_H_

// ZeroMQ transport over real loopback sockets: one shared context, one socket
// per thread, ports chosen by the system. Every wait is bounded.
#include "common/wire/zmq_transport.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace dgc::wire {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWaitMs = 5000;  // upper bound for anything that should happen

class ZmqTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ctx = ZmqContext::Create();
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    context_ = *std::move(ctx);
  }
  std::unique_ptr<ZmqContext> context_;
};

// Client side of a request/reply: connects, sends a Register, waits for the
// RegisterAck. Runs on its own thread with its own socket.
struct ClientResult {
  Status status = absl::UnknownError("not run");
  std::optional<Decoded> reply;
};

ClientResult RunClient(ZmqContext& ctx, const std::string& endpoint, const SocketOptions& options,
                       int wait_ms) {
  ClientResult out;
  auto dealer = ZmqDealer::Connect(ctx, endpoint, options);
  if (!dealer.ok()) {
    out.status = dealer.status();
    return out;
  }
  out.status = (*dealer)->Send(Register{"worker-1", 8, {{0, 1 << 30, "test-gpu"}}, "test", "localhost", 0, "", 1});
  if (!out.status.ok()) return out;
  auto reply = (*dealer)->Receive(wait_ms);
  if (!reply.ok()) {
    out.status = reply.status();
    return out;
  }
  out.reply = *std::move(reply);
  return out;
}

// Serves until one request is answered or `wait_ms` passes; returns how many
// messages were answered.
int ServeOnce(ZmqRouter& router, int wait_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  while (Clock::now() < deadline) {
    auto in = router.Receive(100);
    if (!in.ok() || !*in) continue;
    EXPECT_EQ((*in)->message.kind(), MessageKind::kRegister);
    EXPECT_TRUE(router.Send((*in)->peer, RegisterAck{true, "", 1000, 30000}).ok());
    return 1;
  }
  return 0;
}

TEST_F(ZmqTransportTest, BindsLoopbackWithSystemChosenPortAndReadsItBack) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", {});
  ASSERT_TRUE(router.ok()) << router.status();
  const std::string& ep = (*router)->endpoint();
  EXPECT_EQ(ep.rfind("tcp://127.0.0.1:", 0), 0u) << ep;
  EXPECT_EQ(ep.find('*'), std::string::npos) << ep;
}

TEST_F(ZmqTransportTest, RoundTripsRequestAndReplyBetweenThreads) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", {});
  ASSERT_TRUE(router.ok()) << router.status();
  ClientResult client;
  std::thread t([&] { client = RunClient(*context_, (*router)->endpoint(), {}, kWaitMs); });
  int served = ServeOnce(**router, kWaitMs);
  t.join();
  EXPECT_EQ(served, 1);
  ASSERT_TRUE(client.status.ok()) << client.status;
  ASSERT_TRUE(client.reply.has_value());
  ASSERT_EQ(client.reply->kind(), MessageKind::kRegisterAck);
  EXPECT_EQ(std::get<RegisterAck>(client.reply->message).lease_ms, 30000u);
  EXPECT_EQ((*router)->rejected(), 0u);
}

TEST_F(ZmqTransportTest, DealerRoutingIdIsThePeerTheRouterSees) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", {});
  ASSERT_TRUE(router.ok());
  std::thread t([&] {
    SocketOptions o;
    o.routing_id = "worker-7";
    auto dealer = ZmqDealer::Connect(*context_, (*router)->endpoint(), o);
    ASSERT_TRUE(dealer.ok());
    ASSERT_TRUE((*dealer)->Send(Credit{1}).ok());
    auto r = (*dealer)->Receive(kWaitMs);  // keep the socket open until answered
    EXPECT_TRUE(r.ok() && r->has_value());
  });
  auto in = (*router)->Receive(kWaitMs);
  ASSERT_TRUE(in.ok() && in->has_value());
  EXPECT_EQ((*in)->peer, "worker-7");
  EXPECT_TRUE((*router)->Send("worker-7", Credit{2}).ok());
  t.join();
}

TEST_F(ZmqTransportTest, SendToUnknownPeerIsNotFound) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", {});
  ASSERT_TRUE(router.ok());
  Status s = (*router)->Send("nobody", Credit{1});
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
}

TEST_F(ZmqTransportTest, GarbageFramesAreRejectedAndCountedAndTheSocketKeepsWorking) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", {});
  ASSERT_TRUE(router.ok());
  auto encoded_credit = Encode(Credit{5});
  ASSERT_TRUE(encoded_credit.ok());
  std::thread t([&] {
    auto raw = ZmqSocket::Connect(*context_, SocketType::kDealer, (*router)->endpoint(), {});
    ASSERT_TRUE(raw.ok());
    EXPECT_TRUE((*raw)->SendFrames({"this is not a capnp message"}).ok());   // not word aligned
    EXPECT_TRUE((*raw)->SendFrames({std::string(64, '\xff')}).ok());          // bad segment table
    EXPECT_TRUE((*raw)->SendFrames({*encoded_credit, *encoded_credit}).ok()); // two frames
    EXPECT_TRUE((*raw)->SendFrames({*encoded_credit}).ok());                  // then a good one
    auto r = (*raw)->ReceiveFrames(kWaitMs);  // wait for the test to finish reading
    EXPECT_TRUE(r.ok());
  });
  int errors = 0;
  std::optional<ZmqRouter::Inbound> good;
  auto deadline = Clock::now() + std::chrono::milliseconds(kWaitMs);
  std::string peer;
  while (!good && Clock::now() < deadline) {
    auto in = (*router)->Receive(100);
    if (!in.ok()) {
      EXPECT_TRUE(absl::IsInvalidArgument(in.status())) << in.status();
      EXPECT_NE(in.status().message().find("rejected"), std::string::npos);
      ++errors;
      continue;
    }
    if (*in) good = std::move(**in);
  }
  EXPECT_EQ(errors, 3);
  EXPECT_EQ((*router)->rejected(), 3u);
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(std::get<Credit>(good->message.message).credits, 5u);
  EXPECT_TRUE((*router)->Send(good->peer, Credit{0}).ok());
  t.join();
}

TEST_F(ZmqTransportTest, RefusesNonLoopbackBindWithoutKeys) {
  for (const char* ep : {"tcp://*:0", "tcp://0.0.0.0:*", "tcp://10.1.2.3:*", "tcp://eth0:*"}) {
    auto router = ZmqRouter::Bind(*context_, ep, {});
    ASSERT_FALSE(router.ok()) << ep;
    EXPECT_TRUE(absl::IsPermissionDenied(router.status())) << ep << ": " << router.status();
    EXPECT_NE(router.status().message().find("--insecure"), std::string::npos);
  }
}

TEST(LoopbackEndpointTest, ClassifiesEndpoints) {
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:*"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.3.2.1:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://localhost:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://lo:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("inproc://x"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://*:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://0.0.0.0:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://[::]:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://128.0.0.1:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://127.0.0.1.evil.com:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://127.0.0:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("pgm://eth0;239.1.1.1:5555"));
}

TEST(CurveKeyTest, KeygenMakesAPairWhosePublicKeyDerivesFromTheSecret) {
  auto pair = GenerateCurveKeyPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->public_key.size(), 40u);
  EXPECT_EQ(pair->secret_key.size(), 40u);
  auto pub = CurvePublicKey(pair->secret_key);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(*pub, pair->public_key);
  EXPECT_TRUE(absl::IsInvalidArgument(CurvePublicKey("short").status()));
  EXPECT_NE(GenerateCurveKeyPair()->secret_key, pair->secret_key);
}

class CurveTest : public ZmqTransportTest {
 protected:
  void SetUp() override {
    ZmqTransportTest::SetUp();
    server_ = *GenerateCurveKeyPair();
    allowed_ = *GenerateCurveKeyPair();
    other_ = *GenerateCurveKeyPair();
  }
  SocketOptions ServerOptions() {
    SocketOptions o;
    o.security.secret_key = server_.secret_key;
    o.security.allowed_client_keys = {allowed_.public_key};
    return o;
  }
  SocketOptions ClientOptions(const CurveKeyPair& me) {
    SocketOptions o;
    o.security.secret_key = me.secret_key;
    o.security.server_public_key = server_.public_key;
    return o;
  }
  CurveKeyPair server_, allowed_, other_;
};

TEST_F(CurveTest, AllowedClientRoundTrips) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", ServerOptions());
  ASSERT_TRUE(router.ok()) << router.status();
  ClientResult client;
  std::thread t([&] { client = RunClient(*context_, (*router)->endpoint(), ClientOptions(allowed_), kWaitMs); });
  EXPECT_EQ(ServeOnce(**router, kWaitMs), 1);
  t.join();
  ASSERT_TRUE(client.status.ok()) << client.status;
  ASSERT_TRUE(client.reply.has_value());
  EXPECT_EQ(client.reply->kind(), MessageKind::kRegisterAck);
  EXPECT_GE(context_->zap_allowed(), 1u);
}

TEST_F(CurveTest, ClientWithKeyNotInTheAllowListIsRefused) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", ServerOptions());
  ASSERT_TRUE(router.ok()) << router.status();
  ClientResult client;
  // The client waits 1.5 s for a reply that must never come.
  std::thread t([&] { client = RunClient(*context_, (*router)->endpoint(), ClientOptions(other_), 1500); });
  EXPECT_EQ(ServeOnce(**router, 1500), 0);
  t.join();
  EXPECT_TRUE(client.status.ok()) << client.status;
  EXPECT_FALSE(client.reply.has_value());
  EXPECT_GE(context_->zap_denied(), 1u);
  EXPECT_EQ(context_->zap_allowed(), 0u);
}

TEST_F(CurveTest, PlainClientGetsNothingFromACurveServer) {
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", ServerOptions());
  ASSERT_TRUE(router.ok()) << router.status();
  ClientResult client;
  std::thread t([&] { client = RunClient(*context_, (*router)->endpoint(), {}, 1000); });
  EXPECT_EQ(ServeOnce(**router, 1000), 0);
  t.join();
  EXPECT_FALSE(client.reply.has_value());
}

TEST_F(CurveTest, KeysAllowBindingAndSecretWithoutAllowListIsRefused) {
  SocketOptions o = ServerOptions();
  o.security.allowed_client_keys.clear();
  auto router = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", o);
  ASSERT_FALSE(router.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(router.status())) << router.status();

  o = ServerOptions();
  o.security.allowed_client_keys = {"not a key"};
  EXPECT_TRUE(absl::IsInvalidArgument(ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", o).status()));

  SocketOptions client = ClientOptions(allowed_);
  client.security.secret_key.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(ZmqDealer::Connect(*context_, "tcp://127.0.0.1:1", client).status()));
}

TEST_F(CurveTest, TwoServersInOneContextKeepTheirOwnAllowLists) {
  SocketOptions a = ServerOptions();
  SocketOptions b = ServerOptions();
  b.security.allowed_client_keys = {other_.public_key};
  auto ra = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", a);
  auto rb = ZmqRouter::Bind(*context_, "tcp://127.0.0.1:*", b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ClientResult client;
  // `other_` is allowed on b only: refused by a.
  std::thread t([&] { client = RunClient(*context_, (*ra)->endpoint(), ClientOptions(other_), 1000); });
  EXPECT_EQ(ServeOnce(**ra, 1000), 0);
  t.join();
  EXPECT_FALSE(client.reply.has_value());
  std::thread t2([&] { client = RunClient(*context_, (*rb)->endpoint(), ClientOptions(other_), kWaitMs); });
  EXPECT_EQ(ServeOnce(**rb, kWaitMs), 1);
  t2.join();
  EXPECT_TRUE(client.reply.has_value());
}

}  // namespace
}  // namespace dgc::wire

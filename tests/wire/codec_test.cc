#include "common/wire/codec.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace dgc::wire {
namespace {

ChunkMeta SampleMeta() {
  ChunkMeta m;
  m.link = "tap0";
  m.shard = 2;
  m.shard_count = 4;
  m.seq = 472222;
  m.start_ns = 1700000000LL * 1000000000;
  m.duration_ns = 3600LL * 1000000000;
  m.packets = 123456;
  m.raw_bytes = 9876543;
  m.flows = 321;
  m.amend = true;
  return m;
}

std::string Binary(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

Decoded RoundTrip(const Message& m) {
  auto bytes = Encode(m);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  auto d = Decode(*bytes);
  EXPECT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->version, kProtocolVersion);
  EXPECT_EQ(d->kind(), KindOf(m));
  return *std::move(d);
}

void ExpectMetaEq(const ChunkMeta& a, const ChunkMeta& b) {
  EXPECT_EQ(a.link, b.link);
  EXPECT_EQ(a.shard, b.shard);
  EXPECT_EQ(a.shard_count, b.shard_count);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.start_ns, b.start_ns);
  EXPECT_EQ(a.duration_ns, b.duration_ns);
  EXPECT_EQ(a.packets, b.packets);
  EXPECT_EQ(a.raw_bytes, b.raw_bytes);
  EXPECT_EQ(a.flows, b.flows);
  EXPECT_EQ(a.amend, b.amend);
}

TEST(CodecTest, ChunkDataRoundTripsMetaAndBinaryPayloadExactly) {
  ChunkData in{SampleMeta(), Binary(1 << 20, 7)};
  in.payload[5] = '\0';  // binary payloads hold NULs
  Decoded d = RoundTrip(in);
  const auto& out = std::get<ChunkData>(d.message);
  ExpectMetaEq(out.meta, in.meta);
  EXPECT_EQ(out.payload, in.payload);
}

TEST(CodecTest, IngestMessagesRoundTrip) {
  auto offer = std::get<ChunkOffer>(RoundTrip(ChunkOffer{SampleMeta(), 4242}).message);
  ExpectMetaEq(offer.meta, SampleMeta());
  EXPECT_EQ(offer.payload_bytes, 4242u);
  auto ack = std::get<ChunkAck>(RoundTrip(ChunkAck{"tap0", 1, -5, true, "why", 1500}).message);
  EXPECT_EQ(ack.link, "tap0");
  EXPECT_EQ(ack.shard, 1u);
  EXPECT_EQ(ack.seq, -5);
  EXPECT_TRUE(ack.accepted);
  EXPECT_EQ(ack.reason, "why");
  EXPECT_EQ(ack.retry_after_ms, 1500u);
  EXPECT_EQ(std::get<Credit>(RoundTrip(Credit{17}).message).credits, 17u);
}

TEST(CodecTest, WorkerMessagesRoundTrip) {
  Register reg{"worker-a", 32, {{0, 80ull << 30, "H100"}, {1, 80ull << 30, "H100"}}, "0.1.0", "gpu7", 0, "", 1};
  auto r = std::get<Register>(RoundTrip(reg).message);
  EXPECT_EQ(r.worker_id, "worker-a");
  EXPECT_EQ(r.cpu_threads, 32u);
  ASSERT_EQ(r.gpus.size(), 2u);
  EXPECT_EQ(r.gpus[1].index, 1u);
  EXPECT_EQ(r.gpus[1].memory_bytes, 80ull << 30);
  EXPECT_EQ(r.gpus[1].name, "H100");
  EXPECT_EQ(r.build, "0.1.0");
  EXPECT_EQ(r.hostname, "gpu7");
  EXPECT_TRUE(r.peer_address.empty());
  EXPECT_EQ(r.ranks, 1u);
  reg.peer_address = "10.0.0.7:29500";
  reg.ranks = 2;
  r = std::get<Register>(RoundTrip(reg).message);
  EXPECT_EQ(r.peer_address, "10.0.0.7:29500");
  EXPECT_EQ(r.ranks, 2u);

  auto ra = std::get<RegisterAck>(RoundTrip(RegisterAck{true, "", 1000, 30000}).message);
  EXPECT_TRUE(ra.accepted);
  EXPECT_EQ(ra.heartbeat_interval_ms, 1000u);
  EXPECT_EQ(ra.lease_ms, 30000u);

  auto hb = std::get<Heartbeat>(RoundTrip(Heartbeat{"worker-a", {1, 2, 99}, 1234.5}).message);
  EXPECT_EQ(hb.active_jobs, (std::vector<uint64_t>{1, 2, 99}));
  EXPECT_DOUBLE_EQ(hb.tokens_per_second, 1234.5);

  JobAssign ja;
  ja.job_id = 77;
  ja.attempt = 2;
  ja.kind = JobKind::kRetrain;
  ja.lease_deadline_ns = 123456789;
  ja.meta = SampleMeta();
  ja.chunk_bytes = Binary(1000, 1);
  ja.parent = JobAssign::Parent::kBytes;
  ja.parent_bytes = Binary(500, 2);
  ja.options_json = R"({"steps":100})";
  ja.slots = 4;
  auto a = std::get<JobAssign>(RoundTrip(ja).message);
  EXPECT_EQ(a.slots, 4u);
  EXPECT_EQ(a.gang.world_size, 0u);  // no gang
  ja.gang = {"10.0.0.7:29500", "job/77/2/", 5, 3};
  a = std::get<JobAssign>(RoundTrip(ja).message);
  EXPECT_EQ(a.gang.store_address, "10.0.0.7:29500");
  EXPECT_EQ(a.gang.store_prefix, "job/77/2/");
  EXPECT_EQ(a.gang.world_size, 5u);
  EXPECT_EQ(a.gang.first_rank, 3u);
  ja.gang.first_rank = 5;  // outside the world: refused
  EXPECT_FALSE(Decode(*Encode(ja)).ok());
  ja.gang = {};
  EXPECT_EQ(a.job_id, 77u);
  EXPECT_EQ(a.attempt, 2u);
  EXPECT_EQ(a.kind, JobKind::kRetrain);
  EXPECT_EQ(a.lease_deadline_ns, 123456789);
  ExpectMetaEq(a.meta, ja.meta);
  EXPECT_EQ(a.chunk_bytes, ja.chunk_bytes);
  EXPECT_TRUE(a.chunk_path.empty());
  EXPECT_EQ(a.parent, JobAssign::Parent::kBytes);
  EXPECT_EQ(a.parent_bytes, ja.parent_bytes);
  EXPECT_EQ(a.options_json, ja.options_json);
  EXPECT_TRUE(a.train_chunks.empty());
  // A retrain's further chunks travel in order.
  ja.train_chunks = {Binary(300, 7), Binary(200, 8)};
  a = std::get<JobAssign>(RoundTrip(ja).message);
  EXPECT_EQ(a.train_chunks, ja.train_chunks);
  ja.train_chunks.clear();

  ja.chunk_bytes.clear();
  ja.chunk_path = "/shared/spool/tap0/472222.dgcc";
  ja.parent = JobAssign::Parent::kId;
  ja.parent_id = "tap0/472221";
  ja.slots = 0;  // as a coordinator from before the field sends it: one slot
  a = std::get<JobAssign>(RoundTrip(ja).message);
  EXPECT_EQ(a.slots, 1u);
  EXPECT_EQ(a.chunk_path, ja.chunk_path);
  EXPECT_EQ(a.parent, JobAssign::Parent::kId);
  EXPECT_EQ(a.parent_id, "tap0/472221");

  JobResult jr{77, 2, "worker-a", Binary(3000, 3), {12.5, 99999, 0.13, 3000, R"({"mean":0.13})"}};
  auto res = std::get<JobResult>(RoundTrip(jr).message);
  EXPECT_EQ(res.job_id, 77u);
  EXPECT_EQ(res.attempt, 2u);
  EXPECT_EQ(res.worker_id, "worker-a");
  EXPECT_EQ(res.artifact, jr.artifact);
  EXPECT_DOUBLE_EQ(res.stats.train_seconds, 12.5);
  EXPECT_EQ(res.stats.tokens, 99999u);
  EXPECT_DOUBLE_EQ(res.stats.fidelity, 0.13);
  EXPECT_EQ(res.stats.artifact_bytes, 3000u);
  EXPECT_EQ(res.stats.json, jr.stats.json);

  auto jf = std::get<JobFailed>(RoundTrip(JobFailed{77, 2, "worker-a", "CUDA OOM", false}).message);
  EXPECT_EQ(jf.reason, "CUDA OOM");
  EXPECT_FALSE(jf.retryable);
  auto ack = std::get<JobAck>(RoundTrip(JobAck{77, true}).message);
  EXPECT_EQ(ack.job_id, 77u);
  EXPECT_TRUE(ack.duplicate);
}

TEST(CodecTest, OperatorMessagesRoundTrip) {
  auto rq = std::get<OperatorRequest>(
      RoundTrip(OperatorRequest{5, OperatorVerb::kDrain, "workers", "worker-a", R"({"force":true})"}).message);
  EXPECT_EQ(rq.request_id, 5u);
  EXPECT_EQ(rq.verb, OperatorVerb::kDrain);
  EXPECT_EQ(rq.noun, "workers");
  EXPECT_EQ(rq.name, "worker-a");
  EXPECT_EQ(rq.args_json, R"({"force":true})");
  auto rp = std::get<OperatorReply>(RoundTrip(OperatorReply{5, false, "no such worker", ""}).message);
  EXPECT_FALSE(rp.ok);
  EXPECT_EQ(rp.error, "no such worker");
  // generate fetch: the verb, and a reply with binary beside its JSON.
  auto gq = std::get<OperatorRequest>(RoundTrip(OperatorRequest{6, OperatorVerb::kGenerate, "fetch", "3", "{}"}).message);
  EXPECT_EQ(gq.verb, OperatorVerb::kGenerate);
  const std::string bin("\0\x01packets\xff", 10);
  auto gr = std::get<OperatorReply>(RoundTrip(OperatorReply{6, true, "", R"({"state":"done"})", bin}).message);
  EXPECT_EQ(gr.data, bin);
  EXPECT_EQ(gr.json, R"({"state":"done"})");
}

TEST(CodecTest, GenerateJobRoundTrips) {
  JobAssign ja;
  ja.job_id = (uint64_t{1} << 62) | 9;
  ja.kind = JobKind::kGenerate;
  ja.parent = JobAssign::Parent::kId;
  ja.parent_id = "m";
  ja.train_chunks = {"skeleton-a", "skeleton-b"};
  ja.options_json = R"({"chunks":[]})";
  auto a = std::get<JobAssign>(RoundTrip(ja).message);
  EXPECT_EQ(a.kind, JobKind::kGenerate);
  EXPECT_EQ(a.job_id, ja.job_id);
  EXPECT_EQ(a.train_chunks, ja.train_chunks);
}

TEST(CodecTest, EveryKindHasAName) {
  for (int k = 0; k < static_cast<int>(std::variant_size_v<Message>); ++k) {
    EXPECT_STRNE(MessageKindName(static_cast<MessageKind>(k)), "unknown") << k;
  }
}

TEST(CodecTest, RejectsEmptyFrame) {
  auto d = Decode("");
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(d.status()));
}

TEST(CodecTest, RejectsEveryTruncationOfAValidMessage) {
  auto bytes = Encode(JobResult{1, 1, "w", Binary(200, 4), {}});
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    auto d = Decode(absl::string_view(*bytes).substr(0, n));
    ASSERT_FALSE(d.ok()) << "prefix of " << n << " bytes decoded";
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << n << ": " << d.status();
  }
}

TEST(CodecTest, RejectsBytesAfterTheMessage) {
  auto bytes = Encode(Credit{3});
  ASSERT_TRUE(bytes.ok());
  auto d = Decode(*bytes + std::string(8, '\0'));
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(d.status()));
  EXPECT_NE(d.status().message().find("after the end"), std::string::npos) << d.status();
}

TEST(CodecTest, RejectsOversizedMessageBeforeParsing) {
  auto bytes = Encode(ChunkData{SampleMeta(), Binary(10000, 5)});
  ASSERT_TRUE(bytes.ok());
  DecodeOptions small;
  small.max_message_bytes = 4096;
  auto d = Decode(*bytes, small);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(d.status())) << d.status();
  EXPECT_NE(d.status().message().find("4096"), std::string::npos) << d.status();
}

TEST(CodecTest, EncodeRefusesMessageAboveTheCap) {
  EncodeOptions small;
  small.max_message_bytes = 4096;
  auto bytes = Encode(ChunkData{SampleMeta(), Binary(10000, 5)}, small);
  ASSERT_FALSE(bytes.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(bytes.status())) << bytes.status();
  EXPECT_TRUE(Encode(ChunkData{SampleMeta(), Binary(1000, 5)}, small).ok());
}

TEST(CodecTest, RejectsOtherProtocolVersionWithFailedPrecondition) {
  auto bytes = EncodeWithVersion(Credit{1}, kProtocolVersion + 1);
  ASSERT_TRUE(bytes.ok());
  auto d = Decode(*bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(d.status())) << d.status();
  EXPECT_NE(d.status().message().find("version 2"), std::string::npos) << d.status();
}

TEST(CodecTest, RejectsUnknownMessageKind) {
  auto bytes = Encode(Credit{1});
  ASSERT_TRUE(bytes.ok());
  // Flat layout: segment table (8 bytes), root pointer (8), then the
  // Envelope's data section: version (2 bytes), union discriminant (2 bytes).
  std::string b = *bytes;
  ASSERT_EQ(static_cast<uint8_t>(b[16]), kProtocolVersion);
  b[18] = 99;
  b[19] = 0;
  auto d = Decode(b);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << d.status();
  EXPECT_NE(d.status().message().find("unknown message kind 99"), std::string::npos) << d.status();
}

TEST(CodecTest, RandomBytesAndBitFlipsNeverCrash) {
  std::mt19937 rng(11);
  JobAssign small;
  small.job_id = 9;
  small.attempt = 1;
  small.lease_deadline_ns = 5;
  small.meta = SampleMeta();
  small.chunk_bytes = Binary(64, 6);
  auto valid = Encode(small);
  ASSERT_TRUE(valid.ok());
  int decoded = 0;
  for (int i = 0; i < 2000; ++i) {  // bounded: 2000 inputs of at most 512 bytes
    std::string b;
    if (i % 2) {
      b = Binary(8 * (1 + rng() % 64), rng());
    } else {
      b = *valid;
      for (int f = 0; f < 3; ++f) b[rng() % b.size()] ^= static_cast<char>(1 << (rng() % 8));
    }
    auto d = Decode(b);
    if (d.ok()) ++decoded;
    else EXPECT_FALSE(d.status().message().empty());
  }
  SUCCEED() << decoded << " of 2000 mutated inputs still decoded";
}

}  // namespace
}  // namespace dgc::wire

#include "common/wire/codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/wire/dgc.capnp.h"

namespace dgc::wire {
namespace {

namespace s = ::dgc::wire::schema;

static_assert(kProtocolVersion == s::PROTOCOL_VERSION, "codec.h and dgc.capnp disagree");

// Generous caps on list lengths: no honest peer comes near them, and they stop a
// message from making us allocate per element far more than its own size.
constexpr uint32_t kMaxGpus = 1024;
constexpr uint32_t kMaxActiveJobs = 1 << 20;

// A std::string as capnp Text: the reader must see a NUL after the bytes,
// which std::string::c_str() guarantees.
kj::StringPtr AsText(const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); }
capnp::Data::Reader AsData(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}
std::string FromText(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }
std::string FromData(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

// ----- encode ------------------------------------------------------------

void Put(s::ChunkMeta::Builder b, const ChunkMeta& m) {
  b.setLink(AsText(m.link));
  b.setShard(m.shard);
  b.setShardCount(m.shard_count);
  b.setSeq(m.seq);
  b.setStartNs(m.start_ns);
  b.setDurationNs(m.duration_ns);
  b.setPackets(m.packets);
  b.setRawBytes(m.raw_bytes);
  b.setFlows(m.flows);
  b.setAmend(m.amend);
}

void Put(s::JobStats::Builder b, const JobStats& st) {
  b.setTrainSeconds(st.train_seconds);
  b.setTokens(st.tokens);
  b.setFidelity(st.fidelity);
  b.setArtifactBytes(st.artifact_bytes);
  b.setJson(AsText(st.json));
}

struct BodyWriter {
  s::Envelope::Body::Builder body;

  void operator()(const ChunkOffer& m) {
    auto b = body.initChunkOffer();
    Put(b.initMeta(), m.meta);
    b.setPayloadBytes(m.payload_bytes);
  }
  void operator()(const ChunkData& m) {
    auto b = body.initChunkData();
    Put(b.initMeta(), m.meta);
    b.setPayload(AsData(m.payload));
  }
  void operator()(const ChunkAck& m) {
    auto b = body.initChunkAck();
    b.setLink(AsText(m.link));
    b.setShard(m.shard);
    b.setSeq(m.seq);
    b.setAccepted(m.accepted);
    b.setReason(AsText(m.reason));
    b.setRetryAfterMs(m.retry_after_ms);
  }
  void operator()(const Credit& m) { body.initCredit().setCredits(m.credits); }
  void operator()(const Register& m) {
    auto b = body.initRegister();
    b.setWorkerId(AsText(m.worker_id));
    b.setCpuThreads(m.cpu_threads);
    auto gpus = b.initGpus(static_cast<unsigned>(m.gpus.size()));
    for (size_t i = 0; i < m.gpus.size(); ++i) {
      gpus[i].setIndex(m.gpus[i].index);
      gpus[i].setMemoryBytes(m.gpus[i].memory_bytes);
      gpus[i].setName(AsText(m.gpus[i].name));
    }
    b.setBuild(AsText(m.build));
    b.setHostname(AsText(m.hostname));
    b.setMaxJobs(m.max_jobs);
    b.setPeerAddress(AsText(m.peer_address));
    b.setRanks(m.ranks);
  }
  void operator()(const RegisterAck& m) {
    auto b = body.initRegisterAck();
    b.setAccepted(m.accepted);
    b.setReason(AsText(m.reason));
    b.setHeartbeatIntervalMs(m.heartbeat_interval_ms);
    b.setLeaseMs(m.lease_ms);
  }
  void operator()(const Heartbeat& m) {
    auto b = body.initHeartbeat();
    b.setWorkerId(AsText(m.worker_id));
    auto jobs = b.initActiveJobs(static_cast<unsigned>(m.active_jobs.size()));
    for (size_t i = 0; i < m.active_jobs.size(); ++i) jobs.set(i, m.active_jobs[i]);
    b.setTokensPerSecond(m.tokens_per_second);
  }
  void operator()(const JobAssign& m) {
    auto b = body.initJobAssign();
    b.setJobId(m.job_id);
    b.setAttempt(m.attempt);
    b.setKind(m.kind == JobKind::kRetrain    ? s::JobKind::RETRAIN
              : m.kind == JobKind::kGenerate ? s::JobKind::GENERATE
                                             : s::JobKind::COMPRESS);
    b.setLeaseDeadlineNs(m.lease_deadline_ns);
    Put(b.initMeta(), m.meta);
    if (!m.chunk_path.empty()) {
      b.getChunk().setChunkPath(AsText(m.chunk_path));
    } else {
      b.getChunk().setChunkBytes(AsData(m.chunk_bytes));
    }
    switch (m.parent) {
      case JobAssign::Parent::kNone: b.getParent().setNone(); break;
      case JobAssign::Parent::kBytes: b.getParent().setParentBytes(AsData(m.parent_bytes)); break;
      case JobAssign::Parent::kId: b.getParent().setParentId(AsText(m.parent_id)); break;
    }
    b.setOptionsJson(AsText(m.options_json));
    b.setSlots(m.slots);
    if (!m.train_chunks.empty()) {
      auto list = b.initTrainChunks(static_cast<unsigned>(m.train_chunks.size()));
      for (size_t i = 0; i < m.train_chunks.size(); ++i) list.set(static_cast<unsigned>(i), AsData(m.train_chunks[i]));
    }
    if (m.gang.world_size > 0) {
      auto g = b.initGang();
      g.setStoreAddress(AsText(m.gang.store_address));
      g.setStorePrefix(AsText(m.gang.store_prefix));
      g.setWorldSize(m.gang.world_size);
      g.setFirstRank(m.gang.first_rank);
    }
  }
  void operator()(const JobResult& m) {
    auto b = body.initJobResult();
    b.setJobId(m.job_id);
    b.setAttempt(m.attempt);
    b.setWorkerId(AsText(m.worker_id));
    b.setArtifact(AsData(m.artifact));
    Put(b.initStats(), m.stats);
  }
  void operator()(const JobFailed& m) {
    auto b = body.initJobFailed();
    b.setJobId(m.job_id);
    b.setAttempt(m.attempt);
    b.setWorkerId(AsText(m.worker_id));
    b.setReason(AsText(m.reason));
    b.setRetryable(m.retryable);
  }
  void operator()(const JobAck& m) {
    auto b = body.initJobAck();
    b.setJobId(m.job_id);
    b.setDuplicate(m.duplicate);
  }
  void operator()(const OperatorRequest& m) {
    auto b = body.initOperatorRequest();
    b.setRequestId(m.request_id);
    b.setVerb(static_cast<s::OperatorVerb>(static_cast<uint16_t>(m.verb)));
    b.setNoun(AsText(m.noun));
    b.setName(AsText(m.name));
    b.setArgsJson(AsText(m.args_json));
  }
  void operator()(const OperatorReply& m) {
    auto b = body.initOperatorReply();
    b.setRequestId(m.request_id);
    b.setOk(m.ok);
    b.setError(AsText(m.error));
    b.setJson(AsText(m.json));
    if (!m.data.empty()) b.setData(AsData(m.data));
  }
};

// Cap'n Proto refuses a single Data or Text field of 2^29 bytes or more.
constexpr size_t kMaxCapnpBlob = (size_t{1} << 29) - 1;

size_t LargestBlob(const Message& message) {
  return std::visit(
      [](const auto& m) -> size_t {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, ChunkData>) return m.payload.size();
        if constexpr (std::is_same_v<T, JobAssign>)
        {
          size_t train = 0;
          for (const auto& c : m.train_chunks) train += c.size();  // one message carries them all
          return std::max({m.chunk_bytes.size(), m.parent_bytes.size(), m.options_json.size(), train});
        }
        if constexpr (std::is_same_v<T, JobResult>) return std::max(m.artifact.size(), m.stats.json.size());
        if constexpr (std::is_same_v<T, OperatorReply>) return m.json.size();
        if constexpr (std::is_same_v<T, OperatorRequest>) return m.args_json.size();
        return 0;
      },
      message);
}

StatusOr<std::string> EncodeImpl(const Message& message, uint16_t version, size_t max_bytes) {
  const MessageKind kind = KindOf(message);
  if (size_t blob = LargestBlob(message); blob > kMaxCapnpBlob || blob > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot encode ", MessageKindName(kind), ": a field of ",
                                                     blob, " bytes exceeds the message cap of ",
                                                     std::min(max_bytes, kMaxCapnpBlob), " bytes"));
  }
  try {
    capnp::MallocMessageBuilder builder;
    auto env = builder.initRoot<s::Envelope>();
    env.setVersion(version);
    std::visit(BodyWriter{env.getBody()}, message);
    kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
    kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
    if (bytes.size() > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot encode ", MessageKindName(kind), ": ",
                                                       bytes.size(), " bytes exceeds the message cap of ",
                                                       max_bytes, " bytes"));
    }
    return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  } catch (const kj::Exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot encode ", MessageKindName(kind), ": ", e.getDescription().cStr()));
  }
}

// ----- decode ------------------------------------------------------------

ChunkMeta Get(s::ChunkMeta::Reader r) {
  ChunkMeta m;
  m.link = FromText(r.getLink());
  m.shard = r.getShard();
  m.shard_count = r.getShardCount();
  m.seq = r.getSeq();
  m.start_ns = r.getStartNs();
  m.duration_ns = r.getDurationNs();
  m.packets = r.getPackets();
  m.raw_bytes = r.getRawBytes();
  m.flows = r.getFlows();
  m.amend = r.getAmend();
  return m;
}

JobStats Get(s::JobStats::Reader r) {
  JobStats st;
  st.train_seconds = r.getTrainSeconds();
  st.tokens = r.getTokens();
  st.fidelity = r.getFidelity();
  st.artifact_bytes = r.getArtifactBytes();
  st.json = FromText(r.getJson());
  return st;
}

Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed message: ", what));
}

// Reads the body into a Message. Each pointer field is read once, so the
// traversal limit bounds the work by the message's size.
StatusOr<Message> ReadBody(s::Envelope::Body::Reader body) {
  switch (body.which()) {
    case s::Envelope::Body::CHUNK_OFFER: {
      auto r = body.getChunkOffer();
      ChunkOffer m;
      m.meta = Get(r.getMeta());
      m.payload_bytes = r.getPayloadBytes();
      return Message(std::move(m));
    }
    case s::Envelope::Body::CHUNK_DATA: {
      auto r = body.getChunkData();
      ChunkData m;
      m.meta = Get(r.getMeta());
      m.payload = FromData(r.getPayload());
      return Message(std::move(m));
    }
    case s::Envelope::Body::CHUNK_ACK: {
      auto r = body.getChunkAck();
      ChunkAck m;
      m.link = FromText(r.getLink());
      m.shard = r.getShard();
      m.seq = r.getSeq();
      m.accepted = r.getAccepted();
      m.reason = FromText(r.getReason());
      m.retry_after_ms = r.getRetryAfterMs();
      return Message(std::move(m));
    }
    case s::Envelope::Body::CREDIT: {
      Credit m;
      m.credits = body.getCredit().getCredits();
      return Message(m);
    }
    case s::Envelope::Body::REGISTER: {
      auto r = body.getRegister();
      Register m;
      m.worker_id = FromText(r.getWorkerId());
      m.cpu_threads = r.getCpuThreads();
      auto gpus = r.getGpus();
      if (gpus.size() > kMaxGpus) return Malformed(absl::StrCat("register lists ", gpus.size(), " GPUs"));
      m.gpus.reserve(gpus.size());
      for (auto g : gpus) {
        m.gpus.push_back(Gpu{g.getIndex(), g.getMemoryBytes(), FromText(g.getName())});
      }
      m.build = FromText(r.getBuild());
      m.hostname = FromText(r.getHostname());
      m.max_jobs = r.getMaxJobs();
      m.peer_address = FromText(r.getPeerAddress());
      m.ranks = std::max<uint32_t>(1, r.getRanks());
      if (m.ranks > kMaxGpus) return Malformed(absl::StrCat("register brings ", m.ranks, " ranks"));
      return Message(std::move(m));
    }
    case s::Envelope::Body::REGISTER_ACK: {
      auto r = body.getRegisterAck();
      RegisterAck m;
      m.accepted = r.getAccepted();
      m.reason = FromText(r.getReason());
      m.heartbeat_interval_ms = r.getHeartbeatIntervalMs();
      m.lease_ms = r.getLeaseMs();
      return Message(std::move(m));
    }
    case s::Envelope::Body::HEARTBEAT: {
      auto r = body.getHeartbeat();
      Heartbeat m;
      m.worker_id = FromText(r.getWorkerId());
      auto jobs = r.getActiveJobs();
      if (jobs.size() > kMaxActiveJobs) {
        return Malformed(absl::StrCat("heartbeat lists ", jobs.size(), " jobs"));
      }
      m.active_jobs.reserve(jobs.size());
      for (uint64_t id : jobs) m.active_jobs.push_back(id);
      m.tokens_per_second = r.getTokensPerSecond();
      return Message(std::move(m));
    }
    case s::Envelope::Body::JOB_ASSIGN: {
      auto r = body.getJobAssign();
      JobAssign m;
      m.job_id = r.getJobId();
      m.attempt = r.getAttempt();
      switch (r.getKind()) {
        case s::JobKind::COMPRESS: m.kind = JobKind::kCompress; break;
        case s::JobKind::RETRAIN: m.kind = JobKind::kRetrain; break;
        case s::JobKind::GENERATE: m.kind = JobKind::kGenerate; break;
        default: return Malformed(absl::StrCat("unknown job kind ", static_cast<int>(r.getKind())));
      }
      m.lease_deadline_ns = r.getLeaseDeadlineNs();
      m.meta = Get(r.getMeta());
      auto chunk = r.getChunk();
      switch (chunk.which()) {
        case s::JobAssign::Chunk::CHUNK_BYTES: m.chunk_bytes = FromData(chunk.getChunkBytes()); break;
        case s::JobAssign::Chunk::CHUNK_PATH:
          m.chunk_path = FromText(chunk.getChunkPath());
          if (m.chunk_path.empty()) return Malformed("job_assign with an empty chunk path");
          break;
        default: return Malformed("job_assign with an unknown chunk source");
      }
      auto parent = r.getParent();
      switch (parent.which()) {
        case s::JobAssign::Parent::NONE: m.parent = JobAssign::Parent::kNone; break;
        case s::JobAssign::Parent::PARENT_BYTES:
          m.parent = JobAssign::Parent::kBytes;
          m.parent_bytes = FromData(parent.getParentBytes());
          break;
        case s::JobAssign::Parent::PARENT_ID:
          m.parent = JobAssign::Parent::kId;
          m.parent_id = FromText(parent.getParentId());
          break;
        default: return Malformed("job_assign with an unknown parent source");
      }
      m.options_json = FromText(r.getOptionsJson());
      m.slots = std::max<uint32_t>(1, r.getSlots());
      for (auto c : r.getTrainChunks()) m.train_chunks.push_back(FromData(c));
      if (r.hasGang()) {
        auto g = r.getGang();
        m.gang.store_address = FromText(g.getStoreAddress());
        m.gang.store_prefix = FromText(g.getStorePrefix());
        m.gang.world_size = g.getWorldSize();
        m.gang.first_rank = g.getFirstRank();
        if (m.gang.world_size > 0 && (m.gang.first_rank >= m.gang.world_size || m.gang.world_size > 4096 ||
                                      m.gang.store_address.empty())) {
          return Malformed(absl::StrCat("job_assign gang: rank ", m.gang.first_rank, " of ", m.gang.world_size,
                                        " at '", m.gang.store_address, "'"));
        }
      }
      return Message(std::move(m));
    }
    case s::Envelope::Body::JOB_RESULT: {
      auto r = body.getJobResult();
      JobResult m;
      m.job_id = r.getJobId();
      m.attempt = r.getAttempt();
      m.worker_id = FromText(r.getWorkerId());
      m.artifact = FromData(r.getArtifact());
      m.stats = Get(r.getStats());
      return Message(std::move(m));
    }
    case s::Envelope::Body::JOB_FAILED: {
      auto r = body.getJobFailed();
      JobFailed m;
      m.job_id = r.getJobId();
      m.attempt = r.getAttempt();
      m.worker_id = FromText(r.getWorkerId());
      m.reason = FromText(r.getReason());
      m.retryable = r.getRetryable();
      return Message(std::move(m));
    }
    case s::Envelope::Body::JOB_ACK: {
      auto r = body.getJobAck();
      return Message(JobAck{r.getJobId(), r.getDuplicate()});
    }
    case s::Envelope::Body::OPERATOR_REQUEST: {
      auto r = body.getOperatorRequest();
      OperatorRequest m;
      m.request_id = r.getRequestId();
      auto verb = static_cast<uint16_t>(r.getVerb());
      if (verb > static_cast<uint16_t>(OperatorVerb::kGenerate)) {
        return Malformed(absl::StrCat("unknown operator verb ", verb));
      }
      m.verb = static_cast<OperatorVerb>(verb);
      m.noun = FromText(r.getNoun());
      m.name = FromText(r.getName());
      m.args_json = FromText(r.getArgsJson());
      return Message(std::move(m));
    }
    case s::Envelope::Body::OPERATOR_REPLY: {
      auto r = body.getOperatorReply();
      OperatorReply m;
      m.request_id = r.getRequestId();
      m.ok = r.getOk();
      m.error = FromText(r.getError());
      m.json = FromText(r.getJson());
      m.data = FromData(r.getData());
      return Message(std::move(m));
    }
  }
  return Malformed(absl::StrCat("unknown message kind ", static_cast<int>(body.which())));
}

}  // namespace

const char* MessageKindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kChunkOffer: return "chunk_offer";
    case MessageKind::kChunkData: return "chunk_data";
    case MessageKind::kChunkAck: return "chunk_ack";
    case MessageKind::kCredit: return "credit";
    case MessageKind::kRegister: return "register";
    case MessageKind::kRegisterAck: return "register_ack";
    case MessageKind::kHeartbeat: return "heartbeat";
    case MessageKind::kJobAssign: return "job_assign";
    case MessageKind::kJobResult: return "job_result";
    case MessageKind::kJobFailed: return "job_failed";
    case MessageKind::kJobAck: return "job_ack";
    case MessageKind::kOperatorRequest: return "operator_request";
    case MessageKind::kOperatorReply: return "operator_reply";
  }
  return "unknown";
}

StatusOr<std::string> Encode(const Message& message, const EncodeOptions& options) {
  return EncodeImpl(message, kProtocolVersion, options.max_message_bytes);
}

StatusOr<std::string> EncodeWithVersion(const Message& message, uint16_t version) {
  return EncodeImpl(message, version, kDefaultMaxMessageBytes);
}

StatusOr<Decoded> Decode(absl::string_view bytes, const DecodeOptions& options) {
  if (bytes.size() > options.max_message_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("message of ", bytes.size(),
                                                     " bytes exceeds the cap of ", options.max_message_bytes,
                                                     " bytes"));
  }
  if (bytes.empty()) return Malformed("empty frame");
  if (bytes.size() % sizeof(capnp::word) != 0) {
    return Malformed(absl::StrCat(bytes.size(), " bytes is not a whole number of 8-byte words (truncated?)"));
  }
  // ZeroMQ frames carry no alignment promise: copy into words.
  const size_t nwords = bytes.size() / sizeof(capnp::word);
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(nwords);
  std::memcpy(words.begin(), bytes.data(), bytes.size());

  capnp::ReaderOptions reader_options;
  // Each field is read once, so an honest message traverses at most its own
  // words; twice that (plus slack for the fixed parts) stops amplification.
  reader_options.traversalLimitInWords = 2 * nwords + 64;
  reader_options.nestingLimit = options.nesting_limit;
  try {
    capnp::FlatArrayMessageReader reader(kj::ArrayPtr<const capnp::word>(words.begin(), words.size()),
                                          reader_options);
    if (reader.getEnd() != words.end()) {
      return Malformed(absl::StrCat(
          (words.end() - reader.getEnd()) * sizeof(capnp::word), " bytes after the end of the message"));
    }
    auto env = reader.getRoot<s::Envelope>();
    const uint16_t version = env.getVersion();
    if (version != kProtocolVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "protocol version ", version, " is not supported: this build speaks version ", kProtocolVersion,
          " (upgrade the older side)"));
    }
    DGC_ASSIGN_OR_RETURN(Message message, ReadBody(env.getBody()));
    return Decoded{version, std::move(message)};
  } catch (const kj::Exception& e) {
    return Malformed(e.getDescription().cStr());
  }
}

}  // namespace dgc::wire

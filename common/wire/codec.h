// The wire codec: dgc's messages (common/wire/dgc.capnp) as plain C++ values,
// and their encoding to and from one Cap'n Proto frame.
//
// This is the one adapter over Cap'n Proto: no capnp or kj type and no kj
// exception leaves codec.cc. Decode reads every field into the structs below
// while it holds the capnp reader, so a hostile message can fail only inside
// Decode, and only as a Status.
//
// Thread safety: the functions are pure; call them from any thread.
#ifndef DGC_COMMON_WIRE_CODEC_H_
#define DGC_COMMON_WIRE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"

namespace dgc::wire {

// The protocol version this build speaks (dgc.capnp `protocolVersion`; a
// static_assert in codec.cc keeps the two equal).
constexpr uint16_t kProtocolVersion = 1;

// Default cap on one message: a chunk file or a model, with room to spare.
constexpr size_t kDefaultMaxMessageBytes = size_t{256} << 20;

// --- ingest -> coordinator ---------------------------------------------

struct ChunkMeta {
  std::string link;
  uint32_t shard = 0;
  uint32_t shard_count = 1;
  int64_t seq = 0;          // window index: start_ns / duration_ns
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  uint64_t packets = 0;
  uint64_t raw_bytes = 0;   // bytes the packets took in their source capture
  uint64_t flows = 0;
  bool amend = false;       // late packets for a window already sent
};

struct ChunkOffer {
  ChunkMeta meta;
  uint64_t payload_bytes = 0;
};

// payload: the .dgcc chunk file bytes (common/trace/CHUNK_FORMAT.md).
struct ChunkData {
  ChunkMeta meta;
  std::string payload;
};

struct ChunkAck {
  std::string link;
  uint32_t shard = 0;
  int64_t seq = 0;
  bool accepted = false;
  std::string reason;
  // Refused for now (the library's disk is full): send it again after this
  // long. 0: a final refusal.
  uint32_t retry_after_ms = 0;
};

// The ingest may have `credits` chunks in flight; replaces the last grant.
struct Credit {
  uint32_t credits = 0;
};

// --- workers <-> coordinator ----------------------------------------------

struct Gpu {
  uint32_t index = 0;
  uint64_t memory_bytes = 0;
  std::string name;
};

struct Register {
  std::string worker_id;
  uint32_t cpu_threads = 0;
  std::vector<Gpu> gpus;
  std::string build;
  std::string hostname;
  uint32_t max_jobs = 0;  // 0: derived; cpu_threads == 0 with no GPU: leaving
  std::string peer_address;  // host:port of its data-parallel store; "": no gangs
  uint32_t ranks = 1;        // data-parallel ranks it brings to a gang (>= 1)
};

struct RegisterAck {
  bool accepted = false;
  std::string reason;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t lease_ms = 0;
};

struct Heartbeat {
  std::string worker_id;
  std::vector<uint64_t> active_jobs;
  double tokens_per_second = 0;
};

// kGenerate: regenerate chunks on a worker (dgcctl generate --coordinator;
// coordinator/server_generate.cc holds the payload's layout).
enum class JobKind : uint8_t { kCompress = 0, kRetrain = 1, kGenerate = 2 };

struct JobAssign {
  uint64_t job_id = 0;
  uint32_t attempt = 0;
  JobKind kind = JobKind::kCompress;
  int64_t lease_deadline_ns = 0;
  ChunkMeta meta;
  // Exactly one of the two travels: the chunk's bytes, or its path on a
  // filesystem the worker shares (chunk_path non-empty means by path).
  std::string chunk_bytes;
  std::string chunk_path;
  // Further raw chunk files (chunk_format bytes) it trains on with its own,
  // in this order: a retrain job's retrain set, a compress job's pool of
  // quiet chunks (dgc.capnp, trainChunks).
  std::vector<std::string> train_chunks;
  enum class Parent : uint8_t { kNone = 0, kBytes = 1, kId = 2 };
  Parent parent = Parent::kNone;
  std::string parent_bytes;  // when parent == kBytes
  std::string parent_id;     // when parent == kId
  std::string options_json;
  // Worker slots the lease holds (>= 1): all of a multi-GPU worker for a
  // large job, which it then trains data-parallel over its GPUs.
  uint32_t slots = 1;
  // A job spanning workers (see dgc.capnp, Gang); world_size 0: none.
  struct Gang {
    std::string store_address;
    std::string store_prefix;
    uint32_t world_size = 0;
    uint32_t first_rank = 0;
  } gang;
};

struct JobStats {
  double train_seconds = 0;
  uint64_t tokens = 0;
  double fidelity = 0;
  uint64_t artifact_bytes = 0;
  std::string json;
};

struct JobResult {
  uint64_t job_id = 0;
  uint32_t attempt = 0;
  std::string worker_id;
  std::string artifact;
  JobStats stats;
};

struct JobFailed {
  uint64_t job_id = 0;
  uint32_t attempt = 0;
  std::string worker_id;
  std::string reason;
  bool retryable = true;
};

struct JobAck {
  uint64_t job_id = 0;
  bool duplicate = false;
};

// --- dgcctl -> coordinator ----------------------------------------------

enum class OperatorVerb : uint8_t { kGet = 0, kDescribe, kCancel, kRetry, kRetrain, kDrain, kGenerate };

struct OperatorRequest {
  uint64_t request_id = 0;
  OperatorVerb verb = OperatorVerb::kGet;
  std::string noun;       // jobs | workers | chunks | models
  std::string name;       // an id, or empty for all
  std::string args_json;  // further arguments as a JSON object (may be empty)
};

struct OperatorReply {
  uint64_t request_id = 0;
  bool ok = false;
  std::string error;
  std::string json;
  std::string data;  // binary beside the JSON (generate fetch: a segment's packets)
};

// The variant's index is the message kind; keep MessageKind in its order.
using Message = std::variant<ChunkOffer, ChunkData, ChunkAck, Credit, Register, RegisterAck,
                             Heartbeat, JobAssign, JobResult, JobFailed, JobAck,
                             OperatorRequest, OperatorReply>;

enum class MessageKind : uint8_t {
  kChunkOffer = 0,
  kChunkData,
  kChunkAck,
  kCredit,
  kRegister,
  kRegisterAck,
  kHeartbeat,
  kJobAssign,
  kJobResult,
  kJobFailed,
  kJobAck,
  kOperatorRequest,
  kOperatorReply,
};

inline MessageKind KindOf(const Message& m) { return static_cast<MessageKind>(m.index()); }

// "chunk_data", "job_result", ...: for logs and metric labels.
const char* MessageKindName(MessageKind kind);

struct Decoded {
  uint16_t version = kProtocolVersion;
  Message message;
  MessageKind kind() const { return KindOf(message); }
};

struct DecodeOptions {
  // Larger inputs are refused before parsing (ResourceExhausted).
  size_t max_message_bytes = kDefaultMaxMessageBytes;
  // Deepest struct/list nesting accepted; dgc's schema needs 4.
  int nesting_limit = 16;
};

// Decodes one frame. Errors, each naming what was wrong:
//   ResourceExhausted: larger than options.max_message_bytes;
//   InvalidArgument: empty, not a whole number of 8-byte words, a bad segment
//     table, pointers out of bounds, bytes after the message, an unknown
//     message kind or enum value, a traversal past the size cap (a message
//     amplifying itself through shared pointers);
//   FailedPrecondition: a protocol version other than kProtocolVersion.
[[nodiscard]] StatusOr<Decoded> Decode(absl::string_view bytes, const DecodeOptions& options = {});

struct EncodeOptions {
  // Messages larger than this are refused (ResourceExhausted), so a sender
  // never emits what its peer's Decode would refuse with the same cap.
  size_t max_message_bytes = kDefaultMaxMessageBytes;
};

// Encodes one message with version kProtocolVersion. ResourceExhausted when
// the encoding exceeds options.max_message_bytes or Cap'n Proto's own limits
// (a Data field of 512 MiB or more).
[[nodiscard]] StatusOr<std::string> Encode(const Message& message, const EncodeOptions& options = {});

// For tests and the fuzz target: as Encode, with another version number.
[[nodiscard]] StatusOr<std::string> EncodeWithVersion(const Message& message, uint16_t version);

}  // namespace dgc::wire

#endif  // DGC_COMMON_WIRE_CODEC_H_

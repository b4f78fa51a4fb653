// The records the RocksDB model library keeps, and their versioned binary
// encoding. Plain C++ (no RocksDB): the codecs are shared by the library, its
// tests (which write old and corrupt values on purpose) and tools.
//
// Every value starts with a 1-byte tag (which record) and a 1-byte record
// version, then fields as varints and length-prefixed strings (ByteWriter), and
// must be consumed exactly. Decoders never crash on bad bytes: they return
// DataLoss naming the key, or Unimplemented for a version newer than this build.
#ifndef DGC_LIBRARY_LIBRARY_RECORDS_H_
#define DGC_LIBRARY_LIBRARY_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"

namespace dgc::library {

// Schema version of the whole store (meta CF, key "schema_version").
//   0: models and chunks only; model records without depth, no lineage CF
//      content (the pre-release layout; upgraded on open).
//   1: this layout.
constexpr uint32_t kSchemaVersion = 1;

enum class ModelKind : uint8_t {
  kBase = 1,      // trained from scratch (warm-up); its blob is a full checkpoint
  kFinetune = 2,  // parent + delta; its blob is the delta
  kRetrain = 3,   // a new base trained because of drift or chain depth; full checkpoint
};
const char* ModelKindName(ModelKind kind);
inline bool IsFullModel(ModelKind k) { return k != ModelKind::kFinetune; }

struct ModelRecord {
  std::string id;
  ModelKind kind = ModelKind::kBase;
  std::string parent_id;     // the model `blob` applies to (finetune); empty for full models
  uint32_t depth = 0;        // deltas from the nearest full model (0 for full models)
  std::string source_chunk;  // chunk key it was trained on (finetune); empty otherwise
  int64_t created_ns = 0;
  std::string config_json;    // model configuration, free-form JSON ("" when unknown)
  std::string training_json;  // training statistics, free-form JSON ("" when unknown)
  std::string fingerprint;    // Fingerprint::Encode() of its training data (full models); may be empty
  std::string blob;           // full: checkpoint bytes; finetune: the delta
  uint64_t blob_bytes = 0;    // blob.size() as decoded (kept when a listing clears the blob); not encoded

  // Bytes this record holds (blob + metadata), the figure storage reports use.
  uint64_t StoredBytes() const;
};

enum class ChunkState : uint8_t {
  kCommitted = 1,  // model and skeleton committed; the chunk can be regenerated
};
const char* ChunkStateName(ChunkState s);

struct ChunkRecord {
  std::string link;
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  int64_t seq = 0;  // start_ns / duration_ns: the idempotency key with the link
  uint64_t packets = 0, bytes = 0, flows = 0;
  uint64_t raw_bytes = 0;  // bytes of capture ingested for this chunk
  std::string model_id;    // the model it regenerates from
  std::string parent_id;   // the model its delta applies to (== model_id when it has no delta)
  ChunkState state = ChunkState::kCommitted;
  std::string skeleton;
  std::string report_json;
  // Parent selection: drift against the chosen parent ([0,1], -1 unknown),
  // the decision (continue, switch, base, retrain, or "" when not selected by
  // the library) and why.
  double drift = -1;
  std::string decision;
  std::string reason;
  std::string raw_path;  // the raw chunk file still kept beside the library; "" when none
  int64_t committed_ns = 0;
  uint64_t stored_bytes = 0;  // every byte the commit added: this record, its fingerprint, the model its delta made (and keys)
                              // (packed: its stub and its share of the pack in place of the record and fingerprint)
  // Packed (RocksDbModelLibrary::PackChunks): the record in the chunks column
  // family is a stub naming the pack (its key: ChunkKey(link,
  // pack_start_ns)); the record itself, with its skeleton and fingerprint,
  // is a member of the pack. EncodeChunk writes the stub when set. Not part
  // of the member record.
  bool in_pack = false;
  int64_t pack_start_ns = 0;
  uint64_t report_stored_bytes = 0;  // what the report takes in the record as read (not encoded)

  int64_t end_ns() const { return start_ns + duration_ns; }
};

// One chunk of a pack: its start, its record as EncodePackMember wrote it,
// its fingerprint (Fingerprint::Encode(), or empty).
struct PackMember {
  int64_t start_ns = 0;
  std::string record;
  std::string fingerprint;
};

struct JobRecord {
  std::string id;
  uint32_t version = 0;  // the caller's own payload version
  std::string payload;   // opaque to the library
};

// Keys. A chunk key is link + '\0' + the start time as 8 big-endian bytes with
// the sign bit flipped, so keys of one link sort by time (negative times too).
std::string ChunkKey(absl::string_view link, int64_t start_ns);
// The link and start of a chunk key; false when `key` is not one.
bool ParseChunkKey(absl::string_view key, std::string* link, int64_t* start_ns);
// "link@2024-01-01T00:00:00Z": how operators name a chunk.
std::string ChunkKeyToString(absl::string_view key);
std::string LineageKey(absl::string_view parent, absl::string_view child);

std::string EncodeModel(const ModelRecord& m);
std::string EncodeChunk(const ChunkRecord& c);
std::string EncodeJob(const JobRecord& j);
// The record as a pack member: the report uncompressed (the pack compresses
// every member together), `in_pack` ignored. DecodeChunk reads it.
std::string EncodePackMember(const ChunkRecord& c);
// A pack: its members (ascending starts, all at or after the key's start)
// in one zstd -19 frame, with a 64-bit checksum of what the frame holds.
// Quiet chunks' records are mostly framing and tables when compressed one
// by one: a day of a quiet link's hours packs to about a third.
std::string EncodePack(const std::vector<PackMember>& members, int64_t pack_start_ns);
[[nodiscard]] StatusOr<std::vector<PackMember>> DecodePack(absl::string_view key, absl::string_view value);
// DataLoss naming `key` when the bytes are not a valid record of the kind;
// Unimplemented when written by a newer dgc.
[[nodiscard]] StatusOr<ModelRecord> DecodeModel(absl::string_view key, absl::string_view value);
[[nodiscard]] StatusOr<ChunkRecord> DecodeChunk(absl::string_view key, absl::string_view value);
[[nodiscard]] StatusOr<JobRecord> DecodeJob(absl::string_view key, absl::string_view value);

// The version-0 model record (schema 0), kept so the upgrade path can read it
// and tests can write it: tag, version 0, id, kind, parent_id, created_ns, blob.
std::string EncodeModelV0ForUpgrade(const ModelRecord& m);

// Ids (models, links, jobs): 1-200 bytes, no NUL, no '@', no '/' or control characters.
[[nodiscard]] Status ValidateId(absl::string_view what, absl::string_view id);

}  // namespace dgc::library

#endif  // DGC_LIBRARY_LIBRARY_RECORDS_H_

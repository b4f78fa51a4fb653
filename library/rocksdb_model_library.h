// RocksDbModelLibrary: the model library on RocksDB (step 4): models and
// chunks, lineage, parent selection, retention, a consistency check and the
// job records the scheduler (step 5) keeps.
//
// Column families (values: versioned binary records, library_records.h):
//   models        model id -> ModelRecord (kind base|finetune|retrain, parent,
//                 depth, config and training JSON, fingerprint, blob: a full
//                 checkpoint or the delta)
//   lineage       parent '\0' child -> "" (finetune models only)
//   chunks        link '\0' big-endian start -> ChunkRecord (counts, model and
//                 parent ids, skeleton, report JSON, selection decision)
//   fingerprints  chunk key -> Fingerprint::Encode()
//   jobs          job id -> JobRecord (opaque to the library)
//   meta          "schema_version" -> uint32
// A chunk's delta lives in the record of the model it introduced (kind
// finetune, source_chunk = the chunk key): retention can then drop the chunk
// and keep the model while a kept chunk still builds on it.
//
// Big values (checkpoints, deltas) go to RocksDB's own blob files, written and
// garbage-collected with the rest of the database: there is no external file
// that a crash could orphan. The only files outside RocksDB are raw chunk
// files a caller chose to keep for a while (ChunkRecord::raw_path); Expire
// deletes them and tolerates their absence.
//
// Every change that touches several keys is one WriteBatch. Thread safety: all
// methods may be called from any thread; commits and Expire serialise on one
// mutex. One process at a time may open a library (RocksDB's LOCK file).
#ifndef DGC_LIBRARY_ROCKSDB_MODEL_LIBRARY_H_
#define DGC_LIBRARY_ROCKSDB_MODEL_LIBRARY_H_

#include <cstdint>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"
#include "common/model/artifact.h"
#include "library/fingerprint.h"
#include "library/library_records.h"
#include "library/model_library.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Cache;
}  // namespace rocksdb

namespace dgc {

class RocksDbModelLibrary final {
 public:
  struct Options {
    // Create the database when `dir` is missing or empty.
    bool create_if_missing = true;
    // fsync the write-ahead log on every commit. A killed process loses
    // nothing either way; false may lose the last commits to a power failure.
    bool sync = true;
    // Values at least this big (checkpoints, most deltas) go to blob files.
    uint64_t min_blob_size = 4096;
    // Now, in Unix nanoseconds (commit times, Expire's age). Default: the
    // system clock.
    std::function<int64_t()> clock;
    // Open for reading only (RocksDB OpenForReadOnly): writes nothing, not
    // even the log replay a normal open does, so a library on a full disk
    // (or one another process holds) still lists and regenerates. Every
    // write returns FailedPrecondition. Implies !create_if_missing.
    bool read_only = false;
    // RocksDB's memory, bounded: half for the memtables of every column
    // family together (db_write_buffer_size: the largest is flushed when
    // they reach it), half for one block cache they share. 0: RocksDB's
    // defaults (64 MiB of memtable and a 32 MiB cache per column family),
    // which a long-running process fills only slowly, so its RSS grows for
    // hours before it levels off.
    uint64_t memory_budget_bytes = 0;
  };

  // Opens (or creates) the library in `dir` and runs the schema upgrade when
  // the store is older than this build. InvalidArgument when `dir` holds
  // something that is not a RocksDB library (a step-3 directory library included);
  // FailedPrecondition when it was written by a newer dgc; Unavailable when
  // another process holds it; other errors from RocksDB, naming `dir`.
  [[nodiscard]] static StatusOr<std::unique_ptr<RocksDbModelLibrary>> Open(const std::string& dir,
                                                                           Options options);
  [[nodiscard]] static StatusOr<std::unique_ptr<RocksDbModelLibrary>> Open(const std::string& dir) {
    return Open(dir, Options());
  }
  ~RocksDbModelLibrary();

  // --- models and chunks, plainly -------------------------------------------
  // PutModel stores a base model (kind base); an existing id is kept as is.
  [[nodiscard]] Status PutModel(const std::string& id, const std::string& bytes);
  // The full checkpoint of a base or retrain model. NotFound when absent;
  // FailedPrecondition for a finetune model (its blob is a delta: rebuild it
  // from Ancestors()).
  [[nodiscard]] StatusOr<std::string> GetModel(const std::string& id);
  [[nodiscard]] bool HasModel(const std::string& id);
  // CommitChunk without fingerprint or decision; an existing chunk is kept.
  [[nodiscard]] Status PutChunk(const model::ChunkArtifact& chunk);
  [[nodiscard]] StatusOr<std::vector<model::ChunkArtifact>> Chunks(const ChunkQuery& query);
  // Bytes kept: chunk artifacts and full models, apart.
  struct Usage {
    uint64_t chunk_bytes = 0;
    uint64_t chunks = 0;
    uint64_t model_bytes = 0;
    uint64_t models = 0;
  };
  [[nodiscard]] StatusOr<Usage> GetUsage();

  // --- models ------------------------------------------------------------
  // Stores a full model (kind base or retrain) with its metadata. An existing
  // id is kept as is (no-op). InvalidArgument for a finetune record.
  [[nodiscard]] Status PutFullModel(const library::ModelRecord& model);
  // NotFound when absent; DataLoss naming the key when the record is corrupt.
  [[nodiscard]] StatusOr<library::ModelRecord> GetModelRecord(absl::string_view id);
  // Every model, ordered by id. With `with_blobs` false the blobs are
  // cleared (blob_bytes keeps their size).
  [[nodiscard]] StatusOr<std::vector<library::ModelRecord>> ListModels(bool with_blobs = false);

  // --- chunks ------------------------------------------------------------
  struct ChunkCommit {
    model::ChunkArtifact artifact;  // with a delta: introduces model artifact.model_id
    std::optional<library::Fingerprint> fingerprint;
    std::optional<library::ParentDecision> decision;  // recorded with its reason
    // A full model committed in the same batch (a retrain decided for this
    // chunk): the chunk's parent or model. Kept as is when the id exists.
    std::optional<library::ModelRecord> new_full_model;
    std::string model_config_json;  // for the finetune model record
    std::string training_json;
    std::string raw_path;  // a raw chunk file kept beside the library; "" when none
  };
  enum class CommitResult { kCommitted, kAlreadyCommitted };
  // Commits the chunk, its finetune model (when it has a delta), the lineage
  // edge, the fingerprint and `new_full_model` in one WriteBatch. A chunk of
  // the same link and start (hence seq) already there makes this a no-op that
  // returns kAlreadyCommitted, whatever the new content. InvalidArgument for
  // bad ids or duration; FailedPrecondition when the parent or model is not in
  // the library; AlreadyExists when the delta's model id belongs to another
  // chunk. On error nothing is written.
  [[nodiscard]] StatusOr<CommitResult> CommitChunk(const ChunkCommit& commit);

  // NotFound when absent.
  [[nodiscard]] StatusOr<library::ChunkRecord> GetChunk(absl::string_view link, int64_t start_ns);
  // Parses "link@TIME" (TIME as ParseTime accepts) or "link/SEQ" and finds it.
  [[nodiscard]] StatusOr<library::ChunkRecord> FindChunk(absl::string_view name);
  // A record whose bytes fail RocksDB's checksums (a flipped bit in a blob
  // or table file): what it is and what RocksDB said.
  struct DamagedRecord {
    std::string kind;  // "chunk" or "model"
    std::string name;  // "link@time" or the model id
    std::string error;
  };
  // Calls `fn` on every chunk overlapping `query`, by link then start (an
  // iterator seek per link: cost grows with the chunks returned, not with the
  // library). Stops at the first error of `fn` or of RocksDB and returns it.
  // A chunk record that fails its checksums is named: DataLoss "chunk
  // LINK@TIME is damaged (...)", or, with `damaged`, listed there and
  // skipped while the walk goes on.
  [[nodiscard]] Status ForEachChunk(const ChunkQuery& query,
                                    const std::function<Status(const library::ChunkRecord&)>& fn,
                                    std::vector<DamagedRecord>* damaged = nullptr);
  [[nodiscard]] StatusOr<std::vector<library::ChunkRecord>> ListChunks(const ChunkQuery& query,
                                                                      std::vector<DamagedRecord>* damaged = nullptr);
  // The newest chunk of `link`; NotFound when the link has none.
  [[nodiscard]] StatusOr<library::ChunkRecord> LatestChunk(absl::string_view link);
  // The newest `n` chunks of `link`, newest first (fewer when it has fewer).
  [[nodiscard]] StatusOr<std::vector<library::ChunkRecord>> RecentChunks(absl::string_view link, size_t n);
  // NotFound when the chunk has no fingerprint.
  [[nodiscard]] StatusOr<library::Fingerprint> GetFingerprint(absl::string_view link, int64_t start_ns);
  // The fingerprint of the data a model was trained on (its own for full
  // models, its source chunk's for finetune models); nullopt when unknown.
  [[nodiscard]] StatusOr<std::optional<library::Fingerprint>> ModelFingerprint(const library::ModelRecord& m);

  // --- lineage -----------------------------------------------------------
  // `id` first, then its parent, ... up to its full model (blobs cleared).
  // NotFound when `id` is absent; DataLoss when the chain is broken or loops.
  [[nodiscard]] StatusOr<std::vector<library::ModelRecord>> Ancestors(absl::string_view id);
  // Every model built on `id` (breadth-first, nearest first).
  [[nodiscard]] StatusOr<std::vector<std::string>> Descendants(absl::string_view id);
  [[nodiscard]] StatusOr<std::vector<std::string>> Children(absl::string_view id);

  // --- parent selection --------------------------------------------------
  // The link's recent distinct models (newest first, at most `n`), the full
  // model at the root of the latest one's chain, and the link's earlier full
  // models (newest first, at most `full_n`, the root excluded), for
  // ParentSelector. Earlier full models are the parents of the chunks whose
  // decision was "retrain" or "base", found by walking the link's chunks back
  // from the newest, at most kFullModelScanChunks of them; models expired
  // since are skipped.
  struct Candidates {
    std::vector<library::ParentCandidate> recent;
    std::optional<library::ParentCandidate> base;
    std::vector<library::ParentCandidate> previous_full;
  };
  static constexpr int kFullModelScanChunks = 4096;  // four weeks of 10-minute chunks
  [[nodiscard]] StatusOr<Candidates> ParentCandidates(absl::string_view link, int n, int full_n = 4);
  // ParentCandidates + selector.Decide: what a new chunk of `link` with
  // fingerprint `fp` should be fine-tuned from.
  [[nodiscard]] StatusOr<library::ParentDecision> SelectParent(absl::string_view link,
                                                               const library::Fingerprint& fp,
                                                               const library::ParentSelector& selector);

  // --- packs -------------------------------------------------------------
  // A quiet chunk's record, compressed on its own, is mostly zstd's framing
  // and tables: a quiet hour's skeleton and report take ~250 B where the
  // same hours compressed together take a third. PackChunks rewrites a
  // link's closed spans (weeks aligned to the epoch by default; a week of a
  // quiet link packs 12% smaller than its seven days apart): the small records of each
  // span (at most max_member_bytes, no raw file kept) go, with their
  // fingerprints, into one pack, a zstd -19 frame; each chunk's record
  // becomes a 7-byte stub naming it. One atomic write per span: a kill
  // leaves the span as it was or packed, never half. Every reader (list,
  // generate, stats, check, fingerprints, expire) reads through the stub;
  // skeletons and reports come back as they were (a skeleton in its
  // uncompressed form, which decodes to the same skeleton). Chunks already
  // packed stay in their pack; a span's later chunks form a pack of their own.
  struct PackOptions {
    int64_t span_ns = 7 * 86400LL * 1000000000;  // spans aligned to the epoch
    int64_t until_ns = std::numeric_limits<int64_t>::max();  // only spans that end at or before this
    int64_t since_ns = std::numeric_limits<int64_t>::min();  // ... and start at or after this
    uint64_t max_member_bytes = 16384;       // a larger record compresses well on its own
    // A span whose records hold more goes into several packs (each read of a
    // chunk decodes its whole pack).
    uint64_t max_pack_bytes = 4u << 20;
    size_t min_members = 2;
  };
  struct PackReport {
    uint64_t packs = 0, chunks = 0;
    uint64_t bytes_before = 0;  // the packed chunks' records and fingerprints (keys included)
    uint64_t bytes_after = 0;   // their stubs and the packs (keys included)
  };
  [[nodiscard]] StatusOr<PackReport> PackChunks(absl::string_view link, const PackOptions& options);

  // --- storage -----------------------------------------------------------
  struct DetailedUsage {
    uint64_t chunks = 0;
    uint64_t skeleton_bytes = 0;
    uint64_t report_bytes = 0;
    uint64_t chunk_meta_bytes = 0;  // chunk records less skeleton and report, plus fingerprints
    uint64_t delta_bytes = 0;       // finetune model blobs
    uint64_t finetune_models = 0;
    uint64_t full_models = 0;       // base + retrain
    uint64_t full_model_bytes = 0;  // their checkpoints (paid once per base)
    uint64_t model_meta_bytes = 0;  // model records less blobs
    uint64_t packs = 0;
    uint64_t pack_bytes = 0;        // packs (keys included): packed chunks' records and fingerprints
    uint64_t packed_chunks = 0;
    uint64_t raw_bytes_ingested = 0;  // summed from chunk records
    uint64_t packets = 0;
    uint64_t ChunkBytes() const {
      return skeleton_bytes + report_bytes + chunk_meta_bytes + delta_bytes + model_meta_bytes + pack_bytes;
    }
    uint64_t TotalBytes() const { return ChunkBytes() + full_model_bytes; }
  };
  [[nodiscard]] StatusOr<DetailedUsage> GetDetailedUsage();

  // --- retention ---------------------------------------------------------
  struct ExpireOptions {
    int64_t max_age_ns = 0;  // > 0: chunks that ended before now - max_age go
    uint64_t max_bytes = 0;  // > 0: then the oldest chunks go until the library holds at most this
    int64_t keep_raw_ns = -1;  // >= 0: raw chunk files of kept chunks older than this are deleted
    bool dry_run = false;    // report what would go, change nothing
    size_t batch_chunks = 1000;  // chunk deletions per WriteBatch
  };
  struct ExpireItem {
    std::string kind;  // "chunk", "model", "raw"
    std::string name;  // chunk "link@time", model id, or file path
    uint64_t bytes = 0;
    std::string reason;
  };
  struct ExpireReport {
    std::vector<ExpireItem> items;      // what goes (dry run) or went
    std::vector<std::string> warnings;  // e.g. raw files someone else deleted
    uint64_t bytes_before = 0, bytes_after = 0;
    bool size_goal_met = true;
    std::string note;  // why the size goal was missed, when it was
  };
  // What retention would do, and the records it acts on: made by PlanExpire
  // against one state of the library (the count of chunk and model writes
  // this handle made; RocksDB lets one process open it), carried out by
  // ApplyExpire. `report` is what a dry run prints.
  struct ExpirePlan {
    ExpireReport report;
    uint64_t changes = 0;  // the library's chunk and model writes when it was made
    std::vector<std::string> chunk_keys;    // chunk records (and fingerprints) to delete
    std::vector<std::string> raw_clear;     // keys of kept chunks whose raw_path is cleared
    struct Model {
      std::string id, parent;
      bool full = false;
    };
    std::vector<Model> models;  // to delete, descendants before ancestors
    size_t batch_chunks = 1000;
  };
  // Never plans to remove the newest chunk of a link, nor a model that a
  // kept chunk builds on (its model and every ancestor). Reads only.
  [[nodiscard]] StatusOr<ExpirePlan> PlanExpire(const ExpireOptions& options);
  // Carries a plan out: raw files first, then chunks (in batches), then the
  // models no kept chunk needs, descendants before ancestors, so a crash at
  // any point leaves a consistent library; models left over by a crash are
  // collected by the next run. FailedPrecondition, with nothing changed, when
  // anything was written to the library since the plan was made (a chunk
  // committed since could build on a model the plan removes): plan again.
  // Errors from RocksDB abort the run (what was committed stays committed
  // and consistent). Returns the plan's report with apply-time warnings.
  [[nodiscard]] StatusOr<ExpireReport> ApplyExpire(const ExpirePlan& plan);
  // PlanExpire then, unless options.dry_run, ApplyExpire, with no commit
  // in between.
  [[nodiscard]] StatusOr<ExpireReport> Expire(const ExpireOptions& options);

  // --- consistency -------------------------------------------------------
  struct CheckReport {
    std::vector<DamagedRecord> damaged;           // records that fail their checksums
    std::vector<std::string> problems;            // broken invariants (corruption)
    std::vector<std::string> unreferenced_models;  // finetune models no chunk needs (garbage)
    std::vector<std::string> unreferenced_packs;   // packs no chunk names (an interrupted expire; garbage)
    uint64_t chunks = 0, models = 0, lineage_edges = 0, fingerprints = 0;
  };
  // Reads everything: every record passes its checksums and decodes, every
  // chunk's model chain reaches a full model (a chunk building on a damaged
  // model is a problem naming both), lineage edges match model parents,
  // fingerprints belong to chunks. Errors only when RocksDB fails otherwise.
  [[nodiscard]] StatusOr<CheckReport> Check();

  // --- jobs (the scheduler's records, step 5) ----------------------------
  [[nodiscard]] Status PutJob(const library::JobRecord& job);  // replaces an existing id
  [[nodiscard]] StatusOr<library::JobRecord> GetJob(absl::string_view id);  // NotFound when absent
  // Jobs by id: those whose key sorts after `after` ("" from the first), at
  // most `limit` of them (0: every one), so a caller can page through them.
  [[nodiscard]] StatusOr<std::vector<library::JobRecord>> ListJobs(absl::string_view after = "", size_t limit = 0);
  [[nodiscard]] Status DeleteJob(absl::string_view id);                     // absent: OK
  [[nodiscard]] Status DeleteJobs(const std::vector<std::string>& ids);     // one write; absent: OK
  // The scheduler's history of expired job records (one checksummed record
  // in the meta column family); NotFound when none was written.
  [[nodiscard]] Status PutJobHistory(const library::JobRecord& history);
  [[nodiscard]] StatusOr<library::JobRecord> GetJobHistory();

  // Writes the memtables out to table and blob files (what a backup or a
  // copy of the directory then holds without the log).
  [[nodiscard]] Status Flush();

  // RocksDB's memory now: the memtables of every column family, and the
  // block cache (the shared one of Options::memory_budget_bytes; 0 without).
  struct MemoryUsage {
    uint64_t memtable_bytes = 0;
    uint64_t block_cache_bytes = 0;
    uint64_t table_reader_bytes = 0;  // index and filter blocks held outside the cache
  };
  MemoryUsage Memory() const;

  const std::string& dir() const { return dir_; }
  uint32_t schema_version() const { return schema_version_; }

  // Column family names, for tools and tests that open the database raw.
  static const std::vector<std::string>& ColumnFamilyNames();

 private:
  enum Cf { kModels = 1, kLineage, kChunks, kFingerprints, kJobs, kMeta, kPacks, kNumCf };
  // The pack a walk decoded last: a run of a quiet day's chunks reads it once.
  struct PackCache {
    std::string key;
    std::vector<library::PackMember> members;
  };
  // A chunk record as stored (`value` at `key`), a packed chunk's stub
  // replaced by its member record (in_pack and pack_start_ns kept);
  // `fingerprint`, when given, gets a packed chunk's fingerprint. DataLoss
  // naming the chunk and its pack when the pack is missing or damaged.
  StatusOr<library::ChunkRecord> ReadChunk(absl::string_view key, absl::string_view value, PackCache* cache,
                                           std::string* fingerprint = nullptr);
  // The keys of the packs some chunk's stub names.
  StatusOr<std::set<std::string>> NamedPacks();
  RocksDbModelLibrary(std::string dir, Options options);
  Status Upgrade(uint32_t from);
  int64_t Now() const;
  Status Write(void* batch);  // rocksdb::WriteBatch*
  StatusOr<std::optional<std::string>> Get(Cf cf, absl::string_view key);
  StatusOr<std::optional<library::ModelRecord>> FindModel(absl::string_view id);
  StatusOr<library::ChunkRecord> ChunkFromKey(absl::string_view key);
  StatusOr<model::ChunkArtifact> ToArtifact(const library::ChunkRecord& c);
  StatusOr<ExpirePlan> PlanExpireLocked(const ExpireOptions& options);
  // ForEachChunk's walk; `careful`: keys read without checksums, each value
  // then read with them (finds the damaged record an iterator stops at),
  // skipping keys up to `after`.
  Status WalkChunks(const ChunkQuery& q, const std::function<Status(const library::ChunkRecord&)>& fn,
                    bool careful, const std::string& after, std::string* last, std::vector<DamagedRecord>* damaged,
                    bool* stopped_by_checksums);
  // Every key of `cf`, each value read with checksums: the records that
  // fail them go to `damaged`, the others to `fn`.
  Status ScanCarefully(Cf cf, const std::function<void(absl::string_view key, absl::string_view value)>& fn,
                       std::vector<DamagedRecord>* damaged);
  StatusOr<ExpireReport> ApplyExpireLocked(const ExpirePlan& plan);

  std::string dir_;
  Options options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cf_;  // indexed by Cf; [0] is default
  std::shared_ptr<rocksdb::Cache> cache_;           // with Options::memory_budget_bytes
  uint32_t schema_version_ = 0;
  std::mutex commit_mu_;  // serialises CommitChunk, PutFullModel, Expire (check-then-write)
  uint64_t changes_ = 0;  // chunk and model writes, under commit_mu_: a retention plan's staleness
  std::atomic<bool> write_failed_{false};  // a write hit an I/O error (disk full): see ~RocksDbModelLibrary
};

// The library every dgcctl verb opens: RocksDB in `dir`, created when `dir`
// is missing or empty.
//
// A step-3 directory library (a directory holding the DGC-LIBRARY marker
// file, models/ and chunks/) is recognised by its marker and refused with
// InvalidArgument naming the way out: re-run `dgcctl compress` into a new
// directory (there is no in-place migration: the step-3 format was never
// released). A non-empty directory
// that is neither is refused as well, so a typo never writes into someone
// else's files.
// `read_only`: RocksDbModelLibrary::Options::read_only (readers: generate,
// stats, check; they then work on a full disk).
[[nodiscard]] StatusOr<std::unique_ptr<RocksDbModelLibrary>> OpenModelLibrary(const std::string& dir,
                                                                              bool read_only = false);

// A chunk record's artifact fields (link, times, model and parent ids,
// skeleton), without its delta and without its report: callers decide
// whether the delta is needed and what an unreadable report means.
model::ChunkArtifact ArtifactFields(const library::ChunkRecord& c);

}  // namespace dgc

#endif  // DGC_LIBRARY_ROCKSDB_MODEL_LIBRARY_H_

#include "library/rocksdb_model_library.h"

#include <fcntl.h>
#include <unistd.h>
#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cerrno>
#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/byte_io.h"
#include "common/base/fault.h"
#include "common/base/time.h"
#include "common/model/skeleton.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace dgc {
namespace fs = std::filesystem;
using library::ChunkKey;
using library::ChunkRecord;
using library::ModelKind;
using library::ModelRecord;

namespace {

constexpr char kSchemaKey[] = "schema_version";
constexpr char kDirMarker[] = "DGC-LIBRARY";  // the step-3 directory library's marker file
constexpr uint32_t kMaxChain = 1u << 20;     // bound on ancestor walks (a loop is corruption)

// The one place rocksdb::Status becomes a dgc Status.
Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound: return absl::NotFoundError(msg);
    case rocksdb::Status::kCorruption: return absl::DataLossError(msg);
    case rocksdb::Status::kNotSupported: return absl::UnimplementedError(msg);
    case rocksdb::Status::kInvalidArgument: return absl::InvalidArgumentError(msg);
    case rocksdb::Status::kIOError:
      if (s.IsNoSpace() || s.ToString().find("No space left") != std::string::npos) {
        return absl::ResourceExhaustedError(absl::StrCat(
            what, ": no space left on the device (", s.ToString(),
            "): nothing unacknowledged was committed; free space and run it again (readers: get, describe, "
            "generate, stats, check open the library read-only meanwhile)"));
      }
      if (s.subcode() == rocksdb::Status::kLockLimit || s.ToString().find("lock") != std::string::npos) {
        return absl::UnavailableError(absl::StrCat(msg, " (is another dgc process using this library?)"));
      }
      return absl::InternalError(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain: return absl::UnavailableError(msg);
    default: return absl::InternalError(msg);
  }
}

std::string LinkPrefix(absl::string_view link) {
  std::string p(link);
  p.push_back('\0');
  return p;
}

bool HasPrefix(const rocksdb::Slice& s, absl::string_view p) {
  return s.size() >= p.size() && std::memcmp(s.data(), p.data(), p.size()) == 0;
}
absl::string_view View(const rocksdb::Slice& s) { return absl::string_view(s.data(), s.size()); }
rocksdb::Slice Sl(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

uint64_t JsonU64(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return 0;
  const auto& v = j[key];
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) return static_cast<uint64_t>(std::max<int64_t>(0, v.get<int64_t>()));
  if (v.is_number_float()) return static_cast<uint64_t>(std::max(0.0, v.get<double>()));
  return 0;
}

std::string EncodeU32(uint32_t v) {
  std::string s;
  PutFixed<uint32_t>(&s, v);
  return s;
}

// A directory that RocksDB began to create and never finished: a process
// killed inside DB::Open before it wrote CURRENT leaves only these files, and
// no write of a library ever happens before CURRENT exists. A write-ahead log,
// a table or blob file, or any other name means real data (CURRENT lost to
// corruption, or someone else's files): not this case.
bool IsInterruptedCreation(const std::string& dir, std::vector<fs::path>* files) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return false;
  for (const auto& entry : it) {
    const std::string n = entry.path().filename().string();
    const bool ours = n == "LOCK" || n == "LOG" || absl::StartsWith(n, "LOG.old.") || n == "IDENTITY" ||
                      absl::StartsWith(n, "MANIFEST-") || absl::EndsWith(n, ".dbtmp");
    std::error_code sec;
    if (!ours || !entry.is_regular_file(sec)) return false;
    files->push_back(entry.path());
  }
  if (files->empty()) return false;
  // RocksDB holds an fcntl lock on LOCK while it opens: a creation still in
  // progress in a live process is not interrupted.
  const std::string lock = (fs::path(dir) / "LOCK").string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool free = ::fcntl(fd, F_SETLK, &fl) == 0;
  ::close(fd);  // releases it
  return free;
}

}  // namespace

const std::vector<std::string>& RocksDbModelLibrary::ColumnFamilyNames() {
  static const std::vector<std::string> kNames = {rocksdb::kDefaultColumnFamilyName, "models", "lineage",
                                                  "chunks", "fingerprints", "jobs", "meta", "packs"};
  return kNames;
}

RocksDbModelLibrary::RocksDbModelLibrary(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

RocksDbModelLibrary::~RocksDbModelLibrary() {
  if (db_ && write_failed_) {
    // A write failed on I/O (a full disk): closing the database, or asking
    // it to resume, then trips an assertion inside RocksDB 7.8 (a sync of
    // the log after a failed append) and aborts the process. Everything committed is in the
    // log already; the failed batch was never acknowledged. Leave the handle
    // to the process's exit, which releases its files and lock.
    for (auto*& h : cf_) h = nullptr;
    (void)db_.release();
    return;
  }
  if (db_) {
    // A clean close leaves the tables and blob files written (not only the
    // log), so the next open, read-only ones included, replays nothing.
    if (!options_.read_only) Flush().IgnoreError();
    for (auto* h : cf_) {
      if (h) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();
  }
}

Status RocksDbModelLibrary::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return FromRocks(db_->Flush(fo, cf_), absl::StrCat("flushing ", dir_));
}

int64_t RocksDbModelLibrary::Now() const {
  if (options_.clock) return options_.clock();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

// rocksdb::Logger onto spdlog, prefixed with the library.
class ProcessLogger final : public rocksdb::Logger {
 public:
  // Errors only: RocksDB warns of expected things too (the torn tail of the
  // log a kill leaves, dropped on the next open), and dgc names its own
  // failures (a full disk, a damaged record) where they happen.
  explicit ProcessLogger(std::string dir) : rocksdb::Logger(rocksdb::InfoLogLevel::ERROR_LEVEL), dir_(std::move(dir)) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    spdlog::error("rocksdb ({}): {}", dir_, buf);
  }

 private:
  std::string dir_;
};

}  // namespace

StatusOr<std::unique_ptr<RocksDbModelLibrary>> RocksDbModelLibrary::Open(const std::string& dir, Options options) {
  std::error_code ec;
  bool exists = fs::exists(dir, ec);
  if (exists && !fs::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
  }
  bool is_rocks = exists && fs::exists(fs::path(dir) / "CURRENT", ec);
  if (exists && !is_rocks) {
    if (fs::exists(fs::path(dir) / kDirMarker, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, " is a step-3 directory library (it holds ", kDirMarker,
          "), not a RocksDB library: there is no in-place migration; re-run 'dgcctl compress' into a new "
          "directory"));
    }
    std::vector<fs::path> started;
    if (options.create_if_missing && IsInterruptedCreation(dir, &started)) {
      // Nothing was ever stored here: start the creation again.
      for (const auto& f : started) fs::remove(f, ec);
    }
    if (!fs::is_empty(dir, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, " is not empty and is not a dgc library (no RocksDB CURRENT file): refusing to write there"));
    }
  }
  if (options.read_only) options.create_if_missing = false;
  if (!is_rocks && !options.create_if_missing) {
    return absl::NotFoundError(absl::StrCat("no model library at ", dir));
  }
  if (!exists) {
    // RocksDB would create it too, after logging an error for the missing directory.
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  }

  rocksdb::DBOptions dbo;
  dbo.create_if_missing = options.create_if_missing;
  dbo.create_missing_column_families = true;
  dbo.max_background_jobs = 2;
  dbo.keep_log_file_num = 4;
  dbo.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  // RocksDB's own messages go to the process's log, not to a LOG file in the
  // library: on a full disk that file's writer asserted and aborted the
  // process from RocksDB's error-recovery thread.
  dbo.info_log = std::make_shared<ProcessLogger>(dir);
  auto supported = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType t) {
    return std::find(supported.begin(), supported.end(), t) != supported.end();
  };
  rocksdb::CompressionType comp = has(rocksdb::kZSTD) ? rocksdb::kZSTD
                                  : has(rocksdb::kLZ4Compression) ? rocksdb::kLZ4Compression
                                                                  : rocksdb::kNoCompression;
  std::shared_ptr<rocksdb::Cache> cache;
  if (options.memory_budget_bytes > 0) {
    const uint64_t half = std::max<uint64_t>(options.memory_budget_bytes / 2, 1 << 20);
    dbo.db_write_buffer_size = half;
    cache = rocksdb::NewLRUCache(half);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& name : ColumnFamilyNames()) {
    rocksdb::ColumnFamilyOptions co;
    co.compression = comp;
    if (options.memory_budget_bytes > 0) {
      // No single memtable may take the whole budget before a flush.
      co.write_buffer_size = std::max<uint64_t>(dbo.db_write_buffer_size / 2, 1 << 20);
    }
    // Bloom filters: a commit first checks that its chunk is not there yet.
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    if (cache) table.block_cache = cache;
    co.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    if (name == "models" || name == "chunks") {
      co.enable_blob_files = true;
      co.min_blob_size = options.min_blob_size;
      co.enable_blob_garbage_collection = true;
      co.blob_compression_type = rocksdb::kNoCompression;  // checkpoints and deltas are compressed already
    }
    cfs.emplace_back(name, co);
  }
  std::unique_ptr<RocksDbModelLibrary> lib(new RocksDbModelLibrary(dir, options));
  lib->cache_ = cache;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const bool read_only = lib->options_.read_only;
  rocksdb::Status opened = read_only ? rocksdb::DB::OpenForReadOnly(dbo, dir, cfs, &handles, &raw)
                                     : rocksdb::DB::Open(dbo, dir, cfs, &handles, &raw);
  // A reader of an older library (a column family or the schema behind):
  // open it once read-write, which adds and upgrades, then read.
  auto upgrade_then_read = [&]() -> StatusOr<std::unique_ptr<RocksDbModelLibrary>> {
    lib.reset();
    Options rw = options;
    rw.read_only = false;
    DGC_RETURN_IF_ERROR(Open(dir, rw).status());
    return Open(dir, options);
  };
  if (read_only && opened.IsInvalidArgument() && opened.ToString().find("olumn famil") != std::string::npos) {
    return upgrade_then_read();
  }
  DGC_RETURN_IF_ERROR(FromRocks(opened, absl::StrCat("opening model library ", dir, read_only ? " (read-only)" : "")));
  lib->db_.reset(raw);
  lib->cf_ = handles;

  // Schema: absent on a new store (written now), or older (upgraded).
  DGC_ASSIGN_OR_RETURN(auto v, lib->Get(kMeta, kSchemaKey));
  uint32_t version = 0;
  if (v) {
    if (v->size() != 4) return absl::DataLossError(absl::StrCat(dir, ": corrupt schema_version in meta"));
    version = LoadFixed<uint32_t>(v->data());
  } else {
    std::unique_ptr<rocksdb::Iterator> it(lib->db_->NewIterator(rocksdb::ReadOptions(), lib->cf_[kModels]));
    it->SeekToFirst();
    bool empty = !it->Valid();
    std::unique_ptr<rocksdb::Iterator> it2(lib->db_->NewIterator(rocksdb::ReadOptions(), lib->cf_[kChunks]));
    it2->SeekToFirst();
    empty = empty && !it2->Valid();
    if (empty) version = library::kSchemaVersion;
  }
  if (version > library::kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " has library schema version ", version,
                                                      " (written by a newer dgc); this build knows up to ", library::kSchemaVersion,
                                                      ": upgrade dgc"));
  }
  if (read_only && version < library::kSchemaVersion) return upgrade_then_read();
  if (!read_only && (!v || version < library::kSchemaVersion)) DGC_RETURN_IF_ERROR(lib->Upgrade(version));
  lib->schema_version_ = library::kSchemaVersion;
  return lib;
}

// Schema 0 -> 1: model records gain depth and source chunk, and the lineage
// CF is built from the model parents. One WriteBatch with the new version, so
// a crash leaves the old schema (and the next open upgrades again).
Status RocksDbModelLibrary::Upgrade(uint32_t from) {
  rocksdb::WriteBatch batch;
  if (from == 0) {
    std::map<std::string, ModelRecord> models;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kModels]));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        DGC_ASSIGN_OR_RETURN(ModelRecord m, library::DecodeModel(View(it->key()), View(it->value())));
        models[m.id] = std::move(m);
      }
      DGC_RETURN_IF_ERROR(FromRocks(it->status(), "upgrading: reading models"));
    }
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        DGC_ASSIGN_OR_RETURN(ChunkRecord c, library::DecodeChunk(View(it->key()), View(it->value())));
        auto m = models.find(c.model_id);
        if (c.model_id != c.parent_id && m != models.end() && m->second.source_chunk.empty()) {
          m->second.source_chunk = std::string(View(it->key()));
        }
      }
      DGC_RETURN_IF_ERROR(FromRocks(it->status(), "upgrading: reading chunks"));
    }
    for (auto& [id, m] : models) {
      uint32_t depth = 0;
      std::string at = m.parent_id;
      ModelKind kind = m.kind;
      while (kind == ModelKind::kFinetune && depth < kMaxChain) {
        ++depth;
        auto p = models.find(at);
        if (p == models.end()) break;
        kind = p->second.kind;
        at = p->second.parent_id;
      }
      m.depth = depth;
      batch.Put(cf_[kModels], Sl(id), library::EncodeModel(m));
      if (m.kind == ModelKind::kFinetune) batch.Put(cf_[kLineage], library::LineageKey(m.parent_id, id), "");
    }
  }
  batch.Put(cf_[kMeta], kSchemaKey, EncodeU32(library::kSchemaVersion));
  return Write(&batch);
}

Status RocksDbModelLibrary::Write(void* b) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(absl::StrCat("the library at ", dir_, " is open read-only"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Write(wo, static_cast<rocksdb::WriteBatch*>(b));
  if (s.IsIOError()) write_failed_ = true;
  return FromRocks(s, absl::StrCat("writing to ", dir_));
}

StatusOr<std::optional<std::string>> RocksDbModelLibrary::Get(Cf cf, absl::string_view key) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_[cf], Sl(key), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  DGC_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading ", ColumnFamilyNames()[cf], " from ", dir_)));
  return std::optional<std::string>(std::move(v));
}

StatusOr<std::optional<ModelRecord>> RocksDbModelLibrary::FindModel(absl::string_view id) {
  auto v = Get(kModels, id);
  if (!v.ok() && absl::IsDataLoss(v.status())) {
    return absl::DataLossError(absl::StrCat("model ", id, " in ", dir_, " is damaged (", v.status().message(),
                                            "); dgcctl check --library ", dir_, " lists every damaged record"));
  }
  if (!v.ok()) return v.status();
  if (!*v) return std::optional<ModelRecord>();
  DGC_ASSIGN_OR_RETURN(ModelRecord m, library::DecodeModel(id, **v));
  return std::optional<ModelRecord>(std::move(m));
}

// --- models -----------------------------------------------------------------

Status RocksDbModelLibrary::PutModel(const std::string& id, const std::string& bytes) {
  ModelRecord m;
  m.id = id;
  m.kind = ModelKind::kBase;
  m.blob = bytes;
  return PutFullModel(m);
}

Status RocksDbModelLibrary::PutFullModel(const ModelRecord& model) {
  DGC_RETURN_IF_ERROR(library::ValidateId("model id", model.id));
  if (!library::IsFullModel(model.kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", model.id, ": PutFullModel takes base or retrain models; finetune models come with "
                     "their chunk (CommitChunk)"));
  }
  std::lock_guard<std::mutex> lock(commit_mu_);
  DGC_ASSIGN_OR_RETURN(auto existing, Get(kModels, model.id));
  if (existing) return absl::OkStatus();
  ModelRecord m = model;
  m.parent_id.clear();
  m.depth = 0;
  if (m.created_ns == 0) m.created_ns = Now();
  rocksdb::WriteBatch batch;
  batch.Put(cf_[kModels], Sl(m.id), library::EncodeModel(m));
  ++changes_;
  return Write(&batch);
}

StatusOr<std::string> RocksDbModelLibrary::GetModel(const std::string& id) {
  DGC_ASSIGN_OR_RETURN(auto m, FindModel(id));
  if (!m) return absl::NotFoundError(absl::StrCat("model ", id, " is not in the library ", dir_));
  if (!library::IsFullModel(m->kind)) {
    return absl::FailedPreconditionError(absl::StrCat("model ", id, " is a delta against ", m->parent_id,
                                                      ": rebuild it from its ancestors"));
  }
  return std::move(m->blob);
}

bool RocksDbModelLibrary::HasModel(const std::string& id) {
  auto v = Get(kModels, id);
  return v.ok() && v->has_value();
}

StatusOr<ModelRecord> RocksDbModelLibrary::GetModelRecord(absl::string_view id) {
  DGC_ASSIGN_OR_RETURN(auto m, FindModel(id));
  if (!m) return absl::NotFoundError(absl::StrCat("model ", id, " is not in the library ", dir_));
  return std::move(*m);
}

StatusOr<std::vector<ModelRecord>> RocksDbModelLibrary::ListModels(bool with_blobs) {
  std::vector<ModelRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kModels]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    DGC_ASSIGN_OR_RETURN(ModelRecord m, library::DecodeModel(View(it->key()), View(it->value())));
    if (!with_blobs) m.blob.clear();
    out.push_back(std::move(m));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "listing models"));
  return out;
}

// --- chunks -----------------------------------------------------------------

Status RocksDbModelLibrary::PutChunk(const model::ChunkArtifact& chunk) {
  ChunkCommit c;
  c.artifact = chunk;
  return CommitChunk(c).status();
}

StatusOr<RocksDbModelLibrary::CommitResult> RocksDbModelLibrary::CommitChunk(const ChunkCommit& commit) {
  const model::ChunkArtifact& a = commit.artifact;
  DGC_RETURN_IF_ERROR(library::ValidateId("link", a.link));
  DGC_RETURN_IF_ERROR(library::ValidateId("model id", a.model_id));
  DGC_RETURN_IF_ERROR(library::ValidateId("parent model id", a.parent_id));
  if (a.duration_ns <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("chunk of ", a.link, ": duration must be positive"));
  }
  if (!a.delta.empty() && a.model_id == a.parent_id) {
    return absl::InvalidArgumentError(absl::StrCat("chunk of ", a.link, " at ", FormatRfc3339(a.start_ns),
                                                   ": a delta needs a model id of its own (model == parent ",
                                                   a.model_id, ")"));
  }
  if (commit.new_full_model) {
    DGC_RETURN_IF_ERROR(library::ValidateId("model id", commit.new_full_model->id));
    if (!library::IsFullModel(commit.new_full_model->kind)) {
      return absl::InvalidArgumentError("new_full_model must be a base or retrain model");
    }
  }
  const std::string key = ChunkKey(a.link, a.start_ns);
  std::lock_guard<std::mutex> lock(commit_mu_);
  DGC_ASSIGN_OR_RETURN(auto existing, Get(kChunks, key));
  if (existing) return CommitResult::kAlreadyCommitted;

  rocksdb::WriteBatch batch;
  std::optional<ModelRecord> fresh;  // the full model this batch adds
  if (commit.new_full_model) {
    DGC_ASSIGN_OR_RETURN(auto have, Get(kModels, commit.new_full_model->id));
    if (!have) {
      fresh = *commit.new_full_model;
      fresh->parent_id.clear();
      fresh->depth = 0;
      if (fresh->created_ns == 0) fresh->created_ns = Now();
      batch.Put(cf_[kModels], Sl(fresh->id), library::EncodeModel(*fresh));
    }
  }
  auto lookup = [&](const std::string& id) -> StatusOr<std::optional<ModelRecord>> {
    if (fresh && fresh->id == id) return std::optional<ModelRecord>(*fresh);
    return FindModel(id);
  };
  DGC_ASSIGN_OR_RETURN(auto parent, lookup(a.parent_id));
  if (!parent) {
    return absl::FailedPreconditionError(absl::StrCat("chunk ", library::ChunkKeyToString(key), ": parent model ",
                                                      a.parent_id, " is not in the library"));
  }
  uint64_t model_bytes = 0;  // the model record (and lineage entry) this chunk introduces
  if (!a.delta.empty()) {
    DGC_ASSIGN_OR_RETURN(auto clash, lookup(a.model_id));
    if (clash) {
      return absl::AlreadyExistsError(absl::StrCat("chunk ", library::ChunkKeyToString(key), ": model id ",
                                                   a.model_id, " already exists (from ",
                                                   clash->source_chunk.empty()
                                                       ? std::string("a full model")
                                                       : library::ChunkKeyToString(clash->source_chunk),
                                                   ")"));
    }
    ModelRecord m;
    m.id = a.model_id;
    m.kind = ModelKind::kFinetune;
    m.parent_id = a.parent_id;
    m.depth = parent->depth + 1;
    m.source_chunk = key;
    m.created_ns = Now();
    m.config_json = commit.model_config_json;
    m.training_json = commit.training_json;
    m.blob = a.delta;
    const std::string encoded = library::EncodeModel(m);
    const std::string lineage = library::LineageKey(m.parent_id, m.id);
    model_bytes = m.id.size() + encoded.size() + lineage.size();
    batch.Put(cf_[kModels], Sl(m.id), encoded);
    batch.Put(cf_[kLineage], lineage, "");
  } else if (a.model_id != a.parent_id) {
    DGC_ASSIGN_OR_RETURN(auto own, lookup(a.model_id));
    if (!own) {
      return absl::FailedPreconditionError(absl::StrCat("chunk ", library::ChunkKeyToString(key), ": model ",
                                                        a.model_id, " is not in the library and the chunk has no delta"));
    }
  }

  ChunkRecord c;
  c.link = a.link;
  c.start_ns = a.start_ns;
  c.duration_ns = a.duration_ns;
  c.seq = a.seq();
  c.packets = JsonU64(a.report, "packets");
  c.bytes = JsonU64(a.report, "bytes");
  c.flows = JsonU64(a.report, "flows");
  c.raw_bytes = JsonU64(a.report, "raw_bytes");
  c.model_id = a.model_id;
  c.parent_id = a.parent_id;
  c.skeleton = a.skeleton;
  c.report_json = a.report.is_null() ? "{}" : a.report.dump();
  if (commit.decision) {
    c.drift = commit.decision->drift;
    c.decision = library::DecisionName(commit.decision->kind);
    // Continuing the latest model needs no prose (the decision says it):
    // on a quiet link that sentence was a fifth of a chunk's bytes. So does a
    // continue past --drift-threshold (a retrain deferred below --min-flows,
    // or no nearer model): its drift and decision are kept, and keeping its
    // sentence too cost 3% of sifely-hub-01's week at 0.1x.
    if (commit.decision->kind != library::ParentDecision::Kind::kContinue) c.reason = commit.decision->reason;
  }
  c.raw_path = commit.raw_path;
  c.committed_ns = Now() / 1000000 * 1000000;  // milliseconds: the record stores it so
  // Every byte this chunk adds to the store: its record and key, its
  // fingerprint and key, the model record its delta makes. The record holds
  // the figure itself: encode until its varint's width settles (two or three
  // encodes; the last one is stored).
  const std::string fingerprint = commit.fingerprint ? commit.fingerprint->Encode() : std::string();
  const uint64_t around = key.size() + (commit.fingerprint ? key.size() + fingerprint.size() : 0) + model_bytes;
  std::string value = library::EncodeChunk(c);
  while (value.size() + around != c.stored_bytes) {
    c.stored_bytes = value.size() + around;
    value = library::EncodeChunk(c);
  }
  batch.Put(cf_[kChunks], key, value);
  if (commit.fingerprint) batch.Put(cf_[kFingerprints], key, fingerprint);
  FaultPoint("library.commit.before_write");  // all decided, nothing written
  ++changes_;  // before the write: a failed write may still have landed
  DGC_RETURN_IF_ERROR(Write(&batch));
  FaultPoint("library.commit.after_write");  // committed, the caller not yet told
  return CommitResult::kCommitted;
}

StatusOr<ChunkRecord> RocksDbModelLibrary::ChunkFromKey(absl::string_view key) {
  DGC_ASSIGN_OR_RETURN(auto v, Get(kChunks, key));
  if (!v) return absl::NotFoundError(absl::StrCat("chunk ", library::ChunkKeyToString(key), " is not in the library"));
  PackCache cache;
  return ReadChunk(key, *v, &cache);
}

StatusOr<std::set<std::string>> RocksDbModelLibrary::NamedPacks() {
  std::set<std::string> named;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto c = library::DecodeChunk(View(it->key()), View(it->value()));
    if (c.ok() && c->in_pack) named.insert(ChunkKey(c->link, c->pack_start_ns));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  return named;
}

StatusOr<ChunkRecord> RocksDbModelLibrary::ReadChunk(absl::string_view key, absl::string_view value, PackCache* cache,
                                                     std::string* fingerprint) {
  DGC_ASSIGN_OR_RETURN(ChunkRecord stub, library::DecodeChunk(key, value));
  if (!stub.in_pack) return stub;
  const std::string pack_key = ChunkKey(stub.link, stub.pack_start_ns);
  const std::string name = library::ChunkKeyToString(key);
  if (cache->key != pack_key) {
    cache->key.clear();
    cache->members.clear();
    DGC_ASSIGN_OR_RETURN(auto v, Get(kPacks, pack_key));
    if (!v) {
      return absl::DataLossError(absl::StrCat("chunk ", name, " is packed in ", library::ChunkKeyToString(pack_key),
                                              ", which is missing from ", dir_));
    }
    auto members = library::DecodePack(pack_key, *v);
    if (!members.ok()) {
      return absl::DataLossError(absl::StrCat("chunk ", name, ": its pack is damaged: ", members.status().message()));
    }
    cache->members = std::move(*members);
    cache->key = pack_key;
  }
  auto m = std::lower_bound(cache->members.begin(), cache->members.end(), stub.start_ns,
                            [](const library::PackMember& a, int64_t t) { return a.start_ns < t; });
  if (m == cache->members.end() || m->start_ns != stub.start_ns) {
    return absl::DataLossError(
        absl::StrCat("chunk ", name, " is not in its pack ", library::ChunkKeyToString(pack_key)));
  }
  DGC_ASSIGN_OR_RETURN(ChunkRecord c, library::DecodeChunk(key, m->record));
  if (c.in_pack) return absl::DataLossError(absl::StrCat("chunk ", name, ": its pack holds a stub, not its record"));
  c.in_pack = true;
  c.pack_start_ns = stub.pack_start_ns;
  if (fingerprint) *fingerprint = m->fingerprint;
  return c;
}

StatusOr<ChunkRecord> RocksDbModelLibrary::GetChunk(absl::string_view link, int64_t start_ns) {
  return ChunkFromKey(ChunkKey(link, start_ns));
}

StatusOr<ChunkRecord> RocksDbModelLibrary::FindChunk(absl::string_view name) {
  size_t at = name.rfind('@');
  if (at != absl::string_view::npos) {
    DGC_ASSIGN_OR_RETURN(int64_t t, ParseTime(name.substr(at + 1), Now()));
    return GetChunk(name.substr(0, at), t);
  }
  size_t slash = name.rfind('/');
  int64_t seq = 0;
  if (slash == absl::string_view::npos || !absl::SimpleAtoi(name.substr(slash + 1), &seq)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk '", name, "': name a chunk as LINK@TIME (e.g. tap0@2024-01-01T00:10:00Z) or LINK/SEQ"));
  }
  absl::string_view link = name.substr(0, slash);
  std::optional<ChunkRecord> found;
  ChunkQuery q;
  q.link = std::string(link);
  Status s = ForEachChunk(q, [&](const ChunkRecord& c) {
    if (c.seq != seq) return absl::OkStatus();
    found = c;
    return absl::CancelledError("found");  // stops the scan
  });
  if (!found && !s.ok()) return s;
  if (!found) return absl::NotFoundError(absl::StrCat("chunk ", name, " is not in the library"));
  return std::move(*found);
}

Status RocksDbModelLibrary::ForEachChunk(const ChunkQuery& q, const std::function<Status(const ChunkRecord&)>& fn,
                                         std::vector<DamagedRecord>* damaged) {
  std::string last;
  bool checksums = false;
  Status s = WalkChunks(q, fn, /*careful=*/false, "", &last, damaged, &checksums);
  if (!checksums) return s;
  // An iterator stops at a record that fails its checksums without saying
  // which: walk on from the last good key reading each record on its own.
  return WalkChunks(q, fn, /*careful=*/true, last, &last, damaged, &checksums);
}

Status RocksDbModelLibrary::WalkChunks(const ChunkQuery& q, const std::function<Status(const ChunkRecord&)>& fn,
                                       bool careful, const std::string& after, std::string* last,
                                       std::vector<DamagedRecord>* damaged, bool* stopped_by_checksums) {
  rocksdb::ReadOptions ro;
  ro.verify_checksums = !careful;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf_[kChunks]));
  PackCache packs;
  std::string link = q.link;
  // Keys at or before `floor` are skipped (a page's cursor, or where a
  // careful walk goes on).
  const std::string& floor = after.empty() || q.after_key > after ? q.after_key : after;
  if (link.empty()) {
    if (q.after_key.empty()) {
      it->SeekToFirst();
    } else {
      it->Seek(q.after_key);
    }
    if (!it->Valid()) {
      *stopped_by_checksums = it->status().IsCorruption();
      return FromRocks(it->status(), "reading chunks");
    }
    int64_t t;
    if (!library::ParseChunkKey(View(it->key()), &link, &t)) {
      return absl::DataLossError(absl::StrCat("bad chunk key '", absl::CHexEscape(View(it->key())), "'"));
    }
  }
  while (true) {
    const std::string prefix = LinkPrefix(link);
    // The chunk starting at or before `since` may still overlap it.
    it->SeekForPrev(ChunkKey(link, q.since_ns));
    if (!it->Valid() || !HasPrefix(it->key(), prefix)) it->Seek(ChunkKey(link, q.since_ns));
    if (!q.after_key.empty() && it->Valid() && View(it->key()) <= absl::string_view(q.after_key)) {
      it->Seek(q.after_key);
    }
    for (; it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
      const std::string key(View(it->key()));
      if (!floor.empty() && key <= floor) continue;
      std::string value;
      if (careful) {
        std::string key_link;
        int64_t key_start = 0;
        if (library::ParseChunkKey(key, &key_link, &key_start) && key_start >= q.until_ns) break;  // past the range
        rocksdb::Status gs = db_->Get(rocksdb::ReadOptions(), cf_[kChunks], Sl(key), &value);
        if (gs.IsCorruption()) {
          DamagedRecord d{"chunk", library::ChunkKeyToString(key), gs.ToString()};
          if (!damaged) {
            return absl::DataLossError(absl::StrCat(
                "chunk ", d.name, " in ", dir_, " is damaged (", d.error,
                "); dgcctl check --library ", dir_, " lists every damaged record"));
          }
          damaged->push_back(std::move(d));
          *last = key;
          continue;
        }
        DGC_RETURN_IF_ERROR(FromRocks(gs, absl::StrCat("reading chunk ", library::ChunkKeyToString(key))));
      } else {
        value = std::string(View(it->value()));
      }
      auto read = ReadChunk(key, value, &packs);
      if (!read.ok() && damaged && absl::IsDataLoss(read.status())) {
        // A damaged pack: its chunks are named like damaged records.
        if (auto stub = library::DecodeChunk(key, value); stub.ok() && stub->in_pack) {
          *last = key;
          if (stub->start_ns >= q.until_ns) break;
          if (stub->start_ns < q.since_ns) continue;
          damaged->push_back({"chunk", library::ChunkKeyToString(key), std::string(read.status().message())});
          continue;
        }
      }
      if (!read.ok()) return read.status();
      ChunkRecord& c = *read;
      *last = key;
      if (c.start_ns >= q.until_ns) break;
      if (c.end_ns() <= q.since_ns) continue;
      DGC_RETURN_IF_ERROR(fn(c));
    }
    *stopped_by_checksums = it->status().IsCorruption();
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
    if (!q.link.empty()) return absl::OkStatus();
    // The next link: the first key after every key of this one.
    std::string next = link;
    next.push_back('\1');
    it->Seek(next);
    if (!it->Valid()) {
      *stopped_by_checksums = it->status().IsCorruption();
      return FromRocks(it->status(), "reading chunks");
    }
    int64_t t;
    if (!library::ParseChunkKey(View(it->key()), &link, &t)) {
      return absl::DataLossError(absl::StrCat("bad chunk key '", absl::CHexEscape(View(it->key())), "'"));
    }
  }
}

Status RocksDbModelLibrary::ScanCarefully(Cf cf,
                                          const std::function<void(absl::string_view, absl::string_view)>& fn,
                                          std::vector<DamagedRecord>* damaged) {
  rocksdb::ReadOptions keys_only;
  keys_only.verify_checksums = false;  // the values are read again below, with them
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(keys_only, cf_[cf]));
  std::string value;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Status gs = db_->Get(rocksdb::ReadOptions(), cf_[cf], it->key(), &value);
    if (gs.IsCorruption()) {
      const std::string key(View(it->key()));
      damaged->push_back({cf == kModels ? "model" : cf == kChunks ? "chunk" : ColumnFamilyNames()[cf],
                          cf == kChunks || cf == kFingerprints || cf == kPacks ? library::ChunkKeyToString(key) : key,
                          gs.ToString()});
      continue;
    }
    if (gs.IsNotFound()) continue;  // deleted meanwhile
    DGC_RETURN_IF_ERROR(FromRocks(gs, absl::StrCat("reading ", ColumnFamilyNames()[cf])));
    fn(View(it->key()), value);
  }
  return FromRocks(it->status(), absl::StrCat("reading ", ColumnFamilyNames()[cf], " (past a damaged table block?)"));
}

StatusOr<std::vector<ChunkRecord>> RocksDbModelLibrary::ListChunks(const ChunkQuery& q,
                                                                   std::vector<DamagedRecord>* damaged) {
  std::vector<ChunkRecord> out;
  DGC_RETURN_IF_ERROR(ForEachChunk(
      q,
      [&](const ChunkRecord& c) {
        out.push_back(c);
        return absl::OkStatus();
      },
      damaged));
  return out;
}

StatusOr<ChunkRecord> RocksDbModelLibrary::LatestChunk(absl::string_view link) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
  it->SeekForPrev(ChunkKey(link, std::numeric_limits<int64_t>::max()));
  if (it->Valid() && HasPrefix(it->key(), LinkPrefix(link))) {
    PackCache cache;
    return ReadChunk(View(it->key()), View(it->value()), &cache);
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  return absl::NotFoundError(absl::StrCat("link ", link, " has no chunk in the library"));
}

StatusOr<std::vector<ChunkRecord>> RocksDbModelLibrary::RecentChunks(absl::string_view link, size_t n) {
  std::vector<ChunkRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
  PackCache cache;
  for (it->SeekForPrev(ChunkKey(link, std::numeric_limits<int64_t>::max()));
       out.size() < n && it->Valid() && HasPrefix(it->key(), LinkPrefix(link)); it->Prev()) {
    DGC_ASSIGN_OR_RETURN(ChunkRecord c, ReadChunk(View(it->key()), View(it->value()), &cache));
    out.push_back(std::move(c));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  return out;
}

model::ChunkArtifact ArtifactFields(const ChunkRecord& c) {
  model::ChunkArtifact a;
  a.link = c.link;
  a.start_ns = c.start_ns;
  a.duration_ns = c.duration_ns;
  a.model_id = c.model_id;
  a.parent_id = c.parent_id;
  a.skeleton = c.skeleton;
  return a;
}

StatusOr<model::ChunkArtifact> RocksDbModelLibrary::ToArtifact(const ChunkRecord& c) {
  model::ChunkArtifact a = ArtifactFields(c);
  a.report = nlohmann::json::parse(c.report_json, nullptr, /*allow_exceptions=*/false);
  if (a.report.is_discarded()) {
    return absl::DataLossError(absl::StrCat("chunk ", library::ChunkKeyToString(ChunkKey(c.link, c.start_ns)),
                                            ": its report is not valid JSON"));
  }
  if (c.model_id != c.parent_id) {
    auto found = FindModel(c.model_id);
    if (!found.ok()) {
      return Status(found.status().code(), absl::StrCat("chunk ", library::ChunkKeyToString(ChunkKey(c.link, c.start_ns)),
                                                        ": ", found.status().message()));
    }
    auto& m = *found;
    if (!m) {
      return absl::DataLossError(absl::StrCat("chunk ", library::ChunkKeyToString(ChunkKey(c.link, c.start_ns)),
                                              ": its model ", c.model_id, " is missing"));
    }
    if (m->kind == ModelKind::kFinetune) a.delta = std::move(m->blob);
  }
  return a;
}

StatusOr<std::vector<model::ChunkArtifact>> RocksDbModelLibrary::Chunks(const ChunkQuery& query) {
  std::vector<model::ChunkArtifact> out;
  DGC_RETURN_IF_ERROR(ForEachChunk(query, [&](const ChunkRecord& c) -> Status {
    DGC_ASSIGN_OR_RETURN(model::ChunkArtifact a, ToArtifact(c));
    out.push_back(std::move(a));
    return absl::OkStatus();
  }));
  return out;
}

StatusOr<library::Fingerprint> RocksDbModelLibrary::GetFingerprint(absl::string_view link, int64_t start_ns) {
  std::string key = ChunkKey(link, start_ns);
  DGC_ASSIGN_OR_RETURN(auto v, Get(kFingerprints, key));
  if (!v) {
    // A packed chunk's fingerprint is in its pack.
    DGC_ASSIGN_OR_RETURN(auto cv, Get(kChunks, key));
    std::string fp;
    if (cv) {
      PackCache cache;
      DGC_ASSIGN_OR_RETURN(ChunkRecord c, ReadChunk(key, *cv, &cache, &fp));
      if (c.in_pack && !fp.empty()) v = std::move(fp);
    }
  }
  if (!v) return absl::NotFoundError(absl::StrCat("chunk ", library::ChunkKeyToString(key), " has no fingerprint"));
  return library::Fingerprint::Decode(*v, library::ChunkKeyToString(key));
}

StatusOr<std::optional<library::Fingerprint>> RocksDbModelLibrary::ModelFingerprint(const ModelRecord& m) {
  std::optional<library::Fingerprint> out;
  if (!m.fingerprint.empty()) {
    DGC_ASSIGN_OR_RETURN(out, library::Fingerprint::Decode(m.fingerprint, absl::StrCat("model ", m.id)));
    return out;
  }
  if (m.source_chunk.empty()) return out;
  DGC_ASSIGN_OR_RETURN(auto v, Get(kFingerprints, m.source_chunk));
  if (!v) return out;  // its chunk expired, or was committed without one
  DGC_ASSIGN_OR_RETURN(out, library::Fingerprint::Decode(*v, library::ChunkKeyToString(m.source_chunk)));
  return out;
}

// --- lineage ----------------------------------------------------------------

StatusOr<std::vector<ModelRecord>> RocksDbModelLibrary::Ancestors(absl::string_view id) {
  std::vector<ModelRecord> out;
  std::set<std::string> seen;
  std::string at(id);
  while (true) {
    DGC_ASSIGN_OR_RETURN(auto m, FindModel(at));
    if (!m) {
      if (out.empty()) return absl::NotFoundError(absl::StrCat("model ", id, " is not in the library ", dir_));
      return absl::DataLossError(absl::StrCat("lineage of ", id, " is broken: ancestor ", at, " is missing"));
    }
    if (!seen.insert(at).second || seen.size() > kMaxChain) {
      return absl::DataLossError(absl::StrCat("lineage of ", id, " loops at ", at));
    }
    m->blob.clear();
    bool full = library::IsFullModel(m->kind);
    std::string parent = m->parent_id;
    out.push_back(std::move(*m));
    if (full) return out;
    at = parent;
  }
}

StatusOr<std::vector<std::string>> RocksDbModelLibrary::Children(absl::string_view id) {
  std::vector<std::string> out;
  std::string prefix = LinkPrefix(id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kLineage]));
  for (it->Seek(prefix); it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
    out.emplace_back(View(it->key()).substr(prefix.size()));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading lineage"));
  return out;
}

StatusOr<std::vector<std::string>> RocksDbModelLibrary::Descendants(absl::string_view id) {
  std::vector<std::string> out;
  std::set<std::string> seen{std::string(id)};
  std::deque<std::string> todo{std::string(id)};
  while (!todo.empty()) {
    DGC_ASSIGN_OR_RETURN(auto kids, Children(todo.front()));
    todo.pop_front();
    for (auto& k : kids) {
      if (!seen.insert(k).second) continue;
      out.push_back(k);
      todo.push_back(std::move(k));
    }
  }
  return out;
}

// --- parent selection -------------------------------------------------------

StatusOr<RocksDbModelLibrary::Candidates> RocksDbModelLibrary::ParentCandidates(absl::string_view link, int n,
                                                                                int full_n) {
  Candidates out;
  std::vector<std::string> ids;       // recent distinct models, newest first
  std::vector<std::string> full_ids;  // parents of retrain/base decisions, newest first
  std::set<std::string> seen, seen_full;
  {
    std::string prefix = LinkPrefix(link);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
    const int recent_scan = 8 * n + 8;
    // The root of the latest chain is usually among the full models found,
    // so one more than asked for.
    const size_t full_want = size_t(std::max(full_n, 0)) + 1;
    int scanned = 0;
    PackCache cache;
    for (it->SeekForPrev(ChunkKey(link, std::numeric_limits<int64_t>::max()));
         it->Valid() && HasPrefix(it->key(), prefix) && scanned < kFullModelScanChunks;
         it->Prev(), ++scanned) {
      bool want_recent = int(ids.size()) < n && scanned < recent_scan;
      bool want_full = full_n > 0 && full_ids.size() < full_want;
      if (!want_recent && !want_full) break;
      DGC_ASSIGN_OR_RETURN(ChunkRecord c, ReadChunk(View(it->key()), View(it->value()), &cache));
      if (want_recent && seen.insert(c.model_id).second) ids.push_back(c.model_id);
      bool from_full = c.decision == library::DecisionName(library::ParentDecision::Kind::kRetrain) ||
                       c.decision == library::DecisionName(library::ParentDecision::Kind::kBase);
      if (want_full && from_full && !c.parent_id.empty() && seen_full.insert(c.parent_id).second) {
        full_ids.push_back(c.parent_id);
      }
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  }
  auto candidate = [&](const ModelRecord& m) -> StatusOr<library::ParentCandidate> {
    library::ParentCandidate c;
    c.model_id = m.id;
    c.depth = m.depth;
    c.full = library::IsFullModel(m.kind);
    DGC_ASSIGN_OR_RETURN(c.fingerprint, ModelFingerprint(m));
    return c;
  };
  for (const auto& id : ids) {
    DGC_ASSIGN_OR_RETURN(auto m, FindModel(id));
    if (!m) continue;  // reported by Check
    DGC_ASSIGN_OR_RETURN(auto c, candidate(*m));
    out.recent.push_back(std::move(c));
  }
  if (!ids.empty()) {
    auto chain = Ancestors(ids.front());
    if (chain.ok()) {
      DGC_ASSIGN_OR_RETURN(ModelRecord root, GetModelRecord(chain->back().id));
      DGC_ASSIGN_OR_RETURN(auto c, candidate(root));
      out.base = std::move(c);
    }
  }
  for (const auto& id : full_ids) {
    if (int(out.previous_full.size()) >= full_n) break;
    if (out.base && id == out.base->model_id) continue;
    DGC_ASSIGN_OR_RETURN(auto m, FindModel(id));
    if (!m || !library::IsFullModel(m->kind)) continue;  // expired since, or not full
    DGC_ASSIGN_OR_RETURN(auto c, candidate(*m));
    out.previous_full.push_back(std::move(c));
  }
  return out;
}

StatusOr<library::ParentDecision> RocksDbModelLibrary::SelectParent(absl::string_view link,
                                                                    const library::Fingerprint& fp,
                                                                    const library::ParentSelector& selector) {
  const auto& o = selector.options();
  DGC_ASSIGN_OR_RETURN(Candidates c, ParentCandidates(link, o.recent_models, o.previous_full_models));
  return selector.Decide(fp, c.recent, c.base, c.previous_full);
}

// --- packs ------------------------------------------------------------------

StatusOr<RocksDbModelLibrary::PackReport> RocksDbModelLibrary::PackChunks(absl::string_view link,
                                                                        const PackOptions& o) {
  if (o.span_ns <= 0) return absl::InvalidArgumentError("pack span must be positive");
  DGC_RETURN_IF_ERROR(library::ValidateId("link", link));
  std::lock_guard<std::mutex> lock(commit_mu_);
  PackReport rep;
  struct Member {
    std::string key;
    ChunkRecord record;        // as it will be stored in the pack
    std::string fingerprint;   // "" when the chunk has none
    uint64_t own_bytes = 0;    // its record, fingerprint and keys today
    uint64_t model_bytes = 0;  // the rest of its stored bytes: the model its delta made
  };
  auto pack_span = [&](std::vector<Member>& span) -> Status {
    if (span.size() < std::max<size_t>(o.min_members, 1)) return absl::OkStatus();
    const int64_t pack_start = span.front().record.start_ns;
    const std::string pack_key = ChunkKey(link, pack_start);
    DGC_ASSIGN_OR_RETURN(auto clash, Get(kPacks, pack_key));
    if (clash) return absl::OkStatus();  // a pack of the same start exists: leave these as they are
    // Each member's stored bytes become its stub, its share of the pack (by
    // the size of what it puts in) and the model its delta made. The
    // shares are taken from a first encoding; the second holds them.
    std::vector<library::PackMember> members(span.size());
    std::vector<std::string> stubs(span.size());
    uint64_t in_total = 0;
    for (size_t i = 0; i < span.size(); ++i) {
      ChunkRecord stub = span[i].record;
      stub.in_pack = true;
      stub.pack_start_ns = pack_start;
      stubs[i] = library::EncodeChunk(stub);
      members[i] = {span[i].record.start_ns, library::EncodePackMember(span[i].record), span[i].fingerprint};
      in_total += members[i].record.size() + members[i].fingerprint.size();
    }
    std::string pack = library::EncodePack(members, pack_start);
    // The shares change the members, and so the pack: encode until its size
    // settles (twice or three times), as CommitChunk does for a record.
    for (int round = 0; round < 8; ++round) {
      const uint64_t size = pack.size() + pack_key.size();
      in_total = 0;
      for (const auto& m : members) in_total += m.record.size() + m.fingerprint.size();
      uint64_t given = 0;
      for (size_t i = 0; i < span.size(); ++i) {
        const uint64_t in = members[i].record.size() + members[i].fingerprint.size();
        const uint64_t share = i + 1 == span.size() ? size - given : size * in / std::max<uint64_t>(in_total, 1);
        given += share;
        span[i].record.stored_bytes = span[i].key.size() + stubs[i].size() + share + span[i].model_bytes;
        members[i].record = library::EncodePackMember(span[i].record);
      }
      pack = library::EncodePack(members, pack_start);
      if (pack.size() + pack_key.size() == size) break;
    }
    rocksdb::WriteBatch batch;
    batch.Put(cf_[kPacks], pack_key, pack);
    for (size_t i = 0; i < span.size(); ++i) {
      batch.Put(cf_[kChunks], span[i].key, stubs[i]);
      batch.Delete(cf_[kFingerprints], span[i].key);
      rep.bytes_before += span[i].own_bytes;
      rep.bytes_after += span[i].key.size() + stubs[i].size();
    }
    rep.bytes_after += pack_key.size() + pack.size();
    FaultPoint("library.pack.before_write");
    ++changes_;
    DGC_RETURN_IF_ERROR(Write(&batch));
    rep.packs++;
    rep.chunks += span.size();
    return absl::OkStatus();
  };

  const std::string prefix = LinkPrefix(link);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
  std::vector<Member> span;
  uint64_t span_bytes = 0;
  int64_t span_start = 0;
  for (it->Seek(ChunkKey(link, o.since_ns)); it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
    const std::string key(View(it->key()));
    DGC_ASSIGN_OR_RETURN(ChunkRecord c, library::DecodeChunk(key, View(it->value())));
    const int64_t start = FloorTo(c.start_ns, o.span_ns);
    // The span's end, saturated: only closed spans are packed.
    const int64_t span_end = start > std::numeric_limits<int64_t>::max() - o.span_ns ? std::numeric_limits<int64_t>::max()
                                                                                    : start + o.span_ns;
    if (span_end > o.until_ns) break;
    if (!span.empty() && start != span_start) {
      DGC_RETURN_IF_ERROR(pack_span(span));
      span.clear();
      span_bytes = 0;
    }
    span_start = start;
    if (c.in_pack || !c.raw_path.empty() || it->value().size() > o.max_member_bytes) continue;
    if (c.end_ns() > span_end) continue;  // a chunk across the span's end stays on its own
    if (span_bytes + it->value().size() > o.max_pack_bytes && !span.empty()) {
      DGC_RETURN_IF_ERROR(pack_span(span));
      span.clear();
      span_bytes = 0;
    }
    span_bytes += it->value().size();
    Member m;
    m.key = key;
    DGC_ASSIGN_OR_RETURN(auto fp, Get(kFingerprints, key));
    if (fp) m.fingerprint = std::move(*fp);
    m.own_bytes = key.size() + it->value().size() + (fp ? key.size() + m.fingerprint.size() : 0);
    m.model_bytes = c.stored_bytes > m.own_bytes ? c.stored_bytes - m.own_bytes : 0;
    // The skeleton in its uncompressed form: the pack compresses it with its neighbours.
    auto sk = model::Skeleton::Decode(c.skeleton, library::ChunkKeyToString(key));
    if (!sk.ok()) continue;  // leave a damaged skeleton where check finds it
    c.skeleton = sk->EncodePlain();
    m.record = std::move(c);
    span.push_back(std::move(m));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  DGC_RETURN_IF_ERROR(pack_span(span));
  return rep;
}

// --- storage ----------------------------------------------------------------

StatusOr<RocksDbModelLibrary::DetailedUsage> RocksDbModelLibrary::GetDetailedUsage() {
  DetailedUsage u;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
    PackCache cache;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      DGC_ASSIGN_OR_RETURN(ChunkRecord c, ReadChunk(View(it->key()), View(it->value()), &cache));
      u.chunks++;
      u.raw_bytes_ingested += c.raw_bytes;
      u.packets += c.packets;
      if (c.in_pack) {  // its record and fingerprint are in the pack, counted below
        u.packed_chunks++;
        u.chunk_meta_bytes += it->key().size() + it->value().size();
        continue;
      }
      u.skeleton_bytes += c.skeleton.size();
      u.report_bytes += c.report_stored_bytes;
      u.chunk_meta_bytes +=
          it->key().size() + it->value().size() - c.skeleton.size() - std::min<uint64_t>(c.report_stored_bytes, it->value().size() - c.skeleton.size());
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kPacks]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      u.packs++;
      u.pack_bytes += it->key().size() + it->value().size();
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading packs"));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kFingerprints]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) u.chunk_meta_bytes += it->key().size() + it->value().size();
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading fingerprints"));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kModels]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      DGC_ASSIGN_OR_RETURN(ModelRecord m, library::DecodeModel(View(it->key()), View(it->value())));
      uint64_t meta = it->key().size() + it->value().size() - m.blob.size();
      if (library::IsFullModel(m.kind)) {
        u.full_models++;
        u.full_model_bytes += m.blob.size();
      } else {
        u.finetune_models++;
        u.delta_bytes += m.blob.size();
      }
      u.model_meta_bytes += meta;
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading models"));
  }
  return u;
}

StatusOr<RocksDbModelLibrary::Usage> RocksDbModelLibrary::GetUsage() {
  DGC_ASSIGN_OR_RETURN(DetailedUsage d, GetDetailedUsage());
  Usage u;
  u.chunks = d.chunks;
  u.chunk_bytes = d.ChunkBytes();
  u.models = d.full_models;
  u.model_bytes = d.full_model_bytes;
  return u;
}

// --- retention --------------------------------------------------------------

StatusOr<RocksDbModelLibrary::ExpireReport> RocksDbModelLibrary::Expire(const ExpireOptions& o) {
  std::lock_guard<std::mutex> lock(commit_mu_);
  DGC_ASSIGN_OR_RETURN(ExpirePlan plan, PlanExpireLocked(o));
  if (o.dry_run) return std::move(plan.report);
  return ApplyExpireLocked(plan);
}

StatusOr<RocksDbModelLibrary::ExpirePlan> RocksDbModelLibrary::PlanExpire(const ExpireOptions& o) {
  std::lock_guard<std::mutex> lock(commit_mu_);
  return PlanExpireLocked(o);
}

StatusOr<RocksDbModelLibrary::ExpireReport> RocksDbModelLibrary::ApplyExpire(const ExpirePlan& plan) {
  std::lock_guard<std::mutex> lock(commit_mu_);
  return ApplyExpireLocked(plan);
}

StatusOr<RocksDbModelLibrary::ExpirePlan> RocksDbModelLibrary::PlanExpireLocked(const ExpireOptions& o) {
  const int64_t now = Now();
  ExpirePlan plan;
  plan.changes = changes_;
  plan.batch_chunks = std::max<size_t>(o.batch_chunks, 1);
  ExpireReport& rep = plan.report;

  struct ChunkInfo {
    std::string key, name, model_id, raw_path;
    int64_t start_ns = 0, end_ns = 0;
    uint64_t bytes = 0;
    bool newest = false, kept = true;
  };
  struct ModelInfo {
    std::string parent;
    ModelKind kind = ModelKind::kBase;
    uint32_t depth = 0;
    uint64_t bytes = 0;
    int64_t created_ns = 0;
    int refs = 0, refs_before = 0;
  };
  std::vector<ChunkInfo> chunks;
  std::unordered_map<std::string, ModelInfo> models;
  uint64_t total = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kModels]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      DGC_ASSIGN_OR_RETURN(ModelRecord m, library::DecodeModel(View(it->key()), View(it->value())));
      ModelInfo& mi = models[m.id];
      mi.parent = m.parent_id;
      mi.kind = m.kind;
      mi.depth = m.depth;
      mi.bytes = it->key().size() + it->value().size();
      mi.created_ns = m.created_ns;
      total += mi.bytes;
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading models"));
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kChunks]));
    PackCache cache;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      DGC_ASSIGN_OR_RETURN(ChunkRecord c, ReadChunk(View(it->key()), View(it->value()), &cache));
      ChunkInfo ci;
      ci.key = std::string(View(it->key()));
      ci.name = library::ChunkKeyToString(ci.key);
      ci.model_id = c.model_id;
      ci.raw_path = c.raw_path;
      ci.start_ns = c.start_ns;
      ci.end_ns = c.end_ns();
      // + fingerprint, roughly; a packed chunk: its share of the pack
      ci.bytes = c.in_pack ? c.stored_bytes : it->key().size() + it->value().size() + 64;
      total += ci.bytes;
      if (!chunks.empty()) {
        std::string l1, l2;
        int64_t t;
        library::ParseChunkKey(chunks.back().key, &l1, &t);
        library::ParseChunkKey(ci.key, &l2, &t);
        if (l1 != l2) chunks.back().newest = true;
      }
      chunks.push_back(std::move(ci));
    }
    if (!chunks.empty()) chunks.back().newest = true;
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading chunks"));
  }
  rep.bytes_before = total;

  // Reference counts: every chunk holds its model and each ancestor.
  auto walk = [&](const std::string& id, int delta) -> std::vector<std::string> {
    std::vector<std::string> freed;
    std::string at = id;
    for (uint32_t guard = 0; guard < kMaxChain && !at.empty(); ++guard) {
      auto m = models.find(at);
      if (m == models.end()) break;
      m->second.refs += delta;
      if (delta < 0 && m->second.refs == 0) freed.push_back(at);
      if (library::IsFullModel(m->second.kind)) break;
      at = m->second.parent;
    }
    return freed;
  };
  for (const auto& c : chunks) walk(c.model_id, +1);
  for (auto& [id, m] : models) m.refs_before = m.refs;
  std::string newest_full;
  int64_t newest_full_ns = std::numeric_limits<int64_t>::min();
  for (const auto& [id, m] : models) {
    if (library::IsFullModel(m.kind) && m.created_ns >= newest_full_ns) {
      newest_full_ns = m.created_ns;
      newest_full = id;
    }
  }
  // A model goes when nothing kept needs it: finetune models always, full
  // models only when chunks used them and all those chunks went, and never
  // the newest full model.
  auto removable = [&](const std::string& id) {
    const ModelInfo& m = models[id];
    if (m.refs > 0) return false;
    if (!library::IsFullModel(m.kind)) return true;
    return m.refs_before > 0 && id != newest_full;
  };
  std::vector<ChunkInfo*> order;
  for (auto& c : chunks) order.push_back(&c);
  std::stable_sort(order.begin(), order.end(),
                   [](const ChunkInfo* a, const ChunkInfo* b) { return a->start_ns < b->start_ns; });
  auto drop = [&](ChunkInfo* c, const std::string& reason) {
    c->kept = false;
    total -= c->bytes;
    rep.items.push_back({"chunk", c->name, c->bytes, reason});
    for (const auto& id : walk(c->model_id, -1)) {
      if (removable(id)) total -= models[id].bytes;
    }
  };
  if (o.max_age_ns > 0) {
    int64_t cutoff = now - o.max_age_ns;
    for (ChunkInfo* c : order) {
      if (c->newest || c->end_ns >= cutoff) continue;
      drop(c, absl::StrCat("ended ", FormatRfc3339(c->end_ns), ", before ", FormatRfc3339(cutoff)));
    }
  }
  if (o.max_bytes > 0) {
    for (ChunkInfo* c : order) {
      if (total <= o.max_bytes) break;
      if (!c->kept || c->newest) continue;
      drop(c, absl::StrFormat("library over %d bytes: oldest first", o.max_bytes));
    }
    if (total > o.max_bytes) {
      rep.size_goal_met = false;
      rep.note = absl::StrFormat(
          "%d bytes remain above --max-bytes %d: the newest chunk of each link and the models kept chunks "
          "build on are never expired",
          total - o.max_bytes, o.max_bytes);
    }
  }
  // Models to remove, descendants (deeper) first.
  std::vector<std::string> gone_models;
  for (const auto& [id, m] : models) {
    if (removable(id)) gone_models.push_back(id);
  }
  std::sort(gone_models.begin(), gone_models.end(), [&](const std::string& a, const std::string& b) {
    const ModelInfo &ma = models[a], &mb = models[b];
    return ma.depth != mb.depth ? ma.depth > mb.depth : a < b;
  });
  for (const auto& id : gone_models) {
    const ModelInfo& m = models[id];
    rep.items.push_back({"model", id, m.bytes,
                         m.refs_before > 0 ? "no kept chunk builds on it"
                                           : "unreferenced (left by an interrupted run or commit)"});
  }
  // Raw files: of expired chunks, and of kept ones older than keep_raw.
  std::vector<const ChunkInfo*> raw_clear;  // kept chunks whose raw_path is cleared
  for (const ChunkInfo* c : order) {
    if (c->raw_path.empty()) continue;
    bool old_raw = o.keep_raw_ns >= 0 && c->end_ns < now - o.keep_raw_ns;
    if (c->kept && !old_raw) continue;
    std::error_code ec;
    bool there = fs::exists(c->raw_path, ec);
    if (!there) {
      rep.warnings.push_back(absl::StrCat("raw file ", c->raw_path, " of chunk ", c->name,
                                          " was already deleted (by someone else?)"));
    } else {
      rep.items.push_back({"raw", c->raw_path, static_cast<uint64_t>(fs::file_size(c->raw_path, ec)),
                           c->kept ? "raw chunk kept longer than --keep-raw" : "its chunk expires"});
    }
    if (c->kept) raw_clear.push_back(c);
  }
  rep.bytes_after = total;
  for (const ChunkInfo* c : raw_clear) plan.raw_clear.push_back(c->key);
  for (const ChunkInfo* c : order) {
    if (!c->kept) plan.chunk_keys.push_back(c->key);
  }
  for (const auto& id : gone_models) {
    const ModelInfo& m = models[id];
    plan.models.push_back({id, m.parent, library::IsFullModel(m.kind)});
  }
  return plan;
}

StatusOr<RocksDbModelLibrary::ExpireReport> RocksDbModelLibrary::ApplyExpireLocked(const ExpirePlan& plan) {
  if (changes_ != plan.changes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the library at ", dir_, " had ", changes_ - plan.changes,
        " chunk or model write(s) since this retention plan was made; make the plan again"));
  }
  ++changes_;
  ExpireReport rep = plan.report;

  // Apply. Raw files first: a crash then leaves a record naming a missing
  // file (tolerated and reported), never an unreferenced file.
  for (const auto& item : rep.items) {
    if (item.kind != "raw") continue;
    std::error_code ec;
    fs::remove(item.name, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      rep.warnings.push_back(absl::StrCat("could not delete raw file ", item.name, ": ", ec.message()));
    }
  }
  FaultPoint("library.expire.after_raw_files");  // raw files gone, their records not yet cleared
  {
    rocksdb::WriteBatch batch;
    size_t n = 0;
    for (const std::string& key : plan.raw_clear) {
      DGC_ASSIGN_OR_RETURN(ChunkRecord r, ChunkFromKey(key));
      if (r.in_pack) continue;  // packed chunks keep no raw file (PackChunks)
      r.raw_path.clear();
      batch.Put(cf_[kChunks], key, library::EncodeChunk(r));
      ++n;
    }
    for (const std::string& key : plan.chunk_keys) {
      batch.Delete(cf_[kChunks], key);
      batch.Delete(cf_[kFingerprints], key);
      if (++n >= plan.batch_chunks) {
        DGC_RETURN_IF_ERROR(Write(&batch));
        batch.Clear();
        n = 0;
        FaultPoint("library.expire.after_chunk_batch");  // some chunk records gone (the last: all), no model yet
      }
    }
    if (n > 0) {
      DGC_RETURN_IF_ERROR(Write(&batch));
      FaultPoint("library.expire.after_chunk_batch");
    }
  }
  {
    // The packs no chunk names any more go: those whose last chunk just
    // went, and any an interrupted expire left (a kill before this write
    // leaves them for the next one; check lists them as garbage).
    std::vector<std::pair<std::string, uint64_t>> all;  // key, bytes
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kPacks]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      all.emplace_back(std::string(View(it->key())), it->key().size() + it->value().size());
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading packs"));
    if (!all.empty()) {
      DGC_ASSIGN_OR_RETURN(std::set<std::string> named, NamedPacks());
      rocksdb::WriteBatch batch;
      for (const auto& [pk, bytes] : all) {
        if (named.count(pk)) continue;
        batch.Delete(cf_[kPacks], pk);
        rep.items.push_back({"pack", library::ChunkKeyToString(pk), bytes, "none of its chunks is left"});
      }
      if (batch.Count() > 0) DGC_RETURN_IF_ERROR(Write(&batch));
    }
  }
  {
    rocksdb::WriteBatch batch;
    size_t n = 0;
    for (const ExpirePlan::Model& m : plan.models) {
      batch.Delete(cf_[kModels], m.id);
      if (!m.full) batch.Delete(cf_[kLineage], library::LineageKey(m.parent, m.id));
      if (++n >= plan.batch_chunks) {
        DGC_RETURN_IF_ERROR(Write(&batch));
        batch.Clear();
        n = 0;
        FaultPoint("library.expire.after_model_batch");  // some unneeded models gone, not all
      }
    }
    if (n > 0) DGC_RETURN_IF_ERROR(Write(&batch));
  }
  return rep;
}

// --- consistency ------------------------------------------------------------

StatusOr<RocksDbModelLibrary::CheckReport> RocksDbModelLibrary::Check() {
  CheckReport rep;
  std::unordered_map<std::string, ModelRecord> models;
  std::unordered_set<std::string> damaged_models;
  DGC_RETURN_IF_ERROR(ScanCarefully(
      kModels,
      [&](absl::string_view key, absl::string_view value) {
        auto m = library::DecodeModel(key, value);
        if (!m.ok()) {
          rep.problems.push_back(std::string(m.status().message()));
          return;
        }
        m->blob.clear();
        models[m->id] = std::move(*m);
      },
      &rep.damaged));
  for (const auto& d : rep.damaged) damaged_models.insert(d.name);
  rep.models = models.size() + damaged_models.size();
  std::unordered_set<std::string> needed;
  // Models whose chain reaches a damaged model, by that model: every chunk
  // on such a chain is named, not only the first one walked.
  std::unordered_map<std::string, std::string> on_damaged;
  auto need_chain = [&](const std::string& id, const std::string& who) {
    std::string at = id;
    std::vector<std::string> path;
    auto damaged_at = [&](const std::string& bad) {
      for (const auto& p : path) on_damaged[p] = bad;
      rep.problems.push_back(absl::StrCat(who, ": builds on damaged model ", bad,
                                          (bad == id ? "" : absl::StrCat(" (an ancestor of ", id, ")")),
                                          ": it cannot be regenerated"));
    };
    for (uint32_t guard = 0;; ++guard) {
      if (guard > kMaxChain) {
        rep.problems.push_back(absl::StrCat(who, ": lineage of ", id, " loops"));
        return;
      }
      if (damaged_models.count(at)) return damaged_at(at);
      auto m = models.find(at);
      if (m == models.end()) {
        rep.problems.push_back(absl::StrCat(who, ": model ", at, (at == id ? "" : absl::StrCat(" (ancestor of ", id, ")")),
                                            " is missing"));
        return;
      }
      if (!needed.insert(at).second) {  // the rest of the chain is checked
        if (auto bad = on_damaged.find(at); bad != on_damaged.end()) damaged_at(bad->second);
        return;
      }
      path.push_back(at);
      if (library::IsFullModel(m->second.kind)) return;
      at = m->second.parent_id;
    }
  };
  std::unordered_set<std::string> chunk_keys;
  PackCache packs;
  std::set<std::string> named_packs;  // packs some chunk's stub names
  const size_t damaged_before_chunks = rep.damaged.size();
  DGC_RETURN_IF_ERROR(ScanCarefully(
      kChunks,
      [&](absl::string_view k, absl::string_view value) {
        std::string key(k);
        chunk_keys.insert(key);
        rep.chunks++;
        auto c = ReadChunk(key, value, &packs);
        if (!c.ok()) {
          rep.problems.push_back(std::string(c.status().message()));
          // A stub whose pack did not read still names it.
          if (auto stub = library::DecodeChunk(key, value); stub.ok() && stub->in_pack) {
            named_packs.insert(ChunkKey(stub->link, stub->pack_start_ns));
          }
          return;
        }
        if (c->in_pack) named_packs.insert(ChunkKey(c->link, c->pack_start_ns));
        std::string who = absl::StrCat("chunk ", library::ChunkKeyToString(key));
        need_chain(c->model_id, who);
        if (c->parent_id != c->model_id) {
          auto m = models.find(c->model_id);
          if (m != models.end() && m->second.kind == ModelKind::kFinetune && m->second.parent_id != c->parent_id) {
            rep.problems.push_back(absl::StrCat(who, ": parent ", c->parent_id, " differs from model ", c->model_id,
                                                "'s parent ", m->second.parent_id));
          }
        }
      },
      &rep.damaged));
  rep.chunks += rep.damaged.size() - damaged_before_chunks;
  std::set<std::string> edges;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kLineage]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::string_view k = View(it->key());
      size_t z = k.find('\0');
      rep.lineage_edges++;
      if (z == absl::string_view::npos) {
        rep.problems.push_back(absl::StrCat("bad lineage key '", absl::CHexEscape(k), "'"));
        continue;
      }
      std::string parent(k.substr(0, z)), child(k.substr(z + 1));
      if (damaged_models.count(child) || damaged_models.count(parent)) {
        edges.insert(std::string(k));
        continue;  // named as damaged already
      }
      auto c = models.find(child);
      if (c == models.end() || !models.count(parent) || c->second.parent_id != parent) {
        rep.problems.push_back(absl::StrCat("lineage edge ", parent, " -> ", child,
                                            " does not match the model records"));
      }
      edges.insert(std::string(k));
    }
    DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading lineage"));
  }
  for (const auto& [id, m] : models) {
    if (m.kind != ModelKind::kFinetune) continue;
    if (!models.count(m.parent_id) && !damaged_models.count(m.parent_id)) {
      rep.problems.push_back(absl::StrCat("model ", id, ": parent ", m.parent_id, " is missing"));
    }
    if (!edges.count(library::LineageKey(m.parent_id, id))) {
      rep.problems.push_back(absl::StrCat("model ", id, ": no lineage edge from its parent ", m.parent_id));
    }
    if (!needed.count(id)) rep.unreferenced_models.push_back(id);
  }
  std::sort(rep.unreferenced_models.begin(), rep.unreferenced_models.end());
  std::unordered_set<std::string> damaged_chunks;
  for (size_t i = damaged_before_chunks; i < rep.damaged.size(); ++i) damaged_chunks.insert(rep.damaged[i].name);
  DGC_RETURN_IF_ERROR(ScanCarefully(
      kFingerprints,
      [&](absl::string_view k, absl::string_view value) {
        rep.fingerprints++;
        std::string key(k);
        const std::string name = library::ChunkKeyToString(key);
        if (!chunk_keys.count(key) && !damaged_chunks.count(name)) {
          rep.problems.push_back(absl::StrCat("fingerprint of ", name, " has no chunk"));
        }
        auto f = library::Fingerprint::Decode(value, name);
        if (!f.ok()) rep.problems.push_back(std::string(f.status().message()));
      },
      &rep.damaged));
  DGC_RETURN_IF_ERROR(ScanCarefully(
      kPacks,
      [&](absl::string_view key, absl::string_view value) {
        auto members = library::DecodePack(key, value);
        if (!members.ok()) {
          rep.problems.push_back(std::string(members.status().message()));
          return;
        }
        if (!named_packs.count(std::string(key))) rep.unreferenced_packs.push_back(library::ChunkKeyToString(key));
      },
      &rep.damaged));
  return rep;
}

// --- jobs -------------------------------------------------------------------

Status RocksDbModelLibrary::PutJob(const library::JobRecord& job) {
  DGC_RETURN_IF_ERROR(library::ValidateId("job id", job.id));
  rocksdb::WriteBatch batch;
  batch.Put(cf_[kJobs], Sl(job.id), library::EncodeJob(job));
  return Write(&batch);
}

StatusOr<library::JobRecord> RocksDbModelLibrary::GetJob(absl::string_view id) {
  DGC_ASSIGN_OR_RETURN(auto v, Get(kJobs, id));
  if (!v) return absl::NotFoundError(absl::StrCat("job ", id, " is not in the library"));
  return library::DecodeJob(id, *v);
}

StatusOr<std::vector<library::JobRecord>> RocksDbModelLibrary::ListJobs(absl::string_view after, size_t limit) {
  std::vector<library::JobRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[kJobs]));
  if (after.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(Sl(after));
    if (it->Valid() && View(it->key()) == after) it->Next();
  }
  for (; it->Valid() && (limit == 0 || out.size() < limit); it->Next()) {
    DGC_ASSIGN_OR_RETURN(auto j, library::DecodeJob(View(it->key()), View(it->value())));
    out.push_back(std::move(j));
  }
  DGC_RETURN_IF_ERROR(FromRocks(it->status(), "reading jobs"));
  return out;
}

namespace {
constexpr absl::string_view kJobHistoryKey = "job_history";
}  // namespace

Status RocksDbModelLibrary::PutJobHistory(const library::JobRecord& history) {
  rocksdb::WriteBatch batch;
  batch.Put(cf_[kMeta], Sl(kJobHistoryKey), library::EncodeJob(history));
  return Write(&batch);
}

StatusOr<library::JobRecord> RocksDbModelLibrary::GetJobHistory() {
  DGC_ASSIGN_OR_RETURN(auto v, Get(kMeta, kJobHistoryKey));
  if (!v) return absl::NotFoundError("the library holds no job history");
  return library::DecodeJob(kJobHistoryKey, *v);
}

Status RocksDbModelLibrary::DeleteJobs(const std::vector<std::string>& ids) {
  rocksdb::WriteBatch batch;
  for (const std::string& id : ids) batch.Delete(cf_[kJobs], Sl(id));
  return Write(&batch);
}

Status RocksDbModelLibrary::DeleteJob(absl::string_view id) {
  rocksdb::WriteBatch batch;
  batch.Delete(cf_[kJobs], Sl(id));
  return Write(&batch);
}

RocksDbModelLibrary::MemoryUsage RocksDbModelLibrary::Memory() const {
  MemoryUsage m;
  for (size_t i = 1; i < cf_.size(); ++i) {
    uint64_t v = 0;
    if (db_->GetIntProperty(cf_[i], rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) m.memtable_bytes += v;
    if (db_->GetIntProperty(cf_[i], rocksdb::DB::Properties::kEstimateTableReadersMem, &v)) {
      m.table_reader_bytes += v;
    }
  }
  if (cache_) m.block_cache_bytes = cache_->GetUsage();
  return m;
}

StatusOr<std::unique_ptr<RocksDbModelLibrary>> OpenModelLibrary(const std::string& dir, bool read_only) {
  RocksDbModelLibrary::Options o;
  o.read_only = read_only;
  return RocksDbModelLibrary::Open(dir, o);
}

}  // namespace dgc

#include "coordinator/scheduler/rocksdb_job_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dgc {
namespace {

StatusOr<JobRecord> FromLibrary(const library::JobRecord& stored) {
  if (stored.version != RocksDbJobStore::kPayloadVersion) {
    return absl::DataLossError(absl::StrCat("job ", stored.id, ": payload version ", stored.version,
                                            ", this build reads ", RocksDbJobStore::kPayloadVersion));
  }
  auto rec = DecodeJobRecord(stored.payload);
  if (!rec.ok()) return absl::DataLossError(absl::StrCat("job ", stored.id, ": ", rec.status().message()));
  return rec;
}

}  // namespace

std::string RocksDbJobStore::Key(JobId id) { return absl::StrFormat("%020d", id); }

Status RocksDbJobStore::Put(const JobRecord& job) {
  library::JobRecord stored;
  stored.id = Key(job.id);
  stored.version = kPayloadVersion;
  stored.payload = EncodeJobRecord(job);
  return library_->PutJob(stored);
}

StatusOr<JobRecord> RocksDbJobStore::Get(JobId id) const {
  DGC_ASSIGN_OR_RETURN(library::JobRecord stored, library_->GetJob(Key(id)));
  return FromLibrary(stored);
}

StatusOr<std::vector<JobRecord>> RocksDbJobStore::ListAfter(JobId after, size_t limit) const {
  DGC_ASSIGN_OR_RETURN(std::vector<library::JobRecord> stored,
                       library_->ListJobs(after == 0 ? std::string() : Key(after), limit));
  std::vector<JobRecord> out;
  out.reserve(stored.size());
  for (const auto& s : stored) {
    DGC_ASSIGN_OR_RETURN(JobRecord r, FromLibrary(s));
    out.push_back(std::move(r));
  }
  return out;
}

Status RocksDbJobStore::Delete(JobId id) {
  // The library treats a missing key as success; the interface wants NotFound.
  auto existing = library_->GetJob(Key(id));
  if (!existing.ok()) return existing.status();
  return library_->DeleteJob(Key(id));
}

Status RocksDbJobStore::DeleteAll(const std::vector<JobId>& ids) {
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (JobId id : ids) keys.push_back(Key(id));
  return library_->DeleteJobs(keys);
}

StatusOr<JobHistory> RocksDbJobStore::GetHistory() const {
  auto stored = library_->GetJobHistory();
  if (absl::IsNotFound(stored.status())) return JobHistory{};
  if (!stored.ok()) return stored.status();
  if (stored->version != kPayloadVersion) {
    return absl::DataLossError(absl::StrCat("job history: payload version ", stored->version, ", this build reads ",
                                            kPayloadVersion));
  }
  auto h = DecodeJobHistory(stored->payload);
  if (!h.ok()) return absl::DataLossError(h.status().message());
  return h;
}

Status RocksDbJobStore::PutHistory(const JobHistory& history) {
  library::JobRecord stored;
  stored.id = "job_history";
  stored.version = kPayloadVersion;
  stored.payload = EncodeJobHistory(history);
  return library_->PutJobHistory(stored);
}

}  // namespace dgc

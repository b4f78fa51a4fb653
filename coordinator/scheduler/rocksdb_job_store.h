// RocksDbJobStore: the scheduler's JobStore in the model library's RocksDB
// (its `jobs` column family), so a restarted coordinator finds every job
// where the library keeps its models and chunks.
//
// Records are EncodeJobRecord JSON, stored as library::JobRecord payloads
// (payload version kPayloadVersion) under the id as 20 zero-padded decimal
// digits, so the library's key order is id order and a page needs no sort.
//
// Thread safety: as the library (any thread); the scheduler calls it from its
// one loop. The library must outlive the store.
#ifndef DGC_COORDINATOR_SCHEDULER_ROCKSDB_JOB_STORE_H_
#define DGC_COORDINATOR_SCHEDULER_ROCKSDB_JOB_STORE_H_

#include <string>
#include <vector>

#include "common/base/status.h"
#include "library/rocksdb_model_library.h"
#include "coordinator/scheduler/job_store.h"

namespace dgc {

class RocksDbJobStore final : public JobStore {
 public:
  static constexpr uint32_t kPayloadVersion = 1;

  explicit RocksDbJobStore(RocksDbModelLibrary* library) : library_(library) {}

  // Errors are the library's (RocksDB's, converted there); a stored record
  // that does not decode is DataLoss naming its key.
  Status Put(const JobRecord& job) override;
  StatusOr<JobRecord> Get(JobId id) const override;
  StatusOr<std::vector<JobRecord>> ListAfter(JobId after, size_t limit) const override;
  Status Delete(JobId id) override;
  Status DeleteAll(const std::vector<JobId>& ids) override;  // one write batch
  // In the library's meta column family (RocksDbModelLibrary::PutJobHistory).
  StatusOr<JobHistory> GetHistory() const override;
  Status PutHistory(const JobHistory& history) override;

  // "00000000000000000042" for 42.
  static std::string Key(JobId id);

 private:
  RocksDbModelLibrary* library_;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SCHEDULER_ROCKSDB_JOB_STORE_H_

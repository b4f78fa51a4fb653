// Job records and the store the scheduler persists them through.
//
// The scheduler keeps the jobs that can still change in memory (see Scheduler,
// Memory) and writes each change through to a JobStore before acting on it, so
// a restarted coordinator rebuilds its state from JobStore::List(). The store
// keeps every record, also those of the committed jobs the scheduler evicted,
// until Scheduler::ExpireHistory deletes old ones (JobHistory keeps what
// they committed).
// InMemoryJobStore serves tests and the simulation; the coordinator backs the
// interface with the library's RocksDB.
#ifndef DGC_COORDINATOR_SCHEDULER_JOB_STORE_H_
#define DGC_COORDINATOR_SCHEDULER_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/base/status.h"

namespace dgc {

using JobId = uint64_t;

// compress: fine-tune the stream's latest model (the parent) on one chunk.
// retrain: train a new base for the stream; scheduled before any compress job.
enum class JobKind : uint8_t { kCompress = 0, kRetrain = 1 };

// queued -> leased -> done, or back to queued (lease expired, failure below
// the limit), or failed (the limit reached); queued/leased -> cancelled.
// Retry moves failed or cancelled back to queued.
enum class JobState : uint8_t { kQueued = 0, kLeased, kDone, kFailed, kCancelled };

const char* JobKindName(JobKind kind);    // "compress", "retrain"
const char* JobStateName(JobState state);  // "queued", "leased", ...

// A worker's part of a lease: its id and the slots the lease holds there.
struct LeaseShare {
  std::string worker;
  uint32_t slots = 0;
  bool operator==(const LeaseShare& o) const { return worker == o.worker && slots == o.slots; }
};

struct JobRecord {
  JobId id = 0;
  JobKind kind = JobKind::kCompress;
  // The stream: one shard of one link. Its jobs form one model chain and run
  // in chunk-time order (see Scheduler).
  std::string link;
  uint32_t shard = 0;
  int64_t seq = 0;           // chunk window index: the order within the stream
  int64_t start_ns = 0;      // chunk start, for operators and oldest-first order
  uint64_t packets = 0;      // job size: decides large (multi-GPU) or small
  std::string chunk_ref;     // where the chunk's bytes are (a library key or a path)

  JobState state = JobState::kQueued;
  uint32_t attempts = 0;     // leases handed out so far; the current lease's number
  uint32_t failures = 0;     // failed attempts (reported failures and expired leases)
  std::string last_error;    // the reason of the latest failure
  std::string worker;        // holder of the current lease, or of the last one
  int64_t lease_deadline_ns = 0;  // while leased
  uint32_t lease_slots = 0;       // slots the lease takes on its worker
  // While leased to a gang: the other workers serving it as data-parallel
  // helpers, with the slots each holds (see Scheduler, Gangs).
  std::vector<LeaseShare> helpers;
  // A queued job is not handed out before this wall time (0: at once), unless
  // Scheduler::MakeReady says so earlier: a link's first base waits for its
  // first chunks.
  int64_t not_before_ns = 0;
  JobId parent_job = 0;      // the committed job whose model the lease starts from; 0: none
  std::string result_ref;    // when done: the committed artifact
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
};

// JSON, for a key-value store and for `dgcctl describe job`.
std::string EncodeJobRecord(const JobRecord& job);
// InvalidArgument naming the field when `bytes` is not a record EncodeJobRecord wrote.
[[nodiscard]] StatusOr<JobRecord> DecodeJobRecord(absl::string_view bytes);

// What expired job records leave behind (Scheduler::ExpireHistory): enough
// for a restarted scheduler to know every chunk they committed and never
// hand out one of their ids again.
struct JobHistory {
  JobId next_id = 0;  // every id below this was handed out
  // Per stream (link, shard), by kind: runs [first, last] of seqs whose
  // committed jobs were evicted.
  struct Runs {
    std::map<int64_t, int64_t> compress, retrain;
  };
  std::map<std::pair<std::string, uint32_t>, Runs> streams;
};
// JSON: {"next_id": N, "streams": [{"link": L, "shard": S, "compress": [[a, b], ...], "retrain": [...]}]}.
std::string EncodeJobHistory(const JobHistory& h);
// InvalidArgument naming what is wrong (runs must be ordered and disjoint).
[[nodiscard]] StatusOr<JobHistory> DecodeJobHistory(absl::string_view bytes);

// Persistent job records, keyed by id. Implementations need not be thread
// safe: the scheduler calls them from its one loop.
class JobStore {
 public:
  virtual ~JobStore() = default;
  // Inserts or replaces the record with job.id. On error nothing changed.
  [[nodiscard]] virtual Status Put(const JobRecord& job) = 0;
  // NotFound when there is no record with `id`.
  [[nodiscard]] virtual StatusOr<JobRecord> Get(JobId id) const = 0;
  // The records with an id above `after`, in id order, at most `limit` of
  // them (0: every one): one page of the store for a caller that pages.
  [[nodiscard]] virtual StatusOr<std::vector<JobRecord>> ListAfter(JobId after, size_t limit) const = 0;
  // Every record, in id order.
  [[nodiscard]] StatusOr<std::vector<JobRecord>> List() const { return ListAfter(0, 0); }
  // Removes the record; NotFound when there is none.
  [[nodiscard]] virtual Status Delete(JobId id) = 0;
  // Removes every record of `ids` that exists, at once where the store can
  // (one write, one sync), else one by one; on an error some may be gone.
  [[nodiscard]] virtual Status DeleteAll(const std::vector<JobId>& ids) {
    for (JobId id : ids) {
      Status st = Delete(id);
      if (!st.ok() && !absl::IsNotFound(st)) return st;
    }
    return absl::OkStatus();
  }
  // The history expired records left (an empty one when none was written),
  // and its replacement.
  [[nodiscard]] virtual StatusOr<JobHistory> GetHistory() const = 0;
  [[nodiscard]] virtual Status PutHistory(const JobHistory& history) = 0;
};

// A JobStore in a map, with a settable Status per operation to inject faults.
class InMemoryJobStore final : public JobStore {
 public:
  Status Put(const JobRecord& job) override;
  StatusOr<JobRecord> Get(JobId id) const override;
  StatusOr<std::vector<JobRecord>> ListAfter(JobId after, size_t limit) const override;
  Status Delete(JobId id) override;
  StatusOr<JobHistory> GetHistory() const override { return history_; }
  Status PutHistory(const JobHistory& history) override {
    history_ = history;
    return absl::OkStatus();
  }

  // Knobs: the next calls of that operation return `s` (OK restores).
  void set_put_status(Status s) { put_status_ = std::move(s); }
  void set_list_status(Status s) { list_status_ = std::move(s); }
  size_t size() const { return jobs_.size(); }
  uint64_t puts() const { return puts_; }

 private:
  std::map<JobId, JobRecord> jobs_;
  JobHistory history_;
  Status put_status_;
  Status list_status_;
  uint64_t puts_ = 0;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SCHEDULER_JOB_STORE_H_

// The coordinator's job scheduler: which worker runs which job, and when.
//
// Pure logic: no sockets, no threads, no sleeping. Time comes from the
// injected Clock. NOT thread safe: it lives on the coordinator's io_context
// loop, which calls it on every event (a chunk arrived, a worker registered or
// sent a heartbeat, a result came back, a timer fired) and then sends what
// Schedule() hands out.
//
// Rules:
// - Streams. A job belongs to the stream of its (link, shard). A stream's jobs
//   run one at a time in chunk-time order (seq): job N+1 is not handed out
//   while job N of the same stream is queued or leased, because N+1's parent
//   model is N's result. The parent of a lease is the stream's latest
//   committed job before it (Assignment::parent_job; 0: none yet, start from
//   the stream's base). A failed job blocks its stream until an operator
//   retries or cancels it (SchedulerOptions::failed_job_blocks_stream); a
//   cancelled one is skipped.
// - Priority among the jobs ready to run (each stream's head): retrain jobs
//   first, then the oldest chunk (start_ns), then the lowest id.
// - Capacity. A worker has slots: one per GPU, or cpu_threads /
//   cpu_threads_per_slot when it has none. A small job takes one slot, packed
//   onto the fullest single-GPU/CPU worker first. A large job (packets >=
//   large_job_packets) takes a whole idle multi-GPU worker; while one waits,
//   small jobs are not placed on multi-GPU workers. With no multi-GPU worker
//   in the pool, large jobs run like small ones.
// - Gangs. With max_workers_per_job >= 2, a large job, when at least two
//   idle workers that can join a gang (WorkerCapacity::data_parallel) are
//   free, leases them all (up to max_workers_per_job; multi-GPU workers and
//   then the most GPUs first): the first holds the lease as usual
//   (Assignment::worker, JobRecord::worker; it sends the result), the others
//   serve as data-parallel helpers (Assignment::helpers, JobRecord::helpers)
//   with every slot they have. Helpers' slots are held until the lease ends
//   (commit, failure, expiry, cancel); a helper leaving or lost ends the
//   lease like its holder would (requeued). Only the holder's heartbeats
//   extend the lease. Otherwise the rules above apply.
// - Leases. A lease ends at now + lease_ns; a heartbeat listing the job
//   extends it. Tick() requeues expired leases, counting a failure. A job
//   reaching max_failures (reported failures and expiries together) is marked
//   failed with its last reason.
// - Completion is idempotent: the first result for a job commits it; a result
//   for a job already done is acknowledged as kDuplicate and changes nothing,
//   also when it comes from a worker whose lease expired and whose job was
//   re-leased and finished by another.
// - Durability. Every change is written to the JobStore before the scheduler
//   acts on it; on a store error the call returns it and memory is unchanged
//   for that job. Create() rebuilds the state from the store: leases survive
//   (their workers re-register and heartbeat, or the leases expire).
// - Memory (issue 17). Only the jobs that can still matter are held: every
//   queued, leased, failed and cancelled job, and the committed ones a later
//   job may take as parent (Stream::committed: the last one before the
//   stream's first unfinished or failed job, and every one after it). A
//   committed job behind that frontier is evicted when PruneCommitted drops
//   it (on a commit or a cancel; the job just committed stays until the
//   stream's next prune, so callers may look at it after Complete). Of an
//   evicted job only its (seq, kind) is kept, as a run of seqs in
//   Stream::evicted, so a chunk sent again (a restarted ingest) is still
//   recognised as committed (SubmitResult::done, job 0) and not run twice; a
//   gap between runs stays open for a chunk never seen. Ids are dense, so an
//   id below next_id_ that is not held is an evicted committed job (Evicted):
//   a late result for it is kDuplicate, a failure kStale, Cancel and Retry
//   FailedPrecondition; FindJob and Jobs() do not see it (the store still
//   has its record: JobStore::Get); counts() still counts it as done.
//   Load() reads every record but holds only what a running scheduler would,
//   rebuilding the runs from the evicted ones and the JobHistory. Memory is
//   O(unfinished, failed and cancelled jobs + streams + gaps in committed
//   seqs), not O(chunks ever seen); the store keeps every record until
//   ExpireHistory deletes old committed ones.
#ifndef DGC_COORDINATOR_SCHEDULER_SCHEDULER_H_
#define DGC_COORDINATOR_SCHEDULER_SCHEDULER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/base/status.h"
#include "coordinator/scheduler/clock.h"
#include "coordinator/scheduler/job_store.h"

namespace dgc {

struct SchedulerOptions {
  // How long a lease lasts after it is granted or extended by a heartbeat.
  // Default 60 s (workers send heartbeats every few seconds).
  int64_t lease_ns = 60LL * 1'000'000'000;
  // A worker silent this long is forgotten by Tick() (it must register
  // again). Default 120 s.
  int64_t worker_timeout_ns = 120LL * 1'000'000'000;
  // Failed attempts (reported or expired) after which a job is failed.
  // Default 3.
  uint32_t max_failures = 3;
  // Jobs with at least this many packets are large: they go to a whole
  // multi-GPU worker. Default 2,000,000.
  uint64_t large_job_packets = 2'000'000;
  // Workers one large job may span (data-parallel across workers, see
  // Gangs). Default 1: a job runs on one worker.
  uint32_t max_workers_per_job = 1;
  // A worker without GPUs gets max(1, cpu_threads / this) slots. Default 8.
  uint32_t cpu_threads_per_slot = 8;
  // A failed job holds back the later jobs of its stream (their parent would
  // be missing) until retried or cancelled. Default true; false lets them
  // proceed from the latest committed model.
  bool failed_job_blocks_stream = true;
};

// What a job is, as the coordinator submits it.
struct JobSpec {
  JobKind kind = JobKind::kCompress;
  std::string link;
  uint32_t shard = 0;
  int64_t seq = 0;
  int64_t start_ns = 0;
  uint64_t packets = 0;
  std::string chunk_ref;
  int64_t not_before_ns = 0;  // JobRecord::not_before_ns
};

struct WorkerCapacity {
  uint32_t cpu_threads = 0;
  uint32_t gpus = 0;
  uint64_t gpu_memory_bytes = 0;  // per GPU, the smallest; informational
  uint32_t slots = 0;             // 0: derived (see SchedulerOptions)
  // The worker serves a rendezvous store for data-parallel jobs spanning
  // workers (it advertised a peer address): it may join a gang.
  bool data_parallel = false;
};

struct WorkerInfo {
  std::string id;
  WorkerCapacity capacity;
  uint32_t slots = 0;
  uint32_t used_slots = 0;
  bool draining = false;  // takes no new work; drained once used_slots == 0
  int64_t registered_ns = 0;
  int64_t last_heartbeat_ns = 0;
  std::vector<JobId> leases;
};

// A lease handed out by Schedule(): send the job to the worker.
struct Assignment {
  JobId job = 0;
  std::string worker;
  uint32_t attempt = 0;         // quote it back in the result or failure
  int64_t lease_deadline_ns = 0;
  JobId parent_job = 0;         // 0: no committed parent in the stream yet
  uint32_t slots = 1;
  bool large = false;
  // A gang lease: the helper workers, each with every slot it has (empty:
  // the job runs on `worker` alone).
  std::vector<LeaseShare> helpers;
};

struct SubmitResult {
  JobId job = 0;         // 0 when the existing job was committed and evicted (see Memory)
  bool created = false;  // false: a job for this chunk and kind already existed
  bool done = false;     // the existing job is committed (done)
};

enum class CompletionOutcome {
  kCommitted,  // the first result: store the artifact, acknowledge
  kDuplicate,  // already committed: acknowledge, store nothing
  kDiscarded,  // the job was cancelled or failed: acknowledge, store nothing
};

struct CompletionResult {
  CompletionOutcome outcome = CompletionOutcome::kCommitted;
  // When another worker held a lease on the job: that lease was released;
  // tell the worker to abandon the job.
  std::string preempted_worker;
};

enum class FailureOutcome {
  kRequeued,  // will run again
  kFailed,    // max_failures reached, or not retryable
  kStale,     // not the current lease of this worker: ignored
};

struct TickReport {
  std::vector<JobId> expired;              // leases that ran out
  std::vector<std::string> lost_workers;   // forgotten after worker_timeout_ns
};

struct JobCounts {
  std::array<uint64_t, 5> by_state{};  // indexed by JobState
  uint64_t operator[](JobState s) const { return by_state[static_cast<size_t>(s)]; }
};

class Scheduler {
 public:
  // Loads every record of `store` (see Durability above). `store` and `clock`
  // must outlive the scheduler. Errors: the store's List() error, or
  // InvalidArgument for options that cannot work (max_failures 0, lease_ns <= 0).
  [[nodiscard]] static StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options,
                                                                   JobStore* store, const Clock* clock);
  // The same from `records`, every record of `store` as its List() gave them
  // (the coordinator reads them for its own recovery too, so the store is
  // scanned once at start-up).
  [[nodiscard]] static StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerOptions& options,
                                                                   JobStore* store, const Clock* clock,
                                                                   std::vector<JobRecord> records);

  // Adds a job to its stream. Idempotent per (link, shard, seq, kind): while
  // a job for it exists and is not cancelled, returns that job with
  // created=false (done=true and job 0 when it was committed and evicted).
  // InvalidArgument when link is empty.
  [[nodiscard]] StatusOr<SubmitResult> Submit(const JobSpec& spec);

  // Adds a worker, or updates one that registers again (after a reconnect or
  // a coordinator restart): its leases are kept. InvalidArgument on an empty
  // id or a capacity of zero slots.
  [[nodiscard]] Status RegisterWorker(const std::string& worker, const WorkerCapacity& capacity);
  // The worker is leaving: its leases are requeued without counting a failure.
  // NotFound when unknown.
  [[nodiscard]] Status RemoveWorker(const std::string& worker);
  // Records that the worker is alive and extends its leases on the jobs it
  // lists; leases it does not list keep their deadline (a worker that
  // restarted and lost them lets them expire). NotFound when the worker is
  // unknown: it must register again.
  [[nodiscard]] Status Heartbeat(const std::string& worker, const std::vector<JobId>& active_jobs);
  // Drain: the worker gets no new work; its leases run to their end.
  // NotFound when unknown.
  [[nodiscard]] Status SetDraining(const std::string& worker, bool draining);

  // Hands out work up to every worker's capacity, appending the leases to
  // `out`. On a store error, returns it; the leases already appended stand.
  [[nodiscard]] Status Schedule(std::vector<Assignment>* out);

  // What Complete would do with a result for `job`, without doing it, so the
  // coordinator can store the artifact first only when it will be committed.
  // NotFound for an unknown job; kDuplicate for an evicted one.
  [[nodiscard]] StatusOr<CompletionOutcome> ClassifyResult(JobId job) const;
  // A result for `job` from `worker`'s lease number `attempt`, its artifact
  // stored as `result_ref`. See the completion rule above. NotFound for an
  // unknown job; InvalidArgument for an attempt never handed out (not
  // checked for an evicted job: kDuplicate).
  [[nodiscard]] StatusOr<CompletionResult> Complete(const std::string& worker, JobId job, uint32_t attempt,
                                                    const std::string& result_ref);
  // The worker reports that lease `attempt` of `job` failed. Counts a failure
  // (fails the job at once when !retryable). NotFound for an unknown job.
  [[nodiscard]] StatusOr<FailureOutcome> Fail(const std::string& worker, JobId job, uint32_t attempt,
                                              const std::string& reason, bool retryable = true);

  // The coordinator takes back a lease it handed out but did not send (its
  // job must first wait for another, e.g. a retrain of the same chunk it
  // just submitted): the job is queued again, no failure counted. NotFound
  // for an unknown job; FailedPrecondition when it is not leased.
  [[nodiscard]] Status Release(JobId job, const std::string& reason);

  // A queued job waiting for its not_before_ns becomes ready now. NotFound
  // for an unknown job; OK (nothing to do) when it is not waiting.
  [[nodiscard]] Status MakeReady(JobId job);

  // Requeues expired leases, makes ready the queued jobs whose not_before_ns
  // passed, and forgets silent workers; call it from a timer
  // at NextDeadlineNs() (or periodically). On a store error, returns it after
  // filling `report` with what was done.
  [[nodiscard]] Status Tick(TickReport* report);
  // The earliest lease deadline, or INT64_MAX when nothing is leased.
  int64_t NextDeadlineNs() const;

  // Operator actions. Cancel: a queued or leased job is cancelled; returns
  // the worker that held its lease (to be told), or "". FailedPrecondition
  // when the job is done, failed or cancelled already.
  [[nodiscard]] StatusOr<std::string> Cancel(JobId job);
  // Retry: a failed or cancelled job is queued again with its failure count
  // reset. FailedPrecondition otherwise, or when a newer job covers the chunk.
  [[nodiscard]] Status Retry(JobId job);

  // History retention: deletes from the store the records of committed jobs
  // that are evicted (see Memory), were last updated before `before_ns`, and
  // that `may_expire` allows (the coordinator: no raw chunk file kept), after
  // writing the JobHistory that keeps what they committed and the next id.
  // Reads at most `max_records` records a call, going on where the last call
  // stopped (from the first again after the last). Memory and every answer
  // stay the same (a resent chunk is still known as committed, an expired id
  // is still Evicted) but the store: Get and List no longer see them, and
  // counts() no longer counts them. Returns how many were deleted; on a store
  // error, what it deleted before it stands.
  [[nodiscard]] StatusOr<size_t> ExpireHistory(int64_t before_ns, size_t max_records,
                                               const std::function<bool(const JobRecord&)>& may_expire);
  // The streams (link, shard) with a committed job (held, evicted or expired).
  std::vector<std::pair<std::string, uint32_t>> StreamsWithCommits() const;

  // Queries (operator API, metrics). FindJob and Jobs() see the jobs held in
  // memory only (see Memory); Evicted: `job` was committed and evicted.
  const JobRecord* FindJob(JobId job) const;
  std::vector<JobRecord> Jobs() const;  // by id
  bool Evicted(JobId job) const { return job != 0 && job < next_id_ && jobs_.count(job) == 0; }
  size_t resident_jobs() const { return jobs_.size(); }
  std::optional<WorkerInfo> FindWorker(const std::string& worker) const;
  std::vector<WorkerInfo> Workers() const;  // by id
  const JobCounts& counts() const { return counts_; }
  size_t ready_jobs() const { return ready_small_.size() + ready_large_.size(); }
  size_t streams() const { return streams_.size(); }

 private:
  // Order of a job in its stream: (seq, retrain before compress, id).
  using OrderKey = std::tuple<int64_t, int, JobId>;
  // Order among ready jobs: (retrain first, oldest chunk, id).
  using ReadyKey = std::tuple<int, int64_t, JobId>;
  // Free slots, then registration order: the first entry is the fullest worker.
  using FitKey = std::pair<uint32_t, uint64_t>;
  // Order of idle gang workers: multi-GPU first, then the most GPUs (stored
  // as ~gpus), then registration order. The first entry holds a gang lease.
  using GangKey = std::tuple<bool, uint32_t, uint64_t>;

  struct Stream {
    std::map<OrderKey, JobId> unfinished;    // queued and leased
    std::set<OrderKey> failed;
    std::map<OrderKey, JobId> committed;     // pruned to what later jobs may need
    std::map<std::pair<int64_t, int>, JobId> known;  // (seq, kind) -> job, not cancelled, held
    // By KindRank: runs of seqs [first, last] whose committed job was evicted.
    std::array<std::map<int64_t, int64_t>, 2> evicted;
    uint32_t leased = 0;
    std::optional<ReadyKey> ready;           // this stream's entry in a ready set
    int64_t waiting_until = 0;               // its head's not_before_ns while that is ahead
    bool ready_large = false;
  };
  struct Entry {
    JobRecord rec;
    Stream* stream = nullptr;
  };
  struct Worker {
    WorkerInfo info;   // info.leases is filled only by the queries
    uint64_t ordinal = 0;
    bool multi_gpu = false;
  };

  Scheduler(const SchedulerOptions& options, JobStore* store, const Clock* clock);
  Status Load(std::vector<JobRecord> records);

  static int KindRank(JobKind kind) { return kind == JobKind::kRetrain ? 0 : 1; }
  static OrderKey OrderOf(const JobRecord& r) { return {r.seq, KindRank(r.kind), r.id}; }
  bool IsLarge(const JobRecord& r) const { return r.packets >= options_.large_job_packets; }
  uint32_t SlotsFor(const WorkerCapacity& c) const;

  // Writes `updated` to the store, then into memory, keeping counts_. The
  // caller updates the indexes.
  Status Persist(Entry& entry, JobRecord updated);
  void RefreshStream(Stream& s);
  JobId ParentOf(const Stream& s, const OrderKey& key) const;
  // Drops the committed jobs no later job may need and evicts them (see
  // Memory); `keep` (the job just committed) stays until the next prune.
  void PruneCommitted(Stream& s, JobId keep = 0);
  void Evict(Stream& s, const OrderKey& key);
  static bool EvictedChunk(const Stream& s, int64_t seq, int rank);
  // Leases `entry` to `worker` with `slots` of its slots and, for a gang, to
  // `helpers` with every slot each has.
  Status Lease(Entry& entry, Worker& worker, uint32_t slots, const std::vector<Worker*>& helpers,
               std::vector<Assignment>* out);
  void ReleaseLease(Entry& entry);  // the index side of ending a lease (every member of a gang)
  // One worker's part of ending a lease: its slots come back only when it
  // still held the job, so no share is released twice.
  void ReleaseShare(JobId job, const std::string& worker, uint32_t slots);
  // Requeues or fails a leased job after a failure or an expiry.
  Status FailLeased(Entry& entry, const std::string& reason, bool count, bool retryable,
                    FailureOutcome* outcome);
  Status Commit(Entry& entry, const std::string& result_ref);
  void Unindex(const Worker& w);
  void Index(const Worker& w);
  static GangKey GangKeyOf(const Worker& w);
  Worker* WorkerByName(const std::string& id);
  uint32_t UsedSlots(const std::string& id) const;
  // The slots the lease `r` holds on worker `id`, as holder or gang helper.
  static uint32_t SlotsHeldBy(const JobRecord& r, const std::string& id);

  SchedulerOptions options_;
  JobStore* store_;
  const Clock* clock_;

  std::unordered_map<JobId, Entry> jobs_;
  std::unordered_map<std::string, Stream> streams_;  // key: link '\0' shard
  // Streams whose head waits for its not_before_ns: (that time, stream).
  std::set<std::pair<int64_t, Stream*>> waits_;
  JobId next_id_ = 1;
  JobCounts counts_;
  JobId expire_cursor_ = 0;  // where ExpireHistory goes on

  std::set<ReadyKey> ready_small_;
  std::set<ReadyKey> ready_large_;
  std::set<std::pair<int64_t, JobId>> deadlines_;  // leased jobs by deadline

  std::unordered_map<std::string, Worker> workers_;
  std::unordered_map<uint64_t, Worker*> by_ordinal_;
  uint64_t next_ordinal_ = 1;
  // Leases by worker, holders and gang helpers alike (a helper's share is in
  // JobRecord::helpers), also for workers not (yet) registered after a restart.
  std::unordered_map<std::string, std::set<JobId>> leases_by_worker_;
  std::set<FitKey> fit_single_;  // single-GPU/CPU workers with a free slot, not draining
  std::set<FitKey> fit_multi_;   // multi-GPU workers with a free slot, not draining
  std::set<uint64_t> idle_multi_;  // multi-GPU workers with every slot free, not draining
  std::set<GangKey> idle_gang_;    // data-parallel workers with every slot free, not draining
  uint32_t active_multi_ = 0;      // multi-GPU workers not draining
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SCHEDULER_SCHEDULER_H_

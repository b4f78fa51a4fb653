// The coordinator's control loop (dgc-coordinator): the ingest chunk stream
// with credit-based flow control, the worker pool (registration, heartbeats,
// leases), results committed once through the model library, and the
// operator API dgcctl talks to. deploy/PROCESSES.md is its contract.
//
// Threads: everything here lives on one boost::asio::io_context (the
// process's control loop): ZeroMQ sockets are watched through their fds,
// the scheduler ticks on a timer. Only Ready() may be called from another
// thread (the health server's).
//
// Durability: jobs live in the library's RocksDB (RocksDbJobStore); a chunk's
// bytes are written (atomically) beside the library before its job is stored
// and before the ingest gets its ChunkAck, so an acknowledged chunk is never
// lost; a restarted coordinator resumes every job from the store.
#ifndef DGC_COORDINATOR_SERVER_H_
#define DGC_COORDINATOR_SERVER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "common/base/status.h"
#include "common/runtime/process.h"
#include "common/wire/codec.h"
#include "common/wire/generate_segment.h"
#include "common/wire/parent_bundle.h"
#include "common/wire/zmq_transport.h"
#include "library/compression_policy.h"
#include "library/pack_pricer.h"
#include "library/rocksdb_model_library.h"
#include "coordinator/scheduler/clock.h"
#include "coordinator/scheduler/rocksdb_job_store.h"
#include "coordinator/scheduler/scheduler.h"
#include "nlohmann/json.hpp"

namespace dgc {

struct CoordinatorOptions {
  std::string listen = "tcp://127.0.0.1:7070";  // workers and ingest
  std::string api = "tcp://127.0.0.1:7071";     // dgcctl
  std::string library_dir;                      // required
  std::string shared_dir;                       // "": chunks travel over the wire
  std::string base_model_file;                  // "": each new stream trains its base (a retrain job)
  int64_t lease_ns = 60LL * 1'000'000'000;
  int64_t heartbeat_ns = 5LL * 1'000'000'000;
  uint32_t max_attempts = 3;
  // Jobs of at least this many packets lease a whole multi-GPU worker, which
  // trains them data-parallel over its GPUs (SchedulerOptions).
  uint64_t large_job_packets = 2'000'000;
  // Workers one large job may span, data-parallel (workers that advertise a
  // peer address); 1: a job runs on one worker.
  uint32_t max_workers_per_job = 1;
  double fidelity_target = 0.10;
  int64_t raw_retention_ns = 0;
  // A committed job's record is deleted from the library this long after its
  // last change, once the scheduler evicted it and its raw chunk is gone
  // (Scheduler::ExpireHistory; the library's JobHistory keeps what it
  // committed). 0 keeps every record.
  int64_t job_history_ns = 7LL * 24 * 3600 * 1'000'000'000;
  uint32_t ingest_credits = 8;         // chunks an ingest may have in flight
  size_t max_queued_jobs = 100000;     // beyond: no credit (ingest spools)
  nlohmann::json job_options = nlohmann::json::object();  // training knobs sent to workers
  // Parent choice by drift, the policy `dgcctl compress` runs
  // (library::CompressionPolicy): each compress job's chunk is fingerprinted
  // at its first assignment and its parent chosen among the stream's recent
  // models, the base and earlier full models (continue, switch, base); a
  // drift or depth that calls for a new base has a retrain job trained on
  // this chunk before its compress job runs (a retrain by drift on fewer
  // than job_options' min_flows flows is deferred). Each chunk is committed
  // with its fingerprint, decision, drift and reason.
  library::ParentSelector::Options selector;
  // Without --base, a stream's first base trains on its first this many
  // chunks (or fewer holding job_options' warmup_flows flows, or those that
  // came within this many chunk lengths): dgcctl compress --warmup-chunks.
  uint32_t first_base_chunks = 6;
  // The quiet chunks of each closed span (weeks aligned to the epoch) of a link go into one
  // pack (RocksDbModelLibrary::PackChunks), checked once a minute and at
  // Stop: a span is closed once the link's newest chunk (and the clock) are
  // pack_grace_ns past its end. 0: no packing.
  int64_t pack_span_ns = 7 * 86400LL * 1'000'000'000;
  int64_t pack_grace_ns = 3600LL * 1'000'000'000;
  wire::SecurityOptions security;
  std::string curve_allow_dir;         // re-read by ReloadAllowList
};

// What the coordinator keeps its state in, opened by its main (or a test):
// the model library and the scheduler's job store over the library's jobs
// column family.
struct CoordinatorStores {
  std::unique_ptr<RocksDbModelLibrary> library;
  std::unique_ptr<JobStore> jobs;
  // Opens the library at `library_dir` (RocksDB's memory bounded by
  // `memory_budget_bytes`, RocksDbModelLibrary::Options; 0: its defaults)
  // and a RocksDbJobStore over it. Errors: the library's (Unavailable when
  // another process holds it).
  [[nodiscard]] static StatusOr<CoordinatorStores> Open(const std::string& library_dir,
                                                        uint64_t memory_budget_bytes = 0);
};

class Coordinator {
 public:
  // Recovers the jobs from `stores`, binds both sockets and starts the
  // timers. Errors: the transport's (PermissionDenied for a non-loopback
  // endpoint without keys, Unavailable when the address is in use),
  // InvalidArgument for a --base file that is not a model or for missing
  // stores. `io`, `zmq`, `metrics` and `clock` must outlive the coordinator.
  [[nodiscard]] static StatusOr<std::unique_ptr<Coordinator>> Create(boost::asio::io_context& io,
                                                                     wire::ZmqContext& zmq,
                                                                     runtime::ProcessMetrics& metrics,
                                                                     CoordinatorOptions options,
                                                                     CoordinatorStores stores, const Clock* clock);
  ~Coordinator();

  // Stops accepting (closes the sockets and timers); the library is closed
  // (flushed) by the destructor. Loop thread.
  void Stop();
  // Re-reads --curve-allow-dir (SIGHUP). Loop thread.
  [[nodiscard]] Status ReloadAllowList();

  // "" once ready (library open, sockets bound, jobs recovered). Any thread.
  std::string Ready() const {
    if (!ready_.load()) return "starting";
    if (library_full_.load()) {
      return "no space left on the library's file system (" + options_.library_dir + "): chunk intake paused";
    }
    return "";
  }
  std::string listen_endpoint() const;
  std::string api_endpoint() const;

 private:
  struct WorkerPeer {
    std::string peer;      // ROUTER routing id of its current connection
    std::string hostname;
    std::string build;
    std::string peer_address;  // its data-parallel store; "": joins no gang
    uint32_t ranks = 1;        // data-parallel ranks it brings to a gang
    double tokens_per_second = 0;
    // Models this worker holds in its cache, newest first (it keeps 8; the
    // newest 4 are assumed): a parent among them is sent by id, not bytes.
    std::deque<std::string> cached_models;
    void Remember(const std::string& id) {
      for (auto it = cached_models.begin(); it != cached_models.end(); ++it) {
        if (*it == id) {
          cached_models.erase(it);
          break;
        }
      }
      cached_models.push_front(id);
      if (cached_models.size() > 4) cached_models.pop_back();
    }
    bool Holds(const std::string& id) const {
      for (const auto& m : cached_models) {
        if (m == id) return true;
      }
      return false;
    }
  };
  struct Metrics;

  Coordinator(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
              CoordinatorOptions options, CoordinatorStores stores, const Clock* clock);
  Status Init();

  void DrainRouter();
  void DrainApi();
  void OnWorkerMessage(const std::string& peer, wire::Decoded& msg);
  void OnChunk(const std::string& peer, wire::ChunkData& data);
  void OnRegister(const std::string& peer, const wire::Register& reg);
  void OnHeartbeat(const std::string& peer, const wire::Heartbeat& hb);
  void OnResult(const std::string& peer, wire::JobResult& result);
  void OnFailed(const std::string& peer, const wire::JobFailed& failed);
  wire::OperatorReply OnOperator(const wire::OperatorRequest& req);

  void ScheduleAndSend();
  Status SendAssignment(const Assignment& a);
  StatusOr<std::string> ParentModelId(const JobRecord& job, JobId parent_job);
  // The fingerprint and parent decision of a compress job's chunk, made once
  // (at its first assignment) and kept until its result is committed; after
  // a restart it is made again from the raw chunk and the library, which the
  // stream's later chunks cannot have changed (they wait for this one).
  struct ChunkPolicy {
    library::Fingerprint fingerprint;
    library::ParentDecision decision;  // kRetrain with no parent yet: its retrain job must run first
  };
  // The policy asked for a retrain of `job`'s chunk: its lease is taken back
  // and a retrain job for the same chunk submitted, which runs first.
  // Returns Cancelled (nothing sent; schedule again) or the store's error.
  Status RetrainFirst(const JobRecord& job, const ChunkPolicy& policy);
  StatusOr<const ChunkPolicy*> PolicyFor(const JobRecord& job, JobId parent_job);
  // A stream's first base waits for its first chunks (OnChunk): counts the
  // chunk `payload` towards it and makes it ready once enough came.
  struct FirstBase {
    JobId job = 0;
    uint32_t chunks = 0;
    uint64_t flows = 0;
  };
  void CountForFirstBase(const std::string& key, const std::string& payload);
  // The further raw chunks a retrain job trains on with its own: a stream's
  // first chunks for its first base, else the policy's retrain set (the
  // recent chunks like it, kept by KeepRecentRaw). Files gone are left out.
  // `fingerprint`: of its own chunk and those together (the model's).
  struct RetrainSet {
    std::vector<std::string> chunks;
    library::Fingerprint fingerprint;
  };
  StatusOr<RetrainSet> RetrainSetOf(const JobRecord& job);
  // The quiet chunks a compress job continuing `parent_id` fine-tunes with
  // (library::CompressionPolicy::Pooled), oldest first as the embedded path
  // pools them: their raw files, kept by KeepRecentRaw. Files gone are left out.
  std::vector<std::string> PoolOf(const JobRecord& job, const std::string& parent_id);
  // A committed chunk's raw file stays while it is among its stream's recent
  // chunks (a retrain may train on it) or in the pool of quiet chunks the
  // next one fine-tunes with, then goes as DeleteRawLater says. `trim`
  // false: only recorded (recovery trims each stream once, TrimRecentRaw).
  // A write into the library's database failed for want of space: RocksDB
  // takes no more writes until the database is reopened, and 7.8 aborts when
  // asked to resume or close it. Exits the process (status 75, EX_TEMPFAIL),
  // as a kill would, so the supervisor restarts it; nothing unacknowledged
  // was committed, ingests keep their chunks, leases expire. Returns when
  // `st` is not a full disk.
  void ExitIfLibraryFull(const Status& st, absl::string_view what);
  void KeepRecentRaw(const JobRecord& job, bool trim = true);
  void TrimRecentRaw(const std::string& link, uint32_t shard);
  std::string LibraryLinkOf(const std::string& link, uint32_t shard) const;
  StatusOr<std::string> ParentBundleBytes(const std::string& model_id);
  void Tick();
  void UpdateGauges();
  void DeleteRawLater(const std::string& path, int64_t committed_ns);
  void Send(const std::string& peer, const wire::Message& msg);

  static std::string StreamKey(const std::string& link, uint32_t shard);
  // The link a stream's chunks have in the library: the link itself when the
  // link is not sharded, else "LINK#i" (the library's ids may hold no '/').
  static std::string LibraryLink(const std::string& link, uint32_t shard, uint32_t shard_count);
  std::string RawPath(const wire::ChunkMeta& meta) const;
  nlohmann::json WorkerJson(const WorkerInfo& w) const;

  boost::asio::io_context& io_;
  wire::ZmqContext& zmq_;
  runtime::ProcessMetrics& process_metrics_;
  CoordinatorOptions options_;
  const Clock* clock_;
  std::unique_ptr<RocksDbModelLibrary> library_;
  std::unique_ptr<library::CompressionPolicy> policy_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<wire::ZmqRouter> router_;
  std::unique_ptr<wire::ZmqRouter> api_;
  std::unique_ptr<runtime::ZmqWatcher> router_watch_;
  std::unique_ptr<runtime::ZmqWatcher> api_watch_;
  boost::asio::steady_timer tick_timer_;
  std::unique_ptr<Metrics> metrics_;
  std::atomic<bool> ready_{false};
  // A chunk could not be stored for want of space under the library: intake
  // is paused (ingests keep their chunks, told to send them again) until a
  // chunk is stored again. Read by Ready() from the health server's thread.
  std::atomic<bool> library_full_{false};
  bool stopped_ = false;

  std::string base_model_id_;  // from --base
  std::unordered_map<std::string, WorkerPeer> workers_;              // worker id -> connection
  std::set<std::string> streams_with_base_;                          // StreamKey: a retrain job exists
  std::set<std::string> retrain_requested_;                          // StreamKey: dgcctl retrain
  std::unordered_map<std::string, uint32_t> shard_counts_;           // StreamKey -> shards of its link
  std::unordered_map<JobId, int64_t> lease_started_ns_;              // steady clock, for durations
  std::unordered_map<JobId, ChunkPolicy> policies_;                  // compress jobs assigned, not committed
  std::unordered_map<std::string, FirstBase> first_bases_;           // StreamKey: its first base waits
  std::unordered_map<std::string, std::deque<std::pair<int64_t, std::string>>> recent_raw_;  // newest first
  std::multimap<int64_t, std::string> raw_deletions_;                // wall ns -> raw chunk file
  int64_t next_expiry_ns_ = 0;  // the next sweep of old job records (wall ns)
  int64_t next_trim_ns_ = 0;  // when freed heap pages next go back to the system (malloc_trim)
  // Packing (CoordinatorOptions::pack_span_ns): per library link, the
  // newest chunk committed since this process started, and how far its
  // spans are packed; the next pass.
  std::map<std::string, int64_t> pack_newest_;
  std::map<std::string, int64_t> packed_until_;
  int64_t next_pack_ns_ = 0;
  void PackClosedSpans(int64_t now);
  // Per library link: what its next chunk record costs packed, and its
  // metadata (sent with each compress job, as dgcctl compress prices them).
  std::map<std::string, library::PackPricer> pricers_;
  // Regeneration on the workers (dgcctl generate --coordinator;
  // server_generate.cc). A session is one dgcctl generate: its chunks cut
  // into segments (runs sharing a model and tokenizer, as the embedded
  // generate's), handed to workers with a free slot as kGenerate jobs and
  // kept until dgcctl fetches them in order. At most a window of segments
  // past the next one fetched runs or waits, so memory is bounded by it,
  // not by the range. Sessions live in memory only: a restarted coordinator
  // forgets them and dgcctl's next fetch fails with the reason.
  struct GenerateSegment {
    enum class State { kQueued, kRunning, kDone, kFailed, kFetched };
    std::vector<size_t> chunks;  // indices into the session's chunks
    std::string model_id;
    wire::SegmentOptions options;
    std::vector<std::string> skeletons;
    State state = State::kQueued;
    uint64_t job_id = 0;         // of the running attempt (a new id each attempt)
    std::string worker;
    uint32_t attempts = 0;
    int64_t seen_ns = 0;         // steady: assigned, or last listed in its worker's heartbeat
    std::string packets;         // done: GenerateSegment packets, until fetched
    std::string error;           // failed: why
    bool damaged = false;        // failed because a record or model is damaged
  };
  struct GenerateSession {
    std::vector<GenerateSegment> segments;
    size_t next_fetch = 0;
    int64_t last_seen_ns = 0;  // steady: its last request
  };
  wire::OperatorReply OnGenerate(const wire::OperatorRequest& req, const nlohmann::json& args);
  wire::OperatorReply StartGeneration(const nlohmann::json& args);
  // Hands queued segments to workers with a free slot (after the
  // scheduler's jobs). Loop thread.
  void AssignGenerateSegments();
  // A result or failure of a kGenerate job (job ids with kGenerateJobBit).
  void OnGenerateResult(const std::string& peer, wire::JobResult& result);
  void OnGenerateFailed(const std::string& peer, const wire::JobFailed& failed);
  // Segments running on `worker` go back to the queue (it left or was lost);
  // with `worker` empty, those not seen for a lease (Tick).
  void RequeueGenerateSegments(const std::string& worker);
  void NoteGenerateHeartbeat(const wire::Heartbeat& hb);
  void RetryOrFail(GenerateSegment& seg, const std::string& reason, bool retryable);
  static constexpr uint64_t kGenerateJobBit = uint64_t{1} << 62;
  std::map<uint64_t, GenerateSession> generations_;
  std::unordered_map<uint64_t, std::pair<uint64_t, size_t>> generate_jobs_;  // job id -> (session, segment)
  uint64_t next_generation_ = 1;
  uint64_t next_generate_job_ = 1;
  // Recently sent parent chains by model id (a few; most jobs extend the last).
  std::list<std::pair<std::string, std::vector<std::shared_ptr<const wire::ParentLink>>>> bundle_cache_;
  uint64_t zap_denied_seen_ = 0;
  bool scheduling_ = false;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SERVER_H_

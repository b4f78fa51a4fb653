// Internal to dgc-coordinator (coordinator/server*.cc): the metrics and the
// small helpers the parts of the control loop share. Not for other code.
#ifndef DGC_COORDINATOR_SERVER_INTERNAL_H_
#define DGC_COORDINATOR_SERVER_INTERNAL_H_

#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <xxhash.h>

#include "absl/strings/str_format.h"
#include "common/trace/chunk_format.h"
#include "common/trace/flow.h"
#include "coordinator/server.h"
#include "nlohmann/json.hpp"

namespace dgc {
namespace coordinator_internal {

constexpr int64_t kNsPerSec = 1'000'000'000;
// The further raw chunks one JobAssign carries (a retrain set, a pool), at most.
constexpr size_t kMaxTrainSetBytes = size_t{256} << 20;
// A pool of quiet chunks holds at most this many (the embedded path's is
// unbounded; a quiet link's hour is a few KB, so this is days of them).
constexpr size_t kMaxPoolChunks = 256;

inline int64_t SteadyNs() { return runtime::LoopLiveness::NowSteadyNs(); }

inline std::string ModelIdOfCheckpoint(const std::string& bytes) {
  return absl::StrFormat("base-%016x", XXH64(bytes.data(), bytes.size(), 0));
}

inline nlohmann::json ParseOr(const std::string& text, nlohmann::json fallback) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

inline wire::OperatorReply Error(const std::string& message) {
  wire::OperatorReply r;
  r.ok = false;
  r.error = message;
  return r;
}

inline wire::OperatorReply Ok(const nlohmann::json& j) {
  wire::OperatorReply r;
  r.ok = true;
  r.json = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

// The fingerprint of a chunk as the policy computes it (its flows: .flows).
inline library::Fingerprint FingerprintOfChunk(const Chunk& chunk) {
  std::vector<Flow> flows = BuildFlows(chunk.packets, chunk.end_ns());
  return library::Fingerprint::Compute(chunk.packets, flows, chunk.start_ns, chunk.duration_ns);
}
inline StatusOr<library::Fingerprint> FingerprintOfChunkFile(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(Chunk chunk, ReadChunkFile(path));
  return FingerprintOfChunk(chunk);
}

}  // namespace coordinator_internal

// The coordinator's metrics (PROCESSES.md, "Metrics").
struct Coordinator::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : raw_bytes(prometheus::BuildCounter().Name("dgc_chunk_raw_bytes_total")
                      .Help("committed chunks' packets as classic pcap bytes").Register(r).Add({})),
        stored_bytes(prometheus::BuildCounter().Name("dgc_chunk_stored_bytes_total")
                         .Help("bytes the library stores for committed chunks").Register(r).Add({})),
        committed(prometheus::BuildCounter().Name("dgc_chunks_committed_total")
                      .Help("chunks whose model is committed (once each)").Register(r).Add({})),
        fidelity(prometheus::BuildHistogram().Name("dgc_chunk_fidelity_mean")
                     .Help("per committed chunk: mean distance over the 17 metrics").Register(r)
                     .Add({}, prometheus::Histogram::BucketBoundaries{0.02, 0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25,
                                                                      0.30, 0.50, 1})),
        target(prometheus::BuildGauge().Name("dgc_fidelity_target").Help("--fidelity-target").Register(r).Add({})),
        jobs(&prometheus::BuildGauge().Name("dgc_jobs").Help("jobs now in each state").Register(r)),
        jobs_failed(prometheus::BuildCounter().Name("dgc_jobs_failed_total")
                        .Help("jobs marked failed after --max-attempts").Register(r).Add({})),
        duration(&prometheus::BuildHistogram().Name("dgc_job_duration_seconds")
                      .Help("lease to committed result, successful attempts").Register(r)),
        expiries(prometheus::BuildCounter().Name("dgc_lease_expiries_total")
                     .Help("leases expired and requeued").Register(r).Add({})),
        drift(&prometheus::BuildCounter().Name("dgc_drift_triggers_total")
                   .Help("chunks that got more than a short fine-tune, and why").Register(r)),
        workers(&prometheus::BuildGauge().Name("dgc_workers").Help("registered workers").Register(r)),
        job_records_expired(prometheus::BuildCounter().Name("dgc_job_records_expired_total")
                                .Help("committed jobs' records deleted after --job-history-hours").Register(r)
                                .Add({})),
        library_disk_full(prometheus::BuildGauge().Name("dgc_library_disk_full")
                              .Help("1 while chunk intake is paused: no space left under the library")
                              .Register(r).Add({})),
        library_memory(&prometheus::BuildGauge().Name("dgc_library_memory_bytes")
                            .Help("the library's RocksDB memory: memtables and block cache (bounded by "
                                  "--library-memory-mb), and table readers' index and filter blocks")
                            .Register(r)) {
    for (const char* k : {"memtables", "block_cache", "table_readers"}) library_memory->Add({{"kind", k}});
    for (const char* s : {"pending", "running", "failed"}) jobs->Add({{"state", s}});
    for (const char* s : {"idle", "busy", "draining"}) workers->Add({{"state", s}});
    for (const char* s : {"long_finetune", "retrain", "drift", "fidelity_retry"}) drift->Add({{"reason", s}});
    for (const char* k : {"finetune", "retrain"}) Duration(k);
  }
  prometheus::Histogram& Duration(const std::string& kind) {
    return duration->Add({{"kind", kind}},
                         prometheus::Histogram::BucketBoundaries{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600});
  }
  prometheus::Counter& raw_bytes;
  prometheus::Counter& stored_bytes;
  prometheus::Counter& committed;
  prometheus::Histogram& fidelity;
  prometheus::Gauge& target;
  prometheus::Family<prometheus::Gauge>* jobs;
  prometheus::Counter& jobs_failed;
  prometheus::Family<prometheus::Histogram>* duration;
  prometheus::Counter& expiries;
  prometheus::Family<prometheus::Counter>* drift;
  prometheus::Family<prometheus::Gauge>* workers;
  prometheus::Counter& job_records_expired;
  prometheus::Gauge& library_disk_full;
  prometheus::Family<prometheus::Gauge>* library_memory;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SERVER_INTERNAL_H_

// Network-mode ingest (dgc-ingest --coordinator, --interface, --follow): a
// capture thread cuts chunks into the spool directory exactly as file mode
// does, and the control loop ships the spool to the coordinator with
// credit-based flow control, deleting each chunk once the coordinator
// acknowledges it. The spool is the only path: while the coordinator is
// unreachable chunks simply stay there (up to --spool-max-bytes, beyond which
// the oldest are evicted, logged and counted) and drain when it returns.
//
// Threads: the loop (an io_context) owns the socket, the in-flight table and
// every deletion in the spool; the capture thread (owned, joined by Stop)
// only writes new chunk files (atomically) and updates metrics, which are
// thread safe.
#ifndef DGC_INGEST_NET_INGEST_H_
#define DGC_INGEST_NET_INGEST_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "common/base/status.h"
#include "common/runtime/process.h"
#include "common/trace/chunk.h"
#include "common/trace/packet.h"
#include "common/wire/zmq_transport.h"

namespace dgc {

struct NetIngestOptions {
  std::vector<std::string> inputs;  // files or directories (read once), or with follow: directories
  bool follow = false;              // keep reading new capture files appearing in the directories
  // With follow: the newest file is complete once unchanged this long (the
  // rule of common/base/directory_follower.h, shared with dgcctl compress).
  double settle_seconds = 2;
  std::string interface;            // live capture instead of inputs
  std::string filter;               // BPF: capture filter (live) or read filter (files)
  int snaplen = 256;
  int buffer_bytes = 268435456;
  std::string spool_dir;
  uint64_t spool_max_bytes = 10737418240ULL;
  std::string coordinator;          // "": chunks stay in the spool
  wire::SecurityOptions security;
  ChunkerOptions chunker;
  uint32_t shard = 0, shard_count = 1;
  int zstd_level = 3;
  uint32_t credits_wanted = 8;      // asked for when the coordinator has granted none
  int64_t ack_timeout_ns = 3'000'000'000;  // no answer this long: coordinator unreachable
};

// The shard of a packet: a stable hash (XXH64, the same on every node) of its
// unidirectional 5-tuple, mod `shard_count`.
uint32_t ShardOf(const PacketRecord& p, uint32_t shard_count);

class NetIngest {
 public:
  NetIngest(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
            NetIngestOptions options);
  ~NetIngest();
  // Opens the source (errors: the capture's, the filter's) and starts the
  // capture thread and the shipper.
  [[nodiscard]] Status Start();
  // Stops the capture (its partial chunk is written to the spool) and keeps
  // shipping for at most `ship_for` (while the coordinator answers); then
  // on_finished runs. Loop thread.
  void Stop(std::chrono::milliseconds ship_for);
  // Called on the loop once a finite input is read and the spool is empty
  // (everything shipped and acknowledged, or no coordinator), or once Stop's
  // time is up: close and exit.
  void set_on_finished(std::function<void()> f) { on_finished_ = std::move(f); }
  std::string Ready() const;
  // Set when the capture ended with an error (the loop then finishes with exit 1).
  Status capture_status() const;

 private:
  struct InFlight {
    std::string path;
    int64_t sent_ns = 0;
  };

  void CaptureLoop();                                   // capture thread
  Status ReadFiles(const std::vector<std::string>& files, Chunker& chunker);  // capture thread
  Status FollowDirs(Chunker& chunker);                  // capture thread
  Status CaptureLive(Chunker& chunker);                 // capture thread
  bool Keep(const PacketRecord& p) const;               // filter and shard
  Status WriteChunk(Chunk&& chunk, bool amend);         // capture thread
  // Makes the pending chunks durable with one FileBatch (pausing while the
  // spool's file system is full) and hands them to the loop. Capture thread.
  Status CommitPending();
  void TakePublished();                  // loop: the chunks the capture made durable join spool_
  void Unspool(const std::string& path);  // loop: a chunk left the spool

  Status Connect();
  void Drain();
  void Pump();  // loop: scan spool, evict, ship, time out
  std::string StreamDir() const;

  boost::asio::io_context& io_;
  wire::ZmqContext& zmq_;
  runtime::ProcessMetrics& metrics_;
  NetIngestOptions options_;
  std::unique_ptr<class PacketFilter> filter_;
  std::thread capture_;
  std::atomic<bool> stop_capture_{false};
  std::atomic<bool> capture_done_{false};
  std::atomic<bool> source_open_{false};
  std::atomic<uint64_t> spool_bytes_{0};
  std::atomic<bool> disk_full_{false};  // a chunk waits for space on the spool's file system
  mutable std::mutex status_mu_;
  Status capture_status_;  // GUARDED_BY(status_mu_)

  // Group commit (capture thread): a cut chunk waits in pending_ until the
  // group is full (kGroupFiles, kGroupBytes), old (kGroupAge, checked as
  // chunks come), its input file ends, or an amendment needs the spooled
  // file; one file-system sync then makes the whole group durable. A live
  // capture commits each chunk. Nothing is offered before it is on disk, so
  // a kill -9 loses only chunks no one was told of (as the chunker's
  // partial one), and a rerun over the same input writes them again.
  struct Pending {
    std::string path;
    std::string bytes;
  };
  std::vector<Pending> pending_;
  uint64_t pending_bytes_ = 0;
  int64_t pending_since_ns_ = 0;
  std::mutex published_mu_;
  std::vector<std::pair<std::string, uint64_t>> published_;  // GUARDED_BY(published_mu_): durable, path and bytes

  // The loop's view of the spool, path -> bytes, oldest window first (the
  // names sort by seq): read from the directory once at Start, then kept by
  // what the capture publishes and what the loop removes, so a Pump costs
  // what it ships, not the size of the spool.
  std::map<std::string, uint64_t> spool_;
  uint64_t spool_total_ = 0;
  std::set<std::string> flying_;  // the paths of in_flight_

  std::unique_ptr<wire::ZmqDealer> dealer_;
  std::unique_ptr<runtime::ZmqWatcher> watch_;
  boost::asio::steady_timer timer_;
  uint32_t credits_ = 0;
  int64_t offer_sent_ns_ = 0;
  int64_t last_heard_ns_ = 0;
  bool connected_ = false;
  std::map<std::string, InFlight> in_flight_;  // "link/shard/seq" -> file
  std::set<std::string> refused_;               // files the coordinator refused (kept, not resent)
  // Refused for now (the library's disk is full): no chunk goes out before
  // this (steady ns); 0 when no pause is on (the refusal is logged once per pause).
  int64_t hold_until_ns_ = 0;
  bool stopped_ = false;
  int64_t stop_deadline_ns_ = 0;  // steady; set by Stop
  bool finished_ = false;
  std::function<void()> on_finished_;

  prometheus::Counter& packets_;
  prometheus::Counter& bytes_;
  prometheus::Counter& drops_kernel_;
  prometheus::Counter& drops_interface_;
  prometheus::Counter& chunks_;
  prometheus::Gauge& last_chunk_ts_;
  prometheus::Gauge& connected_gauge_;
  prometheus::Gauge& spool_gauge_;
  prometheus::Gauge& spool_max_gauge_;
  prometheus::Gauge& disk_full_gauge_;
  prometheus::Counter& evicted_;
};

}  // namespace dgc

#endif  // DGC_INGEST_NET_INGEST_H_

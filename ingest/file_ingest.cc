#include "ingest/file_ingest.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/progress.h"
#include "common/base/time.h"
#include "common/trace/chunk_format.h"
#include "common/trace/merged_reader.h"
#include "spdlog/spdlog.h"

namespace dgc {
namespace {

// A chunk file ready to be written, or the error that replaces it.
struct EncodedChunk {
  std::string path;
  std::string bytes;
  uint64_t size = 0;  // of bytes, kept once they are written and dropped
  bool amend = false;
  Status status;
};

// Writes chunks on threads of its own: encoders (merge an amendment into the
// chunk file already written, then compress), several chunks at a time, and
// one writer, which writes the files in submission order as group commits
// (FileBatch: up to kMaxBatchFiles files or kMaxBatchBytes bytes, and never
// older than kMaxBatchAge, made durable with one file-system sync, then
// renamed into place). A file is visible only once it is on disk, as when
// each was fsynced on its own, at one sync per batch instead of two per
// chunk: a long sparse archive is tens of thousands of small chunks.
// Chunks travel through the threads in groups (up to kGroupPackets packets
// or kGroupChunks chunks, held at most kGroupAge): handing each of tens of
// thousands of tiny chunks from thread to thread cost more than encoding it.
// An amendment is a group of its own.
// Compression, disk waits and the reading loop overlap, while the outcome is
// that of handling each chunk in turn: the same files, in submission order;
// an amendment is merged only once every earlier file is committed (the
// writer commits early for it); the first failure in submission order is the
// one reported, every chunk before it is written and none after it (they are
// dropped, as ingest would never have cut them), except that a failed sync
// loses the whole batch it was for. Memory stays bounded: one group waits to
// be encoded, encoders run at most kMaxAhead groups ahead of the writer, and
// a written chunk's bytes are dropped at once. Owned by the reading loop's
// thread; Finish() (or the destructor) completes the submitted work and
// joins every thread. `committed` runs on the writer thread for each chunk
// once it is durable, in order.
class ChunkPipeline {
 public:
  using Encode = std::function<EncodedChunk(Chunk&& chunk, bool amend)>;
  using Committed = std::function<void(const EncodedChunk& chunk)>;

  ChunkPipeline(Encode encode, Committed committed, int encoders)
      : encode_(std::move(encode)),
        committed_(std::move(committed)),
        num_encoders_(static_cast<size_t>(std::max(encoders, 1))) {
    for (size_t i = 0; i < num_encoders_; ++i) encoders_.emplace_back([this] { EncodeLoop(); });
    writer_ = std::thread([this] { WriteLoop(); });
  }
  ~ChunkPipeline() { (void)Finish(); }
  ChunkPipeline(const ChunkPipeline&) = delete;
  ChunkPipeline& operator=(const ChunkPipeline&) = delete;

  // Adds a chunk to the group being gathered, and queues the group when it
  // is full; blocks while a group is already waiting. The first error of an
  // earlier chunk, if any.
  [[nodiscard]] Status Submit(Chunk&& chunk, bool amend) {
    if (amend) {
      DGC_RETURN_IF_ERROR(QueueGroup());
      group_.push_back(std::move(chunk));
      return QueueGroup(/*amend=*/true);
    }
    const auto now = std::chrono::steady_clock::now();
    if (group_.empty()) group_started_ = now;
    group_packets_ += chunk.packets.size();
    group_.push_back(std::move(chunk));
    if (group_packets_ >= kGroupPackets || group_.size() >= kGroupChunks || now - group_started_ >= kGroupAge) {
      return QueueGroup();
    }
    return absl::OkStatus();
  }

  // Queues the group being gathered when it is older than kGroupAge, so that a
  // slow input (a pipe) does not hold chunks back. Cheap; call it often.
  [[nodiscard]] Status Tick() {
    if (group_.empty() || std::chrono::steady_clock::now() - group_started_ < kGroupAge) return absl::OkStatus();
    return QueueGroup();
  }

  // Waits until every submitted chunk is written; the first error, if any.
  [[nodiscard]] Status Finish() {
    Status queued = QueueGroup();
    (void)queued;  // an error is error_, returned below
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      changed_.notify_all();
    }
    for (auto& t : encoders_) {
      if (t.joinable()) t.join();
    }
    if (writer_.joinable()) writer_.join();
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  static constexpr uint64_t kMaxAhead = 4;  // groups
  static constexpr size_t kGroupPackets = 16384;
  static constexpr size_t kGroupChunks = 256;
  static constexpr std::chrono::milliseconds kGroupAge{200};
  static constexpr size_t kMaxBatchFiles = 1024;
  static constexpr uint64_t kMaxBatchBytes = 64ull << 20;
  static constexpr std::chrono::milliseconds kMaxBatchAge{1000};

  struct Job {
    uint64_t seq;
    std::vector<Chunk> chunks;
    bool amend;
  };

  // Queues the gathered group (if any) for the encoders.
  Status QueueGroup(bool amend = false) {
    if (group_.empty()) return absl::OkStatus();
    std::vector<Chunk> chunks = std::move(group_);
    group_.clear();
    group_packets_ = 0;
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return to_encode_.empty() || !error_.ok(); });
    if (!error_.ok()) return error_;
    to_encode_.push_back(Job{next_seq_++, std::move(chunks), amend});
    changed_.notify_all();
    return absl::OkStatus();
  }

  void EncodeLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      changed_.wait(lock, [&] {
        if (to_encode_.empty()) return closing_;
        return !error_.ok() || to_encode_.front().seq < next_write_ + kMaxAhead;
      });
      if (to_encode_.empty()) break;  // closing, all taken
      if (!error_.ok()) {  // drop what follows a failure
        to_encode_.pop_front();
        changed_.notify_all();
        continue;
      }
      Job job = std::move(to_encode_.front());
      to_encode_.pop_front();
      changed_.notify_all();
      if (job.amend) {  // it reads the chunk file: every earlier write must be committed
        ++amends_waiting_;
        changed_.notify_all();
        changed_.wait(lock, [&] { return next_committed_ >= job.seq || !error_.ok(); });
        --amends_waiting_;
      }
      std::vector<EncodedChunk> encoded;
      if (error_.ok()) {
        lock.unlock();
        encoded.reserve(job.chunks.size());
        for (Chunk& c : job.chunks) {
          encoded.push_back(encode_(std::move(c), job.amend));
          if (!encoded.back().status.ok()) break;  // what follows it is dropped
        }
        lock.lock();
      }
      done_.emplace(job.seq, std::move(encoded));  // an encoding error is reported in order
      changed_.notify_all();
    }
    if (++encoders_done_ == num_encoders_) changed_.notify_all();
  }

  void WriteLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    FileBatch batch;
    std::vector<EncodedChunk> staged;  // in `batch`, without their bytes
    std::chrono::steady_clock::time_point deadline;  // of the batch, while one is staged
    // Commits the batch (the lock released meanwhile); a failure becomes the
    // pipeline's error unless an earlier one is.
    auto commit = [&] {
      lock.unlock();
      Status st = batch.Commit();
      if (st.ok()) {
        for (const EncodedChunk& c : staged) committed_(c);
      }
      lock.lock();
      staged.clear();
      if (!st.ok() && error_.ok()) error_ = st;
      next_committed_ = next_write_;
      changed_.notify_all();
    };
    auto ready = [&] {
      return done_.count(next_write_) > 0 || encoders_done_ == num_encoders_ ||
             (amends_waiting_ > 0 && !staged.empty());
    };
    while (true) {
      if (staged.empty()) {
        changed_.wait(lock, ready);
      } else if (!changed_.wait_until(lock, deadline, ready)) {  // the batch is old enough
        commit();
        continue;
      }
      auto it = done_.find(next_write_);
      if (it == done_.end()) {
        commit();  // for an amendment waiting on it, or the last batch
        if (encoders_done_ == num_encoders_ && done_.count(next_write_) == 0) return;
        continue;
      }
      std::vector<EncodedChunk> group = std::move(it->second);
      done_.erase(it);
      for (EncodedChunk& job : group) {
        if (!error_.ok()) break;  // dropped: a failure came first
        lock.unlock();
        Status st = job.status.ok() ? batch.Add(job.path, job.bytes) : job.status;
        lock.lock();
        if (!st.ok()) {
          commit();  // the chunks before it land
          if (error_.ok()) error_ = st;
          break;
        }
        job.size = job.bytes.size();
        std::string().swap(job.bytes);
        staged.push_back(std::move(job));
        if (staged.size() == 1) deadline = std::chrono::steady_clock::now() + kMaxBatchAge;
        if (batch.files() >= kMaxBatchFiles || batch.bytes() >= kMaxBatchBytes) commit();
      }
      // Only now is the whole group in the batch: a commit inside the loop
      // above must not tell a waiting amendment that this group is on disk.
      ++next_write_;
      changed_.notify_all();  // encoders may run further ahead
    }
  }

  const Encode encode_;
  const Committed committed_;
  const size_t num_encoders_;
  std::mutex mu_;
  std::condition_variable changed_;          // any change below; waiters recheck
  std::deque<Job> to_encode_;                // GUARDED_BY(mu_); at most one waits
  std::map<uint64_t, std::vector<EncodedChunk>> done_;  // GUARDED_BY(mu_); encoded groups, by sequence
  uint64_t next_seq_ = 0;                    // GUARDED_BY(mu_)
  uint64_t next_write_ = 0;                  // GUARDED_BY(mu_); all before it are written or dropped
  uint64_t next_committed_ = 0;              // GUARDED_BY(mu_); all before it are committed
  int amends_waiting_ = 0;                   // GUARDED_BY(mu_); encoders waiting for a commit
  size_t encoders_done_ = 0;                 // GUARDED_BY(mu_)
  bool closing_ = false;                     // GUARDED_BY(mu_)
  Status error_;                             // GUARDED_BY(mu_)
  std::vector<std::thread> encoders_;
  std::thread writer_;
  // The reading loop's thread alone: the group being gathered.
  std::vector<Chunk> group_;
  size_t group_packets_ = 0;
  std::chrono::steady_clock::time_point group_started_;
};

}  // namespace

StatusOr<FileIngestSummary> RunFileIngest(const FileIngestOptions& opt) {
  if (opt.spool_dir.empty()) return absl::InvalidArgumentError("no spool directory given (--out)");
  if (opt.chunker.chunk_ns <= 0) return absl::InvalidArgumentError("chunk length must be positive");
  auto t0 = std::chrono::steady_clock::now();
  FileIngestSummary sum;
  DGC_ASSIGN_OR_RETURN(sum.files, ExpandInputs(opt.inputs));
  DGC_ASSIGN_OR_RETURN(auto reader, MergedReader::Open(sum.files));
  sum.input_bytes = reader->raw_size();
  sum.link_dir = (std::filesystem::path(opt.spool_dir) / opt.chunker.link).string();
  DGC_RETURN_IF_ERROR(MakeDirs(sum.link_dir));
  DGC_ASSIGN_OR_RETURN(auto stale, RemoveStaleTempFiles(sum.link_dir));
  for (const auto& f : stale) spdlog::warn("removed {}: a partial spool file a killed run left", f);

  // `encode` runs on the pipeline's encoder threads, several at once.
  auto encode = [&](Chunk&& chunk, bool amend) -> EncodedChunk {
    EncodedChunk out;
    out.amend = amend;
    out.path = (std::filesystem::path(sum.link_dir) / ChunkFileName(chunk)).string();
    if (amend) {
      auto old = ReadChunkFile(out.path);
      if (old.ok()) {
        chunk.raw_bytes += old->raw_bytes;
        chunk.packets.insert(chunk.packets.end(), old->packets.begin(), old->packets.end());
        std::stable_sort(chunk.packets.begin(), chunk.packets.end(),
                         [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
      } else if (!absl::IsNotFound(old.status())) {
        out.status = old.status();
        return out;
      }
    }
    out.bytes = EncodeChunk(chunk, opt.zstd_level);
    return out;
  };
  // `committed` runs on the pipeline's writer thread, which alone touches
  // sum.chunks, sum.amended_chunks and sum.spool_bytes until Finish().
  auto committed = [&sum](const EncodedChunk& c) {
    ++(c.amend ? sum.amended_chunks : sum.chunks);
    sum.spool_bytes += c.size;
  };
  // Two encoders keep up with the reading loop (zstd costs about as much as
  // reading and parsing); more would only wait.
  int encoders = std::thread::hardware_concurrency() >= 2 ? 2 : 1;
  ChunkPipeline pipeline(encode, committed, encoders);
  Chunker chunker(opt.chunker, [&pipeline](Chunk&& chunk, bool amend) {
    return pipeline.Submit(std::move(chunk), amend);
  });
  ProgressBar bar("ingest", reader->raw_size(), opt.progress && ProgressBar::DefaultEnabled());
  PacketRecord p;
  uint32_t record_bytes = 0;
  uint64_t n = 0;
  bool first = true;
  while (reader->Next(&p, &record_bytes)) {
    if (first) {
      sum.first_ts_ns = sum.last_ts_ns = p.ts_ns;
      first = false;
    }
    sum.first_ts_ns = std::min(sum.first_ts_ns, p.ts_ns);
    sum.last_ts_ns = std::max(sum.last_ts_ns, p.ts_ns);
    (p.version == 6 ? sum.ipv6 : sum.ipv4)++;
    DGC_RETURN_IF_ERROR(chunker.Add(p, record_bytes));
    if ((++n & 0xfff) == 0) DGC_RETURN_IF_ERROR(pipeline.Tick());
    if ((n & 0xffff) == 0) {
      bar.Update(reader->raw_position(), absl::StrFormat("%d packets", n));
    }
  }
  DGC_RETURN_IF_ERROR(chunker.Flush());
  DGC_RETURN_IF_ERROR(pipeline.Finish());
  bar.Finish();
  sum.read = reader->stats();
  sum.late_packets = chunker.late_packets();
  sum.flows = chunker.flows();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

nlohmann::json FileIngestSummary::ToJson() const {
  nlohmann::json j;
  j["files"] = files;
  j["input_bytes"] = input_bytes;
  j["frames"] = read.frames;
  j["ip_packets"] = read.ip_packets;
  j["ipv4_packets"] = ipv4;
  j["ipv6_packets"] = ipv6;
  j["non_ip_frames"] = read.non_ip + read.unsupported_link;
  j["errors"] = read.errors();
  j["malformed_frames"] = read.malformed;
  j["corrupt_records"] = read.corrupt_records;
  j["truncated"] = read.truncated;
  j["chunks"] = chunks;
  j["amended_chunks"] = amended_chunks;
  j["late_packets"] = late_packets;
  j["flows"] = flows;
  j["spool_dir"] = link_dir;
  j["spool_bytes"] = spool_bytes;
  j["first_packet"] = read.ip_packets ? FormatRfc3339(first_ts_ns) : "";
  j["last_packet"] = read.ip_packets ? FormatRfc3339(last_ts_ns) : "";
  j["seconds"] = seconds;
  j["warnings"] = read.warnings;
  return j;
}

std::string FileIngestSummary::ToTable() const {
  std::string s;
  auto row = [&](const char* k, const std::string& v) { s += absl::StrFormat("%-10s %s\n", k, v); };
  row("inputs", absl::StrFormat("%d file(s), %.1f MB", files.size(), input_bytes / 1e6));
  row("frames", absl::StrFormat("%d read: %d IP (%d IPv4, %d IPv6), %d non-IP, %d errors",
                                read.frames, read.ip_packets, ipv4, ipv6,
                                read.non_ip + read.unsupported_link, read.errors()));
  if (read.ip_packets) {
    row("time", absl::StrFormat("%s .. %s (%.1f s)", FormatRfc3339(first_ts_ns),
                                FormatRfc3339(last_ts_ns), (last_ts_ns - first_ts_ns) / 1e9));
  }
  row("chunks", absl::StrFormat("%d written to %s (%.1f MB)%s", chunks, link_dir, spool_bytes / 1e6,
                                amended_chunks ? absl::StrFormat(", %d amended for %d late packets",
                                                                 amended_chunks, late_packets)
                                               : std::string()));
  row("flows", absl::StrFormat("%d", flows));
  row("took", absl::StrFormat("%.2f s (%.0f packets/s)", seconds,
                              seconds > 0 ? read.frames / seconds : 0.0));
  return s;
}

}  // namespace dgc

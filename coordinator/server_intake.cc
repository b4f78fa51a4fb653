// Chunk intake: an ingest's chunk is validated, written beside the library and
// made a job (a retrain job first for a stream without a base, which waits
// for the stream's first chunks) before it is acknowledged; credits pace the
// ingest.
#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/model/artifact.h"
#include "common/trace/chunk_format.h"
#include "common/trace/flow.h"
#include "coordinator/server_internal.h"
#include "spdlog/spdlog.h"

namespace dgc {

void Coordinator::OnChunk(const std::string& peer, wire::ChunkData& data) {
  const wire::ChunkMeta& m = data.meta;
  wire::ChunkAck ack;
  ack.link = m.link;
  ack.shard = m.shard;
  ack.seq = m.seq;
  auto refuse = [&](const std::string& reason) {
    process_metrics_.Reject("malformed");
    spdlog::warn("chunk {}/{}/{} refused: {}", m.link, m.shard, m.seq, reason);
    ack.accepted = false;
    ack.reason = reason;
    Send(peer, ack);
  };
  if (Status st = library::ValidateId("link", m.link); !st.ok()) return refuse(std::string(st.message()));
  if (m.link.find('#') != std::string::npos) return refuse("link names may not hold '#'");
  if (m.duration_ns <= 0 || m.start_ns % m.duration_ns != 0 || m.seq != m.start_ns / m.duration_ns ||
      m.shard_count == 0 || m.shard >= m.shard_count) {
    return refuse("inconsistent chunk metadata (start, duration, seq, shard)");
  }
  if (data.payload.empty()) return refuse("empty chunk payload");
  const std::string key = StreamKey(m.link, m.shard);
  shard_counts_[key] = m.shard_count;
  if (!m.amend) {
    std::string path = RawPath(m);
    Status st = MakeDirs(std::filesystem::path(path).parent_path().string());
    if (st.ok()) st = WriteFileAtomic(path, data.payload);
    if (!st.ok()) {
      ack.accepted = false;
      ack.reason = absl::StrCat("cannot store the chunk: ", st.message());
      if (absl::IsResourceExhausted(st)) {
        // A full disk is for now: the ingest keeps the chunk and sends it
        // again; nothing is acknowledged before it is on disk here.
        ack.retry_after_ms = 1000;
        if (!library_full_.exchange(true)) {
          metrics_->library_disk_full.Set(1);
          spdlog::error("{}: chunk intake paused until the library's file system has space again (ingests keep "
                        "their chunks and send them again every second)",
                        ack.reason);
        }
      } else {
        spdlog::error("{}", ack.reason);
      }
      Send(peer, ack);
      return;
    }
    if (library_full_.exchange(false)) {
      metrics_->library_disk_full.Set(0);
      spdlog::info("chunk {}/{}/{} stored: the library has space again, chunk intake resumed", m.link, m.shard,
                   m.seq);
    }
    // A stream without a base trains one from its first chunk (a retrain job
    // runs before the compress job of the same chunk); dgcctl retrain asks
    // for one at the next chunk.
    bool need_base = base_model_id_.empty() && !streams_with_base_.count(key);
    if (need_base) {
      auto latest = library_->LatestChunk(LibraryLink(m.link, m.shard, m.shard_count));
      if (latest.ok()) {
        streams_with_base_.insert(key);
        need_base = false;
      }
    }
    if (need_base || retrain_requested_.count(key)) {
      JobSpec rs{JobKind::kRetrain, m.link, m.shard, m.seq, m.start_ns, m.packets, path};
      // A link's first base trains on its first chunks, as dgcctl compress
      // streaming does: it waits for --first-base-chunks chunks, or
      // --warmup-flows flows, or the time that many chunks take to come.
      if (need_base && options_.first_base_chunks > 1) {
        rs.not_before_ns = clock_->NowNs() + int64_t(options_.first_base_chunks) * m.duration_ns;
      }
      auto r = scheduler_->Submit(rs);
      if (!r.ok()) {
        ExitIfLibraryFull(r.status(), "cannot store the job");
        ack.accepted = false;
        ack.reason = absl::StrCat("cannot store the job: ", r.status().message());
        Send(peer, ack);
        return;
      }
      if (rs.not_before_ns) first_bases_[key] = FirstBase{r->job, 0, 0};
      streams_with_base_.insert(key);
      retrain_requested_.erase(key);
    }
    CountForFirstBase(key, data.payload);
    JobSpec spec{JobKind::kCompress, m.link, m.shard, m.seq, m.start_ns, m.packets, path};
    auto r = scheduler_->Submit(spec);
    if (!r.ok()) {
      ExitIfLibraryFull(r.status(), "cannot store the job");
      ack.accepted = false;
      ack.reason = absl::StrCat("cannot store the job: ", r.status().message());
      spdlog::error("{}", ack.reason);
      Send(peer, ack);
      return;
    }
    if (!r->created) {
      if (r->done) {
        std::error_code ec;
        std::filesystem::remove(path, ec);  // a resend of a committed chunk: its raw file went already
      }
      // Job 0: committed long ago, no longer held in memory (Scheduler, Memory).
      spdlog::debug("chunk {}/{}/{} again: job {} already exists{}", m.link, m.shard, m.seq, r->job,
                    r->done ? " (committed)" : "");
    } else {
      spdlog::debug("chunk {}/{}/{}: job {} ({} packets)", m.link, m.shard, m.seq, r->job, m.packets);
    }
  } else {
    spdlog::info("late packets for chunk {}/{}/{} ({}): counted, not modelled", m.link, m.shard, m.seq, m.packets);
  }
  ack.accepted = true;
  Send(peer, ack);
  wire::Credit c;
  c.credits = scheduler_->counts()[JobState::kQueued] < options_.max_queued_jobs ? options_.ingest_credits : 0;
  Send(peer, c);
  ScheduleAndSend();
}

void Coordinator::CountForFirstBase(const std::string& key, const std::string& payload) {
  auto fb = first_bases_.find(key);
  if (fb == first_bases_.end()) return;
  const JobRecord* r = scheduler_->FindJob(fb->second.job);
  if (!r || r->state != JobState::kQueued || r->not_before_ns == 0) {
    first_bases_.erase(fb);  // it ran (its time came) or went
    return;
  }
  auto chunk = DecodeChunk(payload, "chunk");
  fb->second.chunks++;
  if (chunk.ok()) fb->second.flows += coordinator_internal::FingerprintOfChunk(*chunk).flows;
  if (fb->second.chunks >= options_.first_base_chunks ||
      fb->second.flows >= options_.job_options.value("warmup_flows", uint64_t{20000})) {
    spdlog::info("stream {}: first base (job {}) on its first {} chunk(s), {} flows", key, fb->second.job,
                 fb->second.chunks, fb->second.flows);
    if (Status st = scheduler_->MakeReady(fb->second.job); !st.ok()) {
      spdlog::error("job {}: {}", fb->second.job, std::string(st.message()));
    }
    first_bases_.erase(fb);
  }
}

}  // namespace dgc

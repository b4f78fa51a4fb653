// Regeneration on the workers: the coordinator's side of `dgcctl generate
// --coordinator` (server.h, GenerateSession; deploy/PROCESSES.md, "generate
// on the cluster").
//
// dgcctl asks `generate start` with the range; the coordinator lists the
// chunks as the embedded generate does (range, link and its shards, time
// order, damaged records named or skipped), cuts them into segments, and
// answers with the chunks and segments. Segments go to workers with a free
// slot as kGenerate jobs; dgcctl then asks `generate fetch` for each segment
// in order and merges the packets itself (stitching, --key, the range, the
// filter, the pcap), so the output is byte-identical to the embedded path's.
#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/time.h"
#include "coordinator/server_internal.h"
#include "library/model_library.h"
#include "spdlog/spdlog.h"

namespace dgc {

using coordinator_internal::Error;
using coordinator_internal::Ok;
using coordinator_internal::SteadyNs;

namespace {
// A segment is a run of chunks with one model and tokenizer, at most this
// many flows (a busy chunk is a segment alone) and chunks: a few seconds of
// a worker's time, so a range spreads over the pool.
constexpr uint64_t kSegmentFlows = 4096;
constexpr size_t kSegmentChunks = 256;
// A session no request came for this long is dropped (dgcctl died).
constexpr int64_t kSessionIdleNs = 120 * coordinator_internal::kNsPerSec;
}  // namespace

wire::OperatorReply Coordinator::OnGenerate(const wire::OperatorRequest& req, const nlohmann::json& args) {
  if (req.noun == "start") return StartGeneration(args);
  uint64_t id = 0;
  if (!absl::SimpleAtoi(req.name, &id)) return Error(absl::StrCat("generate ", req.noun, ": '", req.name, "' is not a session"));
  auto it = generations_.find(id);
  if (it == generations_.end()) {
    return Error(absl::StrCat("generation ", id,
                              " is not running here (the coordinator restarted, or it was idle for over ",
                              kSessionIdleNs / coordinator_internal::kNsPerSec, " s): run generate again"));
  }
  GenerateSession& s = it->second;
  s.last_seen_ns = SteadyNs();
  if (req.noun == "stop") {
    for (auto j = generate_jobs_.begin(); j != generate_jobs_.end();) {
      j = j->second.first == id ? generate_jobs_.erase(j) : std::next(j);
    }
    generations_.erase(it);
    return Ok({{"session", id}, {"stopped", true}});
  }
  if (req.noun != "fetch") return Error(absl::StrCat("generate: unknown noun ", req.noun, " (start, fetch, stop)"));
  const size_t k = args.value("segment", size_t{0});
  if (k != s.next_fetch) {
    return Error(absl::StrCat("generation ", id, ": segment ", k, " asked for, ", s.next_fetch,
                              " is next (segments are fetched in order)"));
  }
  if (k >= s.segments.size()) return Error(absl::StrCat("generation ", id, " has ", s.segments.size(), " segments"));
  GenerateSegment& seg = s.segments[k];
  using St = GenerateSegment::State;
  switch (seg.state) {
    case St::kQueued:
    case St::kRunning: {
      size_t workers = 0;
      for (const auto& w : scheduler_->Workers()) workers += !w.draining;
      return Ok({{"state", seg.state == St::kQueued ? "queued" : "running"},
                 {"worker", seg.worker},
                 {"attempts", seg.attempts},
                 {"workers", workers}});
    }
    case St::kDone: {
      wire::OperatorReply r = Ok({{"state", "done"}, {"worker", seg.worker}, {"bytes", seg.packets.size()}});
      r.data = std::move(seg.packets);
      std::string().swap(seg.packets);
      seg.state = St::kFetched;
      ++s.next_fetch;
      AssignGenerateSegments();
      return r;
    }
    case St::kFailed: {
      ++s.next_fetch;
      seg.state = St::kFetched;
      AssignGenerateSegments();
      return Ok({{"state", "failed"}, {"error", seg.error}, {"damaged", seg.damaged}});
    }
    case St::kFetched: break;
  }
  return Error("segment already fetched");
}

wire::OperatorReply Coordinator::StartGeneration(const nlohmann::json& args) {
  ChunkQuery range;
  const std::string link = args.value("link", "");
  range.since_ns = args.value("since_ns", range.since_ns);
  range.until_ns = args.value("until_ns", range.until_ns);
  const uint64_t seed = args.value("seed", uint64_t{1});
  const double min_p = args.value("min_p", 0.0);
  // Absent (an older dgcctl): every exact flow sampled, as it did then.
  const int32_t exact_templates = std::clamp<int32_t>(args.value("exact_templates", 0), 0, 1000000);
  const bool skip_damaged = args.value("skip_damaged", false);
  std::vector<RocksDbModelLibrary::DamagedRecord> damaged;
  auto records = library_->ListChunks(range, skip_damaged ? &damaged : nullptr);
  if (!records.ok()) {
    if (absl::IsDataLoss(records.status())) {
      return Error(absl::StrCat(records.status().message(), "; --skip-damaged leaves its window empty"));
    }
    return Error(std::string(records.status().message()));
  }
  std::vector<library::ChunkRecord*> kept;
  for (auto& r : *records) {
    if (IsLinkOrShard(r.link, link)) kept.push_back(&r);
  }
  std::stable_sort(kept.begin(), kept.end(), [](const auto* a, const auto* b) { return a->start_ns < b->start_ns; });
  if (kept.empty()) return Error("no chunk of the library overlaps the range");
  const uint64_t id = next_generation_++;
  GenerateSession s;
  s.last_seen_ns = SteadyNs();
  nlohmann::json chunks = nlohmann::json::array(), sizes = nlohmann::json::array();
  std::vector<nlohmann::json> tokenizers;
  for (const auto* r : kept) {
    auto report = nlohmann::json::parse(r->report_json, nullptr, /*allow_exceptions=*/false);
    if (report.is_discarded() || !report.is_object()) report = nlohmann::json::object();
    chunks.push_back({{"link", r->link},
                      {"start_ns", r->start_ns},
                      {"duration_ns", r->duration_ns},
                      {"pseudonymized", report.value("pseudonymized", "")}});
    tokenizers.push_back(report.value("tokenizer", nlohmann::json()));
  }
  for (size_t i = 0; i < kept.size();) {
    GenerateSegment seg;
    seg.model_id = kept[i]->model_id;
    seg.options.tokenizer = tokenizers[i];
    seg.options.min_p = min_p;
    seg.options.exact_templates = exact_templates;
    uint64_t flows = 0;
    size_t j = i;
    while (j < kept.size() && (j == i || (j - i < kSegmentChunks && kept[j]->model_id == seg.model_id &&
                                          tokenizers[j] == tokenizers[i] && flows + kept[j]->flows <= kSegmentFlows))) {
      const auto* r = kept[j];
      flows += r->flows;
      seg.chunks.push_back(j);
      seg.skeletons.push_back(r->skeleton);
      seg.options.chunks.push_back({r->link, r->start_ns, r->duration_ns, seed ^ static_cast<uint64_t>(r->start_ns / r->duration_ns)});
      ++j;
    }
    sizes.push_back(seg.chunks.size());
    s.segments.push_back(std::move(seg));
    i = j;
  }
  nlohmann::json damaged_json = nlohmann::json::array();
  for (const auto& d : damaged) damaged_json.push_back({{"name", d.name}, {"error", d.error}});
  spdlog::info("generation {}: {} chunk(s) in {} segment(s){}", id, kept.size(), s.segments.size(),
               link.empty() ? "" : absl::StrCat(" of ", link));
  generations_.emplace(id, std::move(s));
  AssignGenerateSegments();
  return Ok({{"session", id}, {"chunks", chunks}, {"segments", sizes}, {"damaged", damaged_json}});
}

void Coordinator::AssignGenerateSegments() {
  if (generations_.empty() || stopped_) return;
  // Free slots: the scheduler's view less the segments running on each.
  std::map<std::string, int64_t> free;
  int64_t slots = 0;
  const int64_t now = clock_->NowNs();
  for (const auto& w : scheduler_->Workers()) {
    slots += w.slots;
    // A worker that missed its last heartbeats may be dead: no segment goes
    // to it until it is heard from again (its own are requeued after a lease).
    if (w.draining || !workers_.count(w.id) || now - w.last_heartbeat_ns > 3 * options_.heartbeat_ns) continue;
    free[w.id] = int64_t{w.slots} - int64_t{w.used_slots};
  }
  for (const auto& [job, where] : generate_jobs_) {
    const GenerateSegment& seg = generations_.at(where.first).segments[where.second];
    if (auto f = free.find(seg.worker); f != free.end()) --f->second;
  }
  // Segments past the next one fetched that may run or wait fetched.
  const size_t window = static_cast<size_t>(std::max<int64_t>(4, 2 * slots));
  for (auto& [id, s] : generations_) {
    const size_t end = std::min(s.segments.size(), s.next_fetch + window);
    for (size_t k = s.next_fetch; k < end; ++k) {
      GenerateSegment& seg = s.segments[k];
      if (seg.state != GenerateSegment::State::kQueued) continue;
      auto best = std::max_element(free.begin(), free.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
      if (best == free.end() || best->second <= 0) return;
      WorkerPeer& w = workers_.at(best->first);
      wire::JobAssign ja;
      ja.job_id = kGenerateJobBit | next_generate_job_++;
      ja.attempt = ++seg.attempts;
      ja.kind = wire::JobKind::kGenerate;
      const wire::SegmentChunk& first = seg.options.chunks.front();
      ja.meta.link = first.link;
      ja.meta.start_ns = first.start_ns;
      ja.meta.duration_ns = first.duration_ns;
      ja.meta.seq = first.start_ns / first.duration_ns;
      if (seg.attempts == 1 && w.Holds(seg.model_id)) {
        ja.parent = wire::JobAssign::Parent::kId;  // a miss fails retryably; the next attempt sends the bytes
        ja.parent_id = seg.model_id;
      } else {
        auto bundle = ParentBundleBytes(seg.model_id);
        if (!bundle.ok()) {
          seg.state = GenerateSegment::State::kFailed;
          seg.damaged = absl::IsDataLoss(bundle.status());
          seg.error = absl::StrCat("its model ", seg.model_id, ": ", bundle.status().message());
          spdlog::warn("generation {} segment {}: {}", id, k, seg.error);
          continue;
        }
        ja.parent = wire::JobAssign::Parent::kBytes;
        ja.parent_bytes = *std::move(bundle);
      }
      ja.train_chunks = seg.skeletons;
      ja.options_json = wire::EncodeSegmentOptions(seg.options);
      ja.slots = 1;
      if (Status st = router_->Send(w.peer, ja); !st.ok()) {
        spdlog::warn("generation {} segment {}: cannot reach worker {}: {}", id, k, best->first,
                     std::string(st.message()));
        --seg.attempts;
        free.erase(best);
        continue;
      }
      w.Remember(seg.model_id);
      seg.state = GenerateSegment::State::kRunning;
      seg.job_id = ja.job_id;
      seg.worker = best->first;
      seg.seen_ns = SteadyNs();
      generate_jobs_[ja.job_id] = {id, k};
      --best->second;
      spdlog::debug("generation {} segment {} ({} chunks) -> {} (job {}, attempt {})", id, k, seg.chunks.size(),
                    seg.worker, ja.job_id & ~kGenerateJobBit, ja.attempt);
    }
  }
}

void Coordinator::OnGenerateResult(const std::string& peer, wire::JobResult& res) {
  wire::JobAck ack;
  ack.job_id = res.job_id;
  auto it = generate_jobs_.find(res.job_id);
  if (it == generate_jobs_.end()) {
    ack.duplicate = true;  // its session ended, or the segment was requeued and ran elsewhere
    Send(peer, ack);
    return;
  }
  GenerateSegment& seg = generations_.at(it->second.first).segments[it->second.second];
  generate_jobs_.erase(it);
  seg.packets = std::move(res.artifact);
  seg.state = GenerateSegment::State::kDone;
  Send(peer, ack);
  AssignGenerateSegments();
}

void Coordinator::OnGenerateFailed(const std::string& peer, const wire::JobFailed& f) {
  wire::JobAck ack;
  ack.job_id = f.job_id;
  Send(peer, ack);
  auto it = generate_jobs_.find(f.job_id);
  if (it == generate_jobs_.end()) return;
  GenerateSegment& seg = generations_.at(it->second.first).segments[it->second.second];
  spdlog::warn("generation {} segment {} failed on {} (attempt {}): {}", it->second.first, it->second.second,
               f.worker_id, seg.attempts, f.reason);
  RetryOrFail(seg, f.reason, f.retryable);
  AssignGenerateSegments();
}

void Coordinator::RetryOrFail(GenerateSegment& seg, const std::string& reason, bool retryable) {
  generate_jobs_.erase(seg.job_id);
  seg.job_id = 0;
  if (retryable && seg.attempts < options_.max_attempts) {
    seg.state = GenerateSegment::State::kQueued;
    return;
  }
  seg.state = GenerateSegment::State::kFailed;
  seg.error = absl::StrCat(reason, " (after ", seg.attempts, " attempt(s))");
}

void Coordinator::NoteGenerateHeartbeat(const wire::Heartbeat& hb) {
  const int64_t now = SteadyNs();
  for (uint64_t j : hb.active_jobs) {
    if (!(j & kGenerateJobBit)) continue;
    auto it = generate_jobs_.find(j);
    if (it == generate_jobs_.end()) continue;
    GenerateSegment& seg = generations_.at(it->second.first).segments[it->second.second];
    if (seg.worker == hb.worker_id) seg.seen_ns = now;
  }
}

void Coordinator::RequeueGenerateSegments(const std::string& worker) {
  const int64_t now = SteadyNs();
  std::vector<std::pair<uint64_t, size_t>> lost;
  for (const auto& [job, where] : generate_jobs_) {
    const GenerateSegment& seg = generations_.at(where.first).segments[where.second];
    if (worker.empty() ? now - seg.seen_ns > options_.lease_ns : seg.worker == worker) lost.push_back(where);
  }
  for (const auto& [id, k] : lost) {
    GenerateSegment& seg = generations_.at(id).segments[k];
    spdlog::warn("generation {} segment {}: worker {} {}: requeued", id, k, seg.worker,
                 worker.empty() ? "stopped listing it" : "is gone");
    RetryOrFail(seg, absl::StrCat("worker ", seg.worker, " lost"), /*retryable=*/true);
  }
  // Sessions dgcctl stopped asking for.
  for (auto it = generations_.begin(); it != generations_.end();) {
    if (now - it->second.last_seen_ns <= kSessionIdleNs) {
      ++it;
      continue;
    }
    spdlog::warn("generation {}: no request for {} s: dropped", it->first, kSessionIdleNs / coordinator_internal::kNsPerSec);
    for (auto j = generate_jobs_.begin(); j != generate_jobs_.end();) {
      j = j->second.first == it->first ? generate_jobs_.erase(j) : std::next(j);
    }
    it = generations_.erase(it);
  }
  if (!lost.empty()) AssignGenerateSegments();
}

}  // namespace dgc

#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/time.h"

namespace dgc {
namespace {

std::string StreamKey(const std::string& link, uint32_t shard) {
  std::string key = link;
  key.push_back('\0');
  absl::StrAppend(&key, shard);
  return key;
}

// (link, shard) of a StreamKey.
std::pair<std::string, uint32_t> SplitStreamKey(const std::string& key) {
  const size_t nul = key.rfind('\0');
  uint32_t shard = 0;
  if (nul == std::string::npos || !absl::SimpleAtoi(absl::string_view(key).substr(nul + 1), &shard)) return {key, 0};
  return {key.substr(0, nul), shard};
}

}  // namespace

Scheduler::Scheduler(const SchedulerOptions& options, JobStore* store, const Clock* clock)
    : options_(options), store_(store), clock_(clock) {}

StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options, JobStore* store,
                                                       const Clock* clock) {
  DGC_ASSIGN_OR_RETURN(std::vector<JobRecord> records, store->List());
  return Create(options, store, clock, std::move(records));
}

StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerOptions& options, JobStore* store,
                                                       const Clock* clock, std::vector<JobRecord> records) {
  if (options.max_failures == 0) return absl::InvalidArgumentError("max_failures must be at least 1");
  if (options.lease_ns <= 0) return absl::InvalidArgumentError("lease_ns must be positive");
  if (options.cpu_threads_per_slot == 0) return absl::InvalidArgumentError("cpu_threads_per_slot must be positive");
  std::unique_ptr<Scheduler> s(new Scheduler(options, store, clock));
  DGC_RETURN_IF_ERROR(s->Load(std::move(records)));
  return s;
}

Status Scheduler::Load(std::vector<JobRecord> records) {
  const int64_t now = clock_->NowNs();
  // What expired records committed: the runs their evicted jobs joined (the
  // records below add their own), and ids never to hand out again.
  DGC_ASSIGN_OR_RETURN(JobHistory history, store_->GetHistory());
  next_id_ = std::max(next_id_, history.next_id);
  for (auto& [stream, runs] : history.streams) {
    Stream& s = streams_[StreamKey(stream.first, stream.second)];
    s.evicted[KindRank(JobKind::kRetrain)] = std::move(runs.retrain);
    s.evicted[KindRank(JobKind::kCompress)] = std::move(runs.compress);
  }
  // First the streams' indexes from every record, then only the records a
  // running scheduler would hold: the committed ones PruneCommitted drops
  // are evicted (see Memory) and never enter jobs_.
  std::vector<Stream*> stream_of(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    JobRecord& r = records[i];
    next_id_ = std::max(next_id_, r.id + 1);
    Stream& s = streams_[StreamKey(r.link, r.shard)];
    stream_of[i] = &s;
    const OrderKey key = OrderOf(r);
    switch (r.state) {
      case JobState::kLeased:
        // The holder gets a full lease from now to re-register and heartbeat;
        // a gang's helpers hold their slots again when they re-register.
        r.lease_deadline_ns = now + options_.lease_ns;
        deadlines_.insert({r.lease_deadline_ns, r.id});
        leases_by_worker_[r.worker].insert(r.id);
        for (const LeaseShare& h : r.helpers) leases_by_worker_[h.worker].insert(r.id);
        ++s.leased;
        [[fallthrough]];
      case JobState::kQueued: s.unfinished.emplace(key, r.id); break;
      case JobState::kDone: s.committed.emplace(key, r.id); break;
      case JobState::kFailed: s.failed.insert(key); break;
      case JobState::kCancelled: break;
    }
    if (r.state != JobState::kCancelled) s.known[{r.seq, KindRank(r.kind)}] = r.id;
    ++counts_.by_state[static_cast<size_t>(r.state)];
  }
  for (auto& [key, s] : streams_) PruneCommitted(s);
  for (size_t i = 0; i < records.size(); ++i) {
    JobRecord& r = records[i];
    Stream& s = *stream_of[i];
    if (r.state == JobState::kDone) {
      auto c = s.committed.find(OrderOf(r));
      if (c == s.committed.end() || c->second != r.id) continue;  // evicted
    }
    const JobId id = r.id;
    jobs_[id] = Entry{std::move(r), &s};
  }
  for (auto& [key, s] : streams_) RefreshStream(s);
  return absl::OkStatus();
}

StatusOr<size_t> Scheduler::ExpireHistory(int64_t before_ns, size_t max_records,
                                          const std::function<bool(const JobRecord&)>& may_expire) {
  DGC_ASSIGN_OR_RETURN(std::vector<JobRecord> page, store_->ListAfter(expire_cursor_, max_records));
  expire_cursor_ = page.size() < max_records || page.empty() ? 0 : page.back().id;
  std::vector<JobId> expired;
  for (const JobRecord& r : page) {
    // Evicted: committed, behind its stream's frontier, its seq in the runs.
    if (r.state == JobState::kDone && Evicted(r.id) && r.updated_ns < before_ns && may_expire(r)) {
      expired.push_back(r.id);
    }
  }
  if (expired.empty()) return size_t{0};
  // The history first: a crash between it and the deletions leaves records
  // the history also covers, which Load merges.
  JobHistory h;
  h.next_id = next_id_;
  for (const auto& [key, s] : streams_) {
    const auto& compress = s.evicted[KindRank(JobKind::kCompress)];
    const auto& retrain = s.evicted[KindRank(JobKind::kRetrain)];
    if (compress.empty() && retrain.empty()) continue;
    JobHistory::Runs& runs = h.streams[SplitStreamKey(key)];
    runs.compress = compress;
    runs.retrain = retrain;
  }
  DGC_RETURN_IF_ERROR(store_->PutHistory(h));
  // One write for the page (the library syncs each write: a record at a
  // time would hold the loop for a sync per record).
  DGC_RETURN_IF_ERROR(store_->DeleteAll(expired));
  counts_.by_state[static_cast<size_t>(JobState::kDone)] -= expired.size();
  return expired.size();
}

std::vector<std::pair<std::string, uint32_t>> Scheduler::StreamsWithCommits() const {
  std::vector<std::pair<std::string, uint32_t>> out;
  for (const auto& [key, s] : streams_) {
    if (!s.committed.empty() || !s.evicted[0].empty() || !s.evicted[1].empty()) out.push_back(SplitStreamKey(key));
  }
  return out;
}

uint32_t Scheduler::SlotsFor(const WorkerCapacity& c) const {
  if (c.slots > 0) return c.slots;
  if (c.gpus > 0) return c.gpus;
  return std::max<uint32_t>(1, c.cpu_threads / options_.cpu_threads_per_slot);
}

Status Scheduler::Persist(Entry& entry, JobRecord updated) {
  updated.updated_ns = clock_->NowNs();
  DGC_RETURN_IF_ERROR(store_->Put(updated));
  --counts_.by_state[static_cast<size_t>(entry.rec.state)];
  ++counts_.by_state[static_cast<size_t>(updated.state)];
  entry.rec = std::move(updated);
  return absl::OkStatus();
}

// Puts the stream's head in the right ready set, or none: the head is ready
// when it is queued, nothing of the stream is leased (its parent would be
// unfinished) and no earlier failed job blocks it.
void Scheduler::RefreshStream(Stream& s) {
  std::optional<ReadyKey> want;
  bool large = false;
  int64_t wait_until = 0;
  if (s.leased == 0 && !s.unfinished.empty()) {
    const auto& [key, id] = *s.unfinished.begin();
    const JobRecord& head = jobs_.at(id).rec;
    const bool blocked = options_.failed_job_blocks_stream && !s.failed.empty() && *s.failed.begin() < key;
    const bool waiting = head.not_before_ns > clock_->NowNs();
    if (head.state == JobState::kQueued && !blocked && !waiting) {
      want = ReadyKey{KindRank(head.kind), head.start_ns, head.id};
      large = IsLarge(head);
    }
    wait_until = head.state == JobState::kQueued && waiting ? head.not_before_ns : 0;
  }
  if (wait_until != s.waiting_until) {
    if (s.waiting_until) waits_.erase({s.waiting_until, &s});
    s.waiting_until = wait_until;
    if (wait_until) waits_.insert({wait_until, &s});
  }
  if (want == s.ready && large == s.ready_large) return;
  if (s.ready) (s.ready_large ? ready_large_ : ready_small_).erase(*s.ready);
  s.ready = want;
  s.ready_large = large;
  if (want) (large ? ready_large_ : ready_small_).insert(*want);
}

JobId Scheduler::ParentOf(const Stream& s, const OrderKey& key) const {
  auto it = s.committed.lower_bound(key);
  if (it == s.committed.begin()) return 0;
  return std::prev(it)->second;
}

// Keeps the committed jobs a later job may still take as parent: every one
// after the first unfinished or failed job, and the last one before it (and
// `keep`). The others are evicted.
void Scheduler::PruneCommitted(Stream& s, JobId keep) {
  std::optional<OrderKey> low;
  if (!s.unfinished.empty()) low = s.unfinished.begin()->first;
  if (!s.failed.empty() && (!low || *s.failed.begin() < *low)) low = *s.failed.begin();
  auto end = low ? s.committed.lower_bound(*low) : s.committed.end();
  if (end == s.committed.begin()) return;
  end = std::prev(end);
  for (auto it = s.committed.begin(); it != end;) {
    if (it->second == keep) {
      ++it;
      continue;
    }
    Evict(s, it->first);
    it = s.committed.erase(it);
  }
}

// Forgets a committed job but its (seq, kind): the seq joins the runs of its
// kind, merged with its neighbours.
void Scheduler::Evict(Stream& s, const OrderKey& key) {
  const auto& [seq, rank, id] = key;
  jobs_.erase(id);  // not there yet while Load() runs
  auto known = s.known.find({seq, rank});
  if (known != s.known.end() && known->second == id) s.known.erase(known);
  std::map<int64_t, int64_t>& runs = s.evicted[rank];
  auto next = runs.upper_bound(seq);  // the first run starting after seq
  auto it = next;
  if (it != runs.begin() && std::prev(it)->second >= seq - 1) {
    it = std::prev(it);  // a run ending at or just before seq
    it->second = std::max(it->second, seq);
  } else {
    it = runs.emplace_hint(next, seq, seq);
  }
  if (next != runs.end() && next->first == it->second + 1) {
    it->second = next->second;
    runs.erase(next);
  }
}

bool Scheduler::EvictedChunk(const Stream& s, int64_t seq, int rank) {
  const std::map<int64_t, int64_t>& runs = s.evicted[rank];
  auto it = runs.upper_bound(seq);
  return it != runs.begin() && std::prev(it)->second >= seq;
}

void Scheduler::Unindex(const Worker& w) {
  const uint32_t free = w.info.slots - std::min(w.info.slots, w.info.used_slots);
  (w.multi_gpu ? fit_multi_ : fit_single_).erase({free, w.ordinal});
  idle_multi_.erase(w.ordinal);
  idle_gang_.erase(GangKeyOf(w));
}

void Scheduler::Index(const Worker& w) {
  if (w.info.draining) return;
  const uint32_t free = w.info.slots - std::min(w.info.slots, w.info.used_slots);
  if (free > 0) (w.multi_gpu ? fit_multi_ : fit_single_).insert({free, w.ordinal});
  if (w.multi_gpu && w.info.used_slots == 0) idle_multi_.insert(w.ordinal);
  if (w.info.capacity.data_parallel && w.info.used_slots == 0) idle_gang_.insert(GangKeyOf(w));
}

// Computed from the fields RegisterWorker changes only between Unindex and
// Index, so the key erased is the key inserted.
Scheduler::GangKey Scheduler::GangKeyOf(const Worker& w) {
  return {!w.multi_gpu, ~w.info.capacity.gpus, w.ordinal};
}

Scheduler::Worker* Scheduler::WorkerByName(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

uint32_t Scheduler::UsedSlots(const std::string& id) const {
  uint32_t used = 0;
  auto it = leases_by_worker_.find(id);
  if (it == leases_by_worker_.end()) return 0;
  for (JobId j : it->second) used += SlotsHeldBy(jobs_.at(j).rec, id);
  return used;
}

uint32_t Scheduler::SlotsHeldBy(const JobRecord& r, const std::string& id) {
  if (r.worker == id) return r.lease_slots;
  for (const LeaseShare& h : r.helpers) {
    if (h.worker == id) return h.slots;
  }
  return 0;
}

StatusOr<SubmitResult> Scheduler::Submit(const JobSpec& spec) {
  if (spec.link.empty()) return absl::InvalidArgumentError("job spec without a link");
  Stream& s = streams_[StreamKey(spec.link, spec.shard)];
  auto known = s.known.find({spec.seq, KindRank(spec.kind)});
  if (known != s.known.end()) {
    return SubmitResult{known->second, false, jobs_.at(known->second).rec.state == JobState::kDone};
  }
  if (EvictedChunk(s, spec.seq, KindRank(spec.kind))) return SubmitResult{0, false, true};

  JobRecord r;
  r.id = next_id_;
  r.kind = spec.kind;
  r.link = spec.link;
  r.shard = spec.shard;
  r.seq = spec.seq;
  r.start_ns = spec.start_ns;
  r.packets = spec.packets;
  r.chunk_ref = spec.chunk_ref;
  r.not_before_ns = spec.not_before_ns;
  r.state = JobState::kQueued;
  r.created_ns = r.updated_ns = clock_->NowNs();
  DGC_RETURN_IF_ERROR(store_->Put(r));
  ++next_id_;
  ++counts_.by_state[static_cast<size_t>(JobState::kQueued)];
  const JobId id = r.id;
  const OrderKey key = OrderOf(r);
  jobs_[id] = Entry{std::move(r), &s};
  s.unfinished.emplace(key, id);
  s.known[{spec.seq, KindRank(spec.kind)}] = id;
  RefreshStream(s);
  return SubmitResult{id, true};
}

Status Scheduler::RegisterWorker(const std::string& id, const WorkerCapacity& capacity) {
  if (id.empty()) return absl::InvalidArgumentError("worker registration without an id");
  const uint32_t slots = SlotsFor(capacity);
  const int64_t now = clock_->NowNs();
  Worker* w = WorkerByName(id);
  if (w) {
    Unindex(*w);
    if (w->multi_gpu && !w->info.draining) --active_multi_;
  } else {
    w = &workers_[id];
    w->ordinal = next_ordinal_++;
    by_ordinal_[w->ordinal] = w;
    w->info.id = id;
    w->info.registered_ns = now;
  }
  w->info.capacity = capacity;
  w->info.slots = slots;
  w->info.used_slots = UsedSlots(id);  // leases kept across a reconnect or restart
  w->info.last_heartbeat_ns = now;
  w->multi_gpu = capacity.gpus >= 2;
  if (w->multi_gpu && !w->info.draining) ++active_multi_;
  Index(*w);
  return absl::OkStatus();
}

Status Scheduler::RemoveWorker(const std::string& id) {
  Worker* w = WorkerByName(id);
  if (!w) return absl::NotFoundError(absl::StrCat("no worker ", id));
  Unindex(*w);
  if (w->multi_gpu && !w->info.draining) --active_multi_;
  by_ordinal_.erase(w->ordinal);
  workers_.erase(id);
  auto it = leases_by_worker_.find(id);
  if (it == leases_by_worker_.end()) return absl::OkStatus();
  const std::vector<JobId> leases(it->second.begin(), it->second.end());
  // A gang cannot go on without one of its members: a helper leaving ends
  // the lease as its holder leaving would. FailLeased releases every member's
  // share, so a job is ended once even when several members go.
  for (JobId j : leases) {
    Entry& e = jobs_.at(j);
    const bool helper = e.rec.worker != id;
    FailureOutcome outcome;
    DGC_RETURN_IF_ERROR(FailLeased(e, absl::StrCat("worker ", id, " left", helper ? " (a gang helper)" : ""),
                                   /*count=*/false, /*retryable=*/true, &outcome));
  }
  return absl::OkStatus();
}

Status Scheduler::Heartbeat(const std::string& id, const std::vector<JobId>& active_jobs) {
  Worker* w = WorkerByName(id);
  if (!w) return absl::NotFoundError(absl::StrCat("no worker ", id, ": register again"));
  const int64_t now = clock_->NowNs();
  w->info.last_heartbeat_ns = now;
  // Deadlines extended by heartbeats stay in memory only: after a restart
  // every lease gets a fresh one anyway (Load), so the store is not written.
  for (JobId j : active_jobs) {
    auto it = jobs_.find(j);
    if (it == jobs_.end()) continue;
    JobRecord& r = it->second.rec;
    if (r.state != JobState::kLeased || r.worker != id) continue;
    deadlines_.erase({r.lease_deadline_ns, j});
    r.lease_deadline_ns = now + options_.lease_ns;
    deadlines_.insert({r.lease_deadline_ns, j});
  }
  return absl::OkStatus();
}

Status Scheduler::SetDraining(const std::string& id, bool draining) {
  Worker* w = WorkerByName(id);
  if (!w) return absl::NotFoundError(absl::StrCat("no worker ", id));
  if (w->info.draining == draining) return absl::OkStatus();
  Unindex(*w);
  if (w->multi_gpu) active_multi_ += draining ? -1 : 1;
  w->info.draining = draining;
  Index(*w);
  return absl::OkStatus();
}

Status Scheduler::Lease(Entry& entry, Worker& worker, uint32_t slots, const std::vector<Worker*>& helpers,
                        std::vector<Assignment>* out) {
  Stream& s = *entry.stream;
  const OrderKey key = OrderOf(entry.rec);
  JobRecord r = entry.rec;
  r.state = JobState::kLeased;
  r.attempts += 1;
  r.worker = worker.info.id;
  r.lease_deadline_ns = clock_->NowNs() + options_.lease_ns;
  r.lease_slots = slots;
  // Persisted with the lease: after a restart the helpers' slots stay held.
  r.helpers.clear();
  for (const Worker* h : helpers) r.helpers.push_back(LeaseShare{h->info.id, h->info.slots});
  r.parent_job = ParentOf(s, key);
  DGC_RETURN_IF_ERROR(Persist(entry, std::move(r)));
  ++s.leased;
  RefreshStream(s);
  Unindex(worker);
  worker.info.used_slots += slots;
  Index(worker);
  leases_by_worker_[worker.info.id].insert(entry.rec.id);
  for (Worker* h : helpers) {
    Unindex(*h);
    h->info.used_slots += h->info.slots;
    Index(*h);
    leases_by_worker_[h->info.id].insert(entry.rec.id);
  }
  deadlines_.insert({entry.rec.lease_deadline_ns, entry.rec.id});
  out->push_back(Assignment{entry.rec.id, worker.info.id, entry.rec.attempts, entry.rec.lease_deadline_ns,
                            entry.rec.parent_job, slots, IsLarge(entry.rec), entry.rec.helpers});
  return absl::OkStatus();
}

// The index side of ending a lease; `entry.rec` still describes the lease.
void Scheduler::ReleaseLease(Entry& entry) {
  const JobRecord& r = entry.rec;
  deadlines_.erase({r.lease_deadline_ns, r.id});
  ReleaseShare(r.id, r.worker, r.lease_slots);
  for (const LeaseShare& h : r.helpers) ReleaseShare(r.id, h.worker, h.slots);
  --entry.stream->leased;
}

void Scheduler::ReleaseShare(JobId job, const std::string& worker, uint32_t slots) {
  auto it = leases_by_worker_.find(worker);
  if (it == leases_by_worker_.end() || it->second.erase(job) == 0) return;
  if (it->second.empty()) leases_by_worker_.erase(it);
  if (Worker* w = WorkerByName(worker)) {
    Unindex(*w);
    w->info.used_slots -= std::min(w->info.used_slots, slots);
    Index(*w);
  }
}

Status Scheduler::Schedule(std::vector<Assignment>* out) {
  // Large jobs take gangs of whole idle data-parallel workers, the biggest
  // first; with fewer than two such workers idle, the rules below apply. A
  // gang is all GPU workers or all CPU workers: their ranks must agree on a
  // backend (NCCL between GPUs, Gloo between CPUs).
  if (options_.max_workers_per_job >= 2) {
    while (!ready_large_.empty() && idle_gang_.size() >= 2) {
      Entry& e = jobs_.at(std::get<2>(*ready_large_.begin()));
      auto it = idle_gang_.begin();
      Worker& holder = *by_ordinal_.at(std::get<2>(*it));
      const bool gpus = holder.info.capacity.gpus > 0;
      std::vector<Worker*> helpers;
      for (++it; it != idle_gang_.end() && helpers.size() + 1 < options_.max_workers_per_job; ++it) {
        Worker* h = by_ordinal_.at(std::get<2>(*it));
        if ((h->info.capacity.gpus > 0) == gpus) helpers.push_back(h);
      }
      if (helpers.empty()) break;  // the biggest idle worker has no partner of its kind
      DGC_RETURN_IF_ERROR(Lease(e, holder, holder.info.slots, helpers, out));
    }
  }
  // Large jobs take whole idle multi-GPU workers.
  if (active_multi_ > 0) {
    while (!ready_large_.empty() && !idle_multi_.empty()) {
      Entry& e = jobs_.at(std::get<2>(*ready_large_.begin()));
      Worker& w = *by_ordinal_.at(*idle_multi_.begin());
      DGC_RETURN_IF_ERROR(Lease(e, w, w.info.slots, {}, out));
    }
  }
  // Small jobs (and large ones when there is no multi-GPU worker) pack onto
  // the fullest single-GPU/CPU worker, then onto multi-GPU workers unless a
  // large job is waiting for one.
  const bool large_waits = active_multi_ > 0 && !ready_large_.empty();
  for (;;) {
    const ReadyKey* next = ready_small_.empty() ? nullptr : &*ready_small_.begin();
    if (active_multi_ == 0 && !ready_large_.empty() && (!next || *ready_large_.begin() < *next)) {
      next = &*ready_large_.begin();
    }
    if (!next) break;
    const std::set<FitKey>* pool = !fit_single_.empty() ? &fit_single_
                                   : (!large_waits && !fit_multi_.empty()) ? &fit_multi_
                                                                           : nullptr;
    if (!pool) break;
    Entry& e = jobs_.at(std::get<2>(*next));
    Worker& w = *by_ordinal_.at(pool->begin()->second);
    DGC_RETURN_IF_ERROR(Lease(e, w, 1, {}, out));
  }
  return absl::OkStatus();
}

StatusOr<CompletionOutcome> Scheduler::ClassifyResult(JobId job) const {
  if (Evicted(job)) return CompletionOutcome::kDuplicate;
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  switch (it->second.rec.state) {
    case JobState::kQueued:
    case JobState::kLeased: return CompletionOutcome::kCommitted;
    case JobState::kDone: return CompletionOutcome::kDuplicate;
    case JobState::kFailed:
    case JobState::kCancelled: return CompletionOutcome::kDiscarded;
  }
  return CompletionOutcome::kDiscarded;
}

Status Scheduler::Commit(Entry& entry, const std::string& result_ref) {
  const bool was_leased = entry.rec.state == JobState::kLeased;
  const JobRecord before = entry.rec;
  JobRecord r = entry.rec;
  r.state = JobState::kDone;
  r.result_ref = result_ref;
  r.lease_deadline_ns = 0;
  r.helpers.clear();  // only while leased; `before` still lists them to release
  DGC_RETURN_IF_ERROR(Persist(entry, std::move(r)));
  if (was_leased) {
    Entry view{before, entry.stream};  // release what the lease held
    ReleaseLease(view);
  }
  Stream& s = *entry.stream;
  const OrderKey key = OrderOf(entry.rec);
  s.unfinished.erase(key);
  s.committed.emplace(key, entry.rec.id);
  const JobId id = entry.rec.id;
  PruneCommitted(s, /*keep=*/id);
  RefreshStream(s);
  return absl::OkStatus();
}

StatusOr<CompletionResult> Scheduler::Complete(const std::string& worker, JobId job, uint32_t attempt,
                                               const std::string& result_ref) {
  if (Evicted(job)) return CompletionResult{CompletionOutcome::kDuplicate, ""};
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (attempt == 0 || attempt > e.rec.attempts) {
    return absl::InvalidArgumentError(
        absl::StrCat("result for job ", job, " attempt ", attempt, ": only ", e.rec.attempts, " handed out"));
  }
  DGC_ASSIGN_OR_RETURN(CompletionOutcome outcome, ClassifyResult(job));
  CompletionResult result;
  result.outcome = outcome;
  if (outcome != CompletionOutcome::kCommitted) return result;
  // A late result from an expired lease also commits: the work is done. If
  // another worker holds the job now, its lease ends here.
  if (e.rec.state == JobState::kLeased && e.rec.worker != worker) result.preempted_worker = e.rec.worker;
  DGC_RETURN_IF_ERROR(Commit(e, result_ref));
  return result;
}

Status Scheduler::FailLeased(Entry& entry, const std::string& reason, bool count, bool retryable,
                             FailureOutcome* outcome) {
  const JobRecord before = entry.rec;
  JobRecord r = entry.rec;
  if (count) r.failures += 1;
  r.last_error = reason;
  r.lease_deadline_ns = 0;
  r.helpers.clear();  // a requeued job forms a new gang, or none
  const bool fail = !retryable || r.failures >= options_.max_failures;
  r.state = fail ? JobState::kFailed : JobState::kQueued;
  DGC_RETURN_IF_ERROR(Persist(entry, std::move(r)));
  Entry view{before, entry.stream};
  ReleaseLease(view);
  Stream& s = *entry.stream;
  if (fail) {
    const OrderKey key = OrderOf(entry.rec);
    s.unfinished.erase(key);
    s.failed.insert(key);
  }
  RefreshStream(s);
  *outcome = fail ? FailureOutcome::kFailed : FailureOutcome::kRequeued;
  return absl::OkStatus();
}

StatusOr<FailureOutcome> Scheduler::Fail(const std::string& worker, JobId job, uint32_t attempt,
                                         const std::string& reason, bool retryable) {
  if (Evicted(job)) return FailureOutcome::kStale;
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (e.rec.state != JobState::kLeased || e.rec.worker != worker || e.rec.attempts != attempt) {
    return FailureOutcome::kStale;
  }
  FailureOutcome outcome;
  DGC_RETURN_IF_ERROR(FailLeased(e, absl::StrCat("worker ", worker, ": ", reason), /*count=*/true, retryable,
                                 &outcome));
  return outcome;
}

Status Scheduler::Release(JobId job, const std::string& reason) {
  if (Evicted(job)) return absl::FailedPreconditionError(absl::StrCat("job ", job, " is not leased"));
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (e.rec.state != JobState::kLeased) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job, " is not leased"));
  }
  FailureOutcome outcome;
  return FailLeased(e, reason, /*count=*/false, /*retryable=*/true, &outcome);
}

Status Scheduler::MakeReady(JobId job) {
  if (Evicted(job)) return absl::OkStatus();  // done: not waiting
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (e.rec.not_before_ns == 0) return absl::OkStatus();
  JobRecord r = e.rec;
  r.not_before_ns = 0;
  DGC_RETURN_IF_ERROR(Persist(e, std::move(r)));
  RefreshStream(*e.stream);
  return absl::OkStatus();
}

Status Scheduler::Tick(TickReport* report) {
  const int64_t now = clock_->NowNs();
  while (!waits_.empty() && waits_.begin()->first <= now) RefreshStream(*waits_.begin()->second);
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const JobId j = deadlines_.begin()->second;
    Entry& e = jobs_.at(j);
    FailureOutcome outcome;
    DGC_RETURN_IF_ERROR(FailLeased(
        e, absl::StrCat("lease expired on worker ", e.rec.worker, " at ", FormatRfc3339(e.rec.lease_deadline_ns)),
        /*count=*/true, /*retryable=*/true, &outcome));
    report->expired.push_back(j);
  }
  std::vector<std::string> silent;
  for (const auto& [id, w] : workers_) {
    if (now - w.info.last_heartbeat_ns >= options_.worker_timeout_ns) silent.push_back(id);
  }
  std::sort(silent.begin(), silent.end());
  for (const std::string& id : silent) {
    DGC_RETURN_IF_ERROR(RemoveWorker(id));
    report->lost_workers.push_back(id);
  }
  return absl::OkStatus();
}

int64_t Scheduler::NextDeadlineNs() const {
  return deadlines_.empty() ? std::numeric_limits<int64_t>::max() : deadlines_.begin()->first;
}

StatusOr<std::string> Scheduler::Cancel(JobId job) {
  if (Evicted(job)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job, " is done: only queued or leased jobs can be cancelled"));
  }
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (e.rec.state != JobState::kQueued && e.rec.state != JobState::kLeased) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job, " is ", JobStateName(e.rec.state), ": only queued or leased jobs can be cancelled"));
  }
  const JobRecord before = e.rec;
  const bool was_leased = before.state == JobState::kLeased;
  JobRecord r = e.rec;
  r.state = JobState::kCancelled;
  r.lease_deadline_ns = 0;
  r.helpers.clear();
  r.last_error = "cancelled by an operator";
  DGC_RETURN_IF_ERROR(Persist(e, std::move(r)));
  if (was_leased) {
    Entry view{before, e.stream};
    ReleaseLease(view);
  }
  Stream& s = *e.stream;
  s.unfinished.erase(OrderOf(e.rec));
  s.known.erase({e.rec.seq, KindRank(e.rec.kind)});
  PruneCommitted(s);
  RefreshStream(s);
  return was_leased ? before.worker : std::string();
}

Status Scheduler::Retry(JobId job) {
  if (Evicted(job)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job, " is done: only failed or cancelled jobs can be retried"));
  }
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", job));
  Entry& e = it->second;
  if (e.rec.state != JobState::kFailed && e.rec.state != JobState::kCancelled) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job, " is ", JobStateName(e.rec.state), ": only failed or cancelled jobs can be retried"));
  }
  Stream& s = *e.stream;
  auto known = s.known.find({e.rec.seq, KindRank(e.rec.kind)});
  if (known != s.known.end() && known->second != job) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", known->second, " already covers this chunk; retry or cancel that one"));
  }
  if (EvictedChunk(s, e.rec.seq, KindRank(e.rec.kind))) {
    return absl::FailedPreconditionError("a committed job already covers this chunk");
  }
  const JobState was = e.rec.state;
  JobRecord r = e.rec;
  r.state = JobState::kQueued;
  r.failures = 0;
  DGC_RETURN_IF_ERROR(Persist(e, std::move(r)));
  const OrderKey key = OrderOf(e.rec);
  if (was == JobState::kFailed) s.failed.erase(key);
  s.unfinished.emplace(key, job);
  s.known[{e.rec.seq, KindRank(e.rec.kind)}] = job;
  RefreshStream(s);
  return absl::OkStatus();
}

const JobRecord* Scheduler::FindJob(JobId job) const {
  auto it = jobs_.find(job);
  return it == jobs_.end() ? nullptr : &it->second.rec;
}

std::vector<JobRecord> Scheduler::Jobs() const {
  std::vector<JobRecord> out;
  out.reserve(jobs_.size());
  for (const auto& [id, e] : jobs_) out.push_back(e.rec);
  std::sort(out.begin(), out.end(), [](const JobRecord& a, const JobRecord& b) { return a.id < b.id; });
  return out;
}

std::optional<WorkerInfo> Scheduler::FindWorker(const std::string& id) const {
  auto it = workers_.find(id);
  if (it == workers_.end()) return std::nullopt;
  WorkerInfo info = it->second.info;
  if (auto l = leases_by_worker_.find(id); l != leases_by_worker_.end()) {
    info.leases.assign(l->second.begin(), l->second.end());
  }
  return info;
}

std::vector<WorkerInfo> Scheduler::Workers() const {
  std::vector<WorkerInfo> out;
  for (const auto& [id, w] : workers_) out.push_back(*FindWorker(id));
  std::sort(out.begin(), out.end(), [](const WorkerInfo& a, const WorkerInfo& b) { return a.id < b.id; });
  return out;
}

}  // namespace dgc

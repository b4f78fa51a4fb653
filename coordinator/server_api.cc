// The operator API dgcctl talks to (status, jobs, workers, retrain, drain,
// cancel, retry).
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

using coordinator_internal::ParseOr;
using coordinator_internal::Error;
using coordinator_internal::Ok;

void Coordinator::DrainApi() {
  runtime::DrainSocket(api_, 64, process_metrics_, "an operator message", [this](wire::ZmqRouter::Inbound& in) {
    auto* req = std::get_if<wire::OperatorRequest>(&in.message.message);
    if (!req) {
      spdlog::warn("operator API: unexpected {}", wire::MessageKindName(in.message.kind()));
      return;
    }
    wire::OperatorReply reply = OnOperator(*req);
    reply.request_id = req->request_id;
    Status st = api_->Send(in.peer, reply);
    if (!st.ok()) spdlog::warn("operator reply: {}", std::string(st.message()));
  });
}

nlohmann::json Coordinator::WorkerJson(const WorkerInfo& w) const {
  nlohmann::json j = {{"name", w.id},
                      {"state", w.draining ? (w.used_slots ? "draining" : "drained") : (w.used_slots ? "busy" : "idle")},
                      {"slots", w.slots},
                      {"used_slots", w.used_slots},
                      {"cpu_threads", w.capacity.cpu_threads},
                      {"gpus", w.capacity.gpus},
                      {"leases", w.leases},
                      {"registered", FormatRfc3339(w.registered_ns)},
                      {"last_heartbeat", FormatRfc3339(w.last_heartbeat_ns)},
                      {"registered_ns", w.registered_ns}};
  auto it = workers_.find(w.id);
  if (it != workers_.end()) {
    j["hostname"] = it->second.hostname;
    j["build"] = it->second.build;
    j["tokens_per_second"] = it->second.tokens_per_second;
    j["ranks"] = it->second.ranks;
    j["peer_address"] = it->second.peer_address;
  }
  return j;
}

wire::OperatorReply Coordinator::OnOperator(const wire::OperatorRequest& req) {
  nlohmann::json args = ParseOr(req.args_json.empty() ? "{}" : req.args_json, nlohmann::json::object());
  auto job_id = [&](JobId* id) {
    return absl::SimpleAtoi(req.name, id) ? absl::OkStatus()
                                          : absl::InvalidArgumentError(absl::StrCat("'", req.name, "' is not a job id"));
  };
  auto job_json = [](const JobRecord& r) { return nlohmann::json::parse(EncodeJobRecord(r)); };
  // The scheduler holds the jobs that can still change; a committed job it
  // evicted (Scheduler, Memory) is answered from the store, as committed.
  auto find_job = [&](JobId id) -> std::optional<JobRecord> {
    if (const JobRecord* r = scheduler_->FindJob(id)) return *r;
    if (!scheduler_->Evicted(id)) return std::nullopt;
    auto stored = store_->Get(id);
    if (!stored.ok()) return std::nullopt;
    return *std::move(stored);
  };
  switch (req.verb) {
    case wire::OperatorVerb::kGet:
    case wire::OperatorVerb::kDescribe: {
      bool describe = req.verb == wire::OperatorVerb::kDescribe;
      if (req.noun == "jobs" || req.noun == "job") {
        if (describe || !req.name.empty()) {
          JobId id = 0;
          if (Status st = job_id(&id); !st.ok()) return Error(std::string(st.message()));
          std::optional<JobRecord> r = find_job(id);
          if (!r && scheduler_->Evicted(id)) {
            return Error(absl::StrCat("job ", id, " was committed; its record expired (--job-history-hours)"));
          }
          if (!r) return Error(absl::StrCat("job ", id, " not found"));
          nlohmann::json j = job_json(*r);
          if (describe && r->parent_job) {
            std::optional<JobRecord> parent = find_job(r->parent_job);
            j["parent_model"] = parent ? parent->result_ref : "";
          }
          return Ok(describe ? j : nlohmann::json::array({j}));
        }
        std::string state = args.value("state", "");
        std::string link = args.value("link", "");
        auto number = [&](const char* name, uint64_t* out) {
          auto it = args.find(name);
          if (it == args.end()) return true;
          if (!it->is_number_unsigned()) return false;
          *out = it->get<uint64_t>();
          return true;
        };
        uint64_t limit = 0, after = 0;
        if (!number("limit", &limit) || !number("after", &after)) {
          return Error("get jobs: limit and after must be non-negative integers");
        }
        // Every stored job (the committed ones the scheduler evicted too), as
        // the scheduler holds it when it does (its lease deadlines are fresher).
        auto add = [&](const JobRecord& s, nlohmann::json* arr) {
          const JobRecord* held = scheduler_->FindJob(s.id);
          const JobRecord& r = held ? *held : s;
          if (!state.empty() && state != JobStateName(r.state)) return;
          if (!link.empty() && link != r.link) return;
          arr->push_back(job_json(r));
        };
        if (limit == 0 && after == 0) {  // the whole store, one array (scripts of before paging)
          auto stored = store_->List();
          if (!stored.ok()) return Error(std::string(stored.status().message()));
          nlohmann::json arr = nlohmann::json::array();
          for (const JobRecord& s : *stored) add(s, &arr);
          return Ok(arr);
        }
        // One page: up to `limit` matching jobs with ids above `after`, and
        // where to go on ("continue": the last id looked at, 0 at the end).
        // A page reads at most kMaxScan records, so a filter that matches
        // little cannot hold the coordinator's loop for the whole store: the
        // page is then short and says to continue.
        constexpr uint64_t kMaxScan = 20000;
        if (limit == 0 || limit > kMaxScan) limit = kMaxScan;
        nlohmann::json items = nlohmann::json::array();
        JobId cursor = after;
        uint64_t scanned = 0;
        bool more = true;
        while (more && items.size() < limit && scanned < kMaxScan) {
          const size_t want = static_cast<size_t>(std::min<uint64_t>(limit, kMaxScan - scanned));
          auto page = store_->ListAfter(cursor, want);
          if (!page.ok()) return Error(std::string(page.status().message()));
          more = page->size() == want;
          for (size_t i = 0; i < page->size() && items.size() < limit; ++i) {
            cursor = (*page)[i].id;
            ++scanned;
            add((*page)[i], &items);
            if (items.size() == limit && i + 1 < page->size()) more = true;
          }
        }
        return Ok({{"items", std::move(items)}, {"continue", more ? cursor : JobId{0}}});
      }
      if (req.noun == "workers" || req.noun == "worker") {
        if (!req.name.empty()) {
          auto w = scheduler_->FindWorker(req.name);
          if (!w) return Error(absl::StrCat("worker ", req.name, " not found"));
          return Ok(describe ? WorkerJson(*w) : nlohmann::json::array({WorkerJson(*w)}));
        }
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& w : scheduler_->Workers()) arr.push_back(WorkerJson(w));
        return Ok(arr);
      }
      if (req.noun == "chunks") {
        ChunkQuery q;
        q.link = args.value("link", "");
        auto chunk_json = [](const library::ChunkRecord& c) {
          return nlohmann::json{{"chunk", library::ChunkKeyToString(library::ChunkKey(c.link, c.start_ns))},
                                {"link", c.link}, {"start", FormatRfc3339(c.start_ns)}, {"start_ns", c.start_ns},
                                {"seq", c.seq}, {"packets", c.packets}, {"flows", c.flows}, {"model", c.model_id},
                                {"parent", c.parent_id}, {"stored_bytes", c.stored_bytes},
                                {"raw_bytes", c.raw_bytes}};
        };
        const auto limit_it = args.find("limit");
        if (limit_it == args.end()) {  // the whole library, one array (scripts of before paging)
          nlohmann::json arr = nlohmann::json::array();
          Status st = library_->ForEachChunk(q, [&](const library::ChunkRecord& c) {
            arr.push_back(chunk_json(c));
            return absl::OkStatus();
          });
          if (!st.ok()) return Error(std::string(st.message()));
          return Ok(arr);
        }
        // One page: up to `limit` chunks (at most kMaxPage) after the chunk
        // "after" ({link, start_ns}) names, in key order, and where to go on
        // ("continue": the last chunk's {link, start_ns}, null at the end).
        // Listing a library in pages holds one page, not the library: a soak
        // that counted its chunks every 2 s as one array grew the
        // coordinator's RSS with the library (DESIGN_NOTES, session 16).
        constexpr uint64_t kMaxPage = 5000;
        if (!limit_it->is_number_unsigned()) return Error("get chunks: limit must be a non-negative integer");
        uint64_t limit = limit_it->get<uint64_t>();
        if (limit == 0 || limit > kMaxPage) limit = kMaxPage;
        if (const auto after = args.find("after"); after != args.end() && !after->is_null()) {
          if (!after->is_object() || !after->contains("link") || !(*after)["link"].is_string() ||
              !after->contains("start_ns") || !(*after)["start_ns"].is_number_integer()) {
            return Error("get chunks: after must be {link, start_ns}");
          }
          q.after_key = library::ChunkKey((*after)["link"].get<std::string>(), (*after)["start_ns"].get<int64_t>());
        }
        nlohmann::json items = nlohmann::json::array();
        nlohmann::json next = nullptr;
        const Status page_full = absl::CancelledError("page full");
        Status st = library_->ForEachChunk(q, [&](const library::ChunkRecord& c) {
          if (items.size() == limit) return page_full;
          items.push_back(chunk_json(c));
          next = {{"link", c.link}, {"start_ns", c.start_ns}};
          return absl::OkStatus();
        });
        if (!st.ok() && st != page_full) return Error(std::string(st.message()));
        if (st.ok()) next = nullptr;  // the walk ended: nothing after this page
        return Ok({{"items", std::move(items)}, {"continue", std::move(next)}});
      }
      if (req.noun == "models") {
        auto models = library_->ListModels(false);
        if (!models.ok()) return Error(std::string(models.status().message()));
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& m : *models) {
          arr.push_back({{"id", m.id}, {"kind", library::ModelKindName(m.kind)}, {"parent", m.parent_id},
                         {"depth", m.depth}, {"blob_bytes", m.blob_bytes}, {"created", FormatRfc3339(m.created_ns)}});
        }
        return Ok(arr);
      }
      return Error(absl::StrCat("unknown noun '", req.noun, "': use jobs, workers, chunks or models"));
    }
    case wire::OperatorVerb::kCancel:
    case wire::OperatorVerb::kRetry: {
      JobId id = 0;
      if (Status st = job_id(&id); !st.ok()) return Error(std::string(st.message()));
      if (!find_job(id)) return Error(absl::StrCat("job ", id, " not found"));
      if (req.verb == wire::OperatorVerb::kCancel) {
        auto holder = scheduler_->Cancel(id);
        if (!holder.ok()) return Error(std::string(holder.status().message()));
        lease_started_ns_.erase(id);
        spdlog::info("job {} cancelled by an operator{}", id, holder->empty() ? "" : " (its worker's result will be discarded)");
      } else {
        Status st = scheduler_->Retry(id);
        if (!st.ok()) return Error(std::string(st.message()));
        spdlog::info("job {} queued again by an operator", id);
      }
      ScheduleAndSend();
      return Ok(job_json(*scheduler_->FindJob(id)));
    }
    case wire::OperatorVerb::kRetrain: {
      if (req.name.empty()) return Error("retrain: name the link");
      uint32_t shard = args.value("shard", 0u);
      retrain_requested_.insert(StreamKey(req.name, shard));
      spdlog::info("retrain of {}/{} requested: its next chunk trains a new base", req.name, shard);
      return Ok({{"link", req.name}, {"shard", shard}, {"retrain", "at the next chunk"}});
    }
    case wire::OperatorVerb::kGenerate: return OnGenerate(req, args);
    case wire::OperatorVerb::kDrain: {
      if (req.name.empty()) return Error("drain: name the worker");
      bool undo = args.value("undo", false);
      Status st = scheduler_->SetDraining(req.name, !undo);
      if (!st.ok()) return Error(absl::StrCat("worker ", req.name, ": ", st.message()));
      spdlog::info("worker {} {}", req.name, undo ? "takes work again" : "draining");
      UpdateGauges();
      ScheduleAndSend();
      return Ok(WorkerJson(*scheduler_->FindWorker(req.name)));
    }
  }
  return Error("unknown verb");
}

}  // namespace dgc

#include "coordinator/scheduler/job_store.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace dgc {

const char* JobKindName(JobKind kind) {
  switch (kind) {
    case JobKind::kCompress: return "compress";
    case JobKind::kRetrain: return "retrain";
  }
  return "unknown";
}

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued: return "queued";
    case JobState::kLeased: return "leased";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string EncodeJobRecord(const JobRecord& j) {
  nlohmann::json helpers = nlohmann::json::array();
  for (const LeaseShare& h : j.helpers) helpers.push_back({{"worker", h.worker}, {"slots", h.slots}});
  nlohmann::json o = {
      {"id", j.id},
      {"kind", JobKindName(j.kind)},
      {"link", j.link},
      {"shard", j.shard},
      {"seq", j.seq},
      {"start_ns", j.start_ns},
      {"packets", j.packets},
      {"chunk_ref", j.chunk_ref},
      {"state", JobStateName(j.state)},
      {"attempts", j.attempts},
      {"failures", j.failures},
      {"last_error", j.last_error},
      {"worker", j.worker},
      {"lease_deadline_ns", j.lease_deadline_ns},
      {"lease_slots", j.lease_slots},
      {"helpers", std::move(helpers)},
      {"not_before_ns", j.not_before_ns},
      {"parent_job", j.parent_job},
      {"result_ref", j.result_ref},
      {"created_ns", j.created_ns},
      {"updated_ns", j.updated_ns},
  };
  // Invalid UTF-8 in a name must not make dump() throw.
  return o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

StatusOr<JobRecord> DecodeJobRecord(absl::string_view bytes) {
  nlohmann::json o = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (o.is_discarded() || !o.is_object()) return absl::InvalidArgumentError("job record: not a JSON object");
  JobRecord j;
  std::string field;
  try {
    auto get = [&](const char* name, auto* out) {
      field = name;
      *out = o.at(name).get<std::decay_t<decltype(*out)>>();
    };
    get("id", &j.id);
    std::string kind, state;
    get("kind", &kind);
    if (kind == "compress") j.kind = JobKind::kCompress;
    else if (kind == "retrain") j.kind = JobKind::kRetrain;
    else return absl::InvalidArgumentError(absl::StrCat("job record: unknown kind \"", kind, "\""));
    get("link", &j.link);
    get("shard", &j.shard);
    get("seq", &j.seq);
    get("start_ns", &j.start_ns);
    get("packets", &j.packets);
    get("chunk_ref", &j.chunk_ref);
    get("state", &state);
    bool known = false;
    for (JobState s : {JobState::kQueued, JobState::kLeased, JobState::kDone, JobState::kFailed,
                       JobState::kCancelled}) {
      if (state == JobStateName(s)) {
        j.state = s;
        known = true;
      }
    }
    if (!known) return absl::InvalidArgumentError(absl::StrCat("job record: unknown state \"", state, "\""));
    get("attempts", &j.attempts);
    get("failures", &j.failures);
    get("last_error", &j.last_error);
    get("worker", &j.worker);
    get("lease_deadline_ns", &j.lease_deadline_ns);
    get("lease_slots", &j.lease_slots);
    // Records written before first-base waits have no "not_before_ns": 0.
    j.not_before_ns = o.value("not_before_ns", int64_t{0});
    // Records written before gang leases have no "helpers": none.
    field = "helpers";
    if (auto h = o.find("helpers"); h != o.end()) {
      if (!h->is_array()) return absl::InvalidArgumentError("job record: field \"helpers\": not an array");
      for (size_t i = 0; i < h->size(); ++i) {
        const nlohmann::json& e = (*h)[i];
        const std::string at = absl::StrCat("helpers[", i, "]");
        if (!e.is_object()) {
          return absl::InvalidArgumentError(absl::StrCat("job record: field \"", at, "\": not an object"));
        }
        LeaseShare share;
        field = at + ".worker";
        share.worker = e.at("worker").get<std::string>();
        field = at + ".slots";
        share.slots = e.at("slots").get<uint32_t>();
        j.helpers.push_back(std::move(share));
      }
    }
    get("parent_job", &j.parent_job);
    get("result_ref", &j.result_ref);
    get("created_ns", &j.created_ns);
    get("updated_ns", &j.updated_ns);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("job record: field \"", field, "\": ", e.what()));
  }
  return j;
}

Status InMemoryJobStore::Put(const JobRecord& job) {
  if (!put_status_.ok()) return put_status_;
  jobs_[job.id] = job;
  ++puts_;
  return absl::OkStatus();
}

std::string EncodeJobHistory(const JobHistory& h) {
  auto runs = [](const std::map<int64_t, int64_t>& r) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& [first, last] : r) a.push_back({first, last});
    return a;
  };
  nlohmann::json streams = nlohmann::json::array();
  for (const auto& [stream, r] : h.streams) {
    streams.push_back({{"link", stream.first}, {"shard", stream.second}, {"compress", runs(r.compress)},
                       {"retrain", runs(r.retrain)}});
  }
  return nlohmann::json{{"next_id", h.next_id}, {"streams", std::move(streams)}}.dump();
}

StatusOr<JobHistory> DecodeJobHistory(absl::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("job history: not a JSON object");
  JobHistory h;
  const auto next = j.find("next_id");
  if (next == j.end() || !next->is_number_unsigned()) return absl::InvalidArgumentError("job history: no next_id");
  h.next_id = next->get<JobId>();
  const auto streams = j.find("streams");
  if (streams == j.end() || !streams->is_array()) return absl::InvalidArgumentError("job history: no streams");
  auto runs = [](const nlohmann::json& a, const std::string& key, const char* kind,
                 std::map<int64_t, int64_t>* out) -> Status {
    if (!a.is_array()) return absl::InvalidArgumentError(absl::StrCat("job history: ", key, ": ", kind, " not a list"));
    int64_t after = INT64_MIN;
    bool first_run = true;
    for (const auto& r : a) {
      if (!r.is_array() || r.size() != 2 || !r[0].is_number_integer() || !r[1].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("job history: ", key, ": ", kind, " run not [first, last]"));
      }
      const int64_t lo = r[0].get<int64_t>(), hi = r[1].get<int64_t>();
      if (hi < lo || (!first_run && lo <= after)) {
        return absl::InvalidArgumentError(absl::StrCat("job history: ", key, ": ", kind, " runs out of order"));
      }
      first_run = false;
      after = hi;
      (*out)[lo] = hi;
    }
    return absl::OkStatus();
  };
  for (const auto& s : *streams) {
    if (!s.is_object() || !s.contains("link") || !s["link"].is_string() || !s.contains("shard") ||
        !s["shard"].is_number_unsigned()) {
      return absl::InvalidArgumentError("job history: a stream without its link and shard");
    }
    const std::string link = s["link"].get<std::string>();
    const uint32_t shard = s["shard"].get<uint32_t>();
    const std::string key = absl::StrCat(link, "/", shard);
    JobHistory::Runs& r = h.streams[{link, shard}];
    DGC_RETURN_IF_ERROR(runs(s.value("compress", nlohmann::json::array()), key, "compress", &r.compress));
    DGC_RETURN_IF_ERROR(runs(s.value("retrain", nlohmann::json::array()), key, "retrain", &r.retrain));
  }
  return h;
}

StatusOr<JobRecord> InMemoryJobStore::Get(JobId id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
  return it->second;
}

StatusOr<std::vector<JobRecord>> InMemoryJobStore::ListAfter(JobId after, size_t limit) const {
  if (!list_status_.ok()) return list_status_;
  std::vector<JobRecord> out;
  for (auto it = jobs_.upper_bound(after); it != jobs_.end() && (limit == 0 || out.size() < limit); ++it) {
    out.push_back(it->second);
  }
  return out;
}

Status InMemoryJobStore::Delete(JobId id) {
  if (jobs_.erase(id) == 0) return absl::NotFoundError(absl::StrCat("no job ", id));
  return absl::OkStatus();
}

}  // namespace dgc

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

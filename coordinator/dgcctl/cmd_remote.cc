// dgcctl verbs against a running coordinator (its --api endpoint): cancel,
// retry, retrain, drain, and the client side of get/describe jobs|workers
// (cmd_library.cc dispatches there); keygen writes a CurveZMQ key pair.
//
// -o json prints the coordinator's answer as it is:
//   get jobs: [{id, kind, link, shard, seq, start_ns, packets, chunk_ref, state, attempts, failures,
//               last_error, worker, helpers[{worker, slots}], lease_deadline_ns, parent_job, result_ref,
//               created_ns, updated_ns}]
//     (asked for by pages, --chunk-size at a time, and printed as one array;
//     the API's page is {items: [...], continue: ID}, args limit and after)
//   get chunks: [{chunk, link, start, start_ns, seq, packets, flows, model, parent, stored_bytes,
//                 raw_bytes}] (by pages too: {items: [...], continue: {link, start_ns} or null})
//   get workers: [{name, state, slots, used_slots, cpu_threads, gpus, leases[], registered,
//                  last_heartbeat, hostname, build, tokens_per_second, ranks, peer_address}]
//   cancel/retry: the job; drain: the worker; retrain: {link, shard, retrain}
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/runtime/process.h"
#include "common/wire/zmq_transport.h"
#include "coordinator/dgcctl/commands.h"
#include "nlohmann/json.hpp"

namespace dgc::ctl {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A job's holder, "+N" when N more workers serve it as a gang.
std::string Holder(const nlohmann::json& job) {
  std::string w = job.value("worker", "");
  const auto it = job.find("helpers");
  if (it != job.end() && it->is_array() && !it->empty()) absl::StrAppend(&w, "+", it->size());
  return w;
}

std::string Age(int64_t ns) {
  if (ns <= 0) return "-";
  int64_t s = (NowNs() - ns) / 1'000'000'000;
  if (s < 0) s = 0;
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  if (s < 172800) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

void Fail(const char* verb, const Status& st, int* exit_code) {
  std::cerr << "dgcctl " << verb << ": " << st.message() << "\n";
  *exit_code = 1;
}

void PrintTable(const std::string& noun, const nlohmann::json& j, bool header = true) {
  nlohmann::json rows = j.is_array() ? j : nlohmann::json::array({j});
  if (noun == "jobs" || noun == "job") {
    if (header) {
      std::printf("%-8s %-9s %-20s %-5s %-12s %-9s %-8s %-14s %s\n", "NAME", "KIND", "LINK", "SHARD", "SEQ", "STATE",
                  "ATTEMPTS", "WORKER", "AGE");
    }
    for (const auto& r : rows) {
      std::printf("%-8s %-9s %-20s %-5s %-12s %-9s %-8s %-14s %s\n", std::to_string(r.value("id", 0ull)).c_str(),
                  r.value("kind", "").c_str(), r.value("link", "").substr(0, 20).c_str(),
                  std::to_string(r.value("shard", 0u)).c_str(), std::to_string(r.value("seq", 0ll)).c_str(),
                  r.value("state", "").c_str(), std::to_string(r.value("attempts", 0u)).c_str(),
                  Holder(r).substr(0, 14).c_str(), Age(r.value("created_ns", 0ll)).c_str());
      if (rows.size() == 1 && !r.value("last_error", "").empty()) {
        std::printf("  last error: %s\n", r.value("last_error", "").c_str());
      }
    }
  } else if (noun == "workers" || noun == "worker") {
    std::printf("%-20s %-9s %-6s %-5s %-4s %-5s %-6s %-22s %-10s %s\n", "NAME", "STATE", "SLOTS", "USED", "CPU", "GPUS",
                "RANKS", "PEER", "HEARTBEAT", "AGE");
    for (const auto& r : rows) {
      const std::string peer = r.value("peer_address", "");
      std::printf("%-20s %-9s %-6s %-5s %-4s %-5s %-6s %-22s %-10s %s\n", r.value("name", "").substr(0, 20).c_str(),
                  r.value("state", "").c_str(), std::to_string(r.value("slots", 0u)).c_str(),
                  std::to_string(r.value("used_slots", 0u)).c_str(), std::to_string(r.value("cpu_threads", 0u)).c_str(),
                  std::to_string(r.value("gpus", 0u)).c_str(), std::to_string(r.value("ranks", 1u)).c_str(),
                  peer.empty() ? "-" : peer.substr(0, 22).c_str(), r.value("last_heartbeat", "").substr(11, 8).c_str(),
                  Age(r.value("registered_ns", 0ll)).c_str());
    }
  } else if (noun == "chunks") {
    if (header) std::printf("%-40s %-10s %-28s %s\n", "NAME", "PACKETS", "MODEL", "STORED");
    for (const auto& r : rows) {
      std::printf("%-40s %-10s %-28s %s\n", r.value("chunk", "").substr(0, 40).c_str(),
                  std::to_string(r.value("packets", 0ull)).c_str(), r.value("model", "").substr(0, 28).c_str(),
                  std::to_string(r.value("stored_bytes", 0ull)).c_str());
    }
  } else if (noun == "models") {
    std::printf("%-30s %-9s %-30s %-6s %s\n", "NAME", "KIND", "PARENT", "DEPTH", "BYTES");
    for (const auto& r : rows) {
      std::printf("%-30s %-9s %-30s %-6s %s\n", r.value("id", "").substr(0, 30).c_str(), r.value("kind", "").c_str(),
                  r.value("parent", "").substr(0, 30).c_str(), std::to_string(r.value("depth", 0u)).c_str(),
                  std::to_string(r.value("blob_bytes", 0ull)).c_str());
    }
  } else {
    std::cout << j.dump(2) << "\n";
  }
}

StatusOr<wire::OperatorVerb> VerbOf(const std::string& v) {
  if (v == "get") return wire::OperatorVerb::kGet;
  if (v == "describe") return wire::OperatorVerb::kDescribe;
  if (v == "cancel") return wire::OperatorVerb::kCancel;
  if (v == "retry") return wire::OperatorVerb::kRetry;
  if (v == "retrain") return wire::OperatorVerb::kRetrain;
  if (v == "drain") return wire::OperatorVerb::kDrain;
  if (v == "generate") return wire::OperatorVerb::kGenerate;
  return absl::InvalidArgumentError(absl::StrCat("unknown verb ", v));
}

// "job 42" or "42": the id.
StatusOr<std::string> JobName(const std::vector<std::string>& words) {
  if (words.size() == 1) return words[0];
  if (words.size() == 2 && (words[0] == "job" || words[0] == "jobs")) return words[1];
  return absl::InvalidArgumentError("name one job: 'job ID' or 'ID'");
}

}  // namespace

void AddRemoteFlags(CLI::App* cmd, RemoteFlags* f) {
  const char* env = std::getenv("DGC_COORDINATOR");
  f->coordinator = env && *env ? env : "tcp://127.0.0.1:7071";
  cmd->add_option("--coordinator", f->coordinator, "the coordinator's --api endpoint (default $DGC_COORDINATOR)")
      ->capture_default_str();
  cmd->add_option("--curve-secret-key-file", f->secret_key_file, "this client's CurveZMQ secret key");
  cmd->add_option("--curve-server-key-file", f->server_key_file, "the coordinator's CurveZMQ public key");
  cmd->add_option("--timeout", f->timeout_seconds, "seconds to wait for the answer")->capture_default_str();
}

namespace {

// One request and its answer, parsed.
StatusOr<nlohmann::json> Ask(const RemoteFlags& f, const std::string& verb, const std::string& noun,
                             const std::string& name, const std::string& args_json) {
  DGC_ASSIGN_OR_RETURN(auto client, CoordinatorClient::Connect(f));
  DGC_ASSIGN_OR_RETURN(CoordinatorClient::Answer a, client->Call(verb, noun, name, args_json));
  return std::move(a.json);
}

}  // namespace

struct CoordinatorClient::Impl {
  RemoteFlags flags;
  std::unique_ptr<wire::ZmqContext> ctx;
  std::unique_ptr<wire::ZmqDealer> dealer;
  uint64_t next_request = 0;
};

CoordinatorClient::CoordinatorClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CoordinatorClient::~CoordinatorClient() {
  if (impl_) impl_->dealer.reset();  // before its context
}

StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Connect(const RemoteFlags& f) {
  DGC_ASSIGN_OR_RETURN(wire::SecurityOptions sec, runtime::ClientSecurity(f.secret_key_file, f.server_key_file, false));
  DGC_RETURN_IF_ERROR(runtime::CheckClientEndpoint(f.coordinator, sec));
  auto impl = std::make_unique<Impl>();
  impl->flags = f;
  DGC_ASSIGN_OR_RETURN(impl->ctx, wire::ZmqContext::Create());
  wire::SocketOptions so;
  so.security = sec;
  DGC_ASSIGN_OR_RETURN(impl->dealer, wire::ZmqDealer::Connect(*impl->ctx, f.coordinator, so));
  impl->next_request = std::random_device()();
  return std::unique_ptr<CoordinatorClient>(new CoordinatorClient(std::move(impl)));
}

StatusOr<CoordinatorClient::Answer> CoordinatorClient::Call(const std::string& verb, const std::string& noun,
                                                            const std::string& name, const std::string& args_json) {
  DGC_ASSIGN_OR_RETURN(wire::OperatorVerb v, VerbOf(verb));
  const RemoteFlags& f = impl_->flags;
  wire::OperatorRequest req;
  req.request_id = ++impl_->next_request;
  req.verb = v;
  req.noun = noun;
  req.name = name;
  req.args_json = args_json;
  DGC_RETURN_IF_ERROR(impl_->dealer->Send(req));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(f.timeout_seconds * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto in = impl_->dealer->Receive(static_cast<int>(std::max<int64_t>(1, left.count())));
    if (!in.ok()) return in.status();
    if (!in->has_value()) break;
    auto* r = std::get_if<wire::OperatorReply>(&(*in)->message);
    if (!r || r->request_id != req.request_id) continue;  // a late answer to an earlier request
    if (!r->ok) return absl::FailedPreconditionError(r->error);
    Answer a;
    a.json = nlohmann::json::parse(r->json, nullptr, false);
    if (a.json.is_discarded()) return absl::DataLossError("the coordinator's answer is not JSON");
    a.data = std::move(r->data);
    return a;
  }
  return absl::UnavailableError(absl::StrFormat(
      "no answer from the coordinator at %s within %g s (is it running? is this client's key allowed?)", f.coordinator,
      f.timeout_seconds));
}

Status RunRemote(const RemoteFlags& f, const std::string& verb, const std::string& noun, const std::string& name,
                 const std::string& args_json, const std::string& output) {
  if (output != "table" && output != "json") return absl::InvalidArgumentError("-o: use table or json");
  DGC_ASSIGN_OR_RETURN(nlohmann::json j, Ask(f, verb, noun, name, args_json));
  if (output == "json") {
    std::cout << j.dump(2) << "\n";
  } else {
    std::string table_noun = noun;
    if (verb == "cancel" || verb == "retry") table_noun = "jobs";
    if (verb == "drain") table_noun = "workers";
    PrintTable(table_noun, j);
  }
  return absl::OkStatus();
}

namespace {

// `get NOUN` by pages of `page_size`, printed as one table or one JSON array.
// `next(page_continue, after, page_was_empty, &done)` checks a page's
// cursor against the one it was asked after: an error when it does not move
// on (so the pages end), `done` after the last page.
Status RunGetPaged(const RemoteFlags& f, const std::string& noun, nlohmann::json args, uint64_t page_size,
                   const std::string& output, nlohmann::json after,
                   const std::function<Status(const nlohmann::json&, const nlohmann::json&, bool, bool*)>& next) {
  if (output != "table" && output != "json") return absl::InvalidArgumentError("-o: use table or json");
  if (page_size == 0) return RunRemote(f, "get", noun, "", args.dump(), output);
  const bool json = output == "json";
  args["limit"] = page_size;
  bool first = true;
  if (json) std::printf("[");
  for (;;) {
    args["after"] = after;
    DGC_ASSIGN_OR_RETURN(nlohmann::json page, Ask(f, "get", noun, "", args.dump()));
    const auto items = page.find("items");
    const auto cont = page.find("continue");
    if (!page.is_object() || items == page.end() || !items->is_array() || cont == page.end()) {
      return absl::FailedPreconditionError(absl::StrCat("the coordinator does not page its ", noun,
                                                        " (an older build?): use --chunk-size 0"));
    }
    if (json) {
      for (const auto& r : *items) {
        std::printf("%s\n  %s", first ? "" : ",", r.dump().c_str());
        first = false;
      }
    } else if (first || !items->empty()) {
      PrintTable(noun, *items, first);
      first = false;
    }
    std::fflush(stdout);
    bool done = false;
    DGC_RETURN_IF_ERROR(next(*cont, after, items->empty(), &done));
    if (done) break;
    after = *cont;
  }
  if (json) std::printf("%s]\n", first ? "" : "\n");
  return absl::OkStatus();
}

}  // namespace

Status RunGetJobs(const RemoteFlags& f, nlohmann::json args, uint64_t page_size, const std::string& output) {
  // Each page starts above the last id the one before looked at: ids only
  // grow, and 0 ends the listing.
  return RunGetPaged(f, "jobs", std::move(args), page_size, output, uint64_t{0},
                     [](const nlohmann::json& cont, const nlohmann::json& after, bool, bool* done) -> Status {
                       if (!cont.is_number_unsigned()) {
                         return absl::FailedPreconditionError(
                             "the coordinator does not page its jobs (an older build?): use --chunk-size 0");
                       }
                       const uint64_t c = cont.get<uint64_t>(), a = after.get<uint64_t>();
                       *done = c == 0;
                       if (!*done && c <= a) {
                         return absl::DataLossError(
                             absl::StrCat("the coordinator's next page starts at ", c, ", not after ", a));
                       }
                       return absl::OkStatus();
                     });
}

Status RunGetChunks(const RemoteFlags& f, nlohmann::json args, uint64_t page_size, const std::string& output) {
  // Each page starts after the last chunk of the one before, in key order;
  // null ends the listing.
  return RunGetPaged(f, "chunks", std::move(args), page_size, output, nullptr,
                     [](const nlohmann::json& cont, const nlohmann::json& after, bool empty, bool* done) -> Status {
                       *done = cont.is_null();
                       if (!*done && (cont == after || empty)) {
                         return absl::DataLossError(absl::StrCat(
                             "the coordinator's next page of chunks does not move on from ", cont.dump()));
                       }
                       return absl::OkStatus();
                     });
}

void RegisterRemoteCommands(CLI::App& app, int* exit_code) {
  struct Args {
    std::vector<std::string> words;
    std::string output = "table";
    uint32_t shard = 0;
    bool undo = false;
    RemoteFlags remote;
  };
  auto add = [&](const char* verb, const char* help, const char* what, const char* footer) {
    auto a = std::make_shared<Args>();
    CLI::App* cmd = app.add_subcommand(verb, help);
    cmd->add_option("name", a->words, what)->required();
    cmd->add_option("-o,--output", a->output, "table or json")->capture_default_str();
    AddRemoteFlags(cmd, &a->remote);
    cmd->footer(footer);
    return std::make_pair(cmd, a);
  };
  // The two verbs on one job.
  struct JobVerb {
    const char* verb;
    const char* help;
    const char* footer;
  };
  for (const JobVerb& v :
       {JobVerb{"cancel", "cancel a queued or running job (its result, if any, is discarded)",
                "Examples:\n  dgcctl cancel job 42\n  dgcctl cancel 42 --coordinator tcp://10.0.0.5:7071"},
        JobVerb{"retry", "queue a failed or cancelled job again",
                "Examples:\n  dgcctl get jobs --state failed\n  dgcctl retry job 42"}}) {
    auto [cmd, a] = add(v.verb, v.help, "job ID", v.footer);
    cmd->callback([a = a, exit_code, verb = v.verb] {
      auto name = JobName(a->words);
      Status st = name.ok() ? RunRemote(a->remote, verb, "jobs", *name, "", a->output) : name.status();
      if (!st.ok()) Fail(verb, st, exit_code);
    });
  }
  {
    auto [cmd, a] = add("retrain", "train a new base for a link from its next chunk", "LINK",
                        "Examples:\n  dgcctl retrain tap0\n  dgcctl retrain tap0 --shard 1");
    cmd->add_option("--shard", a->shard, "the shard of a sharded link")->capture_default_str();
    cmd->callback([a = a, exit_code] {
      Status st = a->words.size() == 1
                      ? RunRemote(a->remote, "retrain", "links", a->words[0],
                                  nlohmann::json{{"shard", a->shard}}.dump(), a->output)
                      : absl::InvalidArgumentError("name one link");
      if (!st.ok()) Fail("retrain", st, exit_code);
    });
  }
  {
    auto [cmd, a] = add("drain", "stop giving a worker new jobs (its running jobs finish)", "WORKER",
                        "Examples:\n  dgcctl drain worker-3\n  dgcctl drain worker-3 --undo");
    cmd->add_flag("--undo", a->undo, "give the worker work again");
    cmd->callback([a = a, exit_code] {
      std::string name = a->words.size() == 2 && a->words[0] == "worker" ? a->words[1] : a->words[0];
      Status st = a->words.size() <= 2 ? RunRemote(a->remote, "drain", "workers", name,
                                                   nlohmann::json{{"undo", a->undo}}.dump(), a->output)
                                       : absl::InvalidArgumentError("name one worker");
      if (!st.ok()) Fail("drain", st, exit_code);
    });
  }
  {
    struct KeygenArgs {
      std::string name, out = ".";
    };
    auto k = std::make_shared<KeygenArgs>();
    CLI::App* cmd = app.add_subcommand("keygen", "write a CurveZMQ key pair: DIR/NAME.key (0600) and DIR/NAME.pub");
    cmd->add_option("name", k->name, "key name (e.g. coordinator, worker-1)")->required();
    cmd->add_option("--out", k->out, "directory")->capture_default_str();
    cmd->footer(R"(Give the coordinator its .key and a directory of the clients' .pub files
(--curve-allow-dir); give each client its .key and the coordinator's .pub.

Examples:
  dgcctl keygen coordinator --out keys/
  dgcctl keygen worker-1 --out keys/ && cp keys/worker-1.pub allowed/)");
    cmd->callback([k, exit_code] {
      auto run = [&]() -> Status {
        DGC_RETURN_IF_ERROR(MakeDirs(k->out));
        DGC_ASSIGN_OR_RETURN(wire::CurveKeyPair pair, wire::GenerateCurveKeyPair());
        std::string key = k->out + "/" + k->name + ".key", pub = k->out + "/" + k->name + ".pub";
        DGC_RETURN_IF_ERROR(WriteFileAtomic(key, pair.secret_key + "\n"));
        if (chmod(key.c_str(), 0600) != 0) return absl::InternalError(absl::StrCat("chmod ", key));
        DGC_RETURN_IF_ERROR(WriteFileAtomic(pub, pair.public_key + "\n"));
        std::cout << "wrote " << key << " (secret, mode 0600) and " << pub << "\n";
        return absl::OkStatus();
      };
      Status st = run();
      if (!st.ok()) Fail("keygen", st, exit_code);
    });
  }
}

}  // namespace dgc::ctl

// dgcctl verbs. Each Register*Command adds one subcommand to the app and
// wires its callback; the callback sets *exit_code (0 success, 1 error) and
// prints errors on stderr only.
#ifndef DGC_COORDINATOR_DGCCTL_COMMANDS_H_
#define DGC_COORDINATOR_DGCCTL_COMMANDS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace dgc::ctl {

void RegisterEvalCommand(CLI::App& app, int* exit_code);      // cmd_eval.cc
void RegisterBaselineCommand(CLI::App& app, int* exit_code);  // cmd_baseline.cc
void RegisterStorageCommand(CLI::App& app, int* exit_code);   // cmd_storage.cc
void RegisterSynthTraceCommand(CLI::App& app, int* exit_code);  // cmd_synth_trace.cc
void RegisterWarmupCommand(CLI::App& app, int* exit_code);      // cmd_compress.cc
void RegisterCompressCommand(CLI::App& app, int* exit_code);    // cmd_compress.cc
void RegisterGenerateCommand(CLI::App& app, int* exit_code);    // cmd_generate.cc
void RegisterStatsCommand(CLI::App& app, int* exit_code);       // cmd_stats.cc
// lineage, get, describe, expire on a RocksDB model library.
void RegisterLibraryCommands(CLI::App& app, int* exit_code);    // cmd_library.cc
// cancel, retry, retrain, drain against a coordinator; keygen.
void RegisterRemoteCommands(CLI::App& app, int* exit_code);     // cmd_remote.cc

// How a verb reaches a coordinator's operator API (cmd_remote.cc).
struct RemoteFlags {
  std::string coordinator;  // default: $DGC_COORDINATOR, else tcp://127.0.0.1:7071
  std::string secret_key_file, server_key_file;
  double timeout_seconds = 10;
};
void AddRemoteFlags(CLI::App* cmd, RemoteFlags* flags);
// Sends one request (verb: get, describe, cancel, retry, retrain, drain) and
// prints the answer as a table or JSON on stdout. Errors: no answer within
// the timeout (Unavailable), the coordinator's refusal (its message).
[[nodiscard]] absl::Status RunRemote(const RemoteFlags& flags, const std::string& verb, const std::string& noun,
                                     const std::string& name, const std::string& args_json,
                                     const std::string& output);
// `get jobs` a page at a time: pages of `page_size` jobs (0: the whole store
// in one answer), each printed as it comes (one table, or one JSON array of
// every job). `args` holds the filters (state, link).
// A connection to a coordinator's operator API kept across requests (dgcctl
// generate --coordinator asks many). Call waits flags.timeout_seconds for each
// answer; a refusal is FailedPrecondition with the coordinator's message.
class CoordinatorClient {
 public:
  struct Answer {
    nlohmann::json json;
    std::string data;  // the reply's binary part (generate fetch: packets)
  };
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CoordinatorClient>> Connect(const RemoteFlags& flags);
  ~CoordinatorClient();
  [[nodiscard]] absl::StatusOr<Answer> Call(const std::string& verb, const std::string& noun, const std::string& name,
                                            const std::string& args_json);

 private:
  struct Impl;
  explicit CoordinatorClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};
[[nodiscard]] absl::Status RunGetJobs(const RemoteFlags& flags, nlohmann::json args, uint64_t page_size,
                                      const std::string& output);
// `get chunks` from a coordinator, `page_size` a page (0: one answer).
[[nodiscard]] absl::Status RunGetChunks(const RemoteFlags& flags, nlohmann::json args, uint64_t page_size,
                                        const std::string& output);

}  // namespace dgc::ctl

#endif  // DGC_COORDINATOR_DGCCTL_COMMANDS_H_

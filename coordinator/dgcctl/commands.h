// dgcctl verbs. Each Register*Command adds one subcommand to the app and
// wires its callback; the callback sets *exit_code (0 success, 1 error) and
// prints errors on stderr only.
#ifndef DGC_COORDINATOR_DGCCTL_COMMANDS_H_
#define DGC_COORDINATOR_DGCCTL_COMMANDS_H_

#include "CLI/CLI.hpp"

namespace dgc::ctl {

void RegisterEvalCommand(CLI::App& app, int* exit_code);      // cmd_eval.cc
void RegisterBaselineCommand(CLI::App& app, int* exit_code);  // cmd_baseline.cc
void RegisterStorageCommand(CLI::App& app, int* exit_code);   // cmd_storage.cc
void RegisterSynthTraceCommand(CLI::App& app, int* exit_code);  // cmd_synth_trace.cc
void RegisterWarmupCommand(CLI::App& app, int* exit_code);      // cmd_compress.cc
void RegisterCompressCommand(CLI::App& app, int* exit_code);    // cmd_compress.cc
void RegisterGenerateCommand(CLI::App& app, int* exit_code);    // cmd_generate.cc
// lineage, get, describe, expire on a RocksDB model library.
void RegisterLibraryCommands(CLI::App& app, int* exit_code);    // cmd_library.cc

}  // namespace dgc::ctl

#endif  // DGC_COORDINATOR_DGCCTL_COMMANDS_H_

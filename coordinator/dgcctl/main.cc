// dgcctl: the operator CLI of dgc.
#include "CLI/CLI.hpp"
#include "common/base/logging.h"
#include "coordinator/dgcctl/commands.h"

// Verbs whose cmd_*.cc is not built yet are weak, so the CLI links with
// whatever subset exists.
namespace dgc::ctl {
__attribute__((weak)) void RegisterEvalCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterBaselineCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterStorageCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterSynthTraceCommand(CLI::App&, int*);
}  // namespace dgc::ctl

int main(int argc, char** argv) {
  CLI::App app{"dgcctl: operate dgc, deep generative compression of packet traces"};
  app.footer(R"(Examples:
  dgcctl eval real.pcap synth.pcap                  score a synthetic trace (17 metrics)
  dgcctl eval real.pcap synth.pcap --report r.html  the same, with plots in one HTML file
  dgcctl baseline --method flows real.pcap -o flows.pcap
  dgcctl storage real.pcap                          bytes and dollars per storage method

Run 'dgcctl VERB --help' for the options of each verb.)");
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  int exit_code = 0;
  using namespace dgc::ctl;
  if (RegisterEvalCommand) RegisterEvalCommand(app, &exit_code);
  if (RegisterBaselineCommand) RegisterBaselineCommand(app, &exit_code);
  if (RegisterStorageCommand) RegisterStorageCommand(app, &exit_code);
  if (RegisterSynthTraceCommand) RegisterSynthTraceCommand(app, &exit_code);
  app.parse_complete_callback([&] { dgc::InitLogging("dgcctl", log_level); });
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}

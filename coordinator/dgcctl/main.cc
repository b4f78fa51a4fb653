// dgcctl: the operator CLI of dgc.
#include <iostream>

#include "CLI/CLI.hpp"
#include "common/base/logging.h"
#include "common/runtime/process.h"
#include "coordinator/dgcctl/commands.h"

// Verbs whose cmd_*.cc is not built yet are weak, so the CLI links with
// whatever subset exists.
namespace dgc::ctl {
__attribute__((weak)) void RegisterEvalCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterBaselineCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterStorageCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterSynthTraceCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterWarmupCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterCompressCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterGenerateCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterStatsCommand(CLI::App&, int*);
__attribute__((weak)) void RegisterLibraryCommands(CLI::App&, int*);
__attribute__((weak)) void RegisterRemoteCommands(CLI::App&, int*);
}  // namespace dgc::ctl

int main(int argc, char** argv) {
  CLI::App app{"dgcctl: operate dgc, deep generative compression of packet traces"};
  app.footer(R"(Examples:
  dgcctl compress trace.pcap --library lib/         compress a trace into a model library
  dgcctl generate --library lib/ -o synth.pcap      regenerate it as a synthetic pcap
  dgcctl eval real.pcap synth.pcap                  score a synthetic trace (17 metrics)
  dgcctl eval real.pcap synth.pcap --report r.html  the same, with plots in one HTML file
  dgcctl baseline --method flows real.pcap -o flows.pcap
  dgcctl storage real.pcap                          bytes and dollars per storage method
  dgcctl storage --library lib/                     bytes a library keeps, by kind, against raw
  dgcctl get chunks --library lib/ --since "1d ago" chunks of a time range (also: get models)
  dgcctl describe chunk tap0@2024-03-09T14:10:00Z --library lib/
  dgcctl lineage MODEL --library lib/               a model's chain to its base, and descendants
  dgcctl expire --library lib/ --max-age 90d --dry-run
  dgcctl stats --library lib/ --every 5m             packets, bytes, flows, distinct hosts per window (exact)
  dgcctl check --library lib/                       name every damaged chunk and model (exit 1 if any)
  dgcctl get jobs --coordinator tcp://127.0.0.1:7071   jobs of a running coordinator (also: workers)
  dgcctl cancel job 42; dgcctl retry job 42; dgcctl drain worker-3; dgcctl retrain tap0
  dgcctl keygen worker-1 --out keys/                a CurveZMQ key pair

Run 'dgcctl VERB --help' for the options of each verb.)");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(dgc::runtime::Version()));
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  int exit_code = 0;
  using namespace dgc::ctl;
  if (RegisterCompressCommand) RegisterCompressCommand(app, &exit_code);
  if (RegisterGenerateCommand) RegisterGenerateCommand(app, &exit_code);
  if (RegisterStatsCommand) RegisterStatsCommand(app, &exit_code);
  if (RegisterWarmupCommand) RegisterWarmupCommand(app, &exit_code);
  if (RegisterEvalCommand) RegisterEvalCommand(app, &exit_code);
  if (RegisterBaselineCommand) RegisterBaselineCommand(app, &exit_code);
  if (RegisterStorageCommand) RegisterStorageCommand(app, &exit_code);
  if (RegisterSynthTraceCommand) RegisterSynthTraceCommand(app, &exit_code);
  if (RegisterLibraryCommands) RegisterLibraryCommands(app, &exit_code);
  if (RegisterRemoteCommands) RegisterRemoteCommands(app, &exit_code);
  app.parse_complete_callback([&] { dgc::InitLogging("dgcctl", log_level); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // --help: usage on stdout, exit 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion&) {
    std::cout << "dgcctl " << dgc::runtime::Version() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    // kubectl convention: errors on stderr, exit 1 (CLI11 would use its own codes).
    std::cerr << "dgcctl: " << e.what() << "\n"
              << "Run 'dgcctl --help' (or 'dgcctl VERB --help') for usage.\n";
    return 1;
  }
  return exit_code;
}

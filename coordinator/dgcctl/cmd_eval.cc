// dgcctl eval REAL [SYNTH]: scores a synthetic trace against the real one with
// the metrics of METRICS.md (common/eval).
#include <iostream>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "common/eval/metrics.h"
#include "common/eval/report_html.h"
#include "common/eval/report_text.h"
#include "coordinator/dgcctl/commands.h"
#include "spdlog/spdlog.h"

namespace dgc::ctl {
namespace {

struct EvalFlags {
  std::string real;
  std::string synth;
  std::string output = "table";
  bool floor = false;
  std::string report;
};

// Loads one side; on failure prints why on stderr and returns nullopt.
std::optional<eval::Trace> Load(const std::string& role, const std::string& path) {
  StatusOr<eval::Trace> t = eval::LoadTrace(path);
  if (!t.ok()) {
    std::cerr << "dgcctl eval: cannot read " << role << " trace: " << t.status().message() << "\n";
    return std::nullopt;
  }
  for (const std::string& w : t->stats.warnings) {
    spdlog::warn("{} trace: {}", role, w);
  }
  return std::move(*t);
}

int RunEval(const EvalFlags& f) {
  if (f.synth.empty() && !f.floor) {
    std::cerr << "dgcctl eval: SYNTH is required unless --floor is given\n";
    return 1;
  }
  std::optional<eval::Trace> real = Load("real", f.real);
  if (!real) return 1;
  if (real->packets.empty()) {
    std::cerr << "dgcctl eval: real trace " << f.real
              << " has no IPv4/IPv6 packets: there is nothing to score against\n";
    return 1;
  }
  eval::EvalOptions opt;
  opt.floor = f.floor;
  opt.plot_data = !f.report.empty();
  eval::EvalReport report;
  if (f.synth.empty()) {
    report = eval::EvaluateFloor(*real, opt);
  } else {
    std::optional<eval::Trace> synth = Load("synthetic", f.synth);
    if (!synth) return 1;
    report = eval::Evaluate(*real, *synth, opt);
  }
  if (!f.report.empty()) {
    Status st = eval::WriteHtmlReport(report, f.report);
    if (!st.ok()) {
      std::cerr << "dgcctl eval: cannot write report: " << st.message() << "\n";
      return 1;
    }
  }
  std::cout << (f.output == "json" ? eval::FormatJson(report) : eval::FormatTable(report));
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "dgcctl eval: cannot write to standard output\n";
    return 1;
  }
  return 0;
}

}  // namespace

void RegisterEvalCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score a synthetic trace against the real one (the 17 metrics of METRICS.md)");
  cmd->add_option("REAL", flags->real, "the real capture (pcap or pcapng, any link type)")
      ->required();
  cmd->add_option("SYNTH", flags->synth, "the synthetic capture; may be omitted with --floor");
  cmd->add_option("-o,--output", flags->output, "table (aligned text) or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->add_flag("--floor", flags->floor,
                "also score the real trace against itself, split in two halves by flow hash: "
                "what two samples of the same traffic score");
  cmd->add_option("--report", flags->report,
                  "write a self-contained HTML report (plots of every metric) to this file");
  cmd->footer(R"(Scores are Jensen-Shannon distances (base 2) in [0, 1]: 0 is identical, 1 is
disjoint. Metrics with no values in the real trace are n/a and left out of the mean.
The JSON fields are documented in common/eval/EVAL_JSON.md.

Examples:
  dgcctl eval real.pcap synth.pcap                   the table
  dgcctl eval real.pcap synth.pcap -o json           the same as JSON
  dgcctl eval real.pcap synth.pcap --floor           with the real-vs-real floor beside it
  dgcctl eval real.pcap --floor                      the floor alone
  dgcctl eval real.pcap synth.pcap --report r.html   with plots in one HTML file)");
  cmd->callback([flags, exit_code] { *exit_code = RunEval(*flags); });
}

}  // namespace dgc::ctl

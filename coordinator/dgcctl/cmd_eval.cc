// dgcctl eval REAL [SYNTH]: scores a synthetic trace against the real one with
// the metrics of METRICS.md (common/eval).
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "common/eval/metrics.h"
#include "common/eval/netflow_view.h"
#include "common/eval/report_html.h"
#include "common/eval/report_text.h"
#include "coordinator/dgcctl/commands.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace dgc::ctl {
namespace {

struct EvalFlags {
  std::string real;
  std::string synth;
  std::string output = "table";
  bool floor = false;
  std::string report;
  bool netflow = false;
};

nlohmann::json NetflowJson(const eval::NetflowView& v) {
  return {{"figure", v.figure}, {"medians", v.medians}, {"window_s", v.window_s}, {"windows", v.windows},
          {"real_records", v.real_records}, {"synth_records", v.synth_records},
          {"top10_dport_share", v.top10_dport_share}};
}

std::string NetflowTable(const eval::NetflowView& v) {
  std::string out = absl::StrFormat(
      "\nNetFlow view (nfpcapd -e 300,60; %.0f s windows, %d active; relative error, median over windows)\n",
      v.window_s, v.windows);
  out += absl::StrFormat("  %-8s %8s\n", "field", "median");
  for (const char* k : {"flows", "packets", "bytes", "src", "dst", "dport"}) {
    auto it = v.medians.find(k);
    out += absl::StrFormat("  %-8s %8.3f\n", k, it == v.medians.end() ? 0.0 : it->second);
  }
  out += absl::StrFormat("  figure   %8.3f   (mean of the six; 0: the same NetFlow statistics)\n", v.figure);
  out += absl::StrFormat("  records  real %d, synthetic %d; real top-10 destination ports in the synthetic top 10: %.0f%%\n",
                         v.real_records, v.synth_records, v.top10_dport_share * 100);
  return out;
}

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
  std::optional<eval::NetflowView> netflow;
  if (f.netflow) {
    if (f.synth.empty()) {
      std::cerr << "dgcctl eval: --netflow needs SYNTH\n";
      return 1;
    }
    auto v = eval::NetflowViewOf(f.real, f.synth);
    if (!v.ok()) {
      std::cerr << "dgcctl eval: NetFlow view: " << v.status().message() << "\n";
      return 1;
    }
    netflow = std::move(*v);
  }
  if (!f.report.empty()) {
    Status st = eval::WriteHtmlReport(report, f.report);
    if (!st.ok()) {
      std::cerr << "dgcctl eval: cannot write report: " << st.message() << "\n";
      return 1;
    }
  }
  if (f.output == "json") {
    std::string text = eval::FormatJson(report);
    if (netflow) {
      nlohmann::json j = nlohmann::json::parse(text);
      j["netflow"] = NetflowJson(*netflow);
      text = j.dump(2) + "\n";
    }
    std::cout << text;
  } else {
    std::cout << eval::FormatTable(report) << (netflow ? NetflowTable(*netflow) : "");
  }
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
  cmd->add_flag("--netflow", flags->netflow,
                "also the NetFlow view (METRICS.md): both traces through nfdump's nfpcapd, then per 300 s window "
                "the relative error of flows, packets, bytes and distinct sources, destinations and destination "
                "ports (needs nfdump and editcap)");
  cmd->footer(R"(Scores are Jensen-Shannon distances (base 2) in [0, 1]: 0 is identical, 1 is
disjoint. Metrics with no values in the real trace are n/a and left out of the mean.
The JSON fields are documented in common/eval/EVAL_JSON.md.

Examples:
  dgcctl eval real.pcap synth.pcap                   the table
  dgcctl eval real.pcap synth.pcap -o json           the same as JSON
  dgcctl eval real.pcap synth.pcap --floor           with the real-vs-real floor beside it
  dgcctl eval real.pcap --floor                      the floor alone
  dgcctl eval real.pcap synth.pcap --report r.html   with plots in one HTML file
  dgcctl eval real.pcap synth.pcap --netflow         with what nfdump reads of both)");
  cmd->callback([flags, exit_code] { *exit_code = RunEval(*flags); });
}

}  // namespace dgc::ctl

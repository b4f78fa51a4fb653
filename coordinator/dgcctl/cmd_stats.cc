// dgcctl stats: a link's history per window from the library's skeletons
// alone (library/window_series.h): packets, bytes, new flows and distinct
// counts, without rebuilding a model or sampling a packet.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/base/files.h"
#include "common/base/time.h"
#include "common/eval/report_html.h"
#include "coordinator/dgcctl/commands.h"
#include "library/rocksdb_model_library.h"
#include "library/window_series.h"
#include "nlohmann/json.hpp"

namespace dgc::ctl {
namespace {

struct StatsArgs {
  std::string library, link, since, until, every = "5m", output = "table", time_format = "rfc3339", report;
  bool skip_damaged = false;
};

std::string Start(int64_t ns, const std::string& format) {
  return format == "epoch" ? absl::StrCat(ns / 1000000000) : FormatRfc3339(ns);
}

// "12" when exact (or the bounds meet), "12-15" for bounds, "-" when unknown.
std::string Distinct(uint32_t lo, uint32_t hi, bool exact, bool known) {
  if (!known) return "-";
  return exact || lo == hi ? absl::StrCat(lo) : absl::StrCat(lo, "-", hi);
}

std::string Volume(double v, bool exact) {
  return exact ? absl::StrFormat("%.0f", v) : absl::StrFormat("~%.0f", v);
}

Status RunStats(const StatsArgs& a) {
  if (a.output != "table" && a.output != "csv" && a.output != "json") {
    return absl::InvalidArgumentError(absl::StrCat("-o '", a.output, "': use table, csv or json"));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t now = absl::ToUnixNanos(absl::Now());
  ChunkQuery range;
  if (!a.since.empty()) {
    DGC_ASSIGN_OR_RETURN(range.since_ns, ParseTime(a.since, now));
  }
  if (!a.until.empty()) {
    DGC_ASSIGN_OR_RETURN(range.until_ns, ParseTime(a.until, now));
  }
  if (range.until_ns <= range.since_ns) return absl::InvalidArgumentError("--until must be after --since");
  DGC_ASSIGN_OR_RETURN(int64_t every, ParseDurationNs(a.every));
  if (every <= 0) return absl::InvalidArgumentError("--every must be positive (e.g. 60s, 5m, 1h)");
  RocksDbModelLibrary::Options lo;
  lo.read_only = true;
  DGC_ASSIGN_OR_RETURN(auto lib, RocksDbModelLibrary::Open(a.library, lo));
  auto series = library::WindowSeriesOf(*lib, a.link, range, every, a.skip_damaged);
  if (!series.ok() && absl::IsDataLoss(series.status()) && !a.skip_damaged) {
    return absl::DataLossError(absl::StrCat(series.status().message(), "; --skip-damaged leaves its windows short"));
  }
  DGC_RETURN_IF_ERROR(series.status());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& d : series->damaged) {
    std::cerr << "dgcctl stats: warning: chunk " << d.name << " is damaged (" << d.error
              << "): its traffic is missing from its windows\n";
  }
  bool all_volume_exact = true, all_distinct_exact = true;
  for (const auto& r : series->rows) {
    all_volume_exact = all_volume_exact && r.volume_exact;
    all_distinct_exact = all_distinct_exact && r.distinct_exact && r.distinct_known;
  }
  const std::string exactness = absl::StrCat(
      "Read from the chunks' skeletons, nothing from the model. packets, bytes, new flows: exact",
      all_volume_exact ? "" : " (~: a skeleton bin straddles a window edge, split by time)",
      ". Distinct counts: ",
      all_distinct_exact ? "exact"
                         : "exact where one number; LO-HI bounds where a window spans several 60 s structure "
                           "windows of a chunk, or several chunks or shards ('-': a chunk without them)",
      ".");

  std::string text;  // table or csv
  if (a.output == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : series->rows) {
      auto d = [&](uint32_t lo, uint32_t hi) -> nlohmann::json {
        if (!r.distinct_known) return nullptr;
        return r.distinct_exact || lo == hi ? nlohmann::json(lo) : nlohmann::json({{"min", lo}, {"max", hi}});
      };
      rows.push_back({{"start", a.time_format == "epoch" ? nlohmann::json(r.start_ns / 1000000000)
                                                         : nlohmann::json(FormatRfc3339(r.start_ns))},
                      {"packets", r.packets},
                      {"bytes", r.bytes},
                      {"new_flows", r.new_flows},
                      {"volume_exact", r.volume_exact},
                      {"srcs", d(r.distinct_lo.srcs, r.distinct_hi.srcs)},
                      {"dsts", d(r.distinct_lo.dsts, r.distinct_hi.dsts)},
                      {"pairs", d(r.distinct_lo.pairs, r.distinct_hi.pairs)},
                      {"five_tuples", d(r.distinct_lo.five_tuples, r.distinct_hi.five_tuples)},
                      {"distinct_exact", r.distinct_exact && r.distinct_known},
                      {"chunks", r.chunks}});
    }
    nlohmann::json j = {{"library", a.library},
                        {"links", series->links},
                        {"every_s", every / 1e9},
                        {"chunks_read", series->chunks},
                        {"seconds", secs},
                        {"exactness", exactness},
                        {"rows", rows}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (a.output == "csv") {
    absl::StrAppend(&text,
                    "start,packets,bytes,new_flows,volume_exact,srcs,srcs_max,dsts,dsts_max,pairs,pairs_max,"
                    "five_tuples,five_tuples_max,distinct_exact,chunks\n");
    for (const auto& r : series->rows) {
      auto d = [&](uint32_t lo, uint32_t hi) {
        return r.distinct_known ? absl::StrCat(lo, ",", hi) : std::string(",");
      };
      auto v = [&](double x) { return r.volume_exact ? absl::StrFormat("%.0f", x) : absl::StrFormat("%.1f", x); };
      absl::StrAppend(&text, Start(r.start_ns, a.time_format), ",", v(r.packets), ",", v(r.bytes), ",",
                      v(r.new_flows), ",",
                      r.volume_exact ? 1 : 0, ",", d(r.distinct_lo.srcs, r.distinct_hi.srcs), ",",
                      d(r.distinct_lo.dsts, r.distinct_hi.dsts), ",", d(r.distinct_lo.pairs, r.distinct_hi.pairs),
                      ",", d(r.distinct_lo.five_tuples, r.distinct_hi.five_tuples), ",",
                      r.distinct_exact && r.distinct_known ? 1 : 0, ",", r.chunks, "\n");
    }
    std::fputs(text.c_str(), stdout);
  } else {
    absl::StrAppend(&text, absl::StrFormat("%-22s %10s %12s %9s %11s %11s %11s %11s\n", "START", "PACKETS", "BYTES",
                                           "NEW FLOWS", "SRCS", "DSTS", "PAIRS", "5-TUPLES"));
    for (const auto& r : series->rows) {
      const bool e = r.distinct_exact, k = r.distinct_known;
      absl::StrAppend(&text, absl::StrFormat("%-22s %10s %12s %9s %11s %11s %11s %11s\n",
                                             Start(r.start_ns, a.time_format), Volume(r.packets, r.volume_exact),
                                             Volume(r.bytes, r.volume_exact), Volume(r.new_flows, r.volume_exact),
                                             Distinct(r.distinct_lo.srcs, r.distinct_hi.srcs, e, k),
                                             Distinct(r.distinct_lo.dsts, r.distinct_hi.dsts, e, k),
                                             Distinct(r.distinct_lo.pairs, r.distinct_hi.pairs, e, k),
                                             Distinct(r.distinct_lo.five_tuples, r.distinct_hi.five_tuples, e, k)));
    }
    std::fputs(text.c_str(), stdout);
    std::printf("\n%zu windows of %s from %llu chunk(s) of %s in %.1f ms\n%s\n", series->rows.size(), a.every.c_str(),
                static_cast<unsigned long long>(series->chunks), absl::StrJoin(series->links, ", ").c_str(),
                secs * 1e3, exactness.c_str());
  }
  if (!a.report.empty()) {
    std::vector<eval::TimeSeriesPlot> plots;
    auto plot = [&](const char* id, const char* title) {
      eval::TimeSeriesPlot p;
      p.id = id;
      p.title = title;
      p.step_s = every / 1e9;
      for (const auto& r : series->rows) p.x_unix_s.push_back(r.start_ns / 1e9);
      return p;
    };
    auto volume = [&](const char* id, const char* title, double library::SeriesRow::*field) {
      auto p = plot(id, title);
      p.solid_name = "exact";
      for (const auto& r : series->rows) p.solid.push_back(r.*field);
      plots.push_back(std::move(p));
    };
    volume("stats-packets", "packets per window", &library::SeriesRow::packets);
    volume("stats-bytes", "bytes per window", &library::SeriesRow::bytes);
    volume("stats-new-flows", "new flows per window", &library::SeriesRow::new_flows);
    auto distinct = [&](const char* id, const char* title, uint32_t model::WindowStats::*field) {
      auto p = plot(id, title);
      p.solid_name = all_distinct_exact ? "exact" : "at least";
      if (!all_distinct_exact) p.dashed_name = "at most";
      for (const auto& r : series->rows) {
        p.solid.push_back(r.distinct_lo.*field);
        p.dashed.push_back(r.distinct_hi.*field);
      }
      plots.push_back(std::move(p));
    };
    distinct("stats-srcs", "distinct sources per window", &model::WindowStats::srcs);
    distinct("stats-dsts", "distinct destinations per window", &model::WindowStats::dsts);
    distinct("stats-pairs", "distinct (source, destination) pairs per window", &model::WindowStats::pairs);
    distinct("stats-five-tuples", "distinct 5-tuples per window", &model::WindowStats::five_tuples);
    const std::string title = absl::StrCat("dgc stats: ", absl::StrJoin(series->links, ", "), ", windows of ", a.every);
    DGC_RETURN_IF_ERROR(WriteFileAtomic(
        a.report, eval::RenderTimeSeriesHtml(title, {exactness, absl::StrCat("library ", a.library)}, plots, text)));
    std::cerr << "dgcctl stats: wrote " << a.report << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterStatsCommand(CLI::App& app, int* exit_code) {
  auto sa = std::make_shared<StatsArgs>();
  CLI::App* cmd = app.add_subcommand("stats", "a link's packets, bytes, flows and distinct hosts per window, exact, "
                                              "without regenerating");
  cmd->add_option("--library", sa->library, "model library directory")->required();
  cmd->add_option("--link", sa->link, "only this link, with its shards LINK#i (default: every link)");
  cmd->add_option("--since", sa->since, "start of the range (RFC 3339, epoch seconds, or '3d ago')");
  cmd->add_option("--until", sa->until, "end of the range (exclusive)");
  cmd->add_option("--every", sa->every, "window length, windows aligned to the epoch as nfdump's are (60s, 5m, 1h)")
      ->capture_default_str();
  cmd->add_option("-o,--output", sa->output, "table, csv or json")->capture_default_str();
  cmd->add_option("--time-format", sa->time_format, "the start column: rfc3339 or epoch (seconds)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rfc3339", "epoch"}));
  cmd->add_option("--report", sa->report, "also write an HTML page plotting every series");
  cmd->add_flag("--skip-damaged", sa->skip_damaged,
                "leave out a chunk whose record fails its checksums, and say so, instead of stopping");
  cmd->footer(R"(Every figure comes from what dgc keeps exactly beside the model (each chunk's
skeleton), none from the model, so a day of a link answers in milliseconds:
  packets, bytes, new flows  exact (summed skeleton bins of at most 1 s; '~'
                             where a bin straddles a window edge)
  srcs, dsts, pairs, 5-tuples  distinct over the flows active in the window:
                             exact for 60 s windows (the skeleton's structure
                             windows) and for a window holding one whole
                             chunk; otherwise LO-HI bounds (at least the
                             busiest minute, at most the sum of the minutes)
A window that spans several chunks (or shards LINK#i) gives bounds for its
distinct counts, since a host may appear in both. 'new flows' counts a flow
in each chunk it has packets in. A window some chunk covers is listed even
with zeros; windows no chunk covers (nothing was kept there) are left out.

Examples:
  dgcctl stats --library lib/ --link tap0 --since 2024-03-09T00:00:00Z --until 2024-03-10T00:00:00Z
  dgcctl stats --library lib/ --every 60s -o csv --time-format epoch > tap0.csv
  dgcctl stats --library lib/ --every 1h --report stats.html)");
  cmd->callback([sa, exit_code] {
    Status s = RunStats(*sa);
    if (!s.ok()) {
      std::cerr << "dgcctl stats: error: " << s.message() << "\n";
      *exit_code = 1;
    }
  });
}

}  // namespace dgc::ctl

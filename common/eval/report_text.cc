#include "common/eval/report_text.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace dgc::eval {
namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kWidth = 100;

Json Opt(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

Json CountsJson(const TraceCounts& c) {
  Json j;
  j["path"] = c.name;
  j["link"] = c.link;
  j["frames"] = c.frames;
  j["ip_packets"] = c.ip_packets;
  j["non_ip"] = c.non_ip;
  j["malformed"] = c.malformed;
  j["unsupported_link"] = c.unsupported_link;
  j["corrupt_records"] = c.corrupt_records;
  j["bytes"] = c.bytes;
  j["flows"] = c.flows;
  j["distinct_src"] = c.distinct_src;
  j["distinct_dst"] = c.distinct_dst;
  j["first_ts"] = static_cast<double>(c.first_ts_ns) / 1e9;
  j["first_ts_ns"] = c.first_ts_ns;
  j["span_s"] = static_cast<double>(c.span_ns) / 1e9;
  j["warnings"] = c.warnings;
  return j;
}

Json UseCaseJson(const UseCase& u) {
  auto es = [](const ErrorStats& e) {
    Json j;
    j["median"] = e.median;
    j["p95"] = e.p95;
    return j;
  };
  Json j;
  j["window_s"] = u.window_s;
  j["windows"] = u.windows;
  j["active_windows"] = u.active_windows;
  j["packets"] = es(u.packets);
  j["bytes"] = es(u.bytes);
  j["src"] = es(u.src);
  j["dst"] = es(u.dst);
  j["pairs"] = es(u.pairs);
  j["tuples"] = es(u.tuples);
  return j;
}

Json ScoresJson(const Scores& s, bool with_values) {
  Json j;
  j["scored"] = s.scored;
  j["mean"] = Opt(s.mean);
  j["worst"] = Opt(s.worst);
  j["worst_metric"] = s.worst_metric >= 0 ? Json(Info(s.worst_metric).name) : Json(nullptr);
  Json m = Json::object();
  for (int i = 0; i < kNumMetrics; ++i) m[Info(i).name] = Opt(s.metrics[i].jsd);
  j["metrics"] = m;
  if (with_values) {
    Json v = Json::object();
    for (int i = 0; i < kNumMetrics; ++i) {
      v[Info(i).name] = {{"real", s.metrics[i].real_values}, {"synth", s.metrics[i].synth_values}};
    }
    j["values"] = v;
  }
  j["use_case"] = {{"w", UseCaseJson(s.w)}, {"w10", UseCaseJson(s.w10)}};
  if (s.m1.window_s > 0) j["use_case"]["60s"] = UseCaseJson(s.m1);
  if (s.m5.window_s > 0) j["use_case"]["300s"] = UseCaseJson(s.m5);
  j["totals"] = {{"packets", s.total_packets}, {"bytes", s.total_bytes}, {"flows", s.total_flows}};
  return j;
}

std::string Grouped(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::string Fixed(const std::optional<double>& v, int prec = 4) {
  return v ? absl::StrFormat("%.*f", prec, *v) : std::string("n/a");
}

// A relative error: 4 decimals, or 4 significant digits when it is large
// (an empty real window makes the error the synthetic count itself).
std::string Num(double v) {
  return v < 1e4 ? absl::StrFormat("%.4f", v) : absl::StrFormat("%.4g", v);
}

std::string Elide(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t keep = max - 3;
  return s.substr(0, keep / 2) + "..." + s.substr(s.size() - (keep - keep / 2));
}

std::string Seconds(double s) {
  if (s >= 1) return absl::StrFormat("%.3f s", s);
  if (s >= 1e-3) return absl::StrFormat("%.3f ms", s * 1e3);
  return absl::StrFormat("%.3f us", s * 1e6);
}

}  // namespace

std::string FormatJson(const EvalReport& r) {
  Json j;
  j["schema"] = "dgc.eval/1";
  j["window_s"] = r.window.seconds();
  j["real"] = CountsJson(r.real);
  j["synth"] = r.has_synth ? CountsJson(r.synth) : Json(nullptr);
  j["scores"] = r.has_synth ? ScoresJson(r.scores, true) : Json(nullptr);
  if (r.has_synth) {
    Json rp;
    rp["rate"] = Opt(r.replay.rate);
    rp["synth_flows"] = r.replay.synth_flows;
    rp["replayed_flows"] = r.replay.replayed_flows;
    rp["address_overlap"] = r.replay.address_overlap;
    j["replay"] = rp;
  } else {
    j["replay"] = nullptr;
  }
  if (r.floor) {
    Json f = ScoresJson(*r.floor, false);
    f["half_packets"] = {r.floor_half_packets[0], r.floor_half_packets[1]};
    j["floor"] = f;
  } else {
    j["floor"] = nullptr;
  }
  return j.dump(2) + "\n";
}

std::string FormatTable(const EvalReport& r) {
  std::string out;
  // Every line without trailing blanks (empty columns of a one-sided report).
  auto line = [&out](const std::string& s) {
    size_t end = s.find_last_not_of(' ');
    absl::StrAppend(&out, end == std::string::npos ? "" : s.substr(0, end + 1), "\n");
  };
  bool fl = r.floor.has_value();
  bool sy = r.has_synth;

  line(absl::StrFormat("real   %s (%s)", Elide(r.real.name, kWidth - 20), r.real.link));
  if (sy) line(absl::StrFormat("synth  %s (%s)", Elide(r.synth.name, kWidth - 20), r.synth.link));
  line("");
  line(absl::StrFormat("%-16s %18s %18s", "", "real", sy ? "synth" : ""));
  auto count_row = [&](const char* label, uint64_t a, uint64_t b) {
    line(absl::StrFormat("%-16s %18s %18s", label, Grouped(a), sy ? Grouped(b) : ""));
  };
  count_row("frames", r.real.frames, r.synth.frames);
  count_row("ip packets", r.real.ip_packets, r.synth.ip_packets);
  count_row("non-ip frames", r.real.non_ip, r.synth.non_ip);
  if (r.real.malformed + r.synth.malformed + r.real.corrupt_records + r.synth.corrupt_records > 0) {
    count_row("malformed", r.real.malformed, r.synth.malformed);
    count_row("corrupt records", r.real.corrupt_records, r.synth.corrupt_records);
  }
  count_row("bytes (ip)", r.real.bytes, r.synth.bytes);
  count_row("flows", r.real.flows, r.synth.flows);
  count_row("distinct src", r.real.distinct_src, r.synth.distinct_src);
  count_row("distinct dst", r.real.distinct_dst, r.synth.distinct_dst);
  line(absl::StrFormat("%-16s %18s %18s", "span", Seconds(double(r.real.span_ns) / 1e9),
                       sy ? Seconds(double(r.synth.span_ns) / 1e9) : ""));
  line(absl::StrFormat("window W = %s, 10 W = %s", Seconds(r.window.seconds()),
                       Seconds(r.window.seconds() * 10)));
  if (fl) {
    line(absl::StrFormat("floor: real split by flow hash into halves of %s and %s packets",
                         Grouped(r.floor_half_packets[0]), Grouped(r.floor_half_packets[1])));
  }
  line("");

  // Metric table: number, name, binning, JSD, floor, values on each side; the
  // floor alone when there is no synthetic trace.
  if (sy) {
    line(absl::StrFormat(" #  %-15s %-10s %8s %8s %14s %14s", "metric", "binning", "JSD",
                         fl ? "floor" : "", "real values", "synth values"));
  } else {
    line(absl::StrFormat(" #  %-15s %-10s %8s", "metric", "binning", "floor"));
  }
  for (int i = 0; i < kNumMetrics; ++i) {
    const MetricInfo& info = Info(i);
    if (sy) {
      const MetricScore& m = r.scores.metrics[i];
      line(absl::StrFormat("%2d  %-15s %-10s %8s %8s %14s %14s", i + 1, info.name,
                           BinningName(info.binning), Fixed(m.jsd),
                           fl ? Fixed(r.floor->metrics[i].jsd) : "", Grouped(m.real_values),
                           Grouped(m.synth_values)));
    } else {
      line(absl::StrFormat("%2d  %-15s %-10s %8s", i + 1, info.name, BinningName(info.binning),
                           Fixed(r.floor->metrics[i].jsd)));
    }
  }
  const Scores& head = sy ? r.scores : *r.floor;
  auto summary_row = [&](const std::string& label, const std::optional<double>& a,
                         const std::optional<double>& b) {
    if (sy && fl) return absl::StrFormat("    %-26s %8s %8s", label, Fixed(a), Fixed(b));
    return absl::StrFormat("    %-26s %8s", label, Fixed(sy ? a : b));
  };
  line(summary_row(absl::StrCat("mean (", head.scored, " of 17 scored)"), r.scores.mean,
                   fl ? r.floor->mean : std::nullopt));
  auto worst_name = [](const Scores& s) {
    return s.worst_metric >= 0 ? std::string(Info(s.worst_metric).name) : std::string("-");
  };
  std::string which = worst_name(head);
  if (fl && sy && r.floor->worst_metric != r.scores.worst_metric) {
    absl::StrAppend(&which, "; floor: ", worst_name(*r.floor));
  }
  line(absl::StrCat(summary_row("worst", r.scores.worst, fl ? r.floor->worst : std::nullopt),
                    "   (", which, ")"));
  line("");

  // Use-case figures: relative error per window, median and p95, at W and 10 W.
  // Relative errors over the windows active on either side.
  auto uc_block = [&](const Scores& s, const std::string& title) {
    line(absl::StrFormat("%-30s %11s %9s %11s %9s", title, "W median", "W p95", "10W median",
                         "10W p95"));
    auto row = [&](const char* label, const ErrorStats& a, const ErrorStats& b) {
      line(absl::StrFormat("  %-28s %11s %9s %11s %9s", label, Num(a.median), Num(a.p95),
                           Num(b.median), Num(b.p95)));
    };
    row("packets", s.w.packets, s.w10.packets);
    row("bytes", s.w.bytes, s.w10.bytes);
    row("distinct src", s.w.src, s.w10.src);
    row("distinct dst", s.w.dst, s.w10.dst);
    row("distinct (src, dst)", s.w.pairs, s.w10.pairs);
    row("distinct 5-tuples", s.w.tuples, s.w10.tuples);
    line(absl::StrFormat("  %-28s W: %s of %s, 10 W: %s of %s", "windows active on a side",
                         Grouped(uint64_t(s.w.active_windows)), Grouped(uint64_t(s.w.windows)),
                         Grouped(uint64_t(s.w10.active_windows)),
                         Grouped(uint64_t(s.w10.windows))));
    line(absl::StrFormat("  %-28s packets %s  bytes %s  flows %s", "totals, relative error",
                         Num(s.total_packets), Num(s.total_bytes), Num(s.total_flows)));
    // The minute and five minutes operators count in, where the trace spans ten.
    for (const UseCase* u : {&s.m1, &s.m5}) {
      if (u->window_s <= 0) continue;
      line(absl::StrFormat("  %-28s src %s  dst %s  pairs %s  5-tuples %s  (medians, %s windows)",
                           absl::StrFormat("distinct per %.0f s", u->window_s), Num(u->src.median),
                           Num(u->dst.median), Num(u->pairs.median), Num(u->tuples.median),
                           Grouped(uint64_t(u->active_windows))));
    }
  };
  if (sy) {
    uc_block(r.scores, "use case");
  }
  if (fl) {
    if (sy) line("");
    uc_block(*r.floor, "use case, floor");
  }
  if (sy) {
    line("");
    if (r.replay.rate) {
      line(absl::StrFormat("replay rate %.4f: %s of %s synthetic flows have a real 5-tuple",
                           *r.replay.rate, Grouped(r.replay.replayed_flows),
                           Grouped(r.replay.synth_flows)));
    } else {
      line("replay rate n/a: no synthetic address occurs in the real trace");
    }
  }
  return out;
}

}  // namespace dgc::eval

#include "common/eval/report_html.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/base/files.h"
#include "common/eval/distance.h"
#include "common/eval/report_text.h"

namespace dgc::eval {
namespace {

constexpr const char* kRealColor = "#1f77b4";
constexpr const char* kSynthColor = "#e6550d";

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// 1234 -> "1.2k", 3e6 -> "3M": short tick labels.
std::string Short(double v) {
  double a = std::fabs(v);
  const char* suffix[] = {"", "k", "M", "G", "T", "P"};
  int i = 0;
  while (a >= 1000 && i < 5) {
    a /= 1000;
    v /= 1000;
    ++i;
  }
  if (a == 0) return "0";
  std::string s = a >= 100 || a == std::floor(a) ? absl::StrFormat("%.0f", v)
                  : a >= 10                      ? absl::StrFormat("%.1f", v)
                  : a >= 0.01 || i > 0           ? absl::StrFormat("%.2f", v)
                                                 : absl::StrFormat("%.1e", v);
  return s + suffix[i];
}

struct Point {
  double x, y;
};

// Thins a polyline to a few points per pixel column (first, lowest, highest,
// last), which keeps its drawn shape while bounding the file size for
// metrics with tens of thousands of bins.
std::vector<Point> Decimate(const std::vector<Point>& pts) {
  if (pts.size() < 2000) return pts;
  std::vector<Point> out;
  size_t i = 0;
  while (i < pts.size()) {
    size_t j = i;
    long col = std::lround(std::floor(pts[i].x));
    size_t lo = i, hi = i;
    while (j < pts.size() && std::lround(std::floor(pts[j].x)) == col) {
      if (pts[j].y < pts[lo].y) lo = j;
      if (pts[j].y > pts[hi].y) hi = j;
      ++j;
    }
    size_t keep[4] = {i, std::min(lo, hi), std::max(lo, hi), j - 1};
    for (int k = 0; k < 4; ++k) {
      if (k == 0 || keep[k] != keep[k - 1]) out.push_back(pts[keep[k]]);
    }
    i = j;
  }
  return out;
}

// One plot: a frame with axes mapping data coordinates to pixels.
class Plot {
 public:
  static constexpr double kLeft = 52, kRight = 12, kTop = 30, kBottom = 34;

  Plot(std::string id, double width, double height, double x0, double x1, double y0, double y1)
      : id_(std::move(id)), width_(width), height_(height), x0_(x0), x1_(x1), y0_(y0), y1_(y1) {
    if (x1_ <= x0_) x1_ = x0_ + 1;
    if (y1_ <= y0_) y1_ = y0_ + 1;
  }

  double Px(double x) const { return kLeft + (x - x0_) / (x1_ - x0_) * (width_ - kLeft - kRight); }
  double Py(double y) const {
    return height_ - kBottom - (y - y0_) / (y1_ - y0_) * (height_ - kTop - kBottom);
  }

  void Title(const std::string& text) {
    absl::StrAppend(&body_, absl::StrFormat("<text x=\"%.1f\" y=\"14\" class=\"t\">%s</text>\n",
                                            kLeft, Escape(text)));
  }
  void Note(const std::string& text) {
    absl::StrAppend(
        &body_, absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" class=\"n\" text-anchor=\"middle\">"
                                "%s</text>\n",
                                (kLeft + width_ - kRight) / 2, (kTop + height_ - kBottom) / 2,
                                Escape(text)));
  }
  void XTick(double x, const std::string& label) {
    double px = Px(x);
    absl::StrAppend(
        &body_, absl::StrFormat(
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"middle\">%s</text>\n",
                    px, kTop, px, height_ - kBottom, px, height_ - kBottom + 13, Escape(label)));
  }
  void YTick(double y, const std::string& label) {
    double py = Py(y);
    absl::StrAppend(
        &body_,
        absl::StrFormat("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>"
                        "<text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"end\">%s</text>\n",
                        kLeft, py, width_ - kRight, py, kLeft - 4, py + 3, Escape(label)));
  }
  void XLabel(const std::string& text) {
    absl::StrAppend(
        &body_, absl::StrFormat(
                    "<text x=\"%.1f\" y=\"%.1f\" class=\"l\" text-anchor=\"middle\">%s</text>\n",
                    (kLeft + width_ - kRight) / 2, height_ - 4, Escape(text)));
  }
  // A polyline in data coordinates.
  void Line(const std::vector<Point>& data, const char* color, bool dashed) {
    if (data.empty()) return;
    std::vector<Point> px;
    px.reserve(data.size());
    for (const Point& p : data) px.push_back(Point{Px(p.x), Py(p.y)});
    px = Decimate(px);
    std::string pts;
    for (const Point& p : px) absl::StrAppend(&pts, absl::StrFormat("%.1f,%.1f ", p.x, p.y));
    if (!pts.empty()) pts.pop_back();
    absl::StrAppend(
        &body_,
        absl::StrFormat(
            "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"%s\"/>\n", color,
            dashed ? " stroke-dasharray=\"5,3\"" : "", pts));
  }
  void Legend(const std::string& a, const std::string& b) {
    double x = width_ - kRight - 150;
    absl::StrAppend(
        &body_,
        absl::StrFormat(
            "<line x1=\"%.1f\" y1=\"22\" x2=\"%.1f\" y2=\"22\" stroke=\"%s\" stroke-width=\"2\"/>"
            "<text x=\"%.1f\" y=\"25\" class=\"l\">%s</text>"
            "<line x1=\"%.1f\" y1=\"22\" x2=\"%.1f\" y2=\"22\" stroke=\"%s\" stroke-width=\"2\" "
            "stroke-dasharray=\"5,3\"/><text x=\"%.1f\" y=\"25\" class=\"l\">%s</text>\n",
            x, x + 16, kRealColor, x + 20, Escape(a), x + 75, x + 91, kSynthColor, x + 95,
            Escape(b)));
  }

  std::string Svg() const {
    return absl::StrFormat(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" width=\"%.0f\" height=\"%.0f\" "
        "viewBox=\"0 0 %.0f %.0f\">\n"
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"f\"/>\n%s</svg>\n",
        id_, width_, height_, width_, height_, kLeft, kTop, width_ - kLeft - kRight,
        height_ - kTop - kBottom, body_);
  }

 private:
  std::string id_;
  double width_, height_;
  double x0_, x1_, y0_, y1_;
  std::string body_;
};

std::string Cell(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.4f", *v) : std::string("n/a");
}

constexpr double kPlotW = 380, kPlotH = 220;

struct Labels {
  std::string a = "real", b = "synthetic";
};

// `floor` is null when the report has no floor.
std::string MetricTitle(int i, const std::optional<double>& jsd, const MetricScore* floor,
                        bool has_synth) {
  std::string t = absl::StrCat(i + 1, " ", Info(i).name);
  if (has_synth) absl::StrAppend(&t, "  JSD ", Cell(jsd));
  if (floor) absl::StrAppend(&t, has_synth ? "  floor " : "  floor JSD ", Cell(floor->jsd));
  return t;
}

// Cumulative distribution over the sorted bin keys, as a step line.
std::vector<Point> Cdf(const std::vector<int64_t>& keys, const std::vector<double>& p, double x0,
                       double x1) {
  std::vector<Point> out;
  double cum = 0;
  out.push_back(Point{x0, 0});
  for (size_t i = 0; i < keys.size(); ++i) {
    if (p[i] == 0) continue;
    double x = static_cast<double>(keys[i]);
    out.push_back(Point{x, cum});
    cum += p[i];
    out.push_back(Point{x, cum});
  }
  out.push_back(Point{x1, cum});
  return out;
}

// Probability per bin as a step line over [min bin, max bin + 1).
std::vector<Point> Steps(const std::vector<int64_t>& keys, const std::vector<double>& p) {
  std::vector<Point> out;
  if (keys.empty()) return out;
  int64_t prev_end = keys.front();
  for (size_t i = 0; i < keys.size(); ++i) {
    double x = static_cast<double>(keys[i]);
    if (keys[i] > prev_end) {  // a gap of empty bins
      out.push_back(Point{static_cast<double>(prev_end), 0});
      out.push_back(Point{x, 0});
    }
    out.push_back(Point{x, p[i]});
    out.push_back(Point{x + 1, p[i]});
    prev_end = keys[i] + 1;
  }
  out.insert(out.begin(), Point{out.front().x, 0});
  out.push_back(Point{out.back().x, 0});
  return out;
}

// Few distinct values (protocols, TTLs, flags): one bin per value, side by
// side in value order, each labelled, instead of a CDF over a mostly empty axis.
constexpr size_t kMaxCategories = 40;

std::string CategoryPlot(int i, const MetricScore& m, const std::string& title, const Labels& lb) {
  double ymax = 0;
  for (double v : m.real_p) ymax = std::max(ymax, v);
  for (double v : m.synth_p) ymax = std::max(ymax, v);
  ymax = ymax > 0 ? ymax * 1.08 : 1;
  double n = static_cast<double>(m.bins.size());
  Plot plot(absl::StrCat("metric-", Info(i).name), kPlotW, kPlotH, 0, n, 0, ymax);
  plot.Title(title);
  for (int k = 0; k <= 4; ++k) {
    double y = ymax / 1.08 * k / 4;
    plot.YTick(y, absl::StrFormat("%.2f", y));
  }
  size_t step = std::max<size_t>(1, (m.bins.size() + 9) / 10);  // at most 10 labels
  for (size_t k = 0; k < m.bins.size(); k += step) {
    int64_t v = m.bins[k];
    plot.XTick(static_cast<double>(k) + 0.5,
               Info(i).binning == Binning::kExact && std::string(Info(i).name) == "tcp_flags"
                   ? absl::StrFormat("0x%02x", v)
                   : Short(static_cast<double>(v)));
  }
  plot.XLabel(absl::StrCat(Info(i).value, " (probability per value)"));
  std::vector<int64_t> idx(m.bins.size());
  for (size_t k = 0; k < idx.size(); ++k) idx[k] = static_cast<int64_t>(k);
  plot.Line(Steps(idx, m.real_p), kRealColor, false);
  plot.Line(Steps(idx, m.synth_p), kSynthColor, true);
  plot.Legend(lb.a, lb.b);
  return plot.Svg();
}

std::string ExactPlot(int i, const MetricScore& m, const std::string& title, const Labels& lb) {
  if (!m.bins.empty() && m.bins.size() <= kMaxCategories) return CategoryPlot(i, m, title, lb);
  double x0 = m.bins.empty() ? 0 : static_cast<double>(m.bins.front());
  double x1 = m.bins.empty() ? 1 : static_cast<double>(m.bins.back());
  if (x1 <= x0) {
    x0 -= 1;
    x1 += 1;
  }
  Plot plot(absl::StrCat("metric-", Info(i).name), kPlotW, kPlotH, x0, x1, 0, 1);
  plot.Title(title);
  for (double y : {0.0, 0.25, 0.5, 0.75, 1.0}) plot.YTick(y, absl::StrFormat("%.2f", y));
  for (int k = 0; k <= 4; ++k) {
    double x = x0 + (x1 - x0) * k / 4;
    plot.XTick(x, Short(std::round(x)));
  }
  plot.XLabel(absl::StrCat(Info(i).value, " (CDF)"));
  if (m.bins.empty()) plot.Note("n/a: no values in the real trace");
  plot.Line(Cdf(m.bins, m.real_p, x0, x1), kRealColor, false);
  plot.Line(Cdf(m.bins, m.synth_p, x0, x1), kSynthColor, true);
  plot.Legend(lb.a, lb.b);
  return plot.Svg();
}

std::string HistogramPlot(int i, const MetricScore& m, const std::string& title, const Labels& lb) {
  bool start = Info(i).binning == Binning::kFlowStart;
  double x0 = start ? 0 : (m.bins.empty() ? 0 : static_cast<double>(m.bins.front()));
  double x1 = start ? 101 : (m.bins.empty() ? 1 : static_cast<double>(m.bins.back()) + 1);
  double ymax = 0;
  for (double v : m.real_p) ymax = std::max(ymax, v);
  for (double v : m.synth_p) ymax = std::max(ymax, v);
  ymax = ymax > 0 ? ymax * 1.08 : 1;
  Plot plot(absl::StrCat("metric-", Info(i).name), kPlotW, kPlotH, x0, x1, 0, ymax);
  plot.Title(title);
  for (int k = 0; k <= 4; ++k) {
    double y = ymax / 1.08 * k / 4;
    plot.YTick(y, absl::StrFormat("%.2f", y));
  }
  if (start) {
    for (int k = 0; k <= 4; ++k) plot.XTick(k * 25, absl::StrFormat("%.2f", k * 0.25));
    plot.XLabel("flow start / real span (probability per 1/100; last bin: overflow)");
  } else {
    // Bins 1, 11, 21... start at 1, 10, 100...: label decades, thinned to <= 6.
    int lo = static_cast<int>(x0), hi = static_cast<int>(x1);
    int decades = (hi - lo) / 10 + 1;
    int step = std::max(1, (decades + 5) / 6);
    if (lo == 0) plot.XTick(0.5, "<1");
    for (int d = 0; 1 + 10 * d <= hi; d += step) {
      int b = 1 + 10 * d;
      if (b >= lo) plot.XTick(b, Short(std::pow(10.0, d)));
    }
    plot.XLabel(absl::StrCat(Info(i).value, " (probability per log bin)"));
  }
  if (m.bins.empty()) plot.Note("n/a: no values in the real trace");
  plot.Line(Steps(m.bins, m.real_p), kRealColor, false);
  plot.Line(Steps(m.bins, m.synth_p), kSynthColor, true);
  plot.Legend(lb.a, lb.b);
  return plot.Svg();
}

// Cumulative share of packets against address rank (log scale).
std::string RankPlot(int i, const MetricScore& m, const std::string& title, const Labels& lb) {
  double n = std::max<double>(2, static_cast<double>(m.bins.size()));
  Plot plot(absl::StrCat("metric-", Info(i).name), kPlotW, kPlotH, 0, std::log10(n), 0, 1);
  plot.Title(title);
  for (double y : {0.0, 0.25, 0.5, 0.75, 1.0}) plot.YTick(y, absl::StrFormat("%.2f", y));
  for (double r = 1; r <= n; r *= 10) plot.XTick(std::log10(r), Short(r));
  plot.XLabel(absl::StrCat(Info(i).value, ": cumulative share by rank"));
  if (m.bins.empty()) plot.Note("n/a: no values in the real trace");
  auto line = [&](const std::vector<double>& p) {
    std::vector<Point> out;
    double cum = 0;
    for (size_t k = 0; k < p.size(); ++k) {
      if (p[k] == 0) break;  // sorted descending: the rest is padding
      cum += p[k];
      out.push_back(Point{std::log10(static_cast<double>(k + 1)), cum});
    }
    // A side without packets is drawn flat at 0, like the other plots do.
    if (out.empty() && !p.empty()) out = {Point{0, 0}, Point{std::log10(n), 0}};
    return out;
  };
  plot.Line(line(m.real_p), kRealColor, false);
  plot.Line(line(m.synth_p), kSynthColor, true);
  plot.Legend(lb.a, lb.b);
  return plot.Svg();
}

std::string SeriesPlot(const std::string& id, const std::string& title, double window_s,
                       const WindowSeries& a, const WindowSeries& b, bool has_b, const Labels& lb) {
  size_t n = std::max(a.packets.size(), has_b ? b.packets.size() : 0);
  const std::vector<double>* va;
  const std::vector<double>* vb;
  if (id == "series-packets") {
    va = &a.packets;
    vb = &b.packets;
  } else if (id == "series-bytes") {
    va = &a.bytes;
    vb = &b.bytes;
  } else {
    va = &a.src;
    vb = &b.src;
  }
  double ymax = 0;
  for (double v : *va) ymax = std::max(ymax, v);
  if (has_b) {
    for (double v : *vb) ymax = std::max(ymax, v);
  }
  if (ymax <= 0) ymax = 1;
  double point_s = window_s * static_cast<double>(std::max<int64_t>(a.group, 1));
  double x1 = std::max(1.0, static_cast<double>(n)) * point_s;
  Plot plot(id, 780, 230, 0, x1, 0, ymax * 1.05);
  plot.Title(title);
  for (int k = 0; k <= 4; ++k) plot.YTick(ymax * k / 4, Short(ymax * k / 4));
  for (int k = 0; k <= 5; ++k) {
    double x = x1 * k / 5;
    plot.XTick(x, x >= 1 ? Short(x) : absl::StrFormat("%.3g", x));
  }
  plot.XLabel(a.group > 1 ? absl::StrFormat("seconds from each trace's start (mean over %d windows "
                                            "per point)",
                                            a.group)
                          : std::string("seconds from each trace's start"));
  auto line = [&](const std::vector<double>& v) {
    std::vector<Point> out;
    for (size_t k = 0; k < v.size(); ++k) {
      out.push_back(Point{static_cast<double>(k) * point_s, v[k]});
      out.push_back(Point{static_cast<double>(k + 1) * point_s, v[k]});
    }
    return out;
  };
  plot.Line(line(*va), kRealColor, false);
  if (has_b) plot.Line(line(*vb), kSynthColor, true);
  plot.Legend(lb.a, has_b ? lb.b : "");
  return plot.Svg();
}

std::string Bar(const std::optional<double>& v) {
  if (!v) return "";
  return absl::StrFormat("<div class=\"bar\" style=\"width:%.1f%%\"></div>", 100 * *v);
}

constexpr const char* kStyle = R"(
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1240px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
td.k, th.k { text-align: left; }
.bar { height: 10px; background: #e6550d; min-width: 1px; }
td.b { width: 160px; text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
svg { background: #fff; border: 1px solid #eee; }
svg .f { fill: none; stroke: #999; } svg .g { stroke: #eee; }
svg .t { font-size: 12px; font-weight: bold; } svg .l { font-size: 10px; fill: #444; }
svg .n { font-size: 12px; fill: #999; }
pre { font-size: 12px; background: #f7f7f7; padding: 10px; }
)";

}  // namespace

std::string RenderHtml(const EvalReport& r) {
  bool sy = r.has_synth;
  bool fl = r.floor.has_value();
  // Plots compare real and synthetic; in floor-only mode, the two halves.
  const Scores& drawn = sy ? r.scores : *r.floor;
  Labels lb;
  if (!sy) lb = Labels{"half A", "half B"};

  std::string h;
  absl::StrAppend(&h,
                  "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n",
                  "<head>\n<meta charset=\"utf-8\"/>\n<title>dgc eval: ", Escape(r.real.name),
                  sy ? absl::StrCat(" vs ", Escape(r.synth.name)) : std::string(" (floor)"),
                  "</title>\n<style>", kStyle, "</style>\n</head>\n<body>\n");
  absl::StrAppend(&h, "<h1>dgc fidelity report</h1>\n<table>\n");
  absl::StrAppend(&h, "<tr><th class=\"k\">real</th><td class=\"k\">", Escape(r.real.name), " (",
                  Escape(r.real.link), ")</td></tr>\n");
  if (sy) {
    absl::StrAppend(&h, "<tr><th class=\"k\">synthetic</th><td class=\"k\">", Escape(r.synth.name),
                    " (", Escape(r.synth.link), ")</td></tr>\n");
  }
  absl::StrAppend(&h, "</table>\n");

  // Headline.
  absl::StrAppend(&h, "<h2>Scores</h2>\n<p>");
  if (sy) {
    absl::StrAppend(&h, "Mean Jensen-Shannon distance <b>", Cell(r.scores.mean), "</b> over ",
                    r.scores.scored, " of 17 metrics; worst <b>", Cell(r.scores.worst), "</b>",
                    r.scores.worst_metric >= 0
                        ? absl::StrCat(" (", Info(r.scores.worst_metric).name, ")")
                        : std::string(),
                    ". ");
  }
  if (fl) absl::StrAppend(&h, "Real-vs-real floor: mean <b>", Cell(r.floor->mean), "</b>. ");
  absl::StrAppend(&h, "Window W = ", absl::StrFormat("%.6g", r.window.seconds()), " s.</p>\n");

  // Metric table.
  absl::StrAppend(&h,
                  "<table>\n<tr><th>#</th><th class=\"k\">metric</th><th class=\"k\">binning"
                  "</th>",
                  sy ? "<th>JSD</th><th class=\"k\"></th>" : "", fl ? "<th>floor</th>" : "",
                  "<th>real values</th>", sy ? "<th>synthetic values</th>" : "", "</tr>\n");
  for (int i = 0; i < kNumMetrics; ++i) {
    const MetricScore& m = drawn.metrics[i];
    absl::StrAppend(&h, "<tr><td>", i + 1, "</td><td class=\"k\"><a href=\"#metric-", Info(i).name,
                    "\">", Info(i).name, "</a></td><td class=\"k\">", BinningName(Info(i).binning),
                    "</td>");
    if (sy) absl::StrAppend(&h, "<td>", Cell(m.jsd), "</td><td class=\"b\">", Bar(m.jsd), "</td>");
    if (fl) absl::StrAppend(&h, "<td>", Cell(r.floor->metrics[i].jsd), "</td>");
    absl::StrAppend(&h, "<td>", sy ? m.real_values : r.real.ip_packets, "</td>");
    if (sy) absl::StrAppend(&h, "<td>", m.synth_values, "</td>");
    absl::StrAppend(&h, "</tr>\n");
  }
  absl::StrAppend(&h, "</table>\n");

  // Distributions.
  absl::StrAppend(&h, "<h2>Distributions</h2>\n<div class=\"grid\">\n");
  for (int i = 0; i < kNumMetrics; ++i) {
    const MetricScore& m = drawn.metrics[i];
    std::string title = MetricTitle(i, m.jsd, fl ? &r.floor->metrics[i] : nullptr, sy);
    switch (Info(i).binning) {
      case Binning::kExact:
        absl::StrAppend(&h, ExactPlot(i, m, title, lb));
        break;
      case Binning::kRank:
        absl::StrAppend(&h, RankPlot(i, m, title, lb));
        break;
      default:
        absl::StrAppend(&h, HistogramPlot(i, m, title, lb));
        break;
    }
  }
  absl::StrAppend(&h, "</div>\n");

  // Per-window series.
  Labels series_lb;  // the series are always the whole traces
  absl::StrAppend(&h, "<h2>Over time (windows of W)</h2>\n<div class=\"grid\">\n");
  absl::StrAppend(&h, SeriesPlot("series-packets", "packets per window", r.window.seconds(),
                                 r.real_series, r.synth_series, sy, series_lb));
  absl::StrAppend(&h, SeriesPlot("series-bytes", "bytes per window", r.window.seconds(),
                                 r.real_series, r.synth_series, sy, series_lb));
  absl::StrAppend(&h, SeriesPlot("series-src", "distinct sources per window", r.window.seconds(),
                                 r.real_series, r.synth_series, sy, series_lb));
  absl::StrAppend(&h, "</div>\n");

  // The full text table: counts, use-case figures, totals, replay.
  absl::StrAppend(&h, "<h2>Table</h2>\n<pre>", Escape(FormatTable(r)), "</pre>\n");
  absl::StrAppend(&h, "</body>\n</html>\n");
  return h;
}

std::string RenderTimeSeriesHtml(const std::string& title, const std::vector<std::string>& notes,
                                 const std::vector<TimeSeriesPlot>& plots, const std::string& table_text) {
  std::string h;
  absl::StrAppend(&h, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n",
                  "<head>\n<meta charset=\"utf-8\"/>\n<title>", Escape(title), "</title>\n<style>", kStyle,
                  "</style>\n</head>\n<body>\n<h1>", Escape(title), "</h1>\n");
  for (const auto& n : notes) absl::StrAppend(&h, "<p>", Escape(n), "</p>\n");
  absl::StrAppend(&h, "<div class=\"grid\">\n");
  for (const TimeSeriesPlot& p : plots) {
    const size_t n = p.x_unix_s.size();
    const double x0 = n ? p.x_unix_s.front() : 0, x1 = n ? p.x_unix_s.back() + p.step_s : 1;
    double ymax = 0;
    for (double v : p.solid) ymax = std::max(ymax, v);
    for (double v : p.dashed) ymax = std::max(ymax, v);
    if (ymax <= 0) ymax = 1;
    Plot plot(p.id, 1180, 240, x0, x1, 0, ymax * 1.05);
    plot.Title(p.title);
    for (int k = 0; k <= 4; ++k) plot.YTick(ymax * k / 4, Short(ymax * k / 4));
    const bool days = x1 - x0 > 3 * 86400.0;
    for (int k = 0; k <= 6; ++k) {
      const double x = x0 + (x1 - x0) * k / 6;
      plot.XTick(x, absl::FormatTime(days ? "%m-%d %H:%M" : "%H:%M:%S", absl::FromUnixSeconds(std::llround(x)),
                                     absl::UTCTimeZone()));
    }
    plot.XLabel(absl::StrCat("UTC, from ", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(std::llround(x0)),
                                                            absl::UTCTimeZone()),
                             "; windows of ", Short(p.step_s), " s"));
    auto steps = [&](const std::vector<double>& v) {
      std::vector<Point> out;
      for (size_t k = 0; k < v.size() && k < n; ++k) {
        out.push_back(Point{p.x_unix_s[k], v[k]});
        out.push_back(Point{p.x_unix_s[k] + p.step_s, v[k]});
      }
      return out;
    };
    plot.Line(steps(p.solid), kRealColor, false);
    if (!p.dashed_name.empty()) plot.Line(steps(p.dashed), kSynthColor, true);
    plot.Legend(p.solid_name, p.dashed_name);
    absl::StrAppend(&h, plot.Svg());
  }
  absl::StrAppend(&h, "</div>\n<h2>Table</h2>\n<pre>", Escape(table_text), "</pre>\n</body>\n</html>\n");
  return h;
}

Status WriteHtmlReport(const EvalReport& report, const std::string& path) {
  return WriteFileAtomic(path, RenderHtml(report));
}

}  // namespace dgc::eval

// The eval report as one self-contained HTML file: no scripts, no external
// assets, every plot an inline SVG. For each of the 17 metrics the real and
// the synthetic distributions are drawn together (CDF for exact-valued and
// rank metrics, histogram for binned ones); then the per-window series of
// packets, bytes and distinct sources; then the tables.
//
// The document is well-formed XML (XHTML syntax inside an HTML5 doctype), so
// that CI can check it with an XML parser as well as an HTML one. Each metric's
// plot is <svg id="metric-NAME">; the series are <svg id="series-packets">,
// "series-bytes" and "series-src".
#ifndef DGC_COMMON_EVAL_REPORT_HTML_H_
#define DGC_COMMON_EVAL_REPORT_HTML_H_

#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/eval/metrics.h"

namespace dgc::eval {

// `report` must come from Evaluate or EvaluateFloor with plot_data set;
// without it the plots are drawn empty.
std::string RenderHtml(const EvalReport& report);

// Renders and writes atomically to `path`. An error names the file.
[[nodiscard]] Status WriteHtmlReport(const EvalReport& report, const std::string& path);

// A page of time series (dgcctl stats --report): one plot per series, x in
// Unix seconds drawn as UTC time, one solid and optionally one dashed line
// (e.g. a lower and an upper bound), then `table_text` as preformatted text.
struct TimeSeriesPlot {
  std::string id, title;
  std::vector<double> x_unix_s;  // window starts
  double step_s = 0;             // window length: each value drawn as a step over it
  std::string solid_name, dashed_name;  // legend; dashed_name "" draws no dashed line
  std::vector<double> solid, dashed;
};
std::string RenderTimeSeriesHtml(const std::string& title, const std::vector<std::string>& notes,
                                 const std::vector<TimeSeriesPlot>& plots, const std::string& table_text);

}  // namespace dgc::eval

#endif  // DGC_COMMON_EVAL_REPORT_HTML_H_

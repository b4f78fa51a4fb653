// The fidelity metrics of METRICS.md (../shared/METRICS.md is binding): the 17
// scored Jensen-Shannon distances, their mean and worst, the use-case figures,
// the replay rate, and the real-vs-real floor.
//
// Choices METRICS.md leaves open, made here (the tshark-based reference scorer,
// tests/eval/tshark_scorer.py, makes the same ones):
//  - Window size W: 1 s when the real trace spans >= 100 s, else span / 100,
//    kept as an exact fraction of nanoseconds; a real span of 0 (one packet,
//    or all packets at one instant) uses W = 1 s.
//  - Windows of a trace start at its own first packet t0; window k is
//    [t0 + kW, t0 + (k+1)W). A trace spanning S has max(1, ceil(S / W))
//    windows, the last closed on the right so that the last packet falls in
//    it instead of opening a window of its own (so a short real trace has
//    exactly 100 windows). An empty trace has no windows. Empty windows in
//    between count (with 0 packets and 0 bytes).
//  - Times in microseconds are ns / 1000 as doubles; flow_iat is
//    (duration_ns / (packets - 1)) / 1000.
//  - flow_start: bin floor(100 * (start - t0) / real span) computed in exact
//    integers, bin 100 (overflow) when that is >= 100; t0 is the trace's own
//    first packet, the span is always the real trace's. Real span 0: flows
//    starting at t0 go to bin 0, all others to the overflow bin.
//  - Addresses are the 16-byte form of IpAddress (IPv4 v4-mapped).
//  - Use-case windows: window k of the real trace against window k of the
//    synthetic one, k over the longer of the two; a window beyond a trace's
//    span counts as empty. The median and p95 are taken over the active
//    windows, those with a packet on either side: a window empty on both sides
//    says nothing, and counting them would score every sparse trace (an IoT
//    week is 96 % empty seconds) 0. Quantiles interpolate linearly (numpy).
//  - Replay rate is reported (non-null) only when the address spaces
//    overlap: at least one synthetic address occurs in the real trace.
//  - Floor: the real trace's flows split by a fixed hash (XXH64, seed 0) of
//    the 5-tuple into two halves A and B; A is scored as real against B and B
//    against A, and each figure is the mean of the two directions (or the one
//    that is defined when the other is n/a). Both halves keep the whole real
//    trace's clock: its W, its first packet as their start (for windows and
//    flow_start) and its span, so that neither half is shifted against the
//    other by where its own first packet happens to fall. Counts are scaled:
//    every window-level packet and byte count of both halves is doubled (in
//    throughput, pkt_rate and the use-case figures), so that they sit on the
//    scale of the whole trace. Flow-, packet- and address-level values need
//    no scaling: flows stay whole.
#ifndef DGC_COMMON_EVAL_METRICS_H_
#define DGC_COMMON_EVAL_METRICS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/trace/packet.h"
#include "common/trace/pcap_reader.h"
#include "common/trace/trace_file.h"

namespace dgc::eval {

enum class Binning { kExact, kLog10x10, kRank, kFlowStart };
const char* BinningName(Binning b);  // "exact", "log10x10", "rank", "flow_start"

// The 17 metrics, in METRICS.md's order (index = number - 1).
enum MetricId : int {
  kPktSize,
  kPktIat,
  kThroughput,
  kPktRate,
  kProto,
  kSrcPort,
  kDstPort,
  kTtl,
  kTcpFlags,
  kSrcIpRank,
  kDstIpRank,
  kFlowSize,
  kFlowBytes,
  kFlowDuration,
  kFlowStart,
  kFlowIat,
  kSrcFanout,
  kNumMetrics
};

struct MetricInfo {
  const char* name;   // "pkt_size": the stable name used in JSON and tables
  const char* level;  // "packet", "window", "flow", "address"
  const char* value;  // what is histogrammed, for humans
  Binning binning;
};
const MetricInfo& Info(int metric);  // metric in [0, kNumMetrics)

// A capture as the metrics see it.
// A trace in memory: packets stable-sorted by ts_ns (Evaluate sorts a copy
// of a trace built by hand out of order), with the read's counters.
using Trace = LoadedTrace;

// Reads every IP packet of a capture (any format and link type TraceReader
// reads) and sorts them stably by timestamp. NotFound / InvalidArgument /
// PermissionDenied naming the file when it cannot be opened or is not a
// capture. Corrupt records are skipped and recorded in stats.warnings.
using ::dgc::LoadTrace;

// An in-memory trace (tests, baselines): sorts `packets` stably by ts_ns.
Trace MakeTrace(std::vector<PacketRecord> packets, std::string name = "");

// The window size W, as an exact fraction num_ns / den nanoseconds.
struct WindowSize {
  int64_t num_ns = 1000000000;
  int64_t den = 1;
  double seconds() const { return static_cast<double>(num_ns) / static_cast<double>(den) / 1e9; }
  WindowSize Times(int64_t k) const { return WindowSize{num_ns * k, den}; }
  // Index of the window holding a packet `offset_ns` after the trace start.
  int64_t Index(int64_t offset_ns) const;
  // Windows of a trace spanning `span_ns`: max(1, ceil(span / W)).
  int64_t Count(int64_t span_ns) const;
};
// W for a real trace spanning `real_span_ns` (see the header comment).
WindowSize WindowFor(int64_t real_span_ns);

struct EvalOptions {
  // Also compute the real-vs-real floor (the real trace split by flow hash).
  bool floor = false;
  // Keep what the HTML report draws: the distributions of every metric and
  // the per-window series. Off by default: it costs memory on big traces.
  bool plot_data = false;
};

// One metric's score.
struct MetricScore {
  std::optional<double> jsd;  // nullopt: n/a (no values in the real trace)
  uint64_t real_values = 0;   // values histogrammed on each side
  uint64_t synth_values = 0;
  // With plot_data: the union of bins, sorted by key, with each side's
  // probability. For rank metrics the key is the rank (0 = busiest address).
  std::vector<int64_t> bins;
  std::vector<double> real_p;
  std::vector<double> synth_p;
};

// Median and 95th percentile of per-window relative errors.
struct ErrorStats {
  double median = 0;
  double p95 = 0;
};

// The use-case figures at one window size.
struct UseCase {
  double window_s = 0;
  int64_t windows = 0;         // the longer trace's window count
  int64_t active_windows = 0;  // those with a packet on either side: the ones compared
  ErrorStats packets, bytes, src, dst, pairs, tuples;
};

struct Scores {
  std::array<MetricScore, kNumMetrics> metrics;
  int scored = 0;              // metrics not n/a
  std::optional<double> mean;  // over the scored metrics; nullopt when none
  std::optional<double> worst;
  int worst_metric = -1;  // MetricId of the worst, -1 when none
  UseCase w;              // windows of W
  UseCase w10;            // windows of 10 W
  UseCase m1, m5;         // windows of 60 s and 300 s; window_s 0 when the real
                          // trace spans fewer than ten of them
  // Relative errors |synth - real| / max(real, 1) of the totals.
  double total_packets = 0;
  double total_bytes = 0;
  double total_flows = 0;
};

// Counts of one side.
struct TraceCounts {
  std::string name;
  std::string link;
  uint64_t frames = 0;
  uint64_t ip_packets = 0;
  uint64_t non_ip = 0;
  uint64_t malformed = 0;
  uint64_t unsupported_link = 0;
  uint64_t corrupt_records = 0;
  uint64_t bytes = 0;  // sum of sizes (IP lengths)
  uint64_t flows = 0;
  uint64_t distinct_src = 0;
  uint64_t distinct_dst = 0;
  int64_t first_ts_ns = 0;
  int64_t span_ns = 0;
  std::vector<std::string> warnings;
};

struct Replay {
  std::optional<double> rate;  // nullopt when the address spaces do not overlap
  uint64_t synth_flows = 0;
  uint64_t replayed_flows = 0;  // synthetic flows whose 5-tuple occurs in the real trace
  double address_overlap = 0;   // fraction of distinct synthetic addresses seen in real
};

// Per-window series at W, for the report's time plots (plot_data only).
// Long traces are averaged over groups of consecutive windows so that a plot
// has at most kMaxPoints points; point i covers windows [i * group, (i+1) * group).
struct WindowSeries {
  static constexpr int64_t kMaxPoints = 1500;
  int64_t group = 1;            // windows per point (the same for both sides)
  std::vector<double> packets;  // mean per window over the group
  std::vector<double> bytes;
  std::vector<double> src;  // distinct sources
};

struct EvalReport {
  bool has_synth = true;  // false for EvaluateFloor: only `real` and `floor` are set
  TraceCounts real;
  TraceCounts synth;
  WindowSize window;
  Scores scores;
  Replay replay;
  std::optional<Scores> floor;  // with EvalOptions::floor
  uint64_t floor_half_packets[2] = {0, 0};
  WindowSeries real_series, synth_series;  // plot_data only
};

// Scores `synth` against `real`. Never fails: an empty synthetic trace scores
// 1 on every metric the real trace has values for; an empty real trace gives
// 17 n/a (callers that need a score should reject it first).
EvalReport Evaluate(const Trace& real, const Trace& synth, const EvalOptions& options = {});

// The floor only (has_synth false, `scores` and `replay` left empty): what
// two halves of the real traffic score against each other.
EvalReport EvaluateFloor(const Trace& real, const EvalOptions& options = {});

}  // namespace dgc::eval

#endif  // DGC_COMMON_EVAL_METRICS_H_

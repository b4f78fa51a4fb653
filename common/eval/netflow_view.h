// The NetFlow view of METRICS.md: what an operator's flow tools read of a
// trace. nfdump's nfpcapd turns each trace into flow records (-e 300,60);
// per 300 s window (span/10 for traces shorter than 3000 s), over the windows
// active on either side, the relative error |synth - real| / max(real, 1) of
// flows, packets, bytes, distinct source and destination addresses and
// distinct destination ports; the figure is the mean of their six medians
// (0: the same NetFlow statistics). Also: the share of the real top-10
// destination ports (by flows) found in the synthetic top 10.
//
// Needs nfpcapd and nfdump (Debian package nfdump) and editcap (package
// wireshark-common: nfpcapd reads classic pcap only).
#ifndef DGC_COMMON_EVAL_NETFLOW_VIEW_H_
#define DGC_COMMON_EVAL_NETFLOW_VIEW_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace dgc::eval {

// One record as `nfdump -o csv` prints it (the fields the view reads).
struct NetflowRecord {
  int64_t first_s = 0, last_s = 0;  // seconds since the epoch (UTC)
  std::string src, dst;
  uint32_t dst_port = 0;
  uint64_t packets = 0, bytes = 0;
};

struct NetflowView {
  double figure = 0;                     // mean of the six medians
  std::map<std::string, double> medians;  // flows, packets, bytes, src, dst, dport
  double window_s = 0;
  size_t windows = 0;
  size_t real_records = 0, synth_records = 0;
  double top10_dport_share = 0;
};

// Runs editcap, nfpcapd and nfdump on `pcap` (pcap or pcapng) in a fresh
// directory under `work_dir` and parses the records. NotFound naming the
// Debian package when a tool is missing; the tool's stderr otherwise.
[[nodiscard]] StatusOr<std::vector<NetflowRecord>> NetflowRecordsOf(const std::string& pcap,
                                                                    const std::string& work_dir);

// Parses `nfdump -o csv -q -N` output (lines that are not records skipped).
// InvalidArgument naming the line when a record's fields do not parse.
[[nodiscard]] StatusOr<std::vector<NetflowRecord>> ParseNfdumpCsv(const std::string& text);

// The view of `synth` against `real`. InvalidArgument when `real` is empty.
[[nodiscard]] StatusOr<NetflowView> CompareNetflow(const std::vector<NetflowRecord>& real,
                                                   const std::vector<NetflowRecord>& synth);

// Both traces through nfpcapd (a temporary directory, removed after).
[[nodiscard]] StatusOr<NetflowView> NetflowViewOf(const std::string& real_pcap, const std::string& synth_pcap);

}  // namespace dgc::eval

#endif  // DGC_COMMON_EVAL_NETFLOW_VIEW_H_

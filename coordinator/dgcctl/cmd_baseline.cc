// dgcctl baseline: regenerate a trace the way an operator's existing tools
// would keep it (sampling, flow records, per-field histograms), as a pcap
// that `dgcctl eval` can score, and report the bytes each keeps.
//
// --summary json prints one object with stable fields:
//   method                          "sampling" | "flows" | "marginals"
//   description                     e.g. "sampling 1:100 random (seed 1)"
//   trace, output                   the paths as given
//   input_packets                   IP packets read from TRACE
//   kept_bytes                      size of the kept blob (what --keep writes)
//   kept_records, kept_record_kind  sampled packets / flow records / histogram entries
//   kept_bytes_per_million_packets  kept_bytes * 1e6 / input_packets (null without packets)
//   regenerated_packets             packets written to the output
//   options                         sampling_n, sampling_random, seed, flow_ttl, zstd_level
//   keep_seconds, regenerate_seconds  wall time of the two halves
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/baseline/baseline.h"
#include "common/trace/trace_file.h"
#include "common/baseline/pcap_image.h"
#include "coordinator/dgcctl/commands.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace dgc::ctl {
namespace {

using baseline::BaselineMethod;

struct BaselineArgs {
  std::string method;
  std::string trace;
  std::string output;
  std::string rate = "1:100";
  bool rate_given = false;
  bool random = false;
  uint64_t seed = 1;
  int ttl = 64;
  std::string link = "raw";
  std::string summary = "text";
  std::string keep;
};

const char* RecordKind(BaselineMethod m) {
  switch (m) {
    case BaselineMethod::kSampling:
      return "sampled packets";
    case BaselineMethod::kFlows:
      return "flow records";
    case BaselineMethod::kMarginals:
      return "histogram entries";
  }
  return "records";
}

Status Fail(absl::string_view msg) { return absl::InvalidArgumentError(msg); }

Status RunBaselineCommand(const BaselineArgs& a) {
  if (a.method.empty()) return Fail("missing --method: sampling, flows or marginals");
  if (a.trace.empty()) return Fail("missing TRACE: the capture to keep and regenerate");
  if (a.output.empty()) return Fail("missing -o SYNTH.pcap: where to write the regenerated trace");
  DGC_ASSIGN_OR_RETURN(BaselineMethod method, baseline::ParseBaselineMethod(a.method));
  baseline::BaselineOptions options;
  DGC_ASSIGN_OR_RETURN(options.sampling_n, baseline::ParseSamplingRate(a.rate));
  if (method == BaselineMethod::kFlows) {
    // Flow records keep every flow unless a rate is given: then 1 in N.
    options.flow_sampling_n = a.rate_given ? options.sampling_n : 1;
  }
  options.sampling_random = a.random;
  options.seed = a.seed;
  if (a.ttl < 1 || a.ttl > 255) return Fail("--ttl must be 1-255");
  options.flow_ttl = static_cast<uint8_t>(a.ttl);
  PcapWriterOptions writer;
  if (a.link == "ethernet") {
    writer.link = OutputLink::kEthernet;
  } else if (a.link != "raw") {
    return Fail(absl::StrCat("--link '", a.link, "': use raw or ethernet"));
  }
  if (a.summary != "text" && a.summary != "json") {
    return Fail(absl::StrCat("--summary '", a.summary, "': use text or json"));
  }

  DGC_ASSIGN_OR_RETURN(LoadedTrace trace, LoadTrace(a.trace));
  for (const std::string& w : trace.stats.warnings) spdlog::warn("{}", w);
  if (trace.packets.empty()) spdlog::warn("{}: no IPv4/IPv6 packets; the output is empty", a.trace);

  DGC_ASSIGN_OR_RETURN(baseline::BaselineResult r,
                       baseline::RunBaseline(method, trace.packets, options));
  DGC_RETURN_IF_ERROR(baseline::WritePcapFile(a.output, r.packets, writer));
  if (!a.keep.empty()) DGC_RETURN_IF_ERROR(WriteFileAtomic(a.keep, r.kept.bytes));

  nlohmann::json j;
  j["method"] = baseline::BaselineMethodName(method);
  j["description"] = r.description;
  j["trace"] = a.trace;
  j["input_packets"] = r.input_packets;
  j["kept_bytes"] = r.kept_bytes;
  j["kept_records"] = r.kept_records;
  j["kept_record_kind"] = RecordKind(method);
  if (r.input_packets > 0) {
    j["kept_bytes_per_million_packets"] = r.KeptBytesPerMillionPackets();
  } else {
    j["kept_bytes_per_million_packets"] = nullptr;
  }
  j["regenerated_packets"] = r.packets.size();
  j["output"] = a.output;
  j["options"] = {{"sampling_n", options.sampling_n},
                  {"sampling_random", options.sampling_random},
                  {"seed", options.seed},
                  {"flow_ttl", options.flow_ttl},
                  {"flow_sampling_n", options.flow_sampling_n},
                  {"zstd_level", options.zstd_level}};
  j["keep_seconds"] = r.keep_seconds;
  j["regenerate_seconds"] = r.regenerate_seconds;

  // Mark the output as synthetic so it is never mistaken for a capture
  // (OPERATIONS.md): a sidecar beside it, since classic pcap has no comments.
  if (a.output != "-") {
    nlohmann::json side = {{"synthetic", true},
                           {"generator", "dgcctl baseline"},
                           {"method", j["method"]},
                           {"description", r.description},
                           {"source", a.trace},
                           {"options", j["options"]}};
    DGC_RETURN_IF_ERROR(WriteFileAtomic(a.output + ".synthetic.json", side.dump(2) + "\n"));
  }

  // The summary goes to stdout unless the pcap itself does.
  FILE* out = a.output == "-" ? stderr : stdout;
  if (a.summary == "json") {
    std::fprintf(out, "%s\n", j.dump(2).c_str());
  } else {
    std::string per_million =
        r.input_packets > 0 ? absl::StrFormat("%.0f bytes", r.KeptBytesPerMillionPackets()) : "n/a";
    std::fprintf(out,
                 "method                 %s\n"
                 "trace                  %s (%llu packets)\n"
                 "kept                   %llu bytes (%llu %s)\n"
                 "kept per 1M packets    %s\n"
                 "regenerated            %zu packets -> %s\n",
                 r.description.c_str(), a.trace.c_str(),
                 static_cast<unsigned long long>(r.input_packets),
                 static_cast<unsigned long long>(r.kept_bytes),
                 static_cast<unsigned long long>(r.kept_records), RecordKind(method),
                 per_million.c_str(), r.packets.size(), a.output.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterBaselineCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<BaselineArgs>();
  CLI::App* sub = app.add_subcommand(
      "baseline", "Keep a trace the way existing tools would, regenerate it as a pcap, report the bytes kept");
  sub->add_option("--method,-m", args->method, "sampling, flows or marginals (required)");
  sub->add_option("trace", args->trace, "the capture (pcap/pcapng, may be gzip/zstd/xz; - for stdin)");
  sub->add_option("-o,--output", args->output, "the regenerated trace (pcap; - for stdout)");
  sub->add_option("--rate", args->rate,
                  "sampling: keep 1 packet in N, as 1:N; flows: keep 1 flow record in N (default: all), "
                  "regenerated scaled up")
      ->capture_default_str()
      ->each([args](const std::string&) { args->rate_given = true; });
  sub->add_flag("--random", args->random,
                "sampling: keep each packet with probability 1/N instead of every Nth");
  sub->add_option("--seed", args->seed, "seed of --random sampling and of the marginals' draws")
      ->capture_default_str();
  sub->add_option("--ttl", args->ttl, "flows: TTL of the regenerated packets (records keep none)")
      ->capture_default_str();
  sub->add_option("--link", args->link, "link type of the output: raw (IP) or ethernet")
      ->capture_default_str();
  sub->add_option("--summary", args->summary, "summary format on stdout: text or json")
      ->capture_default_str();
  sub->add_option("--keep", args->keep, "also write the kept blob (what the method stores) here");
  sub->footer(R"(Methods:
  sampling   1 packet in N (--rate 1:N, --random), kept as header-only pcap;
             each kept packet is repeated N times over the gap to the next
  flows      flow records (5-tuple, first/last ts, packets, bytes, OR of TCP
             flags) + zstd -19; packets spread evenly over each flow, mean size;
             --rate 1:N keeps 1 record in N (flow sampling), packets and
             bytes of each kept record scaled by N
  marginals  one histogram per field + zstd -19; every field drawn on its own

Kept bytes are the size of the real serialized blob (--keep writes it). The
output is marked synthetic by a sidecar OUT.synthetic.json.

Examples:
  dgcctl baseline --method sampling --rate 1:100 real.pcap -o s100.pcap
  dgcctl baseline --method flows real.pcap -o flows.pcap --summary json
  dgcctl baseline --method flows --rate 1:10 real.pcap -o flows10.pcap
  dgcctl baseline --method marginals --seed 7 real.pcap -o marg.pcap)");
  sub->callback([args, exit_code] {
    Status s = RunBaselineCommand(*args);
    if (!s.ok()) {
      std::fprintf(stderr, "dgcctl baseline: error: %s\n", std::string(s.message()).c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace dgc::ctl

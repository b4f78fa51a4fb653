// dgcctl storage: what keeping one trace costs, method by method (raw,
// compressed, CSV, flow records, sampling, marginals, DGC), in bytes and in
// dollars, for the trace and projected to a busy link.
//
// -o json prints one object with stable fields:
//   trace, packets, frames, raw_bytes (decompressed), wire_bytes, span_seconds
//   assumptions: usd_per_gb_month, retention_months, cpu_hour_usd, gpu_hour_usd,
//                link_tb_per_day, link_basis ("wire" | "raw"), link_scale, sampling_n
//   rows[]: id (raw, raw_gzip6, raw_zstd19, raw_xz9, header, header_gzip6,
//           header_zstd19, header_xz9, csv, csv_gzip6, csv_zstd19, flows_zstd19,
//           sampling<N>, sampling<N>_zstd19, marginals_zstd19, dgc), name, bytes,
//           ratio (to raw_bytes), bytes_per_packet, cpu_seconds (null for dgc
//           without --compute-seconds), gpu, storage_usd (this trace, kept for the
//           retention), compute_usd, link_storage_usd_per_year,
//           link_compute_usd_per_year, link_total_usd_per_year
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/progress.h"
#include "common/baseline/baseline.h"
#include "common/baseline/storage.h"
#include "coordinator/dgcctl/commands.h"
#include "nlohmann/json.hpp"

namespace dgc::ctl {

// cmd_library.cc: the bytes a model library keeps, by kind.
[[nodiscard]] __attribute__((weak)) Status LibraryStorageReport(const std::string& dir, bool json);

namespace {

struct StorageArgs {
  std::string trace;
  std::string library;
  std::string output = "table";
  std::string rate = "1:100";
  std::string scale_by = "wire";
  double model_bytes = 0;
  double compute_seconds = 0;
  CLI::Option* model_bytes_opt = nullptr;  // to tell "not given" from a value
  CLI::Option* compute_seconds_opt = nullptr;
  bool gpu = false;
  baseline::StorageOptions options;
};

// "812 B", "12.35 kB", "3.738 MB": 4 significant digits, decimal units.
std::string HumanBytes(double b) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (b >= 1000 && u < 5) {
    b /= 1000;
    ++u;
  }
  if (u == 0) return absl::StrFormat("%.0f B", b);
  return absl::StrFormat(b >= 100 ? "%.1f %s" : b >= 10 ? "%.2f %s" : "%.3f %s", b, kUnits[u]);
}

// Compact dollars for a 9-character column: 3 significant digits, k/M/B/T.
std::string Usd(double v) {
  if (v == 0) return "$0";
  if (v < 0.01) return absl::StrFormat("$%.1e", v);
  if (v < 1) return absl::StrFormat("$%.2f", v);
  static const char* kSuffix[] = {"", "k", "M", "B", "T"};
  int u = 0;
  while (v >= 999.5 && u < 4) {
    v /= 1000;
    ++u;
  }
  return absl::StrFormat("$%.3g%s", v, kSuffix[u]);
}

std::string Percent(double ratio) {
  double p = ratio * 100;
  if (p >= 10) return absl::StrFormat("%.1f%%", p);
  if (p >= 0.1) return absl::StrFormat("%.2f%%", p);
  if (p >= 0.001) return absl::StrFormat("%.3f%%", p);
  return p == 0 ? "0%" : "<0.001%";
}

std::string Table(const baseline::StorageReport& r) {
  const auto& o = r.options;
  std::string s = absl::StrFormat("TRACE %s\n      %d IP packets (%d frames), %.1f s, raw %s, wire %s\n",
                                  r.trace, r.packets, r.frames, r.span_seconds,
                                  HumanBytes(static_cast<double>(r.raw_bytes)),
                                  HumanBytes(static_cast<double>(r.wire_bytes)));
  absl::StrAppendFormat(&s, "COST  kept %g months at $%g/GB-month; CPU $%g/h, GPU $%g/h\n",
                        o.retention_months, o.usd_per_gb_month, o.cpu_hour_usd, o.gpu_hour_usd);
  if (o.link_basis == baseline::StorageOptions::LinkBasis::kRaw) {
    absl::StrAppendFormat(&s, "LINK  %g TB/day of captures like this one; $ per year, steady state\n\n",
                          o.link_tb_per_day);
  } else {
    absl::StrAppendFormat(&s,
                          "LINK  %g TB/day of traffic, scaled by the trace's wire bytes; $ per "
                          "year, steady state\n\n",
                          o.link_tb_per_day);
  }
  size_t name_w = 4;
  for (const auto& row : r.rows) name_w = std::max(name_w, row.name.size());
  const char* kFormat = "%-*s %9s %7s %6s %6s %8s %10s %8s %10s\n";
  absl::StrAppendFormat(&s, kFormat, name_w, "NAME", "BYTES", "RATIO", "B/PKT", "CPU-S", "TRACE-$",
                        "LINK-STORE", "LINK-CPU", "LINK-TOTAL");
  const bool link = r.LinkScale() > 0;
  for (const auto& row : r.rows) {
    bool compute_known = row.id != "dgc" || o.compute_seconds.has_value();
    std::string cpu = !compute_known ? "-"
                      : row.cpu_seconds >= 100 ? absl::StrFormat("%.0f", row.cpu_seconds)
                                               : absl::StrFormat("%.2f", row.cpu_seconds);
    if (row.gpu && compute_known) cpu += "g";
    std::string bpp = r.packets == 0 ? "-"
                      : r.BytesPerPacket(row) >= 1000
                          ? absl::StrFormat("%.0f", r.BytesPerPacket(row))
                          : absl::StrFormat(r.BytesPerPacket(row) >= 10 ? "%.1f" : "%.2f",
                                            r.BytesPerPacket(row));
    absl::StrAppendFormat(
        &s, kFormat, name_w, row.name, HumanBytes(static_cast<double>(row.bytes)),
        Percent(r.Ratio(row)), bpp, cpu, Usd(r.StorageUsd(row) + r.ComputeUsd(row)),
        link ? Usd(r.LinkStorageUsdPerYear(row)) : "-",
        link && compute_known ? Usd(r.LinkComputeUsdPerYear(row)) : "-",
        link ? Usd(r.LinkTotalUsdPerYear(row)) : "-");
  }
  absl::StrAppend(&s,
                  "\nTRACE-$: this trace kept for the retention, plus its compute. CPU-S: CPU "
                  "seconds to make\nthe form from the packets (\"g\": GPU seconds). LINK-*: the "
                  "same scaled to the link.\n");
  return s;
}

nlohmann::json Json(const baseline::StorageReport& r) {
  const auto& o = r.options;
  nlohmann::json j;
  j["trace"] = r.trace;
  j["packets"] = r.packets;
  j["frames"] = r.frames;
  j["raw_bytes"] = r.raw_bytes;
  j["wire_bytes"] = r.wire_bytes;
  j["span_seconds"] = r.span_seconds;
  j["assumptions"] = {{"usd_per_gb_month", o.usd_per_gb_month},
                      {"retention_months", o.retention_months},
                      {"cpu_hour_usd", o.cpu_hour_usd},
                      {"gpu_hour_usd", o.gpu_hour_usd},
                      {"link_tb_per_day", o.link_tb_per_day},
                      {"link_basis", o.link_basis == baseline::StorageOptions::LinkBasis::kRaw
                                         ? "raw"
                                         : "wire"},
                      {"link_scale", r.LinkScale()},
                      {"sampling_n", o.sampling_n}};
  j["rows"] = nlohmann::json::array();
  for (const auto& row : r.rows) {
    bool compute_known = row.id != "dgc" || o.compute_seconds.has_value();
    nlohmann::json x = {{"id", row.id},
                        {"name", row.name},
                        {"bytes", row.bytes},
                        {"ratio", r.Ratio(row)},
                        {"bytes_per_packet", r.BytesPerPacket(row)},
                        {"gpu", row.gpu},
                        {"storage_usd", r.StorageUsd(row)},
                        {"link_storage_usd_per_year", r.LinkStorageUsdPerYear(row)}};
    if (compute_known) {
      x["cpu_seconds"] = row.cpu_seconds;
      x["compute_usd"] = r.ComputeUsd(row);
      x["link_compute_usd_per_year"] = r.LinkComputeUsdPerYear(row);
    } else {
      x["cpu_seconds"] = nullptr;
      x["compute_usd"] = nullptr;
      x["link_compute_usd_per_year"] = nullptr;
    }
    x["link_total_usd_per_year"] = r.LinkTotalUsdPerYear(row);
    j["rows"].push_back(x);
  }
  return j;
}

Status RunStorageCommand(StorageArgs& a) {
  if (a.output != "table" && a.output != "json") {
    return absl::InvalidArgumentError(absl::StrCat("-o '", a.output, "': use table or json"));
  }
  if (!a.library.empty()) {
    if (!a.trace.empty()) {
      return absl::InvalidArgumentError("give either TRACE (what keeping a capture costs) or --library DIR "
                                        "(what a library keeps), not both");
    }
    if (!LibraryStorageReport) return absl::UnimplementedError("this dgcctl was built without the model library");
    return LibraryStorageReport(a.library, a.output == "json");
  }
  if (a.trace.empty()) return absl::InvalidArgumentError("missing TRACE (the capture to measure) or --library DIR");
  DGC_ASSIGN_OR_RETURN(a.options.sampling_n, baseline::ParseSamplingRate(a.rate));
  if (a.scale_by == "raw") {
    a.options.link_basis = baseline::StorageOptions::LinkBasis::kRaw;
  } else if (a.scale_by != "wire") {
    return absl::InvalidArgumentError(absl::StrCat("--scale-by '", a.scale_by, "': use wire or raw"));
  }
  if (a.model_bytes_opt->count() > 0) {
    if (!(a.model_bytes >= 0) || a.model_bytes != std::floor(a.model_bytes) || a.model_bytes > 1e18) {
      return absl::InvalidArgumentError("--model-bytes must be a whole number of bytes >= 0");
    }
    a.options.model_bytes = static_cast<uint64_t>(a.model_bytes);
  }
  if (a.compute_seconds_opt->count() > 0) a.options.compute_seconds = a.compute_seconds;
  a.options.gpu = a.gpu;
  a.options.progress = ProgressBar::DefaultEnabled();
  DGC_ASSIGN_OR_RETURN(baseline::StorageReport report, baseline::MeasureStorage(a.trace, a.options));
  if (a.output == "json") {
    std::printf("%s\n", Json(report).dump(2).c_str());
  } else {
    std::printf("%s", Table(report).c_str());
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterStorageCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<StorageArgs>();
  CLI::App* sub = app.add_subcommand(
      "storage", "Bytes and dollars of keeping a trace, per method: raw, compressed, CSV, flows, "
                 "sampling, DGC");
  auto& o = args->options;
  sub->add_option("trace", args->trace, "the capture (pcap/pcapng, may be gzip/zstd/xz; - for stdin)");
  sub->add_option("-o,--output", args->output, "table or json")->capture_default_str();
  sub->add_option("--library", args->library,
                  "instead of a trace: the bytes a model library keeps by kind (skeletons, deltas, "
                  "reports, metadata, base models) and their ratio to the raw bytes ingested");
  sub->add_option("--rate", args->rate, "the sampling rows keep 1 packet in N, as 1:N")
      ->capture_default_str();
  args->model_bytes_opt = sub->add_option("--model-bytes", args->model_bytes,
                                          "size of a DGC model of this trace: adds a DGC row");
  args->compute_seconds_opt = sub->add_option(
      "--compute-seconds", args->compute_seconds,
      "compute DGC spent on this trace (CPU seconds, or GPU seconds with --gpu)");
  sub->add_flag("--gpu", args->gpu, "--compute-seconds are GPU seconds");
  sub->add_option("--usd-per-gb-month", o.usd_per_gb_month, "storage price, $ per GB-month")
      ->capture_default_str();
  sub->add_option("--retention-months", o.retention_months, "how long what is kept is kept")
      ->capture_default_str();
  sub->add_option("--cpu-hour-usd", o.cpu_hour_usd, "price of a CPU core hour")->capture_default_str();
  sub->add_option("--gpu-hour-usd", o.gpu_hour_usd, "price of a GPU hour")->capture_default_str();
  sub->add_option("--link-tb-per-day", o.link_tb_per_day, "traffic of the link to project to")
      ->capture_default_str();
  sub->add_option("--scale-by", args->scale_by,
                  "what the link's TB are: wire (traffic) or raw (captures like this file)")
      ->capture_default_str();
  sub->add_option("--threads", o.threads, "compressors run at once (0: one per core)")
      ->capture_default_str();
  sub->footer(R"(Rows: the raw capture (decompressed), a header-only rewrite, each with gzip -6,
zstd -19 and xz -9 (in-process zlib/libzstd/liblzma); the CSV form (ts,src,dst,proto,
sport,dport,size,ttl,tcp_flags) with gzip -6 and zstd -19; flow records + zstd -19 (as
`dgcctl baseline --method flows` keeps them); sampling 1:N header-only, plain and
+ zstd -19; the marginal histograms + zstd -19; and with --model-bytes, DGC.

Dollars: storage at --usd-per-gb-month for --retention-months, compute at the hourly
prices. The link projection scales the trace to --link-tb-per-day (of traffic, by the
trace's wire bytes; or with --scale-by raw, of captures like this file, by its raw
size) and holds every day for the retention period (steady state), so LINK-TOTAL is
the yearly bill of keeping that link in each form.

With --library DIR (and no TRACE): what a model library keeps, by kind, and its ratio to
the raw capture bytes its chunks were made from (-o json: library, chunks, packets,
finetune_models, full_models, raw_bytes_ingested, rows[]: id (skeletons, deltas, reports,
metadata, chunks_total, base_models, total), name, bytes, ratio_to_raw).

Examples:
  dgcctl storage real.pcap
  dgcctl storage --library lib/
  dgcctl storage real.pcap --model-bytes 180000 --compute-seconds 40 --gpu -o json
  dgcctl storage real.pcap --link-tb-per-day 50 --usd-per-gb-month 0.004)");
  sub->callback([args, exit_code] {
    Status s = RunStorageCommand(*args);
    if (!s.ok()) {
      std::fprintf(stderr, "dgcctl storage: error: %s\n", std::string(s.message()).c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace dgc::ctl

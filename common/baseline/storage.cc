#include "common/baseline/storage.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/progress.h"
#include "common/baseline/codec.h"
#include "common/baseline/flow_records.h"
#include "common/trace/trace_file.h"
#include "common/baseline/marginals.h"
#include "common/baseline/pcap_image.h"
#include "common/baseline/sampling.h"
#include "common/trace/flow.h"
#include "common/trace/input_stream.h"

namespace dgc::baseline {
namespace {

constexpr double kBytesPerGb = 1e9;
constexpr double kBytesPerTb = 1e12;
constexpr double kDaysPerYear = 365;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// One compressor run: `input` through `codec`, into rows[row].
struct Job {
  size_t row;
  Codec codec;
  const std::string* input;
  double base_cpu;  // CPU seconds already spent making `input`
};

Status CheckOptions(const StorageOptions& o) {
  if (o.sampling_n < 1) return absl::InvalidArgumentError("--sampling must be 1:N with N >= 1");
  const std::initializer_list<std::pair<const char*, double>> prices = {
      {"--usd-per-gb-month", o.usd_per_gb_month}, {"--retention-months", o.retention_months},
      {"--cpu-hour-usd", o.cpu_hour_usd},         {"--gpu-hour-usd", o.gpu_hour_usd},
      {"--link-tb-per-day", o.link_tb_per_day}};
  for (const auto& [name, v] : prices) {
    if (!(v >= 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be a finite number >= 0"));
    }
  }
  if (o.compute_seconds && (!(*o.compute_seconds >= 0) || !std::isfinite(*o.compute_seconds))) {
    return absl::InvalidArgumentError("--compute-seconds must be a finite number >= 0");
  }
  return absl::OkStatus();
}

void AppendTs(std::string* out, int64_t ts_ns, bool nano) {
  int64_t sec = ts_ns / 1000000000, frac = ts_ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    sec -= 1;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, sec);
  out->append(buf, r.ptr);
  out->push_back('.');
  int digits = nano ? 9 : 6;
  if (!nano) frac /= 1000;
  char f[9];
  for (int i = digits - 1; i >= 0; --i) {
    f[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  out->append(f, digits);
}

void AppendUint(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

StatusOr<StorageReport> Measure(const std::string& capture, LoadedTrace trace,
                                const StorageOptions& options) {
  StorageReport report;
  report.trace = trace.name;
  report.options = options;
  report.packets = trace.packets.size();
  report.frames = trace.stats.frames;
  report.raw_bytes = capture.size();
  report.wire_bytes = trace.stats.wire_bytes;
  if (!trace.packets.empty()) {
    report.span_seconds =
        static_cast<double>(trace.packets.back().ts_ns - trace.packets.front().ts_ns) * 1e-9;
  }
  const auto& packets = trace.packets;
  auto& rows = report.rows;
  auto add = [&rows](std::string id, std::string name, uint64_t bytes = 0, double cpu = 0) {
    rows.push_back(StorageRow{std::move(id), std::move(name), bytes, cpu, false});
    return rows.size() - 1;
  };

  // The uncompressed forms, built here on one thread and timed.
  double t = ThreadCpuSeconds();
  std::string header = PcapImage(packets);
  double header_cpu = ThreadCpuSeconds() - t;
  t = ThreadCpuSeconds();
  std::string csv = CsvForm(packets);
  double csv_cpu = ThreadCpuSeconds() - t;
  t = ThreadCpuSeconds();
  std::string flows = EncodeFlowRecords(BuildFlows(packets));
  double flows_cpu = ThreadCpuSeconds() - t;
  t = ThreadCpuSeconds();
  std::vector<PacketRecord> sampled;
  for (size_t i : SampleIndices(packets.size(), options.sampling_n, false, 0)) {
    sampled.push_back(packets[i]);
  }
  std::string sample = PcapImage(sampled);
  double sample_cpu = ThreadCpuSeconds() - t;
  t = ThreadCpuSeconds();
  std::string marginals = EncodeMarginals(BuildMarginals(packets));
  double marginals_cpu = ThreadCpuSeconds() - t;

  std::vector<Job> jobs;
  auto compressed = [&](const std::string& id, const std::string& name, Codec codec,
                        const std::string* input, double base_cpu) {
    const int level = DefaultLevel(codec);
    size_t row = add(absl::StrCat(id, "_", CodecName(codec), level),
                     absl::StrCat(name, " + ", CodecName(codec), " -", level));
    jobs.push_back(Job{row, codec, input, base_cpu});
  };
  const std::string sampling_name = absl::StrCat("sampling 1:", options.sampling_n);
  add("raw", "raw pcap", capture.size(), 0);
  for (Codec c : {Codec::kGzip, Codec::kZstd, Codec::kXz}) compressed("raw", "raw pcap", c, &capture, 0);
  add("header", "header-only pcap", header.size(), header_cpu);
  for (Codec c : {Codec::kGzip, Codec::kZstd, Codec::kXz}) {
    compressed("header", "header-only", c, &header, header_cpu);
  }
  add("csv", "CSV", csv.size(), csv_cpu);
  for (Codec c : {Codec::kGzip, Codec::kZstd}) compressed("csv", "CSV", c, &csv, csv_cpu);
  compressed("flows", "flow records", Codec::kZstd, &flows, flows_cpu);
  add(absl::StrCat("sampling", options.sampling_n), sampling_name, sample.size(), sample_cpu);
  compressed(absl::StrCat("sampling", options.sampling_n), sampling_name, Codec::kZstd, &sample,
             sample_cpu);
  compressed("marginals", "marginals", Codec::kZstd, &marginals, marginals_cpu);
  if (options.model_bytes) {
    StorageRow dgc{"dgc", "DGC model", *options.model_bytes, options.compute_seconds.value_or(0),
                   options.gpu};
    rows.push_back(dgc);
  }

  // Longest first (xz, then zstd, by input size) so the pool ends together.
  auto cost = [](const Job& j) {
    double per_byte = j.codec == Codec::kXz ? 10 : j.codec == Codec::kZstd ? 6 : 1;
    return per_byte * static_cast<double>(j.input->size());
  };
  std::sort(jobs.begin(), jobs.end(), [&](const Job& a, const Job& b) { return cost(a) > cost(b); });
  // Progress is weighted by the same cost estimate, so the bar moves at an
  // even pace rather than racing through gzip and crawling through xz.
  double total_cost = 0;
  for (const Job& j : jobs) total_cost += cost(j);
  std::unique_ptr<std::atomic<uint64_t>[]> consumed(new std::atomic<uint64_t>[jobs.size()]);
  for (size_t i = 0; i < jobs.size(); ++i) consumed[i] = 0;

  std::vector<Status> results(jobs.size());
  std::atomic<size_t> next{0}, finished{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      const Job& job = jobs[i];
      double start = ThreadCpuSeconds();
      auto out = Compress(job.codec, DefaultLevel(job.codec), *job.input, &consumed[i]);
      double cpu = ThreadCpuSeconds() - start;
      if (out.ok()) {
        rows[job.row].bytes = out->size();
        rows[job.row].cpu_seconds = job.base_cpu + cpu;
      } else {
        results[i] = absl::Status(out.status().code(),
                                  absl::StrCat(rows[job.row].name, ": ", out.status().message()));
      }
      finished.fetch_add(1);
    }
  };
  int threads = options.threads > 0 ? options.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(jobs.size()));
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  {
    constexpr uint64_t kScale = 1000;
    ProgressBar bar("compressing", kScale, options.progress && ProgressBar::DefaultEnabled());
    while (finished.load() < jobs.size()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      double done = 0;
      for (size_t i = 0; i < jobs.size(); ++i) {
        double size = static_cast<double>(jobs[i].input->size());
        if (size > 0) done += cost(jobs[i]) * static_cast<double>(consumed[i].load()) / size;
      }
      uint64_t scaled = total_cost > 0 ? static_cast<uint64_t>(kScale * done / total_cost) : 0;
      bar.Update(scaled, absl::StrCat(finished.load(), "/", jobs.size(), " forms"));
    }
  }
  for (auto& th : pool) th.join();
  for (const Status& s : results) DGC_RETURN_IF_ERROR(s);
  return report;
}

}  // namespace

std::string CsvForm(absl::Span<const PacketRecord> packets) {
  bool nano = std::any_of(packets.begin(), packets.end(),
                          [](const PacketRecord& p) { return p.ts_ns % 1000 != 0; });
  std::string out = "ts,src,dst,proto,sport,dport,size,ttl,tcp_flags\n";
  out.reserve(out.size() + packets.size() * 64);
  for (const PacketRecord& p : packets) {
    AppendTs(&out, p.ts_ns, nano);
    out.push_back(',');
    out += p.src.ToString(p.is_v6());
    out.push_back(',');
    out += p.dst.ToString(p.is_v6());
    out.push_back(',');
    AppendUint(&out, p.proto);
    out.push_back(',');
    AppendUint(&out, p.sport);
    out.push_back(',');
    AppendUint(&out, p.dport);
    out.push_back(',');
    AppendUint(&out, p.ip_len);
    out.push_back(',');
    AppendUint(&out, p.ttl);
    out.push_back(',');
    AppendUint(&out, p.tcp_flags);
    out.push_back('\n');
  }
  return out;
}

double StorageReport::Ratio(const StorageRow& row) const {
  return raw_bytes == 0 ? 0 : static_cast<double>(row.bytes) / static_cast<double>(raw_bytes);
}

double StorageReport::BytesPerPacket(const StorageRow& row) const {
  return packets == 0 ? 0 : static_cast<double>(row.bytes) / static_cast<double>(packets);
}

double StorageReport::StorageUsd(const StorageRow& row) const {
  return static_cast<double>(row.bytes) / kBytesPerGb * options.usd_per_gb_month *
         options.retention_months;
}

double StorageReport::ComputeUsd(const StorageRow& row) const {
  return row.cpu_seconds / 3600 * (row.gpu ? options.gpu_hour_usd : options.cpu_hour_usd);
}

double StorageReport::LinkScale() const {
  uint64_t base = options.link_basis == StorageOptions::LinkBasis::kRaw ? raw_bytes : wire_bytes;
  if (base == 0) return 0;
  return options.link_tb_per_day * kBytesPerTb / static_cast<double>(base);
}

double StorageReport::LinkStorageUsdPerYear(const StorageRow& row) const {
  // Steady state: retention_months of days are held at any time, each day
  // keeping bytes * scale; a year of that volume costs 12 month-prices.
  double daily_gb = static_cast<double>(row.bytes) * LinkScale() / kBytesPerGb;
  double held_gb = daily_gb * kDaysPerYear * options.retention_months / 12;
  return held_gb * options.usd_per_gb_month * 12;
}

double StorageReport::LinkComputeUsdPerYear(const StorageRow& row) const {
  return ComputeUsd(row) * LinkScale() * kDaysPerYear;
}

const StorageRow* StorageReport::Find(const std::string& id) const {
  for (const StorageRow& r : rows) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

StatusOr<StorageReport> MeasureStorageOfBytes(std::string capture, const std::string& name,
                                              const StorageOptions& options) {
  DGC_RETURN_IF_ERROR(CheckOptions(options));
  DGC_ASSIGN_OR_RETURN(auto source, InputSource::FromBuffer(capture, name));
  DGC_ASSIGN_OR_RETURN(LoadedTrace trace, LoadTrace(std::move(source)));
  // Sizes are of the decompressed capture, whatever the buffer held.
  if (capture.size() >= 4) {
    DGC_ASSIGN_OR_RETURN(auto again, InputSource::FromBuffer(capture, name));
    if (again->compression() != Compression::kNone) {
      std::string plain;
      char buf[1 << 16];
      for (size_t n; (n = again->Read(buf, sizeof buf)) > 0;) plain.append(buf, n);
      DGC_RETURN_IF_ERROR(again->error());
      capture = std::move(plain);
    }
  }
  return Measure(capture, std::move(trace), options);
}

StatusOr<StorageReport> MeasureStorage(const std::string& path, const StorageOptions& options) {
  DGC_RETURN_IF_ERROR(CheckOptions(options));
  if (path == "-") {
    DGC_ASSIGN_OR_RETURN(auto in, InputSource::Open(path));
    std::string bytes;
    char buf[1 << 16];
    for (size_t n; (n = in->Read(buf, sizeof buf)) > 0;) bytes.append(buf, n);
    DGC_RETURN_IF_ERROR(in->error());
    return MeasureStorageOfBytes(std::move(bytes), "stdin", options);
  }
  // Parse first: a file that is not a capture fails here with the reader's
  // message, before anything is compressed.
  DGC_ASSIGN_OR_RETURN(LoadedTrace trace, LoadTrace(path));
  DGC_ASSIGN_OR_RETURN(auto in, InputSource::Open(path));
  std::string capture;
  if (in->raw_size() > 0 && in->compression() == Compression::kNone) capture.reserve(in->raw_size());
  char buf[1 << 16];
  for (size_t n; (n = in->Read(buf, sizeof buf)) > 0;) capture.append(buf, n);
  DGC_RETURN_IF_ERROR(in->error());
  return Measure(capture, std::move(trace), options);
}

}  // namespace dgc::baseline

// The storage and cost report (`dgcctl storage`): for one trace, the bytes
// each way of keeping it takes, its ratio to the raw capture, and what that
// costs per year, for the trace itself and projected to a busy link.
//
// Every size is measured on the real bytes (compressors run in-process on
// the real serialized forms), never estimated. CPU seconds are the thread
// CPU time of producing each form from the packets in memory (reading the
// capture is not counted; it is common to all).
#ifndef DGC_COMMON_BASELINE_STORAGE_H_
#define DGC_COMMON_BASELINE_STORAGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/packet.h"

namespace dgc::baseline {

struct StorageOptions {
  // The "sampling 1:N" rows (default 1:100).
  uint32_t sampling_n = 100;
  // Bytes of a DGC model of this trace: adds a "DGC" row when set.
  std::optional<uint64_t> model_bytes;
  // Compute seconds DGC spent on this trace (training/fine-tuning), priced
  // at gpu_hour_usd when `gpu`, else cpu_hour_usd. Without it the DGC row
  // has no compute cost.
  std::optional<double> compute_seconds;
  bool gpu = false;
  // Storage price in $ per GB-month (GB = 1e9 bytes); default 0.02, about
  // object storage's standard tier.
  double usd_per_gb_month = 0.02;
  // How long what is kept is kept, in months (default one year).
  double retention_months = 12;
  // Compute prices in $ per hour: a CPU core (default 0.04) and a GPU (2.50).
  double cpu_hour_usd = 0.04;
  double gpu_hour_usd = 2.50;
  // The link the projection is for, in TB (1e12 bytes) per day (default 10).
  double link_tb_per_day = 10;
  // What those TB are. kWire (default): traffic on the wire, so the trace is
  // scaled by its wire bytes (a header-only capture of a 10 TB/day link is
  // far less than 10 TB/day). kRaw: captures like this file, so the raw row
  // is the link volume and every row scales by its ratio to raw.
  enum class LinkBasis { kWire, kRaw };
  LinkBasis link_basis = LinkBasis::kWire;
  // Threads running compressors at once; 0 = one per hardware thread.
  int threads = 0;
  // Draw a progress bar on stderr (only when it is a terminal by default).
  bool progress = true;
};

struct StorageRow {
  std::string id;    // stable key for JSON: "raw", "header_zstd19", "flows_zstd19", "dgc", ...
  std::string name;  // for people: "header-only + zstd -19"
  uint64_t bytes = 0;
  double cpu_seconds = 0;  // measured; for "dgc" the given compute seconds
  bool gpu = false;        // cpu_seconds are GPU seconds (DGC with --gpu)
};

struct StorageReport {
  std::string trace;
  uint64_t packets = 0;     // IP packets
  uint64_t frames = 0;      // all frames, non-IP included
  uint64_t raw_bytes = 0;   // the capture as given, decompressed
  uint64_t wire_bytes = 0;  // sum of the frames' wire lengths: the traffic
  double span_seconds = 0;  // last - first IP packet
  StorageOptions options;
  std::vector<StorageRow> rows;

  // bytes / raw_bytes (0 when raw_bytes is 0).
  double Ratio(const StorageRow& row) const;
  // bytes / packets (0 without packets).
  double BytesPerPacket(const StorageRow& row) const;
  // Keeping this trace's form for options.retention_months.
  double StorageUsd(const StorageRow& row) const;
  // Producing this trace's form (CPU or GPU seconds at their hourly price).
  double ComputeUsd(const StorageRow& row) const;
  // The trace scaled to the link: link bytes per day / the trace's wire
  // bytes (or raw bytes, per options.link_basis); 0 when those are 0.
  double LinkScale() const;
  // Per year on the link, in steady state: every day's traffic is kept in
  // this form for retention_months, and compressed at this row's CPU cost.
  double LinkStorageUsdPerYear(const StorageRow& row) const;
  double LinkComputeUsdPerYear(const StorageRow& row) const;
  double LinkTotalUsdPerYear(const StorageRow& row) const {
    return LinkStorageUsdPerYear(row) + LinkComputeUsdPerYear(row);
  }
  const StorageRow* Find(const std::string& id) const;
};

// Measures the capture at `path` ("-" for stdin; gzip/zstd/xz-compressed
// captures are measured decompressed). NotFound / InvalidArgument when the
// file is missing or not a capture; InvalidArgument for bad options.
[[nodiscard]] StatusOr<StorageReport> MeasureStorage(const std::string& path,
                                                     const StorageOptions& options);
// The same over a capture already in memory (decompressed or not).
[[nodiscard]] StatusOr<StorageReport> MeasureStorageOfBytes(std::string capture,
                                                            const std::string& name,
                                                            const StorageOptions& options);

// The CSV form: a header line, then one row per packet
// "ts,src,dst,proto,sport,dport,size,ttl,tcp_flags", ts in epoch seconds with
// 6 decimals, or 9 when some timestamp is not a whole microsecond.
std::string CsvForm(absl::Span<const PacketRecord> packets);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_STORAGE_H_

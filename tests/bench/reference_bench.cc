// dgc-reference-bench: how far baseline::Zstd19Size's estimate of zstd -19
// (the unit of `--budget 0.1x`) is from the measured size, and what each
// costs, on the header-only images of a capture's chunks.
//
//   dgc-reference-bench TRACE... [--chunk-seconds 600]
//
// Each trace is cut into chunks of --chunk-seconds by timestamp (as ingest
// cuts them, from the first packet); every chunk whose image is over the
// exact limit (4 MiB) is compressed both ways. Prints one row per such chunk
// and, per trace, the error range and the CPU seconds of each.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/baseline/codec.h"
#include "common/baseline/pcap_image.h"
#include "common/trace/trace_file.h"

namespace {

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"zstd -19 of chunk images: the estimate against the measured size"};
  std::vector<std::string> traces;
  double chunk_seconds = 600;
  double exact_mib = 4;
  app.add_option("traces", traces, "captures")->required()->check(CLI::ExistingFile);
  app.add_option("--chunk-seconds", chunk_seconds, "chunk length")->check(CLI::PositiveNumber);
  app.add_option("--exact-up-to-mib", exact_mib, "images up to this size are measured, not estimated")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  std::printf("%-28s %6s %9s %11s %11s %7s %8s %8s\n", "trace", "chunk", "packets", "zstd-19 B", "estimate B",
              "error%", "exact s", "est s");
  for (const std::string& path : traces) {
    auto t = dgc::LoadTrace(path);
    if (!t.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(t.status().message()).c_str());
      return 1;
    }
    const auto& pk = t->packets;
    if (pk.empty()) continue;
    const int64_t len = static_cast<int64_t>(chunk_seconds * 1e9);
    double lo = 1e9, hi = -1e9, exact_s = 0, est_s = 0;
    int n = 0;
    size_t b = 0;
    for (int c = 0; b < pk.size(); ++c) {
      size_t e = b;
      const int64_t end = pk[0].ts_ns + (c + 1) * len;
      while (e < pk.size() && pk[e].ts_ns < end) ++e;
      if (e == b) continue;
      const std::string image = dgc::baseline::PcapImage(absl::MakeConstSpan(&pk[b], e - b));
      auto est_t0 = CpuSeconds();
      auto est = dgc::baseline::Zstd19Size(image, static_cast<uint64_t>(exact_mib * 1048576));
      const double est_cpu = CpuSeconds() - est_t0;
      if (!est.ok() || !est->estimated) {
        b = e;
        continue;
      }
      auto ex_t0 = CpuSeconds();
      auto exact = dgc::baseline::Zstd19Size(image, image.size());
      const double ex_cpu = CpuSeconds() - ex_t0;
      if (!exact.ok()) return 1;
      const double err = (double(est->bytes) - double(exact->bytes)) / double(exact->bytes) * 100;
      std::string name = path.substr(path.find_last_of('/') + 1);
      std::printf("%-28.28s %6d %9zu %11llu %11llu %+7.2f %8.2f %8.2f\n", name.c_str(), c, e - b,
                  static_cast<unsigned long long>(exact->bytes), static_cast<unsigned long long>(est->bytes), err,
                  ex_cpu, est_cpu);
      lo = std::min(lo, err);
      hi = std::max(hi, err);
      exact_s += ex_cpu;
      est_s += est_cpu;
      ++n;
      b = e;
    }
    if (n > 0) {
      std::printf("# %s: %d chunk(s) estimated, error %+.2f%% to %+.2f%%, CPU %.1f s measured vs %.1f s estimated "
                  "(%.1fx)\n",
                  path.c_str(), n, lo, hi, exact_s, est_s, exact_s / std::max(est_s, 1e-9));
    } else {
      std::printf("# %s: no chunk over the exact limit (all measured)\n", path.c_str());
    }
  }
  return 0;
}

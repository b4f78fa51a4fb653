// dgc-ingest: reads captures of one link and cuts them into chunks.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "CLI/CLI.hpp"
#include "common/base/logging.h"
#include "ingest/file_ingest.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{"dgc-ingest: read packet captures of one link and cut them into chunks"};
  app.footer(R"(Inputs are pcap or pcapng files (the magic number decides, not the name),
optionally gzip-, zstd- or xz-compressed, directories of such files, or '-' for
standard input. Several files of one link are merged by time. Chunks are
windows of --chunk-seconds aligned to the epoch, written as <out>/<link>/*.dgcc.

Examples:
  dgc-ingest trace.pcap --out /var/spool/dgc
  dgc-ingest /captures/day1/ --link tap0 --chunk-seconds 600 --out spool -o json
  tcpdump -i eth0 -w - | dgc-ingest - --out spool

Exit status: 0 on success (corrupt records inside a file are reported on
stderr and skipped), 1 when an input cannot be read or a chunk not written.)");
  dgc::FileIngestOptions opt;
  double chunk_seconds = 60, reorder_seconds = 10;
  std::string output = "table", log_level = "info";
  bool strict = false, no_progress = false;
  app.add_option("inputs", opt.inputs, "capture files, directories, or - for stdin")->required();
  app.add_option("--out", opt.spool_dir, "spool directory for chunks")->required();
  app.add_option("--link", opt.chunker.link, "name of the link these captures come from")
      ->capture_default_str();
  app.add_option("--chunk-seconds", chunk_seconds, "chunk window length in seconds")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--reorder-seconds", reorder_seconds,
                 "how late a packet may arrive before its window is written (later ones amend it)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--zstd-level", opt.zstd_level, "zstd level of the chunk columns")
      ->capture_default_str()->check(CLI::Range(1, 19));
  app.add_option("-o,--output", output, "summary format: table or json")
      ->capture_default_str()->check(CLI::IsMember({"table", "json"}));
  app.add_flag("--strict", strict, "exit 1 when any record was corrupt or an input was truncated");
  app.add_flag("--no-progress", no_progress, "no progress bar even on a terminal");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "dgc-ingest: " << e.what() << "\nRun 'dgc-ingest --help' for usage.\n";
    return 1;
  }
  dgc::InitLogging("dgc-ingest", log_level);

  opt.chunker.chunk_ns = static_cast<int64_t>(chunk_seconds * 1e9);
  opt.chunker.reorder_ns = static_cast<int64_t>(reorder_seconds * 1e9);
  opt.progress = !no_progress;
  auto sum = dgc::RunFileIngest(opt);
  if (!sum.ok()) {
    spdlog::error("{}", std::string(sum.status().message()));
    return 1;
  }
  for (const auto& w : sum->read.warnings) spdlog::warn("{}", w);
  if (output == "json") {
    std::cout << sum->ToJson().dump(2) << "\n";
  } else {
    std::cout << sum->ToTable();
  }
  if (strict && sum->read.errors() > 0) {
    spdlog::error("{} read error(s) and --strict given", sum->read.errors());
    return 1;
  }
  return 0;
}

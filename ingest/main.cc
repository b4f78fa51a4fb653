// dgc-ingest: reads captures of one link and cuts them into chunks.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <csignal>

#include <boost/asio.hpp>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"
#include "common/runtime/health_server.h"
#include "common/runtime/process.h"
#include "ingest/file_ingest.h"
#include "ingest/net_ingest.h"
#include "spdlog/spdlog.h"

namespace {

// Network mode (PROCESSES.md): a capture thread cuts chunks into the spool,
// the loop ships them to the coordinator; runs until the input ends and the
// spool is empty, or until SIGTERM/SIGINT.
int RunNetworkMode(dgc::NetIngestOptions o, const dgc::runtime::CommonFlags& common) {
  auto security = dgc::runtime::ClientSecurity(common.curve_secret_key_file, common.curve_server_key_file,
                                               common.insecure);
  if (!security.ok()) {
    spdlog::error("{}", std::string(security.status().message()));
    return 1;
  }
  o.security = *security;
  if (!o.coordinator.empty()) {
    if (auto st = dgc::runtime::CheckClientEndpoint(o.coordinator, o.security); !st.ok()) {
      spdlog::error("{}", std::string(st.message()));
      return 1;
    }
  }
  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  dgc::runtime::ProcessMetrics metrics;
  dgc::runtime::LoopLiveness liveness;
  auto zmq = dgc::wire::ZmqContext::Create();
  if (!zmq.ok()) {
    spdlog::error("{}", std::string(zmq.status().message()));
    return 1;
  }
  int exit_code = 0;
  {
    dgc::NetIngest ingest(io, **zmq, metrics, o);
    auto health = dgc::runtime::HealthServer::Start(
        common.metrics, &metrics.registry(), [&] { return liveness.Probe(); }, [&] { return ingest.Ready(); });
    if (!health.ok()) {
      spdlog::error("{}", std::string(health.status().message()));
      return 1;
    }
    spdlog::info("metrics listening on {}", (*health)->address());
    ingest.set_on_finished([&] {
      if (!ingest.capture_status().ok()) exit_code = 1;
      io.stop();
    });
    if (auto st = ingest.Start(); !st.ok()) {
      spdlog::error("{}", std::string(st.message()));
      return 1;
    }
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: writing the partial chunk and shipping what the coordinator takes", sig);
      ingest.Stop(std::chrono::milliseconds(5000));
    });
    dgc::runtime::LivenessTicker ticker(io, liveness);
    ticker.Start();
    io.run();
  }
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace

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

Network mode (deploy/PROCESSES.md): with --coordinator, chunks are shipped to
the coordinator and deleted from the spool once acknowledged; while it is
unreachable they stay in the spool (at most --spool-max-bytes). --interface
captures live, --follow reads every capture file that appears in a directory.

  dgc-ingest --interface eth0 --filter "ip or ip6" --spool-dir /var/spool/dgc \
      --coordinator tcp://dgc-coordinator:7070 --shard 0/2
  dgc-ingest /captures/incoming/ --follow --spool-dir spool --coordinator tcp://127.0.0.1:7070

Exit status: 0 on success (corrupt records inside a file are reported on
stderr and skipped), 1 when an input cannot be read or a chunk not written.)");
  dgc::FileIngestOptions opt;
  double chunk_seconds = 60, reorder_seconds = 10;
  std::string output = "table", log_level = "info";
  bool strict = false, no_progress = false;
  dgc::runtime::CommonFlags common;
  dgc::runtime::AddCommonFlags(app, dgc::runtime::Role::kIngest, &common);
  dgc::NetIngestOptions net;
  std::string shard = "0/1";
  app.add_option("inputs", opt.inputs, "capture files, directories, or - for stdin");
  app.add_option("--spool-dir,--out", opt.spool_dir, "spool directory for chunks")->required();
  app.add_option("--interface", net.interface, "capture live on this interface (libpcap)");
  app.add_option("--filter", net.filter, "BPF: capture filter (live) or read filter (files)");
  app.add_option("--snaplen", net.snaplen, "bytes captured per packet (headers)")->capture_default_str();
  app.add_option("--buffer-bytes", net.buffer_bytes, "libpcap buffer")->capture_default_str();
  app.add_flag("--follow", net.follow, "keep reading each capture file that appears in the input directory");
  app.add_option("--settle-seconds", net.settle_seconds,
                 "with --follow: the newest file is complete once unchanged this long (earlier files once a later "
                 "one exists; *.part, *.tmp and hidden files are never read: write aside, then rename)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--shard", shard, "i/n: keep the flows whose 5-tuple hashes to i mod n")->capture_default_str();
  app.add_option("--coordinator", net.coordinator, "ship chunks to this coordinator (its --listen)");
  app.add_option("--spool-max-bytes", net.spool_max_bytes, "beyond this the oldest spooled chunk is evicted")
      ->capture_default_str();
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
  if (int rc = dgc::runtime::ParseCommandLine(app, argc, argv, "dgc-ingest"); rc >= 0) return rc;
  log_level = common.log_level;
  dgc::InitLogging("dgc-ingest", log_level);
  std::vector<std::string> shard_parts = absl::StrSplit(shard, '/');
  if (shard_parts.size() != 2 || !absl::SimpleAtoi(shard_parts[0], &net.shard) ||
      !absl::SimpleAtoi(shard_parts[1], &net.shard_count) || net.shard_count == 0 || net.shard >= net.shard_count) {
    spdlog::error("--shard '{}': use i/n with 0 <= i < n", shard);
    return 1;
  }
  if (!net.interface.empty() && !opt.inputs.empty()) {
    spdlog::error("--interface and input files exclude each other");
    return 1;
  }
  if (net.interface.empty() && opt.inputs.empty()) {
    spdlog::error("no input: give capture files, a directory (with --follow), - for stdin, or --interface");
    return 1;
  }
  bool network_mode = !net.coordinator.empty() || !net.interface.empty() || net.follow || !net.filter.empty() ||
                      net.shard_count > 1;
  if (network_mode) {
    net.inputs = opt.inputs;
    net.spool_dir = opt.spool_dir;
    net.chunker = opt.chunker;
    net.chunker.chunk_ns = static_cast<int64_t>(chunk_seconds * 1e9);
    net.chunker.reorder_ns = static_cast<int64_t>(reorder_seconds * 1e9);
    if (!net.interface.empty() && app.get_option("--link")->count() == 0) {
      net.chunker.link = dgc::runtime::HostName() + "-" + net.interface;
    }
    net.zstd_level = opt.zstd_level;
    return RunNetworkMode(net, common);
  }

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

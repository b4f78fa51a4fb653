// dgcctl synth-trace: writes the built-in synthetic trace (see
// common/trace/synthetic_trace.h), for demos without real captures.
#include <iostream>

#include "common/trace/pcap_writer.h"
#include "common/trace/synthetic_trace.h"
#include "coordinator/dgcctl/commands.h"

namespace dgc::ctl {

void RegisterSynthTraceCommand(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand(
      "synth-trace", "write dgc's built-in synthetic trace (a made-up LAN: web, DNS, NTP, ping)");
  cmd->footer(R"(The trace is generated, not captured: use it for demos and smoke tests on
machines without real captures. Same --seed, same file.

Example:
  dgcctl synth-trace -o demo.pcap --seconds 600)");
  struct Opts {
    std::string out;
    SyntheticTraceOptions gen;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-o,--output", o->out, "output pcap (- for stdout)")->required();
  cmd->add_option("--seconds", o->gen.seconds, "trace length")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--sessions-per-second", o->gen.sessions_per_second, "mean session arrival rate")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hosts", o->gen.hosts, "LAN hosts")->capture_default_str()->check(CLI::Range(1, 240));
  cmd->add_option("--seed", o->gen.seed, "random seed")->capture_default_str();
  cmd->callback([o, exit_code] {
    auto packets = MakeSyntheticTrace(o->gen);
    auto w = PcapWriter::Open(o->out);
    Status st = w.status();
    for (size_t i = 0; st.ok() && i < packets.size(); ++i) st = (*w)->Write(packets[i]);
    if (st.ok()) st = (*w)->Close();
    if (!st.ok()) {
      std::cerr << "dgcctl synth-trace: " << st.message() << "\n";
      *exit_code = 1;
      return;
    }
    if (o->out != "-") std::cerr << "wrote " << packets.size() << " packets to " << o->out << "\n";
  });
}

}  // namespace dgc::ctl

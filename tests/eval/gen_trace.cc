// eval_gen_trace OUT.pcap PACKETS [SEED] [SPAN_S] [TAIL]: writes a synthetic capture
// of about PACKETS packets (raw IP, header-only, time-ordered) with many flows,
// heavy-tailed flow sizes and skewed addresses, for timing `dgcctl eval` on
// big traces. TAIL (default 1.3) shapes flow sizes: 1 + u^-TAIL packets, so
// 0.5 gives many short flows (about 3 packets each). Not a test.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/trace/packet.h"
#include "common/trace/pcap_writer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: eval_gen_trace OUT.pcap PACKETS [SEED] [SPAN_S] [TAIL]\n");
    return 1;
  }
  const size_t target = std::strtoull(argv[2], nullptr, 10);
  std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
  const double span_s = argc > 4 ? std::atof(argv[4]) : 600;
  const double tail = argc > 5 ? std::atof(argv[5]) : 1.3;
  std::uniform_real_distribution<double> u(0, 1);
  auto zipf_like = [&](uint32_t n) {  // skewed index in [0, n)
    return static_cast<uint32_t>(std::pow(u(rng), 3.0) * n);
  };
  std::vector<dgc::PacketRecord> packets;
  packets.reserve(target + 1000);
  while (packets.size() < target) {
    dgc::PacketRecord p;
    p.version = 4;
    p.src = dgc::IpAddress::FromV4(0x0a000000u + zipf_like(200000));
    p.dst = dgc::IpAddress::FromV4(0xc0a80000u + zipf_like(20000));
    double r = u(rng);
    p.proto = r < 0.8 ? dgc::kProtoTcp : r < 0.97 ? dgc::kProtoUdp : dgc::kProtoIcmp;
    if (dgc::ProtoHasPorts(p.proto)) {
      p.sport = static_cast<uint16_t>(1024 + rng() % 64000);
      static const uint16_t kPorts[] = {443, 80, 53, 22, 8080, 123, 25, 993};
      p.dport = kPorts[zipf_like(8)];
    }
    p.ttl = static_cast<uint8_t>(32 + rng() % 96);
    int n = 1 + static_cast<int>(std::min(5000.0, std::pow(u(rng), -tail)));  // heavy tail
    double t = u(rng) * span_s;
    double gap = std::pow(10, -4 + 4 * u(rng));
    for (int i = 0; i < n && packets.size() < target; ++i) {
      p.ts_ns = static_cast<int64_t>((1.7e9 + t) * 1e9);
      p.ip_len = static_cast<uint32_t>(i % 3 == 0 ? 40 + rng() % 60 : 500 + rng() % 1000);
      p.tcp_flags = p.proto == dgc::kProtoTcp ? (i == 0 ? 0x02 : 0x10) : 0;
      packets.push_back(p);
      t += gap * (0.5 + u(rng));
    }
  }
  std::sort(
      packets.begin(), packets.end(),
      [](const dgc::PacketRecord& a, const dgc::PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  auto w = dgc::PcapWriter::Open(argv[1]);
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
    return 1;
  }
  for (const auto& p : packets) {
    if (!(*w)->Write(p).ok()) return 1;
  }
  if (!(*w)->Close().ok()) return 1;
  std::printf("%zu packets\n", packets.size());
  return 0;
}

#include "common/trace/synthetic_trace.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace dgc {
namespace {

constexpr int64_t kMs = 1000000;

struct Gen {
  std::mt19937_64 rng;
  std::vector<PacketRecord>* out;

  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng); }
  double Exp(double mean) { return std::exponential_distribution<double>(1.0 / mean)(rng); }
  // Pareto-ish heavy tail, at least `lo`.
  double Pareto(double lo, double alpha) { return lo / std::pow(1 - Uniform(), 1.0 / alpha); }

  void Emit(int64_t ts, uint32_t src, uint32_t dst, uint8_t proto, uint16_t sp, uint16_t dp,
            uint32_t len, uint8_t ttl, uint8_t flags = 0) {
    PacketRecord p;
    p.ts_ns = ts;
    p.version = 4;
    p.src = IpAddress::FromV4(src);
    p.dst = IpAddress::FromV4(dst);
    p.proto = proto;
    p.sport = sp;
    p.dport = dp;
    p.ip_len = len;
    p.ttl = ttl;
    p.tcp_flags = proto == kProtoTcp ? flags : 0;
    p.ip_id = static_cast<uint16_t>(rng());
    p.frag = kFragDontFragment;
    out->push_back(p);
  }

  void TcpSession(int64_t t, uint32_t client, uint32_t server, uint16_t dport) {
    uint16_t sport = static_cast<uint16_t>(32768 + rng() % 28000);
    double rtt = 2e6 + Exp(20e6);  // ns
    int64_t now = t;
    auto c2s = [&](uint32_t len, uint8_t fl) { Emit(now, client, server, kProtoTcp, sport, dport, len, 64, fl); };
    auto s2c = [&](uint32_t len, uint8_t fl) { Emit(now, server, client, kProtoTcp, dport, sport, len, 52, fl); };
    c2s(60, 0x02);
    now += int64_t(rtt / 2);
    s2c(60, 0x12);
    now += int64_t(rtt / 2);
    c2s(52, 0x10);
    int requests = 1 + int(Pareto(1, 1.5)) % 20;
    for (int r = 0; r < requests; ++r) {
      now += int64_t(Exp(50e6));
      c2s(52 + uint32_t(200 + rng() % 600), 0x18);
      now += int64_t(rtt / 2);
      int segments = std::min(2000, int(Pareto(1, 1.2)));
      for (int s = 0; s < segments; ++s) {
        now += int64_t(Exp(rtt / 8));
        bool last = s + 1 == segments;
        s2c(last ? 52 + uint32_t(rng() % 1448) : 1500, last ? 0x18 : 0x10);
        if (s % 2 == 1) c2s(52, 0x10);
      }
    }
    now += int64_t(Exp(200e6));
    c2s(52, 0x11);
    now += int64_t(rtt / 2);
    s2c(52, 0x11);
    now += int64_t(rtt / 2);
    c2s(52, 0x10);
  }
};

}  // namespace

std::vector<PacketRecord> MakeSyntheticTrace(const SyntheticTraceOptions& o) {
  std::vector<PacketRecord> out;
  Gen g{std::mt19937_64(o.seed), &out};
  const uint32_t kLan = 0xc0a80100;  // 192.168.1.0/24
  const uint32_t kServers[] = {0x5db8d822, 0x8efa4a2e, 0x68107b40, 0x17d7a0e5, 0x0d6b2acf};
  const uint32_t kDns = 0x01010101, kNtp = 0xd8ef2300;
  int64_t end = o.start_ns + int64_t(o.seconds * 1e9);
  double t = double(o.start_ns);
  while (t < double(end)) {
    // Bursty arrivals: the rate swings slowly over the trace.
    double phase = (t - double(o.start_ns)) / 1e9 / 120.0;
    double rate = o.sessions_per_second * (1.0 + 0.6 * std::sin(phase));
    t += g.Exp(1e9 / std::max(0.1, rate));
    int64_t ts = int64_t(t);
    uint32_t host = kLan + 10 + uint32_t(g.Pareto(1, 1.1)) % uint32_t(o.hosts);
    double kind = g.Uniform();
    if (kind < 0.55) {
      uint32_t server = kServers[g.rng() % 5];
      g.TcpSession(ts, host, server, g.Uniform() < 0.8 ? 443 : 80);
    } else if (kind < 0.90) {
      uint16_t sport = uint16_t(1024 + g.rng() % 60000);
      g.Emit(ts, host, kDns, kProtoUdp, sport, 53, 60 + uint32_t(g.rng() % 30), 64);
      g.Emit(ts + int64_t(5 * kMs + g.Exp(15 * kMs)), kDns, host, kProtoUdp, 53, sport,
             90 + uint32_t(g.rng() % 200), 57);
    } else if (kind < 0.95) {
      g.Emit(ts, host, kNtp, kProtoUdp, 123, 123, 76, 64);
      g.Emit(ts + int64_t(30 * kMs), kNtp, host, kProtoUdp, 123, 123, 76, 55);
    } else {
      for (int i = 0; i < 4; ++i) {
        g.Emit(ts + i * 1000 * kMs, host, kServers[0], kProtoIcmp, 0, 0, 84, 64);
        g.Emit(ts + i * 1000 * kMs + 18 * kMs, kServers[0], host, kProtoIcmp, 0, 0, 84, 52);
      }
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [end](const PacketRecord& p) { return p.ts_ns >= end; }),
            out.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
  return out;
}

}  // namespace dgc

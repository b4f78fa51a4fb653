// A small plausible trace that dgc makes itself, for the demo and for tests
// on machines without ../shared/data. Not real traffic: a LAN of hosts doing
// TCP sessions (handshake, data, teardown) to a few servers, DNS lookups, NTP
// and ICMP pings, with heavy-tailed session sizes and bursty arrivals.
#ifndef DGC_COMMON_TRACE_SYNTHETIC_TRACE_H_
#define DGC_COMMON_TRACE_SYNTHETIC_TRACE_H_

#include <cstdint>
#include <vector>

#include "common/trace/packet.h"

namespace dgc {

struct SyntheticTraceOptions {
  int64_t start_ns = 1767225600LL * 1000000000;  // 2026-01-01T00:00:00Z
  double seconds = 600;
  double sessions_per_second = 4;
  int hosts = 40;
  uint64_t seed = 1;
};

// Time-sorted packets. Same options, same trace.
std::vector<PacketRecord> MakeSyntheticTrace(const SyntheticTraceOptions& options);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_SYNTHETIC_TRACE_H_

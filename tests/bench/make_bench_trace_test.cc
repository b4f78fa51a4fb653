// Smoke test of dgc-make-bench-trace on a small target: the trace it writes
// holds at least the target, in time order, inside one window, and a second
// run with the same seed writes the same bytes. Skipped without ../shared/data.
#include <cstdlib>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "common/base/files.h"
#include "common/trace/pcap_reader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using ::dgc::testing::DataDir;
using ::dgc::testing::TempDir;

std::string MakeCommand(const std::string& out, const std::string& manifest, int seed) {
  return std::string(DGC_MAKE_BENCH_TRACE) + " --quiet --data '" + DataDir() +
         "' --target-packets 5000 --seed " + std::to_string(seed) + " --out '" + out +
         "' --manifest '" + manifest + "'";
}

TEST(MakeBenchTraceTest, SmallTraceHoldsTargetInTimeOrderWithinOneHour) {
  DGC_REQUIRE_DATA();
  TempDir dir;
  std::string out = dir.File("bench.pcap"), manifest = dir.File("bench.json");
  std::string stdout_text;
  ASSERT_EQ(::dgc::testing::Run(MakeCommand(out, manifest, 7), &stdout_text), 0) << stdout_text;

  auto m = ReadFile(manifest);
  ASSERT_TRUE(m.ok()) << m.status();
  auto j = nlohmann::json::parse(*m);
  uint64_t reported = j["packets"].get<uint64_t>();
  EXPECT_GE(reported, 5000u);
  EXPECT_GT(j["window_copies"].get<uint64_t>(), 1u);

  auto reader = TraceReader::Open(out);
  ASSERT_TRUE(reader.ok()) << reader.status();
  PacketRecord p;
  uint64_t n = 0, out_of_order = 0;
  int64_t first = 0, prev = 0;
  absl::flat_hash_set<IpAddress> hosts;
  while ((*reader)->Next(&p)) {
    if (n == 0) first = p.ts_ns;
    if (p.ts_ns < prev) ++out_of_order;
    prev = p.ts_ns;
    hosts.insert(p.src);
    ++n;
  }
  EXPECT_EQ(n, reported);
  EXPECT_EQ((*reader)->stats().frames, n);  // every frame written is an IP packet
  EXPECT_EQ((*reader)->stats().errors(), 0u);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_LT(prev - first, 3600LL * 1000000000);
  EXPECT_GT(hosts.size(), 10u);

  // Deterministic for a seed.
  std::string again = dir.File("again.pcap");
  ASSERT_EQ(::dgc::testing::Run(MakeCommand(again, dir.File("again.json"), 7)), 0);
  auto a = ReadFile(out), b = ReadFile(again);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(*a == *b) << "same seed, different trace";
}

}  // namespace
}  // namespace dgc

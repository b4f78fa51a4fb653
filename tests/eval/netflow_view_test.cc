// The NetFlow view (common/eval/netflow_view.h): the nfdump csv parser, the
// comparison on records made by hand, and the whole path through nfpcapd on a
// capture written here (nfdump and editcap are required: deploy/install-deps.sh
// installs them).
#include "common/eval/netflow_view.h"

#include <filesystem>

#include "common/base/files.h"
#include "common/base/subprocess.h"
#include "common/trace/synthetic_trace.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::eval {
namespace {

using ::dgc::testing::TempDir;
using ::dgc::testing::WritePcap;

const char kCsv[] =
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt\n"
    "2019-09-28 17:48:19,2019-09-28 17:48:19,0.000,10.42.0.119,8.8.8.8,47247,53,UDP,........,0,0,1,70\n"
    "2019-09-28 17:53:20,2019-09-28 17:55:20,120.000,10.42.0.119,10.42.0.1,36230,443,TCP,...AP.SF,0,0,12,1.2e+03\n"
    "Summary: total flows: 2\n";

TEST(ParseNfdumpCsv, ReadsRecordsAndSkipsHeaderAndSummary) {
  auto r = ParseNfdumpCsv(kCsv);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].first_s, 1569692899);
  EXPECT_EQ((*r)[0].dst, "8.8.8.8");
  EXPECT_EQ((*r)[0].dst_port, 53u);
  EXPECT_EQ((*r)[0].packets, 1u);
  EXPECT_EQ((*r)[0].bytes, 70u);
  EXPECT_EQ((*r)[1].last_s - (*r)[1].first_s, 120);
  EXPECT_EQ((*r)[1].bytes, 1200u);
}

TEST(ParseNfdumpCsv, ABrokenRecordIsAnErrorNamingTheLine) {
  auto r = ParseNfdumpCsv("2019-09-28 17:48:19,2019-09-28 17:48:19,0,a,b,1,53,UDP,.,0,0,x,70\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 1"), std::string::npos) << r.status();
}

std::vector<NetflowRecord> Records(int windows, int per_window, int hosts, int64_t t0 = 1000000) {
  std::vector<NetflowRecord> out;
  for (int w = 0; w < windows; ++w) {
    for (int i = 0; i < per_window; ++i) {
      NetflowRecord r;
      r.first_s = r.last_s = t0 + int64_t(w) * 300 + i;
      r.src = "10.0.0." + std::to_string(i % hosts);
      r.dst = "192.0.2." + std::to_string(i % 3);
      r.dst_port = 443;
      r.packets = 10;
      r.bytes = 1000;
      out.push_back(r);
    }
  }
  return out;
}

TEST(CompareNetflow, SameRecordsReadZeroAndMoreHostsReadTheirError) {
  auto real = Records(20, 8, 2);
  auto same = CompareNetflow(real, real);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->figure, 0);
  EXPECT_EQ(same->window_s, 300);
  EXPECT_EQ(same->windows, 20u);
  EXPECT_EQ(same->top10_dport_share, 1);
  // The same flows from 8 sources instead of 2 per window: src off by 3, the rest exact.
  auto spread = CompareNetflow(real, Records(20, 8, 8));
  ASSERT_TRUE(spread.ok());
  EXPECT_DOUBLE_EQ(spread->medians.at("src"), 3.0);
  EXPECT_DOUBLE_EQ(spread->medians.at("flows"), 0.0);
  EXPECT_DOUBLE_EQ(spread->figure, 0.5);
  // Windows only one side has count fully.
  auto half = CompareNetflow(real, Records(10, 8, 2));
  ASSERT_TRUE(half.ok());
  EXPECT_DOUBLE_EQ(half->medians.at("packets"), 0.5);
  EXPECT_FALSE(CompareNetflow({}, real).ok());
}

TEST(NetflowViewOf, ThroughNfpcapdATraceReadsZeroAgainstItselfAndSamplingDoesNot) {
  for (const char* tool : {"nfpcapd", "nfdump", "editcap"}) {
    ASSERT_TRUE(ToolInstalled(tool)) << tool << " is not installed (Debian packages nfdump, wireshark-common)";
  }
  TempDir dir;
  SyntheticTraceOptions o;
  o.seconds = 900;
  o.seed = 4;
  auto packets = MakeSyntheticTrace(o);
  const std::string real = dir.path() + "/t.pcap", sampled = dir.path() + "/s.pcap";
  WritePcap(real, packets);
  std::vector<PacketRecord> every20;
  for (size_t i = 0; i < packets.size(); i += 20) every20.push_back(packets[i]);
  WritePcap(sampled, every20);
  auto same = NetflowViewOf(real, real);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->figure, 0);
  EXPECT_GE(same->windows, 10u);
  EXPECT_GT(same->real_records, 100u);
  auto s20 = NetflowViewOf(real, sampled);
  ASSERT_TRUE(s20.ok()) << s20.status();
  EXPECT_GT(s20->figure, 0.2);
  auto missing = NetflowViewOf(real, dir.path() + "/absent.pcap");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("absent.pcap"), std::string::npos);
}

TEST(RunTool, ReportsAMissingToolAndAFailingOne) {
  Status st = RunTool({{"dgc-no-such-tool-here"}, "", {}});
  EXPECT_TRUE(absl::IsNotFound(st)) << st;
  st = RunTool({{"sh", "-c", "echo why it failed >&2; exit 3"}, "", {}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("exit status 3"), std::string::npos) << st;
  EXPECT_NE(st.message().find("why it failed"), std::string::npos) << st;
  TempDir dir;
  ASSERT_TRUE(RunTool({{"sh", "-c", "echo $TZ"}, dir.path() + "/out", {"TZ=UTC"}}).ok());
  EXPECT_EQ(*ReadFile(dir.path() + "/out"), "UTC\n");
}

}  // namespace
}  // namespace dgc::eval

// The three forms of the eval report: the JSON field names EVAL_JSON.md
// documents, the table's width, and the HTML report checked by a parser.
#include <string>
#include <vector>

#include "common/base/files.h"
#include "common/eval/metrics.h"
#include "common/eval/report_html.h"
#include "common/eval/report_text.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc::eval {
namespace {

using ::dgc::testing::MakePacket;
constexpr int64_t kMs = 1000000;

// Web-like traffic over 30 s: TCP flows of a few sizes from a few clients.
std::vector<PacketRecord> Traffic(int flows, int size_step) {
  std::vector<PacketRecord> v;
  for (int f = 0; f < flows; ++f) {
    uint32_t client = 0x0a000000u + static_cast<uint32_t>(f % 7);
    uint32_t server = 0xc0a80000u + static_cast<uint32_t>(f % 3);
    int64_t t = (f * 997 % 30000) * kMs;
    for (int i = 0; i < 2 + f % 9; ++i) {
      v.push_back(MakePacket(t, client, server, kProtoTcp, static_cast<uint16_t>(30000 + f), 443,
                             static_cast<uint32_t>(60 + (i * size_step) % 1400), i ? 0x10 : 0x02));
      t += (1 + f % 5) * 40 * kMs;
    }
  }
  return v;
}

std::string CheckHtml(const std::string& path, int* status) {
  std::string out;
  *status = ::dgc::testing::Run(
      "python3 " DGC_SOURCE_DIR "/tests/eval/check_report.py " + path + " 2>&1", &out);
  return out;
}

TEST(JsonReportTest, HasTheDocumentedFieldsWithMetricsInOrder) {
  EvalOptions opt;
  opt.floor = true;
  EvalReport r = Evaluate(MakeTrace(Traffic(200, 100), "real.pcap"),
                          MakeTrace(Traffic(150, 130), "synth.pcap"), opt);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(FormatJson(r));
  EXPECT_EQ(j["schema"], "dgc.eval/1");
  EXPECT_DOUBLE_EQ(j["window_s"].get<double>(), r.window.seconds());
  for (const char* side : {"real", "synth"}) {
    for (const char* k : {"path", "link", "frames", "ip_packets", "non_ip", "malformed",
                          "unsupported_link", "corrupt_records", "bytes", "flows", "distinct_src",
                          "distinct_dst", "first_ts", "first_ts_ns", "span_s", "warnings"}) {
      EXPECT_TRUE(j[side].contains(k)) << side << "." << k;
    }
  }
  EXPECT_EQ(j["real"]["path"], "real.pcap");
  EXPECT_EQ(j["synth"]["ip_packets"], r.synth.ip_packets);
  const auto& s = j["scores"];
  EXPECT_EQ(s["scored"], 17);
  EXPECT_DOUBLE_EQ(s["mean"].get<double>(), *r.scores.mean);
  EXPECT_EQ(s["worst_metric"], Info(r.scores.worst_metric).name);
  ASSERT_EQ(s["metrics"].size(), 17u);
  int i = 0;
  for (const auto& [name, value] : s["metrics"].items()) {
    EXPECT_EQ(name, Info(i).name);
    EXPECT_DOUBLE_EQ(value.get<double>(), *r.scores.metrics[i].jsd);
    EXPECT_EQ(s["values"][name]["real"], r.scores.metrics[i].real_values);
    ++i;
  }
  for (const char* w : {"w", "w10"}) {
    for (const char* k : {"packets", "bytes", "src", "dst", "pairs", "tuples"}) {
      EXPECT_TRUE(s["use_case"][w][k].contains("median")) << w << "." << k;
      EXPECT_TRUE(s["use_case"][w][k].contains("p95")) << w << "." << k;
    }
    EXPECT_TRUE(s["use_case"][w].contains("windows"));
    EXPECT_TRUE(s["use_case"][w].contains("active_windows"));
  }
  for (const char* k : {"packets", "bytes", "flows"}) EXPECT_TRUE(s["totals"].contains(k));
  for (const char* k : {"rate", "synth_flows", "replayed_flows", "address_overlap"}) {
    EXPECT_TRUE(j["replay"].contains(k)) << k;
  }
  ASSERT_TRUE(j["floor"].is_object());
  EXPECT_EQ(j["floor"]["metrics"].size(), 17u);
  EXPECT_EQ(j["floor"]["half_packets"].size(), 2u);
}

TEST(JsonReportTest, WritesNullForNotApplicableMetricsAndAbsentParts) {
  std::vector<PacketRecord> udp = {MakePacket(0, 1, 2, kProtoUdp, 1, 2, 60),
                                   MakePacket(kMs, 1, 2, kProtoUdp, 1, 2, 60)};
  EvalReport r = Evaluate(MakeTrace(udp), MakeTrace(udp));
  auto j = nlohmann::json::parse(FormatJson(r));
  EXPECT_TRUE(j["scores"]["metrics"]["tcp_flags"].is_null());
  EXPECT_EQ(j["scores"]["scored"], 16);
  EXPECT_TRUE(j["floor"].is_null());
  EvalReport f = EvaluateFloor(MakeTrace(udp));
  j = nlohmann::json::parse(FormatJson(f));
  EXPECT_TRUE(j["synth"].is_null());
  EXPECT_TRUE(j["scores"].is_null());
  EXPECT_TRUE(j["floor"].is_object());
}

TEST(TableReportTest, FitsOneHundredColumnsAndNamesEveryMetric) {
  EvalOptions opt;
  opt.floor = true;
  std::string long_name(300, 'x');
  EvalReport r = Evaluate(MakeTrace(Traffic(200, 100), "/data/" + long_name + ".pcap"),
                          MakeTrace(Traffic(150, 130), "synth.pcap"), opt);
  std::string table = FormatTable(r);
  size_t start = 0;
  int lines = 0;
  while (start < table.size()) {
    size_t end = table.find('\n', start);
    ASSERT_NE(end, std::string::npos) << "the table ends in a newline";
    EXPECT_LE(end - start, 100u) << table.substr(start, end - start);
    start = end + 1;
    ++lines;
  }
  EXPECT_GT(lines, 30);
  for (int i = 0; i < kNumMetrics; ++i) EXPECT_NE(table.find(Info(i).name), std::string::npos);
  for (const char* s : {"mean", "worst", "floor", "replay rate", "use case", "totals"}) {
    EXPECT_NE(table.find(s), std::string::npos) << s;
  }
}

class HtmlReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(::dgc::testing::RequireTool("python3"));
  }
  ::dgc::testing::TempDir dir_;
};

TEST_F(HtmlReportTest, HasOneParsableSvgPerMetricAndTheSeries) {
  EvalOptions opt;
  opt.floor = true;
  opt.plot_data = true;
  EvalReport r = Evaluate(MakeTrace(Traffic(300, 100), "real <&> \"quoted\".pcap"),
                          MakeTrace(Traffic(250, 170), "synth.pcap"), opt);
  std::string path = dir_.File("report.html");
  ASSERT_TRUE(WriteHtmlReport(r, path).ok());
  int status;
  std::string out = CheckHtml(path, &status);
  EXPECT_EQ(status, 0) << out;
  auto html = ReadFile(path);
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->find("real &lt;&amp;&gt; &quot;quoted&quot;.pcap"), std::string::npos);
  EXPECT_EQ(html->find("<script"), std::string::npos);
}

TEST_F(HtmlReportTest, DrawsNotApplicableMetricsAndFloorOnlyReports) {
  std::vector<PacketRecord> udp;
  for (int i = 0; i < 50; ++i) {
    udp.push_back(MakePacket(i * 100 * kMs, 1 + i % 4, 9, kProtoUdp,
                             static_cast<uint16_t>(1000 + i % 6), 53, 80 + i));
  }
  EvalOptions opt;
  opt.plot_data = true;
  EvalReport r = Evaluate(MakeTrace(udp), MakeTrace({}), opt);  // empty synthetic side
  std::string path = dir_.File("na.html");
  ASSERT_TRUE(WriteHtmlReport(r, path).ok());
  int status;
  std::string out = CheckHtml(path, &status);
  EXPECT_EQ(status, 0) << out;

  EvalReport f = EvaluateFloor(MakeTrace(udp), opt);
  path = dir_.File("floor.html");
  ASSERT_TRUE(WriteHtmlReport(f, path).ok());
  out = CheckHtml(path, &status);
  EXPECT_EQ(status, 0) << out;
}

TEST_F(HtmlReportTest, CheckerRejectsABrokenReport) {
  std::string path = dir_.File("broken.html");
  ASSERT_TRUE(WriteFileAtomic(path,
                              "<html><body><svg id=\"metric-pkt_size\"><g></svg>"
                              "<script src=\"http://x/y.js\"></script></body></html>")
                  .ok());
  int status;
  CheckHtml(path, &status);
  EXPECT_EQ(status, 1);
}

}  // namespace
}  // namespace dgc::eval

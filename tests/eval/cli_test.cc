// dgcctl eval as a user runs it: real processes, real files, exit codes and
// what lands on stdout and stderr.
#include <string>
#include <vector>

#include "common/base/files.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

// testutil's BinaryPath("dgcctl") finds the build folder coordinator/dgcctl
// (a directory, which passes its X_OK check) before the binary inside it.
std::string Dgcctl() { return DGC_BINARY_DIR "/coordinator/dgcctl/dgcctl"; }

using ::dgc::testing::MakePacket;
using ::dgc::testing::TempDir;
constexpr int64_t kMs = 1000000;

class EvalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<PacketRecord> a, b;
    for (int i = 0; i < 300; ++i) {
      a.push_back(MakePacket(i * 37 * kMs, 0x0a000001u + i % 5, 0x0a000100u + i % 3, kProtoTcp,
                             static_cast<uint16_t>(40000 + i % 11), 443,
                             static_cast<uint32_t>(40 + i * 13 % 1400), 0x10));
      b.push_back(MakePacket(i * 41 * kMs, 0x0a000001u + i % 4, 0x0a000100u + i % 3,
                             i % 10 ? kProtoTcp : kProtoUdp, static_cast<uint16_t>(40000 + i % 9),
                             443, static_cast<uint32_t>(40 + i * 17 % 1400), 0x18));
    }
    real_ = dir_.File("real.pcap");
    synth_ = dir_.File("synth.pcap");
    ::dgc::testing::WritePcap(real_, a, OutputLink::kEthernet);
    ::dgc::testing::WritePcap(synth_, b);  // raw IP: link types may differ
  }

  // Runs dgcctl with `args`; stdout in *out, stderr in *err.
  int Eval(const std::string& args, std::string* out, std::string* err) {
    std::string err_path = dir_.File("stderr.txt");
    int rc = ::dgc::testing::Run(Dgcctl() + " " + args + " 2>" + err_path, out);
    auto e = ReadFile(err_path);
    *err = e.ok() ? *e : "";
    return rc;
  }

  TempDir dir_;
  std::string real_, synth_;
};

TEST_F(EvalCliTest, PrintsAnAlignedTableByDefault) {
  std::string out, err;
  ASSERT_EQ(Eval("eval " + real_ + " " + synth_, &out, &err), 0) << err;
  EXPECT_EQ(err, "");
  EXPECT_NE(out.find("pkt_size"), std::string::npos);
  EXPECT_NE(out.find("src_fanout"), std::string::npos);
  EXPECT_NE(out.find("mean (17 of 17 scored)"), std::string::npos);
  EXPECT_NE(out.find("(ethernet)"), std::string::npos);
  EXPECT_NE(out.find("(raw-ip)"), std::string::npos);
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    EXPECT_LE(end - start, 100u) << out.substr(start, end - start);
    start = end + 1;
  }
}

TEST_F(EvalCliTest, VersionPrintsTheVersionAndExitsZero) {
  std::string out, err;
  ASSERT_EQ(Eval("--version", &out, &err), 0) << err;
  EXPECT_EQ(out.rfind("dgcctl ", 0), 0u) << out;
  EXPECT_GT(out.size(), std::string("dgcctl \n").size()) << out;
}

TEST_F(EvalCliTest, PrintsOnlyJsonWithDashOJson) {
  std::string out, err;
  ASSERT_EQ(Eval("eval -o json --floor " + real_ + " " + synth_, &out, &err), 0) << err;
  EXPECT_EQ(err, "");
  nlohmann::json j = nlohmann::json::parse(out);  // throws (fails the test) on anything else
  EXPECT_EQ(j["real"]["ip_packets"], 300);
  EXPECT_EQ(j["synth"]["link"], "raw-ip");
  EXPECT_EQ(j["scores"]["metrics"].size(), 17u);
  EXPECT_TRUE(j["floor"]["mean"].is_number());
}

TEST_F(EvalCliTest, ScoresTheFloorAloneWithoutSynth) {
  std::string out, err;
  ASSERT_EQ(Eval("eval --floor -o json " + real_, &out, &err), 0) << err;
  auto j = nlohmann::json::parse(out);
  EXPECT_TRUE(j["scores"].is_null());
  EXPECT_EQ(j["floor"]["metrics"].size(), 17u);
  ASSERT_EQ(Eval("eval --floor " + real_, &out, &err), 0) << err;
  EXPECT_NE(out.find("floor"), std::string::npos);
}

TEST_F(EvalCliTest, WritesAValidHtmlReport) {
  ASSERT_TRUE(::dgc::testing::RequireTool("python3"));
  std::string out, err, html = dir_.File("r.html");
  ASSERT_EQ(Eval("eval --floor --report " + html + " " + real_ + " " + synth_, &out, &err), 0)
      << err;
  std::string check;
  EXPECT_EQ(::dgc::testing::Run(
                "python3 " DGC_SOURCE_DIR "/tests/eval/check_report.py " + html + " 2>&1", &check),
            0)
      << check;
}

TEST_F(EvalCliTest, MissingRealFileExitsOneWithAClearMessage) {
  std::string out, err;
  std::string missing = dir_.File("does-not-exist.pcap");
  EXPECT_EQ(Eval("eval " + missing + " " + synth_, &out, &err), 1);
  EXPECT_EQ(out, "");
  EXPECT_NE(err.find("cannot read real trace"), std::string::npos) << err;
  EXPECT_NE(err.find(missing), std::string::npos) << err;
}

TEST_F(EvalCliTest, MissingSyntheticFileExitsOne) {
  std::string out, err;
  std::string missing = dir_.File("nope.pcap");
  EXPECT_EQ(Eval("eval " + real_ + " " + missing, &out, &err), 1);
  EXPECT_EQ(out, "");
  EXPECT_NE(err.find("cannot read synthetic trace"), std::string::npos) << err;
  EXPECT_NE(err.find(missing), std::string::npos) << err;
}

TEST_F(EvalCliTest, UnreadableInputsExitOne) {
  std::string out, err;
  std::string text = dir_.File("notes.txt");
  ASSERT_TRUE(WriteFileAtomic(text, "not a capture at all, only words in a text file\n").ok());
  EXPECT_EQ(Eval("eval " + text + " " + synth_, &out, &err), 1);
  EXPECT_NE(err.find("notes.txt"), std::string::npos) << err;
  EXPECT_EQ(out, "");
  // A directory is not a capture either.
  EXPECT_EQ(Eval("eval " + real_ + " " + dir_.path(), &out, &err), 1);
  EXPECT_NE(err.find("cannot read synthetic trace"), std::string::npos) << err;
  EXPECT_EQ(out, "");
}

TEST_F(EvalCliTest, RealTraceWithoutIpPacketsExitsOne) {
  std::string out, err, empty = dir_.File("empty.pcap");
  ::dgc::testing::WritePcap(empty, {});
  EXPECT_EQ(Eval("eval " + empty + " " + synth_, &out, &err), 1);
  EXPECT_NE(err.find("no IPv4/IPv6 packets"), std::string::npos) << err;
  // An empty synthetic trace is a valid (bad) answer: it scores 1.
  ASSERT_EQ(Eval("eval -o json " + real_ + " " + empty, &out, &err), 0) << err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(out)["scores"]["mean"].get<double>(), 1.0);
}

TEST_F(EvalCliTest, UsageErrorsFailOnStderr) {
  std::string out, err;
  EXPECT_EQ(Eval("eval " + real_, &out, &err), 1);  // no SYNTH and no --floor
  EXPECT_NE(err.find("SYNTH is required"), std::string::npos) << err;
  EXPECT_NE(Eval("eval -o xml " + real_ + " " + synth_, &out, &err), 0);
  EXPECT_NE(err, "");
  EXPECT_EQ(out, "");
  std::string report_in_missing_dir = dir_.File("no/such/dir/r.html");
  EXPECT_EQ(Eval("eval --report " + report_in_missing_dir + " " + real_ + " " + synth_, &out, &err),
            1);
  EXPECT_NE(err.find("cannot write report"), std::string::npos) << err;
}

TEST_F(EvalCliTest, HelpShowsExamples) {
  std::string out, err;
  EXPECT_EQ(Eval("eval --help", &out, &err), 0);
  EXPECT_NE(out.find("Examples:"), std::string::npos);
  EXPECT_NE(out.find("--floor"), std::string::npos);
  EXPECT_NE(out.find("--report"), std::string::npos);
}

}  // namespace
}  // namespace dgc

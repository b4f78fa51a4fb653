// `dgcctl baseline` and `dgcctl storage`, run as the real binary.
#include <sys/stat.h>

#include <sstream>

#include "common/base/files.h"
#include "common/trace/trace_file.h"
#include "common/trace/pcap_reader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;

const std::string kDgcctl = DGCCTL_PATH;

std::vector<PacketRecord> Trace() {
  std::vector<PacketRecord> v;
  for (int i = 0; i < 400; ++i) {
    v.push_back(MakePacket(1600000000LL * 1000000000 + int64_t(i) * 2500000, 0x0a000001 + i % 6,
                           0x0a000100 + i % 3, i % 5 ? kProtoTcp : kProtoUdp, 2000 + i % 11, 443,
                           60 + (i * 53) % 1400, i % 7 ? 0x10 : 0x18));
  }
  return v;
}

// Runs a shell command; stdout and stderr apart.
int RunSplit(const std::string& cmd, std::string* out, std::string* err, const testing::TempDir& dir) {
  std::string errfile = dir.File("stderr.txt");
  int rc = testing::Run(cmd + " 2>" + errfile, out);
  auto e = ReadFile(errfile);
  *err = e.ok() ? *e : "";
  return rc;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

size_t CountPackets(const std::string& path) {
  auto t = LoadTrace(path);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return 0;
  EXPECT_EQ(t->stats.errors(), 0u) << path;
  return t->packets.size();
}

TEST(BaselineCliTest, EachMethodWritesAPcapAndReportsTheBlobSize) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("in.pcap"), Trace());
  for (const char* method : {"sampling", "flows", "marginals"}) {
    std::string out, err;
    std::string synth = dir.File(std::string(method) + ".pcap");
    std::string keep = dir.File(std::string(method) + ".kept");
    const std::string rate = std::string(method) == "sampling" ? " --rate 1:10 " : " ";
    int rc = RunSplit(kDgcctl + " baseline --method " + method + rate +
                          dir.File("in.pcap") + " -o " + synth + " --keep " + keep +
                          " --summary json",
                      &out, &err, dir);
    ASSERT_EQ(rc, 0) << method << ": " << err;
    EXPECT_EQ(err, "") << method;
    auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["method"], method);
    EXPECT_EQ(j["input_packets"], 400);
    EXPECT_EQ(j["kept_bytes"].get<uint64_t>(), FileSize(keep)) << method;
    EXPECT_DOUBLE_EQ(j["kept_bytes_per_million_packets"].get<double>(),
                     j["kept_bytes"].get<double>() * 1e6 / 400);
    EXPECT_EQ(j["regenerated_packets"].get<size_t>(), CountPackets(synth)) << method;
    EXPECT_EQ(j["regenerated_packets"], 400) << method;  // 400 = 40 kept x 10
    auto side = ReadFile(synth + ".synthetic.json");
    ASSERT_TRUE(side.ok()) << method;
    EXPECT_EQ(nlohmann::json::parse(*side)["synthetic"], true);
  }
}

TEST(BaselineCliTest, FlowRecordsSampledOneInNKeepFewerRecordsAndScaleTheirVolume) {
  testing::TempDir dir;
  std::vector<PacketRecord> trace;
  for (int i = 0; i < 3000; ++i) {  // 300 flows of 10 packets
    trace.push_back(MakePacket(1600000000LL * 1000000000 + int64_t(i) * 1000000, 0x0a000001 + i % 300, 0x0a000100,
                               kProtoUdp, uint16_t(2000 + i % 300), 53, 100));
  }
  testing::WritePcap(dir.File("in.pcap"), trace);
  auto run = [&](const std::string& rate) {
    std::string out, err;
    EXPECT_EQ(RunSplit(kDgcctl + " baseline --method flows" + rate + " " + dir.File("in.pcap") + " -o " +
                           dir.File("f.pcap") + " --summary json",
                       &out, &err, dir),
              0)
        << err;
    return nlohmann::json::parse(out);
  };
  nlohmann::json all = run(""), tenth = run(" --rate 1:10");
  EXPECT_EQ(all["kept_records"], 300);
  const int kept = tenth["kept_records"].get<int>();
  EXPECT_GT(kept, 10);  // about 30, chosen by hash
  EXPECT_LT(kept, 60);
  EXPECT_LT(tenth["kept_bytes"].get<uint64_t>(), all["kept_bytes"].get<uint64_t>());
  // Each kept record stands for ten: 100 packets a record.
  EXPECT_EQ(tenth["regenerated_packets"].get<int>(), kept * 100);
  EXPECT_EQ(tenth["options"]["flow_sampling_n"], 10);
}

TEST(BaselineCliTest, TextSummaryAndSameSeedSameFile) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("in.pcap"), Trace());
  std::string out, err;
  ASSERT_EQ(RunSplit(kDgcctl + " baseline -m marginals --seed 9 " + dir.File("in.pcap") + " -o " +
                         dir.File("a.pcap"),
                     &out, &err, dir),
            0)
      << err;
  EXPECT_NE(out.find("kept per 1M packets"), std::string::npos) << out;
  ASSERT_EQ(RunSplit(kDgcctl + " baseline -m marginals --seed 9 " + dir.File("in.pcap") + " -o " +
                         dir.File("b.pcap"),
                     &out, &err, dir),
            0);
  EXPECT_EQ(*ReadFile(dir.File("a.pcap")), *ReadFile(dir.File("b.pcap")));
}

TEST(BaselineCliTest, ErrorsExitOneWithAMessageOnStderrOnly) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("in.pcap"), Trace());
  ASSERT_TRUE(WriteFileAtomic(dir.File("text.txt"), "not a capture\n").ok());
  struct Case {
    std::string args;
    std::string says;
  };
  const std::string in = dir.File("in.pcap"), o = " -o " + dir.File("o.pcap");
  for (const Case& c : {
           Case{"baseline --method flows " + dir.File("missing.pcap") + o, "missing.pcap"},
           Case{"baseline --method flows " + dir.File("text.txt") + o, "text.txt"},
           Case{"baseline --method netflow " + in + o, "sampling, flows or marginals"},
           Case{"baseline --method sampling --rate 1:0 " + in + o, "1:N"},
           Case{"baseline --method flows " + in, "-o"},
           Case{"baseline " + in + o, "--method"},
           Case{"baseline --method flows " + in + " -o " + dir.File("no/such/dir/o.pcap"),
                "no/such/dir"},
           Case{"storage " + dir.File("missing.pcap"), "missing.pcap"},
           Case{"storage " + in + " -o yaml", "table or json"},
           Case{"storage " + in + " --cpu-hour-usd -3", "--cpu-hour-usd"},
           Case{"storage " + in + " --compute-seconds -3", "--compute-seconds"},
           Case{"storage " + in + " --model-bytes 1.5", "--model-bytes"},
       }) {
    std::string out, err;
    int rc = RunSplit(kDgcctl + " " + c.args, &out, &err, dir);
    EXPECT_EQ(rc, 1) << c.args << "\n" << err;
    EXPECT_EQ(out, "") << c.args;
    EXPECT_NE(err.find("error"), std::string::npos) << c.args << "\n" << err;
    EXPECT_NE(err.find(c.says), std::string::npos) << c.args << "\n" << err;
  }
}

TEST(StorageCliTest, JsonHasEveryRowAndTableFitsHundredColumns) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("in.pcap"), Trace());
  std::string out, err;
  ASSERT_EQ(RunSplit(kDgcctl + " storage " + dir.File("in.pcap") +
                         " --model-bytes 1234 --compute-seconds 60 --gpu --rate 1:20 -o json",
                     &out, &err, dir),
            0)
      << err;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["packets"], 400);
  EXPECT_EQ(j["raw_bytes"].get<uint64_t>(), FileSize(dir.File("in.pcap")));
  std::vector<std::string> ids;
  for (const auto& row : j["rows"]) ids.push_back(row["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{
                     "raw", "raw_gzip6", "raw_zstd19", "raw_xz9", "header", "header_gzip6",
                     "header_zstd19", "header_xz9", "csv", "csv_gzip6", "csv_zstd19",
                     "flows_zstd19", "sampling20", "sampling20_zstd19", "marginals_zstd19", "dgc"}));
  const auto& dgc = j["rows"].back();
  EXPECT_EQ(dgc["bytes"], 1234);
  EXPECT_EQ(dgc["gpu"], true);
  EXPECT_NEAR(dgc["compute_usd"].get<double>(), 60.0 / 3600 * 2.5, 1e-12);

  ASSERT_EQ(RunSplit(kDgcctl + " storage " + dir.File("in.pcap") + " --model-bytes 1234",
                     &out, &err, dir),
            0)
      << err;
  std::istringstream lines(out);
  std::string line;
  bool saw_header = false;
  while (std::getline(lines, line)) {
    EXPECT_LE(line.size(), 100u) << line;
    if (line.rfind("NAME", 0) == 0) saw_header = true;
  }
  EXPECT_TRUE(saw_header) << out;
  EXPECT_NE(out.find("DGC model"), std::string::npos);
}

// Real captures: each method's pcap reads back, and tshark finds nothing wrong.
TEST(BaselineCliTest, RealCaptureSmoke) {
  DGC_REQUIRE_DATA();
  const std::string trace = testing::DataDir() + "/pcapplusplus/example.pcap";
  testing::TempDir dir;
  for (const char* method : {"sampling", "flows", "marginals"}) {
    std::string out, err;
    std::string synth = dir.File(std::string(method) + ".pcap");
    ASSERT_EQ(RunSplit(kDgcctl + " baseline --method " + method + " " + trace + " -o " + synth +
                           " --summary json",
                       &out, &err, dir),
              0)
        << method << ": " << err;
    auto j = nlohmann::json::parse(out);
    EXPECT_GT(j["kept_bytes"].get<uint64_t>(), 0u);
    size_t n = CountPackets(synth);
    EXPECT_EQ(n, j["regenerated_packets"].get<size_t>());
    EXPECT_GT(n, 0u);
    ASSERT_TRUE(testing::RequireTool("tshark"));
    {
      std::string complaints;
      int rc = testing::Run(
          "tshark -r " + synth +
              " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
              " -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null",
          &complaints);
      EXPECT_EQ(rc, 0) << method;
      EXPECT_EQ(complaints, "") << method;
    }
  }
  std::string out, err;
  ASSERT_EQ(RunSplit(kDgcctl + " storage " + trace + " -o json", &out, &err, dir), 0) << err;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["packets"], CountPackets(trace));
}

}  // namespace
}  // namespace dgc::baseline

// A tiny end-to-end run of the embedded pipeline, as an operator would do it:
// dgcctl compress a small trace into a library, dgcctl generate it back.
#include <filesystem>

#include "common/base/files.h"
#include "common/trace/pcap_reader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;

const std::string kCtl = DGCCTL_PATH;
// A small, fast configuration: the point is the plumbing, not fidelity.
const std::string kTiny =
    " --chunk-seconds 60 --width 32 --depth 1 --heads 2 --warmup-steps 40 --warmup-seconds 20"
    " --steps 10 --seconds 5 --sample-flows 256 ";

class CompressCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trace_ = dir_.File("in.pcap");
    ASSERT_EQ(testing::Run(kCtl + " synth-trace -o " + trace_ +
                           " --seconds 120 --sessions-per-second 1.5 2>/dev/null"),
              0);
  }
  testing::TempDir dir_;
  std::string trace_;
};

uint64_t CountPackets(const std::string& path) {
  auto r = TraceReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return 0;
  PacketRecord p;
  uint64_t n = 0;
  int64_t last = 0;
  while ((*r)->Next(&p)) {
    EXPECT_GE(p.ts_ns, last);  // time-ordered
    last = p.ts_ns;
    ++n;
  }
  return n;
}

TEST_F(CompressCliTest, CompressesAndRegeneratesDeterministically) {
  std::string lib = dir_.File("lib");
  std::string out;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "-o json 2>/dev/null", &out), 0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_GE(j["chunks"].get<int>(), 2);
  EXPECT_GT(j["packets"].get<int>(), 0);
  EXPECT_GT(j["stored_bytes"].get<int>(), 0);
  EXPECT_GT(j["base_model_bytes"].get<int>(), 0);
  EXPECT_GT(j["fidelity_mean"].get<double>(), 0.0);
  EXPECT_LE(j["fidelity_mean"].get<double>(), 1.0);

  std::string a = dir_.File("a.pcap"), b = dir_.File("b.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + a + " 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + b + " 2>/dev/null"), 0);
  EXPECT_GT(CountPackets(a), 100u);
  EXPECT_EQ(*ReadFile(a), *ReadFile(b));  // same seed, same output
  EXPECT_TRUE(fs::exists(a + ".dgc.json"));  // marked synthetic

  // --filter keeps only matching packets.
  std::string f = dir_.File("f.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " --filter udp -o " + f + " 2>/dev/null"), 0);
  auto r = TraceReader::Open(f);
  ASSERT_TRUE(r.ok());
  PacketRecord p;
  while ((*r)->Next(&p)) EXPECT_EQ(p.proto, kProtoUdp);

  if (testing::HaveTool("tshark")) {
    std::string bad;
    testing::Run("tshark -n -r " + a +
                     " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
                     " -Y '_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 ||"
                     " udp.checksum.status == 0' 2>/dev/null",
                 &bad);
    EXPECT_EQ(bad, "") << "tshark flagged packets (first lines shown above)";
    if (!bad.empty()) std::cerr << bad.substr(0, 600) << "\n";
  }
}

TEST_F(CompressCliTest, CorruptArtifactIsAClearErrorNamingTheFile) {
  std::string lib = dir_.File("lib");
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check >/dev/null 2>&1"), 0);
  std::string victim;
  for (const auto& e : fs::recursive_directory_iterator(lib + "/chunks")) {
    if (e.path().extension() == ".dgca") victim = e.path().string();
  }
  ASSERT_FALSE(victim.empty());
  std::string bytes = *ReadFile(victim);
  bytes[bytes.size() / 2] ^= 0x20;
  ASSERT_TRUE(WriteFileAtomic(victim, bytes).ok());
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + dir_.File("x.pcap") + " 2>&1", &err), 1);
  EXPECT_NE(err.find(victim), std::string::npos) << err;
  EXPECT_NE(err.find("corrupt"), std::string::npos) << err;
}

TEST_F(CompressCliTest, MissingLibraryAndCorruptBaseAreClearErrors) {
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + dir_.File("nope") + " -o x.pcap 2>&1", &err), 1);
  EXPECT_NE(err.find("no model library"), std::string::npos) << err;
  testing::WriteBytes(dir_.File("base.dgcm"), "DGCM garbage that is not a model");
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("lib2") + " --base " +
                             dir_.File("base.dgcm") + " 2>&1",
                         &err),
            1);
  EXPECT_NE(err.find("base.dgcm"), std::string::npos) << err;
}

}  // namespace
}  // namespace dgc

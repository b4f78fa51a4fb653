// Every capture under ../shared/data: dgc's IPv4+IPv6 count equals tshark's,
// edge cases are read or refused with a clear message (never a crash: CI also
// runs this under ASan/UBSan), and capture -> chunks -> pcap -> records gives
// the records back. Skipped when ../shared/data is absent.
#include <algorithm>
#include <filesystem>
#include <tuple>

#include "common/trace/chunk.h"
#include "common/trace/chunk_format.h"
#include "common/trace/pcap_reader.h"
#include "common/trace/pcap_writer.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;

std::vector<std::string> Captures(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    if (ext == ".txt" || ext == ".csv" || ext == ".tsv" || ext == ".md") continue;
    out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Time order, ties broken by the other fields: files far out of order reach
// their window as amendments, so equal timestamps may come back reordered.
bool FullOrder(const PacketRecord& a, const PacketRecord& b) {
  return std::tie(a.ts_ns, a.src, a.dst, a.sport, a.dport, a.proto, a.ip_len, a.ttl, a.tcp_flags) <
         std::tie(b.ts_ns, b.src, b.dst, b.sport, b.dport, b.proto, b.ip_len, b.ttl, b.tcp_flags);
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Formats libpcap cannot read; dgc must refuse them with a message naming the
// file and the way out. (tshark reads ERF; libpcap does not.)
bool ExpectedRefusal(const std::string& path) {
  std::string out;
  testing::Run("capinfos -t " + Quote(path) + " 2>/dev/null", &out);
  return out.find("ERF") != std::string::npos || out.find("erf") != std::string::npos;
}

std::vector<PacketRecord> ReadAll(const std::string& path, ReadStats* stats) {
  auto r = TraceReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<PacketRecord> out;
  if (!r.ok()) return out;
  PacketRecord p;
  while ((*r)->Next(&p)) out.push_back(p);
  *stats = (*r)->stats();
  return out;
}

TEST(SharedDataTest, IpCountsMatchTsharkAndEdgeCasesNeverCrash) {
  DGC_REQUIRE_DATA();
  ASSERT_TRUE(testing::RequireTool("tshark"));
  auto files = Captures(testing::DataDir());
  ASSERT_GT(files.size(), 39u);
  int edge_cases = 0, refused = 0, compared = 0;
  for (const auto& path : files) {
    SCOPED_TRACE(path);
    bool edge = path.find("/edge-cases/") != std::string::npos;
    edge_cases += edge;
    auto r = TraceReader::Open(path);
    if (!r.ok()) {
      ++refused;
      EXPECT_TRUE(ExpectedRefusal(path)) << "refused: " << r.status();
      EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
      EXPECT_NE(r.status().message().find("editcap"), std::string::npos) << r.status();
      continue;
    }
    PacketRecord p;
    while ((*r)->Next(&p)) {
    }
    std::string out;
    testing::Run("tshark -n -r " + Quote(path) + " -Y 'ip or ipv6' -T fields -e frame.number 2>/dev/null | wc -l",
                 &out);
    EXPECT_EQ((*r)->stats().ip_packets, std::stoull(out))
        << "frames " << (*r)->stats().frames << ", non-IP " << (*r)->stats().non_ip;
    ++compared;
  }
  EXPECT_EQ(edge_cases, 39);
  EXPECT_LE(refused, 2);  // the two ERF files
  RecordProperty("compared", compared);
}

TEST(SharedDataTest, CaptureToChunksToPcapGivesTheSameRecords) {
  DGC_REQUIRE_DATA();
  testing::TempDir dir;
  int checked = 0;
  for (const auto& path : Captures(testing::DataDir())) {
    SCOPED_TRACE(path);
    if (!TraceReader::Open(path).ok()) continue;  // refusals are the test above's business
    ReadStats st;
    std::vector<PacketRecord> in = ReadAll(path, &st);
    std::sort(in.begin(), in.end(), FullOrder);
    // capture -> chunks (through the on-disk format) -> pcap
    std::vector<PacketRecord> via_chunks;
    Chunker chunker({"l", kDefaultChunkNs, 3600LL * 1000000000}, [&](Chunk&& c, bool amend) -> Status {
      DGC_ASSIGN_OR_RETURN(Chunk back, DecodeChunk(EncodeChunk(c), "mem"));
      via_chunks.insert(via_chunks.end(), back.packets.begin(), back.packets.end());
      return absl::OkStatus();
    });
    auto r = TraceReader::Open(path);
    PacketRecord p;
    while ((*r)->Next(&p)) ASSERT_TRUE(chunker.Add(p, (*r)->last_record_bytes()).ok());
    ASSERT_TRUE(chunker.Flush().ok());
    // Chunks come out in window order; a file far out of order may amend a window.
    std::sort(via_chunks.begin(), via_chunks.end(), FullOrder);
    // pcap cannot hold timestamps outside 1970..2038 (one edge case has them): they
    // are left out of the comparison on both sides.
    auto unrepresentable = [](const PacketRecord& x) { return !PcapCanRepresent(x.ts_ns); };
    in.erase(std::remove_if(in.begin(), in.end(), unrepresentable), in.end());
    via_chunks.erase(std::remove_if(via_chunks.begin(), via_chunks.end(), unrepresentable),
                     via_chunks.end());
    std::string pcap = dir.File("rt.pcap");
    testing::WritePcap(pcap, via_chunks);
    ReadStats back_stats;
    std::vector<PacketRecord> back = ReadAll(pcap, &back_stats);
    std::sort(back.begin(), back.end(), FullOrder);
    ASSERT_EQ(back.size(), in.size());
    EXPECT_EQ(back_stats.errors(), 0u);
    size_t mismatches = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      if (!SameMetricFields(in[i], back[i]) && ++mismatches <= 3) {
        ADD_FAILURE() << "record " << i << " differs: ts " << in[i].ts_ns << "->" << back[i].ts_ns << " src " << in[i].src.ToString(in[i].is_v6())
                      << " proto " << int(in[i].proto) << " ports " << in[i].sport << "/" << in[i].dport
                      << "->" << back[i].sport << "/" << back[i].dport << " len " << in[i].ip_len << "->"
                      << back[i].ip_len << " flags " << int(in[i].tcp_flags) << "->" << int(back[i].tcp_flags);
      }
    }
    EXPECT_EQ(mismatches, 0u);
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace dgc

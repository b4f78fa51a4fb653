#include "common/trace/pcap_writer.h"

#include "common/trace/pcap_reader.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using testing::MakePacket;

uint32_t Sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) acc += uint32_t(p[n - 1] << 8);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return acc;
}

// A varied set: v4/v6, TCP/UDP/ICMP/SCTP/other, fragments, a jumbogram.
std::vector<PacketRecord> Variety() {
  std::vector<PacketRecord> v;
  int64_t t = 1700000000LL * 1000000000;
  v.push_back(MakePacket(t += 1000, 0x0a000001, 0x0a000002, kProtoTcp, 443, 50000, 1500, 0x18));
  v.push_back(MakePacket(t += 1000, 0x0a000002, 0x0a000001, kProtoTcp, 50000, 443, 40, 0x10));
  v.push_back(MakePacket(t += 1000, 0x0a000001, 0x08080808, kProtoUdp, 5353, 53, 61));
  v.push_back(MakePacket(t += 1000, 0x0a000001, 0x08080808, kProtoIcmp, 0, 0, 84));
  v.push_back(MakePacket(t += 1000, 0x0a000001, 0x0a000003, kProtoSctp, 2905, 2905, 120));
  v.push_back(MakePacket(t += 1000, 0x0a000001, 0x0a000003, 47, 0, 0, 200));  // GRE, no ports
  PacketRecord frag = MakePacket(t += 1000, 0x0a000001, 0x0a000003, kProtoUdp, 0, 0, 1000);
  frag.frag = kFragMoreFragments | 185;
  v.push_back(frag);
  PacketRecord v6 = MakePacket(t += 1000, 0, 0, kProtoTcp, 80, 40000, 1280, 0x11);
  v6.version = 6;
  v6.src.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  v6.dst.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  v.push_back(v6);
  PacketRecord v6u = v6;
  v6u.ts_ns = t += 1000;
  v6u.proto = kProtoUdp;
  v6u.tcp_flags = 0;
  v6u.ip_len = 100;
  v.push_back(v6u);
  PacketRecord icmp6 = v6u;
  icmp6.ts_ns = t += 1000;
  icmp6.proto = kProtoIcmpV6;
  icmp6.sport = icmp6.dport = 0;
  v.push_back(icmp6);
  PacketRecord v6frag = v6u;
  v6frag.ts_ns = t += 1000;
  v6frag.flags = kPktV6FragmentHeader;
  v6frag.frag = 100;
  v6frag.ip_id = 77;
  v6frag.sport = v6frag.dport = 0;
  v.push_back(v6frag);
  PacketRecord jumbo = v6u;
  jumbo.ts_ns = t += 1000;
  jumbo.ip_len = 100000;
  v.push_back(jumbo);
  return v;
}

TEST(WriterTest, Ipv4AndTransportChecksumsVerify) {
  for (const PacketRecord& p : Variety()) {
    uint8_t buf[kMaxFrameHeader];
    uint32_t orig;
    size_t n = BuildFrame(p, OutputLink::kRawIp, buf, sizeof buf, &orig);
    ASSERT_GT(n, 0u);
    EXPECT_EQ(orig, std::max<uint32_t>(p.ip_len, uint32_t(n)));
    if (p.version == 4) {
      EXPECT_EQ(Sum16(buf, 20), 0xffffu) << "IPv4 header checksum";
      uint32_t l4_len = p.ip_len - 20;
      if (!p.is_later_fragment() && (p.proto == kProtoTcp || p.proto == kProtoUdp)) {
        // Pseudo header + header; the absent payload is zeros and adds nothing.
        uint32_t acc = Sum16(buf + 12, 8) + p.proto + l4_len;
        EXPECT_EQ(Sum16(buf + 20, n - 20, acc), 0xffffu) << "L4 checksum, proto " << int(p.proto);
      }
    }
  }
}

TEST(WriterTest, WrittenPcapReadsBackToTheSameRecords) {
  testing::TempDir dir;
  auto in = Variety();
  for (OutputLink link : {OutputLink::kRawIp, OutputLink::kEthernet}) {
    std::string path = dir.File("out.pcap");
    testing::WritePcap(path, in, link);
    auto r = TraceReader::Open(path);
    ASSERT_TRUE(r.ok()) << r.status();
    PacketRecord p;
    size_t i = 0;
    while ((*r)->Next(&p)) {
      ASSERT_LT(i, in.size());
      EXPECT_TRUE(SameMetricFields(p, in[i])) << "record " << i;
      EXPECT_EQ(p.frag, in[i].frag) << i;
      ++i;
    }
    EXPECT_EQ(i, in.size());
    EXPECT_EQ((*r)->stats().errors(), 0u);
  }
}

TEST(WriterTest, TsharkFindsNoMalformedPacketAndNoChecksumError) {
  ASSERT_TRUE(testing::RequireTool("tshark"));
  testing::TempDir dir;
  for (OutputLink link : {OutputLink::kRawIp, OutputLink::kEthernet}) {
    std::string path = dir.File("v.pcap");
    testing::WritePcap(path, Variety(), link);
    std::string out;
    int rc = testing::Run(
        "tshark -n -r " + path +
            " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
            " -Y '_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == 0 ||"
            " tcp.checksum.status == 0 || udp.checksum.status == 0' 2>/dev/null",
        &out);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "") << "tshark flagged packets:\n" << out;
    std::string count;
    testing::Run("tshark -n -r " + path + " 2>/dev/null | wc -l", &count);
    EXPECT_EQ(std::stoi(count), int(Variety().size()));
  }
}

TEST(WriterTest, UnwritablePathIsAnError) {
  EXPECT_FALSE(PcapWriter::Open("/nonexistent/dir/out.pcap").ok());
}

}  // namespace
}  // namespace dgc

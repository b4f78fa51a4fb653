#include "common/baseline/pcap_image.h"

#include "common/base/files.h"
#include "common/trace/trace_file.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;

std::vector<PacketRecord> Mixed() {
  std::vector<PacketRecord> v;
  v.push_back(MakePacket(1500000000123456789, 0x0a000001, 0x0a000002, kProtoTcp, 1234, 80, 60, 0x02));
  v.push_back(MakePacket(1500000000223456789, 0x0a000002, 0x0a000001, kProtoUdp, 53, 5353, 120));
  v.push_back(MakePacket(1500000001000000000, 0x0a000003, 0x08080808, kProtoIcmp, 0, 0, 84));
  v.push_back(MakePacket(1500000002000000001, 0x0a000001, 0x0a000002, kProtoTcp, 1234, 80, 1500, 0x18));
  PacketRecord frag = MakePacket(1500000003000000000, 0x0a000001, 0x0a000002, kProtoUdp, 0, 0, 1480);
  frag.frag = 185;  // a later fragment: no L4 header
  frag.ip_id = 77;
  v.push_back(frag);
  PacketRecord v6 = MakePacket(1500000004000000000, 0, 0, kProtoTcp, 443, 50000, 1280, 0x10);
  v6.version = 6;
  uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  v6.src = IpAddress::FromV6(a);
  v6.dst = IpAddress::FromV6(b);
  v6.ttl = 57;
  v.push_back(v6);
  return v;
}

TEST(PcapImageTest, BytesAreExactlyWhatPcapWriterWrites) {
  testing::TempDir dir;
  auto packets = Mixed();
  for (OutputLink link : {OutputLink::kRawIp, OutputLink::kEthernet}) {
    for (bool nano : {true, false}) {
      PcapWriterOptions o;
      o.link = link;
      o.nanosecond = nano;
      std::string path = dir.File("w.pcap");
      ASSERT_TRUE(WritePcapFile(path, packets, o).ok());
      auto file = ReadFile(path);
      ASSERT_TRUE(file.ok());
      std::string image = PcapImage(packets, o);
      EXPECT_EQ(image, *file) << "link " << int(link) << " nano " << nano;
      EXPECT_EQ(PcapImageSize(packets, o), image.size());
    }
  }
}

TEST(PcapImageTest, ReadsBackTheSameMetricFields) {
  auto packets = Mixed();
  auto back = ReadPcapImage(PcapImage(packets), "mixed");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_TRUE(SameMetricFields((*back)[i], packets[i])) << "packet " << i;
  }
}

TEST(PcapImageTest, EmptyTraceIsAHeaderOnlyFile) {
  EXPECT_EQ(PcapImage({}).size(), 24u);
  auto back = ReadPcapImage(PcapImage({}), "empty");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->empty());
}

TEST(PcapImageTest, GarbageIsAnErrorNotACrash) {
  EXPECT_FALSE(ReadPcapImage("definitely not a capture", "junk").ok());
}

TEST(LoadTest, SortsByTimeStablyAndKeepsCounters) {
  testing::TempDir dir;
  auto packets = Mixed();
  std::swap(packets[0], packets[3]);  // out of order on disk
  PacketRecord twin = packets[1];
  twin.sport = 9999;                  // same ts as packets[1], later in the file
  packets.insert(packets.begin() + 2, twin);
  testing::WritePcap(dir.File("t.pcap"), packets);
  auto t = LoadTrace(dir.File("t.pcap"));
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->packets.size(), packets.size());
  for (size_t i = 1; i < t->packets.size(); ++i) {
    EXPECT_LE(t->packets[i - 1].ts_ns, t->packets[i].ts_ns);
  }
  // Stable: of the two packets at the same time, the file's first stays first.
  for (size_t i = 1; i < t->packets.size(); ++i) {
    if (t->packets[i].ts_ns == t->packets[i - 1].ts_ns) {
      EXPECT_EQ(t->packets[i - 1].sport, packets[1].sport);
      EXPECT_EQ(t->packets[i].sport, 9999);
    }
  }
  EXPECT_EQ(t->stats.ip_packets, packets.size());
  EXPECT_FALSE(LoadTrace(dir.File("missing.pcap")).ok());
}

}  // namespace
}  // namespace dgc::baseline

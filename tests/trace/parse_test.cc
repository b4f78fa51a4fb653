#include "common/trace/parse.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using testing::EthernetHeader;
using testing::Ipv4Header;
using testing::TcpHeader;
using testing::UdpHeader;

constexpr uint32_t kA = 0x0a000001;  // 10.0.0.1
constexpr uint32_t kB = 0xc0a80102;  // 192.168.1.2

ParseOutcome Parse(int link, const std::string& f, PacketRecord* p, size_t wire = 0) {
  return ParseFrame(link, reinterpret_cast<const uint8_t*>(f.data()), f.size(),
                    wire ? wire : f.size(), p);
}

std::string Be16(uint16_t v) { return std::string{char(v >> 8), char(v & 0xff)}; }

std::string Ipv6Header(uint8_t next, uint16_t plen, uint8_t hop = 64) {
  std::string h = {0x60, 0, 0, 0};
  h += Be16(plen);
  h.push_back(char(next));
  h.push_back(char(hop));
  std::string src(16, '\0'), dst(16, '\0');
  src[0] = 0x20; src[1] = 0x01; src[15] = 1;
  dst[0] = 0x20; dst[1] = 0x01; dst[15] = 2;
  return h + src + dst;
}

TEST(ParseTest, EthernetIpv4TcpFillsEveryMetricField) {
  std::string f = EthernetHeader(0x0800) + Ipv4Header(kA, kB, 6, 1500, 57) + TcpHeader(443, 51000, 0x18);
  PacketRecord p;
  ASSERT_EQ(Parse(kLinkEthernet, f, &p, 1514), ParseOutcome::kIp);
  EXPECT_EQ(p.version, 4);
  EXPECT_EQ(p.src.v4(), kA);
  EXPECT_EQ(p.dst.v4(), kB);
  EXPECT_EQ(p.proto, 6);
  EXPECT_EQ(p.sport, 443);
  EXPECT_EQ(p.dport, 51000);
  EXPECT_EQ(p.ip_len, 1500u);  // the IP length, never the captured length
  EXPECT_EQ(p.ttl, 57);
  EXPECT_EQ(p.tcp_flags, 0x18);
}

TEST(ParseTest, VlanQinQAndMplsAreWalked) {
  std::string ip = Ipv4Header(kA, kB, 17, 28) + UdpHeader(53, 5353, 8);
  std::string vlan = EthernetHeader(0x8100) + Be16(10) + Be16(0x0800) + ip;
  std::string qinq = EthernetHeader(0x88a8) + Be16(10) + Be16(0x8100) + Be16(11) + Be16(0x0800) + ip;
  std::string mpls = EthernetHeader(0x8847) + std::string("\x00\x01\x00\x40", 4) +
                     std::string("\x00\x02\x01\x40", 4) + ip;  // two labels, bottom of stack
  for (const std::string& f : {vlan, qinq, mpls}) {
    PacketRecord p;
    ASSERT_EQ(Parse(kLinkEthernet, f, &p), ParseOutcome::kIp);
    EXPECT_EQ(p.sport, 53);
    EXPECT_EQ(p.dport, 5353);
  }
}

TEST(ParseTest, LinuxSllSll2RawAndLoopback) {
  std::string ip = Ipv4Header(kA, kB, 6, 40) + TcpHeader(1, 2, 0x02);
  std::string sll = std::string(14, '\0') + Be16(0x0800) + ip;
  std::string sll2 = Be16(0x0800) + std::string(18, '\0') + ip;
  std::string null_le = std::string("\x02\x00\x00\x00", 4) + ip;
  std::string null_be = std::string("\x00\x00\x00\x02", 4) + ip;
  std::string loop = std::string("\x00\x00\x00\x02", 4) + ip;
  struct Case { int link; std::string frame; };
  for (const Case& c : {Case{kLinkLinuxSll, sll}, Case{kLinkLinuxSll2, sll2}, Case{kLinkRaw, ip},
                        Case{kLinkRawLinktype, ip}, Case{kLinkIpv4, ip}, Case{kLinkNull, null_le},
                        Case{kLinkNull, null_be}, Case{kLinkLoop, loop}}) {
    PacketRecord p;
    ASSERT_EQ(Parse(c.link, c.frame, &p), ParseOutcome::kIp) << "link " << c.link;
    EXPECT_EQ(p.tcp_flags, 0x02) << "link " << c.link;
  }
}

TEST(ParseTest, Ipv6ExtensionHeadersGiveTheFinalProtocol) {
  // hop-by-hop (8 bytes) -> destination options (8 bytes) -> UDP
  std::string hbh = {60, 0, 1, 4, 0, 0, 0, 0};
  std::string dst = {17, 0, 1, 4, 0, 0, 0, 0};
  std::string f = Ipv6Header(0, 8 + 8 + 8, 33) + hbh + dst + UdpHeader(500, 4500, 8);
  PacketRecord p;
  ASSERT_EQ(Parse(kLinkIpv6, f, &p), ParseOutcome::kIp);
  EXPECT_EQ(p.version, 6);
  EXPECT_EQ(p.proto, 17);
  EXPECT_EQ(p.sport, 500);
  EXPECT_EQ(p.dport, 4500);
  EXPECT_EQ(p.ip_len, 40u + 24);
  EXPECT_EQ(p.ttl, 33);
}

TEST(ParseTest, FragmentsCountAsIpButOnlyTheFirstHasPorts) {
  std::string first = Ipv4Header(kA, kB, 17, 1500, 64, 0x2000) + UdpHeader(1000, 2000, 3000);
  std::string later = Ipv4Header(kA, kB, 17, 1500, 64, 185) + std::string(8, 'x');
  PacketRecord p;
  ASSERT_EQ(Parse(kLinkRaw, first, &p), ParseOutcome::kIp);
  EXPECT_TRUE(p.is_fragment());
  EXPECT_EQ(p.sport, 1000);
  ASSERT_EQ(Parse(kLinkRaw, later, &p), ParseOutcome::kIp);
  EXPECT_TRUE(p.is_later_fragment());
  EXPECT_EQ(p.sport, 0);
  EXPECT_EQ(p.dport, 0);
  // IPv6 fragment header with a non-zero offset: proto is the fragment's next header.
  std::string frag = {6, 0, 0x05, 0x00, 0, 0, 0, 42};  // offset 160 units, id 42
  std::string v6 = Ipv6Header(44, 1008) + frag + std::string(16, 'y');
  ASSERT_EQ(Parse(kLinkIpv6, v6, &p), ParseOutcome::kIp);
  EXPECT_EQ(p.proto, 6);
  EXPECT_EQ(p.sport, 0);
  EXPECT_EQ(p.ip_id, 42u);
  EXPECT_TRUE(p.is_later_fragment());
}

TEST(ParseTest, HeaderOnlyCaptureKeepsTheWireLength) {
  std::string f = Ipv4Header(kA, kB, 6, 1400) + TcpHeader(80, 1234, 0x10);
  PacketRecord p;
  ASSERT_EQ(Parse(kLinkRaw, f, &p, 1400), ParseOutcome::kIp);
  EXPECT_EQ(p.ip_len, 1400u);
}

TEST(ParseTest, TruncatedL4IsFlaggedNotFatal) {
  std::string f = Ipv4Header(kA, kB, 6, 60) + std::string("\x00\x50", 2);
  PacketRecord p;
  ASSERT_EQ(Parse(kLinkRaw, f, &p), ParseOutcome::kIp);
  EXPECT_TRUE(p.flags & kPktL4Truncated);
  EXPECT_EQ(p.sport, 0);
}

TEST(ParseTest, NonIpAndBrokenFramesAreClassified) {
  PacketRecord p;
  EXPECT_EQ(Parse(kLinkEthernet, EthernetHeader(0x0806) + std::string(28, '\0'), &p), ParseOutcome::kNonIp);
  EXPECT_EQ(Parse(kLinkEthernet, std::string(5, '\0'), &p), ParseOutcome::kNonIp);
  EXPECT_EQ(Parse(kLinkRaw, std::string("\x45\x00\x00", 3), &p), ParseOutcome::kMalformed);
  EXPECT_EQ(Parse(kLinkRaw, std::string("\x42") + std::string(30, '\0'), &p), ParseOutcome::kMalformed);
  EXPECT_EQ(Parse(kLinkIpv6, std::string("\x60") + std::string(20, '\0'), &p), ParseOutcome::kMalformed);
  EXPECT_EQ(Parse(147, std::string(40, '\0'), &p), ParseOutcome::kUnsupportedLink);
}

TEST(ParseTest, NeverReadsPastTheCapturedBytes) {
  // Every prefix of a deep frame parses without reading beyond it (ASan
  // checks the bound: each prefix lives in its own exact-size allocation).
  std::string ip = Ipv6Header(0, 16 + 20) + std::string{6, 0, 1, 4, 0, 0, 0, 0} + TcpHeader(1, 2, 3);
  std::string f = EthernetHeader(0x8100) + Be16(10) + Be16(0x86dd) + ip;
  for (size_t n = 0; n <= f.size(); ++n) {
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n ? n : 1]);
    std::memcpy(buf.get(), f.data(), n);
    PacketRecord p;
    ParseFrame(kLinkEthernet, buf.get(), n, f.size(), &p);
  }
}

}  // namespace
}  // namespace dgc

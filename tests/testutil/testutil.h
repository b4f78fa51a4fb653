// Helpers shared by dgc's tests: the shared data folder, temp dirs, small
// hand-made packets and captures, and running the project's binaries.
#ifndef DGC_TESTS_TESTUTIL_TESTUTIL_H_
#define DGC_TESTS_TESTUTIL_TESTUTIL_H_

#include <string>
#include <vector>

#include "common/trace/packet.h"
#include "common/trace/pcap_writer.h"
#include "gtest/gtest.h"

namespace dgc::testing {

// ../shared/data (or $DGC_DATA_DIR); empty when absent.
std::string DataDir();
// Skips the current test when the shared captures are absent.
#define DGC_REQUIRE_DATA()                                                  \
  do {                                                                      \
    if (::dgc::testing::DataDir().empty()) GTEST_SKIP() << "no ../shared/data"; \
  } while (0)

// A fresh directory under $TMPDIR, removed (recursively) with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A tmpfs of `size` (mount(8)'s syntax: 4m, 64k) at `dir`, created, for the
// object's life (unmounted lazily with it). mounted() is false when not root
// or when mount refuses; a test then skips.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size);
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// A packet with the given fields; the rest are plausible defaults.
PacketRecord MakePacket(int64_t ts_ns, uint32_t src_v4, uint32_t dst_v4, uint8_t proto,
                        uint16_t sport, uint16_t dport, uint32_t ip_len, uint8_t tcp_flags = 0);

// Writes `packets` to a pcap with PcapWriter (raw IP, nanosecond).
void WritePcap(const std::string& path, const std::vector<PacketRecord>& packets,
               OutputLink link = OutputLink::kRawIp);

// A classic pcap file image with the given link type and frames, written by
// hand (not by libpcap): `big_endian` and `nano` select the header variant.
struct RawFrame {
  int64_t ts_ns;
  std::string bytes;
  uint32_t wirelen = 0;  // 0: same as bytes.size()
};
std::string MakePcapImage(int linktype, const std::vector<RawFrame>& frames, bool nano = false,
                          bool big_endian = false, uint32_t snaplen = 65535);

// Frame builders (network byte order) for parser tests.
std::string Ipv4Header(uint32_t src, uint32_t dst, uint8_t proto, uint16_t total_len,
                       uint8_t ttl = 64, uint16_t frag = 0, uint16_t id = 1);
std::string TcpHeader(uint16_t sport, uint16_t dport, uint8_t flags);
std::string UdpHeader(uint16_t sport, uint16_t dport, uint16_t len);
std::string EthernetHeader(uint16_t ethertype);

void WriteBytes(const std::string& path, const std::string& bytes);

// Runs `command` with /bin/sh; returns its exit status, stdout in *out.
int Run(const std::string& command, std::string* out = nullptr);

// Path of a binary built by this project ("dgc-ingest", ...).
std::string BinaryPath(const std::string& name);

bool HaveTool(const std::string& name);

// A command-line tool that deploy/install-deps.sh installs: its absence is a
// failure naming the Debian package, never a skip.
//   ASSERT_TRUE(testing::RequireTool("tshark"));
::testing::AssertionResult RequireTool(const std::string& name);

}  // namespace dgc::testing

#endif  // DGC_TESTS_TESTUTIL_TESTUTIL_H_

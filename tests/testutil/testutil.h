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

// A packet with the given fields; the rest are plausible defaults.
PacketRecord MakePacket(int64_t ts_ns, uint32_t src_v4, uint32_t dst_v4, uint8_t proto,
                        uint16_t sport, uint16_t dport, uint32_t ip_len, uint8_t tcp_flags = 0);

// Writes `packets` to a pcap with PcapWriter (raw IP, nanosecond).
void WritePcap(const std::string& path, const std::vector<PacketRecord>& packets,
               OutputLink link = OutputLink::kRawIp);

// Runs `command` with /bin/sh; returns its exit status, stdout in *out.
int Run(const std::string& command, std::string* out = nullptr);

// Path of a binary built by this project ("dgc-ingest", ...).
std::string BinaryPath(const std::string& name);

bool HaveTool(const std::string& name);

}  // namespace dgc::testing

#endif  // DGC_TESTS_TESTUTIL_TESTUTIL_H_

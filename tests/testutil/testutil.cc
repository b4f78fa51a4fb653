#include "tests/testutil/testutil.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace dgc::testing {
namespace fs = std::filesystem;

std::string DataDir() {
  const char* env = std::getenv("DGC_DATA_DIR");
  std::string dir = env && *env ? env : DGC_DATA_DIR;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  return fs::canonical(dir, ec).string();
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/dgc-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

PacketRecord MakePacket(int64_t ts_ns, uint32_t src_v4, uint32_t dst_v4, uint8_t proto,
                        uint16_t sport, uint16_t dport, uint32_t ip_len, uint8_t tcp_flags) {
  PacketRecord p;
  p.ts_ns = ts_ns;
  p.version = 4;
  p.src = IpAddress::FromV4(src_v4);
  p.dst = IpAddress::FromV4(dst_v4);
  p.proto = proto;
  p.sport = sport;
  p.dport = dport;
  p.ip_len = ip_len;
  p.ttl = 64;
  p.tcp_flags = proto == kProtoTcp ? tcp_flags : 0;
  return p;
}

void WritePcap(const std::string& path, const std::vector<PacketRecord>& packets, OutputLink link) {
  PcapWriterOptions o;
  o.link = link;
  auto w = PcapWriter::Open(path, o);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& p : packets) ASSERT_TRUE((*w)->Write(p).ok());
  ASSERT_TRUE((*w)->Close().ok());
}

int Run(const std::string& command, std::string* out) {
  FILE* f = ::popen(command.c_str(), "r");
  if (!f) return -1;
  std::array<char, 65536> buf;
  std::string s;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) s.append(buf.data(), n);
  int st = ::pclose(f);
  if (out) *out = std::move(s);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

std::string BinaryPath(const std::string& name) {
  for (const char* sub : {"/ingest/", "/coordinator/", "/worker/", "/"}) {
    std::string p = std::string(DGC_BINARY_DIR) + sub + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::string(DGC_BINARY_DIR) + "/" + name;
}

bool HaveTool(const std::string& name) {
  return Run("command -v " + name + " >/dev/null 2>&1") == 0;
}

}  // namespace dgc::testing

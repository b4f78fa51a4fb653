#include "tests/testutil/testutil.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

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

TmpfsMount::TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  mounted_ = ::geteuid() == 0 && Run("mount -t tmpfs -o size=" + size + " tmpfs " + dir_ + " 2>/dev/null") == 0;
}

TmpfsMount::~TmpfsMount() {
  if (mounted_) Run("umount -l " + dir_ + " 2>/dev/null");
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

namespace {
void Append(std::string* s, uint32_t v, int bytes, bool big) {
  for (int i = 0; i < bytes; ++i) {
    int shift = big ? 8 * (bytes - 1 - i) : 8 * i;
    s->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}
}  // namespace

std::string MakePcapImage(int linktype, const std::vector<RawFrame>& frames, bool nano,
                          bool big_endian, uint32_t snaplen) {
  std::string s;
  Append(&s, nano ? 0xa1b23c4d : 0xa1b2c3d4, 4, big_endian);
  Append(&s, 2, 2, big_endian);
  Append(&s, 4, 2, big_endian);
  Append(&s, 0, 4, big_endian);
  Append(&s, 0, 4, big_endian);
  Append(&s, snaplen, 4, big_endian);
  Append(&s, static_cast<uint32_t>(linktype), 4, big_endian);
  for (const auto& f : frames) {
    int64_t sec = f.ts_ns / 1000000000, frac = f.ts_ns % 1000000000;
    Append(&s, static_cast<uint32_t>(sec), 4, big_endian);
    Append(&s, static_cast<uint32_t>(nano ? frac : frac / 1000), 4, big_endian);
    Append(&s, static_cast<uint32_t>(f.bytes.size()), 4, big_endian);
    Append(&s, f.wirelen ? f.wirelen : static_cast<uint32_t>(f.bytes.size()), 4, big_endian);
    s += f.bytes;
  }
  return s;
}

std::string Ipv4Header(uint32_t src, uint32_t dst, uint8_t proto, uint16_t total_len, uint8_t ttl,
                       uint16_t frag, uint16_t id) {
  std::string h;
  h.push_back(0x45);
  h.push_back(0);
  Append(&h, total_len, 2, true);
  Append(&h, id, 2, true);
  Append(&h, frag, 2, true);
  h.push_back(static_cast<char>(ttl));
  h.push_back(static_cast<char>(proto));
  Append(&h, 0, 2, true);
  Append(&h, src, 4, true);
  Append(&h, dst, 4, true);
  return h;
}

std::string TcpHeader(uint16_t sport, uint16_t dport, uint8_t flags) {
  std::string h;
  Append(&h, sport, 2, true);
  Append(&h, dport, 2, true);
  Append(&h, 1, 4, true);
  Append(&h, 0, 4, true);
  h.push_back(0x50);
  h.push_back(static_cast<char>(flags));
  Append(&h, 65535, 2, true);
  Append(&h, 0, 4, true);
  return h;
}

std::string UdpHeader(uint16_t sport, uint16_t dport, uint16_t len) {
  std::string h;
  Append(&h, sport, 2, true);
  Append(&h, dport, 2, true);
  Append(&h, len, 2, true);
  Append(&h, 0, 2, true);
  return h;
}

std::string EthernetHeader(uint16_t ethertype) {
  std::string h(12, '\x02');
  Append(&h, ethertype, 2, true);
  return h;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
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
  for (const char* sub : {"/ingest/", "/coordinator/dgcctl/", "/coordinator/", "/worker/", "/"}) {
    std::string p = std::string(DGC_BINARY_DIR) + sub + name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::string(DGC_BINARY_DIR) + "/" + name;
}

bool HaveTool(const std::string& name) {
  return Run("command -v " + name + " >/dev/null 2>&1") == 0;
}

::testing::AssertionResult RequireTool(const std::string& name) {
  if (HaveTool(name)) return ::testing::AssertionSuccess();
  // Tools whose Debian package has another name.
  static const std::map<std::string, std::string> kPackage = {
      {"xz", "xz-utils"}, {"promtool", "prometheus"}, {"nfpcapd", "nfdump"}, {"editcap", "wireshark-common"}};
  auto it = kPackage.find(name);
  return ::testing::AssertionFailure() << name << " is not installed, and the tests need it: run deploy/install-deps.sh"
                                       << " (Debian package " << (it == kPackage.end() ? name : it->second) << ")";
}

}  // namespace dgc::testing

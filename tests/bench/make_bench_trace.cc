// dgc-make-bench-trace: builds the benchmark trace, a dense one-hour link made
// of real packets with their real timing.
//
// Every capture of the chosen source folders is cut into windows of
// --window-seconds aligned to the epoch (so a week-long capture gives one
// window per hour of the week, a short session one or two). The windows are
// overlaid into one output hour: each packet keeps its offset within its own
// window. One pass overlays every window once (in a seeded shuffled order);
// passes repeat until the trace holds --target-packets, the last pass
// stopping at the first window that reaches the target. Each window copy
// gets its own address remap, so the hosts of different windows and of
// different copies of one window stay distinct, and every copy after the
// first is shifted in time by a small seeded jitter (the whole window moves
// together, so flows keep their inner timing; the shift is clamped so the
// window stays inside the hour).
//
// The remap is a keyed, prefix-preserving permutation of the host bits per
// window copy (hosts in one subnet stay in one subnet) that keeps the family
// and the address class: private ranges stay private, link-local stays
// link-local, public stays public. Multicast, broadcast, unspecified and
// loopback addresses are not hosts and are kept as they are. An output
// address already claimed by another host is never reused: the permutation is
// retried with a new tweak (falling back to a larger class when a small one,
// such as 192.168/16, fills up), so the remap is injective over the trace.
//
// Everything is deterministic for a given --seed and input set.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/base/time.h"
#include "common/trace/chunk.h"
#include "common/trace/merged_reader.h"
#include "common/trace/pcap_reader.h"
#include "common/trace/pcap_writer.h"
#include "nlohmann/json.hpp"

namespace dgc {
namespace {

using u128 = unsigned __int128;

uint64_t Mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
uint64_t Hash(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x6a09e667f3bcc908ULL;
  for (uint64_t p : parts) h = Mix64(h ^ p);
  return h;
}

// A small deterministic generator (std:: distributions differ between
// standard libraries; this does not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  uint64_t Below(uint64_t n) { return n ? Next() % n : 0; }  // bias is irrelevant here

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------- addresses

// An address class: addresses whose first `fixed_bits` bits equal those of
// `prefix`; the remaining bits are permuted.
struct AddrClass {
  int id;
  bool v6;
  u128 prefix;   // the fixed bits, left-aligned in the family's width
  int fixed_bits;
  int overflow;  // class id to fall back to when this one is crowded
  bool keep_original_prefix = false;  // the fixed bits are the original address's
};

u128 V4(uint32_t a) { return u128(a); }
u128 V6(uint64_t hi, uint64_t lo) { return u128(hi) << 64 | lo; }

// Class ids. Public v4 is "everything else"; candidates that land in another
// class are rejected and retried.
enum : int { kV4Ten, kV4OneSevenTwo, kV4OneNineTwo, kV4LinkLocal, kV4Cgnat, kV4Public,
             kV6LinkLocal, kV6Ula, kV6Global, kNumClasses };

const AddrClass kClasses[kNumClasses] = {
    {kV4Ten, false, V4(0x0a000000), 8, kV4Public},
    {kV4OneSevenTwo, false, V4(0xac100000), 12, kV4Ten},
    {kV4OneNineTwo, false, V4(0xc0a80000), 16, kV4OneSevenTwo},
    {kV4LinkLocal, false, V4(0xa9fe0000), 16, kV4Ten},
    {kV4Cgnat, false, V4(0x64400000), 10, kV4Ten},
    {kV4Public, false, V4(0), 0, kV4Public},
    {kV6LinkLocal, true, V6(0xfe80000000000000ULL, 0), 64, kV6Ula},
    {kV6Ula, true, V6(0xfc00000000000000ULL, 0), 7, kV6Ula},
    // Global: keep the first 16 bits (2001:, 2a00:, ...) and permute the rest.
    {kV6Global, true, V6(0, 0), 16, kV6Global, true},
};

bool InPrefix(u128 a, int width, u128 prefix, int bits) {
  if (bits == 0) return true;
  int shift = width - bits;
  return (a >> shift) == (prefix >> shift);
}

// Not hosts: kept as they are (shared by every window, as on a real link).
bool IsFixedV4(uint32_t a) {
  uint32_t top = a >> 24;
  return top == 0 || top == 127 || a >= 0xe0000000u;  // 0/8, loopback, multicast, 240/4, broadcast
}
bool IsFixedV6(u128 a) {
  return a == 0 || a == 1 || (a >> 120) == 0xff;  // unspecified, loopback, multicast
}

// The class an original address belongs to; -1 when it is kept as is.
int ClassOf(u128 a, bool v6) {
  if (!v6) {
    uint32_t x = uint32_t(a);
    if (IsFixedV4(x)) return -1;
    for (int c : {kV4Ten, kV4OneSevenTwo, kV4OneNineTwo, kV4LinkLocal, kV4Cgnat}) {
      if (InPrefix(a, 32, kClasses[c].prefix, kClasses[c].fixed_bits)) return c;
    }
    return kV4Public;
  }
  if (IsFixedV6(a)) return -1;
  if (InPrefix(a, 128, V6(0xfe80000000000000ULL, 0), 10)) return kV6LinkLocal;
  if (InPrefix(a, 128, kClasses[kV6Ula].prefix, 7)) return kV6Ula;
  return kV6Global;
}

// Keyed prefix-preserving permutation of the low `n` bits of `a`: bit i (from
// the top) is flipped by a pseudo-random function of the key and of the bits
// above it. A bijection; two inputs sharing a k-bit prefix share it after.
u128 PrefixPermute(u128 a, int n, uint64_t key) {
  u128 out = a;
  for (int i = 0; i < n; ++i) {
    int bit = n - 1 - i;
    u128 prefix = i == 0 ? 0 : (a >> (bit + 1));
    uint64_t h = Hash({key, uint64_t(i), uint64_t(prefix), uint64_t(prefix >> 64)});
    if (h & 1) out ^= u128(1) << bit;
  }
  return out;
}

// Places `a` into class `c` with key `key`: keeps the class prefix, permutes
// the rest. For a class change (overflow), the original's low bits are used.
u128 PlaceInClass(u128 a, const AddrClass& c, uint64_t key) {
  int width = c.v6 ? 128 : 32;
  int free_bits = width - c.fixed_bits;
  u128 mask = free_bits == 128 ? ~u128(0) : (u128(1) << free_bits) - 1;
  u128 host = PrefixPermute(a & mask, free_bits, key);
  return ((c.keep_original_prefix ? a : c.prefix) & ~mask) | host;
}

u128 ToInt(const IpAddress& ip, bool v6) {
  if (!v6) return ip.v4();
  u128 x = 0;
  for (uint8_t b : ip.bytes) x = x << 8 | b;
  return x;
}
IpAddress FromInt(u128 x, bool v6) {
  if (!v6) return IpAddress::FromV4(uint32_t(x));
  IpAddress ip;
  for (int i = 15; i >= 0; --i) {
    ip.bytes[size_t(i)] = uint8_t(x);
    x >>= 8;
  }
  return ip;
}

// The remap of every window copy, injective over the whole trace.
class AddressRemapper {
 public:
  explicit AddressRemapper(uint64_t seed) : seed_(seed) {}

  // The address `ip` of window copy `copy` becomes this.
  IpAddress Map(uint64_t copy, const IpAddress& ip, bool v6) {
    auto& mine = per_copy_[copy];
    auto it = mine.find(ip);
    if (it != mine.end()) return it->second;
    IpAddress out = Choose(copy, ip, v6);
    mine.emplace(ip, out);
    return out;
  }
  uint64_t retries() const { return retries_; }
  uint64_t overflows() const { return overflows_; }
  uint64_t hosts() const { return used_.size(); }

 private:
  IpAddress Choose(uint64_t copy, const IpAddress& ip, bool v6) {
    u128 a = ToInt(ip, v6);
    int cls = ClassOf(a, v6);
    if (cls < 0) return ip;
    for (uint64_t tweak = 0;; ++tweak) {
      // 16 tries in the address's own class, then in its overflow class, ...
      int c = cls;
      for (uint64_t k = 16; k <= tweak; k += 16) c = kClasses[c].overflow;
      u128 cand = PlaceInClass(a, kClasses[c], Hash({seed_, copy, tweak, uint64_t(c)}));
      // A candidate outside the class (a "public" one that fell into a private
      // or multicast range) or already taken by another host: try again.
      if (ClassOf(cand, v6) == c) {
        IpAddress out = FromInt(cand, v6);
        if (used_.emplace(out, true).second) {
          if (c != cls) ++overflows_;
          return out;
        }
      }
      ++retries_;
    }
  }

  uint64_t seed_;
  absl::flat_hash_map<uint64_t, absl::flat_hash_map<IpAddress, IpAddress>> per_copy_;
  absl::flat_hash_map<IpAddress, bool> used_;  // every output host address
  uint64_t retries_ = 0;
  uint64_t overflows_ = 0;
};

// ------------------------------------------------------------------ windows

struct Window {
  size_t file = 0;          // index into the file list
  int64_t start_ns = 0;     // window start in the source capture
  std::vector<PacketRecord> packets;  // in capture order
  int64_t min_off = 0, max_off = 0;   // offsets within the window
  uint64_t copies = 0;
};

struct SourceFile {
  std::string path;
  std::string folder;
  uint64_t ip_packets = 0;
  uint64_t windows = 0;
};

struct Options {
  std::string data_dir;
  std::vector<std::string> sources;
  std::string out;
  std::string manifest;
  uint64_t target_packets = 1000000;
  uint64_t seed = 1;
  double window_seconds = 3600;
  double jitter_seconds = 30;
  std::string start = "2024-01-01T00:00:00Z";
  bool quiet = false;
};

std::string Rel(const std::string& path, const std::string& base) {
  std::error_code ec;
  auto r = std::filesystem::relative(path, base, ec);
  return ec || r.empty() ? path : r.string();
}

Status Run(const Options& opt) {
  const int64_t window_ns = static_cast<int64_t>(opt.window_seconds * 1e9);
  const int64_t jitter_ns = static_cast<int64_t>(opt.jitter_seconds * 1e9);
  if (window_ns <= 0) return absl::InvalidArgumentError("--window-seconds must be positive");
  DGC_ASSIGN_OR_RETURN(int64_t start_ns, ParseTime(opt.start, 0));
  start_ns = WindowStart(start_ns, window_ns);

  // 1. Read every capture of the source folders into windows.
  std::vector<SourceFile> files;
  std::vector<Window> windows;
  for (const auto& folder : opt.sources) {
    std::string dir = (std::filesystem::path(opt.data_dir) / folder).string();
    auto listed = ListFiles(dir);
    if (!listed.ok()) {
      return absl::NotFoundError(absl::StrFormat("source folder %s: %s", dir,
                                                 std::string(listed.status().message())));
    }
    for (const auto& path : *listed) {
      auto reader = TraceReader::Open(path);
      if (!reader.ok()) {  // provenance notes, CSV files: not captures
        if (!opt.quiet) std::cerr << "skipping " << Rel(path, opt.data_dir) << ": not a capture\n";
        continue;
      }
      SourceFile sf{path, folder, 0, 0};
      std::map<int64_t, Window> by_start;
      PacketRecord p;
      while ((*reader)->Next(&p)) {
        int64_t ws = WindowStart(p.ts_ns, window_ns);
        Window& w = by_start[ws];
        if (w.packets.empty()) {
          w.file = files.size();
          w.start_ns = ws;
          w.min_off = w.max_off = p.ts_ns - ws;
        }
        w.min_off = std::min(w.min_off, p.ts_ns - ws);
        w.max_off = std::max(w.max_off, p.ts_ns - ws);
        w.packets.push_back(p);
        ++sf.ip_packets;
      }
      if (sf.ip_packets == 0) continue;
      sf.windows = by_start.size();
      for (auto& [ws, w] : by_start) windows.push_back(std::move(w));
      files.push_back(std::move(sf));
    }
  }
  uint64_t available = 0;
  for (const auto& w : windows) available += w.packets.size();
  if (available == 0) return absl::NotFoundError("no IP packets in the source folders");

  // 2. Overlay window copies, pass after pass, until the target is reached.
  AddressRemapper remap(opt.seed);
  std::vector<PacketRecord> out;
  out.reserve(opt.target_packets + 100000);
  uint64_t copies = 0, passes = 0;
  std::vector<size_t> order(windows.size());
  while (out.size() < opt.target_packets) {
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    Rng shuffle(Hash({opt.seed, 0x5eed, passes}));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.Below(i)]);
    for (size_t wi : order) {
      if (out.size() >= opt.target_packets) break;
      Window& w = windows[wi];
      uint64_t copy_id = copies++;
      int64_t shift = 0;
      if (w.copies > 0 && jitter_ns > 0) {  // the first copy keeps its real offsets
        Rng r(Hash({opt.seed, 0x717e, copy_id}));
        shift = static_cast<int64_t>(r.Below(uint64_t(2 * jitter_ns + 1))) - jitter_ns;
        shift = std::clamp(shift, -w.min_off, window_ns - 1 - w.max_off);
      }
      ++w.copies;
      for (const PacketRecord& src : w.packets) {
        PacketRecord p = src;
        p.ts_ns = start_ns + (src.ts_ns - w.start_ns) + shift;
        p.src = remap.Map(copy_id, src.src, src.is_v6());
        p.dst = remap.Map(copy_id, src.dst, src.is_v6());
        p.flags &= static_cast<uint8_t>(~kPktFlowContinued);  // set by chunkers, not captures
        out.push_back(p);
      }
    }
    ++passes;
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });

  // 3. Write it (to a temporary name first: a partial file never looks done).
  std::string tmp = opt.out + ".tmp";
  {
    std::error_code ec;
    auto parent = std::filesystem::path(opt.out).parent_path();
    if (!parent.empty()) DGC_RETURN_IF_ERROR(MakeDirs(parent.string()));
    DGC_ASSIGN_OR_RETURN(auto writer, PcapWriter::Open(tmp));
    for (const auto& p : out) DGC_RETURN_IF_ERROR(writer->Write(p));
    DGC_RETURN_IF_ERROR(writer->Close());
    std::filesystem::rename(tmp, opt.out, ec);
    if (ec) return absl::InternalError(absl::StrFormat("rename %s: %s", tmp, ec.message()));
  }

  // 4. Report.
  uint64_t v6 = 0;
  for (const auto& p : out) v6 += p.is_v6();
  uint64_t used_windows = 0, max_copies = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> per_folder;  // files, windows
  for (const auto& f : files) {
    per_folder[f.folder].first++;
    per_folder[f.folder].second += f.windows;
  }
  for (const auto& w : windows) {
    used_windows += w.copies > 0;
    max_copies = std::max(max_copies, w.copies);
  }
  uint64_t size = std::filesystem::file_size(opt.out);
  int64_t first = out.front().ts_ns, last = out.back().ts_ns;

  nlohmann::json j;
  j["trace"] = opt.out;
  j["packets"] = out.size();
  j["ipv4_packets"] = out.size() - v6;
  j["ipv6_packets"] = v6;
  j["bytes"] = size;
  j["first_packet"] = FormatRfc3339(first);
  j["last_packet"] = FormatRfc3339(last);
  j["span_seconds"] = (last - first) / 1e9;
  j["seed"] = opt.seed;
  j["target_packets"] = opt.target_packets;
  j["window_seconds"] = opt.window_seconds;
  j["jitter_seconds"] = opt.jitter_seconds;
  j["source_files"] = files.size();
  j["source_ip_packets"] = available;
  j["windows_available"] = windows.size();
  j["windows_used"] = used_windows;
  j["window_copies"] = copies;
  j["passes"] = passes;
  j["hosts"] = remap.hosts();
  j["remap_retries"] = remap.retries();      // candidates taken or outside their class
  j["remap_overflows"] = remap.overflows();  // hosts moved to a larger class (e.g. 192.168/16 full)
  if (!opt.manifest.empty()) {
    nlohmann::json m = j;
    m["files"] = nlohmann::json::array();
    for (const auto& f : files) {
      m["files"].push_back({{"path", Rel(f.path, opt.data_dir)}, {"ip_packets", f.ip_packets},
                            {"windows", f.windows}});
    }
    m["windows"] = nlohmann::json::array();
    for (const auto& w : windows) {
      m["windows"].push_back({{"file", Rel(files[w.file].path, opt.data_dir)},
                              {"start", FormatRfc3339(w.start_ns)},
                              {"packets", w.packets.size()},
                              {"copies", w.copies}});
    }
    DGC_RETURN_IF_ERROR(WriteFileAtomic(opt.manifest, m.dump(1) + "\n"));
  }

  std::string s;
  auto row = [&](const char* k, const std::string& v) { s += absl::StrFormat("%-10s %s\n", k, v); };
  row("trace", absl::StrFormat("%s (%.1f MB)", opt.out, size / 1e6));
  row("packets", absl::StrFormat("%d (%d IPv4, %d IPv6), %d distinct remapped hosts", out.size(),
                                 out.size() - v6, v6, remap.hosts()));
  row("span", absl::StrFormat("%s .. %s (%.1f s)", FormatRfc3339(first), FormatRfc3339(last),
                              (last - first) / 1e9));
  row("sources", absl::StrFormat("%d files, %d IP packets, %d windows of %.0f s", files.size(),
                                 available, windows.size(), opt.window_seconds));
  for (const auto& [folder, fw] : per_folder) {
    row("", absl::StrFormat("  %-18s %3d files %5d windows", folder, fw.first, fw.second));
  }
  row("overlay", absl::StrFormat(
                     "%d window copies in %d pass(es) (%d of %d windows used, each at most %d "
                     "times), seed %d, jitter +-%.0f s after the first copy",
                     copies, passes, used_windows, windows.size(), max_copies, opt.seed,
                     opt.jitter_seconds));
  if (!opt.manifest.empty()) row("manifest", opt.manifest);
  std::cout << s;
  return absl::OkStatus();
}

}  // namespace
}  // namespace dgc

int main(int argc, char** argv) {
  CLI::App app{"dgc-make-bench-trace: overlay one-hour windows of real captures into one dense hour"};
  dgc::Options opt;
  std::string sources = "iot-oconnor,ndpi,pcapplusplus,stratosphere,zeek,cicids2017-netml,darpa1998,netshare";
  app.add_option("--data", opt.data_dir, "folder of the shared captures (../shared/data)")->required();
  app.add_option("--sources", sources, "comma-separated source folders under --data")
      ->capture_default_str();
  app.add_option("--out", opt.out, "output pcap (raw IP, nanosecond, header-only)")->required();
  app.add_option("--manifest", opt.manifest, "also write a JSON manifest of the windows used");
  app.add_option("--target-packets", opt.target_packets, "stop once the trace holds this many")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", opt.seed, "seed of window order, address remap and jitter")
      ->capture_default_str();
  app.add_option("--window-seconds", opt.window_seconds, "window (and output span) length")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--jitter-seconds", opt.jitter_seconds, "max time shift of repeated window copies")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--start", opt.start, "start of the output hour (RFC 3339 or epoch seconds)")
      ->capture_default_str();
  app.add_flag("--quiet", opt.quiet, "no notes about skipped files");
  CLI11_PARSE(app, argc, argv);
  opt.sources = absl::StrSplit(sources, ',', absl::SkipEmpty());
  dgc::Status st = dgc::Run(opt);
  if (!st.ok()) {
    std::cerr << "dgc-make-bench-trace: " << st.message() << "\n";
    return 1;
  }
  return 0;
}

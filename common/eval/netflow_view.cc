#include "common/eval/netflow_view.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/base/files.h"
#include "common/base/subprocess.h"

namespace dgc::eval {
namespace {

namespace fs = std::filesystem;

// "2019-09-28 17:48:19" (nfdump prints local time: the tools run with TZ=UTC).
bool ParseNfdumpTime(absl::string_view s, int64_t* out) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d %H:%M:%S", absl::StripAsciiWhitespace(s), absl::UTCTimeZone(), &t, &err)) {
    return false;
  }
  *out = absl::ToUnixSeconds(t);
  return true;
}

bool ParseCount(absl::string_view s, uint64_t* out) {
  s = absl::StripAsciiWhitespace(s);
  if (absl::SimpleAtoi(s, out)) return true;
  double d = 0;  // some nfdump versions print counts as 1.2e+06 or with a fraction
  if (!absl::SimpleAtod(s, &d) || d < 0) return false;
  *out = static_cast<uint64_t>(std::llround(d));
  return true;
}

struct Window {
  uint64_t flows = 0, packets = 0, bytes = 0;
  std::set<std::string> src, dst;
  std::set<uint32_t> dport;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::set<uint32_t> Top10Ports(const std::vector<NetflowRecord>& flows) {
  std::map<uint32_t, uint64_t> count;
  for (const auto& f : flows) count[f.dst_port]++;
  std::vector<std::pair<uint32_t, uint64_t>> v(count.begin(), count.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::set<uint32_t> top;
  for (size_t i = 0; i < v.size() && i < 10; ++i) top.insert(v[i].first);
  return top;
}

Status RunNetflowTool(std::vector<std::string> argv, const std::string& stdout_path = "") {
  ToolRun run{std::move(argv), stdout_path, {"TZ=UTC"}};
  Status st = RunTool(run);
  if (absl::IsNotFound(st)) {
    const char* pkg = run.argv[0] == "editcap" ? "wireshark-common" : "nfdump";
    return absl::NotFoundError(absl::StrCat("the NetFlow view needs ", run.argv[0], " (Debian package ", pkg,
                                            "; deploy/install-deps.sh installs it)"));
  }
  return st;
}

}  // namespace

StatusOr<std::vector<NetflowRecord>> ParseNfdumpCsv(const std::string& text) {
  std::vector<NetflowRecord> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    // Records start with a date; headers and summaries ("ts,te,..", "Summary") do not.
    if (f.size() < 13 || f[0].empty() || !std::isdigit(static_cast<unsigned char>(f[0][0]))) continue;
    NetflowRecord r;
    uint64_t port = 0;
    if (!ParseNfdumpTime(f[0], &r.first_s) || !ParseNfdumpTime(f[1], &r.last_s) ||
        !ParseCount(f[6], &port) || !ParseCount(f[11], &r.packets) || !ParseCount(f[12], &r.bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("nfdump csv line ", line_no, " does not parse: ", line));
    }
    r.src = std::string(absl::StripAsciiWhitespace(f[3]));
    r.dst = std::string(absl::StripAsciiWhitespace(f[4]));
    r.dst_port = static_cast<uint32_t>(port);
    out.push_back(std::move(r));
  }
  return out;
}

StatusOr<std::vector<NetflowRecord>> NetflowRecordsOf(const std::string& pcap, const std::string& work_dir) {
  std::error_code ec;
  if (!fs::is_regular_file(pcap, ec)) return absl::NotFoundError(absl::StrCat("no capture file ", pcap));
  const std::string base = (fs::path(work_dir) / fs::path(pcap).filename()).string();
  std::string dir = base;
  for (int i = 1; fs::exists(dir, ec); ++i) dir = absl::StrCat(base, ".", i);
  DGC_RETURN_IF_ERROR(MakeDirs(dir));
  const std::string classic = dir + "/in.pcap";
  DGC_RETURN_IF_ERROR(RunNetflowTool({"editcap", "-F", "pcap", pcap, classic}));
  DGC_RETURN_IF_ERROR(RunNetflowTool({"nfpcapd", "-r", classic, "-w", dir, "-e", "300,60"}));
  fs::remove(classic, ec);
  const std::string csv = work_dir + "/" + fs::path(dir).filename().string() + ".csv";
  DGC_RETURN_IF_ERROR(RunNetflowTool({"nfdump", "-R", dir, "-o", "csv", "-q", "-N"}, csv));
  DGC_ASSIGN_OR_RETURN(std::string text, ReadFile(csv));
  return ParseNfdumpCsv(text);
}

StatusOr<NetflowView> CompareNetflow(const std::vector<NetflowRecord>& real, const std::vector<NetflowRecord>& synth) {
  if (real.empty()) return absl::InvalidArgumentError("no flow records in the real trace");
  int64_t t0 = real.front().first_s, t1 = real.front().last_s;
  for (const auto& f : real) {
    t0 = std::min(t0, f.first_s);
    t1 = std::max(t1, f.last_s);
  }
  const double span = double(t1 - t0);
  NetflowView v;
  const bool short_trace = span < 3000;
  v.window_s = short_trace ? std::max(span / 10.0, 1.0) : 300.0;
  auto per_window = [&](const std::vector<NetflowRecord>& flows) {
    std::map<int64_t, Window> out;
    for (const auto& f : flows) {
      int64_t k = static_cast<int64_t>(std::floor(double(f.first_s - t0) / v.window_s));
      // Ten windows: a record at the real span's very end falls in the tenth.
      if (short_trace && k == 10 && double(f.first_s - t0) <= span) k = 9;
      Window& w = out[k];
      w.flows++;
      w.packets += f.packets;
      w.bytes += f.bytes;
      w.src.insert(f.src);
      w.dst.insert(f.dst);
      w.dport.insert(f.dst_port);
    }
    return out;
  };
  std::map<int64_t, Window> r = per_window(real), s = per_window(synth);
  std::set<int64_t> keys;
  for (const auto& [k, w] : r) keys.insert(k);
  for (const auto& [k, w] : s) keys.insert(k);
  const Window empty;
  auto rel = [](double a, double b) { return std::abs(b - a) / std::max(a, 1.0); };
  std::map<std::string, std::vector<double>> errs;
  for (int64_t k : keys) {
    auto ri = r.find(k), si = s.find(k);
    const Window& a = ri == r.end() ? empty : ri->second;
    const Window& b = si == s.end() ? empty : si->second;
    errs["flows"].push_back(rel(double(a.flows), double(b.flows)));
    errs["packets"].push_back(rel(double(a.packets), double(b.packets)));
    errs["bytes"].push_back(rel(double(a.bytes), double(b.bytes)));
    errs["src"].push_back(rel(double(a.src.size()), double(b.src.size())));
    errs["dst"].push_back(rel(double(a.dst.size()), double(b.dst.size())));
    errs["dport"].push_back(rel(double(a.dport.size()), double(b.dport.size())));
  }
  double sum = 0;
  for (auto& [name, e] : errs) {
    v.medians[name] = Median(std::move(e));
    sum += v.medians[name];
  }
  v.figure = sum / double(v.medians.size());
  v.windows = keys.size();
  v.real_records = real.size();
  v.synth_records = synth.size();
  std::set<uint32_t> rt = Top10Ports(real), st = Top10Ports(synth);
  size_t common = 0;
  for (uint32_t p : rt) common += st.count(p);
  v.top10_dport_share = double(common) / double(std::max<size_t>(rt.size(), 1));
  return v;
}

StatusOr<NetflowView> NetflowViewOf(const std::string& real_pcap, const std::string& synth_pcap) {
  std::error_code ec;
  fs::path base = fs::temp_directory_path(ec);
  std::string tmpl = (base / "dgc-netflow-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("cannot create a temporary directory");
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{tmpl};
  DGC_ASSIGN_OR_RETURN(auto real, NetflowRecordsOf(real_pcap, tmpl));
  DGC_ASSIGN_OR_RETURN(auto synth, NetflowRecordsOf(synth_pcap, tmpl));
  return CompareNetflow(real, synth);
}

}  // namespace dgc::eval

// A tiny end-to-end run of the embedded pipeline, as an operator would do it:
// dgcctl compress a small trace into a (RocksDB) library, dgcctl generate it
// back; re-runs, stdin, --follow with raw retention, and --pseudonymize.
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "common/base/files.h"
#include "common/trace/pcap_reader.h"
#include "common/trace/pcap_writer.h"
#include "common/trace/pseudonymize.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {
namespace fs = std::filesystem;

const std::string kCtl = DGCCTL_PATH;
// A small, fast configuration: the point is the plumbing, not fidelity.
const std::string kTiny =
    " --chunk-seconds 60 --width 32 --depth 1 --heads 2 --warmup-steps 40 --warmup-seconds 20"
    " --steps 10 --seconds 5 --sample-flows 256 ";

class CompressCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trace_ = dir_.File("in.pcap");
    ASSERT_EQ(testing::Run(kCtl + " synth-trace -o " + trace_ +
                           " --seconds 120 --sessions-per-second 1.5 2>/dev/null"),
              0);
  }
  testing::TempDir dir_;
  std::string trace_;
};

uint64_t CountPackets(const std::string& path) {
  auto r = TraceReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return 0;
  PacketRecord p;
  uint64_t n = 0;
  int64_t last = 0;
  while ((*r)->Next(&p)) {
    EXPECT_GE(p.ts_ns, last);  // time-ordered
    last = p.ts_ns;
    ++n;
  }
  return n;
}

TEST_F(CompressCliTest, CompressesAndRegeneratesDeterministically) {
  std::string lib = dir_.File("lib");
  std::string out;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "-o json 2>/dev/null", &out), 0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_GE(j["chunks"].get<int>(), 2);
  EXPECT_GT(j["packets"].get<int>(), 0);
  EXPECT_GT(j["stored_bytes"].get<int>(), 0);
  EXPECT_GT(j["base_model_bytes"].get<int>(), 0);
  EXPECT_GT(j["fidelity_mean"].get<double>(), 0.0);
  EXPECT_LE(j["fidelity_mean"].get<double>(), 1.0);

  std::string a = dir_.File("a.pcap"), b = dir_.File("b.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + a + " 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + b + " 2>/dev/null"), 0);
  EXPECT_GT(CountPackets(a), 100u);
  EXPECT_EQ(*ReadFile(a), *ReadFile(b));  // same seed, same output
  EXPECT_TRUE(fs::exists(a + ".dgc.json"));  // marked synthetic

  // dgcctl stats reads the history from the skeletons, exact: packets and
  // bytes per minute are the input's, distinct sources exact per minute.
  std::map<int64_t, std::pair<uint64_t, uint64_t>> real;  // minute -> packets, IP bytes
  {
    auto in = TraceReader::Open(trace_);
    ASSERT_TRUE(in.ok());
    PacketRecord q;
    while ((*in)->Next(&q)) {
      auto& [pk, by] = real[q.ts_ns / 60000000000LL * 60];
      ++pk;
      by += q.ip_len;
    }
  }
  ASSERT_EQ(testing::Run(kCtl + " stats --library " + lib + " --every 60s --time-format epoch -o json 2>&1", &out), 0)
      << out;
  auto st = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(st.is_object()) << out;
  ASSERT_EQ(st["rows"].size(), real.size()) << out;
  for (const auto& row : st["rows"]) {
    const int64_t start = row["start"].get<int64_t>();
    ASSERT_TRUE(real.count(start)) << row;
    EXPECT_EQ(row["packets"].get<double>(), real[start].first) << row;
    EXPECT_EQ(row["bytes"].get<double>(), real[start].second) << row;
    EXPECT_TRUE(row["volume_exact"].get<bool>());
    EXPECT_TRUE(row["distinct_exact"].get<bool>());
    EXPECT_GT(row["srcs"].get<int>(), 0);
  }
  const std::string html = dir_.File("stats.html");
  ASSERT_EQ(testing::Run(kCtl + " stats --library " + lib + " --every 5m --report " + html + " >/dev/null 2>&1"), 0);
  EXPECT_NE(ReadFile(html)->find("<svg"), std::string::npos);

  // --filter keeps only matching packets.
  std::string f = dir_.File("f.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " --filter udp -o " + f + " 2>/dev/null"), 0);
  auto r = TraceReader::Open(f);
  ASSERT_TRUE(r.ok());
  PacketRecord p;
  while ((*r)->Next(&p)) EXPECT_EQ(p.proto, kProtoUdp);

  ASSERT_TRUE(testing::RequireTool("tshark"));
  {
    std::string bad;
    testing::Run("tshark -n -r " + a +
                     " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
                     " -Y '_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 ||"
                     " udp.checksum.status == 0' 2>/dev/null",
                 &bad);
    EXPECT_EQ(bad, "") << "tshark flagged packets (first lines shown above)";
    if (!bad.empty()) std::cerr << bad.substr(0, 600) << "\n";
  }
}

std::vector<PacketRecord> ReadAll(const std::string& path) {
  std::vector<PacketRecord> out;
  auto r = TraceReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  PacketRecord p;
  while ((*r)->Next(&p)) out.push_back(p);
  return out;
}

// Writes the packets of `in` with ts in [from, to) to `out` (raw IP).
void WriteSlice(const std::string& in, const std::string& out, int64_t from, int64_t to) {
  PcapWriterOptions wo;
  wo.link = OutputLink::kRawIp;
  auto w = PcapWriter::Open(out, wo);
  ASSERT_TRUE(w.ok()) << w.status();
  for (const auto& p : ReadAll(in)) {
    if (p.ts_ns >= from && p.ts_ns < to) {
      ASSERT_TRUE((*w)->Write(p).ok());
    }
  }
  ASSERT_TRUE((*w)->Close().ok());
}

nlohmann::json Chunks(const std::string& lib) {
  std::string out;
  EXPECT_EQ(testing::Run(kCtl + " get chunks --library " + lib + " -o json 2>/dev/null", &out), 0) << out;
  return nlohmann::json::parse(out);
}

// Quiet chunks (below --min-flows) share their parent and pool their flows;
// the last chunk of the input fine-tunes on that pool, so a capture does not
// end with its last chunks unadapted.
TEST_F(CompressCliTest, TheLastChunkFineTunesOnThePooledFlowsOfTheQuietChunksBeforeIt) {
  std::string trace = dir_.File("three.pcap");
  ASSERT_EQ(testing::Run(kCtl + " synth-trace -o " + trace + " --seconds 180 --sessions-per-second 1.5 2>/dev/null"),
            0);
  std::string lib = dir_.File("lib"), err = dir_.File("err.txt"), out;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace + " --library " + lib + kTiny +
                             "--no-check --budget none -o json 2>" + err, &out),
            0)
      << out << *ReadFile(err);
  nlohmann::json chunks = Chunks(lib);
  ASSERT_EQ(chunks.size(), 3u) << chunks.dump();
  // The first trains the base and shares it; the second is quiet and shares it too.
  EXPECT_EQ(chunks[0]["model"], chunks[1]["model"]) << chunks.dump();
  // The third, the end of the input, fine-tunes on the pool: a delta of its own.
  EXPECT_NE(chunks[2]["model"], chunks[1]["model"]) << chunks.dump();
  std::string desc;
  ASSERT_EQ(testing::Run(kCtl + " describe chunk " + chunks[2]["chunk"].get<std::string>() + " --library " + lib +
                             " -o json 2>/dev/null", &desc),
            0);
  auto d = nlohmann::json::parse(desc);
  EXPECT_TRUE(d["report"].contains("pool_trained")) << d.dump();
  EXPECT_GT(d["report"].value("pooled_flows", 0), 0) << d.dump();
  EXPECT_NE(ReadFile(err)->find("fine-tuned on"), std::string::npos) << *ReadFile(err);
  // And it regenerates.
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + dir_.File("g.pcap") + " 2>/dev/null"), 0);
  EXPECT_GT(CountPackets(dir_.File("g.pcap")), 100u);
}


TEST_F(CompressCliTest, PackedQuietChunksRegenerateTheSamePcapFromFewerBytes) {
  const std::string lib = dir_.File("lib"), packed = dir_.File("packed");
  std::string out;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny +
                             "--no-check --pack-span 0 -o json 2>/dev/null", &out),
            0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out)["packed"]["chunks"], 0) << out;
  fs::copy(lib, packed, fs::copy_options::recursive);
  ASSERT_EQ(testing::Run(kCtl + " pack --library " + packed + " -o json 2>&1", &out), 0) << out;
  auto pr = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(pr.is_object()) << out;
  EXPECT_EQ(pr["packs"], 1) << out;
  EXPECT_GE(pr["chunks"].get<int>(), 2) << out;
  EXPECT_LT(pr["bytes_after"].get<int>(), pr["bytes_before"].get<int>()) << out;

  // Every reader gives what it gave before packing.
  const std::string a = dir_.File("a.pcap"), b = dir_.File("b.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + a + " 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + packed + " -o " + b + " 2>/dev/null"), 0);
  EXPECT_EQ(*ReadFile(a), *ReadFile(b)) << "a packed library regenerates the same pcap";
  std::string sa, sb;
  ASSERT_EQ(testing::Run(kCtl + " stats --library " + lib + " --every 60s --time-format epoch -o csv 2>&1", &sa), 0);
  ASSERT_EQ(testing::Run(kCtl + " stats --library " + packed + " --every 60s --time-format epoch -o csv 2>&1", &sb),
            0);
  EXPECT_EQ(sa, sb);
  ASSERT_EQ(testing::Run(kCtl + " check --library " + packed + " 2>&1", &out), 0) << out;
  ASSERT_EQ(testing::Run(kCtl + " storage --library " + packed + " -o json 2>&1", &out), 0) << out;
  auto st = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(st.is_object()) << out;
  EXPECT_EQ(st["packs"], 1) << out;

  // compress packs what it wrote by default, and says so.
  const std::string lib2 = dir_.File("lib2");
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib2 + kTiny + "--no-check -o json 2>/dev/null",
                         &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["packed"]["chunks"], pr["chunks"]) << out;
  // The packed pricing leaves the same input compressing to the same
  // library (what it measures leaves out the commit time and the seconds).
  const std::string lib4 = dir_.File("lib4");
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib4 + kTiny + "--no-check -o json 2>/dev/null",
                         &out),
            0)
      << out;
  const std::string c2 = dir_.File("c2.pcap"), c4 = dir_.File("c4.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib2 + " -o " + c2 + " 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib4 + " -o " + c4 + " 2>/dev/null"), 0);
  EXPECT_EQ(*ReadFile(c2), *ReadFile(c4));
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("lib3") +
                             " --pack-span soon 2>&1", &out),
            1);
  EXPECT_NE(out.find("--pack-span 'soon'"), std::string::npos) << out;
}

TEST_F(CompressCliTest, CompressingTheSameInputTwiceIsANoOp) {
  std::string lib = dir_.File("lib");
  std::string out, err;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check -o json 2>/dev/null",
                         &out),
            0)
      << out;
  auto first = nlohmann::json::parse(out);
  ASSERT_GE(first["chunks"].get<int>(), 2);
  auto before = Chunks(lib);
  std::string a = dir_.File("a.pcap"), b = dir_.File("b.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + a + " 2>/dev/null"), 0);

  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check -o json 2>" +
                             dir_.File("err.txt"),
                         &out),
            0)
      << out;
  auto second = nlohmann::json::parse(out);
  EXPECT_EQ(second["chunks"].get<int>(), 0);
  EXPECT_EQ(second["already_committed"], first["chunks"]);
  EXPECT_NE(ReadFile(dir_.File("err.txt"))->find("already committed"), std::string::npos);
  EXPECT_EQ(Chunks(lib), before);  // nothing changed, commit times included
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + b + " 2>/dev/null"), 0);
  EXPECT_EQ(*ReadFile(a), *ReadFile(b));
  // Every chunk records how its parent was chosen.
  for (const auto& c : before) EXPECT_NE(c["decision"].get<std::string>(), "") << c.dump();
  EXPECT_EQ(before[0]["decision"], "retrain");  // the link's first base
}

// A flipped byte in a library file: `dgcctl check` names the damaged
// record and exits 1; generate stops naming the chunk, or with
// --skip-damaged leaves its window empty and says so; then a library whose
// CURRENT is garbage is a clear error naming it.
TEST_F(CompressCliTest, DamagedAndCorruptLibrariesAreClearErrors) {
  namespace fs = std::filesystem;
  std::string lib = dir_.File("lib"), out;
  // A busier trace at --budget 10x: chunk records over 4 kB, kept in blob
  // files as models are (not packed: a pack lives in a table file, whose
  // damage the library test covers).
  const std::string busy = dir_.File("busy.pcap");
  ASSERT_EQ(testing::Run(kCtl + " synth-trace -o " + busy + " --seconds 120 --sessions-per-second 6 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " compress " + busy + " --library " + lib + kTiny +
                         "--budget 10x --no-check --pack-span 0 >/dev/null 2>&1"),
            0);
  ASSERT_EQ(testing::Run(kCtl + " check --library " + lib + " 2>&1", &out), 0) << out;
  EXPECT_NE(out.find("ok: every record"), std::string::npos) << out;
  // Flip a byte in the middle of each blob file in turn (on a copy) until the
  // check names a damaged chunk.
  std::vector<fs::path> blobs;
  for (const auto& e : fs::directory_iterator(lib)) {
    if (e.path().extension() == ".blob") blobs.push_back(e.path());
  }
  ASSERT_FALSE(blobs.empty());
  std::string damaged_lib, chunk;
  for (size_t i = 0; i < blobs.size() && chunk.empty(); ++i) {
    damaged_lib = dir_.File("damaged" + std::to_string(i));
    fs::copy(lib, damaged_lib, fs::copy_options::recursive);
    const fs::path blob = fs::path(damaged_lib) / blobs[i].filename();
    std::string bytes = ReadFile(blob.string()).value();
    bytes[bytes.size() / 2] ^= 0x5a;
    testing::WriteBytes(blob.string(), bytes);
    EXPECT_EQ(testing::Run(kCtl + " check --library " + damaged_lib + " -o json 2>/dev/null", &out), 1) << out;
    auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_FALSE(j["ok"].get<bool>());
    ASSERT_FALSE(j["damaged"].empty()) << out;
    for (const auto& d : j["damaged"]) {
      EXPECT_NE(d["error"].get<std::string>().find("Corruption"), std::string::npos) << d;
      if (d["kind"] == "chunk") chunk = d["name"].get<std::string>();
    }
  }
  ASSERT_FALSE(chunk.empty()) << "no blob file held a chunk record";
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + damaged_lib + " -o " + dir_.File("d.pcap") + " 2>&1", &err), 1);
  EXPECT_NE(err.find("chunk " + chunk), std::string::npos) << err;
  EXPECT_NE(err.find("--skip-damaged"), std::string::npos) << err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + damaged_lib + " --skip-damaged -o " + dir_.File("d.pcap") +
                             " 2>&1",
                         &err),
            0)
      << err;
  EXPECT_NE(err.find("chunk " + chunk + " is damaged"), std::string::npos) << err;
  EXPECT_NE(err.find("its window is left empty"), std::string::npos) << err;
  EXPECT_GT(CountPackets(dir_.File("d.pcap")), 0u) << "the other chunks are regenerated";
  auto side = nlohmann::json::parse(ReadFile(dir_.File("d.pcap") + ".dgc.json").value());
  ASSERT_EQ(side["damaged_chunks_left_empty"].size(), 1u) << side;
  // Reading changed nothing: the damage is still there to see, the rest still reads.
  EXPECT_EQ(testing::Run(kCtl + " check --library " + damaged_lib + " >/dev/null 2>&1"), 1);

  testing::WriteBytes(lib + "/CURRENT", "garbage without a newline");
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + dir_.File("x.pcap") + " 2>&1", &err), 1);
  EXPECT_NE(err.find(lib), std::string::npos) << err;
  EXPECT_NE(err.find("orrupt"), std::string::npos) << err;
}

// A full disk: compress fails with an error naming the library and exits 1
// (it aborted inside RocksDB before, or printed success), commits nothing it
// did not make durable, the library stays readable (read-only) while the
// disk is full, and the same command finishes the job once space returns.
// Needs root to mount a small tmpfs; skips otherwise.
TEST_F(CompressCliTest, AFullDiskFailsClearlyKeepsTheLibraryReadableAndResumes) {
  namespace fs = std::filesystem;
  const std::string mnt = dir_.File("small");
  testing::TmpfsMount fs_mount(mnt, "3m");
  if (!fs_mount.mounted()) GTEST_SKIP() << "needs root to mount a tmpfs";
  const std::string lib = mnt + "/lib";
  std::string out;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check 2>&1", &out), 0)
      << out;
  ASSERT_EQ(testing::Run(kCtl + " get chunks --library " + lib + " -o json 2>/dev/null", &out), 0);
  const size_t first = nlohmann::json::parse(out).size();
  ASSERT_GE(first, 2u);
  // Fill the file system.
  testing::Run("dd if=/dev/zero of=" + mnt + "/filler bs=64k 2>/dev/null");
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check --link tap1 2>&1",
                         &err),
            1)
      << err;
  EXPECT_NE(err.find(lib), std::string::npos) << err;
  EXPECT_NE(err.find("no space left"), std::string::npos) << err;
  EXPECT_EQ(err.find("Assertion"), std::string::npos) << err;
  // Readable while full: listing, the history and regeneration (into another file system).
  ASSERT_EQ(testing::Run(kCtl + " get chunks --library " + lib + " -o json 2>/dev/null", &out), 0) << out;
  auto listed = nlohmann::json::parse(out);
  size_t tap1 = 0;
  for (const auto& c : listed) tap1 += c.value("link", "") == "tap1";
  EXPECT_EQ(listed.size(), first + tap1) << "what was committed stays";
  EXPECT_EQ(testing::Run(kCtl + " stats --library " + lib + " --link default -o json >/dev/null 2>&1"), 0);
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + lib + " --link default -o " + dir_.File("full.pcap") +
                         " 2>/dev/null"),
            0);
  EXPECT_GT(CountPackets(dir_.File("full.pcap")), 0u);
  // Space returns: the same command finishes, every chunk once.
  fs::remove(mnt + "/filler");
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check --link tap1 2>&1",
                         &out),
            0)
      << out;
  ASSERT_EQ(testing::Run(kCtl + " get chunks --library " + lib + " -o json 2>/dev/null", &out), 0);
  auto all = nlohmann::json::parse(out);
  EXPECT_EQ(all.size(), 2 * first);
  std::set<std::string> names;
  for (const auto& c : all) names.insert(c.value("chunk", ""));
  EXPECT_EQ(names.size(), all.size());
  EXPECT_EQ(testing::Run(kCtl + " check --library " + lib + " >/dev/null 2>&1"), 0);
}

TEST_F(CompressCliTest, ReadsAPcapStreamFromStdin) {
  std::string lib = dir_.File("lib"), out;
  ASSERT_EQ(testing::Run("cat " + trace_ + " | " + kCtl + " compress - --library " + lib + kTiny +
                             "--no-check -o json 2>/dev/null",
                         &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_GE(j["chunks"].get<int>(), 2);
  EXPECT_EQ(j["packets"].get<uint64_t>(), ReadAll(trace_).size());
  EXPECT_GE(j["max_lag_seconds"].get<double>(), 0.0);
}

TEST_F(CompressCliTest, FollowPicksUpFilesAsTheyAppearAndDeletesThemOnceCommitted) {
  auto packets = ReadAll(trace_);
  ASSERT_FALSE(packets.empty());
  int64_t mid = packets.front().ts_ns + 60LL * 1000000000;
  std::string spool = dir_.File("spool"), follow = dir_.File("follow"), lib = dir_.File("lib");
  fs::create_directories(spool);
  fs::create_directories(follow);
  WriteSlice(trace_, spool + "/cap-1.pcap", INT64_MIN, mid);
  WriteSlice(trace_, spool + "/cap-2.pcap", mid, INT64_MAX);
  fs::copy_file(spool + "/cap-1.pcap", follow + "/cap-1.pcap");
  // The second file arrives while compress runs, written aside then renamed.
  std::string feeder = "(sleep 3; cp " + spool + "/cap-2.pcap " + follow + "/.cap-2.part; mv " + follow +
                       "/.cap-2.part " + follow + "/cap-2.pcap) & ";
  std::string out;
  ASSERT_EQ(testing::Run(feeder + kCtl + " compress --follow " + follow + " --library " + lib + kTiny +
                             "--no-check --idle-exit 6 --settle-seconds 0.5 --poll-seconds 0.2 -o json 2>" +
                             dir_.File("err.txt"),
                         &out),
            0)
      << out << *ReadFile(dir_.File("err.txt"));
  auto j = nlohmann::json::parse(out);
  std::string err = *ReadFile(dir_.File("err.txt"));
  EXPECT_EQ(j["packets"].get<uint64_t>(), packets.size()) << err;
  EXPECT_EQ(j["deleted_raw_files"].get<int>(), 2) << err;
  EXPECT_FALSE(fs::exists(follow + "/cap-1.pcap"));
  EXPECT_FALSE(fs::exists(follow + "/cap-2.pcap"));
  EXPECT_NE(err.find("read " + follow + "/cap-2.pcap"), std::string::npos) << err;
  EXPECT_NE(err.find(" lag "), std::string::npos) << err;
  EXPECT_EQ(Chunks(lib).size(), size_t(j["chunks"].get<int>()));

  // --keep-raw-hours keeps the captures; a second run over them commits nothing new.
  std::string follow2 = dir_.File("follow2");
  fs::create_directories(follow2);
  fs::copy_file(spool + "/cap-1.pcap", follow2 + "/cap-1.pcap");
  fs::copy_file(spool + "/cap-2.pcap", follow2 + "/cap-2.pcap");
  ASSERT_EQ(testing::Run(kCtl + " compress --follow " + follow2 + " --library " + lib + kTiny +
                             "--no-check --idle-exit 1 --settle-seconds 0 --poll-seconds 0.2 --keep-raw-hours 1 -o json"
                             " 2>/dev/null",
                         &out),
            0)
      << out;
  auto k = nlohmann::json::parse(out);
  EXPECT_EQ(k["chunks"].get<int>(), 0);
  EXPECT_EQ(k["already_committed"], j["chunks"]);
  EXPECT_EQ(k["deleted_raw_files"].get<int>(), 0);
  EXPECT_TRUE(fs::exists(follow2 + "/cap-1.pcap"));
  EXPECT_TRUE(fs::exists(follow2 + "/cap-2.pcap"));
}

TEST_F(CompressCliTest, GenerateWithTheKeyInvertsThePseudonymizedAddresses) {
  const std::string secret = "this-is-the-test-secret-01234567";  // 32 characters, as nfanon -K takes it
  testing::WriteBytes(dir_.File("key"), secret + "\n");
  testing::WriteBytes(dir_.File("other"), "0x" + std::string(64, 'c') + "\n");
  std::string lib = dir_.File("lib"), out;
  // Key material that is not a CryptoPAn key is refused before anything is read, naming the file.
  testing::WriteBytes(dir_.File("passphrase"), "a passphrase that is not 32 characters\n");
  std::string refused;
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("lib0") + kTiny +
                             "--pseudonymize " + dir_.File("passphrase") + " 2>&1",
                         &refused),
            1);
  EXPECT_NE(refused.find(dir_.File("passphrase")), std::string::npos) << refused;
  EXPECT_NE(refused.find("openssl rand -hex 32"), std::string::npos) << refused;
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--pseudonymize " +
                             dir_.File("key") + " -o json 2>/dev/null",
                         &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  std::string fp = j["pseudonymized"].get<std::string>();
  EXPECT_EQ(fp.rfind("cryptopan-aes128:", 0), 0u) << fp;
  // The key never enters the library; every chunk carries the key fingerprint and its replay rate.
  std::string grep;
  EXPECT_NE(testing::Run("grep -rl '" + secret + "' " + lib, &grep), 0) << grep;
  std::string raw_json;
  ASSERT_EQ(testing::Run(kCtl + " describe chunk " + Chunks(lib)[0]["chunk"].get<std::string>() + " --library " +
                             lib + " -o json 2>/dev/null",
                         &raw_json),
            0);
  EXPECT_NE(raw_json.find(fp), std::string::npos) << raw_json;
  EXPECT_NE(raw_json.find("replay_rate"), std::string::npos) << raw_json;

  // With the key, every generated address is the inverse permutation of the
  // address generated without it (the tiny model's addresses are noise, so
  // the exact relation is what is checked; the permutation itself is covered
  // by pseudonymize_test).
  std::string pseudo = dir_.File("pseudo.pcap"), back = dir_.File("back.pcap");
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " -o " + pseudo + " 2>/dev/null"), 0);
  ASSERT_EQ(testing::Run(kCtl + " generate --library " + lib + " --key " + dir_.File("key") + " -o " + back +
                             " 2>/dev/null"),
            0);
  auto ps = ReadAll(pseudo), bs = ReadAll(back);
  ASSERT_EQ(ps.size(), bs.size());
  ASSERT_GT(ps.size(), 100u);
  auto key = Pseudonymizer::FromKeyFile(dir_.File("key"));
  ASSERT_TRUE(key.ok());
  size_t differ = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    PacketRecord p = ps[i];
    differ += p.src != bs[i].src;
    key->Invert(&p);
    ASSERT_EQ(p.src, bs[i].src) << i;
    ASSERT_EQ(p.dst, bs[i].dst) << i;
    ASSERT_EQ(p.ts_ns, bs[i].ts_ns) << i;
  }
  EXPECT_GT(differ, ps.size() * 9 / 10);
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + lib + " --key " + dir_.File("other") + " -o " +
                             dir_.File("x.pcap") + " 2>&1",
                         &err),
            1);
  EXPECT_NE(err.find("another key"), std::string::npos) << err;
}

TEST_F(CompressCliTest, MissingLibraryAndCorruptBaseAreClearErrors) {
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " generate --library " + dir_.File("nope") + " -o x.pcap 2>&1", &err), 1);
  EXPECT_NE(err.find("no model library"), std::string::npos) << err;
  testing::WriteBytes(dir_.File("base.dgcm"), "DGCM garbage that is not a model");
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("lib2") + " --base " +
                             dir_.File("base.dgcm") + " 2>&1",
                         &err),
            1);
  EXPECT_NE(err.find("base.dgcm"), std::string::npos) << err;
}

TEST_F(CompressCliTest, DeviceFlagErrorsAreClearAndTwoCpuRanksTrainDataParallel) {
  std::string err;
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("l0") + " --device gpu 2>&1", &err), 1);
  EXPECT_NE(err.find("expected auto, cpu, cuda"), std::string::npos) << err;
  EXPECT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + dir_.File("l0") + " --device cuda:99 2>&1", &err),
            1);
  EXPECT_NE(err.find("GPU(s)"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir_.File("l0"))) << "a bad flag must not create a library";
  // Two Gloo ranks on the CPU: what --device cuda does over a node's GPUs.
  const std::string lib = dir_.File("lib");
  ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny +
                             "--min-flows 1 --budget none --device cpu,cpu -o json 2>/dev/null",
                         &err),
            0)
      << err;
  int trainings = 0;
  for (const auto& c : Chunks(lib)) {
    std::string out;
    ASSERT_EQ(testing::Run(kCtl + " describe chunk " + c["chunk"].get<std::string>() + " --library " + lib + " -o json",
                           &out),
              0);
    auto d = nlohmann::json::parse(out);
    for (const auto& at : d["report"].value("attempts", nlohmann::json::array())) {
      EXPECT_EQ(at["train"].value("world_size", 0), 2) << at.dump();
      ++trainings;
    }
  }
  EXPECT_GT(trainings, 0);
}

TEST_F(CompressCliTest, GenerateOfALinkMergesItsShards) {
  // A link sharded over two ingest nodes is stored as tap#0 and tap#1.
  const std::string lib = dir_.File("lib");
  for (const char* link : {"tap#0", "tap#1", "other"}) {
    ASSERT_EQ(testing::Run(kCtl + " compress " + trace_ + " --library " + lib + kTiny + "--no-check --link '" +
                           link + "' >/dev/null 2>&1"),
              0)
        << link;
  }
  auto packets = [&](const std::string& args) {
    const std::string out = dir_.File("g.pcap");
    EXPECT_EQ(testing::Run(kCtl + " generate --library " + lib + args + " -o " + out + " 2>/dev/null"), 0) << args;
    return CountPackets(out);
  };
  const uint64_t one = packets(" --link 'tap#1'");
  const uint64_t both = packets(" --link tap");
  EXPECT_GT(one, 0u);
  EXPECT_GT(both, one);                          // both shards, merged by time
  EXPECT_GT(packets(""), both);                  // every link
}

}  // namespace
}  // namespace dgc

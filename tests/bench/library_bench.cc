// dgc-library-bench: the RocksDB model library at scale (run by hand).
//
//   dgc-library-bench [--records N] [--links L] [--queries Q] [--dir DIR]
//
// 1. Inserts N chunk records (default 1,000,000) over L links (default 4),
//    10-minute chunks, through CommitChunk (one WriteBatch each, no fsync):
//    small values (a 64-byte skeleton, a short report, a fingerprint) that
//    reuse one base model, as quiet chunks do.
// 2. Reopens the library and times Q (default 2000) random time-range
//    lookups (ListChunks over one link) of 1 hour (6 chunks) and 1 day (144
//    chunks): p50, p99, max.
// 3. Commit throughput on the filled library: chunks/s with a 2 kB delta each
//    (a finetune model, its lineage edge, the chunk and its fingerprint in one
//    WriteBatch), without and with fsync.
// Prints what it measured, on which input and machine, as a table.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "library/rocksdb_model_library.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kT0 = 1577836800LL * 1000000000;  // 2020-01-01
constexpr int64_t kChunkNs = 600LL * 1000000000;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

dgc::RocksDbModelLibrary::ChunkCommit Quiet(const std::string& link, int64_t i) {
  dgc::RocksDbModelLibrary::ChunkCommit c;
  auto& a = c.artifact;
  a.link = link;
  a.start_ns = kT0 + i * kChunkNs;
  a.duration_ns = kChunkNs;
  a.model_id = a.parent_id = "base";
  a.skeleton = std::string(64, static_cast<char>('a' + i % 26));
  a.skeleton[i % 64] = static_cast<char>(i);
  a.report = {{"packets", 1000 + i % 977}, {"bytes", 100000 + i % 9973}, {"flows", 40 + i % 31}, {"raw_bytes", 150000}};
  dgc::library::Fingerprint f;
  f.proto[0] = 700 + i % 50;
  f.proto[1] = 300;
  f.port[i % 16] = 100;
  f.packets = 1000;
  c.fingerprint = f;
  return c;
}

struct Percentiles {
  double p50, p99, max;
};
Percentiles Of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)], v.back()};
}

int Fail(const dgc::Status& s) {
  std::fprintf(stderr, "dgc-library-bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t records = 1000000, queries = 2000;
  int links = 4;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--records") records = std::atoll(argv[i + 1]);
    else if (k == "--links") links = std::max(1, std::atoi(argv[i + 1]));
    else if (k == "--queries") queries = std::atoll(argv[i + 1]);
    else if (k == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--records N] [--links L] [--queries Q] [--dir DIR]\n", argv[0]);
      return 2;
    }
  }
  bool own_dir = dir.empty();
  if (own_dir) {
    const char* tmp = std::getenv("TMPDIR");
    dir = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/dgc-library-bench-", getpid());
  }
  std::filesystem::remove_all(dir);
  const int64_t per_link = (records + links - 1) / links;
  std::vector<std::string> link_names;
  for (int l = 0; l < links; ++l) link_names.push_back(absl::StrCat("link", l));

  dgc::RocksDbModelLibrary::Options no_sync;
  no_sync.sync = false;
  double insert_s = 0;
  {
    auto lib = dgc::RocksDbModelLibrary::Open(dir, no_sync);
    if (!lib.ok()) return Fail(lib.status());
    if (auto s = (*lib)->PutModel("base", std::string(200000, 'm')); !s.ok()) return Fail(s);
    auto t0 = Clock::now();
    int64_t n = 0;
    for (int64_t i = 0; i < per_link && n < records; ++i) {
      for (int l = 0; l < links && n < records; ++l, ++n) {
        auto r = (*lib)->CommitChunk(Quiet(link_names[l], i));
        if (!r.ok()) return Fail(r.status());
      }
      if (n % 200000 < links) std::fprintf(stderr, "\r%lld records", static_cast<long long>(n));
    }
    insert_s = Seconds(t0, Clock::now());
    std::fprintf(stderr, "\r%lld records inserted in %.1f s\n", static_cast<long long>(n), insert_s);
  }
  uint64_t db_bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) db_bytes += e.file_size();
  }

  auto lib = dgc::RocksDbModelLibrary::Open(dir, no_sync);
  if (!lib.ok()) return Fail(lib.status());
  std::mt19937_64 rng(1);
  struct Range {
    const char* name;
    int64_t span_ns;
    std::vector<double> ms;
    size_t chunks = 0;
  };
  std::vector<Range> ranges = {{"1 hour", 6 * kChunkNs, {}}, {"1 day", 144 * kChunkNs, {}}};
  for (auto& r : ranges) {
    for (int64_t q = 0; q < queries; ++q) {
      dgc::ChunkQuery cq;
      cq.link = link_names[rng() % links];
      int64_t span_chunks = r.span_ns / kChunkNs;
      cq.since_ns = kT0 + static_cast<int64_t>(rng() % std::max<int64_t>(1, per_link - span_chunks)) * kChunkNs +
                    static_cast<int64_t>(rng() % kChunkNs);
      cq.until_ns = cq.since_ns + r.span_ns;
      auto t0 = Clock::now();
      auto got = (*lib)->ListChunks(cq);
      r.ms.push_back(Seconds(t0, Clock::now()) * 1e3);
      if (!got.ok()) return Fail(got.status());
      r.chunks += got->size();
    }
  }

  // Commit throughput: finetune chunks with a delta, appended after the filled range.
  struct Commit {
    const char* name;
    bool sync;
    int n;
    double per_s = 0;
  };
  std::vector<Commit> commits = {{"WriteBatch, no fsync", false, 20000}, {"WriteBatch + fsync", true, 2000}};
  int64_t next = per_link + 10;
  std::string prev = "base";
  for (auto& c : commits) {
    lib->reset();
    dgc::RocksDbModelLibrary::Options o;
    o.sync = c.sync;
    auto l = dgc::RocksDbModelLibrary::Open(dir, o);
    if (!l.ok()) return Fail(l.status());
    auto t0 = Clock::now();
    for (int i = 0; i < c.n; ++i, ++next) {
      auto commit = Quiet("link0", next);
      commit.artifact.parent_id = prev;
      commit.artifact.model_id = absl::StrCat("link0-", next);
      commit.artifact.delta = std::string(2000, static_cast<char>(next));
      auto r = (*l)->CommitChunk(commit);
      if (!r.ok()) return Fail(r.status());
      // Chains of 32, then back to the base (as retrains bound the depth).
      prev = (i % 32 == 31) ? "base" : commit.artifact.model_id;
    }
    c.per_s = c.n / Seconds(t0, Clock::now());
    *lib = std::move(*l);
  }

  std::printf("dgc-library-bench: RocksDbModelLibrary in %s (%s)\n", dir.c_str(),
              own_dir ? "temp dir, removed after" : "kept");
  std::printf("input: %lld chunk records over %d links (10-minute chunks, %lld per link), 64 B skeleton + report + "
              "fingerprint each; %.1f MB on disk after insert; %u hardware threads\n\n",
              static_cast<long long>(records), links, static_cast<long long>(per_link), db_bytes / 1e6,
              std::thread::hardware_concurrency());
  std::printf("%-44s %12s\n", "insert (CommitChunk, no fsync)", "");
  std::printf("  %-42s %12.0f\n", "records/s", records / insert_s);
  std::printf("  %-42s %12.1f\n\n", "seconds", insert_s);
  std::printf("%-22s %8s %10s %10s %10s %10s\n", "time-range lookup", "queries", "chunks/q", "p50 ms", "p99 ms",
              "max ms");
  for (const auto& r : ranges) {
    auto p = Of(r.ms);
    std::printf("%-22s %8zu %10.1f %10.3f %10.3f %10.3f\n", r.name, r.ms.size(), double(r.chunks) / r.ms.size(),
                p.p50, p.p99, p.max);
  }
  std::printf("\n%-44s %12s\n", "commit (chunk + 2 kB delta + lineage)", "chunks/s");
  for (const auto& c : commits) std::printf("  %-42s %12.0f   (%d commits)\n", c.name, c.per_s, c.n);
  lib->reset();
  if (own_dir) std::filesystem::remove_all(dir);
  return 0;
}

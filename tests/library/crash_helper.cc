// dgc-library-crash-helper: a process for crash_test.cc to kill.
//
//   dgc-library-crash-helper commit DIR FROM TO
//     commits chunks FROM..TO-1 of the chain fixture, one WriteBatch each, and
//     prints "committed I" (or "already I" for a chunk a previous run
//     committed) after each commit returns, flushed.
//   dgc-library-crash-helper expire DIR MAX_BYTES
//     expires down to MAX_BYTES in batches of 5 chunks, then prints "done".
#include <cstdio>
#include <cstdlib>
#include <string>

#include "library/rocksdb_model_library.h"
#include "tests/library/chain_fixture.h"

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s commit DIR FROM TO | expire DIR MAX_BYTES\n", argv[0]);
    return 2;
  }
  std::string mode = argv[1];
  dgc::RocksDbModelLibrary::Options o;
  o.sync = std::getenv("DGC_HELPER_NOSYNC") == nullptr;  // the default: fsync every commit
  auto lib = dgc::RocksDbModelLibrary::Open(argv[2], o);
  if (!lib.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(lib.status().message()).c_str());
    return 1;
  }
  if (mode == "commit") {
    if (argc != 5) return 2;
    int from = std::atoi(argv[3]), to = std::atoi(argv[4]);
    for (int i = from; i < to; ++i) {
      auto r = (*lib)->CommitChunk(dgc::testing::ChainChunk(i));
      if (!r.ok()) {
        std::fprintf(stderr, "commit %d: %s\n", i, std::string(r.status().message()).c_str());
        return 1;
      }
      std::printf("%s %d\n", *r == dgc::RocksDbModelLibrary::CommitResult::kCommitted ? "committed" : "already", i);
      std::fflush(stdout);
    }
    return 0;
  }
  if (mode == "expire") {
    dgc::RocksDbModelLibrary::ExpireOptions e;
    e.max_bytes = std::strtoull(argv[3], nullptr, 10);
    e.batch_chunks = 5;
    auto r = (*lib)->Expire(e);
    if (!r.ok()) {
      std::fprintf(stderr, "expire: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    std::printf("done %zu\n", r->items.size());
    return 0;
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}

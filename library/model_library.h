// ChunkQuery: which chunks a library read covers (a link and a time range).
// The model library is RocksDbModelLibrary (rocksdb_model_library.h); the
// abstract ModelLibrary interface and the step-3 DirModelLibrary went in
// session 7: no caller used the interface, and one implementation needs no
// interface (issue 15).
#ifndef DGC_LIBRARY_MODEL_LIBRARY_H_
#define DGC_LIBRARY_MODEL_LIBRARY_H_

#include <cstdint>
#include <limits>
#include <string>

namespace dgc {

struct ChunkQuery {
  std::string link;  // empty: every link
  int64_t since_ns = std::numeric_limits<int64_t>::min();  // chunks ending after this
  int64_t until_ns = std::numeric_limits<int64_t>::max();  // chunks starting before this
  // A chunk key (ChunkKey(link, start)): only chunks whose key sorts after it,
  // for paging (the walk seeks to it, so a page costs what it returns).
  std::string after_key;
};

// Whether a stored link is `link` or one of its shards (LINK#0, LINK#1, ...:
// one stream per ingest shard); every link when `link` is empty.
inline bool IsLinkOrShard(const std::string& stored, const std::string& link) {
  return link.empty() || stored == link || stored.rfind(link + "#", 0) == 0;
}

}  // namespace dgc

#endif  // DGC_LIBRARY_MODEL_LIBRARY_H_

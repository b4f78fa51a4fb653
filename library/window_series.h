// WindowSeries: a link's history per window (packets, bytes, new flows and
// the distinct counts longitudinal analysis reads), read from the chunks'
// skeletons alone: no model is rebuilt and nothing is sampled, so a day of
// a link answers in milliseconds (dgcctl stats).
//
// What is exact:
// - packets, bytes, new flows: the skeleton's bins (<= 1 s) summed; exact
//   when every bin falls wholly inside one window (windows that are
//   multiples of the bins, aligned to the epoch as chunks are). A bin that
//   straddles a window edge is split in proportion to time and the window
//   marked inexact.
// - distinct sources, destinations, (src, dst) pairs and 5-tuples: exact for
//   a window that holds, of each chunk it touches, exactly one whole
//   structure window (60 s) or the whole chunk (its total), and touches one
//   chunk; otherwise bounds: at least the largest count of a structure
//   window or whole chunk inside it, at most the sum over the chunks of the
//   smaller of their windows' sum and their total (a host seen in two
//   minutes is one host; seen in two chunks, perhaps one).
// Chunks of several shards (LINK#0, LINK#1, ...) of a link count as
// separate chunks (bounds, since a host may talk on two shards).
#ifndef DGC_LIBRARY_WINDOW_SERIES_H_
#define DGC_LIBRARY_WINDOW_SERIES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/skeleton.h"
#include "library/model_library.h"
#include "library/rocksdb_model_library.h"

namespace dgc::library {

struct SeriesRow {
  int64_t start_ns = 0;
  double packets = 0, bytes = 0, new_flows = 0;
  bool volume_exact = true;
  model::WindowStats distinct_lo, distinct_hi;  // equal when distinct_exact
  bool distinct_exact = true;
  bool distinct_known = true;  // false: a chunk's skeleton has no structure windows (format 1)
  uint32_t chunks = 0;         // chunks that overlap the window
};

struct WindowSeries {
  int64_t every_ns = 0;
  // Every window a chunk covers, in time order (with zeros where a chunk saw
  // nothing); windows no chunk covers (nothing kept there) are left out.
  std::vector<SeriesRow> rows;
  std::vector<std::string> links;  // the stored links read (shards apart)
  uint64_t chunks = 0;
  std::vector<RocksDbModelLibrary::DamagedRecord> damaged;  // skipped
};

// Windows of `every_ns` aligned to the epoch over [range.since, range.until)
// clipped to the chunks found; `link` empty: every link, else `link` and
// its shards `link#i`. InvalidArgument for every_ns <= 0; NotFound when no
// chunk overlaps; DataLoss for a damaged chunk unless `skip_damaged`, which
// lists it in `damaged` (its windows then miss its traffic).
[[nodiscard]] StatusOr<WindowSeries> WindowSeriesOf(RocksDbModelLibrary& lib, const std::string& link,
                                                    const ChunkQuery& range, int64_t every_ns,
                                                    bool skip_damaged = false);

}  // namespace dgc::library

#endif  // DGC_LIBRARY_WINDOW_SERIES_H_

// PackPricer: what a link's next chunk record will cost a byte once its
// span is packed (CompressOptions::packed_cost), and what its metadata takes
// (CompressOptions::metadata_bytes), from the records committed before it.
// dgcctl compress notes each record as it commits; the coordinator does the
// same per library link and, after a restart or for a link it has not
// priced yet, rebuilds the state from the library (Load), so both paths
// price a chunk from the same records.
//
// The cost is measured, not modelled: the span's records so far packed as
// RocksDbModelLibrary::PackChunks would (EncodePack, plus the stubs and
// their keys) over what they take one by one, again at 1, 2, 4, 8, ...
// records (at most 1,024, which are all it keeps of a span, so its memory
// is bounded). A span's first chunk is unpriced (0). Records
// are measured without what varies from run to run (the commit time, the
// report's seconds), so the same input prices, and keeps, the same.
//
// Not thread safe.
#ifndef DGC_LIBRARY_PACK_PRICER_H_
#define DGC_LIBRARY_PACK_PRICER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "library/library_records.h"

namespace dgc {
class RocksDbModelLibrary;

namespace library {

class PackPricer {
 public:
  // span_ns: the packing span (weeks by default); 0: nothing is packed, only
  // metadata_bytes is kept.
  explicit PackPricer(int64_t span_ns = 0) : span_ns_(span_ns) {}

  // A record as committed (read back from the library) and its fingerprint
  // (Fingerprint::Encode(), or empty), in commit order.
  void Note(const ChunkRecord& committed, const std::string& fingerprint);
  // The packed cost for a chunk starting at `start_ns`: the last measured
  // cost of its span, 0 when the span has no earlier record (unpriced).
  double PackedCost(int64_t start_ns) const;
  // The last noted record's bytes besides its skeleton (key, record,
  // fingerprint); 0 before any.
  int64_t metadata_bytes() const { return last_metadata_; }

  // The state Note would have reached for `link`'s chunk at `start_ns`: the
  // record before it and the records of its span before it, read from
  // `lib`. Errors: the library's.
  [[nodiscard]] static StatusOr<PackPricer> Load(RocksDbModelLibrary& lib, const std::string& link, int64_t start_ns,
                                                 int64_t span_ns);

 private:
  int64_t span_ns_ = 0;
  std::vector<PackMember> members_;  // the current span's records, as a pack holds them
  uint64_t own_ = 0;                 // what they take unpacked
  double cost_ = 0;                  // packed / unpacked, last measured
  int64_t span_start_ = 0;
  int64_t last_metadata_ = 0;
};

}  // namespace library
}  // namespace dgc

#endif  // DGC_LIBRARY_PACK_PRICER_H_

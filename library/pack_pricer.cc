#include "library/pack_pricer.h"

#include <algorithm>
#include <limits>

#include "common/base/time.h"
#include "common/model/skeleton.h"
#include "library/rocksdb_model_library.h"
#include "nlohmann/json.hpp"

namespace dgc::library {
namespace {
constexpr size_t kMaxMeasured = 1024;
}  // namespace

void PackPricer::Note(const ChunkRecord& committed, const std::string& fingerprint) {
  ChunkRecord rec = committed;
  rec.committed_ns = rec.end_ns();
  if (auto j = nlohmann::json::parse(rec.report_json, nullptr, false); j.is_object()) {
    j.erase("seconds");
    rec.report_json = j.dump();
  }
  const std::string key = ChunkKey(rec.link, rec.start_ns);
  const std::string value = EncodeChunk(rec);
  const uint64_t own = key.size() + value.size() + (fingerprint.empty() ? 0 : key.size() + fingerprint.size());
  last_metadata_ = int64_t(own > rec.skeleton.size() ? own - rec.skeleton.size() : 0);
  if (span_ns_ <= 0) return;
  const int64_t span = FloorTo(rec.start_ns, span_ns_);
  if (span != span_start_ || members_.empty()) {
    members_.clear();
    own_ = 0;
    cost_ = 0;
    span_start_ = span;
  }
  if (value.size() > RocksDbModelLibrary::PackOptions{}.max_member_bytes) return;  // not packed
  // The cost is measured up to 1,024 records and holds after: later ones
  // need not be kept (a week of one-minute chunks would hold 10,080).
  if (members_.size() >= kMaxMeasured) return;
  ChunkRecord m = rec;
  auto sk = model::Skeleton::Decode(m.skeleton, "chunk");
  if (!sk.ok()) return;
  m.skeleton = sk->EncodePlain();
  members_.push_back({rec.start_ns, EncodePackMember(m), fingerprint});
  own_ += own;
  const size_t n = members_.size();
  if ((n & (n - 1)) == 0 && n <= kMaxMeasured) {
    const uint64_t packed = EncodePack(members_, members_.front().start_ns).size() +
                            n * (key.size() + 8);  // + the stubs and their keys
    cost_ = std::min(1.0, double(packed) / double(std::max<uint64_t>(own_, 1)));
  }
}

double PackPricer::PackedCost(int64_t start_ns) const {
  if (span_ns_ <= 0 || members_.empty() || FloorTo(start_ns, span_ns_) != span_start_) return 0;
  return cost_;
}

StatusOr<PackPricer> PackPricer::Load(RocksDbModelLibrary& lib, const std::string& link, int64_t start_ns,
                                      int64_t span_ns) {
  PackPricer p(span_ns);
  const int64_t span = span_ns > 0 ? FloorTo(start_ns, span_ns) : start_ns;
  ChunkQuery q;
  q.link = link;
  q.until_ns = start_ns;
  // The span's records, and the one before them (its metadata prices the
  // first of the span), looked for in the span before (a week back without
  // packing): a link silent for longer starts with no metadata measured,
  // as a fresh dgcctl compress does.
  constexpr int64_t kWeekNs = 7 * 86400LL * 1'000'000'000;
  q.since_ns = span - (span_ns > 0 ? span_ns : kWeekNs);
  auto records = lib.ListChunks(q);
  if (!records.ok()) return records.status();
  std::vector<const ChunkRecord*> before;  // by start, as ListChunks walks a link
  for (const auto& r : *records) {
    if (r.link == link && r.start_ns < start_ns) before.push_back(&r);
  }
  size_t first = before.size();
  while (first > 0 && before[first - 1]->start_ns >= span) --first;
  if (first > 0) --first;  // the record before the span
  for (size_t i = first; i < before.size(); ++i) {
    auto fp = lib.GetFingerprint(link, before[i]->start_ns);
    p.Note(*before[i], fp.ok() ? fp->Encode() : std::string());
  }
  return p;
}

}  // namespace dgc::library

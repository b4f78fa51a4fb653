#include "library/window_series.h"

#include <algorithm>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/time.h"

namespace dgc::library {
namespace {

void Max(model::WindowStats* a, const model::WindowStats& b) {
  a->srcs = std::max(a->srcs, b.srcs);
  a->dsts = std::max(a->dsts, b.dsts);
  a->pairs = std::max(a->pairs, b.pairs);
  a->five_tuples = std::max(a->five_tuples, b.five_tuples);
}

void Add(model::WindowStats* a, const model::WindowStats& b) {
  a->srcs += b.srcs;
  a->dsts += b.dsts;
  a->pairs += b.pairs;
  a->five_tuples += b.five_tuples;
}

void Min(model::WindowStats* a, const model::WindowStats& b) {
  a->srcs = std::min(a->srcs, b.srcs);
  a->dsts = std::min(a->dsts, b.dsts);
  a->pairs = std::min(a->pairs, b.pairs);
  a->five_tuples = std::min(a->five_tuples, b.five_tuples);
}

}  // namespace

StatusOr<WindowSeries> WindowSeriesOf(RocksDbModelLibrary& lib, const std::string& link, const ChunkQuery& range,
                                      int64_t every_ns, bool skip_damaged) {
  if (every_ns <= 0) return absl::InvalidArgumentError("the window length must be positive");
  // Whole windows: widen the range to the windows it touches, so an edge
  // window holds every chunk in it.
  ChunkQuery q = range;
  q.link.clear();  // shards: LINK#i are other stored links
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
  if (q.since_ns != kMin) q.since_ns = FloorTo(q.since_ns, every_ns);
  if (q.until_ns != kMax && q.until_ns <= kMax - every_ns) q.until_ns = FloorTo(q.until_ns + every_ns - 1, every_ns);
  std::vector<RocksDbModelLibrary::DamagedRecord> damaged;
  DGC_ASSIGN_OR_RETURN(std::vector<ChunkRecord> records, lib.ListChunks(q, skip_damaged ? &damaged : nullptr));
  struct Item {
    const ChunkRecord* record;
    model::Skeleton skeleton;
  };
  std::vector<Item> items;
  int64_t t0 = kMax, t1 = kMin;
  WindowSeries out;
  out.every_ns = every_ns;
  out.damaged = std::move(damaged);
  for (const ChunkRecord& r : records) {
    if (!IsLinkOrShard(r.link, link)) continue;
    const std::string name = absl::StrCat("chunk ", r.link, "@", FormatRfc3339(r.start_ns));
    DGC_ASSIGN_OR_RETURN(model::Skeleton s, model::Skeleton::Decode(r.skeleton, name));
    t0 = std::min(t0, r.start_ns);
    t1 = std::max(t1, r.start_ns + r.duration_ns);
    if (std::find(out.links.begin(), out.links.end(), r.link) == out.links.end()) out.links.push_back(r.link);
    items.push_back({&r, std::move(s)});
  }
  if (items.empty()) {
    return absl::NotFoundError(link.empty() ? std::string("no chunk of the library overlaps the range")
                                            : absl::StrCat("no chunk of link ", link, " overlaps the range"));
  }
  t0 = std::max(t0, q.since_ns);
  t1 = std::min(t1, q.until_ns);
  const int64_t origin = FloorTo(t0, every_ns);
  const int64_t n = (t1 - origin + every_ns - 1) / every_ns;
  // Only windows some chunk covers: a gap between chunks is not zero
  // traffic but nothing kept.
  std::map<int64_t, SeriesRow> rows;
  auto row_at = [&](int64_t w) -> SeriesRow& {
    auto [it, added] = rows.try_emplace(w);
    if (added) it->second.start_ns = origin + w * every_ns;
    return it->second;
  };
  out.chunks = items.size();
  auto window_of = [&](int64_t t) -> int64_t { return (t - origin) >= 0 ? (t - origin) / every_ns : -1; };

  // Per window, what each chunk contributes to its distinct counts.
  struct Part {
    model::WindowStats lo, hi;
    bool exact = true, known = true, any = false;
  };
  for (const Item& it : items) {
    const model::Skeleton& s = it.skeleton;
    const int64_t c0 = it.record->start_ns, c1 = c0 + it.record->duration_ns;
    // Volume: bins, split by time where one straddles a window edge.
    for (size_t i = 0; i < s.bins(); ++i) {
      const int64_t b0 = c0 + static_cast<int64_t>(i) * s.bin_ns, b1 = std::min(b0 + s.bin_ns, c1);
      if (b1 <= b0) continue;
      const double pk = s.packets[i], by = static_cast<double>(s.bytes[i]), nf = s.new_flows[i];
      if (pk == 0 && by == 0 && nf == 0) continue;
      const int64_t w0 = window_of(b0), w1 = window_of(b1 - 1);
      for (int64_t w = std::max<int64_t>(w0, 0); w <= w1 && w < n; ++w) {
        SeriesRow& row = row_at(w);
        const int64_t lo = std::max(b0, row.start_ns), hi = std::min(b1, row.start_ns + every_ns);
        const double f = w0 == w1 ? 1.0 : static_cast<double>(hi - lo) / static_cast<double>(b1 - b0);
        row.packets += pk * f;
        row.bytes += by * f;
        row.new_flows += nf * f;
        if (w0 != w1) row.volume_exact = false;
      }
      if (w0 < 0 || w1 >= n) {  // part of the bin outside the windows read
        if (w0 >= 0 && w0 < n) row_at(w0).volume_exact = false;
        if (w1 >= 0 && w1 < n) row_at(w1).volume_exact = false;
      }
    }
    // Distinct counts.
    const int64_t cw0 = std::max<int64_t>(window_of(c0), 0);
    const int64_t cw1 = std::min<int64_t>(window_of(c1 - 1), n - 1);
    for (int64_t w = cw0; w <= cw1; ++w) {
      SeriesRow& row = row_at(w);
      const int64_t W0 = row.start_ns, W1 = W0 + every_ns;
      row.chunks++;
      Part p;
      if (s.window_ns <= 0) {
        p.known = s.total_flows() == 0;  // an empty chunk has no hosts to know
      } else if (c0 >= W0 && c1 <= W1) {
        p.lo = p.hi = s.total;
      } else {
        int inside = 0;
        bool partial = false;
        for (size_t j = 0; j < s.windows.size(); ++j) {
          const int64_t u0 = c0 + static_cast<int64_t>(j) * s.window_ns, u1 = std::min(u0 + s.window_ns, c1);
          if (u1 <= W0 || u0 >= W1) continue;
          const model::WindowStats& u = s.windows[j];
          if (u0 >= W0 && u1 <= W1) {
            ++inside;
            Max(&p.lo, u);
          } else {
            partial = partial || u.five_tuples > 0;
          }
          Add(&p.hi, u);
        }
        Min(&p.hi, s.total);
        p.exact = inside <= 1 && !partial;
        if (!p.exact && p.hi == model::WindowStats{}) p.exact = true;  // nothing there either way
      }
      p.any = p.hi.five_tuples > 0 || !p.known;
      if (!p.known) row.distinct_known = false;
      if (!p.any) continue;
      // A second chunk with traffic in the window: its hosts may be the first's.
      const bool first = row.distinct_hi == model::WindowStats{} && row.distinct_exact;
      if (!first) row.distinct_exact = false;
      if (!p.exact) row.distinct_exact = false;
      Max(&row.distinct_lo, p.lo);
      Add(&row.distinct_hi, p.hi);
    }
  }
  out.rows.reserve(rows.size());
  for (auto& [w, row] : rows) {
    if (row.distinct_lo == row.distinct_hi) row.distinct_exact = true;  // the bounds meet
    out.rows.push_back(std::move(row));
  }
  return out;
}

}  // namespace dgc::library

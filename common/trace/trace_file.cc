#include "common/trace/trace_file.h"

#include <algorithm>

#include "common/trace/parse.h"

namespace dgc {
namespace {

StatusOr<LoadedTrace> LoadFrom(std::unique_ptr<TraceReader> reader) {
  LoadedTrace t;
  t.name = reader->name();
  t.link = LinkTypeName(reader->linktype());
  PacketRecord p;
  while (reader->Next(&p)) t.packets.push_back(p);
  t.stats = reader->stats();
  t.nanosecond = reader->nanosecond_file();
  SortByTime(&t.packets);
  return t;
}

}  // namespace

void SortByTime(std::vector<PacketRecord>* packets) {
  auto by_ts = [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; };
  if (!std::is_sorted(packets->begin(), packets->end(), by_ts)) {
    std::stable_sort(packets->begin(), packets->end(), by_ts);
  }
}

StatusOr<LoadedTrace> LoadTrace(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(auto reader, TraceReader::Open(path));
  return LoadFrom(std::move(reader));
}

StatusOr<LoadedTrace> LoadTrace(std::unique_ptr<InputSource> source) {
  DGC_ASSIGN_OR_RETURN(auto reader, TraceReader::FromSource(std::move(source)));
  return LoadFrom(std::move(reader));
}

}  // namespace dgc

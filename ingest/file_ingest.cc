#include "ingest/file_ingest.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "common/base/files.h"
#include "common/base/progress.h"
#include "common/base/time.h"
#include "common/trace/chunk_format.h"
#include "common/trace/merged_reader.h"

namespace dgc {

StatusOr<FileIngestSummary> RunFileIngest(const FileIngestOptions& opt) {
  if (opt.spool_dir.empty()) return absl::InvalidArgumentError("no spool directory given (--out)");
  if (opt.chunker.chunk_ns <= 0) return absl::InvalidArgumentError("chunk length must be positive");
  auto t0 = std::chrono::steady_clock::now();
  FileIngestSummary sum;
  DGC_ASSIGN_OR_RETURN(sum.files, ExpandInputs(opt.inputs));
  DGC_ASSIGN_OR_RETURN(auto reader, MergedReader::Open(sum.files));
  sum.input_bytes = reader->raw_size();
  sum.link_dir = (std::filesystem::path(opt.spool_dir) / opt.chunker.link).string();
  DGC_RETURN_IF_ERROR(MakeDirs(sum.link_dir));

  ChunkSink sink = [&](Chunk&& chunk, bool amend) -> Status {
    std::string path = (std::filesystem::path(sum.link_dir) / ChunkFileName(chunk)).string();
    if (amend) {
      auto old = ReadChunkFile(path);
      if (old.ok()) {
        chunk.raw_bytes += old->raw_bytes;
        chunk.packets.insert(chunk.packets.end(), old->packets.begin(), old->packets.end());
        std::stable_sort(chunk.packets.begin(), chunk.packets.end(),
                         [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
      } else if (!absl::IsNotFound(old.status())) {
        return old.status();
      }
      ++sum.amended_chunks;
    } else {
      ++sum.chunks;
    }
    std::string bytes = EncodeChunk(chunk, opt.zstd_level);
    sum.spool_bytes += bytes.size();
    return WriteFileAtomic(path, bytes);
  };
  Chunker chunker(opt.chunker, sink);
  ProgressBar bar("ingest", reader->raw_size(), opt.progress && ProgressBar::DefaultEnabled());
  PacketRecord p;
  uint32_t record_bytes = 0;
  uint64_t n = 0;
  bool first = true;
  while (reader->Next(&p, &record_bytes)) {
    if (first) {
      sum.first_ts_ns = sum.last_ts_ns = p.ts_ns;
      first = false;
    }
    sum.first_ts_ns = std::min(sum.first_ts_ns, p.ts_ns);
    sum.last_ts_ns = std::max(sum.last_ts_ns, p.ts_ns);
    (p.version == 6 ? sum.ipv6 : sum.ipv4)++;
    DGC_RETURN_IF_ERROR(chunker.Add(p, record_bytes));
    if ((++n & 0xffff) == 0) {
      bar.Update(reader->raw_position(), absl::StrFormat("%d packets", n));
    }
  }
  DGC_RETURN_IF_ERROR(chunker.Flush());
  bar.Finish();
  sum.read = reader->stats();
  sum.late_packets = chunker.late_packets();
  sum.flows = chunker.flows();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

nlohmann::json FileIngestSummary::ToJson() const {
  nlohmann::json j;
  j["files"] = files;
  j["input_bytes"] = input_bytes;
  j["frames"] = read.frames;
  j["ip_packets"] = read.ip_packets;
  j["ipv4_packets"] = ipv4;
  j["ipv6_packets"] = ipv6;
  j["non_ip_frames"] = read.non_ip + read.unsupported_link;
  j["errors"] = read.errors();
  j["malformed_frames"] = read.malformed;
  j["corrupt_records"] = read.corrupt_records;
  j["truncated"] = read.truncated;
  j["chunks"] = chunks;
  j["amended_chunks"] = amended_chunks;
  j["late_packets"] = late_packets;
  j["flows"] = flows;
  j["spool_dir"] = link_dir;
  j["spool_bytes"] = spool_bytes;
  j["first_packet"] = read.ip_packets ? FormatRfc3339(first_ts_ns) : "";
  j["last_packet"] = read.ip_packets ? FormatRfc3339(last_ts_ns) : "";
  j["seconds"] = seconds;
  j["warnings"] = read.warnings;
  return j;
}

std::string FileIngestSummary::ToTable() const {
  std::string s;
  auto row = [&](const char* k, const std::string& v) { s += absl::StrFormat("%-10s %s\n", k, v); };
  row("inputs", absl::StrFormat("%d file(s), %.1f MB", files.size(), input_bytes / 1e6));
  row("frames", absl::StrFormat("%d read: %d IP (%d IPv4, %d IPv6), %d non-IP, %d errors",
                                read.frames, read.ip_packets, ipv4, ipv6,
                                read.non_ip + read.unsupported_link, read.errors()));
  if (read.ip_packets) {
    row("time", absl::StrFormat("%s .. %s (%.1f s)", FormatRfc3339(first_ts_ns),
                                FormatRfc3339(last_ts_ns), (last_ts_ns - first_ts_ns) / 1e9));
  }
  row("chunks", absl::StrFormat("%d written to %s (%.1f MB)%s", chunks, link_dir, spool_bytes / 1e6,
                                amended_chunks ? absl::StrFormat(", %d amended for %d late packets",
                                                                 amended_chunks, late_packets)
                                               : std::string()));
  row("flows", absl::StrFormat("%d", flows));
  row("took", absl::StrFormat("%.2f s (%.0f packets/s)", seconds,
                              seconds > 0 ? read.frames / seconds : 0.0));
  return s;
}

}  // namespace dgc

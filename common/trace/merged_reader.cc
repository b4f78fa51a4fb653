#include "common/trace/merged_reader.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/base/files.h"

namespace dgc {

StatusOr<std::unique_ptr<MergedReader>> MergedReader::Open(const std::vector<std::string>& paths) {
  std::vector<std::unique_ptr<TraceReader>> readers;
  int stdin_count = 0;
  for (const auto& path : paths) {
    if (path == "-" && ++stdin_count > 1) {
      return absl::InvalidArgumentError("standard input ('-') given more than once");
    }
    DGC_ASSIGN_OR_RETURN(auto r, TraceReader::Open(path));
    readers.push_back(std::move(r));
  }
  return std::make_unique<MergedReader>(std::move(readers));
}

MergedReader::MergedReader(std::vector<std::unique_ptr<TraceReader>> readers)
    : readers_(std::move(readers)), heads_(readers_.size()) {
  for (size_t i = 0; i < readers_.size(); ++i) Advance(i);
}

void MergedReader::Advance(size_t i) {
  Head& h = heads_[i];
  h.valid = readers_[i]->Next(&h.packet);
  if (h.valid) h.record_bytes = readers_[i]->last_record_bytes();
}

bool MergedReader::Next(PacketRecord* out, uint32_t* record_bytes) {
  // Few files per link: a linear scan beats a heap here.
  size_t best = heads_.size();
  for (size_t i = 0; i < heads_.size(); ++i) {
    if (heads_[i].valid && (best == heads_.size() || heads_[i].packet.ts_ns < heads_[best].packet.ts_ns)) {
      best = i;
    }
  }
  if (best == heads_.size()) return false;
  *out = heads_[best].packet;
  if (record_bytes) *record_bytes = heads_[best].record_bytes;
  Advance(best);
  return true;
}

ReadStats MergedReader::stats() const {
  ReadStats s;
  for (const auto& r : readers_) s.Add(r->stats());
  return s;
}

uint64_t MergedReader::raw_position() const {
  uint64_t n = 0;
  for (const auto& r : readers_) n += r->source().raw_position();
  return n;
}

uint64_t MergedReader::raw_size() const {
  uint64_t n = 0;
  for (const auto& r : readers_) n += r->source().raw_size();
  return n;
}

StatusOr<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    if (in == "-") {
      out.push_back(in);
      continue;
    }
    struct stat st;
    if (::stat(in.c_str(), &st) != 0) return ErrnoError(errno, "cannot open", in);
    if (S_ISDIR(st.st_mode)) {
      DGC_ASSIGN_OR_RETURN(auto files, ListFiles(in));
      if (files.empty()) return absl::NotFoundError(absl::StrCat("directory ", in, " holds no files"));
      out.insert(out.end(), files.begin(), files.end());
    } else {
      out.push_back(in);
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("no input given");
  return out;
}

}  // namespace dgc

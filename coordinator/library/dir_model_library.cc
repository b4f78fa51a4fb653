#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/base/files.h"
#include "coordinator/library/model_library.h"

namespace dgc {
namespace fs = std::filesystem;

namespace {
constexpr char kMarker[] = "DGC-LIBRARY";
bool ValidId(const std::string& s) {
  if (s.empty() || s.size() > 200 || s[0] == '.') return false;
  for (char c : s) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return true;
}
}  // namespace

StatusOr<std::unique_ptr<DirModelLibrary>> DirModelLibrary::Open(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
    bool empty = fs::is_empty(dir, ec);
    if (!empty && !fs::exists(fs::path(dir) / kMarker, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, " is not empty and is not a dgc library (no ", kMarker, " file): refusing to write there"));
    }
  }
  DGC_RETURN_IF_ERROR(MakeDirs((fs::path(dir) / "models").string()));
  DGC_RETURN_IF_ERROR(MakeDirs((fs::path(dir) / "chunks").string()));
  std::string marker = (fs::path(dir) / kMarker).string();
  if (!fs::exists(marker, ec)) DGC_RETURN_IF_ERROR(WriteFileAtomic(marker, "dgc model library, layout 1\n"));
  return std::unique_ptr<DirModelLibrary>(new DirModelLibrary(dir));
}

std::string DirModelLibrary::ModelPath(const std::string& id) const {
  return (fs::path(dir_) / "models" / (id + ".dgcm")).string();
}

Status DirModelLibrary::PutModel(const std::string& id, const std::string& bytes) {
  if (!ValidId(id)) return absl::InvalidArgumentError(absl::StrCat("bad model id '", id, "'"));
  if (HasModel(id)) return absl::OkStatus();
  return WriteFileAtomic(ModelPath(id), bytes);
}

StatusOr<std::string> DirModelLibrary::GetModel(const std::string& id) {
  if (!ValidId(id)) return absl::InvalidArgumentError(absl::StrCat("bad model id '", id, "'"));
  auto bytes = ReadFile(ModelPath(id));
  if (absl::IsNotFound(bytes.status())) {
    return absl::NotFoundError(absl::StrCat("model ", id, " is not in the library ", dir_));
  }
  return bytes;
}

bool DirModelLibrary::HasModel(const std::string& id) {
  std::error_code ec;
  return ValidId(id) && fs::exists(ModelPath(id), ec);
}

Status DirModelLibrary::PutChunk(const model::ChunkArtifact& c) {
  if (!ValidId(c.link)) return absl::InvalidArgumentError(absl::StrCat("bad link name '", c.link, "'"));
  fs::path d = fs::path(dir_) / "chunks" / c.link;
  DGC_RETURN_IF_ERROR(MakeDirs(d.string()));
  std::string when = absl::FormatTime("%Y%m%dT%H%M%SZ", absl::FromUnixNanos(c.start_ns), absl::UTCTimeZone());
  std::string name = absl::StrFormat("chunk-%012d-%s%s", c.seq(), when, model::kArtifactSuffix);
  return WriteFileAtomic((d / name).string(), c.Encode());
}

StatusOr<std::vector<model::ChunkArtifact>> DirModelLibrary::Chunks(const ChunkQuery& q) {
  std::vector<model::ChunkArtifact> out;
  std::error_code ec;
  fs::path root = fs::path(dir_) / "chunks";
  std::vector<std::string> links;
  if (!q.link.empty()) {
    links.push_back(q.link);
  } else {
    for (const auto& e : fs::directory_iterator(root, ec)) {
      if (e.is_directory()) links.push_back(e.path().filename().string());
    }
    std::sort(links.begin(), links.end());
  }
  for (const auto& link : links) {
    if (!fs::exists(root / link, ec)) continue;
    DGC_ASSIGN_OR_RETURN(auto files, ListFiles((root / link).string()));
    for (const auto& f : files) {
      if (!absl::EndsWith(f, model::kArtifactSuffix)) continue;
      DGC_ASSIGN_OR_RETURN(std::string bytes, ReadFile(f));
      DGC_ASSIGN_OR_RETURN(auto a, model::ChunkArtifact::Decode(bytes, f));
      if (a.start_ns + a.duration_ns <= q.since_ns || a.start_ns >= q.until_ns) continue;
      out.push_back(std::move(a));
    }
  }
  return out;
}

StatusOr<ModelLibrary::Usage> DirModelLibrary::GetUsage() {
  Usage u;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(dir_) / "chunks", ec)) {
    if (e.is_regular_file() && absl::EndsWith(e.path().string(), model::kArtifactSuffix)) {
      u.chunk_bytes += e.file_size();
      u.chunks++;
    }
  }
  for (const auto& e : fs::directory_iterator(fs::path(dir_) / "models", ec)) {
    if (e.is_regular_file() && absl::EndsWith(e.path().string(), ".dgcm")) {
      u.model_bytes += e.file_size();
      u.models++;
    }
  }
  return u;
}

}  // namespace dgc
